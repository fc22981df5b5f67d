//! `rlcpc pretrain <modality> --objective cpc`, the representation trainers, and its alias
//! `rlcpc cpc <modality>` (which the tests per modality call), with the probes of what
//! they learn: audio, images (and the pixel encoder shared with the agent), text.

use std::path::Path;

use crate::common::TINY_TEXT;
use crate::support::{bad_setting_is_named, logged, s, squares, text, Rlcpc};

#[test]
fn pretrain_is_the_trainers_command_and_cpc_its_alias() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("corpus.txt");
    std::fs::write(
        &corpus,
        "The cat sat on the mat today. A dog ran in the park again. ".repeat(30),
    )
    .unwrap();
    let tiny = |command: &str, out: &Path| {
        Rlcpc::new(command)
            .args(&["--quiet"])
            .data(&corpus)
            .out(out)
            .args(&TINY_TEXT)
            .set("train.steps", 3)
            .set("train.log_every", 1)
    };
    let (d1, d2) = (dir.path().join("d1"), dir.path().join("d2"));
    tiny("pretrain text --objective cpc", &d1).ok();
    tiny("cpc text", &d2).ok();
    // The same seeded run: the same loss at every logged step (timings differ).
    let losses = |run: &Path| -> Vec<f64> {
        std::fs::read_to_string(run.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .map(|l| {
                let row: serde_json::Value = serde_json::from_str(l).unwrap();
                row["train/loss"]
                    .as_f64()
                    .unwrap_or_else(|| panic!("no train/loss in {l}"))
            })
            .collect()
    };
    let (a, b) = (losses(&d1), losses(&d2));
    assert_eq!(a.len(), 3, "one row per step: {a:?}");
    assert_eq!(a, b, "pretrain text --objective cpc and cpc text differ");
    // An objective that does not exist is named (a usage error from the parser, or ours).
    let e = tiny("pretrain text --objective nosuch", &dir.path().join("d3")).fails();
    assert!(e.contains("--objective"), "{e}");
    assert!(!e.contains("panicked"), "{e}");
}

// `cpc audio` and the audio probe.

/// A tiny FSDD-style corpus at 8 kHz: two "speakers" (a low and a high voice of
/// harmonics with noise), three "digits" (the vowel's formant), 8 clips each.
fn tiny_corpus(dir: &Path) {
    use rand::{Rng, SeedableRng};
    let mut rng = rlcpc_envs::SeededRng::seed_from_u64(3);
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    for (speaker, f0) in [("low", 110.0f32), ("high", 240.0)] {
        for digit in 0..3 {
            for i in 0..8 {
                let mut w =
                    hound::WavWriter::create(dir.join(format!("{digit}_{speaker}_{i}.wav")), spec)
                        .unwrap();
                let formant = 500.0 + 700.0 * digit as f32;
                for n in 0..4000 {
                    let t = n as f32 / 8000.0;
                    let mut x = 0.0;
                    for h in 1..8 {
                        let f = f0 * h as f32;
                        let gain = (-((f - formant) / 300.0).powi(2)).exp();
                        x += gain * (2.0 * std::f32::consts::PI * f * t).sin();
                    }
                    x = 0.3 * x + 0.02 * rng.random_range(-1.0f32..1.0);
                    w.write_sample((x.clamp(-1.0, 1.0) * 30000.0) as i16)
                        .unwrap();
                }
                w.finalize().unwrap();
            }
        }
    }
}

const TINY_AUDIO: [&str; 14] = [
    "--set",
    "model.channels=16",
    "--set",
    "model.context=16",
    "--set",
    "data.window=3200",
    "--set",
    "cpc.horizon=4",
    "--set",
    "train.batch=4",
    "--set",
    "train.checkpoint_every=3",
    "--set",
    "train.log_every=1",
];

