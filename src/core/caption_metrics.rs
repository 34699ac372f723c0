//! Caption metrics as the COCO caption evaluation (`pycocoevalcap` 1.2) computes them:
//! corpus BLEU-1..4 (`Bleu(4)`, closest reference length), ROUGE-L (LCS F-measure with
//! beta 1.2, best precision and best recall over the references) and CIDEr (`Cider`: CIDEr-D
//! with sigma 6, clipped TF-IDF, x10, document frequencies from the evaluated references).
//!
//! Every function takes captions already tokenized (space-separated tokens);
//! [`tokenize_caption`] prepares raw text the way the evaluation's PTB tokenizer does for
//! plain English (lower case, punctuation split off and dropped, `n't` and `'s` style clitics
//! split). Deviation (named): Stanford's PTBTokenizer itself is Java; ours is checked against it
//! on the fixture's sentences but not on every corner of English (URLs, numbers with commas).
//!
//! METEOR 1.5 (stemming, WordNet synonyms and a paraphrase table) is `core::meteor`: it needs
//! the evaluation's resource files, which these three do not.

use std::collections::HashMap;

/// One candidate caption and its references, tokenized.
#[derive(Debug, Clone)]
pub struct CaptionPair<'a> {
    pub candidate: &'a str,
    pub references: &'a [String],
}

/// Corpus-level scores plus the per-caption ones the COCO evaluation reports.
#[derive(Debug, Clone, PartialEq)]
pub struct CaptionScores {
    /// Corpus BLEU-1 to BLEU-4.
    pub bleu: [f64; 4],
    pub rouge_l: f64,
    pub cider: f64,
    pub per_caption_rouge_l: Vec<f64>,
    pub per_caption_cider: Vec<f64>,
}

/// The tokens the COCO evaluation drops after PTB tokenization.
const PUNCTUATION: [&str; 17] = [
    "''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":", "-", "--",
    "...", ";",
];

/// Lower-cases a raw caption, splits punctuation and clitics off as the PTB tokenizer does and
/// drops the punctuation the COCO evaluation drops; tokens joined by single spaces.
pub fn tokenize_caption(raw: &str) -> String {
    let lower = raw.to_lowercase();
    let mut tokens: Vec<String> = Vec::new();
    for word in lower.split_whitespace() {
        split_ptb(word, &mut tokens);
    }
    tokens
        .into_iter()
        .filter(|t| !PUNCTUATION.contains(&t.as_str()))
        .collect::<Vec<_>>()
        .join(" ")
}

fn split_ptb(word: &str, out: &mut Vec<String>) {
    const SPLIT: &[char] = &[
        '.', ',', '?', '!', ':', ';', '"', '(', ')', '[', ']', '{', '}',
    ];
    // Leading punctuation.
    let mut rest = word;
    while let Some(c) = rest.chars().next() {
        if SPLIT.contains(&c) || c == '\'' || c == '`' {
            out.push(bracket_name(c));
            rest = &rest[c.len_utf8()..];
        } else {
            break;
        }
    }
    // Trailing punctuation, kept in order.
    let mut trailing = Vec::new();
    while let Some(c) = rest.chars().next_back() {
        if SPLIT.contains(&c) || (c == '\'' && !rest.ends_with("s'")) {
            trailing.push(bracket_name(c));
            rest = &rest[..rest.len() - c.len_utf8()];
        } else {
            break;
        }
    }
    if !rest.is_empty() {
        // Clitics: "don't" -> "do n't", "it's" -> "it 's", "we'll" -> "we 'll".
        let clitic = ["n't", "'s", "'re", "'ve", "'ll", "'d", "'m"]
            .iter()
            .find(|c| rest.len() > c.len() && rest.ends_with(*c));
        match clitic {
            Some(c) => {
                out.push(rest[..rest.len() - c.len()].to_string());
                out.push(c.to_string());
            }
            None => out.push(rest.to_string()),
        }
    }
    out.extend(trailing.into_iter().rev());
}

