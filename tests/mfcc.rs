//! The MFCC baseline (src/data/mfcc.rs) against librosa + scipy: reference coefficients
//! for a fixed signal, made by tests/fixtures/mfcc_reference.py (which says how each step
//! of rlcpc's definition maps onto librosa.filters.mel, librosa's symmetric Hamming window
//! and scipy's orthonormal DCT-II).

use rlcpc::data::mfcc::{Mfcc, MfccConfig};
use serde::Deserialize;

#[derive(Deserialize)]
struct Reference {
    librosa: String,
    sample_rate: u32,
    frame: usize,
    hop: usize,
    n_fft: usize,
    n_mels: usize,
    n_coeffs: usize,
    /// float32 values, written as the float64 equal to each.
    samples: Vec<f64>,
    /// `[frames][n_coeffs]`, computed in float64.
    mfcc: Vec<Vec<f64>>,
}

fn reference() -> Reference {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/mfcc_reference.json"
    );
    let text = std::fs::read_to_string(path).expect("tests/fixtures/mfcc_reference.json");
    serde_json::from_str(&text).expect("fixture parses")
}

#[test]
fn mfcc_fixture_is_non_trivial() {
    let r = reference();
    assert!(!r.librosa.is_empty());
    assert_eq!(r.samples.len(), 4800, "0.3 s at 16 kHz");
    // Written as the f64 of an f32 (serde_json's default float parser may differ from
    // it in the last bit of the f64, never by an f32 step).
    assert!(
        r.samples
            .iter()
            .all(|&v| (v as f32 as f64 - v).abs() <= 1e-12 * v.abs().max(1.0)),
        "samples are f32 values"
    );
    assert!(r.samples[..4000].iter().any(|&v| v.abs() > 0.5));
    assert!(
        r.samples[4000..].iter().all(|&v| v == 0.0),
        "silent after 0.25 s"
    );
    assert_eq!(r.mfcc.len(), 1 + (4800 - 400) / 160);
    assert!(r
        .mfcc
        .iter()
        .all(|f| f.len() == 13 && f.iter().all(|v| v.is_finite())));
    // Frames 0..=24 hold signal: coefficients of several units that change from frame to frame.
    for f in &r.mfcc[..25] {
        assert!(f.iter().filter(|v| v.abs() > 0.1).count() >= 8, "{f:?}");
        assert!(f.iter().any(|v| v.abs() > 3.0), "{f:?}");
    }
    for k in 0..13 {
        let col: Vec<f64> = r.mfcc[..25].iter().map(|f| f[k]).collect();
        let (lo, hi) = col
            .iter()
            .fold((f64::MAX, f64::MIN), |(l, h), &v| (l.min(v), h.max(v)));
        assert!(hi - lo > 0.1, "c{k} varies over frames: {col:?}");
    }
    // Frames 25..=27 are all zeros: every log-mel value is ln 1e-10, so c0 = √40 ln 1e-10
    // and the other coefficients vanish.
    for f in &r.mfcc[25..] {
        assert!((f[0] - 40f64.sqrt() * 1e-10f64.ln()).abs() < 1e-6, "{f:?}");
        assert!(f[1..].iter().all(|v| v.abs() < 1e-9), "{f:?}");
    }
}

#[test]
fn mfcc_matches_librosa_reference() {
    let r = reference();
    let cfg = MfccConfig::for_rate(r.sample_rate);
    assert_eq!(
        (cfg.frame, cfg.hop, cfg.n_fft, cfg.n_mels, cfg.n_coeffs),
        (r.frame, r.hop, r.n_fft, r.n_mels, r.n_coeffs),
        "the fixture was made with rlcpc's default settings"
    );
    let x: Vec<f32> = r.samples.iter().map(|&v| v as f32).collect();
    let got = Mfcc::new(cfg).compute(&x);
    assert_eq!(got.len(), r.mfcc.len(), "frame count");
    // Tolerance |got − want| ≤ 1e-3 + 1e-3·|want|. rlcpc computes in f32 (FFT, power,
    // filter sums, log, DCT) and the reference in f64 on the same f32 samples: a literal
    // f32 transliteration of mfcc.rs differed from the reference by at most 1.2e-5
    // (0.6% of this tolerance; the weakest bins are the lowest filters, which pre-emphasis
    // attenuates). Each detail that the fixture script varies — no or whole-signal
    // pre-emphasis, no DC removal, periodic Hamming or Hann, Slaney mel scale or filter
    // normalisation, unnormalised DCT, 10·log10, n_fft 400, filters from 20 Hz — moves
    // some coefficient by at least 30 times this tolerance.
    let mut worst = (0.0f64, 0, 0);
    for (i, (g, w)) in got.iter().zip(&r.mfcc).enumerate() {
        assert_eq!(g.len(), w.len(), "coefficients of frame {i}");
        for (k, (&g, &w)) in g.iter().zip(w).enumerate() {
            let err = (g as f64 - w).abs();
            let tol = 1e-3 + 1e-3 * w.abs();
            assert!(
                err <= tol,
                "frame {i} c{k}: rlcpc {g}, librosa {w} (|diff| {err:.2e} > {tol:.2e})"
            );
            if err / tol > worst.0 {
                worst = (err / tol, i, k);
            }
        }
    }
    eprintln!(
        "worst |diff|/tolerance {:.4} at frame {} c{}",
        worst.0, worst.1, worst.2
    );
}
