//! What the vision-language commands (`vlbert`, `vilbert`) share: reading region files and
//! annotated corpora into training inputs, the text side of a network from scratch, fine-tuning
//! settings and training summaries.

use anyhow::{bail, Result};
use std::collections::HashMap;
use std::path::Path;
use tessera::core::trainer::{FinetuneConfig, TrainOutcome};
use tessera::corpora::annotated::{read_corpus, Annotation, Corpus};
use tessera::regions::files::{open, ImageRegions};

/// Every image of a region file.
pub fn read_regions(path: &Path) -> Result<Vec<ImageRegions>> {
    let mut reader = open(path)?;
    let mut images = Vec::new();
    while let Some(im) = reader.next_image()? {
        images.push(im);
    }
    Ok(images)
}

/// An annotated corpus with its region file: each annotation's regions found by image id.
pub struct AnnotatedRegions {
    pub corpus: Corpus,
    images: Vec<ImageRegions>,
    by_id: HashMap<String, usize>,
    data: std::path::PathBuf,
    regions: std::path::PathBuf,
}

impl AnnotatedRegions {
    pub fn read(data: &Path, regions: &Path) -> Result<Self> {
        let corpus = read_corpus(data)?;
        let images = read_regions(regions)?;
        let by_id = images
            .iter()
            .enumerate()
            .map(|(i, im)| (im.image_id.clone(), i))
            .collect();
        Ok(Self {
            corpus,
            images,
            by_id,
            data: data.to_path_buf(),
            regions: regions.to_path_buf(),
        })
    }

    /// The regions of an annotation's image (its file stem); an image the region file lacks is an
    /// error naming both files.
    pub fn regions_of(&self, a: &Annotation) -> Result<&ImageRegions> {
        let id = a.id();
        match self.by_id.get(&id) {
            Some(&i) => Ok(&self.images[i]),
            None => bail!(
                "{}: no regions for image `{id}` of {}",
                self.regions.display(),
                self.data.display()
            ),
        }
    }
}

/// The feature size of a region file and its class count (when it holds class scores), from
/// its first image with boxes: read image by image, not the whole file.
pub fn region_sizes(path: &Path) -> Result<(usize, Option<usize>)> {
    let mut reader = open(path)?;
    while let Some(im) = reader.next_image()? {
        if im.num_boxes() > 0 {
            let classes = im.cls_prob.as_ref().map(|p| p.len() / im.num_boxes());
            return Ok((im.feature_size(), classes));
        }
    }
    bail!("{}: no boxes in any image", path.display())
}

/// The region classes a pretraining run wrote (`region_classes.txt`, one per line), none when the
/// directory has no such file (the region file's class scores are the targets then).
pub fn read_region_classes(model_dir: &Path) -> Vec<String> {
    match std::fs::read_to_string(model_dir.join("region_classes.txt")) {
        Ok(t) => t.lines().map(String::from).collect(),
        Err(_) => vec![],
    }
}

/// Distinct strings in sorted order (answer vocabularies, region classes).
pub fn sorted_unique(items: impl Iterator<Item = String>) -> Vec<String> {
    let mut all: Vec<String> = items.collect();
    all.sort();
    all.dedup();
    all
}

/// Class targets of an image's boxes in the region file's order, `boxes` x `classes` row-major:
/// the file's class scores when it has them, else the annotation's labels one-hot (indices in
/// `labels`).
pub fn box_targets(
    a: &Annotation,
    im: &ImageRegions,
    labels: &[String],
    classes: usize,
    data: &Path,
    regions: &Path,
) -> Result<Vec<f32>> {
    let id = &im.image_id;
    if let Some(probs) = &im.cls_prob {
        if probs.len() != im.num_boxes() * classes {
            bail!(
                "{}: image `{id}` has {} class scores per box but the model predicts {classes} \
                 region classes",
                regions.display(),
                probs.len() / im.num_boxes().max(1)
            );
        }
        return Ok(probs.clone());
    }
    if a.labels.len() != im.num_boxes() {
        bail!(
            "{}: image `{id}` has {} boxes but its annotation {} labels; without class scores \
             in the region file the labels are the targets (make the regions with --boxes from \
             this corpus)",
            regions.display(),
            im.num_boxes(),
            a.labels.len()
        );
    }
    let mut t = vec![0f32; im.num_boxes() * classes];
    for (k, label) in a.labels.iter().enumerate() {
        let Some(class) = labels.iter().position(|l| l == label) else {
            bail!(
                "{}: image `{id}`: label `{label}` is not among the training labels",
                data.display()
            );
        };
        if class >= classes {
            bail!(
                "{} labels but the model predicts {classes} region classes",
                labels.len()
            );
        }
        t[k * classes + class] = 1.0;
    }
    Ok(t)
}

