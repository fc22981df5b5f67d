//! SimCLR's image augmentations (Chen et al. 2020, appendix A), on channels-last
//! `[H, W, C]` images in [0, 1], grey (C = 1) or RGB (C = 3), each drawn per view from a
//! seeded generator: random resized crop, horizontal flip, colour jitter with
//! probability (brightness, contrast, saturation, hue, in random order), random
//! greyscale and an optional Gaussian blur. Each follows torchvision's definition
//! (`RandomResizedCrop`, `ColorJitter`, `RandomGrayscale`, `GaussianBlur`), which
//! SimCLR's and MoCo v2's reference code use; the tests check them against those
//! formulas.

use rand::seq::SliceRandom;
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::config::Invalid;

/// `[augment]`: how each view is drawn. Defaults are SimCLR's CIFAR-10 recipe (crop
/// scale 0.08–1, flips, jitter 0.4/0.4/0.4/0.1 with p = 0.8, greyscale p = 0.2, no blur).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AugmentSection {
    /// Random resized crop: the crop's share of the image area is drawn from this range,
    /// within (0, 1].
    pub crop_scale: [f64; 2],
    /// Random resized crop: its aspect ratio (width / height), drawn log-uniformly from
    /// this range.
    pub crop_ratio: [f64; 2],
    /// Probability of a left–right mirror.
    pub flip: f64,
    /// Probability that colour jitter is applied at all (SimCLR: 0.8).
    pub jitter_prob: f64,
    /// Brightness factor drawn from [max(0, 1 − b), 1 + b].
    pub brightness: f64,
    /// Contrast factor from [max(0, 1 − c), 1 + c] (blend with the mean grey level).
    pub contrast: f64,
    /// Saturation factor from [max(0, 1 − s), 1 + s] (colour images only).
    pub saturation: f64,
    /// Hue shift from [−h, h] turns of the colour wheel, h ≤ 0.5 (colour images only).
    pub hue: f64,
    /// Probability of turning the view grey (ITU-R 601 luma, colour images only).
    pub grayscale: f64,
    /// Probability of a Gaussian blur (SimCLR on ImageNet: 0.5; off for small images).
    pub blur: f64,
    /// Gaussian blur: its standard deviation in pixels, drawn uniformly from this range.
    pub blur_sigma: [f64; 2],
    /// Gaussian blur: its kernel side in pixels (odd; SimCLR: 10% of the image side).
    pub blur_kernel: usize,
}

impl Default for AugmentSection {
    fn default() -> Self {
        AugmentSection {
            crop_scale: [0.08, 1.0],
            crop_ratio: [3.0 / 4.0, 4.0 / 3.0],
            flip: 0.5,
            jitter_prob: 0.8,
            brightness: 0.4,
            contrast: 0.4,
            saturation: 0.4,
            hue: 0.1,
            grayscale: 0.2,
            blur: 0.0,
            blur_sigma: [0.1, 2.0],
            blur_kernel: 3,
        }
    }
}

impl AugmentSection {
    /// Refuses values no augmentation can draw from, naming the key.
    pub fn validate(&self) -> Result<(), Invalid> {
        let key = |k: &str| format!("augment.{k}");
        let [s0, s1] = self.crop_scale;
        if !(s0 > 0.0 && s0 <= s1 && s1 <= 1.0) {
            return Err(Invalid::new(
                &key("crop_scale"),
                format!("[{s0}, {s1}] (need 0 < low ≤ high ≤ 1: shares of the image area)"),
            ));
        }
        let [r0, r1] = self.crop_ratio;
        if !(r0 > 0.0 && r0 <= r1 && r1.is_finite()) {
            return Err(Invalid::new(
                &key("crop_ratio"),
                format!("[{r0}, {r1}] (need 0 < low ≤ high: width / height)"),
            ));
        }
        for (k, p) in [
            ("flip", self.flip),
            ("jitter_prob", self.jitter_prob),
            ("grayscale", self.grayscale),
            ("blur", self.blur),
        ] {
            if !(0.0..=1.0).contains(&p) {
                return Err(Invalid::new(
                    &key(k),
                    format!("{p} (a probability, in [0, 1])"),
                ));
            }
        }
        for (k, v) in [
            ("brightness", self.brightness),
            ("contrast", self.contrast),
            ("saturation", self.saturation),
        ] {
            if !(v >= 0.0 && v.is_finite()) {
                return Err(Invalid::new(
                    &key(k),
                    format!("{v} (a jitter strength, ≥ 0)"),
                ));
            }
        }
        if !(0.0..=0.5).contains(&self.hue) {
            return Err(Invalid::new(
                &key("hue"),
                format!("{} (turns of the colour wheel, in [0, 0.5])", self.hue),
            ));
        }
        let [b0, b1] = self.blur_sigma;
        if !(b0 > 0.0 && b0 <= b1 && b1.is_finite()) {
            return Err(Invalid::new(
                &key("blur_sigma"),
                format!("[{b0}, {b1}] (need 0 < low ≤ high, in pixels)"),
            ));
        }
        if self.blur_kernel.is_multiple_of(2) || self.blur_kernel > 255 {
            return Err(Invalid::new(
                &key("blur_kernel"),
                format!(
                    "{} (an odd number of pixels, at most 255)",
                    self.blur_kernel
                ),
            ));
        }
        Ok(())
    }

