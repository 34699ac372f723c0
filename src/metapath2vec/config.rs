//! metapath2vec configuration with the paper's defaults.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Variant {
    /// metapath2vec: negatives from the unigram^0.75 distribution over all nodes.
    Plain,
    /// metapath2vec++: negatives for a predicted node of type t drawn only from nodes of type t.
    Plusplus,
}

/// Whose type the negatives of `plusplus` share.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum NegativeType {
    /// The node being predicted (the context node), as the paper defines metapath2vec++.
    Predicted,
    /// The input token, as the authors' C++ tool does (`-pp 1`); for comparison only.
    Input,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Metapath2VecConfig {
    pub seed: u64,
    /// Walks started from every node of a meta-path's first type (paper: 1000).
    pub walks_per_node: usize,
    /// Nodes per walk (paper: 100).
    pub walk_length: usize,
    /// Embedding dimension d (paper: 128).
    pub dim: usize,
    /// Neighbourhood size k (paper: 7). As in word2vec, each position uses a window drawn
    /// uniformly from 1..=k.
    pub window: usize,
    /// Negative samples per positive pair (paper: 5).
    pub negatives: usize,
    pub epochs: usize,
    /// Starting learning rate, decayed linearly to `alpha * 1e-4` (word2vec's skip-gram: 0.025).
    pub alpha: f64,
    /// Frequent-node subsampling threshold (word2vec's `-sample`); 0 disables it (default, as
    /// the authors' runs).
    pub sample: f64,
    pub variant: Variant,
    pub negative_type: NegativeType,
}

impl Default for Metapath2VecConfig {
    fn default() -> Self {
        Self {
            seed: 0,
            walks_per_node: 1000,
            walk_length: 100,
            dim: 128,
            window: 7,
            negatives: 5,
            epochs: 1,
            alpha: 0.025,
            sample: 0.0,
            variant: Variant::Plain,
            negative_type: NegativeType::Predicted,
        }
    }
}
