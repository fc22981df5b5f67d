//! The CPC objective on any modality that gives sequences (audio windows, text passages,
//! recorded frames): W_1..W_K on the context c_t, InfoNCE against the sampled negatives
//! ([`crate::contrastive::cpc::cpc_loss`], the same as the agent's head).
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
use crate::contrastive::cpc::{
    cpc_loss, cpc_loss_host, CpcResult, CpcSampling, HostScratch, Predictor, PredictorDims,
};
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

/// A minibatch encoded on the lean path, time-major as [`cpc_loss_host`] reads it.
#[derive(Default)]
pub struct HostEncoded {
    /// z `[T·B, D]`.
    pub z: Vec<f32>,
    /// c `[T·B, H]`.
    pub c: Vec<f32>,
    /// T and B.
    pub t_len: usize,
    pub b: usize,
    /// As in [`Encoded`].
    pub first: Vec<f32>,
    pub groups: Vec<u32>,
    pub samples: usize,
    pub metrics: Vec<(String, f64)>,
}

/// The lean path's buffers: the minibatch, the predictor's weights, the gradients of
/// z, c and W of the step in progress (`pending` until [`Objective::complete_grads`]
/// hands them on).
#[derive(Default)]
struct HostStep {
    enc: HostEncoded,
    w: Vec<f32>,
    d_z: Vec<f32>,
    d_c: Vec<f32>,
    d_w: Vec<f32>,
    scratch: HostScratch,
    pending: bool,
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
    /// Whether the network runs on the lean path: then [`Cpc`] calls
    /// [`Sequences::encode_host`] and [`Sequences::backward_host`] instead of
    /// [`Sequences::encode`], and the loss is [`cpc_loss_host`].
    fn has_lean_path(&self) -> bool {
        false
    }
    /// The lean path's [`Sequences::encode`]: samples `batch` sequences and writes their
    /// z and c on host slices into `out`.
    fn encode_host(&mut self, _batch: usize, _out: &mut HostEncoded) -> Result<()> {
        bail!("{} has no lean path", Self::NAME)
    }
    /// Adds the gradients of every network parameter to `grads`, from those of the last
    /// [`Sequences::encode_host`]'s z and c (time-major, as there).
    fn backward_host(&mut self, _d_z: &[f32], _d_c: &[f32], _grads: &mut GradStore) -> Result<()> {
        bail!("{} has no lean path", Self::NAME)
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
    host: HostStep,
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
            host: HostStep::default(),
        })
    }
}

const NO_PAIR: &str = "no CPC pair fits: every sampled sequence is cut by episode ends";

impl<M: Sequences> Cpc<M> {
    /// [`Objective::step`] on the lean path: the modality's host encoding and
    /// [`cpc_loss_host`], whose gradients [`Objective::complete_grads`] hands on.
    fn step_host(&mut self, batch: usize) -> Result<StepOutput> {
        let h = &mut self.host;
        h.pending = false;
        self.modality.encode_host(batch, &mut h.enc)?;
        let e = &mut h.enc;
        self.sampling.groups = std::mem::take(&mut e.groups);
        let (z_dim, c_dim) = self.modality.dims();
        let dims = PredictorDims {
            horizon: self.predictor.horizon,
            z_dim,
            c_dim,
        };
        let w = self.predictor.weight();
        h.w.clear();
        h.w.extend(w.flatten_all()?.to_vec1::<f32>()?);
        for (v, n) in [(&mut h.d_z, e.z.len()), (&mut h.d_c, e.c.len())] {
            v.clear();
            v.resize(n, 0.0);
        }
        h.d_w.resize(h.w.len(), 0.0);
        let Some((_, r)) = cpc_loss_host(
            &h.w,
            dims,
            &e.z,
            &e.c,
            (&e.first, e.t_len, e.b),
            &self.sampling,
            self.modality.rng(),
            (&mut h.d_z, &mut h.d_c, &mut h.d_w),
            &mut h.scratch,
        )?
        else {
            bail!(NO_PAIR);
        };
        h.pending = true;
        let (metrics, samples) = (std::mem::take(&mut h.enc.metrics), h.enc.samples);
        Ok(self.output(r, metrics, samples))
    }

    /// The step's output: the loss, the accuracies (overall and per horizon), the pairs
    /// and the modality's own metrics.
    fn output(&self, r: CpcResult, own: Vec<(String, f64)>, samples: usize) -> StepOutput {
        let mut metrics = vec![
            ("acc".to_string(), r.accuracy()),
            ("pairs".to_string(), r.pairs.len() as f64),
        ];
        for (k, a) in r.accuracy_per_k(self.sampling.horizon) {
            metrics.push((format!("acc_k{k}"), a));
        }
        metrics.extend(own);
        StepOutput {
            loss: r.loss,
            metrics,
            samples,
        }
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
        if self.modality.has_lean_path() {
            return self.step_host(batch);
        }
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
            bail!(NO_PAIR);
        };
        Ok(self.output(r, e.metrics, e.samples))
    }

    fn rng(&mut self) -> &mut SeededRng {
        self.modality.rng()
    }

    fn complete_grads(&mut self, grads: &mut GradStore) -> Result<()> {
        let h = &mut self.host;
        if !std::mem::take(&mut h.pending) {
            return Ok(());
        }
        let w = self.predictor.weight();
        grads.insert(w, Tensor::from_vec(h.d_w.clone(), w.shape(), w.device())?);
        self.modality.backward_host(&h.d_z, &h.d_c, grads)
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
