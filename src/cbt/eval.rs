//! CBT's evaluation by transfer (MODELS.md §7): features of every clip for the linear probe
//! (`video::probe`), clip-narration retrieval from the cross-modal score, and the inputs of
//! action anticipation (the clips before a step, never the step's own).
//!
//! Choices, named:
//! - A clip's feature is the visual transformer's output at it, the video read unmasked in
//!   consecutive windows of the model's `max_clips`.
//! - Retrieval: the test videos' narration sentences, one text per sentence with the clips
//!   overlapping it (pretraining's pairs without concatenation or subsampling), ranked by the
//!   cross-modal score in pools of `pool` consecutive pairs (the last pool may be smaller);
//!   text-to-video, R@k the share of texts whose own clips rank in the top k.
//! - Anticipation's CBT feature is the mean visual output over the clips before the step (at most
//!   the last `max_clips`), computed from those clips alone.

use super::data::{NarratedVideo, TextSpecials};
use super::model::{Cbt, CbtConfig, ClipBatch};
use super::train::token_batch;
use crate::core::rng::rng_for;
use crate::text::tokenize::TextTokenizer;
use crate::video::features::ClipFeatures;
use crate::video::spans::{narration_spans, SpanRule};
use anyhow::{bail, Result};
use burn::tensor::{Device, Tensor};
use serde::Serialize;

fn rows_of(model: &Cbt, batch: &ClipBatch, device: &Device) -> Tensor<3> {
    let embedded = model.embed_clips(batch, device);
    model.visual_hidden(batch, embedded, device)
}

/// Which hidden states of the visual transformer make a clip's feature, concatenated in the
/// order given: 0 is its input (the embeddings after positions and LayerNorm), `k` the output of
/// layer `k`. Empty: the last layer's output alone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Layers(pub Vec<usize>);

impl Layers {
    /// Refuses indices past the model's layers.
    pub fn check(&self, cfg: &CbtConfig) -> Result<()> {
        if let Some(&bad) = self.0.iter().find(|&&i| i > cfg.visual_layers) {
            bail!(
                "--layers {bad}: the model has {} visual layers (0 is their input, {} the last \
                 output)",
                cfg.visual_layers,
                cfg.visual_layers
            );
        }
        Ok(())
    }

    /// Width of a feature.
    pub fn width(&self, cfg: &CbtConfig) -> usize {
        cfg.hidden() * self.0.len().max(1)
    }

    fn rows(&self, model: &Cbt, batch: &ClipBatch, device: &Device) -> Tensor<3> {
        if self.0.is_empty() {
            return rows_of(model, batch, device);
        }
        let embedded = model.embed_clips(batch, device);
        let states = model.visual_hidden_states(batch, embedded, device);
        Tensor::cat(self.0.iter().map(|&i| states[i].clone()).collect(), 2)
    }
}

fn to_vec(t: Tensor<3>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .unwrap_or_default()
}

/// The visual transformer's hidden states `layers` at every clip of `f`, read in windows of
/// `window` clips: `[T, width]` row-major.
pub fn video_features(
    model: &Cbt,
    f: &ClipFeatures,
    window: usize,
    layers: &Layers,
    device: &Device,
) -> Vec<f32> {
    let d = f.dim;
    let mut out = Vec::new();
    for start in (0..f.len()).step_by(window.max(1)) {
        let end = (start + window).min(f.len());
        let rows = &f.features[start * d..end * d];
        let batch = ClipBatch::new(d, &[(rows, &[])]);
        out.extend(to_vec(layers.rows(model, &batch, device)));
    }
    out
}

/// The mean of hidden states `layers` over clips `[start, end)` of each case's video, read alone
/// (nothing after `end` is seen), in batches of `batch`.
pub fn span_means(
    model: &Cbt,
    cases: &[(&ClipFeatures, usize, usize)],
    batch: usize,
    layers: &Layers,
    device: &Device,
) -> Vec<Vec<f64>> {
    let mut out = Vec::with_capacity(cases.len());
    for chunk in cases.chunks(batch.max(1)) {
        let d = chunk.first().map_or(1, |c| c.0.dim);
        let seqs: Vec<(&[f32], &[usize])> = chunk
            .iter()
            .map(|(f, s, e)| (&f.features[s * d..e * d], &[][..]))
            .collect();
        let b = ClipBatch::new(d, &seqs);
        let hidden = to_vec(layers.rows(model, &b, device));
        let h = hidden.len() / (b.batch * b.len).max(1);
        for (r, (_, s, e)) in chunk.iter().enumerate() {
            let n = e - s;
            let mut m = vec![0f64; h];
            for t in 0..n {
                let row = &hidden[(r * b.len + t) * h..(r * b.len + t + 1) * h];
                for (a, &v) in m.iter_mut().zip(row) {
                    *a += v as f64 / n as f64;
                }
            }
            out.push(m);
        }
    }
    out
}

/// A narration sentence with its clips: one retrieval query and its true video.
#[derive(Debug, Clone)]
pub struct RetrievalPair {
    pub video: usize,
    pub clips: Vec<usize>,
    pub text: Vec<u32>,
}

