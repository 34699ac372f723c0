//! Ranking and classification metrics.

use serde::Serialize;
use std::collections::BTreeMap;

/// 0-based rank of `target` among `scores`, as a stable descending sort would place it: items
/// with a higher score come first, ties are broken by lower index. Entries set to `-inf` are
/// excluded candidates and never outrank anything.
pub fn rank_of(scores: &[f32], target: usize) -> usize {
    let t = scores[target];
    let mut rank = 0;
    for (j, &s) in scores.iter().enumerate() {
        if s > t || (s == t && j < target && s != f32::NEG_INFINITY) {
            rank += 1;
        }
    }
    rank
}

/// Accumulates HR@k, NDCG@k and MRR from 0-based ranks of a single relevant item.
#[derive(Debug, Clone)]
pub struct RankingMetrics {
    ks: Vec<usize>,
    hits: Vec<f64>,
    ndcg: Vec<f64>,
    rr: f64,
    n: usize,
}

impl RankingMetrics {
    pub fn new(ks: &[usize]) -> Self {
        Self {
            ks: ks.to_vec(),
            hits: vec![0.0; ks.len()],
            ndcg: vec![0.0; ks.len()],
            rr: 0.0,
            n: 0,
        }
    }

    pub fn add(&mut self, rank: usize) {
        self.n += 1;
        self.rr += 1.0 / (rank as f64 + 1.0);
        for (i, &k) in self.ks.iter().enumerate() {
            if rank < k {
                self.hits[i] += 1.0;
                self.ndcg[i] += 1.0 / (rank as f64 + 2.0).log2();
            }
        }
    }

    pub fn count(&self) -> usize {
        self.n
    }

    pub fn hr(&self, k: usize) -> f64 {
        self.mean(&self.hits, k)
    }

    pub fn ndcg(&self, k: usize) -> f64 {
        self.mean(&self.ndcg, k)
    }

    pub fn mrr(&self) -> f64 {
        if self.n == 0 {
            0.0
        } else {
            self.rr / self.n as f64
        }
    }

    fn mean(&self, v: &[f64], k: usize) -> f64 {
        let i = self
            .ks
            .iter()
            .position(|&x| x == k)
            .unwrap_or_else(|| panic!("k={k} was not tracked"));
        if self.n == 0 {
            0.0
        } else {
            v[i] / self.n as f64
        }
    }

    /// `HR@k`, `NDCG@k` for every tracked k (NDCG only for k > 1, where it differs from HR),
    /// and `MRR`.
    pub fn to_map(&self) -> BTreeMap<String, f64> {
        let mut m = BTreeMap::new();
        for &k in &self.ks {
            m.insert(format!("HR@{k}"), self.hr(k));
            if k > 1 {
                m.insert(format!("NDCG@{k}"), self.ndcg(k));
            }
        }
        m.insert("MRR".to_string(), self.mrr());
        m
    }
}

/// Summary of a classification: accuracy plus macro- and micro-averaged F1.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct F1Scores {
    pub macro_f1: f64,
    pub micro_f1: f64,
}

/// Macro- and micro-F1 for single-label predictions over `classes` classes. Classes absent from
/// both truth and prediction are left out of the macro average (scikit-learn's behaviour with
/// the labels present).
pub fn f1_scores(truth: &[usize], pred: &[usize], classes: usize) -> F1Scores {
    let mut tp = vec![0f64; classes];
    let mut fp = vec![0f64; classes];
    let mut fn_ = vec![0f64; classes];
    for (&t, &p) in truth.iter().zip(pred) {
        if t == p {
            tp[t] += 1.0;
        } else {
            fp[p] += 1.0;
            fn_[t] += 1.0;
        }
    }
    let mut f1_sum = 0.0;
    let mut present = 0;
    for c in 0..classes {
        if tp[c] + fp[c] + fn_[c] == 0.0 {
            continue;
        }
        present += 1;
        let denom = 2.0 * tp[c] + fp[c] + fn_[c];
        f1_sum += if denom > 0.0 {
            2.0 * tp[c] / denom
        } else {
            0.0
        };
    }
    let (stp, sfp, sfn) = (
        tp.iter().sum::<f64>(),
        fp.iter().sum::<f64>(),
        fn_.iter().sum::<f64>(),
    );
    F1Scores {
        macro_f1: if present > 0 {
            f1_sum / present as f64
        } else {
            0.0
        },
        micro_f1: if stp + sfp + sfn > 0.0 {
            2.0 * stp / (2.0 * stp + sfp + sfn)
        } else {
            0.0
        },
    }
}

/// Intersection over union of two `[x1, y1, x2, y2]` boxes in inclusive pixel coordinates, with
/// +1 on widths and heights as the official VL-BERT (`bbox_iou_py_vectorized`) and ViLBERT
/// (`iou` of its datasets) code.
pub fn pixel_box_iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let w = (a[2].min(b[2]) - a[0].max(b[0]) + 1.0).max(0.0);
    let h = (a[3].min(b[3]) - a[1].max(b[1]) + 1.0).max(0.0);
    let inter = w * h;
    let area = |x: &[f32; 4]| (x[2] - x[0] + 1.0) * (x[3] - x[1] + 1.0);
    inter / (area(a) + area(b) - inter)
}
