//! The lean path of CPC's context network g_ar ([`crate::nn::gru::Gru`]): the GRU over
//! time-major host slices from a zero state, forward and backward through time.
//!
//! The input projections of every step are one GEMM; each step then multiplies the
//! `[B, H]` state by `W_hhᵀ` and applies the gates (PyTorch's order r, z, n):
//! r = σ(W_ir x + b_ir + W_hr h + b_hr), z = σ(W_iz x + b_iz + W_hz h + b_hz),
//! n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn)), h' = n + z ⊙ (h − n).
//! Backward keeps, per step, the gradients of both pre-activations (input side and
//! hidden side, which differ only in n's part), so that the weight gradients are one GEMM
//! each over the whole unroll. The parameters stay in candle's var map and the gradients
//! go to candle's gradient store (as [`super::audio::LeanAudioEncoder`]); `tests/lean.rs`
//! checks h and every gradient against candle's GRU.

use anyhow::{ensure, Result};
use candle_core::backprop::GradStore;
use candle_core::{Device, Tensor, Var};
use candle_nn::VarMap;

use super::{column_sums, resize};
use crate::nn::fast::{sigmoid, tanh};
use crate::nn::gemm::{matmul, Op};
use crate::nn::resnet::var;

/// A GRU whose parameters live in a var map, with the activations of its last forward.
pub struct LeanGru {
    w_ih: Var,
    w_hh: Var,
    b_ih: Var,
    b_hh: Var,
    in_dim: usize,
    hidden: usize,
    /// Host copies of the parameters, read at each forward.
    wih: Vec<f32>,
    whh: Vec<f32>,
    bih: Vec<f32>,
    bhh: Vec<f32>,
    /// The last forward: steps, sequences, its input `[T·B, in]`, the states
    /// `[(T+1)·B, H]` (h_0 = 0 first), the gates r, z, n `[T·B, 3H]` and W_hn h + b_hn
    /// `[T·B, H]`.
    t_len: usize,
    b: usize,
    x: Vec<f32>,
    h: Vec<f32>,
    gates: Vec<f32>,
    ghn: Vec<f32>,
    /// Scratch: one step's hidden projections; backward's pre-activation gradients and
    /// the running gradient of the state.
    gh: Vec<f32>,
    d_gi: Vec<f32>,
    d_gh: Vec<f32>,
    d_h: Vec<f32>,
    d_x: Vec<f32>,
}

impl LeanGru {
    /// The GRU over the parameters under `prefix` (e.g. `context`) of `varmap`, as
    /// [`crate::nn::gru::Gru::new`] reads them.
    pub fn new(varmap: &VarMap, prefix: &str, in_dim: usize, hidden: usize) -> Result<Self> {
        let get = |n: &str| var(varmap, &format!("{prefix}.{n}"));
        let gru = LeanGru {
            w_ih: get("weight_ih")?,
            w_hh: get("weight_hh")?,
            b_ih: get("bias_ih")?,
            b_hh: get("bias_hh")?,
            in_dim,
            hidden,
            wih: Vec::new(),
            whh: Vec::new(),
            bih: Vec::new(),
            bhh: Vec::new(),
            t_len: 0,
            b: 0,
            x: Vec::new(),
            h: Vec::new(),
            gates: Vec::new(),
            ghn: Vec::new(),
            gh: Vec::new(),
            d_gi: Vec::new(),
            d_gh: Vec::new(),
            d_h: Vec::new(),
            d_x: Vec::new(),
        };
        let h3 = 3 * hidden;
        for (v, dims) in [
            (&gru.w_ih, vec![h3, in_dim]),
            (&gru.w_hh, vec![h3, hidden]),
            (&gru.b_ih, vec![h3]),
            (&gru.b_hh, vec![h3]),
        ] {
            ensure!(
                v.as_tensor().dims() == dims.as_slice(),
                "the GRU '{prefix}' has a parameter of shape {:?}, expected {dims:?}",
                v.as_tensor().dims()
            );
        }
        Ok(gru)
    }

    fn load(&mut self) -> Result<()> {
        let host = |v: &Var| -> Result<Vec<f32>> { Ok(v.as_tensor().flatten_all()?.to_vec1()?) };
        self.wih = host(&self.w_ih)?;
        self.whh = host(&self.w_hh)?;
        self.bih = host(&self.b_ih)?;
        self.bhh = host(&self.b_hh)?;
        Ok(())
    }

