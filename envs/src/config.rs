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
    /// alone), `flatten` (Gymnasium's FlattenObservation, for Dict and Tuple spaces).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub wrappers: Vec<String>,
    /// Seconds a `gymnasium:` environment has to answer one request (being made, a reset,
    /// a step) before the run stops naming it and ends its processes.
    #[serde(
        default = "default_step_timeout",
        skip_serializing_if = "is_default_step_timeout"
    )]
    pub step_timeout: f64,
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
