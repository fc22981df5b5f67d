//! The lean path of CPC's audio encoder ([`crate::nn::audio`]): the strided 1-D
//! convolutions (with the optional per-step channel norm, ReLU after each) on
//! channels-last host slices, forward and backward.
//!
//! A layer's kernel is m frames of its stride s, so in the zero-padded channels-last
//! input each output's receptive field is k·C_in consecutive floats, and consecutive
//! outputs start s·C_in floats apart: the patch matrix is the padded input itself read
//! with a row stride, and the convolution one GEMM per window without im2col
//! ([`matmul_strided`]). The input's gradient is m GEMMs, one per frame of the kernel,
//! each adding into disjoint rows of the padded input's gradient. The windows of a
//! minibatch are shared among rayon's threads. The parameters stay in candle's var map
//! and the gradients go to candle's gradient store (as [`super::resnet::LeanResNet`]);
//! `tests/lean.rs` checks z and every gradient against candle's encoder.

use anyhow::{ensure, Result};
use candle_core::backprop::GradStore;
use candle_core::{Device, Tensor, Var};
use candle_nn::VarMap;
use rayon::prelude::*;

use super::resize;
use crate::nn::audio::{check_layers, AudioArch};
use crate::nn::gemm::matmul_strided;
use crate::nn::resnet::var;

/// ε of the channel norm and of the waveform standardisation (as candle's encoder).
const EPS: f64 = 1e-5;

/// One convolution with its norm, the weights laid out for the products, the
/// activations of the last forward and the gradients.
struct Layer {
    w: Var,
    b: Var,
    norm: Option<(Var, Var)>,
    c_in: usize,
    c_out: usize,
    k: usize,
    s: usize,
    /// `[C_out, k·C_in]`, each row in (frame position, channel) order.
    w_mat: Vec<f32>,
    bias: Vec<f32>,
    gain: Vec<f32>,
    shift: Vec<f32>,
    /// Input and output lengths of the last forward.
    len_in: usize,
    len_out: usize,
    /// `[N, T, C]`: the normalised output before gain and shift (with a norm), and the
    /// output after ReLU; one 1 / σ per row.
    xhat: Vec<f32>,
    out: Vec<f32>,
    rstd: Vec<f32>,
    d_w: Vec<f32>,
    d_b: Vec<f32>,
    d_gain: Vec<f32>,
    d_shift: Vec<f32>,
}

/// One thread's buffers.
#[derive(Default)]
struct Part {
    padded: Vec<f32>,
    d_padded: Vec<f32>,
    d_pre: Vec<f32>,
    d_w: Vec<f32>,
    d_b: Vec<f32>,
    d_gain: Vec<f32>,
    d_shift: Vec<f32>,
}

impl Layer {
    /// Zero frames before the input.
    fn left(&self) -> usize {
        (self.k - self.s) / 2
    }

    /// Padded length: whole frames covering every output's receptive field.
    fn padded(&self) -> usize {
        (self.len_out + self.k / self.s - 1) * self.s
    }

    fn load(&mut self) -> Result<()> {
        let host = |v: &Var| -> Result<Vec<f32>> { Ok(v.as_tensor().flatten_all()?.to_vec1()?) };
        let w = host(&self.w)?;
        let (ci, k) = (self.c_in, self.k);
        resize(&mut self.w_mat, w.len());
        for o in 0..self.c_out {
            for c in 0..ci {
                for j in 0..k {
                    self.w_mat[o * k * ci + j * ci + c] = w[(o * ci + c) * k + j];
                }
            }
        }
        self.bias = host(&self.b)?;
        if let Some((g, s)) = &self.norm {
            self.gain = host(g)?;
            self.shift = host(s)?;
        }
        Ok(())
    }

    /// The window `x` `[len_in, C_in]` zero-padded into `padded`.
    fn pad(&self, x: &[f32], padded: &mut Vec<f32>) {
        let ci = self.c_in;
        resize(padded, self.padded() * ci);
        let at = self.left() * ci;
        padded[..at].fill(0.0);
        padded[at..at + x.len()].copy_from_slice(x);
        padded[at + x.len()..].fill(0.0);
    }

