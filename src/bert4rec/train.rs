//! Cloze training with early stopping on validation NDCG@10, checkpoints and exact resume.

use super::config::{Bert4RecConfig, LossKind, SampleMode};
use super::data::{make_batch, split_leave_one_out, truncate_left, SequenceData};
use super::eval::{evaluate, Split};
use super::model::{checkpoint_renames, Bert4Rec};
use crate::core::checkpoint::{
    load_named, load_safetensors, load_training_checkpoint, named_tensors, save_safetensors,
    save_training_checkpoint,
};
use crate::core::dropout::dropout_stream;
use crate::core::masking::{mask_last, ClozeMasker, MaskStyle, Masked};
use crate::core::optim::{Adam, AdamConfig, Schedule};
use crate::core::parallel::data_parallel_grads;
use crate::core::progress;
use crate::core::resources::peak_rss_mib;
use crate::core::rng::{derive_seed, rng_for};
use crate::core::run::RunDir;
use anyhow::Result;
use burn::module::Module;
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::seq::SliceRandom;
use rand::Rng;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

const STREAM_MASK: u64 = 1;
const STREAM_DROPOUT: u64 = 2;
const STREAM_NEG: u64 = 3;
const STREAM_INIT: u64 = 4;

pub const CHECKPOINT: &str = "checkpoint.safetensors";
pub const BEST_MODEL: &str = "model.safetensors";
pub const CONFIG: &str = "config.toml";
pub const ITEMS: &str = "items.txt";

