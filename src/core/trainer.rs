//! One training loop for every model.
//!
//! A model's `train.rs` describes its work as a [`Task`]: the batches of an epoch (seeded by the
//! epoch), the loss of one micro-batch, an evaluation that returns named metrics, and how its
//! weights are named in checkpoints and saved as a model. [`train`] runs the epochs and does the
//! rest the same way for every model:
//!
//! - optimiser steps (Adam/AdamW from [`super::optim`]) on the gradients of the micro-batches of
//!   each batch, run data-parallel on worker threads ([`super::parallel`]) and added in a fixed
//!   order, so results do not depend on the thread count;
//! - dropout streams derived from (seed, epoch, step, micro-batch), so a resumed run draws exactly
//!   what the uninterrupted one drew;
//! - a progress bar with the running loss and throughput;
//! - one line per epoch in `metrics.jsonl` (and the same table in `metrics.csv`): loss, learning
//!   rate, the task's metrics, wall, training and CPU seconds, items per second, best epoch;
//! - the resolved config in the run directory;
//! - the best model by a chosen metric and direction (or the last one when none is chosen), and
//!   early stopping with patience;
//! - a checkpoint after every epoch (weights, optimiser moments, loop state; written atomically)
//!   and an exact `--resume`, also from a checkpoint written mid-epoch; `stop_after_epochs`;
//! - Ctrl-C (SIGINT, once [`catch_interrupts`] is called): the current step finishes, a checkpoint
//!   is written, and training returns [`Interrupted`].
//!
//! There is no RNG state to save beyond the seed: every random stream of a task is derived from
//! (seed, purpose, epoch[, step, micro-batch]) ([`super::rng`]).

use super::checkpoint::{
    load_named, load_training_checkpoint, named_tensors, save_training_checkpoint,
    with_base_prefix, TrainingCheckpoint,
};
use super::dropout::dropout_stream;
use super::optim::{Adam, AdamConfig, Decay, Schedule};
use super::parallel::{data_parallel_grads, trainable};
use super::progress;
use super::resources::process_cpu_seconds;
use super::rng::derive_seed;
use super::run::RunDir;
use anyhow::{bail, Context, Result};
use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

pub const CHECKPOINT: &str = "checkpoint.safetensors";
pub const METRICS_JSONL: &str = "metrics.jsonl";
pub const METRICS_CSV: &str = "metrics.csv";

/// What a model's training loop is made of. Implemented in each model's `train.rs`.
pub trait Task: Sync {
    /// The network; trained on the autodiff twin of the task's device.
    type Model: Module + Sync;
    /// One training example of a batch (a masked sequence, an image index, ...).
    type Item: Sync;
    /// One optimiser step's worth of examples, plus whatever the step shares (negatives, ...).
    type Batch: Sync;

    /// Optimiser steps in one epoch (for the learning-rate schedule): by default, the number of
    /// batches of an epoch.
    fn steps_per_epoch(&self) -> usize {
        self.batches(0).len()
    }
    /// The batches of `epoch` (1-based), in training order; a function of the seed and the epoch.
    fn batches(&self, epoch: usize) -> Vec<Self::Batch>;
    fn items<'a>(&self, batch: &'a Self::Batch) -> &'a [Self::Item];
    /// A batch that takes no optimiser step (its step number is still used up).
    fn skip(&self, _batch: &Self::Batch) -> bool {
        false
    }
    /// The loss of the micro-batch `micro` of `batch`, weighted by its share of the batch so that
    /// the micro-batches' losses sum to the batch's loss. Runs on a worker thread with a
    /// worker's copy of the model; dropout masks come from the stream the loop opened.
    fn loss(
        &self,
        model: &Self::Model,
        batch: &Self::Batch,
        micro: &[Self::Item],
        at: MicroStep,
    ) -> Tensor<1>;
    /// Named metrics of the model (in evaluation mode) after an epoch, the headline ones first.
    fn evaluate(&self, model: &Self::Model) -> Result<Vec<(String, f64)>>;
    /// Write the model (the best so far, or the last epoch's) into the run directory.
    fn save_model(&self, model: &Self::Model, run: &RunDir, epoch: usize) -> Result<()>;
    /// The model after each optimiser step: parameters held fixed in part are put back here
    /// (VideoBERT's frozen visual-word embeddings).
    fn after_step(&self, model: Self::Model) -> Self::Model {
        model
    }
}

/// A task over examples `0..examples` in shuffled batches, given as functions: the fine-tuning
/// tasks (VQA, grounding, retrieval) differ only in their loss, metrics and saving.
pub struct IndexedTask<M, L, E, S> {
    pub examples: usize,
    pub batch_size: usize,
    pub seed: u64,
    /// The purpose number of the shuffling stream ([`super::rng::rng_for`]).
    pub shuffle_stream: u64,
    /// The mean loss of a micro-batch's examples.
    pub loss: L,
    pub evaluate: E,
    pub save: S,
    pub model: std::marker::PhantomData<fn() -> M>,
}

