//! From YOLO outputs to detections, as darknet's `detector test`: a candidate per cell and anchor
//! whose objectness is above the threshold (`get_yolo_detections`), boxes mapped back out of the
//! letterbox (`correct_yolo_boxes`), class probabilities `objectness * class score` kept above the
//! threshold, per-class non-maximum suppression (`do_nms_sort`), and one detection per class still
//! above the threshold (`draw_detections`).

use super::model::YoloOutput;
use serde::Serialize;

/// A box as darknet keeps it: centre and size, relative to the image (0..1).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RelBox {
    pub x: f32,
    pub y: f32,
    pub w: f32,
    pub h: f32,
}

/// One candidate box with its probability for every class (0 below the threshold).
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub bbox: RelBox,
    pub objectness: f32,
    pub prob: Vec<f32>,
    /// The class scores (logistic outputs, before objectness and threshold).
    pub scores: Vec<f32>,
}

impl Candidate {
    /// The best class probability left after NMS (the candidate's score).
    pub fn score(&self) -> f32 {
        self.prob.iter().copied().fold(0.0, f32::max)
    }

    /// The class scores normalised to sum to one: the detector's class distribution.
    pub fn class_distribution(&self) -> Vec<f32> {
        let total: f32 = self.scores.iter().sum();
        if total > 0.0 {
            self.scores.iter().map(|s| s / total).collect()
        } else {
            vec![1.0 / self.scores.len().max(1) as f32; self.scores.len()]
        }
    }

    /// x1, y1, x2, y2 in pixels of a `w` x `h` image, clamped to it.
    pub fn pixel_box(&self, w: usize, h: usize) -> [f32; 4] {
        let b = self.bbox;
        let clamp = |v: f32, hi: usize| v.clamp(0.0, (hi - 1) as f32);
        [
            clamp((b.x - b.w / 2.0) * w as f32, w),
            clamp((b.y - b.h / 2.0) * h as f32, h),
            clamp((b.x + b.w / 2.0) * w as f32, w),
            clamp((b.y + b.h / 2.0) * h as f32, h),
        ]
    }
}

/// A detection in image pixels.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Detection {
    /// x1, y1, x2, y2 in pixels of the original image, clamped to it.
    #[serde(rename = "box")]
    pub bbox: [f32; 4],
    pub label: String,
    pub class_id: usize,
    pub score: f32,
}

/// Candidates of every YOLO output for an image of `w` x `h` seen through a `net_w` x `net_h`
/// letterbox.
pub fn candidates(
    outputs: &[YoloOutput],
    w: usize,
    h: usize,
    net_w: usize,
    net_h: usize,
    thresh: f32,
) -> Vec<Candidate> {
    let mut out = Vec::new();
    for o in outputs {
        let plane = o.h * o.w;
        let entries = 5 + o.classes;
        for i in 0..plane {
            let (row, col) = (i / o.w, i % o.w);
            for (n, &(aw, ah)) in o.anchors.iter().enumerate() {
                let at = |e: usize| o.values[n * entries * plane + e * plane + i];
                let objectness = at(4);
                if objectness <= thresh {
                    continue;
                }
                // scale_x_y (1 in YOLOv3) stretches the cell offset around the centre.
                let shift = |v: f32| v * o.scale_x_y - (o.scale_x_y - 1.0) / 2.0;
                let bbox = RelBox {
                    x: (col as f32 + shift(at(0))) / o.w as f32,
                    y: (row as f32 + shift(at(1))) / o.h as f32,
                    w: at(2).exp() * aw / net_w as f32,
                    h: at(3).exp() * ah / net_h as f32,
                };
                let prob = (0..o.classes)
                    .map(|j| {
                        let p = objectness * at(5 + j);
                        if p > thresh {
                            p
                        } else {
                            0.0
                        }
                    })
                    .collect();
                let scores = (0..o.classes).map(|j| at(5 + j)).collect();
                out.push(Candidate {
                    bbox,
                    objectness,
                    prob,
                    scores,
                });
            }
        }
    }
    correct_boxes(&mut out, w, h, net_w, net_h);
    out
}

/// darknet's `correct_yolo_boxes` (relative coordinates of the original image).
fn correct_boxes(cands: &mut [Candidate], w: usize, h: usize, net_w: usize, net_h: usize) {
    let (new_w, new_h) = super::data::letterbox_size(w, h, net_w, net_h);
    let (nw, nh) = (net_w as f32, net_h as f32);
    for c in cands {
        let b = &mut c.bbox;
        b.x = ((b.x as f64 - (net_w - new_w) as f64 / 2.0 / nw as f64) / (new_w as f32 / nw) as f64)
            as f32;
        b.y = ((b.y as f64 - (net_h - new_h) as f64 / 2.0 / nh as f64) / (new_h as f32 / nh) as f64)
            as f32;
        b.w *= nw / new_w as f32;
        b.h *= nh / new_h as f32;
    }
}

fn overlap(x1: f32, w1: f32, x2: f32, w2: f32) -> f32 {
    let left = (x1 - w1 / 2.0).max(x2 - w2 / 2.0);
    let right = (x1 + w1 / 2.0).min(x2 + w2 / 2.0);
    right - left
}

/// darknet's `box_iou`.
pub fn iou(a: &RelBox, b: &RelBox) -> f32 {
    let w = overlap(a.x, a.w, b.x, b.w);
    let h = overlap(a.y, a.h, b.y, b.h);
    let inter = if w < 0.0 || h < 0.0 { 0.0 } else { w * h };
    let union = a.w * a.h + b.w * b.h - inter;
    inter / union
}

/// darknet's `do_nms_sort`: per class, candidates by descending probability; a candidate whose
/// IoU with a higher-ranked one exceeds `nms` loses that class. (darknet's `qsort` leaves ties in
/// an unspecified order; a stable sort keeps them in candidate order.)
pub fn nms(cands: &mut Vec<Candidate>, classes: usize, nms: f32) {
    cands.retain(|c| c.objectness != 0.0);
    for k in 0..classes {
        cands.sort_by(|a, b| b.prob[k].total_cmp(&a.prob[k]));
        for i in 0..cands.len() {
            if cands[i].prob[k] == 0.0 {
                continue;
            }
            let a = cands[i].bbox;
            for c in &mut cands[i + 1..] {
                if iou(&a, &c.bbox) > nms {
                    c.prob[k] = 0.0;
                }
            }
        }
    }
}

/// The detections left: one per candidate and class whose probability is above `thresh`, in
/// pixels of a `w` x `h` image, best first.
pub fn detections(
    cands: &[Candidate],
    names: &[String],
    w: usize,
    h: usize,
    thresh: f32,
) -> Vec<Detection> {
    let mut out = Vec::new();
    for c in cands {
        for (j, &p) in c.prob.iter().enumerate() {
            if p > thresh {
                out.push(Detection {
                    bbox: c.pixel_box(w, h),
                    label: names.get(j).cloned().unwrap_or_else(|| j.to_string()),
                    class_id: j,
                    score: p,
                });
            }
        }
    }
    out.sort_by(|a, b| b.score.total_cmp(&a.score));
    out
}
