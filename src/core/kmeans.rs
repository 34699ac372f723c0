//! k-means: greedy k-means++ seeding and Lloyd iterations as scikit-learn's `KMeans`
//! (`algorithm="lloyd"`): the same convergence rule (labels unchanged, or the squared centre
//! shift at most `tol` times the mean feature variance), the same relocation of empty clusters
//! (to the points farthest from their centres), a last assignment to the final centres, and
//! inertia as the sum of squared distances. Hierarchical k-means (VideoBERT's visual words)
//! clusters each cluster again, level by level.
//!
//! Points are rows of a flat `[n, d]` f32 slice. Assignment runs in parallel over fixed chunks
//! whose partial sums are added in chunk order, so results do not depend on the thread count.

use super::rng::rng_for;
use anyhow::{bail, Result};
use rand::Rng;
use rayon::prelude::*;

const CHUNK: usize = 512;
const STREAM_HKM: u64 = 71;

/// Lloyd's iterations and their stopping rule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Lloyd {
    pub max_iter: usize,
    /// Relative tolerance on the squared centre shift (scikit-learn's `tol`, default 1e-4).
    pub tol: f64,
}

impl Default for Lloyd {
    fn default() -> Self {
        Self {
            max_iter: 300,
            tol: 1e-4,
        }
    }
}

#[derive(Debug, Clone)]
pub struct KMeans {
    /// `[k, d]`.
    pub centres: Vec<f32>,
    pub labels: Vec<u32>,
    /// Sum of squared distances of the points to their centres.
    pub inertia: f64,
    /// Lloyd iterations run.
    pub iterations: usize,
}

simd_dispatch!(dot(a: &[f32], b: &[f32]) -> f32 {
        let mut acc = [0f32; 8];
        let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
        let (ra, rb) = (ca.remainder(), cb.remainder());
        for (x, y) in ca.zip(cb) {
            for l in 0..8 {
                acc[l] += x[l] * y[l];
            }
        }
        let mut s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
        for (x, y) in ra.iter().zip(rb) {
            s += x * y;
        }
        s
});

fn sq_dist(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(&p, &q)| {
            let t = p as f64 - q as f64;
            t * t
        })
        .sum()
}

/// The nearest centre of every point (ties to the lower index) and its squared distance.
pub fn assign(x: &[f32], d: usize, centres: &[f32]) -> (Vec<u32>, Vec<f64>) {
    let k = centres.len() / d;
    let norms: Vec<f32> = centres.chunks_exact(d).map(|c| dot(c, c)).collect();
    let parts: Vec<(Vec<u32>, Vec<f64>)> = x
        .par_chunks(CHUNK * d)
        .map(|chunk| {
            let mut labels = Vec::with_capacity(chunk.len() / d);
            let mut dists = Vec::with_capacity(chunk.len() / d);
            for p in chunk.chunks_exact(d) {
                // ||c||^2 - 2 x.c orders the centres as the distance does (as scikit-learn).
                let mut best = (0usize, f32::INFINITY);
                for c in 0..k {
                    let s = norms[c] - 2.0 * dot(p, &centres[c * d..(c + 1) * d]);
                    if s < best.1 {
                        best = (c, s);
                    }
                }
                labels.push(best.0 as u32);
                dists.push(sq_dist(p, &centres[best.0 * d..(best.0 + 1) * d]));
            }
            (labels, dists)
        })
        .collect();
    let mut labels = Vec::with_capacity(x.len() / d);
    let mut dists = Vec::with_capacity(x.len() / d);
    for (l, s) in parts {
        labels.extend(l);
        dists.extend(s);
    }
    (labels, dists)
}

