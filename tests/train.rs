//! Training through the library: reproducibility, exact resume, learning, async mode,
//! and a NaN that stops the run without touching the last checkpoint.

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use candle_core::Device;
use rlcpc::checkpoint::Loaded;
use rlcpc::config::Config;
use rlcpc::rl::train::{saved_config, train, TrainOptions, TrainSummary};
use rlcpc::run_dir::CHECKPOINT;

fn config(preset: Option<&str>, overrides: &[&str]) -> Config {
    let o: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
    Config::load(preset.map(Path::new), &o).unwrap()
}

fn run(cfg: &Config, out: &Path, resume: bool) -> anyhow::Result<TrainSummary> {
    let opts = TrainOptions {
        out: out.to_path_buf(),
        resume,
        device: Device::Cpu,
        progress: false,
        write: true,
    };
    train(cfg, &opts, Arc::new(AtomicBool::new(false)))
}

/// Every tensor of a checkpoint (parameters and optimiser state) as host vectors.
fn tensors(dir: &Path) -> Vec<(String, Vec<f32>)> {
    let ck = Loaded::read(&dir.join(CHECKPOINT)).unwrap();
    let mut v: Vec<_> = ck
        .tensors
        .iter()
        .map(|(k, t)| {
            (
                k.clone(),
                t.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            )
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

#[test]
fn sync_runs_are_reproducible_and_resume_exactly() {
    let cases: [(Option<&str>, &[&str]); 3] = [
        (None, &["run.workers=2", "env.num_envs=8"]),
        // POPGym: environment streams from the seed, the previous action beside z, and
        // CPC|A on the host path.
        (
            Some("popgym"),
            &[
                "run.workers=2",
                "env.num_envs=4",
                "algo.unroll=8",
                "aux.kind=\"cpca\"",
                "aux.horizon=4",
            ],
        ),
        (
            Some("cartpole-lstm-cpc"),
            &[
                "run.workers=2",
                "env.num_envs=4",
                "algo.unroll=8",
                "aux.horizon=4",
                "aux.start_times=3",
            ],
        ),
    ];
    for (preset, extra) in cases {
        let tmp = tempfile::tempdir().unwrap();
        let mut o = vec![
            "run.target_return=0",
            "run.total_steps=1600",
            "run.log_every=5",
        ];
        o.extend_from_slice(extra);
        let full = config(preset, &o);
        let (a, b, c) = (
            tmp.path().join("a"),
            tmp.path().join("b"),
            tmp.path().join("c"),
        );
        let sa = run(&full, &a, false).unwrap();
        run(&full, &b, false).unwrap();
        assert_eq!(
            tensors(&a),
            tensors(&b),
            "{preset:?}: same seed, same weights"
        );

        // Half the budget, then resume to the full budget.
        let mut half = full.clone();
        half.run.total_steps = 800;
        run(&half, &c, false).unwrap();
        let resumed_cfg = saved_config(&c, &["run.total_steps=1600".into()]).unwrap();
        let sc = run(&resumed_cfg, &c, true).unwrap();
        assert_eq!(sc.counters.env_steps, sa.counters.env_steps);
        assert_eq!(sc.counters.episodes, sa.counters.episodes);
        assert_eq!(
            tensors(&a),
            tensors(&c),
            "{preset:?}: resumed run equals the uninterrupted one"
        );

        // A different seed gives different weights.
        let mut other = full.clone();
        other.run.seed = 2;
        run(&other, &tmp.path().join("d"), false).unwrap();
        assert_ne!(tensors(&a), tensors(&tmp.path().join("d")));
    }
}

#[test]
fn short_cartpole_run_improves_the_return() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(
        None,
        &[
            "run.total_steps=60000",
            "run.target_return=0",
            "run.log_every=10",
        ],
    );
    let s = run(&cfg, tmp.path(), false).unwrap();
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(tmp.path().join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let first = lines[0]["rollout/ep_rew_mean"].as_f64().unwrap();
    let last = s.mean_return.unwrap();
    // A random policy averages ~22; a loose bound that a broken learner would not pass.
    assert!(
        first < 60.0 && last > 150.0,
        "return went from {first} to {last}"
    );
    for key in [
        "train/entropy",
        "train/explained_variance",
        "time/fps",
        "train/policy_lag_mean",
    ] {
        assert!(
            lines.last().unwrap().get(key).is_some(),
            "metrics.jsonl lacks {key}"
        );
    }
    let events = std::fs::read_dir(tmp.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("events.out.tfevents")
        })
        .count();
    assert_eq!(events, 1, "one TensorBoard event file");
}

#[test]
fn async_mode_trains_with_vtrace_and_logs_lag() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(
        None,
        &[
            "run.mode=\"async\"",
            "algo.vtrace=true",
            "run.workers=2",
            "run.total_steps=40000",
            "run.target_return=0",
            "run.log_every=10",
        ],
    );
    let s = run(&cfg, tmp.path(), false).unwrap();
    assert!(s.counters.env_steps >= 40000 && s.counters.episodes > 0);
    let text = std::fs::read_to_string(tmp.path().join("metrics.jsonl")).unwrap();
    let lags: Vec<f64> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["train/policy_lag_mean"]
                .as_f64()
                .unwrap()
        })
        .collect();
    // Two workers that never wait: the learner is ahead of some behaviour policy.
    assert!(
        lags.iter().any(|&l| l > 0.0),
        "async mode never lagged: {lags:?}"
    );
    assert!(
        s.mean_return.unwrap() > 30.0,
        "async run learnt nothing: {:?}",
        s.mean_return
    );
}

#[test]
fn non_finite_loss_stops_and_keeps_the_last_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(None, &["run.total_steps=2000", "run.target_return=0"]);
    run(&cfg, tmp.path(), false).unwrap();
    let before = std::fs::read(tmp.path().join(CHECKPOINT)).unwrap();
    // A learning rate this large overflows the weights within a few updates.
    let bad = saved_config(
        tmp.path(),
        &[
            "optim.lr=1e30".into(),
            "run.total_steps=200000".into(),
            "run.checkpoint_every=1000".into(),
        ],
    )
    .unwrap();
    let err = run(&bad, tmp.path(), true).unwrap_err().to_string();
    assert!(
        err.contains("non-finite") && err.contains("at update"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(tmp.path().join(CHECKPOINT)).unwrap(),
        before,
        "checkpoint untouched"
    );
}

#[test]
fn lstm_agent_remembers_the_tmaze_cue() {
    // Corridor 4: episodes of 5 steps, two per unroll. A memoryless policy averages 0.
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(
        Some("tmaze"),
        &[
            "env.options.corridor_length=4",
            "algo.unroll=10",
            "aux.horizon=4",
            "run.total_steps=300000",
            "run.target_return=0.95",
        ],
    );
    let s = run(&cfg, tmp.path(), false).unwrap();
    assert!(
        s.solved.is_some(),
        "not solved in 300k steps: mean return {:?}",
        s.mean_return
    );
}
