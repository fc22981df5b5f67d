//! Action-conditioned CPC, CPC|A (Guo et al. 2018, "Neural Predictive Belief
//! Representations"; as Sample Factory v1's `CPCA` and habitat-lab's auxiliary losses
//! implement it): from the context c_t, a GRU reads the actions a_t … a_{t+k−1} (one-hot)
//! and its state b_{t,k} after k of them predicts z_{t+k}. A classifier
//! f(b, z) = w₂ᵀ ReLU(W₁ [b; z] + b₁) + b₂ scores a candidate; two objectives use it
//! (`aux.cpca_loss`):
//! - `binary` (Guo et al., Sample Factory, habitat): logistic loss, the positive z_{t+k}
//!   labelled 1 and each negative 0: `softplus(−f(b, z⁺)) + mean_j softplus(f(b, z⁻_j))`;
//! - `infonce`: InfoNCE over the positive and the negatives, as the CPC head.
//!
//! Pairs (t, k) and negatives are sampled as for CPC ([`crate::cpc`]): the same episode,
//! inside the unroll, every horizon weighted alike. The field's defaults: weight 0.1,
//! 20 negatives, horizons k up to 8 (Sample Factory) to 20 (habitat).

use candle_core::{DType, Device, Tensor, Var, D};
use candle_nn::ops::log_softmax;
use candle_nn::{VarBuilder, VarMap};
use rand::SeedableRng;
use rlcpc_agents::{AgentError, AuxBatch, AuxLoss, AuxOutput, UnrollOutput};
use rlcpc_envs::SeededRng;
use serde::{Deserialize, Serialize};

use crate::config::AuxConfig;
use crate::cpc::{hit, horizon_buckets, pair_weights, sample_candidates, sample_pairs};
use crate::cpc::{CpcSampling, Pair};
use crate::nn::gru::Gru;
use crate::nn::init::Init;

/// CPC|A's objective over the classifier's scores.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CpcaLoss {
    /// Logistic loss: the positive labelled 1, each negative 0 (Guo et al. 2018).
    #[default]
    Binary,
    /// InfoNCE over the positive and the negatives.
    Infonce,
}

/// The sizes of the head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpcaDims {
    /// Number of actions (the GRU's one-hot input).
    pub actions: usize,
    /// Width of the targets z.
    pub z_dim: usize,
    /// Width of the context c (the GRU's state).
    pub c_dim: usize,
}

/// The CPC|A head: the action GRU and the classifier.
pub struct CpcaAux {
    gru: Gru,
    w1b: Tensor,
    w1z: Tensor,
    b1: Tensor,
    w2: Tensor,
    b2: Tensor,
    dims: CpcaDims,
    sampling: CpcSampling,
    objective: CpcaLoss,
    weight: f64,
    rng: SeededRng,
    varmap: VarMap,
}

/// One evaluation's loss and statistics.
pub struct CpcaResult {
    pub loss: Tensor,
    pub pairs: Vec<Pair>,
    /// Scores `[P, 1+M]`, the positive first (host copy).
    pub scores: Vec<Vec<f32>>,
    pub weights: Vec<f64>,
}

impl CpcaAux {
    pub const PREFIX: &'static str = "aux.cpca";

    /// PyTorch's initialisations: GRU and linear layers uniform in ±1/√fan.
    pub fn init(d: CpcaDims, init: &mut Init) -> candle_core::Result<()> {
        let p = Self::PREFIX;
        Gru::init(d.actions, d.c_dim, init, &format!("{p}.gru"))?;
        let fan = d.c_dim + d.z_dim;
        init.uniform_fan_in(&format!("{p}.fc1.weight_b"), &[d.c_dim, d.c_dim], fan)?;
        init.uniform_fan_in(&format!("{p}.fc1.weight_z"), &[d.c_dim, d.z_dim], fan)?;
        init.uniform_fan_in(&format!("{p}.fc1.bias"), &[d.c_dim], fan)?;
        init.uniform_fan_in(&format!("{p}.fc2.weight"), &[1, d.c_dim], d.c_dim)?;
        init.uniform_fan_in(&format!("{p}.fc2.bias"), &[1], d.c_dim)
    }

    pub fn new(
        cfg: &AuxConfig,
        d: CpcaDims,
        varmap: &VarMap,
        device: &Device,
        seed: u64,
    ) -> candle_core::Result<Self> {
        let vb = VarBuilder::from_varmap(varmap, DType::F32, device).pp(Self::PREFIX);
        Ok(CpcaAux {
            gru: Gru::new(d.actions, d.c_dim, vb.pp("gru"))?,
            w1b: vb.get((d.c_dim, d.c_dim), "fc1.weight_b")?,
            w1z: vb.get((d.c_dim, d.z_dim), "fc1.weight_z")?,
            b1: vb.get(d.c_dim, "fc1.bias")?,
            w2: vb.get((1, d.c_dim), "fc2.weight")?,
            b2: vb.get(1, "fc2.bias")?,
            dims: d,
            sampling: cfg.into(),
            objective: cfg.cpca_loss,
            weight: cfg.weight,
            rng: SeededRng::seed_from_u64(seed ^ 0xC0CA_C0CA),
            varmap: varmap.clone(),
        })
    }

