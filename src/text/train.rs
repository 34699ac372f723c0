//! Masked-language-model training (BERT's objective: 15% of tokens chosen, 80% -> `[MASK]`,
//! 10% -> a random token, 10% unchanged), from scratch or fine-tuning a checkpoint, with the
//! shared optimiser, data-parallel micro-batches, run directory and progress bars.
//!
//! The output directory is a Hugging Face-style model directory (`config.json`,
//! `model.safetensors` with `BertForMaskedLM` names, `tokenizer.json`, `vocab.txt`) that
//! `tessera text` commands and `transformers` load.

use super::config::BertConfig;
use super::model::{hf_renames, Bert, TokenBatch};
use super::tokenize::{Encoded, TextTokenizer};
use crate::core::checkpoint::{
    load_named, load_training_checkpoint, named_tensors, save_safetensors,
    save_training_checkpoint, training_meta, with_base_prefix,
};
use crate::core::dropout::dropout_stream;
use crate::core::masking::{ClozeMasker, MaskStyle, Masked};
use crate::core::optim::{Adam, AdamConfig, Decay, Schedule};
use crate::core::parallel::{data_parallel_grads, trainable};
use crate::core::progress;
use crate::core::rng::{derive_seed, rng_for};
use crate::core::run::RunDir;
use anyhow::{ensure, Result};
use burn::module::Module;
use burn::tensor::{Device, TensorData};
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Instant;

const STREAM_MASK: u64 = 11;
const STREAM_SHUFFLE: u64 = 12;
const STREAM_DROPOUT: u64 = 13;
const STREAM_VALID: u64 = 14;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MlmConfig {
    pub seed: u64,
    /// Proportion of tokens chosen for prediction (BERT: 0.15).
    pub mask_prob: f64,
    /// At most this many predictions per sequence (BERT: 20 at length 128).
    pub max_predictions: usize,
    pub batch_size: usize,
    /// Sequences per micro-batch (gradient accumulation; see `core::parallel`).
    pub micro_batch: usize,
    /// Peak learning rate (BERT pre-training: 1e-4).
    pub lr: f64,
    pub warmup_steps: u64,
    pub weight_decay: f64,
    pub clip_grad_norm: f64,
    pub epochs: usize,
    /// Lines held out (from the end of the corpus) to measure masked-token accuracy.
    pub valid_lines: usize,
}

impl Default for MlmConfig {
    fn default() -> Self {
        Self {
            seed: 0,
            mask_prob: 0.15,
            max_predictions: 20,
            batch_size: 32,
            micro_batch: 32,
            lr: 1e-4,
            warmup_steps: 100,
            weight_decay: 0.01,
            clip_grad_norm: 1.0,
            epochs: 1,
            valid_lines: 0,
        }
    }
}

/// How one `train_mlm` call runs (not part of the training configuration).
#[derive(Debug, Clone, Default)]
pub struct MlmRunOptions {
    /// No progress bars or per-epoch lines.
    pub quiet: bool,
    /// Continue from the run directory's `checkpoint.safetensors`.
    pub resume: bool,
    /// Stop (as if interrupted) after this many epochs in total.
    pub stop_after_epochs: Option<usize>,
}

pub const CHECKPOINT: &str = "checkpoint.safetensors";

#[derive(Debug, Clone, Serialize)]
pub struct MlmEpoch {
    pub epoch: usize,
    pub step: u64,
    pub loss: f64,
    pub valid_loss: Option<f64>,
    pub valid_accuracy: Option<f64>,
    pub seconds: f64,
}

fn masker(tok: &TextTokenizer, cfg: &MlmConfig) -> Result<ClozeMasker> {
    let mask_token = tok
        .mask_id
        .ok_or_else(|| anyhow::anyhow!("the vocabulary lacks [MASK]"))?;
    let never_mask = ["[CLS]", "[SEP]"]
        .iter()
        .filter_map(|t| tok.token_to_id(t))
        .collect();
    Ok(ClozeMasker {
        pad: tok.pad_id,
        mask_token,
        p: cfg.mask_prob,
        max_predictions: cfg.max_predictions,
        style: MaskStyle::BERT_80_10_10,
        random_range: 0..=(tok.vocab_size() as u32 - 1),
        never_mask,
    })
}

