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

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

/// Format version written into every file.
pub const FORMAT: &str = "rlcpc-1";

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("cannot write '{path}': {message}")]
    Write { path: PathBuf, message: String },
    #[error("cannot read checkpoint '{path}': {message}")]
    Read { path: PathBuf, message: String },
    #[error("checkpoint '{path}' is corrupt or not a safetensors file: {message}")]
    Corrupt { path: PathBuf, message: String },
    #[error("checkpoint '{path}' does not match: {message}")]
    Mismatch { path: PathBuf, message: String },
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

/// Writes `tensors` and `metadata` to `path` atomically (temp file, fsync, rename).
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
    let tmp = path.with_extension("safetensors.tmp");
    let mut f = std::fs::File::create(&tmp).map_err(|e| err(e.to_string()))?;
    f.write_all(&bytes).map_err(|e| err(e.to_string()))?;
    f.sync_all().map_err(|e| err(e.to_string()))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(|e| err(e.to_string()))?;
    Ok(())
}

/// A safetensors file loaded into CPU tensors, with its metadata.
pub struct Loaded {
    pub path: PathBuf,
    pub tensors: HashMap<String, Tensor>,
    pub metadata: HashMap<String, String>,
}

impl Loaded {
    pub fn read(path: &Path) -> Result<Loaded, CheckpointError> {
        let bytes = std::fs::read(path).map_err(|e| CheckpointError::Read {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let corrupt = |m: String| CheckpointError::Corrupt {
            path: path.to_path_buf(),
            message: m,
        };
        let (_, meta) =
            safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| corrupt(e.to_string()))?;
        let metadata = meta.metadata().clone().unwrap_or_default();
        let tensors = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)
            .map_err(|e| corrupt(e.to_string()))?;
        let loaded = Loaded {
            path: path.to_path_buf(),
            tensors,
            metadata,
        };
        match loaded.metadata.get("rlcpc.format").map(String::as_str) {
            Some(FORMAT) => Ok(loaded),
            Some(other) => {
                Err(loaded.mismatch(format!("format '{other}', this build reads '{FORMAT}'")))
            }
            None => Err(loaded.mismatch("no 'rlcpc.format' metadata: not written by rlcpc".into())),
        }
    }

    pub fn mismatch(&self, message: String) -> CheckpointError {
        CheckpointError::Mismatch {
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
        serde_json::from_str(raw).map_err(|e| CheckpointError::Corrupt {
            path: self.path.clone(),
            message: format!("metadata '{key}': {e}"),
        })
    }

    /// The tensor `name`, checked against `shape`.
    pub fn tensor(&self, name: &str, shape: &[usize]) -> Result<&Tensor, CheckpointError> {
        let t = self
            .tensors
            .get(name)
            .ok_or_else(|| self.mismatch(format!("missing tensor '{name}'")))?;
        if t.dims() != shape {
            return Err(self.mismatch(format!(
                "tensor '{name}' has shape {:?}, the network expects {shape:?}",
                t.dims()
            )));
        }
        Ok(t)
    }
}

/// Metadata map from `(key, JSON value)` pairs, with the format tag.
pub fn metadata(entries: Vec<(&str, String)>) -> HashMap<String, String> {
    let mut m: HashMap<String, String> = entries
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    m.insert("rlcpc.format".into(), FORMAT.into());
    m
}
