//! VL-BERT pretraining on image-text pairs (region files + captions) on the shared training
//! loop: masked language modelling with visual clues (whole-word masking, BERT's 80/10/10) and
//! masked RoI classification with linguistic clues (15% of the boxes chosen, 90% of those
//! masked: feature -> the learned mask feature, `[IMG]` -> the mask word; soft cross-entropy
//! against the region file's class scores, or the annotation's labels one-hot), as the official
//! `ResNetVLBERTForPretraining` and its data side. Losses are normalised over the batch
//! (`MLM_LOSS_NORM_IN_BATCH_FIRST` / `MVRC_LOSS_NORM_IN_BATCH_FIRST` false, the official
//! configs) and summed.
//!
//! Text-only sequences from a text corpus (the official multitask pretraining with
//! `GeneralCorpus`: BooksCorpus and Wikipedia there) are optional: a line and the lines after it
//! until `text_min_seq_len` words, whole-word masked, cut to `text_seq_len` tokens, with no
//! `[CLS]`/`[SEP]` and no RoIs; their masked-LM loss is a third term (`mlm_loss_aux`).
//!
//! Named deviations: the random replacement token of the 10% is drawn from the whole
//! vocabulary as the official `random.choice(vocab)`; the text-only sequences of a batch are
//! drawn at random from the corpus, `text_per_pair` per image-text pair (the official loader
//! walks its own shuffled order, 32 texts beside 32 pairs per GPU).

use super::config::VlBertConfig;
use super::data::{batch, mask_whole_image_feature, Example, PreparedRegions};
use super::model::{official_renames, VlBert};
use crate::core::fused::cross_entropy;
use crate::core::losses::soft_cross_entropy;
use crate::core::masking::{ClozeMasker, MaskStyle};
use crate::core::rng::rng_for;
use crate::core::run::RunDir;
use crate::core::trainer::{self, DrawnTask, IndexedTask, LoopSettings, MicroStep, Selection};
use crate::text::tokenize::TextTokenizer;
use anyhow::{ensure, Result};
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::rngs::StdRng;
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::marker::PhantomData;

const STREAM_MASK: u64 = 31;
const STREAM_SHUFFLE: u64 = 32;
const STREAM_DROPOUT: u64 = 33;
const STREAM_VALID: u64 = 34;

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
    /// Probability a word is chosen for masked language modelling (0.15).
    pub mlm_prob: f64,
    /// Probability a box (not the whole image) is chosen for masked-RoI classification (0.15).
    pub mvrc_prob: f64,
    /// Share of the chosen boxes that are masked; the rest are predicted unmasked (0.9).
    pub mvrc_mask_prob: f64,
    /// Text-only sequences per image-text pair in a batch, with a text corpus (official: 1,
    /// `TRAIN.BATCH_IMAGES` [32, 32]).
    pub text_per_pair: usize,
    /// Tokens of a text-only sequence (`DATASET.SEQ_LEN`, 64).
    pub text_seq_len: usize,
    /// Words a text-only sequence gathers from the lines that follow before it is cut
    /// (`DATASET.MIN_SEQ_LEN`, 64).
    pub text_min_seq_len: usize,
    /// Keep the model of the best epoch by this metric; none: the last epoch's.
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
            mvrc_prob: 0.15,
            mvrc_mask_prob: 0.9,
            text_per_pair: 1,
            text_seq_len: 64,
            text_min_seq_len: 64,
            selection: None,
        }
    }
}

impl PretrainConfig {
    /// Text-only sequences of `text_seq_len` tokens fit the model's positions with `[END]`.
    pub fn check_text_fits(&self, cfg: &VlBertConfig) -> Result<()> {
        ensure!(
            self.text_seq_len + 2 <= cfg.max_position_embeddings,
            "text_seq_len {} does not fit the model's {} positions with [END] after it",
            self.text_seq_len,
            cfg.max_position_embeddings
        );
        Ok(())
    }

