//! The lean learner path (`run.learner = "lean"`: forward and backward in plain Rust)
//! against candle's autograd (`"candle"`) on real CartPole, T-maze, POPGym and Lab
//! batches: every loss term and every parameter's gradient, for MLP (tanh, relu), conv
//! (Lab RGB) and LSTM networks,
//! with and without the CPC and CPC|A heads, with episode starts inside the unroll and
//! a non-zero initial state; then several updates in a row, so that the optimiser's
//! state and the parameter copies stay in step.

use candle_core::Device;
use rlcpc::config::Config;
use rlcpc::nn::actor_policy;
use rlcpc::train::{build_learner, net_spec};
use rlcpc_agents::{Actor, Learner, Rollout};
use rlcpc_envs::VecEnv;

fn config(preset: Option<&str>, sets: &[&str], path: &str) -> Config {
    let mut v: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    v.push(format!("run.learner=\"{path}\""));
    Config::load(preset.map(std::path::Path::new), &v).unwrap()
}

/// Both learners of `cfg`'s network (same seed, so the same parameters) and an actor
/// whose batches they share.
fn setup(
    preset: Option<&str>,
    sets: &[&str],
) -> (
    Learner<rlcpc::nn::AgentNet>,
    Learner<rlcpc::nn::AgentNet>,
    Actor,
) {
    let lean_cfg = config(preset, sets, "lean");
    let candle_cfg = config(preset, sets, "candle");
    let spec = net_spec(&lean_cfg).unwrap();
    let lean = build_learner(&lean_cfg, &spec, &Device::Cpu).unwrap();
    let candle = build_learner(&candle_cfg, &spec, &Device::Cpu).unwrap();
    let envs = (0..lean_cfg.env.num_envs)
        .map(|_| rlcpc_envs::make(&lean_cfg.env).unwrap())
        .collect();
    let mut actor = Actor::new(
        0,
        VecEnv::new(envs).unwrap(),
        actor_policy(&spec).unwrap(),
        lean_cfg.algo.unroll,
        7,
        0,
    );
    actor.load(&lean.snapshot().unwrap()).unwrap();
    (lean, candle, actor)
}

fn close(a: f32, b: f32, scale: f32) -> bool {
    (a - b).abs() <= 2e-5 * scale + 1e-7
}

/// Loss terms and gradients of both paths on `batch`.
fn compare(
    what: &str,
    lean: &mut Learner<rlcpc::nn::AgentNet>,
    candle: &mut Learner<rlcpc::nn::AgentNet>,
    batch: &Rollout,
) {
    let gl = lean.gradients(batch).unwrap();
    let gc = candle.gradients(batch).unwrap();
    let names = |g: &[(String, Vec<f32>)]| g.iter().map(|x| x.0.clone()).collect::<Vec<_>>();
    assert_eq!(names(&gl), names(&gc), "{what}: parameters with a gradient");
    let mut nonzero = 0;
    for ((name, l), (_, c)) in gl.iter().zip(&gc) {
        let scale = c.iter().fold(0f32, |m, v| m.max(v.abs()));
        for (i, (x, y)) in l.iter().zip(c).enumerate() {
            assert!(
                close(*x, *y, scale),
                "{what}: d/d{name}[{i}] lean {x:e}, candle {y:e} (largest {scale:e})"
            );
            nonzero += (y.abs() > 1e-6) as usize;
        }
    }
    assert!(nonzero > 100, "{what}: only {nonzero} non-zero gradients");
}

