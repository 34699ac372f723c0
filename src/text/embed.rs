//! Sentence embeddings: tokenise, run the encoder on length-sorted batches (in parallel on
//! the CPU, one batch per worker thread), pool, optionally L2-normalise.

use super::model::Bert;
use super::tokenize::TextTokenizer;
use anyhow::{bail, Context, Result};
use burn::tensor::Device;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Pooling {
    /// The `[CLS]` token's last hidden state.
    Cls,
    /// The mean of the real tokens' last hidden states (sentence-transformers).
    Mean,
    /// BERT's pooler, `tanh(W h_[CLS] + b)`.
    Pooler,
}

pub struct Embedded {
    pub dim: usize,
    /// Row-major [N, dim], in input order.
    pub vectors: Vec<f32>,
    /// Inputs cut to the maximum length.
    pub truncated: usize,
}

/// Read one text per line. Empty lines are an error naming the line: they would silently
/// become `[CLS] [SEP]` embeddings.
pub fn read_lines(path: &Path) -> Result<Vec<String>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let text = String::from_utf8(bytes)
        .map_err(|e| anyhow::anyhow!("{}: not UTF-8 text ({e})", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            bail!(
                "{}:{}: empty line (one text per line)",
                path.display(),
                i + 1
            );
        }
        out.push(line.to_string());
    }
    if out.is_empty() {
        bail!("{}: no text", path.display());
    }
    Ok(out)
}

/// Embed `texts` in batches of `batch_size` (a progress bar unless `quiet`).
#[allow(clippy::too_many_arguments)]
pub fn embed(
    model: &Bert,
    tok: &TextTokenizer,
    texts: &[String],
    pooling: Pooling,
    normalize: bool,
    batch_size: usize,
    device: &Device,
    quiet: bool,
) -> Result<Embedded> {
    let inputs: Vec<(&str, Option<&str>)> = texts.iter().map(|t| (t.as_str(), None)).collect();
    let encoded = tok.encode(&inputs)?;
    let truncated = encoded.iter().filter(|e| e.truncated).count();
    // Longest first, so that batches hold similar lengths and the big ones start early.
    let mut order: Vec<usize> = (0..encoded.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(encoded[i].ids.len()));
    let dim = model.embeddings.word_embeddings.weight.dims()[1];
    let batches: Vec<&[usize]> = order.chunks(batch_size.max(1)).collect();
    let pb = crate::core::progress::bar(batches.len() as u64, "embedding", quiet);
    let pooled: Vec<Vec<f32>> = batches
        .par_iter()
        .map(|idx| {
            let chunk: Vec<_> = idx.iter().map(|&i| encoded[i].clone()).collect();
            let batch = tok.pad(&chunk);
            let hidden = model.forward(&batch, device);
            let rows: Vec<f32> = match pooling {
                Pooling::Pooler => model.pool(hidden).into_data().try_to_vec::<f32>().unwrap(),
                Pooling::Cls | Pooling::Mean => {
                    let h: Vec<f32> = hidden.into_data().try_to_vec::<f32>().unwrap();
                    let mut out = vec![0f32; batch.batch * dim];
                    for r in 0..batch.batch {
                        let o = &mut out[r * dim..(r + 1) * dim];
                        if pooling == Pooling::Cls {
                            o.copy_from_slice(&h[r * batch.len * dim..][..dim]);
                            continue;
                        }
                        let mut n = 0usize;
                        for t in 0..batch.len {
                            if batch.mask[r * batch.len + t] == 1 {
                                n += 1;
                                let row = &h[(r * batch.len + t) * dim..][..dim];
                                o.iter_mut().zip(row).for_each(|(a, b)| *a += b);
                            }
                        }
                        o.iter_mut().for_each(|a| *a /= n.max(1) as f32);
                    }
                    out
                }
            };
            pb.inc(1);
            rows
        })
        .collect();
    pb.finish_and_clear();
    let mut vectors = vec![0f32; texts.len() * dim];
    for (idx, rows) in batches.iter().zip(&pooled) {
        for (k, &i) in idx.iter().enumerate() {
            let mut v = rows[k * dim..(k + 1) * dim].to_vec();
            if normalize {
                let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
                v.iter_mut().for_each(|x| *x /= norm);
            }
            vectors[i * dim..(i + 1) * dim].copy_from_slice(&v);
        }
    }
    Ok(Embedded {
        dim,
        vectors,
        truncated,
    })
}

/// Cosine similarity of rows `a` and `b` of a [N, dim] matrix.
pub fn cosine(vectors: &[f32], dim: usize, a: usize, b: usize) -> f32 {
    let (x, y) = (&vectors[a * dim..][..dim], &vectors[b * dim..][..dim]);
    let dot: f32 = x.iter().zip(y).map(|(p, q)| p * q).sum();
    let nx = x.iter().map(|p| p * p).sum::<f32>().sqrt();
    let ny = y.iter().map(|q| q * q).sum::<f32>().sqrt();
    dot / (nx * ny).max(1e-12)
}
