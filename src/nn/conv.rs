//! 2-D convolution on channels-last images as im2col + one matrix product.
//!
//! `perf` on an RGB Lab run showed candle's CPU conv2d (its tiled im2col with per-tile
//! dot products) taking most of the time, for the actors' small batches and the
//! learner's large ones alike. Observations are already `[N, H, W, C]`, and in that
//! layout each kernel row of a patch is one contiguous run of `KW·C` floats, so im2col is
//! a sequence of `memcpy`s and the convolution becomes one GEMM. Its backward pass
//! (col2im) is the matching scatter-add. Weights keep PyTorch's `[C_out, C_in, KH, KW]`
//! layout. Other devices use candle's conv2d, on the same weights.

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Shape, Tensor};

/// `[N, H, W, C]` → `[N·OH·OW, KH·KW·C]` (each row one patch, in `(kh, kw, c)` order),
/// multiplied by `scale`. No padding.
struct Im2Col {
    kh: usize,
    kw: usize,
    stride: usize,
    scale: f32,
}

/// The adjoint of [`Im2Col`]: patches `[N·OH·OW, KH·KW·C]` summed back into
/// `[N, H, W, C]`, multiplied by `scale`.
struct Col2Im {
    dims: (usize, usize, usize, usize),
    kh: usize,
    kw: usize,
    stride: usize,
    scale: f32,
}

fn out_size(x: usize, k: usize, stride: usize) -> usize {
    (x - k) / stride + 1
}

/// Calls `f(patch_row_offset, image_offset)` for every kernel row of every patch: the
/// `KW·C` floats at `image_offset` belong at `patch_row_offset` of the columns matrix.
#[inline]
fn for_each_run(
    (n, h, w, c): (usize, usize, usize, usize),
    kh: usize,
    kw: usize,
    stride: usize,
    mut f: impl FnMut(usize, usize),
) {
    let (oh, ow) = (out_size(h, kh, stride), out_size(w, kw, stride));
    let run = kw * c;
    let mut row = 0;
    for b in 0..n {
        for oy in 0..oh {
            for ox in 0..ow {
                for ky in 0..kh {
                    let src = ((b * h + oy * stride + ky) * w + ox * stride) * c;
                    f(row + ky * run, src);
                }
                row += kh * run;
            }
        }
    }
}

/// [`Im2Col`] on slices: `x` `[N, H, W, C]` (`dims`) into `out` `[N·OH·OW, KH·KW·C]`,
/// times `scale` (the lean path's conv encoder and the candle op share it).
pub(crate) fn im2col(
    x: &[f32],
    dims: (usize, usize, usize, usize),
    (kh, kw): (usize, usize),
    stride: usize,
    scale: f32,
    out: &mut Vec<f32>,
) {
    let (n, h, w, c) = dims;
    let (oh, ow) = (out_size(h, kh, stride), out_size(w, kw, stride));
    let run = kw * c;
    out.clear();
    out.resize(n * oh * ow * kh * kw * c, 0.0);
    for_each_run(dims, kh, kw, stride, |dst, src| {
        let (d, s) = (&mut out[dst..dst + run], &x[src..src + run]);
        if scale == 1.0 {
            copy_run(d, s);
        } else {
            for (a, b) in d.iter_mut().zip(s) {
                *a = b * scale;
            }
        }
    });
}

/// `d = s` for one kernel row of a patch: short runs (a 3×3 kernel over 1 to 16
/// channels) are copied eight floats at a time inline, where a `memcpy` call per run
/// cost more than the copy.
#[inline]
fn copy_run(d: &mut [f32], s: &[f32]) {
    if d.len() >= 64 {
        d.copy_from_slice(s);
        return;
    }
    let (mut dc, mut sc) = (d.chunks_exact_mut(8), s.chunks_exact(8));
    for (a, b) in (&mut dc).zip(&mut sc) {
        let b: &[f32; 8] = b.try_into().expect("a chunk of 8");
        a.copy_from_slice(b);
    }
    for (a, b) in dc.into_remainder().iter_mut().zip(sc.remainder()) {
        *a = *b;
    }
}

