//! The study file (`PLAN.toml`): what is compared, on what, with which tuning budget,
//! seeds and success criteria, all declared before any result exists. Parsed into
//! documented serde structs (unknown keys refused) and checked by [`Plan::load`], which
//! names the key of every fault before anything runs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

use super::stats::Metric;

/// The whole study file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// `[study]`: name, evaluation seeds, metrics, reference arm.
    pub study: StudySection,
    /// `[[task]]`: what the arms are compared on.
    #[serde(rename = "task")]
    pub tasks: Vec<Task>,
    /// `[[arm]]`: the conditions compared (e.g. `aux.kind` none / cpc / cpca).
    #[serde(rename = "arm")]
    pub arms: Vec<Arm>,
    /// `[tuning]`: each arm's tuning budget (the same for every arm); absent: none.
    #[serde(default)]
    pub tuning: Option<Tuning>,
    /// `[[criterion]]`: the pre-registered success criteria.
    #[serde(default, rename = "criterion")]
    pub criteria: Vec<Criterion>,
}

/// `[study]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StudySection {
    /// The study's name (default directory `runs/study-NAME`).
    pub name: String,
    /// Evaluation seeds (disjoint from `tuning.seeds`).
    pub seeds: Vec<u64>,
    /// The arm every other is compared with, by name [default: the first arm].
    #[serde(default)]
    pub reference: Option<String>,
    /// Metrics reported: `final_return`, `auc`, `mmer` [default: all three].
    #[serde(default = "all_metrics")]
    pub metrics: Vec<String>,
    /// Bootstrap resamples of the paired CIs [default: 10000].
    #[serde(default = "default_bootstrap")]
    pub bootstrap: usize,
}

fn all_metrics() -> Vec<String> {
    Metric::ALL.iter().map(|m| m.as_str().to_string()).collect()
}

fn default_bootstrap() -> usize {
    10_000
}

/// `[[task]]`: a preset or config file, its `--set`s, a step budget and an unroll.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Task {
    pub name: String,
    /// A built-in preset (`tmaze`, `popgym`, ...) or a config file, relative to the
    /// study file.
    pub config: String,
    /// `--set` overrides, e.g. `"env.id=\"popgym/RepeatFirstEasy\""`.
    #[serde(default)]
    pub set: Vec<String>,
    /// Environment steps of every run on this task (`run.total_steps`).
    pub steps: u64,
    /// `algo.unroll` on this task [default: the config's].
    #[serde(default)]
    pub unroll: Option<usize>,
    /// A control: a task where no arm is expected to help (criteria may say "not below
    /// 0 on every control").
    #[serde(default)]
    pub control: bool,
    /// The return that counts as solved: the report adds, per arm, how many seeds end
    /// with a final return at or above it and the env steps at which each first reached
    /// it (the 100-episode mean return); absent: not reported.
    #[serde(default)]
    pub solved: Option<f64>,
}

/// `[[arm]]`: a condition, as `--set`s on top of every task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Arm {
    pub name: String,
    #[serde(default)]
    pub set: Vec<String>,
    /// The tasks this arm runs on, by name [default: every task]. For mechanism arms
    /// that a study runs on a few tasks only.
    #[serde(default)]
    pub tasks: Vec<String>,
    /// Another (tuned) arm whose `set` and chosen configuration this arm takes, its own
    /// `set` on top; the arm itself is not tuned. For ablations of a tuned arm (one key
    /// changed, everything else as chosen).
    #[serde(default)]
    pub base: Option<String>,
    /// The arm this one's Δ is taken against [default: `study.reference`]; it must run
    /// on every task this one runs on.
    #[serde(default)]
    pub reference: Option<String>,
}

/// How tuning configurations are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// Every combination of the space.
    Grid,
    /// `configs` distinct combinations drawn uniformly (seeded by `tuning.seed`), the
    /// same draw for every arm.
    Random,
}

