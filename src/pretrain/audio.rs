//! CPC on raw audio (van den Oord et al. 2018, §3.1): random windows of the waveform,
//! g_enc = strided 1-D convolutions (one z_t per 10 ms), g_ar = a GRU (c_t), and one
//! linear W_k per future step k = 1..K scored by InfoNCE against negatives from the same
//! sequence, the same speaker or the batch. This module is the modality (config,
//! network, windows); the loss is [`super::cpc_objective::Cpc`]'s, through
//! [`crate::contrastive::cpc`], the same code as the agent's CPC head.

use std::path::Path;

use anyhow::{bail, Result};
use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use rand::{Rng, SeedableRng};
use rlcpc_envs::SeededRng;
use serde::{Deserialize, Serialize};

use super::cpc_objective::{Cpc, Encoded, HostEncoded, Sequences};
use super::TrainSection;
use crate::config::Negatives;
use crate::config::{Invalid, LearnerPath};
use crate::contrastive::cpc::CpcSampling;
use crate::data::audio::{AudioSet, Layout, LoadOptions};
use crate::data::{split, SplitBy};
use crate::encoder_file::{EncoderFile, Modality};
use crate::nn::audio::{check_layers, frames, AudioEncoder};
use crate::nn::encoders::{ContextSpec, EncoderSpec};
use crate::nn::gru::Gru;
use crate::nn::init::Init;
use crate::nn::lean::audio::LeanAudioEncoder;
use crate::nn::lean::gru::LeanGru;

/// `[data]`: which audio is read and how it is cut.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataSection {
    /// Every file is resampled to this rate on load (the paper: 16 kHz).
    pub sample_rate: u32,
    /// Samples per training window (the paper: 20,480 = 1.28 s); files shorter than a
    /// window are not trained on.
    pub window: usize,
    /// Where labels come from (used for speaker negatives and the split).
    pub layout: Layout,
    /// The held-out set CPC never trains on (and `rlcpc probe` tests on by default).
    pub split: SplitBy,
    pub test_fraction: f64,
    pub split_seed: u64,
    /// Read at most this many files (0: all).
    pub max_files: usize,
}

impl Default for DataSection {
    fn default() -> Self {
        DataSection {
            sample_rate: 16000,
            window: 20480,
            layout: Layout::Auto,
            split: SplitBy::Utterance,
            test_fraction: 0.2,
            split_seed: 0,
            max_files: 0,
        }
    }
}

/// `[model]`: g_enc and g_ar.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelSection {
    /// Channels of every convolution (the paper: 512).
    pub channels: usize,
    /// Strides and kernels of the convolutions (the paper: 5,4,2,2,2 and 10,8,4,4,4).
    pub strides: Vec<usize>,
    pub kernels: Vec<usize>,
    /// GRU width (the paper: 256).
    pub context: usize,
    /// Normalise every time step over channels before each ReLU (Rivière et al. 2020's
    /// "channel norm"; not in the paper, whose value is false).
    pub channel_norm: bool,
    /// Standardise each waveform (zero mean, unit variance) before g_enc, as wav2vec
    /// 2.0's `normalize` (the paper does not say). Without it the first layer's random
    /// biases outweigh quiet input and continuous speech stayed at chance here.
    pub normalize: bool,
}

impl Default for ModelSection {
    fn default() -> Self {
        ModelSection {
            channels: 256,
            strides: vec![5, 4, 2, 2, 2],
            kernels: vec![10, 8, 4, 4, 4],
            context: 256,
            channel_norm: false,
            normalize: true,
        }
    }
}

/// `[cpc]`: the contrastive task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CpcSection {
    /// Future steps predicted, one W_k each (the paper: 12).
    pub horizon: usize,
    /// `sequence` (other steps of the same window), `speaker` (any step of a window of the
    /// same speaker), `batch` (other windows at the same step) or `both` (any step of any
    /// window).
    pub negatives: Negatives,
    /// Negatives per positive, sampled with replacement.
    pub num_negatives: usize,
    /// Start times t per window and step (0: all).
    pub start_times: usize,
    /// Horizons per start time (0: all k = 1..K that fit).
    pub horizons: usize,
    /// Windows drawn from each sampled speaker (≥ 2 gives speaker negatives other windows).
    pub windows_per_speaker: usize,
}

impl From<&CpcSection> for CpcSampling {
    fn from(c: &CpcSection) -> Self {
        CpcSampling {
            start_times: c.start_times,
            horizons: c.horizons,
            ..CpcSampling::new(c.horizon, c.negatives, c.num_negatives)
        }
    }
}

