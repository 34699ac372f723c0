//! BERT as Hugging Face's `BertModel` + `BertForMaskedLM` head, built from the shared core:
//! embeddings (word, position, token type, LayerNorm), post-norm encoder layers, the pooler
//! (`tanh(W h_[CLS] + b)`) and the masked-LM head (transform + decoder tied to the word
//! embeddings + bias). Parameter names are Hugging Face's, so published checkpoints load
//! without renaming beyond the `bert.` prefix.

use super::config::BertConfig;
use crate::core::attention::normal_init;
use crate::core::checkpoint::{load_named, load_safetensors, named_tensors};
use crate::core::embeddings::{Embeddings, EmbeddingsConfig, HF_EMBEDDING_RENAMES};
use crate::core::encoder::{Encoder, EncoderConfig, NormPlacement, HF_BERT_LAYER_RENAMES};
use crate::core::fused::cross_entropy;
use crate::core::heads::TiedHead;
use anyhow::{Context, Result};
use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Bool, Device, Int, Tensor, TensorData};
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Module, Debug)]
pub struct Pooler {
    pub dense: Linear,
}

#[derive(Module, Debug)]
pub struct Bert {
    pub embeddings: Embeddings,
    pub encoder: Encoder,
    pub pooler: Pooler,
    /// `cls.predictions` in checkpoints.
    pub head: TiedHead,
}

/// A tokenised batch: ids, segment ids and a mask (1 = real token), all [B, L] row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenBatch {
    pub batch: usize,
    pub len: usize,
    pub ids: Vec<u32>,
    pub type_ids: Vec<u32>,
    pub mask: Vec<u32>,
}

impl TokenBatch {
    fn int(&self, v: &[u32], device: &Device) -> Tensor<2, Int> {
        let v: Vec<i64> = v.iter().map(|&x| x as i64).collect();
        Tensor::from_data(TensorData::new(v, [self.batch, self.len]), device)
    }
    pub fn ids(&self, device: &Device) -> Tensor<2, Int> {
        self.int(&self.ids, device)
    }
    pub fn type_ids(&self, device: &Device) -> Tensor<2, Int> {
        self.int(&self.type_ids, device)
    }
    /// True at padding.
    pub fn padding(&self, device: &Device) -> Tensor<2, Bool> {
        self.int(&self.mask, device).equal_elem(0)
    }
}

impl Bert {
    pub fn new(cfg: &BertConfig, device: &Device) -> Self {
        Self {
            embeddings: EmbeddingsConfig {
                vocab: cfg.vocab_size,
                hidden: cfg.hidden_size,
                max_positions: cfg.max_position_embeddings,
                type_vocab: cfg.type_vocab_size,
                dropout: cfg.hidden_dropout_prob,
                layer_norm_eps: cfg.layer_norm_eps,
                init_std: cfg.initializer_range,
            }
            .init(device),
            encoder: EncoderConfig {
                hidden: cfg.hidden_size,
                heads: cfg.num_attention_heads,
                intermediate: cfg.intermediate_size,
                layers: cfg.num_hidden_layers,
                hidden_dropout: cfg.hidden_dropout_prob,
                attention_dropout: cfg.attention_probs_dropout_prob,
                norm: NormPlacement::Post,
                layer_norm_eps: cfg.layer_norm_eps,
                init_std: cfg.initializer_range,
                layer_scale: None,
            }
            .init(device),
            pooler: Pooler {
                dense: LinearConfig::new(cfg.hidden_size, cfg.hidden_size)
                    .with_initializer(normal_init(cfg.initializer_range))
                    .init(device),
            },
            head: TiedHead::new(
                cfg.hidden_size,
                cfg.vocab_size,
                true,
                cfg.layer_norm_eps,
                cfg.initializer_range,
                device,
            ),
        }
    }

    /// Last hidden states [B, L, D].
    pub fn forward(&self, batch: &TokenBatch, device: &Device) -> Tensor<3> {
        let x = self
            .embeddings
            .forward(batch.ids(device), Some(batch.type_ids(device)));
        self.encoder.forward(x, Some(batch.padding(device)))
    }

