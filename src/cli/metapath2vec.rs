//! `tessera metapath2vec walk|train|eval|similar`.

use super::Common;
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::time::Instant;
use tessera::core::progress;
use tessera::metapath2vec::config::{Metapath2VecConfig, NegativeType, Variant};
use tessera::metapath2vec::data::{read_graph_with, Graph, SameNames};
use tessera::metapath2vec::eval::{
    classify, cluster_nmi, join, most_similar, read_labels, NamedEmbeddings, TRAIN_FRACTIONS,
};
use tessera::metapath2vec::io;
use tessera::metapath2vec::train::train;
use tessera::metapath2vec::walk::{
    generate, parse_metapath, read_walks, tokens_of, write_walks, MetaPath, WalkConfig, WalkStats,
};

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Generate meta-path-guided random walks and write them in the original tool's format.
    Walk(WalkArgs),
    /// Walk and train embeddings in one go (or train from a walk file with --walks).
    Train(TrainArgs),
    /// Node classification (logistic regression, Macro/Micro-F1 at 5%..90% training data) and
    /// k-means clustering (NMI) against a label file.
    Eval(EvalArgs),
    /// Nearest neighbours of a node by cosine similarity.
    Similar(SimilarArgs),
}

#[derive(Args, Debug, Clone)]
pub struct GraphArgs {
    /// A graph: an AMiner/DBIS directory (id_author.txt, id_conf.txt, paper_author.txt,
    /// paper_conf.txt), a RecBole ml-100k directory (ml-100k.inter/.kg/.link), or a typed edge
    /// list file (`src_type src dst_type dst [weight]`).
    #[arg(long)]
    pub graph: Option<PathBuf>,
    /// Meta-path scheme(s), comma-separated: one letter per type (`APVPA`, `VPAPV`) or type
    /// names joined by `-` (`movie-user-movie`). Walks start at the scheme's first type.
    #[arg(long, value_delimiter = ',')]
    pub metapath: Vec<String>,
    /// Walks per start node [paper: 1000].
    #[arg(long)]
    pub walks_per_node: Option<usize>,
    /// Nodes per walk [paper: 100].
    #[arg(long)]
    pub walk_length: Option<usize>,
    /// Random seed [0].
    #[arg(long)]
    pub seed: Option<u64>,
    /// TOML config (keys of `Metapath2VecConfig`); flags override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// AMiner/DBIS: write nodes that share a name (KDD has two venue ids, WWW five) as one
    /// token, as the authors' walk script does; `false` writes them apart as `name#id`
    /// [config: merge_names = true].
    #[arg(long, value_name = "BOOL")]
    pub merge_names: Option<bool>,
}

#[derive(Args, Debug)]
pub struct WalkArgs {
    #[command(flatten)]
    pub graph: GraphArgs,
    /// Walk file to write.
    #[arg(long)]
    pub output: PathBuf,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Args, Debug)]
