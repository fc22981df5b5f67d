//! Any Python Gymnasium environment as an rlcpc [`Env`]: `env.id = "gymnasium:NAME"`.
//!
//! Design decision (the GIL): environments run in Python processes of their own,
//! started from `bridge.py` and driven over stdin/stdout with small binary messages.
//! Processes never share an interpreter, so the actor threads step their environments in
//! parallel with no GIL between them, a crashing environment takes only its own process
//! down, and rlcpc's binary links no libpython: the default build and a machine without
//! Python are unaffected.
//!
//! - `env.vector = "sync"` (the default): one process per actor worker steps all of that
//!   worker's environments as one `gymnasium.vector.SyncVectorEnv` (ale-py's own
//!   `AtariVectorEnv` for `ALE/…-v5` with the `atari` wrapper), [`GymnasiumVec`]. A step
//!   is one request of all the worker's actions; rewards and flags come back on the pipe
//!   and the observations through a shared-memory buffer, never the pipe.
//! - `"async"`: the same, with a `gymnasium.vector.AsyncVectorEnv` (a process per
//!   environment behind it), for environments slow enough to step in parallel.
//! - `"none"`: one process per environment, [`GymnasiumEnv`], observations on the pipe
//!   (an environment that a vector env cannot hold).
//!
//! The costs are measured in docs/results.md against the native CartPole.
//!
//! Semantics are the native ones: Gymnasium's `terminated` / `truncated` pass through,
//! [`crate::VecEnv`] resets in the same step and keeps the final observation, and
//! `reset(seed)` reaches `env.reset(seed=...)`, so seeded sync runs repeat. The time limit
//! is Gymnasium's own (`gymnasium.make`'s, or `max_episode_steps` when the config sets it).
//!
//! The interpreter is `env.python` when set, else the one rlcpc runs inside (the Python
//! package calls [`set_host_python`]), else the active virtual environment's
//! (`$VIRTUAL_ENV/bin/python`), else `python3` on `PATH`.

use std::path::PathBuf;

use serde::Deserialize;

use crate::config::EnvConfig;
use crate::env::{Env, EnvError, Info, Space, StepOutcome};

mod channel;
mod process;
mod vector;
pub use crate::hurry::{hurry_all, unhurry_all, Hurry, GRACE};
use channel::Bridge;
pub use process::kill_all;
pub use vector::GymnasiumVec;

/// The prefix of `env.id` that selects a Gymnasium environment.
pub const PREFIX: &str = "gymnasium:";

/// Wrappers `env.wrappers` may name.
pub const WRAPPERS: &[&str] = &["atari", "minigrid", "minigrid-onehot", "flatten"];

/// One Gymnasium environment in its own Python process.
pub struct GymnasiumEnv {
    id: String,
    observation_space: Space,
    n_actions: usize,
    bridge: Bridge,
    /// Steps taken over the environment's life (for error messages).
    steps: u64,
    /// An error of the last reset, reported by the next step (a reset cannot fail).
    pending: Option<String>,
    obs_bytes: Vec<u8>,
}

/// The bridge's first line.
#[derive(Deserialize)]
struct Hello {
    ok: bool,
    #[serde(default)]
    error: String,
    #[serde(default)]
    observation_space: serde_json::Value,
    #[serde(default)]
    action_space: serde_json::Value,
    /// What steps the environments (`gymnasium.vector.SyncVectorEnv`, …).
    #[serde(default)]
    backend: String,
}

/// The interpreter of the Python process this library runs in, if it runs in one.
static HOST_PYTHON: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// Tells the environments that rlcpc runs inside the Python interpreter `path` (the
/// Python package does, with `sys.executable`): its environments are the user's. The
/// first call wins.
pub fn set_host_python(path: PathBuf) {
    let _ = HOST_PYTHON.set(path);
}

