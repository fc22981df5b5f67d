//! `rlcpc envs`, `envs score`, `envs render`: the registered environments, reference
//! returns, and an episode as a GIF.

use std::path::PathBuf;

use crate::config::PRESETS;
use crate::rl::eval::ReferencePolicy;
use anyhow::{bail, Result};

use super::{env_config, stop_on_ctrl_c, EnvFlags, MAX_EPISODES};

/// The most frames `envs render` writes into one GIF.
const MAX_FRAMES: usize = 100_000;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Mean return of a reference policy: random and oracle (a scripted agent that reads
    /// the true state) bracket what a learning agent can reach.
    Score {
        /// Registered environment id (see `rlcpc envs`).
        name: String,
        #[arg(long, value_enum, default_value = "random")]
        policy: ReferencePolicy,
        /// Episodes to average over.
        #[arg(long, default_value_t = 100)]
        episodes: usize,
        /// Seed of the first reset and of the random policy.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[command(flatten)]
        env: EnvFlags,
        /// Print one JSON object (mean, std, every return).
        #[arg(long)]
        json: bool,
    },
    /// An animated GIF of an episode: the first-person view beside a top-down map (with
    /// hidden things such as the watermaze platform shown), a strip flashing green or red
    /// on rewards. Plays a random policy, the oracle, or a trained checkpoint.
    Render {
        /// Registered environment id (a lab/* task).
        name: String,
        /// Seed of the first reset and of the policy's sampling.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Agent steps to record (one frame each).
        #[arg(long, default_value_t = 300)]
        steps: usize,
        /// A trained checkpoint whose policy plays (its own env options are used).
        #[arg(long, conflicts_with = "policy")]
        checkpoint: Option<PathBuf>,
        /// A reference policy, when no checkpoint is given.
        #[arg(long, value_enum, default_value = "random")]
        policy: ReferencePolicy,
        /// An environment option, e.g. `--option obs=grid` (repeatable; not with --checkpoint).
        #[arg(
            long = "option",
            value_name = "KEY=VALUE",
            conflicts_with = "checkpoint"
        )]
        options: Vec<String>,
        /// Frames per second of the GIF.
        #[arg(long, default_value_t = 15)]
        fps: u16,
        /// Where to write the GIF. An earlier GIF there is replaced; any other file only
        /// with --force.
        #[arg(long, default_value = "episode.gif")]
        out: PathBuf,
        /// Replace an existing --out that is not a GIF (never a run's checkpoint,
        /// metrics or config, nor a directory or device).
        #[arg(long)]
        force: bool,
    },
}

pub fn run(action: Option<Command>) -> Result<()> {
    match action {
        None => {
            crate::outln!(
                "{:<18} {:<16} {:<12} description",
                "id",
                "observation",
                "action"
            );
            for e in rlcpc_envs::registry() {
                let env = rlcpc_envs::make(&rlcpc_envs::EnvConfig::new(e.id))?;
                crate::outln!(
                    "{:<18} {:<16} {:<12} {}",
                    e.id,
                    env.observation_space().to_string(),
                    env.action_space().to_string(),
                    e.description
                );
                if !e.options.is_empty() {
                    crate::outln!("{:<48} options: {}", "", e.options);
                }
            }
            crate::outln!(
                "{:<18} {:<16} {:<12} any Python Gymnasium environment, in its own process (env.python, env.wrappers; docs/environments.md)",
                "gymnasium:NAME", "Box", "Discrete"
            );
            crate::outln!(
                "\npresets (rlcpc train --config NAME): {}",
                PRESETS.iter().map(|p| p.0).collect::<Vec<_>>().join(", ")
            );
        }
        Some(Command::Score {
            name,
            policy,
            episodes,
            seed,
            env,
            json,
        }) => {
            if episodes == 0 || episodes > MAX_EPISODES {
                bail!("--episodes must be in 1..={MAX_EPISODES}");
            }
            let cfg = env.config(&name)?;
            let r = crate::rl::eval::score(&cfg, policy, episodes, seed)?;
            let (mean, std) = crate::rl::eval::mean_std(&r);
            if json {
                crate::outln!(
                    "{}",
                    serde_json::json!({
                        "env": name, "policy": crate::config::user_name(&policy),
                        "episodes": episodes, "seed": seed, "mean": mean, "std": std,
                        "returns": r,
                    })
                );
                return Ok(());
            }
            crate::outln!(
                "{name} {}: mean return {mean:.3} +/- {std:.3} over {episodes} episodes",
                crate::config::user_name(&policy)
            );
        }
        Some(Command::Render {
            name,
            seed,
            steps,
            checkpoint,
            policy,
            options,
            fps,
            out,
            force,
        }) => {
            crate::run_dir::check_output(&out, "--out", crate::run_dir::OutputKind::Gif, force)?;
            let (mut env, mut driver) = match &checkpoint {
                Some(path) => {
                    let p = crate::rl::eval::TrainedPolicy::load(path)?;
                    if p.config.env.id != name {
                        bail!(
                            "checkpoint {} was trained on {}, not {name}",
                            path.display(),
                            p.config.env.id
                        );
                    }
                    let env = rlcpc_envs::make(&p.config.env)?;
                    (env, crate::rl::eval::Driver::trained(&p, path, seed, true)?)
                }
                None => {
                    let env = rlcpc_envs::make(&env_config(&name, &options)?)?;
                    let d = crate::rl::eval::Driver::reference(policy, env.as_ref(), seed)?;
                    (env, d)
                }
            };
            if steps > MAX_FRAMES {
                bail!("--steps must be at most {MAX_FRAMES} (frames in one GIF)");
            }
            let stop = stop_on_ctrl_c()?;
            let clip = crate::rl::render::render_gif(
                env.as_mut(),
                &mut driver,
                steps,
                seed,
                fps,
                &out,
                &stop,
            )?;
            crate::outln!(
                    "wrote {} ({} frames of {}x{}); {}; the last episode, unfinished, has return {} so far",
                    out.display(),
                    clip.frames,
                    clip.width,
                    clip.height,
                    if clip.finished.is_empty() {
                        "no episode finished".to_string()
                    } else {
                        format!("returns of the {} finished episodes: {:?}", clip.finished.len(), clip.finished)
                    },
                    clip.partial
                );
        }
    }
    Ok(())
}
