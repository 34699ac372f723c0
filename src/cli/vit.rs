//! `tessera vit train|eval|features`.

use super::Common;
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use tessera::core::checkpoint::{load_safetensors, save_safetensors};
use tessera::core::device::{device_from_name, set_threads};
use tessera::core::run::RunDir;
use tessera::vit::config::VitConfig;
use tessera::vit::data::{image_batch, normalisation};
use tessera::vit::data::{read_images, stratified_split, ImageSet};
use tessera::vit::model::{load_hf, Vit};
use tessera::vit::train::{evaluate, train_vit, ClassMetrics, VitRunOptions, VitTrainConfig};

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Train from scratch (--preset) or fine-tune a checkpoint (--model) on labelled images.
    Train(Box<TrainArgs>),
    /// Top-1, top-5, per-class accuracy and the confusion matrix of a trained run.
    Eval(EvalArgs),
    /// Final hidden states and class-token features for a safetensors `pixel_values` tensor.
    Features(FeaturesArgs),
    /// Classify image files; `--attention out.png` overlays the class token's last-layer
    /// attention (mean over heads) on the first image.
    Predict(PredictArgs),
    /// Time inference or one training step on random weights and inputs (for
    /// bench/vit_vs_pytorch.sh); prints JSON.
    Bench(BenchArgs),
}

#[derive(Args, Debug)]
pub struct PredictArgs {
    /// Model directory (config.json + model.safetensors with a classification head).
    #[arg(long)]
    pub model: PathBuf,
    /// PNG or JPEG files.
    #[arg(long, required = true, num_args = 1..)]
    pub input: Vec<PathBuf>,
    /// Classes to list per image.
    #[arg(long, default_value_t = 5, value_parser = super::at_least_one())]
    pub top_k: usize,
    /// Write the class token's attention over the first image's patches as a PNG overlay.
    #[arg(long)]
    pub attention: Option<PathBuf>,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// `infer` (forward, no gradients) or `train` (forward, backward and an AdamW update).
    #[arg(long, default_value = "infer")]
    pub mode: String,
    /// Architecture preset (see `train --preset`).
    #[arg(long, default_value = "b16")]
    pub preset: String,
    #[arg(long)]
    pub hidden: Option<usize>,
    #[arg(long)]
    pub layers: Option<usize>,
    #[arg(long)]
    pub heads: Option<usize>,
    #[arg(long)]
    pub patch: Option<usize>,
    /// Image side in pixels.
    #[arg(long, default_value_t = 224, value_parser = super::at_least_one())]
    pub image: usize,
    #[arg(long, default_value_t = 8, value_parser = super::at_least_one())]
    pub batch: usize,
    /// Timed repetitions (the median is reported) after one untimed warm-up.
    #[arg(long, default_value_t = 5, value_parser = super::at_least_one())]
    pub repeats: usize,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Images: a pixel CSV (.csv/.csv.gz, e.g. data/mnist-5k/mnist_5k.csv.gz), or a directory of
    /// IDX files or CIFAR batches.
    #[arg(long)]
    pub data: PathBuf,
    /// Held-out images: another path as --data; without it a fixed stratified split of --data
    /// (--test-fraction, seeded) is held out.
    #[arg(long)]
    pub test_data: Option<PathBuf>,
    /// Fraction held out when there is no --test-data.
    #[arg(long, default_value_t = 0.1, allow_negative_numbers = true)]
    pub test_fraction: f64,
    #[arg(long)]
    pub run_dir: PathBuf,
    /// Architecture from scratch: mnist, cifar, ti16, s16, b16, l16, ti14, s14, b14, l14.
    #[arg(long, default_value = "mnist")]
    pub preset: String,
    /// Fine-tune this Hugging Face ViT/DINOv2 directory instead (a new head for the data's classes).
    #[arg(long, conflicts_with = "preset")]
    pub model: Option<PathBuf>,
    /// Width of the model from scratch (overrides the preset's).
    #[arg(long)]
    pub hidden: Option<usize>,
    /// Layers of the model from scratch (overrides the preset's).
    #[arg(long)]
    pub layers: Option<usize>,
    /// Attention heads of the model from scratch (overrides the preset's).
    #[arg(long)]
    pub heads: Option<usize>,
    #[command(flatten)]
    pub run: super::TrainFlags,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    #[arg(long)]
    pub run_dir: PathBuf,
    /// Also draw the confusion matrix as a PNG (rows: true class, columns: predicted; darker is
    /// a larger share of the row).
    #[arg(long)]
    pub confusion_png: Option<PathBuf>,
    /// The training data, if it moved since training (the run's split.json records its
    /// absolute path; the held-out indices still apply).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// The --test-data of training, if it moved.
    #[arg(long)]
    pub test_data: Option<PathBuf>,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Args, Debug)]
