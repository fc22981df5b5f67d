//! `rlcpc record`: a trained or reference policy plays; [`crate::rl::eval::record`] writes the trajectories.

use std::path::PathBuf;

use crate::rl::eval::ReferencePolicy;
use anyhow::{bail, Result};

use super::EnvFlags;

#[derive(clap::Args)]
pub struct Args {
    /// Registered environment id (with --checkpoint it may be left out; if given it
    /// must be the checkpoint's).
    #[arg(long)]
    env: Option<String>,
    /// A trained agent plays (its own environment and options are used).
    #[arg(long, conflicts_with_all = ["policy", "options"])]
    checkpoint: Option<PathBuf>,
    /// A reference policy plays, when no checkpoint is given.
    #[arg(long, value_enum, default_value = "random")]
    policy: ReferencePolicy,
    /// Agent steps to record.
    #[arg(long, default_value_t = 10_000)]
    steps: usize,
    /// Seed of the first reset and of the policy's sampling.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[command(flatten)]
    env_flags: EnvFlags,
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Replace a recording already in --out.
    #[arg(long)]
    force: bool,
}

pub fn run(args: Args) -> Result<()> {
    let Args {
        env,
        checkpoint,
        policy,
        steps,
        seed,
        env_flags,
        out,
        force,
    } = args;
    if steps == 0 {
        bail!("--steps must be at least 1");
    }
    let file = out.join(crate::data::trajectories::FILE);
    crate::run_dir::refuse_special(&file, "--out")?;
    if file.exists() && !force {
        bail!(
                "'{}' already holds a recording ({}); choose another --out or pass --force to replace it",
                out.display(),
                file.display()
            );
    }
    let (cfg, mut driver, who) = match &checkpoint {
        Some(path) => {
            let p = crate::rl::eval::TrainedPolicy::load(path)?;
            if let Some(e) = &env {
                if *e != p.config.env.id {
                    bail!(
                        "checkpoint {} was trained on {}, not {e}",
                        path.display(),
                        p.config.env.id
                    );
                }
            }
            refuse_python(&p.config.env.id)?;
            let d = crate::rl::eval::Driver::trained(&p, path, seed, true)?;
            (p.config.env.clone(), d, path.display().to_string())
        }
        None => {
            let Some(name) = env else {
                bail!("--env NAME is needed without --checkpoint")
            };
            refuse_python(&name)?;
            let cfg = env_flags.config(&name)?;
            let e = rlcpc_envs::make(&cfg)?;
            let d = crate::rl::eval::Driver::reference(policy, e.as_ref(), seed)?;
            (cfg, d, crate::config::user_name(&policy))
        }
    };
    let t0 = std::time::Instant::now();
    let t = crate::rl::eval::record(&cfg, &mut driver, &who, steps, seed)?;
    t.save(&out, force)?;
    crate::outln!(
            "wrote {} steps ({} episodes, observation {:?}, state [{}]) of {} by {who} to {} in {:.1} s",
            t.len(),
            t.episodes(),
            t.obs_shape,
            t.state_names.join(", "),
            cfg.id,
            out.join(crate::data::trajectories::FILE).display(),
            t0.elapsed().as_secs_f64()
        );
    Ok(())
}

/// A recording holds each step's true state (for the probes), which a Python
/// environment does not report: refused before Python is started.
fn refuse_python(id: &str) -> Result<()> {
    if id.starts_with(rlcpc_envs::gymnasium::PREFIX) {
        bail!(
            "'{id}' is a Python environment: `record` saves each step's true state beside the observation (the probes read it), which Python environments do not report; record one of rlcpc's own environments (`rlcpc envs`)"
        );
    }
    Ok(())
}
