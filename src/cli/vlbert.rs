//! `tessera vlbert`: VL-BERT over region files and text.

use super::vl::{
    bench_fits, bert_preset, box_targets, finetune_config, pick_image, read_region_classes,
    read_regions, region_sizes, sorted_unique, top_k, AnnotatedRegions,
};
use super::Common;
use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use std::collections::HashMap;
use std::path::PathBuf;
use tessera::core::checkpoint::save_safetensors;
use tessera::core::device::{device_from_name, set_threads};
use tessera::core::progress;
use tessera::corpora::annotated::read_corpus;
use tessera::text::embed::read_lines;
use tessera::vlbert::config::VlBertConfig;
use tessera::vlbert::data::{encode_texts, prepare_regions};
use tessera::vlbert::eval::features;
use tessera::vlbert::eval::{find_label_words, label_word_accuracy, LabelWord};
use tessera::vlbert::load_model_dir;
use tessera::vlbert::train::{evaluate_pretraining, masking, word_starts, Pair, PairCorpus};

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the pretraining network in evaluation mode on image-text pairs (line i of --text with
    /// image i of --regions) and write its outputs: text_hidden [B, T, H] ([CLS] .. [SEP]),
    /// object_hidden [B, R, H] (the whole image first, then the boxes by descending top class
    /// score), mlm_logits [B, T, V], mvrc_logits [B, R, C]; padded positions are zeros.
    Features(FeaturesArgs),
    /// Pretrain on image-text pairs: masked language modelling with visual clues and masked RoI
    /// classification with linguistic clues, on an annotated corpus's captions and its region
    /// file. The run directory ends as a model directory.
    Pretrain(PretrainArgs),
    /// Measure a model on an annotated corpus and its region file: masked-word and masked-RoI
    /// accuracy (random masking from --seed), and the accuracy on masked object-label words with
    /// the image against the same model with the region features zeroed (the visual clues).
    Eval(EvalArgs),
    /// Fine-tune for visual question answering on an annotated corpus's questions (`qa`) and its
    /// region file: `[CLS] question [SEP] [MASK] [SEP] RoIs [END]`, the answer from the `[MASK]`
    /// slot, binary cross-entropy over the answer vocabulary of the training answers. Reports
    /// held-out accuracy per epoch; `--blind` trains and measures the question-only baseline.
    Vqa(VqaArgs),
    /// Time inference (forward) or a pretraining step (forward, backward, AdamW) of a network of
    /// the given size with random weights and inputs; prints JSON (bench/vlbert_vs_visualbert.sh).
    Bench(BenchArgs),
    /// Fine-tune for grounding referring expressions (the paper's RefCOCO+ setting) on a scenes
    /// corpus: a score per RoI for a caption `a|an A <relation> a|an B` whose subject is one
    /// object; reports held-out accuracy at IoU >= 0.5 beside the random-RoI baseline.
    Ground(VqaArgs),
    /// Ask a model about one image of a region file: with a VQA head, the top answers to
    /// --text (a question); with a grounding head, the RoIs for --text (a referring expression),
    /// best first, with their boxes; otherwise the masked-LM head's top words at each [MASK]
    /// of --text.
    Predict(PredictArgs),
}

#[derive(Args, Debug)]
pub struct PredictArgs {
    /// Model directory (a `vlbert pretrain`, `vqa` or `ground` run).
    #[arg(long)]
    pub model: PathBuf,
    /// Region file holding the image.
    #[arg(long)]
    pub regions: PathBuf,
    /// Which image of the region file [default: its only image].
    #[arg(long)]
    pub image_id: Option<String>,
    /// The question, referring expression or sentence with [MASK].
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
    #[arg(long, default_value_t = 768, value_parser = super::at_least_one())]
    pub hidden: usize,
    #[arg(long, default_value_t = 12)]
    pub layers: usize,
    #[arg(long, default_value_t = 12, value_parser = super::at_least_one())]
    pub heads: usize,
    #[arg(long, default_value_t = 30522, value_parser = super::at_least_one())]
    pub vocab: usize,
    /// Region feature size F.
    #[arg(long, default_value_t = 2048, value_parser = super::at_least_one())]
    pub feature_size: usize,
    #[arg(long, default_value_t = 8, value_parser = super::at_least_one())]
    pub batch: usize,
    /// Text tokens per pair (with [CLS] and [SEP]).
    #[arg(long, default_value_t = 20, value_parser = super::at_least_one())]
    pub text_len: usize,
    /// Regions per image (the whole image included).
    #[arg(long, default_value_t = 36, value_parser = super::at_least_one())]
    pub regions: usize,
    /// Timed repetitions (the median is reported) after one untimed warm-up.
    #[arg(long, default_value_t = 5, value_parser = super::at_least_one())]
    pub repeats: usize,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Args, Debug)]
