//! The `rlcpc` command line.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use candle_core::Device;
use clap::{Parser, Subcommand};
use rlcpc::bench;
use rlcpc::config::{AuxKind, Config, PRESETS};
use rlcpc::eval::ReferencePolicy;
use rlcpc::pretrain::TrainerConfig;
use rlcpc::train::{saved_config_with_notes, train, TrainOptions, CHECKPOINT};

/// Reinforcement learning with contrastive representation learning: an A2C
/// actor–learner whose recurrent policy carries an auxiliary CPC head.
#[derive(Parser)]
#[command(name = "rlcpc", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train an agent (default: the built-in configs/cartpole.toml preset).
    ///
    /// Writes to the run directory: config.toml (the resolved config), metrics.jsonl,
    /// TensorBoard event files (`tensorboard --logdir runs`) and checkpoint.safetensors.
    Train {
        /// Config file, or the name of a built-in preset (the list is filled in at run
        /// time from the presets compiled in).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Auxiliary loss: `cpc` adds the CPC head, `none` builds no head at all.
        #[arg(long, value_enum)]
        aux: Option<AuxKind>,
        /// Seed of parameters, environments, action sampling and CPC negatives.
        #[arg(long)]
        seed: Option<u64>,
        /// Run directory [default: runs/<config>-<aux>-s<seed>-<unix time>].
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Override a config value, e.g. `--set algo.unroll=16 --set run.mode=async`
        /// (TOML syntax; repeatable).
        #[arg(long = "set", value_name = "KEY.PATH=VALUE")]
        overrides: Vec<String>,
        /// Continue the run in --out from its checkpoint (its config.toml is used;
        /// --set still applies, e.g. to raise run.total_steps).
        #[arg(long, requires = "out", conflicts_with = "config")]
        resume: bool,
        /// Learner device: `cpu`, or `cuda` / `cuda:N` (needs a build with --features cuda).
        #[arg(long, default_value = "cpu")]
        device: String,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
    },
    /// Show configs: `rlcpc config show PRESET` prints a preset (or a file) with every
    /// key, its resolved value and its documentation; `rlcpc config list` the presets.
    Config {
        #[command(subcommand)]
        action: ConfigCommand,
    },
    /// Evaluate a checkpoint: mean and standard deviation of the episode return.
    Eval {
        /// A checkpoint.safetensors written by `rlcpc train`.
        #[arg(long, value_name = "PATH")]
        checkpoint: PathBuf,
        /// Episodes to average over.
        #[arg(long, default_value_t = 10)]
        episodes: usize,
        /// Seed of the first reset (later episodes continue the environment's generator).
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Sample actions from the policy instead of taking the most likely one.
        #[arg(long)]
        stochastic: bool,
        /// Print one JSON object (mean, std, min, max, every return).
        #[arg(long)]
        json: bool,
    },
    /// Write the encoder's weights and config to a safetensors file, for the standalone
    /// trainers (and PyTorch's safetensors loader).
    ExportEncoder {
        /// An agent checkpoint (or its run directory), or a trainer's checkpoint.
        #[arg(long, value_name = "PATH")]
        checkpoint: PathBuf,
        /// The encoder file to write (its folder is created; an existing file is refused
        /// unless --force).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Replace an existing --out file.
        #[arg(long)]
        force: bool,
    },
    /// Standalone contrastive trainers (no environment): `rlcpc cpc audio ...`.
    Cpc {
        #[command(subcommand)]
        modality: CpcCommand,
    },
    /// Linear probes on frozen features: audio labels, phones, image classes, text labels,
    /// or an environment's true state.
    ///
    /// On an audio corpus: multinomial logistic
    /// regression of a label (speaker, digit, ...) from mean-pooled CPC context vectors,
    /// next to a randomly initialised encoder of the same architecture and MFCCs, on the
    /// same train/test split (λ picked on a validation part of the training split). On an
    /// image set (an image encoder): the class from grid-pooled features on the test
    /// part, next to a random-init twin and the raw pixels. On a labelled text file (a
    /// text encoder): the label by k-fold cross-validation, next to a random-init twin
    /// and a bag of words. On trajectories written by `rlcpc record`: ridge regression of
    /// the true state from the features of an agent checkpoint, an exported encoder or a
    /// `cpc frames` run (belief probing), next to a random-init network and the raw
    /// observation.
    Probe {
        /// An encoder file (encoder.safetensors of a trainer, `rlcpc export-encoder`), an
        /// agent checkpoint, or a run directory (its encoder, else its checkpoint).
        #[arg(long, value_name = "PATH")]
        encoder: PathBuf,
        /// An audio directory, a directory written by `rlcpc record`, an image set, or a
        /// labelled text file (`label<TAB>text` lines or a JSON list of {text, class}).
        #[arg(long, value_name = "PATH")]
        data: PathBuf,
        /// Audio: the label to predict (speaker, digit, or a manifest column) [default:
        /// speaker]; trajectories: `state` (every true-state variable) or one variable's
        /// name [default: state].
        #[arg(long)]
        target: Option<String>,
        /// How the test set is drawn [default: as the encoder was trained, else utterance].
        #[arg(long, value_enum)]
        split: Option<rlcpc::data::SplitBy>,
        /// Share held out for testing [default: the encoder's, else 0.2].
        #[arg(long)]
        test_fraction: Option<f64>,
        /// Seed of the split [default: the encoder's, else 0].
        #[arg(long)]
        split_seed: Option<u64>,
        /// Pool context vectors (audio c_t, image c_{i,j}; the paper) or encoder outputs z
        /// [default: context; text: encoder, the sentence embedding z of the whole text;
        /// text context: the GRU's last c over the text's sentences].
        #[arg(long, value_enum)]
        features: Option<rlcpc::pretrain::audio::Pool>,
        /// Audio: how labels are read from the corpus.
        #[arg(long, value_enum, default_value = "auto")]
        layout: rlcpc::data::audio::Layout,
        /// Skip the random-init and MFCC / raw-observation baselines.
        #[arg(long)]
        no_baselines: bool,
        /// Stop at the first unreadable audio file instead of skipping it.
        #[arg(long)]
        strict: bool,
        /// Full-batch optimiser iterations of each logistic regression.
        #[arg(long, default_value_t = 500)]
        iters: usize,
        /// `--target phone`: at most this many training (and test) frames, drawn at random.
        #[arg(long, default_value_t = 10_000)]
        max_frames: usize,
        /// Images: at most this many training (and test) images, drawn at random.
        #[arg(long, default_value_t = 10_000)]
        max_images: usize,
        /// Text: cross-validation folds on a labelled set (SentEval: 10).
        #[arg(long, default_value_t = 10)]
        folds: usize,
        /// Text: at most this many labelled texts, drawn at random.
        #[arg(long, default_value_t = 5_000)]
        max_texts: usize,
        /// Text: the bag-of-words baseline keeps at most this many words (the commonest
        /// of those seen twice in the training folds).
        #[arg(long, default_value_t = 2_000)]
        bow_words: usize,
        /// Text: encoding of the labelled file (auto: UTF-8, else Latin-1, as said in the
        /// output).
        #[arg(long, value_enum, default_value = "auto")]
        encoding: rlcpc::data::text::TextEncoding,
        /// Print one JSON object (the setting and every row) instead of the table.
        #[arg(long)]
        json: bool,
        /// Images: average the features over GxG cells of the patch grid and
        /// concatenate them (1: one mean over the whole image, the paper's pooling).
        #[arg(long, default_value_t = 2, value_name = "G")]
        pool_grid: usize,
    },
    /// Record observations with the environment's true state, for CPC on frames and probes.
    ///
    /// The true state is CartPole's full state, the T-maze cue, or a Lab agent's position
    /// and heading and the goal's position. Writes DIR/trajectories.safetensors (obs,
    /// state, action, reward, first).
    Record {
        /// Registered environment id (with --checkpoint it may be left out; if given it
        /// must be the checkpoint's).
        #[arg(long)]
        env: Option<String>,
        /// A trained agent plays (its own environment and options are used).
        #[arg(long, conflicts_with_all = ["policy", "options"])]
        checkpoint: Option<PathBuf>,
        /// A reference policy plays, when no checkpoint is given.
        #[arg(long, value_enum, default_value = "random")]
        policy: ReferencePolicy,
        /// Agent steps to record.
        #[arg(long, default_value_t = 10_000)]
        steps: usize,
        /// Seed of the first reset and of the policy's sampling.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// An environment option, e.g. `--option obs=grid` (repeatable).
        #[arg(long = "option", value_name = "KEY=VALUE")]
        options: Vec<String>,
        /// Episode length limit in agent steps (0: the environment's default).
        #[arg(long, default_value_t = 0)]
        max_episode_steps: usize,
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Replace a recording already in --out.
        #[arg(long)]
        force: bool,
    },
    /// List the registered environments with their spaces, options and the built-in
    /// presets; `envs score` gives reference returns.
    Envs {
        #[command(subcommand)]
        action: Option<EnvsCommand>,
    },
    /// Plot learning curves of runs on the same axes (PNG), from their metrics.jsonl.
    Plot {
        /// Run directories.
        #[arg(required = true)]
        runs: Vec<PathBuf>,
        #[arg(long, default_value = "curve.png")]
        out: PathBuf,
        /// The metric on the y axis.
        #[arg(long, default_value = "rollout/ep_rew_mean")]
        metric: String,
        /// The metric on the x axis.
        #[arg(long, default_value = "time/total_timesteps")]
        x: String,
        /// Curve labels, in the order of the runs [default: the directory names].
        #[arg(long = "label")]
        labels: Vec<String>,
    },
    /// Measure throughput (env steps per second, medians over repeats) and, with
    /// --solve, the steps and seconds CartPole takes to reach its target return.
    Bench {
        /// Env steps per training-throughput measurement.
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
        /// Measure the standalone trainers only: audio windows per second of the built-in
        /// cpc-audio and cpc-audio-fsdd configs, images per second of cpc-image-fashion
        /// (as built in, and with all of CPC-v2's options), sentences per second of
        /// cpc-text.
        #[arg(long, alias = "trainers-only", conflicts_with = "envs_only")]
        audio_only: bool,
        /// Timed optimiser steps per trainer measurement.
        #[arg(long, default_value_t = 10)]
        audio_steps: u64,
        /// Repeats per measurement (the median is reported).
        #[arg(long, default_value_t = 3)]
        repeats: usize,
        /// Also train the presets to their target return, once per seed.
        #[arg(long)]
        solve: bool,
        /// Seeds for --solve.
        #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
        seeds: Vec<u64>,
        /// Learner device, as for train.
        #[arg(long, default_value = "cpu")]
        device: String,
        /// Print one JSON object instead of the table.
        #[arg(long)]
        json: bool,
    },
}

