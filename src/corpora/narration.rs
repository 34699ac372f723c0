//! Narration of videos: segments with start and end seconds and text, per video. Two layouts:
//!
//! - YouCook2's annotation JSON: `{"database": {"<id>": {"subset": "training", "recipe_type":
//!   "113", "duration": 241.6, "annotations": [{"segment": [90, 102], "sentence": "...",
//!   "id": 0}, ...]}}}` (human-written step descriptions);
//! - a plain ASR-style file: `video_id<TAB>start<TAB>end<TAB>text`, one segment a line, `#`
//!   lines and blank lines skipped.

use crate::core::error::InputError;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Segment {
    pub start: f64,
    pub end: f64,
    pub text: String,
}

/// One video of a YouCook2-style annotation file.
#[derive(Debug, Clone, PartialEq)]
pub struct AnnotatedVideo {
    pub id: String,
    pub subset: String,
    pub recipe_type: String,
    pub duration: Option<f64>,
    pub segments: Vec<Segment>,
}

/// Narration per video id, in file order within each video.
pub type Narration = BTreeMap<String, Vec<Segment>>;

fn check_times(path: &Path, line: usize, field: &str, s: f64, e: f64) -> Result<()> {
    if !(s.is_finite() && e.is_finite()) {
        return Err(InputError::new(path, line, Some(field), "times must be finite").into());
    }
    if s < 0.0 {
        return Err(
            InputError::new(path, line, Some(field), format!("start {s} is negative")).into(),
        );
    }
    if e <= s {
        return Err(InputError::new(
            path,
            line,
            Some(field),
            format!("end {e} is not after start {s}"),
        )
        .into());
    }
    Ok(())
}

/// A `video_id<TAB>start<TAB>end<TAB>text` file.
pub fn read_narration_tsv(path: &Path) -> Result<Narration> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut out = Narration::new();
    for (i, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let line = i + 1;
        let text = std::str::from_utf8(raw)
            .map_err(|_| InputError::new(path, line, None, "not UTF-8 text"))?
            .trim_end_matches('\r');
        if text.trim().is_empty() || text.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = text.splitn(4, '\t').collect();
        if fields.len() != 4 {
            return Err(InputError::new(
                path,
                line,
                None,
                format!(
                    "{} tab-separated fields, expected 4: video_id, start, end, text",
                    fields.len()
                ),
            )
            .into());
        }
        let time = |k: usize, name: &str| -> Result<f64> {
            fields[k].trim().parse::<f64>().map_err(|_| {
                InputError::new(
                    path,
                    line,
                    Some(name),
                    format!("`{}` is not a number", fields[k]),
                )
                .into()
            })
        };
        let (s, e) = (time(1, "start")?, time(2, "end")?);
        check_times(path, line, "end", s, e)?;
        let id = fields[0].trim();
        if id.is_empty() {
            return Err(InputError::new(path, line, Some("video_id"), "is empty").into());
        }
        let t = fields[3].trim();
        if t.is_empty() {
            return Err(InputError::new(path, line, Some("text"), "is empty").into());
        }
        out.entry(id.to_string()).or_default().push(Segment {
            start: s,
            end: e,
            text: t.to_string(),
        });
    }
    if out.is_empty() {
        return Err(InputError::new(path, 0, None, "no narration segments").into());
    }
    Ok(out)
}

/// Write narration as a TSV file (tabs and line breaks in texts become spaces).
pub fn narration_tsv(narration: &Narration) -> String {
    let mut s = String::new();
    for (id, segs) in narration {
        for g in segs {
            let text: String = g
                .text
                .chars()
                .map(|c| {
                    if c == '\t' || c == '\n' || c == '\r' {
                        ' '
                    } else {
                        c
                    }
                })
                .collect();
            s.push_str(&format!("{id}\t{:.3}\t{:.3}\t{text}\n", g.start, g.end));
        }
    }
    s
}

