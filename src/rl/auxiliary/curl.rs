//! The agent's CURL auxiliary (Srinivas et al. 2020, adapted from SAC to A2C): each
//! update samples observations of the unroll, draws two random shifts of each (DrQ's
//! shift by up to `aux.curl_shift` pixels with replicated edges, as CURL's random crop
//! for views that must keep the encoder's input size), encodes one with the agent's own
//! encoder (q, with gradients) and the other with a momentum copy of it (k, none),
//! scores sim(q, k) = qᵀ W k and takes InfoNCE over the samples, the other samples'
//! keys being the negatives. The key encoder follows θ_k ← m θ_k + (1 − m) θ_q before
//! every update. Weighted by `aux.weight` and toggled like the CPC head (`--aux curl`).

use candle_core::{DType, Device, Module, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use rand::seq::index::sample;
use rand::Rng;
use rlcpc_agents::{
    AgentError, AuxBatch, AuxLoss, AuxOutput, HostAuxOutput, HostGrads, LeanOutputs, UnrollOutput,
};

use super::HeadState;
use crate::config::{CurlHeadConfig, Invalid};
use crate::nn::encoders::{Encoder, EncoderSpec};
use crate::nn::gemm::{matmul, Op};
use crate::nn::init::Init;
use crate::nn::lean::LeanAgentEncoder;
use crate::nn::NetSpec;

/// `img` `[H, W, C]` moved by (`dy`, `dx`) pixels, each in −s..=s, edge pixels repeated:
/// out(y, x) = img(clamp(y + dy), clamp(x + dx)).
pub fn shift(img: &[f32], (h, w, c): (usize, usize, usize), dy: isize, dx: isize, out: &mut [f32]) {
    for y in 0..h {
        let sy = (y as isize + dy).clamp(0, h as isize - 1) as usize;
        for x in 0..w {
            let sx = (x as isize + dx).clamp(0, w as isize - 1) as usize;
            let (o, i) = ((y * w + x) * c, (sy * w + sx) * c);
            out[o..o + c].copy_from_slice(&img[i..i + c]);
        }
    }
}

/// The CURL loss's parameters (W, the key encoder) and settings.
pub struct CurlAux {
    query: Encoder,
    key: Encoder,
    w: Var,
    /// (θ_q, θ_k) of every encoder parameter.
    pairs: Vec<(Var, Var)>,
    cfg: CurlHeadConfig,
    shape: (usize, usize, usize),
    state: HeadState,
    spec: EncoderSpec,
    /// The lean learner's path, built at its first update.
    lean: Option<LeanCurl>,
}

/// CURL on host slices: the agent's encoder (queries, with gradients) and its momentum
/// copy (keys) as lean conv encoders over the same variables, and reused buffers.
struct LeanCurl {
    query: LeanAgentEncoder,
    key: LeanAgentEncoder,
    /// Index of W among [`AuxLoss::vars`].
    w_idx: usize,
    /// Index of each query parameter among the network's variables.
    net_idx: Vec<usize>,
    host_w: Vec<f32>,
    bufs: CurlBuffers,
}

/// Work buffers of [`curl_loss_host`].
#[derive(Default)]
pub struct CurlBuffers {
    qw: Vec<f32>,
    logits: Vec<f32>,
    p: Vec<f32>,
}

impl CurlAux {
    pub const PREFIX: &'static str = "aux.curl";

    /// The image shape a CURL loss needs from the encoder, or why it cannot have one.
    pub fn image_shape(spec: &EncoderSpec) -> Result<(usize, usize, usize), String> {
        match *spec {
            EncoderSpec::Conv { height, width, channels, .. } => Ok((height, width, channels)),
            _ => Err(format!(
                "aux.kind = \"curl\" augments image observations read by the conv encoder; this agent's encoder is {}",
                spec.describe()
            )),
        }
    }

    /// Writes W (orthogonal) and the key encoder (a copy of the query encoder, set in
    /// [`CurlAux::new`]) under `aux.curl.`.
    pub fn init(spec: &EncoderSpec, init: &mut Init) -> candle_core::Result<()> {
        let d = spec.out_dim();
        init.orthogonal(&format!("{}.w", Self::PREFIX), &[d, d], 1.0)?;
        spec.init(init, &format!("{}.key", Self::PREFIX))
    }

    /// The loss over `varmap`, where the agent's encoder is `encoder.*`.
    pub fn new(
        cfg: &CurlHeadConfig,
        spec: &EncoderSpec,
        varmap: &VarMap,
        device: &Device,
        seed: u64,
    ) -> candle_core::Result<Self> {
        let shape = Self::image_shape(spec).map_err(candle_core::Error::Msg)?;
        let vb = VarBuilder::from_varmap(varmap, DType::F32, device);
        let all = varmap.data().lock().expect("varmap lock").clone();
        let mut pairs = Vec::new();
        for (name, q) in &all {
            if let Some(rest) = name.strip_prefix("encoder.") {
                let k = all[&format!("{}.key.{rest}", Self::PREFIX)].clone();
                k.set(q.as_tensor())?;
                pairs.push((q.clone(), k));
            }
        }
        Ok(CurlAux {
            query: Encoder::new(spec.clone(), vb.pp("encoder"))?,
            key: Encoder::new(spec.clone(), vb.pp(format!("{}.key", Self::PREFIX)))?,
            w: all[&format!("{}.w", Self::PREFIX)].clone(),
            pairs,
            cfg: cfg.clone(),
            shape,
            state: HeadState::new(varmap, seed ^ 0x000C_0121),
            spec: spec.clone(),
            lean: None,
        })
    }

    /// θ_k ← m θ_k + (1 − m) θ_q for every encoder parameter (before every update).
    fn momentum_update(&self) -> candle_core::Result<()> {
        let m = self.cfg.curl_momentum;
        for (q, k) in &self.pairs {
            k.set(&((k.as_tensor() * m)? + (q.as_tensor().detach() * (1.0 - m))?)?)?;
        }
        Ok(())
    }

    /// The update's samples of the `total` observations of `flat` and their two views:
    /// the draws in the same order on both learner paths.
    fn draw(&mut self, flat: &[f32], total: usize) -> (Vec<usize>, Vec<f32>, Vec<f32>) {
        let n = self.cfg.curl_samples.min(total);
        let idx = sample(&mut self.state.rng, total, n).into_vec();
        let (va, vb) = self.views(flat, &idx);
        (idx, va, vb)
    }

    /// [`AuxLoss::host_loss`]: the same loss on the lean learner's slices.
    fn host(
        &mut self,
        out: &LeanOutputs,
        obs: &[f32],
        grads: HostGrads,
    ) -> Result<HostAuxOutput, AgentError> {
        let lean_err = |e: anyhow::Error| AgentError::State(format!("CURL's lean encoder: {e}"));
        if self.lean.is_none() {
            let EncoderSpec::Conv {
                fc, input_scale, ..
            } = self.spec
            else {
                return Err(AgentError::State("CURL needs the conv encoder".into()));
            };
            // One thread, as the rest of the lean learner.
            let query = LeanAgentEncoder::new(
                self.shape,
                fc,
                input_scale,
                1,
                &self.state.varmap,
                "encoder",
            )
            .map_err(lean_err)?;
            let key = LeanAgentEncoder::new(
                self.shape,
                fc,
                input_scale,
                1,
                &self.state.varmap,
                &format!("{}.key", Self::PREFIX),
            )
            .map_err(lean_err)?;
            let net_idx = query
                .names()
                .iter()
                .map(|n| {
                    grads.net_names.iter().position(|m| m == n).ok_or_else(|| {
                        AgentError::State(format!(
                            "CURL's encoder parameter '{n}' is not the network's"
                        ))
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            let w_name = format!("{}.w", Self::PREFIX);
            let w_idx = self
                .vars()
                .iter()
                .position(|(n, _)| *n == w_name)
                .ok_or_else(|| AgentError::State(format!("no parameter '{w_name}'")))?;
            self.lean = Some(LeanCurl {
                query,
                key,
                w_idx,
                net_idx,
                host_w: Vec::new(),
                bufs: CurlBuffers::default(),
            });
        }
        self.momentum_update()?;
        let (h, w, c) = self.shape;
        let total = obs.len() / (h * w * c);
        let (idx, va, vb) = self.draw(obs, total);
        let n = idx.len();
        let mask = near_duplicates(&idx, out.b.max(1), self.cfg.curl_exclude);
        let lean = self.lean.as_mut().expect("built above");
        let d = lean.query.out_dim();
        let k = lean.key.forward(&vb, n).map_err(lean_err)?;
        let q = lean.query.forward(&va, n).map_err(lean_err)?;
        let mut dq = vec![0f32; n * d];
        let d_w = &mut grads.params[lean.w_idx];
        let bufs = &mut lean.bufs;
        let (loss, acc) =
            rlcpc_agents::optim::with_host_slice(self.w.as_tensor(), &mut lean.host_w, |w| {
                curl_loss_host(q, k, w, mask.as_deref(), (n, d), &mut dq, d_w, bufs)
            })?;
        let mut enc = vec![Vec::new(); lean.net_idx.len()];
        lean.query.backward_host(&dq, &mut enc).map_err(lean_err)?;
        for (g, &j) in enc.into_iter().zip(&lean.net_idx) {
            grads.net[j] = g;
        }
        // W has a gradient; the key encoder, set by the momentum update, none.
        for (i, g) in grads.params.iter_mut().enumerate() {
            if i != lean.w_idx {
                g.clear();
            }
        }
        Ok(HostAuxOutput {
            loss,
            metrics: vec![("curl/acc".into(), acc), ("curl/samples".into(), n as f64)],
        })
    }

    /// Two shifted views `[N, H, W, C]` of the observations `idx` of `flat` `[M, H, W, C]`.
    fn views(&mut self, flat: &[f32], idx: &[usize]) -> (Vec<f32>, Vec<f32>) {
        let (h, w, c) = self.shape;
        let n = h * w * c;
        let s = self.cfg.curl_shift as i64;
        let (mut a, mut b) = (vec![0f32; idx.len() * n], vec![0f32; idx.len() * n]);
        for (j, &i) in idx.iter().enumerate() {
            let img = &flat[i * n..(i + 1) * n];
            for out in [&mut a, &mut b] {
                let (dy, dx) = (
                    self.state.rng.random_range(-s..=s) as isize,
                    self.state.rng.random_range(-s..=s) as isize,
                );
                shift(img, self.shape, dy, dx, &mut out[j * n..(j + 1) * n]);
            }
        }
        (a, b)
    }
}

/// The additive mask of the logits `[n, n]` of samples `idx` of a `[T+1, B]` unroll
/// (`envs` = B): a large negative number where j ≠ i is the same environment fewer
/// than `exclude` steps from i, else 0; `None` when nothing is left out.
pub fn near_duplicates(idx: &[usize], envs: usize, exclude: usize) -> Option<Vec<f32>> {
    let n = idx.len();
    let mut mask = vec![0f32; n * n];
    let mut any = false;
    for (i, &a) in idx.iter().enumerate() {
        for (j, &b) in idx.iter().enumerate() {
            if i != j && a % envs == b % envs && (a / envs).abs_diff(b / envs) < exclude {
                mask[i * n + j] = -1e9;
                any = true;
            }
        }
    }
    any.then_some(mask)
}

/// CURL's InfoNCE on host slices, as [`AuxLoss::loss`] computes it in candle: logits
/// L = (q W) kᵀ (+ `mask`), the loss mean_i (logsumexp_j L_ij − L_ii) and its gradients
/// dq = G k Wᵀ and dW = qᵀ G k with G = (softmax_rows(L) − I) / n; the keys get none
/// (their encoder is a momentum copy). q and k are `[n, d]`, W `[d, d]`; `dq` and `dw`
/// are overwritten. Returns the loss and the share of rows whose largest logit is their
/// own key's.
#[allow(clippy::too_many_arguments)]
pub fn curl_loss_host(
    q: &[f32],
    k: &[f32],
    w: &[f32],
    mask: Option<&[f32]>,
    (n, d): (usize, usize),
    dq: &mut [f32],
    dw: &mut [f32],
    bufs: &mut CurlBuffers,
) -> (f64, f64) {
    let CurlBuffers { qw, logits, p } = bufs;
    qw.resize(n * d, 0.0);
    logits.resize(n * n, 0.0);
    p.resize(n * d, 0.0);
    matmul(qw, q, Op::N, w, Op::N, (n, d, d), false);
    matmul(logits, qw, Op::N, k, Op::T, (n, d, n), false);
    if let Some(mask) = mask {
        logits.iter_mut().zip(mask).for_each(|(l, m)| *l += m);
    }
    // Row by row: the loss, and G in place of the logits.
    let (mut loss, mut hits) = (0f64, 0usize);
    for (i, row) in logits.chunks_exact_mut(n).enumerate() {
        let (mut best, mut arg) = (f32::NEG_INFINITY, 0);
        for (j, &v) in row.iter().enumerate() {
            if v > best {
                (best, arg) = (v, j);
            }
        }
        hits += (arg == i) as usize;
        let sum: f64 = row.iter().map(|&v| ((v - best) as f64).exp()).sum();
        loss += best as f64 + sum.ln() - row[i] as f64;
        for (j, v) in row.iter_mut().enumerate() {
            let softmax = (((*v - best) as f64).exp() / sum) as f32;
            *v = (softmax - (i == j) as u8 as f32) / n as f32;
        }
    }
    let g = &*logits;
    matmul(p, g, Op::N, k, Op::N, (n, n, d), false);
    matmul(dq, p, Op::N, w, Op::T, (n, d, d), false);
    matmul(dw, q, Op::T, p, Op::N, (d, n, d), false);
    (loss / n as f64, hits as f64 / n as f64)
}

impl AuxLoss for CurlAux {
    fn weight(&self) -> f64 {
        self.cfg.weight
    }

    fn loss(&mut self, _out: &UnrollOutput, batch: AuxBatch) -> Result<AuxOutput, AgentError> {
        let obs = batch.obs;
        self.momentum_update()?;
        let (h, w, c) = self.shape;
        let dev = obs.device().clone();
        // [T+1, B, H, W, C]: sample i is step i / B of environment i % B.
        let envs = obs.dims().get(1).copied().unwrap_or(1).max(1);
        let flat = obs.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?;
        let total = flat.len() / (h * w * c);
        let (idx, va, vb) = self.draw(&flat, total);
        let n = idx.len();
        let xa = Tensor::from_vec(va, (n, h, w, c), &dev)?;
        let xb = Tensor::from_vec(vb, (n, h, w, c), &dev)?;
        let q = self.query.forward(&xa)?;
        let k = self.key.forward(&xb)?.detach();
        let logits = q.matmul(self.w.as_tensor())?.matmul(&k.t()?)?;
        // Frames of one environment a few steps apart are near-duplicates, not
        // negatives (the samples come from one unroll, not from a replay buffer).
        let logits = match near_duplicates(&idx, envs, self.cfg.curl_exclude) {
            Some(mask) => (logits + Tensor::from_vec(mask, (n, n), &dev)?)?,
            None => logits,
        };
        let logits = logits.broadcast_sub(&logits.max_keepdim(1)?.detach())?;
        let targets = Tensor::arange(0u32, n as u32, &dev)?;
        let loss = candle_nn::loss::cross_entropy(&logits, &targets)?;
        let acc = logits
            .argmax(1)?
            .eq(&targets)?
            .to_dtype(DType::F32)?
            .mean_all()?
            .to_scalar::<f32>()? as f64;
        Ok(AuxOutput {
            loss,
            metrics: vec![("curl/acc".into(), acc), ("curl/samples".into(), n as f64)],
        })
    }

    fn host_loss(
        &mut self,
        out: &LeanOutputs,
        _first: &[f32],
        _actions: &[u32],
        obs: &[f32],
        grads: HostGrads,
    ) -> Option<Result<HostAuxOutput, AgentError>> {
        Some(self.host(out, obs, grads))
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

/// `aux.kind = "curl"`, with its keys.
pub struct CurlHead<'a>(pub &'a CurlHeadConfig);

impl super::Head for CurlHead<'_> {
    fn check(&self, spec: &NetSpec) -> Result<(), Invalid> {
        let aux = self.0;
        let (h, w, _) =
            CurlAux::image_shape(&spec.encoder).map_err(|why| Invalid::new("aux.kind", why))?;
        // A shift of the whole image or more leaves only replicated edge pixels.
        if aux.curl_shift >= h.min(w) {
            return Err(Invalid::new(
                "aux.curl_shift",
                format!(
                    "{} pixels, for {h}x{w} images (less than the image's smaller side)",
                    aux.curl_shift
                ),
            ));
        }
        Ok(())
    }

    fn init(&self, spec: &NetSpec, init: &mut Init) -> candle_core::Result<()> {
        CurlAux::init(&spec.encoder, init)
    }

    fn build(
        &self,
        spec: &NetSpec,
        varmap: &VarMap,
        device: &Device,
        seed: u64,
    ) -> candle_core::Result<Box<dyn AuxLoss>> {
        Ok(Box::new(CurlAux::new(
            self.0,
            &spec.encoder,
            varmap,
            device,
            seed,
        )?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With no shift both views are the observation and θ_k = θ_q, so the loss is
    /// InfoNCE of qᵢᵀ W qⱼ over the samples, computed here directly.
    #[test]
    fn the_loss_is_bilinear_infonce_over_the_samples() {
        let dev = Device::Cpu;
        let spec = EncoderSpec::Conv {
            height: 20,
            width: 20,
            channels: 1,
            fc: 6,
            input_scale: 1.0 / 255.0,
        };
        let mut init = Init::new(3, &dev);
        spec.init(&mut init, "encoder").unwrap();
        CurlAux::init(&spec, &mut init).unwrap();
        let cfg = CurlHeadConfig {
            curl_shift: 0,
            curl_samples: 64,
            curl_exclude: 0,
            ..CurlHeadConfig::default()
        };
        let mut aux = CurlAux::new(&cfg, &spec, &init.varmap, &dev, 0).unwrap();
        let obs = (Tensor::rand(0f32, 255f32, (2, 3, 20, 20, 1), &dev).unwrap())
            .round()
            .unwrap();
        let z = Tensor::zeros((1,), DType::F32, &dev).unwrap();
        let out = UnrollOutput {
            logits: z.clone(),
            values: z.clone(),
            z: z.clone(),
            c: z,
        };
        let got = aux
            .loss(
                &out,
                AuxBatch {
                    first: &[0.0; 6],
                    obs: &obs,
                    actions: &[],
                },
            )
            .unwrap();
        let q = aux
            .query
            .forward(&obs.reshape((6, 20, 20, 1)).unwrap())
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        let w = aux.w.as_tensor().to_vec2::<f32>().unwrap();
        let sim = |i: usize, j: usize| -> f64 {
            (0..6)
                .map(|a| {
                    (0..6)
                        .map(|b| q[i][a] as f64 * w[a][b] as f64 * q[j][b] as f64)
                        .sum::<f64>()
                })
                .sum()
        };
        // Samples are all 6 observations in some order; the loss is order-free.
        let want: f64 = (0..6)
            .map(|i| {
                let lse = (0..6).map(|j| sim(i, j).exp()).sum::<f64>().ln();
                lse - sim(i, i)
            })
            .sum::<f64>()
            / 6.0;
        let l = got.loss.to_scalar::<f32>().unwrap() as f64;
        assert!(
            (l - want).abs() < 1e-3 * want.abs().max(1.0),
            "{l} vs {want}"
        );
        assert_eq!(got.metrics[1], ("curl/samples".to_string(), 6.0));
    }

    /// Review 3, S3-4: samples of one environment a step apart were each other's
    /// negatives. The mask leaves out exactly the same-environment frames closer than
    /// `exclude` steps, and never a sample's own key.
    #[test]
    fn near_duplicate_frames_of_one_environment_are_not_negatives() {
        // B = 3 environments; samples at (t, e) = (0,0) (1,0) (5,0) (1,1) (0,2).
        let idx = [0, 3, 15, 4, 2];
        let m = near_duplicates(&idx, 3, 2).unwrap();
        let left_out: Vec<(usize, usize)> = (0..5)
            .flat_map(|i| (0..5).map(move |j| (i, j)))
            .filter(|&(i, j)| m[i * 5 + j] < 0.0)
            .collect();
        assert_eq!(left_out, vec![(0, 1), (1, 0)]);
        assert_eq!(near_duplicates(&idx, 3, 0), None);
        // Within 5 steps, (0,0)–(5,0) is still 5 apart: kept.
        let m = near_duplicates(&idx, 3, 5).unwrap();
        assert_eq!(m[2], 0.0);
        let m = near_duplicates(&idx, 3, 6).unwrap();
        assert!(m[2] < 0.0 && m[2 * 5] < 0.0);
    }

    #[test]
    fn shifts_move_the_image_and_repeat_its_edges() {
        // 3×3 grey image 0..9.
        let img: Vec<f32> = (0..9).map(|v| v as f32).collect();
        let mut out = vec![0f32; 9];
        shift(&img, (3, 3, 1), 0, 0, &mut out);
        assert_eq!(out, img);
        shift(&img, (3, 3, 1), 1, 0, &mut out);
        assert_eq!(out, vec![3., 4., 5., 6., 7., 8., 6., 7., 8.]);
        shift(&img, (3, 3, 1), 0, -1, &mut out);
        assert_eq!(out, vec![0., 0., 1., 3., 3., 4., 6., 6., 7.]);
    }
}
