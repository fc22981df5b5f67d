//! A command builder for `rlcpc`, and the one check for bad settings.

use std::fmt::Display;
use std::path::Path;
use std::process::Output;

use crate::common;
pub use crate::common::{s, text};

/// One `rlcpc` command line: `Rlcpc::new("cpc audio").data(&d).out(&o).set("train.steps", 3).ok()`.
#[derive(Clone, Debug)]
pub struct Rlcpc(Vec<String>);

impl Rlcpc {
    /// `rlcpc` followed by the words of `command` (`"train"`, `"envs render"`, `"--help"`).
    pub fn new(command: &str) -> Self {
        Self(command.split_whitespace().map(String::from).collect())
    }

    pub fn args(mut self, args: &[&str]) -> Self {
        self.0.extend(args.iter().map(|a| a.to_string()));
        self
    }

    /// `--set key=value` (a string value brings its own TOML quotes: `"\"agent\""`).
    pub fn set(self, key: &str, value: impl Display) -> Self {
        self.args(&["--set", &format!("{key}={value}")])
    }

    pub fn out(self, dir: &Path) -> Self {
        self.args(&["--out", s(dir)])
    }

    pub fn data(self, path: &Path) -> Self {
        self.args(&["--data", s(path)])
    }

    /// Starts the command with its output (stdout and stderr) going to the file `log`:
    /// not a pipe, which a process the command leaves behind would hold open.
    pub fn spawn(&self, log: &Path) -> std::process::Child {
        let f = std::fs::File::create(log).expect("log file");
        common::bin()
            .args(self.argv())
            .stdout(f.try_clone().expect("log file"))
            .stderr(f)
            .spawn()
            .expect("starts")
    }

    /// Runs the command, which must end within `secs` (else it is killed and the test
    /// fails): for tests of hangs, which must not hang themselves. The output is stdout
    /// and stderr together.
    pub fn output_within(&self, secs: u64) -> Output {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("log");
        let mut child = self.spawn(&log);
        finish_within(&mut child, &log, secs)
    }

    pub fn output(&self) -> Output {
        common::rlcpc(&self.argv())
    }

    /// Runs the command, which must succeed; returns stdout and stderr together.
    pub fn ok(&self) -> String {
        let o = self.output();
        assert!(
            o.status.success(),
            "rlcpc {:?} failed:\n{}",
            self.0,
            text(&o)
        );
        text(&o)
    }

    /// Runs the command, which must fail (any way); returns stdout and stderr together.
    pub fn fails(&self) -> String {
        let o = self.output();
        assert!(
            !o.status.success(),
            "rlcpc {:?} should fail:\n{}",
            self.0,
            text(&o)
        );
        text(&o)
    }

    /// Runs the command, which must fail with exit code 1 (an error, not a panic) and a
    /// message holding every one of `needles` ([`common::fails_with`]).
    pub fn fails_with(&self, needles: &[&str]) -> String {
        common::fails_with(&self.argv(), needles)
    }

    fn argv(&self) -> Vec<&str> {
        self.0.iter().map(String::as_str).collect()
    }
}

/// Waits for `child` (started by [`Rlcpc::spawn`] with `log`) at most `secs`, killing
/// it and failing the test if it runs longer; returns its status and log.
pub fn finish_within(child: &mut std::process::Child, log: &Path, secs: u64) -> Output {
    let t0 = std::time::Instant::now();
    let mut status = None;
    while status.is_none() && t0.elapsed().as_secs() < secs {
        std::thread::sleep(std::time::Duration::from_millis(50));
        status = child.try_wait().expect("waits");
    }
    if status.is_none() {
        let _ = child.kill();
    }
    let o = Output {
        status: child.wait().expect("waits"),
        stdout: std::fs::read(log).unwrap_or_default(),
        stderr: Vec::new(),
    };
    assert!(
        status.is_some(),
        "rlcpc did not end within {secs} s:\n{}",
        text(&o)
    );
    o
}

/// `cmd --set setting` is refused as the user's mistake (exit 1, no panic), with a message
/// holding every one of `names` (the key, or what is wrong with its value).
pub fn bad_setting_is_named(cmd: &Rlcpc, setting: &str, names: &[&str]) -> String {
    cmd.clone().args(&["--set", setting]).fails_with(names)
}

/// 40 16×16 grey images in IDX files (train and test the same): a bright square whose
/// position is the class.
pub fn squares(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let (n, side) = (40u32, 16usize);
    let mut idx = vec![0u8, 0, 8, 3];
    for d in [n, side as u32, side as u32] {
        idx.extend_from_slice(&d.to_be_bytes());
    }
    let mut labels = vec![0u8, 0, 8, 1];
    labels.extend_from_slice(&n.to_be_bytes());
    for i in 0..n as usize {
        let class = i % 4;
        let (oy, ox) = (4 * (class / 2) + 2, 4 * (class % 2) + 2);
        for y in 0..side {
            for x in 0..side {
                let on = (oy..oy + 6).contains(&y) && (ox..ox + 6).contains(&x);
                idx.push(if on { 255 } else { (i * 7 % 40) as u8 });
            }
        }
        labels.push(class as u8);
    }
    for part in ["train", "t10k"] {
        std::fs::write(dir.join(format!("{part}-images-idx3-ubyte")), &idx).unwrap();
        std::fs::write(dir.join(format!("{part}-labels-idx1-ubyte")), &labels).unwrap();
    }
}

/// Every value of `key` (e.g. `train/loss`) that the run in `out` logged to
/// `metrics.jsonl`, in order.
pub fn logged(out: &Path, key: &str) -> Vec<f64> {
    std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap_or_else(|e| panic!("{}: {e}", out.display()))
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v[key].as_f64())
        .collect()
}
