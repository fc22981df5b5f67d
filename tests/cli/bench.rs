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
