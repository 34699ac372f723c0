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
mod metapath2vec;
mod text;
mod vit;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

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
}

/// Options every command shares.
#[derive(Args, Debug, Clone)]
pub struct Common {
    /// Worker threads for the CPU backend and data work [default: all cores].
    #[arg(long, global = true)]
    pub threads: Option<usize>,
    /// Compute device: cpu (burn flex), wgpu or cuda (when compiled with that feature).
    #[arg(long, default_value = "cpu", global = true)]
    pub device: String,
    /// Print machine-readable JSON on stdout instead of tables (and no progress bars).
    #[arg(long, global = true)]
    pub json: bool,
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
    #[arg(long)]
    pub lr: Option<f64>,
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Continue from the run directory's checkpoint (same data and settings).
    #[arg(long)]
    pub resume: bool,
    /// Stop after this many epochs in total, leaving a resumable checkpoint.
    #[arg(long)]
    pub stop_after_epochs: Option<usize>,
}

pub fn run(cli: Cli) -> Result<()> {
    match cli.model {
        ModelCommand::Bert4rec(cmd) => bert4rec::run(cmd),
        ModelCommand::Metapath2vec(cmd) => metapath2vec::run(cmd),
        ModelCommand::Text(cmd) => text::run(cmd),
        ModelCommand::Vit(cmd) => vit::run(cmd),
    }
}
