//! VL-BERT's pretraining network as the official `ResNetVLBERTForPretraining` with precomputed
//! region features (github jackroos/VL-BERT, `pretrain/modules/resnet_vlbert_for_pretraining.py`,
//! `common/visual_linguistic_bert.py`, `common/fast_rcnn.py`), without the image backbone: the
//! features come from region files. Parameter paths are the official state-dict names (a few
//! renames below), so converted official checkpoints load as they are.
//!
//! One sequence per image-text pair, packed with no gap: `[CLS] text [SEP] RoI ... RoI [END]`.
//! - A RoI's representation: its box as a sin/cos embedding (see [`super::data`]) concatenated
//!   with its appearance feature (masked RoIs: the learned `object_mask_visual_embedding`)
//!   -> Dropout(0.1) -> Linear -> ReLU (`image_feature_extractor.obj_downsample`).
//! - Text tokens: word embedding + `visual_ln_text(representation of the whole image, RoI 0)`.
//! - RoIs: the learned `[IMG]` embedding (`object_linguistic_embeddings`; masked RoIs:
//!   `object_mask_word_embedding`) + `visual_ln_object(representation)`.
//! - Positions: text 0, 1, ...; every RoI the position after the text; `[END]` the next.
//!   Segments: text as given (0 for A, 1 for B), RoIs and `[END]` 2.
//! - Then + position + segment, LayerNorm, dropout; BERT's post-norm encoder (core).
//! - Heads: the masked-LM head tied to the word embeddings, the masked-RoI classification head
//!   (dense + GELU -> Linear), the caption-image relationship head (off in official configs).
//!
//! Deviation (named): padded keys get a score of -1e9 before the softmax instead of the
//! official -10000 (both give them zero weight in f32); outputs at padded positions are zeros.

use super::config::VlBertConfig;
use crate::core::attention::{normal_init, normal_linear};
use crate::core::checkpoint::{load_named, load_safetensors, named_tensors};
use crate::core::dropout::Dropout;
use crate::core::encoder::{Encoder, EncoderConfig, NormPlacement, HF_BERT_LAYER_RENAMES};
use crate::core::fused::gelu;
use crate::core::fused_ops::linear;
use crate::core::heads::TiedHead;
use crate::core::norm::LayerNorm;
use crate::text::model::Pooler;
use anyhow::{bail, Context, Result};
use burn::module::Module;
use burn::nn::{Embedding, EmbeddingConfig, Initializer, Linear, LinearConfig};
use burn::tensor::{Bool, Device, Int, Tensor, TensorData};
use std::collections::BTreeMap;
use std::path::Path;

/// `image_feature_extractor` of the official network: only its `obj_downsample` (the backbone
/// is not part of a Tessera model).
#[derive(Module, Debug)]
pub struct ImageFeatureExtractor {
    /// `obj_downsample.1` (index 1 of the official Sequential(Dropout, Linear, ReLU)).
    pub obj_downsample: Linear,
}

#[derive(Module, Debug)]
pub struct MvrcTransform {
    pub dense: Linear,
}

/// Masked-RoI classification: dense + GELU -> Linear(-> region classes).
#[derive(Module, Debug)]
pub struct MvrcHead {
    pub transform: MvrcTransform,
    pub region_cls_pred: Linear,
}

/// `relationsip_head` (sic) of the official code: caption-image match from the pooled output.
#[derive(Module, Debug)]
pub struct RelationshipHead {
    pub caption_image_relationship: Linear,
}

/// The VQA classifier of the official `ResNetVLBERT` (`CLASSIFIER_TYPE: mlm`, `final_mlp`): the
/// MLM head's transform (dense + GELU + LayerNorm) -> dropout -> Linear(-> answers), on the
/// hidden state of the `[MASK]` answer slot.
#[derive(Module, Debug)]
pub struct VqaHead {
    /// `final_mlp.0.dense`
    pub dense: Linear,
    /// `final_mlp.0.LayerNorm`
    pub layer_norm: LayerNorm,
    pub dropout: Dropout,
    /// `final_mlp.2`
    pub classifier: Linear,
}

