//! Masked-language-model training (BERT's objective: 15% of tokens chosen, 80% -> `[MASK]`,
//! 10% -> a random token, 10% unchanged), from scratch or fine-tuning a checkpoint, on the
//! shared training loop ([`crate::core::trainer`]): what is here is MLM's own (masked lines,
//! the masked-token loss, held-out masked-token accuracy, the model directory).
//!
//! The output directory is a Hugging Face-style model directory (`config.json`,
//! `model.safetensors` with `BertForMaskedLM` names, `tokenizer.json`, `vocab.txt`) that
//! `tessera text` commands and `transformers` load.

use super::config::BertConfig;
use super::model::{hf_renames, Bert, TokenBatch};
use super::tokenize::{Encoded, TextTokenizer};
use crate::core::checkpoint::{named_tensors, save_safetensors, with_base_prefix};
use crate::core::masking::{ClozeMasker, MaskStyle, Masked};
use crate::core::optim::{AdamConfig, Decay};
use crate::core::rng::rng_for;
use crate::core::run::RunDir;
use crate::core::trainer::{self, CheckpointNames, LoopSettings, MicroStep, Selection, Task};
use anyhow::{ensure, Result};
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

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
    /// Keep the model of the best epoch by this metric (`valid_loss`, `valid_accuracy`) and stop
    /// early; none: the last epoch's model.
    pub selection: Option<Selection>,
}

impl MlmConfig {
    /// Every setting within its range, each refused with its key (and flag) named.
    pub fn validate(&self) -> Result<()> {
        use crate::core::validate::*;
        proportion("mask_prob", self.mask_prob)?;
        at_least_one("max_predictions", self.max_predictions)?;
        at_least_one("batch_size (--batch-size)", self.batch_size)?;
        positive("lr (--lr)", self.lr)?;
        non_negative("weight_decay", self.weight_decay)?;
        non_negative("clip_grad_norm", self.clip_grad_norm)?;
        at_least_one("epochs (--epochs)", self.epochs)?;
        match &self.selection {
            Some(s) => s.validate(),
            None => Ok(()),
        }
    }
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
            selection: None,
        }
    }
}

/// How one `train_mlm` call runs (not part of the training configuration).
pub type MlmRunOptions = trainer::RunOptions;

pub use crate::core::trainer::CHECKPOINT;

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
    masked: &[(&Masked, &Encoded)],
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
        let masked: Vec<Masked> = chunk
            .iter()
            .map(|e| masker.mask(&e.ids, &mut rng))
            .collect();
        let pairs: Vec<(&Masked, &Encoded)> = masked.iter().zip(chunk).collect();
        let (batch, positions, targets) = masked_batch(tok, &pairs);
        if targets.is_empty() {
            continue;
        }
        let hidden = model.forward(&batch, device);
        let [b, l, d] = hidden.dims();
        let n = positions.len();
        let pos: Vec<i64> = positions.iter().map(|&p| p as i64).collect();
        let pos = Tensor::<1, Int>::from_data(TensorData::new(pos, [n]), device);
        let logits = model.mlm_logits(hidden.reshape([b * l, d]).select(0, pos));
        let loss = crate::core::fused::cross_entropy(logits.clone(), &targets);
        loss_sum += loss.into_scalar::<f32>() as f64 * n as f64;
        let pred: Vec<i64> = logits
            .argmax(1)
            .into_data()
            .convert::<i64>()
            .try_to_vec::<i64>()
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
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

/// One optimiser step: masked training lines (with their index into the training set) and
/// the number of predictions they hold.
pub struct MlmBatch {
    masked: Vec<(Masked, usize)>,
    targets: usize,
}

struct MlmTask<'a> {
    bert_cfg: &'a BertConfig,
    tok: &'a TextTokenizer,
    train: &'a [Encoded],
    valid: &'a [Encoded],
    cfg: &'a MlmConfig,
    masker: ClozeMasker,
    device: &'a Device,
    ad: Device,
}

