//! The A2C update (`Learner::update`) against a hand-computed batch with B > 1: each loss
//! term from the paper's formulas in f64, and the parameter change against finite
//! differences of that direct loss, so that a flipped sign, a missing coefficient or a
//! wrong clipping scale fails.

mod common;

use candle_core::{Device, Tensor};
use rlcpc::config::Config;
use rlcpc::rl::train::{build_learner, net_spec};
use rlcpc_agents::{PolicyNetwork, Rollout};

const T: usize = 3;
const B: usize = 2;
const GAMMA: f64 = 0.9;
const LAMBDA: f64 = 0.8;
const VF: f64 = 0.7;
const ENT: f64 = 0.03;

fn config(max_grad_norm: f64, learner: &str) -> Config {
    // RMSProp with a huge ε: its first step is lr/ε · g, a plain gradient step, so the
    // parameter change shows the gradient itself (sign, coefficients and clipping).
    Config::load(
        None,
        &[
            "model.mlp_hidden=[5]".into(),
            format!("algo.unroll={T}"),
            format!("algo.gamma={GAMMA:?}"),
            format!("algo.gae_lambda={LAMBDA:?}"),
            format!("algo.vf_coef={VF:?}"),
            format!("algo.ent_coef={ENT:?}"),
            format!("algo.max_grad_norm={max_grad_norm:?}"),
            "algo.normalize_advantages=false".into(),
            "optim.kind=\"rmsprop\"".into(),
            "optim.lr=1000.0".into(),
            "optim.eps=1000000.0".into(),
            "optim.lr_linear_decay=false".into(),
            format!("run.learner=\"{learner}\""),
        ],
    )
    .unwrap()
}

/// A fixed batch: column 0 terminates at t = 1, column 1 is truncated at t = 2 with a
/// bootstrap value of its final observation.
fn batch() -> Rollout {
    let obs: Vec<f32> = (0..(T + 1) * B * 4)
        .map(|i| ((i * 7919 % 23) as f32 / 11.0) - 1.0)
        .collect();
    let mut first = vec![0f32; (T + 1) * B];
    first[2 * B] = 1.0; // column 0 restarts after its termination
    Rollout {
        worker: 0,
        policy_version: vec![0; B],
        t: T,
        b: B,
        obs_dim: 4,
        obs,
        first,
        actions: vec![0, 1, 1, 1, 0, 0],
        rewards: vec![1.0, 0.5, -1.0, 2.0, 0.25, 1.0],
        terminated: vec![false, false, true, false, false, false],
        truncated: vec![false, false, false, false, false, true],
        behaviour_logp: vec![0.0; T * B],
        final_values: vec![0.0, 0.0, 0.0, 0.0, 0.0, 0.6],
        init_state: vec![],
        state_size: 0,
        episodes: vec![],
        env_secs: 0.0,
    }
}

/// (logits [T+1][B][A], values [T+1][B]) of the learner's network on the batch.
fn forward(net: &impl PolicyNetwork, r: &Rollout) -> (Vec<Vec<Vec<f64>>>, Vec<Vec<f64>>) {
    let dev = Device::Cpu;
    let obs = Tensor::from_slice(&r.obs, (T + 1, B, 4), &dev).unwrap();
    let first = Tensor::from_slice(&r.first, (T + 1, B), &dev).unwrap();
    let state = Tensor::zeros((B, 0), candle_core::DType::F32, &dev).unwrap();
    let out = net.unroll(&obs, &first, &state).unwrap();
    let l = out.logits.to_vec3::<f32>().unwrap();
    let v = out.values.to_vec2::<f32>().unwrap();
    (
        l.iter()
            .map(|t| {
                t.iter()
                    .map(|b| b.iter().map(|&x| x as f64).collect())
                    .collect()
            })
            .collect(),
        v.iter()
            .map(|t| t.iter().map(|&x| x as f64).collect())
            .collect(),
    )
}

/// GAE(λ) by its definition (Schulman et al. 2016): δ_t = r_t + γ V_next − V_t with
/// V_next = 0 after a termination and V(final observation) after a truncation, the
/// recursion cut at both. Returns (advantages, value targets), each [T][B].
fn gae(r: &Rollout, v: &[Vec<f64>]) -> (Vec<Vec<f64>>, Vec<Vec<f64>>) {
    let mut adv = vec![vec![0f64; B]; T];
    for b in 0..B {
        let mut next = 0.0;
        for t in (0..T).rev() {
            let i = t * B + b;
            let done = r.terminated[i] || r.truncated[i];
            let v_next = if r.terminated[i] {
                0.0
            } else if r.truncated[i] {
                r.final_values[i] as f64
            } else {
                v[t + 1][b]
            };
            let delta = r.rewards[i] as f64 + GAMMA * v_next - v[t][b];
            next = delta + if done { 0.0 } else { GAMMA * LAMBDA * next };
            adv[t][b] = next;
        }
    }
    let targets = (0..T)
        .map(|t| (0..B).map(|b| adv[t][b] + v[t][b]).collect())
        .collect();
    (adv, targets)
}

