//! The lean path of the MLP (+ LSTM) agent network: forward and backward in plain Rust
//! over row-major slices, with [`super::gemm::matmul`] for the products.
//!
//! For the small networks of vector tasks candle's per-op cost (an allocation and a
//! dispatch per op, a graph walk in backward) dominates the arithmetic: a 4-64-64 MLP's
//! update of 80 env steps is a few hundred small ops. [`LeanNet`] computes the same
//! functions as [`AgentNet`](super::AgentNet) (the tests check outputs and every
//! parameter's gradient against candle's autograd) with buffers allocated once:
//!
//! - the learner's unroll over `[T+1, B]` rows keeps each layer's activations, and
//!   [`LeanNet::backward`] runs the chain rule back through the heads, the LSTM (through
//!   time, honouring the episode-start resets) and the MLP;
//! - the actors' step is the same forward on `B` rows, one GEMM per layer for all their
//!   environments;
//! - the conv encoder of image observations ([`conv`]) replaces the MLP: im2col and one
//!   GEMM per convolution, forward and backward;
//! - the view trainers' ResNet ([`resnet`]) runs the same way, its parameters left in
//!   candle's var map and its gradients handed to candle's gradient store, as do audio
//!   CPC's strided convolutions ([`audio`]) and its GRU context network ([`gru`]).

pub mod audio;
mod conv;
pub mod gru;
pub mod patches;
pub mod resnet;

pub use conv::LeanAgentEncoder;

use rlcpc_agents::{ActorPolicy, AgentError, LeanNetwork, LeanOutputs, ParamSnapshot};

use super::encoders::EncoderSpec;
use super::fast::{sigmoid, tanh};
use super::gemm::{matmul, Op};
use super::spec::NetSpec;
use crate::config::{Activation, CoreKind};

/// One parameter: its stable name (as in [`AgentNet`](super::AgentNet)'s var map), shape
/// and values.
struct Param {
    name: String,
    dims: Vec<usize>,
    data: Vec<f32>,
}

/// Indices into [`LeanNet::params`] of one dense layer's weight `[out, in]` and bias.
#[derive(Clone, Copy)]
struct Dense {
    w: usize,
    b: usize,
    in_dim: usize,
    out_dim: usize,
}

/// The LSTM's parameters (PyTorch's names and gate order i, f, g, o).
#[derive(Clone, Copy)]
struct LstmIdx {
    w_ih: usize,
    w_hh: usize,
    b_ih: usize,
    b_hh: usize,
    hidden: usize,
}

/// The MLP (+ LSTM) network with its buffers; see the module docs.
pub struct LeanNet {
    params: Vec<Param>,
    grads: Vec<Vec<f32>>,
    mlp: Vec<Dense>,
    /// The conv encoder, in place of `mlp` (empty then) for image observations.
    conv: Option<conv::ConvEnc>,
    /// The images without their extra inputs (conv encoder with E > 0).
    img: Vec<f32>,
    activation: Activation,
    lstm: Option<LstmIdx>,
    policy: Dense,
    value: Dense,
    /// Floats per observation row: the encoder's input and the `extra` inputs after it.
    obs_dim: usize,
    /// E, [`NetSpec::extra_inputs`]: the last E values of each row join z at the core's
    /// input (`core_in`, `[N, Dz + E]`); 0: the core reads z itself.
    extra: usize,
    core_in: Vec<f32>,
    // Activations of the last forward: acts[0] the input, acts[l+1] layer l's output.
    acts: Vec<Vec<f32>>,
    /// LSTM: gate activations (i, f, g, o) `[N, 4H]`, their shared bias b_ih + b_hh, the
    /// state (h, c) entering each step after the reset mask `[N, H]` each, the cell, its
    /// tanh and the outputs h `[N, H]` each; then the final state `[B, 2H]`.
    gates: Vec<f32>,
    gate_bias: Vec<f32>,
    h_prev: Vec<f32>,
    c_prev: Vec<f32>,
    cell: Vec<f32>,
    tanh_cell: Vec<f32>,
    h: Vec<f32>,
    final_state: Vec<f32>,
    logits: Vec<f32>,
    values: Vec<f32>,
    keep: Vec<f32>,
    // Backward scratch.
    d_ctx: Vec<f32>,
    d_gates: Vec<f32>,
    d_z: Vec<f32>,
    d_a: Vec<f32>,
    d_h: Vec<f32>,
    d_c: Vec<f32>,
    d_h_prev: Vec<f32>,
    rows: usize,
    b: usize,
    /// Sparse inputs (one-hot grids): the first layer skips zeros. The last forward's
    /// non-zeros by row (CSR), and the first layer's weight transposed `[in, out]`
    /// (rebuilt when the parameters change).
    sparse: Option<Csr>,
    w0_t: Vec<f32>,
    w0_t_stale: bool,
    d_w0_t: Vec<f32>,
}

