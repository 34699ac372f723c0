//! Skip-gram training over walks: word2vec's schedule (linear learning-rate decay by words
//! processed, random window shrinking, optional subsampling), lock-free across threads.

use super::config::{Metapath2VecConfig, NegativeType, Variant};
use super::model::{unit_f32, AliasTable, FastRng, SharedMatrix, Sigmoid};
use super::walk::Walks;
use crate::core::resources::process_cpu_seconds;
use crate::core::rng::{derive_seed, rng_for};
use rayon::prelude::*;
use std::sync::atomic::{AtomicU64, Ordering};

const STREAM_INIT: u64 = 31;
const STREAM_SGD: u64 = 32;
/// Words between learning-rate updates (word2vec: 10,000).
const LR_UPDATE_EVERY: u64 = 10_000;

/// Trained input vectors (the embeddings) of every node, and how often each node occurs in the
/// walks (a node that occurs fewer than `min_count` times keeps its random initial vector).
pub struct Embeddings {
    pub dim: usize,
    pub vectors: Vec<f32>,
    pub counts: Vec<u64>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct TrainStats {
    pub words: u64,
    pub seconds: f64,
    pub words_per_second: f64,
    /// CPU time (user + system, all threads) spent in training, and words per CPU-second.
    pub cpu_seconds: f64,
    pub words_per_cpu_second: f64,
    pub threads: usize,
}

/// Negative-sampling tables: one over all nodes and, for metapath2vec++, one per node type.
pub struct NoiseTables {
    pub all: AliasTable,
    pub per_type: Vec<Option<AliasTable>>,
}

impl NoiseTables {
    /// unigram^0.75 over node occurrence counts in the walks.
    pub fn new(counts: &[u64], node_type: &[u8], num_types: usize) -> Self {
        let w: Vec<f64> = counts.iter().map(|&c| (c as f64).powf(0.75)).collect();
        // With no node to draw (nothing left to train on) every draw falls back to node 0.
        let all = AliasTable::new((0..counts.len() as u32).collect(), &w)
            .unwrap_or_else(|| AliasTable::new(vec![0], &[1.0]).expect("one positive weight"));
        let per_type = (0..num_types)
            .map(|t| {
                let ids: Vec<u32> = (0..counts.len() as u32)
                    .filter(|&i| node_type[i as usize] as usize == t && counts[i as usize] > 0)
                    .collect();
                let ws: Vec<f64> = ids.iter().map(|&i| w[i as usize]).collect();
                AliasTable::new(ids, &ws)
            })
            .collect();
        Self { all, per_type }
    }

