//! The CPC objective on any modality that gives sequences (audio windows, text passages,
//! recorded frames): W_1..W_K on the context c_t, InfoNCE against the sampled negatives
//! ([`crate::cpc::cpc_loss`], the same as the agent's head).
//!
//! A modality implements [`Sequences`]: its network, its minibatches, and the encoding
//! of a minibatch into z_t and c_t. [`Cpc`] adds the predictor and the loss, so another
//! objective (SimCLR, MoCo) is another wrapper around the same modality, not a copy of
//! it. Images are the exception today: CPC-v2's four directions need a context network
//! per direction, so `pretrain/image.rs` keeps its own CPC.

use anyhow::{bail, Result};
use candle_core::backprop::GradStore;
use candle_core::{DType, Tensor};
use candle_nn::{VarBuilder, VarMap};
use rlcpc_envs::SeededRng;

use super::{Objective, StepOutput};
use crate::checkpoint::Loaded;
use crate::cpc::{cpc_loss, CpcSampling, Predictor, PredictorDims};
use crate::nn::init::Init;

/// A minibatch encoded, time-major as `cpc_loss` reads it.
pub struct Encoded {
    /// z `[T, B, D]`.
    pub z: Tensor,
    /// c `[T, B, H]`.
    pub c: Tensor,
    /// Episode starts `[T·B]` (a pair never crosses one); all zero for audio and text.
    pub first: Vec<f32>,
    /// Group (speaker) of each sequence for speaker negatives; empty otherwise.
    pub groups: Vec<u32>,
    /// Samples in the minibatch (for samples per second).
    pub samples: usize,
    /// The modality's own metrics of the minibatch (the z collapse statistic).
    pub metrics: Vec<(String, f64)>,
}

/// What a modality gives an objective: a network whose parameters live in the
/// objective's varmap, minibatches, and their encoding.
pub trait Sequences {
    /// The modality's name (`audio`, `text`, `frames`): the checkpoint's trainer name is
    /// `<objective>-<modality>`.
    const NAME: &'static str;
    /// Widths of z and c.
    fn dims(&self) -> (usize, usize);
    /// The generator of minibatches (also the objective's, for negatives).
    fn rng(&mut self) -> &mut SeededRng;
    /// Samples `batch` sequences and encodes them.
    fn encode(&mut self, batch: usize) -> Result<Encoded>;
    /// Adds the gradients of a lean-path encoder (from that of its output) to `grads`
    /// ([`Objective::complete_grads`]).
    fn complete_grads(&mut self, _grads: &mut GradStore) -> Result<()> {
        Ok(())
    }
    /// Whether the encoder runs on the lean path.
    fn has_lean_path(&self) -> bool {
        false
    }
    /// Metadata of the exported encoder: its spec, its context network's, the data.
    fn export_metadata(&self) -> Vec<(&'static str, String)>;
    /// Refuses a checkpoint trained on data that would not fit (e.g. another vocabulary).
    fn check_resume(&self, _checkpoint: &Loaded) -> Result<()> {
        Ok(())
    }
}

/// CPC on the sequences of modality `M`.
pub struct Cpc<M> {
    pub modality: M,
    predictor: Predictor,
    sampling: CpcSampling,
    varmap: VarMap,
}

impl<M: Sequences> Cpc<M> {
    /// Adds W_1..W_K (drawn from `init` after the modality's network, whose parameters
    /// `init` already holds) to `modality`.
    pub fn on(modality: M, mut init: Init, sampling: CpcSampling) -> Result<Self> {
        let (z_dim, c_dim) = modality.dims();
        let dims = PredictorDims {
            horizon: sampling.horizon,
            z_dim,
            c_dim,
        };
        Predictor::init(dims, &mut init, "cpc")?;
        let vb = VarBuilder::from_varmap(&init.varmap, DType::F32, init.device());
        Ok(Cpc {
            predictor: Predictor::new(dims, vb.pp("cpc"))?,
            modality,
            sampling,
            varmap: init.varmap,
        })
    }
}

impl<M: Sequences> Objective for Cpc<M> {
    fn name(&self) -> String {
        format!("cpc-{}", M::NAME)
    }

    fn varmap(&self) -> &VarMap {
        &self.varmap
    }

    fn step(&mut self, batch: usize) -> Result<StepOutput> {
        let e = self.modality.encode(batch)?;
        self.sampling.groups = e.groups;
        let Some(r) = cpc_loss(
            &self.predictor,
            &e.z,
            &e.c,
            &e.first,
            &self.sampling,
            self.modality.rng(),
        )?
        else {
            bail!("no CPC pair fits: every sampled sequence is cut by episode ends");
        };
        let mut metrics = vec![
            ("acc".to_string(), r.accuracy()),
            ("pairs".to_string(), r.pairs.len() as f64),
        ];
        for (k, a) in r.accuracy_per_k(self.sampling.horizon) {
            metrics.push((format!("acc_k{k}"), a));
        }
        metrics.extend(e.metrics);
        Ok(StepOutput {
            loss: r.loss,
            metrics,
            samples: e.samples,
        })
    }

    fn rng(&mut self) -> &mut SeededRng {
        self.modality.rng()
    }

    fn complete_grads(&mut self, grads: &mut GradStore) -> Result<()> {
        self.modality.complete_grads(grads)
    }

    fn has_lean_path(&self) -> bool {
        self.modality.has_lean_path()
    }

    fn export_metadata(&self) -> Vec<(&'static str, String)> {
        self.modality.export_metadata()
    }

    fn check_resume(&self, checkpoint: &Loaded) -> Result<()> {
        self.modality.check_resume(checkpoint)
    }
}
