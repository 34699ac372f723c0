//! Video corpora: `tessera data videos` (the generated how-to corpus), `tessera data show-video`
//! (a contact sheet), and `tessera video features|codebook|tokenize` (clip features from an
//! image backbone, VideoBERT's hierarchical k-means visual words).

use super::data::SplitArg;
use super::Common;
use anyhow::{bail, Context, Result};
use clap::Args;
use rayon::prelude::*;
use std::collections::BTreeMap;
use std::path::PathBuf;
use tessera::core::draw::{class_colour, draw_boxes, write_png, LabelledBox};
use tessera::core::progress;
use tessera::core::run::write_atomic;
use tessera::core::video::{FrameReader, VideoWriter};
use tessera::corpora::narration::{
    narration_tsv, read_narration_tsv, youcook2_json, AnnotatedVideo, Narration, Segment,
};
use tessera::corpora::scenes::{load_sources, Split};
use tessera::corpora::videos::{plan, render, subset, GroundTruth, VideoConfig, VERBS};

#[derive(Args, Debug)]
pub struct VideosArgs {
    /// Output directory: videos/NNNNNN.mp4, narration.tsv (ASR-style), youcook2.json (the
    /// steps as YouCook2 annotations) and groundtruth.jsonl.
    #[arg(long)]
    pub output: PathBuf,
    #[arg(long, value_parser = super::at_least_one())]
    pub count: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Frame side in pixels (even).
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// Frames a second.
    #[arg(long, default_value_t = 10)]
    pub fps: u32,
    /// Fraction of steps left unnarrated.
    #[arg(long, default_value_t = 0.2)]
    pub unnarrated: f64,
    /// Most seconds a sentence is shifted from its step.
    #[arg(long, default_value_t = 1.0)]
    pub max_shift: f64,
    /// Chance of each of up to two unrelated filler sentences per video.
    #[arg(long, default_value_t = 0.5)]
    pub filler: f64,
    /// Which source images: train videos use the training images, test videos the test images.
    #[arg(long, value_enum, default_value = "train")]
    pub split: SplitArg,
    /// MNIST digits (`scripts/fetch-data.sh mnist-5k`).
    #[arg(long, default_value = "data/mnist-5k/mnist_5k.csv.gz")]
    pub digits: PathBuf,
    /// Fashion-MNIST IDX directory (`scripts/fetch-data.sh fashion-mnist`).
    #[arg(long, default_value = "data/fashion-mnist")]
    pub fashion: PathBuf,
    #[command(flatten)]
    pub common: Common,
}

