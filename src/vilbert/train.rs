//! ViLBERT pretraining and fine-tuning on the shared training loop.
//!
//! Pretraining as the official `train_concap.py` with `BertForMultiModalPreTraining`
//! (`objective` 0, `visual_target` 0) and its data side (`concept_cap_dataset.py`):
//! - alignment: with probability 0.5 the caption is replaced by another image's caption and
//!   the pair labelled 1 (not aligned), else 0; cross-entropy of `seq_relationship_score`;
//! - masked language modelling on every pair: each token 15%, of those 80% `[MASK]`, 10% a
//!   random token of the vocabulary, 10% kept; cross-entropy over the picked tokens;
//! - masked regions on every pair: each box 15%, of those 90% with the feature zeroed, the
//!   global feature recomputed ([`super::data::mask_regions`]); KL divergence between the
//!   detector's class distribution (or the annotation's label, one-hot) and the predicted one,
//!   summed over classes and averaged over the picked boxes;
//! - the loss is their sum (`img_weight` 1).
//!
//! Named deviations: a batch with no picked box gives a region loss of 0 (the official code
//! divides by zero: NaN); a random caption is redrawn when it belongs to the same image (the
//! official code may label an image's own caption "not aligned"); `hard_negative_prob` (default
//! 0, the official behaviour) makes that share of the negatives the caption's hard negative
//! from the corpus (objects swapped in the scenes corpus) instead of a random caption.

use super::config::VilBertConfig;
use super::data::{batch, blind, mask_regions, ImageInput};
use super::model::{official_renames, VilBatch, VilBert, VilOutput};
use crate::core::fused::cross_entropy;
use crate::core::losses::{kl_divergence, multi_label_bce};
use crate::core::masking::{ClozeMasker, MaskStyle};
use crate::core::rng::rng_for;
use crate::core::run::RunDir;
use crate::core::trainer::{
    self, DrawnTask, FinetuneConfig, IndexedTask, LoopSettings, MicroStep, Selection,
};
use crate::text::tokenize::TextTokenizer;
use anyhow::{ensure, Result};
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::rngs::StdRng;
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::marker::PhantomData;

const STREAM_MASK: u64 = 41;
const STREAM_SHUFFLE: u64 = 42;
const STREAM_DROPOUT: u64 = 43;
const STREAM_VALID: u64 = 44;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PretrainConfig {
    pub seed: u64,
    pub epochs: usize,
    pub batch_size: usize,
    /// Pairs per micro-batch (see `core::parallel`).
    pub micro_batch: usize,
    pub lr: f64,
    pub warmup_steps: u64,
    pub weight_decay: f64,
    pub clip_grad_norm: f64,
    /// Probability a token is picked for masked language modelling (0.15).
    pub mlm_prob: f64,
    /// Probability a box is picked for masked-region prediction (0.15).
    pub region_prob: f64,
    /// Share of the picked boxes whose feature is zeroed (0.9).
    pub region_zero_prob: f64,
    /// Probability a pair's caption is replaced by another's (0.5).
    pub negative_prob: f64,
    /// Share of the negatives that are the caption's hard negative when the corpus has one
    /// (Tessera's option; 0 as the official code).
    pub hard_negative_prob: f64,
    /// Weight of the masked-region loss (`--img_weight`, 1).
    pub img_weight: f64,
    pub selection: Option<Selection>,
}

impl Default for PretrainConfig {
    fn default() -> Self {
        Self {
            seed: 0,
            epochs: 1,
            batch_size: 64,
            micro_batch: 32,
            lr: 1e-4,
            warmup_steps: 100,
            weight_decay: 1e-4,
            clip_grad_norm: 1.0,
            mlm_prob: 0.15,
            region_prob: 0.15,
            region_zero_prob: 0.9,
            negative_prob: 0.5,
            hard_negative_prob: 0.0,
            img_weight: 1.0,
            selection: None,
        }
    }
}

impl PretrainConfig {
    pub fn validate(&self) -> Result<()> {
        use crate::core::validate::*;
        at_least_one("epochs (--epochs)", self.epochs)?;
        at_least_one("batch_size (--batch-size)", self.batch_size)?;
        positive("lr (--lr)", self.lr)?;
        non_negative("weight_decay", self.weight_decay)?;
        non_negative("clip_grad_norm", self.clip_grad_norm)?;
        non_negative("img_weight", self.img_weight)?;
        for (k, p) in [
            ("mlm_prob", self.mlm_prob),
            ("region_prob", self.region_prob),
            ("region_zero_prob", self.region_zero_prob),
        ] {
            proportion(k, p)?;
        }
        probability("negative_prob", self.negative_prob)?;
        probability("hard_negative_prob", self.hard_negative_prob)?;
        match &self.selection {
            Some(s) => s.validate(),
            None => Ok(()),
        }
    }
}