/// The interpreter for `cfg`: `env.python`, else the host interpreter
/// ([`set_host_python`]), else `$VIRTUAL_ENV/bin/python`, else `python3`.
pub fn interpreter(cfg: &EnvConfig) -> PathBuf {
    if let Some(p) = &cfg.python {
        return p.into();
    }
    if let Some(p) = HOST_PYTHON.get() {
        return p.clone();
    }
    if let Some(venv) = std::env::var_os("VIRTUAL_ENV") {
        let p = PathBuf::from(venv).join("bin").join("python");
        if p.exists() {
            return p;
        }
    }
    "python3".into()
}

/// What can be checked of a `gymnasium:` environment's config without starting Python:
/// its wrappers are known ones and its step timeout is in range.
pub fn check(cfg: &EnvConfig) -> Result<(), EnvError> {
    let id = cfg.id.clone();
    if let Some(w) = cfg
        .wrappers
        .iter()
        .find(|w| !WRAPPERS.contains(&w.as_str()))
    {
        return Err(EnvError::InvalidOption {
            id: id.clone(),
            key: "env.wrappers".into(),
            reason: format!("unknown wrapper '{w}'; known: {}", WRAPPERS.join(", ")),
        });
    }
    if !(cfg.step_timeout > 0.0 && cfg.step_timeout <= MAX_STEP_TIMEOUT) {
        return Err(EnvError::InvalidOption {
            id: id.clone(),
            key: "env.step_timeout".into(),
            reason: format!(
                "{} (seconds: more than 0, at most {MAX_STEP_TIMEOUT})",
                cfg.step_timeout
            ),
        });
    }
    Ok(())
}

impl GymnasiumEnv {
    /// Starts `cfg.id` (`gymnasium:NAME`) with `[env.options]` as keyword arguments of
    /// `gymnasium.make`; fails naming the environment when Python, Gymnasium, the
    /// environment or its spaces do not fit.
    pub fn new(cfg: &EnvConfig) -> Result<Self, EnvError> {
        check(cfg)?;
        let (bridge, hello) = Bridge::start(cfg, &spec(cfg), 1)?;
        let (observation_space, n_actions) = GymnasiumEnv::spaces(&cfg.id, &hello)?;
        let obs_bytes = vec![0u8; 4 * observation_space.flat_dim()];
        Ok(GymnasiumEnv {
            id: cfg.id.clone(),
            observation_space,
            n_actions,
            bridge,
            steps: 0,
            pending: None,
            obs_bytes,
        })
    }

    /// The observation space and the number of actions of the bridge's answer.
    fn spaces(id: &str, hello: &Hello) -> Result<(Space, usize), EnvError> {
        // The size first, from the shape alone: bounds given as one number are spread
        // over every value only for a Box rlcpc takes.
        let shape_values = hello.observation_space.get("box").and_then(|b| {
            b.as_array()?
                .iter()
                .try_fold(1u128, |a, d| Some(a.saturating_mul(d.as_u64()? as u128)))
        });
        if let Some(values) = shape_values.filter(|n| !(1..=MAX_OBS_VALUES as u128).contains(n)) {
            return Err(EnvError::Unsupported {
                id: id.into(),
                what: format!(
                    "observation space {}: {values} values per observation; rlcpc takes 1 to {MAX_OBS_VALUES}",
                    space_name(&hello.observation_space)
                ),
            });
        }
        let observation_space =
            parse_space(&hello.observation_space).ok_or_else(|| EnvError::Unsupported {
                id: id.into(),
                what: format!(
                    "observation space {}: rlcpc reads Box (any shape, any dtype), and Discrete or MultiDiscrete as one-hot (env.wrappers = [\"flatten\"] flattens a Dict or Tuple)",
                    space_name(&hello.observation_space)
                ),
            })?;
        let values = observation_space.flat_dim();
        if !(1..=MAX_OBS_VALUES).contains(&values) {
            return Err(EnvError::Unsupported {
                id: id.into(),
                what: format!(
                    "observation space {}: {values} values per observation; rlcpc takes 1 to {MAX_OBS_VALUES}",
                    space_name(&hello.observation_space)
                ),
            });
        }
        match parse_space(&hello.action_space) {
            Some(Space::Discrete(n)) if !(1..=MAX_ACTIONS).contains(&n) => {
                Err(EnvError::Unsupported {
                    id: id.into(),
                    what: format!(
                        "action space Discrete({n}): rlcpc's agents take 1 to {MAX_ACTIONS} actions"
                    ),
                })
            }
            Some(Space::Discrete(n)) => Ok((observation_space, n)),
            _ => Err(EnvError::Unsupported {
                id: id.into(),
                what: format!(
                    "action space {}: rlcpc's agents act in Discrete spaces only (no continuous actions)",
                    space_name(&hello.action_space)
                ),
            }),
        }
    }

