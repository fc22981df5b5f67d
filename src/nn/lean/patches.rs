//! The lean path of image CPC's patch encoder ([`PatchEncoder`]): 3×3 convolutions
//! (stride 1, no padding) with a bias, CPC-v2's LayerNorm where it is on, ReLU, then the
//! mean over positions, on channels-last patches `[N, P, P, C]`. Each convolution is an
//! im2col and one GEMM; its backward the transposed products and col2im. The patches are
//! shared among rayon's threads, each with its own buffers and its share of every
//! weight's gradient, summed in order. The same function and gradients as candle's
//! (checked in `tests/lean.rs`).
//!
//! [`PatchEncoder`]: crate::nn::patches::PatchEncoder

use anyhow::{ensure, Result};
use candle_core::backprop::GradStore;
use candle_core::{Device, Tensor, Var};
use candle_nn::VarMap;
use rayon::prelude::*;

use super::conv::{from_product_layout, to_product_layout};
use super::{resize, Param};
use crate::nn::conv::{col2im, im2col};
use crate::nn::gemm::{matmul, Op};

/// LayerNorm's ε, as [`crate::nn::patches::layer_norm`]'s.
const LN_EPS: f32 = 1e-5;

/// One convolution's shape and the indices of its parameters in
/// [`LeanPatchEncoder::params`]: weight, bias, and LayerNorm's gain and bias.
#[derive(Clone, Copy)]
struct Layer {
    c_in: usize,
    c_out: usize,
    /// The input's side; the output's is two less.
    side: usize,
    w: usize,
    b: usize,
    norm: Option<(usize, usize)>,
}

impl Layer {
    fn out_side(&self) -> usize {
        self.side - 2
    }

    /// Output rows (positions) per patch.
    fn positions(&self) -> usize {
        self.out_side() * self.out_side()
    }

    fn kk(&self) -> usize {
        9 * self.c_in
    }
}

/// One thread's activations (per layer), gradients and scratch.
#[derive(Default)]
struct Part {
    n: usize,
    /// Each layer's columns `[n · positions, 9 · C_in]`.
    cols: Vec<Vec<f32>>,
    /// Each layer's normalised pre-activation (LayerNorm on) and 1/σ per patch.
    xhat: Vec<Vec<f32>>,
    inv_std: Vec<Vec<f32>>,
    /// Each layer's output after the ReLU `[n · positions, C_out]`.
    y: Vec<Vec<f32>>,
    z: Vec<f32>,
    d_y: Vec<f32>,
    d_cols: Vec<f32>,
    /// This part's share of every parameter's gradient (the weights in the products'
    /// layout).
    grads: Vec<Vec<f32>>,
}

/// The patch encoder over the variables under a prefix of candle's var map, read at
/// every forward; its gradients go into candle's gradient store.
pub struct LeanPatchEncoder {
    layers: Vec<Layer>,
    params: Vec<Param>,
    vars: Vec<Var>,
    /// The weights laid out for the products (per layer).
    w_mat: Vec<Vec<f32>>,
    parts: Vec<Part>,
    /// Patches per part in the last forward, and in all.
    per: usize,
    n: usize,
    z: Vec<f32>,
}

impl LeanPatchEncoder {
    /// The encoder of `patch`×`patch` patches of `channels` channels: `layers` 3×3
    /// convolutions `width` wide (with LayerNorm if `layer_norm`), over the parameters
    /// under `prefix` (e.g. `encoder`) of `varmap` (named as [`PatchEncoder::init`]
    /// names them).
    ///
    /// [`PatchEncoder::init`]: crate::nn::patches::PatchEncoder::init
    pub fn new(
        (patch, channels): (usize, usize),
        width: usize,
        layers: usize,
        layer_norm: bool,
        varmap: &VarMap,
        prefix: &str,
    ) -> Result<Self> {
        ensure!(
            layers > 0 && patch > 2 * layers,
            "{layers} 3x3 convolutions do not fit patches of {patch} pixels"
        );
        let mut params = Vec::new();
        let mut add = |name: String, dims: Vec<usize>| {
            let n = dims.iter().product();
            params.push(Param {
                name,
                dims,
                data: vec![0.0; n],
            });
            params.len() - 1
        };
        let (mut c_in, mut side, mut shapes) = (channels, patch, Vec::new());
        for i in 0..layers {
            let w = add(format!("{prefix}.conv.{i}.weight"), vec![width, c_in, 3, 3]);
            let b = add(format!("{prefix}.conv.{i}.bias"), vec![width]);
            let norm = layer_norm.then(|| {
                (
                    add(format!("{prefix}.norm.{i}.weight"), vec![width]),
                    add(format!("{prefix}.norm.{i}.bias"), vec![width]),
                )
            });
            shapes.push(Layer {
                c_in,
                c_out: width,
                side,
                w,
                b,
                norm,
            });
            (c_in, side) = (width, side - 2);
        }
        let vars = params
            .iter()
            .map(|p| {
                let v = crate::nn::resnet::var(varmap, &p.name)?;
                ensure!(
                    v.as_tensor().dims() == p.dims.as_slice(),
                    "'{}' is {:?}, not {:?}",
                    p.name,
                    v.as_tensor().dims(),
                    p.dims
                );
                Ok(v)
            })
            .collect::<Result<Vec<_>>>()?;
        let threads = rayon::current_num_threads().max(1);
        Ok(LeanPatchEncoder {
            w_mat: vec![Vec::new(); shapes.len()],
            layers: shapes,
            params,
            vars,
            parts: (0..threads).map(|_| Part::default()).collect(),
            per: 0,
            n: 0,
            z: Vec::new(),
        })
    }

