//! Encoders shared by the agent and the standalone contrastive trainers: observations
//! `[N, ...]` in, feature vectors `[N, D]` out.

use candle_core::{Module, Tensor};
use candle_nn::{Linear, VarBuilder};
use serde::{Deserialize, Serialize};

use super::conv;
use super::init::Init;
use crate::config::Activation;

/// Everything needed to rebuild an encoder (stored with exported weights).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum EncoderSpec {
    /// Fully connected layers with an activation after each.
    Mlp {
        in_dim: usize,
        hidden: Vec<usize>,
        activation: Activation,
    },
    /// IMPALA's shallow conv net on `[H, W, C]` images, scaled by `input_scale`:
    /// conv 16×8×8 stride 4, ReLU, conv 32×4×4 stride 2, ReLU, FC `fc`, ReLU.
    Conv {
        height: usize,
        width: usize,
        channels: usize,
        fc: usize,
        input_scale: f32,
    },
    /// CPC's audio encoder (§3.1): strided 1-D convolutions with ReLU over the raw
    /// waveform at `sample_rate`, `channels` wide; a sequence of vectors, not one.
    Audio {
        sample_rate: u32,
        channels: usize,
        strides: Vec<usize>,
        kernels: Vec<usize>,
        /// Normalise each time step over channels before every ReLU (the "channel norm"
        /// of Rivière et al. 2020's CPC reimplementation); off in the paper.
        #[serde(default)]
        channel_norm: bool,
        /// Standardise each waveform (zero mean, unit variance over time) before the
        /// first convolution, as wav2vec 2.0's `normalize`; the paper does not say.
        #[serde(default)]
        normalize: bool,
    },
    /// Image CPC's patch encoder (§3.2): `layers` 3×3 convolutions `features` wide with
    /// ReLU, mean-pooled, applied to `patch`×`patch` patches every `stride` pixels of
    /// `[height, width, channels]` images; one vector per patch.
    Patches {
        height: usize,
        width: usize,
        channels: usize,
        patch: usize,
        stride: usize,
        features: usize,
        layers: usize,
        /// LayerNorm after each convolution, over the patch's positions and channels
        /// (CPC-v2's replacement for BatchNorm).
        #[serde(default)]
        layer_norm: bool,
    },
    /// Text CPC's sentence encoder (§3.3): word embeddings `embedding` wide over a
    /// `vocab`-word vocabulary, a 1-D convolution (`kernel` words, `features` wide) with
    /// ReLU, mean-pooled over the sentence.
    Text {
        vocab: usize,
        embedding: usize,
        kernel: usize,
        features: usize,
    },
    /// The view-based trainers' small ResNet ([`super::resnet`]) on `[height, width,
    /// channels]` images in [0, 1]: a 3×3 stem `widths[0]` wide, then stage i with
    /// `blocks[i]` basic blocks `widths[i]` wide (stride 2 from the second stage),
    /// BatchNorm, global average pooling; one vector per image.
    Resnet {
        height: usize,
        width: usize,
        channels: usize,
        widths: Vec<usize>,
        blocks: Vec<usize>,
    },
}

impl EncoderSpec {
    /// One line for messages, e.g. `mlp (in 4, hidden [64, 64], tanh)`.
    pub fn describe(&self) -> String {
        match self {
            EncoderSpec::Mlp { in_dim, hidden, activation } => {
                format!("mlp (input {in_dim}, hidden {hidden:?}, {activation:?})").to_lowercase()
            }
            EncoderSpec::Conv { height, width, channels, fc, .. } => {
                format!("conv (input {height}x{width}x{channels}, fc {fc})")
            }
            EncoderSpec::Audio {
                sample_rate,
                channels,
                strides,
                kernels,
                channel_norm,
                normalize,
            } => format!(
                "audio conv1d ({sample_rate} Hz waveform{}, {channels} channels, strides {strides:?}, kernels {kernels:?}{})",
                if *normalize { " standardised" } else { "" },
                if *channel_norm { ", channel norm" } else { "" }
            ),
            EncoderSpec::Text { vocab, embedding, kernel, features } => format!(
                "sentence conv ({vocab} words, embedding {embedding}, kernel {kernel}, {features} features)"
            ),
            EncoderSpec::Resnet { height, width, channels, widths, blocks } => format!(
                "resnet ({height}x{width}x{channels} images, widths {widths:?}, blocks {blocks:?})"
            ),
            EncoderSpec::Patches { height, width, channels, patch, stride, features, layers, layer_norm } => format!(
                "patch conv ({height}x{width}x{channels} images, {patch}x{patch} patches every {stride}, {layers} layers of {features}{})",
                if *layer_norm { ", layer norm" } else { "" }
            ),
        }
    }

