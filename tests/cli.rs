//! The `rlcpc` binary: every subcommand on a tiny budget, and bad input.

use std::path::Path;
use std::process::{Command, Output};

fn rlcpc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rlcpc"))
        .args(args)
        .env_remove("RLCPC_INJECT_WORKER_PANIC")
        .output()
        .expect("runs")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn ok(args: &[&str]) -> String {
    let o = rlcpc(args);
    assert!(o.status.success(), "rlcpc {args:?} failed:\n{}", text(&o));
    text(&o)
}

fn fails(args: &[&str]) -> String {
    let o = rlcpc(args);
    assert!(
        !o.status.success(),
        "rlcpc {args:?} should fail:\n{}",
        text(&o)
    );
    text(&o)
}

fn tiny_train(out: &Path, extra: &[&str]) -> String {
    let mut a = vec![
        "train",
        "--quiet",
        "--out",
        out.to_str().unwrap(),
        "--set",
        "run.total_steps=3000",
    ];
    a.extend_from_slice(extra);
    ok(&a)
}

/// `train --resume --out RUN --set SET`.
fn resume_args<'a>(run: &'a Path, set: &'a str) -> Vec<&'a str> {
    vec![
        "train",
        "--quiet",
        "--resume",
        "--out",
        run.to_str().unwrap(),
        "--set",
        set,
    ]
}

#[test]
fn help_explains_every_subcommand() {
    let h = ok(&["--help"]);
    for sub in [
        "train",
        "eval",
        "export-encoder",
        "envs",
        "bench",
        "cpc",
        "probe",
        "record",
    ] {
        assert!(h.contains(sub), "{h}");
    }
    let c = ok(&["cpc", "audio", "--help"]);
    for flag in [
        "--config", "--data", "--out", "--set", "--resume", "--strict",
    ] {
        assert!(c.contains(flag), "cpc audio --help lacks {flag}");
    }
    let p = ok(&["probe", "--help"]);
    for flag in [
        "--encoder",
        "--data",
        "--target",
        "--split",
        "--no-baselines",
    ] {
        assert!(p.contains(flag), "probe --help lacks {flag}");
    }
    let t = ok(&["train", "--help"]);
    for flag in [
        "--config", "--aux", "--seed", "--out", "--set", "--resume", "--device",
    ] {
        assert!(t.contains(flag), "train --help lacks {flag}");
    }
}

#[test]
fn envs_lists_cartpole_with_its_spaces() {
    let e = ok(&["envs"]);
    assert!(
        e.contains("CartPole-v1") && e.contains("Discrete(2)") && e.contains("Box(f32, [4])"),
        "{e}"
    );
}

#[test]
fn train_eval_export_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let out = tiny_train(
        &run,
        &[
            "--aux",
            "cpc",
            "--config",
            "cartpole-lstm-cpc",
            "--set",
            "aux.start_times=2",
        ],
    );
    assert!(out.contains("done after"), "{out}");
    for f in ["config.toml", "metrics.jsonl", "checkpoint.safetensors"] {
        assert!(run.join(f).exists(), "{f} missing");
    }
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    assert!(metrics.contains("cpc/acc_k1"), "CPC accuracy is logged");
    // The saved config is the resolved one, and loads again.
    let saved = std::fs::read_to_string(run.join("config.toml")).unwrap();
    assert!(
        saved.contains("kind = \"cpc\"") && saved.contains("start_times = 2"),
        "{saved}"
    );

    let ck = run.join("checkpoint.safetensors");
    let e = ok(&[
        "eval",
        "--checkpoint",
        ck.to_str().unwrap(),
        "--episodes",
        "3",
    ]);
    assert!(
        e.contains("mean return") && e.contains("over 3 episodes"),
        "{e}"
    );

    let enc = tmp.path().join("enc.safetensors");
    ok(&[
        "export-encoder",
        "--checkpoint",
        ck.to_str().unwrap(),
        "--out",
        enc.to_str().unwrap(),
    ]);
    let (encoder, varmap) = rlcpc::eval::load_encoder(&enc, &candle_core::Device::Cpu).unwrap();
    assert_eq!(encoder.out_dim(), 64);
    let names: Vec<String> = varmap.data().lock().unwrap().keys().cloned().collect();
    assert!(
        names.iter().all(|n| n.starts_with("encoder.")) && names.len() == 4,
        "{names:?}"
    );
    // Learning curves of the run as a PNG.
    let png = tmp.path().join("curve.png");
    ok(&[
        "plot",
        run.to_str().unwrap(),
        "--out",
        png.to_str().unwrap(),
    ]);
    assert_eq!(&std::fs::read(&png).unwrap()[..8], b"\x89PNG\r\n\x1a\n");
    let e = fails(&[
        "plot",
        run.to_str().unwrap(),
        "--metric",
        "no/such",
        "--out",
        png.to_str().unwrap(),
    ]);
    assert!(e.contains("no/such"), "{e}");
    // An exported encoder is not a training checkpoint.
    let x = fails(&["eval", "--checkpoint", enc.to_str().unwrap()]);
    assert!(
        x.contains("is an encoder file, not an agent checkpoint"),
        "{x}"
    );
}