    /// Output, normalised output and 1 / σ of the windows `x`, into the given slices.
    fn forward_part(
        &self,
        x: &[f32],
        out: &mut [f32],
        xhat: &mut [f32],
        rstd: &mut [f32],
        p: &mut Part,
    ) {
        let (ci, co, t) = (self.c_in, self.c_out, self.len_out);
        let kk = self.k * ci;
        for (i, (xw, yw)) in x
            .chunks_exact(self.len_in * ci)
            .zip(out.chunks_exact_mut(t * co))
            .enumerate()
        {
            self.pad(xw, &mut p.padded);
            for row in yw.chunks_exact_mut(co) {
                row.copy_from_slice(&self.bias);
            }
            matmul_strided(
                yw,
                (&p.padded, self.s * ci, 1),
                (&self.w_mat, 1, kk),
                (t, kk, co),
                true,
            );
            if self.norm.is_some() {
                let xh = &mut xhat[i * t * co..(i + 1) * t * co];
                for (r, (row, xr)) in yw
                    .chunks_exact_mut(co)
                    .zip(xh.chunks_exact_mut(co))
                    .enumerate()
                {
                    let mean = row.iter().map(|&v| v as f64).sum::<f64>() / co as f64;
                    let var =
                        row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / co as f64;
                    let inv = 1.0 / (var + EPS).sqrt();
                    rstd[i * t + r] = inv as f32;
                    for j in 0..co {
                        xr[j] = ((row[j] as f64 - mean) * inv) as f32;
                        row[j] = xr[j] * self.gain[j] + self.shift[j];
                    }
                }
            }
            yw.iter_mut().for_each(|v| *v = v.max(0.0));
        }
    }

    /// The backward of the windows `x` (this layer's input; the minibatch's windows
    /// from `first` on) from `d` (the gradient of their output, masked here by ReLU):
    /// this thread's share of the parameters' gradients into `p`, and the input's
    /// gradient into `dx` where wanted.
    fn backward_part(
        &self,
        x: &[f32],
        d: &mut [f32],
        first: usize,
        mut dx: Option<&mut [f32]>,
        p: &mut Part,
    ) {
        let (out, xhat, rstd) = (&self.out, &self.xhat, &self.rstd);
        let (ci, co, t, s) = (self.c_in, self.c_out, self.len_out, self.s);
        let kk = self.k * ci;
        resize(&mut p.d_w, co * kk);
        p.d_w.fill(0.0);
        p.d_b.clear();
        p.d_b.resize(co, 0.0);
        p.d_gain.clear();
        p.d_gain.resize(co, 0.0);
        p.d_shift.clear();
        p.d_shift.resize(co, 0.0);
        for (i, (xw, dw)) in x
            .chunks_exact(self.len_in * ci)
            .zip(d.chunks_exact_mut(t * co))
            .enumerate()
        {
            let w = first + i;
            let ow = &out[w * t * co..(w + 1) * t * co];
            dw.iter_mut().zip(ow).for_each(|(g, &y)| {
                if y <= 0.0 {
                    *g = 0.0
                }
            });
            // Through the norm: d pre = r (g d − mean(g d) − x̂ mean(g d x̂)) per row.
            resize(&mut p.d_pre, t * co);
            if self.norm.is_some() {
                let xh = &xhat[w * t * co..(w + 1) * t * co];
                for (r, ((dr, xr), pr)) in dw
                    .chunks_exact(co)
                    .zip(xh.chunks_exact(co))
                    .zip(p.d_pre.chunks_exact_mut(co))
                    .enumerate()
                {
                    let (mut m1, mut m2) = (0f64, 0f64);
                    for j in 0..co {
                        p.d_gain[j] += dr[j] * xr[j];
                        p.d_shift[j] += dr[j];
                        let gd = (dr[j] * self.gain[j]) as f64;
                        m1 += gd;
                        m2 += gd * xr[j] as f64;
                    }
                    let (m1, m2) = ((m1 / co as f64) as f32, (m2 / co as f64) as f32);
                    let inv = rstd[w * t + r];
                    for j in 0..co {
                        pr[j] = inv * (dr[j] * self.gain[j] - m1 - xr[j] * m2);
                    }
                }
            } else {
                p.d_pre.copy_from_slice(dw);
            }
            for row in p.d_pre.chunks_exact(co) {
                p.d_b.iter_mut().zip(row).for_each(|(a, b)| *a += b);
            }
            // d W [C_out, k·C_in] += d preᵀ · patches.
            self.pad(xw, &mut p.padded);
            matmul_strided(
                &mut p.d_w,
                (&p.d_pre, 1, co),
                (&p.padded, s * ci, 1),
                (co, t, kk),
                true,
            );
            let Some(dx) = dx.as_deref_mut() else {
                continue;
            };
            // d padded: frame j of the kernel adds d pre · W_jᵀ to rows j.. of frames.
            p.d_padded.clear();
            p.d_padded.resize(self.padded() * ci, 0.0);
            for j in 0..self.k / s {
                matmul_strided(
                    &mut p.d_padded[j * s * ci..(j + t) * s * ci],
                    (&p.d_pre, co, 1),
                    (&self.w_mat[j * s * ci..], kk, 1),
                    (t, co, s * ci),
                    true,
                );
            }
            let at = self.left() * ci;
            let len = self.len_in * ci;
            dx[i * len..(i + 1) * len].copy_from_slice(&p.d_padded[at..at + len]);
        }
    }
}

