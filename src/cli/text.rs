//! `tessera text embed|similarity|fill-mask|vocab|train`.

use super::Common;
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use tessera::core::checkpoint::save_safetensors;
use tessera::core::device::{device_from_name, set_threads};
use tessera::core::run::{write_atomic, RunDir};
use tessera::text::config::BertConfig;
use tessera::text::embed::{cosine, embed, read_lines, Pooling};
use tessera::text::model::Bert;
use tessera::text::tokenize::train_wordpiece;
use tessera::text::train::{train_mlm, MlmConfig, MlmRunOptions};
use tessera::text::{load_model_dir, TextModel};

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Sentence embeddings for a file of texts (one per line), as safetensors or JSONL.
    Embed(EmbedArgs),
    /// Pairwise cosine similarity of a few texts (one per line), as a table.
    Similarity(SimilarityArgs),
    /// Predict the [MASK] tokens of texts (needs a checkpoint with a masked-LM head).
    FillMask(FillMaskArgs),
    /// Train a WordPiece vocabulary on text files (BERT's special tokens and normalisation).
    Vocab(VocabArgs),
    /// Masked-language-model training: from scratch (--vocab, --preset) or from a checkpoint
    /// (--model).
    Train(TrainArgs),
}

#[derive(Args, Debug)]
pub struct ModelArgs {
    /// Model directory: config.json, model.safetensors and tokenizer.json or vocab.txt.
    #[arg(long)]
    pub model: PathBuf,
    /// Cut longer inputs to this many tokens, [CLS] and [SEP] included [default:
    /// sentence-transformers' max_seq_length if the directory has one, else the model's
    /// max_position_embeddings].
    #[arg(long)]
    pub max_len: Option<usize>,
    /// Texts per forward pass.
    #[arg(long, default_value_t = 32, value_parser = super::at_least_one())]
    pub batch_size: usize,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Args, Debug)]
pub struct EmbedArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Text file, one text per line (empty lines are an error).
    #[arg(long)]
    pub input: PathBuf,
    /// Output: FILE.safetensors (tensor `embeddings` [N, D]) or FILE.jsonl (one array a line).
    #[arg(long)]
    pub output: PathBuf,
    /// How token states become one vector.
    #[arg(long, value_enum, default_value = "mean")]
    pub pooling: Pooling,
    /// L2-normalise each embedding (sentence-transformers' Normalize).
    #[arg(long)]
    pub normalize: bool,
}

#[derive(Args, Debug)]
pub struct SimilarityArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Text file, one text per line.
    #[arg(long)]
    pub input: PathBuf,
    #[arg(long, value_enum, default_value = "mean")]
    pub pooling: Pooling,
}

#[derive(Args, Debug)]
pub struct FillMaskArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// A text with one or more [MASK] tokens.
    #[arg(long, conflicts_with = "input")]
    pub text: Option<String>,
    /// A file of such texts, one per line.
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// Candidates per mask.
    #[arg(long, default_value_t = 5, value_parser = super::at_least_one())]
    pub top_k: usize,
}

