//! The losses of the view-based objectives, as pure functions of their inputs:
//! SimCLR's NT-Xent (Chen et al. 2020, eq. 1) and MoCo's InfoNCE against a queue of keys
//! (He et al. 2019, eq. 1), with the queue's first-in-first-out update. The tests check
//! both against a direct, loop-by-loop implementation of the papers' formulas.

use candle_core::{Tensor, D};

/// Rows scaled to unit L2 norm.
pub fn l2_normalize(x: &Tensor) -> candle_core::Result<Tensor> {
    let norm = x
        .sqr()?
        .sum_keepdim(D::Minus1)?
        .sqrt()?
        .clamp(1e-12f32, f32::MAX)?;
    x.broadcast_div(&norm)
}

/// Cross-entropy of `logits` `[N, K]` with target class `target[i]`, averaged, and the
/// share of rows whose target scores highest.
fn cross_entropy(logits: &Tensor, targets: &Tensor) -> candle_core::Result<(Tensor, Tensor)> {
    let lse = {
        let m = logits.max_keepdim(1)?.detach();
        (logits.broadcast_sub(&m)?.exp()?.sum_keepdim(1)?.log()? + m)?
    };
    let picked = logits.gather(&targets.unsqueeze(1)?, 1)?;
    let loss = (lse - &picked)?.mean_all()?;
    let best = logits.argmax(1)?;
    let acc = best
        .eq(targets)?
        .to_dtype(candle_core::DType::F32)?
        .mean_all()?;
    Ok((loss, acc))
}

/// NT-Xent over `z` `[2N, d]`, rows i and i + N (mod 2N) the two views of one image:
/// ℓ(i, j) = −log exp(sim(z_i, z_j)/τ) / Σ_{k≠i} exp(sim(z_i, z_k)/τ), sim the cosine,
/// averaged over all 2N anchors. Returns the loss and the positive's top-1 rate.
pub fn nt_xent(z: &Tensor, temperature: f64) -> candle_core::Result<(Tensor, Tensor)> {
    let (n2, _) = z.dims2()?;
    if n2 % 2 != 0 || n2 < 4 {
        candle_core::bail!("NT-Xent needs two views of at least two images, got {n2} rows");
    }
    let n = n2 / 2;
    let zn = l2_normalize(z)?;
    let sim = (zn.matmul(&zn.t()?)? / temperature)?;
    // Each anchor's own similarity is left out of the denominator.
    let eye = Tensor::eye(n2, candle_core::DType::F32, z.device())?;
    let logits = (sim - (eye * 1e9)?)?;
    let targets: Vec<u32> = (0..n2).map(|i| ((i + n) % n2) as u32).collect();
    let targets = Tensor::new(targets.as_slice(), z.device())?;
    cross_entropy(&logits, &targets)
}

/// MoCo's InfoNCE: queries `q` `[N, d]` against their keys `k` `[N, d]` (the positive)
/// and the queue `[K, d]` (negatives), all L2-normalised here; `k` and the queue take no
/// gradient. Logits [q·k⁺, q·queue] / τ with the positive in column 0.
pub fn moco_infonce(
    q: &Tensor,
    k: &Tensor,
    queue: &Tensor,
    temperature: f64,
) -> candle_core::Result<(Tensor, Tensor)> {
    let q = l2_normalize(q)?;
    let k = l2_normalize(&k.detach())?;
    let pos = (&q * &k)?.sum_keepdim(1)?;
    let neg = q.matmul(&queue.detach().t()?)?;
    let logits = (Tensor::cat(&[pos, neg], 1)? / temperature)?;
    let targets = Tensor::zeros(q.dim(0)?, candle_core::DType::U32, q.device())?;
    cross_entropy(&logits, &targets)
}