impl<M, L, E, S> Task for IndexedTask<M, L, E, S>
where
    M: Module + Sync,
    L: Fn(&M, &[usize], MicroStep) -> Tensor<1> + Sync,
    E: Fn(&M) -> Result<Vec<(String, f64)>> + Sync,
    S: Fn(&M, &RunDir) -> Result<()> + Sync,
{
    type Model = M;
    type Item = usize;
    type Batch = Vec<usize>;

    fn batches(&self, epoch: usize) -> Vec<Vec<usize>> {
        use rand::seq::SliceRandom;
        let mut order: Vec<usize> = (0..self.examples).collect();
        order.shuffle(&mut super::rng::rng_for(
            self.seed,
            self.shuffle_stream,
            epoch as u64,
        ));
        order
            .chunks(self.batch_size.max(1))
            .map(<[usize]>::to_vec)
            .collect()
    }

    fn items<'a>(&self, batch: &'a Vec<usize>) -> &'a [usize] {
        batch
    }

    fn loss(&self, model: &M, batch: &Vec<usize>, micro: &[usize], at: MicroStep) -> Tensor<1> {
        (self.loss)(model, micro, at).mul_scalar(micro.len() as f64 / batch.len() as f64)
    }

    fn evaluate(&self, model: &M) -> Result<Vec<(String, f64)>> {
        (self.evaluate)(model)
    }

    fn save_model(&self, model: &M, run: &RunDir, _epoch: usize) -> Result<()> {
        (self.save)(model, run)
    }
}

/// A [`DrawnTask`] micro-batch's loss: term `k` is a mean over the micro-batch's `n`
/// predictions, weighted by `weight` and by `n / counts[k]`, its share of the whole batch's,
/// so the batch's gradient is that of each loss's mean over the batch. A micro-batch may hold
/// no prediction at all: a zero that still has a graph.
pub fn weighted_batch_means(
    terms: Vec<(Option<Tensor<1>>, usize, f64)>,
    counts: &[usize],
    device: &Device,
) -> Tensor<1> {
    let mut total = Tensor::<1>::zeros([1], device).require_grad();
    for (k, (term, n, weight)) in terms.into_iter().enumerate() {
        if let Some(x) = term {
            total = total + x.mul_scalar(weight * (n as f64 / counts[k].max(1) as f64));
        }
    }
    total
}

/// A batch of examples drawn for one step, with the number of predictions each loss makes in
/// the whole batch (each loss is a mean over them, so a micro-batch's part is weighted by its
/// own count over these).
pub struct DrawnBatch<I> {
    pub items: Vec<I>,
    pub counts: Vec<usize>,
}

/// A task whose examples are drawn afresh every epoch from `0..examples` in shuffled order
/// (masks, negatives: the pretraining tasks), given as functions. A batch in which no loss
/// predicts anything takes no step.
pub struct DrawnTask<M, I, D, C, L, E, S> {
    pub examples: usize,
    pub batch_size: usize,
    pub seed: u64,
    pub shuffle_stream: u64,
    /// The purpose number of the stream the draws of an epoch come from.
    pub draw_stream: u64,
    /// Draw example `i`.
    pub draw: D,
    /// Predictions per loss of one drawn example.
    pub counts: C,
    /// The loss of a micro-batch given the whole batch's counts.
    pub loss: L,
    pub evaluate: E,
    pub save: S,
    pub model: std::marker::PhantomData<fn() -> (M, I)>,
}

impl<M, I, D, C, L, E, S> Task for DrawnTask<M, I, D, C, L, E, S>
where
    M: Module + Sync,
    I: Sync,
    D: Fn(usize, &mut rand::rngs::StdRng) -> I + Sync,
    C: Fn(&I) -> Vec<usize> + Sync,
    L: Fn(&M, &[I], &[usize]) -> Tensor<1> + Sync,
    E: Fn(&M) -> Result<Vec<(String, f64)>> + Sync,
    S: Fn(&M, &RunDir) -> Result<()> + Sync,
{
    type Model = M;
    type Item = I;
    type Batch = DrawnBatch<I>;

    fn batches(&self, epoch: usize) -> Vec<DrawnBatch<I>> {
        use super::rng::rng_for;
        use rand::seq::SliceRandom;
        let mut order: Vec<usize> = (0..self.examples).collect();
        order.shuffle(&mut rng_for(self.seed, self.shuffle_stream, epoch as u64));
        let mut rng = rng_for(self.seed, self.draw_stream, epoch as u64);
        order
            .chunks(self.batch_size.max(1))
            .map(|chunk| {
                let items: Vec<I> = chunk.iter().map(|&i| (self.draw)(i, &mut rng)).collect();
                let mut counts: Vec<usize> = Vec::new();
                for item in &items {
                    let c = (self.counts)(item);
                    counts.resize(counts.len().max(c.len()), 0);
                    for (t, x) in counts.iter_mut().zip(c) {
                        *t += x;
                    }
                }
                DrawnBatch { items, counts }
            })
            .collect()
    }

    fn items<'a>(&self, batch: &'a DrawnBatch<I>) -> &'a [I] {
        &batch.items
    }

    fn skip(&self, batch: &DrawnBatch<I>) -> bool {
        batch.counts.iter().all(|&c| c == 0)
    }

    fn loss(&self, model: &M, batch: &DrawnBatch<I>, micro: &[I], _: MicroStep) -> Tensor<1> {
        (self.loss)(model, micro, &batch.counts)
    }

    fn evaluate(&self, model: &M) -> Result<Vec<(String, f64)>> {
        (self.evaluate)(model)
    }

    fn save_model(&self, model: &M, run: &RunDir, _epoch: usize) -> Result<()> {
        (self.save)(model, run)
    }
}

