//! `rlcpc bench`: throughput cases of [`crate::bench`], medians over repeats, as a table or JSON.

use crate::bench;
use crate::config::Config;
use crate::pretrain::TrainerConfig;
use anyhow::{bail, Result};

use super::DeviceArg;
use crate::rl::train::set_learner_threads;

#[derive(clap::Args)]
pub struct Args {
    /// Env steps per training-throughput measurement (a quarter of it for the Lab
    /// agents).
    #[arg(long, default_value_t = 200_000)]
    steps: u64,
    /// Most env steps of each raw environment measurement.
    #[arg(long, default_value_t = 2_000_000)]
    env_steps: u64,
    /// Most seconds of each raw environment measurement.
    #[arg(long, default_value_t = 2.0)]
    env_seconds: f64,
    /// Measure the raw environments only (no training runs).
    #[arg(long)]
    envs_only: bool,
    /// Measure the agents' training runs only (no raw environments, no standalone
    /// trainers).
    #[arg(long, conflicts_with_all = ["envs_only", "trainers_only"])]
    train_only: bool,
    /// Measure the standalone trainers only: audio windows per second of the built-in
    /// cpc-audio and cpc-audio-fsdd configs, images per second of cpc-image-fashion (as
    /// built in, and with all of CPC-v2's options), of simclr-fashion and moco-fashion
    /// (the ResNet) and of simclr-lab-frames (the agent's conv encoder on 48x64 RGB),
    /// each on the lean path and through candle, and sentences per second of cpc-text.
    #[arg(long, alias = "audio-only", conflicts_with = "envs_only")]
    trainers_only: bool,
    /// With --trainers-only: measure only the trainers whose preset name contains this
    /// (e.g. `simclr`, `audio`).
    #[arg(long, value_name = "TEXT", requires = "trainers_only")]
    only: Option<String>,
    /// Timed optimiser steps per trainer measurement.
    #[arg(long, alias = "audio-steps", default_value_t = 10)]
    trainer_steps: u64,
    /// Repeats per measurement (the median is reported).
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// Also train the presets to their target return, once per seed.
    #[arg(long)]
    solve: bool,
    /// Seeds for --solve.
    #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
    seeds: Vec<u64>,
    /// Device of the agent's learner (as for train) and of the CPC trainers (audio,
    /// image, text); SimCLR and MoCo run on the CPU.
    #[arg(long, default_value = "cpu")]
    device: DeviceArg,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
    /// Measure how training scales instead: env steps/s of the default preset (CartPole,
    /// MLP) with 16, 64, 256 and 1024 environments on 1 and 2 actor threads, and each
    /// run's peak memory (every run is a child `rlcpc train`, so the peak is its own), with
    /// the memory each further environment costs.
    #[arg(long, conflicts_with_all = ["envs_only", "trainers_only", "train_only", "solve"])]
    scaling: bool,
    /// Measure this machine's peak instead: f32 GEMM GFLOP/s with the `gemm` kernels
    /// (256³ and 1024³ products, 1 thread and every core) and memory bandwidth (STREAM's
    /// triad, 1 thread and every core). The pixel workloads of a plain `rlcpc bench`
    /// print their FLOPs per sample, GFLOP/s and share of the GEMM peak ("roofline").
    #[arg(long, conflicts_with_all = ["envs_only", "trainers_only", "train_only", "solve", "scaling"])]
    peak: bool,
}