/// The queue after enqueueing `keys` `[N, d]` and dequeueing the N oldest: newest
/// first, so the oldest are always the last rows.
pub fn enqueue(queue: &Tensor, keys: &Tensor) -> candle_core::Result<Tensor> {
    let (cap, _) = queue.dims2()?;
    let n = keys.dim(0)?;
    Tensor::cat(&[keys.detach(), queue.narrow(0, 0, cap - n)?], 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn cos(a: &[f32], b: &[f32]) -> f64 {
        let dot: f64 = a
            .iter()
            .zip(b)
            .map(|(x, y)| (*x as f64) * (*y as f64))
            .sum();
        let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
        let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
        dot / (na * nb)
    }

    #[test]
    fn nt_xent_is_the_papers_formula() {
        let dev = Device::Cpu;
        let z = Tensor::randn(0f32, 1f32, (6, 5), &dev).unwrap();
        let rows = z.to_vec2::<f32>().unwrap();
        let tau = 0.3;
        let n = 3;
        let mut want = 0.0;
        for i in 0..6 {
            let j = (i + n) % 6;
            let denom: f64 = (0..6)
                .filter(|&k| k != i)
                .map(|k| (cos(&rows[i], &rows[k]) / tau).exp())
                .sum();
            want += -((cos(&rows[i], &rows[j]) / tau).exp() / denom).ln();
        }
        want /= 6.0;
        let (loss, acc) = nt_xent(&z, tau).unwrap();
        let got = loss.to_scalar::<f32>().unwrap() as f64;
        assert!((got - want).abs() < 1e-4, "{got} vs {want}");
        let a = acc.to_scalar::<f32>().unwrap();
        assert!((0.0..=1.0).contains(&a));
        // Identical views of orthogonal images: every positive wins.
        let e = Tensor::eye(3, candle_core::DType::F32, &dev).unwrap();
        let twice = Tensor::cat(&[&e, &e], 0).unwrap();
        let (_, acc) = nt_xent(&twice, 0.1).unwrap();
        assert_eq!(acc.to_scalar::<f32>().unwrap(), 1.0);
        assert!(nt_xent(
            &Tensor::zeros((3, 2), candle_core::DType::F32, &dev).unwrap(),
            0.1
        )
        .is_err());
    }

    #[test]
    fn moco_loss_is_infonce_over_the_queue_and_keys_take_no_gradient() {
        let dev = Device::Cpu;
        let q = candle_core::Var::randn(0f32, 1f32, (4, 3), &dev).unwrap();
        let k = candle_core::Var::randn(0f32, 1f32, (4, 3), &dev).unwrap();
        let queue = l2_normalize(&Tensor::randn(0f32, 1f32, (8, 3), &dev).unwrap()).unwrap();
        let tau = 0.2;
        let (qr, kr, qu) = (
            q.as_tensor().to_vec2::<f32>().unwrap(),
            k.as_tensor().to_vec2::<f32>().unwrap(),
            queue.to_vec2::<f32>().unwrap(),
        );
        let mut want = 0.0;
        for i in 0..4 {
            let pos = (cos(&qr[i], &kr[i]) / tau).exp();
            let neg: f64 = qu.iter().map(|r| (cos(&qr[i], r) / tau).exp()).sum();
            want += -(pos / (pos + neg)).ln();
        }
        want /= 4.0;
        let (loss, _) = moco_infonce(q.as_tensor(), k.as_tensor(), &queue, tau).unwrap();
        assert!((loss.to_scalar::<f32>().unwrap() as f64 - want).abs() < 1e-4);
        let g = loss.backward().unwrap();
        assert!(g.get(q.as_tensor()).is_some());
        assert!(g.get(k.as_tensor()).is_none(), "no gradient into the keys");
    }

    #[test]
    fn the_queue_is_first_in_first_out() {
        let dev = Device::Cpu;
        let queue = Tensor::new(&[[1f32], [2.], [3.], [4.]], &dev).unwrap();
        let keys = Tensor::new(&[[8f32], [9.]], &dev).unwrap();
        let q = enqueue(&queue, &keys).unwrap();
        assert_eq!(
            q.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            vec![8., 9., 1., 2.]
        );
    }
}
