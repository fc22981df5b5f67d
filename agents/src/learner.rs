//! One A2C update from a batch of rollouts (Mnih et al. 2016; Espeholt et al. 2018 §4).

use std::time::Instant;

use candle_core::{DType, Device, Tensor, Var, D};
use candle_nn::ops::log_softmax;

use crate::config::{AlgoConfig, OptimConfig};
use crate::network::{AuxLoss, PolicyNetwork};
use crate::optim::Optimizer;
use crate::returns::{explained_variance, gae, vtrace, Targets, Trajectory};
use crate::{AgentError, ParamSnapshot, Rollout};

/// Scalars of one update, named as SB3 logs them (`train/...`) plus the auxiliary
/// loss's own (`cpc/...`).
#[derive(Debug, Clone, Default)]
pub struct UpdateStats {
    /// Policy-gradient loss −mean(A·log π(a_t|x_t)) over the batch.
    pub policy_loss: f64,
    /// Value loss ½·mean((target − V)²), before `vf_coef`.
    pub value_loss: f64,
    /// Mean entropy of π over the batch, in nats.
    pub entropy: f64,
    /// The auxiliary loss, unweighted (0 without one).
    pub aux_loss: f64,
    /// The loss minimised: policy + `vf_coef`·value − `ent_coef`·entropy + weight·aux.
    pub total_loss: f64,
    /// How much of the value targets' variance V explains (see
    /// [`returns::explained_variance`](crate::returns::explained_variance)).
    pub explained_variance: f64,
    /// Global L2 norm of the gradients, before clipping.
    pub grad_norm: f64,
    /// Learning rate of this step, after the schedule.
    pub learning_rate: f64,
    /// Mean and max updates between the behaviour policy and the learner's.
    pub policy_lag_mean: f64,
    /// Largest of those lags over the batch's environment columns.
    pub policy_lag_max: f64,
    /// The auxiliary loss's metrics ([`AuxOutput::metrics`](crate::AuxOutput::metrics)); empty
    /// without one.
    pub aux_metrics: Vec<(String, f64)>,
    /// Seconds of each phase of the update, in order: `forward`, `loss` (returns, the A2C
    /// loss and, on the lean path, its gradient), `aux` (the auxiliary loss and, on the
    /// lean path, its gradient), `backward`, `optimiser`.
    pub phases: Phases,
}

/// Seconds per phase of one update (see [`UpdateStats::phases`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct Phases {
    /// The network over the unroll (on the lean path, with the parameter copies).
    pub forward: f64,
    /// Returns and the A2C loss.
    pub loss: f64,
    /// The auxiliary loss.
    pub aux: f64,
    /// Back-propagation.
    pub backward: f64,
    /// Clipping and the optimiser step.
    pub optimiser: f64,
}