#[test]
fn existing_runs_are_not_overwritten_and_resume_continues() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    tiny_train(&run, &[]);
    let again = fails(&["train", "--quiet", "--out", run.to_str().unwrap()]);
    assert!(again.contains("--resume"), "{again}");
    let r = ok(&resume_args(&run, "run.total_steps=6000"));
    assert!(r.contains("done after 6000 env steps"), "{r}");
}

#[test]
fn bad_config_values_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("bad.toml");
    std::fs::write(&cfg, "[env]\nid = \"CartPole-v1\"\n[algo]\nunrol = 5\n").unwrap();
    let e = fails(&["train", "--config", cfg.to_str().unwrap()]);
    assert!(
        e.contains("unrol") && e.contains("bad.toml"),
        "unknown key: {e}"
    );
    for (set, key) in [
        ("optim.lr=0", "optim.lr"),
        ("optim.lr=-1e-3", "optim.lr"),
        ("run.workers=0", "run.workers"),
        ("env.id=\"Pong-v9\"", "env.id"),
        ("algo.unroll=\"eight\"", "unroll"),
        ("env.num_envs=0", "env.num_envs"),
        ("run.workers=3", "env.num_envs"), // 16 environments do not split over 3 workers
        ("env.options.gravity=1", "gravity"),
        ("run.mode=\"async\"", "algo.vtrace"),
        ("model.encoder=\"conv\"", "image"),
    ] {
        let e = fails(&[
            "train",
            "--quiet",
            "--out",
            tmp.path().join("x").to_str().unwrap(),
            "--set",
            set,
        ]);
        assert!(e.contains(key), "--set {set}: {e}");
    }
    let e = fails(&["train", "--set", "novalue"]);
    assert!(e.contains("key.path=value"), "{e}");
    let e = fails(&["train", "--config", "no/such/file.toml"]);
    assert!(e.contains("no/such/file.toml"), "{e}");
    let e = fails(&["train", "--device", "cuda"]);
    assert!(e.contains("cuda"), "{e}");
    assert!(
        !tmp.path().join("x").exists(),
        "nothing written for a rejected config"
    );
}

#[test]
fn corrupt_or_missing_checkpoints_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("bad.safetensors");
    std::fs::write(&bad, b"\x10\x00\x00\x00\x00\x00\x00\x00{not json").unwrap();
    let e = fails(&["eval", "--checkpoint", bad.to_str().unwrap()]);
    assert!(
        e.contains("corrupt") && e.contains("bad.safetensors"),
        "{e}"
    );
    let e = fails(&[
        "eval",
        "--checkpoint",
        tmp.path().join("none.safetensors").to_str().unwrap(),
    ]);
    assert!(e.contains("none.safetensors"), "{e}");
    let e = fails(&["train", "--resume", "--out", tmp.path().to_str().unwrap()]);
    assert!(e.contains("config.toml"), "{e}");
    // A checkpoint of another network is refused on resume.
    let run = tmp.path().join("run");
    tiny_train(&run, &[]);
    let e = fails(&resume_args(&run, "model.mlp_hidden=[32]"));
    assert!(e.contains("does not match"), "{e}");
}

