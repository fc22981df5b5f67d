//! `rlcpc plot`: learning curves of conditions on the same axes, as a PNG, read from
//! their runs' `metrics.jsonl`. A condition is one run directory, or a directory of
//! seeds (`seed-N/`, as `rlcpc train --seeds` writes them): its curve is the mean over
//! seeds, interpolated onto a common x grid, with a band of ± one standard error.
//! The final-performance table gives each condition's final value and its MMER (the
//! maximum over training of the logged mean episodic return, as POPGym reports it),
//! with means and 95% confidence intervals over seeds.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
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
    let mut points = Vec::new();
    for v in crate::metrics::read_rows(run)? {
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
    // Steps that go back mean runs appended to one file (a resumed run cuts its file
    // back to its checkpoint, so rlcpc never writes that): the last run is drawn.
    if let Some(i) = (1..points.len())
        .rev()
        .find(|&i| points[i].0 < points[i - 1].0)
    {
        crate::errln!(
            "note: {}: '{x_metric}' goes back from {} to {} (runs appended to one file?); drawing the last run, from there on ({} of {} points)",
            path.display(),
            points[i - 1].0,
            points[i].0,
            points.len() - i,
            points.len()
        );
        points.drain(..i);
    }
    Ok(Curve {
        label: dir_name(run),
        points,
    })
}

fn dir_name(p: &Path) -> String {
    p.file_name().map_or_else(
        || p.display().to_string(),
        |n| n.to_string_lossy().to_string(),
    )
}

/// The runs of a condition: its `seed-N/` subdirectories (in seed order) when it has
/// any, else the directory itself.
pub fn seed_runs(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut seeds: Vec<(u64, PathBuf)> = Vec::new();
    let mut empty = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if let Some(n) = name.strip_prefix("seed-").and_then(|n| n.parse().ok()) {
                if e.path().join(crate::run_dir::METRICS).is_file() {
                    seeds.push((n, e.path()));
                } else if e.path().is_dir() {
                    empty.push(name);
                }
            }
        }
    }
    if !seeds.is_empty() {
        // Said, not silently dropped: a seed without metrics, a run's own file beside.
        empty.sort();
        if !empty.is_empty() {
            crate::errln!(
                "note: {}: {} without {} (not started?) left out: {}",
                dir.display(),
                if empty.len() == 1 {
                    "a seed directory"
                } else {
                    "seed directories"
                },
                crate::run_dir::METRICS,
                empty.join(", ")
            );
        }
        if dir.join(crate::run_dir::METRICS).is_file() {
            crate::errln!(
                "note: {}: its own {} is not drawn: the directory is read as its seed-N runs",
                dir.display(),
                crate::run_dir::METRICS
            );
        }
    }
    if seeds.is_empty() {
        if !dir.join(crate::run_dir::METRICS).is_file() {
            bail!(
                "{} is neither a run directory (no {}) nor a directory of seed-N runs",
                dir.display(),
                crate::run_dir::METRICS
            );
        }
        return Ok(vec![dir.to_path_buf()]);
    }
    seeds.sort();
    Ok(seeds.into_iter().map(|(_, p)| p).collect())
}

/// A condition's curves over seeds, summarised.
pub struct Band {
    pub label: String,
    pub seeds: usize,
    /// Grid, mean over seeds, standard error of the mean.
    pub x: Vec<f64>,
    pub mean: Vec<f64>,
    pub se: Vec<f64>,
    /// Per seed: the last value and the largest value of the (unsmoothed) metric.
    pub finals: Vec<f64>,
    pub maxima: Vec<f64>,
}

/// Trailing moving average over `window` points (1: unchanged).
pub fn smooth(points: &[(f64, f64)], window: usize) -> Vec<(f64, f64)> {
    let w = window.max(1);
    let mut sum = 0.0;
    points
        .iter()
        .enumerate()
        .map(|(i, &(x, y))| {
            sum += y;
            if i >= w {
                sum -= points[i - w].1;
            }
            (x, sum / (i + 1).min(w) as f64)
        })
        .collect()
}

/// y at `x` by linear interpolation (constant beyond the ends).
fn interpolate(points: &[(f64, f64)], x: f64) -> f64 {
    let i = points.partition_point(|p| p.0 < x);
    if i == 0 {
        return points[0].1;
    }
    if i == points.len() {
        return points[i - 1].1;
    }
    let ((x0, y0), (x1, y1)) = (points[i - 1], points[i]);
    if x1 <= x0 {
        y1
    } else {
        y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    }
}

