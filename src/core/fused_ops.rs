//! LayerNorm, softmax and Linear as single host kernels with hand-written backward passes,
//! registered as operations of burn's autodiff graph.
//!
//! Why: burn's CPU backend fuses LayerNorm and softmax in inference, but under autodiff it
//! decomposes them into their elementary operations (LayerNorm: mean, subtraction, square, mean,
//! square root, division, scale, shift; softmax: max, subtraction, `exp`, sum, division), each a
//! single-threaded pass that allocates its output, and differentiates every one of them; and each
//! of its matrix products zero-fills its output and then copies it to re-align it, with the bias
//! added in one more pass. Together about a quarter of a ViT training step. The Jacobians of
//! LayerNorm and softmax are not diagonal, so the surrogate trick of [`super::fused`] does not
//! apply; instead each is one autodiff operation whose backward is the closed form:
//!
//! - LayerNorm `y = xhat * gamma + beta`, `xhat = (x - mean) * rstd`:
//!   `dx = rstd * (g' - mean(g') - xhat * mean(g' * xhat))` with `g' = dy * gamma`,
//!   `dgamma = sum over rows of dy * xhat`, `dbeta = sum over rows of dy`;
//! - softmax `p = softmax(x)` along the last axis: `dx = p * (dp - sum(dp * p))`;
//! - Linear `y = x W + b`: `dx = dy W^T`, `dW = x^T dy`, `db = sum over rows of dy`.
//!
//! Rows are processed in parallel in chunks of a fixed number of rows and partial sums are added
//! in chunk order, so results do not depend on the thread count. LayerNorm without autodiff is
//! burn's own (already fused) operation; softmax and Linear use their kernels in inference too
//! (softmax: one pass with the vectorised `exp` of [`super::kernels`]). Off the host all three are
//! burn's operations.

use super::device::is_host;
use super::kernels::{
    layer_norm_backward_rows, layer_norm_rows, softmax_backward_rows, softmax_rows,
};
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::{Autodiff, Flex};
use burn::tensor::activation::softmax as burn_softmax;
use burn::tensor::module::layer_norm as burn_layer_norm;
use burn::tensor::{Shape, Tensor, TensorData};
use rayon::prelude::*;
use std::sync::Arc;

type Ad = Autodiff<Flex>;

/// Rows per parallel task (and per partial sum of the parameter gradients).
const ROWS_PER_TASK: usize = 64;

/// A copy of a host tensor's f32 values in row-major order.
pub(crate) fn host_values(t: &FlexTensor) -> Vec<f32> {
    with_slice(t, <[f32]>::to_vec)
}

/// Runs `f` on a host tensor's f32 values in row-major order (copied only if the tensor is a
/// strided view).
pub(crate) fn with_slice<R>(t: &FlexTensor, f: impl FnOnce(&[f32]) -> R) -> R {
    match t.as_slice::<f32>() {
        Some(s) => f(s),
        None => f(t
            .to_contiguous()
            .as_slice::<f32>()
            .expect("contiguous f32 tensor")),
    }
}

fn flex(values: Vec<f32>, shape: Shape) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}

/// Whether `x` is an autodiff tensor on the host, where the fused operations apply.
fn fused_applies<const D: usize>(x: &Tensor<D>) -> bool {
    let device = x.device();
    device.is_autodiff() && is_host(&device)
}

fn into_ad<const D: usize>(
    x: Tensor<D>,
) -> <Ad as burn::backend::BackendTypes>::FloatTensorPrimitive {
    let x = if x.device().is_autodiff() {
        x
    } else {
        Tensor::from_inner(x)
    };
    x.try_into_primitive::<Ad>()
        .expect("an autodiff tensor on the host backend")
}

// ---------------------------------------------------------------------------------------------
// LayerNorm

#[derive(Debug, Clone)]
struct LayerNormState {
    xhat: Arc<Vec<f32>>,
    rstd: Arc<Vec<f32>>,
    gamma: Arc<Vec<f32>>,
    shape: Shape,
}

#[derive(Debug)]
struct LayerNormBackward;

