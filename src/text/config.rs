//! BERT configuration, read from a Hugging Face `config.json` (same field names), with presets.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Hugging Face's `BertConfig` fields that define the network. Unknown fields in a
/// `config.json` are ignored, as `transformers` does.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    /// Only "gelu" (exact, erf) is supported: the activation of every published BERT.
    pub hidden_act: String,
    pub hidden_dropout_prob: f64,
    pub attention_probs_dropout_prob: f64,
    pub max_position_embeddings: usize,
    pub type_vocab_size: usize,
    pub initializer_range: f64,
    pub layer_norm_eps: f64,
    pub pad_token_id: u32,
}

impl Default for BertConfig {
    /// BERT-base, uncased (Devlin et al., 2019).
    fn default() -> Self {
        Self {
            vocab_size: 30_522,
            hidden_size: 768,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            intermediate_size: 3072,
            hidden_act: "gelu".into(),
            hidden_dropout_prob: 0.1,
            attention_probs_dropout_prob: 0.1,
            max_position_embeddings: 512,
            type_vocab_size: 2,
            initializer_range: 0.02,
            layer_norm_eps: 1e-12,
            pad_token_id: 0,
        }
    }
}

impl BertConfig {
    /// all-MiniLM-L6-v2: 6 layers, 384 wide, 12 heads.
    pub fn minilm_l6() -> Self {
        Self {
            hidden_size: 384,
            num_hidden_layers: 6,
            intermediate_size: 1536,
            ..Self::default()
        }
    }

    /// A small BERT for training from scratch on a small corpus.
    pub fn tiny(vocab_size: usize) -> Self {
        Self {
            vocab_size,
            hidden_size: 64,
            num_hidden_layers: 2,
            num_attention_heads: 2,
            intermediate_size: 256,
            max_position_embeddings: 128,
            ..Self::default()
        }
    }

    pub fn from_json_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let cfg: Self = serde_json::from_str(&text)
            .with_context(|| format!("{}: not a BERT config.json", path.display()))?;
        cfg.validate()
            .with_context(|| format!("{}: unsupported configuration", path.display()))?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<()> {
        if self.hidden_act != "gelu" {
            bail!(
                "hidden_act `{}` is not supported (only the exact \"gelu\")",
                self.hidden_act
            );
        }
        if self.hidden_size == 0 || self.num_attention_heads == 0 {
            bail!("hidden_size and num_attention_heads must be positive");
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            bail!(
                "hidden_size {} is not divisible by num_attention_heads {}",
                self.hidden_size,
                self.num_attention_heads
            );
        }
        if self.vocab_size == 0 || self.max_position_embeddings == 0 {
            bail!("vocab_size and max_position_embeddings must be positive");
        }
        use crate::core::validate::*;
        at_least_one("intermediate_size", self.intermediate_size)?;
        at_least_one("type_vocab_size", self.type_vocab_size)?;
        int_in("num_hidden_layers", self.num_hidden_layers, 0, 1024)?;
        probability_below_one("hidden_dropout_prob", self.hidden_dropout_prob)?;
        probability_below_one(
            "attention_probs_dropout_prob",
            self.attention_probs_dropout_prob,
        )?;
        positive("layer_norm_eps", self.layer_norm_eps)?;
        positive("initializer_range", self.initializer_range)?;
        fits_in_memory(
            &format!(
                "a BERT of {} tokens, width {}, {} layers",
                self.vocab_size, self.hidden_size, self.num_hidden_layers
            ),
            4.0 * 4.0
                * (product(&[self.vocab_size, self.hidden_size])
                    + product(&[self.max_position_embeddings, self.hidden_size])
                    + self.num_hidden_layers as f64
                        * (4.0 * product(&[self.hidden_size, self.hidden_size])
                            + 2.0 * product(&[self.hidden_size, self.intermediate_size]))),
        )?;
        Ok(())
    }
}