pub struct TrainArgs {
    #[command(flatten)]
    pub graph: GraphArgs,
    /// Train from this walk file instead of walking a graph.
    #[arg(long, conflicts_with = "graph")]
    pub walks: Option<PathBuf>,
    /// Also write the generated walks here.
    #[arg(long)]
    pub save_walks: Option<PathBuf>,
    /// plain (metapath2vec) or plusplus (metapath2vec++) [plain].
    #[arg(long, value_enum)]
    pub variant: Option<Variant>,
    /// For plusplus: negatives of the input node's type (the authors' C++ tool, whose output
    /// the paper's similarity tables show) or of the predicted node's type (the paper's
    /// equation 6; needs a smaller --alpha, e.g. 0.001, on DBIS) [input].
    #[arg(long, value_enum)]
    pub negative_type: Option<NegativeType>,
    /// Embedding dimension [128].
    #[arg(long)]
    pub dim: Option<usize>,
    /// Window size k [7].
    #[arg(long)]
    pub window: Option<usize>,
    /// Negative samples [5].
    #[arg(long)]
    pub negatives: Option<usize>,
    /// Passes over the walks [1].
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Starting learning rate [0.025].
    #[arg(long, allow_negative_numbers = true)]
    pub alpha: Option<f64>,
    /// Frequent-node subsampling threshold [1e-3, the authors' tool's default; 0: off].
    #[arg(long, allow_negative_numbers = true)]
    pub sample: Option<f64>,
    /// Drop nodes occurring fewer times in the walks [5, the authors' tool's default].
    #[arg(long)]
    pub min_count: Option<u64>,
    /// Draw each position's window from 1..=k as word2vec does (the authors' tool uses the
    /// full window) [config: window_shrink = false].
    #[arg(long)]
    pub window_shrink: bool,
    /// Output: `.txt` for word2vec text format, anything else for safetensors.
    #[arg(long)]
    pub output: PathBuf,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Embeddings (word2vec .txt or safetensors).
    #[arg(long)]
    pub embeddings: PathBuf,
    /// Labels: `name label` lines, or a RecBole .item file (MovieLens genres; the first genre
    /// listed is the label).
    #[arg(long)]
    pub labels: PathBuf,
    /// Random splits per training fraction.
    #[arg(long, default_value_t = 10, value_parser = super::at_least_one())]
    pub repeats: usize,
    /// k-means runs for NMI.
    #[arg(long, default_value_t = 10, value_parser = super::at_least_one())]
    pub runs: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Args, Debug)]
pub struct SimilarArgs {
    #[arg(long)]
    pub embeddings: PathBuf,
    /// Node name as in the embeddings file (e.g. `vKDD`).
    #[arg(long)]
    pub node: String,
    #[arg(long, default_value_t = 10, value_parser = super::at_least_one())]
    pub k: usize,
    /// Only neighbours of this type, given by its code (the first character of its tokens,
    /// e.g. `v` for venues).
    #[arg(long = "type")]
    pub node_type: Option<char>,
    #[command(flatten)]
    pub common: Common,
}

pub fn run(cmd: Command) -> Result<()> {
    match cmd {
        Command::Walk(a) => cmd_walk(a),
        Command::Train(a) => cmd_train(a),
        Command::Eval(a) => cmd_eval(a),
        Command::Similar(a) => cmd_similar(a),
    }
}

fn base_config(g: &GraphArgs) -> Result<Metapath2VecConfig> {
    let mut cfg: Metapath2VecConfig = super::config_or_default(g.config.as_deref())?;
    set_if_some!(cfg.walks_per_node, g.walks_per_node);
    set_if_some!(cfg.walk_length, g.walk_length);
    set_if_some!(cfg.seed, g.seed);
    set_if_some!(cfg.merge_names, g.merge_names);
    cfg.validate()?;
    Ok(cfg)
}

fn walk_graph(
    g: &GraphArgs,
    cfg: &Metapath2VecConfig,
    quiet: bool,
) -> Result<(Graph, tessera::metapath2vec::walk::Walks, WalkStats, f64)> {
    let path = g
        .graph
        .as_ref()
        .context("--graph is required (or --walks FILE to train from walks)")?;
    if g.metapath.is_empty() {
        bail!("--metapath is required (e.g. APVPA, or movie-user-movie)");
    }
    let t0 = Instant::now();
    let same_names = if cfg.merge_names {
        SameNames::Merged
    } else {
        SameNames::Distinct
    };
    let graph = read_graph_with(path, same_names)?;
    if !quiet {
        let types: Vec<String> = (0..graph.num_types())
            .map(|t| {
                format!(
                    "{} {}",
                    graph.node_type.iter().filter(|&&x| x as usize == t).count(),
                    graph.type_names[t]
                )
            })
            .collect();
        eprintln!(
            "graph {}: {} nodes ({}), {} edges{}",
            path.display(),
            graph.num_nodes(),
            types.join(", "),
            graph.num_edges(),
            if graph.is_weighted() {
                ", weighted"
            } else {
                ""
            }
        );
    }
    let mps: Vec<MetaPath> = g
        .metapath
        .iter()
        .map(|m| parse_metapath(&graph, m))
        .collect::<Result<_>>()?;
    let starts: usize = mps
        .iter()
        .map(|m| graph.node_type.iter().filter(|&&t| t == m.types[0]).count())
        .sum();
    // Each token is held twice while the walks are assembled.
    tessera::core::validate::fits_in_memory(
        &format!(
            "{starts} start nodes x {} walks (--walks-per-node) x {} nodes (--walk-length)",
            cfg.walks_per_node, cfg.walk_length
        ),
        8.0 * tessera::core::validate::product(&[starts, cfg.walks_per_node, cfg.walk_length]),
    )?;
    let t1 = Instant::now();
    let (walks, stats) = generate(
        &graph,
        &mps,
        &WalkConfig {
            walks_per_node: cfg.walks_per_node,
            walk_length: cfg.walk_length,
            seed: cfg.seed,
        },
    );
    let walk_seconds = t1.elapsed().as_secs_f64();
    if !quiet {
        eprintln!(
            "walks: {} walks, {} tokens in {:.2}s (graph read in {:.2}s); {} start nodes isolated, {} walks ended early",
            stats.walks, stats.tokens, walk_seconds, (t1 - t0).as_secs_f64(), stats.isolated_starts, stats.ended_early
        );
    }
    Ok((graph, walks, stats, walk_seconds))
}

