//! The POPGym suite (Morad et al. 2023, "POPGym: Benchmarking Partially Observable
//! Reinforcement Learning"; the `popgym` package on PyPI), ported to Rust with the same
//! rules, spaces and reward scales: every task with discrete actions, at its three
//! difficulty levels, registered as `popgym/<Task><Level>` (e.g.
//! `popgym/RepeatPreviousEasy`). The Pendulum tasks have continuous actions and are not
//! ported.
//!
//! Each task ([`Task`]) is written as POPGym writes it and produces POPGym's raw
//! observation (card indices, hit/miss bits, a 3×3 maze window, cart-pole floats).
//! [`Popgym`] turns it into the observation POPGym's own baselines train on
//! (`Antialias(PreviousAction(env))`, then one-hot encoding): the one-hot of each
//! discrete component (or the floats of a Box), the one-hot of the previous action (0
//! at reset, as `PreviousAction`'s null action), and a flag that is 1 on the first step
//! of an episode (`Antialias`). Multi-discrete actions (Battleship, Minesweeper) are
//! flattened row-major, as `DiscreteAction` does. Episode returns lie in [−1, 1].
//!
//! The random streams are this crate's, not numpy's: tests check the dynamics exactly
//! given POPGym's own draws (recorded by `tests/fixtures/popgym_record.py`) and the
//! random-policy returns statistically.

mod cards;
mod control;
mod games;
mod labyrinth;

use rand::SeedableRng;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub use cards::{Autoencode, Concentration, CountRecall, Deck, DeckType, HigherLower};
pub use cards::{RepeatFirst, RepeatPrevious};
pub use control::{CartPoleView, PopCartPole};
pub use games::{Battleship, MineSweeper, MultiarmedBandit};
pub use labyrinth::{Labyrinth, Maze};

use crate::env::{from_state, to_state, Env, EnvError, Info, Space, StepOutcome};
use crate::SeededRng;

/// What a task observes: discrete components, or floats in a box.
#[derive(Debug, Clone, PartialEq)]
pub enum RawSpace {
    /// One integer per component, component `i` in `0..nvec[i]` (POPGym's `Discrete` and
    /// `MultiDiscrete`).
    Discrete(Vec<usize>),
    /// Floats, each within its bounds.
    Box {
        /// Lower bounds.
        low: Vec<f32>,
        /// Upper bounds.
        high: Vec<f32>,
    },
}

impl RawSpace {
    /// Number of raw components.
    pub fn len(&self) -> usize {
        match self {
            RawSpace::Discrete(n) => n.len(),
            RawSpace::Box { low, .. } => low.len(),
        }
    }

    /// Whether there are no components.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Floats of the encoded observation (one-hot for discrete components).
    fn encoded_len(&self) -> usize {
        match self {
            RawSpace::Discrete(n) => n.iter().sum(),
            RawSpace::Box { low, .. } => low.len(),
        }
    }
}

/// One POPGym task, as the Python package writes it: raw observations (integers stored
/// as `f32`), flat actions, its own episode ends.
pub trait Task: Clone + Send + Serialize + DeserializeOwned + 'static {
    /// The raw observation space.
    fn raw_space(&self) -> RawSpace;
    /// The action space's components (`[n]` for `Discrete(n)`, `[rows, cols]` for
    /// `MultiDiscrete`); actions are flattened row-major.
    fn action_nvec(&self) -> Vec<usize>;
    /// Starts an episode, drawing its hidden state from `rng`; writes the raw observation.
    fn reset(&mut self, rng: &mut SeededRng, raw: &mut [f32]);
    /// Applies a flat action in `0..prod(action_nvec)` and writes the raw observation.
    fn step(&mut self, action: usize, rng: &mut SeededRng, raw: &mut [f32]) -> StepOutcome;
    /// The action of a player who sees the hidden state (the best-known policy).
    fn oracle(&self) -> Option<usize> {
        None
    }
    /// [`Env::memory_span`]: how far back the best action's cue can lie, where the task
    /// fixes it.
    fn memory_span(&self) -> Option<usize> {
        None
    }
}

