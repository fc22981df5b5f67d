//! Environments by name, and Gymnasium's `TimeLimit` wrapper.

use serde::{Deserialize, Serialize};

use crate::cartpole::CartPole;
use crate::env::{from_state, to_state, Env, EnvError, Info, Space, StepOutcome};

/// The `[env]` table of a config: which environment, how many, and its options.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvConfig {
    /// Registered id, e.g. `CartPole-v1` (`rlcpc envs` lists them).
    pub id: String,
    /// Total number of environments, split evenly over the actor threads.
    #[serde(default = "default_num_envs")]
    pub num_envs: usize,
    /// Episode length limit in agent steps; `0` keeps the registered default
    /// (500 for `CartPole-v1`).
    #[serde(default)]
    pub max_episode_steps: usize,
}

fn default_num_envs() -> usize {
    16
}

/// One registered environment.
pub struct EnvEntry {
    pub id: &'static str,
    pub description: &'static str,
    /// Default episode limit (`None`: the environment ends episodes itself).
    pub max_episode_steps: Option<usize>,
    build: fn() -> Box<dyn Env>,
}

/// All registered environments.
pub fn registry() -> &'static [EnvEntry] {
    &[EnvEntry {
        id: "CartPole-v1",
        description:
            "balance a pole on a cart (Gymnasium CartPole-v1: 4 floats, 2 actions, 500-step limit)",
        max_episode_steps: Some(500),
        build: || Box::new(CartPole::new()),
    }]
}

/// Builds the environment `cfg.id`, wrapped in its time limit.
pub fn make(cfg: &EnvConfig) -> Result<Box<dyn Env>, EnvError> {
    let entry = registry()
        .iter()
        .find(|e| e.id == cfg.id)
        .ok_or_else(|| EnvError::UnknownEnv {
            id: cfg.id.clone(),
            known: registry()
                .iter()
                .map(|e| e.id)
                .collect::<Vec<_>>()
                .join(", "),
        })?;
    let env = (entry.build)();
    let limit = match cfg.max_episode_steps {
        0 => entry.max_episode_steps,
        n => Some(n),
    };
    Ok(match limit {
        Some(max) => Box::new(TimeLimit::new(env, entry.id, max)),
        None => env,
    })
}

/// Gymnasium's `TimeLimit`: `truncated` once `max_episode_steps` steps have elapsed.
pub struct TimeLimit {
    inner: Box<dyn Env>,
    id: &'static str,
    max_episode_steps: usize,
    elapsed: usize,
}

impl TimeLimit {
    pub fn new(inner: Box<dyn Env>, id: &'static str, max_episode_steps: usize) -> Self {
        TimeLimit {
            inner,
            id,
            max_episode_steps,
            elapsed: 0,
        }
    }
}

#[derive(Serialize, Deserialize)]
struct TimeLimitState {
    elapsed: usize,
    inner: serde_json::Value,
}

impl Env for TimeLimit {
    fn id(&self) -> &str {
        self.id
    }
    fn observation_space(&self) -> Space {
        self.inner.observation_space()
    }
    fn action_space(&self) -> Space {
        self.inner.action_space()
    }
    fn reset_into(&mut self, seed: Option<u64>, obs: &mut [f32]) -> Info {
        self.elapsed = 0;
        self.inner.reset_into(seed, obs)
    }
    fn step_into(&mut self, action: usize, obs: &mut [f32]) -> Result<StepOutcome, EnvError> {
        let mut o = self.inner.step_into(action, obs)?;
        self.elapsed += 1;
        o.truncated |= self.elapsed >= self.max_episode_steps;
        Ok(o)
    }
    fn save_state(&self) -> serde_json::Value {
        to_state(&TimeLimitState {
            elapsed: self.elapsed,
            inner: self.inner.save_state(),
        })
    }
    fn load_state(&mut self, state: &serde_json::Value) -> Result<(), EnvError> {
        let s: TimeLimitState = from_state(state)?;
        self.inner.load_state(&s.inner)?;
        self.elapsed = s.elapsed;
        Ok(())
    }
}
