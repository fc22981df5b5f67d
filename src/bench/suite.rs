//! The `rlcpc bench` suite: which measurements run, in what order, and the table (or
//! JSON object) they print. The command line only turns its flags into [`Options`].
//!
//! Every case is the median of `repeats` runs, printed with every run. The parts:
//! raw environments; the standalone trainers (audio, image CPC, SimCLR/MoCo, text), each
//! on the lean path and through candle; the agents' training runs (MLP, LSTM with and
//! without the CPC head, POPGym with each head, the Lab agents) with their time per
//! phase; and, on request, time to solve, scaling with the number of environments, or
//! the machine's peak. The pixel workloads print a roofline line against the GEMM peak.

use std::cell::{OnceCell, RefCell};
use std::path::Path;

use anyhow::{bail, Context, Result};
use candle_core::Device;

use super::*;
use crate::config::Config;
use crate::pretrain::TrainerConfig;
use crate::rl::train::set_learner_threads;

/// Which part of the suite runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// Raw environments, the trainers, then the agents' training runs.
    All,
    /// The raw environments only.
    Envs,
    /// The agents' training runs only.
    Train,
    /// The standalone trainers only; with `only`, those whose preset name contains it.
    Trainers { only: Option<String> },
    /// Env steps/s of the default preset with 16 to 1024 environments on 1 and 2 actor
    /// threads, with each run's peak memory (child `rlcpc train` processes).
    Scaling,
    /// The machine's peak: GEMM GFLOP/s and memory bandwidth.
    Peak,
}

/// What to measure and how long.
#[derive(Debug, Clone)]
pub struct Options {
    pub part: Part,
    /// Env steps per training-throughput measurement (a quarter of it for the Lab agents).
    pub steps: u64,
    /// Most env steps of each raw environment measurement.
    pub env_steps: u64,
    /// Most seconds of each raw environment measurement.
    pub env_seconds: f64,
    /// Timed optimiser steps per trainer measurement.
    pub trainer_steps: u64,
    /// Repeats per measurement (the median is reported).
    pub repeats: usize,
    /// Seeds of the time-to-solve runs of the presets (none: not measured).
    pub solve_seeds: Vec<u64>,
    /// Device of the agent's learner and of the CPC trainers; SimCLR and MoCo run on
    /// the CPU.
    pub device: Device,
}

impl Options {
    /// Refuses counts that measure nothing.
    pub fn validate(&self) -> Result<()> {
        if self.repeats == 0 {
            bail!("--repeats must be at least 1 (the median of the runs is reported)");
        }
        if self.env_steps == 0 || !(self.env_seconds.is_finite() && self.env_seconds > 0.0) {
            bail!(
                "--env-steps must be at least 1 and --env-seconds finite and positive (got {}, {})",
                self.env_steps,
                self.env_seconds
            );
        }
        if self.steps == 0 || self.trainer_steps == 0 {
            bail!("--steps and --trainer-steps must be at least 1");
        }
        Ok(())
    }
}

/// Runs the part of the suite `opts` names, printing into `report` as it goes.
pub fn run(opts: &Options, report: &Report) -> Result<()> {
    opts.validate()?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let suite = Suite {
        opts,
        report,
        threads,
        on: match &opts.device {
            Device::Cpu => format!("on the cpu, {threads} threads"),
            d => format!("on {}", device_name(d)),
        },
        roof: OnceCell::new(),
    };
    match &opts.part {
        Part::Peak => peak_table(report, opts.repeats, threads),
        Part::Scaling => scaling_table(report, opts.steps, opts.repeats),
        Part::Trainers { only } => suite.trainers(only.as_deref()),
        Part::All | Part::Envs | Part::Train => suite.main_table(),
    }
}

fn device_name(d: &Device) -> String {
    match d.location() {
        candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        other => format!("{other:?}").to_lowercase(),
    }
}

