//! METEOR 1.5 (Denkowski and Lavie, 2014) as the COCO caption evaluation runs it: `java -jar
//! meteor-1.5.jar - - -stdio -l en -norm` fed one `SCORE` line per caption and one `EVAL` line
//! for the corpus (`pycocoevalcap.meteor`).
//!
//! - Normalisation as `-norm` (METEOR's `Normalizer` for English, punctuation kept), then lower
//!   case; tokens split on white space.
//! - Alignment as METEOR's `Aligner`: candidate matches from four modules in order (exact,
//!   Snowball stems, WordNet synsets, the paraphrase table), then a beam search (40 wide) over
//!   the reference's positions ranking partial alignments by weighted matches, then chunks, then
//!   distance. Its quirks are kept, since they decide the figures: the ranking adds each match's
//!   words times the module's weight (1 exact, 0.5 others) to an integer, which truncates, so a
//!   non-exact match never adds to the ranking and an alignment without any exact match ends
//!   empty; the distance of a skipped position is charged to the path that skips it.
//! - Scores as `MeteorScorer` with the English `rank` parameters (alpha 0.85, beta 0.2, gamma
//!   0.6, delta 0.75, module weights 1, 0.6, 0.8, 0.6): of several references the first best
//!   scoring one; the corpus score from the summed statistics (`MeteorStats.addStats`).
//! - Resources are the jar's own files (function words, non-breaking prefixes, WordNet synsets
//!   and exceptions) and its English paraphrase table, read from the directory
//!   `scripts/fetch-data.sh meteor` fills. The table holds 5.3 million entries; only those whose
//!   words all occur in the captions being scored can match, so only they are kept.
//!
//! Deviation (named): stems come from the `rust-stemmers` Snowball English (Porter2) stemmer;
//! METEOR bundles an older build of the same Snowball algorithm.

// The loops over positions keep the order in which METEOR's Java collects candidate matches: the
// beam search breaks ties by that order.
#![allow(clippy::needless_range_loop)]

use anyhow::{bail, Context, Result};
use regex::Regex;
use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

const ALPHA: f64 = 0.85;
const BETA: f64 = 0.20;
const GAMMA: f64 = 0.60;
const DELTA: f64 = 0.75;
/// Scoring weights of exact, stem, synonym and paraphrase matches (English, `rank` task).
const MODULE_WEIGHTS: [f64; 4] = [1.0, 0.6, 0.8, 0.6];
/// The weights `MeteorScorer` gives its aligner for ranking partial alignments.
const ALIGN_WEIGHTS: [f64; 4] = [1.0, 0.5, 0.5, 0.5];
const BEAM: usize = 40;

/// Java's `String.hashCode`: METEOR compares words (and stems) by it.
fn java_hash(s: &str) -> i32 {
    s.encode_utf16()
        .fold(0i32, |h, u| h.wrapping_mul(31).wrapping_add(u as i32))
}

/// The letters of METEOR's normaliser (Latin, Latin-1, Cyrillic, phonetic extensions).
const ALPHA_CLASS: &str = r"A-Za-z\x{160}\x{17D}\x{161}\x{17E}\x{178}\x{C0}-\x{D6}\x{D8}-\x{F6}\x{F8}-\x{17E}\x{400}-\x{4FF}\x{500}-\x{527}\x{A640}-\x{A66E}\x{A67E}-\x{A697}\x{1D00}-\x{1D7F}";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Prefix {
    Any,
    NumericOnly,
}

/// METEOR's `Normalizer.normalizeLine` for English with punctuation kept.
struct Normalizer {
    sep_other: Regex,
    multi_dot: Regex,
    multi_dot2: Regex,
    comma: [Regex; 3],
    quote: Regex,
    quote2: Regex,
    rm_dash: Regex,
    cont: [Regex; 5],
    white: Regex,
    letter: Regex,
    prefixes: HashMap<String, Prefix>,
}

