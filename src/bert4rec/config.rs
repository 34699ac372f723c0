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

    /// Every setting within its range, each refused with its key (and flag) named.
    pub fn validate(&self) -> Result<()> {
        use crate::core::validate::*;
        let m = &self.model;
        at_least_one("model.hidden (--hidden)", m.hidden)?;
        at_least_one("model.heads (--heads)", m.heads)?;
        anyhow::ensure!(
            m.hidden.is_multiple_of(m.heads),
            "model.hidden (--hidden) {} must be divisible by model.heads (--heads) {}",
            m.hidden,
            m.heads
        );
        at_least_one("model.intermediate", m.intermediate)?;
        int_in("model.max_len (--max-len)", m.max_len, 2, 1 << 16)?;
        probability_below_one("model.hidden_dropout (--dropout)", m.hidden_dropout)?;
        probability_below_one("model.attention_dropout (--dropout)", m.attention_dropout)?;
        positive("model.layer_norm_eps", m.layer_norm_eps)?;
        positive("model.init_std", m.init_std)?;
        let t = &self.train;
        proportion("train.mask_prob (--mask-prob)", t.mask_prob)?;
        at_least_one("train.max_predictions", t.max_predictions)?;
        at_least_one("train.batch_size (--batch-size)", t.batch_size)?;
        at_least_one("train.dupe_factor", t.dupe_factor)?;
        anyhow::ensure!(
            (0.0..=1.0).contains(&t.sliding_window),
            "train.sliding_window must be between 0 and 1, got {}",
            t.sliding_window
        );
        positive("train.lr (--lr)", t.lr)?;
        non_negative("train.weight_decay", t.weight_decay)?;
        non_negative("train.clip_grad_norm", t.clip_grad_norm)?;
        at_least_one("train.max_epochs (--epochs)", t.max_epochs)?;
        at_least_one("train.patience (--patience)", t.patience)?;
        if t.loss == LossKind::Sampled {
            at_least_one(
                "train.sampled_negatives (--sampled-negatives)",
                t.sampled_negatives,
            )?;
        }
        at_least_one("eval.batch_size", self.eval.batch_size)?;
        Ok(())
    }

    /// Refuse a model and training batch that would not fit in memory for `num_items` items:
    /// weights, gradients and Adam's two moments, plus the activations of a batch (the full
    /// softmax's logits dominate for large catalogues).
    pub fn check_memory(&self, num_items: usize) -> Result<()> {
        use crate::core::validate::{fits_in_memory, product};
        let m = &self.model;
        let t = &self.train;
        let params = product(&[num_items + 2, m.hidden])
            + product(&[m.max_len, m.hidden])
            + m.layers as f64
                * (4.0 * product(&[m.hidden, m.hidden])
                    + 2.0 * product(&[m.hidden, m.intermediate]));
        let rows = product(&[t.batch_size, m.max_len]);
        let activations = rows
            * (m.layers as f64 * (8.0 * m.hidden as f64 + m.intermediate as f64))
            + rows * m.heads as f64 * m.max_len as f64 * m.layers as f64
            + product(&[t.batch_size, t.max_predictions.min(m.max_len)])
                * match t.loss {
                    LossKind::Full => num_items as f64,
                    LossKind::Sampled => t.sampled_negatives as f64,
                };
        fits_in_memory(
            &format!(
                "a BERT4Rec of {num_items} items (model.hidden {}, model.layers {}, model.max_len {}, train.batch_size {})",
                m.hidden, m.layers, m.max_len, t.batch_size
            ),
            4.0 * (4.0 * params + 3.0 * activations),
        )
    }
}
