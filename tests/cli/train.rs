//! `rlcpc train`: a run from start to `eval`, `export-encoder` and `plot`; refusing to
//! overwrite, resuming, a failing worker and Ctrl-C.

use std::path::Path;

use crate::common::bin;
use crate::support::{bad_setting_is_named, s, text, Rlcpc};

/// `train --quiet --out OUT --set run.total_steps=3000`: CartPole with the default MLP.
pub fn tiny_train(out: &Path) -> Rlcpc {
    Rlcpc::new("train --quiet")
        .out(out)
        .set("run.total_steps", 3000)
}

/// `train --quiet --resume --out RUN`.
pub fn resume(run: &Path) -> Rlcpc {
    Rlcpc::new("train --quiet --resume").out(run)
}

#[test]
fn train_eval_export_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let out = tiny_train(&run)
        .args(&["--aux", "cpc", "--config", "cartpole-lstm-cpc"])
        .set("aux.start_times", 2)
        .ok();
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
    let e = Rlcpc::new("eval")
        .args(&["--checkpoint", s(&ck), "--episodes", "3"])
        .ok();
    assert!(
        e.contains("mean return") && e.contains("over 3 episodes"),
        "{e}"
    );

    let enc = tmp.path().join("enc.safetensors");
    Rlcpc::new("export-encoder")
        .args(&["--checkpoint", s(&ck)])
        .out(&enc)
        .ok();
    let (encoder, varmap) =
        rlcpc::encoder_file::load_encoder(&enc, &candle_core::Device::Cpu).unwrap();
    assert_eq!(encoder.out_dim(), 64);
    let names: Vec<String> = varmap.data().lock().unwrap().keys().cloned().collect();
    assert!(
        names.iter().all(|n| n.starts_with("encoder.")) && names.len() == 4,
        "{names:?}"
    );
    // Learning curves of the run as a PNG.
    let png = tmp.path().join("curve.png");
    Rlcpc::new("plot").args(&[s(&run)]).out(&png).ok();
    assert_eq!(&std::fs::read(&png).unwrap()[..8], b"\x89PNG\r\n\x1a\n");
    let e = Rlcpc::new("plot")
        .args(&[s(&run), "--metric", "no/such"])
        .out(&png)
        .fails();
    assert!(e.contains("no/such"), "{e}");
    // An exported encoder is not a training checkpoint.
    let x = Rlcpc::new("eval").args(&["--checkpoint", s(&enc)]).fails();
    assert!(
        x.contains("is an encoder file, not an agent checkpoint"),
        "{x}"
    );
}

#[test]
fn existing_runs_are_not_overwritten_and_resume_continues() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    tiny_train(&run).ok();
    let again = Rlcpc::new("train --quiet").out(&run).fails();
    assert!(again.contains("--resume"), "{again}");
    let r = resume(&run).set("run.total_steps", 6000).ok();
    assert!(r.contains("done after 6000 env steps"), "{r}");
}

