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
//! Pairs (t, k) and negatives are sampled as for CPC ([`crate::contrastive::cpc`]): the same episode,
//! inside the unroll, every horizon weighted alike. The field's defaults: weight 0.1,
//! 20 negatives, horizons k up to 8 (Sample Factory) to 20 (habitat).

use candle_core::{DType, Device, Tensor, Var, D};
use candle_nn::ops::log_softmax;
use candle_nn::{VarBuilder, VarMap};
use rlcpc_agents::{
    AgentError, AuxBatch, AuxLoss, AuxOutput, HostAuxOutput, HostGrads, LeanOutputs, UnrollOutput,
};

use super::HeadState;
use crate::config::CpcaHeadConfig;
pub use crate::config::CpcaLoss;
use crate::contrastive::cpc::{
    hit, horizon_buckets, pair_weights, sample_candidates, sample_pairs,
};
use crate::contrastive::cpc::{CpcSampling, Pair};
use crate::nn::gru::Gru;
use crate::nn::init::Init;
use crate::nn::NetSpec;

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
    state: HeadState,
    host: HostCpca,
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
        cfg: &CpcaHeadConfig,
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
            sampling: (&cfg.predict).into(),
            objective: cfg.cpca_loss,
            weight: cfg.predict.weight,
            state: HeadState::new(varmap, seed ^ 0xC0CA_C0CA),
            host: HostCpca::default(),
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
        let pairs = sample_pairs(first, t_len, b, s, &mut self.state.rng);
        if pairs.is_empty() {
            return Ok(None);
        }
        let weights = pair_weights(&pairs, first, t_len, b, s);
        let cand = sample_candidates(&pairs, t_len, b, s, &mut self.state.rng);
        // Each distinct anchor (t, b) runs the GRU once over the longest k it needs.
        let steps = pairs.iter().map(|p| p.k).max().unwrap_or(1);
        let (anchors, pred_rows) = crate::contrastive::cpc::anchors(&pairs, t_len, b, steps);
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

impl CpcaAux {
    /// Pairs, accuracy, and accuracy per horizon bucket.
    fn metrics(&self, pairs: &[Pair], scores: &[Vec<f32>]) -> Vec<(String, f64)> {
        let hits: Vec<f64> = scores.iter().map(|row| hit(row)).collect();
        let mut metrics = vec![
            ("cpca/pairs".to_string(), pairs.len() as f64),
            (
                "cpca/acc".to_string(),
                hits.iter().sum::<f64>() / hits.len().max(1) as f64,
            ),
        ];
        for (name, lo, hi) in horizon_buckets(self.sampling.horizon) {
            let got: Vec<f64> = pairs
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
        metrics
    }
}

impl AuxLoss for CpcaAux {
    fn weight(&self) -> f64 {
        self.weight
    }

    fn host_loss(
        &mut self,
        out: &LeanOutputs,
        first: &[f32],
        actions: &[u32],
        _obs: &[f32],
        grads: HostGrads,
    ) -> Option<Result<HostAuxOutput, AgentError>> {
        Some(match self.host(out, first, actions, grads) {
            Err(e) => Err(e),
            Ok(None) => Ok(HostAuxOutput {
                loss: 0.0,
                metrics: vec![("cpca/pairs".into(), 0.0)],
            }),
            Ok(Some((loss, pairs, scores))) => Ok(HostAuxOutput {
                loss,
                metrics: self.metrics(&pairs, &scores),
            }),
        })
    }

    fn loss(&mut self, out: &UnrollOutput, batch: AuxBatch) -> Result<AuxOutput, AgentError> {
        let Some(r) = self.evaluate(&out.z, &out.c, batch.first, batch.actions)? else {
            return Ok(AuxOutput {
                loss: Tensor::zeros((), DType::F32, out.z.device())?,
                metrics: vec![("cpca/pairs".into(), 0.0)],
            });
        };
        let metrics = self.metrics(&r.pairs, &r.scores);
        Ok(AuxOutput {
            loss: r.loss,
            metrics,
        })
    }

    fn vars(&self) -> Vec<(String, Var)> {
        self.state.vars()
    }

    fn save_rng(&self) -> serde_json::Value {
        self.state.save_rng()
    }