pub struct VqaArgs {
    #[arg(long)]
    pub data: PathBuf,
    #[arg(long)]
    pub regions: PathBuf,
    #[arg(long, requires = "valid_regions")]
    pub valid_data: Option<PathBuf>,
    #[arg(long, requires = "valid_data")]
    pub valid_regions: Option<PathBuf>,
    /// Start from a VL-BERT model directory (e.g. a `vlbert pretrain` run).
    #[arg(long, conflicts_with_all = ["bert", "vocab"])]
    pub model: Option<PathBuf>,
    /// Start the text side from a Hugging Face BERT directory.
    #[arg(long, conflicts_with = "vocab")]
    pub bert: Option<PathBuf>,
    /// From scratch with this vocabulary directory and --preset.
    #[arg(long)]
    pub vocab: Option<PathBuf>,
    /// Network size from scratch: tiny (2 layers, 64 wide), small (4 layers, 256 wide), base.
    #[arg(long, default_value = "tiny", value_parser = ["tiny", "small", "base"])]
    pub preset: String,
    /// The question-only baseline: region features and boxes zeroed.
    #[arg(long)]
    pub blind: bool,
    /// Initial scale of the visual LayerNorms of a new network (official: 0, the visual terms
    /// start silent) [config.json: visual_scale_text_init, visual_scale_object_init].
    #[arg(long, allow_negative_numbers = true)]
    pub visual_scale_init: Option<f64>,
    #[arg(long)]
    pub run_dir: PathBuf,
    #[command(flatten)]
    pub run: super::TrainFlags,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Model directory (a `vlbert pretrain` run).
    #[arg(long)]
    pub model: PathBuf,
    #[arg(long)]
    pub data: PathBuf,
    #[arg(long)]
    pub regions: PathBuf,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long, default_value_t = 64, value_parser = super::at_least_one())]
    pub batch_size: usize,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Args, Debug)]
pub struct PretrainArgs {
    /// Annotated corpus (annotations.jsonl with captions, or its directory).
    #[arg(long)]
    pub data: PathBuf,
    /// Its region file (`tessera regions --boxes DATA ...`), image ids = annotation file stems.
    #[arg(long)]
    pub regions: PathBuf,
    /// Held-out corpus and region file for the per-epoch masked-word / masked-RoI accuracy.
    #[arg(long, requires = "valid_regions")]
    pub valid_data: Option<PathBuf>,
    #[arg(long, requires = "valid_data")]
    pub valid_regions: Option<PathBuf>,
    /// Text-only corpus, one text per line, mixed in as the official multitask pretraining
    /// (`text_per_pair` sequences beside each pair; `text_seq_len`, `text_min_seq_len` in
    /// --config); the model gains `aux_text_visual_embedding`.
    #[arg(long)]
    pub text_corpus: Option<PathBuf>,
    /// Start from a VL-BERT model directory.
    #[arg(long, conflicts_with_all = ["bert", "vocab"])]
    pub model: Option<PathBuf>,
    /// Initialise the text side from a Hugging Face BERT directory (e.g. data/minilm), as the
    /// official code initialises from BERT.
    #[arg(long, conflicts_with = "vocab")]
    pub bert: Option<PathBuf>,
    /// Train from scratch with this vocabulary directory (vocab.txt or tokenizer.json) and
    /// --preset.
    #[arg(long)]
    pub vocab: Option<PathBuf>,
    /// Network size from scratch: tiny (2 layers, 64 wide), small (4 layers, 256 wide), base.
    #[arg(long, default_value = "tiny", value_parser = ["tiny", "small", "base"])]
    pub preset: String,
    /// Initial scale of the visual LayerNorms of a new network (official: 0, the visual terms
    /// start silent) [config.json: visual_scale_text_init, visual_scale_object_init].
    #[arg(long, allow_negative_numbers = true)]
    pub visual_scale_init: Option<f64>,
    #[arg(long)]
    pub run_dir: PathBuf,
    #[command(flatten)]
    pub run: super::TrainFlags,
    #[command(flatten)]
    pub common: Common,
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

pub fn run(cmd: Command) -> Result<()> {
    match cmd {
        Command::Features(a) => cmd_features(a),
        Command::Pretrain(a) => cmd_pretrain(a),
        Command::Eval(a) => cmd_eval(a),
        Command::Vqa(a) => cmd_vqa(a),
        Command::Bench(a) => cmd_bench(a),
        Command::Ground(a) => cmd_ground(a),
        Command::Predict(a) => cmd_predict(a),
    }
}

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
    let encoded = encode_texts(
        &m.tokenizer,
        &texts,
        &m.config,
        &a.text.display().to_string(),
    )?;
    let prepared = images
        .iter()
        .map(|im| {
            prepare_regions(im, &m.config)
                .map_err(|e| anyhow::anyhow!("{}: {e}", a.regions.display()))
        })
        .collect::<Result<Vec<_>>>()?;
    let pb = progress::bar(texts.len() as u64, "features", a.common.json);
    let f = features(
        &m.model,
        &m.config,
        &encoded,
        &prepared,
        a.batch_size,
        &device,
        &|done| pb.set_position(done as u64),
    )?;
    pb.finish_and_clear();
    use burn::tensor::TensorData;
    let (b, t, r, h) = (f.batch, f.text_len, f.regions, f.hidden);
    let mut tensors = vec![
        (
            "text_hidden".to_string(),
            TensorData::new(f.text_hidden, [b, t, h]),
        ),
        (
            "object_hidden".to_string(),
            TensorData::new(f.object_hidden, [b, r, h]),
        ),
    ];
    if f.vocab > 0 {
        tensors.push((
            "mlm_logits".into(),
            TensorData::new(f.mlm_logits, [b, t, f.vocab]),
        ));
    }
    if f.classes > 0 {
        tensors.push((
            "mvrc_logits".into(),
            TensorData::new(f.mvrc_logits, [b, r, f.classes]),
        ));
    }
    let mut meta = HashMap::new();
    meta.insert(
        "image_ids".to_string(),
        serde_json::to_string(&images.iter().map(|i| &i.image_id).collect::<Vec<_>>())?,
    );
    meta.insert(
        "text_lengths".to_string(),
        serde_json::to_string(&encoded.iter().map(|e| e.ids.len()).collect::<Vec<_>>())?,
    );
    meta.insert(
        "region_counts".to_string(),
        serde_json::to_string(&prepared.iter().map(|p| p.len()).collect::<Vec<_>>())?,
    );
    save_safetensors(&a.output, &tensors, meta)?;
    eprintln!(
        "wrote {} pairs to {} (text_hidden [{b}, {t}, {h}], object_hidden [{b}, {r}, {h}])",
        b,
        a.output.display()
    );
    Ok(())
}

