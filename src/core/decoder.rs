//! Transformer decoder layers as the original (Vaswani et al., 2017, post-norm): masked
//! self-attention over the target so far, attention over the encoder's output (the memory), a
//! GELU feed-forward; each sub-layer `LN(x + Drop(sublayer(x)))`. The captioners built on
//! VideoBERT's features (and any encoder-decoder a model needs) take their layers from here.

use super::attention::{normal_linear, AttentionConfig, MultiHeadAttention};
use super::dropout::Dropout;
use super::fused::gelu;
use super::fused_ops::linear;
use super::norm::LayerNorm;
use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::{Bool, Device, Tensor};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DecoderConfig {
    pub hidden: usize,
    pub heads: usize,
    pub intermediate: usize,
    pub layers: usize,
    pub hidden_dropout: f64,
    pub attention_dropout: f64,
    pub layer_norm_eps: f64,
    pub init_std: f64,
}

#[derive(Module, Debug)]
pub struct DecoderLayer {
    pub self_attention: MultiHeadAttention,
    pub self_attention_norm: LayerNorm,
    pub cross_attention: MultiHeadAttention,
    pub cross_attention_norm: LayerNorm,
    pub intermediate: Linear,
    pub output: Linear,
    pub output_norm: LayerNorm,
    pub dropout: Dropout,
}

#[derive(Module, Debug)]
pub struct Decoder {
    pub layer: Vec<DecoderLayer>,
}

impl DecoderConfig {
    pub fn init_layer(&self, device: &Device) -> DecoderLayer {
        let ln = || LayerNorm::new(self.hidden, self.layer_norm_eps, device);
        let attention = || {
            AttentionConfig {
                hidden: self.hidden,
                heads: self.heads,
                dropout: self.attention_dropout,
                init_std: self.init_std,
            }
            .init(device)
        };
        DecoderLayer {
            self_attention: attention(),
            self_attention_norm: ln(),
            cross_attention: attention(),
            cross_attention_norm: ln(),
            intermediate: normal_linear(self.hidden, self.intermediate, self.init_std, device),
            output: normal_linear(self.intermediate, self.hidden, self.init_std, device),
            output_norm: ln(),
            dropout: Dropout::new(self.hidden_dropout),
        }
    }

    pub fn init(&self, device: &Device) -> Decoder {
        Decoder {
            layer: (0..self.layers).map(|_| self.init_layer(device)).collect(),
        }
    }
}

impl DecoderLayer {
    /// `x` [B, Lt, D] the target so far, `target_padding` [B, Lt]; `memory` [B, Ls, D] the
    /// encoder's output, `memory_padding` [B, Ls] (true at padding).
    pub fn forward(
        &self,
        x: Tensor<3>,
        target_padding: Option<Tensor<2, Bool>>,
        memory: Tensor<3>,
        memory_padding: Option<Tensor<2, Bool>>,
    ) -> Tensor<3> {
        let attended = self
            .self_attention
            .forward_causal(x.clone(), target_padding);
        let a = self
            .self_attention_norm
            .forward(x + self.dropout.forward(attended));
        let read = self
            .cross_attention
            .forward(a.clone(), memory, memory_padding);
        let c = self
            .cross_attention_norm
            .forward(a + self.dropout.forward(read));
        let ff = linear(&self.output, gelu(linear(&self.intermediate, c.clone())));
        self.output_norm.forward(c + self.dropout.forward(ff))
    }
}

impl Decoder {
    pub fn forward(
        &self,
        mut x: Tensor<3>,
        target_padding: Option<Tensor<2, Bool>>,
        memory: Tensor<3>,
        memory_padding: Option<Tensor<2, Bool>>,
    ) -> Tensor<3> {
        for layer in &self.layer {
            x = layer.forward(
                x,
                target_padding.clone(),
                memory.clone(),
                memory_padding.clone(),
            );
        }
        x
    }
}
