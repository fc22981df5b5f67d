//! `rlcpc train`: flags into config overrides, one call of [`rlcpc::train::train`], the summary.

use std::path::PathBuf;

use anyhow::Result;
use rlcpc::config::{AuxKind, Config};
use rlcpc::train::{saved_config_with_notes, train_checked, TrainOptions, CHECKPOINT};

use super::{set_learner_threads, stop_on_ctrl_c, DeviceArg};

#[derive(clap::Args)]
pub struct Args {
    /// Config file, or the name of a built-in preset (the list is filled in at run
    /// time from the presets compiled in).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Auxiliary loss: `cpc` adds the CPC head, `none` builds no head at all.
    #[arg(long, value_enum)]
    aux: Option<AuxKind>,
    /// Seed of parameters, environments, action sampling and CPC negatives.
    #[arg(long)]
    seed: Option<u64>,
    /// Run directory [default: runs/<config>-<aux>-s<seed>-<unix time>].
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Override a config value, e.g. `--set algo.unroll=16 --set run.mode=async`
    /// (TOML syntax; repeatable).
    #[arg(long = "set", value_name = "KEY.PATH=VALUE")]
    overrides: Vec<String>,
    /// Continue the run in --out from its checkpoint (its config.toml is used;
    /// --set still applies, e.g. to raise run.total_steps).
    #[arg(long, requires = "out", conflicts_with = "config")]
    resume: bool,
    /// Learner device: `cpu`, or `cuda` / `cuda:N` (needs a build with --features cuda).
    #[arg(long, default_value = "cpu")]
    device: DeviceArg,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

pub fn run(args: Args) -> Result<()> {
    let Args {
        config,
        aux,
        seed,
        out,
        mut overrides,
        resume,
        device: dev,
        quiet,
    } = args;
    if let Some(a) = aux {
        overrides.push(format!("aux.kind=\"{}\"", a.as_str()));
    }
    if let Some(s) = seed {
        overrides.push(format!("run.seed={s}"));
    }
    let (cfg, notes) = match (&out, resume) {
        (Some(dir), true) => saved_config_with_notes(dir, &overrides)?,
        _ => Config::load_with_notes(config.as_deref(), &overrides)?,
    };
    for n in notes {
        eprintln!("{n}");
    }
    let out = out.unwrap_or_else(|| {
        rlcpc::run_dir::default_path(config.as_deref(), cfg.aux.kind.as_str(), cfg.run.seed)
    });
    let spec = rlcpc::train::preflight(&cfg)?;
    set_learner_threads(cfg.run.learner_threads);
    let stop = stop_on_ctrl_c()?;
    let opts = TrainOptions {
        out: out.clone(),
        resume,
        device: dev.device()?,
        progress: !quiet,
        write: true,
    };
    eprintln!(
        "training {} ({} aux) into {}",
        cfg.env.id,
        match cfg.aux.kind {
            AuxKind::None => "no",
            k => k.as_str(),
        },
        out.display()
    );
    let s = train_checked(&cfg, &spec, &opts, stop)?;
    let c = &s.counters;
    println!(
            "{} after {} env steps, {} updates, {} episodes in {:.1} s ({:.0} steps/s); mean return (last 100 episodes): {}",
            if s.interrupted { "interrupted" } else { "done" },
            c.env_steps,
            c.updates,
            c.episodes,
            c.elapsed_secs,
            s.sps,
            s.mean_return.map_or("n/a".into(), |m| format!("{m:.1}")),
        );
    if let Some((steps, secs)) = s.solved {
        println!(
            "target return {} reached at {steps} env steps, {secs:.2} s",
            cfg.run.target_return
        );
    }
    println!("checkpoint: {}", out.join(CHECKPOINT).display());
    Ok(())
}