impl VqaHead {
    pub fn forward(&self, h: Tensor<2>) -> Tensor<2> {
        let t = self.layer_norm.forward(gelu(linear(&self.dense, h)));
        linear(&self.classifier, self.dropout.forward(t))
    }
}

/// The grounding classifier of the official RefCOCO+ network (`final_mlp`): dense + GELU ->
/// dropout -> Linear(-> 1) on each RoI's hidden state.
#[derive(Module, Debug)]
pub struct GroundingHead {
    /// `final_mlp.0.dense`
    pub transform: MvrcTransform,
    pub dropout: Dropout,
    /// `final_mlp.2`
    pub classifier: Linear,
}

impl GroundingHead {
    /// [N, H] -> [N] scores.
    pub fn forward(&self, h: Tensor<2>) -> Tensor<1> {
        let t = gelu(linear(&self.transform.dense, h));
        let s = linear(&self.classifier, self.dropout.forward(t));
        let n = s.dims()[0];
        s.reshape([n])
    }
}

/// The official `VisualLinguisticBertForPretraining` (`vlbert.*`).
#[derive(Module, Debug)]
pub struct VisualLinguisticBert {
    pub word_embeddings: Embedding,
    pub end_embedding: Embedding,
    pub position_embeddings: Embedding,
    pub token_type_embeddings: Embedding,
    /// `embedding_LayerNorm`.
    pub embedding_layer_norm: LayerNorm,
    pub embedding_dropout: Dropout,
    pub visual_1x1_text: Option<Linear>,
    pub visual_1x1_object: Option<Linear>,
    pub visual_ln_text: LayerNorm,
    pub visual_ln_object: LayerNorm,
    pub encoder: Encoder,
    pub pooler: Option<Pooler>,
    /// `mlm_head.predictions`.
    pub mlm_head: Option<TiedHead>,
    pub mvrc_head: Option<MvrcHead>,
    pub relationsip_head: Option<RelationshipHead>,
}

/// The pretraining network (`ResNetVLBERTForPretraining` with precomputed features).
#[derive(Module, Debug)]
pub struct VlBert {
    pub image_feature_extractor: ImageFeatureExtractor,
    pub object_linguistic_embeddings: Embedding,
    pub object_mask_visual_embedding: Embedding,
    pub object_mask_word_embedding: Option<Embedding>,
    pub vlbert: VisualLinguisticBert,
    /// The VQA head (`final_mlp`), when the config has answers.
    pub final_mlp: Option<VqaHead>,
    /// The grounding head (`final_mlp` of the RefCOCO+ network), with `WITH_GROUNDING_HEAD`.
    pub grounding: Option<GroundingHead>,
    /// What a text-only sequence's tokens see in place of the whole image (the multitask
    /// network's `aux_text_visual_embedding`, with `WITH_TEXT_ONLY`). Its width is `visual_size`
    /// (the official code sizes it `hidden_size`: the two are equal in every official config).
    pub aux_text_visual_embedding: Option<Embedding>,
    /// The Dropout(0.1) in front of `obj_downsample`.
    pub obj_dropout: Dropout,
    pub position_offset: i64,
}

/// A batch of image-text pairs, prepared on the host ([`super::data`]), row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct VlBatch {
    pub batch: usize,
    /// Longest text (with `[CLS]`/`[SEP]`) T.
    pub text_len: usize,
    pub text_lens: Vec<usize>,
    /// [B, T] token ids and segments (0 text A, 1 text B), zero-padded.
    pub ids: Vec<u32>,
    pub type_ids: Vec<u32>,
    /// Most RoIs R (the whole image included).
    pub regions: usize,
    pub region_counts: Vec<usize>,
    /// [B, R, 8 * coordinate_embedding_dim] sin/cos box embeddings, zero-padded.
    pub coordinates: Vec<f32>,
    /// [B, R, F] appearance features, zero-padded.
    pub features: Vec<f32>,
    /// [B, R]: 1.0 where a RoI is masked (masked-RoI classification), else 0.0.
    pub masked_regions: Vec<f32>,
    /// Per row: a text-only sequence (no RoIs; its tokens see `aux_text_visual_embedding`).
    pub text_only: Vec<bool>,
}

