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
            && b.contains("train lab rgb conv+lstm, aux cpc (K=30)"),
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