    pub fn out_dim(&self) -> usize {
        self.layers.last().expect("a layer").c_out
    }

    fn in_len(&self) -> usize {
        let l = self.layers[0];
        l.side * l.side * l.c_in
    }

    /// z `[n, width]` of the `n` patches `x` `[n, P, P, C]`.
    pub fn forward(&mut self, x: &[f32], n: usize) -> Result<&[f32]> {
        let len = self.in_len();
        ensure!(
            n > 0 && x.len() == n * len,
            "{} floats are not {n} patches of {len}",
            x.len()
        );
        for (p, v) in self.params.iter_mut().zip(&self.vars) {
            let data = &mut p.data;
            rlcpc_agents::optim::with_host_slice(v.as_tensor(), &mut Vec::new(), |s| {
                data.copy_from_slice(s)
            })
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        for (l, w) in self.layers.iter().zip(&mut self.w_mat) {
            to_product_layout(&self.params[l.w].data, (l.c_out, l.c_in, 3), w);
        }
        self.n = n;
        self.per = n.div_ceil(self.parts.len());
        let (layers, params, w_mat) = (&self.layers, &self.params, &self.w_mat);
        x.par_chunks(self.per * len)
            .zip(self.parts.par_iter_mut())
            .for_each(|(x, part)| part.forward(layers, params, w_mat, x, x.len() / len));
        self.z.clear();
        for part in &self.parts[..n.div_ceil(self.per)] {
            self.z.extend_from_slice(&part.z);
        }
        Ok(&self.z)
    }

    /// Every parameter's gradient, from `d_z` (that of the last forward's z), into
    /// `grads`.
    pub fn backward(&mut self, d_z: &[f32], grads: &mut GradStore) -> Result<()> {
        let d = self.out_dim();
        ensure!(
            self.n > 0 && d_z.len() == self.n * d,
            "a gradient of {} floats for z of [{}, {d}]",
            d_z.len(),
            self.n
        );
        let used = self.n.div_ceil(self.per);
        let (layers, params, w_mat) = (&self.layers, &self.params, &self.w_mat);
        d_z.par_chunks(self.per * d)
            .zip(self.parts[..used].par_iter_mut())
            .for_each(|(d_z, part)| part.backward(layers, params, w_mat, d_z));
        let mut sum = Vec::new();
        for (i, (p, v)) in self.params.iter().zip(&self.vars).enumerate() {
            sum.clear();
            sum.resize(p.data.len(), 0.0);
            for part in &self.parts[..used] {
                sum.iter_mut()
                    .zip(&part.grads[i])
                    .for_each(|(a, b)| *a += b);
            }
            // The weights' gradients are in the products' layout.
            let g = match self.layers.iter().find(|l| l.w == i) {
                Some(l) => {
                    let mut out = vec![0.0; sum.len()];
                    from_product_layout(&sum, (l.c_out, l.c_in, 3), &mut out);
                    out
                }
                None => std::mem::take(&mut sum),
            };
            grads.insert(
                v.as_tensor(),
                Tensor::from_vec(g, p.dims.as_slice(), &Device::Cpu)?,
            );
        }
        Ok(())
    }
}

impl Part {
    fn forward(
        &mut self,
        layers: &[Layer],
        params: &[Param],
        w_mat: &[Vec<f32>],
        x: &[f32],
        n: usize,
    ) {
        self.n = n;
        let k = layers.len();
        self.cols.resize_with(k, Vec::new);
        self.xhat.resize_with(k, Vec::new);
        self.inv_std.resize_with(k, Vec::new);
        self.y.resize_with(k, Vec::new);
        for (i, l) in layers.iter().enumerate() {
            let (before, rest) = self.y.split_at_mut(i);
            let input: &[f32] = if i == 0 { x } else { &before[i - 1] };
            im2col(
                input,
                (n, l.side, l.side, l.c_in),
                (3, 3),
                1,
                1.0,
                &mut self.cols[i],
            );
            let (rows, y) = (n * l.positions(), &mut rest[0]);
            resize(y, rows * l.c_out);
            for row in y.chunks_exact_mut(l.c_out) {
                row.copy_from_slice(&params[l.b].data);
            }
            matmul(
                y,
                &self.cols[i],
                Op::N,
                &w_mat[i],
                Op::T,
                (rows, l.kk(), l.c_out),
                true,
            );
            if let Some((g, b)) = l.norm {
                // Over each patch's positions and channels, then a gain and bias per
                // channel.
                let (gain, bias) = (&params[g].data, &params[b].data);
                let (xhat, inv) = (&mut self.xhat[i], &mut self.inv_std[i]);
                resize(xhat, y.len());
                resize(inv, n);
                let per = l.positions() * l.c_out;
                for ((blk, xh), s) in y
                    .chunks_exact_mut(per)
                    .zip(xhat.chunks_exact_mut(per))
                    .zip(inv.iter_mut())
                {
                    let mean = blk.iter().sum::<f32>() / per as f32;
                    let var = blk.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / per as f32;
                    *s = 1.0 / (var + LN_EPS).sqrt();
                    for ((v, h), c) in blk.iter_mut().zip(xh.iter_mut()).zip((0..l.c_out).cycle()) {
                        *h = (*v - mean) * *s;
                        *v = *h * gain[c] + bias[c];
                    }
                }
            }
            for v in y.iter_mut() {
                *v = v.max(0.0);
            }
        }
        let last = layers[k - 1];
        let (pos, d) = (last.positions(), last.c_out);
        resize(&mut self.z, n * d);
        for (z, blk) in self
            .z
            .chunks_exact_mut(d)
            .zip(self.y[k - 1].chunks_exact(pos * d))
        {
            z.fill(0.0);
            for row in blk.chunks_exact(d) {
                z.iter_mut().zip(row).for_each(|(a, b)| *a += b);
            }
            z.iter_mut().for_each(|a| *a /= pos as f32);
        }
    }