/// Hidden states of a batch.
pub struct VlOutput {
    /// [B, T, H]: the text positions (`[CLS]` .. `[SEP]`), zeros beyond each text.
    pub text: Tensor<3>,
    /// [B, R, H]: the RoI positions (the whole image first), zeros for missing RoIs.
    pub objects: Tensor<3>,
    /// [B, L, H]: the whole packed sequence.
    pub sequence: Tensor<3>,
}

/// Our parameter paths -> the official names.
pub fn official_renames() -> Vec<(&'static str, &'static str)> {
    let mut r = vec![
        (".embedding_layer_norm.", ".embedding_LayerNorm."),
        (".obj_downsample.", ".obj_downsample.1."),
        (".mlm_head.dense.", ".mlm_head.predictions.transform.dense."),
        (
            ".mlm_head.layer_norm.",
            ".mlm_head.predictions.transform.LayerNorm.",
        ),
        (".mlm_head.bias.", ".mlm_head.predictions.bias."),
        (".final_mlp.dense.", ".final_mlp.0.dense."),
        (".final_mlp.layer_norm.", ".final_mlp.0.LayerNorm."),
        (".final_mlp.classifier.", ".final_mlp.2."),
        (".grounding.transform.", ".final_mlp.0."),
        (".grounding.classifier.", ".final_mlp.2."),
    ];
    r.extend_from_slice(HF_BERT_LAYER_RENAMES);
    r
}

fn int_tensor(v: Vec<i64>, shape: [usize; 2], device: &Device) -> Tensor<2, Int> {
    Tensor::from_data(TensorData::new(v, shape), device)
}

impl VlBert {
    /// A network with the official initialisation: N(0, initializer_range) weights, zero biases,
    /// LayerNorms at one except the visual ones at `visual_scale_*_init`, the masked-RoI visual
    /// embedding at zero.
    pub fn new(cfg: &VlBertConfig, device: &Device) -> Self {
        let std = cfg.initializer_range;
        let h = cfg.hidden_size;
        let eps = cfg.layer_norm_eps();
        let emb = |n: usize, d: usize| {
            EmbeddingConfig::new(n, d)
                .with_initializer(normal_init(std))
                .init(device)
        };
        let lin = |i: usize, o: usize| normal_linear(i, o, std, device);
        let scaled_ln = |scale: f64| {
            let mut ln = LayerNorm::new(h, eps, device);
            ln.gamma = Initializer::Constant { value: scale }.init([h], device);
            ln
        };
        let mut object_mask_visual_embedding = emb(1, cfg.object_feature_size);
        object_mask_visual_embedding.weight =
            Initializer::Zeros.init([1, cfg.object_feature_size], device);
        let projected = cfg.visual_size != h;
        Self {
            image_feature_extractor: ImageFeatureExtractor {
                obj_downsample: lin(cfg.object_input_size(), cfg.visual_size),
            },
            object_linguistic_embeddings: emb(1, h),
            object_mask_visual_embedding,
            object_mask_word_embedding: cfg.with_mvrc_loss.then(|| emb(1, h)),
            vlbert: VisualLinguisticBert {
                word_embeddings: emb(cfg.vocab_size, h),
                end_embedding: emb(1, h),
                position_embeddings: emb(cfg.max_position_embeddings, h),
                token_type_embeddings: emb(cfg.type_vocab_size, h),
                embedding_layer_norm: LayerNorm::new(h, eps, device),
                embedding_dropout: Dropout::new(cfg.hidden_dropout_prob),
                visual_1x1_text: projected.then(|| lin(cfg.visual_size, h)),
                visual_1x1_object: projected.then(|| lin(cfg.visual_size, h)),
                visual_ln_text: scaled_ln(cfg.visual_scale_text_init),
                visual_ln_object: scaled_ln(cfg.visual_scale_object_init),
                encoder: EncoderConfig {
                    hidden: h,
                    heads: cfg.num_attention_heads,
                    intermediate: cfg.intermediate_size,
                    layers: cfg.num_hidden_layers,
                    hidden_dropout: cfg.hidden_dropout_prob,
                    attention_dropout: cfg.attention_probs_dropout_prob,
                    norm: NormPlacement::Post,
                    layer_norm_eps: eps,
                    init_std: std,
                    layer_scale: None,
                }
                .init(device),
                pooler: cfg.with_pooler.then(|| Pooler { dense: lin(h, h) }),
                mlm_head: cfg
                    .with_mlm_loss
                    .then(|| TiedHead::new(h, cfg.vocab_size, true, eps, std, device)),
                mvrc_head: cfg.with_mvrc_loss.then(|| MvrcHead {
                    transform: MvrcTransform { dense: lin(h, h) },
                    region_cls_pred: lin(h, cfg.visual_region_classes),
                }),
                relationsip_head: cfg.with_rel_loss.then(|| RelationshipHead {
                    caption_image_relationship: lin(h, 2),
                }),
            },
            final_mlp: (cfg.answer_vocab_size > 0).then(|| VqaHead {
                dense: lin(h, h),
                layer_norm: LayerNorm::new(h, eps, device),
                dropout: Dropout::new(cfg.classifier_dropout),
                classifier: LinearConfig::new(h, cfg.answer_vocab_size)
                    .with_initializer(Initializer::XavierUniform { gain: 1.0 })
                    .init(device),
            }),
            grounding: cfg.with_grounding_head.then(|| GroundingHead {
                transform: MvrcTransform { dense: lin(h, h) },
                dropout: Dropout::new(cfg.classifier_dropout),
                classifier: LinearConfig::new(h, 1)
                    .with_initializer(Initializer::XavierUniform { gain: 1.0 })
                    .init(device),
            }),
            aux_text_visual_embedding: cfg.with_text_only.then(|| emb(1, cfg.visual_size)),
            obj_dropout: Dropout::new(0.1),
            position_offset: cfg.position_padding_idx + 1,
        }
    }

