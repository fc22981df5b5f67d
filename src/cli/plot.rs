//! `rlcpc plot`: learning curves of runs on the same axes ([`rlcpc::plot`]).

use std::path::PathBuf;

use anyhow::{bail, Result};

#[derive(clap::Args)]
pub struct Args {
    /// Run directories.
    #[arg(required = true)]
    runs: Vec<PathBuf>,
    #[arg(long, default_value = "curve.png")]
    out: PathBuf,
    /// The metric on the y axis.
    #[arg(long, default_value = "rollout/ep_rew_mean")]
    metric: String,
    /// The metric on the x axis.
    #[arg(long, default_value = "time/total_timesteps")]
    x: String,
    /// Curve labels, in the order of the runs [default: the directory names].
    #[arg(long = "label")]
    labels: Vec<String>,
}

pub fn run(args: Args) -> Result<()> {
    let Args {
        runs,
        out,
        metric,
        x,
        labels,
    } = args;
    if !labels.is_empty() && labels.len() != runs.len() {
        bail!("{} --label values for {} runs", labels.len(), runs.len());
    }
    let mut curves = runs
        .iter()
        .map(|r| rlcpc::plot::read_curve(r, &x, &metric))
        .collect::<Result<Vec<_>>>()?;
    for (c, l) in curves.iter_mut().zip(labels) {
        c.label = l;
    }
    let x_label = if x == "time/total_timesteps" {
        "environment steps"
    } else {
        x.as_str()
    };
    rlcpc::plot::draw(&curves, x_label, &metric, &out, (900, 540))?;
    println!("wrote {}", out.display());
    Ok(())
}
