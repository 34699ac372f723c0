//! Zero-shot action classification (Sun et al., 2019, §4.2): the pretrained model fills a
//! template such as "now let me show you how to [MASK] the [MASK]" given a segment's visual
//! words, and the verb and object labels are ranked by what it predicts at the masks.
//!
//! Choices the paper leaves open, named:
//! - Labels of several word pieces ("slide left", "t-shirt"): a label is scored by the mean
//!   log-probability of its pieces, each at its own `[MASK]`, in the template filled with that
//!   label's text (as many masks as pieces). Probabilities are over the text vocabulary only.
//! - A verb's text may hold the object slot (`slide the {object} to the left`) for narration
//!   whose verbs are phrases; then the object is scored inside the top-scoring verb's phrase with
//!   the verb's own words still masked (one mask per piece), so the verb's prediction gives the
//!   object no words, only its length.
//! - Whole-vocabulary ranking (the paper's table) needs the plain template with one `[MASK]`
//!   per slot; a label counts as found at rank r when its text's first piece is the r-th
//!   most likely token.
//! - A segment's visual words are those of the clips whose middle lies in it (the clips
//!   overlapping it when none does); segments with no clip are skipped and counted.
//! - The language prior is the same model and template with no video (`[CLS] text [SEP]`, the
//!   text-only sequences of pretraining).

use super::data::{Specials, TokenizedVideo, VocabLayout};
use super::model::VideoBert;
use crate::core::error::InputError;
use crate::text::model::TokenBatch;
use crate::text::tokenize::TextTokenizer;
use anyhow::{bail, Context, Result};
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};
use serde::Serialize;
use std::collections::HashMap;
use std::path::Path;

/// The paper's zero-shot template.
pub const PAPER_TEMPLATE: &str = "now let me show you how to {verb} the {object}";

pub use crate::video::segments::{generated_corpus_dir, read_segments, LabelledSegment};

/// A label and the words that stand for it in the template.
#[derive(Debug, Clone, PartialEq)]
pub struct Label {
    pub name: String,
    pub text: String,
}

/// Labels a line each: `name`, or `name<TAB>text` when other words stand for it (a verb's text
/// may hold `{object}`).
pub fn read_labels(path: &Path) -> Result<Vec<Label>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut out: Vec<Label> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, words) = match line.split_once('\t') {
            Some((n, t)) => (n.trim(), t.trim()),
            None => (line.trim(), line.trim()),
        };
        if name.is_empty() || words.is_empty() {
            return Err(InputError::new(path, i + 1, None, "empty label").into());
        }
        if out.iter().any(|l| l.name == name) {
            return Err(InputError::new(path, i + 1, None, format!("{name:?} twice")).into());
        }
        out.push(Label {
            name: name.to_string(),
            text: words.to_string(),
        });
    }
    if out.len() < 2 {
        return Err(InputError::new(path, 0, None, "fewer than two labels").into());
    }
    Ok(out)
}

/// Top-1 and top-5 accuracies of one slot.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct SlotAccuracy {
    pub top1: f64,
    pub top5: f64,
    /// Chance: 1 and 5 over the number of labels.
    pub chance_top1: f64,
    pub chance_top5: f64,
}

/// One segment's ranked labels.
#[derive(Debug, Clone, Serialize)]
pub struct SegmentPrediction {
    #[serde(flatten)]
    pub segment: LabelledSegment,
    pub words: usize,
    pub verbs: Vec<String>,
    pub objects: Vec<String>,
    /// Whole-vocabulary top-5 tokens per slot (plain template only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vocabulary_verbs: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vocabulary_objects: Option<Vec<String>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ZeroShotReport {
    pub segments: usize,
    /// Segments skipped: no clip of their video in the span, or their video not in the words.
    pub skipped: usize,
    pub verb: SlotAccuracy,
    pub object: SlotAccuracy,
    /// Whole-vocabulary ranking (plain template only).
    pub vocabulary_verb: Option<SlotAccuracy>,
    pub vocabulary_object: Option<SlotAccuracy>,
    #[serde(skip)]
    pub predictions: Vec<SegmentPrediction>,
}

