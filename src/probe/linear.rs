//! Linear probes on frozen features (`rlcpc probe`): multinomial logistic regression for
//! class labels and ridge regression for continuous targets (belief probing, Guo et al.
//! 2018), each with its L2 strength chosen on a validation part of the training split and
//! scored once on the held-out test split.

use anyhow::{bail, Result};
use candle_core::{Device, Tensor};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rlcpc_envs::SeededRng;

/// Row-major features `[n, d]`.
#[derive(Debug, Clone)]
pub struct Features {
    pub n: usize,
    pub d: usize,
    pub x: Vec<f32>,
}

impl Features {
    pub fn from_rows(rows: Vec<Vec<f32>>) -> Result<Features> {
        let n = rows.len();
        let d = rows.first().map_or(0, Vec::len);
        if n == 0 || d == 0 || rows.iter().any(|r| r.len() != d) {
            bail!("features must be {n} non-empty rows of equal length");
        }
        Ok(Features {
            n,
            d,
            x: rows.concat(),
        })
    }

    pub fn row(&self, i: usize) -> &[f32] {
        &self.x[i * self.d..(i + 1) * self.d]
    }

    pub fn select(&self, idx: &[usize]) -> Features {
        let mut x = Vec::with_capacity(idx.len() * self.d);
        for &i in idx {
            x.extend_from_slice(self.row(i));
        }
        Features {
            n: idx.len(),
            d: self.d,
            x,
        }
    }

    /// Per-column mean and standard deviation (1 where a column is constant).
    pub fn moments(&self) -> (Vec<f32>, Vec<f32>) {
        let mut mean = vec![0f64; self.d];
        for i in 0..self.n {
            for (m, &v) in mean.iter_mut().zip(self.row(i)) {
                *m += v as f64;
            }
        }
        mean.iter_mut().for_each(|m| *m /= self.n as f64);
        let mut var = vec![0f64; self.d];
        for i in 0..self.n {
            for ((s, &v), m) in var.iter_mut().zip(self.row(i)).zip(&mean) {
                *s += (v as f64 - m).powi(2);
            }
        }
        let std = var
            .iter()
            .map(|v| {
                let s = (v / self.n as f64).sqrt();
                if s > 1e-8 {
                    s as f32
                } else {
                    1.0
                }
            })
            .collect();
        (mean.iter().map(|&m| m as f32).collect(), std)
    }

    pub fn standardized(&self, mean: &[f32], std: &[f32]) -> Features {
        let mut x = self.x.clone();
        for row in x.chunks_exact_mut(self.d) {
            for ((v, m), s) in row.iter_mut().zip(mean).zip(std) {
                *v = (*v - m) / s;
            }
        }
        Features {
            n: self.n,
            d: self.d,
            x,
        }
    }
}

/// A linear softmax classifier: `W` `[k, d]`, bias `[k]`.
#[derive(Debug, Clone)]
pub struct Logistic {
    pub k: usize,
    pub d: usize,
    pub w: Vec<f32>,
    pub b: Vec<f32>,
}

impl Logistic {
    fn logits(&self, x: &[f32], out: &mut [f32]) {
        for (c, o) in out.iter_mut().enumerate() {
            let w = &self.w[c * self.d..(c + 1) * self.d];
            *o = self.b[c] + w.iter().zip(x).map(|(a, b)| a * b).sum::<f32>();
        }
    }

    pub fn predict(&self, f: &Features) -> Vec<usize> {
        let mut z = vec![0f32; self.k];
        (0..f.n)
            .map(|i| {
                self.logits(f.row(i), &mut z);
                rlcpc_agents::argmax(&z)
            })
            .collect()
    }

    /// Mean cross-entropy plus `lambda/2 · ‖W‖²` and its gradient (bias unregularised).
    pub fn loss_grad(&self, f: &Features, y: &[usize], lambda: f32) -> (f64, Vec<f32>, Vec<f32>) {
        let data = Design::new(f, y, self.k).expect("features as a tensor");
        self.loss_grad_on(&data, lambda)
            .expect("CPU tensor ops on checked shapes")
    }

