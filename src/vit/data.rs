//! ViT's own data handling: random-shift augmentation and the preprocessing of image files for a
//! model directory. The image-set readers are shared ([`crate::core::images`]) and re-exported
//! here.

use super::config::VitConfig;
use anyhow::{bail, Context, Result};
use rand::Rng;
use std::path::PathBuf;

pub use crate::core::images::*;

/// Random translation by up to `max_shift` pixels in each direction with zero fill: the same as
/// a random crop of the image padded by `max_shift` (the augmentation used for digits, where
/// flips would change the class).
pub fn random_shift<R: Rng>(
    img: &[f32],
    c: usize,
    h: usize,
    w: usize,
    max_shift: usize,
    rng: &mut R,
    out: &mut [f32],
) {
    let s = max_shift as i64;
    let dy = rng.random_range(-s..=s);
    let dx = rng.random_range(-s..=s);
    out.fill(0.0);
    for ch in 0..c {
        for y in 0..h as i64 {
            let sy = y - dy;
            if sy < 0 || sy >= h as i64 {
                continue;
            }
            for x in 0..w as i64 {
                let sx = x - dx;
                if sx < 0 || sx >= w as i64 {
                    continue;
                }
                out[ch * h * w + (y as usize) * w + x as usize] =
                    img[ch * h * w + (sy as usize) * w + sx as usize];
            }
        }
    }
}

/// The square input side of a model directory: `size` of its preprocessor_config.json, else the
/// config's `image_size`.
pub fn input_size(dir: &std::path::Path, mc: &VitConfig) -> Result<usize> {
    let path = dir.join("preprocessor_config.json");
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(mc.image_size);
    };
    let v: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{}: not JSON", path.display()))?;
    let side = |k: &str| v["size"][k].as_u64().map(|x| x as usize);
    match (side("height"), side("width")) {
        (Some(h), Some(w)) if h == w && h > 0 => Ok(h),
        (Some(h), Some(w)) => bail!(
            "{}: size {h}x{w}: only square inputs are supported",
            path.display()
        ),
        _ => Ok(mc.image_size),
    }
}

/// Per-channel mean and std for a model directory: `image_mean`/`image_std` from its
/// preprocessor_config.json or config.json, else 0.5 (Hugging Face's ViT default).
pub fn normalisation(dir: &std::path::Path, channels: usize) -> Result<(Vec<f32>, Vec<f32>)> {
    for name in ["preprocessor_config.json", "config.json"] {
        let Ok(text) = std::fs::read_to_string(dir.join(name)) else {
            continue;
        };
        let v: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{}: not JSON", dir.join(name).display()))?;
        if let (Some(m), Some(s)) = (v.get("image_mean"), v.get("image_std")) {
            let m: Vec<f32> = serde_json::from_value(m.clone())?;
            let s: Vec<f32> = serde_json::from_value(s.clone())?;
            anyhow::ensure!(
                m.len() == channels && s.len() == channels,
                "{}: image_mean/image_std do not have {channels} values",
                dir.join(name).display()
            );
            return Ok((m, s));
        }
    }
    Ok((vec![0.5; channels], vec![0.5; channels]))
}

/// Image files prepared for a model directory.
pub struct ImageBatch {
    /// Resized to the model's input side and normalised, [B, C, S, S].
    pub pixels: burn::tensor::TensorData,
    /// The resized [0, 1] pixels of each image, when asked for (for overlays).
    pub raw: Vec<Vec<f32>>,
    pub side: usize,
}

/// Image files resized (bicubic) to the model's input side and normalised as it was trained, [B, C,
/// S, S]; with `keep_raw` also their resized [0, 1] pixels.
pub fn image_batch(
    dir: &std::path::Path,
    mc: &VitConfig,
    files: &[PathBuf],
    keep_raw: bool,
) -> Result<ImageBatch> {
    image_batch_at(dir, mc, files, keep_raw, input_size(dir, mc)?)
}

/// [`image_batch`] at side `s` instead of the model's input side.
pub fn image_batch_at(
    dir: &std::path::Path,
    mc: &VitConfig,
    files: &[PathBuf],
    keep_raw: bool,
    s: usize,
) -> Result<ImageBatch> {
    let (mean, std) = normalisation(dir, mc.num_channels)?;
    let c = mc.num_channels;
    let mut all = Vec::new();
    let mut raw = Vec::new();
    for f in files {
        let (v, _, _) = load_image_file(f, Some(s), c)?;
        for ch in 0..c {
            all.extend(
                v[ch * s * s..(ch + 1) * s * s]
                    .iter()
                    .map(|x| (x - mean[ch]) / std[ch]),
            );
        }
        if keep_raw {
            raw.push(v);
        }
    }
    Ok(ImageBatch {
        pixels: burn::tensor::TensorData::new(all, [files.len(), c, s, s]),
        raw,
        side: s,
    })
}
