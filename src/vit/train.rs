//! Supervised ViT training on the shared loop ([`crate::core::trainer`]): AdamW, warm-up then
//! cosine decay, label smoothing, gradient clipping, random-shift augmentation, per-epoch
//! evaluation (top-1, top-5, per-class accuracy, confusion matrix).

use super::config::VitConfig;
use super::data::{random_shift, ImageSet};
use super::model::{hf_renames, Vit};
use crate::core::checkpoint::{named_tensors, save_safetensors, with_base_prefix};
use crate::core::fused::cross_entropy_smoothed;
use crate::core::optim::{AdamConfig, Decay};
use crate::core::rng::{derive_seed, rng_for};
use crate::core::run::RunDir;
use crate::core::trainer::{self, CheckpointNames, LoopSettings, MicroStep, Selection, Task};
use anyhow::{ensure, Result};
use burn::tensor::{Device, Tensor, TensorData};
use rand::seq::SliceRandom;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

const STREAM_SHUFFLE: u64 = 31;
const STREAM_AUGMENT: u64 = 32;
const STREAM_DROPOUT: u64 = 33;
pub use crate::core::trainer::CHECKPOINT;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct VitTrainConfig {
    pub seed: u64,
    pub epochs: usize,
    pub batch_size: usize,
    /// Images per micro-batch (gradient accumulation over worker threads).
    pub micro_batch: usize,
    pub lr: f64,
    pub weight_decay: f64,
    pub warmup_steps: u64,
    pub label_smoothing: f64,
    pub clip_grad_norm: f64,
    /// Random translation by up to this many pixels (random crop of the zero-padded image);
    /// 0: no augmentation. No flips: they change digits.
    pub max_shift: usize,
    /// Per-channel normalisation `(x - mean) / std` of pixels in [0, 1]: one value for every
    /// channel, or one per channel. From scratch the default is 0.5 / 0.5 (Hugging Face's ViT);
    /// when fine-tuning, `tessera vit train --model` takes the checkpoint's `image_mean` /
    /// `image_std` unless the config file sets these.
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
    /// Keep the model of the best epoch by this metric (`test_top1`, `test_top5`) and stop
    /// early; none (the default): the last epoch's model. The test split is the only held-out
    /// set here, so selecting on it reports an optimistic test figure.
    pub selection: Option<Selection>,
}

impl VitTrainConfig {
    /// Every setting within its range, each refused with its key (and flag) named.
    pub fn validate(&self) -> Result<()> {
        use crate::core::validate::*;
        at_least_one("epochs (--epochs)", self.epochs)?;
        at_least_one("batch_size (--batch-size)", self.batch_size)?;
        positive("lr (--lr)", self.lr)?;
        non_negative("weight_decay", self.weight_decay)?;
        probability_below_one("label_smoothing", self.label_smoothing)?;
        non_negative("clip_grad_norm", self.clip_grad_norm)?;
        ensure!(
            !self.mean.is_empty() && self.mean.iter().all(|m| m.is_finite()),
            "mean must hold finite numbers, got {:?}",
            self.mean
        );
        ensure!(
            !self.std.is_empty() && self.std.iter().all(|&s| s.is_finite() && s > 0.0),
            "std must hold finite numbers greater than 0, got {:?}",
            self.std
        );
        match &self.selection {
            Some(s) => s.validate(),
            None => Ok(()),
        }
    }
}

impl Default for VitTrainConfig {
    fn default() -> Self {
        Self {
            seed: 0,
            epochs: 30,
            batch_size: 128,
            micro_batch: 64,
            lr: 1e-3,
            weight_decay: 0.05,
            warmup_steps: 100,
            label_smoothing: 0.1,
            clip_grad_norm: 1.0,
            max_shift: 2,
            mean: vec![0.5],
            std: vec![0.5],
            selection: None,
        }
    }
}

pub type VitRunOptions = trainer::RunOptions;