#[test]
fn a_panicking_worker_stops_the_run_with_its_message() {
    let tmp = tempfile::tempdir().unwrap();
    for mode in ["sync", "async"] {
        let o = Command::new(env!("CARGO_BIN_EXE_rlcpc"))
            .args([
                "train",
                "--quiet",
                "--out",
                tmp.path().join(mode).to_str().unwrap(),
            ])
            .args([
                "--set",
                "run.workers=2",
                "--set",
                &format!("run.mode=\"{mode}\""),
                "--set",
                "algo.vtrace=true",
                // No early stop: in async mode the other worker alone could otherwise
                // reach the target before worker 1's failure arrives.
                "--set",
                "run.target_return=0",
            ])
            .env("RLCPC_INJECT_WORKER_PANIC", "1:3")
            .output()
            .unwrap();
        let t = text(&o);
        assert!(!o.status.success(), "{mode}: {t}");
        assert!(
            t.contains("actor worker 1 failed") && t.contains("injected panic"),
            "{mode}: {t}"
        );
    }
}

#[test]
fn ctrl_c_writes_a_final_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_rlcpc"))
        .args(["train", "--quiet", "--out", tmp.path().to_str().unwrap()])
        .args([
            "--set",
            "run.total_steps=100000000",
            "--set",
            "run.target_return=0",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until training runs (metrics appear), then interrupt.
    let metrics = tmp.path().join("metrics.jsonl");
    let t0 = std::time::Instant::now();
    while std::fs::metadata(&metrics).map_or(true, |m| m.len() == 0) {
        assert!(t0.elapsed().as_secs() < 60, "training never started");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // SAFETY: kill(2) on this test's child process.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let o = child.wait_with_output().unwrap();
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("interrupted after"), "{t}");
    let ck = tmp.path().join("checkpoint.safetensors");
    let e = ok(&[
        "eval",
        "--checkpoint",
        ck.to_str().unwrap(),
        "--episodes",
        "1",
    ]);
    assert!(e.contains("mean return"), "{e}");
}

#[test]
fn bench_runs_on_a_tiny_budget() {
    let b = ok(&[
        "bench",
        "--steps",
        "3000",
        "--repeats",
        "1",
        "--env-steps",
        "10000",
        "--audio-steps",
        "1",
    ]);
    assert!(
        b.contains("train mlp, aux none") && b.contains("CPC head cost"),
        "{b}"
    );
    assert!(
        b.contains("cpc audio cpc-audio (windows/s)")
            && b.contains("cpc image cpc-image-fashion (images/s)")
            && b.contains("cpc image cpc-image-fashion + CPC-v2 (images/s)")
            && b.contains("cpc text cpc-text (sentences/s)"),
        "{b}"
    );
    for env in [
        "env lab/lasertag ",
        "env lab/lasertag (grid)",
        "env TMaze-v0",
    ] {
        assert!(b.contains(env), "bench lacks {env}: {b}");
    }
}

#[test]
fn envs_lists_the_lab_tasks_and_renders_episodes() {
    let e = ok(&["envs"]);
    for id in [
        "lab/explore_goal_locations",
        "lab/watermaze",
        "lab/seekavoid_arena",
        "lab/keys_doors_puzzle",
        "lab/lasertag",
    ] {
        assert!(e.contains(id), "{id} missing: {e}");
    }
    assert!(
        e.contains("Box(f32, [48, 64, 3])") && e.contains("Discrete(9)"),
        "{e}"
    );

    let tmp = tempfile::tempdir().unwrap();
    let gif = tmp.path().join("oracle.gif");
    let out = ok(&[
        "envs",
        "render",
        "lab/keys_doors_puzzle",
        "--policy",
        "oracle",
        "--steps",
        "30",
        "--out",
        gif.to_str().unwrap(),
    ]);
    assert!(out.contains("31 frames"), "{out}");
    let bytes = std::fs::read(&gif).unwrap();
    assert_eq!(&bytes[..6], b"GIF89a");
    assert!(!tmp.path().join("oracle.gif.tmp").exists());

    // A trained policy plays its own environment.
    let run = tmp.path().join("run");
    ok(&[
        "train",
        "--quiet",
        "--config",
        "lab-lasertag",
        "--out",
        run.to_str().unwrap(),
        "--set",
        "run.total_steps=2560",
        "--set",
        "env.num_envs=8",
        "--set",
        "run.workers=1",
    ]);
    let ck = run.join("checkpoint.safetensors");
    let out = ok(&[
        "envs",
        "render",
        "lab/lasertag",
        "--checkpoint",
        ck.to_str().unwrap(),
        "--steps",
        "20",
        "--out",
        tmp.path().join("trained.gif").to_str().unwrap(),
    ]);
    assert!(out.contains("21 frames"), "{out}");
    let e = fails(&[
        "envs",
        "render",
        "lab/watermaze",
        "--checkpoint",
        ck.to_str().unwrap(),
    ]);
    assert!(e.contains("trained on lab/lasertag"), "{e}");

    // Bad input: environments that draw nothing, bad options.
    let e = fails(&[
        "envs",
        "render",
        "CartPole-v1",
        "--out",
        gif.to_str().unwrap(),
    ]);
    assert!(e.contains("draws no pictures"), "{e}");
    let e = fails(&["envs", "score", "lab/watermaze", "--option", "view=4"]);
    assert!(e.contains("view") && e.contains("odd"), "{e}");
    let e = fails(&["envs", "score", "lab/watermaze", "--option", "obs=depth"]);
    assert!(e.contains("obs") && e.contains("grid"), "{e}");
}

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
    let d = data.to_str().unwrap();
    let run = |out: &Path, steps: &str, resume: bool| {
        let mut a = vec![
            "cpc",
            "audio",
            "--quiet",
            "--data",
            d,
            "--out",
            out.to_str().unwrap(),
        ];
        if resume {
            a.push("--resume");
        }
        a.extend_from_slice(&TINY_AUDIO);
        a.extend_from_slice(&["--set", steps]);
        ok(&a)
    };
    // 6 steps at once, and 3 + 3 with a resume in between: the same encoder bit for bit.
    let full = dir.path().join("full");
    let t = run(&full, "train.steps=6", false);
    assert!(
        t.contains("layout fsdd") && t.contains("done after 6 steps"),
        "{t}"
    );
    let half = dir.path().join("half");
    run(&half, "train.steps=3", false);
    let again = fails(&[
        "cpc",
        "audio",
        "--quiet",
        "--data",
        d,
        "--out",
        half.to_str().unwrap(),
    ]);
    assert!(again.contains("--resume"), "{again}");
    run(&half, "train.steps=6", true);
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
    let p = ok(&[
        "probe",
        "--encoder",
        enc.to_str().unwrap(),
        "--data",
        d,
        "--target",
        "speaker",
        "--iters",
        "100",
    ]);
    assert!(
        p.contains("2 classes") && p.contains("38 train / 10 test"),
        "{p}"
    );
    let mfcc = p.lines().find(|l| l.starts_with("MFCC")).expect("MFCC row");
    assert!(mfcc.trim_end().ends_with("100.0%"), "{p}");
    assert!(p.contains("random-init encoder"), "{p}");
    let p = ok(&[
        "probe",
        "--encoder",
        enc.to_str().unwrap(),
        "--data",
        d,
        "--target",
        "digit",
        "--no-baselines",
        "--split",
        "speaker",
        "--test-fraction",
        "0.5",
    ]);
    assert!(
        p.contains("3 classes") && p.contains("split by speaker"),
        "{p}"
    );
    let e = fails(&[
        "probe",
        "--encoder",
        enc.to_str().unwrap(),
        "--data",
        d,
        "--target",
        "word",
    ]);
    assert!(
        e.contains("no label 'word'") && e.contains("digit, speaker"),
        "{e}"
    );
    let e = fails(&[
        "probe",
        "--encoder",
        enc.to_str().unwrap(),
        "--data",
        d,
        "--target",
        "phone",
    ]);
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
    let p = ok(&[
        "probe",
        "--encoder",
        enc.to_str().unwrap(),
        "--data",
        d,
        "--target",
        "phone",
        "--iters",
        "50",
    ]);
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
    let e = fails(&[
        "train",
        "--quiet",
        "--out",
        dir.path().join("agent").to_str().unwrap(),
        "--set",
        &format!("model.init_encoder=\"{}\"", enc.display()),
    ]);
    assert!(
        e.contains("audio conv1d") && e.contains("mlp (input 4"),
        "{e}"
    );
}

