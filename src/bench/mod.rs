//! `rlcpc bench`: throughput and time-to-solve figures, as medians over repeats.
//!
//! This module holds the measurements (one function per kind of workload, the machine's
//! peak, FLOP counts for the roofline); [`suite`] runs them as the command's table.

pub mod suite;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use candle_core::Device;
use rand::{Rng, SeedableRng};
use rlcpc_envs::{EnvConfig, SeededRng};

use crate::config::{AuxConfig, AuxKind, Config};
use crate::rl::train::{train, TrainOptions};

pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let n = s.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        s[n / 2]
    } else {
        0.5 * (s[n / 2 - 1] + s[n / 2])
    }
}

/// This process's peak resident memory in MiB (Linux's `VmHWM`; `None` elsewhere).
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// The cases of `rlcpc bench --scaling`: (environments, actor threads).
pub fn scaling_cases() -> Vec<(usize, usize)> {
    let mut v = Vec::new();
    for workers in [1, 2] {
        for envs in [16, 64, 256, 1024] {
            v.push((envs, workers));
        }
    }
    v
}

/// `(steps/s, peak MiB)` from the lines `rlcpc train` prints at the end of a run.
pub fn parse_train_output(stdout: &str) -> Option<(f64, Option<f64>)> {
    let sps = stdout
        .lines()
        .find_map(|l| {
            l.split(" steps/s)")
                .next()
                .filter(|_| l.contains(" steps/s)"))
        })?
        .rsplit('(')
        .next()?
        .trim()
        .parse()
        .ok()?;
    let peak = stdout.lines().find_map(|l| {
        l.strip_prefix("peak memory: ")?
            .split(" MiB")
            .next()?
            .parse()
            .ok()
    });
    Some((sps, peak))
}

/// Raw environment throughput: one thread, uniformly random actions, auto-reset; runs
/// `max_steps` steps or `max_secs` seconds, whichever comes first (checked every 1,000).
pub fn env_steps_per_sec(cfg: &EnvConfig, max_steps: u64, max_secs: f64) -> Result<f64> {
    let mut env = rlcpc_envs::make(cfg)?;
    let n_actions = match env.action_space() {
        rlcpc_envs::Space::Discrete(n) => n,
        _ => 1,
    };
    let mut obs = vec![0.0; env.observation_space().flat_dim()];
    let mut rng = SeededRng::seed_from_u64(0);
    env.reset_into(Some(0), &mut obs);
    let t = Instant::now();
    let mut steps = 0;
    while steps < max_steps && t.elapsed().as_secs_f64() < max_secs {
        for _ in 0..1000 {
            let o = env.step_into(rng.random_range(0..n_actions), &mut obs)?;
            if o.terminated || o.truncated {
                env.reset_into(None, &mut obs);
            }
        }
        steps += 1000;
    }
    Ok(steps as f64 / t.elapsed().as_secs_f64())
}

/// The environments `rlcpc bench` measures: every registered one with its defaults, and
/// the Lab tasks once more with the symbolic grid view.
pub fn env_cases() -> Vec<(String, EnvConfig)> {
    let mut v = Vec::new();
    for e in rlcpc_envs::registry() {
        v.push((e.id.to_string(), EnvConfig::new(e.id)));
        if e.id.starts_with("lab/") {
            let mut c = EnvConfig::new(e.id);
            c.options.insert("obs".into(), "grid".into());
            v.push((format!("{} (grid)", e.id), c));
        }
    }
    v
}

/// End-to-end training of `cfg` for `steps` env steps (no early stop, no files
/// written): its throughput (`sps`) and time per phase (`phases_ms`).
pub fn train_run(
    cfg: &Config,
    steps: u64,
    device: &Device,
) -> Result<crate::rl::train::TrainSummary> {
    let mut cfg = cfg.clone();
    cfg.run.total_steps = steps;
    cfg.run.target_return = 0.0;
    cfg.run.log_every = u64::MAX / 2;
    train(&cfg, &in_memory(device), Arc::new(AtomicBool::new(false)))
}

