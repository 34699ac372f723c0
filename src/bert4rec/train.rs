//! Cloze training with early stopping on validation NDCG@10, on the shared loop
//! ([`crate::core::trainer`]): what is BERT4Rec's own is here (its training sequences, negatives,
//! loss and validation metrics).

use super::config::{Bert4RecConfig, LossKind, SampleMode};
use super::data::{make_batch, split_leave_one_out, truncate_left, SequenceData};
use super::eval::{evaluate, Split};
use super::model::{checkpoint_renames, Bert4Rec};
use crate::core::checkpoint::{load_named, load_safetensors, named_tensors, save_safetensors};
use crate::core::masking::{mask_last, ClozeMasker, MaskStyle, Masked};
use crate::core::optim::AdamConfig;
use crate::core::resources::peak_rss_mib;
use crate::core::rng::{derive_seed, rng_for};
use crate::core::run::RunDir;
use crate::core::trainer::{
    self, CheckpointNames, Direction, LoopSettings, MicroStep, Selection, Task,
};
use anyhow::Result;
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::seq::SliceRandom;
use rand::Rng;
use serde::Serialize;
use std::collections::HashMap;

const STREAM_MASK: u64 = 1;
const STREAM_DROPOUT: u64 = 2;
const STREAM_NEG: u64 = 3;
const STREAM_INIT: u64 = 4;

pub use crate::core::trainer::{RunOptions, CHECKPOINT};
pub const BEST_MODEL: &str = "model.safetensors";
pub const CONFIG: &str = "config.toml";
pub const ITEMS: &str = "items.txt";
/// The metric that picks the best epoch and drives early stopping.
pub const SELECTION_METRIC: &str = "valid_NDCG@10";

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

/// One optimiser step: masked sequences and, for the sampled softmax, the negatives they share.
pub struct Bert4RecBatch {
    samples: Vec<Masked>,
    negatives: Option<Vec<i64>>,
    targets: usize,
}

struct Bert4RecTask<'a> {
    data: &'a SequenceData,
    cfg: &'a Bert4RecConfig,
    device: &'a Device,
    ad: Device,
}

impl Task for Bert4RecTask<'_> {
    type Model = Bert4Rec;
    type Item = Masked;
    type Batch = Bert4RecBatch;

    fn batches(&self, epoch: usize) -> Vec<Bert4RecBatch> {
        let t = &self.cfg.train;
        let mut neg_rng = rng_for(self.cfg.seed, STREAM_NEG, epoch as u64);
        let n = self.data.num_items();
        epoch_samples(self.data, self.cfg, epoch)
            .chunks(t.batch_size)
            .map(|chunk| Bert4RecBatch {
                samples: chunk.to_vec(),
                negatives: (t.loss == LossKind::Sampled).then(|| {
                    (0..t.sampled_negatives.min(n))
                        .map(|_| neg_rng.random_range(1..=n as i64))
                        .collect()
                }),
                targets: chunk.iter().map(|m| m.targets.len()).sum(),
            })
            .collect()
    }

    fn items<'b>(&self, batch: &'b Bert4RecBatch) -> &'b [Masked] {
        &batch.samples
    }

    fn loss(&self, m: &Bert4Rec, batch: &Bert4RecBatch, sub: &[Masked], _: MicroStep) -> Tensor<1> {
        let ad = &self.ad;
        let inputs: Vec<&[u32]> = sub.iter().map(|m| m.input.as_slice()).collect();
        let targets: Vec<&[(usize, u32)]> = sub.iter().map(|m| m.targets.as_slice()).collect();
        let b = make_batch(&inputs, &targets);
        let ids: Tensor<2, Int> = Tensor::from_data(TensorData::new(b.ids, [b.batch, b.len]), ad);
        let pos = int1(b.positions, ad);
        let n_targets = b.targets.len();
        let loss = match &batch.negatives {
            None => {
                let items: Vec<u32> = b.targets.iter().map(|&t| t as u32).collect();
                m.full_loss(ids, pos, &items)
            }
            Some(negs) => m.sampled_loss(ids, pos, int1(b.targets, ad), int1(negs.clone(), ad)),
        };
        // Each micro-batch's mean loss, weighted by its share of the batch's targets, sums to
        // the batch's mean loss.
        loss.mul_scalar(n_targets as f64 / batch.targets as f64)
    }

    fn evaluate(&self, model: &Bert4Rec) -> Result<Vec<(String, f64)>> {
        let valid = evaluate(
            model,
            self.data,
            self.cfg,
            Split::Valid,
            self.cfg.eval.filter_seen,
            self.device,
        )?;
        let mut names: Vec<&String> = valid.metrics.keys().collect();
        // Headline metrics first.
        names.sort_by_key(|k| match k.as_str() {
            "NDCG@10" => 0,
            "HR@10" => 1,
            "MRR" => 2,
            _ => 3,
        });
        Ok(names
            .into_iter()
            .map(|k| (format!("valid_{k}"), valid.metrics[k]))
            .collect())
    }

    fn save_model(&self, model: &Bert4Rec, run: &RunDir, epoch: usize) -> Result<()> {
        save_safetensors(
            &run.file(BEST_MODEL),
            &named_tensors(model, &checkpoint_renames()),
            model_metadata(self.cfg, self.data, epoch),
        )
    }
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
    cfg.check_memory(data.num_items())?;
    let ad = device.clone().autodiff();
    run.write_atomic(ITEMS, (data.items.join("\n") + "\n").as_bytes())?;
    device.seed(derive_seed(cfg.seed, STREAM_INIT, 0));
    let model = Bert4Rec::new(&cfg.model, data.num_items(), &ad);
    let t = &cfg.train;
    let mut resume_settings = toml::Table::new();
    resume_settings.insert("seed".into(), toml::Value::Integer(cfg.seed as i64));
    resume_settings.insert("model".into(), toml::Value::try_from(&cfg.model)?);
    resume_settings.insert("train".into(), toml::Value::try_from(&cfg.train)?);
    let settings = LoopSettings {
        format: "tessera-bert4rec",
        config_file: (CONFIG, cfg.to_toml()),
        resume_settings,
        extendable: &["train.max_epochs", "train.patience"],
        names: CheckpointNames {
            renames: checkpoint_renames(),
            base_prefix: None,
        },
        checkpoint_meta: HashMap::from([
            ("config".to_string(), cfg.to_toml()),
            ("num_items".to_string(), data.num_items().to_string()),
        ]),
        seed: cfg.seed,
        epochs: t.max_epochs,
        micro_batch: t.micro_batch,
        dropout_stream: STREAM_DROPOUT,
        lr: t.lr,
        warmup_steps: t.warmup_steps,
        decay: t.decay,
        adam: AdamConfig {
            weight_decay: t.weight_decay,
            bias_correction: t.adam_bias_correction,
            clip_grad_norm: (t.clip_grad_norm > 0.0).then_some(t.clip_grad_norm),
            ..AdamConfig::default()
        },
        selection: Some(Selection {
            metric: SELECTION_METRIC.into(),
            direction: Direction::Max,
            patience: Some(t.patience),
        }),
    };
    let task = Bert4RecTask {
        data,
        cfg,
        device,
        ad,
    };
    let out = trainer::train(&task, model, &settings, run, device, opts)?;
    Ok(TrainSummary {
        epochs_run: out.epochs_run,
        best_epoch: out.best_epoch,
        best_valid_ndcg10: out.best_value,
        stopped_early: out.stopped_early,
        seconds: out.seconds,
        first_epoch_loss: out.first_loss,
        last_epoch_loss: out.last_loss,
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
