//! Interaction files, preprocessing as the paper does it, and batching.
//!
//! Readers: RecBole atomic files (`.inter`, tab-separated, typed header), MovieLens-1m/10m
//! `ratings.dat` (`UserID::MovieID::Rating::Timestamp`), MovieLens-20m/25m `ratings.csv`
//! (`userId,movieId,rating,timestamp` with a header) and a plain `user,item,timestamp` CSV.

use crate::core::error::InputError;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

/// One interaction as read from a file; `order` is its position in the file, the tie-break.
#[derive(Debug, Clone, PartialEq)]
pub struct Interaction {
    pub user: String,
    pub item: String,
    pub timestamp: f64,
}

/// Locate the interaction file: `path` itself, or the one recognised file inside a directory.
pub fn resolve_data_file(path: &Path) -> Result<PathBuf> {
    if path.is_file() {
        return Ok(path.to_path_buf());
    }
    if !path.is_dir() {
        bail!("{}: no such file or directory", path.display());
    }
    let mut found: Vec<PathBuf> = fs::read_dir(path)
        .with_context(|| format!("cannot list {}", path.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.ends_with(".inter") || name == "ratings.dat" || name == "ratings.csv"
        })
        .collect();
    found.sort();
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => bail!(
            "{}: no interaction file found (expected *.inter, ratings.dat or ratings.csv)",
            path.display()
        ),
        _ => bail!(
            "{}: several interaction files found ({}); pass one file",
            path.display(),
            found
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Read interactions from any supported format, chosen by file name and content.
pub fn read_interactions(path: &Path) -> Result<Vec<Interaction>> {
    let text = fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let text = String::from_utf8_lossy(&text);
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let out = if name.ends_with(".inter") {
        read_recbole(path, &text)?
    } else if name.ends_with(".dat") || text.lines().next().is_some_and(|l| l.contains("::")) {
        read_dat(path, &text)?
    } else {
        read_csv(path, &text)?
    };
    if out.is_empty() {
        bail!("{}: no interactions", path.display());
    }
    Ok(out)
}

fn parse_ts(path: &Path, line: usize, field: &str, v: &str) -> Result<f64, InputError> {
    v.trim()
        .parse::<f64>()
        .ok()
        .filter(|x| x.is_finite())
        .ok_or_else(|| InputError::new(path, line, Some(field), format!("`{v}` is not a number")))
}

fn non_empty<'a>(path: &Path, line: usize, field: &str, v: &'a str) -> Result<&'a str, InputError> {
    let v = v.trim();
    if v.is_empty() {
        Err(InputError::new(path, line, Some(field), "empty value"))
    } else {
        Ok(v)
    }
}

fn read_recbole(path: &Path, text: &str) -> Result<Vec<Interaction>> {
    let mut lines = text.lines().enumerate();
    let Some((_, header)) = lines.next() else {
        bail!(InputError::new(
            path,
            1,
            None,
            "empty file: expected a typed header"
        ));
    };
    let names: Vec<&str> = header
        .split('\t')
        .map(|h| h.split(':').next().unwrap_or("").trim())
        .collect();
    let col = |want: &str| names.iter().position(|n| *n == want);
    let (Some(u), Some(i), Some(t)) = (col("user_id"), col("item_id"), col("timestamp")) else {
        bail!(InputError::new(
            path,
            1,
            None,
            format!(
                "header must name user_id, item_id and timestamp columns, found: {}",
                names.join(", ")
            )
        ));
    };
    let mut out = Vec::new();
    for (idx, line) in lines {
        let ln = idx + 1;
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split('\t').collect();
        if fields.len() != names.len() {
            bail!(InputError::new(
                path,
                ln,
                None,
                format!(
                    "expected {} tab-separated fields, found {}",
                    names.len(),
                    fields.len()
                )
            ));
        }
        out.push(Interaction {
            user: non_empty(path, ln, "user_id", fields[u])?.to_string(),
            item: non_empty(path, ln, "item_id", fields[i])?.to_string(),
            timestamp: parse_ts(path, ln, "timestamp", fields[t])?,
        });
    }
    Ok(out)
}