impl Normalizer {
    fn new(prefix_file: &str) -> Self {
        let alpha = ALPHA_CLASS;
        let alnum = format!("0-9{alpha}");
        let re = |p: &str| Regex::new(p).expect("METEOR normaliser pattern");
        let mut prefixes = HashMap::new();
        for line in prefix_file.lines() {
            let mut tok = line
                .split([' ', '\t', '\n', '\r', '\x0C'])
                .filter(|t| !t.is_empty());
            let Some(pre) = tok.next() else { continue };
            if pre.starts_with('#') {
                continue;
            }
            let kind = if tok.next() == Some("#NUMERIC_ONLY#") {
                Prefix::NumericOnly
            } else {
                Prefix::Any
            };
            prefixes.insert(pre.to_string(), kind);
        }
        Normalizer {
            sep_other: re(&format!(
                r"([^{alnum}\t\n\x0B\x0C\r \.'`,\-\x{{2018}}\x{{2019}}])"
            )),
            multi_dot: re(r"\.([\.]+)"),
            multi_dot2: re(r"DOTMULTI\.([^\.])"),
            comma: [
                re(r"([^0-9])[,]([^0-9])"),
                re(r"([0-9])[,]([^0-9])"),
                re(r"([^0-9])[,]([0-9])"),
            ],
            quote: re(r"([`\x{2018}\x{2019}])"),
            quote2: re(r"([\x{201C}\x{201D}]|'')"),
            rm_dash: re(&format!(r"([{alnum}\.])[\-]([{alnum}])")),
            cont: [
                re(&format!(r"([^{alpha}])[']([^{alpha}])")),
                re(&format!(r"([^{alpha}0-9])[']([{alpha}])")),
                re(&format!(r"([{alpha}])[']([^{alpha}])")),
                re(&format!(r"([{alpha}])[']([{alpha}])")),
                re(r"([0-9])[']([s])"),
            ],
            white: re(r"[ \x{2000}-\x{200A}\x{202F}\x{205F}\x{3000}\x{A0}]+"),
            letter: re(&format!("[{alpha}]")),
            prefixes,
        }
    }

    fn normalize(&self, line: &str) -> String {
        let mut w = format!(" {line} ");
        w = self.sep_other.replace_all(&w, " ${1} ").into_owned();
        w = self.multi_dot.replace_all(&w, " DOTMULTI${1}").into_owned();
        while w.contains("DOTMULTI.") {
            w = self
                .multi_dot2
                .replace_all(&w, "DOTDOTMULTI ${1}")
                .into_owned();
            w = w.replace("DOTMULTI.", "DOTDOTMULTI");
        }
        for r in &self.comma {
            w = r.replace_all(&w, "${1} , ${2}").into_owned();
        }
        w = self.quote.replace_all(&w, "'").into_owned();
        w = self.quote2.replace_all(&w, " \" ").into_owned();
        w = w.replace('\u{2013}', "-").replace("--", "-");
        w = self.rm_dash.replace_all(&w, "${1} ${2}").into_owned();
        for (k, r) in self.cont.iter().enumerate() {
            let with = if k < 3 { "${1} ' ${2}" } else { "${1} '${2}" };
            w = r.replace_all(&w, with).into_owned();
        }
        let words = java_tokens(&w);
        let mut out = String::new();
        for (i, word) in words.iter().enumerate() {
            if word.encode_utf16().count() > 1 && word.ends_with('.') {
                let pre = &word[..word.len() - 1];
                let kind = self.prefixes.get(pre).copied();
                let next = words.get(i + 1);
                if pre.contains('.') && self.letter.is_match(pre) {
                    out.push_str(&word.replace('.', ""));
                } else if kind == Some(Prefix::Any)
                    // Followed by lower case: not a sentence end.
                    || next.is_some_and(|n| n.starts_with(|c: char| c.is_ascii_lowercase()))
                    // A prefix only before numbers ("No. 5").
                    || (kind == Some(Prefix::NumericOnly)
                        && next.is_some_and(|n| n.starts_with(|c: char| c.is_ascii_digit())))
                {
                    out.push_str(word);
                } else {
                    out.push_str(pre);
                    out.push_str(" .");
                }
            } else {
                out.push_str(word);
            }
            out.push(' ');
        }
        while out.contains("DOTDOTMULTI") {
            out = out.replace("DOTDOTMULTI", "DOTMULTI.");
        }
        out = out.replace("DOTMULTI", ".");
        let out = self.white.replace_all(&out, " ");
        out.trim_matches(|c: char| c <= ' ').to_string()
    }
}

