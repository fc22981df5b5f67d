//! A slice of environments stepped together, with same-step auto-reset.

use serde::{Deserialize, Serialize};

use crate::env::{Env, EnvError, Space};
use crate::hurry::Hurry;

/// Environments stepped as one batch by something else (a `gymnasium.vector` env in a
/// Python process), with the same semantics as [`VecEnv`]'s own loop: same-step
/// auto-reset, the finished episode's last observation kept.
pub trait BatchEnv: Send {
    /// The environments' id.
    fn id(&self) -> &str;
    /// How many environments.
    fn len(&self) -> usize;
    /// Whether there are none.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The space of one environment's observations.
    fn observation_space(&self) -> Space;
    /// The space of one environment's actions.
    fn action_space(&self) -> Space;
    /// Resets environment `i` with `seeds[i]` (`None`: its own generator) and writes
    /// the observations, `[n, obs_dim]`. A failure is reported by the next step.
    fn reset(&mut self, seeds: &[Option<u64>], obs: &mut [f32]);
    /// Steps environment `i` with `actions[i]`; writes each reward and flag to `out`,
    /// each observation to `obs` (the next episode's first where one ended) and, where
    /// an episode ended, its last observation to that row of `final_obs`. An error names
    /// its environment by its index in this batch where known.
    fn step(
        &mut self,
        actions: &[usize],
        obs: &mut [f32],
        final_obs: &mut [f32],
        out: &mut VecStep,
    ) -> Result<(), EnvError>;
    /// The stop request of the process that steps them.
    fn hurry(&self) -> Option<Hurry>;
}

/// The environments of a [`VecEnv`]: each its own, or one batch.
enum Members {
    Each(Vec<Box<dyn Env>>),
    Batch(Box<dyn BatchEnv>),
}

/// Per-environment results of one [`VecEnv::step`], reused between steps.
#[derive(Debug, Clone, Default)]
pub struct VecStep {
    /// Reward of each environment.
    pub rewards: Vec<f32>,
    /// Whether each environment's episode terminated (it has been reset).
    pub terminated: Vec<bool>,
    /// Whether each environment's episode was truncated (it has been reset).
    pub truncated: Vec<bool>,
}

/// Environments stepped in lock-step.
///
/// When an episode ends, the environment is reset in the same step: [`VecEnv::obs`] then
/// holds the new episode's first observation and [`VecEnv::final_obs`] the last one of
/// the finished episode (what a learner bootstraps from at truncation).
pub struct VecEnv {
    envs: Members,
    obs_dim: usize,
    obs: Vec<f32>,
    final_obs: Vec<f32>,
    step: VecStep,
    ep_return: Vec<f64>,
    ep_length: Vec<usize>,
    finished: Vec<(f64, usize)>,
    /// Which environments' steps were started elsewhere ([`Env::start_step`]).
    started: Vec<bool>,
    /// The index of the first environment among the run's (for error messages).
    first: usize,
}

#[derive(Serialize, Deserialize)]
struct VecEnvState {
    envs: Vec<serde_json::Value>,
    obs: Vec<f32>,
    ep_return: Vec<f64>,
    ep_length: Vec<usize>,
}

impl VecEnv {
    /// Wraps `envs`, which must share their spaces.
    pub fn new(envs: Vec<Box<dyn Env>>) -> Result<Self, EnvError> {
        let first = envs.first().ok_or_else(|| EnvError::InvalidOption {
            id: "VecEnv".into(),
            key: "num_envs".into(),
            reason: "needs at least one environment".into(),
        })?;
        let space = first.observation_space();
        if let Some(e) = envs.iter().find(|e| e.observation_space() != space) {
            return Err(EnvError::InvalidOption {
                id: e.id().into(),
                key: "observation_space".into(),
                reason: "differs between the environments of one VecEnv".into(),
            });
        }
        let n = envs.len();
        Ok(Self::with(Members::Each(envs), n, space.flat_dim()))
    }

