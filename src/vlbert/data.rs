//! VL-BERT's inputs, prepared as the official pretraining data side does at test time
//! (`pretrain/data/datasets/conceptual_captions.py`, `pretrain/data/transforms/transforms.py`,
//! `common/utils/bbox.py`):
//! - regions sorted by descending top class score (when the file holds class scores; ties: the
//!   later box first, as numpy's reversed argsort of equal values),
//! - the whole image as box 0 `[0, 0, W-1, H-1]` with the mean of the box features,
//! - boxes scaled by the test-time resize (`SCALES`: shorter side 600, longer side at most
//!   1000) and clamped to the resized image,
//! - each box's sin/cos coordinate embedding against that image size,
//! - text `[CLS] A [SEP] (B [SEP])` by the model's WordPiece vocabulary.

use super::config::VlBertConfig;
use super::model::VlBatch;
use crate::regions::files::ImageRegions;
use crate::text::tokenize::{Encoded, TextTokenizer};
use anyhow::{bail, Result};

/// One image's regions ready for the network.
#[derive(Debug, Clone, PartialEq)]
pub struct PreparedRegions {
    /// The whole image first, in resized pixels.
    pub boxes: Vec<[f32; 4]>,
    /// R x F, the whole image's (mean) feature first.
    pub features: Vec<f32>,
    /// R x C class scores of the boxes (the whole image's row zeros), when the file has them.
    pub cls_prob: Option<Vec<f32>>,
    /// The resized image size.
    pub width: f32,
    pub height: f32,
    /// For each RoI after the whole image, its index in the region file.
    pub order: Vec<usize>,
}

impl PreparedRegions {
    /// No regions at all: the image side of a text-only sequence.
    pub fn none() -> Self {
        Self {
            boxes: vec![],
            features: vec![],
            cls_prob: None,
            width: 1.0,
            height: 1.0,
            order: vec![],
        }
    }
    pub fn len(&self) -> usize {
        self.boxes.len()
    }
    pub fn is_empty(&self) -> bool {
        self.boxes.is_empty()
    }
    pub fn feature_size(&self) -> usize {
        self.features.len() / self.boxes.len().max(1)
    }
}

/// `Resize.get_size` of the official transforms: the shorter side to `min_size` unless the
/// longer would pass `max_size`.
pub fn resized(w: f32, h: f32, min_size: usize, max_size: usize) -> (f32, f32) {
    let (w, h) = (w as f64, h as f64);
    let mut size = min_size as f64;
    let (mn, mx) = (w.min(h), w.max(h));
    if mx / mn * size > max_size as f64 {
        size = (max_size as f64 * mn / mx).trunc();
    }
    if (w <= h && w == size) || (h <= w && h == size) {
        return (w as f32, h as f32);
    }
    if w < h {
        (size as f32, (size * h / w).trunc() as f32)
    } else {
        ((size * w / h).trunc() as f32, size as f32)
    }
}

/// Sin/cos embedding of a box against the image size (`coordinate_embeddings`): per
/// coordinate (x centre, y centre, width, height, each / image side x 100), `dim` sines then
/// `dim` cosines of it over `1000^(i / dim)`. Appends 8 x `dim` values.
pub fn coordinate_embedding(b: &[f32; 4], w: f32, h: f32, dim: usize, out: &mut Vec<f32>) {
    let xc = (b[0] + b[2]) / 2.0;
    let yc = (b[1] + b[3]) / 2.0;
    let bw = b[2] - b[0];
    let bh = b[3] - b[1];
    let pos = [
        xc / w * 100.0,
        yc / h * 100.0,
        bw / w * 100.0,
        bh / h * 100.0,
    ];
    let freqs: Vec<f32> = (0..dim)
        .map(|i| 1000f32.powf(i as f32 / dim as f32))
        .collect();
    for p in pos {
        out.extend(freqs.iter().map(|f| (p / f).sin()));
        out.extend(freqs.iter().map(|f| (p / f).cos()));
    }
}

