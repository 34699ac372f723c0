//! The BERT4Rec network: item + learnable position embeddings, L post-norm bidirectional
//! Transformer layers, and the tied output head `GELU(h W^P + b^P) [LN] E^T + b^O`.

use super::config::ModelConfig;
use crate::core::embeddings::{Embeddings, EmbeddingsConfig, HF_EMBEDDING_RENAMES};
use crate::core::encoder::{Encoder, EncoderConfig, NormPlacement, HF_BERT_LAYER_RENAMES};
use crate::core::fused::cross_entropy;
use crate::core::heads::TiedHead;
use burn::module::Module;
use burn::tensor::{Device, Int, Tensor};

#[derive(Module, Debug)]
pub struct Bert4Rec {
    pub embeddings: Embeddings,
    pub encoder: Encoder,
    pub head: TiedHead,
    pub num_items: usize,
}

impl Bert4Rec {
    /// `num_items` real items; the table has `num_items + 2` rows (padding 0, `[mask]` last).
    pub fn new(cfg: &ModelConfig, num_items: usize, device: &Device) -> Self {
        Self {
            embeddings: EmbeddingsConfig {
                vocab: num_items + 2,
                hidden: cfg.hidden,
                max_positions: cfg.max_len,
                type_vocab: 0,
                dropout: cfg.hidden_dropout,
                layer_norm_eps: cfg.layer_norm_eps,
                init_std: cfg.init_std,
            }
            .init(device),
            encoder: EncoderConfig {
                hidden: cfg.hidden,
                heads: cfg.heads,
                intermediate: cfg.intermediate,
                layers: cfg.layers,
                hidden_dropout: cfg.hidden_dropout,
                attention_dropout: cfg.attention_dropout,
                norm: NormPlacement::Post,
                layer_norm_eps: cfg.layer_norm_eps,
                init_std: cfg.init_std,
                layer_scale: None,
            }
            .init(device),
            head: TiedHead::new(
                cfg.hidden,
                num_items,
                cfg.head_layer_norm,
                cfg.layer_norm_eps,
                cfg.init_std,
                device,
            ),
            num_items,
        }
    }

    /// Final hidden states [B, L, D] for item ids [B, L] (0 = padding, never attended to).
    pub fn hidden(&self, ids: Tensor<2, Int>) -> Tensor<3> {
        let pad = ids.clone().equal_elem(0);
        let x = self.embeddings.forward(ids, None);
        self.encoder.forward(x, Some(pad))
    }

    /// Hidden states of the flat positions `b * L + t` ([M]) -> [M, D].
    pub fn gather_positions(hidden: Tensor<3>, positions: Tensor<1, Int>) -> Tensor<2> {
        let [b, l, d] = hidden.dims();
        hidden.reshape([b * l, d]).select(0, positions)
    }

    /// The real items' rows of the embedding table, [num_items, D].
    pub fn item_table(&self) -> Tensor<2> {
        let d = self.embeddings.word_embeddings.weight.dims()[1];
        self.embeddings
            .word_embeddings
            .weight
            .val()
            .slice([1..self.num_items + 1, 0..d])
    }

    /// Scores over all real items for the given hidden states: [M, D] -> [M, num_items].
    /// Column j is item id j + 1.
    pub fn scores(&self, h: Tensor<2>) -> Tensor<2> {
        self.head.logits(h, self.item_table())
    }

    /// Mean negative log-likelihood of `targets` (item ids, >= 1) at `positions`, full softmax.
    pub fn full_loss(
        &self,
        ids: Tensor<2, Int>,
        positions: Tensor<1, Int>,
        targets: &[u32],
    ) -> Tensor<1> {
        let h = Self::gather_positions(self.hidden(ids), positions);
        let columns: Vec<u32> = targets.iter().map(|&t| t - 1).collect();
        cross_entropy(self.scores(h), &columns)
    }

    /// Sampled softmax: each target against `negatives` (item ids, shared by the batch);
    /// a negative equal to the target is masked out. Uniform negatives need no logQ correction.
    pub fn sampled_loss(
        &self,
        ids: Tensor<2, Int>,
        positions: Tensor<1, Int>,
        targets: Tensor<1, Int>,
        negatives: Tensor<1, Int>,
    ) -> Tensor<1> {
        let h = self
            .head
            .transform(Self::gather_positions(self.hidden(ids), positions));
        let table = self.embeddings.word_embeddings.weight.val();
        let bias = self.head.bias.val();
        let t_idx = targets.clone();
        let pos_emb = table.clone().select(0, t_idx.clone());
        let pos_logit = (h.clone() * pos_emb).sum_dim(1)
            + bias.clone().select(0, t_idx.sub_scalar(1)).unsqueeze_dim(1);
        let neg_emb = table.select(0, negatives.clone());
        let neg_bias = bias.select(0, negatives.clone().sub_scalar(1));
        let neg_logit = h.matmul(neg_emb.transpose()) + neg_bias.unsqueeze::<2>();
        let [m, k] = neg_logit.dims();
        let hit = targets
            .unsqueeze_dim::<2>(1)
            .expand([m, k])
            .equal(negatives.unsqueeze::<2>().expand([m, k]));
        let neg_logit = neg_logit.mask_fill(hit, -1.0e9);
        let logits = Tensor::cat(vec![pos_logit, neg_logit], 1);
        cross_entropy(logits, &vec![0; m])
    }
}

/// Renames from our parameter paths to the BERT-style names used in BERT4Rec checkpoints
/// (`embeddings.word_embeddings.weight` holds the item table; `head.*` is the `cls.predictions`
/// head).
pub fn checkpoint_renames() -> Vec<(&'static str, &'static str)> {
    let mut r: Vec<(&str, &str)> = HF_EMBEDDING_RENAMES.to_vec();
    r.extend_from_slice(HF_BERT_LAYER_RENAMES);
    r.extend_from_slice(&[
        (".head.dense.", ".cls.predictions.transform.dense."),
        (".head.layer_norm.", ".cls.predictions.transform.LayerNorm."),
        (".head.bias.", ".cls.predictions.bias."),
    ]);
    r
}
