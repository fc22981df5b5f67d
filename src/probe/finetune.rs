//! Fine-tuning (CPC-v2's comparison, Hénaff et al. 2019 §4.2): a whole-image encoder and
//! a linear classifier on top trained together on the labelled images, next to the same
//! network trained from a random initialisation on the same labels with the same budget.
//! Cross-entropy, Adam, BatchNorm in training mode; test accuracy in eval mode.

use anyhow::Result;
use candle_core::backprop::GradStore;
use candle_core::{Device, Tensor, Var};
use candle_nn::VarMap;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rlcpc_agents::{OptimConfig, OptimKind, Optimizer};
use rlcpc_envs::SeededRng;

use crate::data::images::ImageSet;
use crate::nn::encoders::EncoderSpec;
use crate::nn::init::Init;
use crate::nn::lean::resnet::BnMode;
use crate::nn::views::{LeanViewEncoder, ViewEncoder};

/// The budget and optimiser of a fine-tuning run (the same for both arms).
#[derive(Debug, Clone, Copy)]
pub struct FineTune {
    /// Optimiser steps of `batch` labelled images.
    pub steps: usize,
    pub batch: usize,
    pub lr: f64,
    pub seed: u64,
}

/// Images `idx` of `set` as a batch `[n, H, W, C]`.
fn batch_of(set: &ImageSet, idx: &[usize]) -> Result<Tensor> {
    let mut px = Vec::with_capacity(idx.len() * set.image_len());
    for &i in idx {
        px.extend_from_slice(set.image(i));
    }
    Ok(Tensor::from_vec(
        px,
        (idx.len(), set.height, set.width, set.channels),
        &Device::Cpu,
    )?)
}

/// f as fine-tuning runs it: through candle's autograd, or on host slices with its
/// gradients by hand (the same network and variables; `probe --learner`).
enum Net<'a> {
    Candle(&'a ViewEncoder),
    Lean(LeanViewEncoder),
}

impl Net<'_> {
    /// h `[n, D]` of the images `x` `[n, H, W, C]` (training-mode BatchNorm if `train`);
    /// on the lean path h is a leaf `Var` whose gradient [`Net::backward`] takes back.
    fn forward(&mut self, x: &Tensor, train: bool) -> Result<(Tensor, Option<Var>)> {
        match self {
            Net::Candle(net) => Ok((net.forward(x, train, 1)?, None)),
            Net::Lean(net) => {
                let n = x.dim(0)?;
                let px = x.flatten_all()?.to_vec1::<f32>()?;
                let mode = if train {
                    BnMode::Train { groups: 1 }
                } else {
                    BnMode::Eval
                };
                let h = net.forward(&px, n, mode)?;
                let leaf = Var::from_vec(h.to_vec(), (n, net.out_dim()), &Device::Cpu)?;
                Ok((leaf.as_tensor().clone(), Some(leaf)))
            }
        }
    }

    /// f's gradients from h's (the lean path; candle's are in `grads` already).
    fn backward(&mut self, h: Option<Var>, grads: &mut GradStore) -> Result<()> {
        let (Net::Lean(net), Some(h)) = (self, h) else {
            return Ok(());
        };
        let d_h = match grads.remove(h.as_tensor()) {
            Some(g) => g.flatten_all()?.to_vec1::<f32>()?,
            None => vec![0.0; h.as_tensor().elem_count()],
        };
        net.backward(&d_h, grads)
    }
}

/// Trains f of `spec` (its parameters under `encoder.` in `varmap`) and a fresh linear
/// head on images `tr` of `train` for `o.steps` steps, on the lean path if `lean` (and
/// `spec` has one) else through candle's autograd; returns the (train, test) accuracy
/// on `tr` and `te`.
#[allow(clippy::too_many_arguments)]
pub fn fine_tune(
    spec: &EncoderSpec,
    varmap: &VarMap,
    lean: bool,
    classes: usize,
    train: &ImageSet,
    tr: &[usize],
    test: &ImageSet,
    te: &[usize],
    o: &FineTune,
) -> Result<(f64, f64)> {
    let d = spec.out_dim();
    let hwc = (train.height, train.width, train.channels);
    let candle_net;
    let mut net = if lean {
        Net::Lean(LeanViewEncoder::new(spec, hwc, varmap, "encoder")?)
    } else {
        candle_net = ViewEncoder::build(spec, varmap, "encoder")?;
        Net::Candle(&candle_net)
    };
    let mut init = Init::new(o.seed ^ 0xF1E7, &Device::Cpu);
    init.uniform_fan_in("classifier.weight", &[classes, d], d)?;
    init.zeros("classifier.bias", &[classes])?;
    let get = |vm: &VarMap, n: &str| vm.data().lock().expect("varmap lock")[n].clone();
    let (w, b): (Var, Var) = (
        get(&init.varmap, "classifier.weight"),
        get(&init.varmap, "classifier.bias"),
    );
    let mut vars: Vec<(String, Var)> = varmap
        .data()
        .lock()
        .expect("varmap lock")
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    vars.push(("classifier.weight".into(), w.clone()));
    vars.push(("classifier.bias".into(), b.clone()));
    let mut optim = Optimizer::new(
        OptimConfig {
            kind: OptimKind::Adam,
            lr: o.lr,
            eps: 1e-8,
            ..OptimConfig::default()
        },
        vars,
    )?;
    let logits = |net: &mut Net, x: &Tensor, train: bool| -> Result<(Tensor, Option<Var>)> {
        let (h, leaf) = net.forward(x, train)?;
        let z = h
            .matmul(&w.as_tensor().t()?)?
            .broadcast_add(b.as_tensor())?;
        Ok((z, leaf))
    };
    let mut rng = SeededRng::seed_from_u64(o.seed ^ 0xF1E7_0001);
    let mut order: Vec<usize> = Vec::new();
    for _ in 0..o.steps {
        if order.len() < o.batch.min(tr.len()) {
            let mut epoch = tr.to_vec();
            epoch.shuffle(&mut rng);
            order.extend(epoch);
        }
        let idx: Vec<usize> = order.drain(..o.batch.min(tr.len())).collect();
        let y: Vec<u32> = idx.iter().map(|&i| train.labels[i]).collect();
        let (z, leaf) = logits(&mut net, &batch_of(train, &idx)?, true)?;
        let loss = candle_nn::loss::cross_entropy(&z, &Tensor::new(y.as_slice(), &Device::Cpu)?)?;
        let mut grads = loss.backward()?;
        net.backward(leaf, &mut grads)?;
        optim.step(&grads, o.lr, 1.0)?;
    }
    let mut accuracy = |set: &ImageSet, idx: &[usize]| -> Result<f64> {
        let mut right = 0;
        for chunk in idx.chunks(256) {
            let pred = logits(&mut net, &batch_of(set, chunk)?, false)?
                .0
                .argmax(1)?
                .to_vec1::<u32>()?;
            right += pred
                .iter()
                .zip(chunk)
                .filter(|(p, &i)| **p == set.labels[i])
                .count();
        }
        Ok(right as f64 / idx.len().max(1) as f64)
    };
    Ok((accuracy(train, tr)?, accuracy(test, te)?))
}
