//! `rlcpc bench` on a tiny budget.

use crate::support::Rlcpc;

#[test]
fn bench_runs_on_a_tiny_budget() {
    let b = Rlcpc::new("bench")
        .args(&["--steps", "3000", "--repeats", "1"])
        .args(&["--env-steps", "10000", "--audio-steps", "1"])
        .ok();
    assert!(
        b.contains("train mlp, aux none") && b.contains("CPC head cost"),
        "{b}"
    );
    // The Lab agents, and the time per phase of every training case.
    assert!(
        b.contains("train lab grid mlp+lstm, aux cpc (K=30)")
            && b.contains("train lab rgb conv+lstm, aux cpc (K=30)")
            && b.contains("train lab rgb conv+lstm, aux cpc (K=30), async")
            && b.contains("train lab rgb conv+lstm, aux curl")
            && b.contains("train lab rgb conv+lstm, aux cpca"),
        "{b}"
    );
    // CURL's roofline counts its views (queries, keys and scores).
    assert!(
        b.contains("network and CURL (256 samples per update)"),
        "{b}"
    );
    assert!(b.matches("ms/update: collect").count() >= 8, "{b}");
    assert!(
        b.contains("cpc audio cpc-audio (windows/s)")
            && b.contains("cpc image cpc-image-fashion (images/s)")
            && b.contains("cpc image cpc-image-fashion + CPC-v2 (images/s)")
            && b.contains("cpc text cpc-text (sentences/s)"),
        "{b}"
    );
    // The roofline of every pixel workload, against the GEMM peak measured in the run.
    assert!(b.contains("peak gemm f32 1024³"), "{b}");
    assert!(b.matches("roofline: ").count() >= 10, "{b}");
    for env in [
        "env lab/lasertag ",
        "env lab/lasertag (grid)",
        "env TMaze-v0",
    ] {
        assert!(b.contains(env), "bench lacks {env}: {b}");
    }
}

#[test]
fn bench_scaling_measures_every_size_and_its_memory() {
    let b = Rlcpc::new("bench")
        .args(&["--scaling", "--steps", "1000", "--repeats", "1"])
        .ok();
    for case in ["16 envs, 1 actor thread(s)", "1024 envs, 2 actor thread(s)"] {
        assert!(b.contains(case), "bench --scaling lacks {case}: {b}");
    }
    assert!(b.matches("peak memory").count() == 8, "{b}");
    let per_env: f64 = b
        .lines()
        .find_map(|l| l.strip_prefix("memory per further environment (1 thread(s)): "))
        .and_then(|l| l.split(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no memory per environment: {b}"));
    // A CartPole environment and its rollout rows: more than nothing, far below 10 MiB.
    assert!(per_env > 0.0 && per_env < 10_240.0, "{per_env} KiB: {b}");
}

#[test]
fn bench_peak_measures_gemm_and_memory_bandwidth() {
    let b = Rlcpc::new("bench").args(&["--peak", "--repeats", "1"]).ok();
    for line in [
        "gemm f32 256³, 1 thread(s) (GFLOP/s)",
        "gemm f32 1024³, 1 thread(s) (GFLOP/s)",
        "triad, 1 thread(s) (GB/s)",
    ] {
        let v: f64 = b
            .lines()
            .find(|l| l.starts_with(line))
            .unwrap_or_else(|| panic!("no '{line}' in:\n{b}"))[line.len()..]
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap();
        // Any machine this runs on does more than 0.5 GFLOP/s and 0.5 GB/s.
        assert!(v > 0.5 && v.is_finite(), "{line}: {v}");
    }
}

#[test]
fn bench_only_measures_the_named_trainers_lean_beside_candle() {
    let b = Rlcpc::new("bench")
        .args(&["--trainers-only", "--only", "simclr"])
        .args(&["--trainer-steps", "1", "--repeats", "1"])
        .ok();
    assert!(
        b.contains("simclr image simclr-fashion (images/s)")
            && b.contains("simclr image simclr-fashion, candle (images/s)")
            && b.contains("(the lean path)")
            && b.contains("simclr image simclr-lab-frames (images/s)"),
        "{b}"
    );
    assert!(!b.contains("cpc audio") && !b.contains("moco"), "{b}");
    let e = Rlcpc::new("bench").args(&["--only", "simclr"]).fails();
    assert!(e.contains("--trainers-only"), "{e}");
}