impl Backward<Flex, 3> for LayerNormBackward {
    type State = LayerNormState;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let state = ops.state;
        let d = state.gamma.len();
        let grad = grads.consume::<Flex>(&ops.node);
        let n = state.xhat.len();
        let mut dx = vec![0f32; n];
        let task = ROWS_PER_TASK * d;
        let partial: Vec<(Vec<f32>, Vec<f32>)> = with_slice(&grad, |g| {
            g.par_chunks(task)
                .zip(state.xhat.par_chunks(task))
                .zip(state.rstd.par_chunks(ROWS_PER_TASK))
                .zip(dx.par_chunks_mut(task))
                .map(|(((g, xh), r), out)| {
                    let (mut dg, mut db) = (vec![0f32; d], vec![0f32; d]);
                    layer_norm_backward_rows(g, xh, r, &state.gamma, out, &mut dg, &mut db);
                    (dg, db)
                })
                .collect()
        });
        let [px, pg, pb] = ops.parents;
        if let Some(node) = px {
            grads.register::<Flex>(node.id, flex(dx, state.shape.clone()));
        }
        // Per-task partial sums added in task order.
        let (mut dgamma, mut dbeta) = (vec![0f32; d], vec![0f32; d]);
        for (dg, db) in &partial {
            for (t, v) in dgamma.iter_mut().zip(dg) {
                *t += v;
            }
            for (t, v) in dbeta.iter_mut().zip(db) {
                *t += v;
            }
        }
        if let Some(node) = pg {
            grads.register::<Flex>(node.id, flex(dgamma, Shape::from([d])));
        }
        if let Some(node) = pb {
            grads.register::<Flex>(node.id, flex(dbeta, Shape::from([d])));
        }
    }
}

/// LayerNorm over the last axis, `(x - mean) / sqrt(var + eps) * gamma + beta` with the biased
/// variance, as burn's and PyTorch's.
pub fn layer_norm<const D: usize>(
    x: Tensor<D>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    eps: f64,
) -> Tensor<D> {
    if !fused_applies(&x) || x.shape().num_elements() == 0 {
        return burn_layer_norm(x, gamma, Some(beta), eps);
    }
    let shape = Shape::from(x.dims());
    let x = into_ad(x);
    let gamma = into_ad(gamma);
    let beta = into_ad(beta);
    let gamma_v = host_values(gamma.primitive());
    let beta_v = host_values(beta.primitive());
    let d = gamma_v.len();
    let n = shape.num_elements();
    let rows = n / d.max(1);
    let (mut y, mut xhat, mut rstd) = (vec![0f32; n], vec![0f32; n], vec![0f32; rows]);
    with_slice(x.primitive(), |xs| {
        let task = ROWS_PER_TASK * d;
        xs.par_chunks(task)
            .zip(y.par_chunks_mut(task))
            .zip(xhat.par_chunks_mut(task))
            .zip(rstd.par_chunks_mut(ROWS_PER_TASK))
            .for_each(|(((xs, y), xh), r)| {
                layer_norm_rows(xs, &gamma_v, &beta_v, eps as f32, y, xh, r)
            });
    });
    let out = flex(y, shape.clone());
    let out = match LayerNormBackward
        .prepare::<NoCheckpointing>([x.node(), gamma.node(), beta.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish(
            LayerNormState {
                xhat: Arc::new(xhat),
                rstd: Arc::new(rstd),
                gamma: Arc::new(gamma_v),
                shape,
            },
            out,
        ),
        OpsKind::UnTracked(prep) => prep.finish(out),
    };
    Tensor::from_primitive::<Ad>(out)
}

// ---------------------------------------------------------------------------------------------
// Softmax

#[derive(Debug, Clone)]
struct SoftmaxState {
    probs: FlexTensor,
    width: usize,
}

#[derive(Debug)]
struct SoftmaxBackward;

impl Backward<Flex, 1> for SoftmaxBackward {
    type State = SoftmaxState;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let SoftmaxState { probs, width } = ops.state;
        let grad = grads.consume::<Flex>(&ops.node);
        let [parent] = ops.parents;
        let Some(node) = parent else {
            return;
        };
        let p = probs
            .as_slice::<f32>()
            .expect("probabilities are contiguous");
        let mut dx = vec![0f32; p.len()];
        let task = ROWS_PER_TASK * width;
        with_slice(&grad, |g| {
            g.par_chunks(task)
                .zip(p.par_chunks(task))
                .zip(dx.par_chunks_mut(task))
                .for_each(|((g, p), out)| softmax_backward_rows(g, p, width, out));
        });
        let shape = probs.layout().shape().clone();
        grads.register::<Flex>(node.id, flex(dx, shape));
    }
}

