//! The validity fixes behind `rlcpc study` (issue: seeds, targets, unrolls): CPC's
//! targets on POPGym are the observation's embedding without the previous action; an
//! unroll shorter than a task's memory is warned about; the shuffled-target ablation
//! draws positives from other sequences; `aux.targets` is checked. (Independent
//! environment streams per seed: `envs/tests/seeding.rs`.)

use candle_core::{Device, Tensor};
use rlcpc::config::Config;
use rlcpc::rl::train::{build_learner, memory_warnings, net_spec};
use rlcpc_agents::PolicyNetwork;

fn cfg(preset: &str, sets: &[&str]) -> Config {
    let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    Config::load(Some(std::path::Path::new(preset)), &sets).unwrap()
}

/// z and c of the candle network over two sequences of RepeatPrevious observations
/// that differ only in their previous-action block.
fn targets_and_contexts(sets: &[&str]) -> (Vec<f32>, Vec<f32>, usize) {
    let c = cfg("popgym", sets);
    let spec = net_spec(&c).unwrap();
    let learner = build_learner(&c, &spec, &Device::Cpu).unwrap();
    let d = spec.obs_dim();
    // RepeatPreviousEasy: 4 suits one-hot, 4 previous actions one-hot, the flag.
    assert_eq!(d, 9);
    let t = 3;
    let mut obs = vec![0f32; t * 2 * d];
    for step in 0..t {
        for seq in 0..2 {
            let o = &mut obs[(step * 2 + seq) * d..(step * 2 + seq + 1) * d];
            o[step % 4] = 1.0; // the same card in both sequences
            o[4 + (seq + step) % 4] = 1.0; // different previous actions
        }
    }
    let obs = Tensor::from_vec(obs, (t, 2, d), &Device::Cpu).unwrap();
    let first = Tensor::zeros((t, 2), candle_core::DType::F32, &Device::Cpu).unwrap();
    let state = Tensor::zeros(
        (2, spec.state_size()),
        candle_core::DType::F32,
        &Device::Cpu,
    )
    .unwrap();
    let out = learner.net.unroll(&obs, &first, &state).unwrap();
    let flat = |x: &Tensor| x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    (flat(&out.z), flat(&out.c), spec.feature_dim())
}

/// One learner update of `c` (the lean path) on an unroll of its environments.
fn one_update(c: &Config) -> rlcpc_agents::UpdateStats {
    let spec = net_spec(c).unwrap();
    let mut learner = build_learner(c, &spec, &Device::Cpu).unwrap();
    let envs = (0..c.env.num_envs)
        .map(|_| rlcpc_envs::make(&c.env).unwrap())
        .collect();
    let mut actor = rlcpc_agents::Actor::new(
        0,
        rlcpc_envs::VecEnv::new(envs).unwrap(),
        rlcpc::nn::actor_policy(&spec).unwrap(),
        c.algo.unroll,
        1,
        0,
    );
    actor.load(&learner.snapshot().unwrap()).unwrap();
    learner.update(&actor.collect().unwrap(), 0.0).unwrap()
}

#[test]
fn popgym_cpc_targets_hold_the_observation_not_the_previous_action() {
    let (z, c, dz) = targets_and_contexts(&[]);
    for step in 0..3 {
        let (a, b) = (
            &z[(step * 2) * dz..(step * 2 + 1) * dz],
            &z[(step * 2 + 1) * dz..(step * 2 + 2) * dz],
        );
        assert_eq!(a, b, "step {step}: z depends on the previous action");
    }
    // The core still reads the previous action.
    let dc = c.len() / 6;
    assert_ne!(
        &c[..dc],
        &c[dc..2 * dc],
        "the core no longer sees the previous action"
    );
    // The old wiring (everything through the encoder) fails the same check.
    let (z, _, dz) = targets_and_contexts(&["model.extra_inputs=\"encoder\""]);
    assert_ne!(&z[..dz], &z[dz..2 * dz]);
}

#[test]
fn environments_without_extra_inputs_keep_their_network() {
    for preset in ["cartpole", "cartpole-lstm-cpc", "tmaze", "cartpole-masked"] {
        let spec = net_spec(&cfg(preset, &[])).unwrap();
        assert_eq!(spec.extra_inputs, 0, "{preset}");
    }
    // Without a core there is nowhere else for them to go.
    let spec = net_spec(&cfg(
        "popgym",
        &["model.core=\"none\"", "aux.kind=\"none\""],
    ))
    .unwrap();
    assert_eq!(spec.extra_inputs, 0);
}

