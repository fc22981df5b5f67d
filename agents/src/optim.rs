//! RMSProp and Adam with global-norm gradient clipping and savable state.
//!
//! candle-nn 0.11 has neither RMSProp nor plain Adam, cannot clip gradients and cannot
//! save AdamW's moments, so the learner's optimiser lives here. Formulas follow PyTorch's
//! `torch.optim.RMSprop` (ε outside the square root, as SB3's A2C uses it) and
//! `torch.optim.Adam`.

use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};

use crate::config::{OptimConfig, OptimKind};
use crate::AgentError;

/// An optimiser over named variables.
pub struct Optimizer {
    cfg: OptimConfig,
    vars: Vec<(String, Var)>,
    /// Per variable: RMSProp `[square_avg, momentum_buffer?]`, Adam `[exp_avg, exp_avg_sq]`.
    slots: Vec<Vec<Tensor>>,
    /// Optimiser steps taken (Adam's bias correction).
    steps: u64,
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
            steps: 0,
        })
    }

    /// Optimiser steps taken so far.
    pub fn steps(&self) -> u64 {
        self.steps
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
    pub fn state_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for ((name, _), slots) in self.vars.iter().zip(&self.slots) {
            for (k, s) in slots.iter().enumerate() {
                out.push((format!("optim.{name}.{k}"), s.clone()));
            }
        }
        out
    }

    /// Restores state saved by [`Optimizer::state_tensors`].
    pub fn load_state(
        &mut self,
        get: impl Fn(&str) -> Option<Tensor>,
        steps: u64,
    ) -> Result<(), AgentError> {
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