    #[inline]
    fn draw(&self, ty: Option<u8>, rng: &mut FastRng) -> u32 {
        let table = match ty {
            Some(t) => self.per_type[t as usize].as_ref().unwrap_or(&self.all),
            None => &self.all,
        };
        let (a, b) = rng.pair();
        table.sample(a, unit_f32(b))
    }
}

pub fn node_counts(walks: &Walks, num_nodes: usize) -> Vec<u64> {
    let mut c = vec![0u64; num_nodes];
    for &t in &walks.tokens {
        c[t as usize] += 1;
    }
    c
}

/// Train embeddings for `num_nodes` nodes of types `node_type` on `walks`, with `threads` worker
/// threads (1: bit-for-bit deterministic for a seed). `on_progress` receives words processed.
pub fn train(
    walks: &Walks,
    node_type: &[u8],
    num_types: usize,
    cfg: &Metapath2VecConfig,
    threads: usize,
    on_progress: &(dyn Fn(u64) + Sync),
) -> (Embeddings, TrainStats) {
    let n = node_type.len();
    let d = cfg.dim;
    let counts = node_counts(walks, n);
    // Nodes under the minimum count leave the walks (and the noise distribution) altogether.
    let frequent = |w: u32| counts[w as usize] >= cfg.min_count.max(1);
    let train_counts: Vec<u64> = (0..n as u32)
        .map(|w| if frequent(w) { counts[w as usize] } else { 0 })
        .collect();
    let noise = NoiseTables::new(&train_counts, node_type, num_types);
    let syn0 = SharedMatrix::uniform(n, d, &mut rng_for(cfg.seed, STREAM_INIT, 0));
    let syn1 = SharedMatrix::zeros(n, d);
    let sigmoid = Sigmoid::default();
    let train_words: u64 = train_counts.iter().sum();
    let total_words: u64 = train_words * cfg.epochs as u64;
    let total_count: f64 = train_words as f64;
    let processed = AtomicU64::new(0);
    let threads = threads.max(1);
    let started = std::time::Instant::now();
    let cpu_start = process_cpu_seconds();

    // Each thread takes a contiguous share of the walks, as word2vec splits its file.
    let shares: Vec<(usize, usize)> = (0..threads)
        .map(|t| (walks.len() * t / threads, walks.len() * (t + 1) / threads))
        .collect();
    let work = |tid: usize| {
        let (lo, hi) = shares[tid];
        let mut rng = FastRng::new(derive_seed(cfg.seed, STREAM_SGD, tid as u64));
        let mut l1 = vec![0f32; d];
        let mut neu1e = vec![0f32; d];
        let mut out = vec![0f32; d];
        let mut local_words = 0u64;
        let mut alpha = cfg.alpha as f32;
        let mut kept: Vec<u32> = Vec::with_capacity(cfg.walk_length.max(16));
        let mut targets: Vec<(u32, f32)> = Vec::with_capacity(cfg.negatives + 1);
        for _epoch in 0..cfg.epochs {
            for wi in lo..hi {
                let walk = walks.get(wi);
                kept.clear();
                let mut words = 0u64;
                for &w in walk {
                    if train_counts[w as usize] == 0 {
                        continue;
                    }
                    words += 1;
                    if cfg.sample > 0.0 {
                        let f = counts[w as usize] as f64;
                        let s = cfg.sample * total_count;
                        let keep = ((f / s).sqrt() + 1.0) * s / f;
                        if keep < rng.unit_f64() {
                            continue;
                        }
                    }
                    kept.push(w);
                }
                local_words += words;
                if local_words >= LR_UPDATE_EVERY {
                    let done = processed.fetch_add(local_words, Ordering::Relaxed) + local_words;
                    on_progress(local_words);
                    local_words = 0;
                    let frac = (done as f64 / (total_words as f64 + 1.0)).min(1.0);
                    alpha = (cfg.alpha * (1.0 - frac)).max(cfg.alpha * 1e-4) as f32;
                }
                for (i, &center) in kept.iter().enumerate() {
                    let reach = if cfg.window_shrink {
                        cfg.window - rng.below(cfg.window.max(1))
                    } else {
                        cfg.window
                    };
                    let from = i.saturating_sub(reach);
                    let to = (i + reach).min(kept.len() - 1);
                    for (j, &ctx) in kept.iter().enumerate().take(to + 1).skip(from) {
                        if j == i {
                            continue;
                        }
                        // Input: the center node; predicted: the context node and negatives.
                        syn0.load(center as usize, &mut l1);
                        neu1e.iter_mut().for_each(|x| *x = 0.0);
                        let neg_type = match (cfg.variant, cfg.negative_type) {
                            (Variant::Plain, _) => None,
                            (Variant::Plusplus, NegativeType::Predicted) => {
                                Some(node_type[ctx as usize])
                            }
                            (Variant::Plusplus, NegativeType::Input) => {
                                Some(node_type[center as usize])
                            }
                        };
                        // Draw every target first and prefetch their rows, then update.
                        targets.clear();
                        targets.push((ctx, 1.0f32));
                        for _ in 0..cfg.negatives {
                            let t = noise.draw(neg_type, &mut rng);
                            if t != ctx {
                                targets.push((t, 0.0));
                            }
                        }
                        for &(t, _) in &targets {
                            syn1.prefetch(t as usize);
                        }
                        for &(target, label) in &targets {
                            syn1.sgd_pair(target as usize, &l1, &mut neu1e, &mut out, |f| {
                                sigmoid.grad(f, label) * alpha
                            });
                        }
                        syn0.add_scaled(center as usize, 1.0, &neu1e);
                    }
                }
            }
        }
        processed.fetch_add(local_words, Ordering::Relaxed);
        on_progress(local_words);
    };
    if threads == 1 {
        work(0);
    } else {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("thread pool");
        pool.install(|| (0..threads).into_par_iter().for_each(work));
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu_seconds = process_cpu_seconds() - cpu_start;
    let words = processed.load(Ordering::Relaxed);
    (
        Embeddings {
            dim: d,
            vectors: syn0.to_vec(),
            counts,
        },
        TrainStats {
            words,
            seconds,
            words_per_second: words as f64 / seconds.max(1e-9),
            cpu_seconds,
            words_per_cpu_second: words as f64 / cpu_seconds.max(1e-9),
            threads,
        },
    )
}

/// The negatives a `plusplus` run would draw for a predicted node, for tests: `draws` samples of
/// the noise distribution used for a context node of type `ty`.
pub fn sample_negatives(noise: &NoiseTables, ty: Option<u8>, draws: usize, seed: u64) -> Vec<u32> {
    let mut rng = FastRng::new(derive_seed(seed, STREAM_SGD, 999));
    (0..draws).map(|_| noise.draw(ty, &mut rng)).collect()
}
