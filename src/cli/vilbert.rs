//! `tessera vilbert`: ViLBERT over region files and text.

use super::vl::{
    bench_fits, bert_preset, box_targets, finetune_config, pick_image, read_region_classes,
    read_regions, region_sizes, sorted_unique, top_k, AnnotatedRegions,
};
use super::Common;
use anyhow::{bail, Result};
use burn::tensor::{Device, Tensor, TensorData};
use clap::{Args, Subcommand};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tessera::core::checkpoint::save_safetensors;
use tessera::core::device::{device_from_name, set_threads};
use tessera::core::progress;
use tessera::core::run::RunDir;
use tessera::corpora::annotated::read_corpus;
use tessera::regions::files::ImageRegions;
use tessera::text::embed::read_lines;
use tessera::text::tokenize::TextTokenizer;
use tessera::vilbert::config::VilBertConfig;
use tessera::vilbert::data::{batch, prepare_image, ImageInput};
use tessera::vilbert::load_model_dir;
use tessera::vilbert::model::{from_bert, load_with_task_heads, VilBert};
use tessera::vilbert::train::{
    evaluate_pretraining, masking, retrieval_recalls, score_pairs, Pair, PairCorpus,
    PretrainConfig, QaCorpus, Question, RetrievalCorpus, Scorer,
};

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the pretraining network in evaluation mode on image-text pairs (line i of --text with
    /// image i of --regions) and write the official outputs: sequence_output_t [B, T, Ht],
    /// sequence_output_v [B, 1+R, Hv] (the global image token first), pooled_output_t,
    /// pooled_output_v, prediction_scores_t, prediction_scores_v, seq_relationship_score [B, 2];
    /// padded positions are zeros.
    Features(FeaturesArgs),
    /// Pretrain on image-text pairs: masked multi-modal modelling (words and regions) and
    /// alignment against captions of other images, on an annotated corpus's captions and its
    /// region file. The run directory ends as a model directory.
    Pretrain(PretrainArgs),
    /// Measure a model on an annotated corpus and its region file: masked-word, masked-region
    /// and alignment accuracy (random negatives, masks from --seed); alignment against the
    /// corpus's hard negatives; zero-shot image retrieval R@1/5/10 from the alignment head over
    /// --gallery images (each image's first caption as the query), and with the retrieval head
    /// when the model has one (a `vilbert retrieve` run).
    Eval(EvalArgs),
    /// Fine-tune for visual question answering on an annotated corpus's questions (`qa`):
    /// `[CLS] question [SEP]` with the image, the answer from the fused pooled output
    /// (`vil_prediction`), binary cross-entropy over the training answers. `--blind`: the
    /// question-only baseline.
    Vqa(FinetuneArgs),
    /// Fine-tune for caption-based image retrieval (the official 4-way choice with `vil_logit`);
    /// reports held-out R@1/5/10 over --gallery images per epoch.
    Retrieve(FinetuneArgs),
    /// Ask a model about one image of a region file: with a VQA head, the top answers to
    /// --text; otherwise the alignment probability of --text with the image, the retrieval score
    /// when the model has that head, and the masked-LM head's top words at each [MASK].
    Predict(PredictArgs),
    /// Time inference (forward) or a pretraining step (forward, the three losses, backward,
    /// AdamW) of a network of the official sizes with random weights and inputs; prints JSON
    /// (bench/vilbert_vs_official.sh).
    Bench(BenchArgs),
}

#[derive(Args, Debug)]
pub struct FeaturesArgs {
    /// Model directory (config.json, model.safetensors, vocab.txt).
    #[arg(long)]
    pub model: PathBuf,
    /// Text file, one sentence per line.
    #[arg(long)]
    pub text: PathBuf,
    /// Region file (safetensors, bottom-up TSV or npz directory), one image per line of --text.
    #[arg(long)]
    pub regions: PathBuf,
    /// Output safetensors file.
    #[arg(long)]
    pub output: PathBuf,
    /// Pairs per forward pass.
    #[arg(long, default_value_t = 32, value_parser = super::at_least_one())]
    pub batch_size: usize,
    #[command(flatten)]
    pub common: Common,
}

/// Where a new network comes from.
#[derive(Args, Debug)]
pub struct StartArgs {
    /// Start from a ViLBERT model directory (e.g. a `vilbert pretrain` run).
    #[arg(long, conflicts_with_all = ["bert", "vocab"])]
    pub model: Option<PathBuf>,
    /// Initialise the text stream from a Hugging Face BERT directory (e.g. data/minilm), as the
    /// official code initialises from BERT.
    #[arg(long, conflicts_with = "vocab")]
    pub bert: Option<PathBuf>,
    /// From scratch with this vocabulary directory (vocab.txt or tokenizer.json) and --preset.
    #[arg(long)]
    pub vocab: Option<PathBuf>,
    /// Text stream size from scratch: tiny (2 layers, 64 wide), small (4 layers, 256 wide),
    /// base. The image stream has the text stream's width and layers, co-attention after each.
    #[arg(long, default_value = "tiny", value_parser = ["tiny", "small", "base"])]
    pub preset: String,
}