impl Default for CpcSection {
    fn default() -> Self {
        CpcSection {
            horizon: 12,
            negatives: Negatives::Sequence,
            num_negatives: 16,
            start_times: 0,
            horizons: 0,
            windows_per_speaker: 1,
        }
    }
}

/// `configs/cpc-audio.toml`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AudioCpcConfig {
    /// The objective: `cpc` (Contrastive Predictive Coding; SimCLR and MoCo are for images).
    pub objective: super::ObjectiveKind,
    pub data: DataSection,
    pub model: ModelSection,
    pub cpc: CpcSection,
    pub train: TrainSection,
}

/// The built-in configs: `--config NAME` finds them when no file NAME exists.
pub const PRESETS: [(&str, &str); 2] = [
    ("cpc-audio", include_str!("../../configs/cpc-audio.toml")),
    (
        "cpc-audio-fsdd",
        include_str!("../../configs/cpc-audio-fsdd.toml"),
    ),
];

/// The default, `configs/cpc-audio.toml`.
pub const DEFAULT_CONFIG: &str = PRESETS[0].1;

impl super::TrainerConfig for AudioCpcConfig {
    const PRESETS: &'static [(&'static str, &'static str)] = &PRESETS;

    fn validate(&self) -> Result<(), crate::config::Invalid> {
        self.objective.only_cpc("audio")?;
        self.train.validate()?;
        super::at_most(&[
            ("model.channels", self.model.channels, 65_536),
            ("model.context", self.model.context, 65_536),
            ("cpc.num_negatives", self.cpc.num_negatives, 65_536),
            ("data.window", self.data.window, 16_000_000),
            ("data.sample_rate", self.data.sample_rate as usize, 768_000),
        ])?;
        let stride = check_layers(&self.model.strides, &self.model.kernels)
            .map_err(|e| Invalid::new("model.strides'/'model.kernels", e))?;
        if self.model.channels == 0 || self.model.context == 0 {
            return Err(Invalid::new("model.channels'/'model.context", "0"));
        }
        if self.data.sample_rate < 1000 {
            return Err(Invalid::new(
                "data.sample_rate",
                format!("{} Hz", self.data.sample_rate),
            ));
        }
        let t = frames(self.data.window, &self.model.strides);
        if self.cpc.horizon == 0 || self.cpc.horizon >= t {
            return Err(Invalid::new("cpc.horizon", format!(
                "{} (a window of {} samples gives {t} steps of {stride} samples; K must be in 1..{t})",
                self.cpc.horizon, self.data.window
            )));
        }
        if self.cpc.num_negatives == 0 {
            return Err(Invalid::new("cpc.num_negatives", "0"));
        }
        if self.cpc.windows_per_speaker == 0
            || !self
                .train
                .batch
                .is_multiple_of(self.cpc.windows_per_speaker)
        {
            return Err(Invalid::new(
                "cpc.windows_per_speaker",
                format!(
                    "{} (must divide train.batch = {})",
                    self.cpc.windows_per_speaker, self.train.batch
                ),
            ));
        }
        if matches!(self.cpc.negatives, Negatives::Batch) && self.train.batch < 2 {
            return Err(Invalid::new(
                "cpc.negatives",
                "\"batch\" needs train.batch ≥ 2",
            ));
        }
        if !(self.data.test_fraction > 0.0 && self.data.test_fraction < 1.0) {
            return Err(Invalid::new(
                "data.test_fraction",
                format!("{}", self.data.test_fraction),
            ));
        }
        Ok(())
    }
}

impl AudioCpcConfig {
    pub fn encoder_spec(&self) -> EncoderSpec {
        EncoderSpec::Audio {
            sample_rate: self.data.sample_rate,
            channels: self.model.channels,
            strides: self.model.strides.clone(),
            kernels: self.model.kernels.clone(),
            channel_norm: self.model.channel_norm,
            normalize: self.model.normalize,
        }
    }

    pub fn context_spec(&self) -> ContextSpec {
        ContextSpec::Gru {
            in_dim: self.model.channels,
            hidden: self.model.context,
        }
    }
}

/// g_enc and g_ar: waveforms `[N, L]` → z `[N, T, C]`, c `[N, T, H]`.
pub struct AudioNet {
    pub encoder: AudioEncoder,
    pub context: Gru,
    pub spec: EncoderSpec,
    pub context_spec: ContextSpec,
}