    /// Refuses settings that do not apply to `channels`-channel images: saturation, hue
    /// and greyscale need colour.
    pub fn check_channels(&self, channels: usize) -> Result<(), Invalid> {
        if channels == 1 {
            for (k, v) in [
                ("saturation", self.saturation),
                ("hue", self.hue),
                ("grayscale", self.grayscale),
            ] {
                if v != 0.0 {
                    return Err(Invalid::new(
                        &format!("augment.{k}"),
                        format!("{v}, but the images are grey (1 channel): set it to 0"),
                    ));
                }
            }
        } else if channels != 3 {
            return Err(Invalid::new(
                "augment",
                format!("images of {channels} channels (augmentations are for grey or RGB)"),
            ));
        }
        Ok(())
    }
}

/// An image `[h, w, c]` in [0, 1].
#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    pub h: usize,
    pub w: usize,
    pub c: usize,
    pub px: Vec<f32>,
}

impl Image {
    pub fn new(h: usize, w: usize, c: usize, px: Vec<f32>) -> Image {
        assert_eq!(px.len(), h * w * c, "image of {h}x{w}x{c}");
        Image { h, w, c, px }
    }

    fn at(&self, y: usize, x: usize, ch: usize) -> f32 {
        self.px[(y * self.w + x) * self.c + ch]
    }
}

/// A crop box: top row, left column, height, width.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Crop {
    pub top: usize,
    pub left: usize,
    pub h: usize,
    pub w: usize,
}

/// torchvision's `RandomResizedCrop.get_params`: ten tries at an area share from
/// `scale` and a log-uniform aspect ratio from `ratio`, else the centre crop of the
/// nearest allowed ratio.
pub fn crop_params(
    h: usize,
    w: usize,
    scale: [f64; 2],
    ratio: [f64; 2],
    rng: &mut impl Rng,
) -> Crop {
    let area = (h * w) as f64;
    let (l0, l1) = (ratio[0].ln(), ratio[1].ln());
    for _ in 0..10 {
        let target = area * rng.random_range(scale[0]..=scale[1]);
        let aspect = rng.random_range(l0..=l1).exp();
        let cw = (target * aspect).sqrt().round() as usize;
        let ch = (target / aspect).sqrt().round() as usize;
        if cw > 0 && cw <= w && ch > 0 && ch <= h {
            return Crop {
                top: rng.random_range(0..=h - ch),
                left: rng.random_range(0..=w - cw),
                h: ch,
                w: cw,
            };
        }
    }
    let in_ratio = w as f64 / h as f64;
    let (ch, cw) = if in_ratio < ratio[0] {
        (((w as f64) / ratio[0]).round() as usize, w)
    } else if in_ratio > ratio[1] {
        (h, ((h as f64) * ratio[1]).round() as usize)
    } else {
        (h, w)
    };
    let (ch, cw) = (ch.clamp(1, h), cw.clamp(1, w));
    Crop {
        top: (h - ch) / 2,
        left: (w - cw) / 2,
        h: ch,
        w: cw,
    }
}

