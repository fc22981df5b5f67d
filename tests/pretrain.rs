//! The standalone trainers' pieces against direct formulas: the strided 1-D convolution
//! against candle's conv1d, the GRU against its equations, speaker negatives, audio
//! decoding and resampling, corpus layouts and splits, MFCCs, and the probes' solvers.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarBuilder;
use rand::{Rng, SeedableRng};
use rlcpc::config::Negatives;
use rlcpc::contrastive::cpc::{sample_candidates, sample_pairs, CpcSampling};
use rlcpc::data::audio::{decode, resample, AudioSet, Layout, LoadOptions};
use rlcpc::data::mfcc::{Mfcc, MfccConfig};
use rlcpc::data::{split, SplitBy};
use rlcpc::nn::audio::{conv1d_strided, frames};
use rlcpc::nn::gru::Gru;
use rlcpc::nn::init::Init;
use rlcpc::probe::{classify, r2, Features, Logistic, Ridge};
use rlcpc_envs::SeededRng;

fn randn(shape: &[usize], seed: u64) -> Vec<f32> {
    let mut rng = SeededRng::seed_from_u64(seed);
    (0..shape.iter().product::<usize>())
        .map(|_| rng.random_range(-1.0..1.0))
        .collect()
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

#[test]
fn strided_conv1d_matches_candle_conv1d_in_values_and_gradients() {
    let dev = Device::Cpu;
    for (c_in, c_out, k, s, len) in [(1, 4, 10, 5, 103), (3, 5, 8, 4, 64), (4, 2, 4, 2, 31)] {
        let x = Var::from_vec(randn(&[2, len, c_in], 1), (2, len, c_in), &dev).unwrap();
        let w = Var::from_vec(randn(&[c_out, c_in, k], 2), (c_out, c_in, k), &dev).unwrap();
        let b = Var::from_vec(randn(&[c_out], 3), c_out, &dev).unwrap();
        let ours = conv1d_strided(&x, &w, &b, s).unwrap();
        assert_eq!(ours.dims(), &[2, len.div_ceil(s), c_out]);
        // candle: [N, C, L] with (k − s)/2 zeros on both sides; the outputs both compute.
        let pad = (k - s) / 2;
        let theirs = x
            .as_tensor()
            .transpose(1, 2)
            .unwrap()
            .conv1d(w.as_tensor(), pad, s, 1, 1)
            .unwrap()
            .broadcast_add(&b.as_tensor().reshape((1, c_out, 1)).unwrap())
            .unwrap()
            .transpose(1, 2)
            .unwrap();
        let n = theirs.dim(1).unwrap();
        let ours_n = ours.narrow(1, 0, n).unwrap();
        assert!(
            max_diff(&ours_n, &theirs) < 1e-5,
            "values differ for k={k} s={s}"
        );
        // Gradients of L = Σ g ⊙ y against the direct sums over the zero-padded input:
        // dL/dw[o,c,τ] = Σ_{n,j} g[n,j,o] x̃[n, s·j+τ, c], dL/db[o] = Σ g[n,j,o],
        // dL/dx[n,i,c] = Σ_{j,o} g[n,j,o] w[o,c,i+pad−s·j].
        let out = len.div_ceil(s);
        let g = randn(&[2, out, c_out], 4);
        let gt = Tensor::from_vec(g.clone(), (2, out, c_out), &dev).unwrap();
        let grads = (ours * &gt).unwrap().sum_all().unwrap().backward().unwrap();
        let xv = x
            .as_tensor()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let wv = w
            .as_tensor()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let xp = |nn: usize, i: isize, c: usize| {
            if i < 0 || i >= len as isize {
                0.0
            } else {
                xv[(nn * len + i as usize) * c_in + c] as f64
            }
        };
        let (mut dw, mut db, mut dx) = (
            vec![0f64; c_out * c_in * k],
            vec![0f64; c_out],
            vec![0f64; 2 * len * c_in],
        );
        for nn in 0..2 {
            for j in 0..out {
                for o in 0..c_out {
                    let gv = g[(nn * out + j) * c_out + o] as f64;
                    db[o] += gv;
                    for c in 0..c_in {
                        for tau in 0..k {
                            let i = (s * j + tau) as isize - pad as isize;
                            dw[(o * c_in + c) * k + tau] += gv * xp(nn, i, c);
                            if i >= 0 && (i as usize) < len {
                                dx[(nn * len + i as usize) * c_in + c] +=
                                    gv * wv[(o * c_in + c) * k + tau] as f64;
                            }
                        }
                    }
                }
            }
        }
        for (v, want) in [(&w, dw), (&b, db), (&x, dx)] {
            let got = grads
                .get(v)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            let err = got
                .iter()
                .zip(&want)
                .map(|(a, b)| (*a as f64 - b).abs())
                .fold(0.0, f64::max);
            assert!(
                err < 1e-4,
                "gradient of {:?} differs by {err} for k={k} s={s}",
                v.dims()
            );
        }
    }
}

#[test]
fn the_paper_encoder_gives_one_vector_per_10_ms() {
    let strides = [5, 4, 2, 2, 2];
    assert_eq!(frames(20480, &strides), 128);
    assert_eq!(frames(16000, &strides), 100);
    let dev = Device::Cpu;
    let mut init = Init::new(0, &dev);
    rlcpc::nn::audio::init(8, &[10, 8, 4, 4, 4], true, &mut init, "encoder").unwrap();
    let vb = VarBuilder::from_varmap(&init.varmap, DType::F32, &dev);
    let arch = rlcpc::nn::audio::AudioArch {
        channels: 8,
        strides: &strides,
        kernels: &[10, 8, 4, 4, 4],
        channel_norm: true,
        normalize: true,
    };
    let enc = rlcpc::nn::audio::AudioEncoder::new(&arch, vb.pp("encoder")).unwrap();
    let z = enc
        .forward(&Tensor::zeros((3, 20480), DType::F32, &dev).unwrap())
        .unwrap();
    assert_eq!(z.dims(), &[3, 128, 8]);
    assert!(
        rlcpc::nn::audio::check_layers(&[5, 4], &[10, 6]).is_err(),
        "6 is no multiple of 4"
    );
}

#[test]
fn gru_matches_its_equations() {
    let (b, t, i, h) = (2, 5, 3, 4);
    let dev = Device::Cpu;
    let mut init = Init::new(7, &dev);
    Gru::init(i, h, &mut init, "gru").unwrap();
    let vb = VarBuilder::from_varmap(&init.varmap, DType::F32, &dev);
    let gru = Gru::new(i, h, vb.pp("gru")).unwrap();
    let x = randn(&[b, t, i], 8);
    let out = gru
        .forward(&Tensor::from_vec(x.clone(), (b, t, i), &dev).unwrap())
        .unwrap();
    let out = out.to_vec3::<f32>().unwrap();
    let get = |n: &str| {
        init.varmap.data().lock().unwrap()[n]
            .as_tensor()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
    };
    let (wi, wh, bi, bh) = (
        get("gru.weight_ih"),
        get("gru.weight_hh"),
        get("gru.bias_ih"),
        get("gru.bias_hh"),
    );
    let sig = |v: f64| 1.0 / (1.0 + (-v).exp());
    for s in 0..b {
        let mut hs = vec![0f64; h];
        for step in 0..t {
            let xv = &x[(s * t + step) * i..(s * t + step + 1) * i];
            let lin = |w: &[f32], bias: &[f32], v: &[f64], row: usize, d: usize| {
                bias[row] as f64 + (0..d).map(|c| w[row * d + c] as f64 * v[c]).sum::<f64>()
            };
            let xd: Vec<f64> = xv.iter().map(|&v| v as f64).collect();
            let mut new = vec![0f64; h];
            for j in 0..h {
                let r = sig(lin(&wi, &bi, &xd, j, i) + lin(&wh, &bh, &hs, j, h));
                let z = sig(lin(&wi, &bi, &xd, h + j, i) + lin(&wh, &bh, &hs, h + j, h));
                let n = (lin(&wi, &bi, &xd, 2 * h + j, i) + r * lin(&wh, &bh, &hs, 2 * h + j, h))
                    .tanh();
                new[j] = (1.0 - z) * n + z * hs[j];
            }
            hs = new;
            for j in 0..h {
                assert!(
                    (out[s][step][j] as f64 - hs[j]).abs() < 1e-5,
                    "b {s} t {step} unit {j}"
                );
            }
        }
    }
}

#[test]
fn speaker_negatives_come_from_windows_of_the_same_speaker() {
    let (t_len, b) = (10, 6);
    let groups = vec![0, 0, 1, 1, 2, 2];
    let s = CpcSampling {
        horizon: 3,
        negatives: Negatives::Speaker,
        num_negatives: 8,
        start_times: 0,
        horizons: 0,
        skip: 0,
        groups: groups.clone(),
        shuffled: false,
    };
    let mut rng = SeededRng::seed_from_u64(1);
    let pairs = sample_pairs(&vec![0.0; t_len * b], t_len, b, &s, &mut rng);
    let cand = sample_candidates(&pairs, t_len, b, &s, &mut rng);
    let mut other_window = false;
    for (p, c) in pairs.iter().zip(cand.chunks(9)) {
        assert_eq!(c[0] as usize, (p.t + p.k) * b + p.b, "positive first");
        for &n in &c[1..] {
            let (nt, nb) = (n as usize / b, n as usize % b);
            assert_eq!(groups[nb], groups[p.b], "negative from another speaker");
            assert_ne!((nt, nb), (p.t + p.k, p.b), "the positive is no negative");
            other_window |= nb != p.b;
        }
    }
    assert!(other_window, "the speaker's other window is used too");
}

fn write_wav(path: &Path, spec: hound::WavSpec, samples: &[f32]) {
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for &x in samples {
        match (spec.sample_format, spec.bits_per_sample) {
            (hound::SampleFormat::Float, _) => w.write_sample(x).unwrap(),
            (_, 16) => w.write_sample((x * 32767.0).round() as i16).unwrap(),
            (_, bits) => w
                .write_sample((x * ((1 << (bits - 1)) - 1) as f32).round() as i32)
                .unwrap(),
        }
    }
    w.finalize().unwrap();
}

fn tone(freq: f32, rate: u32, n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| 0.5 * (2.0 * std::f32::consts::PI * freq * i as f32 / rate as f32).sin())
        .collect()
}

