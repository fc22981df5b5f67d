//! `rlcpc study PLAN.toml`: a pre-registered comparison run to its verdict by one
//! resumable command.
//!
//! A study file ([`plan::Plan`]) declares tasks, arms, the tuning space and budget,
//! evaluation seeds, metrics and success criteria. [`Study::open`] checks it (and every
//! run's config) before anything runs, and pins it: the plan and every run's resolved
//! config are stored in `DIR/plan.json` with a hash, and a later start with a changed
//! plan is refused, naming what changed, unless `replan` is given. [`Study::run`] then
//! runs the tuning runs, picks each arm's configuration by the declared metric, runs the
//! evaluation runs, `jobs` at a time, each in its own run directory, and writes the
//! report ([`report`]). It resumes: finished runs (those with `result.json`) are skipped,
//! interrupted ones continue from their checkpoints, and a time limit or a signal stops
//! every run at its next update with a checkpoint.
//!
//! Layout of `DIR`: `plan.json`; `tune/<arm>/c<i>/<task>/seed-<s>/` and
//! `eval/<task>/<arm>/seed-<s>/` (run directories as `rlcpc train` writes them, plus
//! `result.json`); `report.md`, `summary.csv`, `summary.json`, `runs.csv`, `plots/`.

pub mod plan;
pub mod report;
pub mod seeds;
pub mod stats;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use candle_core::Device;
use serde::{Deserialize, Serialize};

use crate::config::Config;
pub use plan::Plan;
pub use stats::{Metric, RunMetrics};

/// What a finished run leaves in its directory: its metrics.
pub const RESULT: &str = "result.json";
/// What a finished seed of `rlcpc train --seeds` leaves in its directory (as
/// [`RESULT`], a study run's file, with its metrics flattened in): a rerun with
/// `--resume` keeps the seed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SeedResult {
    #[serde(flatten)]
    pub metrics: RunMetrics,
    /// Env steps when the mean return first reached `run.target_return`.
    pub solved_at: Option<u64>,
}

/// The pinned plan in the study directory.
pub const PLAN_FILE: &str = "plan.json";

/// Which part of the study a run belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Tuning, configuration `config` of the plan's list.
    Tune { config: usize },
    /// Evaluation, at the arm's chosen configuration.
    Eval,
}

/// One training run of the study.
#[derive(Debug, Clone)]
pub struct Run {
    pub stage: Stage,
    pub task: usize,
    pub arm: usize,
    pub seed: u64,
    /// Its run directory.
    pub dir: PathBuf,
    /// Its config: the task's, then its `--set`s, unroll and budget, the arm's, the
    /// configuration's, the seed.
    pub cfg: Config,
}

/// Each arm's chosen configuration, and the mean tuning metric of every (arm,
/// configuration) (`None` without tuning).
pub type Choice = (Vec<usize>, Vec<Vec<Option<f64>>>);

/// A study: the checked plan, its directory, and every run's config.
pub struct Study {
    pub plan: Plan,
    pub dir: PathBuf,
    plan_dir: PathBuf,
    /// The tuning configurations (`--set` lists), the same for every arm.
    pub configs: Vec<Vec<String>>,
    /// Notes to show the user before running (memory-span warnings, ...).
    pub notes: Vec<String>,
    hash: String,
    /// Runs whose config no longer matches the plan are moved aside and run again.
    replan: bool,
}

/// How to run a study.
#[derive(Debug, Clone)]
pub struct Options {
    /// Runs at a time.
    pub jobs: usize,
    /// Stop cleanly (every run checkpointed) before this many minutes have passed.
    pub minutes: Option<f64>,
    /// The learner's device.
    pub device: Device,
    /// Print a line per run.
    pub verbose: bool,
}

/// How a call of [`Study::run`] ended.
#[derive(Debug)]
pub enum Outcome {
    /// Every run finished and the report is written (`report.md`).
    Complete { report: PathBuf },
    /// Stopped by the time limit or a signal; `remaining` says what is left.
    Stopped { remaining: String },
}

