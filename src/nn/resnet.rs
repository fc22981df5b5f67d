//! A small ResNet for the view-based trainers (SimCLR, MoCo v2): a CIFAR-style stem (one
//! 3×3 convolution, stride 1, no max-pool; He et al. 2016 §4.2, as SimCLR on CIFAR-10),
//! stages of basic blocks (two 3×3 convolutions with BatchNorm, a 1×1 projection
//! shortcut where the shape changes), the first stage at stride 1 and each further one
//! at stride 2, then global average pooling: `[N, H, W, C]` images in, `[N, widths.last]`
//! features h out.
//!
//! BatchNorm normalises over the batch (and positions) in training mode and keeps
//! running statistics (PyTorch's momentum 0.1, unbiased variance), which eval mode uses
//! and which are saved with the weights (`*.running_mean`, `*.running_var`). In training
//! mode the statistics can be computed per group of the batch (`groups`), which is how
//! MoCo's shuffled BatchNorm is emulated on one device.

use std::sync::{Arc, Mutex};

use candle_core::{CpuStorage, CustomOp3, DType, Layout, Shape, Tensor, Var, D};
use candle_nn::VarMap;

use super::conv::conv2d_nhwc;
use super::init::Init;

/// BatchNorm's ε and running-statistics momentum (PyTorch's defaults).
pub(crate) const BN_EPS: f64 = 1e-5;
pub(crate) const BN_MOMENTUM: f64 = 0.1;

/// BatchNorm over the channels of `[.., C]` (channels-last).
pub struct BatchNorm {
    pub weight: Tensor,
    pub bias: Tensor,
    pub running_mean: Var,
    pub running_var: Var,
}

/// The variable `name` of `varmap`, or an error naming it.
pub(crate) fn var(varmap: &VarMap, name: &str) -> candle_core::Result<Var> {
    varmap
        .data()
        .lock()
        .expect("varmap lock")
        .get(name)
        .cloned()
        .ok_or_else(|| candle_core::Error::Msg(format!("missing parameter '{name}'")))
}

impl BatchNorm {
    pub fn init(init: &mut Init, prefix: &str, c: usize) -> candle_core::Result<()> {
        init.ones(&format!("{prefix}.weight"), &[c])?;
        init.zeros(&format!("{prefix}.bias"), &[c])?;
        init.zeros(&format!("{prefix}.running_mean"), &[c])?;
        init.ones(&format!("{prefix}.running_var"), &[c])
    }

    pub fn new(varmap: &VarMap, prefix: &str) -> candle_core::Result<Self> {
        Ok(BatchNorm {
            weight: var(varmap, &format!("{prefix}.weight"))?
                .as_tensor()
                .clone(),
            bias: var(varmap, &format!("{prefix}.bias"))?.as_tensor().clone(),
            running_mean: var(varmap, &format!("{prefix}.running_mean"))?,
            running_var: var(varmap, &format!("{prefix}.running_var"))?,
        })
    }

