//! `tessera regions`: boxes and RoIAlign features per image from a detector or a ViT/DINOv2
//! backbone, written as a region file (safetensors, bottom-up TSV or an npz directory).

use super::Common;
use anyhow::{bail, Context, Result};
use clap::Args;
use std::path::{Path, PathBuf};
use tessera::core::device::{device_from_name, set_threads};
use tessera::core::progress;
use tessera::core::roi_align::RoiAlign;
use tessera::corpora::annotated::read_corpus;
use tessera::detect::data::read_rgb;
use tessera::detect::Detector;
use tessera::regions::extract::{
    detector_feature_layer, detector_features, from_candidates, grid_boxes, image_id, POOL,
};
use tessera::regions::files::{write, ImageRegions, RegionSet};
use tessera::vit::config::VitConfig;
use tessera::vit::data::image_batch_at;
use tessera::vit::model::load_hf;

#[derive(Args, Debug)]
pub struct RegionsArgs {
    /// Backbone: a detector directory (.cfg + .weights + .names, e.g. yolov3-tiny), a ViT /
    /// DINOv2 model directory (e.g. dinov2-s14, a `vit train` run; a bare name is looked up
    /// under data/), or `pixels` / `pixels:N`: each box's crop resized to N x N (default 8), its
    /// RGB values as the feature (for small synthetic images such as the generated scenes).
    #[arg(long)]
    pub backbone: String,
    /// Images (PNG or JPEG). Not needed with --boxes, whose annotations list their images.
    #[arg(long, num_args = 1..)]
    pub input: Vec<PathBuf>,
    /// Take the boxes from an annotated corpus (annotations.jsonl, or its directory) instead of
    /// a detector: the ground-truth path of VL-BERT's feature extraction.
    #[arg(long, conflicts_with = "grid")]
    pub boxes: Option<PathBuf>,
    /// Take an N x N grid of boxes plus the whole image (for images no detector knows).
    #[arg(long, value_parser = super::at_least_one())]
    pub grid: Option<usize>,
    /// The detector that gives the boxes when the backbone is not one [default: the backbone].
    #[arg(long)]
    pub detector: Option<String>,
    /// Most boxes kept per image, by score (bottom-up features: 36).
    #[arg(long, default_value_t = 36, value_parser = super::at_least_one())]
    pub max_boxes: usize,
    /// Score a detector box needs to be kept.
    #[arg(long, default_value_t = 0.05)]
    pub threshold: f32,
    /// IoU above which a lower-scored box of the same class is suppressed.
    #[arg(long, default_value_t = 0.45)]
    pub nms: f32,
    /// A detector backbone's layer whose map is pooled [default: the convolution with the most
    /// channels].
    #[arg(long)]
    pub feature_layer: Option<usize>,
    /// Side a ViT/DINOv2 backbone sees the image at, a multiple of its patch size (position
    /// embeddings interpolated) [default: the model's input size; DINOv2: 518]. Small images
    /// need no more than a few patches per object: 112 for easy-VQA's 64 x 64 is 20x faster.
    #[arg(long, value_parser = super::at_least_one())]
    pub image_size: Option<usize>,
    /// Output: FILE.safetensors, FILE.tsv (bottom-up layout) or a directory (one .npz per image).
    #[arg(long)]
    pub output: PathBuf,
    #[command(flatten)]
    pub common: Common,
}

/// A backbone name or directory resolved to a directory.
pub fn resolve_model_dir(name: &str) -> Result<PathBuf> {
    let p = PathBuf::from(name);
    if p.is_dir() {
        return Ok(p);
    }
    let under_data = Path::new("data").join(name);
    if under_data.is_dir() {
        return Ok(under_data);
    }
    bail!("`{name}`: no such model directory (nor data/{name}; fetch it with scripts/fetch-data.sh {name})")
}

/// An image to extract: its file, its id, and its given boxes.
type Job = (PathBuf, String, Option<Vec<[f32; 4]>>);

enum Backbone {
    Detector(Detector, usize),
    /// The network, its config and directory, and the side images are resized to.
    Vit(Box<tessera::vit::model::Vit>, VitConfig, PathBuf, usize),
    Pixels(u32),
}

/// `pixels` or `pixels:N`.
fn pixels_side(backbone: &str) -> Result<Option<u32>> {
    let Some(rest) = backbone.strip_prefix("pixels") else {
        return Ok(None);
    };
    if rest.is_empty() {
        return Ok(Some(8));
    }
    match rest.strip_prefix(':').and_then(|n| n.parse::<u32>().ok()) {
        Some(n) if (1..=64).contains(&n) => Ok(Some(n)),
        _ => bail!("--backbone {backbone}: give pixels or pixels:N with N from 1 to 64"),
    }
}

