//! Region files: per image, boxes, an appearance feature per box and optionally the detector's
//! class distribution per box, in the three layouts users hold them in. All three hold f32 values
//! and round-trip bit for bit.
//!
//! - **safetensors** (Tessera's): `features` f32 [N, R, F] (zero-padded to the most boxes R),
//!   `boxes` f32 [N, R, 4] (x1, y1, x2, y2 in pixels), `num_boxes` i64 [N], `image_size` f32
//!   [N, 2] (width, height), optional `cls_prob` f32 [N, R, C]; metadata `image_ids` (a JSON
//!   list) and `backbone`. Read image by image from the file (header first, then the slices).
//! - **TSV** (the bottom-up-attention layout most published VL features use): one image a line,
//!   tab-separated `image_id, image_w, image_h, num_boxes, boxes, features[, cls_prob]`, the last
//!   fields base64 of little-endian float32 arrays [num_boxes, 4], [num_boxes, F], [num_boxes, C].
//!   Read line by line.
//! - **npz directory**: one `<image_id>.npz` per image with `x` (or `features`) [R, F], `bbox`
//!   (or `boxes`) [R, 4], `image_w`, `image_h`, `num_bbox` and optionally `cls_prob` [R, C]
//!   (float32 or float64, int32 or int64 scalars).
//!
//! A bad record names the file, its line (TSV) or image, and the field.

use crate::core::error::InputError;
use crate::core::npy::{npy_bytes_f32, npy_raw, parse_npy, Npy};
use anyhow::{bail, Context, Result};
use base64::Engine;
use std::collections::BTreeMap;
use std::io::{BufRead, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The regions of one image.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageRegions {
    pub image_id: String,
    pub width: f32,
    pub height: f32,
    /// [R][4]: x1, y1, x2, y2 in pixels.
    pub boxes: Vec<[f32; 4]>,
    /// R x F, row-major.
    pub features: Vec<f32>,
    /// R x C, row-major, when the backbone is a detector.
    pub cls_prob: Option<Vec<f32>>,
}

impl ImageRegions {
    pub fn num_boxes(&self) -> usize {
        self.boxes.len()
    }

    /// Feature size (0 without boxes).
    pub fn feature_size(&self) -> usize {
        self.features
            .len()
            .checked_div(self.boxes.len())
            .unwrap_or(0)
    }

    /// The feature of box `r`.
    pub fn feature(&self, r: usize) -> &[f32] {
        let f = self.feature_size();
        &self.features[r * f..(r + 1) * f]
    }

    /// Checks shapes and values; `what` names the record in errors.
    pub fn check(&self, what: &dyn Fn(&str) -> InputError) -> Result<()> {
        let r = self.boxes.len();
        if !(self.width.is_finite()
            && self.height.is_finite()
            && self.width > 0.0
            && self.height > 0.0)
        {
            bail!(what("image_w").with_message(format!(
                "image size {}x{} is not positive",
                self.width, self.height
            )));
        }
        if r > 0 && !self.features.len().is_multiple_of(r) {
            bail!(what("features").with_message(format!(
                "{} values do not split into {r} boxes",
                self.features.len()
            )));
        }
        if let Some(bad) = self.features.iter().find(|v| !v.is_finite()) {
            bail!(what("features").with_message(format!("holds a non-finite value ({bad})")));
        }
        for (i, b) in self.boxes.iter().enumerate() {
            let [x1, y1, x2, y2] = *b;
            if !b.iter().all(|v| v.is_finite()) || x2 < x1 || y2 < y1 {
                bail!(what("boxes").with_message(format!(
                    "box {i} [{x1}, {y1}, {x2}, {y2}] is not a box (x1 <= x2, y1 <= y2)"
                )));
            }
            // A pixel of slack: detectors and annotations round.
            if x1 < -1.0 || y1 < -1.0 || x2 > self.width + 1.0 || y2 > self.height + 1.0 {
                bail!(what("boxes").with_message(format!(
                    "box {i} [{x1}, {y1}, {x2}, {y2}] lies outside the {}x{} image",
                    self.width, self.height
                )));
            }
        }
        if let Some(p) = &self.cls_prob {
            let splits = if r == 0 {
                p.is_empty()
            } else {
                p.len().is_multiple_of(r)
            };
            if !splits {
                bail!(what("cls_prob")
                    .with_message(format!("{} values do not split into {r} boxes", p.len())));
            }
            if let Some(bad) = p.iter().find(|v| !v.is_finite()) {
                bail!(what("cls_prob").with_message(format!("holds a non-finite value ({bad})")));
            }
        }
        Ok(())
    }
}

impl InputError {
    /// The same place with another message.
    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        self.message = message.into();
        self
    }
}