/// The A2C loss from the network's outputs with advantages and targets held fixed:
/// (policy loss, value loss, entropy, total) = (−mean A log π(a), ½ mean (G − V)²,
/// mean H(π), pg + vf·value − ent·H).
fn direct_loss(
    r: &Rollout,
    logits: &[Vec<Vec<f64>>],
    v: &[Vec<f64>],
    adv: &[Vec<f64>],
    targets: &[Vec<f64>],
) -> (f64, f64, f64, f64) {
    let (mut pg, mut vl, mut h) = (0.0, 0.0, 0.0);
    for t in 0..T {
        for b in 0..B {
            let l = &logits[t][b];
            let m = l.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let lse = m + l.iter().map(|x| (x - m).exp()).sum::<f64>().ln();
            let logp: Vec<f64> = l.iter().map(|x| x - lse).collect();
            pg -= adv[t][b] * logp[r.actions[t * B + b] as usize];
            vl += 0.5 * (targets[t][b] - v[t][b]).powi(2);
            h -= logp.iter().map(|lp| lp.exp() * lp).sum::<f64>();
        }
    }
    let n = (T * B) as f64;
    let (pg, vl, h) = (pg / n, vl / n, h / n);
    (pg, vl, h, pg + VF * vl - ENT * h)
}

fn params(net: &impl PolicyNetwork) -> Vec<(String, Vec<f32>)> {
    net.vars()
        .into_iter()
        .map(|(n, v)| (n, v.as_tensor().flatten_all().unwrap().to_vec1().unwrap()))
        .collect()
}

/// Central finite differences of the direct total loss in every parameter.
fn numeric_gradient(
    cfg: &Config,
    r: &Rollout,
    adv: &[Vec<f64>],
    targets: &[Vec<f64>],
) -> Vec<(String, Vec<f64>)> {
    let spec = net_spec(cfg).unwrap();
    let learner = build_learner(cfg, &spec, &Device::Cpu).unwrap();
    let eps = 1e-2f32;
    let mut out = Vec::new();
    for (name, var) in learner.net.vars() {
        let base = var
            .as_tensor()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let dims = var.dims().to_vec();
        let g = common::numerical_grad(&mut base.clone(), eps, |p| {
            var.set(&Tensor::from_slice(p, dims.clone(), &Device::Cpu).unwrap())
                .unwrap();
            let (l, v) = forward(&learner.net, r);
            direct_loss(r, &l, &v, adv, targets).3
        });
        var.set(&Tensor::from_vec(base, dims, &Device::Cpu).unwrap())
            .unwrap();
        out.push((name, g));
    }
    out
}

fn check_update(max_grad_norm: f64) {
    // Both implementations of the learner: the lean path and candle's autograd.
    for path in ["lean", "candle"] {
        check_update_on(max_grad_norm, path);
    }
}