impl UpdateStats {
    /// Every scalar as `(name, value)`.
    pub fn metrics(&self) -> Vec<(String, f64)> {
        let mut m: Vec<(String, f64)> = [
            ("train/policy_loss", self.policy_loss),
            ("train/value_loss", self.value_loss),
            ("train/entropy", self.entropy),
            ("train/loss", self.total_loss),
            ("train/explained_variance", self.explained_variance),
            ("train/grad_norm", self.grad_norm),
            ("train/learning_rate", self.learning_rate),
            ("train/policy_lag_mean", self.policy_lag_mean),
            ("train/policy_lag_max", self.policy_lag_max),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        if !self.aux_metrics.is_empty() {
            m.push(("train/aux_loss".into(), self.aux_loss));
            m.extend(self.aux_metrics.iter().cloned());
        }
        let p = &self.phases;
        for (k, v) in [
            ("time/learn_forward_ms", p.forward),
            ("time/learn_loss_ms", p.loss),
            ("time/learn_aux_ms", p.aux),
            ("time/learn_backward_ms", p.backward),
            ("time/learn_optimiser_ms", p.optimiser),
        ] {
            m.push((k.to_string(), 1e3 * v));
        }
        m
    }
}

/// Data-parallel learners' sum of a flat gradient buffer ([`Learner::update_reduced`]).
pub type Reduce<'a> = dyn FnMut(&mut [f32]) -> Result<(), AgentError> + 'a;

/// One batch's loss gradients, before clipping.
enum Grads {
    /// From candle's autograd.
    Candle(candle_core::backprop::GradStore),
    /// From the lean path, in [`Learner`]'s `host_grads`.
    Host,
}

/// The loss terms of one update, read back to the host (for the statistics and the
/// NaN check).
#[derive(Debug, Clone, Copy)]
struct LossTerms {
    policy: f64,
    value: f64,
    entropy: f64,
    /// The total the parameters descend: the A2C loss plus the weighted auxiliary loss.
    total: f64,
    /// The auxiliary loss, unweighted, where there is one.
    aux: Option<f64>,
}

/// What [`Learner::compute`] found: the gradients, the loss terms (policy, value,
/// entropy, total, auxiliary), the explained variance and the auxiliary metrics.
struct Computed {
    grads: Grads,
    terms: LossTerms,
    ev: f64,
    aux_metrics: Vec<(String, f64)>,
    phases: Phases,
}

/// The learner: network, optional auxiliary loss, optimiser and update counter.
pub struct Learner<N: PolicyNetwork> {
    /// The network being trained.
    pub net: N,
    /// The auxiliary loss, if any; its parameters are optimised with the network's.
    pub aux: Option<Box<dyn AuxLoss>>,
    /// The optimiser over the network's and the auxiliary loss's parameters.
    pub optim: Optimizer,
    cfg: AlgoConfig,
    optim_cfg: OptimConfig,
    device: Device,
    /// Observation shape of one environment (e.g. `[4]` or `[H, W, C]`).
    obs_shape: Vec<usize>,
    updates: u64,
    /// Lean path: the optimiser's variable index of each lean parameter, and the
    /// gradients of the last batch by variable (empty: none).
    lean_map: Vec<usize>,
    host_grads: Vec<Vec<f32>>,
    /// Lean path: the auxiliary loss's gradients (z, c, its parameters; empty: none).
    aux_d_z: Vec<f32>,
    aux_d_c: Vec<f32>,
    aux_params: Vec<Vec<f32>>,
    /// Gradients of the network's own variables from an auxiliary loss that runs the
    /// network on inputs of its own (CURL's augmented views), by optimiser index; empty
    /// where it gave none.
    aux_net: Vec<Vec<f32>>,
    /// The network's variable names, in the optimiser's order (the lean path's).
    net_names: Vec<String>,
    scratch: Vec<f32>,
}

impl<N: PolicyNetwork> Learner<N> {
    /// A learner at update 0, with fresh optimiser state over `net`'s and `aux`'s
    /// parameters; `obs_shape` is one environment's observation shape.
    pub fn new(
        net: N,
        aux: Option<Box<dyn AuxLoss>>,
        cfg: AlgoConfig,
        optim_cfg: OptimConfig,
        obs_shape: Vec<usize>,
        device: Device,
    ) -> Result<Self, AgentError> {
        let mut vars = net.vars();
        if let Some(a) = &aux {
            vars.extend(a.vars());
        }
        let optim = Optimizer::new(optim_cfg.clone(), vars)?;
        Ok(Learner {
            net,
            aux,
            optim,
            cfg,
            optim_cfg,
            device,
            obs_shape,
            updates: 0,
            lean_map: Vec::new(),
            host_grads: Vec::new(),
            aux_d_z: Vec::new(),
            aux_d_c: Vec::new(),
            aux_params: Vec::new(),
            aux_net: Vec::new(),
            net_names: Vec::new(),
            scratch: Vec::new(),
        })
    }

    /// Updates made so far (the version of the next [`Learner::snapshot`]).
    pub fn updates(&self) -> u64 {
        self.updates
    }

    /// Sets the update counter, e.g. when resuming from a checkpoint; the optimiser's
    /// step count is restored separately ([`Optimizer::load_state`]).
    pub fn set_updates(&mut self, n: u64) {
        self.updates = n;
    }

