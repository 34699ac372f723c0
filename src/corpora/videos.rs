//! A generated corpus of narrated "how-to" videos with known answers, for training and judging
//! the video models (VideoBERT, CBT).
//!
//! - A video is 2-4 steps, each one verb applied to one object for 1.5-4.5 s (6-12 s in all),
//!   on a black `size` x `size` canvas at `fps` frames a second. Objects are real MNIST digits
//!   and Fashion-MNIST articles (the scenes corpus's sources), drawn 20-28 pixels a side.
//! - Verbs are visible motions or changes over the step: `slide left`/`slide right` (20 pixels),
//!   `lift`/`drop` (up/down 20 pixels), `spin` (one turn), `grow` (x0.6 to x1.3), `shrink`
//!   (x1.3 to x0.6), `fade` (full to 30% brightness), `flip` (mirrored about the vertical axis
//!   through a half turn in depth).
//! - Narration as ASR gives it: per step a sentence from a few templates per verb ("now let me
//!   show you how to lift the bag"), a fraction `unnarrated` of steps left unsaid, each sentence
//!   shifted by up to `max_shift` seconds, and unrelated filler sentences ("don't forget to
//!   subscribe"). The ground truth (verb, object, times, the object's box in every frame) is
//!   kept apart.
//! - Train videos draw from the training images, test videos from the test images.
//!   Deterministic for a seed.

use super::narration::Segment;
use super::scenes::{Sources, Split, DIGIT_LABELS, FASHION_LABELS};
use crate::core::rng::rng_for;
use anyhow::{bail, Result};
use rand::seq::IndexedRandom;
use rand::Rng;
use serde::{Deserialize, Serialize};

pub const VERBS: [&str; 9] = [
    "slide left",
    "slide right",
    "lift",
    "drop",
    "spin",
    "grow",
    "shrink",
    "fade",
    "flip",
];

const TEMPLATES: [&str; 6] = [
    "now let me show you how to {}",
    "next we {}",
    "then you {}",
    "ok so now {}",
    "and now we are going to {}",
    "the next step is to {}",
];

const FILLERS: [&str; 8] = [
    "hi everyone and welcome back to my channel",
    "don't forget to subscribe",
    "this is one of my favourite things to do",
    "let me know in the comments what you think",
    "it is really easy you can do this at home",
    "thanks for watching see you next time",
    "i got this at the store last week",
    "make sure you have everything ready",
];

const STREAM_VIDEO: u64 = 61;
/// Pixels a slide, lift or drop travels.
const TRAVEL: f64 = 20.0;

#[derive(Debug, Clone, PartialEq)]
pub struct VideoConfig {
    pub size: usize,
    pub fps: u32,
    pub min_steps: usize,
    pub max_steps: usize,
    pub min_step_seconds: f64,
    pub max_step_seconds: f64,
    pub min_seconds: f64,
    pub max_seconds: f64,
    pub min_side: usize,
    pub max_side: usize,
    /// Fraction of steps with no narration.
    pub unnarrated: f64,
    /// Most seconds a sentence is shifted from its step.
    pub max_shift: f64,
    /// Chance of each of up to two filler sentences per video.
    pub filler: f64,
}

impl Default for VideoConfig {
    fn default() -> Self {
        Self {
            size: 64,
            fps: 10,
            min_steps: 2,
            max_steps: 4,
            min_step_seconds: 1.5,
            max_step_seconds: 4.5,
            min_seconds: 6.0,
            max_seconds: 12.0,
            min_side: 20,
            max_side: 28,
            unnarrated: 0.2,
            max_shift: 1.0,
            filler: 0.5,
        }
    }
}

impl VideoConfig {
    pub fn validate(&self) -> Result<()> {
        use crate::core::validate::*;
        // A slide of the largest object must fit: side + travel + a pixel each side.
        int_in(
            "--size",
            self.size,
            self.max_side + TRAVEL as usize + 2,
            1024,
        )?;
        if !self.size.is_multiple_of(2) {
            bail!("--size {}: H.264 needs an even side", self.size);
        }
        int_in("--fps", self.fps as usize, 1, 60)?;
        proportion("--unnarrated", self.unnarrated)?;
        proportion("--filler", self.filler)?;
        if !(self.max_shift.is_finite() && (0.0..=5.0).contains(&self.max_shift)) {
            bail!("--max-shift {}: give 0 to 5 seconds", self.max_shift);
        }
        Ok(())
    }
}

