//! `gymnasium:` environments against Gymnasium itself: the recorded CartPole-v1 fixture
//! (`envs/tests/fixtures/cartpole_gymnasium.json`), the native CartPole stepped from the same
//! state, same-step auto-reset in a VecEnv, seeded resets, and the errors of bad input.
//!
//! They need a Python with Gymnasium ([`common::gymnasium_python`]).

use rlcpc_envs::{make, CartPole, CartPoleState, Env, EnvConfig, TimeLimit, VecEnv};
use serde_json::Value;

mod common;

fn python() -> Option<String> {
    common::gymnasium_python()
}

fn cfg(id: &str, python: &str) -> EnvConfig {
    EnvConfig {
        python: Some(python.into()),
        ..EnvConfig::new(id)
    }
}

fn error(cfg: &EnvConfig) -> String {
    match make(cfg) {
        Ok(_) => panic!("{} was made", cfg.id),
        Err(e) => e.to_string(),
    }
}

#[test]
#[cfg_attr(
    not(rlcpc_gymnasium),
    ignore = "needs a Python with Gymnasium: set RLCPC_TEST_PYTHON (or activate a virtual environment) and rebuild"
)]
fn cartpole_through_gymnasium_repeats_the_recorded_trajectory_and_the_native_env() {
    let Some(py) = python() else { return };
    let fx: Value = serde_json::from_str(include_str!(
        "../envs/tests/fixtures/cartpole_gymnasium.json"
    ))
    .unwrap();
    // The last trajectory starts from reset(seed=3) and balances to the 500-step limit.
    let tr = fx["trajectories"].as_array().unwrap().last().unwrap();
    let start: Vec<f64> = serde_json::from_value(tr["start"].clone()).unwrap();
    let mut env = make(&cfg("gymnasium:CartPole-v1", &py)).unwrap();
    assert_eq!(
        env.observation_space(),
        make(&EnvConfig::new("CartPole-v1"))
            .unwrap()
            .observation_space()
    );
    let mut obs = [0f32; 4];
    env.reset_into(Some(3), &mut obs);
    assert_eq!(
        obs.to_vec(),
        start.iter().map(|&x| x as f32).collect::<Vec<_>>()
    );
    let mut native = TimeLimit::new(
        Box::new({
            let mut cp = CartPole::new();
            cp.state = CartPoleState {
                x: start[0],
                x_dot: start[1],
                theta: start[2],
                theta_dot: start[3],
            };
            cp
        }),
        "CartPole-v1",
        500,
    );
    let mut native_obs = [0f32; 4];
    let steps = tr["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 500);
    for (i, st) in steps.iter().enumerate() {
        let a = st["action"].as_u64().unwrap() as usize;
        let o = env.step_into(a, &mut obs).unwrap();
        let n = native.step_into(a, &mut native_obs).unwrap();
        let want: Vec<f32> = serde_json::from_value(st["obs"].clone()).unwrap();
        assert_eq!(obs.to_vec(), want, "observation at step {i}");
        for (g, w) in native_obs.iter().zip(&want) {
            assert!(
                (g - w).abs() <= 1e-6 * w.abs().max(1.0),
                "native at step {i}"
            );
        }
        assert_eq!(o, n, "reward and flags at step {i}, against the native env");
        assert_eq!(o.reward, st["reward"].as_f64().unwrap() as f32);
        assert_eq!(
            o.terminated,
            st["terminated"].as_bool().unwrap(),
            "step {i}"
        );
        assert_eq!(o.truncated, st["truncated"].as_bool().unwrap(), "step {i}");
    }
}

#[test]
#[cfg_attr(
    not(rlcpc_gymnasium),
    ignore = "needs a Python with Gymnasium: set RLCPC_TEST_PYTHON (or activate a virtual environment) and rebuild"
)]
fn a_vec_env_of_gymnasium_envs_resets_in_the_same_step_and_repeats_from_its_seed() {
    let Some(py) = python() else { return };
    let run = || {
        let envs = (0..3)
            .map(|_| make(&cfg("gymnasium:CartPole-v1", &py)).unwrap())
            .collect();
        let mut v = VecEnv::new(envs).unwrap();
        v.reset(11, 0);
        let mut trace = v.obs().to_vec();
        let mut ends = 0;
        for t in 0..200 {
            // Always push right: episodes end after a few dozen steps.
            let before = v.obs().to_vec();
            let s = v.step(&[1, 1, 1]).unwrap().clone();
            for i in 0..3 {
                if s.terminated[i] || s.truncated[i] {
                    ends += 1;
                    // The final observation is the one the step produced, past the
                    // threshold; the current one is a fresh start near zero.
                    assert!(
                        v.final_obs(i)[2].abs() > 0.2,
                        "step {t}: {:?}",
                        v.final_obs(i)
                    );
                    assert!(v.obs()[i * 4 + 2].abs() < 0.05);
                    assert_ne!(v.final_obs(i), &before[i * 4..i * 4 + 4]);
                }
            }
            trace.extend_from_slice(v.obs());
        }
        (trace, ends, v.drain_episodes().count())
    };
    let (a, ends, episodes) = run();
    assert!(ends >= 6, "{ends} episodes ended");
    assert_eq!(ends, episodes);
    assert_eq!(a, run().0, "the same seed gives the same trajectories");
}