    /// Wraps a batch stepped elsewhere ([`BatchEnv`]).
    pub fn batch(envs: Box<dyn BatchEnv>) -> Result<Self, EnvError> {
        let n = envs.len();
        if envs.is_empty() {
            return Err(EnvError::InvalidOption {
                id: envs.id().into(),
                key: "num_envs".into(),
                reason: "needs at least one environment".into(),
            });
        }
        let dim = envs.observation_space().flat_dim();
        Ok(Self::with(Members::Batch(envs), n, dim))
    }

    fn with(envs: Members, n: usize, obs_dim: usize) -> Self {
        VecEnv {
            envs,
            obs_dim,
            obs: vec![0.0; n * obs_dim],
            final_obs: vec![0.0; n * obs_dim],
            step: VecStep {
                rewards: vec![0.0; n],
                terminated: vec![false; n],
                truncated: vec![false; n],
            },
            ep_return: vec![0.0; n],
            ep_length: vec![0; n],
            finished: Vec::new(),
            started: vec![false; n],
            first: 0,
        }
    }

    /// Number of environments.
    pub fn len(&self) -> usize {
        self.ep_length.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Scalars in one observation.
    pub fn obs_dim(&self) -> usize {
        self.obs_dim
    }

    /// The environments' observation space (the first one's).
    pub fn observation_space(&self) -> Space {
        match &self.envs {
            Members::Each(envs) => envs[0].observation_space(),
            Members::Batch(b) => b.observation_space(),
        }
    }

    /// The environments' action space (the first one's).
    pub fn action_space(&self) -> Space {
        match &self.envs {
            Members::Each(envs) => envs[0].action_space(),
            Members::Batch(b) => b.action_space(),
        }
    }

    /// Resets environment `i` with [`crate::stream_seed`]`(seed, first + i)`: `first` is
    /// the index of this vector's first environment among all of the run's, so that
    /// every environment of a run, and of runs with other seeds, has its own stream.
    pub fn reset(&mut self, seed: u64, first: usize) {
        self.first = first;
        let seed = |i: usize| crate::stream_seed(seed, (first + i) as u64);
        match &mut self.envs {
            Members::Each(envs) => {
                for (i, env) in envs.iter_mut().enumerate() {
                    let o = &mut self.obs[i * self.obs_dim..(i + 1) * self.obs_dim];
                    env.reset_into(Some(seed(i)), o);
                }
            }
            Members::Batch(b) => {
                let seeds: Vec<_> = (0..b.len()).map(|i| Some(seed(i))).collect();
                b.reset(&seeds, &mut self.obs);
            }
        }
        self.ep_return.fill(0.0);
        self.ep_length.fill(0);
    }

    /// Current observations, `[n, obs_dim]` row-major.
    pub fn obs(&self) -> &[f32] {
        &self.obs
    }

    /// The last observation of the episode that environment `i` finished in the latest
    /// step; meaningful only where that step returned `terminated` or `truncated`.
    pub fn final_obs(&self, i: usize) -> &[f32] {
        &self.final_obs[i * self.obs_dim..(i + 1) * self.obs_dim]
    }

    /// Steps every environment with its action, resetting those whose episode ended.
    pub fn step(&mut self, actions: &[usize]) -> Result<&VecStep, EnvError> {
        let n = self.len();
        if actions.len() != n {
            return Err(EnvError::InvalidOption {
                id: "VecEnv".into(),
                key: "actions".into(),
                reason: format!("{} actions for {n} environments", actions.len()),
            });
        }
        match &mut self.envs {
            Members::Each(_) => self.step_each(actions)?,
            Members::Batch(b) => {
                let first = self.first;
                b.step(actions, &mut self.obs, &mut self.final_obs, &mut self.step)
                    .map_err(|e| match e.env() {
                        Some(i) => e.at_env(first + i),
                        None => e,
                    })?
            }
        }
        for i in 0..n {
            self.ep_return[i] += self.step.rewards[i] as f64;
            self.ep_length[i] += 1;
            if self.step.terminated[i] || self.step.truncated[i] {
                self.finished.push((self.ep_return[i], self.ep_length[i]));
                self.ep_return[i] = 0.0;
                self.ep_length[i] = 0;
            }
        }
        Ok(&self.step)
    }

    /// [`VecEnv::step`]'s stepping of environments that are each their own.
    fn step_each(&mut self, actions: &[usize]) -> Result<(), EnvError> {
        let Members::Each(envs) = &mut self.envs else {
            unreachable!("step_each is called for Members::Each")
        };
        let d = self.obs_dim;
        // Environments in other processes first start their steps, so they run together.
        for (i, &action) in actions.iter().enumerate() {
            match envs[i].start_step(action) {
                Ok(started) => self.started[i] = started,
                Err(e) => {
                    self.started[i] = false;
                    finish_started(envs, &self.started, &mut self.obs, d, 0..i);
                    return Err(e.at_env(self.first + i));
                }
            }
        }
        for (i, &action) in actions.iter().enumerate() {
            let env = &mut envs[i];
            let o = &mut self.obs[i * d..(i + 1) * d];
            let r = if self.started[i] {
                env.finish_step(o)
            } else {
                env.step_into(action, o)
            };
            let r = match r {
                Ok(r) => r,
                Err(e) => {
                    let n = envs.len();
                    finish_started(envs, &self.started, &mut self.obs, d, i + 1..n);
                    return Err(e.at_env(self.first + i));
                }
            };
            self.step.rewards[i] = r.reward;
            self.step.terminated[i] = r.terminated;
            self.step.truncated[i] = r.truncated;
            if r.terminated || r.truncated {
                self.final_obs[i * d..(i + 1) * d].copy_from_slice(o);
                env.reset_into(None, o);
            }
        }
        Ok(())
    }

    /// Stop requests of the environments that run in processes of their own (see
    /// [`crate::hurry::Hurry`]); empty for in-process ones.
    pub fn hurry_handles(&self) -> Vec<Hurry> {
        match &self.envs {
            Members::Each(envs) => envs.iter().filter_map(|e| e.hurry()).collect(),
            Members::Batch(b) => b.hurry().into_iter().collect(),
        }
    }

    /// Returns and lengths of the episodes finished since the last call.
    pub fn drain_episodes(&mut self) -> std::vec::Drain<'_, (f64, usize)> {
        self.finished.drain(..)
    }