#[derive(Args, Debug)]
pub struct PretrainArgs {
    /// Annotated corpus (annotations.jsonl with captions, or its directory).
    #[arg(long)]
    pub data: PathBuf,
    /// Its region file (`tessera regions --boxes DATA ...`), image ids = annotation file stems.
    #[arg(long)]
    pub regions: PathBuf,
    /// Held-out corpus and region file for the per-epoch accuracies.
    #[arg(long, requires = "valid_regions")]
    pub valid_data: Option<PathBuf>,
    #[arg(long, requires = "valid_data")]
    pub valid_regions: Option<PathBuf>,
    #[command(flatten)]
    pub start: StartArgs,
    /// Share of the alignment negatives that are the caption's hard negative from the corpus
    /// (Tessera's option; 0 as the official code) [config: hard_negative_prob].
    #[arg(long)]
    pub hard_negative_prob: Option<f64>,
    #[arg(long)]
    pub run_dir: PathBuf,
    #[command(flatten)]
    pub run: super::TrainFlags,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Model directory (a `vilbert pretrain` run).
    #[arg(long)]
    pub model: PathBuf,
    #[arg(long)]
    pub data: PathBuf,
    #[arg(long)]
    pub regions: PathBuf,
    /// Images of the zero-shot retrieval gallery (the corpus's first ones); 0: skip retrieval.
    #[arg(long, default_value_t = 1000)]
    pub gallery: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long, default_value_t = 64, value_parser = super::at_least_one())]
    pub batch_size: usize,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Args, Debug)]
pub struct FinetuneArgs {
    #[arg(long)]
    pub data: PathBuf,
    #[arg(long)]
    pub regions: PathBuf,
    #[arg(long, requires = "valid_regions")]
    pub valid_data: Option<PathBuf>,
    #[arg(long, requires = "valid_data")]
    pub valid_regions: Option<PathBuf>,
    #[command(flatten)]
    pub start: StartArgs,
    /// VQA's question-only baseline: region features and locations zeroed.
    #[arg(long)]
    pub blind: bool,
    /// Retrieval: images of the held-out gallery (the first ones).
    #[arg(long, default_value_t = 1000, value_parser = super::at_least_one())]
    pub gallery: usize,
    #[arg(long)]
    pub run_dir: PathBuf,
    #[command(flatten)]
    pub run: super::TrainFlags,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Args, Debug)]
pub struct PredictArgs {
    /// Model directory (a `vilbert pretrain`, `vqa` or `retrieve` run).
    #[arg(long)]
    pub model: PathBuf,
    /// Region file holding the image.
    #[arg(long)]
    pub regions: PathBuf,
    /// Which image of the region file [default: its only image].
    #[arg(long)]
    pub image_id: Option<String>,
    /// The question, caption, or sentence with [MASK].
    #[arg(long)]
    pub text: String,
    #[arg(long, default_value_t = 5, value_parser = super::at_least_one())]
    pub top_k: usize,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// `infer` or `train`.
    #[arg(long, default_value = "infer")]
    pub mode: String,
    /// A ViLBERT config.json for the sizes [default: the published 6-layer, 6-connection base].
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[arg(long, default_value_t = 8, value_parser = super::at_least_one())]
    pub batch: usize,
    /// Text tokens per pair (with [CLS] and [SEP]).
    #[arg(long, default_value_t = 20, value_parser = super::at_least_one())]
    pub text_len: usize,
    /// Regions per image (the global token included).
    #[arg(long, default_value_t = 37, value_parser = super::at_least_one())]
    pub regions: usize,
    /// Timed repetitions (the median is reported) after one untimed warm-up.
    #[arg(long, default_value_t = 5, value_parser = super::at_least_one())]
    pub repeats: usize,
    #[command(flatten)]
    pub common: Common,
}

pub fn run(cmd: Command) -> Result<()> {
    match cmd {
        Command::Features(a) => cmd_features(a),
        Command::Pretrain(a) => cmd_pretrain(a),
        Command::Eval(a) => cmd_eval(a),
        Command::Vqa(a) => cmd_vqa(a),
        Command::Retrieve(a) => cmd_retrieve(a),
        Command::Predict(a) => cmd_predict(a),
        Command::Bench(a) => cmd_bench(a),
    }
}

fn floats<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>> {
    t.into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .map_err(|e| anyhow::anyhow!("{e:?}"))
}

/// Tokenise texts as `[CLS] text [SEP]`; a text longer than the model's positions is an error
/// naming its line (1-based, in `source`).
fn encode(
    tok: &TextTokenizer,
    texts: &[String],
    cfg: &VilBertConfig,
    source: &str,
) -> Result<Vec<Vec<u32>>> {
    let encoded = tok.encode_lines(
        texts,
        cfg.max_text_len(),
        cfg.max_position_embeddings,
        source,
    )?;
    Ok(encoded.into_iter().map(|e| e.ids).collect())
}

fn prepare_all(
    images: &[ImageRegions],
    cfg: &VilBertConfig,
    path: &Path,
) -> Result<Vec<ImageInput>> {
    images
        .iter()
        .map(|im| prepare_image(im, cfg).map_err(|e| anyhow::anyhow!("{}: {e}", path.display())))
        .collect()
}