/// A trace of `steps` steps of `venv` from `reset(seed)`, with actions drawn from the
/// step number: every observation, final observation, reward and flag.
fn trace(venv: &mut VecEnv, seed: u64, steps: usize, n_actions: usize) -> Vec<f32> {
    let n = venv.len();
    venv.reset(seed, 0);
    let mut out = venv.obs().to_vec();
    for t in 0..steps {
        let actions: Vec<usize> = (0..n)
            .map(|i| (t * 7 + i * 3 + t / 5) % n_actions)
            .collect();
        let s = venv.step(&actions).unwrap().clone();
        out.extend_from_slice(venv.obs());
        for i in 0..n {
            out.extend([
                s.rewards[i],
                s.terminated[i] as u8 as f32,
                s.truncated[i] as u8 as f32,
            ]);
            if s.terminated[i] || s.truncated[i] {
                out.extend_from_slice(venv.final_obs(i));
            }
        }
    }
    out
}

/// The vector bridge (one Python process, a `gymnasium.vector` env, observations through
/// shared memory) gives exactly what one process per environment gives over its pipe:
/// each environment's observations, final observations at the same-step auto-reset,
/// rewards and flags, from the same seeds. For CartPole (float32, auto-resets every few
/// dozen steps), uint8 images with an offset action space, MultiDiscrete one-hot, and an
/// environment that a vector env finds awkward (float64 observations of a float32 Box in
/// one buffer refilled in place, so that a final observation kept by reference would be
/// overwritten by the reset; infos that differ between environments).
#[test]
#[cfg_attr(
    not(rlcpc_gymnasium),
    ignore = "needs a Python with Gymnasium: set RLCPC_TEST_PYTHON (or activate a virtual environment) and rebuild"
)]
fn a_vector_env_in_shared_memory_repeats_one_process_per_environment_exactly() {
    use rlcpc_envs::{make_vec, Vector};
    let Some(py) = python() else { return };
    for (id, n_actions, steps) in [
        ("gymnasium:CartPole-v1", 2, 120),
        ("gymnasium:rlcpc_test_envs:RlcpcImage-v0", 3, 23),
        ("gymnasium:rlcpc_test_envs:RlcpcCounts-v0", 2, 20),
        // float64 in a float32 Box, one buffer refilled in place, infos that differ.
        ("gymnasium:rlcpc_test_envs:RlcpcAwkward-v0", 2, 13),
    ] {
        let mut c = cfg(id, &py);
        c.vector = Vector::None;
        let mut pipe = make_vec(&c, 3).unwrap();
        let want = trace(&mut pipe, 11, steps, n_actions);
        let ends = pipe.drain_episodes().count();
        assert!(ends >= 3, "{id}: {ends} episodes ended");
        for vector in [Vector::Sync, Vector::Async] {
            c.vector = vector;
            let mut shm = make_vec(&c, 3).unwrap();
            assert_eq!(shm.observation_space(), pipe.observation_space(), "{id}");
            assert_eq!(shm.action_space(), pipe.action_space(), "{id}");
            let got = trace(&mut shm, 11, steps, n_actions);
            assert_eq!(got.len(), want.len(), "{id}, {vector:?}");
            assert!(got == want, "{id}, {vector:?}: the traces differ");
            assert_eq!(shm.drain_episodes().count(), ends, "{id}, {vector:?}");
            // Another seed, another trajectory (Counts draws nothing).
            if !id.ends_with("Counts-v0") {
                assert!(trace(&mut shm, 12, steps, n_actions) != want, "{id}");
            }
        }
    }
}

