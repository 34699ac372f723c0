//! `tessera bert4rec train|eval|recommend`.

use super::Common;
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use std::io::Write;
use std::path::{Path, PathBuf};
use tessera::bert4rec::config::{Bert4RecConfig, LossKind};
use tessera::bert4rec::data::{read_interactions, resolve_data_file, SequenceData};
use tessera::bert4rec::eval::{
    evaluate, evaluate_popularity, evaluate_sampled, recommend, score_histories, split_cases,
    EvalResult, Split,
};
use tessera::bert4rec::train::{load_model, train, RunOptions, CONFIG};
use tessera::core::device::{device_from_name, set_threads};
use tessera::core::run::RunDir;

const DATA_REF: &str = "data_path.txt";

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Train on an interaction file, early-stopping on validation NDCG@10, then report the test
    /// metrics next to the most-popular baseline.
    Train(TrainArgs),
    /// Evaluate a trained run (leave-one-out; full ranking unless --sampled).
    Eval(EvalArgs),
    /// Top-k recommendations for one user (--user) or a file of user ids (--users, JSONL out).
    Recommend(RecommendArgs),
}

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Interaction data: a file (RecBole .inter, ratings.dat, ratings.csv, user,item,timestamp
    /// CSV) or a directory holding exactly one. Optional with --resume.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Directory for the resolved config, metrics.jsonl and checkpoints.
    #[arg(long)]
    pub run_dir: PathBuf,
    /// TOML config; flags below override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Random seed [config: seed, default 0].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Continue from the run directory's checkpoint.
    #[arg(long)]
    pub resume: bool,
    /// Stop after this many epochs in total, leaving a resumable checkpoint.
    #[arg(long)]
    pub stop_after_epochs: Option<usize>,
    /// Maximum epochs [train.max_epochs: 400].
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Early-stopping patience in epochs [train.patience: 20].
    #[arg(long)]
    pub patience: Option<usize>,
    /// Peak learning rate [train.lr: 1e-4].
    #[arg(long, allow_negative_numbers = true)]
    pub lr: Option<f64>,
    /// Warm-up steps [train.warmup_steps: 100].
    #[arg(long)]
    pub warmup_steps: Option<u64>,
    /// Batch size [train.batch_size: 256].
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Mask proportion p [train.mask_prob: 0.2].
    #[arg(long, allow_negative_numbers = true)]
    pub mask_prob: Option<f64>,
    /// Loss: full softmax or sampled softmax [train.loss: full].
    #[arg(long, value_enum)]
    pub loss: Option<LossArg>,
    /// Negatives for --loss sampled [train.sampled_negatives: 1000].
    #[arg(long)]
    pub sampled_negatives: Option<usize>,
    /// Maximum sequence length N [model.max_len: 200].
    #[arg(long)]
    pub max_len: Option<usize>,
    /// Hidden size d [model.hidden: 64]; the feed-forward width follows as 4 d.
    #[arg(long)]
    pub hidden: Option<usize>,
    /// Transformer layers L [model.layers: 2].
    #[arg(long)]
    pub layers: Option<usize>,
    /// Attention heads [model.heads: 2].
    #[arg(long)]
    pub heads: Option<usize>,
    /// Dropout on hidden states and attention [model.*_dropout: 0.2].
    #[arg(long, allow_negative_numbers = true)]
    pub dropout: Option<f64>,
    /// Drop users with fewer interactions [data.min_user_count: 5].
    #[arg(long)]
    pub min_user_count: Option<usize>,
    #[command(flatten)]
    pub common: Common,
}

#[derive(ValueEnum, Debug, Clone, Copy)]
pub enum LossArg {
    Full,
    Sampled,
}

