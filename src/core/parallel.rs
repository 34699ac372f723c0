//! Data-parallel gradients on the CPU: the micro-batches of one optimiser step are spread over
//! worker threads, each differentiating its own autodiff graph, and the workers' gradients are
//! summed in a fixed order.
//!
//! Why: burn's CPU backend runs its element-wise kernels (GELU, the exponentials of softmax,
//! additions, dropout's products) on one thread and only matrix products and a few reductions
//! on several, so a single graph keeps about 1.2 of 2 cores busy on a BERT4Rec step. Independent
//! graphs on independent threads fill the rest. Each worker differentiates a copy of the module
//! whose parameters are fresh autodiff leaves (same [`ParamId`](burn::module::ParamId)s, shared
//! storage): graphs that shared leaf nodes would be merged by burn under one lock.
//!
//! Determinism: gradients are added in micro-batch order whichever worker computed them.

use burn::module::{Module, ModuleMapper, Param};
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::tensor::Tensor;
use rayon::prelude::*;

/// A copy of `module` whose parameters are new autodiff leaves over the same values.
pub fn fresh_leaves<M: Module>(module: &M) -> M {
    module.clone().map(&mut FreshLeaves)
}

/// `module`, built or loaded on a plain device, with every float parameter made a tracked leaf
/// on that device's autodiff twin (no copy), ready to train.
pub fn trainable<M: Module>(module: M) -> M {
    module.map(&mut Trainable)
}

struct Trainable;

impl ModuleMapper for Trainable {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (id, tensor, mapper) = param.consume();
        let tensor = if tensor.device().is_autodiff() {
            tensor
        } else {
            Tensor::from_inner(tensor)
        };
        Param::from_mapped_value(id, tensor.require_grad(), mapper)
    }
}

struct FreshLeaves;

impl ModuleMapper for FreshLeaves {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (id, tensor, mapper) = param.consume();
        let tracked = tensor.is_require_grad();
        let tensor = tensor.detach();
        let tensor = if tracked {
            tensor.require_grad()
        } else {
            tensor
        };
        Param::from_mapped_value(id, tensor, mapper)
    }
}

/// Sum of the gradients of `loss_of(module, i, &work[i])` over all work items, and the sum of
/// the loss values, computed by up to `workers` threads of rayon's pool.
///
/// `loss_of` must build its graph from the module it is given (a worker's copy), and should
/// open its own [`dropout_stream`](super::dropout::dropout_stream) keyed by `i` so that its
/// dropout masks do not depend on which worker ran it. Every item's gradients are kept until
/// all are done and then added in item order, so the result does not depend on the number of
/// workers either (at the cost of one set of gradients per item in memory).
pub fn data_parallel_grads<M, W, F>(
    module: &M,
    work: &[W],
    workers: usize,
    loss_of: F,
) -> (GradientsParams, f64)
where
    M: Module + Sync,
    W: Sync,
    F: Fn(&M, usize, &W) -> Tensor<1> + Sync,
{
    let workers = workers.clamp(1, work.len().max(1));
    let run_worker = |w: usize| -> Vec<(usize, GradientsParams, f64)> {
        let local = fresh_leaves(module);
        (w..work.len())
            .step_by(workers)
            .map(|i| {
                let loss = loss_of(&local, i, &work[i]);
                let value = loss.clone().into_scalar::<f32>() as f64;
                (
                    i,
                    GradientsParams::from_grads(loss.backward(), &local),
                    value,
                )
            })
            .collect()
    };
    let mut parts: Vec<(usize, GradientsParams, f64)> = if workers == 1 {
        run_worker(0)
    } else {
        (0..workers)
            .into_par_iter()
            .map(run_worker)
            .collect::<Vec<_>>()
            .into_iter()
            .flatten()
            .collect()
    };
    parts.sort_by_key(|p| p.0);
    let mut total = GradientsAccumulator::<M>::new();
    let mut loss_sum = 0.0;
    for (_, grads, loss) in parts {
        total.accumulate(module, grads);
        loss_sum += loss;
    }
    (total.grads(), loss_sum)
}

/// `n` rows cut into one contiguous slice `(lo, hi)` per worker thread (at most `n` slices):
/// inference of a small batch runs faster as one graph per thread than as one graph whose
/// matrix products are split (the element-wise kernels are single-threaded, see above).
pub fn row_slices(n: usize) -> Vec<(usize, usize)> {
    let workers = rayon::current_num_threads().min(n).max(1);
    let per = n.div_ceil(workers);
    (0..workers)
        .map(|w| ((w * per).min(n), ((w + 1) * per).min(n)))
        .filter(|(lo, hi)| lo < hi)
        .collect()
}
