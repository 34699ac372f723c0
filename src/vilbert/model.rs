//! ViLBERT's network as the official `BertForMultiModalPreTraining` and `VILBertForVLTasks`
//! (github facebookresearch/vilbert-multi-task, `vilbert/vilbert.py`). Parameter paths are the
//! official state-dict names (renames below), so converted official checkpoints load as they are.
//!
//! - Text stream: BERT's embeddings (word + position + segment, LayerNorm, dropout) and
//!   post-norm layers (core).
//! - Image stream: `LayerNorm(Linear(feature) + Linear(5-d location))`, dropout, then its own
//!   post-norm layers (width `v_hidden_size`). The global image token (mean feature, location
//!   `[0, 0, 1, 1, 1]`) is the first region; the data side prepends it ([`super::data`]).
//! - Co-attention layers (core) interleaved as `v_biattention_id` / `t_biattention_id` say.
//! - Poolers: ReLU(Linear(first token)) of each stream into `bi_hidden_size`; the fused pooled
//!   output is their product (`fusion_method` "mul") or sum, then dropout.
//! - Heads: masked LM tied to the word embeddings; masked-region class distribution (dense +
//!   GELU + LayerNorm -> Linear(-> v_target_size)); alignment (Linear(-> 2) of the fused output,
//!   class 0 = the caption belongs to the image); VQA (`vil_prediction`: Linear -> GELU ->
//!   LayerNorm -> Linear); retrieval (`vil_logit`: Linear(-> 1)).
//!
//! Deviation (named): padded keys get -1e9 before the softmax instead of the official -10000
//! (both give them zero weight in f32).

use super::config::VilBertConfig;
use crate::core::attention::normal_linear;
use crate::core::checkpoint::{load_named, load_safetensors, named_tensors};
use crate::core::coattention::{CoAttentionConfig, CoAttentionLayer, COATTENTION_RENAMES};
use crate::core::dropout::Dropout;
use crate::core::embeddings::{Embeddings, EmbeddingsConfig, HF_EMBEDDING_RENAMES};
use crate::core::encoder::{EncoderConfig, EncoderLayer, NormPlacement, HF_BERT_LAYER_RENAMES};
use crate::core::fused::gelu;
use crate::core::fused_ops::linear;
use crate::core::heads::TiedHead;
use crate::core::norm::LayerNorm;
use crate::text::model::Pooler;
use anyhow::{bail, Context, Result};
use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::activation::relu;
use burn::tensor::{Bool, Device, Int, Tensor, TensorData};
use std::collections::BTreeMap;
use std::path::Path;

/// `bert.v_embeddings`.
#[derive(Module, Debug)]
pub struct ImageEmbeddings {
    pub image_embeddings: Linear,
    pub image_location_embeddings: Linear,
    pub layer_norm: LayerNorm,
    pub dropout: Dropout,
}

/// `bert.encoder`: text layers, image layers, co-attention layers and their schedule.
#[derive(Module, Debug)]
pub struct CoEncoder {
    pub layer: Vec<EncoderLayer>,
    pub v_layer: Vec<EncoderLayer>,
    pub c_layer: Vec<CoAttentionLayer>,
    pub v_biattention_id: Vec<usize>,
    pub t_biattention_id: Vec<usize>,
    pub fixed_t_layer: usize,
    pub fixed_v_layer: usize,
}

/// `bert`: the two-stream encoder with its embeddings and poolers.
#[derive(Module, Debug)]
pub struct VilBertModel {
    pub embeddings: Embeddings,
    pub v_embeddings: ImageEmbeddings,
    pub encoder: CoEncoder,
    pub t_pooler: Pooler,
    pub v_pooler: Pooler,
}

/// `cls.imagePredictions.transform` (dense + GELU + LayerNorm).
#[derive(Module, Debug)]
pub struct HeadTransform {
    pub dense: Linear,
    pub layer_norm: LayerNorm,
}

/// `cls.imagePredictions`.
#[derive(Module, Debug)]
pub struct ImagePredictionHead {
    pub transform: HeadTransform,
    pub decoder: Linear,
}

/// `cls`: `BertPreTrainingHeads`.
#[derive(Module, Debug)]
pub struct PreTrainingHeads {
    pub predictions: TiedHead,
    pub bi_seq_relationship: Linear,
    pub image_predictions: ImagePredictionHead,
    /// Dropout(0.1) on the fused pooled output before `bi_seq_relationship`.
    pub dropout: Dropout,
}