/// One image-text pair of a corpus.
#[derive(Debug, Clone, PartialEq)]
pub struct Pair {
    /// `[CLS] text [SEP]`.
    pub ids: Vec<u32>,
    /// The caption's hard negative (`[CLS] .. [SEP]`), when the corpus has one.
    pub negative: Option<Vec<u32>>,
    pub image: usize,
}

/// Images, their boxes' class targets and the captions over them.
pub struct PairCorpus {
    pub images: Vec<ImageInput>,
    /// Per image, N x C targets of its boxes (the global token has none).
    pub targets: Vec<Vec<f32>>,
    pub pairs: Vec<Pair>,
}

/// A pair with its caption (its own or another's) and masks drawn.
#[derive(Debug, Clone, PartialEq)]
pub struct MaskedPair {
    pub image: usize,
    pub input: Vec<u32>,
    /// (position, original token) to predict.
    pub mlm_targets: Vec<(usize, u32)>,
    /// Per box (the global token excluded): picked for prediction, and zeroed.
    pub picked: Vec<bool>,
    pub zeroed: Vec<bool>,
    /// The caption belongs to the image (label 0 of the alignment head).
    pub aligned: bool,
}

/// What masks and negatives are drawn from.
pub struct Masking {
    pub words: ClozeMasker,
    pub region_prob: f64,
    pub region_zero_prob: f64,
    pub negative_prob: f64,
    pub hard_negative_prob: f64,
}

impl Masking {
    pub fn draw<R: Rng>(&self, corpus: &PairCorpus, index: usize, rng: &mut R) -> MaskedPair {
        let p = &corpus.pairs[index];
        let mut text = &p.ids;
        let mut aligned = true;
        let others = corpus.pairs.iter().any(|q| q.image != p.image);
        if rng.random::<f64>() < self.negative_prob {
            match &p.negative {
                Some(neg) if rng.random::<f64>() < self.hard_negative_prob => {
                    text = neg;
                    aligned = false;
                }
                _ if others => loop {
                    let q = &corpus.pairs[rng.random_range(0..corpus.pairs.len())];
                    if q.image != p.image {
                        text = &q.ids;
                        aligned = false;
                        break;
                    }
                },
                _ => {}
            }
        }
        let m = self.words.mask(text, rng);
        let n = corpus.images[p.image].boxes.len();
        let mut picked = vec![false; n];
        let mut zeroed = vec![false; n];
        for k in 0..n {
            if rng.random::<f64>() < self.region_prob {
                picked[k] = true;
                zeroed[k] = rng.random::<f64>() < self.region_zero_prob;
            }
        }
        MaskedPair {
            image: p.image,
            input: m.input,
            mlm_targets: m.targets,
            picked,
            zeroed,
            aligned,
        }
    }
}

/// The masking settings of a model's vocabulary.
pub fn masking(tok: &TextTokenizer, cfg: &PretrainConfig) -> Result<Masking> {
    let mask_token = tok
        .mask_id
        .ok_or_else(|| anyhow::anyhow!("the vocabulary lacks [MASK]"))?;
    Ok(Masking {
        words: ClozeMasker {
            pad: tok.pad_id,
            mask_token,
            p: cfg.mlm_prob,
            max_predictions: usize::MAX,
            style: MaskStyle::BERT_80_10_10,
            random_range: 0..=(tok.vocab_size() as u32 - 1),
            never_mask: ["[CLS]", "[SEP]"]
                .iter()
                .filter_map(|t| tok.token_to_id(t))
                .collect(),
        },
        region_prob: cfg.region_prob,
        region_zero_prob: cfg.region_zero_prob,
        negative_prob: cfg.negative_prob,
        hard_negative_prob: cfg.hard_negative_prob,
    })
}