/// The non-zeros of a row-major matrix, row by row.
#[derive(Default)]
struct Csr {
    ptr: Vec<usize>,
    col: Vec<u32>,
    val: Vec<f32>,
}

/// Inputs with at most this share of non-zeros take the first layer's sparse path.
const SPARSE_DENSITY: f32 = 0.2;

impl LeanNet {
    /// The network of `spec` with zero parameters ([`LeanNet::load`] fills them), or
    /// `None` when `spec`'s encoder has no lean path (conv and the trainers' encoders).
    pub fn new(spec: &NetSpec) -> Option<LeanNet> {
        let mut params = Vec::new();
        let (in_dim, hidden, activation, conv) = match &spec.encoder {
            EncoderSpec::Mlp {
                in_dim,
                hidden,
                activation,
            } => (*in_dim, hidden.clone(), *activation, None),
            EncoderSpec::Conv {
                height,
                width,
                channels,
                fc,
                input_scale,
            } => {
                let c = conv::ConvEnc::new(
                    &mut params,
                    (*height, *width, *channels),
                    *fc,
                    *input_scale,
                );
                (c.in_dim(), Vec::new(), Activation::Relu, Some(c))
            }
            _ => return None,
        };
        let dense = |params: &mut Vec<Param>, name: &str, in_dim: usize, out_dim: usize| {
            params.push(Param {
                name: format!("{name}.weight"),
                dims: vec![out_dim, in_dim],
                data: vec![0.0; out_dim * in_dim],
            });
            params.push(Param {
                name: format!("{name}.bias"),
                dims: vec![out_dim],
                data: vec![0.0; out_dim],
            });
            Dense {
                w: params.len() - 2,
                b: params.len() - 1,
                in_dim,
                out_dim,
            }
        };
        let extra = spec.extra_inputs;
        let mut d = conv.as_ref().map_or(in_dim, |c| c.fc_out);
        let mut mlp = Vec::new();
        for (i, &h) in hidden.iter().enumerate() {
            mlp.push(dense(&mut params, &format!("encoder.mlp.{i}"), d, h));
            d = h;
        }
        let lstm = (spec.core == CoreKind::Lstm).then(|| {
            let hid = spec.lstm_hidden;
            let mut p = |name: &str, dims: Vec<usize>| {
                let n = dims.iter().product();
                params.push(Param {
                    name: format!("core.lstm.{name}"),
                    dims,
                    data: vec![0.0; n],
                });
                params.len() - 1
            };
            LstmIdx {
                w_ih: p("weight_ih", vec![4 * hid, d + extra]),
                w_hh: p("weight_hh", vec![4 * hid, hid]),
                b_ih: p("bias_ih", vec![4 * hid]),
                b_hh: p("bias_hh", vec![4 * hid]),
                hidden: hid,
            }
        });
        let dc = spec.context_dim();
        let policy = dense(&mut params, "policy", dc, spec.num_actions);
        let value = dense(&mut params, "value", dc, 1);
        let grads = params.iter().map(|p| vec![0.0; p.data.len()]).collect();
        Some(LeanNet {
            acts: vec![Vec::new(); mlp.len() + 1],
            params,
            grads,
            mlp,
            conv,
            img: Vec::new(),
            activation,
            lstm,
            policy,
            value,
            obs_dim: in_dim + extra,
            extra,
            core_in: Vec::new(),
            gates: Vec::new(),
            gate_bias: Vec::new(),
            h_prev: Vec::new(),
            c_prev: Vec::new(),
            cell: Vec::new(),
            tanh_cell: Vec::new(),
            h: Vec::new(),
            final_state: Vec::new(),
            logits: Vec::new(),
            values: Vec::new(),
            keep: Vec::new(),
            d_ctx: Vec::new(),
            d_gates: Vec::new(),
            d_z: Vec::new(),
            d_a: Vec::new(),
            d_h: Vec::new(),
            d_c: Vec::new(),
            d_h_prev: Vec::new(),
            rows: 0,
            b: 0,
            sparse: None,
            w0_t: Vec::new(),
            w0_t_stale: true,
            d_w0_t: Vec::new(),
        })
    }