    /// The actors' parameters at the current version.
    pub fn snapshot(&self) -> Result<ParamSnapshot, AgentError> {
        let mut params = self
            .net
            .vars()
            .into_iter()
            .map(|(name, v)| {
                let t = v.as_tensor();
                let data = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
                Ok((name, t.dims().to_vec(), data))
            })
            .collect::<Result<Vec<_>, AgentError>>()?;
        params.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(ParamSnapshot {
            version: self.updates,
            params,
        })
    }

    /// One update on `batch`; `progress` in [0, 1] drives the learning-rate schedule.
    /// Runs on the network's lean path where it has one ([`PolicyNetwork::lean`]),
    /// else through candle's autograd; both compute the same loss.
    pub fn update(&mut self, batch: &Rollout, progress: f64) -> Result<UpdateStats, AgentError> {
        self.update_reduced(batch, progress, None)
    }

    /// [`Learner::update`] with data-parallel gradients: `reduce` gets this batch's
    /// gradients, each variable's flattened in [`Optimizer::vars`]' order and weighted
    /// by the batch's env steps, then that weight as the last element; it must leave
    /// there the sums over every learner's batch (an all-reduce). The step then uses the
    /// mean gradient of the learners' joint batch — the same on every learner, so their
    /// parameters stay identical. Variables without a gradient are left alone, as in
    /// [`Learner::update`].
    pub fn update_reduced(
        &mut self,
        batch: &Rollout,
        progress: f64,
        reduce: Option<&mut Reduce<'_>>,
    ) -> Result<UpdateStats, AgentError> {
        let mut c = self.compute(batch)?;
        if let Some(reduce) = reduce {
            self.reduce_grads(&mut c, batch.env_steps() as f32, reduce)?;
        }
        // Clip by global norm, optimiser step.
        let t_opt = Instant::now();
        let grad_norm = match &c.grads {
            Grads::Candle(g) => self.optim.grad_norm(g)?,
            Grads::Host => self
                .host_grads
                .iter()
                .map(|g| g.iter().map(|&x| (x as f64) * (x as f64)).sum::<f64>())
                .sum::<f64>()
                .sqrt(),
        };
        let (scale, lr) = clip_and_rate(
            &self.cfg,
            &self.optim_cfg,
            self.updates,
            grad_norm,
            progress,
        )?;
        match &c.grads {
            Grads::Candle(g) => self.optim.step(g, lr, scale)?,
            Grads::Host => {
                let all: Vec<Option<&[f32]>> = self
                    .host_grads
                    .iter()
                    .map(|g| (!g.is_empty()).then_some(g.as_slice()))
                    .collect();
                self.optim.step_host(&all, lr, scale)?;
            }
        }
        if !self.device.is_cpu() {
            self.device.synchronize()?;
        }
        let mut phases = c.phases;
        phases.optimiser = t_opt.elapsed().as_secs_f64();
        let mut stats = self.finish(batch, &c.terms, c.ev, grad_norm, lr, c.aux_metrics);
        stats.phases = phases;
        Ok(stats)
    }

    /// Moves `c`'s gradients to the host (`host_grads`), weighted by `weight`, and
    /// replaces them with `reduce`'s weighted mean.
    fn reduce_grads(
        &mut self,
        c: &mut Computed,
        weight: f32,
        reduce: &mut Reduce<'_>,
    ) -> Result<(), AgentError> {
        let n = self.optim.vars().len();
        self.host_grads.resize_with(n, Vec::new);
        if let Grads::Candle(grads) = &c.grads {
            for (i, (_, var)) in self.optim.vars().iter().enumerate() {
                match grads.get(var) {
                    Some(t) => crate::optim::host_copy(t, &mut self.host_grads[i])?,
                    None => self.host_grads[i].clear(),
                }
            }
            c.grads = Grads::Host;
        }
        // Every variable's slot, zeros where this learner has no gradient (another may:
        // CPC has none on a batch without pairs), then one flag per variable saying
        // whether it had one, then the weight: the same layout on every learner.
        let sizes: Vec<usize> = self
            .optim
            .vars()
            .iter()
            .map(|(_, v)| v.elem_count())
            .collect();
        let mut flat = std::mem::take(&mut self.scratch);
        flat.clear();
        for (g, &size) in self.host_grads.iter().zip(&sizes) {
            if g.is_empty() {
                flat.resize(flat.len() + size, 0.0);
            } else {
                flat.extend(g.iter().map(|&x| x * weight));
            }
        }
        flat.extend(self.host_grads.iter().map(|g| (!g.is_empty()) as u8 as f32));
        flat.push(weight);
        reduce(&mut flat)?;
        let total = flat[flat.len() - 1];
        if total.is_nan() || total <= 0.0 {
            return Err(AgentError::Actors(format!(
                "the learners' joint batch weighs {total} env steps"
            )));
        }
        let flags = flat.len() - 1 - n;
        let mut at = 0;
        for (i, (g, &size)) in self.host_grads.iter_mut().zip(&sizes).enumerate() {
            g.clear();
            // No learner had a gradient: left alone, as in `update`.
            if flat[flags + i] > 0.0 {
                g.extend(flat[at..at + size].iter().map(|&y| y / total));
            }
            at += size;
        }
        self.scratch = flat;
        Ok(())
    }

