//! What a study measures of one run, and how it compares arms.
//!
//! Of one run's `metrics.jsonl` ([`RunMetrics::read`]):
//! - **final return**: the mean return of the last 10% of the run's episodes (from the
//!   last log line at or before 90% of its episodes to its end: at least the last 10%,
//!   rounded up to the logging interval), exact from the logged count and sum of every
//!   episode's return (`rollout/episodes`, `rollout/ep_rew_total`);
//! - **AUC**: the normalised area under the learning curve: the mean return of the
//!   episodes that ended in each log interval, weighted by the interval's env steps,
//!   divided by the steps of the intervals that ended any episode (the curve's mean
//!   height, in return units);
//! - **MMER**: the maximum over training of the logged mean return of the last 100
//!   episodes, from the log lines where 100 episodes have ended (POPGym's metric; a
//!   maximum over a noisy curve, biased upward).
//!
//! A metric that a run does not have (no episode ended) is `None`, never 0: the report
//! refuses to average it and names the run.
//!
//! Across seeds: mean ± Student-t 95% CI ([`crate::plot::ci95`]) per arm, and for each
//! arm against the reference the paired difference by seed (the same seed gives both
//! arms the same environment streams) with a percentile bootstrap 95% CI over seeds.
//! With few seeds the percentile bootstrap is too narrow (with 3 seeds its lower bound
//! is the smallest difference), so a verdict takes the paired Student-t interval too:
//! [`decisive_ci`], the hull of both, must lie on one side of 0.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Result};
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// A metric a study can report and decide on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Mean return of the last 10% of episodes.
    FinalReturn,
    /// Normalised area under the learning curve.
    Auc,
    /// Maximum of the logged mean return (last 100 episodes).
    Mmer,
}

impl Metric {
    pub const ALL: [Metric; 3] = [Metric::FinalReturn, Metric::Auc, Metric::Mmer];

    /// The plan's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Metric::FinalReturn => "final_return",
            Metric::Auc => "auc",
            Metric::Mmer => "mmer",
        }
    }

    /// How the report's tables name it.
    pub fn title(self) -> &'static str {
        match self {
            Metric::FinalReturn => "final return (last 10% of episodes)",
            Metric::Auc => "AUC (mean height of the curve)",
            Metric::Mmer => "MMER (max of the 100-episode mean)",
        }
    }

    pub fn parse(s: &str) -> Option<Metric> {
        Metric::ALL.into_iter().find(|m| m.as_str() == s)
    }
}

/// One log line's counters.
#[derive(Debug, Clone, Copy)]
struct Row {
    steps: f64,
    episodes: f64,
    return_sum: f64,
    window_mean: f64,
}

/// A run's metrics, read from its `metrics.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunMetrics {
    pub env_steps: u64,
    pub episodes: u64,
    pub final_return: Option<f64>,
    pub auc: Option<f64>,
    pub mmer: Option<f64>,
    /// The run stopped on a NaN or infinite loss (the learner's message): it has no
    /// value of any metric, and its configuration cannot be chosen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diverged: Option<String>,
    /// The auxiliary head's final accuracy (`cpc/acc`, `cpca/acc` and their horizon
    /// buckets, e.g. `cpc/acc_k1`): the mean over the log lines of the last 10% of the
    /// run's env steps. Empty without a head.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub head_acc: BTreeMap<String, f64>,
}

impl RunMetrics {
    /// The value of `m`, if the run has one.
    pub fn get(&self, m: Metric) -> Option<f64> {
        if self.diverged.is_some() {
            return None;
        }
        match m {
            Metric::FinalReturn => self.final_return,
            Metric::Auc => self.auc,
            Metric::Mmer => self.mmer,
        }
    }

    /// Reads `run/metrics.jsonl`.
    pub fn read(run: &Path) -> Result<RunMetrics> {
        let path = run.join(crate::run_dir::METRICS);
        let mut rows = Vec::new();
        let lines = crate::metrics::read_rows(run)?;
        for (i, v) in lines.iter().enumerate() {
            let f = |k: &str| v[k].as_f64();
            let (Some(steps), Some(episodes)) = (f("time/total_timesteps"), f("rollout/episodes"))
            else {
                bail!(
                    "{}: line {} has no time/total_timesteps or rollout/episodes",
                    path.display(),
                    i + 1
                );
            };
            rows.push(Row {
                steps,
                episodes,
                // Absent before rlcpc logged it: the final return and AUC are then
                // missing, not 0.
                return_sum: f("rollout/ep_rew_total").unwrap_or(f64::NAN),
                window_mean: f("rollout/ep_rew_mean").unwrap_or(f64::NAN),
            });
        }
        let mut m = Self::from_rows(&rows);
        m.head_acc = head_accuracy(&lines);
        Ok(m)
    }