/// The Lab cases of `rlcpc bench`: the watermaze preset (symbolic grid, MLP + LSTM, CPC),
/// the same task on RGB frames with the conv encoder, that again in async mode (the
/// actors collect while the learner updates; V-trace corrects the policy lag), and on RGB
/// with the CURL and CPC|A heads instead.
pub fn lab_cases(watermaze: &Config) -> Vec<(String, Config)> {
    let grid = watermaze.clone();
    let mut rgb = watermaze.clone();
    rgb.env.options.insert("obs".into(), "rgb".into());
    rgb.model.encoder = crate::config::EncoderKind::Conv;
    let mut rgb_async = rgb.clone();
    rgb_async.run.mode = rlcpc_agents::Mode::Async;
    rgb_async.algo.vtrace = true;
    let mut rgb_curl = rgb.clone();
    rgb_curl.aux.set_kind(AuxKind::Curl);
    let mut rgb_cpca = rgb.clone();
    rgb_cpca.aux.set_kind(AuxKind::Cpca);
    let k = horizon(watermaze);
    vec![
        (format!("train lab grid mlp+lstm, aux cpc (K={k})"), grid),
        (format!("train lab rgb conv+lstm, aux cpc (K={k})"), rgb),
        (
            format!("train lab rgb conv+lstm, aux cpc (K={k}), async"),
            rgb_async,
        ),
        ("train lab rgb conv+lstm, aux curl".into(), rgb_curl),
        ("train lab rgb conv+lstm, aux cpca".into(), rgb_cpca),
    ]
}

/// The CPC horizon K of a preset with a predicting head (0 without one), for case names.
fn horizon(cfg: &Config) -> usize {
    cfg.aux.predict().map_or(0, |p| p.horizon)
}

/// One line of phase times, e.g. `collect 2.19 (env 0.31) | forward 1.56 ...` (ms per
/// update).
pub fn phases_line(p: &crate::rl::train::PhaseTimes) -> String {
    format!(
        "ms/update: collect {:.2} (env {:.2}) | forward {:.2} loss {:.2} aux {:.2} backward {:.2} optimiser {:.2} publish {:.2}",
        p.collect, p.env, p.forward, p.loss, p.aux, p.backward, p.optimiser, p.publish
    )
}

/// Options for a run that writes nothing and shows no progress.
fn in_memory(device: &Device) -> TrainOptions {
    TrainOptions {
        out: std::env::temp_dir(),
        resume: false,
        device: device.clone(),
        progress: false,
        write: false,
    }
}

/// The throughput cases of `rlcpc bench`: (name, config).
pub fn throughput_cases(mlp: &Config, lstm_cpc: &Config) -> [(String, Config); 3] {
    let mut lstm_none = lstm_cpc.clone();
    lstm_none.aux.set_kind(AuxKind::None);
    [
        ("train mlp, aux none".into(), mlp.clone()),
        ("train lstm, aux none".into(), lstm_none),
        (
            format!("train lstm, aux cpc (K={})", horizon(lstm_cpc)),
            lstm_cpc.clone(),
        ),
    ]
}

/// The POPGym cases of `rlcpc bench`: the `popgym` preset (LSTM, RepeatPreviousEasy)
/// without a head and with each head that predicts.
pub struct PopgymCases {
    pub none: (String, Config),
    pub cpc: (String, Config),
    pub cpca: (String, Config),
}

pub fn popgym_cases(popgym: &Config) -> PopgymCases {
    let case = |kind: AuxKind| {
        let mut c = popgym.clone();
        c.aux.set_kind(kind);
        let k = if kind == AuxKind::None {
            String::new()
        } else {
            format!(" (K={})", horizon(&c))
        };
        (format!("train popgym lstm, aux {}{k}", kind.as_str()), c)
    };
    PopgymCases {
        none: case(AuxKind::None),
        cpc: case(AuxKind::Cpc),
        cpca: case(AuxKind::Cpca),
    }
}

