//! Contrastive Predictive Coding (van den Oord, Li & Vinyals 2018): the InfoNCE loss,
//! the per-step linear predictors W_k, and the sampling of positives and negatives.
//!
//! One implementation serves the agent's auxiliary head (§3.4, through [`CpcAux`]) and
//! the standalone trainers. Shapes are time-major: targets z `[T, B, Dz]`, contexts
//! c `[T, B, Dc]`. The score of a candidate z for context c_t at horizon k is the
//! log-bilinear `z^T W_k c_t` (eq. 3); InfoNCE (eq. 4) is the cross-entropy of picking the
//! positive z_{t+k} among it and the negatives.

use candle_core::{DType, Device, Tensor, D};
use candle_nn::ops::log_softmax;
use candle_nn::VarBuilder;
use rand::Rng;
use rlcpc_envs::SeededRng;

use crate::config::Negatives;
use crate::nn::init::Init;

/// InfoNCE from `scores` `[P, 1+M]` whose column 0 holds the positives:
/// `mean_p [ logsumexp_j s_pj − s_p0 ]`.
pub fn info_nce(scores: &Tensor) -> candle_core::Result<Tensor> {
    log_softmax(scores, D::Minus1)?
        .narrow(1, 0, 1)?
        .mean_all()?
        .neg()
}

/// Scores `z^T pred` of candidates `[P, 1+M, D]` against predictions `[P, D]` → `[P, 1+M]`.
pub fn scores(pred: &Tensor, candidates: &Tensor) -> candle_core::Result<Tensor> {
    candidates.matmul(&pred.unsqueeze(2)?)?.squeeze(2)
}

/// Above `ALL_SCORES_MAX × (1+M)` targets in an unroll, [`cpc_loss`] gathers each
/// pair's candidates instead of scoring every target (both give the same scores).
pub const ALL_SCORES_MAX: usize = 8;

/// One (context, target) pair: anchor index `t * B + b` and horizon k ≥ 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Pair {
    pub t: usize,
    pub b: usize,
    pub k: usize,
}

/// Sampling settings of a CPC loss.
///
/// Each config that trains CPC (the agent's `[aux]`, and `[cpc]` of the audio, text,
/// frames and image trainers) declares `horizon`, `negatives`, `num_negatives` (and
/// `start_times`, `horizons`) itself, with its own default and documentation, and maps
/// them here. They are not one shared section flattened into each: serde's
/// `deny_unknown_fields`, which gives a misspelt key its error naming the key, does not
/// work with `#[serde(flatten)]`, and the defaults differ by modality (K = 12 for
/// audio, 30 for the agent).
#[derive(Debug, Clone, Default)]
pub struct CpcSampling {
    /// K: the largest offset predicted (one W_k per k = 1..=K).
    pub horizon: usize,
    pub negatives: Negatives,
    pub num_negatives: usize,
    /// Start times per sequence (0: all).
    pub start_times: usize,
    /// Horizons per start time (0: all valid).
    pub horizons: usize,
    /// Offsets 1..=skip are never predicted (CPC-v2's `steps_to_ignore`: image patches
    /// that overlap what the context has seen); k = skip+1..=horizon are.
    pub skip: usize,
    /// Group (speaker) of each sequence, for [`Negatives::Speaker`]; empty otherwise.
    pub groups: Vec<u32>,
    /// The ablation of [`crate::config::Targets::Shuffled`]: each pair's positive is a
    /// random step of another sequence instead of z_{t+k}.
    pub shuffled: bool,
}

impl CpcSampling {
    /// Every start time and every horizon 1..=K, no offset skipped, no groups; a config
    /// section's `start_times` / `horizons` / CPC-v2 `skip` are set on the result.
    pub fn new(horizon: usize, negatives: Negatives, num_negatives: usize) -> Self {
        CpcSampling {
            horizon,
            negatives,
            num_negatives,
            ..CpcSampling::default()
        }
    }
}

