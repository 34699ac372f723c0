//! A pretrained BERT text encoder (Devlin et al., 2019) with WordPiece tokenisation: load
//! Hugging Face checkpoints, embed sentences, fill masks, train vocabularies, and train or
//! fine-tune with the masked-language-model objective. VL-BERT, ViLBERT and VideoBERT start from
//! it.

pub mod config;
pub mod embed;
pub mod model;
pub mod tokenize;
pub mod train;

use anyhow::Result;
use burn::tensor::Device;
use std::path::Path;

/// A loaded model directory: config, weights, tokenizer.
pub struct TextModel {
    pub config: config::BertConfig,
    pub model: model::Bert,
    pub loaded: model::Loaded,
    pub tokenizer: tokenize::TextTokenizer,
}

/// Load `config.json`, `model.safetensors` and `tokenizer.json`/`vocab.txt` from `dir`.
/// `max_len` caps tokenised inputs (default: `max_seq_length` of a sentence-transformers
/// `sentence_bert_config.json`, else the model's positions, which are also the ceiling).
pub fn load_model_dir(dir: &Path, max_len: Option<usize>, device: &Device) -> Result<TextModel> {
    anyhow::ensure!(dir.is_dir(), "{}: no such model directory", dir.display());
    let config = config::BertConfig::from_json_file(&dir.join("config.json"))?;
    let positions = config.max_position_embeddings;
    // sentence-transformers directories say how long their inputs may be.
    let st_max = std::fs::read_to_string(dir.join("sentence_bert_config.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v.get("max_seq_length").and_then(|m| m.as_u64()))
        .map(|m| (m as usize).min(positions));
    let max_len = max_len.or(st_max).unwrap_or(positions);
    anyhow::ensure!(
        max_len <= positions,
        "--max-len {max_len} exceeds the model's {positions} positions"
    );
    let tokenizer = tokenize::TextTokenizer::from_dir(dir, max_len)?;
    anyhow::ensure!(
        tokenizer.vocab_size() <= config.vocab_size,
        "{}: the tokenizer has {} tokens but the model only {} embeddings",
        dir.display(),
        tokenizer.vocab_size(),
        config.vocab_size
    );
    let (model, loaded) = model::load_hf(&config, &dir.join("model.safetensors"), device)?;
    Ok(TextModel {
        config,
        model,
        loaded,
        tokenizer,
    })
}
