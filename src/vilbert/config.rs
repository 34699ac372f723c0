//! ViLBERT's network configuration: the keys of the official `BertConfig`
//! (github facebookresearch/vilbert-multi-task, `vilbert/vilbert.py`, as in
//! `config/bert_base_6layer_6conect.json`) plus Tessera's task heads. A model directory's
//! `config.json` holds these keys; official JSON files load as they are.

use crate::text::config::BertConfig;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct VilBertConfig {
    // --- text stream (BERT)
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    /// Only "gelu" (exact), as every published ViLBERT.
    pub hidden_act: String,
    pub hidden_dropout_prob: f64,
    pub attention_probs_dropout_prob: f64,
    pub max_position_embeddings: usize,
    pub type_vocab_size: usize,
    /// Standard deviation of every weight's normal initialisation (the official `init_weights`
    /// uses this one for both streams).
    pub initializer_range: f64,
    // --- image stream
    /// Region feature size F (2048 for bottom-up features).
    pub v_feature_size: usize,
    /// Classes of the masked-region head (1601 for Visual Genome's detector).
    pub v_target_size: usize,
    pub v_hidden_size: usize,
    pub v_num_hidden_layers: usize,
    pub v_num_attention_heads: usize,
    pub v_intermediate_size: usize,
    pub v_attention_probs_dropout_prob: f64,
    pub v_hidden_act: String,
    pub v_hidden_dropout_prob: f64,
    /// Read and kept; unused by the official initialisation (see `initializer_range`).
    pub v_initializer_range: f64,
    // --- co-attention
    pub bi_hidden_size: usize,
    pub bi_num_attention_heads: usize,
    /// Read and kept; unused by the official network.
    pub bi_intermediate_size: usize,
    pub bi_attention_type: usize,
    /// The co-attention layer i runs after image layer `v_biattention_id[i]` - 1 and text layer
    /// `t_biattention_id[i]` - 1 (before the layers of those indices).
    pub v_biattention_id: Vec<usize>,
    pub t_biattention_id: Vec<usize>,
    /// How the pooled text and image outputs are fused: "mul" or "sum".
    pub fusion_method: String,
    /// The official JSON files' name for `fusion_method` (read; `fusion_method` decides).
    pub pooling_method: Option<String>,
    /// The first `fixed_t_layer` text layers / `fixed_v_layer` image layers get no gradient.
    pub fixed_t_layer: usize,
    pub fixed_v_layer: usize,
    /// Masked-region target: 0 (KL against the detector's class distribution) is the only one
    /// supported; 1 (feature regression) and 2 (NCE) are refused.
    pub visual_target: usize,
    pub with_coattention: bool,
    /// Refused when true: the official fine-tuning trick of a learned task token.
    pub task_specific_tokens: bool,
    pub dynamic_attention: bool,
    pub fast_mode: bool,
    pub in_batch_pairs: bool,
    pub model: String,
    pub objective: usize,
    pub num_negative: usize,
    pub visualization: bool,
    // --- Tessera's task heads and inputs
    /// Answers of the VQA head (`vil_prediction`, a `SimpleClassifier` on the fused pooled
    /// output); 0: no VQA head.
    pub num_labels: usize,
    /// The retrieval head (`vil_logit`: Linear(bi_hidden_size -> 1) on the fused pooled output).
    pub with_retrieval_head: bool,
    /// Boxes read per image (the first ones of the region file), the global image token not
    /// counted: the official VQA setting `max_region_num` 101 = 100 + 1.
    pub max_regions: usize,
}

impl Default for VilBertConfig {
    /// `config/bert_base_6layer_6conect.json`, the published ViLBERT.
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
            v_feature_size: 2048,
            v_target_size: 1601,
            v_hidden_size: 1024,
            v_num_hidden_layers: 6,
            v_num_attention_heads: 8,
            v_intermediate_size: 1024,
            v_attention_probs_dropout_prob: 0.1,
            v_hidden_act: "gelu".into(),
            v_hidden_dropout_prob: 0.1,
            v_initializer_range: 0.02,
            bi_hidden_size: 1024,
            bi_num_attention_heads: 8,
            bi_intermediate_size: 1024,
            bi_attention_type: 1,
            v_biattention_id: vec![0, 1, 2, 3, 4, 5],
            t_biattention_id: vec![6, 7, 8, 9, 10, 11],
            fusion_method: "mul".into(),
            pooling_method: None,
            fixed_t_layer: 0,
            fixed_v_layer: 0,
            visual_target: 0,
            with_coattention: true,
            task_specific_tokens: false,
            dynamic_attention: false,
            fast_mode: false,
            in_batch_pairs: false,
            model: "bert".into(),
            objective: 0,
            num_negative: 128,
            visualization: false,
            num_labels: 0,
            with_retrieval_head: false,
            max_regions: 100,
        }
    }
}