/// The pinned plan (`plan.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Pinned {
    hash: String,
    plan: serde_json::Value,
    /// Each (task, arm, configuration)'s resolved config, without the seed.
    configs: BTreeMap<String, String>,
}

impl Study {
    /// Reads and checks the plan at `path`: every task with every arm and every tuning
    /// configuration must load as a config and pass [`crate::rl::train::preflight`]. Then
    /// pins it in `dir` (default `runs/study-NAME`), or compares it with the pinned one:
    /// a changed plan is refused naming what changed, unless `replan`.
    pub fn open(path: &Path, dir: Option<PathBuf>, replan: bool) -> Result<Study> {
        let plan = Plan::load(path)?;
        let plan_dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        let dir =
            dir.unwrap_or_else(|| PathBuf::from("runs").join(format!("study-{}", plan.study.name)));
        let configs = plan.configurations();
        let mut study = Study {
            plan,
            dir,
            plan_dir,
            configs,
            notes: Vec::new(),
            hash: String::new(),
            replan,
        };
        // Every (task, arm, configuration) loads, before anything is written.
        let mut resolved = BTreeMap::new();
        for (ti, ai) in study.plan.cells() {
            {
                for ci in 0..study.configs.len() {
                    let cfg = study.config(ti, ai, ci, None).map_err(|e| {
                        anyhow::anyhow!(
                            "invalid study '{}': task '{}' with arm '{}'{}: {e:#}",
                            path.display(),
                            study.plan.tasks[ti].name,
                            study.plan.arms[ai].name,
                            study.config_label(ci).map_or(String::new(), |c| format!(
                                " and tuning configuration {c}"
                            ))
                        )
                    })?;
                    crate::rl::train::preflight(&cfg).map_err(|e| {
                        anyhow::anyhow!(
                            "invalid study '{}': task '{}' with arm '{}': {e:#}",
                            path.display(),
                            study.plan.tasks[ti].name,
                            study.plan.arms[ai].name
                        )
                    })?;
                    if ci == 0 {
                        let exact = cfg.run.mode == rlcpc_agents::Mode::Sync
                            && !cfg.env.id.starts_with(rlcpc_envs::gymnasium::PREFIX);
                        if !exact {
                            let note = format!(
                                "note: task '{}', arm '{}': async runs and Python environments do not resume bit for bit; this study run in pieces may report otherwise than run straight through",
                                study.plan.tasks[ti].name, study.plan.arms[ai].name
                            );
                            study.notes.push(note);
                        }
                        let untuned = study.untuned_keys(ti, ai)?;
                        if !untuned.is_empty() {
                            let note = format!(
                                "note: arm '{}' has no {} (its {}): the tuning leaves {} out of its configurations",
                                study.plan.arms[ai].name,
                                untuned.join(", "),
                                if untuned.iter().all(|k| k.starts_with("aux.")) {
                                    format!("aux.kind = \"{}\" takes no such key", cfg.aux.kind().as_str())
                                } else {
                                    "config takes no such key".to_string()
                                },
                                if untuned.len() == 1 { "it" } else { "them" }
                            );
                            if !study.notes.contains(&note) {
                                study.notes.push(note);
                            }
                        }
                        for w in crate::rl::train::memory_warnings(&cfg)? {
                            let note = format!(
                                "task '{}', arm '{}': {w}",
                                study.plan.tasks[ti].name, study.plan.arms[ai].name
                            );
                            if !study.notes.contains(&note) {
                                study.notes.push(note);
                            }
                        }
                    }
                    resolved.insert(study.key(ti, ai, ci), cfg.to_toml());
                }
            }
        }
        let plan_json = serde_json::to_value(&study.plan)?;
        let text = serde_json::to_string(&(&plan_json, &resolved))?;
        study.hash = format!("{:016x}", fnv1a(text.as_bytes()));
        let pinned = Pinned {
            hash: study.hash.clone(),
            plan: plan_json,
            configs: resolved,
        };
        study.hash = study.pin(&pinned, replan)?;
        Ok(study)
    }