/// Options of one training invocation that are not part of the model's configuration.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Continue from the run directory's checkpoint.
    pub resume: bool,
    /// Stop (as if interrupted) after this many epochs in total; the checkpoint stays resumable.
    pub stop_after_epochs: Option<usize>,
    /// No progress bars or per-epoch lines.
    pub quiet: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct EpochRecord {
    pub epoch: usize,
    pub step: u64,
    pub loss: f64,
    pub lr: f64,
    pub train_seconds: f64,
    pub valid: BTreeMap<String, f64>,
    pub best_epoch: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct TrainSummary {
    pub epochs_run: usize,
    pub best_epoch: usize,
    pub best_valid_ndcg10: f64,
    pub stopped_early: bool,
    pub seconds: f64,
    pub first_epoch_loss: f64,
    pub last_epoch_loss: f64,
    /// Peak resident memory of the process so far (Linux), in MiB.
    pub peak_rss_mib: Option<f64>,
}

/// Training sequences of one epoch: windows of each user's history, masked.
pub fn epoch_samples(data: &SequenceData, cfg: &Bert4RecConfig, epoch: usize) -> Vec<Masked> {
    let t = &cfg.train;
    let max_len = cfg.model.max_len;
    let mut rng = rng_for(cfg.seed, STREAM_MASK, epoch as u64);
    let style = if t.bert_80_10_10 {
        MaskStyle::BERT_80_10_10
    } else {
        MaskStyle::ALWAYS_MASK
    };
    let masker = ClozeMasker {
        pad: data.pad(),
        mask_token: data.mask_token(),
        p: t.mask_prob,
        max_predictions: t.max_predictions,
        style,
        random_range: 1..=data.num_items() as u32,
        never_mask: vec![],
    };
    let step = ((t.sliding_window * max_len as f64).round() as usize).max(1);
    let mut out = Vec::new();
    for _copy in 0..t.dupe_factor.max(1) {
        for seq in &data.sequences {
            let Some((history, _, _)) = split_leave_one_out(seq) else {
                continue;
            };
            let mut windows: Vec<&[u32]> = vec![truncate_left(history, max_len)];
            if t.sample_mode == SampleMode::Prefixes {
                windows = (2..=history.len())
                    .map(|end| &history[end.saturating_sub(max_len)..end])
                    .collect();
            } else if t.sliding_window > 0.0 && history.len() > max_len {
                let mut end = history.len();
                while end > max_len {
                    end = end.saturating_sub(step).max(max_len);
                    windows.push(&history[end - max_len..end]);
                    if end == max_len {
                        break;
                    }
                }
            }
            for w in windows {
                out.push(masker.mask(w, &mut rng));
                if t.mask_last_extra {
                    out.push(mask_last(w, data.pad(), data.mask_token()));
                }
            }
        }
    }
    out.retain(|m| !m.targets.is_empty());
    out.shuffle(&mut rng);
    if t.length_bucketing {
        bucket_by_length(&mut out, t.batch_size, &mut rng);
    }
    out
}

/// Sort runs of 64 batches' worth of (already shuffled) samples by length, then shuffle the
/// order of the resulting batches: batches hold similar lengths, their order stays random.
fn bucket_by_length<R: Rng>(samples: &mut Vec<Masked>, batch_size: usize, rng: &mut R) {
    for group in samples.chunks_mut(batch_size * 64) {
        group.sort_by_key(|m| m.input.len());
    }
    let mut batches: Vec<Vec<Masked>> =
        samples.chunks(batch_size).map(<[Masked]>::to_vec).collect();
    batches.shuffle(rng);
    *samples = batches.into_iter().flatten().collect();
}

fn int1(v: Vec<i64>, device: &Device) -> Tensor<1, Int> {
    let n = v.len();
    Tensor::from_data(TensorData::new(v, [n]), device)
}

pub fn steps_per_epoch(data: &SequenceData, cfg: &Bert4RecConfig) -> usize {
    epoch_samples(data, cfg, 0)
        .len()
        .div_ceil(cfg.train.batch_size)
}

fn adam_for(cfg: &Bert4RecConfig) -> Adam {
    let t = &cfg.train;
    Adam::new(AdamConfig {
        weight_decay: t.weight_decay,
        bias_correction: t.adam_bias_correction,
        clip_grad_norm: (t.clip_grad_norm > 0.0).then_some(t.clip_grad_norm),
        ..AdamConfig::default()
    })
}

/// Train on `data`, writing everything to `run`. Returns a summary.
pub fn train(
    data: &SequenceData,
    cfg: &Bert4RecConfig,
    run: &RunDir,
    device: &Device,
    opts: &RunOptions,
) -> Result<TrainSummary> {
    cfg.validate()?;
    let started = Instant::now();
    let ad = device.clone().autodiff();
    run.write_atomic(CONFIG, cfg.to_toml().as_bytes())?;
    run.write_atomic(ITEMS, (data.items.join("\n") + "\n").as_bytes())?;

    device.seed(derive_seed(cfg.seed, STREAM_INIT, 0));
    let mut model = Bert4Rec::new(&cfg.model, data.num_items(), &ad);
    let mut adam = adam_for(cfg);
    let renames = checkpoint_renames();
    let spe = steps_per_epoch(data, cfg) as u64;
    let schedule = Schedule {
        lr: cfg.train.lr,
        warmup_steps: cfg.train.warmup_steps,
        decay: cfg.train.decay,
        total_steps: spe * cfg.train.max_epochs as u64,
    };

    let mut start_epoch = 1;
    let mut step: u64 = 0;
    let mut best = (0usize, f64::NEG_INFINITY);
    let mut bad_epochs = 0usize;
    let mut first_loss = f64::NAN;
    if opts.resume {
        let ckpt = load_training_checkpoint(&run.file(CHECKPOINT), &mut adam, device)?;
        let saved_cfg: Bert4RecConfig = toml::from_str(&ckpt.get("config")?)?;
        anyhow::ensure!(
            saved_cfg.model == cfg.model
                && saved_cfg.seed == cfg.seed
                && saved_cfg.train == cfg.train,
            "cannot resume {}: its configuration differs from the one given",
            ckpt.path.display()
        );
        model = load_named(model, &ckpt.tensors, &renames, device, &ckpt.path)?;
        (start_epoch, step) = ckpt.next_epoch_and_step()?;
        best = (
            ckpt.get("best_epoch")?.parse()?,
            ckpt.get("best_ndcg10")?.parse()?,
        );
        bad_epochs = ckpt.get("bad_epochs")?.parse()?;
        first_loss = ckpt.get("first_loss")?.parse().unwrap_or(f64::NAN);
    }

    let mut last_loss = f64::NAN;
    let mut stopped_early = false;
    let mut epoch = start_epoch;
    let mut epochs_run = start_epoch - 1;
    while epoch <= cfg.train.max_epochs {
        if bad_epochs >= cfg.train.patience {
            stopped_early = true;
            break;
        }
        let t0 = Instant::now();
        let dropout_seed = derive_seed(cfg.seed, STREAM_DROPOUT, epoch as u64);
        let mut neg_rng = rng_for(cfg.seed, STREAM_NEG, epoch as u64);
        let samples = epoch_samples(data, cfg, epoch);
        let pb = progress::bar(
            samples.len().div_ceil(cfg.train.batch_size) as u64,
            &format!("epoch {epoch}"),
            opts.quiet,
        );
        let (mut loss_sum, mut loss_n) = (0.0f64, 0usize);
        let mut lr = 0.0;
        for chunk in samples.chunks(cfg.train.batch_size) {
            step += 1;
            lr = schedule.lr_at(step);
            let negatives: Option<Tensor<1, Int>> =
                (cfg.train.loss == LossKind::Sampled).then(|| {
                    let k = cfg.train.sampled_negatives.min(data.num_items());
                    let negs: Vec<i64> = (0..k)
                        .map(|_| neg_rng.random_range(1..=data.num_items() as i64))
                        .collect();
                    int1(negs, &ad)
                });
            // Micro-batches bound the activation memory and are spread over the worker threads.
            // A batch is split in at least two, whatever the thread count, so that two cores
            // share even a small batch and results do not depend on the number of threads.
            let workers = rayon::current_num_threads();
            let micro = match cfg.train.micro_batch {
                0 => chunk.len(),
                m => m.min(chunk.len()),
            }
            .min(chunk.len().div_ceil(2))
            .max(1);
            let total_targets: usize = chunk.iter().map(|m| m.targets.len()).sum();
            let micro_batches: Vec<&[Masked]> = chunk.chunks(micro).collect();
            let single = micro_batches.len() == 1;
            let step_seed = derive_seed(dropout_seed, step, 0);
            let (grads, lv) = data_parallel_grads(&model, &micro_batches, workers, |m, i, sub| {
                let _stream = dropout_stream(derive_seed(step_seed, i as u64, 0));
                let inputs: Vec<&[u32]> = sub.iter().map(|m| m.input.as_slice()).collect();
                let targets: Vec<&[(usize, u32)]> =
                    sub.iter().map(|m| m.targets.as_slice()).collect();
                let b = make_batch(&inputs, &targets);
                let ids: Tensor<2, Int> =
                    Tensor::from_data(TensorData::new(b.ids, [b.batch, b.len]), &ad);
                let pos = int1(b.positions, &ad);
                let n_targets = b.targets.len();
                let loss = match &negatives {
                    None => {
                        let items: Vec<u32> = b.targets.iter().map(|&t| t as u32).collect();
                        m.full_loss(ids, pos, &items)
                    }
                    Some(negs) => m.sampled_loss(ids, pos, int1(b.targets, &ad), negs.clone()),
                };
                if single {
                    loss
                } else {
                    // Each micro-batch's mean loss, weighted by its share of the batch's
                    // targets, sums to the batch's mean loss.
                    loss.mul_scalar(n_targets as f64 / total_targets as f64)
                }
            });
            anyhow::ensure!(
                lv.is_finite(),
                "training diverged at step {step}: loss is {lv}"
            );
            loss_sum += lv;
            loss_n += 1;
            model = adam.step(model, grads, lr);
            pb.set_message(format!("loss {:.4}", loss_sum / loss_n as f64));
            pb.inc(1);
        }
        pb.finish_and_clear();
        let train_seconds = t0.elapsed().as_secs_f64();
        let epoch_loss = loss_sum / loss_n.max(1) as f64;
        if first_loss.is_nan() {
            first_loss = epoch_loss;
        }
        last_loss = epoch_loss;

        let valid = evaluate(
            &model.valid(),
            data,
            cfg,
            Split::Valid,
            cfg.eval.filter_seen,
            device,
        )?;
        let ndcg = valid.metrics["NDCG@10"];
        if ndcg > best.1 {
            best = (epoch, ndcg);
            bad_epochs = 0;
            save_safetensors(
                &run.file(BEST_MODEL),
                &named_tensors(&model, &renames),
                model_metadata(cfg, data, epoch),
            )?;
        } else {
            bad_epochs += 1;
        }
        let record = EpochRecord {
            epoch,
            step,
            loss: epoch_loss,
            lr,
            train_seconds,
            valid: valid.metrics.clone(),
            best_epoch: best.0,
        };
        run.log_metrics(&record)?;
        if !opts.quiet {
            eprintln!(
                "epoch {epoch:>4}  loss {epoch_loss:.4}  valid NDCG@10 {ndcg:.4}  HR@10 {:.4}  best epoch {}  ({train_seconds:.1}s)",
                valid.metrics["HR@10"], best.0
            );
        }

        // Checkpoint after every epoch so training can resume from here.
        let mut meta = model_metadata(cfg, data, epoch);
        meta.insert("step".into(), step.to_string());
        meta.insert("best_epoch".into(), best.0.to_string());
        meta.insert("best_ndcg10".into(), best.1.to_string());
        meta.insert("bad_epochs".into(), bad_epochs.to_string());
        meta.insert("first_loss".into(), first_loss.to_string());
        save_training_checkpoint(
            &run.file(CHECKPOINT),
            named_tensors(&model, &renames),
            &adam,
            meta,
        )?;

        epochs_run = epoch;
        if opts.stop_after_epochs.is_some_and(|n| epoch >= n) {
            break;
        }
        epoch += 1;
    }
    if bad_epochs >= cfg.train.patience && epochs_run < cfg.train.max_epochs {
        stopped_early = true;
    }
    Ok(TrainSummary {
        epochs_run,
        best_epoch: best.0,
        best_valid_ndcg10: best.1,
        stopped_early,
        seconds: started.elapsed().as_secs_f64(),
        first_epoch_loss: first_loss,
        last_epoch_loss: last_loss,
        peak_rss_mib: peak_rss_mib(),
    })
}

fn model_metadata(
    cfg: &Bert4RecConfig,
    data: &SequenceData,
    epoch: usize,
) -> HashMap<String, String> {
    let mut m = HashMap::new();
    m.insert("format".into(), "tessera-bert4rec".into());
    m.insert("config".into(), cfg.to_toml());
    m.insert("num_items".into(), data.num_items().to_string());
    m.insert("epoch".into(), epoch.to_string());
    m
}

/// Load the best model of a run directory.
pub fn load_model(
    run: &RunDir,
    cfg: &Bert4RecConfig,
    num_items: usize,
    device: &Device,
) -> Result<Bert4Rec> {
    let path = run.file(BEST_MODEL);
    let (tensors, meta) = load_safetensors(&path)?;
    if let Some(n) = meta.get("num_items") {
        anyhow::ensure!(
            n.parse::<usize>().ok() == Some(num_items),
            "{}: model has {n} items but the data has {num_items}; was the data file changed?",
            path.display()
        );
    }
    let model = Bert4Rec::new(&cfg.model, num_items, device);
    load_named(model, &tensors, &checkpoint_renames(), device, &path)
}
