//! Clip features: one vector per `clip_seconds` of video, the mean of an image backbone's
//! class-token feature over frames sampled in the clip.
//!
//! Deviation from the papers (named): VideoBERT and CBT take S3D features of 1.5 s clips (30 fps,
//! Kinetics-pretrained); S3D is not obtainable from a package registry, so Tessera averages a
//! ViT/DINOv2 backbone's layer-normed class token over the clip's frames, sampled at
//! `frame_rate` a second and scaled to the backbone's side by ffmpeg (bicubic). Features users
//! computed elsewhere (the published HowTo100M / YouCook2 S3D features) are read as a `.npy`
//! `[T, D]` per video at a stated rate.
//!
//! A video's features are written as `<video_id>.safetensors`: `features` `[T, D]` and `times`
//! `[T, 2]` (start and end seconds of each clip), with the video's duration, the backbone and
//! the sampling in the metadata.

use crate::core::checkpoint::save_safetensors;
use crate::core::error::InputError;
use crate::core::video::FrameReader;
use crate::vit::config::VitConfig;
use crate::vit::model::{load_hf, Vit};
use anyhow::{bail, Context, Result};
use burn::tensor::{Device, Tensor, TensorData};
use rayon::prelude::*;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// How clips are cut and sampled.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClipSampling {
    /// Seconds per clip (the papers: 1.5).
    pub clip_seconds: f64,
    /// Frames sampled per second of video.
    pub frame_rate: f64,
}

impl Default for ClipSampling {
    fn default() -> Self {
        Self {
            clip_seconds: 1.5,
            frame_rate: 4.0,
        }
    }
}

impl ClipSampling {
    pub fn validate(&self) -> Result<()> {
        if !(self.clip_seconds.is_finite()
            && self.clip_seconds >= 0.1
            && self.clip_seconds <= 600.0)
        {
            bail!(
                "--clip-seconds {}: give 0.1 to 600 seconds",
                self.clip_seconds
            );
        }
        if !(self.frame_rate.is_finite() && self.frame_rate > 0.0 && self.frame_rate <= 60.0) {
            bail!(
                "--frame-rate {}: give above 0 and at most 60 frames a second",
                self.frame_rate
            );
        }
        if self.clip_seconds * self.frame_rate < 1.0 - 1e-9 {
            bail!(
                "--frame-rate {} samples no frame in a {} s clip",
                self.frame_rate,
                self.clip_seconds
            );
        }
        Ok(())
    }
}

/// The features of one video.
#[derive(Debug, Clone, PartialEq)]
pub struct ClipFeatures {
    pub video: String,
    pub dim: usize,
    /// `[T, dim]`.
    pub features: Vec<f32>,
    /// Start and end seconds of each clip.
    pub times: Vec<[f32; 2]>,
    /// Seconds of video the features come from.
    pub duration: f64,
}

impl ClipFeatures {
    pub fn len(&self) -> usize {
        self.times.len()
    }

    pub fn is_empty(&self) -> bool {
        self.times.is_empty()
    }

    pub fn row(&self, t: usize) -> &[f32] {
        &self.features[t * self.dim..(t + 1) * self.dim]
    }
}

/// A ViT/DINOv2 model directory as a frame encoder: images in, class-token features out.
pub struct FrameEncoder {
    model: Vit,
    mean: Vec<f32>,
    std: Vec<f32>,
    /// Side frames are scaled to.
    pub side: usize,
    pub dim: usize,
    pub name: String,
    device: Device,
}

