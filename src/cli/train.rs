//! `rlcpc train`: flags into config overrides, one call of [`crate::rl::train::train`], the summary.

use std::path::PathBuf;

use crate::config::{AuxKind, Config};
use crate::rl::study::seeds::SeedRow;
use crate::rl::train::{saved_config_with_notes, train_on, ActorSource, Threads, TrainOptions};
use anyhow::{bail, Context, Result};

use super::{stop_on_ctrl_c, DeviceArg};
use crate::rl::train::set_learner_threads;

#[derive(clap::Args)]
pub struct Args {
    /// Config file, or the name of a built-in preset (the list is filled in at run
    /// time from the presets compiled in).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Auxiliary loss: `cpc` adds the CPC head, `none` builds no head at all.
    #[arg(long, value_enum)]
    aux: Option<AuxKind>,
    /// Seed of parameters, environments, action sampling and CPC negatives (at most
    /// 9223372036854775807: config integers are signed 64-bit).
    #[arg(long, value_parser = clap::value_parser!(u64).range(..=i64::MAX as u64))]
    seed: Option<u64>,
    /// One run per seed, `1-5` or `1,3,7`, one after another into OUT/seed-N/, then a
    /// table of each seed's final return (mean of the last 10% of episodes), AUC (the
    /// learning curve's mean height) and MMER (the best logged 100-episode mean), with
    /// their means and 95% confidence intervals (also in OUT/summary.txt); a seed cut
    /// short is marked and left out of the means. With --resume (and --out), continues:
    /// finished seeds are kept, an interrupted one resumes, the rest start. To compare
    /// arms with paired statistics and a tuning budget, write a study (`rlcpc study`).
    #[arg(long, value_name = "LIST", conflicts_with = "seed")]
    seeds: Option<String>,
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
    /// Run under `mpirun -np N` (N ≥ 2): rank 0 learns, ranks 1..N−1 act, each running a
    /// block of run.workers with its own environments, on this host or others; sync or
    /// async. Needs a build with `--features mpi` (OpenMPI).
    #[arg(long, conflicts_with = "seeds")]
    distributed: bool,
    /// With --distributed: data-parallel learners, MPI ranks 0..N−1; each learns on its
    /// share of run.workers (its own actor ranks, or its own threads when the job has
    /// only learner ranks), and their gradients are summed every update (MPI
    /// all-reduce), so that all take the same step.
    #[arg(long, value_name = "N", default_value_t = 1, requires = "distributed")]
    learners: usize,
    /// With --distributed: seconds an actor rank may stay silent (no unroll, no
    /// heartbeat; they beat every second) before it counts as lost — a sync run stops
    /// naming it, an async run goes on without it (start such runs with `mpirun
    /// --enable-recovery`). Actor ranks give up on a learner silent for twice this; raise
    /// it above the time of an update.
    #[arg(
        long,
        value_name = "SECS",
        default_value_t = 60.0,
        requires = "distributed"
    )]
    rank_timeout: f64,
}

pub fn run(args: Args) -> Result<()> {
    let Args {
        config,
        aux,
        seed,
        seeds,
        out,
        mut overrides,
        resume,
        device: dev,
        quiet,
        distributed,
        learners,
        rank_timeout,
    } = args;
    if let Some(a) = aux {
        overrides.push(format!("aux.kind=\"{}\"", a.as_str()));
    }
    let mut run = RunArgs {
        config,
        out,
        overrides,
        resume,
        device: dev,
        quiet,
    };
    if let Some(list) = seeds {
        return run_seeds(&run, &parse_seeds(&list)?);
    }
    if let Some(s) = seed {
        run.overrides.push(format!("run.seed={s}"));
    }
    if distributed {
        let how = Distributed {
            learners,
            timeout: rank_timeout,
        };
        return run_distributed(&run, how);
    }
    one_run(&run, &Threads).map(|_| ())
}

/// What one training run is given: the config (file or preset; `None` with `resume`,
/// which reads the run directory's), the run directory, `--set` overrides, the device
/// and whether to hide the progress bar.
#[derive(Clone)]
struct RunArgs {
    config: Option<PathBuf>,
    out: Option<PathBuf>,
    overrides: Vec<String>,
    resume: bool,
    device: DeviceArg,
    quiet: bool,
}

/// `--learners` and `--rank-timeout`.
#[cfg_attr(not(feature = "mpi"), allow(dead_code))]
struct Distributed {
    learners: usize,
    timeout: f64,
}

/// `--distributed` without MPI compiled in.
#[cfg(not(feature = "mpi"))]
fn run_distributed(_: &RunArgs, _: Distributed) -> Result<()> {
    bail!("--distributed: this rlcpc was built without MPI; rebuild with `cargo build --release --features mpi` (OpenMPI: `apt-get install libopenmpi-dev openmpi-bin libclang-dev`)")
}