    /// `x` `[N, ..., C]`. Training: batch statistics over `groups` equal groups of the N
    /// items (1: the whole batch), the running statistics updated from their mean; eval:
    /// the running statistics.
    pub fn forward(&self, x: &Tensor, train: bool, groups: usize) -> candle_core::Result<Tensor> {
        let shape = x.shape().clone();
        let c = x.dim(D::Minus1)?;
        if train && x.device().is_cpu() && x.dtype() == DType::F32 {
            let n = x.dim(0)?;
            if groups == 0 || n % groups != 0 {
                candle_core::bail!("batch norm: {n} items do not split into {groups} groups");
            }
            let stats = Arc::new(Mutex::new((vec![0f32; c], vec![0f32; c])));
            let op = BnTrain {
                groups,
                stats: stats.clone(),
            };
            let y = x
                .reshape(((), c))?
                .contiguous()?
                .apply_op3(&self.weight, &self.bias, op)?
                .reshape(&shape)?;
            let (bm, bv) = stats.lock().expect("stats").clone();
            let m = x.elem_count() / c / groups;
            let unbiased = m as f64 / (m as f64 - 1.0).max(1.0);
            let dev = x.device();
            let mix = |run: &Var, batch: Tensor| -> candle_core::Result<()> {
                run.set(&((run.as_tensor() * (1.0 - BN_MOMENTUM))? + (batch * BN_MOMENTUM)?)?)
            };
            mix(&self.running_mean, Tensor::from_vec(bm, c, dev)?)?;
            mix(
                &self.running_var,
                (Tensor::from_vec(bv, c, dev)? * unbiased)?,
            )?;
            return Ok(y);
        }
        let y = if train {
            let n = x.dim(0)?;
            if groups == 0 || n % groups != 0 {
                candle_core::bail!("batch norm: {n} items do not split into {groups} groups");
            }
            let g = x.reshape((groups, (), c))?;
            let m = g.dim(1)?;
            let mean = g.mean_keepdim(1)?;
            let centred = g.broadcast_sub(&mean)?;
            let var = centred.sqr()?.mean_keepdim(1)?;
            let y = centred.broadcast_div(&(&var + BN_EPS)?.sqrt()?)?;
            let unbiased = m as f64 / (m as f64 - 1.0).max(1.0);
            let (bm, bv) = (
                mean.detach().mean(0)?.flatten_all()?,
                (var.detach().mean(0)?.flatten_all()? * unbiased)?,
            );
            let mix = |run: &Var, batch: &Tensor| -> candle_core::Result<()> {
                run.set(&((run.as_tensor() * (1.0 - BN_MOMENTUM))? + (batch * BN_MOMENTUM)?)?)
            };
            mix(&self.running_mean, &bm)?;
            mix(&self.running_var, &bv)?;
            y.reshape(&shape)?
        } else {
            let inv = (self.running_var.as_tensor() + BN_EPS)?.sqrt()?.recip()?;
            x.broadcast_sub(self.running_mean.as_tensor())?
                .broadcast_mul(&inv)?
        };
        y.broadcast_mul(&self.weight)?.broadcast_add(&self.bias)
    }
}

/// BatchNorm's training pass on `[M, C]` rows as one CPU kernel (candle's reductions
/// over rows and the broadcasts' backward were most of a ResNet step): per group of
/// M / `groups` rows, y = (x − μ) / √(σ² + ε) · γ + β; `stats` receives the groups' mean
/// μ and (biased) σ² averaged over the groups. The backward pass is the usual closed form
/// dx = γ / σ · (dy − mean(dy) − x̂ · mean(dy · x̂)), dγ = Σ dy · x̂, dβ = Σ dy.
struct BnTrain {
    groups: usize,
    stats: Arc<Mutex<(Vec<f32>, Vec<f32>)>>,
}

/// Per group and channel: the mean and 1 / √(σ² + ε) of `x` `[M, C]`.
pub(crate) fn group_moments(x: &[f32], c: usize, groups: usize) -> Vec<(Vec<f32>, Vec<f32>)> {
    let m = x.len() / c / groups;
    x.chunks_exact(m * c)
        .map(|g| {
            let (mut s, mut s2) = (vec![0f64; c], vec![0f64; c]);
            for row in g.chunks_exact(c) {
                for ((a, b), &v) in s.iter_mut().zip(s2.iter_mut()).zip(row) {
                    *a += v as f64;
                    *b += (v as f64) * (v as f64);
                }
            }
            let mean: Vec<f32> = s.iter().map(|v| (v / m as f64) as f32).collect();
            let inv: Vec<f32> = s
                .iter()
                .zip(&s2)
                .map(|(a, b)| {
                    let mu = a / m as f64;
                    let var = (b / m as f64 - mu * mu).max(0.0);
                    (1.0 / (var + BN_EPS).sqrt()) as f32
                })
                .collect();
            (mean, inv)
        })
        .collect()
}

