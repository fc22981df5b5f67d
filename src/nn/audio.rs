//! CPC's audio encoder g_enc (van den Oord et al. 2018, §3.1): strided 1-D convolutions
//! over the raw waveform with ReLU after each, one vector per `∏ strides` samples
//! (strides 5, 4, 2, 2, 2 → 160 samples = 10 ms at 16 kHz).
//!
//! Each kernel is a multiple m of its stride, so a layer is a reshape and a matmul: the
//! channels-last input `[N, L, C]` is padded by (k − s)/2 on the left (and on the right
//! up to whole frames), viewed as frames of s samples `[N, L/s, s·C]`, and m consecutive
//! frames side by side are the receptive field of each output (L_out = ⌈L/s⌉). Weights
//! keep PyTorch's `Conv1d` layout `[C_out, C_in, k]`.

use candle_core::{Tensor, D};
use candle_nn::VarBuilder;

use super::init::Init;

/// Checks the layer list; returns the total stride.
pub fn check_layers(strides: &[usize], kernels: &[usize]) -> Result<usize, String> {
    if strides.is_empty() || strides.len() != kernels.len() {
        return Err(format!(
            "the audio encoder needs as many kernels as strides, got strides {strides:?} and kernels {kernels:?}"
        ));
    }
    for (&s, &k) in strides.iter().zip(kernels) {
        if s == 0 || k < s || k % s != 0 {
            return Err(format!(
                "each kernel must be a positive multiple of its stride (the paper's 10/5, 8/4, 4/2), got kernel {k} with stride {s}"
            ));
        }
    }
    Ok(strides.iter().product())
}

/// Output frames for `len` input samples.
pub fn frames(len: usize, strides: &[usize]) -> usize {
    strides.iter().fold(len, |l, &s| l.div_ceil(s))
}

/// Writes PyTorch's Conv1d initialisation (uniform ±1/√(C_in·k)) for every layer.
pub fn init(
    channels: usize,
    kernels: &[usize],
    channel_norm: bool,
    init: &mut Init,
    prefix: &str,
) -> candle_core::Result<()> {
    let mut c_in = 1;
    for (i, &k) in kernels.iter().enumerate() {
        let p = format!("{prefix}.conv.{i}");
        init.uniform_fan_in(&format!("{p}.weight"), &[channels, c_in, k], c_in * k)?;
        init.uniform_fan_in(&format!("{p}.bias"), &[channels], c_in * k)?;
        if channel_norm {
            init.ones(&format!("{p}.norm.weight"), &[channels])?;
            init.zeros(&format!("{p}.norm.bias"), &[channels])?;
        }
        c_in = channels;
    }
    Ok(())
}

/// The architecture of an audio encoder, as an
/// [`EncoderSpec::Audio`](super::encoders::EncoderSpec::Audio) holds it
/// ([`EncoderSpec::audio`](super::encoders::EncoderSpec::audio) reads it out): what the
/// candle encoder and the lean one are built from.
#[derive(Debug, Clone, Copy)]
pub struct AudioArch<'a> {
    pub channels: usize,
    pub strides: &'a [usize],
    pub kernels: &'a [usize],
    /// Normalise each step over channels before every ReLU.
    pub channel_norm: bool,
    /// Standardise each waveform first.
    pub normalize: bool,
}

/// The convolutions: `(weight [C_out, C_in, k], bias, stride)`, and each one's channel
/// norm `(gain, shift)` where enabled.
pub struct AudioEncoder {
    layers: Vec<(Tensor, Tensor, usize)>,
    norms: Vec<Option<(Tensor, Tensor)>>,
    /// Standardise each input waveform first.
    normalize: bool,
    pub channels: usize,
}