/// The three pretraining losses, each the mean over its predictions (`None` where nothing is
/// predicted), their counts and, when asked, argmax hits.
pub struct Losses {
    pub mlm: Option<Tensor<1>>,
    pub words: usize,
    pub region: Option<Tensor<1>>,
    pub regions: usize,
    pub alignment: Option<Tensor<1>>,
    pub pairs: usize,
    /// (word hits, region hits, alignment hits).
    pub hits: Option<(usize, usize, usize)>,
}

/// What the losses are computed against, for a prepared batch: flat text positions `row * T +
/// t` with their tokens; flat region positions `row * R + k` (k >= 1: boxes after the global
/// token) with their class distributions (row-major); per row, aligned or not.
pub struct Targets {
    pub words: Vec<(usize, u32)>,
    pub regions: Vec<usize>,
    pub region_targets: Vec<f32>,
    pub aligned: Vec<bool>,
}

fn argmax_rows(logits: Tensor<2>) -> Vec<usize> {
    logits
        .argmax(1)
        .into_data()
        .convert::<i64>()
        .try_to_vec::<i64>()
        .unwrap_or_default()
        .into_iter()
        .map(|x| x as usize)
        .collect()
}

/// The pretraining losses of a prepared batch (the official `BertForMultiModalPreTraining`
/// with labels).
pub fn losses_of_batch(
    model: &VilBert,
    b: &VilBatch,
    targets: &Targets,
    count_hits: bool,
    device: &Device,
) -> Losses {
    let out = model.forward(b, device);
    let (n, t, r) = (b.batch, b.text_len, b.regions);
    let mut hits = (0, 0, 0);
    let words: Vec<u32> = targets.words.iter().map(|w| w.1).collect();
    let mlm = (!words.is_empty()).then(|| {
        let pos: Vec<i64> = targets.words.iter().map(|w| w.0 as i64).collect();
        let idx: Tensor<1, Int> = Tensor::from_data(TensorData::new(pos, [words.len()]), device);
        let h = model.text_hidden();
        let rows = out.text.clone().reshape([n * t, h]).select(0, idx);
        let l = model.mlm_logits(rows);
        if count_hits {
            hits.0 = argmax_rows(l.clone())
                .iter()
                .zip(&words)
                .filter(|(p, &w)| **p == w as usize)
                .count();
        }
        cross_entropy(l, &words)
    });
    let k = targets.regions.len();
    let region = (k > 0).then(|| {
        let pos: Vec<i64> = targets.regions.iter().map(|&x| x as i64).collect();
        let idx: Tensor<1, Int> = Tensor::from_data(TensorData::new(pos, [k]), device);
        let h = model.image_hidden();
        let rows = out.image.clone().reshape([n * r, h]).select(0, idx);
        let l = model.region_logits(rows);
        if count_hits {
            let c = targets.region_targets.len() / k;
            hits.1 = argmax_rows(l.clone())
                .iter()
                .enumerate()
                .filter(|(i, &p)| {
                    let row = &targets.region_targets[i * c..(i + 1) * c];
                    let best = (0..c).fold(0, |best, j| if row[j] > row[best] { j } else { best });
                    p == best
                })
                .count();
        }
        kl_divergence(l, &targets.region_targets)
    });
    let labels: Vec<u32> = targets.aligned.iter().map(|&a| u32::from(!a)).collect();
    let alignment = (!labels.is_empty()).then(|| {
        let l = model.alignment_logits(&out);
        if count_hits {
            hits.2 = argmax_rows(l.clone())
                .iter()
                .zip(&labels)
                .filter(|(p, &y)| **p == y as usize)
                .count();
        }
        cross_entropy(l, &labels)
    });
    Losses {
        mlm,
        words: words.len(),
        region,
        regions: k,
        alignment,
        pairs: labels.len(),
        hits: count_hits.then_some(hits),
    }
}

/// Prepare masked pairs as a batch and its targets.
pub fn masked_batch(corpus: &PairCorpus, items: &[MaskedPair]) -> (VilBatch, Targets) {
    let images: Vec<ImageInput> = items
        .iter()
        .map(|it| mask_regions(&corpus.images[it.image], &it.picked, &it.zeroed))
        .collect();
    let pairs: Vec<(&[u32], &ImageInput)> = items
        .iter()
        .zip(&images)
        .map(|(it, im)| (it.input.as_slice(), im))
        .collect();
    let b = batch(&pairs);
    let mut targets = Targets {
        words: vec![],
        regions: vec![],
        region_targets: vec![],
        aligned: vec![],
    };
    for (i, it) in items.iter().enumerate() {
        for &(p, w) in &it.mlm_targets {
            targets.words.push((i * b.text_len + p, w));
        }
        let tg = &corpus.targets[it.image];
        let c = tg.len() / it.picked.len().max(1);
        for (k, &p) in it.picked.iter().enumerate() {
            if p {
                targets.regions.push(i * b.regions + k + 1);
                targets
                    .region_targets
                    .extend_from_slice(&tg[k * c..(k + 1) * c]);
            }
        }
        targets.aligned.push(it.aligned);
    }
    (b, targets)
}