#[derive(Args, Debug)]
pub struct VocabArgs {
    /// Text files to learn from (one text per line).
    #[arg(long, required = true, num_args = 1..)]
    pub input: Vec<PathBuf>,
    /// Directory for tokenizer.json and vocab.txt.
    #[arg(long)]
    pub output: PathBuf,
    /// Vocabulary size, special tokens included.
    #[arg(long, default_value_t = 30_522, value_parser = super::at_least_one())]
    pub vocab_size: usize,
    /// Minimum count of a merged piece.
    #[arg(long, default_value_t = 2)]
    pub min_frequency: u64,
    /// Keep letter case (default: lower-case, as uncased BERT).
    #[arg(long)]
    pub cased: bool,
}

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Text corpus, one text per line.
    #[arg(long)]
    pub input: PathBuf,
    /// Run directory; it ends up a model directory (config.json, model.safetensors,
    /// tokenizer.json, vocab.txt) plus metrics.jsonl.
    #[arg(long)]
    pub run_dir: PathBuf,
    /// Start from this model directory (fine-tuning) ...
    #[arg(long, conflicts_with = "vocab")]
    pub model: Option<PathBuf>,
    /// ... or from scratch with the tokenizer in this directory (see `tessera text vocab`).
    #[arg(long)]
    pub vocab: Option<PathBuf>,
    /// Model size from scratch: tiny (2 layers, 64 wide), minilm-l6, base.
    #[arg(long, default_value = "tiny")]
    pub preset: String,
    /// Lines held out from the end of the corpus for masked-token accuracy.
    #[arg(long)]
    pub valid_lines: Option<usize>,
    /// Cut longer lines to this many tokens [default: 128].
    #[arg(long, default_value_t = 128, value_parser = super::at_least_one())]
    pub max_len: usize,
    /// Settings (`--config` TOML: seed, mask_prob, lr, ...) and resuming.
    #[command(flatten)]
    pub run: super::TrainFlags,
    #[command(flatten)]
    pub common: Common,
}

pub fn run(cmd: Command) -> Result<()> {
    match cmd {
        Command::Embed(a) => cmd_embed(a),
        Command::Similarity(a) => cmd_similarity(a),
        Command::FillMask(a) => cmd_fill_mask(a),
        Command::Vocab(a) => cmd_vocab(a),
        Command::Train(a) => cmd_train(a),
    }
}

fn open(m: &ModelArgs) -> Result<(TextModel, burn::tensor::Device)> {
    set_threads(m.common.threads);
    let device = device_from_name(&m.common.device)?;
    let model = load_model_dir(&m.model, m.max_len, &device)?;
    Ok((model, device))
}

fn cmd_embed(a: EmbedArgs) -> Result<()> {
    let texts = read_lines(&a.input)?;
    let (tm, device) = open(&a.model)?;
    let t0 = std::time::Instant::now();
    let e = embed(
        &tm.model,
        &tm.tokenizer,
        &texts,
        a.pooling,
        a.normalize,
        a.model.batch_size,
        &device,
        a.model.common.json,
    )?;
    let seconds = t0.elapsed().as_secs_f64();
    let ext = a.output.extension().and_then(|e| e.to_str()).unwrap_or("");
    match ext {
        "safetensors" => {
            let data = burn::tensor::TensorData::new(e.vectors.clone(), [texts.len(), e.dim]);
            let mut meta = HashMap::new();
            meta.insert(
                "pooling".to_string(),
                format!("{:?}", a.pooling).to_lowercase(),
            );
            meta.insert("normalized".to_string(), a.normalize.to_string());
            save_safetensors(&a.output, &[("embeddings".to_string(), data)], meta)?;
        }
        "jsonl" => {
            let mut out = String::new();
            for row in e.vectors.chunks(e.dim) {
                out += &serde_json::to_string(row)?;
                out.push('\n');
            }
            write_atomic(&a.output, out.as_bytes())?;
        }
        _ => bail!(
            "{}: output must end in .safetensors or .jsonl",
            a.output.display()
        ),
    }
    if e.truncated > 0 {
        eprintln!(
            "note: {} of {} texts were longer than {} tokens and were cut",
            e.truncated,
            texts.len(),
            tm.tokenizer.max_len
        );
    }
    let summary = serde_json::json!({
        "texts": texts.len(), "dim": e.dim, "truncated": e.truncated,
        "seconds": seconds, "texts_per_second": texts.len() as f64 / seconds,
        "output": a.output,
    });
    if a.model.common.json {
        println!("{summary}");
    } else {
        eprintln!(
            "embedded {} texts ({}-d) in {seconds:.2}s ({:.0}/s) -> {}",
            texts.len(),
            e.dim,
            texts.len() as f64 / seconds,
            a.output.display()
        );
    }
    Ok(())
}

