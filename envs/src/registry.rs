//! Environments by name, and Gymnasium's `TimeLimit` wrapper.

use serde::{Deserialize, Serialize};

use crate::cartpole::{CartPole, MaskedCartPole};
use crate::env::{from_state, to_state, Env, EnvError, Info, Space, StepOutcome};
use crate::lab::{Lab, LabConfig, ObsKind, Task, DEFAULT_EPISODE_STEPS};
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

/// Options every Lab task takes.
macro_rules! lab_common {
    () => {
        "; obs = \"rgb\" | \"grid\", width = 64, height = 48, fov = 90, view = 9 (grid window), action_repeat = 4; episodes of 1350 agent steps"
    };
}

/// All registered environments.
pub fn registry() -> &'static [EnvEntry] {
    static REGISTRY: std::sync::LazyLock<Vec<EnvEntry>> = std::sync::LazyLock::new(entries);
    &REGISTRY
}

fn entries() -> Vec<EnvEntry> {
    vec![
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
                if n > 100_000 {
                    return Err(invalid(id, "corridor_length", "must be at most 100000"));
                }
                if n == 0 {
                    return Err(invalid(id, "corridor_length", "must be at least 1"));
                }
                Ok((Box::new(TMaze::new(n)), None))
            },
        },
        lab_entry(
            Task::ExploreGoalLocations,
            "a new maze every episode, a goal at a random place: +10 and a random respawn on reaching it (DMLab explore_goal_locations)",
            concat!("size = 11 (odd), loops = 0.15", lab_common!()),
        ),
        lab_entry(
            Task::Watermaze,
            "an arena with four wall colours and a hidden platform fixed for the episode: +10 and respawn on it (DMLab rooms_watermaze)",
            concat!("size = 11", lab_common!()),
        ),
        lab_entry(
            Task::SeekavoidArena,
            "apples +1 and lemons -1 over an arena with pillars; a new crop when the apples are gone (DMLab seekavoid_arena_01)",
            concat!("size = 11, apples = 10, lemons = 6", lab_common!()),
        ),
        lab_entry(
            Task::KeysDoorsPuzzle,
            "rooms in a row behind coloured doors; keys (+1 first pickup, one held at a time) open doors of their colour; goal +10 ends it (DMLab rooms_keys_doors_puzzle)",
            concat!("size = 4 (room side), rooms = 3 (2-4)", lab_common!()),
        ),
        lab_entry(
            Task::Lasertag,
            "bots wander an arena; fire (action 8) to tag one in the centre of view, +1 (DMLab lasertag_three_opponents_small; reactive)",
            concat!("size = 13, bots = 3", lab_common!()),
        ),
    ]
}

fn lab_entry(task: Task, description: &'static str, options: &'static str) -> EnvEntry {
    EnvEntry {
        id: task.id(),
        description,
        options,
        build: |id, o| {
            let task = match id {
                "lab/explore_goal_locations" => Task::ExploreGoalLocations,
                "lab/watermaze" => Task::Watermaze,
                "lab/seekavoid_arena" => Task::SeekavoidArena,
                "lab/keys_doors_puzzle" => Task::KeysDoorsPuzzle,
                _ => Task::Lasertag,
            };
            let cfg = lab_config(id, task, o)?;
            Ok((Box::new(Lab::new(task, cfg)), Some(DEFAULT_EPISODE_STEPS)))
        },
    }
}

