//! Building blocks shared by every model: attention, encoder layers, embeddings, heads,
//! masking, metrics, optimiser and schedules, checkpoints, run directories and progress.

pub mod attention;
pub mod checkpoint;
pub mod device;
pub mod dropout;
pub mod embeddings;
pub mod encoder;
pub mod error;
pub mod heads;
pub mod masking;
pub mod metrics;
pub mod optim;
pub mod progress;
pub mod resources;
pub mod rng;
pub mod run;