    /// [`Logistic::loss_grad`] on data already in tensors: two matrix products per call
    /// (logits X·Wᵀ and the weight gradient (P − Y)ᵀ·X / n), so a fit runs at GEMM speed.
    fn loss_grad_on(
        &self,
        data: &Design,
        lambda: f32,
    ) -> candle_core::Result<(f64, Vec<f32>, Vec<f32>)> {
        let dev = &Device::Cpu;
        let w = Tensor::from_slice(&self.w, (self.k, self.d), dev)?;
        let b = Tensor::from_slice(&self.b, self.k, dev)?;
        let z = data.x.matmul(&w.t()?)?.broadcast_add(&b)?;
        let m = z.max_keepdim(1)?;
        let lse = (z.broadcast_sub(&m)?.exp()?.sum_keepdim(1)?.log()? + &m)?;
        let nll = (&lse - (&z * &data.y)?.sum_keepdim(1)?)?;
        let loss = nll.mean_all()?.to_scalar::<f32>()? as f64;
        let g = ((z.broadcast_sub(&lse)?.exp()? - &data.y)? / data.n as f64)?;
        let gw = (g.t()?.contiguous()?.matmul(&data.x)? + (&w * lambda as f64)?)?;
        let gb = g.sum(0)?;
        let reg: f64 = self.w.iter().map(|&v| (v * v) as f64).sum();
        Ok((
            loss + 0.5 * lambda as f64 * reg,
            gw.flatten_all()?.to_vec1()?,
            gb.to_vec1()?,
        ))
    }

    /// Fits by full-batch Adam for `iters` steps (a convex problem with one optimum; a
    /// fixed budget approaches it, more slowly for weak regularisation).
    pub fn fit(f: &Features, y: &[usize], k: usize, lambda: f32, iters: usize) -> Logistic {
        let mut m = Logistic {
            k,
            d: f.d,
            w: vec![0.0; k * f.d],
            b: vec![0.0; k],
        };
        let data = Design::new(f, y, k).expect("features as a tensor");
        let n_params = m.w.len() + k;
        let (mut m1, mut m2) = (vec![0f32; n_params], vec![0f32; n_params]);
        let (lr, b1, b2, eps) = (0.05f32, 0.9f32, 0.999f32, 1e-8f32);
        for t in 1..=iters {
            let (_, gw, gb) = m
                .loss_grad_on(&data, lambda)
                .expect("CPU tensor ops on checked shapes");
            let bc1 = 1.0 - b1.powi(t as i32);
            let bc2 = 1.0 - b2.powi(t as i32);
            let params = m.w.iter_mut().chain(m.b.iter_mut());
            for (((p, g), a), v) in params.zip(gw.iter().chain(&gb)).zip(&mut m1).zip(&mut m2) {
                *a = b1 * *a + (1.0 - b1) * g;
                *v = b2 * *v + (1.0 - b2) * g * g;
                *p -= lr * (*a / bc1) / ((*v / bc2).sqrt() + eps);
            }
        }
        m
    }
}

/// Features `[n, d]` and one-hot labels `[n, k]` as tensors, built once per fit.
struct Design {
    x: Tensor,
    y: Tensor,
    n: usize,
}

impl Design {
    fn new(f: &Features, y: &[usize], k: usize) -> candle_core::Result<Design> {
        let mut onehot = vec![0f32; f.n * k];
        for (i, &c) in y.iter().enumerate() {
            onehot[i * k + c] = 1.0;
        }
        Ok(Design {
            x: Tensor::from_slice(&f.x, (f.n, f.d), &Device::Cpu)?,
            y: Tensor::from_vec(onehot, (f.n, k), &Device::Cpu)?,
            n: f.n,
        })
    }
}

pub fn accuracy(pred: &[usize], y: &[usize]) -> f64 {
    pred.iter().zip(y).filter(|(a, b)| a == b).count() as f64 / y.len().max(1) as f64
}

/// L2 strengths tried for the linear probes.
pub const LAMBDAS: [f32; 6] = [1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0];