#[test]
fn a_panicking_worker_stops_the_run_with_its_message() {
    let tmp = tempfile::tempdir().unwrap();
    for mode in ["sync", "async"] {
        let o = bin()
            .args(["train", "--quiet", "--out", s(&tmp.path().join(mode))])
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
    let child = bin()
        .args(["train", "--quiet", "--out", s(tmp.path())])
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
    let e = Rlcpc::new("eval")
        .args(&["--checkpoint", s(&ck), "--episodes", "1"])
        .ok();
    assert!(e.contains("mean return"), "{e}");
}

/// A pipe whose reader has gone, as `rlcpc … | head` after `head` exits or a `tail`
/// killed by the same Ctrl-C as the run.
fn closed_pipe() -> std::io::PipeWriter {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    writer
}

#[test]
fn a_closed_stdout_ends_the_command_quietly_and_keeps_the_run() {
    let tmp = tempfile::tempdir().unwrap();
    let (run, log) = (tmp.path().join("run"), tmp.path().join("stderr"));
    // The run trains to its end; its report on stdout is what fails.
    let status = bin()
        .args(["train", "--quiet", "--out", s(&run)])
        .args(["--set", "run.total_steps=3000"])
        .stdout(closed_pipe())
        .stderr(std::fs::File::create(&log).unwrap())
        .status()
        .unwrap();
    let err = std::fs::read_to_string(&log).unwrap();
    // 141 as for a process a closed pipe ended; a panic would be 101.
    assert_eq!(status.code(), Some(141), "{err}");
    assert!(!err.contains("panicked") && !err.contains("error"), "{err}");
    for f in ["checkpoint.safetensors", "config.toml", "metrics.jsonl"] {
        assert!(run.join(f).exists(), "{f} missing");
    }
    // Commands that only print end the same way.
    for args in [&["config", "show", "cartpole"][..], &["envs"]] {
        let status = bin()
            .args(args)
            .stdout(closed_pipe())
            .stderr(std::fs::File::create(&log).unwrap())
            .status()
            .unwrap();
        let err = std::fs::read_to_string(&log).unwrap();
        assert_eq!(status.code(), Some(141), "{args:?}: {err}");
        assert!(err.is_empty(), "{args:?}: {err}");
    }
}

#[test]
fn a_closed_stderr_stops_a_long_run_at_a_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let (run, log) = (tmp.path().join("run"), tmp.path().join("stdout"));
    // Hours of training; its progress lines go to a closed stderr, so the run stops as
    // after Ctrl-C: it writes its checkpoint and ends.
    let mut child = bin()
        .args(["train", "--out", s(&run)])
        .args([
            "--set",
            "run.total_steps=500000000",
            "--set",
            "run.log_every=1",
        ])
        .args(["--set", "run.target_return=0"])
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(closed_pipe())
        .spawn()
        .unwrap();
    let o = crate::support::finish_within(&mut child, &log, 120);
    assert_eq!(o.status.code(), Some(141), "{}", text(&o));
    assert!(!text(&o).contains("panicked"), "{}", text(&o));
    let ck = run.join("checkpoint.safetensors");
    let e = Rlcpc::new("eval")
        .args(&["--checkpoint", s(&ck), "--episodes", "1"])
        .ok();
    assert!(e.contains("mean return"), "{e}");
}

#[test]
fn curl_auxiliary_trains_a_lab_rgb_agent_and_needs_image_observations() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("curl");
    let lab = Rlcpc::new("train --quiet --config lab-watermaze --aux curl")
        .set("env.options.obs", "\"rgb\"")
        .set("env.options.width", 20)
        .set("env.options.height", 20)
        .set("model.encoder", "\"conv\"")
        .set("env.num_envs", 4)
        .set("run.workers", 1)
        .set("algo.unroll", 8)
        .set("run.total_steps", 96);
    let t = lab.clone().out(&out).ok();
    assert!(t.contains("(curl aux)") && t.contains("done"), "{t}");
    let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    assert!(
        metrics.contains("curl/acc") && metrics.contains("train/aux_loss"),
        "{metrics}"
    );
    // The key encoder is saved with the checkpoint but not exported as the encoder.
    let exported = dir.path().join("enc.safetensors");
    Rlcpc::new("export-encoder")
        .args(&["--checkpoint", s(&out.join("checkpoint.safetensors"))])
        .out(&exported)
        .ok();
    let bytes = std::fs::read(&exported).unwrap();
    assert!(
        !String::from_utf8_lossy(&bytes).contains("aux.curl"),
        "only encoder.* is exported"
    );
    // Grid observations have no pixels to shift; the mistakes are named.
    Rlcpc::new("train --quiet --config cartpole --aux curl")
        .out(&dir.path().join("c"))
        .fails_with(&["aux.kind", "conv encoder"]);
    let bad = lab.out(&dir.path().join("bad"));
    bad_setting_is_named(&bad, "aux.curl_momentum=1.0", &["aux.curl_momentum"]);
    bad_setting_is_named(&bad, "aux.curl_samples=1", &["aux.curl_samples"]);
    // Review 3, N11: a shift of 30 px on 20x20 images was accepted.
    bad_setting_is_named(&bad, "aux.curl_shift=30", &["aux.curl_shift", "20x20"]);
}