    fn load_rng(&mut self, v: &serde_json::Value) -> Result<(), AgentError> {
        self.state.load_rng(v)
    }
}

/// The head's parameters as host copies, in [`CpcaAux::vars`]' (name) order, and the
/// buffers of [`CpcaAux::host_loss`], kept between updates.
#[derive(Default)]
struct HostCpca {
    cand: Vec<u32>,
    /// Parameter index of each name in `vars` order.
    order: Option<[usize; 9]>,
    params: Vec<Vec<f32>>,
    /// GRU per step s: the state entering it `[S, U, H]`, its r, z, n `[S, U, H]` each
    /// and the recurrent n-projection W_hn h + b_hn `[S, U, H]`.
    h_prev: Vec<f32>,
    r: Vec<f32>,
    zg: Vec<f32>,
    n: Vec<f32>,
    gh_n: Vec<f32>,
    gh: Vec<f32>,
    states: Vec<f32>,
    preds: Vec<f32>,
    hb: Vec<f32>,
    hz: Vec<f32>,
    hidden: Vec<f32>,
    d_hz: Vec<f32>,
    d_hb: Vec<f32>,
    d_preds: Vec<f32>,
    d_states: Vec<f32>,
    d_gh: Vec<f32>,
    d_gi: Vec<f32>,
    dh: Vec<f32>,
    gi: Vec<f32>,
    w_ih_t: Vec<f32>,
    g_wih_t: Vec<f32>,
}

/// The loss, the pairs and their scores (positive first) of one host evaluation.
type HostResult = (f64, Vec<Pair>, Vec<Vec<f32>>);

/// The parameter names, in the order `nn::init::named_vars` sorts them.
const HOST_NAMES: [&str; 9] = [
    "fc1.bias",
    "fc1.weight_b",
    "fc1.weight_z",
    "fc2.bias",
    "fc2.weight",
    "gru.bias_hh",
    "gru.bias_ih",
    "gru.weight_hh",
    "gru.weight_ih",
];
const FC1_B: usize = 0;
const FC1_WB: usize = 1;
const FC1_WZ: usize = 2;
const FC2_B: usize = 3;
const FC2_W: usize = 4;
const GRU_BHH: usize = 5;
const GRU_BIH: usize = 6;
const GRU_WHH: usize = 7;
const GRU_WIH: usize = 8;

/// softplus(x) = log(1 + eˣ), stably.
fn softplus_f(x: f32) -> f32 {
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}

impl CpcaAux {
    /// [`CpcaAux::evaluate`] and its gradient on host slices (the lean learner's path):
    /// the same pairs and candidates from the same draws, the GRU run forward and back
    /// through time on the anchors, the classifier and both objectives by hand.
    fn host(
        &mut self,
        out: &LeanOutputs,
        first: &[f32],
        actions: &[u32],
        grads: HostGrads,
    ) -> Result<Option<HostResult>, AgentError> {
        use crate::nn::gemm::{matmul, Op};
        let d = self.dims;
        if out.z_dim != d.z_dim || out.c_dim != d.c_dim {
            return Err(AgentError::State(format!(
                "the CPC|A head reads z of {} and c of {}, the network gives {} and {}",
                d.z_dim, d.c_dim, out.z_dim, out.c_dim
            )));
        }
        let (b, t_len) = (out.b, first.len() / out.b);
        let (h, dz, na) = (d.c_dim, d.z_dim, d.actions);
        let s = &self.sampling;
        let pairs = sample_pairs(first, t_len, b, s, &mut self.state.rng);
        if pairs.is_empty() {
            return Ok(None);
        }
        let weights = pair_weights(&pairs, first, t_len, b, s);
        let mut cand = std::mem::take(&mut self.host.cand);
        crate::contrastive::cpc::sample_candidates_into(
            &pairs,
            t_len,
            b,
            s,
            &mut self.state.rng,
            &mut cand,
        );
        let m1 = 1 + s.num_negatives;
        let np = pairs.len();
        let steps = pairs.iter().map(|p| p.k).max().unwrap_or(1);
        let (anchors, pred_rows) = crate::contrastive::cpc::anchors(&pairs, t_len, b, steps);
        let u = anchors.len();
        // Host copies of the parameters.
        let vars = self.vars();
        let hs = &mut self.host;
        if hs.order.is_none() {
            let mut order = [usize::MAX; 9];
            for (i, name) in HOST_NAMES.iter().enumerate() {
                let full = format!("{}.{name}", Self::PREFIX);
                order[i] = vars.iter().position(|(n, _)| *n == full).ok_or_else(|| {
                    AgentError::State(format!("the CPC|A head has no parameter '{full}'"))
                })?;
            }
            hs.order = Some(order);
            hs.params = vec![Vec::new(); 9];
        }
        let order = hs.order.expect("set above");
        for (i, &vi) in order.iter().enumerate() {
            rlcpc_agents::optim::host_copy(vars[vi].1.as_tensor(), &mut hs.params[i])?;
        }
        let p = &hs.params;
        let (w_ih, w_hh, b_ih, b_hh) = (&p[GRU_WIH], &p[GRU_WHH], &p[GRU_BIH], &p[GRU_BHH]);
        // The action taken at step k of anchor u (none past the unroll's last action).
        let action = |ui: usize, k: usize| -> Option<usize> {
            let a = anchors[ui] as usize;
            let (t, j) = (a / b, a % b);
            (t + k < t_len - 1).then(|| actions[(t + k) * b + j] as usize)
        };
        // GRU forward from h0 = c at each anchor.
        let uh = u * h;
        for v in [
            &mut hs.h_prev,
            &mut hs.r,
            &mut hs.zg,
            &mut hs.n,
            &mut hs.gh_n,
            &mut hs.states,
        ] {
            v.clear();
            v.resize(steps * uh, 0.0);
        }
        hs.gh.resize(u * 3 * h, 0.0);
        let mut cur: Vec<f32> = Vec::with_capacity(uh);
        for &a in &anchors {
            cur.extend_from_slice(&out.c[a as usize * h..(a as usize + 1) * h]);
        }
        // W_ih transposed `[A, 3H]`: the input projection of action a is a row.
        hs.w_ih_t.resize(na * 3 * h, 0.0);
        for g in 0..3 * h {
            for a in 0..na {
                hs.w_ih_t[a * 3 * h + g] = w_ih[g * na + a];
            }
        }
        hs.gi.resize(u * 3 * h, 0.0);
        for st in 0..steps {
            hs.h_prev[st * uh..(st + 1) * uh].copy_from_slice(&cur);
            for row in hs.gh.chunks_exact_mut(3 * h) {
                row.copy_from_slice(b_hh);
            }
            matmul(&mut hs.gh, &cur, Op::N, w_hh, Op::T, (u, h, 3 * h), true);
            // gi = W_ih onehot(a) + b_ih (no action past the unroll's last).
            for (ui, gi) in hs.gi.chunks_exact_mut(3 * h).enumerate() {
                gi.copy_from_slice(b_ih);
                if let Some(a) = action(ui, st) {
                    add_to(gi, &hs.w_ih_t[a * 3 * h..(a + 1) * 3 * h]);
                }
            }
            let o = st * uh..(st + 1) * uh;
            gru_cell_forward(
                &hs.gi,
                &hs.gh,
                &mut cur,
                GruCache {
                    r: &mut hs.r[o.clone()],
                    z: &mut hs.zg[o.clone()],
                    n: &mut hs.n[o.clone()],
                    gh_n: &mut hs.gh_n[o.clone()],
                },
                h,
            );
            hs.states[o].copy_from_slice(&cur);
        }
        // The prediction of each pair: the state after its k actions.
        hs.preds.resize(np * h, 0.0);
        for (i, &row) in pred_rows.iter().enumerate() {
            let (ui, st) = (row as usize / steps, row as usize % steps);
            let o = st * uh + ui * h;
            hs.preds[i * h..(i + 1) * h].copy_from_slice(&hs.states[o..o + h]);
        }
        // The classifier: hb = W1b b + b1, hz = W1z z, hidden = relu(hz[cand] + hb).
        let rows = t_len * b;
        hs.hb.resize(np * h, 0.0);
        for row in hs.hb.chunks_exact_mut(h) {
            row.copy_from_slice(&p[FC1_B]);
        }
        matmul(
            &mut hs.hb,
            &hs.preds,
            Op::N,
            &p[FC1_WB],
            Op::T,
            (np, h, h),
            true,
        );
        hs.hz.resize(rows * h, 0.0);
        matmul(
            &mut hs.hz,
            &out.z[..rows * dz],
            Op::N,
            &p[FC1_WZ],
            Op::T,
            (rows, dz, h),
            false,
        );
        hs.hidden.resize(np * m1 * h, 0.0);
        let (w2, b2) = (&p[FC2_W], p[FC2_B][0]);
        let mut flat = vec![0f32; np * m1];
        classifier_forward(
            &hs.hz,
            &hs.hb,
            &cand,
            (w2, b2),
            &mut hs.hidden,
            &mut flat,
            h,
        );
        let scores: Vec<Vec<f32>> = flat.chunks_exact(m1).map(<[f32]>::to_vec).collect();
        // The loss and its gradient with respect to the scores.
        let mut loss = 0.0f64;
        let mut d_scores = vec![0f32; np * m1];
        for (i, row) in scores.iter().enumerate() {
            let w = weights[i];
            let ds = &mut d_scores[i * m1..(i + 1) * m1];
            match self.objective {
                CpcaLoss::Binary => {
                    let m = (m1 - 1) as f32;
                    let mut l = softplus_f(-row[0]) as f64;
                    ds[0] = -(w as f32) * crate::nn::fast::sigmoid(-row[0]);
                    for j in 1..m1 {
                        l += softplus_f(row[j]) as f64 / m as f64;
                        ds[j] = w as f32 * crate::nn::fast::sigmoid(row[j]) / m;
                    }
                    loss += w * l;
                }
                CpcaLoss::Infonce => {
                    let mx = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
                    let lse = mx + row.iter().map(|&x| (x - mx).exp()).sum::<f32>().ln();
                    loss += w * (lse - row[0]) as f64;
                    for j in 0..m1 {
                        ds[j] = w as f32 * ((row[j] - lse).exp() - if j == 0 { 1.0 } else { 0.0 });
                    }
                }
            }
        }
        // Back through the classifier.
        let [g_b1, g_wb, g_wz, g_b2, g_w2, g_bhh, g_bih, g_whh, g_wih] = order.map(|vi| vi);
        let gp = grads.params;
        hs.d_hz.clear();
        hs.d_hz.resize(rows * h, 0.0);
        hs.d_hb.clear();
        hs.d_hb.resize(np * h, 0.0);
        {
            let (gw2, gb2) = two(gp, g_w2, g_b2);
            gb2[0] = d_scores.iter().sum();
            classifier_backward(
                &d_scores,
                &cand,
                &hs.hidden,
                w2,
                (gw2, &mut hs.d_hb, &mut hs.d_hz),
                h,
            );
        }
        crate::nn::lean::column_sums(&hs.d_hb, &mut gp[g_b1]);
        matmul(
            &mut gp[g_wb],
            &hs.d_hb,
            Op::T,
            &hs.preds,
            Op::N,
            (h, np, h),
            false,
        );
        matmul(
            &mut gp[g_wz],
            &hs.d_hz,
            Op::T,
            &out.z[..rows * dz],
            Op::N,
            (h, rows, dz),
            false,
        );
        matmul(
            &mut grads.d_z[..rows * dz],
            &hs.d_hz,
            Op::N,
            &p[FC1_WZ],
            Op::N,
            (rows, h, dz),
            true,
        );
        hs.d_preds.resize(np * h, 0.0);
        matmul(
            &mut hs.d_preds,
            &hs.d_hb,
            Op::N,
            &p[FC1_WB],
            Op::N,
            (np, h, h),
            false,
        );
        hs.d_states.clear();
        hs.d_states.resize(steps * uh, 0.0);
        for (i, &row) in pred_rows.iter().enumerate() {
            let (ui, st) = (row as usize / steps, row as usize % steps);
            let o = st * uh + ui * h;
            for k in 0..h {
                hs.d_states[o + k] += hs.d_preds[i * h + k];
            }
        }
        // Back through the GRU, step by step.
        hs.dh.clear();
        hs.dh.resize(uh, 0.0);
        hs.d_gh.resize(u * 3 * h, 0.0);
        hs.d_gi.resize(u * 3 * h, 0.0);
        hs.g_wih_t.clear();
        hs.g_wih_t.resize(na * 3 * h, 0.0);
        for st in (0..steps).rev() {
            let o = st * uh..(st + 1) * uh;
            add_to(&mut hs.dh, &hs.d_states[o.clone()]);
            gru_cell_backward(
                &mut hs.dh,
                &hs.h_prev[o.clone()],
                GruRead {
                    r: &hs.r[o.clone()],
                    z: &hs.zg[o.clone()],
                    n: &hs.n[o.clone()],
                    gh_n: &hs.gh_n[o],
                },
                &mut hs.d_gh,
                &mut hs.d_gi,
                h,
            );
            // The input side: b_ih and the taken action's column of W_ih.
            for (ui, dgi) in hs.d_gi.chunks_exact(3 * h).enumerate() {
                add_to(&mut gp[g_bih], dgi);
                if let Some(a) = action(ui, st) {
                    add_to(&mut hs.g_wih_t[a * 3 * h..(a + 1) * 3 * h], dgi);
                }
            }
            for row in hs.d_gh.chunks_exact(3 * h) {
                add_to(&mut gp[g_bhh], row);
            }
            matmul(
                &mut gp[g_whh],
                &hs.d_gh,
                Op::T,
                &hs.h_prev[st * uh..(st + 1) * uh],
                Op::N,
                (3 * h, u, h),
                true,
            );
            matmul(
                &mut hs.dh,
                &hs.d_gh,
                Op::N,
                w_hh,
                Op::N,
                (u, 3 * h, h),
                true,
            );
        }
        for g in 0..3 * h {
            for a in 0..na {
                gp[g_wih][g * na + a] = hs.g_wih_t[a * 3 * h + g];
            }
        }
        for (ui, &a) in anchors.iter().enumerate() {
            let a = a as usize;
            for (x, y) in grads.d_c[a * h..(a + 1) * h]
                .iter_mut()
                .zip(&hs.dh[ui * h..(ui + 1) * h])
            {
                *x += y;
            }
        }
        hs.cand = cand;
        Ok(Some((loss, pairs, scores)))
    }
}

/// What [`gru_cell_forward`] keeps of a step for the backward pass, `[U, H]` each.
struct GruCache<'a> {
    r: &'a mut [f32],
    z: &'a mut [f32],
    n: &'a mut [f32],
    gh_n: &'a mut [f32],
}