fn check_update_on(max_grad_norm: f64, path: &str) {
    let cfg = config(max_grad_norm, path);
    let spec = net_spec(&cfg).unwrap();
    let mut learner = build_learner(&cfg, &spec, &Device::Cpu).unwrap();
    let r = batch();
    let (logits, v) = forward(&learner.net, &r);
    let (adv, targets) = gae(&r, &v);
    let (pg, vl, h, total) = direct_loss(&r, &logits, &v, &adv, &targets);
    let grad = numeric_gradient(&cfg, &r, &adv, &targets);
    let norm = grad
        .iter()
        .flat_map(|(_, g)| g.iter())
        .map(|x| x * x)
        .sum::<f64>()
        .sqrt();
    let before = params(&learner.net);
    let stats = learner.update(&r, 0.0).unwrap();

    for (what, got, want) in [
        ("policy loss", stats.policy_loss, pg),
        ("value loss", stats.value_loss, vl),
        ("entropy", stats.entropy, h),
        ("total loss", stats.total_loss, total),
        ("gradient norm", stats.grad_norm, norm),
    ] {
        assert!(
            (got - want).abs() < 2e-3 * (1.0 + want.abs()),
            "{path} {what}: learner {got}, direct formula {want}"
        );
    }
    // One RMSProp step with ε ≫ |g|: Δθ = −(lr/ε)·s·g/(1 + s|g|/ε)… ≈ −(lr/ε)·s·g, with s
    // the clipping scale max/(‖g‖+1e-6) when ‖g‖ > max, else 1.
    let scale = if norm > max_grad_norm {
        max_grad_norm / (norm + 1e-6)
    } else {
        1.0
    };
    let step = 1000.0 / 1_000_000.0;
    let after = params(&learner.net);
    let mut checked = 0;
    for (((name, b), (_, a)), (_, g)) in before.iter().zip(&after).zip(&grad) {
        for i in 0..b.len() {
            let moved = (a[i] - b[i]) as f64;
            let want = -step * scale * g[i];
            assert!(
                (moved - want).abs() < 1e-3 * step * scale * norm.max(1.0) + 1e-7,
                "{name}[{i}]: moved {moved:e}, expected {want:e} (gradient {:e}, clip scale {scale})",
                g[i]
            );
            checked += (g[i].abs() > 1e-3) as usize;
        }
    }
    assert!(
        checked > 10,
        "too few parameters with a gradient: {checked}"
    );
}

#[test]
fn a2c_update_follows_the_formulas_unclipped() {
    check_update(1e9);
}

#[test]
fn a2c_update_clips_by_the_global_norm() {
    // Far below the gradient's norm: every parameter moves by the same factor less.
    check_update(0.01);
}

/// The auxiliary term enters the total with its weight: total = a2c + w·aux.
#[test]
fn aux_loss_enters_the_total_with_its_weight() {
    for w in [0.0, 0.5, 2.0] {
        let cfg = Config::load(
            Some(std::path::Path::new("cartpole-lstm-cpc")),
            &[
                "aux.horizon=2".into(),
                format!("algo.unroll={T}"),
                format!("aux.weight={w:?}"),
                format!("algo.vf_coef={VF:?}"),
                format!("algo.ent_coef={ENT:?}"),
                "env.num_envs=2".into(),
            ],
        )
        .unwrap();
        let spec = net_spec(&cfg).unwrap();
        let mut learner = build_learner(&cfg, &spec, &Device::Cpu).unwrap();
        let mut r = batch();
        r.first = vec![0.0; (T + 1) * B];
        r.state_size = spec.state_size();
        r.init_state = vec![0.0; B * spec.state_size()];
        let s = learner.update(&r, 0.0).unwrap();
        assert!(s.aux_loss > 0.1, "InfoNCE of a fresh head: {}", s.aux_loss);
        let want = s.policy_loss + VF * s.value_loss - ENT * s.entropy + w * s.aux_loss;
        assert!(
            (s.total_loss - want).abs() < 1e-4 * (1.0 + want.abs()),
            "weight {w:?}: total {} vs {want}",
            s.total_loss
        );
    }
}

/// `algo.reward_clip = c` fits the returns of rewards clipped to [−c, c]: the same update
/// as the unclipped learner on the clipped batch, on both paths, and another than the
/// unclipped learner on the batch itself (its rewards reach ±2).
#[test]
fn reward_clip_clips_the_rewards_the_learner_fits() {
    for path in ["lean", "candle"] {
        let stats = |clip: f64, rewards: Vec<f32>| {
            let mut cfg = config(1e9, path);
            cfg.algo.reward_clip = clip;
            cfg.validate().unwrap();
            let spec = net_spec(&cfg).unwrap();
            let mut learner = build_learner(&cfg, &spec, &Device::Cpu).unwrap();
            let mut r = batch();
            r.rewards = rewards;
            let s = learner.update(&r, 0.0).unwrap();
            (s.policy_loss, s.value_loss, s.total_loss)
        };
        let raw = batch().rewards;
        let clipped: Vec<f32> = raw.iter().map(|r| r.clamp(-0.5, 0.5)).collect();
        assert_ne!(raw, clipped);
        assert_eq!(stats(0.5, raw.clone()), stats(0.0, clipped), "{path}");
        assert_ne!(stats(0.5, raw.clone()), stats(0.0, raw), "{path}");
    }
    let mut cfg = config(1e9, "lean");
    cfg.algo.reward_clip = f64::NAN;
    let e = cfg.validate().unwrap_err().to_string();
    assert!(e.contains("algo.reward_clip"), "{e}");
}