/// Per-cluster sums (f64) and counts of the points, added chunk by chunk in order.
fn cluster_sums(x: &[f32], d: usize, k: usize, labels: &[u32]) -> (Vec<f64>, Vec<u64>) {
    let parts: Vec<(Vec<f64>, Vec<u64>)> = x
        .par_chunks(CHUNK * d)
        .zip(labels.par_chunks(CHUNK))
        .map(|(chunk, ls)| {
            let mut sums = vec![0f64; k * d];
            let mut counts = vec![0u64; k];
            for (p, &l) in chunk.chunks_exact(d).zip(ls) {
                let l = l as usize;
                counts[l] += 1;
                for (s, &v) in sums[l * d..(l + 1) * d].iter_mut().zip(p) {
                    *s += v as f64;
                }
            }
            (sums, counts)
        })
        .collect();
    let mut sums = vec![0f64; k * d];
    let mut counts = vec![0u64; k];
    for (s, c) in parts {
        for (a, b) in sums.iter_mut().zip(&s) {
            *a += b;
        }
        for (a, b) in counts.iter_mut().zip(&c) {
            *a += b;
        }
    }
    (sums, counts)
}

/// Mean of the per-feature variances: scikit-learn scales `tol` by it.
fn mean_variance(x: &[f32], d: usize) -> f64 {
    let n = (x.len() / d) as f64;
    let mut mean = vec![0f64; d];
    for p in x.chunks_exact(d) {
        for (m, &v) in mean.iter_mut().zip(p) {
            *m += v as f64;
        }
    }
    mean.iter_mut().for_each(|m| *m /= n);
    let mut var = 0f64;
    for p in x.chunks_exact(d) {
        for (m, &v) in mean.iter().zip(p) {
            var += (v as f64 - m) * (v as f64 - m);
        }
    }
    var / n / d as f64
}

/// Lloyd's iterations from the given `[k, d]` centres.
pub fn lloyd(x: &[f32], d: usize, init: &[f32], opt: Lloyd) -> Result<KMeans> {
    if d == 0 || x.is_empty() || !x.len().is_multiple_of(d) {
        bail!("k-means needs a non-empty [n, d] matrix");
    }
    if init.is_empty() || !init.len().is_multiple_of(d) {
        bail!("k-means needs [k, {d}] initial centres");
    }
    if x.iter().any(|v| !v.is_finite()) {
        bail!("k-means: a feature is not finite (NaN or infinite)");
    }
    let k = init.len() / d;
    let tol = mean_variance(x, d) * opt.tol;
    let mut centres = init.to_vec();
    let mut previous: Option<Vec<u32>> = None;
    let mut iterations = 0;
    for _ in 0..opt.max_iter {
        iterations += 1;
        let (labels, dists) = assign(x, d, &centres);
        let (mut sums, mut counts) = cluster_sums(x, d, k, &labels);
        // Empty clusters take the points farthest from their centres.
        let empty: Vec<usize> = (0..k).filter(|&c| counts[c] == 0).collect();
        if !empty.is_empty() {
            let mut far: Vec<usize> = (0..labels.len()).collect();
            far.sort_by(|&a, &b| dists[b].total_cmp(&dists[a]).then(a.cmp(&b)));
            for (&c, &i) in empty.iter().zip(&far) {
                let old = labels[i] as usize;
                let p = &x[i * d..(i + 1) * d];
                for j in 0..d {
                    sums[old * d + j] -= p[j] as f64;
                    sums[c * d + j] = p[j] as f64;
                }
                counts[old] -= 1;
                counts[c] = 1;
            }
        }
        let mut shift = 0f64;
        for c in 0..k {
            if counts[c] == 0 {
                continue;
            }
            for j in 0..d {
                let v = (sums[c * d + j] / counts[c] as f64) as f32;
                let t = v as f64 - centres[c * d + j] as f64;
                shift += t * t;
                centres[c * d + j] = v;
            }
        }
        if previous.as_ref() == Some(&labels) {
            break;
        }
        if shift <= tol {
            break;
        }
        previous = Some(labels);
    }
    // The labels of the final centres (scikit-learn's last E-step).
    let (labels, dists) = assign(x, d, &centres);
    Ok(KMeans {
        centres,
        labels,
        inertia: dists.iter().sum(),
        iterations,
    })
}