/// Java's `StringTokenizer` with its default delimiters.
fn java_tokens(s: &str) -> Vec<&str> {
    s.split([' ', '\t', '\n', '\r', '\x0C'])
        .filter(|t| !t.is_empty())
        .collect()
}

/// WordNet synsets of words and of their base forms (METEOR's `SynonymDictionary`).
struct Synonyms {
    bases: HashMap<String, Vec<String>>,
    synsets: HashMap<String, HashSet<i32>>,
}

const MORPH_SUFFIXES: [&str; 20] = [
    "s", "ses", "xes", "zes", "ches", "shes", "men", "ies", "s", "ies", "es", "es", "ed", "ed",
    "ing", "ing", "er", "est", "er", "est",
];
const MORPH_ENDINGS: [&str; 20] = [
    "", "s", "x", "z", "ch", "sh", "man", "y", "", "y", "e", "", "e", "", "e", "", "", "", "e", "e",
];

impl Synonyms {
    fn new(exceptions: &str, synsets_text: &str) -> Result<Self> {
        let mut bases: HashMap<String, Vec<String>> = HashMap::new();
        let mut lines = exceptions.lines();
        while let Some(base) = lines.next() {
            let forms = lines.next().unwrap_or("");
            for form in java_tokens(forms) {
                bases
                    .entry(form.to_string())
                    .or_default()
                    .push(base.to_string());
            }
        }
        let mut synsets = HashMap::new();
        let mut lines = synsets_text.lines();
        while let Some(word) = lines.next() {
            let ids = lines.next().unwrap_or("");
            let set = java_tokens(ids)
                .into_iter()
                .map(|t| t.parse::<i32>())
                .collect::<std::result::Result<HashSet<i32>, _>>()
                .with_context(|| format!("synset ids of {word:?}"))?;
            synsets.insert(word.to_string(), set);
        }
        Ok(Synonyms { bases, synsets })
    }

    fn sets(&self, word: &str) -> HashSet<i32> {
        let mut out = self.synsets.get(word).cloned().unwrap_or_default();
        match self.bases.get(word) {
            Some(bases) => {
                for b in bases {
                    if let Some(s) = self.synsets.get(b) {
                        out.extend(s);
                    }
                }
            }
            None => {
                if let Some(s) = self.synsets.get(&self.morph(word)) {
                    out.extend(s);
                }
            }
        }
        out
    }

    /// WordNet's suffix rules: the first rule whose base form has synsets.
    fn morph(&self, word: &str) -> String {
        let end = if word.ends_with("ful") { "ful" } else { "" };
        if word.ends_with("ss") || word.encode_utf16().count() <= 2 {
            return word.to_string();
        }
        for (suffix, ending) in MORPH_SUFFIXES.iter().zip(MORPH_ENDINGS) {
            if let Some(stem) = word.strip_suffix(suffix) {
                let candidate = format!("{stem}{ending}");
                if self.synsets.contains_key(&candidate) {
                    return candidate + end;
                }
            }
        }
        String::new()
    }
}

/// The paraphrase table as METEOR's `ParaphraseTransducer`: a trie over reference phrases whose
/// nodes emit paraphrases, in the table's order.
#[derive(Default)]
struct Paraphrases {
    vocab: HashMap<String, u32>,
    edges: HashMap<(u32, u32), u32>,
    emits: Vec<Vec<u32>>,
    phrases: Vec<Vec<u32>>,
}