fn cmd_similarity(a: SimilarityArgs) -> Result<()> {
    let texts = read_lines(&a.input)?;
    anyhow::ensure!(
        texts.len() <= 50,
        "{}: {} texts; the table is for a few (at most 50)",
        a.input.display(),
        texts.len()
    );
    let (tm, device) = open(&a.model)?;
    let e = embed(
        &tm.model,
        &tm.tokenizer,
        &texts,
        a.pooling,
        true,
        a.model.batch_size,
        &device,
        true,
    )?;
    let n = texts.len();
    let table: Vec<Vec<f32>> = (0..n)
        .map(|i| (0..n).map(|j| cosine(&e.vectors, e.dim, i, j)).collect())
        .collect();
    if a.model.common.json {
        println!("{}", serde_json::json!({"texts": texts, "cosine": table}));
        return Ok(());
    }
    let mut out = std::io::stdout().lock();
    write!(out, "{:>4}", "")?;
    for j in 0..n {
        write!(out, "{:>7}", format!("[{}]", j + 1))?;
    }
    writeln!(out)?;
    for (i, row) in table.iter().enumerate() {
        write!(out, "{:>4}", format!("[{}]", i + 1))?;
        for v in row {
            write!(out, "{v:>7.3}")?;
        }
        writeln!(out)?;
    }
    for (i, t) in texts.iter().enumerate() {
        writeln!(out, "[{}] {t}", i + 1)?;
    }
    Ok(())
}

fn cmd_fill_mask(a: FillMaskArgs) -> Result<()> {
    let texts = match (&a.text, &a.input) {
        (Some(t), None) => vec![t.clone()],
        (None, Some(p)) => read_lines(p)?,
        _ => bail!("give --text or --input"),
    };
    let (tm, device) = open(&a.model)?;
    if !tm.loaded.has_mlm_head {
        bail!(
            "{}: the checkpoint has no masked-LM head (cls.predictions.*); fill-mask needs one",
            a.model.model.display()
        );
    }
    let mask_id = tm
        .tokenizer
        .mask_id
        .context("the vocabulary has no [MASK] token")?;
    let inputs: Vec<(&str, Option<&str>)> = texts.iter().map(|t| (t.as_str(), None)).collect();
    let encoded = tm.tokenizer.encode(&inputs)?;
    let mut results = Vec::new();
    for (text, enc) in texts.iter().zip(&encoded) {
        let positions: Vec<usize> = (0..enc.ids.len())
            .filter(|&i| enc.ids[i] == mask_id)
            .collect();
        if positions.is_empty() {
            bail!("no [MASK] token in: {text}");
        }
        let batch = tm.tokenizer.pad(std::slice::from_ref(enc));
        let hidden = tm.model.forward(&batch, &device);
        let [_, l, d] = hidden.dims();
        let pos: Vec<i64> = positions.iter().map(|&p| p as i64).collect();
        let pos = burn::tensor::Tensor::<1, burn::tensor::Int>::from_data(
            burn::tensor::TensorData::new(pos, [positions.len()]),
            &device,
        );
        let logits = tm.model.mlm_logits(hidden.reshape([l, d]).select(0, pos));
        let probs: Vec<f32> = burn::tensor::activation::softmax(logits, 1)
            .into_data()
            .try_to_vec::<f32>()
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let v = probs.len() / positions.len();
        let mut masks = Vec::new();
        for (k, _) in positions.iter().enumerate() {
            let row = &probs[k * v..(k + 1) * v];
            let mut idx: Vec<usize> = (0..v).collect();
            idx.sort_by(|&x, &y| row[y].total_cmp(&row[x]));
            let cands: Vec<serde_json::Value> = idx
                .iter()
                .take(a.top_k)
                .map(|&t| {
                    serde_json::json!({
                        "token": tm.tokenizer.id_to_token(t as u32).unwrap_or_default(),
                        "score": row[t],
                    })
                })
                .collect();
            masks.push(cands);
        }
        results.push(serde_json::json!({"text": text, "masks": masks}));
    }
    for r in &results {
        if a.model.common.json {
            println!("{r}");
        } else {
            println!("{}", r["text"].as_str().unwrap_or_default());
            for (k, cands) in r["masks"].as_array().unwrap().iter().enumerate() {
                let line: Vec<String> = cands
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|c| {
                        format!(
                            "{} {:.3}",
                            c["token"].as_str().unwrap_or_default(),
                            c["score"].as_f64().unwrap_or_default()
                        )
                    })
                    .collect();
                println!("  [MASK] #{}: {}", k + 1, line.join(", "));
            }
        }
    }
    Ok(())
}