/// [`GruCache`], read back.
struct GruRead<'a> {
    r: &'a [f32],
    z: &'a [f32],
    n: &'a [f32],
    gh_n: &'a [f32],
}

/// One GRU step for U rows: `gi`, `gh` `[U, 3H]` (input and recurrent projections, gates
/// r, z, n), `h` `[U, H]` advanced in place: r = σ(gi_r + gh_r), z = σ(gi_z + gh_z),
/// n = tanh(gi_n + r ⊙ gh_n), h' = n + z ⊙ (h − n).
#[multiversion::multiversion(targets("x86_64+avx2+fma"))]
fn gru_cell_forward(gi: &[f32], gh: &[f32], h_state: &mut [f32], c: GruCache, h: usize) {
    use crate::nn::fast::{sigmoid, tanh};
    for (j, (gi, gh)) in gi
        .chunks_exact(3 * h)
        .zip(gh.chunks_exact(3 * h))
        .enumerate()
    {
        let rows = j * h..(j + 1) * h;
        let hs = &mut h_state[rows.clone()];
        let (r, z) = (&mut c.r[rows.clone()], &mut c.z[rows.clone()]);
        let (n, ghn) = (&mut c.n[rows.clone()], &mut c.gh_n[rows]);
        for k in 0..h {
            let rk = sigmoid(gi[k] + gh[k]);
            let zk = sigmoid(gi[h + k] + gh[h + k]);
            let nk = tanh(gi[2 * h + k] + rk * gh[2 * h + k]);
            r[k] = rk;
            z[k] = zk;
            n[k] = nk;
            ghn[k] = gh[2 * h + k];
            hs[k] = nk + zk * (hs[k] - nk);
        }
    }
}

