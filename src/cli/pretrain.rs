//! `rlcpc pretrain <modality> --objective cpc` (alias `rlcpc cpc <modality>`): read
//! the data, build the modality's network and minibatches with the chosen objective, and
//! fit it ([`crate::pretrain::fit`]) into a run directory.

use std::path::PathBuf;

use crate::pretrain::{ObjectiveKind, TrainerConfig};
use anyhow::Result;

use super::{stop_on_ctrl_c, DeviceArg};
use crate::rl::train::set_learner_threads;

/// Flags every standalone trainer shares.
#[derive(clap::Args)]
pub struct TrainerArgs {
    /// Config file, or a built-in preset's name [default: the trainer's built-in config].
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The data: a directory of audio files (`pretrain audio`), one written by `rlcpc record`
    /// (`pretrain frames`), an image set (`pretrain image`: IDX, CIFAR-10 binary, class folders),
    /// or a text file or directory of *.txt files (`pretrain text`).
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
    /// The objective [default: the config's `objective` key, cpc]: `cpc` is Contrastive
    /// Predictive Coding (van den Oord et al. 2018); `simclr` and `moco` (images and
    /// recorded frames, `pretrain image`) contrast two augmented views of each image.
    /// Sets `objective` in the config.
    #[arg(long, value_enum)]
    objective: Option<ObjectiveKind>,
    /// Where the network trains: `cpu`, or `cuda` / `cuda:N` (a build with --features
    /// cuda) for CPC on audio, images and text; minibatches are still drawn on the CPU.
    /// SimCLR, MoCo and CPC on recorded frames train on the CPU only.
    #[arg(long, default_value = "cpu")]
    device: DeviceArg,
}