#[test]
fn cpc_audio_trains_resumes_exactly_and_probe_prints_baselines() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("fsdd");
    std::fs::create_dir(&data).unwrap();
    tiny_corpus(&data);
    let run = |out: &Path, steps: u32, resume: bool| {
        let mut c = Rlcpc::new("cpc audio --quiet").data(&data).out(out);
        if resume {
            c = c.args(&["--resume"]);
        }
        c.args(&TINY_AUDIO).set("train.steps", steps).ok()
    };
    // 6 steps at once, and 3 + 3 with a resume in between: the same encoder bit for bit.
    let full = dir.path().join("full");
    let t = run(&full, 6, false);
    assert!(
        t.contains("layout fsdd") && t.contains("done after 6 steps"),
        "{t}"
    );
    let half = dir.path().join("half");
    run(&half, 3, false);
    let again = Rlcpc::new("cpc audio --quiet")
        .data(&data)
        .out(&half)
        .fails();
    assert!(again.contains("--resume"), "{again}");
    run(&half, 6, true);
    // Same tensors bit for bit (the header's metadata order may differ).
    let load = |p: &Path| {
        candle_core::safetensors::load(p.join("encoder.safetensors"), &candle_core::Device::Cpu)
            .unwrap()
    };
    let (a, b) = (load(&full), load(&half));
    assert_eq!(a.len(), b.len());
    for (k, t) in &a {
        let (x, y) = (
            t.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            b[k].flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        );
        assert!(
            x == y,
            "resumed run differs from the uninterrupted one in {k}"
        );
    }
    let metrics = std::fs::read_to_string(full.join("metrics.jsonl")).unwrap();
    for key in [
        "train/loss",
        "train/acc_k1",
        "train/acc_k4",
        "train/z_norm_std",
        "perf/samples_per_sec",
    ] {
        assert!(metrics.contains(key), "metrics.jsonl lacks {key}");
    }
    // The probe: CPC, random-init and MFCC rows; MFCCs tell these speakers apart.
    let enc = full.join("encoder.safetensors");
    let probe = || {
        Rlcpc::new("probe")
            .args(&["--encoder", s(&enc)])
            .data(&data)
    };
    let p = probe()
        .args(&["--target", "speaker", "--iters", "100"])
        .ok();
    assert!(
        p.contains("2 classes") && p.contains("38 train / 10 test"),
        "{p}"
    );
    // Every feature set pooled both ways: six rows.
    for name in ["cpc c_t", "random-init encoder c_t", "MFCC (13)"] {
        for pool in ["mean over frames", "mean+std over frames"] {
            let rows = p.lines().filter(|l| l.contains(name) && l.contains(pool));
            assert_eq!(rows.count(), 1, "{name}, {pool}: {p}");
        }
    }
    let mfcc = p
        .lines()
        .find(|l| l.starts_with("MFCC (13), mean+std"))
        .expect("MFCC row");
    assert!(mfcc.trim_end().ends_with("100.0%"), "{p}");
    // --validation: the 38 training files split again (8 of them tested), the 10 test
    // files left out.
    let v = probe()
        .args(&["--target", "speaker", "--iters", "100", "--validation"])
        .ok();
    assert!(
        v.contains("30 train / 8 test") && v.contains("the test files unread"),
        "{v}"
    );
    let p = probe()
        .args(&["--target", "digit", "--no-baselines"])
        .args(&["--split", "speaker", "--test-fraction", "0.5"])
        .ok();
    assert!(
        p.contains("3 classes") && p.contains("split by speaker"),
        "{p}"
    );
    let e = probe().args(&["--target", "word"]).fails();
    assert!(
        e.contains("no label 'word'") && e.contains("digit, speaker"),
        "{e}"
    );
    let e = probe().args(&["--target", "phone"]).fails();
    assert!(e.contains("needs alignments") && e.contains(".phn"), "{e}");
    // Frame-level: TIMIT-style alignments (samples at the file's 8 kHz) beside each file.
    for entry in std::fs::read_dir(&data).unwrap() {
        let p = entry.unwrap().path();
        std::fs::write(
            p.with_extension("phn"),
            "0 1600 sil\n1600 3200 aa\n3200 4000 sil\n",
        )
        .unwrap();
    }
    let p = probe().args(&["--target", "phone", "--iters", "50"]).ok();
    // 0.5 s clips → 50 frames of 10 ms, all inside the alignment: 38 × 50 train frames.
    assert!(
        p.contains("2 classes") && p.contains("1900 train / 500 test frames"),
        "{p}"
    );
    assert!(
        p.contains("per frame") && p.contains("MFCC (13, the frame's)"),
        "{p}"
    );
    // An audio encoder cannot initialise an agent; the message says what differs.
    bad_setting_is_named(
        &Rlcpc::new("train --quiet").out(&dir.path().join("agent")),
        &format!("model.init_encoder=\"{}\"", enc.display()),
        &["audio conv1d", "mlp (input 4"],
    );
}

