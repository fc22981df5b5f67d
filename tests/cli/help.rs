//! `rlcpc --help` and each subcommand's `--help`.

use crate::support::Rlcpc;

#[test]
fn help_explains_every_subcommand() {
    let h = Rlcpc::new("--help").ok();
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
    let c = Rlcpc::new("cpc audio --help").ok();
    for flag in [
        "--config", "--data", "--out", "--set", "--resume", "--strict",
    ] {
        assert!(c.contains(flag), "cpc audio --help lacks {flag}");
    }
    let p = Rlcpc::new("probe --help").ok();
    for flag in [
        "--encoder",
        "--data",
        "--target",
        "--split",
        "--no-baselines",
    ] {
        assert!(p.contains(flag), "probe --help lacks {flag}");
    }
    let t = Rlcpc::new("train --help").ok();
    for flag in [
        "--config", "--aux", "--seed", "--out", "--set", "--resume", "--device",
    ] {
        assert!(t.contains(flag), "train --help lacks {flag}");
    }
}
