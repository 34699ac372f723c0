//! Labelled segments of videos (a time span with its true verb and object): what the video
//! models are evaluated on (VideoBERT's zero-shot classification, CBT's probes).

use crate::core::error::InputError;
use anyhow::{Context, Result};
use serde::Serialize;
use std::path::Path;

/// A time span of a video with its true verb and object.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LabelledSegment {
    pub video: String,
    pub start: f64,
    pub end: f64,
    pub verb: String,
    pub object: String,
}

/// Labelled segments: a generated video corpus's `groundtruth.jsonl` (its steps; the file or
/// the corpus directory), or a TSV `video<TAB>start<TAB>end<TAB>verb<TAB>object`.
pub fn read_segments(path: &Path) -> Result<Vec<LabelledSegment>> {
    if let Some(dir) = generated_corpus_dir(path) {
        let videos = crate::corpora::videos::read_ground_truth(&dir)?;
        return Ok(videos
            .into_iter()
            .flat_map(|v| {
                let id = v.video.clone();
                v.steps.into_iter().map(move |s| LabelledSegment {
                    video: id.clone(),
                    start: s.start,
                    end: s.end,
                    verb: s.verb,
                    object: s.object,
                })
            })
            .collect());
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let err = |field: &str, m: String| -> anyhow::Error {
            InputError::new(path, i + 1, Some(field), m).into()
        };
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() != 5 {
            return Err(InputError::new(
                path,
                i + 1,
                None,
                format!(
                    "{} tab-separated fields; want video, start, end, verb, object",
                    f.len()
                ),
            )
            .into());
        }
        let time = |k: usize, name: &str| -> Result<f64> {
            match f[k].trim().parse::<f64>() {
                Ok(t) if t.is_finite() && t >= 0.0 => Ok(t),
                _ => Err(err(name, format!("{:?} is not a time in seconds", f[k]))),
            }
        };
        let (start, end) = (time(1, "start")?, time(2, "end")?);
        if end <= start {
            return Err(err("end", format!("{end} is not after the start {start}")));
        }
        for (k, name) in [(3, "verb"), (4, "object")] {
            if f[k].trim().is_empty() {
                return Err(err(name, "empty".into()));
            }
        }
        out.push(LabelledSegment {
            video: f[0].trim().to_string(),
            start,
            end,
            verb: f[3].trim().to_string(),
            object: f[4].trim().to_string(),
        });
    }
    if out.is_empty() {
        return Err(InputError::new(path, 0, None, "no segments").into());
    }
    Ok(out)
}

/// The generated corpus `path` names (its directory, or its `groundtruth.jsonl`), if it names
/// one rather than a segment TSV.
pub fn generated_corpus_dir(path: &Path) -> Option<std::path::PathBuf> {
    if path.is_dir() {
        Some(path.to_path_buf())
    } else if path.file_name().is_some_and(|n| n == "groundtruth.jsonl") {
        path.parent().map(Path::to_path_buf)
    } else {
        None
    }
}