    pub fn validate(&self) -> Result<()> {
        use crate::core::validate::*;
        at_least_one("epochs (--epochs)", self.epochs)?;
        at_least_one("batch_size (--batch-size)", self.batch_size)?;
        positive("lr (--lr)", self.lr)?;
        non_negative("weight_decay", self.weight_decay)?;
        non_negative("clip_grad_norm", self.clip_grad_norm)?;
        proportion("mlm_prob", self.mlm_prob)?;
        proportion("mvrc_prob", self.mvrc_prob)?;
        proportion("mvrc_mask_prob", self.mvrc_mask_prob)?;
        int_in("text_per_pair", self.text_per_pair, 0, 64)?;
        at_least_one("text_seq_len", self.text_seq_len)?;
        // Lines are joined until this many words: a bound keeps a typo from joining forever.
        int_in("text_min_seq_len", self.text_min_seq_len, 1, 4096)?;
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
    /// Where a word starts (a token not beginning with `##`).
    pub word_start: Vec<bool>,
    /// Index of its image's regions.
    pub image: usize,
}

/// Images (prepared regions and per-RoI class targets) and the pairs over them.
pub struct PairCorpus {
    pub images: Vec<PreparedRegions>,
    /// Per image, R x C targets of the masked-RoI head (row 0, the whole image, zeros).
    pub targets: Vec<Vec<f32>>,
    pub pairs: Vec<Pair>,
}

/// Word starts of token ids (WordPiece continuation pieces begin with `##`).
pub fn word_starts(tok: &TextTokenizer, ids: &[u32]) -> Vec<bool> {
    ids.iter()
        .map(|&i| !tok.id_to_token(i).is_some_and(|t| t.starts_with("##")))
        .collect()
}

/// A text-only corpus (the official `GeneralCorpus`): its non-empty lines as WordPiece ids
/// without `[CLS]`/`[SEP]`, with where each word starts.
pub struct TextCorpus {
    pub lines: Vec<(Vec<u32>, Vec<bool>)>,
}

impl TextCorpus {
    /// Read `path`, one text per line (blank lines skipped, as the official reader); a line
    /// that is not UTF-8 is an error naming it, and so is a corpus with no words.
    pub fn read(path: &std::path::Path, tok: &TextTokenizer) -> Result<Self> {
        use anyhow::Context;
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let mut texts = Vec::new();
        for (i, line) in bytes.split(|&b| b == b'\n').enumerate() {
            let text = std::str::from_utf8(line)
                .map_err(|e| anyhow::anyhow!("{}:{}: not UTF-8 ({e})", path.display(), i + 1))?;
            if !text.trim().is_empty() {
                texts.push(text.trim());
            }
        }
        let lines: Vec<(Vec<u32>, Vec<bool>)> = tok
            .encode_plain(&texts)?
            .into_iter()
            .filter(|ids| !ids.is_empty())
            .map(|ids| {
                let starts = word_starts(tok, &ids);
                (ids, starts)
            })
            .collect();
        ensure!(
            !lines.is_empty(),
            "{}: no text: a text corpus holds one text per line",
            path.display()
        );
        Ok(Self { lines })
    }
}

/// A text-only sequence with its masking drawn.
#[derive(Debug, Clone, PartialEq)]
pub struct MaskedText {
    pub input: Vec<u32>,
    /// (position, original token) to predict.
    pub mlm_targets: Vec<(usize, u32)>,
}

/// A pair with its masking drawn (and the text-only sequences that go beside it).
#[derive(Debug, Clone, PartialEq)]
pub struct MaskedPair {
    pub pair: usize,
    pub input: Vec<u32>,
    /// (position, original token) to predict.
    pub mlm_targets: Vec<(usize, u32)>,
    /// Per RoI: chosen for prediction, and masked.
    pub chosen: Vec<bool>,
    pub masked: Vec<bool>,
    pub texts: Vec<MaskedText>,
}

/// What masks are drawn from.
pub struct Masking {
    /// Whole-word masking of the text (`p` = mlm_prob, BERT's 80/10/10).
    pub words: ClozeMasker,
    pub mvrc_prob: f64,
    pub mvrc_mask_prob: f64,
}

impl Masking {
    pub fn draw<R: Rng>(&self, corpus: &PairCorpus, index: usize, rng: &mut R) -> MaskedPair {
        let p = &corpus.pairs[index];
        let m = self.words.mask_whole_words(&p.ids, &p.word_start, rng);
        let r = corpus.images[p.image].len();
        let mut chosen = vec![false; r];
        let mut masked = vec![false; r];
        for k in 1..r {
            if rng.random::<f64>() < self.mvrc_prob {
                chosen[k] = true;
                masked[k] = rng.random::<f64>() < self.mvrc_mask_prob;
            }
        }
        MaskedPair {
            pair: index,
            input: m.input,
            mlm_targets: m.targets,
            chosen,
            masked,
            texts: vec![],
        }
    }