    /// Copies every parameter from `snap`, checking shapes.
    pub fn load(&mut self, snap: &ParamSnapshot) -> Result<(), AgentError> {
        self.mark_stale();
        for p in &mut self.params {
            let (dims, data) = snap
                .get(&p.name)
                .ok_or_else(|| AgentError::Snapshot(p.name.clone()))?;
            if dims != p.dims.as_slice() {
                return Err(AgentError::Snapshot(p.name.clone()));
            }
            p.data.copy_from_slice(data);
        }
        Ok(())
    }

    /// The parameters changed: the layouts derived from them are rebuilt at the next
    /// forward.
    fn mark_stale(&mut self) {
        self.w0_t_stale = true;
        if let Some(c) = &mut self.conv {
            c.stale = true;
        }
    }

    fn p(&self, i: usize) -> &[f32] {
        &self.params[i].data
    }

    /// Width of the encoder's output, Dz.
    fn z_dim(&self) -> usize {
        match (&self.conv, self.mlp.last()) {
            (Some(c), _) => c.fc_out,
            (None, Some(l)) => l.out_dim,
            (None, None) => self.obs_dim - self.extra,
        }
    }

    /// The core's input rows: z, or `core_in` (z and the extra inputs).
    fn core_input(&self) -> &[f32] {
        match self.extra {
            0 => &self.acts[self.mlp.len()],
            _ => &self.core_in,
        }
    }

    /// `y[n, out] = x[n, in] · Wᵀ + b`.
    fn dense_fwd(&self, l: Dense, x: &[f32], y: &mut Vec<f32>, n: usize) {
        resize(y, n * l.out_dim);
        let bias = self.p(l.b);
        for row in y.chunks_exact_mut(l.out_dim) {
            row.copy_from_slice(bias);
        }
        matmul(
            y,
            x,
            Op::N,
            self.p(l.w),
            Op::T,
            (n, l.in_dim, l.out_dim),
            true,
        );
    }

    /// Runs the network over `rows = (T+1)·B` rows of `obs` (time-major), from
    /// `init_state` `[B, S]`, zeroing the state before step t of sequence b where
    /// `first[t·B + b] == 1`; keeps what [`LeanNet::backward`] needs.
    pub fn forward_rows(
        &mut self,
        obs: &[f32],
        first: &[f32],
        init_state: &[f32],
        rows: usize,
        b: usize,
    ) {
        debug_assert_eq!(obs.len(), rows * self.obs_dim);
        self.rows = rows;
        self.b = b;
        // Encoder, on the observation without its extra inputs.
        let mut acts = std::mem::take(&mut self.acts);
        let enc_in = self.obs_dim - self.extra;
        if let Some(conv) = &mut self.conv {
            // The conv encoder writes z into acts[0].
            let img = if self.extra == 0 {
                obs
            } else {
                self.img.clear();
                for row in obs.chunks_exact(self.obs_dim) {
                    self.img.extend_from_slice(&row[..enc_in]);
                }
                &self.img
            };
            conv.forward(&self.params, img, rows, &mut acts[0]);
        } else {
            acts[0].clear();
            if self.extra == 0 {
                acts[0].extend_from_slice(obs);
            } else {
                for row in obs.chunks_exact(self.obs_dim) {
                    acts[0].extend_from_slice(&row[..enc_in]);
                }
            }
        }
        self.sparse = self
            .mlp
            .first()
            .and_then(|_| take_sparse(&acts[0], enc_in, self.sparse.take()));
        for (li, &l) in self.mlp.iter().enumerate() {
            let (done, rest) = acts.split_at_mut(li + 1);
            let y = &mut rest[0];
            match (&self.sparse, li) {
                (Some(csr), 0) => {
                    if self.w0_t_stale {
                        transpose(&self.params[l.w].data, l.out_dim, l.in_dim, &mut self.w0_t);
                        self.w0_t_stale = false;
                    }
                    sparse_fwd(csr, &self.w0_t, self.p(l.b), y, l.out_dim);
                }
                _ => self.dense_fwd(l, &done[li], y, rows),
            }
            activate(y, self.activation);
        }
        self.acts = acts;
        // Core: z, and the extra inputs beside it.
        if self.extra > 0 {
            let (dz, e) = (self.z_dim(), self.extra);
            resize(&mut self.core_in, rows * (dz + e));
            let z = &self.acts[self.mlp.len()];
            for (r, out) in self.core_in.chunks_exact_mut(dz + e).enumerate() {
                out[..dz].copy_from_slice(&z[r * dz..(r + 1) * dz]);
                out[dz..].copy_from_slice(&obs[(r + 1) * self.obs_dim - e..(r + 1) * self.obs_dim]);
            }
        }
        if let Some(lstm) = self.lstm {
            self.lstm_forward(lstm, first, init_state);
        }
        // Heads.
        let mut logits = std::mem::take(&mut self.logits);
        let mut values = std::mem::take(&mut self.values);
        let ctx = if self.lstm.is_some() {
            &self.h
        } else {
            &self.acts[self.mlp.len()]
        };
        self.dense_fwd(self.policy, ctx, &mut logits, rows);
        self.dense_fwd(self.value, ctx, &mut values, rows);
        self.logits = logits;
        self.values = values;
    }

