//! `rlcpc train --distributed` under `mpirun` (feature `mpi`; `.ci/run` runs these with
//! OpenMPI on loopback): the distributed sync run equals the threaded run with the same
//! workers and seeds, also after `--resume` (of a distributed or a threaded run); async
//! over MPI trains with V-trace and logs each rank's lag; data-parallel learners keep
//! identical parameters, step on the joint batch's gradient (close to one learner's on
//! the whole batch), equal each other with actor ranks or threads, resume exactly and
//! learn async; a failing worker names itself and its rank; a killed rank ends the job
//! naming it, never a hang; a hung rank stops a sync run naming it; an async run under
//! `--enable-recovery` survives a killed rank; SIGTERM on the launcher checkpoints the
//! learner; layouts the ranks cannot carry are refused.
#![cfg(feature = "mpi")]

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{ok_split, s, text};
use rlcpc::checkpoint::Loaded;

/// The longest any job here may take before it counts as a hang.
const LIMIT: Duration = Duration::from_secs(120);

/// `mpirun -np N rlcpc ARGS` (oversubscribed: this machine has 2 cores; as root where
/// the tests run as root).
fn mpirun(np: usize, args: &[&str]) -> Command {
    mpirun_with(&[], np, args)
}

/// [`mpirun`] with more of mpirun's own flags.
fn mpirun_with(flags: &[&str], np: usize, args: &[&str]) -> Command {
    let mut c = Command::new("mpirun");
    c.args(["--oversubscribe", "-np", &np.to_string()])
        .args(flags)
        .arg(env!("CARGO_BIN_EXE_rlcpc"))
        .args(args)
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .env_remove("RLCPC_INJECT_WORKER_PANIC")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

/// Runs `c` to its end, failing the test (and killing the job) past [`LIMIT`].
fn finish(mut c: Command) -> Output {
    let mut child = c.spawn().expect("mpirun runs (OpenMPI installed?)");
    let start = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if start.elapsed() > LIMIT {
            let _ = child.kill();
            panic!("mpirun still running after {LIMIT:?}: a hang");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("output")
}

fn train_args<'a>(out: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec![
        "train",
        "--quiet",
        "--seed",
        "3",
        "--set",
        "run.log_every=5",
        "--out",
        s(out),
    ];
    a.extend_from_slice(extra);
    a
}

/// metrics.jsonl without its timings.
fn metrics(run: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(l).unwrap();
            v.retain(|k, _| !k.starts_with("time/") || k == "time/total_timesteps");
            serde_json::Value::Object(v)
        })
        .collect()
}

/// Every tensor, the worker states and the counters but for wall time: equal.
fn same_checkpoint(a: &Path, b: &Path) {
    let (x, y) = (
        Loaded::read(&a.join("checkpoint.safetensors")).unwrap(),
        Loaded::read(&b.join("checkpoint.safetensors")).unwrap(),
    );
    let mut names: Vec<_> = x.tensors.keys().collect();
    names.sort();
    assert_eq!(names.len(), y.tensors.len());
    for k in names {
        let (p, q) = (&x.tensors[k], &y.tensors[k]);
        let v = |t: &candle_core::Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(v(p), v(q), "tensor {k}");
    }
    assert_eq!(
        x.metadata["rlcpc.workers"], y.metadata["rlcpc.workers"],
        "actor states"
    );
    let counters = |l: &Loaded| {
        let mut c: serde_json::Value = serde_json::from_str(&l.metadata["rlcpc.counters"]).unwrap();
        c.as_object_mut().unwrap().remove("elapsed_secs");
        c
    };
    assert_eq!(counters(&x), counters(&y));
}

