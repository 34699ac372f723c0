//! Video captioning over clip features (VideoBERT §4.4, MODELS.md §6): a transformer
//! encoder-decoder in the manner of Zhou et al. (2018), the captioner the paper feeds VideoBERT's
//! features into, trained with teacher forcing on the step descriptions of a YouCook2-style
//! annotation file and decoded greedily or by beam search.
//!
//! - **Input**: the clips of a segment (`video features` or `videobert features` files: any
//!   feature size), those whose middle lies inside it, else those that overlap it, else the
//!   nearest one; more than `max_clips` are subsampled evenly. `Linear -> LayerNorm` + learned
//!   clip positions, then post-norm encoder layers from `core`.
//! - **Output**: a word vocabulary of the training captions (COCO's PTB tokenization, the words
//!   the metrics score; `[PAD] [BOS] [EOS] [UNK]` first), learned positions, post-norm decoder
//!   layers from `core` (masked self-attention, attention over the clips, feed-forward), a
//!   linear layer to the words.
//! - **Choices the paper leaves open** (it cites the captioner without giving its size): the
//!   sizes are options (`--hidden`, `--layers`, `--heads`), defaults small (2 + 2 layers of 128);
//!   captions longer than `max_words` are cut for training (the references stay whole); beam
//!   search ranks finished captions by their summed log-probability divided by
//!   `length^length_penalty` (0: the plain sum).
//! - **Baselines**: the same captioner on raw clip features, and with the features zeroed
//!   (`blind`: the language prior of the step descriptions).

use crate::core::attention::{normal_init, normal_linear};
use crate::core::caption_metrics::tokenize_caption;
use crate::core::decoder::{Decoder, DecoderConfig};
use crate::core::dropout::Dropout;
use crate::core::encoder::{Encoder, EncoderConfig, NormPlacement};
use crate::core::fused::cross_entropy_smoothed;
use crate::core::fused_ops::linear;
use crate::core::norm::LayerNorm;
use crate::corpora::narration::AnnotatedVideo;
use crate::video::features::ClipFeatures;
use anyhow::{bail, ensure, Context, Result};
use burn::module::Module;
use burn::nn::{Embedding, EmbeddingConfig, Linear};
use burn::tensor::activation::log_softmax;
use burn::tensor::{Bool, Device, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

pub const PAD: u32 = 0;
pub const BOS: u32 = 1;
pub const EOS: u32 = 2;
pub const UNK: u32 = 3;
const SPECIALS: [&str; 4] = ["[PAD]", "[BOS]", "[EOS]", "[UNK]"];

/// The captioner's shape (`captioner.json` of a model directory).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CaptionerConfig {
    pub feature_size: usize,
    pub vocab_size: usize,
    pub hidden: usize,
    pub heads: usize,
    pub intermediate: usize,
    pub encoder_layers: usize,
    pub decoder_layers: usize,
    pub dropout: f64,
    /// Most clips the encoder reads (learned positions).
    pub max_clips: usize,
    /// Most words of a caption (without `[BOS]`/`[EOS]`).
    pub max_words: usize,
    pub layer_norm_eps: f64,
    pub init_std: f64,
    /// The language-only baseline: trained (and so decoded) with the features zeroed.
    #[serde(default)]
    pub blind: bool,
}

impl CaptionerConfig {
    pub fn new(feature_size: usize, vocab_size: usize) -> Self {
        Self {
            feature_size,
            vocab_size,
            hidden: 128,
            heads: 4,
            intermediate: 512,
            encoder_layers: 2,
            decoder_layers: 2,
            dropout: 0.1,
            max_clips: 32,
            max_words: 20,
            layer_norm_eps: 1e-12,
            init_std: 0.02,
            blind: false,
        }
    }