    fn lstm_forward(&mut self, l: LstmIdx, first: &[f32], init_state: &[f32]) {
        let (n, b, h) = (self.rows, self.b, l.hidden);
        let steps = n / b;
        let in_dim = self.z_dim() + self.extra;
        // Input projections of every step at once; only h·W_hhᵀ is sequential.
        resize(&mut self.gates, n * 4 * h);
        resize(&mut self.gate_bias, 4 * h);
        let (b_ih, b_hh) = (&self.params[l.b_ih].data, &self.params[l.b_hh].data);
        for (k, v) in self.gate_bias.iter_mut().enumerate() {
            *v = b_ih[k] + b_hh[k];
        }
        for row in self.gates.chunks_exact_mut(4 * h) {
            row.copy_from_slice(&self.gate_bias);
        }
        let x = match self.extra {
            0 => &self.acts[self.mlp.len()],
            _ => &self.core_in,
        };
        matmul(
            &mut self.gates,
            x,
            Op::N,
            &self.params[l.w_ih].data,
            Op::T,
            (n, in_dim, 4 * h),
            true,
        );
        for v in [
            &mut self.h_prev,
            &mut self.c_prev,
            &mut self.cell,
            &mut self.tanh_cell,
            &mut self.h,
        ] {
            resize(v, n * h);
        }
        resize(&mut self.keep, n);
        for (k, f) in self.keep.iter_mut().zip(first) {
            *k = 1.0 - f;
        }
        resize(&mut self.final_state, b * 2 * h);
        for t in 0..steps {
            let rs = t * b * h..(t + 1) * b * h;
            // The state entering step t, reset where an episode starts.
            for j in 0..b {
                let keep = self.keep[t * b + j];
                let (hp, cp) = if t == 0 {
                    let s = &init_state[j * 2 * h..(j + 1) * 2 * h];
                    (&s[..h], &s[h..])
                } else {
                    let r = (t - 1) * b * h + j * h;
                    (&self.h[r..r + h], &self.cell[r..r + h])
                };
                let r = t * b * h + j * h;
                for k in 0..h {
                    self.h_prev[r + k] = keep * hp[k];
                    self.c_prev[r + k] = keep * cp[k];
                }
            }
            let g = &mut self.gates[t * b * 4 * h..(t + 1) * b * 4 * h];
            matmul(
                g,
                &self.h_prev[rs.clone()],
                Op::N,
                &self.params[l.w_hh].data,
                Op::T,
                (b, h, 4 * h),
                true,
            );
            let rs = t * b * h..(t + 1) * b * h;
            cell_forward(
                g,
                &self.c_prev[rs.clone()],
                &mut self.cell[rs.clone()],
                &mut self.tanh_cell[rs.clone()],
                &mut self.h[rs],
                h,
            );
        }
        let last = (steps - 1) * b * h;
        for j in 0..b {
            let r = last + j * h;
            let s = &mut self.final_state[j * 2 * h..(j + 1) * 2 * h];
            s[..h].copy_from_slice(&self.h[r..r + h]);
            s[h..].copy_from_slice(&self.cell[r..r + h]);
        }
    }