/// `--distributed` under mpirun: learner 0 is `one_run` with its actor ranks (or
/// threads) and the other learners; every other rank serves it
/// ([`crate::rl::distributed::run_job`]).
#[cfg(feature = "mpi")]
fn run_distributed(run: &RunArgs, how: Distributed) -> Result<()> {
    let out_dir = run.out.clone().unwrap_or_default();
    let device = || run.device.device();
    crate::rl::distributed::run_job(how.learners, how.timeout, &out_dir, device, |actors| {
        one_run(run, actors).map(|_| ())
    })
}

/// `1-5` or `1,3,7` (or a mix, `1-3,9`), each seed once, in the order given.
pub fn parse_seeds(list: &str) -> Result<Vec<u64>> {
    let bad = || anyhow::anyhow!("--seeds '{list}': expected a list like 1-5 or 1,3,7");
    let mut seeds = Vec::new();
    for part in list.split(',').map(str::trim) {
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (a.trim().parse::<u64>(), b.trim().parse::<u64>()),
            None => (part.parse(), part.parse()),
        };
        let (lo, hi) = (lo.map_err(|_| bad())?, hi.map_err(|_| bad())?);
        if hi > i64::MAX as u64 {
            bail!(
                "--seeds '{list}': seed {hi} is above {} (config integers are signed 64-bit)",
                i64::MAX
            );
        }
        if hi < lo || hi - lo >= 1000 {
            bail!("--seeds '{list}': '{part}' is not an increasing range of at most 1000 seeds");
        }
        for s in lo..=hi {
            if seeds.contains(&s) {
                bail!("--seeds '{list}': seed {s} is given twice");
            }
            seeds.push(s);
        }
    }
    Ok(seeds)
}

/// One run per seed into `out/seed-N/`, then the summary table
/// ([`crate::rl::study::seeds::summary`]). With `resume`, seeds
/// with a `result.json` are kept, a seed with a checkpoint resumes and the others start
/// from a finished seed's config.
fn run_seeds(run: &RunArgs, seeds: &[u64]) -> Result<()> {
    let RunArgs {
        config,
        out,
        overrides,
        resume,
        ..
    } = run;
    let resume = *resume;
    let base = match out {
        Some(o) => o.clone(),
        None => {
            let first = Config::load(config.as_deref(), overrides)?;
            let p = crate::run_dir::default_path(
                config.as_deref(),
                first.aux.kind().as_str(),
                seeds[0],
            );
            PathBuf::from(format!("{}-seeds{}", p.display(), seeds.len()))
        }
    };
    let seed_dir = |s: u64| base.join(format!("seed-{s}"));
    // A fresh seed of a resumed set takes the config the others were started with.
    let started = if resume {
        let c = seeds
            .iter()
            .map(|&s| seed_dir(s).join(crate::run_dir::CONFIG))
            .find(|p| p.is_file());
        if c.is_none() {
            bail!(
                "--resume: no seed-N/ run of {:?} in '{}' to continue; start it without --resume",
                seeds,
                base.display()
            );
        }
        c
    } else {
        config.clone()
    };
    let mut rows = Vec::new();
    for (i, &seed) in seeds.iter().enumerate() {
        let dir = seed_dir(seed);
        let result = dir.join(crate::rl::study::RESULT);
        if resume && result.is_file() {
            let r: crate::rl::study::SeedResult = serde_json::from_slice(
                &std::fs::read(&result)
                    .with_context(|| format!("cannot read '{}'", result.display()))?,
            )
            .with_context(|| format!("'{}' is not a seed's result", result.display()))?;
            crate::errln!(
                "seed {seed} ({}/{}): finished before, kept",
                i + 1,
                seeds.len()
            );
            rows.push(SeedRow {
                seed,
                env_steps: r.metrics.env_steps,
                metrics: r.metrics,
                solved_at: r.solved_at,
                complete: true,
            });
            continue;
        }
        crate::errln!("seed {seed} ({}/{})", i + 1, seeds.len());
        let again = resume && dir.join(crate::run_dir::CHECKPOINT).is_file();
        let mut one = RunArgs {
            config: if again { None } else { started.clone() },
            out: Some(dir.clone()),
            resume: again,
            ..run.clone()
        };
        one.overrides.push(format!("run.seed={seed}"));
        let (s, _) = one_run(&one, &Threads)?;
        // The study's metrics (crate::rl::study::stats): one definition for both.
        let m = crate::rl::study::RunMetrics::read(&dir)?;
        let solved_at = s.solved.map(|(steps, _)| steps);
        if !s.interrupted {
            let r = crate::rl::study::SeedResult {
                metrics: m.clone(),
                solved_at,
            };
            crate::checkpoint::write_bytes_atomic(
                &result,
                serde_json::to_string_pretty(&r)?.as_bytes(),
            )
            .with_context(|| format!("cannot write '{}'", result.display()))?;
        }
        rows.push(SeedRow {
            seed,
            env_steps: s.counters.env_steps,
            metrics: m,
            solved_at,
            complete: !s.interrupted,
        });
        if s.interrupted {
            crate::errln!("interrupted: the seeds after {seed} are not run (continue with the same command and --resume)");
            break;
        }
    }
    let t = crate::rl::study::seeds::summary(&rows, seeds.len());
    crate::out!("{t}");
    let path = base.join("summary.txt");
    crate::checkpoint::write_bytes_atomic(&path, t.as_bytes())
        .map_err(|e| anyhow::anyhow!("cannot write '{}': {e}", path.display()))?;
    crate::outln!("summary: {}", path.display());
    Ok(())
}