/// One output of a batch: values, positions per pair, width, kept positions per pair (none: all).
type Part<'a> = (Vec<f32>, usize, usize, Option<&'a [usize]>);

fn cmd_features(a: FeaturesArgs) -> Result<()> {
    set_threads(a.common.threads);
    let device = device_from_name(&a.common.device)?;
    let m = load_model_dir(&a.model, &device)?;
    let texts = read_lines(&a.text)?;
    if texts.is_empty() {
        bail!("{}: no sentences", a.text.display());
    }
    let images = read_regions(&a.regions)?;
    if images.len() != texts.len() {
        bail!(
            "{} holds {} images but {} has {} lines: line i goes with image i",
            a.regions.display(),
            images.len(),
            a.text.display(),
            texts.len()
        );
    }
    let ids = encode(
        &m.tokenizer,
        &texts,
        &m.config,
        &a.text.display().to_string(),
    )?;
    let prepared = prepare_all(&images, &m.config, &a.regions)?;
    let (n, t, r) = (
        texts.len(),
        ids.iter().map(Vec::len).max().unwrap_or(1),
        prepared.iter().map(ImageInput::len).max().unwrap_or(1),
    );
    let (ht, hv, bi) = (
        m.config.hidden_size,
        m.config.v_hidden_size,
        m.config.bi_hidden_size,
    );
    let (vocab, classes) = (m.config.vocab_size, m.config.v_target_size);
    let mut out: Vec<(&str, Vec<usize>, Vec<f32>)> = vec![
        ("sequence_output_t", vec![n, t, ht], vec![0.0; n * t * ht]),
        ("sequence_output_v", vec![n, r, hv], vec![0.0; n * r * hv]),
        ("pooled_output_t", vec![n, bi], vec![0.0; n * bi]),
        ("pooled_output_v", vec![n, bi], vec![0.0; n * bi]),
        (
            "prediction_scores_t",
            vec![n, t, vocab],
            vec![0.0; n * t * vocab],
        ),
        (
            "prediction_scores_v",
            vec![n, r, classes],
            vec![0.0; n * r * classes],
        ),
        ("seq_relationship_score", vec![n, 2], vec![0.0; n * 2]),
    ];
    let pb = progress::bar(n as u64, "features", a.common.json);
    let mut first = 0;
    for chunk in (0..n).collect::<Vec<_>>().chunks(a.batch_size) {
        let pairs: Vec<(&[u32], &ImageInput)> = chunk
            .iter()
            .map(|&i| (ids[i].as_slice(), &prepared[i]))
            .collect();
        let b = batch(&pairs);
        let o = m.model.forward(&b, &device);
        let (bn, bt, br) = (b.batch, b.text_len, b.regions);
        let scores_t = m.model.mlm_logits(o.text.clone().reshape([bn * bt, ht]));
        let scores_v = m
            .model
            .region_logits(o.image.clone().reshape([bn * br, hv]));
        let parts: [Part; 7] = [
            (floats(o.text.clone())?, bt, ht, Some(&b.text_lens)),
            (floats(o.image.clone())?, br, hv, Some(&b.region_counts)),
            (floats(o.pooled_t.clone())?, 1, bi, None),
            (floats(o.pooled_v.clone())?, 1, bi, None),
            (floats(scores_t)?, bt, vocab, Some(&b.text_lens)),
            (floats(scores_v)?, br, classes, Some(&b.region_counts)),
            (floats(m.model.alignment_logits(&o))?, 1, 2, None),
        ];
        for ((_, shape, dst), (src, len, w, lens)) in out.iter_mut().zip(parts) {
            let total = if shape.len() == 3 { shape[1] } else { 1 };
            for (k, _) in chunk.iter().enumerate() {
                let keep = lens.map_or(len, |l| l[k]);
                for p in 0..keep {
                    let from = (k * len + p) * w;
                    let to = ((first + k) * total + p) * w;
                    dst[to..to + w].copy_from_slice(&src[from..from + w]);
                }
            }
        }
        first += chunk.len();
        pb.set_position(first as u64);
    }
    pb.finish_and_clear();
    let tensors: Vec<(String, TensorData)> = out
        .into_iter()
        .map(|(name, shape, v)| (name.to_string(), TensorData::new(v, shape)))
        .collect();
    let mut meta = HashMap::new();
    meta.insert(
        "image_ids".to_string(),
        serde_json::to_string(&images.iter().map(|i| &i.image_id).collect::<Vec<_>>())?,
    );
    meta.insert(
        "text_lengths".to_string(),
        serde_json::to_string(&ids.iter().map(Vec::len).collect::<Vec<_>>())?,
    );
    meta.insert(
        "region_counts".to_string(),
        serde_json::to_string(&prepared.iter().map(ImageInput::len).collect::<Vec<_>>())?,
    );
    save_safetensors(&a.output, &tensors, meta)?;
    eprintln!(
        "wrote {n} pairs to {} (sequence_output_t [{n}, {t}, {ht}], sequence_output_v [{n}, {r}, {hv}])",
        a.output.display()
    );
    Ok(())
}

