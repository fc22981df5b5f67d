//! Recorded environment frames as a modality (`rlcpc pretrain frames`): windows of a
//! recording, and the network that reads them. The belief probe of what it learns is
//! [`crate::probe::states`].
//!
//! The network is the agent's own encoder (MLP or IMPALA conv, from the same `[model]`
//! settings and the recording's observation space) followed by an LSTM as g_ar, so
//! that an encoder trained here initialises an agent (`model.init_encoder`) and an
//! agent's encoder and core load here ([`FramesNet::load`]). Sequences are random windows of the
//! recording; the LSTM restarts at each window and at episode starts, and no CPC pair
//! crosses an episode boundary (the agent head's rules, through [`crate::contrastive::cpc`]).

use std::path::Path;

use anyhow::{bail, Result};
use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{VarBuilder, VarMap};
use rand::{Rng, SeedableRng};
use rlcpc_envs::SeededRng;
use serde::{Deserialize, Serialize};

use super::cpc_objective::{Cpc, Encoded, Sequences};
use super::TrainSection;
use crate::checkpoint::keys;
use crate::config::Invalid;
use crate::config::{CoreKind, ModelConfig, Negatives};
use crate::contrastive::cpc::CpcSampling;
use crate::data::trajectories::Trajectories;
use crate::encoder_file::{EncoderFile, Origin};
use crate::nn::encoders::{ContextSpec, Encoder, EncoderSpec};
use crate::nn::init::Init;
use crate::nn::lstm::Lstm;
use crate::nn::NetSpec;

/// `[cpc]` of `cpc frames`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FramesCpcSection {
    /// Steps per training sequence.
    pub unroll: usize,
    pub horizon: usize,
    pub negatives: Negatives,
    pub num_negatives: usize,
    pub start_times: usize,
    pub horizons: usize,
    /// The last this share of the recording (cut at an episode start) is never trained
    /// on: `rlcpc probe` tests the belief probe there.
    pub test_fraction: f64,
}

impl From<&FramesCpcSection> for CpcSampling {
    fn from(c: &FramesCpcSection) -> Self {
        CpcSampling {
            start_times: c.start_times,
            horizons: c.horizons,
            ..CpcSampling::new(c.horizon, c.negatives, c.num_negatives)
        }
    }
}

impl Default for FramesCpcSection {
    fn default() -> Self {
        FramesCpcSection {
            unroll: 40,
            horizon: 20,
            negatives: Negatives::Both,
            num_negatives: 20,
            start_times: 8,
            horizons: 10,
            test_fraction: 0.2,
        }
    }
}

/// `configs/cpc-frames.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FramesCpcConfig {
    /// The objective: `cpc` (Contrastive Predictive Coding; SimCLR and MoCo are for images).
    pub objective: super::ObjectiveKind,
    /// The agent's `[model]` (encoder kind and widths; `core = "lstm"` is implied).
    pub model: ModelConfig,
    pub cpc: FramesCpcSection,
    pub train: TrainSection,
}

impl Default for FramesCpcConfig {
    fn default() -> Self {
        FramesCpcConfig {
            objective: super::ObjectiveKind::Cpc,
            model: ModelConfig {
                core: CoreKind::Lstm,
                ..ModelConfig::default()
            },
            cpc: FramesCpcSection::default(),
            train: TrainSection {
                batch: 16,
                lr: 5e-4,
                steps: 1000,
                ..TrainSection::default()
            },
        }
    }
}

pub const DEFAULT_CONFIG: &str = include_str!("../../configs/cpc-frames.toml");

impl super::TrainerConfig for FramesCpcConfig {
    const PRESETS: &'static [(&'static str, &'static str)] = &[("cpc-frames", DEFAULT_CONFIG)];