/// Held-out masked-word, masked-region and alignment (random negatives) accuracy and losses,
/// with masks drawn from the seed.
pub fn evaluate_pretraining(
    model: &VilBert,
    corpus: &PairCorpus,
    masking: &Masking,
    seed: u64,
    batch_size: usize,
    device: &Device,
) -> Vec<(String, f64)> {
    let mut rng = rng_for(seed, STREAM_VALID, 0);
    let items: Vec<MaskedPair> = (0..corpus.pairs.len())
        .map(|i| masking.draw(corpus, i, &mut rng))
        .collect();
    let mut sums = [0f64; 3];
    let mut counts = [0usize; 3];
    let mut hit = [0usize; 3];
    for chunk in items.chunks(batch_size.max(1)) {
        let (b, t) = masked_batch(corpus, chunk);
        let l = losses_of_batch(model, &b, &t, true, device);
        let (h0, h1, h2) = l.hits.unwrap_or((0, 0, 0));
        for (i, (loss, n, h)) in [
            (l.mlm, l.words, h0),
            (l.region, l.regions, h1),
            (l.alignment, l.pairs, h2),
        ]
        .into_iter()
        .enumerate()
        {
            if let Some(x) = loss {
                sums[i] += x.into_scalar::<f32>() as f64 * n as f64;
            }
            counts[i] += n;
            hit[i] += h;
        }
    }
    let ratio = |a: f64, n: usize| if n == 0 { f64::NAN } else { a / n as f64 };
    vec![
        (
            "valid_word_accuracy".into(),
            ratio(hit[0] as f64, counts[0]),
        ),
        (
            "valid_region_accuracy".into(),
            ratio(hit[1] as f64, counts[1]),
        ),
        (
            "valid_alignment_accuracy".into(),
            ratio(hit[2] as f64, counts[2]),
        ),
        ("valid_mlm_loss".into(), ratio(sums[0], counts[0])),
        ("valid_region_loss".into(), ratio(sums[1], counts[1])),
        ("valid_alignment_loss".into(), ratio(sums[2], counts[2])),
    ]
}

/// Pretrain `model` on `train`, measuring on `valid` after every epoch; the run directory ends
/// as a model directory.
#[allow(clippy::too_many_arguments)]
pub fn pretrain(
    model: VilBert,
    cfg: &VilBertConfig,
    tok: &TextTokenizer,
    train: &PairCorpus,
    valid: &PairCorpus,
    train_cfg: &PretrainConfig,
    run: &RunDir,
    device: &Device,
    opts: &trainer::RunOptions,
) -> Result<trainer::TrainOutcome> {
    ensure!(!train.pairs.is_empty(), "no training pairs");
    train_cfg.validate()?;
    let c = train_cfg;
    let settings = LoopSettings::standard(
        "tessera-vilbert-pretrain",
        "pretrain.toml",
        c,
        (c.seed, c.epochs, c.micro_batch),
        (c.lr, c.warmup_steps),
        (c.weight_decay, c.clip_grad_norm),
        c.selection.clone(),
        official_renames(),
        STREAM_DROPOUT,
    )?;
    let masking = masking(tok, train_cfg)?;
    let ad = device.clone().autodiff();
    let task = DrawnTask {
        examples: train.pairs.len(),
        batch_size: c.batch_size,
        seed: c.seed,
        shuffle_stream: STREAM_SHUFFLE,
        draw_stream: STREAM_MASK,
        draw: |i: usize, rng: &mut StdRng| masking.draw(train, i, rng),
        counts: |m: &MaskedPair| {
            vec![
                m.mlm_targets.len(),
                m.picked.iter().filter(|&&p| p).count(),
                1,
            ]
        },
        loss: |model: &VilBert, part: &[MaskedPair], counts: &[usize]| {
            let (b, t) = masked_batch(train, part);
            let l = losses_of_batch(model, &b, &t, false, &ad);
            trainer::weighted_batch_means(
                vec![
                    (l.mlm, l.words, 1.0),
                    (l.region, l.regions, c.img_weight),
                    (l.alignment, l.pairs, 1.0),
                ],
                counts,
                &ad,
            )
        },
        evaluate: |model: &VilBert| {
            if valid.pairs.is_empty() {
                return Ok(vec![]);
            }
            Ok(evaluate_pretraining(
                model,
                valid,
                &masking,
                c.seed,
                c.batch_size,
                device,
            ))
        },
        save: |model: &VilBert, run: &RunDir| super::save_model_dir(model, cfg, tok, &run.path),
        model: PhantomData,
    };
    trainer::train(&task, model, &settings, run, device, opts)
}

