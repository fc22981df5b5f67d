//! The study's statistics against hand-computed values: final return, AUC and MMER from
//! a run's logged counters, missing values, the paired bootstrap CI and where it lies;
//! the tuning configurations of a grid and of a seeded random draw.

use rlcpc::rl::study::stats::{bootstrap_ci, mean_ci, Metric, RunMetrics, Side};

fn run_with(lines: &[(u64, u64, f64, f64)]) -> (tempfile::TempDir, RunMetrics) {
    let dir = tempfile::tempdir().unwrap();
    let text: String = lines
        .iter()
        .map(|&(steps, eps, sum, mean)| {
            format!(
                "{{\"time/total_timesteps\":{steps},\"rollout/episodes\":{eps},\"rollout/ep_rew_total\":{sum},\"rollout/ep_rew_mean\":{}}}\n",
                if mean.is_nan() { "null".to_string() } else { mean.to_string() }
            )
        })
        .collect();
    std::fs::write(dir.path().join("metrics.jsonl"), text).unwrap();
    let m = RunMetrics::read(dir.path()).unwrap();
    (dir, m)
}

#[test]
fn final_return_auc_and_mmer_by_hand() {
    // Four log lines: (steps, episodes so far, return sum so far, 100-episode mean).
    // Episodes per interval: 10, 30, 40, 20 (100 in all), returns per interval: 0, 6,
    // 20, 16 → interval means 0, 0.2, 0.5, 0.8.
    let (_d, m) = run_with(&[
        (100, 10, 0.0, 0.0),
        (200, 40, 6.0, 0.15),
        (300, 80, 26.0, 0.325),
        (400, 100, 42.0, 0.42),
    ]);
    assert_eq!((m.env_steps, m.episodes), (400, 100));
    // The last 10% of 100 episodes: from the last line at or before 90 episodes (80):
    // 20 episodes, return 16.
    assert_eq!(m.final_return, Some(0.8));
    // AUC: (100·0 + 100·0.2 + 100·0.5 + 100·0.8) / 400.
    assert!((m.auc.unwrap() - 0.375).abs() < 1e-12, "{:?}", m.auc);
    assert_eq!(m.mmer, Some(0.42));
    assert_eq!(m.get(Metric::FinalReturn), m.final_return);
}

#[test]
fn intervals_without_episodes_leave_the_auc_and_missing_values_stay_missing() {
    // An interval that ends no episode is not part of the curve's span.
    let (_d, m) = run_with(&[
        (100, 0, 0.0, f64::NAN),
        (200, 5, 5.0, 1.0),
        (300, 5, 5.0, 1.0),
    ]);
    assert_eq!(m.auc, Some(1.0));
    assert_eq!(m.final_return, Some(1.0));
    // With fewer than 100 episodes there is no 100-episode mean, so no MMER; with more,
    // the largest full window's mean, not an early lucky one.
    assert_eq!(m.mmer, None);
    let (_d, m) = run_with(&[
        (100, 10, 9.0, 0.9),
        (200, 100, 40.0, 0.4),
        (300, 200, 90.0, 0.5),
    ]);
    assert_eq!(m.mmer, Some(0.5));
    // No episode at all: every metric is missing, not 0.
    let (_d, m) = run_with(&[(100, 0, 0.0, f64::NAN), (200, 0, 0.0, f64::NAN)]);
    assert_eq!((m.final_return, m.auc, m.mmer), (None, None, None));
    // Metrics from before the return sum was logged: final return and AUC missing.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("metrics.jsonl"),
        "{\"time/total_timesteps\":100,\"rollout/episodes\":100,\"rollout/ep_rew_mean\":0.5}\n",
    )
    .unwrap();
    let m = RunMetrics::read(dir.path()).unwrap();
    assert_eq!((m.final_return, m.auc, m.mmer), (None, None, Some(0.5)));
    // A run without metrics is an error naming the file.
    let e = RunMetrics::read(&dir.path().join("nope"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("metrics.jsonl"), "{e}");
}

