//! Drawing on images for people to look at: labelled boxes (detections, annotated scenes) and
//! text, with the embedded DejaVu Sans font. Writes PNGs atomically.

use super::run::write_atomic;
use anyhow::{anyhow, Context, Result};
use plotters::prelude::*;
use std::path::Path;
use std::sync::Once;

/// Register the embedded font as `sans-serif` (once per process).
pub fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The embedded font is valid, so registration cannot fail.
        let _ = plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            dejavu::sans::regular(),
        );
    });
}

/// A colour per class index, from a palette that stays readable on photos.
pub fn class_colour(i: usize) -> RGBColor {
    let c = Palette99::pick(i).to_rgba();
    RGBColor(c.0, c.1, c.2)
}

/// One labelled box: x1, y1, x2, y2 in pixels.
pub struct LabelledBox {
    pub bbox: [f32; 4],
    pub label: String,
    pub colour: RGBColor,
}

/// Draw `boxes` (outline and a filled label tag above the box) and `captions` (lines of text
/// under the image, on a white band) onto `img`, returning the new image.
pub fn draw_boxes(
    img: &image::RgbImage,
    boxes: &[LabelledBox],
    captions: &[String],
) -> Result<image::RgbImage> {
    register_font();
    let (w, h) = (img.width(), img.height());
    let font_px = ((h.min(w) as f64 / 24.0).round() as u32).clamp(10, 28);
    let band = if captions.is_empty() {
        0
    } else {
        captions.len() as u32 * (font_px + 4) + 6
    };
    let mut canvas = image::RgbImage::from_pixel(w, h + band, image::Rgb([255, 255, 255]));
    image::imageops::replace(&mut canvas, img, 0, 0);
    let mut buf = canvas.into_raw();
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h + band)).into_drawing_area();
        let font = ("sans-serif", font_px as f64).into_font();
        for b in boxes {
            let [x1, y1, x2, y2] = b.bbox.map(|v| v.round() as i32);
            let style = b.colour.stroke_width(2);
            root.draw(&Rectangle::new([(x1, y1), (x2, y2)], style))
                .map_err(|e| anyhow!("drawing: {e}"))?;
            let (tw, th) = root
                .estimate_text_size(&b.label, &TextStyle::from(font.clone()))
                .map_err(|e| anyhow!("drawing: {e}"))?;
            let ty = (y1 - th as i32 - 4).max(0);
            root.draw(&Rectangle::new(
                [(x1, ty), (x1 + tw as i32 + 4, ty + th as i32 + 4)],
                b.colour.filled(),
            ))
            .map_err(|e| anyhow!("drawing: {e}"))?;
            root.draw(&Text::new(
                b.label.clone(),
                (x1 + 2, ty + 2),
                font.color(&WHITE),
            ))
            .map_err(|e| anyhow!("drawing: {e}"))?;
        }
        for (i, line) in captions.iter().enumerate() {
            let y = h as i32 + 4 + i as i32 * (font_px as i32 + 4);
            root.draw(&Text::new(line.clone(), (4, y), font.color(&BLACK)))
                .map_err(|e| anyhow!("drawing: {e}"))?;
        }
        root.present().map_err(|e| anyhow!("drawing: {e}"))?;
    }
    image::RgbImage::from_raw(w, h + band, buf).context("drawing buffer has the wrong size")
}

/// Write an RGB image as a PNG, atomically.
pub fn write_png(img: &image::RgbImage, path: &Path) -> Result<()> {
    let mut png = Vec::new();
    image::DynamicImage::ImageRgb8(img.clone())
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .context("cannot encode the PNG")?;
    write_atomic(path, &png)
}