    /// The gradient of `batch`'s loss with respect to every variable that has one, by
    /// name, before clipping; nothing is updated. (What [`Learner::update`] steps with;
    /// the tests compare the lean path's with candle's autograd.)
    pub fn gradients(&mut self, batch: &Rollout) -> Result<Vec<(String, Vec<f32>)>, AgentError> {
        let c = self.compute(batch)?;
        let mut out = Vec::new();
        for (i, (name, var)) in self.optim.vars().iter().enumerate() {
            let mut g = Vec::new();
            match &c.grads {
                Grads::Candle(grads) => match grads.get(var) {
                    Some(t) => crate::optim::host_copy(t, &mut g)?,
                    None => continue,
                },
                Grads::Host if self.host_grads[i].is_empty() => continue,
                Grads::Host => g.clone_from(&self.host_grads[i]),
            }
            out.push((name.clone(), g));
        }
        Ok(out)
    }

    /// Forward, returns, loss and backward of one batch, on the lean path where the
    /// network has one.
    fn compute(&mut self, batch: &Rollout) -> Result<Computed, AgentError> {
        if self.net.lean().is_some() {
            return self.compute_lean(batch);
        }
        let (t, b) = (batch.t, batch.b);
        let mut clock = Clock::start(&self.device);
        let dev = &self.device;

        // Forward over the unroll: T+1 steps, the last one only bootstraps.
        let obs = obs_tensor(&self.obs_shape, dev, batch)?;
        let first = Tensor::from_slice(&batch.first, (t + 1, b), dev)?;
        let init_state = Tensor::from_slice(&batch.init_state, (b, batch.state_size), dev)?;
        let out = self.net.unroll(&obs, &first, &init_state)?;

        let n_actions = out.logits.dim(D::Minus1)?;
        let logits = out.logits.narrow(0, 0, t)?.reshape((t * b, n_actions))?;
        let log_probs = log_softmax(&logits, D::Minus1)?;
        let actions = Tensor::from_slice(&batch.actions, (t * b, 1), dev)?;
        let logp_a = log_probs.gather(&actions, 1)?.squeeze(1)?;
        let values_all = out.values.clone(); // [T+1, B]

        clock.lap(|p| &mut p.forward)?;
        // Returns: GAE(λ) on-policy, V-trace when correcting for policy lag.
        let values_host = values_all.flatten_all()?.to_vec1::<f32>()?;
        let (targets, ev) = returns(&self.cfg, batch, &values_host, || {
            Ok(logp_a.to_vec1::<f32>()?)
        })?;

        // Loss: policy gradient, value regression, entropy bonus, auxiliary term.
        let adv = Tensor::from_slice(&targets.advantages, t * b, dev)?;
        let vt = Tensor::from_slice(&targets.value_targets, t * b, dev)?;
        let values = values_all.narrow(0, 0, t)?.reshape(t * b)?;
        let policy_loss = policy_gradient_loss(&adv, &logp_a)?;
        let value_loss = value_loss(&vt, &values)?;
        let entropy = entropy(&log_probs)?;
        let mut total = ((&policy_loss + (&value_loss * self.cfg.vf_coef)?)?
            - (&entropy * self.cfg.ent_coef)?)?;
        clock.lap(|p| &mut p.loss)?;
        let mut aux_metrics = Vec::new();
        let mut aux_loss = None;
        if let Some(aux) = self.aux.as_mut() {
            let a = aux.loss(
                &out,
                crate::AuxBatch {
                    first: &batch.first,
                    obs: &obs,
                    actions: &batch.actions,
                },
            )?;
            total = (total + (&a.loss * aux.weight())?)?;
            aux_loss = Some(a.loss);
            aux_metrics = a.metrics;
        }

        clock.lap(|p| &mut p.aux)?;
        // Watch for NaN before touching the parameters.
        let mut scalars = vec![policy_loss, value_loss, entropy, total.clone()];
        if let Some(a) = &aux_loss {
            scalars.push(a.clone());
        }
        let host = Tensor::stack(&scalars, 0)?
            .to_dtype(DType::F64)?
            .to_vec1::<f64>()?;
        let terms = LossTerms {
            policy: host[0],
            value: host[1],
            entropy: host[2],
            total: host[3],
            aux: host.get(4).copied(),
        };
        self.check_finite(&terms)?;

        // Backprop.
        let grads = total.backward()?;
        clock.lap(|p| &mut p.backward)?;
        Ok(Computed {
            grads: Grads::Candle(grads),
            terms,
            ev,
            aux_metrics,
            phases: clock.phases,
        })
    }

