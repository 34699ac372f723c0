//! VideoBERT's training sequences, built from videos tokenised into visual words beside their
//! narration (`tessera video tokenize` JSONL) as the paper describes:
//!
//! - Texts are narration sentences cut by their ASR timestamps; 1..=`max_concat` neighbouring
//!   sentences are concatenated at random into one text, and the visual words of the clips that
//!   overlap the text's time span are its video, subsampled with a random stride of 1-3 clips.
//! - Sequences: joint `[CLS] text [>] words [SEP]`, text-only `[CLS] text [SEP]`, video-only
//!   `[CLS] [>] words [SEP]` (named choice: the paper does not show the video-only layout; `[>]`
//!   keeps the visual words where they are in joint sequences). Token types: 0 for `[CLS]` and
//!   the text, 1 for `[>]`, the words and the final `[SEP]` of a sequence with video (named
//!   choice: BERT's sentence-B segment for the video).
//! - Linguistic-visual alignment: a joint sequence's text is, with `misaligned_prob`, the text
//!   of another video (BERT's next-sentence negatives).
//!
//! Vocabulary layout: the text WordPiece ids `0..text_vocab`, then `[>]`, then the visual words:
//! word `w` is id `text_vocab + 1 + w`.

use super::config::DataConfig;
use crate::core::error::InputError;
use crate::corpora::narration::Segment;
use crate::video::spans::{narration_spans, SpanRule};
use anyhow::{Context, Result};
use rand::Rng;
use serde::Deserialize;
use std::path::Path;

/// Where the visual words sit after the text vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VocabLayout {
    pub text_vocab: usize,
    pub visual_words: usize,
}

impl VocabLayout {
    /// The `[>]` separator between text and video.
    pub fn video_start(&self) -> u32 {
        self.text_vocab as u32
    }

    pub fn word(&self, w: u32) -> u32 {
        self.text_vocab as u32 + 1 + w
    }

    pub fn is_word(&self, id: u32) -> bool {
        id as usize > self.text_vocab && (id as usize) < self.size()
    }

    pub fn size(&self) -> usize {
        self.text_vocab + 1 + self.visual_words
    }
}

/// One line of `video tokenize`'s JSONL.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TokenizedVideo {
    pub video: String,
    pub duration: f64,
    pub words: Vec<u32>,
    pub times: Vec<[f64; 2]>,
    #[serde(default)]
    pub narration: Vec<Segment>,
}

/// Read `video tokenize` output, checking every word against a codebook of `visual_words`.
pub fn read_tokenized(path: &Path, visual_words: usize) -> Result<Vec<TokenizedVideo>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let err = |field: Option<&str>, m: String| -> anyhow::Error {
            InputError::new(path, i + 1, field, m).into()
        };
        let v: TokenizedVideo = serde_json::from_str(line).map_err(|e| err(None, e.to_string()))?;
        if v.times.len() != v.words.len() {
            return Err(err(
                Some("times"),
                format!("{} times for {} words", v.times.len(), v.words.len()),
            ));
        }
        if let Some(w) = v.words.iter().find(|&&w| w as usize >= visual_words) {
            return Err(err(
                Some("words"),
                format!("word {w} is past the codebook's {visual_words} words"),
            ));
        }
        out.push(v);
    }
    if out.is_empty() {
        return Err(InputError::new(path, 0, None, "no videos").into());
    }
    Ok(out)
}

/// A text with the visual words of its time span.
#[derive(Debug, Clone, PartialEq)]
pub struct Pair {
    /// Index of the video in its corpus.
    pub video: usize,
    pub text: String,
    pub start: f64,
    pub end: f64,
    /// Visual words (codebook ids), subsampled.
    pub words: Vec<u32>,
}

