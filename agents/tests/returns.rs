//! Returns, GAE and V-trace against hand-computed values and a direct implementation of
//! the IMPALA paper's formula.

use rlcpc_agents::returns::{explained_variance, gae, vtrace, Trajectory};

fn close(a: &[f32], b: &[f32]) {
    assert_eq!(a.len(), b.len());
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() < 1e-5,
            "index {i}: {x} vs {y} (all: {a:?} vs {b:?})"
        );
    }
}

fn traj<'a>(
    rewards: &'a [f32],
    values: &'a [f32],
    terminated: &'a [bool],
    truncated: &'a [bool],
    final_values: &'a [f32],
) -> Trajectory<'a> {
    Trajectory {
        t: rewards.len(),
        b: 1,
        rewards,
        values,
        terminated,
        truncated,
        final_values,
        gamma: 0.9,
    }
}

const R: [f32; 3] = [1.0, 1.0, 1.0];
const V: [f32; 4] = [0.5, 0.4, 0.3, 0.2];
const NO: [bool; 3] = [false; 3];

#[test]
fn n_step_returns_bootstrap_from_last_value() {
    let t = gae(&traj(&R, &V, &NO, &NO, &[0.0; 3]), 1.0);
    // R2 = 1 + .9·.2, R1 = 1 + .9·R2, R0 = 1 + .9·R1.
    close(&t.value_targets, &[2.8558, 2.062, 1.18]);
    close(&t.advantages, &[2.3558, 1.662, 0.88]);
}

#[test]
fn termination_does_not_bootstrap_truncation_does() {
    let term = [false, true, false];
    let t = gae(&traj(&R, &V, &term, &NO, &[0.0; 3]), 1.0);
    close(&t.value_targets, &[1.9, 1.0, 1.18]);
    // Truncated at t = 1 with V(final obs) = 5: R1 = 1 + .9·5, R0 = 1 + .9·R1.
    let trunc = [false, true, false];
    let t = gae(&traj(&R, &V, &NO, &trunc, &[0.0, 5.0, 0.0]), 1.0);
    close(&t.value_targets, &[5.95, 5.5, 1.18]);
}

#[test]
fn gae_lambda_matches_hand_computation() {
    // δ = r + γV' − V: δ2 = 1 + .18 − .3 = .88, δ1 = 1 + .27 − .4 = .87, δ0 = 1 + .36 − .5 = .86
    // A2 = .88, A1 = .87 + .45·.88 = 1.266, A0 = .86 + .45·1.266 = 1.4297 (γλ = .45).
    let t = gae(&traj(&R, &V, &NO, &NO, &[0.0; 3]), 0.5);
    close(&t.advantages, &[1.4297, 1.266, 0.88]);
    // λ = 0: one-step TD errors.
    let t = gae(&traj(&R, &V, &NO, &NO, &[0.0; 3]), 0.0);
    close(&t.advantages, &[0.86, 0.87, 0.88]);
}

/// The paper's eq. (1) written as a sum, with per-step discounts γ·(1 − done):
/// v_s = V(x_s) + Σ_{t≥s} (Π_{i=s}^{t−1} γ_i c_i) δ_t, δ_t = ρ_t (r_t + γ·next_t − V(x_t)).
#[allow(clippy::needless_range_loop)] // indices follow the paper's sums
fn vtrace_direct(
    tr: &Trajectory,
    log_rhos: &[f32],
    rho_bar: f32,
    c_bar: f32,
) -> (Vec<f32>, Vec<f32>) {
    let n = tr.t;
    let rho: Vec<f32> = log_rhos.iter().map(|l| l.exp().min(rho_bar)).collect();
    let c: Vec<f32> = log_rhos.iter().map(|l| l.exp().min(c_bar)).collect();
    let done = |t: usize| tr.terminated[t] || tr.truncated[t];
    let next = |t: usize| {
        if tr.terminated[t] {
            0.0
        } else if tr.truncated[t] {
            tr.final_values[t]
        } else {
            tr.values[t + 1]
        }
    };
    let delta: Vec<f32> = (0..n)
        .map(|t| rho[t] * (tr.rewards[t] + tr.gamma * next(t) - tr.values[t]))
        .collect();
    let mut vs = vec![0.0; n + 1];
    vs[n] = tr.values[n];
    for s in 0..n {
        let mut sum = 0.0;
        let mut prod = 1.0;
        for t in s..n {
            sum += prod * delta[t];
            if done(t) {
                break;
            }
            prod *= tr.gamma * c[t];
        }
        vs[s] = tr.values[s] + sum;
    }
    let adv = (0..n)
        .map(|s| {
            let v_next = if tr.terminated[s] {
                0.0
            } else if tr.truncated[s] {
                tr.final_values[s]
            } else {
                vs[s + 1]
            };
            rho[s] * (tr.rewards[s] + tr.gamma * v_next - tr.values[s])
        })
        .collect();
    (vs[..n].to_vec(), adv)
}

#[test]
fn vtrace_matches_direct_formula() {
    // 6 steps, one termination and one truncation, importance ratios on both sides of 1.
    let rewards = [0.5, -1.0, 2.0, 0.0, 1.5, 0.3];
    let values = [0.1, 0.7, -0.3, 0.9, 0.2, -0.5, 0.4];
    let terminated = [false, false, true, false, false, false];
    let truncated = [false, false, false, false, true, false];
    let final_values = [0.0, 0.0, 0.0, 0.0, 3.0, 0.0];
    let log_rhos = [0.3, -0.7, 1.2, -0.1, 0.05, -2.0];
    let tr = traj(&rewards, &values, &terminated, &truncated, &final_values);
    for (rho_bar, c_bar) in [(1.0, 1.0), (2.0, 0.5), (100.0, 100.0)] {
        let got = vtrace(&tr, &log_rhos, rho_bar, c_bar, 1.0);
        let (vs, adv) = vtrace_direct(&tr, &log_rhos, rho_bar, c_bar);
        close(&got.value_targets, &vs);
        close(&got.advantages, &adv);
    }
}

#[test]
fn on_policy_vtrace_is_n_step_returns() {
    let term = [false, true, false];
    let tr = traj(&R, &V, &term, &NO, &[0.0; 3]);
    let v = vtrace(&tr, &[0.0; 3], 1.0, 1.0, 1.0);
    let g = gae(&tr, 1.0);
    close(&v.value_targets, &g.value_targets);
    close(&v.advantages, &g.advantages);
}

#[test]
fn explained_variance_bounds() {
    let y = [1.0, 2.0, 3.0, 4.0];
    assert!((explained_variance(&y, &y) - 1.0).abs() < 1e-12);
    assert!(explained_variance(&[2.5; 4], &y).abs() < 1e-12);
    assert!(explained_variance(&y, &[1.0; 4]).is_nan());
}