#[test]
fn paired_bootstrap_and_t_intervals() {
    // Student-t: mean 2, s.d. 1, n = 3: half-width 4.303 / √3.
    let (m, h) = mean_ci(&[1.0, 2.0, 3.0]);
    assert_eq!(m, 2.0);
    assert!((h - 4.303 / 3f64.sqrt()).abs() < 1e-9);
    // The bootstrap CI of a mean lies within the data's range, brackets its mean, and is
    // reproducible from its seed.
    let d = [0.1, 0.3, 0.2, 0.4, 0.25];
    let (lo, hi) = bootstrap_ci(&d, 10_000, 7);
    assert!(
        (0.1..0.25).contains(&lo) && hi > 0.25 && hi <= 0.4,
        "{lo} {hi}"
    );
    assert_eq!(bootstrap_ci(&d, 10_000, 7), (lo, hi));
    // With n = 2 the resampled means are d0, d1 or their mean: the 2.5% and 97.5%
    // quantiles of 10,000 draws are the two values.
    assert_eq!(bootstrap_ci(&[-1.0, 3.0], 10_000, 1), (-1.0, 3.0));
    assert_eq!(Side::of((0.1, 0.4)), Side::Above);
    assert_eq!(Side::of((-0.4, -0.1)), Side::Below);
    assert_eq!(Side::of((-0.1, 0.4)), Side::Straddles);
    // Identical differences: a degenerate interval, on the side of its value.
    assert_eq!(
        Side::of(bootstrap_ci(&[0.5, 0.5, 0.5], 100, 0)),
        Side::Above
    );
    // With 3 seeds the percentile bootstrap's lower bound is the smallest difference
    // (P(all three resamples = the minimum) = 1/27 > 2.5%): three small positive
    // differences look decisive to it, not to the paired t-interval, and a verdict reads
    // the hull of both.
    let d = [0.01, 0.2, 0.4];
    let boot = bootstrap_ci(&d, 10_000, 3);
    assert_eq!(boot.0, 0.01);
    assert_eq!(Side::of(boot), Side::Above);
    let t = rlcpc::rl::study::stats::paired_t_ci(&d);
    let (m, h) = mean_ci(&d);
    assert_eq!(t, (m - h, m + h));
    assert!(t.0 < 0.0, "{t:?}");
    let hull = rlcpc::rl::study::stats::decisive_ci(boot, t);
    assert_eq!(hull, (t.0, boot.1.max(t.1)));
    assert_eq!(Side::of(hull), Side::Straddles);
}

#[test]
fn tuning_configurations_of_a_grid_and_of_a_random_draw() {
    use rlcpc::rl::study::Plan;
    let dir = tempfile::tempdir().unwrap();
    let plan = |tuning: &str| {
        let p = dir.path().join("p.toml");
        std::fs::write(
            &p,
            format!(
                "[study]\nname = \"t\"\nseeds = [1, 2]\n[[task]]\nname = \"a\"\nconfig = \"tmaze\"\nsteps = 10\n[[arm]]\nname = \"x\"\n[tuning]\ntasks = [\"a\"]\nseeds = [9]\n{tuning}\n[tuning.space]\n\"optim.lr\" = [0.001, 0.003]\n\"algo.ent_coef\" = [0.0, 0.01, 0.02]\n"
            ),
        )
        .unwrap();
        Plan::load(&p)
    };
    // The grid: every combination, keys in name order, the last varying fastest.
    let grid = plan("").unwrap().configurations();
    assert_eq!(grid.len(), 6);
    assert_eq!(grid[0], ["algo.ent_coef=0.0", "optim.lr=0.001"]);
    assert_eq!(grid[1], ["algo.ent_coef=0.0", "optim.lr=0.003"]);
    assert_eq!(grid[5], ["algo.ent_coef=0.02", "optim.lr=0.003"]);
    // A random draw: distinct combinations of the grid, the same for the same seed.
    let r = plan("method = \"random\"\nconfigs = 4\nseed = 5")
        .unwrap()
        .configurations();
    assert_eq!(r.len(), 4);
    for (i, c) in r.iter().enumerate() {
        assert!(grid.contains(c), "{c:?}");
        assert!(!r[..i].contains(c), "{c:?} drawn twice");
    }
    assert_eq!(
        plan("method = \"random\"\nconfigs = 4\nseed = 5")
            .unwrap()
            .configurations(),
        r
    );
    let e = plan("method = \"random\"\nconfigs = 7")
        .unwrap_err()
        .to_string();
    assert!(e.contains("tuning.configs") && e.contains("1..=6"), "{e}");
    let e = plan("method = \"random\"").unwrap_err().to_string();
    assert!(e.contains("tuning.configs"), "{e}");
}