/// Where a micro-batch stands: for random streams of the task's own (augmentation, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MicroStep {
    pub epoch: usize,
    /// 1-based optimiser step, counted over the whole run.
    pub step: u64,
    /// Index of the micro-batch within the batch.
    pub index: usize,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Direction {
    /// Larger is better (accuracy, NDCG).
    Max,
    /// Smaller is better (a loss).
    Min,
}

/// The metric that picks the best model and drives early stopping (a `[selection]` table in
/// a training config: `metric = "valid_loss"`, `direction = "min"`, `patience = 5`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Selection {
    pub metric: String,
    pub direction: Direction,
    /// Stop after this many epochs without a better value; none: never stop early.
    #[serde(default)]
    pub patience: Option<usize>,
}

impl Selection {
    /// The patience, when given, is at least one epoch.
    pub fn validate(&self) -> Result<()> {
        match self.patience {
            Some(p) => super::validate::at_least_one("selection.patience (--patience)", p),
            None => Ok(()),
        }
    }

    fn better(&self, value: f64, best: f64) -> bool {
        match self.direction {
            Direction::Max => value > best,
            Direction::Min => value < best,
        }
    }

    fn worst(&self) -> f64 {
        match self.direction {
            Direction::Max => f64::NEG_INFINITY,
            Direction::Min => f64::INFINITY,
        }
    }
}

/// How a model's checkpoints name its tensors: [`named_tensors`] renames, and for a
/// Hugging Face head model the wrapped base model's prefix and the head's (see
/// [`with_base_prefix`]).
#[derive(Debug, Clone, Default)]
pub struct CheckpointNames {
    pub renames: Vec<(&'static str, &'static str)>,
    /// (base prefix such as `bert.`, head prefix such as `cls.`)
    pub base_prefix: Option<(&'static str, &'static str)>,
}

impl CheckpointNames {
    fn tensors<M: Module>(&self, model: &M) -> Vec<(String, TensorData)> {
        let named = named_tensors(model, &self.renames);
        match self.base_prefix {
            Some((base, head)) => with_base_prefix(named, base, head),
            None => named,
        }
    }

    fn restore<M: Module>(
        &self,
        model: M,
        ckpt: &mut TrainingCheckpoint,
        device: &Device,
    ) -> Result<M> {
        let tensors = ckpt.take_model_tensors(self.base_prefix.map_or("", |p| p.0));
        load_named(model, &tensors, &self.renames, device, &ckpt.path)
    }
}

/// The loop's own settings (a model's config maps onto these) and what a model's runs record.
#[derive(Debug, Clone)]
pub struct LoopSettings {
    /// The `format` recorded in checkpoints (e.g. `tessera-vit`); a checkpoint of another format
    /// is refused on resume.
    pub format: &'static str,
    /// The resolved configuration: written into the run directory under this file name.
    pub config_file: (&'static str, String),
    /// The settings a resumed run must share with the run it continues.
    pub resume_settings: toml::Table,
    /// Dotted keys of `resume_settings` that may change on resume (more epochs, more patience).
    pub extendable: &'static [&'static str],
    pub names: CheckpointNames,
    /// Extra metadata for every checkpoint.
    pub checkpoint_meta: HashMap<String, String>,
    pub seed: u64,
    pub epochs: usize,
    /// Examples per micro-batch. A batch is always cut in at least two micro-batches, so that two
    /// cores share even a small batch and the result does not depend on the thread count; 0: no
    /// cut beyond that.
    pub micro_batch: usize,
    /// The purpose number of the task's dropout stream ([`super::rng::derive_seed`]).
    pub dropout_stream: u64,
    pub lr: f64,
    pub warmup_steps: u64,
    pub decay: Decay,
    pub adam: AdamConfig,
    /// Best model and early stopping; none: the model of the last epoch is kept.
    pub selection: Option<Selection>,
}

