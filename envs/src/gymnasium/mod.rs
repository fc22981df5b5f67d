//! Any Python Gymnasium environment as an rlcpc [`Env`]: `env.id = "gymnasium:NAME"`.
//!
//! Design decision (the GIL): each environment runs in a Python process of its own,
//! started from `bridge.py` and driven over its stdin/stdout with small binary messages
//! (an action in, reward, flags and the float32 observation out). Processes never share
//! an interpreter, so the actor threads step their environments in parallel with no GIL
//! between them, a crashing environment takes only its own process down, and rlcpc's
//! binary links no libpython: the default build and a machine without Python are
//! unaffected. The cost is one pipe round trip per environment step (measured in
//! docs/results.md against the native CartPole).
//!
//! Semantics are the native ones: Gymnasium's `terminated` / `truncated` pass through,
//! [`crate::VecEnv`] resets in the same step and keeps the final observation, and
//! `reset(seed)` reaches `env.reset(seed=...)`, so seeded sync runs repeat. The time limit
//! is Gymnasium's own (`gymnasium.make`'s, or `max_episode_steps` when the config sets it).
//!
//! The interpreter is `env.python` when set, else the one rlcpc runs inside (the Python
//! package calls [`set_host_python`]), else the active virtual environment's
//! (`$VIRTUAL_ENV/bin/python`), else `python3` on `PATH`.

use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

use serde::Deserialize;

use crate::config::EnvConfig;
use crate::env::{Env, EnvError, Info, Space, StepOutcome};

mod process;
pub use crate::hurry::{hurry_all, unhurry_all, Hurry, GRACE};
pub use process::kill_all;
use process::{Late, Replies};

/// The prefix of `env.id` that selects a Gymnasium environment.
pub const PREFIX: &str = "gymnasium:";

/// Wrappers `env.wrappers` may name.
pub const WRAPPERS: &[&str] = &["atari", "minigrid", "flatten"];

const BRIDGE: &str = include_str!("bridge.py");

/// One Gymnasium environment in its own Python process.
pub struct GymnasiumEnv {
    id: String,
    observation_space: Space,
    n_actions: usize,
    child: Child,
    stdin: BufWriter<ChildStdin>,
    stdout: BufReader<Replies>,
    hurry: Hurry,
    /// Steps taken over the environment's life (for error messages).
    steps: u64,
    /// An error of the last reset, reported by the next step (a reset cannot fail).
    pending: Option<String>,
    obs_bytes: Vec<u8>,
}

