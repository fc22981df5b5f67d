//! `rlcpc._native`: the Rust half of the Python package (`python/rlcpc/` is the other).
//!
//! Each function is one library call, as a subcommand of the CLI is: [`train`] is
//! `rlcpc train`, [`evaluate`] is `rlcpc eval`, [`Encoder`] is an encoder file read by
//! [`rlcpc::probe::encode::FileEncoder`] with rlcpc's own forward pass. Long calls release the
//! GIL; [`train`] polls Python's signal handlers while it waits, so Ctrl-C in Python stops
//! the run the way it stops `rlcpc train` (the current step finishes, the checkpoint is
//! written) and then raises `KeyboardInterrupt`. Errors are `rlcpc.RlcpcError` with the
//! CLI's message (the file, key or flag named).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use numpy::{PyArray1, PyArrayMethods, PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::create_exception;
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use rlcpc::config::Config;
use rlcpc::probe::encode::FileEncoder;
use rlcpc::rl::train::{saved_config_with_notes, train_checked, TrainOptions};

/// The `rlcpc` command line (the library's, as the binary runs it): `python -m rlcpc ...`
/// and the `rlcpc` script a wheel installs run it.
use rlcpc::cli;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

create_exception!(
    _native,
    RlcpcError,
    PyRuntimeError,
    "An error from rlcpc: a bad config key, file, checkpoint or input, with what to fix."
);

fn err(e: impl Into<anyhow::Error>) -> PyErr {
    RlcpcError::new_err(cli::error_text(&e.into()))
}

/// Runs the command line `argv` (the program name first) in this process and returns
/// its exit status: the `rlcpc` console script and `python -m rlcpc`, whole processes of
/// their own (`__main__.py` restores SIGINT's default first). For those only: bad flags
/// and --help exit the process as the binary does, and `train` / `pretrain` install the
/// CLI's Ctrl-C handler for good.
#[pyfunction]
fn main(py: Python<'_>, argv: Vec<String>) -> i32 {
    let cli = cli::parse(argv);
    let result = py.detach(|| cli::run(cli));
    // As the binary: a closed standard output or error stopped the command quietly.
    if rlcpc::console::closed() {
        return rlcpc::console::CLOSED_EXIT_STATUS;
    }
    match result {
        Ok(()) => 0,
        Err(e) => {
            rlcpc::errln!("error: {}", cli::error_text(&e));
            1
        }
    }
}

