//! Leave-one-out evaluation: full ranking over all items by default (items already in the
//! user's history filtered unless asked otherwise), the paper's sampled ranking (100 negatives
//! drawn by popularity) on request, and the most-popular baseline on the same split.

use super::config::Bert4RecConfig;
use super::data::{split_leave_one_out, truncate_left, SequenceData};
use super::model::Bert4Rec;
use crate::core::metrics::{rank_of, RankingMetrics};
use crate::core::rng::rng_for;
use anyhow::Result;
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::Rng;
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};

pub const KS: [usize; 4] = [1, 5, 10, 20];
const STREAM_SAMPLED_EVAL: u64 = 11;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Valid,
    Test,
}

#[derive(Debug, Clone, Serialize)]
pub struct EvalResult {
    pub users: usize,
    #[serde(flatten)]
    pub metrics: BTreeMap<String, f64>,
}

/// For each evaluable user: the model input (history, already truncated later) and the target.
pub fn split_cases(data: &SequenceData, split: Split) -> Vec<(usize, Vec<u32>, u32)> {
    data.sequences
        .iter()
        .enumerate()
        .filter_map(|(u, seq)| {
            let (hist, valid, test) = split_leave_one_out(seq)?;
            Some(match split {
                Split::Valid => (u, hist.to_vec(), valid),
                Split::Test => {
                    let mut h = hist.to_vec();
                    h.push(valid);
                    (u, h, test)
                }
            })
        })
        .collect()
}

/// Scores of every real item (column j = item j + 1) at a `[mask]` appended to each history.
pub fn score_histories(
    model: &Bert4Rec,
    data: &SequenceData,
    cfg: &Bert4RecConfig,
    histories: &[&[u32]],
    device: &Device,
) -> Vec<Vec<f32>> {
    let max_len = cfg.model.max_len;
    let mut out = Vec::with_capacity(histories.len());
    for chunk in histories.chunks(cfg.eval.batch_size.max(1)) {
        let inputs: Vec<Vec<u32>> = chunk
            .iter()
            .map(|h| {
                let mut s = truncate_left(h, max_len - 1).to_vec();
                s.push(data.mask_token());
                s
            })
            .collect();
        let len = inputs.iter().map(Vec::len).max().unwrap_or(1);
        let mut ids = vec![0i64; inputs.len() * len];
        let mut pos = Vec::with_capacity(inputs.len());
        for (r, s) in inputs.iter().enumerate() {
            for (j, &v) in s.iter().enumerate() {
                ids[r * len + j] = v as i64;
            }
            pos.push((r * len + s.len() - 1) as i64);
        }
        let n = pos.len();
        let ids: Tensor<2, Int> =
            Tensor::from_data(TensorData::new(ids, [inputs.len(), len]), device);
        let pos: Tensor<1, Int> = Tensor::from_data(TensorData::new(pos, [n]), device);
        let h = Bert4Rec::gather_positions(model.hidden(ids), pos);
        let scores = model.scores(h);
        let items = data.num_items();
        let flat: Vec<f32> = scores
            .into_data()
            .convert::<f32>()
            .try_to_vec()
            .expect("f32 scores");
        out.extend(flat.chunks(items).map(<[f32]>::to_vec));
    }
    out
}

fn filter_history(scores: &mut [f32], history: &[u32], target: u32) {
    for &i in history {
        if i != target {
            scores[i as usize - 1] = f32::NEG_INFINITY;
        }
    }
}

/// Full-ranking evaluation of `model` on `split`.
pub fn evaluate(
    model: &Bert4Rec,
    data: &SequenceData,
    cfg: &Bert4RecConfig,
    split: Split,
    filter_seen: bool,
    device: &Device,
) -> Result<EvalResult> {
    let cases = split_cases(data, split);
    let histories: Vec<&[u32]> = cases.iter().map(|c| c.1.as_slice()).collect();
    let scores = score_histories(model, data, cfg, &histories, device);
    let mut m = RankingMetrics::new(&KS);
    for ((_, hist, target), mut s) in cases.iter().zip(scores) {
        if filter_seen {
            filter_history(&mut s, hist, *target);
        }
        m.add(rank_of(&s, *target as usize - 1));
    }
    Ok(EvalResult {
        users: m.count(),
        metrics: m.to_map(),
    })
}

