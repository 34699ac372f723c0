//! CBT's pretraining settings (MODELS.md §7). The paper's loss weights are the defaults
//! (`w_bert = 0` with BERT frozen, `w_vis = w_cross = 1`, temperature 1); every other choice
//! is named where it is made.

use super::model::ModelSizes;
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PretrainConfig {
    pub seed: u64,
    pub batch_size: usize,
    /// Examples per worker pass (at most half the batch: the loop splits every batch between
    /// workers). The contrastive negatives are the other examples of the micro-batch (the
    /// paper's "mini-batch").
    pub micro_batch: usize,
    pub lr: f64,
    pub warmup_steps: u64,
    pub weight_decay: f64,
    pub clip_grad_norm: f64,
    pub epochs: usize,
    /// Videos held out (from the end of the feature directory's order) for validation.
    pub valid_videos: usize,
    pub visual_weight: f64,
    pub cross_weight: f64,
    /// BERT's masked-language-model loss on the narration (the paper: 0, BERT frozen).
    pub text_weight: f64,
    /// Train the text BERT (the paper keeps it frozen).
    pub train_text: bool,
    /// The visual InfoNCE's temperature (the paper: 1).
    pub temperature: f64,
    /// Mismatched videos per text in the cross-modal loss: none, every other video of the
    /// micro-batch (the paper); k, the next k videos of the micro-batch (fewer cross-modal
    /// passes: a micro-batch of m costs m * (k + 1) instead of m * m).
    pub cross_negatives: Option<usize>,
    /// Share of a sequence's clips masked for the visual loss (at least one per sequence).
    pub mask_prob: f64,
    /// Share of text tokens masked for the text loss (used only when `text_weight > 0`).
    pub text_mask_prob: f64,
    /// Most neighbouring narration sentences joined into one text (as VideoBERT's data).
    pub max_concat: usize,
    /// Clip subsampling stride range (VideoBERT: 1 to 3; named choice 1: the features are
    /// continuous and every clip is a target of the visual loss).
    pub min_stride: usize,
    pub max_stride: usize,
    /// Text tokens kept per text (longer ones are cut at the end).
    pub max_text_tokens: usize,
    pub model: ModelSizes,
}

impl Default for PretrainConfig {
    fn default() -> Self {
        Self {
            seed: 0,
            batch_size: 32,
            micro_batch: 16,
            lr: 1e-4,
            warmup_steps: 100,
            weight_decay: 0.01,
            clip_grad_norm: 1.0,
            epochs: 1,
            valid_videos: 0,
            visual_weight: 1.0,
            cross_weight: 1.0,
            text_weight: 0.0,
            train_text: false,
            temperature: 1.0,
            cross_negatives: None,
            mask_prob: 0.15,
            text_mask_prob: 0.15,
            max_concat: 3,
            min_stride: 1,
            max_stride: 1,
            max_text_tokens: 48,
            model: ModelSizes::default(),
        }
    }
}

impl PretrainConfig {
    pub fn validate(&self) -> Result<()> {
        use crate::core::validate::*;
        int_in("batch_size (--batch-size)", self.batch_size, 4, 1 << 20).map_err(|e| {
            anyhow::anyhow!(
                "{e:#}: the loop splits a batch between two workers, and the contrastive losses \
                 take their negatives from each part (2 examples at least)"
            )
        })?;
        int_in("micro_batch", self.micro_batch, 2, 1 << 20).map_err(|e| {
            anyhow::anyhow!(
                "{e:#}: the contrastive losses take their negatives from the micro-batch"
            )
        })?;
        positive("lr (--lr)", self.lr)?;
        non_negative("weight_decay", self.weight_decay)?;
        non_negative("clip_grad_norm", self.clip_grad_norm)?;
        at_least_one("epochs (--epochs)", self.epochs)?;
        non_negative("visual_weight", self.visual_weight)?;
        non_negative("cross_weight", self.cross_weight)?;
        non_negative("text_weight", self.text_weight)?;
        if self.visual_weight + self.cross_weight + self.text_weight <= 0.0 {
            bail!("visual_weight, cross_weight and text_weight are all 0: nothing to train");
        }
        if self.text_weight > 0.0 && !self.train_text {
            bail!(
                "text_weight = {} with the text BERT frozen (train_text = false): the text loss \
                 would train nothing",
                self.text_weight
            );
        }
        positive("temperature", self.temperature)?;
        if let Some(k) = self.cross_negatives {
            int_in("cross_negatives", k, 1, 1 << 20)?;
        }
        probability_below_one("mask_prob", self.mask_prob)?;
        probability_below_one("text_mask_prob", self.text_mask_prob)?;
        int_in("max_concat", self.max_concat, 1, 64)?;
        int_in("min_stride", self.min_stride, 1, 64)?;
        int_in("max_stride", self.max_stride, self.min_stride, 64)?;
        int_in("max_text_tokens", self.max_text_tokens, 1, 4096)?;
        int_in("model.visual_layers", self.model.visual_layers, 1, 64)?;
        int_in("model.cross_layers", self.model.cross_layers, 1, 64)?;
        int_in("model.max_clips", self.model.max_clips, 1, 4096)?;
        Ok(())
    }
}