    /// Why `self` (loaded from a file) cannot stand in for `want`, or `None` if it can.
    pub fn mismatch(&self, want: &EncoderSpec) -> Option<String> {
        (self != want).then(|| {
            format!(
                "the file's encoder is {}, this network needs {}",
                self.describe(),
                want.describe()
            )
        })
    }

    /// `[H, W, C]` of the images an image encoder reads (`None` for other encoders).
    pub fn image_input(&self) -> Option<[usize; 3]> {
        match *self {
            EncoderSpec::Conv {
                height,
                width,
                channels,
                ..
            }
            | EncoderSpec::Patches {
                height,
                width,
                channels,
                ..
            }
            | EncoderSpec::Resnet {
                height,
                width,
                channels,
                ..
            } => Some([height, width, channels]),
            _ => None,
        }
    }

    pub fn out_dim(&self) -> usize {
        match self {
            EncoderSpec::Mlp { hidden, .. } => *hidden.last().expect("validated non-empty"),
            EncoderSpec::Conv { fc, .. } => *fc,
            EncoderSpec::Audio { channels, .. } => *channels,
            EncoderSpec::Patches { features, .. } => *features,
            EncoderSpec::Text { features, .. } => *features,
            EncoderSpec::Resnet { widths, .. } => *widths.last().expect("validated non-empty"),
        }
    }

    /// The architecture of an audio encoder; `None` for another kind.
    pub fn audio(&self) -> Option<super::audio::AudioArch<'_>> {
        match self {
            EncoderSpec::Audio {
                channels,
                strides,
                kernels,
                channel_norm,
                normalize,
                ..
            } => Some(super::audio::AudioArch {
                channels: *channels,
                strides,
                kernels,
                channel_norm: *channel_norm,
                normalize: *normalize,
            }),
            _ => None,
        }
    }

    /// `(h2, w2)`: spatial size after the two convolutions, or an error for small images.
    fn conv_out(height: usize, width: usize) -> candle_core::Result<(usize, usize)> {
        if height < 20 || width < 20 {
            candle_core::bail!("conv encoder needs images of at least 20x20 (8x8 stride 4, then 4x4 stride 2), got {height}x{width}");
        }
        let f = |x: usize| ((x - 8) / 4 + 1 - 4) / 2 + 1;
        Ok((f(height), f(width)))
    }

    /// Writes freshly initialised parameters under `prefix` (orthogonal, gain √2, as SB3).
    pub fn init(&self, init: &mut Init, prefix: &str) -> candle_core::Result<()> {
        let g = 2f64.sqrt();
        match self {
            EncoderSpec::Mlp { in_dim, hidden, .. } => {
                let mut d = *in_dim;
                for (i, &h) in hidden.iter().enumerate() {
                    init.orthogonal(&format!("{prefix}.mlp.{i}.weight"), &[h, d], g)?;
                    init.zeros(&format!("{prefix}.mlp.{i}.bias"), &[h])?;
                    d = h;
                }
            }
            EncoderSpec::Conv {
                height,
                width,
                channels,
                fc,
                ..
            } => {
                let (h2, w2) = Self::conv_out(*height, *width)?;
                init.orthogonal(&format!("{prefix}.conv1.weight"), &[16, *channels, 8, 8], g)?;
                init.zeros(&format!("{prefix}.conv1.bias"), &[16])?;
                init.orthogonal(&format!("{prefix}.conv2.weight"), &[32, 16, 4, 4], g)?;
                init.zeros(&format!("{prefix}.conv2.bias"), &[32])?;
                init.orthogonal(&format!("{prefix}.fc.weight"), &[*fc, 32 * h2 * w2], g)?;
                init.zeros(&format!("{prefix}.fc.bias"), &[*fc])?;
            }
            EncoderSpec::Audio {
                channels,
                kernels,
                channel_norm,
                ..
            } => {
                super::audio::init(*channels, kernels, *channel_norm, init, prefix)?;
            }
            EncoderSpec::Patches {
                channels,
                features,
                layers,
                layer_norm,
                ..
            } => {
                super::patches::PatchEncoder::init(
                    *channels,
                    *features,
                    *layers,
                    *layer_norm,
                    init,
                    prefix,
                )?;
            }
            EncoderSpec::Text {
                vocab,
                embedding,
                kernel,
                features,
            } => super::text::SentenceEncoder::init(
                *vocab, *embedding, *kernel, *features, init, prefix,
            )?,
            EncoderSpec::Resnet {
                channels,
                widths,
                blocks,
                ..
            } => super::resnet::ResNet::init(*channels, widths, blocks, init, prefix)?,
        }
        Ok(())
    }
}