/// A POPGym task with POPGym's baseline encoding (the module doc describes it).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Popgym<T> {
    #[serde(skip, default = "unnamed")]
    id: &'static str,
    /// The task.
    pub task: T,
    raw: Vec<f32>,
    prev_action: usize,
    first: bool,
    rng: SeededRng,
    #[serde(skip)]
    layout: Layout,
}

fn unnamed() -> &'static str {
    "popgym"
}

/// Where each part of the encoded observation starts.
#[derive(Debug, Clone, Default)]
struct Layout {
    /// Start of each raw component's one-hot block; empty for a Box (copied as is).
    raw: Vec<usize>,
    /// The action's components and the start of each one's one-hot block.
    action_nvec: Vec<usize>,
    action: Vec<usize>,
    actions: usize,
    dim: usize,
}

impl<T: Task> Popgym<T> {
    /// `task` registered as `id`.
    pub fn new(id: &'static str, task: T) -> Self {
        let raw = vec![0.0; task.raw_space().len()];
        let layout = Layout::of(&task);
        Popgym {
            id,
            task,
            raw,
            prev_action: 0,
            first: true,
            rng: SeededRng::seed_from_u64(0),
            layout,
        }
    }

    /// The raw observation of the last reset or step, as POPGym returns it.
    pub fn raw(&self) -> &[f32] {
        &self.raw
    }

    fn encode(&self, obs: &mut [f32]) {
        // Every step: only the layout computed at construction, no allocation.
        obs.fill(0.0);
        if self.layout.raw.is_empty() {
            obs[..self.raw.len()].copy_from_slice(&self.raw);
        } else {
            for (r, start) in self.raw.iter().zip(&self.layout.raw) {
                obs[start + *r as usize] = 1.0;
            }
        }
        let l = &self.layout;
        let mut rest = self.prev_action;
        for (i, (n, start)) in l.action_nvec.iter().zip(&l.action).enumerate().rev() {
            let a = if i == 0 { rest } else { rest % n };
            obs[start + a] = 1.0;
            rest /= n;
        }
        obs[self.layout.dim - 1] = self.first as u8 as f32;
    }
}

impl Layout {
    fn of<T: Task>(task: &T) -> Layout {
        let raw_space = task.raw_space();
        let raw = match &raw_space {
            RawSpace::Discrete(nvec) => one_hot_starts(nvec, 0).0,
            RawSpace::Box { .. } => vec![],
        };
        let nvec = task.action_nvec();
        let (action, end) = one_hot_starts(&nvec, raw_space.encoded_len());
        Layout {
            raw,
            actions: nvec.iter().product(),
            action_nvec: nvec,
            action,
            dim: end + 1,
        }
    }
}

/// Where the one-hot block of each component of sizes `nvec` starts when the blocks are
/// laid end to end from `at`, and where the last one ends.
fn one_hot_starts(nvec: &[usize], mut at: usize) -> (Vec<usize>, usize) {
    let starts = nvec
        .iter()
        .map(|n| {
            at += n;
            at - n
        })
        .collect();
    (starts, at)
}

impl<T: Task> Env for Popgym<T> {
    fn id(&self) -> &str {
        self.id
    }

    fn memory_span(&self) -> Option<usize> {
        self.task.memory_span()
    }

    /// The previous action's one-hot blocks and the first-step flag, which follow the
    /// observation proper.
    fn extra_inputs(&self) -> usize {
        self.layout.dim - self.task.raw_space().encoded_len()
    }

    fn observation_space(&self) -> Space {
        let dim = self.layout.dim;
        let (mut low, mut high) = (vec![0.0; dim], vec![1.0; dim]);
        if let RawSpace::Box { low: l, high: h } = self.task.raw_space() {
            low[..l.len()].copy_from_slice(&l);
            high[..h.len()].copy_from_slice(&h);
        }
        Space::Box {
            low,
            high,
            shape: vec![dim],
        }
    }

    fn action_space(&self) -> Space {
        Space::Discrete(self.layout.actions)
    }

    fn reset_into(&mut self, seed: Option<u64>, obs: &mut [f32]) -> Info {
        if let Some(seed) = seed {
            self.rng = SeededRng::seed_from_u64(seed);
        }
        self.task.reset(&mut self.rng, &mut self.raw);
        self.prev_action = 0;
        self.first = true;
        self.encode(obs);
        Info::new()
    }