#[test]
fn a_sync_run_over_mpi_equals_the_threaded_run_bit_for_bit() {
    let tmp = tempfile::tempdir().unwrap();
    // 2 workers on 2 actor ranks; 3 workers on 2 ranks (blocks of 1 and 2), LSTM + CPC.
    for (np, workers, config) in [(3, "2", "cartpole"), (3, "3", "cartpole-lstm-cpc")] {
        let set_workers = format!("run.workers={workers}");
        let envs = format!("env.num_envs={}", 4 * workers.parse::<usize>().unwrap());
        let extra = [
            "--config",
            config,
            "--set",
            &set_workers,
            "--set",
            &envs,
            "--set",
            "run.total_steps=6000",
        ];
        let thr = tmp.path().join(format!("thr-{config}"));
        ok_split(&train_args(&thr, &extra));
        let dist = tmp.path().join(format!("mpi-{config}"));
        let mut a = train_args(&dist, &extra);
        a.push("--distributed");
        let o = finish(mpirun(np, &a));
        assert!(o.status.success(), "{}", text(&o));
        assert!(text(&o).contains("mpi: 2 actor ranks"), "{}", text(&o));
        let (m, n) = (metrics(&thr), metrics(&dist));
        assert!(m.len() >= 3, "{m:?}");
        assert_eq!(m, n, "{config}: metrics differ");
        same_checkpoint(&thr, &dist);
    }
}

#[test]
fn a_distributed_run_resumes_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let common = ["--set", "run.workers=2", "--set", "run.target_return=0"];
    let straight = tmp.path().join("straight");
    let mut a = train_args(&straight, &common);
    a.extend_from_slice(&["--set", "run.total_steps=8000"]);
    ok_split(&a);
    // First half distributed or threaded, second half distributed: the same run.
    for first_distributed in [true, false] {
        let dist = tmp.path().join(format!("dist-{first_distributed}"));
        let mut a = train_args(&dist, &common);
        a.extend_from_slice(&["--set", "run.total_steps=4000"]);
        if first_distributed {
            a.push("--distributed");
            let o = finish(mpirun(3, &a));
            assert!(o.status.success(), "{}", text(&o));
        } else {
            ok_split(&a);
        }
        let o = finish(mpirun(
            3,
            &[
                "train",
                "--quiet",
                "--resume",
                "--out",
                s(&dist),
                "--set",
                "run.total_steps=8000",
                "--distributed",
            ],
        ));
        assert!(o.status.success(), "{}", text(&o));
        same_checkpoint(&straight, &dist);
    }
}

#[test]
fn async_over_mpi_trains_with_vtrace_and_logs_the_lag_of_each_rank() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("async");
    let a = train_args(
        &out,
        &[
            "--set",
            "run.mode=\"async\"",
            "--set",
            "algo.vtrace=true",
            "--set",
            "run.workers=2",
            "--set",
            "run.total_steps=40000",
            "--set",
            "run.target_return=0",
            "--set",
            "run.log_every=10",
            "--distributed",
        ],
    );
    let o = finish(mpirun(3, &a));
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    let rows: Vec<serde_json::Value> = std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for r in ["mpi/policy_lag_rank_1", "mpi/policy_lag_rank_2"] {
        assert!(
            rows.iter().all(|m| m[r].as_f64().is_some()),
            "no {r} in the metrics"
        );
    }
    let lagged = rows
        .iter()
        .any(|m| m["train/policy_lag_mean"].as_f64().unwrap() > 0.0);
    assert!(lagged, "async actors never lagged");
    let last = rows.last().unwrap()["rollout/ep_rew_mean"]
        .as_f64()
        .unwrap();
    assert!(
        last > 30.0,
        "async over MPI learnt nothing: mean return {last}\n{t}"
    );
    // No actor states in an async checkpoint (as with threads), and it evaluates.
    let ck = Loaded::read(&out.join("checkpoint.safetensors")).unwrap();
    assert_eq!(ck.metadata["rlcpc.workers"], "null");
    ok_split(&["eval", "--checkpoint", s(&out), "--episodes", "1"]);
}