#[test]
fn wav_and_flac_of_every_sample_format_decode_to_the_same_signal() {
    let dir = tempfile::tempdir().unwrap();
    let x = tone(440.0, 16000, 1600);
    let spec = |bits, fmt, ch| hound::WavSpec {
        channels: ch,
        sample_rate: 16000,
        bits_per_sample: bits,
        sample_format: fmt,
    };
    write_wav(
        &dir.path().join("i16.wav"),
        spec(16, hound::SampleFormat::Int, 1),
        &x,
    );
    write_wav(
        &dir.path().join("i24.wav"),
        spec(24, hound::SampleFormat::Int, 1),
        &x,
    );
    write_wav(
        &dir.path().join("f32.wav"),
        spec(32, hound::SampleFormat::Float, 1),
        &x,
    );
    // Stereo: left = x, right = 0 → mixed down to x/2.
    let st: Vec<f32> = x.iter().flat_map(|&v| [v, 0.0]).collect();
    write_wav(
        &dir.path().join("stereo.wav"),
        spec(16, hound::SampleFormat::Int, 2),
        &st,
    );
    for (name, scale, tol) in [
        ("i16", 1.0, 1e-4),
        ("i24", 1.0, 1e-6),
        ("f32", 1.0, 0.0),
        ("stereo", 0.5, 1e-4),
    ] {
        let (y, rate) = decode(&dir.path().join(format!("{name}.wav"))).unwrap();
        assert_eq!((rate, y.len()), (16000, x.len()), "{name}");
        let err = x
            .iter()
            .zip(&y)
            .map(|(a, b)| (a * scale - b).abs())
            .fold(0f32, f32::max);
        assert!(err <= tol, "{name}: error {err}");
    }
    // FLAC: a committed fixture, written by libsndfile's libFLAC encoder
    // (tests/fixtures/make_flac_fixture.py): 16-bit mono 16 kHz, 9000 samples in three
    // frames, s[i] = round(8000 sin(i / 5)). It decodes to exactly those samples, and so
    // does a 16-bit WAV of them.
    let want_i16: Vec<i16> = (0..9000)
        .map(|i| (8000.0 * (i as f64 / 5.0).sin()).round() as i16)
        .collect();
    let want: Vec<f32> = want_i16.iter().map(|&v| v as f32 / 32768.0).collect();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sine16k.flac");
    let (b, rate) = decode(&fixture).unwrap();
    assert_eq!((rate, b.len()), (16000, want.len()));
    assert_eq!(b, want, "FLAC decodes to the formula's samples");
    let wav = dir.path().join("sine16k.wav");
    let mut w = hound::WavWriter::create(&wav, spec(16, hound::SampleFormat::Int, 1)).unwrap();
    for &v in &want_i16 {
        w.write_sample(v).unwrap();
    }
    w.finalize().unwrap();
    let (a, rate) = decode(&wav).unwrap();
    assert_eq!(rate, 16000);
    assert_eq!(a, b, "FLAC is lossless");
    assert!(decode(&dir.path().join("missing.wav")).is_err());
}