impl FrameEncoder {
    /// `side` defaults to the model's input size; it must be a multiple of the patch size.
    pub fn load(dir: &Path, side: Option<usize>, device: &Device) -> Result<Self> {
        let cfg_path = dir.join("config.json");
        if !cfg_path.is_file() {
            bail!(
                "{}: not a ViT/DINOv2 model directory (no config.json)",
                dir.display()
            );
        }
        let mc = VitConfig::from_json_file(&cfg_path)?;
        if mc.num_channels != 3 {
            bail!(
                "{}: frames are RGB; the model takes {} channels",
                dir.display(),
                mc.num_channels
            );
        }
        let side = match side {
            Some(s) if s > 4096 || s == 0 => bail!("--image-size {s}: give 1 to 4096"),
            Some(s) if s % mc.patch_size != 0 => bail!(
                "--image-size {s} is not a multiple of the backbone's patch size {}",
                mc.patch_size
            ),
            Some(s) => s,
            None => crate::vit::data::input_size(dir, &mc)?,
        };
        let mut model = load_hf(&mc, &dir.join("model.safetensors"), device)?;
        // Every frame has the same grid: interpolate the position embeddings once, not per
        // forward (the same values `Vit::forward` would compute).
        let grid = side / mc.patch_size;
        let pos = model.embeddings.position_embeddings.val();
        let positions = pos.dims()[1];
        let trained = ((positions - 1) as f64).sqrt().round() as usize;
        if positions != 1 + grid * grid && trained * trained == positions - 1 {
            model.embeddings.position_embeddings = burn::module::Param::from_tensor(
                crate::vit::model::interpolate_positions(pos, trained, grid, grid),
            );
        }
        let (mean, std) = crate::vit::data::normalisation(dir, 3)?;
        Ok(Self {
            model,
            mean,
            std,
            side,
            dim: mc.hidden_size,
            name: format!("vit:{}@{side}", dir.display()),
            device: device.clone(),
        })
    }

    /// `[n, dim]` class tokens of frames already `side` x `side`.
    pub fn encode(&self, frames: &[image::RgbImage]) -> Result<Vec<f32>> {
        let s = self.side;
        let mut pixels = Vec::with_capacity(frames.len() * 3 * s * s);
        for f in frames {
            if f.width() as usize != s || f.height() as usize != s {
                bail!(
                    "a {}x{} frame for a {s} x {s} encoder",
                    f.width(),
                    f.height()
                );
            }
            let raw = f.as_raw();
            for c in 0..3 {
                pixels.extend(
                    raw[c..]
                        .iter()
                        .step_by(3)
                        .map(|&v| (v as f32 / 255.0 - self.mean[c]) / self.std[c]),
                );
            }
        }
        let n = frames.len();
        let x: Tensor<4> = Tensor::from_data(TensorData::new(pixels, [n, 3, s, s]), &self.device);
        // One slice of the frames per worker thread (see core::parallel::row_slices).
        let parts: Vec<Result<Vec<f32>>> = crate::core::parallel::row_slices(n)
            .into_par_iter()
            .map(|(lo, hi)| {
                let out = self.model.forward(x.clone().narrow(0, lo, hi - lo))?;
                out.pooler_output
                    .into_data()
                    .convert::<f32>()
                    .try_into_vec()
                    .map_err(|e| anyhow::anyhow!("{e:?}"))
            })
            .collect();
        let mut out = Vec::with_capacity(n * self.dim);
        for p in parts {
            out.extend(p?);
        }
        Ok(out)
    }
}

/// Seconds of whole clips in a video of `frames` frames sampled at `rate`.
fn clip_count(frames: usize, s: &ClipSampling) -> usize {
    ((frames as f64 / s.frame_rate) / s.clip_seconds + 1e-9).floor() as usize
}