/// Item counts over the inputs of `split` (what a popularity recommender may see).
pub fn popularity(data: &SequenceData, split: Split) -> Vec<f32> {
    let mut counts = vec![0f32; data.num_items()];
    for (_, hist, _) in split_cases(data, split) {
        for i in hist {
            counts[i as usize - 1] += 1.0;
        }
    }
    counts
}

/// The most-popular baseline on the same split and filtering.
pub fn evaluate_popularity(data: &SequenceData, split: Split, filter_seen: bool) -> EvalResult {
    let pop = popularity(data, split);
    let mut m = RankingMetrics::new(&KS);
    for (_, hist, target) in split_cases(data, split) {
        let mut s = pop.clone();
        if filter_seen {
            filter_history(&mut s, &hist, target);
        }
        m.add(rank_of(&s, target as usize - 1));
    }
    EvalResult {
        users: m.count(),
        metrics: m.to_map(),
    }
}

/// The paper's protocol: rank the target against `negatives` items the user never interacted
/// with, sampled by popularity without replacement. Scores come from `score`.
pub fn evaluate_sampled(
    data: &SequenceData,
    split: Split,
    negatives: usize,
    seed: u64,
    scores: &[Vec<f32>],
) -> EvalResult {
    let pop: Vec<f64> = {
        let mut c = vec![0f64; data.num_items()];
        for s in &data.sequences {
            for &i in s {
                c[i as usize - 1] += 1.0;
            }
        }
        c
    };
    let total: f64 = pop.iter().sum();
    let mut rng = rng_for(seed, STREAM_SAMPLED_EVAL, 0);
    let mut m = RankingMetrics::new(&KS);
    for ((u, _, target), s) in split_cases(data, split).iter().zip(scores) {
        let seen: HashSet<u32> = data.sequences[*u].iter().copied().collect();
        let available = data.num_items() - seen.len();
        let want = negatives.min(available);
        let mut chosen: HashSet<u32> = HashSet::new();
        while chosen.len() < want {
            let mut x = rng.random::<f64>() * total;
            let mut pick = data.num_items();
            for (j, &c) in pop.iter().enumerate() {
                if x < c {
                    pick = j + 1;
                    break;
                }
                x -= c;
            }
            let pick = pick.min(data.num_items()) as u32;
            if !seen.contains(&pick) {
                chosen.insert(pick);
            }
        }
        let mut cand: Vec<f32> = vec![s[*target as usize - 1]];
        let mut neg: Vec<u32> = chosen.into_iter().collect();
        neg.sort_unstable();
        cand.extend(neg.iter().map(|&i| s[i as usize - 1]));
        m.add(rank_of(&cand, 0));
    }
    EvalResult {
        users: m.count(),
        metrics: m.to_map(),
    }
}

/// Top-`k` items for a user's full sequence (all interactions), optionally excluding seen items.
pub fn recommend(
    model: &Bert4Rec,
    data: &SequenceData,
    cfg: &Bert4RecConfig,
    users: &[usize],
    k: usize,
    filter_seen: bool,
    device: &Device,
) -> Vec<Vec<(u32, f32)>> {
    let histories: Vec<&[u32]> = users
        .iter()
        .map(|&u| data.sequences[u].as_slice())
        .collect();
    let scores = score_histories(model, data, cfg, &histories, device);
    scores
        .into_iter()
        .zip(&histories)
        .map(|(mut s, hist)| {
            if filter_seen {
                for &i in hist.iter() {
                    s[i as usize - 1] = f32::NEG_INFINITY;
                }
            }
            let mut idx: Vec<usize> = (0..s.len()).filter(|&j| s[j] > f32::NEG_INFINITY).collect();
            idx.sort_by(|&a, &b| s[b].total_cmp(&s[a]).then(a.cmp(&b)));
            idx.truncate(k);
            idx.into_iter().map(|j| (j as u32 + 1, s[j])).collect()
        })
        .collect()
}