/// A corpus's captions paired with its images' regions, and the masked-RoI targets.
fn pair_corpus(
    data: &std::path::Path,
    regions: &std::path::Path,
    cfg: &VlBertConfig,
    tok: &tessera::text::tokenize::TextTokenizer,
    classes: &mut Vec<String>,
) -> Result<(PairCorpus, Vec<LabelWord>)> {
    let joined = AnnotatedRegions::read(data, regions)?;
    let corpus = &joined.corpus;
    let mut prepared = Vec::new();
    let mut targets = Vec::new();
    let mut pairs = Vec::new();
    let mut label_words = Vec::new();
    let learn_classes = classes.is_empty();
    if learn_classes {
        *classes = sorted_unique(corpus.images.iter().flat_map(|a| a.labels.iter().cloned()));
    }
    for a in &corpus.images {
        if a.captions.is_empty() {
            continue;
        }
        let id = a.id();
        let im = joined.regions_of(a)?;
        let p =
            prepare_regions(im, cfg).map_err(|e| anyhow::anyhow!("{}: {e}", regions.display()))?;
        let c = cfg.visual_region_classes;
        // The boxes' targets in the file's order, then in VL-BERT's (row 0: the whole image).
        let by_file = box_targets(a, im, classes, c, data, regions)?;
        let mut t = vec![0f32; p.len() * c];
        for (k, &i) in p.order.iter().enumerate() {
            t[(k + 1) * c..(k + 2) * c].copy_from_slice(&by_file[i * c..(i + 1) * c]);
        }
        let image = prepared.len();
        prepared.push(p);
        targets.push(t);
        let enc = encode_texts(
            tok,
            &a.captions,
            cfg,
            &format!("{} image {id}", data.display()),
        )?;
        let mut labels: Vec<String> = a.labels.clone();
        labels.sort();
        labels.dedup();
        let label_ids: Vec<Vec<u32>> = tok
            .encode(
                &labels
                    .iter()
                    .map(|l| (l.as_str(), None))
                    .collect::<Vec<_>>(),
            )?
            .into_iter()
            .map(|e| e.ids[1..e.ids.len().saturating_sub(1)].to_vec())
            .collect();
        for e in enc {
            for positions in find_label_words(&e.ids, &label_ids) {
                label_words.push(LabelWord {
                    pair: pairs.len(),
                    positions,
                });
            }
            pairs.push(Pair {
                word_start: word_starts(tok, &e.ids),
                ids: e.ids,
                image,
            });
        }
    }
    if pairs.is_empty() {
        bail!("{}: no captions", data.display());
    }
    Ok((
        PairCorpus {
            images: prepared,
            targets,
            pairs,
        },
        label_words,
    ))
}