/// What a piece of a filled template is.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Role {
    Plain,
    /// Masked and scored.
    Scored,
    /// Masked, not scored.
    Masked,
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    Verb,
    Object,
}

fn parse_slots(text: &str) -> Vec<Part> {
    let mut parts = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find('{') {
        let (slot, len) = if rest[i..].starts_with("{verb}") {
            (Part::Verb, 6)
        } else if rest[i..].starts_with("{object}") {
            (Part::Object, 8)
        } else {
            parts.push(Part::Text(rest[..=i].to_string()));
            rest = &rest[i + 1..];
            continue;
        };
        if !rest[..i].trim().is_empty() {
            parts.push(Part::Text(rest[..i].trim().to_string()));
        }
        parts.push(slot);
        rest = &rest[i + len..];
    }
    if !rest.trim().is_empty() {
        parts.push(Part::Text(rest.trim().to_string()));
    }
    parts
}

/// The template and labels, checked: the template has `{verb}` once; `{object}` once either in
/// the template or in every verb's text.
pub struct ZeroShotSetup {
    template: Vec<Part>,
    verbs: Vec<(Label, Vec<Part>)>,
    objects: Vec<Label>,
    object_in_template: bool,
}

impl ZeroShotSetup {
    pub fn new(template: &str, verbs: Vec<Label>, objects: Vec<Label>) -> Result<Self> {
        let t = parse_slots(template);
        let count = |p: &[Part], s: &Part| p.iter().filter(|x| *x == s).count();
        if count(&t, &Part::Verb) != 1 {
            bail!("--template {template:?}: put {{verb}} in it once");
        }
        let object_in_template = match count(&t, &Part::Object) {
            0 => false,
            1 => true,
            _ => bail!("--template {template:?}: {{object}} more than once"),
        };
        let mut parsed = Vec::new();
        for v in verbs {
            let p = parse_slots(&v.text);
            if p.contains(&Part::Verb) {
                bail!("verb {:?}: its text {:?} holds {{verb}}", v.name, v.text);
            }
            let objects = count(&p, &Part::Object);
            if object_in_template && objects > 0 {
                bail!(
                    "verb {:?}: {{object}} is in both the template and the verb's text",
                    v.name
                );
            }
            if !object_in_template && objects != 1 {
                bail!(
                    "verb {:?}: the template has no {{object}}, so every verb's text must hold it \
                     once (e.g. \"slide the {{object}} to the left\")",
                    v.name
                );
            }
            if !p.iter().any(|x| matches!(x, Part::Text(_))) {
                bail!("verb {:?}: its text has no words", v.name);
            }
            parsed.push((v, p));
        }
        for o in &objects {
            if o.text.contains('{') {
                bail!("object {:?}: its text {:?} holds a slot", o.name, o.text);
            }
        }
        Ok(Self {
            template: t,
            verbs: parsed,
            objects,
            object_in_template,
        })
    }

    /// Whether the paper's whole-vocabulary ranking applies (one mask per slot).
    pub fn plain(&self) -> bool {
        self.object_in_template
    }
}

/// A filled template: text pieces with their roles.
type Filled = Vec<(String, Role)>;

fn fill(setup: &ZeroShotSetup, verb: Option<(usize, Role)>, object: Option<&str>) -> Filled {
    let mut out = Vec::new();
    let object_part = |out: &mut Filled| match object {
        Some(text) => out.push((text.to_string(), Role::Scored)),
        None => out.push(("[MASK]".to_string(), Role::Masked)),
    };
    for part in &setup.template {
        match part {
            Part::Text(t) => out.push((t.clone(), Role::Plain)),
            Part::Object => object_part(&mut out),
            Part::Verb => match verb {
                None => out.push(("[MASK]".to_string(), Role::Masked)),
                Some((v, role)) => {
                    for p in &setup.verbs[v].1 {
                        match p {
                            Part::Text(t) => out.push((t.clone(), role)),
                            Part::Object => object_part(&mut out),
                            Part::Verb => {}
                        }
                    }
                }
            },
        }
    }
    out
}

/// Token ids of a filled template and the (position, piece id) pairs to score.
type Encoded = (Vec<u32>, Vec<(usize, u32)>);

