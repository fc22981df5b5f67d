//! `rlcpc plot`: learning curves of several runs on the same axes, as a PNG, read from
//! their `metrics.jsonl`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use plotters::prelude::*;

/// One curve: a label and `(x, y)` points.
pub struct Curve {
    pub label: String,
    pub points: Vec<(f64, f64)>,
}

/// Reads `metric` against `x_metric` from `run/metrics.jsonl` (lines where either is
/// missing or not finite are skipped).
pub fn read_curve(run: &Path, x_metric: &str, metric: &str) -> Result<Curve> {
    let path = run.join(crate::run_dir::METRICS);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let mut points = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let v: serde_json::Value = serde_json::from_str(line)
            .with_context(|| format!("{}: line {} is not JSON", path.display(), i + 1))?;
        if let (Some(x), Some(y)) = (v[x_metric].as_f64(), v[metric].as_f64()) {
            if x.is_finite() && y.is_finite() {
                points.push((x, y));
            }
        }
    }
    if points.is_empty() {
        bail!(
            "{} has no values of '{metric}' against '{x_metric}'",
            path.display()
        );
    }
    let label = run.file_name().map_or_else(
        || run.display().to_string(),
        |n| n.to_string_lossy().to_string(),
    );
    Ok(Curve { label, points })
}

/// Draws `curves` into a `width`×`height` PNG at `out`.
pub fn draw(
    curves: &[Curve],
    x_label: &str,
    y_label: &str,
    out: &PathBuf,
    size: (u32, u32),
) -> Result<()> {
    // plotters' ab_glyph backend has no system fonts: register the embedded one.
    plotters::style::register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular())
        .map_err(|_| anyhow::anyhow!("embedded font rejected"))?;
    let (mut x0, mut x1, mut y0, mut y1) = (
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::INFINITY,
        f64::NEG_INFINITY,
    );
    for c in curves {
        for &(x, y) in &c.points {
            x0 = x0.min(x);
            x1 = x1.max(x);
            y0 = y0.min(y);
            y1 = y1.max(y);
        }
    }
    // Ranges whose width overflows f64 (values near ±1e308) would make the axis
    // generator loop forever: refuse them, naming the range.
    if !((x1 - x0).is_finite() && (y1 - y0).is_finite()) {
        anyhow::bail!(
            "cannot plot: the values span {x0:e}..{x1:e} (x) and {y0:e}..{y1:e} (y), wider than a float can hold"
        );
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    let pad = ((y1 - y0) * 0.05).max(1e-6 * y1.abs().max(y0.abs()).max(1.0));
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| anyhow::anyhow!("cannot create '{}': {e}", dir.display()))?;
    }
    let root = BitMapBackend::new(out, size).into_drawing_area();
    let err = |e: &dyn std::fmt::Display| anyhow::anyhow!("cannot draw {}: {e}", out.display());
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .margin(20)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(x0..x1, (y0 - pad)..(y1 + pad))
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc(y_label)
        .x_label_formatter(&|x| {
            if x.abs() >= 1e4 {
                format!("{:.0}k", x / 1e3)
            } else {
                format!("{x:.0}")
            }
        })
        .label_style(("sans-serif", 16))
        .axis_desc_style(("sans-serif", 18))
        .draw()
        .map_err(|e| err(&e))?;
    for (i, c) in curves.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(
                c.points.iter().copied(),
                color.stroke_width(2),
            ))
            .map_err(|e| err(&e))?
            .label(c.label.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .label_font(("sans-serif", 16))
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}