/// The CPC-v2 options of the image CPC case.
const CPC_V2: [&str; 4] = [
    "model.layer_norm=true",
    "cpc.directions=[\"down\",\"up\",\"right\",\"left\"]",
    "augment.crop=2",
    "augment.flip=true",
];

struct Suite<'a> {
    opts: &'a Options,
    report: &'a Report,
    threads: usize,
    /// Where the trainers run, for their notes.
    on: String,
    /// The roof the pixel workloads are measured against: every core's GEMM peak,
    /// measured (and printed) at first use.
    roof: OnceCell<f64>,
}

impl Suite<'_> {
    fn roof(&self) -> f64 {
        *self.roof.get_or_init(|| {
            let runs: Vec<f64> = (0..self.opts.repeats)
                .map(|_| gemm_gflops(1024, self.threads, 0.5))
                .collect();
            let m = median(&runs);
            self.report.case(
                format!("peak gemm f32 1024³, {} threads (GFLOP/s)", self.threads),
                m,
                runs.iter().map(|x| x.round()).collect::<Vec<_>>(),
            );
            m
        })
    }

    /// The learners a trainer is measured with: as built (`train.learner = auto`, the
    /// lean path on the CPU), then through candle's autograd, the reference, in the same
    /// run (the CPU only).
    fn learners(&self) -> &'static [&'static str] {
        if self.opts.device.is_cpu() {
            &["auto", "candle"]
        } else {
            &["auto"]
        }
    }

    /// `repeats` measurements.
    fn repeat(&self, f: impl Fn() -> Result<f64>) -> Result<Vec<f64>> {
        (0..self.opts.repeats).map(|_| f()).collect()
    }

    fn audio(&self, name: &str) -> Result<()> {
        let (dev, on) = (&self.opts.device, &self.on);
        for &learner in self.learners() {
            let cfg = crate::pretrain::audio::AudioCpcConfig::load(
                Some(Path::new(name)),
                &[format!("train.learner=\"{learner}\"")],
            )?;
            set_learner_threads(0);
            let runs = self.repeat(|| audio_windows_per_sec(&cfg, self.opts.trainer_steps, dev))?;
            let path = if learner == "auto" { "" } else { ", candle" };
            self.report.case(
                format!("cpc audio {name}{path} (windows/s)"),
                median(&runs),
                runs.iter()
                    .map(|x| (x * 10.0).round() / 10.0)
                    .collect::<Vec<_>>(),
            );
            self.report.note(format!(
                "{:<40} window {} samples, batch {}, {} channels, GRU {}, K = {}, {on}{}",
                "",
                cfg.data.window,
                cfg.train.batch,
                cfg.model.channels,
                cfg.model.context,
                cfg.cpc.horizon,
                match (learner, dev.is_cpu()) {
                    ("candle", _) => " (candle's autograd)",
                    (_, true) => " (the lean path: encoder, GRU and loss)",
                    _ => "",
                }
            ));
            self.report.note(format!(
                "{:<40} {}",
                "",
                roofline_line(
                    audio_window_flops(&cfg),
                    "window",
                    median(&runs),
                    self.roof(),
                    "convolutions and GRU"
                )
            ));
        }
        Ok(())
    }

    fn image(&self, label: &str, overrides: &[&str]) -> Result<()> {
        let (dev, on) = (&self.opts.device, &self.on);
        for &learner in self.learners() {
            let mut sets: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
            sets.push(format!("train.learner=\"{learner}\""));
            let cfg = crate::pretrain::image::ImageCpcConfig::load(
                Some(Path::new("cpc-image-fashion")),
                &sets,
            )?;
            set_learner_threads(0);
            let runs =
                self.repeat(|| images_per_sec(&cfg, (28, 28, 1), self.opts.trainer_steps, dev))?;
            let path = if learner == "auto" { "" } else { ", candle" };
            self.report.case(
                format!("cpc image {label}{path} (images/s)"),
                median(&runs),
                runs.iter().map(|x| x.round()).collect::<Vec<_>>(),
            );
            self.report.note(format!(
                "{:<40} 28x28x1, {}x{} patches every {}, batch {}, {} features{}, {on}{}",
                "",
                cfg.model.patch,
                cfg.model.patch,
                cfg.model.stride,
                cfg.train.batch,
                cfg.model.features,
                if overrides.is_empty() {
                    String::new()
                } else {
                    format!(", {}", overrides.join(" "))
                },
                match (learner, dev.is_cpu()) {
                    ("candle", _) => " (candle's autograd)",
                    (_, true) => " (the lean patch encoder)",
                    _ => "",
                }
            ));
            if let Some(f) = image_cpc_flops(&cfg, (28, 28, 1))? {
                self.report.note(format!(
                    "{:<40} {}",
                    "",
                    roofline_line(f, "image", median(&runs), self.roof(), "patch encoder")
                ));
            }
        }
        Ok(())
    }

    /// SimCLR or MoCo, always on the CPU, lean and candle.
    fn views(&self, preset: &str, shape: (usize, usize, usize)) -> Result<()> {
        let (h, w, c) = shape;
        for learner in ["auto", "candle"] {
            let cfg = crate::pretrain::views::ViewsConfig::load(
                Some(Path::new(preset)),
                &[format!("train.learner=\"{learner}\"")],
            )?;
            set_learner_threads(0);
            let runs = self.repeat(|| view_images_per_sec(&cfg, shape, self.opts.trainer_steps))?;
            let path = if learner == "auto" { "" } else { ", candle" };
            self.report.case(
                format!(
                    "{} image {preset}{path} (images/s)",
                    crate::config::user_name(&cfg.objective)
                ),
                median(&runs),
                runs.iter().map(|x| x.round()).collect::<Vec<_>>(),
            );
            self.report.note(format!(
                "{:<40} {h}x{w}x{c}, two views each, batch {}, {}, head {:?} -> {}, on the cpu ({})",
                "",
                cfg.train.batch,
                cfg.encoder_spec(h, w, c)?.describe(),
                cfg.model.head_hidden,
                cfg.model.projection,
                if learner == "auto" { "the lean path" } else { "candle's autograd" }
            ));
            self.report.note(format!(
                "{:<40} {}",
                "",
                roofline_line(
                    view_image_flops(&cfg, shape, cfg.train.batch)?,
                    "image",
                    median(&runs),
                    self.roof(),
                    "encoder, head and scores"
                )
            ));
        }
        Ok(())
    }

    fn text(&self) -> Result<()> {
        let cfg = crate::pretrain::text::TextCpcConfig::load(Some(Path::new("cpc-text")), &[])?;
        set_learner_threads(0);
        let runs =
            self.repeat(|| sentences_per_sec(&cfg, self.opts.trainer_steps, &self.opts.device))?;
        self.report.case(
            "cpc text cpc-text (sentences/s)",
            median(&runs),
            runs.iter().map(|x| x.round()).collect::<Vec<_>>(),
        );
        self.report.note(format!(
            "{:<40} batch {} passages of {} sentences (5-40 words), vocabulary {}, embedding {}, {} features, GRU {}, {}",
            "",
            cfg.train.batch,
            cfg.data.sequence,
            cfg.data.vocab,
            cfg.model.embedding,
            cfg.model.features,
            cfg.model.context,
            self.on
        ));
        Ok(())
    }

    /// Every trainer case (or those whose preset name contains `only`), on every core
    /// as `rlcpc pretrain` runs.
    fn trainers(&self, only: Option<&str>) -> Result<()> {
        self.report.header(format!(
            "{:<40} {:>14}   runs",
            "case", "samples/s (median)"
        ));
        self.roof();
        let wanted = |preset: &str| only.is_none_or(|o| preset.contains(o));
        for preset in ["cpc-audio", "cpc-audio-fsdd"] {
            if wanted(preset) {
                self.audio(preset)?;
            }
        }
        if wanted("cpc-image-fashion") {
            self.image("cpc-image-fashion", &[])?;
            self.image("cpc-image-fashion + CPC-v2", &CPC_V2)?;
        }
        for preset in ["simclr-fashion", "moco-fashion"] {
            if wanted(preset) {
                self.views(preset, (28, 28, 1))?;
            }
        }
        if wanted("simclr-lab-frames") {
            // Lab's default RGB view, through the agent's conv encoder.
            self.views("simclr-lab-frames", (48, 64, 3))?;
        }
        if wanted("cpc-text") {
            self.text()?;
        }
        self.report.finish()
    }

    /// The median run's throughput of a training case, printed with its time per phase.
    fn train_case(&self, (name, cfg): &(String, Config), steps: u64) -> Result<f64> {
        let mut runs = (0..self.opts.repeats)
            .map(|_| train_run(cfg, steps, &self.opts.device))
            .collect::<Result<Vec<_>>>()?;
        let sps: Vec<f64> = runs.iter().map(|r| r.sps).collect();
        let m = median(&sps);
        self.report
            .case(name, m, sps.iter().map(|x| x.round()).collect::<Vec<_>>());
        runs.sort_by(|a, b| a.sps.total_cmp(&b.sps));
        self.report.note(format!(
            "{:<40} {}",
            "",
            phases_line(&runs[runs.len() / 2].phases_ms)
        ));
        Ok(m)
    }

    /// Raw environments, then the trainers, then the agents (as `part` allows).
    fn main_table(&self) -> Result<()> {
        let (part, steps) = (&self.opts.part, self.opts.steps);
        // Loaded first, so that a broken preset fails before anything is measured.
        let mlp = Config::load(None, &[])?;
        let lstm = Config::load(Some(Path::new("cartpole-lstm-cpc")), &[])?;
        self.report
            .header(format!("{:<40} {:>14}   runs", "case", "steps/s (median)"));
        // Raw environment throughput, one thread (agent steps, action repeat included).
        if *part != Part::Train {
            for (name, cfg) in env_cases() {
                let runs = self.repeat(|| {
                    env_steps_per_sec(&cfg, self.opts.env_steps, self.opts.env_seconds)
                })?;
                self.report.case(
                    format!("env {name}"),
                    median(&runs),
                    runs.iter().map(|x| x.round()).collect::<Vec<_>>(),
                );
            }
        }
        if *part == Part::Envs {
            return self.report.finish();
        }
        if *part != Part::Train {
            self.roof();
            self.audio("cpc-audio")?;
            self.image("cpc-image-fashion", &[])?;
            self.image("cpc-image-fashion + CPC-v2", &CPC_V2)?;
            self.views("simclr-fashion", (28, 28, 1))?;
            self.views("moco-fashion", (28, 28, 1))?;
            self.views("simclr-lab-frames", (48, 64, 3))?;
            self.text()?;
        }
        // The agents' runs on the learner threads their configs ask for.
        set_learner_threads(1);
        let [mlp_none, lstm_none, lstm_cpc] = throughput_cases(&mlp, &lstm);
        self.train_case(&mlp_none, steps)?;
        let none = self.train_case(&lstm_none, steps)?;
        let cpc = self.train_case(&lstm_cpc, steps)?;
        // Share of the time per step spent in the CPC head: 1 − t(none)/t(cpc).
        self.report.note(format!(
            "CPC head cost: {:.1}% of the time per env step (lstm cpc vs lstm none)",
            100.0 * (1.0 - cpc / none)
        ));
        let popgym = Config::load(Some(Path::new("popgym")), &[])?;
        let pg = popgym_cases(&popgym);
        let none = self.train_case(&pg.none, steps)?;
        let cpc = self.train_case(&pg.cpc, steps)?;
        let cpca = self.train_case(&pg.cpca, steps)?;
        self.report.note(format!(
            "{} ({}): CPC head {:.1}%, CPC|A head {:.1}% of the time per env step",
            popgym.env.id,
            "LSTM 64, 16 envs",
            100.0 * (1.0 - cpc / none),
            100.0 * (1.0 - cpca / none)
        ));
        let watermaze = Config::load(Some(Path::new("lab-watermaze")), &[])?;
        self.roof();
        for case in lab_cases(&watermaze) {
            let m = self.train_case(&case, (steps / 4).max(1))?;
            let (f, counted) = agent_step_flops(&case.1)?;
            self.report.note(format!(
                "{:<40} {}",
                "",
                roofline_line(f, "env step", m, self.roof(), &counted)
            ));
        }
        if !self.opts.solve_seeds.is_empty() {
            self.solve_table(&mlp, &lstm)?;
        }
        self.report.finish()
    }

    /// Time to the target return of the MLP and LSTM presets, once per seed.
    fn solve_table(&self, mlp: &Config, lstm: &Config) -> Result<()> {
        let seeds = &self.opts.solve_seeds;
        for (name, cfg) in [("mlp, aux none", mlp), ("lstm, aux cpc", lstm)] {
            let mut secs = Vec::new();
            for &seed in seeds {
                match solve(cfg, seed, &self.opts.device)? {
                    Some((st, s)) => {
                        self.report.note(format!(
                            "solve {name}: seed {seed}: return >= {} at {st} steps, {s:.2} s",
                            cfg.run.target_return
                        ));
                        secs.push(s);
                    }
                    None => self.report.note(format!(
                        "solve {name}: seed {seed}: not solved within {} steps",
                        cfg.run.total_steps
                    )),
                }
            }
            self.report.note(format!(
                "solve {name}: {}/{} seeds solved, median {:.2} s",
                secs.len(),
                seeds.len(),
                median(&secs)
            ));
        }
        Ok(())
    }
}