    /// The plan's hash (of the plan and every run's resolved config).
    pub fn hash(&self) -> &str {
        &self.hash
    }

    fn key(&self, ti: usize, ai: usize, ci: usize) -> String {
        format!(
            "{}/{}/c{ci}",
            self.plan.tasks[ti].name, self.plan.arms[ai].name
        )
    }

    /// How configuration `ci` reads (`None` without tuning).
    pub fn config_label(&self, ci: usize) -> Option<String> {
        self.plan.tuning.as_ref()?;
        Some(format!("c{ci} ({})", self.configs[ci].join(", ")))
    }

    /// Pins `pinned` in the study directory, or checks it against the plan pinned there;
    /// returns the hash in force: the pinned one where only the way configs are written
    /// changed (every run's settings the same), so the registered plan stands.
    fn pin(&self, pinned: &Pinned, replan: bool) -> Result<String> {
        let path = self.dir.join(PLAN_FILE);
        if path.exists() {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read '{}'", path.display()))?;
            let old: Pinned = serde_json::from_str(&text).with_context(|| {
                format!(
                    "'{}' is not a study's plan.json (move it away, or choose another --out)",
                    path.display()
                )
            })?;
            if old.hash == pinned.hash {
                return Ok(old.hash);
            }
            let mut changes = Vec::new();
            diff("", &old.plan, &pinned.plan, &mut changes);
            for (k, v) in &pinned.configs {
                match old.configs.get(k) {
                    Some(o) if !same_settings(o, v) => changes.push(format!("the resolved config of {k} (a config file, preset or rlcpc's defaults changed)")),
                    None => changes.push(format!("{k} is new")),
                    _ => {}
                }
            }
            for k in old
                .configs
                .keys()
                .filter(|k| !pinned.configs.contains_key(*k))
            {
                changes.push(format!("{k} is gone"));
            }
            if changes.is_empty() {
                return Ok(old.hash);
            }
            if !replan {
                bail!(
                    "the study in '{}' was started with another plan (hash {}, now {}); changed: {}. The plan was registered before the runs: to change it anyway, rerun with --replan (runs whose config changed are then moved to '{}' and run again) and record the change and its reason in the study's protocol",
                    self.dir.display(),
                    old.hash,
                    pinned.hash,
                    changes.join("; "),
                    self.dir.join("replaced").display()
                );
            }
            crate::errln!("note: --replan: the plan changed ({}); runs whose config changed will be moved to '{}' and run again", changes.join("; "), self.dir.join("replaced").display());
            // Keep the old plan beside the new one.
            let secs = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let old_path = self.dir.join(format!("plan-{}-{secs}.json", old.hash));
            std::fs::rename(&path, &old_path).with_context(|| {
                format!(
                    "cannot move '{}' to '{}'",
                    path.display(),
                    old_path.display()
                )
            })?;
        }
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("cannot create study directory '{}'", self.dir.display()))?;
        crate::checkpoint::write_bytes_atomic(
            &path,
            serde_json::to_string_pretty(pinned)?.as_bytes(),
        )
        .with_context(|| format!("cannot write '{}'", path.display()))?;
        Ok(pinned.hash.clone())
    }

    /// The config of task `ti` with arm `ai` at configuration `ci` and `seed` (`None`:
    /// the config's own seed).
    pub fn config(&self, ti: usize, ai: usize, ci: usize, seed: Option<u64>) -> Result<Config> {
        let t = &self.plan.tasks[ti];
        // A study runs every budget to its end: a target return would cut runs short
        // unequally (a task's `set` may still name one).
        let mut sets = vec!["run.target_return=0".to_string()];
        sets.extend(t.set.iter().cloned());
        if let Some(u) = t.unroll {
            sets.push(format!("algo.unroll={u}"));
        }
        sets.push(format!("run.total_steps={}", t.steps));
        // An arm with a base is the base arm at its chosen configuration with the arm's
        // own `set` on top: that `set` comes last, so that it may change a tuned key too
        // (e.g. the base's choice at another learning rate).
        let arm = &self.plan.arms[ai];
        let (before, after) = match arm.base.as_deref().and_then(|b| self.plan.arm(b)) {
            Some(base) => (&base.set[..], &arm.set[..]),
            None => (&arm.set[..], &[][..]),
        };
        sets.extend(before.iter().cloned());
        let path = self.plan.config_path(t, &self.plan_dir);
        // The arm's config without the tuning: a tuned key that it has no place for
        // (`aux.weight` where `aux.kind = "none"`) is left out of its configurations.
        let untuned = Config::load(Some(&path), &[&sets[..], after].concat())?;
        let tuned = self.configs[ci]
            .iter()
            .filter(|s| untuned.takes(s.split_once('=').map_or(s, |(k, _)| k.trim())));
        sets.extend(tuned.cloned());
        sets.extend(after.iter().cloned());
        if let Some(s) = seed {
            sets.push(format!("run.seed={s}"));
        }
        Ok(Config::load(Some(&path), &sets)?)
    }

    /// The tuned keys that arm `ai` has no place for on task `ti` (`aux.weight` in an
    /// arm with `aux.kind = "none"`): left out of its configurations, and said.
    pub fn untuned_keys(&self, ti: usize, ai: usize) -> Result<Vec<String>> {
        let Some(t) = &self.plan.tuning else {
            return Ok(Vec::new());
        };
        let cfg = self.config(ti, ai, 0, None)?;
        Ok(t.space.keys().filter(|k| !cfg.takes(k)).cloned().collect())
    }

    /// The tuning runs: every arm × configuration × tuning task × tuning seed.
    pub fn tuning_runs(&self) -> Result<Vec<Run>> {
        let Some(t) = &self.plan.tuning else {
            return Ok(Vec::new());
        };
        let mut runs = Vec::new();
        // Arms with a base take its choice: they are not tuned.
        for ai in (0..self.plan.arms.len()).filter(|&ai| self.plan.arms[ai].base.is_none()) {
            for ci in 0..self.configs.len() {
                for name in &t.tasks {
                    let ti = self
                        .plan
                        .tasks
                        .iter()
                        .position(|x| &x.name == name)
                        .expect("checked");
                    for &seed in &t.seeds {
                        runs.push(Run {
                            stage: Stage::Tune { config: ci },
                            task: ti,
                            arm: ai,
                            seed,
                            dir: self
                                .dir
                                .join("tune")
                                .join(&self.plan.arms[ai].name)
                                .join(format!("c{ci}"))
                                .join(name)
                                .join(format!("seed-{seed}")),
                            cfg: self.config(ti, ai, ci, Some(seed))?,
                        });
                    }
                }
            }
        }
        Ok(runs)
    }

    /// The evaluation runs at each arm's configuration `chosen[arm]`.
    pub fn eval_runs(&self, chosen: &[usize]) -> Result<Vec<Run>> {
        let mut runs = Vec::new();
        for (ti, ai) in self.plan.cells() {
            let (t, a) = (&self.plan.tasks[ti], &self.plan.arms[ai]);
            {
                for &seed in &self.plan.study.seeds {
                    runs.push(Run {
                        stage: Stage::Eval,
                        task: ti,
                        arm: ai,
                        seed,
                        dir: self.eval_dir(&t.name, &a.name, seed),
                        cfg: self.config(ti, ai, chosen[ai], Some(seed))?,
                    });
                }
            }
        }
        Ok(runs)
    }

    pub fn eval_dir(&self, task: &str, arm: &str, seed: u64) -> PathBuf {
        self.dir
            .join("eval")
            .join(task)
            .join(arm)
            .join(format!("seed-{seed}"))
    }

    /// Each arm's configuration: the one with the best mean of the tuning metric over
    /// tuning tasks and seeds (the first on ties); all `0` without tuning. A tuning run
    /// without a value of the metric is refused, naming it.
    pub fn choose(&self, tuning: &[Run]) -> Result<Choice> {
        let n_arms = self.plan.arms.len();
        let Some(metric) = self.plan.tuning_metric() else {
            return Ok((vec![0; n_arms], Vec::new()));
        };
        // A configuration with a run that diverged or has no value of the metric cannot
        // be chosen (a missing value is never counted as 0): its mean is `None`.
        let per_config = self
            .plan
            .tuning
            .as_ref()
            .map_or(0, |t| t.tasks.len() * t.seeds.len());
        let mut means = vec![vec![None; self.configs.len()]; n_arms];
        let mut gaps = Vec::new();
        for (ai, row) in means.iter_mut().enumerate() {
            for (ci, cell) in row.iter_mut().enumerate() {
                let mut v = Vec::new();
                for r in tuning
                    .iter()
                    .filter(|r| r.arm == ai && r.stage == (Stage::Tune { config: ci }))
                {
                    match read_result(&r.dir)?.get(metric) {
                        Some(x) => v.push(x),
                        None => gaps.push(r.dir.display().to_string()),
                    }
                }
                *cell = (v.len() == per_config).then(|| v.iter().sum::<f64>() / v.len() as f64);
            }
        }
        let mut chosen = Vec::new();
        for (ai, row) in means.iter().enumerate() {
            if self.plan.arms[ai].base.is_some() {
                chosen.push(usize::MAX); // filled in below, from the base's choice
                continue;
            }
            // The best mean; the first on ties.
            let mut best: Option<(usize, f64)> = None;
            for (ci, m) in row.iter().enumerate() {
                if let Some(m) = *m {
                    if best.is_none_or(|(_, b)| m > b) {
                        best = Some((ci, m));
                    }
                }
            }
            match best {
                Some((ci, _)) => chosen.push(ci),
                None => bail!(
                    "no tuning configuration of arm '{}' has a {} on every tuning run (runs without one, diverged or with no episode ended: {}); refusing to count them as 0: raise the budget or change the space (--replan)",
                    self.plan.arms[ai].name,
                    metric.as_str(),
                    gaps.join(", ")
                ),
            }
        }
        for (ai, a) in self.plan.arms.iter().enumerate() {
            if let Some(b) = &a.base {
                let bi = self
                    .plan
                    .arms
                    .iter()
                    .position(|x| &x.name == b)
                    .expect("checked");
                chosen[ai] = chosen[bi];
            }
        }
        Ok((chosen, means))
    }

    /// Runs what is left of the study (the module doc says how), then writes the report.
    pub fn run(&self, opts: &Options, user_stop: Arc<AtomicBool>) -> Result<Outcome> {
        for n in &self.notes {
            crate::errln!("{n}");
        }
        let started = Instant::now();
        let deadline = opts.minutes.map(|m| {
            let budget = 60.0 * m;
            // Time for the last updates and checkpoints.
            Duration::from_secs_f64((budget - (0.05 * budget).clamp(1.0, 60.0)).max(0.0))
        });
        let tuning = self.tuning_runs()?;
        // Candle's CPU thread pool is sized once per process: from the first run's config
        // (the lean path runs on one thread whatever it says).
        let first = match tuning.first() {
            Some(r) => r.cfg.clone(),
            None => self.config(0, 0, 0, None)?,
        };
        crate::rl::train::set_learner_threads(first.run.learner_threads);
        let total_runs = tuning.len() + self.plan.cells().len() * self.plan.study.seeds.len();
        let mut pool = Pool {
            replaced: self.replan.then(|| self.dir.join("replaced")),
            study_dir: self.dir.clone(),
            jobs: opts.jobs.max(1),
            deadline,
            started,
            user_stop,
            device: opts.device.clone(),
            verbose: opts.verbose,
            total: total_runs,
            done: Mutex::new(0),
            steps: Mutex::new(0),
        };
        if !pool.execute(&tuning)? {
            return Ok(self.stopped(&pool, &tuning, None));
        }
        let (chosen, means) = self.choose(&tuning)?;
        let eval = self.eval_runs(&chosen)?;
        if !pool.execute(&eval)? {
            return Ok(self.stopped(&pool, &tuning, Some(&eval)));
        }
        pool.total = 0;
        let report = report::write(self, &tuning, &chosen, &means, &eval)?;
        Ok(Outcome::Complete { report })
    }

    /// What remains after a stop, and how long it should take at this session's rate.
    fn stopped(&self, pool: &Pool, tuning: &[Run], eval: Option<&[Run]>) -> Outcome {
        let mut left_runs = 0;
        let mut left_steps = 0u64;
        let eval_budget: u64 = self
            .plan
            .cells()
            .iter()
            .map(|&(ti, _)| self.plan.tasks[ti].steps)
            .sum::<u64>()
            * self.plan.study.seeds.len() as u64;
        let mut count = |runs: &[Run]| {
            for r in runs {
                if !r.dir.join(RESULT).is_file() {
                    left_runs += 1;
                    left_steps += r.cfg.run.total_steps.saturating_sub(steps_done(&r.dir));
                }
            }
        };
        count(tuning);
        match eval {
            Some(e) => count(e),
            None => {
                left_runs += self.plan.cells().len() * self.plan.study.seeds.len();
                left_steps += eval_budget;
            }
        }
        let secs = pool.started.elapsed().as_secs_f64();
        let steps = *pool.steps.lock().unwrap_or_else(|e| e.into_inner());
        let eta = if steps > 0 && secs > 0.0 {
            let rate = steps as f64 / secs;
            format!(
                "about {} at this session's {rate:.0} env steps/s (--jobs {})",
                human_secs(left_steps as f64 / rate),
                pool.jobs
            )
        } else {
            "no rate measured yet".to_string()
        };
        Outcome::Stopped {
            remaining: format!(
                "{left_runs} of {} runs remain ({left_steps} env steps; {eta}); rerun the same command to resume",
                pool.total
            ),
        }
    }
}