#[derive(ValueEnum, Debug, Clone, Copy)]
pub enum SplitArg {
    Valid,
    Test,
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    #[arg(long)]
    pub run_dir: PathBuf,
    /// Which leave-one-out target to rank.
    #[arg(long, value_enum, default_value = "test")]
    pub split: SplitArg,
    /// Keep items from the user's history in the ranking (they are removed by default).
    #[arg(long)]
    pub keep_seen: bool,
    /// The paper's sampled protocol: rank against N negatives drawn by popularity (N = 100 in
    /// the paper). Labelled `sampled` in the output.
    #[arg(long, num_args = 0..=1, default_missing_value = "100", value_parser = super::at_least_one())]
    pub sampled: Option<usize>,
    /// Data file, if it moved since training.
    #[arg(long)]
    pub data: Option<PathBuf>,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Args, Debug)]
pub struct RecommendArgs {
    #[arg(long)]
    pub run_dir: PathBuf,
    /// A user id as spelled in the data file.
    #[arg(long, conflicts_with = "users")]
    pub user: Option<String>,
    /// A file of user ids, one per line; writes one JSON object per line.
    #[arg(long)]
    pub users: Option<PathBuf>,
    /// Where to write the JSONL of --users [default: stdout].
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// How many items.
    #[arg(long, default_value_t = 10, value_parser = super::at_least_one())]
    pub k: usize,
    /// Allow items the user already interacted with.
    #[arg(long)]
    pub keep_seen: bool,
    /// Data file, if it moved since training.
    #[arg(long)]
    pub data: Option<PathBuf>,
    #[command(flatten)]
    pub common: Common,
}

pub fn run(cmd: Command) -> Result<()> {
    match cmd {
        Command::Train(a) => cmd_train(a),
        Command::Eval(a) => cmd_eval(a),
        Command::Recommend(a) => cmd_recommend(a),
    }
}

fn resolve_config(a: &TrainArgs) -> Result<Bert4RecConfig> {
    let checkpoint = a.run_dir.join(tessera::core::trainer::CHECKPOINT);
    if a.resume && !checkpoint.exists() {
        bail!(
            "cannot resume: {} does not exist (train without --resume first)",
            checkpoint.display()
        );
    }
    let mut cfg = match (&a.config, a.resume) {
        (Some(p), _) => Bert4RecConfig::from_toml_file(p)?,
        (None, true) => Bert4RecConfig::from_toml_file(&a.run_dir.join(CONFIG))?,
        (None, false) => Bert4RecConfig::default(),
    };
    let t = &mut cfg.train;
    let m = &mut cfg.model;
    if let Some(v) = a.seed {
        cfg.seed = v;
    }
    set_if_some!(t.max_epochs, a.epochs);
    set_if_some!(t.patience, a.patience);
    set_if_some!(t.lr, a.lr);
    set_if_some!(t.warmup_steps, a.warmup_steps);
    set_if_some!(t.batch_size, a.batch_size);
    set_if_some!(t.mask_prob, a.mask_prob);
    set_if_some!(t.sampled_negatives, a.sampled_negatives);
    set_if_some!(m.max_len, a.max_len);
    set_if_some!(m.layers, a.layers);
    set_if_some!(m.heads, a.heads);
    set_if_some!(cfg.data.min_user_count, a.min_user_count);
    if let Some(l) = a.loss {
        t.loss = match l {
            LossArg::Full => LossKind::Full,
            LossArg::Sampled => LossKind::Sampled,
        };
    }
    if let Some(h) = a.hidden {
        m.hidden = h;
        m.intermediate = 4 * h;
    }
    if let Some(d) = a.dropout {
        m.hidden_dropout = d;
        m.attention_dropout = d;
    }
    cfg.validate()?;
    Ok(cfg)
}

fn load_data(path: &Path, cfg: &Bert4RecConfig) -> Result<SequenceData> {
    let file = resolve_data_file(path)?;
    let inter = read_interactions(&file)?;
    SequenceData::build(&inter, &cfg.data)
}

fn data_for_run(
    run: &RunDir,
    explicit: Option<&Path>,
    cfg: &Bert4RecConfig,
) -> Result<SequenceData> {
    let path = match explicit {
        Some(p) => p.to_path_buf(),
        None => {
            let f = run.file(DATA_REF);
            PathBuf::from(
                std::fs::read_to_string(&f)
                    .with_context(|| format!("{} is missing; pass --data", f.display()))?
                    .trim(),
            )
        }
    };
    load_data(&path, cfg)
}