fn check(what: &str, preset: Option<&str>, sets: &[&str], updates: usize) {
    let (mut lean, mut candle, mut actor) = setup(preset, sets);
    let mut starts = 0;
    for u in 0..updates {
        let mut batch = actor.collect().unwrap();
        if u == 0 && batch.state_size > 0 {
            // A state carried in from an earlier unroll.
            for (i, s) in batch.init_state.iter_mut().enumerate() {
                *s = ((i * 37 % 17) as f32 - 8.0) * 0.05;
            }
        }
        starts += batch.first[batch.b..].iter().filter(|&&f| f == 1.0).count();
        compare(
            &format!("{what}, update {u}"),
            &mut lean,
            &mut candle,
            &batch,
        );
        let sl = lean.update(&batch, 0.1).unwrap();
        let sc = candle.update(&batch, 0.1).unwrap();
        for (term, a, b) in [
            ("policy loss", sl.policy_loss, sc.policy_loss),
            ("value loss", sl.value_loss, sc.value_loss),
            ("entropy", sl.entropy, sc.entropy),
            ("aux loss", sl.aux_loss, sc.aux_loss),
            ("total loss", sl.total_loss, sc.total_loss),
            ("gradient norm", sl.grad_norm, sc.grad_norm),
        ] {
            assert!(
                (a - b).abs() <= 1e-4 * (1.0 + b.abs()),
                "{what}, update {u}: {term} lean {a}, candle {b}"
            );
        }
        // The parameters stay together after the optimiser's steps.
        let (pl, pc) = (lean.snapshot().unwrap(), candle.snapshot().unwrap());
        for ((name, _, a), (_, _, b)) in pl.params.iter().zip(&pc.params) {
            for (x, y) in a.iter().zip(b) {
                assert!(
                    (x - y).abs() < 1e-4,
                    "{what}, after update {u}: {name} lean {x}, candle {y}"
                );
            }
        }
        actor.load(&pl).unwrap();
    }
    assert!(starts > 0, "{what}: no episode started inside an unroll");
}

#[test]
fn mlp_tanh_matches_autograd() {
    // The default preset (4-64-64 tanh, RMSProp); 40-step unrolls so episodes end inside.
    check(
        "mlp tanh",
        None,
        &["algo.unroll=40", "algo.ent_coef=0.01"],
        3,
    );
}

#[test]
fn mlp_relu_with_cpc_and_adam_matches_autograd() {
    check(
        "mlp relu + cpc",
        None,
        &[
            "algo.unroll=40",
            "model.activation=\"relu\"",
            "model.mlp_hidden=[32, 48]",
            "aux.kind=\"cpc\"",
            "aux.horizon=4",
            "optim.kind=\"adam\"",
            "optim.lr=1e-3",
            "algo.normalize_advantages=true",
        ],
        3,
    );
}

#[test]
fn lstm_with_cpc_matches_autograd() {
    check(
        "lstm + cpc",
        Some("cartpole-lstm-cpc"),
        &["algo.ent_coef=0.01"],
        3,
    );
}

#[test]
fn lstm_vtrace_without_a_head_matches_autograd() {
    check(
        "lstm vtrace",
        Some("cartpole-lstm-cpc"),
        &["aux.kind=\"none\"", "algo.vtrace=true", "algo.unroll=24"],
        3,
    );
}

#[test]
fn popgym_lstm_with_cpca_matches_autograd() {
    check(
        "popgym lstm + cpca",
        Some("popgym"),
        &["aux.kind=\"cpca\"", "env.num_envs=4"],
        2,
    );
    check(
        "popgym lstm + cpca (infonce)",
        Some("popgym"),
        &[
            "aux.kind=\"cpca\"",
            "aux.cpca_loss=\"infonce\"",
            "env.num_envs=4",
            "algo.unroll=48",
        ],
        2,
    );
}

#[test]
fn popgym_extra_inputs_beside_the_encoder_match_autograd() {
    // The previous action and first-step flag join z at the LSTM's input (the default):
    // the gradient of W_ih's extra columns and of the encoder without them.
    let cfg = config(Some("popgym"), &["env.num_envs=4"], "lean");
    assert_eq!(net_spec(&cfg).unwrap().extra_inputs, 5);
    check(
        "popgym lstm + cpc, extra inputs at the core",
        Some("popgym"),
        &["env.num_envs=4", "algo.unroll=32"],
        2,
    );
    check(
        "popgym lstm + cpc, extra inputs through the encoder",
        Some("popgym"),
        &[
            "model.extra_inputs=\"encoder\"",
            "env.num_envs=4",
            "algo.unroll=32",
        ],
        2,
    );
}

