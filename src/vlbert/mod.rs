//! VL-BERT (Su et al., ICLR 2020): a single-stream BERT over `[CLS] text [SEP] RoIs [END]`,
//! faithful to the official code (github jackroos/VL-BERT); `../shared/MODELS.md` §4.
//!
//! A model directory holds `config.json` (the official `NETWORK.VLBERT` keys, flat, and the
//! `NETWORK` flags that shape the network, see [`config::VlBertConfig`]), `model.safetensors`
//! (the official parameter names of the pretraining network without the image backbone;
//! `scripts/convert_vlbert.py` turns an official `.model` checkpoint into one) and `vocab.txt`.

pub mod config;
pub mod data;
pub mod eval;
pub mod model;
pub mod train;

use crate::text::tokenize::TextTokenizer;
use anyhow::{bail, Result};
use burn::tensor::Device;
use config::VlBertConfig;
use model::{load_official, VlBert};
use std::path::Path;

/// A loaded model directory.
pub struct VlBertModel {
    pub model: VlBert,
    pub config: VlBertConfig,
    pub tokenizer: TextTokenizer,
}

/// Load a model directory (see the module doc).
pub fn load_model_dir(dir: &Path, device: &Device) -> Result<VlBertModel> {
    if !dir.is_dir() {
        bail!("{}: no such model directory", dir.display());
    }
    let config = VlBertConfig::from_json_file(&dir.join("config.json"))?;
    let tokenizer = TextTokenizer::for_model(dir, config.max_text_len(), config.vocab_size)?;
    let model = load_official(&config, &dir.join("model.safetensors"), device)?;
    Ok(VlBertModel {
        model,
        config,
        tokenizer,
    })
}

/// Write a model directory: `config.json`, `model.safetensors` (official names), the
/// tokenizer's `vocab.txt` (and `tokenizer.json`).
pub fn save_model_dir(
    model: &VlBert,
    cfg: &VlBertConfig,
    tok: &TextTokenizer,
    dir: &Path,
) -> Result<()> {
    tok.save_model_dir(
        dir,
        &model.official_tensors(),
        &serde_json::to_string_pretty(cfg)?,
    )
}