impl CustomOp3 for BnTrain {
    fn name(&self) -> &'static str {
        "batch-norm-train"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = super::conv::contiguous_f32(s1, l1, self.name())?;
        let gamma = super::conv::contiguous_f32(s2, l2, self.name())?;
        let beta = super::conv::contiguous_f32(s3, l3, self.name())?;
        let (rows, c) = l1.shape().dims2()?;
        let moments = group_moments(x, c, self.groups);
        let m = rows / self.groups;
        let mut y = vec![0f32; x.len()];
        for (gi, (mean, inv)) in moments.iter().enumerate() {
            let span = gi * m * c..(gi + 1) * m * c;
            for (yr, xr) in y[span.clone()]
                .chunks_exact_mut(c)
                .zip(x[span].chunks_exact(c))
            {
                for j in 0..c {
                    yr[j] = (xr[j] - mean[j]) * inv[j] * gamma[j] + beta[j];
                }
            }
        }
        let mut st = self.stats.lock().expect("stats");
        let g = self.groups as f32;
        st.0 = (0..c)
            .map(|j| moments.iter().map(|(mu, _)| mu[j]).sum::<f32>() / g)
            .collect();
        st.1 = (0..c)
            .map(|j| {
                let v: f64 = moments
                    .iter()
                    .map(|(_, inv)| 1.0 / (inv[j] as f64).powi(2) - BN_EPS)
                    .sum();
                (v / g as f64).max(0.0) as f32
            })
            .collect();
        Ok((CpuStorage::F32(y), Shape::from((rows, c))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        _beta: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (rows, c) = x.dims2()?;
        let xs = x.flatten_all()?.to_vec1::<f32>()?;
        let dy = grad.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
        let g = gamma.to_vec1::<f32>()?;
        let moments = group_moments(&xs, c, self.groups);
        let m = rows / self.groups;
        let mut dx = vec![0f32; xs.len()];
        let (mut dgamma, mut dbeta) = (vec![0f64; c], vec![0f64; c]);
        for (gi, (mean, inv)) in moments.iter().enumerate() {
            let span = gi * m * c..(gi + 1) * m * c;
            let (mut sdy, mut sdyx) = (vec![0f64; c], vec![0f64; c]);
            for (xr, dr) in xs[span.clone()]
                .chunks_exact(c)
                .zip(dy[span.clone()].chunks_exact(c))
            {
                for j in 0..c {
                    let xh = (xr[j] - mean[j]) * inv[j];
                    sdy[j] += dr[j] as f64;
                    sdyx[j] += (dr[j] * xh) as f64;
                }
            }
            for j in 0..c {
                dgamma[j] += sdyx[j];
                dbeta[j] += sdy[j];
            }
            let (mdy, mdyx): (Vec<f32>, Vec<f32>) = (
                sdy.iter().map(|v| (v / m as f64) as f32).collect(),
                sdyx.iter().map(|v| (v / m as f64) as f32).collect(),
            );
            for ((dxr, xr), dr) in dx[span.clone()]
                .chunks_exact_mut(c)
                .zip(xs[span.clone()].chunks_exact(c))
                .zip(dy[span].chunks_exact(c))
            {
                for j in 0..c {
                    let xh = (xr[j] - mean[j]) * inv[j];
                    dxr[j] = g[j] * inv[j] * (dr[j] - mdy[j] - xh * mdyx[j]);
                }
            }
        }
        let dev = x.device();
        let to = |v: Vec<f64>| {
            Tensor::from_vec(v.into_iter().map(|a| a as f32).collect::<Vec<_>>(), c, dev)
        };
        Ok((
            Some(Tensor::from_vec(dx, (rows, c), dev)?),
            Some(to(dgamma)?),
            Some(to(dbeta)?),
        ))
    }
}

/// A 3×3 (or 1×1) convolution without bias, zero-padded to keep the size at stride 1.
struct Conv {
    weight: Tensor,
    zero_bias: Tensor,
    stride: usize,
    pad: usize,
}

impl Conv {
    fn init(
        init: &mut Init,
        name: &str,
        c_in: usize,
        c_out: usize,
        k: usize,
    ) -> candle_core::Result<()> {
        // Kaiming normal, fan-out, for ReLU (torchvision's ResNet), as an orthogonal
        // matrix of the same gain: the repository's seeded initialiser.
        init.orthogonal(name, &[c_out, c_in, k, k], 2f64.sqrt())
    }