/// Softmax along the last axis.
pub fn softmax<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    if !is_host(&x.device()) || x.shape().num_elements() == 0 {
        return burn_softmax(x, D - 1);
    }
    let shape = Shape::from(x.dims());
    let width = shape[D - 1];
    let rows = |xs: &[f32]| -> Vec<f32> {
        let mut p = vec![0f32; xs.len()];
        let task = ROWS_PER_TASK * width;
        xs.par_chunks(task)
            .zip(p.par_chunks_mut(task))
            .for_each(|(xs, p)| softmax_rows(xs, width, p));
        p
    };
    if !x.device().is_autodiff() {
        let x = x
            .try_into_primitive::<Flex>()
            .expect("a tensor on the host backend");
        return Tensor::from_primitive::<Flex>(flex(with_slice(&x, rows), shape));
    }
    let x = into_ad(x);
    let probs = flex(with_slice(x.primitive(), rows), shape);
    let out = match SoftmaxBackward
        .prepare::<NoCheckpointing>([x.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish(
            SoftmaxState {
                probs: probs.clone(),
                width,
            },
            probs,
        ),
        OpsKind::UnTracked(prep) => prep.finish(probs),
    };
    Tensor::from_primitive::<Ad>(out)
}

// ---------------------------------------------------------------------------------------------
// Linear

/// Products of at least this many multiply-adds use all threads (burn's CPU backend's rule).
const PARALLEL_MACS: usize = 192 * 192 * 192;

fn parallelism(m: usize, n: usize, k: usize) -> gemm::Parallelism {
    if m.saturating_mul(n).saturating_mul(k) >= PARALLEL_MACS {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    }
}

/// A row-major matrix view: `rows x cols` with the given row and column strides.
#[derive(Clone, Copy)]
struct View<'a> {
    data: &'a [f32],
    row_stride: isize,
    col_stride: isize,
}

/// `dst (m x n, row-major) = [dst +] lhs (m x k) * rhs (k x n)`.
fn matmul_into(
    dst: &mut [f32],
    accumulate: bool,
    lhs: View,
    rhs: View,
    m: usize,
    n: usize,
    k: usize,
) {
    assert!(dst.len() >= m * n);
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            dst[..m * n].fill(0.0);
        }
        return;
    }
    // SAFETY: the views cover (m-1)*rs + (k-1)*cs (lhs) and (k-1)*rs + (n-1)*cs (rhs) elements
    // of their slices, as the callers construct them, and dst holds m * n elements.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.col_stride,
            lhs.row_stride,
            rhs.data.as_ptr(),
            rhs.col_stride,
            rhs.row_stride,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism(m, n, k),
        );
    }
}

fn row_major(data: &[f32], cols: usize) -> View<'_> {
    View {
        data,
        row_stride: cols as isize,
        col_stride: 1,
    }
}

/// The transpose of a row-major `rows x cols` matrix, as a `cols x rows` view.
fn transposed(data: &[f32], cols: usize) -> View<'_> {
    View {
        data,
        row_stride: 1,
        col_stride: cols as isize,
    }
}

/// `x (m x k) * w (k x n) [+ bias]`, row-major.
fn linear_forward(
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    m: usize,
    k: usize,
    n: usize,
) -> Vec<f32> {
    let mut y = match bias {
        Some(b) => {
            let mut y = Vec::with_capacity(m * n);
            for _ in 0..m {
                y.extend_from_slice(b);
            }
            y
        }
        None => vec![0f32; m * n],
    };
    matmul_into(
        &mut y,
        bias.is_some(),
        row_major(x, k),
        row_major(w, n),
        m,
        n,
        k,
    );
    y
}

/// [`linear_forward`] on host tensors.
fn linear_tensors(
    x: &FlexTensor,
    w: &FlexTensor,
    b: Option<&FlexTensor>,
    m: usize,
    k: usize,
    n: usize,
) -> Vec<f32> {
    with_slice(x, |xs| {
        with_slice(w, |ws| match b {
            Some(b) => with_slice(b, |bs| linear_forward(xs, ws, Some(bs), m, k, n)),
            None => linear_forward(xs, ws, None, m, k, n),
        })
    })
}

#[derive(Debug, Clone)]
struct LinearState {
    x: FlexTensor,
    w: FlexTensor,
    x_shape: Shape,
    m: usize,
    k: usize,
    n: usize,
}

