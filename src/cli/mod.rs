//! Command-line interface: `tessera <model> <verb>`.

/// `set_if_some!(config.field, flag)`: a command-line flag, when given, overrides the config.
macro_rules! set_if_some {
    ($field:expr, $value:expr) => {
        if let Some(v) = $value {
            $field = v;
        }
    };
}

mod bert4rec;
mod cbt;
mod data;
mod detect;
mod metapath2vec;
mod regions;
mod text;
mod video;
mod videobert;
mod vilbert;
mod vit;
mod vl;
mod vlbert;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use tessera::core::trainer::{Direction, Selection};

#[derive(Parser, Debug)]
#[command(
    name = "tessera",
    version,
    about = "Representation-learning models in Rust: train, evaluate, embed, recommend.",
    long_about = "Representation-learning models in Rust: train, evaluate, embed, recommend.\n\n\
Every training command takes --config FILE.toml; flags given on the command line override the file, \
and the file overrides the paper's defaults. Runs write the resolved config, JSONL metrics and \
safetensors checkpoints to their --run-dir."
)]
pub struct Cli {
    #[command(subcommand)]
    pub model: ModelCommand,
}

#[derive(Subcommand, Debug)]
pub enum ModelCommand {
    /// BERT4Rec: sequential recommendation with a bidirectional Transformer (Sun et al., 2019).
    #[command(subcommand)]
    Bert4rec(bert4rec::Command),
    /// metapath2vec / metapath2vec++: heterogeneous-graph embeddings (Dong et al., 2017).
    #[command(subcommand)]
    Metapath2vec(metapath2vec::Command),
    /// BERT text encoder with WordPiece (Devlin et al., 2019): embed, fill masks, train.
    #[command(subcommand)]
    Text(text::Command),
    /// ViT image classification and features; DINOv2 backbones (Dosovitskiy et al., 2021).
    #[command(subcommand)]
    Vit(vit::Command),
    /// VL-BERT: single-stream visual-linguistic BERT over region features and text (Su et al.,
    /// 2020): features, pretraining, VQA, grounding.
    #[command(subcommand)]
    Vlbert(vlbert::Command),
    /// ViLBERT: two-stream co-attention transformer over region features and text (Lu et al.,
    /// 2019): features, pretraining, VQA, retrieval.
    #[command(subcommand)]
    Vilbert(vilbert::Command),
    /// Training curves of one or several run directories (loss and a metric per epoch) as a PNG.
    Plot(PlotArgs),
    /// YOLO object detection with a darknet model (YOLOv3-tiny on COCO), as darknet's
    /// `detector test`: boxes, labels, scores; JSON, drawn PNGs, region files.
    Detect(detect::DetectArgs),
    /// Region features for VL-BERT and ViLBERT: boxes (detector, annotations or a grid) and
    /// RoIAlign features of a detector or ViT/DINOv2 backbone, in safetensors, TSV or npz.
    Regions(regions::RegionsArgs),
    /// Standardise a region file's features per dimension with the mean and standard deviation
    /// of a training region file (for backbones whose raw features have a few large dimensions,
    /// such as DINOv2's); boxes and class scores kept.
    RegionsStandardize(regions::StandardizeArgs),
    /// Image–text and video corpora: generated scenes and narrated videos with known answers, a
    /// look at one image or video, easy-VQA and COCO in the annotated-image format.
    #[command(subcommand)]
    Data(data::Command),
    /// Video features and visual words for VideoBERT and CBT: clip features from a ViT/DINOv2
    /// backbone, a hierarchical k-means codebook, videos as visual words beside their narration.
    #[command(subcommand)]
    Video(video::Command),
    /// VideoBERT: one BERT over narration and visual words (Sun et al., 2019): pretraining,
    /// zero-shot actions, future prediction, illustration, features and captioning.
    #[command(subcommand)]
    Videobert(videobert::Command),
    /// CBT: contrastive bidirectional transformer over continuous clip features and narration
    /// (Sun et al., 2019): pretraining, features, linear probe, retrieval, anticipation.
    #[command(subcommand)]
    Cbt(cbt::Command),
}