/// Classification metrics on one image set.
#[derive(Debug, Clone, Serialize)]
pub struct ClassMetrics {
    pub images: usize,
    pub top1: f64,
    pub top5: f64,
    pub per_class: Vec<f64>,
    /// `confusion[true][predicted]`.
    pub confusion: Vec<Vec<u32>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct VitEpoch {
    pub epoch: usize,
    pub step: u64,
    pub loss: f64,
    pub lr: f64,
    pub test_top1: f64,
    pub test_top5: f64,
    pub seconds: f64,
}

/// Normalised pixels of `idx` as [B, C, H, W], shifted at random when `rng` is given.
fn batch_pixels(
    set: &ImageSet,
    idx: &[usize],
    cfg: &VitTrainConfig,
    mut rng: Option<&mut rand::rngs::StdRng>,
    device: &Device,
) -> Tensor<4> {
    let (c, h, w) = (set.channels, set.height, set.width);
    let n = set.image_len();
    let mut out = vec![0f32; idx.len() * n];
    for (k, &i) in idx.iter().enumerate() {
        let dst = &mut out[k * n..(k + 1) * n];
        match rng.as_deref_mut() {
            Some(r) if cfg.max_shift > 0 => {
                random_shift(set.image(i), c, h, w, cfg.max_shift, r, dst)
            }
            _ => dst.copy_from_slice(set.image(i)),
        }
        for ch in 0..c {
            let (m, s) = (
                cfg.mean[ch.min(cfg.mean.len() - 1)],
                cfg.std[ch.min(cfg.std.len() - 1)],
            );
            for v in &mut dst[ch * h * w..(ch + 1) * h * w] {
                *v = (*v - m) / s;
            }
        }
    }
    Tensor::from_data(TensorData::new(out, [idx.len(), c, h, w]), device)
}

/// Top-1, top-5, per-class accuracy and the confusion matrix of `model` on `set`.
pub fn evaluate(
    model: &Vit,
    set: &ImageSet,
    cfg: &VitTrainConfig,
    device: &Device,
) -> Result<ClassMetrics> {
    let classes = set.classes;
    let order: Vec<usize> = (0..set.len()).collect();
    // (true label, top-5 predicted classes) per image.
    type Ranked = Vec<(u32, Vec<usize>)>;
    let parts: Vec<Result<Ranked>> = order
        .par_chunks(cfg.batch_size.max(1))
        .map(|idx| {
            let logits = model.logits(batch_pixels(set, idx, cfg, None, device))?;
            let k = logits.dims()[1];
            let v: Vec<f32> = logits
                .into_data()
                .try_to_vec()
                .map_err(|e| anyhow::anyhow!("{e:?}"))?;
            Ok(idx
                .iter()
                .enumerate()
                .map(|(r, &i)| {
                    let row = &v[r * k..(r + 1) * k];
                    let mut ranked: Vec<usize> = (0..k).collect();
                    ranked.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
                    ranked.truncate(5);
                    (set.labels[i], ranked)
                })
                .collect())
        })
        .collect();
    let mut confusion = vec![vec![0u32; classes]; classes];
    let (mut top1, mut top5) = (0usize, 0usize);
    for part in parts {
        for (label, ranked) in part? {
            let pred = ranked[0];
            if pred < classes {
                confusion[label as usize][pred] += 1;
            }
            top1 += (pred == label as usize) as usize;
            top5 += ranked.contains(&(label as usize)) as usize;
        }
    }
    let n = set.len().max(1) as f64;
    let per_class = confusion
        .iter()
        .enumerate()
        .map(|(c, row)| {
            let total: u32 = row.iter().sum();
            if total == 0 {
                f64::NAN
            } else {
                row[c] as f64 / total as f64
            }
        })
        .collect();
    Ok(ClassMetrics {
        images: set.len(),
        top1: top1 as f64 / n,
        top5: top5 as f64 / n,
        per_class,
        confusion,
    })
}

/// The model's tensors under `ViTForImageClassification` names.
fn hf_named(model: &Vit, cfg: &VitConfig) -> Vec<(String, TensorData)> {
    with_base_prefix(
        named_tensors(model, &hf_renames(cfg.layout())),
        "vit.",
        "classifier.",
    )
}

struct VitTask<'a> {
    model_cfg: &'a VitConfig,
    train: &'a ImageSet,
    test: &'a ImageSet,
    cfg: &'a VitTrainConfig,
    device: &'a Device,
    ad: Device,
}

