//! Running the `rlcpc` binary from the integration tests that drive it as a user does,
//! and numeric helpers the tests share.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

/// The binary, with the test-only worker-panic hook cleared.
pub fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rlcpc"));
    c.env_remove("RLCPC_INJECT_WORKER_PANIC");
    c
}

pub fn rlcpc(args: &[&str]) -> Output {
    bin().args(args).output().expect("runs")
}

/// Standard output and error together.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Runs `args`, which must succeed; returns (stdout, stderr).
pub fn ok_split(args: &[&str]) -> (String, String) {
    let o = rlcpc(args);
    assert!(o.status.success(), "rlcpc {args:?} failed:\n{}", text(&o));
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Runs `args`, which must fail with exit code 1 (an error, not a panic or an abort)
/// and a message holding every one of `needles`; returns the output.
pub fn fails_with(args: &[&str], needles: &[&str]) -> String {
    let o = rlcpc(args);
    let t = text(&o);
    assert_eq!(
        o.status.code(),
        Some(1),
        "rlcpc {args:?}: expected exit 1:\n{t}"
    );
    assert!(!t.contains("panicked"), "rlcpc {args:?} panicked:\n{t}");
    for n in needles {
        assert!(t.contains(n), "rlcpc {args:?}: no '{n}' in:\n{t}");
    }
    t
}

pub fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

/// `--set` flags that make `cpc text` tiny (a few seconds on any corpus).
pub const TINY_TEXT: [&str; 12] = [
    "--set",
    "model.embedding=8",
    "--set",
    "model.features=8",
    "--set",
    "model.context=8",
    "--set",
    "train.batch=2",
    "--set",
    "data.sequence=4",
    "--set",
    "cpc.horizon=2",
];

/// Central finite differences of `loss` in each coordinate of `x`:
/// `(loss(x + eps·eᵢ) − loss(x − eps·eᵢ)) / 2eps`, with `x[i]` put back after each.
pub fn numerical_grad(x: &mut [f32], eps: f32, mut loss: impl FnMut(&[f32]) -> f64) -> Vec<f64> {
    let mut g = vec![0f64; x.len()];
    for i in 0..x.len() {
        let x0 = x[i];
        x[i] = x0 + eps;
        let plus = loss(x);
        x[i] = x0 - eps;
        let minus = loss(x);
        x[i] = x0;
        g[i] = (plus - minus) / (2.0 * eps as f64);
    }
    g
}

/// ‖∂L/∂v‖² of `v` in `grads`; panics naming `name` when it has no gradient.
pub fn grad_norm_sq(
    grads: &candle_core::backprop::GradStore,
    v: &candle_core::Var,
    name: &str,
) -> f32 {
    grads
        .get(v)
        .unwrap_or_else(|| panic!("no gradient for {name}"))
        .sqr()
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}