/// `[tuning]`: the same number of configurations for every arm, on tuning seeds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tuning {
    /// Tasks tuned on, by name (their evaluation rows are in-sample for the settings).
    pub tasks: Vec<String>,
    /// Seeds of the tuning runs (disjoint from `study.seeds`).
    pub seeds: Vec<u64>,
    /// The metric whose mean over tuning tasks and seeds picks each arm's configuration.
    #[serde(default = "default_metric")]
    pub metric: String,
    /// `grid` or `random`.
    #[serde(default = "default_method")]
    pub method: Method,
    /// `random`: configurations per arm.
    #[serde(default)]
    pub configs: usize,
    /// `random`: the draw's seed.
    #[serde(default)]
    pub seed: u64,
    /// Each key (a config key) and its values, e.g. `"optim.lr" = [1e-3, 3e-3]`.
    pub space: BTreeMap<String, Vec<toml::Value>>,
    /// `random`: keys in which the drawn configurations must differ [default: every
    /// key]. E.g. `["optim.lr", "algo.ent_coef"]` with `aux.weight` in the space: an arm
    /// without a head (where the weight does nothing) still gets `configs` distinct
    /// configurations.
    #[serde(default)]
    pub distinct: Vec<String>,
}

fn default_metric() -> String {
    "final_return".into()
}

fn default_method() -> Method {
    Method::Grid
}

/// Which side of 0 a criterion wants the paired CI of Δ on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Test {
    /// The CI lies above 0 (the arm helps).
    Above,
    /// The CI lies below 0 (the arm hurts).
    Below,
    /// The CI does not lie below 0 (no evidence that it hurts).
    NotBelow,
    /// The CI does not lie above 0.
    NotAbove,
}

/// `[[criterion]]`: "the paired CI of Δ `metric` (arm − reference) lies `test` 0 on at
/// least `at_least` of `tasks`".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Criterion {
    pub name: String,
    pub arm: String,
    #[serde(default = "default_metric")]
    pub metric: String,
    pub test: Test,
    /// Tasks by name [default: every non-control task].
    #[serde(default)]
    pub tasks: Vec<String>,
    /// How many of them must pass [default: all].
    #[serde(default)]
    pub at_least: Option<usize>,
}

/// A fault of the plan, naming its key.
fn fault(key: &str, why: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("invalid value for '{key}': {why}")
}

impl Plan {
    /// Reads and checks `path` (the checks that need no config: names, seeds, budgets,
    /// grids, criteria; [`super::Study::new`] then loads every run's config).
    pub fn load(path: &Path) -> Result<Plan> {
        let text = crate::checkpoint::read_config_text(path)
            .map_err(|e| anyhow::anyhow!("cannot read study '{}': {e}", path.display()))?;
        let plan: Plan = toml::from_str(&text).map_err(|e| {
            anyhow::anyhow!(
                "invalid study '{}': {}",
                path.display(),
                e.to_string().trim()
            )
        })?;
        plan.check()
            .map_err(|e| anyhow::anyhow!("invalid study '{}': {e}", path.display()))?;
        Ok(plan)
    }

