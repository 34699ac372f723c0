//! The paper's evaluation: node classification by logistic regression (Macro/Micro-F1 at
//! training fractions 5%..90%, 10 repeats), k-means clustering scored by NMI (10 runs), and
//! nearest-neighbour search by cosine similarity.

use super::data::decode_text;
use crate::core::error::InputError;
use crate::core::logistic::LogisticRegression;
use crate::core::metrics::f1_scores;
use crate::core::rng::rng_for;
use anyhow::{bail, Context, Result};
use rand::seq::SliceRandom;
use rand::Rng;
use serde::Serialize;
use std::collections::HashMap;
use std::path::Path;

const STREAM_SPLIT: u64 = 41;
const STREAM_KMEANS: u64 = 42;

pub const TRAIN_FRACTIONS: [f64; 10] = [0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9];

/// Node embeddings with their names.
#[derive(Debug, Clone)]
pub struct NamedEmbeddings {
    pub names: Vec<String>,
    pub dim: usize,
    pub vectors: Vec<f32>,
}

impl NamedEmbeddings {
    pub fn row(&self, i: usize) -> &[f32] {
        &self.vectors[i * self.dim..(i + 1) * self.dim]
    }
    pub fn index(&self) -> HashMap<&str, usize> {
        self.names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.as_str(), i))
            .collect()
    }
}

/// Labels: `name label` per line (the last whitespace-separated field is the label). A RecBole
/// `.item` file is read as MovieLens genres: its `class` field lists genres and the *first* one
/// listed is the movie's single label (node name `m<item_id>`).
pub fn read_labels(path: &Path) -> Result<Vec<(String, String)>> {
    let text = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let text = decode_text(text);
    let mut out = Vec::new();
    if path.extension().is_some_and(|e| e == "item") {
        let mut lines = text.lines();
        let header: Vec<&str> = lines
            .next()
            .unwrap_or("")
            .split('\t')
            .map(|h| h.split(':').next().unwrap_or(""))
            .collect();
        let (Some(id), Some(class)) = (
            header.iter().position(|h| *h == "item_id"),
            header.iter().position(|h| *h == "class"),
        ) else {
            bail!(InputError::new(
                path,
                1,
                None,
                "header must name item_id and class"
            ));
        };
        for (i, line) in lines.enumerate() {
            let f: Vec<&str> = line.split('\t').collect();
            if f.len() <= class.max(id) {
                bail!(InputError::new(path, i + 2, None, "too few fields"));
            }
            if let Some(first) = f[class].split_whitespace().next() {
                out.push((format!("m{}", f[id]), first.to_string()));
            }
        }
        return Ok(out);
    }
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let Some((name, label)) = line.rsplit_once(char::is_whitespace) else {
            bail!(InputError::new(path, i + 1, None, "expected `name label`"));
        };
        out.push((name.trim().to_string(), label.to_string()));
    }
    if out.is_empty() {
        bail!("{}: no labels", path.display());
    }
    Ok(out)
}

/// A labelled data set: feature rows and class indices.
pub struct Labelled {
    pub x: Vec<Vec<f64>>,
    pub y: Vec<usize>,
    pub classes: Vec<String>,
    pub missing: usize,
}