impl AudioNet {
    /// Writes fresh parameters (PyTorch's default initialisation) under `encoder.` and
    /// `context.`.
    pub fn init(spec: &EncoderSpec, ctx: &ContextSpec, init: &mut Init) -> Result<()> {
        spec.init(init, "encoder")?;
        let ContextSpec::Gru { in_dim, hidden } = ctx else {
            bail!("the audio context network is a GRU, got {ctx:?}");
        };
        Gru::init(*in_dim, *hidden, init, "context")?;
        Ok(())
    }

    pub fn new(spec: EncoderSpec, ctx: ContextSpec, vb: VarBuilder) -> Result<Self> {
        let Some(arch) = spec.audio() else {
            bail!("{} is not an audio encoder", spec.describe());
        };
        let ContextSpec::Gru { in_dim, hidden } = ctx else {
            bail!("the audio context network is a GRU, got {ctx:?}");
        };
        if in_dim != arch.channels {
            bail!(
                "the GRU reads {in_dim} features but the encoder gives {}",
                arch.channels
            );
        }
        Ok(AudioNet {
            encoder: AudioEncoder::new(&arch, vb.pp("encoder"))?,
            context: Gru::new(in_dim, hidden, vb.pp("context"))?,
            spec,
            context_spec: ctx,
        })
    }

    /// A network with fresh weights from `seed` (the random-init baseline).
    pub fn random(
        spec: EncoderSpec,
        ctx: ContextSpec,
        seed: u64,
        device: &Device,
    ) -> Result<(Self, VarMap)> {
        let mut init = Init::new(seed, device);
        AudioNet::init(&spec, &ctx, &mut init)?;
        let vb = VarBuilder::from_varmap(&init.varmap, DType::F32, device);
        Ok((AudioNet::new(spec, ctx, vb)?, init.varmap))
    }

    /// Loads an encoder file written by `rlcpc pretrain audio` (or its checkpoint).
    pub fn load(path: &Path, device: &Device) -> Result<(Self, VarMap)> {
        Self::from_file(&EncoderFile::read(path)?, device)
    }

    /// The network of an encoder file already read.
    pub fn from_file(f: &EncoderFile, device: &Device) -> Result<(Self, VarMap)> {
        if f.modality() != Modality::Audio {
            return Err(f.mismatch(format!(
                "its encoder is {}, not an audio encoder (train one with `rlcpc pretrain audio`)",
                f.spec.describe()
            )));
        }
        let ctx = f.context_spec()?;
        let mut init = Init::new(0, device);
        AudioNet::init(&f.spec, &ctx, &mut init)?;
        f.load_into(&init.varmap, &["encoder.", "context."])?;
        let vb = VarBuilder::from_varmap(&init.varmap, DType::F32, device);
        Ok((AudioNet::new(f.spec.clone(), ctx, vb)?, init.varmap))
    }

    pub fn forward(&self, wave: &Tensor) -> Result<(Tensor, Tensor)> {
        let z = self.encoder.forward(wave)?;
        let c = self.context.forward(&z)?;
        Ok((z, c))
    }
}

/// The training objective: windows of the training split.
pub struct AudioWindows {
    cfg: AudioCpcConfig,
    net: AudioNet,
    /// Training waveforms at least one window long, and their speaker index.
    waves: Vec<Vec<f32>>,
    speaker_of: Vec<u32>,
    by_speaker: Vec<Vec<usize>>,
    rng: SeededRng,
    device: Device,
    data_meta: String,
    /// The network on the lean path (`train.learner`, on the CPU).
    lean: Option<LeanAudio>,
}

/// The encoder and the GRU on the lean path, and the layouts of the step in progress:
/// the encoder works on windows `[B, T, C]`, the GRU and the loss time-major.
struct LeanAudio {
    encoder: LeanAudioEncoder,
    context: LeanGru,
    t_len: usize,
    b: usize,
    d_sum: Vec<f32>,
    d_z: Vec<f32>,
}

/// CPC on audio windows.
pub type AudioCpc = Cpc<AudioWindows>;

impl AudioCpc {
    /// The network (seeded by `train.seed`) with W_1..W_K, on the training split of `set`.
    pub fn new(cfg: &AudioCpcConfig, set: AudioSet, device: &Device) -> Result<Self> {
        let mut init = Init::new(cfg.train.seed, device);
        let windows = AudioWindows::new(cfg, set, &mut init)?;
        Cpc::on(windows, init, (&cfg.cpc).into())
    }
}