impl Task for VitTask<'_> {
    type Model = Vit;
    type Item = usize;
    type Batch = Vec<usize>;

    fn batches(&self, epoch: usize) -> Vec<Vec<usize>> {
        let mut order: Vec<usize> = (0..self.train.len()).collect();
        order.shuffle(&mut rng_for(self.cfg.seed, STREAM_SHUFFLE, epoch as u64));
        order
            .chunks(self.cfg.batch_size)
            .map(<[usize]>::to_vec)
            .collect()
    }

    fn items<'b>(&self, batch: &'b Vec<usize>) -> &'b [usize] {
        batch
    }

    fn loss(&self, m: &Vit, batch: &Vec<usize>, idx: &[usize], at: MicroStep) -> Tensor<1> {
        let augment = derive_seed(self.cfg.seed, STREAM_AUGMENT, at.epoch as u64);
        let key = derive_seed(derive_seed(augment, at.step, 0), at.index as u64, 0);
        let mut rng = rand::SeedableRng::seed_from_u64(key);
        let x = batch_pixels(self.train, idx, self.cfg, Some(&mut rng), &self.ad);
        let labels: Vec<u32> = idx.iter().map(|&j| self.train.labels[j]).collect();
        let logits = m.logits(x).expect("input shapes were checked");
        cross_entropy_smoothed(logits, &labels, self.cfg.label_smoothing)
            .mul_scalar(idx.len() as f64 / batch.len() as f64)
    }

    fn evaluate(&self, model: &Vit) -> Result<Vec<(String, f64)>> {
        let m = evaluate(model, self.test, self.cfg, self.device)?;
        Ok(vec![
            ("test_top1".into(), m.top1),
            ("test_top5".into(), m.top5),
        ])
    }

    fn save_model(&self, model: &Vit, run: &RunDir, _epoch: usize) -> Result<()> {
        let hw = (self.train.height, self.train.width);
        save_model_dir(model, self.model_cfg, self.cfg, hw, run)
    }
}

/// Train on `train`, evaluating on `test` after every epoch; writes `metrics.jsonl`,
/// `model.safetensors` + `config.json` (Hugging Face layout) and a resumable checkpoint.
#[allow(clippy::too_many_arguments)]
pub fn train_vit(
    model: Vit,
    model_cfg: &VitConfig,
    train: &ImageSet,
    test: &ImageSet,
    cfg: &VitTrainConfig,
    run: &RunDir,
    device: &Device,
    opts: &VitRunOptions,
) -> Result<Vec<VitEpoch>> {
    ensure!(!train.is_empty(), "no training images");
    ensure!(
        !test.is_empty(),
        "no test images: the held-out split is empty (use a larger --test-fraction or give \
         --test-data)"
    );
    cfg.validate()?;
    ensure!(
        train.channels == model_cfg.num_channels
            && train.height.is_multiple_of(model_cfg.patch_size)
            && train.width.is_multiple_of(model_cfg.patch_size),
        "images are {}x{}x{} but the model takes {} channels in patches of {}",
        train.channels,
        train.height,
        train.width,
        model_cfg.num_channels,
        model_cfg.patch_size
    );
    for (name, v) in [("mean", &cfg.mean), ("std", &cfg.std)] {
        ensure!(
            v.len() == 1 || v.len() == train.channels,
            "normalisation {name} has {} values; the images have {} channels",
            v.len(),
            train.channels
        );
    }
    ensure!(
        cfg.std.iter().all(|&s| s > 0.0 && s.is_finite()),
        "normalisation std must be positive"
    );
    ensure!(
        model_cfg.num_labels >= train.classes,
        "the data has {} classes but the model's head has {}",
        train.classes,
        model_cfg.num_labels
    );
    let settings = LoopSettings {
        format: "tessera-vit",
        config_file: ("train.toml", toml::to_string(cfg)?),
        resume_settings: toml::Table::try_from(cfg)?,
        extendable: &["epochs", "selection.patience"],
        names: CheckpointNames {
            renames: hf_renames(model_cfg.layout()),
            base_prefix: Some(("vit.", "classifier.")),
        },
        checkpoint_meta: HashMap::new(),
        seed: cfg.seed,
        epochs: cfg.epochs,
        micro_batch: cfg.micro_batch,
        dropout_stream: STREAM_DROPOUT,
        lr: cfg.lr,
        warmup_steps: cfg.warmup_steps,
        decay: Decay::Cosine,
        adam: AdamConfig {
            weight_decay: cfg.weight_decay,
            clip_grad_norm: (cfg.clip_grad_norm > 0.0).then_some(cfg.clip_grad_norm),
            ..AdamConfig::default()
        },
        selection: cfg.selection.clone(),
    };
    let task = VitTask {
        model_cfg,
        train,
        test,
        cfg,
        device,
        ad: device.clone().autodiff(),
    };
    let out = trainer::train(&task, model, &settings, run, device, opts)?;
    Ok(out
        .records
        .iter()
        .map(|r| VitEpoch {
            epoch: r.epoch,
            step: r.step,
            loss: r.loss,
            lr: r.lr,
            test_top1: r.metric("test_top1").unwrap_or(f64::NAN),
            test_top5: r.metric("test_top5").unwrap_or(f64::NAN),
            seconds: r.seconds,
        })
        .collect())
}