/// Regions of a set of images, with the backbone that made them.
#[derive(Debug, Clone, PartialEq)]
pub struct RegionSet {
    pub backbone: String,
    pub images: Vec<ImageRegions>,
}

impl RegionSet {
    pub fn from_images(images: Vec<ImageRegions>, backbone: &str) -> Self {
        Self {
            backbone: backbone.to_string(),
            images,
        }
    }

    /// The common feature size (images without boxes do not count); an error when they differ.
    pub fn feature_size(&self) -> Result<usize> {
        let mut f = None;
        for im in &self.images {
            if im.num_boxes() == 0 {
                continue;
            }
            let g = im.feature_size();
            match f {
                None => f = Some(g),
                Some(x) if x != g => bail!(
                    "image `{}` has features of {g} values, others of {x}",
                    im.image_id
                ),
                _ => {}
            }
        }
        Ok(f.unwrap_or(0))
    }

    pub fn classes(&self) -> Option<usize> {
        self.images.iter().find_map(|im| {
            im.cls_prob
                .as_ref()
                .and_then(|p| p.len().checked_div(im.num_boxes()))
        })
    }
}

/// The layout of a path: `.tsv` (or `.tsv.gz`: not supported, refused), a directory (npz), else
/// safetensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    Safetensors,
    Tsv,
    NpzDir,
}

pub fn layout_of(path: &Path) -> Layout {
    let name = path.to_string_lossy();
    if name.ends_with(".tsv") {
        Layout::Tsv
    } else if path.is_dir() || name.ends_with('/') || !name.contains('.') {
        Layout::NpzDir
    } else {
        Layout::Safetensors
    }
}

/// Write a region set in the layout its path names (see [`layout_of`]).
pub fn write(path: &Path, set: &RegionSet) -> Result<()> {
    match layout_of(path) {
        Layout::Safetensors => write_safetensors(path, set),
        Layout::Tsv => write_tsv(path, set),
        Layout::NpzDir => write_npz_dir(path, set),
    }
}

/// Read a whole region set (small sets; large ones: [`open`]).
pub fn read(path: &Path) -> Result<RegionSet> {
    let mut r = open(path)?;
    let mut images = Vec::new();
    while let Some(im) = r.next_image()? {
        images.push(im);
    }
    Ok(RegionSet {
        backbone: r.backbone().to_string(),
        images,
    })
}

/// A region file read image by image.
pub trait RegionReader {
    fn backbone(&self) -> &str;
    /// Images in the file, when known without reading it all.
    fn len_hint(&self) -> Option<usize>;
    fn next_image(&mut self) -> Result<Option<ImageRegions>>;
}

/// Open a region file or npz directory for reading image by image.
pub fn open(path: &Path) -> Result<Box<dyn RegionReader>> {
    if !path.exists() {
        bail!("{}: no such region file or directory", path.display());
    }
    Ok(match layout_of(path) {
        Layout::Safetensors => Box::new(SafetensorsReader::open(path)?),
        Layout::Tsv => Box::new(TsvReader::open(path)?),
        Layout::NpzDir => Box::new(NpzDirReader::open(path)?),
    })
}

// ---------------------------------------------------------------------------------------------
// safetensors

