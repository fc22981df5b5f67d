//! The study's report: `report.md` (per task and arm, mean ± 95% CI of each metric and
//! the paired Δ against the reference arm with its bootstrap CI; the tuning table; the
//! verdict of each pre-registered criterion), the same numbers as `summary.csv` and
//! `summary.json`, every run's metrics in `runs.csv`, and one plot per task
//! (`plots/TASK.png`, each arm's learning curve as mean ± s.e. over seeds). Nothing in
//! them depends on timing or on where the study directory lies, so a study stopped and
//! resumed writes the same report as one run straight through (where its runs resume
//! bit for bit: sync runs of rlcpc's own environments).

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{Context, Result};
use serde::Serialize;

use super::plan::Test;
use super::stats::{bootstrap_ci, decisive_ci, mean_ci, paired_t_ci, Metric, RunMetrics, Side};
use super::{read_result, Run, Stage, Study};

/// One task × arm × metric.
#[derive(Debug, Clone, Serialize)]
pub struct Cell {
    pub task: String,
    pub arm: String,
    pub metric: Metric,
    pub seeds: usize,
    /// Mean and 95% CI over seeds; `None` where a run has no value (`missing` names it).
    pub mean: Option<f64>,
    pub ci95: Option<(f64, f64)>,
    /// Paired Δ (arm − reference) by seed: mean and bootstrap 95% CI, and where the CI
    /// lies; `None` for the reference arm or where a value is missing.
    pub delta: Option<f64>,
    pub delta_ci95: Option<(f64, f64)>,
    /// The paired Student-t 95% CI of Δ.
    pub delta_t_ci95: Option<(f64, f64)>,
    /// Where the hull of both CIs lies ([`super::stats::decisive_ci`]): what the
    /// criteria read.
    pub delta_side: Option<Side>,
    /// The tuned settings were chosen on this task.
    pub in_sample: bool,
    pub control: bool,
    /// Runs without a value of this metric (refused, not counted as 0).
    pub missing: Vec<String>,
}

/// What a task × arm adds beside its metrics.
#[derive(Debug, Clone, Serialize)]
pub struct Extra {
    pub task: String,
    pub arm: String,
    /// The task's `solved` threshold.
    pub solved_at: Option<f64>,
    /// Seeds whose final return is at or above it.
    pub solved: Option<usize>,
    /// Median over the seeds that reached it of the env steps at which the 100-episode
    /// mean return first did; `reached` of them did.
    pub steps_to_solve_median: Option<f64>,
    pub reached: Option<usize>,
    /// The head's final accuracy, mean over seeds, and by horizon bucket.
    pub head_acc: Option<f64>,
    pub head_acc_by_horizon: Vec<(String, f64)>,
    /// Spearman's ρ between the head's final accuracy and the final return across seeds.
    pub spearman_acc_return: Option<f64>,
}

/// A criterion's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    pub name: String,
    pub arm: String,
    pub metric: Metric,
    pub test: Test,
    pub tasks: Vec<String>,
    pub passing: Vec<String>,
    pub undecided: Vec<String>,
    pub needed: usize,
    /// `holds`, `fails` or `undecided` (missing values could change it).
    pub verdict: &'static str,
}

#[derive(Serialize)]
struct Summary<'a> {
    study: &'a str,
    plan_hash: &'a str,
    reference: &'a str,
    seeds: &'a [u64],
    chosen: Vec<(String, Option<String>)>,
    cells: &'a [Cell],
    extras: &'a [Extra],
    criteria: &'a [Verdict],
}

fn f4(x: f64) -> String {
    format!("{x:.4}")
}

fn signed(x: f64) -> String {
    format!("{x:+.4}")
}

