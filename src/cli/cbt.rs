//! `tessera cbt`: CBT pretraining on clip features beside narration, its features, the linear
//! probe (of any clip features: raw, VideoBERT's, CBT's), retrieval and anticipation.

use super::Common;
use anyhow::{bail, Result};
use clap::{Args, Subcommand, ValueEnum};
use std::path::{Path, PathBuf};
use tessera::cbt::config::PretrainConfig;
use tessera::cbt::data::{narrated_videos, NarratedVideo};
use tessera::cbt::eval::Layers;
use tessera::cbt::model::{load, Cbt, CbtConfig};
use tessera::cbt::train::{pretrain, text_specials};
use tessera::core::device::{device_from_name, set_threads};
use tessera::core::run::RunDir;
use tessera::text::tokenize::TextTokenizer;
use tessera::video::features::{read_feature_dir, ClipFeatures};
use tessera::video::probe::{linear_probe, Examples, ProbeScore, Target};

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Pretrain from a text BERT (frozen, as the paper) on clip features beside narration: the
    /// visual InfoNCE over masked clips and the cross-modal contrastive loss.
    Pretrain(PretrainArgs),
    /// CBT's features of every clip (the visual transformer's outputs), one <video>.safetensors
    /// per video in the layout of `video features` (for `cbt probe` and captioning).
    Features(FeaturesArgs),
    /// Linear probe (logistic regression) of clip features on labelled segments: trained on one
    /// split, top-1/top-5 on another beside the majority class. Any features: `video features`
    /// (raw), `videobert features`, `cbt features`.
    Probe(ProbeArgs),
    /// Text-to-clip retrieval by the cross-modal score: each narration sentence against the
    /// clips of the sentences of its pool; R@1/5/10 and median rank beside chance.
    Retrieve(RetrieveArgs),
    /// Action anticipation: the next step's label from the clips before it (CBT's outputs over
    /// those clips alone, and the raw clip features), each through the linear probe.
    Anticipate(AnticipateArgs),
    /// Time one pretraining step (forward, both losses, backward, AdamW) or inference of a
    /// network of the given size with random weights and features; prints JSON
    /// (bench/cbt_vs_pytorch.sh).
    Bench(BenchArgs),
}

#[derive(Args, Debug)]
pub struct PretrainArgs {
    /// Clip features of the training videos (`tessera video features`: a directory of
    /// <video>.safetensors, or .npy with --npy-rate).
    #[arg(long)]
    pub features: PathBuf,
    /// Their narration: a `video<TAB>start<TAB>end<TAB>text` file, or a corpus directory
    /// holding narration.tsv (`tessera data videos`).
    #[arg(long)]
    pub narration: PathBuf,
    /// Hugging Face BERT directory for the text side (a bare name is looked up under data/).
    #[arg(long, default_value = "minilm")]
    pub bert: String,
    /// Clips a second of .npy feature files (S3D features of 1.5 s clips: 0.6667).
    #[arg(long)]
    pub npy_rate: Option<f64>,
    /// Videos held out (the last by name) for the validation losses and accuracies.
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
pub struct FeaturesArgs {
    /// A `cbt pretrain` run directory.
    #[arg(long)]
    pub model: PathBuf,
    /// Raw clip features of the videos (what the model was trained on).
    #[arg(long)]
    pub features: PathBuf,
    #[arg(long)]
    pub npy_rate: Option<f64>,
    /// Output directory.
    #[arg(long)]
    pub output: PathBuf,
    #[command(flatten)]
    pub layers: LayerArgs,
    #[command(flatten)]
    pub common: Common,
}

/// Which of CBT's hidden states a clip's feature is.
#[derive(Args, Debug)]
pub struct LayerArgs {
    /// Hidden states of the visual transformer that make a clip's feature, concatenated in
    /// this order: 0 is its input (embeddings), k the output of layer k [default: the last
    /// layer's output]. `0,1,2` is the feature-based reading of BERT §5.3 over every state.
    #[arg(long, value_delimiter = ',', allow_negative_numbers = true)]
    pub layers: Vec<usize>,
}

/// How the probe's logistic regression is fitted.
#[derive(Args, Debug)]
pub struct FitArgs {
    /// Gradient steps of the logistic regression.
    #[arg(long, default_value_t = 300, value_parser = super::at_least_one())]
    pub iterations: usize,
    /// Inverse L2 penalty C of the logistic regression; several (comma-separated) are chosen
    /// among on a fifth of the training examples, never the test's.
    #[arg(
        long = "c",
        value_delimiter = ',',
        default_value = "1",
        allow_negative_numbers = true
    )]
    pub c: Vec<f64>,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetArg {
    Verb,
    Object,
    Both,
}