    fn backward(&mut self, layers: &[Layer], params: &[Param], w_mat: &[Vec<f32>], d_z: &[f32]) {
        let n = self.n;
        self.grads.resize_with(params.len(), Vec::new);
        for (g, p) in self.grads.iter_mut().zip(params) {
            g.clear();
            g.resize(p.data.len(), 0.0);
        }
        // The mean over positions: each position gets d_z / positions.
        let last = layers[layers.len() - 1];
        let (pos, d) = (last.positions(), last.c_out);
        resize(&mut self.d_y, n * pos * d);
        for (blk, dz) in self.d_y.chunks_exact_mut(pos * d).zip(d_z.chunks_exact(d)) {
            for row in blk.chunks_exact_mut(d) {
                row.iter_mut()
                    .zip(dz)
                    .for_each(|(a, b)| *a = b / pos as f32);
            }
        }
        for (i, l) in layers.iter().enumerate().rev() {
            let rows = n * l.positions();
            // ReLU: no gradient where the output is 0.
            for (g, y) in self.d_y.iter_mut().zip(&self.y[i]) {
                if *y <= 0.0 {
                    *g = 0.0;
                }
            }
            if let Some((gi, bi)) = l.norm {
                let (xhat, inv) = (&self.xhat[i], &self.inv_std[i]);
                let gain = &params[gi].data;
                let per = l.positions() * l.c_out;
                let (mut d_gain, mut d_bias) = (vec![0.0; l.c_out], vec![0.0; l.c_out]);
                for ((blk, xh), s) in self
                    .d_y
                    .chunks_exact_mut(per)
                    .zip(xhat.chunks_exact(per))
                    .zip(inv)
                {
                    // d_y' = d_y; d_xhat = d_y' · gain; then through the normalisation.
                    let (mut m1, mut m2) = (0f32, 0f32);
                    for ((g, h), c) in blk.iter_mut().zip(xh).zip((0..l.c_out).cycle()) {
                        d_gain[c] += *g * h;
                        d_bias[c] += *g;
                        *g *= gain[c];
                        m1 += *g;
                        m2 += *g * h;
                    }
                    let (m1, m2) = (m1 / per as f32, m2 / per as f32);
                    for (g, h) in blk.iter_mut().zip(xh) {
                        *g = s * (*g - m1 - h * m2);
                    }
                }
                self.grads[gi].copy_from_slice(&d_gain);
                self.grads[bi].copy_from_slice(&d_bias);
            }
            let d_b = &mut self.grads[l.b];
            for row in self.d_y.chunks_exact(l.c_out) {
                d_b.iter_mut().zip(row).for_each(|(a, b)| *a += b);
            }
            matmul(
                &mut self.grads[l.w],
                &self.d_y,
                Op::T,
                &self.cols[i],
                Op::N,
                (l.c_out, rows, l.kk()),
                true,
            );
            if i > 0 {
                resize(&mut self.d_cols, rows * l.kk());
                matmul(
                    &mut self.d_cols,
                    &self.d_y,
                    Op::N,
                    &w_mat[i],
                    Op::N,
                    (rows, l.c_out, l.kk()),
                    false,
                );
                col2im(
                    &self.d_cols,
                    (n, l.side, l.side, l.c_in),
                    (3, 3),
                    1,
                    1.0,
                    &mut self.d_y,
                );
            }
        }
    }
}
