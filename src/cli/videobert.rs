//! `tessera videobert pretrain`: VideoBERT's three objectives on videos tokenised into visual
//! words beside their narration (`tessera video tokenize`).

use super::Common;
use anyhow::{bail, Result};
use clap::{Args, Subcommand, ValueEnum};
use std::path::PathBuf;
use tessera::core::device::{device_from_name, set_threads};
use tessera::core::run::RunDir;
use tessera::core::trainer::RunOptions;
use tessera::videobert::model::{from_text_bert, VisualInit};
use tessera::videobert::train::{pretrain, PretrainConfig};

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Pretrain from a text BERT (all-MiniLM-L6-v2 here; BERT-large in the paper) and a
    /// visual-word codebook: masked language modelling, masked frame modelling and
    /// linguistic-visual alignment over joint, text-only and video-only sequences.
    Pretrain(PretrainArgs),
}

#[derive(ValueEnum, Debug, Clone, Copy)]
pub enum InitArg {
    Centroids,
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
    /// How the visual-word embeddings start: the codebook's centroids through a projection, or
    /// randomly.
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

pub fn run(cmd: Command) -> Result<()> {
    match cmd {
        Command::Pretrain(a) => cmd_pretrain(a),
    }
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
        &RunOptions {
            quiet: a.common.json,
            resume: a.run.resume,
            stop_after_epochs: a.run.stop_after_epochs,
        },
    )?;
    if a.common.json {
        let rows: Vec<serde_json::Value> = records
            .iter()
            .map(|r| {
                let mut v = serde_json::json!({"epoch": r.epoch, "loss": r.loss});
                for (k, x) in &r.metrics {
                    v[k] = serde_json::json!(x);
                }
                v
            })
            .collect();
        println!("{}", serde_json::to_string(&rows)?);
    }
    Ok(())
}