impl TargetArg {
    fn targets(self) -> Vec<Target> {
        match self {
            TargetArg::Verb => vec![Target::Verb],
            TargetArg::Object => vec![Target::Object],
            TargetArg::Both => vec![Target::Verb, Target::Object],
        }
    }
}

#[derive(Args, Debug)]
pub struct ProbeArgs {
    /// Clip features of the videos to train the probe on.
    #[arg(long)]
    pub train_features: PathBuf,
    /// Their labelled segments: a generated video corpus (its steps) or a TSV video, start,
    /// end, verb, object.
    #[arg(long)]
    pub train_segments: PathBuf,
    #[arg(long)]
    pub test_features: PathBuf,
    #[arg(long)]
    pub test_segments: PathBuf,
    #[arg(long, value_enum, default_value = "both")]
    pub target: TargetArg,
    /// A `cbt pretrain` run directory: the features are then the raw clip features it reads,
    /// and a segment's feature is CBT's mean output over the segment's clips read alone (the
    /// action's own video, as the paper's action recognition feeds it) instead of the mean of
    /// the given features.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Segments per forward pass (with --model).
    #[arg(long, default_value_t = 64, value_parser = super::at_least_one())]
    pub batch_size: usize,
    // --layers applies with --model.
    #[command(flatten)]
    pub layers: LayerArgs,
    #[command(flatten)]
    pub fit: FitArgs,
    #[arg(long)]
    pub npy_rate: Option<f64>,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Args, Debug)]
pub struct RetrieveArgs {
    /// A `cbt pretrain` run directory.
    #[arg(long)]
    pub model: PathBuf,
    /// Raw clip features of the test videos.
    #[arg(long)]
    pub features: PathBuf,
    /// Their narration (a TSV or a corpus directory holding narration.tsv).
    #[arg(long)]
    pub narration: PathBuf,
    /// Candidates each text is ranked among (consecutive sentences).
    #[arg(long, default_value_t = 100)]
    pub pool: usize,
    /// Text-clip pairs per cross-modal pass.
    #[arg(long, default_value_t = 1024, value_parser = super::at_least_one())]
    pub pairs_per_pass: usize,
    #[arg(long)]
    pub npy_rate: Option<f64>,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Args, Debug)]
pub struct AnticipateArgs {
    /// A `cbt pretrain` run directory.
    #[arg(long)]
    pub model: PathBuf,
    /// Raw clip features of the training videos and their labelled segments.
    #[arg(long)]
    pub train_features: PathBuf,
    #[arg(long)]
    pub train_segments: PathBuf,
    #[arg(long)]
    pub test_features: PathBuf,
    #[arg(long)]
    pub test_segments: PathBuf,
    /// The label of the next step to anticipate.
    #[arg(long, value_enum, default_value = "verb")]
    pub target: TargetArg,
    #[arg(long, default_value_t = 64, value_parser = super::at_least_one())]
    pub batch_size: usize,
    #[command(flatten)]
    pub fit: FitArgs,
    #[command(flatten)]
    pub layers: LayerArgs,
    #[arg(long)]
    pub npy_rate: Option<f64>,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// `infer` or `train`.
    #[arg(long, default_value = "train")]
    pub mode: String,
    /// The text BERT's sizes (all-MiniLM-L6-v2 by default).
    #[arg(long, default_value_t = 384, value_parser = super::at_least_one())]
    pub hidden: usize,
    #[arg(long, default_value_t = 6, value_parser = super::at_least_one())]
    pub text_layers: usize,
    #[arg(long, default_value_t = 12, value_parser = super::at_least_one())]
    pub heads: usize,
    #[arg(long, default_value_t = 2, value_parser = super::at_least_one())]
    pub visual_layers: usize,
    #[arg(long, default_value_t = 1, value_parser = super::at_least_one())]
    pub cross_layers: usize,
    #[arg(long, default_value_t = 384, value_parser = super::at_least_one())]
    pub feature_size: usize,
    #[arg(long, default_value_t = 32, value_parser = super::at_least_one())]
    pub batch: usize,
    /// Examples per worker (the negatives of the contrastive losses).
    #[arg(long, default_value_t = 16, value_parser = super::at_least_one())]
    pub micro_batch: usize,
    /// Clips per example.
    #[arg(long, default_value_t = 6, value_parser = super::at_least_one())]
    pub clips: usize,
    /// Text tokens per example (with [CLS] and [SEP]).
    #[arg(long, default_value_t = 20, value_parser = super::at_least_one())]
    pub text_len: usize,
    #[arg(long, default_value_t = 5, value_parser = super::at_least_one())]
    pub repeats: usize,
    #[command(flatten)]
    pub common: Common,
}

