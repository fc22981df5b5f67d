//! Several seeds of one config (`rlcpc train --seeds`): a row per seed and the summary
//! table, with the study's metrics ([`super::stats`]) and their means and 95% CIs over
//! the complete seeds.

use super::{Metric, RunMetrics};

/// One seed's run.
#[derive(Debug, Clone)]
pub struct SeedRow {
    pub seed: u64,
    pub env_steps: u64,
    pub metrics: RunMetrics,
    /// Env steps when the mean return first reached `run.target_return`.
    pub solved_at: Option<u64>,
    /// Whether the run finished (an interrupted one is listed, not counted).
    pub complete: bool,
}

/// The table of `rows` (of `total` seeds asked for): a line per seed, then the means with
/// 95% CIs over the complete seeds, and a note where seeds are missing.
pub fn summary(rows: &[SeedRow], total: usize) -> String {
    let mut t = format!(
        "{:>6}  {:>12}  {:>12}  {:>10}  {:>10}  {:>14}\n",
        "seed", "env steps", "final return", "AUC", "MMER", "solved at"
    );
    let na = || "n/a".to_string();
    let cell = |x: Option<f64>| x.map_or_else(na, |m| format!("{m:.4}"));
    for r in rows {
        t += &format!(
            "{:>6}  {:>12}  {:>12}  {:>10}  {:>10}  {:>14}{}\n",
            r.seed,
            r.env_steps,
            cell(r.metrics.final_return),
            cell(r.metrics.auc),
            cell(r.metrics.mmer),
            r.solved_at.map_or_else(na, |s| s.to_string()),
            if r.complete {
                ""
            } else {
                "  (interrupted: not in the means)"
            }
        );
    }
    let complete: Vec<&SeedRow> = rows.iter().filter(|r| r.complete).collect();
    // A seed without a value (no episode ended) is named, never counted as 0.
    let stat = |metric: Metric| {
        let missing: Vec<String> = complete
            .iter()
            .filter(|r| r.metrics.get(metric).is_none())
            .map(|r| r.seed.to_string())
            .collect();
        if !missing.is_empty() {
            return format!("n/a (seed {} has none)", missing.join(", "));
        }
        let v: Vec<f64> = complete
            .iter()
            .filter_map(|r| r.metrics.get(metric))
            .collect();
        crate::plot::mean_ci_text(&v)
    };
    let solved = complete.iter().filter(|r| r.solved_at.is_some()).count();
    t += &format!(
        "final return (last 10% of episodes) {} · AUC {} · MMER {} (mean ± 95% CI over {} complete seeds) · solved {solved}/{}\n",
        stat(Metric::FinalReturn),
        stat(Metric::Auc),
        stat(Metric::Mmer),
        complete.len(),
        complete.len()
    );
    if complete.len() < total {
        t += &format!(
            "{} of the {} seeds are not complete: continue with the same command and --resume\n",
            total - complete.len(),
            total
        );
    }
    t
}