// ---------------------------------------------------------------------------------------------
// Scoring image-text pairs: alignment (zero-shot) and the fine-tuned retrieval head.

/// Which head scores a pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scorer {
    /// The alignment head's probability of "aligned" (zero-shot, as the official
    /// `eval_retrieval.py --zero_shot`).
    Alignment,
    /// The retrieval head's score (`vil_logit`).
    Retrieval,
}

/// Scores of `(ids, image)` pairs under a head, in batches.
pub fn score_pairs(
    model: &VilBert,
    pairs: &[(&[u32], &ImageInput)],
    scorer: Scorer,
    batch_size: usize,
    device: &Device,
) -> Result<Vec<f32>> {
    if scorer == Scorer::Retrieval && model.vil_logit.is_none() {
        anyhow::bail!("the model has no retrieval head (with_retrieval_head false)");
    }
    let mut out = Vec::with_capacity(pairs.len());
    for chunk in pairs.chunks(batch_size.max(1)) {
        let b = batch(chunk);
        let o = model.forward(&b, device);
        let s: Tensor<1> = match scorer {
            Scorer::Alignment => {
                let n = chunk.len();
                softmax(model.alignment_logits(&o), 1)
                    .narrow(1, 0, 1)
                    .reshape([n])
            }
            Scorer::Retrieval => model.retrieval_logits(&o).expect("checked above"),
        };
        out.extend(
            s.into_data()
                .convert::<f32>()
                .try_to_vec::<f32>()
                .map_err(|e| anyhow::anyhow!("{e:?}"))?,
        );
    }
    Ok(out)
}

/// Image retrieval from captions: each query caption against every gallery image; the ranks
/// (0-based) of each query's own image.
pub fn retrieval_ranks(
    model: &VilBert,
    queries: &[(&[u32], usize)],
    gallery: &[&ImageInput],
    scorer: Scorer,
    batch_size: usize,
    device: &Device,
    progress: &dyn Fn(usize),
) -> Result<Vec<usize>> {
    let mut ranks = Vec::with_capacity(queries.len());
    for (qi, (ids, own)) in queries.iter().enumerate() {
        let pairs: Vec<(&[u32], &ImageInput)> = gallery.iter().map(|im| (*ids, *im)).collect();
        let s = score_pairs(model, &pairs, scorer, batch_size, device)?;
        let mine = s[*own];
        // Ties count against the query (a constant scorer ranks last, not first).
        ranks.push(
            s.iter()
                .enumerate()
                .filter(|&(j, &x)| j != *own && x >= mine)
                .count(),
        );
        progress(qi + 1);
    }
    Ok(ranks)
}

/// Recall at k from 0-based ranks.
pub fn recall_at(ranks: &[usize], k: usize) -> f64 {
    ranks.iter().filter(|&&r| r < k).count() as f64 / ranks.len().max(1) as f64
}

// ---------------------------------------------------------------------------------------------
// VQA (the official `VILBertForVLTasks` with `vil_prediction`).

/// One question about an image: `[CLS] question [SEP]`, the answer's index in the vocabulary
/// (none when the answer is outside it).
#[derive(Debug, Clone, PartialEq)]
pub struct Question {
    pub ids: Vec<u32>,
    pub image: usize,
    pub answer: Option<usize>,
}

pub struct QaCorpus {
    pub images: Vec<ImageInput>,
    pub questions: Vec<Question>,
}