    fn new(varmap: &VarMap, name: &str, stride: usize) -> candle_core::Result<Conv> {
        let weight = var(varmap, name)?.as_tensor().clone();
        let (co, _, k, _) = weight.dims4()?;
        Ok(Conv {
            zero_bias: Tensor::zeros(co, DType::F32, weight.device())?,
            weight,
            stride,
            pad: k / 2,
        })
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let x = if self.pad > 0 {
            x.pad_with_zeros(1, self.pad, self.pad)?
                .pad_with_zeros(2, self.pad, self.pad)?
        } else {
            x.clone()
        };
        conv2d_nhwc(&x, &self.weight, &self.zero_bias, self.stride, 1.0)
    }
}

struct Block {
    conv1: Conv,
    bn1: BatchNorm,
    conv2: Conv,
    bn2: BatchNorm,
    shortcut: Option<(Conv, BatchNorm)>,
}

/// The network of an `EncoderSpec::ResNet`.
pub struct ResNet {
    stem: (Conv, BatchNorm),
    blocks: Vec<Block>,
    out_dim: usize,
}

/// `(c_in, c_out, stride)` of every block, stage by stage.
pub(crate) fn layout(widths: &[usize], blocks: &[usize]) -> Vec<(usize, usize, usize)> {
    let mut out = Vec::new();
    let mut c = widths[0];
    for (s, (&w, &n)) in widths.iter().zip(blocks).enumerate() {
        for b in 0..n {
            let stride = if s > 0 && b == 0 { 2 } else { 1 };
            out.push((c, w, stride));
            c = w;
        }
    }
    out
}

impl ResNet {
    /// Writes fresh parameters under `prefix` for `channels`-channel images.
    pub fn init(
        channels: usize,
        widths: &[usize],
        blocks: &[usize],
        init: &mut Init,
        prefix: &str,
    ) -> candle_core::Result<()> {
        Conv::init(
            init,
            &format!("{prefix}.stem.conv.weight"),
            channels,
            widths[0],
            3,
        )?;
        BatchNorm::init(init, &format!("{prefix}.stem.bn"), widths[0])?;
        for (i, (ci, co, stride)) in layout(widths, blocks).into_iter().enumerate() {
            let p = format!("{prefix}.block.{i}");
            Conv::init(init, &format!("{p}.conv1.weight"), ci, co, 3)?;
            BatchNorm::init(init, &format!("{p}.bn1"), co)?;
            Conv::init(init, &format!("{p}.conv2.weight"), co, co, 3)?;
            BatchNorm::init(init, &format!("{p}.bn2"), co)?;
            if ci != co || stride != 1 {
                Conv::init(init, &format!("{p}.shortcut.conv.weight"), ci, co, 1)?;
                BatchNorm::init(init, &format!("{p}.shortcut.bn"), co)?;
            }
        }
        Ok(())
    }

    /// The network over the parameters under `prefix` in `varmap` (made by [`ResNet::init`]
    /// or loaded).
    pub fn new(
        widths: &[usize],
        blocks: &[usize],
        varmap: &VarMap,
        prefix: &str,
    ) -> candle_core::Result<Self> {
        let stem = (
            Conv::new(varmap, &format!("{prefix}.stem.conv.weight"), 1)?,
            BatchNorm::new(varmap, &format!("{prefix}.stem.bn"))?,
        );
        let mut bs = Vec::new();
        for (i, (ci, co, stride)) in layout(widths, blocks).into_iter().enumerate() {
            let p = format!("{prefix}.block.{i}");
            bs.push(Block {
                conv1: Conv::new(varmap, &format!("{p}.conv1.weight"), stride)?,
                bn1: BatchNorm::new(varmap, &format!("{p}.bn1"))?,
                conv2: Conv::new(varmap, &format!("{p}.conv2.weight"), 1)?,
                bn2: BatchNorm::new(varmap, &format!("{p}.bn2"))?,
                shortcut: if ci != co || stride != 1 {
                    Some((
                        Conv::new(varmap, &format!("{p}.shortcut.conv.weight"), stride)?,
                        BatchNorm::new(varmap, &format!("{p}.shortcut.bn"))?,
                    ))
                } else {
                    None
                },
            });
        }
        Ok(ResNet {
            stem,
            blocks: bs,
            out_dim: *widths.last().expect("validated non-empty"),
        })
    }

