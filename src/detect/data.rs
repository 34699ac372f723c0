//! Images in darknet's layout and preprocessing: RGB floats in [0, 1], planar (C, H, W); its own
//! bilinear `resize_image` (corner-aligned, separable: columns first, then rows) and
//! `letterbox_image` (resize to fit keeping the aspect ratio, centred on a 0.5 grey canvas).

use anyhow::{bail, Context, Result};
use std::path::Path;

/// A planar float image: `data[c * h * w + y * w + x]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    pub w: usize,
    pub h: usize,
    pub c: usize,
    pub data: Vec<f32>,
}

impl Image {
    pub fn new(w: usize, h: usize, c: usize, fill: f32) -> Self {
        Self {
            w,
            h,
            c,
            data: vec![fill; w * h * c],
        }
    }

    #[inline]
    fn at(&self, x: usize, y: usize, k: usize) -> f32 {
        self.data[k * self.h * self.w + y * self.w + x]
    }

    #[inline]
    fn set(&mut self, x: usize, y: usize, k: usize, v: f32) {
        self.data[k * self.h * self.w + y * self.w + x] = v;
    }

    /// From 8-bit RGB pixels.
    pub fn from_rgb8(img: &image::RgbImage) -> Self {
        let (w, h) = (img.width() as usize, img.height() as usize);
        let mut out = Self::new(w, h, 3, 0.0);
        for (x, y, p) in img.enumerate_pixels() {
            for k in 0..3 {
                out.set(x as usize, y as usize, k, p[k] as f32 / 255.0);
            }
        }
        out
    }
}

/// Largest image side accepted (a decoded image of more pixels would not fit in memory anyway).
const MAX_SIDE: u32 = 1 << 15;

/// Read a PNG or JPEG file as 8-bit RGB, naming the file on failure.
pub fn read_rgb(path: &Path) -> Result<image::RgbImage> {
    let reader = image::ImageReader::open(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .with_guessed_format()
        .with_context(|| format!("cannot read {}", path.display()))?;
    let (w, h) = reader.into_dimensions().map_err(|e| {
        anyhow::anyhow!("{}: not a readable PNG or JPEG image ({e})", path.display())
    })?;
    if w == 0 || h == 0 || w > MAX_SIDE || h > MAX_SIDE {
        bail!(
            "{}: a {w}x{h} image is outside 1..={MAX_SIDE} pixels a side",
            path.display()
        );
    }
    let img = image::ImageReader::open(path)?
        .with_guessed_format()?
        .decode()
        .map_err(|e| {
            anyhow::anyhow!("{}: not a readable PNG or JPEG image ({e})", path.display())
        })?;
    Ok(img.to_rgb8())
}

/// darknet's `resize_image`.
pub fn resize(im: &Image, w: usize, h: usize) -> Image {
    let mut part = Image::new(w, im.h, im.c, 0.0);
    // A target side of one pixel samples the first pixel (darknet divides by zero there).
    let scale = |from: usize, to: usize| {
        if to > 1 {
            (from as f32 - 1.0) / (to as f32 - 1.0)
        } else {
            0.0
        }
    };
    let (w_scale, h_scale) = (scale(im.w, w), scale(im.h, h));
    for k in 0..im.c {
        for r in 0..im.h {
            for c in 0..w {
                let val = if c == w - 1 || im.w == 1 {
                    im.at(im.w - 1, r, k)
                } else {
                    let sx = c as f32 * w_scale;
                    let ix = sx as usize;
                    let dx = sx - ix as f32;
                    (1.0 - dx) * im.at(ix, r, k) + dx * im.at(ix + 1, r, k)
                };
                part.set(c, r, k, val);
            }
        }
    }
    let mut out = Image::new(w, h, im.c, 0.0);
    for k in 0..im.c {
        for r in 0..h {
            let sy = r as f32 * h_scale;
            let iy = sy as usize;
            let dy = sy - iy as f32;
            for c in 0..w {
                out.set(c, r, k, (1.0 - dy) * part.at(c, iy, k));
            }
            if r == h - 1 || im.h == 1 {
                continue;
            }
            for c in 0..w {
                let v = out.at(c, r, k) + dy * part.at(c, iy + 1, k);
                out.set(c, r, k, v);
            }
        }
    }
    out
}

/// The size an image of `w` x `h` takes inside a `net_w` x `net_h` letterbox (darknet's integer
/// arithmetic).
pub fn letterbox_size(w: usize, h: usize, net_w: usize, net_h: usize) -> (usize, usize) {
    if (net_w as f32 / w as f32) < (net_h as f32 / h as f32) {
        (net_w, (h * net_w / w).max(1))
    } else {
        ((w * net_h / h).max(1), net_h)
    }
}

/// darknet's `letterbox_image`.
pub fn letterbox(im: &Image, net_w: usize, net_h: usize) -> Image {
    let (new_w, new_h) = letterbox_size(im.w, im.h, net_w, net_h);
    let resized = resize(im, new_w, new_h);
    let mut boxed = Image::new(net_w, net_h, im.c, 0.5);
    let (dx, dy) = ((net_w - new_w) / 2, (net_h - new_h) / 2);
    for k in 0..im.c {
        for y in 0..new_h {
            for x in 0..new_w {
                boxed.set(x + dx, y + dy, k, resized.at(x, y, k));
            }
        }
    }
    boxed
}

/// Class names, one per line (darknet's `.names` files).
pub fn read_names(path: &Path) -> Result<Vec<String>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(text.lines().map(|l| l.trim().to_string()).collect())
}