/// Answer scores [B, A] of questions (their images blinded when `blind_images`).
pub fn vqa_logits(
    model: &VilBert,
    corpus: &QaCorpus,
    questions: &[&Question],
    blind_images: bool,
    device: &Device,
) -> Result<Tensor<2>> {
    ensure!(
        model.vil_prediction.is_some(),
        "the model has no VQA head (num_labels 0)"
    );
    let images: Vec<ImageInput> = questions
        .iter()
        .map(|q| {
            let p = &corpus.images[q.image];
            if blind_images {
                blind(p)
            } else {
                p.clone()
            }
        })
        .collect();
    let pairs: Vec<(&[u32], &ImageInput)> = questions
        .iter()
        .zip(&images)
        .map(|(q, im)| (q.ids.as_slice(), im))
        .collect();
    let out: VilOutput = model.forward(&batch(&pairs), device);
    Ok(model.vqa_logits(&out).expect("checked above"))
}

/// Accuracy of the highest-scored answer.
pub fn vqa_accuracy(
    model: &VilBert,
    corpus: &QaCorpus,
    blind_images: bool,
    batch_size: usize,
    device: &Device,
) -> Result<f64> {
    let qs: Vec<&Question> = corpus.questions.iter().collect();
    let mut hits = 0usize;
    for chunk in qs.chunks(batch_size.max(1)) {
        let pred = argmax_rows(vqa_logits(model, corpus, chunk, blind_images, device)?);
        hits += chunk
            .iter()
            .zip(&pred)
            .filter(|(q, &p)| q.answer == Some(p))
            .count();
    }
    Ok(hits as f64 / qs.len().max(1) as f64)
}

/// Fine-tune `model` (with its VQA head) on `train`, measuring answer accuracy on `valid`.
#[allow(clippy::too_many_arguments)]
pub fn train_vqa(
    model: VilBert,
    cfg: &VilBertConfig,
    tok: &TextTokenizer,
    answers: &[String],
    train: &QaCorpus,
    valid: &QaCorpus,
    train_cfg: &FinetuneConfig,
    run: &RunDir,
    device: &Device,
    opts: &trainer::RunOptions,
) -> Result<trainer::TrainOutcome> {
    ensure!(!train.questions.is_empty(), "no training questions");
    ensure!(model.vil_prediction.is_some(), "the model has no VQA head");
    train_cfg.validate()?;
    let c = train_cfg;
    let settings = train_cfg.loop_settings(
        "tessera-vilbert-vqa",
        "vqa.toml",
        official_renames(),
        STREAM_DROPOUT,
    )?;
    let ad = device.clone().autodiff();
    let task = IndexedTask {
        examples: train.questions.len(),
        batch_size: c.batch_size,
        seed: c.seed,
        shuffle_stream: STREAM_SHUFFLE,
        loss: |model: &VilBert, part: &[usize], _: MicroStep| {
            let qs: Vec<&Question> = part.iter().map(|&i| &train.questions[i]).collect();
            let logits =
                vqa_logits(model, train, &qs, c.blind, &ad).expect("the VQA model has its head");
            let answers: Vec<Option<usize>> = qs.iter().map(|q| q.answer).collect();
            multi_label_bce(logits, &answers)
        },
        evaluate: |model: &VilBert| {
            if valid.questions.is_empty() {
                return Ok(vec![]);
            }
            let acc = vqa_accuracy(model, valid, c.blind, c.batch_size, device)?;
            Ok(vec![("valid_accuracy".to_string(), acc)])
        },
        save: |model: &VilBert, run: &RunDir| {
            super::save_model_dir(model, cfg, tok, &run.path)?;
            run.write_atomic("answers.txt", (answers.join("\n") + "\n").as_bytes())
        },
        model: PhantomData,
    };
    trainer::train(&task, model, &settings, run, device, opts)
}

// ---------------------------------------------------------------------------------------------
// Caption-based image retrieval (the official `RetreivalDataset`: 4-way choice with `vil_logit`).

/// Captions over images; a caption's options are drawn per epoch.
pub struct RetrievalCorpus {
    pub images: Vec<ImageInput>,
    /// (`[CLS] caption [SEP]`, its image).
    pub captions: Vec<(Vec<u32>, usize)>,
}