    /// Gradients of a loss with respect to every parameter, given its gradients with
    /// respect to the last forward's logits `[N, A]`, values `[N]`, and optionally the
    /// encoder's output z `[N, Dz]` and the context c `[N, Dc]` (an auxiliary loss's).
    /// Returns them in [`LeanNetwork::param_names`]' order.
    pub fn backward_rows(
        &mut self,
        d_logits: &[f32],
        d_values: &[f32],
        d_z_aux: Option<&[f32]>,
        d_c_aux: Option<&[f32]>,
    ) -> &[Vec<f32>] {
        let n = self.rows;
        let mut grads = std::mem::take(&mut self.grads);
        let ctx_dim = self.policy.in_dim;
        // Heads: d ctx = dlogits·Wp + dv·wv (+ the auxiliary loss's).
        let ctx = if self.lstm.is_some() {
            &self.h
        } else {
            &self.acts[self.mlp.len()]
        };
        self.dense_bwd(self.policy, d_logits, ctx, &mut grads, n);
        self.dense_bwd(self.value, d_values, ctx, &mut grads, n);
        resize(&mut self.d_ctx, n * ctx_dim);
        match d_c_aux {
            Some(d) => self.d_ctx.copy_from_slice(&d[..n * ctx_dim]),
            None => self.d_ctx.fill(0.0),
        }
        matmul(
            &mut self.d_ctx,
            d_logits,
            Op::N,
            &self.params[self.policy.w].data,
            Op::N,
            (n, self.policy.out_dim, ctx_dim),
            true,
        );
        matmul(
            &mut self.d_ctx,
            d_values,
            Op::N,
            &self.params[self.value.w].data,
            Op::N,
            (n, 1, ctx_dim),
            true,
        );
        // Core (through time), then the encoder's output gradient in d_z.
        let mut d_z = std::mem::take(&mut self.d_z);
        if let Some(l) = self.lstm {
            self.lstm_backward(l, &mut grads, &mut d_z);
        } else {
            std::mem::swap(&mut d_z, &mut self.d_ctx);
        }
        if let Some(d) = d_z_aux {
            for (a, b) in d_z.iter_mut().zip(d) {
                *a += b;
            }
        }
        // Encoder.
        let mut d_out = d_z;
        for li in (0..self.mlp.len()).rev() {
            let l = self.mlp[li];
            let y = &self.acts[li + 1];
            match self.activation {
                Activation::Tanh => d_out.iter_mut().zip(y).for_each(|(d, y)| *d *= 1.0 - y * y),
                Activation::Relu => d_out.iter_mut().zip(y).for_each(|(d, y)| {
                    if y.is_sign_negative() {
                        *d = 0.0
                    }
                }),
            }
            match (&self.sparse, li) {
                (Some(csr), 0) => {
                    // dWᵀ[col] += x · dy[row] over the non-zeros, then transposed.
                    self.d_w0_t.clear();
                    self.d_w0_t.resize(l.in_dim * l.out_dim, 0.0);
                    let o = l.out_dim;
                    for r in 0..n {
                        let dy = &d_out[r * o..(r + 1) * o];
                        for k in csr.ptr[r]..csr.ptr[r + 1] {
                            let (c, v) = (csr.col[k] as usize, csr.val[k]);
                            for (g, d) in self.d_w0_t[c * o..(c + 1) * o].iter_mut().zip(dy) {
                                *g += v * d;
                            }
                        }
                    }
                    transpose(&self.d_w0_t, l.in_dim, o, &mut grads[l.w]);
                    column_sums(&d_out[..n * o], &mut grads[l.b]);
                }
                _ => self.dense_bwd(l, &d_out, &self.acts[li], &mut grads, n),
            }
            if li > 0 {
                let mut d_in = std::mem::take(&mut self.d_a);
                resize(&mut d_in, n * l.in_dim);
                matmul(
                    &mut d_in,
                    &d_out,
                    Op::N,
                    self.p(l.w),
                    Op::N,
                    (n, l.out_dim, l.in_dim),
                    false,
                );
                self.d_a = std::mem::replace(&mut d_out, d_in);
            }
        }
        if let Some(conv) = &mut self.conv {
            conv.backward(&self.acts[0], &mut d_out, &mut grads);
        }
        self.d_z = d_out;
        self.grads = grads;
        &self.grads
    }

