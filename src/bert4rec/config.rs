//! BERT4Rec configuration with the paper's defaults (MovieLens-1m setting).

use super::data::DataConfig;
use crate::core::optim::Decay;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// d: hidden size (paper: 64).
    pub hidden: usize,
    /// L: Transformer layers (paper: 2).
    pub layers: usize,
    /// h: attention heads (paper: 2).
    pub heads: usize,
    /// Feed-forward width (official: 4 d).
    pub intermediate: usize,
    /// N: maximum sequence length (paper: 200 for MovieLens, 50 for Beauty and Steam).
    pub max_len: usize,
    /// Dropout on hidden states (official ML-1m config: 0.2).
    pub hidden_dropout: f64,
    /// Dropout on attention probabilities (official ML-1m config: 0.2).
    pub attention_dropout: f64,
    /// LayerNorm after the head's GELU projection (official code: yes; paper formula: no).
    pub head_layer_norm: bool,
    pub layer_norm_eps: f64,
    /// Std of the normal weight initialisation (BERT: 0.02).
    pub init_std: f64,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            hidden: 64,
            layers: 2,
            heads: 2,
            intermediate: 256,
            max_len: 200,
            hidden_dropout: 0.2,
            attention_dropout: 0.2,
            head_layer_norm: true,
            layer_norm_eps: 1e-12,
            init_std: 0.02,
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum LossKind {
    /// Softmax over the whole item catalogue (the paper).
    Full,
    /// Softmax over the target and `sampled_negatives` uniformly drawn items shared by the
    /// batch, for catalogues too large for a full softmax.
    Sampled,
}

/// Which sequences an epoch trains on.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum SampleMode {
    /// The most recent `max_len` items of each history, plus sliding windows over longer
    /// histories (the official code).
    Windows,
    /// Every prefix of each history (length >= 2, last `max_len` items), as RecBole builds its
    /// training set: one sequence per training interaction.
    Prefixes,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    pub sample_mode: SampleMode,
    /// p: proportion of items masked (paper: 0.2 for ML-1m, 0.6 for Beauty).
    pub mask_prob: f64,
    /// At most this many masked items per sequence (official ML-1m: 40).
    pub max_predictions: usize,
    /// Masked positions become `[mask]` 80%, a random item 10%, unchanged 10% (BERT). Off in
    /// BERT4Rec's code.
    pub bert_80_10_10: bool,
    /// Add a copy of each training sequence masked only at its last item.
    pub mask_last_extra: bool,
    /// Step between training windows over histories longer than `max_len`, as a fraction of
    /// `max_len` (official: 0.1); 0 keeps only the most recent window.
    pub sliding_window: f64,
    pub batch_size: usize,
    /// Split each batch into micro-batches of this many sequences and accumulate their
    /// gradients before the update: the same gradient (up to rounding) with a fraction of the
    /// activation memory. 0 or >= batch_size: no split beyond the two halves every batch is
    /// cut into so that two cores share it (see `train`).
    pub micro_batch: usize,
    /// Masked copies of the data per epoch (official `dupe_factor`: 10, drawn once; we draw
    /// fresh masks for every copy).
    pub dupe_factor: usize,
    /// Group sequences of similar length into batches (shuffled within groups of 64 batches,
    /// batch order shuffled) so that little time goes to padding. Off draws batches uniformly.
    pub length_bucketing: bool,
    /// Peak learning rate (paper: 1e-4).
    pub lr: f64,
    pub warmup_steps: u64,
    pub decay: Decay,
    pub weight_decay: f64,
    pub adam_bias_correction: bool,
    /// Clip the global gradient norm (official: 1.0); 0 disables.
    pub clip_grad_norm: f64,
    pub max_epochs: usize,
    /// Stop after this many epochs without a better validation NDCG@10.
    pub patience: usize,
    pub loss: LossKind,
    pub sampled_negatives: usize,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            sample_mode: SampleMode::Windows,
            mask_prob: 0.2,
            max_predictions: 40,
            bert_80_10_10: false,
            mask_last_extra: true,
            sliding_window: 0.1,
            batch_size: 256,
            micro_batch: 256,
            dupe_factor: 1,
            length_bucketing: true,
            lr: 1e-4,
            warmup_steps: 100,
            decay: Decay::Linear,
            weight_decay: 0.01,
            adam_bias_correction: false,
            clip_grad_norm: 1.0,
            max_epochs: 400,
            patience: 20,
            loss: LossKind::Full,
            sampled_negatives: 1000,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EvalConfig {
    /// Remove items already in the user's history from the ranking.
    pub filter_seen: bool,
    pub batch_size: usize,
}

impl Default for EvalConfig {
    fn default() -> Self {
        Self {
            filter_seen: true,
            batch_size: 512,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Bert4RecConfig {
    pub seed: u64,
    pub model: ModelConfig,
    pub data: DataConfig,
    pub train: TrainConfig,
    pub eval: EvalConfig,
}

impl Bert4RecConfig {
    pub fn from_toml_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config {}", path.display()))?;
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("config serialises")
    }

    pub fn validate(&self) -> Result<()> {
        let m = &self.model;
        anyhow::ensure!(
            m.hidden > 0 && m.heads > 0,
            "model.hidden and model.heads must be positive"
        );
        anyhow::ensure!(
            m.hidden.is_multiple_of(m.heads),
            "model.hidden ({}) must be divisible by model.heads ({})",
            m.hidden,
            m.heads
        );
        anyhow::ensure!(m.max_len >= 2, "model.max_len must be at least 2");
        let t = &self.train;
        anyhow::ensure!(
            t.mask_prob > 0.0 && t.mask_prob <= 1.0,
            "train.mask_prob must be in (0, 1]"
        );
        anyhow::ensure!(t.batch_size > 0, "train.batch_size must be positive");
        anyhow::ensure!(t.lr > 0.0, "train.lr must be positive");
        anyhow::ensure!(
            (0.0..1.0).contains(&m.hidden_dropout) && (0.0..1.0).contains(&m.attention_dropout),
            "dropout must be in [0, 1)"
        );
        Ok(())
    }
}