pub struct FeaturesArgs {
    /// Model directory (config.json + model.safetensors).
    #[arg(long)]
    pub model: PathBuf,
    /// Either one safetensors file with a float tensor `pixel_values` [B, C, H, W], already
    /// normalised, or PNG/JPEG files (resized with a bicubic filter to the size in the model's
    /// preprocessor_config.json, else its image_size, and
    /// normalised with image_mean/image_std from the model's preprocessor_config.json or
    /// config.json; 0.5/0.5 when neither says).
    #[arg(long, required = true, num_args = 1..)]
    pub input: Vec<PathBuf>,
    /// Output safetensors: `last_hidden_state` [B, 1+N, D], `pooler_output` [B, D].
    #[arg(long)]
    pub output: PathBuf,
    #[command(flatten)]
    pub common: Common,
}

pub fn run(cmd: Command) -> Result<()> {
    match cmd {
        Command::Train(a) => cmd_train(*a),
        Command::Eval(a) => cmd_eval(a),
        Command::Features(a) => cmd_features(a),
        Command::Bench(a) => cmd_bench(a),
        Command::Predict(a) => cmd_predict(a),
    }
}

fn cmd_bench(a: BenchArgs) -> Result<()> {
    use burn::tensor::{Distribution, Tensor};
    use rayon::prelude::*;
    use tessera::core::optim::{Adam, AdamConfig};
    use tessera::core::parallel::{data_parallel_grads, trainable};
    set_threads(a.common.threads);
    let device = device_from_name(&a.common.device)?;
    let mut mc = sized_preset(&a.preset, a.hidden, a.layers, a.heads)?;
    set_if_some!(mc.patch_size, a.patch);
    mc.image_size = a.image;
    mc.num_channels = 3;
    mc.num_labels = 10;
    mc.validate()?;
    device.seed(0);
    let model = Vit::new(&mc, &device);
    let slices = tessera::core::parallel::row_slices(a.batch);
    let workers = slices.len();
    let mut times = Vec::new();
    match a.mode.as_str() {
        "infer" => {
            let x: Tensor<4> = Tensor::random(
                [a.batch, 3, a.image, a.image],
                Distribution::Normal(0.0, 1.0),
                &device,
            );
            for r in 0..=a.repeats {
                let t0 = std::time::Instant::now();
                // One slice of the batch per worker thread.
                let outs: Vec<Result<usize>> = slices
                    .par_iter()
                    .map(|&(lo, hi)| {
                        let out = model.forward(x.clone().narrow(0, lo, hi - lo))?;
                        let v: Vec<f32> = out
                            .last_hidden_state
                            .into_data()
                            .try_to_vec()
                            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
                        Ok(v.len())
                    })
                    .collect();
                for o in outs {
                    o?;
                }
                if r > 0 {
                    times.push(t0.elapsed().as_secs_f64());
                }
            }
        }
        "train" => {
            let ad = device.clone().autodiff();
            let mut model = trainable(model);
            let mut adam = Adam::new(AdamConfig {
                weight_decay: 0.05,
                ..AdamConfig::default()
            });
            let x: Tensor<4> = Tensor::random(
                [a.batch, 3, a.image, a.image],
                Distribution::Normal(0.0, 1.0),
                &ad,
            );
            let labels: Vec<u32> = (0..a.batch as u32).map(|i| i % 10).collect();
            let parts = slices.clone();
            for r in 0..=a.repeats {
                let t0 = std::time::Instant::now();
                let (grads, _) = data_parallel_grads(&model, &parts, workers, |m, _, &(lo, hi)| {
                    let logits = m
                        .logits(x.clone().narrow(0, lo, hi - lo))
                        .expect("checked shapes");
                    tessera::core::fused::cross_entropy(logits, &labels[lo..hi])
                        .mul_scalar((hi - lo) as f64 / a.batch as f64)
                });
                model = adam.step(model, grads, 1e-4);
                if r > 0 {
                    times.push(t0.elapsed().as_secs_f64());
                }
            }
        }
        other => bail!("unknown --mode `{other}` (infer, train)"),
    }
    super::print_bench(
        serde_json::json!({"mode": a.mode, "preset": a.preset, "batch": a.batch, "image": a.image,
            "hidden": mc.hidden_size, "layers": mc.num_hidden_layers, "patch": mc.patch_size}),
        times,
    );
    Ok(())
}