    fn step_into(&mut self, action: usize, obs: &mut [f32]) -> Result<StepOutcome, EnvError> {
        if action >= self.layout.actions {
            return Err(EnvError::InvalidAction {
                action,
                space: self.action_space(),
            });
        }
        let out = self.task.step(action, &mut self.rng, &mut self.raw);
        self.prev_action = action;
        self.first = false;
        self.encode(obs);
        Ok(out)
    }

    fn oracle_action(&self) -> Option<usize> {
        self.task.oracle()
    }

    fn save_state(&self) -> serde_json::Value {
        to_state(self)
    }

    fn load_state(&mut self, state: &serde_json::Value) -> Result<(), EnvError> {
        let mut s: Popgym<T> = from_state(state)?;
        s.id = self.id;
        s.layout = Layout::of(&s.task);
        if s.layout.dim != self.layout.dim || s.raw.len() != self.raw.len() {
            return Err(EnvError::State(format!(
                "{}: the saved task has another size",
                self.id
            )));
        }
        *self = s;
        Ok(())
    }
}

/// The difficulty levels, as POPGym names them.
pub const LEVELS: [&str; 3] = ["Easy", "Medium", "Hard"];

/// The POPGym task families: name and one line on what it tests.
pub const FAMILIES: &[(&str, &str)] = &[
    (
        "RepeatFirst",
        "say the suit of the episode's first card at every step (diagnostic)",
    ),
    (
        "RepeatPrevious",
        "say the suit of the card seen k steps ago (k = 4/32/64; diagnostic)",
    ),
    (
        "Autoencode",
        "watch a deck of cards, then say their suits in reverse order (diagnostic)",
    ),
    (
        "CountRecall",
        "say how many times the queried card value has been dealt (diagnostic, noisy)",
    ),
    (
        "HigherLower",
        "guess whether the next card ranks higher or lower; counting cards helps (game)",
    ),
    (
        "MultiarmedBandit",
        "an episodic bandit whose arms pay with unknown probabilities (noisy)",
    ),
    (
        "Concentration",
        "flip cards two at a time to find matching pairs (game)",
    ),
    (
        "Battleship",
        "find the ships on a hidden board from hit/miss replies (game)",
    ),
    (
        "MineSweeper",
        "clear a hidden minefield from the neighbour counts (game)",
    ),
    (
        "LabyrinthEscape",
        "find the exit of a new maze from a 3x3 window (navigation)",
    ),
    (
        "LabyrinthExplore",
        "visit every cell of a new maze from a 3x3 window (navigation)",
    ),
    (
        "PositionOnlyCartPole",
        "CartPole from the cart position and pole angle only (control)",
    ),
    (
        "VelocityOnlyCartPole",
        "CartPole from the two velocities only (control)",
    ),
    (
        "NoisyPositionOnlyCartPole",
        "position-only CartPole with Gaussian observation noise (control)",
    ),
];