    pub fn out_dim(&self) -> usize {
        self.out_dim
    }

    /// `[N, H, W, C]` → `[N, D]`; `train` picks batch or running statistics, `groups`
    /// the BatchNorm groups in training.
    pub fn forward(&self, x: &Tensor, train: bool, groups: usize) -> candle_core::Result<Tensor> {
        let bn = |b: &BatchNorm, h: &Tensor| b.forward(h, train, groups);
        let mut h = bn(&self.stem.1, &self.stem.0.forward(x)?)?.relu()?;
        for b in &self.blocks {
            let y = bn(&b.bn1, &b.conv1.forward(&h)?)?.relu()?;
            let y = bn(&b.bn2, &b.conv2.forward(&y)?)?;
            let skip = match &b.shortcut {
                Some((c, n)) => bn(n, &c.forward(&h)?)?,
                None => h,
            };
            h = (y + skip)?.relu()?;
        }
        h.flatten(1, 2)?.mean(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn batch_norm_normalises_in_training_and_tracks_running_statistics() {
        let dev = Device::Cpu;
        let mut init = Init::new(0, &dev);
        BatchNorm::init(&mut init, "bn", 2).unwrap();
        let bn = BatchNorm::new(&init.varmap, "bn").unwrap();
        // 4 items of 2 channels: channel 0 is 1, 2, 3, 4; channel 1 is 10, 10, 10, 14.
        let x = Tensor::new(&[[1f32, 10.], [2., 10.], [3., 10.], [4., 14.]], &dev).unwrap();
        let y = bn.forward(&x, true, 1).unwrap().to_vec2::<f32>().unwrap();
        let (m0, v0) = (2.5f64, 1.25f64);
        for (i, row) in y.iter().enumerate() {
            let want = ((i + 1) as f64 - m0) / (v0 + BN_EPS).sqrt();
            assert!((row[0] as f64 - want).abs() < 1e-5);
        }
        let rm = bn.running_mean.as_tensor().to_vec1::<f32>().unwrap();
        let rv = bn.running_var.as_tensor().to_vec1::<f32>().unwrap();
        assert!((rm[0] - 0.25).abs() < 1e-6 && (rm[1] - 1.1).abs() < 1e-6);
        // Unbiased batch variance of channel 0: 5/3.
        assert!((rv[0] as f64 - (0.9 + 0.1 * 5.0 / 3.0)).abs() < 1e-6);
        // Eval mode uses the running statistics.
        let e = bn.forward(&x, false, 1).unwrap().to_vec2::<f32>().unwrap();
        assert!((e[0][0] as f64 - (1.0 - 0.25) / (rv[0] as f64 + BN_EPS).sqrt()).abs() < 1e-5);
        // Two groups: each pair normalised on its own (channel 0 of items 0, 1 → ∓1).
        let g = bn.forward(&x, true, 2).unwrap().to_vec2::<f32>().unwrap();
        assert!((g[0][0] + 1.0).abs() < 1e-3 && (g[3][0] - 1.0).abs() < 1e-3);
        assert!(bn.forward(&x, true, 3).is_err());
    }

    /// The fused CPU kernel against the same BatchNorm written in candle's tensor ops
    /// (which candle differentiates), in value and gradients; its running statistics
    /// against their definition.
    #[test]
    fn fused_batch_norm_matches_tensor_ops() {
        let dev = Device::Cpu;
        let x = Var::randn(0.5f32, 2f32, (8, 3, 2, 5), &dev).unwrap();
        let gamma = Var::randn(1f32, 0.3f32, 5, &dev).unwrap();
        let beta = Var::randn(0f32, 0.3f32, 5, &dev).unwrap();
        let up = Tensor::randn(0f32, 1f32, (8, 3, 2, 5), &dev).unwrap();
        for groups in [1, 2, 4] {
            let mk = || BatchNorm {
                weight: gamma.as_tensor().clone(),
                bias: beta.as_tensor().clone(),
                running_mean: Var::zeros(5, DType::F32, &dev).unwrap(),
                running_var: Var::ones(5, DType::F32, &dev).unwrap(),
            };
            let fused = mk();
            let y1 = fused.forward(x.as_tensor(), true, groups).unwrap();
            // The reference: the tensor-op path (taken for non-CPU devices).
            let g = x.as_tensor().reshape((groups, (), 5)).unwrap();
            let mean = g.mean_keepdim(1).unwrap();
            let cen = g.broadcast_sub(&mean).unwrap();
            let var = cen.sqr().unwrap().mean_keepdim(1).unwrap();
            let y2 = cen
                .broadcast_div(&(&var + BN_EPS).unwrap().sqrt().unwrap())
                .unwrap()
                .reshape((8, 3, 2, 5))
                .unwrap()
                .broadcast_mul(gamma.as_tensor())
                .unwrap()
                .broadcast_add(beta.as_tensor())
                .unwrap();
            let diff = |a: &Tensor, b: &Tensor| {
                (a - b)
                    .unwrap()
                    .abs()
                    .unwrap()
                    .max_all()
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap()
            };
            assert!(diff(&y1, &y2) < 1e-4);
            let g1 = (&y1 * &up).unwrap().sum_all().unwrap().backward().unwrap();
            let g2 = (&y2 * &up).unwrap().sum_all().unwrap().backward().unwrap();
            for v in [x.as_tensor(), gamma.as_tensor(), beta.as_tensor()] {
                let e = diff(g1.get(v).unwrap(), g2.get(v).unwrap());
                assert!(e < 1e-3, "groups {groups}: gradient differs by {e}");
            }
            // Running statistics: 0.1 × the groups' mean statistics (unbiased variance).
            let m = (8 / groups * 3 * 2) as f64;
            let want_mean = (mean.mean(0).unwrap().flatten_all().unwrap() * 0.1).unwrap();
            let want_var = ((var.mean(0).unwrap().flatten_all().unwrap() * (0.1 * m / (m - 1.0)))
                .unwrap()
                + 0.9)
                .unwrap();
            assert!(diff(fused.running_mean.as_tensor(), &want_mean) < 1e-5);
            assert!(diff(fused.running_var.as_tensor(), &want_var) < 1e-4);
        }
    }

    #[test]
    fn resnet_shapes_and_gradients() {
        let dev = Device::Cpu;
        let mut init = Init::new(1, &dev);
        ResNet::init(1, &[8, 16], &[1, 1], &mut init, "encoder").unwrap();
        let net = ResNet::new(&[8, 16], &[1, 1], &init.varmap, "encoder").unwrap();
        let x = Tensor::rand(0f32, 1f32, (4, 12, 12, 1), &dev).unwrap();
        let h = net.forward(&x, true, 1).unwrap();
        assert_eq!(h.dims(), &[4, 16]);
        let grads = h.sqr().unwrap().sum_all().unwrap().backward().unwrap();
        let w = init.varmap.data().lock().unwrap()["encoder.block.1.shortcut.conv.weight"].clone();
        assert!(grads.get(w.as_tensor()).is_some());
        let rm = &init.varmap.data().lock().unwrap()["encoder.stem.bn.running_mean"].clone();
        assert!(
            grads.get(rm.as_tensor()).is_none(),
            "running statistics take no gradient"
        );
        assert_eq!(net.forward(&x, false, 1).unwrap().dims(), &[4, 16]);
    }
}
