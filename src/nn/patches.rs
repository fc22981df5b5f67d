//! The pieces of image CPC (van den Oord et al. 2018, §3.2): an image cut into a grid of
//! overlapping patches, a patch encoder (3×3 convolutions + ReLU, mean-pooled to one
//! vector per patch; no BatchNorm, which would leak information between patches), and a
//! context network over the grid that sees only the rows above and the current row
//! (vertically causal 2×3 convolutions, PixelCNN's down-shifted convolution), so that
//! c_{i,j} can predict the patch vectors z_{i+k,j} of the rows below.

use candle_core::{Tensor, D};
use candle_nn::VarBuilder;

use super::init::Init;

/// Grid size `(rows, cols)` of `patch`×`patch` patches every `stride` pixels, or why the
/// settings do not fit the image.
pub fn grid(
    height: usize,
    width: usize,
    patch: usize,
    stride: usize,
) -> Result<(usize, usize), String> {
    if patch == 0 || stride == 0 || patch > height || patch > width {
        return Err(format!(
            "patches of {patch} pixels every {stride} do not fit {height}x{width} images"
        ));
    }
    if !(height - patch).is_multiple_of(stride) || !(width - patch).is_multiple_of(stride) {
        return Err(format!(
            "patches of {patch} pixels every {stride} do not tile {height}x{width} images exactly (need (size − patch) divisible by the stride)"
        ));
    }
    Ok(((height - patch) / stride + 1, (width - patch) / stride + 1))
}

/// The grid of `images` holding `n` images of `[h, w, c]`, or why they do not fit.
fn checked_grid(
    images: &[f32],
    (n, h, w, c): (usize, usize, usize, usize),
    patch: usize,
    stride: usize,
) -> Result<(usize, usize), String> {
    if images.len() != n * h * w * c {
        return Err(format!(
            "{} values are not {n} images of {h}x{w}x{c}",
            images.len()
        ));
    }
    grid(h, w, patch, stride)
}

/// Cuts `n` channels-last images `[n, h, w, c]` into patches, row-major over the grid:
/// `[n · rows · cols, patch, patch, c]`.
pub fn extract(
    images: &[f32],
    (n, h, w, c): (usize, usize, usize, usize),
    patch: usize,
    stride: usize,
) -> Result<Vec<f32>, String> {
    let (gh, gw) = checked_grid(images, (n, h, w, c), patch, stride)?;
    let mut out = Vec::with_capacity(n * gh * gw * patch * patch * c);
    for img in images.chunks_exact(h * w * c) {
        for gi in 0..gh {
            for gj in 0..gw {
                for y in gi * stride..gi * stride + patch {
                    let row = (y * w + gj * stride) * c;
                    out.extend_from_slice(&img[row..row + patch * c]);
                }
            }
        }
    }
    Ok(out)
}

/// CPC-v2's patch-level augmentation, drawn independently for every patch.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Augment {
    /// Random crops: each patch is cut from its grid position moved by up to this many
    /// pixels in each direction (kept inside the image).
    pub crop: usize,
    /// Mirror each patch left–right with probability ½.
    pub flip: bool,
    /// Colour dropping: keep one colour channel at random, zero the others.
    pub color_drop: bool,
}

impl Augment {
    pub fn is_off(&self) -> bool {
        *self == Augment::default()
    }
}

/// [`extract`] with `aug` applied to each patch (same layout).
pub fn extract_augmented(
    images: &[f32],
    (n, h, w, c): (usize, usize, usize, usize),
    patch: usize,
    stride: usize,
    aug: &Augment,
    rng: &mut impl rand::Rng,
) -> Result<Vec<f32>, String> {
    let (gh, gw) = checked_grid(images, (n, h, w, c), patch, stride)?;
    let jitter = |at: usize, size: usize, rng: &mut dyn rand::RngCore| {
        let lo = at.saturating_sub(aug.crop);
        let hi = (at + aug.crop).min(size - patch);
        rand::Rng::random_range(rng, lo..=hi)
    };
    let mut out = Vec::with_capacity(n * gh * gw * patch * patch * c);
    for img in images.chunks_exact(h * w * c) {
        for gi in 0..gh {
            for gj in 0..gw {
                let y0 = jitter(gi * stride, h, rng);
                let x0 = jitter(gj * stride, w, rng);
                let flip = aug.flip && rng.random_bool(0.5);
                let keep = aug.color_drop.then(|| rng.random_range(0..c));
                for y in y0..y0 + patch {
                    for dx in 0..patch {
                        let x = if flip { x0 + patch - 1 - dx } else { x0 + dx };
                        let px = &img[(y * w + x) * c..(y * w + x + 1) * c];
                        match keep {
                            None => out.extend_from_slice(px),
                            Some(k) => {
                                out.extend((0..c).map(|ch| if ch == k { px[ch] } else { 0.0 }))
                            }
                        }
                    }
                }
            }
        }
    }
    Ok(out)
}