#[test]
fn distinct_keys_make_draws_differ_where_every_arm_feels_them() {
    use rlcpc::rl::study::Plan;
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("p.toml");
    std::fs::write(
        &p,
        "[study]\nname = \"t\"\nseeds = [1, 2]\n[[task]]\nname = \"a\"\nconfig = \"tmaze\"\nsteps = 10\n[[arm]]\nname = \"x\"\n[tuning]\ntasks = [\"a\"]\nseeds = [9]\nmethod = \"random\"\nconfigs = 3\nseed = 1\ndistinct = [\"optim.lr\"]\n[tuning.space]\n\"optim.lr\" = [0.001, 0.002, 0.003]\n\"aux.weight\" = [0.01, 0.1, 1.0, 2.0]\n",
    )
    .unwrap();
    let c = Plan::load(&p).unwrap().configurations();
    // 3 of the 3 learning rates, each once, whatever weights came with them.
    let mut lrs: Vec<&String> = c.iter().map(|c| &c[1]).collect();
    lrs.sort();
    assert_eq!(lrs, ["optim.lr=0.001", "optim.lr=0.002", "optim.lr=0.003"]);
    // A fourth distinct learning rate does not exist: refused at load.
    let text = std::fs::read_to_string(&p)
        .unwrap()
        .replace("configs = 3", "configs = 4");
    std::fs::write(&p, text).unwrap();
    let e = Plan::load(&p).unwrap_err().to_string();
    assert!(e.contains("tuning.configs") && e.contains("1..=3"), "{e}");
}

#[test]
fn spearman_by_hand() {
    use rlcpc::rl::study::stats::spearman;
    assert_eq!(
        spearman(&[1.0, 2.0, 3.0, 4.0], &[10.0, 20.0, 25.0, 90.0]),
        Some(1.0)
    );
    assert_eq!(spearman(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]), Some(-1.0));
    // x ranks 1 2 3 4, y = [1, 3, 2, 4] ranks 1 3 2 4: d² = 0+1+1+0 = 2,
    // ρ = 1 − 6·2 / (4·15) = 0.8.
    let r = spearman(&[0.1, 0.2, 0.3, 0.4], &[1.0, 3.0, 2.0, 4.0]).unwrap();
    assert!((r - 0.8).abs() < 1e-12, "{r}");
    // Ties take their mean rank: x ranks 1.5 1.5 3, y 1 2 3: Pearson on ranks = √3/2.
    let r = spearman(&[5.0, 5.0, 7.0], &[1.0, 2.0, 3.0]).unwrap();
    assert!((r - 3f64.sqrt() / 2.0).abs() < 1e-12, "{r}");
    assert_eq!(spearman(&[1.0, 1.0, 1.0], &[1.0, 2.0, 3.0]), None);
    assert_eq!(spearman(&[1.0, 2.0], &[1.0, 2.0]), None);
}