/// Trains an agent; returns `(run directory, summary as JSON, interrupt)`, where
/// `interrupt` is the exception Python's signal handler raised while training (the run
/// then stopped at its next step and checkpointed; the caller re-raises it) or `None`.
///
/// `config` is a config file or a preset name (`None`: the default preset); `overrides`
/// are `KEY.PATH=VALUE` strings in TOML syntax, as `--set`. Signals are seen only when
/// called from the main thread (Python runs its handlers there); a second interrupt
/// while the run winds down exits the process at once, as the CLI's does.
#[pyfunction]
#[pyo3(signature = (config, overrides, out=None, resume=false, quiet=false))]
fn train(
    py: Python<'_>,
    config: Option<PathBuf>,
    overrides: Vec<String>,
    out: Option<PathBuf>,
    resume: bool,
    quiet: bool,
) -> PyResult<(PathBuf, String, Option<Py<PyAny>>)> {
    let (cfg, notes) = py
        .detach(|| match (&out, resume) {
            (Some(dir), true) => saved_config_with_notes(dir, &overrides),
            (None, true) => Err(anyhow::anyhow!("resume=True needs out=RUN_DIR")),
            _ => Ok(Config::load_with_notes(config.as_deref(), &overrides)?),
        })
        .map_err(err)?;
    for n in notes {
        rlcpc::errln!("{n}");
    }
    let out = out.unwrap_or_else(|| {
        rlcpc::run_dir::default_path(config.as_deref(), cfg.aux.kind().as_str(), cfg.run.seed)
    });
    let spec = py
        .detach(|| rlcpc::rl::train::preflight(&cfg))
        .map_err(err)?;
    rlcpc::keep_freed_pages();
    rlcpc::rl::train::set_learner_threads(cfg.run.learner_threads);
    let opts = TrainOptions {
        out: out.clone(),
        resume,
        device: candle_core::Device::Cpu,
        progress: !quiet,
        write: true,
    };
    if !quiet {
        rlcpc::errln!("training {} into {}", cfg.env.id, out.display());
    }
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let run = std::thread::spawn(move || train_checked(&cfg, &spec, &opts, flag));
    // Wait without the GIL, and run Python's signal handlers every 50 ms: a
    // KeyboardInterrupt stops the run at its next step, which checkpoints.
    let mut interrupt: Option<PyErr> = None;
    while !run.is_finished() {
        py.detach(|| std::thread::sleep(Duration::from_millis(50)));
        if let Err(e) = py.check_signals() {
            if interrupt.is_some() {
                rlcpc::errln!("second interrupt: exiting without a final checkpoint");
                rlcpc_envs::gymnasium::kill_all();
                std::process::exit(130);
            }
            rlcpc::errln!(
                "interrupt: finishing the current step and writing a checkpoint (again to abort)"
            );
            // A Python environment that hangs gets a few seconds, not the run.
            rlcpc_envs::gymnasium::hurry_all();
            stop.store(true, Ordering::SeqCst);
            interrupt = Some(e);
        }
    }
    rlcpc_envs::gymnasium::unhurry_all();
    let result = run
        .join()
        .map_err(|_| err(anyhow::anyhow!("the training thread panicked")))?;
    let s = result.map_err(err)?;
    let c = &s.counters;
    let summary = serde_json::json!({
        "env_steps": c.env_steps,
        "updates": c.updates,
        "episodes": c.episodes,
        "elapsed_secs": c.elapsed_secs,
        "steps_per_sec": s.sps,
        "mean_return": s.mean_return,
        "solved_at_env_steps": s.solved.map(|x| x.0),
        "interrupted": s.interrupted,
    });
    let interrupt = interrupt.map(|e| e.into_value(py).into_any());
    Ok((out, summary.to_string(), interrupt))
}

/// Returns of `episodes` episodes of a checkpoint's policy (greedy unless `stochastic`).
#[pyfunction]
#[pyo3(signature = (checkpoint, episodes=10, seed=0, stochastic=false))]
fn evaluate(
    py: Python<'_>,
    checkpoint: PathBuf,
    episodes: usize,
    seed: u64,
    stochastic: bool,
) -> PyResult<Vec<f64>> {
    if episodes == 0 {
        return Err(err(anyhow::anyhow!("episodes must be at least 1")));
    }
    py.detach(|| rlcpc::rl::eval::evaluate(&checkpoint, episodes, seed, stochastic))
        .map_err(err)
}

/// A TOML document from a JSON one (a config given to Python as a dict).
#[pyfunction]
fn toml_from_json(json: &str) -> PyResult<String> {
    let v: toml::Value = serde_json::from_str(json).map_err(err)?;
    toml::to_string(&v).map_err(err)
}

/// The built-in presets' names.
#[pyfunction]
fn presets() -> Vec<&'static str> {
    rlcpc::config::PRESETS.iter().map(|p| p.0).collect()
}

/// An encoder file (agent checkpoint, exported encoder, trainer's encoder) with its
/// network built on the CPU.
#[pyclass(frozen)]
struct Encoder {
    inner: FileEncoder,
}

#[pymethods]
impl Encoder {
    #[new]
    fn new(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        let inner = py.detach(|| FileEncoder::read(&path)).map_err(err)?;
        Ok(Encoder { inner })
    }

    /// The file the encoder was read from.
    #[getter]
    fn path(&self) -> PathBuf {
        self.inner.file.file.path.clone()
    }