/// The integer shift in −3..=3 that best aligns `y` with `want` (y[i] ≈ want[i − shift])
/// and the largest error there, away from the edges.
fn best_alignment(y: &[f32], want: &[f32]) -> (i32, f32) {
    (-3i32..=3)
        .map(|sh| {
            let e = (1000..y.len() - 1000)
                .map(|i| (y[i] - want[(i as i32 - sh) as usize]).abs())
                .fold(0f32, f32::max);
            (sh, e)
        })
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap()
}

#[test]
fn resampling_keeps_a_tone_within_one_sample_and_scales_the_length() {
    for (from, freq) in [(8000, 440.0), (22050, 300.0), (44100, 1000.0)] {
        let y = resample(&tone(freq, from, from as usize), from, 16000);
        assert_eq!(y.len(), 16000, "one second from {from} Hz");
        let (shift, err) = best_alignment(&y, &tone(freq, 16000, 16000));
        assert!(shift.abs() <= 1, "{from} Hz: lag {shift} samples");
        // Off by a fraction of a sample at most: less than the tone moves in half a sample.
        let half_sample = 0.5 * 0.5 * 2.0 * std::f32::consts::PI * freq / 16000.0;
        assert!(
            err < half_sample,
            "{from} Hz: max error {err} at lag {shift}"
        );
        if from == 8000 {
            assert!(err < 5e-3, "integer ratio: max error {err}");
        }
    }
}

