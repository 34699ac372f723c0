//! CBT's training examples: VideoBERT's text-clip pairs (`video::spans`) over continuous clip
//! features. A video is its clip features (`tessera video features`) beside its narration; each
//! text of 1..=`max_concat` neighbouring sentences comes with the clips of its time span (cut to
//! the model's `max_clips`), some of them masked for the visual loss, and, when the text loss is
//! on, its tokens masked as BERT's.

use super::config::PretrainConfig;
use crate::core::error::InputError;
use crate::core::masking::{ClozeMasker, MaskStyle};
use crate::corpora::narration::{Narration, Segment};
use crate::video::features::ClipFeatures;
use crate::video::probe::times64;
use crate::video::spans::{narration_spans, SpanRule};
use anyhow::Result;
use rand::seq::index::sample;
use rand::Rng;
use std::path::Path;

/// A video's clip features with its narration.
#[derive(Debug, Clone)]
pub struct NarratedVideo {
    pub features: ClipFeatures,
    pub times: Vec<[f64; 2]>,
    pub narration: Vec<Segment>,
}

/// Join feature files and narration by video id. Videos with features and no narration are
/// kept (no pairs); narration of a video without features is ignored. An empty join, or
/// features of another width than `dim`, is an error.
pub fn narrated_videos(
    features: Vec<ClipFeatures>,
    narration: &Narration,
    narration_path: &Path,
) -> Result<Vec<NarratedVideo>> {
    let matched = features
        .iter()
        .filter(|f| narration.contains_key(&f.video))
        .count();
    if matched == 0 {
        return Err(InputError::new(
            narration_path,
            0,
            None,
            format!(
                "no video of the {} feature files has narration here (video ids differ?)",
                features.len()
            ),
        )
        .into());
    }
    Ok(features
        .into_iter()
        .map(|f| NarratedVideo {
            times: times64(&f),
            narration: narration.get(&f.video).cloned().unwrap_or_default(),
            features: f,
        })
        .collect())
}

/// Special token ids of the text vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextSpecials {
    pub cls: u32,
    pub sep: u32,
    pub mask: u32,
    pub pad: u32,
}

/// One training example.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    /// Index of the video in its list.
    pub video: usize,
    /// The clips (indices into the video's clips).
    pub clips: Vec<usize>,
    /// Positions (into `clips`) whose input is masked: the visual loss's targets.
    pub masked: Vec<usize>,
    /// `[CLS] text [SEP]`, masked when the text loss is on.
    pub text: Vec<u32>,
    /// (position in `text`, true token) of the masked text tokens.
    pub text_targets: Vec<(usize, u32)>,
}

/// `max(1, round(p * n))` of `0..n` without replacement, sorted.
pub fn choose_masked<R: Rng>(n: usize, p: f64, rng: &mut R) -> Vec<usize> {
    if n == 0 {
        return Vec::new();
    }
    let k = ((p * n as f64).round() as usize).clamp(1, n);
    let mut m = sample(rng, n, k).into_vec();
    m.sort_unstable();
    m
}

/// Texts to WordPiece ids without specials (`TextTokenizer::encode_plain`).
pub type Encode<'a> = &'a dyn Fn(&[&str]) -> Result<Vec<Vec<u32>>>;

/// One epoch of examples over `videos`, in video order. A masked text token's random
/// replacement is drawn from `random_tokens` (BERT's: the ids after `[MASK]`).
pub fn epoch<R: Rng>(
    videos: &[NarratedVideo],
    encode: Encode,
    sp: TextSpecials,
    random_tokens: std::ops::RangeInclusive<u32>,
    cfg: &PretrainConfig,
    max_clips: usize,
    rng: &mut R,
) -> Result<Vec<Example>> {
    let rule = SpanRule {
        max_concat: cfg.max_concat,
        min_stride: cfg.min_stride,
        max_stride: cfg.max_stride,
    };
    let mut spans = Vec::new();
    for (i, v) in videos.iter().enumerate() {
        for s in narration_spans(&v.narration, &v.times, rule, rng) {
            spans.push((i, s));
        }
    }
    let texts: Vec<&str> = spans.iter().map(|(_, s)| s.text.as_str()).collect();
    let ids = encode(&texts)?;
    let masker = ClozeMasker {
        pad: sp.pad,
        mask_token: sp.mask,
        p: cfg.text_mask_prob,
        max_predictions: usize::MAX,
        style: MaskStyle::BERT_80_10_10,
        random_range: random_tokens,
        never_mask: vec![sp.cls, sp.sep],
    };
    let mut out = Vec::with_capacity(spans.len());
    for ((video, span), tokens) in spans.into_iter().zip(ids) {
        let mut clips = span.clips;
        clips.truncate(max_clips);
        let masked = choose_masked(clips.len(), cfg.mask_prob, rng);
        let mut text = Vec::with_capacity(tokens.len().min(cfg.max_text_tokens) + 2);
        text.push(sp.cls);
        text.extend(tokens.iter().take(cfg.max_text_tokens));
        text.push(sp.sep);
        let (text, text_targets) = if cfg.text_weight > 0.0 {
            let m = masker.mask(&text, rng);
            (m.input, m.targets)
        } else {
            (text, Vec::new())
        };
        out.push(Example {
            video,
            clips,
            masked,
            text,
            text_targets,
        });
    }
    Ok(out)
}