#[derive(Args, Debug)]
pub struct PlotArgs {
    /// Run directories (each holding a metrics.jsonl).
    #[arg(required = true)]
    pub runs: Vec<PathBuf>,
    /// The metric to plot beside the loss (a column of metrics.jsonl) [default: the first run's
    /// headline metric, e.g. valid_NDCG@10 or test_top1].
    #[arg(long)]
    pub metric: Option<String>,
    /// Where to write the PNG.
    #[arg(long)]
    pub output: PathBuf,
}

fn cmd_plot(a: PlotArgs) -> Result<()> {
    use tessera::core::plot::{headline_metric, plot_runs, read_curves};
    let metric = match &a.metric {
        Some(m) => Some(m.clone()),
        None => headline_metric(&a.runs[0])?,
    };
    let mut curves = Vec::new();
    for dir in &a.runs {
        let c = read_curves(dir, metric.as_deref())?;
        if let Some(m) = &metric {
            if c.metric.is_empty() {
                eprintln!("warning: {} logs no `{m}`", dir.display());
            }
        }
        curves.push(c);
    }
    if let Some(m) = &metric {
        anyhow::ensure!(
            curves.iter().any(|c| !c.metric.is_empty()),
            "no run logs the metric `{m}`"
        );
    }
    plot_runs(&curves, metric.as_deref(), &a.output)?;
    eprintln!(
        "wrote {} ({} run{}, loss and {})",
        a.output.display(),
        curves.len(),
        if curves.len() == 1 { "" } else { "s" },
        metric.as_deref().unwrap_or("no metric")
    );
    Ok(())
}

/// Options every command shares.
#[derive(Args, Debug, Clone)]
pub struct Common {
    /// Worker threads for the CPU backend and data work [default: all cores].
    #[arg(long, global = true, value_parser = parse_threads)]
    pub threads: Option<usize>,
    /// Compute device: cpu (burn flex), wgpu or cuda (when compiled with that feature).
    #[arg(long, default_value = "cpu", global = true)]
    pub device: String,
    /// Print machine-readable JSON on stdout instead of tables (and no progress bars).
    #[arg(long, global = true)]
    pub json: bool,
}

fn parse_threads(s: &str) -> Result<usize, String> {
    let n: usize = s.parse().map_err(|e| format!("{e}"))?;
    tessera::core::validate::threads(n)
        .map(|_| n)
        .map_err(|e| e.to_string())
}

/// A value parser for counts that must be at least 1 (`--k`, `--batch-size`, ...).
fn at_least_one() -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::<usize>::new().range(1..)
}

/// A settings struct from a `--config` TOML file, or its defaults when none is given.
fn config_or_default<T: serde::de::DeserializeOwned + Default>(
    path: Option<&std::path::Path>,
) -> Result<T> {
    Ok(config_and_keys(path)?.0)
}

/// [`config_or_default`], and the top-level table of the file (empty without one), so that a
/// caller can tell the settings the file gave from the defaults.
fn config_and_keys<T: serde::de::DeserializeOwned + Default>(
    path: Option<&std::path::Path>,
) -> Result<(T, toml::Table)> {
    let Some(p) = path else {
        return Ok((T::default(), toml::Table::new()));
    };
    let text =
        std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?;
    // Parsed straight into `T` (not through the table) so that errors keep their line and column.
    let cfg = toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?;
    let table = toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?;
    Ok((cfg, table))
}