pub fn run(cmd: Command) -> Result<()> {
    match cmd {
        Command::Pretrain(a) => cmd_pretrain(a),
        Command::Features(a) => cmd_features(a),
        Command::Probe(a) => cmd_probe(a),
        Command::Retrieve(a) => cmd_retrieve(a),
        Command::Anticipate(a) => cmd_anticipate(a),
        Command::Bench(a) => cmd_bench(a),
    }
}

/// Narration from a TSV or a corpus directory's narration.tsv.
fn read_narration(path: &Path) -> Result<(PathBuf, tessera::corpora::narration::Narration)> {
    let file = if path.is_dir() {
        path.join("narration.tsv")
    } else {
        path.to_path_buf()
    };
    let n = tessera::corpora::narration::read_narration_tsv(&file)?;
    Ok((file, n))
}

fn read_features(path: &Path, npy_rate: Option<f64>) -> Result<Vec<ClipFeatures>> {
    super::video::npy_rate_ok(npy_rate)?;
    read_feature_dir(path, npy_rate)
}

fn narrated(
    features: &Path,
    narration: &Path,
    npy_rate: Option<f64>,
) -> Result<Vec<NarratedVideo>> {
    let feats = read_features(features, npy_rate)?;
    let (file, n) = read_narration(narration)?;
    narrated_videos(feats, &n, &file)
}

/// A CBT model directory and its tokenizer.
fn load_model(
    dir: &Path,
    device: &burn::tensor::Device,
) -> Result<(CbtConfig, Cbt, TextTokenizer)> {
    let (cfg, model) = load(dir, device)?;
    let tok = TextTokenizer::for_model(dir, cfg.text.max_position_embeddings, cfg.text.vocab_size)?;
    Ok((cfg, model, tok))
}

