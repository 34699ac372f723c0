//! CBT's network (Sun et al., 2019, "Learning Video Representations using Contrastive
//! Bidirectional Transformer"; MODELS.md §7): a visual transformer over projected continuous
//! clip features with learned positions, the text through a BERT (`tessera text`'s), and a
//! cross-modal transformer over the concatenation `[h_x ; h_y]` whose first output, through an
//! MLP, scores how well a video and a text belong together (`MI = exp(score)`).
//!
//! Choices the paper leaves open or that we could not check in its text, each named (and each a
//! config key where it is a size):
//! - The layer counts are the config's (`visual_layers`, `cross_layers`; defaults 2 and 1, a
//!   choice: the paper's numbers could not be read here). The visual and cross-modal
//!   transformers are BERT's post-norm layers at the text BERT's width, so `[h_x ; h_y]` needs
//!   no projection.
//! - A masked clip's input is a learned `mask_embedding` in place of its projected feature
//!   (always; no 80/10/10), before the positions are added.
//! - The true feature embedding `e_t` of the visual loss is the clip's projected feature (the
//!   input projection, before positions and LayerNorm).
//! - Each half of the cross-modal input gets a learned modality embedding (0 video, 1 text); the
//!   first output is at the first clip, as `[h_x ; h_y]` puts it.
//! - The MLP is `dense -> GELU -> score` at the hidden width.

use crate::core::attention::normal_linear;
use crate::core::checkpoint::{load_named, load_safetensors, named_tensors, save_safetensors};
use crate::core::dropout::Dropout;
use crate::core::encoder::{Encoder, EncoderConfig, NormPlacement};
use crate::core::fused::gelu;
use crate::core::fused_ops::linear;
use crate::core::norm::LayerNorm;
use crate::text::config::BertConfig;
use crate::text::model::{Bert, TokenBatch};
use anyhow::{bail, Context, Result};
use burn::module::{Module, Param};
use burn::nn::{Embedding, EmbeddingConfig, Initializer, Linear};
use burn::tensor::{Bool, Device, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CbtConfig {
    /// Width of the clip features read.
    pub feature_size: usize,
    pub visual_layers: usize,
    pub cross_layers: usize,
    /// Attention heads of the visual and cross-modal transformers.
    pub heads: usize,
    pub intermediate: usize,
    /// Learned clip positions: the most clips the visual transformer reads at once.
    pub max_clips: usize,
    pub hidden_dropout: f64,
    pub attention_dropout: f64,
    /// The text BERT's config; its `hidden_size` is every transformer's width.
    pub text: BertConfig,
}

impl CbtConfig {
    /// Defaults for a text BERT and features of `feature_size` values.
    pub fn new(feature_size: usize, text: BertConfig) -> Self {
        Self {
            feature_size,
            visual_layers: 2,
            cross_layers: 1,
            heads: text.num_attention_heads,
            intermediate: text.intermediate_size,
            max_clips: 32,
            hidden_dropout: text.hidden_dropout_prob,
            attention_dropout: text.attention_probs_dropout_prob,
            text,
        }
    }

    pub fn hidden(&self) -> usize {
        self.text.hidden_size
    }

    pub fn validate(&self) -> Result<()> {
        use crate::core::validate::*;
        int_in("feature_size", self.feature_size, 1, 1 << 20)?;
        int_in("visual_layers", self.visual_layers, 1, 64)?;
        int_in("cross_layers", self.cross_layers, 1, 64)?;
        int_in("heads", self.heads, 1, 256)?;
        int_in("intermediate", self.intermediate, 1, 1 << 20)?;
        int_in("max_clips", self.max_clips, 1, 4096)?;
        probability_below_one("hidden_dropout", self.hidden_dropout)?;
        probability_below_one("attention_dropout", self.attention_dropout)?;
        if !self.hidden().is_multiple_of(self.heads) {
            bail!(
                "heads = {}: the width {} (the text BERT's) must split evenly into heads",
                self.heads,
                self.hidden()
            );
        }
        Ok(())
    }

    fn encoder(&self, layers: usize) -> EncoderConfig {
        EncoderConfig {
            hidden: self.hidden(),
            heads: self.heads,
            intermediate: self.intermediate,
            layers,
            hidden_dropout: self.hidden_dropout,
            attention_dropout: self.attention_dropout,
            norm: NormPlacement::Post,
            layer_norm_eps: self.text.layer_norm_eps,
            init_std: self.text.initializer_range,
            layer_scale: None,
        }
    }
}

/// Clip features to embeddings: projection, mask, positions, LayerNorm, dropout.
#[derive(Module, Debug)]
pub struct VisualEmbeddings {
    pub projection: Linear,
    pub mask_embedding: Param<Tensor<1>>,
    pub position_embeddings: Embedding,
    pub layer_norm: LayerNorm,
    pub dropout: Dropout,
}

#[derive(Module, Debug)]
pub struct ScoreHead {
    pub dense: Linear,
    pub out: Linear,
}

#[derive(Module, Debug)]
pub struct Cbt {
    pub visual_embeddings: VisualEmbeddings,
    pub visual: Encoder,
    pub text: Bert,
    pub modality_embeddings: Embedding,
    pub cross: Encoder,
    pub score_head: ScoreHead,
}

/// A padded batch of clip sequences, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct ClipBatch {
    pub batch: usize,
    pub len: usize,
    pub dim: usize,
    /// `[B, L, dim]`, zeros at padding.
    pub features: Vec<f32>,
    /// `[B, L]`: true at real clips.
    pub real: Vec<bool>,
    /// `[B, L]`: true where the input is masked.
    pub masked: Vec<bool>,
}

