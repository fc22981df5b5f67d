//! Standalone contrastive trainers: one training loop shared by every modality.
//!
//! Each modality module (`audio`, `text`, `frames`, `image`) holds its config, its
//! network and its minibatches; the objective is a parameter ([`ObjectiveKind`], the
//! config's `objective` key): [`cpc_objective::Cpc`] puts CPC on any modality that gives
//! sequences ([`cpc_objective::Sequences`]), `image` has its own CPC for CPC-v2's
//! four directions, and [`views`] is SimCLR and MoCo v2 on whole images (losses in
//! [`crate::contrastive::views`]). The result is an [`Objective`]; [`fit`] does the rest
//! the same way for all of them: Adam with gradient clipping, metrics
//! (`metrics.jsonl` + TensorBoard), a progress bar, atomic checkpoints with the
//! optimiser and generator state for an exact `--resume`, Ctrl-C, and the exported
//! encoder (`encoder.safetensors`) that `rlcpc probe` and the agent read.

pub mod audio;
pub mod cpc_objective;
pub mod frames;
pub mod image;
pub mod text;
pub mod views;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::Tensor;
use candle_nn::VarMap;
use rlcpc_agents::{OptimConfig, OptimKind, Optimizer};
use serde::{Deserialize, Serialize};

use crate::checkpoint::{self, Counters, Loaded};
use crate::config::Invalid;
use crate::metrics::MetricsWriter;
use rlcpc_envs::SeededRng;

/// `[train]`: optimisation settings shared by the standalone trainers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainSection {
    /// Optimiser steps (minibatches) to train for.
    pub steps: u64,
    /// Sequences (e.g. audio windows) per minibatch.
    pub batch: usize,
    /// Adam's learning rate (van den Oord et al. 2018: 2e-4).
    pub lr: f64,
    /// Gradients are clipped to this global L2 norm (0: no clipping).
    pub max_grad_norm: f64,
    /// Seed of the parameters, the minibatches and the negatives.
    pub seed: u64,
    /// Log metrics every this many steps.
    pub log_every: u64,
    /// Write a checkpoint and the exported encoder every this many steps.
    pub checkpoint_every: u64,
    /// ... and whenever this many minutes have passed since the last (0: not by time).
    pub checkpoint_minutes: f64,
    /// The implementation of the encoder's forward and backward: `auto` takes the lean
    /// path (plain Rust over host buffers, several times faster on the CPU) where the
    /// trainer has one (SimCLR and MoCo, audio CPC's encoder) and candle's autograd
    /// elsewhere (and on a GPU); `candle` always uses candle (the reference); `lean`
    /// insists on the lean path and is refused where there is none.
    pub learner: crate::config::LearnerPath,
}

impl Default for TrainSection {
    fn default() -> Self {
        TrainSection {
            steps: 2000,
            batch: 8,
            lr: 2e-4,
            max_grad_norm: 0.0,
            seed: 1,
            log_every: 10,
            checkpoint_every: 250,
            checkpoint_minutes: 10.0,
            learner: crate::config::LearnerPath::Auto,
        }
    }
}

/// Refuses any `(key, value, max)` whose value is above its bound, naming the key and
/// the bound: sizes far above any sensible run, below what would abort on allocation.
pub fn at_most(items: &[(&str, usize, usize)]) -> Result<(), crate::config::Invalid> {
    for &(key, v, max) in items {
        if v > max {
            return Err(Invalid::new(key, format!("{v} (at most {max})")));
        }
    }
    Ok(())
}