/// [`Col2Im`] on slices: the columns `g` `[N·OH·OW, KH·KW·C]` summed back into `out`
/// `[N, H, W, C]` (`dims`; overwritten), times `scale`.
pub(crate) fn col2im(
    g: &[f32],
    dims: (usize, usize, usize, usize),
    (kh, kw): (usize, usize),
    stride: usize,
    scale: f32,
    out: &mut Vec<f32>,
) {
    let (n, h, w, c) = dims;
    let run = kw * c;
    out.clear();
    out.resize(n * h * w * c, 0.0);
    for_each_run(dims, kh, kw, stride, |src, dst| {
        for (a, b) in out[dst..dst + run].iter_mut().zip(&g[src..src + run]) {
            *a += b * scale;
        }
    });
}

/// Output size of a `k`-wide kernel at `stride` without padding.
pub(crate) fn conv_out_size(x: usize, k: usize, stride: usize) -> usize {
    out_size(x, k, stride)
}

pub(crate) fn contiguous_f32<'a>(
    s: &'a CpuStorage,
    l: &Layout,
    op: &str,
) -> candle_core::Result<&'a [f32]> {
    let (start, end) = l
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg(format!("{op} needs a contiguous input")))?;
    Ok(&s.as_slice::<f32>()?[start..end])
}

impl CustomOp1 for Im2Col {
    fn name(&self) -> &'static str {
        "im2col-nhwc"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(s, l, self.name())?;
        let dims = l.shape().dims4()?;
        let (n, h, w, c) = dims;
        if h < self.kh || w < self.kw {
            candle_core::bail!(
                "im2col: a {h}x{w} image is smaller than the {}x{} kernel",
                self.kh,
                self.kw
            );
        }
        let (oh, ow) = (
            out_size(h, self.kh, self.stride),
            out_size(w, self.kw, self.stride),
        );
        let mut out = Vec::new();
        im2col(
            x,
            dims,
            (self.kh, self.kw),
            self.stride,
            self.scale,
            &mut out,
        );
        Ok((
            CpuStorage::F32(out),
            Shape::from((n * oh * ow, self.kh * self.kw * c)),
        ))
    }

    fn bwd(
        &self,
        arg: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let op = Col2Im {
            dims: arg.dims4()?,
            kh: self.kh,
            kw: self.kw,
            stride: self.stride,
            scale: self.scale,
        };
        Ok(Some(grad.contiguous()?.apply_op1(op)?))
    }
}

impl CustomOp1 for Col2Im {
    fn name(&self) -> &'static str {
        "col2im-nhwc"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let g = contiguous_f32(s, l, self.name())?;
        let mut out = Vec::new();
        col2im(
            g,
            self.dims,
            (self.kh, self.kw),
            self.stride,
            self.scale,
            &mut out,
        );
        Ok((CpuStorage::F32(out), Shape::from(self.dims)))
    }

    fn bwd(
        &self,
        _arg: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let op = Im2Col {
            kh: self.kh,
            kw: self.kw,
            stride: self.stride,
            scale: self.scale,
        };
        Ok(Some(grad.contiguous()?.apply_op1(op)?))
    }
}

/// Convolution of `x` `[N, H, W, C]` (times `scale`) with `weight` `[C_out, C, KH, KW]`
/// and `bias` `[C_out]`, no padding → `[N, OH, OW, C_out]`. Differentiable in all three.
pub fn conv2d_nhwc(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    stride: usize,
    scale: f32,
) -> candle_core::Result<Tensor> {
    let (n, h, w, c) = x.dims4()?;
    let (co, ci, kh, kw) = weight.dims4()?;
    if c != ci {
        candle_core::bail!("conv2d: input has {c} channels, the kernel expects {ci}");
    }
    if x.device().is_cpu() && x.dtype() == DType::F32 {
        let (oh, ow) = (out_size(h, kh, stride), out_size(w, kw, stride));
        let cols = x.contiguous()?.apply_op1(Im2Col {
            kh,
            kw,
            stride,
            scale,
        })?;
        let wm = weight.permute((0, 2, 3, 1))?.reshape((co, kh * kw * c))?;
        cols.matmul(&wm.t()?)?
            .broadcast_add(bias)?
            .reshape((n, oh, ow, co))
    } else {
        let xs = (x * scale as f64)?.permute((0, 3, 1, 2))?.contiguous()?;
        xs.conv2d(weight, 0, stride, 1, 1)?
            .broadcast_add(&bias.reshape((1, co, 1, 1))?)?
            .permute((0, 2, 3, 1))
    }
}
