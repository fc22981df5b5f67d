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
    let e = Rlcpc::new("train --config no/such/file.toml").fails();
    assert!(e.contains("no/such/file.toml"), "{e}");
    let e = Rlcpc::new("train --device cuda").fails();
    assert!(e.contains("cuda"), "{e}");
    assert!(
        !tmp.path().join("x").exists(),
        "nothing written for a rejected config"
    );
}