impl TrainSection {
    pub fn validate(&self) -> Result<(), crate::config::Invalid> {
        at_most(&[("train.batch", self.batch, 65_536)])?;
        let bad = |k: &str, v: String, why: &str| {
            Err(Invalid::new(&format!("train.{k}"), format!("{v} ({why})")))
        };
        if self.steps == 0 {
            return bad("steps", "0".into(), "need at least one step");
        }
        if self.batch == 0 {
            return bad(
                "batch",
                "0".into(),
                "need at least one sequence per minibatch",
            );
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad("lr", self.lr.to_string(), "must be positive");
        }
        if self.max_grad_norm.is_nan() || self.max_grad_norm < 0.0 {
            return bad(
                "max_grad_norm",
                self.max_grad_norm.to_string(),
                "must be ≥ 0",
            );
        }
        if self.log_every == 0 || self.checkpoint_every == 0 {
            return bad("log_every/checkpoint_every", "0".into(), "must be ≥ 1");
        }
        if !(self.checkpoint_minutes >= 0.0 && self.checkpoint_minutes.is_finite()) {
            return bad(
                "checkpoint_minutes",
                self.checkpoint_minutes.to_string(),
                "must be finite and ≥ 0",
            );
        }
        Ok(())
    }
}

/// Reads a trainer's config through the one pipeline ([`crate::config::load`]: `path`,
/// or the built-in preset of that name among `presets`, `None` giving the first; the
/// `key.path=value` overrides) and validates it. Errors name the file and the key.
pub fn load_config<T: serde::de::DeserializeOwned>(
    path: Option<&Path>,
    overrides: &[String],
    presets: &[(&str, &str)],
    validate: impl Fn(&T) -> Result<(), crate::config::Invalid>,
) -> Result<T> {
    let (cfg, origin): (T, String) = crate::config::load(path, overrides, presets, &[])?;
    validate(&cfg).map_err(|e| crate::config::ConfigError::Invalid {
        path: origin,
        message: e.to_string(),
    })?;
    Ok(cfg)
}

/// What a trainer learns by, chosen by a trainer config's `objective` key (or
/// `rlcpc pretrain <modality> --objective`). Each modality module supplies the network
/// and the minibatches; the objective is the loss on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ObjectiveKind {
    /// Contrastive Predictive Coding: InfoNCE of W_k c_t against the future z_{t+k}
    /// among negatives (van den Oord et al. 2018).
    #[default]
    Cpc,
    /// SimCLR: NT-Xent between two augmented views of each image against the other
    /// views of the batch (Chen et al. 2020). Images only.
    Simclr,
    /// MoCo v2: InfoNCE of each view against its other view through a momentum encoder,
    /// with a queue of earlier keys as negatives (He et al. 2019; Chen et al. 2020).
    /// Images only.
    Moco,
}

impl ObjectiveKind {
    /// Refuses an objective a trainer of `modality` does not have, naming the key.
    pub fn only_cpc(self, modality: &str) -> Result<(), Invalid> {
        match self {
            ObjectiveKind::Cpc => Ok(()),
            other => Err(Invalid::new(
                "objective",
                format!(
                    "\"{}\" is for images (`rlcpc pretrain image --objective {0}`); `pretrain {modality}` has cpc",
                    crate::config::user_name(&other)
                ),
            )),
        }
    }
}

/// The `objective` a run's config will have, read before choosing which config type to
/// load: `--resume`'s saved config, else `path` (a file or a preset of `presets`), else
/// cpc; `overrides` applied. A config that cannot be read gives cpc here: loading it
/// then reports why.
pub fn peek_objective(
    path: Option<&Path>,
    resume_dir: Option<&Path>,
    overrides: &[String],
    presets: &[(&str, &str)],
) -> ObjectiveKind {
    let text = match (resume_dir, path) {
        (Some(dir), _) => std::fs::read_to_string(dir.join(crate::run_dir::CONFIG)).ok(),
        (None, Some(p)) => {
            let name = p.to_string_lossy();
            let name = name
                .trim_start_matches("configs/")
                .trim_end_matches(".toml");
            match presets.iter().find(|(n, _)| *n == name) {
                Some((_, t)) if !p.exists() => Some(t.to_string()),
                _ => std::fs::read_to_string(p).ok(),
            }
        }
        (None, None) => None,
    };
    let mut table: toml::Table = text
        .and_then(|t| toml::from_str(&t).ok())
        .unwrap_or_default();
    for o in overrides {
        if crate::config::apply_override(&mut table, o).is_err() {
            return ObjectiveKind::Cpc;
        }
    }
    table
        .get("objective")
        .and_then(|v| v.clone().try_into().ok())
        .unwrap_or_default()
}