impl AudioWindows {
    /// Builds the network into `init` and keeps the training split's waveforms of `set`
    /// (moved, not copied: a corpus can be gigabytes).
    pub fn new(cfg: &AudioCpcConfig, set: AudioSet, init: &mut Init) -> Result<Self> {
        let device = &init.device().clone();
        let speakers: Vec<String> = set.speakers().into_iter().map(String::from).collect();
        let speakers: Vec<&str> = speakers.iter().map(String::as_str).collect();
        let (train_idx, test_idx) = split(
            &speakers,
            cfg.data.split,
            cfg.data.test_fraction,
            cfg.data.split_seed,
        )
        .map_err(anyhow::Error::msg)?;
        // The held-out files by name, so that a probe tests on exactly these even when
        // the corpus has changed (or was cut by data.max_files) since.
        let held_out: Vec<String> = test_idx
            .iter()
            .map(|&i| set.utterances[i].path.to_string_lossy().into_owned())
            .collect();
        let mut names: Vec<&str> = Vec::new();
        let (mut waves, mut speaker_of) = (Vec::new(), Vec::new());
        let (root, layout) = (set.root.clone(), set.layout);
        let mut utterances: Vec<Option<crate::data::audio::Utterance>> =
            set.utterances.into_iter().map(Some).collect();
        for &i in &train_idx {
            let u = utterances[i].take().expect("split indices are distinct");
            if u.wave.len() < cfg.data.window {
                continue;
            }
            let s = speakers[i];
            let id = names.iter().position(|n| *n == s).unwrap_or_else(|| {
                names.push(s);
                names.len() - 1
            });
            waves.push(u.wave);
            speaker_of.push(id as u32);
        }
        if waves.is_empty() {
            bail!(
                "no training file is at least one window long ({} samples = {:.2} s at {} Hz); lower data.window",
                cfg.data.window,
                cfg.data.window as f64 / cfg.data.sample_rate as f64,
                cfg.data.sample_rate
            );
        }
        let mut by_speaker = vec![Vec::new(); names.len()];
        for (i, &s) in speaker_of.iter().enumerate() {
            by_speaker[s as usize].push(i);
        }
        let spec = cfg.encoder_spec();
        let ctx = cfg.context_spec();
        AudioNet::init(&spec, &ctx, init)?;
        let vb = VarBuilder::from_varmap(&init.varmap, DType::F32, device);
        let lean = match (spec.audio(), cfg.train.learner, device.is_cpu()) {
            (_, LearnerPath::Candle, _) | (_, LearnerPath::Auto, false) => None,
            (_, LearnerPath::Lean, false) => {
                bail!("train.learner = \"lean\" runs on the CPU only; use \"auto\" or \"candle\" with --device cuda")
            }
            (Some(arch), _, true) => Some(LeanAudio {
                encoder: LeanAudioEncoder::new(&arch, &init.varmap, "encoder")?,
                context: LeanGru::new(
                    &init.varmap,
                    "context",
                    cfg.model.channels,
                    cfg.model.context,
                )?,
                t_len: 0,
                b: 0,
                d_sum: Vec::new(),
                d_z: Vec::new(),
            }),
            (None, ..) => bail!("{} is not an audio encoder", spec.describe()),
        };
        let net = AudioNet::new(spec, ctx, vb)?;
        let data_meta = serde_json::json!({
            "root": root,
            "layout": layout,
            "split": cfg.data.split,
            "test_fraction": cfg.data.test_fraction,
            "split_seed": cfg.data.split_seed,
            "train_files": waves.len(),
            "max_files": cfg.data.max_files,
            "held_out": held_out,
        })
        .to_string();
        Ok(AudioWindows {
            cfg: cfg.clone(),
            net,
            waves,
            speaker_of,
            by_speaker,
            rng: SeededRng::seed_from_u64(cfg.train.seed ^ 0xA0D1_0C9C),
            device: device.clone(),
            data_meta,
            lean,
        })
    }

    /// Training windows (files long enough) and speakers among them.
    pub fn train_files(&self) -> (usize, usize) {
        (self.waves.len(), self.by_speaker.len())
    }

    /// `batch` random windows, `windows_per_speaker` at a time from one speaker; returns
    /// their samples `[B, L]` and each window's speaker group (renumbered from 0).
    fn sample(&mut self, batch: usize) -> Result<(Vec<f32>, Vec<u32>)> {
        let len = self.cfg.data.window;
        let per = self.cfg.cpc.windows_per_speaker;
        let mut data = Vec::with_capacity(batch * len);
        let mut groups = Vec::with_capacity(batch);
        for g in 0..batch / per {
            let first = self.rng.random_range(0..self.waves.len());
            let pool = &self.by_speaker[self.speaker_of[first] as usize];
            for j in 0..per {
                let f = if j == 0 {
                    first
                } else {
                    pool[self.rng.random_range(0..pool.len())]
                };
                let w = &self.waves[f];
                let start = self.rng.random_range(0..=w.len() - len);
                data.extend_from_slice(&w[start..start + len]);

                groups.push(g as u32);
            }
        }
        Ok((data, groups))
    }
}