impl ClipBatch {
    /// Sequences of clip rows (each `[n, dim]`), with masked positions per sequence.
    pub fn new(dim: usize, seqs: &[(&[f32], &[usize])]) -> Self {
        let len = seqs
            .iter()
            .map(|(f, _)| f.len() / dim)
            .max()
            .unwrap_or(1)
            .max(1);
        let b = seqs.len();
        let mut out = Self {
            batch: b,
            len,
            dim,
            features: vec![0.0; b * len * dim],
            real: vec![false; b * len],
            masked: vec![false; b * len],
        };
        for (r, (f, masked)) in seqs.iter().enumerate() {
            let n = f.len() / dim;
            out.features[r * len * dim..r * len * dim + f.len()].copy_from_slice(f);
            out.real[r * len..r * len + n].fill(true);
            for &m in masked.iter() {
                out.masked[r * len + m] = true;
            }
        }
        out
    }

    pub fn padding(&self, device: &Device) -> Tensor<2, Bool> {
        let v: Vec<bool> = self.real.iter().map(|r| !r).collect();
        Tensor::from_data(TensorData::new(v, [self.batch, self.len]), device)
    }
}

impl Cbt {
    pub fn new(cfg: &CbtConfig, device: &Device) -> Self {
        let h = cfg.hidden();
        let std = cfg.text.initializer_range;
        let emb = |n: usize| {
            EmbeddingConfig::new(n, h)
                .with_initializer(Initializer::Normal { mean: 0.0, std })
                .init(device)
        };
        Self {
            visual_embeddings: VisualEmbeddings {
                projection: normal_linear(cfg.feature_size, h, std, device),
                mask_embedding: Initializer::Normal { mean: 0.0, std }.init([h], device),
                position_embeddings: emb(cfg.max_clips),
                layer_norm: LayerNorm::new(h, cfg.text.layer_norm_eps, device),
                dropout: Dropout::new(cfg.hidden_dropout),
            },
            visual: cfg.encoder(cfg.visual_layers).init(device),
            text: Bert::new(&cfg.text, device),
            modality_embeddings: emb(2),
            cross: cfg.encoder(cfg.cross_layers).init(device),
            score_head: ScoreHead {
                dense: normal_linear(h, h, std, device),
                out: normal_linear(h, 1, std, device),
            },
        }
    }