    /// A text-only sequence as the official `GeneralCorpus.__getitem__`: line `start` and the
    /// lines after it (cyclically) until `min_words` words, whole-word masked, then cut to
    /// `seq_len` tokens.
    pub fn draw_text<R: Rng>(
        &self,
        corpus: &TextCorpus,
        start: usize,
        seq_len: usize,
        min_words: usize,
        rng: &mut R,
    ) -> MaskedText {
        let (mut ids, mut starts) = (Vec::new(), Vec::new());
        let mut words = 0;
        let mut k = start % corpus.lines.len();
        loop {
            let (i, w) = &corpus.lines[k];
            ids.extend_from_slice(i);
            starts.extend_from_slice(w);
            words += w.iter().filter(|&&x| x).count();
            k = (k + 1) % corpus.lines.len();
            if words >= min_words {
                break;
            }
        }
        let mut m = self.words.mask_whole_words(&ids, &starts, rng);
        m.input.truncate(seq_len);
        m.targets.retain(|&(p, _)| p < seq_len);
        MaskedText {
            input: m.input,
            mlm_targets: m.targets,
        }
    }
}

/// The two pretraining losses of masked pairs, each the mean over its predictions in `micro`,
/// and their counts: (MLM loss, predicted words, masked-RoI loss, predicted RoIs).
pub struct Losses {
    pub mlm: Option<Tensor<1>>,
    pub words: usize,
    /// The text-only sequences' masked-LM loss and predicted words.
    pub mlm_aux: Option<Tensor<1>>,
    pub aux_words: usize,
    pub mvrc: Option<Tensor<1>>,
    pub rois: usize,
    /// Argmax predictions against targets, for accuracies: (word hits, RoI hits).
    pub hits: Option<(usize, usize)>,
}

/// Forward masked pairs and compute their losses (and, when `count_hits`, accuracies).
pub fn pretrain_losses(
    model: &VlBert,
    cfg: &VlBertConfig,
    corpus: &PairCorpus,
    items: &[MaskedPair],
    count_hits: bool,
    device: &Device,
) -> Losses {
    let regions: Vec<PreparedRegions> = items
        .iter()
        .map(|it| {
            let mut r = corpus.images[corpus.pairs[it.pair].image].clone();
            if it.masked.iter().any(|&m| m) {
                mask_whole_image_feature(&mut r, &it.masked);
            }
            r
        })
        .collect();
    let texts: Vec<&MaskedText> = items.iter().flat_map(|it| &it.texts).collect();
    let longest = items
        .iter()
        .map(|it| it.input.len())
        .chain(texts.iter().map(|x| x.input.len()))
        .max()
        .unwrap_or(0);
    let zeros = vec![0u32; longest];
    let no_regions = PreparedRegions::none();
    let mut examples: Vec<Example> = items
        .iter()
        .zip(&regions)
        .map(|(it, r)| Example {
            ids: &it.input,
            type_ids: &zeros[..it.input.len()],
            regions: r,
            masked: &it.masked,
        })
        .collect();
    examples.extend(texts.iter().map(|x| Example {
        ids: &x.input,
        type_ids: &zeros[..x.input.len()],
        regions: &no_regions,
        masked: &[],
    }));
    let b = batch(&examples, cfg);
    let out = model.forward(&b, device);
    let h = model.hidden_size();
    let (t, r) = (b.text_len, b.regions);
    let mut pos = Vec::new();
    let mut words = Vec::new();
    let mut roi_rows = Vec::new();
    let mut roi_targets = Vec::new();
    for (i, it) in items.iter().enumerate() {
        for &(p, w) in &it.mlm_targets {
            pos.push((i * t + p) as i64);
            words.push(w);
        }
        let image = corpus.pairs[it.pair].image;
        let tg = &corpus.targets[image];
        let c = tg.len() / corpus.images[image].len();
        for (k, &ch) in it.chosen.iter().enumerate() {
            if ch {
                roi_rows.push((i * r + k) as i64);
                roi_targets.extend_from_slice(&tg[k * c..(k + 1) * c]);
            }
        }
    }
    let argmax_hits = |logits: Tensor<2>, want: &dyn Fn(usize) -> usize| -> usize {
        let pred: Vec<i64> = logits
            .argmax(1)
            .into_data()
            .convert::<i64>()
            .try_to_vec::<i64>()
            .unwrap_or_default();
        pred.iter()
            .enumerate()
            .filter(|(i, &p)| p as usize == want(*i))
            .count()
    };
    let mut aux_pos = Vec::new();
    let mut aux_words = Vec::new();
    for (j, x) in texts.iter().enumerate() {
        for &(p, w) in &x.mlm_targets {
            aux_pos.push(((items.len() + j) * t + p) as i64);
            aux_words.push(w);
        }
    }
    let mlm_aux = (!aux_words.is_empty())
        .then(|| {
            let n = aux_pos.len();
            let idx: Tensor<1, Int> = Tensor::from_data(TensorData::new(aux_pos, [n]), device);
            let rows = out.text.clone().reshape([b.batch * t, h]).select(0, idx);
            model.mlm_logits(rows).map(|l| cross_entropy(l, &aux_words))
        })
        .flatten();
    let mut hits = (0, 0);
    let mlm = (!words.is_empty())
        .then(|| {
            let n = pos.len();
            let idx: Tensor<1, Int> = Tensor::from_data(TensorData::new(pos, [n]), device);
            let rows = out.text.clone().reshape([b.batch * t, h]).select(0, idx);
            model.mlm_logits(rows).map(|l| {
                if count_hits {
                    hits.0 = argmax_hits(l.clone(), &|i| words[i] as usize);
                }
                cross_entropy(l, &words)
            })
        })
        .flatten();
    let c = cfg.visual_region_classes;
    let mvrc = (!roi_rows.is_empty())
        .then(|| {
            let n = roi_rows.len();
            let idx: Tensor<1, Int> = Tensor::from_data(TensorData::new(roi_rows, [n]), device);
            let rows = out.objects.clone().reshape([b.batch * r, h]).select(0, idx);
            model.mvrc_logits(rows).map(|l| {
                if count_hits {
                    hits.1 = argmax_hits(l.clone(), &|i| {
                        let row = &roi_targets[i * c..(i + 1) * c];
                        (0..c).fold(0, |best, j| if row[j] > row[best] { j } else { best })
                    });
                }
                soft_cross_entropy(l, &roi_targets)
            })
        })
        .flatten();
    Losses {
        mlm,
        words: words.len(),
        mlm_aux,
        aux_words: aux_words.len(),
        mvrc,
        rois: roi_targets.len() / c.max(1),
        hits: count_hits.then_some(hits),
    }
}

/// Held-out masked-word and masked-RoI accuracy and losses, with masks drawn from the seed.
pub fn evaluate_pretraining(
    model: &VlBert,
    cfg: &VlBertConfig,
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
    let (mut wl, mut wn, mut wh, mut rl, mut rn, mut rh) =
        (0.0, 0usize, 0usize, 0.0, 0usize, 0usize);
    for chunk in items.chunks(batch_size.max(1)) {
        let l = pretrain_losses(model, cfg, corpus, chunk, true, device);
        let (h0, h1) = l.hits.unwrap_or((0, 0));
        if let Some(x) = l.mlm {
            wl += x.into_scalar::<f32>() as f64 * l.words as f64;
        }
        if let Some(x) = l.mvrc {
            rl += x.into_scalar::<f32>() as f64 * l.rois as f64;
        }
        wn += l.words;
        rn += l.rois;
        wh += h0;
        rh += h1;
    }
    let ratio = |a: f64, n: usize| if n == 0 { f64::NAN } else { a / n as f64 };
    vec![
        ("valid_word_accuracy".into(), ratio(wh as f64, wn)),
        ("valid_roi_accuracy".into(), ratio(rh as f64, rn)),
        ("valid_mlm_loss".into(), ratio(wl, wn)),
        ("valid_mvrc_loss".into(), ratio(rl, rn)),
    ]
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
        mvrc_prob: cfg.mvrc_prob,
        mvrc_mask_prob: cfg.mvrc_mask_prob,
    })
}