/// Clip features of the video at `path`, its frames decoded as they are used.
pub fn extract(
    enc: &FrameEncoder,
    path: &Path,
    video: &str,
    s: &ClipSampling,
) -> Result<ClipFeatures> {
    let mut reader = FrameReader::open(
        path,
        Some(s.frame_rate),
        Some((enc.side as u32, enc.side as u32)),
    )?;
    let duration = reader.info.duration;
    if duration < s.clip_seconds - 1e-6 {
        bail!(
            "{}: the video is {duration:.2} s, shorter than one {} s clip",
            path.display(),
            s.clip_seconds
        );
    }
    let mut features = Vec::new();
    let mut means: Vec<Vec<f32>> = Vec::new();
    let mut pending: Vec<image::RgbImage> = Vec::new();
    let mut current = 0usize;
    let mut i = 0usize;
    let flush = |frames: &mut Vec<image::RgbImage>, means: &mut Vec<Vec<f32>>| -> Result<()> {
        if frames.is_empty() {
            means.push(Vec::new());
            return Ok(());
        }
        let f = enc.encode(frames)?;
        let n = frames.len();
        let mut mean = vec![0f32; enc.dim];
        for row in f.chunks_exact(enc.dim) {
            for (m, &v) in mean.iter_mut().zip(row) {
                *m += v;
            }
        }
        mean.iter_mut().for_each(|m| *m /= n as f32);
        means.push(mean);
        frames.clear();
        Ok(())
    };
    while let Some(frame) = reader.next_frame()? {
        let clip = (reader.source_time(i) / s.clip_seconds + 1e-9).floor() as usize;
        i += 1;
        while clip > current {
            flush(&mut pending, &mut means)?;
            current += 1;
        }
        pending.push(frame);
    }
    let clips = clip_count(i, s);
    if clips == 0 {
        bail!(
            "{}: {:.2} s of frames, shorter than one {} s clip",
            path.display(),
            i as f64 / s.frame_rate,
            s.clip_seconds
        );
    }
    if means.len() < clips {
        flush(&mut pending, &mut means)?;
    }
    let mut times = Vec::with_capacity(clips);
    for (c, mean) in means.into_iter().take(clips).enumerate() {
        if mean.is_empty() {
            bail!("{}: clip {c} has no frame", path.display());
        }
        features.extend(mean);
        times.push([
            (c as f64 * s.clip_seconds) as f32,
            ((c + 1) as f64 * s.clip_seconds) as f32,
        ]);
    }
    Ok(ClipFeatures {
        video: video.to_string(),
        dim: enc.dim,
        features,
        times,
        duration,
    })
}

/// Write `<dir>/<video>.safetensors` atomically.
pub fn write_clip_features(
    dir: &Path,
    f: &ClipFeatures,
    backbone: &str,
    s: &ClipSampling,
) -> Result<PathBuf> {
    write_features_with(
        dir,
        f,
        &[
            ("backbone", backbone.to_string()),
            ("clip_seconds", format!("{}", s.clip_seconds)),
            ("frame_rate", format!("{}", s.frame_rate)),
        ],
    )
}

/// Write `<dir>/<video>.safetensors` atomically with the video, its duration and `extra` in the
/// metadata (features of other origins: VideoBERT's hidden states).
pub fn write_features_with(
    dir: &Path,
    f: &ClipFeatures,
    extra: &[(&str, String)],
) -> Result<PathBuf> {
    let path = dir.join(format!("{}.safetensors", f.video));
    let times: Vec<f32> = f.times.iter().flatten().copied().collect();
    let mut meta = HashMap::from([
        ("video".to_string(), f.video.clone()),
        ("duration".to_string(), format!("{}", f.duration)),
    ]);
    for (k, v) in extra {
        meta.insert(k.to_string(), v.clone());
    }
    save_safetensors(
        &path,
        &[
            (
                "features".to_string(),
                TensorData::new(f.features.clone(), [f.len(), f.dim]),
            ),
            ("times".to_string(), TensorData::new(times, [f.len(), 2])),
        ],
        meta,
    )?;
    Ok(path)
}

/// An F32 tensor of a safetensors file and its shape; a missing tensor or another dtype is an
/// error naming the file and the tensor.
pub(crate) fn f32_tensor(
    path: &Path,
    st: &safetensors::SafeTensors,
    name: &str,
) -> Result<(Vec<usize>, Vec<f32>)> {
    let t = st
        .tensor(name)
        .map_err(|_| InputError::new(path, 0, Some(name), "missing"))?;
    if t.dtype() != safetensors::Dtype::F32 {
        return Err(InputError::new(
            path,
            0,
            Some(name),
            format!("{:?}, expected F32", t.dtype()),
        )
        .into());
    }
    let v: Vec<f32> = t
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    Ok((t.shape().to_vec(), v))
}

