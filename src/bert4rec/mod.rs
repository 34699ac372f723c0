//! BERT4Rec (Sun et al., CIKM 2019): sequential recommendation with a bidirectional Transformer
//! trained by the Cloze task. See `MODELS.md` §1.
//!
//! Where the paper is silent we follow the official code (`FeiSun/BERT4Rec`), and each such
//! choice is a config option:
//! - embeddings pass through LayerNorm and dropout (BERT's `embedding_postprocessor`);
//! - the output head has a LayerNorm after its GELU projection (`model.head_layer_norm`; the
//!   paper's formula has none);
//! - masked positions always become `[mask]`, never a random or the original item
//!   (`train.bert_80_10_10 = false`);
//! - one extra copy of each training sequence masks only its last item (`train.mask_last_extra`);
//! - long histories give several training windows (`train.sliding_window`, a fraction of
//!   `max_len`, 0.1 in the official code);
//! - Adam without bias correction, decoupled weight decay 0.01, gradient clipping at norm 1.0,
//!   warm-up for 100 steps then linear decay.
//!
//! Deviation: the official code writes 10 differently masked copies of the data once
//! (`dupe_factor`); we draw fresh masks every epoch, which is the same in expectation.

pub mod config;
pub mod data;
pub mod eval;
pub mod model;
pub mod train;

pub use config::Bert4RecConfig;