impl LoopSettings {
    /// The loop's numbers within their ranges (each model's config check names its keys first;
    /// this is the last line of defence for a model that forgot one).
    pub fn validate(&self) -> Result<()> {
        use super::validate::*;
        at_least_one("epochs", self.epochs)?;
        positive("lr", self.lr)?;
        let a = &self.adam;
        probability_below_one("adam beta1", a.beta1)?;
        probability_below_one("adam beta2", a.beta2)?;
        positive("adam epsilon", a.epsilon)?;
        non_negative("weight_decay", a.weight_decay)?;
        if let Some(c) = a.clip_grad_norm {
            positive("clip_grad_norm", c)?;
        }
        match &self.selection {
            Some(s) => s.validate(),
            None => Ok(()),
        }
    }
}

impl LoopSettings {
    /// The settings of the vision-language trainers (VL-BERT's, ViLBERT's): checkpoints under
    /// `renames`, linear decay after warmup, AdamW with clipping (0: none); `cfg` is written to
    /// the run directory as `config_file` and must match on resume (epochs and patience may
    /// grow).
    #[allow(clippy::too_many_arguments)]
    pub fn standard<C: Serialize>(
        format: &'static str,
        config_file: &'static str,
        cfg: &C,
        (seed, epochs, micro_batch): (u64, usize, usize),
        (lr, warmup_steps): (f64, u64),
        (weight_decay, clip_grad_norm): (f64, f64),
        selection: Option<Selection>,
        renames: Vec<(&'static str, &'static str)>,
        dropout_stream: u64,
    ) -> Result<Self> {
        Ok(Self {
            format,
            config_file: (config_file, toml::to_string(cfg)?),
            resume_settings: toml::Table::try_from(cfg)?,
            extendable: &["epochs", "selection.patience"],
            names: CheckpointNames {
                renames,
                base_prefix: None,
            },
            checkpoint_meta: HashMap::new(),
            seed,
            epochs,
            micro_batch,
            dropout_stream,
            lr,
            warmup_steps,
            decay: Decay::Linear,
            adam: AdamConfig {
                weight_decay,
                clip_grad_norm: (clip_grad_norm > 0.0).then_some(clip_grad_norm),
                ..AdamConfig::default()
            },
            selection,
        })
    }
}

/// Fine-tuning settings of a vision-language task (VQA, grounding, retrieval) as a
/// `--config` file's keys.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FinetuneConfig {
    pub seed: u64,
    pub epochs: usize,
    pub batch_size: usize,
    pub micro_batch: usize,
    pub lr: f64,
    pub warmup_steps: u64,
    pub weight_decay: f64,
    pub clip_grad_norm: f64,
    /// The question-only baseline: region features and boxes zeroed in training and evaluation.
    pub blind: bool,
    pub selection: Option<Selection>,
}

impl Default for FinetuneConfig {
    fn default() -> Self {
        Self {
            seed: 0,
            epochs: 5,
            batch_size: 64,
            micro_batch: 32,
            lr: 1e-4,
            warmup_steps: 100,
            weight_decay: 1e-4,
            clip_grad_norm: 1.0,
            blind: false,
            selection: None,
        }
    }
}

impl FinetuneConfig {
    /// The loop settings of a fine-tuning run ([`LoopSettings::standard`] with these keys).
    pub fn loop_settings(
        &self,
        format: &'static str,
        config_file: &'static str,
        renames: Vec<(&'static str, &'static str)>,
        dropout_stream: u64,
    ) -> Result<LoopSettings> {
        LoopSettings::standard(
            format,
            config_file,
            self,
            (self.seed, self.epochs, self.micro_batch),
            (self.lr, self.warmup_steps),
            (self.weight_decay, self.clip_grad_norm),
            self.selection.clone(),
            renames,
            dropout_stream,
        )
    }

    pub fn validate(&self) -> Result<()> {
        use super::validate::*;
        at_least_one("epochs (--epochs)", self.epochs)?;
        at_least_one("batch_size (--batch-size)", self.batch_size)?;
        positive("lr (--lr)", self.lr)?;
        non_negative("weight_decay", self.weight_decay)?;
        non_negative("clip_grad_norm", self.clip_grad_norm)?;
        match &self.selection {
            Some(s) => s.validate(),
            None => Ok(()),
        }
    }
}

/// How one training invocation runs (not part of the training configuration).
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// No progress bars or per-epoch lines.
    pub quiet: bool,
    /// Continue from the run directory's checkpoint.
    pub resume: bool,
    /// Stop (as if interrupted) after this many epochs in total; the checkpoint stays resumable.
    pub stop_after_epochs: Option<usize>,
}

/// One epoch's line of `metrics.jsonl`.
#[derive(Debug, Clone, PartialEq)]
pub struct EpochRecord {
    pub epoch: usize,
    pub step: u64,
    /// Mean training loss over the epoch's batches.
    pub loss: f64,
    /// Learning rate of the epoch's last step.
    pub lr: f64,
    /// The task's metrics after the epoch.
    pub metrics: Vec<(String, f64)>,
    /// Wall seconds of the training part, and of the whole epoch (evaluation and saving too).
    pub train_seconds: f64,
    pub seconds: f64,
    /// CPU seconds (all threads) of the whole epoch.
    pub cpu_seconds: f64,
    pub items: u64,
    pub items_per_second: f64,
    /// Best epoch so far by the selection metric (the epoch itself without one).
    pub best_epoch: usize,
}

