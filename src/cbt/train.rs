//! CBT pretraining on the shared training loop: the visual InfoNCE over masked clips, the
//! cross-modal contrastive loss against the micro-batch's mismatched videos, and (when on) BERT's
//! masked-language-model loss, summed with the config's weights (MODELS.md §7; the losses are
//! `core::losses`). Each loss is a mean over the batch's predictions.
//!
//! Choices, named:
//! - The visual transformer runs once per example, on the masked clips; its outputs feed both
//!   the visual loss and the cross-modal transformer (one pass instead of a second unmasked one).
//! - The negatives of both losses are the other examples of the micro-batch, as the worker
//!   threads see them (`micro_batch`, and at most half the batch: the loop gives each of two
//!   workers a part). A micro-batch of one has no negatives: the config refuses sizes that would
//!   make one, and an epoch's last batch drops examples rather than leave one.
//! - A frozen text BERT (the paper's) runs with its outputs detached: no gradient reaches it.

use super::config::PretrainConfig;
use super::data::{epoch, Example, NarratedVideo, TextSpecials};
use super::model::{save, Cbt, CbtConfig, ClipBatch};
use crate::core::fused::cross_entropy;
use crate::core::losses::contrastive_nce;
use crate::core::rng::rng_for;
use crate::core::run::RunDir;
use crate::core::trainer::{self, weighted_batch_means, LoopSettings, MicroStep, RunOptions, Task};
use crate::text::model::TokenBatch;
use crate::text::tokenize::TextTokenizer;
use anyhow::{bail, ensure, Result};
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::seq::SliceRandom;

const STREAM_DRAW: u64 = 101;
const STREAM_SHUFFLE: u64 = 102;
const STREAM_DROPOUT: u64 = 103;
const STREAM_VALID: u64 = 104;

/// Texts as a padded token batch.
pub fn token_batch(texts: &[&[u32]], pad: u32) -> TokenBatch {
    let len = texts.iter().map(|t| t.len()).max().unwrap_or(1).max(1);
    let b = texts.len();
    let mut out = TokenBatch {
        batch: b,
        len,
        ids: vec![pad; b * len],
        type_ids: vec![0; b * len],
        mask: vec![0; b * len],
    };
    for (r, t) in texts.iter().enumerate() {
        out.ids[r * len..r * len + t.len()].copy_from_slice(t);
        out.mask[r * len..r * len + t.len()].fill(1);
    }
    out
}

/// The clip rows of each example, as one padded batch with its masks.
pub fn clip_batch(videos: &[NarratedVideo], examples: &[&Example]) -> ClipBatch {
    let dim = videos.first().map_or(1, |v| v.features.dim);
    let rows: Vec<Vec<f32>> = examples
        .iter()
        .map(|e| {
            let f = &videos[e.video].features;
            e.clips
                .iter()
                .flat_map(|&c| f.row(c).iter().copied())
                .collect()
        })
        .collect();
    let seqs: Vec<(&[f32], &[usize])> = rows
        .iter()
        .zip(examples)
        .map(|(r, e)| (r.as_slice(), e.masked.as_slice()))
        .collect();
    ClipBatch::new(dim, &seqs)
}

fn index(v: Vec<i64>, device: &Device) -> Tensor<1, Int> {
    let n = v.len();
    Tensor::from_data(TensorData::new(v, [n]), device)
}

/// The score matrices of a micro-batch and the positive of each row, per loss: visual
/// (masked clips against every clip of the micro-batch, divided by the temperature),
/// cross-modal (each text against its own video and the mismatched ones; the positive first
/// when `cross_negatives` is set, else on the diagonal) and text (vocabulary logits). A loss
/// with nothing to score, or with no negative, is `None`.
pub struct Scored {
    pub visual: Option<(Tensor<2>, Vec<usize>)>,
    pub cross: Option<(Tensor<2>, Vec<usize>)>,
    pub text: Option<(Tensor<2>, Vec<u32>)>,
}