/// Flags shared by the trainers whose settings come from a TOML file (`text train`,
/// `vit train`).
#[derive(Args, Debug)]
pub struct TrainFlags {
    /// TOML with training settings (seed, epochs, lr, ...); flags override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[arg(long)]
    pub seed: Option<u64>,
    #[arg(long)]
    pub epochs: Option<usize>,
    #[arg(long, allow_negative_numbers = true)]
    pub lr: Option<f64>,
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Continue from the run directory's checkpoint (same data and settings).
    #[arg(long)]
    pub resume: bool,
    /// Stop after this many epochs in total, leaving a resumable checkpoint.
    #[arg(long)]
    pub stop_after_epochs: Option<usize>,
    /// Keep the model of the best epoch by this metric (a column of metrics.jsonl) instead of
    /// the last epoch's [config: selection.metric].
    #[arg(long)]
    pub select_metric: Option<String>,
    /// Whether larger or smaller values of --select-metric are better [default: max].
    #[arg(long, value_enum)]
    pub select_direction: Option<DirectionArg>,
    /// Stop after this many epochs without a better --select-metric [config: selection.patience].
    #[arg(long)]
    pub patience: Option<usize>,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy)]
pub enum DirectionArg {
    Max,
    Min,
}

impl TrainFlags {
    /// How the run goes: resume, stop early, quiet under `--json`.
    fn options(&self, common: &Common) -> tessera::core::trainer::RunOptions {
        tessera::core::trainer::RunOptions {
            quiet: common.json,
            resume: self.resume,
            stop_after_epochs: self.stop_after_epochs,
        }
    }

    /// The selection of the config file with the flags applied.
    fn selection(&self, from_config: Option<Selection>) -> Result<Option<Selection>> {
        let mut sel = from_config;
        if let Some(metric) = &self.select_metric {
            sel = Some(Selection {
                metric: metric.clone(),
                direction: Direction::Max,
                patience: sel.and_then(|s| s.patience),
            });
        }
        match (&mut sel, self.select_direction, self.patience) {
            (None, Some(_), _) | (None, _, Some(_)) => anyhow::bail!(
                "--select-direction and --patience need a metric to select on (--select-metric)"
            ),
            (Some(s), direction, patience) => {
                if let Some(d) = direction {
                    s.direction = match d {
                        DirectionArg::Max => Direction::Max,
                        DirectionArg::Min => Direction::Min,
                    };
                }
                if patience.is_some() {
                    s.patience = patience;
                }
            }
            (None, None, None) => {}
        }
        Ok(sel)
    }
}

pub fn run(cli: Cli) -> Result<()> {
    match cli.model {
        ModelCommand::Bert4rec(cmd) => bert4rec::run(cmd),
        ModelCommand::Metapath2vec(cmd) => metapath2vec::run(cmd),
        ModelCommand::Text(cmd) => text::run(cmd),
        ModelCommand::Vit(cmd) => vit::run(cmd),
        ModelCommand::Vlbert(cmd) => vlbert::run(cmd),
        ModelCommand::Vilbert(cmd) => vilbert::run(cmd),
        ModelCommand::Plot(a) => cmd_plot(a),
        ModelCommand::Detect(a) => detect::run(a),
        ModelCommand::Regions(a) => regions::run(a),
        ModelCommand::RegionsStandardize(a) => regions::run_standardize(a),
        ModelCommand::Data(cmd) => data::run(cmd),
        ModelCommand::Video(cmd) => video::run(cmd),
        ModelCommand::Videobert(cmd) => videobert::run(cmd),
        ModelCommand::Cbt(cmd) => cbt::run(cmd),
    }
}

/// Print a `bench` subcommand's JSON: its settings (`fields`, an object), the timed runs sorted,
/// their median and the peak memory (the benches' scripts read `seconds` and `peak_rss_mib`).
pub fn print_bench(mut fields: serde_json::Value, mut times: Vec<f64>) {
    times.sort_by(f64::total_cmp);
    fields["seconds_median"] = serde_json::json!(times[times.len() / 2]);
    fields["seconds"] = serde_json::json!(times);
    fields["peak_rss_mib"] = serde_json::json!(tessera::core::resources::peak_rss_mib());
    println!("{fields}");
}
