//! Fused CPU kernels for the element-wise hot spots of training: GELU and softmax
//! cross-entropy.
//!
//! burn's CPU backend evaluates GELU with a scalar `erf` and, under autodiff, decomposes
//! softmax cross-entropy into about a dozen single-threaded passes (max, shift, exp, sum, log,
//! gather and their backward steps). Profiles of a BERT4Rec step put a quarter of the time
//! there. Here each is one vectorised, multi-threaded pass on the host that also produces the
//! local derivative, and the derivative enters burn's autodiff graph through a surrogate with
//! the same value and the same gradient:
//!
//! - GELU: `y = x * D + C` with `D = GELU'(x)` and `C = GELU(x) - x * D` both constant, so
//!   `dy/dx = D`;
//! - cross-entropy: `L = s - detach(s) + value` with `s = sum(logits * G) / M` and
//!   `G = softmax(logits) - onehot(targets)` constant, so `dL/dlogits = G / M`.
//!
//! On other devices (wgpu, CUDA) the functions fall back to burn's own operations, so model code
//! stays backend-generic.

use super::device::is_host;
use super::fused_ops::{host_values, with_slice};
use super::kernels::{cross_entropy_rows, gelu_chunk, gelu_forward_chunk};
use burn::backend::{Autodiff, Flex};
use burn::tensor::activation::{gelu as burn_gelu, log_softmax};
use burn::tensor::{Int, Tensor, TensorData};
use rayon::prelude::*;

/// Re-exported for callers of the fused operations' accuracy (tests, benchmarks).
pub use super::kernels::exp_f32;

/// Elements per parallel task.
const CHUNK: usize = 1 << 14;

/// Exact (erf) GELU. On the host: one fused pass; under autodiff its gradient is the
/// derivative computed in the same pass.
pub fn gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    let device = x.device();
    if !is_host(&device) {
        return burn_gelu(x);
    }
    let dims = x.dims();
    if !device.is_autodiff() {
        // In place when this is the buffer's only owner (the usual case: a Linear's fresh output).
        let mut t = x
            .try_into_primitive::<Flex>()
            .expect("a tensor on the host backend");
        let n = t.layout().num_elements();
        let whole =
            t.layout().contiguous_offsets() == Some((0, n)) && t.storage::<f32>().len() == n;
        if let Some(v) = whole.then(|| t.try_storage_mut::<f32>()).flatten() {
            v.par_chunks_mut(CHUNK).for_each(gelu_forward_chunk);
            return Tensor::from_primitive::<Flex>(t);
        }
        let mut values = host_values(&t);
        values.par_chunks_mut(CHUNK).for_each(gelu_forward_chunk);
        return Tensor::from_data(TensorData::new(values, dims), &device);
    }
    let primitive = x
        .clone()
        .try_into_primitive::<Autodiff<Flex>>()
        .expect("an autodiff tensor on the host backend");
    let n = dims.iter().product::<usize>();
    let mut slope = vec![0f32; n];
    let mut offset = vec![0f32; n];
    with_slice(primitive.primitive(), |values| {
        values
            .par_chunks(CHUNK)
            .zip(slope.par_chunks_mut(CHUNK))
            .zip(offset.par_chunks_mut(CHUNK))
            .for_each(|((x, d), c)| gelu_chunk(x, d, c))
    });
    let host = device.without_autodiff();
    let constant = |v: Vec<f32>| -> Tensor<D> {
        Tensor::from_inner(Tensor::from_data(TensorData::new(v, dims), &host))
    };
    x * constant(slope) + constant(offset)
}

/// Mean softmax cross-entropy of `logits` [M, C] against class indices `targets` (M of them,
/// each < C). On the host: one fused pass per row for the value and the gradient.
pub fn cross_entropy(logits: Tensor<2>, targets: &[u32]) -> Tensor<1> {
    cross_entropy_smoothed(logits, targets, 0.0)
}

/// [`cross_entropy`] with label smoothing: the target is `1 - smoothing` on the class plus
/// `smoothing / C` on every class (Szegedy et al.; PyTorch's `label_smoothing`).
pub fn cross_entropy_smoothed(logits: Tensor<2>, targets: &[u32], smoothing: f64) -> Tensor<1> {
    let [m, width] = logits.dims();
    assert_eq!(m, targets.len(), "one target per row");
    assert!(
        targets.iter().all(|&t| (t as usize) < width),
        "target out of range"
    );
    let device = logits.device();
    if !is_host(&device) || m == 0 {
        let t: Vec<i64> = targets.iter().map(|&t| t as i64).collect();
        let t: Tensor<2, Int> = Tensor::from_data(TensorData::new(t, [m, 1]), &device);
        let logp = log_softmax(logits, 1);
        let nll = logp.clone().gather(1, t).mean().neg();
        if smoothing == 0.0 {
            return nll;
        }
        return nll.mul_scalar(1.0 - smoothing) - logp.mean().mul_scalar(smoothing);
    }
    let mut grad: Vec<f32> = logits
        .clone()
        .into_data()
        .try_into_vec()
        .expect("fused kernels take f32 tensors");
    let rows_per_task = (CHUNK / width).max(1);
    // Per-task sums added in order: the same total whatever the scheduling.
    let partial: Vec<f64> = grad
        .par_chunks_mut(rows_per_task * width)
        .zip(targets.par_chunks(rows_per_task))
        .map(|(rows, t)| cross_entropy_rows(rows, width, t, smoothing as f32))
        .collect();
    let total: f64 = partial.iter().sum();
    let value = (total / m as f64) as f32;
    let value_t = Tensor::<1>::from_data(TensorData::new(vec![value], [1]), &device);
    if !device.is_autodiff() {
        return value_t;
    }
    let host = device.without_autodiff();
    let g: Tensor<2> =
        Tensor::from_inner(Tensor::from_data(TensorData::new(grad, [m, width]), &host));
    let s = (logits * g).sum().mul_scalar(1.0 / m as f64);
    s.clone() - s.detach() + value_t
}