    /// dW = dyᵀ·x and db = Σ_rows dy into `grads`.
    fn dense_bwd(&self, l: Dense, dy: &[f32], x: &[f32], grads: &mut [Vec<f32>], n: usize) {
        matmul(
            &mut grads[l.w],
            dy,
            Op::T,
            x,
            Op::N,
            (l.out_dim, n, l.in_dim),
            false,
        );
        column_sums(&dy[..n * l.out_dim], &mut grads[l.b]);
    }

    fn lstm_backward(&mut self, l: LstmIdx, grads: &mut [Vec<f32>], d_z: &mut Vec<f32>) {
        let (n, b, h) = (self.rows, self.b, l.hidden);
        let steps = n / b;
        resize(&mut self.d_gates, n * 4 * h);
        resize(&mut self.d_h, b * h);
        resize(&mut self.d_c, b * h);
        resize(&mut self.d_h_prev, b * h);
        self.d_h.fill(0.0);
        self.d_c.fill(0.0);
        for t in (0..steps).rev() {
            let (rs, gs) = (
                t * b * h..(t + 1) * b * h,
                t * b * 4 * h..(t + 1) * b * 4 * h,
            );
            cell_backward(
                CellCache {
                    gates: &self.gates[gs.clone()],
                    c_prev: &self.c_prev[rs.clone()],
                    tanh_cell: &self.tanh_cell[rs.clone()],
                    keep: &self.keep[t * b..(t + 1) * b],
                },
                &self.d_ctx[rs],
                &self.d_h,
                &mut self.d_c,
                &mut self.d_gates[gs],
                h,
            );
            if t == 0 {
                break;
            }
            matmul(
                &mut self.d_h_prev,
                &self.d_gates[t * b * 4 * h..(t + 1) * b * 4 * h],
                Op::N,
                &self.params[l.w_hh].data,
                Op::N,
                (b, 4 * h, h),
                false,
            );
            for j in 0..b {
                let keep = self.keep[t * b + j];
                for k in 0..h {
                    self.d_h[j * h + k] = keep * self.d_h_prev[j * h + k];
                }
            }
        }
        // Weights: one product over all steps each.
        let (z_dim, in_dim) = (self.z_dim(), self.z_dim() + self.extra);
        matmul(
            &mut grads[l.w_hh],
            &self.d_gates,
            Op::T,
            &self.h_prev,
            Op::N,
            (4 * h, n, h),
            false,
        );
        matmul(
            &mut grads[l.w_ih],
            &self.d_gates,
            Op::T,
            self.core_input(),
            Op::N,
            (4 * h, n, in_dim),
            false,
        );
        column_sums(&self.d_gates, &mut grads[l.b_ih]);
        let (lo, hi) = grads.split_at_mut(l.b_hh.max(l.b_ih));
        let (src, dst) = if l.b_ih < l.b_hh {
            (&lo[l.b_ih], &mut hi[0])
        } else {
            (&hi[0], &mut lo[l.b_hh])
        };
        dst.copy_from_slice(src);
        resize(d_z, n * in_dim);
        matmul(
            d_z,
            &self.d_gates,
            Op::N,
            &self.params[l.w_ih].data,
            Op::N,
            (n, 4 * h, in_dim),
            false,
        );
        if self.extra > 0 {
            // Keep z's columns: the extra inputs are data, not parameters.
            for r in 0..n {
                d_z.copy_within(r * in_dim..r * in_dim + z_dim, r * z_dim);
            }
            d_z.truncate(n * z_dim);
        }
    }
}

/// The activation in place. ReLU writes max(x, 0) with −0 marking x < 0: the backward
/// passes the gradient where x ≥ 0, as candle's relu does (relu'(0) = 1).
#[multiversion::multiversion(targets("x86_64+avx2+fma"))]
fn activate(y: &mut [f32], a: Activation) {
    match a {
        Activation::Tanh => y.iter_mut().for_each(|v| *v = tanh(*v)),
        Activation::Relu => y
            .iter_mut()
            .for_each(|v| *v = if *v >= 0.0 { *v + 0.0 } else { -0.0 }),
    }
}