/// `[knn]`: the kNN monitor on held-out images during training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KnnSection {
    /// Every this many steps and at the end (0: never), logged as `knn/top1`.
    pub every: u64,
    /// Neighbours that vote (lightly, solo-learn: 200).
    pub k: usize,
    /// Temperature of the vote's weights exp(sim / τ) (lightly, solo-learn: 0.1).
    pub temperature: f64,
    /// Training images in the bank (a seeded subset).
    pub bank: usize,
    /// Held-out images classified (a seeded subset).
    pub queries: usize,
}

impl Default for KnnSection {
    fn default() -> Self {
        KnnSection {
            every: 250,
            k: 200,
            temperature: 0.1,
            bank: 10_000,
            queries: 2_000,
        }
    }
}

impl KnnSection {
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.every > 0 && (self.k == 0 || self.bank == 0 || self.queries == 0) {
            return Err(Invalid::new(
                "knn.k'/'knn.bank'/'knn.queries",
                "0 (each at least 1)",
            ));
        }
        if !(self.temperature > 0.0 && self.temperature.is_finite()) {
            return Err(Invalid::new(
                "knn.temperature",
                format!("{} (must be > 0)", self.temperature),
            ));
        }
        Ok(())
    }
}

/// The kNN monitor of an image trainer: a seeded bank of training images and queries
/// from the held-out part, classified by weighted kNN ([`crate::contrastive::knn::Knn`]) on the
/// network's features every `knn.every` steps and at the end, logged as `knn/top1`.
pub struct KnnMonitor {
    cfg: KnnSection,
    bank: Vec<usize>,
    queries: Vec<usize>,
    test: crate::data::images::ImageSet,
}

impl KnnMonitor {
    /// A monitor over `train_len` training images and the held-out `test` (subsets
    /// drawn from `seed`, not from the training generator).
    pub fn new(
        cfg: &KnnSection,
        train_len: usize,
        test: crate::data::images::ImageSet,
        seed: u64,
    ) -> Self {
        use rand::seq::SliceRandom;
        use rand::SeedableRng;
        let mut r = SeededRng::seed_from_u64(seed ^ 0x6B_4E4E);
        let mut pick = |n: usize, m: usize| {
            let mut v: Vec<usize> = (0..n).collect();
            v.shuffle(&mut r);
            v.truncate(m);
            v
        };
        KnnMonitor {
            cfg: cfg.clone(),
            bank: pick(train_len, cfg.bank),
            queries: pick(test.len(), cfg.queries),
            test,
        }
    }

    /// Whether step `step` is one to measure at.
    pub fn due(&self, step: u64, last: bool) -> bool {
        self.cfg.every > 0 && (step.is_multiple_of(self.cfg.every) || last)
    }

    /// `knn/top1` of `features` (rows of `d` per image) of the queries against the bank.
    pub fn run(
        &self,
        train: &crate::data::images::ImageSet,
        d: usize,
        mut features: impl FnMut(&crate::data::images::ImageSet, &[usize]) -> Result<Vec<f32>>,
    ) -> Result<Vec<(String, f64)>> {
        let fb = features(train, &self.bank)?;
        let fq = features(&self.test, &self.queries)?;
        let yb: Vec<usize> = self
            .bank
            .iter()
            .map(|&i| train.labels[i] as usize)
            .collect();
        let yq: Vec<usize> = self
            .queries
            .iter()
            .map(|&i| self.test.labels[i] as usize)
            .collect();
        let classes = train.classes.len().max(self.test.classes.len());
        let knn = crate::contrastive::knn::Knn {
            k: self.cfg.k,
            temperature: self.cfg.temperature,
        };
        Ok(vec![(
            "knn/top1".into(),
            knn.accuracy(&fb, &yb, &fq, &yq, d, classes)?,
        )])
    }
}

/// One minibatch's result.
pub struct StepOutput {
    pub loss: Tensor,
    /// Host-side metrics (names without a prefix; logged under `train/`).
    pub metrics: Vec<(String, f64)>,
    /// Sequences in the minibatch (for samples per second).
    pub samples: usize,
}

