//! Environments by name, and Gymnasium's `TimeLimit` wrapper.

use serde::{Deserialize, Serialize};

use crate::cartpole::{CartPole, MaskedCartPole};
use crate::env::{from_state, to_state, Env, EnvError, Info, Space, StepOutcome};
use crate::tmaze::TMaze;

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
    /// Options of the environment (`[env.options]`), e.g. `corridor_length` of `TMaze-v0`;
    /// `rlcpc envs` lists them.
    #[serde(default, skip_serializing_if = "Options::is_empty")]
    pub options: Options,
}

/// Environment options, as the `[env.options]` table gives them.
pub type Options = serde_json::Map<String, serde_json::Value>;

impl EnvConfig {
    /// One environment of `id` with its defaults.
    pub fn new(id: &str) -> Self {
        EnvConfig {
            id: id.into(),
            num_envs: default_num_envs(),
            max_episode_steps: 0,
            options: Options::new(),
        }
    }
}

fn default_num_envs() -> usize {
    16
}

/// Builds an environment from its id and options, with its default episode limit.
type Builder = fn(&str, &Options) -> Result<(Box<dyn Env>, Option<usize>), EnvError>;

/// One registered environment.
pub struct EnvEntry {
    pub id: &'static str,
    pub description: &'static str,
    /// Its options with their defaults, for `rlcpc envs`.
    pub options: &'static str,
    /// Builds it from its options, with its default episode limit (`None`: the
    /// environment ends its episodes itself).
    build: Builder,
}

/// All registered environments.
pub fn registry() -> &'static [EnvEntry] {
    &[
        EnvEntry {
            id: "CartPole-v1",
            description: "balance a pole on a cart (Gymnasium CartPole-v1: 4 floats, 2 actions, 500-step limit)",
            options: "",
            build: |id, o| {
                allow(id, o, &[])?;
                Ok((Box::new(CartPole::new()), Some(500)))
            },
        },
        EnvEntry {
            id: "MaskedCartPole-v1",
            description: "CartPole-v1 with the velocities hidden (x and angle only): needs memory",
            options: "",
            build: |id, o| {
                allow(id, o, &[])?;
                Ok((Box::new(MaskedCartPole::default()), Some(500)))
            },
        },
        EnvEntry {
            id: "TMaze-v0",
            description: "passive T-maze (Bakker 2002; Ni et al. 2023): remember the first step's cue down a corridor; +1/-1 at the junction",
            options: "corridor_length = 20 (episodes last corridor_length + 1 steps)",
            build: |id, o| {
                allow(id, o, &["corridor_length"])?;
                let n = usize_option(id, o, "corridor_length", 20)?;
                if n == 0 {
                    return Err(invalid(id, "corridor_length", "must be at least 1"));
                }
                Ok((Box::new(TMaze::new(n)), None))
            },
        },
    ]
}

fn invalid(id: &str, key: &str, reason: &str) -> EnvError {
    EnvError::InvalidOption {
        id: id.into(),
        key: key.into(),
        reason: reason.into(),
    }
}

/// Rejects options the environment does not know.
fn allow(id: &str, o: &Options, known: &[&str]) -> Result<(), EnvError> {
    match o.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => Err(invalid(
            id,
            k,
            &format!(
                "unknown option (known: {})",
                if known.is_empty() {
                    "none".into()
                } else {
                    known.join(", ")
                }
            ),
        )),
        None => Ok(()),
    }
}

fn usize_option(id: &str, o: &Options, key: &str, default: usize) -> Result<usize, EnvError> {
    match o.get(key) {
        None => Ok(default),
        Some(v) => v.as_u64().map(|n| n as usize).ok_or_else(|| {
            invalid(
                id,
                key,
                &format!("expected a non-negative integer, got {v}"),
            )
        }),
    }
}

/// Builds the environment `cfg.id` with its options, wrapped in its time limit.
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
    let (env, default_limit) = (entry.build)(entry.id, &cfg.options)?;
    let limit = match cfg.max_episode_steps {
        0 => default_limit,
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
    fn oracle_action(&self) -> Option<usize> {
        self.inner.oracle_action()
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
