//! VL-BERT's network configuration: the official `NETWORK.VLBERT` keys (flat, as in the YAML of
//! github jackroos/VL-BERT, defaults of its `pretrain/function/config.py` where the YAMLs agree),
//! the `NETWORK` flags that shape the network, and the two sizes the official code hard-wires.
//! A model directory's `config.json` holds exactly these keys.

use crate::text::config::BertConfig;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct VlBertConfig {
    // --- NETWORK.VLBERT
    pub vocab_size: usize,
    pub hidden_size: usize,
    /// Width of the region representation after `obj_downsample` (`NETWORK.IMAGE_FINAL_DIM`);
    /// a Linear maps it to `hidden_size` when they differ (`visual_1x1_*`).
    pub visual_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    /// Only "gelu" (exact): the activation of every published VL-BERT.
    pub hidden_act: String,
    pub hidden_dropout_prob: f64,
    pub attention_probs_dropout_prob: f64,
    pub max_position_embeddings: usize,
    pub type_vocab_size: usize,
    pub initializer_range: f64,
    /// Initial scale of `visual_ln_text`/`visual_ln_object` (0: the visual terms start silent).
    pub visual_scale_text_init: f64,
    pub visual_scale_object_init: f64,
    /// The visual terms through LayerNorms (true in every official config). `false` (a learned
    /// scalar scale instead) is refused: no published checkpoint uses it.
    pub visual_ln: bool,
    pub with_pooler: bool,
    /// Classes of the masked-RoI head (1601 for Visual Genome's detector).
    pub visual_region_classes: usize,
    /// BERT: -1 (positions start at 0); RoBERTa: 1.
    pub position_padding_idx: i64,
    /// RoIs share the position after the text (the only mode the official code allows).
    pub obj_pos_id_relative: bool,
    /// Frozen word embeddings with a trainable copy of the first 1000 (refused: unused by the
    /// official configs).
    pub word_embedding_frozen: bool,
    pub pos_embedding_frozen: bool,
    pub input_transform_type: usize,
    pub object_word_embed_mode: usize,
    // --- NETWORK flags
    #[serde(rename = "IMAGE_FEAT_PRECOMPUTED")]
    pub image_feat_precomputed: bool,
    #[serde(rename = "IMAGE_FINAL_DIM")]
    pub image_final_dim: usize,
    #[serde(rename = "IMAGE_SEMANTIC")]
    pub image_semantic: bool,
    /// The whole image is box 0; its representation is added to every text token.
    #[serde(rename = "ADD_IMAGE_AS_A_BOX")]
    pub add_image_as_a_box: bool,
    /// Test-time resize (shorter side, longer-side cap) the boxes are scaled by.
    #[serde(rename = "SCALES")]
    pub scales: [usize; 2],
    #[serde(rename = "WITH_MLM_LOSS")]
    pub with_mlm_loss: bool,
    #[serde(rename = "WITH_MVRC_LOSS")]
    pub with_mvrc_loss: bool,
    #[serde(rename = "WITH_REL_LOSS")]
    pub with_rel_loss: bool,
    #[serde(rename = "MLM_LOSS_NORM_IN_BATCH_FIRST")]
    pub mlm_loss_norm_in_batch_first: bool,
    #[serde(rename = "MVRC_LOSS_NORM_IN_BATCH_FIRST")]
    pub mvrc_loss_norm_in_batch_first: bool,
    /// Answers of the VQA head (`DATASET.ANSWER_VOCAB_SIZE`); 0: no VQA head.
    #[serde(rename = "ANSWER_VOCAB_SIZE")]
    pub answer_vocab_size: usize,
    #[serde(rename = "CLASSIFIER_DROPOUT")]
    pub classifier_dropout: f64,
    /// The grounding head of the official RefCOCO+ network (`final_mlp`: dense + GELU ->
    /// dropout -> Linear(-> 1), a score per RoI for the referring expression). Tessera's key: the
    /// official code tells the two networks apart by module, not by a flag.
    #[serde(rename = "WITH_GROUNDING_HEAD")]
    pub with_grounding_head: bool,
    /// The multitask pretraining network (`ResNetVLBERTForPretrainingMultitask`, the official
    /// `base_prec_4x16G_fp32` and `*_e2e_*` configs): text-only sequences see the learned
    /// `aux_text_visual_embedding` where image-text pairs see the whole image. Tessera's key:
    /// the official code tells the networks apart by module.
    #[serde(rename = "WITH_TEXT_ONLY")]
    pub with_text_only: bool,
    // --- sizes the official code hard-wires
    /// Appearance feature size F of the region files (2048 in the official code).
    pub object_feature_size: usize,
    /// Sin/cos frequencies per box coordinate (256 in the official code: 4 x 2 x 256 = 2048).
    pub coordinate_embedding_dim: usize,
}