/// Greedy k-means++ (scikit-learn's: `2 + ln k` candidates per centre, the one that lowers the
/// potential most kept). Needs `k <= n`.
pub fn kmeans_plus_plus<R: Rng>(x: &[f32], d: usize, k: usize, rng: &mut R) -> Vec<f32> {
    let n = x.len() / d;
    let trials = 2 + (k as f64).ln().floor() as usize;
    let row = |i: usize| &x[i * d..(i + 1) * d];
    // Squared distances as ||x||^2 + ||c||^2 - 2 x.c (scikit-learn's euclidean_distances),
    // clamped at 0.
    let norms: Vec<f32> = x.par_chunks(d).map(|p| dot(p, p)).collect();
    let dist_to = |c: usize| -> Vec<f64> {
        let cr = row(c);
        (0..n)
            .into_par_iter()
            .with_min_len(CHUNK)
            .map(|i| ((norms[i] + norms[c] - 2.0 * dot(row(i), cr)) as f64).max(0.0))
            .collect()
    };
    let first = rng.random_range(0..n);
    let mut centres = row(first).to_vec();
    let mut closest: Vec<f64> = dist_to(first);
    let mut potential: f64 = closest.iter().sum();
    while centres.len() / d < k {
        // Candidates drawn with probability proportional to the squared distance.
        let mut cumulative = Vec::with_capacity(n);
        let mut acc = 0f64;
        for &c in &closest {
            acc += c;
            cumulative.push(acc);
        }
        let candidates: Vec<usize> = (0..trials)
            .map(|_| {
                if potential <= 0.0 {
                    return rng.random_range(0..n);
                }
                let t = rng.random::<f64>() * potential;
                cumulative.partition_point(|&c| c <= t).min(n - 1)
            })
            .collect();
        let scored: Vec<(f64, Vec<f64>)> = candidates
            .iter()
            .map(|&cand| {
                let dist: Vec<f64> = dist_to(cand)
                    .into_iter()
                    .zip(&closest)
                    .map(|(a, &b)| a.min(b))
                    .collect();
                (dist.iter().sum(), dist)
            })
            .collect();
        let best = (0..scored.len())
            .min_by(|&a, &b| scored[a].0.total_cmp(&scored[b].0))
            .expect("at least two candidates");
        potential = scored[best].0;
        closest = scored[best].1.clone();
        centres.extend_from_slice(row(candidates[best]));
    }
    centres
}

/// k-means++ then Lloyd.
pub fn kmeans<R: Rng>(x: &[f32], d: usize, k: usize, opt: Lloyd, rng: &mut R) -> Result<KMeans> {
    let n = x.len() / d.max(1);
    if k == 0 || k > n {
        bail!("k-means: k = {k} clusters for {n} points");
    }
    let init = kmeans_plus_plus(x, d, k, rng);
    lloyd(x, d, &init, opt)
}

/// A tree of centres: level `l` has `k^(l+1)` of them, the children of node `i` at level `l`
/// being nodes `i*k .. i*k + k` at level `l + 1`. A point's word is the leaf reached by taking
/// the nearest child at every level, so words number `k^levels`.
#[derive(Debug, Clone, PartialEq)]
pub struct HierarchicalKMeans {
    pub levels: usize,
    pub k: usize,
    pub dim: usize,
    /// Per level, `[k^(l+1), dim]`.
    pub centres: Vec<Vec<f32>>,
    /// Per level, the training points that reached each node.
    pub counts: Vec<Vec<u64>>,
}

impl HierarchicalKMeans {
    /// Cluster `x` into `k`, each cluster into `k` again, `levels` deep. A node with fewer than
    /// `k` points keeps one child per point and repeats its own centre for the rest (children
    /// no training point reaches); a node with none repeats its centre for all. Nodes of a
    /// level are clustered in parallel, each from its own seeded stream.
    pub fn fit(
        x: &[f32],
        d: usize,
        levels: usize,
        k: usize,
        opt: Lloyd,
        seed: u64,
    ) -> Result<Self> {
        if levels == 0 || k < 2 {
            bail!("hierarchical k-means needs at least 1 level and k >= 2");
        }
        if (k as f64).powi(levels as i32) > 16_777_216.0 {
            bail!("{levels} levels of {k} give more than 2^24 words");
        }
        if d == 0 || x.is_empty() || !x.len().is_multiple_of(d) {
            bail!("k-means needs a non-empty [n, d] matrix");
        }
        if x.iter().any(|v| !v.is_finite()) {
            bail!("k-means: a feature is not finite (NaN or infinite)");
        }
        let n = x.len() / d;
        let mut members: Vec<Vec<u32>> = vec![(0..n as u32).collect()];
        let root = vec![0f32; d];
        let mut centres: Vec<Vec<f32>> = Vec::with_capacity(levels);
        let mut counts = Vec::with_capacity(levels);
        for level in 0..levels {
            let nodes: Vec<(Vec<f32>, Vec<Vec<u32>>)> = members
                .par_iter()
                .enumerate()
                .map(|(node, idx)| {
                    let parent = match centres.last() {
                        Some(c) => &c[node * d..(node + 1) * d],
                        None => &root[..],
                    };
                    split_node(x, d, idx, parent, k, opt, seed, level, node)
                })
                .collect::<Result<_>>()?;
            let mut level_centres = Vec::with_capacity(nodes.len() * k * d);
            let mut next = Vec::with_capacity(nodes.len() * k);
            for (c, m) in nodes {
                level_centres.extend(c);
                next.extend(m);
            }
            counts.push(next.iter().map(|m| m.len() as u64).collect());
            centres.push(level_centres);
            members = next;
        }
        Ok(Self {
            levels,
            k,
            dim: d,
            centres,
            counts,
        })
    }

