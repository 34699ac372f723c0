//! Multinomial logistic regression: the linear probe of every model's representation
//! (metapath2vec's node classification, CBT's and VideoBERT's action probes), written once.

/// Multinomial logistic regression with L2 penalty `1/(2C)|W|^2` (liblinear's and
/// scikit-learn's objective, C = 1), fitted by full-batch gradient descent with Adam.
pub struct LogisticRegression {
    w: Vec<Vec<f64>>, // [classes][dim + 1]
}

impl LogisticRegression {
    pub fn fit(x: &[Vec<f64>], y: &[usize], classes: usize, c: f64, iters: usize) -> Self {
        let d = x[0].len();
        let n = x.len() as f64;
        let mut w = vec![vec![0f64; d + 1]; classes];
        let mut m = w.clone();
        let mut v = w.clone();
        let lr = 0.05;
        let mut p = vec![0f64; classes];
        for t in 1..=iters {
            let mut g = vec![vec![0f64; d + 1]; classes];
            for (xi, &yi) in x.iter().zip(y) {
                Self::probs(&w, xi, &mut p);
                for k in 0..classes {
                    let e = p[k] - if k == yi { 1.0 } else { 0.0 };
                    for j in 0..d {
                        g[k][j] += e * xi[j];
                    }
                    g[k][d] += e;
                }
            }
            for k in 0..classes {
                for j in 0..=d {
                    // mean data loss + L2 on weights (not the intercept), scaled like C/n
                    let reg = if j < d { w[k][j] / (c * n) } else { 0.0 };
                    let gr = g[k][j] / n + reg;
                    m[k][j] = 0.9 * m[k][j] + 0.1 * gr;
                    v[k][j] = 0.999 * v[k][j] + 0.001 * gr * gr;
                    let mh = m[k][j] / (1.0 - 0.9f64.powi(t as i32));
                    let vh = v[k][j] / (1.0 - 0.999f64.powi(t as i32));
                    w[k][j] -= lr * mh / (vh.sqrt() + 1e-8);
                }
            }
        }
        Self { w }
    }

    fn probs(w: &[Vec<f64>], x: &[f64], p: &mut [f64]) {
        let d = x.len();
        let mut max = f64::NEG_INFINITY;
        for (k, wk) in w.iter().enumerate() {
            let s: f64 = wk[..d].iter().zip(x).map(|(a, b)| a * b).sum::<f64>() + wk[d];
            p[k] = s;
            max = max.max(s);
        }
        let mut z = 0.0;
        for pk in p.iter_mut() {
            *pk = (*pk - max).exp();
            z += *pk;
        }
        for pk in p.iter_mut() {
            *pk /= z;
        }
    }

    pub fn predict(&self, x: &[f64]) -> usize {
        let mut p = vec![0f64; self.w.len()];
        Self::probs(&self.w, x, &mut p);
        (0..p.len())
            .max_by(|&a, &b| p[a].total_cmp(&p[b]))
            .unwrap_or(0)
    }
}

impl LogisticRegression {
    /// Class probabilities of `x`.
    pub fn probabilities(&self, x: &[f64]) -> Vec<f64> {
        let mut p = vec![0f64; self.w.len()];
        Self::probs(&self.w, x, &mut p);
        p
    }
}

/// Per-column mean and standard deviation of `x` (a column with no spread gets 1, so it stays 0
/// once centred).
pub fn column_stats(x: &[Vec<f64>]) -> (Vec<f64>, Vec<f64>) {
    let d = x.first().map_or(0, Vec::len);
    let n = x.len().max(1) as f64;
    let mut mean = vec![0f64; d];
    for row in x {
        for (m, v) in mean.iter_mut().zip(row) {
            *m += v / n;
        }
    }
    let mut var = vec![0f64; d];
    for row in x {
        for ((s, v), m) in var.iter_mut().zip(row).zip(&mean) {
            *s += (v - m) * (v - m) / n;
        }
    }
    let std = var
        .into_iter()
        .map(|v| if v > 1e-12 { v.sqrt() } else { 1.0 })
        .collect();
    (mean, std)
}

/// `(x - mean) / std` in place, row by row.
pub fn standardize(x: &mut [Vec<f64>], mean: &[f64], std: &[f64]) {
    for row in x {
        for ((v, m), s) in row.iter_mut().zip(mean).zip(std) {
            *v = (*v - m) / s;
        }
    }
}
