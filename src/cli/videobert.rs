//! `tessera videobert pretrain`: VideoBERT's three objectives on videos tokenised into visual
//! words beside their narration (`tessera video tokenize`).

use super::Common;
use anyhow::{bail, Result};
use clap::{Args, Subcommand, ValueEnum};
use std::path::PathBuf;
use tessera::core::device::{device_from_name, set_threads};
use tessera::core::run::RunDir;
use tessera::videobert::model::{from_text_bert, VisualInit};
use tessera::videobert::train::{pretrain, PretrainConfig};

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Pretrain from a text BERT (all-MiniLM-L6-v2 here; BERT-large in the paper) and a
    /// visual-word codebook: masked language modelling, masked frame modelling and
    /// linguistic-visual alignment over joint, text-only and video-only sequences.
    Pretrain(PretrainArgs),
    /// Zero-shot action classification (the paper's §4.2): fill "now let me show you how to
    /// [MASK] the [MASK]" given a segment's visual words and rank verb and object labels;
    /// top-1/top-5 beside the language prior (the same template with no video) and chance.
    ZeroShot(ZeroShotArgs),
    /// Time inference or one pretraining step (forward, the three losses, backward, AdamW) of a
    /// network of the given size with random weights and sequences; prints JSON
    /// (bench/videobert_vs_transformers.sh).
    Bench(BenchArgs),
    /// Future prediction: the next visual word after each prefix of the given videos' words,
    /// top-1/top-5 beside repeating the last word and the most frequent words.
    Predict(PredictArgs),
    /// Text-to-video (recipe illustration): visual words generated from a sentence by iterative
    /// masked prediction, drawn as the nearest real clips' middle frames (PNG).
    Illustrate(IllustrateArgs),
    /// VideoBERT's features of every clip: the last hidden state at each visual word of the
    /// video-only sequence, one <video>.safetensors ([T, hidden] and clip times) per video,
    /// the layout of `video features` (for captioning and probes).
    Features(VbFeaturesArgs),
    /// Train a transformer captioner (encoder over a segment's clip features, decoder over
    /// words) on the step descriptions of a YouCook2-style annotation file; the features are
    /// `videobert features` (VideoBERT's) or `video features` (raw clips: the baseline).
    CaptionTrain(CaptionTrainArgs),
    /// Caption the segments of an annotation file with a trained captioner (greedy or beam
    /// search) and score the captions against the descriptions: BLEU-1..4, ROUGE-L, CIDEr-D
    /// and METEOR 1.5 (with its resources from `scripts/fetch-data.sh meteor`).
    Caption(CaptionArgs),
}

#[derive(Args, Debug)]
pub struct CaptionTrainArgs {
    /// Clip features of the training videos: a directory of <video>.safetensors (`videobert
    /// features` or `video features`); several directories are joined clip by clip (the
    /// paper's best captioner reads VideoBERT's features beside the raw ones).
    #[arg(long, required = true, num_args = 1..)]
    pub features: Vec<PathBuf>,
    /// The training segments: a YouCook2-style annotation JSON, or a corpus directory holding
    /// youcook2.json (`data videos`).
    #[arg(long)]
    pub captions: PathBuf,
    #[arg(long, requires = "valid_captions", num_args = 1..)]
    pub valid_features: Vec<PathBuf>,
    #[arg(long)]
    pub valid_captions: Option<PathBuf>,
    /// Caption only the annotated videos that have a feature file (otherwise a video without
    /// one is an error).
    /// Clips a second of .npy feature files (which carry no clip times; S3D features of 1.5 s
    /// clips: 0.6667).
    #[arg(long)]
    pub npy_rate: Option<f64>,
    #[arg(long)]
    pub allow_missing: bool,
    /// Width of the encoder and decoder.
    #[arg(long, default_value_t = 128, value_parser = super::at_least_one())]
    pub hidden: usize,
    /// Layers of the encoder and of the decoder each.
    #[arg(long, default_value_t = 2, value_parser = super::at_least_one())]
    pub layers: usize,
    #[arg(long, default_value_t = 4, value_parser = super::at_least_one())]
    pub heads: usize,
    /// Most clips the encoder reads per segment (more are subsampled evenly).
    #[arg(long, default_value_t = 32, value_parser = super::at_least_one())]
    pub max_clips: usize,
    /// Most words of a caption (longer descriptions are cut for training).
    #[arg(long, default_value_t = 20, value_parser = super::at_least_one())]
    pub max_words: usize,
    /// Words seen fewer times in the training descriptions become [UNK].
    #[arg(long, default_value_t = 1, value_parser = super::at_least_one())]
    pub min_count: usize,
    /// The language-only baseline: the features zeroed in training and decoding.
    #[arg(long)]
    pub blind: bool,
    #[arg(long)]
    pub run_dir: PathBuf,
    #[command(flatten)]
    pub run: super::TrainFlags,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Args, Debug)]