fn cmd_pretrain(a: PretrainArgs) -> Result<()> {
    use tessera::core::run::RunDir;
    use tessera::text::tokenize::TextTokenizer;
    use tessera::vlbert::config::VlBertConfig;
    use tessera::vlbert::model::VlBert;
    use tessera::vlbert::train::{pretrain, PretrainConfig};
    set_threads(a.common.threads);
    let device = device_from_name(&a.common.device)?;
    let mut tc: PretrainConfig = super::config_or_default(a.run.config.as_deref())?;
    set_if_some!(tc.seed, a.run.seed);
    set_if_some!(tc.epochs, a.run.epochs);
    set_if_some!(tc.lr, a.run.lr);
    set_if_some!(tc.batch_size, a.run.batch_size);
    tc.selection = a.run.selection(tc.selection.take())?;
    tc.validate()?;
    // The region classes: from the region file's class scores, else the corpus's labels.
    let (feature_size, file_classes) = region_sizes(&a.regions)?;
    let mut classes: Vec<String> = Vec::new();
    if file_classes.is_none() {
        let all = sorted_unique(
            read_corpus(&a.data)?
                .images
                .iter()
                .flat_map(|x| x.labels.iter().cloned()),
        );
        if all.is_empty() {
            bail!(
                "{}: no class scores in the region file and no box labels in the corpus: \
                 masked-RoI classification has no targets",
                a.regions.display()
            );
        }
        classes = all;
    }
    let n_classes = file_classes.unwrap_or(classes.len());
    device.seed(tc.seed);
    let (model, cfg, tok) = match (&a.model, &a.bert, &a.vocab) {
        (Some(dir), _, _) => {
            let m = load_model_dir(dir, &device)?;
            (m.model, m.config, m.tokenizer)
        }
        (None, Some(dir), None) => {
            let bert = tessera::text::config::BertConfig::from_json_file(&dir.join("config.json"))?;
            let mut cfg = VlBertConfig::from_bert(&bert, feature_size, n_classes);
            set_visual_scale(&mut cfg, a.visual_scale_init)?;
            let tok = TextTokenizer::from_dir(dir, cfg.max_text_len())?;
            let model = tessera::vlbert::model::from_bert(&cfg, dir, &device)?;
            (model, cfg, tok)
        }
        (None, None, Some(dir)) => {
            let tok = TextTokenizer::from_dir(dir, 64)?;
            let bert = bert_preset(&a.preset, tok.vocab_size())?;
            let mut cfg = VlBertConfig::from_bert(&bert, feature_size, n_classes);
            set_visual_scale(&mut cfg, a.visual_scale_init)?;
            let tok = TextTokenizer::from_dir(dir, cfg.max_text_len())?;
            (VlBert::new(&cfg, &device), cfg, tok)
        }
        _ => bail!("give --model DIR, --bert DIR (a Hugging Face BERT) or --vocab DIR"),
    };
    if cfg.visual_region_classes != n_classes {
        bail!(
            "the model predicts {} region classes but the data has {n_classes}",
            cfg.visual_region_classes
        );
    }
    let (model, mut cfg) = (model, cfg);
    let texts = match &a.text_corpus {
        Some(path) => Some(tessera::vlbert::train::TextCorpus::read(path, &tok)?),
        None => None,
    };
    let model = if texts.is_some() {
        tc.check_text_fits(&cfg)?;
        model.with_text_only(&mut cfg, &device)
    } else {
        model
    };
    let (train, _) = pair_corpus(&a.data, &a.regions, &cfg, &tok, &mut classes)?;
    let valid = match (&a.valid_data, &a.valid_regions) {
        (Some(d), Some(r)) => pair_corpus(d, r, &cfg, &tok, &mut classes)?.0,
        _ => PairCorpus {
            images: vec![],
            targets: vec![],
            pairs: vec![],
        },
    };
    eprintln!(
        "pretraining on {} pairs over {} images ({} held out), {} region classes{}",
        train.pairs.len(),
        train.images.len(),
        valid.pairs.len(),
        n_classes,
        texts.as_ref().map_or(String::new(), |t| format!(
            ", {} text-only lines ({} per pair)",
            t.lines.len(),
            tc.text_per_pair
        ))
    );
    let run = RunDir::create(&a.run_dir)?;
    if !classes.is_empty() {
        run.write_atomic("region_classes.txt", (classes.join("\n") + "\n").as_bytes())?;
    }
    super::vl::run_training(&a.run, &a.common, |opts| {
        pretrain(
            model,
            &cfg,
            &tok,
            &train,
            texts.as_ref(),
            &valid,
            &tc,
            &run,
            &device,
            opts,
        )
    })
}

fn cmd_eval(a: EvalArgs) -> Result<()> {
    set_threads(a.common.threads);
    let device = device_from_name(&a.common.device)?;
    let m = load_model_dir(&a.model, &device)?;
    let mut classes = read_region_classes(&a.model);
    let (corpus, words) = pair_corpus(&a.data, &a.regions, &m.config, &m.tokenizer, &mut classes)?;
    let tc = tessera::vlbert::train::PretrainConfig::default();
    let mk = masking(&m.tokenizer, &tc)?;
    let mut metrics = evaluate_pretraining(
        &m.model,
        &m.config,
        &corpus,
        &mk,
        a.seed,
        a.batch_size,
        &device,
    );
    for (name, zero) in [
        ("label_word_accuracy", false),
        ("label_word_accuracy_features_zeroed", true),
    ] {
        let acc = label_word_accuracy(
            &m.model,
            &m.config,
            &corpus,
            &words,
            mk.words.mask_token,
            zero,
            a.batch_size,
            &device,
        );
        metrics.push((name.to_string(), acc));
    }
    metrics.retain(|(k, _)| !k.ends_with("_loss"));
    let metrics: Vec<(String, f64)> = metrics
        .into_iter()
        .map(|(k, v)| (k.trim_start_matches("valid_").to_string(), v))
        .collect();
    if a.common.json {
        let map: serde_json::Map<String, serde_json::Value> = metrics
            .iter()
            .map(|(k, v)| (k.clone(), (*v).into()))
            .chain([
                ("pairs".to_string(), corpus.pairs.len().into()),
                ("label_words".to_string(), words.len().into()),
            ])
            .collect();
        println!("{}", serde_json::Value::Object(map));
    } else {
        println!(
            "{} pairs over {} images, {} masked label words",
            corpus.pairs.len(),
            corpus.images.len(),
            words.len()
        );
        for (k, v) in &metrics {
            println!("{k:<38} {v:.4}");
        }
    }
    Ok(())
}