#[test]
fn a_failing_worker_stops_the_run_naming_its_rank_and_the_checkpoint_stays() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let a = train_args(
        &out,
        &[
            "--set",
            "run.workers=2",
            "--set",
            "run.total_steps=1000000",
            "--set",
            "run.target_return=0",
            "--set",
            "run.checkpoint_every=10",
            "--distributed",
        ],
    );
    let mut c = mpirun(3, &a);
    c.env("RLCPC_INJECT_WORKER_PANIC", "1:40");
    let o = finish(c);
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    for needle in ["worker 1", "MPI rank 2", "injected panic at unroll 40"] {
        assert!(t.contains(needle), "no '{needle}' in:\n{t}");
    }
    // The checkpoint of update 30 is whole.
    let (stdout, _) = ok_split(&["eval", "--checkpoint", s(&out), "--episodes", "1"]);
    assert!(stdout.contains("mean return"), "{stdout}");
}

/// The PID of rank `rank` of the job whose command line ends with `out`.
fn rank_pid(out: &Path, rank: usize) -> Option<u32> {
    let want = format!("OMPI_COMM_WORLD_RANK={rank}");
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        if !String::from_utf8_lossy(&cmd).contains(s(out)) {
            continue;
        }
        let env = std::fs::read(e.path().join("environ")).unwrap_or_default();
        if env.split(|&b| b == 0).any(|v| v == want.as_bytes()) {
            return Some(pid);
        }
    }
    None
}

/// Starts a long distributed run into `out`; returns it once its metrics appear.
fn long_run(out: &Path) -> std::process::Child {
    long_run_with(out, 3, &[], &[])
}

/// [`long_run`] on `np` ranks with more of mpirun's flags and of rlcpc's.
fn long_run_with(out: &Path, np: usize, flags: &[&str], extra: &[&str]) -> std::process::Child {
    let mut a = train_args(
        out,
        &[
            "--set",
            "run.workers=2",
            "--set",
            "run.total_steps=1000000000",
            "--set",
            "run.target_return=0",
            "--set",
            "run.checkpoint_every=100",
            "--distributed",
        ],
    );
    a.extend_from_slice(extra);
    let child = mpirun_with(flags, np, &a).spawn().expect("mpirun");
    let start = Instant::now();
    while !out.join("metrics.jsonl").exists() && start.elapsed() < LIMIT {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(1500));
    child
}

fn wait_limited(mut child: std::process::Child) -> Output {
    let start = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if start.elapsed() > LIMIT {
            let _ = child.kill();
            panic!("the job did not end within {LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn a_killed_actor_rank_ends_the_job_naming_it_never_a_hang() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let child = long_run(&out);
    let pid = rank_pid(&out, 2).expect("rank 2 is running");
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    let o = wait_limited(child);
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(t.contains("rank 2"), "{t}");
    assert!(
        out.join("checkpoint.safetensors").exists(),
        "the periodic checkpoint stays"
    );
}

#[test]
fn a_hung_actor_rank_stops_a_sync_run_naming_it_never_a_hang() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let child = long_run_with(&out, 3, &[], &["--rank-timeout", "3"]);
    let pid = rank_pid(&out, 2).expect("rank 2 is running");
    unsafe { libc::kill(pid as i32, libc::SIGSTOP) };
    let start = Instant::now();
    let o = wait_limited(child);
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(
        t.contains("MPI rank 2 sent nothing for 3 s (no unroll, no heartbeat)"),
        "{t}"
    );
    assert!(start.elapsed() < Duration::from_secs(60), "{t}");
    assert!(out.join("checkpoint.safetensors").exists(), "{t}");
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
}

#[test]
fn an_async_run_under_enable_recovery_survives_a_killed_actor_rank() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let child = long_run_with(
        &out,
        3,
        &["--enable-recovery"],
        &[
            "--rank-timeout",
            "3",
            "--set",
            "run.mode=\"async\"",
            "--set",
            "algo.vtrace=true",
            "--set",
            "run.total_steps=3000000",
        ],
    );
    let pid = rank_pid(&out, 2).expect("rank 2 is running");
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    let o = wait_limited(child);
    let t = text(&o);
    assert!(t.contains("warning: MPI rank 2 sent nothing"), "{t}");
    assert!(t.contains("done after 3000000 env steps"), "{t}");
    let rows = metrics(&out);
    let last = rows.last().unwrap();
    assert_eq!(last["mpi/lost_ranks"].as_f64(), Some(1.0), "{last}");
    assert_eq!(last["time/total_timesteps"].as_f64(), Some(3e6), "{last}");
    ok_split(&["eval", "--checkpoint", s(&out), "--episodes", "1"]);
}

