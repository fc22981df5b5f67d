//! Environments by name (each reads its `[env.options]` into its own typed struct), and
//! Gymnasium's `TimeLimit` wrapper.

use serde::{Deserialize, Serialize};

use crate::cartpole::{CartPole, MaskedCartPole};
use crate::config::{EnvConfig, Options};
use crate::env::{from_state, to_state, Env, EnvError, Info, Space, StepOutcome};
use crate::lab::{
    lab_config, ExploreGoalLocationsOptions, KeysDoorsPuzzleOptions, Lab, LabOptions,
    LasertagOptions, SeekavoidArenaOptions, TaskOptions, WatermazeOptions, DEFAULT_EPISODE_STEPS,
};
use crate::options::{help, read, NoOptions};
use crate::tmaze::{TMaze, TMazeOptions};
use crate::vec_env::VecEnv;

/// Builds an environment from its id and options, with its default episode limit.
type Builder = fn(&str, &Options) -> Result<(Box<dyn Env>, Option<usize>), EnvError>;

/// Reads an environment's options into its typed struct, refusing bad ones, without
/// building it.
type Checker = fn(&str, &Options) -> Result<(), EnvError>;

/// One registered environment.
pub struct EnvEntry {
    /// The id that [`EnvConfig::id`] names, e.g. `CartPole-v1`.
    pub id: &'static str,
    /// One line on what the environment is, for `rlcpc envs`.
    pub description: &'static str,
    /// Its options with their defaults, for `rlcpc envs`, printed from the option
    /// structs' `Default` (e.g. [`TMazeOptions`]); empty when it takes none.
    pub options: String,
    /// Builds it from its options, with its default episode limit (`None`: the
    /// environment ends its episodes itself).
    build: Builder,
    /// Reads its options without building it ([`check`]).
    check: Checker,
}

/// All registered environments.
pub fn registry() -> &'static [EnvEntry] {
    static REGISTRY: std::sync::LazyLock<Vec<EnvEntry>> = std::sync::LazyLock::new(entries);
    &REGISTRY
}

fn entries() -> Vec<EnvEntry> {
    let mut entries = vec![
        EnvEntry {
            id: "CartPole-v1",
            description: "balance a pole on a cart (Gymnasium CartPole-v1: 4 floats, 2 actions, 500-step limit)",
            options: help::<NoOptions>(),
            build: |id, o| {
                let NoOptions {} = read(id, o)?;
                Ok((Box::new(CartPole::new()), Some(500)))
            },
            check: |id, o| read::<NoOptions>(id, o).map(drop),
        },
        EnvEntry {
            id: "MaskedCartPole-v1",
            description: "CartPole-v1 with the velocities hidden (x and angle only): needs memory",
            options: help::<NoOptions>(),
            build: |id, o| {
                let NoOptions {} = read(id, o)?;
                Ok((Box::new(MaskedCartPole::default()), Some(500)))
            },
            check: |id, o| read::<NoOptions>(id, o).map(drop),
        },
        EnvEntry {
            id: "TMaze-v0",
            description: "passive T-maze (Bakker 2002; Ni et al. 2023): remember the first step's cue down a corridor; +1/-1 at the junction",
            options: help::<TMazeOptions>(),
            build: |id, o| {
                let TMazeOptions {
                    corridor_length,
                    cue_every_step,
                } = read(id, o)?;
                let maze = match cue_every_step {
                    false => TMaze::new(corridor_length),
                    true => TMaze::with_cue_every_step(corridor_length),
                };
                Ok((Box::new(maze), None))
            },
            check: |id, o| read::<TMazeOptions>(id, o).map(drop),
        },
        lab_entry::<ExploreGoalLocationsOptions>(
            "a new maze every episode, a goal at a random place: +10 and a random respawn on reaching it (DMLab explore_goal_locations)",
        ),
        lab_entry::<WatermazeOptions>(
            "an arena with four wall colours and a hidden platform fixed for the episode: +10 and respawn on it (DMLab rooms_watermaze)",
        ),
        lab_entry::<SeekavoidArenaOptions>(
            "apples +1 and lemons -1 over an arena with pillars; a new crop when the apples are gone (DMLab seekavoid_arena_01)",
        ),
        lab_entry::<KeysDoorsPuzzleOptions>(
            "rooms in a row behind coloured doors; keys (+1 first pickup, one held at a time) open doors of their colour; goal +10 ends it (DMLab rooms_keys_doors_puzzle)",
        ),
        lab_entry::<LasertagOptions>(
            "bots wander an arena; fire (action 8) to tag one in the centre of view, +1 (DMLab lasertag_three_opponents_small; reactive)",
        ),
    ];
    for (id, description) in crate::popgym::ids() {
        entries.push(EnvEntry {
            id,
            description,
            options: help::<NoOptions>(),
            build: |id, o| {
                let NoOptions {} = read(id, o)?;
                let env = crate::popgym::make(id).expect("every registered POPGym id builds");
                Ok((env, None))
            },
            check: |id, o| read::<NoOptions>(id, o).map(drop),
        });
    }
    entries
}