/// What a modality provides to [`fit`].
pub trait Objective {
    /// Name stored in checkpoints (e.g. `cpc-audio`); `--resume` checks it.
    fn name(&self) -> String;
    /// Every trainable parameter.
    fn varmap(&self) -> &VarMap;
    /// Samples a minibatch and computes its loss.
    fn step(&mut self, batch: usize) -> Result<StepOutput>;
    /// The generator of minibatches and negatives (saved for an exact resume).
    fn rng(&mut self) -> &mut SeededRng;
    /// Adds the gradients that the loss's graph does not reach (a lean-path encoder's,
    /// from the gradient of its output) to `grads`, after the loss's backward.
    fn complete_grads(&mut self, _grads: &mut candle_core::backprop::GradStore) -> Result<()> {
        Ok(())
    }
    /// Whether the encoder runs on the lean path (`train.learner`).
    fn has_lean_path(&self) -> bool {
        false
    }
    /// Metadata of the exported encoder: its spec, its context network's spec, the data.
    fn export_metadata(&self) -> Vec<(&'static str, String)>;
    /// Prefixes of the parameters exported with the encoder (e.g. `encoder.`, `context.`).
    fn export_prefixes(&self) -> &'static [&'static str] {
        &["encoder.", "context."]
    }

    /// Refuses a checkpoint that was trained on other data in a way that matters (e.g.
    /// another vocabulary); called on `--resume` before anything is written.
    fn check_resume(&self, _checkpoint: &Loaded) -> Result<()> {
        Ok(())
    }

    /// Metrics measured on held-out data after step `step` (`last`: the final step),
    /// e.g. the kNN monitor's `knn/top1`; logged with their full names.
    fn monitor(&mut self, _step: u64, _last: bool) -> Result<Vec<(String, f64)>> {
        Ok(vec![])
    }
}

/// Where and how [`fit`] runs.
pub struct FitOptions {
    pub out: PathBuf,
    pub resume: bool,
    pub progress: bool,
    /// The resolved config, saved as `config.toml` and in checkpoints.
    pub config_toml: String,
    pub stop: Arc<AtomicBool>,
}

pub struct FitSummary {
    pub steps: u64,
    pub seconds: f64,
    pub samples_per_sec: f64,
    pub last: Vec<(String, f64)>,
    pub interrupted: bool,
}

impl FitSummary {
    /// The last logged value of `key` (NaN if it was never logged).
    pub fn last_value(&self, key: &str) -> f64 {
        self.last
            .iter()
            .find(|(n, _)| n == key)
            .map_or(f64::NAN, |x| x.1)
    }
}

use crate::run_dir::ENCODER;