/// The largest difference between two checkpoints' parameters (not the optimiser's).
fn param_distance(a: &Path, b: &Path) -> f32 {
    let (x, y) = (
        Loaded::read(&a.join("checkpoint.safetensors")).unwrap(),
        Loaded::read(&b.join("checkpoint.safetensors")).unwrap(),
    );
    let v = |t: &candle_core::Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let mut d = 0f32;
    let mut n = 0;
    for (k, p) in &x.tensors {
        if k.starts_with("optim") {
            continue;
        }
        n += 1;
        for (p, q) in v(p).iter().zip(v(&y.tensors[k])) {
            d = d.max((p - q).abs());
        }
    }
    assert!(n >= 4, "{n} parameter tensors");
    d
}

#[test]
fn data_parallel_learners_step_on_the_joint_batch_and_stay_identical() {
    let tmp = tempfile::tempdir().unwrap();
    let extra = [
        "--set",
        "run.workers=2",
        "--set",
        "run.total_steps=1600",
        "--set",
        "run.target_return=0",
    ];
    // Two learners with their workers on threads, then on an actor rank each.
    let mut runs = Vec::new();
    for np in [2, 4] {
        let out = tmp.path().join(format!("dp-{np}"));
        let mut a = train_args(&out, &extra);
        a.extend_from_slice(&["--distributed", "--learners", "2"]);
        let o = finish(mpirun(np, &a));
        let t = text(&o);
        assert!(o.status.success(), "{t}");
        assert!(
            t.contains("their parameters identical at every checkpoint"),
            "{t}"
        );
        runs.push(out);
    }
    same_checkpoint(&runs[0], &runs[1]);
    assert_eq!(metrics(&runs[0]), metrics(&runs[1]));
    // One learner on the whole batch takes the same 10 steps, up to rounding.
    let one = tmp.path().join("one");
    ok_split(&train_args(&one, &extra));
    let d = param_distance(&one, &runs[0]);
    // The control: the 9 updates after the first move the parameters far more.
    let first = tmp.path().join("first");
    let mut a = train_args(&first, &extra);
    a.extend_from_slice(&["--set", "run.total_steps=160"]);
    ok_split(&a);
    let moved = param_distance(&one, &first);
    eprintln!("data-parallel vs one learner: {d:e} apart; updates 2-10 moved {moved:e}");
    assert!(
        d < 1e-4 && d * 100.0 < moved,
        "parameters {d} apart after 10 updates, which moved them {moved}"
    );
}

#[test]
fn a_data_parallel_run_resumes_exactly_and_learns_async() {
    let tmp = tempfile::tempdir().unwrap();
    // LSTM + CPC: each learner's CPC generator draws differently; each is restored.
    let common = [
        "--config",
        "cartpole-lstm-cpc",
        "--set",
        "env.num_envs=8",
        "--set",
        "run.workers=2",
        "--set",
        "run.target_return=0",
        "--distributed",
        "--learners",
        "2",
    ];
    let straight = tmp.path().join("straight");
    let mut a = train_args(&straight, &common);
    a.extend_from_slice(&["--set", "run.total_steps=8000"]);
    assert!(finish(mpirun(2, &a)).status.success());
    let half = tmp.path().join("half");
    let mut a = train_args(&half, &common);
    a.extend_from_slice(&["--set", "run.total_steps=4000"]);
    assert!(finish(mpirun(2, &a)).status.success());
    let o = finish(mpirun(
        2,
        &[
            "train",
            "--quiet",
            "--resume",
            "--out",
            s(&half),
            "--set",
            "run.total_steps=8000",
            "--distributed",
            "--learners",
            "2",
        ],
    ));
    assert!(o.status.success(), "{}", text(&o));
    same_checkpoint(&straight, &half);

    let out = tmp.path().join("async");
    let common = [
        "--set",
        "run.workers=2",
        "--set",
        "run.target_return=0",
        "--distributed",
        "--learners",
        "2",
    ];
    let mut a = train_args(
        &out,
        &[
            "--set",
            "run.mode=\"async\"",
            "--set",
            "algo.vtrace=true",
            "--set",
            "run.total_steps=40000",
            "--set",
            "run.log_every=10",
        ],
    );
    a.extend_from_slice(&common);
    let o = finish(mpirun(4, &a));
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    let last = metrics(&out).last().unwrap()["rollout/ep_rew_mean"]
        .as_f64()
        .unwrap();
    assert!(
        last > 30.0,
        "async data-parallel learnt nothing: {last}\n{t}"
    );
}

