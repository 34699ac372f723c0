//! VideoBERT's network: one BERT over `[CLS] text [>] visual words [SEP]` whose vocabulary is the
//! text WordPiece vocabulary, `[>]` and the visual words ([`VocabLayout`]), with BERT's
//! pretraining heads: the masked-token head (tied to the word embeddings) over the whole joint
//! vocabulary serves both masked language modelling and masked frame modelling (named choice:
//! one softmax over text and visual words, as one vocabulary; the paper does not split it), and
//! the linguistic-visual alignment classifier on the pooled `[CLS]` (BERT's next-sentence head).
//!
//! A model directory is a Hugging Face `BertForPreTraining` directory (`bert.*`,
//! `cls.predictions.*`, `cls.seq_relationship.*`; `config.json` with the BERT keys plus
//! `text_vocab_size` and `visual_words`), so `transformers` loads the network as it is.

use super::data::VocabLayout;
use crate::core::attention::normal_init;
use crate::core::checkpoint::{load_named, load_safetensors};
use crate::core::embeddings::HF_EMBEDDING_RENAMES;
use crate::core::encoder::HF_BERT_LAYER_RENAMES;
use crate::text::config::BertConfig;
use crate::text::model::{Bert, TokenBatch};
use anyhow::{bail, Context, Result};
use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct VideoBertConfig {
    /// The BERT keys; `vocab_size` is `text_vocab_size + 1 + visual_words`.
    #[serde(flatten)]
    pub bert: BertConfig,
    pub text_vocab_size: usize,
    pub visual_words: usize,
}

impl VideoBertConfig {
    pub fn layout(&self) -> VocabLayout {
        VocabLayout {
            text_vocab: self.text_vocab_size,
            visual_words: self.visual_words,
        }
    }

    pub fn validate(&self, source: &Path) -> Result<()> {
        if self.visual_words == 0 || self.text_vocab_size == 0 {
            bail!(
                "{}: text_vocab_size and visual_words must be set (not a VideoBERT config?)",
                source.display()
            );
        }
        if self.bert.vocab_size != self.layout().size() {
            bail!(
                "{}: vocab_size {} is not text_vocab_size {} + 1 + visual_words {}",
                source.display(),
                self.bert.vocab_size,
                self.text_vocab_size,
                self.visual_words
            );
        }
        Ok(())
    }

    pub fn from_json_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let cfg: Self =
            serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        cfg.validate(path)?;
        Ok(cfg)
    }
}

#[derive(Module, Debug)]
pub struct VideoBert {
    pub bert: Bert,
    /// `cls.seq_relationship`: aligned (0) or not (1), as BERT's next-sentence labels.
    pub alignment: Linear,
}

/// Our parameter paths -> `BertForPreTraining` names.
pub fn hf_renames() -> Vec<(&'static str, &'static str)> {
    let mut r: Vec<(&str, &str)> = vec![
        (".bert.head.dense.", ".cls.predictions.transform.dense."),
        (
            ".bert.head.layer_norm.",
            ".cls.predictions.transform.LayerNorm.",
        ),
        (".bert.head.bias.", ".cls.predictions.bias."),
        (".alignment.", ".cls.seq_relationship."),
    ];
    r.extend_from_slice(HF_EMBEDDING_RENAMES);
    r.extend_from_slice(HF_BERT_LAYER_RENAMES);
    r
}

impl VideoBert {
    pub fn new(cfg: &VideoBertConfig, device: &Device) -> Self {
        Self {
            bert: Bert::new(&cfg.bert, device),
            alignment: LinearConfig::new(cfg.bert.hidden_size, 2)
                .with_initializer(normal_init(cfg.bert.initializer_range))
                .init(device),
        }
    }

    /// Last hidden states [B, L, D].
    pub fn forward(&self, batch: &TokenBatch, device: &Device) -> Tensor<3> {
        self.bert.forward(batch, device)
    }

    /// Scores over the joint vocabulary for hidden states [N, D] -> [N, V] (masked text
    /// tokens and masked visual words alike).
    pub fn token_logits(&self, h: Tensor<2>) -> Tensor<2> {
        self.bert.mlm_logits(h)
    }