/// Features of one video: Tessera's `.safetensors`, or a `.npy` `[T, D]` whose row `t` covers
/// `[t / npy_rate, (t + 1) / npy_rate)` seconds.
pub fn read_clip_features(path: &Path, npy_rate: Option<f64>) -> Result<ClipFeatures> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let video = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let bad = |field: Option<&str>, m: String| -> anyhow::Error {
        InputError::new(path, 0, field, m).into()
    };
    let f = if path.extension().is_some_and(|e| e == "npy") {
        let Some(rate) = npy_rate else {
            bail!(
                "{}: .npy features carry no clip times: give --npy-rate (clips a second; S3D features \
                 of 1.5 s clips: 0.6667)",
                path.display()
            );
        };
        let npy = crate::core::npy::parse_npy(&bytes, &|m| bad(None, m))?;
        if npy.shape.len() != 2 {
            return Err(bad(
                None,
                format!(
                    "a rank-{} array of shape {:?}; clip features are [T, D]",
                    npy.shape.len(),
                    npy.shape
                ),
            ));
        }
        let (t, d) = (npy.shape[0], npy.shape[1]);
        ClipFeatures {
            video,
            dim: d,
            features: npy.values.iter().map(|&v| v as f32).collect(),
            times: (0..t)
                .map(|c| [(c as f64 / rate) as f32, ((c + 1) as f64 / rate) as f32])
                .collect(),
            duration: t as f64 / rate,
        }
    } else {
        let st = safetensors::SafeTensors::deserialize(&bytes)
            .map_err(|e| bad(None, format!("not a safetensors file ({e:?})")))?;
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes)
            .map_err(|e| bad(None, format!("not a safetensors file ({e:?})")))?;
        let meta = meta.metadata().clone().unwrap_or_default();
        let (shape, features) = f32_tensor(path, &st, "features")?;
        if shape.len() != 2 {
            return Err(bad(
                Some("features"),
                format!("shape {shape:?}; clip features are [T, D]"),
            ));
        }
        let (tshape, times) = f32_tensor(path, &st, "times")?;
        if tshape != [shape[0], 2] {
            return Err(bad(
                Some("times"),
                format!("shape {tshape:?}, expected [{}, 2]", shape[0]),
            ));
        }
        let times: Vec<[f32; 2]> = times.chunks_exact(2).map(|p| [p[0], p[1]]).collect();
        let duration = meta
            .get("duration")
            .and_then(|d| d.parse::<f64>().ok())
            .unwrap_or_else(|| times.last().map_or(0.0, |t| t[1] as f64));
        ClipFeatures {
            video: meta.get("video").cloned().unwrap_or(video),
            dim: shape[1],
            features,
            times,
            duration,
        }
    };
    if f.is_empty() || f.dim == 0 {
        return Err(bad(Some("features"), "no clips".into()));
    }
    if let Some(i) = f.features.iter().position(|v| !v.is_finite()) {
        return Err(bad(
            Some("features"),
            format!("clip {} feature {} is not finite", i / f.dim, i % f.dim),
        ));
    }
    Ok(f)
}