/// Flags every standalone trainer shares.
#[derive(clap::Args)]
struct TrainerArgs {
    /// Config file, or a built-in preset's name [default: the trainer's built-in config].
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The data: a directory of audio files (`cpc audio`), one written by `rlcpc record`
    /// (`cpc frames`), an image set (`cpc image`: IDX, CIFAR-10 binary, class folders),
    /// or a text file or directory of *.txt files (`cpc text`).
    #[arg(long, value_name = "DIR")]
    data: PathBuf,
    /// Run directory.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Override a config value, e.g. `--set train.steps=500 --set cpc.negatives=speaker`
    /// (TOML syntax; repeatable).
    #[arg(long = "set", value_name = "KEY.PATH=VALUE")]
    overrides: Vec<String>,
    /// Continue the run in --out (its config.toml is used; --set still applies).
    #[arg(long, conflicts_with = "config")]
    resume: bool,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

#[derive(Subcommand)]
enum CpcCommand {
    /// CPC on raw audio (van den Oord et al. 2018, §3.1): strided 1-D convolutions over
    /// 16 kHz waveforms, a GRU, W_1..W_K and InfoNCE. Reads WAV/FLAC under --data
    /// (labels from FSDD or LibriSpeech names, a manifest.csv, or the first folder);
    /// trains on the training split only. Writes config.toml, metrics.jsonl, TensorBoard
    /// events, checkpoint.safetensors and encoder.safetensors (for `rlcpc probe`).
    /// Built-in configs: cpc-audio (default), cpc-audio-fsdd.
    Audio {
        #[command(flatten)]
        args: TrainerArgs,
        /// Stop at the first unreadable audio file instead of reporting and skipping it.
        #[arg(long)]
        strict: bool,
        /// Threads for candle's CPU kernels (0: all cores).
        #[arg(long, default_value_t = 0)]
        threads: usize,
    },
    /// CPC on frames recorded by `rlcpc record`, with the agent's encoder (same [model]
    /// settings) and an LSTM context: its encoder.safetensors initialises an agent
    /// (`--set model.init_encoder='"DIR/encoder.safetensors"'`) or is probed for the true
    /// state by `rlcpc probe`. Built-in config: cpc-frames.
    Frames {
        #[command(flatten)]
        args: TrainerArgs,
    },
    /// CPC on images (van den Oord et al. 2018, §3.2): a grid of overlapping patches, a
    /// conv patch encoder, a context network that sees only the rows above, W_k for the
    /// rows below, InfoNCE against the other patches of the batch. Reads IDX files
    /// (MNIST, Fashion-MNIST; the train part), CIFAR-10 binary batches or class folders
    /// of PNG/JPEG. CPC-v2's refinements are options: model.layer_norm, cpc.directions
    /// (down, up, right, left), [augment] crop / flip / color_drop, larger patches.
    /// Built-in config: cpc-image-fashion.
    Image {
        #[command(flatten)]
        args: TrainerArgs,
    },
    /// CPC on text (van den Oord et al. 2018, §3.3): sentences split from plain-text
    /// files (a file, or every *.txt under --data; one document per file), a word
    /// vocabulary, a sentence encoder (embedding, 1-D convolution + ReLU, mean over the
    /// words), a GRU over consecutive sentences, W_1..W_3 for the next sentences,
    /// InfoNCE against the other sentences of the batch. The vocabulary is stored with
    /// the encoder. Built-in config: cpc-text (scripts/text-corpora.sh prepares the
    /// corpora and labelled sets installed here).
    Text {
        #[command(flatten)]
        args: TrainerArgs,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print the resolved config, each key with its documentation, as TOML that
    /// `--config` reads back.
    Show {
        /// A built-in preset (`rlcpc config list`) or a config file [default: the
        /// `train` default, cartpole].
        #[arg(value_name = "PRESET|FILE")]
        name: Option<PathBuf>,
        /// Override a value first, as for `train` (repeatable).
        #[arg(long = "set", value_name = "KEY.PATH=VALUE")]
        overrides: Vec<String>,
    },
    /// List the built-in presets and the command that reads each.
    List,
}

#[derive(Subcommand)]
enum EnvsCommand {
    /// Mean return of a reference policy: random and oracle (a scripted agent that reads
    /// the true state) bracket what a learning agent can reach.
    Score {
        /// Registered environment id (see `rlcpc envs`).
        name: String,
        #[arg(long, value_enum, default_value = "random")]
        policy: ReferencePolicy,
        /// Episodes to average over.
        #[arg(long, default_value_t = 100)]
        episodes: usize,
        /// Seed of the first reset and of the random policy.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// An environment option, e.g. `--option corridor_length=40` (repeatable).
        #[arg(long = "option", value_name = "KEY=VALUE")]
        options: Vec<String>,
        /// Episode length limit in agent steps (0: the environment's default), as
        /// `env.max_episode_steps` of a config.
        #[arg(long, default_value_t = 0)]
        max_episode_steps: usize,
        /// Print one JSON object (mean, std, every return).
        #[arg(long)]
        json: bool,
    },
    /// An animated GIF of an episode: the first-person view beside a top-down map (with
    /// hidden things such as the watermaze platform shown), a strip flashing green or red
    /// on rewards. Plays a random policy, the oracle, or a trained checkpoint.
    Render {
        /// Registered environment id (a lab/* task).
        name: String,
        /// Seed of the first reset and of the policy's sampling.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Agent steps to record (one frame each).
        #[arg(long, default_value_t = 300)]
        steps: usize,
        /// A trained checkpoint whose policy plays (its own env options are used).
        #[arg(long, conflicts_with = "policy")]
        checkpoint: Option<PathBuf>,
        /// A reference policy, when no checkpoint is given.
        #[arg(long, value_enum, default_value = "random")]
        policy: ReferencePolicy,
        /// An environment option, e.g. `--option obs=grid` (repeatable; not with --checkpoint).
        #[arg(
            long = "option",
            value_name = "KEY=VALUE",
            conflicts_with = "checkpoint"
        )]
        options: Vec<String>,
        /// Frames per second of the GIF.
        #[arg(long, default_value_t = 15)]
        fps: u16,
        /// Where to write the GIF.
        #[arg(long, default_value = "episode.gif")]
        out: PathBuf,
    },
}