    /// [`Learner::compute`] on the network's lean path: forward, the A2C loss and its
    /// gradient, and backward on host slices. An auxiliary loss without a host path
    /// runs in candle, on leaf tensors holding the lean forward's z and c; its gradients
    /// with respect to them join the lean backward, and those it gives the network's
    /// variables directly (CURL encodes views of its own) are added to the backward's.
    fn compute_lean(&mut self, batch: &Rollout) -> Result<Computed, AgentError> {
        let (t, b) = (batch.t, batch.b);
        let mut clock = Clock::start(&self.device);
        let dev = self.device.clone();
        // The lean copies follow the variables (a checkpoint may have set them).
        if self.lean_map.is_empty() {
            let n_net = self.net.vars().len();
            let names = self.net.lean().expect("compute checked").param_names();
            let vars = self.optim.vars();
            let map: Vec<usize> = names
                .iter()
                .map(|n| vars.iter().position(|(v, _)| v == n).unwrap_or(usize::MAX))
                .collect();
            // Every lean parameter is one of the network's variables, which the optimiser
            // holds first (then the head's).
            if names.len() != n_net || map.iter().any(|&i| i >= n_net) {
                return Err(AgentError::State(format!(
                    "the lean path's parameters {names:?} are not the network's {n_net} variables"
                )));
            }
            self.host_grads = vec![Vec::new(); vars.len()];
            self.net_names = vars[..n_net].iter().map(|(n, _)| n.clone()).collect();
            self.lean_map = map;
        }
        let lean = self.net.lean().expect("compute checked the lean path");
        for (i, &vi) in self.lean_map.iter().enumerate() {
            let var = self.optim.vars()[vi].1.as_tensor();
            crate::optim::with_host_slice(var, &mut self.scratch, |v| {
                lean.param_mut(i).copy_from_slice(v)
            })?;
        }

        // Forward over the unroll: T+1 steps, the last one only bootstraps.
        lean.forward(&batch.obs, &batch.first, &batch.init_state, b);
        let out = lean.outputs();
        let a = out.logits.len() / ((t + 1) * b);
        let mut log_probs = std::mem::take(&mut self.scratch);
        crate::loss::log_softmax(&out.logits[..t * b * a], a, &mut log_probs);
        clock.lap(|p| &mut p.forward)?;
        // Returns, then the loss and its gradient with respect to logits and values.
        let (targets, ev) = returns(&self.cfg, batch, out.values, || {
            Ok((0..t * b)
                .map(|r| log_probs[r * a + batch.actions[r] as usize])
                .collect())
        })?;
        let mut d_logits = vec![0.0; (t + 1) * b * a];
        let mut d_values = vec![0.0; (t + 1) * b];
        let terms = crate::loss::a2c(
            &log_probs,
            a,
            &batch.actions,
            &targets.advantages,
            &targets.value_targets,
            out.values,
            (self.cfg.vf_coef as f32, self.cfg.ent_coef as f32),
            &mut d_logits,
            &mut d_values,
        );
        self.scratch = log_probs;
        let mut loss = LossTerms {
            policy: terms.policy,
            value: terms.value,
            entropy: terms.entropy,
            total: terms.policy + self.cfg.vf_coef * terms.value
                - self.cfg.ent_coef * terms.entropy,
            aux: None,
        };

        clock.lap(|p| &mut p.loss)?;
        // The auxiliary loss: on host slices where it has a host path, else in candle on
        // leaf tensors holding z and c. Its gradients are weighted here.
        let n_net = self.lean_map.len();
        let (mut has_d_z, mut has_d_c, mut aux_metrics) = (false, false, Vec::new());
        self.aux_net.resize(n_net, Vec::new());
        self.aux_net.iter_mut().for_each(Vec::clear);
        if let Some(aux) = self.aux.as_mut() {
            let w = aux.weight();
            let vars = &self.optim.vars()[n_net..];
            self.aux_params.resize(vars.len(), Vec::new());
            for (g, (_, v)) in self.aux_params.iter_mut().zip(vars) {
                g.clear();
                g.resize(v.elem_count(), 0.0);
            }
            self.aux_d_z.clear();
            self.aux_d_z.resize(out.z.len(), 0.0);
            self.aux_d_c.clear();
            self.aux_d_c.resize(out.c.len(), 0.0);
            let on_host = aux.host_loss(
                &out,
                &batch.first,
                &batch.actions,
                &batch.obs,
                crate::HostGrads {
                    d_z: &mut self.aux_d_z,
                    d_c: &mut self.aux_d_c,
                    params: &mut self.aux_params,
                    net: &mut self.aux_net,
                    net_names: &self.net_names,
                },
            );
            let value = match on_host {
                Some(r) => {
                    let r = r?;
                    aux_metrics = r.metrics;
                    for v in self
                        .aux_d_z
                        .iter_mut()
                        .chain(self.aux_d_c.iter_mut())
                        .chain(self.aux_params.iter_mut().flatten())
                        .chain(self.aux_net.iter_mut().flatten())
                    {
                        *v *= w as f32;
                    }
                    (has_d_z, has_d_c) = (true, true);
                    r.loss
                }
                None => {
                    let z = Var::from_slice(out.z, (t + 1, b, out.z_dim), &dev)?;
                    let c = match out.has_core {
                        true => Some(Var::from_slice(out.c, (t + 1, b, out.c_dim), &dev)?),
                        false => None,
                    };
                    let unroll = crate::UnrollOutput {
                        logits: Tensor::from_slice(out.logits, (t + 1, b, a), &dev)?,
                        values: Tensor::from_slice(out.values, (t + 1, b), &dev)?,
                        z: z.as_tensor().clone(),
                        c: c.as_ref().unwrap_or(&z).as_tensor().clone(),
                    };
                    let obs = obs_tensor(&self.obs_shape, &dev, batch)?;
                    let o = aux.loss(
                        &unroll,
                        crate::AuxBatch {
                            first: &batch.first,
                            obs: &obs,
                            actions: &batch.actions,
                        },
                    )?;
                    let grads = (&o.loss * w)?.backward()?;
                    let copy = |v: &Var, out: &mut Vec<f32>| -> Result<bool, AgentError> {
                        match grads.get(v) {
                            Some(g) => crate::optim::host_copy(g, out).map(|_| true),
                            None => Ok(false),
                        }
                    };
                    has_d_z = copy(&z, &mut self.aux_d_z)?;
                    if let Some(c) = &c {
                        has_d_c = copy(c, &mut self.aux_d_c)?;
                    }
                    for (g, (_, v)) in self.aux_params.iter_mut().zip(vars) {
                        if !copy(v, g)? {
                            g.clear();
                        }
                    }
                    // A loss that ran the network on inputs of its own (CURL's views)
                    // reaches the network's variables directly: those gradients are
                    // added to the lean backward's below.
                    let net_vars = &self.optim.vars()[..n_net];
                    for (g, (_, v)) in self.aux_net.iter_mut().zip(net_vars) {
                        if !copy(v, g)? {
                            g.clear();
                        }
                    }
                    aux_metrics = o.metrics;
                    o.loss.to_dtype(DType::F64)?.to_scalar::<f64>()?
                }
            };
            loss.total += w * value;
            loss.aux = Some(value);
        }
        clock.lap(|p| &mut p.aux)?;
        self.check_finite(&loss)?;

        // Backward: the network's gradients, then the auxiliary head's.
        let lean = self.net.lean().expect("compute checked the lean path");
        let grads = lean.backward(
            &d_logits,
            &d_values,
            has_d_z.then_some(self.aux_d_z.as_slice()),
            has_d_c.then_some(self.aux_d_c.as_slice()),
        );
        for (g, &vi) in grads.iter().zip(&self.lean_map) {
            self.host_grads[vi].clone_from(g);
        }
        for (g, extra) in self.host_grads.iter_mut().zip(&self.aux_net) {
            if !extra.is_empty() {
                g.iter_mut().zip(extra).for_each(|(a, b)| *a += b);
            }
        }
        if self.aux.is_some() {
            // Swapped, not copied: `aux_params` is zeroed before the next update's use.
            for (j, g) in self.aux_params.iter_mut().enumerate() {
                std::mem::swap(&mut self.host_grads[n_net + j], g);
            }
        }
        clock.lap(|p| &mut p.backward)?;
        Ok(Computed {
            grads: Grads::Host,
            terms: loss,
            ev,
            aux_metrics,
            phases: clock.phases,
        })
    }