fn read_dat(path: &Path, text: &str) -> Result<Vec<Interaction>> {
    let mut out = Vec::new();
    for (idx, line) in text.lines().enumerate() {
        let ln = idx + 1;
        if line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split("::").collect();
        if f.len() != 4 {
            bail!(InputError::new(
                path,
                ln,
                None,
                format!(
                    "expected UserID::MovieID::Rating::Timestamp, found {} fields",
                    f.len()
                )
            ));
        }
        out.push(Interaction {
            user: non_empty(path, ln, "UserID", f[0])?.to_string(),
            item: non_empty(path, ln, "MovieID", f[1])?.to_string(),
            timestamp: parse_ts(path, ln, "Timestamp", f[3])?,
        });
    }
    Ok(out)
}

/// `userId,movieId,rating,timestamp` (MovieLens-20m/25m, header required) or `user,item,timestamp`
/// (header optional).
fn read_csv(path: &Path, text: &str) -> Result<Vec<Interaction>> {
    let mut lines = text.lines().enumerate().peekable();
    let mut cols = (0usize, 1usize, 2usize, 3usize);
    let mut names = vec!["user", "item", "timestamp"];
    if let Some((_, first)) = lines.peek() {
        let f: Vec<&str> = first.split(',').map(str::trim).collect();
        let is_header = f.last().is_some_and(|v| v.parse::<f64>().is_err());
        if is_header {
            let pos = |cands: &[&str]| {
                f.iter()
                    .position(|h| cands.iter().any(|c| h.eq_ignore_ascii_case(c)))
            };
            let (Some(u), Some(i), Some(t)) = (
                pos(&["userId", "user", "user_id"]),
                pos(&["movieId", "item", "item_id", "itemId"]),
                pos(&["timestamp", "time", "ts"]),
            ) else {
                bail!(InputError::new(
                    path,
                    1,
                    None,
                    format!(
                        "CSV header must name user, item and timestamp columns, found: {first}"
                    )
                ));
            };
            cols = (u, i, t, f.len());
            names = vec![f[u], f[i], f[t]];
            lines.next();
        } else {
            cols = (0, 1, f.len() - 1, f.len());
        }
    }
    let (u, i, t, n) = cols;
    if n < 3 {
        bail!(InputError::new(
            path,
            1,
            None,
            "expected at least 3 comma-separated fields"
        ));
    }
    let mut out = Vec::new();
    for (idx, line) in lines {
        let ln = idx + 1;
        if line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split(',').collect();
        if f.len() != n {
            bail!(InputError::new(
                path,
                ln,
                None,
                format!("expected {n} comma-separated fields, found {}", f.len())
            ));
        }
        out.push(Interaction {
            user: non_empty(path, ln, names[0], f[u])?.to_string(),
            item: non_empty(path, ln, names[1], f[i])?.to_string(),
            timestamp: parse_ts(path, ln, names[2], f[t])?,
        });
    }
    Ok(out)
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// Drop users with fewer interactions (after item filtering); the paper keeps users with >= 5.
    pub min_user_count: usize,
    /// Drop items with fewer interactions.
    pub min_item_count: usize,
}

impl Default for DataConfig {
    fn default() -> Self {
        // The paper keeps users with at least 5 interactions.
        Self {
            min_user_count: 5,
            min_item_count: 0,
        }
    }
}

/// Users' time-ordered item sequences with items numbered 1..=n (0 is padding, n+1 `[mask]`).
#[derive(Debug, Clone)]
pub struct SequenceData {
    pub users: Vec<String>,
    pub items: Vec<String>,
    /// Per user, item ids in time order (ties keep file order).
    pub sequences: Vec<Vec<u32>>,
}

impl SequenceData {
    pub fn num_items(&self) -> usize {
        self.items.len()
    }
    pub fn pad(&self) -> u32 {
        0
    }
    pub fn mask_token(&self) -> u32 {
        self.items.len() as u32 + 1
    }
    /// Size of the item-embedding table: padding, items, `[mask]`.
    pub fn vocab_size(&self) -> usize {
        self.items.len() + 2
    }
    pub fn user_index(&self, user: &str) -> Option<usize> {
        self.users.iter().position(|u| u == user)
    }

