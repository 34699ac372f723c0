//! Transformer encoder layers in both placements of LayerNorm:
//! post-norm (BERT: `A = LN(H + Drop(MH(H)))`, `H' = LN(A + Drop(FFN(A)))`) and
//! pre-norm (ViT: `z' = MSA(LN(z)) + z`, `z = MLP(LN(z')) + z'`). The feed-forward uses GELU.

use super::attention::{normal_linear, AttentionConfig, MultiHeadAttention};
use super::dropout::Dropout;
use super::fused::gelu;
use super::fused_ops::linear;
use super::norm::LayerNorm;
use burn::module::{Module, Param};
use burn::nn::{Initializer, Linear};
use burn::tensor::{Bool, Device, Tensor};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum NormPlacement {
    /// LayerNorm after each residual sum (BERT, BERT4Rec).
    Post,
    /// LayerNorm before each sub-layer (ViT).
    Pre,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EncoderConfig {
    pub hidden: usize,
    pub heads: usize,
    pub intermediate: usize,
    pub layers: usize,
    /// Dropout on sub-layer outputs (BERT's `hidden_dropout_prob`).
    pub hidden_dropout: f64,
    /// Dropout on attention probabilities.
    pub attention_dropout: f64,
    pub norm: NormPlacement,
    pub layer_norm_eps: f64,
    /// Standard deviation of the normal initialisation of weights (BERT: 0.02).
    pub init_std: f64,
    /// LayerScale (CaiT; DINOv2): each sub-layer's output is multiplied by a learned per-channel
    /// scale initialised to this value before the residual sum. `None`: no scale (BERT, ViT).
    pub layer_scale: Option<f64>,
}

/// A learned per-channel scale; DINOv2 names it `layer_scale{1,2}.lambda1`.
#[derive(Module, Debug)]
pub struct LayerScale {
    pub lambda1: Param<Tensor<1>>,
}

impl LayerScale {
    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        x * self.lambda1.val().unsqueeze::<3>()
    }
}

fn scaled(scale: &Option<LayerScale>, x: Tensor<3>) -> Tensor<3> {
    match scale {
        Some(s) => s.forward(x),
        None => x,
    }
}

/// One encoder layer. Field names map to Hugging Face BERT names in checkpoints:
/// `attention.*` -> `attention.self.*` / `attention.output.dense`,
/// `attention_norm` -> `attention.output.LayerNorm`, `intermediate` -> `intermediate.dense`,
/// `output` -> `output.dense`, `output_norm` -> `output.LayerNorm`.
#[derive(Module, Debug)]
pub struct EncoderLayer {
    pub attention: MultiHeadAttention,
    pub attention_norm: LayerNorm,
    pub intermediate: Linear,
    pub output: Linear,
    pub output_norm: LayerNorm,
    pub dropout: Dropout,
    pub pre_norm: bool,
    /// LayerScale after attention and after the feed-forward (pre-norm only).
    pub layer_scale1: Option<LayerScale>,
    pub layer_scale2: Option<LayerScale>,
}

#[derive(Module, Debug)]
pub struct Encoder {
    pub layer: Vec<EncoderLayer>,
}

impl EncoderConfig {
    pub fn init_layer(&self, device: &Device) -> EncoderLayer {
        let ln = || LayerNorm::new(self.hidden, self.layer_norm_eps, device);
        EncoderLayer {
            attention: AttentionConfig {
                hidden: self.hidden,
                heads: self.heads,
                dropout: self.attention_dropout,
                init_std: self.init_std,
            }
            .init(device),
            attention_norm: ln(),
            intermediate: normal_linear(self.hidden, self.intermediate, self.init_std, device),
            output: normal_linear(self.intermediate, self.hidden, self.init_std, device),
            output_norm: ln(),
            dropout: Dropout::new(self.hidden_dropout),
            pre_norm: self.norm == NormPlacement::Pre,
            layer_scale1: self.layer_scale.map(|v| self.init_layer_scale(v, device)),
            layer_scale2: self.layer_scale.map(|v| self.init_layer_scale(v, device)),
        }
    }