pub struct CaptionArgs {
    /// A `videobert caption-train` run directory.
    #[arg(long)]
    pub model: PathBuf,
    /// Clip features of the videos, the same sources (and order) the captioner was trained on.
    #[arg(long, required = true, num_args = 1..)]
    pub features: Vec<PathBuf>,
    /// The segments to caption (their descriptions are the references).
    #[arg(long)]
    pub captions: PathBuf,
    /// Clips a second of .npy feature files (which carry no clip times; S3D features of 1.5 s
    /// clips: 0.6667).
    #[arg(long)]
    pub npy_rate: Option<f64>,
    #[arg(long)]
    pub allow_missing: bool,
    /// Beam width; 1: greedy decoding.
    #[arg(long, default_value_t = 1, value_parser = super::at_least_one())]
    pub beam: usize,
    /// Beam search ranks finished captions by log-probability / length^this (0: the plain sum).
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub length_penalty: f64,
    #[arg(long, default_value_t = 64, value_parser = super::at_least_one())]
    pub batch_size: usize,
    /// Write each segment's reference and caption as JSONL.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// METEOR's resources (`bash scripts/fetch-data.sh meteor`) [default: data/meteor, when
    /// there; without them METEOR is left out].
    #[arg(long)]
    pub meteor: Option<PathBuf>,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Args, Debug)]
pub struct VbFeaturesArgs {
    /// A `videobert pretrain` run directory.
    #[arg(long)]
    pub model: PathBuf,
    /// Videos as visual words (`tessera video tokenize` JSONL, from the model's codebook).
    #[arg(long)]
    pub words: PathBuf,
    /// Most visual words per sequence; longer videos run in consecutive windows [default: 48,
    /// or what the model's positions allow].
    #[arg(long, value_parser = super::at_least_one())]
    pub window: Option<usize>,
    /// Output directory.
    #[arg(long)]
    pub output: PathBuf,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Args, Debug)]
pub struct PredictArgs {
    /// A `videobert pretrain` run directory.
    #[arg(long)]
    pub model: PathBuf,
    /// Videos as visual words (`tessera video tokenize` JSONL).
    #[arg(long)]
    pub words: PathBuf,
    /// Visual words seen before each prediction.
    #[arg(long, default_value_t = 4)]
    pub prefix: usize,
    #[arg(long, default_value_t = 64, value_parser = super::at_least_one())]
    pub batch_size: usize,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Args, Debug)]
pub struct IllustrateArgs {
    /// A `videobert pretrain` run directory (its codebook.safetensors finds the clips).
    #[arg(long)]
    pub model: PathBuf,
    /// The sentence to illustrate.
    #[arg(long)]
    pub text: String,
    /// Visual words to generate.
    #[arg(long, default_value_t = 4, value_parser = super::at_least_one())]
    pub words: usize,
    /// Rounds of iterative masked prediction; 1 is the paper's one-shot form (every position's
    /// most likely word given the sentence, at once).
    #[arg(long, default_value_t = 4, value_parser = super::at_least_one())]
    pub iterations: usize,
    /// Clip features of the videos to draw clips from (`tessera video features`).
    #[arg(long)]
    pub features: PathBuf,
    /// Those videos: a directory holding <video>.mp4, or a video corpus (its videos/).
    #[arg(long)]
    pub videos: PathBuf,
    /// PNG to write.
    #[arg(long)]
    pub output: PathBuf,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// `infer` or `train`.
    #[arg(long, default_value = "train")]
    pub mode: String,
    /// Sizes of all-MiniLM-L6-v2 (the text BERT used here) by default.
    #[arg(long, default_value_t = 384, value_parser = super::at_least_one())]
    pub hidden: usize,
    #[arg(long, default_value_t = 6, value_parser = super::at_least_one())]
    pub layers: usize,
    #[arg(long, default_value_t = 12, value_parser = super::at_least_one())]
    pub heads: usize,
    #[arg(long, default_value_t = 30522, value_parser = super::at_least_one())]
    pub text_vocab: usize,
    #[arg(long, default_value_t = 144, value_parser = super::at_least_one())]
    pub visual_words: usize,
    #[arg(long, default_value_t = 32, value_parser = super::at_least_one())]
    pub batch: usize,
    /// Text tokens per sequence (without [CLS]).
    #[arg(long, default_value_t = 24, value_parser = super::at_least_one())]
    pub text_len: usize,
    /// Visual words per sequence (without [>]).
    #[arg(long, default_value_t = 16, value_parser = super::at_least_one())]
    pub words: usize,
    /// Timed repetitions (the median is reported) after one untimed warm-up.
    #[arg(long, default_value_t = 5, value_parser = super::at_least_one())]
    pub repeats: usize,
    #[command(flatten)]
    pub common: Common,
}

#[derive(ValueEnum, Debug, Clone, Copy)]
pub enum InitArg {
    Centroids,
    CentredCentroids,
    Random,
}

#[derive(Args, Debug)]
pub struct PretrainArgs {
    /// Videos as visual words with narration (`tessera video tokenize` JSONL).
    #[arg(long)]
    pub words: PathBuf,
    /// The codebook the words come from (`tessera video codebook`).
    #[arg(long)]
    pub codebook: PathBuf,
    /// Hugging Face BERT directory for the text side (a bare name is looked up under data/).
    #[arg(long, default_value = "minilm")]
    pub bert: String,
    /// How the visual-word embeddings start: the codebook's centroids through a projection, the
    /// same with the centroids' mean removed first, or randomly.
    #[arg(long, value_enum, default_value = "centroids")]
    pub init: InitArg,
    /// Videos held out (from the end of the file) for the validation accuracies.
    #[arg(long)]
    pub valid_videos: Option<usize>,
    #[arg(long)]
    pub run_dir: PathBuf,
    #[command(flatten)]
    pub run: super::TrainFlags,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Args, Debug)]