    /// Every state h_1..h_T `[T·B, H]` of the time-major input `x` `[T·B, in]` of `b`
    /// sequences, from h_0 = 0.
    pub fn forward(&mut self, x: &[f32], t_len: usize, b: usize) -> Result<&[f32]> {
        let (d, h) = (self.in_dim, self.hidden);
        ensure!(
            t_len > 0 && b > 0 && x.len() == t_len * b * d,
            "{} inputs are not {t_len} steps of {b} sequences of {d}",
            x.len()
        );
        self.load()?;
        (self.t_len, self.b) = (t_len, b);
        let (n, h3) = (t_len * b, 3 * h);
        self.x.clear();
        self.x.extend_from_slice(x);
        // The input projections of every step (with b_ih) into the gates' buffer, which
        // each step then overwrites with r, z and n.
        resize(&mut self.gates, n * h3);
        for row in self.gates.chunks_exact_mut(h3) {
            row.copy_from_slice(&self.bih);
        }
        matmul(
            &mut self.gates,
            x,
            Op::N,
            &self.wih,
            Op::T,
            (n, d, h3),
            true,
        );
        resize(&mut self.h, (n + b) * h);
        self.h[..b * h].fill(0.0);
        resize(&mut self.ghn, n * h);
        resize(&mut self.gh, b * h3);
        for t in 0..t_len {
            for row in self.gh.chunks_exact_mut(h3) {
                row.copy_from_slice(&self.bhh);
            }
            let (prev, next) = self.h.split_at_mut((t + 1) * b * h);
            let prev = &prev[t * b * h..];
            matmul(
                &mut self.gh,
                prev,
                Op::N,
                &self.whh,
                Op::T,
                (b, h, h3),
                true,
            );
            let rows = t * b..(t + 1) * b;
            let gates = &mut self.gates[rows.start * h3..rows.end * h3];
            let ghn = &mut self.ghn[rows.start * h..rows.end * h];
            for r in 0..b {
                let g = &mut gates[r * h3..(r + 1) * h3];
                let gh = &self.gh[r * h3..(r + 1) * h3];
                let (hp, hn) = (&prev[r * h..(r + 1) * h], &mut next[r * h..(r + 1) * h]);
                for j in 0..h {
                    let rg = sigmoid(g[j] + gh[j]);
                    let zg = sigmoid(g[h + j] + gh[h + j]);
                    let ng = tanh(g[2 * h + j] + rg * gh[2 * h + j]);
                    (g[j], g[h + j], g[2 * h + j]) = (rg, zg, ng);
                    ghn[r * h + j] = gh[2 * h + j];
                    hn[j] = ng + zg * (hp[j] - ng);
                }
            }
        }
        Ok(&self.h[b * h..])
    }

    /// The gradients of every parameter from `d_out` (the gradient of the last
    /// forward's states `[T·B, H]`), into `grads`; returns the input's gradient
    /// `[T·B, in]`.
    pub fn backward(&mut self, d_out: &[f32], grads: &mut GradStore) -> Result<&[f32]> {
        let (t_len, b, d, h) = (self.t_len, self.b, self.in_dim, self.hidden);
        let (n, h3) = (t_len * b, 3 * h);
        ensure!(
            n > 0 && d_out.len() == n * h,
            "a gradient of {} floats for {t_len} steps of {b} states of {h}",
            d_out.len()
        );
        resize(&mut self.d_gi, n * h3);
        resize(&mut self.d_gh, n * h3);
        resize(&mut self.d_h, b * h);
        self.d_h.fill(0.0);
        for t in (0..t_len).rev() {
            let rows = t * b * h..(t + 1) * b * h;
            self.d_h
                .iter_mut()
                .zip(&d_out[rows.clone()])
                .for_each(|(a, g)| *a += g);
            let gates = &self.gates[t * b * h3..(t + 1) * b * h3];
            let ghn = &self.ghn[rows];
            let prev = &self.h[t * b * h..(t + 1) * b * h];
            let d_gi = &mut self.d_gi[t * b * h3..(t + 1) * b * h3];
            let d_gh = &mut self.d_gh[t * b * h3..(t + 1) * b * h3];
            for r in 0..b {
                let g = &gates[r * h3..(r + 1) * h3];
                let (gi, gh) = (
                    &mut d_gi[r * h3..(r + 1) * h3],
                    &mut d_gh[r * h3..(r + 1) * h3],
                );
                let dh = &mut self.d_h[r * h..(r + 1) * h];
                for j in 0..h {
                    let (rg, zg, ng) = (g[j], g[h + j], g[2 * h + j]);
                    let dhj = dh[j];
                    let d_an = dhj * (1.0 - zg) * (1.0 - ng * ng);
                    let d_ar = d_an * ghn[r * h + j] * rg * (1.0 - rg);
                    let d_az = dhj * (prev[r * h + j] - ng) * zg * (1.0 - zg);
                    (gi[j], gi[h + j], gi[2 * h + j]) = (d_ar, d_az, d_an);
                    (gh[j], gh[h + j], gh[2 * h + j]) = (d_ar, d_az, d_an * rg);
                    // The direct path h' = … + z ⊙ h; the path through W_hh is added below.
                    dh[j] = dhj * zg;
                }
            }
            matmul(
                &mut self.d_h,
                d_gh,
                Op::N,
                &self.whh,
                Op::N,
                (b, h3, h),
                true,
            );
        }
        // Weight gradients over the whole unroll: dW_hh = d_ghᵀ · h_{t−1}, dW_ih = d_giᵀ · x.
        let mut g_whh = vec![0f32; h3 * h];
        matmul(
            &mut g_whh,
            &self.d_gh,
            Op::T,
            &self.h[..n * h],
            Op::N,
            (h3, n, h),
            false,
        );
        let mut g_wih = vec![0f32; h3 * d];
        matmul(
            &mut g_wih,
            &self.d_gi,
            Op::T,
            &self.x,
            Op::N,
            (h3, n, d),
            false,
        );
        let (mut g_bhh, mut g_bih) = (vec![0f32; h3], vec![0f32; h3]);
        column_sums(&self.d_gh, &mut g_bhh);
        column_sums(&self.d_gi, &mut g_bih);
        let dev = Device::Cpu;
        grads.insert(
            self.w_hh.as_tensor(),
            Tensor::from_vec(g_whh, (h3, h), &dev)?,
        );
        grads.insert(
            self.w_ih.as_tensor(),
            Tensor::from_vec(g_wih, (h3, d), &dev)?,
        );
        grads.insert(self.b_hh.as_tensor(), Tensor::from_vec(g_bhh, h3, &dev)?);
        grads.insert(self.b_ih.as_tensor(), Tensor::from_vec(g_bih, h3, &dev)?);
        resize(&mut self.d_x, n * d);
        matmul(
            &mut self.d_x,
            &self.d_gi,
            Op::N,
            &self.wih,
            Op::N,
            (n, h3, d),
            false,
        );
        Ok(&self.d_x)
    }
}
