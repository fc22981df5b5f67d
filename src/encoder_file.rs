//! One reader for every file that holds an encoder: an agent checkpoint (its encoder,
//! and its LSTM core as the context network), an encoder written by
//! `rlcpc export-encoder`, and a trainer's `encoder.safetensors` or checkpoint.
//!
//! [`EncoderFile::read`] reads and checks the file once (bounded, finite, specs no
//! larger than the tensors); [`EncoderFile::modality`] says what data it encodes, which
//! is what `rlcpc probe` dispatches on; [`EncoderFile::load_into`] is the one copy of a
//! file's tensors into a network's variables (an agent's `core.lstm.*` read as
//! `context.*`).

use std::path::{Path, PathBuf};

use anyhow::Result;
use candle_core::{DType, Device};
use candle_nn::VarMap;

use crate::checkpoint::{keys, Loaded};
use crate::config::CoreKind;
use crate::nn::encoders::{ContextSpec, Encoder, EncoderSpec};
use crate::nn::NetSpec;

/// Named tensors, as safetensors files hold them.
type Tensors = Vec<(String, candle_core::Tensor)>;
/// Metadata entries `(key, JSON)`.
type Metadata = Vec<(&'static str, String)>;

/// Where the encoder was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// `rlcpc train`'s checkpoint: the agent's encoder and recurrent core.
    AgentCheckpoint,
    /// An exported encoder, or a trainer's encoder file or checkpoint.
    EncoderFile,
}

/// What data an encoder reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Modality {
    /// Environment observations (an MLP or conv encoder): probed on recordings.
    Observations,
    /// Waveforms.
    Audio,
    /// Images as a grid of patches.
    Image,
    /// Sentences.
    Text,
}

/// An encoder file, read and checked once.
pub struct EncoderFile {
    pub file: Loaded,
    pub spec: EncoderSpec,
    /// The context network stored with the encoder (an agent's LSTM core, a trainer's
    /// GRU or masked grid network), if any.
    pub context: Option<ContextSpec>,
    pub origin: Origin,
}

impl EncoderFile {
    /// Reads `path` (a file; see [`encoder_path`] for run directories).
    pub fn read(path: &Path) -> Result<Self> {
        let file = Loaded::read_as(path, "encoder file")?;
        if file.metadata.contains_key(keys::ENCODER_SPEC) {
            let spec = file.spec(keys::ENCODER_SPEC)?;
            let context = if file.metadata.contains_key(keys::CONTEXT_SPEC) {
                Some(file.spec(keys::CONTEXT_SPEC)?)
            } else {
                None
            };
            return Ok(EncoderFile {
                file,
                spec,
                context,
                origin: Origin::EncoderFile,
            });
        }
        if file.metadata.contains_key(keys::NET_SPEC) {
            let net: NetSpec = file.spec(keys::NET_SPEC)?;
            // A core that also reads the environment's extra inputs (POPGym's previous
            // action) is no context network over z alone: only the encoder is usable.
            let context =
                (net.core == CoreKind::Lstm && net.extra_inputs == 0).then(|| ContextSpec::Lstm {
                    in_dim: net.feature_dim(),
                    hidden: net.lstm_hidden,
                });
            return Ok(EncoderFile {
                file,
                spec: net.encoder,
                context,
                origin: Origin::AgentCheckpoint,
            });
        }
        Err(file
            .mismatch(
                "it holds no encoder (no 'rlcpc.encoder' or 'rlcpc.net_spec' metadata)".into(),
            )
            .into())
    }

    /// What data the encoder reads. A conv encoder trained by `pretrain image` on patches
    /// (it stores a patch grid) is an image encoder.
    pub fn modality(&self) -> Modality {
        match self.spec {
            EncoderSpec::Audio { .. } => Modality::Audio,
            EncoderSpec::Text { .. } => Modality::Text,
            EncoderSpec::Patches { .. } => Modality::Image,
            EncoderSpec::Resnet { .. } => Modality::Image,
            _ if self.file.metadata.contains_key(keys::PATCH_GRID) => Modality::Image,
            _ if self.file.metadata.contains_key(keys::IMAGE) => Modality::Image,
            _ => Modality::Observations,
        }
    }