/// The paper's text-video pairs of one video, walking its sentences in time order: each text
/// takes the next 1..=`max_concat` sentences; its words are those of the clips overlapping the
/// span of the text, every `stride`-th from a random offset. Texts whose span covers no clip
/// are dropped.
pub fn pairs<R: Rng>(v: &TokenizedVideo, index: usize, cfg: &DataConfig, rng: &mut R) -> Vec<Pair> {
    let rule = SpanRule {
        max_concat: cfg.max_concat,
        min_stride: cfg.min_stride,
        max_stride: cfg.max_stride,
    };
    narration_spans(&v.narration, &v.times, rule, rng)
        .into_iter()
        .map(|s| Pair {
            video: index,
            text: s.text,
            start: s.start,
            end: s.end,
            words: s.clips.iter().map(|&c| v.words[c]).collect(),
        })
        .collect()
}

/// What a sequence holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Joint,
    TextOnly,
    VideoOnly,
}

/// Special token ids of the text vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Specials {
    pub cls: u32,
    pub sep: u32,
    pub mask: u32,
    pub pad: u32,
}

/// One training sequence before masking.
#[derive(Debug, Clone, PartialEq)]
pub struct Sequence {
    pub kind: Kind,
    pub ids: Vec<u32>,
    pub type_ids: Vec<u32>,
    /// Joint sequences: whether text and video come from the same span.
    pub aligned: Option<bool>,
}

/// `[CLS] text [>] words [SEP]` (text or words may be absent; text tokens are WordPiece ids
/// without specials, words codebook ids). Cut to the configured lengths.
pub fn sequence(
    kind: Kind,
    text: &[u32],
    words: &[u32],
    aligned: Option<bool>,
    sp: Specials,
    layout: VocabLayout,
    cfg: &DataConfig,
) -> Sequence {
    let mut ids = vec![sp.cls];
    let mut type_ids = vec![0];
    if kind != Kind::VideoOnly {
        let t = &text[..text.len().min(cfg.max_text_tokens)];
        ids.extend_from_slice(t);
        type_ids.extend(std::iter::repeat_n(0, t.len()));
    }
    if kind != Kind::TextOnly {
        let w = &words[..words.len().min(cfg.max_visual_words)];
        ids.push(layout.video_start());
        ids.extend(w.iter().map(|&x| layout.word(x)));
        type_ids.extend(std::iter::repeat_n(1, w.len() + 1));
    }
    ids.push(sp.sep);
    type_ids.push(u32::from(kind != Kind::TextOnly));
    Sequence {
        kind,
        ids,
        type_ids,
        aligned,
    }
}

/// A sequence with its masked positions: text tokens by BERT's 80/10/10 with random text
/// tokens, visual words the same with random visual words (masked frame modelling).
#[derive(Debug, Clone, PartialEq)]
pub struct MaskedSequence {
    pub seq: Sequence,
    pub input: Vec<u32>,
    /// (position, original id) of masked text tokens.
    pub text_targets: Vec<(usize, u32)>,
    /// (position, original id) of masked visual words (ids in the joint vocabulary).
    pub word_targets: Vec<(usize, u32)>,
}