/// One step's truth.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub verb: String,
    pub object: String,
    pub start: f64,
    pub end: f64,
    /// (0 digits / 1 Fashion-MNIST, index in the split's set).
    pub source: (u8, usize),
    /// Side in pixels, and the centre at the step's start.
    pub side: f64,
    pub centre: (f64, f64),
    /// Seconds the step's sentence was shifted by; `None` when the step went unnarrated.
    pub narration_shift: Option<f64>,
}

/// A planned video: its steps (the truth) and its narration (what ASR would give).
#[derive(Debug, Clone, PartialEq)]
pub struct VideoPlan {
    pub id: String,
    pub duration: f64,
    pub frames: usize,
    pub steps: Vec<Step>,
    pub narration: Vec<Segment>,
    /// How many steps went unnarrated and how many filler sentences were added.
    pub unnarrated: usize,
    pub fillers: usize,
}

/// The verb phrase of a step, as said.
pub fn phrase(verb: &str, object: &str) -> String {
    match verb {
        "slide left" => format!("slide the {object} to the left"),
        "slide right" => format!("slide the {object} to the right"),
        "lift" => format!("lift the {object}"),
        "drop" => format!("drop the {object}"),
        "spin" => format!("spin the {object} around"),
        "grow" => format!("make the {object} bigger"),
        "shrink" => format!("make the {object} smaller"),
        "fade" => format!("fade the {object} out"),
        "flip" => format!("flip the {object} over"),
        other => format!("{other} the {object}"),
    }
}

/// Extent of the object's motion from its centre: (left, right, up, down) and the largest
/// half-width it reaches.
fn reach(verb: &str, side: f64) -> (f64, f64, f64, f64, f64) {
    let half = match verb {
        "spin" => side * std::f64::consts::FRAC_1_SQRT_2,
        "grow" | "shrink" => side * 1.3 / 2.0,
        _ => side / 2.0,
    };
    match verb {
        "slide left" => (TRAVEL, 0.0, 0.0, 0.0, half),
        "slide right" => (0.0, TRAVEL, 0.0, 0.0, half),
        "lift" => (0.0, 0.0, TRAVEL, 0.0, half),
        "drop" => (0.0, 0.0, 0.0, TRAVEL, half),
        _ => (0.0, 0.0, 0.0, 0.0, half),
    }
}