#[test]
fn cpc_audio_reports_bad_files_and_bad_settings() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("fsdd");
    std::fs::create_dir(&data).unwrap();
    tiny_corpus(&data);
    std::fs::write(data.join("9_low_99.wav"), b"not audio").unwrap();
    let d = data.to_str().unwrap();
    let mut a = vec![
        "cpc",
        "audio",
        "--quiet",
        "--data",
        d,
        "--set",
        "train.steps=1",
    ];
    a.extend_from_slice(&TINY_AUDIO);
    let out = dir.path().join("r1");
    let mut skip = a.clone();
    skip.extend_from_slice(&["--out", out.to_str().unwrap()]);
    let t = ok(&skip);
    assert!(t.contains("skipped") && t.contains("9_low_99.wav"), "{t}");
    let mut strict = a.clone();
    let r2 = dir.path().join("r2");
    strict.extend_from_slice(&["--out", r2.to_str().unwrap(), "--strict"]);
    let e = fails(&strict);
    assert!(e.contains("9_low_99.wav") && e.contains("--strict"), "{e}");
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let e = fails(&[
        "cpc",
        "audio",
        "--data",
        empty.to_str().unwrap(),
        "--out",
        dir.path().join("r3").to_str().unwrap(),
    ]);
    assert!(e.contains("no audio files"), "{e}");
    let e = fails(&[
        "cpc",
        "audio",
        "--data",
        d,
        "--out",
        dir.path().join("r4").to_str().unwrap(),
        "--set",
        "model.kernels=[10,6,4,4,4]",
    ]);
    assert!(e.contains("multiple of its stride"), "{e}");
    let e = fails(&[
        "cpc",
        "audio",
        "--data",
        d,
        "--out",
        dir.path().join("r5").to_str().unwrap(),
        "--set",
        "data.window=1600",
        "--set",
        "cpc.horizon=12",
    ]);
    assert!(e.contains("cpc.horizon"), "{e}");
    let e = fails(&[
        "cpc",
        "audio",
        "--data",
        d,
        "--out",
        dir.path().join("r6").to_str().unwrap(),
        "--set",
        "data.window=99999",
    ]);
    assert!(e.contains("lower data.window"), "{e}");
}

