//! The lean path of the view trainers' ResNet ([`crate::nn::resnet`]): the same function
//! (the CIFAR-style stem, basic blocks with BatchNorm and projection shortcuts, global
//! average pooling) on channels-last host slices, with its backward written out.
//!
//! candle's autograd spent most of a SimCLR step outside the products: an allocation,
//! a zeroing and a thread barrier per op, broadcasts for every BatchNorm and residual,
//! and im2col buffers of hundreds of megabytes for 512 views. Here every convolution is
//! im2col and one GEMM per chunk of images ([`COLS_PER_CHUNK`], so the columns stay in
//! the cache; the backward builds them again from the kept inputs), BatchNorm is the
//! closed form of [`crate::nn::resnet`]'s fused kernel, and the buffers live as long as
//! the network. The parameters stay in candle's [`VarMap`] (the optimiser, checkpoints
//! and exported encoders see no difference): [`LeanResNet::forward`] reads them in
//! place and [`LeanResNet::backward`] puts their gradients into candle's [`GradStore`]
//! next to the head's. `tests/lean.rs` checks outputs, running statistics and every
//! gradient against candle's autograd.

use anyhow::{bail, Context, Result};
use candle_core::backprop::GradStore;
use candle_core::{Device, Tensor, Var};
use candle_nn::VarMap;

use super::conv::{from_product_layout, to_product_layout};
use rayon::prelude::*;

use super::resize;
use crate::nn::conv::{col2im, im2col};
use crate::nn::gemm::{matmul, Op};
use crate::nn::resnet::{layout, BN_EPS, BN_MOMENTUM};
use rlcpc_agents::optim::with_host_slice;

/// Floats of im2col columns per chunk of images (1 MiB).
const COLS_PER_CHUNK: usize = 1 << 18;

/// Which statistics BatchNorm normalises with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BnMode {
    /// The batch's, in this many equal groups of images (MoCo's shuffled BatchNorm);
    /// the running statistics are updated.
    Train { groups: usize },
    /// The running statistics.
    Eval,
}

fn var(varmap: &VarMap, name: &str) -> Result<Var> {
    Ok(crate::nn::resnet::var(varmap, name)?)
}

/// `f` on the values of `v` (in place for a CPU variable).
fn read<R>(v: &Var, scratch: &mut Vec<f32>, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    with_host_slice(v.as_tensor(), scratch, f).map_err(|e| anyhow::anyhow!("{e}"))
}

/// The buffers every convolution shares: one [`Part`] per thread, and a host copy.
#[derive(Default)]
struct Scratch {
    parts: Vec<Part>,
    host: Vec<f32>,
}

/// One thread's buffers: its images' padded copy and columns, their gradients, and its
/// share of a weight's gradient.
#[derive(Default)]
struct Part {
    padded: Vec<f32>,
    cols: Vec<f32>,
    d_cols: Vec<f32>,
    d_padded: Vec<f32>,
    d_w: Vec<f32>,
}

impl Scratch {
    /// Images per thread for `n` images in chunks of `step` (whole chunks, spread over
    /// rayon's threads), with a [`Part`] for each thread.
    fn split(&mut self, n: usize, step: usize) -> usize {
        let chunks = n.div_ceil(step);
        let threads = rayon::current_num_threads().clamp(1, chunks.max(1));
        if self.parts.len() < threads {
            self.parts.resize_with(threads, Part::default);
        }
        chunks.div_ceil(threads) * step
    }
}