    /// The loss over an unroll: `z` `[T+1, B, Dz]`, `c` `[T+1, B, Dc]`, `first`
    /// `[T+1, B]`, `actions` `[T, B]`. `None` when no pair fits.
    pub fn evaluate(
        &mut self,
        z: &Tensor,
        c: &Tensor,
        first: &[f32],
        actions: &[u32],
    ) -> candle_core::Result<Option<CpcaResult>> {
        let (t_len, b, dz) = z.dims3()?;
        let dc = self.dims.c_dim;
        let s = &self.sampling;
        let pairs = sample_pairs(first, t_len, b, s, &mut self.rng);
        if pairs.is_empty() {
            return Ok(None);
        }
        let weights = pair_weights(&pairs, first, t_len, b, s);
        let cand = sample_candidates(&pairs, t_len, b, s, &mut self.rng);
        // Each distinct anchor (t, b) runs the GRU once over the longest k it needs.
        let steps = pairs.iter().map(|p| p.k).max().unwrap_or(1);
        let (anchors, pred_rows) = crate::cpc::anchors(&pairs, t_len, b, steps);
        let n_act = self.dims.actions;
        let u = anchors.len();
        let mut onehot = vec![0f32; u * steps * n_act];
        for (i, &a) in anchors.iter().enumerate() {
            let (t, j) = (a as usize / b, a as usize % b);
            for k in 0..steps {
                if t + k < t_len - 1 {
                    let act = actions[(t + k) * b + j] as usize;
                    onehot[(i * steps + k) * n_act + act] = 1.0;
                }
            }
        }
        let dev = z.device();
        let idx = |v: Vec<u32>| {
            let n = v.len();
            Tensor::from_vec(v, n, dev)
        };
        let h0 = c
            .reshape((t_len * b, dc))?
            .index_select(&idx(anchors)?, 0)?;
        let x = Tensor::from_vec(onehot, (u, steps, n_act), dev)?;
        let states = self.gru.forward_from(&x, &h0)?; // [U, steps, Dc]
        let preds = states
            .reshape((u * steps, dc))?
            .index_select(&idx(pred_rows)?, 0)?; // [P, Dc]
        let m1 = 1 + s.num_negatives;
        let np = pairs.len();
        // f(b, z) = w2·relu(W1b b + W1z z + b1) + b2, the first layer split over [b; z].
        let hb = preds.matmul(&self.w1b.t()?)?.broadcast_add(&self.b1)?; // [P, Dc]
        let hz = z.reshape((t_len * b, dz))?.matmul(&self.w1z.t()?)?; // [T·B, Dc]
        let cand_t = Tensor::from_vec(cand, np * m1, dev)?;
        let hz = hz.index_select(&cand_t, 0)?.reshape((np, m1, dc))?;
        let hidden = hz.broadcast_add(&hb.unsqueeze(1)?)?.relu()?;
        let sc = hidden
            .reshape((np * m1, dc))?
            .matmul(&self.w2.t()?)?
            .broadcast_add(&self.b2)?
            .reshape((np, m1))?;
        let per_pair = match self.objective {
            CpcaLoss::Infonce => log_softmax(&sc, D::Minus1)?.narrow(1, 0, 1)?.neg()?,
            CpcaLoss::Binary => {
                let pos = softplus(&sc.narrow(1, 0, 1)?.neg()?)?;
                let neg = softplus(&sc.narrow(1, 1, m1 - 1)?)?.mean_keepdim(1)?;
                (pos + neg)?
            }
        }; // [P, 1]
        let w = Tensor::from_vec(
            weights.iter().map(|&w| w as f32).collect::<Vec<_>>(),
            (np, 1),
            dev,
        )?;
        let loss = per_pair.mul(&w)?.sum_all()?;
        Ok(Some(CpcaResult {
            loss,
            pairs,
            scores: sc.to_vec2::<f32>()?,
            weights,
        }))
    }
}

/// log(1 + eˣ), computed stably as max(x, 0) + log(1 + e^−|x|).
fn softplus(x: &Tensor) -> candle_core::Result<Tensor> {
    x.relu()? + ((x.abs()?.neg()?.exp()? + 1.0)?.log()?)
}

impl AuxLoss for CpcaAux {
    fn weight(&self) -> f64 {
        self.weight
    }

    fn loss(&mut self, out: &UnrollOutput, batch: AuxBatch) -> Result<AuxOutput, AgentError> {
        let Some(r) = self.evaluate(&out.z, &out.c, batch.first, batch.actions)? else {
            return Ok(AuxOutput {
                loss: Tensor::zeros((), DType::F32, out.z.device())?,
                metrics: vec![("cpca/pairs".into(), 0.0)],
            });
        };
        let hits: Vec<f64> = r.scores.iter().map(|row| hit(row)).collect();
        let mut metrics = vec![
            ("cpca/pairs".to_string(), r.pairs.len() as f64),
            (
                "cpca/acc".to_string(),
                hits.iter().sum::<f64>() / hits.len() as f64,
            ),
        ];
        for (name, lo, hi) in horizon_buckets(self.sampling.horizon) {
            let got: Vec<f64> = r
                .pairs
                .iter()
                .zip(&hits)
                .filter(|(p, _)| p.k >= lo && p.k <= hi)
                .map(|(_, h)| *h)
                .collect();
            if !got.is_empty() {
                let acc = got.iter().sum::<f64>() / got.len() as f64;
                metrics.push((format!("cpca/acc_{name}"), acc));
            }
        }
        Ok(AuxOutput {
            loss: r.loss,
            metrics,
        })
    }

    fn vars(&self) -> Vec<(String, Var)> {
        crate::nn::AgentNet::named_vars(&self.varmap, |k| k.starts_with("aux."))
    }

    fn save_rng(&self) -> serde_json::Value {
        crate::cpc::rng_state(&self.rng)
    }

    fn load_rng(&mut self, v: &serde_json::Value) -> Result<(), AgentError> {
        self.rng = crate::cpc::rng_from_state(v)?;
        Ok(())
    }
}
