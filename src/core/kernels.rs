//! Vectorised f32 kernels over slices, free of burn types: the arithmetic of the fused
//! operations ([`super::fused`]: GELU, cross-entropy; [`super::fused_ops`]: LayerNorm, softmax).
//!
//! Written so that the compiler vectorises them (reductions over eight interleaved lanes, a
//! polynomial `exp` without branches) and compiled twice by `simd_dispatch!`: for AVX2 + FMA
//! when the CPU has them, and for the baseline target. Both give the same results: no operation
//! is contracted into an FMA.
//!
//! Dependencies run one way: `kernels` <- `fused_ops` (burn glue, host tensor access) <- `fused`.

/// `exp(x)` for f32, written so that the compiler vectorises it: Cody-Waite range reduction
/// and a degree-6 polynomial; relative error below 2.5e-7 on [-87, 88].
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    // Adding and subtracting 1.5 * 2^23 rounds to the nearest integer without a branch.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let n = (x * LOG2E + ROUND) - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    // SAFETY: x is clamped to [-87, 88], so n is a whole number in [-126, 127], which an i32
    // holds. (`as i32` would saturate and check for NaN lane by lane, and not vectorise.)
    let n_int: i32 = unsafe { n.to_int_unchecked() };
    let scale = f32::from_bits(((n_int + 127) as u32) << 23);
    p * scale
}

/// GELU and its derivative at `x` (exact GELU, `x Phi(x)`), with `erf` from Abramowitz and
/// Stegun 7.1.26 (absolute error below 1.5e-7).
#[inline(always)]
pub fn gelu_and_derivative(x: f32) -> (f32, f32) {
    const P: f32 = 0.327_591_1;
    const A1: f32 = 0.254_829_6;
    const A2: f32 = -0.284_496_72;
    const A3: f32 = 1.421_413_8;
    const A4: f32 = -1.453_152_1;
    const A5: f32 = 1.061_405_4;
    const FRAC_1_SQRT_2: f32 = std::f32::consts::FRAC_1_SQRT_2;
    // 1 / sqrt(2 pi)
    const INV_SQRT_2PI: f32 = 0.398_942_3;
    let z = (x * FRAC_1_SQRT_2).abs();
    let t = 1.0 / (1.0 + P * z);
    let poly = t * (A1 + t * (A2 + t * (A3 + t * (A4 + t * A5))));
    // exp(-z^2) = exp(-x^2 / 2): the same factor serves erf and the normal density.
    let gauss = exp_f32(-z * z);
    let erf_abs = 1.0 - poly * gauss;
    let erf = erf_abs.copysign(x);
    let cdf = 0.5 * (1.0 + erf);
    (x * cdf, cdf + x * INV_SQRT_2PI * gauss)
}

#[inline(always)]
fn gelu_kernel(x: &[f32], d: &mut [f32], c: &mut [f32]) {
    for ((&xi, di), ci) in x.iter().zip(d.iter_mut()).zip(c.iter_mut()) {
        let (y, dy) = gelu_and_derivative(xi);
        *di = dy;
        *ci = y - xi * dy;
    }
}

#[inline(always)]
fn gelu_forward_kernel(x: &mut [f32]) {
    for xi in x.iter_mut() {
        *xi = gelu_and_derivative(*xi).0;
    }
}

/// Maximum and sum over eight interleaved lanes, so that the compiler vectorises them (a float
/// reduction in one accumulator cannot be reordered, hence not vectorised).
#[inline(always)]
pub(crate) fn lanes_max(x: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; 8];
    let chunks = x.chunks_exact(8);
    let tail = chunks.remainder();
    for c in chunks {
        for j in 0..8 {
            acc[j] = acc[j].max(c[j]);
        }
    }
    tail.iter()
        .chain(&acc)
        .fold(f32::NEG_INFINITY, |m, &v| m.max(v))
}

#[inline(always)]
pub(crate) fn lanes_sum(x: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let chunks = x.chunks_exact(8);
    let tail = chunks.remainder();
    for c in chunks {
        for j in 0..8 {
            acc[j] += c[j];
        }
    }
    tail.iter().chain(&acc).sum()
}

/// One row of softmax cross-entropy against the target distribution
/// `q = (1 - smoothing) onehot(target) + smoothing / C`: overwrites `row` with `softmax(row) - q`
/// and returns `-sum_j q_j log softmax(row)_j = logsumexp(row) - sum_j q_j row_j`.
#[inline(always)]
fn cross_entropy_row(row: &mut [f32], target: usize, smoothing: f32) -> f32 {
    let max = lanes_max(row);
    let logit = row[target];
    let uniform = smoothing / row.len() as f32;
    let mean_part = if smoothing > 0.0 {
        uniform * lanes_sum(row)
    } else {
        0.0
    };
    for v in row.iter_mut() {
        *v = exp_f32(*v - max);
    }
    let sum = lanes_sum(row);
    let inv = 1.0 / sum;
    for v in row.iter_mut() {
        *v = *v * inv - uniform;
    }
    row[target] -= 1.0 - smoothing;
    sum.ln() + max - (1.0 - smoothing) * logit - mean_part
}