/// Prepare one image's regions (see the module doc). An image without boxes is refused: the
/// whole-image feature is the mean of its boxes'.
pub fn prepare_regions(im: &ImageRegions, cfg: &VlBertConfig) -> Result<PreparedRegions> {
    let n = im.num_boxes();
    if n == 0 {
        bail!(
            "image `{}` has no regions: VL-BERT needs at least one box (its whole-image feature \
             is the mean of the boxes')",
            im.image_id
        );
    }
    let f = im.feature_size();
    if f != cfg.object_feature_size {
        bail!(
            "image `{}`: region features have {f} values but the model reads {} \
             (object_feature_size)",
            im.image_id,
            cfg.object_feature_size
        );
    }
    let mut order: Vec<usize> = (0..n).collect();
    if let Some(p) = &im.cls_prob {
        let c = p.len() / n;
        let top: Vec<f32> = (0..n)
            .map(|i| {
                p[i * c..(i + 1) * c]
                    .iter()
                    .cloned()
                    .fold(f32::MIN, f32::max)
            })
            .collect();
        // Ascending by score, ties by index, then reversed: numpy's argsort(...)[::-1].
        order.sort_by(|&a, &b| top[a].total_cmp(&top[b]).then(a.cmp(&b)));
        order.reverse();
    }
    let (w0, h0) = (im.width, im.height);
    let (w, h) = resized(w0, h0, cfg.scales[0], cfg.scales[1]);
    let (rx, ry) = ((w as f64 / w0 as f64) as f32, (h as f64 / h0 as f64) as f32);
    let clamp = |b: [f32; 4]| {
        [
            (b[0] * rx).clamp(0.0, w - 1.0),
            (b[1] * ry).clamp(0.0, h - 1.0),
            (b[2] * rx).clamp(0.0, w - 1.0),
            (b[3] * ry).clamp(0.0, h - 1.0),
        ]
    };
    let mut boxes = vec![clamp([0.0, 0.0, w0 - 1.0, h0 - 1.0])];
    let mut mean = vec![0f32; f];
    for &i in &order {
        boxes.push(clamp(im.boxes[i]));
        for (m, x) in mean.iter_mut().zip(im.feature(i)) {
            *m += x;
        }
    }
    mean.iter_mut().for_each(|m| *m /= n as f32);
    let mut features = mean;
    for &i in &order {
        features.extend_from_slice(im.feature(i));
    }
    let cls_prob = im.cls_prob.as_ref().map(|p| {
        let c = p.len() / n;
        let mut out = vec![0f32; c];
        for &i in &order {
            out.extend_from_slice(&p[i * c..(i + 1) * c]);
        }
        out
    });
    Ok(PreparedRegions {
        boxes,
        features,
        cls_prob,
        width: w,
        height: h,
        order,
    })
}

/// The whole image's feature (row 0) recomputed without the masked RoIs, as the official data
/// side does for precomputed features when it masks RoIs: `(n * mean - sum of masked) /
/// (n - masked + 1e-5)`.
pub fn mask_whole_image_feature(p: &mut PreparedRegions, masked: &[bool]) {
    let f = p.feature_size();
    let n = p.len() - 1;
    let mut first: Vec<f32> = p.features[..f].iter().map(|x| x * n as f32).collect();
    let mut k = 0usize;
    for (r, &m) in masked.iter().enumerate().skip(1) {
        if m {
            k += 1;
            for (a, x) in first.iter_mut().zip(&p.features[r * f..(r + 1) * f]) {
                *a -= x;
            }
        }
    }
    let d = (n - k) as f32 + 1e-5;
    for (dst, a) in p.features[..f].iter_mut().zip(first) {
        *dst = a / d;
    }
}

/// One example: token ids and segments of `[CLS] text [SEP]`, its regions, the masked RoIs.
#[derive(Debug, Clone)]
pub struct Example<'a> {
    pub ids: &'a [u32],
    pub type_ids: &'a [u32],
    pub regions: &'a PreparedRegions,
    /// Per RoI (whole image first): masked for masked-RoI classification. Empty: none.
    pub masked: &'a [bool],
}

/// Pad examples into a batch. An example with no regions is a text-only sequence.
pub fn batch(examples: &[Example], cfg: &VlBertConfig) -> VlBatch {
    let n = examples.len();
    let t = examples.iter().map(|e| e.ids.len()).max().unwrap_or(1);
    let r = examples
        .iter()
        .map(|e| e.regions.len())
        .max()
        .unwrap_or(1)
        .max(1);
    let f = cfg.object_feature_size;
    let c = 8 * cfg.coordinate_embedding_dim;
    let mut b = VlBatch {
        batch: n,
        text_len: t,
        text_lens: Vec::with_capacity(n),
        ids: vec![0; n * t],
        type_ids: vec![0; n * t],
        regions: r,
        region_counts: Vec::with_capacity(n),
        coordinates: vec![0.0; n * r * c],
        features: vec![0.0; n * r * f],
        masked_regions: vec![0.0; n * r],
        text_only: examples.iter().map(|e| e.regions.is_empty()).collect(),
    };
    let mut coords = Vec::with_capacity(c);
    for (i, e) in examples.iter().enumerate() {
        b.text_lens.push(e.ids.len());
        b.ids[i * t..i * t + e.ids.len()].copy_from_slice(e.ids);
        b.type_ids[i * t..i * t + e.type_ids.len()].copy_from_slice(e.type_ids);
        let p = e.regions;
        b.region_counts.push(p.len());
        for (k, bx) in p.boxes.iter().enumerate() {
            coords.clear();
            coordinate_embedding(
                bx,
                p.width,
                p.height,
                cfg.coordinate_embedding_dim,
                &mut coords,
            );
            let at = (i * r + k) * c;
            b.coordinates[at..at + c].copy_from_slice(&coords);
        }
        let at = i * r * f;
        b.features[at..at + p.features.len()].copy_from_slice(&p.features);
        for (k, &m) in e.masked.iter().enumerate() {
            b.masked_regions[i * r + k] = if m { 1.0 } else { 0.0 };
        }
    }
    b
}

/// Tokenise texts as `[CLS] text [SEP]`; a text longer than the model's positions allow (with
/// its RoIs and `[END]` after it) is an error naming its line (1-based, in `source`).
pub fn encode_texts(
    tok: &TextTokenizer,
    texts: &[String],
    cfg: &VlBertConfig,
    source: &str,
) -> Result<Vec<Encoded>> {
    tok.encode_lines(
        texts,
        cfg.max_text_len(),
        cfg.max_position_embeddings,
        source,
    )
}