/// Time to reach the target return: `(seed, env steps, seconds)` or `None` if not reached
/// within the budget.
pub fn solve(cfg: &Config, seed: u64, device: &Device) -> Result<Option<(u64, f64)>> {
    let mut cfg = cfg.clone();
    cfg.run.seed = seed;
    cfg.run.log_every = u64::MAX / 2;
    Ok(train(&cfg, &in_memory(device), Arc::new(AtomicBool::new(false)))?.solved)
}

/// Audio CPC training throughput in windows per second on `device` (forward, InfoNCE,
/// backward and Adam step; `steps` timed after one warm-up step), on
/// [`generated_audio`] held in memory (throughput does not depend on what is said).
pub fn audio_windows_per_sec(
    cfg: &crate::pretrain::audio::AudioCpcConfig,
    steps: u64,
    device: &Device,
) -> Result<f64> {
    let set = generated_audio(cfg.data.window, cfg.data.sample_rate, 64);
    let mut obj = crate::pretrain::audio::AudioCpc::new(cfg, set, device)?;
    samples_per_sec(&mut obj, &cfg.train, steps)
}

/// `n` clips of two windows of uniform noise, from 4 speakers, named as FSDD names them.
pub fn generated_audio(window: usize, sample_rate: u32, n: usize) -> crate::data::audio::AudioSet {
    use crate::data::audio::{AudioSet, Layout, Utterance};
    let mut rng = SeededRng::seed_from_u64(1);
    let utterances = (0..n)
        .map(|i| Utterance {
            path: format!("{}_s{}_{i}.wav", i % 10, i % 4).into(),
            wave: (0..2 * window)
                .map(|_| rng.random_range(-0.3..0.3))
                .collect(),
            labels: [("speaker".to_string(), format!("s{}", i % 4))].into(),
            phones: None,
        })
        .collect();
    AudioSet {
        root: "(generated)".into(),
        layout: Layout::Fsdd,
        sample_rate,
        utterances,
        skipped: Vec::new(),
    }
}

/// Image CPC training throughput in images per second on `device`, on generated images
/// of `[h, w, c]` held in memory (as for audio, content does not change the cost).
pub fn images_per_sec(
    cfg: &crate::pretrain::image::ImageCpcConfig,
    (h, w, c): (usize, usize, usize),
    steps: u64,
    device: &Device,
) -> Result<f64> {
    let set = random_images((h, w, c), 256);
    let mut obj = crate::pretrain::image::ImageCpc::new(cfg, set, device)?;
    samples_per_sec(&mut obj, &cfg.train, steps)
}

/// SimCLR's or MoCo's training throughput (`cfg.objective`) in images per second (two
/// augmented views each), on generated images held in memory.
pub fn view_images_per_sec(
    cfg: &crate::pretrain::views::ViewsConfig,
    shape: (usize, usize, usize),
    steps: u64,
) -> Result<f64> {
    let set = random_images(shape, cfg.train.batch.max(256));
    let mut obj = crate::pretrain::views::Views::new(cfg, set, None, serde_json::Value::Null)?;
    samples_per_sec(&mut obj, &cfg.train, steps)
}

/// `n` images of `[h, w, c]` with uniform random pixels in 10 classes.
pub fn random_images((h, w, c): (usize, usize, usize), n: usize) -> crate::data::images::ImageSet {
    let mut rng = SeededRng::seed_from_u64(1);
    crate::data::images::ImageSet {
        height: h,
        width: w,
        channels: c,
        pixels: (0..n * h * w * c)
            .map(|_| rng.random_range(0.0..1.0))
            .collect(),
        labels: (0..n as u32).map(|i| i % 10).collect(),
        classes: (0..10).map(|i| i.to_string()).collect(),
        held_out: None,
        skipped: Vec::new(),
    }
}