    pub fn words(&self) -> usize {
        self.k.pow(self.levels as u32)
    }

    /// The node reached at every level (the last is the word).
    pub fn path(&self, v: &[f32]) -> Vec<u32> {
        let d = self.dim;
        let mut node = 0usize;
        let mut path = Vec::with_capacity(self.levels);
        for level in 0..self.levels {
            let first = node * self.k;
            let cs = &self.centres[level][first * d..(first + self.k) * d];
            let norms: Vec<f32> = cs.chunks_exact(d).map(|c| dot(c, c)).collect();
            let mut best = (0usize, f32::INFINITY);
            for c in 0..self.k {
                let s = norms[c] - 2.0 * dot(v, &cs[c * d..(c + 1) * d]);
                if s < best.1 {
                    best = (c, s);
                }
            }
            node = first + best.0;
            path.push(node as u32);
        }
        path
    }

    /// The word (leaf index, `0..k^levels`) of a feature vector.
    pub fn word(&self, v: &[f32]) -> u32 {
        *self.path(v).last().expect("at least one level")
    }
}

/// Children centres and members of one node.
#[allow(clippy::too_many_arguments)]
fn split_node(
    x: &[f32],
    d: usize,
    idx: &[u32],
    parent: &[f32],
    k: usize,
    opt: Lloyd,
    seed: u64,
    level: usize,
    node: usize,
) -> Result<(Vec<f32>, Vec<Vec<u32>>)> {
    let mut members = vec![Vec::new(); k];
    if idx.len() < k {
        // Too few points to split: one child per point, the parent's centre for the rest.
        let mut centres = Vec::with_capacity(k * d);
        for (c, &i) in idx.iter().enumerate() {
            centres.extend_from_slice(&x[i as usize * d..(i as usize + 1) * d]);
            members[c].push(i);
        }
        for _ in idx.len()..k {
            centres.extend_from_slice(parent);
        }
        return Ok((centres, members));
    }
    // The root holds every point in order: cluster `x` itself rather than a copy.
    let sub: std::borrow::Cow<[f32]> = if idx.len() * d == x.len() {
        std::borrow::Cow::Borrowed(x)
    } else {
        let mut v = Vec::with_capacity(idx.len() * d);
        for &i in idx {
            v.extend_from_slice(&x[i as usize * d..(i as usize + 1) * d]);
        }
        std::borrow::Cow::Owned(v)
    };
    let stream = (level as u64) << 40 | node as u64;
    let mut rng = rng_for(seed, STREAM_HKM, stream);
    let km = kmeans(&sub, d, k, opt, &mut rng)?;
    for (&i, &l) in idx.iter().zip(&km.labels) {
        members[l as usize].push(i);
    }
    Ok((km.centres, members))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_matches_a_plain_sum() {
        let a: Vec<f32> = (0..37).map(|i| i as f32 * 0.5).collect();
        let b: Vec<f32> = (0..37).map(|i| 1.0 - i as f32 * 0.25).collect();
        let want: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        assert!((dot(&a, &b) - want).abs() < 1e-3);
    }
}