/// The directions CPC-v2 predicts in: `Down` is the paper's (context from the rows
/// above, targets below); the others turn the grid so that the same causal network
/// and predictors work unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Top to bottom (the paper).
    Down,
    /// Bottom to top.
    Up,
    /// Left to right.
    Right,
    /// Right to left.
    Left,
}

impl Direction {
    pub fn name(self) -> &'static str {
        match self {
            Direction::Down => "down",
            Direction::Up => "up",
            Direction::Right => "right",
            Direction::Left => "left",
        }
    }

    /// Turns a grid `[B, rows, cols, D]` so that this direction runs down its rows.
    pub fn orient(self, grid: &Tensor) -> candle_core::Result<Tensor> {
        let reverse_rows = |g: &Tensor| {
            let r = g.dim(1)?;
            let idx: Vec<u32> = (0..r as u32).rev().collect();
            g.index_select(&Tensor::new(idx.as_slice(), g.device())?, 1)
        };
        match self {
            Direction::Down => Ok(grid.clone()),
            Direction::Up => reverse_rows(grid),
            Direction::Right => grid.transpose(1, 2)?.contiguous(),
            Direction::Left => reverse_rows(&grid.transpose(1, 2)?.contiguous()?),
        }
    }

    /// Rows of the turned grid.
    pub fn steps(self, rows: usize, cols: usize) -> usize {
        match self {
            Direction::Down | Direction::Up => rows,
            Direction::Right | Direction::Left => cols,
        }
    }
}

/// The patch encoder: 3×3 convolutions (stride 1, no padding) with ReLU, then the mean
/// over positions: `[N, P, P, C]` → `[N, width]`. With `layer_norm` (CPC-v2), each
/// convolution's output is normalised over the patch's positions and channels (Ba et
/// al.'s LayerNorm: one mean and variance per patch, so patches never mix) with a gain
/// and bias per channel, before the ReLU.
pub struct PatchEncoder {
    convs: Vec<(Tensor, Tensor)>,
    norms: Vec<(Tensor, Tensor)>,
}

/// LayerNorm's ε.
const LN_EPS: f64 = 1e-5;

/// Normalises `[N, H, W, C]` over (H, W, C) per item, then `· gain + bias` per channel.
pub fn layer_norm(h: &Tensor, gain: &Tensor, bias: &Tensor) -> candle_core::Result<Tensor> {
    let n = h.dim(0)?;
    let flat = h.reshape((n, ()))?;
    let mean = flat.mean_keepdim(1)?;
    let centred = flat.broadcast_sub(&mean)?;
    let var = centred.sqr()?.mean_keepdim(1)?;
    let normed = centred.broadcast_div(&(var + LN_EPS)?.sqrt()?)?;
    normed
        .reshape(h.shape())?
        .broadcast_mul(gain)?
        .broadcast_add(bias)
}

impl PatchEncoder {
    /// PyTorch's Conv2d initialisation, uniform in ±1/√(C_in·9).
    pub fn init(
        channels: usize,
        width: usize,
        layers: usize,
        layer_norm: bool,
        init: &mut Init,
        prefix: &str,
    ) -> candle_core::Result<()> {
        let mut c_in = channels;
        for i in 0..layers {
            init.uniform_fan_in(
                &format!("{prefix}.conv.{i}.weight"),
                &[width, c_in, 3, 3],
                c_in * 9,
            )?;
            init.uniform_fan_in(&format!("{prefix}.conv.{i}.bias"), &[width], c_in * 9)?;
            if layer_norm {
                init.ones(&format!("{prefix}.norm.{i}.weight"), &[width])?;
                init.zeros(&format!("{prefix}.norm.{i}.bias"), &[width])?;
            }
            c_in = width;
        }
        Ok(())
    }

    pub fn new(
        channels: usize,
        width: usize,
        layers: usize,
        layer_norm: bool,
        vb: VarBuilder,
    ) -> candle_core::Result<Self> {
        let mut c_in = channels;
        let (mut convs, mut norms) = (Vec::with_capacity(layers), Vec::new());
        for i in 0..layers {
            let v = vb.pp(format!("conv.{i}"));
            convs.push((v.get((width, c_in, 3, 3), "weight")?, v.get(width, "bias")?));
            if layer_norm {
                let v = vb.pp(format!("norm.{i}"));
                norms.push((v.get(width, "weight")?, v.get(width, "bias")?));
            }
            c_in = width;
        }
        Ok(PatchEncoder { convs, norms })
    }

    pub fn forward(&self, patches: &Tensor) -> candle_core::Result<Tensor> {
        let mut h = patches.clone();
        for (i, (w, b)) in self.convs.iter().enumerate() {
            h = super::conv::conv2d_nhwc(&h, w, b, 1, 1.0)?;
            if let Some((gain, bias)) = self.norms.get(i) {
                h = layer_norm(&h, gain, bias)?;
            }
            h = h.relu()?;
        }
        h.flatten(1, 2)?.mean(1)
    }
}