fn bracket_name(c: char) -> String {
    match c {
        '(' => "-lrb-".into(),
        ')' => "-rrb-".into(),
        '[' => "-lsb-".into(),
        ']' => "-rsb-".into(),
        '{' => "-lcb-".into(),
        '}' => "-rcb-".into(),
        '"' => "''".into(),
        other => other.to_string(),
    }
}

/// BLEU-1..4, COCO's corpus form: clipped n-gram matches and guesses summed over captions,
/// the closest reference length per caption (ties to the shorter), one brevity penalty.
pub fn bleu(pairs: &[CaptionPair]) -> [f64; 4] {
    const TINY: f64 = 1e-15;
    const SMALL: f64 = 1e-9;
    let mut correct = [0usize; 4];
    let mut guess = [0usize; 4];
    let (mut test_len, mut ref_len) = (0usize, 0usize);
    for pair in pairs {
        let candidate: Vec<&str> = pair.candidate.split_whitespace().collect();
        let mut max_ref: HashMap<&[&str], usize> = HashMap::new();
        let refs: Vec<Vec<&str>> = pair
            .references
            .iter()
            .map(|r| r.split_whitespace().collect())
            .collect();
        for r in &refs {
            for (gram, count) in ngram_counts(r, 4) {
                let e = max_ref.entry(gram).or_insert(0);
                *e = (*e).max(count);
            }
        }
        let closest = refs
            .iter()
            .map(|r| r.len())
            .min_by_key(|&l| (l.abs_diff(candidate.len()), l))
            .unwrap_or(0);
        test_len += candidate.len();
        ref_len += closest;
        for (k, g) in guess.iter_mut().enumerate() {
            *g += (candidate.len() + 1).saturating_sub(k + 1);
        }
        for (gram, count) in ngram_counts(&candidate, 4) {
            correct[gram.len() - 1] += count.min(max_ref.get(gram).copied().unwrap_or(0));
        }
    }
    let mut scores = [0.0; 4];
    let mut product = 1.0f64;
    for k in 0..4 {
        product *= (correct[k] as f64 + TINY) / (guess[k] as f64 + SMALL);
        scores[k] = product.powf(1.0 / (k as f64 + 1.0));
    }
    let ratio = (test_len as f64 + TINY) / (ref_len as f64 + SMALL);
    if ratio < 1.0 {
        for s in &mut scores {
            *s *= (1.0 - 1.0 / ratio).exp();
        }
    }
    scores
}

fn ngram_counts<'a, 'b>(tokens: &'b [&'a str], n: usize) -> HashMap<&'b [&'a str], usize> {
    let mut counts = HashMap::new();
    for k in 1..=n {
        for gram in tokens.windows(k) {
            *counts.entry(gram).or_insert(0) += 1;
        }
    }
    counts
}

fn lcs(a: &[&str], b: &[&str]) -> usize {
    let mut prev = vec![0usize; b.len() + 1];
    let mut row = vec![0usize; b.len() + 1];
    for x in a {
        for (j, y) in b.iter().enumerate() {
            row[j + 1] = if x == y {
                prev[j] + 1
            } else {
                row[j].max(prev[j + 1])
            };
        }
        std::mem::swap(&mut prev, &mut row);
    }
    prev[b.len()]
}

/// ROUGE-L per caption: the best LCS precision and the best LCS recall over the references
/// (taken separately, as COCO does), F with beta 1.2.
pub fn rouge_l(pair: &CaptionPair) -> f64 {
    const BETA2: f64 = 1.2 * 1.2;
    // COCO splits on single spaces, so an empty caption is one empty token.
    let candidate: Vec<&str> = pair.candidate.split(' ').collect();
    let (mut precision, mut recall) = (0.0f64, 0.0f64);
    for reference in pair.references {
        let reference: Vec<&str> = reference.split(' ').collect();
        let common = lcs(&reference, &candidate) as f64;
        precision = precision.max(common / candidate.len() as f64);
        recall = recall.max(common / reference.len() as f64);
    }
    if precision == 0.0 || recall == 0.0 {
        0.0
    } else {
        (1.0 + BETA2) * precision * recall / (recall + BETA2 * precision)
    }
}