/// The audio encoder of an `EncoderSpec::Audio` on the lean path.
pub struct LeanAudioEncoder {
    layers: Vec<Layer>,
    normalize: bool,
    channels: usize,
    parts: Vec<Part>,
    /// The last forward: its windows, and their (standardised) samples.
    n: usize,
    x0: Vec<f32>,
    d: Vec<f32>,
    d_prev: Vec<f32>,
}

impl LeanAudioEncoder {
    /// The encoder over the parameters under `prefix` (e.g. `encoder`) of `varmap`, as
    /// [`crate::nn::audio::AudioEncoder::new`] reads them.
    pub fn new(arch: &AudioArch, varmap: &VarMap, prefix: &str) -> Result<Self> {
        let AudioArch {
            channels,
            strides,
            kernels,
            channel_norm,
            normalize,
        } = *arch;
        check_layers(strides, kernels).map_err(anyhow::Error::msg)?;
        let mut layers = Vec::new();
        let mut c_in = 1;
        for (i, (&s, &k)) in strides.iter().zip(kernels).enumerate() {
            let p = format!("{prefix}.conv.{i}");
            let norm = if channel_norm {
                Some((
                    var(varmap, &format!("{p}.norm.weight"))?,
                    var(varmap, &format!("{p}.norm.bias"))?,
                ))
            } else {
                None
            };
            layers.push(Layer {
                w: var(varmap, &format!("{p}.weight"))?,
                b: var(varmap, &format!("{p}.bias"))?,
                norm,
                c_in,
                c_out: channels,
                k,
                s,
                w_mat: Vec::new(),
                bias: Vec::new(),
                gain: Vec::new(),
                shift: Vec::new(),
                len_in: 0,
                len_out: 0,
                xhat: Vec::new(),
                out: Vec::new(),
                rstd: Vec::new(),
                d_w: Vec::new(),
                d_b: Vec::new(),
                d_gain: Vec::new(),
                d_shift: Vec::new(),
            });
            c_in = channels;
        }
        Ok(LeanAudioEncoder {
            layers,
            normalize,
            channels,
            parts: Vec::new(),
            n: 0,
            x0: Vec::new(),
            d: Vec::new(),
            d_prev: Vec::new(),
        })
    }

    /// Windows per thread for `n` windows, with a [`Part`] for each thread.
    fn split(&mut self, n: usize) -> usize {
        let threads = rayon::current_num_threads().clamp(1, n.max(1));
        if self.parts.len() < threads {
            self.parts.resize_with(threads, Part::default);
        }
        n.div_ceil(threads)
    }

    /// z `[n, T, C]` of the `n` waveforms `wave` `[n, len]`.
    pub fn forward(&mut self, wave: &[f32], n: usize, len: usize) -> Result<&[f32]> {
        ensure!(
            n > 0 && len > 0 && wave.len() == n * len,
            "{} samples are not {n} windows of {len}",
            wave.len()
        );
        self.n = n;
        self.x0.clear();
        self.x0.extend_from_slice(wave);
        if self.normalize {
            for w in self.x0.chunks_exact_mut(len) {
                let mean = w.iter().map(|&v| v as f64).sum::<f64>() / len as f64;
                let var = w.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / len as f64;
                let inv = 1.0 / (var + EPS).sqrt();
                w.iter_mut()
                    .for_each(|v| *v = ((*v as f64 - mean) * inv) as f32);
            }
        }
        let per = self.split(n);
        let mut len_in = len;
        for i in 0..self.layers.len() {
            let (done, rest) = self.layers.split_at_mut(i);
            let x: &[f32] = done.last().map_or(&self.x0, |l| &l.out);
            let l = &mut rest[0];
            l.load()?;
            l.len_in = len_in;
            l.len_out = len_in.div_ceil(l.s);
            let (t, co, ci) = (l.len_out, l.c_out, l.c_in);
            resize(&mut l.out, n * t * co);
            let (mut out, mut xhat, mut rstd) = (
                std::mem::take(&mut l.out),
                std::mem::take(&mut l.xhat),
                std::mem::take(&mut l.rstd),
            );
            let layer = &*l;
            let inputs = x
                .par_chunks(per * len_in * ci)
                .zip(out.par_chunks_mut(per * t * co));
            if layer.norm.is_some() {
                resize(&mut xhat, n * t * co);
                resize(&mut rstd, n * t);
                inputs
                    .zip(xhat.par_chunks_mut(per * t * co))
                    .zip(rstd.par_chunks_mut(per * t))
                    .zip(self.parts.par_iter_mut())
                    .for_each(|((((x, out), xh), rs), p)| layer.forward_part(x, out, xh, rs, p));
            } else {
                inputs
                    .zip(self.parts.par_iter_mut())
                    .for_each(|((x, out), p)| layer.forward_part(x, out, &mut [], &mut [], p));
            }
            let l = &mut rest[0];
            l.out = out;
            l.xhat = xhat;
            l.rstd = rstd;
            len_in = l.len_out;
        }
        let last = self.layers.last().expect("at least one layer");
        Ok(&last.out[..n * last.len_out * self.channels])
    }

