//! ViLBERT's inputs as the official data side prepares them
//! (`vilbert/datasets/_image_features_reader.py`, `concept_cap_dataset.py`):
//! - the first `max_regions` boxes of the region file, in its order;
//! - each box's location `[x1/W, y1/H, x2/W, y2/H, area/(W*H)]` (pixels of the file's image);
//! - the global image token first: the mean of the box features, location `[0, 0, 1, 1, 1]`;
//! - text `[CLS] text [SEP]`, segment 0.
//!
//! In pretraining the official loader recomputes the global feature after masking: the sum of
//! the (masked-zeroed) box features over the number of boxes that neither were picked nor overlap
//! a picked box at IoU > 0.4, counting padded slots of its fixed-size arrays too. Named
//! deviation: padded slots are not counted here (they depend on the loader's array size, not
//! on the image).

use super::config::VilBertConfig;
use super::model::VilBatch;
use crate::core::metrics::pixel_box_iou;
use crate::regions::files::ImageRegions;
use anyhow::{bail, Result};

/// One image ready for the network: the global token first.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageInput {
    /// (1 + N) x F.
    pub features: Vec<f32>,
    /// (1 + N) x 5.
    pub locations: Vec<f32>,
    /// The N boxes in pixels (for IoU and display).
    pub boxes: Vec<[f32; 4]>,
    /// N x C class scores of the boxes, when the region file has them.
    pub cls_prob: Option<Vec<f32>>,
    pub width: f32,
    pub height: f32,
}

impl ImageInput {
    /// Regions including the global token.
    pub fn len(&self) -> usize {
        self.boxes.len() + 1
    }
    pub fn is_empty(&self) -> bool {
        false
    }
    pub fn feature_size(&self) -> usize {
        self.features.len() / self.len()
    }
}

/// Prepare one image (see the module doc). An image without boxes is refused: the global
/// token is the mean of its boxes.
pub fn prepare_image(im: &ImageRegions, cfg: &VilBertConfig) -> Result<ImageInput> {
    let n = im.num_boxes().min(cfg.max_regions);
    if n == 0 {
        bail!(
            "image `{}` has no regions: ViLBERT needs at least one box (its global image token \
             is the mean of the boxes')",
            im.image_id
        );
    }
    let f = im.feature_size();
    if f != cfg.v_feature_size {
        bail!(
            "image `{}`: region features have {f} values but the model reads {} (v_feature_size)",
            im.image_id,
            cfg.v_feature_size
        );
    }
    if !(im.width > 0.0 && im.height > 0.0) {
        bail!(
            "image `{}`: size {} x {} is not positive",
            im.image_id,
            im.width,
            im.height
        );
    }
    let (w, h) = (im.width, im.height);
    let mut features = vec![0f32; f];
    for i in 0..n {
        for (m, x) in features.iter_mut().zip(im.feature(i)) {
            *m += x;
        }
    }
    features.iter_mut().for_each(|m| *m /= n as f32);
    let mut locations = vec![0.0, 0.0, 1.0, 1.0, 1.0];
    for i in 0..n {
        features.extend_from_slice(im.feature(i));
        let b = im.boxes[i];
        locations.extend_from_slice(&[
            b[0] / w,
            b[1] / h,
            b[2] / w,
            b[3] / h,
            (b[3] - b[1]) * (b[2] - b[0]) / (w * h),
        ]);
    }
    let cls_prob = im.cls_prob.as_ref().map(|p| {
        let c = p.len() / im.num_boxes();
        p[..n * c].to_vec()
    });
    Ok(ImageInput {
        features,
        locations,
        boxes: im.boxes[..n].to_vec(),
        cls_prob,
        width: w,
        height: h,
    })
}

/// An image with its picked boxes masked for pretraining (`random_region`): a picked box's
/// feature is zeroed when `zeroed` says so, and the global feature is recomputed as the
/// official loader does (see the module doc).
pub fn mask_regions(p: &ImageInput, picked: &[bool], zeroed: &[bool]) -> ImageInput {
    let mut out = p.clone();
    let f = p.feature_size();
    let n = p.boxes.len();
    let mut excluded = vec![false; n];
    for i in 0..n {
        if picked[i] {
            if zeroed[i] {
                out.features[(i + 1) * f..(i + 2) * f]
                    .iter_mut()
                    .for_each(|x| *x = 0.0);
            }
            for (j, e) in excluded.iter_mut().enumerate() {
                if pixel_box_iou(&p.boxes[i], &p.boxes[j]) > 0.4 {
                    *e = true;
                }
            }
        }
    }
    if picked.iter().any(|&x| x) {
        let count = excluded.iter().filter(|&&e| !e).count().max(1) as f32;
        let mut sum = vec![0f32; f];
        for i in 0..n {
            for (s, x) in sum.iter_mut().zip(&out.features[(i + 1) * f..(i + 2) * f]) {
                *s += x;
            }
        }
        for (dst, s) in out.features[..f].iter_mut().zip(sum) {
            *dst = s / count;
        }
    }
    out
}

/// An image with no visual content: every feature and location zero (the question-only
/// baseline keeps the network and its inputs' shapes).
pub fn blind(p: &ImageInput) -> ImageInput {
    let mut p = p.clone();
    p.features.iter_mut().for_each(|x| *x = 0.0);
    p.locations.iter_mut().for_each(|x| *x = 0.0);
    p
}

/// Pad `(ids, image)` pairs (segments 0) into a batch.
pub fn batch(pairs: &[(&[u32], &ImageInput)]) -> VilBatch {
    let n = pairs.len();
    let t = pairs.iter().map(|(ids, _)| ids.len()).max().unwrap_or(1);
    let r = pairs.iter().map(|(_, im)| im.len()).max().unwrap_or(1);
    let f = pairs.first().map(|(_, im)| im.feature_size()).unwrap_or(0);
    let mut b = VilBatch {
        batch: n,
        text_len: t,
        text_lens: Vec::with_capacity(n),
        ids: vec![0; n * t],
        type_ids: vec![0; n * t],
        regions: r,
        region_counts: Vec::with_capacity(n),
        features: vec![0.0; n * r * f],
        locations: vec![0.0; n * r * 5],
    };
    for (i, (ids, im)) in pairs.iter().enumerate() {
        b.text_lens.push(ids.len());
        b.ids[i * t..i * t + ids.len()].copy_from_slice(ids);
        b.region_counts.push(im.len());
        b.features[i * r * f..i * r * f + im.features.len()].copy_from_slice(&im.features);
        b.locations[i * r * 5..i * r * 5 + im.locations.len()].copy_from_slice(&im.locations);
    }
    b
}