/// [`gru_cell_forward`]'s backward for U rows: `dh` `[U, H]` holds d loss / d h' and
/// becomes the direct part z ⊙ dh of d loss / d h (the recurrent part, d_gh · W_hh, is
/// added by the caller); writes d gh and d gi `[U, 3H]`.
#[multiversion::multiversion(targets("x86_64+avx2+fma"))]
fn gru_cell_backward(
    dh: &mut [f32],
    h_prev: &[f32],
    c: GruRead,
    d_gh: &mut [f32],
    d_gi: &mut [f32],
    h: usize,
) {
    for (j, (dgh, dgi)) in d_gh
        .chunks_exact_mut(3 * h)
        .zip(d_gi.chunks_exact_mut(3 * h))
        .enumerate()
    {
        let o = j * h;
        for k in 0..h {
            let (r, z, n) = (c.r[o + k], c.z[o + k], c.n[o + k]);
            let d = dh[o + k];
            let dn = d * (1.0 - z);
            let da_n = dn * (1.0 - n * n);
            let da_r = da_n * c.gh_n[o + k] * r * (1.0 - r);
            let da_z = d * (h_prev[o + k] - n) * z * (1.0 - z);
            dgh[k] = da_r;
            dgh[h + k] = da_z;
            dgh[2 * h + k] = da_n * r;
            dgi[k] = da_r;
            dgi[h + k] = da_z;
            dgi[2 * h + k] = da_n;
            dh[o + k] = d * z;
        }
    }
}

