//! The Vision Transformer (MODELS.md §3): patch embedding as a strided convolution, a learnable
//! `[class]` token, learnable position embeddings, pre-norm encoder layers from the shared core
//! (with LayerScale for DINOv2), a final LayerNorm and an optional head on the class token.
//! Parameter names follow Hugging Face's `ViTModel` or `Dinov2Model` so their checkpoints load.

use super::config::{Layout, VitConfig};
use crate::core::attention::normal_init;
use crate::core::checkpoint::{load_named, load_safetensors};
use crate::core::dropout::Dropout;
use crate::core::encoder::{Encoder, EncoderConfig, NormPlacement};
use crate::core::norm::LayerNorm;
use anyhow::{bail, Context, Result};
use burn::module::{Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Initializer, Linear, LinearConfig};
use burn::tensor::{Device, Tensor, TensorData};
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Module, Debug)]
pub struct PatchEmbeddings {
    pub projection: Conv2d,
}

#[derive(Module, Debug)]
pub struct VitEmbeddings {
    /// [1, 1, D]
    pub cls_token: Param<Tensor<3>>,
    /// DINOv2's token for masked patches [1, D] (kept so its checkpoints load; unused here).
    pub mask_token: Option<Param<Tensor<2>>>,
    /// [1, 1 + N, D] for the configured grid.
    pub position_embeddings: Param<Tensor<3>>,
    pub patch_embeddings: PatchEmbeddings,
    pub dropout: Dropout,
}

#[derive(Module, Debug)]
pub struct Vit {
    pub embeddings: VitEmbeddings,
    pub encoder: Encoder,
    pub layernorm: LayerNorm,
    pub classifier: Option<Linear>,
    pub patch_size: usize,
}

/// Final hidden states and the class token's.
pub struct VitOutput {
    /// [B, 1 + N, D], after the final LayerNorm.
    pub last_hidden_state: Tensor<3>,
    /// [B, D]: the class token of `last_hidden_state`.
    pub pooler_output: Tensor<2>,
}

impl Vit {
    pub fn new(cfg: &VitConfig, device: &Device) -> Self {
        let d = cfg.hidden_size;
        let n = cfg.grid() * cfg.grid();
        let init = normal_init(cfg.initializer_range);
        Self {
            embeddings: VitEmbeddings {
                cls_token: init.init([1, 1, d], device),
                mask_token: (cfg.layout() == Layout::Dinov2)
                    .then(|| Initializer::Zeros.init([1, d], device)),
                position_embeddings: init.init([1, 1 + n, d], device),
                patch_embeddings: PatchEmbeddings {
                    projection: Conv2dConfig::new(
                        [cfg.num_channels, d],
                        [cfg.patch_size, cfg.patch_size],
                    )
                    .with_stride([cfg.patch_size, cfg.patch_size])
                    .with_initializer(normal_init(cfg.initializer_range))
                    .init(device),
                },
                dropout: Dropout::new(cfg.hidden_dropout_prob),
            },
            encoder: EncoderConfig {
                hidden: d,
                heads: cfg.num_attention_heads,
                intermediate: cfg.mlp_size(),
                layers: cfg.num_hidden_layers,
                hidden_dropout: cfg.hidden_dropout_prob,
                attention_dropout: cfg.attention_probs_dropout_prob,
                norm: NormPlacement::Pre,
                layer_norm_eps: cfg.layer_norm_eps,
                init_std: cfg.initializer_range,
                layer_scale: cfg.layerscale_value,
            }
            .init(device),
            layernorm: LayerNorm::new(d, cfg.layer_norm_eps, device),
            classifier: (cfg.num_labels > 0).then(|| {
                LinearConfig::new(d, cfg.num_labels)
                    .with_initializer(normal_init(cfg.initializer_range))
                    .init(device)
            }),
            patch_size: cfg.patch_size,
        }
    }

    /// `pixel_values` [B, C, H, W] (normalised) -> hidden states. H and W must be multiples of
    /// the patch size; a grid other than the checkpoint's interpolates the position embeddings.
    pub fn forward(&self, pixel_values: Tensor<4>) -> Result<VitOutput> {
        Ok(self.forward_with_attention(pixel_values, false)?.0)
    }

    /// [`Vit::forward`], with the last layer's attention probabilities [B, H, 1+N, 1+N] when
    /// asked, and the patch grid (rows, columns).
    #[allow(clippy::type_complexity)]
    pub fn forward_with_attention(
        &self,
        pixel_values: Tensor<4>,
        want_attention: bool,
    ) -> Result<(VitOutput, Option<Tensor<4>>, (usize, usize))> {
        let [b, c, h, w] = pixel_values.dims();
        let p = self.patch_size;
        let channels = self.embeddings.patch_embeddings.projection.weight.dims()[1];
        if c != channels {
            bail!("images have {c} channels; the model expects {channels}");
        }
        if h % p != 0 || w % p != 0 {
            bail!("image size {h}x{w} is not a multiple of the patch size {p}");
        }
        let patches = self
            .embeddings
            .patch_embeddings
            .projection
            .forward(pixel_values);
        let [_, d, gh, gw] = patches.dims();
        let patches = patches.reshape([b, d, gh * gw]).swap_dims(1, 2);
        let pos = self.embeddings.position_embeddings.val();
        let positions = pos.dims()[1];
        let pos = if positions == 1 + gh * gw && gh == gw {
            pos
        } else {
            let side = ((positions - 1) as f64).sqrt().round() as usize;
            if side * side != positions - 1 {
                bail!(
                    "a {h}x{w} image gives {gh}x{gw} patches and the model's {} position \
                     embeddings are not a square grid to interpolate",
                    positions - 1
                );
            }
            interpolate_positions(pos, side, gh, gw)
        };
        let cls = self.embeddings.cls_token.val().expand([b, 1, d]);
        let x = Tensor::cat(vec![cls, patches], 1) + pos;
        let x = self.embeddings.dropout.forward(x);
        let (x, probs) = if want_attention {
            self.encoder.forward_with_last_attention(x, None)
        } else {
            (self.encoder.forward(x, None), None)
        };
        let x = self.layernorm.forward(x);
        let pooled = x.clone().narrow(1, 0, 1).reshape([b, d]);
        Ok((
            VitOutput {
                last_hidden_state: x,
                pooler_output: pooled,
            },
            probs,
            (gh, gw),
        ))
    }