/// `rlcpc bench --peak`: GEMM GFLOP/s and triad GB/s, medians of `repeats`.
fn peak_table(report: &Report, repeats: usize, threads: usize) -> Result<()> {
    report.header(format!("{:<40} {:>14}   runs", "peak", "median"));
    let mut counts = vec![1];
    if threads > 1 {
        counts.push(threads);
    }
    let median_of = |name: String, f: &dyn Fn() -> f64| {
        let runs: Vec<f64> = (0..repeats).map(|_| f()).collect();
        report.case(
            name,
            median(&runs),
            runs.iter().map(|x| (x * 10.0).round() / 10.0).collect(),
        );
    };
    for &t in &counts {
        for n in [256, 1024] {
            median_of(format!("gemm f32 {n}³, {t} thread(s) (GFLOP/s)"), &|| {
                gemm_gflops(n, t, 0.5)
            });
        }
    }
    // 3 × 128 MiB: far beyond any cache.
    for &t in &counts {
        median_of(format!("triad, {t} thread(s) (GB/s)"), &|| {
            triad_gbs(32 << 20, t, 0.5)
        });
    }
    report.note(
        "GEMM: the `gemm` crate's f32 kernels, best product of 0.5 s; triad: a = b + s·c, 12 bytes per element (STREAM's count), best of 0.5 s"
            .into(),
    );
    report.finish()
}