/// The official `SimpleClassifier` (`logit_fc`: Linear -> GELU -> LayerNorm -> Linear).
#[derive(Module, Debug)]
pub struct SimpleClassifier {
    pub fc0: Linear,
    pub norm: LayerNorm,
    pub fc3: Linear,
}

impl SimpleClassifier {
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        linear(&self.fc3, self.norm.forward(gelu(linear(&self.fc0, x))))
    }
}

/// The whole network: pretraining heads and, when configured, the VQA and retrieval heads.
#[derive(Module, Debug)]
pub struct VilBert {
    pub bert: VilBertModel,
    pub cls: PreTrainingHeads,
    pub vil_prediction: Option<SimpleClassifier>,
    pub vil_logit: Option<Linear>,
    /// `VILBertForVLTasks.dropout` (0.1) on the fused output before the task heads.
    pub dropout: Dropout,
    /// Fusion of the pooled outputs: the sum when true, else the product.
    pub fusion_sum: bool,
}

/// A batch of image-text pairs prepared on the host ([`super::data`]), row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct VilBatch {
    pub batch: usize,
    /// Longest `[CLS] text [SEP]` T.
    pub text_len: usize,
    pub text_lens: Vec<usize>,
    /// [B, T] token ids and segments, zero-padded.
    pub ids: Vec<u32>,
    pub type_ids: Vec<u32>,
    /// Most regions R, the global image token included.
    pub regions: usize,
    pub region_counts: Vec<usize>,
    /// [B, R, F] features and [B, R, 5] locations, zero-padded.
    pub features: Vec<f32>,
    pub locations: Vec<f32>,
}

/// What the network gives for a batch.
pub struct VilOutput {
    /// [B, T, H]: `sequence_output_t`.
    pub text: Tensor<3>,
    /// [B, R, Hv]: `sequence_output_v`.
    pub image: Tensor<3>,
    /// [B, bi]: `pooled_output_t`, `pooled_output_v`.
    pub pooled_t: Tensor<2>,
    pub pooled_v: Tensor<2>,
}

/// Our parameter paths -> the official names (first match wins).
pub fn official_renames() -> Vec<(&'static str, &'static str)> {
    let mut r = vec![
        (".v_embeddings.layer_norm.", ".v_embeddings.LayerNorm."),
        (
            ".cls.predictions.dense.",
            ".cls.predictions.transform.dense.",
        ),
        (
            ".cls.predictions.layer_norm.",
            ".cls.predictions.transform.LayerNorm.",
        ),
        (
            ".image_predictions.transform.layer_norm.",
            ".imagePredictions.transform.LayerNorm.",
        ),
        (".image_predictions.", ".imagePredictions."),
        (".vil_prediction.fc0.", ".vil_prediction.logit_fc.0."),
        (".vil_prediction.norm.", ".vil_prediction.logit_fc.2."),
        (".vil_prediction.fc3.", ".vil_prediction.logit_fc.3."),
    ];
    r.extend_from_slice(HF_EMBEDDING_RENAMES);
    r.extend_from_slice(COATTENTION_RENAMES);
    r.extend_from_slice(HF_BERT_LAYER_RENAMES);
    r
}

fn int_tensor(v: &[u32], shape: [usize; 2], device: &Device) -> Tensor<2, Int> {
    let v: Vec<i64> = v.iter().map(|&x| x as i64).collect();
    Tensor::from_data(TensorData::new(v, shape), device)
}

/// True at padding: [B, L] from per-row lengths.
fn padding(lens: &[usize], l: usize, device: &Device) -> Tensor<2, Bool> {
    let v: Vec<bool> = lens
        .iter()
        .flat_map(|&n| (0..l).map(move |p| p >= n))
        .collect();
    Tensor::from_data(TensorData::new(v, [lens.len(), l]), device)
}

