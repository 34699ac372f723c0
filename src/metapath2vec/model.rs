//! Heterogeneous skip-gram with negative sampling, trained by lock-free parallel SGD over shared
//! weights (Hogwild, as word2vec's C code). Weights are `AtomicU32` holding f32 bits, read and
//! written with relaxed ordering: racing updates may be lost, as in word2vec, but there is no
//! undefined behaviour.

use rand::Rng;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};

/// A vector table of `rows` x `dim` shared f32 weights.
pub struct SharedMatrix {
    pub rows: usize,
    pub dim: usize,
    data: Vec<AtomicU32>,
}

impl SharedMatrix {
    pub fn zeros(rows: usize, dim: usize) -> Self {
        Self {
            rows,
            dim,
            data: (0..rows * dim)
                .map(|_| AtomicU32::new(0f32.to_bits()))
                .collect(),
        }
    }

    /// word2vec's initialisation of input vectors: uniform in [-0.5/dim, 0.5/dim).
    pub fn uniform<R: Rng>(rows: usize, dim: usize, rng: &mut R) -> Self {
        let scale = 1.0 / dim as f32;
        Self {
            rows,
            dim,
            data: (0..rows * dim)
                .map(|_| AtomicU32::new(((rng.random::<f32>() - 0.5) * scale).to_bits()))
                .collect(),
        }
    }

    #[inline]
    fn row(&self, r: usize) -> &[AtomicU32] {
        &self.data[r * self.dim..(r + 1) * self.dim]
    }

