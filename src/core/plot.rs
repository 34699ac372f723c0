//! Training curves: the loss and one metric per epoch of one or several runs, read from their
//! `metrics.jsonl`, drawn side by side into a PNG (plotters, with the DejaVu Sans font embedded so
//! that no system font is needed).

use super::trainer::{read_metrics, METRICS_JSONL};
use anyhow::{anyhow, bail, Context, Result};
use plotters::prelude::*;
use std::path::{Path, PathBuf};

/// Columns of `metrics.jsonl` that are bookkeeping, not metrics.
const NOT_METRICS: &[&str] = &[
    "epoch",
    "step",
    "loss",
    "lr",
    "train_seconds",
    "seconds",
    "cpu_seconds",
    "items",
    "items_per_second",
    "best_epoch",
];

/// One run's curves.
pub struct RunCurves {
    pub label: String,
    /// (epoch, loss)
    pub loss: Vec<(f64, f64)>,
    /// (epoch, value) of the metric, when the run logs it.
    pub metric: Vec<(f64, f64)>,
    pub best_epoch: Option<usize>,
}

/// The first metric column of a run's log (its headline metric), if it has any.
pub fn headline_metric(run_dir: &Path) -> Result<Option<String>> {
    let rows = read_metrics(&run_dir.join(METRICS_JSONL))?;
    Ok(rows.first().and_then(|r| {
        r.keys()
            .find(|k| !NOT_METRICS.contains(&k.as_str()))
            .cloned()
    }))
}

/// Read the loss and `metric` curves of a run directory.
pub fn read_curves(run_dir: &Path, metric: Option<&str>) -> Result<RunCurves> {
    let path = run_dir.join(METRICS_JSONL);
    if !path.is_file() {
        bail!(
            "{}: no such file (is {} a run directory?)",
            path.display(),
            run_dir.display()
        );
    }
    let rows = read_metrics(&path)?;
    if rows.is_empty() {
        bail!("{}: holds no epoch", path.display());
    }
    let mut loss = Vec::new();
    let mut values = Vec::new();
    let mut best_epoch = None;
    for r in &rows {
        let Some(epoch) = r.get("epoch").and_then(|v| v.as_f64()) else {
            continue;
        };
        if let Some(l) = r
            .get("loss")
            .and_then(|v| v.as_f64())
            .filter(|v| v.is_finite())
        {
            loss.push((epoch, l));
        }
        if let Some(m) = metric {
            if let Some(v) = r.get(m).and_then(|v| v.as_f64()).filter(|v| v.is_finite()) {
                values.push((epoch, v));
            }
        }
        best_epoch = r
            .get("best_epoch")
            .and_then(|v| v.as_u64())
            .map(|b| b as usize);
    }
    let label = std::fs::canonicalize(run_dir)
        .unwrap_or_else(|_| PathBuf::from(run_dir))
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| run_dir.display().to_string());
    Ok(RunCurves {
        label,
        loss,
        metric: values,
        best_epoch,
    })
}

/// The range of `values` with a margin, never empty.
fn padded_range(values: impl Iterator<Item = f64>) -> std::ops::Range<f64> {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return 0.0..1.0;
    }
    let pad = ((hi - lo) * 0.05).max(hi.abs().max(1e-6) * 1e-3);
    (lo - pad)..(hi + pad)
}

/// Draw the curves of `runs` (loss on the left, `metric` on the right) into a PNG at `output`.
pub fn plot_runs(runs: &[RunCurves], metric: Option<&str>, output: &Path) -> Result<()> {
    super::draw::register_font();
    let (width, height) = (1400u32, 560u32);
    let mut buffer = vec![0u8; (width * height * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buffer, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| anyhow!("drawing: {e}"))?;
        let panels = root.split_evenly((1, 2));
        let max_epoch = runs
            .iter()
            .flat_map(|r| r.loss.iter().chain(&r.metric).map(|p| p.0))
            .fold(1.0f64, f64::max);
        let draw_panel = |area: &DrawingArea<BitMapBackend<'_>, _>,
                          title: &str,
                          pick: &dyn Fn(&RunCurves) -> &Vec<(f64, f64)>,
                          mark_best: bool|
         -> Result<()> {
            let range = padded_range(runs.iter().flat_map(|r| pick(r).iter().map(|p| p.1)));
            let mut chart = ChartBuilder::on(area)
                .caption(title, ("sans-serif", 22))
                .margin(16)
                .x_label_area_size(40)
                .y_label_area_size(70)
                .build_cartesian_2d(0.5f64..max_epoch + 0.5, range)
                .map_err(|e| anyhow!("drawing: {e}"))?;
            chart
                .configure_mesh()
                .light_line_style(RGBColor(238, 238, 238))
                .x_label_formatter(&|x| {
                    // Epochs are whole numbers: label those ticks only.
                    if (x - x.round()).abs() < 1e-9 {
                        format!("{}", x.round())
                    } else {
                        String::new()
                    }
                })
                .x_desc("epoch")
                .label_style(("sans-serif", 14))
                .axis_desc_style(("sans-serif", 16))
                .draw()
                .map_err(|e| anyhow!("drawing: {e}"))?;
            for (i, r) in runs.iter().enumerate() {
                let points = pick(r);
                if points.is_empty() {
                    continue;
                }
                let color = Palette99::pick(i).to_rgba().stroke_width(2);
                chart
                    .draw_series(LineSeries::new(points.iter().copied(), color))
                    .map_err(|e| anyhow!("drawing: {e}"))?
                    .label(r.label.clone())
                    .legend(move |(x, y)| {
                        PathElement::new(
                            vec![(x, y), (x + 20, y)],
                            Palette99::pick(i).stroke_width(3),
                        )
                    });
                chart
                    .draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled())))
                    .map_err(|e| anyhow!("drawing: {e}"))?;
                if mark_best {
                    // A ring around the best epoch's point (the model the run kept).
                    let best = r
                        .best_epoch
                        .and_then(|b| points.iter().find(|p| p.0 == b as f64));
                    if let Some(&p) = best {
                        chart
                            .draw_series(std::iter::once(Circle::new(p, 8, color.stroke_width(2))))
                            .map_err(|e| anyhow!("drawing: {e}"))?;
                    }
                }
            }
            chart
                .configure_series_labels()
                .label_font(("sans-serif", 14))
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .draw()
                .map_err(|e| anyhow!("drawing: {e}"))?;
            Ok(())
        };
        draw_panel(&panels[0], "training loss", &|r| &r.loss, false)?;
        match metric {
            Some(m) => draw_panel(
                &panels[1],
                &format!("{m} (ring: kept epoch)"),
                &|r| &r.metric,
                true,
            )?,
            None => {
                panels[1]
                    .draw(&Text::new(
                        "no metric logged",
                        (200, 250),
                        ("sans-serif", 20).into_font(),
                    ))
                    .map_err(|e| anyhow!("drawing: {e}"))?;
            }
        }
        root.present().map_err(|e| anyhow!("drawing: {e}"))?;
    }
    let image = image::RgbImage::from_raw(width, height, buffer)
        .context("plot buffer has the wrong size")?;
    super::draw::write_png(&image, output)
}