impl VilBert {
    /// A network with the official initialisation: weights N(0, initializer_range), biases
    /// zero, LayerNorms at one.
    pub fn new(cfg: &VilBertConfig, device: &Device) -> Self {
        let std = cfg.initializer_range;
        let eps = cfg.layer_norm_eps();
        let lin = |i: usize, o: usize| normal_linear(i, o, std, device);
        let (t, v, bi) = (cfg.hidden_size, cfg.v_hidden_size, cfg.bi_hidden_size);
        let text_layers = EncoderConfig {
            hidden: t,
            heads: cfg.num_attention_heads,
            intermediate: cfg.intermediate_size,
            layers: cfg.num_hidden_layers,
            hidden_dropout: cfg.hidden_dropout_prob,
            attention_dropout: cfg.attention_probs_dropout_prob,
            norm: NormPlacement::Post,
            layer_norm_eps: eps,
            init_std: std,
            layer_scale: None,
        };
        let image_layers = EncoderConfig {
            hidden: v,
            heads: cfg.v_num_attention_heads,
            intermediate: cfg.v_intermediate_size,
            layers: cfg.v_num_hidden_layers,
            hidden_dropout: cfg.v_hidden_dropout_prob,
            attention_dropout: cfg.v_attention_probs_dropout_prob,
            ..text_layers.clone()
        };
        let co = CoAttentionConfig {
            v_hidden: v,
            t_hidden: t,
            bi_hidden: bi,
            bi_heads: cfg.bi_num_attention_heads,
            v_intermediate: cfg.v_intermediate_size,
            t_intermediate: cfg.intermediate_size,
            v_hidden_dropout: cfg.v_hidden_dropout_prob,
            v_attention_dropout: cfg.v_attention_probs_dropout_prob,
            t_hidden_dropout: cfg.hidden_dropout_prob,
            t_attention_dropout: cfg.attention_probs_dropout_prob,
            layer_norm_eps: eps,
            init_std: std,
        };
        Self {
            bert: VilBertModel {
                embeddings: EmbeddingsConfig {
                    vocab: cfg.vocab_size,
                    hidden: t,
                    max_positions: cfg.max_position_embeddings,
                    type_vocab: cfg.type_vocab_size,
                    dropout: cfg.hidden_dropout_prob,
                    layer_norm_eps: eps,
                    init_std: std,
                }
                .init(device),
                v_embeddings: ImageEmbeddings {
                    image_embeddings: lin(cfg.v_feature_size, v),
                    image_location_embeddings: lin(5, v),
                    layer_norm: LayerNorm::new(v, eps, device),
                    // The official module uses the text stream's `hidden_dropout_prob` here.
                    dropout: Dropout::new(cfg.hidden_dropout_prob),
                },
                encoder: CoEncoder {
                    layer: text_layers.init(device).layer,
                    v_layer: image_layers.init(device).layer,
                    c_layer: cfg
                        .v_biattention_id
                        .iter()
                        .map(|_| co.init(device))
                        .collect(),
                    v_biattention_id: cfg.v_biattention_id.clone(),
                    t_biattention_id: cfg.t_biattention_id.clone(),
                    fixed_t_layer: cfg.fixed_t_layer,
                    fixed_v_layer: cfg.fixed_v_layer,
                },
                t_pooler: Pooler { dense: lin(t, bi) },
                v_pooler: Pooler { dense: lin(v, bi) },
            },
            cls: PreTrainingHeads {
                predictions: TiedHead::new(t, cfg.vocab_size, true, eps, std, device),
                bi_seq_relationship: lin(bi, 2),
                image_predictions: ImagePredictionHead {
                    transform: HeadTransform {
                        dense: lin(v, v),
                        layer_norm: LayerNorm::new(v, eps, device),
                    },
                    decoder: lin(v, cfg.v_target_size),
                },
                dropout: Dropout::new(0.1),
            },
            vil_prediction: (cfg.num_labels > 0).then(|| SimpleClassifier {
                fc0: lin(bi, 2 * bi),
                norm: LayerNorm::new(2 * bi, eps, device),
                fc3: lin(2 * bi, cfg.num_labels),
            }),
            vil_logit: cfg.with_retrieval_head.then(|| lin(bi, 1)),
            dropout: Dropout::new(0.1),
            fusion_sum: cfg.fusion_method == "sum",
        }
    }

    pub fn text_hidden(&self) -> usize {
        self.bert.embeddings.word_embeddings.weight.dims()[1]
    }

    pub fn image_hidden(&self) -> usize {
        self.bert.v_embeddings.layer_norm.gamma.dims()[0]
    }