#[derive(Deserialize)]
struct Hello {
    ok: bool,
    #[serde(default)]
    error: String,
    #[serde(default)]
    observation_space: serde_json::Value,
    #[serde(default)]
    action_space: serde_json::Value,
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
        let name = cfg.id.strip_prefix(PREFIX).unwrap_or(&cfg.id);
        let id = cfg.id.clone();
        let fail = |message: String| EnvError::Python {
            id: id.clone(),
            message,
        };
        check(cfg)?;
        let spec = serde_json::json!({
            "id": name,
            "kwargs": cfg.options,
            "max_episode_steps": (cfg.max_episode_steps > 0).then_some(cfg.max_episode_steps),
            "wrappers": cfg.wrappers,
        });
        let timeout = Duration::from_secs_f64(cfg.step_timeout);
        let python = interpreter(cfg);
        let mut command = Command::new(&python);
        command
            .arg("-u")
            .arg("-c")
            .arg(BRIDGE)
            .arg(spec.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = process::spawn(command).map_err(|e| {
            // The interpreter hint only where the interpreter is the problem (not, say,
            // the process limit: EAGAIN).
            let hint = match e.kind() {
                std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied => {
                    " (set env.python, or activate a virtual environment)"
                }
                _ => "",
            };
            fail(format!(
                "cannot start Python '{}': {e}{hint}",
                python.display()
            ))
        })?;
        let stdin = BufWriter::new(child.stdin.take().expect("piped"));
        let hurry = Hurry::default();
        let mut stdout = BufReader::new(Replies::new(
            child.stdout.take().expect("piped"),
            hurry.clone(),
            timeout,
        ));
        // Every failure from here on ends the process group before it returns.
        let end = |mut child: Child, stdin: BufWriter<ChildStdin>, e: EnvError| {
            drop(stdin);
            process::end(&mut child);
            e
        };
        // The hello is one JSON line; a program that writes without end is cut off at
        // HELLO_MAX bytes rather than read until memory runs out.
        let mut line = String::new();
        let read = std::io::Read::take(&mut stdout, HELLO_MAX).read_line(&mut line);
        let spaces = match read {
            Ok(n) if n as u64 >= HELLO_MAX && !line.ends_with('\n') => Err(fail(format!(
                "'{}' did not answer as rlcpc's bridge: no line within {} MiB (is env.python a Python? or the environment's spaces are too large to describe: a Box of millions of values with their bounds)",
                python.display(),
                HELLO_MAX >> 20
            ))),
            Err(_) if stdout.get_ref().late.is_some() => Err(fail(format!(
                "Python did not make the environment within {} (env.step_timeout); its processes were ended",
                waited(stdout.get_ref().late, timeout)
            ))),
            Ok(n) if n > 0 => parse_hello(&id, &python.display().to_string(), &line),
            _ => Err(fail(format!(
                "Python '{}' exited before the environment was made (its messages are above)",
                python.display()
            ))),
        };
        let (observation_space, n_actions) = match spaces {
            Ok(s) => s,
            Err(e) => return Err(end(child, stdin, e)),
        };
        let obs_bytes = vec![0u8; 4 * observation_space.flat_dim()];
        Ok(GymnasiumEnv {
            id,
            observation_space,
            n_actions,
            child,
            stdin,
            stdout,
            hurry,
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
        self.send(msg)?;
        self.status()
    }

    fn send(&mut self, msg: &[u8]) -> Result<(), String> {
        self.stdout.get_mut().sent();
        if let Err(e) = self.stdin.write_all(msg).and_then(|()| self.stdin.flush()) {
            return Err(self.gone(e));
        }
        Ok(())
    }

    /// The message for a pipe that broke: how the process ended, if it did (a signal,
    /// SIGKILL often being the out-of-memory killer), else the pipe's error.
    fn gone(&mut self, e: std::io::Error) -> String {
        // The pipe closes as the process dies; its exit status follows within moments.
        let mut status = None;
        for _ in 0..50 {
            status = self.child.try_wait().ok().flatten();
            if status.is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        #[cfg(unix)]
        if let Some(sig) = status.and_then(|s| std::os::unix::process::ExitStatusExt::signal(&s)) {
            let oom = if sig == 9 {
                " (possibly by the out-of-memory killer)"
            } else {
                ""
            };
            return format!("the Python process was killed by signal {sig}{oom}");
        }
        match status {
            Some(s) => format!(
                "the Python process exited ({s}) without answering; its messages, if any, are above"
            ),
            None => format!(
                "the Python process stopped answering ({e}; its messages, if any, are above)"
            ),
        }
    }

    /// The message for a failed read of a reply: the deadline passed (the process group
    /// is then ended, since a late reply would put the stream out of step), or the
    /// process went away.
    fn unanswered(&mut self, e: std::io::Error) -> String {
        let late = self.stdout.get_ref().late;
        if late.is_none() {
            return self.gone(e);
        }
        process::end(&mut self.child);
        format!(
            "it did not answer within {}; its processes were ended",
            waited(late, self.stdout.get_ref().timeout())
        )
    }

    /// Reads a reply's status; `Err` holds the environment's message.
    fn status(&mut self) -> Result<(), String> {
        let mut status = [0u8; 1];
        if let Err(e) = self.stdout.read_exact(&mut status) {
            return Err(self.unanswered(e));
        }
        match status[0] {
            0 => return Ok(()),
            1 => {}
            b => return Err(self.out_of_step(b)),
        }
        let mut len = [0u8; 4];
        if let Err(e) = self.stdout.read_exact(&mut len) {
            return Err(self.unanswered(e));
        }
        let len = u32::from_le_bytes(len) as usize;
        if len > 1 << 20 {
            return Err(self.out_of_step(1));
        }
        let mut text = vec![0u8; len];
        if let Err(e) = self.stdout.read_exact(&mut text) {
            return Err(self.unanswered(e));
        }
        Err(String::from_utf8_lossy(&text).into_owned())
    }

    /// The stream is out of step (not the bridge's reply): the process is ended, since
    /// nothing read after this could be trusted.
    fn out_of_step(&mut self, byte: u8) -> String {
        process::end(&mut self.child);
        format!("the Python process answered out of protocol (byte {byte:#04x}); it was stopped")
    }

    fn read_obs(&mut self, obs: &mut [f32]) -> Result<(), String> {
        if let Err(e) = self.stdout.read_exact(&mut self.obs_bytes) {
            return Err(self.unanswered(e));
        }
        for (o, b) in obs.iter_mut().zip(self.obs_bytes.chunks_exact(4)) {
            *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        }
        // An unbounded Box admits inf, and a float64 beyond f32's range becomes inf
        // here: neither may reach the learner.
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

    fn raised(&self, message: String) -> EnvError {
        EnvError::Raised {
            id: self.id.clone(),
            env: None,
            step: self.steps,
            message,
        }
    }
}

/// How long a late reply was waited for, and which limit ended the wait.
fn waited(late: Option<Late>, timeout: Duration) -> String {
    match late {
        Some(Late::Stopping) => format!("{} s of the stop request", GRACE.as_secs()),
        _ => format!("{} s (env.step_timeout)", timeout.as_secs_f64()),
    }
}

/// The longest `env.step_timeout`: a week.
pub const MAX_STEP_TIMEOUT: f64 = 7.0 * 86_400.0;

/// The bridge's first line (`line`, from the interpreter `python`) read as the spaces
/// of environment `id`: the observation space and the number of actions, or why not
/// (what Python said, a line that is not the bridge's, a space rlcpc cannot use). Public
/// for the fuzz targets (`fuzz/`).
pub fn parse_hello(id: &str, python: &str, line: &str) -> Result<(Space, usize), EnvError> {
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
    GymnasiumEnv::spaces(id, &hello)
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
        Some(self.hurry.clone())
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
        self.send(&msg).map_err(|e| self.raised(e))?;
        Ok(true)
    }

    fn finish_step(&mut self, obs: &mut [f32]) -> Result<StepOutcome, EnvError> {
        self.status().map_err(|e| self.raised(e))?;
        let mut head = [0u8; 6];
        if let Err(e) = self.stdout.read_exact(&mut head) {
            let message = self.unanswered(e);
            return Err(self.raised(message));
        }
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

impl Drop for GymnasiumEnv {
    fn drop(&mut self) {
        // Ask politely, then make sure: a worker that stops must leave nothing of the
        // environment behind, its own helper processes included (the whole group ends).
        let _ = self.stdin.write_all(b"Q").and_then(|()| self.stdin.flush());
        for _ in 0..50 {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        process::end(&mut self.child);
    }
}
