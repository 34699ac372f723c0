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

use burn::backend::{Autodiff, Flex};
use burn::tensor::activation::{gelu as burn_gelu, log_softmax};
use burn::tensor::{Device, Int, Tensor, TensorData};
use rayon::prelude::*;

/// Elements per parallel task.
const CHUNK: usize = 1 << 14;

/// True when tensors on `device` live in host memory (burn's flex backend), where the fused
/// kernels apply.
pub fn is_host(device: &Device) -> bool {
    device.clone().without_autodiff() == Device::flex()
}

/// `exp(x)` for f32, written so that the compiler vectorises it: Cody-Waite range reduction
/// and a degree-6 polynomial; relative error below 2.5e-7 on [-87, 88].
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    // Adding and subtracting 1.5 * 2^23 rounds to the nearest integer without a branch.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let n = (x * LOG2E + ROUND) - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    // SAFETY: x is clamped to [-87, 88], so n is a whole number in [-126, 127], which an i32
    // holds. (`as i32` would saturate and check for NaN lane by lane, and not vectorise.)
    let n_int: i32 = unsafe { n.to_int_unchecked() };
    let scale = f32::from_bits(((n_int + 127) as u32) << 23);
    p * scale
}

/// GELU and its derivative at `x` (exact GELU, `x Phi(x)`), with `erf` from Abramowitz and
/// Stegun 7.1.26 (absolute error below 1.5e-7).
#[inline(always)]
pub fn gelu_and_derivative(x: f32) -> (f32, f32) {
    const P: f32 = 0.327_591_1;
    const A1: f32 = 0.254_829_6;
    const A2: f32 = -0.284_496_72;
    const A3: f32 = 1.421_413_8;
    const A4: f32 = -1.453_152_1;
    const A5: f32 = 1.061_405_4;
    const FRAC_1_SQRT_2: f32 = std::f32::consts::FRAC_1_SQRT_2;
    // 1 / sqrt(2 pi)
    const INV_SQRT_2PI: f32 = 0.398_942_3;
    let z = (x * FRAC_1_SQRT_2).abs();
    let t = 1.0 / (1.0 + P * z);
    let poly = t * (A1 + t * (A2 + t * (A3 + t * (A4 + t * A5))));
    // exp(-z^2) = exp(-x^2 / 2): the same factor serves erf and the normal density.
    let gauss = exp_f32(-z * z);
    let erf_abs = 1.0 - poly * gauss;
    let erf = erf_abs.copysign(x);
    let cdf = 0.5 * (1.0 + erf);
    (x * cdf, cdf + x * INV_SQRT_2PI * gauss)
}

#[inline(always)]
fn gelu_kernel(x: &[f32], d: &mut [f32], c: &mut [f32]) {
    for ((&xi, di), ci) in x.iter().zip(d.iter_mut()).zip(c.iter_mut()) {
        let (y, dy) = gelu_and_derivative(xi);
        *di = dy;
        *ci = y - xi * dy;
    }
}

#[inline(always)]
fn gelu_forward_kernel(x: &mut [f32]) {
    for xi in x.iter_mut() {
        *xi = gelu_and_derivative(*xi).0;
    }
}

/// Maximum and sum over eight interleaved lanes, so that the compiler vectorises them (a float
/// reduction in one accumulator cannot be reordered, hence not vectorised).
#[inline(always)]
pub(crate) fn lanes_max(x: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; 8];
    let chunks = x.chunks_exact(8);
    let tail = chunks.remainder();
    for c in chunks {
        for j in 0..8 {
            acc[j] = acc[j].max(c[j]);
        }
    }
    tail.iter()
        .chain(&acc)
        .fold(f32::NEG_INFINITY, |m, &v| m.max(v))
}

#[inline(always)]
pub(crate) fn lanes_sum(x: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let chunks = x.chunks_exact(8);
    let tail = chunks.remainder();
    for c in chunks {
        for j in 0..8 {
            acc[j] += c[j];
        }
    }
    tail.iter().chain(&acc).sum()
}

/// One row of softmax cross-entropy against the target distribution
/// `q = (1 - smoothing) onehot(target) + smoothing / C`: overwrites `row` with `softmax(row) - q`
/// and returns `-sum_j q_j log softmax(row)_j = logsumexp(row) - sum_j q_j row_j`.
#[inline(always)]
fn cross_entropy_row(row: &mut [f32], target: usize, smoothing: f32) -> f32 {
    let max = lanes_max(row);
    let logit = row[target];
    let uniform = smoothing / row.len() as f32;
    let mean_part = if smoothing > 0.0 {
        uniform * lanes_sum(row)
    } else {
        0.0
    };
    for v in row.iter_mut() {
        *v = exp_f32(*v - max);
    }
    let sum = lanes_sum(row);
    let inv = 1.0 / sum;
    for v in row.iter_mut() {
        *v = *v * inv - uniform;
    }
    row[target] -= 1.0 - smoothing;
    sum.ln() + max - (1.0 - smoothing) * logit - mean_part
}

simd_dispatch!(gelu_chunk(x: &[f32], d: &mut [f32], c: &mut [f32]) -> () {
    gelu_kernel(x, d, c)
});

simd_dispatch!(gelu_forward_chunk(x: &mut [f32]) -> () {
    gelu_forward_kernel(x)
});

simd_dispatch!(cross_entropy_rows(rows: &mut [f32], width: usize, targets: &[u32], smoothing: f32) -> f64 {
    let mut total = 0.0f64;
    for (row, &t) in rows.chunks_mut(width).zip(targets) {
        total += cross_entropy_row(row, t as usize, smoothing) as f64;
    }
    total
});

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
        let mut values = crate::core::fused_ops::host_values(&t);
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
    crate::core::fused_ops::with_slice(primitive.primitive(), |values| {
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
