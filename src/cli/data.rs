//! `tessera data scenes|show|import`: the generated scenes corpus, a look at a corpus image,
//! and easy-VQA / COCO in the annotated-image format.

use super::Common;
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use rayon::prelude::*;
use std::collections::BTreeMap;
use std::path::PathBuf;
use tessera::core::draw::{class_colour, draw_boxes, write_png, LabelledBox};
use tessera::core::progress;
use tessera::corpora::annotated::{read_corpus, write_annotations, Annotation};
use tessera::corpora::scenes::{generate, load_sources, SceneConfig, Sources, Split, RELATIONS};

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Generate scenes of real digits (MNIST) and articles (Fashion-MNIST) with boxes, labels,
    /// true captions, false hard negatives and uniquely answered questions.
    Scenes(ScenesArgs),
    /// Draw one image of an annotated corpus with its boxes, labels, captions and questions.
    Show(ShowArgs),
    /// Write easy-VQA or COCO as an annotated-image corpus (annotations.jsonl).
    Import(ImportArgs),
    /// Generate narrated how-to videos (MP4) of real digits and articles that slide, lift,
    /// drop, spin, grow, shrink, fade and flip, with ASR-style narration, YouCook2-style step
    /// annotations and the ground truth.
    Videos(super::video::VideosArgs),
    /// A contact sheet of a video's frames with its narration (and ground truth) under them.
    ShowVideo(super::video::ShowVideoArgs),
}

#[derive(ValueEnum, Debug, Clone, Copy)]
pub enum SplitArg {
    Train,
    Test,
}

#[derive(Args, Debug)]
pub struct ScenesArgs {
    /// Output directory: images/ and annotations.jsonl.
    #[arg(long)]
    pub output: PathBuf,
    #[arg(long, value_parser = super::at_least_one())]
    pub count: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Canvas side in pixels.
    #[arg(long, default_value_t = 96)]
    pub size: usize,
    #[command(flatten)]
    pub sources: SourceArgs,
    #[command(flatten)]
    pub common: Common,
}

/// The real images generated corpora (scenes, videos) draw from, and which split of them.
#[derive(Args, Debug)]
pub struct SourceArgs {
    /// Which source images: the training images, or the test images (for a test corpus).
    #[arg(long, value_enum, default_value = "train")]
    pub split: SplitArg,
    /// MNIST digits (`scripts/fetch-data.sh mnist-5k`).
    #[arg(long, default_value = "data/mnist-5k/mnist_5k.csv.gz")]
    pub digits: PathBuf,
    /// Fashion-MNIST IDX directory (`scripts/fetch-data.sh fashion-mnist`).
    #[arg(long, default_value = "data/fashion-mnist")]
    pub fashion: PathBuf,
}

impl SourceArgs {
    /// The split's images, and the corpus seed for it: the test split's is offset, so that one
    /// seed gives different train and test corpora.
    pub fn load(&self, seed: u64) -> Result<(Sources, Split, u64)> {
        let split = match self.split {
            SplitArg::Train => Split::Train,
            SplitArg::Test => Split::Test,
        };
        let src = load_sources(&self.digits, &self.fashion, split)?;
        let seed = seed.wrapping_add(if split == Split::Test { 1 << 32 } else { 0 });
        Ok((src, split, seed))
    }
}

#[derive(Args, Debug)]
pub struct ShowArgs {
    /// Corpus directory (or its annotations.jsonl).
    pub corpus: PathBuf,
    /// Which image (0-based line of annotations.jsonl).
    #[arg(long, default_value_t = 0)]
    pub index: usize,
    /// PNG to write.
    #[arg(long)]
    pub output: PathBuf,
    /// Enlarge small images this many times (nearest neighbour) before drawing [default: to at
    /// least 384 pixels].
    #[arg(long)]
    pub scale: Option<u32>,
}

#[derive(ValueEnum, Debug, Clone, Copy)]
pub enum ImportFormat {
    EasyVqa,
    Coco,
}

#[derive(Args, Debug)]
pub struct ImportArgs {
    #[arg(long, value_enum)]
    pub format: ImportFormat,
    /// easy-VQA: its directory (data/easy-vqa). COCO: captions_<split>.json.
    #[arg(long)]
    pub input: PathBuf,
    /// easy-VQA: train or test.
    #[arg(long, value_enum, default_value = "train")]
    pub split: SplitArg,
    /// COCO: instances_<split>.json, for boxes and labels.
    #[arg(long)]
    pub instances: Option<PathBuf>,
    /// COCO: the image folder.
    #[arg(long)]
    pub images: Option<PathBuf>,
    /// Output directory for annotations.jsonl (image paths in it are absolute).
    #[arg(long)]
    pub output: PathBuf,
}

pub fn run(cmd: Command) -> Result<()> {
    match cmd {
        Command::Scenes(a) => scenes(a),
        Command::Show(a) => show(a),
        Command::Import(a) => import(a),
        Command::Videos(a) => super::video::videos(a),
        Command::ShowVideo(a) => super::video::show_video(a),
    }
}