    /// Alignment scores [B, 2] from the pooled `[CLS]` of hidden states [B, L, D].
    pub fn alignment_logits(&self, hidden: Tensor<3>) -> Tensor<2> {
        self.alignment.forward(self.bert.pool(hidden))
    }
}

/// A VideoBERT model directory (`config.json`, `model.safetensors` with `BertForPreTraining`
/// names; the tied decoder weights are skipped).
pub fn load(dir: &Path, device: &Device) -> Result<(VideoBertConfig, VideoBert)> {
    let cfg = VideoBertConfig::from_json_file(&dir.join("config.json"))?;
    let weights = dir.join("model.safetensors");
    let (tensors, _) = load_safetensors(&weights)
        .with_context(|| format!("cannot read weights {}", weights.display()))?;
    let named: BTreeMap<String, TensorData> = tensors
        .into_iter()
        .filter(|(k, _)| !k.starts_with("cls.predictions.decoder.") && !k.ends_with("position_ids"))
        .collect();
    let model = load_named(
        VideoBert::new(&cfg, device),
        &named,
        &hf_renames(),
        device,
        &weights,
    )?;
    Ok((cfg, model))
}

/// How the visual-word rows of the word embeddings start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VisualInit {
    /// The codebook's leaf centroids through a fixed random Gaussian projection to the hidden
    /// width (which keeps their inner products up to a factor, Johnson-Lindenstrauss), scaled so
    /// that the rows' mean norm is the text rows' (named choice: the paper says only that the
    /// visual words are embedded; the issue asks for the centroids through a projection).
    Centroids,
    /// As `Centroids` with the centroids' mean removed first. Clip features share a large mean
    /// (DINOv2 leaf centroids of the generated corpus: mean pairwise cosine 0.85), which the
    /// projection keeps: with `Centroids` the visual words start as nearly one embedding; here
    /// they start as far apart as their differences (no gain measured yet: docs/results.md).
    CentredCentroids,
    /// BERT's normal(0, initializer_range), as any new token.
    Random,
}