pub struct ZeroShotArgs {
    /// A `videobert pretrain` run directory (or a model directory with its tokenizer).
    #[arg(long)]
    pub model: PathBuf,
    /// The videos as visual words (`tessera video tokenize` JSONL, from the model's codebook).
    #[arg(long)]
    pub words: PathBuf,
    /// Labelled segments: a generated video corpus (`tessera data videos`; its steps) or a TSV
    /// video, start, end, verb, object.
    #[arg(long)]
    pub segments: PathBuf,
    /// Verb labels, a line each: `name` or `name<TAB>words` (the words may hold {object}).
    /// Default for a generated corpus: its verbs as its narration says them.
    #[arg(long)]
    pub verbs: Option<PathBuf>,
    /// Object labels, a line each: `name` or `name<TAB>words`.
    #[arg(long)]
    pub objects: Option<PathBuf>,
    /// The template, with {verb} and {object} [default: the paper's "now let me show you how
    /// to {verb} the {object}"; for a generated corpus without label files "now let me show
    /// you how to {verb}", its verbs holding the object].
    #[arg(long)]
    pub template: Option<String>,
    /// Sequences per forward pass.
    #[arg(long, default_value_t = 64, value_parser = super::at_least_one())]
    pub batch_size: usize,
    /// Per segment its true labels and top-5 predictions (JSONL).
    #[arg(long)]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub common: Common,
}

pub fn run(cmd: Command) -> Result<()> {
    match cmd {
        Command::Pretrain(a) => cmd_pretrain(a),
        Command::ZeroShot(a) => cmd_zero_shot(a),
        Command::Bench(a) => cmd_bench(a),
        Command::Predict(a) => cmd_predict(a),
        Command::Illustrate(a) => cmd_illustrate(a),
        Command::Features(a) => cmd_features(a),
        Command::CaptionTrain(a) => cmd_caption_train(a),
        Command::Caption(a) => cmd_caption(a),
    }
}

/// The annotated videos of `captions` (a YouCook2 JSON or a directory holding youcook2.json)
/// and the clip features of `features`; with `allow_missing` only the videos that have
/// features, else every one must.
fn caption_sources(
    captions: &std::path::Path,
    features: &[PathBuf],
    npy_rate: Option<f64>,
    allow_missing: bool,
) -> Result<(
    Vec<tessera::corpora::narration::AnnotatedVideo>,
    Vec<tessera::video::features::ClipFeatures>,
)> {
    use tessera::corpora::narration::read_youcook2;
    super::video::npy_rate_ok(npy_rate)?;
    let json = if captions.is_dir() {
        captions.join("youcook2.json")
    } else {
        captions.to_path_buf()
    };
    let mut videos = read_youcook2(&json)?;
    let mut sets = Vec::with_capacity(features.len());
    for dir in features {
        sets.push(tessera::video::features::read_feature_dir(dir, npy_rate)?);
    }
    let names: Vec<String> = features.iter().map(|p| p.display().to_string()).collect();
    let feats = tessera::video::features::concat_features(sets, &names)?;
    if allow_missing {
        let have: std::collections::HashSet<&str> =
            feats.iter().map(|f| f.video.as_str()).collect();
        videos.retain(|v| have.contains(v.id.as_str()));
    }
    if videos.iter().all(|v| v.segments.is_empty()) {
        bail!(
            "{}: no annotated segments{}",
            json.display(),
            if allow_missing {
                format!(
                    " among the videos with features in {}",
                    features_name(features).display()
                )
            } else {
                String::new()
            }
        );
    }
    Ok((videos, feats))
}

/// The feature directories as one name for messages.
fn features_name(dirs: &[PathBuf]) -> PathBuf {
    PathBuf::from(
        dirs.iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(" + "),
    )
}

fn cmd_caption_train(a: CaptionTrainArgs) -> Result<()> {
    use tessera::videobert::caption::{
        examples, train_captioner, Captioner, CaptionerConfig, WordVocab,
    };
    set_threads(a.common.threads);
    let device = device_from_name(&a.common.device)?;
    let mut tc = super::vl::finetune_config(&a.run)?;
    tc.blind |= a.blind;
    let (videos, feats) = caption_sources(&a.captions, &a.features, a.npy_rate, a.allow_missing)?;
    let vocab = WordVocab::build(
        videos
            .iter()
            .flat_map(|v| v.segments.iter().map(|s| s.text.as_str())),
        a.min_count,
    );
    let mut cfg = CaptionerConfig::new(feats.first().map_or(0, |f| f.dim), vocab.len());
    cfg.hidden = a.hidden;
    cfg.heads = a.heads;
    cfg.intermediate = 4 * a.hidden;
    cfg.encoder_layers = a.layers;
    cfg.decoder_layers = a.layers;
    cfg.max_clips = a.max_clips;
    cfg.max_words = a.max_words;
    cfg.blind = tc.blind;
    cfg.validate()?;
    let train = examples(&videos, &feats, &vocab, &cfg, &features_name(&a.features))?;
    let valid = match &a.valid_captions {
        Some(c) if !a.valid_features.is_empty() => {
            let (v, fs) = caption_sources(c, &a.valid_features, a.npy_rate, a.allow_missing)?;
            examples(&v, &fs, &vocab, &cfg, &features_name(&a.valid_features))?
        }
        Some(_) => bail!("--valid-captions needs --valid-features"),
        None => vec![],
    };
    eprintln!(
        "captioning {} segments of {} videos ({} held out); {} words, features of {} values{}",
        train.len(),
        videos.len(),
        valid.len(),
        vocab.len() - 4,
        cfg.feature_size,
        if cfg.blind {
            ", features zeroed (--blind)"
        } else {
            ""
        }
    );
    device.seed(tc.seed);
    let model = Captioner::new(&cfg, &device);
    let run = RunDir::create(&a.run_dir)?;
    super::vl::run_training(&a.run, &a.common, |opts| {
        train_captioner(
            model, &cfg, &vocab, &train, &valid, &tc, &run, &device, opts,
        )
    })
}

