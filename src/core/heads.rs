//! Prediction heads whose output layer is tied to an embedding table (BERT's MLM head,
//! BERT4Rec's item head): `GELU(h W + b) [-> LayerNorm] E^T + bias`.

use super::fused::gelu;
use super::norm::LayerNorm;
use burn::module::{Module, Param};
use burn::nn::{Initializer, Linear, LinearConfig};
use burn::tensor::{Device, Tensor};

use super::attention::normal_init;

/// Names mirror Hugging Face's `cls.predictions`: `transform.dense`, `transform.LayerNorm`, `bias`.
#[derive(Module, Debug)]
pub struct TiedHead {
    pub dense: Linear,
    pub layer_norm: Option<LayerNorm>,
    pub bias: Param<Tensor<1>>,
}

impl TiedHead {
    /// The transform's weights from N(0, `init_std`^2) (BERT's initialiser), biases zero.
    pub fn new(
        hidden: usize,
        outputs: usize,
        layer_norm: bool,
        eps: f64,
        init_std: f64,
        device: &Device,
    ) -> Self {
        Self {
            dense: LinearConfig::new(hidden, hidden)
                .with_initializer(normal_init(init_std))
                .init(device),
            layer_norm: layer_norm.then(|| LayerNorm::new(hidden, eps, device)),
            bias: Initializer::Zeros.init([outputs], device),
        }
    }

    /// The transformed hidden states, before the tied projection.
    pub fn transform(&self, h: Tensor<2>) -> Tensor<2> {
        let t = gelu(self.dense.forward(h));
        match &self.layer_norm {
            Some(ln) => ln.forward(t),
            None => t,
        }
    }

    /// Scores over every row of `table` ([V, D]): [N, D] -> [N, V].
    pub fn logits(&self, h: Tensor<2>, table: Tensor<2>) -> Tensor<2> {
        self.transform(h).matmul(table.transpose()) + self.bias.val().unsqueeze::<2>()
    }
}