/// Boxes from their flat x1, y1, x2, y2 values.
fn boxes_of(flat: &[f32]) -> Vec<[f32; 4]> {
    flat.chunks_exact(4)
        .map(|b| [b[0], b[1], b[2], b[3]])
        .collect()
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn write_safetensors(path: &Path, set: &RegionSet) -> Result<()> {
    let n = set.images.len();
    let r = set
        .images
        .iter()
        .map(|im| im.num_boxes())
        .max()
        .unwrap_or(0);
    let f = set.feature_size()?;
    let c = set.classes();
    let mut features = vec![0f32; n * r * f];
    let mut boxes = vec![0f32; n * r * 4];
    let mut num = Vec::with_capacity(n);
    let mut size = Vec::with_capacity(2 * n);
    let mut cls = c.map(|c| vec![0f32; n * r * c]);
    for (i, im) in set.images.iter().enumerate() {
        let k = im.num_boxes();
        features[i * r * f..(i * r + k) * f].copy_from_slice(&im.features);
        for (j, b) in im.boxes.iter().enumerate() {
            boxes[(i * r + j) * 4..(i * r + j + 1) * 4].copy_from_slice(b);
        }
        num.push(k as i64);
        size.extend([im.width, im.height]);
        match (&mut cls, &im.cls_prob, c) {
            (Some(all), Some(p), Some(c)) => {
                if p.len() != k * c {
                    bail!(
                        "image `{}`: cls_prob of {} values for {k} boxes of {c} classes",
                        im.image_id,
                        p.len()
                    );
                }
                all[i * r * c..(i * r + k) * c].copy_from_slice(p);
            }
            (Some(_), None, _) if k > 0 => {
                bail!("image `{}` has no cls_prob; the others have", im.image_id)
            }
            _ => {}
        }
    }
    let mut tensors: Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)> = vec![
        (
            "boxes".into(),
            safetensors::Dtype::F32,
            vec![n, r, 4],
            f32_bytes(&boxes),
        ),
        (
            "features".into(),
            safetensors::Dtype::F32,
            vec![n, r, f],
            f32_bytes(&features),
        ),
        (
            "image_size".into(),
            safetensors::Dtype::F32,
            vec![n, 2],
            f32_bytes(&size),
        ),
        (
            "num_boxes".into(),
            safetensors::Dtype::I64,
            vec![n],
            num.iter().flat_map(|x| x.to_le_bytes()).collect(),
        ),
    ];
    if let (Some(all), Some(c)) = (cls, c) {
        tensors.push((
            "cls_prob".into(),
            safetensors::Dtype::F32,
            vec![n, r, c],
            f32_bytes(&all),
        ));
    }
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .map(|(name, d, shape, bytes)| {
            safetensors::tensor::TensorView::new(*d, shape.clone(), bytes)
                .map(|v| (name.clone(), v))
                .map_err(|e| anyhow::anyhow!("tensor `{name}`: {e:?}"))
        })
        .collect::<Result<_>>()?;
    let ids: Vec<&str> = set.images.iter().map(|im| im.image_id.as_str()).collect();
    let meta = std::collections::HashMap::from([
        ("format".to_string(), "tessera-regions".to_string()),
        ("backbone".to_string(), set.backbone.clone()),
        ("image_ids".to_string(), serde_json::to_string(&ids)?),
    ]);
    let bytes = safetensors::serialize(views, Some(meta)).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    crate::core::run::write_atomic(path, &bytes)
}

#[derive(serde::Deserialize)]
struct TensorInfo {
    dtype: String,
    shape: Vec<usize>,
    data_offsets: [u64; 2],
}

struct SafetensorsReader {
    path: PathBuf,
    file: std::fs::File,
    data_start: u64,
    tensors: BTreeMap<String, TensorInfo>,
    ids: Vec<String>,
    backbone: String,
    next: usize,
    n: usize,
    r: usize,
    f: usize,
    c: Option<usize>,
}

