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