/// Result of one probe.
#[derive(Debug, Clone)]
pub struct ProbeScore {
    pub lambda: f32,
    pub val: f64,
    pub train: f64,
    pub test: f64,
}

/// Standardises with training statistics, picks λ on a 20% validation part of the
/// training split (seeded), refits on all of it and scores the test split once.
pub fn classify(
    train: &Features,
    y_train: &[usize],
    test: &Features,
    y_test: &[usize],
    k: usize,
    seed: u64,
    iters: usize,
) -> ProbeScore {
    let (mean, std) = train.moments();
    let (tr, te) = (
        train.standardized(&mean, &std),
        test.standardized(&mean, &std),
    );
    let mut idx: Vec<usize> = (0..tr.n).collect();
    idx.shuffle(&mut SeededRng::seed_from_u64(seed ^ 0x9B0B_E000));
    let n_val = (tr.n / 5).max(1);
    let (val_idx, fit_idx) = idx.split_at(n_val);
    let (fx, fy) = (
        tr.select(fit_idx),
        fit_idx.iter().map(|&i| y_train[i]).collect::<Vec<_>>(),
    );
    let (vx, vy) = (
        tr.select(val_idx),
        val_idx.iter().map(|&i| y_train[i]).collect::<Vec<_>>(),
    );
    // Each λ is an independent fit: spread them over the cores.
    let vals: Vec<f64> = crate::par::par_map(&LAMBDAS, |&l| {
        Ok(accuracy(
            &Logistic::fit(&fx, &fy, k, l, iters).predict(&vx),
            &vy,
        ))
    })
    .expect("a fit cannot fail");
    let best = best_lambda(&vals);
    let m = Logistic::fit(&tr, y_train, k, LAMBDAS[best], iters);
    ProbeScore {
        lambda: LAMBDAS[best],
        val: vals[best],
        train: accuracy(&m.predict(&tr), y_train),
        test: accuracy(&m.predict(&te), y_test),
    }
}

/// The index of the best validation score of a λ grid in increasing order; ties go to
/// the stronger regulariser (the larger λ). `max_by` keeps the last of equal maxima.
pub fn best_lambda(vals: &[f64]) -> usize {
    (0..vals.len())
        .max_by(|&a, &b| vals[a].total_cmp(&vals[b]))
        .expect("a non-empty λ grid")
}

/// Result of a k-fold cross-validated probe.
#[derive(Debug, Clone)]
pub struct CvScore {
    /// Mean and standard deviation of the folds' test accuracies.
    pub mean: f64,
    pub std: f64,
    /// Mean training accuracy.
    pub train: f64,
    /// λ chosen in each fold.
    pub lambdas: Vec<f32>,
}

/// k-fold cross-validation (SentEval's protocol where a set has no split): the items
/// are shuffled (seeded) into `folds` parts; each part is the test set once, a model is
/// fitted on the others by [`classify`] (λ picked on a validation part of them).
/// `features(train, test)` gives the features of those items; it may build them from
/// the training items alone (e.g. a bag-of-words vocabulary).
pub fn cross_validate(
    y: &[usize],
    k: usize,
    folds: usize,
    seed: u64,
    iters: usize,
    mut features: impl FnMut(&[usize], &[usize]) -> Result<(Features, Features)>,
) -> Result<CvScore> {
    let n = y.len();
    if folds < 2 || folds > n {
        bail!("cannot split {n} items into {folds} folds (need 2 ≤ folds ≤ items)");
    }
    let mut idx: Vec<usize> = (0..n).collect();
    idx.shuffle(&mut SeededRng::seed_from_u64(seed ^ 0xF01D));
    let (mut tests, mut trains, mut lambdas) = (Vec::new(), Vec::new(), Vec::new());
    for f in 0..folds {
        let (lo, hi) = (f * n / folds, (f + 1) * n / folds);
        let te: Vec<usize> = idx[lo..hi].to_vec();
        let tr: Vec<usize> = idx[..lo].iter().chain(&idx[hi..]).copied().collect();
        let (a, b) = features(&tr, &te)?;
        let ytr: Vec<usize> = tr.iter().map(|&i| y[i]).collect();
        let yte: Vec<usize> = te.iter().map(|&i| y[i]).collect();
        let s = classify(&a, &ytr, &b, &yte, k, seed + f as u64, iters);
        tests.push(s.test);
        trains.push(s.train);
        lambdas.push(s.lambda);
    }
    let mean = tests.iter().sum::<f64>() / folds as f64;
    let var = tests.iter().map(|t| (t - mean).powi(2)).sum::<f64>() / folds as f64;
    Ok(CvScore {
        mean,
        std: var.sqrt(),
        train: trains.iter().sum::<f64>() / folds as f64,
        lambdas,
    })
}

