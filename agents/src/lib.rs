#![deny(missing_docs)]
//! The A2C / V-trace actor–learner of rlcpc (Espeholt et al. 2018, IMPALA; Mnih et al. 2016, A2C).
//!
//! Main types: [`Actor`] steps a [`rlcpc_envs::VecEnv`] with an [`ActorPolicy`] and
//! produces [`Rollout`]s; [`Runner`] runs actors on threads (sync or async) and hands
//! batches to the caller; [`ActorPool`] is that contract as the training loop sees it
//! (rlcpc's MPI pool is the other one); [`Learner`] turns a batch into one optimiser step of the A2C
//! loss (plus an optional [`AuxLoss`]) and returns [`UpdateStats`].
//!
//! Design decision: the learner is generic over the network ([`PolicyNetwork`]) and the
//! auxiliary loss ([`AuxLoss`]) through small traits, so this crate knows nothing of
//! encoders or CPC; the `rlcpc` crate supplies both. Actors run their own inference path
//! ([`ActorPolicy`]) on plain parameter snapshots ([`ParamSnapshot`]) and never share
//! storage with the learner. Returns (GAE, V-trace) are computed on plain slices, outside
//! autograd, in [`returns`].

mod actor;
mod config;
mod error;
mod learner;
pub mod loss;
mod network;
pub mod optim;
pub mod returns;
mod rollout;
mod runner;

pub use actor::{argmax, sample_action, Actor};
pub use config::{AlgoConfig, Mode, OptimConfig, OptimKind, RunnerConfig};
pub use error::AgentError;
pub use learner::{Learner, Phases, UpdateStats};
pub use network::{
    ActorPolicy, AuxBatch, AuxLoss, AuxOutput, HostAuxOutput, HostGrads, LeanNetwork, LeanOutputs,
    PolicyNetwork, UnrollOutput,
};
pub use optim::Optimizer;
pub use rollout::{ParamSnapshot, Rollout};
pub use runner::{ActorPool, Runner};
