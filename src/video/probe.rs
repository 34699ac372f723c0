//! Linear probes of clip features: the evaluation by transfer of CBT (MODELS.md §7), applied
//! alike to raw clip features, VideoBERT's features and CBT's. A labelled segment's feature is
//! the mean of the features of the clips it covers; the probe is multinomial logistic
//! regression (`core::logistic`, C = 1) on features standardised by the training set's mean
//! and spread (named choice: the paper does not say how its linear classifier is fitted),
//! trained on one split's segments and scored on another's, beside the majority class.

use super::features::ClipFeatures;
use super::segments::LabelledSegment;
use super::spans::segment_clips;
use crate::core::logistic::{column_stats, standardize, LogisticRegression};
use anyhow::{bail, Result};
use serde::Serialize;
use std::collections::HashMap;

/// Examples for a probe: a feature and a label each.
#[derive(Debug, Clone, Default)]
pub struct Examples {
    pub x: Vec<Vec<f64>>,
    pub labels: Vec<String>,
}

/// The mean of rows `clips` of `f`.
pub fn mean_row(f: &ClipFeatures, clips: &[usize]) -> Vec<f64> {
    let mut m = vec![0f64; f.dim];
    for &c in clips {
        for (a, &v) in m.iter_mut().zip(f.row(c)) {
            *a += v as f64 / clips.len() as f64;
        }
    }
    m
}

/// Clip times as f64 (what `spans` works in).
pub fn times64(f: &ClipFeatures) -> Vec<[f64; 2]> {
    f.times.iter().map(|t| [t[0] as f64, t[1] as f64]).collect()
}

/// What to label a segment with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    Verb,
    Object,
}

impl Target {
    pub fn of(self, s: &LabelledSegment) -> &str {
        match self {
            Target::Verb => &s.verb,
            Target::Object => &s.object,
        }
    }
}

/// Segments grouped by video, in time order, with the video's features; segments of videos
/// without features are counted in the second value.
pub fn by_video<'a>(
    feats: &'a [ClipFeatures],
    segments: &'a [LabelledSegment],
) -> (Vec<(&'a ClipFeatures, Vec<&'a LabelledSegment>)>, usize) {
    let index: HashMap<&str, usize> = feats
        .iter()
        .enumerate()
        .map(|(i, f)| (f.video.as_str(), i))
        .collect();
    let mut groups: Vec<Vec<&LabelledSegment>> = vec![Vec::new(); feats.len()];
    let mut missing = 0;
    for s in segments {
        match index.get(s.video.as_str()) {
            Some(&i) => groups[i].push(s),
            None => missing += 1,
        }
    }
    let mut out = Vec::new();
    for (f, mut g) in feats.iter().zip(groups) {
        if g.is_empty() {
            continue;
        }
        g.sort_by(|a, b| a.start.total_cmp(&b.start));
        out.push((f, g));
    }
    (out, missing)
}

/// Recognition: each segment's clips (a range of its video's clips, [`segment_clips`]) and
/// label. Segments covering no clip are skipped (counted in the second value, with those of
/// videos without features).
pub fn segment_cases<'a>(
    feats: &'a [ClipFeatures],
    segments: &'a [LabelledSegment],
    target: Target,
) -> (Vec<(&'a ClipFeatures, usize, usize, String)>, usize) {
    let (groups, mut skipped) = by_video(feats, segments);
    let mut out = Vec::new();
    for (f, segs) in groups {
        let times = times64(f);
        for s in segs {
            let clips = segment_clips(&times, s.start, s.end);
            match (clips.first(), clips.last()) {
                (Some(&a), Some(&b)) => out.push((f, a, b + 1, target.of(s).to_string())),
                _ => skipped += 1,
            }
        }
    }
    (out, skipped)
}

/// Recognition examples: each segment's mean clip feature ([`segment_cases`]).
pub fn segment_examples(
    feats: &[ClipFeatures],
    segments: &[LabelledSegment],
    target: Target,
) -> (Examples, usize) {
    let (cases, skipped) = segment_cases(feats, segments, target);
    let mut out = Examples::default();
    for (f, a, b, label) in cases {
        out.x.push(mean_row(f, &(a..b).collect::<Vec<_>>()));
        out.labels.push(label);
    }
    (out, skipped)
}

/// Anticipation: for every step of a video after its first, the clips that end by the step's
/// start (the video before it, nothing of the step itself) and the step's label. Steps with no
/// such clip are skipped. Returns (video's features, clips before, label) per example.
pub fn anticipation_cases<'a>(
    feats: &'a [ClipFeatures],
    segments: &'a [LabelledSegment],
    target: Target,
) -> Vec<(&'a ClipFeatures, usize, String)> {
    let (groups, _) = by_video(feats, segments);
    let mut out = Vec::new();
    for (f, segs) in groups {
        for s in segs.iter().skip(1) {
            // Clips are in time order: the prefix is those ending by the step's start.
            let before = f
                .times
                .iter()
                .take_while(|t| t[1] as f64 <= s.start + 1e-6)
                .count();
            if before > 0 {
                out.push((f, before, target.of(s).to_string()));
            }
        }
    }
    out
}

/// A probe's scores on the held-out split.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeScore {
    /// The inverse L2 penalty fitted with (chosen on the training split among several).
    pub c: f64,
    pub classes: usize,
    pub train: usize,
    pub test: usize,
    pub top1: f64,
    pub top5: f64,
    /// The most frequent training labels, ranked by frequency.
    pub majority_top1: f64,
    pub majority_top5: f64,
    /// Held-out examples whose label no training example has (counted wrong).
    pub unseen_labels: usize,
}