/// An exception in one environment of a vector names that environment (its index among
/// the run's, the worker's offset included), the step and the exception; sync and async.
#[test]
#[cfg_attr(
    not(rlcpc_gymnasium),
    ignore = "needs a Python with Gymnasium: set RLCPC_TEST_PYTHON (or activate a virtual environment) and rebuild"
)]
fn a_crash_in_one_environment_of_a_vector_names_it() {
    use rlcpc_envs::{make_vec, stream_seed, Vector};
    let Some(py) = python() else { return };
    let id = "gymnasium:rlcpc_test_envs:RlcpcRaises-v0";
    for vector in [Vector::Sync, Vector::Async] {
        // The worker's environments are 4..7 of the run's; the one at 6 breaks.
        let mut c = cfg(id, &py);
        c.vector = vector;
        c.options
            .insert("fail_seed".into(), stream_seed(5, 6).into());
        let mut v = make_vec(&c, 3).unwrap();
        v.reset(5, 4);
        v.step(&[0, 1, 2]).unwrap();
        v.step(&[0, 1, 2]).unwrap();
        let e = v.step(&[0, 1, 2]).unwrap_err().to_string();
        assert!(
            e.contains(id)
                && e.contains("(env 6)")
                && e.contains("at step 3")
                && e.contains("RuntimeError: the simulator broke"),
            "{vector:?}: {e}"
        );
    }
    // An observation of the wrong shape in one environment names it too (sync).
    let mut c = cfg("gymnasium:rlcpc_test_envs:RlcpcBadObs-v0", &py);
    c.vector = Vector::Sync;
    let mut v = make_vec(&c, 2).unwrap();
    v.reset(0, 0);
    v.step(&[0, 0]).unwrap();
    let e = v.step(&[0, 0]).unwrap_err().to_string();
    assert!(
        e.contains("(env 0)")
            && e.contains("at step 2")
            && e.contains("does not match the observation space"),
        "{e}"
    );
    // A non-finite observation is named with its environment and value.
    let mut c = cfg("gymnasium:rlcpc_test_envs:RlcpcNonFinite-v0", &py);
    c.options.insert("mode".into(), "inf_obs".into());
    let mut v = make_vec(&c, 2).unwrap();
    v.reset(0, 0);
    v.step(&[0, 0]).unwrap();
    v.step(&[0, 0]).unwrap();
    let e = v.step(&[0, 0]).unwrap_err().to_string();
    assert!(
        e.contains("(env 0)") && e.contains("at step 3") && e.contains("2 non-finite values"),
        "{e}"
    );
}

