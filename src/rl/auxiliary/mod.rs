//! The auxiliary heads on the agent's z and c, each an [`rlcpc_agents::AuxLoss`]: CPC
//! ([`cpc`]), CPC|A ([`cpca`]) and CURL ([`curl`]). The contrastive losses and their
//! sampling are shared with the standalone trainers (`crate::contrastive`).
//!
//! Adding a head is one file here (the loss, a [`Head`] that builds it, and a
//! [`HeadState`] for what every head keeps) and one arm in [`head`], beside its variant
//! of [`AuxConfig`] (its own keys) in `config/auxiliary.rs`.

pub mod cpc;
pub mod cpca;
pub mod curl;

use candle_core::{Device, Var};
use candle_nn::VarMap;
use rand::SeedableRng;
use rlcpc_agents::{AgentError, AuxLoss};
use rlcpc_envs::SeededRng;

use crate::config::{AuxConfig, Invalid};
use crate::nn::init::Init;
use crate::nn::NetSpec;

/// A head with its keys, as `[aux]` configures it: what the training loop's set-up asks
/// of it.
pub trait Head {
    /// Checks of the head's keys that need the network (e.g. CURL's image shape); the
    /// config's own values were checked at load.
    fn check(&self, _spec: &NetSpec) -> Result<(), Invalid> {
        Ok(())
    }

    /// Its parameters under `aux.`, initialised into `init` (seeded, after the network's).
    fn init(&self, spec: &NetSpec, init: &mut Init) -> candle_core::Result<()>;

    /// The head over the parameters in `varmap`, its generator seeded from `seed`.
    fn build(
        &self,
        spec: &NetSpec,
        varmap: &VarMap,
        device: &Device,
        seed: u64,
    ) -> candle_core::Result<Box<dyn AuxLoss>>;
}

/// The head `aux` configures; `None` for `aux.kind = "none"`.
pub fn head(aux: &AuxConfig) -> Option<Box<dyn Head + '_>> {
    match aux {
        AuxConfig::None => None,
        AuxConfig::Cpc(c) => Some(Box::new(cpc::CpcHead(c))),
        AuxConfig::Cpca(c) => Some(Box::new(cpca::CpcaHead(c))),
        AuxConfig::Curl(c) => Some(Box::new(curl::CurlHead(c))),
    }
}

/// What every head keeps beside its own weights: the run's variables (its own are those
/// under `aux.`) and its sampling generator, saved in checkpoints.
pub struct HeadState {
    pub varmap: VarMap,
    pub rng: SeededRng,
}

impl HeadState {
    /// Over `varmap`, the generator seeded from `seed`.
    pub fn new(varmap: &VarMap, seed: u64) -> Self {
        HeadState {
            varmap: varmap.clone(),
            rng: SeededRng::seed_from_u64(seed),
        }
    }

    /// The head's own variables ([`AuxLoss::vars`]).
    pub fn vars(&self) -> Vec<(String, Var)> {
        crate::nn::init::named_vars(&self.varmap, |k| k.starts_with("aux."))
    }

    /// The generator's state for a checkpoint ([`AuxLoss::save_rng`]).
    pub fn save_rng(&self) -> serde_json::Value {
        serde_json::to_value(&self.rng).expect("generator state serialises")
    }

    /// The generator restored from [`HeadState::save_rng`]'s value ([`AuxLoss::load_rng`]).
    pub fn load_rng(&mut self, v: &serde_json::Value) -> Result<(), AgentError> {
        self.rng =
            serde_json::from_value(v.clone()).map_err(|e| AgentError::State(e.to_string()))?;
        Ok(())
    }
}