/// Where a convolution's backward puts its input's gradient.
enum Dx<'a> {
    None,
    Set(&'a mut [f32]),
    Add(&'a mut [f32]),
}

/// A square convolution without bias, zero-padded by `k / 2`.
struct Conv {
    w: Var,
    c_in: usize,
    c_out: usize,
    k: usize,
    stride: usize,
    /// Input and output height and width.
    inp: (usize, usize),
    out: (usize, usize),
    /// The weight `[C_out, K·K·C_in]` in the columns' (kh, kw, c) order, and its gradient.
    w_mat: Vec<f32>,
    d_w: Vec<f32>,
}

impl Conv {
    fn new(varmap: &VarMap, name: &str, stride: usize, inp: (usize, usize)) -> Result<Conv> {
        let w = var(varmap, name)?;
        let (c_out, c_in, k, _) = w.as_tensor().dims4()?;
        let pad = k / 2;
        let size = |x: usize| (x + 2 * pad - k) / stride + 1;
        Ok(Conv {
            w,
            c_in,
            c_out,
            k,
            stride,
            inp,
            out: (size(inp.0), size(inp.1)),
            w_mat: Vec::new(),
            d_w: Vec::new(),
        })
    }

    fn pad(&self) -> usize {
        self.k / 2
    }

    fn kk(&self) -> usize {
        self.k * self.k * self.c_in
    }

    fn in_len(&self) -> usize {
        self.inp.0 * self.inp.1 * self.c_in
    }

    fn out_rows(&self) -> usize {
        self.out.0 * self.out.1
    }

    /// Images per chunk: as many as keep the columns within [`COLS_PER_CHUNK`].
    fn chunk(&self) -> usize {
        (COLS_PER_CHUNK / (self.out_rows() * self.kk())).max(1)
    }

    fn load(&mut self, s: &mut Scratch) -> Result<()> {
        let dims = (self.c_out, self.c_in, self.k);
        let w_mat = &mut self.w_mat;
        read(&self.w, &mut s.host, |w| to_product_layout(w, dims, w_mat))
    }

    /// The columns of the `m` images `x` (zero-padded first) into `s.cols`.
    fn columns(&self, x: &[f32], m: usize, s: &mut Part) {
        let (h, w, c, p) = (self.inp.0, self.inp.1, self.c_in, self.pad());
        if p == 0 {
            im2col(
                x,
                (m, h, w, c),
                (self.k, self.k),
                self.stride,
                1.0,
                &mut s.cols,
            );
            return;
        }
        let (ph, pw) = (h + 2 * p, w + 2 * p);
        resize(&mut s.padded, m * ph * pw * c);
        for (img, dst) in x
            .chunks_exact(h * w * c)
            .zip(s.padded.chunks_exact_mut(ph * pw * c))
        {
            // The interior is the image; only the border is zeroed.
            dst[..p * pw * c].fill(0.0);
            dst[(p + h) * pw * c..].fill(0.0);
            for (y, row) in img.chunks_exact(w * c).enumerate() {
                let at = ((y + p) * pw + p) * c;
                dst[at - p * c..at].fill(0.0);
                dst[at..at + w * c].copy_from_slice(row);
                dst[at + w * c..at + (w + p) * c].fill(0.0);
            }
        }
        im2col(
            &s.padded,
            (m, ph, pw, c),
            (self.k, self.k),
            self.stride,
            1.0,
            &mut s.cols,
        );
    }

    /// `y` `[n, OH, OW, C_out]` = the convolution of `x` `[n, H, W, C_in]`, the images
    /// shared among the threads.
    fn forward(&self, x: &[f32], n: usize, y: &mut Vec<f32>, s: &mut Scratch) {
        let (len, out) = (self.in_len(), self.out_rows() * self.c_out);
        resize(y, n * out);
        let per = s.split(n, self.chunk());
        x[..n * len]
            .par_chunks(per * len)
            .zip(y.par_chunks_mut(per * out))
            .zip(s.parts.par_iter_mut())
            .for_each(|((x, y), part)| self.forward_part(x, y, part));
    }

    /// The forward of one thread's images, a chunk at a time.
    fn forward_part(&self, x: &[f32], y: &mut [f32], s: &mut Part) {
        let (rows, kk, co, len) = (self.out_rows(), self.kk(), self.c_out, self.in_len());
        let step = self.chunk();
        for (xc, yc) in x.chunks(step * len).zip(y.chunks_mut(step * rows * co)) {
            let m = xc.len() / len;
            self.columns(xc, m, s);
            matmul(
                yc,
                &s.cols,
                Op::N,
                &self.w_mat,
                Op::T,
                (m * rows, kk, co),
                false,
            );
        }
    }

    /// d W from the input `x` and `dy`; with `dx`, the input's gradient is written into
    /// it (`Dx::Set`) or added to it (`Dx::Add`). The threads take shares of the images;
    /// their shares of d W are summed in order.
    fn backward(&mut self, x: &[f32], dy: &[f32], n: usize, dx: Dx, s: &mut Scratch) {
        let (len, out) = (self.in_len(), self.out_rows() * self.c_out);
        let per = s.split(n, self.chunk());
        let (x, dy) = (&x[..n * len], &dy[..n * out]);
        let this = &*self;
        let parts = x.par_chunks(per * len).zip(dy.par_chunks(per * out));
        let add = matches!(dx, Dx::Add(_));
        match dx {
            Dx::Set(dx) | Dx::Add(dx) => parts
                .zip(dx[..n * len].par_chunks_mut(per * len))
                .zip(s.parts.par_iter_mut())
                .for_each(|(((x, dy), dx), part)| this.backward_part(x, dy, Some((dx, add)), part)),
            Dx::None => parts
                .zip(s.parts.par_iter_mut())
                .for_each(|((x, dy), part)| this.backward_part(x, dy, None, part)),
        }
        let used = n.div_ceil(per);
        let size = self.c_out * self.kk();
        resize(&mut self.d_w, size);
        self.d_w.copy_from_slice(&s.parts[0].d_w);
        for part in &s.parts[1..used] {
            for (a, b) in self.d_w.iter_mut().zip(&part.d_w) {
                *a += b;
            }
        }
    }

    /// The backward of one thread's images: its share of d W into `s.d_w`, and its
    /// images' gradient added to `dx`.
    fn backward_part(
        &self,
        x: &[f32],
        dy: &[f32],
        mut dx: Option<(&mut [f32], bool)>,
        s: &mut Part,
    ) {
        let (rows, kk, co, len) = (self.out_rows(), self.kk(), self.c_out, self.in_len());
        let (h, w, c, p) = (self.inp.0, self.inp.1, self.c_in, self.pad());
        let (ph, pw) = (h + 2 * p, w + 2 * p);
        resize(&mut s.d_w, co * kk);
        let step = self.chunk();
        for (i, (xc, dyc)) in x
            .chunks(step * len)
            .zip(dy.chunks(step * rows * co))
            .enumerate()
        {
            let m = xc.len() / len;
            self.columns(xc, m, s);
            matmul(
                &mut s.d_w,
                dyc,
                Op::T,
                &s.cols,
                Op::N,
                (co, m * rows, kk),
                i > 0,
            );
            let Some((dx, add)) = dx.as_mut() else {
                continue;
            };
            resize(&mut s.d_cols, m * rows * kk);
            matmul(
                &mut s.d_cols,
                dyc,
                Op::N,
                &self.w_mat,
                Op::N,
                (m * rows, co, kk),
                false,
            );
            col2im(
                &s.d_cols,
                (m, ph, pw, c),
                (self.k, self.k),
                self.stride,
                1.0,
                &mut s.d_padded,
            );
            let dxc = &mut dx[i * step * len..(i * step + m) * len];
            for (img, src) in dxc
                .chunks_exact_mut(h * w * c)
                .zip(s.d_padded.chunks_exact(ph * pw * c))
            {
                for (y, row) in img.chunks_exact_mut(w * c).enumerate() {
                    let at = ((y + p) * pw + p) * c;
                    let src = &src[at..at + w * c];
                    if *add {
                        row.iter_mut().zip(src).for_each(|(a, b)| *a += b);
                    } else {
                        row.copy_from_slice(src);
                    }
                }
            }
        }
    }

    fn gradient(&self, grads: &mut GradStore) -> Result<()> {
        let mut g = vec![0f32; self.d_w.len()];
        from_product_layout(&self.d_w, (self.c_out, self.c_in, self.k), &mut g);
        let t = Tensor::from_vec(g, (self.c_out, self.c_in, self.k, self.k), &Device::Cpu)?;
        grads.insert(self.w.as_tensor(), t);
        Ok(())
    }
}

/// BatchNorm over the channels of `[rows, C]`.
struct Bn {
    gamma: Var,
    beta: Var,
    running_mean: Var,
    running_var: Var,
    c: usize,
    /// γ and β of the last forward.
    g: Vec<f32>,
    b: Vec<f32>,
    /// Per group, the mean and 1 / √(σ² + ε) the last forward normalised with.
    moments: Vec<(Vec<f32>, Vec<f32>)>,
    d_gamma: Vec<f32>,
    d_beta: Vec<f32>,
}

impl Bn {
    fn new(varmap: &VarMap, prefix: &str) -> Result<Bn> {
        let gamma = var(varmap, &format!("{prefix}.weight"))?;
        let c = gamma.as_tensor().elem_count();
        Ok(Bn {
            gamma,
            beta: var(varmap, &format!("{prefix}.bias"))?,
            running_mean: var(varmap, &format!("{prefix}.running_mean"))?,
            running_var: var(varmap, &format!("{prefix}.running_var"))?,
            c,
            g: Vec::new(),
            b: Vec::new(),
            moments: Vec::new(),
            d_gamma: vec![0.0; c],
            d_beta: vec![0.0; c],
        })
    }

    /// `y` = BatchNorm(`x`), with ReLU after when `relu`; in training, the running
    /// statistics move as [`crate::nn::resnet::BatchNorm`]'s do.
    fn forward(
        &mut self,
        x: &[f32],
        y: &mut Vec<f32>,
        mode: BnMode,
        relu: bool,
        s: &mut Scratch,
    ) -> Result<()> {
        let c = self.c;
        let g = &mut self.g;
        read(&self.gamma, &mut s.host, |v| {
            g.clear();
            g.extend_from_slice(v)
        })?;
        let b = &mut self.b;
        read(&self.beta, &mut s.host, |v| {
            b.clear();
            b.extend_from_slice(v)
        })?;
        match mode {
            BnMode::Train { groups } => {
                self.moments = moments(x, c, groups);
                self.update_running(x.len() / c / groups)?;
            }
            BnMode::Eval => {
                let mean = read(&self.running_mean, &mut s.host, |v| v.to_vec())?;
                let inv = read(&self.running_var, &mut s.host, |v| {
                    v.iter()
                        .map(|&r| (1.0 / (r as f64 + BN_EPS).sqrt()) as f32)
                        .collect()
                })?;
                self.moments = vec![(mean, inv)];
            }
        }
        resize(y, x.len());
        let per_group = x.len() / self.moments.len();
        for ((mean, inv), (ys, xs)) in self
            .moments
            .iter()
            .zip(y.chunks_exact_mut(per_group).zip(x.chunks_exact(per_group)))
        {
            // y = x · a + b per channel: one multiply-add a value.
            let a: Vec<f32> = (0..c).map(|j| inv[j] * self.g[j]).collect();
            let b: Vec<f32> = (0..c).map(|j| self.b[j] - mean[j] * a[j]).collect();
            let per = rows_per_task(xs.len() / c) * c;
            ys.par_chunks_mut(per)
                .zip(xs.par_chunks(per))
                .for_each(|(ys, xs)| {
                    for (yr, xr) in ys.chunks_exact_mut(c).zip(xs.chunks_exact(c)) {
                        for (((y, &x), &a), &b) in yr.iter_mut().zip(xr).zip(&a).zip(&b) {
                            *y = x * a + b;
                        }
                        if relu {
                            yr.iter_mut().for_each(|v| *v = v.max(0.0));
                        }
                    }
                });
        }
        Ok(())
    }

    /// running ← 0.9 running + 0.1 batch (the groups' mean statistics, the variance
    /// unbiased over the `m` rows of a group).
    fn update_running(&self, m: usize) -> Result<()> {
        let (c, groups) = (self.c, self.moments.len());
        let unbiased = (m as f64 / (m as f64 - 1.0).max(1.0)) as f32;
        let mean: Vec<f32> = (0..c)
            .map(|j| self.moments.iter().map(|(mu, _)| mu[j]).sum::<f32>() / groups as f32)
            .collect();
        let var: Vec<f32> = (0..c)
            .map(|j| {
                let v: f64 = self
                    .moments
                    .iter()
                    .map(|(_, inv)| 1.0 / (inv[j] as f64).powi(2) - BN_EPS)
                    .sum();
                (v / groups as f64).max(0.0) as f32 * unbiased
            })
            .collect();
        let (keep, take) = ((1.0 - BN_MOMENTUM) as f32, BN_MOMENTUM as f32);
        for (run, batch) in [(&self.running_mean, mean), (&self.running_var, var)] {
            let old = run.as_tensor().to_vec1::<f32>()?;
            let new: Vec<f32> = old
                .iter()
                .zip(&batch)
                .map(|(o, b)| o * keep + b * take)
                .collect();
            run.set(&Tensor::from_vec(new, c, &Device::Cpu)?)?;
        }
        Ok(())
    }

    /// `dx` from `dy` and the forward's input `x` (training mode); d γ and d β kept.
    /// With x̂ = (x − μ)·r (r = 1 / √(σ² + ε)) and means over a group's m rows,
    /// dx = γ r (dy − mean(dy) − x̂ mean(dy x̂)), d γ = Σ dy x̂, d β = Σ dy; since
    /// Σ dy x̂ = r (Σ dy x − μ Σ dy), one pass of sums and one multiply-add pass suffice.
    fn backward(&mut self, x: &[f32], dy: &[f32], dx: &mut Vec<f32>) {
        let c = self.c;
        let per_group = x.len() / self.moments.len();
        let m = (per_group / c) as f64;
        resize(dx, x.len());
        self.d_gamma.fill(0.0);
        self.d_beta.fill(0.0);
        for ((mean, inv), ((xs, dys), dxs)) in self.moments.iter().zip(
            x.chunks_exact(per_group)
                .zip(dy.chunks_exact(per_group))
                .zip(dx.chunks_exact_mut(per_group)),
        ) {
            let (sdy, sdyx) = channel_sums(dys, xs, c);
            let (mut a, mut b, mut k) = (vec![0f32; c], vec![0f32; c], vec![0f32; c]);
            for j in 0..c {
                let (mu, r, g) = (mean[j] as f64, inv[j] as f64, self.g[j] as f64);
                let dyxh = r * (sdyx[j] - mu * sdy[j]);
                self.d_gamma[j] += dyxh as f32;
                self.d_beta[j] += sdy[j] as f32;
                let (mdy, mdyxh) = (sdy[j] / m, dyxh / m);
                // dx = g r dy − g r mdy − g r² mdyxh (x − μ) = a dy + b x + k.
                a[j] = (g * r) as f32;
                b[j] = (-g * r * r * mdyxh) as f32;
                k[j] = (-g * r * mdy + g * r * r * mdyxh * mu) as f32;
            }
            let per = rows_per_task(xs.len() / c) * c;
            dxs.par_chunks_mut(per)
                .zip(xs.par_chunks(per).zip(dys.par_chunks(per)))
                .for_each(|(dxs, (xs, dys))| {
                    for ((dxr, xr), dr) in dxs
                        .chunks_exact_mut(c)
                        .zip(xs.chunks_exact(c))
                        .zip(dys.chunks_exact(c))
                    {
                        for j in 0..c {
                            dxr[j] = a[j] * dr[j] + b[j] * xr[j] + k[j];
                        }
                    }
                });
        }
    }

    fn gradient(&self, grads: &mut GradStore) -> Result<()> {
        for (v, g) in [(&self.gamma, &self.d_gamma), (&self.beta, &self.d_beta)] {
            grads.insert(
                v.as_tensor(),
                Tensor::from_vec(g.clone(), self.c, &Device::Cpu)?,
            );
        }
        Ok(())
    }
}

/// One basic block and the activations its backward needs.
struct Block {
    conv1: Conv,
    bn1: Bn,
    conv2: Conv,
    bn2: Bn,
    shortcut: Option<(Conv, Bn)>,
    /// conv1's output, ReLU(bn1(·)) of it, conv2's output, the shortcut convolution's
    /// output, the block's output.
    a1: Vec<f32>,
    r1: Vec<f32>,
    a2: Vec<f32>,
    sc: Vec<f32>,
    out: Vec<f32>,
}

/// The ResNet of an `EncoderSpec::Resnet` on the lean path.
pub struct LeanResNet {
    stem: (Conv, Bn),
    blocks: Vec<Block>,
    /// Input `[H, W, C]`.
    hwc: (usize, usize, usize),
    out_dim: usize,
    // The last forward: its batch, mode, input, the stem's conv output and output.
    n: usize,
    mode: BnMode,
    x: Vec<f32>,
    a0: Vec<f32>,
    out0: Vec<f32>,
    h: Vec<f32>,
    // Backward buffers: the gradient of the current activation, and two spares.
    d: Vec<f32>,
    d_a: Vec<f32>,
    d_in: Vec<f32>,
    s: Scratch,
}

impl LeanResNet {
    /// The network over the parameters under `prefix` in `varmap` (as
    /// [`crate::nn::resnet::ResNet::new`]), for `[H, W, C]` images.
    pub fn new(
        widths: &[usize],
        blocks: &[usize],
        (h, w, c): (usize, usize, usize),
        varmap: &VarMap,
        prefix: &str,
    ) -> Result<Self> {
        let stem = Conv::new(varmap, &format!("{prefix}.stem.conv.weight"), 1, (h, w))?;
        if stem.c_in != c {
            bail!(
                "{prefix}: the stem takes {}-channel images, not {c}-channel ones",
                stem.c_in
            );
        }
        let mut size = stem.out;
        let stem = (stem, Bn::new(varmap, &format!("{prefix}.stem.bn"))?);
        let mut bs = Vec::new();
        for (i, (ci, co, stride)) in layout(widths, blocks).into_iter().enumerate() {
            let p = format!("{prefix}.block.{i}");
            let conv1 = Conv::new(varmap, &format!("{p}.conv1.weight"), stride, size)?;
            let next = conv1.out;
            bs.push(Block {
                conv1,
                bn1: Bn::new(varmap, &format!("{p}.bn1"))?,
                conv2: Conv::new(varmap, &format!("{p}.conv2.weight"), 1, next)?,
                bn2: Bn::new(varmap, &format!("{p}.bn2"))?,
                shortcut: if ci != co || stride != 1 {
                    Some((
                        Conv::new(varmap, &format!("{p}.shortcut.conv.weight"), stride, size)?,
                        Bn::new(varmap, &format!("{p}.shortcut.bn"))?,
                    ))
                } else {
                    None
                },
                a1: Vec::new(),
                r1: Vec::new(),
                a2: Vec::new(),
                sc: Vec::new(),
                out: Vec::new(),
            });
            size = next;
        }
        Ok(LeanResNet {
            stem,
            blocks: bs,
            hwc: (h, w, c),
            out_dim: *widths.last().context("a ResNet needs at least one stage")?,
            n: 0,
            mode: BnMode::Eval,
            x: Vec::new(),
            a0: Vec::new(),
            out0: Vec::new(),
            h: Vec::new(),
            d: Vec::new(),
            d_a: Vec::new(),
            d_in: Vec::new(),
            s: Scratch::default(),
        })
    }

    pub fn out_dim(&self) -> usize {
        self.out_dim
    }

    /// h `[n, D]` of the `n` images `x` `[n, H, W, C]` (in [0, 1]); the activations are
    /// kept for [`LeanResNet::backward`].
    pub fn forward(&mut self, x: &[f32], n: usize, mode: BnMode) -> Result<&[f32]> {
        let (h, w, c) = self.hwc;
        if n == 0 || x.len() != n * h * w * c {
            bail!("{} floats are not {n} images of {h}x{w}x{c}", x.len());
        }
        if let BnMode::Train { groups } = mode {
            if groups == 0 || !n.is_multiple_of(groups) {
                bail!("batch norm: {n} items do not split into {groups} groups");
            }
        }
        self.n = n;
        self.mode = mode;
        self.x.clear();
        self.x.extend_from_slice(x);
        let s = &mut self.s;
        let (conv, bn) = &mut self.stem;
        conv.load(s)?;
        conv.forward(&self.x, n, &mut self.a0, s);
        bn.forward(&self.a0, &mut self.out0, mode, true, s)?;
        for i in 0..self.blocks.len() {
            let (done, rest) = self.blocks.split_at_mut(i);
            let input = done.last().map_or(&self.out0, |b| &b.out);
            let b = &mut rest[0];
            b.conv1.load(s)?;
            b.conv1.forward(input, n, &mut b.a1, s);
            b.bn1.forward(&b.a1, &mut b.r1, mode, true, s)?;
            b.conv2.load(s)?;
            b.conv2.forward(&b.r1, n, &mut b.a2, s);
            b.bn2.forward(&b.a2, &mut b.out, mode, false, s)?;
            match &mut b.shortcut {
                Some((conv, bn)) => {
                    conv.load(s)?;
                    conv.forward(input, n, &mut b.sc, s);
                    bn.forward(&b.sc, &mut self.d_a, mode, false, s)?;
                    add_relu(&mut b.out, &self.d_a);
                }
                None => add_relu(&mut b.out, input),
            }
        }
        // Global average pooling.
        let last = self.blocks.last().map_or(&self.out0, |b| &b.out);
        let (d, per) = (self.out_dim, last.len() / n.max(1));
        let positions = (per / d) as f32;
        resize(&mut self.h, n * d);
        for (hr, img) in self
            .h
            .chunks_exact_mut(d)
            .zip(last.chunks_exact(per.max(1)))
        {
            hr.fill(0.0);
            for px in img.chunks_exact(d) {
                for (a, b) in hr.iter_mut().zip(px) {
                    *a += b;
                }
            }
            hr.iter_mut().for_each(|a| *a /= positions);
        }
        Ok(&self.h[..n * d])
    }

    /// The gradients of every parameter, from `d_h` (the gradient of the last training
    /// forward's h), into `grads`.
    pub fn backward(&mut self, d_h: &[f32], grads: &mut GradStore) -> Result<()> {
        let (n, d) = (self.n, self.out_dim);
        if !matches!(self.mode, BnMode::Train { .. }) {
            bail!("the lean ResNet's backward needs a training-mode forward");
        }
        if d_h.len() != n * d {
            bail!("a gradient of {} floats for h of [{n}, {d}]", d_h.len());
        }
        let s = &mut self.s;
        // Pooling: every position gets d h / positions.
        let last_len = self.blocks.last().map_or(self.out0.len(), |b| b.out.len());
        let positions = last_len / n / d;
        resize(&mut self.d, last_len);
        for (dr, g) in self
            .d
            .chunks_exact_mut(positions * d)
            .zip(d_h.chunks_exact(d))
        {
            for px in dr.chunks_exact_mut(d) {
                for (a, b) in px.iter_mut().zip(g) {
                    *a = b / positions as f32;
                }
            }
        }
        for i in (0..self.blocks.len()).rev() {
            let (done, rest) = self.blocks.split_at_mut(i);
            let input = done.last().map_or(&self.out0, |b| &b.out);
            let b = &mut rest[0];
            relu_back(&mut self.d, &b.out);
            // The input's gradient: the shortcut's (or the identity's) plus conv1's.
            resize(&mut self.d_in, input.len());
            match &mut b.shortcut {
                Some((conv, bn)) => {
                    bn.backward(&b.sc, &self.d, &mut self.d_a);
                    conv.backward(input, &self.d_a, n, Dx::Set(&mut self.d_in), s);
                    bn.gradient(grads)?;
                    conv.gradient(grads)?;
                }
                None => self.d_in.copy_from_slice(&self.d),
            }
            b.bn2.backward(&b.a2, &self.d, &mut self.d_a);
            resize(&mut self.d, b.r1.len());
            b.conv2
                .backward(&b.r1, &self.d_a, n, Dx::Set(&mut self.d), s);
            relu_back(&mut self.d, &b.r1);
            b.bn1.backward(&b.a1, &self.d, &mut self.d_a);
            b.conv1
                .backward(input, &self.d_a, n, Dx::Add(&mut self.d_in), s);
            for bn in [&b.bn1, &b.bn2] {
                bn.gradient(grads)?;
            }
            for conv in [&b.conv1, &b.conv2] {
                conv.gradient(grads)?;
            }
            std::mem::swap(&mut self.d, &mut self.d_in);
        }
        let (conv, bn) = &mut self.stem;
        relu_back(&mut self.d, &self.out0);
        bn.backward(&self.a0, &self.d, &mut self.d_a);
        conv.backward(&self.x, &self.d_a, n, Dx::None, s);
        bn.gradient(grads)?;
        conv.gradient(grads)
    }
}

/// Floats per parallel task of the element-wise passes.
const ELEMENTS_PER_TASK: usize = 1 << 16;

/// Rows per parallel task of a pass over `rows` rows: an equal share per thread, but
/// not fewer than 4,096 (smaller tasks cost more to hand out than they save).
fn rows_per_task(rows: usize) -> usize {
    rows.div_ceil(rayon::current_num_threads()).max(4096)
}

/// `y = ReLU(y + x)`.
fn add_relu(y: &mut [f32], x: &[f32]) {
    y.par_chunks_mut(ELEMENTS_PER_TASK)
        .zip(x.par_chunks(ELEMENTS_PER_TASK))
        .for_each(|(y, x)| {
            for (a, b) in y.iter_mut().zip(x) {
                *a = (*a + b).max(0.0);
            }
        });
}

/// ReLU's backward from its output: no gradient where it is 0.
fn relu_back(d: &mut [f32], y: &[f32]) {
    d.par_chunks_mut(ELEMENTS_PER_TASK)
        .zip(y.par_chunks(ELEMENTS_PER_TASK))
        .for_each(|(d, y)| {
            for (d, y) in d.iter_mut().zip(y) {
                if *y <= 0.0 {
                    *d = 0.0;
                }
            }
        });
}

/// Rows summed in f32 before they are added into the f64 totals: the inner loops run
/// over channels in f32 and vectorise, and no f32 sum grows long.
const SUM_BLOCK: usize = 64;

/// Per channel of `[rows, c]`: Σ a and Σ a·b (f64), the rows shared among the threads
/// and their sums added in order (the same result for any scheduling).
fn channel_sums(a: &[f32], b: &[f32], c: usize) -> (Vec<f64>, Vec<f64>) {
    let per = rows_per_task(a.len() / c) * c;
    let parts: Vec<(Vec<f64>, Vec<f64>)> = a
        .par_chunks(per)
        .zip(b.par_chunks(per))
        .map(|(a, b)| channel_sums_on(a, b, c))
        .collect();
    let (mut s1, mut s2) = (vec![0f64; c], vec![0f64; c]);
    for (p1, p2) in parts {
        s1.iter_mut().zip(p1).for_each(|(s, p)| *s += p);
        s2.iter_mut().zip(p2).for_each(|(s, p)| *s += p);
    }
    (s1, s2)
}

/// [`channel_sums`] on one thread.
fn channel_sums_on(a: &[f32], b: &[f32], c: usize) -> (Vec<f64>, Vec<f64>) {
    let (mut s1, mut s2) = (vec![0f64; c], vec![0f64; c]);
    let (mut p1, mut p2) = (vec![0f32; c], vec![0f32; c]);
    for (ab, bb) in a.chunks(SUM_BLOCK * c).zip(b.chunks(SUM_BLOCK * c)) {
        p1.fill(0.0);
        p2.fill(0.0);
        for (ar, br) in ab.chunks_exact(c).zip(bb.chunks_exact(c)) {
            for j in 0..c {
                p1[j] += ar[j];
                p2[j] += ar[j] * br[j];
            }
        }
        for j in 0..c {
            s1[j] += p1[j] as f64;
            s2[j] += p2[j] as f64;
        }
    }
    (s1, s2)
}

/// Per group of `[rows, c]` (`groups` equal parts): the mean and 1 / √(σ² + ε), as
/// [`crate::nn::resnet`]'s BatchNorm computes them.
fn moments(x: &[f32], c: usize, groups: usize) -> Vec<(Vec<f32>, Vec<f32>)> {
    let per_group = x.len() / groups;
    let m = (per_group / c) as f64;
    x.chunks_exact(per_group)
        .map(|g| {
            let (s, s2) = channel_sums(g, g, c);
            let mean = s.iter().map(|v| (v / m) as f32).collect();
            let inv = s
                .iter()
                .zip(&s2)
                .map(|(a, b)| {
                    let mu = a / m;
                    let var = (b / m - mu * mu).max(0.0);
                    (1.0 / (var + BN_EPS).sqrt()) as f32
                })
                .collect();
            (mean, inv)
        })
        .collect()
}