/// Every how many training examples one is held out to choose C among several.
const VALIDATION_EVERY: usize = 5;

/// Fit logistic regression on `train` (standardised by its own statistics) and score `test`.
/// `cs` are the candidate inverse penalties C: one is used as it is; among several, the one
/// with the best accuracy on every fifth training example (fitted on the other four fifths)
/// is chosen, the smallest on ties, then fitted on the whole training split: the test split
/// never chooses (the usual protocol of linear evaluation, e.g. CLIP's sweep of the L2
/// strength).
pub fn linear_probe(
    train: &Examples,
    test: &Examples,
    iterations: usize,
    cs: &[f64],
) -> Result<ProbeScore> {
    if cs.is_empty() || cs.iter().any(|&c| !(c.is_finite() && c > 0.0)) {
        bail!("C must be one or more positive numbers, got {cs:?}");
    }
    if train.x.is_empty() || test.x.is_empty() {
        bail!(
            "a probe needs examples on both sides: {} to train on, {} to test",
            train.x.len(),
            test.x.len()
        );
    }
    let d = train.x[0].len();
    if let Some(bad) = train.x.iter().chain(&test.x).find(|r| r.len() != d) {
        bail!(
            "features of {} values beside features of {d}: the two splits must come from the same \
             model",
            bad.len()
        );
    }
    if train
        .x
        .iter()
        .chain(&test.x)
        .flatten()
        .any(|v| !v.is_finite())
    {
        bail!("a feature is not finite (NaN or infinite): the features are broken");
    }
    let mut classes: Vec<&str> = train.labels.iter().map(String::as_str).collect();
    classes.sort_unstable();
    classes.dedup();
    if classes.len() < 2 {
        bail!(
            "the training split has {} label: nothing to classify",
            classes.len()
        );
    }
    let id = |l: &str| classes.binary_search(&l).ok();
    let y: Vec<usize> = train.labels.iter().filter_map(|l| id(l)).collect();
    let c = match cs {
        [c] => *c,
        _ => choose_c(&train.x, &y, classes.len(), iterations, cs),
    };
    let (mean, std) = column_stats(&train.x);
    let mut xtr = train.x.clone();
    standardize(&mut xtr, &mean, &std);
    let mut xte = test.x.clone();
    standardize(&mut xte, &mean, &std);
    let model = LogisticRegression::fit(&xtr, &y, classes.len(), c, iterations);
    let mut counts = vec![0usize; classes.len()];
    for &c in &y {
        counts[c] += 1;
    }
    let mut by_count: Vec<usize> = (0..classes.len()).collect();
    by_count.sort_by(|&a, &b| counts[b].cmp(&counts[a]).then(a.cmp(&b)));
    let (mut top1, mut top5, mut maj1, mut maj5, mut unseen) = (0, 0, 0, 0, 0);
    for (x, label) in xte.iter().zip(&test.labels) {
        let Some(truth) = id(label) else {
            unseen += 1;
            continue;
        };
        let p = model.probabilities(x);
        let mut order: Vec<usize> = (0..p.len()).collect();
        order.sort_by(|&a, &b| p[b].total_cmp(&p[a]).then(a.cmp(&b)));
        top1 += usize::from(order[0] == truth);
        top5 += usize::from(order.iter().take(5).any(|&c| c == truth));
        maj1 += usize::from(by_count[0] == truth);
        maj5 += usize::from(by_count.iter().take(5).any(|&c| c == truth));
    }
    let n = test.x.len() as f64;
    Ok(ProbeScore {
        c,
        classes: classes.len(),
        train: train.x.len(),
        test: test.x.len(),
        top1: top1 as f64 / n,
        top5: top5 as f64 / n,
        majority_top1: maj1 as f64 / n,
        majority_top5: maj5 as f64 / n,
        unseen_labels: unseen,
    })
}

/// The C of `cs` whose fit on four fifths of the training examples classifies the held-out fifth
/// best (the smallest C on ties).
fn choose_c(x: &[Vec<f64>], y: &[usize], classes: usize, iterations: usize, cs: &[f64]) -> f64 {
    let (mut fit_x, mut fit_y, mut val_x, mut val_y) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (i, (xi, &yi)) in x.iter().zip(y).enumerate() {
        if i % VALIDATION_EVERY == VALIDATION_EVERY - 1 {
            val_x.push(xi.clone());
            val_y.push(yi);
        } else {
            fit_x.push(xi.clone());
            fit_y.push(yi);
        }
    }
    let mut sorted = cs.to_vec();
    sorted.sort_by(f64::total_cmp);
    if val_x.is_empty() || fit_x.is_empty() {
        return sorted[0];
    }
    let (mean, std) = column_stats(&fit_x);
    standardize(&mut fit_x, &mean, &std);
    standardize(&mut val_x, &mean, &std);
    let mut best = (sorted[0], -1i64);
    for &c in &sorted {
        let m = LogisticRegression::fit(&fit_x, &fit_y, classes, c, iterations);
        let right = val_x
            .iter()
            .zip(&val_y)
            .filter(|(xi, &yi)| m.predict(xi) == yi)
            .count() as i64;
        if right > best.1 {
            best = (c, right);
        }
    }
    best.0
}