    /// The two streams and their pooled outputs for a prepared batch.
    pub fn forward(&self, b: &VilBatch, device: &Device) -> VilOutput {
        let (n, t, r) = (b.batch, b.text_len, b.regions);
        let m = &self.bert;
        let mut text = m.embeddings.forward(
            int_tensor(&b.ids, [n, t], device),
            Some(int_tensor(&b.type_ids, [n, t], device)),
        );
        let f = b.features.len() / (n * r).max(1);
        let feats: Tensor<3> =
            Tensor::from_data(TensorData::new(b.features.clone(), [n, r, f]), device);
        let locs: Tensor<3> =
            Tensor::from_data(TensorData::new(b.locations.clone(), [n, r, 5]), device);
        let e = &m.v_embeddings;
        let mut image = e.dropout.forward(e.layer_norm.forward(
            linear(&e.image_embeddings, feats) + linear(&e.image_location_embeddings, locs),
        ));
        let text_pad = padding(&b.text_lens, t, device);
        let image_pad = padding(&b.region_counts, r, device);

        let enc = &m.encoder;
        let run = |layers: &[EncoderLayer],
                   range: std::ops::Range<usize>,
                   fixed: usize,
                   mut x: Tensor<3>,
                   pad: &Tensor<2, Bool>| {
            for i in range {
                x = layers[i].forward(x, Some(pad.clone()));
                // The official code runs the fixed layers under no_grad.
                if i + 1 == fixed {
                    x = x.detach();
                }
            }
            x
        };
        let (mut t_start, mut v_start) = (0, 0);
        for (k, (&v_end, &t_end)) in enc
            .v_biattention_id
            .iter()
            .zip(&enc.t_biattention_id)
            .enumerate()
        {
            text = run(
                &enc.layer,
                t_start..t_end,
                enc.fixed_t_layer,
                text,
                &text_pad,
            );
            image = run(
                &enc.v_layer,
                v_start..v_end,
                enc.fixed_v_layer,
                image,
                &image_pad,
            );
            let (i2, t2) = enc.c_layer[k].forward(
                image,
                Some(image_pad.clone()),
                text,
                Some(text_pad.clone()),
            );
            image = i2;
            text = t2;
            t_start = t_end;
            v_start = v_end;
        }
        image = run(
            &enc.v_layer,
            v_start..enc.v_layer.len(),
            enc.fixed_v_layer,
            image,
            &image_pad,
        );
        text = run(
            &enc.layer,
            t_start..enc.layer.len(),
            enc.fixed_t_layer,
            text,
            &text_pad,
        );
        let first = |x: Tensor<3>| {
            let d = x.dims()[2];
            x.narrow(1, 0, 1).reshape([n, d])
        };
        let pooled_t = relu(linear(&m.t_pooler.dense, first(text.clone())));
        let pooled_v = relu(linear(&m.v_pooler.dense, first(image.clone())));
        VilOutput {
            text,
            image,
            pooled_t,
            pooled_v,
        }
    }

    /// The fused pooled output (before dropout).
    pub fn fuse(&self, out: &VilOutput) -> Tensor<2> {
        if self.fusion_sum {
            out.pooled_t.clone() + out.pooled_v.clone()
        } else {
            out.pooled_t.clone() * out.pooled_v.clone()
        }
    }

    /// `seq_relationship_score` [B, 2]: class 0 = the text belongs to the image.
    pub fn alignment_logits(&self, out: &VilOutput) -> Tensor<2> {
        linear(
            &self.cls.bi_seq_relationship,
            self.cls.dropout.forward(self.fuse(out)),
        )
    }

    /// Masked-LM scores [N, H] -> [N, V].
    pub fn mlm_logits(&self, h: Tensor<2>) -> Tensor<2> {
        self.cls
            .predictions
            .logits(h, self.bert.embeddings.word_embeddings.weight.val())
    }

    /// Masked-region class scores [N, Hv] -> [N, v_target_size].
    pub fn region_logits(&self, h: Tensor<2>) -> Tensor<2> {
        let p = &self.cls.image_predictions;
        let t = p
            .transform
            .layer_norm
            .forward(gelu(linear(&p.transform.dense, h)));
        linear(&p.decoder, t)
    }

    /// VQA answer scores [B, num_labels], when the model has the head.
    pub fn vqa_logits(&self, out: &VilOutput) -> Option<Tensor<2>> {
        let head = self.vil_prediction.as_ref()?;
        Some(head.forward(self.dropout.forward(self.fuse(out))))
    }

    /// Retrieval scores [B], when the model has the head.
    pub fn retrieval_logits(&self, out: &VilOutput) -> Option<Tensor<1>> {
        let head = self.vil_logit.as_ref()?;
        let s = linear(head, self.dropout.forward(self.fuse(out)));
        let n = s.dims()[0];
        Some(s.reshape([n]))
    }

    /// The model's tensors under the official names (the tied MLM decoder stored once, as the
    /// word embeddings).
    pub fn official_tensors(&self) -> Vec<(String, TensorData)> {
        named_tensors(self, &official_renames())
    }
}