/// A YouCook2 annotation JSON (`youcookii_annotations_trainval.json` layout).
pub fn read_youcook2(path: &Path) -> Result<Vec<AnnotatedVideo>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| InputError::new(path, e.line(), None, format!("not JSON ({e})")))?;
    let Some(db) = v.get("database").and_then(|d| d.as_object()) else {
        return Err(InputError::new(path, 0, Some("database"), "missing or not an object").into());
    };
    let mut out = Vec::with_capacity(db.len());
    for (id, video) in db {
        let field = |name: &str| format!("database.{id}.{name}");
        let str_field = |name: &str| -> String {
            match &video[name] {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Number(n) => n.to_string(),
                _ => String::new(),
            }
        };
        let duration = match &video["duration"] {
            serde_json::Value::Null => None,
            d => match d.as_f64() {
                Some(x) if x.is_finite() && x > 0.0 => Some(x),
                _ => {
                    return Err(InputError::new(
                        path,
                        0,
                        Some(&field("duration")),
                        "not a positive number",
                    )
                    .into())
                }
            },
        };
        let Some(anns) = video["annotations"].as_array() else {
            return Err(InputError::new(
                path,
                0,
                Some(&field("annotations")),
                "missing or not a list",
            )
            .into());
        };
        let mut segments = Vec::with_capacity(anns.len());
        for (j, a) in anns.iter().enumerate() {
            let f = format!("database.{id}.annotations[{j}]");
            let seg = a["segment"].as_array();
            let (s, e) = match seg.map(|s| {
                (
                    s.len(),
                    s.first().and_then(|x| x.as_f64()),
                    s.get(1).and_then(|x| x.as_f64()),
                )
            }) {
                Some((2, Some(s), Some(e))) => (s, e),
                _ => {
                    return Err(InputError::new(
                        path,
                        0,
                        Some(&format!("{f}.segment")),
                        "expected [start, end] in seconds",
                    )
                    .into())
                }
            };
            check_times(path, 0, &format!("{f}.segment"), s, e)?;
            if let Some(d) = duration {
                if e > d + 1e-6 {
                    return Err(InputError::new(
                        path,
                        0,
                        Some(&format!("{f}.segment")),
                        format!("ends at {e} s, after the video's {d} s"),
                    )
                    .into());
                }
            }
            let Some(sentence) = a["sentence"].as_str().filter(|s| !s.trim().is_empty()) else {
                return Err(InputError::new(
                    path,
                    0,
                    Some(&format!("{f}.sentence")),
                    "missing or empty",
                )
                .into());
            };
            segments.push(Segment {
                start: s,
                end: e,
                text: sentence.trim().to_string(),
            });
        }
        out.push(AnnotatedVideo {
            id: id.clone(),
            subset: str_field("subset"),
            recipe_type: str_field("recipe_type"),
            duration,
            segments,
        });
    }
    Ok(out)
}

/// YouCook2-layout JSON of `videos`.
pub fn youcook2_json(videos: &[AnnotatedVideo]) -> serde_json::Value {
    let mut db = serde_json::Map::new();
    for v in videos {
        let anns: Vec<serde_json::Value> = v
            .segments
            .iter()
            .enumerate()
            .map(|(i, s)| {
                serde_json::json!({
                    "segment": [round3(s.start), round3(s.end)],
                    "id": i,
                    "sentence": s.text,
                })
            })
            .collect();
        db.insert(
            v.id.clone(),
            serde_json::json!({
                "subset": v.subset,
                "recipe_type": v.recipe_type,
                "duration": v.duration.map(round3),
                "annotations": anns,
            }),
        );
    }
    serde_json::json!({ "database": db })
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Every segment of `video` within `[0, duration]` (a little slack for rounding).
pub fn check_within(source: &Path, video: &str, segments: &[Segment], duration: f64) -> Result<()> {
    for s in segments {
        if s.start >= duration || s.end > duration + 0.05 {
            return Err(InputError::new(
                source,
                0,
                None,
                format!(
                    "video `{video}`: narration {:.2}-{:.2} s (\"{}\") lies outside the video's {duration:.2} s",
                    s.start, s.end, s.text
                ),
            )
            .into());
        }
    }
    Ok(())
}