pub fn run(a: RegionsArgs) -> Result<()> {
    set_threads(a.common.threads);
    tessera::core::validate::probability_below_one("--threshold", a.threshold as f64)?;
    tessera::core::validate::proportion("--nms", a.nms as f64)?;
    let device = device_from_name(&a.common.device)?;
    let pixels = pixels_side(&a.backbone)?;
    let dir = match pixels {
        Some(_) => PathBuf::from(&a.backbone),
        None => resolve_model_dir(&a.backbone)?,
    };
    let backbone = if let Some(side) = pixels {
        if a.boxes.is_none() && a.grid.is_none() {
            bail!("the pixels backbone gives no boxes: add --boxes or --grid N");
        }
        Backbone::Pixels(side)
    } else if dir.join("config.json").exists() {
        let mc = VitConfig::from_json_file(&dir.join("config.json"))?;
        let model = load_hf(&mc, &dir.join("model.safetensors"), &device)?;
        let side = match a.image_size {
            Some(s) if s > 4096 => bail!(
                "--image-size {s}: at most 4096 (a {}-patch grid is already {} tokens)",
                mc.patch_size,
                (4096 / mc.patch_size).pow(2)
            ),
            Some(s) if s % mc.patch_size != 0 => bail!(
                "--image-size {s} is not a multiple of the backbone's patch size {}",
                mc.patch_size
            ),
            Some(s) => s,
            None => tessera::vit::data::input_size(&dir, &mc)?,
        };
        Backbone::Vit(Box::new(model), mc, dir.clone(), side)
    } else {
        let det = Detector::load(&dir, &device)?;
        let layer = match a.feature_layer {
            Some(l) => {
                let layers = &det.net.spec.layers;
                if l >= layers.len()
                    || layers[l].out.1 * det.net.spec.width != layers[l].out.2 * det.net.spec.height
                {
                    bail!("--feature-layer {l}: the network has {} layers and the layer's map must keep the input's aspect", layers.len());
                }
                l
            }
            None => detector_feature_layer(&det).context("the detector has no convolution")?,
        };
        Backbone::Detector(det, layer)
    };
    let box_detector = match (&backbone, &a.detector) {
        (_, Some(d)) => Some(Detector::load(&resolve_model_dir(d)?, &device)?),
        _ => None,
    };
    // The images and, from an annotated corpus, their boxes.
    let jobs: Vec<Job> = match &a.boxes {
        Some(p) => {
            let corpus = read_corpus(p)?;
            corpus
                .images
                .iter()
                .map(|an| (corpus.image_path(an), an.id(), Some(an.boxes.clone())))
                .collect()
        }
        None => {
            if a.input.is_empty() {
                bail!("give --input IMAGE... (or --boxes annotations.jsonl)");
            }
            a.input
                .iter()
                .map(|p| (p.clone(), image_id(p), None))
                .collect()
        }
    };
    if a.image_size.is_some() && !matches!(backbone, Backbone::Vit(..)) {
        bail!(
            "--image-size applies to a ViT/DINOv2 backbone, not `{}`",
            a.backbone
        );
    }
    if a.boxes.is_none()
        && a.grid.is_none()
        && box_detector.is_none()
        && matches!(backbone, Backbone::Vit(..))
    {
        bail!("a ViT/DINOv2 backbone gives no boxes: add --boxes, --grid N or --detector DIR");
    }
    let pb = progress::bar(jobs.len() as u64, "regions", a.common.json);
    let mut images = Vec::with_capacity(jobs.len());
    for (path, id, given) in jobs {
        let img = read_rgb(&path)?;
        let (w, h) = (img.width() as f32, img.height() as f32);
        let regions = match &backbone {
            Backbone::Detector(det, layer) => {
                let r = det.detect(&img, a.threshold, a.nms, &[*layer])?;
                match (&given, a.grid) {
                    (None, None) => from_candidates(det, &id, &r, a.threshold, a.max_boxes)?,
                    _ => {
                        let boxes = given
                            .clone()
                            .unwrap_or_else(|| grid_boxes(a.grid.unwrap_or(1), w, h));
                        check_boxes(&boxes, w, h, &path)?;
                        let features =
                            detector_features(det, &r.maps[0].1, r.width, r.height, &boxes)?;
                        ImageRegions {
                            image_id: id.clone(),
                            width: w,
                            height: h,
                            boxes,
                            features,
                            cls_prob: None,
                        }
                    }
                }
            }
            Backbone::Pixels(side) => {
                let boxes = given
                    .clone()
                    .unwrap_or_else(|| grid_boxes(a.grid.unwrap_or(1), w, h));
                check_boxes(&boxes, w, h, &path)?;
                let features = tessera::regions::extract::pixel_features(&img, &boxes, *side);
                ImageRegions {
                    image_id: id.clone(),
                    width: w,
                    height: h,
                    boxes,
                    features,
                    cls_prob: None,
                }
            }
            Backbone::Vit(model, mc, dir, side) => {
                let (boxes, cls_prob) = match (&given, a.grid, &box_detector) {
                    (Some(b), _, _) => (b.clone(), None),
                    (None, Some(n), _) => (grid_boxes(n, w, h), None),
                    (None, None, Some(det)) => {
                        let layer = detector_feature_layer(det)
                            .context("the detector has no convolution")?;
                        let r = det.detect(&img, a.threshold, a.nms, &[layer])?;
                        let rr = from_candidates(det, &id, &r, a.threshold, a.max_boxes)?;
                        (rr.boxes, rr.cls_prob)
                    }
                    _ => unreachable!("checked above"),
                };
                check_boxes(&boxes, w, h, &path)?;
                let features = vit_features(model, mc, dir, *side, &path, &boxes, w, h, &device)?;
                ImageRegions {
                    image_id: id.clone(),
                    width: w,
                    height: h,
                    boxes,
                    features,
                    cls_prob,
                }
            }
        };
        images.push(regions);
        pb.inc(1);
    }
    pb.finish_and_clear();
    let name = match &backbone {
        Backbone::Detector(..) => format!("darknet:{}", dir.display()),
        Backbone::Vit(.., side) => format!("vit:{}@{side}", dir.display()),
        Backbone::Pixels(side) => format!("pixels:{side}"),
    };
    let set = RegionSet::from_images(images, &name);
    write(&a.output, &set)?;
    let boxes: usize = set.images.iter().map(|im| im.num_boxes()).sum();
    eprintln!(
        "wrote {} images, {boxes} boxes, features of {} values to {}",
        set.images.len(),
        set.feature_size()?,
        a.output.display()
    );
    Ok(())
}

