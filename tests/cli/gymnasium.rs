//! `rlcpc train` on `gymnasium:` environments: seeded sync runs repeat, a resumed run
//! starts new episodes, and an environment that raises stops the run naming the worker,
//! the environment and the step, with the last checkpoint kept.

use crate::common::gymnasium_python;
use crate::support::{finish_within, s, text, Rlcpc};

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

/// A `RlcpcHang-v0` run (see rlcpc_test_envs.py) that writes the pids of its Python
/// processes and their helpers into `pids`.
fn hang_run(py: &str, mode: &str, pids: &std::path::Path) -> Rlcpc {
    train(py, "gymnasium:rlcpc_test_envs:RlcpcHang-v0")
        .set("env.options.mode", format!("\"{mode}\""))
        .set("env.options.at", 50)
        .set("env.options.pid_dir", format!("\"{}\"", s(pids)))
        .set("model.encoder", "\"mlp\"")
        .set("algo.unroll", 8)
        .set("run.log_every", 1)
}

/// The processes that the environments of a [`hang_run`] started (bridges and helpers).
fn started(pids: &std::path::Path) -> Vec<i32> {
    std::fs::read_dir(pids)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            name.split_once('-')?.1.parse().ok()
        })
        .collect()
}

/// Whether `pid` runs (a zombie that nobody reaped has ended).
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|st| {
        st.rsplit(')')
            .next()
            .is_some_and(|r| !r.trim_start().starts_with('Z'))
    })
}