/// Text CPC training throughput in sentences per second on `device`, on
/// [`generated_corpus`] held in memory (the cost depends on sentence lengths and the
/// vocabulary size, not on what is said).
pub fn sentences_per_sec(
    cfg: &crate::pretrain::text::TextCpcConfig,
    steps: u64,
    device: &Device,
) -> Result<f64> {
    let corpus = generated_corpus(8, 2000);
    let mut obj = crate::pretrain::text::TextCpc::new(cfg, &corpus, device)?;
    samples_per_sec(&mut obj, &cfg.train, steps)
}

/// `files` documents of `sentences` sentences of 5–40 words drawn from 5,000 made-up words.
pub fn generated_corpus(files: usize, sentences: usize) -> crate::data::text::Corpus {
    let mut rng = SeededRng::seed_from_u64(1);
    let documents = (0..files)
        .map(|_| {
            (0..sentences)
                .map(|_| {
                    let n = rng.random_range(5..=40);
                    (0..n)
                        .map(|_| format!("w{}", rng.random_range(0..5000)))
                        .collect()
                })
                .collect()
        })
        .collect();
    crate::data::text::Corpus {
        files: (0..files)
            .map(|i| format!("generated{i}.txt").into())
            .collect(),
        documents,
        latin1: Vec::new(),
    }
}

/// Samples per second of `steps` full optimiser steps (forward, loss, backward, Adam)
/// of a standalone trainer's objective, after one warm-up step.
pub fn samples_per_sec(
    obj: &mut dyn crate::pretrain::Objective,
    train: &crate::pretrain::TrainSection,
    steps: u64,
) -> Result<f64> {
    let mut optim = rlcpc_agents::Optimizer::new(
        rlcpc_agents::OptimConfig {
            kind: rlcpc_agents::OptimKind::Adam,
            lr: train.lr,
            eps: 1e-8,
            ..Default::default()
        },
        obj.varmap()
            .all_vars()
            .into_iter()
            .enumerate()
            .map(|(i, v)| (i.to_string(), v))
            .collect(),
    )?;
    let mut step = |obj: &mut dyn crate::pretrain::Objective| -> Result<usize> {
        let out = obj.step(train.batch)?;
        let mut grads = out.loss.backward()?;
        obj.complete_grads(&mut grads)?;
        optim.step(&grads, train.lr, 1.0)?;
        Ok(out.samples)
    };
    step(obj)?;
    let t = Instant::now();
    let mut samples = 0;
    for _ in 0..steps {
        samples += step(obj)?;
    }
    Ok(samples as f64 / t.elapsed().as_secs_f64())
}

/// GFLOP/s of an `n × n × n` f32 matrix product with the `gemm` crate (the kernels
/// candle and the lean path use) on `threads` threads: the best of repeated products
/// over at least `secs` seconds, after one warm-up.
pub fn gemm_gflops(n: usize, threads: usize, secs: f64) -> f64 {
    let a: Vec<f32> = (0..n * n).map(|i| (i % 7) as f32 * 0.1).collect();
    let b: Vec<f32> = (0..n * n).map(|i| (i % 5) as f32 * 0.1).collect();
    let mut c = vec![0f32; n * n];
    let par = match threads {
        0 | 1 => gemm::Parallelism::None,
        t => gemm::Parallelism::Rayon(t),
    };
    // A pool of exactly `threads` threads: the global one may have been sized by
    // RAYON_NUM_THREADS for the agent's runs (`train::set_learner_threads`).
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .build()
        .expect("a thread pool");
    let mut product = || {
        // SAFETY: a, b and c are n × n, row-major, and the strides stay inside them.
        pool.install(|| unsafe {
            gemm::gemm(
                n,
                n,
                n,
                c.as_mut_ptr(),
                1,
                n as isize,
                false,
                a.as_ptr(),
                1,
                n as isize,
                b.as_ptr(),
                1,
                n as isize,
                1.0,
                1.0,
                false,
                false,
                false,
                par,
            )
        })
    };
    product();
    let (start, mut best) = (Instant::now(), f64::INFINITY);
    while start.elapsed().as_secs_f64() < secs || best.is_infinite() {
        let t = Instant::now();
        product();
        best = best.min(t.elapsed().as_secs_f64());
    }
    2.0 * (n as f64).powi(3) / best / 1e9
}