#[test]
fn cpc_audio_reports_bad_files_and_bad_settings() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("fsdd");
    std::fs::create_dir(&data).unwrap();
    tiny_corpus(&data);
    std::fs::write(data.join("9_low_99.wav"), b"not audio").unwrap();
    let a = Rlcpc::new("cpc audio --quiet")
        .data(&data)
        .set("train.steps", 1)
        .args(&TINY_AUDIO);
    let t = a.clone().out(&dir.path().join("r1")).ok();
    assert!(t.contains("skipped") && t.contains("9_low_99.wav"), "{t}");
    let e = a
        .clone()
        .out(&dir.path().join("r2"))
        .args(&["--strict"])
        .fails();
    assert!(e.contains("9_low_99.wav") && e.contains("--strict"), "{e}");
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let e = Rlcpc::new("cpc audio")
        .data(&empty)
        .out(&dir.path().join("r3"))
        .fails();
    assert!(e.contains("no audio files"), "{e}");
    let cpc_audio = |out: &str| {
        Rlcpc::new("cpc audio")
            .data(&data)
            .out(&dir.path().join(out))
    };
    bad_setting_is_named(
        &cpc_audio("r4"),
        "model.kernels=[10,6,4,4,4]",
        &["multiple of its stride"],
    );
    bad_setting_is_named(
        &cpc_audio("r5").set("data.window", 1600),
        "cpc.horizon=12",
        &["cpc.horizon"],
    );
    bad_setting_is_named(
        &cpc_audio("r6"),
        "data.window=99999",
        &["lower data.window"],
    );
    // The lean encoder (the default on the CPU) and candle's train alike: the same
    // losses step by step, with the waveform standardised and the channel norm on.
    let losses = |learner: &str| -> Vec<f64> {
        let out = dir.path().join(format!("lean-{learner}"));
        a.clone()
            .out(&out)
            .set("train.steps", 3)
            .set("train.log_every", 1)
            .set("model.channel_norm", true)
            .set("model.normalize", true)
            .set("train.learner", format!("\"{learner}\""))
            .ok();
        logged(&out, "train/loss")
    };
    let (lean, candle) = (losses("lean"), losses("candle"));
    assert_eq!(lean.len(), 3, "{lean:?}");
    for (x, y) in lean.iter().zip(&candle) {
        assert!(
            (x - y).abs() < 1e-4 * y.abs().max(1.0),
            "{lean:?} vs {candle:?}"
        );
    }
}

// `cpc image`, the image probe, and the pixel encoder shared with the agent.

#[test]
fn cpc_image_trains_on_idx_files_and_checks_the_patch_grid() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("mnist");
    // 40 16×16 images: a bright square whose position is the class.
    squares(&data);
    let out = dir.path().join("run");
    let base = Rlcpc::new("cpc image --quiet")
        .data(&data)
        .set("model.features", 8)
        .set("train.batch", 4)
        .set("train.checkpoint_every", 2)
        .set("cpc.horizon", 2)
        .set("cpc.skip", 0);
    let t = base.clone().out(&out).set("train.steps", 3).ok();
    assert!(
        t.contains("40 training images of 16x16x1") && t.contains("done after 3 steps"),
        "{t}"
    );
    let probe = |encoder: &Path| {
        Rlcpc::new("probe")
            .args(&["--encoder", s(encoder)])
            .data(&data)
    };
    let p = probe(&out.join("encoder.safetensors"))
        .args(&["--iters", "50"])
        .ok();
    assert!(p.contains("4 classes, 40 train / 40 test images"), "{p}");
    let raw = p
        .lines()
        .find(|l| l.starts_with("raw pixels"))
        .expect("raw pixel row");
    assert!(
        raw.trim_end().ends_with("100.0%"),
        "the square's position is linear in the pixels: {p}"
    );
    assert!(
        p.contains("random-init, same architecture, c, 2x2 pooled"),
        "{p}"
    );
    // CPC-v2's options train too; their mistakes are named.
    let v2 = dir.path().join("v2");
    let t = base
        .clone()
        .out(&v2)
        .set("train.steps", 2)
        .set("model.layer_norm", true)
        .set("cpc.directions", r#"["down","up","right","left"]"#)
        .set("augment.crop", 2)
        .set("augment.flip", true)
        .ok();
    assert!(t.contains("done after 2 steps"));
    let metrics = std::fs::read_to_string(v2.join("metrics.jsonl")).unwrap();
    assert!(metrics.contains("train/acc_left"), "{metrics}");
    let p = probe(&v2.join("encoder.safetensors"))
        .args(&["--iters", "20", "--pool-grid", "1"])
        .args(&["--features", "encoder", "--no-baselines"])
        .ok();
    assert!(p.contains("z, 1x1 pooled"), "{p}");
    let bad_v2 = base.clone().out(&dir.path().join("bad-v2"));
    for (set, msg) in [
        ("cpc.directions=[\"down\",\"down\"]", "each once"),
        ("augment.color_drop=true", "colour images"),
        ("augment.crop=5", "at most the stride"),
    ] {
        bad_setting_is_named(&bad_v2, set, &[msg]);
    }
    // 16×16 with 8×8 patches every 4: a 3-row grid allows at most 2 rows of horizon.
    let bad = base.clone().out(&dir.path().join("bad"));
    bad_setting_is_named(&bad, "cpc.horizon=3", &["3x3 patch grid", "at most 2"]);
    bad_setting_is_named(&bad, "model.stride=3", &["exactly"]);
}