fn cmd_caption(a: CaptionArgs) -> Result<()> {
    use tessera::videobert::caption::{caption, examples, load_model_dir, score, Decoding};
    set_threads(a.common.threads);
    tessera::core::validate::non_negative("--length-penalty", a.length_penalty)?;
    let device = device_from_name(&a.common.device)?;
    let (model, cfg, vocab) = load_model_dir(&a.model, &device)?;
    let (videos, feats) = caption_sources(&a.captions, &a.features, a.npy_rate, a.allow_missing)?;
    let ex = examples(&videos, &feats, &vocab, &cfg, &features_name(&a.features))?;
    let d = Decoding {
        beam: a.beam,
        length_penalty: a.length_penalty,
        max_words: cfg.max_words,
    };
    let pb = tessera::core::progress::bar(ex.len() as u64, "caption", a.common.json);
    let caps = caption(
        &model,
        &vocab,
        &ex,
        cfg.blind,
        &d,
        a.batch_size,
        &device,
        &|n| pb.inc(n as u64),
    );
    pb.finish_and_clear();
    let s = score(&ex, &caps);
    let meteor_dir = a
        .meteor
        .clone()
        .unwrap_or_else(|| PathBuf::from("data/meteor"));
    let meteor = if a.meteor.is_some() || meteor_dir.join("meteor-1.5.jar").is_file() {
        // Loading METEOR's paraphrase table takes seconds: a bar that shows the time.
        let pb = tessera::core::progress::bar(1, "METEOR", a.common.json);
        pb.enable_steady_tick(std::time::Duration::from_millis(200));
        let m = tessera::videobert::caption::meteor(&meteor_dir, &ex, &caps)?;
        pb.finish_and_clear();
        Some(m)
    } else {
        None
    };
    if let Some(out) = &a.output {
        let mut text = String::new();
        for (e, c) in ex.iter().zip(&caps) {
            text.push_str(&serde_json::to_string(&serde_json::json!({
                "video": e.video, "start": e.start, "end": e.end,
                "reference": e.reference, "caption": c,
            }))?);
            text.push('\n');
        }
        tessera::core::run::write_atomic(out, text.as_bytes())?;
    }
    let rows = [
        ("BLEU-1", s.bleu[0]),
        ("BLEU-2", s.bleu[1]),
        ("BLEU-3", s.bleu[2]),
        ("BLEU-4", s.bleu[3]),
        ("ROUGE-L", s.rouge_l),
        ("CIDEr", s.cider),
    ];
    if a.common.json {
        let mut m = serde_json::Map::new();
        m.insert("segments".into(), ex.len().into());
        m.insert("beam".into(), a.beam.into());
        for (k, v) in rows {
            m.insert(k.into(), v.into());
        }
        if let Some(v) = meteor {
            m.insert("METEOR".into(), v.into());
        }
        println!("{}", serde_json::Value::Object(m));
    } else {
        println!(
            "{} segments of {} videos, {}",
            ex.len(),
            videos.len(),
            if a.beam > 1 {
                format!("beam {}", a.beam)
            } else {
                "greedy".to_string()
            }
        );
        for (k, v) in rows {
            println!("{k:<8} {v:.4}");
        }
        match meteor {
            Some(v) => println!("METEOR   {v:.4}"),
            None => println!(
                "METEOR   left out: no METEOR resources in {} (`bash scripts/fetch-data.sh meteor`, or --meteor DIR)",
                meteor_dir.display()
            ),
        }
    }
    Ok(())
}