fn check_width(feats: &[ClipFeatures], cfg: &CbtConfig, source: &Path) -> Result<()> {
    if let Some(f) = feats.first() {
        if f.dim != cfg.feature_size {
            bail!(
                "{}: features of {} values; the model reads {} (features of another backbone?)",
                source.display(),
                f.dim,
                cfg.feature_size
            );
        }
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
        bail!("cbt pretrain keeps the last epoch's model: --select-metric and --patience do not apply");
    }
    cfg.validate()?;
    let videos = narrated(&a.features, &a.narration, a.npy_rate)?;
    let bert = super::regions::resolve_model_dir(&a.bert)?;
    device.seed(cfg.seed);
    let dim = videos[0].features.dim;
    let (model_cfg, model) = tessera::cbt::model::from_text_bert(&bert, dim, &cfg.model, &device)?;
    if cfg.max_text_tokens + 2 > model_cfg.text.max_position_embeddings {
        bail!(
            "max_text_tokens {} + [CLS] and [SEP] pass the {} positions of {}",
            cfg.max_text_tokens,
            model_cfg.text.max_position_embeddings,
            bert.display()
        );
    }
    let tok = TextTokenizer::from_dir(&bert, model_cfg.text.max_position_embeddings)?;
    eprintln!(
        "CBT over {} videos ({} held out), features of {dim} values; text {} ({}); visual {} \
         and cross-modal {} layers of {}",
        videos.len(),
        cfg.valid_videos,
        bert.display(),
        if cfg.train_text { "trained" } else { "frozen" },
        model_cfg.visual_layers,
        model_cfg.cross_layers,
        model_cfg.hidden()
    );
    let run = RunDir::create(&a.run_dir)?;
    tessera::core::trainer::catch_interrupts();
    let records = pretrain(
        model,
        &model_cfg,
        &tok,
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

fn cmd_features(a: FeaturesArgs) -> Result<()> {
    use tessera::video::features::write_features_with;
    set_threads(a.common.threads);
    let device = device_from_name(&a.common.device)?;
    let (cfg, model, _) = load_model(&a.model, &device)?;
    let layers = Layers(a.layers.layers.clone());
    layers.check(&cfg)?;
    let feats = read_features(&a.features, a.npy_rate)?;
    check_width(&feats, &cfg, &a.features)?;
    std::fs::create_dir_all(&a.output)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", a.output.display()))?;
    let bar = tessera::core::progress::bar(feats.len() as u64, "videos", a.common.json);
    let mut clips = 0;
    for f in &feats {
        let out = ClipFeatures {
            video: f.video.clone(),
            dim: layers.width(&cfg),
            features: tessera::cbt::eval::video_features(
                &model,
                f,
                cfg.max_clips,
                &layers,
                &device,
            ),
            times: f.times.clone(),
            duration: f.duration,
        };
        if out.features.iter().any(|v| !v.is_finite()) {
            bail!(
                "{}: the features of video {} are not finite: the model's weights are broken (nothing more written)",
                a.model.display(),
                f.video
            );
        }
        clips += f.len();
        write_features_with(
            &a.output,
            &out,
            &[
                ("backbone", format!("cbt:{}", a.model.display())),
                ("window", cfg.max_clips.to_string()),
                ("layers", layers_name(&layers, &cfg)),
            ],
        )?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    eprintln!(
        "wrote CBT features ({} values: {}) of {clips} clips of {} videos to {}",
        layers.width(&cfg),
        layers_name(&layers, &cfg),
        feats.len(),
        a.output.display()
    );
    Ok(())
}

fn print_probe_rows(rows: &[(String, ProbeScore)], json: bool) -> Result<()> {
    if json {
        let v: Vec<serde_json::Value> = rows
            .iter()
            .map(|(name, s)| {
                let mut j = serde_json::to_value(s).unwrap_or_default();
                j["task"] = serde_json::json!(name);
                j
            })
            .collect();
        println!("{}", serde_json::to_string(&v)?);
        return Ok(());
    }
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let r = (|| -> std::io::Result<()> {
        writeln!(
            out,
            "{:<24} {:>7} {:>6} {:>6} {:>7} {:>7} {:>9} {:>9} {:>7} {:>7}",
            "task", "classes", "train", "test", "top1", "top5", "major@1", "major@5", "chance", "C"
        )?;
        for (name, s) in rows {
            writeln!(
                out,
                "{:<24} {:>7} {:>6} {:>6} {:>7.3} {:>7.3} {:>9.3} {:>9.3} {:>7.3} {:>7}",
                name,
                s.classes,
                s.train,
                s.test,
                s.top1,
                s.top5,
                s.majority_top1,
                s.majority_top5,
                1.0 / s.classes as f64,
                s.c
            )?;
        }
        Ok(())
    })();
    match r {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

/// `layers` as written in a features directory: the last layer's index marked "(last)", or the
/// indices joined by commas.
fn layers_name(layers: &Layers, cfg: &CbtConfig) -> String {
    if layers.0.is_empty() {
        format!("{} (last)", cfg.visual_layers)
    } else {
        let v: Vec<String> = layers.0.iter().map(|i| i.to_string()).collect();
        v.join(",")
    }
}

fn segments_for(path: &Path) -> Result<Vec<tessera::video::segments::LabelledSegment>> {
    tessera::video::segments::read_segments(path)
}

/// The probe's examples of one split: each segment's mean given feature, or with a model CBT's
/// mean output over the segment's clips read alone. A split whose segments name no video of
/// the features is refused.
fn probe_examples(
    feats: &[ClipFeatures],
    segs: &[tessera::video::segments::LabelledSegment],
    target: Target,
    names: (&Path, &Path),
    model: Option<(&Cbt, usize, usize, &Layers, &burn::tensor::Device)>,
) -> Result<Examples> {
    let (cases, skipped) = tessera::video::probe::segment_cases(feats, segs, target);
    if cases.is_empty() {
        bail!(
            "no segment of {} has clips in {} (video ids differ?)",
            names.1.display(),
            names.0.display()
        );
    }
    if skipped > 0 {
        eprintln!(
            "{}: {skipped} of {} segments have no clip in {} and are left out",
            names.1.display(),
            segs.len(),
            names.0.display()
        );
    }
    let x = match model {
        Some((m, max_clips, batch, layers, device)) => {
            // A segment longer than the positions is read as its last max_clips clips.
            let spans: Vec<(&ClipFeatures, usize, usize)> = cases
                .iter()
                .map(|c| (c.0, c.1.max(c.2.saturating_sub(max_clips)), c.2))
                .collect();
            tessera::cbt::eval::span_means(m, &spans, batch, layers, device)
        }
        None => cases
            .iter()
            .map(|(f, a, b, _)| tessera::video::probe::mean_row(f, &(*a..*b).collect::<Vec<_>>()))
            .collect(),
    };
    Ok(Examples {
        x,
        labels: cases.into_iter().map(|c| c.3).collect(),
    })
}

fn cmd_probe(a: ProbeArgs) -> Result<()> {
    set_threads(a.common.threads);
    let device = device_from_name(&a.common.device)?;
    let model = match &a.model {
        Some(dir) => Some(load_model(dir, &device)?),
        None => None,
    };
    let train_f = read_features(&a.train_features, a.npy_rate)?;
    let test_f = read_features(&a.test_features, a.npy_rate)?;
    let layers = Layers(a.layers.layers.clone());
    match &model {
        Some((cfg, ..)) => {
            layers.check(cfg)?;
            check_width(&train_f, cfg, &a.train_features)?;
            check_width(&test_f, cfg, &a.test_features)?;
        }
        None if !a.layers.layers.is_empty() => {
            bail!("--layers chooses CBT's hidden states: it needs --model")
        }
        None => {}
    }
    if let (Some(x), Some(y)) = (train_f.first(), test_f.first()) {
        if x.dim != y.dim {
            bail!(
                "{} holds features of {} values, {} of {}: a probe trains and tests on features \
                 of one model",
                a.train_features.display(),
                x.dim,
                a.test_features.display(),
                y.dim
            );
        }
    }
    let train_s = segments_for(&a.train_segments)?;
    let test_s = segments_for(&a.test_segments)?;
    let mut rows = Vec::new();
    for t in a.target.targets() {
        let m = model
            .as_ref()
            .map(|(cfg, net, _)| (net, cfg.max_clips, a.batch_size, &layers, &device));
        let tr = probe_examples(
            &train_f,
            &train_s,
            t,
            (&a.train_features, &a.train_segments),
            m,
        )?;
        let te = probe_examples(&test_f, &test_s, t, (&a.test_features, &a.test_segments), m)?;
        let name = format!("{t:?}").to_lowercase();
        rows.push((name, linear_probe(&tr, &te, a.fit.iterations, &a.fit.c)?));
    }
    print_probe_rows(&rows, a.common.json)
}

fn cmd_retrieve(a: RetrieveArgs) -> Result<()> {
    set_threads(a.common.threads);
    let device = device_from_name(&a.common.device)?;
    if a.pool < 2 {
        bail!("--pool {}: a pool needs at least 2 candidates", a.pool);
    }
    let (cfg, model, tok) = load_model(&a.model, &device)?;
    let videos = narrated(&a.features, &a.narration, a.npy_rate)?;
    check_width(
        &videos
            .iter()
            .map(|v| v.features.clone())
            .take(1)
            .collect::<Vec<_>>(),
        &cfg,
        &a.features,
    )?;
    let sp = text_specials(&tok)?;
    let max_text = cfg.text.max_position_embeddings.saturating_sub(2).min(48);
    let pairs = tessera::cbt::eval::retrieval_pairs(&videos, &tok, sp, cfg.max_clips, max_text)?;
    let bar = tessera::core::progress::bar(pairs.len() as u64, "queries", a.common.json);
    let s = tessera::cbt::eval::retrieve(
        &model,
        &videos,
        &pairs,
        a.pool,
        sp.pad,
        a.pairs_per_pass,
        &device,
        &|n| bar.inc(n as u64),
    )?;
    bar.finish_and_clear();
    if a.common.json {
        println!("{}", serde_json::to_string(&s)?);
    } else {
        println!(
            "text-to-clip retrieval, {} queries in pools of {}\n  R@1 {:.3}  R@5 {:.3}  R@10 {:.3}  median rank {}\n  chance: R@1 {:.3}  R@5 {:.3}  R@10 {:.3}",
            s.queries, s.pool, s.r1, s.r5, s.r10, s.median_rank, s.chance_r1, s.chance_r5, s.chance_r10
        );
    }
    Ok(())
}

fn cmd_anticipate(a: AnticipateArgs) -> Result<()> {
    use tessera::video::probe::{anticipation_cases, mean_row};
    set_threads(a.common.threads);
    let device = device_from_name(&a.common.device)?;
    let (cfg, model, _) = load_model(&a.model, &device)?;
    let layers = Layers(a.layers.layers.clone());
    layers.check(&cfg)?;
    let train_f = read_features(&a.train_features, a.npy_rate)?;
    let test_f = read_features(&a.test_features, a.npy_rate)?;
    check_width(&train_f, &cfg, &a.train_features)?;
    check_width(&test_f, &cfg, &a.test_features)?;
    let train_s = segments_for(&a.train_segments)?;
    let test_s = segments_for(&a.test_segments)?;
    let mut rows = Vec::new();
    for t in a.target.targets() {
        let mut sets: Vec<[Examples; 2]> = Vec::new();
        for (feats, segs, name) in [
            (&train_f, &train_s, &a.train_segments),
            (&test_f, &test_s, &a.test_segments),
        ] {
            let cases = anticipation_cases(feats, segs, t);
            if cases.is_empty() {
                bail!(
                    "{}: no step after a video's first has clips before it in the features",
                    name.display()
                );
            }
            let spans: Vec<(&ClipFeatures, usize, usize)> = cases
                .iter()
                .map(|(f, n, _)| (*f, n.saturating_sub(cfg.max_clips), *n))
                .collect();
            let cbt_x =
                tessera::cbt::eval::span_means(&model, &spans, a.batch_size, &layers, &device);
            let raw_x: Vec<Vec<f64>> = cases
                .iter()
                .map(|(f, n, _)| mean_row(f, &(0..*n).collect::<Vec<_>>()))
                .collect();
            let labels: Vec<String> = cases.iter().map(|c| c.2.clone()).collect();
            sets.push([
                Examples {
                    x: cbt_x,
                    labels: labels.clone(),
                },
                Examples { x: raw_x, labels },
            ]);
        }
        let name = format!("next {t:?}").to_lowercase();
        rows.push((
            format!("{name}, cbt"),
            linear_probe(&sets[0][0], &sets[1][0], a.fit.iterations, &a.fit.c)?,
        ));
        rows.push((
            format!("{name}, raw clips"),
            linear_probe(&sets[0][1], &sets[1][1], a.fit.iterations, &a.fit.c)?,
        ));
    }
    print_probe_rows(&rows, a.common.json)
}

fn cmd_bench(a: BenchArgs) -> Result<()> {
    use rand::{Rng, SeedableRng};
    use rayon::prelude::*;
    use tessera::cbt::data::Example;
    use tessera::cbt::train::{pretrain_loss, score, target_counts};
    use tessera::core::optim::{Adam, AdamConfig};
    use tessera::core::parallel::{data_parallel_grads, trainable};
    use tessera::text::config::BertConfig;
    set_threads(a.common.threads);
    let device = device_from_name(&a.common.device)?;
    if !a.hidden.is_multiple_of(a.heads) {
        bail!(
            "--hidden {} is not a multiple of --heads {}",
            a.hidden,
            a.heads
        );
    }
    if a.micro_batch < 2 || a.batch < 2 {
        bail!("--batch and --micro-batch must be at least 2: the contrastive negatives are the micro-batch's other examples");
    }
    if a.text_len < 3 {
        bail!(
            "--text-len {}: give at least 3 ([CLS], a token, [SEP])",
            a.text_len
        );
    }
    tessera::core::validate::fits_in_memory(
        &format!(
            "--micro-batch {} squared x (--clips {} + --text-len {})",
            a.micro_batch, a.clips, a.text_len
        ),
        4.0 * 16.0
            * tessera::core::validate::product(&[
                a.micro_batch,
                a.micro_batch,
                a.clips + a.text_len,
                a.hidden,
            ]),
    )?;
    let text = BertConfig {
        hidden_size: a.hidden,
        num_hidden_layers: a.text_layers,
        num_attention_heads: a.heads,
        intermediate_size: 4 * a.hidden,
        max_position_embeddings: 512.max(a.text_len),
        ..BertConfig::default()
    };
    let mut cfg = CbtConfig::new(a.feature_size, text);
    cfg.visual_layers = a.visual_layers;
    cfg.cross_layers = a.cross_layers;
    cfg.max_clips = a.clips;
    cfg.validate()?;
    device.seed(0);
    let model = Cbt::new(&cfg, &device);
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    // One video per example, `clips` random features each; 15% of the clips masked (at least one).
    let videos: Vec<NarratedVideo> = (0..a.batch)
        .map(|i| {
            let features: Vec<f32> = (0..a.clips * a.feature_size)
                .map(|_| rng.random::<f32>() * 2.0 - 1.0)
                .collect();
            let f = ClipFeatures {
                video: format!("{i}"),
                dim: a.feature_size,
                features,
                times: (0..a.clips).map(|t| [t as f32, t as f32 + 1.0]).collect(),
                duration: a.clips as f64,
            };
            NarratedVideo {
                times: tessera::video::probe::times64(&f),
                features: f,
                narration: vec![],
            }
        })
        .collect();
    let examples: Vec<Example> = (0..a.batch)
        .map(|i| {
            let mut text = vec![101];
            text.extend((0..a.text_len - 2).map(|_| rng.random_range(1000..30000u32)));
            text.push(102);
            Example {
                video: i,
                clips: (0..a.clips).collect(),
                masked: tessera::cbt::data::choose_masked(a.clips, 0.15, &mut rng),
                text,
                text_targets: vec![],
            }
        })
        .collect();
    let pc = PretrainConfig {
        micro_batch: a.micro_batch,
        batch_size: a.batch,
        ..PretrainConfig::default()
    };
    let counts = target_counts(&examples, &pc);
    let parts: Vec<(usize, usize)> = (0..a.batch)
        .step_by(a.micro_batch)
        .map(|lo| (lo, (lo + a.micro_batch).min(a.batch)))
        .collect();
    let workers = parts.len();
    let mut times = Vec::new();
    match a.mode.as_str() {
        "infer" => {
            for rep in 0..=a.repeats {
                let t0 = std::time::Instant::now();
                parts.par_iter().for_each(|&(lo, hi)| {
                    let s = score(&model, &videos, &examples[lo..hi], &pc, 0, &device);
                    if let Some((x, _)) = s.cross {
                        let _ = x.into_data();
                    }
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
                    pretrain_loss(m, &videos, &examples[lo..hi], &counts, &pc, 0, &ad)
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
        serde_json::json!({"mode": a.mode, "batch": a.batch, "micro_batch": a.micro_batch,
            "hidden": a.hidden, "text_layers": a.text_layers, "visual_layers": a.visual_layers,
            "cross_layers": a.cross_layers, "clips": a.clips, "text_len": a.text_len}),
        times,
    );
    Ok(())
}