fn check_boxes(boxes: &[[f32; 4]], w: f32, h: f32, image: &Path) -> Result<()> {
    for (i, b) in boxes.iter().enumerate() {
        if !(b[0] >= 0.0
            && b[1] >= 0.0
            && b[2] <= w + 1.0
            && b[3] <= h + 1.0
            && b[0] < b[2]
            && b[1] < b[3])
        {
            bail!(
                "{}: box {i} {b:?} lies outside the {w}x{h} image",
                image.display()
            );
        }
    }
    Ok(())
}

/// RoIAlign features of `boxes` over a ViT's patch grid of the image at `path`.
#[allow(clippy::too_many_arguments)]
fn vit_features(
    model: &tessera::vit::model::Vit,
    mc: &VitConfig,
    dir: &Path,
    side: usize,
    path: &Path,
    boxes: &[[f32; 4]],
    w: f32,
    h: f32,
    device: &burn::tensor::Device,
) -> Result<Vec<f32>> {
    let batch = image_batch_at(dir, mc, &[path.to_path_buf()], false, side)?;
    let s = batch.side as f32;
    let out = model.forward(burn::tensor::Tensor::from_data(batch.pixels, device))?;
    let [_, n, d] = out.last_hidden_state.dims();
    let g = batch.side / mc.patch_size;
    if n != g * g + 1 {
        bail!(
            "{}: {n} tokens, a {g}x{g} grid plus the class token expected",
            dir.display()
        );
    }
    // [1 + g*g, D] -> the patch grid as a [D, g, g] map.
    let tokens: Vec<f32> = out
        .last_hidden_state
        .into_data()
        .convert::<f32>()
        .try_into_vec()
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let mut map = vec![0f32; d * g * g];
    for p in 0..g * g {
        for c in 0..d {
            map[c * g * g + p] = tokens[(1 + p) * d + c];
        }
    }
    // The image was resized to s x s: boxes follow, and the grid has s / g pixels per cell.
    let scaled: Vec<[f32; 4]> = boxes
        .iter()
        .map(|b| [b[0] * s / w, b[1] * s / h, b[2] * s / w, b[3] * s / h])
        .collect();
    let pool = RoiAlign {
        spatial_scale: g as f32 / s,
        ..POOL
    };
    Ok(pool.pool_mean(&map, d, g, g, &scaled))
}

#[derive(Args, Debug)]
pub struct StandardizeArgs {
    /// The training region file whose per-dimension mean and standard deviation are used.
    #[arg(long)]
    pub fit: PathBuf,
    /// The region file to standardise (the training file itself, or held-out images).
    #[arg(long)]
    pub input: PathBuf,
    /// Where to write the standardised regions (safetensors, TSV or an npz directory).
    #[arg(long)]
    pub output: PathBuf,
}

pub fn run_standardize(a: StandardizeArgs) -> Result<()> {
    use tessera::regions::files::read;
    use tessera::regions::standardize::FeatureStats;
    let fit = read(&a.fit)?;
    let stats = FeatureStats::of(&fit).with_context(|| format!("{}", a.fit.display()))?;
    let mut set = if a.input == a.fit {
        fit
    } else {
        read(&a.input)?
    };
    stats
        .apply(&mut set)
        .with_context(|| format!("{} against {}", a.input.display(), a.fit.display()))?;
    set.backbone = format!("{} standardised", set.backbone);
    write(&a.output, &set)?;
    eprintln!(
        "wrote {} images to {}: {} dimensions standardised with the statistics of {} boxes{}",
        set.images.len(),
        a.output.display(),
        stats.mean.len(),
        stats.boxes,
        match stats.constant_dimensions() {
            0 => String::new(),
            n => format!(" ({n} constant there: centred only)"),
        }
    );
    Ok(())
}