/// Pretrain `model` on `train`, measuring on `valid` after every epoch; the run directory ends
/// as a model directory.
#[allow(clippy::too_many_arguments)]
pub fn pretrain(
    model: VlBert,
    cfg: &VlBertConfig,
    tok: &TextTokenizer,
    train: &PairCorpus,
    texts: Option<&TextCorpus>,
    valid: &PairCorpus,
    train_cfg: &PretrainConfig,
    run: &RunDir,
    device: &Device,
    opts: &trainer::RunOptions,
) -> Result<trainer::TrainOutcome> {
    ensure!(!train.pairs.is_empty(), "no training pairs");
    train_cfg.validate()?;
    let texts = texts.filter(|_| train_cfg.text_per_pair > 0);
    ensure!(
        texts.is_none() || model.aux_text_visual_embedding.is_some(),
        "text-only sequences need the multitask network (WITH_TEXT_ONLY)"
    );
    if texts.is_some() {
        train_cfg.check_text_fits(cfg)?;
    }
    let settings = LoopSettings::standard(
        "tessera-vlbert-pretrain",
        "pretrain.toml",
        train_cfg,
        (train_cfg.seed, train_cfg.epochs, train_cfg.micro_batch),
        (train_cfg.lr, train_cfg.warmup_steps),
        (train_cfg.weight_decay, train_cfg.clip_grad_norm),
        train_cfg.selection.clone(),
        official_renames(),
        STREAM_DROPOUT,
    )?;
    let c = train_cfg;
    let masking = masking(tok, train_cfg)?;
    let ad = device.clone().autodiff();
    let task = DrawnTask {
        examples: train.pairs.len(),
        batch_size: c.batch_size,
        seed: c.seed,
        shuffle_stream: STREAM_SHUFFLE,
        draw_stream: STREAM_MASK,
        draw: |i: usize, rng: &mut StdRng| {
            let mut m = masking.draw(train, i, rng);
            if let Some(corpus) = texts {
                m.texts = (0..c.text_per_pair)
                    .map(|_| {
                        let start = rng.random_range(0..corpus.lines.len());
                        masking.draw_text(corpus, start, c.text_seq_len, c.text_min_seq_len, rng)
                    })
                    .collect();
            }
            m
        },
        counts: |m: &MaskedPair| {
            vec![
                m.mlm_targets.len(),
                m.chosen.iter().filter(|&&c| c).count(),
                m.texts.iter().map(|x| x.mlm_targets.len()).sum(),
            ]
        },
        loss: |model: &VlBert, part: &[MaskedPair], counts: &[usize]| {
            let l = pretrain_losses(model, cfg, train, part, false, &ad);
            trainer::weighted_batch_means(
                vec![
                    (l.mlm, l.words, 1.0),
                    (l.mvrc, l.rois, 1.0),
                    (l.mlm_aux, l.aux_words, 1.0),
                ],
                counts,
                &ad,
            )
        },
        evaluate: |model: &VlBert| {
            if valid.pairs.is_empty() {
                return Ok(vec![]);
            }
            Ok(evaluate_pretraining(
                model,
                cfg,
                valid,
                &masking,
                c.seed,
                c.batch_size,
                device,
            ))
        },
        save: |model: &VlBert, run: &RunDir| super::save_model_dir(model, cfg, tok, &run.path),
        model: PhantomData,
    };
    trainer::train(&task, model, &settings, run, device, opts)
}

