//! RMSProp and Adam with global-norm gradient clipping and savable state.
//!
//! candle-nn 0.11 has neither RMSProp nor plain Adam, cannot clip gradients and cannot
//! save AdamW's moments, so the learner's optimiser lives here. Formulas follow PyTorch's
//! `torch.optim.RMSprop` (ε outside the square root, as SB3's A2C uses it) and
//! `torch.optim.Adam`.

use std::cell::RefCell;

use candle_core::backprop::GradStore;
use candle_core::{CpuStorage, InplaceOp1, Layout, Tensor, Var};

use crate::config::{OptimConfig, OptimKind};
use crate::AgentError;

/// Copies `t`'s values (f32) into `out`, without a temporary where `t` is a contiguous
/// CPU tensor.
pub fn host_copy(t: &Tensor, out: &mut Vec<f32>) -> Result<(), AgentError> {
    out.clear();
    {
        let (storage, layout) = t.storage_and_layout();
        if let (candle_core::Storage::Cpu(cpu), Some((a, b))) =
            (&*storage, layout.contiguous_offsets())
        {
            if let Ok(v) = cpu.as_slice::<f32>() {
                out.extend_from_slice(&v[a..b]);
                return Ok(());
            }
        }
    }
    out.extend(
        t.flatten_all()?
            .to_dtype(candle_core::DType::F32)?
            .to_vec1::<f32>()?,
    );
    Ok(())
}

/// `f` on `t`'s values (f32): borrowed in place where `t` is a contiguous f32 CPU
/// tensor, else copied into `scratch` first. Saves the learner a copy of each parameter
/// per update (the CPC predictor at K = 30 is 123k values).
pub fn with_host_slice<R>(
    t: &Tensor,
    scratch: &mut Vec<f32>,
    f: impl FnOnce(&[f32]) -> R,
) -> Result<R, AgentError> {
    {
        let (storage, layout) = t.storage_and_layout();
        if let (candle_core::Storage::Cpu(cpu), Some((a, b))) =
            (&*storage, layout.contiguous_offsets())
        {
            if let Ok(v) = cpu.as_slice::<f32>() {
                return Ok(f(&v[a..b]));
            }
        }
    }
    host_copy(t, scratch)?;
    Ok(f(scratch))
}

/// One optimiser step of one variable, element by element: `p` the parameters, `slots`
/// the kind's state, `g` the gradient (scaled by `scale` first).
fn update(
    cfg: &OptimConfig,
    steps: u64,
    p: &mut [f32],
    slots: &mut [Vec<f32>],
    g: &[f32],
    lr: f32,
    scale: f32,
) {
    // Separate loops per case, so that each vectorises.
    match (cfg.kind, slots) {
        (OptimKind::Rmsprop, [s0]) => {
            let (a, eps) = (cfg.rmsprop_alpha as f32, cfg.eps as f32);
            for ((p, s), &g) in p.iter_mut().zip(s0.iter_mut()).zip(g) {
                let g = g * scale;
                *s = *s * a + g * g * (1.0 - a);
                *p -= lr * g / (s.sqrt() + eps);
            }
        }
        (OptimKind::Rmsprop, [s0, s1]) => {
            let (a, eps) = (cfg.rmsprop_alpha as f32, cfg.eps as f32);
            let mom = cfg.rmsprop_momentum as f32;
            for (((p, s), b), &g) in p.iter_mut().zip(s0.iter_mut()).zip(s1.iter_mut()).zip(g) {
                let g = g * scale;
                *s = *s * a + g * g * (1.0 - a);
                *b = *b * mom + g / (s.sqrt() + eps);
                *p -= *b * lr;
            }
        }
        (OptimKind::Adam, [s0, s1]) => {
            let (b1, b2) = (cfg.adam_beta1, cfg.adam_beta2);
            let bc1 = (1.0 - b1.powi(steps as i32)) as f32;
            let bc2 = (1.0 - b2.powi(steps as i32)) as f32;
            let (b1, b2, eps) = (b1 as f32, b2 as f32, cfg.eps as f32);
            for (((p, m), v), &g) in p.iter_mut().zip(s0.iter_mut()).zip(s1.iter_mut()).zip(g) {
                let g = g * scale;
                *m = *m * b1 + g * (1.0 - b1);
                *v = *v * b2 + g * g * (1.0 - b2);
                *p -= *m / ((*v / bc2).sqrt() + eps) * (lr / bc1);
            }
        }
        _ => unreachable!("Optimizer::new gives each kind its slots"),
    }
}

