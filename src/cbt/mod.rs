//! CBT, the Contrastive Bidirectional Transformer (Sun et al., 2019; MODELS.md §7): VideoBERT's
//! authors' answer to its clustering, learning from the continuous clip features with
//! noise-contrastive losses. The network ([`model`]), its pretraining settings ([`config`]), the
//! text-clip pairs ([`data`]), pretraining ([`train`]) and the evaluation by transfer ([`eval`]:
//! features, retrieval, anticipation; the linear probe is `video::probe`, shared with VideoBERT's
//! features).

pub mod config;
pub mod data;
pub mod eval;
pub mod model;
pub mod train;
