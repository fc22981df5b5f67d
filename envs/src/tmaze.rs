//! The passive T-maze: Bakker's T-maze (2002, "Reinforcement learning with long short-term
//! memory") in the passive form of Ni et al. (2023, "When do transformers shine in RL?"),
//! which isolates memory from exploration: the agent is carried down the corridor.
//!
//! Observations are Bakker's three bits: `011` (start, cue up), `110` (start, cue down),
//! `101` (corridor), `010` (junction): the cue is visible on the first step only, so the
//! agent must remember it for the length of the corridor. Actions: 0 up, 1 down. Each
//! step moves the agent one cell along the corridor whatever it does; at the junction the
//! action ends the episode with +1 if it matches the cue and −1 otherwise. An episode is
//! `corridor_length + 1` steps; a memoryless policy averages 0, the oracle 1.
//!
//! `cue_every_step = true` is the memoryless twin, a control for memory studies: a
//! fourth observation component shows the cue (1 up, 0 down) at every step, so a
//! reactive policy solves it and an auxiliary loss has no memory to help with.

use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::env::{from_state, to_state, Env, EnvError, Info, Space, StepOutcome};
use crate::options::EnvOptions;
use crate::SeededRng;

/// `TMaze-v0`'s options.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TMazeOptions {
    /// Forward steps from the start to the junction: 20, in 1..=100000.
    pub corridor_length: usize,
    /// Show the cue at every step (a fourth component): the memoryless twin.
    pub cue_every_step: bool,
}

impl Default for TMazeOptions {
    fn default() -> Self {
        TMazeOptions {
            corridor_length: 20,
            cue_every_step: false,
        }
    }
}

impl EnvOptions for TMazeOptions {
    const NOTES: &'static [(&'static str, &'static str)] = &[
        (
            "corridor_length",
            "(episodes last corridor_length + 1 steps)",
        ),
        (
            "cue_every_step",
            "(the memoryless twin: a 4th component shows the cue at every step)",
        ),
    ];

    fn check(&self) -> Result<(), (&'static str, &'static str)> {
        if self.corridor_length > 100_000 {
            return Err(("corridor_length", "must be at most 100000"));
        }
        if self.corridor_length == 0 {
            return Err(("corridor_length", "must be at least 1"));
        }
        Ok(())
    }
}

/// The passive T-maze (the module doc describes it).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TMaze {
    /// Forward steps from the start to the junction.
    pub corridor_length: usize,
    /// Position in `0..=corridor_length`.
    pub pos: usize,
    /// True: the cue says up.
    pub cue_up: bool,
    /// The memoryless twin: the cue is a fourth observation component at every step.
    #[serde(default)]
    pub cue_every_step: bool,
    rng: SeededRng,
}

impl TMaze {
    /// A maze whose junction lies `corridor_length` steps from the start.
    pub fn new(corridor_length: usize) -> Self {
        TMaze {
            corridor_length,
            pos: 0,
            cue_up: true,
            cue_every_step: false,
            rng: SeededRng::seed_from_u64(0),
        }
    }

    /// The memoryless twin of [`TMaze::new`]: the cue shown at every step.
    pub fn with_cue_every_step(corridor_length: usize) -> Self {
        TMaze {
            cue_every_step: true,
            ..TMaze::new(corridor_length)
        }
    }

    fn obs_dim(&self) -> usize {
        3 + self.cue_every_step as usize
    }

    fn write_obs(&self, obs: &mut [f32]) {
        let bits: [f32; 3] = if self.pos == 0 {
            if self.cue_up {
                [0.0, 1.0, 1.0]
            } else {
                [1.0, 1.0, 0.0]
            }
        } else if self.pos == self.corridor_length {
            [0.0, 1.0, 0.0]
        } else {
            [1.0, 0.0, 1.0]
        };
        obs[..3].copy_from_slice(&bits);
        if self.cue_every_step {
            obs[3] = self.cue_up as u8 as f32;
        }
    }
}

impl Env for TMaze {
    fn id(&self) -> &str {
        "TMaze"
    }

    fn state_names(&self) -> Vec<String> {
        ["position", "cue_up"].map(String::from).to_vec()
    }

    fn true_state(&self) -> Vec<f32> {
        vec![self.pos as f32, self.cue_up as u8 as f32]
    }

    fn observation_space(&self) -> Space {
        let d = self.obs_dim();
        Space::Box {
            low: vec![0.0; d],
            high: vec![1.0; d],
            shape: vec![d],
        }
    }

    fn action_space(&self) -> Space {
        Space::Discrete(2)
    }

    fn reset_into(&mut self, seed: Option<u64>, obs: &mut [f32]) -> Info {
        if let Some(seed) = seed {
            self.rng = SeededRng::seed_from_u64(seed);
        }
        self.pos = 0;
        self.cue_up = self.rng.random::<bool>();
        self.write_obs(obs);
        Info::new()
    }

    fn step_into(&mut self, action: usize, obs: &mut [f32]) -> Result<StepOutcome, EnvError> {
        if action >= 2 {
            return Err(EnvError::InvalidAction {
                action,
                space: self.action_space(),
            });
        }
        let at_junction = self.pos == self.corridor_length;
        let reward = if !at_junction {
            self.pos += 1;
            0.0
        } else if (action == 0) == self.cue_up {
            1.0
        } else {
            -1.0
        };
        self.write_obs(obs);
        Ok(StepOutcome {
            reward,
            terminated: at_junction,
            truncated: false,
        })
    }

    fn oracle_action(&self) -> Option<usize> {
        Some(if self.cue_up { 0 } else { 1 })
    }

    fn memory_span(&self) -> Option<usize> {
        Some(if self.cue_every_step {
            1
        } else {
            self.corridor_length + 1
        })
    }

    fn save_state(&self) -> serde_json::Value {
        to_state(self)
    }

    fn load_state(&mut self, state: &serde_json::Value) -> Result<(), EnvError> {
        *self = from_state(state)?;
        Ok(())
    }
}