/// Longest valid horizon (≤ `horizon`) from start `t` of sequence `j`: z_{t+k} must lie
/// inside `[0, T)` and in the same episode (no `first` flag in `(t, t+k]`).
fn longest_horizon(
    first: &[f32],
    t_len: usize,
    b: usize,
    j: usize,
    t: usize,
    horizon: usize,
) -> usize {
    let mut kmax = 0;
    while kmax < horizon && t + kmax + 1 < t_len && first[(t + kmax + 1) * b + j] == 0.0 {
        kmax += 1;
    }
    kmax
}

/// Picks pairs (t, k) of each sequence: the future z_{t+k} must lie inside the unroll
/// `[0, T)` and in the same episode (no `first` flag in `(t, t+k]`), and k > `skip`.
/// Start times are drawn uniformly among the valid ones of each sequence, then horizons
/// uniformly among the valid ones of each start; [`pair_weights`] undoes the unequal
/// inclusion probabilities this gives.
pub fn sample_pairs(
    first: &[f32],
    t_len: usize,
    b: usize,
    s: &CpcSampling,
    rng: &mut SeededRng,
) -> Vec<Pair> {
    let mut pairs = Vec::new();
    let mut starts = Vec::with_capacity(t_len);
    let mut ks = Vec::with_capacity(s.horizon);
    for j in 0..b {
        starts.clear();
        for t in 0..t_len {
            let kmax = longest_horizon(first, t_len, b, j, t, s.horizon);
            if kmax > s.skip {
                starts.push((t, kmax));
            }
        }
        choose(&mut starts, s.start_times, rng);
        for &(t, kmax) in starts.iter() {
            ks.clear();
            ks.extend(s.skip + 1..=kmax);
            choose(&mut ks, s.horizons, rng);
            pairs.extend(ks.iter().map(|&k| Pair { t, b: j, k }));
        }
    }
    pairs
}

/// The weight of each pair in the loss, so that the loss is the paper's
/// `(1/|K|) Σ_k L_k` with `L_k` the mean InfoNCE over every valid pair at horizon k
/// (eq. 4 summed over k; averaged here so the scale does not grow with K): each pair is
/// weighted by the inverse of its probability of being sampled (start times and
/// horizons are subsampled) over the number of valid pairs at its horizon and the
/// number of horizons that have any (Horvitz–Thompson). Every horizon weighs the same,
/// k = 30 as much as k = 1, and the expected weighted sum over a draw equals the loss
/// over all valid pairs exactly; without subsampling the weights sum to 1.
pub fn pair_weights(
    pairs: &[Pair],
    first: &[f32],
    t_len: usize,
    b: usize,
    s: &CpcSampling,
) -> Vec<f64> {
    let mut valid_starts = vec![0usize; b];
    let mut per_k = vec![0usize; s.horizon + 1];
    for (j, n) in valid_starts.iter_mut().enumerate() {
        for t in 0..t_len {
            let kmax = longest_horizon(first, t_len, b, j, t, s.horizon);
            if kmax > s.skip {
                *n += 1;
                per_k[s.skip + 1..=kmax].iter_mut().for_each(|c| *c += 1);
            }
        }
    }
    let present = per_k.iter().filter(|&&n| n > 0).count().max(1) as f64;
    pairs
        .iter()
        .map(|p| {
            let mut pi = 1.0;
            if s.start_times > 0 && valid_starts[p.b] > s.start_times {
                pi *= s.start_times as f64 / valid_starts[p.b] as f64;
            }
            let n_k = longest_horizon(first, t_len, b, p.b, p.t, s.horizon) - s.skip;
            if s.horizons > 0 && n_k > s.horizons {
                pi *= s.horizons as f64 / n_k as f64;
            }
            1.0 / (pi * per_k[p.k] as f64 * present)
        })
        .collect()
}