/// Trains `obj` for `train.steps` minibatches (from where a resumed run stopped).
pub fn fit(obj: &mut dyn Objective, train: &TrainSection, opts: &FitOptions) -> Result<FitSummary> {
    if train.learner == crate::config::LearnerPath::Lean && !obj.has_lean_path() {
        bail!(
            "train.learner = \"lean\": the {} trainer has no lean path (SimCLR, MoCo, audio CPC and image CPC with its patch encoder have); use \"auto\" or \"candle\"",
            obj.name()
        );
    }
    // Nothing is written until the checkpoint (when resuming) fits this trainer.
    let run_dir = crate::run_dir::RunDir::open(&opts.out, opts.resume)?;
    let ck_path = run_dir.checkpoint();
    let vars = crate::nn::init::named_vars(obj.varmap(), |_| true);
    let mut optim = Optimizer::new(
        OptimConfig {
            kind: OptimKind::Adam,
            lr: train.lr,
            eps: 1e-8,
            ..OptimConfig::default()
        },
        vars.clone(),
    )?;
    let mut counters = Counters::default();
    if opts.resume {
        let ck = Loaded::read(&ck_path).with_context(|| {
            format!("--resume: no usable checkpoint in '{}'", opts.out.display())
        })?;
        let name: String = ck.meta(crate::checkpoint::keys::TRAINER)?;
        if name != obj.name() {
            return Err(ck
                .mismatch(format!(
                    "it was written by trainer '{name}', not '{}'",
                    obj.name()
                ))
                .into());
        }
        ck.restore_params(&vars)?;
        counters = ck.restore_optim(&mut optim)?;
        *obj.rng() = ck.meta(crate::checkpoint::keys::RNG)?;
        obj.check_resume(&ck)?;
        check_same_split(obj, &ck)?;
    }
    run_dir.begin(
        opts.resume,
        &opts.config_toml,
        "train/step",
        counters.updates,
    )?;
    let mut metrics = MetricsWriter::open(&opts.out, opts.resume.then_some(counters.updates))?;
    let bar = crate::metrics::progress_bar(train.steps, counters.updates, "steps", opts.progress);
    let started = Instant::now();
    let elapsed_before = counters.elapsed_secs;
    let mut means = crate::metrics::Averager::default();
    let (mut window_samples, mut window_start) = (0usize, Instant::now());
    let mut last: Vec<(String, f64)> = Vec::new();
    let mut interrupted = false;
    let mut last_save = Instant::now();
    let save = |counters: &Counters, optim: &Optimizer, obj: &mut dyn Objective| -> Result<()> {
        let tensors = checkpoint::state_tensors(&vars, optim)?;
        let mut meta = vec![
            (
                crate::checkpoint::keys::TRAINER,
                serde_json::to_string(&obj.name())?,
            ),
            (
                crate::checkpoint::keys::COUNTERS,
                serde_json::to_string(counters)?,
            ),
            (
                crate::checkpoint::keys::RNG,
                serde_json::to_string(obj.rng())?,
            ),
            (
                crate::checkpoint::keys::CONFIG,
                serde_json::to_string(&opts.config_toml)?,
            ),
        ];
        meta.extend(obj.export_metadata());
        checkpoint::write_atomic(&ck_path, tensors, checkpoint::metadata(meta))?;
        export(obj, &opts.out.join(ENCODER))
    };
    while counters.updates < train.steps {
        if opts.stop.load(Ordering::SeqCst) {
            interrupted = true;
            break;
        }
        let out = obj.step(train.batch)?;
        let loss = out.loss.to_scalar::<f32>()? as f64;
        if !loss.is_finite() {
            bail!(
                "loss became {loss} at step {}; stopping without writing ({})",
                counters.updates + 1,
                kept(&ck_path)
            );
        }
        let mut grads = out.loss.backward()?;
        obj.complete_grads(&mut grads)?;
        let norm = optim.grad_norm(&grads)?;
        if !norm.is_finite() {
            bail!(
                "the gradient norm became {norm} at step {} (loss {loss}); stopping without writing ({})",
                counters.updates + 1,
                kept(&ck_path)
            );
        }
        let scale = if train.max_grad_norm > 0.0 && norm > train.max_grad_norm {
            train.max_grad_norm / norm
        } else {
            1.0
        };
        optim.step(&grads, train.lr, scale)?;
        counters.updates += 1;
        counters.optim_steps = optim.steps();
        counters.env_steps += out.samples as u64;
        window_samples += out.samples;
        let mut m = vec![("loss".to_string(), loss), ("grad_norm".to_string(), norm)];
        m.extend(out.metrics);
        means.add(&m);
        bar.inc(1);
        if counters.updates % train.log_every == 0 || counters.updates == train.steps {
            let secs = window_start.elapsed().as_secs_f64();
            let mut row = means.take("train/");
            row.push((
                "perf/samples_per_sec".into(),
                window_samples as f64 / secs.max(1e-9),
            ));
            row.push(("train/step".into(), counters.updates as f64));
            metrics.log(counters.updates, &row)?;
            let get = |k: &str| row.iter().find(|(n, _)| n == k).map_or(f64::NAN, |x| x.1);
            bar.set_message(format!(
                "loss {:.3} acc {:.3} {:.0}/s",
                get("train/loss"),
                get("train/acc"),
                get("perf/samples_per_sec")
            ));
            if bar.is_hidden() {
                crate::errln!(
                    "step {} loss {:.4} acc {:.3}",
                    counters.updates,
                    get("train/loss"),
                    get("train/acc")
                );
            }
            // Monitor metrics (knn/...) stay until they are measured again.
            last.retain(|(k, _): &(String, f64)| {
                !k.starts_with("train/") && !k.starts_with("perf/")
            });
            last.extend(row);
            window_samples = 0;
            window_start = Instant::now();
        }
        let watched = obj.monitor(counters.updates, counters.updates == train.steps)?;
        if !watched.is_empty() {
            metrics.log(counters.updates, &watched)?;
            let line = watched
                .iter()
                .map(|(k, v)| format!("{k} {v:.4}"))
                .collect::<Vec<_>>()
                .join(", ");
            if bar.is_hidden() {
                crate::errln!("step {}: {line}", counters.updates);
            } else {
                bar.println(format!("step {}: {line}", counters.updates));
            }
            for (k, v) in watched {
                last.retain(|(n, _)| *n != k);
                last.push((k, v));
            }
            window_start = Instant::now();
        }
        let by_time = train.checkpoint_minutes > 0.0
            && last_save.elapsed().as_secs_f64() >= 60.0 * train.checkpoint_minutes;
        if counters.updates % train.checkpoint_every == 0 || by_time {
            counters.elapsed_secs = elapsed_before + started.elapsed().as_secs_f64();
            save(&counters, &optim, obj)?;
            last_save = Instant::now();
        }
    }
    bar.finish_and_clear();
    counters.elapsed_secs = elapsed_before + started.elapsed().as_secs_f64();
    save(&counters, &optim, obj)?;
    Ok(FitSummary {
        steps: counters.updates,
        seconds: counters.elapsed_secs,
        samples_per_sec: counters.env_steps as f64 / counters.elapsed_secs.max(1e-9),
        last,
        interrupted,
    })
}