/// A preset architecture with the width, depth and heads given on the command line (a new width
/// brings the usual 4x MLP with it).
fn sized_preset(
    preset: &str,
    hidden: Option<usize>,
    layers: Option<usize>,
    heads: Option<usize>,
) -> Result<VitConfig> {
    let mut mc = VitConfig::preset(preset)?;
    set_if_some!(mc.hidden_size, hidden);
    set_if_some!(mc.num_hidden_layers, layers);
    set_if_some!(mc.num_attention_heads, heads);
    if hidden.is_some() {
        mc.intermediate_size = Some(4 * mc.hidden_size);
    }
    Ok(mc)
}

/// Train and test sets, and the split recorded for `eval`.
/// `path` made absolute (so that a run's split.json is found from any directory).
fn absolute(path: &std::path::Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

fn data_sets(a: &TrainArgs, seed: u64) -> Result<(ImageSet, ImageSet, serde_json::Value)> {
    let all = read_images(&a.data, false)?;
    Ok(match &a.test_data {
        Some(t) => {
            let test = read_images(t, true)?;
            let split = serde_json::json!({"data": absolute(&a.data), "test_data": absolute(t)});
            (all, test, split)
        }
        None => {
            tessera::core::validate::open_fraction("--test-fraction", a.test_fraction)?;
            let (tr, te) = stratified_split(&all.labels, a.test_fraction, seed);
            let split = serde_json::json!({"data": absolute(&a.data), "test_fraction": a.test_fraction,
                "seed": seed, "test_indices": te});
            (all.subset(&tr), all.subset(&te), split)
        }
    })
}

fn cmd_train(a: TrainArgs) -> Result<()> {
    set_threads(a.common.threads);
    let device = device_from_name(&a.common.device)?;
    let (mut cfg, file_keys): (VitTrainConfig, _) =
        super::config_and_keys(a.run.config.as_deref())?;
    set_if_some!(cfg.seed, a.run.seed);
    set_if_some!(cfg.epochs, a.run.epochs);
    set_if_some!(cfg.lr, a.run.lr);
    set_if_some!(cfg.batch_size, a.run.batch_size);
    cfg.selection = a.run.selection(cfg.selection.take())?;
    cfg.validate()?;
    let (mut train, mut test, split) = data_sets(&a, cfg.seed)?;
    let (model, model_cfg) = match &a.model {
        Some(dir) => {
            let mut mc = VitConfig::from_json_file(&dir.join("config.json"))?;
            if train.channels == 1 && mc.num_channels > 1 {
                train = train.repeat_grey(mc.num_channels);
                test = test.repeat_grey(mc.num_channels);
            }
            // The backbone learnt features of inputs normalised its own way: keep feeding it
            // those, unless the config file says otherwise.
            if !file_keys.contains_key("mean") && !file_keys.contains_key("std") {
                (cfg.mean, cfg.std) = normalisation(dir, mc.num_channels)?;
            }
            mc.num_labels = 0;
            let backbone = load_hf(&mc, &dir.join("model.safetensors"), &device)?;
            mc.num_labels = train.classes;
            device.seed(cfg.seed);
            let mut m = Vit::new(&mc, &device);
            m.embeddings = backbone.embeddings;
            m.encoder = backbone.encoder;
            m.layernorm = backbone.layernorm;
            (m, mc)
        }
        None => {
            let mut mc = sized_preset(&a.preset, a.hidden, a.layers, a.heads)?;
            mc.image_size = train.height;
            mc.num_channels = train.channels;
            mc.num_labels = train.classes;
            mc.validate()?;
            device.seed(cfg.seed);
            (Vit::new(&mc, &device), mc)
        }
    };
    let run = RunDir::create(&a.run_dir)?;
    run.write_atomic("split.json", serde_json::to_string(&split)?.as_bytes())?;
    if !a.common.json {
        eprintln!(
            "ViT: {} train / {} test images of {}x{}x{}, {} classes; width {}, {} layers, patch {}",
            train.len(),
            test.len(),
            train.channels,
            train.height,
            train.width,
            train.classes,
            model_cfg.hidden_size,
            model_cfg.num_hidden_layers,
            model_cfg.patch_size
        );
        eprintln!(
            "pixels in [0, 1] normalised with mean {:?}, std {:?}",
            cfg.mean, cfg.std
        );
    }
    tessera::core::trainer::catch_interrupts();
    let records = train_vit(
        model,
        &model_cfg,
        &train,
        &test,
        &cfg,
        &run,
        &device,
        &VitRunOptions {
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

fn cmd_eval(a: EvalArgs) -> Result<()> {
    set_threads(a.common.threads);
    let device = device_from_name(&a.common.device)?;
    let run = RunDir::open(&a.run_dir)?;
    let train_toml = run.file("train.toml");
    let cfg: VitTrainConfig = toml::from_str(
        &std::fs::read_to_string(&train_toml)
            .with_context(|| format!("cannot read {}", train_toml.display()))?,
    )
    .map_err(|e| anyhow::anyhow!("{}: {e}", train_toml.display()))?;
    cfg.validate()
        .with_context(|| format!("{}", train_toml.display()))?;
    let split_path = run.file("split.json");
    let split: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&split_path)
            .with_context(|| format!("cannot read {}", split_path.display()))?,
    )
    .with_context(|| format!("{}: not JSON", split_path.display()))?;
    let recorded = |key: &str| -> Result<PathBuf> {
        split[key]
            .as_str()
            .map(PathBuf::from)
            .with_context(|| format!("{}: field `{key}` is missing", split_path.display()))
    };
    let test = match split.get("test_data") {
        Some(_) => read_images(
            &a.test_data
                .clone()
                .map_or_else(|| recorded("test_data"), Ok)?,
            true,
        )?,
        None => {
            let idx: Vec<usize> = serde_json::from_value(split["test_indices"].clone())
                .with_context(|| {
                    format!(
                        "{}: field `test_indices` is not a list of indices",
                        split_path.display()
                    )
                })?;
            let all = read_images(&a.data.clone().map_or_else(|| recorded("data"), Ok)?, false)?;
            anyhow::ensure!(
                idx.iter().all(|&i| i < all.len()),
                "{}: field `test_indices` names images past the {} of the data (is --data the \
                 data the run was trained on?)",
                split_path.display(),
                all.len()
            );
            all.subset(&idx)
        }
    };
    let mc = VitConfig::from_json_file(&run.file("config.json"))?;
    let model = load_hf(&mc, &run.file("model.safetensors"), &device)?;
    let m = evaluate(&model, &test, &cfg, &device)?;
    if let Some(path) = &a.confusion_png {
        write_confusion_png(path, &m.confusion)?;
    }
    if a.common.json {
        println!("{}", serde_json::to_string(&m)?);
    } else {
        print_metrics(&m)?;
    }
    Ok(())
}

fn print_metrics(m: &ClassMetrics) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{} test images: top-1 {:.4}  top-5 {:.4}",
        m.images, m.top1, m.top5
    )?;
    writeln!(
        out,
        "confusion matrix (rows: true class, columns: predicted), per-class accuracy:"
    )?;
    write!(out, "{:>6}", "")?;
    for c in 0..m.confusion.len() {
        write!(out, "{c:>6}")?;
    }
    writeln!(out, "{:>9}", "acc")?;
    for (c, row) in m.confusion.iter().enumerate() {
        write!(out, "{c:>6}")?;
        for v in row {
            write!(out, "{v:>6}")?;
        }
        writeln!(out, "{:>9.4}", m.per_class[c])?;
    }
    Ok(())
}

