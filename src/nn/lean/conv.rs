//! The lean path of IMPALA's shallow conv encoder ([`EncoderSpec::Conv`]): conv 16×8×8
//! stride 4, ReLU, conv 32×4×4 stride 2, ReLU, FC, ReLU, on channels-last images, each
//! convolution an im2col and one GEMM ([`crate::nn::conv::im2col`]), its backward the
//! transposed products and col2im. The same function as candle's
//! [`Encoder`](crate::nn::encoders::Encoder) (checked in `tests/lean.rs`).
//!
//! The weights keep PyTorch's layouts (`[C_out, C_in, KH, KW]`; the FC layer's columns in
//! (C, H, W) order, as PyTorch flattens); [`ConvEnc`] keeps copies laid out for the
//! products (each kernel row in (kh, kw, c) order, the FC columns in (h, w, c) order)
//! and lays the gradients back.

use super::{activate, column_sums, resize, Param};
use crate::config::Activation;
use crate::nn::conv::{col2im, conv_out_size, im2col};
use crate::nn::gemm::{matmul, Op};

/// Images per chunk of the first convolution.
const CHUNK: usize = 16;

/// Indices of one convolution's weight and bias among the network's parameters.
#[derive(Clone, Copy)]
pub(super) struct ConvIdx {
    pub w: usize,
    pub b: usize,
    pub c_in: usize,
    pub c_out: usize,
    pub k: usize,
}

/// The encoder's parameters, shapes, re-laid-out weights and buffers.
pub(super) struct ConvEnc {
    pub conv1: ConvIdx,
    pub conv2: ConvIdx,
    /// FC weight and bias indices, and its output width.
    pub fc: (usize, usize),
    pub fc_out: usize,
    pub input_scale: f32,
    /// Input `[H, W, C]`, and the two convolutions' output sizes.
    pub hwc: (usize, usize, usize),
    out1: (usize, usize),
    out2: (usize, usize),
    /// The weights laid out for the products; rebuilt when `stale`.
    w1: Vec<f32>,
    w2: Vec<f32>,
    fcw: Vec<f32>,
    pub stale: bool,
    // Activations of the last forward: the images (for the first convolution's
    // columns, built again in the backward), each layer's output and the second
    // convolution's columns; `cols1` holds one chunk's columns.
    n: usize,
    img: Vec<f32>,
    cols1: Vec<f32>,
    y1: Vec<f32>,
    cols2: Vec<f32>,
    y2: Vec<f32>,
    // Backward scratch.
    d_y2: Vec<f32>,
    d_cols2: Vec<f32>,
    d_y1: Vec<f32>,
    d_w: Vec<f32>,
}

impl ConvEnc {
    /// Adds the encoder's parameters (named as candle's `encoder.*`) to `params`.
    pub fn new(
        params: &mut Vec<Param>,
        (h, w, c): (usize, usize, usize),
        fc_out: usize,
        input_scale: f32,
    ) -> ConvEnc {
        let mut add = |name: &str, dims: Vec<usize>| {
            let n = dims.iter().product();
            params.push(Param {
                name: format!("encoder.{name}"),
                dims,
                data: vec![0.0; n],
            });
            params.len() - 1
        };
        let mut conv = |name: &str, c_in: usize, c_out: usize, k: usize| ConvIdx {
            w: add(&format!("{name}.weight"), vec![c_out, c_in, k, k]),
            b: add(&format!("{name}.bias"), vec![c_out]),
            c_in,
            c_out,
            k,
        };
        let conv1 = conv("conv1", c, 16, 8);
        let conv2 = conv("conv2", 16, 32, 4);
        let out1 = (conv_out_size(h, 8, 4), conv_out_size(w, 8, 4));
        let out2 = (conv_out_size(out1.0, 4, 2), conv_out_size(out1.1, 4, 2));
        let fc_in = 32 * out2.0 * out2.1;
        let fc = (
            add("fc.weight", vec![fc_out, fc_in]),
            add("fc.bias", vec![fc_out]),
        );
        ConvEnc {
            conv1,
            conv2,
            fc,
            fc_out,
            input_scale,
            hwc: (h, w, c),
            out1,
            out2,
            w1: Vec::new(),
            w2: Vec::new(),
            fcw: Vec::new(),
            stale: true,
            n: 0,
            img: Vec::new(),
            cols1: Vec::new(),
            y1: Vec::new(),
            cols2: Vec::new(),
            y2: Vec::new(),
            d_y2: Vec::new(),
            d_cols2: Vec::new(),
            d_y1: Vec::new(),
            d_w: Vec::new(),
        }
    }