/// The official four options of a caption: its own image (the answer), another image with the
/// caption, the own image with another image's caption, a third image with the caption (the
/// official fourth option is a mined hard negative image; here a random one: named).
fn options<R: Rng>(
    corpus: &RetrievalCorpus,
    index: usize,
    rng: &mut R,
) -> [(usize /*caption*/, usize /*image*/); 4] {
    let (_, own) = corpus.captions[index];
    let n = corpus.images.len();
    let mut other_image = |avoid: &[usize]| loop {
        let j = rng.random_range(0..n);
        if !avoid.contains(&j) || n <= avoid.len() {
            return j;
        }
    };
    let i2 = other_image(&[own]);
    let i4 = other_image(&[own, i2]);
    let other_caption = loop {
        let c = rng.random_range(0..corpus.captions.len());
        if corpus.captions[c].1 != own || corpus.captions.len() == 1 || n == 1 {
            break c;
        }
    };
    [(index, own), (index, i2), (other_caption, own), (index, i4)]
}

/// Recall@1/5/10 of a corpus's captions against all its images.
pub fn retrieval_recalls(
    model: &VilBert,
    corpus: &RetrievalCorpus,
    scorer: Scorer,
    batch_size: usize,
    device: &Device,
    progress: &dyn Fn(usize),
) -> Result<Vec<(String, f64)>> {
    let gallery: Vec<&ImageInput> = corpus.images.iter().collect();
    let queries: Vec<(&[u32], usize)> = corpus
        .captions
        .iter()
        .map(|(ids, im)| (ids.as_slice(), *im))
        .collect();
    let ranks = retrieval_ranks(
        model, &queries, &gallery, scorer, batch_size, device, progress,
    )?;
    Ok(vec![
        ("recall_at_1".into(), recall_at(&ranks, 1)),
        ("recall_at_5".into(), recall_at(&ranks, 5)),
        ("recall_at_10".into(), recall_at(&ranks, 10)),
    ])
}

/// Fine-tune `model` (with its retrieval head) for caption-based image retrieval, measuring
/// recall@1/5/10 over `valid`'s images after every epoch.
#[allow(clippy::too_many_arguments)]
pub fn train_retrieval(
    model: VilBert,
    cfg: &VilBertConfig,
    tok: &TextTokenizer,
    train: &RetrievalCorpus,
    valid: &RetrievalCorpus,
    train_cfg: &FinetuneConfig,
    run: &RunDir,
    device: &Device,
    opts: &trainer::RunOptions,
) -> Result<trainer::TrainOutcome> {
    ensure!(!train.captions.is_empty(), "no training captions");
    ensure!(
        train.images.len() >= 2,
        "retrieval training needs at least two images (its options pair captions with other images)"
    );
    ensure!(model.vil_logit.is_some(), "the model has no retrieval head");
    train_cfg.validate()?;
    let c = train_cfg;
    let settings = train_cfg.loop_settings(
        "tessera-vilbert-retrieval",
        "retrieve.toml",
        official_renames(),
        STREAM_DROPOUT,
    )?;
    let ad = device.clone().autodiff();
    let task = IndexedTask {
        examples: train.captions.len(),
        batch_size: c.batch_size,
        seed: c.seed,
        shuffle_stream: STREAM_SHUFFLE,
        loss: |model: &VilBert, part: &[usize], at: MicroStep| {
            // A caption's options are a function of the seed, the epoch and the caption.
            let pairs: Vec<(&[u32], &ImageInput)> = part
                .iter()
                .flat_map(|&i| {
                    let mut rng =
                        rng_for(c.seed, STREAM_MASK, ((at.epoch as u64) << 32) | i as u64);
                    options(train, i, &mut rng)
                })
                .map(|(cap, im)| (train.captions[cap].0.as_slice(), &train.images[im]))
                .collect();
            let out = model.forward(&batch(&pairs), &ad);
            let n = part.len();
            let scores = model
                .retrieval_logits(&out)
                .expect("the retrieval model has its head")
                .reshape([n, 4]);
            cross_entropy(scores, &vec![0u32; n])
        },
        evaluate: |model: &VilBert| {
            if valid.captions.is_empty() {
                return Ok(vec![]);
            }
            Ok(retrieval_recalls(
                model,
                valid,
                Scorer::Retrieval,
                c.batch_size.max(64),
                device,
                &|_| {},
            )?
            .into_iter()
            .map(|(k, v)| (format!("valid_{k}"), v))
            .collect())
        },
        save: |model: &VilBert, run: &RunDir| super::save_model_dir(model, cfg, tok, &run.path),
        model: PhantomData,
    };
    trainer::train(&task, model, &settings, run, device, opts)
}