impl SafetensorsReader {
    fn open(path: &Path) -> Result<Self> {
        let mut file =
            std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
        let total = file.metadata()?.len();
        let mut len = [0u8; 8];
        file.read_exact(&mut len).map_err(|_| {
            anyhow::anyhow!("{}: not a safetensors file (too short)", path.display())
        })?;
        let hlen = u64::from_le_bytes(len);
        if hlen > 100 << 20 || 8 + hlen > total {
            bail!(
                "{}: not a safetensors file (header of {hlen} bytes)",
                path.display()
            );
        }
        let mut header = vec![0u8; hlen as usize];
        file.read_exact(&mut header)?;
        let mut value: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&header)
            .map_err(|e| anyhow::anyhow!("{}: not a safetensors file ({e})", path.display()))?;
        let meta = value.remove("__metadata__");
        let tensors: BTreeMap<String, TensorInfo> = value
            .into_iter()
            .map(|(k, v)| {
                serde_json::from_value(v)
                    .map(|t| (k.clone(), t))
                    .map_err(|e| anyhow::anyhow!("{}: tensor `{k}`: {e}", path.display()))
            })
            .collect::<Result<_>>()?;
        let data_start = 8 + hlen;
        let field = |name: &str, dtype: &str, rank: usize| -> Result<&TensorInfo> {
            let t = tensors.get(name).ok_or_else(|| {
                anyhow::anyhow!(
                    "{}: field `{name}` is missing (not a region file?)",
                    path.display()
                )
            })?;
            if t.dtype != dtype || t.shape.len() != rank {
                bail!(
                    "{}: field `{name}` is {} {:?}, a region file has {dtype} of rank {rank}",
                    path.display(),
                    t.dtype,
                    t.shape
                );
            }
            let need: u64 = t.shape.iter().map(|&d| d as u64).product::<u64>()
                * if dtype == "I64" { 8 } else { 4 };
            let [a, b] = t.data_offsets;
            if b < a || b - a != need || data_start + b > total {
                bail!(
                    "{}: field `{name}`: its data offsets do not fit its shape or the file",
                    path.display()
                );
            }
            Ok(t)
        };
        let feats = field("features", "F32", 3)?;
        let (n, r, f) = (feats.shape[0], feats.shape[1], feats.shape[2]);
        let boxes = field("boxes", "F32", 3)?;
        if boxes.shape != [n, r, 4] {
            bail!(
                "{}: field `boxes` has shape {:?}, expected [{n}, {r}, 4]",
                path.display(),
                boxes.shape
            );
        }
        if field("num_boxes", "I64", 1)?.shape != [n] {
            bail!(
                "{}: field `num_boxes` does not hold {n} counts",
                path.display()
            );
        }
        if field("image_size", "F32", 2)?.shape != [n, 2] {
            bail!("{}: field `image_size` is not [{n}, 2]", path.display());
        }
        let c = match tensors.get("cls_prob") {
            Some(_) => {
                let t = field("cls_prob", "F32", 3)?;
                if t.shape[..2] != [n, r] {
                    bail!(
                        "{}: field `cls_prob` has shape {:?}, expected [{n}, {r}, C]",
                        path.display(),
                        t.shape
                    );
                }
                Some(t.shape[2])
            }
            None => None,
        };
        let meta: BTreeMap<String, String> = match meta {
            Some(m) => serde_json::from_value(m)
                .map_err(|e| anyhow::anyhow!("{}: metadata: {e}", path.display()))?,
            None => BTreeMap::new(),
        };
        let ids: Vec<String> = match meta.get("image_ids") {
            Some(s) => serde_json::from_str(s).map_err(|e| {
                anyhow::anyhow!(
                    "{}: metadata `image_ids` is not a JSON list of names ({e})",
                    path.display()
                )
            })?,
            None => (0..n).map(|i| i.to_string()).collect(),
        };
        if ids.len() != n {
            bail!(
                "{}: metadata `image_ids` names {} images, the tensors hold {n}",
                path.display(),
                ids.len()
            );
        }
        Ok(Self {
            path: path.to_path_buf(),
            file,
            data_start,
            tensors,
            ids,
            backbone: meta.get("backbone").cloned().unwrap_or_default(),
            next: 0,
            n,
            r,
            f,
            c,
        })
    }

    /// `count` elements of `elem` bytes from tensor `name`, from element `start`.
    fn read_bytes(
        &mut self,
        name: &str,
        start: usize,
        count: usize,
        elem: usize,
    ) -> Result<Vec<u8>> {
        let t = &self.tensors[name];
        let off = self.data_start + t.data_offsets[0] + (start * elem) as u64;
        self.file.seek(SeekFrom::Start(off))?;
        let mut buf = vec![0u8; count * elem];
        self.file
            .read_exact(&mut buf)
            .with_context(|| format!("{}: field `{name}` is cut short", self.path.display()))?;
        Ok(buf)
    }

    fn read_f32(&mut self, name: &str, start: usize, count: usize) -> Result<Vec<f32>> {
        Ok(self
            .read_bytes(name, start, count, 4)?
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }
}

impl RegionReader for SafetensorsReader {
    fn backbone(&self) -> &str {
        &self.backbone
    }

    fn len_hint(&self) -> Option<usize> {
        Some(self.n)
    }