/// Every `.safetensors` / `.npy` of a directory (or the one file given), sorted by name; all
/// must share one feature size.
pub fn read_feature_dir(path: &Path, npy_rate: Option<f64>) -> Result<Vec<ClipFeatures>> {
    let files: Vec<PathBuf> = if path.is_dir() {
        let mut v: Vec<PathBuf> = std::fs::read_dir(path)
            .with_context(|| format!("cannot read {}", path.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension()
                    .is_some_and(|e| e == "safetensors" || e == "npy")
            })
            .collect();
        v.sort();
        v
    } else if path.is_file() {
        vec![path.to_path_buf()]
    } else {
        bail!("{}: no such feature file or directory", path.display());
    };
    if files.is_empty() {
        bail!(
            "{}: no .safetensors or .npy clip features inside",
            path.display()
        );
    }
    let mut out: Vec<ClipFeatures> = Vec::with_capacity(files.len());
    for f in &files {
        let c = read_clip_features(f, npy_rate)?;
        if let Some(first) = out.first() {
            if c.dim != first.dim {
                bail!(
                    "{}: features of {} values; {} has {}",
                    f.display(),
                    c.dim,
                    files[0].display(),
                    first.dim
                );
            }
        }
        out.push(c);
    }
    Ok(out)
}

/// The features of several sources side by side, clip by clip (VideoBERT's features beside the
/// raw clip features, as the paper's best captioner reads them): a video must be in every
/// source with the same clips (times within a millisecond); videos missing from a later source
/// are an error, `names` name the sources in it.
pub fn concat_features(
    sets: Vec<Vec<ClipFeatures>>,
    names: &[String],
) -> Result<Vec<ClipFeatures>> {
    let mut sets = sets.into_iter();
    let Some(mut out) = sets.next() else {
        bail!("no feature sources");
    };
    for (k, set) in sets.enumerate() {
        let name = names.get(k + 1).map_or("another source", String::as_str);
        let by_id: std::collections::HashMap<&str, &ClipFeatures> =
            set.iter().map(|f| (f.video.as_str(), f)).collect();
        for f in &mut out {
            let Some(g) = by_id.get(f.video.as_str()) else {
                bail!("video `{}` has no features in {name}", f.video);
            };
            let same = g.times.len() == f.times.len()
                && g.times
                    .iter()
                    .zip(&f.times)
                    .all(|(a, b)| (a[0] - b[0]).abs() < 1e-3 && (a[1] - b[1]).abs() < 1e-3);
            if !same {
                bail!(
                    "video `{}`: {} clips in {name}, {} in {} (or other times): the sources must share their clips",
                    f.video,
                    g.times.len(),
                    f.times.len(),
                    names.first().map_or("the first source", String::as_str)
                );
            }
            let mut rows = Vec::with_capacity(f.features.len() + g.features.len());
            for t in 0..f.len() {
                rows.extend_from_slice(f.row(t));
                rows.extend_from_slice(g.row(t));
            }
            f.features = rows;
            f.dim += g.dim;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod concat_tests {
    use super::*;

    fn clip(video: &str, dim: usize, values: Vec<f32>, times: Vec<[f32; 2]>) -> ClipFeatures {
        ClipFeatures {
            video: video.into(),
            dim,
            features: values,
            times,
            duration: 3.0,
        }
    }

    #[test]
    fn sources_are_joined_clip_by_clip_and_must_share_their_clips() {
        let t = vec![[0.0, 1.5], [1.5, 3.0]];
        let a = vec![clip("v", 1, vec![1.0, 2.0], t.clone())];
        let b = vec![clip("v", 2, vec![10.0, 11.0, 20.0, 21.0], t.clone())];
        let names = vec!["a".to_string(), "b".to_string()];
        let joined = concat_features(vec![a.clone(), b], &names).unwrap();
        assert_eq!(joined[0].dim, 3);
        assert_eq!(joined[0].features, vec![1.0, 10.0, 11.0, 2.0, 20.0, 21.0]);
        let other = vec![clip("v", 1, vec![1.0], vec![[0.0, 1.5]])];
        let e = concat_features(vec![a.clone(), other], &names)
            .unwrap_err()
            .to_string();
        assert!(e.contains("1 clips in b") && e.contains("2 in a"), "{e}");
        let missing = vec![clip("w", 1, vec![1.0, 2.0], t)];
        let e = concat_features(vec![a, missing], &names)
            .unwrap_err()
            .to_string();
        assert!(e.contains("`v` has no features in b"), "{e}");
    }
}