    /// Sends one request and reads the status; `Err` holds the message.
    fn request(&mut self, msg: &[u8]) -> Result<(), String> {
        self.bridge.send(msg)?;
        self.bridge.status().map_err(|f| f.message)
    }

    fn read_obs(&mut self, obs: &mut [f32]) -> Result<(), String> {
        self.bridge.read(&mut self.obs_bytes)?;
        floats(&self.obs_bytes, obs)
    }

    fn raised(&self, message: String) -> EnvError {
        EnvError::Raised {
            id: self.id.clone(),
            env: None,
            step: self.steps,
            message,
        }
    }
}

/// The spec `bridge.py` reads (its docstring): the environment and its wrappers.
fn spec(cfg: &EnvConfig) -> serde_json::Value {
    serde_json::json!({
        "id": cfg.id.strip_prefix(PREFIX).unwrap_or(&cfg.id),
        "kwargs": cfg.options,
        "max_episode_steps": (cfg.max_episode_steps > 0).then_some(cfg.max_episode_steps),
        "wrappers": cfg.wrappers,
    })
}

/// Observations as the bridge writes them (float32, little-endian) into `obs`, checked
/// finite: an unbounded Box admits inf, and a float64 beyond f32's range becomes inf in
/// the cast; neither may reach the learner.
fn floats(bytes: &[u8], obs: &mut [f32]) -> Result<(), String> {
    for (o, b) in obs.iter_mut().zip(bytes.chunks_exact(4)) {
        *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    }
    if let Some(first) = obs.iter().position(|v| !v.is_finite()) {
        let n = obs.iter().filter(|v| !v.is_finite()).count();
        return Err(format!(
            "it gave an observation with {n} non-finite value{} (the first at index {first}: {}, after the cast to float32)",
            if n == 1 { "" } else { "s" },
            obs[first]
        ));
    }
    Ok(())
}

/// The longest `env.step_timeout`: a week.
pub const MAX_STEP_TIMEOUT: f64 = 7.0 * 86_400.0;

/// The bridge's first line (`line`, from the interpreter `python`) read as the spaces
/// of environment `id`: the observation space and the number of actions, or why not
/// (what Python said, a line that is not the bridge's, a space rlcpc cannot use). Public
/// for the fuzz targets (`fuzz/`).
pub fn parse_hello(id: &str, python: &str, line: &str) -> Result<(Space, usize), EnvError> {
    GymnasiumEnv::spaces(id, &read_hello(id, python, line)?)
}

/// The bridge's first line as a [`Hello`] that says `ok`, or the error it names.
fn read_hello(id: &str, python: &str, line: &str) -> Result<Hello, EnvError> {
    let fail = |message: String| EnvError::Python {
        id: id.into(),
        message,
    };
    let hello: Hello = serde_json::from_str(line).map_err(|e| {
        let shown: String = line.chars().take(300).collect();
        fail(format!(
            "'{python}' did not answer as rlcpc's bridge: {e}: {shown}{}",
            if shown.len() < line.len() { " …" } else { "" }
        ))
    })?;
    if !hello.ok {
        return Err(fail(hello.error));
    }
    Ok(hello)
}

/// The most bytes of the bridge's first line (its spaces, as JSON).
const HELLO_MAX: u64 = 16 << 20;
/// The most values of one observation (a 4096×4096 RGB frame is 50M: past any agent here).
pub const MAX_OBS_VALUES: usize = 1 << 24;
/// The most discrete actions (the policy head has one logit each).
pub const MAX_ACTIONS: usize = 65_536;

