//! `rlcpc record`: recorded trajectories for the belief probe (`probe --target state`) and
//! for `cpc frames`, whose encoder then starts an agent.

use std::path::Path;

use crate::support::{bad_setting_is_named, s, Rlcpc};

#[test]
fn record_then_belief_probe_and_cpc_frames_feed_an_agent() {
    let dir = tempfile::tempdir().unwrap();
    let rec = dir.path().join("rec");
    let t = Rlcpc::new("record --env MaskedCartPole-v1 --policy random --steps 3000")
        .out(&rec)
        .ok();
    assert!(t.contains("state [x, x_dot, theta, theta_dot]"), "{t}");
    // An agent's checkpoint: its core's features against the true state.
    let agent = dir.path().join("agent");
    Rlcpc::new("train --quiet --config cartpole-masked")
        .out(&agent)
        .set("run.total_steps", 4096)
        .ok();
    let ck = agent.join("checkpoint.safetensors");
    let probe = |encoder: &Path| {
        Rlcpc::new("probe")
            .args(&["--encoder", s(encoder)])
            .data(&rec)
    };
    let p = probe(&ck).args(&["--target", "state"]).ok();
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
    let p = probe(&ck)
        .args(&["--target", "theta_dot", "--no-baselines"])
        .ok();
    assert!(
        p.contains("theta_dot") && !p.contains("raw observation"),
        "{p}"
    );
    let e = probe(&ck).args(&["--target", "speed"]).fails();
    assert!(e.contains("x, x_dot, theta, theta_dot"), "{e}");
    // CPC on the recorded frames with the preset's encoder, then into an agent.
    let frames = dir.path().join("frames");
    Rlcpc::new("cpc frames --quiet")
        .data(&rec)
        .out(&frames)
        .set("model.mlp_hidden", "[64,64]")
        .set("model.activation", "\"tanh\"")
        .set("cpc.unroll", 16)
        .set("cpc.horizon", 8)
        .set("train.steps", 5)
        .ok();
    let enc = frames.join("encoder.safetensors");
    let p = probe(&enc)
        .args(&["--no-baselines", "--target", "state"])
        .ok();
    assert!(p.contains("encoder + context c_t"), "{p}");
    let init = format!("model.init_encoder=\"{}\"", enc.display());
    let t = Rlcpc::new("train --quiet --config cartpole-masked")
        .out(&dir.path().join("a2"))
        .set("run.total_steps", 2048)
        .args(&["--set", &init])
        .ok();
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
        let spec = rlcpc::rl::train::net_spec(&cfg).unwrap();
        let learner =
            rlcpc::rl::train::build_learner(&cfg, &spec, &candle_core::Device::Cpu).unwrap();
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
    let narrow = Rlcpc::new("train --quiet --config cartpole-masked")
        .out(&dir.path().join("a3"))
        .set("model.mlp_hidden", "[32]");
    bad_setting_is_named(&narrow, &init, &["hidden [64, 64]", "hidden [32]"]);
    // A CartPole encoder does not read Lab frames.
    let lab = dir.path().join("lab");
    Rlcpc::new("record --env lab/watermaze --option obs=grid --option view=5 --steps 200")
        .out(&lab)
        .ok();
    let e = Rlcpc::new("probe")
        .args(&["--encoder", s(&enc)])
        .data(&lab)
        .fails();
    assert!(e.contains("shape"), "{e}");
    // Review 3, N10: a Python environment is refused before Python starts (no true
    // state to record), and the message says why.
    let e = Rlcpc::new("record --env gymnasium:CartPole-v1 --steps 10")
        .out(&dir.path().join("gym"))
        .fails_with(&["gymnasium:CartPole-v1", "true state"]);
    assert!(!e.contains("python3"), "{e}");
}
