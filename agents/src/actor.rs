//! An actor: steps its environments with its own copy of the policy and records unrolls.

use rand::{Rng, SeedableRng};
use rlcpc_envs::{SeededRng, VecEnv};
use serde::{Deserialize, Serialize};

use crate::network::ActorPolicy;
use crate::{AgentError, ParamSnapshot, Rollout};

/// One worker's environments, policy copy and recurrent state.
pub struct Actor {
    /// Worker index; recorded as [`Rollout::worker`].
    pub id: usize,
    venv: VecEnv,
    policy: Box<dyn ActorPolicy>,
    rng: SeededRng,
    unroll: usize,
    version: u64,
    /// Recurrent state `[B, S]` before the next step.
    state: Vec<f32>,
    /// Whether the next observation starts an episode, `[B]`.
    first: Vec<bool>,
    // Scratch buffers reused every step.
    logits: Vec<f32>,
    values: Vec<f32>,
    actions: Vec<usize>,
}

#[derive(Serialize, Deserialize)]
struct ActorState {
    venv: serde_json::Value,
    rng: SeededRng,
    state: Vec<f32>,
    first: Vec<bool>,
}

impl Actor {
    /// Builds an actor; environment `i` of worker `id` is first reset with
    /// [`rlcpc_envs::stream_seed`]`(seed, offset + i)`, where `offset` is this worker's
    /// first environment index among the run's.
    pub fn new(
        id: usize,
        mut venv: VecEnv,
        policy: Box<dyn ActorPolicy>,
        unroll: usize,
        seed: u64,
        env_offset: usize,
    ) -> Self {
        let b = venv.len();
        venv.reset(seed, env_offset);
        let s = policy.state_size();
        let a = policy.num_actions();
        Actor {
            id,
            venv,
            policy,
            rng: SeededRng::seed_from_u64(
                seed ^ (0x9E37_79B9_7F4A_7C15u64.wrapping_mul(id as u64 + 1)),
            ),
            unroll,
            // No parameters loaded yet: the first snapshot always loads.
            version: u64::MAX,
            state: vec![0.0; b * s],
            first: vec![true; b],
            logits: vec![0.0; b * a],
            values: vec![0.0; b],
            actions: vec![0; b],
        }
    }

    /// Takes the parameters of `snap` for the following unrolls.
    pub fn load(&mut self, snap: &ParamSnapshot) -> Result<(), AgentError> {
        self.policy.load(snap)?;
        self.version = snap.version;
        Ok(())
    }

    /// Version of the parameters loaded ([`ParamSnapshot::version`]); `u64::MAX` before
    /// the first [`Actor::load`].
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Stop requests of this actor's out-of-process environments: set, they bound every
    /// wait for an environment's reply (see [`rlcpc_envs::gymnasium::Hurry`]).
    pub fn hurry_handles(&self) -> Vec<rlcpc_envs::gymnasium::Hurry> {
        self.venv.hurry_handles()
    }

    /// Runs T steps in every environment and returns the unroll.
    pub fn collect(&mut self) -> Result<Rollout, AgentError> {
        let (t_len, b, d) = (self.unroll, self.venv.len(), self.venv.obs_dim());
        let s = self.policy.state_size();
        let a = self.policy.num_actions();
        let mut r = Rollout {
            worker: self.id,
            policy_version: vec![self.version; b],
            t: t_len,
            b,
            obs_dim: d,
            state_size: s,
            obs: Vec::with_capacity((t_len + 1) * b * d),
            first: Vec::with_capacity((t_len + 1) * b),
            actions: Vec::with_capacity(t_len * b),
            rewards: Vec::with_capacity(t_len * b),
            terminated: Vec::with_capacity(t_len * b),
            truncated: Vec::with_capacity(t_len * b),
            behaviour_logp: Vec::with_capacity(t_len * b),
            final_values: vec![0.0; t_len * b],
            init_state: Vec::new(),
            episodes: Vec::new(),
            env_secs: 0.0,
        };
        // The state before step 0; the learner zeroes it where first[0] is set.
        r.init_state = self.state.clone();
        for t in 0..t_len {
            r.obs.extend_from_slice(self.venv.obs());
            r.first.extend(self.first.iter().map(|&f| f as u8 as f32));
            // Act: one batched forward for all environments, then sample.
            self.reset_finished_states(s);
            self.policy.forward(
                self.venv.obs(),
                &mut self.state,
                &mut self.logits,
                &mut self.values,
            )?;
            for j in 0..b {
                let (act, logp) = sample_action(&self.logits[j * a..(j + 1) * a], &mut self.rng);
                self.actions[j] = act;
                r.actions.push(act as u32);
                r.behaviour_logp.push(logp);
            }
            // Step the environments (auto-reset) and record the outcome.
            let t_env = std::time::Instant::now();
            let step = self.venv.step(&self.actions)?;
            r.env_secs += t_env.elapsed().as_secs_f64();
            r.rewards.extend_from_slice(&step.rewards);
            r.terminated.extend_from_slice(&step.terminated);
            r.truncated.extend_from_slice(&step.truncated);
            for j in 0..b {
                self.first[j] = step.terminated[j] || step.truncated[j];
            }
            // Bootstrap value of truncated episodes: V(final obs) from the state after step t.
            let truncated: Vec<usize> = (0..b).filter(|&j| r.truncated[t * b + j]).collect();
            if !truncated.is_empty() {
                let mut obs = Vec::with_capacity(truncated.len() * d);
                let mut st = Vec::with_capacity(truncated.len() * s);
                for &j in &truncated {
                    obs.extend_from_slice(self.venv.final_obs(j));
                    st.extend_from_slice(&self.state[j * s..(j + 1) * s]);
                }
                let mut lg = vec![0.0; truncated.len() * a];
                let mut v = vec![0.0; truncated.len()];
                self.policy.forward(&obs, &mut st, &mut lg, &mut v)?;
                for (k, &j) in truncated.iter().enumerate() {
                    r.final_values[t * b + j] = v[k];
                }
            }
            r.episodes.extend(self.venv.drain_episodes());
        }
        r.obs.extend_from_slice(self.venv.obs());
        r.first.extend(self.first.iter().map(|&f| f as u8 as f32));
        Ok(r)
    }

