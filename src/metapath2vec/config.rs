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
    /// The input node's type, as the authors' C++ tool draws them (`-pp 1`; the default). The
    /// paper's similarity-search tables come from that tool.
    Input,
    /// The predicted (context) node's type, as the paper's equation 6 writes metapath2vec++.
    /// With word2vec's learning rate (0.025) on DBIS this gives low similarities and, as nearest
    /// venues, small venues sharing a few authors; at `alpha` 0.001 its lists come close to the
    /// authors' tool's (`docs/results.md`).
    Predicted,
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
    /// Frequent-node subsampling threshold (word2vec's `-sample`, the authors' tool's default
    /// 1e-3): a node making up a fraction f of the walks' tokens is kept with probability
    /// `(sqrt(f / sample) + 1) * sample / f`; 0 disables it.
    pub sample: f64,
    /// Nodes occurring fewer times in the walks are dropped from them before training and get
    /// no embedding (word2vec's and the authors' tool's `-min-count`, default 5).
    pub min_count: u64,
    /// Draw each position's window from 1..=window (word2vec's `b = rand % window`). The
    /// authors' tool always uses the full window (`b = 0`), the default here.
    pub window_shrink: bool,
    pub variant: Variant,
    pub negative_type: NegativeType,
    /// AMiner/DBIS graphs: nodes that share a name (KDD has two venue ids in DBIS, WWW five) are
    /// written as one token and so get one embedding, as the authors' walk script does (it
    /// walks by id and writes names). False keeps them apart as `name#id`.
    pub merge_names: bool,
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
            sample: 1e-3,
            min_count: 5,
            window_shrink: false,
            variant: Variant::Plain,
            negative_type: NegativeType::Input,
            merge_names: true,
        }
    }
}

impl Metapath2VecConfig {
    /// Every setting within its range, each refused with its key (and flag) named.
    pub fn validate(&self) -> anyhow::Result<()> {
        use crate::core::validate::*;
        at_least_one("walks_per_node (--walks-per-node)", self.walks_per_node)?;
        int_in("walk_length (--walk-length)", self.walk_length, 2, 1 << 20)?;
        at_least_one("dim (--dim)", self.dim)?;
        int_in("window (--window)", self.window, 1, 1000)?;
        int_in("negatives (--negatives)", self.negatives, 1, 1000)?;
        at_least_one("epochs (--epochs)", self.epochs)?;
        positive("alpha (--alpha)", self.alpha)?;
        non_negative("sample (--sample)", self.sample)?;
        Ok(())
    }
}