/// The network a command starts from, with `set_heads` applied to a new network's config (and
/// to a loaded one's task heads).
fn start_model(
    s: &StartArgs,
    feature_size: usize,
    classes: usize,
    device: &Device,
    set_heads: &dyn Fn(&mut VilBertConfig),
) -> Result<(VilBert, VilBertConfig, TextTokenizer)> {
    Ok(match (&s.model, &s.bert, &s.vocab) {
        (Some(dir), _, _) => {
            let mut cfg = VilBertConfig::from_json_file(&dir.join("config.json"))?;
            let before = cfg.clone();
            set_heads(&mut cfg);
            cfg.validate()?;
            let tok = TextTokenizer::from_dir(dir, cfg.max_text_len())?;
            let model = if cfg == before {
                tessera::vilbert::model::load_official(
                    &cfg,
                    &dir.join("model.safetensors"),
                    device,
                )?
            } else {
                load_with_task_heads(&cfg, &dir.join("model.safetensors"), device)?
            };
            (model, cfg, tok)
        }
        (None, Some(dir), None) => {
            let bert = tessera::text::config::BertConfig::from_json_file(&dir.join("config.json"))?;
            let mut cfg = VilBertConfig::from_bert(&bert, feature_size, classes);
            set_heads(&mut cfg);
            cfg.validate()?;
            let tok = TextTokenizer::from_dir(dir, cfg.max_text_len())?;
            (from_bert(&cfg, dir, device)?, cfg, tok)
        }
        (None, None, Some(dir)) => {
            let tok = TextTokenizer::from_dir(dir, 64)?;
            let bert = bert_preset(&s.preset, tok.vocab_size())?;
            let mut cfg = VilBertConfig::from_bert(&bert, feature_size, classes);
            // A preset's image stream and co-attention have the text stream's width.
            cfg.v_hidden_size = bert.hidden_size;
            cfg.v_intermediate_size = bert.intermediate_size;
            cfg.v_num_attention_heads = bert.num_attention_heads;
            cfg.bi_hidden_size = bert.hidden_size;
            cfg.bi_num_attention_heads = bert.num_attention_heads;
            cfg.v_num_hidden_layers = bert.num_hidden_layers;
            cfg.v_biattention_id = (0..bert.num_hidden_layers).collect();
            cfg.t_biattention_id = (0..bert.num_hidden_layers).collect();
            set_heads(&mut cfg);
            cfg.validate()?;
            let tok = TextTokenizer::from_dir(dir, cfg.max_text_len())?;
            (VilBert::new(&cfg, device), cfg, tok)
        }
        _ => bail!("give --model DIR, --bert DIR (a Hugging Face BERT) or --vocab DIR"),
    })
}

/// A corpus's captions with its images' regions and the boxes' class targets.
fn pair_corpus(
    data: &Path,
    regions: &Path,
    cfg: &VilBertConfig,
    tok: &TextTokenizer,
    labels: Option<&[String]>,
) -> Result<PairCorpus> {
    let joined = AnnotatedRegions::read(data, regions)?;
    let corpus = &joined.corpus;
    let mut out = PairCorpus {
        images: vec![],
        targets: vec![],
        pairs: vec![],
    };
    for a in &corpus.images {
        if a.captions.is_empty() {
            continue;
        }
        let id = a.id();
        let im = joined.regions_of(a)?;
        let p =
            prepare_image(im, cfg).map_err(|e| anyhow::anyhow!("{}: {e}", regions.display()))?;
        // Without labels (retrieval) the boxes' class targets are not read.
        let t = match labels {
            Some(labels) => {
                let c = cfg.v_target_size;
                let mut t = box_targets(a, im, labels, c, data, regions)?;
                t.truncate(p.boxes.len() * c);
                t
            }
            None => vec![],
        };
        let image = out.images.len();
        out.images.push(p);
        out.targets.push(t);
        let source = format!("{} image {id}", data.display());
        let caps = encode(tok, &a.captions, cfg, &source)?;
        let negs = encode(tok, &a.negatives, cfg, &format!("{source} negatives"))?;
        for (k, ids) in caps.into_iter().enumerate() {
            out.pairs.push(Pair {
                ids,
                negative: negs.get(k).cloned(),
                image,
            });
        }
    }
    if out.pairs.is_empty() {
        bail!("{}: no captions", data.display());
    }
    Ok(out)
}

/// The region classes of a pretraining run: the region file's class scores, else the corpus's
/// box labels (written to the run as region_classes.txt).
fn region_classes(data: &Path, regions: &Path) -> Result<(usize, Option<usize>, Vec<String>)> {
    let (feature_size, file_classes) = region_sizes(regions)?;
    let mut labels = Vec::new();
    if file_classes.is_none() {
        labels = sorted_unique(
            read_corpus(data)?
                .images
                .iter()
                .flat_map(|x| x.labels.iter().cloned()),
        );
        if labels.is_empty() {
            bail!(
                "{}: no class scores in the region file and no box labels in the corpus: \
                 masked-region prediction has no targets",
                regions.display()
            );
        }
    }
    Ok((feature_size, file_classes, labels))
}