/// The crop `box_` of `img` resized to `out_h`×`out_w` by bilinear interpolation with
/// half-pixel centres (torchvision / PyTorch `align_corners = False`, no antialiasing).
pub fn resized_crop(img: &Image, b: Crop, out_h: usize, out_w: usize) -> Image {
    let mut px = vec![0f32; out_h * out_w * img.c];
    let coord = |o: usize, n_out: usize, n_in: usize| {
        let s = ((o as f64 + 0.5) * n_in as f64 / n_out as f64 - 0.5).max(0.0);
        let i0 = (s.floor() as usize).min(n_in - 1);
        let i1 = (i0 + 1).min(n_in - 1);
        (i0, i1, (s - i0 as f64).min(1.0) as f32)
    };
    for oy in 0..out_h {
        let (y0, y1, fy) = coord(oy, out_h, b.h);
        for ox in 0..out_w {
            let (x0, x1, fx) = coord(ox, out_w, b.w);
            for ch in 0..img.c {
                let g = |y: usize, x: usize| img.at(b.top + y, b.left + x, ch);
                let top = g(y0, x0) * (1.0 - fx) + g(y0, x1) * fx;
                let bot = g(y1, x0) * (1.0 - fx) + g(y1, x1) * fx;
                px[(oy * out_w + ox) * img.c + ch] = top * (1.0 - fy) + bot * fy;
            }
        }
    }
    Image::new(out_h, out_w, img.c, px)
}

/// Mirrors left–right.
pub fn hflip(img: &mut Image) {
    let (w, c) = (img.w, img.c);
    for row in img.px.chunks_exact_mut(w * c) {
        for x in 0..w / 2 {
            for ch in 0..c {
                row.swap(x * c + ch, (w - 1 - x) * c + ch);
            }
        }
    }
}

/// ITU-R 601-2 luma of an RGB pixel (torchvision's `rgb_to_grayscale`).
pub fn luma(r: f32, g: f32, b: f32) -> f32 {
    0.299 * r + 0.587 * g + 0.114 * b
}

/// Each pixel's grey level (the value itself for grey images).
fn grey_levels(img: &Image) -> Vec<f32> {
    if img.c == 1 {
        return img.px.clone();
    }
    img.px
        .chunks_exact(3)
        .map(|p| luma(p[0], p[1], p[2]))
        .collect()
}

/// `factor · img + (1 − factor) · other`, clamped to [0, 1] (torchvision's `_blend`);
/// `other(i)` is the value blended into pixel i.
fn blend(img: &mut Image, factor: f32, other: impl Fn(usize) -> f32) {
    let c = img.c;
    for (i, v) in img.px.iter_mut().enumerate() {
        *v = (factor * *v + (1.0 - factor) * other(i / c)).clamp(0.0, 1.0);
    }
}

/// Multiplies by `factor`, clamped (`adjust_brightness`).
pub fn adjust_brightness(img: &mut Image, factor: f32) {
    blend(img, factor, |_| 0.0);
}

/// Blends with the mean grey level of the whole image (`adjust_contrast`).
pub fn adjust_contrast(img: &mut Image, factor: f32) {
    let g = grey_levels(img);
    let mean = g.iter().sum::<f32>() / g.len() as f32;
    blend(img, factor, |_| mean);
}

/// Blends each RGB pixel with its own grey level (`adjust_saturation`).
pub fn adjust_saturation(img: &mut Image, factor: f32) {
    let g = grey_levels(img);
    blend(img, factor, |p| g[p]);
}

/// Rotates every pixel's hue by `shift` turns in HSV space (`adjust_hue`).
pub fn adjust_hue(img: &mut Image, shift: f32) {
    for p in img.px.chunks_exact_mut(3) {
        let (h, s, v) = rgb_to_hsv(p[0], p[1], p[2]);
        let (r, g, b) = hsv_to_rgb((h + shift).rem_euclid(1.0), s, v);
        p.copy_from_slice(&[r, g, b]);
    }
}