/// A corpus's questions on its images' regions, answers indexed in `answers` (learnt from the
/// corpus when empty).
fn qa_corpus(
    data: &std::path::Path,
    regions: &std::path::Path,
    cfg: &VlBertConfig,
    tok: &tessera::text::tokenize::TextTokenizer,
    answers: &[String],
) -> Result<tessera::vlbert::train::QaCorpus> {
    use tessera::vlbert::train::{question_input, QaCorpus, Question};
    let joined = AnnotatedRegions::read(data, regions)?;
    let corpus = &joined.corpus;
    let mask_id = tok
        .mask_id
        .ok_or_else(|| anyhow::anyhow!("the vocabulary lacks [MASK]"))?;
    let sep_id = tok
        .token_to_id("[SEP]")
        .ok_or_else(|| anyhow::anyhow!("the vocabulary lacks [SEP]"))?;
    let mut prepared = Vec::new();
    let mut questions = Vec::new();
    for a in &corpus.images {
        if a.qa.is_empty() {
            continue;
        }
        let id = a.id();
        let im = joined.regions_of(a)?;
        let p =
            prepare_regions(im, cfg).map_err(|e| anyhow::anyhow!("{}: {e}", regions.display()))?;
        let image = prepared.len();
        prepared.push(p);
        let texts: Vec<String> = a.qa.iter().map(|q| q.question.clone()).collect();
        let mut limited = cfg.clone();
        // Two more tokens follow the question: [MASK] [SEP].
        limited.max_position_embeddings = cfg.max_position_embeddings.saturating_sub(2);
        let enc = encode_texts(
            tok,
            &texts,
            &limited,
            &format!("{} image {id}", data.display()),
        )?;
        for (e, q) in enc.iter().zip(&a.qa) {
            let (ids, type_ids, answer_position) = question_input(&e.ids, mask_id, sep_id);
            questions.push(Question {
                ids,
                type_ids,
                answer_position,
                image,
                answer: answers.iter().position(|x| *x == q.answer),
            });
        }
    }
    if questions.is_empty() {
        bail!("{}: no questions (qa)", data.display());
    }
    Ok(QaCorpus {
        images: prepared,
        questions,
    })
}

fn cmd_vqa(a: VqaArgs) -> Result<()> {
    use tessera::core::run::RunDir;
    use tessera::vlbert::train::{train_vqa, QaCorpus};
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
    let feature_size = region_sizes(&a.regions)?.0;
    device.seed(tc.seed);
    let n_answers = answers.len();
    let (model, cfg, tok) = finetune_model(&a, feature_size, &device, &|c| {
        c.answer_vocab_size = n_answers
    })?;
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
    super::vl::run_training(&a.run, &a.common, |opts| {
        train_vqa(
            model, &cfg, &tok, &answers, &train, &valid, &tc, &run, &device, opts,
        )
    })
}

/// `--visual-scale-init` on a new network's config, then the config's checks.
fn set_visual_scale(cfg: &mut VlBertConfig, scale: Option<f64>) -> Result<()> {
    if let Some(v) = scale {
        cfg.visual_scale_text_init = v;
        cfg.visual_scale_object_init = v;
    }
    cfg.validate()
}

