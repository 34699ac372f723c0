//! Where a video's narration meets its clips, for both video models: the paper's text-video
//! pairs (neighbouring sentences concatenated, the clips of their time span subsampled with a
//! random stride; VideoBERT §3.3, which CBT shares) and the clips a labelled segment covers.

use crate::corpora::narration::Segment;
use rand::Rng;

/// A text and the clips (indices into the video's clips, in time order) of its time span.
#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    pub text: String,
    pub start: f64,
    pub end: f64,
    pub clips: Vec<usize>,
}

/// How narration is cut into texts and clips are subsampled.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpanRule {
    /// Each text takes 1..=max_concat neighbouring sentences.
    pub max_concat: usize,
    /// Clips are taken every `stride`-th, the stride drawn from min_stride..=max_stride, from a
    /// random offset below it.
    pub min_stride: usize,
    pub max_stride: usize,
}

/// The texts of one video, walking its sentences in time order: each takes the next
/// 1..=`max_concat` sentences; its clips are those overlapping the span of the text, every
/// `stride`-th from a random offset. Texts whose span covers no clip are dropped.
pub fn narration_spans<R: Rng>(
    narration: &[Segment],
    times: &[[f64; 2]],
    rule: SpanRule,
    rng: &mut R,
) -> Vec<Span> {
    let mut sentences: Vec<&Segment> = narration.iter().collect();
    sentences.sort_by(|a, b| a.start.total_cmp(&b.start));
    let mut out = Vec::new();
    let mut i = 0;
    while i < sentences.len() {
        let n = rng
            .random_range(1..=rule.max_concat)
            .min(sentences.len() - i);
        let group = &sentences[i..i + n];
        i += n;
        let start = group.iter().map(|s| s.start).fold(f64::INFINITY, f64::min);
        let end = group
            .iter()
            .map(|s| s.end)
            .fold(f64::NEG_INFINITY, f64::max);
        let clips: Vec<usize> = (0..times.len())
            .filter(|&c| times[c][0] < end && times[c][1] > start)
            .collect();
        if clips.is_empty() {
            continue;
        }
        let stride = rng.random_range(rule.min_stride..=rule.max_stride);
        let offset = rng.random_range(0..stride).min(clips.len() - 1);
        let text = group
            .iter()
            .map(|s| s.text.as_str())
            .collect::<Vec<_>>()
            .join(" ");
        out.push(Span {
            text,
            start,
            end,
            clips: clips.into_iter().skip(offset).step_by(stride).collect(),
        });
    }
    out
}

/// The clips a segment `[start, end)` covers: those whose middle lies inside it, else (a segment
/// shorter than a clip) those overlapping it.
pub fn segment_clips(times: &[[f64; 2]], start: f64, end: f64) -> Vec<usize> {
    let inside: Vec<usize> = (0..times.len())
        .filter(|&c| {
            let mid = 0.5 * (times[c][0] + times[c][1]);
            mid >= start && mid < end
        })
        .collect();
    if !inside.is_empty() {
        return inside;
    }
    (0..times.len())
        .filter(|&c| times[c][0] < end && times[c][1] > start)
        .collect()
}