    pub fn validate(&self) -> Result<()> {
        use crate::core::validate::*;
        at_least_one("feature_size", self.feature_size)?;
        ensure!(
            self.vocab_size > SPECIALS.len(),
            "vocab_size {}: the vocabulary holds no words",
            self.vocab_size
        );
        at_least_one("hidden (--hidden)", self.hidden)?;
        at_least_one("heads (--heads)", self.heads)?;
        // Sizes a CPU can hold: the layers' weights are allocated before anything else runs.
        ensure!(
            self.hidden <= 4096 && self.intermediate <= 16384,
            "hidden {} / intermediate {}: at most 4096 / 16384",
            self.hidden,
            self.intermediate
        );
        ensure!(
            self.hidden.is_multiple_of(self.heads),
            "hidden (--hidden) {} is not divisible by heads (--heads) {}",
            self.hidden,
            self.heads
        );
        at_least_one("intermediate", self.intermediate)?;
        at_least_one("encoder_layers (--layers)", self.encoder_layers)?;
        at_least_one("decoder_layers (--layers)", self.decoder_layers)?;
        probability_below_one("dropout", self.dropout)?;
        at_least_one("max_clips (--max-clips)", self.max_clips)?;
        at_least_one("max_words (--max-words)", self.max_words)?;
        ensure!(
            self.encoder_layers <= 48 && self.decoder_layers <= 48,
            "at most 48 layers"
        );
        ensure!(
            self.max_clips <= 4096 && self.max_words <= 512,
            "max_clips {} / max_words {}: at most 4096 / 512",
            self.max_clips,
            self.max_words
        );
        Ok(())
    }

    pub fn from_json_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let cfg: Self = serde_json::from_str(&text)
            .with_context(|| format!("{}: not a captioner config", path.display()))?;
        cfg.validate()
            .with_context(|| format!("{}", path.display()))?;
        Ok(cfg)
    }
}

// ---------------------------------------------------------------------------------------------
// Vocabulary

/// Words of the training captions after COCO's tokenization, the specials first.
#[derive(Debug, Clone, PartialEq)]
pub struct WordVocab {
    pub words: Vec<String>,
    index: HashMap<String, u32>,
}

impl WordVocab {
    pub fn from_words(words: Vec<String>) -> Self {
        let index = words
            .iter()
            .enumerate()
            .map(|(i, w)| (w.clone(), i as u32))
            .collect();
        Self { words, index }
    }