/// Mask the text part and the visual part of `seq` separately; a misaligned sequence keeps no
/// targets when `cfg.predict_misaligned` is false.
pub fn mask<R: Rng>(
    seq: Sequence,
    sp: Specials,
    layout: VocabLayout,
    cfg: &DataConfig,
    first_plain_token: u32,
    rng: &mut R,
) -> MaskedSequence {
    use crate::core::masking::{ClozeMasker, MaskStyle};
    let is_text = |id: u32| (id as usize) < layout.text_vocab && id != sp.cls && id != sp.sep;
    let text_pos: Vec<usize> = (0..seq.ids.len())
        .filter(|&i| is_text(seq.ids[i]))
        .collect();
    let word_pos: Vec<usize> = (0..seq.ids.len())
        .filter(|&i| layout.is_word(seq.ids[i]))
        .collect();
    let mut input = seq.ids.clone();
    let mut run = |positions: &[usize], p: f64, lo: u32, hi: u32| -> Vec<(usize, u32)> {
        if positions.is_empty() {
            return Vec::new();
        }
        let part: Vec<u32> = positions.iter().map(|&i| seq.ids[i]).collect();
        let masker = ClozeMasker {
            pad: u32::MAX,
            mask_token: sp.mask,
            p,
            max_predictions: usize::MAX,
            style: MaskStyle::BERT_80_10_10,
            random_range: lo..=hi,
            never_mask: Vec::new(),
        };
        let m = masker.mask(&part, rng);
        for (k, &i) in positions.iter().enumerate() {
            input[i] = m.input[k];
        }
        m.targets
            .iter()
            .map(|&(k, id)| (positions[k], id))
            .collect()
    };
    let text_targets = run(
        &text_pos,
        cfg.mlm_prob,
        first_plain_token,
        layout.text_vocab as u32 - 1,
    );
    let word_targets = run(
        &word_pos,
        cfg.mfm_prob,
        layout.word(0),
        layout.word(layout.visual_words as u32 - 1),
    );
    let (text_targets, word_targets) = if !cfg.predict_misaligned && seq.aligned == Some(false) {
        (Vec::new(), Vec::new())
    } else {
        (text_targets, word_targets)
    };
    MaskedSequence {
        seq,
        input,
        text_targets,
        word_targets,
    }
}

/// Which kind the next sequence is, by the configured proportions.
pub fn draw_kind<R: Rng>(cfg: &DataConfig, rng: &mut R) -> Kind {
    let total = cfg.joint + cfg.text_only + cfg.video_only;
    let u = rng.random::<f64>() * total;
    if u < cfg.joint {
        Kind::Joint
    } else if u < cfg.joint + cfg.text_only {
        Kind::TextOnly
    } else {
        Kind::VideoOnly
    }
}

/// Texts to WordPiece ids without specials (`TextTokenizer::encode_plain`).
pub type TextEncoder<'a> = dyn Fn(&[&str]) -> Result<Vec<Vec<u32>>> + 'a;

/// One epoch of masked sequences over `videos`: their pairs (in video order), each made a
/// joint, text-only or video-only sequence by the configured proportions; a joint sequence's
/// text is, with `misaligned_prob`, the text of a pair of another video. `encode` turns texts
/// into WordPiece ids without specials.
#[allow(clippy::too_many_arguments)]
pub fn epoch<R: Rng>(
    videos: &[TokenizedVideo],
    encode: &TextEncoder<'_>,
    sp: Specials,
    layout: VocabLayout,
    first_plain_token: u32,
    cfg: &DataConfig,
    rng: &mut R,
) -> Result<Vec<MaskedSequence>> {
    let all: Vec<Pair> = videos
        .iter()
        .enumerate()
        .flat_map(|(i, v)| pairs(v, i, cfg, rng))
        .collect();
    let texts: Vec<&str> = all.iter().map(|p| p.text.as_str()).collect();
    let ids = encode(&texts)?;
    let mut out = Vec::with_capacity(all.len());
    for (k, p) in all.iter().enumerate() {
        let kind = draw_kind(cfg, rng);
        let (text, aligned) = if kind == Kind::Joint && rng.random_bool(cfg.misaligned_prob) {
            // A text of another video; none when the corpus has one video.
            let others: Vec<usize> = (0..all.len())
                .filter(|&j| all[j].video != p.video)
                .collect();
            if others.is_empty() {
                (&ids[k], Some(true))
            } else {
                (&ids[others[rng.random_range(0..others.len())]], Some(false))
            }
        } else {
            (&ids[k], (kind == Kind::Joint).then_some(true))
        };
        let seq = sequence(kind, text, &p.words, aligned, sp, layout, cfg);
        out.push(mask(seq, sp, layout, cfg, first_plain_token, rng));
    }
    Ok(out)
}