/// The LSTM cell of one step for `B` rows: pre-activations `g` `[B, 4H]` (i, f, g, o)
/// become the gates in place; writes the cell, tanh(cell) and h `[B, H]`.
#[multiversion::multiversion(targets("x86_64+avx2+fma"))]
fn cell_forward(
    g: &mut [f32],
    c_prev: &[f32],
    cell: &mut [f32],
    tanh_cell: &mut [f32],
    h_out: &mut [f32],
    h: usize,
) {
    for (j, gr) in g.chunks_exact_mut(4 * h).enumerate() {
        let r = j * h;
        let (gi, rest) = gr.split_at_mut(h);
        let (gf, rest) = rest.split_at_mut(h);
        let (gg, go) = rest.split_at_mut(h);
        for k in 0..h {
            let i = sigmoid(gi[k]);
            let f = sigmoid(gf[k]);
            let g = tanh(gg[k]);
            let o = sigmoid(go[k]);
            (gi[k], gf[k], gg[k], go[k]) = (i, f, g, o);
            let c = f * c_prev[r + k] + i * g;
            let tc = tanh(c);
            cell[r + k] = c;
            tanh_cell[r + k] = tc;
            h_out[r + k] = o * tc;
        }
    }
}

/// What the backward of one LSTM step reads of its forward, `B` rows.
#[derive(Clone, Copy)]
struct CellCache<'a> {
    gates: &'a [f32],
    c_prev: &'a [f32],
    tanh_cell: &'a [f32],
    keep: &'a [f32],
}

/// The backward of one LSTM step: from d h_t (`d_ctx` from above plus the carried
/// `d_h`) and the carried d c_t (`d_c`, replaced by d c_{t-1} before the reset mask),
/// the pre-activation gradients `dg` `[B, 4H]`.
#[multiversion::multiversion(targets("x86_64+avx2+fma"))]
fn cell_backward(
    m: CellCache,
    d_ctx: &[f32],
    d_h: &[f32],
    d_c: &mut [f32],
    dg: &mut [f32],
    h: usize,
) {
    for (j, dgr) in dg.chunks_exact_mut(4 * h).enumerate() {
        let r = j * h;
        let gr = &m.gates[j * 4 * h..(j + 1) * 4 * h];
        let keep = m.keep[j];
        for k in 0..h {
            let (i, f, gg, o) = (gr[k], gr[h + k], gr[2 * h + k], gr[3 * h + k]);
            let dh = d_ctx[r + k] + d_h[r + k];
            let tc = m.tanh_cell[r + k];
            let dc = dh * o * (1.0 - tc * tc) + d_c[r + k];
            dgr[k] = dc * gg * i * (1.0 - i);
            dgr[h + k] = dc * m.c_prev[r + k] * f * (1.0 - f);
            dgr[2 * h + k] = dc * i * (1.0 - gg * gg);
            dgr[3 * h + k] = dh * tc * o * (1.0 - o);
            // The cell entering step t, before the reset mask.
            d_c[r + k] = dc * f * keep;
        }
    }
}

/// The non-zeros of `x` `[rows, dim]` when they are at most [`SPARSE_DENSITY`] of it
/// (reusing `old`'s buffers), else `None`.
fn take_sparse(x: &[f32], dim: usize, old: Option<Csr>) -> Option<Csr> {
    let nnz = x.iter().filter(|&&v| v != 0.0).count();
    if dim == 0 || nnz as f32 > SPARSE_DENSITY * x.len() as f32 {
        return None;
    }
    let mut csr = old.unwrap_or_default();
    csr.ptr.clear();
    csr.col.clear();
    csr.val.clear();
    csr.ptr.push(0);
    for row in x.chunks_exact(dim) {
        for (c, &v) in row.iter().enumerate() {
            if v != 0.0 {
                csr.col.push(c as u32);
                csr.val.push(v);
            }
        }
        csr.ptr.push(csr.col.len());
    }
    Some(csr)
}