fn cmd_train(a: TrainArgs) -> Result<()> {
    set_threads(a.common.threads);
    let device = device_from_name(&a.common.device)?;
    let cfg = resolve_config(&a)?;
    let run = RunDir::create(&a.run_dir)?;
    let data_path = match (&a.data, a.resume) {
        (Some(p), _) => p.clone(),
        (None, true) => PathBuf::from(std::fs::read_to_string(run.file(DATA_REF))?.trim()),
        (None, false) => bail!("--data is required (a data file or a directory holding one)"),
    };
    let data = load_data(&data_path, &cfg)?;
    let abs = std::fs::canonicalize(&data_path).unwrap_or(data_path.clone());
    run.write_atomic(DATA_REF, format!("{}\n", abs.display()).as_bytes())?;
    let quiet = a.common.json;
    if !quiet {
        eprintln!(
            "BERT4Rec: {} users, {} items, {} interactions from {}; run directory {}",
            data.users.len(),
            data.num_items(),
            data.sequences.iter().map(Vec::len).sum::<usize>(),
            data_path.display(),
            run.path.display()
        );
    }
    let opts = RunOptions {
        resume: a.resume,
        stop_after_epochs: a.stop_after_epochs,
        quiet,
    };
    tessera::core::trainer::catch_interrupts();
    let summary = train(&data, &cfg, &run, &device, &opts)?;
    let model = load_model(&run, &cfg, data.num_items(), &device)?;
    let test = evaluate(
        &model,
        &data,
        &cfg,
        Split::Test,
        cfg.eval.filter_seen,
        &device,
    )?;
    let pop = evaluate_popularity(&data, Split::Test, cfg.eval.filter_seen);
    if a.common.json {
        let out = serde_json::json!({"train": summary, "test": test, "popularity": pop});
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        eprintln!(
            "trained {} epochs in {:.1}s (best epoch {}, valid NDCG@10 {:.4}{})",
            summary.epochs_run,
            summary.seconds,
            summary.best_epoch,
            summary.best_valid_ndcg10,
            if summary.stopped_early {
                ", stopped early"
            } else {
                ""
            }
        );
        print_table(&test, &pop, "test, full ranking", cfg.eval.filter_seen);
    }
    Ok(())
}

fn print_table(model: &EvalResult, pop: &EvalResult, label: &str, filtered: bool) {
    println!(
        "\n{label} over {} users ({})",
        model.users,
        if filtered {
            "seen items removed"
        } else {
            "seen items kept"
        }
    );
    println!(
        "{:<10} {:>10} {:>12} {:>8}",
        "metric", "BERT4Rec", "popularity", "ratio"
    );
    for k in [
        "HR@1", "HR@5", "HR@10", "HR@20", "NDCG@5", "NDCG@10", "NDCG@20", "MRR",
    ] {
        let (m, p) = (model.metrics[k], pop.metrics[k]);
        let ratio = if p > 0.0 {
            format!("{:.2}x", m / p)
        } else {
            "-".into()
        };
        println!("{k:<10} {m:>10.4} {p:>12.4} {ratio:>8}");
    }
}

fn open_run(run_dir: &Path) -> Result<(RunDir, Bert4RecConfig)> {
    let run = RunDir::open(run_dir)?;
    let path = run.file(CONFIG);
    let cfg = Bert4RecConfig::from_toml_file(&path)?;
    cfg.validate()
        .with_context(|| format!("{}", path.display()))?;
    Ok((run, cfg))
}