    /// Floats per image.
    pub fn in_dim(&self) -> usize {
        self.hwc.0 * self.hwc.1 * self.hwc.2
    }

    fn fc_in(&self) -> usize {
        32 * self.out2.0 * self.out2.1
    }

    /// The product layouts of the weights: `[C_out, C_in, K, K]` → `[C_out, K·K·C_in]`
    /// in (kh, kw, c) order, the FC's (C, H, W) columns → (H, W, C).
    fn relayout(&mut self, params: &[Param]) {
        let (l1, l2) = (self.conv1, self.conv2);
        to_product_layout(&params[l1.w].data, (l1.c_out, l1.c_in, l1.k), &mut self.w1);
        to_product_layout(&params[l2.w].data, (l2.c_out, l2.c_in, l2.k), &mut self.w2);
        let (hw, fc_in) = (self.out2.0 * self.out2.1, self.fc_in());
        let src = &params[self.fc.0].data;
        resize(&mut self.fcw, src.len());
        for o in 0..self.fc_out {
            for c in 0..32 {
                for p in 0..hw {
                    self.fcw[o * fc_in + p * 32 + c] = src[o * fc_in + c * hw + p];
                }
            }
        }
        self.stale = false;
    }

    /// Encodes `n` images `img` `[n, H, W, C]` into `z` `[n, fc_out]`.
    pub fn forward(&mut self, params: &[Param], img: &[f32], n: usize, z: &mut Vec<f32>) {
        if self.stale {
            self.relayout(params);
        }
        self.n = n;
        let (h, w, c) = self.hwc;
        let (l1, l2) = (self.conv1, self.conv2);
        // conv1 + ReLU: [n·OH1·OW1, 64C] · W1ᵀ, a chunk of images at a time, so that
        // the columns (4× the image: the 8×8 kernels overlap) stay in the cache; the
        // backward builds them again from the images kept here.
        let r1 = n * self.out1.0 * self.out1.1;
        let (per_img, per_rows) = (h * w * c, self.out1.0 * self.out1.1);
        self.img.clear();
        self.img.extend_from_slice(&img[..n * per_img]);
        resize(&mut self.y1, r1 * 16);
        for (i, chunk) in img[..n * per_img].chunks(CHUNK * per_img).enumerate() {
            let m = conv1_columns(chunk, self.hwc, self.input_scale, &mut self.cols1);
            let y = &mut self.y1[i * CHUNK * per_rows * 16..(i * CHUNK + m) * per_rows * 16];
            for row in y.chunks_exact_mut(16) {
                row.copy_from_slice(&params[l1.b].data);
            }
            matmul(
                y,
                &self.cols1,
                Op::N,
                &self.w1,
                Op::T,
                (m * per_rows, 64 * c, 16),
                true,
            );
        }
        activate(&mut self.y1, Activation::Relu);
        // conv2 + ReLU.
        im2col(
            &self.y1,
            (n, self.out1.0, self.out1.1, 16),
            (4, 4),
            2,
            1.0,
            &mut self.cols2,
        );
        let r2 = n * self.out2.0 * self.out2.1;
        dense(
            &mut self.y2,
            &self.cols2,
            &self.w2,
            &params[l2.b].data,
            r2,
            16 * 16,
            32,
        );
        activate(&mut self.y2, Activation::Relu);
        // FC + ReLU on [n, OH2·OW2·32] (channels-last rows; the weight's columns match).
        let fc_in = self.fc_in();
        dense(
            z,
            &self.y2,
            &self.fcw,
            &params[self.fc.1].data,
            n,
            fc_in,
            self.fc_out,
        );
        activate(z, Activation::Relu);
    }

