//! VideoBERT (Sun et al., ICCV 2019; MODELS.md §6): one BERT over text and visual words. In
//! progress: the pretraining data ([`data`]) and its settings ([`config`]) are in; the network,
//! pretraining and the downstream commands follow.

pub mod config;
pub mod data;