fn opts(layout: Layout, strict: bool) -> LoadOptions {
    LoadOptions {
        layout,
        strict,
        sample_rate: 16000,
        max_files: 0,
    }
}

#[test]
fn labels_come_from_fsdd_librispeech_manifest_and_folder_layouts() {
    let dir = tempfile::tempdir().unwrap();
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let d = dir.path();
    // FSDD
    std::fs::create_dir(d.join("fsdd")).unwrap();
    for name in ["3_george_0.wav", "7_jackson_12.wav"] {
        write_wav(&d.join("fsdd").join(name), spec, &tone(200.0, 8000, 800));
    }
    let set = AudioSet::load(&d.join("fsdd"), &opts(Layout::Auto, false)).unwrap();
    assert_eq!(set.layout, Layout::Fsdd);
    assert_eq!(set.label("digit").unwrap(), vec!["3", "7"]);
    assert_eq!(set.label("speaker").unwrap(), vec!["george", "jackson"]);
    assert_eq!(
        set.utterances[0].wave.len(),
        1600,
        "8 kHz resampled to 16 kHz"
    );
    assert!(set
        .label("phone")
        .unwrap_err()
        .to_string()
        .contains("digit, speaker"));
    // LibriSpeech (WAV here; the layout is the same for .flac)
    let ls = d.join("ls/19/198");
    std::fs::create_dir_all(&ls).unwrap();
    write_wav(&ls.join("19-198-0001.wav"), spec, &tone(200.0, 8000, 800));
    let set = AudioSet::load(&d.join("ls"), &opts(Layout::Auto, false)).unwrap();
    assert_eq!(set.layout, Layout::Librispeech);
    assert_eq!(set.label("speaker").unwrap(), vec!["19"]);
    // Manifest: only listed files, columns as labels.
    let m = d.join("man");
    std::fs::create_dir_all(m.join("a")).unwrap();
    write_wav(&m.join("a/x.wav"), spec, &tone(200.0, 8000, 800));
    write_wav(&m.join("a/unlisted.wav"), spec, &tone(200.0, 8000, 800));
    std::fs::write(
        m.join("manifest.csv"),
        "path,label,speaker\na/x.wav,yes,s1\n",
    )
    .unwrap();
    let set = AudioSet::load(&m, &opts(Layout::Auto, false)).unwrap();
    assert_eq!((set.layout, set.utterances.len()), (Layout::Csv, 1));
    assert_eq!(set.label("label").unwrap(), vec!["yes"]);
    std::fs::write(m.join("manifest.csv"), "file,label\n").unwrap();
    assert!(AudioSet::load(&m, &opts(Layout::Auto, false))
        .unwrap_err()
        .to_string()
        .contains("header"));
    // Folders: the first one is the speaker.
    let set = AudioSet::load(&m, &opts(Layout::Dirs, false)).unwrap();
    assert_eq!(set.label("speaker").unwrap(), vec!["a", "a"]);
}