impl Default for VlBertConfig {
    /// VL-BERT-Base on bottom-up features (`cfgs/pretrain/base_prec_4x16G_fp32.yaml`).
    fn default() -> Self {
        Self {
            vocab_size: 30_522,
            hidden_size: 768,
            visual_size: 768,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            intermediate_size: 3072,
            hidden_act: "gelu".into(),
            hidden_dropout_prob: 0.1,
            attention_probs_dropout_prob: 0.1,
            max_position_embeddings: 512,
            type_vocab_size: 3,
            initializer_range: 0.02,
            visual_scale_text_init: 0.0,
            visual_scale_object_init: 0.0,
            visual_ln: true,
            with_pooler: false,
            visual_region_classes: 1601,
            position_padding_idx: -1,
            obj_pos_id_relative: true,
            word_embedding_frozen: false,
            pos_embedding_frozen: false,
            input_transform_type: 1,
            object_word_embed_mode: 2,
            image_feat_precomputed: true,
            image_final_dim: 768,
            image_semantic: false,
            add_image_as_a_box: true,
            scales: [600, 1000],
            with_mlm_loss: true,
            with_mvrc_loss: true,
            with_rel_loss: false,
            mlm_loss_norm_in_batch_first: false,
            mvrc_loss_norm_in_batch_first: false,
            answer_vocab_size: 0,
            classifier_dropout: 0.1,
            with_grounding_head: false,
            with_text_only: false,
            object_feature_size: 2048,
            coordinate_embedding_dim: 256,
        }
    }
}

impl VlBertConfig {
    /// A network the size of a Hugging Face BERT (its text side is initialised from it), reading
    /// region features of size `feature_size` and predicting `classes` region classes.
    pub fn from_bert(bert: &BertConfig, feature_size: usize, classes: usize) -> Self {
        Self {
            vocab_size: bert.vocab_size,
            hidden_size: bert.hidden_size,
            visual_size: bert.hidden_size,
            image_final_dim: bert.hidden_size,
            num_hidden_layers: bert.num_hidden_layers,
            num_attention_heads: bert.num_attention_heads,
            intermediate_size: bert.intermediate_size,
            hidden_dropout_prob: bert.hidden_dropout_prob,
            attention_probs_dropout_prob: bert.attention_probs_dropout_prob,
            max_position_embeddings: bert.max_position_embeddings,
            initializer_range: bert.initializer_range,
            visual_region_classes: classes,
            object_feature_size: feature_size,
            ..Self::default()
        }
    }

    /// Width of `obj_downsample`'s input: the box's sin/cos embedding and its feature.
    pub fn object_input_size(&self) -> usize {
        8 * self.coordinate_embedding_dim + self.object_feature_size
    }

    /// The highest position a text of `text_len` tokens (with `[CLS]`/`[SEP]`) uses: its RoIs
    /// share position `text_len`, `[END]` takes the next.
    pub fn max_text_len(&self) -> usize {
        // position id = grid position + position_padding_idx + 1 must stay below the table.
        let offset = self.position_padding_idx + 1;
        (self.max_position_embeddings as i64 - 2 - offset).max(0) as usize
    }