    /// The gradients of every parameter from `d_z` (the gradient of the last forward's
    /// z), into `grads`.
    pub fn backward(&mut self, d_z: &[f32], grads: &mut GradStore) -> Result<()> {
        let n = self.n;
        let z_len = self.layers.last().map_or(0, |l| l.len_out * l.c_out);
        ensure!(
            n > 0 && d_z.len() == n * z_len,
            "a gradient of {} floats for z of {n} windows of {z_len}",
            d_z.len()
        );
        let per = self.split(n);
        let used = n.div_ceil(per);
        self.d.clear();
        self.d.extend_from_slice(d_z);
        for i in (0..self.layers.len()).rev() {
            let (done, rest) = self.layers.split_at_mut(i);
            let x: &[f32] = done.last().map_or(&self.x0, |l| &l.out);
            let l = &rest[0];
            let (t, co, len_in) = (l.len_out, l.c_out, l.len_in * l.c_in);
            let base = x
                .par_chunks(per * len_in)
                .zip(self.d.par_chunks_mut(per * t * co));
            if i > 0 {
                resize(&mut self.d_prev, n * len_in);
                base.zip(self.d_prev.par_chunks_mut(per * len_in))
                    .zip(self.parts.par_iter_mut())
                    .enumerate()
                    .for_each(|(j, (((x, d), dx), p))| l.backward_part(x, d, j * per, Some(dx), p));
            } else {
                base.zip(self.parts.par_iter_mut())
                    .enumerate()
                    .for_each(|(j, ((x, d), p))| l.backward_part(x, d, j * per, None, p));
            }
            let l = &mut rest[0];
            let parts = &self.parts[..used];
            let sum = |pick: fn(&Part) -> &Vec<f32>| -> Vec<f32> {
                let mut acc = pick(&parts[0]).clone();
                for p in &parts[1..] {
                    acc.iter_mut().zip(pick(p)).for_each(|(a, b)| *a += b);
                }
                acc
            };
            l.d_w = sum(|p| &p.d_w);
            l.d_b = sum(|p| &p.d_b);
            l.d_gain = sum(|p| &p.d_gain);
            l.d_shift = sum(|p| &p.d_shift);
            std::mem::swap(&mut self.d, &mut self.d_prev);
        }
        let dev = Device::Cpu;
        for l in &self.layers {
            let (ci, k) = (l.c_in, l.k);
            let mut g = vec![0f32; l.d_w.len()];
            for o in 0..l.c_out {
                for c in 0..ci {
                    for j in 0..k {
                        g[(o * ci + c) * k + j] = l.d_w[o * k * ci + j * ci + c];
                    }
                }
            }
            grads.insert(
                l.w.as_tensor(),
                Tensor::from_vec(g, (l.c_out, ci, k), &dev)?,
            );
            grads.insert(
                l.b.as_tensor(),
                Tensor::from_vec(l.d_b.clone(), l.c_out, &dev)?,
            );
            if let Some((gain, shift)) = &l.norm {
                grads.insert(
                    gain.as_tensor(),
                    Tensor::from_vec(l.d_gain.clone(), l.c_out, &dev)?,
                );
                grads.insert(
                    shift.as_tensor(),
                    Tensor::from_vec(l.d_shift.clone(), l.c_out, &dev)?,
                );
            }
        }
        Ok(())
    }

    /// Channels of z.
    pub fn channels(&self) -> usize {
        self.channels
    }
}