/// `a += b`.
#[multiversion::multiversion(targets("x86_64+avx2+fma"))]
fn add_to(a: &mut [f32], b: &[f32]) {
    for (x, y) in a.iter_mut().zip(b) {
        *x += y;
    }
}

/// The classifier over every candidate: `hidden` `[P·M1, H]` = ReLU(hz[cand] + hb[pair])
/// and `scores` `[P·M1]` = w₂ · hidden + b₂.
#[multiversion::multiversion(targets("x86_64+avx2+fma"))]
fn classifier_forward(
    hz: &[f32],
    hb: &[f32],
    cand: &[u32],
    (w2, b2): (&[f32], f32),
    hidden: &mut [f32],
    scores: &mut [f32],
    h: usize,
) {
    let m1 = cand.len() / (hb.len() / h);
    for (q, (hid, sc)) in hidden
        .chunks_exact_mut(h)
        .zip(scores.iter_mut())
        .enumerate()
    {
        let (i, c) = (q / m1, cand[q] as usize);
        let (a, b) = (&hz[c * h..(c + 1) * h], &hb[i * h..(i + 1) * h]);
        // Eight running sums, so that the dot product vectorises.
        let mut acc = [0f32; 8];
        for (((o, x), y), w) in hid
            .chunks_exact_mut(8)
            .zip(a.chunks_exact(8))
            .zip(b.chunks_exact(8))
            .zip(w2.chunks_exact(8))
        {
            for k in 0..8 {
                let v = (x[k] + y[k]).max(0.0);
                o[k] = v;
                acc[k] += v * w[k];
            }
        }
        let tail = h - h % 8;
        let mut t = 0.0;
        for k in tail..h {
            let v = (a[k] + b[k]).max(0.0);
            hid[k] = v;
            t += v * w2[k];
        }
        *sc = b2 + acc.iter().sum::<f32>() + t;
    }
}