    fn next_image(&mut self) -> Result<Option<ImageRegions>> {
        let i = self.next;
        if i >= self.n {
            return Ok(None);
        }
        self.next += 1;
        let (r, f) = (self.r, self.f);
        let k = i64::from_le_bytes(
            self.read_bytes("num_boxes", i, 1, 8)?
                .try_into()
                .expect("8 bytes"),
        );
        if k < 0 || k as usize > r {
            bail!(
                "{}: image {i} (`{}`): field `num_boxes` is {k}, outside 0..={r}",
                self.path.display(),
                self.ids[i]
            );
        }
        let k = k as usize;
        let size = self.read_f32("image_size", 2 * i, 2)?;
        let flat = self.read_f32("boxes", i * r * 4, k * 4)?;
        let features = self.read_f32("features", i * r * f, k * f)?;
        let cls_prob = match self.c {
            Some(c) => Some(self.read_f32("cls_prob", i * r * c, k * c)?),
            None => None,
        };
        let im = ImageRegions {
            image_id: self.ids[i].clone(),
            width: size[0],
            height: size[1],
            boxes: boxes_of(&flat),
            features,
            cls_prob,
        };
        let path = self.path.clone();
        let id = im.image_id.clone();
        im.check(&|field| InputError::new(&path, 0, Some(field), format!("image {i} (`{id}`)")))
            .map_err(|e| anyhow::anyhow!("{e} (image {i}, `{id}`)"))?;
        Ok(Some(im))
    }
}

// ---------------------------------------------------------------------------------------------
// TSV

