//! `rlcpc envs`: the registry, `envs render` and `envs score`.

use crate::support::{s, Rlcpc};

#[test]
fn envs_lists_cartpole_with_its_spaces() {
    let e = Rlcpc::new("envs").ok();
    assert!(
        e.contains("CartPole-v1") && e.contains("Discrete(2)") && e.contains("Box(f32, [4])"),
        "{e}"
    );
}

#[test]
fn envs_lists_the_lab_tasks_and_renders_episodes() {
    let e = Rlcpc::new("envs").ok();
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
    let out = Rlcpc::new("envs render lab/keys_doors_puzzle")
        .args(&["--policy", "oracle", "--steps", "30"])
        .out(&gif)
        .ok();
    assert!(out.contains("31 frames"), "{out}");
    let bytes = std::fs::read(&gif).unwrap();
    assert_eq!(&bytes[..6], b"GIF89a");
    assert!(!tmp.path().join("oracle.gif.tmp").exists());

    // A trained policy plays its own environment.
    let run = tmp.path().join("run");
    Rlcpc::new("train --quiet --config lab-lasertag")
        .out(&run)
        .set("run.total_steps", 2560)
        .set("env.num_envs", 8)
        .set("run.workers", 1)
        .ok();
    let ck = run.join("checkpoint.safetensors");
    let out = Rlcpc::new("envs render lab/lasertag")
        .args(&["--checkpoint", s(&ck), "--steps", "20"])
        .out(&tmp.path().join("trained.gif"))
        .ok();
    assert!(out.contains("21 frames"), "{out}");
    let e = Rlcpc::new("envs render lab/watermaze")
        .args(&["--checkpoint", s(&ck)])
        .fails();
    assert!(e.contains("trained on lab/lasertag"), "{e}");

    // Bad input: environments that draw nothing, bad options.
    let e = Rlcpc::new("envs render CartPole-v1").out(&gif).fails();
    assert!(e.contains("draws no pictures"), "{e}");
    let e = Rlcpc::new("envs score lab/watermaze --option view=4").fails();
    assert!(e.contains("view") && e.contains("odd"), "{e}");
    let e = Rlcpc::new("envs score lab/watermaze --option obs=depth").fails();
    assert!(e.contains("obs") && e.contains("grid"), "{e}");
}