    /// Ask the CPU to start fetching row `r` into cache. Rows are picked at random (negative
    /// samples), so their loads miss; issuing every row of an update before using any lets the
    /// misses overlap.
    #[inline]
    pub fn prefetch(&self, r: usize) {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            let row = self.row(r);
            for line in (0..row.len()).step_by(16) {
                let p = row[line..].as_ptr() as *const i8;
                // SAFETY: a prefetch is a hint that never faults; `p` points into `row`.
                #[allow(unused_unsafe)]
                unsafe {
                    _mm_prefetch::<_MM_HINT_T0>(p)
                };
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = r;
    }

    /// Copy row `r` into `out`.
    #[inline]
    pub fn load(&self, r: usize, out: &mut [f32]) {
        for (o, a) in out.iter_mut().zip(self.row(r)) {
            *o = f32::from_bits(a.load(Relaxed));
        }
    }

    /// One negative-sampling update against row `r`, fused into a single pass: with
    /// `f = l1 . row`, `g = grad(f)`, then `neu1e += g * row` and `row += g * l1`.
    #[inline]
    pub fn sgd_pair(
        &self,
        r: usize,
        l1: &[f32],
        neu1e: &mut [f32],
        buf: &mut [f32],
        grad: impl Fn(f32) -> f32,
    ) {
        self.load(r, buf);
        let g = grad(dot(l1, buf));
        if g == 0.0 {
            return;
        }
        axpy(neu1e, g, buf);
        for ((a, &v), &x) in self.row(r).iter().zip(buf.iter()).zip(l1) {
            a.store((v + g * x).to_bits(), Relaxed);
        }
    }

    /// `row[r] += g * x`.
    #[inline]
    pub fn add_scaled(&self, r: usize, g: f32, x: &[f32]) {
        for (a, &v) in self.row(r).iter().zip(x) {
            let cur = f32::from_bits(a.load(Relaxed));
            a.store((cur + g * v).to_bits(), Relaxed);
        }
    }

    pub fn to_vec(&self) -> Vec<f32> {
        self.data
            .iter()
            .map(|a| f32::from_bits(a.load(Relaxed)))
            .collect()
    }
}

/// Dot product in 8 independent lanes, so the compiler vectorises it.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let ca = a.chunks_exact(8);
    let cb = b.chunks_exact(8);
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for k in 0..8 {
            acc[k] += x[k] * y[k];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

/// `acc += g * x`, vectorisable.
#[inline]
pub fn axpy(acc: &mut [f32], g: f32, x: &[f32]) {
    for (a, &v) in acc.iter_mut().zip(x) {
        *a += g * v;
    }
}

/// Walker's alias table: O(1) draws from a discrete distribution.
#[derive(Debug, Clone)]
pub struct AliasTable {
    prob: Vec<f32>,
    alias: Vec<u32>,
    /// The outcome for index i (lets a table cover a subset of nodes).
    values: Vec<u32>,
}

impl AliasTable {
    /// A table over `values` with unnormalised weights. `None` when all weights are zero.
    pub fn new(values: Vec<u32>, weights: &[f64]) -> Option<Self> {
        let n = values.len();
        let total: f64 = weights.iter().sum();
        if n == 0 || total <= 0.0 {
            return None;
        }
        let mut scaled: Vec<f64> = weights.iter().map(|w| w * n as f64 / total).collect();
        let mut prob = vec![0f32; n];
        let mut alias = vec![0u32; n];
        let (mut small, mut large): (Vec<usize>, Vec<usize>) =
            (0..n).partition(|&i| scaled[i] < 1.0);
        while let (Some(s), Some(&l)) = (small.pop(), large.last()) {
            prob[s] = scaled[s] as f32;
            alias[s] = l as u32;
            scaled[l] -= 1.0 - scaled[s];
            if scaled[l] < 1.0 {
                large.pop();
                small.push(l);
            }
        }
        for i in large.into_iter().chain(small) {
            prob[i] = 1.0;
            alias[i] = i as u32;
        }
        Some(Self {
            prob,
            alias,
            values,
        })
    }

    /// Draw with two uniform numbers: `u1` picks a column (multiply-shift, no division), `u2`
    /// in [0, 1) chooses between it and its alias.
    #[inline]
    pub fn sample(&self, u1: u32, u2: f32) -> u32 {
        let i = ((u1 as u64 * self.prob.len() as u64) >> 32) as usize;
        let j = if u2 < self.prob[i] {
            i
        } else {
            self.alias[i] as usize
        };
        self.values[j]
    }
}

/// Precomputed logistic function on [-MAX_EXP, MAX_EXP], as word2vec.
pub struct Sigmoid {
    table: Vec<f32>,
}

pub const MAX_EXP: f32 = 6.0;
const EXP_TABLE_SIZE: usize = 1000;

impl Default for Sigmoid {
    fn default() -> Self {
        let table = (0..EXP_TABLE_SIZE)
            .map(|i| {
                let x = (i as f32 / EXP_TABLE_SIZE as f32 * 2.0 - 1.0) * MAX_EXP;
                let e = x.exp();
                e / (e + 1.0)
            })
            .collect();
        Self { table }
    }
}

impl Sigmoid {
    /// Gradient scale `label - sigmoid(f)` of word2vec (0 beyond the table's range when right).
    #[inline]
    pub fn grad(&self, f: f32, label: f32) -> f32 {
        if f > MAX_EXP {
            label - 1.0
        } else if f < -MAX_EXP {
            label
        } else {
            let idx = ((f + MAX_EXP) * (EXP_TABLE_SIZE as f32 / MAX_EXP / 2.0)) as usize;
            label - self.table[idx.min(EXP_TABLE_SIZE - 1)]
        }
    }
}

/// A small, fast generator for the SGD hot loop (SplitMix64). Not for anything that needs
/// statistical strength beyond sampling windows and negatives.
#[derive(Debug, Clone)]
pub struct FastRng(u64);

impl FastRng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        crate::core::rng::mix(self.0)
    }
    /// Two independent 32-bit halves.
    #[inline]
    pub fn pair(&mut self) -> (u32, u32) {
        let x = self.next_u64();
        ((x >> 32) as u32, x as u32)
    }
    /// Uniform in [0, 1).
    #[inline]
    pub fn unit_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
    /// Uniform in 0..n.
    #[inline]
    pub fn below(&mut self, n: usize) -> usize {
        (((self.next_u64() >> 32) * n as u64) >> 32) as usize
    }
}

/// Uniform f32 in [0, 1) from 32 random bits.
#[inline]
pub fn unit_f32(bits: u32) -> f32 {
    (bits >> 8) as f32 * (1.0 / (1u32 << 24) as f32)
}