#[test]
fn unreadable_files_are_reported_and_skipped_or_stop_a_strict_run() {
    let dir = tempfile::tempdir().unwrap();
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 16000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    write_wav(&dir.path().join("good.wav"), spec, &tone(200.0, 16000, 800));
    std::fs::write(dir.path().join("bad.wav"), b"RIFF not really").unwrap();
    let set = AudioSet::load(dir.path(), &opts(Layout::Dirs, false)).unwrap();
    assert_eq!(set.utterances.len(), 1);
    assert_eq!(set.skipped.len(), 1);
    assert_eq!(set.skipped[0].0, Path::new("bad.wav"));
    let e = AudioSet::load(dir.path(), &opts(Layout::Dirs, true))
        .unwrap_err()
        .to_string();
    assert!(e.contains("bad.wav") && e.contains("--strict"), "{e}");
    let empty = tempfile::tempdir().unwrap();
    let e = AudioSet::load(empty.path(), &opts(Layout::Auto, false))
        .unwrap_err()
        .to_string();
    assert!(e.contains("no audio files"), "{e}");
    let e = AudioSet::load(&empty.path().join("nope"), &opts(Layout::Auto, false))
        .unwrap_err()
        .to_string();
    assert!(e.contains("does not exist"), "{e}");
}

#[test]
fn splits_hold_out_utterances_or_whole_speakers() {
    let speakers: Vec<&str> = (0..100).map(|i| ["a", "b", "c", "d", "e"][i % 5]).collect();
    let (tr, te) = split(&speakers, SplitBy::Utterance, 0.2, 3).unwrap();
    assert_eq!((tr.len(), te.len()), (80, 20));
    assert_eq!(
        split(&speakers, SplitBy::Utterance, 0.2, 3).unwrap().1,
        te,
        "seeded"
    );
    let (tr, te) = split(&speakers, SplitBy::Speaker, 0.4, 3).unwrap();
    let s_tr: BTreeSet<&str> = tr.iter().map(|&i| speakers[i]).collect();
    let s_te: BTreeSet<&str> = te.iter().map(|&i| speakers[i]).collect();
    assert!(s_tr.is_disjoint(&s_te));
    assert_eq!(s_te.len(), 2);
    assert!(split(&["a", "a"], SplitBy::Speaker, 0.5, 0).is_err());
}

#[test]
fn mfcc_gain_moves_only_c0_by_the_dct_of_a_constant() {
    let m = Mfcc::new(MfccConfig::for_rate(16000));
    let mut rng = SeededRng::seed_from_u64(5);
    let x: Vec<f32> = (0..4000).map(|_| rng.random_range(-0.5..0.5)).collect();
    let g = 3.0f32;
    let y: Vec<f32> = x.iter().map(|v| v * g).collect();
    let (a, b) = (m.compute(&x), m.compute(&y));
    assert_eq!(a.len(), 1 + (4000 - 400) / 160, "25 ms frames every 10 ms");
    for (fa, fb) in a.iter().zip(&b) {
        // Power scales by g², every log-mel value by 2 ln g, and the orthonormal DCT's
        // first row is 1/√40: c0 moves by √40 · 2 ln g, the others not at all.
        assert!((fb[0] - fa[0] - 40f32.sqrt() * 2.0 * g.ln()).abs() < 1e-3);
        for k in 1..13 {
            assert!((fb[k] - fa[k]).abs() < 1e-3);
        }
    }
    assert_eq!(m.pooled(&x).len(), 26);
    // Pooling over frames, by hand: frames (1, 2), (3, 2), (5, 8).
    use rlcpc::data::mfcc::Pooling;
    let frames = [vec![1.0f32, 2.0], vec![3.0, 2.0], vec![5.0, 8.0]];
    assert_eq!(Pooling::Mean.apply(&frames), vec![3.0, 4.0]);
    let ms = Pooling::MeanStd.apply(&frames);
    let want = [3.0, 4.0, (8.0f32 / 3.0).sqrt(), 8f32.sqrt()];
    assert!(
        ms.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-6),
        "{ms:?}"
    );
    assert_eq!(m.pooled(&x), Pooling::MeanStd.apply(&m.compute(&x)));
    assert!(
        (rlcpc::data::mfcc::mel_to_hz(rlcpc::data::mfcc::hz_to_mel(1000.0)) - 1000.0).abs() < 1e-9
    );
    assert!(
        (rlcpc::data::mfcc::hz_to_mel(1000.0) - 1000.0).abs() < 0.1,
        "1000 Hz ≈ 1000 mel"
    );
}