    fn init_layer_scale(&self, value: f64, device: &Device) -> LayerScale {
        LayerScale {
            lambda1: Initializer::Constant { value }.init([self.hidden], device),
        }
    }

    pub fn init(&self, device: &Device) -> Encoder {
        Encoder {
            layer: (0..self.layers).map(|_| self.init_layer(device)).collect(),
        }
    }
}

impl EncoderLayer {
    fn feed_forward(&self, x: Tensor<3>) -> Tensor<3> {
        linear(&self.output, gelu(linear(&self.intermediate, x)))
    }

    /// `x` [B, L, D]; `key_padding` [B, L] true at padding.
    pub fn forward(&self, x: Tensor<3>, key_padding: Option<Tensor<2, Bool>>) -> Tensor<3> {
        self.forward_with_probs(x, key_padding, false).0
    }

    /// [`EncoderLayer::forward`], also returning the attention probabilities [B, H, L, L] when
    /// asked.
    pub fn forward_with_probs(
        &self,
        x: Tensor<3>,
        key_padding: Option<Tensor<2, Bool>>,
        want_probs: bool,
    ) -> (Tensor<3>, Option<Tensor<4>>) {
        if self.pre_norm {
            let normed = self.attention_norm.forward(x.clone());
            let (attended, probs) =
                self.attention
                    .forward_with_probs(normed.clone(), normed, key_padding, want_probs);
            let a = x + self.dropout.forward(scaled(&self.layer_scale1, attended));
            let normed = self.output_norm.forward(a.clone());
            let out = a + self
                .dropout
                .forward(scaled(&self.layer_scale2, self.feed_forward(normed)));
            (out, probs)
        } else {
            let (attended, probs) =
                self.attention
                    .forward_with_probs(x.clone(), x.clone(), key_padding, want_probs);
            let a = self
                .attention_norm
                .forward(x + self.dropout.forward(attended));
            let out = self
                .output_norm
                .forward(a.clone() + self.dropout.forward(self.feed_forward(a)));
            (out, probs)
        }
    }
}

impl Encoder {
    pub fn forward(&self, mut x: Tensor<3>, key_padding: Option<Tensor<2, Bool>>) -> Tensor<3> {
        for layer in &self.layer {
            x = layer.forward(x, key_padding.clone());
        }
        x
    }

    /// The input and every layer's output, in order (`layers + 1` tensors [B, L, D]): the
    /// hidden states a feature-based transfer reads (BERT §5.3 concatenates some of them).
    pub fn forward_all(
        &self,
        mut x: Tensor<3>,
        key_padding: Option<Tensor<2, Bool>>,
    ) -> Vec<Tensor<3>> {
        let mut out = Vec::with_capacity(self.layer.len() + 1);
        for layer in &self.layer {
            out.push(x.clone());
            x = layer.forward(x, key_padding.clone());
        }
        out.push(x);
        out
    }

    /// [`Encoder::forward`] and the last layer's attention probabilities [B, H, L, L].
    pub fn forward_with_last_attention(
        &self,
        mut x: Tensor<3>,
        key_padding: Option<Tensor<2, Bool>>,
    ) -> (Tensor<3>, Option<Tensor<4>>) {
        let mut probs = None;
        let n = self.layer.len();
        for (i, layer) in self.layer.iter().enumerate() {
            let (y, p) = layer.forward_with_probs(x, key_padding.clone(), i + 1 == n);
            x = y;
            probs = p.or(probs);
        }
        (x, probs)
    }
}

/// Renames from our parameter paths to Hugging Face BERT's, for checkpoints.
pub const HF_BERT_LAYER_RENAMES: &[(&str, &str)] = &[
    (".attention.query.", ".attention.self.query."),
    (".attention.key.", ".attention.self.key."),
    (".attention.value.", ".attention.self.value."),
    (".attention.output.", ".attention.output.dense."),
    (".attention_norm.", ".attention.output.LayerNorm."),
    (".intermediate.", ".intermediate.dense."),
    (".output.", ".output.dense."),
    (".output_norm.", ".output.LayerNorm."),
];
