//! Environments for rlcpc, behind a Gymnasium-style API, with no ML dependency:
//! `CartPole-v1` (checked against Gymnasium), the memory tasks `MaskedCartPole-v1` and
//! `TMaze-v0`, the first-person [`lab`] tasks modelled on the CPC paper's five
//! DeepMind Lab levels, the [`popgym`] suite (`popgym/RepeatPreviousEasy`, ...), and any
//! Python Gymnasium environment as `gymnasium:NAME` ([`gymnasium`]: one Python process
//! per actor worker stepping a `gymnasium.vector` env, or one per environment).
//!
//! Main types: [`Env`] (Gymnasium's `reset(seed, options) -> (obs, info)` and
//! `step(action) -> (obs, reward, terminated, truncated, info)`), [`Space`], the
//! registry ([`make`], [`registry`]) and [`VecEnv`], which steps a slice of environments
//! with same-step auto-reset and keeps each finished episode's final observation so
//! that a learner can bootstrap from it at truncation.
//!
//! Design decision: the hot path writes observations into caller-owned buffers
//! ([`Env::reset_into`], [`Env::step_into`]) so that stepping allocates nothing; the
//! allocating Gymnasium-shaped calls ([`Env::reset`], [`Env::step`]) are thin wrappers.
//! The published `gymnasium` crate (0.0.1) is an empty shell around Python bindings with
//! no `Env` trait, so the API is defined here, following Gymnasium 1.x semantics.

#![deny(missing_docs)]

mod cartpole;
mod config;
mod env;
pub mod gymnasium;
mod hurry;
pub mod lab;
mod options;
pub mod popgym;
mod registry;
pub mod seeding;
mod tmaze;
mod vec_env;

/// The seedable generator of every environment and actor: fast, and its state serialises.
pub type SeededRng = rand_xoshiro::Xoshiro256PlusPlus;

pub use cartpole::{CartPole, CartPoleState, MaskedCartPole};
pub use config::{EnvConfig, Options, Vector};
pub use env::{Env, EnvError, Image, Info, Space, Step, StepOutcome};
pub use registry::{check, entry, make, make_vec, registry, EnvEntry, TimeLimit};
pub use seeding::stream_seed;
pub use tmaze::{TMaze, TMazeOptions};
pub use vec_env::{BatchEnv, VecEnv, VecStep};