fn scenes(a: ScenesArgs) -> Result<()> {
    tessera::core::device::set_threads(a.common.threads);
    let cfg = SceneConfig {
        size: a.size,
        ..SceneConfig::default()
    };
    cfg.validate()?;
    tessera::core::validate::fits_in_memory(
        "--count scenes of --size pixels (annotations held in memory)",
        a.count as f64 * 2048.0,
    )?;
    let (src, _, seed) = a.sources.load(a.seed)?;
    let images = a.output.join("images");
    std::fs::create_dir_all(&images)
        .with_context(|| format!("cannot create {}", images.display()))?;
    let pb = progress::bar(a.count as u64, "scenes", a.common.json);
    let annotations: Vec<Annotation> = (0..a.count)
        .into_par_iter()
        .map(|i| {
            let (img, ann, _) = generate(&src, &cfg, seed, i);
            let rgb = image::DynamicImage::ImageLuma8(img).to_rgb8();
            write_png(&rgb, &a.output.join(&ann.image))?;
            pb.inc(1);
            Ok(ann)
        })
        .collect::<Result<_>>()?;
    pb.finish_and_clear();
    write_annotations(&a.output, &annotations)?;
    let summary = summarise(&annotations);
    if a.common.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        eprintln!(
            "wrote {} scenes to {}",
            annotations.len(),
            a.output.display()
        );
        eprintln!("{}", serde_json::to_string_pretty(&summary)?);
    }
    Ok(())
}

/// Counts of labels, relations in captions, question kinds and answers.
fn summarise(anns: &[Annotation]) -> serde_json::Value {
    let mut labels: BTreeMap<&str, usize> = BTreeMap::new();
    let mut relations: BTreeMap<&str, usize> = BTreeMap::new();
    let mut objects: BTreeMap<usize, usize> = BTreeMap::new();
    let (mut captions, mut what, mut how_many) = (0, 0, 0);
    for a in anns {
        *objects.entry(a.labels.len()).or_default() += 1;
        for l in &a.labels {
            *labels.entry(l).or_default() += 1;
        }
        for c in &a.captions {
            captions += 1;
            if let Some(r) = RELATIONS.iter().find(|r| c.contains(&format!(" {r} "))) {
                *relations.entry(r).or_default() += 1;
            }
        }
        for q in &a.qa {
            if q.question.starts_with("how many") {
                how_many += 1;
            } else {
                what += 1;
            }
        }
    }
    serde_json::json!({
        "scenes": anns.len(), "objects_per_scene": objects, "labels": labels,
        "captions": captions, "caption_relations": relations,
        "questions": {"what is <relation> the <label>": what, "how many": how_many},
    })
}

fn show(a: ShowArgs) -> Result<()> {
    let corpus = read_corpus(&a.corpus)?;
    let Some(ann) = corpus.images.get(a.index) else {
        bail!(
            "--index {}: the corpus has {} images",
            a.index,
            corpus.images.len()
        );
    };
    let img = tessera::detect::data::read_rgb(&corpus.image_path(ann))?;
    let scale = a
        .scale
        .unwrap_or_else(|| (384 / img.width().max(img.height()).max(1)).max(1));
    tessera::core::validate::int_in("--scale", scale as usize, 1, 64)?;
    let big = image::imageops::resize(
        &img,
        img.width() * scale,
        img.height() * scale,
        image::imageops::FilterType::Nearest,
    );
    let boxes: Vec<LabelledBox> = ann
        .boxes
        .iter()
        .enumerate()
        .map(|(i, b)| LabelledBox {
            bbox: b.map(|v| v * scale as f32),
            label: ann.labels.get(i).cloned().unwrap_or_else(|| i.to_string()),
            colour: class_colour(i),
        })
        .collect();
    let mut lines: Vec<String> = Vec::new();
    for (i, c) in ann.captions.iter().enumerate() {
        lines.push(format!("true:  {c}"));
        if let Some(n) = ann.negatives.get(i) {
            lines.push(format!("false: {n}"));
        }
    }
    for q in &ann.qa {
        lines.push(format!("{}  {}", q.question, q.answer));
    }
    let drawn = draw_boxes(&big, &boxes, &lines)?;
    write_png(&drawn, &a.output)?;
    eprintln!(
        "wrote {} ({}, {} boxes)",
        a.output.display(),
        ann.image,
        ann.boxes.len()
    );
    Ok(())
}

fn import(a: ImportArgs) -> Result<()> {
    let corpus = match a.format {
        ImportFormat::EasyVqa => {
            let split = match a.split {
                SplitArg::Train => "train",
                SplitArg::Test => "test",
            };
            tessera::corpora::easy_vqa::read_easy_vqa(&a.input, split)?
        }
        ImportFormat::Coco => {
            let images = a
                .images
                .as_ref()
                .context("COCO needs --images (the image folder)")?;
            tessera::corpora::coco::read_coco(&a.input, a.instances.as_deref(), images)?
        }
    };
    let dir = std::fs::canonicalize(&corpus.dir).unwrap_or(corpus.dir.clone());
    let images: Vec<Annotation> = corpus
        .images
        .into_iter()
        .map(|mut an| {
            an.image = dir.join(&an.image).to_string_lossy().into_owned();
            an
        })
        .collect();
    std::fs::create_dir_all(&a.output)
        .with_context(|| format!("cannot create {}", a.output.display()))?;
    write_annotations(&a.output, &images)?;
    let qa: usize = images.iter().map(|i| i.qa.len()).sum();
    let caps: usize = images.iter().map(|i| i.captions.len()).sum();
    eprintln!(
        "wrote {} images ({qa} questions, {caps} captions) to {}",
        images.len(),
        a.output.join("annotations.jsonl").display()
    );
    Ok(())
}