impl Paraphrases {
    /// Entries whose words are all in `keep` (the words of the captions scored).
    fn load(path: &Path, keep: &HashSet<String>) -> Result<Self> {
        let file =
            std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
        let mut reader = BufReader::with_capacity(1 << 20, flate2::read::GzDecoder::new(file));
        let mut p = Paraphrases {
            emits: vec![Vec::new()],
            ..Default::default()
        };
        let (mut prob, mut reference, mut paraphrase) =
            (String::new(), String::new(), String::new());
        let mut entry = 0usize;
        let bad = |e: std::io::Error| {
            anyhow::anyhow!("{}: not a gzipped paraphrase table ({e})", path.display())
        };
        loop {
            prob.clear();
            if reader.read_line(&mut prob).map_err(bad)? == 0 {
                break;
            }
            reference.clear();
            paraphrase.clear();
            reader.read_line(&mut reference).map_err(bad)?;
            reader.read_line(&mut paraphrase).map_err(bad)?;
            let r = java_tokens(&reference);
            let q = java_tokens(&paraphrase);
            if r.iter().chain(&q).all(|w| keep.contains(*w)) {
                let r: Vec<u32> = r.iter().map(|w| p.id(w)).collect();
                let q: Vec<u32> = q.iter().map(|w| p.id(w)).collect();
                let mut node = 0u32;
                for w in r {
                    let next = p.emits.len() as u32;
                    node = *p.edges.entry((node, w)).or_insert_with(|| next);
                    if node == next {
                        p.emits.push(Vec::new());
                    }
                }
                p.emits[node as usize].push(p.phrases.len() as u32);
                p.phrases.push(q);
            }
            entry += 1;
        }
        if entry == 0 {
            bail!("{}: an empty paraphrase table", path.display());
        }
        Ok(p)
    }

    fn id(&mut self, word: &str) -> u32 {
        let n = self.vocab.len() as u32;
        *self.vocab.entry(word.to_string()).or_insert(n)
    }

    fn translate(&self, word: &str) -> i64 {
        self.vocab.get(word).map_or(-1, |&i| i as i64)
    }

    /// Every phrase of the table found in `from` whose paraphrase occurs in `to`, as (start and
    /// length in `from`, start and length in `to`), in METEOR's order (`ParaphraseMatcher`).
    fn phrase_matches(&self, from: &[i64], to: &[i64]) -> Vec<(usize, usize, usize, usize)> {
        let mut out = Vec::new();
        for f in 0..from.len() {
            for (len, p) in self.paths(from, f) {
                let words = &self.phrases[p as usize];
                for t in 0..to.len() {
                    let occurs = words
                        .iter()
                        .enumerate()
                        .all(|(k, &w)| t + k < to.len() && to[t + k] == w as i64);
                    if occurs {
                        out.push((f, len, t, words.len()));
                    }
                }
            }
        }
        out
    }

    /// (length, paraphrase) of every reference phrase starting at `start`.
    fn paths(&self, words: &[i64], start: usize) -> Vec<(usize, u32)> {
        let mut out = Vec::new();
        let mut node = 0u32;
        for (i, &w) in words[start..].iter().enumerate() {
            if w < 0 {
                break;
            }
            match self.edges.get(&(node, w as u32)) {
                Some(&n) => node = n,
                None => break,
            }
            for &e in &self.emits[node as usize] {
                out.push((i + 1, e));
            }
        }
        out
    }
}

#[derive(Debug, Clone, Copy)]
struct Match {
    /// Reference start and length.
    start: usize,
    length: usize,
    /// Candidate start and length.
    match_start: usize,
    match_length: usize,
    module: usize,
}

#[derive(Clone)]
struct Partial {
    matches: Vec<Option<Match>>,
    matches1: i32,
    matches2: i32,
    chunks: i32,
    idx: usize,
    last_match_end: i64,
    distance: i32,
    used1: Vec<bool>,
    used2: Vec<bool>,
}

impl Partial {
    fn is_used(&self, m: &Match) -> bool {
        self.used2[m.start..m.start + m.length].iter().any(|&u| u)
            || self.used1[m.match_start..m.match_start + m.match_length]
                .iter()
                .any(|&u| u)
    }

    fn set_used(&mut self, m: &Match) {
        self.used2[m.start..m.start + m.length].fill(true);
        self.used1[m.match_start..m.match_start + m.match_length].fill(true);
    }

    /// Takes `m` into the path (the accounting `Aligner.resolve` does).
    fn take(&mut self, m: &Match) {
        // Java's `int += double`: the weighted words truncate into the integer count.
        self.matches1 =
            (self.matches1 as f64 + m.match_length as f64 * ALIGN_WEIGHTS[m.module]) as i32;
        self.matches2 = (self.matches2 as f64 + m.length as f64 * ALIGN_WEIGHTS[m.module]) as i32;
        if self.last_match_end != -1 && m.match_start as i64 != self.last_match_end {
            self.chunks += 1;
        }
        self.idx = m.start + m.length;
        self.last_match_end = (m.match_start + m.match_length) as i64;
    }
}