simd_dispatch!(pub(crate) gelu_chunk(x: &[f32], d: &mut [f32], c: &mut [f32]) -> () {
    gelu_kernel(x, d, c)
});

simd_dispatch!(pub(crate) gelu_forward_chunk(x: &mut [f32]) -> () {
    gelu_forward_kernel(x)
});

simd_dispatch!(pub(crate) cross_entropy_rows(rows: &mut [f32], width: usize, targets: &[u32], smoothing: f32) -> f64 {
    let mut total = 0.0f64;
    for (row, &t) in rows.chunks_mut(width).zip(targets) {
        total += cross_entropy_row(row, t as usize, smoothing) as f64;
    }
    total
});

#[inline(always)]
pub(crate) fn lanes_dot(x: &[f32], y: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let cx = x.chunks_exact(8);
    let cy = y.chunks_exact(8);
    let tail: f32 = cx
        .remainder()
        .iter()
        .zip(cy.remainder())
        .map(|(a, b)| a * b)
        .sum();
    for (a, b) in cx.zip(cy) {
        for j in 0..8 {
            acc[j] += a[j] * b[j];
        }
    }
    tail + acc.iter().sum::<f32>()
}

// LayerNorm rows

simd_dispatch!(pub(crate) layer_norm_rows(x: &[f32], gamma: &[f32], beta: &[f32], eps: f32, y: &mut [f32], xhat: &mut [f32], rstd: &mut [f32]) -> () {
    let d = gamma.len();
    for (((row, out), nrm), r) in x
        .chunks_exact(d)
        .zip(y.chunks_exact_mut(d))
        .zip(xhat.chunks_exact_mut(d))
        .zip(rstd.iter_mut())
    {
        let mean = lanes_sum(row) / d as f32;
        for (n, &v) in nrm.iter_mut().zip(row) {
            *n = v - mean;
        }
        let var = lanes_dot(nrm, nrm) / d as f32;
        *r = 1.0 / (var + eps).sqrt();
        for (((o, n), &g), &b) in out.iter_mut().zip(nrm.iter_mut()).zip(gamma).zip(beta) {
            *n *= *r;
            *o = *n * g + b;
        }
    }
});

simd_dispatch!(pub(crate) layer_norm_backward_rows(grad: &[f32], xhat: &[f32], rstd: &[f32], gamma: &[f32], dx: &mut [f32], dgamma: &mut [f32], dbeta: &mut [f32]) -> () {
    let d = gamma.len();
    for (((g, n), out), &r) in grad
        .chunks_exact(d)
        .zip(xhat.chunks_exact(d))
        .zip(dx.chunks_exact_mut(d))
        .zip(rstd)
    {
        for (o, (&gi, &gm)) in out.iter_mut().zip(g.iter().zip(gamma)) {
            *o = gi * gm;
        }
        let a = lanes_sum(out) / d as f32;
        let b = lanes_dot(out, n) / d as f32;
        for (o, &ni) in out.iter_mut().zip(n) {
            *o = r * (*o - a - ni * b);
        }
        for (((dg, db), &gi), &ni) in dgamma.iter_mut().zip(dbeta.iter_mut()).zip(g).zip(n) {
            *dg += gi * ni;
            *db += gi;
        }
    }
});

// Softmax rows

simd_dispatch!(pub(crate) softmax_rows(x: &[f32], width: usize, p: &mut [f32]) -> () {
    for (row, out) in x.chunks_exact(width).zip(p.chunks_exact_mut(width)) {
        let max = lanes_max(row);
        for (o, &v) in out.iter_mut().zip(row) {
            *o = exp_f32(v - max);
        }
        let inv = 1.0 / lanes_sum(out);
        for o in out.iter_mut() {
            *o *= inv;
        }
    }
});

simd_dispatch!(pub(crate) softmax_backward_rows(grad: &[f32], p: &[f32], width: usize, dx: &mut [f32]) -> () {
    for ((g, pr), out) in grad
        .chunks_exact(width)
        .zip(p.chunks_exact(width))
        .zip(dx.chunks_exact_mut(width))
    {
        let s = lanes_dot(g, pr);
        for ((o, &gi), &pi) in out.iter_mut().zip(g).zip(pr) {
            *o = pi * (gi - s);
        }
    }
});