    /// Gradients of every encoder parameter into `grads` (PyTorch layouts), from
    /// `d_z` (overwritten: masked by the last ReLU) and the last forward's output `z`.
    pub fn backward(&mut self, z: &[f32], d_z: &mut [f32], grads: &mut [Vec<f32>]) {
        let (n, fc_in) = (self.n, self.fc_in());
        relu_back(d_z, z);
        // FC: d W (in the product layout, then back to (C, H, W) columns), d b, d y2.
        resize(&mut self.d_w, self.fc_out * fc_in);
        matmul(
            &mut self.d_w,
            d_z,
            Op::T,
            &self.y2,
            Op::N,
            (self.fc_out, n, fc_in),
            false,
        );
        let hw = self.out2.0 * self.out2.1;
        let g = &mut grads[self.fc.0];
        for o in 0..self.fc_out {
            for c in 0..32 {
                for p in 0..hw {
                    g[o * fc_in + c * hw + p] = self.d_w[o * fc_in + p * 32 + c];
                }
            }
        }
        column_sums(&d_z[..n * self.fc_out], &mut grads[self.fc.1]);
        resize(&mut self.d_y2, n * fc_in);
        matmul(
            &mut self.d_y2,
            d_z,
            Op::N,
            &self.fcw,
            Op::N,
            (n, self.fc_out, fc_in),
            false,
        );
        // conv2.
        relu_back(&mut self.d_y2, &self.y2);
        let r2 = n * hw;
        self.conv2_grads(r2, grads);
        resize(&mut self.d_cols2, r2 * 16 * 16);
        matmul(
            &mut self.d_cols2,
            &self.d_y2,
            Op::N,
            &self.w2,
            Op::N,
            (r2, 32, 256),
            false,
        );
        col2im(
            &self.d_cols2,
            (n, self.out1.0, self.out1.1, 16),
            (4, 4),
            2,
            1.0,
            &mut self.d_y1,
        );
        // conv1 (the image needs no gradient): d W1 summed over the chunks of images.
        relu_back(&mut self.d_y1, &self.y1);
        let (h, w, c) = self.hwc;
        let (per_img, per_rows) = (h * w * c, self.out1.0 * self.out1.1);
        let kk = 64 * c;
        resize(&mut self.d_w, 16 * kk);
        for (i, chunk) in self.img.chunks(CHUNK * per_img).enumerate() {
            let m = conv1_columns(chunk, self.hwc, self.input_scale, &mut self.cols1);
            let dy = &self.d_y1[i * CHUNK * per_rows * 16..(i * CHUNK + m) * per_rows * 16];
            matmul(
                &mut self.d_w,
                dy,
                Op::T,
                &self.cols1,
                Op::N,
                (16, m * per_rows, kk),
                i > 0,
            );
        }
        self.lay_back(self.conv1, grads);
        column_sums(&self.d_y1[..n * per_rows * 16], &mut grads[self.conv1.b]);
    }

    /// The second convolution's d W = dyᵀ · cols and d b = Σ dy.
    fn conv2_grads(&mut self, rows: usize, grads: &mut [Vec<f32>]) {
        let l = self.conv2;
        let kk = l.k * l.k * l.c_in;
        resize(&mut self.d_w, l.c_out * kk);
        matmul(
            &mut self.d_w,
            &self.d_y2,
            Op::T,
            &self.cols2,
            Op::N,
            (l.c_out, rows, kk),
            false,
        );
        self.lay_back(l, grads);
        column_sums(&self.d_y2[..rows * l.c_out], &mut grads[l.b]);
    }

    /// `d_w` (product layout) laid back into `grads` as `[C_out, C_in, K, K]`.
    fn lay_back(&self, l: ConvIdx, grads: &mut [Vec<f32>]) {
        from_product_layout(&self.d_w, (l.c_out, l.c_in, l.k), &mut grads[l.w]);
    }
}

/// A convolution's weight `[C_out, C_in, K, K]` (PyTorch's layout) → `[C_out, K·K·C_in]`
/// in (kh, kw, c) order, the layout of [`im2col`]'s columns.
pub(super) fn to_product_layout(
    src: &[f32],
    (c_out, ci, k): (usize, usize, usize),
    out: &mut Vec<f32>,
) {
    resize(out, src.len());
    for co in 0..c_out {
        for c in 0..ci {
            for ky in 0..k {
                for kx in 0..k {
                    out[co * k * k * ci + (ky * k + kx) * ci + c] =
                        src[((co * ci + c) * k + ky) * k + kx];
                }
            }
        }
    }
}