/// A fine-tuned model keeps its masked-region head: its region classes go with it.
fn carry_region_classes(start: &StartArgs, run: &RunDir) -> Result<()> {
    if let Some(dir) = &start.model {
        if let Ok(text) = std::fs::read_to_string(dir.join("region_classes.txt")) {
            run.write_atomic("region_classes.txt", text.as_bytes())?;
        }
    }
    Ok(())
}

fn cmd_pretrain(a: PretrainArgs) -> Result<()> {
    use tessera::vilbert::train::pretrain;
    set_threads(a.common.threads);
    let device = device_from_name(&a.common.device)?;
    let mut tc: PretrainConfig = super::config_or_default(a.run.config.as_deref())?;
    set_if_some!(tc.seed, a.run.seed);
    set_if_some!(tc.epochs, a.run.epochs);
    set_if_some!(tc.lr, a.run.lr);
    set_if_some!(tc.batch_size, a.run.batch_size);
    set_if_some!(tc.hard_negative_prob, a.hard_negative_prob);
    tc.selection = a.run.selection(tc.selection.take())?;
    tc.validate()?;
    let (feature_size, file_classes, labels) = region_classes(&a.data, &a.regions)?;
    let n_classes = file_classes.unwrap_or(labels.len());
    device.seed(tc.seed);
    let (model, cfg, tok) = start_model(&a.start, feature_size, n_classes, &device, &|_| {})?;
    if cfg.v_target_size != n_classes {
        bail!(
            "the model predicts {} region classes (v_target_size) but the data has {n_classes}",
            cfg.v_target_size
        );
    }
    let train = pair_corpus(&a.data, &a.regions, &cfg, &tok, Some(&labels))?;
    let valid = match (&a.valid_data, &a.valid_regions) {
        (Some(d), Some(r)) => pair_corpus(d, r, &cfg, &tok, Some(&labels))?,
        _ => PairCorpus {
            images: vec![],
            targets: vec![],
            pairs: vec![],
        },
    };
    eprintln!(
        "pretraining on {} pairs over {} images ({} held out), {n_classes} region classes",
        train.pairs.len(),
        train.images.len(),
        valid.pairs.len(),
    );
    let run = RunDir::create(&a.run_dir)?;
    if !labels.is_empty() {
        run.write_atomic("region_classes.txt", (labels.join("\n") + "\n").as_bytes())?;
    }
    super::vl::run_training(&a.run, &a.common, |opts| {
        pretrain(model, &cfg, &tok, &train, &valid, &tc, &run, &device, opts)
    })
}

/// Alignment against hard negatives: (share of pairs whose caption scores above its hard
/// negative, ties half; accuracy of the aligned/not-aligned decision over both), and the count.
fn hard_negative_alignment(
    model: &VilBert,
    corpus: &PairCorpus,
    batch_size: usize,
    device: &Device,
) -> Result<(f64, f64, usize)> {
    let with: Vec<&Pair> = corpus
        .pairs
        .iter()
        .filter(|p| p.negative.is_some())
        .collect();
    if with.is_empty() {
        return Ok((f64::NAN, f64::NAN, 0));
    }
    let mut pairs: Vec<(&[u32], &ImageInput)> = Vec::with_capacity(2 * with.len());
    for p in &with {
        pairs.push((p.ids.as_slice(), &corpus.images[p.image]));
        pairs.push((
            p.negative.as_deref().unwrap_or_default(),
            &corpus.images[p.image],
        ));
    }
    let s = score_pairs(model, &pairs, Scorer::Alignment, batch_size, device)?;
    let (mut ranked, mut decided) = (0.0, 0usize);
    for k in 0..with.len() {
        let (pos, neg) = (s[2 * k], s[2 * k + 1]);
        ranked += if pos > neg {
            1.0
        } else if pos == neg {
            0.5
        } else {
            0.0
        };
        decided += usize::from(pos > 0.5) + usize::from(neg <= 0.5);
    }
    let n = with.len();
    Ok((ranked / n as f64, decided as f64 / (2 * n) as f64, n))
}

