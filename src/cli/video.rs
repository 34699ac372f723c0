//! Video corpora: `tessera data videos` (the generated how-to corpus), `tessera data show-video`
//! (a contact sheet), and `tessera video features|codebook|tokenize` (clip features from an
//! image backbone, VideoBERT's hierarchical k-means visual words).

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
    #[command(flatten)]
    pub sources: super::data::SourceArgs,
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
    let (src, split, seed) = a.sources.load(a.seed)?;
    let dir = a.output.join("videos");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
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
    // Small frames are enlarged (whole pixels, nearest), large ones shrunk to 320 pixels a side
    // so that the narration under them stays readable.
    let longest = reader.width.max(reader.height).max(1) as f32;
    let scale = if longest < 128.0 {
        (128.0 / longest).floor()
    } else {
        (320.0 / longest).min(1.0)
    };
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
            ((frame.width() as f32 * scale).round() as u32).max(1),
            ((frame.height() as f32 * scale).round() as u32).max(1),
            if scale >= 1.0 {
                image::imageops::FilterType::Nearest
            } else {
                image::imageops::FilterType::Triangle
            },
        );
        let mut boxes = Vec::new();
        let mut lines = vec![format!("{t:.1} s")];
        if let Some(gt) = &truth {
            let f = (t * gt.fps as f64).round() as usize;
            if let (Some(Some(b)), Some(step)) =
                (gt.boxes.get(f), gt.steps.iter().find(|s| t < s.end - 1e-9))
            {
                boxes.push(LabelledBox {
                    bbox: b.map(|v| v * scale),
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

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Clip features of videos: a ViT/DINOv2 backbone's class token averaged over the frames of
    /// each clip, one <video>.safetensors ([T, D] and clip times) per video.
    Features(FeaturesArgs),
    /// VideoBERT's visual vocabulary: hierarchical k-means (levels x k) over clip features.
    Codebook(CodebookArgs),
    /// Map clip features to visual words (descending the codebook's tree) and write them beside
    /// the narration, a video a line (JSONL).
    Tokenize(TokenizeArgs),
}

pub fn run(cmd: Command) -> Result<()> {
    match cmd {
        Command::Features(a) => features(a),
        Command::Codebook(a) => codebook(a),
        Command::Tokenize(a) => tokenize(a),
    }
}

#[derive(Args, Debug)]
pub struct FeaturesArgs {
    /// A ViT / DINOv2 model directory (a bare name is looked up under data/, e.g. dinov2-s14),
    /// or a `vit train` run directory.
    #[arg(long, default_value = "dinov2-s14")]
    pub backbone: String,
    /// Videos: files, directories (their .mp4, .mkv, .webm, .avi, .mov) or a video corpus
    /// directory (its videos/).
    #[arg(long, required = true, num_args = 1..)]
    pub input: Vec<PathBuf>,
    /// Seconds per clip (VideoBERT, CBT: 1.5).
    #[arg(long, default_value_t = 1.5)]
    pub clip_seconds: f64,
    /// Frames sampled per second.
    #[arg(long, default_value_t = 4.0)]
    pub frame_rate: f64,
    /// Side frames are scaled to, a multiple of the patch size [default: the model's input
    /// size]. 112 suits 64 x 64 videos.
    #[arg(long, value_parser = super::at_least_one())]
    pub image_size: Option<usize>,
    /// Output directory (one <video>.safetensors per video).
    #[arg(long)]
    pub output: PathBuf,
    #[command(flatten)]
    pub common: Common,
}

const VIDEO_EXTENSIONS: [&str; 6] = ["mp4", "mkv", "webm", "avi", "mov", "m4v"];

/// Video files of the inputs, in order, with their ids (file stems, which must be unique).
fn video_files(inputs: &[PathBuf]) -> Result<Vec<(PathBuf, String)>> {
    let mut files = Vec::new();
    for p in inputs {
        if p.is_dir() {
            let dir = if p.join("videos").is_dir() && p.join("groundtruth.jsonl").is_file() {
                p.join("videos")
            } else {
                p.clone()
            };
            let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
                .with_context(|| format!("cannot read {}", dir.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| {
                    f.extension().is_some_and(|e| {
                        VIDEO_EXTENSIONS.contains(&e.to_string_lossy().to_lowercase().as_str())
                    })
                })
                .collect();
            if v.is_empty() {
                bail!(
                    "{}: no video files (.mp4, .mkv, .webm, .avi, .mov) inside",
                    dir.display()
                );
            }
            v.sort();
            files.extend(v);
        } else if p.is_file() {
            files.push(p.clone());
        } else {
            bail!("{}: no such video file or directory", p.display());
        }
    }
    let mut seen = std::collections::HashMap::new();
    let mut out = Vec::with_capacity(files.len());
    for f in files {
        let id = f
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        if let Some(prev) = seen.insert(id.clone(), f.clone()) {
            bail!(
                "{} and {} have the same video id `{id}`: features are written per id",
                prev.display(),
                f.display()
            );
        }
        out.push((f, id));
    }
    Ok(out)
}

fn features(a: FeaturesArgs) -> Result<()> {
    use tessera::video::features::{extract, write_clip_features, ClipSampling, FrameEncoder};
    tessera::core::device::set_threads(a.common.threads);
    let sampling = ClipSampling {
        clip_seconds: a.clip_seconds,
        frame_rate: a.frame_rate,
    };
    sampling.validate()?;
    let device = tessera::core::device::device_from_name(&a.common.device)?;
    let files = video_files(&a.input)?;
    let dir = super::regions::resolve_model_dir(&a.backbone)?;
    let enc = FrameEncoder::load(&dir, a.image_size, &device)?;
    std::fs::create_dir_all(&a.output)
        .with_context(|| format!("cannot create {}", a.output.display()))?;
    let pb = progress::bar(files.len() as u64, "features", a.common.json);
    let start = std::time::Instant::now();
    let mut clips = 0usize;
    for (path, id) in &files {
        let f = extract(&enc, path, id, &sampling)?;
        clips += f.len();
        write_clip_features(&a.output, &f, &enc.name, &sampling)?;
        pb.inc(1);
    }
    pb.finish_and_clear();
    let secs = start.elapsed().as_secs_f64();
    let summary = serde_json::json!({
        "videos": files.len(), "clips": clips, "dim": enc.dim, "seconds": secs,
        "clips_per_second": clips as f64 / secs, "output": a.output,
    });
    if a.common.json {
        println!("{summary}");
    } else {
        eprintln!(
            "wrote {clips} clip features ({} values) of {} videos to {} ({:.1} clips/s)",
            enc.dim,
            files.len(),
            a.output.display(),
            clips as f64 / secs
        );
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct CodebookArgs {
    /// Clip features: a directory of <video>.safetensors (`video features`) or .npy [T, D].
    #[arg(long)]
    pub features: PathBuf,
    /// Clips a second of .npy features (S3D features of 1.5 s clips: 0.6667).
    #[arg(long)]
    pub npy_rate: Option<f64>,
    /// Tree depth (VideoBERT: 4).
    #[arg(long, default_value_t = 4, value_parser = super::at_least_one())]
    pub levels: usize,
    /// Clusters per node (VideoBERT: 12; 4 x 12 gives 20,736 words).
    #[arg(long, default_value_t = 12)]
    pub k: usize,
    /// Most Lloyd iterations per node.
    #[arg(long, default_value_t = 300, value_parser = super::at_least_one())]
    pub max_iter: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Codebook to write (.safetensors).
    #[arg(long)]
    pub output: PathBuf,
    #[command(flatten)]
    pub common: Common,
}

pub fn npy_rate_ok(r: Option<f64>) -> Result<()> {
    if let Some(r) = r {
        if !(r.is_finite() && r > 0.0 && r <= 1000.0) {
            bail!("--npy-rate {r}: give clips a second above 0 and at most 1000");
        }
    }
    Ok(())
}

fn codebook(a: CodebookArgs) -> Result<()> {
    use tessera::core::kmeans::{HierarchicalKMeans, Lloyd};
    tessera::core::device::set_threads(a.common.threads);
    npy_rate_ok(a.npy_rate)?;
    tessera::core::validate::int_in("--k", a.k, 2, 4096)?;
    tessera::core::validate::int_in("--levels", a.levels, 1, 8)?;
    let words = (a.k as f64).powi(a.levels as i32);
    if words > 16_777_216.0 {
        bail!(
            "--k {} --levels {}: {words:.3e} words, more than 2^24 (VideoBERT: 12 x 4 = 20,736)",
            a.k,
            a.levels
        );
    }
    let videos = tessera::video::features::read_feature_dir(&a.features, a.npy_rate)?;
    let dim = videos[0].dim;
    let x: Vec<f32> = videos
        .iter()
        .flat_map(|v| v.features.iter().copied())
        .collect();
    let n = x.len() / dim;
    if n < a.k {
        bail!("{}: {n} clips for {} clusters", a.features.display(), a.k);
    }
    let start = std::time::Instant::now();
    let hkm = HierarchicalKMeans::fit(
        &x,
        dim,
        a.levels,
        a.k,
        Lloyd {
            max_iter: a.max_iter,
            tol: 1e-4,
        },
        a.seed,
    )?;
    let secs = start.elapsed().as_secs_f64();
    tessera::video::words::save_codebook(&a.output, &hkm)?;
    let used = hkm.counts[a.levels - 1].iter().filter(|&&c| c > 0).count();
    let summary = serde_json::json!({
        "videos": videos.len(), "clips": n, "dim": dim, "levels": a.levels, "k": a.k,
        "words": hkm.words(), "words_used": used, "seconds": secs,
    });
    if a.common.json {
        println!("{summary}");
    } else {
        eprintln!(
            "wrote a codebook of {} words ({used} used by the {n} clips) to {} in {secs:.1} s",
            hkm.words(),
            a.output.display()
        );
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct TokenizeArgs {
    /// Codebook (`video codebook`).
    #[arg(long)]
    pub codebook: PathBuf,
    /// Clip features: a directory of <video>.safetensors or .npy, or one file.
    #[arg(long)]
    pub features: PathBuf,
    /// Clips a second of .npy features.
    #[arg(long)]
    pub npy_rate: Option<f64>,
    /// Narration: a TSV (video_id, start, end, text) or a YouCook2 annotation JSON.
    #[arg(long)]
    pub narration: Option<PathBuf>,
    /// JSONL to write: per video its words, clip times and narration.
    #[arg(long)]
    pub output: PathBuf,
}

fn tokenize(a: TokenizeArgs) -> Result<()> {
    use tessera::corpora::narration::{check_within, read_youcook2};
    npy_rate_ok(a.npy_rate)?;
    let hkm = tessera::video::words::load_codebook(&a.codebook)?;
    let videos = tessera::video::features::read_feature_dir(&a.features, a.npy_rate)?;
    if videos[0].dim != hkm.dim {
        bail!(
            "{}: features of {} values; the codebook {} clusters {}",
            a.features.display(),
            videos[0].dim,
            a.codebook.display(),
            hkm.dim
        );
    }
    let narration: Option<Narration> = match &a.narration {
        None => None,
        Some(p) if p.extension().is_some_and(|e| e == "json") => Some(
            read_youcook2(p)?
                .into_iter()
                .map(|v| (v.id, v.segments))
                .collect(),
        ),
        Some(p) => Some(read_narration_tsv(p)?),
    };
    let mut out = String::new();
    let mut narrated = 0;
    for v in &videos {
        let segs = narration
            .as_ref()
            .and_then(|n| n.get(&v.video))
            .cloned()
            .unwrap_or_default();
        if let Some(p) = &a.narration {
            check_within(p, &v.video, &segs, v.duration)?;
        }
        narrated += usize::from(!segs.is_empty());
        let words: Vec<u32> = (0..v.len()).map(|t| hkm.word(v.row(t))).collect();
        out.push_str(&serde_json::to_string(&serde_json::json!({
            "video": v.video, "duration": v.duration, "words": words, "times": v.times,
            "narration": segs,
        }))?);
        out.push('\n');
    }
    write_atomic(&a.output, out.as_bytes())?;
    if let Some(n) = &narration {
        let ids: std::collections::HashSet<&str> =
            videos.iter().map(|v| v.video.as_str()).collect();
        let orphans = n.keys().filter(|k| !ids.contains(k.as_str())).count();
        if orphans > 0 {
            eprintln!(
                "warning: {orphans} narrated videos of {} have no features in {}",
                a.narration
                    .as_ref()
                    .map_or(String::new(), |p| p.display().to_string()),
                a.features.display()
            );
        }
    }
    eprintln!(
        "wrote visual words of {} videos ({narrated} with narration, {} words in the codebook) to {}",
        videos.len(),
        hkm.words(),
        a.output.display()
    );
    Ok(())
}
