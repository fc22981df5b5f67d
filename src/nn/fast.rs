//! Vectorisable tanh and sigmoid for the CPU.
//!
//! glibc's `tanhf` (through `expm1f`) took a third of a CartPole training run's time in a
//! profile (`perf record`), in the actors' MLP and in candle's element-wise `tanh`, which
//! calls it once per element. These replacements use Eigen's rational approximation of
//! tanh (`generic_fast_tanh_float`), whose loops the compiler vectorises; the tests bound
//! its error against `f32::tanh`. On other devices the candle ops are used unchanged.

use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor};

/// tanh(x) with Eigen's 13/6 rational approximation (max error a few ulp).
#[inline(always)]
pub fn tanh(x: f32) -> f32 {
    const CLAMP: f32 = 7.905_311;
    const A1: f32 = 4.893_524_6e-3;
    const A3: f32 = 6.372_619_3e-4;
    const A5: f32 = 1.485_722_4e-5;
    const A7: f32 = 5.122_297e-8;
    const A9: f32 = -8.604_672e-11;
    const A11: f32 = 2.000_188e-13;
    const A13: f32 = -2.760_768_5e-16;
    const B0: f32 = 4.893_525e-3;
    const B2: f32 = 2.268_434_7e-3;
    const B4: f32 = 1.185_347_1e-4;
    const B6: f32 = 1.198_258_4e-6;
    let x = x.clamp(-CLAMP, CLAMP);
    let x2 = x * x;
    let mut p = x2 * A13 + A11;
    p = x2 * p + A9;
    p = x2 * p + A7;
    p = x2 * p + A5;
    p = x2 * p + A3;
    p = x2 * p + A1;
    p *= x;
    let mut q = x2 * B6 + B4;
    q = x2 * q + B2;
    q = x2 * q + B0;
    p / q
}

/// The logistic function through tanh: σ(x) = ½ + ½·tanh(x/2).
#[inline(always)]
pub fn sigmoid(x: f32) -> f32 {
    0.5 + 0.5 * tanh(0.5 * x)
}

#[derive(Clone, Copy)]
enum Kind {
    Tanh,
    Sigmoid,
}

struct Fast(Kind);

impl CustomOp1 for Fast {
    fn name(&self) -> &'static str {
        match self.0 {
            Kind::Tanh => "fast-tanh",
            Kind::Sigmoid => "fast-sigmoid",
        }
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (start, end) = l.contiguous_offsets().ok_or_else(|| {
            candle_core::Error::Msg(format!("{} needs a contiguous input", self.name()))
        })?;
        let x = &s.as_slice::<f32>()?[start..end];
        let y: Vec<f32> = match self.0 {
            Kind::Tanh => x.iter().map(|&v| tanh(v)).collect(),
            Kind::Sigmoid => x.iter().map(|&v| sigmoid(v)).collect(),
        };
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    fn bwd(
        &self,
        _arg: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        // tanh' = 1 − y², σ' = y(1 − y).
        let d = match self.0 {
            Kind::Tanh => res.sqr()?.affine(-1.0, 1.0)?,
            Kind::Sigmoid => (res * res.affine(-1.0, 1.0)?)?,
        };
        Ok(Some(grad.mul(&d)?))
    }
}

fn apply(x: &Tensor, kind: Kind) -> candle_core::Result<Tensor> {
    if x.device().is_cpu() && x.dtype() == candle_core::DType::F32 {
        x.contiguous()?.apply_op1(Fast(kind))
    } else {
        match kind {
            Kind::Tanh => x.tanh(),
            Kind::Sigmoid => candle_nn::ops::sigmoid(x),
        }
    }
}

/// Element-wise tanh of a tensor, differentiable.
pub fn tanh_t(x: &Tensor) -> candle_core::Result<Tensor> {
    apply(x, Kind::Tanh)
}

/// Element-wise logistic function of a tensor, differentiable.
pub fn sigmoid_t(x: &Tensor) -> candle_core::Result<Tensor> {
    apply(x, Kind::Sigmoid)
}
