//! VideoBERT (Sun et al., ICCV 2019; MODELS.md §6): one BERT over text and visual words. The
//! pretraining data ([`data`]), its settings ([`config`]), the network with BERT's pretraining
//! heads over the joint vocabulary ([`model`]: equal to transformers' `BertForPreTraining`, built
//! from a text BERT and a codebook), pretraining ([`train`]), zero-shot classification
//! ([`eval`]), future prediction and illustration ([`generate`]) and the captioner over clip
//! features ([`caption`]).

pub mod caption;
pub mod config;
pub mod data;
pub mod eval;
pub mod generate;
pub mod model;
pub mod train;