/// Memory bandwidth in GB/s on `threads` threads: STREAM's triad `a = b + s·c` over
/// arrays of `len` f32 each (far larger than the caches), counted as STREAM counts it
/// (12 bytes per element: two reads, one write); the best of repeats over `secs`.
pub fn triad_gbs(len: usize, threads: usize, secs: f64) -> f64 {
    let (b, c) = (vec![1f32; len], vec![2f32; len]);
    let mut a = vec![0f32; len];
    let chunk = len.div_ceil(threads.max(1));
    let mut triad = |s: f32| {
        std::thread::scope(|scope| {
            for ((a, b), c) in a
                .chunks_mut(chunk)
                .zip(b.chunks(chunk))
                .zip(c.chunks(chunk))
            {
                scope.spawn(move || {
                    for ((a, b), c) in a.iter_mut().zip(b).zip(c) {
                        *a = b + s * c;
                    }
                });
            }
        })
    };
    triad(3.0);
    let (start, mut best) = (Instant::now(), f64::INFINITY);
    while start.elapsed().as_secs_f64() < secs || best.is_infinite() {
        let t = Instant::now();
        triad(3.0);
        best = best.min(t.elapsed().as_secs_f64());
    }
    std::hint::black_box(&a);
    12.0 * len as f64 / best / 1e9
}

/// FLOPs per env step of training the agent of `cfg` ([`crate::nn::flops`]): the actors'
/// forward step and the learner's forward and backward one, and for the CPC head its
/// predictions and scores over the pairs an unroll without episode ends gives (the mean
/// of 16 draws, spread over the unroll's steps). Also what was left out, for the note.
pub fn agent_step_flops(cfg: &Config) -> Result<(f64, String)> {
    use crate::nn::flops::{linear, TRAIN};
    let env = rlcpc_envs::make(&cfg.env)?;
    let spec = crate::nn::NetSpec::for_env(&cfg.model, env.as_ref()).map_err(anyhow::Error::msg)?;
    let net = spec.forward_flops() * (1.0 + TRAIN);
    let (t, b) = (cfg.algo.unroll, cfg.env.num_envs);
    match &cfg.aux {
        AuxConfig::None => Ok((net, "network".into())),
        AuxConfig::Cpc(c) => {
            let s = crate::contrastive::cpc::CpcSampling::from(c);
            let first = vec![0.0; t * b];
            let mut rng = SeededRng::seed_from_u64(0);
            let pairs = (0..16)
                .map(|_| crate::contrastive::cpc::sample_pairs(&first, t, b, &s, &mut rng).len())
                .sum::<usize>() as f64
                / 16.0;
            let (dz, dc) = (spec.feature_dim(), spec.context_dim());
            let per_pair = linear(dc, dz) + linear(dz, 1 + s.num_negatives);
            Ok((
                net + TRAIN * pairs * per_pair / (t * b) as f64,
                format!("network and CPC head ({pairs:.0} pairs per update)"),
            ))
        }
        AuxConfig::Curl(c) => {
            // Per update: the queries forward and backward (TRAIN), the keys forward (1),
            // and the bilinear scores (q W, then against every key) with their gradients.
            let n = c.curl_samples.min((t + 1) * b);
            let (enc, d) = (spec.encoder.forward_flops(0), spec.feature_dim());
            let scores = linear(d, d) + linear(d, n);
            let per_update = n as f64 * (enc * (TRAIN + 1.0) + TRAIN * scores);
            Ok((
                net + per_update / (t * b) as f64,
                format!("network and CURL ({n} samples per update)"),
            ))
        }
        k => Ok((
            net,
            format!("network only ({} head not counted)", k.kind().as_str()),
        )),
    }
}