/// `--option KEY=VALUE` flags into an environment config (values parsed as JSON, else
/// taken as strings).
fn env_config(name: &str, options: &[String]) -> Result<rlcpc_envs::EnvConfig> {
    let mut cfg = rlcpc_envs::EnvConfig::new(name);
    for o in options {
        let (k, v) = o
            .split_once('=')
            .with_context(|| format!("--option {o}: expected KEY=VALUE"))?;
        let value = serde_json::from_str(v).unwrap_or_else(|_| serde_json::Value::String(v.into()));
        cfg.options.insert(k.into(), value);
    }
    Ok(cfg)
}

/// A flag set by the first Ctrl-C, SIGTERM or SIGHUP (the run finishes its step and
/// checkpoints); a second one exits at once.
fn stop_on_ctrl_c() -> Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            eprintln!("second interrupt: exiting without a final checkpoint");
            std::process::exit(130);
        }
        eprintln!("interrupt (Ctrl-C or a termination signal): finishing the current step and writing a checkpoint (again to abort)");
    })
    .context("cannot install the Ctrl-C / SIGTERM / SIGHUP handler")?;
    Ok(stop)
}

/// Runs a standalone trainer into `out` with Ctrl-C handling and a progress bar.
fn fit_trainer(
    obj: &mut dyn rlcpc::pretrain::Objective,
    train: &rlcpc::pretrain::TrainSection,
    out: &std::path::Path,
    resume: bool,
    quiet: bool,
    config_toml: String,
) -> Result<rlcpc::pretrain::FitSummary> {
    let opts = rlcpc::pretrain::FitOptions {
        out: out.to_path_buf(),
        resume,
        progress: !quiet,
        config_toml,
        stop: stop_on_ctrl_c()?,
    };
    rlcpc::pretrain::fit(obj, train, &opts)
}

/// A trainer's config: the run's own `config.toml` when resuming, else `config`, with
/// `overrides` applied; refuses to overwrite an existing run unless resuming.
fn trainer_config<T: TrainerConfig>(
    out: &std::path::Path,
    resume: bool,
    config: Option<&std::path::Path>,
    overrides: &[String],
) -> Result<T> {
    let cfg = if resume {
        let saved = out.join("config.toml");
        if !saved.exists() {
            bail!(
                "--resume: {} has no config.toml; is it a run directory?",
                out.display()
            );
        }
        T::load(Some(&saved), overrides)?
    } else {
        T::load(config, overrides)?
    };
    refuse_existing_run(out, resume)?;
    Ok(cfg)
}

/// A trainer's run directory is never overwritten (`--resume` continues it) nor shared
/// with a running process. Checked before any data is read.
fn refuse_existing_run(out: &std::path::Path, resume: bool) -> Result<()> {
    rlcpc::run_dir::check_free(out, resume)
}

/// The last lines of a trainer command: how it ended, its speed in `unit`s per second,
/// the last loss and accuracy (then `extra`), and where the encoder is.
fn report_trainer(s: &rlcpc::pretrain::FitSummary, unit: &str, extra: &str, out: &std::path::Path) {
    println!(
        "{} after {} steps in {:.1} s ({:.1} {unit}/s); last: loss {:.4}, accuracy {:.3}{extra}",
        if s.interrupted { "interrupted" } else { "done" },
        s.steps,
        s.seconds,
        s.samples_per_sec,
        s.last_value("train/loss"),
        s.last_value("train/acc"),
    );
    println!("encoder: {}", out.join(rlcpc::pretrain::ENCODER).display());
}