/// `rlcpc bench --scaling`: one child `rlcpc train` (this executable) per run of each
/// case.
fn scaling_table(report: &Report, steps: u64, repeats: usize) -> Result<()> {
    let exe = std::env::current_exe().context("locating the rlcpc binary")?;
    let dir = std::env::temp_dir().join(format!("rlcpc-scaling-{}", std::process::id()));
    report.header(format!(
        "{:<40} {:>14}   runs",
        "case (cartpole, mlp, sync)", "steps/s (median)"
    ));
    let mut peaks: Vec<(usize, usize, f64)> = Vec::new();
    for (envs, workers) in scaling_cases() {
        let (mut runs, mut peak) = (Vec::new(), f64::NAN);
        for _ in 0..repeats {
            let _ = std::fs::remove_dir_all(&dir);
            let out = std::process::Command::new(&exe)
                .args(["train", "--quiet", "--out"])
                .arg(&dir)
                .args([
                    "--set",
                    &format!("env.num_envs={envs}"),
                    "--set",
                    &format!("run.workers={workers}"),
                    "--set",
                    // At least 20 updates of the preset's 5-step unrolls.
                    &format!("run.total_steps={}", steps.max(20 * 5 * envs as u64)),
                    "--set",
                    "run.target_return=0",
                    "--set",
                    "run.log_every=1000000",
                    "--set",
                    "run.checkpoint_every=0",
                    "--set",
                    "run.checkpoint_minutes=0",
                ])
                .output()
                .with_context(|| format!("running {}", exe.display()))?;
            let stdout = String::from_utf8_lossy(&out.stdout);
            let (sps, p) = parse_train_output(&stdout)
                .filter(|_| out.status.success())
                .with_context(|| {
                    format!(
                        "the run with {envs} environments on {workers} threads failed: {}",
                        String::from_utf8_lossy(&out.stderr).trim()
                    )
                })?;
            runs.push(sps);
            if let Some(p) = p {
                peak = peak.max(p); // NaN.max(p) is p
            }
        }
        report.case(
            format!("{envs} envs, {workers} actor thread(s)"),
            median(&runs),
            runs.iter().map(|x| x.round()).collect::<Vec<_>>(),
        );
        report.note(format!("{:<40} peak memory {peak:.1} MiB", ""));
        peaks.push((envs, workers, peak));
    }
    let _ = std::fs::remove_dir_all(&dir);
    for w in [1, 2] {
        let at = |n: usize| peaks.iter().find(|p| p.0 == n && p.1 == w).map(|p| p.2);
        if let (Some(lo), Some(hi)) = (at(16), at(1024)) {
            report.note(format!(
                "memory per further environment ({w} thread(s)): {:.1} KiB ((peak at 1024 - peak at 16) / 1008)",
                (hi - lo) * 1024.0 / 1008.0
            ));
        }
    }
    report.finish()
}