    pub fn hidden_size(&self) -> usize {
        self.vlbert.word_embeddings.weight.dims()[1]
    }

    /// Turn a network into the multitask one (text-only sequences): a new
    /// `aux_text_visual_embedding` from the official initialisation, unless it has one.
    pub fn with_text_only(mut self, cfg: &mut VlBertConfig, device: &Device) -> Self {
        if self.aux_text_visual_embedding.is_none() {
            self.aux_text_visual_embedding = Some(
                EmbeddingConfig::new(1, cfg.visual_size)
                    .with_initializer(normal_init(cfg.initializer_range))
                    .init(device),
            );
        }
        cfg.with_text_only = true;
        self
    }

    /// Region representations [B, R, visual_size] (`obj_downsample` of box embedding and
    /// feature; masked RoIs see the learned mask feature).
    fn object_reps(&self, b: &VlBatch, device: &Device) -> Tensor<3> {
        let (n, r) = (b.batch, b.regions);
        let c = b.coordinates.len() / (n * r).max(1);
        let f = b.features.len() / (n * r).max(1);
        let coords: Tensor<3> =
            Tensor::from_data(TensorData::new(b.coordinates.clone(), [n, r, c]), device);
        let mut feats: Tensor<3> =
            Tensor::from_data(TensorData::new(b.features.clone(), [n, r, f]), device);
        if b.masked_regions.iter().any(|&m| m != 0.0) {
            let m: Tensor<3> =
                Tensor::from_data(TensorData::new(b.masked_regions.clone(), [n, r, 1]), device);
            let mask_feat = self
                .object_mask_visual_embedding
                .weight
                .val()
                .reshape([1, 1, f]);
            feats = feats * m.clone().neg().add_scalar(1.0) + m * mask_feat;
        }
        let x = self
            .obj_dropout
            .forward(Tensor::cat(vec![coords, feats], 2));
        burn::tensor::activation::relu(linear(&self.image_feature_extractor.obj_downsample, x))
    }

