//! `rlcpc study PLAN.toml`: checks and pins the plan, runs what is left of it (tuning,
//! then evaluation), and writes the report; [`crate::rl::study`] does the work.

use std::path::PathBuf;

use crate::rl::study::{Options, Outcome, Study};
use anyhow::{bail, Result};

use super::{stop_on_ctrl_c, DeviceArg};

/// The exit status of a study stopped with runs left (by --minutes or a signal).
pub const STOPPED: i32 = 3;

#[derive(clap::Args)]
pub struct Args {
    /// The study file: tasks, arms, tuning space and budget, seeds, metrics and
    /// criteria (docs/agent.md, "Studies", has a complete example).
    #[arg(value_name = "PLAN.toml")]
    plan: PathBuf,
    /// Study directory [default: runs/study-<study.name>]; the same one resumes.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Runs at a time [default: the cores available divided by the threads one run
    /// uses (its actor threads), at least 1].
    #[arg(long, value_name = "N")]
    jobs: Option<usize>,
    /// Stop cleanly (every run checkpointed) about this many minutes after the runs
    /// begin, keeping 5% of it (1 to 60 s) for the last updates and checkpoints; print
    /// what remains and how long it should take, and exit with status 3. The same
    /// command resumes.
    #[arg(long, value_name = "M")]
    minutes: Option<f64>,
    /// Accept a plan that differs from the one the study started with: runs whose
    /// config changed are moved to DIR/replaced/ and run again. Record the change and
    /// its reason in the study's protocol.
    #[arg(long)]
    replan: bool,
    /// Check the plan, pin it and list its runs, without running anything.
    #[arg(long)]
    dry_run: bool,
    /// Learner device: `cpu`, or `cuda` / `cuda:N` (a build with --features cuda).
    #[arg(long, default_value = "cpu")]
    device: DeviceArg,
    /// No line per finished run.
    #[arg(long)]
    quiet: bool,
}

pub fn run(args: Args) -> Result<()> {
    if let Some(m) = args.minutes {
        if !(m.is_finite() && m > 0.0 && m <= 1e6) {
            bail!("--minutes {m}: must be a number of minutes, more than 0");
        }
    }
    if args.jobs == Some(0) {
        bail!("--jobs 0: at least one run at a time");
    }
    let study = Study::open(&args.plan, args.out, args.replan)?;
    let tuning = study.tuning_runs()?;
    let cells = study.plan.cells();
    let n_eval = cells.len() * study.plan.study.seeds.len();
    // A sync run keeps about max(actor threads, 1) cores busy.
    let mut threads = tuning.iter().map(|r| r.cfg.run.workers).max().unwrap_or(1);
    for (ti, ai) in cells {
        threads = threads.max(study.config(ti, ai, 0, None)?.run.workers);
    }
    let threads = threads.max(1);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let jobs = args.jobs.unwrap_or((cores / threads).max(1));
    crate::errln!(
        "study '{}' (plan {}) in {}: {} tuning and {n_eval} evaluation runs, {jobs} at a time",
        study.plan.study.name,
        study.hash(),
        study.dir.display(),
        tuning.len()
    );
    if args.dry_run {
        for n in &study.notes {
            crate::errln!("{n}");
        }
        for r in &tuning {
            crate::outln!("{}", r.dir.display());
        }
        crate::outln!(
            "(then {n_eval} evaluation runs under {})",
            study.dir.join("eval").display()
        );
        return Ok(());
    }
    let opts = Options {
        jobs,
        minutes: args.minutes,
        device: args.device.device()?,
        verbose: !args.quiet,
    };
    match study.run(&opts, stop_on_ctrl_c()?)? {
        Outcome::Complete { report } => crate::outln!("done: report {}", report.display()),
        Outcome::Stopped { remaining } => {
            crate::outln!("stopped: {remaining}");
            // Distinct from done (0) and from an error (1), for scripts that rerun the
            // command until the study is done.
            std::process::exit(STOPPED);
        }
    }
    Ok(())
}