/// The inverse of [`to_product_layout`], into `out` (as long as `src`).
pub(super) fn from_product_layout(
    src: &[f32],
    (c_out, ci, k): (usize, usize, usize),
    out: &mut [f32],
) {
    let kk = k * k * ci;
    for co in 0..c_out {
        for c in 0..ci {
            for ky in 0..k {
                for kx in 0..k {
                    out[((co * ci + c) * k + ky) * k + kx] = src[co * kk + (ky * k + kx) * ci + c];
                }
            }
        }
    }
}

/// The first convolution's columns of the images `chunk` (8×8 kernels, stride 4) into
/// `cols`; returns how many images the chunk holds.
fn conv1_columns(
    chunk: &[f32],
    (h, w, c): (usize, usize, usize),
    scale: f32,
    cols: &mut Vec<f32>,
) -> usize {
    let m = chunk.len() / (h * w * c);
    im2col(chunk, (m, h, w, c), (8, 8), 4, scale, cols);
    m
}

/// `y[rows, out] = x[rows, in] · Wᵀ + b`.
fn dense(y: &mut Vec<f32>, x: &[f32], w: &[f32], b: &[f32], rows: usize, inp: usize, out: usize) {
    resize(y, rows * out);
    for row in y.chunks_exact_mut(out) {
        row.copy_from_slice(b);
    }
    matmul(y, x, Op::N, w, Op::T, (rows, inp, out), true);
}

/// ReLU's backward: zero where the forward's output marks x < 0 (−0, see `activate`).
fn relu_back(d: &mut [f32], y: &[f32]) {
    for (d, y) in d.iter_mut().zip(y) {
        if y.is_sign_negative() {
            *d = 0.0;
        }
    }
}

/// The agent's conv encoder as the view trainers' f (SimCLR, MoCo with `model.encoder =
/// "agent"`): [`ConvEnc`] over the variables under a prefix of candle's var map, read
/// at every forward, its gradients handed to candle's gradient store (as
/// [`super::resnet::LeanResNet`] does). The images are shared among rayon's threads,
/// one [`ConvEnc`] each, whose gradients are summed in order.
pub struct LeanAgentEncoder {
    parts: Vec<AgentPart>,
    params: Vec<Param>,
    vars: Vec<candle_core::Var>,
    /// The variables' names in `varmap`.
    names: Vec<String>,
    /// Images per part in the last forward.
    per: usize,
    n: usize,
    z: Vec<f32>,
}

/// One thread's encoder, output and gradients.
struct AgentPart {
    enc: ConvEnc,
    z: Vec<f32>,
    d_z: Vec<f32>,
    grads: Vec<Vec<f32>>,
}

