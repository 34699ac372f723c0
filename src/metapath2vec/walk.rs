//! Meta-path-guided random walks (§2): from a node of type V_t the next node is drawn uniformly
//! (or by edge weight) among its neighbours of type V_{t+1}; a walk that reaches a node without
//! such a neighbour stops there. Schemes are cyclic (first type = last type), so a walk of any
//! length repeats the scheme.

use super::data::decode_text;
use super::data::Graph;
use crate::core::rng::{derive_seed, rng_for};
use crate::core::run::write_atomic_with;
use anyhow::{bail, Context, Result};
use rand::Rng;
use rayon::prelude::*;
use std::io::BufRead;
use std::path::Path;

const STREAM_WALK: u64 = 21;

/// A meta-path as node types; `types.first() == types.last()`.
#[derive(Debug, Clone, PartialEq)]
pub struct MetaPath {
    pub text: String,
    pub types: Vec<u8>,
}

/// Parse `APVPA` (one character per type, matched to type codes, case-insensitive) or
/// `movie-user-movie` (type names separated by `-`).
pub fn parse_metapath(graph: &Graph, text: &str) -> Result<MetaPath> {
    let parts: Vec<String> = if text.contains('-') {
        text.split('-').map(|s| s.trim().to_string()).collect()
    } else {
        text.chars().map(|c| c.to_string()).collect()
    };
    if parts.len() < 2 {
        bail!("meta-path `{text}` needs at least two node types");
    }
    let mut types = Vec::with_capacity(parts.len());
    for p in &parts {
        let t = graph.type_by_name(p).with_context(|| {
            format!(
                "meta-path `{text}`: unknown node type `{p}` (this graph has {})",
                graph
                    .type_names
                    .iter()
                    .zip(&graph.type_codes)
                    .map(|(n, c)| format!("{n} ({})", c.to_ascii_uppercase()))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?;
        types.push(t);
    }
    if types.first() != types.last() {
        bail!("meta-path `{text}` must start and end with the same node type (e.g. APVPA)");
    }
    Ok(MetaPath {
        text: text.to_string(),
        types,
    })
}

#[derive(Debug, Clone)]
pub struct WalkConfig {
    pub walks_per_node: usize,
    /// Nodes per walk, the start included.
    pub walk_length: usize,
    pub seed: u64,
}

/// Walks stored flat: walk i is `tokens[offsets[i]..offsets[i + 1]]`.
#[derive(Debug, Clone, Default)]
pub struct Walks {
    pub tokens: Vec<u32>,
    pub offsets: Vec<usize>,
}

impl Walks {
    pub fn len(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn get(&self, i: usize) -> &[u32] {
        &self.tokens[self.offsets[i]..self.offsets[i + 1]]
    }
    pub fn iter(&self) -> impl Iterator<Item = &[u32]> {
        (0..self.len()).map(|i| self.get(i))
    }
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct WalkStats {
    pub walks: usize,
    pub tokens: usize,
    /// Start nodes with no neighbour of the scheme's second type: their walks are the node alone.
    pub isolated_starts: usize,
    /// Walks that hit a dead end before reaching `walk_length`.
    pub ended_early: usize,
}

fn one_walk(graph: &Graph, mp: &MetaPath, start: u32, len: usize, seed: u64, out: &mut Vec<u32>) {
    let mut rng = rng_for(seed, STREAM_WALK, 0);
    out.push(start);
    let cycle = mp.types.len() - 1;
    let mut cur = start;
    for step in 1..len {
        let want = mp.types[step % cycle];
        match graph.pick_neighbor(cur, want, rng.random::<f64>()) {
            Some(n) => {
                out.push(n);
                cur = n;
            }
            None => break,
        }
    }
}

/// Generate walks for every meta-path from every node of its first type. Parallel and
/// deterministic: walk k from node n under meta-path m draws from its own seeded stream.
pub fn generate(graph: &Graph, metapaths: &[MetaPath], cfg: &WalkConfig) -> (Walks, WalkStats) {
    let mut jobs: Vec<(usize, u32)> = Vec::new();
    for (m, mp) in metapaths.iter().enumerate() {
        for n in 0..graph.num_nodes() as u32 {
            if graph.node_type[n as usize] == mp.types[0] {
                jobs.push((m, n));
            }
        }
    }
    let per_job: Vec<Vec<Vec<u32>>> = jobs
        .par_iter()
        .map(|&(m, n)| {
            (0..cfg.walks_per_node)
                .map(|k| {
                    let seed = derive_seed(cfg.seed, (m as u64) << 40 | n as u64, k as u64);
                    let mut w = Vec::with_capacity(cfg.walk_length);
                    one_walk(graph, &metapaths[m], n, cfg.walk_length, seed, &mut w);
                    w
                })
                .collect()
        })
        .collect();
    let mut walks = Walks {
        tokens: Vec::new(),
        offsets: vec![0],
    };
    let mut stats = WalkStats::default();
    for ((m, n), ws) in jobs.iter().zip(per_job) {
        if graph
            .neighbors_of_type(*n, metapaths[*m].types[1])
            .is_empty()
        {
            stats.isolated_starts += 1;
        }
        for w in ws {
            if w.len() < cfg.walk_length {
                stats.ended_early += 1;
            }
            walks.tokens.extend_from_slice(&w);
            walks.offsets.push(walks.tokens.len());
        }
    }
    stats.walks = walks.len();
    stats.tokens = walks.tokens.len();
    (walks, stats)
}

/// Write walks in the original tool's format: one walk per line, tokens separated by spaces.
pub fn write_walks(path: &Path, graph: &Graph, walks: &Walks) -> Result<()> {
    write_atomic_with(path, |w| {
        for walk in walks.iter() {
            for (i, &n) in walk.iter().enumerate() {
                if i > 0 {
                    w.write_all(b" ")?;
                }
                w.write_all(graph.names[n as usize].as_bytes())?;
            }
            w.write_all(b"\n")?;
        }
        Ok(())
    })
}

/// A vocabulary built from walks: tokens in order of first appearance; a token's type is its
/// first character, types numbered in order of first appearance.
#[derive(Debug, Clone, Default)]
pub struct Vocab {
    pub names: Vec<String>,
    pub node_type: Vec<u8>,
    pub type_codes: Vec<char>,
    index: std::collections::HashMap<String, u32>,
}

impl Vocab {
    /// The id of `tok`, added when new. `None` when it would be a 256th type.
    fn intern(&mut self, tok: &str) -> Option<u32> {
        if let Some(&id) = self.index.get(tok) {
            return Some(id);
        }
        let c = tok.chars().next()?;
        let t = match self.type_codes.iter().position(|&x| x == c) {
            Some(t) => t as u8,
            None if self.type_codes.len() < 255 => {
                self.type_codes.push(c);
                (self.type_codes.len() - 1) as u8
            }
            None => return None,
        };
        let id = self.names.len() as u32;
        self.names.push(tok.to_string());
        self.node_type.push(t);
        self.index.insert(tok.to_string(), id);
        Some(id)
    }
}

/// The walks as the tokens a walk file of them holds, numbered as [`read_walks`] numbers them:
/// nodes that share a name become one token, and training on the result equals training on the
/// written file.
pub fn tokens_of(graph: &Graph, walks: &Walks) -> Result<(Vocab, Walks)> {
    let mut vocab = Vocab::default();
    let mut id_of: Vec<Option<u32>> = vec![None; graph.num_nodes()];
    let mut tokens = Vec::with_capacity(walks.tokens.len());
    for &n in &walks.tokens {
        let id = match id_of[n as usize] {
            Some(id) => id,
            None => {
                let id = vocab
                    .intern(&graph.names[n as usize])
                    .context("more than 255 node types")?;
                id_of[n as usize] = Some(id);
                id
            }
        };
        tokens.push(id);
    }
    Ok((
        vocab,
        Walks {
            tokens,
            offsets: walks.offsets.clone(),
        },
    ))
}

/// Read a walk file (ours or the original tool's). Tokens of one character, or of a type whose
/// code collides, are accepted as they are; every token's type is its first character.
pub fn read_walks(path: &Path) -> Result<(Vocab, Walks)> {
    let f = std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut vocab = Vocab::default();
    let mut walks = Walks {
        tokens: Vec::new(),
        offsets: vec![0],
    };
    for (i, line) in std::io::BufReader::new(f).split(b'\n').enumerate() {
        let line = line?;
        // UTF-8 (what we write); otherwise Latin-1 (the AMiner files and the original tool).
        let line = decode_text(line);
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        for tok in line.split_whitespace() {
            let Some(id) = vocab.intern(tok) else {
                bail!(crate::core::error::InputError::new(
                    path,
                    i + 1,
                    None,
                    "more than 255 node types"
                ));
            };
            walks.tokens.push(id);
        }
        walks.offsets.push(walks.tokens.len());
    }
    if walks.is_empty() {
        bail!("{}: no walks", path.display());
    }
    Ok((vocab, walks))
}