    /// Refuses to update on a NaN or infinite loss term (policy, value, entropy, total,
    /// auxiliary), naming it.
    fn check_finite(&self, t: &LossTerms) -> Result<(), AgentError> {
        let terms = [
            ("policy_loss", Some(t.policy)),
            ("value_loss", Some(t.value)),
            ("entropy", Some(t.entropy)),
            ("total_loss", Some(t.total)),
            ("aux_loss", t.aux),
        ];
        for (name, v) in terms {
            if let Some(v) = v.filter(|v| !v.is_finite()) {
                return Err(AgentError::NonFinite {
                    update: self.updates + 1,
                    term: name.to_string(),
                    value: v,
                });
            }
        }
        Ok(())
    }

    /// Counts the update and gathers its statistics.
    fn finish(
        &mut self,
        batch: &Rollout,
        t: &LossTerms,
        ev: f64,
        grad_norm: f64,
        lr: f64,
        aux_metrics: Vec<(String, f64)>,
    ) -> UpdateStats {
        self.updates += 1;
        let lags: Vec<f64> = batch
            .policy_version
            .iter()
            .map(|v| self.updates.saturating_sub(1).saturating_sub(*v) as f64)
            .collect();
        UpdateStats {
            policy_loss: t.policy,
            value_loss: t.value,
            entropy: t.entropy,
            total_loss: t.total,
            aux_loss: t.aux.unwrap_or(0.0),
            explained_variance: ev,
            grad_norm,
            learning_rate: lr,
            policy_lag_mean: lags.iter().sum::<f64>() / lags.len().max(1) as f64,
            policy_lag_max: lags.iter().cloned().fold(0.0, f64::max),
            aux_metrics,
            phases: Phases::default(),
        }
    }
}

/// Times consecutive phases: each [`Clock::lap`] charges the time since the last.
struct Clock {
    last: Instant,
    phases: Phases,
    /// Waited on at each lap when it is a GPU, whose kernels run asynchronously: the
    /// time of a phase is then its own, not the next host read's.
    device: Device,
}

impl Clock {
    fn start(device: &Device) -> Self {
        Clock {
            last: Instant::now(),
            phases: Phases::default(),
            device: device.clone(),
        }
    }

