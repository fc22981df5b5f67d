//! Fine-tuning (CPC-v2's comparison, Hénaff et al. 2019 §4.2): a whole-image encoder and
//! a linear classifier on top trained together on the labelled images, next to the same
//! network trained from a random initialisation on the same labels with the same budget.
//! Cross-entropy, Adam, BatchNorm in training mode; test accuracy in eval mode.

use anyhow::Result;
use candle_core::{Device, Tensor, Var};
use candle_nn::VarMap;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rlcpc_agents::{OptimConfig, OptimKind, Optimizer};
use rlcpc_envs::SeededRng;

use crate::data::images::ImageSet;
use crate::nn::init::Init;
use crate::nn::views::ViewEncoder;

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

/// Trains `net` (its parameters in `varmap`) and a fresh linear head on images `tr` of
/// `train` for `o.steps` steps; returns the (train, test) accuracy on `tr` and `te`.
#[allow(clippy::too_many_arguments)]
pub fn fine_tune(
    net: &ViewEncoder,
    varmap: &VarMap,
    d: usize,
    classes: usize,
    train: &ImageSet,
    tr: &[usize],
    test: &ImageSet,
    te: &[usize],
    o: &FineTune,
) -> Result<(f64, f64)> {
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
    let logits = |x: &Tensor, train: bool| -> Result<Tensor> {
        let h = net.forward(x, train, 1)?;
        Ok(h.matmul(&w.as_tensor().t()?)?
            .broadcast_add(b.as_tensor())?)
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
        let z = logits(&batch_of(train, &idx)?, true)?;
        let loss = candle_nn::loss::cross_entropy(&z, &Tensor::new(y.as_slice(), &Device::Cpu)?)?;
        let grads = loss.backward()?;
        optim.step(&grads, o.lr, 1.0)?;
    }
    let accuracy = |set: &ImageSet, idx: &[usize]| -> Result<f64> {
        let mut right = 0;
        for chunk in idx.chunks(256) {
            let pred = logits(&batch_of(set, chunk)?, false)?
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