fn b64_f32(
    field: &str,
    s: &str,
    count: usize,
    err: &dyn Fn(&str, String) -> anyhow::Error,
) -> Result<Vec<f32>> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .map_err(|e| err(field, format!("not base64 ({e})")))?;
    if bytes.len() != 4 * count {
        return Err(err(
            field,
            format!("{} bytes, {count} float32 need {}", bytes.len(), 4 * count),
        ));
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

fn b64_of(v: &[f32]) -> String {
    base64::engine::general_purpose::STANDARD.encode(f32_bytes(v))
}

fn write_tsv(path: &Path, set: &RegionSet) -> Result<()> {
    set.feature_size()?;
    crate::core::run::write_atomic_with(path, |w| {
        for im in &set.images {
            if im.image_id.contains(['\t', '\n']) {
                bail!("image id `{}` holds a tab or newline", im.image_id);
            }
            let flat: Vec<f32> = im.boxes.iter().flatten().copied().collect();
            write!(
                w,
                "{}\t{}\t{}\t{}\t{}\t{}",
                im.image_id,
                im.width,
                im.height,
                im.num_boxes(),
                b64_of(&flat),
                b64_of(&im.features)
            )?;
            if let Some(p) = &im.cls_prob {
                write!(w, "\t{}", b64_of(p))?;
            }
            writeln!(w)?;
        }
        Ok(())
    })
}

struct TsvReader {
    path: PathBuf,
    lines: std::io::Split<std::io::BufReader<std::fs::File>>,
    line: usize,
    f: Option<usize>,
}

impl TsvReader {
    fn open(path: &Path) -> Result<Self> {
        let file =
            std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
        Ok(Self {
            path: path.to_path_buf(),
            lines: std::io::BufReader::new(file).split(b'\n'),
            line: 0,
            f: None,
        })
    }
}

/// Largest box count of one image accepted from a file.
const MAX_BOXES: usize = 1 << 16;

impl RegionReader for TsvReader {
    fn backbone(&self) -> &str {
        "bottom-up TSV"
    }

    fn len_hint(&self) -> Option<usize> {
        None
    }

    fn next_image(&mut self) -> Result<Option<ImageRegions>> {
        loop {
            let Some(raw) = self.lines.next() else {
                return Ok(None);
            };
            let raw = raw.with_context(|| format!("cannot read {}", self.path.display()))?;
            self.line += 1;
            let line_no = self.line;
            let path = self.path.clone();
            let err = |field: &str, msg: String| -> anyhow::Error {
                InputError::new(&path, line_no, Some(field), msg).into()
            };
            let text =
                std::str::from_utf8(&raw).map_err(|_| err("image_id", "not UTF-8 text".into()))?;
            let text = text.trim_end_matches('\r');
            if text.trim().is_empty() {
                continue;
            }
            let cols: Vec<&str> = text.split('\t').collect();
            if cols.len() != 6 && cols.len() != 7 {
                return Err(err(
                    "num_boxes",
                    format!("{} tab-separated fields; a record has 6 (image_id, image_w, image_h, num_boxes, boxes, features) or 7 (+ cls_prob)", cols.len()),
                ));
            }
            let num = |i: usize, field: &str| -> Result<f32> {
                cols[i]
                    .trim()
                    .parse::<f32>()
                    .map_err(|_| err(field, format!("`{}` is not a number", cols[i])))
            };
            let (w, h) = (num(1, "image_w")?, num(2, "image_h")?);
            let k: usize = cols[3]
                .trim()
                .parse()
                .map_err(|_| err("num_boxes", format!("`{}` is not a count", cols[3])))?;
            if k > MAX_BOXES {
                return Err(err("num_boxes", format!("{k} is more than {MAX_BOXES}")));
            }
            let flat = b64_f32("boxes", cols[4], 4 * k, &err)?;
            let feat_bytes = base64::engine::general_purpose::STANDARD
                .decode(cols[5].trim())
                .map_err(|e| err("features", format!("not base64 ({e})")))?;
            if k == 0 && !feat_bytes.is_empty() {
                return Err(err("features", "values for 0 boxes".into()));
            }
            let f = (feat_bytes.len() / 4).checked_div(k).unwrap_or(0);
            if k > 0 && (!feat_bytes.len().is_multiple_of(4 * k) || f == 0) {
                return Err(err(
                    "features",
                    format!(
                        "{} bytes do not split into {k} float32 features",
                        feat_bytes.len()
                    ),
                ));
            }
            if k > 0 {
                match self.f {
                    Some(x) if x != f => {
                        return Err(err(
                            "features",
                            format!("features of {f} values, earlier lines have {x}"),
                        ))
                    }
                    _ => self.f = Some(f),
                }
            }
            let features: Vec<f32> = feat_bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            let cls_prob = match cols.get(6) {
                Some(s) => {
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(s.trim())
                        .map_err(|e| err("cls_prob", format!("not base64 ({e})")))?;
                    if k > 0 && (bytes.len() % (4 * k) != 0 || bytes.is_empty()) {
                        return Err(err(
                            "cls_prob",
                            format!(
                                "{} bytes do not split into {k} float32 distributions",
                                bytes.len()
                            ),
                        ));
                    }
                    Some(
                        bytes
                            .chunks_exact(4)
                            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                            .collect(),
                    )
                }
                None => None,
            };
            let im = ImageRegions {
                image_id: cols[0].to_string(),
                width: w,
                height: h,
                boxes: boxes_of(&flat),
                features,
                cls_prob,
            };
            im.check(&|field| InputError::new(&path, line_no, Some(field), ""))?;
            return Ok(Some(im));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// npz

/// The file name of an image's `.npz`: its id, which must be a plain file name (the id is read
/// back from it).
fn npz_name(id: &str) -> Result<String> {
    let plain = !id.is_empty()
        && !id.starts_with('.')
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if !plain {
        bail!("image id `{id}` cannot name an .npz file (letters, digits, `-`, `_`, `.`; write safetensors or TSV instead)");
    }
    Ok(format!("{id}.npz"))
}

fn write_npz_dir(dir: &Path, set: &RegionSet) -> Result<()> {
    set.feature_size()?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut seen = std::collections::HashSet::new();
    for im in &set.images {
        let name = npz_name(&im.image_id)?;
        if !seen.insert(name.clone()) {
            bail!("image id `{}` appears twice", im.image_id);
        }
        let k = im.num_boxes();
        let f = im.feature_size();
        let mut entries: Vec<(&str, Vec<u8>)> = vec![
            ("x.npy", npy_bytes_f32(&[k, f], &im.features)),
            (
                "bbox.npy",
                npy_bytes_f32(
                    &[k, 4],
                    &im.boxes.iter().flatten().copied().collect::<Vec<_>>(),
                ),
            ),
            ("image_w.npy", npy_bytes_f32(&[], &[im.width])),
            ("image_h.npy", npy_bytes_f32(&[], &[im.height])),
            (
                "num_bbox.npy",
                npy_raw("<i8", &[], &(k as i64).to_le_bytes()),
            ),
        ];
        if let Some(p) = &im.cls_prob {
            entries.push((
                "cls_prob.npy",
                npy_bytes_f32(&[k, p.len().checked_div(k).unwrap_or(0)], p),
            ));
        }
        crate::core::run::write_atomic_with(&dir.join(&name), |w| {
            let mut buf = std::io::Cursor::new(Vec::new());
            {
                let mut zip = zip::ZipWriter::new(&mut buf);
                let opts = zip::write::FileOptions::default()
                    .compression_method(zip::CompressionMethod::Stored);
                for (n, bytes) in &entries {
                    zip.start_file(*n, opts)?;
                    zip.write_all(bytes)?;
                }
                zip.finish()?;
            }
            w.write_all(&buf.into_inner())?;
            Ok(())
        })?;
    }
    Ok(())
}

struct NpzDirReader {
    files: std::vec::IntoIter<PathBuf>,
    count: usize,
}

impl NpzDirReader {
    fn open(dir: &Path) -> Result<Self> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .with_context(|| format!("cannot read {}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "npz"))
            .collect();
        files.sort();
        Ok(Self {
            count: files.len(),
            files: files.into_iter(),
        })
    }
}

impl RegionReader for NpzDirReader {
    fn backbone(&self) -> &str {
        "npz"
    }

    fn len_hint(&self) -> Option<usize> {
        Some(self.count)
    }

    fn next_image(&mut self) -> Result<Option<ImageRegions>> {
        let Some(path) = self.files.next() else {
            return Ok(None);
        };
        let file = std::fs::File::open(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let mut zip = zip::ZipArchive::new(file)
            .map_err(|e| anyhow::anyhow!("{}: not an .npz archive ({e})", path.display()))?;
        let mut arrays: BTreeMap<String, Npy> = BTreeMap::new();
        let mut names: Vec<String> = zip.file_names().map(str::to_string).collect();
        names.sort();
        for name in names {
            let key = name.trim_end_matches(".npy").to_string();
            if ![
                "x", "features", "bbox", "boxes", "image_w", "image_h", "num_bbox", "cls_prob",
            ]
            .contains(&key.as_str())
            {
                continue;
            }
            let mut entry = zip.by_name(&name)?;
            if entry.size() > 1 << 32 {
                bail!("{}: field `{key}` is larger than 4 GiB", path.display());
            }
            let mut bytes = Vec::with_capacity(entry.size() as usize);
            entry.read_to_end(&mut bytes)?;
            let p = path.clone();
            let what =
                |m: String| -> anyhow::Error { InputError::new(&p, 0, Some(&key), m).into() };
            arrays.insert(key.clone(), parse_npy(&bytes, &what)?);
        }
        let id = path
            .file_stem()
            .map_or(String::new(), |s| s.to_string_lossy().into_owned());
        let err = |field: &str, m: String| -> anyhow::Error {
            InputError::new(&path, 0, Some(field), m).into()
        };
        let get = |a: &str, b: &str| arrays.get(a).or_else(|| arrays.get(b));
        let feats =
            get("x", "features").ok_or_else(|| err("x", "missing (or `features`)".into()))?;
        let bbox =
            get("bbox", "boxes").ok_or_else(|| err("bbox", "missing (or `boxes`)".into()))?;
        let scalar = |k: &str| -> Result<f64> {
            let a = arrays.get(k).ok_or_else(|| err(k, "missing".into()))?;
            if a.values.len() != 1 {
                return Err(err(k, format!("a scalar expected, shape {:?}", a.shape)));
            }
            Ok(a.values[0])
        };
        let (w, h) = (scalar("image_w")? as f32, scalar("image_h")? as f32);
        let k = bbox.shape.first().copied().unwrap_or(0);
        if bbox.shape.len() != 2 || bbox.shape[1] != 4 {
            return Err(err(
                "bbox",
                format!("shape {:?}, expected [R, 4]", bbox.shape),
            ));
        }
        if let Ok(n) = scalar("num_bbox") {
            if n as usize != k {
                return Err(err("num_bbox", format!("{n} but `bbox` holds {k} boxes")));
            }
        }
        if feats.shape.len() != 2 || feats.shape[0] != k {
            return Err(err(
                "x",
                format!("shape {:?}, expected [{k}, F]", feats.shape),
            ));
        }
        let to_f32 = |a: &Npy| -> Vec<f32> { a.values.iter().map(|&v| v as f32).collect() };
        let cls_prob = match arrays.get("cls_prob") {
            Some(p) => {
                if p.shape.len() != 2 || p.shape[0] != k {
                    return Err(err(
                        "cls_prob",
                        format!("shape {:?}, expected [{k}, C]", p.shape),
                    ));
                }
                Some(to_f32(p))
            }
            None => None,
        };
        let flat = to_f32(bbox);
        let im = ImageRegions {
            image_id: id,
            width: w,
            height: h,
            boxes: boxes_of(&flat),
            features: to_f32(feats),
            cls_prob,
        };
        im.check(&|field| InputError::new(&path, 0, Some(field), ""))?;
        Ok(Some(im))
    }
}
