//! The Gymnasium-style environment API.

use serde::{Deserialize, Serialize};

/// Extra information returned by `reset` and `step` (Gymnasium's `info` dict).
pub type Info = serde_json::Map<String, serde_json::Value>;

/// Errors of the environment layer; each names the bad value.
#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    #[error("unknown environment '{id}'; registered: {known}; or gymnasium:NAME for a Python Gymnasium environment")]
    /// No environment is registered under `id`.
    UnknownEnv {
        /// The id asked for.
        id: String,
        /// The registered ids, comma-separated.
        known: String,
    },
    #[error("invalid action {action} for {space}")]
    /// An action outside the action space.
    InvalidAction {
        /// The action given.
        action: usize,
        /// The action space.
        space: Space,
    },
    #[error("environment '{id}': invalid option '{key}': {reason}")]
    /// An option is unknown, of the wrong type or out of range.
    InvalidOption {
        /// The environment's id.
        id: String,
        /// The bad key.
        key: String,
        /// What the key must be.
        reason: String,
    },
    #[error("cannot restore environment state: {0}")]
    /// A saved state does not fit the environment.
    State(String),
    #[error("environment '{id}': {message}")]
    /// A Gymnasium environment could not be started (Python, Gymnasium or the id).
    Python {
        /// The environment's id (`gymnasium:NAME`).
        id: String,
        /// What Python said.
        message: String,
    },
    #[error("environment '{id}'{} failed at step {step}: {message}", env_index(.env))]
    /// A Gymnasium environment raised, gave an observation outside its space, or did
    /// not answer in time.
    Raised {
        /// The environment's id.
        id: String,
        /// Its index among the run's environments, where known ([`crate::VecEnv`] sets it).
        env: Option<usize>,
        /// Steps the environment had taken, this one included.
        step: u64,
        /// The Python exception.
        message: String,
    },
    #[error("environment '{id}': unsupported {what}")]
    /// A space rlcpc's agents cannot use.
    Unsupported {
        /// The environment's id.
        id: String,
        /// Which space and why.
        what: String,
    },
}

fn env_index(env: &Option<usize>) -> String {
    env.map_or(String::new(), |i| format!(" (env {i})"))
}

impl EnvError {
    /// The index of the environment a [`EnvError::Raised`] names, if it names one.
    pub fn env(&self) -> Option<usize> {
        match self {
            EnvError::Raised { env, .. } => *env,
            _ => None,
        }
    }

    /// The error with the index of the environment it came from, among the run's.
    pub fn at_env(self, index: usize) -> Self {
        match self {
            EnvError::Raised {
                id, step, message, ..
            } => EnvError::Raised {
                id,
                env: Some(index),
                step,
                message,
            },
            e => e,
        }
    }
}

/// An observation or action space, as in Gymnasium's `spaces`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Space {
    /// `Discrete(n)`: the integers `0..n`.
    Discrete(usize),
    /// `Box(low, high, shape)` of `f32`, stored row-major (images are `[H, W, C]`).
    Box {
        /// Lower bound of each scalar.
        low: Vec<f32>,
        /// Upper bound of each scalar.
        high: Vec<f32>,
        /// Shape of one element.
        shape: Vec<usize>,
    },
}

impl Space {
    /// Number of scalars in one element of the space (1 for `Discrete`).
    pub fn flat_dim(&self) -> usize {
        match self {
            Space::Discrete(_) => 1,
            Space::Box { shape, .. } => shape.iter().product(),
        }
    }

    /// Shape of one element (`[]` for `Discrete`).
    pub fn shape(&self) -> Vec<usize> {
        match self {
            Space::Discrete(_) => vec![],
            Space::Box { shape, .. } => shape.clone(),
        }
    }

    /// Whether `x` lies in the space (NaN never does).
    pub fn contains(&self, x: &[f32]) -> bool {
        match self {
            Space::Discrete(n) => x.len() == 1 && x[0] >= 0.0 && (x[0] as usize) < *n,
            Space::Box { low, high, .. } => {
                x.len() == low.len()
                    && x.iter()
                        .zip(low.iter().zip(high))
                        .all(|(v, (l, h))| *v >= *l && *v <= *h)
            }
        }
    }
}

