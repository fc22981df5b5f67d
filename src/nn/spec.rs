//! The agent network's shape ([`NetSpec`]): what the model config and the spaces make
//! of it, stored in checkpoints. Both the candle network and the lean path read it.

use rlcpc_envs::Space;
use serde::{Deserialize, Serialize};

use super::encoders::EncoderSpec;
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