    fn validate(&self) -> Result<(), crate::config::Invalid> {
        self.objective.only_cpc("frames")?;
        self.train.validate()?;
        let c = &self.cpc;
        super::at_most(&[
            ("cpc.unroll", c.unroll, 65_536),
            ("cpc.num_negatives", c.num_negatives, 65_536),
            ("model.lstm_hidden", self.model.lstm_hidden, 65_536),
            ("model.conv_fc", self.model.conv_fc, 65_536),
        ])?;
        if let Some(&w) = self.model.mlp_hidden.iter().find(|&&w| w > 65_536) {
            return Err(Invalid::new(
                "model.mlp_hidden",
                format!("a width of {w} (at most 65536)"),
            ));
        }
        if c.unroll < 2 || c.horizon == 0 || c.horizon >= c.unroll {
            return Err(Invalid::new(
                "cpc.horizon'/'cpc.unroll",
                format!("{} / {} (need 1 ≤ horizon < unroll)", c.horizon, c.unroll),
            ));
        }
        if c.num_negatives == 0 {
            return Err(Invalid::new("cpc.num_negatives", "0"));
        }
        if !(c.test_fraction > 0.0 && c.test_fraction < 1.0) {
            return Err(Invalid::new(
                "cpc.test_fraction",
                format!("{} (must be in (0, 1))", c.test_fraction),
            ));
        }
        if c.negatives == Negatives::Batch && self.train.batch < 2 {
            return Err(Invalid::new(
                "cpc.negatives",
                "\"batch\" needs train.batch ≥ 2",
            ));
        }
        if c.negatives == Negatives::Speaker {
            return Err(Invalid::new(
                "cpc.negatives",
                "\"speaker\" is for audio; use sequence, batch or both",
            ));
        }
        if self.model.core != CoreKind::Lstm {
            return Err(Invalid::new(
                "model.core",
                "cpc frames trains an LSTM context network (\"lstm\")",
            ));
        }
        Ok(())
    }
}

/// An encoder with an optional LSTM, on observations: the agent's feature path.
pub struct FramesNet {
    pub encoder: Encoder,
    pub lstm: Option<Lstm>,
    pub context: Option<ContextSpec>,
}

impl FramesNet {
    fn build(
        spec: EncoderSpec,
        context: Option<ContextSpec>,
        varmap: &VarMap,
        dev: &Device,
    ) -> Result<Self> {
        let vb = VarBuilder::from_varmap(varmap, DType::F32, dev);
        let encoder = Encoder::new(spec, vb.pp("encoder"))?;
        let lstm = match &context {
            Some(ContextSpec::Lstm { in_dim, hidden }) => {
                Some(Lstm::new(*in_dim, *hidden, vb.pp("context"))?)
            }
            Some(other) => bail!("frames use an LSTM context network, the file has {other:?}"),
            None => None,
        };
        Ok(FramesNet {
            encoder,
            lstm,
            context,
        })
    }

    /// Fresh weights from `seed` (the random-init baseline).
    pub fn random(
        spec: &EncoderSpec,
        context: Option<&ContextSpec>,
        seed: u64,
    ) -> Result<(Self, VarMap)> {
        let dev = Device::Cpu;
        let mut init = Init::new(seed, &dev);
        spec.init(&mut init, "encoder")?;
        if let Some(ContextSpec::Lstm { in_dim, hidden }) = context {
            Lstm::init(*in_dim, *hidden, &mut init, "context")?;
        }
        let net = FramesNet::build(spec.clone(), context.cloned(), &init.varmap, &dev)?;
        Ok((net, init.varmap))
    }

    /// Reads an agent checkpoint (encoder and LSTM core) or an encoder file written by
    /// `rlcpc export-encoder` or `rlcpc pretrain frames`.
    pub fn load(path: &Path) -> Result<(Self, Origin)> {
        Self::from_file(&EncoderFile::read(path)?)
    }

    /// The network of an encoder file already read, and where it was found.
    pub fn from_file(f: &EncoderFile) -> Result<(Self, Origin)> {
        if matches!(f.spec, EncoderSpec::Audio { .. }) {
            return Err(f.mismatch(format!(
                "its encoder is {}, which does not read environment observations",
                f.spec.describe()
            )));
        }
        let (_, varmap) = FramesNet::random(&f.spec, f.context.as_ref(), 0)?;
        f.load_into(&varmap, &["encoder.", "context."])?;
        let net = FramesNet::build(f.spec.clone(), f.context.clone(), &varmap, &Device::Cpu)?;
        Ok((net, f.origin))
    }

    /// `[T, B, obs...]` with episode starts `first` `[T·B]` → z `[T, B, D]`, c `[T, B, H]`
    /// (c = z without an LSTM), from a zero state.
    pub fn forward(&self, obs: &Tensor, first: &[f32]) -> Result<(Tensor, Tensor)> {
        let (t, b) = (obs.dim(0)?, obs.dim(1)?);
        let z = self.encoder.forward(&obs.flatten_to(1)?)?;
        let z = z.reshape((t, b, ()))?;
        match &self.lstm {
            None => Ok((z.clone(), z)),
            Some(l) => {
                let state = Tensor::zeros((b, 2 * l.hidden), DType::F32, obs.device())?;
                let (c, _) = l.unroll(&z, first, &state)?;
                Ok((z, c))
            }
        }
    }
}

/// The training objective: random windows of a recording.
pub struct FramesWindows {
    cfg: FramesCpcConfig,
    net: FramesNet,
    spec: EncoderSpec,
    traj: Trajectories,
    /// Steps `0..train_len` are trained on; the rest is the belief probe's test part.
    train_len: usize,
    rng: SeededRng,
}