/// The Lab task whose own options are `X`: those first, then the ones every task takes.
fn lab_entry<X: TaskOptions>(description: &'static str) -> EnvEntry {
    EnvEntry {
        id: X::TASK.id(),
        description,
        options: format!(
            "{}; {}; episodes of {DEFAULT_EPISODE_STEPS} agent steps",
            help::<X>(),
            help::<LabOptions>()
        ),
        build: |id, o| {
            let cfg = lab_config::<X>(id, o)?;
            Ok((
                Box::new(Lab::new(X::TASK, cfg)),
                Some(DEFAULT_EPISODE_STEPS),
            ))
        },
        check: |id, o| lab_config::<X>(id, o).map(drop),
    }
}

/// The registered environment `id`, if there is one.
pub fn entry(id: &str) -> Option<&'static EnvEntry> {
    registry().iter().find(|e| e.id == id)
}

/// Builds the environment `cfg.id` with its options, wrapped in its time limit; a
/// `gymnasium:NAME` id starts that Python environment ([`crate::gymnasium`]).
pub fn make(cfg: &EnvConfig) -> Result<Box<dyn Env>, EnvError> {
    if cfg.id.starts_with(crate::gymnasium::PREFIX) {
        return Ok(Box::new(crate::gymnasium::GymnasiumEnv::new(cfg)?));
    }
    let entry = native_entry(cfg)?;
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

/// `n` environments of `cfg` stepped together: for a `gymnasium:` id with `env.vector`
/// `sync` or `async`, one Python process stepping them as a `gymnasium.vector` env
/// ([`crate::gymnasium::GymnasiumVec`]); otherwise `n` of [`make`].
pub fn make_vec(cfg: &EnvConfig, n: usize) -> Result<VecEnv, EnvError> {
    if cfg.id.starts_with(crate::gymnasium::PREFIX) && cfg.vector != crate::Vector::None {
        return VecEnv::batch(Box::new(crate::gymnasium::GymnasiumVec::new(cfg, n)?));
    }
    VecEnv::new((0..n).map(|_| make(cfg)).collect::<Result<_, _>>()?)
}

/// Checks `cfg` as far as that needs no environment built and no Python started: a
/// registered id with its options read into their typed struct (a bad key or value
/// named), or a `gymnasium:` id's wrappers and step timeout (the rest is Python's, when
/// the environment starts in [`make`]).
pub fn check(cfg: &EnvConfig) -> Result<(), EnvError> {
    if cfg.id.starts_with(crate::gymnasium::PREFIX) {
        return crate::gymnasium::check(cfg);
    }
    let entry = native_entry(cfg)?;
    (entry.check)(entry.id, &cfg.options)
}

/// The registered entry of a native (not `gymnasium:`) environment, refusing the keys
/// that apply to `gymnasium:` environments only.
fn native_entry(cfg: &EnvConfig) -> Result<&'static EnvEntry, EnvError> {
    for (key, set) in [
        ("env.python", cfg.python.is_some()),
        ("env.wrappers", !cfg.wrappers.is_empty()),
        ("env.vector", cfg.vector != crate::Vector::default()),
    ] {
        if set {
            return Err(EnvError::InvalidOption {
                id: cfg.id.clone(),
                key: key.into(),
                reason: "applies to gymnasium: environments only".into(),
            });
        }
    }
    entry(&cfg.id).ok_or_else(|| EnvError::UnknownEnv {
        id: cfg.id.clone(),
        known: registry()
            .iter()
            .map(|e| e.id)
            .collect::<Vec<_>>()
            .join(", "),
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
    /// Wraps `inner`, registered as `id`, to truncate after `max_episode_steps` steps.
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
    fn memory_span(&self) -> Option<usize> {
        self.inner.memory_span()
    }
    fn extra_inputs(&self) -> usize {
        self.inner.extra_inputs()
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