fn cmd_eval(a: EvalArgs) -> Result<()> {
    set_threads(a.common.threads);
    let device = device_from_name(&a.common.device)?;
    let (run, cfg) = open_run(&a.run_dir)?;
    let data = data_for_run(&run, a.data.as_deref(), &cfg)?;
    let model = load_model(&run, &cfg, data.num_items(), &device)?;
    let split = match a.split {
        SplitArg::Valid => Split::Valid,
        SplitArg::Test => Split::Test,
    };
    let filter = !a.keep_seen;
    let (result, pop, protocol) = match a.sampled {
        None => (
            evaluate(&model, &data, &cfg, split, filter, &device)?,
            evaluate_popularity(&data, split, filter),
            "full".to_string(),
        ),
        Some(n) => {
            let cases = split_cases(&data, split);
            let hist: Vec<&[u32]> = cases.iter().map(|c| c.1.as_slice()).collect();
            let scores = score_histories(&model, &data, &cfg, &hist, &device);
            let pop_scores: Vec<Vec<f32>> =
                vec![tessera::bert4rec::eval::popularity(&data, split); cases.len()];
            (
                evaluate_sampled(&data, split, n, cfg.seed, &scores),
                evaluate_sampled(&data, split, n, cfg.seed, &pop_scores),
                format!("sampled-{n}-popularity"),
            )
        }
    };
    if a.common.json {
        let mut obj = serde_json::to_value(&result)?;
        let m = obj.as_object_mut().expect("object");
        m.insert("split".into(), serde_json::to_value(split)?);
        m.insert("ranking".into(), protocol.clone().into());
        m.insert("sampled".into(), a.sampled.is_some().into());
        m.insert("filter_seen".into(), (filter && a.sampled.is_none()).into());
        m.insert("popularity".into(), serde_json::to_value(&pop)?);
        println!("{}", serde_json::to_string(&obj)?);
    } else {
        let label = format!(
            "{} split, {} ranking",
            match split {
                Split::Valid => "validation",
                Split::Test => "test",
            },
            protocol
        );
        print_table(&result, &pop, &label, filter && a.sampled.is_none());
    }
    Ok(())
}

fn cmd_recommend(a: RecommendArgs) -> Result<()> {
    set_threads(a.common.threads);
    let device = device_from_name(&a.common.device)?;
    let (run, cfg) = open_run(&a.run_dir)?;
    let data = data_for_run(&run, a.data.as_deref(), &cfg)?;
    let model = load_model(&run, &cfg, data.num_items(), &device)?;
    let ids: Vec<String> = match (&a.user, &a.users) {
        (Some(u), None) => vec![u.clone()],
        (None, Some(f)) => std::fs::read_to_string(f)
            .with_context(|| format!("cannot read {}", f.display()))?
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect(),
        _ => bail!("give --user ID or --users FILE"),
    };
    let mut idx = Vec::with_capacity(ids.len());
    for (line, id) in ids.iter().enumerate() {
        match data.user_index(id) {
            Some(u) => idx.push(u),
            None => match &a.users {
                Some(f) => bail!(
                    "{}:{}: unknown user `{id}` (not in the training data)",
                    f.display(),
                    line + 1
                ),
                None => bail!("unknown user `{id}` (not in the training data)"),
            },
        }
    }
    let recs = recommend(&model, &data, &cfg, &idx, a.k, !a.keep_seen, &device);
    let lines: Vec<String> = ids
        .iter()
        .zip(&recs)
        .map(|(u, r)| {
            let items: Vec<serde_json::Value> = r
                .iter()
                .map(|&(i, s)| serde_json::json!({"item": data.items[i as usize - 1], "score": s}))
                .collect();
            serde_json::json!({"user": u, "items": items}).to_string()
        })
        .collect();
    if a.user.is_some() && !a.common.json {
        println!("top {} for user {}:", a.k, ids[0]);
        for (rank, &(i, s)) in recs[0].iter().enumerate() {
            println!("{:>3}. {:<12} {s:.4}", rank + 1, data.items[i as usize - 1]);
        }
        return Ok(());
    }
    match &a.output {
        Some(p) => {
            let mut f = std::fs::File::create(p)
                .with_context(|| format!("cannot write {}", p.display()))?;
            for l in &lines {
                writeln!(f, "{l}")?;
            }
        }
        None => {
            for l in &lines {
                println!("{l}");
            }
        }
    }
    Ok(())
}