impl EpochRecord {
    pub fn metric(&self, name: &str) -> Option<f64> {
        self.metrics.iter().find(|(k, _)| k == name).map(|p| p.1)
    }

    /// The flat JSON object written to `metrics.jsonl`.
    pub fn to_json(&self) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        m.insert("epoch".into(), self.epoch.into());
        m.insert("step".into(), self.step.into());
        m.insert("loss".into(), json_f64(self.loss));
        m.insert("lr".into(), json_f64(self.lr));
        for (k, v) in &self.metrics {
            m.insert(k.clone(), json_f64(*v));
        }
        m.insert("train_seconds".into(), json_f64(self.train_seconds));
        m.insert("seconds".into(), json_f64(self.seconds));
        m.insert("cpu_seconds".into(), json_f64(self.cpu_seconds));
        m.insert("items".into(), self.items.into());
        m.insert("items_per_second".into(), json_f64(self.items_per_second));
        m.insert("best_epoch".into(), self.best_epoch.into());
        serde_json::Value::Object(m)
    }
}

/// A number as JSON; NaN and infinities (not JSON) as null.
fn json_f64(v: f64) -> serde_json::Value {
    serde_json::Number::from_f64(v)
        .map(serde_json::Value::Number)
        .unwrap_or(serde_json::Value::Null)
}

/// What a training invocation did.
#[derive(Debug, Clone)]
pub struct TrainOutcome {
    /// The epochs run by this invocation.
    pub records: Vec<EpochRecord>,
    /// The last completed epoch of the run (counting those before a resume).
    pub epochs_run: usize,
    pub best_epoch: usize,
    /// The best value of the selection metric (NaN without a selection).
    pub best_value: f64,
    pub stopped_early: bool,
    pub seconds: f64,
    /// Mean loss of the run's first epoch and of the last epoch run here (NaN if none ran).
    pub first_loss: f64,
    pub last_loss: f64,
}

/// Returned (as an error) when Ctrl-C stopped training; the checkpoint is written.
#[derive(Debug)]
pub struct Interrupted {
    pub epoch: usize,
    pub step: u64,
    pub checkpoint: std::path::PathBuf,
}

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "interrupted in epoch {} after step {}; checkpoint written to {} (continue with --resume)",
            self.epoch,
            self.step,
            self.checkpoint.display()
        )
    }
}

impl std::error::Error for Interrupted {}

static INTERRUPT: AtomicBool = AtomicBool::new(false);

extern "C" fn on_interrupt(_: libc::c_int) {
    INTERRUPT.store(true, Ordering::SeqCst);
}

/// From now on the first Ctrl-C (SIGINT) asks the training loop to stop after its current step
/// with a checkpoint; a second one ends the process at once (checkpoints are written atomically,
/// so that is safe too).
pub fn catch_interrupts() {
    // SAFETY: installs a handler that only stores to an atomic (async-signal-safe); the struct is
    // zeroed and its mask emptied before use.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_interrupt as *const () as usize;
        action.sa_flags = libc::SA_RESETHAND;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(libc::SIGINT, &action, std::ptr::null_mut());
    }
}

fn interrupt_requested() -> bool {
    INTERRUPT.load(Ordering::SeqCst)
}

/// Micro-batch size for a batch of `len` examples (see [`LoopSettings::micro_batch`]).
pub fn micro_size(micro_batch: usize, len: usize) -> usize {
    let half = len.div_ceil(2);
    match micro_batch {
        0 => half,
        m => m.min(half),
    }
    .max(1)
}

/// Progress within the epoch a checkpoint was written in (mid-epoch checkpoints only).
#[derive(Debug, Clone, Default, PartialEq)]
struct Partial {
    batches_done: usize,
    loss_sum: f64,
    loss_batches: usize,
    items: u64,
    lr: f64,
    train_seconds: f64,
    cpu_seconds: f64,
}

/// The loop's state, saved in every checkpoint's metadata.
#[derive(Debug, Clone)]
struct LoopState {
    /// Last completed epoch.
    epoch: usize,
    step: u64,
    best_epoch: usize,
    best_value: f64,
    bad_epochs: usize,
    first_loss: f64,
    partial: Partial,
}

impl LoopState {
    fn new(selection: Option<&Selection>) -> Self {
        Self {
            epoch: 0,
            step: 0,
            best_epoch: 0,
            best_value: selection.map_or(f64::NAN, Selection::worst),
            bad_epochs: 0,
            first_loss: f64::NAN,
            partial: Partial::default(),
        }
    }