// ---------------------------------------------------------------------------------------------
// VQA fine-tuning (the official `ResNetVLBERT` of vqa/modules, CLASSIFIER_TYPE mlm).

/// One question about an image: `[CLS] question [SEP] [MASK] [SEP]` (segments 0 then 1), the
/// answer slot at `answer_position`, the soft score per answer of the vocabulary (one answer
/// per question in the corpora here: score 1), or none when the answer is outside it.
#[derive(Debug, Clone, PartialEq)]
pub struct Question {
    pub ids: Vec<u32>,
    pub type_ids: Vec<u32>,
    pub answer_position: usize,
    pub image: usize,
    pub answer: Option<usize>,
}

/// Images and questions of a VQA corpus.
pub struct QaCorpus {
    pub images: Vec<PreparedRegions>,
    pub questions: Vec<Question>,
}

/// `[CLS] q [SEP]` -> `[CLS] q [SEP] [MASK] [SEP]` with the answer part in segment 1.
pub fn question_input(encoded: &[u32], mask_id: u32, sep_id: u32) -> (Vec<u32>, Vec<u32>, usize) {
    let mut ids = encoded.to_vec();
    let mut types = vec![0; ids.len()];
    ids.push(mask_id);
    ids.push(sep_id);
    types.extend([1, 1]);
    (ids, types, encoded.len())
}