enum Layers {
    Mlp(Vec<Linear>, Activation),
    Conv {
        /// (weight `[C_out, C_in, KH, KW]`, bias) of each convolution.
        conv1: (Tensor, Tensor),
        conv2: (Tensor, Tensor),
        fc: Linear,
        input_scale: f32,
    },
}

/// The autoregressive context network g_ar stored beside an exported encoder
/// (tensors `context.*`): CPC's GRU, or the agent's LSTM core.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ContextSpec {
    Gru {
        in_dim: usize,
        hidden: usize,
    },
    Lstm {
        in_dim: usize,
        hidden: usize,
    },
    /// Image CPC's vertically causal network over the patch grid.
    Masked {
        dim: usize,
        layers: usize,
    },
}

/// An encoder built from its spec and a `VarBuilder`.
pub struct Encoder {
    pub spec: EncoderSpec,
    layers: Layers,
}

impl Encoder {
    pub fn new(spec: EncoderSpec, vb: VarBuilder) -> candle_core::Result<Self> {
        let layers = match &spec {
            EncoderSpec::Mlp {
                in_dim,
                hidden,
                activation,
            } => {
                let mut d = *in_dim;
                let mut ls = Vec::new();
                for (i, &h) in hidden.iter().enumerate() {
                    ls.push(candle_nn::linear(d, h, vb.pp(format!("mlp.{i}")))?);
                    d = h;
                }
                Layers::Mlp(ls, *activation)
            }
            EncoderSpec::Conv {
                height,
                width,
                channels,
                fc,
                input_scale,
            } => {
                let (h2, w2) = EncoderSpec::conv_out(*height, *width)?;
                let conv = |c_in: usize, c_out: usize, k: usize, name: &str| {
                    let vb = vb.pp(name);
                    candle_core::Result::Ok((
                        vb.get((c_out, c_in, k, k), "weight")?,
                        vb.get(c_out, "bias")?,
                    ))
                };
                Layers::Conv {
                    conv1: conv(*channels, 16, 8, "conv1")?,
                    conv2: conv(16, 32, 4, "conv2")?,
                    fc: candle_nn::linear(32 * h2 * w2, *fc, vb.pp("fc"))?,
                    input_scale: *input_scale,
                }
            }
            EncoderSpec::Patches { .. } => candle_core::bail!(
                "{} encodes grids of patches; use it with `rlcpc probe` or the image trainer",
                spec.describe()
            ),
            EncoderSpec::Text { .. } => candle_core::bail!(
                "{} encodes sentences and cannot encode an environment's observations",
                spec.describe()
            ),
            EncoderSpec::Audio { .. } => candle_core::bail!(
                "{} encodes waveforms into sequences and cannot encode an environment's observations",
                spec.describe()
            ),
            EncoderSpec::Resnet { .. } => candle_core::bail!(
                "{} has BatchNorm and is for the image trainers and `rlcpc probe`; an agent reads the conv encoder (model.encoder = \"agent\")",
                spec.describe()
            ),
        };
        Ok(Encoder { spec, layers })
    }

    pub fn out_dim(&self) -> usize {
        self.spec.out_dim()
    }

    /// Shape of one input: `[in_dim]` (MLP; grid observations flatten into it) or
    /// `[H, W, C]`.
    pub fn spec_input_shape(&self) -> Vec<usize> {
        match &self.spec {
            EncoderSpec::Mlp { in_dim, .. } => vec![*in_dim],
            EncoderSpec::Conv {
                height,
                width,
                channels,
                ..
            } => vec![*height, *width, *channels],
            EncoderSpec::Audio { .. } | EncoderSpec::Text { .. } => vec![],
            EncoderSpec::Patches {
                height,
                width,
                channels,
                ..
            }
            | EncoderSpec::Resnet {
                height,
                width,
                channels,
                ..
            } => vec![*height, *width, *channels],
        }
    }
}