impl VilBertConfig {
    /// A network whose text stream has a Hugging Face BERT's shape (its weights come from it);
    /// the image stream and co-attention keep the published sizes scaled to `layers` image
    /// layers, each followed by a co-attention layer meeting the last text layers.
    pub fn from_bert(bert: &BertConfig, feature_size: usize, classes: usize) -> Self {
        let t = bert.num_hidden_layers;
        let v = Self::default().v_num_hidden_layers.min(t.max(1));
        Self {
            vocab_size: bert.vocab_size,
            hidden_size: bert.hidden_size,
            num_hidden_layers: t,
            num_attention_heads: bert.num_attention_heads,
            intermediate_size: bert.intermediate_size,
            hidden_dropout_prob: bert.hidden_dropout_prob,
            attention_probs_dropout_prob: bert.attention_probs_dropout_prob,
            max_position_embeddings: bert.max_position_embeddings,
            type_vocab_size: bert.type_vocab_size.max(1),
            initializer_range: bert.initializer_range,
            v_feature_size: feature_size,
            v_target_size: classes,
            v_num_hidden_layers: v,
            v_biattention_id: (0..v).collect(),
            t_biattention_id: (t - v..t).collect(),
            ..Self::default()
        }
    }

    /// The longest `[CLS] text [SEP]` the positions allow.
    pub fn max_text_len(&self) -> usize {
        self.max_position_embeddings
    }

    pub fn layer_norm_eps(&self) -> f64 {
        // BertLayerNorm(eps=1e-12) everywhere in the official code.
        1e-12
    }

