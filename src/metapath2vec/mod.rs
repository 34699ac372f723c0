//! metapath2vec and metapath2vec++ (Dong, Chawla, Swami, KDD 2017), `MODELS.md` §2:
//! meta-path-guided random walks and a heterogeneous skip-gram with negative sampling, trained
//! by hand-written lock-free SGD (no deep-learning backend).
//!
//! Choices where the paper is silent, each a config option:
//! - The skip-gram schedule is word2vec's (the authors' tool is built on it): linear learning
//!   rate decay from 0.025, a window drawn from 1..=k at each position, sigmoid table.
//! - `plusplus` draws a negative for a predicted (context) node of type t from the
//!   unigram^0.75 distribution restricted to type t (one alias table per type). The authors'
//!   C++ tool draws from the *input* token's type instead: `negative_type = "input"`.
//! - Walks start from every node of a meta-path's first type; to start from venues on
//!   `APVPA`, give `VPAPV`.

pub mod config;
pub mod data;
pub mod eval;
pub mod io;
pub mod model;
pub mod train;
pub mod walk;