/// Heads of the official `VILBertForVLTasks` a Tessera model does not hold (other tasks'
/// classifiers); a file's tensors under these prefixes are skipped when loading.
const FOREIGN_HEADS: &[&str] = &[
    "vil_prediction_gqa.",
    "vil_binary_prediction.",
    "vil_tri_prediction.",
    "vision_logit.",
    "linguisic_logit.",
];

/// A file's tensors with `module.` prefixes dropped, the tied decoder and other tasks' heads
/// skipped; refuses what a Tessera ViLBERT cannot run.
fn read_official(weights: &Path) -> Result<BTreeMap<String, TensorData>> {
    let (tensors, _) = load_safetensors(weights)
        .with_context(|| format!("cannot read weights {}", weights.display()))?;
    let mut named = BTreeMap::new();
    for (k, v) in tensors {
        let k = k.strip_prefix("module.").unwrap_or(&k).to_string();
        if k == "cls.predictions.decoder.weight" || k.ends_with("position_ids") {
            continue;
        }
        if FOREIGN_HEADS.iter().any(|p| k.starts_with(p)) {
            continue;
        }
        if k.starts_with("bert.embeddings.task_embeddings") {
            bail!(
                "{}: holds task embeddings (`{k}`): a multi-task checkpoint \
                 (task_specific_tokens), not supported",
                weights.display()
            );
        }
        named.insert(k, v);
    }
    if !named.contains_key("bert.embeddings.word_embeddings.weight") {
        bail!(
            "{}: no `bert.embeddings.word_embeddings.weight`: not a ViLBERT model",
            weights.display()
        );
    }
    Ok(named)
}

/// Load a model directory's `model.safetensors` (official names) into a network built from
/// `cfg`; anything missing or misshapen is an error naming it.
pub fn load_official(cfg: &VilBertConfig, weights: &Path, device: &Device) -> Result<VilBert> {
    let named = read_official(weights)?;
    load_named(
        VilBert::new(cfg, device),
        &named,
        &official_renames(),
        device,
        weights,
    )
}

/// Load a model directory's weights into a network whose task heads (`cfg.num_labels`,
/// `cfg.with_retrieval_head`) may be new: a head the file lacks, or holds for another answer
/// vocabulary, starts from the official initialisation.
pub fn load_with_task_heads(
    cfg: &VilBertConfig,
    weights: &Path,
    device: &Device,
) -> Result<VilBert> {
    let file = read_official(weights)?;
    let fresh = VilBert::new(cfg, device);
    let mut named: BTreeMap<String, TensorData> = named_tensors(&fresh, &official_renames())
        .into_iter()
        .collect();
    for (k, v) in file {
        let task_head = k.starts_with("vil_prediction.") || k.starts_with("vil_logit.");
        match named.get(&k) {
            Some(old) if task_head && old.shape() != v.shape() => {}
            Some(_) => {
                named.insert(k, v);
            }
            None if task_head => {}
            None => {
                named.insert(k, v);
            }
        }
    }
    load_named(fresh, &named, &official_renames(), device, weights)
}

/// A network whose text stream starts from a Hugging Face BERT directory (`model.safetensors` of
/// `BertModel`, `BertForMaskedLM` or a sentence-transformers BERT), as the official
/// `from_pretrained` of a BERT checkpoint: embeddings, text layers and the masked-LM head when
/// present; the image stream, co-attention, poolers and other heads keep the official
/// initialisation (BERT's pooler is tanh into the text width, ViLBERT's is ReLU into
/// `bi_hidden_size`: not taken).
pub fn from_bert(cfg: &VilBertConfig, dir: &Path, device: &Device) -> Result<VilBert> {
    let weights = dir.join("model.safetensors");
    let (tensors, _) = load_safetensors(&weights)
        .with_context(|| format!("cannot read weights {}", weights.display()))?;
    let fresh = VilBert::new(cfg, device);
    let mut named: BTreeMap<String, TensorData> = named_tensors(&fresh, &official_renames())
        .into_iter()
        .collect();
    let mut taken = 0usize;
    for (k, v) in tensors {
        let k = k.strip_prefix("bert.").unwrap_or(&k).to_string();
        let target = if k.starts_with("embeddings.") || k.starts_with("encoder.layer.") {
            format!("bert.{k}")
        } else if let Some(rest) = k.strip_prefix("cls.predictions.") {
            if rest.starts_with("decoder.") {
                continue;
            }
            format!("cls.predictions.{rest}")
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