impl Module for Encoder {
    /// `[N, in_dim]` or `[N, H, W, C]` → `[N, D]`.
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match &self.layers {
            Layers::Mlp(ls, act) => {
                let mut h = x.flatten_from(1)?; // grid observations are [N, H, W, C]
                for l in ls {
                    h = l.forward(&h)?;
                    h = match act {
                        Activation::Tanh => super::fast::tanh_t(&h)?,
                        Activation::Relu => h.relu()?,
                    };
                }
                Ok(h)
            }
            Layers::Conv {
                conv1,
                conv2,
                fc,
                input_scale,
            } => {
                // Channels-last throughout; flattened in (C, H, W) order for the FC layer,
                // as PyTorch's IMPALA encoder does.
                let h = conv::conv2d_nhwc(x, &conv1.0, &conv1.1, 4, *input_scale)?.relu()?;
                let h = conv::conv2d_nhwc(&h, &conv2.0, &conv2.1, 2, 1.0)?.relu()?;
                fc.forward(&h.permute((0, 3, 1, 2))?.flatten_from(1)?)?
                    .relu()
            }
        }
    }
}

/// `a·b·…` in u128, saturating (spec sizes from files can be anything).
fn prod(v: &[usize]) -> u128 {
    v.iter()
        .fold(1u128, |acc, &x| acc.saturating_mul(x as u128))
}

/// Written apart from [`EncoderSpec::init`] on purpose: the spec comes from an untrusted
/// file and is counted before anything is built, in saturating arithmetic (`init`'s
/// shape products would overflow on hostile sizes). `tests/nn.rs`
/// (`the_parameter_bound_of_every_spec_matches_what_init_builds`) checks, for every kind,
/// that the count is exactly the weights `init` makes.
impl crate::checkpoint::ParamCount for EncoderSpec {
    /// The main weight matrices of each kind (biases and norms left out); `u128::MAX` for
    /// a spec no network can be built from (an MLP without layers).
    fn min_params(&self) -> u128 {
        match self {
            EncoderSpec::Mlp { in_dim, hidden, .. } => {
                if hidden.is_empty() {
                    return u128::MAX;
                }
                let mut d = *in_dim;
                let mut n = 0u128;
                for &h in hidden {
                    n = n.saturating_add(prod(&[d, h]));
                    d = h;
                }
                n
            }
            EncoderSpec::Conv {
                height,
                width,
                channels,
                fc,
                ..
            } => {
                let (h2, w2) = EncoderSpec::conv_out(*height, *width).unwrap_or((0, 0));
                prod(&[16, *channels, 64])
                    .saturating_add(prod(&[32, 16, 16]))
                    .saturating_add(prod(&[*fc, 32, h2, w2]))
            }
            EncoderSpec::Audio {
                channels, kernels, ..
            } => kernels
                .iter()
                .enumerate()
                .map(|(i, &k)| prod(&[*channels, if i == 0 { 1 } else { *channels }, k]))
                .fold(0u128, u128::saturating_add),
            EncoderSpec::Patches {
                channels,
                features,
                layers,
                ..
            } => prod(&[*features, *channels, 9]).saturating_add(prod(&[
                layers.saturating_sub(1),
                *features,
                *features,
                9,
            ])),
            EncoderSpec::Text {
                vocab,
                embedding,
                kernel,
                features,
            } => {
                prod(&[*vocab, *embedding]).saturating_add(prod(&[*features, *embedding, *kernel]))
            }
            EncoderSpec::Resnet {
                channels,
                widths,
                blocks,
                ..
            } => {
                if widths.is_empty() || widths.len() != blocks.len() || widths.contains(&0) {
                    return u128::MAX;
                }
                let mut n = prod(&[widths[0], *channels, 9]);
                let mut c = widths[0];
                for (&w, &b) in widths.iter().zip(blocks) {
                    n = n.saturating_add(prod(&[w, c, 9])).saturating_add(prod(&[
                        b.saturating_mul(2).saturating_sub(1),
                        w,
                        w,
                        9,
                    ]));
                    c = w;
                }
                n
            }
        }
    }
}

impl crate::checkpoint::ParamCount for ContextSpec {
    fn min_params(&self) -> u128 {
        match self {
            ContextSpec::Gru { in_dim, hidden } => {
                prod(&[3, *hidden, in_dim.saturating_add(*hidden)])
            }
            ContextSpec::Lstm { in_dim, hidden } => {
                prod(&[4, *hidden, in_dim.saturating_add(*hidden)])
            }
            ContextSpec::Masked { dim, layers } => prod(&[*layers, *dim, *dim]),
        }
    }
}