/// One run; returns its summary and directory.
fn one_run(
    run: &RunArgs,
    actors: &dyn ActorSource<'_>,
) -> Result<(crate::rl::train::TrainSummary, PathBuf)> {
    let RunArgs {
        config,
        out,
        overrides,
        resume,
        device: dev,
        quiet,
    } = run.clone();
    // First: loading the config starts a Python environment where it names one, and a
    // signal meanwhile must not kill rlcpc before it can end that process.
    let stop = stop_on_ctrl_c()?;
    let (cfg, notes) = match (&out, resume) {
        (Some(dir), true) => saved_config_with_notes(dir, &overrides)?,
        _ => Config::load_with_notes(config.as_deref(), &overrides)?,
    };
    for n in notes {
        crate::errln!("{n}");
    }
    let out = out.unwrap_or_else(|| {
        crate::run_dir::default_path(config.as_deref(), cfg.aux.kind().as_str(), cfg.run.seed)
    });
    let spec = crate::rl::train::preflight(&cfg)?;
    for w in crate::rl::train::memory_warnings(&cfg)? {
        crate::errln!("{w}");
    }
    set_learner_threads(cfg.run.learner_threads);
    let opts = TrainOptions {
        out: out.clone(),
        resume,
        device: dev.device()?,
        progress: !quiet,
        write: true,
    };
    crate::errln!(
        "training {} ({} aux) into {}",
        cfg.env.id,
        match cfg.aux.kind() {
            AuxKind::None => "no",
            k => k.as_str(),
        },
        out.display()
    );
    if cfg.env.id.starts_with(rlcpc_envs::gymnasium::PREFIX) {
        let per = cfg.env.num_envs / cfg.run.workers.max(1);
        crate::errln!(
            "Python environments (env.vector = \"{}\"): {}",
            cfg.env.vector.as_str(),
            match cfg.env.vector {
                rlcpc_envs::Vector::None => format!("{} processes, one per environment", cfg.env.num_envs),
                _ => format!(
                    "{} process{}, one per actor worker, {per} environments each in a gymnasium.vector env, observations in shared memory",
                    cfg.run.workers,
                    if cfg.run.workers == 1 { "" } else { "es" }
                ),
            }
        );
    }
    let s = train_on(&cfg, &spec, &opts, stop, actors)?;
    let c = &s.counters;
    crate::outln!(
            "{} after {} env steps, {} updates, {} episodes in {:.1} s ({:.0} steps/s); mean return (last 100 episodes): {}",
            if s.interrupted { "interrupted" } else { "done" },
            c.env_steps,
            c.updates,
            c.episodes,
            c.elapsed_secs,
            s.sps,
            s.mean_return.map_or("n/a".into(), |m| format!("{m:.1}")),
        );
    // What a study would report of this run (crate::rl::study::stats).
    if let Ok(m) = crate::rl::study::RunMetrics::read(&out) {
        let f = |x: Option<f64>| x.map_or("n/a".into(), |v| format!("{v:.4}"));
        crate::outln!(
            "final return (last 10% of episodes) {} · AUC {} · MMER {}",
            f(m.final_return),
            f(m.auc),
            f(m.mmer)
        );
    }
    if let Some(mib) = crate::bench::peak_rss_mib() {
        // With --seeds, the largest of the runs so far.
        crate::outln!("peak memory: {mib:.1} MiB (this process so far)");
    }
    if c.updates > 0 {
        // Where an update's time went (means over the run), e.g. to find a GPU waiting.
        crate::outln!("{}", crate::bench::phases_line(&s.phases_ms));
    }
    if let Some((steps, secs)) = s.solved {
        crate::outln!(
            "target return {} reached at {steps} env steps, {secs:.2} s",
            cfg.run.target_return
        );
    }
    if let Some(t) = &s.traffic {
        crate::outln!("{t}");
    }
    crate::outln!(
        "checkpoint: {}",
        out.join(crate::run_dir::CHECKPOINT).display()
    );
    Ok((s, out))
}