#[test]
fn an_arm_with_a_base_may_change_a_tuned_key_of_the_base_choice() {
    use rlcpc::rl::study::Study;
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("p.toml");
    std::fs::write(
        &p,
        "[study]\nname = \"t\"\nseeds = [1, 2]\n[[task]]\nname = \"a\"\nconfig = \"tmaze\"\nsteps = 10\n[[arm]]\nname = \"x\"\nset = ['aux.kind=\"cpc\"']\n[[arm]]\nname = \"y\"\nbase = \"x\"\nset = [\"optim.lr=0.005\", \"aux.horizon=4\"]\n[tuning]\ntasks = [\"a\"]\nseeds = [9]\n[tuning.space]\n\"optim.lr\" = [0.001, 0.003]\n\"aux.weight\" = [0.2]\n",
    )
    .unwrap();
    let study = Study::open(&p, Some(dir.path().join("out")), false).unwrap();
    for ci in 0..2 {
        let x = study.config(0, 0, ci, Some(1)).unwrap();
        let y = study.config(0, 1, ci, Some(1)).unwrap();
        // The tuned arm runs at the configuration; the arm with a base keeps the base's
        // other tuned values and its own learning rate.
        assert_eq!(x.optim.lr, [0.001, 0.003][ci]);
        assert_eq!(y.optim.lr, 0.005);
        assert_eq!((x.aux.weight(), y.aux.weight()), (Some(0.2), Some(0.2)));
        let horizon = |c: &rlcpc::config::Config| c.aux.predict().unwrap().horizon;
        assert_ne!(horizon(&x), 4, "the preset's horizon");
        assert_eq!(horizon(&y), 4);
    }
}

/// A tuned key that an arm has no place for (`aux.weight` where `aux.kind = "none"`) is
/// left out of that arm's configurations, not refused; and a plan pinned when `[aux]`
/// held every head's keys still stands (same settings, written another way), while a
/// real change is still refused.
#[test]
fn tuned_keys_an_arm_lacks_are_left_out_and_older_pinned_plans_stand() {
    use rlcpc::rl::study::Study;
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("p.toml");
    let plan = |weight: f64| {
        format!("[study]\nname = \"t\"\nseeds = [1, 2]\n[[task]]\nname = \"a\"\nconfig = \"tmaze\"\nsteps = 10\n[[arm]]\nname = \"none\"\nset = ['aux.kind=\"none\"']\n[[arm]]\nname = \"cpc\"\nset = ['aux.kind=\"cpc\"', \"aux.weight={weight}\"]\n[tuning]\ntasks = [\"a\"]\nseeds = [9]\n[tuning.space]\n\"optim.lr\" = [0.001, 0.003]\n\"aux.weight\" = [0.2]\n")
    };
    std::fs::write(&p, plan(0.5)).unwrap();
    let out = dir.path().join("out");
    let study = Study::open(&p, Some(out.clone()), false).unwrap();
    let none = study.config(0, 0, 1, Some(1)).unwrap();
    assert_eq!((none.aux.weight(), none.optim.lr), (None, 0.003));
    // The arm's own set comes before the tuning: the tuned weight wins there.
    assert_eq!(
        study.config(0, 1, 1, Some(1)).unwrap().aux.weight(),
        Some(0.2)
    );
    assert_eq!(study.untuned_keys(0, 0).unwrap(), ["aux.weight"]);
    assert!(study
        .notes
        .iter()
        .any(|n| n.contains("arm 'none' has no aux.weight")));
    let hash = study.hash().to_string();
    // The plan as the older format pinned it: every head's keys in each [aux].
    let pinned = out.join("plan.json");
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&pinned).unwrap()).unwrap();
    for (_, v) in json["configs"].as_object_mut().unwrap() {
        let mut t: toml::Table = toml::from_str(v.as_str().unwrap()).unwrap();
        let aux = t.get_mut("aux").unwrap().as_table_mut().unwrap();
        for (k, x) in [
            ("weight", toml::Value::Float(0.1)),
            ("horizon", 30.into()),
            ("negatives", "both".into()),
            ("num_negatives", 20.into()),
            ("start_times", 8.into()),
            ("horizons", 0.into()),
            ("targets", "future".into()),
            ("cpca_loss", "binary".into()),
            ("curl_samples", 256.into()),
            ("curl_shift", 4.into()),
            ("curl_momentum", toml::Value::Float(0.95)),
        ] {
            aux.entry(k).or_insert(x);
        }
        *v = toml::to_string(&t).unwrap().into();
    }
    std::fs::write(&pinned, serde_json::to_string(&json).unwrap()).unwrap();
    let again = Study::open(&p, Some(out.clone()), false).unwrap();
    assert_eq!(again.hash(), hash);
    // A change of a setting is refused as before.
    std::fs::write(&p, plan(0.7)).unwrap();
    let e = Study::open(&p, Some(out), false).err().unwrap().to_string();
    assert!(e.contains("another plan"), "{e}");
}