/// Pad masked sequences and list the flat positions and targets of their predictions.
fn masked_batch(
    tok: &TextTokenizer,
    masked: &[(Masked, &Encoded)],
) -> (TokenBatch, Vec<usize>, Vec<u32>) {
    let encoded: Vec<Encoded> = masked
        .iter()
        .map(|(m, e)| Encoded {
            ids: m.input.clone(),
            type_ids: e.type_ids.clone(),
            truncated: e.truncated,
        })
        .collect();
    let batch = tok.pad(&encoded);
    let mut positions = Vec::new();
    let mut targets = Vec::new();
    for (r, (m, _)) in masked.iter().enumerate() {
        for &(p, t) in &m.targets {
            positions.push(r * batch.len + p);
            targets.push(t);
        }
    }
    (batch, positions, targets)
}

/// Masked-token loss and accuracy of `model` on `lines`, with masks drawn from `seed`.
pub fn evaluate_mlm(
    model: &Bert,
    tok: &TextTokenizer,
    encoded: &[Encoded],
    cfg: &MlmConfig,
    device: &Device,
) -> Result<(f64, f64)> {
    let masker = masker(tok, cfg)?;
    let mut rng = rng_for(cfg.seed, STREAM_VALID, 0);
    let (mut loss_sum, mut correct, mut total) = (0.0f64, 0usize, 0usize);
    for chunk in encoded.chunks(cfg.batch_size.max(1)) {
        let masked: Vec<(Masked, &Encoded)> = chunk
            .iter()
            .map(|e| (masker.mask(&e.ids, &mut rng), e))
            .collect();
        let (batch, positions, targets) = masked_batch(tok, &masked);
        if targets.is_empty() {
            continue;
        }
        let hidden = model.forward(&batch, device);
        let [b, l, d] = hidden.dims();
        let pos: Vec<i64> = positions.iter().map(|&p| p as i64).collect();
        let n = pos.len();
        let pos = burn::tensor::Tensor::<1, burn::tensor::Int>::from_data(
            burn::tensor::TensorData::new(pos, [n]),
            device,
        );
        let logits = model.mlm_logits(hidden.reshape([b * l, d]).select(0, pos));
        let loss = crate::core::fused::cross_entropy(logits.clone(), &targets);
        loss_sum += loss.into_scalar::<f32>() as f64 * n as f64;
        let pred: Vec<i64> = logits
            .argmax(1)
            .into_data()
            .convert::<i64>()
            .try_to_vec::<i64>()
            .unwrap();
        correct += pred
            .iter()
            .zip(&targets)
            .filter(|(p, t)| **p == **t as i64)
            .count();
        total += n;
    }
    ensure!(total > 0, "no maskable tokens in the validation lines");
    Ok((loss_sum / total as f64, correct as f64 / total as f64))
}