/// Runs a list of runs, `jobs` at a time.
struct Pool {
    /// With --replan: where runs made with another config go.
    replaced: Option<PathBuf>,
    study_dir: PathBuf,
    jobs: usize,
    deadline: Option<Duration>,
    started: Instant,
    user_stop: Arc<AtomicBool>,
    device: Device,
    verbose: bool,
    total: usize,
    /// Runs finished in this session, for the progress lines.
    done: Mutex<usize>,
    /// Env steps trained in this session, for the estimate of what remains.
    steps: Mutex<u64>,
}

impl Pool {
    /// Whether the user's signal came or the deadline passed.
    fn stopping(&self) -> bool {
        self.user_stop.load(Ordering::SeqCst)
            || self.deadline.is_some_and(|d| self.started.elapsed() >= d)
    }

    /// Runs every unfinished run of `runs`; `false` when stopped before all finished.
    fn execute(&self, runs: &[Run]) -> Result<bool> {
        for r in runs {
            self.check_config(r)?;
        }
        let done = || runs.iter().all(|r| r.dir.join(RESULT).is_file());
        if self.stopping() {
            return Ok(done());
        }
        let queue: Mutex<std::collections::VecDeque<&Run>> = Mutex::new(
            runs.iter()
                .filter(|r| !r.dir.join(RESULT).is_file())
                .collect(),
        );
        if queue.lock().map_or(0, |q| q.len()) == 0 {
            return Ok(true);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let failed: Mutex<Option<anyhow::Error>> = Mutex::new(None);
        let working = std::sync::atomic::AtomicUsize::new(self.jobs);
        std::thread::scope(|s| {
            // The clock: the user's signal or the deadline stops every run.
            s.spawn(|| loop {
                if working.load(Ordering::SeqCst) == 0 {
                    break;
                }
                if self.stopping() {
                    stop.store(true, Ordering::SeqCst);
                }
                std::thread::sleep(Duration::from_millis(20));
            });
            for _ in 0..self.jobs {
                s.spawn(|| {
                    // Counts this worker out however it ends (a panic included), so that
                    // the clock above always ends.
                    let _out = CountOut(&working);
                    loop {
                        // The signal and the deadline are looked at here too: no run
                        // starts after either, even before the clock's next tick.
                        if self.stopping() {
                            stop.store(true, Ordering::SeqCst);
                        }
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        let Some(run) = queue.lock().ok().and_then(|mut q| q.pop_front()) else {
                            break;
                        };
                        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            self.one(run, stop.clone())
                        }))
                        .unwrap_or_else(|_| Err(anyhow::anyhow!("the run panicked")));
                        if let Err(e) = r {
                            stop.store(true, Ordering::SeqCst);
                            if let Ok(mut f) = failed.lock() {
                                f.get_or_insert(
                                    e.context(format!("study run '{}'", run.dir.display())),
                                );
                            }
                            break;
                        }
                    }
                });
            }
        });
        if let Some(e) = failed.into_inner().unwrap_or_else(|e| e.into_inner()) {
            return Err(e);
        }
        Ok(done())
    }

    /// Trains one run (resuming from its checkpoint) and, if it finished or diverged,
    /// writes its `result.json`.
    fn one(&self, run: &Run, stop: Arc<AtomicBool>) -> Result<()> {
        let resume = run.dir.join(crate::run_dir::CHECKPOINT).is_file();
        let spec = crate::rl::train::preflight(&run.cfg)?;
        let before = steps_done(&run.dir);
        let opts = crate::rl::train::TrainOptions {
            out: run.dir.clone(),
            resume,
            device: self.device.clone(),
            progress: false,
            write: true,
        };
        let t0 = Instant::now();
        let m = match crate::rl::train::train_on(
            &run.cfg,
            &spec,
            &opts,
            stop,
            &crate::rl::train::Threads,
        ) {
            Ok(s) => {
                if let Ok(mut n) = self.steps.lock() {
                    *n += s.counters.env_steps.saturating_sub(before);
                }
                if s.interrupted {
                    return Ok(());
                }
                RunMetrics::read(&run.dir)?
            }
            // A run whose loss became NaN or infinite is a result (its configuration
            // diverged), not a fault of the study: run again, it would diverge again.
            Err(e) if diverged(&e) => {
                crate::errln!("note: study run '{}' diverged: {e:#}", run.dir.display());
                RunMetrics {
                    env_steps: steps_done(&run.dir),
                    episodes: 0,
                    final_return: None,
                    auc: None,
                    mmer: None,
                    diverged: Some(format!("{e:#}")),
                    head_acc: Default::default(),
                }
            }
            Err(e) => return Err(e),
        };
        crate::checkpoint::write_bytes_atomic(
            &run.dir.join(RESULT),
            serde_json::to_string_pretty(&m)?.as_bytes(),
        )
        .with_context(|| format!("cannot write '{}'", run.dir.join(RESULT).display()))?;
        let n = self.done.lock().map(|mut d| {
            *d += 1;
            *d
        });
        if self.verbose {
            let f = |x: Option<f64>| x.map_or("n/a".into(), |v| format!("{v:.3}"));
            crate::errln!(
                "[{} done this session] {}: final return {}, AUC {}, MMER {} ({:.1} s)",
                n.unwrap_or(0),
                run.dir.display(),
                f(m.final_return),
                f(m.auc),
                f(m.mmer),
                t0.elapsed().as_secs_f64()
            );
        }
        Ok(())
    }
}

