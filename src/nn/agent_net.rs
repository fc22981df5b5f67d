//! The agent's network: encoder → optional LSTM core → policy and value heads
//! (IMPALA's architecture, Espeholt et al. 2018 fig. 3, with an MLP for vector inputs).

use candle_core::{DType, Device, Module, Tensor, Var, D};
use candle_nn::{Linear, VarBuilder, VarMap};
use rlcpc_agents::{PolicyNetwork, UnrollOutput};
use rlcpc_envs::Space;
use serde::{Deserialize, Serialize};

use super::encoders::{Encoder, EncoderSpec};
use super::init::Init;
use super::lstm::Lstm;
use crate::config::{CoreKind, EncoderKind, ExtraInputs, ModelConfig};

/// The network's shape, derived from the model config and the spaces; stored in
/// checkpoints so that `eval` and `export-encoder` rebuild the same network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetSpec {
    pub encoder: EncoderSpec,
    pub core: CoreKind,
    pub lstm_hidden: usize,
    pub num_actions: usize,
    /// Shape of one observation.
    pub obs_shape: Vec<usize>,
    /// E: the observation's last E values (POPGym's previous action and first-step flag,
    /// [`rlcpc_envs::Env::extra_inputs`]) bypass the encoder and join its output z at
    /// the core's input, so that z, which CPC predicts, embeds the observation alone
    /// (`model.extra_inputs = "core"`). 0: everything goes through the encoder.
    #[serde(default)]
    pub extra_inputs: usize,
}

impl NetSpec {
    pub fn new(model: &ModelConfig, obs: &Space, actions: &Space) -> Result<NetSpec, String> {
        let num_actions = match actions {
            Space::Discrete(n) => *n,
            other => return Err(format!("only discrete actions are supported, got {other}")),
        };
        let obs_shape = obs.shape();
        let image = obs_shape.len() == 3;
        let kind = match model.encoder {
            EncoderKind::Auto if image => EncoderKind::Conv,
            EncoderKind::Auto => EncoderKind::Mlp,
            k => k,
        };
        let encoder = match kind {
            EncoderKind::Conv if !image => {
                return Err(format!(
                    "model.encoder = \"conv\" needs [H, W, C] image observations, got {obs}"
                ))
            }
            EncoderKind::Conv => {
                let high = match obs {
                    Space::Box { high, .. } => high.iter().cloned().fold(0.0, f32::max),
                    _ => 1.0,
                };
                EncoderSpec::Conv {
                    height: obs_shape[0],
                    width: obs_shape[1],
                    channels: obs_shape[2],
                    fc: model.conv_fc,
                    input_scale: if high > 1.0 { 1.0 / high } else { 1.0 },
                }
            }
            _ => EncoderSpec::Mlp {
                in_dim: obs.flat_dim(),
                hidden: model.mlp_hidden.clone(),
                activation: model.activation,
            },
        };
        Ok(NetSpec {
            encoder,
            core: model.core,
            lstm_hidden: model.lstm_hidden,
            num_actions,
            obs_shape,
            extra_inputs: 0,
        })
    }

    /// The network for `env`: [`NetSpec::new`], with the environment's extra inputs
    /// routed to the core where the model has an LSTM core and an MLP encoder and
    /// `model.extra_inputs = "core"`.
    pub fn for_env(model: &ModelConfig, env: &dyn rlcpc_envs::Env) -> Result<NetSpec, String> {
        let mut spec = NetSpec::new(model, &env.observation_space(), &env.action_space())?;
        let e = env.extra_inputs();
        if let (EncoderSpec::Mlp { in_dim, .. }, CoreKind::Lstm, ExtraInputs::Core) =
            (&mut spec.encoder, spec.core, model.extra_inputs)
        {
            if e > 0 && e < *in_dim {
                *in_dim -= e;
                spec.extra_inputs = e;
            }
        }
        Ok(spec)
    }

    /// Dz: width of the encoder's output (CPC's targets).
    pub fn feature_dim(&self) -> usize {
        self.encoder.out_dim()
    }

    /// Width of the core's input: z and the extra inputs.
    pub fn core_in_dim(&self) -> usize {
        self.feature_dim() + self.extra_inputs
    }

    /// Dc: width of the core's output (CPC's context; the heads' input).
    pub fn context_dim(&self) -> usize {
        match self.core {
            CoreKind::None => self.feature_dim(),
            CoreKind::Lstm => self.lstm_hidden,
        }
    }

    pub fn state_size(&self) -> usize {
        match self.core {
            CoreKind::None => 0,
            CoreKind::Lstm => 2 * self.lstm_hidden,
        }
    }

    pub fn obs_dim(&self) -> usize {
        self.obs_shape.iter().product()
    }

    /// Fresh parameters: orthogonal init with SB3's gains (√2 hidden, 0.01 policy, 1 value).
    pub fn init(&self, init: &mut Init) -> candle_core::Result<()> {
        self.encoder.init(init, "encoder")?;
        if self.core == CoreKind::Lstm {
            Lstm::init(self.core_in_dim(), self.lstm_hidden, init, "core.lstm")?;
        }
        let d = self.context_dim();
        init.orthogonal("policy.weight", &[self.num_actions, d], 0.01)?;
        init.zeros("policy.bias", &[self.num_actions])?;
        init.orthogonal("value.weight", &[1, d], 1.0)?;
        init.zeros("value.bias", &[1])
    }
}

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

    /// All parameters of the varmap that belong to this network, sorted by name.
    pub fn named_vars(varmap: &VarMap, prefix_filter: impl Fn(&str) -> bool) -> Vec<(String, Var)> {
        let data = varmap.data().lock().expect("varmap lock");
        let mut v: Vec<(String, Var)> = data
            .iter()
            .filter(|(k, _)| prefix_filter(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
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
        Self::named_vars(&self.varmap, |k| !k.starts_with("aux."))
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
