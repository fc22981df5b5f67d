//! Configuration of the algorithm, the optimiser and the actor threads.
//!
//! Each struct is a table of the TOML config (`[algo]`, `[optim]`, `[run]`); every field
//! has a written-out default, and `validate` names the bad key and value.

use serde::{Deserialize, Serialize};

use crate::AgentError;

fn bad(key: &'static str, value: impl std::fmt::Display, reason: &'static str) -> AgentError {
    AgentError::Config {
        key,
        value: value.to_string(),
        reason,
    }
}

/// The A2C loss and its returns (`[algo]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlgoConfig {
    /// Unroll length T: environment steps per actor per rollout (IMPALA: 100; A2C: 5).
    pub unroll: usize,
    /// Discount factor γ.
    pub gamma: f64,
    /// GAE λ (Schulman et al. 2016); 1.0 gives n-step returns over the unroll. Also the
    /// λ of V-trace's traces c_t = λ·min(c̄, π/μ).
    pub gae_lambda: f64,
    /// Weight of the value loss ½(target − V)².
    pub vf_coef: f64,
    /// Weight of the entropy bonus.
    pub ent_coef: f64,
    /// Clip gradients to this global L2 norm (0 disables clipping).
    pub max_grad_norm: f64,
    /// Normalise advantages over the batch (SB3's `normalize_advantage`).
    pub normalize_advantages: bool,
    /// Correct for policy lag with V-trace (always on in async mode; optional in sync,
    /// where it equals n-step returns up to λ).
    pub vtrace: bool,
    /// V-trace ρ̄: truncation of the importance weights in the TD errors.
    pub vtrace_rho_bar: f64,
    /// V-trace c̄: truncation of the importance weights in the traces.
    pub vtrace_c_bar: f64,
    /// Clip each reward to [−c, c] in the returns the learner fits (0: no clipping;
    /// IMPALA and DQN on Atari: 1). Episode returns are reported unclipped. Not written
    /// into configs at its default (0).
    #[serde(skip_serializing_if = "is_zero")]
    pub reward_clip: f64,
}

fn is_zero(v: &f64) -> bool {
    *v == 0.0
}

impl Default for AlgoConfig {
    fn default() -> Self {
        AlgoConfig {
            unroll: 8,
            gamma: 0.99,
            gae_lambda: 1.0,
            vf_coef: 0.5,
            ent_coef: 0.0,
            max_grad_norm: 0.5,
            normalize_advantages: false,
            vtrace: false,
            vtrace_rho_bar: 1.0,
            vtrace_c_bar: 1.0,
            reward_clip: 0.0,
        }
    }
}

impl AlgoConfig {
    /// Checks every field's range; the error names the first bad key and value.
    pub fn validate(&self) -> Result<(), AgentError> {
        if self.unroll == 0 {
            return Err(bad("algo.unroll", self.unroll, "must be at least 1"));
        }
        if !(self.gamma > 0.0 && self.gamma <= 1.0) {
            return Err(bad("algo.gamma", self.gamma, "must be in (0, 1]"));
        }
        if !(0.0..=1.0).contains(&self.gae_lambda) {
            return Err(bad("algo.gae_lambda", self.gae_lambda, "must be in [0, 1]"));
        }
        for (k, v) in [
            ("algo.vf_coef", self.vf_coef),
            ("algo.ent_coef", self.ent_coef),
            ("algo.max_grad_norm", self.max_grad_norm),
            ("algo.reward_clip", self.reward_clip),
        ] {
            if !(v >= 0.0 && v.is_finite()) {
                return Err(bad(k, v, "must be finite and non-negative"));
            }
        }
        for (k, v) in [
            ("algo.vtrace_rho_bar", self.vtrace_rho_bar),
            ("algo.vtrace_c_bar", self.vtrace_c_bar),
        ] {
            if !(v > 0.0 && v.is_finite()) {
                return Err(bad(k, v, "must be finite and positive"));
            }
        }
        Ok(())
    }
}

/// Which optimiser.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimKind {
    /// RMSProp in PyTorch's form (ε outside the square root, mean square starting at 0),
    /// as SB3's A2C uses it; IMPALA used TensorFlow's (ε inside the root, mean square
    /// starting at 1), which differs in the first updates.
    Rmsprop,
    /// Adam (Kingma & Ba 2015) without weight decay.
    Adam,
}

/// The optimiser (`[optim]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OptimConfig {
    /// `rmsprop` (A2C's and IMPALA's) or `adam`.
    pub kind: OptimKind,
    /// Learning rate (SB3 A2C: 7e-4).
    pub lr: f64,
    /// Anneal the learning rate linearly to 0 over the run (SB3's `lin_` schedules).
    pub lr_linear_decay: bool,
    /// RMSProp decay α of the squared-gradient average (IMPALA: 0.99).
    pub rmsprop_alpha: f64,
    /// RMSProp momentum (IMPALA: 0).
    pub rmsprop_momentum: f64,
    /// ε added to the denominator (SB3 A2C: 1e-5 for RMSProp; 1e-8 is Adam's usual).
    pub eps: f64,
    /// Adam β₁.
    pub adam_beta1: f64,
    /// Adam β₂.
    pub adam_beta2: f64,
}

impl Default for OptimConfig {
    fn default() -> Self {
        OptimConfig {
            kind: OptimKind::Rmsprop,
            lr: 7e-4,
            lr_linear_decay: false,
            rmsprop_alpha: 0.99,
            rmsprop_momentum: 0.0,
            eps: 1e-5,
            adam_beta1: 0.9,
            adam_beta2: 0.999,
        }
    }
}

impl OptimConfig {
    /// Checks every field's range; the error names the first bad key and value.
    pub fn validate(&self) -> Result<(), AgentError> {
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return Err(bad("optim.lr", self.lr, "must be finite and > 0"));
        }
        if self.eps.is_nan() || self.eps <= 0.0 {
            return Err(bad("optim.eps", self.eps, "must be > 0"));
        }
        for (k, v) in [
            ("optim.rmsprop_alpha", self.rmsprop_alpha),
            ("optim.rmsprop_momentum", self.rmsprop_momentum),
            ("optim.adam_beta1", self.adam_beta1),
            ("optim.adam_beta2", self.adam_beta2),
        ] {
            if !(0.0..1.0).contains(&v) {
                return Err(bad(k, v, "must be in [0, 1)"));
            }
        }
        Ok(())
    }
}

/// How actors and learner are scheduled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Workers wait for each update: on-policy, reproducible from the seed for a given
    /// worker count.
    Sync,
    /// Workers never wait; the learner corrects policy lag with V-trace.
    Async,
}

/// Actor threads (`[run]` keys that concern the runner).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunnerConfig {
    /// Sync or async scheduling.
    pub mode: Mode,
    /// Actor threads; the environments are split evenly between them.
    pub workers: usize,
    /// Async mode: rollouts per learner batch (0: one per worker).
    pub batch_rollouts: usize,
}