/// Vertically causal context network over a grid `[B, rows, cols, D]`: each layer sees
/// the row above and its own row, one column to each side (zero-padded), so after L
/// layers c_{i,j} depends on rows i − L..=i only.
pub struct CausalContext {
    /// Per layer: weight `[D_out, 2·3·D_in]` (taps ordered row above then own row, columns
    /// left to right, channels fastest) and bias.
    layers: Vec<(Tensor, Tensor)>,
}

impl CausalContext {
    pub fn init(
        dim: usize,
        layers: usize,
        init: &mut Init,
        prefix: &str,
    ) -> candle_core::Result<()> {
        for i in 0..layers {
            init.uniform_fan_in(
                &format!("{prefix}.layer.{i}.weight"),
                &[dim, 6 * dim],
                6 * dim,
            )?;
            init.uniform_fan_in(&format!("{prefix}.layer.{i}.bias"), &[dim], 6 * dim)?;
        }
        Ok(())
    }

    pub fn new(dim: usize, layers: usize, vb: VarBuilder) -> candle_core::Result<Self> {
        let layers = (0..layers)
            .map(|i| {
                let vb = vb.pp(format!("layer.{i}"));
                Ok((vb.get((dim, 6 * dim), "weight")?, vb.get(dim, "bias")?))
            })
            .collect::<candle_core::Result<_>>()?;
        Ok(CausalContext { layers })
    }

    pub fn forward(&self, z: &Tensor) -> candle_core::Result<Tensor> {
        let (b, rows, cols, _) = z.dims4()?;
        let mut h = z.clone();
        for (w, bias) in &self.layers {
            let d = h.dim(3)?;
            // Zero row on top, zero column on each side: [B, rows + 1, cols + 2, D].
            let h1 = h.pad_with_zeros(1, 1, 0)?.pad_with_zeros(2, 1, 1)?;
            let mut taps = Vec::with_capacity(6);
            for du in 0..2 {
                for dv in 0..3 {
                    taps.push(h1.narrow(1, du, rows)?.narrow(2, dv, cols)?);
                }
            }
            let x = Tensor::cat(&taps, D::Minus1)?.reshape((b * rows * cols, 6 * d))?;
            h = x
                .matmul(&w.t()?)?
                .broadcast_add(bias)?
                .relu()?
                .reshape((b, rows, cols, ()))?;
        }
        Ok(h)
    }
}

/// Grid features `[B, rows, cols, D]` as CPC's time-major sequences `[rows, B·cols, D]`:
/// each column of each image is a sequence running down the rows, so the shared
/// [`crate::contrastive::cpc::cpc_loss`] predicts the rows below and draws negatives from every patch
/// of the batch.
pub fn as_sequences(grid: &Tensor) -> candle_core::Result<Tensor> {
    let (b, rows, cols, d) = grid.dims4()?;
    grid.permute((1, 0, 2, 3))?
        .contiguous()?
        .reshape((rows, b * cols, d))
}

/// Averages a grid `[n, rows, cols, D]` over `g`×`g` cells (PyTorch's adaptive average
/// pooling: cell i covers rows ⌊i·rows/g⌋..⌈(i+1)·rows/g⌉), flattened to `g·g·D` per
/// image; `g = 1` is the mean over the whole grid.
pub fn pool_grid(grid: &Tensor, g: usize) -> anyhow::Result<Vec<Vec<f32>>> {
    let (n, rows, cols, d) = grid.dims4()?;
    if g == 0 || g > rows.min(cols) {
        anyhow::bail!("cannot pool a {rows}x{cols} patch grid to {g}x{g} cells");
    }
    let v = grid.flatten_all()?.to_vec1::<f32>()?;
    let span = |i: usize, len: usize| (i * len / g, ((i + 1) * len).div_ceil(g));
    let mut out = Vec::with_capacity(n);
    for img in v.chunks_exact(rows * cols * d) {
        let mut row = vec![0f32; g * g * d];
        for gi in 0..g {
            let (r0, r1) = span(gi, rows);
            for gj in 0..g {
                let (c0, c1) = span(gj, cols);
                let cell = &mut row[(gi * g + gj) * d..(gi * g + gj + 1) * d];
                for r in r0..r1 {
                    for c in c0..c1 {
                        let at = (r * cols + c) * d;
                        for (o, x) in cell.iter_mut().zip(&img[at..at + d]) {
                            *o += x;
                        }
                    }
                }
                let k = ((r1 - r0) * (c1 - c0)) as f32;
                cell.iter_mut().for_each(|o| *o /= k);
            }
        }
        out.push(row);
    }
    Ok(out)
}
