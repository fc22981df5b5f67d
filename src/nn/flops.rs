//! Floating-point operations of one forward pass, counted from the layer shapes (a
//! multiply-add is 2): what `rlcpc bench` divides by the time to give a workload's
//! achieved GFLOP/s and its share of the machine's GEMM peak (a roofline in one line).
//!
//! Only the products are counted (convolutions, linear maps, recurrent cells): the
//! element-wise work (activations, normalisation, pooling, the optimiser) is small
//! beside them and bound by memory, not arithmetic. Training a layer costs about
//! [`TRAIN`] times its forward pass: the backward pass computes the gradient with
//! respect to the input and to the weights, each a product the size of the forward one.

use super::encoders::EncoderSpec;
use super::NetSpec;
use crate::config::CoreKind;

/// Forward + backward ≈ 3 × forward.
pub const TRAIN: f64 = 3.0;

/// A linear map `inp → out` on one row.
pub fn linear(inp: usize, out: usize) -> f64 {
    2.0 * inp as f64 * out as f64
}

/// One LSTM step (four gates over `[input; h]`).
pub fn lstm(inp: usize, hidden: usize) -> f64 {
    linear(inp + hidden, 4 * hidden)
}

/// One GRU step (three gates over `[input; h]`).
pub fn gru(inp: usize, hidden: usize) -> f64 {
    linear(inp + hidden, 3 * hidden)
}

/// A `k_h × k_w` convolution `c_in → c_out` with an output of `out_h × out_w`.
pub fn conv2d(
    c_in: usize,
    c_out: usize,
    (k_h, k_w): (usize, usize),
    (out_h, out_w): (usize, usize),
) -> f64 {
    2.0 * (c_in * k_h * k_w) as f64 * c_out as f64 * (out_h * out_w) as f64
}

impl EncoderSpec {
    /// FLOPs of encoding one item: an image, or a waveform (`Audio`) or sentence
    /// (`Text`) of `len` samples or words (`len` is ignored by the others).
    pub fn forward_flops(&self, len: usize) -> f64 {
        match self {
            EncoderSpec::Mlp { in_dim, hidden, .. } => {
                let mut d = *in_dim;
                let mut f = 0.0;
                for &h in hidden {
                    f += linear(d, h);
                    d = h;
                }
                f
            }
            EncoderSpec::Conv {
                height,
                width,
                channels,
                fc,
                ..
            } => {
                // 16×8×8 stride 4, then 32×4×4 stride 2, no padding, then the FC layer.
                let (h1, w1) = ((height - 8) / 4 + 1, (width - 8) / 4 + 1);
                let (h2, w2) = ((h1 - 4) / 2 + 1, (w1 - 4) / 2 + 1);
                conv2d(*channels, 16, (8, 8), (h1, w1))
                    + conv2d(16, 32, (4, 4), (h2, w2))
                    + linear(32 * h2 * w2, *fc)
            }
            EncoderSpec::Audio {
                channels,
                strides,
                kernels,
                ..
            } => {
                // Each layer: ⌈L/s⌉ outputs, each a product of k·C_in samples.
                let (mut l, mut c_in, mut f) = (len, 1, 0.0);
                for (&s, &k) in strides.iter().zip(kernels) {
                    l = l.div_ceil(s);
                    f += l as f64 * linear(k * c_in, *channels);
                    c_in = *channels;
                }
                f
            }
            EncoderSpec::Patches {
                height,
                width,
                channels,
                patch,
                stride,
                features,
                layers,
                ..
            } => {
                // 3×3 convolutions without padding inside each patch.
                let n = ((height - patch) / stride + 1) * ((width - patch) / stride + 1);
                let (mut p, mut c_in, mut f) = (*patch, *channels, 0.0);
                for _ in 0..*layers {
                    p -= 2;
                    f += conv2d(c_in, *features, (3, 3), (p, p));
                    c_in = *features;
                }
                n as f64 * f
            }
            EncoderSpec::Text {
                embedding,
                kernel,
                features,
                ..
            } => len.saturating_sub(kernel - 1) as f64 * linear(kernel * embedding, *features),
            EncoderSpec::Resnet {
                height,
                width,
                channels,
                widths,
                blocks,
            } => {
                // A 3×3 stem at full size, then basic blocks (two 3×3 convolutions, a
                // 1×1 shortcut where the shape changes); stride 2 gives ⌈H/2⌉.
                let (mut h, mut w) = (*height, *width);
                let mut f = conv2d(*channels, widths[0], (3, 3), (h, w));
                let mut c = widths[0];
                for (s, (&co, &n)) in widths.iter().zip(blocks).enumerate() {
                    for b in 0..n {
                        let stride = if s > 0 && b == 0 { 2 } else { 1 };
                        (h, w) = (h.div_ceil(stride), w.div_ceil(stride));
                        f += conv2d(c, co, (3, 3), (h, w)) + conv2d(co, co, (3, 3), (h, w));
                        if c != co || stride != 1 {
                            f += conv2d(c, co, (1, 1), (h, w));
                        }
                        c = co;
                    }
                }
                f
            }
        }
    }
}

impl NetSpec {
    /// FLOPs of one forward step of the agent's network on one observation: the
    /// encoder, the core and the policy and value heads.
    pub fn forward_flops(&self) -> f64 {
        let core = match self.core {
            CoreKind::None => 0.0,
            CoreKind::Lstm => lstm(self.core_in_dim(), self.lstm_hidden),
        };
        self.encoder.forward_flops(0) + core + linear(self.context_dim(), self.num_actions + 1)
    }
}
