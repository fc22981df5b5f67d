//! Networks: the shared encoders, the LSTM core, the agent's network, its parameter
//! initialisation, and the actors' lean inference path.

mod actor_policy;
mod agent_net;
pub mod audio;
pub mod conv;
pub mod encoders;
pub mod fast;
pub mod gru;
pub mod init;
pub mod lstm;
pub mod patches;
pub mod resnet;
pub mod text;
pub mod views;

pub use actor_policy::{actor_policy, CandleActor, LeanActor};
pub use agent_net::{AgentNet, NetSpec};
