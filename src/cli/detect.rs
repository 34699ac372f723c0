//! `tessera detect`: YOLO detections on image files, as darknet's `detector test`.

use super::Common;
use anyhow::Result;
use clap::Args;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tessera::core::device::device_from_name;
use tessera::core::draw::{class_colour, draw_boxes, write_png, LabelledBox};
use tessera::detect::data::read_rgb;
use tessera::detect::Detector;

#[derive(Args, Debug)]
pub struct DetectArgs {
    /// Detector directory: a darknet .cfg, its .weights and a .names file (e.g. data/yolov3-tiny
    /// from `scripts/fetch-data.sh yolov3-tiny`).
    #[arg(long)]
    pub model: PathBuf,
    /// PNG or JPEG images.
    #[arg(long, required = true, num_args = 1..)]
    pub input: Vec<PathBuf>,
    /// Objectness and class-probability threshold (darknet's -thresh).
    #[arg(long, default_value_t = 0.25)]
    pub threshold: f32,
    /// IoU above which a lower-scored box of the same class is suppressed.
    #[arg(long, default_value_t = 0.45)]
    pub nms: f32,
    /// Draw the labelled boxes: a PNG file for one input, a directory (one PNG per input) for
    /// several.
    #[arg(long)]
    pub draw: Option<PathBuf>,
    /// Also write the detections as a region file (boxes, class distributions, RoIAlign
    /// features of the detector's last feature map; see `tessera regions`).
    #[arg(long)]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub common: Common,
}

pub fn run(a: DetectArgs) -> Result<()> {
    tessera::core::device::set_threads(a.common.threads);
    tessera::core::validate::probability_below_one("--threshold", a.threshold as f64)?;
    tessera::core::validate::proportion("--nms", a.nms as f64)?;
    let device = device_from_name(&a.common.device)?;
    let detector = Detector::load(&a.model, &device)?;
    let draw_dir = match &a.draw {
        Some(p) if a.input.len() > 1 => {
            std::fs::create_dir_all(p)
                .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", p.display()))?;
            Some(p.clone())
        }
        _ => None,
    };
    let mut out = std::io::stdout().lock();
    let mut regions = Vec::new();
    for input in &a.input {
        let img = read_rgb(input)?;
        let t0 = Instant::now();
        let keep = if a.output.is_some() {
            tessera::regions::extract::detector_feature_layer(&detector)
                .into_iter()
                .collect()
        } else {
            vec![]
        };
        let r = detector.detect(&img, a.threshold, a.nms, &keep)?;
        let seconds = t0.elapsed().as_secs_f64();
        if a.common.json {
            let v = serde_json::json!({
                "image": input, "width": r.width, "height": r.height,
                "detections": r.detections, "seconds": seconds,
            });
            writeln!(out, "{v}")?;
        } else {
            writeln!(
                out,
                "{}: {} detections in {seconds:.3} s ({}x{})",
                input.display(),
                r.detections.len(),
                r.width,
                r.height
            )?;
            for d in &r.detections {
                let [x1, y1, x2, y2] = d.bbox;
                writeln!(
                    out,
                    "  {:<16} {:>5.1}%  [{x1:.0}, {y1:.0}, {x2:.0}, {y2:.0}]",
                    d.label,
                    d.score * 100.0
                )?;
            }
        }
        if let Some(path) = &a.draw {
            // Lowest score first, so that the best label is drawn on top.
            let boxes: Vec<LabelledBox> = r
                .detections
                .iter()
                .rev()
                .map(|d| LabelledBox {
                    bbox: d.bbox,
                    label: format!("{} {:.0}%", d.label, d.score * 100.0),
                    colour: class_colour(d.class_id),
                })
                .collect();
            let drawn = draw_boxes(&img, &boxes, &[])?;
            let target = match &draw_dir {
                Some(dir) => dir.join(png_name(input)),
                None => path.clone(),
            };
            write_png(&drawn, &target)?;
        }
        if a.output.is_some() {
            regions.push(tessera::regions::extract::from_detections(
                &detector,
                input,
                &r,
                a.threshold,
            )?);
        }
    }
    if let Some(path) = &a.output {
        tessera::regions::files::write(
            path,
            &tessera::regions::files::RegionSet::from_images(regions, "yolov3-tiny"),
        )?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

fn png_name(input: &Path) -> String {
    format!(
        "{}.png",
        input
            .file_stem()
            .map_or("image".into(), |s| s.to_string_lossy())
    )
}
