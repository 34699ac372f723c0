//! Token + learnable position (+ optional segment) embeddings, then LayerNorm and dropout, as in
//! BERT. Names mirror Hugging Face's `embeddings.*`.

use super::attention::normal_init;
use super::dropout::Dropout;
use super::norm::LayerNorm;
use burn::module::Module;
use burn::nn::{Embedding, EmbeddingConfig};
use burn::tensor::{Device, Int, Tensor};

#[derive(Module, Debug)]
pub struct Embeddings {
    pub word_embeddings: Embedding,
    pub position_embeddings: Embedding,
    pub token_type_embeddings: Option<Embedding>,
    pub layer_norm: LayerNorm,
    pub dropout: Dropout,
}

#[derive(Debug, Clone)]
pub struct EmbeddingsConfig {
    pub vocab: usize,
    pub hidden: usize,
    pub max_positions: usize,
    /// Number of segment types; 0 for none.
    pub type_vocab: usize,
    pub dropout: f64,
    pub layer_norm_eps: f64,
    pub init_std: f64,
}

impl EmbeddingsConfig {
    pub fn init(&self, device: &Device) -> Embeddings {
        let emb = |n: usize| {
            EmbeddingConfig::new(n, self.hidden)
                .with_initializer(normal_init(self.init_std))
                .init(device)
        };
        Embeddings {
            word_embeddings: emb(self.vocab),
            position_embeddings: emb(self.max_positions),
            token_type_embeddings: (self.type_vocab > 0).then(|| emb(self.type_vocab)),
            layer_norm: LayerNorm::new(self.hidden, self.layer_norm_eps, device),
            dropout: Dropout::new(self.dropout),
        }
    }
}

impl Embeddings {
    /// `ids` [B, L] -> [B, L, D]. Positions are 0..L; `token_types` [B, L] when the model has
    /// segments.
    pub fn forward(&self, ids: Tensor<2, Int>, token_types: Option<Tensor<2, Int>>) -> Tensor<3> {
        let [_, l] = ids.dims();
        let max = self.position_embeddings.weight.dims()[0];
        assert!(
            l <= max,
            "sequence length {l} exceeds the {max} learned positions"
        );
        let d = self.position_embeddings.weight.dims()[1];
        let pos = self
            .position_embeddings
            .weight
            .val()
            .slice([0..l, 0..d])
            .unsqueeze::<3>();
        let mut x = self.word_embeddings.forward(ids) + pos;
        if let (Some(tt), Some(emb)) = (token_types, &self.token_type_embeddings) {
            x = x + emb.forward(tt);
        }
        self.dropout.forward(self.layer_norm.forward(x))
    }
}

/// Renames from our paths to Hugging Face's BERT embedding names.
pub const HF_EMBEDDING_RENAMES: &[(&str, &str)] =
    &[(".embeddings.layer_norm.", ".embeddings.LayerNorm.")];