    /// Hidden states of a prepared batch.
    pub fn forward(&self, b: &VlBatch, device: &Device) -> VlOutput {
        let v = &self.vlbert;
        let (n, t, r) = (b.batch, b.text_len, b.regions);
        let h = self.hidden_size();
        let reps = self.object_reps(b, device);

        // Text: word + visual term of the whole image (RoI 0), or of the text-only embedding
        // (zeros for a network without one).
        let ids = int_tensor(b.ids.iter().map(|&x| x as i64).collect(), [n, t], device);
        let mut image = reps.clone().narrow(1, 0, 1);
        if b.text_only.iter().any(|&x| x) {
            let m: Vec<f32> = b
                .text_only
                .iter()
                .map(|&x| f32::from(u8::from(x)))
                .collect();
            let m: Tensor<3> = Tensor::from_data(TensorData::new(m, [n, 1, 1]), device);
            image = image * m.clone().neg().add_scalar(1.0);
            if let Some(aux) = &self.aux_text_visual_embedding {
                let vs = aux.weight.dims()[1];
                image = image + m * aux.weight.val().reshape([1, 1, vs]);
            }
        }
        if let Some(p) = &v.visual_1x1_text {
            image = linear(p, image);
        }
        let text_vl = v.word_embeddings.forward(ids) + v.visual_ln_text.forward(image);

        // RoIs: [IMG] (or the mask word) + visual term.
        let mut visual = reps;
        if let Some(p) = &v.visual_1x1_object {
            visual = linear(p, visual);
        }
        let mut ling = self
            .object_linguistic_embeddings
            .weight
            .val()
            .reshape([1, 1, h]);
        let mut object_ling: Tensor<3> = ling.clone().expand([n, r, h]);
        if let Some(mask_word) = &self.object_mask_word_embedding {
            if b.masked_regions.iter().any(|&m| m != 0.0) {
                let m: Tensor<3> =
                    Tensor::from_data(TensorData::new(b.masked_regions.clone(), [n, r, 1]), device);
                ling = mask_word.weight.val().reshape([1, 1, h]);
                object_ling = object_ling * m.clone().neg().add_scalar(1.0) + m * ling;
            }
        }
        let object_vl = object_ling + v.visual_ln_object.forward(visual);

        // Pack [text | RoIs | END] per sample with no gap.
        let end: Tensor<3> = v
            .end_embedding
            .weight
            .val()
            .reshape([1, 1, h])
            .expand([n, 1, h]);
        let s = t + r + 1;
        let all = Tensor::cat(vec![text_vl, object_vl, end], 1).reshape([n * s, h]);
        let l = (0..n)
            .map(|i| b.text_lens[i] + b.region_counts[i] + 1)
            .max()
            .unwrap_or(1);
        let off = self.position_offset;
        let mut gather = Vec::with_capacity(n * l);
        let mut positions = Vec::with_capacity(n * l);
        let mut types = Vec::with_capacity(n * l);
        let mut padding = Vec::with_capacity(n * l);
        let mut object_index = Vec::with_capacity(n * r);
        let mut object_keep = Vec::with_capacity(n * r);
        for i in 0..n {
            let (tl, rc) = (b.text_lens[i], b.region_counts[i]);
            for p in 0..l {
                let (g, pos, ty) = if p < tl {
                    (i * s + p, p as i64 + off, b.type_ids[i * t + p] as i64)
                } else if p < tl + rc {
                    (i * s + t + (p - tl), tl as i64 + off, 2)
                } else {
                    (i * s + t + r, tl as i64 + 1 + off, 2)
                };
                let pad = p > tl + rc;
                gather.push(g as i64);
                positions.push(if pad { 0 } else { pos });
                types.push(if pad { 0 } else { ty });
                padding.push(pad);
            }
            for k in 0..r {
                object_index.push((i * l + (tl + k).min(l - 1)) as i64);
                object_keep.push(if k < rc { 1.0f32 } else { 0.0 });
            }
        }
        let idx: Tensor<1, Int> = Tensor::from_data(TensorData::new(gather, [n * l]), device);
        let vl = all.select(0, idx).reshape([n, l, h]);
        let x = vl
            + v.position_embeddings
                .forward(int_tensor(positions, [n, l], device))
            + v.token_type_embeddings
                .forward(int_tensor(types, [n, l], device));
        let x = v
            .embedding_dropout
            .forward(v.embedding_layer_norm.forward(x));
        let pad: Tensor<2, Bool> =
            Tensor::<2, Bool>::from_data(TensorData::new(padding, [n, l]), device);
        let sequence = v.encoder.forward(x, Some(pad));

        // Text positions are the first T of each sequence (beyond a text: zeros).
        let text_keep: Vec<f32> = (0..n)
            .flat_map(|i| (0..t).map(move |p| if p < b.text_lens[i] { 1.0 } else { 0.0 }))
            .collect();
        let text_keep: Tensor<3> = Tensor::from_data(TensorData::new(text_keep, [n, t, 1]), device);
        let text = sequence.clone().narrow(1, 0, t.min(l)) * text_keep;
        let oi: Tensor<1, Int> = Tensor::from_data(TensorData::new(object_index, [n * r]), device);
        let ok: Tensor<3> = Tensor::from_data(TensorData::new(object_keep, [n, r, 1]), device);
        let objects = sequence
            .clone()
            .reshape([n * l, h])
            .select(0, oi)
            .reshape([n, r, h])
            * ok;
        VlOutput {
            text,
            objects,
            sequence,
        }
    }

