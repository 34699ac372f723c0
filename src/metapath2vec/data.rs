//! Heterogeneous graphs: readers for the AMiner/DBIS directory format, a generic typed edge list
//! and MovieLens-100k (RecBole files), stored as adjacency grouped by neighbour type so that a
//! meta-path step draws a neighbour of the wanted type in O(1) (O(log d) when weighted).

use crate::core::error::InputError;
use anyhow::{bail, Context, Result};
use std::collections::HashMap;
use std::fs;
use std::path::Path;

/// A heterogeneous graph. Node `i` has type `node_type[i]` and the walk-file token `names[i]`,
/// whose first character is its type's code.
#[derive(Debug, Clone)]
pub struct Graph {
    /// Type names (`author`, `paper`, `venue`, `user`, ...).
    pub type_names: Vec<String>,
    /// One character per type: the first character of every token of that type.
    pub type_codes: Vec<char>,
    pub node_type: Vec<u8>,
    pub names: Vec<String>,
    /// Per node, `types + 1` offsets into `neighbors`: neighbours of type t are
    /// `neighbors[groups[n * (T + 1) + t] .. groups[n * (T + 1) + t + 1]]`.
    groups: Vec<u64>,
    neighbors: Vec<u32>,
    /// Cumulative edge weights aligned with `neighbors`, restarting at each group; empty when
    /// the graph is unweighted.
    cum_weights: Vec<f64>,
}

/// Accumulates typed nodes and undirected edges, then freezes into a [`Graph`].
#[derive(Default)]
pub struct GraphBuilder {
    type_names: Vec<String>,
    type_codes: Vec<char>,
    node_type: Vec<u8>,
    names: Vec<String>,
    index: HashMap<(u8, String), u32>,
    edges: Vec<(u32, u32, f64)>,
    weighted: bool,
}

impl GraphBuilder {
    /// The type index of `name`, registering it (its code is its first character, lower-cased).
    pub fn node_type(&mut self, name: &str) -> Result<u8> {
        if let Some(i) = self.type_names.iter().position(|t| t == name) {
            return Ok(i as u8);
        }
        let code = name
            .chars()
            .next()
            .map(|c| c.to_ascii_lowercase())
            .context("empty node type")?;
        if let Some(j) = self.type_codes.iter().position(|&c| c == code) {
            bail!(
                "node types `{}` and `{name}` start with the same character `{code}`; walk files need \
                 a distinct first character per type",
                self.type_names[j]
            );
        }
        anyhow::ensure!(self.type_names.len() < 255, "too many node types");
        self.type_names.push(name.to_string());
        self.type_codes.push(code);
        Ok((self.type_names.len() - 1) as u8)
    }

    /// The node of type `t` with key `key`, created with token `token` when new.
    pub fn node(&mut self, t: u8, key: &str, token: impl FnOnce() -> String) -> u32 {
        if let Some(&i) = self.index.get(&(t, key.to_string())) {
            return i;
        }
        let i = self.names.len() as u32;
        self.names.push(token());
        self.node_type.push(t);
        self.index.insert((t, key.to_string()), i);
        i
    }

    pub fn edge(&mut self, a: u32, b: u32, w: f64) {
        if w != 1.0 {
            self.weighted = true;
        }
        self.edges.push((a, b, w));
    }

    /// Make tokens unique: a name shared by several nodes gets `#<key>` appended on every one
    /// of them, so duplicate names never merge nodes. Returns how many nodes were renamed.
    fn disambiguate(&mut self, keys: &[String]) -> usize {
        let mut count: HashMap<&str, usize> = HashMap::new();
        for n in &self.names {
            *count.entry(n.as_str()).or_default() += 1;
        }
        let dup: Vec<usize> = (0..self.names.len())
            .filter(|&i| count[self.names[i].as_str()] > 1)
            .collect();
        for &i in &dup {
            self.names[i] = format!("{}#{}", self.names[i], keys[i]);
        }
        dup.len()
    }

