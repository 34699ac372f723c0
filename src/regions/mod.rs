//! The regions layer VL-BERT and ViLBERT read images through (`MODELS.md` §4-5): per image a set
//! of boxes, an appearance feature per box and, for a detector, its class distribution per box;
//! the files that hold them ([`files`]) and their extraction from a backbone ([`extract`]).

pub mod extract;
pub mod files;
pub mod standardize;
