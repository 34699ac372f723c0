//! YOLO object detection with darknet models (Redmon & Farhadi, YOLOv3, 2018) on the CPU: the
//! detector of the regions layer that VL-BERT and ViLBERT read images through (`MODELS.md` §4-5
//! use Faster R-CNN bottom-up features, whose CUDA-only extraction is what users fight; YOLOv3-tiny
//! trained on COCO is what can be had offline: a named deviation of the region features).
//!
//! Faithful to darknet's `detector test` (pjreddie/darknet at the version Debian packages,
//! 61c9d02e): its `.cfg` and `.weights` formats, its own bilinear resize and letterbox, logistic
//! outputs, anchor decoding, box correction, per-class NMS (`do_nms_sort`) and one detection per
//! class above the threshold.

pub mod config;
pub mod data;
pub mod eval;
pub mod model;

use anyhow::{bail, Context, Result};
use burn::tensor::{Device, Tensor, TensorData};
use std::path::{Path, PathBuf};

pub use eval::Detection;

/// A detector directory: one `.cfg`, one `.weights` and a `.names` file (class names).
#[derive(Debug, Clone)]
pub struct DetectorFiles {
    pub cfg: PathBuf,
    pub weights: PathBuf,
    pub names: PathBuf,
}

impl DetectorFiles {
    pub fn find(dir: &Path) -> Result<Self> {
        if !dir.is_dir() {
            bail!("{}: no such detector directory", dir.display());
        }
        let one = |ext: &str| -> Result<PathBuf> {
            let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
                .with_context(|| format!("cannot read {}", dir.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == ext))
                .collect();
            found.sort();
            match found.len() {
                1 => Ok(found.remove(0)),
                0 => bail!("{}: no .{ext} file (a detector directory holds a .cfg, a .weights and a .names file)", dir.display()),
                n => bail!("{}: {n} .{ext} files; keep one", dir.display()),
            }
        };
        Ok(Self {
            cfg: one("cfg")?,
            weights: one("weights")?,
            names: one("names")?,
        })
    }
}

/// A loaded detector.
pub struct Detector {
    pub net: model::Darknet,
    pub names: Vec<String>,
    pub device: Device,
}

/// What detecting one image gives.
pub struct ImageDetections {
    pub width: usize,
    pub height: usize,
    pub detections: Vec<Detection>,
    /// Candidates after NMS (with all class probabilities), for region features.
    pub candidates: Vec<eval::Candidate>,
    /// Feature maps of the layers asked for, with the letterbox geometry.
    pub maps: Vec<(usize, Tensor<4>)>,
}

impl Detector {
    pub fn load(dir: &Path, device: &Device) -> Result<Self> {
        let files = DetectorFiles::find(dir)?;
        let spec = config::read_cfg(&files.cfg)?;
        let classes = spec
            .layers
            .iter()
            .find_map(|l| match &l.kind {
                config::LayerKind::Yolo { classes, .. } => Some(*classes),
                _ => None,
            })
            .expect("read_cfg requires a yolo layer");
        let names = data::read_names(&files.names)?;
        if names.len() < classes {
            bail!(
                "{}: {} class names, the network predicts {classes} classes",
                files.names.display(),
                names.len()
            );
        }
        let net = model::Darknet::load(spec, &files.weights, device)?;
        Ok(Self {
            net,
            names,
            device: device.clone(),
        })
    }

    pub fn classes(&self) -> usize {
        self.net
            .spec
            .layers
            .iter()
            .find_map(|l| match &l.kind {
                config::LayerKind::Yolo { classes, .. } => Some(*classes),
                _ => None,
            })
            .unwrap_or(0)
    }

    /// Detect in one RGB image with darknet's thresholds (`thresh` for objectness and class
    /// probabilities, `nms` IoU), keeping the maps of layers `keep`.
    pub fn detect(
        &self,
        img: &image::RgbImage,
        thresh: f32,
        nms: f32,
        keep: &[usize],
    ) -> Result<ImageDetections> {
        let spec = &self.net.spec;
        let im = data::Image::from_rgb8(img);
        let boxed = data::letterbox(&im, spec.width, spec.height);
        let x = Tensor::<4>::from_data(
            TensorData::new(boxed.data, [1, 3, spec.height, spec.width]),
            &self.device,
        );
        let out = self.net.forward(x, keep)?;
        let mut cands = eval::candidates(&out.yolo, im.w, im.h, spec.width, spec.height, thresh);
        eval::nms(&mut cands, self.classes(), nms);
        let detections = eval::detections(&cands, &self.names, im.w, im.h, thresh);
        Ok(ImageDetections {
            width: im.w,
            height: im.h,
            detections,
            candidates: cands,
            maps: out.maps,
        })
    }
}
