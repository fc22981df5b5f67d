//! The `rlcpc` command line: one module per subcommand, each parsing its flags, making
//! one library call and printing the result.
//!
//! Design decision: **the CLI owns no logic.** It is a leaf of the library: no other
//! module imports it (`tests/imports.rs` checks; cargo's `exec()` over `cargo::ops`,
//! ripgrep's `main.rs`), and it is compiled once for its two front ends, the `rlcpc`
//! binary (`src/main.rs`) and `python -m rlcpc` (`python/src/lib.rs`). What a user can
//! do here, a Rust caller can do with the library.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use candle_core::Device;
use clap::{Parser, Subcommand};

mod bench;
mod config;
mod envs;
mod eval;
mod export_encoder;
mod plot;
mod pretrain;
mod probe;
mod record;
mod study;
mod train;

/// Reinforcement learning with contrastive representation learning: an A2C
/// actor–learner whose recurrent policy carries an auxiliary CPC head.
#[derive(Parser)]
#[command(name = "rlcpc", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train an agent (default: the built-in configs/cartpole.toml preset).
    ///
    /// Writes to the run directory: config.toml (the resolved config), metrics.jsonl,
    /// TensorBoard event files (`tensorboard --logdir runs`) and checkpoint.safetensors.
    Train(train::Args),
    /// Show configs: `rlcpc config show PRESET` prints a preset (or a file) with every
    /// key, its resolved value and its documentation; `rlcpc config list` the presets.
    Config {
        #[command(subcommand)]
        action: config::Command,
    },
    /// Evaluate a checkpoint: mean and standard deviation of the episode return.
    Eval(eval::Args),
    /// Write the encoder's weights and config to a safetensors file, for the standalone
    /// trainers (and PyTorch's safetensors loader).
    ExportEncoder(export_encoder::Args),
    /// Standalone representation trainers (no environment): `rlcpc pretrain audio
    /// --objective cpc ...`; `rlcpc cpc audio ...` is the same command.
    #[command(visible_alias = "cpc")]
    Pretrain {
        #[command(subcommand)]
        modality: pretrain::Command,
    },
    /// Linear probes on frozen features: audio labels, phones, image classes, text labels,
    /// or an environment's true state.
    ///
    /// On an audio corpus: multinomial logistic
    /// regression of a label (speaker, digit, ...) from CPC context vectors pooled over
    /// time (by the mean, and by mean and standard deviation), next to a randomly
    /// initialised encoder of the same architecture and MFCCs pooled the same two ways, on
    /// the same train/test split (λ picked on a validation part of the training split). On an
    /// image set (an image encoder): the class from grid-pooled features on the test
    /// part, next to a random-init twin and the raw pixels. On a labelled text file (a
    /// text encoder): the label by k-fold cross-validation, next to a random-init twin
    /// and a bag of words. On trajectories written by `rlcpc record`: ridge regression of
    /// the true state from the features of an agent checkpoint, an exported encoder or a
    /// `pretrain frames` run (belief probing), next to a random-init network and the raw
    /// observation.
    Probe(probe::Args),
    /// Record observations with the environment's true state, for CPC on frames and probes.
    ///
    /// The true state is CartPole's full state, the T-maze cue, or a Lab agent's position
    /// and heading and the goal's position. Writes DIR/trajectories.safetensors (obs,
    /// state, action, reward, first).
    Record(record::Args),
    /// List the registered environments with their spaces, options and the built-in
    /// presets; `envs score` gives reference returns.
    Envs {
        #[command(subcommand)]
        action: Option<envs::Command>,
    },
    /// Plot learning curves of runs on the same axes (PNG), from their metrics.jsonl.
    Plot(plot::Args),
    /// Run a pre-registered study: tasks × arms with the same tuning budget per arm,
    /// evaluation seeds disjoint from the tuning seeds, paired statistics and the
    /// verdict of each declared criterion (report.md, CSV, JSON, plots).
    ///
    /// Resumable: finished runs are skipped, interrupted ones continue from their
    /// checkpoints; `--minutes M` (or Ctrl-C / SIGTERM) stops every run cleanly with a
    /// checkpoint and prints what remains. A changed plan is refused unless --replan.
    Study(study::Args),
    /// Measure throughput (env steps per second, medians over repeats) and, with
    /// --solve, the steps and seconds CartPole takes to reach its target return.
    Bench(bench::Args),
}

/// The command line `args` (the program name first), with the built-in presets listed
/// in `train --help`; exits with clap's message on bad flags and for --help.
pub fn parse<I, T>(args: I) -> Cli
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    use clap::{CommandFactory, FromArgMatches};
    let presets = crate::config::PRESETS
        .iter()
        .map(|p| p.0)
        .collect::<Vec<_>>()
        .join(", ");
    let cmd = Cli::command().mut_subcommand("train", |c| {
        c.mut_arg("config", |a| {
            a.help(format!(
                "Config file, or the name of a built-in preset: {presets} [default: cartpole]"
            ))
        })
    });
    Cli::from_arg_matches(&cmd.get_matches_from(args)).unwrap_or_else(|e| e.exit())
}

/// Runs the parsed command.
/// An error as the user reads it: its chain on one line (`{e:#}`), each line cut to
/// `MESSAGE_LINE_MAX` characters, so that a value of megabytes (a config line, a
/// `--set`) is not echoed whole.
pub fn error_text(e: &anyhow::Error) -> String {
    let text = format!("{e:#}");
    text.lines().map(cut_line).collect::<Vec<_>>().join("\n")
}