    /// Class scores [B, classes] from the head on the class token.
    pub fn logits(&self, pixel_values: Tensor<4>) -> Result<Tensor<2>> {
        let out = self.forward(pixel_values)?;
        match &self.classifier {
            Some(head) => Ok(head.forward(out.pooler_output)),
            None => bail!("this model has no classification head (num_labels = 0)"),
        }
    }
}

/// Weights [output, input] of 1-D bicubic resampling as PyTorch's
/// `interpolate(mode="bicubic", align_corners=False)` computes them: source coordinate
/// `(o + 0.5) * input / output - 0.5`, cubic convolution with A = -0.75, indices clamped at the
/// borders.
pub fn bicubic_weights(input: usize, output: usize) -> Vec<f32> {
    const A: f64 = -0.75;
    let near = |x: f64| ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0;
    let far = |x: f64| ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A;
    let scale = input as f64 / output as f64;
    let mut w = vec![0f32; output * input];
    for o in 0..output {
        let src = (o as f64 + 0.5) * scale - 0.5;
        let base = src.floor();
        let t = src - base;
        let coeffs = [far(t + 1.0), near(t), near(1.0 - t), far(2.0 - t)];
        for (k, c) in coeffs.iter().enumerate() {
            let i = (base as i64 - 1 + k as i64).clamp(0, input as i64 - 1) as usize;
            w[o * input + i] += *c as f32;
        }
    }
    w
}

/// Position embeddings [1, 1 + side^2, D] resampled to a `rows` x `cols` patch grid in 2-D
/// (bicubic, as Hugging Face's `interpolate_pos_encoding`), the class position unchanged. A
/// matrix product, so fine-tuning at the new size trains the original embeddings.
pub fn interpolate_positions(pos: Tensor<3>, side: usize, rows: usize, cols: usize) -> Tensor<3> {
    let d = pos.dims()[2];
    let device = pos.device();
    let wy = bicubic_weights(side, rows);
    let wx = bicubic_weights(side, cols);
    let mut w = vec![0f32; rows * cols * side * side];
    for y in 0..rows {
        for x in 0..cols {
            let row = &mut w[(y * cols + x) * side * side..][..side * side];
            for i in 0..side {
                for j in 0..side {
                    row[i * side + j] = wy[y * side + i] * wx[x * side + j];
                }
            }
        }
    }
    let w: Tensor<2> = Tensor::from_data(TensorData::new(w, [rows * cols, side * side]), &device);
    let cls = pos.clone().narrow(1, 0, 1);
    let grid = pos.narrow(1, 1, side * side).reshape([side * side, d]);
    let resized = w.matmul(grid).reshape([1, rows * cols, d]);
    Tensor::cat(vec![cls, resized], 1)
}

/// Our parameter paths -> Hugging Face names for a layout.
pub fn hf_renames(layout: Layout) -> Vec<(&'static str, &'static str)> {
    let mut r = vec![
        (".attention.query.", ".attention.attention.query."),
        (".attention.key.", ".attention.attention.key."),
        (".attention.value.", ".attention.attention.value."),
        (".attention.output.", ".attention.output.dense."),
    ];
    match layout {
        Layout::Vit => r.extend_from_slice(&[
            (".attention_norm.", ".layernorm_before."),
            (".output_norm.", ".layernorm_after."),
            (".intermediate.", ".intermediate.dense."),
            (".output.", ".output.dense."),
        ]),
        Layout::Dinov2 => r.extend_from_slice(&[
            (".attention_norm.", ".norm1."),
            (".output_norm.", ".norm2."),
            (".intermediate.", ".mlp.fc1."),
            (".output.", ".mlp.fc2."),
        ]),
    }
    r
}

/// Load Hugging Face ViT (`ViTModel`, `ViTForImageClassification`; the `vit.` prefix is stripped)
/// or DINOv2 weights into a model built from `cfg`. A missing tensor or one whose shape does not
/// fit is an error naming it; a `pooler` in the checkpoint is ignored.
pub fn load_hf(cfg: &VitConfig, weights: &Path, device: &Device) -> Result<Vit> {
    let (tensors, _) = load_safetensors(weights)
        .with_context(|| format!("cannot read weights {}", weights.display()))?;
    let named: BTreeMap<String, TensorData> = tensors
        .into_iter()
        .map(|(k, v)| (k.strip_prefix("vit.").unwrap_or(&k).to_string(), v))
        .filter(|(k, _)| !k.starts_with("pooler."))
        .collect();
    load_named(
        Vit::new(cfg, device),
        &named,
        &hf_renames(cfg.layout()),
        device,
        weights,
    )
}