    /// Masked-LM scores [N, H] -> [N, V].
    pub fn mlm_logits(&self, h: Tensor<2>) -> Option<Tensor<2>> {
        let head = self.vlbert.mlm_head.as_ref()?;
        Some(head.logits(h, self.vlbert.word_embeddings.weight.val()))
    }

    /// Masked-RoI class scores [N, H] -> [N, C].
    pub fn mvrc_logits(&self, h: Tensor<2>) -> Option<Tensor<2>> {
        let head = self.vlbert.mvrc_head.as_ref()?;
        Some(linear(
            &head.region_cls_pred,
            gelu(linear(&head.transform.dense, h)),
        ))
    }

    /// The model's tensors under the official names (the tied MLM decoder stored once, as the
    /// word embeddings).
    pub fn official_tensors(&self) -> Vec<(String, TensorData)> {
        named_tensors(self, &official_renames())
    }
}

/// Load a model directory's `model.safetensors` (official names) into a network built from
/// `cfg`. `module.` prefixes are dropped; the MLM decoder is tied to the word embeddings (a
/// stored `decoder.weight` is ignored); anything missing or misshapen is an error naming it.
pub fn load_official(cfg: &VlBertConfig, weights: &Path, device: &Device) -> Result<VlBert> {
    let (tensors, _) = load_safetensors(weights)
        .with_context(|| format!("cannot read weights {}", weights.display()))?;
    let mut named: BTreeMap<String, TensorData> = BTreeMap::new();
    for (k, v) in tensors {
        let k = k.strip_prefix("module.").unwrap_or(&k).to_string();
        if k == "vlbert.mlm_head.predictions.decoder.weight" {
            continue;
        }
        if k.starts_with("image_feature_extractor.")
            && !k.starts_with("image_feature_extractor.obj_downsample.")
        {
            bail!(
                "{}: holds the image backbone (`{k}`): convert the checkpoint with \
                 scripts/convert_vlbert.py, which drops it",
                weights.display()
            );
        }
        named.insert(k, v);
    }
    let model = VlBert::new(cfg, device);
    load_named(model, &named, &official_renames(), device, weights)
}

/// Load a model directory's weights into a network with a new task head (`cfg` with answers, or
/// with the grounding head): a VQA head's transform starts from the masked-LM head's transform
/// when the file has one (the official code takes it from BERT's, which a pretrained VL-BERT's
/// started from), a grounding head's from the masked-RoI head's transform; classifiers from
/// Xavier initialisation as the official code.
pub fn load_with_task_head(cfg: &VlBertConfig, weights: &Path, device: &Device) -> Result<VlBert> {
    let (tensors, _) = load_safetensors(weights)
        .with_context(|| format!("cannot read weights {}", weights.display()))?;
    let fresh = VlBert::new(cfg, device);
    let mut named: BTreeMap<String, TensorData> = named_tensors(&fresh, &official_renames())
        .into_iter()
        .collect();
    let mut file: BTreeMap<String, TensorData> = BTreeMap::new();
    for (k, v) in tensors {
        let k = k.strip_prefix("module.").unwrap_or(&k).to_string();
        file.insert(k, v);
    }
    if !file.contains_key("vlbert.word_embeddings.weight") {
        bail!(
            "{}: no `vlbert.word_embeddings.weight`: not a VL-BERT model",
            weights.display()
        );
    }
    for (k, v) in &file {
        if k.starts_with("final_mlp.") {
            continue; // a head for another answer vocabulary
        }
        if named.contains_key(k) {
            named.insert(k.clone(), v.clone());
        }
    }
    for (from, to) in [
        (
            "vlbert.mlm_head.predictions.transform.dense.weight",
            "final_mlp.0.dense.weight",
        ),
        (
            "vlbert.mlm_head.predictions.transform.dense.bias",
            "final_mlp.0.dense.bias",
        ),
        (
            "vlbert.mlm_head.predictions.transform.LayerNorm.weight",
            "final_mlp.0.LayerNorm.weight",
        ),
        (
            "vlbert.mlm_head.predictions.transform.LayerNorm.bias",
            "final_mlp.0.LayerNorm.bias",
        ),
    ] {
        if let Some(v) = file.get(from) {
            named.insert(to.to_string(), v.clone());
        }
    }
    load_named(fresh, &named, &official_renames(), device, weights)
}