/// Video `index` of the corpus `seed`.
pub fn plan(src: &Sources, cfg: &VideoConfig, seed: u64, index: usize) -> VideoPlan {
    let mut rng = rng_for(seed, STREAM_VIDEO, index as u64);
    // Steps and durations: redraw until the video's length lies in range.
    let durations: Vec<f64> = loop {
        let n = rng.random_range(cfg.min_steps..=cfg.max_steps);
        let d: Vec<f64> = (0..n)
            .map(|_| {
                let s = rng.random_range(cfg.min_step_seconds..=cfg.max_step_seconds);
                // Whole frames, so that steps meet on frame boundaries.
                (s * cfg.fps as f64).round() / cfg.fps as f64
            })
            .collect();
        let total: f64 = d.iter().sum();
        if (cfg.min_seconds..=cfg.max_seconds).contains(&total) {
            break d;
        }
    };
    let size = cfg.size as f64;
    let mut steps = Vec::with_capacity(durations.len());
    let mut t = 0.0;
    for d in durations {
        let verb = *VERBS.choose(&mut rng).expect("verbs");
        let fashion = rng.random_bool(0.5);
        let set = if fashion { &src.fashion } else { &src.digits };
        let i = rng.random_range(0..set.len());
        let object = if fashion {
            FASHION_LABELS
        } else {
            DIGIT_LABELS
        }[set.labels[i] as usize];
        let side = rng.random_range(cfg.min_side..=cfg.max_side) as f64;
        let (l, r, u, dn, half) = reach(verb, side);
        let cx = rng.random_range((half + l + 1.0)..=(size - half - r - 1.0));
        let cy = rng.random_range((half + u + 1.0)..=(size - half - dn - 1.0));
        steps.push(Step {
            verb: verb.to_string(),
            object: object.to_string(),
            start: t,
            end: t + d,
            source: (fashion as u8, i),
            side,
            centre: (cx, cy),
            narration_shift: None,
        });
        t += d;
    }
    let duration = t;
    let frames = (duration * cfg.fps as f64).round() as usize;
    // Narration: a sentence per narrated step, shifted; fillers at random times.
    let mut narration = Vec::new();
    let mut unnarrated = 0;
    for s in steps.iter_mut() {
        if rng.random_bool(cfg.unnarrated) {
            unnarrated += 1;
            continue;
        }
        let template = TEMPLATES.choose(&mut rng).expect("templates");
        let text = template.replace("{}", &phrase(&s.verb, &s.object));
        let shift = if cfg.max_shift > 0.0 {
            rng.random_range(-cfg.max_shift..=cfg.max_shift)
        } else {
            0.0
        };
        let len = (s.end - s.start).min(2.5);
        let start = (s.start + shift).clamp(0.0, duration - len);
        s.narration_shift = Some(start - s.start);
        narration.push(Segment {
            start,
            end: start + len,
            text,
        });
    }
    let mut fillers = 0;
    let mut last_filler = None;
    for _ in 0..2 {
        if rng.random_bool(cfg.filler) {
            fillers += 1;
            let len = rng.random_range(1.5..=2.5);
            let start = rng.random_range(0.0..=(duration - len));
            // Two fillers of one video say different things.
            let mut f = rng.random_range(0..FILLERS.len());
            if last_filler == Some(f) {
                f = (f + 1) % FILLERS.len();
            }
            last_filler = Some(f);
            narration.push(Segment {
                start,
                end: start + len,
                text: FILLERS[f].to_string(),
            });
        }
    }
    narration.sort_by(|a, b| a.start.total_cmp(&b.start));
    VideoPlan {
        id: format!("{index:06}"),
        duration,
        frames,
        steps,
        narration,
        unnarrated,
        fillers,
    }
}

/// Where the object of `step` is at progress `p` in [0, 1]: centre, horizontal and vertical
/// scale (negative: mirrored), rotation (radians) and brightness.
fn pose(step: &Step, p: f64) -> ((f64, f64), f64, f64, f64, f64) {
    let (cx, cy) = step.centre;
    let mut c = (cx, cy);
    let (mut sx, mut sy, mut angle, mut bright) = (1.0, 1.0, 0.0, 1.0);
    match step.verb.as_str() {
        "slide left" => c.0 -= TRAVEL * p,
        "slide right" => c.0 += TRAVEL * p,
        "lift" => c.1 -= TRAVEL * p,
        "drop" => c.1 += TRAVEL * p,
        "spin" => angle = 2.0 * std::f64::consts::PI * p,
        "grow" => {
            sx = 0.6 + 0.7 * p;
            sy = sx;
        }
        "shrink" => {
            sx = 1.3 - 0.7 * p;
            sy = sx;
        }
        "fade" => bright = 1.0 - 0.7 * p,
        "flip" => {
            let c = (std::f64::consts::PI * p).cos();
            sx = if c >= 0.0 { c.max(0.35) } else { c.min(-0.35) };
        }
        _ => {}
    }
    (c, sx, sy, angle, bright)
}