/// `train --seeds` runs one run per seed into OUT/seed-N/ with a summary table, and
/// `plot` draws the directory as one condition averaged over its seeds; a POPGym task
/// with the CPC|A head trains end to end.
#[test]
fn seeds_run_into_one_condition_that_plot_averages() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("cpca");
    let out = Rlcpc::new("train --quiet --config popgym --aux cpca --seeds 1,3")
        .out(&runs)
        .set("run.total_steps", 4096)
        .set("env.id", "\"popgym/RepeatPreviousEasy\"")
        .ok();
    for seed in [1, 3] {
        let m = std::fs::read_to_string(runs.join(format!("seed-{seed}/metrics.jsonl"))).unwrap();
        assert!(m.contains("cpca/acc"), "the CPC|A head logs its accuracy");
    }
    let summary = std::fs::read_to_string(runs.join("summary.txt")).unwrap();
    assert!(
        summary.contains("over 2 complete seeds") && out.contains("MMER"),
        "{summary}"
    );
    // Two seeds of the same config differ (they are different runs).
    let cfg = |s: u64| std::fs::read_to_string(runs.join(format!("seed-{s}/config.toml"))).unwrap();
    assert!(cfg(1).contains("seed = 1") && cfg(3).contains("seed = 3"));

    let png = tmp.path().join("curve.png");
    let table = tmp.path().join("table.txt");
    let p = Rlcpc::new("plot")
        .args(&[
            s(&runs),
            "--label",
            "cpca",
            "--smooth",
            "3",
            "--table",
            s(&table),
        ])
        .out(&png)
        .ok();
    assert!(p.contains("cpca") && p.contains("MMER"), "{p}");
    assert!(std::fs::read_to_string(&table)
        .unwrap()
        .contains("cpca           2"));
    assert_eq!(&std::fs::read(&png).unwrap()[..8], b"\x89PNG\r\n\x1a\n");
    for bad in ["3-1", "1-x", "2,2"] {
        let e = Rlcpc::new("train --quiet --seeds")
            .args(&[bad])
            .out(&tmp.path().join("bad"))
            .fails();
        assert!(e.contains(&format!("--seeds '{bad}'")), "{e}");
    }
    let e = Rlcpc::new("plot").args(&[s(tmp.path())]).out(&png).fails();
    assert!(e.contains("neither a run directory"), "{e}");
}

#[test]
fn plot_says_what_it_leaves_out_or_cuts() {
    // Review 3, N11: runs appended to one file were drawn as one curve, and a run's own
    // metrics beside seed-N/ or a seed without metrics were passed over without a word.
    let tmp = tempfile::tempdir().unwrap();
    let cond = tmp.path().join("cond");
    let rows = |steps: &[u64]| {
        steps
            .iter()
            .map(|x| {
                format!(
                    "{{\"time/total_timesteps\":{x},\"rollout/ep_rew_mean\":{}}}\n",
                    x / 10
                )
            })
            .collect::<String>()
    };
    std::fs::create_dir_all(cond.join("seed-1")).unwrap();
    std::fs::create_dir_all(cond.join("seed-2")).unwrap();
    std::fs::create_dir_all(cond.join("seed-3")).unwrap();
    std::fs::write(
        cond.join("seed-1/metrics.jsonl"),
        rows(&[100, 200, 300, 100, 200]),
    )
    .unwrap();
    std::fs::write(cond.join("seed-3/metrics.jsonl"), rows(&[100, 200])).unwrap();
    std::fs::write(cond.join("metrics.jsonl"), rows(&[100])).unwrap();
    let out = Rlcpc::new("plot")
        .args(&[s(&cond)])
        .out(&tmp.path().join("c.png"))
        .ok();
    for needle in [
        "goes back from 300 to 100",
        "drawing the last run, from there on (2 of 5 points)",
        "left out: seed-2",
        "its own metrics.jsonl is not drawn",
    ] {
        assert!(out.contains(needle), "no '{needle}' in:\n{out}");
    }
}
