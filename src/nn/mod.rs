//! Networks: the shared encoders, the LSTM core, the agent's network, its parameter
//! initialisation, and the lean (plain Rust) path of the MLP and LSTM networks for
//! learner and actors.

mod actor_policy;
mod agent_net;
pub mod audio;
pub mod conv;
pub mod encoders;
pub mod fast;
pub mod flops;
pub mod gemm;
pub mod gru;
pub mod init;
pub mod lean;
pub mod lstm;
pub mod patches;
pub mod resnet;
mod spec;
pub mod text;
pub mod views;

pub use actor_policy::{actor_policy, CandleActor};
pub use agent_net::AgentNet;
pub use lean::{LeanActor, LeanNet};
pub use spec::NetSpec;