/// Keeps `n` elements chosen uniformly without replacement (all when `n` is 0 or more
/// than there are), in their original order.
fn choose<T: Copy + Ord>(v: &mut Vec<T>, n: usize, rng: &mut SeededRng) {
    if n == 0 || n >= v.len() {
        return;
    }
    for i in 0..n {
        let j = rng.random_range(i..v.len());
        v.swap(i, j);
    }
    v.truncate(n);
    v.sort_unstable();
}

/// For each pair, the index of its positive `(t+k) * B + b` followed by `M` negatives,
/// sampled with replacement from the configured pool, never the positive itself. With
/// [`CpcSampling::shuffled`] the positive is a uniformly drawn step of another sequence
/// (of the same one when `B` is 1), and the negatives are drawn around it.
pub fn sample_candidates(
    pairs: &[Pair],
    t_len: usize,
    b: usize,
    s: &CpcSampling,
    rng: &mut SeededRng,
) -> Vec<u32> {
    let mut idx = Vec::new();
    sample_candidates_into(pairs, t_len, b, s, rng, &mut idx);
    idx
}

/// [`sample_candidates`] into `idx` (cleared first), so that a caller that keeps the
/// buffer allocates nothing per update (a fresh 80 kB buffer per update cost the lean
/// learner page faults: an eighth of an LSTM + CPC profile).
pub fn sample_candidates_into(
    pairs: &[Pair],
    t_len: usize,
    b: usize,
    s: &CpcSampling,
    rng: &mut SeededRng,
    idx: &mut Vec<u32>,
) {
    let m = s.num_negatives;
    idx.clear();
    idx.reserve(pairs.len() * (1 + m));
    // Sequences of each group, for speaker negatives.
    let mut members: Vec<Vec<usize>> = Vec::new();
    if s.negatives == Negatives::Speaker {
        assert_eq!(
            s.groups.len(),
            b,
            "speaker negatives need one group per sequence"
        );
        for (j, &g) in s.groups.iter().enumerate() {
            if members.len() <= g as usize {
                members.resize(g as usize + 1, Vec::new());
            }
            members[g as usize].push(j);
        }
    }
    for p in pairs {
        let (pt, pb) = match s.shuffled {
            false => (p.t + p.k, p.b),
            true if b == 1 => (rng.random_range(0..t_len), 0),
            true => {
                let j = rng.random_range(0..b - 1);
                (rng.random_range(0..t_len), if j >= p.b { j + 1 } else { j })
            }
        };
        idx.push((pt * b + pb) as u32);
        for _ in 0..m {
            let (nt, nb) = match s.negatives {
                Negatives::Sequence => {
                    let t = rng.random_range(0..t_len - 1);
                    (if t >= pt { t + 1 } else { t }, pb)
                }
                Negatives::Batch => {
                    let j = rng.random_range(0..b - 1);
                    (pt, if j >= pb { j + 1 } else { j })
                }
                Negatives::Both => {
                    let n = rng.random_range(0..t_len * b - 1);
                    let n = if n >= pt * b + pb { n + 1 } else { n };
                    (n / b, n % b)
                }
                Negatives::Speaker => {
                    let same = &members[s.groups[pb] as usize];
                    loop {
                        let (t, j) = (
                            rng.random_range(0..t_len),
                            same[rng.random_range(0..same.len())],
                        );
                        if (t, j) != (pt, pb) {
                            break (t, j);
                        }
                    }
                }
            };
            idx.push((nt * b + nb) as u32);
        }
    }
}

/// The sizes of a [`Predictor`], named so that the target and context widths cannot be
/// swapped at a call site.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PredictorDims {
    /// K: one W_k per k = 1..=K.
    pub horizon: usize,
    /// Width of the targets z (the encoder's output).
    pub z_dim: usize,
    /// Width of the contexts c (the context network's output).
    pub c_dim: usize,
}

/// The predictors W_k, k = 1..K, stored as one `[K·Dz, Dc]` matrix.
pub struct Predictor {
    w: Tensor,
    pub horizon: usize,
    pub z_dim: usize,
}

