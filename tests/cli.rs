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
    for sub in ["train", "eval", "export-encoder", "envs", "bench"] {
        assert!(h.contains(sub), "{h}");
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
    assert!(x.contains("missing metadata"), "{x}");
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
        ("aux.kind=\"cpc\"", "aux.horizon"), // K = 30 ≥ the preset's unroll of 5
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
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
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
    ]);
    assert!(
        b.contains("train mlp, aux none") && b.contains("CPC head cost"),
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