fn cmd_eval(a: EvalArgs) -> Result<()> {
    set_threads(a.common.threads);
    let device = device_from_name(&a.common.device)?;
    let m = load_model_dir(&a.model, &device)?;
    let labels = read_region_classes(&a.model);
    if labels.is_empty() && region_sizes(&a.regions)?.1.is_none() {
        bail!(
            "{}: no class scores, and {} has no region_classes.txt (written by `vilbert pretrain` \
             on labelled boxes): the masked-region targets are unknown",
            a.regions.display(),
            a.model.display()
        );
    }
    let corpus = pair_corpus(&a.data, &a.regions, &m.config, &m.tokenizer, Some(&labels))?;
    let mk = masking(&m.tokenizer, &PretrainConfig::default())?;
    let mut metrics = evaluate_pretraining(&m.model, &corpus, &mk, a.seed, a.batch_size, &device);
    metrics.retain(|(k, _)| !k.ends_with("_loss"));
    let mut metrics: Vec<(String, f64)> = metrics
        .into_iter()
        .map(|(k, v)| (k.trim_start_matches("valid_").to_string(), v))
        .collect();
    let (ranked, decided, hard) =
        hard_negative_alignment(&m.model, &corpus, a.batch_size, &device)?;
    if hard > 0 {
        metrics.push(("hard_negative_ranking".into(), ranked));
        metrics.push(("hard_negative_alignment_accuracy".into(), decided));
    }
    let mut gallery_size = 0;
    if a.gallery > 0 {
        // Each image's first caption against the first `gallery` images.
        let n = corpus.images.len().min(a.gallery);
        let mut seen = vec![false; n];
        let mut captions = Vec::new();
        for p in &corpus.pairs {
            if p.image < n && !seen[p.image] {
                seen[p.image] = true;
                captions.push((p.ids.clone(), p.image));
            }
        }
        let rc = RetrievalCorpus {
            images: corpus.images[..n].to_vec(),
            captions,
        };
        let pb = progress::bar(
            rc.captions.len() as u64,
            "zero-shot retrieval",
            a.common.json,
        );
        let r = retrieval_recalls(
            &m.model,
            &rc,
            Scorer::Alignment,
            a.batch_size.max(n.min(256)),
            &device,
            &|done| pb.set_position(done as u64),
        )?;
        pb.finish_and_clear();
        gallery_size = n;
        metrics.extend(r.into_iter().map(|(k, v)| (format!("zero_shot_{k}"), v)));
        if m.model.vil_logit.is_some() {
            let pb = progress::bar(rc.captions.len() as u64, "retrieval", a.common.json);
            let r = retrieval_recalls(
                &m.model,
                &rc,
                Scorer::Retrieval,
                a.batch_size.max(n.min(256)),
                &device,
                &|done| pb.set_position(done as u64),
            )?;
            pb.finish_and_clear();
            metrics.extend(r.into_iter().map(|(k, v)| (format!("retrieval_{k}"), v)));
        }
    }
    if a.common.json {
        let map: serde_json::Map<String, serde_json::Value> = metrics
            .iter()
            .map(|(k, v)| (k.clone(), (*v).into()))
            .chain([
                ("pairs".to_string(), corpus.pairs.len().into()),
                ("hard_negatives".to_string(), hard.into()),
                ("gallery".to_string(), gallery_size.into()),
            ])
            .collect();
        println!("{}", serde_json::Value::Object(map));
    } else {
        println!(
            "{} pairs over {} images, {hard} with hard negatives, retrieval gallery {gallery_size}",
            corpus.pairs.len(),
            corpus.images.len(),
        );
        for (k, v) in &metrics {
            println!("{k:<38} {v:.4}");
        }
    }
    Ok(())
}

/// A corpus's questions on its images, answers indexed in `answers`.
fn qa_corpus(
    data: &Path,
    regions: &Path,
    cfg: &VilBertConfig,
    tok: &TextTokenizer,
    answers: &[String],
) -> Result<QaCorpus> {
    let joined = AnnotatedRegions::read(data, regions)?;
    let corpus = &joined.corpus;
    let mut out = QaCorpus {
        images: vec![],
        questions: vec![],
    };
    for a in &corpus.images {
        if a.qa.is_empty() {
            continue;
        }
        let id = a.id();
        let im = joined.regions_of(a)?;
        let p =
            prepare_image(im, cfg).map_err(|e| anyhow::anyhow!("{}: {e}", regions.display()))?;
        let image = out.images.len();
        out.images.push(p);
        let texts: Vec<String> = a.qa.iter().map(|q| q.question.clone()).collect();
        let enc = encode(tok, &texts, cfg, &format!("{} image {id}", data.display()))?;
        for (ids, q) in enc.into_iter().zip(&a.qa) {
            out.questions.push(Question {
                ids,
                image,
                answer: answers.iter().position(|x| *x == q.answer),
            });
        }
    }
    if out.questions.is_empty() {
        bail!("{}: no questions (qa)", data.display());
    }
    Ok(out)
}

fn cmd_vqa(a: FinetuneArgs) -> Result<()> {
    use tessera::vilbert::train::train_vqa;
    set_threads(a.common.threads);
    let device = device_from_name(&a.common.device)?;
    let mut tc = finetune_config(&a.run)?;
    tc.blind |= a.blind;
    let answers = sorted_unique(
        read_corpus(&a.data)?
            .images
            .iter()
            .flat_map(|x| x.qa.iter().map(|q| q.answer.clone())),
    );
    if answers.is_empty() {
        bail!("{}: no questions (qa)", a.data.display());
    }
    let (feature_size, classes) = region_sizes(&a.regions)?;
    device.seed(tc.seed);
    let n_answers = answers.len();
    let (model, cfg, tok) = start_model(
        &a.start,
        feature_size,
        classes.unwrap_or(1),
        &device,
        &|c| c.num_labels = n_answers,
    )?;
    let train = qa_corpus(&a.data, &a.regions, &cfg, &tok, &answers)?;
    let valid = match (&a.valid_data, &a.valid_regions) {
        (Some(d), Some(r)) => qa_corpus(d, r, &cfg, &tok, &answers)?,
        _ => QaCorpus {
            images: vec![],
            questions: vec![],
        },
    };
    eprintln!(
        "VQA on {} questions over {} images ({} held out), {} answers{}",
        train.questions.len(),
        train.images.len(),
        valid.questions.len(),
        answers.len(),
        if tc.blind {
            ", question only (--blind)"
        } else {
            ""
        }
    );
    let run = RunDir::create(&a.run_dir)?;
    carry_region_classes(&a.start, &run)?;
    super::vl::run_training(&a.run, &a.common, |opts| {
        train_vqa(
            model, &cfg, &tok, &answers, &train, &valid, &tc, &run, &device, opts,
        )
    })
}