/// Token ids of a filled template: plain pieces as WordPiece gives them, masked pieces as that
/// many `[MASK]`s; returns the ids and, per piece position, the id to score there.
fn encode_filled(filled: &Filled, pieces: &HashMap<String, Vec<u32>>, mask: u32) -> Encoded {
    let mut ids = Vec::new();
    let mut scored = Vec::new();
    for (text, role) in filled {
        if text == "[MASK]" {
            ids.push(mask);
            continue;
        }
        let p = &pieces[text];
        match role {
            Role::Plain => ids.extend_from_slice(p),
            Role::Masked | Role::Scored => {
                for &id in p {
                    if *role == Role::Scored {
                        scored.push((ids.len(), id));
                    }
                    ids.push(mask);
                }
            }
        }
    }
    (ids, scored)
}

/// A sequence to run and where to read it.
struct Query {
    ids: Vec<u32>,
    type_ids: Vec<u32>,
    /// Positions (in the sequence) whose log-probabilities are wanted.
    positions: Vec<usize>,
    /// The one token id wanted at each position (a label's piece), or `None` for the whole text
    /// vocabulary: a label query keeps one value a position instead of a row of 30,000.
    wanted: Option<Vec<u32>>,
}

/// A query that reads the whole text vocabulary at `read`, or with `wanted`, one id each.
fn query(
    text: &[u32],
    words: Option<&[u32]>,
    read: &[usize],
    wanted: Option<Vec<u32>>,
    sp: Specials,
    layout: VocabLayout,
) -> Query {
    let mut ids = vec![sp.cls];
    ids.extend_from_slice(text);
    let mut type_ids = vec![0; ids.len()];
    if let Some(w) = words {
        ids.push(layout.video_start());
        ids.extend(w.iter().map(|&x| layout.word(x)));
        type_ids.resize(ids.len(), 1);
    }
    ids.push(sp.sep);
    type_ids.push(u32::from(words.is_some()));
    Query {
        ids,
        type_ids,
        positions: read.iter().map(|p| p + 1).collect(),
        wanted,
    }
}

/// Log-probabilities over the text vocabulary at the queries' positions: per query, per
/// position, a row of `text_vocab` values, or the one wanted id's value.
fn run_queries(
    model: &VideoBert,
    queries: &[Query],
    pad: u32,
    text_vocab: usize,
    batch_size: usize,
    device: &Device,
) -> Vec<Vec<Vec<f32>>> {
    let mut out = Vec::with_capacity(queries.len());
    for chunk in queries.chunks(batch_size.max(1)) {
        let len = chunk.iter().map(|q| q.ids.len()).max().unwrap_or(1);
        let b = chunk.len();
        let mut batch = TokenBatch {
            batch: b,
            len,
            ids: vec![pad; b * len],
            type_ids: vec![0; b * len],
            mask: vec![0; b * len],
        };
        let mut rows = Vec::new();
        for (r, q) in chunk.iter().enumerate() {
            let n = q.ids.len();
            batch.ids[r * len..r * len + n].copy_from_slice(&q.ids);
            batch.type_ids[r * len..r * len + n].copy_from_slice(&q.type_ids);
            batch.mask[r * len..r * len + n].fill(1);
            rows.extend(q.positions.iter().map(|&p| (r * len + p) as i64));
        }
        let hidden = model.forward(&batch, device);
        let [_, _, d] = hidden.dims();
        let n = rows.len();
        let idx = Tensor::<1, Int>::from_data(TensorData::new(rows, [n]), device);
        let picked = hidden.reshape([b * len, d]).select(0, idx);
        let logits = model.token_logits(picked).slice([0..n, 0..text_vocab]);
        let values: Vec<f32> = log_softmax(logits, 1)
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .unwrap_or_default();
        let mut at = 0;
        for q in chunk {
            let mut per = Vec::with_capacity(q.positions.len());
            for k in 0..q.positions.len() {
                let row = &values[at * text_vocab..(at + 1) * text_vocab];
                per.push(match &q.wanted {
                    Some(ids) => vec![row[ids[k] as usize]],
                    None => row.to_vec(),
                });
                at += 1;
            }
            out.push(per);
        }
    }
    out
}