#[test]
fn lean_is_refused_where_it_has_no_path() {
    // CURL trains the encoder on augmented views through candle's graph.
    let cfg = config(
        Some("lab-watermaze"),
        &[
            "env.num_envs=1",
            "run.workers=1",
            "env.options.obs=\"rgb\"",
            "model.encoder=\"conv\"",
            "aux.kind=\"curl\"",
        ],
        "lean",
    );
    let spec = net_spec(&cfg).unwrap();
    let err = build_learner(&cfg, &spec, &Device::Cpu)
        .err()
        .expect("CURL on the lean path")
        .to_string();
    assert!(
        err.contains("run.learner") && err.contains("no lean path"),
        "{err}"
    );
}

#[test]
fn lab_grid_sparse_inputs_with_cpc_match_autograd() {
    // One-hot grid observations take the first layer's sparse path.
    check(
        "lab grid + cpc",
        Some("lab-watermaze"),
        &[
            "env.num_envs=2",
            "run.workers=1",
            "model.mlp_hidden=[32]",
            "model.lstm_hidden=16",
            "algo.unroll=40",
            "env.max_episode_steps=30",
        ],
        2,
    );
}

/// Lab RGB frames through the conv encoder (11×15 and 4×6 feature maps: odd sizes and
/// strides), the LSTM and the CPC head, with episode starts inside the unroll.
const LAB_RGB: [&str; 9] = [
    "env.num_envs=2",
    "run.workers=1",
    "env.options.obs=\"rgb\"",
    "model.encoder=\"conv\"",
    "model.conv_fc=32",
    "model.lstm_hidden=16",
    "algo.unroll=20",
    "aux.horizon=8",
    "env.max_episode_steps=15",
];

#[test]
fn lab_rgb_conv_with_cpc_matches_autograd() {
    check("lab rgb conv + cpc", Some("lab-watermaze"), &LAB_RGB, 2);
}

#[test]
fn lab_rgb_conv_actor_matches_the_candle_actor() {
    use rlcpc_agents::ActorPolicy;
    let cfg = config(Some("lab-watermaze"), &LAB_RGB, "lean");
    let spec = net_spec(&cfg).unwrap();
    let learner = build_learner(&cfg, &spec, &Device::Cpu).unwrap();
    let snap = learner.snapshot().unwrap();
    let (b, s, a) = (3, spec.state_size(), spec.num_actions);
    let obs: Vec<f32> = (0..b * spec.obs_dim())
        .map(|i| (i * 37 % 256) as f32)
        .collect();
    let state0: Vec<f32> = (0..b * s)
        .map(|i| ((i * 13 % 7) as f32 - 3.0) * 0.2)
        .collect();
    let mut outs = Vec::new();
    let candle: Box<dyn ActorPolicy> = Box::new(rlcpc::nn::CandleActor::new(spec.clone()).unwrap());
    for mut p in [actor_policy(&spec).unwrap(), candle] {
        p.load(&snap).unwrap();
        let mut state = state0.clone();
        let (mut logits, mut values) = (vec![0.0; b * a], vec![0.0; b]);
        p.forward(&obs, &mut state, &mut logits, &mut values)
            .unwrap();
        outs.push((logits, values, state));
    }
    let (l, c) = (&outs[0], &outs[1]);
    for (x, y) in
        l.0.iter()
            .chain(&l.1)
            .chain(&l.2)
            .zip(c.0.iter().chain(&c.1).chain(&c.2))
    {
        assert!((x - y).abs() < 1e-5, "lean {x}, candle {y}");
    }
    assert_ne!(l.2, state0, "the LSTM state advanced");
}
