//! Config files and `--set` overrides that cannot work are refused, naming the key.

use crate::support::{bad_setting_is_named, s, Rlcpc};

#[test]
fn bad_config_values_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("bad.toml");
    std::fs::write(&cfg, "[env]\nid = \"CartPole-v1\"\n[algo]\nunrol = 5\n").unwrap();
    let e = Rlcpc::new("train").args(&["--config", s(&cfg)]).fails();
    assert!(
        e.contains("unrol") && e.contains("bad.toml"),
        "unknown key: {e}"
    );
    let train = Rlcpc::new("train --quiet").out(&tmp.path().join("x"));
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
        bad_setting_is_named(&train, set, &[key]);
    }
    let e = Rlcpc::new("train --set novalue").fails();
    assert!(e.contains("key.path=value"), "{e}");
    bad_setting_is_named(&train, "env.step_timeout=0", &["env.step_timeout"]);
    // Review 3, N10: a second line in one --set was dropped without a word, and quoted
    // TOML keys kept their quotes.
    bad_setting_is_named(
        &train,
        "run.total_steps=5\nrun.seed=3",
        &["one value per --set"],
    );
    let show = |set: &str| {
        Rlcpc::new("config show cartpole")
            .args(&["--set", set])
            .ok()
    };
    assert!(show("run.\"total_steps\"=5").contains("total_steps = 5"));
    let e = Rlcpc::new("config show cartpole")
        .args(&["--set", "env.options.\"日本\"=1"])
        .fails();
    assert!(e.contains("'日本'") && !e.contains("\"日本\""), "{e}");
    let e = Rlcpc::new("train --config no/such/file.toml").fails();
    assert!(e.contains("no/such/file.toml"), "{e}");
    let e = Rlcpc::new("train --device cuda").fails();
    assert!(e.contains("cuda"), "{e}");
    assert!(
        !tmp.path().join("x").exists(),
        "nothing written for a rejected config"
    );
}

#[test]
fn a_config_that_is_a_device_is_refused_and_huge_values_are_cut_in_messages() {
    // Review 3, N10: a link to /dev/zero was read until memory ran out, and a value of
    // megabytes was echoed whole in the error.
    let tmp = tempfile::tempdir().unwrap();
    let link = tmp.path().join("zero.toml");
    std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
    let e = Rlcpc::new("config show").args(&[s(&link)]).fails();
    assert!(
        e.contains("zero.toml") && e.contains("not a regular file"),
        "{e}"
    );
    let big = tmp.path().join("big.toml");
    let id = "x".repeat(10_000_000);
    std::fs::write(&big, format!("[env]\nid = \"{id}\"\n")).unwrap();
    let e = Rlcpc::new("config show").args(&[s(&big)]).fails();
    assert!(
        e.len() < 10_000 && e.contains("characters cut") && e.contains("unknown environment"),
        "{} bytes: {}",
        e.len(),
        &e[..e.len().min(3000)]
    );
}