impl std::fmt::Display for Space {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Space::Discrete(n) => write!(f, "Discrete({n})"),
            Space::Box { shape, .. } => write!(f, "Box(f32, {shape:?})"),
        }
    }
}

/// An RGB image, 8 bits per channel, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// `[height, width, 3]` bytes, row-major.
    pub rgb: Vec<u8>,
}

impl Image {
    /// A black image.
    pub fn new(width: usize, height: usize) -> Image {
        Image {
            width,
            height,
            rgb: vec![0; width * height * 3],
        }
    }

    /// Fills the rectangle of `w × h` pixels at `(x0, y0)` (clipped) with colour `c`.
    pub fn fill_rect(&mut self, x0: usize, y0: usize, w: usize, h: usize, c: [u8; 3]) {
        for y in y0..(y0 + h).min(self.height) {
            for x in x0..(x0 + w).min(self.width) {
                let i = (y * self.width + x) * 3;
                self.rgb[i..i + 3].copy_from_slice(&c);
            }
        }
    }

    /// Copies `src` with its top-left corner at `(x0, y0)`, scaled up `scale` times.
    pub fn blit(&mut self, src: &Image, x0: usize, y0: usize, scale: usize) {
        for y in 0..src.height * scale {
            for x in 0..src.width * scale {
                let s = ((y / scale) * src.width + x / scale) * 3;
                let (tx, ty) = (x0 + x, y0 + y);
                if tx < self.width && ty < self.height {
                    let t = (ty * self.width + tx) * 3;
                    self.rgb[t..t + 3].copy_from_slice(&src.rgb[s..s + 3]);
                }
            }
        }
    }

    /// An image from `[H, W, 3]` floats in 0–255.
    pub fn from_f32(width: usize, height: usize, px: &[f32]) -> Image {
        Image {
            width,
            height,
            rgb: px.iter().map(|v| v.clamp(0.0, 255.0) as u8).collect(),
        }
    }
}

/// What one step returns besides the observation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepOutcome {
    /// Reward of the step.
    pub reward: f32,
    /// The episode ended in a terminal state of the MDP: do not bootstrap.
    pub terminated: bool,
    /// The episode was cut short (time limit): bootstrap from the final observation.
    pub truncated: bool,
}

/// Gymnasium's `(obs, reward, terminated, truncated, info)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// The observation after the step.
    pub obs: Vec<f32>,
    /// Reward of the step.
    pub reward: f32,
    /// The episode ended in a terminal state of the MDP.
    pub terminated: bool,
    /// The episode was cut short (time limit).
    pub truncated: bool,
    /// Extra information (empty for the built-in environments).
    pub info: Info,
}

/// A single environment with discrete actions.
///
/// Semantics follow Gymnasium: `reset(Some(seed))` reseeds the environment's generator,
/// `reset(None)` continues it, so a seed given once makes every later episode
/// reproducible. Environments are `Send` so that each actor thread owns its own.
pub trait Env: Send {
    /// The registered id, e.g. `CartPole-v1`.
    fn id(&self) -> &str;
    /// The space observations lie in.
    fn observation_space(&self) -> Space;
    /// The space of actions.
    fn action_space(&self) -> Space;

    /// Starts an episode, writing the first observation into `obs`.
    fn reset_into(&mut self, seed: Option<u64>, obs: &mut [f32]) -> Info;

