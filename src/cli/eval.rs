//! `rlcpc eval`: mean return of a checkpoint's policy ([`crate::rl::eval::evaluate`]).

use std::path::PathBuf;

use anyhow::{bail, Result};

use super::MAX_EPISODES;

#[derive(clap::Args)]
pub struct Args {
    /// A checkpoint.safetensors written by `rlcpc train`.
    #[arg(long, value_name = "PATH")]
    checkpoint: PathBuf,
    /// Episodes to average over.
    #[arg(long, default_value_t = 10)]
    episodes: usize,
    /// Seed of the first reset (later episodes continue the environment's generator).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Sample actions from the policy instead of taking the most likely one.
    #[arg(long)]
    stochastic: bool,
    /// Print one JSON object (mean, std, min, max, every return).
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> Result<()> {
    let Args {
        checkpoint,
        episodes,
        seed,
        stochastic,
        json,
    } = args;
    if episodes == 0 || episodes > MAX_EPISODES {
        bail!("--episodes must be in 1..={MAX_EPISODES}");
    }
    let r = crate::rl::eval::evaluate(&checkpoint, episodes, seed, stochastic)?;
    let (mean, std) = crate::rl::eval::mean_std(&r);
    let (min, max) = (
        r.iter().cloned().fold(f64::INFINITY, f64::min),
        r.iter().cloned().fold(f64::NEG_INFINITY, f64::max),
    );
    if json {
        crate::outln!(
            "{}",
            serde_json::json!({
                "checkpoint": checkpoint, "episodes": episodes, "seed": seed,
                "stochastic": stochastic, "mean": mean, "std": std,
                "min": min, "max": max, "returns": r,
            })
        );
    } else {
        crate::outln!("mean return {mean:.2} +/- {std:.2} over {episodes} episodes (min {min:.1}, max {max:.1})");
    }
    Ok(())
}
