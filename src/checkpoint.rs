//! Checkpoints and exported encoders: safetensors files written atomically.
//!
//! A checkpoint holds every parameter by its stable name, the optimiser's state
//! (`optim.<param>.<slot>`), and in its metadata the config, the network spec, the
//! counters and, in sync mode, every actor's full state, so that `--resume` continues
//! exactly where the run stopped. Files are written to `<name>.tmp`, synced, then renamed
//! over the old one: a crash or a bad update never leaves a half-written checkpoint.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

/// Format version written into every file.
pub const FORMAT: &str = "rlcpc-1";

/// The largest file any command reads whole (checkpoints, encoders, recordings).
pub const MAX_FILE_BYTES: u64 = 16 << 30;

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("cannot write '{path}': {message}")]
    Write { path: PathBuf, message: String },
    #[error("cannot read {what} '{path}': {message}")]
    Read {
        what: &'static str,
        path: PathBuf,
        message: String,
    },
    #[error("{what} '{path}' is corrupt or not a safetensors file: {message}")]
    Corrupt {
        what: &'static str,
        path: PathBuf,
        message: String,
    },
    #[error("{what} '{path}' does not match: {message}")]
    Mismatch {
        what: &'static str,
        path: PathBuf,
        message: String,
    },
}

/// Counters saved with a checkpoint.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Counters {
    pub updates: u64,
    pub env_steps: u64,
    pub episodes: u64,
    pub optim_steps: u64,
    /// Wall-clock seconds spent training before this checkpoint.
    pub elapsed_secs: f64,
}

/// Writes `tensors` and `metadata` to `path` atomically (a temp file of this process
/// beside it, fsync, rename); creates the parent directory. On failure the temp file is
/// removed and `path` is untouched.
pub fn write_atomic(
    path: &Path,
    tensors: Vec<(String, Tensor)>,
    metadata: HashMap<String, String>,
) -> Result<(), CheckpointError> {
    let err = |m: String| CheckpointError::Write {
        path: path.to_path_buf(),
        message: m,
    };
    let tensors = tensors
        .into_iter()
        .map(|(k, t)| Ok((k, t.to_device(&Device::Cpu)?)))
        .collect::<candle_core::Result<Vec<_>>>()
        .map_err(|e| err(e.to_string()))?;
    let bytes = safetensors::serialize(tensors, Some(metadata)).map_err(|e| err(e.to_string()))?;
    let bytes = with_checksum(bytes).map_err(err)?;
    write_bytes_atomic(path, &bytes).map_err(|e| err(e.to_string()))
}

/// The safetensors file `bytes` with the CRC-32 of its data section in its metadata
/// ([`keys::CHECKSUM`]): safetensors itself has no checksum, and a flipped or zeroed
/// block of weights would otherwise load without a word.
fn with_checksum(bytes: Vec<u8>) -> Result<Vec<u8>, String> {
    let (n, mut header) = split_header(&bytes)?;
    let data = &bytes[8 + n..];
    let meta = header
        .as_object_mut()
        .ok_or("the header is not a JSON object")?
        .entry("__metadata__")
        .or_insert_with(|| serde_json::json!({}));
    meta.as_object_mut()
        .ok_or("the metadata is not a JSON object")?
        .insert(keys::CHECKSUM.into(), checksum(data).into());
    let mut text = serde_json::to_string(&header).map_err(|e| e.to_string())?;
    // The data section stays 8-byte aligned, as safetensors writes it.
    while text.len() % 8 != 0 {
        text.push(' ');
    }
    let mut out = Vec::with_capacity(8 + text.len() + data.len());
    out.extend_from_slice(&(text.len() as u64).to_le_bytes());
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(data);
    Ok(out)
}

/// The checksum of a data section as [`keys::CHECKSUM`] stores it.
fn checksum(data: &[u8]) -> String {
    format!("crc32:{:08x}", crc32fast::hash(data))
}

/// A safetensors file's header length and header JSON.
fn split_header(bytes: &[u8]) -> Result<(usize, serde_json::Value), String> {
    let n = bytes
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")) as usize)
        .ok_or("shorter than its header length")?;
    let header = bytes
        .get(8..8usize.saturating_add(n))
        .ok_or("shorter than its header")?;
    let header = serde_json::from_slice(header).map_err(|e| format!("header: {e}"))?;
    Ok((n, header))
}

/// The temp file `write_bytes_atomic` uses for `path`: unique to this process, so that
/// two writers never share one.
pub fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{}.tmp", std::process::id()));
    path.with_file_name(name)
}