/// The Python process of a vector killed by a signal is named with the signal, and
/// nothing of it is left behind: not its environments' helper processes, nor the
/// shared-memory buffer's name.
#[test]
#[cfg_attr(
    not(rlcpc_gymnasium),
    ignore = "needs a Python with Gymnasium: set RLCPC_TEST_PYTHON (or activate a virtual environment) and rebuild"
)]
fn a_vector_killed_by_a_signal_is_named_and_leaves_nothing_behind() {
    use rlcpc_envs::{make_vec, Vector};
    let Some(py) = python() else { return };
    let shm_before = shm_files();
    for vector in [Vector::Sync, Vector::Async] {
        let pids = tempfile::tempdir().unwrap();
        let mut c = cfg("gymnasium:rlcpc_test_envs:RlcpcHang-v0", &py);
        c.vector = vector;
        c.options.insert("mode".into(), "never".into());
        c.options
            .insert("pid_dir".into(), pids.path().to_str().unwrap().into());
        let mut v = make_vec(&c, 2).unwrap();
        v.reset(1, 0);
        v.step(&[0, 1]).unwrap();
        let listed = |prefix: &str| -> Vec<i32> {
            std::fs::read_dir(pids.path())
                .unwrap()
                .filter_map(|e| {
                    let name = e.unwrap().file_name().to_string_lossy().into_owned();
                    name.strip_prefix(prefix).map(|p| p.parse().unwrap())
                })
                .collect()
        };
        let (bridges, helpers) = (listed("bridge-"), listed("helper-"));
        // Sync: the bridge's environments (one pid); async: one worker each.
        assert!(
            !bridges.is_empty() && helpers.len() >= 2,
            "{bridges:?} {helpers:?}"
        );
        // SAFETY: kill(2) of processes this test's environments started.
        for &pid in &bridges {
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        let e = v.step(&[0, 1]).unwrap_err().to_string();
        // Sync: the bridge itself was killed. Async: its workers were, and the vector
        // env says so.
        let said = match vector {
            Vector::Sync => e.contains("killed by signal 9"),
            _ => e.contains("(in the Python process of 2 environments"),
        };
        assert!(e.contains("RlcpcHang-v0") && said, "{vector:?}: {e}");
        drop(v);
        for pid in helpers {
            let mut gone = false;
            for _ in 0..100 {
                // SAFETY: signal 0 only asks whether the process exists.
                if unsafe { libc::kill(pid, 0) } != 0 {
                    gone = true;
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            assert!(gone, "{vector:?}: helper {pid} outlived its environment");
        }
    }
    assert_eq!(shm_files(), shm_before, "shared-memory buffers left behind");
}

/// rlcpc's shared-memory buffers in `/dev/shm` now.
fn shm_files() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir("/dev/shm")
        .map(|d| {
            d.filter_map(|e| Some(e.ok()?.file_name().to_string_lossy().into_owned()))
                .filter(|n| n.starts_with(&format!("rlcpc-{}-", std::process::id())))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
#[cfg_attr(
    not(rlcpc_gymnasium),
    ignore = "needs a Python with Gymnasium: set RLCPC_TEST_PYTHON (or activate a virtual environment) and rebuild"
)]
fn uint8_images_and_offset_discrete_actions_come_through() {
    let Some(py) = python() else { return };
    let mut env = make(&cfg("gymnasium:rlcpc_test_envs:RlcpcImage-v0", &py)).unwrap();
    assert_eq!(env.action_space(), rlcpc_envs::Space::Discrete(3));
    match env.observation_space() {
        rlcpc_envs::Space::Box { low, high, shape } => {
            assert_eq!(shape, vec![6, 8, 3]);
            assert!(low.iter().all(|&x| x == 0.0) && high.iter().all(|&x| x == 255.0));
        }
        s => panic!("{s:?}"),
    }
    let mut obs = vec![0f32; 6 * 8 * 3];
    env.reset_into(Some(1), &mut obs);
    // rlcpc's action 0 is the env's first action (start = 1): pixels 50 * 1 + t.
    for t in 1..=5 {
        let a = t % 3;
        let o = env.step_into(a, &mut obs).unwrap();
        assert!(
            obs.iter().all(|&x| x == (50 * (a + 1) + t) as f32),
            "step {t}"
        );
        assert_eq!(o.reward, (a + 1) as f32);
        assert_eq!(o.terminated, t == 5);
    }
    // A continuous action space is refused, naming it.
    let e = error(&cfg("gymnasium:Pendulum-v1", &py));
    assert!(
        e.contains("gymnasium:Pendulum-v1") && e.contains("action space") && e.contains("Discrete"),
        "{e}"
    );
}

#[test]
#[cfg_attr(
    not(rlcpc_gymnasium),
    ignore = "needs a Python with Gymnasium: set RLCPC_TEST_PYTHON (or activate a virtual environment) and rebuild"
)]
fn what_an_environment_prints_does_not_reach_the_stream() {
    let Some(py) = python() else { return };
    let mut env = make(&cfg("gymnasium:rlcpc_test_envs:RlcpcChatty-v0", &py)).unwrap();
    let mut obs = vec![0f32; 6 * 8 * 3];
    for episode in 0..2 {
        env.reset_into(Some(episode), &mut obs);
        for t in 1..=5 {
            let o = env.step_into(1, &mut obs).unwrap();
            assert!(obs.iter().all(|&x| x == (100 + t) as f32), "step {t}");
            assert_eq!(o.terminated, t == 5);
        }
    }
}

#[test]
#[cfg_attr(
    not(rlcpc_gymnasium),
    ignore = "needs a Python with Gymnasium: set RLCPC_TEST_PYTHON (or activate a virtual environment) and rebuild"
)]
fn multi_discrete_observations_arrive_one_hot() {
    let Some(py) = python() else { return };
    let mut env = make(&cfg("gymnasium:rlcpc_test_envs:RlcpcCounts-v0", &py)).unwrap();
    assert_eq!(env.observation_space().shape(), vec![7]);
    let mut obs = vec![0f32; 7];
    env.reset_into(Some(0), &mut obs);
    assert_eq!(obs, [1., 0., 0., 1., 0., 0., 0.]);
    for t in 1..=6usize {
        env.step_into(0, &mut obs).unwrap();
        let mut want = vec![0f32; 7];
        want[t % 3] = 1.0;
        want[3 + t % 4] = 1.0;
        assert_eq!(obs, want, "step {t}");
    }
}

