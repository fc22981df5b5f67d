//! `rlcpc bench`: the flags of [`crate::bench::suite`], which runs the cases and prints
//! the table or JSON.

use anyhow::Result;

use super::DeviceArg;
use crate::bench::suite::{self, Options, Part, Report};

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
    let part = if args.peak {
        Part::Peak
    } else if args.scaling {
        Part::Scaling
    } else if args.trainers_only {
        Part::Trainers { only: args.only }
    } else if args.envs_only {
        Part::Envs
    } else if args.train_only {
        Part::Train
    } else {
        Part::All
    };
    let opts = Options {
        part,
        steps: args.steps,
        env_steps: args.env_steps,
        env_seconds: args.env_seconds,
        trainer_steps: args.trainer_steps,
        repeats: args.repeats,
        solve_seeds: if args.solve { args.seeds } else { Vec::new() },
        device: args.device.device()?,
    };
    suite::run(&opts, &Report::new(args.json))
}