pub fn score(
    model: &Cbt,
    videos: &[NarratedVideo],
    examples: &[Example],
    cfg: &PretrainConfig,
    pad: u32,
    device: &Device,
) -> Scored {
    let refs: Vec<&Example> = examples.iter().collect();
    let clips = clip_batch(videos, &refs);
    let (b, l) = (clips.batch, clips.len);
    let embedded = model.embed_clips(&clips, device);
    let hidden = model.visual_hidden(&clips, embedded.clone(), device);
    let h = embedded.dims()[2];
    let visual = if cfg.visual_weight > 0.0 {
        let mut keys = Vec::new();
        let mut key_of = vec![usize::MAX; b * l];
        for (p, &real) in clips.real.iter().enumerate() {
            if real {
                key_of[p] = keys.len();
                keys.push(p as i64);
            }
        }
        let masked: Vec<i64> = (0..b * l)
            .filter(|&p| clips.masked[p])
            .map(|p| p as i64)
            .collect();
        let positives: Vec<usize> = masked.iter().map(|&p| key_of[p as usize]).collect();
        (keys.len() >= 2 && !masked.is_empty()).then(|| {
            let k = embedded.reshape([b * l, h]).select(0, index(keys, device));
            let q = hidden
                .clone()
                .reshape([b * l, h])
                .select(0, index(masked, device));
            let s = q.matmul(k.transpose());
            let s = if cfg.temperature == 1.0 {
                s
            } else {
                s.div_scalar(cfg.temperature)
            };
            (s, positives)
        })
    } else {
        None
    };
    let needs_text = cfg.cross_weight > 0.0 || cfg.text_weight > 0.0;
    let texts: Vec<&[u32]> = examples.iter().map(|e| e.text.as_slice()).collect();
    let tokens = token_batch(&texts, pad);
    let text_hidden = needs_text.then(|| {
        let t = model.text_hidden(&tokens, device);
        if cfg.train_text {
            t
        } else {
            t.detach()
        }
    });
    let cross = match (&text_hidden, cfg.cross_weight > 0.0 && b >= 2) {
        (Some(t), true) => {
            let k = cfg.cross_negatives.map_or(b - 1, |k| k.min(b - 1));
            let all = cfg.cross_negatives.is_none() || k == b - 1;
            let mut pairs = Vec::with_capacity(b * (k + 1));
            for i in 0..b {
                if all {
                    pairs.extend((0..b).map(|j| (j, i)));
                } else {
                    pairs.extend((0..=k).map(|d| ((i + d) % b, i)));
                }
            }
            let s = model.cross_scores(
                (hidden.clone(), clips.padding(device)),
                (t.clone(), tokens.padding(device)),
                &pairs,
                device,
            );
            let cols = if all { b } else { k + 1 };
            let positives: Vec<usize> = (0..b).map(|i| if all { i } else { 0 }).collect();
            Some((s.reshape([b, cols]), positives))
        }
        _ => None,
    };
    let text = match &text_hidden {
        Some(t) if cfg.text_weight > 0.0 => {
            let lt = tokens.len;
            let mut pos = Vec::new();
            let mut targets = Vec::new();
            for (r, e) in examples.iter().enumerate() {
                for &(p, tok) in &e.text_targets {
                    pos.push((r * lt + p) as i64);
                    targets.push(tok);
                }
            }
            (!pos.is_empty()).then(|| {
                let flat = t.clone().reshape([b * lt, h]).select(0, index(pos, device));
                (model.text.mlm_logits(flat), targets)
            })
        }
        _ => None,
    };
    Scored {
        visual,
        cross,
        text,
    }
}

/// Visual predictions, texts and masked text tokens of `examples` (what each loss averages
/// over in a batch).
pub fn target_counts(examples: &[Example], cfg: &PretrainConfig) -> [usize; 3] {
    let mut c = [0; 3];
    for e in examples {
        c[0] += e.masked.len();
        c[1] += usize::from(cfg.cross_weight > 0.0);
        c[2] += e.text_targets.len();
    }
    c
}

/// The loss of a micro-batch of a batch with `counts` predictions per loss.
pub fn pretrain_loss(
    model: &Cbt,
    videos: &[NarratedVideo],
    micro: &[Example],
    counts: &[usize; 3],
    cfg: &PretrainConfig,
    pad: u32,
    device: &Device,
) -> Tensor<1> {
    let s = score(model, videos, micro, cfg, pad, device);
    // The scores were built with negatives (`score` leaves out a loss without): these cannot
    // fail, and a failure would be a bug, not bad input.
    let nce = |x: Option<(Tensor<2>, Vec<usize>)>| {
        x.map(|(s, p)| {
            let n = p.len();
            (contrastive_nce(s, &p).expect("scores with negatives"), n)
        })
    };
    let (visual, nv) = nce(s.visual).map_or((None, 0), |(t, n)| (Some(t), n));
    let (cross, nc) = nce(s.cross).map_or((None, 0), |(t, n)| (Some(t), n));
    let (text, nt) = s
        .text
        .map_or((None, 0), |(l, t)| (Some(cross_entropy(l, &t)), t.len()));
    weighted_batch_means(
        vec![
            (visual, nv, cfg.visual_weight),
            (cross, nc, cfg.cross_weight),
            (text, nt, cfg.text_weight),
        ],
        counts,
        device,
    )
}

