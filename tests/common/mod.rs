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

/// One step of a standalone trainer's objective: its loss and the gradient of every
/// parameter, by name (sorted), as host vectors.
pub fn objective_loss_and_grads(
    obj: &mut dyn rlcpc::pretrain::Objective,
    batch: usize,
) -> (f32, Vec<(String, Vec<f32>)>) {
    let out = obj.step(batch).unwrap();
    let mut grads = out.loss.backward().unwrap();
    obj.complete_grads(&mut grads).unwrap();
    let mut named: Vec<(String, candle_core::Var)> = obj
        .varmap()
        .data()
        .lock()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    let g = named
        .iter()
        .map(|(k, v)| {
            let g = grads
                .get(v)
                .unwrap_or_else(|| panic!("no gradient for {k}"));
            (
                k.clone(),
                g.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            )
        })
        .collect();
    (out.loss.to_scalar::<f32>().unwrap(), g)
}

/// The CPC trainers' objectives on `dev`, small, on generated data (the same on every
/// device): audio (cpc-audio, 2,560-sample windows), images (cpc-image-fashion on
/// 28×28×1) and text (cpc-text, a vocabulary of 500), with their minibatch sizes.
pub fn cpc_trainer_objectives(
    dev: &candle_core::Device,
) -> Vec<(&'static str, Box<dyn rlcpc::pretrain::Objective>, usize)> {
    use rlcpc::pretrain::{audio, image, text, TrainerConfig};
    use std::path::Path;
    let o = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let a = audio::AudioCpcConfig::load(
        Some(Path::new("cpc-audio")),
        &o(&["data.window=2560", "cpc.horizon=4"]),
    )
    .unwrap();
    let set = rlcpc::bench::generated_audio(a.data.window, a.data.sample_rate, 16);
    let i = image::ImageCpcConfig::load(Some(Path::new("cpc-image-fashion")), &[]).unwrap();
    let t =
        text::TextCpcConfig::load(Some(Path::new("cpc-text")), &o(&["data.vocab=500"])).unwrap();
    let corpus = rlcpc::bench::generated_corpus(2, 200);
    vec![
        (
            "audio",
            Box::new(audio::AudioCpc::new(&a, set, dev).unwrap()),
            4,
        ),
        (
            "image",
            Box::new(
                image::ImageCpc::new(&i, rlcpc::bench::random_images((28, 28, 1), 32), dev)
                    .unwrap(),
            ),
            8,
        ),
        (
            "text",
            Box::new(text::TextCpc::new(&t, &corpus, dev).unwrap()),
            4,
        ),
    ]
}

/// The Python to test `gymnasium:` environments with: the one the build found with
/// Gymnasium (`build.rs`: `RLCPC_TEST_PYTHON`, else the active virtual environment's,
/// else `python3`). Without one the tests are built ignored (`cfg(rlcpc_gymnasium)`), and
/// under CI (`CI` set), where `.ci/run` creates that environment, a missing one fails.
/// Puts `envs/tests/fixtures` (the test environments of `rlcpc_test_envs.py`) on
/// `PYTHONPATH` for the processes tests start.
pub fn gymnasium_python() -> Option<String> {
    // The same value from every test, so setting it from parallel tests is harmless.
    std::env::set_var(
        "PYTHONPATH",
        concat!(env!("CARGO_MANIFEST_DIR"), "/envs/tests/fixtures"),
    );
    let p = option_env!("RLCPC_GYMNASIUM_PYTHON").map(String::from);
    if p.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "the build found no Python with Gymnasium (set RLCPC_TEST_PYTHON)"
        );
        eprintln!(
            "skipped: the build found no Python with Gymnasium (set RLCPC_TEST_PYTHON and rebuild)"
        );
    }
    p
}
