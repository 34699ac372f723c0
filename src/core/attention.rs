//! Multi-head scaled dot-product attention with a key-padding mask.
//!
//! Queries and keys/values may come from different streams, so the same block serves
//! self-attention (BERT, ViT) and co-attention (ViLBERT's Co-TRM).

use super::dropout::Dropout;
use super::fused_ops::linear;
use burn::module::Module;
use burn::nn::{Initializer, Linear, LinearConfig};
use burn::tensor::{Bool, Device, Tensor};
use serde::{Deserialize, Serialize};

/// Score given to padded keys before the softmax. Finite so that a fully padded row gives a
/// uniform distribution instead of NaN.
const MASKED_SCORE: f32 = -1.0e9;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AttentionConfig {
    pub hidden: usize,
    pub heads: usize,
    /// Dropout on the attention probabilities (BERT's `attention_probs_dropout_prob`).
    pub dropout: f64,
    /// Standard deviation of the normal initialisation of the projections (BERT: 0.02).
    pub init_std: f64,
}

/// Parameter names mirror Hugging Face's BERT (`query`, `key`, `value`; the output projection is
/// `output` here and renamed `attention.output.dense` by checkpoints).
#[derive(Module, Debug)]
pub struct MultiHeadAttention {
    pub query: Linear,
    pub key: Linear,
    pub value: Linear,
    pub output: Linear,
    pub dropout: Dropout,
    pub heads: usize,
}

impl AttentionConfig {
    pub fn init(&self, device: &Device) -> MultiHeadAttention {
        assert!(
            self.hidden.is_multiple_of(self.heads),
            "hidden size {} is not divisible by {} heads",
            self.hidden,
            self.heads
        );
        let lin = || normal_linear(self.hidden, self.hidden, self.init_std, device);
        MultiHeadAttention {
            query: lin(),
            key: lin(),
            value: lin(),
            output: lin(),
            dropout: Dropout::new(self.dropout),
            heads: self.heads,
        }
    }
}

impl MultiHeadAttention {
    /// `queries` [B, Lq, D] attend over `context` [B, Lk, D]. `key_padding` [B, Lk] is true where
    /// a key is padding and must receive no attention. Returns [B, Lq, D] and, when asked, the
    /// attention probabilities [B, H, Lq, Lk] (before dropout).
    pub fn forward_with_probs(
        &self,
        queries: Tensor<3>,
        context: Tensor<3>,
        key_padding: Option<Tensor<2, Bool>>,
        want_probs: bool,
    ) -> (Tensor<3>, Option<Tensor<4>>) {
        let heads = self.heads;
        let q = linear(&self.query, queries);
        let k = linear(&self.key, context.clone());
        let v = linear(&self.value, context);
        let (ctx, kept) = attend(q, k, v, heads, key_padding, &self.dropout, want_probs);
        (linear(&self.output, ctx), kept)
    }

    /// Causal self-attention (a decoder's): position i of `x` [B, L, D] attends to positions
    /// 0..=i that are not padding.
    pub fn forward_causal(&self, x: Tensor<3>, key_padding: Option<Tensor<2, Bool>>) -> Tensor<3> {
        let q = linear(&self.query, x.clone());
        let k = linear(&self.key, x.clone());
        let v = linear(&self.value, x);
        let ctx = attend_masked(q, k, v, self.heads, key_padding, true, &self.dropout, false).0;
        linear(&self.output, ctx)
    }

    pub fn forward(
        &self,
        queries: Tensor<3>,
        context: Tensor<3>,
        key_padding: Option<Tensor<2, Bool>>,
    ) -> Tensor<3> {
        self.forward_with_probs(queries, context, key_padding, false)
            .0
    }
}

/// Scaled dot-product attention of projected queries `q` [B, Lq, D] over projected keys `k` and
/// values `v` [B, Lk, D] in `heads` heads; `key_padding` [B, Lk] is true at keys that get no
/// attention. Returns the context [B, Lq, D] (heads concatenated, before any output projection)
/// and, when asked, the probabilities [B, H, Lq, Lk] (before dropout). Self-attention and
/// ViLBERT's co-attention (queries of one stream, keys and values of the other) share it.
pub fn attend(
    q: Tensor<3>,
    k: Tensor<3>,
    v: Tensor<3>,
    heads: usize,
    key_padding: Option<Tensor<2, Bool>>,
    dropout: &Dropout,
    want_probs: bool,
) -> (Tensor<3>, Option<Tensor<4>>) {
    attend_masked(q, k, v, heads, key_padding, false, dropout, want_probs)
}

/// [`attend`], and with `causal` query i sees keys 0..=i only (queries and keys of one
/// sequence).
#[allow(clippy::too_many_arguments)]
pub fn attend_masked(
    q: Tensor<3>,
    k: Tensor<3>,
    v: Tensor<3>,
    heads: usize,
    key_padding: Option<Tensor<2, Bool>>,
    causal: bool,
    dropout: &Dropout,
    want_probs: bool,
) -> (Tensor<3>, Option<Tensor<4>>) {
    let [b, lq, d] = q.dims();
    let lk = k.dims()[1];
    let dh = d / heads;
    let split = |x: Tensor<3>, l: usize| x.reshape([b, l, heads, dh]).swap_dims(1, 2);
    // The 1/sqrt(dh) scale goes on the queries ([B, Lq, D]) rather than on the scores
    // ([B, H, Lq, Lk], larger whenever Lk > dh): the same product, one smaller pass.
    let q = split(q.mul_scalar(1.0 / (dh as f64).sqrt()), lq);
    let k = split(k, lk);
    let v = split(v, lk);
    let mut scores = q.matmul(k.swap_dims(2, 3));
    if let Some(pad) = key_padding {
        // An additive bias broadcast over heads and queries: cheaper than expanding a mask.
        let bias = pad.float().mul_scalar(MASKED_SCORE).reshape([b, 1, 1, lk]);
        scores = scores + bias;
    }
    if causal {
        let device = scores.device();
        let future: Vec<f32> = (0..lq)
            .flat_map(|i| (0..lk).map(move |j| if j > i { MASKED_SCORE } else { 0.0 }))
            .collect();
        let bias = Tensor::<4>::from_data(
            burn::tensor::TensorData::new(future, [1, 1, lq, lk]),
            &device,
        );
        scores = scores + bias;
    }
    let probs = super::fused_ops::softmax(scores);
    let kept = want_probs.then(|| probs.clone());
    let ctx = dropout.forward(probs).matmul(v);
    (ctx.swap_dims(1, 2).reshape([b, lq, d]), kept)
}

/// BERT's initialisation: weights from N(0, std^2).
pub fn normal_init(std: f64) -> Initializer {
    Initializer::Normal { mean: 0.0, std }
}

/// A `d_in -> d_out` linear layer with BERT's initialisation (weights from N(0, std^2)).
pub fn normal_linear(d_in: usize, d_out: usize, std: f64, device: &Device) -> Linear {
    LinearConfig::new(d_in, d_out)
        .with_initializer(normal_init(std))
        .init(device)
}