/// VideoBERT from a Hugging Face BERT text model (its vocabulary first) and a visual-word
/// codebook: every text weight is kept; the `[>]` row is drawn as a new token; the visual rows
/// follow `init`; the masked-token bias of the new rows is 0 and the alignment head is new.
pub fn from_text_bert(
    text_dir: &Path,
    codebook: &crate::core::kmeans::HierarchicalKMeans,
    init: VisualInit,
    seed: u64,
    device: &Device,
) -> Result<(VideoBertConfig, VideoBert)> {
    use crate::core::checkpoint::named_tensors;
    use crate::core::rng::rng_for;
    use rand::Rng;
    let text_cfg = BertConfig::from_json_file(&text_dir.join("config.json"))?;
    let (text_model, _) =
        crate::text::model::load_hf(&text_cfg, &text_dir.join("model.safetensors"), device)?;
    let words = codebook.words();
    let cfg = VideoBertConfig {
        bert: BertConfig {
            vocab_size: text_cfg.vocab_size + 1 + words,
            ..text_cfg.clone()
        },
        text_vocab_size: text_cfg.vocab_size,
        visual_words: words,
    };
    let h = text_cfg.hidden_size;
    let mut rng = rng_for(seed, 81, 0);
    let mut normal = |std: f64| -> f32 {
        // Box-Muller: a standard normal from two uniforms.
        let (u1, u2): (f64, f64) = (rng.random::<f64>().max(1e-300), rng.random());
        ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos() * std) as f32
    };
    let mut named: BTreeMap<String, TensorData> = BTreeMap::new();
    for (name, data) in named_tensors(&text_model, &crate::text::model::hf_renames()) {
        let name = if name.starts_with("cls.") {
            name
        } else {
            format!("bert.{name}")
        };
        named.insert(name, data);
    }
    let text_rows: Vec<f32> = named["bert.embeddings.word_embeddings.weight"]
        .clone()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let mut rows = text_rows.clone();
    rows.extend((0..h).map(|_| normal(text_cfg.initializer_range)));
    match init {
        VisualInit::Random => {
            rows.extend((0..words * h).map(|_| normal(text_cfg.initializer_range)))
        }
        VisualInit::Centroids | VisualInit::CentredCentroids => {
            let dc = codebook.dim;
            let mut leaves = codebook.centres[codebook.levels - 1].clone();
            if init == VisualInit::CentredCentroids {
                let mut mean = vec![0f64; dc];
                for c in leaves.chunks_exact(dc) {
                    for (m, &x) in mean.iter_mut().zip(c) {
                        *m += x as f64 / words as f64;
                    }
                }
                for c in leaves.chunks_exact_mut(dc) {
                    for (x, m) in c.iter_mut().zip(&mean) {
                        *x = (*x as f64 - m) as f32;
                    }
                }
            }
            let proj: Vec<f32> = (0..dc * h)
                .map(|_| normal(1.0 / (h as f64).sqrt()))
                .collect();
            let mut visual = vec![0f32; words * h];
            for w in 0..words {
                let c = &leaves[w * dc..(w + 1) * dc];
                for (k, &cv) in c.iter().enumerate() {
                    let p = &proj[k * h..(k + 1) * h];
                    for (o, &pv) in visual[w * h..(w + 1) * h].iter_mut().zip(p) {
                        *o += cv * pv;
                    }
                }
            }
            let mean_norm = |v: &[f32]| -> f64 {
                v.chunks_exact(h)
                    .map(|r| {
                        r.iter()
                            .map(|&x| (x as f64) * (x as f64))
                            .sum::<f64>()
                            .sqrt()
                    })
                    .sum::<f64>()
                    / (v.len() / h) as f64
            };
            let visual_norm = mean_norm(&visual);
            if !(visual_norm > 0.0 && visual_norm.is_finite()) {
                bail!(
                    "the codebook's {words} leaf centroids {} (mean norm {visual_norm}): the \
                     visual rows would not start apart; use --init random",
                    if init == VisualInit::CentredCentroids {
                        "are all equal, nothing is left once their mean is removed"
                    } else {
                        "are all zero or not finite"
                    }
                );
            }
            let scale = mean_norm(&text_rows) / visual_norm;
            rows.extend(visual.iter().map(|&x| (x as f64 * scale) as f32));
        }
    }
    named.insert(
        "bert.embeddings.word_embeddings.weight".into(),
        TensorData::new(rows, [cfg.bert.vocab_size, h]),
    );
    if let Some(bias) = named.get("cls.predictions.bias") {
        let mut b: Vec<f32> = bias
            .clone()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        b.resize(cfg.bert.vocab_size, 0.0);
        named.insert(
            "cls.predictions.bias".into(),
            TensorData::new(b, [cfg.bert.vocab_size]),
        );
    }
    let fresh = VideoBert::new(&cfg, device);
    for (name, data) in named_tensors(&fresh, &hf_renames()) {
        named.entry(name).or_insert(data);
    }
    let model = load_named(fresh, &named, &hf_renames(), device, text_dir)?;
    Ok((cfg, model))
}

/// Write a model directory: `config.json` (BERT keys, `text_vocab_size`, `visual_words`,
/// `architectures: ["BertForPreTraining"]`) and `model.safetensors` under `BertForPreTraining`
/// names, each written atomically.
pub fn save(dir: &Path, cfg: &VideoBertConfig, model: &VideoBert) -> Result<()> {
    use crate::core::checkpoint::{named_tensors, save_safetensors};
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let tensors = named_tensors(model, &hf_renames());
    let meta = std::collections::HashMap::from([("format".to_string(), "pt".to_string())]);
    save_safetensors(&dir.join("model.safetensors"), &tensors, meta)?;
    let mut json = serde_json::to_value(cfg)?;
    json["architectures"] = serde_json::json!(["BertForPreTraining"]);
    json["model_type"] = serde_json::json!("bert");
    crate::core::run::write_atomic(
        &dir.join("config.json"),
        serde_json::to_string_pretty(&json)?.as_bytes(),
    )
}