/// A corpus's captions over its images (at most `limit` images, the first ones).
fn retrieval_corpus(
    data: &Path,
    regions: &Path,
    cfg: &VilBertConfig,
    tok: &TextTokenizer,
    limit: usize,
) -> Result<RetrievalCorpus> {
    let pc = pair_corpus(data, regions, cfg, tok, None)?;
    let n = pc.images.len().min(limit);
    Ok(RetrievalCorpus {
        captions: pc
            .pairs
            .into_iter()
            .filter(|p| p.image < n)
            .map(|p| (p.ids, p.image))
            .collect(),
        images: pc.images.into_iter().take(n).collect(),
    })
}

fn cmd_retrieve(a: FinetuneArgs) -> Result<()> {
    use tessera::vilbert::train::train_retrieval;
    if a.blind {
        bail!("--blind is VQA's question-only baseline; retrieval has none");
    }
    set_threads(a.common.threads);
    let device = device_from_name(&a.common.device)?;
    let tc = finetune_config(&a.run)?;
    let (feature_size, classes) = region_sizes(&a.regions)?;
    device.seed(tc.seed);
    let (model, cfg, tok) = start_model(
        &a.start,
        feature_size,
        classes.unwrap_or(1),
        &device,
        &|c| c.with_retrieval_head = true,
    )?;
    let train = retrieval_corpus(&a.data, &a.regions, &cfg, &tok, usize::MAX)?;
    let valid = match (&a.valid_data, &a.valid_regions) {
        (Some(d), Some(r)) => retrieval_corpus(d, r, &cfg, &tok, a.gallery)?,
        _ => RetrievalCorpus {
            images: vec![],
            captions: vec![],
        },
    };
    eprintln!(
        "retrieval on {} captions over {} images (held out: {} captions, gallery {})",
        train.captions.len(),
        train.images.len(),
        valid.captions.len(),
        valid.images.len()
    );
    let run = RunDir::create(&a.run_dir)?;
    carry_region_classes(&a.start, &run)?;
    super::vl::run_training(&a.run, &a.common, |opts| {
        train_retrieval(model, &cfg, &tok, &train, &valid, &tc, &run, &device, opts)
    })
}

fn cmd_predict(a: PredictArgs) -> Result<()> {
    use burn::tensor::activation::{sigmoid, softmax};
    set_threads(a.common.threads);
    let device = device_from_name(&a.common.device)?;
    let m = load_model_dir(&a.model, &device)?;
    let images = read_regions(&a.regions)?;
    let im = pick_image(&images, a.image_id.as_deref(), &a.regions)?;
    let p = prepare_image(im, &m.config)
        .map_err(|e| anyhow::anyhow!("{}: {e}", a.regions.display()))?;
    let ids = encode(
        &m.tokenizer,
        std::slice::from_ref(&a.text),
        &m.config,
        "--text",
    )?
    .remove(0);
    let b = batch(&[(ids.as_slice(), &p)]);
    let o = m.model.forward(&b, &device);
    let mut results: Vec<(String, f32)> = Vec::new();
    let kind;
    if let Some(logits) = m.model.vqa_logits(&o) {
        let path = a.model.join("answers.txt");
        let answers: Vec<String> = std::fs::read_to_string(&path)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
            .lines()
            .map(String::from)
            .collect();
        if logits.dims()[1] != answers.len() {
            bail!(
                "{}: {} answers for a head of {}",
                path.display(),
                answers.len(),
                logits.dims()[1]
            );
        }
        kind = "answers";
        results = top_k(&floats(sigmoid(logits))?, a.top_k, &|i| answers[i].clone());
    } else {
        kind = "scores";
        let align = floats(softmax(m.model.alignment_logits(&o), 1))?;
        results.push(("alignment (the text belongs to the image)".into(), align[0]));
        if let Some(s) = m.model.retrieval_logits(&o) {
            results.push(("retrieval score".into(), floats(s)?[0]));
        }
        let mask = m.tokenizer.mask_id;
        let h = m.config.hidden_size;
        for (pos, _) in ids.iter().enumerate().filter(|(_, &t)| Some(t) == mask) {
            let row = o.text.clone().reshape([b.text_len, h]).narrow(0, pos, 1);
            let scores = floats(softmax(m.model.mlm_logits(row), 1))?;
            let tok = &m.tokenizer;
            results.extend(top_k(&scores, a.top_k, &|i| {
                format!(
                    "[MASK]@{pos}: {}",
                    tok.id_to_token(i as u32).unwrap_or_default()
                )
            }));
        }
    }
    if a.common.json {
        let list: Vec<serde_json::Value> = results
            .iter()
            .map(|(n, s)| serde_json::json!({"prediction": n, "score": s}))
            .collect();
        println!(
            "{}",
            serde_json::json!({"image_id": im.image_id, "text": a.text, kind: list})
        );
    } else {
        println!("{} — {}", im.image_id, a.text);
        for (n, s) in &results {
            println!("  {s:.4}  {n}");
        }
    }
    Ok(())
}

