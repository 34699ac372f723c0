//! COCO (`captions_<split>.json`, optionally `instances_<split>.json`, and the image folder) as an
//! annotated corpus: captions per image, and boxes with category names from the instances.

use super::annotated::{Annotation, Corpus};
use crate::core::error::InputError;
use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Deserialize)]
struct Image {
    id: u64,
    file_name: String,
    width: u32,
    height: u32,
}

#[derive(Deserialize)]
struct Caption {
    image_id: u64,
    caption: String,
}

#[derive(Deserialize)]
struct Instance {
    image_id: u64,
    bbox: [f32; 4],
    category_id: u64,
}

#[derive(Deserialize)]
struct Category {
    id: u64,
    name: String,
}

#[derive(Deserialize)]
struct Captions {
    images: Vec<Image>,
    annotations: Vec<Caption>,
}

#[derive(Deserialize)]
struct Instances {
    annotations: Vec<Instance>,
    categories: Vec<Category>,
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let f = std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_reader(std::io::BufReader::new(f)).map_err(|e| {
        InputError::new(
            path,
            e.line(),
            None,
            format!("not a COCO annotation file ({e})"),
        )
        .into()
    })
}

/// Read COCO captions (and instances) of the images in `images_dir`.
pub fn read_coco(captions: &Path, instances: Option<&Path>, images_dir: &Path) -> Result<Corpus> {
    let c: Captions = read_json(captions)?;
    let mut caps: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for a in c.annotations {
        caps.entry(a.image_id)
            .or_default()
            .push(a.caption.trim().to_string());
    }
    let mut boxes: BTreeMap<u64, Vec<([f32; 4], String)>> = BTreeMap::new();
    if let Some(p) = instances {
        let i: Instances = read_json(p)?;
        let names: BTreeMap<u64, String> =
            i.categories.into_iter().map(|c| (c.id, c.name)).collect();
        for a in i.annotations {
            let Some(name) = names.get(&a.category_id) else {
                bail!(
                    "{}: an instance of image {} has category {} that no category lists",
                    p.display(),
                    a.image_id,
                    a.category_id
                );
            };
            let [x, y, w, h] = a.bbox;
            boxes
                .entry(a.image_id)
                .or_default()
                .push(([x, y, x + w, y + h], name.clone()));
        }
    }
    let mut images = Vec::new();
    for im in c.images {
        let (bx, labels): (Vec<[f32; 4]>, Vec<String>) =
            boxes.remove(&im.id).unwrap_or_default().into_iter().unzip();
        images.push(Annotation {
            image: im.file_name,
            width: im.width,
            height: im.height,
            // COCO boxes can reach past the border by rounding: clamp them to the image.
            boxes: bx
                .into_iter()
                .map(|b| {
                    [
                        b[0].max(0.0),
                        b[1].max(0.0),
                        b[2].min(im.width as f32),
                        b[3].min(im.height as f32),
                    ]
                })
                .collect(),
            labels,
            captions: caps.remove(&im.id).unwrap_or_default(),
            negatives: vec![],
            qa: vec![],
        });
    }
    if images.is_empty() {
        bail!("{}: no images", captions.display());
    }
    Ok(Corpus {
        dir: images_dir.to_path_buf(),
        images,
    })
}
