//! Annotated-image corpora: the format users write for their own data, and what the readers of
//! COCO and easy-VQA produce.
//!
//! A corpus is a directory with `images/` and `annotations.jsonl`, one image a line:
//! `{"image": "images/000001.png", "width": 96, "height": 96, "boxes": [[x1, y1, x2, y2], ...],
//! "labels": ["seven", "sneaker"], "captions": [...], "negatives": [...],
//! "qa": [{"question": "...", "answer": "..."}]}`. Every field but `image`, `width` and `height`
//! is optional; `labels` has one entry per box; `negatives[i]` is the hard negative of
//! `captions[i]`.

use crate::core::error::InputError;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Qa {
    pub question: String,
    pub answer: String,
}

/// One annotated image.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Annotation {
    /// The image file, relative to the corpus directory.
    pub image: String,
    pub width: u32,
    pub height: u32,
    #[serde(default)]
    pub boxes: Vec<[f32; 4]>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub captions: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub negatives: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub qa: Vec<Qa>,
}

impl Annotation {
    /// The image's id: its file name without the extension.
    pub fn id(&self) -> String {
        Path::new(&self.image)
            .file_stem()
            .map_or_else(|| self.image.clone(), |s| s.to_string_lossy().into_owned())
    }

    fn check(&self, path: &Path, line: usize) -> Result<()> {
        let err = |field: &str, msg: String| -> anyhow::Error {
            InputError::new(path, line, Some(field), msg).into()
        };
        if self.image.is_empty() {
            return Err(err("image", "is empty".into()));
        }
        if self.width == 0 || self.height == 0 {
            return Err(err(
                "width",
                format!("image size {}x{} is not positive", self.width, self.height),
            ));
        }
        let (w, h) = (self.width as f32, self.height as f32);
        for (i, b) in self.boxes.iter().enumerate() {
            let [x1, y1, x2, y2] = *b;
            if !b.iter().all(|v| v.is_finite()) || x2 <= x1 || y2 <= y1 {
                return Err(err(
                    "boxes",
                    format!("box {i} [{x1}, {y1}, {x2}, {y2}] is not a box (x1 < x2, y1 < y2)"),
                ));
            }
            if x1 < 0.0 || y1 < 0.0 || x2 > w || y2 > h {
                return Err(err(
                    "boxes",
                    format!(
                        "box {i} [{x1}, {y1}, {x2}, {y2}] lies outside the {}x{} image",
                        self.width, self.height
                    ),
                ));
            }
        }
        if !self.labels.is_empty() && self.labels.len() != self.boxes.len() {
            return Err(err(
                "labels",
                format!(
                    "{} labels for {} boxes",
                    self.labels.len(),
                    self.boxes.len()
                ),
            ));
        }
        if !self.negatives.is_empty() && self.negatives.len() != self.captions.len() {
            return Err(err(
                "negatives",
                format!(
                    "{} negatives for {} captions",
                    self.negatives.len(),
                    self.captions.len()
                ),
            ));
        }
        Ok(())
    }
}

/// An annotated corpus: its directory and its images.
#[derive(Debug, Clone)]
pub struct Corpus {
    pub dir: PathBuf,
    pub images: Vec<Annotation>,
}

impl Corpus {
    pub fn image_path(&self, a: &Annotation) -> PathBuf {
        self.dir.join(&a.image)
    }
}

/// Read `annotations.jsonl` (or a directory holding it).
pub fn read_corpus(path: &Path) -> Result<Corpus> {
    let file = if path.is_dir() {
        path.join("annotations.jsonl")
    } else {
        path.to_path_buf()
    };
    let dir = file
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let text = std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
    let mut images = Vec::new();
    for (i, line) in text.split(|&b| b == b'\n').enumerate() {
        let Ok(line) = std::str::from_utf8(line) else {
            bail!(InputError::new(&file, i + 1, None, "not UTF-8 text"));
        };
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let a: Annotation = serde_json::from_str(line)
            .map_err(|e| InputError::new(&file, i + 1, None, format!("not an annotation ({e})")))?;
        a.check(&file, i + 1)?;
        images.push(a);
    }
    if images.is_empty() {
        bail!("{}: no annotated image", file.display());
    }
    Ok(Corpus { dir, images })
}

/// Write `annotations.jsonl` into `dir` (atomically).
pub fn write_annotations(dir: &Path, images: &[Annotation]) -> Result<()> {
    crate::core::run::write_atomic_with(&dir.join("annotations.jsonl"), |w| {
        for a in images {
            writeln!(w, "{}", serde_json::to_string(a)?)?;
        }
        Ok(())
    })
}