/// An image with no visual content: every feature and box zero (the question-only baseline,
/// `NETWORK.BLIND` in the official configs, keeps the network and its inputs' shapes).
pub fn blind(p: &PreparedRegions) -> PreparedRegions {
    let mut p = p.clone();
    p.features.iter_mut().for_each(|x| *x = 0.0);
    p.boxes.iter_mut().for_each(|b| *b = [0.0; 4]);
    p
}

/// The fine-tuning settings of VQA and grounding (shared with ViLBERT's tasks).
pub use crate::core::trainer::FinetuneConfig as VqaConfig;

/// Answer scores [B, A] of questions (their images blinded when `blind`).
pub fn vqa_logits(
    model: &VlBert,
    cfg: &VlBertConfig,
    corpus: &QaCorpus,
    questions: &[&Question],
    blind_images: bool,
    device: &Device,
) -> Result<Tensor<2>> {
    let head = model
        .final_mlp
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("the model has no VQA head (ANSWER_VOCAB_SIZE 0)"))?;
    let regions: Vec<PreparedRegions> = questions
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
    let examples: Vec<Example> = questions
        .iter()
        .zip(&regions)
        .map(|(q, r)| Example {
            ids: &q.ids,
            type_ids: &q.type_ids,
            regions: r,
            masked: &[],
        })
        .collect();
    let b = batch(&examples, cfg);
    let out = model.forward(&b, device);
    let h = model.hidden_size();
    let rows: Vec<i64> = questions
        .iter()
        .enumerate()
        .map(|(i, q)| (i * b.text_len + q.answer_position) as i64)
        .collect();
    let n = rows.len();
    let idx: Tensor<1, Int> = Tensor::from_data(TensorData::new(rows, [n]), device);
    let hm = out.text.reshape([b.batch * b.text_len, h]).select(0, idx);
    Ok(head.forward(hm))
}

/// Accuracy of the answer with the highest score (questions whose answer is outside the
/// vocabulary count as wrong).
pub fn vqa_accuracy(
    model: &VlBert,
    cfg: &VlBertConfig,
    corpus: &QaCorpus,
    blind_images: bool,
    batch_size: usize,
    device: &Device,
) -> Result<f64> {
    let mut hits = 0usize;
    let qs: Vec<&Question> = corpus.questions.iter().collect();
    for chunk in qs.chunks(batch_size.max(1)) {
        let logits = vqa_logits(model, cfg, corpus, chunk, blind_images, device)?;
        let pred: Vec<i64> = logits
            .argmax(1)
            .into_data()
            .convert::<i64>()
            .try_to_vec::<i64>()
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        hits += chunk
            .iter()
            .zip(&pred)
            .filter(|(q, &p)| q.answer == Some(p as usize))
            .count();
    }
    Ok(hits as f64 / qs.len().max(1) as f64)
}