#[test]
fn agent_and_image_cpc_share_the_pixel_encoder_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("cifar");
    std::fs::create_dir(&data).unwrap();
    // 24 random 32×32 RGB images in two classes (CIFAR-10 binary records).
    let mut bytes = Vec::new();
    for i in 0..24u32 {
        bytes.push((i % 2) as u8);
        bytes.extend(
            (0..3072u32).map(|j| (j.wrapping_mul(2654435761).wrapping_add(i * 97) >> 7) as u8),
        );
    }
    std::fs::write(data.join("data_batch_1.bin"), &bytes).unwrap();
    std::fs::write(data.join("test_batch.bin"), &bytes).unwrap();
    std::fs::write(data.join("batches.meta.txt"), "even\nodd\n").unwrap();
    let image_run = |out: &Path| {
        Rlcpc::new("cpc image --quiet")
            .data(&data)
            .out(out)
            .set("model.encoder", "\"agent\"")
            .set("model.patch", 20)
            .set("model.features", 16)
            .set("cpc.horizon", 2)
            .set("cpc.skip", 0)
            .set("train.batch", 2)
            .set("train.steps", 2)
    };
    let img = dir.path().join("img");
    image_run(&img).ok();
    let enc = img.join("encoder.safetensors");
    // The image encoder initialises an agent on a 20×20 RGB Lab view with a 16-wide FC.
    let lab = [
        "--config",
        "lab-watermaze",
        "--set",
        "env.options.obs=\"rgb\"",
        "--set",
        "env.options.width=20",
        "--set",
        "env.options.height=20",
        "--set",
        "model.encoder=\"conv\"",
        "--set",
        "model.conv_fc=16",
        "--set",
        "env.num_envs=2",
        "--set",
        "run.workers=1",
        "--set",
        "algo.unroll=8",
        "--set",
        "aux.horizon=4",
        "--set",
        "run.total_steps=32",
    ];
    let init = format!("model.init_encoder=\"{}\"", enc.display());
    let agent = dir.path().join("agent");
    let t = Rlcpc::new("train --quiet")
        .out(&agent)
        .args(&lab)
        .args(&["--set", &init])
        .ok();
    assert!(t.contains("done"));
    // A wider FC is refused, naming both encoders.
    let wider = Rlcpc::new("train --quiet")
        .out(&dir.path().join("a2"))
        .args(&lab)
        .set("model.conv_fc", 32);
    bad_setting_is_named(&wider, &init, &["fc 16", "fc 32"]);
    // And back: the agent's exported encoder starts an image run.
    let exported = dir.path().join("agent-encoder.safetensors");
    Rlcpc::new("export-encoder")
        .args(&["--checkpoint", s(&agent.join("checkpoint.safetensors"))])
        .out(&exported)
        .ok();
    let back = format!("model.init_encoder=\"{}\"", exported.display());
    image_run(&dir.path().join("img2"))
        .args(&["--set", &back])
        .ok();
    bad_setting_is_named(
        &image_run(&dir.path().join("img3")).args(&["--set", &back]),
        "model.features=8",
        &["model.init_encoder", "fc 8"],
    );
    // The image probe reads the agent-kind encoder.
    let p = Rlcpc::new("probe")
        .args(&["--encoder", s(&enc)])
        .data(&data)
        .args(&["--iters", "20"])
        .ok();
    assert!(p.contains("2 classes, 24 train / 24 test images"), "{p}");
    let o = image_run(&dir.path().join("img4"))
        .set("model.patch", 16)
        .set("model.stride", 4)
        .output();
    assert!(text(&o).contains("at least 20 pixels"), "{}", text(&o));
}

// `cpc text` and the text probe's cross-validation.