fn cmd_bench(a: BenchArgs) -> Result<()> {
    use rand::{Rng, SeedableRng};
    use rayon::prelude::*;
    use tessera::core::optim::{Adam, AdamConfig};
    use tessera::core::parallel::{data_parallel_grads, trainable};
    use tessera::vlbert::data::{batch, Example, PreparedRegions};
    use tessera::vlbert::model::VlBert;
    use tessera::vlbert::train::{pretrain_losses, MaskedPair, Pair, PairCorpus};
    set_threads(a.common.threads);
    let device = device_from_name(&a.common.device)?;
    let cfg = VlBertConfig {
        vocab_size: a.vocab,
        hidden_size: a.hidden,
        visual_size: a.hidden,
        image_final_dim: a.hidden,
        num_hidden_layers: a.layers,
        num_attention_heads: a.heads,
        intermediate_size: 4 * a.hidden,
        object_feature_size: a.feature_size,
        visual_region_classes: 1601,
        max_position_embeddings: 512.max(a.text_len + 2),
        ..VlBertConfig::default()
    };
    cfg.validate()?;
    bench_fits(
        a.batch,
        a.text_len,
        a.regions,
        a.feature_size,
        a.hidden,
        a.layers,
    )?;
    if a.vocab < 2 {
        bail!("--vocab {} leaves no tokens to draw", a.vocab);
    }
    device.seed(0);
    let model = VlBert::new(&cfg, &device);
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let r = a.regions;
    let images: Vec<PreparedRegions> = (0..a.batch)
        .map(|_| PreparedRegions {
            boxes: (0..r)
                .map(|_| {
                    let (x, y) = (
                        rng.random_range(0.0..300.0f32),
                        rng.random_range(0.0..300.0f32),
                    );
                    [
                        x,
                        y,
                        x + rng.random_range(10.0..300.0f32),
                        y + rng.random_range(10.0..300.0f32),
                    ]
                })
                .collect(),
            features: (0..r * a.feature_size)
                .map(|_| rng.random::<f32>())
                .collect(),
            cls_prob: None,
            width: 800.0,
            height: 600.0,
            order: (0..r - 1).collect(),
        })
        .collect();
    let pairs: Vec<Pair> = (0..a.batch)
        .map(|i| Pair {
            ids: (0..a.text_len)
                .map(|_| rng.random_range(a.vocab.min(1000) as u32 / 2..a.vocab as u32))
                .collect(),
            word_start: vec![true; a.text_len],
            image: i,
        })
        .collect();
    let parts = tessera::core::parallel::row_slices(a.batch);
    let workers = parts.len();
    let mut times = Vec::new();
    match a.mode.as_str() {
        "infer" => {
            for rep in 0..=a.repeats {
                let t0 = std::time::Instant::now();
                parts.par_iter().for_each(|&(lo, hi)| {
                    let examples: Vec<Example> = (lo..hi)
                        .map(|i| Example {
                            ids: &pairs[i].ids,
                            type_ids: &[],
                            regions: &images[i],
                            masked: &[],
                        })
                        .collect();
                    let b = batch(&examples, &cfg);
                    let out = model.forward(&b, &device);
                    let _ = out.sequence.into_data();
                });
                if rep > 0 {
                    times.push(t0.elapsed().as_secs_f64());
                }
            }
        }
        "train" => {
            // 15% of the words and of the regions predicted, as the pretraining objective.
            let targets: Vec<Vec<f32>> = (0..a.batch)
                .map(|_| {
                    let mut t = vec![0f32; r * 1601];
                    for k in 1..r {
                        t[k * 1601 + rng.random_range(0..1601)] = 1.0;
                    }
                    t
                })
                .collect();
            let corpus = PairCorpus {
                images,
                targets,
                pairs,
            };
            let items: Vec<MaskedPair> = (0..a.batch)
                .map(|i| {
                    let ids = &corpus.pairs[i].ids;
                    let picked: Vec<usize> = (1..a.text_len.saturating_sub(1))
                        .filter(|_| rng.random::<f64>() < 0.15)
                        .collect();
                    let mut input = ids.clone();
                    for &p in &picked {
                        input[p] = (a.vocab as u32 - 1).min(103);
                    }
                    let chosen: Vec<bool> = (0..r)
                        .map(|k| k > 0 && rng.random::<f64>() < 0.15)
                        .collect();
                    MaskedPair {
                        pair: i,
                        input,
                        mlm_targets: picked.iter().map(|&p| (p, ids[p])).collect(),
                        masked: chosen.clone(),
                        chosen,
                        texts: vec![],
                    }
                })
                .collect();
            let ad = device.clone().autodiff();
            let mut model = trainable(model);
            let mut adam = Adam::new(AdamConfig {
                weight_decay: 1e-4,
                ..AdamConfig::default()
            });
            for rep in 0..=a.repeats {
                let t0 = std::time::Instant::now();
                let (grads, _) = data_parallel_grads(&model, &parts, workers, |m, _, &(lo, hi)| {
                    let l = pretrain_losses(m, &cfg, &corpus, &items[lo..hi], false, &ad);
                    let share = (hi - lo) as f64 / a.batch as f64;
                    let mut total = burn::tensor::Tensor::<1>::zeros([1], &ad).require_grad();
                    if let Some(x) = l.mlm {
                        total = total + x;
                    }
                    if let Some(x) = l.mvrc {
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
        serde_json::json!({"mode": a.mode, "batch": a.batch, "hidden": a.hidden,
            "layers": a.layers, "text_len": a.text_len, "regions": a.regions}),
        times,
    );
    Ok(())
}

/// The network a fine-tuning command starts from (a VL-BERT directory, a Hugging Face BERT, or a
/// preset from scratch), with the task head `set_head` puts into its config.
fn finetune_model(
    a: &VqaArgs,
    feature_size: usize,
    device: &burn::tensor::Device,
    set_head: &dyn Fn(&mut VlBertConfig),
) -> Result<(
    tessera::vlbert::model::VlBert,
    VlBertConfig,
    tessera::text::tokenize::TextTokenizer,
)> {
    use tessera::text::tokenize::TextTokenizer;
    use tessera::vlbert::model::{from_bert, load_with_task_head, VlBert};
    Ok(match (&a.model, &a.bert, &a.vocab) {
        (Some(dir), _, _) => {
            let mut cfg = VlBertConfig::from_json_file(&dir.join("config.json"))?;
            cfg.answer_vocab_size = 0;
            cfg.with_grounding_head = false;
            // The task networks have no text-only sequences (the official VQA and RefCOCO+
            // networks have no `aux_text_visual_embedding`).
            cfg.with_text_only = false;
            set_head(&mut cfg);
            cfg.validate()?;
            let tok = TextTokenizer::from_dir(dir, cfg.max_text_len())?;
            let model = load_with_task_head(&cfg, &dir.join("model.safetensors"), device)?;
            (model, cfg, tok)
        }
        (None, Some(dir), None) => {
            let bert = tessera::text::config::BertConfig::from_json_file(&dir.join("config.json"))?;
            let mut cfg = VlBertConfig::from_bert(&bert, feature_size, 1);
            set_head(&mut cfg);
            set_visual_scale(&mut cfg, a.visual_scale_init)?;
            let tok = TextTokenizer::from_dir(dir, cfg.max_text_len())?;
            (from_bert(&cfg, dir, device)?, cfg, tok)
        }
        (None, None, Some(dir)) => {
            let tok = TextTokenizer::from_dir(dir, 64)?;
            let bert = bert_preset(&a.preset, tok.vocab_size())?;
            let mut cfg = VlBertConfig::from_bert(&bert, feature_size, 1);
            set_head(&mut cfg);
            set_visual_scale(&mut cfg, a.visual_scale_init)?;
            let tok = TextTokenizer::from_dir(dir, cfg.max_text_len())?;
            (VlBert::new(&cfg, device), cfg, tok)
        }
        _ => bail!("give --model DIR, --bert DIR (a Hugging Face BERT) or --vocab DIR"),
    })
}

/// Referring expressions of a scenes corpus: each caption `a|an A <relation> a|an B` whose
/// subject A is one object of the image (exactly one A-labelled object stands in the relation to
/// a B-labelled one) refers to that object.
fn ground_corpus(
    data: &std::path::Path,
    regions: &std::path::Path,
    cfg: &VlBertConfig,
    tok: &tessera::text::tokenize::TextTokenizer,
) -> Result<tessera::vlbert::train::GroundCorpus> {
    use tessera::corpora::scenes::{relation, RELATIONS};
    use tessera::vlbert::train::{iou, Expression, GroundCorpus};
    let joined = AnnotatedRegions::read(data, regions)?;
    let corpus = &joined.corpus;
    let strip = |t: &str| -> String {
        t.trim()
            .trim_start_matches("an ")
            .trim_start_matches("a ")
            .to_string()
    };
    let mut prepared = Vec::new();
    let mut expressions = Vec::new();
    for a in &corpus.images {
        let mut found: Vec<(String, [f32; 4])> = Vec::new();
        for c in &a.captions {
            let Some((r, (left, right))) = RELATIONS
                .iter()
                .enumerate()
                .find_map(|(r, rel)| c.split_once(&format!(" {rel} ")).map(|x| (r, x)))
            else {
                continue;
            };
            let (subject, object) = (strip(left), strip(right));
            let referents: Vec<usize> = (0..a.labels.len())
                .filter(|&i| {
                    a.labels[i] == subject
                        && (0..a.labels.len()).any(|j| {
                            j != i && a.labels[j] == object && relation(r, &a.boxes[i], &a.boxes[j])
                        })
                })
                .collect();
            if let [i] = referents[..] {
                found.push((c.clone(), a.boxes[i]));
            }
        }
        if found.is_empty() {
            continue;
        }
        let id = a.id();
        let im = joined.regions_of(a)?;
        let p =
            prepare_regions(im, cfg).map_err(|e| anyhow::anyhow!("{}: {e}", regions.display()))?;
        // IoU of each RoI (whole image first) with the referent, in the file's pixels.
        let whole = [0.0, 0.0, im.width - 1.0, im.height - 1.0];
        let roi_boxes: Vec<[f32; 4]> = std::iter::once(whole)
            .chain(p.order.iter().map(|&k| im.boxes[k]))
            .collect();
        let image = prepared.len();
        prepared.push(p);
        let texts: Vec<String> = found.iter().map(|(c, _)| c.clone()).collect();
        let enc = encode_texts(tok, &texts, cfg, &format!("{} image {id}", data.display()))?;
        for (e, (_, gt)) in enc.into_iter().zip(&found) {
            expressions.push(Expression {
                ids: e.ids,
                image,
                iou: roi_boxes.iter().map(|b| iou(b, gt)).collect(),
            });
        }
    }
    if expressions.is_empty() {
        bail!(
            "{}: no captions that refer to exactly one object (`a|an A <relation> a|an B`)",
            data.display()
        );
    }
    Ok(GroundCorpus {
        images: prepared,
        expressions,
    })
}

fn cmd_ground(a: VqaArgs) -> Result<()> {
    use tessera::core::run::RunDir;
    use tessera::vlbert::train::{train_grounding, GroundCorpus};
    if a.blind {
        bail!("--blind is VQA's question-only baseline; grounding reports its random-box baseline (valid_random_box)");
    }
    set_threads(a.common.threads);
    let device = device_from_name(&a.common.device)?;
    let tc = finetune_config(&a.run)?;
    let feature_size = region_sizes(&a.regions)?.0;
    device.seed(tc.seed);
    let (model, cfg, tok) =
        finetune_model(&a, feature_size, &device, &|c| c.with_grounding_head = true)?;
    let train = ground_corpus(&a.data, &a.regions, &cfg, &tok)?;
    let valid = match (&a.valid_data, &a.valid_regions) {
        (Some(d), Some(r)) => ground_corpus(d, r, &cfg, &tok)?,
        _ => GroundCorpus {
            images: vec![],
            expressions: vec![],
        },
    };
    eprintln!(
        "grounding on {} referring expressions over {} images ({} held out)",
        train.expressions.len(),
        train.images.len(),
        valid.expressions.len()
    );
    let run = RunDir::create(&a.run_dir)?;
    super::vl::run_training(&a.run, &a.common, |opts| {
        train_grounding(model, &cfg, &tok, &train, &valid, &tc, &run, &device, opts)
    })
}

fn cmd_predict(a: PredictArgs) -> Result<()> {
    use burn::tensor::activation::{sigmoid, softmax};
    use tessera::vlbert::data::{batch, Example};
    use tessera::vlbert::train::{question_input, Expression, GroundCorpus, QaCorpus, Question};
    set_threads(a.common.threads);
    let device = device_from_name(&a.common.device)?;
    let m = load_model_dir(&a.model, &device)?;
    let images = read_regions(&a.regions)?;
    let im = pick_image(&images, a.image_id.as_deref(), &a.regions)?;
    let p = prepare_regions(im, &m.config)
        .map_err(|e| anyhow::anyhow!("{}: {e}", a.regions.display()))?;
    let top = |scores: Vec<f32>, names: &dyn Fn(usize) -> String| top_k(&scores, a.top_k, names);
    let floats = |t: burn::tensor::Tensor<2>| -> Result<Vec<f32>> {
        t.into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .map_err(|e| anyhow::anyhow!("{e:?}"))
    };
    let (kind, results): (&str, Vec<(String, f32)>) = if m.model.final_mlp.is_some() {
        let answers: Vec<String> = std::fs::read_to_string(a.model.join("answers.txt"))
            .map_err(|e| anyhow::anyhow!("{}: {e}", a.model.join("answers.txt").display()))?
            .lines()
            .map(String::from)
            .collect();
        let mut limited = m.config.clone();
        limited.max_position_embeddings = m.config.max_position_embeddings.saturating_sub(2);
        let enc = encode_texts(
            &m.tokenizer,
            std::slice::from_ref(&a.text),
            &limited,
            "--text",
        )?;
        let mask = m.tokenizer.mask_id.unwrap_or(0);
        let sep = m.tokenizer.token_to_id("[SEP]").unwrap_or(0);
        let (ids, type_ids, answer_position) = question_input(&enc[0].ids, mask, sep);
        let corpus = QaCorpus {
            images: vec![p],
            questions: vec![Question {
                ids,
                type_ids,
                answer_position,
                image: 0,
                answer: None,
            }],
        };
        let q: Vec<&Question> = corpus.questions.iter().collect();
        let logits =
            tessera::vlbert::train::vqa_logits(&m.model, &m.config, &corpus, &q, false, &device)?;
        if logits.dims()[1] != answers.len() {
            bail!(
                "{}: {} answers for a head of {}",
                a.model.join("answers.txt").display(),
                answers.len(),
                logits.dims()[1]
            );
        }
        let scores = floats(sigmoid(logits))?;
        ("answers", top(scores, &|i| answers[i].clone()))
    } else if m.model.grounding.is_some() {
        let enc = encode_texts(
            &m.tokenizer,
            std::slice::from_ref(&a.text),
            &m.config,
            "--text",
        )?;
        let whole = [0.0, 0.0, im.width - 1.0, im.height - 1.0];
        let boxes: Vec<[f32; 4]> = std::iter::once(whole)
            .chain(p.order.iter().map(|&k| im.boxes[k]))
            .collect();
        let n = boxes.len();
        let corpus = GroundCorpus {
            images: vec![p],
            expressions: vec![Expression {
                ids: enc[0].ids.clone(),
                image: 0,
                iou: vec![0.0; n],
            }],
        };
        let e: Vec<&Expression> = corpus.expressions.iter().collect();
        let logits =
            tessera::vlbert::train::ground_logits(&m.model, &m.config, &corpus, &e, &device)?;
        let scores = floats(sigmoid(logits))?;
        let name = |i: usize| {
            let b = boxes[i];
            let what = if i == 0 { "whole image" } else { "box" };
            format!(
                "{what} [{:.0}, {:.0}, {:.0}, {:.0}]",
                b[0], b[1], b[2], b[3]
            )
        };
        ("regions", top(scores[..n].to_vec(), &name))
    } else {
        let enc = encode_texts(
            &m.tokenizer,
            std::slice::from_ref(&a.text),
            &m.config,
            "--text",
        )?;
        let mask = m
            .tokenizer
            .mask_id
            .ok_or_else(|| anyhow::anyhow!("the vocabulary lacks [MASK]"))?;
        let positions: Vec<usize> = (0..enc[0].ids.len())
            .filter(|&i| enc[0].ids[i] == mask)
            .collect();
        if positions.is_empty() {
            bail!("--text has no [MASK] to fill (this model has no VQA or grounding head)");
        }
        let examples = [Example {
            ids: &enc[0].ids,
            type_ids: &enc[0].type_ids,
            regions: &p,
            masked: &[],
        }];
        let b = batch(&examples, &m.config);
        let out = m.model.forward(&b, &device);
        let h = m.model.hidden_size();
        let rows = out.text.reshape([b.text_len, h]);
        let mut results = Vec::new();
        for &pos in &positions {
            let row = rows.clone().narrow(0, pos, 1);
            let logits = m
                .model
                .mlm_logits(row)
                .ok_or_else(|| anyhow::anyhow!("the model has no masked-LM head"))?;
            let scores = floats(softmax(logits, 1))?;
            let tok = &m.tokenizer;
            results.extend(top(scores, &|i| {
                format!(
                    "[MASK]@{pos}: {}",
                    tok.id_to_token(i as u32).unwrap_or_default()
                )
            }));
        }
        ("words", results)
    };
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