impl Predictor {
    pub const NAME: &'static str = "predictor.weight";

    /// PyTorch's linear initialisation, uniform in ±1/√Dc.
    pub fn init(d: PredictorDims, init: &mut Init, prefix: &str) -> candle_core::Result<()> {
        init.uniform_fan_in(
            &format!("{prefix}.{}", Self::NAME),
            &[d.horizon * d.z_dim, d.c_dim],
            d.c_dim,
        )
    }

    pub fn new(d: PredictorDims, vb: VarBuilder) -> candle_core::Result<Self> {
        Ok(Predictor {
            w: vb.get((d.horizon * d.z_dim, d.c_dim), Self::NAME)?,
            horizon: d.horizon,
            z_dim: d.z_dim,
        })
    }

    /// W_1..W_K as one `[K·Dz, Dc]` matrix (the variable's tensor).
    pub fn weight(&self) -> &Tensor {
        &self.w
    }

    /// Predictions W_k c for every k: `[U, Dc]` → `[U, K, Dz]`.
    pub fn predict_all(&self, c: &Tensor) -> candle_core::Result<Tensor> {
        let u = c.dim(0)?;
        c.matmul(&self.w.t()?)?
            .reshape((u, self.horizon, self.z_dim))
    }
}

/// The loss and the host-side statistics of one CPC evaluation.
pub struct CpcResult {
    pub loss: Tensor,
    pub pairs: Vec<Pair>,
    /// Per pair: 1 when the positive scored strictly highest, 1/(1+n) when it ties with
    /// n negatives at the top (the expected accuracy of picking among the tied), else 0.
    pub hits: Vec<f64>,
    /// Each pair's InfoNCE term (host copy, for per-horizon logging).
    pub pair_losses: Vec<f64>,
    /// Each pair's weight in `loss` ([`pair_weights`]; they sum to 1).
    pub weights: Vec<f64>,
}

impl CpcResult {
    /// Mean accuracy over pairs (ties counted as [`CpcResult::hits`] says).
    pub fn accuracy(&self) -> f64 {
        self.hits.iter().sum::<f64>() / self.hits.len().max(1) as f64
    }

    /// `(k, accuracy)` for each horizon k = 1..=horizon that has pairs.
    pub fn accuracy_per_k(&self, horizon: usize) -> Vec<(usize, f64)> {
        let (mut hits, mut counts) = (vec![0f64; horizon + 1], vec![0usize; horizon + 1]);
        for (p, &h) in self.pairs.iter().zip(&self.hits) {
            counts[p.k] += 1;
            hits[p.k] += h;
        }
        (1..=horizon)
            .filter(|&k| counts[k] > 0)
            .map(|k| (k, hits[k] / counts[k] as f64))
            .collect()
    }
}

/// Accuracy credit of one score row whose column 0 is the positive (see [`CpcResult::hits`]).
pub fn hit(row: &[f32]) -> f64 {
    let pos = row[0];
    if row[1..].iter().any(|&x| x > pos || x.is_nan()) || pos.is_nan() {
        return 0.0;
    }
    1.0 / (1 + row[1..].iter().filter(|&&x| x == pos).count()) as f64
}