#[derive(Debug)]
struct LinearBackward;

impl Backward<Flex, 3> for LinearBackward {
    type State = LinearState;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let LinearState {
            x,
            w,
            x_shape,
            m,
            k,
            n,
        } = ops.state;
        let grad = grads.consume::<Flex>(&ops.node);
        let [px, pw, pb] = ops.parents;
        with_slice(&grad, |g| {
            if let Some(node) = px {
                let mut dx = vec![0f32; m * k];
                with_slice(&w, |w| {
                    matmul_into(&mut dx, false, row_major(g, n), transposed(w, n), m, k, n)
                });
                grads.register::<Flex>(node.id, flex(dx, x_shape.clone()));
            }
            if let Some(node) = pw {
                let mut dw = vec![0f32; k * n];
                with_slice(&x, |x| {
                    matmul_into(&mut dw, false, transposed(x, k), row_major(g, n), k, n, m)
                });
                grads.register::<Flex>(node.id, flex(dw, Shape::from([k, n])));
            }
            if let Some(node) = pb {
                // Column sums over fixed blocks of rows, added in block order.
                let partial: Vec<Vec<f32>> = g
                    .par_chunks(ROWS_PER_TASK * n)
                    .map(|rows| {
                        let mut s = vec![0f32; n];
                        for row in rows.chunks_exact(n) {
                            for (a, &v) in s.iter_mut().zip(row) {
                                *a += v;
                            }
                        }
                        s
                    })
                    .collect();
                let mut db = vec![0f32; n];
                for p in &partial {
                    for (a, v) in db.iter_mut().zip(p) {
                        *a += v;
                    }
                }
                grads.register::<Flex>(node.id, flex(db, Shape::from([n])));
            }
        });
    }
}