#[test]
fn sigterm_on_mpirun_checkpoints_the_learner_and_stops_every_rank() {
    let tmp = tempfile::tempdir().unwrap();
    // One learner and 2 actor ranks; 2 data-parallel learners with their threads.
    for (np, extra) in [(3, &[][..]), (2, &["--learners", "2"][..])] {
        let out = tmp.path().join(format!("run-{np}"));
        let child = long_run_with(&out, np, &[], extra);
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let o = wait_limited(child);
        let t = text(&o);
        let steps: u64 = t
            .split("interrupted after ")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no 'interrupted after N env steps' in:\n{t}"));
        let ck = Loaded::read(&out.join("checkpoint.safetensors")).unwrap();
        let c: serde_json::Value = serde_json::from_str(&ck.metadata["rlcpc.counters"]).unwrap();
        assert_eq!(c["env_steps"], steps, "the checkpoint is the interrupt's");
        let states: Option<Vec<serde_json::Value>> =
            serde_json::from_str(&ck.metadata["rlcpc.workers"]).unwrap();
        assert_eq!(states.map(|s| s.len()), Some(2), "both workers' states");
    }
}

#[test]
fn layouts_the_ranks_cannot_carry_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    for (np, sets, needle) in [
        (1, &["run.workers=1"][..], "at least 2 MPI ranks"),
        (4, &["run.workers=2"][..], "fewer than the 3 actor ranks"),
        (2, &["--learners", "3"][..], "--learners 3: needs 1 to 2"),
        (
            3,
            &["--learners", "2"][..],
            "actor ranks (1) are fewer than the learners (2)",
        ),
        (
            5,
            &["--learners", "2", "run.workers=2"][..],
            "learner 1 has 1 of run.workers = 2 for its 2 actor ranks",
        ),
    ] {
        let out = tmp.path().join(format!("r{np}-{}", sets.len()));
        let mut extra: Vec<&str> = Vec::new();
        let mut flags = sets.iter();
        while let Some(&f) = flags.next() {
            if f.starts_with("--") {
                extra.extend([f, flags.next().unwrap()]);
            } else {
                extra.extend(["--set", f]);
            }
        }
        extra.push("--distributed");
        let a = train_args(&out, &extra);
        let o = finish(mpirun(np, &a));
        let t = text(&o);
        assert!(!o.status.success(), "{t}");
        assert!(t.contains(needle), "no '{needle}' in:\n{t}");
        assert!(!t.contains("panicked"), "{t}");
    }
}

#[test]
fn blocks_cover_every_worker_once_in_order() {
    use rlcpc::rl::distributed::block;
    for ranks in 2..6 {
        for workers in ranks - 1..12 {
            let all: Vec<usize> = (1..ranks).flat_map(|r| block(r, ranks, workers)).collect();
            assert_eq!(
                all,
                (0..workers).collect::<Vec<_>>(),
                "{ranks} ranks, {workers} workers"
            );
            assert!((1..ranks).all(|r| !block(r, ranks, workers).is_empty()));
            // Uneven: blocks differ by one worker at most.
            let sizes: Vec<usize> = (1..ranks).map(|r| block(r, ranks, workers).len()).collect();
            let (lo, hi) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
            assert!(hi - lo <= 1, "{sizes:?}");
        }
    }
}