/// The side images are resized to for the model in `dir`: the `size` of its
/// preprocessor_config.json (the resolution it was trained or fine-tuned at), else the config's
/// image_size.
fn cmd_features(a: FeaturesArgs) -> Result<()> {
    set_threads(a.common.threads);
    let device = device_from_name(&a.common.device)?;
    let mc = VitConfig::from_json_file(&a.model.join("config.json"))?;
    let model = load_hf(&mc, &a.model.join("model.safetensors"), &device)?;
    let is_st = a.input.len() == 1 && a.input[0].extension().is_some_and(|e| e == "safetensors");
    let pixels = if is_st {
        let (tensors, _) = load_safetensors(&a.input[0])?;
        let Some(pixels) = tensors.get("pixel_values") else {
            bail!(
                "{}: no tensor `pixel_values` (found: {})",
                a.input[0].display(),
                tensors.keys().cloned().collect::<Vec<_>>().join(", ")
            );
        };
        if pixels.shape().len() != 4 {
            bail!(
                "{}: `pixel_values` has shape {:?}; expected [B, C, H, W]",
                a.input[0].display(),
                pixels.shape()
            );
        }
        pixels.clone()
    } else {
        image_batch(&a.model, &mc, &a.input, false)?.pixels
    };
    let out = model.forward(burn::tensor::Tensor::from_data(pixels, &device))?;
    let dims = out.last_hidden_state.dims();
    let tensors = vec![
        (
            "last_hidden_state".to_string(),
            out.last_hidden_state.into_data(),
        ),
        ("pooler_output".to_string(), out.pooler_output.into_data()),
    ];
    save_safetensors(&a.output, &tensors, HashMap::new())?;
    if !a.common.json {
        eprintln!(
            "features: last_hidden_state {:?}, pooler_output [{}, {}] -> {}",
            dims,
            dims[0],
            dims[2],
            a.output.display()
        );
    }
    Ok(())
}

