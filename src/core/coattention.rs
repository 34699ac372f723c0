//! ViLBERT's co-attention layer (Co-TRM; `BertConnectionLayer` of the official
//! `vilbert/vilbert.py`): each stream's queries attend over the other stream's keys and values,
//! then, per stream, output dense + dropout + residual + LayerNorm and BERT's feed-forward
//! (dense + GELU, dense + dropout + residual + LayerNorm).
//!
//! Stream 1 is the image (width `v_hidden`), stream 2 the text (width `t_hidden`); queries, keys
//! and values of both are projected to `bi_hidden` and split into `bi_heads`. Parameter names are
//! the official ones (see [`COATTENTION_RENAMES`]), including the unused `q_dense1`/`q_dense2`
//! of `BertBiOutput`, so official checkpoints load whole.

use super::attention::{attend, normal_linear};
use super::dropout::Dropout;
use super::fused::gelu;
use super::fused_ops::linear;
use super::norm::LayerNorm;
use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::{Bool, Device, Tensor};

#[derive(Debug, Clone, PartialEq)]
pub struct CoAttentionConfig {
    /// Image stream width (`v_hidden_size`).
    pub v_hidden: usize,
    /// Text stream width (`hidden_size`).
    pub t_hidden: usize,
    /// Width of the co-attention projections (`bi_hidden_size`).
    pub bi_hidden: usize,
    pub bi_heads: usize,
    pub v_intermediate: usize,
    pub t_intermediate: usize,
    /// Dropout on the image stream's outputs / on text queries' attention over the image
    /// (`v_hidden_dropout_prob` / `v_attention_probs_dropout_prob`).
    pub v_hidden_dropout: f64,
    pub v_attention_dropout: f64,
    /// The same for the text stream (`hidden_dropout_prob`, `attention_probs_dropout_prob`).
    pub t_hidden_dropout: f64,
    pub t_attention_dropout: f64,
    pub layer_norm_eps: f64,
    pub init_std: f64,
}

/// `BertBiAttention`: `*1` project the image stream, `*2` the text stream.
#[derive(Module, Debug)]
pub struct BiAttention {
    pub query1: Linear,
    pub key1: Linear,
    pub value1: Linear,
    /// On the probabilities of text queries over image keys (official `dropout1`).
    pub dropout1: Dropout,
    pub query2: Linear,
    pub key2: Linear,
    pub value2: Linear,
    pub dropout2: Dropout,
    pub heads: usize,
}

/// `BertBiOutput`: `dense1`/`LayerNorm1` close the image stream, `dense2`/`LayerNorm2` the text
/// stream. `q_dense1`/`q_dense2` exist in the official module but are never called; they are
/// kept so that checkpoints round-trip.
#[derive(Module, Debug)]
pub struct BiOutput {
    pub dense1: Linear,
    pub layer_norm1: LayerNorm,
    pub dropout1: Dropout,
    pub q_dense1: Linear,
    pub dense2: Linear,
    pub layer_norm2: LayerNorm,
    pub dropout2: Dropout,
    pub q_dense2: Linear,
}

/// BERT's `*Intermediate`: dense + GELU.
#[derive(Module, Debug)]
pub struct Intermediate {
    pub dense: Linear,
}

/// BERT's `*Output`: dense + dropout + residual + LayerNorm.
#[derive(Module, Debug)]
pub struct ResidualOutput {
    pub dense: Linear,
    pub layer_norm: LayerNorm,
    pub dropout: Dropout,
}

impl ResidualOutput {
    fn forward(&self, x: Tensor<3>, residual: Tensor<3>) -> Tensor<3> {
        self.layer_norm
            .forward(self.dropout.forward(linear(&self.dense, x)) + residual)
    }
}

/// One co-attention layer.
#[derive(Module, Debug)]
pub struct CoAttentionLayer {
    pub biattention: BiAttention,
    pub bi_output: BiOutput,
    pub v_intermediate: Intermediate,
    pub v_output: ResidualOutput,
    pub t_intermediate: Intermediate,
    pub t_output: ResidualOutput,
}