#[test]
#[cfg_attr(
    not(rlcpc_gymnasium),
    ignore = "needs a Python with Gymnasium: set RLCPC_TEST_PYTHON (or activate a virtual environment) and rebuild"
)]
fn an_environment_that_raises_or_breaks_its_space_is_named_with_the_step() {
    let Some(py) = python() else { return };
    // Review 3, N7: non-finite rewards and observations (inf passes an unbounded Box; a
    // float64 1e300 becomes inf as float32) are named with the value and the step.
    for (id, mode, step, needle) in [
        ("RlcpcRaises-v0", "", 3, "the simulator broke"),
        (
            "RlcpcBadObs-v0",
            "",
            2,
            "does not match the observation space",
        ),
        ("RlcpcNonFinite-v0", "nan_reward", 3, "gave the reward NaN"),
        (
            "RlcpcNonFinite-v0",
            "inf_obs",
            3,
            "2 non-finite values (the first at index 1: inf",
        ),
        (
            "RlcpcNonFinite-v0",
            "big_obs",
            3,
            "1 non-finite value (the first at index 0: inf",
        ),
    ] {
        let id = format!("gymnasium:rlcpc_test_envs:{id}");
        let mut c = cfg(&id, &py);
        if !mode.is_empty() {
            c.options.insert("mode".into(), mode.into());
        }
        let mut obs = vec![0f32; if mode.is_empty() { 6 * 8 * 3 } else { 4 }];
        let mut env = make(&c).unwrap();
        env.reset_into(Some(0), &mut obs);
        for t in 1..step {
            env.step_into(0, &mut obs)
                .unwrap_or_else(|e| panic!("{id} step {t}: {e}"));
        }
        let e = env.step_into(0, &mut obs).unwrap_err().to_string();
        assert!(
            e.contains(&id) && e.contains(&format!("at step {step}")) && e.contains(needle),
            "{e}"
        );
        // The process still answers: the next episode runs.
        env.reset_into(None, &mut obs);
        env.step_into(0, &mut obs).unwrap();
    }
}

#[test]
#[cfg_attr(
    not(rlcpc_gymnasium),
    ignore = "needs a Python with Gymnasium: set RLCPC_TEST_PYTHON (or activate a virtual environment) and rebuild"
)]
fn bad_environments_are_named_with_what_python_said() {
    let Some(py) = python() else { return };
    let e = error(&cfg("gymnasium:NoSuchEnv-v0", &py));
    assert!(
        e.contains("gymnasium:NoSuchEnv-v0") && e.contains("NoSuchEnv"),
        "{e}"
    );
    let e = error(&cfg("gymnasium:no_such_module:Env-v0", &py));
    assert!(e.contains("no_such_module"), "{e}");
    let mut c = cfg("gymnasium:CartPole-v1", &py);
    c.options.insert("no_such_kwarg".into(), 1.into());
    let e = error(&c);
    assert!(e.contains("no_such_kwarg"), "{e}");
    let e = error(&cfg("gymnasium:CartPole-v1", "/no/such/python"));
    assert!(
        e.contains("/no/such/python") && e.contains("env.python"),
        "{e}"
    );
    let mut c = cfg("gymnasium:CartPole-v1", &py);
    c.wrappers = vec!["fancy".into()];
    let e = error(&c);
    assert!(e.contains("env.wrappers") && e.contains("fancy"), "{e}");
    // Options of gymnasium: environments only.
    let e = error(&cfg("CartPole-v1", &py));
    assert!(e.contains("env.python"), "{e}");
    // Review 3, N4 and N5: spaces too large or empty are refused when the environment
    // is made, naming the space and the bound.
    for (mode, needle) in [
        (
            "actions",
            "Discrete(1000000000): rlcpc's agents take 1 to 65536 actions",
        ),
        ("empty", "0 values per observation"),
    ] {
        let mut c = cfg("gymnasium:rlcpc_test_envs:RlcpcSized-v0", &py);
        c.options.insert("mode".into(), mode.into());
        let e = error(&c);
        assert!(
            e.contains("RlcpcSized-v0") && e.contains(needle),
            "{mode}: {e}"
        );
    }
}