/// [`update`] run in place on a variable's CPU storage (candle's in-place op), so that a
/// step neither copies the parameters out nor allocates a tensor for them.
struct InPlace<'a> {
    cfg: &'a OptimConfig,
    steps: u64,
    slots: RefCell<&'a mut [Vec<f32>]>,
    g: &'a [f32],
    lr: f32,
    scale: f32,
}

impl InplaceOp1 for InPlace<'_> {
    fn name(&self) -> &'static str {
        "optimiser-step"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> candle_core::Result<()> {
        let (CpuStorage::F32(v), Some((a, b))) = (storage, layout.contiguous_offsets()) else {
            candle_core::bail!("an in-place optimiser step needs a contiguous f32 variable")
        };
        let mut slots = self.slots.borrow_mut();
        update(
            self.cfg,
            self.steps,
            &mut v[a..b],
            &mut slots,
            self.g,
            self.lr,
            self.scale,
        );
        Ok(())
    }
}

/// An optimiser over named variables.
pub struct Optimizer {
    cfg: OptimConfig,
    vars: Vec<(String, Var)>,
    /// Per variable: RMSProp `[square_avg, momentum_buffer?]`, Adam `[exp_avg, exp_avg_sq]`.
    slots: Vec<Vec<Tensor>>,
    /// The slots on the host while [`Optimizer::step_host`] runs them (empty: `slots`
    /// holds the state).
    host: Vec<Vec<Vec<f32>>>,
    /// Optimiser steps taken (Adam's bias correction).
    steps: u64,
    scratch: Vec<f32>,
}

impl Optimizer {
    /// An optimiser over `vars` with zeroed state and no steps taken.
    pub fn new(cfg: OptimConfig, vars: Vec<(String, Var)>) -> Result<Self, AgentError> {
        let n_slots = match cfg.kind {
            OptimKind::Rmsprop if cfg.rmsprop_momentum > 0.0 => 2,
            OptimKind::Rmsprop => 1,
            OptimKind::Adam => 2,
        };
        let slots = vars
            .iter()
            .map(|(_, v)| (0..n_slots).map(|_| v.zeros_like()).collect())
            .collect::<candle_core::Result<_>>()?;
        Ok(Optimizer {
            cfg,
            vars,
            slots,
            host: Vec::new(),
            steps: 0,
            scratch: Vec::new(),
        })
    }

    /// Optimiser steps taken so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// The variables, in the order of [`Optimizer::step_host`]'s gradients.
    pub fn vars(&self) -> &[(String, Var)] {
        &self.vars
    }

    /// [`Optimizer::step`] with gradients on the host, one flattened slice per variable
    /// in [`Optimizer::vars`]' order (`None`: no gradient, the variable is left alone).
    /// The same formulas, element by element, without candle's per-op cost; the state
    /// then stays on the host until [`Optimizer::step`] or [`Optimizer::state_tensors`]
    /// needs it as tensors.
    pub fn step_host(
        &mut self,
        grads: &[Option<&[f32]>],
        lr: f64,
        scale: f64,
    ) -> Result<(), AgentError> {
        if self.host.is_empty() {
            self.host = self
                .slots
                .iter()
                .map(|slots| {
                    slots
                        .iter()
                        .map(|t| {
                            let mut v = Vec::new();
                            host_copy(t, &mut v).map(|_| v)
                        })
                        .collect()
                })
                .collect::<Result<_, _>>()?;
        }
        for ((_, var), g) in self.vars.iter().zip(grads) {
            if let Some(g) = g {
                if g.len() != var.elem_count() {
                    return Err(AgentError::State(format!(
                        "a gradient of {} values for a variable of {}",
                        g.len(),
                        var.elem_count()
                    )));
                }
            }
        }
        self.steps += 1;
        let (lr, scale) = (lr as f32, scale as f32);
        let mut p = std::mem::take(&mut self.scratch);
        for (((_, var), slots), g) in self.vars.iter().zip(self.host.iter_mut()).zip(grads) {
            let Some(g) = g else { continue };
            let contiguous_f32 = {
                let (storage, layout) = var.as_tensor().storage_and_layout();
                matches!(&*storage, candle_core::Storage::Cpu(CpuStorage::F32(_)))
                    && layout.is_contiguous()
            };
            if contiguous_f32 {
                var.as_tensor().inplace_op1(&InPlace {
                    cfg: &self.cfg,
                    steps: self.steps,
                    slots: RefCell::new(slots.as_mut_slice()),
                    g,
                    lr,
                    scale,
                })?;
            } else {
                host_copy(var.as_tensor(), &mut p)?;
                update(&self.cfg, self.steps, &mut p, slots, g, lr, scale);
                var.set(&Tensor::from_slice(&p, var.dims(), var.device())?)?;
            }
        }
        self.scratch = p;
        Ok(())
    }