/// The visual words of the clips of `video` that a segment covers
/// ([`crate::video::spans::segment_clips`]).
pub fn segment_words(video: &TokenizedVideo, start: f64, end: f64) -> Vec<u32> {
    crate::video::spans::segment_clips(&video.times, start, end)
        .into_iter()
        .map(|c| video.words[c])
        .collect()
}

fn ranked(scores: &[f32]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    order
}

/// Everything zero-shot needs from a model directory.
pub struct ZeroShotModel<'a> {
    pub model: &'a VideoBert,
    pub tok: &'a TextTokenizer,
    pub layout: VocabLayout,
    pub specials: Specials,
    pub max_positions: usize,
    pub batch_size: usize,
    pub device: &'a Device,
}

/// Zero-shot verb and object classification of `segments` from their videos' visual words
/// (`with_video`), or from the template alone (the language prior).
pub fn zero_shot(
    m: &ZeroShotModel,
    setup: &ZeroShotSetup,
    videos: &[TokenizedVideo],
    segments: &[LabelledSegment],
    with_video: bool,
) -> Result<ZeroShotReport> {
    let by_id: HashMap<&str, &TokenizedVideo> =
        videos.iter().map(|v| (v.video.as_str(), v)).collect();
    // Every text piece tokenised once.
    let mut texts: Vec<String> = Vec::new();
    for p in &setup.template {
        if let Part::Text(t) = p {
            texts.push(t.clone());
        }
    }
    for (_, parts) in &setup.verbs {
        for p in parts {
            if let Part::Text(t) = p {
                texts.push(t.clone());
            }
        }
    }
    texts.extend(setup.objects.iter().map(|o| o.text.clone()));
    texts.sort();
    texts.dedup();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let pieces: HashMap<String, Vec<u32>> = texts
        .iter()
        .cloned()
        .zip(m.tok.encode_plain(&refs)?)
        .collect();
    for (t, p) in &pieces {
        if p.is_empty() {
            bail!("{t:?} gives no word pieces");
        }
    }
    let mask = m.specials.mask;
    let verb_filled: Vec<Encoded> = (0..setup.verbs.len())
        .map(|v| encode_filled(&fill(setup, Some((v, Role::Scored)), None), &pieces, mask))
        .collect();
    let longest_text = verb_filled
        .iter()
        .map(|(ids, _)| ids.len())
        .max()
        .unwrap_or(0)
        + setup
            .objects
            .iter()
            .map(|o| pieces[&o.text].len())
            .max()
            .unwrap_or(1);
    if longest_text + 3 > m.max_positions {
        bail!(
            "the filled template is {longest_text} tokens; with [CLS], [>] and [SEP] it passes the \
             model's {} positions",
            m.max_positions
        );
    }
    let plain = setup
        .plain()
        .then(|| encode_filled(&fill(setup, None, None), &pieces, mask));
    let mut kept = Vec::new();
    let mut skipped = 0;
    let mut seg_words = Vec::new();
    for s in segments {
        let Some(v) = by_id.get(s.video.as_str()) else {
            skipped += 1;
            continue;
        };
        let mut w = segment_words(v, s.start, s.end);
        if w.is_empty() {
            skipped += 1;
            continue;
        }
        w.truncate(m.max_positions - longest_text - 3);
        kept.push(s.clone());
        seg_words.push(w);
    }
    if kept.is_empty() {
        bail!(
            "no segment has visual words: are the segments' videos in the words file ({} videos, \
             e.g. {:?})?",
            videos.len(),
            videos.first().map(|v| v.video.as_str()).unwrap_or("")
        );
    }
    let words_of = |i: usize| with_video.then(|| seg_words[i].as_slice());
    // Without video every segment asks the same questions: ask them once.
    let distinct = if with_video { kept.len() } else { 1 };
    let row_of = |i: usize| if with_video { i } else { 0 };
    // A label query's rows hold the wanted piece's value alone.
    let label_score = |rows: &[Vec<f32>]| -> f32 {
        rows.iter().map(|row| row[0]).sum::<f32>() / rows.len() as f32
    };
    let split = |scored: &[(usize, u32)]| -> (Vec<usize>, Option<Vec<u32>>) {
        (
            scored.iter().map(|(p, _)| *p).collect(),
            Some(scored.iter().map(|(_, id)| *id).collect()),
        )
    };
    // Verbs: one query per (segment, verb).
    let mut queries = Vec::new();
    for i in 0..distinct {
        for (ids, scored) in &verb_filled {
            let (read, wanted) = split(scored);
            queries.push(query(ids, words_of(i), &read, wanted, m.specials, m.layout));
        }
    }
    let text_vocab = m.layout.text_vocab;
    let run = |queries: &[Query]| {
        run_queries(
            m.model,
            queries,
            m.specials.pad,
            text_vocab,
            m.batch_size,
            m.device,
        )
    };
    let rows = run(&queries);
    let nv = setup.verbs.len();
    let verb_order: Vec<Vec<usize>> = (0..distinct)
        .map(|i| {
            let scores: Vec<f32> = (0..nv).map(|v| label_score(&rows[i * nv + v])).collect();
            ranked(&scores)
        })
        .collect();
    // Objects: one query per (segment, object), inside the top verb's phrase when the verb
    // text holds the object slot.
    let mut queries = Vec::new();
    for (i, order) in verb_order.iter().enumerate() {
        let context = (!setup.object_in_template).then_some((order[0], Role::Masked));
        for o in &setup.objects {
            let (ids, scored) = encode_filled(&fill(setup, context, Some(&o.text)), &pieces, mask);
            let (read, wanted) = split(&scored);
            queries.push(query(
                &ids,
                words_of(i),
                &read,
                wanted,
                m.specials,
                m.layout,
            ));
        }
    }
    let rows = run(&queries);
    let no = setup.objects.len();
    let object_order: Vec<Vec<usize>> = (0..distinct)
        .map(|i| {
            let scores: Vec<f32> = (0..no).map(|o| label_score(&rows[i * no + o])).collect();
            ranked(&scores)
        })
        .collect();
    // Whole vocabulary: the plain template, one mask per slot.
    let vocabulary = match &plain {
        Some((ids, _)) => {
            let masks: Vec<usize> = ids
                .iter()
                .enumerate()
                .filter(|(_, &id)| id == mask)
                .map(|(p, _)| p)
                .collect();
            let queries: Vec<Query> = (0..distinct)
                .map(|i| query(ids, words_of(i), &masks, None, m.specials, m.layout))
                .collect();
            let rows = run(&queries);
            // Which mask is the verb's: the template's order of slots.
            let verb_first = setup
                .template
                .iter()
                .find(|p| matches!(p, Part::Verb | Part::Object))
                == Some(&Part::Verb);
            Some(
                rows.into_iter()
                    .map(|r| {
                        let (v, o) = if verb_first { (0, 1) } else { (1, 0) };
                        (ranked(&r[v]), ranked(&r[o]))
                    })
                    .collect::<Vec<_>>(),
            )
        }
        None => None,
    };
    // Accuracies.
    let mut verb_hits = [0usize; 2];
    let mut object_hits = [0usize; 2];
    let mut vocab_hits = [[0usize; 2]; 2];
    let mut predictions = Vec::new();
    let mut unknown = Vec::new();
    for (i, s) in kept.iter().enumerate() {
        let truth_v = setup.verbs.iter().position(|(l, _)| l.name == s.verb);
        let truth_o = setup.objects.iter().position(|l| l.name == s.object);
        if truth_v.is_none() {
            unknown.push(format!("verb {:?}", s.verb));
        }
        if truth_o.is_none() {
            unknown.push(format!("object {:?}", s.object));
        }
        for (hits, order, truth) in [
            (&mut verb_hits, &verb_order[row_of(i)], truth_v),
            (&mut object_hits, &object_order[row_of(i)], truth_o),
        ] {
            if let Some(t) = truth {
                let rank = order.iter().position(|&x| x == t).unwrap_or(usize::MAX);
                hits[0] += usize::from(rank < 1);
                hits[1] += usize::from(rank < 5);
            }
        }
        let mut prediction = SegmentPrediction {
            segment: s.clone(),
            words: seg_words[i].len(),
            verbs: verb_order[row_of(i)]
                .iter()
                .take(5)
                .map(|&v| setup.verbs[v].0.name.clone())
                .collect(),
            objects: object_order[row_of(i)]
                .iter()
                .take(5)
                .map(|&o| setup.objects[o].name.clone())
                .collect(),
            vocabulary_verbs: None,
            vocabulary_objects: None,
        };
        if let Some(v) = &vocabulary {
            let i = row_of(i);
            let token = |id: usize| m.tok.id_to_token(id as u32).unwrap_or_default();
            let first_piece = |text: &str| pieces.get(text).map(|p| p[0] as usize);
            let truths = [
                truth_v.and_then(|t| first_piece(&setup.verbs[t].0.text)),
                truth_o.and_then(|t| first_piece(&setup.objects[t].text)),
            ];
            for (k, order) in [&v[i].0, &v[i].1].into_iter().enumerate() {
                if let Some(t) = truths[k] {
                    let rank = order.iter().position(|&x| x == t).unwrap_or(usize::MAX);
                    vocab_hits[k][0] += usize::from(rank < 1);
                    vocab_hits[k][1] += usize::from(rank < 5);
                }
            }
            prediction.vocabulary_verbs = Some(v[i].0.iter().take(5).map(|&t| token(t)).collect());
            prediction.vocabulary_objects =
                Some(v[i].1.iter().take(5).map(|&t| token(t)).collect());
        }
        predictions.push(prediction);
    }
    if !unknown.is_empty() {
        unknown.sort();
        unknown.dedup();
        bail!(
            "the segments have labels the label files lack: {}",
            unknown.join(", ")
        );
    }
    let n = kept.len() as f64;
    let slot = |hits: [usize; 2], labels: usize| SlotAccuracy {
        top1: hits[0] as f64 / n,
        top5: hits[1] as f64 / n,
        chance_top1: 1.0 / labels as f64,
        chance_top5: (5.0 / labels as f64).min(1.0),
    };
    Ok(ZeroShotReport {
        segments: kept.len(),
        skipped,
        verb: slot(verb_hits, nv),
        object: slot(object_hits, no),
        vocabulary_verb: vocabulary.as_ref().map(|_| slot(vocab_hits[0], text_vocab)),
        vocabulary_object: vocabulary.as_ref().map(|_| slot(vocab_hits[1], text_vocab)),
        predictions,
    })
}

