//! The auxiliary heads on the agent's z and c, each an [`rlcpc_agents::AuxLoss`]: CPC
//! ([`cpc`]), CPC|A ([`cpca`]) and CURL ([`curl`]). The contrastive losses and their
//! sampling are shared with the standalone trainers (`crate::contrastive`).

pub mod cpc;
pub mod cpca;
pub mod curl;

use rlcpc_agents::AgentError;
use rlcpc_envs::SeededRng;

/// An auxiliary loss's generator state for a checkpoint ([`AuxLoss::save_rng`]).
pub fn rng_state(rng: &SeededRng) -> serde_json::Value {
    serde_json::to_value(rng).expect("generator state serialises")
}

/// The generator restored from [`rng_state`]'s value ([`AuxLoss::load_rng`]).
pub fn rng_from_state(v: &serde_json::Value) -> Result<SeededRng, AgentError> {
    serde_json::from_value(v.clone()).map_err(|e| AgentError::State(e.to_string()))
}