pub fn run(args: Args) -> Result<()> {
    let Args {
        steps,
        env_steps,
        env_seconds,
        envs_only,
        train_only,
        trainers_only,
        only,
        trainer_steps,
        repeats,
        solve,
        seeds,
        device: dev,
        json,
        scaling,
        peak,
    } = args;
    let report = BenchReport::new(json);
    if repeats == 0 {
        bail!("--repeats must be at least 1 (the median of the runs is reported)");
    }
    if env_steps == 0 || !(env_seconds.is_finite() && env_seconds > 0.0) {
        bail!("--env-steps must be at least 1 and --env-seconds finite and positive (got {env_steps}, {env_seconds})");
    }
    if steps == 0 || trainer_steps == 0 {
        bail!("--steps and --trainer-steps must be at least 1");
    }
    // Where the trainers run, for their notes (SimCLR / MoCo run on the CPU).
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let on = match dev {
        DeviceArg::Cpu => format!("on the cpu, {threads} threads"),
        DeviceArg::Cuda(n) => format!("on cuda:{n}"),
    };
    let dev = dev.device()?;
    if peak {
        return peak_table(&report, repeats, threads);
    }
    // The roof the pixel workloads are measured against: every core's GEMM peak.
    let roof = std::cell::OnceCell::new();
    let roof = || -> f64 {
        *roof.get_or_init(|| {
            let runs: Vec<f64> = (0..repeats)
                .map(|_| bench::gemm_gflops(1024, threads, 0.5))
                .collect();
            let m = bench::median(&runs);
            report.case(
                format!("peak gemm f32 1024³, {threads} threads (GFLOP/s)"),
                m,
                runs.iter().map(|x| x.round()).collect::<Vec<_>>(),
            );
            m
        })
    };
    // The trainers run on every core, as `rlcpc pretrain` does; the agents' runs on the
    // learner threads their configs ask for (set below, before the first of them).
    let mlp = Config::load(None, &[])?;
    let lstm = Config::load(Some(std::path::Path::new("cartpole-lstm-cpc")), &[])?;
    let audio = |name: &str| -> Result<()> {
        // As built (`train.learner = auto`: the lean encoder, GRU and loss on the CPU), then through
        // candle's autograd, the reference path, in the same run.
        let learners: &[&str] = if dev.is_cpu() {
            &["auto", "candle"]
        } else {
            &["auto"]
        };
        for &learner in learners {
            let cfg = crate::pretrain::audio::AudioCpcConfig::load(
                Some(std::path::Path::new(name)),
                &[format!("train.learner=\"{learner}\"")],
            )?;
            set_learner_threads(0);
            let runs: Vec<f64> = (0..repeats)
                .map(|_| bench::audio_windows_per_sec(&cfg, trainer_steps, &dev))
                .collect::<Result<_>>()?;
            let path = if learner == "auto" { "" } else { ", candle" };
            report.case(
                format!("cpc audio {name}{path} (windows/s)"),
                bench::median(&runs),
                runs.iter()
                    .map(|x| (x * 10.0).round() / 10.0)
                    .collect::<Vec<_>>(),
            );
            report.note(format!(
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
            report.note(format!(
                "{:<40} {}",
                "",
                bench::roofline_line(
                    bench::audio_window_flops(&cfg),
                    "window",
                    bench::median(&runs),
                    roof(),
                    "convolutions and GRU"
                )
            ));
        }
        Ok(())
    };
    let image = |label: &str, overrides: &[String]| -> Result<()> {
        // As built (`train.learner = auto`: the lean patch encoder on the CPU), then
        // through candle's autograd, in the same run.
        let learners: &[&str] = if dev.is_cpu() {
            &["auto", "candle"]
        } else {
            &["auto"]
        };
        for &learner in learners {
            let mut sets = overrides.to_vec();
            sets.push(format!("train.learner=\"{learner}\""));
            let cfg = crate::pretrain::image::ImageCpcConfig::load(
                Some(std::path::Path::new("cpc-image-fashion")),
                &sets,
            )?;
            set_learner_threads(0);
            let runs: Vec<f64> = (0..repeats)
                .map(|_| bench::images_per_sec(&cfg, (28, 28, 1), trainer_steps, &dev))
                .collect::<Result<_>>()?;
            let path = if learner == "auto" { "" } else { ", candle" };
            report.case(
                format!("cpc image {label}{path} (images/s)"),
                bench::median(&runs),
                runs.iter().map(|x| x.round()).collect::<Vec<_>>(),
            );
            report.note(format!(
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
            if let Some(f) = bench::image_cpc_flops(&cfg, (28, 28, 1))? {
                report.note(format!(
                    "{:<40} {}",
                    "",
                    bench::roofline_line(f, "image", bench::median(&runs), roof(), "patch encoder")
                ));
            }
        }
        Ok(())
    };
    let views = |preset: &str, shape: (usize, usize, usize)| -> Result<()> {
        // As built (`train.learner = auto`: the lean path), then through candle's
        // autograd, the reference path, in the same run.
        let (h, w, c) = shape;
        for learner in ["auto", "candle"] {
            let cfg = crate::pretrain::views::ViewsConfig::load(
                Some(std::path::Path::new(preset)),
                &[format!("train.learner=\"{learner}\"")],
            )?;
            set_learner_threads(0);
            let runs: Vec<f64> = (0..repeats)
                .map(|_| bench::view_images_per_sec(&cfg, shape, trainer_steps))
                .collect::<Result<_>>()?;
            let path = if learner == "auto" { "" } else { ", candle" };
            report.case(
                format!(
                    "{} image {preset}{path} (images/s)",
                    crate::config::user_name(&cfg.objective)
                ),
                bench::median(&runs),
                runs.iter().map(|x| x.round()).collect::<Vec<_>>(),
            );
            report.note(format!(
                "{:<40} {h}x{w}x{c}, two views each, batch {}, {}, head {:?} -> {}, on the cpu ({})",
                "",
                cfg.train.batch,
                cfg.encoder_spec(h, w, c)?.describe(),
                cfg.model.head_hidden,
                cfg.model.projection,
                if learner == "auto" { "the lean path" } else { "candle's autograd" }
            ));
            report.note(format!(
                "{:<40} {}",
                "",
                bench::roofline_line(
                    bench::view_image_flops(&cfg, shape, cfg.train.batch)?,
                    "image",
                    bench::median(&runs),
                    roof(),
                    "encoder, head and scores"
                )
            ));
        }
        Ok(())
    };
    let v2: Vec<String> = [
        "model.layer_norm=true",
        "cpc.directions=[\"down\",\"up\",\"right\",\"left\"]",
        "augment.crop=2",
        "augment.flip=true",
    ]
    .map(String::from)
    .to_vec();
    let text = || -> Result<()> {
        let cfg = crate::pretrain::text::TextCpcConfig::load(
            Some(std::path::Path::new("cpc-text")),
            &[],
        )?;
        set_learner_threads(0);
        let runs: Vec<f64> = (0..repeats)
            .map(|_| bench::sentences_per_sec(&cfg, trainer_steps, &dev))
            .collect::<Result<_>>()?;
        report.case(
            "cpc text cpc-text (sentences/s)",
            bench::median(&runs),
            runs.iter().map(|x| x.round()).collect::<Vec<_>>(),
        );
        report.note(format!(
                "{:<40} batch {} passages of {} sentences (5-40 words), vocabulary {}, embedding {}, {} features, GRU {}, {on}",
                "",
                cfg.train.batch,
                cfg.data.sequence,
                cfg.data.vocab,
                cfg.model.embedding,
                cfg.model.features,
                cfg.model.context
            ));
        Ok(())
    };
    if scaling {
        return scaling_table(&report, steps, repeats);
    }
    if trainers_only {
        report.header(format!(
            "{:<40} {:>14}   runs",
            "case", "samples/s (median)"
        ));
        roof();
        let wanted = |preset: &str| only.as_deref().is_none_or(|o| preset.contains(o));
        for preset in ["cpc-audio", "cpc-audio-fsdd"]
            .into_iter()
            .filter(|p| wanted(p))
        {
            audio(preset)?;
        }
        if wanted("cpc-image-fashion") {
            image("cpc-image-fashion", &[])?;
            image("cpc-image-fashion + CPC-v2", &v2)?;
        }
        for preset in ["simclr-fashion", "moco-fashion"]
            .into_iter()
            .filter(|p| wanted(p))
        {
            views(preset, (28, 28, 1))?;
        }
        if wanted("simclr-lab-frames") {
            // Lab's default RGB view, through the agent's conv encoder.
            views("simclr-lab-frames", (48, 64, 3))?;
        }
        if wanted("cpc-text") {
            text()?;
        }
        return report.finish();
    }
    report.header(format!("{:<40} {:>14}   runs", "case", "steps/s (median)"));
    // Raw environment throughput, one thread (agent steps, action repeat included).
    for (name, cfg) in bench::env_cases().into_iter().filter(|_| !train_only) {
        let runs: Vec<f64> = (0..repeats)
            .map(|_| bench::env_steps_per_sec(&cfg, env_steps, env_seconds))
            .collect::<Result<_>>()?;
        report.case(
            format!("env {name}"),
            bench::median(&runs),
            runs.iter().map(|x| x.round()).collect::<Vec<_>>(),
        );
    }
    if envs_only {
        return report.finish();
    }
    if !train_only {
        roof();
        audio("cpc-audio")?;
        image("cpc-image-fashion", &[])?;
        image("cpc-image-fashion + CPC-v2", &v2)?;
        views("simclr-fashion", (28, 28, 1))?;
        views("moco-fashion", (28, 28, 1))?;
        views("simclr-lab-frames", (48, 64, 3))?;
        text()?;
    }
    set_learner_threads(1);
    let [mlp_none, lstm_none, lstm_cpc] = bench::throughput_cases(&mlp, &lstm);
    // The median run's throughput, with its time per phase.
    let median_with = |(name, cfg): &(String, Config), steps: u64| -> Result<f64> {
        let mut runs = (0..repeats)
            .map(|_| bench::train_run(cfg, steps, &dev))
            .collect::<Result<Vec<_>>>()?;
        let sps: Vec<f64> = runs.iter().map(|r| r.sps).collect();
        let m = bench::median(&sps);
        report.case(name, m, sps.iter().map(|x| x.round()).collect::<Vec<_>>());
        runs.sort_by(|a, b| a.sps.total_cmp(&b.sps));
        report.note(format!(
            "{:<40} {}",
            "",
            bench::phases_line(&runs[runs.len() / 2].phases_ms)
        ));
        Ok(m)
    };
    let median_of = |case: &(String, Config)| median_with(case, steps);
    median_of(&mlp_none)?;
    let (none, cpc) = (median_of(&lstm_none)?, median_of(&lstm_cpc)?);
    // Share of the time per step spent in the CPC head: 1 − t(none)/t(cpc).
    report.note(format!(
        "CPC head cost: {:.1}% of the time per env step (lstm cpc vs lstm none)",
        100.0 * (1.0 - cpc / none)
    ));
    let popgym = Config::load(Some(std::path::Path::new("popgym")), &[])?;
    let pg: Vec<f64> = bench::popgym_cases(&popgym)
        .iter()
        .map(median_of)
        .collect::<Result<_>>()?;
    report.note(format!(
        "{} ({}): CPC head {:.1}%, CPC|A head {:.1}% of the time per env step",
        popgym.env.id,
        "LSTM 64, 16 envs",
        100.0 * (1.0 - pg[1] / pg[0]),
        100.0 * (1.0 - pg[2] / pg[0])
    ));
    let watermaze = Config::load(Some(std::path::Path::new("lab-watermaze")), &[])?;
    roof();
    for case in bench::lab_cases(&watermaze) {
        let m = median_with(&case, (steps / 4).max(1))?;
        let (f, counted) = bench::agent_step_flops(&case.1)?;
        report.note(format!(
            "{:<40} {}",
            "",
            bench::roofline_line(f, "env step", m, roof(), &counted)
        ));
    }
    if solve {
        for (name, cfg) in [("mlp, aux none", &mlp), ("lstm, aux cpc", &lstm)] {
            let mut secs = Vec::new();
            for &seed in &seeds {
                match bench::solve(cfg, seed, &dev)? {
                    Some((st, s)) => {
                        report.note(format!(
                            "solve {name}: seed {seed}: return >= {} at {st} steps, {s:.2} s",
                            cfg.run.target_return
                        ));
                        secs.push(s);
                    }
                    None => report.note(format!(
                        "solve {name}: seed {seed}: not solved within {} steps",
                        cfg.run.total_steps
                    )),
                }
            }
            report.note(format!(
                "solve {name}: {}/{} seeds solved, median {:.2} s",
                secs.len(),
                seeds.len(),
                bench::median(&secs)
            ));
        }
    }
    report.finish()?;
    Ok(())
}

/// `rlcpc bench --peak`: GEMM GFLOP/s and triad GB/s, medians of `repeats`.
fn peak_table(report: &BenchReport, repeats: usize, threads: usize) -> Result<()> {
    report.header(format!("{:<40} {:>14}   runs", "peak", "median"));
    let mut counts = vec![1];
    if threads > 1 {
        counts.push(threads);
    }
    let median_of = |name: String, f: &dyn Fn() -> f64| {
        let runs: Vec<f64> = (0..repeats).map(|_| f()).collect();
        report.case(
            name,
            bench::median(&runs),
            runs.iter().map(|x| (x * 10.0).round() / 10.0).collect(),
        );
    };
    for &t in &counts {
        for n in [256, 1024] {
            median_of(format!("gemm f32 {n}³, {t} thread(s) (GFLOP/s)"), &|| {
                bench::gemm_gflops(n, t, 0.5)
            });
        }
    }
    // 3 × 128 MiB: far beyond any cache.
    for &t in &counts {
        median_of(format!("triad, {t} thread(s) (GB/s)"), &|| {
            bench::triad_gbs(32 << 20, t, 0.5)
        });
    }
    report.note(
        "GEMM: the `gemm` crate's f32 kernels, best product of 0.5 s; triad: a = b + s·c, 12 bytes per element (STREAM's count), best of 0.5 s"
            .into(),
    );
    report.finish()
}

/// `rlcpc bench --scaling`: one child `rlcpc train` per run of each case.
fn scaling_table(report: &BenchReport, steps: u64, repeats: usize) -> Result<()> {
    use anyhow::Context;
    let exe = std::env::current_exe().context("locating the rlcpc binary")?;
    let dir = std::env::temp_dir().join(format!("rlcpc-scaling-{}", std::process::id()));
    report.header(format!(
        "{:<40} {:>14}   runs",
        "case (cartpole, mlp, sync)", "steps/s (median)"
    ));
    let mut peaks: Vec<(usize, usize, f64)> = Vec::new();
    for (envs, workers) in bench::scaling_cases() {
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
            let (sps, p) = bench::parse_train_output(&stdout)
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
            bench::median(&runs),
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

/// What `rlcpc bench` prints: an aligned table, or with `--json` one JSON object
/// (`{"cases": [{"case", "median", "runs"}], "notes": [...]}`) at the end.
struct BenchReport {
    json: bool,
    cases: std::cell::RefCell<Vec<serde_json::Value>>,
    notes: std::cell::RefCell<Vec<String>>,
}

impl BenchReport {
    fn new(json: bool) -> Self {
        BenchReport {
            json,
            cases: Default::default(),
            notes: Default::default(),
        }
    }

    fn header(&self, line: String) {
        if !self.json {
            println!("{line}");
        }
    }

    fn case(&self, name: impl std::fmt::Display, median: f64, runs: Vec<f64>) {
        if self.json {
            self.cases.borrow_mut().push(
                serde_json::json!({ "case": name.to_string(), "median": median, "runs": runs }),
            );
        } else if median < 1000.0 {
            println!("{name:<40} {median:>14.1}   {runs:?}");
        } else {
            println!("{name:<40} {median:>14.0}   {runs:?}");
        }
    }

    fn note(&self, line: String) {
        if self.json {
            self.notes.borrow_mut().push(line.trim().to_string());
        } else {
            println!("{line}");
        }
    }

    fn finish(&self) -> Result<()> {
        if self.json {
            println!(
                "{}",
                serde_json::json!({ "cases": *self.cases.borrow(), "notes": *self.notes.borrow() })
            );
        }
        Ok(())
    }
}