struct PretrainTask<'a> {
    cfg: &'a PretrainConfig,
    model_cfg: &'a CbtConfig,
    tok: &'a TextTokenizer,
    train: &'a [NarratedVideo],
    valid: &'a [NarratedVideo],
    sp: TextSpecials,
    device: &'a Device,
    ad: Device,
    steps_per_epoch: usize,
}

pub struct PretrainBatch {
    examples: Vec<Example>,
    counts: [usize; 3],
}

impl PretrainTask<'_> {
    fn examples(&self, videos: &[NarratedVideo], stream: u64, n: usize) -> Result<Vec<Example>> {
        let encode = |texts: &[&str]| self.tok.encode_plain(texts);
        let mut rng = rng_for(self.cfg.seed, stream, n as u64);
        epoch(
            videos,
            &encode,
            self.sp,
            self.sp.mask + 1
                ..=(self.tok.vocab_size() as u32)
                    .saturating_sub(1)
                    .max(self.sp.mask + 1),
            self.cfg,
            self.model_cfg.max_clips,
            &mut rng,
        )
    }

    /// Batches of `batch_size` (the last may be shorter). The loop cuts a batch into
    /// micro-batches of [`trainer::micro_size`]; examples are dropped from the end of a batch (an
    /// epoch's last, shorter one) until no micro-batch would hold a single example.
    fn batch(&self, mut examples: Vec<Example>) -> Vec<PretrainBatch> {
        let mut out = Vec::new();
        while !examples.is_empty() {
            let rest = examples.split_off(self.cfg.batch_size.min(examples.len()));
            let mut batch = std::mem::replace(&mut examples, rest);
            loop {
                let m = trainer::micro_size(self.cfg.micro_batch, batch.len());
                if batch.is_empty() || (m >= 2 && batch.len() % m != 1) {
                    break;
                }
                batch.pop();
            }
            if batch.is_empty() {
                continue;
            }
            out.push(PretrainBatch {
                counts: target_counts(&batch, self.cfg),
                examples: batch,
            });
        }
        out
    }
}

impl Task for PretrainTask<'_> {
    type Model = Cbt;
    type Item = Example;
    type Batch = PretrainBatch;

    fn steps_per_epoch(&self) -> usize {
        self.steps_per_epoch
    }

    fn batches(&self, epoch: usize) -> Vec<PretrainBatch> {
        // Tokenising cannot fail here: every text was tokenised before training.
        let mut examples = self
            .examples(self.train, STREAM_DRAW, epoch)
            .unwrap_or_default();
        examples.shuffle(&mut rng_for(self.cfg.seed, STREAM_SHUFFLE, epoch as u64));
        self.batch(examples)
    }

    fn items<'b>(&self, batch: &'b PretrainBatch) -> &'b [Example] {
        &batch.examples
    }

    fn skip(&self, batch: &PretrainBatch) -> bool {
        batch.counts.iter().all(|&c| c == 0)
    }

    fn loss(&self, m: &Cbt, batch: &PretrainBatch, micro: &[Example], _: MicroStep) -> Tensor<1> {
        pretrain_loss(
            m,
            self.train,
            micro,
            &batch.counts,
            self.cfg,
            self.sp.pad,
            &self.ad,
        )
    }

    fn evaluate(&self, model: &Cbt) -> Result<Vec<(String, f64)>> {
        if self.valid.is_empty() {
            return Ok(vec![]);
        }
        let examples = self.examples(self.valid, STREAM_VALID, 0)?;
        // [loss sum, right, count] for visual, cross-modal and (when on) masked text tokens.
        let mut acc = [[0f64; 3]; 3];
        for chunk in examples.chunks(self.cfg.micro_batch) {
            if chunk.len() < 2 {
                continue;
            }
            let s = score(model, self.valid, chunk, self.cfg, self.sp.pad, self.device);
            // Each is a cross-entropy against a positive column: the vocabulary's for text.
            let text = s
                .text
                .map(|(logits, t)| (logits, t.into_iter().map(|x| x as usize).collect()));
            for (k, x) in [s.visual, s.cross, text].into_iter().enumerate() {
                let Some((scores, pos)) = x else { continue };
                let n = pos.len();
                let loss = contrastive_nce(scores.clone(), &pos)?
                    .into_data()
                    .convert::<f64>()
                    .try_to_vec::<f64>()
                    .map_err(|e| anyhow::anyhow!("{e:?}"))?[0];
                let pred: Vec<i64> = scores
                    .argmax(1)
                    .into_data()
                    .convert::<i64>()
                    .try_to_vec::<i64>()
                    .map_err(|e| anyhow::anyhow!("{e:?}"))?;
                acc[k][0] += loss * n as f64;
                acc[k][1] += pred
                    .iter()
                    .zip(&pos)
                    .filter(|(a, b)| **a == **b as i64)
                    .count() as f64;
                acc[k][2] += n as f64;
            }
        }
        let mut out = Vec::new();
        for (k, name) in ["visual", "cross", "text"].iter().enumerate() {
            if acc[k][2] > 0.0 {
                out.push((format!("valid_{name}_loss"), acc[k][0] / acc[k][2]));
                out.push((format!("valid_{name}_accuracy"), acc[k][1] / acc[k][2]));
            }
        }
        Ok(out)
    }

    fn save_model(&self, model: &Cbt, run: &RunDir, _epoch: usize) -> Result<()> {
        save(&run.path, self.model_cfg, model)?;
        self.tok.save(&run.path)
    }
}