    fn to_meta(&self, meta: &mut HashMap<String, String>) {
        let p = &self.partial;
        for (k, v) in [
            ("epoch", self.epoch.to_string()),
            ("step", self.step.to_string()),
            ("best_epoch", self.best_epoch.to_string()),
            ("best_value", self.best_value.to_string()),
            ("bad_epochs", self.bad_epochs.to_string()),
            ("first_loss", self.first_loss.to_string()),
            ("epoch_batches_done", p.batches_done.to_string()),
            ("epoch_loss_sum", p.loss_sum.to_string()),
            ("epoch_loss_batches", p.loss_batches.to_string()),
            ("epoch_items", p.items.to_string()),
            ("epoch_lr", p.lr.to_string()),
            ("epoch_train_seconds", p.train_seconds.to_string()),
            ("epoch_cpu_seconds", p.cpu_seconds.to_string()),
        ] {
            meta.insert(k.to_string(), v);
        }
    }

    fn from_checkpoint(c: &TrainingCheckpoint) -> Result<Self> {
        fn num<T: std::str::FromStr>(c: &TrainingCheckpoint, key: &str) -> Result<T> {
            let v = c.get(key)?;
            v.parse().map_err(|_| {
                anyhow::anyhow!(
                    "{}: metadata `{key}` is `{v}`, not a number",
                    c.path.display()
                )
            })
        }
        Ok(Self {
            epoch: num(c, "epoch")?,
            step: num(c, "step")?,
            best_epoch: num(c, "best_epoch")?,
            best_value: num(c, "best_value")?,
            bad_epochs: num(c, "bad_epochs")?,
            first_loss: num(c, "first_loss")?,
            partial: Partial {
                batches_done: num(c, "epoch_batches_done")?,
                loss_sum: num(c, "epoch_loss_sum")?,
                loss_batches: num(c, "epoch_loss_batches")?,
                items: num(c, "epoch_items")?,
                lr: num(c, "epoch_lr")?,
                train_seconds: num(c, "epoch_train_seconds")?,
                cpu_seconds: num(c, "epoch_cpu_seconds")?,
            },
        })
    }
}

/// Keys (dotted) whose values differ between two settings tables, with both values.
pub fn settings_diff(saved: &toml::Table, given: &toml::Table) -> Vec<(String, String, String)> {
    fn walk(
        prefix: &str,
        a: &toml::Table,
        b: &toml::Table,
        out: &mut Vec<(String, String, String)>,
    ) {
        let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
        keys.sort();
        keys.dedup();
        for k in keys {
            let name = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            match (a.get(k), b.get(k)) {
                (Some(toml::Value::Table(x)), Some(toml::Value::Table(y))) => {
                    walk(&name, x, y, out)
                }
                (x, y) if x == y => {}
                (x, y) => {
                    let show = |v: Option<&toml::Value>| {
                        v.map_or("(absent)".to_string(), |v| v.to_string())
                    };
                    out.push((name, show(x), show(y)));
                }
            }
        }
    }
    let mut out = Vec::new();
    walk("", saved, given, &mut out);
    out
}

