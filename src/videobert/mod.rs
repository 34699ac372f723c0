//! VideoBERT (Sun et al., ICCV 2019; MODELS.md §6): one BERT over text and visual words. In
//! progress: the pretraining data ([`data`]), its settings ([`config`]) and the network with
//! BERT's pretraining heads over the joint vocabulary ([`model`]: equal to transformers'
//! `BertForPreTraining`, built from a text BERT and a codebook) are in; pretraining and the
//! downstream commands follow.

pub mod caption;
pub mod config;
pub mod data;
pub mod eval;
pub mod generate;
pub mod model;
pub mod train;
