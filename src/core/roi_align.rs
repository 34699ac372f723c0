//! RoIAlign (He et al., Mask R-CNN, 2017): a fixed grid of bins over each box of a feature map,
//! each bin the mean of bilinearly sampled points. The arithmetic is torchvision's `roi_align`
//! (CPU kernel): boxes scaled by `spatial_scale`, shifted by half a pixel when `aligned`, at least
//! one map pixel wide when not; `sampling_ratio` points per bin side (adaptive `ceil(size / bins)`
//! when 0); a sample outside `[-1, size]` counts as 0, one inside is clamped to the map.

use rayon::prelude::*;

/// How boxes are pooled.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RoiAlign {
    /// Bins per side (height, width).
    pub output: (usize, usize),
    /// Map pixels per box coordinate unit (1 / the map's stride).
    pub spatial_scale: f32,
    /// Samples per bin side; 0: adaptive.
    pub sampling_ratio: usize,
    /// Pixel centres at half-integers (Detectron2's ROIAlignV2, torchvision's `aligned=True`).
    pub aligned: bool,
}

#[inline]
fn bilinear(map: &[f32], h: usize, w: usize, y: f32, x: f32) -> f32 {
    if y < -1.0 || y > h as f32 || x < -1.0 || x > w as f32 {
        return 0.0;
    }
    let (mut y, mut x) = (y.max(0.0), x.max(0.0));
    let mut y_low = y as usize;
    let mut x_low = x as usize;
    let y_high = if y_low >= h - 1 {
        y_low = h - 1;
        y = y_low as f32;
        h - 1
    } else {
        y_low + 1
    };
    let x_high = if x_low >= w - 1 {
        x_low = w - 1;
        x = x_low as f32;
        w - 1
    } else {
        x_low + 1
    };
    let (ly, lx) = (y - y_low as f32, x - x_low as f32);
    let (hy, hx) = (1.0 - ly, 1.0 - lx);
    let (v1, v2) = (map[y_low * w + x_low], map[y_low * w + x_high]);
    let (v3, v4) = (map[y_high * w + x_low], map[y_high * w + x_high]);
    hy * hx * v1 + hy * lx * v2 + ly * hx * v3 + ly * lx * v4
}

impl RoiAlign {
    /// Pool `boxes` (x1, y1, x2, y2 in box coordinates) of `map` ([C, H, W], row-major) into
    /// [K, C, out_h, out_w].
    pub fn pool(&self, map: &[f32], c: usize, h: usize, w: usize, boxes: &[[f32; 4]]) -> Vec<f32> {
        assert_eq!(map.len(), c * h * w, "map of C x H x W values");
        let (ph, pw) = self.output;
        let per_box = c * ph * pw;
        let mut out = vec![0f32; boxes.len() * per_box];
        if h == 0 || w == 0 {
            return out;
        }
        out.par_chunks_mut(per_box.max(1))
            .zip(boxes.par_iter())
            .for_each(|(dst, b)| {
                let offset = if self.aligned { 0.5 } else { 0.0 };
                let s = self.spatial_scale;
                let (x1, y1) = (b[0] * s - offset, b[1] * s - offset);
                let (x2, y2) = (b[2] * s - offset, b[3] * s - offset);
                let (mut rw, mut rh) = (x2 - x1, y2 - y1);
                if !self.aligned {
                    rw = rw.max(1.0);
                    rh = rh.max(1.0);
                }
                let (bin_h, bin_w) = (rh / ph as f32, rw / pw as f32);
                let grid_h = if self.sampling_ratio > 0 {
                    self.sampling_ratio
                } else {
                    (rh / ph as f32).ceil().max(0.0) as usize
                };
                let grid_w = if self.sampling_ratio > 0 {
                    self.sampling_ratio
                } else {
                    (rw / pw as f32).ceil().max(0.0) as usize
                };
                let count = (grid_h * grid_w).max(1) as f32;
                for ch in 0..c {
                    let plane = &map[ch * h * w..(ch + 1) * h * w];
                    for py in 0..ph {
                        for px in 0..pw {
                            let mut sum = 0.0f32;
                            for iy in 0..grid_h {
                                let y = y1
                                    + py as f32 * bin_h
                                    + (iy as f32 + 0.5) * bin_h / grid_h as f32;
                                for ix in 0..grid_w {
                                    let x = x1
                                        + px as f32 * bin_w
                                        + (ix as f32 + 0.5) * bin_w / grid_w as f32;
                                    sum += bilinear(plane, h, w, y, x);
                                }
                            }
                            dst[(ch * ph + py) * pw + px] = sum / count;
                        }
                    }
                }
            });
        out
    }

    /// [`RoiAlign::pool`] then the mean over the bins: one C-vector per box (how bottom-up
    /// features average their pooled grid).
    pub fn pool_mean(
        &self,
        map: &[f32],
        c: usize,
        h: usize,
        w: usize,
        boxes: &[[f32; 4]],
    ) -> Vec<f32> {
        let bins = self.output.0 * self.output.1;
        self.pool(map, c, h, w, boxes)
            .chunks_exact(bins.max(1))
            .map(|b| b.iter().sum::<f32>() / bins as f32)
            .collect()
    }
}
