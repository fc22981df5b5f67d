//! The A2C loss on host slices with its gradient, for networks with a lean path
//! ([`crate::LeanNetwork`]). The same terms as the learner's candle loss (whose autograd
//! the tests compare it with): policy gradient −mean(A·log π(a|s)), value regression
//! ½·mean((target − V)²) weighted by `vf_coef`, and the entropy bonus −`ent_coef`·H.

/// Row-wise log-softmax of `logits` `[n, a]` into `out`.
pub fn log_softmax(logits: &[f32], a: usize, out: &mut Vec<f32>) {
    out.resize(logits.len(), 0.0);
    for (row, o) in logits.chunks_exact(a).zip(out.chunks_exact_mut(a)) {
        let m = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        let lse = m + row.iter().map(|v| (v - m).exp()).sum::<f32>().ln();
        for (y, x) in o.iter_mut().zip(row) {
            *y = x - lse;
        }
    }
}

/// The loss's terms (unweighted) of one batch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Terms {
    /// −mean(A·log π(a|s)).
    pub policy: f64,
    /// ½·mean((target − V)²).
    pub value: f64,
    /// mean H(π(·|s)), in nats.
    pub entropy: f64,
}

/// The loss over the first `n = advantages.len()` rows and its gradient: writes
/// `d_logits` `[rows, a]` and `d_values` `[rows]`, zero on the rows after `n` (the
/// bootstrap step). `log_probs` are [`log_softmax`]'s of the logits.
#[allow(clippy::too_many_arguments)]
pub fn a2c(
    log_probs: &[f32],
    a: usize,
    actions: &[u32],
    advantages: &[f32],
    value_targets: &[f32],
    values: &[f32],
    (vf_coef, ent_coef): (f32, f32),
    d_logits: &mut [f32],
    d_values: &mut [f32],
) -> Terms {
    let n = advantages.len();
    let inv = 1.0 / n as f32;
    let (mut pg, mut vl, mut ent) = (0.0f64, 0.0f64, 0.0f64);
    d_logits.fill(0.0);
    d_values.fill(0.0);
    for r in 0..n {
        let lp = &log_probs[r * a..(r + 1) * a];
        let d = &mut d_logits[r * a..(r + 1) * a];
        let act = actions[r] as usize;
        let adv = advantages[r];
        pg -= (adv * lp[act]) as f64;
        let h_r: f32 = -lp.iter().map(|l| l.exp() * l).sum::<f32>();
        ent += h_r as f64;
        for j in 0..a {
            let p = lp[j].exp();
            let onehot = if j == act { 1.0 } else { 0.0 };
            // d(−A log π_a)/dz_j = −A(δ_ja − p_j); d(−c_e H_r)/dz_j = c_e p_j (log p_j + H_r).
            d[j] = inv * (-adv * (onehot - p) + ent_coef * p * (lp[j] + h_r));
        }
        let err = values[r] - value_targets[r];
        vl += 0.5 * (err as f64) * (err as f64);
        d_values[r] = inv * vf_coef * err;
    }
    let nf = n as f64;
    Terms {
        policy: pg / nf,
        value: vl / nf,
        entropy: ent / nf,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The gradient against central differences of the loss itself.
    #[test]
    fn gradient_matches_finite_differences() {
        let a = 3;
        let logits: Vec<f32> = (0..4 * a)
            .map(|i| ((i * 7 % 5) as f32 - 2.0) * 0.4)
            .collect();
        let values = [0.3f32, -0.2, 0.5, 0.1];
        let actions = [0u32, 2, 1];
        let adv = [0.7f32, -1.1, 0.4];
        let vt = [0.9f32, 0.0, -0.3];
        let coefs = (0.5f32, 0.05f32);
        let total = |lg: &[f32], v: &[f32]| {
            let mut lp = Vec::new();
            log_softmax(lg, a, &mut lp);
            let (mut dl, mut dv) = (vec![0.0; lg.len()], vec![0.0; v.len()]);
            let t = a2c(&lp, a, &actions, &adv, &vt, v, coefs, &mut dl, &mut dv);
            (
                t.policy + coefs.0 as f64 * t.value - coefs.1 as f64 * t.entropy,
                dl,
                dv,
            )
        };
        let (_, dl, dv) = total(&logits, &values);
        let eps = 1e-2f32;
        for i in 0..logits.len() {
            let (mut up, mut dn) = (logits.clone(), logits.clone());
            up[i] += eps;
            dn[i] -= eps;
            let num = (total(&up, &values).0 - total(&dn, &values).0) / (2.0 * eps as f64);
            assert!(
                (num - dl[i] as f64).abs() < 1e-4,
                "logit {i}: {num} vs {}",
                dl[i]
            );
        }
        for i in 0..values.len() {
            let (mut up, mut dn) = (values, values);
            up[i] += eps;
            dn[i] -= eps;
            let num = (total(&logits, &up).0 - total(&logits, &dn).0) / (2.0 * eps as f64);
            assert!(
                (num - dv[i] as f64).abs() < 1e-4,
                "value {i}: {num} vs {}",
                dv[i]
            );
        }
        // The bootstrap row gets no gradient.
        assert!(dl[3 * a..].iter().all(|&g| g == 0.0) && dv[3] == 0.0);
    }
}