/// What `rlcpc bench` prints: an aligned table as the cases finish, or with `json` one
/// JSON object (`{"cases": [{"case", "median", "runs"}], "notes": [...]}`) at the end.
pub struct Report {
    json: bool,
    cases: RefCell<Vec<serde_json::Value>>,
    notes: RefCell<Vec<String>>,
}

impl Report {
    pub fn new(json: bool) -> Self {
        Report {
            json,
            cases: Default::default(),
            notes: Default::default(),
        }
    }

    fn header(&self, line: String) {
        if !self.json {
            crate::outln!("{line}");
        }
    }

    fn case(&self, name: impl std::fmt::Display, median: f64, runs: Vec<f64>) {
        if self.json {
            self.cases.borrow_mut().push(
                serde_json::json!({ "case": name.to_string(), "median": median, "runs": runs }),
            );
        } else if median < 1000.0 {
            crate::outln!("{name:<40} {median:>14.1}   {runs:?}");
        } else {
            crate::outln!("{name:<40} {median:>14.0}   {runs:?}");
        }
    }

    fn note(&self, line: String) {
        if self.json {
            self.notes.borrow_mut().push(line.trim().to_string());
        } else {
            crate::outln!("{line}");
        }
    }

    fn finish(&self) -> Result<()> {
        if self.json {
            crate::outln!(
                "{}",
                serde_json::json!({ "cases": *self.cases.borrow(), "notes": *self.notes.borrow() })
            );
        }
        Ok(())
    }
}