#[test]
fn cpc_text_trains_and_probe_cross_validates_against_bag_of_words() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("corpus");
    std::fs::create_dir(&corpus).unwrap();
    let words = [
        "sea", "ship", "whale", "captain", "storm", "harbour", "crew", "sail",
    ];
    for f in 0..3 {
        let mut t = String::new();
        for s in 0..30 {
            let w = |k: usize| words[(f * 7 + s * 3 + k) % words.len()];
            t.push_str(&format!(
                "The {} saw the {} near the {}. ",
                w(0),
                w(1),
                w(2)
            ));
        }
        std::fs::write(corpus.join(format!("doc{f}.txt")), t).unwrap();
    }
    let run = dir.path().join("run");
    let base = Rlcpc::new("cpc text --quiet")
        .data(&corpus)
        .set("model.embedding", 8)
        .set("model.features", 16)
        .set("model.context", 16)
        .set("train.batch", 4)
        .set("train.steps", 3);
    // Text CPC has no lean path: `lean` is refused before anything is written.
    let refused = dir.path().join("lean");
    base.clone()
        .out(&refused)
        .set("train.learner", "\"lean\"")
        .fails_with(&["train.learner", "no lean path", "auto"]);
    assert!(!refused.exists(), "nothing is written");
    let t = base.clone().out(&run).ok();
    assert!(
        t.contains("90 sentences in 3 files") && t.contains("done after 3 steps"),
        "{t}"
    );
    assert!(t.contains("sentences/s") && t.contains("k=3"), "{t}");
    let labelled = dir.path().join("set.tsv");
    let mut l = String::new();
    for i in 0..40 {
        let (label, w) = if i % 2 == 0 {
            ("pos", "great")
        } else {
            ("neg", "awful")
        };
        l.push_str(&format!(
            "{label}\tA {w} {} voyage.\n",
            words[i % words.len()]
        ));
    }
    std::fs::write(&labelled, l).unwrap();
    let enc = run.join("encoder.safetensors");
    let probe = || {
        Rlcpc::new("probe")
            .args(&["--encoder", s(&enc)])
            .data(&labelled)
            .args(&["--folds", "4"])
    };
    let p = probe().args(&["--iters", "100"]).ok();
    assert!(
        p.contains("2 classes, 40 texts, 4-fold cross-validation"),
        "{p}"
    );
    let bow = p
        .lines()
        .find(|l| l.starts_with("bag of words"))
        .expect("bow row");
    assert!(bow.contains("100.0%"), "one word tells the class: {p}");
    assert!(
        p.contains("random-init, same architecture and vocabulary"),
        "{p}"
    );
    let p = probe()
        .args(&["--iters", "20", "--features", "context", "--no-baselines"])
        .ok();
    assert!(p.contains("last c over its sentences"), "{p}");
    // Settings and data that cannot work are named.
    let bad = base.clone().out(&dir.path().join("bad"));
    for (set, msg) in [
        ("data.sequence=3", "must exceed cpc.horizon"),
        ("data.vocab=2", "data.vocab"),
        ("data.sequence=40", "no file has 40 sentences in a row"),
    ] {
        bad_setting_is_named(&bad, set, &[msg]);
    }
    let e = Rlcpc::new("probe")
        .args(&["--encoder", s(&enc)])
        .data(&dir.path().join("missing.json"))
        .fails();
    assert!(e.contains("missing.json"), "{e}");
}

#[test]
fn trainers_refuse_a_device_they_cannot_use_before_reading_anything() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let data = tmp.path().join("absent");
    // CPC on audio, images and text runs on CUDA in a CUDA build; this one has none.
    for modality in ["audio", "image", "text"] {
        if cfg!(feature = "cuda") {
            break;
        }
        let e = Rlcpc::new(&format!("pretrain {modality} --device cuda"))
            .data(&data)
            .out(&out)
            .fails();
        assert!(e.contains("built without CUDA support"), "{modality}: {e}");
    }
    // SimCLR / MoCo and CPC on recorded frames train on the CPU only, in any build.
    for (cmd, what) in [
        (
            "pretrain image --objective simclr --device cuda",
            "SimCLR / MoCo",
        ),
        ("pretrain frames --device cuda:1", "CPC on recorded frames"),
    ] {
        let e = Rlcpc::new(cmd).data(&data).out(&out).fails();
        assert!(e.contains(what) && e.contains("CPU only"), "{cmd}: {e}");
    }
    let e = Rlcpc::new("pretrain text --device gpu")
        .data(&data)
        .out(&out)
        .fails();
    assert!(e.contains("expected cpu, cuda or cuda:N"), "{e}");
    assert!(!out.exists(), "nothing written");
}