    pub fn build(self) -> Graph {
        let n = self.names.len();
        let t = self.type_names.len();
        let stride = t + 1;
        let mut deg = vec![0u64; n * stride];
        for &(a, b, _) in &self.edges {
            deg[a as usize * stride + self.node_type[b as usize] as usize] += 1;
            if a != b {
                deg[b as usize * stride + self.node_type[a as usize] as usize] += 1;
            }
        }
        let mut groups = vec![0u64; n * stride];
        let mut acc = 0u64;
        for node in 0..n {
            for ty in 0..t {
                groups[node * stride + ty] = acc;
                acc += deg[node * stride + ty];
            }
            groups[node * stride + t] = acc;
        }
        let mut fill = groups.clone();
        let mut neighbors = vec![0u32; acc as usize];
        let mut weights = if self.weighted {
            vec![0f64; acc as usize]
        } else {
            vec![]
        };
        let mut put = |from: u32, to: u32, w: f64, fill: &mut Vec<u64>| {
            let slot = from as usize * stride + self.node_type[to as usize] as usize;
            let p = fill[slot] as usize;
            neighbors[p] = to;
            if !weights.is_empty() {
                weights[p] = w;
            }
            fill[slot] += 1;
        };
        for &(a, b, w) in &self.edges {
            put(a, b, w, &mut fill);
            if a != b {
                put(b, a, w, &mut fill);
            }
        }
        // cumulative weights per group
        if !weights.is_empty() {
            for g in 0..n * t {
                let (node, ty) = (g / t, g % t);
                let (s, e) = (
                    groups[node * stride + ty] as usize,
                    groups[node * stride + ty + 1] as usize,
                );
                let mut c = 0.0;
                for w in &mut weights[s..e] {
                    c += *w;
                    *w = c;
                }
            }
        }
        Graph {
            type_names: self.type_names,
            type_codes: self.type_codes,
            node_type: self.node_type,
            names: self.names,
            groups,
            neighbors,
            cum_weights: weights,
        }
    }
}

impl Graph {
    pub fn num_nodes(&self) -> usize {
        self.names.len()
    }
    pub fn num_types(&self) -> usize {
        self.type_names.len()
    }
    pub fn num_edges(&self) -> usize {
        self.neighbors.len() / 2
    }
    pub fn is_weighted(&self) -> bool {
        !self.cum_weights.is_empty()
    }

    fn range(&self, node: u32, ty: u8) -> (usize, usize) {
        let base = node as usize * (self.num_types() + 1) + ty as usize;
        (self.groups[base] as usize, self.groups[base + 1] as usize)
    }

    /// Neighbours of `node` that have type `ty`.
    pub fn neighbors_of_type(&self, node: u32, ty: u8) -> &[u32] {
        let (s, e) = self.range(node, ty);
        &self.neighbors[s..e]
    }

    pub fn degree(&self, node: u32) -> usize {
        let t = self.num_types();
        let base = node as usize * (t + 1);
        (self.groups[base + t] - self.groups[base]) as usize
    }

    /// A neighbour of type `ty` drawn uniformly (or by edge weight), given a uniform `u` in [0, 1).
    pub fn pick_neighbor(&self, node: u32, ty: u8, u: f64) -> Option<u32> {
        let (s, e) = self.range(node, ty);
        if s == e {
            return None;
        }
        if self.cum_weights.is_empty() {
            let k = ((u * (e - s) as f64) as usize).min(e - s - 1);
            return Some(self.neighbors[s + k]);
        }
        let cw = &self.cum_weights[s..e];
        let x = u * cw[cw.len() - 1];
        let k = cw.partition_point(|&c| c <= x).min(cw.len() - 1);
        Some(self.neighbors[s + k])
    }

    /// The type with walk-file code `c`.
    pub fn type_of_code(&self, c: char) -> Option<u8> {
        self.type_codes
            .iter()
            .position(|&x| x == c.to_ascii_lowercase())
            .map(|i| i as u8)
    }

    /// The type called `name` (or whose code is `name`, for one-letter names).
    pub fn type_by_name(&self, name: &str) -> Option<u8> {
        if let Some(i) = self
            .type_names
            .iter()
            .position(|t| t.eq_ignore_ascii_case(name))
        {
            return Some(i as u8);
        }
        let mut cs = name.chars();
        match (cs.next(), cs.next()) {
            (Some(c), None) => self.type_of_code(c),
            _ => None,
        }
    }

    pub fn node_by_name(&self) -> HashMap<&str, u32> {
        self.names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.as_str(), i as u32))
            .collect()
    }
}

/// Decode Latin-1 bytes (each byte one code point), as the AMiner files are encoded.
fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| b as char).collect()
}

/// UTF-8 when the bytes are valid UTF-8 (what we write), otherwise Latin-1 (the AMiner files
/// and the authors' tool).
pub fn decode_text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| latin1(e.as_bytes()))
}

fn lines_of(path: &Path) -> Result<Vec<String>> {
    let bytes = fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(bytes
        .split(|&b| b == b'\n')
        .map(|l| latin1(l.strip_suffix(b"\r").unwrap_or(l)))
        .collect())
}

/// `id TAB name` lines.
fn read_id_names(path: &Path) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for (i, line) in lines_of(path)?.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let Some((id, name)) = line.split_once('\t') else {
            bail!(InputError::new(path, i + 1, None, "expected `id<TAB>name`"));
        };
        let id = id.trim();
        if id.is_empty() || id.parse::<u64>().is_err() {
            bail!(InputError::new(
                path,
                i + 1,
                Some("id"),
                format!("`{id}` is not a numeric id")
            ));
        }
        if name.trim().is_empty() {
            bail!(InputError::new(path, i + 1, Some("name"), "empty name"));
        }
        out.push((id.to_string(), name.trim().to_string()));
    }
    Ok(out)
}