/// FLOPs per image of a SimCLR or MoCo step on `[h, w, c]` images with `batch` images:
/// SimCLR trains encoder and head on both views and scores every view against the 2N
/// others; MoCo trains them on the query view, runs the momentum copy forward on the
/// key view and scores each query against its key and the queue.
pub fn view_image_flops(
    cfg: &crate::pretrain::views::ViewsConfig,
    (h, w, c): (usize, usize, usize),
    batch: usize,
) -> Result<f64> {
    use crate::nn::flops::{linear, TRAIN};
    let enc = cfg.encoder_spec(h, w, c)?;
    let mut d = enc.out_dim();
    let mut head = 0.0;
    for &x in cfg.model.head_hidden.iter().chain([&cfg.model.projection]) {
        head += linear(d, x);
        d = x;
    }
    let f = enc.forward_flops(0) + head;
    let p = cfg.model.projection;
    Ok(match cfg.objective {
        crate::pretrain::ObjectiveKind::Moco => {
            TRAIN * f + f + TRAIN * linear(p, 1 + cfg.moco.queue)
        }
        _ => 2.0 * (TRAIN * f + TRAIN * linear(p, 2 * batch)),
    })
}

/// FLOPs per window of audio CPC training: the strided convolutions and the GRU over
/// the window's frames (the predictions and scores, which depend on the sampling, are
/// not counted).
pub fn audio_window_flops(cfg: &crate::pretrain::audio::AudioCpcConfig) -> f64 {
    use crate::nn::flops::{gru, TRAIN};
    let frames = crate::nn::audio::frames(cfg.data.window, &cfg.model.strides);
    TRAIN
        * (cfg.encoder_spec().forward_flops(cfg.data.window)
            + frames as f64 * gru(cfg.model.channels, cfg.model.context))
}

/// FLOPs per image of image CPC training: the patch encoder over every patch (the
/// context network and the scores are not counted); `None` for the agent's conv as
/// patch encoder.
pub fn image_cpc_flops(
    cfg: &crate::pretrain::image::ImageCpcConfig,
    (h, w, c): (usize, usize, usize),
) -> Result<Option<f64>> {
    Ok(match cfg.encoder_spec(h, w, c)? {
        spec @ crate::nn::encoders::EncoderSpec::Patches { .. } => {
            Some(crate::nn::flops::TRAIN * spec.forward_flops(0))
        }
        _ => None,
    })
}

/// The roofline line of a workload: its FLOPs per sample, achieved GFLOP/s at `rate`
/// samples/s, and that as a share of `peak` GFLOP/s.
pub fn roofline_line(flops: f64, unit: &str, rate: f64, peak: f64, counted: &str) -> String {
    let gflops = flops * rate / 1e9;
    format!(
        "roofline: {:.2} MFLOP per {unit} ({counted}) → {gflops:.1} GFLOP/s, {:.1}% of the GEMM peak ({peak:.0} GFLOP/s)",
        flops / 1e6,
        100.0 * gflops / peak
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn train_output_gives_throughput_and_peak_memory() {
        let out = "done after 200000 env steps, 2500 updates, 830 episodes in 0.5 s (412814 steps/s); mean return (last 100 episodes): 500.0\npeak memory: 20.5 MiB (this process so far)\ncheckpoint: x\n";
        assert_eq!(parse_train_output(out), Some((412814.0, Some(20.5))));
        // Without the memory line (not Linux) the throughput still parses.
        assert_eq!(
            parse_train_output("interrupted after 1 env steps, 0 updates, 0 episodes in 0.1 s (10 steps/s); mean return (last 100 episodes): n/a"),
            Some((10.0, None))
        );
        assert_eq!(parse_train_output("error: no such preset"), None);
    }
}