/// Refuses to resume a run whose held-out part would change (another split seed or
/// test fraction, files added or removed): the part trained on so far would then reach
/// the new test part. Compares the split keys of the checkpoint's `rlcpc.data` with what
/// the objective would store now.
fn check_same_split(obj: &dyn Objective, ck: &Loaded) -> Result<()> {
    const KEYS: [&str; 6] = [
        "held_out",
        "split",
        "test_fraction",
        "split_seed",
        "train_steps",
        "steps",
    ];
    let Ok(old) = ck.meta::<serde_json::Value>(crate::checkpoint::keys::DATA) else {
        return Ok(());
    };
    let Some(now) = obj
        .export_metadata()
        .into_iter()
        .find(|(k, _)| *k == crate::checkpoint::keys::DATA)
        .and_then(|(_, v)| serde_json::from_str::<serde_json::Value>(&v).ok())
    else {
        return Ok(());
    };
    for k in KEYS {
        if old.get(k) != now.get(k) {
            return Err(ck
                .mismatch(format!(
                    "its data split ('{k}') differs from this data's and settings' ({} vs {}): the encoder trained on part of what would now be held out; resume with the data and split it was trained with",
                    short(old.get(k)),
                    short(now.get(k))
                ))
                .into());
        }
    }
    Ok(())
}

/// A JSON value for a message, long lists summarised.
fn short(v: Option<&serde_json::Value>) -> String {
    match v {
        None => "none".into(),
        Some(serde_json::Value::Array(a)) => format!("{} files", a.len()),
        Some(x) => x.to_string(),
    }
}

/// A trainer's config: a documented serde struct with built-in presets, validated at
/// load. `load` and `to_toml` are the same for every trainer.
pub trait TrainerConfig: Serialize + serde::de::DeserializeOwned {
    /// Built-in presets `(name, TOML)`; the first is the default.
    const PRESETS: &'static [(&'static str, &'static str)];

    /// Why the values cannot train, naming the key.
    fn validate(&self) -> Result<(), crate::config::Invalid>;