/// Every process in `pids` has ended, within 5 s (the kill is asynchronous).
fn none_left(pids: &std::path::Path, what: &str) {
    let all = started(pids);
    assert!(all.len() >= 2, "{what}: no environment started: {all:?}");
    let t0 = std::time::Instant::now();
    while all.iter().any(|&p| alive(p)) {
        if t0.elapsed().as_secs() >= 5 {
            let left: Vec<_> = all.iter().filter(|&&p| alive(p)).collect();
            // SAFETY: kill(2) of processes this test's run started; leaves nothing behind.
            left.iter().for_each(|&&p| unsafe {
                libc::kill(p, libc::SIGKILL);
            });
            panic!("{what}: processes left behind: {left:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Waits (at most 60 s) until the run in `out` logged its first metrics.
fn wait_for_metrics(out: &std::path::Path, child: &mut std::process::Child, log: &std::path::Path) {
    let t0 = std::time::Instant::now();
    while std::fs::metadata(out.join("metrics.jsonl")).map_or(true, |m| m.len() == 0) {
        if t0.elapsed().as_secs() > 60 || child.try_wait().unwrap().is_some() {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the run never logged:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// The counters (`updates`, `env_steps`) of the checkpoint in `out`, from its header.
fn checkpoint_counters(out: &std::path::Path) -> serde_json::Value {
    let bytes = std::fs::read(out.join("checkpoint.safetensors")).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    serde_json::from_str(header["__metadata__"]["rlcpc.counters"].as_str().unwrap()).unwrap()
}

#[test]
#[cfg_attr(
    not(rlcpc_gymnasium),
    ignore = "needs a Python with Gymnasium: set RLCPC_TEST_PYTHON (or activate a virtual environment) and rebuild"
)]
fn n1_an_environment_that_stops_answering_ends_the_run_within_env_step_timeout() {
    let Some(py) = gymnasium_python() else { return };
    // Hung in a step (update 7, after 6 finished), in its first reset, and while made.
    for (mode, needles) in [
        (
            "step",
            &[
                "actor worker",
                "(env ",
                "failed at step 50",
                // Two environments per worker: 2 s each.
                "did not answer within 4 s (env.step_timeout, 2 s, for each of its 2 environments)",
                "last finished update (6, 192 env steps)",
            ][..],
        ),
        (
            "reset",
            &[
                "reset failed",
                "did not answer within 4 s (env.step_timeout, 2 s, for each of its 2 environments)",
            ][..],
        ),
        (
            "make",
            // The first environment, made alone for its spaces, is the one that hangs.
            &["did not make the environment within 2 s (env.step_timeout)"][..],
        ),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let (out, pids) = (tmp.path().join("run"), tmp.path().join("pids"));
        std::fs::create_dir(&pids).unwrap();
        // A worker's process of two environments waits 2 s for each, then is ended.
        let o = hang_run(&py, mode, &pids)
            .set("env.step_timeout", 2)
            .set("run.total_steps", 100000)
            .out(&out)
            .output_within(40);
        let e = text(&o);
        assert_eq!(o.status.code(), Some(1), "{mode}: {e}");
        for n in needles {
            assert!(e.contains(n), "{mode}: no '{n}' in:\n{e}");
        }
        if mode == "step" {
            assert_eq!(checkpoint_counters(&out)["updates"], 6, "{e}");
        }
        none_left(&pids, mode);
    }
}

#[test]
#[cfg_attr(
    not(rlcpc_gymnasium),
    ignore = "needs a Python with Gymnasium: set RLCPC_TEST_PYTHON (or activate a virtual environment) and rebuild"
)]
fn n1_ctrl_c_while_an_environment_hangs_checkpoints_and_a_second_one_leaves_nothing() {
    let Some(py) = gymnasium_python() else { return };
    for signals in [1, 2] {
        let tmp = tempfile::tempdir().unwrap();
        let (out, pids) = (tmp.path().join("run"), tmp.path().join("pids"));
        let log = tmp.path().join("log");
        std::fs::create_dir(&pids).unwrap();
        // The default env.step_timeout (120 s): only the stop request can end the wait.
        let mut child = hang_run(&py, "step", &pids)
            .set("run.total_steps", 100000)
            .out(&out)
            .spawn(&log);
        wait_for_metrics(&out, &mut child, &log);
        // The environments hang at their 50th step, in update 7.
        std::thread::sleep(std::time::Duration::from_millis(1500));
        let t0 = std::time::Instant::now();
        for _ in 0..signals {
            // SAFETY: kill(2) on this test's child process.
            assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
            std::thread::sleep(std::time::Duration::from_millis(300));
        }
        let o = finish_within(&mut child, &log, 60);
        let t = text(&o);
        assert!(t0.elapsed().as_secs() < 30, "took {:?}:\n{t}", t0.elapsed());
        if signals == 1 {
            assert!(o.status.success(), "{t}");
            assert!(
                t.contains("interrupted after")
                    && t.contains("after the stop request")
                    && t.contains("did not answer within 5 s of the stop request"),
                "{t}"
            );
            assert_eq!(checkpoint_counters(&out)["updates"], 6, "{t}");
        } else {
            assert_eq!(o.status.code(), Some(130), "{t}");
        }
        none_left(&pids, &format!("{signals} interrupt(s)"));
    }
}

#[test]
#[cfg_attr(
    not(rlcpc_gymnasium),
    ignore = "needs a Python with Gymnasium: set RLCPC_TEST_PYTHON (or activate a virtual environment) and rebuild"
)]
fn n3_a_job_wide_sigterm_ends_the_run_with_its_final_checkpoint() {
    let Some(py) = gymnasium_python() else { return };
    // SIGTERM to rlcpc and its Python processes together (Slurm, systemd, docker stop);
    // then, harder, SIGTERM to rlcpc and SIGKILL to its environments.
    for kill_envs in [libc::SIGTERM, libc::SIGKILL] {
        let tmp = tempfile::tempdir().unwrap();
        let (out, pids) = (tmp.path().join("run"), tmp.path().join("pids"));
        let log = tmp.path().join("log");
        std::fs::create_dir(&pids).unwrap();
        let mut child = hang_run(&py, "never", &pids)
            .set("run.total_steps", 100_000_000)
            .set("run.checkpoint_every", 1_000_000)
            .out(&out)
            .spawn(&log);
        wait_for_metrics(&out, &mut child, &log);
        std::thread::sleep(std::time::Duration::from_millis(500));
        // SAFETY: kill(2) on this test's child and the processes it started.
        unsafe {
            let envs = || {
                started(&pids)
                    .into_iter()
                    .for_each(|p| _ = libc::kill(p, kill_envs))
            };
            if kill_envs == libc::SIGTERM {
                // The environments first, as a job-wide stop may deliver it.
                envs();
                assert_eq!(libc::kill(child.id() as i32, libc::SIGTERM), 0);
            } else {
                // The environments die while rlcpc finishes its step after the request.
                assert_eq!(libc::kill(child.id() as i32, libc::SIGTERM), 0);
                std::thread::sleep(std::time::Duration::from_millis(100));
                envs();
            }
        }
        let o = finish_within(&mut child, &log, 60);
        let t = text(&o);
        assert!(o.status.success(), "{t}");
        assert!(t.contains("interrupted after"), "{t}");
        let logged = crate::support::logged(&out, "time/total_timesteps");
        let saved = checkpoint_counters(&out)["env_steps"].as_f64().unwrap();
        assert!(
            saved >= *logged.last().unwrap(),
            "the final checkpoint ({saved} steps) is behind the metrics ({logged:?}):\n{t}"
        );
        none_left(&pids, "sigterm");
    }
}

#[test]
#[cfg_attr(
    not(rlcpc_gymnasium),
    ignore = "needs a Python with Gymnasium: set RLCPC_TEST_PYTHON (or activate a virtual environment) and rebuild"
)]
fn n1_an_async_run_with_one_hung_environment_ends_and_a_hung_close_leaves_nothing() {
    let Some(py) = gymnasium_python() else { return };
    // Async: the other worker reaches the budget; the hung one is released at shutdown.
    let tmp = tempfile::tempdir().unwrap();
    let (out, pids) = (tmp.path().join("run"), tmp.path().join("pids"));
    std::fs::create_dir(&pids).unwrap();
    let o = hang_run(&py, "one_step", &pids)
        .set("run.mode", "\"async\"")
        .set("algo.vtrace", true)
        .set("run.total_steps", 4000)
        .out(&out)
        .output_within(60);
    let t = text(&o);
    assert!(o.status.success() && t.contains("done after"), "{t}");
    assert!(pids.join("hung").exists(), "no environment hung:\n{t}");
    none_left(&pids, "async");
    // An environment whose close() hangs, with a helper process: both end with the run.
    let tmp = tempfile::tempdir().unwrap();
    let (out, pids) = (tmp.path().join("run"), tmp.path().join("pids"));
    std::fs::create_dir(&pids).unwrap();
    let o = hang_run(&py, "close", &pids)
        .set("run.total_steps", 400)
        .out(&out)
        .output_within(60);
    let t = text(&o);
    assert!(o.status.success() && t.contains("done after"), "{t}");
    none_left(&pids, "close");
}