impl AudioEncoder {
    pub fn new(arch: &AudioArch, vb: VarBuilder) -> candle_core::Result<Self> {
        let AudioArch {
            channels,
            strides,
            kernels,
            channel_norm,
            normalize,
        } = *arch;
        check_layers(strides, kernels).map_err(candle_core::Error::msg)?;
        let mut c_in = 1;
        let (mut layers, mut norms) = (Vec::new(), Vec::new());
        for (i, (&s, &k)) in strides.iter().zip(kernels).enumerate() {
            let vb = vb.pp(format!("conv.{i}"));
            layers.push((
                vb.get((channels, c_in, k), "weight")?,
                vb.get(channels, "bias")?,
                s,
            ));
            norms.push(if channel_norm {
                Some((
                    vb.get(channels, "norm.weight")?,
                    vb.get(channels, "norm.bias")?,
                ))
            } else {
                None
            });
            c_in = channels;
        }
        Ok(AudioEncoder {
            layers,
            norms,
            normalize,
            channels,
        })
    }

    /// Waveforms `[N, L]` → features z `[N, T, C]`, T = ⌈L / ∏ strides⌉ (rounded up per layer).
    pub fn forward(&self, wave: &Tensor) -> candle_core::Result<Tensor> {
        let mut h = if self.normalize {
            standardize(wave)?.unsqueeze(2)?
        } else {
            wave.unsqueeze(2)?
        };
        for ((w, b, s), norm) in self.layers.iter().zip(&self.norms) {
            h = conv1d_strided(&h, w, b, *s)?;
            if let Some((g, shift)) = norm {
                h = channel_norm(&h, g, shift)?;
            }
            h = h.relu()?;
        }
        Ok(h)
    }
}

/// One strided convolution, channels-last `[N, L, C_in]` → `[N, ⌈L/s⌉, C_out]`.
pub fn conv1d_strided(x: &Tensor, w: &Tensor, b: &Tensor, s: usize) -> candle_core::Result<Tensor> {
    let (n, len, c_in) = x.dims3()?;
    let (c_out, _, k) = w.dims3()?;
    let m = k / s;
    let out = len.div_ceil(s);
    let left = (k - s) / 2;
    let padded = (out + m - 1) * s;
    let right = padded - len - left;
    let mut parts = Vec::with_capacity(3);
    if left > 0 {
        parts.push(Tensor::zeros((n, left, c_in), x.dtype(), x.device())?);
    }
    parts.push(x.clone());
    if right > 0 {
        parts.push(Tensor::zeros((n, right, c_in), x.dtype(), x.device())?);
    }
    let xp = Tensor::cat(&parts, 1)?.reshape((n, padded / s, s * c_in))?;
    let cols = if m == 1 {
        xp
    } else {
        let shifted: Vec<Tensor> = (0..m)
            .map(|j| xp.narrow(1, j, out))
            .collect::<candle_core::Result<_>>()?;
        Tensor::cat(&shifted, D::Minus1)? // [N, out, k·C_in], time-major within a row
    };
    // [C_out, C_in, k] → [k, C_in, C_out] → [k·C_in, C_out]
    let wc = w.permute((2, 1, 0))?.reshape((k * c_in, c_out))?;
    cols.reshape((n * out, k * c_in))?
        .matmul(&wc)?
        .broadcast_add(b)?
        .reshape((n, out, c_out))
}

/// Normalises each time step of `[N, T, C]` over its C channels (zero mean, unit
/// variance, ε = 1e-5), then scales by `gain` and adds `shift` (both `[C]`).
pub fn channel_norm(h: &Tensor, gain: &Tensor, shift: &Tensor) -> candle_core::Result<Tensor> {
    let mean = h.mean_keepdim(D::Minus1)?;
    let centred = h.broadcast_sub(&mean)?;
    let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
    centred
        .broadcast_div(&(var + 1e-5)?.sqrt()?)?
        .broadcast_mul(gain)?
        .broadcast_add(shift)
}

/// Each row of `[N, L]` shifted and scaled to zero mean and unit variance (ε = 1e-5).
pub fn standardize(wave: &Tensor) -> candle_core::Result<Tensor> {
    let centred = wave.broadcast_sub(&wave.mean_keepdim(1)?)?;
    let var = centred.sqr()?.mean_keepdim(1)?;
    centred.broadcast_div(&(var + 1e-5)?.sqrt()?)
}