    /// Everything needed to continue exactly where this left off.
    pub fn save_state(&self) -> serde_json::Value {
        serde_json::to_value(VecEnvState {
            envs: match &self.envs {
                Members::Each(envs) => envs.iter().map(|e| e.save_state()).collect(),
                // A batch stepped elsewhere (in Python) cannot save its state.
                Members::Batch(b) => vec![serde_json::Value::Null; b.len()],
            },
            obs: self.obs.clone(),
            ep_return: self.ep_return.clone(),
            ep_length: self.ep_length.clone(),
        })
        .expect("plain data serialises")
    }

    /// Restores a state from [`VecEnv::save_state`].
    pub fn load_state(&mut self, state: &serde_json::Value) -> Result<(), EnvError> {
        let s: VecEnvState =
            serde_json::from_value(state.clone()).map_err(|e| EnvError::State(e.to_string()))?;
        if s.envs.len() != self.len() || s.obs.len() != self.obs.len() {
            return Err(EnvError::State(format!(
                "saved state has {} environments, this VecEnv has {}",
                s.envs.len(),
                self.len()
            )));
        }
        match &mut self.envs {
            Members::Each(envs) => {
                for (env, st) in envs.iter_mut().zip(&s.envs) {
                    env.load_state(st)?;
                }
            }
            Members::Batch(b) => {
                return Err(EnvError::State(format!(
                    "'{}' is a Python environment, whose state rlcpc cannot save or restore",
                    b.id()
                )))
            }
        }
        self.obs = s.obs;
        self.ep_return = s.ep_return;
        self.ep_length = s.ep_length;
        Ok(())
    }
}

/// After an error: reads the replies of the steps started in environments `range`, so
/// that each stays in step with its process for the next call.
fn finish_started(
    envs: &mut [Box<dyn Env>],
    started: &[bool],
    obs: &mut [f32],
    d: usize,
    range: std::ops::Range<usize>,
) {
    for j in range {
        if started[j] {
            let _ = envs[j].finish_step(&mut obs[j * d..(j + 1) * d]);
        }
    }
}