#[test]
#[cfg_attr(
    not(rlcpc_gymnasium),
    ignore = "needs a Python with Gymnasium: set RLCPC_TEST_PYTHON (or activate a virtual environment) and rebuild"
)]
fn an_environment_killed_by_a_signal_is_named_with_the_signal() {
    // Review 3, N10: SIGKILL (what the out-of-memory killer sends) was "stopped answering
    // (failed to fill whole buffer; its messages are above)", with no messages above.
    let Some(py) = python() else { return };
    let pids = tempfile::tempdir().unwrap();
    let mut c = cfg("gymnasium:rlcpc_test_envs:RlcpcHang-v0", &py);
    c.options.insert("mode".into(), "never".into());
    c.options
        .insert("pid_dir".into(), pids.path().to_str().unwrap().into());
    let mut env = make(&c).unwrap();
    let mut obs = [0f32; 2];
    env.reset_into(Some(1), &mut obs);
    env.step_into(0, &mut obs).unwrap();
    for e in std::fs::read_dir(pids.path()).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        if let Some(pid) = name.strip_prefix("bridge-") {
            // SAFETY: kill(2) of the process this test's environment started.
            assert_eq!(
                unsafe { libc::kill(pid.parse().unwrap(), libc::SIGKILL) },
                0
            );
        }
    }
    let e = env.step_into(0, &mut obs).unwrap_err().to_string();
    assert!(
        e.contains("RlcpcHang-v0")
            && e.contains("at step 2")
            && e.contains("killed by signal 9 (possibly by the out-of-memory killer)"),
        "{e}"
    );
}

/// `minigrid-onehot` gives the `minigrid` view as one-hot codes: for the same seed and
/// actions, every cell of the 7×7×20 view has one object, one colour and one state code
/// set, and they are the raw 7×7×3 view's indices (11 objects, 6 colours, 3 states).
#[test]
#[cfg_attr(
    not(rlcpc_gymnasium),
    ignore = "needs a Python with Gymnasium: set RLCPC_TEST_PYTHON (or activate a virtual environment) and rebuild"
)]
fn the_one_hot_minigrid_view_codes_the_raw_view() {
    let Some(py) = python() else { return };
    let has = std::process::Command::new(&py)
        .args(["-c", "import minigrid"])
        .status()
        .is_ok_and(|s| s.success());
    if !has {
        assert!(
            std::env::var_os("CI").is_none(),
            "{py} lacks minigrid (.ci/run installs it)"
        );
        eprintln!("skipped: {py} lacks minigrid");
        return;
    }
    let with = |wrapper: &str| EnvConfig {
        wrappers: vec![wrapper.into()],
        ..cfg("gymnasium:minigrid:MiniGrid-MemoryS7-v0", &py)
    };
    let mut raw = make(&with("minigrid")).unwrap();
    let mut hot = make(&with("minigrid-onehot")).unwrap();
    assert_eq!(raw.observation_space().shape(), vec![7, 7, 3]);
    assert_eq!(hot.observation_space().shape(), vec![7, 7, 20]);
    let (mut r, mut h) = (vec![0f32; 147], vec![0f32; 980]);
    let mut objects = std::collections::BTreeSet::new();
    for seed in 0..3u64 {
        raw.reset_into(Some(seed), &mut r);
        hot.reset_into(Some(seed), &mut h);
        // Turn round (the cue is behind the agent at the start), then walk on.
        for t in 0..12 {
            for (cell, (r, h)) in r.chunks(3).zip(h.chunks(20)).enumerate() {
                assert!(
                    h.iter().all(|&x| x == 0.0 || x == 1.0),
                    "seed {seed} step {t}"
                );
                for (part, (lo, hi)) in [(0, 11), (11, 17), (17, 20)].into_iter().enumerate() {
                    let set: Vec<usize> = (lo..hi).filter(|&i| h[i] == 1.0).collect();
                    assert_eq!(
                        set,
                        [lo + r[part] as usize],
                        "seed {seed} step {t} cell {cell} part {part}: raw {r:?}"
                    );
                }
                objects.insert(r[0] as usize);
            }
            let a = if t < 2 { 0 } else { 2 };
            let (o, p) = (
                raw.step_into(a, &mut r).unwrap(),
                hot.step_into(a, &mut h).unwrap(),
            );
            assert_eq!((o.reward, o.terminated), (p.reward, p.terminated));
        }
    }
    // Walls (2), floor (1) and, behind the start, the cue (a key 5 or a ball 6) were seen.
    assert!(
        objects.contains(&2) && (objects.contains(&5) || objects.contains(&6)),
        "{objects:?}"
    );
}