/// Run the training loop of `task` from `model` (built on `device`, plain or autodiff), writing
/// into `run`. See the module documentation.
pub fn train<T: Task>(
    task: &T,
    model: T::Model,
    settings: &LoopSettings,
    run: &RunDir,
    device: &Device,
    opts: &RunOptions,
) -> Result<TrainOutcome> {
    let started = Instant::now();
    settings.validate()?;
    run.remove_stale_temp_files();
    let (config_name, config_text) = &settings.config_file;
    run.write_atomic(config_name, config_text.as_bytes())?;
    let given = &settings.resume_settings;
    let mut adam = Adam::new(settings.adam.clone());
    let selection = settings.selection.as_ref();
    let mut state = LoopState::new(selection);
    let mut model = model;
    let checkpoint_path = run.file(CHECKPOINT);
    if opts.resume {
        let mut ckpt = load_training_checkpoint(&checkpoint_path, &mut adam, device)?;
        let format = ckpt.get("format")?;
        anyhow::ensure!(
            format == settings.format,
            "cannot resume {}: it is a `{format}` checkpoint, not `{}`",
            ckpt.path.display(),
            settings.format
        );
        let saved: toml::Table = toml::from_str(&ckpt.get("settings")?)
            .with_context(|| format!("{}: metadata `settings`", ckpt.path.display()))?;
        let diff = settings_diff(&saved, given);
        let (allowed, refused): (Vec<_>, Vec<_>) = diff
            .into_iter()
            .partition(|(k, _, _)| settings.extendable.contains(&k.as_str()));
        if !refused.is_empty() {
            bail!(
                "cannot resume {}: its training configuration differs from the one given:\n  {}",
                ckpt.path.display(),
                refused
                    .iter()
                    .map(|(k, a, b)| format!("{k} = {a} in the checkpoint, {b} now"))
                    .collect::<Vec<_>>()
                    .join("\n  ")
            );
        }
        if !opts.quiet {
            for (k, a, b) in &allowed {
                eprintln!("resuming with {k} = {b} (was {a}); the schedule follows the new value");
            }
        }
        state = LoopState::from_checkpoint(&ckpt)?;
        model = settings.names.restore(model, &mut ckpt, device)?;
        truncate_metrics(run, state.epoch)?;
    } else {
        // A fresh run starts a fresh log.
        for f in [METRICS_JSONL, METRICS_CSV] {
            let p = run.file(f);
            if p.exists() {
                std::fs::remove_file(&p)
                    .with_context(|| format!("cannot remove {}", p.display()))?;
            }
        }
    }
    let mut model = trainable(model);
    let steps_per_epoch = task.steps_per_epoch() as u64;
    let schedule = Schedule {
        lr: settings.lr,
        warmup_steps: settings.warmup_steps,
        decay: settings.decay,
        total_steps: steps_per_epoch * settings.epochs as u64,
    };
    let patience = selection.and_then(|s| s.patience);
    let mut records = Vec::new();
    let mut stopped_early = false;
    let mut last_loss = f64::NAN;
    let workers = rayon::current_num_threads();
    let mut epoch = state.epoch + 1;
    while epoch <= settings.epochs {
        if patience.is_some_and(|p| state.bad_epochs >= p) {
            stopped_early = true;
            break;
        }
        let t0 = Instant::now();
        let cpu0 = process_cpu_seconds();
        let mut partial = std::mem::take(&mut state.partial);
        let dropout_seed = derive_seed(settings.seed, settings.dropout_stream, epoch as u64);
        let batches = task.batches(epoch);
        let pb = progress::bar(batches.len() as u64, &format!("epoch {epoch}"), opts.quiet);
        pb.set_position(partial.batches_done as u64);
        let mut interrupted = false;
        for (b, batch) in batches.iter().enumerate().skip(partial.batches_done) {
            state.step += 1;
            let step = state.step;
            partial.batches_done = b + 1;
            if task.skip(batch) {
                pb.inc(1);
                continue;
            }
            let lr = schedule.lr_at(step);
            let items = task.items(batch);
            let micro = micro_size(settings.micro_batch, items.len());
            let micro_batches: Vec<&[T::Item]> = items.chunks(micro).collect();
            let step_seed = derive_seed(dropout_seed, step, 0);
            let (grads, loss) = data_parallel_grads(&model, &micro_batches, workers, |m, i, mb| {
                let _stream = dropout_stream(derive_seed(step_seed, i as u64, 0));
                let at = MicroStep {
                    epoch,
                    step,
                    index: i,
                };
                task.loss(m, batch, mb, at)
            });
            anyhow::ensure!(
                loss.is_finite(),
                "training diverged at step {step}: loss is {loss}"
            );
            model = task.after_step(adam.step(model, grads, lr));
            partial.loss_sum += loss;
            partial.loss_batches += 1;
            partial.items += items.len() as u64;
            partial.lr = lr;
            let elapsed = partial.train_seconds + t0.elapsed().as_secs_f64();
            pb.set_message(format!(
                "loss {:.4}  {:.0} items/s",
                partial.loss_sum / partial.loss_batches as f64,
                partial.items as f64 / elapsed.max(1e-9)
            ));
            pb.inc(1);
            if interrupt_requested() && partial.batches_done < batches.len() {
                interrupted = true;
                break;
            }
        }
        if interrupted {
            pb.finish_and_clear();
            partial.train_seconds += t0.elapsed().as_secs_f64();
            partial.cpu_seconds += process_cpu_seconds() - cpu0;
            state.partial = partial;
            write_checkpoint(settings, &model, &adam, &state, run)?;
            return Err(Interrupted {
                epoch,
                step: state.step,
                checkpoint: checkpoint_path,
            }
            .into());
        }
        pb.finish_and_clear();
        let train_seconds = partial.train_seconds + t0.elapsed().as_secs_f64();
        let epoch_loss = partial.loss_sum / partial.loss_batches.max(1) as f64;
        if state.first_loss.is_nan() {
            state.first_loss = epoch_loss;
        }
        last_loss = epoch_loss;

        let plain = model.valid();
        let metrics = task.evaluate(&plain)?;
        match selection {
            Some(sel) => {
                let value = metrics
                    .iter()
                    .find(|(k, _)| *k == sel.metric)
                    .map(|p| p.1)
                    .with_context(|| {
                        format!(
                            "the selection metric `{}` is not among this model's metrics ({})",
                            sel.metric,
                            metrics
                                .iter()
                                .map(|p| p.0.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    })?;
                if sel.better(value, state.best_value) {
                    state.best_epoch = epoch;
                    state.best_value = value;
                    state.bad_epochs = 0;
                    task.save_model(&plain, run, epoch)?;
                } else {
                    state.bad_epochs += 1;
                }
            }
            None => {
                state.best_epoch = epoch;
                task.save_model(&plain, run, epoch)?;
            }
        }
        state.epoch = epoch;
        let record = EpochRecord {
            epoch,
            step: state.step,
            loss: epoch_loss,
            lr: partial.lr,
            metrics,
            train_seconds,
            seconds: partial.train_seconds + t0.elapsed().as_secs_f64(),
            cpu_seconds: partial.cpu_seconds + process_cpu_seconds() - cpu0,
            items: partial.items,
            items_per_second: partial.items as f64 / train_seconds.max(1e-9),
            best_epoch: state.best_epoch,
        };
        // The checkpoint first: a kill between the two leaves the log one epoch short, which a
        // resume re-runs and logs; the reverse order could log an epoch twice.
        write_checkpoint(settings, &model, &adam, &state, run)?;
        log_epoch(run, &record)?;
        if !opts.quiet {
            eprintln!("{}", epoch_line(&record));
        }
        records.push(record);
        if opts.stop_after_epochs.is_some_and(|n| epoch >= n) {
            break;
        }
        if interrupt_requested() && epoch < settings.epochs {
            return Err(Interrupted {
                epoch,
                step: state.step,
                checkpoint: checkpoint_path,
            }
            .into());
        }
        epoch += 1;
    }
    if patience.is_some_and(|p| state.bad_epochs >= p) && state.epoch < settings.epochs {
        stopped_early = true;
    }
    Ok(TrainOutcome {
        records,
        epochs_run: state.epoch,
        best_epoch: state.best_epoch,
        best_value: state.best_value,
        stopped_early,
        seconds: started.elapsed().as_secs_f64(),
        first_loss: state.first_loss,
        last_loss,
    })
}

fn write_checkpoint<M: Module>(
    settings: &LoopSettings,
    model: &M,
    adam: &Adam,
    state: &LoopState,
    run: &RunDir,
) -> Result<()> {
    let mut meta = settings.checkpoint_meta.clone();
    meta.insert("format".into(), settings.format.into());
    meta.insert(
        "settings".into(),
        toml::to_string(&settings.resume_settings)?,
    );
    state.to_meta(&mut meta);
    save_training_checkpoint(
        &run.file(CHECKPOINT),
        settings.names.tensors(&model.valid()),
        adam,
        meta,
    )
}

/// The line printed after an epoch.
fn epoch_line(r: &EpochRecord) -> String {
    let mut line = format!("epoch {:>4}  loss {:.4}", r.epoch, r.loss);
    for (k, v) in r.metrics.iter().take(3) {
        line += &format!("  {k} {v:.4}");
    }
    if r.best_epoch != r.epoch {
        line += &format!("  best epoch {}", r.best_epoch);
    }
    line += &format!("  ({:.1}s, {:.0} items/s)", r.seconds, r.items_per_second);
    line
}

/// Append the record to `metrics.jsonl` and rewrite `metrics.csv` from it.
fn log_epoch(run: &RunDir, record: &EpochRecord) -> Result<()> {
    run.log_metrics(&record.to_json())?;
    write_csv(run)
}

/// The epoch lines of `metrics.jsonl`; a line that does not parse (cut by a kill) is dropped.
pub fn read_metrics(
    path: &std::path::Path,
) -> Result<Vec<serde_json::Map<String, serde_json::Value>>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| match v {
            serde_json::Value::Object(m) => Some(m),
            _ => None,
        })
        .collect())
}