impl Pool {
    /// A run directory that exists must hold the config the plan gives it now; with
    /// --replan one that does not is moved to `replaced/` (nothing is deleted).
    fn check_config(&self, run: &Run) -> Result<()> {
        let path = run.dir.join(crate::run_dir::CONFIG);
        let Ok(saved) = std::fs::read_to_string(&path) else {
            return Ok(());
        };
        if same_settings(&saved, &run.cfg.to_toml()) {
            return Ok(());
        }
        let Some(replaced) = &self.replaced else {
            bail!(
                "'{}' holds a run with another config than the plan now gives it (the plan, a config file or a preset changed since it started); rerun with --replan to move it aside and run it again",
                run.dir.display()
            );
        };
        let rel = run.dir.strip_prefix(&self.study_dir).unwrap_or(&run.dir);
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let to = replaced.join(format!("{secs}")).join(rel);
        if let Some(p) = to.parent() {
            std::fs::create_dir_all(p)
                .with_context(|| format!("cannot create '{}'", p.display()))?;
        }
        std::fs::rename(&run.dir, &to).with_context(|| {
            format!("cannot move '{}' to '{}'", run.dir.display(), to.display())
        })?;
        crate::errln!(
            "note: --replan: '{}' was made with another config; moved to '{}'",
            run.dir.display(),
            to.display()
        );
        Ok(())
    }
}