    /// Moves host-side state ([`Optimizer::step_host`]) back into the slot tensors.
    fn sync_slots(&mut self) -> Result<(), AgentError> {
        for ((_, var), (slots, host)) in self
            .vars
            .iter()
            .zip(self.slots.iter_mut().zip(std::mem::take(&mut self.host)))
        {
            for (t, h) in slots.iter_mut().zip(host) {
                *t = Tensor::from_vec(h, var.dims(), var.device())?;
            }
        }
        Ok(())
    }

    /// Global L2 norm of the gradients of all variables (missing gradients count as 0).
    pub fn grad_norm(&self, grads: &GradStore) -> Result<f64, AgentError> {
        let mut sq = Vec::new();
        for (_, v) in &self.vars {
            if let Some(g) = grads.get(v) {
                sq.push(g.sqr()?.sum_all()?);
            }
        }
        if sq.is_empty() {
            return Ok(0.0);
        }
        let total = Tensor::stack(&sq, 0)?
            .sum_all()?
            .to_dtype(candle_core::DType::F64)?;
        Ok(total.to_scalar::<f64>()?.sqrt())
    }

    /// One step at learning rate `lr`, gradients first scaled by `scale` (clipping).
    pub fn step(&mut self, grads: &GradStore, lr: f64, scale: f64) -> Result<(), AgentError> {
        if !self.host.is_empty() {
            self.sync_slots()?;
        }
        self.steps += 1;
        let c = &self.cfg;
        for ((_, var), slots) in self.vars.iter().zip(self.slots.iter_mut()) {
            let Some(g) = grads.get(var) else { continue };
            let g = if scale != 1.0 {
                (g * scale)?
            } else {
                g.clone()
            };
            let update = match c.kind {
                OptimKind::Rmsprop => {
                    let a = c.rmsprop_alpha;
                    slots[0] = ((&slots[0] * a)? + (g.sqr()? * (1.0 - a))?)?;
                    let step = (&g / (slots[0].sqrt()? + c.eps)?)?;
                    if c.rmsprop_momentum > 0.0 {
                        slots[1] = ((&slots[1] * c.rmsprop_momentum)? + step)?;
                        (&slots[1] * lr)?
                    } else {
                        (step * lr)?
                    }
                }
                OptimKind::Adam => {
                    let (b1, b2) = (c.adam_beta1, c.adam_beta2);
                    slots[0] = ((&slots[0] * b1)? + (&g * (1.0 - b1))?)?;
                    slots[1] = ((&slots[1] * b2)? + (g.sqr()? * (1.0 - b2))?)?;
                    let bc1 = 1.0 - b1.powi(self.steps as i32);
                    let bc2 = 1.0 - b2.powi(self.steps as i32);
                    let denom = ((&slots[1] / bc2)?.sqrt()? + c.eps)?;
                    ((&slots[0] / denom)? * (lr / bc1))?
                }
            };
            var.set(&var.sub(&update)?)?;
        }
        Ok(())
    }

    /// The optimiser's state tensors, named `optim.<var>.<slot>`.
    pub fn state_tensors(&self) -> Result<Vec<(String, Tensor)>, AgentError> {
        let mut out = Vec::new();
        for (i, ((name, var), slots)) in self.vars.iter().zip(&self.slots).enumerate() {
            for (k, s) in slots.iter().enumerate() {
                let t = match self.host.get(i) {
                    Some(h) => Tensor::from_slice(&h[k], var.dims(), var.device())?,
                    None => s.clone(),
                };
                out.push((format!("optim.{name}.{k}"), t));
            }
        }
        Ok(out)
    }

    /// Restores state saved by [`Optimizer::state_tensors`].
    pub fn load_state(
        &mut self,
        get: impl Fn(&str) -> Option<Tensor>,
        steps: u64,
    ) -> Result<(), AgentError> {
        self.host.clear();
        for ((name, var), slots) in self.vars.iter().zip(self.slots.iter_mut()) {
            for (k, s) in slots.iter_mut().enumerate() {
                let key = format!("optim.{name}.{k}");
                let t = get(&key).ok_or_else(|| AgentError::State(format!("missing '{key}'")))?;
                if t.dims() != var.dims() {
                    return Err(AgentError::State(format!(
                        "'{key}' has shape {:?}, expected {:?}",
                        t.dims(),
                        var.dims()
                    )));
                }
                *s = t.to_device(var.device())?;
            }
        }
        self.steps = steps;
        Ok(())
    }
}