/// A network whose text side starts from a Hugging Face BERT directory (`model.safetensors`
/// of `BertModel`, `BertForMaskedLM` or a sentence-transformers BERT), as the official
/// `load_language_pretrained_model`: word, position and the first two segment embeddings, the
/// embedding LayerNorm, the encoder, the pooler and the masked-LM head when present; the rest
/// keeps the official initialisation.
pub fn from_bert(cfg: &VlBertConfig, dir: &Path, device: &Device) -> Result<VlBert> {
    let weights = dir.join("model.safetensors");
    let (tensors, _) = load_safetensors(&weights)
        .with_context(|| format!("cannot read weights {}", weights.display()))?;
    let fresh = VlBert::new(cfg, device);
    let mut named: BTreeMap<String, TensorData> = named_tensors(&fresh, &official_renames())
        .into_iter()
        .collect();
    let mut taken = 0usize;
    for (k, v) in tensors {
        let k = k.strip_prefix("bert.").unwrap_or(&k).to_string();
        let target = if let Some(rest) = k.strip_prefix("embeddings.") {
            match rest {
                "LayerNorm.weight" | "LayerNorm.bias" => {
                    format!("vlbert.embedding_{rest}")
                }
                "token_type_embeddings.weight" => {
                    // BERT has 2 segments; VL-BERT's third (RoIs) keeps its initialisation.
                    let key = "vlbert.token_type_embeddings.weight".to_string();
                    let mut rows: Vec<f32> = named[&key]
                        .clone()
                        .convert::<f32>()
                        .try_to_vec::<f32>()
                        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
                    let given: Vec<f32> = v
                        .clone()
                        .convert::<f32>()
                        .try_to_vec::<f32>()
                        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
                    if given.len() > rows.len() || !given.len().is_multiple_of(cfg.hidden_size) {
                        bail!(
                            "{}: token_type_embeddings {:?} do not fit width {}",
                            weights.display(),
                            v.shape(),
                            cfg.hidden_size
                        );
                    }
                    rows[..given.len()].copy_from_slice(&given);
                    named.insert(
                        key,
                        TensorData::new(rows, [cfg.type_vocab_size, cfg.hidden_size]),
                    );
                    taken += 1;
                    continue;
                }
                other => format!("vlbert.{other}"),
            }
        } else if k.starts_with("encoder.") || k.starts_with("pooler.") {
            format!("vlbert.{k}")
        } else if let Some(rest) = k.strip_prefix("cls.predictions.") {
            if rest.starts_with("decoder.") {
                continue;
            }
            format!("vlbert.mlm_head.predictions.{rest}")
        } else {
            continue;
        };
        if let Some(old) = named.get(&target) {
            if old.shape() != v.shape() {
                bail!(
                    "{}: `{k}` has shape {:?} but the network's `{target}` {:?}",
                    weights.display(),
                    v.shape(),
                    old.shape()
                );
            }
            named.insert(target, v);
            taken += 1;
        }
    }
    if taken == 0 {
        bail!("{}: no BERT tensors found", weights.display());
    }
    load_named(fresh, &named, &official_renames(), device, &weights)
}