#[test]
fn logistic_gradient_matches_finite_differences() {
    let f = Features {
        n: 7,
        d: 3,
        x: randn(&[7, 3], 11),
    };
    let y = vec![0, 1, 2, 1, 0, 2, 2];
    let m = Logistic {
        k: 3,
        d: 3,
        w: randn(&[9], 12),
        b: randn(&[3], 13),
    };
    let lambda = 0.1;
    let (_, gw, gb) = m.loss_grad(&f, &y, lambda);
    let eps = 1e-3;
    let nw = common::numerical_grad(&mut m.w.clone(), eps, |w| {
        let m = Logistic {
            w: w.to_vec(),
            ..m.clone()
        };
        m.loss_grad(&f, &y, lambda).0
    });
    #[allow(clippy::needless_range_loop)]
    for i in 0..9 {
        assert!((nw[i] - gw[i] as f64).abs() < 1e-3, "dW {i}");
    }
    let nb = common::numerical_grad(&mut m.b.clone(), eps, |b| {
        let m = Logistic {
            b: b.to_vec(),
            ..m.clone()
        };
        m.loss_grad(&f, &y, lambda).0
    });
    #[allow(clippy::needless_range_loop)]
    for c in 0..3 {
        assert!((nb[c] - gb[c] as f64).abs() < 1e-3, "db {c}");
    }
}

#[test]
fn the_linear_probe_separates_separable_classes_and_not_noise() {
    // Three Gaussian blobs in 5-D: linearly separable.
    let mut rng = SeededRng::seed_from_u64(21);
    let mut rows = Vec::new();
    let mut y = Vec::new();
    for i in 0..300 {
        let c = i % 3;
        rows.push(
            (0..5)
                .map(|j| if j == c { 4.0 } else { 0.0 } + rng.random_range(-1.0f32..1.0))
                .collect::<Vec<_>>(),
        );
        y.push(c);
    }
    let f = Features::from_rows(rows).unwrap();
    let tr: Vec<usize> = (0..240).collect();
    let te: Vec<usize> = (240..300).collect();
    let s = classify(
        &f.select(&tr),
        &y[..240],
        &f.select(&te),
        &y[240..],
        3,
        0,
        300,
    );
    assert!(s.test > 0.95, "separable blobs: {}", s.test);
    // Labels independent of the features: chance level.
    let noise: Vec<usize> = (0..300).map(|_| rng.random_range(0..3)).collect();
    let s = classify(
        &f.select(&tr),
        &noise[..240],
        &f.select(&te),
        &noise[240..],
        3,
        0,
        300,
    );
    assert!(s.test < 0.55, "noise labels: {}", s.test);
}

#[test]
fn ridge_solves_its_normal_equations() {
    // y = 2 x0 − x1 + 3 (exactly linear): λ → 0 recovers it, R² = 1.
    let rows: Vec<Vec<f32>> = (0..50)
        .map(|i| vec![(i as f32 * 0.37).sin(), (i as f32 * 0.11).cos()])
        .collect();
    let y: Vec<Vec<f64>> = rows
        .iter()
        .map(|r| vec![2.0 * r[0] as f64 - r[1] as f64 + 3.0])
        .collect();
    let f = Features::from_rows(rows).unwrap();
    let m = Ridge::fit(&f, &y, 1e-9).unwrap();
    let p = m.predict(&f);
    for (a, b) in p.iter().zip(&y) {
        assert!((a[0] - b[0]).abs() < 1e-4);
    }
    assert!((r2(&p, &y)[0] - 1.0).abs() < 1e-8);
    // A huge λ shrinks the weights to 0: the prediction is the mean, R² = 0.
    let p = Ridge::fit(&f, &y, 1e12).unwrap().predict(&f);
    assert!(r2(&p, &y)[0].abs() < 1e-6);
}