/// Whether two resolved configs hold the same settings, written the same way or not (an
/// older rlcpc wrote every head's keys into `[aux]`): such a change is none.
fn same_settings(old: &str, new: &str) -> bool {
    let read = |t: &str| Config::from_toml(t, "a study's config").ok();
    old == new || read(old).is_some_and(|o| Some(o) == read(new))
}

/// Decrements a count of working threads when dropped.
struct CountOut<'a>(&'a std::sync::atomic::AtomicUsize);

impl Drop for CountOut<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Whether a run's error is the learner's refusal of a NaN or infinite loss.
fn diverged(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        matches!(
            c.downcast_ref::<rlcpc_agents::AgentError>(),
            Some(rlcpc_agents::AgentError::NonFinite { .. })
        )
    })
}

/// Env steps a run directory has logged.
fn steps_done(dir: &Path) -> u64 {
    std::fs::read_to_string(dir.join(crate::run_dir::METRICS))
        .ok()
        .and_then(|t| {
            t.lines()
                .rev()
                .find_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        })
        .and_then(|v| v["time/total_timesteps"].as_f64())
        .map_or(0, |x| x as u64)
}

/// A finished run's metrics.
pub fn read_result(dir: &Path) -> Result<RunMetrics> {
    let path = dir.join(RESULT);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read '{}'", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("'{}' is not a run's result", path.display()))
}

fn human_secs(s: f64) -> String {
    let s = s.max(0.0).round() as u64;
    match s {
        0..=59 => format!("{s} s"),
        60..=3599 => format!("{} min {} s", s / 60, s % 60),
        _ => format!("{} h {} min", s / 3600, (s % 3600) / 60),
    }
}

/// FNV-1a, 64-bit.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The paths where two JSON values differ, as `path: old → new`.
fn diff(path: &str, a: &serde_json::Value, b: &serde_json::Value, out: &mut Vec<String>) {
    use serde_json::Value;
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                diff(
                    &p,
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                    out,
                );
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (u, v)) in x.iter().zip(y).enumerate() {
                diff(&format!("{path}[{i}]"), u, v, out);
            }
        }
        _ if a != b => out.push(format!("{path}: {a} → {b}")),
        _ => {}
    }
}