#[test]
fn record_then_belief_probe_and_cpc_frames_feed_an_agent() {
    let dir = tempfile::tempdir().unwrap();
    let rec = dir.path().join("rec");
    let r = rec.to_str().unwrap();
    let t = ok(&[
        "record",
        "--env",
        "MaskedCartPole-v1",
        "--policy",
        "random",
        "--steps",
        "3000",
        "--out",
        r,
    ]);
    assert!(t.contains("state [x, x_dot, theta, theta_dot]"), "{t}");
    // An agent's checkpoint: its core's features against the true state.
    let agent = dir.path().join("agent");
    ok(&[
        "train",
        "--quiet",
        "--config",
        "cartpole-masked",
        "--out",
        agent.to_str().unwrap(),
        "--set",
        "run.total_steps=4096",
    ]);
    let ck = agent.join("checkpoint.safetensors");
    let p = ok(&[
        "probe",
        "--encoder",
        ck.to_str().unwrap(),
        "--data",
        r,
        "--target",
        "state",
    ]);
    assert!(
        p.contains("agent core c_t") && p.contains("raw observation"),
        "{p}"
    );
    // The raw masked observation holds x and theta exactly (R² ≈ 1), not the velocities.
    let raw: Vec<f64> = p
        .lines()
        .find(|l| l.starts_with("raw observation"))
        .unwrap()
        .split_whitespace()
        .rev()
        .take(5)
        .map(|v| v.parse().unwrap())
        .collect(); // mean, theta_dot, theta, x_dot, x
    assert!(raw[2] > 0.99 && raw[4] > 0.99, "{p}");
    assert!(raw[1] < 0.9 && raw[3] < 0.9, "velocities are hidden: {p}");
    let p = ok(&[
        "probe",
        "--encoder",
        ck.to_str().unwrap(),
        "--data",
        r,
        "--target",
        "theta_dot",
        "--no-baselines",
    ]);
    assert!(
        p.contains("theta_dot") && !p.contains("raw observation"),
        "{p}"
    );
    let e = fails(&[
        "probe",
        "--encoder",
        ck.to_str().unwrap(),
        "--data",
        r,
        "--target",
        "speed",
    ]);
    assert!(e.contains("x, x_dot, theta, theta_dot"), "{e}");
    // CPC on the recorded frames with the preset's encoder, then into an agent.
    let frames = dir.path().join("frames");
    let set = [
        "--set",
        "model.mlp_hidden=[64,64]",
        "--set",
        "model.activation=\"tanh\"",
        "--set",
        "cpc.unroll=16",
        "--set",
        "cpc.horizon=8",
        "--set",
        "train.steps=5",
    ];
    let mut a = vec![
        "cpc",
        "frames",
        "--quiet",
        "--data",
        r,
        "--out",
        frames.to_str().unwrap(),
    ];
    a.extend_from_slice(&set);
    ok(&a);
    let enc = frames.join("encoder.safetensors");
    let p = ok(&[
        "probe",
        "--encoder",
        enc.to_str().unwrap(),
        "--data",
        r,
        "--no-baselines",
        "--target",
        "state",
    ]);
    assert!(p.contains("encoder + context c_t"), "{p}");
    let init = format!("model.init_encoder=\"{}\"", enc.display());
    let t = ok(&[
        "train",
        "--quiet",
        "--config",
        "cartpole-masked",
        "--out",
        dir.path().join("a2").to_str().unwrap(),
        "--set",
        "run.total_steps=2048",
        "--set",
        &init,
    ]);
    assert!(t.contains("done"), "{t}");
    // The agent starts from exactly those weights (its learner, built as `train` builds
    // it, holds the file's encoder tensors); with a different width it is refused.
    {
        use rlcpc_agents::PolicyNetwork;
        let cfg = rlcpc::config::Config::load(
            Some(Path::new("cartpole-masked")),
            std::slice::from_ref(&init),
        )
        .unwrap();
        let spec = rlcpc::train::net_spec(&cfg).unwrap();
        let learner = rlcpc::train::build_learner(&cfg, &spec, &candle_core::Device::Cpu).unwrap();
        let file = rlcpc::checkpoint::Loaded::read_as(&enc, "encoder file").unwrap();
        let mut compared = 0;
        for (name, var) in learner.net.vars() {
            if name.starts_with("encoder.") {
                let got = var
                    .as_tensor()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap();
                let want = file.tensors[&name]
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap();
                assert_eq!(got, want, "{name} differs from the file's");
                compared += 1;
            }
        }
        assert!(compared >= 2, "no encoder tensors compared");
    }
    let e = fails(&[
        "train",
        "--quiet",
        "--config",
        "cartpole-masked",
        "--out",
        dir.path().join("a3").to_str().unwrap(),
        "--set",
        "model.mlp_hidden=[32]",
        "--set",
        &init,
    ]);
    assert!(
        e.contains("hidden [64, 64]") && e.contains("hidden [32]"),
        "{e}"
    );
    // A CartPole encoder does not read Lab frames.
    let lab = dir.path().join("lab");
    ok(&[
        "record",
        "--env",
        "lab/watermaze",
        "--option",
        "obs=grid",
        "--option",
        "view=5",
        "--steps",
        "200",
        "--out",
        lab.to_str().unwrap(),
    ]);
    let e = fails(&[
        "probe",
        "--encoder",
        enc.to_str().unwrap(),
        "--data",
        lab.to_str().unwrap(),
    ]);
    assert!(e.contains("shape"), "{e}");
}