fn cmd_bench(a: BenchArgs) -> Result<()> {
    use rand::{Rng, SeedableRng};
    use rayon::prelude::*;
    use tessera::core::optim::{Adam, AdamConfig};
    use tessera::core::parallel::{data_parallel_grads, trainable};
    use tessera::vilbert::train::{losses_of_batch, Targets};
    set_threads(a.common.threads);
    let device = device_from_name(&a.common.device)?;
    let cfg = match &a.config {
        Some(p) => VilBertConfig::from_json_file(p)?,
        None => VilBertConfig::default(),
    };
    bench_fits(
        a.batch,
        a.text_len,
        a.regions,
        cfg.v_feature_size,
        cfg.hidden_size.max(cfg.v_hidden_size),
        cfg.num_hidden_layers + cfg.v_num_hidden_layers,
    )?;
    if a.regions < 2 {
        bail!(
            "--regions {} leaves no box beside the global token",
            a.regions
        );
    }
    if a.text_len > cfg.max_text_len() {
        bail!(
            "--text-len {} exceeds the {} positions",
            a.text_len,
            cfg.max_text_len()
        );
    }
    device.seed(0);
    let model = VilBert::new(&cfg, &device);
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let (f, r) = (cfg.v_feature_size, a.regions);
    let images: Vec<ImageInput> = (0..a.batch)
        .map(|_| ImageInput {
            features: (0..r * f).map(|_| rng.random::<f32>()).collect(),
            locations: (0..r * 5).map(|_| rng.random::<f32>()).collect(),
            boxes: vec![[0.0; 4]; r - 1],
            cls_prob: None,
            width: 1.0,
            height: 1.0,
        })
        .collect();
    let vocab = cfg.vocab_size as u32;
    let texts: Vec<Vec<u32>> = (0..a.batch)
        .map(|_| {
            (0..a.text_len)
                .map(|_| rng.random_range(vocab.min(1000) / 2..vocab))
                .collect()
        })
        .collect();
    let parts = tessera::core::parallel::row_slices(a.batch);
    let workers = parts.len();
    let batch_of = |lo: usize, hi: usize| {
        let pairs: Vec<(&[u32], &ImageInput)> = (lo..hi)
            .map(|i| (texts[i].as_slice(), &images[i]))
            .collect();
        batch(&pairs)
    };
    let mut times = Vec::new();
    match a.mode.as_str() {
        "infer" => {
            for rep in 0..=a.repeats {
                let t0 = std::time::Instant::now();
                parts.par_iter().for_each(|&(lo, hi)| {
                    let o = model.forward(&batch_of(lo, hi), &device);
                    let _ = model.alignment_logits(&o).into_data();
                    let _ = o.text.into_data();
                    let _ = o.image.into_data();
                });
                if rep > 0 {
                    times.push(t0.elapsed().as_secs_f64());
                }
            }
        }
        "train" => {
            // 15% of the words and regions predicted, half the pairs not aligned.
            let c = cfg.v_target_size;
            let targets: Vec<Targets> = parts
                .iter()
                .map(|&(lo, hi)| {
                    let t = a.text_len;
                    let mut tg = Targets {
                        words: vec![],
                        regions: vec![],
                        region_targets: vec![],
                        aligned: vec![],
                    };
                    for (k, i) in (lo..hi).enumerate() {
                        for (p, &w) in texts[i]
                            .iter()
                            .enumerate()
                            .take(t.saturating_sub(1))
                            .skip(1)
                        {
                            if rng.random::<f64>() < 0.15 {
                                tg.words.push((k * t + p, w));
                            }
                        }
                        for q in 1..r {
                            if rng.random::<f64>() < 0.15 {
                                tg.regions.push(k * r + q);
                                let mut d = vec![0f32; c];
                                d[rng.random_range(0..c)] = 1.0;
                                tg.region_targets.extend(d);
                            }
                        }
                        tg.aligned.push(rng.random::<bool>());
                    }
                    tg
                })
                .collect();
            let ad = device.clone().autodiff();
            let mut model = trainable(model);
            let mut adam = Adam::new(AdamConfig {
                weight_decay: 1e-4,
                ..AdamConfig::default()
            });
            let indexed: Vec<usize> = (0..parts.len()).collect();
            for rep in 0..=a.repeats {
                let t0 = std::time::Instant::now();
                let (grads, _) = data_parallel_grads(&model, &indexed, workers, |m, _, &k| {
                    let (lo, hi) = parts[k];
                    let l = losses_of_batch(m, &batch_of(lo, hi), &targets[k], false, &ad);
                    let share = (hi - lo) as f64 / a.batch as f64;
                    let mut total = Tensor::<1>::zeros([1], &ad).require_grad();
                    for x in [l.mlm, l.region, l.alignment].into_iter().flatten() {
                        total = total + x;
                    }
                    total.mul_scalar(share)
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
        serde_json::json!({"mode": a.mode, "batch": a.batch, "text_len": a.text_len,
            "regions": a.regions}),
        times,
    );
    Ok(())
}