/// Image files as the model in `dir` takes them.
fn cmd_predict(a: PredictArgs) -> Result<()> {
    set_threads(a.common.threads);
    let device = device_from_name(&a.common.device)?;
    let mc = VitConfig::from_json_file(&a.model.join("config.json"))?;
    let model = load_hf(&mc, &a.model.join("model.safetensors"), &device)?;
    if model.classifier.is_none() && a.attention.is_none() {
        bail!(
            "{}: the model has no classification head (num_labels = 0); use `vit features`",
            a.model.display()
        );
    }
    let names: Vec<String> = std::fs::read_to_string(a.model.join("config.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v.get("id2label").cloned())
        .and_then(|m| serde_json::from_value::<std::collections::BTreeMap<String, String>>(m).ok())
        .map(|m| {
            let mut pairs: Vec<(usize, String)> = m
                .into_iter()
                .filter_map(|(k, v)| k.parse().ok().map(|k| (k, v)))
                .collect();
            pairs.sort();
            pairs.into_iter().map(|(_, v)| v).collect()
        })
        .unwrap_or_default();
    let batch = image_batch(&a.model, &mc, &a.input, a.attention.is_some())?;
    let (out, probs, (gh, gw)) = model.forward_with_attention(
        burn::tensor::Tensor::from_data(batch.pixels, &device),
        a.attention.is_some(),
    )?;
    if let Some(head) = &model.classifier {
        let p: Vec<f32> = burn::tensor::activation::softmax(head.forward(out.pooler_output), 1)
            .into_data()
            .try_to_vec()
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let k = p.len() / a.input.len();
        for (i, f) in a.input.iter().enumerate() {
            let row = &p[i * k..(i + 1) * k];
            let mut idx: Vec<usize> = (0..k).collect();
            idx.sort_by(|&x, &y| row[y].total_cmp(&row[x]).then(x.cmp(&y)));
            let top: Vec<serde_json::Value> = idx
                .iter()
                .take(a.top_k)
                .map(|&c| {
                    let label = names.get(c).cloned().unwrap_or_else(|| c.to_string());
                    serde_json::json!({"class": c, "label": label, "probability": row[c]})
                })
                .collect();
            if a.common.json {
                println!("{}", serde_json::json!({"image": f, "top": top}));
            } else {
                let line: Vec<String> = top
                    .iter()
                    .map(|t| {
                        format!(
                            "{} {:.3}",
                            t["label"].as_str().unwrap_or_default(),
                            t["probability"].as_f64().unwrap_or_default()
                        )
                    })
                    .collect();
                println!("{}: {}", f.display(), line.join(", "));
            }
        }
    }
    if let (Some(path), Some(probs)) = (&a.attention, probs) {
        let [_, heads, l, _] = probs.dims();
        // Class-token row of the first image, averaged over heads, patches only.
        let row: Vec<f32> = probs
            .narrow(0, 0, 1)
            .narrow(2, 0, 1)
            .narrow(3, 1, l - 1)
            .reshape([heads, l - 1])
            .mean_dim(0)
            .into_data()
            .try_to_vec()
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        write_attention_overlay(
            path,
            &batch.raw[0],
            mc.num_channels,
            batch.side,
            &row,
            gh,
            gw,
        )?;
        if !a.common.json {
            eprintln!(
                "attention overlay ({gh}x{gw} patches, {heads} heads averaged) -> {}",
                path.display()
            );
        }
    }
    Ok(())
}

/// The image (grey or RGB, [0, 1], channel-first, `side` x `side`) shown at least 224 pixels
/// wide, with the attention map stretched to [0, 1], upsampled bilinearly and blended in red.
fn write_attention_overlay(
    path: &std::path::Path,
    pixels: &[f32],
    channels: usize,
    side: usize,
    attention: &[f32],
    rows: usize,
    cols: usize,
) -> Result<()> {
    let out = side.max(224) as u32;
    let (lo, hi) = attention
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    let heat: Vec<u8> = attention
        .iter()
        .map(|&v| (255.0 * (v - lo) / (hi - lo).max(1e-12)).round() as u8)
        .collect();
    let heat =
        image::GrayImage::from_raw(cols as u32, rows as u32, heat).context("attention grid")?;
    let heat = image::imageops::resize(&heat, out, out, image::imageops::FilterType::Triangle);
    let n = side * side;
    let base = image::RgbImage::from_fn(side as u32, side as u32, |x, y| {
        let i = y as usize * side + x as usize;
        let px = |c: usize| (pixels[(c.min(channels - 1)) * n + i] * 255.0).round() as u8;
        image::Rgb([px(0), px(1), px(2)])
    });
    let mut img = image::imageops::resize(&base, out, out, image::imageops::FilterType::CatmullRom);
    for (x, y, p) in img.enumerate_pixels_mut() {
        let alpha = 0.65 * heat.get_pixel(x, y)[0] as f32 / 255.0;
        for (c, target) in [255.0f32, 32.0, 0.0].iter().enumerate() {
            p[c] = ((1.0 - alpha) * p[c] as f32 + alpha * target).round() as u8;
        }
    }
    img.save(path)
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Confusion matrix as a heat map: one 24-pixel cell per (true, predicted) pair, shaded from
/// white (none of the row) to dark blue (all of it), with a grey grid.
fn write_confusion_png(path: &std::path::Path, confusion: &[Vec<u32>]) -> Result<()> {
    const CELL: u32 = 24;
    let n = confusion.len() as u32;
    let side = n * CELL + 1;
    let mut img = image::RgbImage::from_pixel(side, side, image::Rgb([160, 160, 160]));
    for (r, row) in confusion.iter().enumerate() {
        let total: u32 = row.iter().sum();
        for (c, &v) in row.iter().enumerate() {
            let share = if total == 0 {
                0.0
            } else {
                v as f32 / total as f32
            };
            let shade = |white: f32, full: f32| (white + (full - white) * share).round() as u8;
            let colour = image::Rgb([shade(255.0, 8.0), shade(255.0, 48.0), shade(255.0, 107.0)]);
            for y in 1..CELL {
                for x in 1..CELL {
                    img.put_pixel(c as u32 * CELL + x, r as u32 * CELL + y, colour);
                }
            }
        }
    }
    img.save(path)
        .with_context(|| format!("cannot write {}", path.display()))
}