    /// The specials and every word seen at least `min_count` times, most frequent first (ties
    /// alphabetical).
    pub fn build<'a>(captions: impl Iterator<Item = &'a str>, min_count: usize) -> Self {
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for c in captions {
            for w in tokenize_caption(c).split_whitespace() {
                *counts.entry(w.to_string()).or_default() += 1;
            }
        }
        let mut kept: Vec<(String, usize)> = counts
            .into_iter()
            .filter(|(_, n)| *n >= min_count.max(1))
            .collect();
        kept.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let words = SPECIALS
            .iter()
            .map(|s| s.to_string())
            .chain(kept.into_iter().map(|(w, _)| w))
            .collect();
        Self::from_words(words)
    }

    /// `vocab.txt`: one word a line, the specials first.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let words: Vec<String> = text.lines().map(str::to_string).collect();
        for (i, s) in SPECIALS.iter().enumerate() {
            if words.get(i).map(String::as_str) != Some(*s) {
                bail!(crate::core::error::InputError::new(
                    path,
                    i + 1,
                    None,
                    format!("expected `{s}` (the captioner's specials come first)")
                ));
            }
        }
        Ok(Self::from_words(words))
    }

    pub fn to_text(&self) -> String {
        self.words.join("\n") + "\n"
    }

    pub fn len(&self) -> usize {
        self.words.len()
    }

    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    /// The ids of a raw caption's words (unknown words `[UNK]`), at most `max` of them.
    pub fn encode(&self, caption: &str, max: usize) -> Vec<u32> {
        tokenize_caption(caption)
            .split_whitespace()
            .take(max)
            .map(|w| *self.index.get(w).unwrap_or(&UNK))
            .collect()
    }

    /// Words of ids up to the first `[EOS]`, specials dropped.
    pub fn decode(&self, ids: &[u32]) -> String {
        ids.iter()
            .take_while(|&&i| i != EOS)
            .filter(|&&i| i as usize >= SPECIALS.len())
            .filter_map(|&i| self.words.get(i as usize).map(String::as_str))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

// ---------------------------------------------------------------------------------------------
// Data

/// One segment: its clips' features and its description.
#[derive(Debug, Clone, PartialEq)]
pub struct CaptionExample {
    pub video: String,
    pub start: f64,
    pub end: f64,
    /// `[clips, feature_size]`, row-major.
    pub features: Vec<f32>,
    pub clips: usize,
    /// The description as written (the reference).
    pub reference: String,
    /// Its word ids, cut at `max_words`.
    pub words: Vec<u32>,
}

/// The clips a segment covers: middles inside `[start, end)`, else any overlap, else the clip
/// nearest the segment's middle; at most `max` of them, evenly spaced.
pub fn segment_clips(times: &[[f32; 2]], start: f64, end: f64, max: usize) -> Vec<usize> {
    let mid = |t: &[f32; 2]| 0.5 * (t[0] as f64 + t[1] as f64);
    let mut picked: Vec<usize> = (0..times.len())
        .filter(|&i| (start..end).contains(&mid(&times[i])))
        .collect();
    if picked.is_empty() {
        picked = (0..times.len())
            .filter(|&i| (times[i][0] as f64) < end && (times[i][1] as f64) > start)
            .collect();
    }
    if picked.is_empty() && !times.is_empty() {
        let centre = 0.5 * (start + end);
        let nearest = (0..times.len())
            .min_by(|&a, &b| {
                (mid(&times[a]) - centre)
                    .abs()
                    .total_cmp(&(mid(&times[b]) - centre).abs())
            })
            .expect("not empty");
        picked = vec![nearest];
    }
    if picked.len() > max {
        let n = picked.len();
        picked = (0..max).map(|k| picked[k * n / max]).collect();
    }
    picked
}

/// The segments of `videos` with the features of their clips. Every annotated video needs a
/// feature file with at least one clip and the feature size the model reads.
pub fn examples(
    videos: &[AnnotatedVideo],
    features: &[ClipFeatures],
    vocab: &WordVocab,
    cfg: &CaptionerConfig,
    source: &Path,
) -> Result<Vec<CaptionExample>> {
    let by_id: HashMap<&str, &ClipFeatures> =
        features.iter().map(|f| (f.video.as_str(), f)).collect();
    let mut out = Vec::new();
    for v in videos {
        let Some(f) = by_id.get(v.id.as_str()) else {
            bail!(
                "video `{}` of the annotations has no features in {}",
                v.id,
                source.display()
            );
        };
        if f.is_empty() {
            bail!(
                "video `{}` has no clips in {} (no words to caption from)",
                v.id,
                source.display()
            );
        }
        if f.dim != cfg.feature_size {
            bail!(
                "video `{}`: features of {} values in {}, the captioner reads {} (another backbone or model?)",
                v.id,
                f.dim,
                source.display(),
                cfg.feature_size
            );
        }
        for s in &v.segments {
            let clips = segment_clips(&f.times, s.start, s.end, cfg.max_clips);
            let features = clips.iter().flat_map(|&i| f.row(i).to_vec()).collect();
            out.push(CaptionExample {
                video: v.id.clone(),
                start: s.start,
                end: s.end,
                features,
                clips: clips.len(),
                reference: s.text.clone(),
                words: vocab.encode(&s.text, cfg.max_words),
            });
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Model

#[derive(Module, Debug)]
pub struct Captioner {
    pub feature_projection: Linear,
    pub feature_norm: LayerNorm,
    pub clip_positions: Embedding,
    pub encoder: Encoder,
    pub word_embeddings: Embedding,
    pub word_positions: Embedding,
    pub word_norm: LayerNorm,
    pub decoder: Decoder,
    pub dropout: Dropout,
    pub word_logits: Linear,
}

/// Encoded clips of a batch.
#[derive(Clone)]
pub struct Memory {
    pub states: Tensor<3>,
    pub padding: Tensor<2, Bool>,
}

impl Captioner {
    pub fn new(cfg: &CaptionerConfig, device: &Device) -> Self {
        let h = cfg.hidden;
        let lin = |i: usize, o: usize| normal_linear(i, o, cfg.init_std, device);
        let emb = |n: usize| {
            EmbeddingConfig::new(n, h)
                .with_initializer(normal_init(cfg.init_std))
                .init(device)
        };
        let ln = || LayerNorm::new(h, cfg.layer_norm_eps, device);
        Self {
            feature_projection: lin(cfg.feature_size, h),
            feature_norm: ln(),
            clip_positions: emb(cfg.max_clips),
            encoder: EncoderConfig {
                hidden: h,
                heads: cfg.heads,
                intermediate: cfg.intermediate,
                layers: cfg.encoder_layers,
                hidden_dropout: cfg.dropout,
                attention_dropout: cfg.dropout,
                norm: NormPlacement::Post,
                layer_norm_eps: cfg.layer_norm_eps,
                init_std: cfg.init_std,
                layer_scale: None,
            }
            .init(device),
            word_embeddings: emb(cfg.vocab_size),
            word_positions: emb(cfg.max_words + 1),
            word_norm: ln(),
            decoder: DecoderConfig {
                hidden: h,
                heads: cfg.heads,
                intermediate: cfg.intermediate,
                layers: cfg.decoder_layers,
                hidden_dropout: cfg.dropout,
                attention_dropout: cfg.dropout,
                layer_norm_eps: cfg.layer_norm_eps,
                init_std: cfg.init_std,
            }
            .init(device),
            dropout: Dropout::new(cfg.dropout),
            word_logits: lin(h, cfg.vocab_size),
        }
    }

    fn positions(table: &Embedding, l: usize) -> Tensor<3> {
        let w = table.weight.val();
        let d = w.dims()[1];
        assert!(
            l <= w.dims()[0],
            "{l} positions, the table has {}",
            w.dims()[0]
        );
        w.slice([0..l, 0..d]).unsqueeze::<3>()
    }

    /// Encode the clips of `examples` (features zeroed when `blind`).
    pub fn encode(&self, examples: &[&CaptionExample], blind: bool, device: &Device) -> Memory {
        let b = examples.len();
        let l = examples.iter().map(|e| e.clips).max().unwrap_or(1).max(1);
        let f = self.feature_projection.weight.dims()[0];
        let mut x = vec![0f32; b * l * f];
        let mut pad = vec![true; b * l];
        for (i, e) in examples.iter().enumerate() {
            if !blind {
                x[i * l * f..i * l * f + e.features.len()].copy_from_slice(&e.features);
            }
            pad[i * l..i * l + e.clips.max(1)].fill(false);
        }
        let x = Tensor::<3>::from_data(TensorData::new(x, [b, l, f]), device);
        let padding = Tensor::<2, Bool>::from_data(TensorData::new(pad, [b, l]), device);
        let h = self
            .feature_norm
            .forward(linear(&self.feature_projection, x))
            + Self::positions(&self.clip_positions, l);
        let states = self
            .encoder
            .forward(self.dropout.forward(h), Some(padding.clone()));
        Memory { states, padding }
    }

    /// Hidden states [B, L, H] of the decoder over `tokens` [B, L] (`[BOS]` first; `PAD` after
    /// the end).
    pub fn decode(&self, memory: &Memory, tokens: Tensor<2, Int>) -> Tensor<3> {
        let l = tokens.dims()[1];
        let padding = tokens.clone().equal_elem(PAD as i64);
        let x = self.word_embeddings.forward(tokens) + Self::positions(&self.word_positions, l);
        let x = self.dropout.forward(self.word_norm.forward(x));
        self.decoder.forward(
            x,
            Some(padding),
            memory.states.clone(),
            Some(memory.padding.clone()),
        )
    }

    pub fn logits(&self, hidden: Tensor<2>) -> Tensor<2> {
        linear(&self.word_logits, hidden)
    }
}

/// Mean cross-entropy (with `smoothing`) of the next word at every position of the captions of
/// `examples` (teacher forcing: `[BOS] w1..wn` predicts `w1..wn [EOS]`).
pub fn caption_loss(
    model: &Captioner,
    examples: &[&CaptionExample],
    blind: bool,
    smoothing: f64,
    device: &Device,
) -> Tensor<1> {
    let memory = model.encode(examples, blind, device);
    let b = examples.len();
    let l = examples
        .iter()
        .map(|e| e.words.len() + 1)
        .max()
        .unwrap_or(1);
    let mut input = vec![PAD as i64; b * l];
    let mut rows = Vec::new();
    let mut targets = Vec::new();
    for (i, e) in examples.iter().enumerate() {
        input[i * l] = BOS as i64;
        for (j, &w) in e.words.iter().enumerate() {
            input[i * l + j + 1] = w as i64;
        }
        for j in 0..=e.words.len() {
            rows.push((i * l + j) as i64);
            targets.push(e.words.get(j).copied().unwrap_or(EOS));
        }
    }
    let tokens = Tensor::<2, Int>::from_data(TensorData::new(input, [b, l]), device);
    let hidden = model.decode(&memory, tokens);
    let h = hidden.dims()[2];
    let idx = Tensor::<1, Int>::from_data(TensorData::new(rows.clone(), [rows.len()]), device);
    let picked = hidden.reshape([b * l, h]).select(0, idx);
    cross_entropy_smoothed(model.logits(picked), &targets, smoothing)
}

/// The log-probability the model gives `words` (then `[EOS]`) as the caption of `example`.
pub fn caption_log_prob(
    model: &Captioner,
    example: &CaptionExample,
    blind: bool,
    words: &[u32],
    device: &Device,
) -> f64 {
    let one = CaptionExample {
        words: words.to_vec(),
        ..example.clone()
    };
    let mean = caption_loss(model, &[&one], blind, 0.0, device).into_scalar::<f32>() as f64;
    -mean * (words.len() + 1) as f64
}

/// Log-probabilities [B, V] of the next word after each row of `prefixes` (equal lengths).
fn next_word_logp(
    model: &Captioner,
    memory: &Memory,
    prefixes: &[Vec<u32>],
    device: &Device,
) -> Vec<Vec<f32>> {
    let b = prefixes.len();
    let l = prefixes[0].len();
    let flat: Vec<i64> = prefixes.iter().flatten().map(|&t| t as i64).collect();
    let tokens = Tensor::<2, Int>::from_data(TensorData::new(flat, [b, l]), device);
    let hidden = model.decode(memory, tokens);
    let h = hidden.dims()[2];
    let last = hidden.slice([0..b, l - 1..l, 0..h]).reshape([b, h]);
    let logp = log_softmax(model.logits(last), 1);
    let v = logp.dims()[1];
    let values: Vec<f32> = logp
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("f32 values");
    values.chunks(v).map(<[f32]>::to_vec).collect()
}

fn memory_rows(memory: &Memory, rows: &[usize], device: &Device) -> Memory {
    let idx = Tensor::<1, Int>::from_data(
        TensorData::new(
            rows.iter().map(|&r| r as i64).collect::<Vec<_>>(),
            [rows.len()],
        ),
        device,
    );
    Memory {
        states: memory.states.clone().select(0, idx.clone()),
        padding: memory.padding.clone().int().select(0, idx).equal_elem(1),
    }
}

/// How captions are decoded.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decoding {
    /// 1: greedy.
    pub beam: usize,
    pub length_penalty: f64,
    pub max_words: usize,
}

/// Greedy decoding of a batch: the most likely word at each step until `[EOS]`.
fn greedy(
    model: &Captioner,
    examples: &[&CaptionExample],
    blind: bool,
    max_words: usize,
    device: &Device,
) -> Vec<Vec<u32>> {
    let memory = model.encode(examples, blind, device);
    let b = examples.len();
    let mut prefixes = vec![vec![BOS]; b];
    let mut done = vec![false; b];
    for _ in 0..=max_words {
        let logp = next_word_logp(model, &memory, &prefixes, device);
        for (i, row) in logp.iter().enumerate() {
            let w = if done[i] { PAD } else { argmax(row) as u32 };
            done[i] |= w == EOS;
            prefixes[i].push(w);
        }
        if done.iter().all(|&d| d) {
            break;
        }
    }
    prefixes.into_iter().map(|p| p[1..].to_vec()).collect()
}

fn argmax(row: &[f32]) -> usize {
    row.iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |best, (i, &v)| {
            if v > best.1 {
                (i, v)
            } else {
                best
            }
        })
        .0
}

/// Beam search for one segment: `beam` hypotheses extended word by word; a hypothesis that
/// emits `[EOS]` (or reaches `max_words`) is finished and ranked by its summed log-probability
/// over `length^length_penalty` (the `[EOS]` counted as a word).
fn beam_search(
    model: &Captioner,
    example: &CaptionExample,
    blind: bool,
    d: &Decoding,
    device: &Device,
) -> Vec<u32> {
    let memory = model.encode(&[example], blind, device);
    let mut live: Vec<(Vec<u32>, f64)> = vec![(vec![BOS], 0.0)];
    let mut finished: Vec<(Vec<u32>, f64)> = Vec::new();
    let rank = |words: usize, score: f64| score / (words.max(1) as f64).powf(d.length_penalty);
    for step in 0..=d.max_words {
        let mem = memory_rows(&memory, &vec![0; live.len()], device);
        let prefixes: Vec<Vec<u32>> = live.iter().map(|(p, _)| p.clone()).collect();
        let logp = next_word_logp(model, &mem, &prefixes, device);
        let mut candidates: Vec<(usize, u32, f64)> = Vec::new();
        for (h, row) in logp.iter().enumerate() {
            let mut best: Vec<(u32, f32)> = row
                .iter()
                .enumerate()
                .filter(|(w, _)| *w as u32 != PAD && *w as u32 != BOS)
                .map(|(w, &v)| (w as u32, v))
                .collect();
            best.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            for &(w, v) in best.iter().take(d.beam) {
                candidates.push((h, w, live[h].1 + v as f64));
            }
        }
        candidates.sort_by(|a, b| b.2.total_cmp(&a.2).then((a.0, a.1).cmp(&(b.0, b.1))));
        let mut next = Vec::new();
        for (h, w, score) in candidates {
            let mut words = live[h].0.clone();
            words.push(w);
            if w == EOS || step == d.max_words {
                finished.push((words, score));
            } else {
                next.push((words, score));
            }
            if next.len() == d.beam {
                break;
            }
        }
        // Done when `beam` captions are finished (Hugging Face's `early_stopping=True`), or, with
        // no length penalty, when no live hypothesis can beat the best finished one any more
        // (log-probabilities only fall).
        let best_done = finished
            .iter()
            .map(|(w, s)| rank(w.len() - 1, *s))
            .fold(f64::NEG_INFINITY, f64::max);
        if next.is_empty()
            || finished.len() >= d.beam
            || (d.length_penalty == 0.0 && next.iter().all(|(_, s)| *s < best_done))
        {
            break;
        }
        live = next;
    }
    finished
        .into_iter()
        .max_by(|a, b| rank(a.0.len() - 1, a.1).total_cmp(&rank(b.0.len() - 1, b.1)))
        .map(|(w, _)| w[1..].to_vec())
        .unwrap_or_default()
}

/// Captions of `examples` as text (greedy when `beam` is 1), `batch` segments at a time.
#[allow(clippy::too_many_arguments)]
pub fn caption(
    model: &Captioner,
    vocab: &WordVocab,
    examples: &[CaptionExample],
    blind: bool,
    d: &Decoding,
    batch: usize,
    device: &Device,
    progress: &dyn Fn(usize),
) -> Vec<String> {
    let mut out = Vec::with_capacity(examples.len());
    for chunk in examples.chunks(batch.max(1)) {
        if d.beam <= 1 {
            let refs: Vec<&CaptionExample> = chunk.iter().collect();
            out.extend(
                greedy(model, &refs, blind, d.max_words, device)
                    .iter()
                    .map(|ids| vocab.decode(ids)),
            );
        } else {
            out.extend(
                chunk
                    .iter()
                    .map(|e| vocab.decode(&beam_search(model, e, blind, d, device))),
            );
        }
        progress(chunk.len());
    }
    out
}

/// Captions and the examples' references (one each) as the COCO evaluation tokenizes them.
fn tokenized(examples: &[CaptionExample], captions: &[String]) -> (Vec<String>, Vec<Vec<String>>) {
    let refs = examples
        .iter()
        .map(|e| vec![tokenize_caption(&e.reference)])
        .collect();
    let cands = captions.iter().map(|c| tokenize_caption(c)).collect();
    (cands, refs)
}

/// BLEU-1..4, ROUGE-L and CIDEr-D of captions against the examples' references.
pub fn score(
    examples: &[CaptionExample],
    captions: &[String],
) -> crate::core::caption_metrics::CaptionScores {
    use crate::core::caption_metrics::{caption_scores, CaptionPair};
    let (cands, refs) = tokenized(examples, captions);
    let pairs: Vec<CaptionPair> = cands
        .iter()
        .zip(&refs)
        .map(|(c, r)| CaptionPair {
            candidate: c,
            references: r,
        })
        .collect();
    caption_scores(&pairs)
}

/// Corpus METEOR 1.5 of captions against the examples' references, on the tokens the other
/// metrics see (the COCO evaluation gives METEOR its PTB-tokenized captions); resources from
/// `meteor_dir`.
pub fn meteor(
    meteor_dir: &std::path::Path,
    examples: &[CaptionExample],
    captions: &[String],
) -> anyhow::Result<f64> {
    let (cands, refs) = tokenized(examples, captions);
    let texts = cands
        .iter()
        .map(String::as_str)
        .chain(refs.iter().flatten().map(String::as_str));
    let m = crate::core::meteor::Meteor::load(meteor_dir, texts)?;
    let pairs: Vec<(&str, &[String])> = cands
        .iter()
        .zip(&refs)
        .map(|(c, r)| (c.as_str(), r.as_slice()))
        .collect();
    Ok(m.score(&pairs).corpus)
}

// ---------------------------------------------------------------------------------------------
// Training

/// The purpose numbers of the captioner's shuffling and dropout streams.
const STREAM_SHUFFLE: u64 = 0xCA97_0001;
const STREAM_DROPOUT: u64 = 0xCA97_0002;

/// Train `model` on `train` with the shared loop (teacher forcing, AdamW, linear decay); each
/// epoch the held-out segments are captioned greedily and scored (`valid_BLEU-4`,
/// `valid_CIDEr`, `valid_ROUGE-L`).
#[allow(clippy::too_many_arguments)]
pub fn train_captioner(
    model: Captioner,
    cfg: &CaptionerConfig,
    vocab: &WordVocab,
    train: &[CaptionExample],
    valid: &[CaptionExample],
    train_cfg: &crate::core::trainer::FinetuneConfig,
    run: &crate::core::run::RunDir,
    device: &Device,
    opts: &crate::core::trainer::RunOptions,
) -> Result<crate::core::trainer::TrainOutcome> {
    use crate::core::trainer::{self, IndexedTask, MicroStep};
    ensure!(!train.is_empty(), "no training segments");
    ensure!(
        cfg.blind == train_cfg.blind,
        "the captioner's blind setting and the training's differ"
    );
    cfg.validate()?;
    train_cfg.validate()?;
    let c = train_cfg;
    let settings = c.loop_settings("tessera-caption", "caption.toml", vec![], STREAM_DROPOUT)?;
    let ad = device.clone().autodiff();
    let decoding = Decoding {
        beam: 1,
        length_penalty: 0.0,
        max_words: cfg.max_words,
    };
    let task = IndexedTask {
        examples: train.len(),
        batch_size: c.batch_size,
        seed: c.seed,
        shuffle_stream: STREAM_SHUFFLE,
        loss: |model: &Captioner, part: &[usize], _: MicroStep| {
            let ex: Vec<&CaptionExample> = part.iter().map(|&i| &train[i]).collect();
            caption_loss(model, &ex, cfg.blind, 0.0, &ad)
        },
        evaluate: |model: &Captioner| {
            if valid.is_empty() {
                return Ok(vec![]);
            }
            let caps = caption(
                model,
                vocab,
                valid,
                cfg.blind,
                &decoding,
                c.batch_size,
                device,
                &|_| {},
            );
            let s = score(valid, &caps);
            Ok(vec![
                ("valid_BLEU-4".to_string(), s.bleu[3]),
                ("valid_CIDEr".to_string(), s.cider),
                ("valid_ROUGE-L".to_string(), s.rouge_l),
            ])
        },
        save: |model: &Captioner, run: &crate::core::run::RunDir| {
            save_model_dir(model, cfg, vocab, &run.path)
        },
        model: std::marker::PhantomData,
    };
    trainer::train(&task, model, &settings, run, device, opts)
}

// ---------------------------------------------------------------------------------------------
// Model directory

pub const CONFIG_FILE: &str = "captioner.json";

/// `captioner.json`, `model.safetensors`, `vocab.txt`.
pub fn save_model_dir(
    model: &Captioner,
    cfg: &CaptionerConfig,
    vocab: &WordVocab,
    dir: &Path,
) -> Result<()> {
    use crate::core::checkpoint::{named_tensors, save_safetensors};
    use crate::core::run::write_atomic;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    save_safetensors(
        &dir.join("model.safetensors"),
        &named_tensors(model, &[]),
        HashMap::from([("format".to_string(), "tessera-caption".to_string())]),
    )?;
    write_atomic(&dir.join("vocab.txt"), vocab.to_text().as_bytes())?;
    write_atomic(
        &dir.join(CONFIG_FILE),
        serde_json::to_string_pretty(cfg)?.as_bytes(),
    )
}

pub fn load_model_dir(
    dir: &Path,
    device: &Device,
) -> Result<(Captioner, CaptionerConfig, WordVocab)> {
    use crate::core::checkpoint::{load_named, load_safetensors};
    if !dir.join(CONFIG_FILE).is_file() {
        bail!(
            "{}: no {CONFIG_FILE} (not a `videobert caption-train` run)",
            dir.display()
        );
    }
    let cfg = CaptionerConfig::from_json_file(&dir.join(CONFIG_FILE))?;
    let vocab = WordVocab::read(&dir.join("vocab.txt"))?;
    if vocab.len() != cfg.vocab_size {
        bail!(
            "{}: {} words, {CONFIG_FILE} says vocab_size {}",
            dir.join("vocab.txt").display(),
            vocab.len(),
            cfg.vocab_size
        );
    }
    let weights = dir.join("model.safetensors");
    let (tensors, _) = load_safetensors(&weights)?;
    let model = load_named(
        Captioner::new(&cfg, device),
        &tensors,
        &[],
        device,
        &weights,
    )?;
    Ok((model, cfg, vocab))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vocabulary_keeps_specials_first_and_decodes_to_the_first_eos() {
        let v = WordVocab::build(["Slide the bag.", "slide the three"].into_iter(), 1);
        assert_eq!(&v.words[..4], &SPECIALS);
        assert_eq!(&v.words[4..6], &["slide", "the"]);
        let ids = v.encode("Slide the shoe", 10);
        assert_eq!(ids[2], UNK);
        assert_eq!(v.decode(&[ids[0], ids[1], EOS, ids[0]]), "slide the");
        assert_eq!(v.encode("slide the bag", 2).len(), 2);
    }

    #[test]
    fn segment_clips_take_middles_then_overlap_then_the_nearest_and_subsample_evenly() {
        let times: Vec<[f32; 2]> = (0..10).map(|i| [i as f32, i as f32 + 1.0]).collect();
        assert_eq!(segment_clips(&times, 2.0, 4.0, 8), vec![2, 3]);
        // No middle inside [2.2, 2.4): the clip overlapping it.
        assert_eq!(segment_clips(&times, 2.2, 2.4, 8), vec![2]);
        // Past the clips: the nearest.
        assert_eq!(segment_clips(&times, 20.0, 21.0, 8), vec![9]);
        assert_eq!(segment_clips(&times, 0.0, 10.0, 4), vec![0, 2, 5, 7]);
    }
}