fn cmd_vocab(a: VocabArgs) -> Result<()> {
    let files: Vec<String> = a
        .input
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    anyhow::ensure!(
        a.vocab_size > 5,
        "--vocab-size must exceed the 5 special tokens"
    );
    let tok = train_wordpiece(&files, a.vocab_size, a.min_frequency, !a.cased, 512)?;
    tok.save(&a.output)?;
    eprintln!(
        "{} tokens -> {}/tokenizer.json, vocab.txt",
        tok.vocab_size(),
        a.output.display()
    );
    Ok(())
}

fn cmd_train(a: TrainArgs) -> Result<()> {
    set_threads(a.common.threads);
    let device = device_from_name(&a.common.device)?;
    let mut cfg: MlmConfig = super::config_or_default(a.run.config.as_deref())?;
    set_if_some!(cfg.seed, a.run.seed);
    set_if_some!(cfg.epochs, a.run.epochs);
    set_if_some!(cfg.lr, a.run.lr);
    set_if_some!(cfg.batch_size, a.run.batch_size);
    set_if_some!(cfg.valid_lines, a.valid_lines);
    cfg.selection = a.run.selection(cfg.selection.take())?;
    cfg.validate()?;
    let (model, bert_cfg, tok) = match (&a.model, &a.vocab) {
        (Some(dir), None) => {
            let tm = load_model_dir(dir, Some(a.max_len), &device)?;
            (tm.model, tm.config, tm.tokenizer)
        }
        (None, Some(dir)) => {
            let tok = tessera::text::tokenize::TextTokenizer::from_dir(dir, a.max_len)?;
            let v = tok.vocab_size();
            let mut bc = match a.preset.as_str() {
                "tiny" => BertConfig::tiny(v),
                "minilm-l6" => BertConfig::minilm_l6(),
                "base" => BertConfig::default(),
                other => bail!("unknown --preset `{other}` (tiny, minilm-l6, base)"),
            };
            bc.vocab_size = v;
            bc.max_position_embeddings = bc.max_position_embeddings.max(a.max_len);
            device.seed(cfg.seed);
            (Bert::new(&bc, &device), bc, tok)
        }
        _ => bail!("give --model DIR (fine-tune) or --vocab DIR (from scratch)"),
    };
    let lines = read_lines(&a.input)?;
    anyhow::ensure!(
        cfg.valid_lines < lines.len(),
        "--valid-lines {} leaves no training lines",
        cfg.valid_lines
    );
    let inputs: Vec<(&str, Option<&str>)> = lines.iter().map(|t| (t.as_str(), None)).collect();
    let encoded = tok.encode(&inputs)?;
    let split = encoded.len() - cfg.valid_lines;
    let run = RunDir::create(&a.run_dir)?;
    tessera::core::trainer::catch_interrupts();
    let records = train_mlm(
        model,
        &bert_cfg,
        &tok,
        &encoded[..split],
        &encoded[split..],
        &cfg,
        &run,
        &device,
        &MlmRunOptions {
            quiet: a.common.json,
            resume: a.run.resume,
            stop_after_epochs: a.run.stop_after_epochs,
        },
    )?;
    if a.common.json {
        println!("{}", serde_json::to_string(&records)?);
    }
    Ok(())
}
