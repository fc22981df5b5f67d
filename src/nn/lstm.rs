//! An LSTM core (Hochreiter & Schmidhuber 1997) with PyTorch's `LSTMCell` parameter
//! names and gate order (i, f, g, o), an explicit state and a reset mask.

use candle_core::{Tensor, D};
use candle_nn::VarBuilder;

use super::init::Init;

/// LSTM weights; the state of B sequences is `[B, 2H]` (h, then the cell).
pub struct Lstm {
    w_ih_t: Tensor,
    w_hh_t: Tensor,
    b_ih: Tensor,
    b_hh: Tensor,
    pub hidden: usize,
}

impl Lstm {
    /// PyTorch's initialisation: every weight and bias uniform in ±1/√H.
    pub fn init(
        in_dim: usize,
        hidden: usize,
        init: &mut Init,
        prefix: &str,
    ) -> candle_core::Result<()> {
        init.uniform_fan_in(
            &format!("{prefix}.weight_ih"),
            &[4 * hidden, in_dim],
            hidden,
        )?;
        init.uniform_fan_in(
            &format!("{prefix}.weight_hh"),
            &[4 * hidden, hidden],
            hidden,
        )?;
        init.uniform_fan_in(&format!("{prefix}.bias_ih"), &[4 * hidden], hidden)?;
        init.uniform_fan_in(&format!("{prefix}.bias_hh"), &[4 * hidden], hidden)?;
        Ok(())
    }

    pub fn new(in_dim: usize, hidden: usize, vb: VarBuilder) -> candle_core::Result<Self> {
        let w_ih = vb.get((4 * hidden, in_dim), "weight_ih")?;
        let w_hh = vb.get((4 * hidden, hidden), "weight_hh")?;
        Ok(Lstm {
            w_ih_t: w_ih.t()?,
            w_hh_t: w_hh.t()?,
            b_ih: vb.get(4 * hidden, "bias_ih")?,
            b_hh: vb.get(4 * hidden, "bias_hh")?,
            hidden,
        })
    }

    /// Runs `x` `[T, B, in]` from `state` `[B, 2H]`, zeroing the state before step t of
    /// sequence b where `first[t * B + b] == 1`. Returns the outputs h_t `[T, B, H]` and
    /// the final state.
    pub fn unroll(
        &self,
        x: &Tensor,
        first: &[f32],
        state: &Tensor,
    ) -> candle_core::Result<(Tensor, Tensor)> {
        let (t_len, b, in_dim) = x.dims3()?;
        let h_dim = self.hidden;
        // Input projections for every step at once; only h·W_hh is sequential.
        let gx = x
            .reshape((t_len * b, in_dim))?
            .matmul(&self.w_ih_t)?
            .broadcast_add(&(&self.b_ih + &self.b_hh)?)?
            .reshape((t_len, b, 4 * h_dim))?;
        let mut h = state.narrow(1, 0, h_dim)?;
        let mut c = state.narrow(1, h_dim, h_dim)?;
        let mut outs = Vec::with_capacity(t_len);
        for t in 0..t_len {
            let row = &first[t * b..(t + 1) * b];
            if row.iter().any(|&f| f != 0.0) {
                let keep: Vec<f32> = row.iter().map(|f| 1.0 - f).collect();
                let keep = Tensor::from_vec(keep, (b, 1), x.device())?;
                h = h.broadcast_mul(&keep)?;
                c = c.broadcast_mul(&keep)?;
            }
            let g = (gx.get(t)? + h.matmul(&self.w_hh_t)?)?;
            let (new_h, new_c) = cell(&g, &c, h_dim)?;
            h = new_h;
            c = new_c;
            outs.push(h.clone());
        }
        Ok((Tensor::stack(&outs, 0)?, Tensor::cat(&[&h, &c], D::Minus1)?))
    }
}

/// The LSTM cell from pre-activations `g` `[B, 4H]` (i, f, g, o) and the cell `c`.
fn cell(g: &Tensor, c: &Tensor, h_dim: usize) -> candle_core::Result<(Tensor, Tensor)> {
    let sig = super::fast::sigmoid_t(g)?;
    let i = sig.narrow(1, 0, h_dim)?;
    let f = sig.narrow(1, h_dim, h_dim)?;
    let o = sig.narrow(1, 3 * h_dim, h_dim)?;
    let gg = super::fast::tanh_t(&g.narrow(1, 2 * h_dim, h_dim)?)?;
    let c = ((f * c)? + (i * gg)?)?;
    let h = (o * super::fast::tanh_t(&c)?)?;
    Ok((h, c))
}