/// Writes the report files; returns the path of `report.md`.
pub fn write(
    study: &Study,
    tuning: &[Run],
    chosen: &[usize],
    means: &[Vec<Option<f64>>],
    eval: &[Run],
) -> Result<PathBuf> {
    let plan = &study.plan;
    let reference = plan.reference().name.clone();
    let arm_index = |name: &str| plan.arms.iter().position(|a| a.name == name).unwrap_or(0);
    let tuned_on: Vec<&str> = plan
        .tuning
        .as_ref()
        .map_or(Vec::new(), |t| t.tasks.iter().map(String::as_str).collect());
    let rel = |r: &Run| {
        r.dir
            .strip_prefix(&study.dir)
            .unwrap_or(&r.dir)
            .display()
            .to_string()
    };
    // Every run's metrics.
    let mut results: Vec<(&Run, RunMetrics)> = Vec::new();
    for r in tuning.iter().chain(eval) {
        results.push((r, read_result(&r.dir)?));
    }
    let value = |ti: usize, ai: usize, seed: u64, m: Metric| -> (Option<f64>, String) {
        let (r, res) = results
            .iter()
            .find(|(r, _)| r.stage == Stage::Eval && r.task == ti && r.arm == ai && r.seed == seed)
            .expect("every evaluation run has a result");
        (res.get(m), rel(r))
    };
    let mut cells = Vec::new();
    for (ti, ai) in plan.cells() {
        let (t, a) = (&plan.tasks[ti], &plan.arms[ai]);
        let ref_ai = arm_index(&plan.reference_of(a).name);
        {
            for m in plan.metrics() {
                let mut vals = Vec::new();
                let mut deltas = Vec::new();
                let mut missing = Vec::new();
                let mut paired = true;
                for &seed in &plan.study.seeds {
                    let (v, dir) = value(ti, ai, seed, m);
                    let (rv, rdir) = value(ti, ref_ai, seed, m);
                    match v {
                        Some(v) => vals.push(v),
                        None => missing.push(dir),
                    }
                    match (v, rv) {
                        (Some(v), Some(rv)) => deltas.push(v - rv),
                        (Some(_), None) => {
                            paired = false;
                            if !missing.contains(&rdir) && ai != ref_ai {
                                missing.push(rdir);
                            }
                        }
                        _ => paired = false,
                    }
                }
                let complete = vals.len() == plan.study.seeds.len();
                let (mean, ci) = if complete {
                    let (mu, h) = mean_ci(&vals);
                    (Some(mu), Some((mu - h, mu + h)))
                } else {
                    (None, None)
                };
                let (delta, delta_ci, delta_t) = if ai != ref_ai && paired && complete {
                    let seed =
                        super::fnv1a(format!("{}/{}/{}", t.name, a.name, m.as_str()).as_bytes());
                    let ci = bootstrap_ci(&deltas, plan.study.bootstrap, seed);
                    (
                        Some(deltas.iter().sum::<f64>() / deltas.len() as f64),
                        Some(ci),
                        Some(paired_t_ci(&deltas)),
                    )
                } else {
                    (None, None, None)
                };
                cells.push(Cell {
                    task: t.name.clone(),
                    arm: a.name.clone(),
                    metric: m,
                    seeds: plan.study.seeds.len(),
                    mean,
                    ci95: ci,
                    delta,
                    delta_ci95: delta_ci,
                    delta_t_ci95: delta_t,
                    delta_side: delta_ci
                        .zip(delta_t)
                        .map(|(b, t)| Side::of(decisive_ci(b, t))),
                    in_sample: tuned_on.contains(&t.name.as_str()),
                    control: t.control,
                    missing,
                });
            }
        }
    }
    // Solved seeds, steps to solve, the head's accuracy and its rank correlation with
    // the final return.
    let mut extras = Vec::new();
    for (ti, ai) in plan.cells() {
        let (t, a) = (&plan.tasks[ti], &plan.arms[ai]);
        let runs: Vec<&(&Run, RunMetrics)> = results
            .iter()
            .filter(|(r, _)| r.stage == Stage::Eval && r.task == ti && r.arm == ai)
            .collect();
        let (mut solved, mut steps) = (0, Vec::new());
        if let Some(x) = t.solved {
            for (r, m) in &runs {
                if m.get(Metric::FinalReturn).is_some_and(|f| f >= x) {
                    solved += 1;
                }
                if let Ok(c) =
                    crate::plot::read_curve(&r.dir, "time/total_timesteps", "rollout/ep_rew_mean")
                {
                    if let Some(p) = c.points.iter().find(|p| p.1 >= x) {
                        steps.push(p.0);
                    }
                }
            }
        }
        let acc_key = runs
            .iter()
            .flat_map(|(_, m)| m.head_acc.keys())
            .find(|k| *k == "cpc/acc" || *k == "cpca/acc")
            .cloned();
        let (mut acc, mut ret) = (Vec::new(), Vec::new());
        if let Some(k) = &acc_key {
            for (_, m) in &runs {
                if let (Some(&x), Some(y)) = (m.head_acc.get(k), m.get(Metric::FinalReturn)) {
                    acc.push(x);
                    ret.push(y);
                }
            }
        }
        let mut by_horizon: Vec<(String, f64)> = Vec::new();
        if let Some(k) = &acc_key {
            let prefix = format!("{k}_");
            let mut keys: Vec<&String> = runs
                .iter()
                .flat_map(|(_, m)| m.head_acc.keys())
                .filter(|x| x.starts_with(&prefix))
                .collect();
            keys.sort();
            keys.dedup();
            for key in keys {
                let v: Vec<f64> = runs
                    .iter()
                    .filter_map(|(_, m)| m.head_acc.get(key).copied())
                    .collect();
                if !v.is_empty() {
                    by_horizon.push((
                        key[prefix.len()..].to_string(),
                        v.iter().sum::<f64>() / v.len() as f64,
                    ));
                }
            }
        }
        extras.push(Extra {
            task: t.name.clone(),
            arm: a.name.clone(),
            solved_at: t.solved,
            solved: t.solved.map(|_| solved),
            steps_to_solve_median: (!steps.is_empty()).then(|| crate::bench::median(&steps)),
            reached: t.solved.map(|_| steps.len()),
            head_acc: (!acc.is_empty()).then(|| acc.iter().sum::<f64>() / acc.len() as f64),
            head_acc_by_horizon: by_horizon,
            spearman_acc_return: super::stats::spearman(&acc, &ret),
        });
    }

    // The criteria.
    let mut verdicts = Vec::new();
    for c in &plan.criteria {
        let metric = Metric::parse(&c.metric).expect("checked at load");
        let tasks = plan.criterion_tasks(c);
        let (mut passing, mut undecided) = (Vec::new(), Vec::new());
        for &t in &tasks {
            let cell = cells
                .iter()
                .find(|x| x.task == t && x.arm == c.arm && x.metric == metric);
            match cell.and_then(|x| x.delta_side) {
                None => undecided.push(t.to_string()),
                Some(side) => {
                    let pass = match c.test {
                        Test::Above => side == Side::Above,
                        Test::Below => side == Side::Below,
                        Test::NotBelow => side != Side::Below,
                        Test::NotAbove => side != Side::Above,
                    };
                    if pass {
                        passing.push(t.to_string());
                    }
                }
            }
        }
        let needed = c.at_least.unwrap_or(tasks.len());
        let verdict = if passing.len() >= needed {
            "holds"
        } else if passing.len() + undecided.len() >= needed {
            "undecided"
        } else {
            "fails"
        };
        verdicts.push(Verdict {
            name: c.name.clone(),
            arm: c.arm.clone(),
            metric,
            test: c.test,
            tasks: tasks.iter().map(|s| s.to_string()).collect(),
            passing,
            undecided,
            needed,
            verdict,
        });
    }

    let dir = &study.dir;
    let put = |name: &str, text: &str| -> Result<()> {
        let p = dir.join(name);
        crate::checkpoint::write_bytes_atomic(&p, text.as_bytes())
            .with_context(|| format!("cannot write '{}'", p.display()))
    };
    // runs.csv
    let mut csv = String::from(
        "stage,task,arm,config,seed,env_steps,episodes,final_return,auc,mmer,head_acc,dir\n",
    );
    let opt = |x: Option<f64>| x.map_or(String::new(), |v| format!("{v}"));
    for (r, m) in &results {
        let (stage, config) = match r.stage {
            Stage::Tune { config } => ("tune", config),
            Stage::Eval => ("eval", chosen[r.arm]),
        };
        let _ = writeln!(
            csv,
            "{stage},{},{},c{config},{},{},{},{},{},{},{},{}",
            plan.tasks[r.task].name,
            plan.arms[r.arm].name,
            r.seed,
            m.env_steps,
            m.episodes,
            opt(m.final_return),
            opt(m.auc),
            opt(m.mmer),
            opt(m
                .head_acc
                .get("cpc/acc")
                .or(m.head_acc.get("cpca/acc"))
                .copied()),
            rel(r)
        );
    }
    put("runs.csv", &csv)?;
    // summary.csv
    let mut csv = String::from("task,arm,metric,seeds,mean,ci95_lo,ci95_hi,delta,delta_ci95_lo,delta_ci95_hi,delta_t_ci95_lo,delta_t_ci95_hi,delta_side,in_sample,control\n");
    for c in &cells {
        let _ = writeln!(
            csv,
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
            c.task,
            c.arm,
            c.metric.as_str(),
            c.seeds,
            opt(c.mean),
            opt(c.ci95.map(|x| x.0)),
            opt(c.ci95.map(|x| x.1)),
            opt(c.delta),
            opt(c.delta_ci95.map(|x| x.0)),
            opt(c.delta_ci95.map(|x| x.1)),
            opt(c.delta_t_ci95.map(|x| x.0)),
            opt(c.delta_t_ci95.map(|x| x.1)),
            c.delta_side.map_or("", |s| match s {
                Side::Above => "above",
                Side::Below => "below",
                Side::Straddles => "straddles",
            }),
            c.in_sample,
            c.control
        );
    }
    put("summary.csv", &csv)?;
    let chosen_labels: Vec<(String, Option<String>)> = plan
        .arms
        .iter()
        .zip(chosen)
        .map(|(a, &ci)| (a.name.clone(), study.config_label(ci)))
        .collect();
    let summary = Summary {
        study: &plan.study.name,
        plan_hash: study.hash(),
        reference: &reference,
        seeds: &plan.study.seeds,
        chosen: chosen_labels.clone(),
        cells: &cells,
        extras: &extras,
        criteria: &verdicts,
    };
    put("summary.json", &serde_json::to_string_pretty(&summary)?)?;

    // Plots: each arm's curve, mean ± s.e. over the evaluation seeds.
    let mut plots = Vec::new();
    for (ti, t) in plan.tasks.iter().enumerate() {
        let mut bands = Vec::new();
        for (ai, a) in plan
            .arms
            .iter()
            .enumerate()
            .filter(|(_, a)| plan.runs_on(a, &t.name))
        {
            let curves: Vec<crate::plot::Curve> = eval
                .iter()
                .filter(|r| r.task == ti && r.arm == ai)
                .filter_map(|r| {
                    crate::plot::read_curve(&r.dir, "time/total_timesteps", "rollout/ep_rew_mean")
                        .ok()
                })
                .collect();
            if !curves.is_empty() {
                bands.push(crate::plot::band(a.name.clone(), &curves, 1, 200));
            }
        }
        if bands.is_empty() {
            continue;
        }
        let name = format!("plots/{}.png", t.name);
        crate::plot::draw(
            &bands,
            "env steps",
            &format!("{}: mean return (last 100 episodes)", t.name),
            &dir.join(&name),
            (960, 600),
        )?;
        plots.push((t.name.clone(), name));
    }

    // report.md
    let mut md = String::new();
    let _ = writeln!(md, "# Study `{}`\n", plan.study.name);
    let _ = writeln!(
        md,
        "Plan hash `{}`. Reference arm: `{reference}`. Evaluation seeds: {}. Metrics: {}.\n",
        study.hash(),
        plan.study
            .seeds
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        plan.metrics()
            .iter()
            .map(|m| m.title())
            .collect::<Vec<_>>()
            .join("; ")
    );
    let _ = writeln!(
        md,
        "Each cell is the mean over seeds with its Student-t 95% CI; Δ is the paired difference from the arm's reference (`{reference}` unless the arm's row names another) by seed (the same seed gives both arms the same environment streams), mean and percentile-bootstrap 95% CI ({} resamples). A criterion counts a CI as above or below 0 only if the paired Student-t 95% CI of Δ lies there too (with few seeds the percentile bootstrap is too narrow; summary.csv has both). Every run trains its whole budget (no early stop at a target return).\n",
        plan.study.bootstrap
    );
    if let Some(t) = &plan.tuning {
        let metric = plan.tuning_metric().expect("checked");
        let _ = writeln!(md, "## Tuning\n");
        let _ = writeln!(
            md,
            "{} configuration(s) per arm ({}), on task(s) {} with seeds {}, chosen by the mean {} over them. Rows of those tasks below are **in-sample** for the chosen settings.\n",
            study.configs.len(),
            match t.method {
                super::plan::Method::Grid => "grid",
                super::plan::Method::Random => "random draw",
            },
            t.tasks.join(", "),
            t.seeds.iter().map(u64::to_string).collect::<Vec<_>>().join(", "),
            metric.as_str()
        );
        let _ = writeln!(
            md,
            "| arm | configuration | mean {} | chosen |\n|---|---|---|---|",
            metric.as_str()
        );
        for (ai, a) in plan.arms.iter().enumerate() {
            if let Some(b) = &a.base {
                let _ = writeln!(
                    md,
                    "| {} | `{b}`'s choice, with {} | — | (not tuned) |",
                    a.name,
                    if a.set.is_empty() {
                        "nothing changed".to_string()
                    } else {
                        a.set.join(", ")
                    }
                );
                continue;
            }
            for ci in 0..study.configs.len() {
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} |",
                    a.name,
                    study.config_label(ci).unwrap_or_default(),
                    means.get(ai).and_then(|r| r[ci]).map_or("n/a".into(), f4),
                    if chosen[ai] == ci { "**yes**" } else { "" }
                );
            }
        }
        md.push('\n');
    }
    let _ = writeln!(md, "## Results\n");
    for t in &plan.tasks {
        let mut tags = Vec::new();
        if t.control {
            tags.push("control");
        }
        if tuned_on.contains(&t.name.as_str()) {
            tags.push("in-sample: the settings were tuned on it");
        }
        let tags = if tags.is_empty() {
            String::new()
        } else {
            format!(" ({})", tags.join("; "))
        };
        let _ = writeln!(md, "### {}{tags}\n", t.name);
        let _ = writeln!(md, "{} env steps per run.\n", t.steps);
        let metrics = plan.metrics();
        let _ = write!(md, "| arm |");
        for m in &metrics {
            let _ = write!(md, " {} | Δ vs reference [95% CI] |", m.as_str());
        }
        md.push('\n');
        md.push_str(&"|---".repeat(1 + 2 * metrics.len()));
        md.push_str("|\n");
        for a in plan.arms.iter().filter(|a| plan.runs_on(a, &t.name)) {
            let r = &plan.reference_of(a).name;
            if a.reference.is_some() {
                let _ = write!(md, "| {} (vs {r}) |", a.name);
            } else {
                let _ = write!(md, "| {} |", a.name);
            }
            for &m in &metrics {
                let c = cells
                    .iter()
                    .find(|c| c.task == t.name && c.arm == a.name && c.metric == m)
                    .expect("every cell");
                match (c.mean, c.ci95) {
                    (Some(mu), Some((lo, hi))) => {
                        let _ = write!(md, " {} ± {} |", f4(mu), f4((hi - lo) / 2.0));
                    }
                    _ => {
                        let _ = write!(md, " missing |");
                    }
                }
                match (c.delta, c.delta_ci95) {
                    (Some(d), Some((lo, hi))) => {
                        let _ = write!(md, " {} [{}, {}] |", signed(d), signed(lo), signed(hi));
                    }
                    _ if a.name == *r => md.push_str(" — |"),
                    _ => md.push_str(" missing |"),
                }
            }
            md.push('\n');
        }
        let rows: Vec<&Extra> = extras
            .iter()
            .filter(|e| e.task == t.name && (e.solved.is_some() || e.head_acc.is_some()))
            .collect();
        if !rows.is_empty() {
            let x = t.solved.map_or(String::new(), |x| format!("{x}"));
            let _ = writeln!(
                md,
                "\n| arm | seeds with final return ≥ {x} | env steps to a 100-episode mean ≥ {x} (median; seeds that reached it) | head accuracy (final; by horizon) | Spearman ρ(accuracy, final return) |\n|---|---|---|---|---|"
            );
            for e in rows {
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} | {} |",
                    e.arm,
                    e.solved.map_or("—".into(), |n| format!(
                        "{n} of {}",
                        plan.study.seeds.len()
                    )),
                    match (e.steps_to_solve_median, e.reached) {
                        (Some(m), Some(n)) => format!("{m:.0} ({n})"),
                        (None, Some(_)) => "never".into(),
                        _ => "—".into(),
                    },
                    e.head_acc.map_or("—".into(), |a| {
                        let by: Vec<String> = e
                            .head_acc_by_horizon
                            .iter()
                            .map(|(k, v)| format!("{k} {v:.3}"))
                            .collect();
                        if by.is_empty() {
                            format!("{a:.3}")
                        } else {
                            format!("{a:.3} ({})", by.join(", "))
                        }
                    }),
                    e.spearman_acc_return.map_or("—".into(), signed),
                );
            }
        }
        if let Some((_, p)) = plots.iter().find(|p| p.0 == t.name) {
            let _ = writeln!(md, "\n![{}]({p})", t.name);
        }
        md.push('\n');
    }
    if !verdicts.is_empty() {
        let _ = writeln!(md, "## Criteria\n");
        let _ = writeln!(md, "| criterion | arm | metric | test | passing | needed | verdict |\n|---|---|---|---|---|---|---|");
        for v in &verdicts {
            let _ = writeln!(
                md,
                "| {} | {} | {} | CI of Δ {} 0 | {} of {} ({}) | {} | **{}** |",
                v.name,
                v.arm,
                v.metric.as_str(),
                match v.test {
                    Test::Above => "above",
                    Test::Below => "below",
                    Test::NotBelow => "not below",
                    Test::NotAbove => "not above",
                },
                v.passing.len(),
                v.tasks.len(),
                if v.passing.is_empty() {
                    "none".to_string()
                } else {
                    v.passing.join(", ")
                },
                v.needed,
                v.verdict
            );
        }
        md.push('\n');
    }
    let why = |d: &str| {
        results
            .iter()
            .find(|(r, _)| rel(r) == d)
            .and_then(|(_, m)| m.diverged.clone())
            .map_or("no episode ended in its budget".to_string(), |w| {
                format!("diverged: {w}")
            })
    };
    let missing: Vec<String> = cells
        .iter()
        .flat_map(|c| {
            let why = &why;
            c.missing
                .iter()
                .map(move |d| format!("- `{d}`: no {} ({})", c.metric.as_str(), why(d)))
        })
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    if !missing.is_empty() {
        let _ = writeln!(md, "## Missing values\n\nThese runs have no value of a metric; their cells are not computed (a missing value is never counted as 0):\n");
        for m in missing {
            let _ = writeln!(md, "{m}");
        }
        md.push('\n');
    }
    let _ = writeln!(md, "Files: `summary.csv` and `summary.json` (these tables), `runs.csv` (every run's metrics), `plots/`.");
    put("report.md", &md)?;
    Ok(dir.join("report.md"))
}