    fn from_rows(rows: &[Row]) -> RunMetrics {
        let last = rows.last().copied().unwrap_or(Row {
            steps: 0.0,
            episodes: 0.0,
            return_sum: 0.0,
            window_mean: f64::NAN,
        });
        let finite = |x: f64| x.is_finite().then_some(x);
        // Only full windows: an early mean of a few lucky episodes is no 100-episode mean.
        let mmer = rows
            .iter()
            .filter(|r| r.episodes >= crate::metrics::EpisodeWindow::SIZE as f64)
            .filter_map(|r| finite(r.window_mean))
            .fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x))));
        // The last 10% of episodes: from the last row at or before 90% of them.
        let cut = 0.9 * last.episodes;
        let start = rows
            .iter()
            .rev()
            .find(|r| r.episodes <= cut)
            .map_or((0.0, 0.0), |r| (r.episodes, r.return_sum));
        let final_return = (last.episodes > start.0)
            .then(|| (last.return_sum - start.1) / (last.episodes - start.0))
            .and_then(finite);
        // AUC: each interval's exact episode mean, weighted by its steps.
        let (mut area, mut span) = (0.0, 0.0);
        let mut prev = (0.0, 0.0, 0.0);
        for r in rows {
            let (de, ds) = (r.episodes - prev.1, r.steps - prev.0);
            if de > 0.0 && ds > 0.0 {
                area += ds * (r.return_sum - prev.2) / de;
                span += ds;
            }
            prev = (r.steps, r.episodes, r.return_sum);
        }
        RunMetrics {
            env_steps: last.steps as u64,
            episodes: last.episodes as u64,
            final_return,
            auc: (span > 0.0).then(|| area / span).and_then(finite),
            mmer,
            diverged: None,
            head_acc: BTreeMap::new(),
        }
    }
}

/// The means of the head's accuracy keys (`cpc/acc*`, `cpca/acc*`) over the log lines
/// in the last 10% of env steps.
fn head_accuracy(lines: &[serde_json::Value]) -> BTreeMap<String, f64> {
    let last = lines
        .iter()
        .filter_map(|v| v["time/total_timesteps"].as_f64())
        .fold(0.0, f64::max);
    let mut sums: BTreeMap<String, (f64, usize)> = BTreeMap::new();
    for v in lines {
        if v["time/total_timesteps"]
            .as_f64()
            .is_none_or(|s| s < 0.9 * last)
        {
            continue;
        }
        let Some(obj) = v.as_object() else { continue };
        for (k, x) in obj {
            if !(k.starts_with("cpc/acc") || k.starts_with("cpca/acc")) {
                continue;
            }
            if let Some(x) = x.as_f64().filter(|x| x.is_finite()) {
                let e = sums.entry(k.clone()).or_insert((0.0, 0));
                e.0 += x;
                e.1 += 1;
            }
        }
    }
    sums.into_iter()
        .map(|(k, (s, n))| (k, s / n as f64))
        .collect()
}

/// Spearman's rank correlation of `x` and `y` (ties get their mean rank); `None` with
/// fewer than 3 pairs or when either has no spread.
pub fn spearman(x: &[f64], y: &[f64]) -> Option<f64> {
    if x.len() != y.len() || x.len() < 3 {
        return None;
    }
    let ranks = |v: &[f64]| -> Vec<f64> {
        let mut idx: Vec<usize> = (0..v.len()).collect();
        idx.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
        let mut r = vec![0.0; v.len()];
        let mut i = 0;
        while i < idx.len() {
            let mut j = i;
            while j + 1 < idx.len() && v[idx[j + 1]] == v[idx[i]] {
                j += 1;
            }
            for &k in &idx[i..=j] {
                r[k] = (i + j) as f64 / 2.0 + 1.0;
            }
            i = j + 1;
        }
        r
    };
    let (rx, ry) = (ranks(x), ranks(y));
    let n = x.len() as f64;
    let (mx, my) = (rx.iter().sum::<f64>() / n, ry.iter().sum::<f64>() / n);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in rx.iter().zip(&ry) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx) * (a - mx);
        syy += (b - my) * (b - my);
    }
    (sxx > 0.0 && syy > 0.0).then(|| sxy / (sxx * syy).sqrt())
}

/// Mean and Student-t 95% CI half-width.
pub fn mean_ci(v: &[f64]) -> (f64, f64) {
    (crate::plot::mean_se(v).0, crate::plot::ci95(v))
}

/// The percentile bootstrap 95% CI of the mean of `d` (paired differences by seed):
/// `n` resamples of the seeds with replacement, from `seed`. One value: `(d, d)`.
pub fn bootstrap_ci(d: &[f64], n: usize, seed: u64) -> (f64, f64) {
    if d.len() < 2 {
        let x = d.first().copied().unwrap_or(f64::NAN);
        return (x, x);
    }
    let mut rng = rlcpc_envs::SeededRng::seed_from_u64(seed);
    let mut means: Vec<f64> = (0..n.max(1))
        .map(|_| {
            (0..d.len())
                .map(|_| d[rng.random_range(0..d.len())])
                .sum::<f64>()
                / d.len() as f64
        })
        .collect();
    means.sort_by(|a, b| a.total_cmp(b));
    let q = |p: f64| means[((p * (means.len() - 1) as f64).round() as usize).min(means.len() - 1)];
    (q(0.025), q(0.975))
}

/// The paired Student-t 95% CI of the mean of `d` (`(d, d)` for one value).
pub fn paired_t_ci(d: &[f64]) -> (f64, f64) {
    let (m, h) = mean_ci(d);
    (m - h, m + h)
}

/// The interval a verdict is read from: the hull of the bootstrap and the paired-t
/// intervals (the more cautious bound on each side).
pub fn decisive_ci(boot: (f64, f64), t: (f64, f64)) -> (f64, f64) {
    (boot.0.min(t.0), boot.1.max(t.1))
}

/// How a paired CI stands to 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// The whole CI lies above 0.
    Above,
    /// The whole CI lies below 0.
    Below,
    /// The CI holds 0.
    Straddles,
}

impl Side {
    pub fn of((lo, hi): (f64, f64)) -> Side {
        if lo > 0.0 {
            Side::Above
        } else if hi < 0.0 {
            Side::Below
        } else {
            Side::Straddles
        }
    }
}
