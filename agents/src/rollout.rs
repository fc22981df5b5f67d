//! Unrolls sent from actors to the learner, and parameter snapshots sent back.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// Parameters at one version, as plain host vectors: actors copy from these and never
/// touch the learner's tensors.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ParamSnapshot {
    /// Number of updates the learner had made when it took the snapshot.
    pub version: u64,
    /// `(name, shape, data)`, sorted by name.
    pub params: Vec<(String, Vec<usize>, Vec<f32>)>,
}

impl ParamSnapshot {
    /// `(shape, data)` of the parameter `name`, or `None` if the snapshot lacks it
    /// (binary search, so `params` must stay sorted by name).
    pub fn get(&self, name: &str) -> Option<(&[usize], &[f32])> {
        self.params
            .binary_search_by(|p| p.0.as_str().cmp(name))
            .ok()
            .map(|i| (self.params[i].1.as_slice(), self.params[i].2.as_slice()))
    }
}

pub type SharedSnapshot = Arc<ParamSnapshot>;

/// T steps of B environments, time-major (index `t * B + b`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Rollout {
    /// Which worker produced it (for a batch: the first one).
    pub worker: usize,
    /// Parameter version of the behaviour policy, per environment column `[B]`.
    pub policy_version: Vec<u64>,
    /// Unroll length T.
    pub t: usize,
    /// Number of environments B.
    pub b: usize,
    /// Floats per observation.
    pub obs_dim: usize,
    /// Observations `[T+1, B, obs_dim]`; row T is the bootstrap observation.
    pub obs: Vec<f32>,
    /// `[T+1, B]`: 1.0 where the observation starts an episode (state reset before it).
    pub first: Vec<f32>,
    /// Actions `[T, B]`.
    pub actions: Vec<u32>,
    /// Rewards r_t, `[T, B]`.
    pub rewards: Vec<f32>,
    /// `[T, B]`: whether the episode reached a terminal state at step t.
    pub terminated: Vec<bool>,
    /// `[T, B]`: whether the episode hit the time limit at step t.
    pub truncated: Vec<bool>,
    /// log μ(a_t | x_t) of the behaviour policy, `[T, B]`.
    pub behaviour_logp: Vec<f32>,
    /// V(final observation) under the behaviour policy where `truncated`, else 0; `[T, B]`.
    pub final_values: Vec<f32>,
    /// Recurrent state before step 0, `[B, S]`.
    pub init_state: Vec<f32>,
    /// Floats of recurrent state per environment, S (0 without a core).
    pub state_size: usize,
    /// Returns and lengths of the episodes that ended during the unroll.
    pub episodes: Vec<(f64, usize)>,
    /// Seconds the actor spent stepping its environments (of a batch: summed over the
    /// rollouts; the rest of collecting is the policy, sampling and waiting).
    pub env_secs: f64,
}

impl Rollout {
    /// Joins rollouts of equal T along the environment axis, in the order given.
    pub fn concat(parts: &[Rollout]) -> Rollout {
        let first = &parts[0];
        let (t, d, s) = (first.t, first.obs_dim, first.state_size);
        let b: usize = parts.iter().map(|p| p.b).sum();
        let mut out = Rollout {
            worker: first.worker,
            t,
            b,
            obs_dim: d,
            state_size: s,
            ..Default::default()
        };
        fn cat<T: Copy>(
            parts: &[Rollout],
            rows: usize,
            width: usize,
            f: impl Fn(&Rollout) -> &[T],
        ) -> Vec<T> {
            let b: usize = parts.iter().map(|p| p.b).sum();
            let mut v = Vec::with_capacity(rows * b * width);
            for r in 0..rows {
                for p in parts {
                    v.extend_from_slice(&f(p)[r * p.b * width..(r + 1) * p.b * width]);
                }
            }
            v
        }
        out.env_secs = parts.iter().map(|p| p.env_secs).sum();
        out.obs = cat(parts, t + 1, d, |p| &p.obs);
        out.first = cat(parts, t + 1, 1, |p| &p.first);
        out.actions = cat(parts, t, 1, |p| &p.actions);
        out.rewards = cat(parts, t, 1, |p| &p.rewards);
        out.terminated = cat(parts, t, 1, |p| &p.terminated);
        out.truncated = cat(parts, t, 1, |p| &p.truncated);
        out.behaviour_logp = cat(parts, t, 1, |p| &p.behaviour_logp);
        out.final_values = cat(parts, t, 1, |p| &p.final_values);
        out.init_state = cat(parts, 1, s, |p| &p.init_state);
        out.policy_version = cat(parts, 1, 1, |p| &p.policy_version);
        out.episodes = parts
            .iter()
            .flat_map(|p| p.episodes.iter().copied())
            .collect();
        out
    }

    /// Environment steps in the unroll, T·B.
    pub fn env_steps(&self) -> usize {
        self.t * self.b
    }
}