/// Hue in turns [0, 1), saturation, value.
pub fn rgb_to_hsv(r: f32, g: f32, b: f32) -> (f32, f32, f32) {
    let max = r.max(g).max(b);
    let min = r.min(g).min(b);
    let d = max - min;
    let s = if max > 0.0 { d / max } else { 0.0 };
    let h = if d == 0.0 {
        0.0
    } else if max == r {
        ((g - b) / d).rem_euclid(6.0) / 6.0
    } else if max == g {
        ((b - r) / d + 2.0) / 6.0
    } else {
        ((r - g) / d + 4.0) / 6.0
    };
    (h, s, max)
}

pub fn hsv_to_rgb(h: f32, s: f32, v: f32) -> (f32, f32, f32) {
    let h6 = h * 6.0;
    let i = (h6.floor() as i32).rem_euclid(6);
    let f = h6 - h6.floor();
    let (p, q, t) = (v * (1.0 - s), v * (1.0 - s * f), v * (1.0 - s * (1.0 - f)));
    match i {
        0 => (v, t, p),
        1 => (q, v, p),
        2 => (p, v, t),
        3 => (p, q, v),
        4 => (t, p, v),
        _ => (v, p, q),
    }
}

/// Replaces each RGB pixel by its grey level in all three channels.
pub fn to_grayscale(img: &mut Image) {
    for p in img.px.chunks_exact_mut(3) {
        let l = luma(p[0], p[1], p[2]);
        p.fill(l);
    }
}

/// The normalised 1-D Gaussian kernel of `size` taps and standard deviation `sigma`.
pub fn gaussian_kernel(size: usize, sigma: f64) -> Vec<f32> {
    let half = (size / 2) as f64;
    let k: Vec<f64> = (0..size)
        .map(|i| (-((i as f64 - half).powi(2)) / (2.0 * sigma * sigma)).exp())
        .collect();
    let s: f64 = k.iter().sum();
    k.iter().map(|v| (v / s) as f32).collect()
}

/// Separable Gaussian blur with reflected borders (torchvision's `gaussian_blur`).
pub fn gaussian_blur(img: &mut Image, size: usize, sigma: f64) {
    let k = gaussian_kernel(size, sigma);
    let half = (size / 2) as isize;
    let reflect = |i: isize, n: usize| -> usize {
        let n = n as isize;
        if n == 1 {
            return 0;
        }
        let mut i = i;
        while i < 0 || i >= n {
            i = if i < 0 { -i } else { 2 * (n - 1) - i };
        }
        i as usize
    };
    let (h, w, c) = (img.h, img.w, img.c);
    let mut tmp = vec![0f32; img.px.len()];
    for y in 0..h {
        for x in 0..w {
            for ch in 0..c {
                tmp[(y * w + x) * c + ch] = (0..size)
                    .map(|t| k[t] * img.at(y, reflect(x as isize + t as isize - half, w), ch))
                    .sum();
            }
        }
    }
    for y in 0..h {
        for x in 0..w {
            for ch in 0..c {
                img.px[(y * w + x) * c + ch] = (0..size)
                    .map(|t| {
                        k[t] * tmp[(reflect(y as isize + t as isize - half, h) * w + x) * c + ch]
                    })
                    .sum();
            }
        }
    }
}