/// `id TAB id` lines.
fn read_pairs(path: &Path, fields: [&str; 2]) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for (i, line) in lines_of(path)?.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let parts: Vec<&str> = line.split('\t').map(str::trim).collect();
        if parts.len() != 2 {
            bail!(InputError::new(
                path,
                i + 1,
                None,
                format!("expected 2 tab-separated ids, found {}", parts.len())
            ));
        }
        for (k, f) in fields.iter().enumerate() {
            if parts[k].parse::<u64>().is_err() {
                bail!(InputError::new(
                    path,
                    i + 1,
                    Some(f),
                    format!("`{}` is not a numeric id", parts[k])
                ));
            }
        }
        out.push((parts[0].to_string(), parts[1].to_string()));
    }
    Ok(out)
}

/// How nodes that share a name are written (in walk files and embeddings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SameNames {
    /// Renamed `name#id`: distinct tokens, distinct embeddings.
    Distinct,
    /// Kept as they are, so they become one token (one embedding) when walks are trained: what
    /// the authors' walk script does (it walks by id and writes names). DBIS lists KDD under two
    /// ids and WWW under five.
    Merged,
}

/// The AMiner/DBIS directory: `id_author.txt`, `id_conf.txt`, `paper_author.txt`,
/// `paper_conf.txt`. Authors and venues keep the names of the files (already type-prefixed:
/// `aJohnSmith`, `vKDD`); papers are named `p<id>`. Authors or venues sharing a name stay
/// distinct nodes of the graph (walks go by id), written `name#id`.
pub fn read_aminer(dir: &Path) -> Result<Graph> {
    read_aminer_with(dir, SameNames::Distinct)
}

/// [`read_aminer`], with nodes that share a name written as `same_names` says.
pub fn read_aminer_with(dir: &Path, same_names: SameNames) -> Result<Graph> {
    let mut g = GraphBuilder::default();
    let (ta, tp, tv) = (
        g.node_type("author")?,
        g.node_type("paper")?,
        g.node_type("venue")?,
    );
    let mut keys: Vec<String> = Vec::new();
    let mut author_ids: HashMap<String, u32> = HashMap::new();
    let mut venue_ids: HashMap<String, u32> = HashMap::new();
    for (file, ty, map, prefix) in [
        ("id_author.txt", ta, &mut author_ids, 'a'),
        ("id_conf.txt", tv, &mut venue_ids, 'v'),
    ] {
        let path = dir.join(file);
        for (id, name) in read_id_names(&path)? {
            let token = if name.starts_with(prefix) {
                name.clone()
            } else {
                format!("{prefix}{name}")
            };
            let before = g.names.len();
            let n = g.node(ty, &id, || token);
            if g.names.len() > before {
                keys.push(id.clone());
            }
            map.insert(id, n);
        }
    }
    for (file, other, map, field) in [
        ("paper_author.txt", ta, &author_ids, "author id"),
        ("paper_conf.txt", tv, &venue_ids, "venue id"),
    ] {
        let path = dir.join(file);
        for (line, (paper, x)) in read_pairs(&path, ["paper id", field])?
            .into_iter()
            .enumerate()
        {
            let Some(&xn) = map.get(&x) else {
                bail!(InputError::new(
                    &path,
                    line + 1,
                    Some(field),
                    format!("`{x}` is not listed in the id file")
                ));
            };
            let _ = other;
            let before = g.names.len();
            let pn = g.node(tp, &paper, || format!("p{paper}"));
            if g.names.len() > before {
                keys.push(paper.clone());
            }
            g.edge(pn, xn, 1.0);
        }
    }
    if same_names == SameNames::Distinct {
        let renamed = g.disambiguate(&keys);
        if renamed > 0 {
            eprintln!(
                "note: {renamed} nodes share a name with another node; they are written as name#id"
            );
        }
    }
    Ok(g.build())
}