    /// Order by timestamp (stable, so ties keep file order), filter by minimum counts, number
    /// users and items in order of first appearance.
    pub fn build(interactions: &[Interaction], cfg: &DataConfig) -> Result<Self> {
        let mut item_count: HashMap<&str, usize> = HashMap::new();
        for it in interactions {
            *item_count.entry(&it.item).or_default() += 1;
        }
        let mut user_count: HashMap<&str, usize> = HashMap::new();
        for it in interactions {
            if item_count[it.item.as_str()] >= cfg.min_item_count {
                *user_count.entry(&it.user).or_default() += 1;
            }
        }
        let mut user_ix: HashMap<&str, usize> = HashMap::new();
        let mut users: Vec<String> = Vec::new();
        let mut per_user: Vec<Vec<(f64, usize, &str)>> = Vec::new();
        for (order, it) in interactions.iter().enumerate() {
            if item_count[it.item.as_str()] < cfg.min_item_count
                || user_count.get(it.user.as_str()).copied().unwrap_or(0) < cfg.min_user_count
            {
                continue;
            }
            let u = *user_ix.entry(&it.user).or_insert_with(|| {
                users.push(it.user.clone());
                per_user.push(Vec::new());
                users.len() - 1
            });
            per_user[u].push((it.timestamp, order, &it.item));
        }
        if users.is_empty() {
            bail!(
                "no user is left after filtering (min_user_count = {}, min_item_count = {})",
                cfg.min_user_count,
                cfg.min_item_count
            );
        }
        let mut item_ix: HashMap<&str, u32> = HashMap::new();
        let mut items: Vec<String> = Vec::new();
        let mut sequences = Vec::with_capacity(users.len());
        for events in &mut per_user {
            events.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            let seq = events
                .iter()
                .map(|&(_, _, item)| {
                    *item_ix.entry(item).or_insert_with(|| {
                        items.push(item.to_string());
                        items.len() as u32
                    })
                })
                .collect();
            sequences.push(seq);
        }
        Ok(Self {
            users,
            items,
            sequences,
        })
    }
}

/// Leave-one-out split of one user's sequence: the last item is the test target, the one before
/// it the validation target, the rest is training history.
pub fn split_leave_one_out(seq: &[u32]) -> Option<(&[u32], u32, u32)> {
    if seq.len() < 3 {
        return None;
    }
    let n = seq.len();
    Some((&seq[..n - 2], seq[n - 2], seq[n - 1]))
}

/// Keep only the last `max_len` entries.
pub fn truncate_left(seq: &[u32], max_len: usize) -> &[u32] {
    &seq[seq.len().saturating_sub(max_len)..]
}

/// A padded batch: ids [B, L] row-major (right-padded with 0), and flat indices `b * L + pos` of
/// the positions to predict with their targets.
#[derive(Debug, Clone)]
pub struct Batch {
    pub batch: usize,
    pub len: usize,
    pub ids: Vec<i64>,
    pub positions: Vec<i64>,
    pub targets: Vec<i64>,
}

/// Pad sequences to the longest in the batch; `targets[r]` lists (position, item) pairs.
pub fn make_batch(inputs: &[&[u32]], targets: &[&[(usize, u32)]]) -> Batch {
    let len = inputs.iter().map(|s| s.len()).max().unwrap_or(1).max(1);
    let mut ids = vec![0i64; inputs.len() * len];
    let mut positions = Vec::new();
    let mut tgt = Vec::new();
    for (r, seq) in inputs.iter().enumerate() {
        for (j, &v) in seq.iter().enumerate() {
            ids[r * len + j] = v as i64;
        }
        for &(p, item) in targets[r] {
            positions.push((r * len + p) as i64);
            tgt.push(item as i64);
        }
    }
    Batch {
        batch: inputs.len(),
        len,
        ids,
        positions,
        targets: tgt,
    }
}
