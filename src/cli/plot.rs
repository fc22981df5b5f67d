//! `rlcpc plot`: learning curves of conditions on the same axes ([`crate::plot`]), and
//! their final-performance table.

use std::path::PathBuf;

use anyhow::{bail, Result};

#[derive(clap::Args)]
pub struct Args {
    /// Conditions: run directories, or directories of `seed-N/` runs (as `rlcpc train
    /// --seeds` writes them), each drawn as the mean over its seeds ± one standard error.
    #[arg(required = true)]
    runs: Vec<PathBuf>,
    /// The PNG to draw. An earlier plot there is replaced; any other file only with
    /// --force.
    #[arg(long, default_value = "curve.png")]
    out: PathBuf,
    /// The metric on the y axis.
    #[arg(long, default_value = "rollout/ep_rew_mean")]
    metric: String,
    /// The metric on the x axis.
    #[arg(long, default_value = "time/total_timesteps")]
    x: String,
    /// Condition labels, in the order of the runs, repeated or comma-separated
    /// (`--label none,cpc`) [default: the directory names]. A label `none`, `cpc`,
    /// `cpca` or `curl` (or ending in `-cpc`, ...) always gets the same colour.
    #[arg(long = "label", value_delimiter = ',')]
    labels: Vec<String>,
    /// Trailing moving average over this many logged points, before averaging seeds.
    #[arg(long, default_value_t = 1)]
    smooth: usize,
    /// Also write the final-performance table to this file (it is always printed). An
    /// earlier table there is replaced; any other file only with --force.
    #[arg(long, value_name = "FILE")]
    table: Option<PathBuf>,
    /// Replace an existing --out or --table file that is not an earlier plot or table
    /// (never a run's checkpoint, metrics or config, nor a directory or device).
    #[arg(long)]
    force: bool,
}

pub fn run(args: Args) -> Result<()> {
    let Args {
        runs,
        out,
        metric,
        x,
        labels,
        smooth,
        table,
        force,
    } = args;
    // Checked before anything is read or drawn: a refused command writes nothing.
    use crate::run_dir::{check_output, OutputKind};
    check_output(&out, "--out", OutputKind::Png, force)?;
    if let Some(t) = &table {
        check_output(
            t,
            "--table",
            OutputKind::Text(crate::plot::TABLE_HEAD),
            force,
        )?;
        if std::path::absolute(t).ok() == std::path::absolute(&out).ok() {
            bail!("--table and --out are the same file '{}'", t.display());
        }
    }
    if !labels.is_empty() && labels.len() != runs.len() {
        bail!(
            "{} --label values for {} conditions",
            labels.len(),
            runs.len()
        );
    }
    let mut bands = Vec::new();
    for (i, dir) in runs.iter().enumerate() {
        let curves = crate::plot::seed_runs(dir)?
            .iter()
            .map(|r| crate::plot::read_curve(r, &x, &metric))
            .collect::<Result<Vec<_>>>()?;
        // Seeds that end at different steps (a run cut short) compare unequal budgets.
        let ends: Vec<f64> = curves
            .iter()
            .filter_map(|c| c.points.last().map(|p| p.0))
            .collect();
        let (lo, hi) = ends
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| {
                (a.min(x), b.max(x))
            });
        if ends.len() > 1 && lo < 0.95 * hi {
            crate::errln!(
                "note: the seeds of '{}' end at different x ({lo} to {hi}): its final values average unequal budgets",
                dir.display()
            );
        }
        let label = labels.get(i).cloned().unwrap_or_else(|| {
            dir.file_name().map_or_else(
                || dir.display().to_string(),
                |n| n.to_string_lossy().to_string(),
            )
        });
        bands.push(crate::plot::band(label, &curves, smooth, 200));
    }
    let x_label = if x == "time/total_timesteps" {
        "environment steps"
    } else {
        x.as_str()
    };
    crate::plot::draw(&bands, x_label, &metric, &out, (900, 540))?;
    let t = crate::plot::table(&bands);
    crate::out!("{t}");
    if let Some(path) = table {
        crate::checkpoint::write_bytes_atomic(&path, t.as_bytes())
            .map_err(|e| anyhow::anyhow!("cannot write '{}': {e}", path.display()))?;
    }
    crate::outln!("wrote {}", out.display());
    Ok(())
}