/// Frame `f` of a planned video (grey, as RGB) and the object's ink box (pixels above 10%
/// grey; `None` when nothing is drawn).
pub fn render(
    src: &Sources,
    cfg: &VideoConfig,
    plan: &VideoPlan,
    f: usize,
) -> (image::RgbImage, Option<[f32; 4]>) {
    let size = cfg.size;
    let mut img = image::RgbImage::new(size as u32, size as u32);
    let t = f as f64 / cfg.fps as f64;
    let Some(step) = plan
        .steps
        .iter()
        .find(|s| t < s.end - 1e-9)
        .or(plan.steps.last())
    else {
        return (img, None);
    };
    let p = ((t - step.start) / (step.end - step.start - 1.0 / cfg.fps as f64)).clamp(0.0, 1.0);
    let ((cx, cy), sx, sy, angle, bright) = pose(step, p);
    let set = if step.source.0 == 1 {
        &src.fashion
    } else {
        &src.digits
    };
    let pixels = set.image(step.source.1);
    let (sin, cos) = angle.sin_cos();
    // Source pixels per canvas pixel along the object's own axes.
    let (ux, uy) = (28.0 / (step.side * sx), 28.0 / (step.side * sy));
    let sample = |u: f64, v: f64| -> f64 {
        // Bilinear, pixel centres at i + 0.5, zero outside.
        let (fu, fv) = (u - 0.5, v - 0.5);
        let (u0, v0) = (fu.floor(), fv.floor());
        let (au, av) = (fu - u0, fv - v0);
        let at = |x: f64, y: f64| -> f64 {
            if x < 0.0 || y < 0.0 || x > 27.0 || y > 27.0 {
                0.0
            } else {
                pixels[y as usize * 28 + x as usize] as f64
            }
        };
        (1.0 - av) * ((1.0 - au) * at(u0, v0) + au * at(u0 + 1.0, v0))
            + av * ((1.0 - au) * at(u0, v0 + 1.0) + au * at(u0 + 1.0, v0 + 1.0))
    };
    let reach = step.side * 1.3;
    let lo = |c: f64| ((c - reach).floor().max(0.0)) as usize;
    let hi = |c: f64| ((c + reach).ceil().min(size as f64)) as usize;
    let (mut x1, mut y1, mut x2, mut y2) = (usize::MAX, usize::MAX, 0, 0);
    for y in lo(cy)..hi(cy) {
        for x in lo(cx)..hi(cx) {
            let (dx, dy) = (x as f64 + 0.5 - cx, y as f64 + 0.5 - cy);
            // Into the object's frame: undo the rotation, then the scale.
            let (ru, rv) = (cos * dx + sin * dy, -sin * dx + cos * dy);
            let v = sample(ru * ux + 14.0, rv * uy + 14.0) * bright;
            let g = (v * 255.0).round().clamp(0.0, 255.0) as u8;
            if g > 0 {
                img.put_pixel(x as u32, y as u32, image::Rgb([g, g, g]));
            }
            if g > 25 {
                x1 = x1.min(x);
                y1 = y1.min(y);
                x2 = x2.max(x + 1);
                y2 = y2.max(y + 1);
            }
        }
    }
    let bbox = (x1 != usize::MAX).then_some([x1 as f32, y1 as f32, x2 as f32, y2 as f32]);
    (img, bbox)
}

/// The split's subset name in YouCook2's terms.
pub fn subset(split: Split) -> &'static str {
    match split {
        Split::Train => "training",
        Split::Test => "validation",
    }
}

/// One line of `groundtruth.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroundTruth {
    pub video: String,
    pub file: String,
    pub subset: String,
    pub duration: f64,
    pub fps: u32,
    pub size: usize,
    pub steps: Vec<Step>,
    /// The object's ink box in every frame (`null` when nothing is drawn).
    pub boxes: Vec<Option<[f32; 4]>>,
    pub unnarrated: usize,
    pub fillers: usize,
}

/// The ground truth of a corpus directory (`groundtruth.jsonl`), a video a line.
pub fn read_ground_truth(dir: &std::path::Path) -> Result<Vec<GroundTruth>> {
    let path = dir.join("groundtruth.jsonl");
    let text = std::fs::read_to_string(&path).map_err(|e| {
        anyhow::anyhow!("cannot read {} ({e}; not a video corpus?)", path.display())
    })?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| {
                crate::core::error::InputError::new(&path, i + 1, None, e.to_string()).into()
            })
        })
        .collect()
}
