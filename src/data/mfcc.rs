//! MFCCs (Davis & Mermelstein 1980), the hand-crafted baseline of `rlcpc probe`: per
//! frame mean removal and pre-emphasis 0.97 (Kaldi's convention), 25 ms symmetric Hamming
//! frames every 10 ms, power spectrum, triangular filters with edges evenly spaced on the
//! HTK mel scale and linear in Hz between them (librosa's `htk=True, norm=None`; HTK and
//! Kaldi make them linear in mel), natural log, DCT-II (orthonormal). Checked against
//! librosa in `tests/mfcc.rs` (fixture and script in `tests/fixtures/`).

use std::sync::Arc;

use rustfft::num_complex::Complex32;
use rustfft::{Fft, FftPlanner};

/// MFCC settings; the defaults give one frame per 10 ms, like the CPC encoder.
#[derive(Debug, Clone)]
pub struct MfccConfig {
    pub sample_rate: u32,
    pub frame: usize,
    pub hop: usize,
    pub n_fft: usize,
    pub n_mels: usize,
    pub n_coeffs: usize,
}

impl MfccConfig {
    pub fn for_rate(sample_rate: u32) -> Self {
        MfccConfig {
            sample_rate,
            frame: sample_rate as usize / 40,
            hop: sample_rate as usize / 100,
            n_fft: (sample_rate as usize / 40).next_power_of_two(),
            n_mels: 40,
            n_coeffs: 13,
        }
    }
}

pub fn hz_to_mel(f: f64) -> f64 {
    2595.0 * (1.0 + f / 700.0).log10()
}

pub fn mel_to_hz(m: f64) -> f64 {
    700.0 * (10f64.powf(m / 2595.0) - 1.0)
}

/// A reusable MFCC extractor.
pub struct Mfcc {
    cfg: MfccConfig,
    fft: Arc<dyn Fft<f32>>,
    window: Vec<f32>,
    /// `[n_mels][n_fft/2+1]` triangular filters.
    filters: Vec<Vec<f32>>,
    /// `[n_coeffs][n_mels]` DCT-II rows.
    dct: Vec<Vec<f32>>,
}

impl Mfcc {
    pub fn new(cfg: MfccConfig) -> Self {
        let fft = FftPlanner::new().plan_fft_forward(cfg.n_fft);
        let window = (0..cfg.frame)
            .map(|i| {
                (0.54
                    - 0.46 * (2.0 * std::f64::consts::PI * i as f64 / (cfg.frame - 1) as f64).cos())
                    as f32
            })
            .collect();
        let bins = cfg.n_fft / 2 + 1;
        let top = hz_to_mel(cfg.sample_rate as f64 / 2.0);
        let edges: Vec<f64> = (0..cfg.n_mels + 2)
            .map(|i| mel_to_hz(top * i as f64 / (cfg.n_mels + 1) as f64))
            .collect();
        let filters = (0..cfg.n_mels)
            .map(|m| {
                let (lo, mid, hi) = (edges[m], edges[m + 1], edges[m + 2]);
                (0..bins)
                    .map(|b| {
                        let f = b as f64 * cfg.sample_rate as f64 / cfg.n_fft as f64;
                        let w = if f <= lo || f >= hi {
                            0.0
                        } else if f <= mid {
                            (f - lo) / (mid - lo)
                        } else {
                            (hi - f) / (hi - mid)
                        };
                        w as f32
                    })
                    .collect()
            })
            .collect();
        let n = cfg.n_mels as f64;
        let dct = (0..cfg.n_coeffs)
            .map(|k| {
                let scale = if k == 0 {
                    (1.0 / n).sqrt()
                } else {
                    (2.0 / n).sqrt()
                };
                (0..cfg.n_mels)
                    .map(|m| {
                        (scale * (std::f64::consts::PI * k as f64 * (m as f64 + 0.5) / n).cos())
                            as f32
                    })
                    .collect()
            })
            .collect();
        Mfcc {
            cfg,
            fft,
            window,
            filters,
            dct,
        }
    }

    /// Coefficients per frame, `[frames][n_coeffs]`; a signal shorter than one frame is
    /// zero-padded to one.
    pub fn compute(&self, x: &[f32]) -> Vec<Vec<f32>> {
        let c = &self.cfg;
        let frames = if x.len() <= c.frame {
            1
        } else {
            1 + (x.len() - c.frame) / c.hop
        };
        let mut buf = vec![Complex32::new(0.0, 0.0); c.n_fft];
        let mut power = vec![0f32; c.n_fft / 2 + 1];
        let mut out = Vec::with_capacity(frames);
        for f in 0..frames {
            let start = f * c.hop;
            buf.fill(Complex32::new(0.0, 0.0));
            let seg = &x[start..(start + c.frame).min(x.len())];
            let mean = seg.iter().sum::<f32>() / seg.len() as f32;
            let mut prev = seg[0] - mean;
            for (i, &s) in seg.iter().enumerate() {
                let s = s - mean;
                let pre = if i == 0 {
                    s - 0.97 * s
                } else {
                    s - 0.97 * prev
                };
                prev = s;
                buf[i] = Complex32::new(pre * self.window[i], 0.0);
            }
            self.fft.process(&mut buf);
            for (p, v) in power.iter_mut().zip(&buf) {
                *p = v.norm_sqr();
            }
            let logmel: Vec<f32> = self
                .filters
                .iter()
                .map(|w| {
                    w.iter()
                        .zip(&power)
                        .map(|(a, b)| a * b)
                        .sum::<f32>()
                        .max(1e-10)
                        .ln()
                })
                .collect();
            out.push(
                self.dct
                    .iter()
                    .map(|row| row.iter().zip(&logmel).map(|(a, b)| a * b).sum())
                    .collect(),
            );
        }
        out
    }

    /// Utterance-level features: the mean and standard deviation of each coefficient
    /// over frames (`2 · n_coeffs` values).
    pub fn pooled(&self, x: &[f32]) -> Vec<f32> {
        Pooling::MeanStd.apply(&self.compute(x))
    }
}

/// How a sequence of frame features becomes one vector per utterance. The audio probe
/// pools every feature set (CPC's c_t or z_t, the random-init twin's, MFCCs) both ways,
/// so that no row gains from a richer summary than another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// The mean over frames (`d` values).
    Mean,
    /// The mean and the standard deviation over frames (`2d` values).
    MeanStd,
}

impl Pooling {
    /// Both poolings, in the order the probe reports them.
    pub const ALL: [Pooling; 2] = [Pooling::Mean, Pooling::MeanStd];

    /// The name the probe prints.
    pub fn name(self) -> &'static str {
        match self {
            Pooling::Mean => "mean",
            Pooling::MeanStd => "mean+std",
        }
    }

    /// The pooled vector of `frames` (`[T][d]`, T ≥ 1; the standard deviation divides
    /// by T).
    pub fn apply<R: AsRef<[f32]>>(self, frames: &[R]) -> Vec<f32> {
        let n = frames.len() as f32;
        let d = frames.first().map_or(0, |f| f.as_ref().len());
        let mut mean = vec![0f32; d];
        for f in frames {
            for (m, v) in mean.iter_mut().zip(f.as_ref()) {
                *m += v / n;
            }
        }
        if self == Pooling::Mean {
            return mean;
        }
        let mut var = vec![0f32; d];
        for f in frames {
            for ((s, v), m) in var.iter_mut().zip(f.as_ref()).zip(&mean) {
                *s += (v - m) * (v - m) / n;
            }
        }
        mean.extend(var.iter().map(|v| v.sqrt()));
        mean
    }
}