    /// The clips' projected features `e_t` [B, L, H] (the visual loss's keys).
    pub fn embed_clips(&self, batch: &ClipBatch, device: &Device) -> Tensor<3> {
        let x = Tensor::<3>::from_data(
            TensorData::new(batch.features.clone(), [batch.batch, batch.len, batch.dim]),
            device,
        );
        linear(&self.visual_embeddings.projection, x)
    }

    /// The visual transformer's outputs [B, L, H] over `embedded` (from [`Cbt::embed_clips`]),
    /// masked clips replaced by the mask embedding.
    pub fn visual_hidden(
        &self,
        batch: &ClipBatch,
        embedded: Tensor<3>,
        device: &Device,
    ) -> Tensor<3> {
        let x = self.visual_input(batch, embedded, device);
        self.visual.forward(x, Some(batch.padding(device)))
    }

    /// The visual transformer's input (index 0: embeddings after positions and LayerNorm) and
    /// each layer's output (1..=`visual_layers`), each [B, L, H].
    pub fn visual_hidden_states(
        &self,
        batch: &ClipBatch,
        embedded: Tensor<3>,
        device: &Device,
    ) -> Vec<Tensor<3>> {
        let x = self.visual_input(batch, embedded, device);
        self.visual.forward_all(x, Some(batch.padding(device)))
    }

    fn visual_input(&self, batch: &ClipBatch, embedded: Tensor<3>, device: &Device) -> Tensor<3> {
        let (b, l) = (batch.batch, batch.len);
        let e = &self.visual_embeddings;
        let [_, _, h] = embedded.dims();
        if l > e.position_embeddings.weight.dims()[0] {
            // Callers cut sequences to max_clips; this guards the contract.
            panic!(
                "{l} clips past the {} learned positions",
                e.position_embeddings.weight.dims()[0]
            );
        }
        let m: Vec<f32> = batch
            .masked
            .iter()
            .map(|&x| f32::from(u8::from(x)))
            .collect();
        let m = Tensor::<3>::from_data(TensorData::new(m, [b, l, 1]), device);
        let mask = e.mask_embedding.val().reshape([1, 1, h]);
        let x = embedded * (m.clone().neg() + 1.0) + mask * m;
        let pos = e
            .position_embeddings
            .weight
            .val()
            .narrow(0, 0, l)
            .unsqueeze::<3>();
        e.dropout.forward(e.layer_norm.forward(x + pos))
    }

    /// The text BERT's last hidden states [B, L, H].
    pub fn text_hidden(&self, tokens: &TokenBatch, device: &Device) -> Tensor<3> {
        self.text.forward(tokens, device)
    }

    /// Cross-modal scores of `pairs` (video row, text row): the MLP on the first output of the
    /// cross-modal transformer over `[h_x ; h_y]`. `visual` [Nv, Lv, H] with its padding,
    /// `text` [Nt, Lt, H] with its padding. Returns [P].
    pub fn cross_scores(
        &self,
        visual: (Tensor<3>, Tensor<2, Bool>),
        text: (Tensor<3>, Tensor<2, Bool>),
        pairs: &[(usize, usize)],
        device: &Device,
    ) -> Tensor<1> {
        let p = pairs.len();
        let idx = |f: fn(&(usize, usize)) -> usize| -> Tensor<1, Int> {
            let v: Vec<i64> = pairs.iter().map(|x| f(x) as i64).collect();
            Tensor::from_data(TensorData::new(v, [p]), device)
        };
        let (vi, ti) = (idx(|x| x.0), idx(|x| x.1));
        let modality = self.modality_embeddings.weight.val();
        let h = modality.dims()[1];
        let hv =
            visual.0.select(0, vi.clone()) + modality.clone().narrow(0, 0, 1).reshape([1, 1, h]);
        let ht = text.0.select(0, ti.clone()) + modality.narrow(0, 1, 1).reshape([1, 1, h]);
        let pad_v = visual.1.select(0, vi);
        let pad_t = text.1.select(0, ti);
        let x = Tensor::cat(vec![hv, ht], 1);
        let pad = Tensor::cat(vec![pad_v, pad_t], 1);
        let out = self.cross.forward(x, Some(pad));
        let first = out.narrow(1, 0, 1).reshape([p, h]);
        let s = linear(
            &self.score_head.out,
            gelu(linear(&self.score_head.dense, first)),
        );
        s.reshape([p])
    }
}