/// One augmented view of `img`, `out_h`×`out_w`: crop, flip, jitter (the four
/// adjustments in random order, as torchvision), greyscale, blur.
pub fn view(
    img: &Image,
    a: &AugmentSection,
    out_h: usize,
    out_w: usize,
    rng: &mut impl Rng,
) -> Image {
    let b = crop_params(img.h, img.w, a.crop_scale, a.crop_ratio, rng);
    let mut v = resized_crop(img, b, out_h, out_w);
    if rng.random::<f64>() < a.flip {
        hflip(&mut v);
    }
    if rng.random::<f64>() < a.jitter_prob {
        let factor = |s: f64, rng: &mut dyn rand::RngCore| {
            (s > 0.0).then(|| rng.random_range((1.0 - s).max(0.0)..=1.0 + s) as f32)
        };
        let mut order = [0usize, 1, 2, 3];
        order.shuffle(rng);
        for op in order {
            match op {
                0 => factor(a.brightness, rng).map(|f| adjust_brightness(&mut v, f)),
                1 => factor(a.contrast, rng).map(|f| adjust_contrast(&mut v, f)),
                2 if v.c == 3 => factor(a.saturation, rng).map(|f| adjust_saturation(&mut v, f)),
                3 if v.c == 3 && a.hue > 0.0 => {
                    let s = rng.random_range(-a.hue..=a.hue) as f32;
                    adjust_hue(&mut v, s);
                    Some(())
                }
                _ => None,
            };
        }
    }
    if v.c == 3 && rng.random::<f64>() < a.grayscale {
        to_grayscale(&mut v);
    }
    if rng.random::<f64>() < a.blur {
        let sigma = rng.random_range(a.blur_sigma[0]..=a.blur_sigma[1]);
        gaussian_blur(&mut v, a.blur_kernel, sigma);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rlcpc_envs::SeededRng;

    fn ramp(h: usize, w: usize, c: usize) -> Image {
        let n = h * w * c;
        Image::new(h, w, c, (0..n).map(|i| i as f32 / n as f32).collect())
    }

    #[test]
    fn crops_respect_scale_and_ratio() {
        let mut rng = SeededRng::seed_from_u64(3);
        for _ in 0..2000 {
            let b = crop_params(28, 28, [0.2, 0.6], [0.75, 4.0 / 3.0], &mut rng);
            assert!(b.top + b.h <= 28 && b.left + b.w <= 28);
            let share = (b.h * b.w) as f64 / 784.0;
            // Rounding each side moves the share by at most about one row and column.
            assert!(
                share > 0.2 - 2.0 * 28.0 / 784.0 && share < 0.6 + 2.0 * 28.0 / 784.0,
                "{share}"
            );
            let r = b.w as f64 / b.h as f64;
            assert!(r > 0.75 * 0.8 && r < 4.0 / 3.0 * 1.25, "{r}");
        }
        // An impossible ratio falls back to the centre crop of the nearest one.
        let b = crop_params(10, 10, [1.0, 1.0], [2.0, 2.0], &mut rng);
        assert_eq!(
            b,
            Crop {
                top: 2,
                left: 0,
                h: 5,
                w: 10
            }
        );
    }

    #[test]
    fn a_full_crop_at_the_same_size_is_the_identity_and_halving_averages() {
        let img = ramp(6, 8, 3);
        let full = Crop {
            top: 0,
            left: 0,
            h: 6,
            w: 8,
        };
        assert_eq!(resized_crop(&img, full, 6, 8), img);
        // 2× downsampling with half-pixel centres averages each 2×2 block.
        let small = resized_crop(&img, full, 3, 4);
        for ch in 0..3 {
            let want =
                (img.at(2, 4, ch) + img.at(2, 5, ch) + img.at(3, 4, ch) + img.at(3, 5, ch)) / 4.0;
            assert!((small.at(1, 2, ch) - want).abs() < 1e-6);
        }
    }

    #[test]
    fn flip_mirrors_and_twice_is_the_identity() {
        let img = ramp(3, 5, 3);
        let mut f = img.clone();
        hflip(&mut f);
        assert_eq!(f.at(1, 0, 2), img.at(1, 4, 2));
        assert_eq!(f.at(2, 2, 1), img.at(2, 2, 1));
        hflip(&mut f);
        assert_eq!(f, img);
    }

    #[test]
    fn jitter_follows_torchvision_formulas() {
        let img = Image::new(1, 2, 3, vec![0.2, 0.4, 0.6, 0.9, 0.1, 0.5]);
        let mut b = img.clone();
        adjust_brightness(&mut b, 1.5);
        assert_eq!(b.px, vec![0.3, 0.6, 0.90000004, 1.0, 0.15, 0.75]);
        let grey = [luma(0.2, 0.4, 0.6), luma(0.9, 0.1, 0.5)];
        let mean = (grey[0] + grey[1]) / 2.0;
        let mut c = img.clone();
        adjust_contrast(&mut c, 0.5);
        for (i, v) in c.px.iter().enumerate() {
            assert!((v - (0.5 * img.px[i] + 0.5 * mean)).abs() < 1e-6);
        }
        let mut s = img.clone();
        adjust_saturation(&mut s, 0.0);
        assert!((s.px[0] - grey[0]).abs() < 1e-6 && (s.px[5] - grey[1]).abs() < 1e-6);
        // A third of a turn maps red to green; a full turn is the identity.
        let mut h = Image::new(1, 1, 3, vec![1.0, 0.0, 0.0]);
        adjust_hue(&mut h, 1.0 / 3.0);
        assert!(
            h.px.iter()
                .zip([0.0, 1.0, 0.0])
                .all(|(a, b)| (a - b).abs() < 1e-5),
            "{:?}",
            h.px
        );
        let mut h = img.clone();
        adjust_hue(&mut h, 1.0);
        assert!(h.px.iter().zip(&img.px).all(|(a, b)| (a - b).abs() < 1e-5));
        for &(r, g, bl) in &[
            (0.2, 0.4, 0.6),
            (0.9, 0.1, 0.5),
            (0.3, 0.3, 0.3),
            (0.0, 0.7, 0.2),
        ] {
            let (hh, ss, vv) = rgb_to_hsv(r, g, bl);
            let back = hsv_to_rgb(hh, ss, vv);
            assert!(
                (back.0 - r).abs() < 1e-6
                    && (back.1 - g).abs() < 1e-6
                    && (back.2 - bl).abs() < 1e-6
            );
        }
        let mut gr = img.clone();
        to_grayscale(&mut gr);
        assert!(gr.px[..3].iter().all(|v| (v - grey[0]).abs() < 1e-7));
    }

    #[test]
    fn blur_kernel_is_normalised_gaussian_and_keeps_constants() {
        let k = gaussian_kernel(5, 1.0);
        assert!((k.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        let e = (-0.5f64).exp() / (1.0 + 2.0 * (-0.5f64).exp() + 2.0 * (-2.0f64).exp());
        assert!((k[1] as f64 - e).abs() < 1e-6);
        let mut flat = Image::new(4, 4, 1, vec![0.3; 16]);
        gaussian_blur(&mut flat, 3, 1.5);
        assert!(flat.px.iter().all(|v| (v - 0.3).abs() < 1e-6));
        // An impulse spreads into the kernel's outer product.
        let mut imp = Image::new(5, 5, 1, vec![0.0; 25]);
        imp.px[12] = 1.0;
        gaussian_blur(&mut imp, 3, 1.0);
        let k3 = gaussian_kernel(3, 1.0);
        assert!((imp.at(1, 2, 0) - k3[0] * k3[1]).abs() < 1e-6);
    }

    #[test]
    fn views_are_seeded_in_range_and_differ() {
        let img = ramp(28, 28, 3);
        let a = AugmentSection {
            blur: 0.5,
            ..AugmentSection::default()
        };
        let draw = |seed| {
            let mut rng = SeededRng::seed_from_u64(seed);
            (
                view(&img, &a, 24, 24, &mut rng),
                view(&img, &a, 24, 24, &mut rng),
            )
        };
        let (v1, v2) = draw(9);
        assert_eq!(draw(9), (v1.clone(), v2.clone()));
        assert_ne!(v1, v2);
        assert_eq!((v1.h, v1.w, v1.c), (24, 24, 3));
        assert!(v1.px.iter().chain(&v2.px).all(|v| (0.0..=1.0).contains(v)));
    }

    #[test]
    fn bad_settings_are_named() {
        let bad = |f: fn(&mut AugmentSection)| {
            let mut a = AugmentSection::default();
            f(&mut a);
            a.validate().unwrap_err().to_string()
        };
        assert!(bad(|a| a.crop_scale = [0.0, 1.0]).contains("augment.crop_scale"));
        assert!(bad(|a| a.crop_scale = [0.5, 1.5]).contains("augment.crop_scale"));
        assert!(bad(|a| a.brightness = -0.1).contains("augment.brightness"));
        assert!(bad(|a| a.flip = 2.0).contains("augment.flip"));
        assert!(bad(|a| a.hue = 0.7).contains("augment.hue"));
        assert!(bad(|a| a.blur_kernel = 4).contains("augment.blur_kernel"));
        let e = AugmentSection::default()
            .check_channels(1)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("augment.saturation") && e.contains("grey"),
            "{e}"
        );
    }
}