    fn check(&self) -> Result<()> {
        let s = &self.study;
        if s.name.is_empty()
            || !s
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(fault(
                "study.name",
                format!("'{}' (letters, digits, - _ . only)", s.name),
            ));
        }
        if s.seeds.len() < 2 {
            return Err(fault(
                "study.seeds",
                format!(
                    "{:?} (give at least 2 evaluation seeds: a paired CI needs 2; 3 or more to report, 10 for a claim)",
                    s.seeds
                ),
            ));
        }
        dup("study.seeds", &s.seeds)?;
        if s.metrics.is_empty() {
            return Err(fault("study.metrics", "empty"));
        }
        for m in &s.metrics {
            metric("study.metrics", m)?;
        }
        if s.bootstrap == 0 || s.bootstrap > 1_000_000 {
            return Err(fault(
                "study.bootstrap",
                format!("{} (1..=1000000)", s.bootstrap),
            ));
        }
        if self.tasks.is_empty() {
            return Err(fault("task", "no [[task]]"));
        }
        if self.arms.is_empty() {
            return Err(fault("arm", "no [[arm]]"));
        }
        names("task", self.tasks.iter().map(|t| &t.name))?;
        names("arm", self.arms.iter().map(|a| &a.name))?;
        for (i, t) in self.tasks.iter().enumerate() {
            if t.steps == 0 {
                return Err(fault(
                    &format!("task[{i}].steps"),
                    format!("0 (task '{}' needs a budget)", t.name),
                ));
            }
            if t.unroll == Some(0) {
                return Err(fault(&format!("task[{i}].unroll"), "0"));
            }
        }
        for (i, t) in self.tasks.iter().enumerate() {
            for x in &t.set {
                fixed(&format!("task[{i}].set"), x)?;
            }
        }
        for (i, a) in self.arms.iter().enumerate() {
            for x in &a.set {
                fixed(&format!("arm[{i}].set"), x)?;
            }
        }
        if let Some(r) = &s.reference {
            self.arm(r).ok_or_else(|| {
                fault(
                    "study.reference",
                    format!("'{r}' is not an arm ({})", self.arm_names()),
                )
            })?;
        }
        self.check_arms()?;
        if let Some(t) = &self.tuning {
            if t.tasks.is_empty() {
                return Err(fault("tuning.tasks", "empty (name the tasks tuned on)"));
            }
            self.check_task_list("tuning.tasks", &t.tasks)?;
            if t.seeds.is_empty() {
                return Err(fault("tuning.seeds", "empty"));
            }
            dup("tuning.seeds", &t.seeds)?;
            if let Some(x) = t.seeds.iter().find(|x| s.seeds.contains(x)) {
                return Err(fault(
                    "tuning.seeds",
                    format!("seed {x} is also an evaluation seed (study.seeds): tuning and evaluation seeds must be disjoint"),
                ));
            }
            metric("tuning.metric", &t.metric)?;
            if t.space.is_empty() {
                return Err(fault(
                    "tuning.space",
                    "empty (give at least one key and its values)",
                ));
            }
            for (k, v) in &t.space {
                if v.is_empty() {
                    return Err(fault(
                        &format!("tuning.space.\"{k}\""),
                        "an empty list of values",
                    ));
                }
            }
            for k in t.space.keys() {
                fixed(&format!("tuning.space.\"{k}\""), k)?;
            }
            for (i, k) in t.distinct.iter().enumerate() {
                if !t.space.contains_key(k) {
                    return Err(fault(
                        "tuning.distinct",
                        format!("'{k}' is not a key of tuning.space"),
                    ));
                }
                if t.distinct[..i].contains(k) {
                    return Err(fault("tuning.distinct", format!("'{k}' is named twice")));
                }
            }
            for (i, a) in self.arms.iter().enumerate() {
                if a.base.is_none() {
                    if let Some(n) = t.tasks.iter().find(|n| !self.runs_on(a, n)) {
                        return Err(fault(
                            &format!("arm[{i}].tasks"),
                            format!("arm '{}' is tuned (it has no base) but does not run on tuning task '{n}'", a.name),
                        ));
                    }
                }
            }
            let size = self.grid_size();
            if size == usize::MAX {
                return Err(fault(
                    "tuning.space",
                    "more combinations than a 64-bit count holds",
                ));
            }
            match t.method {
                Method::Grid if size > MAX_CONFIGS => {
                    return Err(fault(
                        "tuning.space",
                        format!("a grid of {size} configurations per arm (at most {MAX_CONFIGS}; draw some with method = \"random\")"),
                    ))
                }
                Method::Random if t.configs > MAX_CONFIGS => {
                    return Err(fault(
                        "tuning.configs",
                        format!("{} (at most {MAX_CONFIGS} configurations per arm)", t.configs),
                    ))
                }
                Method::Grid if t.configs != 0 && t.configs != size => {
                    return Err(fault(
                        "tuning.configs",
                        format!(
                            "{} with method = \"grid\" (the grid has {size}; leave it out)",
                            t.configs
                        ),
                    ))
                }
                Method::Random if t.configs == 0 || t.configs > self.distinct_size() => {
                    return Err(fault(
                        "tuning.configs",
                        format!(
                            "{} (method = \"random\" draws 1..={} distinct configurations)",
                            t.configs,
                            self.distinct_size()
                        ),
                    ))
                }
                _ => {}
            }
        }
        for (i, c) in self.criteria.iter().enumerate() {
            if c.name.trim().is_empty() {
                return Err(fault(&format!("criterion[{i}].name"), "empty"));
            }
            if self.criteria[..i].iter().any(|d| d.name == c.name) {
                return Err(fault(
                    &format!("criterion[{i}].name"),
                    format!("'{}' is used twice", c.name),
                ));
            }
        }
        for (i, c) in self.criteria.iter().enumerate() {
            let key = |k: &str| format!("criterion[{i}].{k}");
            self.arm(&c.arm).ok_or_else(|| {
                fault(
                    &key("arm"),
                    format!("'{}' is not an arm ({})", c.arm, self.arm_names()),
                )
            })?;
            if c.arm == self.reference().name {
                return Err(fault(
                    &key("arm"),
                    format!("'{}' is the reference arm: its Δ is 0 by definition", c.arm),
                ));
            }
            let m = metric(&key("metric"), &c.metric)?;
            if !self.metrics().contains(&m) {
                return Err(fault(
                    &key("metric"),
                    format!("'{}' is not among study.metrics", c.metric),
                ));
            }
            self.check_task_list(&key("tasks"), &c.tasks)?;
            let arm = self.arm(&c.arm).expect("checked above");
            if let Some(t) = self
                .criterion_tasks(c)
                .into_iter()
                .find(|t| !self.runs_on(arm, t))
            {
                return Err(fault(
                    &key("tasks"),
                    format!("arm '{}' does not run on task '{t}' (arm.tasks)", c.arm),
                ));
            }
            let n = self.criterion_tasks(c).len();
            if n == 0 {
                return Err(fault(
                    &key("tasks"),
                    "no task (every task is a control; name the tasks)",
                ));
            }
            if let Some(k) = c.at_least {
                if k == 0 || k > n {
                    return Err(fault(
                        &key("at_least"),
                        format!("{k} (1..={n}, the tasks it names)"),
                    ));
                }
            }
        }
        Ok(())
    }

    pub fn arm(&self, name: &str) -> Option<&Arm> {
        self.arms.iter().find(|a| a.name == name)
    }

    pub fn task(&self, name: &str) -> Option<&Task> {
        self.tasks.iter().find(|t| t.name == name)
    }

    fn arm_names(&self) -> String {
        self.arms
            .iter()
            .map(|a| a.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn task_names(&self) -> String {
        self.tasks
            .iter()
            .map(|t| t.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Each of `tasks` (at `key`) names a task, once.
    fn check_task_list(&self, key: &str, tasks: &[String]) -> Result<()> {
        for (j, n) in tasks.iter().enumerate() {
            if tasks[..j].contains(n) {
                return Err(fault(key, format!("'{n}' is named twice")));
            }
            self.task(n).ok_or_else(|| {
                fault(key, format!("'{n}' is not a task ({})", self.task_names()))
            })?;
        }
        Ok(())
    }

    /// Checks `tasks`, `base` and `reference` of every arm.
    fn check_arms(&self) -> Result<()> {
        for (i, a) in self.arms.iter().enumerate() {
            let key = |k: &str| format!("arm[{i}].{k}");
            self.check_task_list(&key("tasks"), &a.tasks)?;
            if let Some(b) = &a.base {
                let base = self.arm(b).ok_or_else(|| {
                    fault(
                        &key("base"),
                        format!("'{b}' is not an arm ({})", self.arm_names()),
                    )
                })?;
                if base.name == a.name || base.base.is_some() {
                    return Err(fault(
                        &key("base"),
                        format!("'{b}' (the base must be a tuned arm: one without a base, not this one)"),
                    ));
                }
            }
            if let Some(r) = &a.reference {
                let rarm = self.arm(r).ok_or_else(|| {
                    fault(
                        &key("reference"),
                        format!("'{r}' is not an arm ({})", self.arm_names()),
                    )
                })?;
                if rarm.name == a.name {
                    return Err(fault(&key("reference"), format!("'{r}' is this arm")));
                }
                if let Some(t) = self
                    .tasks
                    .iter()
                    .find(|t| self.runs_on(a, &t.name) && !self.runs_on(rarm, &t.name))
                {
                    return Err(fault(
                        &key("reference"),
                        format!(
                            "'{r}' does not run on task '{}', which this arm runs on",
                            t.name
                        ),
                    ));
                }
            }
        }
        let r = self.reference();
        if !r.tasks.is_empty() {
            if let Some(t) = self.tasks.iter().find(|t| !self.runs_on(r, &t.name)) {
                return Err(fault(
                    "study.reference",
                    format!("'{}' does not run on task '{}' (the study's reference arm runs on every task)", r.name, t.name),
                ));
            }
        }
        Ok(())
    }

    /// Whether `arm` runs on the task named `task`.
    pub fn runs_on(&self, arm: &Arm, task: &str) -> bool {
        arm.tasks.is_empty() || arm.tasks.iter().any(|t| t == task)
    }

    /// The (task, arm) indices of the evaluation, tasks in order, then arms.
    pub fn cells(&self) -> Vec<(usize, usize)> {
        let mut v = Vec::new();
        for (ti, t) in self.tasks.iter().enumerate() {
            for (ai, a) in self.arms.iter().enumerate() {
                if self.runs_on(a, &t.name) {
                    v.push((ti, ai));
                }
            }
        }
        v
    }

    /// The arm `arm`'s Δ is taken against.
    pub fn reference_of(&self, arm: &Arm) -> &Arm {
        arm.reference
            .as_deref()
            .and_then(|r| self.arm(r))
            .unwrap_or_else(|| self.reference())
    }

    /// Combinations of the `tuning.distinct` keys (every key's when none are named).
    fn distinct_size(&self) -> usize {
        self.tuning.as_ref().map_or(1, |t| {
            t.space
                .iter()
                .filter(|(k, _)| t.distinct.is_empty() || t.distinct.contains(k))
                .try_fold(1usize, |n, (_, v)| n.checked_mul(v.len()))
                .unwrap_or(usize::MAX)
        })
    }

    /// The reference arm.
    pub fn reference(&self) -> &Arm {
        self.study
            .reference
            .as_deref()
            .and_then(|r| self.arm(r))
            .unwrap_or(&self.arms[0])
    }

    /// The metrics reported, in the plan's order.
    pub fn metrics(&self) -> Vec<Metric> {
        self.study
            .metrics
            .iter()
            .filter_map(|m| Metric::parse(m))
            .collect()
    }

    /// The tuning metric.
    pub fn tuning_metric(&self) -> Option<Metric> {
        self.tuning.as_ref().and_then(|t| Metric::parse(&t.metric))
    }

    /// The tasks a criterion looks at.
    pub fn criterion_tasks<'a>(&'a self, c: &'a Criterion) -> Vec<&'a str> {
        if c.tasks.is_empty() {
            let arm = self.arm(&c.arm);
            self.tasks
                .iter()
                .filter(|t| !t.control && arm.is_none_or(|a| self.runs_on(a, &t.name)))
                .map(|t| t.name.as_str())
                .collect()
        } else {
            c.tasks.iter().map(String::as_str).collect()
        }
    }

    /// Combinations in the tuning space (1 without tuning); `usize::MAX` when they
    /// overflow (refused at load).
    fn grid_size(&self) -> usize {
        self.tuning.as_ref().map_or(1, |t| {
            t.space
                .values()
                .try_fold(1usize, |n, v| n.checked_mul(v.len()))
                .unwrap_or(usize::MAX)
        })
    }

    /// The tuning configurations, each a list of `--set`s, the same for every arm: the
    /// whole grid in order, or `configs` distinct combinations drawn with `tuning.seed`.
    /// Without `[tuning]`, one empty configuration.
    pub fn configurations(&self) -> Vec<Vec<String>> {
        let Some(t) = &self.tuning else {
            return vec![Vec::new()];
        };
        let keys: Vec<(&String, &Vec<toml::Value>)> = t.space.iter().collect();
        let size = self.grid_size();
        let combo = |mut i: usize| -> Vec<String> {
            // Row-major over the keys in name order (the last key varies fastest).
            let mut sets = vec![String::new(); keys.len()];
            for (j, (k, vals)) in keys.iter().enumerate().rev() {
                sets[j] = format!("{k}={}", vals[i % vals.len()]);
                i /= vals.len();
            }
            sets
        };
        match t.method {
            Method::Grid => (0..size).map(combo).collect(),
            Method::Random => {
                use rand::{Rng, SeedableRng};
                let mut rng = rlcpc_envs::SeededRng::seed_from_u64(t.seed);
                // Distinct indices of the grid, drawn uniformly (the grid itself may be
                // far too large to list).
                // Distinct in the `distinct` keys (all keys when none are named).
                let project = |c: &[String]| -> Vec<String> {
                    keys.iter()
                        .zip(c)
                        .filter(|((k, _), _)| t.distinct.is_empty() || t.distinct.contains(k))
                        .map(|(_, s)| s.clone())
                        .collect()
                };
                let mut drawn: Vec<Vec<String>> = Vec::with_capacity(t.configs);
                while drawn.len() < t.configs {
                    let c = combo(rng.random_range(0..size));
                    if !drawn.iter().any(|d| project(d) == project(&c)) {
                        drawn.push(c);
                    }
                }
                drawn
            }
        }
    }

    /// Where a task's config comes from: a file beside the study file, else the name
    /// as given (a preset, or a path from the working directory).
    pub fn config_path(&self, task: &Task, plan_dir: &Path) -> PathBuf {
        let beside = plan_dir.join(&task.config);
        if beside.is_file() {
            beside
        } else {
            PathBuf::from(&task.config)
        }
    }
}

/// Most tuning configurations per arm.
const MAX_CONFIGS: usize = 10_000;

/// Keys a study sets itself for every run: a `set` or a tuning key may not.
const FIXED: [(&str, &str); 3] = [
    (
        "run.total_steps",
        "the task's `steps` gives every run's budget",
    ),
    ("run.seed", "the study's and the tuning's seeds give it"),
    (
        "run.target_return",
        "every study run trains its whole budget (0)",
    ),
];

/// Refuses a `--set` (or tuning key) of a key the study fixes, naming where it stands.
fn fixed(key: &str, set: &str) -> Result<()> {
    let k = set.split('=').next().unwrap_or("").trim();
    match FIXED.iter().find(|f| f.0 == k) {
        Some((k, why)) => Err(fault(
            key,
            format!("sets '{k}', which a study fixes: {why}"),
        )),
        None => Ok(()),
    }
}

fn metric(key: &str, m: &str) -> Result<Metric> {
    Metric::parse(m).ok_or_else(|| {
        fault(
            key,
            format!("unknown metric '{m}' (final_return, auc or mmer)"),
        )
    })
}

fn dup(key: &str, seeds: &[u64]) -> Result<()> {
    for (i, s) in seeds.iter().enumerate() {
        if seeds[..i].contains(s) {
            return Err(fault(key, format!("seed {s} is given twice")));
        }
    }
    Ok(())
}

fn names<'a>(what: &str, names: impl Iterator<Item = &'a String>) -> Result<()> {
    let mut seen: Vec<&String> = Vec::new();
    for (i, n) in names.enumerate() {
        if n.is_empty()
            || n.starts_with('.')
            || !n
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            bail!(fault(
                &format!("{what}[{i}].name"),
                format!(
                    "'{n}' (letters, digits, - _ . only, not first a dot: it names a directory)"
                )
            ));
        }
        if seen.contains(&n) {
            bail!(fault(
                &format!("{what}[{i}].name"),
                format!("'{n}' is used twice")
            ));
        }
        seen.push(n);
    }
    Ok(())
}