fn cmd_features(a: VbFeaturesArgs) -> Result<()> {
    use tessera::video::features::{write_features_with, ClipFeatures};
    set_threads(a.common.threads);
    let device = device_from_name(&a.common.device)?;
    let (cfg, model, _, specials) = load_model(&a.model, &device)?;
    let videos = read_words(&a.words, &cfg)?;
    let room = cfg.bert.max_position_embeddings.saturating_sub(3);
    let window = a.window.unwrap_or(48.min(room));
    if window == 0 || window > room {
        bail!(
            "--window {window}: with [CLS], [>] and [SEP] it passes the model's {} positions",
            cfg.bert.max_position_embeddings
        );
    }
    std::fs::create_dir_all(&a.output)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", a.output.display()))?;
    let bar = tessera::core::progress::bar(videos.len() as u64, "videos", a.common.json);
    let mut clips = 0;
    for v in &videos {
        let features = tessera::videobert::eval::video_features(
            &model,
            &v.words,
            window,
            specials,
            cfg.layout(),
            &device,
        );
        clips += v.words.len();
        let f = ClipFeatures {
            video: v.video.clone(),
            dim: cfg.bert.hidden_size,
            features,
            times: v.times.iter().map(|t| [t[0] as f32, t[1] as f32]).collect(),
            duration: v.duration,
        };
        write_features_with(
            &a.output,
            &f,
            &[
                ("backbone", format!("videobert:{}", a.model.display())),
                ("window", window.to_string()),
            ],
        )?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    eprintln!(
        "wrote VideoBERT features ({} values) of {clips} clips of {} videos to {}",
        cfg.bert.hidden_size,
        videos.len(),
        a.output.display()
    );
    Ok(())
}

fn cmd_predict(a: PredictArgs) -> Result<()> {
    set_threads(a.common.threads);
    let device = device_from_name(&a.common.device)?;
    let (cfg, model, _, specials) = load_model(&a.model, &device)?;
    let videos = read_words(&a.words, &cfg)?;
    if a.prefix.saturating_add(4) > cfg.bert.max_position_embeddings {
        bail!(
            "--prefix {}: with [CLS], [>], [MASK] and [SEP] it passes the model's {} positions",
            a.prefix,
            cfg.bert.max_position_embeddings
        );
    }
    let r = tessera::videobert::generate::future_prediction(
        &model,
        &videos,
        a.prefix,
        a.batch_size,
        specials,
        cfg.layout(),
        &device,
    )?;
    if a.common.json {
        println!("{}", serde_json::to_string(&r)?);
        return Ok(());
    }
    println!(
        "{} next-word predictions after {} visual words ({} words)",
        r.predictions, a.prefix, cfg.visual_words
    );
    println!("{:<26} {:>7} {:>7}", "", "top-1", "top-5");
    println!("{:<26} {:>7.4} {:>7.4}", "VideoBERT", r.top1, r.top5);
    println!(
        "{:<26} {:>7.4} {:>7}",
        "the last word again", r.repeat_last_top1, "-"
    );
    println!(
        "{:<26} {:>7.4} {:>7.4}",
        "most frequent words", r.unigram_top1, r.unigram_top5
    );
    println!(
        "{:<26} {:>7.4} {:>7.4}",
        "chance",
        r.chance_top1,
        5.0 * r.chance_top1
    );
    Ok(())
}

fn cmd_illustrate(a: IllustrateArgs) -> Result<()> {
    use tessera::core::draw::{draw_boxes, write_png};
    set_threads(a.common.threads);
    // Each round is a forward pass; more rounds than this only repeat the last ones.
    tessera::core::validate::int_in("--iterations", a.iterations, 1, 100)?;

    let device = device_from_name(&a.common.device)?;
    let (cfg, model, tok, specials) = load_model(&a.model, &device)?;
    let book_path = a.model.join("codebook.safetensors");
    let codebook = tessera::video::words::load_codebook(&book_path)?;
    if codebook.words() != cfg.visual_words {
        bail!(
            "{}: {} words, but the model has {} visual words",
            book_path.display(),
            codebook.words(),
            cfg.visual_words
        );
    }
    if a.text.trim().is_empty() {
        bail!("--text is empty");
    }
    let text_ids = tok.encode_plain(&[a.text.as_str()])?.remove(0);
    let words = tessera::videobert::generate::illustrate(
        &model,
        &text_ids,
        a.words,
        a.iterations,
        cfg.bert.max_position_embeddings,
        specials,
        cfg.layout(),
        &device,
    )?;
    let features = tessera::video::features::read_feature_dir(&a.features, None)?;
    let ids: Vec<u32> = words.iter().map(|w| w.0).collect();
    let clips = tessera::videobert::generate::nearest_clips(&features, &codebook, &ids)?;
    let video_dir = if a.videos.join("videos").is_dir() {
        a.videos.join("videos")
    } else {
        a.videos.clone()
    };
    let mut cells = Vec::new();
    for ((word, p), clip) in words.iter().zip(&clips) {
        let mut lines = vec![format!("word {word}  p {p:.2}")];
        let frame = match clip {
            None => {
                lines.push("no clip of this word".into());
                image::RgbImage::from_pixel(128, 128, image::Rgb([230, 230, 230]))
            }
            Some(c) => {
                lines.push(format!("{} {:.1}-{:.1} s", c.video, c.start, c.end));
                let path = video_dir.join(format!("{}.mp4", c.video));
                middle_frame(&path, 0.5 * (c.start + c.end) as f64)?
            }
        };
        let side = frame.width().max(frame.height()).max(1);
        let scale = (128.0 / side as f32).max(1.0).floor().max(1.0);
        let big = image::imageops::resize(
            &frame,
            (frame.width() as f32 * scale) as u32,
            (frame.height() as f32 * scale) as u32,
            image::imageops::FilterType::Nearest,
        );
        cells.push(draw_boxes(&big, &[], &lines)?);
    }
    let (cw, ch) = (
        cells.iter().map(|c| c.width()).max().unwrap_or(1) + 4,
        cells.iter().map(|c| c.height()).max().unwrap_or(1) + 4,
    );
    let title =
        image::RgbImage::from_pixel(cw * cells.len() as u32, 1, image::Rgb([255, 255, 255]));
    let title = draw_boxes(&title, &[], &[format!("\u{201c}{}\u{201d}", a.text)])?;
    let mut sheet = image::RgbImage::from_pixel(
        (cw * cells.len() as u32).max(title.width()),
        ch + title.height(),
        image::Rgb([255, 255, 255]),
    );
    image::imageops::replace(&mut sheet, &title, 0, 0);
    for (k, c) in cells.iter().enumerate() {
        image::imageops::replace(
            &mut sheet,
            c,
            (k as u32 * cw) as i64 + 2,
            title.height() as i64 + 2,
        );
    }
    write_png(&sheet, &a.output)?;
    let found = clips.iter().filter(|c| c.is_some()).count();
    eprintln!(
        "wrote {} ({} visual words, {found} shown by a clip of {} videos)",
        a.output.display(),
        words.len(),
        features.len()
    );
    if a.common.json {
        println!(
            "{}",
            serde_json::json!({"words": words.iter().map(|w| w.0).collect::<Vec<_>>(),
                "probabilities": words.iter().map(|w| w.1).collect::<Vec<_>>(),
                "clips": clips.iter().map(|c| c.as_ref().map(|c| serde_json::json!(
                    {"video": c.video, "start": c.start, "end": c.end}))).collect::<Vec<_>>()})
        );
    }
    Ok(())
}

/// The frame of a video nearest `t` seconds.
fn middle_frame(path: &std::path::Path, t: f64) -> Result<image::RgbImage> {
    let mut reader = tessera::core::video::FrameReader::open(path, Some(10.0), None)?;
    let mut best: Option<(f64, image::RgbImage)> = None;
    let mut i = 0;
    while let Some(frame) = reader.next_frame()? {
        let d = (reader.source_time(i) - t).abs();
        i += 1;
        if best.as_ref().is_none_or(|b| d < b.0) {
            best = Some((d, frame));
        } else {
            break;
        }
    }
    best.map(|b| b.1)
        .ok_or_else(|| anyhow::anyhow!("{}: no frames", path.display()))
}

fn cmd_bench(a: BenchArgs) -> Result<()> {
    use rand::{Rng, SeedableRng};
    use rayon::prelude::*;
    use tessera::core::optim::{Adam, AdamConfig};
    use tessera::core::parallel::{data_parallel_grads, trainable};
    use tessera::text::config::BertConfig;
    use tessera::videobert::data::{Kind, MaskedSequence, Sequence};
    use tessera::videobert::model::{VideoBert, VideoBertConfig};
    use tessera::videobert::train::{pretrain_loss, target_counts};
    set_threads(a.common.threads);
    let device = device_from_name(&a.common.device)?;
    if !a.hidden.is_multiple_of(a.heads) {
        bail!(
            "--hidden {} is not a multiple of --heads {}",
            a.hidden,
            a.heads
        );
    }
    if a.mode != "infer" && a.mode != "train" {
        bail!("unknown --mode `{}` (infer, train)", a.mode);
    }
    if a.text_vocab < 200 {
        bail!(
            "--text-vocab {}: give at least 200 (the specials sit below 104)",
            a.text_vocab
        );
    }
    let len = a.text_len.saturating_add(a.words).saturating_add(3);
    tessera::core::validate::fits_in_memory(
        &format!(
            "--batch {} x (--text-len {} + --words {})",
            a.batch, a.text_len, a.words
        ),
        4.0 * 16.0 * tessera::core::validate::product(&[a.batch, len, a.hidden, a.layers]),
    )?;
    let cfg = VideoBertConfig {
        bert: BertConfig {
            vocab_size: a.text_vocab + 1 + a.visual_words,
            hidden_size: a.hidden,
            num_hidden_layers: a.layers,
            num_attention_heads: a.heads,
            intermediate_size: 4 * a.hidden,
            max_position_embeddings: 512.max(len),
            ..BertConfig::default()
        },
        text_vocab_size: a.text_vocab,
        visual_words: a.visual_words,
    };
    device.seed(0);
    let model = VideoBert::new(&cfg, &device);
    let layout = cfg.layout();
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    // Joint sequences [CLS] text [>] words [SEP], 15% of the text and of the words masked, half
    // of them misaligned.
    let (cls, sep, mask) = (101, 102, 103);
    let seqs: Vec<MaskedSequence> = (0..a.batch)
        .map(|i| {
            let mut ids = vec![cls];
            ids.extend((0..a.text_len).map(|_| rng.random_range(104..a.text_vocab as u32)));
            ids.push(layout.video_start());
            ids.extend(
                (0..a.words).map(|_| layout.word(rng.random_range(0..a.visual_words as u32))),
            );
            ids.push(sep);
            let mut type_ids = vec![0; a.text_len + 1];
            type_ids.resize(ids.len(), 1);
            let mut input = ids.clone();
            let (mut text_targets, mut word_targets) = (vec![], vec![]);
            for p in 1..ids.len() - 1 {
                if p == a.text_len + 1 || rng.random::<f64>() >= 0.15 {
                    continue;
                }
                input[p] = mask;
                if p <= a.text_len {
                    text_targets.push((p, ids[p]));
                } else {
                    word_targets.push((p, ids[p]));
                }
            }
            MaskedSequence {
                seq: Sequence {
                    kind: Kind::Joint,
                    ids,
                    type_ids,
                    aligned: Some(i % 2 == 0),
                },
                input,
                text_targets,
                word_targets,
            }
        })
        .collect();
    let counts = target_counts(&seqs);
    let parts = tessera::core::parallel::row_slices(a.batch);
    let workers = parts.len();
    let mut times = Vec::new();
    match a.mode.as_str() {
        "infer" => {
            for rep in 0..=a.repeats {
                let t0 = std::time::Instant::now();
                parts.par_iter().for_each(|&(lo, hi)| {
                    let batch = tessera::text::model::TokenBatch {
                        batch: hi - lo,
                        len,
                        ids: seqs[lo..hi].iter().flat_map(|s| s.input.clone()).collect(),
                        type_ids: seqs[lo..hi]
                            .iter()
                            .flat_map(|s| s.seq.type_ids.clone())
                            .collect(),
                        mask: vec![1; (hi - lo) * len],
                    };
                    let _ = model.forward(&batch, &device).into_data();
                });
                if rep > 0 {
                    times.push(t0.elapsed().as_secs_f64());
                }
            }
        }
        "train" => {
            let ad = device.clone().autodiff();
            let mut model = trainable(model);
            let mut adam = Adam::new(AdamConfig {
                weight_decay: 0.01,
                ..AdamConfig::default()
            });
            for rep in 0..=a.repeats {
                let t0 = std::time::Instant::now();
                let (grads, _) = data_parallel_grads(&model, &parts, workers, |m, _, &(lo, hi)| {
                    pretrain_loss(m, &seqs[lo..hi], &counts, [1.0; 3], 0, &ad)
                });
                model = adam.step(model, grads, 1e-4);
                if rep > 0 {
                    times.push(t0.elapsed().as_secs_f64());
                }
            }
        }
        other => bail!("unknown --mode `{other}` (infer, train)"),
    }
    super::print_bench(
        serde_json::json!({"mode": a.mode, "batch": a.batch, "hidden": a.hidden,
            "layers": a.layers, "text_len": a.text_len, "words": a.words}),
        times,
    );
    Ok(())
}

type Loaded = (
    tessera::videobert::model::VideoBertConfig,
    tessera::videobert::model::VideoBert,
    tessera::text::tokenize::TextTokenizer,
    tessera::videobert::data::Specials,
);

/// A VideoBERT model directory with its tokenizer and special tokens.
fn load_model(dir: &std::path::Path, device: &burn::tensor::Device) -> Result<Loaded> {
    let (cfg, model) = tessera::videobert::model::load(dir, device)?;
    let tok = tessera::text::tokenize::TextTokenizer::for_model(
        dir,
        cfg.bert.max_position_embeddings,
        cfg.text_vocab_size,
    )?;
    let id = |t: &str| {
        tok.token_to_id(t)
            .ok_or_else(|| anyhow::anyhow!("{}: the vocabulary lacks {t}", dir.display()))
    };
    let specials = tessera::videobert::data::Specials {
        cls: id("[CLS]")?,
        sep: id("[SEP]")?,
        mask: id("[MASK]")?,
        pad: tok.pad_id,
    };
    Ok((cfg, model, tok, specials))
}

/// Visual words for a model: every word must be one of the model's.
fn read_words(
    path: &std::path::Path,
    cfg: &tessera::videobert::model::VideoBertConfig,
) -> Result<Vec<tessera::videobert::data::TokenizedVideo>> {
    tessera::videobert::data::read_tokenized(path, cfg.visual_words)
        .map_err(|e| anyhow::anyhow!("{e:#} (the model has {} visual words)", cfg.visual_words))
}

fn cmd_zero_shot(a: ZeroShotArgs) -> Result<()> {
    use tessera::videobert::eval::{
        generated_corpus_labels, read_labels, read_segments, zero_shot, ZeroShotModel,
        ZeroShotSetup, PAPER_TEMPLATE,
    };
    set_threads(a.common.threads);
    let device = device_from_name(&a.common.device)?;
    let segments = read_segments(&a.segments)?;
    let generated = tessera::videobert::eval::generated_corpus_dir(&a.segments).is_some();
    let (template, verbs, objects) = match (&a.verbs, &a.objects) {
        (Some(v), Some(o)) => (PAPER_TEMPLATE.to_string(), read_labels(v)?, read_labels(o)?),
        (None, None) if generated => {
            let (t, v, o) = generated_corpus_labels();
            (t.to_string(), v, o)
        }
        (None, None) => bail!(
            "{}: not a generated corpus; give --verbs and --objects label files",
            a.segments.display()
        ),
        _ => bail!("give both --verbs and --objects, or neither (a generated corpus's labels)"),
    };
    let template = a.template.clone().unwrap_or(template);
    let setup = ZeroShotSetup::new(&template, verbs, objects)?;
    let (cfg, model, tok, specials) = load_model(&a.model, &device)?;
    let videos = read_words(&a.words, &cfg)?;
    let m = ZeroShotModel {
        model: &model,
        tok: &tok,
        layout: cfg.layout(),
        specials,
        max_positions: cfg.bert.max_position_embeddings,
        batch_size: a.batch_size,
        device: &device,
    };
    let video = zero_shot(&m, &setup, &videos, &segments, true)?;
    let prior = zero_shot(&m, &setup, &videos, &segments, false)?;
    if let Some(out) = &a.output {
        let mut text = String::new();
        for (p, q) in video.predictions.iter().zip(&prior.predictions) {
            let mut v = serde_json::to_value(p)?;
            v["prior_verbs"] = serde_json::json!(q.verbs);
            v["prior_objects"] = serde_json::json!(q.objects);
            text.push_str(&serde_json::to_string(&v)?);
            text.push('\n');
        }
        tessera::core::run::write_atomic(out, text.as_bytes())?;
    }
    if a.common.json {
        println!(
            "{}",
            serde_json::json!({"template": template, "video": video, "prior": prior})
        );
        return Ok(());
    }
    println!(
        "{} segments ({} skipped: no visual words), template {template:?}",
        video.segments, video.skipped
    );
    println!(
        "{:<22} {:>8} {:>8} {:>8} {:>8}",
        "", "verb@1", "verb@5", "object@1", "object@5"
    );
    let row = |name: &str,
               v: &tessera::videobert::eval::SlotAccuracy,
               o: &tessera::videobert::eval::SlotAccuracy| {
        println!(
            "{name:<22} {:>8.4} {:>8.4} {:>8.4} {:>8.4}",
            v.top1, v.top5, o.top1, o.top5
        )
    };
    row("VideoBERT (video)", &video.verb, &video.object);
    row("language prior", &prior.verb, &prior.object);
    let chance =
        |s: &tessera::videobert::eval::SlotAccuracy| tessera::videobert::eval::SlotAccuracy {
            top1: s.chance_top1,
            top5: s.chance_top5,
            ..Default::default()
        };
    row("chance", &chance(&video.verb), &chance(&video.object));
    if let (Some(v), Some(o), Some(pv), Some(po)) = (
        &video.vocabulary_verb,
        &video.vocabulary_object,
        &prior.vocabulary_verb,
        &prior.vocabulary_object,
    ) {
        println!("whole vocabulary (a label's first word piece):");
        row("VideoBERT (video)", v, o);
        row("language prior", pv, po);
    }
    Ok(())
}

fn cmd_pretrain(a: PretrainArgs) -> Result<()> {
    set_threads(a.common.threads);
    let device = device_from_name(&a.common.device)?;
    let mut cfg: PretrainConfig = super::config_or_default(a.run.config.as_deref())?;
    set_if_some!(cfg.seed, a.run.seed);
    set_if_some!(cfg.epochs, a.run.epochs);
    set_if_some!(cfg.lr, a.run.lr);
    set_if_some!(cfg.batch_size, a.run.batch_size);
    set_if_some!(cfg.valid_videos, a.valid_videos);
    if a.run.select_metric.is_some() || a.run.patience.is_some() {
        bail!("videobert pretrain keeps the last epoch's model: --select-metric and --patience do not apply");
    }
    cfg.validate()?;
    let codebook = tessera::video::words::load_codebook(&a.codebook)?;
    let videos = tessera::videobert::data::read_tokenized(&a.words, codebook.words())?;
    // A sentence yields a sequence only where its time overlaps a clip: none at all would train
    // on nothing.
    let mut rng = tessera::core::rng::rng_for(cfg.seed, 0, 0);
    let usable = videos
        .iter()
        .enumerate()
        .filter(|(i, v)| !tessera::videobert::data::pairs(v, *i, &cfg.data, &mut rng).is_empty())
        .count();
    if usable == 0 {
        bail!(
            "{}: no video has narration overlapping its visual words (no words, no narration, or \
             narration outside the clips): nothing to train on",
            a.words.display()
        );
    }
    let bert = super::regions::resolve_model_dir(&a.bert)?;
    let init = match a.init {
        InitArg::Centroids => VisualInit::Centroids,
        InitArg::CentredCentroids => VisualInit::CentredCentroids,
        InitArg::Random => VisualInit::Random,
    };
    device.seed(cfg.seed);
    let (model_cfg, model) = from_text_bert(&bert, &codebook, init, cfg.seed, &device)?;
    let max_len = cfg.data.max_text_tokens + cfg.data.max_visual_words + 3;
    if max_len > model_cfg.bert.max_position_embeddings {
        bail!(
            "max_text_tokens {} + max_visual_words {} + 3 specials = {max_len} positions; {} has {}",
            cfg.data.max_text_tokens,
            cfg.data.max_visual_words,
            bert.display(),
            model_cfg.bert.max_position_embeddings
        );
    }
    let tok = tessera::text::tokenize::TextTokenizer::from_dir(
        &bert,
        model_cfg.bert.max_position_embeddings,
    )?;
    let run = RunDir::create(&a.run_dir)?;
    tessera::core::trainer::catch_interrupts();
    let records = pretrain(
        model,
        &model_cfg,
        &tok,
        &codebook,
        &videos,
        &cfg,
        &run,
        &device,
        &a.run.options(&a.common),
    )?;
    if a.common.json {
        let rows = super::vl::records_json(&records);
        println!("{}", serde_json::to_string(&rows)?);
    }
    Ok(())
}