/// Our parameter paths -> checkpoint names: the text BERT under `text.` with Hugging Face's
/// BERT names, the visual and cross-modal layers with BERT's layer names.
pub fn renames() -> Vec<(&'static str, &'static str)> {
    crate::text::model::hf_renames()
}

/// A CBT model directory: `config.json` ([`CbtConfig`]) and `model.safetensors`.
pub fn load(dir: &Path, device: &Device) -> Result<(CbtConfig, Cbt)> {
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "cannot read {} (not a CBT model directory?)",
            path.display()
        )
    })?;
    let cfg: CbtConfig =
        serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    cfg.validate()
        .map_err(|e| anyhow::anyhow!("{}: {e:#}", path.display()))?;
    let weights = dir.join("model.safetensors");
    let (tensors, _) = load_safetensors(&weights)
        .with_context(|| format!("cannot read weights {}", weights.display()))?;
    let named: BTreeMap<String, TensorData> = tensors.into_iter().collect();
    let model = load_named(Cbt::new(&cfg, device), &named, &renames(), device, &weights)?;
    Ok((cfg, model))
}

/// Write `config.json` and `model.safetensors` into `dir`, each atomically.
pub fn save(dir: &Path, cfg: &CbtConfig, model: &Cbt) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let tensors = named_tensors(model, &renames());
    let meta = std::collections::HashMap::from([("format".to_string(), "pt".to_string())]);
    save_safetensors(&dir.join("model.safetensors"), &tensors, meta)?;
    crate::core::run::write_atomic(
        &dir.join("config.json"),
        serde_json::to_string_pretty(cfg)?.as_bytes(),
    )
}

/// The sizes a pretraining config sets (the rest comes from the text BERT).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ModelSizes {
    pub visual_layers: usize,
    pub cross_layers: usize,
    /// Default: the text BERT's heads.
    pub heads: Option<usize>,
    /// Default: the text BERT's intermediate size.
    pub intermediate: Option<usize>,
    pub max_clips: usize,
}

impl Default for ModelSizes {
    fn default() -> Self {
        Self {
            visual_layers: 2,
            cross_layers: 1,
            heads: None,
            intermediate: None,
            max_clips: 32,
        }
    }
}

/// A fresh CBT around the text BERT of `text_dir` (every text weight kept), its other sizes
/// from `sizes`.
pub fn from_text_bert(
    text_dir: &Path,
    feature_size: usize,
    sizes: &ModelSizes,
    device: &Device,
) -> Result<(CbtConfig, Cbt)> {
    let text_cfg = BertConfig::from_json_file(&text_dir.join("config.json"))?;
    let (text, _) =
        crate::text::model::load_hf(&text_cfg, &text_dir.join("model.safetensors"), device)?;
    let mut cfg = CbtConfig::new(feature_size, text_cfg);
    cfg.visual_layers = sizes.visual_layers;
    cfg.cross_layers = sizes.cross_layers;
    cfg.heads = sizes.heads.unwrap_or(cfg.heads);
    cfg.intermediate = sizes.intermediate.unwrap_or(cfg.intermediate);
    cfg.max_clips = sizes.max_clips;
    cfg.validate()?;
    let mut model = Cbt::new(&cfg, device);
    model.text = text;
    Ok((cfg, model))
}