    /// The feature size D (the spec's output width).
    #[getter]
    fn out_dim(&self) -> usize {
        self.inner.spec().out_dim()
    }

    /// The encoder's spec as JSON (`rlcpc.encoder` of the file).
    fn spec_json(&self) -> PyResult<String> {
        serde_json::to_string(self.inner.spec()).map_err(err)
    }

    /// The context network's spec as JSON, if the file holds one.
    fn context_json(&self) -> PyResult<Option<String>> {
        self.inner
            .file
            .context
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(err)
    }

    /// One line describing the encoder.
    fn describe(&self) -> String {
        self.inner.spec().describe()
    }

    /// The file's metadata (`rlcpc.*` keys, JSON values).
    fn metadata(&self) -> std::collections::HashMap<String, String> {
        self.inner.file.file.metadata.clone()
    }

    /// `{name: float32 array}` of the encoder (`encoder.*`) and context network
    /// (`context.*`), as `rlcpc export-encoder` writes them.
    fn tensors<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for (name, t) in self.inner.tensors().map_err(err)? {
            let dims = t.dims().to_vec();
            let v = t
                .flatten_all()
                .and_then(|t| t.to_vec1::<f32>())
                .map_err(err)?;
            d.set_item(name, PyArray1::from_vec(py, v).reshape(dims)?)?;
        }
        Ok(d)
    }

    /// Features of a float32 batch `[N, ...]` (C order), by rlcpc's forward pass.
    fn forward<'py>(
        &self,
        py: Python<'py>,
        x: PyReadonlyArrayDyn<'py, f32>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let shape = x.shape().to_vec();
        // A copy: other Python threads may write the array while the GIL is released.
        let data = x
            .as_slice()
            .map_err(|e| err(anyhow::anyhow!("{e}")))?
            .to_vec();
        let (y, dims) = py
            .detach(|| self.inner.forward(&data, &shape))
            .map_err(err)?;
        Ok(PyArray1::from_vec(py, y).reshape(dims)?.into_any())
    }

    /// Features `[N, D]` of sentences of word ids (a text encoder).
    fn forward_text<'py>(
        &self,
        py: Python<'py>,
        sentences: Vec<Vec<u32>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (y, dims) = py
            .detach(|| self.inner.forward_text(&sentences))
            .map_err(err)?;
        Ok(PyArray1::from_vec(py, y).reshape(dims)?.into_any())
    }

    /// Word ids of each text, by rlcpc's tokenizer and the file's vocabulary (a text
    /// trainer's encoder file).
    fn tokenize(&self, texts: Vec<String>) -> PyResult<Vec<Vec<u32>>> {
        let vocab = self.inner.vocab().ok_or_else(|| {
            err(anyhow::anyhow!(
                "'{}' holds no vocabulary (metadata 'rlcpc.vocab'); pass word ids",
                self.inner.file.file.path.display()
            ))
        })?;
        Ok(texts
            .iter()
            .map(|t| vocab.encode(&rlcpc::data::text::tokenize(t)))
            .collect())
    }
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // `gymnasium:` environments run in this interpreter unless env.python says otherwise.
    let exe: Option<PathBuf> = m.py().import("sys")?.getattr("executable")?.extract()?;
    if let Some(exe) = exe.filter(|p| !p.as_os_str().is_empty()) {
        rlcpc_envs::gymnasium::set_host_python(exe);
    }
    m.add("RlcpcError", m.py().get_type::<RlcpcError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(main, m)?)?;
    m.add_function(wrap_pyfunction!(train, m)?)?;
    m.add_function(wrap_pyfunction!(evaluate, m)?)?;
    m.add_function(wrap_pyfunction!(toml_from_json, m)?)?;
    m.add_function(wrap_pyfunction!(presets, m)?)?;
    m.add_class::<Encoder>()?;
    Ok(())
}
