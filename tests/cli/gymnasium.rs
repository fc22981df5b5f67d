//! `rlcpc train` on `gymnasium:` environments: seeded sync runs repeat, a resumed run
//! starts new episodes, and an environment that raises stops the run naming the worker,
//! the environment and the step, with the last checkpoint kept.

use crate::common::gymnasium_python;
use crate::support::{s, Rlcpc};

fn train(py: &str, id: &str) -> Rlcpc {
    Rlcpc::new("train --quiet")
        .set("env.id", format!("\"{id}\""))
        .set("env.python", format!("\"{py}\""))
        .set("env.num_envs", 4)
        .set("run.workers", 2)
        .set("run.target_return", 0)
}

fn metrics(dir: &std::path::Path) -> String {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            // Everything but the wall-clock fields.
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            v.as_object_mut()
                .unwrap()
                .retain(|k, _| !k.starts_with("time/") && !k.contains("per_sec") && k != "wall");
            v.to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
#[cfg_attr(
    not(rlcpc_gymnasium),
    ignore = "needs a Python with Gymnasium: set RLCPC_TEST_PYTHON (or activate a virtual environment) and rebuild"
)]
fn seeded_sync_runs_on_gymnasium_cartpole_repeat_and_resume_with_new_episodes() {
    let Some(py) = gymnasium_python() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    for dir in [&a, &b] {
        let out = train(&py, "gymnasium:CartPole-v1")
            .set("run.total_steps", 4000)
            .set("run.log_every", 10)
            .out(dir)
            .ok();
        assert!(out.contains("done after 4000 env steps"), "{out}");
    }
    let (ma, mb) = (metrics(&a), metrics(&b));
    assert!(ma.contains("rollout/ep_rew_mean"), "{ma}");
    assert_eq!(ma, mb, "two runs with the same seed");
    let out = Rlcpc::new("train --quiet --resume")
        .out(&a)
        .set("run.total_steps", 6000)
        .ok();
    assert!(
        out.contains("cannot be restored") && out.contains("done after 6000 env steps"),
        "{out}"
    );
}

#[test]
#[cfg_attr(
    not(rlcpc_gymnasium),
    ignore = "needs a Python with Gymnasium: set RLCPC_TEST_PYTHON (or activate a virtual environment) and rebuild"
)]
fn an_environment_that_raises_stops_the_run_naming_worker_env_and_step() {
    let Some(py) = gymnasium_python() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let id = "gymnasium:rlcpc_test_envs:RlcpcRaises-v0";
    // Every environment raises on its 400th step, in update 50 (unrolls of 8 steps); the
    // checkpoints of updates 10 to 40 are written before.
    let e = train(&py, id)
        .set("env.options.fail_at", 400)
        .set("model.encoder", "\"mlp\"")
        .set("algo.unroll", 8)
        .set("run.checkpoint_every", 10)
        .set("run.total_steps", 100000)
        .out(tmp.path())
        .fails();
    assert!(
        e.contains("actor worker")
            && e.contains(id)
            && e.contains("at step 400")
            && e.contains("the simulator broke"),
        "{e}"
    );
    let ck = tmp.path().join("checkpoint.safetensors");
    assert!(ck.is_file(), "the last checkpoint is kept:\n{e}");
    let out = Rlcpc::new("eval --episodes 2")
        .args(&["--checkpoint", s(&ck)])
        .ok();
    assert!(out.contains("mean return"), "{out}");
}