    pub fn from_json_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let mut cfg: Self = serde_json::from_str(&text)
            .with_context(|| format!("{}: not a ViLBERT config.json", path.display()))?;
        let value: serde_json::Value = serde_json::from_str(&text)?;
        if value.get("fusion_method").is_none() {
            // The official JSON files name it `pooling_method`; the official code reads
            // `fusion_method` (default "mul").
            if let Some(p) = &cfg.pooling_method {
                cfg.fusion_method = p.clone();
            }
        }
        cfg.validate()
            .with_context(|| format!("{}: unsupported configuration", path.display()))?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<()> {
        use crate::core::validate::*;
        for (key, act) in [
            ("hidden_act", &self.hidden_act),
            ("v_hidden_act", &self.v_hidden_act),
        ] {
            if act != "gelu" {
                bail!("{key} `{act}` is not supported (only the exact \"gelu\")");
            }
        }
        for (key, v) in [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("num_attention_heads", self.num_attention_heads),
            ("intermediate_size", self.intermediate_size),
            ("max_position_embeddings", self.max_position_embeddings),
            ("type_vocab_size", self.type_vocab_size),
            ("v_feature_size", self.v_feature_size),
            ("v_target_size", self.v_target_size),
            ("v_hidden_size", self.v_hidden_size),
            ("v_num_attention_heads", self.v_num_attention_heads),
            ("v_intermediate_size", self.v_intermediate_size),
            ("bi_hidden_size", self.bi_hidden_size),
            ("bi_num_attention_heads", self.bi_num_attention_heads),
            ("max_regions", self.max_regions),
        ] {
            at_least_one(key, v)?;
        }
        int_in("num_hidden_layers", self.num_hidden_layers, 0, 1024)?;
        int_in("v_num_hidden_layers", self.v_num_hidden_layers, 0, 1024)?;
        for (what, width, heads) in [
            ("hidden_size", self.hidden_size, self.num_attention_heads),
            (
                "v_hidden_size",
                self.v_hidden_size,
                self.v_num_attention_heads,
            ),
            (
                "bi_hidden_size",
                self.bi_hidden_size,
                self.bi_num_attention_heads,
            ),
        ] {
            if !width.is_multiple_of(heads) {
                bail!("{what} {width} is not divisible by its {heads} attention heads");
            }
        }
        if self.v_biattention_id.len() != self.t_biattention_id.len() {
            bail!(
                "v_biattention_id has {} entries but t_biattention_id {}: one pair per \
                 co-attention layer",
                self.v_biattention_id.len(),
                self.t_biattention_id.len()
            );
        }
        for (key, ids, layers) in [
            (
                "v_biattention_id",
                &self.v_biattention_id,
                self.v_num_hidden_layers,
            ),
            (
                "t_biattention_id",
                &self.t_biattention_id,
                self.num_hidden_layers,
            ),
        ] {
            if ids.windows(2).any(|w| w[0] > w[1]) {
                bail!("{key} {ids:?} must not decrease");
            }
            if let Some(&last) = ids.last() {
                if last >= layers {
                    bail!("{key} {ids:?} names layer {last} but the stream has {layers} layers");
                }
            }
        }
        if self.fixed_t_layer > self.t_biattention_id.first().copied().unwrap_or(0)
            || self.fixed_v_layer > self.v_biattention_id.first().copied().unwrap_or(0)
        {
            bail!(
                "fixed_t_layer {} / fixed_v_layer {} reach past the first co-attention layer \
                 (the official code asserts the same)",
                self.fixed_t_layer,
                self.fixed_v_layer
            );
        }
        if !matches!(self.fusion_method.as_str(), "mul" | "sum") {
            bail!(
                "fusion_method `{}` is not supported (\"mul\" or \"sum\")",
                self.fusion_method
            );
        }
        for (flag, on, why) in [
            (
                "visual_target != 0",
                self.visual_target != 0,
                "only the class-distribution target (KL) of the published model",
            ),
            (
                "task_specific_tokens = true",
                self.task_specific_tokens,
                "the multi-task model's task token",
            ),
            (
                "dynamic_attention = true",
                self.dynamic_attention,
                "text-gated image attention",
            ),
            (
                "fast_mode = true",
                self.fast_mode,
                "one text against many images",
            ),
            (
                "in_batch_pairs = true",
                self.in_batch_pairs,
                "every text against every image of a batch",
            ),
            (
                "with_coattention = false",
                !self.with_coattention,
                "two streams that never meet",
            ),
            (
                "model = roberta",
                self.model != "bert",
                "RoBERTa's position offsets",
            ),
        ] {
            if on {
                bail!("{flag} is not supported ({why})");
            }
        }
        for (key, p) in [
            ("hidden_dropout_prob", self.hidden_dropout_prob),
            (
                "attention_probs_dropout_prob",
                self.attention_probs_dropout_prob,
            ),
            ("v_hidden_dropout_prob", self.v_hidden_dropout_prob),
            (
                "v_attention_probs_dropout_prob",
                self.v_attention_probs_dropout_prob,
            ),
        ] {
            probability_below_one(key, p)?;
        }
        positive("initializer_range", self.initializer_range)?;
        let layer = |d: f64, i: f64| 4.0 * d * d + 2.0 * d * i;
        let (t, v, bi) = (
            self.hidden_size as f64,
            self.v_hidden_size as f64,
            self.bi_hidden_size as f64,
        );
        fits_in_memory(
            &format!(
                "a ViLBERT of {} tokens, widths {} / {}, {} + {} layers",
                self.vocab_size,
                self.hidden_size,
                self.v_hidden_size,
                self.num_hidden_layers,
                self.v_num_hidden_layers
            ),
            4.0 * 4.0
                * (product(&[self.vocab_size, self.hidden_size])
                    + product(&[self.max_position_embeddings, self.hidden_size])
                    + product(&[self.v_feature_size, self.v_hidden_size])
                    + product(&[self.v_target_size, self.v_hidden_size])
                    + self.num_hidden_layers as f64 * layer(t, self.intermediate_size as f64)
                    + self.v_num_hidden_layers as f64 * layer(v, self.v_intermediate_size as f64)
                    + self.v_biattention_id.len() as f64
                        * (3.0 * bi * (t + v) + 4.0 * bi * (t + v) + layer(t, 0.0))),
        )?;
        Ok(())
    }
}