/// TF-IDF n-gram vectors of one sentence (n = 1..4), their norms and COCO's "length": the
/// sentence's number of bigrams (the reference code counts n-grams of index 1).
struct TfIdf<'a> {
    vectors: [HashMap<Vec<&'a str>, f64>; 4],
    norms: [f64; 4],
    length: f64,
}

fn tf_idf<'a>(
    tokens: &[&'a str],
    document_frequency: &HashMap<Vec<&'a str>, f64>,
    log_corpus: f64,
) -> TfIdf<'a> {
    let mut vectors: [HashMap<Vec<&'a str>, f64>; 4] = Default::default();
    let mut norms = [0.0; 4];
    let mut length = 0.0;
    for (gram, tf) in ngram_counts(tokens, 4) {
        let df = document_frequency
            .get(gram)
            .copied()
            .unwrap_or(0.0)
            .max(1.0)
            .ln();
        let n = gram.len() - 1;
        let value = tf as f64 * (log_corpus - df);
        norms[n] += value * value;
        if n == 1 {
            length += tf as f64;
        }
        vectors[n].insert(gram.to_vec(), value);
    }
    for norm in &mut norms {
        *norm = norm.sqrt();
    }
    TfIdf {
        vectors,
        norms,
        length,
    }
}

/// CIDEr (COCO's, i.e. CIDEr-D: clipped matches, Gaussian length penalty with sigma 6, x10)
/// per caption; document frequencies and the corpus size come from `pairs`' references.
pub fn cider(pairs: &[CaptionPair]) -> Vec<f64> {
    const SIGMA: f64 = 6.0;
    let tokenized: Vec<(Vec<&str>, Vec<Vec<&str>>)> = pairs
        .iter()
        .map(|p| {
            (
                p.candidate.split_whitespace().collect(),
                p.references
                    .iter()
                    .map(|r| r.split_whitespace().collect())
                    .collect(),
            )
        })
        .collect();
    let mut document_frequency: HashMap<Vec<&str>, f64> = HashMap::new();
    for (_, refs) in &tokenized {
        let mut seen: std::collections::HashSet<&[&str]> = Default::default();
        for r in refs {
            for gram in ngram_counts(r, 4).into_keys() {
                seen.insert(gram);
            }
        }
        for gram in seen {
            *document_frequency.entry(gram.to_vec()).or_insert(0.0) += 1.0;
        }
    }
    let log_corpus = (pairs.len() as f64).ln();
    tokenized
        .iter()
        .map(|(candidate, refs)| {
            let hyp = tf_idf(candidate, &document_frequency, log_corpus);
            let mut total = [0.0f64; 4];
            for r in refs {
                let reference = tf_idf(r, &document_frequency, log_corpus);
                let delta = hyp.length - reference.length;
                let penalty = (-(delta * delta) / (2.0 * SIGMA * SIGMA)).exp();
                for (n, slot) in total.iter_mut().enumerate() {
                    let mut value = 0.0;
                    for (gram, h) in &hyp.vectors[n] {
                        let r = reference.vectors[n].get(gram).copied().unwrap_or(0.0);
                        value += h.min(r) * r;
                    }
                    if hyp.norms[n] != 0.0 && reference.norms[n] != 0.0 {
                        value /= hyp.norms[n] * reference.norms[n];
                    }
                    *slot += value * penalty;
                }
            }
            total.iter().sum::<f64>() / 4.0 / refs.len().max(1) as f64 * 10.0
        })
        .collect()
}

/// BLEU-1..4, ROUGE-L and CIDEr of tokenized candidates against their references.
pub fn caption_scores(pairs: &[CaptionPair]) -> CaptionScores {
    let per_caption_rouge_l: Vec<f64> = pairs.iter().map(rouge_l).collect();
    let per_caption_cider = cider(pairs);
    let mean = |v: &[f64]| {
        if v.is_empty() {
            0.0
        } else {
            v.iter().sum::<f64>() / v.len() as f64
        }
    };
    CaptionScores {
        bleu: bleu(pairs),
        rouge_l: mean(&per_caption_rouge_l),
        cider: mean(&per_caption_cider),
        per_caption_rouge_l,
        per_caption_cider,
    }
}