/// Fine-tune `model` (with its VQA head) on `train`, measuring answer accuracy on `valid`.
#[allow(clippy::too_many_arguments)]
pub fn train_vqa(
    model: VlBert,
    cfg: &VlBertConfig,
    tok: &TextTokenizer,
    answers: &[String],
    train: &QaCorpus,
    valid: &QaCorpus,
    train_cfg: &VqaConfig,
    run: &RunDir,
    device: &Device,
    opts: &trainer::RunOptions,
) -> Result<trainer::TrainOutcome> {
    ensure!(!train.questions.is_empty(), "no training questions");
    ensure!(model.final_mlp.is_some(), "the model has no VQA head");
    train_cfg.validate()?;
    let settings = train_cfg.loop_settings(
        "tessera-vlbert-vqa",
        "vqa.toml",
        official_renames(),
        STREAM_DROPOUT,
    )?;
    let c = train_cfg;
    let ad = device.clone().autodiff();
    let task = IndexedTask {
        examples: train.questions.len(),
        batch_size: c.batch_size,
        seed: c.seed,
        shuffle_stream: STREAM_SHUFFLE,
        loss: |model: &VlBert, part: &[usize], _: MicroStep| {
            let qs: Vec<&Question> = part.iter().map(|&i| &train.questions[i]).collect();
            let logits = vqa_logits(model, cfg, train, &qs, c.blind, &ad)
                .expect("the VQA model has its head");
            let answers: Vec<Option<usize>> = qs.iter().map(|q| q.answer).collect();
            crate::core::losses::multi_label_bce(logits, &answers)
        },
        evaluate: |model: &VlBert| {
            if valid.questions.is_empty() {
                return Ok(vec![]);
            }
            let acc = vqa_accuracy(model, cfg, valid, c.blind, c.batch_size, device)?;
            Ok(vec![("valid_accuracy".to_string(), acc)])
        },
        save: |model: &VlBert, run: &RunDir| {
            super::save_model_dir(model, cfg, tok, &run.path)?;
            run.write_atomic("answers.txt", (answers.join("\n") + "\n").as_bytes())
        },
        model: PhantomData,
    };
    trainer::train(&task, model, &settings, run, device, opts)
}

// ---------------------------------------------------------------------------------------------
// Grounding (the official RefCOCO+ network): a score per RoI for a referring expression.

/// A referring expression: `[CLS] expression [SEP]`, its image, and the IoU of each RoI (the
/// whole image first) with the referred object's box.
#[derive(Debug, Clone, PartialEq)]
pub struct Expression {
    pub ids: Vec<u32>,
    pub image: usize,
    pub iou: Vec<f32>,
}

pub struct GroundCorpus {
    pub images: Vec<PreparedRegions>,
    pub expressions: Vec<Expression>,
}

pub use crate::core::metrics::pixel_box_iou as iou;

/// RoI scores [B, R] of expressions (missing RoIs: -1e4).
pub fn ground_logits(
    model: &VlBert,
    cfg: &VlBertConfig,
    corpus: &GroundCorpus,
    exprs: &[&Expression],
    device: &Device,
) -> Result<Tensor<2>> {
    let head = model.grounding.as_ref().ok_or_else(|| {
        anyhow::anyhow!("the model has no grounding head (WITH_GROUNDING_HEAD false)")
    })?;
    let types: Vec<Vec<u32>> = exprs.iter().map(|e| vec![0; e.ids.len()]).collect();
    let examples: Vec<Example> = exprs
        .iter()
        .zip(&types)
        .map(|(e, t)| Example {
            ids: &e.ids,
            type_ids: t,
            regions: &corpus.images[e.image],
            masked: &[],
        })
        .collect();
    let b = batch(&examples, cfg);
    let out = model.forward(&b, device);
    let (n, r, h) = (b.batch, b.regions, model.hidden_size());
    let scores = head
        .forward(out.objects.reshape([n * r, h]))
        .reshape([n, r]);
    let pad: Vec<f32> = b
        .region_counts
        .iter()
        .flat_map(|&c| (0..r).map(move |k| if k < c { 0.0 } else { -1e4 }))
        .collect();
    let pad: Tensor<2> = Tensor::from_data(TensorData::new(pad, [n, r]), device);
    Ok(scores + pad)
}