/// The text side of a network trained from scratch.
pub fn bert_preset(name: &str, vocab: usize) -> Result<tessera::text::config::BertConfig> {
    use tessera::text::config::BertConfig;
    let mut bert = match name {
        "tiny" => BertConfig::tiny(vocab),
        "small" => BertConfig {
            hidden_size: 256,
            num_hidden_layers: 4,
            num_attention_heads: 4,
            intermediate_size: 1024,
            max_position_embeddings: 128,
            ..BertConfig::default()
        },
        "base" => BertConfig::default(),
        other => bail!("unknown --preset `{other}` (tiny, small, base)"),
    };
    bert.vocab_size = vocab;
    Ok(bert)
}

/// A fine-tuning command's settings: its `--config` file with the flags applied, checked.
pub fn finetune_config(run: &super::TrainFlags) -> Result<FinetuneConfig> {
    let mut tc: FinetuneConfig = super::config_or_default(run.config.as_deref())?;
    set_if_some!(tc.seed, run.seed);
    set_if_some!(tc.epochs, run.epochs);
    set_if_some!(tc.lr, run.lr);
    set_if_some!(tc.batch_size, run.batch_size);
    tc.selection = run.selection(tc.selection.take())?;
    tc.validate()?;
    Ok(tc)
}

/// Run a training with Ctrl-C caught (the first stops after the step with a checkpoint), then
/// print its epochs as JSON under `--json`.
pub fn run_training(
    run: &super::TrainFlags,
    common: &super::Common,
    train: impl FnOnce(&tessera::core::trainer::RunOptions) -> Result<TrainOutcome>,
) -> Result<()> {
    tessera::core::trainer::catch_interrupts();
    let out = train(&run.options(common))?;
    if common.json {
        println!("{}", serde_json::to_string(&records_json(&out.records))?);
    }
    Ok(())
}

/// The epochs of a training run as JSON objects (epoch, loss, the metrics).
pub fn records_json(records: &[tessera::core::trainer::EpochRecord]) -> Vec<serde_json::Value> {
    records
        .iter()
        .map(|r| {
            let mut m = serde_json::Map::new();
            m.insert("epoch".into(), r.epoch.into());
            m.insert("loss".into(), r.loss.into());
            for (k, v) in &r.metrics {
                m.insert(k.clone(), (*v).into());
            }
            serde_json::Value::Object(m)
        })
        .collect()
}

/// The image of a region file a single-image command works on: `--image-id`, or its only one.
pub fn pick_image<'a>(
    images: &'a [ImageRegions],
    id: Option<&str>,
    path: &Path,
) -> Result<&'a ImageRegions> {
    match id {
        Some(id) => images
            .iter()
            .find(|im| im.image_id == id)
            .ok_or_else(|| anyhow::anyhow!("{}: no image `{id}`", path.display())),
        None => match images {
            [one] => Ok(one),
            [] => bail!("{}: no images", path.display()),
            _ => bail!(
                "{} holds {} images: choose one with --image-id",
                path.display(),
                images.len()
            ),
        },
    }
}

/// The best `k` of scores, with their names.
pub fn top_k(scores: &[f32], k: usize, names: &dyn Fn(usize) -> String) -> Vec<(String, f32)> {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&x, &y| scores[y].total_cmp(&scores[x]));
    idx.into_iter()
        .take(k)
        .map(|i| (names(i), scores[i]))
        .collect()
}

/// Refuse a benchmark whose random inputs and activations (features of every region, hidden
/// states of every position in every layer, kept for backward) cannot fit in memory, before
/// drawing them.
pub fn bench_fits(
    batch: usize,
    text_len: usize,
    regions: usize,
    feature_size: usize,
    width: usize,
    layers: usize,
) -> Result<()> {
    use tessera::core::validate::{fits_in_memory, product};
    let positions = text_len as f64 + regions as f64;
    fits_in_memory(
        &format!("--batch {batch} x (--text-len {text_len} + --regions {regions})"),
        4.0 * (product(&[batch, regions, feature_size])
            + 16.0 * batch as f64 * positions * product(&[width, layers.max(1)])),
    )
}
