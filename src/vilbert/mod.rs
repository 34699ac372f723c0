//! ViLBERT (Lu et al., NeurIPS 2019): two streams, text and image regions, that meet in
//! co-attention layers; faithful to the official code (github facebookresearch/vilbert-multi-task,
//! `vilbert/vilbert.py`); `../shared/MODELS.md` §5.
//!
//! A model directory holds `config.json` (the official `BertConfig` keys, see
//! [`config::VilBertConfig`]), `model.safetensors` (the official state-dict names of
//! `BertForMultiModalPreTraining`; `scripts/convert_vilbert.py` turns an official
//! `pytorch_model.bin` into one) and `vocab.txt`.

pub mod config;
pub mod data;
pub mod model;
pub mod train;

use crate::text::tokenize::TextTokenizer;
use anyhow::{bail, Result};
use burn::tensor::Device;
use config::VilBertConfig;
use model::{load_official, VilBert};
use std::path::Path;

/// A loaded model directory.
pub struct VilBertModel {
    pub model: VilBert,
    pub config: VilBertConfig,
    pub tokenizer: TextTokenizer,
}

/// Load a model directory (see the module doc).
pub fn load_model_dir(dir: &Path, device: &Device) -> Result<VilBertModel> {
    if !dir.is_dir() {
        bail!("{}: no such model directory", dir.display());
    }
    let config = VilBertConfig::from_json_file(&dir.join("config.json"))?;
    let tokenizer = TextTokenizer::for_model(dir, config.max_text_len(), config.vocab_size)?;
    let model = load_official(&config, &dir.join("model.safetensors"), device)?;
    Ok(VilBertModel {
        model,
        config,
        tokenizer,
    })
}

/// Write a model directory: `config.json`, `model.safetensors` (official names), the
/// tokenizer's `vocab.txt` (and `tokenizer.json`).
pub fn save_model_dir(
    model: &VilBert,
    cfg: &VilBertConfig,
    tok: &TextTokenizer,
    dir: &Path,
) -> Result<()> {
    tok.save_model_dir(
        dir,
        &model.official_tensors(),
        &serde_json::to_string_pretty(cfg)?,
    )
}