#[derive(clap::Subcommand)]
pub enum Command {
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
    /// state by `rlcpc probe`. Built-in config: cpc-frames. With --objective simclr or moco
    /// (e.g. --config simclr-lab-frames): the frames as images, as `pretrain image` reads
    /// a recording.
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
    /// With --objective simclr or moco (or a config whose `objective` is one): SimCLR or
    /// MoCo v2 on two augmented views of each whole image, a small ResNet or the agent's
    /// conv encoder, a kNN monitor on held-out images (knn/top1); --data may also be a
    /// recording of RGB frames (`rlcpc record`), labelled from the true state.
    /// Built-in configs: cpc-image-fashion, simclr-fashion, moco-fashion, simclr-lab-frames.
    Image {
        #[command(flatten)]
        args: TrainerArgs,
        /// Stop at the first image file that does not decode instead of leaving it out
        /// with a note.
        #[arg(long)]
        strict: bool,
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

pub fn run(modality: Command) -> Result<()> {
    match modality {
        Command::Audio {
            args,
            strict,
            threads,
        } => {
            use crate::pretrain::audio::{load_corpus, AudioCpc, AudioCpcConfig};
            set_learner_threads(threads);
            let device = args.device.device()?;
            let cfg: AudioCpcConfig = args.config()?;
            let t0 = std::time::Instant::now();
            let set = load_corpus(&cfg.data, &args.data, strict)?;
            let read = format!(
                "read {} files ({:.0} s of audio, layout {}, {} skipped) in {:.1} s",
                set.utterances.len(),
                set.seconds(),
                set.layout.name(),
                set.skipped.len(),
                t0.elapsed().as_secs_f64()
            );
            let mut obj = AudioCpc::new(&cfg, set, &device)?;
            let (files, speakers) = obj.modality.train_files();
            crate::errln!(
                "{read}; training on {files} files of {speakers} speaker(s) at least one window ({} samples) long, {} test split held out",
                cfg.data.window,
                format!("{:?}", cfg.data.split).to_lowercase(),
            );
            let s = args.fit(&mut obj, &cfg.train, cfg.to_toml())?;
            let extra = format!(
                " (k=1 {:.3}, k={} {:.3}), z collapse statistic {:.3}",
                s.last_value("train/acc_k1"),
                cfg.cpc.horizon,
                s.last_value(&format!("train/acc_k{}", cfg.cpc.horizon)),
                s.last_value("train/z_norm_std"),
            );
            report_trainer(&s, "windows", &extra, &args.out);
        }
        Command::Frames { args } => {
            use crate::pretrain::frames::{FramesCpc, FramesCpcConfig};
            if args.views_objective(<FramesCpcConfig as TrainerConfig>::PRESETS) {
                // SimCLR / MoCo on the recording's frames as labelled images (no files
                // to decode: nothing to be strict about).
                return views(&args, false);
            }
            args.cpu_only("CPC on recorded frames")?;
            let cfg: FramesCpcConfig = args.config()?;
            let traj = crate::data::trajectories::Trajectories::load(&args.data)?;
            crate::errln!(
                "{} steps, {} episodes of {} (observation {:?})",
                traj.len(),
                traj.episodes(),
                traj.env.id,
                traj.obs_shape
            );
            let mut obj = FramesCpc::new(&cfg, traj)?;
            let s = args.fit(&mut obj, &cfg.train, cfg.to_toml())?;
            report_trainer(&s, "sequences", "", &args.out);
        }
        Command::Image { args, strict } => {
            use crate::data::images::{load_split, Part};
            use crate::pretrain::image::{ImageCpc, ImageCpcConfig};
            if args.views_objective(&crate::pretrain::image::PRESETS) {
                return views(&args, strict);
            }
            let device = args.device.device()?;
            let cfg: ImageCpcConfig = args.config()?;
            let set = load_split(&args.data, Part::Train, &cfg.data)?;
            set.report_skipped(strict)?;
            if let Some(held) = &set.held_out {
                crate::errln!(
                    "{} test images held out (never trained on; `rlcpc probe` tests on them)",
                    held.len()
                );
            }
            crate::errln!(
                "{} training images of {}x{}x{}, {} classes",
                set.len(),
                set.height,
                set.width,
                set.channels,
                set.classes.len()
            );
            let test = if cfg.knn.every > 0 {
                let test = load_split(&args.data, Part::Test, &cfg.data)?;
                test.report_skipped(strict)?;
                Some(test)
            } else {
                None
            };
            let mut obj = ImageCpc::new(&cfg, set, &device)?;
            if let Some(test) = test {
                obj = obj.with_knn(&cfg, test);
            }
            let s = args.fit(&mut obj, &cfg.train, cfg.to_toml())?;
            report_trainer(&s, "images", "", &args.out);
        }
        Command::Text { args } => {
            use crate::pretrain::text::{TextCpc, TextCpcConfig};
            let device = args.device.device()?;
            let cfg: TextCpcConfig = args.config()?;
            let corpus = crate::data::text::load_corpus_with(&args.data, cfg.data.encoding)?;
            if !corpus.latin1.is_empty() {
                crate::errln!(
                    "note: {} of {} files are not valid UTF-8 and were read as Latin-1 (ISO-8859-1), e.g. '{}'",
                    corpus.latin1.len(),
                    corpus.files.len(),
                    corpus.latin1[0].display()
                );
            }
            let mut obj = TextCpc::new(&cfg, &corpus, &device)?;
            let (vocab, passages) = obj.modality.sizes();
            crate::errln!(
                "{} sentences in {} files; vocabulary {vocab} words ({:.1}% of words unknown); {passages} passages of {}",
                corpus.sentences(),
                corpus.files.len(),
                100.0 * obj.modality.unknown_rate(),
                cfg.data.sequence
            );
            drop(corpus);
            let s = args.fit(&mut obj, &cfg.train, cfg.to_toml())?;
            let extra = format!(
                " (k=1 {:.3}, k={} {:.3})",
                s.last_value("train/acc_k1"),
                cfg.cpc.horizon,
                s.last_value(&format!("train/acc_k{}", cfg.cpc.horizon)),
            );
            report_trainer(&s, "sentences", &extra, &args.out);
        }
    }
    Ok(())
}

/// `pretrain image --objective simclr|moco`: two augmented views per image ([`crate::pretrain::views`]),
/// on an image set or the frames of a recording.
fn views(args: &TrainerArgs, strict: bool) -> Result<()> {
    use crate::data::images::{load_recording, load_split, Part};
    use crate::pretrain::views::{Views, ViewsConfig};
    args.cpu_only("SimCLR / MoCo")?;
    let cfg: ViewsConfig = args.config()?;
    let recording = args.data.join(crate::data::trajectories::FILE).is_file();
    let (train, test) = if recording {
        load_recording(&args.data, cfg.data.label, cfg.data.test_fraction)?
    } else {
        let split = cfg.data.split();
        let (train, test) = (
            load_split(&args.data, Part::Train, &split)?,
            load_split(&args.data, Part::Test, &split)?,
        );
        train.report_skipped(strict)?;
        test.report_skipped(strict)?;
        (train, test)
    };
    let mut meta = serde_json::json!({
        "test_fraction": cfg.data.test_fraction,
        "split_seed": cfg.data.split_seed,
    });
    if let Some(held) = &test.held_out {
        meta["held_out"] = serde_json::json!(held);
    }
    if recording {
        meta["recording"] = serde_json::json!(true);
        meta["label"] = serde_json::json!(cfg.data.label);
    }
    crate::errln!(
        "{} training images of {}x{}x{}, {} classes; {} held out ({}: the kNN monitor's queries, never trained on)",
        train.len(),
        train.height,
        train.width,
        train.channels,
        train.classes.len(),
        test.len(),
        if recording { "the last episodes" } else { "the test part" },
    );
    let mut obj = Views::new(&cfg, train, Some(test), meta)?;
    let s = args.fit(&mut obj, &cfg.train, cfg.to_toml())?;
    let knn = s.last_value("knn/top1");
    let extra = format!(
        "{}, collapse statistic h {:.3} / z {:.3}",
        if knn.is_finite() {
            format!(", kNN top-1 {knn:.3}")
        } else {
            String::new()
        },
        s.last_value("train/h_norm_std"),
        s.last_value("train/z_norm_std")
    );
    report_trainer(&s, "images", &extra, &args.out);
    Ok(())
}

impl TrainerArgs {
    /// Refuses `--device` other than the CPU for a trainer (`what`) that runs there only.
    fn cpu_only(&self, what: &str) -> Result<()> {
        if self.device != DeviceArg::Cpu {
            anyhow::bail!(
                "--device: {what} runs on the CPU only in this version (CPC on audio, images and text runs on CUDA)"
            );
        }
        Ok(())
    }

    /// Whether this run's objective (the flags, else its config: `cpc_presets` or the
    /// view presets by name, or a file) is SimCLR or MoCo rather than CPC.
    fn views_objective(&self, cpc_presets: &[(&str, &str)]) -> bool {
        let presets: Vec<(&str, &str)> = cpc_presets
            .iter()
            .chain(crate::pretrain::views::PRESETS.iter())
            .copied()
            .collect();
        let objective = crate::pretrain::peek_objective(
            self.config.as_deref(),
            self.resume.then_some(self.out.as_path()),
            &self.all_overrides(),
            &presets,
        );
        objective != ObjectiveKind::Cpc
    }

    /// `--set` and `--objective` as overrides.
    fn all_overrides(&self) -> Vec<String> {
        let mut overrides = self.overrides.clone();
        if let Some(o) = self.objective {
            overrides.push(format!("objective=\"{}\"", crate::config::user_name(&o)));
        }
        overrides
    }

    /// The trainer's config for this run: `--config` (or the run's own `config.toml` with
    /// `--resume`), then `--set` and `--objective`; a run directory in use or already
    /// holding a run is refused before any data is read.
    fn config<T: TrainerConfig>(&self) -> Result<T> {
        T::for_run(
            &self.out,
            self.resume,
            self.config.as_deref(),
            &self.all_overrides(),
        )
    }

    /// Fits `obj` into `--out` with Ctrl-C handling and, unless `--quiet`, a progress bar.
    fn fit(
        &self,
        obj: &mut dyn crate::pretrain::Objective,
        train: &crate::pretrain::TrainSection,
        config_toml: String,
    ) -> Result<crate::pretrain::FitSummary> {
        let opts = crate::pretrain::FitOptions {
            out: self.out.clone(),
            resume: self.resume,
            progress: !self.quiet,
            config_toml,
            stop: stop_on_ctrl_c()?,
        };
        crate::pretrain::fit(obj, train, &opts)
    }
}

/// The last lines of a trainer command: how it ended, its speed in `unit`s per second,
/// the last loss and accuracy (then `extra`), and where the encoder is.
fn report_trainer(s: &crate::pretrain::FitSummary, unit: &str, extra: &str, out: &std::path::Path) {
    // Only what was logged: a session stopped before its first log has no last values.
    let last = [("loss", "train/loss", 4), ("accuracy", "train/acc", 3)]
        .iter()
        .filter_map(|&(name, key, digits)| {
            let v = s.last_value(key);
            v.is_finite().then(|| format!("{name} {v:.digits$}"))
        })
        .collect::<Vec<_>>();
    let last = if last.is_empty() {
        "nothing logged yet".to_string()
    } else {
        format!("last: {}", last.join(", "))
    };
    crate::outln!(
        "{} after {} steps in {:.1} s ({:.1} {unit}/s); {last}{extra}",
        if s.interrupted { "interrupted" } else { "done" },
        s.steps,
        s.seconds,
        s.samples_per_sec,
    );
    crate::outln!("encoder: {}", out.join(crate::run_dir::ENCODER).display());
}