    fn lap(&mut self, phase: fn(&mut Phases) -> &mut f64) -> Result<(), AgentError> {
        if !self.device.is_cpu() {
            self.device.synchronize()?;
        }
        let now = Instant::now();
        *phase(&mut self.phases) += (now - self.last).as_secs_f64();
        self.last = now;
        Ok(())
    }
}

/// Value targets and advantages (GAE(λ), or V-trace with the learner's log π(a|s)
/// from `logp_a`), normalised if configured, and the values' explained variance.
fn returns(
    cfg: &AlgoConfig,
    batch: &Rollout,
    values: &[f32],
    logp_a: impl FnOnce() -> Result<Vec<f32>, AgentError>,
) -> Result<(Targets, f64), AgentError> {
    let (t, b) = (batch.t, batch.b);
    let clipped: Vec<f32>;
    let rewards = if cfg.reward_clip > 0.0 {
        let c = cfg.reward_clip as f32;
        clipped = batch.rewards.iter().map(|r| r.clamp(-c, c)).collect();
        &clipped[..]
    } else {
        &batch.rewards[..]
    };
    let tr = Trajectory {
        t,
        b,
        rewards,
        values,
        terminated: &batch.terminated,
        truncated: &batch.truncated,
        final_values: &batch.final_values,
        gamma: cfg.gamma as f32,
    };
    let mut targets = if cfg.vtrace {
        let log_rhos: Vec<f32> = logp_a()?
            .iter()
            .zip(&batch.behaviour_logp)
            .map(|(p, m)| p - m)
            .collect();
        vtrace(
            &tr,
            &log_rhos,
            cfg.vtrace_rho_bar as f32,
            cfg.vtrace_c_bar as f32,
            cfg.gae_lambda as f32,
        )
    } else {
        gae(&tr, cfg.gae_lambda as f32)
    };
    let ev = explained_variance(&values[..t * b], &targets.value_targets);
    if cfg.normalize_advantages {
        normalize(&mut targets.advantages);
    }
    Ok((targets, ev))
}

/// The clipping scale for `grad_norm` and this step's learning rate.
fn clip_and_rate(
    cfg: &AlgoConfig,
    optim_cfg: &OptimConfig,
    updates: u64,
    grad_norm: f64,
    progress: f64,
) -> Result<(f64, f64), AgentError> {
    if !grad_norm.is_finite() {
        return Err(AgentError::NonFinite {
            update: updates + 1,
            term: "gradient norm".into(),
            value: grad_norm,
        });
    }
    let max = cfg.max_grad_norm;
    let scale = if max > 0.0 && grad_norm > max {
        max / (grad_norm + 1e-6)
    } else {
        1.0
    };
    let lr = if optim_cfg.lr_linear_decay {
        optim_cfg.lr * (1.0 - progress).max(0.0)
    } else {
        optim_cfg.lr
    };
    Ok((scale, lr))
}

/// The batch's observations as a `[T+1, B, ...]` tensor.
fn obs_tensor(obs_shape: &[usize], dev: &Device, batch: &Rollout) -> Result<Tensor, AgentError> {
    let mut shape = vec![batch.t + 1, batch.b];
    shape.extend_from_slice(obs_shape);
    Ok(Tensor::from_slice(&batch.obs, shape, dev)?)
}

fn normalize(x: &mut [f32]) {
    let n = x.len() as f32;
    let mean = x.iter().sum::<f32>() / n;
    let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
    let std = var.sqrt() + 1e-8;
    x.iter_mut().for_each(|v| *v = (*v - mean) / std);
}

/// The policy-gradient loss −mean(A · log π(a|s)), the advantages A held constant.
fn policy_gradient_loss(advantages: &Tensor, logp_a: &Tensor) -> candle_core::Result<Tensor> {
    (advantages * logp_a)?.mean_all()?.neg()
}

/// The value regression ½·mean((target − V)²), before `vf_coef`.
fn value_loss(targets: &Tensor, values: &Tensor) -> candle_core::Result<Tensor> {
    (targets - values)?.sqr()?.mean_all()? * 0.5
}

/// The policy's mean entropy −mean Σ_a π(a|s) log π(a|s), in nats, from log-probabilities
/// `[N, A]`.
fn entropy(log_probs: &Tensor) -> candle_core::Result<Tensor> {
    (log_probs.exp()? * log_probs)?
        .sum(D::Minus1)?
        .mean_all()?
        .neg()
}
