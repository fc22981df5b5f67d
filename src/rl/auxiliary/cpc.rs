//! The agent's CPC auxiliary head (van den Oord et al. 2018, §3.4): the encoder's
//! outputs z as targets, the core's outputs c as contexts, scored by the shared InfoNCE
//! and sampling of [`crate::contrastive::cpc`].

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use rlcpc_agents::{
    AgentError, AuxBatch, AuxLoss, AuxOutput, HostAuxOutput, HostGrads, LeanOutputs, UnrollOutput,
};

use super::HeadState;
use crate::config::{CpcHeadConfig, Targets};
use crate::contrastive::cpc::{
    cpc_loss, cpc_loss_host, horizon_buckets, CpcResult, CpcSampling, HostScratch, Predictor,
    PredictorDims,
};
use crate::nn::init::Init;
use crate::nn::NetSpec;

impl From<&CpcHeadConfig> for CpcSampling {
    fn from(c: &CpcHeadConfig) -> Self {
        CpcSampling {
            start_times: c.start_times,
            horizons: c.horizons,
            shuffled: c.targets == Targets::Shuffled,
            ..CpcSampling::new(c.horizon, c.negatives, c.num_negatives)
        }
    }
}

/// The agent's CPC auxiliary head: context = core output, targets = encoder outputs.
pub struct CpcAux {
    predictor: Predictor,
    sampling: CpcSampling,
    weight: f64,
    state: HeadState,
    host_w: Vec<f32>,
    scratch: HostScratch,
}

impl CpcAux {
    pub const PREFIX: &'static str = "aux.cpc";

    pub fn init(
        cfg: &CpcHeadConfig,
        z_dim: usize,
        c_dim: usize,
        init: &mut Init,
    ) -> candle_core::Result<()> {
        Predictor::init(
            PredictorDims {
                horizon: cfg.horizon,
                z_dim,
                c_dim,
            },
            init,
            Self::PREFIX,
        )
    }

    pub fn new(
        cfg: &CpcHeadConfig,
        z_dim: usize,
        c_dim: usize,
        varmap: &candle_nn::VarMap,
        device: &Device,
        seed: u64,
    ) -> candle_core::Result<Self> {
        let vb = VarBuilder::from_varmap(varmap, DType::F32, device).pp(Self::PREFIX);
        Ok(CpcAux {
            predictor: Predictor::new(
                PredictorDims {
                    horizon: cfg.horizon,
                    z_dim,
                    c_dim,
                },
                vb,
            )?,
            sampling: cfg.into(),
            weight: cfg.weight,
            state: HeadState::new(varmap, seed ^ 0xC0C0_C0C0),
            host_w: Vec::new(),
            scratch: HostScratch::default(),
        })
    }
}

impl CpcAux {
    /// Pairs, accuracy, and accuracy and loss per horizon bucket.
    fn metrics(&self, r: &CpcResult) -> Vec<(String, f64)> {
        let mut metrics = vec![
            ("cpc/pairs".to_string(), r.pairs.len() as f64),
            ("cpc/acc".to_string(), r.accuracy()),
        ];
        for (name, lo, hi) in horizon_buckets(self.sampling.horizon) {
            let (mut n, mut hit, mut loss) = (0usize, 0f64, 0f64);
            for ((p, &c), &l) in r.pairs.iter().zip(&r.hits).zip(&r.pair_losses) {
                if p.k >= lo && p.k <= hi {
                    n += 1;
                    hit += c;
                    loss += l;
                }
            }
            if n > 0 {
                metrics.push((format!("cpc/acc_{name}"), hit / n as f64));
                metrics.push((format!("cpc/loss_{name}"), loss / n as f64));
            }
        }
        metrics
    }
}

impl AuxLoss for CpcAux {
    fn weight(&self) -> f64 {
        self.weight
    }

    fn loss(&mut self, out: &UnrollOutput, batch: AuxBatch) -> Result<AuxOutput, AgentError> {
        let r = cpc_loss(
            &self.predictor,
            &out.z,
            &out.c,
            batch.first,
            &self.sampling,
            &mut self.state.rng,
        )?;
        let Some(r) = r else {
            return Ok(AuxOutput {
                loss: Tensor::zeros((), DType::F32, out.z.device())?,
                metrics: vec![("cpc/pairs".into(), 0.0)],
            });
        };
        let metrics = self.metrics(&r);
        Ok(AuxOutput {
            loss: r.loss,
            metrics,
        })
    }

    fn host_loss(
        &mut self,
        out: &LeanOutputs,
        first: &[f32],
        _actions: &[u32],
        _obs: &[f32],
        grads: HostGrads,
    ) -> Option<Result<HostAuxOutput, AgentError>> {
        let dims = PredictorDims {
            horizon: self.predictor.horizon,
            z_dim: self.predictor.z_dim,
            c_dim: out.c_dim,
        };
        if out.z_dim != dims.z_dim {
            return Some(Err(AgentError::State(format!(
                "the CPC head predicts {} features, the network's z has {}",
                dims.z_dim, out.z_dim
            ))));
        }
        let (b, t_len) = (out.b, first.len() / out.b);
        let Some(d_w) = grads.params.first_mut() else {
            return Some(Err(AgentError::State(
                "the CPC head has no predictor".into(),
            )));
        };
        // The predictor's weights are read in place (a copy per update was a pass over
        // K·Dz·Dc values: 123k at K = 30).
        let (sampling, rng, scratch) = (&self.sampling, &mut self.state.rng, &mut self.scratch);
        let r =
            rlcpc_agents::optim::with_host_slice(self.predictor.weight(), &mut self.host_w, |w| {
                cpc_loss_host(
                    w,
                    dims,
                    out.z,
                    out.c,
                    (first, t_len, b),
                    sampling,
                    rng,
                    (grads.d_z, grads.d_c, d_w),
                    scratch,
                )
            });
        let r = match r {
            Ok(r) => r,
            Err(e) => return Some(Err(e)),
        };
        Some(Ok(match r {
            Err(e) => return Some(Err(e.into())),
            Ok(None) => HostAuxOutput {
                loss: 0.0,
                metrics: vec![("cpc/pairs".into(), 0.0)],
            },
            Ok(Some((loss, r))) => HostAuxOutput {
                loss,
                metrics: self.metrics(&r),
            },
        }))
    }

    fn vars(&self) -> Vec<(String, candle_core::Var)> {
        self.state.vars()
    }

    fn save_rng(&self) -> serde_json::Value {
        self.state.save_rng()
    }

    fn load_rng(&mut self, v: &serde_json::Value) -> Result<(), AgentError> {
        self.state.load_rng(v)
    }
}

/// `aux.kind = "cpc"`, with its keys.
pub struct CpcHead<'a>(pub &'a CpcHeadConfig);

impl super::Head for CpcHead<'_> {
    fn init(&self, spec: &NetSpec, init: &mut Init) -> candle_core::Result<()> {
        CpcAux::init(self.0, spec.feature_dim(), spec.context_dim(), init)
    }

    fn build(
        &self,
        spec: &NetSpec,
        varmap: &candle_nn::VarMap,
        device: &Device,
        seed: u64,
    ) -> candle_core::Result<Box<dyn AuxLoss>> {
        let head = CpcAux::new(
            self.0,
            spec.feature_dim(),
            spec.context_dim(),
            varmap,
            device,
            seed,
        )?;
        Ok(Box::new(head))
    }
}
