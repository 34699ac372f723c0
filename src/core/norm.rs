//! LayerNorm with learned scale and shift over the last axis. Same parameters and checkpoint
//! names as burn's (`gamma`/`beta`, stored as `weight`/`bias`), but under autodiff on the CPU it
//! runs as one fused operation with its own backward ([`super::fused_ops::layer_norm`]).

use super::fused_ops::layer_norm;
use burn::module::{Module, Param};
use burn::nn::Initializer;
use burn::tensor::{Device, Tensor};

#[derive(Module, Debug)]
pub struct LayerNorm {
    pub gamma: Param<Tensor<1>>,
    pub beta: Param<Tensor<1>>,
    pub epsilon: f64,
}

impl LayerNorm {
    /// Ones and zeros, as PyTorch and burn initialise it.
    pub fn new(width: usize, epsilon: f64, device: &Device) -> Self {
        Self {
            gamma: Initializer::Ones.init([width], device),
            beta: Initializer::Zeros.init([width], device),
            epsilon,
        }
    }

    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        layer_norm(x, self.gamma.val(), self.beta.val(), self.epsilon)
    }
}