    /// The stored context network's spec; an error naming the file if there is none.
    pub fn context_spec(&self) -> Result<ContextSpec> {
        self.context.clone().ok_or_else(|| {
            self.file
                .mismatch(format!("missing metadata '{}'", keys::CONTEXT_SPEC))
                .into()
        })
    }

    /// The trainer's record of its data (split, held-out files), if it stored one.
    pub fn data_meta(&self) -> Option<serde_json::Value> {
        self.file.meta(keys::DATA).ok()
    }

    /// Refuses a file whose encoder differs from `want`, saying how.
    pub fn check(&self, want: &EncoderSpec) -> Result<()> {
        match self.spec.mismatch(want) {
            Some(m) => Err(self.file.mismatch(m).into()),
            None => Ok(()),
        }
    }

    /// An error about this file (names it).
    pub fn mismatch(&self, message: String) -> anyhow::Error {
        self.file.mismatch(message).into()
    }

    /// The file's name of the tensor a network calls `name`: an agent checkpoint holds
    /// its context network as the core, `core.lstm.*`.
    fn source_name(&self, name: &str) -> String {
        match (self.origin, name.strip_prefix("context.")) {
            (Origin::AgentCheckpoint, Some(rest)) => format!("core.lstm.{rest}"),
            _ => name.to_string(),
        }
    }

    /// Copies the file's tensors into every variable of `varmap` whose name starts with
    /// one of `prefixes` (`encoder.`, `context.`), each checked to be present, F32 and of
    /// the shape the network built.
    pub fn load_into(&self, varmap: &VarMap, prefixes: &[&str]) -> Result<()> {
        self.file
            .copy_into(varmap, prefixes, |name| self.source_name(name))
    }

    /// The tensors an exported encoder holds: `encoder.*` and the context network as
    /// `context.*`, with their specs as metadata.
    pub fn export_parts(&self) -> Result<(Tensors, Metadata)> {
        let mut meta = vec![(keys::ENCODER_SPEC, serde_json::to_string(&self.spec)?)];
        let mut tensors: Vec<_> = Vec::new();
        for (k, t) in &self.file.tensors {
            let name = match (self.origin, k.strip_prefix("core.lstm.")) {
                (Origin::AgentCheckpoint, Some(rest)) if self.context.is_some() => {
                    format!("context.{rest}")
                }
                _ if k.starts_with("encoder.") || k.starts_with("context.") => k.clone(),
                _ => continue,
            };
            tensors.push((name, t.clone()));
        }
        if let Some(ctx) = &self.context {
            meta.push((keys::CONTEXT_SPEC, serde_json::to_string(ctx)?));
        }
        if !tensors.iter().any(|(k, _)| k.starts_with("encoder.")) {
            return Err(self.mismatch("no encoder.* tensors".into()));
        }
        tensors.sort_by(|a, b| a.0.cmp(&b.0));
        Ok((tensors, meta))
    }
}

/// A run directory stands for its encoder: a trainer run's `encoder.safetensors`, else
/// an agent run's checkpoint.
pub fn encoder_path(path: &Path) -> PathBuf {
    let enc = path.join(crate::run_dir::ENCODER);
    if path.is_dir() && enc.exists() {
        enc
    } else {
        crate::run_dir::checkpoint_path(path)
    }
}

/// Overwrites the `encoder.*` variables of `varmap` (built for `want`) with the weights
/// in `path`; refuses a file whose encoder differs, saying how.
pub fn init_encoder_from(path: &Path, want: &EncoderSpec, varmap: &VarMap) -> Result<()> {
    let f = EncoderFile::read(path)?;
    f.check(want)?;
    f.load_into(varmap, &["encoder."])
}

/// Loads an encoder onto `device` (its weights in a fresh [`VarMap`], trainable), every
/// tensor checked against the spec.
pub fn load_encoder(path: &Path, device: &Device) -> Result<(Encoder, VarMap)> {
    let f = EncoderFile::read(path)?;
    let mut init = crate::nn::init::Init::new(0, device);
    f.spec
        .init(&mut init, "encoder")
        .map_err(|e| f.mismatch(e.to_string()))?;
    f.load_into(&init.varmap, &["encoder."])?;
    let vb = candle_nn::VarBuilder::from_varmap(&init.varmap, DType::F32, device);
    let enc =
        Encoder::new(f.spec.clone(), vb.pp("encoder")).map_err(|e| f.mismatch(e.to_string()))?;
    Ok((enc, init.varmap))
}