/// The template of the generated corpus's narration and its labels: verbs as the phrases the
/// narration says (`make the {object} bigger`), objects as named.
pub fn generated_corpus_labels() -> (&'static str, Vec<Label>, Vec<Label>) {
    use crate::corpora::scenes::{DIGIT_LABELS, FASHION_LABELS};
    use crate::corpora::videos::{phrase, VERBS};
    let verbs = VERBS
        .iter()
        .map(|v| Label {
            name: v.to_string(),
            text: phrase(v, "{object}"),
        })
        .collect();
    let objects = DIGIT_LABELS
        .iter()
        .chain(FASHION_LABELS.iter())
        .map(|o| Label {
            name: o.to_string(),
            text: o.to_string(),
        })
        .collect();
    ("now let me show you how to {verb}", verbs, objects)
}

/// VideoBERT's features of a video's clips: the last hidden state at each visual word of the
/// video-only sequence `[CLS] [>] words [SEP]` (pretraining's video-only layout), the words
/// taken in consecutive windows of at most `window` (named choice for videos longer than the
/// positions). Returns `[T, hidden]`, row t for clip t.
pub fn video_features(
    model: &VideoBert,
    words: &[u32],
    window: usize,
    sp: Specials,
    layout: VocabLayout,
    device: &Device,
) -> Vec<f32> {
    let mut out = Vec::new();
    for chunk in words.chunks(window.max(1)) {
        let mut ids = vec![sp.cls, layout.video_start()];
        ids.extend(chunk.iter().map(|&w| layout.word(w)));
        ids.push(sp.sep);
        let mut type_ids = vec![1; ids.len()];
        type_ids[0] = 0;
        let len = ids.len();
        let batch = TokenBatch {
            batch: 1,
            len,
            ids,
            type_ids,
            mask: vec![1; len],
        };
        let hidden = model.forward(&batch, device);
        let d = hidden.dims()[2];
        let rows: Vec<f32> = hidden
            .reshape([len, d])
            .slice([2..2 + chunk.len(), 0..d])
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .unwrap_or_default();
        out.extend(rows);
    }
    out
}