/// InfoNCE over sampled pairs of an unroll: `z` `[T, B, Dz]`, `c` `[T, B, Dc]`, `first`
/// `[T, B]` host flags of episode starts. The loss is `Σ_p w_p ℓ_p` with the weights of
/// [`pair_weights`]: the mean over horizons of each horizon's mean InfoNCE. `None` when
/// no pair fits (e.g. every episode is one step long).
pub fn cpc_loss(
    predictor: &Predictor,
    z: &Tensor,
    c: &Tensor,
    first: &[f32],
    s: &CpcSampling,
    rng: &mut SeededRng,
) -> candle_core::Result<Option<CpcResult>> {
    let (t_len, b, dz) = z.dims3()?;
    let dc = c.dim(2)?;
    let pairs = sample_pairs(first, t_len, b, s, rng);
    if pairs.is_empty() {
        return Ok(None);
    }
    let weights = pair_weights(&pairs, first, t_len, b, s);
    let cand = sample_candidates(&pairs, t_len, b, s, rng);
    // Predict only from the anchors in use: each distinct (t, b) once, all K at a time.
    let (anchors, pred_rows) = anchors(&pairs, t_len, b, predictor.horizon);
    let dev = z.device();
    let idx = |v: Vec<u32>, dev: &Device| Tensor::from_vec(v.clone(), v.len(), dev);
    let c_sel = c
        .reshape((t_len * b, dc))?
        .index_select(&idx(anchors, dev)?, 0)?;
    let u = c_sel.dim(0)?;
    let preds = predictor
        .predict_all(&c_sel)?
        .reshape((u * predictor.horizon, dz))?
        .index_select(&idx(pred_rows, dev)?, 0)?;
    let m1 = 1 + s.num_negatives;
    let cand = Tensor::from_vec(cand, (pairs.len(), m1), dev)?;
    let z_flat = z.reshape((t_len * b, dz))?;
    let sc = if t_len * b <= ALL_SCORES_MAX * m1 {
        // Few targets: score every prediction against every z with one matmul, then
        // pick each pair's candidates (cheaper than P small products).
        preds.matmul(&z_flat.t()?)?.gather(&cand, 1)? // [P, T·B] → [P, 1+M]
    } else {
        // Many targets: gather each pair's candidates and score only those.
        let zc = z_flat
            .index_select(&cand.flatten_all()?, 0)?
            .reshape((pairs.len(), m1, dz))?;
        scores(&preds, &zc)?
    };
    let w = Tensor::from_vec(
        weights.iter().map(|&w| w as f32).collect::<Vec<_>>(),
        (pairs.len(), 1),
        dev,
    )?
    .to_dtype(sc.dtype())?;
    let loss = log_softmax(&sc, D::Minus1)?
        .narrow(1, 0, 1)?
        .mul(&w)?
        .sum_all()?
        .neg()?;
    let host = sc.to_dtype(DType::F32)?.to_vec2::<f32>()?;
    let hits = host.iter().map(|row| hit(row)).collect();
    let pair_losses = host
        .iter()
        .map(|row| {
            let m = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
            let lse = m + row.iter().map(|&x| (x as f64 - m).exp()).sum::<f64>().ln();
            lse - row[0] as f64
        })
        .collect();
    Ok(Some(CpcResult {
        loss,
        pairs,
        hits,
        pair_losses,
        weights,
    }))
}

/// One pair of [`cpc_loss_host`]: the scores of its candidates `cands` (positive first)
/// against `pred`, InfoNCE, and its gradient w·(softmax − [j = 0]) back into the
/// prediction (`dp`, overwritten) and the candidates' rows of `d_z` (added). Returns
/// the accuracy credit ([`hit`]) and the pair's loss.
#[multiversion::multiversion(targets("x86_64+avx2+fma"))]
fn score_pair(
    z: &[f32],
    cands: &[u32],
    pred: &[f32],
    w: f32,
    scores: &mut [f32],
    dp: &mut [f32],
    d_z: &mut [f32],
) -> (f64, f64) {
    let dz = pred.len();
    for (sj, &ci) in scores.iter_mut().zip(cands) {
        *sj = crate::nn::gemm::dot(&z[ci as usize * dz..(ci as usize + 1) * dz], pred);
    }
    let credit = hit(scores);
    let s0 = scores[0];
    let m = scores.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    // The scores become exp(s − m) in place: one exp per candidate.
    let mut sum = 0.0;
    for x in scores.iter_mut() {
        *x = (*x - m).exp();
        sum += *x;
    }
    let lse = m + sum.ln();
    dp.fill(0.0);
    for (j, &ci) in cands.iter().enumerate() {
        let g = w * (scores[j] / sum - if j == 0 { 1.0 } else { 0.0 });
        let zr = ci as usize * dz..(ci as usize + 1) * dz;
        for (a, zv) in dp.iter_mut().zip(&z[zr.clone()]) {
            *a += g * zv;
        }
        for (dzv, pv) in d_z[zr].iter_mut().zip(pred) {
            *dzv += g * pv;
        }
    }
    (credit, (lse - s0) as f64)
}