fn cmd_walk(a: WalkArgs) -> Result<()> {
    tessera::core::device::set_threads(a.common.threads);
    let cfg = base_config(&a.graph)?;
    let (graph, walks, stats, secs) = walk_graph(&a.graph, &cfg, a.common.json)?;
    write_walks(&a.output, &graph, &walks)?;
    if a.common.json {
        println!(
            "{}",
            serde_json::json!({"walks": stats, "walk_seconds": secs, "output": a.output})
        );
    } else {
        eprintln!("wrote {}", a.output.display());
    }
    Ok(())
}

fn cmd_train(a: TrainArgs) -> Result<()> {
    let threads = a
        .common
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    tessera::core::device::set_threads(Some(threads));
    let mut cfg = base_config(&a.graph)?;
    set_if_some!(cfg.variant, a.variant);
    set_if_some!(cfg.negative_type, a.negative_type);
    set_if_some!(cfg.dim, a.dim);
    set_if_some!(cfg.window, a.window);
    set_if_some!(cfg.negatives, a.negatives);
    set_if_some!(cfg.epochs, a.epochs);
    set_if_some!(cfg.alpha, a.alpha);
    set_if_some!(cfg.sample, a.sample);
    set_if_some!(cfg.min_count, a.min_count);
    cfg.window_shrink |= a.window_shrink;
    cfg.validate()?;
    let quiet = a.common.json;
    let (names, node_type, num_types, walks, walk_stats, walk_seconds) = match &a.walks {
        Some(p) => {
            let (vocab, walks) = read_walks(p)?;
            let n = vocab.type_codes.len();
            let stats = WalkStats {
                walks: walks.len(),
                tokens: walks.tokens.len(),
                ..Default::default()
            };
            (vocab.names, vocab.node_type, n, walks, stats, 0.0)
        }
        None => {
            let (graph, walks, stats, secs) = walk_graph(&a.graph, &cfg, quiet)?;
            if let Some(p) = &a.save_walks {
                write_walks(p, &graph, &walks)?;
            }
            // Numbered as the walk file would be read back: `train --graph` and `walk` +
            // `train --walks` train on the same tokens.
            let (vocab, walks) = tokens_of(&graph, &walks)?;
            let n = vocab.type_codes.len();
            (vocab.names, vocab.node_type, n, walks, stats, secs)
        }
    };
    let min_count = cfg.min_count.max(1);
    let counts = tessera::metapath2vec::train::node_counts(&walks, names.len());
    anyhow::ensure!(
        counts.iter().any(|&c| c >= min_count),
        "no node occurs {min_count} times in the walks (--min-count): nothing to train on"
    );
    let total = counts.iter().filter(|&&c| c >= min_count).sum::<u64>() * cfg.epochs as u64;
    tessera::core::validate::fits_in_memory(
        &format!(
            "{} vectors of --dim {} (input and output)",
            names.len(),
            cfg.dim
        ),
        8.0 * tessera::core::validate::product(&[names.len(), cfg.dim]),
    )?;
    let pb = progress::bar(total, "skip-gram", quiet);
    let (emb, stats) = train(&walks, &node_type, num_types, &cfg, threads, &|w| pb.inc(w));
    pb.finish_and_clear();
    // Nodes under the minimum count were not trained (their vector is random): leave them out.
    let keep: Vec<usize> = (0..names.len())
        .filter(|&i| emb.counts[i] >= min_count)
        .collect();
    let out = NamedEmbeddings {
        names: keep.iter().map(|&i| names[i].clone()).collect(),
        dim: emb.dim,
        vectors: keep
            .iter()
            .flat_map(|&i| emb.vectors[i * emb.dim..(i + 1) * emb.dim].iter().copied())
            .collect(),
    };
    io::save(&a.output, &out)?;
    let peak = tessera::core::resources::peak_rss_mib();
    if a.common.json {
        println!(
            "{}",
            serde_json::json!({
                "walks": walk_stats, "walk_seconds": walk_seconds, "train": stats,
                "nodes_embedded": out.names.len(), "peak_rss_mib": peak, "config": cfg, "output": a.output,
            })
        );
    } else {
        eprintln!(
            "trained {:?} on {} words in {:.2}s: {:.0} words/s with {} threads, {:.0} words per CPU-second; {} nodes written to {}{}",
            cfg.variant, stats.words, stats.seconds, stats.words_per_second, stats.threads,
            stats.words_per_cpu_second, out.names.len(), a.output.display(),
            peak.map(|p| format!("; peak memory {p:.0} MiB")).unwrap_or_default()
        );
    }
    Ok(())
}