/// `rlcpc probe` with a text encoder: labels of a labelled set by k-fold CV.
fn text_probe(
    encoder: &std::path::Path,
    data: &std::path::Path,
    encoding: rlcpc::data::text::TextEncoding,
    options: &rlcpc::pretrain::text::TextProbeOptions,
    json: bool,
) -> Result<()> {
    use rlcpc::pretrain::text::{probe_text, TextNet};
    let (net, _vm) = TextNet::load(encoder)?;
    let set = rlcpc::data::text::load_labelled_with(data, encoding)?;
    if set.latin1 {
        eprintln!(
            "note: '{}' is not valid UTF-8; read as Latin-1 (ISO-8859-1)",
            data.display()
        );
    }
    let t0 = std::time::Instant::now();
    let (n, rows) = probe_text(&net, &encoder.display().to_string(), &set, options)?;
    if json {
        let rows: Vec<_> = rows
            .iter()
            .map(|r| {
                serde_json::json!({
                    "features": r.features, "dim": r.dim, "train_acc": r.cv.train,
                    "test_acc": r.cv.mean, "test_acc_sd": r.cv.std,
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({
                "probe": "text", "target": "class", "data": data, "encoder": encoder,
                "classes": set.classes.len(), "texts": n, "folds": options.folds,
                "latin1": set.latin1, "unknown_word_share": net.unknown_share(&set.texts),
                "rows": rows,
            })
        );
        return Ok(());
    }
    println!(
        "probe 'class' on {}: {} classes, {n} texts{}, {}-fold cross-validation, {:.1} s",
        data.display(),
        set.classes.len(),
        if set.dropped > 0 {
            format!(" ({} without a class left out)", set.dropped)
        } else {
            String::new()
        },
        options.folds,
        t0.elapsed().as_secs_f64()
    );
    println!(
        "{:.1}% of the words are not in the encoder's {}-word vocabulary",
        100.0 * net.unknown_share(&set.texts),
        net.vocab.len()
    );
    println!(
        "{:<66} {:>5} {:>10} {:>16}",
        "features", "dim", "train acc", "test acc (± sd)"
    );
    for r in &rows {
        println!(
            "{:<66} {:>5} {:>9.1}% {:>8.1}% ± {:>4.1}",
            r.features,
            r.dim,
            100.0 * r.cv.train,
            100.0 * r.cv.mean,
            100.0 * r.cv.std
        );
    }
    Ok(())
}

/// `rlcpc probe` with an image encoder: class from grid-pooled features.
fn image_probe(
    encoder: &std::path::Path,
    data: &std::path::Path,
    options: &rlcpc::pretrain::image::ImageProbeOptions,
    json: bool,
) -> Result<()> {
    use rlcpc::data::images::{load_split, FolderSplit, Part};
    use rlcpc::pretrain::image::{probe_images, ImageNet};
    let (net, _vm) = ImageNet::load(encoder)?;
    // The split the trainer used, and the test files it held out, where it stored them.
    let meta: Option<serde_json::Value> =
        rlcpc::checkpoint::Loaded::read_as(encoder, "encoder file")
            .ok()
            .and_then(|f| f.meta("rlcpc.data").ok());
    let get = |k: &str| meta.as_ref().and_then(|m| m.get(k).cloned());
    let split = FolderSplit {
        test_fraction: get("test_fraction")
            .and_then(|v| v.as_f64())
            .unwrap_or(FolderSplit::default().test_fraction),
        split_seed: get("split_seed")
            .and_then(|v| v.as_u64())
            .unwrap_or(FolderSplit::default().split_seed),
    };
    let train = load_split(data, Part::Train, &split)?;
    let test = load_split(data, Part::Test, &split)?;
    let stored: Option<Vec<String>> = get("held_out").and_then(|v| serde_json::from_value(v).ok());
    if let (Some(want), Some(have)) = (&stored, &test.held_out) {
        if want != have {
            let missing = want.iter().find(|f| !have.contains(f));
            let extra = have.iter().find(|f| !want.contains(f));
            bail!(
                "'{}' no longer matches the folders the encoder was trained beside: its test part has {} images, the encoder held out {} ({}); the probe would test on images the encoder may have trained on",
                data.display(),
                have.len(),
                want.len(),
                match (missing, extra) {
                    (Some(m), _) => format!("'{m}' is no longer in the test part"),
                    (None, Some(e)) => format!("'{e}' is new in the test part"),
                    _ => "the order differs".to_string(),
                }
            );
        }
    }
    let want = net.encoder_input();
    if [train.height, train.width, train.channels] != want {
        bail!(
            "{}: the encoder reads {}x{}x{} images, '{}' holds {}x{}x{}",
            encoder.display(),
            want[0],
            want[1],
            want[2],
            data.display(),
            train.height,
            train.width,
            train.channels
        );
    }
    let t0 = std::time::Instant::now();
    let (n_tr, n_te, rows) =
        probe_images(&net, &encoder.display().to_string(), &train, &test, options)?;
    if json {
        println!(
            "{}",
            serde_json::json!({
                "probe": "image", "target": "class", "data": data, "encoder": encoder,
                "classes": train.classes.len(), "train": n_tr, "test": n_te,
                "rows": rows.iter().map(score_json).collect::<Vec<_>>(),
            })
        );
        return Ok(());
    }
    println!(
        "probe 'class' on {}: {} classes, {n_tr} train / {n_te} test images (at most --max-images of each part), {:.1} s",
        data.display(),
        train.classes.len(),
        t0.elapsed().as_secs_f64()
    );
    println!(
        "{:<60} {:>5} {:>8} {:>10} {:>10}",
        "features", "dim", "lambda", "train acc", "test acc"
    );
    for r in &rows {
        println!(
            "{:<60} {:>5} {:>8.0e} {:>9.1}% {:>9.1}%",
            r.features,
            r.dim,
            r.score.lambda,
            100.0 * r.score.train,
            100.0 * r.score.test
        );
    }
    Ok(())
}

/// One probe row as JSON: features, dim, λ and accuracies.
fn score_json(r: &rlcpc::pretrain::audio::ProbeRow) -> serde_json::Value {
    serde_json::json!({
        "features": r.features, "dim": r.dim, "lambda": r.score.lambda,
        "train_acc": r.score.train, "test_acc": r.score.test,
    })
}

/// `rlcpc probe` on a recording: R² of ridge probes of the true state.
fn belief_probe(
    encoder: &std::path::Path,
    data: &std::path::Path,
    target: &str,
    test_fraction: f64,
    encoder_only: bool,
    baselines: bool,
    json: bool,
) -> Result<()> {
    use rlcpc::pretrain::frames::{probe_states, FramesNet, Source};
    let traj = rlcpc::data::trajectories::Trajectories::load(data)?;
    let targets: Vec<usize> = if target == "state" {
        (0..traj.state_names.len()).collect()
    } else {
        vec![traj
            .state_names
            .iter()
            .position(|n| n == target)
            .with_context(|| {
                format!(
                    "--target {target}: the recording's state variables are state (all), {}",
                    traj.state_names.join(", ")
                )
            })?]
    };
    let (net, source) = FramesNet::load(encoder)?;
    let what = match (source, encoder_only || net.lstm.is_none()) {
        (Source::AgentCheckpoint, false) => "agent core c_t",
        (Source::AgentCheckpoint, true) => "agent encoder z_t",
        (Source::EncoderFile, false) => "encoder + context c_t",
        (Source::EncoderFile, true) => "encoder z_t",
    };
    let want = net.encoder.spec_input_shape();
    let fits = traj.obs_shape == want
        || (matches!(
            net.encoder.spec,
            rlcpc::nn::encoders::EncoderSpec::Mlp { .. }
        ) && traj.obs_dim() == want.iter().product::<usize>());
    if !fits {
        bail!(
            "{}: the encoder reads observations of shape {:?}, the recording has {:?} ({})",
            encoder.display(),
            net.encoder.spec_input_shape(),
            traj.obs_shape,
            net.encoder.spec.describe()
        );
    }
    let name = format!("{what} ({})", encoder.display());
    let (n_tr, n_te, rows) = probe_states(
        &net,
        &name,
        &traj,
        &targets,
        test_fraction,
        encoder_only,
        baselines,
    )?;
    if json {
        let names: Vec<&str> = targets
            .iter()
            .map(|&j| traj.state_names[j].as_str())
            .collect();
        let rows: Vec<_> = rows
            .iter()
            .map(|r| {
                serde_json::json!({
                    "features": r.features, "dim": r.dim, "lambda": r.lambda,
                    "r2": names.iter().zip(&r.r2).map(|(n, v)| (n.to_string(), serde_json::json!(v))).collect::<serde_json::Map<_, _>>(),
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({
                "probe": "belief", "data": data, "encoder": encoder, "env": traj.env.id,
                "train_steps": n_tr, "test_steps": n_te, "test_fraction": test_fraction,
                "rows": rows,
            })
        );
        return Ok(());
    }
    println!(
        "belief probe on {} ({} by {}): ridge regression of the true state, {n_tr} train / {n_te} test steps (test = the last {:.0}%, cut at an episode start); R² per variable",
        data.display(), traj.env.id, traj.policy, 100.0 * test_fraction
    );
    print!("{:<64} {:>5} {:>7}", "features", "dim", "lambda");
    for &j in &targets {
        print!(" {:>11}", traj.state_names[j]);
    }
    println!(" {:>8}", "mean");
    for r in rows {
        print!("{:<64} {:>5} {:>7.0e}", r.features, r.dim, r.lambda);
        for v in &r.r2 {
            print!(" {v:>11.3}");
        }
        let finite: Vec<f64> = r.r2.iter().cloned().filter(|v| v.is_finite()).collect();
        println!(
            " {:>8.3}",
            finite.iter().sum::<f64>() / finite.len().max(1) as f64
        );
    }
    Ok(())
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

/// The most episodes `eval` and `envs score` play (a long evaluation, not an endless one).
const MAX_EPISODES: usize = 10_000_000;
/// The most frames `envs render` writes into one GIF.
const MAX_FRAMES: usize = 100_000;

fn device(name: &str) -> Result<Device> {
    match name {
        "cpu" => Ok(Device::Cpu),
        d if d == "cuda" || d.starts_with("cuda:") => {
            if !cfg!(feature = "cuda") {
                bail!("--device {d}: this rlcpc was built without CUDA support; rebuild with `cargo build --release --features cuda`");
            }
            let ordinal = d
                .strip_prefix("cuda:")
                .map_or(Ok(0), |n| n.parse::<usize>())
                .with_context(|| format!("--device {d}: bad GPU index"))?;
            Ok(Device::new_cuda(ordinal)?)
        }
        d => bail!("--device {d}: expected cpu, cuda or cuda:N"),
    }
}

/// Candle's CPU kernels size their thread pool from RAYON_NUM_THREADS at first use.
fn set_learner_threads(n: usize) {
    if n > 0 && std::env::var_os("RAYON_NUM_THREADS").is_none() {
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    }
}

/// Tells mimalloc never to purge freed memory: candle allocates every op's output anew,
/// and the conv encoder's im2col buffers are hundreds of megabytes, so returned pages
/// came straight back as page faults that the kernel must zero (a third of an RGB
/// training profile). `mi_option_purge_delay` is 15 in mimalloc 2's `mi_option_t`;
/// `MIMALLOC_PURGE_DELAY` in the environment still takes precedence.
fn keep_freed_pages() {
    const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets a plain integer option; mimalloc reads it on later frees.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    }
}

/// The command line, with the built-in presets listed in `train --help`.
fn parse() -> Cli {
    use clap::{CommandFactory, FromArgMatches};
    let presets = PRESETS.iter().map(|p| p.0).collect::<Vec<_>>().join(", ");
    let cmd = Cli::command().mut_subcommand("train", |c| {
        c.mut_arg("config", |a| {
            a.help(format!(
                "Config file, or the name of a built-in preset: {presets} [default: cartpole]"
            ))
        })
    });
    Cli::from_arg_matches(&cmd.get_matches()).unwrap_or_else(|e| e.exit())
}

fn main() {
    keep_freed_pages();
    if let Err(e) = run(parse()) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Train {
            config,
            aux,
            seed,
            out,
            mut overrides,
            resume,
            device: dev,
            quiet,
        } => {
            if let Some(a) = aux {
                overrides.push(format!(
                    "aux.kind=\"{}\"",
                    if a == AuxKind::Cpc { "cpc" } else { "none" }
                ));
            }
            if let Some(s) = seed {
                overrides.push(format!("run.seed={s}"));
            }
            let (cfg, notes) = match (&out, resume) {
                (Some(dir), true) => saved_config_with_notes(dir, &overrides)?,
                _ => Config::load_with_notes(config.as_deref(), &overrides)?,
            };
            for n in notes {
                eprintln!("{n}");
            }
            let out = out.unwrap_or_else(|| {
                let name = config
                    .as_ref()
                    .and_then(|p| p.file_stem())
                    .map_or("cartpole".to_string(), |s| s.to_string_lossy().to_string());
                let secs = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                let aux = if cfg.aux.kind == AuxKind::Cpc {
                    "cpc"
                } else {
                    "none"
                };
                PathBuf::from("runs").join(format!("{name}-{aux}-s{}-{secs}", cfg.run.seed))
            });
            set_learner_threads(cfg.run.learner_threads);
            let stop = stop_on_ctrl_c()?;
            let opts = TrainOptions {
                out: out.clone(),
                resume,
                device: device(&dev)?,
                progress: !quiet,
                write: true,
            };
            eprintln!(
                "training {} ({} aux) into {}",
                cfg.env.id,
                if cfg.aux.kind == AuxKind::Cpc {
                    "cpc"
                } else {
                    "no"
                },
                out.display()
            );
            let s = train(&cfg, &opts, stop)?;
            let c = &s.counters;
            println!(
                "{} after {} env steps, {} updates, {} episodes in {:.1} s ({:.0} steps/s); mean return (last 100 episodes): {}",
                if s.interrupted { "interrupted" } else { "done" },
                c.env_steps,
                c.updates,
                c.episodes,
                c.elapsed_secs,
                s.sps,
                s.mean_return.map_or("n/a".into(), |m| format!("{m:.1}")),
            );
            if let Some((steps, secs)) = s.solved {
                println!(
                    "target return {} reached at {steps} env steps, {secs:.2} s",
                    cfg.run.target_return
                );
            }
            println!("checkpoint: {}", out.join(CHECKPOINT).display());
        }
        Command::Cpc {
            modality:
                CpcCommand::Audio {
                    args:
                        TrainerArgs {
                            config,
                            data,
                            out,
                            overrides,
                            resume,
                            quiet,
                        },
                    strict,
                    threads,
                },
        } => {
            use rlcpc::pretrain::{self, audio::AudioCpcConfig};
            set_learner_threads(threads);
            let cfg: AudioCpcConfig = trainer_config(&out, resume, config.as_deref(), &overrides)?;
            let t0 = std::time::Instant::now();
            let set = pretrain::audio::load_corpus(&cfg.data, &data, strict)?;
            let read = format!(
                "read {} files ({:.0} s of audio, layout {}, {} skipped) in {:.1} s",
                set.utterances.len(),
                set.seconds(),
                set.layout.name(),
                set.skipped.len(),
                t0.elapsed().as_secs_f64()
            );
            let mut obj = pretrain::audio::AudioCpc::new(&cfg, set, &Device::Cpu)?;
            let (files, speakers) = obj.train_files();
            eprintln!(
                "{read}; training on {files} files of {speakers} speaker(s) at least one window ({} samples) long, {} test split held out",
                cfg.data.window,
                format!("{:?}", cfg.data.split).to_lowercase(),
            );
            let s = fit_trainer(&mut obj, &cfg.train, &out, resume, quiet, cfg.to_toml())?;
            let extra = format!(
                " (k=1 {:.3}, k={} {:.3}), z collapse statistic {:.3}",
                s.last_value("train/acc_k1"),
                cfg.cpc.horizon,
                s.last_value(&format!("train/acc_k{}", cfg.cpc.horizon)),
                s.last_value("train/z_norm_std"),
            );
            report_trainer(&s, "windows", &extra, &out);
        }
        Command::Probe {
            encoder,
            data,
            target,
            split,
            test_fraction,
            split_seed,
            features,
            layout,
            no_baselines,
            strict,
            iters,
            max_frames,
            max_images,
            pool_grid,
            folds,
            max_texts,
            bow_words,
            encoding,
            json,
        } => {
            use rlcpc::nn::encoders::EncoderSpec;
            use rlcpc::pretrain::audio::{self, AudioNet, AudioProbeOptions};
            if max_texts == 0 || max_images == 0 || max_frames == 0 || iters == 0 {
                bail!("--max-texts, --max-images, --max-frames and --iters must be at least 1");
            }
            let encoder = rlcpc::eval::encoder_path(&encoder);
            // What the file is decides what data it can be probed on.
            let (spec, file) = rlcpc::eval::read_encoder(&encoder)?;
            // Read once: what kind of encoder, and the data it was trained with.
            let is_agent = file.metadata.contains_key("rlcpc.net_spec");
            let is_image = rlcpc::pretrain::image::ImageNet::is_image_file(&file);
            let meta: Option<serde_json::Value> = file.meta("rlcpc.data").ok();
            drop(file);
            let recording = data.join(rlcpc::data::trajectories::FILE).exists();
            if is_agent && !recording {
                bail!(
                    "'{}' is an agent checkpoint: it can be probed only on a recording written by `rlcpc record` ('{}' holds no {})",
                    encoder.display(),
                    data.display(),
                    rlcpc::data::trajectories::FILE
                );
            }
            match &spec {
                EncoderSpec::Mlp { .. } | EncoderSpec::Conv { .. }
                    if !recording && !is_image =>
                {
                    bail!(
                        "'{}' is an encoder of environment observations ({}): --data must be a recording written by `rlcpc record` ('{}' holds no {})",
                        encoder.display(),
                        spec.describe(),
                        data.display(),
                        rlcpc::data::trajectories::FILE
                    )
                }
                EncoderSpec::Audio { .. } if !data.is_dir() => bail!(
                    "'{}' is an audio encoder: --data must be a directory of audio files, '{}' is not one",
                    encoder.display(),
                    data.display()
                ),
                _ => {}
            }
            let spec = Some(spec);
            if let Some(EncoderSpec::Text { .. }) = spec {
                return text_probe(
                    &encoder,
                    &data,
                    encoding,
                    &rlcpc::pretrain::text::TextProbeOptions {
                        features: match features {
                            Some(audio::Pool::Context) => {
                                rlcpc::pretrain::text::TextFeatures::Context
                            }
                            _ => rlcpc::pretrain::text::TextFeatures::Encoder,
                        },
                        folds,
                        max: max_texts,
                        baselines: !no_baselines,
                        iters,
                        seed: 0,
                        bow_words,
                    },
                    json,
                );
            }
            let features = features.unwrap_or(audio::Pool::Context);
            if is_image {
                return image_probe(
                    &encoder,
                    &data,
                    &rlcpc::pretrain::image::ImageProbeOptions {
                        max: max_images,
                        baselines: !no_baselines,
                        iters,
                        seed: 0,
                        pool_z: features == audio::Pool::Encoder,
                        grid: pool_grid,
                    },
                    json,
                );
            }
            if data.join(rlcpc::data::trajectories::FILE).exists() {
                let target = target.unwrap_or_else(|| "state".into());
                // The part `cpc frames` held out, where the encoder says so.
                let held_out = meta
                    .as_ref()
                    .and_then(|m| m.get("test_fraction").and_then(|v| v.as_f64()));
                if let (Some(asked), Some(held)) = (test_fraction, held_out) {
                    if asked > held {
                        eprintln!("note: --test-fraction {asked} is larger than the {held} the encoder's trainer held out: on the recording it was trained on, the first part of this test part was training data");
                    }
                }
                return belief_probe(
                    &encoder,
                    &data,
                    &target,
                    test_fraction.or(held_out).unwrap_or(0.2),
                    features == audio::Pool::Encoder,
                    !no_baselines,
                    json,
                );
            }
            let from_meta = |k: &str| meta.as_ref().and_then(|m| m.get(k).cloned());
            let stored: Option<Vec<String>> =
                from_meta("held_out").and_then(|v| serde_json::from_value(v).ok());
            let own_split = split.is_some() || test_fraction.is_some() || split_seed.is_some();
            if own_split && stored.is_some() {
                eprintln!("note: --split/--test-fraction/--split-seed draw a new split; its test part may hold files the encoder was trained on (without them the probe tests on the encoder's own held-out files)");
            }
            let held_out = if own_split { None } else { stored };
            let split = split.unwrap_or_else(|| {
                from_meta("split")
                    .and_then(|v| serde_json::from_value(v).ok())
                    .unwrap_or(rlcpc::data::SplitBy::Utterance)
            });
            let test_fraction = test_fraction
                .or_else(|| from_meta("test_fraction").and_then(|v| v.as_f64()))
                .unwrap_or(0.2);
            let split_seed = split_seed
                .or_else(|| from_meta("split_seed").and_then(|v| v.as_u64()))
                .unwrap_or(0);
            let target = target.unwrap_or_else(|| "speaker".into());
            let (net, _vm) = AudioNet::load(&encoder, &Device::Cpu)?;
            let rlcpc::nn::encoders::EncoderSpec::Audio { sample_rate, .. } = net.spec else {
                unreachable!("AudioNet::load checks the kind")
            };
            let set = rlcpc::data::audio::AudioSet::load(
                &data,
                &rlcpc::data::audio::LoadOptions {
                    layout,
                    strict,
                    sample_rate,
                    max_files: 0,
                },
            )?;
            set.report_skipped(10);
            let t0 = std::time::Instant::now();
            let split_text = if held_out.is_some() {
                "split: the encoder's held-out files".to_string()
            } else {
                format!(
                    "split by {} (test {:.0}%, seed {split_seed})",
                    format!("{split:?}").to_lowercase(),
                    100.0 * test_fraction
                )
            };
            let p = audio::probe_audio(
                &net,
                &encoder.display().to_string(),
                &set,
                &AudioProbeOptions {
                    target,
                    split,
                    test_fraction,
                    split_seed,
                    pool: features,
                    baselines: !no_baselines,
                    iters,
                    max_frames,
                    held_out,
                },
            )?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({
                        "probe": "audio", "target": p.target, "data": data, "encoder": encoder,
                        "layout": set.layout.name(), "classes": p.classes.len(),
                        "train": p.n_train, "test": p.n_test, "split": split_text,
                        "rows": p.rows.iter().map(score_json).collect::<Vec<_>>(),
                    })
                );
                return Ok(());
            }
            println!(
                "probe '{}' on {} ({} layout): {} classes, {} train / {} test {}, {split_text}, {:.1} s",
                p.target,
                data.display(),
                set.layout.name(),
                p.classes.len(),
                p.n_train,
                p.n_test,
                if p.target == "phone" { "frames (10 ms)" } else { "utterances" },
                t0.elapsed().as_secs_f64()
            );
            println!(
                "{:<60} {:>5} {:>8} {:>10} {:>10}",
                "features", "dim", "lambda", "train acc", "test acc"
            );
            for r in &p.rows {
                println!(
                    "{:<60} {:>5} {:>8.0e} {:>9.1}% {:>9.1}%",
                    r.features,
                    r.dim,
                    r.score.lambda,
                    100.0 * r.score.train,
                    100.0 * r.score.test
                );
            }
            if p.target != "phone" {
                println!(
                    "majority class {:.1}% of all utterances",
                    100.0 * {
                        let mut counts = std::collections::HashMap::new();
                        for l in set.label(&p.target)? {
                            *counts.entry(l).or_insert(0usize) += 1;
                        }
                        *counts.values().max().unwrap_or(&0) as f64 / set.utterances.len() as f64
                    }
                );
            }
        }
        Command::Record {
            env,
            checkpoint,
            policy,
            steps,
            seed,
            options,
            max_episode_steps,
            out,
            force,
        } => {
            if steps == 0 {
                bail!("--steps must be at least 1");
            }
            let file = out.join(rlcpc::data::trajectories::FILE);
            if file.exists() && !force {
                bail!(
                    "'{}' already holds a recording ({}); choose another --out or pass --force to replace it",
                    out.display(),
                    file.display()
                );
            }
            let (cfg, mut driver, who) = match &checkpoint {
                Some(path) => {
                    let p = rlcpc::eval::TrainedPolicy::load(path)?;
                    if let Some(e) = &env {
                        if *e != p.config.env.id {
                            bail!(
                                "checkpoint {} was trained on {}, not {e}",
                                path.display(),
                                p.config.env.id
                            );
                        }
                    }
                    let d = rlcpc::eval::Driver::trained(&p, path, seed, true)?;
                    (p.config.env.clone(), d, path.display().to_string())
                }
                None => {
                    let Some(name) = env else {
                        bail!("--env NAME is needed without --checkpoint")
                    };
                    let mut cfg = env_config(&name, &options)?;
                    cfg.max_episode_steps = max_episode_steps;
                    let e = rlcpc_envs::make(&cfg)?;
                    let d = rlcpc::eval::Driver::reference(policy, e.as_ref(), seed)?;
                    (cfg, d, rlcpc::config::user_name(&policy))
                }
            };
            let t0 = std::time::Instant::now();
            let t = rlcpc::eval::record(&cfg, &mut driver, &who, steps, seed)?;
            t.save(&out, force)?;
            println!(
                "wrote {} steps ({} episodes, observation {:?}, state [{}]) of {} by {who} to {} in {:.1} s",
                t.len(),
                t.episodes(),
                t.obs_shape,
                t.state_names.join(", "),
                cfg.id,
                out.join(rlcpc::data::trajectories::FILE).display(),
                t0.elapsed().as_secs_f64()
            );
        }
        Command::Cpc {
            modality:
                CpcCommand::Frames {
                    args:
                        TrainerArgs {
                            config,
                            data,
                            out,
                            overrides,
                            resume,
                            quiet,
                        },
                },
        } => {
            use rlcpc::pretrain::frames::{FramesCpc, FramesCpcConfig};
            let cfg: FramesCpcConfig = trainer_config(&out, resume, config.as_deref(), &overrides)?;
            let traj = rlcpc::data::trajectories::Trajectories::load(&data)?;
            eprintln!(
                "{} steps, {} episodes of {} (observation {:?})",
                traj.len(),
                traj.episodes(),
                traj.env.id,
                traj.obs_shape
            );
            let mut obj = FramesCpc::new(&cfg, traj)?;
            let s = fit_trainer(&mut obj, &cfg.train, &out, resume, quiet, cfg.to_toml())?;
            report_trainer(&s, "sequences", "", &out);
        }
        Command::Cpc {
            modality:
                CpcCommand::Image {
                    args:
                        TrainerArgs {
                            config,
                            data,
                            out,
                            overrides,
                            resume,
                            quiet,
                        },
                },
        } => {
            use rlcpc::pretrain::image::{ImageCpc, ImageCpcConfig};
            let cfg: ImageCpcConfig = trainer_config(&out, resume, config.as_deref(), &overrides)?;
            let set = rlcpc::data::images::load_split(
                &data,
                rlcpc::data::images::Part::Train,
                &cfg.data,
            )?;
            if let Some(held) = &set.held_out {
                eprintln!(
                    "{} test images held out (never trained on; `rlcpc probe` tests on them)",
                    held.len()
                );
            }
            eprintln!(
                "{} training images of {}x{}x{}, {} classes",
                set.len(),
                set.height,
                set.width,
                set.channels,
                set.classes.len()
            );
            let mut obj = ImageCpc::new(&cfg, set)?;
            let s = fit_trainer(&mut obj, &cfg.train, &out, resume, quiet, cfg.to_toml())?;
            report_trainer(&s, "images", "", &out);
        }
        Command::Cpc {
            modality:
                CpcCommand::Text {
                    args:
                        TrainerArgs {
                            config,
                            data,
                            out,
                            overrides,
                            resume,
                            quiet,
                        },
                },
        } => {
            use rlcpc::pretrain::text::{TextCpc, TextCpcConfig};
            let cfg: TextCpcConfig = trainer_config(&out, resume, config.as_deref(), &overrides)?;
            let corpus = rlcpc::data::text::load_corpus_with(&data, cfg.data.encoding)?;
            if !corpus.latin1.is_empty() {
                eprintln!(
                    "note: {} of {} files are not valid UTF-8 and were read as Latin-1 (ISO-8859-1), e.g. '{}'",
                    corpus.latin1.len(),
                    corpus.files.len(),
                    corpus.latin1[0].display()
                );
            }
            let mut obj = TextCpc::new(&cfg, &corpus)?;
            let (vocab, passages) = obj.sizes();
            eprintln!(
                "{} sentences in {} files; vocabulary {vocab} words ({:.1}% of words unknown); {passages} passages of {}",
                corpus.sentences(),
                corpus.files.len(),
                100.0 * obj.unknown_rate(),
                cfg.data.sequence
            );
            drop(corpus);
            let s = fit_trainer(&mut obj, &cfg.train, &out, resume, quiet, cfg.to_toml())?;
            let extra = format!(
                " (k=1 {:.3}, k={} {:.3})",
                s.last_value("train/acc_k1"),
                cfg.cpc.horizon,
                s.last_value(&format!("train/acc_k{}", cfg.cpc.horizon)),
            );
            report_trainer(&s, "sentences", &extra, &out);
        }
        Command::Eval {
            checkpoint,
            episodes,
            seed,
            stochastic,
            json,
        } => {
            if episodes == 0 || episodes > MAX_EPISODES {
                bail!("--episodes must be in 1..={MAX_EPISODES}");
            }
            let r = rlcpc::eval::evaluate(&checkpoint, episodes, seed, stochastic)?;
            let (mean, std) = rlcpc::eval::mean_std(&r);
            let (min, max) = (
                r.iter().cloned().fold(f64::INFINITY, f64::min),
                r.iter().cloned().fold(f64::NEG_INFINITY, f64::max),
            );
            if json {
                println!(
                    "{}",
                    serde_json::json!({
                        "checkpoint": checkpoint, "episodes": episodes, "seed": seed,
                        "stochastic": stochastic, "mean": mean, "std": std,
                        "min": min, "max": max, "returns": r,
                    })
                );
            } else {
                println!("mean return {mean:.2} +/- {std:.2} over {episodes} episodes (min {min:.1}, max {max:.1})");
            }
        }
        Command::Plot {
            runs,
            out,
            metric,
            x,
            labels,
        } => {
            if !labels.is_empty() && labels.len() != runs.len() {
                bail!("{} --label values for {} runs", labels.len(), runs.len());
            }
            let mut curves = runs
                .iter()
                .map(|r| rlcpc::plot::read_curve(r, &x, &metric))
                .collect::<Result<Vec<_>>>()?;
            for (c, l) in curves.iter_mut().zip(labels) {
                c.label = l;
            }
            let x_label = if x == "time/total_timesteps" {
                "environment steps"
            } else {
                x.as_str()
            };
            rlcpc::plot::draw(&curves, x_label, &metric, &out, (900, 540))?;
            println!("wrote {}", out.display());
        }
        Command::Config {
            action: ConfigCommand::Show { name, overrides },
        } => {
            let (text, cmd) = rlcpc::config_show::show(name.as_deref(), &overrides)?;
            println!(
                "# Resolved config for `rlcpc {cmd}`{}; every key with its documentation.\n",
                name.as_ref()
                    .map_or(String::new(), |n| format!(" ({})", n.display()))
            );
            print!("{text}");
        }
        Command::Config {
            action: ConfigCommand::List,
        } => {
            println!("{:<28} read by", "preset");
            for (name, cmd) in rlcpc::config_show::presets() {
                println!("{name:<28} rlcpc {cmd} --config {name}");
            }
        }
        Command::ExportEncoder {
            checkpoint,
            out,
            force,
        } => {
            let spec = rlcpc::eval::export_encoder(&checkpoint, &out, force)?;
            println!(
                "wrote {} ({})",
                out.display(),
                serde_json::to_string(&spec)?
            );
        }
        Command::Envs { action: None } => {
            println!(
                "{:<18} {:<16} {:<12} description",
                "id", "observation", "action"
            );
            for e in rlcpc_envs::registry() {
                let env = rlcpc_envs::make(&rlcpc_envs::EnvConfig::new(e.id))?;
                println!(
                    "{:<18} {:<16} {:<12} {}",
                    e.id,
                    env.observation_space().to_string(),
                    env.action_space().to_string(),
                    e.description
                );
                if !e.options.is_empty() {
                    println!("{:<48} options: {}", "", e.options);
                }
            }
            println!(
                "\npresets (rlcpc train --config NAME): {}",
                PRESETS.iter().map(|p| p.0).collect::<Vec<_>>().join(", ")
            );
        }
        Command::Envs {
            action:
                Some(EnvsCommand::Score {
                    name,
                    policy,
                    episodes,
                    seed,
                    options,
                    max_episode_steps,
                    json,
                }),
        } => {
            if episodes == 0 || episodes > MAX_EPISODES {
                bail!("--episodes must be in 1..={MAX_EPISODES}");
            }
            let mut cfg = env_config(&name, &options)?;
            cfg.max_episode_steps = max_episode_steps;
            let r = rlcpc::eval::score(&cfg, policy, episodes, seed)?;
            let (mean, std) = rlcpc::eval::mean_std(&r);
            if json {
                println!(
                    "{}",
                    serde_json::json!({
                        "env": name, "policy": rlcpc::config::user_name(&policy),
                        "episodes": episodes, "seed": seed, "mean": mean, "std": std,
                        "returns": r,
                    })
                );
                return Ok(());
            }
            println!(
                "{name} {}: mean return {mean:.3} +/- {std:.3} over {episodes} episodes",
                rlcpc::config::user_name(&policy)
            );
        }
        Command::Envs {
            action:
                Some(EnvsCommand::Render {
                    name,
                    seed,
                    steps,
                    checkpoint,
                    policy,
                    options,
                    fps,
                    out,
                }),
        } => {
            let (mut env, mut driver) = match &checkpoint {
                Some(path) => {
                    let p = rlcpc::eval::TrainedPolicy::load(path)?;
                    if p.config.env.id != name {
                        bail!(
                            "checkpoint {} was trained on {}, not {name}",
                            path.display(),
                            p.config.env.id
                        );
                    }
                    let env = rlcpc_envs::make(&p.config.env)?;
                    (env, rlcpc::eval::Driver::trained(&p, path, seed, true)?)
                }
                None => {
                    let env = rlcpc_envs::make(&env_config(&name, &options)?)?;
                    let d = rlcpc::eval::Driver::reference(policy, env.as_ref(), seed)?;
                    (env, d)
                }
            };
            if steps > MAX_FRAMES {
                bail!("--steps must be at most {MAX_FRAMES} (frames in one GIF)");
            }
            let stop = stop_on_ctrl_c()?;
            let clip = rlcpc::render::render_gif(
                env.as_mut(),
                &mut driver,
                steps,
                seed,
                fps,
                &out,
                &stop,
            )?;
            println!(
                "wrote {} ({} frames of {}x{}); {}; the last episode, unfinished, has return {} so far",
                out.display(),
                clip.frames,
                clip.width,
                clip.height,
                if clip.finished.is_empty() {
                    "no episode finished".to_string()
                } else {
                    format!("returns of the {} finished episodes: {:?}", clip.finished.len(), clip.finished)
                },
                clip.partial
            );
        }
        Command::Bench {
            steps,
            env_steps,
            env_seconds,
            envs_only,
            audio_only,
            audio_steps,
            repeats,
            solve,
            seeds,
            device: dev,
            json,
        } => {
            let report = BenchReport::new(json);
            if repeats == 0 {
                bail!("--repeats must be at least 1 (the median of the runs is reported)");
            }
            if env_steps == 0 || !(env_seconds.is_finite() && env_seconds > 0.0) {
                bail!("--env-steps must be at least 1 and --env-seconds finite and positive (got {env_steps}, {env_seconds})");
            }
            if steps == 0 || audio_steps == 0 {
                bail!("--steps and --audio-steps must be at least 1");
            }
            let dev = device(&dev)?;
            set_learner_threads(1);
            let mlp = Config::load(None, &[])?;
            let lstm = Config::load(Some(std::path::Path::new("cartpole-lstm-cpc")), &[])?;
            let audio = |name: &str| -> Result<()> {
                let cfg = rlcpc::pretrain::audio::AudioCpcConfig::load(
                    Some(std::path::Path::new(name)),
                    &[],
                )?;
                set_learner_threads(0);
                let runs: Vec<f64> = (0..repeats)
                    .map(|_| bench::audio_windows_per_sec(&cfg, audio_steps))
                    .collect::<Result<_>>()?;
                report.case(
                    format!("cpc audio {name} (windows/s)"),
                    bench::median(&runs),
                    runs.iter()
                        .map(|x| (x * 10.0).round() / 10.0)
                        .collect::<Vec<_>>(),
                );
                report.note(format!(
                    "{:<40} window {} samples, batch {}, {} channels, GRU {}, K = {}, {} threads",
                    "",
                    cfg.data.window,
                    cfg.train.batch,
                    cfg.model.channels,
                    cfg.model.context,
                    cfg.cpc.horizon,
                    std::thread::available_parallelism().map_or(1, |n| n.get())
                ));
                Ok(())
            };
            let image = |label: &str, overrides: &[String]| -> Result<()> {
                let cfg = rlcpc::pretrain::image::ImageCpcConfig::load(
                    Some(std::path::Path::new("cpc-image-fashion")),
                    overrides,
                )?;
                set_learner_threads(0);
                let runs: Vec<f64> = (0..repeats)
                    .map(|_| bench::images_per_sec(&cfg, (28, 28, 1), audio_steps))
                    .collect::<Result<_>>()?;
                report.case(
                    format!("cpc image {label} (images/s)"),
                    bench::median(&runs),
                    runs.iter().map(|x| x.round()).collect::<Vec<_>>(),
                );
                report.note(format!(
                    "{:<40} 28x28x1, {}x{} patches every {}, batch {}, {} features{}",
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
                    }
                ));
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
                let cfg = rlcpc::pretrain::text::TextCpcConfig::load(
                    Some(std::path::Path::new("cpc-text")),
                    &[],
                )?;
                set_learner_threads(0);
                let runs: Vec<f64> = (0..repeats)
                    .map(|_| bench::sentences_per_sec(&cfg, audio_steps))
                    .collect::<Result<_>>()?;
                report.case(
                    "cpc text cpc-text (sentences/s)",
                    bench::median(&runs),
                    runs.iter().map(|x| x.round()).collect::<Vec<_>>(),
                );
                report.note(format!(
                    "{:<40} batch {} passages of {} sentences (5-40 words), vocabulary {}, embedding {}, {} features, GRU {}",
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
            if audio_only {
                report.header(format!(
                    "{:<40} {:>14}   runs",
                    "case", "samples/s (median)"
                ));
                audio("cpc-audio")?;
                audio("cpc-audio-fsdd")?;
                image("cpc-image-fashion", &[])?;
                image("cpc-image-fashion + CPC-v2", &v2)?;
                text()?;
                return report.finish();
            }
            report.header(format!("{:<40} {:>14}   runs", "case", "steps/s (median)"));
            // Raw environment throughput, one thread (agent steps, action repeat included).
            for (name, cfg) in bench::env_cases() {
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
            audio("cpc-audio")?;
            image("cpc-image-fashion", &[])?;
            image("cpc-image-fashion + CPC-v2", &v2)?;
            text()?;
            set_learner_threads(1);
            let mut medians = Vec::new();
            for (name, cfg) in bench::throughput_cases(&mlp, &lstm) {
                let runs: Vec<f64> = (0..repeats)
                    .map(|_| bench::train_steps_per_sec(&cfg, steps, &dev))
                    .collect::<Result<_>>()?;
                let m = bench::median(&runs);
                report.case(name, m, runs.iter().map(|x| x.round()).collect::<Vec<_>>());
                medians.push(m);
            }
            // Share of the time per step spent in the CPC head: 1 − t(none)/t(cpc).
            report.note(format!(
                "CPC head cost: {:.1}% of the time per env step (lstm cpc vs lstm none)",
                100.0 * (1.0 - medians[2] / medians[1])
            ));
            if solve {
                for (name, cfg) in [("mlp, aux none", &mlp), ("lstm, aux cpc", &lstm)] {
                    let mut secs = Vec::new();
                    for &seed in &seeds {
                        match bench::solve(cfg, seed, &dev)? {
                            Some((st, s)) => {
                                report.note(format!("solve {name}: seed {seed}: return >= {} at {st} steps, {s:.2} s", cfg.run.target_return));
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
        }
    }
    Ok(())
}