#[test]
fn an_unroll_shorter_than_the_memory_is_warned_about() {
    let w = memory_warnings(&cfg(
        "popgym",
        &["env.id=\"popgym/RepeatFirstEasy\"", "algo.unroll=32"],
    ))
    .unwrap();
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].contains("algo.unroll = 32") && w[0].contains("52"),
        "{}",
        w[0]
    );
    let w = memory_warnings(&cfg("tmaze", &["env.options.corridor_length=100"])).unwrap();
    assert!(w[0].contains("101"), "{w:?}");
    // The presets' unrolls cover their tasks (the popgym preset's every Easy card task).
    for preset in ["popgym", "tmaze", "cartpole-masked", "cartpole-lstm-cpc"] {
        assert!(
            memory_warnings(&cfg(preset, &[])).unwrap().is_empty(),
            "{preset}"
        );
    }
    for task in [
        "RepeatFirstEasy",
        "AutoencodeEasy",
        "CountRecallEasy",
        "RepeatPreviousEasy",
    ] {
        let id = format!("env.id=\"popgym/{task}\"");
        assert!(
            memory_warnings(&cfg("popgym", &[&id])).unwrap().is_empty(),
            "{task}"
        );
    }
}

#[test]
fn shuffled_targets_come_from_other_sequences() {
    use rand::SeedableRng;
    use rlcpc::config::Negatives;
    use rlcpc::contrastive::cpc::{sample_candidates, sample_pairs, CpcSampling};
    let (t, b) = (20, 4);
    let first = vec![0f32; t * b];
    let mut s = CpcSampling::new(5, Negatives::Both, 3);
    let mut rng = rlcpc_envs::SeededRng::seed_from_u64(3);
    let pairs = sample_pairs(&first, t, b, &s, &mut rng);
    let future = sample_candidates(&pairs, t, b, &s, &mut rng);
    for (p, c) in pairs.iter().zip(future.chunks(4)) {
        assert_eq!(c[0] as usize, (p.t + p.k) * b + p.b);
    }
    s.shuffled = true;
    let shuffled = sample_candidates(&pairs, t, b, &s, &mut rng);
    let mut times = std::collections::HashSet::new();
    for (p, c) in pairs.iter().zip(shuffled.chunks(4)) {
        let (pt, pb) = (c[0] as usize / b, c[0] as usize % b);
        assert_ne!(
            pb, p.b,
            "a shuffled positive from the anchor's own sequence"
        );
        assert!(
            c[1..].iter().all(|&n| n != c[0]),
            "a negative equal to the positive"
        );
        times.insert(pt);
    }
    assert!(times.len() > t / 2, "positives from few times: {times:?}");
}

#[test]
fn shuffled_targets_need_a_predicting_head() {
    let e = Config::load(
        Some(std::path::Path::new("popgym")),
        &[
            "aux.kind=\"none\"".into(),
            "aux.targets=\"shuffled\"".into(),
        ],
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("aux.targets"), "{e}");
    // And with CPC it trains (the lean path), logging the head's accuracy.
    let c = cfg(
        "popgym",
        &[
            "aux.targets=\"shuffled\"",
            "env.num_envs=4",
            "algo.unroll=32",
        ],
    );
    let stats = one_update(&c);
    assert!(stats.aux_loss.is_finite() && stats.aux_loss > 0.0);
}

#[test]
fn a_one_step_horizon_predicts_only_the_next_step() {
    // The `aux.horizon = 1` ablation: only z_{t+1} is predicted.
    let c = cfg(
        "popgym",
        &["aux.horizon=1", "env.num_envs=4", "algo.unroll=16"],
    );
    let stats = one_update(&c);
    let names: Vec<&str> = stats.aux_metrics.iter().map(|m| m.0.as_str()).collect();
    assert!(names.contains(&"cpc/acc_k1"), "{names:?}");
    assert!(
        !names.iter().any(|n| n.starts_with("cpc/acc_k2")),
        "{names:?}"
    );
}