/// `Constants.PARTIAL_COMPARE_TOTAL`: more weighted matches, then fewer chunks, then less
/// distance.
fn compare(x: &Partial, y: &Partial) -> Ordering {
    ((y.matches1 + y.matches2).cmp(&(x.matches1 + x.matches2)))
        .then(x.chunks.cmp(&y.chunks))
        .then(x.distance.cmp(&y.distance))
}

/// METEOR's sufficient statistics of one candidate against one reference (`MeteorStats`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MeteorStats {
    pub test_length: f64,
    pub reference_length: f64,
    pub test_function_words: f64,
    pub reference_function_words: f64,
    /// Per module (exact, stem, synonym, paraphrase): content and function words matched.
    pub test_content: [f64; 4],
    pub reference_content: [f64; 4],
    pub test_function: [f64; 4],
    pub reference_function: [f64; 4],
    pub chunks: f64,
    pub test_word_matches: f64,
    pub reference_word_matches: f64,
}

impl MeteorStats {
    fn total(&self) -> (f64, f64) {
        let t: f64 = (0..4)
            .map(|i| self.test_content[i] + self.test_function[i])
            .sum();
        let r: f64 = (0..4)
            .map(|i| self.reference_content[i] + self.reference_function[i])
            .sum();
        (t, r)
    }

    fn perfect(&self) -> bool {
        let (t, r) = self.total();
        t == self.test_length && r == self.reference_length && self.chunks == 1.0
    }

    /// `MeteorStats.addStats`: a perfect match adds no chunk.
    pub fn add(&mut self, s: &MeteorStats) {
        self.test_length += s.test_length;
        self.reference_length += s.reference_length;
        self.test_function_words += s.test_function_words;
        self.reference_function_words += s.reference_function_words;
        for i in 0..4 {
            self.test_content[i] += s.test_content[i];
            self.reference_content[i] += s.reference_content[i];
            self.test_function[i] += s.test_function[i];
            self.reference_function[i] += s.reference_function[i];
        }
        if !s.perfect() {
            self.chunks += s.chunks;
        }
        self.test_word_matches += s.test_word_matches;
        self.reference_word_matches += s.reference_word_matches;
    }

    /// The METEOR score of these statistics (`MeteorScorer.computeMetrics`).
    pub fn score(&self) -> f64 {
        let test_len = DELTA * (self.test_length - self.test_function_words)
            + (1.0 - DELTA) * self.test_function_words;
        let ref_len = DELTA * (self.reference_length - self.reference_function_words)
            + (1.0 - DELTA) * self.reference_function_words;
        let mut test_matches = 0.0;
        let mut ref_matches = 0.0;
        for i in 0..4 {
            test_matches += self.test_content[i] * MODULE_WEIGHTS[i] * DELTA;
        }
        for i in 0..4 {
            ref_matches += self.reference_content[i] * MODULE_WEIGHTS[i] * DELTA;
        }
        for i in 0..4 {
            test_matches += self.test_function[i] * MODULE_WEIGHTS[i] * (1.0 - DELTA);
        }
        for i in 0..4 {
            ref_matches += self.reference_function[i] * MODULE_WEIGHTS[i] * (1.0 - DELTA);
        }
        let precision = test_matches / test_len;
        let recall = ref_matches / ref_len;
        let f_mean = 1.0 / ((1.0 - ALPHA) / precision + ALPHA / recall);
        let frag = if self.perfect() {
            0.0
        } else {
            self.chunks / ((self.test_word_matches + self.reference_word_matches) / 2.0)
        };
        let score = f_mean * (1.0 - GAMMA * frag.powf(BETA));
        if score.is_nan() {
            0.0
        } else {
            score.max(0.0)
        }
    }
}

/// Corpus METEOR and the per-caption scores.
#[derive(Debug, Clone, PartialEq)]
pub struct MeteorScores {
    pub corpus: f64,
    pub per_caption: Vec<f64>,
}