    /// Zeroes the recurrent state of environments whose next observation starts an episode.
    fn reset_finished_states(&mut self, s: usize) {
        if s == 0 {
            return;
        }
        for (j, &f) in self.first.iter().enumerate() {
            if f {
                self.state[j * s..(j + 1) * s].fill(0.0);
            }
        }
    }

    /// Everything needed to continue exactly (environments, generator, recurrent state).
    pub fn save_state(&self) -> serde_json::Value {
        serde_json::to_value(ActorState {
            venv: self.venv.save_state(),
            rng: self.rng.clone(),
            state: self.state.clone(),
            first: self.first.clone(),
        })
        .expect("plain data serialises")
    }

    /// Restores state saved by [`Actor::save_state`]; the number of environments must match.
    pub fn load_state(&mut self, v: &serde_json::Value) -> Result<(), AgentError> {
        let s: ActorState =
            serde_json::from_value(v.clone()).map_err(|e| AgentError::State(e.to_string()))?;
        if s.state.len() != self.state.len() || s.first.len() != self.first.len() {
            return Err(AgentError::State(format!(
                "actor {} state has {} environments, expected {}",
                self.id,
                s.first.len(),
                self.first.len()
            )));
        }
        self.venv.load_state(&s.venv)?;
        self.rng = s.rng;
        self.state = s.state;
        self.first = s.first;
        Ok(())
    }
}

/// The index of the largest value (the first of equals; NaNs are never chosen; 0 when
/// every value is NaN or `v` is empty): the greedy action, a classifier's prediction, a
/// kNN vote.
pub fn argmax<T: PartialOrd + Copy>(v: &[T]) -> usize {
    let mut best: Option<(usize, T)> = None;
    for (i, &x) in v.iter().enumerate() {
        // Only NaN is not ordered against itself.
        let comparable = x.partial_cmp(&x).is_some();
        if comparable && best.is_none_or(|(_, b)| x > b) {
            best = Some((i, x));
        }
    }
    best.map_or(0, |(i, _)| i)
}

/// Samples from softmax(logits); returns the action and its log-probability.
pub fn sample_action(logits: &[f32], rng: &mut SeededRng) -> (usize, f32) {
    let max = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let sum: f32 = logits.iter().map(|l| (l - max).exp()).sum();
    let log_z = max + sum.ln();
    let u: f32 = rng.random::<f32>() * sum;
    let mut acc = 0.0;
    let mut chosen = logits.len() - 1;
    for (i, l) in logits.iter().enumerate() {
        acc += (l - max).exp();
        if u < acc {
            chosen = i;
            break;
        }
    }
    (chosen, logits[chosen] - log_z)
}

#[cfg(test)]
mod argmax_tests {
    use super::argmax;
    #[test]
    fn argmax_takes_the_first_largest_and_never_a_nan() {
        assert_eq!(argmax(&[0.5f32, 2.0, -1.0, 2.0]), 1);
        assert_eq!(argmax(&[f32::NAN, -3.0, f32::NAN, -2.0]), 3);
        assert_eq!(argmax(&[f64::NAN, f64::NAN]), 0);
        assert_eq!(argmax::<f64>(&[]), 0);
        assert_eq!(argmax(&[1.0f64, f64::INFINITY, 7.0]), 1);
    }
}