/// Buffers of [`cpc_loss_host`], kept between calls so that an update allocates little.
#[derive(Default)]
pub struct HostScratch {
    cand: Vec<u32>,
    by_k: Vec<Vec<usize>>,
    ctx: Vec<f32>,
    preds: Vec<f32>,
    d_preds: Vec<f32>,
    d_ctx: Vec<f32>,
    scores: Vec<f32>,
}

/// [`cpc_loss`] on host slices, with its gradient (the lean learner's path): the same
/// pairs, weights and candidates from the same draws of `rng`, so the same loss. `w` is
/// the predictor `[K·Dz, Dc]`; `z` `[T·B, Dz]`, `c` `[T·B, Dc]` time-major. Adds the
/// loss's gradients into `d_z` and `d_c` and writes the predictor's into `d_w`. The
/// returned result's `loss` is a scalar tensor of the host value, as [`cpc_loss`]'s is.
#[allow(clippy::too_many_arguments)]
pub fn cpc_loss_host(
    w: &[f32],
    d: PredictorDims,
    z: &[f32],
    c: &[f32],
    (first, t_len, b): (&[f32], usize, usize),
    s: &CpcSampling,
    rng: &mut SeededRng,
    (d_z, d_c, d_w): (&mut [f32], &mut [f32], &mut [f32]),
    sc: &mut HostScratch,
) -> candle_core::Result<Option<(f64, CpcResult)>> {
    use crate::nn::gemm::{matmul, Op};
    let (dz, dc) = (d.z_dim, d.c_dim);
    let pairs = sample_pairs(first, t_len, b, s, rng);
    if pairs.is_empty() {
        return Ok(None);
    }
    let weights = pair_weights(&pairs, first, t_len, b, s);
    let mut cand = std::mem::take(&mut sc.cand);
    sample_candidates_into(&pairs, t_len, b, s, rng, &mut cand);
    let m1 = 1 + s.num_negatives;
    let n = pairs.len();
    // Pairs by horizon: one product with W_k for all of a horizon's contexts.
    sc.by_k.resize(d.horizon + 1, Vec::new());
    sc.by_k.iter_mut().for_each(|v| v.clear());
    for (i, p) in pairs.iter().enumerate() {
        sc.by_k[p.k].push(i);
    }
    sc.ctx.resize(n * dc, 0.0);
    sc.preds.resize(n * dz, 0.0);
    sc.d_preds.resize(n * dz, 0.0);
    sc.d_ctx.resize(n * dc, 0.0);
    sc.scores.resize(m1, 0.0);
    // Rows are laid out by horizon: `start[k]..start[k+1]` holds horizon k's pairs.
    let mut start = vec![0usize; d.horizon + 2];
    for k in 1..=d.horizon {
        start[k + 1] = start[k] + sc.by_k[k].len();
    }
    for k in 1..=d.horizon {
        let (lo, nk) = (start[k], sc.by_k[k].len());
        if nk == 0 {
            continue;
        }
        for (r, &i) in sc.by_k[k].iter().enumerate() {
            let a = pairs[i].t * b + pairs[i].b;
            sc.ctx[(lo + r) * dc..(lo + r + 1) * dc].copy_from_slice(&c[a * dc..(a + 1) * dc]);
        }
        let wk = &w[(k - 1) * dz * dc..k * dz * dc];
        matmul(
            &mut sc.preds[lo * dz..(lo + nk) * dz],
            &sc.ctx[lo * dc..(lo + nk) * dc],
            Op::N,
            wk,
            Op::T,
            (nk, dc, dz),
            false,
        );
    }
    // Scores, InfoNCE and its gradient with respect to the scores, pair by pair.
    let (mut hits, mut pair_losses) = (vec![0.0; n], vec![0.0; n]);
    let mut loss = 0.0f64;
    for (pairs_k, &lo) in sc.by_k.iter().zip(&start).skip(1) {
        for (r, &i) in pairs_k.iter().enumerate() {
            let row = lo + r;
            let pred = &sc.preds[row * dz..(row + 1) * dz];
            let cands = &cand[i * m1..(i + 1) * m1];
            let dp = &mut sc.d_preds[row * dz..(row + 1) * dz];
            let (h, l) = score_pair(z, cands, pred, weights[i] as f32, &mut sc.scores, dp, d_z);
            (hits[i], pair_losses[i]) = (h, l);
            loss += weights[i] * l;
        }
    }
    // Back through the predictions: d W_k = d predsᵀ · ctx, d ctx = d preds · W_k.
    d_w.fill(0.0);
    for k in 1..=d.horizon {
        let (lo, nk) = (start[k], sc.by_k[k].len());
        if nk == 0 {
            continue;
        }
        let wk = &w[(k - 1) * dz * dc..k * dz * dc];
        matmul(
            &mut d_w[(k - 1) * dz * dc..k * dz * dc],
            &sc.d_preds[lo * dz..(lo + nk) * dz],
            Op::T,
            &sc.ctx[lo * dc..(lo + nk) * dc],
            Op::N,
            (dz, nk, dc),
            false,
        );
        matmul(
            &mut sc.d_ctx[lo * dc..(lo + nk) * dc],
            &sc.d_preds[lo * dz..(lo + nk) * dz],
            Op::N,
            wk,
            Op::N,
            (nk, dz, dc),
            false,
        );
        for (r, &i) in sc.by_k[k].iter().enumerate() {
            let a = pairs[i].t * b + pairs[i].b;
            for (x, y) in d_c[a * dc..(a + 1) * dc]
                .iter_mut()
                .zip(&sc.d_ctx[(lo + r) * dc..(lo + r + 1) * dc])
            {
                *x += y;
            }
        }
    }
    sc.cand = cand;
    Ok(Some((
        loss,
        CpcResult {
            loss: Tensor::new(loss as f32, &Device::Cpu)?,
            pairs,
            hits,
            pair_losses,
            weights,
        },
    )))
}