    pub fn from_json_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let cfg: Self = serde_json::from_str(&text)
            .with_context(|| format!("{}: not a VL-BERT config.json", path.display()))?;
        cfg.validate()
            .with_context(|| format!("{}: unsupported configuration", path.display()))?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<()> {
        use crate::core::validate::*;
        if self.hidden_act != "gelu" {
            bail!(
                "hidden_act `{}` is not supported (only the exact \"gelu\")",
                self.hidden_act
            );
        }
        for (key, v) in [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("visual_size", self.visual_size),
            ("num_attention_heads", self.num_attention_heads),
            ("intermediate_size", self.intermediate_size),
            ("max_position_embeddings", self.max_position_embeddings),
            ("visual_region_classes", self.visual_region_classes),
            ("object_feature_size", self.object_feature_size),
            ("coordinate_embedding_dim", self.coordinate_embedding_dim),
            ("IMAGE_FINAL_DIM", self.image_final_dim),
        ] {
            at_least_one(key, v)?;
        }
        int_in("num_hidden_layers", self.num_hidden_layers, 0, 1024)?;
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            bail!(
                "hidden_size {} is not divisible by num_attention_heads {}",
                self.hidden_size,
                self.num_attention_heads
            );
        }
        if self.type_vocab_size < 3 {
            bail!(
                "type_vocab_size {} < 3: VL-BERT's RoIs are segment 2",
                self.type_vocab_size
            );
        }
        if self.image_final_dim != self.visual_size {
            bail!(
                "IMAGE_FINAL_DIM {} differs from visual_size {}: the region representation \
                 feeds the visual terms directly",
                self.image_final_dim,
                self.visual_size
            );
        }
        if !(-1..=1).contains(&self.position_padding_idx) {
            bail!(
                "position_padding_idx {} is not supported (-1 for BERT, 1 for RoBERTa)",
                self.position_padding_idx
            );
        }
        if self.max_text_len() < 3 {
            bail!(
                "max_position_embeddings {} leaves no room for [CLS] text [SEP] RoIs [END]",
                self.max_position_embeddings
            );
        }
        for (flag, on, why) in [
            (
                "visual_ln = false",
                !self.visual_ln,
                "a learned scalar visual scale",
            ),
            (
                "obj_pos_id_relative = false",
                !self.obj_pos_id_relative,
                "fixed positions 510/511 for RoIs (the official code refuses it too)",
            ),
            (
                "word_embedding_frozen = true",
                self.word_embedding_frozen,
                "frozen word embeddings with special-word copies",
            ),
            (
                "IMAGE_SEMANTIC = true",
                self.image_semantic,
                "class-label embeddings of the boxes",
            ),
            (
                "IMAGE_FEAT_PRECOMPUTED = false",
                !self.image_feat_precomputed,
                "the end-to-end ResNet backbone; Tessera reads region files (tessera regions)",
            ),
            (
                "ADD_IMAGE_AS_A_BOX = false",
                !self.add_image_as_a_box,
                "text tokens without the whole image's feature",
            ),
        ] {
            if on {
                bail!("{flag} is not supported ({why})");
            }
        }
        probability_below_one("hidden_dropout_prob", self.hidden_dropout_prob)?;
        probability_below_one(
            "attention_probs_dropout_prob",
            self.attention_probs_dropout_prob,
        )?;
        positive("initializer_range", self.initializer_range)?;
        probability_below_one("CLASSIFIER_DROPOUT", self.classifier_dropout)?;
        if self.with_grounding_head && self.answer_vocab_size > 0 {
            bail!(
                "WITH_GROUNDING_HEAD and ANSWER_VOCAB_SIZE {}: a model holds one task head \
                 (`final_mlp`), as the official VQA and RefCOCO+ networks",
                self.answer_vocab_size
            );
        }
        for (key, v) in [
            ("visual_scale_text_init", self.visual_scale_text_init),
            ("visual_scale_object_init", self.visual_scale_object_init),
        ] {
            if !v.is_finite() {
                bail!("{key} must be a finite number, got {v}");
            }
        }
        if self.scales[0] == 0 || self.scales[0] > self.scales[1] {
            bail!(
                "SCALES [{}, {}] must be a positive shorter side no larger than the cap",
                self.scales[0],
                self.scales[1]
            );
        }
        fits_in_memory(
            &format!(
                "a VL-BERT of {} tokens, width {}, {} layers",
                self.vocab_size, self.hidden_size, self.num_hidden_layers
            ),
            4.0 * 4.0
                * (product(&[self.vocab_size, self.hidden_size])
                    + product(&[self.max_position_embeddings, self.hidden_size])
                    + product(&[self.object_input_size(), self.visual_size])
                    + product(&[self.visual_region_classes, self.hidden_size])
                    + self.num_hidden_layers as f64
                        * (4.0 * product(&[self.hidden_size, self.hidden_size])
                            + 2.0 * product(&[self.hidden_size, self.intermediate_size]))),
        )?;
        Ok(())
    }

    /// The text encoder's shape, for the shared encoder layers.
    pub fn layer_norm_eps(&self) -> f64 {
        // BertLayerNorm(eps=1e-12) everywhere in the official code.
        1e-12
    }
}
