//! Tessera: representation-learning models from one survey, in Rust.
//!
//! Shared building blocks live in [`core`]; each model is a module with the same rooms
//! (`config`, `model`, `data`, `train`, `eval`). Deep learning runs on burn; model code never
//! names a backend: the device is picked at run time ([`core::device`]).

pub mod bert4rec;
pub mod cbt;
pub mod core;
pub mod corpora;
pub mod detect;
pub mod metapath2vec;
pub mod regions;
pub mod text;
pub mod video;
pub mod videobert;
pub mod vilbert;
pub mod vit;
pub mod vlbert;