/// Binary cross-entropy over the RoIs of each expression against IoU > 0.5 (the official
/// label), mean over all RoIs of the batch.
pub fn ground_loss(logits: Tensor<2>, exprs: &[&Expression]) -> Tensor<1> {
    let [n, r] = logits.dims();
    let mut y = vec![0f32; n * r];
    let mut valid = vec![0f32; n * r];
    for (i, e) in exprs.iter().enumerate() {
        for (k, &v) in e.iou.iter().enumerate() {
            y[i * r + k] = if v > 0.5 { 1.0 } else { 0.0 };
            valid[i * r + k] = 1.0;
        }
    }
    let count: f32 = valid.iter().sum();
    let device = logits.device();
    let y: Tensor<2> = Tensor::from_data(TensorData::new(y, [n, r]), &device);
    let valid: Tensor<2> = Tensor::from_data(TensorData::new(valid, [n, r]), &device);
    let softplus =
        logits.clone().clamp_min(0.0) + logits.clone().abs().neg().exp().add_scalar(1.0).log();
    ((softplus - y * logits) * valid)
        .sum()
        .reshape([1])
        .div_scalar(count.max(1.0) as f64)
}

/// Accuracy at IoU >= 0.5 of the best-scored RoI, and the random-RoI baseline (the mean share
/// of RoIs at IoU >= 0.5).
pub fn ground_accuracy(
    model: &VlBert,
    cfg: &VlBertConfig,
    corpus: &GroundCorpus,
    batch_size: usize,
    device: &Device,
) -> Result<(f64, f64)> {
    let exprs: Vec<&Expression> = corpus.expressions.iter().collect();
    let (mut hits, mut random) = (0usize, 0f64);
    for chunk in exprs.chunks(batch_size.max(1)) {
        let logits = ground_logits(model, cfg, corpus, chunk, device)?;
        let pred: Vec<i64> = logits
            .argmax(1)
            .into_data()
            .convert::<i64>()
            .try_to_vec::<i64>()
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        for (e, &p) in chunk.iter().zip(&pred) {
            if e.iou.get(p as usize).is_some_and(|&v| v >= 0.5) {
                hits += 1;
            }
            random += e.iou.iter().filter(|&&v| v >= 0.5).count() as f64 / e.iou.len() as f64;
        }
    }
    let n = exprs.len().max(1) as f64;
    Ok((hits as f64 / n, random / n))
}

/// Fine-tune `model` (with its grounding head) on referring expressions; the training settings
/// are VQA's (`blind` unused).
#[allow(clippy::too_many_arguments)]
pub fn train_grounding(
    model: VlBert,
    cfg: &VlBertConfig,
    tok: &TextTokenizer,
    train: &GroundCorpus,
    valid: &GroundCorpus,
    train_cfg: &VqaConfig,
    run: &RunDir,
    device: &Device,
    opts: &trainer::RunOptions,
) -> Result<trainer::TrainOutcome> {
    ensure!(!train.expressions.is_empty(), "no referring expressions");
    ensure!(model.grounding.is_some(), "the model has no grounding head");
    train_cfg.validate()?;
    let settings = train_cfg.loop_settings(
        "tessera-vlbert-ground",
        "ground.toml",
        official_renames(),
        STREAM_DROPOUT,
    )?;
    let c = train_cfg;
    let ad = device.clone().autodiff();
    let task = IndexedTask {
        examples: train.expressions.len(),
        batch_size: c.batch_size,
        seed: c.seed,
        shuffle_stream: STREAM_SHUFFLE,
        loss: |model: &VlBert, part: &[usize], _: MicroStep| {
            let exprs: Vec<&Expression> = part.iter().map(|&i| &train.expressions[i]).collect();
            let logits = ground_logits(model, cfg, train, &exprs, &ad)
                .expect("the grounding model has its head");
            ground_loss(logits, &exprs)
        },
        evaluate: |model: &VlBert| {
            if valid.expressions.is_empty() {
                return Ok(vec![]);
            }
            let (acc, random) = ground_accuracy(model, cfg, valid, c.batch_size, device)?;
            Ok(vec![
                ("valid_accuracy".to_string(), acc),
                ("valid_random_box".to_string(), random),
            ])
        },
        save: |model: &VlBert, run: &RunDir| super::save_model_dir(model, cfg, tok, &run.path),
        model: PhantomData,
    };
    trainer::train(&task, model, &settings, run, device, opts)
}