/// METEOR with its English resources loaded.
pub struct Meteor {
    normalizer: Normalizer,
    function_words: HashSet<String>,
    synonyms: Synonyms,
    paraphrases: Paraphrases,
    stemmer: rust_stemmers::Stemmer,
}

/// A text file inside METEOR's jar.
fn jar_text(jar: &mut zip::ZipArchive<std::fs::File>, name: &str, path: &Path) -> Result<String> {
    let mut f = jar
        .by_name(name)
        .with_context(|| format!("{}: no {name} inside (not meteor-1.5.jar?)", path.display()))?;
    let mut s = String::new();
    f.read_to_string(&mut s)
        .with_context(|| format!("{}: {name} is not UTF-8 text", path.display()))?;
    Ok(s)
}

impl Meteor {
    /// Loads the resources from `dir` (`meteor-1.5.jar`, `paraphrase-en.gz`), keeping the
    /// paraphrases that can match between the sentences of `texts` (raw captions).
    pub fn load<'a>(dir: &Path, texts: impl IntoIterator<Item = &'a str>) -> Result<Self> {
        let jar_path = dir.join("meteor-1.5.jar");
        let file = std::fs::File::open(&jar_path).with_context(|| {
            format!(
                "cannot read {} (METEOR's resources: `bash scripts/fetch-data.sh meteor`)",
                jar_path.display()
            )
        })?;
        let mut jar = zip::ZipArchive::new(file)
            .with_context(|| format!("{} is not a jar", jar_path.display()))?;
        let normalizer = Normalizer::new(&jar_text(
            &mut jar,
            "nonbreaking/english.prefixes",
            &jar_path,
        )?);
        let function_words = jar_text(&mut jar, "function/english.words", &jar_path)?
            .lines()
            .map(str::to_string)
            .collect();
        let synonyms = Synonyms::new(
            &jar_text(&mut jar, "synonym/english.exceptions", &jar_path)?,
            &jar_text(&mut jar, "synonym/english.synsets", &jar_path)?,
        )
        .with_context(|| format!("{}: synonym/english.synsets", jar_path.display()))?;
        let mut meteor = Meteor {
            normalizer,
            function_words,
            synonyms,
            paraphrases: Paraphrases::default(),
            stemmer: rust_stemmers::Stemmer::create(rust_stemmers::Algorithm::English),
        };
        let mut keep = HashSet::new();
        for t in texts {
            for w in java_tokens(&meteor.prepare(t)) {
                keep.insert(w.to_string());
            }
        }
        meteor.paraphrases = Paraphrases::load(&dir.join("paraphrase-en.gz"), &keep)?;
        Ok(meteor)
    }

    /// `-norm`: normalised, then lower case.
    fn prepare(&self, text: &str) -> String {
        self.normalizer.normalize(text).to_lowercase()
    }

    /// The statistics of a candidate against its best reference (raw text; normalised here).
    pub fn stats(&self, candidate: &str, references: &[String]) -> MeteorStats {
        let test = self.prepare(candidate);
        let mut best: Option<(f64, MeteorStats)> = None;
        for r in references {
            let s = self.align(&test, &self.prepare(r));
            let score = s.score();
            if best.as_ref().is_none_or(|(b, _)| score > *b) {
                best = Some((score, s));
            }
        }
        best.map(|(_, s)| s).unwrap_or_default()
    }

    /// Corpus and per-caption METEOR of candidates with their references.
    pub fn score(&self, pairs: &[(&str, &[String])]) -> MeteorScores {
        let mut total = MeteorStats::default();
        let mut per_caption = Vec::with_capacity(pairs.len());
        for (c, refs) in pairs {
            let s = self.stats(c, refs);
            per_caption.push(s.score());
            total.add(&s);
        }
        MeteorScores {
            corpus: total.score(),
            per_caption,
        }
    }

    /// `Aligner.align` of a candidate (line 1) with a reference (line 2), both normalised.
    fn align(&self, test: &str, reference: &str) -> MeteorStats {
        let w1 = java_tokens(test);
        let w2 = java_tokens(reference);
        let k1: Vec<i32> = w1.iter().map(|w| java_hash(w)).collect();
        let k2: Vec<i32> = w2.iter().map(|w| java_hash(w)).collect();
        let mut matches: Vec<Vec<Match>> = vec![Vec::new(); w2.len()];
        let mut cover1 = vec![0u32; w1.len()];
        let mut cover2 = vec![0u32; w2.len()];
        let mut add = |m: Match, matches: &mut Vec<Vec<Match>>| {
            cover1[m.match_start..m.match_start + m.match_length]
                .iter_mut()
                .for_each(|c| *c += 1);
            cover2[m.start..m.start + m.length]
                .iter_mut()
                .for_each(|c| *c += 1);
            matches[m.start].push(m);
        };
        // Word-to-word matches of one module, in METEOR's order (reference word, then candidate).
        let mut words_match = |module: usize, same: &dyn Fn(usize, usize) -> bool| {
            for j in 0..w2.len() {
                for i in 0..w1.len() {
                    if same(i, j) {
                        let m = Match {
                            start: j,
                            length: 1,
                            match_start: i,
                            match_length: 1,
                            module,
                        };
                        add(m, &mut matches);
                    }
                }
            }
        };
        words_match(0, &|i, j| k1[i] == k2[j]);
        // Identical lines: the exact module alone.
        if k1 != k2 {
            let stems = |w: &[&str]| -> Vec<i32> {
                w.iter().map(|w| java_hash(&self.stemmer.stem(w))).collect()
            };
            let (s1, s2) = (stems(&w1), stems(&w2));
            words_match(1, &|i, j| s1[i] == s2[j] && k1[i] != k2[j]);
            let sets = |w: &[&str]| -> Vec<HashSet<i32>> {
                w.iter().map(|w| self.synonyms.sets(w)).collect()
            };
            let (sets1, sets2) = (sets(&w1), sets(&w2));
            words_match(2, &|i, j| {
                !sets1[i].is_disjoint(&sets2[j]) && k1[i] != k2[j]
            });
            // Paraphrases: reference phrases found in the candidate, then candidate phrases
            // found in the reference.
            let pt = &self.paraphrases;
            let l1: Vec<i64> = w1.iter().map(|w| pt.translate(w)).collect();
            let l2: Vec<i64> = w2.iter().map(|w| pt.translate(w)).collect();
            let reference_side = pt.phrase_matches(&l2, &l1);
            let candidate_side = pt
                .phrase_matches(&l1, &l2)
                .into_iter()
                .map(|(i, match_length, j, length)| (j, length, i, match_length));
            for (start, length, match_start, match_length) in
                reference_side.into_iter().chain(candidate_side)
            {
                let m = Match {
                    start,
                    length,
                    match_start,
                    match_length,
                    module: 3,
                };
                add(m, &mut matches);
            }
        }
        // Positions with one candidate match covering words no other match touches are fixed.
        let mut start = Partial {
            matches: vec![None; w2.len()],
            matches1: 0,
            matches2: 0,
            chunks: 0,
            idx: 0,
            last_match_end: -1,
            distance: 0,
            used1: vec![false; w1.len()],
            used2: vec![false; w2.len()],
        };
        for (j, ms) in matches.iter().enumerate() {
            if let [m] = ms.as_slice() {
                let alone = cover2[j..j + m.length].iter().all(|&c| c == 1)
                    && cover1[m.match_start..m.match_start + m.match_length]
                        .iter()
                        .all(|&c| c == 1);
                if alone {
                    start.matches[j] = Some(*m);
                    start.set_used(m);
                }
            }
        }
        let best = resolve(&matches, start);
        // Statistics.
        let is_function1: Vec<bool> = w1
            .iter()
            .map(|w| self.function_words.contains(&w.to_lowercase()))
            .collect();
        let is_function2: Vec<bool> = w2
            .iter()
            .map(|w| self.function_words.contains(&w.to_lowercase()))
            .collect();
        let mut s = MeteorStats {
            test_length: w1.len() as f64,
            reference_length: w2.len() as f64,
            test_function_words: is_function1.iter().filter(|&&f| f).count() as f64,
            reference_function_words: is_function2.iter().filter(|&&f| f).count() as f64,
            ..Default::default()
        };
        for m in best.matches.iter().flatten() {
            for i in m.match_start..m.match_start + m.match_length {
                if is_function1[i] {
                    s.test_function[m.module] += 1.0;
                } else {
                    s.test_content[m.module] += 1.0;
                }
            }
            for j in m.start..m.start + m.length {
                if is_function2[j] {
                    s.reference_function[m.module] += 1.0;
                } else {
                    s.reference_content[m.module] += 1.0;
                }
            }
        }
        // `getCountAndChunks` over the chosen matches.
        let (mut m1, mut m2, mut chunks) = (0usize, 0usize, 0usize);
        let mut idx = 0;
        let mut last: i64 = -1;
        while idx < best.matches.len() {
            match best.matches[idx] {
                None => {
                    if last != -1 {
                        chunks += 1;
                        last = -1;
                    }
                    idx += 1;
                }
                Some(m) => {
                    m1 += m.match_length;
                    m2 += m.length;
                    if last != -1 && m.match_start as i64 != last {
                        chunks += 1;
                    }
                    idx = m.start + m.length;
                    last = (m.match_start + m.match_length) as i64;
                }
            }
        }
        if last != -1 {
            chunks += 1;
        }
        s.chunks = chunks as f64;
        s.test_word_matches = m1 as f64;
        s.reference_word_matches = m2 as f64;
        s
    }
}