/// The distinct anchors `t * B + b` of `pairs`, in order of first use, and for each pair
/// the row `anchor * stride + (k − 1)` of its prediction among `stride` per anchor.
pub fn anchors(pairs: &[Pair], t_len: usize, b: usize, stride: usize) -> (Vec<u32>, Vec<u32>) {
    let mut anchor_row = vec![u32::MAX; t_len * b];
    let mut anchors = Vec::new();
    let mut rows = Vec::with_capacity(pairs.len());
    for p in pairs {
        let a = p.t * b + p.b;
        if anchor_row[a] == u32::MAX {
            anchor_row[a] = anchors.len() as u32;
            anchors.push(a as u32);
        }
        rows.push(anchor_row[a] * stride as u32 + (p.k - 1) as u32);
    }
    (anchors, rows)
}

/// Accuracy buckets over the horizon, as logged: k = 1, 2..=10, 11..=K.
pub fn horizon_buckets(horizon: usize) -> Vec<(String, usize, usize)> {
    let mut v = vec![("k1".to_string(), 1, 1)];
    if horizon >= 2 {
        v.push((format!("k2_{}", horizon.min(10)), 2, horizon.min(10)));
    }
    if horizon >= 11 {
        v.push((format!("k11_{horizon}"), 11, horizon));
    }
    v
}