/// Mean and standard error over seeds of `curves` (smoothed over `window` points), on
/// `grid` points from the first x to the smallest last x of the seeds.
pub fn band(label: String, curves: &[Curve], window: usize, grid: usize) -> Band {
    let smoothed: Vec<Vec<(f64, f64)>> = curves.iter().map(|c| smooth(&c.points, window)).collect();
    let x0 = smoothed
        .iter()
        .map(|p| p[0].0)
        .fold(f64::INFINITY, f64::min);
    let x1 = smoothed
        .iter()
        .map(|p| p[p.len() - 1].0)
        .fold(f64::INFINITY, f64::min);
    let n = grid.max(2);
    let x: Vec<f64> = (0..n)
        .map(|i| x0 + (x1 - x0) * i as f64 / (n - 1) as f64)
        .collect();
    let (mut mean, mut se) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for &xi in &x {
        let ys: Vec<f64> = smoothed.iter().map(|p| interpolate(p, xi)).collect();
        let (m, s) = mean_se(&ys);
        mean.push(m);
        se.push(s);
    }
    Band {
        label,
        seeds: curves.len(),
        x,
        mean,
        se,
        finals: curves
            .iter()
            .map(|c| c.points[c.points.len() - 1].1)
            .collect(),
        maxima: curves
            .iter()
            .map(|c| {
                c.points
                    .iter()
                    .map(|p| p.1)
                    .fold(f64::NEG_INFINITY, f64::max)
            })
            .collect(),
    }
}

/// Mean and standard error of the mean (0 for one value).
pub fn mean_se(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    if v.len() < 2 {
        return (m, 0.0);
    }
    let var = v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0);
    (m, (var / n).sqrt())
}

/// Half-width of the 95% confidence interval of the mean (Student's t; 0 for one value).
pub fn ci95(v: &[f64]) -> f64 {
    // t_{0.975, df} for df = 1..30; 1.96 beyond.
    const T: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
        2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
        2.052, 2.048, 2.045, 2.042,
    ];
    let (_, se) = mean_se(v);
    let df = v.len().saturating_sub(1);
    if df == 0 {
        return 0.0;
    }
    se * T.get(df - 1).copied().unwrap_or(1.96)
}

/// `mean ± half-width of the 95% CI` of `v` to 4 places; one value has no interval
/// (said, not printed as ± 0), none is `n/a`.
pub fn mean_ci_text(v: &[f64]) -> String {
    match v.len() {
        0 => "n/a".into(),
        1 => format!("{:.4} (one seed: no interval)", v[0]),
        _ => format!("{:.4} ± {:.4}", mean_se(v).0, ci95(v)),
    }
}

/// The final-performance table: per condition, seeds, final value and MMER as mean ± 95% CI.
/// The start of [`table`]'s first line (how `plot --table` knows an earlier table).
pub const TABLE_HEAD: &str = "condition ";

pub fn table(bands: &[Band]) -> String {
    let w = bands
        .iter()
        .map(|b| b.label.len())
        .max()
        .unwrap_or(9)
        .max(9);
    let mut s = format!(
        "{:<w$}  seeds  {:>20}  {:>20}\n",
        "condition", "final (mean ± 95% CI)", "MMER (mean ± 95% CI)"
    );
    for b in bands {
        let cell = |v: &[f64]| mean_ci_text(v);
        s += &format!(
            "{:<w$}  {:>5}  {:>20}  {:>20}\n",
            b.label,
            b.seeds,
            cell(&b.finals),
            cell(&b.maxima)
        );
    }
    s
}

/// A condition's colour, the same in every plot: the auxiliary-loss names have their
/// own, other labels one picked by a hash of the label.
pub fn colour(label: &str) -> RGBColor {
    let known = [
        ("none", RGBColor(31, 119, 180)),
        ("cpc", RGBColor(255, 127, 14)),
        ("cpca", RGBColor(44, 160, 44)),
        ("curl", RGBColor(214, 39, 40)),
    ];
    let key = label.to_lowercase();
    if let Some((_, c)) = known
        .iter()
        .find(|(k, _)| key == *k || key.ends_with(&format!("-{k}")))
    {
        return *c;
    }
    let h = label.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    });
    let c = Palette99::pick((h % 99) as usize).to_rgba();
    RGBColor(c.0, c.1, c.2)
}

