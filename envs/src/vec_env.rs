//! A slice of environments stepped together, with same-step auto-reset.

use serde::{Deserialize, Serialize};

use crate::env::{Env, EnvError, Space};

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
    envs: Vec<Box<dyn Env>>,
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
        let obs_dim = space.flat_dim();
        Ok(VecEnv {
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
        })
    }

    /// Number of environments.
    pub fn len(&self) -> usize {
        self.envs.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.envs.is_empty()
    }

    /// Scalars in one observation.
    pub fn obs_dim(&self) -> usize {
        self.obs_dim
    }

    /// The environments' observation space (the first one's).
    pub fn observation_space(&self) -> Space {
        self.envs[0].observation_space()
    }

    /// The environments' action space (the first one's).
    pub fn action_space(&self) -> Space {
        self.envs[0].action_space()
    }

    /// Resets environment `i` with [`crate::stream_seed`]`(seed, first + i)`: `first` is
    /// the index of this vector's first environment among all of the run's, so that
    /// every environment of a run, and of runs with other seeds, has its own stream.
    pub fn reset(&mut self, seed: u64, first: usize) {
        self.first = first;
        for (i, env) in self.envs.iter_mut().enumerate() {
            let o = &mut self.obs[i * self.obs_dim..(i + 1) * self.obs_dim];
            env.reset_into(Some(crate::stream_seed(seed, (first + i) as u64)), o);
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
        if actions.len() != self.envs.len() {
            return Err(EnvError::InvalidOption {
                id: "VecEnv".into(),
                key: "actions".into(),
                reason: format!(
                    "{} actions for {} environments",
                    actions.len(),
                    self.envs.len()
                ),
            });
        }
        let d = self.obs_dim;
        // Environments in other processes first start their steps, so they run together.
        for (i, &action) in actions.iter().enumerate().take(self.envs.len()) {
            match self.envs[i].start_step(action) {
                Ok(started) => self.started[i] = started,
                Err(e) => {
                    self.started[i] = false;
                    self.finish_started(0, i);
                    return Err(e.at_env(self.first + i));
                }
            }
        }
        for (i, &action) in actions.iter().enumerate().take(self.envs.len()) {
            let env = &mut self.envs[i];
            let o = &mut self.obs[i * d..(i + 1) * d];
            let r = if self.started[i] {
                env.finish_step(o)
            } else {
                env.step_into(action, o)
            };
            let r = match r {
                Ok(r) => r,
                Err(e) => {
                    self.finish_started(i + 1, self.envs.len());
                    return Err(e.at_env(self.first + i));
                }
            };
            self.step.rewards[i] = r.reward;
            self.step.terminated[i] = r.terminated;
            self.step.truncated[i] = r.truncated;
            self.ep_return[i] += r.reward as f64;
            self.ep_length[i] += 1;
            if r.terminated || r.truncated {
                self.final_obs[i * d..(i + 1) * d].copy_from_slice(o);
                env.reset_into(None, o);
                self.finished.push((self.ep_return[i], self.ep_length[i]));
                self.ep_return[i] = 0.0;
                self.ep_length[i] = 0;
            }
        }
        Ok(&self.step)
    }

    /// After an error: reads the replies of the steps started in environments
    /// `from..to`, so that each stays in step with its process for the next call.
    fn finish_started(&mut self, from: usize, to: usize) {
        let d = self.obs_dim;
        for j in from..to {
            if self.started[j] {
                let _ = self.envs[j].finish_step(&mut self.obs[j * d..(j + 1) * d]);
            }
        }
    }

    /// Stop requests of the environments that run in processes of their own (see
    /// [`crate::hurry::Hurry`]); empty for in-process ones.
    pub fn hurry_handles(&self) -> Vec<crate::hurry::Hurry> {
        self.envs.iter().filter_map(|e| e.hurry()).collect()
    }

    /// Returns and lengths of the episodes finished since the last call.
    pub fn drain_episodes(&mut self) -> std::vec::Drain<'_, (f64, usize)> {
        self.finished.drain(..)
    }

    /// Everything needed to continue exactly where this left off.
    pub fn save_state(&self) -> serde_json::Value {
        serde_json::to_value(VecEnvState {
            envs: self.envs.iter().map(|e| e.save_state()).collect(),
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
        if s.envs.len() != self.envs.len() || s.obs.len() != self.obs.len() {
            return Err(EnvError::State(format!(
                "saved state has {} environments, this VecEnv has {}",
                s.envs.len(),
                self.envs.len()
            )));
        }
        for (env, st) in self.envs.iter_mut().zip(&s.envs) {
            env.load_state(st)?;
        }
        self.obs = s.obs;
        self.ep_return = s.ep_return;
        self.ep_length = s.ep_length;
        Ok(())
    }
}
