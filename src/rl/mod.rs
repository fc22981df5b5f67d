//! Reinforcement learning: A2C with V-trace on environments, the recurrent agent and its
//! auxiliary heads.
//!
//! - [`train`]: the training loop, its preflight and checkpoints; the actors come from an
//!   [`train::ActorSource`] (this process's threads, or `distributed`'s MPI ranks under
//!   feature `mpi`).
//! - [`auxiliary`]: the heads on z and c (CPC, CPC|A, CURL).
//! - [`eval`]: evaluation, recording, exporting an agent's encoder; [`render`]: GIFs.
//! - [`study`]: pre-registered comparisons of arms over tasks and seeds (`rlcpc study`).

pub mod auxiliary;
#[cfg(feature = "mpi")]
pub mod distributed;
pub mod eval;
pub mod render;
pub mod study;
pub mod train;