/// Writes `bytes` to `path` through [`temp_path`], fsync and rename; removes the temp
/// file on any failure. Creates the parent directory.
pub fn write_bytes_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    if path.is_dir() {
        return Err(std::io::Error::other("it is a directory"));
    }
    let tmp = temp_path(path);
    let r = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)
    })();
    if r.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    r
}

/// The largest config or study file read (real ones are a few KiB).
pub const MAX_CONFIG_BYTES: u64 = 16 << 20;

/// A config or study file as text, through [`read_bounded`] ([`MAX_CONFIG_BYTES`]): a
/// link to a device or a huge file is refused before it fills the memory.
pub fn read_config_text(path: &Path) -> std::io::Result<String> {
    String::from_utf8(read_bounded(path, MAX_CONFIG_BYTES)?)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8 text"))
}

/// Reads a whole file that must be a regular file of at most `max` bytes: devices,
/// FIFOs and sockets (also behind symlinks) are refused before anything is read.
pub fn read_bounded(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let meta = std::fs::metadata(path)?;
    if !meta.is_file() {
        return Err(std::io::Error::other(if meta.is_dir() {
            "it is a directory".to_string()
        } else {
            "not a regular file (a device, FIFO or socket)".to_string()
        }));
    }
    if meta.len() > max {
        let limit = if max >= 1 << 30 {
            format!("{} GiB", max >> 30)
        } else {
            format!("{} MiB", max >> 20)
        };
        return Err(std::io::Error::other(format!(
            "{} bytes, more than the {limit} limit",
            meta.len()
        )));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    std::fs::File::open(path)?
        .take(max + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(std::io::Error::other("the file grew past the size limit"));
    }
    Ok(bytes)
}

/// The metadata keys of rlcpc's safetensors files, in one place.
pub mod keys {
    /// The file format tag ([`super::FORMAT`]).
    pub const FORMAT: &str = "rlcpc.format";
    /// The CRC-32 of the data section (`crc32:xxxxxxxx`), checked on every read.
    pub const CHECKSUM: &str = "rlcpc.checksum";
    /// An agent checkpoint's resolved config (TOML).
    pub const CONFIG: &str = "rlcpc.config";
    /// An agent checkpoint's network spec (encoder, core, heads).
    pub const NET_SPEC: &str = "rlcpc.net_spec";
    /// Step, update and episode counters.
    pub const COUNTERS: &str = "rlcpc.counters";
    /// The generator state for an exact resume.
    pub const RNG: &str = "rlcpc.rng";
    /// A trainer checkpoint's objective name (e.g. `cpc-audio`).
    pub const TRAINER: &str = "rlcpc.trainer";
    /// An encoder file's encoder spec.
    pub const ENCODER_SPEC: &str = "rlcpc.encoder";
    /// An encoder file's context network spec.
    pub const CONTEXT_SPEC: &str = "rlcpc.context";
    /// The data a trainer was trained on (split, held-out files).
    pub const DATA: &str = "rlcpc.data";
    /// An image encoder's patch grid.
    pub const PATCH_GRID: &str = "rlcpc.patch_grid";
    /// A text encoder's vocabulary.
    pub const VOCAB: &str = "rlcpc.vocab";
    /// A whole-image encoder's input (height, width, channels) and objective (SimCLR,
    /// MoCo): marks an encoder file as one for images.
    pub const IMAGE: &str = "rlcpc.image";
    /// An agent checkpoint's window of recent episodes (returns and lengths).
    pub const EPISODES: &str = "rlcpc.episodes";
    /// An agent checkpoint's actor workers' states (environments, generators), for an
    /// exact resume.
    pub const WORKERS: &str = "rlcpc.workers";
    /// An agent checkpoint's auxiliary-head generator state.
    pub const AUX_RNG: &str = "rlcpc.aux_rng";
    /// Every data-parallel learner's auxiliary-head generator state.
    pub const AUX_RNGS: &str = "rlcpc.aux_rng_learners";
    /// A recording's environment id and options.
    pub const RECORDING_ENV: &str = "rlcpc.env";
    /// A recording's policy.
    pub const RECORDING_POLICY: &str = "rlcpc.policy";
    /// A recording's names of the environment's state variables.
    pub const STATE_NAMES: &str = "rlcpc.state_names";
    /// A text trainer's corpus files.
    pub const DATA_FILES: &str = "rlcpc.data.files";
}

/// A lower bound on the parameters a network spec builds, to refuse metadata that would
/// size allocations beyond what the file holds (a spec is checked before it builds).
pub trait ParamCount {
    fn min_params(&self) -> u128;
}

/// A safetensors file loaded into CPU tensors, with its metadata.
pub struct Loaded {
    pub path: PathBuf,
    /// What the file is, for messages: "checkpoint", "encoder file", "recording".
    pub what: &'static str,
    pub tensors: HashMap<String, Tensor>,
    pub metadata: HashMap<String, String>,
}

impl Loaded {
    /// Reads a checkpoint (messages say "checkpoint").
    pub fn read(path: &Path) -> Result<Loaded, CheckpointError> {
        Self::read_as(path, "checkpoint")
    }

    /// Reads an rlcpc safetensors file: bounded, regular files only, every float tensor
    /// finite, the format tag checked. `what` names the file in messages.
    pub fn read_as(path: &Path, what: &'static str) -> Result<Loaded, CheckpointError> {
        let bytes = read_bounded(path, MAX_FILE_BYTES).map_err(|e| CheckpointError::Read {
            what,
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        Self::from_bytes(&bytes, path, what)
    }

    /// [`Loaded::read_as`] of a file's `bytes` (read elsewhere, e.g. by another MPI
    /// rank); `path` names it in messages.
    pub fn from_bytes(
        bytes: &[u8],
        path: &Path,
        what: &'static str,
    ) -> Result<Loaded, CheckpointError> {
        let corrupt = |m: String| CheckpointError::Corrupt {
            what,
            path: path.to_path_buf(),
            message: m,
        };
        let (n, meta) =
            safetensors::SafeTensors::read_metadata(bytes).map_err(|e| corrupt(e.to_string()))?;
        let metadata = meta.metadata().clone().unwrap_or_default();
        // Files written before the checksum have none; every file since has one.
        if let Some(want) = metadata.get(keys::CHECKSUM) {
            let got = checksum(&bytes[8 + n..]);
            if *want != got {
                return Err(corrupt(format!(
                    "its data does not match its checksum ({got}, written {want}): the file was damaged after it was written"
                )));
            }
        }
        let tensors = candle_core::safetensors::load_buffer(bytes, &Device::Cpu)
            .map_err(|e| corrupt(e.to_string()))?;
        let loaded = Loaded {
            path: path.to_path_buf(),
            what,
            tensors,
            metadata,
        };
        match loaded.metadata.get(keys::FORMAT).map(String::as_str) {
            Some(FORMAT) => {}
            Some(other) => {
                return Err(
                    loaded.mismatch(format!("format '{other}', this build reads '{FORMAT}'"))
                )
            }
            None => {
                return Err(
                    loaded.mismatch("no 'rlcpc.format' metadata: not written by rlcpc".into())
                )
            }
        }
        loaded.check_finite()?;
        Ok(loaded)
    }

    /// Refuses NaN or infinite values in any floating-point tensor.
    fn check_finite(&self) -> Result<(), CheckpointError> {
        let mut names: Vec<&String> = self.tensors.keys().collect();
        names.sort();
        for name in names {
            let t = &self.tensors[name];
            if !t.dtype().is_float() || t.elem_count() == 0 {
                continue;
            }
            let bad = t
                .to_dtype(DType::F32)
                .and_then(|t| t.flatten_all()?.to_vec1::<f32>())
                .map(|v| v.iter().filter(|x| !x.is_finite()).count())
                .map_err(|e| self.corrupt(e.to_string()))?;
            if bad > 0 {
                return Err(self.corrupt(format!(
                    "tensor '{name}' holds {bad} non-finite value(s) (NaN or infinity) of {}",
                    t.elem_count()
                )));
            }
        }
        Ok(())
    }

    pub fn mismatch(&self, message: String) -> CheckpointError {
        CheckpointError::Mismatch {
            what: self.what,
            path: self.path.clone(),
            message,
        }
    }

    pub fn corrupt(&self, message: String) -> CheckpointError {
        CheckpointError::Corrupt {
            what: self.what,
            path: self.path.clone(),
            message,
        }
    }

    /// A metadata entry parsed as JSON.
    pub fn meta<T: for<'de> Deserialize<'de>>(&self, key: &str) -> Result<T, CheckpointError> {
        let raw = self
            .metadata
            .get(key)
            .ok_or_else(|| self.mismatch(format!("missing metadata '{key}'")))?;
        serde_json::from_str(raw).map_err(|e| self.corrupt(format!("metadata '{key}': {e}")))
    }

    /// Values held by all tensors together.
    pub fn elements(&self) -> u128 {
        self.tensors.values().map(|t| t.elem_count() as u128).sum()
    }

    /// A network spec from the metadata, refused when it describes more parameters than
    /// the file holds (so a lying spec never sizes an allocation).
    pub fn spec<T: for<'de> Deserialize<'de> + ParamCount>(
        &self,
        key: &str,
    ) -> Result<T, CheckpointError> {
        let spec: T = self.meta(key)?;
        let (need, have) = (spec.min_params(), self.elements());
        if need == u128::MAX {
            return Err(self.mismatch(format!(
                "metadata '{key}' describes no network that can be built (sizes that overflow, an empty layer list, or an input that does not fit)"
            )));
        }
        if need > have {
            return Err(self.mismatch(format!(
                "metadata '{key}' describes a network of at least {need} parameters, but the file holds {have} values: the metadata does not belong to these tensors"
            )));
        }
        Ok(spec)
    }

    /// The tensor `name`, checked to be F32 of `shape`.
    pub fn tensor(&self, name: &str, shape: &[usize]) -> Result<&Tensor, CheckpointError> {
        let t = self
            .tensors
            .get(name)
            .ok_or_else(|| self.mismatch(format!("missing tensor '{name}'")))?;
        if t.dtype() != DType::F32 {
            return Err(self.mismatch(format!("tensor '{name}' is {:?}, expected F32", t.dtype())));
        }
        if t.dims() != shape {
            return Err(self.mismatch(format!(
                "tensor '{name}' has shape {:?}, the network expects {shape:?}",
                t.dims()
            )));
        }
        Ok(t)
    }

    /// Copies the file's tensors into every variable of `varmap` whose name starts with
    /// one of `prefixes`, the variable `name` read from the file's tensor `source(name)`
    /// (an agent's `core.lstm.*` as a context network's `context.*`), each checked by
    /// [`Loaded::tensor`] (present, F32, the shape the network built).
    pub fn copy_into(
        &self,
        varmap: &candle_nn::VarMap,
        prefixes: &[&str],
        source: impl Fn(&str) -> String,
    ) -> anyhow::Result<()> {
        let data = varmap.data().lock().expect("varmap lock");
        let mut names: Vec<&String> = data.keys().collect();
        names.sort();
        for k in names {
            if prefixes.iter().any(|p| k.starts_with(p)) {
                let v = &data[k];
                v.set(&self.tensor(&source(k), v.dims())?.to_device(v.device())?)?;
            }
        }
        Ok(())
    }
}

/// The training state both loops (the agent's and the trainers') checkpoint besides
/// their own metadata: every parameter by name, then the optimiser's state
/// (`optim.<param>.<slot>`), as the tensors of the file.
pub fn state_tensors(
    params: &[(String, candle_core::Var)],
    optim: &rlcpc_agents::Optimizer,
) -> anyhow::Result<Vec<(String, Tensor)>> {
    let mut tensors: Vec<(String, Tensor)> = params
        .iter()
        .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
        .collect();
    tensors.extend(optim.state_tensors()?);
    Ok(tensors)
}

impl Loaded {
    /// Sets every parameter of `params` from the file, each checked by
    /// [`Loaded::tensor`] (present, F32, the shape the network built).
    pub fn restore_params(&self, params: &[(String, candle_core::Var)]) -> anyhow::Result<()> {
        for (name, var) in params {
            var.set(&self.tensor(name, var.dims())?.to_device(var.device())?)?;
        }
        Ok(())
    }

    /// Restores the optimiser's state at the step count of the file's counters, and
    /// returns those counters.
    pub fn restore_optim(&self, optim: &mut rlcpc_agents::Optimizer) -> anyhow::Result<Counters> {
        let c: Counters = self.meta(keys::COUNTERS)?;
        optim
            .load_state(|k| self.tensors.get(k).cloned(), c.optim_steps)
            .map_err(|e| self.mismatch(e.to_string()))?;
        Ok(c)
    }
}

/// Metadata map from `(key, JSON value)` pairs, with the format tag.
pub fn metadata(entries: Vec<(&str, String)>) -> HashMap<String, String> {
    let mut m: HashMap<String, String> = entries
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    m.insert(keys::FORMAT.into(), FORMAT.into());
    m
}