/// The presets of Python environments (`atari`: Pong through ale-py, IMPALA's conv
/// encoder on 84×84×4 frames; `minigrid-memory`: MiniGrid-MemoryS7 with LSTM + CPC)
/// train with their own settings, with and without the auxiliary head: episodes of
/// MiniGrid end and are counted, and the resolved config keeps the preset's protocol
/// (sticky actions, clipped rewards). `.ci/run` installs ale-py, minigrid and OpenCV;
/// elsewhere a Python without them skips this test, saying so.
#[test]
#[cfg_attr(
    not(rlcpc_gymnasium),
    ignore = "needs a Python with Gymnasium: set RLCPC_TEST_PYTHON (or activate a virtual environment) and rebuild"
)]
fn the_atari_and_minigrid_presets_train_with_and_without_the_head() {
    let Some(py) = python() else { return };
    let has = std::process::Command::new(&py)
        .args(["-c", "import ale_py, minigrid, cv2"])
        .status()
        .is_ok_and(|s| s.success());
    if !has {
        assert!(
            std::env::var_os("CI").is_none(),
            "{py} lacks ale-py, minigrid or opencv (.ci/run installs them)"
        );
        eprintln!("skipped: {py} lacks ale-py, minigrid or opencv-python-headless");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    for (preset, steps, aux) in [
        ("atari", "200", "none"),
        ("atari", "200", "cpc"),
        ("minigrid-memory", "4096", "cpc"),
        ("minigrid-memory", "1024", "none"),
    ] {
        let out = t.path().join(format!("{preset}-{aux}"));
        let (stdout, stderr) = common::ok_split(&[
            "train",
            "--config",
            preset,
            "--aux",
            aux,
            "--quiet",
            "--out",
            out.to_str().unwrap(),
            "--set",
            &format!("env.python=\"{py}\""),
            "--set",
            "env.num_envs=4",
            "--set",
            &format!("run.total_steps={steps}"),
        ]);
        let said = format!("{stdout}{stderr}");
        assert!(said.contains("done after"), "{preset}: {said}");
        let cfg = rlcpc::config::Config::load(Some(&out.join("config.toml")), &[]).unwrap();
        assert_eq!(cfg.aux.kind().as_str(), aux);
        if preset == "atari" {
            assert_eq!(cfg.env.wrappers, ["atari"]);
            assert_eq!(cfg.algo.reward_clip, 1.0);
            assert_eq!(
                cfg.env
                    .options
                    .get("repeat_action_probability")
                    .map(|v| v.to_string()),
                Some("0.25".into())
            );
        } else if aux == "cpc" {
            // 4,096 steps of MiniGrid-MemoryS7 (at most 245 steps an episode) end episodes.
            assert!(!said.contains(" 0 episodes"), "{said}");
        }
    }
}