#[test]
#[cfg_attr(
    not(rlcpc_gymnasium),
    ignore = "needs a Python with Gymnasium: set RLCPC_TEST_PYTHON (or activate a virtual environment) and rebuild"
)]
fn envs_score_names_its_interpreter_with_python() {
    // Review 3, N10: `envs score` had no way to name the interpreter.
    let Some(py) = gymnasium_python() else { return };
    let out = Rlcpc::new("envs score gymnasium:CartPole-v1 --episodes 3")
        .args(&["--python", &py])
        .ok();
    assert!(out.contains("mean return"), "{out}");
    let e = Rlcpc::new("envs score gymnasium:CartPole-v1 --episodes 3 --python /no/such/python")
        .fails();
    assert!(e.contains("/no/such/python"), "{e}");
    // Review 3, N7: a NaN reward gave `mean null` with exit 0.
    let e = Rlcpc::new("envs score gymnasium:rlcpc_test_envs:RlcpcNonFinite-v0 --episodes 3")
        .args(&["--python", &py, "--option", "mode=nan_reward"])
        .fails_with(&["RlcpcNonFinite-v0", "at step 3", "reward NaN"]);
    assert!(!e.contains("null"), "{e}");
}

#[test]
#[cfg_attr(
    not(rlcpc_gymnasium),
    ignore = "needs a Python with Gymnasium: set RLCPC_TEST_PYTHON (or activate a virtual environment) and rebuild"
)]
fn a_huge_observation_is_described_briefly_and_its_network_refused_before_it_is_built() {
    // Review 3, N4: a Box of 10^7 floats spent minutes in preflight (its bounds, one per
    // value, were sent as JSON; then its network was built).
    let Some(py) = gymnasium_python() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let t0 = std::time::Instant::now();
    let e = train(&py, "gymnasium:rlcpc_test_envs:RlcpcSized-v0")
        .set("env.options.mode", "\"big\"")
        .out(&tmp.path().join("run"))
        .fails_with(&["'model'", "[3000, 3000]", "weights, more than 268435456"]);
    assert!(t0.elapsed().as_secs() < 30, "took {:?}: {e}", t0.elapsed());
    assert!(!tmp.path().join("run").exists(), "nothing written:\n{e}");
}