/// `y[r] = b + Σ_{x[r, c] ≠ 0} x[r, c] · Wᵀ[c]`, with `w_t` `[in, out]`.
fn sparse_fwd(csr: &Csr, w_t: &[f32], bias: &[f32], y: &mut Vec<f32>, out: usize) {
    let rows = csr.ptr.len() - 1;
    resize(y, rows * out);
    for r in 0..rows {
        let yr = &mut y[r * out..(r + 1) * out];
        yr.copy_from_slice(bias);
        for k in csr.ptr[r]..csr.ptr[r + 1] {
            let (c, v) = (csr.col[k] as usize, csr.val[k]);
            for (a, w) in yr.iter_mut().zip(&w_t[c * out..(c + 1) * out]) {
                *a += v * w;
            }
        }
    }
}

/// `dst[c, r] = src[r, c]` for `src` `[rows, cols]`.
fn transpose(src: &[f32], rows: usize, cols: usize, dst: &mut Vec<f32>) {
    resize(dst, rows * cols);
    for r in 0..rows {
        for c in 0..cols {
            dst[c * rows + r] = src[r * cols + c];
        }
    }
}

/// `out[j] = Σ_rows m[row, j]` for `m` row-major with `out.len()` columns (a bias's
/// gradient).
pub(crate) fn column_sums(m: &[f32], out: &mut [f32]) {
    out.fill(0.0);
    for row in m.chunks_exact(out.len()) {
        for (a, b) in out.iter_mut().zip(row) {
            *a += b;
        }
    }
}

fn resize(v: &mut Vec<f32>, n: usize) {
    if v.len() != n {
        v.resize(n, 0.0);
    }
}

impl LeanNetwork for LeanNet {
    fn param_names(&self) -> Vec<String> {
        self.params.iter().map(|p| p.name.clone()).collect()
    }

    fn param_mut(&mut self, i: usize) -> &mut [f32] {
        self.mark_stale();
        &mut self.params[i].data
    }

    fn forward(&mut self, obs: &[f32], first: &[f32], init_state: &[f32], b: usize) {
        let rows = obs.len() / self.obs_dim;
        self.forward_rows(obs, first, init_state, rows, b);
    }

    fn outputs(&self) -> LeanOutputs<'_> {
        let z = &self.acts[self.mlp.len()];
        LeanOutputs {
            logits: &self.logits,
            values: &self.values,
            z,
            z_dim: self.z_dim(),
            c: if self.lstm.is_some() { &self.h } else { z },
            c_dim: self.policy.in_dim,
            has_core: self.lstm.is_some(),
            b: self.b,
        }
    }

    fn backward(
        &mut self,
        d_logits: &[f32],
        d_values: &[f32],
        d_z: Option<&[f32]>,
        d_c: Option<&[f32]>,
    ) -> &[Vec<f32>] {
        self.backward_rows(d_logits, d_values, d_z, d_c)
    }
}

/// The actors' path: [`LeanNet`]'s forward on the `B` rows of one step.
pub struct LeanActor {
    net: LeanNet,
    num_actions: usize,
    state_size: usize,
    first: Vec<f32>,
}

impl LeanActor {
    /// `None` when `spec`'s encoder has no lean path.
    pub fn new(spec: &NetSpec) -> Option<LeanActor> {
        Some(LeanActor {
            net: LeanNet::new(spec)?,
            num_actions: spec.num_actions,
            state_size: spec.state_size(),
            first: Vec::new(),
        })
    }
}

impl ActorPolicy for LeanActor {
    fn load(&mut self, snapshot: &ParamSnapshot) -> Result<(), AgentError> {
        self.net.load(snapshot)
    }

    fn state_size(&self) -> usize {
        self.state_size
    }

    fn num_actions(&self) -> usize {
        self.num_actions
    }

    fn forward(
        &mut self,
        obs: &[f32],
        state: &mut [f32],
        logits: &mut [f32],
        values: &mut [f32],
    ) -> Result<(), AgentError> {
        let b = obs.len() / self.net.obs_dim;
        // The caller zeroes the state at episode starts.
        self.first.resize(b, 0.0);
        self.net.forward_rows(obs, &self.first, state, b, b);
        logits.copy_from_slice(&self.net.logits[..b * self.num_actions]);
        values.copy_from_slice(&self.net.values[..b]);
        if self.state_size > 0 {
            state.copy_from_slice(&self.net.final_state);
        }
        Ok(())
    }
}
