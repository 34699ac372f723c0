//! ViT (Dosovitskiy et al., 2021) and DINOv2 backbones: configuration with presets, the
//! network on the shared pre-norm encoder, Hugging Face checkpoint loading. Training, data
//! readers, feature extraction and the command line follow (issue 4).

pub mod config;
pub mod data;
pub mod model;
pub mod train;
