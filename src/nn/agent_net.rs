//! The agent's network: encoder → optional LSTM core → policy and value heads
//! (IMPALA's architecture, Espeholt et al. 2018 fig. 3, with an MLP for vector inputs).

use candle_core::{DType, Device, Module, Tensor, Var, D};
use candle_nn::{Linear, VarBuilder, VarMap};
use rlcpc_agents::{PolicyNetwork, UnrollOutput};

use super::encoders::{Encoder, EncoderSpec};
use super::init::named_vars;
use super::lstm::Lstm;
use super::spec::NetSpec;
use crate::config::CoreKind;

/// The learner's network.
pub struct AgentNet {
    pub spec: NetSpec,
    pub encoder: Encoder,
    core: Option<Lstm>,
    policy: Linear,
    value: Linear,
    varmap: VarMap,
    /// The lean path, when switched on ([`AgentNet::use_lean`]).
    lean: Option<super::lean::LeanNet>,
}

impl AgentNet {
    /// Builds the network from parameters already in `varmap` (see [`NetSpec::init`]).
    pub fn new(spec: NetSpec, varmap: &VarMap, device: &Device) -> candle_core::Result<Self> {
        let vb = VarBuilder::from_varmap(varmap, DType::F32, device);
        let encoder = Encoder::new(spec.encoder.clone(), vb.pp("encoder"))?;
        let core = match spec.core {
            CoreKind::None => None,
            CoreKind::Lstm => Some(Lstm::new(
                spec.core_in_dim(),
                spec.lstm_hidden,
                vb.pp("core.lstm"),
            )?),
        };
        let d = spec.context_dim();
        Ok(AgentNet {
            policy: candle_nn::linear(d, spec.num_actions, vb.pp("policy"))?,
            value: candle_nn::linear(d, 1, vb.pp("value"))?,
            encoder,
            core,
            spec,
            varmap: varmap.clone(),
            lean: None,
        })
    }

    /// Switches the learner onto the lean path ([`super::lean::LeanNet`]); false (and
    /// nothing changes) when this network has none.
    pub fn use_lean(&mut self) -> bool {
        self.lean = super::lean::LeanNet::new(&self.spec);
        self.lean.is_some()
    }

    /// Encoder and core over `obs` `[T, B, ...]`: returns `(z [T,B,Dz], c [T,B,Dc], final state)`.
    fn features(
        &self,
        obs: &Tensor,
        first: &[f32],
        state: &Tensor,
    ) -> candle_core::Result<(Tensor, Tensor, Tensor)> {
        let (t, b) = (obs.dim(0)?, obs.dim(1)?);
        let x = obs.flatten_to(1)?; // [T*B, ...]
        let e = self.spec.extra_inputs;
        let (x, extra) = match e {
            0 => (x, None),
            _ => {
                let d = x.dim(1)?;
                (x.narrow(1, 0, d - e)?, Some(x.narrow(1, d - e, e)?))
            }
        };
        let z = self.encoder.forward(&x)?;
        let z = z.reshape((t, b, z.dim(D::Minus1)?))?;
        match &self.core {
            None => Ok((z.clone(), z, state.clone())),
            Some(lstm) => {
                let input = match extra {
                    None => z.clone(),
                    Some(x) => Tensor::cat(&[&z, &x.reshape((t, b, e))?], 2)?,
                };
                let (c, s) = lstm.unroll(&input, first, state)?;
                Ok((z, c, s))
            }
        }
    }

    fn heads(&self, c: &Tensor) -> candle_core::Result<(Tensor, Tensor)> {
        let (t, b, d) = c.dims3()?;
        let flat = c.reshape((t * b, d))?;
        let logits = self
            .policy
            .forward(&flat)?
            .reshape((t, b, self.spec.num_actions))?;
        let values = self.value.forward(&flat)?.reshape((t, b))?;
        Ok((logits, values))
    }

    /// One step for B environments (the actors' candle path): `obs` `[B, ...]`, state
    /// `[B, S]` → `(logits [B, A], values [B], new state)`.
    pub fn step(
        &self,
        obs: &Tensor,
        state: &Tensor,
    ) -> candle_core::Result<(Tensor, Tensor, Tensor)> {
        let b = obs.dim(0)?;
        let (_, c, s) = self.features(&obs.unsqueeze(0)?, &vec![0.0; b], state)?;
        let (logits, values) = self.heads(&c)?;
        Ok((logits.squeeze(0)?, values.squeeze(0)?, s))
    }
}

impl PolicyNetwork for AgentNet {
    fn unroll(
        &self,
        obs: &Tensor,
        first: &Tensor,
        init_state: &Tensor,
    ) -> candle_core::Result<UnrollOutput> {
        let first_host = first.flatten_all()?.to_vec1::<f32>()?;
        let (z, c, _) = self.features(obs, &first_host, init_state)?;
        let (logits, values) = self.heads(&c)?;
        Ok(UnrollOutput {
            logits,
            values,
            z,
            c,
        })
    }

    fn vars(&self) -> Vec<(String, Var)> {
        named_vars(&self.varmap, |k| !k.starts_with("aux."))
    }

    fn state_size(&self) -> usize {
        self.spec.state_size()
    }

    fn lean(&mut self) -> Option<&mut dyn rlcpc_agents::LeanNetwork> {
        self.lean
            .as_mut()
            .map(|l| l as &mut dyn rlcpc_agents::LeanNetwork)
    }
}

impl crate::checkpoint::ParamCount for NetSpec {
    /// Encoder, core and heads; `u128::MAX` when the observation shape does not fit the
    /// encoder's input or has more than 2^28 values.
    fn min_params(&self) -> u128 {
        let obs = self
            .obs_shape
            .iter()
            .try_fold(1usize, |a, &x| a.checked_mul(x))
            .filter(|&n| n <= 1 << 28);
        let Some(obs) = obs else {
            return u128::MAX;
        };
        let fits = match &self.encoder {
            EncoderSpec::Mlp { in_dim, .. } => in_dim.checked_add(self.extra_inputs) == Some(obs),
            EncoderSpec::Conv {
                height,
                width,
                channels,
                ..
            } => self.obs_shape == [*height, *width, *channels],
            _ => false,
        };
        if !fits || self.num_actions == 0 {
            return u128::MAX;
        }
        let enc = self.encoder.min_params();
        if enc == u128::MAX {
            return enc;
        }
        let core = match self.core {
            CoreKind::None => 0,
            CoreKind::Lstm => 4u128
                .saturating_mul(self.lstm_hidden as u128)
                .saturating_mul((self.core_in_dim() + self.lstm_hidden) as u128),
        };
        let heads = (self.num_actions as u128 + 1).saturating_mul(self.context_dim() as u128);
        enc.saturating_add(core).saturating_add(heads)
    }
}