/// A typed edge list: `src_type src dst_type dst [weight]`, tab- or space-separated; `#` starts
/// a comment line. Node tokens are the type's code followed by the id (`u196`, `m242`).
pub fn read_edge_list(path: &Path) -> Result<Graph> {
    let mut g = GraphBuilder::default();
    let mut keys = Vec::new();
    for (i, line) in lines_of(path)?.iter().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() != 4 && f.len() != 5 {
            bail!(InputError::new(
                path,
                i + 1,
                None,
                format!(
                    "expected `src_type src dst_type dst [weight]`, found {} fields",
                    f.len()
                )
            ));
        }
        let w = match f.get(4) {
            Some(v) => v
                .parse::<f64>()
                .ok()
                .filter(|w| w.is_finite() && *w > 0.0)
                .ok_or_else(|| {
                    InputError::new(
                        path,
                        i + 1,
                        Some("weight"),
                        format!("`{v}` is not a positive number"),
                    )
                })?,
            None => 1.0,
        };
        let mut ends = [0u32; 2];
        for (k, (tf, idf)) in [(0usize, 1usize), (2, 3)].into_iter().enumerate() {
            let ty = g.node_type(f[tf]).map_err(|e| {
                InputError::new(
                    path,
                    i + 1,
                    Some(if k == 0 { "src_type" } else { "dst_type" }),
                    e.to_string(),
                )
            })?;
            let code = g.type_codes[ty as usize];
            let before = g.names.len();
            let id = f[idf].to_string();
            ends[k] = g.node(ty, &id, || format!("{code}{id}"));
            if g.names.len() > before {
                keys.push(f[idf].to_string());
            }
        }
        g.edge(ends[0], ends[1], w);
    }
    if g.names.is_empty() {
        bail!("{}: no edges", path.display());
    }
    Ok(g.build())
}

/// MovieLens-100k from RecBole's files: `ml-100k.inter` (user-movie), and from the Freebase
/// knowledge graph (`ml-100k.kg`, linked to movies by `ml-100k.link`) the relations
/// `film.film.actor` (movie-actor) and `film.film.directed_by` (movie-director). Genre relations
/// are left out on purpose: genres are the labels of the evaluation and would leak.
/// Tokens: `u<user_id>`, `m<item_id>`, `a<entity>`, `d<entity>`.
pub fn read_ml100k(dir: &Path) -> Result<Graph> {
    let mut g = GraphBuilder::default();
    let (tu, tm, ta, td) = (
        g.node_type("user")?,
        g.node_type("movie")?,
        g.node_type("actor")?,
        g.node_type("director")?,
    );
    let inter = dir.join("ml-100k.inter");
    let text = lines_of(&inter)?;
    for (i, line) in text.iter().enumerate().skip(1) {
        if line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() < 2 || f[0].is_empty() || f[1].is_empty() {
            bail!(InputError::new(
                &inter,
                i + 1,
                None,
                "expected user_id and item_id"
            ));
        }
        let u = g.node(tu, f[0], || format!("u{}", f[0]));
        let m = g.node(tm, f[1], || format!("m{}", f[1]));
        g.edge(u, m, 1.0);
    }
    let link = dir.join("ml-100k.link");
    let mut entity_movie: HashMap<String, String> = HashMap::new();
    for (i, line) in lines_of(&link)?.iter().enumerate().skip(1) {
        if line.trim().is_empty() {
            continue;
        }
        let Some((item, ent)) = line.split_once('\t') else {
            bail!(InputError::new(
                &link,
                i + 1,
                None,
                "expected item_id<TAB>entity_id"
            ));
        };
        entity_movie.insert(ent.trim().to_string(), item.trim().to_string());
    }
    let kg = dir.join("ml-100k.kg");
    for (i, line) in lines_of(&kg)?.iter().enumerate().skip(1) {
        if line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() != 3 {
            bail!(InputError::new(
                &kg,
                i + 1,
                None,
                "expected head_id, relation_id, tail_id"
            ));
        }
        let ty = match f[1] {
            "film.film.actor" => ta,
            "film.film.directed_by" => td,
            _ => continue,
        };
        let Some(item) = entity_movie.get(f[0]) else {
            continue;
        };
        let m = g.node(tm, item, || format!("m{item}"));
        let code = g.type_codes[ty as usize];
        let o = g.node(ty, f[2], || format!("{code}{}", f[2]));
        g.edge(m, o, 1.0);
    }
    Ok(g.build())
}

/// Read a graph from a DBIS/AMiner directory, a RecBole ml-100k directory, or an edge-list file.
pub fn read_graph(path: &Path) -> Result<Graph> {
    read_graph_with(path, SameNames::Distinct)
}

/// [`read_graph`]; in an AMiner/DBIS directory nodes that share a name are written as
/// `same_names` says (the other formats name nodes by id, so no two share a name).
pub fn read_graph_with(path: &Path, same_names: SameNames) -> Result<Graph> {
    if path.is_dir() {
        if path.join("id_author.txt").exists() {
            return read_aminer_with(path, same_names);
        }
        if path.join("ml-100k.inter").exists() {
            return read_ml100k(path);
        }
        bail!(
            "{}: not a graph directory (expected id_author.txt + id_conf.txt + paper_author.txt + \
             paper_conf.txt, or ml-100k.inter + ml-100k.kg + ml-100k.link)",
            path.display()
        );
    }
    if !path.exists() {
        bail!("{}: no such file or directory", path.display());
    }
    read_edge_list(path)
}