/// Ridge regression `min ‖XW + b − Y‖² + λ‖W‖²` in closed form (Cholesky, f64) on
/// standardised X; returns a predictor.
pub struct Ridge {
    mean: Vec<f32>,
    std: Vec<f32>,
    /// `[d+1, m]`: weights then the intercept row.
    w: Vec<f64>,
    m: usize,
}

impl Ridge {
    pub fn fit(x: &Features, y: &[Vec<f64>], lambda: f64) -> Result<Ridge> {
        Ok(Ridge::fit_many(x, y, &[lambda])?.remove(0))
    }

    /// One fit per λ, sharing the Gram matrix (the expensive part: n·d²/2).
    pub fn fit_many(x: &Features, y: &[Vec<f64>], lambdas: &[f64]) -> Result<Vec<Ridge>> {
        let (mean, std) = x.moments();
        let xs = x.standardized(&mean, &std);
        let (n, d, m) = (xs.n, xs.d, y[0].len());
        let ymean: Vec<f64> = (0..m)
            .map(|j| y.iter().map(|r| r[j]).sum::<f64>() / n as f64)
            .collect();
        let mut gram = vec![0f64; d * d];
        let mut rhs = vec![0f64; d * m];
        let mut row = vec![0f64; d];
        for (i, yi) in y.iter().enumerate().take(n) {
            for (r, &v) in row.iter_mut().zip(xs.row(i)) {
                *r = v as f64;
            }
            for p in 0..d {
                let xp = row[p];
                for (g, &xq) in gram[p * d..p * d + p + 1].iter_mut().zip(&row[..=p]) {
                    *g += xp * xq;
                }
                for j in 0..m {
                    rhs[p * m + j] += xp * (yi[j] - ymean[j]);
                }
            }
        }
        lambdas
            .iter()
            .map(|&lambda| {
                let mut a = gram.clone();
                for p in 0..d {
                    a[p * d + p] += lambda;
                    for q in 0..p {
                        a[q * d + p] = a[p * d + q];
                    }
                }
                let w = solve_spd(&a, &rhs, d, m, lambda, &ymean)?;
                Ok(Ridge {
                    mean: mean.clone(),
                    std: std.clone(),
                    w,
                    m,
                })
            })
            .collect()
    }

    pub fn predict(&self, x: &Features) -> Vec<Vec<f64>> {
        let xs = x.standardized(&self.mean, &self.std);
        (0..xs.n)
            .map(|i| {
                let r = xs.row(i);
                (0..self.m)
                    .map(|j| {
                        self.w[xs.d * self.m + j]
                            + r.iter()
                                .enumerate()
                                .map(|(p, &v)| v as f64 * self.w[p * self.m + j])
                                .sum::<f64>()
                    })
                    .collect()
            })
            .collect()
    }
}