/// The environment `popgym/<family><level>`, or `None` for another name.
pub fn make(name: &str) -> Option<Box<dyn Env>> {
    let name = ids().iter().find(|(id, _)| *id == name)?.0;
    let short = name.strip_prefix("popgym/")?;
    let (family, level) = LEVELS
        .iter()
        .enumerate()
        .find_map(|(i, l)| short.strip_suffix(l).map(|f| (f, i)))?;
    fn boxed<T: Task>(id: &'static str, t: T) -> Option<Box<dyn Env>> {
        Some(Box::new(Popgym::new(id, t)))
    }
    fn at<X: Copy>(level: usize, x: [X; 3]) -> X {
        x[level]
    }
    match family {
        "RepeatFirst" => boxed(name, RepeatFirst::new(at(level, [1, 8, 16]))),
        "RepeatPrevious" => {
            let (decks, k) = at(level, [(1, 4), (2, 32), (3, 64)]);
            boxed(name, RepeatPrevious::new(decks, k))
        }
        "Autoencode" => boxed(name, Autoencode::new(at(level, [1, 2, 3]))),
        "CountRecall" => {
            let (decks, ty) = at(
                level,
                [
                    (1, DeckType::Colors),
                    (2, DeckType::Suits),
                    (4, DeckType::Ranks),
                ],
            );
            boxed(name, CountRecall::new(decks, ty))
        }
        "HigherLower" => boxed(name, HigherLower::new(at(level, [1, 2, 3]))),
        "MultiarmedBandit" => {
            let (arms, len) = at(level, [(10, 200), (20, 400), (30, 600)]);
            boxed(name, MultiarmedBandit::new(arms, len))
        }
        "Concentration" => {
            let (decks, ty) = at(
                level,
                [
                    (1, DeckType::Colors),
                    (2, DeckType::Colors),
                    (1, DeckType::Ranks),
                ],
            );
            boxed(name, Concentration::new(decks, ty))
        }
        "Battleship" => boxed(name, Battleship::new(at(level, [8, 10, 12]), &[2, 3, 3, 4])),
        "MineSweeper" => {
            let (side, mines) = at(level, [(4, 2), (6, 6), (8, 10)]);
            boxed(name, MineSweeper::new(side, side, mines))
        }
        "LabyrinthEscape" => boxed(name, Labyrinth::new(at(level, [10, 14, 18]), 1024, false)),
        "LabyrinthExplore" => boxed(name, Labyrinth::new(at(level, [10, 14, 18]), 1024, true)),
        "PositionOnlyCartPole" => boxed(
            name,
            PopCartPole::new(CartPoleView::Position, at(level, [200, 400, 600]), 0.0),
        ),
        "VelocityOnlyCartPole" => boxed(
            name,
            PopCartPole::new(CartPoleView::Velocity, at(level, [200, 400, 600]), 0.0),
        ),
        "NoisyPositionOnlyCartPole" => boxed(
            name,
            PopCartPole::new(CartPoleView::Position, 200, at(level, [0.1, 0.2, 0.3])),
        ),
        _ => None,
    }
}

/// Every `popgym/<family><level>` id with its description, families in POPGym's order.
pub fn ids() -> &'static [(&'static str, String)] {
    static IDS: std::sync::LazyLock<Vec<(&'static str, String)>> = std::sync::LazyLock::new(|| {
        FAMILIES
            .iter()
            .flat_map(|(family, what)| {
                LEVELS.iter().map(move |level| {
                    let id = format!("popgym/{family}{level}");
                    (
                        &*Box::leak(id.into_boxed_str()),
                        format!("POPGym {family}, {level}: {what}"),
                    )
                })
            })
            .collect()
    });
    &IDS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_id_builds_and_its_observation_lies_in_its_space() {
        for (id, _) in ids() {
            let mut env = make(id).unwrap_or_else(|| panic!("{id} does not build"));
            let (obs, _) = env.reset(Some(3), None);
            assert!(env.observation_space().contains(&obs), "{id}: {obs:?}");
            let Space::Discrete(n) = env.action_space() else {
                panic!("{id}: actions are not discrete")
            };
            let step = env.step(n - 1).unwrap();
            assert!(env.observation_space().contains(&step.obs), "{id}");
            assert!(env.step(n).is_err(), "{id} takes an action out of range");
        }
    }

    #[test]
    fn the_encoding_is_one_hot_observation_then_previous_action_then_first_flag() {
        // MineSweeperEasy: Discrete(3) observation, 4x4 actions flattened.
        let mut env = make("popgym/MineSweeperEasy").unwrap();
        let (obs, _) = env.reset(Some(1), None);
        assert_eq!(obs.len(), 3 + 4 + 4 + 1);
        assert_eq!(&obs[..3], &[1.0, 0.0, 0.0]);
        assert_eq!(&obs[3..11], &[1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0]);
        assert_eq!(obs[11], 1.0);
        let step = env.step(4 * 2 + 3).unwrap();
        // Row 2, column 3.
        assert_eq!(&step.obs[3..11], &[0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0]);
        assert_eq!(step.obs[11], 0.0);
        assert_eq!(step.obs[..3].iter().sum::<f32>(), 1.0);
    }
}