/// Keep only the lines of epochs up to `epoch` (a resumed run re-runs and re-logs the rest).
fn truncate_metrics(run: &RunDir, epoch: usize) -> Result<()> {
    let path = run.file(METRICS_JSONL);
    let rows = read_metrics(&path)?;
    let kept: Vec<String> = rows
        .iter()
        .filter(|m| {
            m.get("epoch")
                .and_then(|e| e.as_u64())
                .is_some_and(|e| e as usize <= epoch)
        })
        .map(|m| serde_json::to_string(m).expect("JSON serialises"))
        .collect();
    let mut text = kept.join("\n");
    if !text.is_empty() {
        text.push('\n');
    }
    run.write_atomic(METRICS_JSONL, text.as_bytes())?;
    write_csv(run)
}

/// `metrics.csv`: the rows of `metrics.jsonl` as a table, columns in order of first appearance.
fn write_csv(run: &RunDir) -> Result<()> {
    let rows = read_metrics(&run.file(METRICS_JSONL))?;
    let mut columns: Vec<String> = Vec::new();
    for r in &rows {
        for k in r.keys() {
            if !columns.contains(k) {
                columns.push(k.clone());
            }
        }
    }
    let cell = |v: Option<&serde_json::Value>| -> String {
        match v {
            None | Some(serde_json::Value::Null) => String::new(),
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(v) => v.to_string(),
        }
    };
    let mut out = columns.join(",");
    out.push('\n');
    for r in &rows {
        let line: Vec<String> = columns.iter().map(|c| cell(r.get(c))).collect();
        out += &line.join(",");
        out.push('\n');
    }
    run.write_atomic(METRICS_CSV, out.as_bytes())
}