impl Task for MlmTask<'_> {
    type Model = Bert;
    type Item = (Masked, usize);
    type Batch = MlmBatch;

    fn batches(&self, epoch: usize) -> Vec<MlmBatch> {
        let mut order: Vec<usize> = (0..self.train.len()).collect();
        order.shuffle(&mut rng_for(self.cfg.seed, STREAM_SHUFFLE, epoch as u64));
        let mut rng = rng_for(self.cfg.seed, STREAM_MASK, epoch as u64);
        order
            .chunks(self.cfg.batch_size)
            .map(|chunk| {
                let masked: Vec<(Masked, usize)> = chunk
                    .iter()
                    .map(|&i| (self.masker.mask(&self.train[i].ids, &mut rng), i))
                    .collect();
                let targets = masked.iter().map(|(m, _)| m.targets.len()).sum();
                MlmBatch { masked, targets }
            })
            .collect()
    }

    fn items<'b>(&self, batch: &'b MlmBatch) -> &'b [(Masked, usize)] {
        &batch.masked
    }

    fn skip(&self, batch: &MlmBatch) -> bool {
        batch.targets == 0
    }

    fn loss(
        &self,
        m: &Bert,
        batch: &MlmBatch,
        part: &[(Masked, usize)],
        _: MicroStep,
    ) -> Tensor<1> {
        let pairs: Vec<(&Masked, &Encoded)> =
            part.iter().map(|(m, i)| (m, &self.train[*i])).collect();
        let (tokens, positions, targets) = masked_batch(self.tok, &pairs);
        if targets.is_empty() {
            return Tensor::<1>::zeros([1], &self.ad).require_grad();
        }
        m.mlm_loss(&tokens, &positions, &targets, &self.ad)
            .mul_scalar(targets.len() as f64 / batch.targets as f64)
    }

    fn evaluate(&self, model: &Bert) -> Result<Vec<(String, f64)>> {
        if self.valid.is_empty() {
            return Ok(vec![]);
        }
        let (loss, accuracy) = evaluate_mlm(model, self.tok, self.valid, self.cfg, self.device)?;
        Ok(vec![
            ("valid_accuracy".into(), accuracy),
            ("valid_loss".into(), loss),
        ])
    }

    fn save_model(&self, model: &Bert, run: &RunDir, _epoch: usize) -> Result<()> {
        save_model_dir(model, self.bert_cfg, self.tok, &run.path)
    }
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
    cfg.validate()?;
    let settings = LoopSettings {
        format: "tessera-mlm",
        config_file: ("mlm.toml", toml::to_string(cfg)?),
        resume_settings: toml::Table::try_from(cfg)?,
        extendable: &["epochs", "selection.patience"],
        names: CheckpointNames {
            renames: hf_renames(),
            base_prefix: Some(("bert.", "cls.")),
        },
        checkpoint_meta: HashMap::new(),
        seed: cfg.seed,
        epochs: cfg.epochs,
        micro_batch: cfg.micro_batch,
        dropout_stream: STREAM_DROPOUT,
        lr: cfg.lr,
        warmup_steps: cfg.warmup_steps,
        decay: Decay::Linear,
        adam: AdamConfig {
            weight_decay: cfg.weight_decay,
            clip_grad_norm: (cfg.clip_grad_norm > 0.0).then_some(cfg.clip_grad_norm),
            ..AdamConfig::default()
        },
        selection: cfg.selection.clone(),
    };
    let task = MlmTask {
        bert_cfg,
        tok,
        train,
        valid,
        cfg,
        masker: masker(tok, cfg)?,
        device,
        ad: device.clone().autodiff(),
    };
    let out = trainer::train(&task, model, &settings, run, device, opts)?;
    Ok(out
        .records
        .iter()
        .map(|r| MlmEpoch {
            epoch: r.epoch,
            step: r.step,
            loss: r.loss,
            valid_loss: r.metric("valid_loss"),
            valid_accuracy: r.metric("valid_accuracy"),
            seconds: r.seconds,
        })
        .collect())
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