/// `layer.forward(x)` for burn's `Linear` (weight stored [in, out]): on the host one matrix
/// product (through the `gemm` crate, as burn's CPU backend) writing into a buffer that already
/// holds the bias, with a backward of two products and a column sum. burn's own matmul fills its
/// output with zeros and then copies it to re-align it, and adds the bias in a separate pass.
pub fn linear<const D: usize>(layer: &burn::nn::Linear, x: Tensor<D>) -> Tensor<D> {
    if !is_host(&x.device()) || x.shape().num_elements() == 0 {
        return layer.forward(x);
    }
    let dims = x.dims();
    let [k, n] = layer.weight.dims();
    assert_eq!(
        dims[D - 1],
        k,
        "linear: input width {} but weight is {k} x {n}",
        dims[D - 1]
    );
    let m = dims[..D - 1].iter().product::<usize>();
    let mut out_dims = dims;
    out_dims[D - 1] = n;
    let out_shape = Shape::from(out_dims);
    let w = layer.weight.val();
    let b = layer.bias.as_ref().map(|b| b.val());
    let tracked = x.device().is_autodiff()
        || w.device().is_autodiff()
        || b.as_ref().is_some_and(|b| b.device().is_autodiff());
    if !tracked {
        let xv = x.try_into_primitive::<Flex>().expect("a host tensor");
        let wv = w.try_into_primitive::<Flex>().expect("a host tensor");
        let bv = b.map(|b| b.try_into_primitive::<Flex>().expect("a host tensor"));
        let y = linear_tensors(&xv, &wv, bv.as_ref(), m, k, n);
        return Tensor::from_primitive::<Flex>(flex(y, out_shape));
    }
    let x_shape = Shape::from(dims);
    let x = into_ad(x);
    let w = into_ad(w);
    let b = b.map(into_ad);
    let xc = contiguous(x.primitive());
    let wc = contiguous(w.primitive());
    let y = linear_tensors(&xc, &wc, b.as_ref().map(|b| b.primitive()), m, k, n);
    let out = flex(y, out_shape);
    let state = LinearState {
        x: xc,
        w: wc,
        x_shape,
        m,
        k,
        n,
    };
    let out = match b {
        Some(b) => match LinearBackward
            .prepare::<NoCheckpointing>([x.node(), w.node(), b.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish(state, out),
            OpsKind::UnTracked(prep) => prep.finish(out),
        },
        None => match LinearNoBiasBackward
            .prepare::<NoCheckpointing>([x.node(), w.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish(state, out),
            OpsKind::UnTracked(prep) => prep.finish(out),
        },
    };
    Tensor::from_primitive::<Ad>(out)
}

#[derive(Debug)]
struct LinearNoBiasBackward;

impl Backward<Flex, 2> for LinearNoBiasBackward {
    type State = LinearState;

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, c: &mut Checkpointer) {
        let [px, pw] = ops.parents;
        LinearBackward.backward(Ops::new([px, pw, None], ops.node, ops.state), grads, c);
    }
}

fn contiguous(t: &FlexTensor) -> FlexTensor {
    if t.as_slice::<f32>().is_some() {
        t.clone()
    } else {
        t.to_contiguous()
    }
}

// ---------------------------------------------------------------------------------------------
// 2-D convolution (inference)

thread_local! {
    static IM2COL: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// An activation applied in place after a fused convolution.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ConvActivation {
    Identity,
    /// `x > 0 ? x : slope * x` (darknet's leaky: 0.1).
    Leaky(f32),
}

/// Rows (output channels) x columns (output pixels): `cols` [C*k*k, OH*OW] of one image, zero
/// outside the padded input.
#[allow(clippy::too_many_arguments)]
fn im2col(
    x: &[f32],
    h: usize,
    w: usize,
    k: usize,
    stride: usize,
    pad: usize,
    oh: usize,
    ow: usize,
    cols: &mut [f32],
) {
    let plane = oh * ow;
    cols.par_chunks_mut(plane)
        .enumerate()
        .for_each(|(row, dst)| {
            let ch = row / (k * k);
            let (ki, kj) = ((row / k) % k, row % k);
            let src = &x[ch * h * w..(ch + 1) * h * w];
            for oy in 0..oh {
                let y = (oy * stride + ki) as isize - pad as isize;
                let line = &mut dst[oy * ow..(oy + 1) * ow];
                if y < 0 || y >= h as isize {
                    line.fill(0.0);
                    continue;
                }
                let srow = &src[y as usize * w..(y as usize + 1) * w];
                if stride == 1 {
                    // Columns ox with 0 <= ox + kj - pad < w, copied as one run.
                    let lo = pad.saturating_sub(kj).min(ow);
                    let hi = (w + pad).saturating_sub(kj).min(ow).max(lo);
                    line[..lo].fill(0.0);
                    line[hi..].fill(0.0);
                    let s0 = lo + kj - pad;
                    line[lo..hi].copy_from_slice(&srow[s0..s0 + (hi - lo)]);
                } else {
                    for (ox, v) in line.iter_mut().enumerate() {
                        let xx = (ox * stride + kj) as isize - pad as isize;
                        *v = if xx < 0 || xx >= w as isize {
                            0.0
                        } else {
                            srow[xx as usize]
                        };
                    }
                }
            }
        });
}

/// 2-D convolution of `x` [B, C, H, W] with `weight` [N, C / groups, k, k] and `bias` [N], then
/// `act`, for inference (no autodiff). On the host: im2col and one matrix product per image and
/// group straight into a buffer holding the bias, the activation applied in place (burn's CPU
/// convolution converts to channels-last, tiles, and adds bias and activation in more passes).
/// Elsewhere: burn's `conv2d` and element-wise ops. Square kernels and equal strides/padding.
pub fn conv2d(
    x: Tensor<4>,
    weight: &Tensor<4>,
    bias: &Tensor<1>,
    stride: usize,
    pad: usize,
    groups: usize,
    act: ConvActivation,
) -> Tensor<4> {
    let device = x.device();
    let [b, c, h, w] = x.dims();
    let [n, cg, k, k2] = weight.dims();
    if !is_host(&device) || device.is_autodiff() || k != k2 || x.shape().num_elements() == 0 {
        let y = burn::tensor::module::conv2d(
            x,
            weight.clone(),
            Some(bias.clone()),
            burn::tensor::ops::ConvOptions::new([stride; 2], [pad; 2], [1, 1], groups),
        );
        return match act {
            ConvActivation::Identity => y,
            ConvActivation::Leaky(slope) => {
                let neg = y.clone().lower_elem(0.0);
                y.clone().mask_where(neg, y.mul_scalar(slope))
            }
        };
    }
    let oh = (h + 2 * pad - k) / stride + 1;
    let ow = (w + 2 * pad - k) / stride + 1;
    let plane = oh * ow;
    let ng = n / groups;
    let kk = cg * k * k;
    let xp = x
        .try_into_primitive::<Flex>()
        .expect("a tensor on the host backend");
    let wp = weight
        .clone()
        .try_into_primitive::<Flex>()
        .expect("a tensor on the host backend");
    let bp = bias
        .clone()
        .try_into_primitive::<Flex>()
        .expect("a tensor on the host backend");
    let bias_v = host_values(&bp);
    let mut out = vec![0f32; b * n * plane];
    let direct = k == 1 && stride == 1 && pad == 0;
    with_slice(&xp, |xs| {
        with_slice(&wp, |ws| {
            // The im2col buffer is kept between calls: allocating tens of MB per layer makes the
            // kernel zero fresh pages every time (a fifth of a detection in a profile).
            IM2COL.with_borrow_mut(|cols| {
                if !direct {
                    cols.resize(kk * plane, 0.0);
                }
                for img in 0..b {
                    for g in 0..groups {
                        let xg = &xs[(img * c + g * cg) * h * w..(img * c + (g + 1) * cg) * h * w];
                        let rhs: &[f32] = if direct {
                            xg
                        } else {
                            im2col(xg, h, w, k, stride, pad, oh, ow, &mut cols[..kk * plane]);
                            &cols[..kk * plane]
                        };
                        let dst =
                            &mut out[(img * n + g * ng) * plane..(img * n + (g + 1) * ng) * plane];
                        for (row, &bv) in dst.chunks_mut(plane).zip(&bias_v[g * ng..(g + 1) * ng]) {
                            row.fill(bv);
                        }
                        matmul_into(
                            dst,
                            true,
                            row_major(&ws[g * ng * kk..(g + 1) * ng * kk], kk),
                            row_major(rhs, plane),
                            ng,
                            plane,
                            kk,
                        );
                    }
                }
            })
        })
    });
    if let ConvActivation::Leaky(slope) = act {
        out.par_chunks_mut(1 << 14).for_each(|chunk| {
            for v in chunk {
                if *v < 0.0 {
                    *v *= slope;
                }
            }
        });
    }
    Tensor::from_primitive::<Flex>(flex(out, Shape::from([b, n, oh, ow])))
}

// ---------------------------------------------------------------------------------------------
// Max pooling (inference)

/// Max pooling of `x` [B, C, H, W] with a `size` x `size` window moved by `stride`, starting
/// `begin` pixels before the first row and column, giving `out` (height, width); window positions
/// outside the input are skipped (as padding with -inf). On the host one parallel pass over the
/// channels; elsewhere burn's `max_pool2d` with the equivalent padding.
pub fn max_pool2d(
    x: Tensor<4>,
    size: usize,
    stride: usize,
    begin: usize,
    out: (usize, usize),
) -> Tensor<4> {
    let device = x.device();
    let [b, c, h, w] = x.dims();
    let (oh, ow) = out;
    if !is_host(&device) || device.is_autodiff() || x.shape().num_elements() == 0 {
        let end = |o: usize, input: usize| ((o - 1) * stride + size).saturating_sub(begin + input);
        let opts = burn::tensor::ops::MaxPoolOptions::new([size; 2])
            .with_stride([stride; 2])
            .with_padding_pairs([(begin, end(oh, h)), (begin, end(ow, w))]);
        return burn::tensor::module::max_pool2d(x, opts);
    }
    let xp = x
        .try_into_primitive::<Flex>()
        .expect("a tensor on the host backend");
    let mut y = vec![0f32; b * c * oh * ow];
    with_slice(&xp, |xs| {
        y.par_chunks_mut(oh * ow)
            .zip(xs.par_chunks(h * w))
            .for_each(|(dst, src)| {
                for oy in 0..oh {
                    let y0 = (oy * stride) as isize - begin as isize;
                    let rows =
                        (y0.max(0) as usize)..((y0 + size as isize).min(h as isize) as usize);
                    for ox in 0..ow {
                        let x0 = (ox * stride) as isize - begin as isize;
                        let cols =
                            (x0.max(0) as usize)..((x0 + size as isize).min(w as isize) as usize);
                        let mut m = -f32::MAX;
                        for r in rows.clone() {
                            for v in &src[r * w + cols.start..r * w + cols.end] {
                                m = m.max(*v);
                            }
                        }
                        dst[oy * ow + ox] = m;
                    }
                }
            })
    });
    Tensor::from_primitive::<Flex>(flex(y, Shape::from([b, c, oh, ow])))
}