fn cmd_eval(a: EvalArgs) -> Result<()> {
    tessera::core::device::set_threads(a.common.threads);
    let emb = io::load(&a.embeddings)?;
    let labels = read_labels(&a.labels)?;
    let data = join(&emb, &labels);
    if data.y.len() < 10 {
        bail!(
            "only {} labelled nodes have embeddings ({} labels missing); check that names match",
            data.y.len(),
            data.missing
        );
    }
    let rows = classify(&data, &TRAIN_FRACTIONS, a.repeats, a.seed);
    let nmi = cluster_nmi(&data, a.runs, a.seed);
    if a.common.json {
        println!(
            "{}",
            serde_json::json!({
                "nodes": data.y.len(), "classes": data.classes.len(), "labels_without_embedding": data.missing,
                "classification": rows, "nmi": nmi,
            })
        );
    } else {
        println!(
            "{} labelled nodes, {} classes ({} labels without an embedding)",
            data.y.len(),
            data.classes.len(),
            data.missing
        );
        println!(
            "{:>6} {:>10} {:>10} {:>14} {:>14}",
            "train", "Macro-F1", "Micro-F1", "majority Ma-F1", "majority Mi-F1"
        );
        for r in &rows {
            println!(
                "{:>5.0}% {:>10.4} {:>10.4} {:>14.4} {:>14.4}",
                r.train_fraction * 100.0,
                r.macro_f1,
                r.micro_f1,
                r.majority_macro_f1,
                r.majority_micro_f1
            );
        }
        println!("k-means NMI (mean of {} runs): {nmi:.4}", a.runs);
    }
    Ok(())
}

fn cmd_similar(a: SimilarArgs) -> Result<()> {
    let emb = io::load(&a.embeddings)?;
    let Some(q) = emb.names.iter().position(|n| n == &a.node) else {
        bail!("node `{}` is not in {}", a.node, a.embeddings.display());
    };
    let res = most_similar(&emb, q, a.k, a.node_type);
    if a.common.json {
        let v: Vec<_> = res
            .iter()
            .map(|&(i, s)| serde_json::json!({"node": emb.names[i], "cosine": s}))
            .collect();
        println!("{}", serde_json::json!({"node": a.node, "similar": v}));
    } else {
        for (r, &(i, s)) in res.iter().enumerate() {
            println!("{:>3}. {:<40} {s:.4}", r + 1, emb.names[i]);
        }
    }
    Ok(())
}