/// CPC on windows of a recording.
pub type FramesCpc = Cpc<FramesWindows>;

impl FramesCpc {
    /// The agent's encoder and an LSTM (seeded by `train.seed`) with W_1..W_K, on the
    /// training part of `traj`.
    pub fn new(cfg: &FramesCpcConfig, traj: Trajectories) -> Result<Self> {
        let mut init = Init::new(cfg.train.seed, &Device::Cpu);
        let windows = FramesWindows::new(cfg, traj, &mut init)?;
        Cpc::on(windows, init, (&cfg.cpc).into())
    }
}

impl FramesWindows {
    /// The network built into `init`, on the part of `traj` before the test cut.
    pub fn new(cfg: &FramesCpcConfig, traj: Trajectories, init: &mut Init) -> Result<Self> {
        let train_len = test_cut(&traj, cfg.cpc.test_fraction)?;
        if train_len < cfg.cpc.unroll {
            bail!(
                "the recording's training part (the first {train_len} of {} steps; cpc.test_fraction = {} is held out) is shorter than one sequence (cpc.unroll = {})",
                traj.len(),
                cfg.cpc.test_fraction,
                cfg.cpc.unroll
            );
        }
        let env = rlcpc_envs::make(&traj.env)?;
        let net_spec = NetSpec::new(&cfg.model, &env.observation_space(), &env.action_space())
            .map_err(anyhow::Error::msg)?;
        if net_spec.obs_shape != traj.obs_shape {
            bail!(
                "the recording's observations are {:?}, its environment gives {:?}",
                traj.obs_shape,
                net_spec.obs_shape
            );
        }
        let spec = net_spec.encoder.clone();
        let ctx = ContextSpec::Lstm {
            in_dim: spec.out_dim(),
            hidden: cfg.model.lstm_hidden,
        };
        spec.init(init, "encoder")?;
        Lstm::init(spec.out_dim(), cfg.model.lstm_hidden, init, "context")?;
        let net = FramesNet::build(spec.clone(), Some(ctx), &init.varmap, &Device::Cpu)?;
        Ok(FramesWindows {
            cfg: cfg.clone(),
            net,
            spec,
            traj,
            train_len,
            rng: SeededRng::seed_from_u64(cfg.train.seed ^ 0xF4A3_E500),
        })
    }
}

impl Sequences for FramesWindows {
    const NAME: &'static str = "frames";

    fn dims(&self) -> (usize, usize) {
        (self.spec.out_dim(), self.cfg.model.lstm_hidden)
    }

    fn encode(&mut self, batch: usize) -> Result<Encoded> {
        let t_len = self.cfg.cpc.unroll;
        let d = self.traj.obs_dim();
        let mut obs = vec![0f32; t_len * batch * d];
        let mut first = vec![0f32; t_len * batch];
        for b in 0..batch {
            let s = self.rng.random_range(0..=self.train_len - t_len);
            for t in 0..t_len {
                let dst = (t * batch + b) * d;
                obs[dst..dst + d].copy_from_slice(self.traj.obs_row(s + t));
                first[t * batch + b] = if t == 0 { 1.0 } else { self.traj.first[s + t] };
            }
        }
        let mut shape = vec![t_len, batch];
        shape.extend(&self.traj.obs_shape);
        let obs = Tensor::from_vec(obs, shape, &Device::Cpu)?;
        let (z, c) = self.net.forward(&obs, &first)?;
        let dz = z.dim(2)?;
        let metrics = vec![(
            "z_norm_std".to_string(),
            super::normalized_std(&z.reshape(((), dz))?)?,
        )];
        Ok(Encoded {
            z,
            c,
            first,
            groups: Vec::new(),
            samples: batch,
            metrics,
        })
    }

    fn rng(&mut self) -> &mut SeededRng {
        &mut self.rng
    }

    fn export_metadata(&self) -> Vec<(&'static str, String)> {
        vec![
            (
                keys::ENCODER_SPEC,
                serde_json::to_string(&self.spec).expect("spec"),
            ),
            (
                keys::CONTEXT_SPEC,
                serde_json::to_string(self.net.context.as_ref().expect("lstm")).expect("spec"),
            ),
            (
                crate::checkpoint::keys::DATA,
                serde_json::json!({
                    "env": self.traj.env,
                    "steps": self.traj.len(),
                    "train_steps": self.train_len,
                    "test_fraction": self.cfg.cpc.test_fraction,
                })
                .to_string(),
            ),
        ]
    }
}

pub use crate::data::trajectories::test_cut;