pub fn videos(a: VideosArgs) -> Result<()> {
    tessera::core::device::set_threads(a.common.threads);
    let cfg = VideoConfig {
        size: a.size,
        fps: a.fps,
        unnarrated: a.unnarrated,
        max_shift: a.max_shift,
        filler: a.filler,
        ..VideoConfig::default()
    };
    cfg.validate()?;
    tessera::core::validate::fits_in_memory(
        "--count videos (ground truth held in memory)",
        a.count as f64 * (cfg.max_seconds * cfg.fps as f64 * 40.0 + 4096.0),
    )?;
    let split = match a.split {
        SplitArg::Train => Split::Train,
        SplitArg::Test => Split::Test,
    };
    let src = load_sources(&a.digits, &a.fashion, split)?;
    let dir = a.output.join("videos");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    // As the scenes: the test split's seed is offset, so one seed gives different videos.
    let seed = a
        .seed
        .wrapping_add(if split == Split::Test { 1 << 32 } else { 0 });
    let pb = progress::bar(a.count as u64, "videos", a.common.json);
    let made: Vec<(GroundTruth, Vec<Segment>)> = (0..a.count)
        .into_par_iter()
        .map(|i| {
            let p = plan(&src, &cfg, seed, i);
            let file = format!("videos/{}.mp4", p.id);
            let mut w = VideoWriter::create(
                &a.output.join(&file),
                cfg.size as u32,
                cfg.size as u32,
                cfg.fps,
                12,
            )?;
            let mut boxes = Vec::with_capacity(p.frames);
            for f in 0..p.frames {
                let (img, b) = render(&src, &cfg, &p, f);
                w.push(&img)?;
                boxes.push(b);
            }
            w.finish()?;
            pb.inc(1);
            let gt = GroundTruth {
                video: p.id.clone(),
                file,
                subset: subset(split).to_string(),
                duration: p.duration,
                fps: cfg.fps,
                size: cfg.size,
                steps: p.steps,
                boxes,
                unnarrated: p.unnarrated,
                fillers: p.fillers,
            };
            Ok((gt, p.narration))
        })
        .collect::<Result<_>>()?;
    pb.finish_and_clear();
    let mut narration = Narration::new();
    let mut annotated = Vec::with_capacity(made.len());
    let mut truth = String::new();
    for (gt, segs) in &made {
        narration.insert(gt.video.clone(), segs.clone());
        annotated.push(AnnotatedVideo {
            id: gt.video.clone(),
            subset: gt.subset.clone(),
            recipe_type: "synthetic".into(),
            duration: Some(gt.duration),
            segments: gt
                .steps
                .iter()
                .map(|s| Segment {
                    start: s.start,
                    end: s.end,
                    text: tessera::corpora::videos::phrase(&s.verb, &s.object),
                })
                .collect(),
        });
        truth.push_str(&serde_json::to_string(gt)?);
        truth.push('\n');
    }
    write_atomic(
        &a.output.join("narration.tsv"),
        narration_tsv(&narration).as_bytes(),
    )?;
    write_atomic(
        &a.output.join("youcook2.json"),
        serde_json::to_string_pretty(&youcook2_json(&annotated))?.as_bytes(),
    )?;
    write_atomic(&a.output.join("groundtruth.jsonl"), truth.as_bytes())?;
    let summary = summarise(&made);
    if a.common.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        eprintln!("wrote {} videos to {}", made.len(), a.output.display());
        eprintln!("{}", serde_json::to_string_pretty(&summary)?);
    }
    Ok(())
}

/// Counts of verbs, objects, steps and noise.
fn summarise(made: &[(GroundTruth, Vec<Segment>)]) -> serde_json::Value {
    let mut verbs: BTreeMap<&str, usize> = VERBS.iter().map(|v| (*v, 0)).collect();
    let mut objects: BTreeMap<&str, usize> = BTreeMap::new();
    let mut steps_per_video: BTreeMap<usize, usize> = BTreeMap::new();
    let (mut steps, mut unnarrated, mut fillers, mut sentences) = (0, 0, 0, 0);
    let (mut seconds, mut abs_shift, mut shifted) = (0.0, 0.0, 0usize);
    for (gt, segs) in made {
        *steps_per_video.entry(gt.steps.len()).or_default() += 1;
        seconds += gt.duration;
        unnarrated += gt.unnarrated;
        fillers += gt.fillers;
        sentences += segs.len();
        for s in &gt.steps {
            steps += 1;
            *verbs.entry(s.verb.as_str()).or_default() += 1;
            *objects.entry(s.object.as_str()).or_default() += 1;
            if let Some(x) = s.narration_shift {
                abs_shift += x.abs();
                shifted += 1;
            }
        }
    }
    serde_json::json!({
        "videos": made.len(),
        "hours": seconds / 3600.0,
        "steps": steps,
        "steps_per_video": steps_per_video,
        "verbs": verbs,
        "objects": objects,
        "sentences": sentences,
        "unnarrated_steps": unnarrated,
        "filler_sentences": fillers,
        "mean_abs_shift_seconds": if shifted > 0 { abs_shift / shifted as f64 } else { 0.0 },
    })
}

#[derive(Args, Debug)]
pub struct ShowVideoArgs {
    /// A video corpus directory (from `tessera data videos`), or a video file.
    pub corpus: PathBuf,
    /// Which video (0-based line of groundtruth.jsonl) of a corpus directory.
    #[arg(long, default_value_t = 0)]
    pub index: usize,
    /// Narration (video_id<TAB>start<TAB>end<TAB>text) for a video file [default: a corpus's
    /// narration.tsv].
    #[arg(long)]
    pub narration: Option<PathBuf>,
    /// Frames a second on the sheet.
    #[arg(long, default_value_t = 2.0)]
    pub rate: f64,
    /// Frames per row.
    #[arg(long, default_value_t = 6)]
    pub columns: usize,
    /// PNG to write.
    #[arg(long)]
    pub output: PathBuf,
}