#[test]
fn timit_alignments_are_read_in_seconds_and_bad_lines_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("a.phn");
    std::fs::write(&p, "0 800 h#\n800 2400 aa\n").unwrap();
    let v = rlcpc::data::audio::read_phn(&p, 8000).unwrap();
    assert_eq!(
        v,
        vec![(0.0, 0.1, "h#".to_string()), (0.1, 0.3, "aa".to_string())]
    );
    std::fs::write(&p, "0 800\n").unwrap();
    let e = rlcpc::data::audio::read_phn(&p, 8000).unwrap_err();
    assert!(e.contains("line 1") && e.contains("START END PHONE"), "{e}");
}

#[test]
fn channel_norm_standardises_each_step_then_scales() {
    let dev = Device::Cpu;
    let h = Tensor::from_vec(randn(&[2, 3, 8], 31), (2, 3, 8), &dev).unwrap();
    let gain = Tensor::from_vec(vec![2f32; 8], 8, &dev).unwrap();
    let shift = Tensor::from_vec(vec![0.5f32; 8], 8, &dev).unwrap();
    let y = rlcpc::nn::audio::channel_norm(&h, &gain, &shift)
        .unwrap()
        .to_vec3::<f32>()
        .unwrap();
    let x = h.to_vec3::<f32>().unwrap();
    for (xs, ys) in x.iter().flatten().zip(y.iter().flatten()) {
        let m = xs.iter().sum::<f32>() / 8.0;
        let v = xs.iter().map(|a| (a - m) * (a - m)).sum::<f32>() / 8.0;
        for (a, b) in xs.iter().zip(ys) {
            assert!((2.0 * (a - m) / (v + 1e-5).sqrt() + 0.5 - b).abs() < 1e-4);
        }
    }
}

#[test]
fn standardised_waveforms_have_zero_mean_and_unit_variance_per_row() {
    let dev = Device::Cpu;
    let mut x = randn(&[3, 500], 41);
    x[..500].iter_mut().for_each(|v| *v = 0.1 * *v + 0.3); // quieter, with an offset
    x[1000..].iter_mut().for_each(|v| *v = 0.0); // digital silence stays silent
    let w = Tensor::from_vec(x, (3, 500), &dev).unwrap();
    let y = rlcpc::nn::audio::standardize(&w)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    assert!(y[2].iter().all(|&v| v == 0.0));
    for row in &y[..2] {
        let m = row.iter().sum::<f32>() / 500.0;
        let v = row.iter().map(|a| (a - m) * (a - m)).sum::<f32>() / 500.0;
        assert!(m.abs() < 1e-4 && (v - 1.0).abs() < 1e-2, "mean {m} var {v}");
    }
}

#[test]
fn cpc_trainer_objectives_give_the_same_loss_and_gradients_from_the_same_seed() {
    // The check tests/cuda.rs makes between the CPU and CUDA, here between two builds on
    // the CPU: a seeded step is reproducible, and every parameter gets a finite gradient.
    let dev = Device::Cpu;
    let again = common::cpc_trainer_objectives(&dev);
    for ((name, mut a, batch), (_, mut b, _)) in
        common::cpc_trainer_objectives(&dev).into_iter().zip(again)
    {
        let (la, ga) = common::objective_loss_and_grads(a.as_mut(), batch);
        let (lb, gb) = common::objective_loss_and_grads(b.as_mut(), batch);
        assert!(la.is_finite() && la > 0.0, "{name}: loss {la}");
        assert_eq!(la, lb, "{name}: loss");
        assert_eq!(ga.len(), gb.len());
        let mut nonzero = 0;
        for ((ka, va), (kb, vb)) in ga.iter().zip(&gb) {
            assert_eq!(ka, kb);
            assert_eq!(va, vb, "{name}: gradient of {ka}");
            assert!(va.iter().all(|x| x.is_finite()), "{name}: {ka}");
            nonzero += va.iter().any(|&x| x != 0.0) as usize;
        }
        assert!(
            nonzero * 10 >= ga.len() * 9,
            "{name}: {nonzero} of {} parameters have a gradient",
            ga.len()
        );
    }
}