impl LeanAgentEncoder {
    /// The encoder of `[h, w, c]` images (each value multiplied by `input_scale` first)
    /// with an FC layer `fc` wide, over the parameters under `prefix` (e.g. `encoder`)
    /// of `varmap`, its images shared among `threads` parts (0: one per rayon thread).
    pub fn new(
        (h, w, c): (usize, usize, usize),
        fc: usize,
        input_scale: f32,
        threads: usize,
        varmap: &candle_nn::VarMap,
        prefix: &str,
    ) -> anyhow::Result<Self> {
        let threads = match threads {
            0 => rayon::current_num_threads().max(1),
            t => t,
        };
        let mut params = Vec::new();
        let mut parts = Vec::new();
        for _ in 0..threads {
            params.clear();
            let enc = ConvEnc::new(&mut params, (h, w, c), fc, input_scale);
            let grads = params.iter().map(|p| vec![0.0; p.data.len()]).collect();
            parts.push(AgentPart {
                enc,
                z: Vec::new(),
                d_z: Vec::new(),
                grads,
            });
        }
        let names: Vec<String> = params
            .iter()
            .map(|p| p.name.replacen("encoder", prefix, 1))
            .collect();
        let vars = params
            .iter()
            .zip(&names)
            .map(|(p, name)| {
                let v = crate::nn::resnet::var(varmap, name)?;
                anyhow::ensure!(
                    v.as_tensor().dims() == p.dims.as_slice(),
                    "'{name}' is {:?}, not {:?}",
                    v.as_tensor().dims(),
                    p.dims
                );
                Ok(v)
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(LeanAgentEncoder {
            parts,
            params,
            vars,
            names,
            per: 0,
            n: 0,
            z: Vec::new(),
        })
    }

    pub fn out_dim(&self) -> usize {
        self.parts[0].enc.fc_out
    }

    /// h `[n, fc]` of the `n` images `x` `[n, H, W, C]`.
    pub fn forward(&mut self, x: &[f32], n: usize) -> anyhow::Result<&[f32]> {
        use rayon::prelude::*;
        let in_dim = self.parts[0].enc.in_dim();
        anyhow::ensure!(
            n > 0 && x.len() == n * in_dim,
            "{} floats are not {n} images of {:?}",
            x.len(),
            self.parts[0].enc.hwc
        );
        for (p, v) in self.params.iter_mut().zip(&self.vars) {
            let data = &mut p.data;
            rlcpc_agents::optim::with_host_slice(v.as_tensor(), &mut Vec::new(), |s| {
                data.copy_from_slice(s)
            })
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        self.n = n;
        self.per = n.div_ceil(self.parts.len());
        let params = &self.params;
        x.par_chunks(self.per * in_dim)
            .zip(self.parts.par_iter_mut())
            .for_each(|(x, part)| {
                part.enc.stale = true;
                part.enc.forward(params, x, x.len() / in_dim, &mut part.z);
            });
        self.z.clear();
        let used = n.div_ceil(self.per);
        for part in &self.parts[..used] {
            self.z.extend_from_slice(&part.z);
        }
        Ok(&self.z)
    }

    /// The variables' names, in the order of [`LeanAgentEncoder::backward_host`]'s
    /// gradients.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Adds the gradients of every parameter, from `d_h` (the gradient of the last
    /// forward's h), into `out` (one per parameter, in [`LeanAgentEncoder::names`]'
    /// order; an empty entry is sized and zeroed first). The parts' shares are summed in
    /// order.
    pub fn backward_host(&mut self, d_h: &[f32], out: &mut [Vec<f32>]) -> anyhow::Result<()> {
        use rayon::prelude::*;
        let d = self.out_dim();
        anyhow::ensure!(
            self.n > 0 && d_h.len() == self.n * d && out.len() == self.params.len(),
            "a gradient of {} floats for h of [{}, {d}] into {} buffers",
            d_h.len(),
            self.n,
            out.len()
        );
        let used = self.n.div_ceil(self.per);
        d_h.par_chunks(self.per * d)
            .zip(self.parts[..used].par_iter_mut())
            .for_each(|(d_h, part)| {
                part.d_z.clear();
                part.d_z.extend_from_slice(d_h);
                part.enc.backward(&part.z, &mut part.d_z, &mut part.grads);
            });
        for (i, (g, p)) in out.iter_mut().zip(&self.params).enumerate() {
            if g.is_empty() {
                g.resize(p.data.len(), 0.0);
            }
            for part in &self.parts[..used] {
                g.iter_mut().zip(&part.grads[i]).for_each(|(a, b)| *a += b);
            }
        }
        Ok(())
    }

    /// The gradients of every parameter, from `d_h` (the gradient of the last forward's
    /// h), into `grads`.
    pub fn backward(
        &mut self,
        d_h: &[f32],
        grads: &mut candle_core::backprop::GradStore,
    ) -> anyhow::Result<()> {
        let mut out = vec![Vec::new(); self.params.len()];
        self.backward_host(d_h, &mut out)?;
        for ((g, p), v) in out.into_iter().zip(&self.params).zip(&self.vars) {
            let t = candle_core::Tensor::from_vec(g, p.dims.as_slice(), &candle_core::Device::Cpu)?;
            grads.insert(v.as_tensor(), t);
        }
        Ok(())
    }
}