#[test]
fn cpc_image_trains_on_idx_files_and_checks_the_patch_grid() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("mnist");
    std::fs::create_dir(&data).unwrap();
    // 40 16×16 images: a bright square whose position is the class.
    let (n, side) = (40u32, 16usize);
    let mut idx = vec![0u8, 0, 8, 3];
    for d in [n, side as u32, side as u32] {
        idx.extend_from_slice(&d.to_be_bytes());
    }
    let mut labels = vec![0u8, 0, 8, 1];
    labels.extend_from_slice(&n.to_be_bytes());
    for i in 0..n as usize {
        let class = i % 4;
        let (oy, ox) = (4 * (class / 2) + 2, 4 * (class % 2) + 2);
        for y in 0..side {
            for x in 0..side {
                let on = (oy..oy + 6).contains(&y) && (ox..ox + 6).contains(&x);
                idx.push(if on { 255 } else { (i * 7 % 40) as u8 });
            }
        }
        labels.push(class as u8);
    }
    std::fs::write(data.join("train-images-idx3-ubyte"), &idx).unwrap();
    std::fs::write(data.join("train-labels-idx1-ubyte"), &labels).unwrap();
    std::fs::write(data.join("t10k-images-idx3-ubyte"), &idx).unwrap();
    std::fs::write(data.join("t10k-labels-idx1-ubyte"), &labels).unwrap();
    let out = dir.path().join("run");
    let base = [
        "cpc",
        "image",
        "--quiet",
        "--data",
        data.to_str().unwrap(),
        "--set",
        "model.features=8",
        "--set",
        "train.batch=4",
        "--set",
        "train.checkpoint_every=2",
        "--set",
        "cpc.horizon=2",
        "--set",
        "cpc.skip=0",
    ];
    let mut a = base.to_vec();
    a.extend_from_slice(&["--out", out.to_str().unwrap(), "--set", "train.steps=3"]);
    let t = ok(&a);
    assert!(
        t.contains("40 training images of 16x16x1") && t.contains("done after 3 steps"),
        "{t}"
    );
    let enc = out.join("encoder.safetensors");
    let p = ok(&[
        "probe",
        "--encoder",
        enc.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--iters",
        "50",
    ]);
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
    let mut a = base.to_vec();
    let v2 = dir.path().join("v2");
    a.extend_from_slice(&[
        "--out",
        v2.to_str().unwrap(),
        "--set",
        "train.steps=2",
        "--set",
        "model.layer_norm=true",
        "--set",
        "cpc.directions=[\"down\",\"up\",\"right\",\"left\"]",
        "--set",
        "augment.crop=2",
        "--set",
        "augment.flip=true",
    ]);
    assert!(ok(&a).contains("done after 2 steps"));
    let metrics = std::fs::read_to_string(v2.join("metrics.jsonl")).unwrap();
    assert!(metrics.contains("train/acc_left"), "{metrics}");
    let p = ok(&[
        "probe",
        "--encoder",
        v2.join("encoder.safetensors").to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--iters",
        "20",
        "--pool-grid",
        "1",
        "--features",
        "encoder",
        "--no-baselines",
    ]);
    assert!(p.contains("z, 1x1 pooled"), "{p}");
    for (set, msg) in [
        ("cpc.directions=[\"down\",\"down\"]", "each once"),
        ("augment.color_drop=true", "colour images"),
        ("augment.crop=5", "at most the stride"),
    ] {
        let mut a = base.to_vec();
        let bad = dir.path().join("bad-v2");
        a.extend_from_slice(&["--out", bad.to_str().unwrap(), "--set", set]);
        let e = fails(&a);
        assert!(e.contains(msg), "{set}: {e}");
    }
    // 16×16 with 8×8 patches every 4: a 3-row grid allows at most 2 rows of horizon.
    let mut a = base.to_vec();
    let bad = dir.path().join("bad");
    a.extend_from_slice(&["--out", bad.to_str().unwrap(), "--set", "cpc.horizon=3"]);
    let e = fails(&a);
    assert!(
        e.contains("3x3 patch grid") && e.contains("at most 2"),
        "{e}"
    );
    let mut a = base.to_vec();
    a.extend_from_slice(&["--out", bad.to_str().unwrap(), "--set", "model.stride=3"]);
    let e = fails(&a);
    assert!(e.contains("exactly"), "{e}");
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
    let image_run = |out: &Path, extra: &[&str]| {
        let mut a = vec![
            "cpc",
            "image",
            "--quiet",
            "--data",
            data.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--set",
            "model.encoder=\"agent\"",
            "--set",
            "model.patch=20",
            "--set",
            "model.features=16",
            "--set",
            "cpc.horizon=2",
            "--set",
            "cpc.skip=0",
            "--set",
            "train.batch=2",
            "--set",
            "train.steps=2",
        ];
        a.extend_from_slice(extra);
        rlcpc(&a)
    };
    let img = dir.path().join("img");
    let o = image_run(&img, &[]);
    assert!(o.status.success(), "{}", text(&o));
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
    let mut a = vec!["train", "--quiet", "--out", agent.to_str().unwrap()];
    a.extend_from_slice(&lab);
    a.extend_from_slice(&["--set", &init]);
    assert!(ok(&a).contains("done"));
    // A wider FC is refused, naming both encoders.
    let a2 = dir.path().join("a2");
    let mut a = vec!["train", "--quiet", "--out", a2.to_str().unwrap()];
    a.extend_from_slice(&lab);
    a.extend_from_slice(&["--set", "model.conv_fc=32", "--set", &init]);
    let e = fails(&a);
    assert!(e.contains("fc 16") && e.contains("fc 32"), "{e}");
    // And back: the agent's exported encoder starts an image run.
    let exported = dir.path().join("agent-encoder.safetensors");
    ok(&[
        "export-encoder",
        "--checkpoint",
        agent.join("checkpoint.safetensors").to_str().unwrap(),
        "--out",
        exported.to_str().unwrap(),
    ]);
    let back = format!("model.init_encoder=\"{}\"", exported.display());
    let o = image_run(&dir.path().join("img2"), &["--set", &back]);
    assert!(o.status.success(), "{}", text(&o));
    let o = image_run(
        &dir.path().join("img3"),
        &["--set", &back, "--set", "model.features=8"],
    );
    assert!(!o.status.success());
    assert!(
        text(&o).contains("model.init_encoder") && text(&o).contains("fc 8"),
        "{}",
        text(&o)
    );
    // The image probe reads the agent-kind encoder.
    let p = ok(&[
        "probe",
        "--encoder",
        enc.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--iters",
        "20",
    ]);
    assert!(p.contains("2 classes, 24 train / 24 test images"), "{p}");
    let o = image_run(
        &dir.path().join("img4"),
        &["--set", "model.patch=16", "--set", "model.stride=4"],
    );
    assert!(text(&o).contains("at least 18 pixels"), "{}", text(&o));
}

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
    let base = [
        "cpc",
        "text",
        "--quiet",
        "--data",
        corpus.to_str().unwrap(),
        "--set",
        "model.embedding=8",
        "--set",
        "model.features=16",
        "--set",
        "model.context=16",
        "--set",
        "train.batch=4",
        "--set",
        "train.steps=3",
    ];
    let mut a = base.to_vec();
    a.extend_from_slice(&["--out", run.to_str().unwrap()]);
    let t = ok(&a);
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
    let p = ok(&[
        "probe",
        "--encoder",
        run.join("encoder.safetensors").to_str().unwrap(),
        "--data",
        labelled.to_str().unwrap(),
        "--folds",
        "4",
        "--iters",
        "100",
    ]);
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
    let p = ok(&[
        "probe",
        "--encoder",
        run.join("encoder.safetensors").to_str().unwrap(),
        "--data",
        labelled.to_str().unwrap(),
        "--folds",
        "4",
        "--iters",
        "20",
        "--features",
        "context",
        "--no-baselines",
    ]);
    assert!(p.contains("last c over its sentences"), "{p}");
    // Settings and data that cannot work are named.
    for (set, msg) in [
        ("data.sequence=3", "must exceed cpc.horizon"),
        ("data.vocab=2", "data.vocab"),
        ("data.sequence=40", "no file has 40 sentences in a row"),
    ] {
        let mut a = base.to_vec();
        let bad = dir.path().join("bad");
        a.extend_from_slice(&["--out", bad.to_str().unwrap(), "--set", set]);
        let e = fails(&a);
        assert!(e.contains(msg), "{set}: {e}");
    }
    let e = fails(&[
        "probe",
        "--encoder",
        run.join("encoder.safetensors").to_str().unwrap(),
        "--data",
        dir.path().join("missing.json").to_str().unwrap(),
    ]);
    assert!(e.contains("missing.json"), "{e}");
}