/// Train `model` with the MLM objective on `train` (already tokenised), validating on `valid`.
/// Writes `metrics.jsonl` and a model directory into `run`.
#[allow(clippy::too_many_arguments)]
pub fn train_mlm(
    model: Bert,
    bert_cfg: &BertConfig,
    tok: &TextTokenizer,
    train: &[Encoded],
    valid: &[Encoded],
    cfg: &MlmConfig,
    run: &RunDir,
    device: &Device,
    opts: &MlmRunOptions,
) -> Result<Vec<MlmEpoch>> {
    ensure!(!train.is_empty(), "no training lines");
    let quiet = opts.quiet;
    let ad = device.clone().autodiff();
    let mut adam = Adam::new(AdamConfig {
        weight_decay: cfg.weight_decay,
        clip_grad_norm: (cfg.clip_grad_norm > 0.0).then_some(cfg.clip_grad_norm),
        ..AdamConfig::default()
    });
    let mut model = model;
    let mut start_epoch = 1;
    let mut step = 0u64;
    if opts.resume {
        let mut ckpt = load_training_checkpoint(&run.file(CHECKPOINT), &mut adam, device)?;
        ckpt.ensure_same_settings("mlm_config", cfg)?;
        let tensors = ckpt.take_model_tensors("bert.");
        model = load_named(model, &tensors, &hf_renames(), device, &ckpt.path)?;
        (start_epoch, step) = ckpt.next_epoch_and_step()?;
    }
    let mut model = trainable(model);
    let masker = masker(tok, cfg)?;
    let steps_per_epoch = train.len().div_ceil(cfg.batch_size) as u64;
    let schedule = Schedule {
        lr: cfg.lr,
        warmup_steps: cfg.warmup_steps,
        decay: Decay::Linear,
        total_steps: steps_per_epoch * cfg.epochs as u64,
    };
    let mut records = Vec::new();
    for epoch in start_epoch..=cfg.epochs {
        let t0 = Instant::now();
        let mut order: Vec<usize> = (0..train.len()).collect();
        order.shuffle(&mut rng_for(cfg.seed, STREAM_SHUFFLE, epoch as u64));
        let mut rng = rng_for(cfg.seed, STREAM_MASK, epoch as u64);
        let dropout_seed = derive_seed(cfg.seed, STREAM_DROPOUT, epoch as u64);
        let pb = progress::bar(steps_per_epoch, &format!("epoch {epoch}"), quiet);
        let (mut loss_sum, mut batches) = (0.0, 0usize);
        for chunk in order.chunks(cfg.batch_size) {
            step += 1;
            let masked: Vec<(Masked, &Encoded)> = chunk
                .iter()
                .map(|&i| (masker.mask(&train[i].ids, &mut rng), &train[i]))
                .collect();
            let total: usize = masked.iter().map(|(m, _)| m.targets.len()).sum();
            if total == 0 {
                continue;
            }
            let micro = cfg.micro_batch.clamp(1, chunk.len().div_ceil(2).max(1));
            let parts: Vec<&[(Masked, &Encoded)]> = masked.chunks(micro).collect();
            let step_seed = derive_seed(dropout_seed, step, 0);
            let (grads, loss) = data_parallel_grads(
                &model,
                &parts,
                rayon::current_num_threads(),
                |m, i, part| {
                    let _stream = dropout_stream(derive_seed(step_seed, i as u64, 0));
                    let (batch, positions, targets) = masked_batch(tok, part);
                    if targets.is_empty() {
                        return burn::tensor::Tensor::<1>::zeros([1], &ad).require_grad();
                    }
                    m.mlm_loss(&batch, &positions, &targets, &ad)
                        .mul_scalar(targets.len() as f64 / total as f64)
                },
            );
            ensure!(
                loss.is_finite(),
                "training diverged at step {step}: loss {loss}"
            );
            model = adam.step(model, grads, schedule.lr_at(step));
            loss_sum += loss;
            batches += 1;
            pb.set_message(format!("loss {:.4}", loss_sum / batches as f64));
            pb.inc(1);
        }
        pb.finish_and_clear();
        let (valid_loss, valid_accuracy) = if valid.is_empty() {
            (None, None)
        } else {
            let (l, a) = evaluate_mlm(&model.valid(), tok, valid, cfg, device)?;
            (Some(l), Some(a))
        };
        let record = MlmEpoch {
            epoch,
            step,
            loss: loss_sum / batches.max(1) as f64,
            valid_loss,
            valid_accuracy,
            seconds: t0.elapsed().as_secs_f64(),
        };
        run.log_metrics(&record)?;
        if !quiet {
            eprintln!(
                "epoch {epoch:>3}  loss {:.4}{}  ({:.1}s)",
                record.loss,
                valid_accuracy
                    .map(|a| format!("  valid masked accuracy {a:.4}"))
                    .unwrap_or_default(),
                record.seconds
            );
        }
        let plain = model.valid();
        save_model_dir(&plain, bert_cfg, tok, &run.path)?;
        // Weights and optimiser state after every epoch, so that training can resume exactly.
        let meta = training_meta("tessera-mlm", "mlm_config", cfg, epoch, step)?;
        save_training_checkpoint(&run.file(CHECKPOINT), hf_named(&plain), &adam, meta)?;
        records.push(record);
        if opts.stop_after_epochs.is_some_and(|n| epoch >= n) {
            break;
        }
    }
    Ok(records)
}

/// The model's tensors under `BertForMaskedLM` names.
fn hf_named(model: &Bert) -> Vec<(String, TensorData)> {
    with_base_prefix(named_tensors(model, &hf_renames()), "bert.", "cls.")
}

/// Write a Hugging Face-style model directory: `config.json`, `model.safetensors`
/// (`BertForMaskedLM` names), `tokenizer.json` and `vocab.txt`.
pub fn save_model_dir(
    model: &Bert,
    cfg: &BertConfig,
    tok: &TextTokenizer,
    dir: &Path,
) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let tensors = hf_named(model);
    let mut meta = HashMap::new();
    meta.insert("format".to_string(), "pt".to_string());
    save_safetensors(&dir.join("model.safetensors"), &tensors, meta)?;
    let mut json: BTreeMap<String, serde_json::Value> =
        serde_json::from_value(serde_json::to_value(cfg)?)?;
    json.insert("model_type".into(), "bert".into());
    json.insert(
        "architectures".into(),
        serde_json::json!(["BertForMaskedLM"]),
    );
    crate::core::run::write_atomic(
        &dir.join("config.json"),
        serde_json::to_string_pretty(&json)?.as_bytes(),
    )?;
    tok.save(dir)
}
