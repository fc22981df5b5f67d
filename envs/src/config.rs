//! The `[env]` table of a config: which environment, how many of it, and its options.
//! The data every environment and the registry read; it imports no environment.

use serde::{Deserialize, Serialize};

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
    /// The Python interpreter of a `gymnasium:` environment [default: the active virtual
    /// environment's, else `python3` on PATH].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub python: Option<String>,
    /// Wrappers around a `gymnasium:` environment, in order: `atari` (no-op starts, frame
    /// skip 4, 84x84 grayscale, 4 stacked frames), `minigrid` (MiniGrid's 7x7x3 view
    /// alone), `minigrid-onehot` (that view as 7x7x20 one-hot codes of object, colour and
    /// state), `flatten` (Gymnasium's FlattenObservation, for Dict and Tuple spaces).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub wrappers: Vec<String>,
    /// Seconds a `gymnasium:` environment has to answer one request (being made, a reset,
    /// a step) before the run stops naming it and ends its processes.
    #[serde(
        default = "default_step_timeout",
        skip_serializing_if = "is_default_step_timeout"
    )]
    pub step_timeout: f64,
    /// How a worker's `gymnasium:` environments are stepped: `sync` (one Python process
    /// per actor worker, its environments a `gymnasium.vector.SyncVectorEnv`, or ale-py's
    /// own vector environment for `ALE/…-v5` with the `atari` wrapper), `async` (that
    /// process runs a `gymnasium.vector.AsyncVectorEnv`: one more process per environment,
    /// for slow environments) or `none` (one Python process per environment).
    #[serde(default, skip_serializing_if = "Vector::is_default")]
    pub vector: Vector,
}

/// How a worker's `gymnasium:` environments are stepped (`env.vector`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Vector {
    /// One Python process per environment, observations on its pipe.
    None,
    /// One Python process per worker with a synchronous vector env; observations in
    /// shared memory.
    #[default]
    Sync,
    /// One Python process per worker with an asynchronous vector env (a process per
    /// environment behind it); observations in shared memory.
    Async,
}

impl Vector {
    fn is_default(&self) -> bool {
        *self == Vector::default()
    }

    /// The name a config gives it.
    pub fn as_str(&self) -> &'static str {
        match self {
            Vector::None => "none",
            Vector::Sync => "sync",
            Vector::Async => "async",
        }
    }
}

/// Environment options, as the `[env.options]` table gives them; each environment reads
/// them into its own typed struct (e.g. `TMazeOptions`).
pub type Options = serde_json::Map<String, serde_json::Value>;

impl EnvConfig {
    /// One environment of `id` with its defaults.
    pub fn new(id: &str) -> Self {
        EnvConfig {
            id: id.into(),
            num_envs: default_num_envs(),
            max_episode_steps: 0,
            options: Options::new(),
            python: None,
            wrappers: Vec::new(),
            step_timeout: default_step_timeout(),
            vector: Vector::default(),
        }
    }
}

fn default_num_envs() -> usize {
    16
}

fn default_step_timeout() -> f64 {
    120.0
}

fn is_default_step_timeout(t: &f64) -> bool {
    *t == default_step_timeout()
}