/// The text specials of a tokenizer.
pub fn text_specials(tok: &TextTokenizer) -> Result<TextSpecials> {
    let id = |t: &str| -> Result<u32> {
        tok.token_to_id(t)
            .ok_or_else(|| anyhow::anyhow!("the text vocabulary lacks {t}"))
    };
    Ok(TextSpecials {
        cls: id("[CLS]")?,
        sep: id("[SEP]")?,
        mask: id("[MASK]")?,
        pad: tok.pad_id,
    })
}

/// Pretrain `model` on `videos` (the last `valid_videos` held out); writes `metrics.jsonl`,
/// checkpoints and the model directory (with the tokenizer) into `run`.
#[allow(clippy::too_many_arguments)]
pub fn pretrain(
    model: Cbt,
    model_cfg: &CbtConfig,
    tok: &TextTokenizer,
    videos: &[NarratedVideo],
    cfg: &PretrainConfig,
    run: &RunDir,
    device: &Device,
    opts: &RunOptions,
) -> Result<Vec<trainer::EpochRecord>> {
    cfg.validate()?;
    ensure!(
        cfg.valid_videos < videos.len(),
        "valid_videos = {}: there are {} videos, none would be left to train on",
        cfg.valid_videos,
        videos.len()
    );
    if let Some(v) = videos
        .iter()
        .find(|v| v.features.dim != model_cfg.feature_size)
    {
        bail!(
            "video {}: features of {} values, the model reads {}",
            v.features.video,
            v.features.dim,
            model_cfg.feature_size
        );
    }
    let (train, valid) = videos.split_at(videos.len() - cfg.valid_videos);
    let sp = text_specials(tok)?;
    let settings = LoopSettings::standard(
        "tessera-cbt",
        "pretrain.toml",
        cfg,
        (cfg.seed, cfg.epochs, cfg.micro_batch),
        (cfg.lr, cfg.warmup_steps),
        (cfg.weight_decay, cfg.clip_grad_norm),
        None,
        super::model::renames(),
        STREAM_DROPOUT,
    )?;
    let mut task = PretrainTask {
        cfg,
        model_cfg,
        tok,
        train,
        valid,
        sp,
        device,
        ad: device.clone().autodiff(),
        steps_per_epoch: 0,
    };
    let examples = task.examples(train, STREAM_DRAW, 0)?;
    let n = examples.len();
    ensure!(
        n > 0,
        "no training example: no training video has narration overlapping its clips"
    );
    let first = task.batch(examples).len();
    ensure!(
        first > 0,
        "{n} training examples: too few for a batch whose micro-batches all hold 2 or more \
         (the contrastive negatives); give more videos or narration"
    );
    task.steps_per_epoch = first;
    let out = trainer::train(&task, model, &settings, run, device, opts)?;
    Ok(out.records)
}