    /// Applies `action` and writes the next observation into `obs`.
    fn step_into(&mut self, action: usize, obs: &mut [f32]) -> Result<StepOutcome, EnvError>;
    /// Starts a step that [`Env::finish_step`] completes, for an environment that runs
    /// elsewhere (a Gymnasium environment's own process): [`crate::VecEnv`] starts every
    /// environment's step before it finishes any, so they run in parallel. `false` (the
    /// default) means the environment steps in place, through [`Env::step_into`].
    fn start_step(&mut self, _action: usize) -> Result<bool, EnvError> {
        Ok(false)
    }
    /// A handle that cuts this environment's waits short once a run stops (an
    /// environment in a process of its own); `None` (the default) for one that steps
    /// in place.
    fn hurry(&self) -> Option<crate::hurry::Hurry> {
        None
    }
    /// Completes the step [`Env::start_step`] started, as [`Env::step_into`] would have.
    fn finish_step(&mut self, _obs: &mut [f32]) -> Result<StepOutcome, EnvError> {
        Err(EnvError::State(format!(
            "'{}': finish_step without start_step",
            self.id()
        )))
    }

    /// The full internal state (generator included), for checkpoints that resume exactly.
    fn save_state(&self) -> serde_json::Value;
    /// Restores a state from [`Env::save_state`].
    fn load_state(&mut self, state: &serde_json::Value) -> Result<(), EnvError>;

    /// The action a scripted agent that reads the true state would take (balance the
    /// pole, walk to the goal...), where the environment has such an oracle. Oracle and
    /// random returns bracket what a learning agent can reach.
    fn oracle_action(&self) -> Option<usize> {
        None
    }

    /// How many steps back an observation that the best action depends on can lie, where
    /// the task fixes it (the T-maze's episode, RepeatPrevious' k + 1, RepeatFirst's
    /// deck); `None` where it is not known. Truncated backpropagation cannot carry a cue
    /// further than `algo.unroll` steps: `rlcpc train` warns when the unroll is shorter.
    fn memory_span(&self) -> Option<usize> {
        None
    }

    /// How many of the observation's last values are not the observation proper but
    /// inputs an agent adds to it (POPGym's previous action and first-step flag): the
    /// agent can give them to its core beside the encoder, so that what its encoder
    /// embeds (and CPC predicts) is the observation alone. 0 for most environments.
    fn extra_inputs(&self) -> usize {
        0
    }

    /// A picture of the current state for people (Gymnasium's `render()` in
    /// `rgb_array` mode), where the environment draws one.
    fn render(&self) -> Option<Image> {
        None
    }

    /// Names of the variables [`Env::true_state`] reports; empty where there are none.
    fn state_names(&self) -> Vec<String> {
        Vec::new()
    }

    /// The environment's true state now, including what the observation hides (the full
    /// CartPole state, the T-maze cue, a Lab agent's position and the goal's), as
    /// `rlcpc record` stores it for belief probing.
    fn true_state(&self) -> Vec<f32> {
        Vec::new()
    }

    /// Gymnasium's `reset(seed, options) -> (obs, info)`. Options are not used by the
    /// built-in environments, which take their settings at construction.
    fn reset(&mut self, seed: Option<u64>, _options: Option<&Info>) -> (Vec<f32>, Info) {
        let mut obs = vec![0.0; self.observation_space().flat_dim()];
        let info = self.reset_into(seed, &mut obs);
        (obs, info)
    }

    /// Gymnasium's `step(action) -> (obs, reward, terminated, truncated, info)`.
    fn step(&mut self, action: usize) -> Result<Step, EnvError> {
        let mut obs = vec![0.0; self.observation_space().flat_dim()];
        let o = self.step_into(action, &mut obs)?;
        Ok(Step {
            obs,
            reward: o.reward,
            terminated: o.terminated,
            truncated: o.truncated,
            info: Info::new(),
        })
    }
}

/// Serialises an environment's state for [`Env::save_state`].
pub(crate) fn to_state<T: Serialize>(x: &T) -> serde_json::Value {
    serde_json::to_value(x).expect("environment state is plain data and always serialises")
}

/// Restores an environment's state for [`Env::load_state`].
pub(crate) fn from_state<T: for<'de> Deserialize<'de>>(
    v: &serde_json::Value,
) -> Result<T, EnvError> {
    serde_json::from_value(v.clone()).map_err(|e| EnvError::State(e.to_string()))
}
