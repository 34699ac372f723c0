//! Region features: boxes (from the detector, given, or a grid) and an appearance feature per box
//! pooled by RoIAlign from a backbone's feature map.
//!
//! Choices (the paper's bottom-up features come from a Faster R-CNN that cannot be had offline):
//! - a detector backbone pools its convolutional layer with the most channels (YOLOv3-tiny: layer
//!   12, 1024 channels at stride 32; `--feature-layer` picks another), a ViT/DINOv2 backbone its
//!   patch grid (last hidden states without the class token);
//! - RoIAlign to 7 x 7 bins, 2 samples per bin side, `aligned` (Detectron2's ROIAlignV2), then the
//!   mean over the bins, as bottom-up features average their pooled grid;
//! - the class distribution of a detector box is its class scores normalised to sum to one
//!   (YOLO scores classes with independent logistics; bottom-up's is a softmax).

use super::files::ImageRegions;
use crate::core::roi_align::RoiAlign;
use crate::detect::config::LayerKind;
use crate::detect::{Detector, ImageDetections};
use anyhow::{bail, Result};
use burn::tensor::Tensor;
use std::path::Path;

/// The default pooling of region features.
pub const POOL: RoiAlign = RoiAlign {
    output: (7, 7),
    spatial_scale: 1.0,
    sampling_ratio: 2,
    aligned: true,
};

/// The layer whose map a detector's region features pool: the convolution with the most channels
/// (the last of equals).
pub fn detector_feature_layer(det: &Detector) -> Option<usize> {
    det.net
        .spec
        .layers
        .iter()
        .enumerate()
        .filter(|(_, l)| matches!(l.kind, LayerKind::Convolutional { .. }))
        .max_by_key(|(i, l)| (l.out.0, *i))
        .map(|(i, _)| i)
}

fn map_values(t: &Tensor<4>) -> Result<(Vec<f32>, usize, usize, usize)> {
    let [_, c, h, w] = t.dims();
    let v: Vec<f32> = t
        .clone()
        .into_data()
        .convert::<f32>()
        .try_into_vec()
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    Ok((v, c, h, w))
}

/// Features of `boxes` (pixels of the `w` x `h` image) from a detector's letterboxed map.
pub fn detector_features(
    det: &Detector,
    map: &Tensor<4>,
    w: usize,
    h: usize,
    boxes: &[[f32; 4]],
) -> Result<Vec<f32>> {
    let spec = &det.net.spec;
    let (values, c, mh, mw) = map_values(map)?;
    let (new_w, new_h) = crate::detect::data::letterbox_size(w, h, spec.width, spec.height);
    let (dx, dy) = (
        ((spec.width - new_w) / 2) as f32,
        ((spec.height - new_h) / 2) as f32,
    );
    let (sx, sy) = (new_w as f32 / w as f32, new_h as f32 / h as f32);
    // Boxes in network-input pixels; the map's stride turns them into map pixels.
    let net_boxes: Vec<[f32; 4]> = boxes
        .iter()
        .map(|b| {
            [
                b[0] * sx + dx,
                b[1] * sy + dy,
                b[2] * sx + dx,
                b[3] * sy + dy,
            ]
        })
        .collect();
    if mh * spec.width != mw * spec.height {
        bail!("feature map of {mh}x{mw} is not the input's aspect");
    }
    let pool = RoiAlign {
        spatial_scale: mw as f32 / spec.width as f32,
        ..POOL
    };
    Ok(pool.pool_mean(&values, c, mh, mw, &net_boxes))
}

/// The regions of `r` for an image: its candidates with a score above `thresh`, best first, at
/// most `max_boxes`, with their class distributions and features from `r.maps[0]`.
pub fn from_candidates(
    det: &Detector,
    image_id: &str,
    r: &ImageDetections,
    thresh: f32,
    max_boxes: usize,
) -> Result<ImageRegions> {
    let mut cands: Vec<&crate::detect::eval::Candidate> =
        r.candidates.iter().filter(|c| c.score() > thresh).collect();
    cands.sort_by(|a, b| b.score().total_cmp(&a.score()));
    cands.truncate(max_boxes);
    let boxes: Vec<[f32; 4]> = cands
        .iter()
        .map(|c| c.pixel_box(r.width, r.height))
        .collect();
    let Some((_, map)) = r.maps.first() else {
        bail!("the detector kept no feature map");
    };
    let features = detector_features(det, map, r.width, r.height, &boxes)?;
    Ok(ImageRegions {
        image_id: image_id.to_string(),
        width: r.width as f32,
        height: r.height as f32,
        boxes,
        features,
        cls_prob: Some(cands.iter().flat_map(|c| c.class_distribution()).collect()),
    })
}

/// The id of an image file: its name without the extension.
pub fn image_id(image: &Path) -> String {
    image.file_stem().map_or_else(
        || image.display().to_string(),
        |s| s.to_string_lossy().into_owned(),
    )
}

/// The regions of `detect --output`: the boxes detected above `thresh` (a box detected for
/// several classes once).
pub fn from_detections(
    det: &Detector,
    image: &Path,
    r: &ImageDetections,
    thresh: f32,
) -> Result<ImageRegions> {
    from_candidates(det, &image_id(image), r, thresh, usize::MAX)
}

/// An N x N grid of cells plus the whole image, as grid-feature VQA models use.
pub fn grid_boxes(n: usize, w: f32, h: f32) -> Vec<[f32; 4]> {
    let mut out = vec![[0.0, 0.0, w, h]];
    for i in 0..n {
        for j in 0..n {
            out.push([
                j as f32 * w / n as f32,
                i as f32 * h / n as f32,
                (j + 1) as f32 * w / n as f32,
                (i + 1) as f32 * h / n as f32,
            ]);
        }
    }
    out
}

/// The `pixels` backbone: each box's crop of the image resized (bilinear, image's Triangle
/// filter) to `side` x `side` and its RGB values normalised as ImageNet backbones read them
/// (`(v / 255 - mean) / std` per channel) as the feature (3 x side^2 values, channel-last). Meant for small synthetic images (the generated scenes of MNIST digits and
/// Fashion-MNIST articles), where a crop at 8 x 8 already tells the classes apart and a ViT
/// backbone would take seconds per image on a CPU.
pub fn pixel_features(img: &image::RgbImage, boxes: &[[f32; 4]], side: u32) -> Vec<f32> {
    let (w, h) = img.dimensions();
    let mut out = Vec::with_capacity(boxes.len() * 3 * (side * side) as usize);
    for b in boxes {
        let x1 = (b[0].floor().max(0.0) as u32).min(w - 1);
        let y1 = (b[1].floor().max(0.0) as u32).min(h - 1);
        let x2 = (b[2].ceil() as u32).clamp(x1 + 1, w);
        let y2 = (b[3].ceil() as u32).clamp(y1 + 1, h);
        let crop = image::imageops::crop_imm(img, x1, y1, x2 - x1, y2 - y1).to_image();
        let small =
            image::imageops::resize(&crop, side, side, image::imageops::FilterType::Triangle);
        const MEAN: [f32; 3] = [0.485, 0.456, 0.406];
        const STD: [f32; 3] = [0.229, 0.224, 0.225];
        out.extend(
            small
                .as_raw()
                .iter()
                .enumerate()
                .map(|(i, &v)| (v as f32 / 255.0 - MEAN[i % 3]) / STD[i % 3]),
        );
    }
    out
}