/// Reads and checks a Lab task's options.
fn lab_config(id: &str, task: Task, o: &Options) -> Result<LabConfig, EnvError> {
    let mut known = vec![
        "obs",
        "width",
        "height",
        "fov",
        "view",
        "action_repeat",
        "size",
    ];
    known.extend(match task {
        Task::ExploreGoalLocations => &["loops"][..],
        Task::SeekavoidArena => &["apples", "lemons"][..],
        Task::KeysDoorsPuzzle => &["rooms"][..],
        Task::Lasertag => &["bots"][..],
        Task::Watermaze => &[][..],
    });
    allow(id, o, &known)?;
    let mut c = LabConfig::new(task);
    c.obs = match o.get("obs") {
        None => ObsKind::Rgb,
        Some(v) => match v.as_str() {
            Some("rgb") => ObsKind::Rgb,
            Some("grid") => ObsKind::Grid,
            _ => {
                return Err(invalid(
                    id,
                    "obs",
                    &format!("expected \"rgb\" or \"grid\", got {v}"),
                ))
            }
        },
    };
    c.width = usize_option(id, o, "width", c.width)?;
    c.height = usize_option(id, o, "height", c.height)?;
    c.view = usize_option(id, o, "view", c.view)?;
    c.action_repeat = usize_option(id, o, "action_repeat", c.action_repeat)?;
    c.size = usize_option(id, o, "size", c.size)?;
    c.apples = usize_option(id, o, "apples", c.apples)?;
    c.lemons = usize_option(id, o, "lemons", c.lemons)?;
    c.bots = usize_option(id, o, "bots", c.bots)?;
    c.rooms = usize_option(id, o, "rooms", c.rooms)?;
    c.fov = f64_option(id, o, "fov", c.fov as f64)? as f32;
    c.loops = f64_option(id, o, "loops", c.loops)?;
    if !(8..=1024).contains(&c.width) || !(8..=1024).contains(&c.height) {
        return Err(invalid(
            id,
            "width",
            "width and height must lie in 8..=1024",
        ));
    }
    if !(10.0..=170.0).contains(&c.fov) {
        return Err(invalid(id, "fov", "must lie in 10..=170 degrees"));
    }
    if c.view < 3 || c.view.is_multiple_of(2) {
        return Err(invalid(id, "view", "must be odd and at least 3"));
    }
    if c.action_repeat == 0 {
        return Err(invalid(id, "action_repeat", "must be at least 1"));
    }
    if !(0.0..=1.0).contains(&c.loops) {
        return Err(invalid(id, "loops", "must lie in 0..=1"));
    }
    match task {
        Task::ExploreGoalLocations if c.size < 5 || c.size.is_multiple_of(2) || c.size > 101 => {
            return Err(invalid(id, "size", "a maze's side must be odd, in 5..=101"))
        }
        Task::KeysDoorsPuzzle if !(2..=16).contains(&c.size) => {
            return Err(invalid(id, "size", "a room's side must lie in 2..=16"))
        }
        Task::KeysDoorsPuzzle if !(2..=4).contains(&c.rooms) => {
            return Err(invalid(
                id,
                "rooms",
                "must lie in 2..=4 (one key colour is kept as a distractor)",
            ))
        }
        Task::Watermaze | Task::SeekavoidArena | Task::Lasertag if !(5..=101).contains(&c.size) => {
            return Err(invalid(id, "size", "an arena's side must lie in 5..=101"))
        }
        Task::SeekavoidArena if c.apples == 0 || c.apples + c.lemons > (c.size - 2).pow(2) / 2 => {
            return Err(invalid(
                id,
                "apples",
                "need at least one apple, and apples + lemons at most half the floor",
            ))
        }
        Task::Lasertag if c.bots == 0 || c.bots > (c.size - 2).pow(2) / 4 => {
            return Err(invalid(
                id,
                "bots",
                "need at least one bot, and at most a quarter of the floor",
            ))
        }
        _ => {}
    }
    Ok(c)
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

fn f64_option(id: &str, o: &Options, key: &str, default: f64) -> Result<f64, EnvError> {
    match o.get(key) {
        None => Ok(default),
        Some(v) => v
            .as_f64()
            .ok_or_else(|| invalid(id, key, &format!("expected a number, got {v}"))),
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
    fn render(&self) -> Option<crate::env::Image> {
        self.inner.render()
    }
    fn state_names(&self) -> Vec<String> {
        self.inner.state_names()
    }
    fn true_state(&self) -> Vec<f32> {
        self.inner.true_state()
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