/// Solves `A W = rhs` for symmetric positive definite `A` `[d, d]` by Cholesky; returns
/// `[d+1, m]` with the intercepts `ymean` as the last row.
fn solve_spd(
    a: &[f64],
    rhs: &[f64],
    d: usize,
    m: usize,
    lambda: f64,
    ymean: &[f64],
) -> Result<Vec<f64>> {
    let mut l = vec![0f64; d * d];
    for p in 0..d {
        for q in 0..=p {
            let s: f64 = a[p * d + q] - (0..q).map(|r| l[p * d + r] * l[q * d + r]).sum::<f64>();
            if p == q {
                if s <= 0.0 {
                    bail!("ridge system is not positive definite (λ = {lambda})");
                }
                l[p * d + p] = s.sqrt();
            } else {
                l[p * d + q] = s / l[q * d + q];
            }
        }
    }
    let mut w = vec![0f64; (d + 1) * m];
    for j in 0..m {
        let mut z = vec![0f64; d];
        for p in 0..d {
            z[p] =
                (rhs[p * m + j] - (0..p).map(|r| l[p * d + r] * z[r]).sum::<f64>()) / l[p * d + p];
        }
        for p in (0..d).rev() {
            let s: f64 = (p + 1..d).map(|r| l[r * d + p] * w[r * m + j]).sum();
            w[p * m + j] = (z[p] - s) / l[p * d + p];
        }
        w[d * m + j] = ymean[j];
    }
    Ok(w)
}

/// Coefficient of determination of each target column: 1 − SS_res / SS_tot.
pub fn r2(pred: &[Vec<f64>], y: &[Vec<f64>]) -> Vec<f64> {
    let m = y[0].len();
    (0..m)
        .map(|j| {
            let mean = y.iter().map(|r| r[j]).sum::<f64>() / y.len() as f64;
            let tot: f64 = y.iter().map(|r| (r[j] - mean).powi(2)).sum();
            let res: f64 = pred.iter().zip(y).map(|(p, r)| (p[j] - r[j]).powi(2)).sum();
            if tot > 0.0 {
                1.0 - res / tot
            } else {
                f64::NAN
            }
        })
        .collect()
}

/// The validation block of a time series of `n` steps with episode starts `first`: the
/// last fifth of the steps, starting at an episode start where there is one (so that no
/// episode, whose frames are nearly copies of each other, lies on both sides).
/// Returns `(fit, validation)` index ranges.
pub fn blocked_validation(first: &[f32]) -> (std::ops::Range<usize>, std::ops::Range<usize>) {
    let n = first.len();
    let want = n - (n / 5).max(1);
    let cut = (want..n)
        .find(|&t| first[t] != 0.0)
        .or_else(|| (1..want).rev().find(|&t| first[t] != 0.0))
        .unwrap_or(want)
        .clamp(1, n - 1);
    (0..cut, cut..n)
}

/// Ridge with λ picked on a validation block of the training part (its last episodes,
/// [`blocked_validation`]; `first` marks the training rows' episode starts, in time
/// order); R² per target on the test split.
pub fn regress(
    train: &Features,
    y_train: &[Vec<f64>],
    test: &Features,
    y_test: &[Vec<f64>],
    first: &[f32],
) -> Result<(f64, Vec<f64>)> {
    if first.len() != train.n || train.n < 2 {
        bail!(
            "ridge probe: {} training rows with {} episode flags",
            train.n,
            first.len()
        );
    }
    let (fit_range, val_range) = blocked_validation(first);
    let (fit_idx, val_idx): (Vec<usize>, Vec<usize>) = (fit_range.collect(), val_range.collect());
    let (fit_idx, val_idx) = (&fit_idx[..], &val_idx[..]);
    let fx = train.select(fit_idx);
    let fy: Vec<Vec<f64>> = fit_idx.iter().map(|&i| y_train[i].clone()).collect();
    let vx = train.select(val_idx);
    let vy: Vec<Vec<f64>> = val_idx.iter().map(|&i| y_train[i].clone()).collect();
    let lambdas = [1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1000.0];
    let mut best = (f64::NEG_INFINITY, 1.0);
    for (model, &lambda) in Ridge::fit_many(&fx, &fy, &lambdas)?.iter().zip(&lambdas) {
        let r = r2(&model.predict(&vx), &vy);
        let score = r.iter().filter(|v| v.is_finite()).sum::<f64>();
        // Ties go to the stronger regulariser (λ grows along the grid).
        if score >= best.0 {
            best = (score, lambda);
        }
    }
    let model = Ridge::fit(train, y_train, best.1)?;
    Ok((best.1, r2(&model.predict(test), y_test)))
}
