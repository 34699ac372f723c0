//! VideoBERT's visual words: a hierarchical k-means codebook over clip features (the paper:
//! 4 levels of 12, 20,736 words), saved as safetensors with its tree, and the tokenisation of a
//! video's clips into word ids beside its narration.
//!
//! Codebook file: `centres.<l>` `[k^(l+1), D]` and `counts.<l>` `[k^(l+1)]` (training clips that
//! reached each node) per level `l`; metadata `levels`, `k`, `dim`. The children of node `i` at
//! level `l` are nodes `i*k .. i*k + k` at level `l + 1`; a word is a leaf index.

use crate::core::checkpoint::save_safetensors;
use crate::core::error::InputError;
use crate::core::kmeans::HierarchicalKMeans;
use anyhow::{Context, Result};
use burn::tensor::TensorData;
use std::collections::HashMap;
use std::path::Path;

pub fn save_codebook(path: &Path, hkm: &HierarchicalKMeans) -> Result<()> {
    let mut tensors = Vec::with_capacity(2 * hkm.levels);
    for l in 0..hkm.levels {
        let nodes = hkm.k.pow(l as u32 + 1);
        tensors.push((
            format!("centres.{l}"),
            TensorData::new(hkm.centres[l].clone(), [nodes, hkm.dim]),
        ));
        tensors.push((
            format!("counts.{l}"),
            TensorData::new(
                hkm.counts[l]
                    .iter()
                    .map(|&c| c as f32)
                    .collect::<Vec<f32>>(),
                [nodes],
            ),
        ));
    }
    let meta = HashMap::from([
        (
            "format".to_string(),
            "tessera-hierarchical-kmeans".to_string(),
        ),
        ("levels".to_string(), hkm.levels.to_string()),
        ("k".to_string(), hkm.k.to_string()),
        ("dim".to_string(), hkm.dim.to_string()),
    ]);
    save_safetensors(path, &tensors, meta)
}

pub fn load_codebook(path: &Path) -> Result<HierarchicalKMeans> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let bad = |field: Option<&str>, m: String| -> anyhow::Error {
        InputError::new(path, 0, field, m).into()
    };
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| bad(None, format!("not a safetensors file ({e:?})")))?;
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes)
        .map_err(|e| bad(None, format!("not a safetensors file ({e:?})")))?;
    let meta = meta.metadata().clone().unwrap_or_default();
    let num = |k: &str| -> Result<usize> {
        meta.get(k)
            .and_then(|v| v.parse::<usize>().ok())
            .ok_or_else(|| {
                bad(
                    Some(k),
                    "missing from the metadata (not a codebook?)".into(),
                )
            })
    };
    let (levels, k, dim) = (num("levels")?, num("k")?, num("dim")?);
    if levels == 0 || k < 2 || dim == 0 || (k as f64).powi(levels as i32) > 16_777_216.0 {
        return Err(bad(
            None,
            format!("{levels} levels of {k} over {dim} values is not a codebook"),
        ));
    }
    let mut centres = Vec::with_capacity(levels);
    let mut counts = Vec::with_capacity(levels);
    for l in 0..levels {
        let nodes = k.pow(l as u32 + 1);
        let read = |name: String, shape: Vec<usize>| -> Result<Vec<f32>> {
            let (got, values) = super::features::f32_tensor(path, &st, &name)?;
            if got != shape {
                return Err(bad(
                    Some(&name),
                    format!("shape {got:?}, expected {shape:?}"),
                ));
            }
            Ok(values)
        };
        let c = read(format!("centres.{l}"), vec![nodes, dim])?;
        if c.iter().any(|v| !v.is_finite()) {
            return Err(bad(
                Some(&format!("centres.{l}")),
                "a value is not finite".into(),
            ));
        }
        centres.push(c);
        counts.push(
            read(format!("counts.{l}"), vec![nodes])?
                .iter()
                .map(|&v| v as u64)
                .collect(),
        );
    }
    Ok(HierarchicalKMeans {
        levels,
        k,
        dim,
        centres,
        counts,
    })
}