impl Sequences for AudioWindows {
    const NAME: &'static str = "audio";

    fn dims(&self) -> (usize, usize) {
        (self.cfg.model.channels, self.cfg.model.context)
    }

    fn rng(&mut self) -> &mut SeededRng {
        &mut self.rng
    }

    fn encode(&mut self, batch: usize) -> Result<Encoded> {
        let (wave, groups) = self.sample(batch)?;
        let len = self.cfg.data.window;
        let (z, c) = self
            .net
            .forward(&Tensor::from_vec(wave, (batch, len), &self.device)?)?;
        let t_len = z.dim(1)?;
        let metrics = vec![(
            "z_norm_std".to_string(),
            super::normalized_std(&z.reshape(((), self.cfg.model.channels))?)?,
        )];
        // cpc_loss is time-major, as the agent's unrolls are.
        Ok(Encoded {
            z: z.transpose(0, 1)?.contiguous()?,
            c: c.transpose(0, 1)?.contiguous()?,
            first: vec![0f32; t_len * batch],
            groups,
            samples: batch,
            metrics,
        })
    }

    fn has_lean_path(&self) -> bool {
        self.lean.is_some()
    }

    fn encode_host(&mut self, batch: usize, out: &mut HostEncoded) -> Result<()> {
        let (wave, groups) = self.sample(batch)?;
        let (len, ch) = (self.cfg.data.window, self.cfg.model.channels);
        let Some(l) = &mut self.lean else {
            bail!("audio CPC runs through candle here (train.learner)");
        };
        let z = l.encoder.forward(&wave, batch, len)?;
        let t_len = z.len() / batch / ch;
        (l.t_len, l.b) = (t_len, batch);
        out.z.resize(z.len(), 0.0);
        transpose_rows(z, &mut out.z, batch, t_len, ch);
        let c = l.context.forward(&out.z, t_len, batch)?;
        out.c.clear();
        out.c.extend_from_slice(c);
        (out.t_len, out.b, out.samples) = (t_len, batch, batch);
        out.first.clear();
        out.first.resize(t_len * batch, 0.0);
        out.groups = groups;
        out.metrics = vec![(
            "z_norm_std".to_string(),
            super::normalized_std_of(&out.z, ch),
        )];
        Ok(())
    }

    fn backward_host(&mut self, d_z: &[f32], d_c: &[f32], grads: &mut GradStore) -> Result<()> {
        let Some(l) = &mut self.lean else {
            bail!("audio CPC runs through candle here (train.learner)");
        };
        let ch = self.cfg.model.channels;
        let d_x = l.context.backward(d_c, grads)?;
        // z's gradient: the loss's and the GRU's, back to the encoder's window layout.
        l.d_sum.clear();
        l.d_sum.extend(d_z.iter().zip(d_x).map(|(a, b)| a + b));
        l.d_z.resize(d_z.len(), 0.0);
        transpose_rows(&l.d_sum, &mut l.d_z, l.t_len, l.b, ch);
        l.encoder.backward(&l.d_z, grads)
    }

    fn export_metadata(&self) -> Vec<(&'static str, String)> {
        let mut m = super::spec_metadata(&self.net.spec, &self.net.context_spec);
        m.push((crate::checkpoint::keys::DATA, self.data_meta.clone()));
        m
    }
}

/// `[A, B, C]` → `[B, A, C]`: rows of `c` floats swapped between the two outer axes.
fn transpose_rows(src: &[f32], dst: &mut [f32], a: usize, b: usize, c: usize) {
    for i in 0..a {
        for j in 0..b {
            dst[(j * a + i) * c..(j * a + i + 1) * c]
                .copy_from_slice(&src[(i * b + j) * c..(i * b + j + 1) * c]);
        }
    }
}

/// Loads the corpus for `cfg` (reporting skipped files).
pub fn load_corpus(cfg: &DataSection, dir: &Path, strict: bool) -> Result<AudioSet> {
    let set = AudioSet::load(
        dir,
        &LoadOptions {
            layout: cfg.layout,
            strict,
            sample_rate: cfg.sample_rate,
            max_files: cfg.max_files,
        },
    )?;
    set.report_skipped(10);
    Ok(set)
}