/// Words of `text` in lines of at most `width` characters.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = vec![String::new()];
    for w in text.split_whitespace() {
        let last = lines.last_mut().expect("one line");
        if !last.is_empty() && last.len() + 1 + w.len() > width {
            lines.push(w.to_string());
        } else {
            if !last.is_empty() {
                last.push(' ');
            }
            last.push_str(w);
        }
    }
    lines
}

pub fn show_video(a: ShowVideoArgs) -> Result<()> {
    tessera::core::validate::int_in("--columns", a.columns, 1, 64)?;
    if !(a.rate.is_finite() && a.rate > 0.0 && a.rate <= 30.0) {
        bail!(
            "--rate {}: give above 0 and at most 30 frames a second",
            a.rate
        );
    }
    // The video, its id, narration and (from a corpus) ground truth.
    let (path, id, truth, narration_file) = if a.corpus.is_dir() {
        let all = tessera::corpora::videos::read_ground_truth(&a.corpus)?;
        let Some(gt) = all.into_iter().nth(a.index) else {
            bail!("--index {}: the corpus has fewer videos", a.index);
        };
        let narration = a
            .narration
            .clone()
            .unwrap_or_else(|| a.corpus.join("narration.tsv"));
        (
            a.corpus.join(&gt.file),
            gt.video.clone(),
            Some(gt),
            Some(narration),
        )
    } else {
        let id = a
            .corpus
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        (a.corpus.clone(), id, None, a.narration.clone())
    };
    let segments: Vec<Segment> = match &narration_file {
        Some(f) if f.exists() || a.narration.is_some() => {
            read_narration_tsv(f)?.remove(&id).unwrap_or_default()
        }
        _ => Vec::new(),
    };
    let mut reader = FrameReader::open(&path, Some(a.rate), None)?;
    let scale = (128 / reader.width.max(reader.height).max(1)).max(1);
    let mut cells = Vec::new();
    let mut i = 0;
    while let Some(frame) = reader.next_frame()? {
        if cells.len() >= 120 {
            break;
        }
        // The picture's own time (the fps filter takes the last source frame of each period).
        let t = reader.source_time(i);
        i += 1;
        let big = image::imageops::resize(
            &frame,
            frame.width() * scale,
            frame.height() * scale,
            image::imageops::FilterType::Nearest,
        );
        let mut boxes = Vec::new();
        let mut lines = vec![format!("{t:.1} s")];
        if let Some(gt) = &truth {
            let f = (t * gt.fps as f64).round() as usize;
            if let (Some(Some(b)), Some(step)) =
                (gt.boxes.get(f), gt.steps.iter().find(|s| t < s.end - 1e-9))
            {
                boxes.push(LabelledBox {
                    bbox: b.map(|v| v * scale as f32),
                    label: format!("{} {}", step.verb, step.object),
                    colour: class_colour(VERBS.iter().position(|v| *v == step.verb).unwrap_or(0)),
                });
            }
        }
        for s in segments.iter().filter(|s| s.start <= t && t < s.end) {
            lines.extend(
                wrap(&format!("\u{201c}{}\u{201d}", s.text), 18)
                    .into_iter()
                    .take(4),
            );
        }
        cells.push(draw_boxes(&big, &boxes, &lines)?);
    }
    if cells.is_empty() {
        bail!("{}: no frames", path.display());
    }
    let (cw, ch) = (
        cells.iter().map(|c| c.width()).max().unwrap_or(1) + 4,
        cells.iter().map(|c| c.height()).max().unwrap_or(1) + 4,
    );
    let cols = a.columns.min(cells.len()) as u32;
    let rows = (cells.len() as u32).div_ceil(cols);
    let mut sheet = image::RgbImage::from_pixel(cw * cols, ch * rows, image::Rgb([255, 255, 255]));
    for (k, c) in cells.iter().enumerate() {
        let (x, y) = ((k as u32 % cols) * cw, (k as u32 / cols) * ch);
        image::imageops::replace(&mut sheet, c, x as i64 + 2, y as i64 + 2);
    }
    write_png(&sheet, &a.output)?;
    eprintln!(
        "wrote {} ({} frames of {}, {} narration segments)",
        a.output.display(),
        cells.len(),
        path.display(),
        segments.len()
    );
    Ok(())
}
