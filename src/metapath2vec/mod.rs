//! metapath2vec and metapath2vec++ (Dong, Chawla, Swami, KDD 2017), `MODELS.md` §2:
//! meta-path-guided random walks and a heterogeneous skip-gram with negative sampling, trained
//! by hand-written lock-free SGD (no deep-learning backend).
//!
//! Choices where the paper is silent follow the authors' C++ tool (built on word2vec), each a
//! config option:
//! - word2vec's schedule: linear learning-rate decay from 0.025, sigmoid table; the full window
//!   at every position as the tool (`b = 0`; `window_shrink` draws it from 1..=k as word2vec);
//!   nodes occurring fewer than 5 times dropped (`min_count`); subsampling at 1e-3 (`sample`).
//! - AMiner/DBIS nodes that share a name are one token (`merge_names`), as the authors' walk
//!   script writes names.
//! - Walks start from every node of a meta-path's first type; to start from venues on
//!   `APVPA`, give `VPAPV`.
//!
//! Deviation from the paper, a config option: `plusplus` draws a negative from the unigram^0.75
//! distribution restricted to the *input* node's type, as the authors' tool does and as produced
//! the paper's similarity tables. The paper's equation 6 restricts it to the predicted (context)
//! node's type: `negative_type = "predicted"`. Measured on DBIS (`docs/results.md`): with the
//! paper's type and word2vec's learning rate, venue vectors are dominated by the few authors
//! venues share (top cosine ~0.6, small workshops as nearest venues); a 25 times smaller learning
//! rate brings its lists close to the tool's.

pub mod config;
pub mod data;
pub mod eval;
pub mod io;
pub mod model;
pub mod train;
pub mod walk;