/// The longest line of an error message.
const MESSAGE_LINE_MAX: usize = 2000;

fn cut_line(line: &str) -> String {
    let n = line.chars().count();
    if n <= MESSAGE_LINE_MAX {
        return line.to_string();
    }
    let head: String = line.chars().take(MESSAGE_LINE_MAX - 200).collect();
    let tail: String = line.chars().skip(n - 150).collect();
    format!(
        "{head} … ({} characters cut) … {tail}",
        n - MESSAGE_LINE_MAX + 50
    )
}

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Train(a) => train::run(a),
        Command::Config { action } => config::run(action),
        Command::Eval(a) => eval::run(a),
        Command::ExportEncoder(a) => export_encoder::run(a),
        Command::Pretrain { modality } => pretrain::run(modality),
        Command::Probe(a) => probe::run(a),
        Command::Record(a) => record::run(a),
        Command::Envs { action } => envs::run(action),
        Command::Plot(a) => plot::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Study(a) => study::run(a),
    }
}

/// The most episodes `eval` and `envs score` play (a long evaluation, not an endless one).
const MAX_EPISODES: usize = 10_000_000;

/// `--device`: `cpu`, `cuda` or `cuda:N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceArg {
    Cpu,
    Cuda(usize),
}

impl std::str::FromStr for DeviceArg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "cpu" => Ok(DeviceArg::Cpu),
            "cuda" => Ok(DeviceArg::Cuda(0)),
            d => match d.strip_prefix("cuda:").map(str::parse::<usize>) {
                Some(Ok(n)) => Ok(DeviceArg::Cuda(n)),
                Some(Err(_)) => Err(format!("bad GPU index in '{d}'")),
                None => Err(format!("'{d}': expected cpu, cuda or cuda:N")),
            },
        }
    }
}

impl DeviceArg {
    /// The candle device; CUDA needs a build with `--features cuda`.
    pub fn device(self) -> Result<Device> {
        match self {
            DeviceArg::Cpu => Ok(Device::Cpu),
            DeviceArg::Cuda(n) => {
                if !cfg!(feature = "cuda") {
                    bail!("--device cuda:{n}: this rlcpc was built without CUDA support; rebuild with `cargo build --release --features cuda`");
                }
                Ok(Device::new_cuda(n)?)
            }
        }
    }
}

/// The environment flags of `record` and `envs score`: options and an episode limit.
#[derive(clap::Args)]
struct EnvFlags {
    /// An environment option, e.g. `--option corridor_length=40` or `--option obs=grid`
    /// (repeatable; `rlcpc envs` lists each environment's options).
    #[arg(long = "option", value_name = "KEY=VALUE")]
    options: Vec<String>,
    /// Episode length limit in agent steps (0: the environment's default), as
    /// `env.max_episode_steps` of a config.
    #[arg(long, default_value_t = 0)]
    max_episode_steps: usize,
    /// The Python interpreter of a `gymnasium:` environment, as `env.python` of a config
    /// [default: the active virtual environment's, else `python3` on PATH].
    #[arg(long, value_name = "PATH")]
    python: Option<String>,
}

impl EnvFlags {
    /// The environment config of `name` with these flags.
    fn config(&self, name: &str) -> Result<rlcpc_envs::EnvConfig> {
        let mut cfg = env_config(name, &self.options)?;
        cfg.max_episode_steps = self.max_episode_steps;
        cfg.python = self.python.clone();
        Ok(cfg)
    }
}

/// `--option KEY=VALUE` flags into an environment config (values parsed as JSON, else
/// taken as strings).
fn env_config(name: &str, options: &[String]) -> Result<rlcpc_envs::EnvConfig> {
    let mut cfg = rlcpc_envs::EnvConfig::new(name);
    for o in options {
        let (k, v) = o
            .split_once('=')
            .with_context(|| format!("--option {o}: expected KEY=VALUE"))?;
        let value = serde_json::from_str(v).unwrap_or_else(|_| serde_json::Value::String(v.into()));
        cfg.options.insert(k.into(), value);
    }
    Ok(cfg)
}

/// The process-wide stop flag ([`crate::console::stop_flag`]), with the handler that the
/// first Ctrl-C, SIGTERM or SIGHUP raises it (the run finishes its step and
/// checkpoints); a second one exits at once. A closed standard output or error raises
/// the same flag.
fn stop_on_ctrl_c() -> Result<Arc<AtomicBool>> {
    // Installed once per process: `train --seeds` runs several trainings in a row.
    static INSTALLED: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    let stop = crate::console::stop_flag();
    if INSTALLED.get().is_some() {
        return Ok(stop);
    }
    let flag = stop.clone();
    // Counted apart from the flag, which a closed pipe may have raised first.
    let signals = std::sync::atomic::AtomicUsize::new(0);
    ctrlc::set_handler(move || {
        flag.store(true, Ordering::SeqCst);
        if signals.fetch_add(1, Ordering::SeqCst) > 0 {
            crate::errln!("second interrupt: exiting without a final checkpoint");
            // No destructor runs on this exit: end the Python environments here.
            rlcpc_envs::gymnasium::kill_all();
            std::process::exit(130);
        }
        // A Python environment that hangs gets a few seconds, not the run.
        rlcpc_envs::gymnasium::hurry_all();
        crate::errln!("interrupt (Ctrl-C or a termination signal): finishing the current step, then stopping (a training run writes its checkpoint first; again to abort)");
    })
    .context("cannot install the Ctrl-C / SIGTERM / SIGHUP handler")?;
    INSTALLED.get_or_init(|| ());
    Ok(stop)
}