/// `Aligner.resolve`: the beam search over reference positions.
fn resolve(matches: &[Vec<Match>], start: Partial) -> Partial {
    let n = matches.len();
    let mut next = vec![start];
    for current in 0..=n {
        let mut paths = std::mem::take(&mut next);
        paths.sort_by(compare);
        let fallback = paths[0].clone();
        for mut path in paths.into_iter().take(BEAM) {
            if current == n {
                if path.last_match_end != -1 {
                    path.chunks += 1;
                }
                next.push(path);
                continue;
            }
            if path.used2[current] {
                if current < path.idx {
                    next.push(path);
                } else if let Some(m) = path.matches[path.idx] {
                    path.take(&m);
                    path.distance += (m.start as i32 - m.match_start as i32).abs();
                    next.push(path);
                }
                continue;
            }
            for m in &matches[current] {
                if path.is_used(m) {
                    continue;
                }
                let mut extended = path.clone();
                extended.set_used(m);
                extended.matches[current] = Some(*m);
                extended.take(m);
                // METEOR charges the distance to the path that goes on without the match.
                path.distance += (m.start as i32 - m.match_start as i32).abs();
                next.push(extended);
            }
            if path.last_match_end != -1 {
                path.chunks += 1;
                path.last_match_end = -1;
            }
            path.idx += 1;
            next.push(path);
        }
        if next.is_empty() {
            next.push(fallback);
        }
    }
    next.sort_by(compare);
    next.swap_remove(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_hash_is_string_hash_code() {
        assert_eq!(java_hash(""), 0);
        assert_eq!(java_hash("a"), 97);
        // "hello".hashCode() in Java.
        assert_eq!(java_hash("hello"), 99_162_322);
        assert_eq!(java_hash("polygenelubricants"), i32::MIN);
    }

    #[test]
    fn perfect_and_partial_statistics_score_as_meteor() {
        // "a dog runs" against itself: one chunk, every word matched.
        let mut s = MeteorStats {
            test_length: 3.0,
            reference_length: 3.0,
            test_function_words: 1.0,
            reference_function_words: 1.0,
            chunks: 1.0,
            test_word_matches: 3.0,
            reference_word_matches: 3.0,
            ..Default::default()
        };
        s.test_content[0] = 2.0;
        s.reference_content[0] = 2.0;
        s.test_function[0] = 1.0;
        s.reference_function[0] = 1.0;
        assert!((s.score() - 1.0).abs() < 1e-12);
        // Two chunks: fragmentation 2 / 3, penalty 0.6 * (2/3)^0.2.
        s.chunks = 2.0;
        let want = 1.0 - 0.6 * (2.0f64 / 3.0).powf(0.2);
        assert!((s.score() - want).abs() < 1e-12);
    }
}
