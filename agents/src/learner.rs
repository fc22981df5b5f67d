//! One A2C update from a batch of rollouts (Mnih et al. 2016; Espeholt et al. 2018 §4).

use candle_core::{DType, Device, Tensor, D};
use candle_nn::ops::log_softmax;

use crate::config::{AlgoConfig, OptimConfig};
use crate::network::{AuxLoss, PolicyNetwork};
use crate::optim::Optimizer;
use crate::returns::{explained_variance, gae, vtrace, Trajectory};
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
        m
    }
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
    pub fn update(&mut self, batch: &Rollout, progress: f64) -> Result<UpdateStats, AgentError> {
        let (t, b) = (batch.t, batch.b);
        let dev = &self.device;

        // Forward over the unroll: T+1 steps, the last one only bootstraps.
        let mut obs_shape = vec![t + 1, b];
        obs_shape.extend_from_slice(&self.obs_shape);
        let obs = Tensor::from_slice(&batch.obs, obs_shape, dev)?;
        let first = Tensor::from_slice(&batch.first, (t + 1, b), dev)?;
        let init_state = Tensor::from_slice(&batch.init_state, (b, batch.state_size), dev)?;
        let out = self.net.unroll(&obs, &first, &init_state)?;

        let n_actions = out.logits.dim(D::Minus1)?;
        let logits = out.logits.narrow(0, 0, t)?.reshape((t * b, n_actions))?;
        let log_probs = log_softmax(&logits, D::Minus1)?;
        let actions = Tensor::from_slice(&batch.actions, (t * b, 1), dev)?;
        let logp_a = log_probs.gather(&actions, 1)?.squeeze(1)?;
        let values_all = out.values.clone(); // [T+1, B]

        // Returns: GAE(λ) on-policy, V-trace when correcting for policy lag.
        let values_host = values_all.flatten_all()?.to_vec1::<f32>()?;
        let tr = Trajectory {
            t,
            b,
            rewards: &batch.rewards,
            values: &values_host,
            terminated: &batch.terminated,
            truncated: &batch.truncated,
            final_values: &batch.final_values,
            gamma: self.cfg.gamma as f32,
        };
        let mut targets = if self.cfg.vtrace {
            let logp_host = logp_a.to_vec1::<f32>()?;
            let log_rhos: Vec<f32> = logp_host
                .iter()
                .zip(&batch.behaviour_logp)
                .map(|(p, m)| p - m)
                .collect();
            vtrace(
                &tr,
                &log_rhos,
                self.cfg.vtrace_rho_bar as f32,
                self.cfg.vtrace_c_bar as f32,
                self.cfg.gae_lambda as f32,
            )
        } else {
            gae(&tr, self.cfg.gae_lambda as f32)
        };
        let ev = explained_variance(&values_host[..t * b], &targets.value_targets);
        if self.cfg.normalize_advantages {
            normalize(&mut targets.advantages);
        }

        // Loss: policy gradient, value regression, entropy bonus, auxiliary term.
        let adv = Tensor::from_slice(&targets.advantages, t * b, dev)?;
        let vt = Tensor::from_slice(&targets.value_targets, t * b, dev)?;
        let values = values_all.narrow(0, 0, t)?.reshape(t * b)?;
        let policy_loss = policy_gradient_loss(&adv, &logp_a)?;
        let value_loss = value_loss(&vt, &values)?;
        let entropy = entropy(&log_probs)?;
        let mut total = ((&policy_loss + (&value_loss * self.cfg.vf_coef)?)?
            - (&entropy * self.cfg.ent_coef)?)?;
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

        // Watch for NaN before touching the parameters.
        let mut scalars = vec![policy_loss, value_loss, entropy, total.clone()];
        if let Some(a) = &aux_loss {
            scalars.push(a.clone());
        }
        let host = Tensor::stack(&scalars, 0)?
            .to_dtype(DType::F64)?
            .to_vec1::<f64>()?;
        let names = [
            "policy_loss",
            "value_loss",
            "entropy",
            "total_loss",
            "aux_loss",
        ];
        for (name, v) in names.iter().zip(&host) {
            if !v.is_finite() {
                return Err(AgentError::NonFinite {
                    update: self.updates + 1,
                    term: name.to_string(),
                    value: *v,
                });
            }
        }

        // Update: backprop, clip by global norm, optimiser step.
        let grads = total.backward()?;
        let grad_norm = self.optim.grad_norm(&grads)?;
        if !grad_norm.is_finite() {
            return Err(AgentError::NonFinite {
                update: self.updates + 1,
                term: "gradient norm".into(),
                value: grad_norm,
            });
        }
        let max = self.cfg.max_grad_norm;
        let scale = if max > 0.0 && grad_norm > max {
            max / (grad_norm + 1e-6)
        } else {
            1.0
        };
        let lr = if self.optim_cfg.lr_linear_decay {
            self.optim_cfg.lr * (1.0 - progress).max(0.0)
        } else {
            self.optim_cfg.lr
        };
        self.optim.step(&grads, lr, scale)?;
        self.updates += 1;

        let lags: Vec<f64> = batch
            .policy_version
            .iter()
            .map(|v| self.updates.saturating_sub(1).saturating_sub(*v) as f64)
            .collect();
        Ok(UpdateStats {
            policy_loss: host[0],
            value_loss: host[1],
            entropy: host[2],
            total_loss: host[3],
            aux_loss: host.get(4).copied().unwrap_or(0.0),
            explained_variance: ev,
            grad_norm,
            learning_rate: lr,
            policy_lag_mean: lags.iter().sum::<f64>() / lags.len().max(1) as f64,
            policy_lag_max: lags.iter().cloned().fold(0.0, f64::max),
            aux_metrics,
        })
    }
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
