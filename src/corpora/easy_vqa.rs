//! easy-VQA (`fetch-data.sh easy-vqa`): `<split>/images/<id>.png` and `<split>/questions.json`,
//! a list of `[question, answer, image id]`.

use super::annotated::{Annotation, Corpus, Qa};
use crate::core::error::InputError;
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::path::Path;

/// The `split` (`train` or `test`) of an easy-VQA directory as an annotated corpus (questions
/// only: no boxes, labels or captions).
pub fn read_easy_vqa(dir: &Path, split: &str) -> Result<Corpus> {
    let base = dir.join(split);
    let qpath = base.join("questions.json");
    let text = std::fs::read_to_string(&qpath)
        .with_context(|| format!("cannot read {}", qpath.display()))?;
    let rows: Vec<(String, String, u64)> = serde_json::from_str(&text).map_err(|e| {
        InputError::new(
            &qpath,
            e.line(),
            None,
            format!("not a list of [question, answer, image id] ({e})"),
        )
    })?;
    let mut by_image: BTreeMap<u64, Vec<Qa>> = BTreeMap::new();
    for (question, answer, id) in rows {
        by_image
            .entry(id)
            .or_default()
            .push(Qa { question, answer });
    }
    if by_image.is_empty() {
        bail!("{}: no questions", qpath.display());
    }
    let mut images = Vec::with_capacity(by_image.len());
    for (id, qa) in by_image {
        let rel = format!("images/{id}.png");
        let path = base.join(&rel);
        let (w, h) = image::image_dimensions(&path).map_err(|e| {
            anyhow::anyhow!(
                "{}: {e} (question image {id} of {})",
                path.display(),
                qpath.display()
            )
        })?;
        images.push(Annotation {
            image: rel,
            width: w,
            height: h,
            boxes: vec![],
            labels: vec![],
            captions: vec![],
            negatives: vec![],
            qa,
        });
    }
    Ok(Corpus { dir: base, images })
}