/// Our parameter paths -> the official names (first match wins, so combined rules come first).
pub const COATTENTION_RENAMES: &[(&str, &str)] = &[
    (".bi_output.layer_norm1.", ".biOutput.LayerNorm1."),
    (".bi_output.layer_norm2.", ".biOutput.LayerNorm2."),
    (".bi_output.", ".biOutput."),
    (".v_output.layer_norm.", ".v_output.LayerNorm."),
    (".t_output.layer_norm.", ".t_output.LayerNorm."),
];

impl CoAttentionConfig {
    pub fn init(&self, device: &Device) -> CoAttentionLayer {
        assert!(
            self.bi_hidden.is_multiple_of(self.bi_heads),
            "bi_hidden_size {} is not divisible by {} heads",
            self.bi_hidden,
            self.bi_heads
        );
        let lin = |i: usize, o: usize| normal_linear(i, o, self.init_std, device);
        let ln = |d: usize| LayerNorm::new(d, self.layer_norm_eps, device);
        let (v, t, bi) = (self.v_hidden, self.t_hidden, self.bi_hidden);
        CoAttentionLayer {
            biattention: BiAttention {
                query1: lin(v, bi),
                key1: lin(v, bi),
                value1: lin(v, bi),
                dropout1: Dropout::new(self.v_attention_dropout),
                query2: lin(t, bi),
                key2: lin(t, bi),
                value2: lin(t, bi),
                dropout2: Dropout::new(self.t_attention_dropout),
                heads: self.bi_heads,
            },
            bi_output: BiOutput {
                dense1: lin(bi, v),
                layer_norm1: ln(v),
                dropout1: Dropout::new(self.v_hidden_dropout),
                q_dense1: lin(bi, v),
                dense2: lin(bi, t),
                layer_norm2: ln(t),
                dropout2: Dropout::new(self.t_hidden_dropout),
                q_dense2: lin(bi, t),
            },
            v_intermediate: Intermediate {
                dense: lin(v, self.v_intermediate),
            },
            v_output: ResidualOutput {
                dense: lin(self.v_intermediate, v),
                layer_norm: ln(v),
                dropout: Dropout::new(self.v_hidden_dropout),
            },
            t_intermediate: Intermediate {
                dense: lin(t, self.t_intermediate),
            },
            t_output: ResidualOutput {
                dense: lin(self.t_intermediate, t),
                layer_norm: ln(t),
                dropout: Dropout::new(self.t_hidden_dropout),
            },
        }
    }
}

impl CoAttentionLayer {
    /// `image` [B, R, Dv] and `text` [B, T, Dt] with their key paddings (true at padding) ->
    /// the updated (image, text).
    pub fn forward(
        &self,
        image: Tensor<3>,
        image_padding: Option<Tensor<2, Bool>>,
        text: Tensor<3>,
        text_padding: Option<Tensor<2, Bool>>,
    ) -> (Tensor<3>, Tensor<3>) {
        let a = &self.biattention;
        let (q1, k1, v1) = (
            linear(&a.query1, image.clone()),
            linear(&a.key1, image.clone()),
            linear(&a.value1, image.clone()),
        );
        let (q2, k2, v2) = (
            linear(&a.query2, text.clone()),
            linear(&a.key2, text.clone()),
            linear(&a.value2, text.clone()),
        );
        // Text queries over the image (-> the text stream), image queries over the text.
        let (for_text, _) = attend(q2, k1, v1, a.heads, image_padding, &a.dropout1, false);
        let (for_image, _) = attend(q1, k2, v2, a.heads, text_padding, &a.dropout2, false);
        let o = &self.bi_output;
        let image_attended = o
            .layer_norm1
            .forward(o.dropout1.forward(linear(&o.dense1, for_image)) + image);
        let text_attended = o
            .layer_norm2
            .forward(o.dropout2.forward(linear(&o.dense2, for_text)) + text);
        let image_out = self.v_output.forward(
            gelu(linear(&self.v_intermediate.dense, image_attended.clone())),
            image_attended,
        );
        let text_out = self.t_output.forward(
            gelu(linear(&self.t_intermediate.dense, text_attended.clone())),
            text_attended,
        );
        (image_out, text_out)
    }
}
