//! A GRU (Cho et al. 2014), CPC's autoregressive context network g_ar, with PyTorch's
//! `nn.GRU` parameter names and gate order (r, z, n):
//! r = σ(W_ir x + b_ir + W_hr h + b_hr), z = σ(W_iz x + b_iz + W_hz h + b_hz),
//! n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn)), h' = (1 − z) ⊙ n + z ⊙ h.

use candle_core::Tensor;
use candle_nn::VarBuilder;

use super::init::Init;

pub struct Gru {
    w_ih_t: Tensor,
    w_hh_t: Tensor,
    b_ih: Tensor,
    b_hh: Tensor,
    pub hidden: usize,
}

impl Gru {
    /// PyTorch's initialisation: every weight and bias uniform in ±1/√H.
    pub fn init(
        in_dim: usize,
        hidden: usize,
        init: &mut Init,
        prefix: &str,
    ) -> candle_core::Result<()> {
        let h3 = 3 * hidden;
        init.uniform_fan_in(&format!("{prefix}.weight_ih"), &[h3, in_dim], hidden)?;
        init.uniform_fan_in(&format!("{prefix}.weight_hh"), &[h3, hidden], hidden)?;
        init.uniform_fan_in(&format!("{prefix}.bias_ih"), &[h3], hidden)?;
        init.uniform_fan_in(&format!("{prefix}.bias_hh"), &[h3], hidden)?;
        Ok(())
    }

    pub fn new(in_dim: usize, hidden: usize, vb: VarBuilder) -> candle_core::Result<Self> {
        Ok(Gru {
            w_ih_t: vb.get((3 * hidden, in_dim), "weight_ih")?.t()?,
            w_hh_t: vb.get((3 * hidden, hidden), "weight_hh")?.t()?,
            b_ih: vb.get(3 * hidden, "bias_ih")?,
            b_hh: vb.get(3 * hidden, "bias_hh")?,
            hidden,
        })
    }

    /// Runs `x` `[B, T, in]` from a zero state; returns every h_t as `[B, T, H]`.
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let h0 = Tensor::zeros((x.dim(0)?, self.hidden), x.dtype(), x.device())?;
        self.forward_from(x, &h0)
    }

    /// Runs `x` `[B, T, in]` from the state `h0` `[B, H]`; returns every h_t as `[B, T, H]`.
    pub fn forward_from(&self, x: &Tensor, h0: &Tensor) -> candle_core::Result<Tensor> {
        let (b, t_len, in_dim) = x.dims3()?;
        let h_dim = self.hidden;
        // Input projections of every step at once; only h·W_hh is sequential.
        let gx = x
            .reshape((b * t_len, in_dim))?
            .matmul(&self.w_ih_t)?
            .broadcast_add(&self.b_ih)?
            .reshape((b, t_len, 3 * h_dim))?;
        let mut h = h0.clone();
        let mut outs = Vec::with_capacity(t_len);
        for t in 0..t_len {
            let gi = gx.narrow(1, t, 1)?.squeeze(1)?;
            let gh = h.matmul(&self.w_hh_t)?.broadcast_add(&self.b_hh)?;
            let rz = super::fast::sigmoid_t(
                &(gi.narrow(1, 0, 2 * h_dim)? + gh.narrow(1, 0, 2 * h_dim)?)?,
            )?;
            let r = rz.narrow(1, 0, h_dim)?;
            let z = rz.narrow(1, h_dim, h_dim)?;
            let n = super::fast::tanh_t(
                &(gi.narrow(1, 2 * h_dim, h_dim)? + (r * gh.narrow(1, 2 * h_dim, h_dim)?)?)?,
            )?;
            // h' = n + z ⊙ (h − n)
            h = (&n + (z * (&h - &n)?)?)?;
            outs.push(h.clone());
        }
        Tensor::stack(&outs, 1)
    }
}