/// Join embeddings and labels by node name; labelled nodes without an embedding are counted.
pub fn join(emb: &NamedEmbeddings, labels: &[(String, String)]) -> Labelled {
    let idx = emb.index();
    let mut classes: Vec<String> = labels.iter().map(|l| l.1.clone()).collect();
    classes.sort();
    classes.dedup();
    let mut x = Vec::new();
    let mut y = Vec::new();
    let mut missing = 0;
    for (name, label) in labels {
        match idx.get(name.as_str()) {
            Some(&i) => {
                x.push(emb.row(i).iter().map(|&v| v as f64).collect());
                y.push(classes.binary_search(label).expect("label listed"));
            }
            None => missing += 1,
        }
    }
    Labelled {
        x,
        y,
        classes,
        missing,
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ClassificationRow {
    pub train_fraction: f64,
    pub macro_f1: f64,
    pub micro_f1: f64,
    pub majority_macro_f1: f64,
    pub majority_micro_f1: f64,
}

/// Logistic regression at each training fraction, `repeats` random splits each, mean F1 scores,
/// beside the majority-class baseline on the same splits.
pub fn classify(
    data: &Labelled,
    fractions: &[f64],
    repeats: usize,
    seed: u64,
) -> Vec<ClassificationRow> {
    let n = data.y.len();
    let k = data.classes.len();
    let mut rows = Vec::new();
    for (fi, &frac) in fractions.iter().enumerate() {
        let (mut ma, mut mi, mut bma, mut bmi) = (0.0, 0.0, 0.0, 0.0);
        for r in 0..repeats {
            let mut rng = rng_for(seed, STREAM_SPLIT, (fi * 1000 + r) as u64);
            let mut idx: Vec<usize> = (0..n).collect();
            idx.shuffle(&mut rng);
            let n_train = ((frac * n as f64).round() as usize).clamp(1, n - 1);
            let (tr, te) = idx.split_at(n_train);
            let x: Vec<Vec<f64>> = tr.iter().map(|&i| data.x[i].clone()).collect();
            let y: Vec<usize> = tr.iter().map(|&i| data.y[i]).collect();
            let model = LogisticRegression::fit(&x, &y, k, 1.0, 300);
            let truth: Vec<usize> = te.iter().map(|&i| data.y[i]).collect();
            let pred: Vec<usize> = te.iter().map(|&i| model.predict(&data.x[i])).collect();
            let s = f1_scores(&truth, &pred, k);
            let mut counts = vec![0usize; k];
            for &c in &y {
                counts[c] += 1;
            }
            let major = (0..k)
                .max_by_key(|&c| (counts[c], std::cmp::Reverse(c)))
                .unwrap_or(0);
            let b = f1_scores(&truth, &vec![major; truth.len()], k);
            ma += s.macro_f1;
            mi += s.micro_f1;
            bma += b.macro_f1;
            bmi += b.micro_f1;
        }
        let r = repeats as f64;
        rows.push(ClassificationRow {
            train_fraction: frac,
            macro_f1: ma / r,
            micro_f1: mi / r,
            majority_macro_f1: bma / r,
            majority_micro_f1: bmi / r,
        });
    }
    rows
}

/// k-means++ and Lloyd (`core::kmeans`, scikit-learn's rules) on the rows of `x`; returns
/// cluster assignments.
pub fn kmeans<R: Rng>(x: &[Vec<f64>], k: usize, iters: usize, rng: &mut R) -> Vec<usize> {
    let d = x.first().map_or(0, Vec::len);
    let flat: Vec<f32> = x.iter().flatten().map(|&v| v as f32).collect();
    let opt = crate::core::kmeans::Lloyd {
        max_iter: iters,
        tol: 1e-4,
    };
    match crate::core::kmeans::kmeans(&flat, d, k, opt, rng) {
        Ok(km) => km.labels.iter().map(|&l| l as usize).collect(),
        // Fewer points than clusters, or no features: every point its own cluster.
        Err(_) => (0..x.len()).collect(),
    }
}

/// Normalised mutual information with the arithmetic-mean normaliser (scikit-learn's default).
pub fn nmi(a: &[usize], b: &[usize]) -> f64 {
    let n = a.len() as f64;
    let mut joint: HashMap<(usize, usize), f64> = HashMap::new();
    let mut pa: HashMap<usize, f64> = HashMap::new();
    let mut pb: HashMap<usize, f64> = HashMap::new();
    for (&x, &y) in a.iter().zip(b) {
        *joint.entry((x, y)).or_default() += 1.0;
        *pa.entry(x).or_default() += 1.0;
        *pb.entry(y).or_default() += 1.0;
    }
    let h = |m: &HashMap<usize, f64>| -m.values().map(|&c| (c / n) * (c / n).ln()).sum::<f64>();
    let (ha, hb) = (h(&pa), h(&pb));
    let mut mi = 0.0;
    for (&(x, y), &c) in &joint {
        mi += (c / n) * ((c * n) / (pa[&x] * pb[&y])).ln();
    }
    if ha + hb == 0.0 {
        1.0
    } else {
        (2.0 * mi / (ha + hb)).max(0.0)
    }
}

/// Mean NMI of k-means (k = number of classes) against the labels over `runs` seeded runs.
pub fn cluster_nmi(data: &Labelled, runs: usize, seed: u64) -> f64 {
    let k = data.classes.len();
    (0..runs)
        .map(|r| {
            let mut rng = rng_for(seed, STREAM_KMEANS, r as u64);
            nmi(&kmeans(&data.x, k, 100, &mut rng), &data.y)
        })
        .sum::<f64>()
        / runs as f64
}

/// The `k` nodes most similar to `query` by cosine similarity (the query excluded), optionally
/// only nodes whose token starts with the type code `only`.
pub fn most_similar(
    emb: &NamedEmbeddings,
    query: usize,
    k: usize,
    only: Option<char>,
) -> Vec<(usize, f32)> {
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    let q = emb.row(query);
    let qn = norm(q);
    let mut scored: Vec<(usize, f32)> = (0..emb.names.len())
        .filter(|&i| i != query && only.is_none_or(|c| emb.names[i].starts_with(c)))
        .map(|i| {
            let r = emb.row(i);
            (i, super::model::dot(q, r) / (qn * norm(r)))
        })
        .collect();
    scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    scored.truncate(k);
    scored
}
