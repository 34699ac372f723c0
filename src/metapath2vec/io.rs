//! Embedding files: word2vec text format (readable by gensim's `load_word2vec_format`) and
//! safetensors (`embeddings` [N, d], node names in the metadata as a JSON list under `names`).

use super::eval::NamedEmbeddings;
use crate::core::checkpoint::{load_safetensors, save_safetensors};
use crate::core::error::InputError;
use crate::core::run::write_atomic_with;
use anyhow::{bail, Context, Result};
use burn::tensor::TensorData;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;

/// Write `.txt` as word2vec text, anything else as safetensors. Atomic.
pub fn save(path: &Path, emb: &NamedEmbeddings) -> Result<()> {
    if path.extension().is_some_and(|e| e == "txt") {
        // Streamed: no second copy of the vectors as text in memory.
        write_atomic_with(path, |w| {
            writeln!(w, "{} {}", emb.names.len(), emb.dim)?;
            let mut line = String::new();
            for (i, name) in emb.names.iter().enumerate() {
                line.clear();
                line.push_str(name);
                for v in emb.row(i) {
                    write!(line, " {v}")?;
                }
                line.push('\n');
                w.write_all(line.as_bytes())?;
            }
            Ok(())
        })
    } else {
        let data = TensorData::new(emb.vectors.clone(), [emb.names.len(), emb.dim]);
        let meta = HashMap::from([
            ("names".to_string(), serde_json::to_string(&emb.names)?),
            ("format".to_string(), "tessera-metapath2vec".to_string()),
        ]);
        save_safetensors(path, &[("embeddings".to_string(), data)], meta)
    }
}

/// Read either format (by extension: `.txt` is word2vec text).
pub fn load(path: &Path) -> Result<NamedEmbeddings> {
    if path.extension().is_some_and(|e| e == "txt") {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let mut lines = text.lines();
        let header = lines.next().unwrap_or("");
        let h: Vec<usize> = header
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        if h.len() != 2 {
            bail!(InputError::new(
                path,
                1,
                None,
                "expected the header `count dim`"
            ));
        }
        let (n, d) = (h[0], h[1]);
        // Every value takes at least two characters: a header claiming more than the file can
        // hold is refused before anything is allocated for it.
        let values = n.checked_mul(d).filter(|&v| v <= text.len() / 2 + 1);
        let Some(values) = values else {
            bail!(InputError::new(
                path,
                1,
                None,
                format!("the header says {n} vectors of {d} values, more than the file holds")
            ));
        };
        let mut names = Vec::with_capacity(n.min(values));
        let mut vectors = Vec::with_capacity(values);
        for (i, line) in lines.enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let mut f = line.split_whitespace();
            let name = f.next().expect("non-empty line");
            let vals: Vec<f32> = f
                .map(|x| x.parse::<f32>())
                .collect::<Result<_, _>>()
                .map_err(|_| {
                    InputError::new(path, i + 2, None, "a vector value is not a number")
                })?;
            if vals.len() != d {
                bail!(InputError::new(
                    path,
                    i + 2,
                    None,
                    format!("expected {d} values, found {}", vals.len())
                ));
            }
            names.push(name.to_string());
            vectors.extend(vals);
        }
        if names.len() != n {
            bail!(InputError::new(
                path,
                1,
                None,
                format!("header says {n} vectors, file has {}", names.len())
            ));
        }
        return Ok(NamedEmbeddings {
            names,
            dim: d,
            vectors,
        });
    }
    let (tensors, meta) = load_safetensors(path)?;
    let t = tensors
        .get("embeddings")
        .with_context(|| format!("{}: no `embeddings` tensor", path.display()))?;
    let shape = t.shape().to_vec();
    if shape.len() != 2 {
        bail!(
            "{}: `embeddings` must be 2-D, found shape {shape:?}",
            path.display()
        );
    }
    let names: Vec<String> = serde_json::from_str(
        meta.get("names")
            .with_context(|| format!("{}: metadata lacks `names`", path.display()))?,
    )?;
    if names.len() != shape[0] {
        bail!(
            "{}: {} names for {} vectors",
            path.display(),
            names.len(),
            shape[0]
        );
    }
    Ok(NamedEmbeddings {
        names,
        dim: shape[1],
        vectors: t
            .clone()
            .try_to_vec::<f32>()
            .map_err(|e| anyhow::anyhow!("{e:?}"))?,
    })
}