    /// Reads `path` or a built-in preset by name (none: the first), applies
    /// `key.path=value` overrides and validates; errors name the file and the key.
    fn load(path: Option<&Path>, overrides: &[String]) -> Result<Self> {
        load_config(path, overrides, Self::PRESETS, Self::validate)
    }

    fn to_toml(&self) -> String {
        toml::to_string(self).expect("config serialises")
    }

    /// The config of a run in `out`: the run's own `config.toml` when resuming, else
    /// `config`, with `overrides` applied; a directory in use, or one holding a run when
    /// not resuming, is refused ([`crate::run_dir::check_free`]).
    fn for_run(
        out: &Path,
        resume: bool,
        config: Option<&Path>,
        overrides: &[String],
    ) -> Result<Self> {
        let cfg = if resume {
            let saved = out.join(crate::run_dir::CONFIG);
            if !saved.exists() {
                bail!(
                    "--resume: {} has no {}; is it a run directory?",
                    out.display(),
                    crate::run_dir::CONFIG
                );
            }
            Self::load(Some(&saved), overrides)?
        } else {
            Self::load(config, overrides)?
        };
        crate::run_dir::check_free(out, resume)?;
        Ok(cfg)
    }
}

/// The metadata every exported encoder carries: its spec and its context network's.
pub fn spec_metadata(
    encoder: &crate::nn::encoders::EncoderSpec,
    context: &crate::nn::encoders::ContextSpec,
) -> Vec<(&'static str, String)> {
    use crate::checkpoint::keys;
    vec![
        (
            keys::ENCODER_SPEC,
            serde_json::to_string(encoder).expect("spec"),
        ),
        (
            keys::CONTEXT_SPEC,
            serde_json::to_string(context).expect("spec"),
        ),
    ]
}

/// Writes the objective's exported parameters and their specs to `path` (atomically).
pub fn export(obj: &dyn Objective, path: &Path) -> Result<()> {
    let tensors: Vec<(String, Tensor)> = crate::nn::init::named_vars(obj.varmap(), |_| true)
        .into_iter()
        .filter(|(k, _)| obj.export_prefixes().iter().any(|p| k.starts_with(p)))
        .map(|(k, v)| (k, v.as_tensor().clone()))
        .collect();
    checkpoint::write_atomic(path, tensors, checkpoint::metadata(obj.export_metadata()))?;
    Ok(())
}

/// Collapse statistic: the standard deviation over a batch of L2-normalised vectors
/// `[N, D]`, averaged over dimensions and times √D — about 1 for spread-out features,
/// 0 when every input maps to the same direction (Chen & He 2021).
pub fn normalized_std(x: &Tensor) -> Result<f64> {
    let d = x.dim(1)?;
    Ok(normalized_std_of(
        &x.to_dtype(candle_core::DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?,
        d,
    ))
}

/// [`normalized_std`] of the rows `[N, D]` of a host slice.
pub fn normalized_std_of(x: &[f32], d: usize) -> f64 {
    let n = x.len() / d.max(1);
    if n == 0 {
        return 0.0;
    }
    let (mut mean, mut sq) = (vec![0f64; d], vec![0f64; d]);
    for row in x.chunks_exact(d) {
        let norm = row.iter().map(|&v| (v as f64).powi(2)).sum::<f64>().sqrt();
        let inv = 1.0 / norm.max(1e-8);
        for ((m, s), &v) in mean.iter_mut().zip(&mut sq).zip(row) {
            let u = v as f64 * inv;
            *m += u;
            *s += u * u;
        }
    }
    let std_sum: f64 = mean
        .iter()
        .zip(&sq)
        .map(|(m, s)| {
            let m = m / n as f64;
            (s / n as f64 - m * m).max(0.0).sqrt()
        })
        .sum();
    std_sum / d as f64 * (d as f64).sqrt()
}

/// What a stop before writing leaves: the last checkpoint, or none yet.
fn kept(ck_path: &Path) -> String {
    if ck_path.is_file() {
        format!("the last checkpoint, '{}', is intact", ck_path.display())
    } else {
        "no checkpoint had been written yet".into()
    }
}