/// A space as the bridge describes it; `None` for one rlcpc cannot read.
fn parse_space(v: &serde_json::Value) -> Option<Space> {
    if let Some(n) = v.get("discrete").and_then(|n| n.as_u64()) {
        return Some(Space::Discrete(n as usize));
    }
    let shape: Vec<usize> = v
        .get("box")?
        .as_array()?
        .iter()
        .map(|d| d.as_u64().map(|d| d as usize))
        .collect::<Option<_>>()?;
    let n = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .filter(|&n| n <= MAX_OBS_VALUES)?;
    // Bounds per value, or one number for all of them.
    let floats = |k: &str| -> Option<Vec<f32>> {
        let b = v.get(k)?;
        if let Some(x) = b.as_f64() {
            return Some(vec![x as f32; n]);
        }
        b.as_array()?
            .iter()
            .map(|x| x.as_f64().map(|x| x as f32))
            .collect()
    };
    let (low, high) = (floats("low")?, floats("high")?);
    (low.len() == n && high.len() == n).then_some(Space::Box { low, high, shape })
}

fn space_name(v: &serde_json::Value) -> String {
    match v.get("unsupported").and_then(|s| s.as_str()) {
        Some(s) => s.to_string(),
        None => v.to_string(),
    }
}

impl Env for GymnasiumEnv {
    fn id(&self) -> &str {
        &self.id
    }

    fn observation_space(&self) -> Space {
        self.observation_space.clone()
    }

    fn action_space(&self) -> Space {
        Space::Discrete(self.n_actions)
    }

    fn reset_into(&mut self, seed: Option<u64>, obs: &mut [f32]) -> Info {
        let mut msg = [0u8; 10];
        msg[0] = b'R';
        msg[1] = seed.is_some() as u8;
        msg[2..].copy_from_slice(&seed.unwrap_or(0).to_le_bytes());
        let r = self.request(&msg).and_then(|()| self.read_obs(obs));
        if let Err(e) = r {
            obs.fill(0.0);
            self.pending = Some(format!("reset failed: {e}"));
        }
        Info::new()
    }

    fn step_into(&mut self, action: usize, obs: &mut [f32]) -> Result<StepOutcome, EnvError> {
        self.start_step(action)?;
        self.finish_step(obs)
    }

    fn hurry(&self) -> Option<Hurry> {
        Some(self.bridge.hurry.clone())
    }

    fn start_step(&mut self, action: usize) -> Result<bool, EnvError> {
        if let Some(e) = self.pending.take() {
            return Err(self.raised(e));
        }
        if action >= self.n_actions {
            return Err(EnvError::InvalidAction {
                action,
                space: Space::Discrete(self.n_actions),
            });
        }
        let mut msg = [0u8; 5];
        msg[0] = b'S';
        msg[1..].copy_from_slice(&(action as u32).to_le_bytes());
        self.steps += 1;
        self.bridge.send(&msg).map_err(|e| self.raised(e))?;
        Ok(true)
    }

    fn finish_step(&mut self, obs: &mut [f32]) -> Result<StepOutcome, EnvError> {
        self.bridge.status().map_err(|f| self.raised(f.message))?;
        let mut head = [0u8; 6];
        self.bridge.read(&mut head).map_err(|e| self.raised(e))?;
        self.read_obs(obs).map_err(|e| self.raised(e))?;
        let reward = f32::from_le_bytes([head[0], head[1], head[2], head[3]]);
        if !reward.is_finite() {
            return Err(self.raised(format!("it gave the reward {reward}")));
        }
        Ok(StepOutcome {
            reward,
            terminated: head[4] != 0,
            truncated: head[5] != 0,
        })
    }

    /// A Python environment's state cannot be saved: `Null`, which
    /// [`GymnasiumEnv::load_state`] refuses (a resumed run starts new episodes instead).
    fn save_state(&self) -> serde_json::Value {
        serde_json::Value::Null
    }

    fn load_state(&mut self, _state: &serde_json::Value) -> Result<(), EnvError> {
        Err(EnvError::State(format!(
            "'{}' is a Python environment, whose state rlcpc cannot save or restore",
            self.id
        )))
    }
}