/// Draws `bands` into a `width`×`height` PNG at `out`.
pub fn draw(
    bands: &[Band],
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
    for b in bands {
        for i in 0..b.x.len() {
            x0 = x0.min(b.x[i]);
            x1 = x1.max(b.x[i]);
            y0 = y0.min(b.mean[i] - b.se[i]);
            y1 = y1.max(b.mean[i] + b.se[i]);
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
    // Drawn into a temporary PNG beside `out`, then renamed over it: a failed draw
    // leaves an earlier plot whole, and a symlink at `out` is replaced, not written
    // through.
    let mut name = out.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{}.tmp.png", std::process::id()));
    let tmp = out.with_file_name(name);
    let r = render(
        bands,
        x_label,
        y_label,
        out,
        &tmp,
        size,
        (x0, x1, y0 - pad, y1 + pad),
    )
    .and_then(|()| {
        std::fs::rename(&tmp, out)
            .map_err(|e| anyhow::anyhow!("cannot write '{}': {e}", out.display()))
    });
    if r.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    r
}

/// [`draw`]'s chart, into the file `path`.
#[allow(clippy::too_many_arguments)]
fn render(
    bands: &[Band],
    x_label: &str,
    y_label: &str,
    out: &Path,
    path: &Path,
    size: (u32, u32),
    (x0, x1, y0, y1): (f64, f64, f64, f64),
) -> Result<()> {
    let root = BitMapBackend::new(path, size).into_drawing_area();
    let err = |e: &dyn std::fmt::Display| anyhow::anyhow!("cannot draw {}: {e}", out.display());
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .margin(20)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(x0..x1, y0..y1)
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
    for b in bands {
        let colour = colour(&b.label);
        if b.seeds > 1 {
            let upper = (0..b.x.len()).map(|i| (b.x[i], b.mean[i] + b.se[i]));
            let lower = (0..b.x.len()).rev().map(|i| (b.x[i], b.mean[i] - b.se[i]));
            chart
                .draw_series(std::iter::once(Polygon::new(
                    upper.chain(lower).collect::<Vec<_>>(),
                    colour.mix(0.2).filled(),
                )))
                .map_err(|e| err(&e))?;
        }
        let label = if b.seeds > 1 {
            format!("{} ({} seeds, ± s.e.)", b.label, b.seeds)
        } else {
            b.label.clone()
        };
        chart
            .draw_series(LineSeries::new(
                b.x.iter().copied().zip(b.mean.iter().copied()),
                colour.stroke_width(2),
            ))
            .map_err(|e| err(&e))?
            .label(label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smoothing_is_a_trailing_mean_and_bands_average_over_seeds() {
        let p = [(0.0, 1.0), (1.0, 3.0), (2.0, 5.0)];
        assert_eq!(smooth(&p, 2), vec![(0.0, 1.0), (1.0, 2.0), (2.0, 4.0)]);
        let c = |pts: &[(f64, f64)]| Curve {
            label: String::new(),
            points: pts.to_vec(),
        };
        // Two seeds logged at different x: interpolated onto one grid.
        let b = band(
            "x".into(),
            &[
                c(&[(0.0, 0.0), (10.0, 10.0)]),
                c(&[(0.0, 2.0), (5.0, 2.0), (12.0, 2.0)]),
            ],
            1,
            3,
        );
        assert_eq!(b.x, vec![0.0, 5.0, 10.0]);
        assert_eq!(b.mean, vec![1.0, 3.5, 6.0]);
        assert!((b.se[0] - 1.0).abs() < 1e-12);
        assert_eq!(b.finals, vec![10.0, 2.0]);
        assert_eq!(b.maxima, vec![10.0, 2.0]);
        // t_{0.975,1} = 12.706: half-width 12.706 × s.e. of [10, 2] (= 4).
        assert!((ci95(&b.finals) - 12.706 * 4.0).abs() < 1e-9);
        assert_eq!(colour("cpc"), colour("tmaze-cpc"));
        assert_ne!(colour("cpc"), colour("none"));
    }
}
