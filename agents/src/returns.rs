//! Return targets and advantages over an unroll, on plain time-major slices `[T, B]`.
//!
//! Both estimators share the one-step target of each step,
//! `r_t + γ·next`, where `next` is V(x_{t+1}) inside an episode, 0 after termination,
//! and V(final observation) after truncation (the time limit is not part of the MDP).
//! Recursions never cross an episode boundary.

/// Inputs common to both estimators; slices are `[T, B]` unless noted.
pub struct Trajectory<'a> {
    /// Unroll length T.
    pub t: usize,
    /// Number of environments B.
    pub b: usize,
    /// Rewards r_t.
    pub rewards: &'a [f32],
    /// V(x_t) for t = 0..=T, `[T+1, B]` (row T bootstraps the unroll).
    pub values: &'a [f32],
    /// Whether the episode reached a terminal state at step t (next value 0).
    pub terminated: &'a [bool],
    /// Whether the episode hit the time limit at step t (bootstrapped from `final_values`).
    pub truncated: &'a [bool],
    /// V(final observation) where `truncated`.
    pub final_values: &'a [f32],
    /// Discount factor γ.
    pub gamma: f32,
}

impl Trajectory<'_> {
    /// `(one-step target r_t + γ·next, whether the episode continues after t)`.
    fn step(&self, i: usize) -> (f32, bool) {
        let next = if self.terminated[i] {
            0.0
        } else if self.truncated[i] {
            self.final_values[i]
        } else {
            self.values[i + self.b]
        };
        (
            self.rewards[i] + self.gamma * next,
            !(self.terminated[i] || self.truncated[i]),
        )
    }
}

/// Advantages and value targets, `[T, B]` each.
#[derive(Debug, Clone, PartialEq)]
pub struct Targets {
    /// Policy-gradient advantages: GAE's A_t, or V-trace's ρ_s·(r_s + γ·v_{s+1} − V(x_s)).
    pub advantages: Vec<f32>,
    /// Regression targets of V(x_t): GAE's A_t + V(x_t), or V-trace's v_s.
    pub value_targets: Vec<f32>,
}

/// GAE(λ) (Schulman et al. 2016, eq. 16): A_t = δ_t + γλ·A_{t+1} within an episode,
/// δ_t = r_t + γ·next − V(x_t); value targets A_t + V(x_t). λ = 1 gives n-step returns.
pub fn gae(tr: &Trajectory, lambda: f32) -> Targets {
    let (t_len, b) = (tr.t, tr.b);
    let mut adv = vec![0.0f32; t_len * b];
    let mut ret = vec![0.0f32; t_len * b];
    for j in 0..b {
        let mut next_adv = 0.0f32;
        for t in (0..t_len).rev() {
            let i = t * b + j;
            let (target, cont) = tr.step(i);
            let delta = target - tr.values[i];
            let a = delta
                + if cont {
                    tr.gamma * lambda * next_adv
                } else {
                    0.0
                };
            adv[i] = a;
            ret[i] = a + tr.values[i];
            next_adv = a;
        }
    }
    Targets {
        advantages: adv,
        value_targets: ret,
    }
}

/// V-trace (Espeholt et al. 2018, eq. 1 and §4.2) for off-policy actor–critic.
///
/// With ρ_t = min(ρ̄, π/μ) and c_t = λ·min(c̄, π/μ):
/// v_s − V(x_s) = δ_s + γ·c_s·(v_{s+1} − V(x_{s+1})), δ_s = ρ_s·(r_s + γ·next − V(x_s));
/// the policy-gradient advantage is ρ_s·(r_s + γ·v_{s+1} − V(x_s)).
/// `log_rhos` are log π(a_t|x_t) − log μ(a_t|x_t), `[T, B]`.
pub fn vtrace(tr: &Trajectory, log_rhos: &[f32], rho_bar: f32, c_bar: f32, lambda: f32) -> Targets {
    let (t_len, b) = (tr.t, tr.b);
    let mut adv = vec![0.0f32; t_len * b];
    let mut vs = vec![0.0f32; t_len * b];
    for j in 0..b {
        // v_{t+1} − V(x_{t+1}) of the step after, 0 beyond the unroll.
        let mut next_diff = 0.0f32;
        for t in (0..t_len).rev() {
            let i = t * b + j;
            let ratio = log_rhos[i].exp();
            let rho = ratio.min(rho_bar);
            let c = lambda * ratio.min(c_bar);
            let (target, cont) = tr.step(i);
            let delta = rho * (target - tr.values[i]);
            let diff = delta + if cont { tr.gamma * c * next_diff } else { 0.0 };
            vs[i] = tr.values[i] + diff;
            // q_t = r_t + γ·v_{t+1}: v_{t+1} = V(x_{t+1}) + its correction inside an episode.
            let q = target + if cont { tr.gamma * next_diff } else { 0.0 };
            adv[i] = rho * (q - tr.values[i]);
            next_diff = diff;
        }
    }
    Targets {
        advantages: adv,
        value_targets: vs,
    }
}

/// Fraction of the variance of `targets` that `values` explain: 1 − Var(y − v)/Var(y)
/// (SB3's `explained_variance`; NaN when the targets are constant).
pub fn explained_variance(values: &[f32], targets: &[f32]) -> f64 {
    let n = targets.len() as f64;
    let mean = |f: &dyn Fn(usize) -> f64| (0..targets.len()).map(f).sum::<f64>() / n;
    let my = mean(&|i| targets[i] as f64);
    let vy = mean(&|i| (targets[i] as f64 - my).powi(2));
    let md = mean(&|i| (targets[i] - values[i]) as f64);
    let vd = mean(&|i| ((targets[i] - values[i]) as f64 - md).powi(2));
    if vy == 0.0 {
        f64::NAN
    } else {
        1.0 - vd / vy
    }
}