    /// The pooler's output, `tanh(W h_[CLS] + b)`: [B, L, D] -> [B, D].
    pub fn pool(&self, hidden: Tensor<3>) -> Tensor<2> {
        let [b, _, d] = hidden.dims();
        let cls = hidden.narrow(1, 0, 1).reshape([b, d]);
        self.pooler.dense.forward(cls).tanh()
    }

    /// Vocabulary scores of the masked-LM head for hidden states [N, D] -> [N, V].
    pub fn mlm_logits(&self, h: Tensor<2>) -> Tensor<2> {
        self.head
            .logits(h, self.embeddings.word_embeddings.weight.val())
    }

    /// Mean cross-entropy of the masked-LM head at flat positions `b * L + t` against `targets`.
    pub fn mlm_loss(
        &self,
        batch: &TokenBatch,
        positions: &[usize],
        targets: &[u32],
        device: &Device,
    ) -> Tensor<1> {
        let hidden = self.forward(batch, device);
        let [b, l, d] = hidden.dims();
        let pos: Vec<i64> = positions.iter().map(|&p| p as i64).collect();
        let n = pos.len();
        let pos: Tensor<1, Int> = Tensor::from_data(TensorData::new(pos, [n]), device);
        let h = hidden.reshape([b * l, d]).select(0, pos);
        cross_entropy(self.mlm_logits(h), targets)
    }
}

/// Our parameter paths -> Hugging Face BERT names (without the `bert.` prefix of
/// `BertForMaskedLM`, which loading strips).
pub fn hf_renames() -> Vec<(&'static str, &'static str)> {
    let mut r: Vec<(&str, &str)> = HF_EMBEDDING_RENAMES.to_vec();
    r.extend_from_slice(HF_BERT_LAYER_RENAMES);
    r.extend_from_slice(&[
        (".head.dense.", ".cls.predictions.transform.dense."),
        (".head.layer_norm.", ".cls.predictions.transform.LayerNorm."),
        (".head.bias.", ".cls.predictions.bias."),
    ]);
    r
}

/// What a checkpoint held besides the encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loaded {
    pub has_pooler: bool,
    pub has_mlm_head: bool,
}

/// Load Hugging Face weights (`BertModel`, `BertForMaskedLM` or a sentence-transformers BERT)
/// into a model built from `cfg`. The pooler and the masked-LM head keep their random
/// initialisation when the checkpoint has none; anything else missing, or any shape that does
/// not fit the config, is an error naming the tensors.
pub fn load_hf(cfg: &BertConfig, weights: &Path, device: &Device) -> Result<(Bert, Loaded)> {
    let (tensors, _) = load_safetensors(weights)
        .with_context(|| format!("cannot read weights {}", weights.display()))?;
    let mut named: BTreeMap<String, TensorData> = BTreeMap::new();
    for (k, v) in tensors {
        let k = k.strip_prefix("bert.").unwrap_or(&k).to_string();
        // Hugging Face ties the decoder to the word embeddings; its bias is `cls.predictions.bias`.
        if k == "cls.predictions.decoder.weight" || k == "cls.predictions.decoder.bias" {
            continue;
        }
        if k.ends_with("position_ids") {
            continue;
        }
        named.insert(k, v);
    }
    let loaded = Loaded {
        has_pooler: named.contains_key("pooler.dense.weight"),
        has_mlm_head: named.contains_key("cls.predictions.bias"),
    };
    let renames = hf_renames();
    let model = Bert::new(cfg, device);
    // Fill what the checkpoint may lack with the model's own initial values.
    for (name, value) in named_tensors(&model, &renames) {
        let optional = name.starts_with("pooler.") || name.starts_with("cls.");
        if optional && !named.contains_key(&name) {
            named.insert(name, value);
        }
    }
    let model = load_named(model, &named, &renames, device, weights)?;
    Ok((model, loaded))
}