/// The classifier's backward over every candidate given d loss / d score: w₂'s
/// gradient, and through the ReLU the gradients of hb `[P, H]` and hz `[T·B, H]`.
#[multiversion::multiversion(targets("x86_64+avx2+fma"))]
fn classifier_backward(
    d_scores: &[f32],
    cand: &[u32],
    hidden: &[f32],
    w2: &[f32],
    (gw2, d_hb, d_hz): (&mut [f32], &mut [f32], &mut [f32]),
    h: usize,
) {
    let m1 = cand.len() / (d_hb.len() / h);
    for (q, (hid, &ds)) in hidden.chunks_exact(h).zip(d_scores).enumerate() {
        let (i, c) = (q / m1, cand[q] as usize);
        let hb = &mut d_hb[i * h..(i + 1) * h];
        let hz = &mut d_hz[c * h..(c + 1) * h];
        for k in 0..h {
            gw2[k] += ds * hid[k];
            let dp = if hid[k] > 0.0 { ds * w2[k] } else { 0.0 };
            hb[k] += dp;
            hz[k] += dp;
        }
    }
}

/// Two distinct elements of `v`, mutably.
fn two(v: &mut [Vec<f32>], a: usize, b: usize) -> (&mut Vec<f32>, &mut Vec<f32>) {
    assert_ne!(a, b);
    if a < b {
        let (lo, hi) = v.split_at_mut(b);
        (&mut lo[a], &mut hi[0])
    } else {
        let (lo, hi) = v.split_at_mut(a);
        (&mut hi[0], &mut lo[b])
    }
}

/// `aux.kind = "cpca"`.
pub struct CpcaHead<'a>(pub &'a CpcaHeadConfig);

impl CpcaHead<'_> {
    fn dims(spec: &NetSpec) -> CpcaDims {
        CpcaDims {
            actions: spec.num_actions,
            z_dim: spec.feature_dim(),
            c_dim: spec.context_dim(),
        }
    }
}

impl super::Head for CpcaHead<'_> {
    fn init(&self, spec: &NetSpec, init: &mut Init) -> candle_core::Result<()> {
        CpcaAux::init(Self::dims(spec), init)
    }

    fn build(
        &self,
        spec: &NetSpec,
        varmap: &VarMap,
        device: &Device,
        seed: u64,
    ) -> candle_core::Result<Box<dyn AuxLoss>> {
        let head = CpcaAux::new(self.0, Self::dims(spec), varmap, device, seed)?;
        Ok(Box::new(head))
    }
}