/// Every narration sentence of `videos` overlapping a clip, with those clips (cut to
/// `max_clips`) and its tokens (`[CLS] text [SEP]`, cut to `max_text_tokens`).
pub fn retrieval_pairs(
    videos: &[NarratedVideo],
    tok: &TextTokenizer,
    sp: TextSpecials,
    max_clips: usize,
    max_text_tokens: usize,
) -> Result<Vec<RetrievalPair>> {
    let rule = SpanRule {
        max_concat: 1,
        min_stride: 1,
        max_stride: 1,
    };
    // With one sentence a text and stride 1 the draws change nothing.
    let mut rng = rng_for(0, 0, 0);
    let mut pairs = Vec::new();
    let mut texts = Vec::new();
    for (i, v) in videos.iter().enumerate() {
        for s in narration_spans(&v.narration, &v.times, rule, &mut rng) {
            let mut clips = s.clips;
            clips.truncate(max_clips);
            pairs.push((i, clips));
            texts.push(s.text);
        }
    }
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let ids = tok.encode_plain(&refs)?;
    Ok(pairs
        .into_iter()
        .zip(ids)
        .map(|((video, clips), t)| {
            let mut text = vec![sp.cls];
            text.extend(t.iter().take(max_text_tokens));
            text.push(sp.sep);
            RetrievalPair { video, clips, text }
        })
        .collect())
}

#[derive(Debug, Clone, Serialize)]
pub struct RetrievalScore {
    pub queries: usize,
    pub pool: usize,
    pub r1: f64,
    pub r5: f64,
    pub r10: f64,
    pub median_rank: f64,
    /// What ranking at random gives (the mean of k / pool size over the queries).
    pub chance_r1: f64,
    pub chance_r5: f64,
    pub chance_r10: f64,
}

/// Text-to-video retrieval in pools of `pool` consecutive pairs; `pairs_per_pass` bounds the
/// cross-modal transformer's batch. `progress` is called after each pool with its size.
#[allow(clippy::too_many_arguments)]
pub fn retrieve(
    model: &Cbt,
    videos: &[NarratedVideo],
    pairs: &[RetrievalPair],
    pool: usize,
    pad: u32,
    pairs_per_pass: usize,
    device: &Device,
    progress: &dyn Fn(usize),
) -> Result<RetrievalScore> {
    if pairs.len() < 2 {
        bail!(
            "{} narration sentence overlapping clips: retrieval needs at least 2",
            pairs.len()
        );
    }
    if pool < 2 {
        bail!("--pool {pool}: a pool needs at least 2 candidates");
    }
    let mut ranks = Vec::with_capacity(pairs.len());
    let mut chance = [0f64; 3];
    for chunk in pairs.chunks(pool) {
        let n = chunk.len();
        if n < 2 {
            // A last pool of one would rank its single candidate first: left out.
            continue;
        }
        let examples: Vec<super::data::Example> = chunk
            .iter()
            .map(|p| super::data::Example {
                video: p.video,
                clips: p.clips.clone(),
                masked: vec![],
                text: p.text.clone(),
                text_targets: vec![],
            })
            .collect();
        let refs: Vec<&super::data::Example> = examples.iter().collect();
        let clips = super::train::clip_batch(videos, &refs);
        let hv = rows_of(model, &clips, device);
        let texts: Vec<&[u32]> = chunk.iter().map(|p| p.text.as_slice()).collect();
        let tokens = token_batch(&texts, pad);
        let ht = model.text_hidden(&tokens, device);
        let all: Vec<(usize, usize)> = (0..n).flat_map(|t| (0..n).map(move |v| (v, t))).collect();
        let mut scores: Vec<f32> = Vec::with_capacity(n * n);
        for part in all.chunks(pairs_per_pass.max(1)) {
            let s = model.cross_scores(
                (hv.clone(), clips.padding(device)),
                (ht.clone(), tokens.padding(device)),
                part,
                device,
            );
            scores.extend(
                s.into_data()
                    .convert::<f32>()
                    .try_to_vec::<f32>()
                    .map_err(|e| anyhow::anyhow!("{e:?}"))?,
            );
        }
        if let Some(bad) = scores.iter().find(|s| !s.is_finite()) {
            bail!("a cross-modal score is {bad}: the model's weights are broken");
        }
        for t in 0..n {
            let row = &scores[t * n..(t + 1) * n];
            // Ties count against the query: its rank is one plus the candidates scoring at
            // least as high.
            let rank = 1 + (0..n).filter(|&v| v != t && row[v] >= row[t]).count();
            ranks.push(rank);
            for (c, k) in chance.iter_mut().zip([1.0, 5.0, 10.0]) {
                *c += (k / n as f64).min(1.0);
            }
        }
        progress(n);
    }
    let q = ranks.len() as f64;
    let at = |k: usize| ranks.iter().filter(|&&r| r <= k).count() as f64 / q;
    let mut sorted = ranks.clone();
    sorted.sort_unstable();
    let median = if sorted.len() % 2 == 1 {
        sorted[sorted.len() / 2] as f64
    } else {
        0.5 * (sorted[sorted.len() / 2 - 1] + sorted[sorted.len() / 2]) as f64
    };
    Ok(RetrievalScore {
        queries: ranks.len(),
        pool,
        r1: at(1),
        r5: at(5),
        r10: at(10),
        median_rank: median,
        chance_r1: chance[0] / q,
        chance_r5: chance[1] / q,
        chance_r10: chance[2] / q,
    })
}