/// `model.safetensors` and `config.json` of a Hugging Face `ViTForImageClassification`, plus
/// `preprocessor_config.json` with the normalisation the model was trained with, so that
/// `predict`, `features` and transformers' image processor feed it the same inputs.
/// `input_hw` is the training images' height and width (the checkpoint's `image_size` stays that
/// of its position grid when fine-tuning at another resolution).
pub fn save_model_dir(
    model: &Vit,
    cfg: &VitConfig,
    train_cfg: &VitTrainConfig,
    input_hw: (usize, usize),
    run: &RunDir,
) -> Result<()> {
    let channels = cfg.num_channels;
    // Through the shortest decimal form, so that 0.485f32 is written 0.485.
    let per_channel = |v: &[f32]| -> Vec<f64> {
        (0..channels)
            .map(|c| {
                v[c.min(v.len() - 1)]
                    .to_string()
                    .parse()
                    .unwrap_or(f64::NAN)
            })
            .collect()
    };
    let preprocessor = serde_json::json!({
        "image_processor_type": "ViTImageProcessor",
        "do_resize": true,
        "size": {"height": input_hw.0, "width": input_hw.1},
        "resample": 3,
        "do_rescale": true,
        "rescale_factor": 1.0 / 255.0,
        "do_normalize": true,
        "image_mean": per_channel(&train_cfg.mean),
        "image_std": per_channel(&train_cfg.std),
    });
    run.write_atomic(
        "preprocessor_config.json",
        serde_json::to_string_pretty(&preprocessor)?.as_bytes(),
    )?;
    let mut meta = HashMap::new();
    meta.insert("format".to_string(), "pt".to_string());
    save_safetensors(&run.file("model.safetensors"), &hf_named(model, cfg), meta)?;
    let mut json: BTreeMap<String, serde_json::Value> =
        serde_json::from_value(serde_json::to_value(cfg)?)?;
    let id2label: BTreeMap<String, String> = (0..cfg.num_labels)
        .map(|i| (i.to_string(), i.to_string()))
        .collect();
    json.insert("id2label".into(), serde_json::to_value(id2label)?);
    json.insert(
        "architectures".into(),
        serde_json::json!(["ViTForImageClassification"]),
    );
    run.write_atomic(
        "config.json",
        serde_json::to_string_pretty(&json)?.as_bytes(),
    )
}
