//! The run directory shared by `rlcpc train` and the standalone trainers: its file
//! names, a lock while a run uses it, and the rules that keep what was saved before.
//!
//! Order of a run's start: [`RunDir::open`] (create, lock, refuse to start over an
//! existing run or to resume a run without a checkpoint), then the caller reads and
//! checks the checkpoint against the new config, and only then [`RunDir::begin`] writes
//! `config.toml` and puts the metrics in order. A refused start writes nothing.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// The resolved config of the run.
pub const CONFIG: &str = "config.toml";
/// One JSON object per log interval.
pub const METRICS: &str = "metrics.jsonl";
/// Holds the PID of the process that uses the directory.
pub const LOCK: &str = "run.lock";
/// Weights, optimiser state, counters and generators.
pub const CHECKPOINT: &str = "checkpoint.safetensors";
/// The exported encoder of a trainer run.
pub const ENCODER: &str = "encoder.safetensors";

/// The default run directory of `rlcpc train`: `runs/<config>-<aux>-s<seed>-<unix time>`
/// (`config` the config file's stem, or `cartpole` without one).
pub fn default_path(config: Option<&Path>, aux: &str, seed: u64) -> PathBuf {
    let name = config
        .and_then(|p| p.file_stem())
        .map_or("cartpole".to_string(), |s| s.to_string_lossy().to_string());
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    PathBuf::from("runs").join(format!("{name}-{aux}-s{seed}-{secs}"))
}

/// A locked run directory. The lock is an OS advisory lock on `run.lock` (held as long
/// as the file is open, released by the OS even when the process is killed); the file
/// holds the holder's PID for messages and is emptied when the run ends.
pub struct RunDir {
    pub path: PathBuf,
    lock: std::fs::File,
    /// `open` made the directory, and `begin` has not run: a refused start removes it.
    created: bool,
    begun: std::cell::Cell<bool>,
}

impl Drop for RunDir {
    fn drop(&mut self) {
        let _ = self.lock.set_len(0);
        if self.created && !self.begun.get() {
            // A start refused before anything was written leaves no trace.
            let _ = std::fs::remove_file(self.path.join(LOCK));
            let _ = std::fs::remove_dir(&self.path);
        }
    }
}

/// The PID written in `dir`'s lock file, for messages.
fn written_pid(dir: &Path) -> String {
    std::fs::read_to_string(dir.join(LOCK))
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

fn in_use(dir: &Path) -> anyhow::Error {
    anyhow::anyhow!(
        "run directory '{}' is in use by process {} (it holds the lock on '{}')",
        dir.display(),
        written_pid(dir),
        dir.join(LOCK).display()
    )
}

/// Whether another process holds `dir`'s lock (checked by trying to take it).
pub fn held(dir: &Path) -> bool {
    let Ok(f) = std::fs::OpenOptions::new().write(true).open(dir.join(LOCK)) else {
        return false;
    };
    match f.try_lock() {
        Ok(()) => {
            let _ = f.unlock();
            false
        }
        Err(_) => true,
    }
}

/// The start rules of [`RunDir::open`] checked without creating or locking anything
/// (so that a command can refuse before it reads its data).
pub fn check_free(dir: &Path, resume: bool) -> Result<()> {
    if held(dir) {
        return Err(in_use(dir));
    }
    refuse_fresh_start(dir, resume)
}

/// A fresh run (`resume` false) where `dir` holds a checkpoint is refused.
fn refuse_fresh_start(dir: &Path, resume: bool) -> Result<()> {
    let ck = dir.join(CHECKPOINT);
    if !resume && ck.exists() {
        bail!(
            "{} already holds a run (checkpoint {}); pass --resume to continue it or choose another --out",
            dir.display(),
            ck.display()
        );
    }
    Ok(())
}

impl RunDir {
    /// Creates and locks `path`. A fresh run (`resume` false) is refused where a
    /// checkpoint exists; a resumed one where none does. A lock held by another process
    /// is refused naming it; a lock file left by a process that is gone holds no lock.
    pub fn open(path: &Path, resume: bool) -> Result<RunDir> {
        if path.exists() && !path.is_dir() {
            bail!("--out '{}' is a file, not a run directory", path.display());
        }
        let created = !path.exists();
        std::fs::create_dir_all(path)
            .with_context(|| format!("cannot create run directory '{}'", path.display()))?;
        let lock_path = path.join(LOCK);
        // The lock is written in place: a symlink or device there would be written
        // through (truncating whatever it points at).
        if std::fs::symlink_metadata(&lock_path).is_ok_and(|m| !m.is_file()) {
            bail!(
                "'{}' is not a regular file (a symlink, device or FIFO); remove it to use this run directory",
                lock_path.display()
            );
        }
        let mut lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .with_context(|| format!("cannot create '{}'", lock_path.display()))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Err(in_use(path)),
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("cannot lock '{}'", lock_path.display()))
            }
        }
        lock.set_len(0)
            .and_then(|_| write!(lock, "{}", std::process::id()))
            .and_then(|_| lock.flush())
            .with_context(|| format!("cannot write '{}'", lock_path.display()))?;
        let dir = RunDir {
            path: path.to_path_buf(),
            lock,
            created,
            begun: std::cell::Cell::new(false),
        };
        dir.check_start(resume)?;
        Ok(dir)
    }

    fn check_start(&self, resume: bool) -> Result<()> {
        refuse_fresh_start(&self.path, resume)?;
        if resume && !self.checkpoint().exists() {
            bail!(
                "--resume: '{}' has no checkpoint: the run stopped before writing its first one (checkpoints are written periodically and at the end; start it again without --resume)",
                self.path.display()
            );
        }
        Ok(())
    }

    pub fn checkpoint(&self) -> PathBuf {
        self.path.join(CHECKPOINT)
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Once the checkpoint (if resuming) has been checked against the config: writes
    /// `config.toml` and makes the metrics continue from the checkpoint. Resuming cuts
    /// `metrics.jsonl` back to the rows whose `step_key` is at most `step` (rows logged
    /// after the checkpoint would repeat); a fresh run moves metrics left by an earlier
    /// run that wrote no checkpoint into `stale-<unix time>/`, saying so.
    pub fn begin(&self, resume: bool, config_toml: &str, step_key: &str, step: u64) -> Result<()> {
        self.begun.set(true);
        if resume {
            truncate_metrics(&self.file(METRICS), step_key, step)?;
        } else {
            self.move_stale()?;
        }
        crate::checkpoint::write_bytes_atomic(&self.file(CONFIG), config_toml.as_bytes())
            .with_context(|| format!("cannot write '{}'", self.file(CONFIG).display()))
    }

    fn move_stale(&self) -> Result<()> {
        let stale: Vec<PathBuf> = std::fs::read_dir(&self.path)
            .with_context(|| format!("cannot list '{}'", self.path.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                let name = p.file_name().unwrap_or_default().to_string_lossy();
                name == METRICS || name.starts_with("events.out.tfevents.")
            })
            .collect();
        if stale.is_empty() {
            return Ok(());
        }
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let dest = self.path.join(format!("stale-{secs}"));
        std::fs::create_dir_all(&dest)
            .with_context(|| format!("cannot create '{}'", dest.display()))?;
        for p in &stale {
            let to = dest.join(p.file_name().unwrap_or_default());
            std::fs::rename(p, &to)
                .with_context(|| format!("cannot move '{}' to '{}'", p.display(), to.display()))?;
        }
        crate::errln!(
            "note: '{}' held metrics of an earlier run that wrote no checkpoint; moved them to '{}'",
            self.path.display(),
            dest.display()
        );
        Ok(())
    }
}

/// Keeps the lines of `path` whose `key` is at most `step` (and the lines without it),
/// dropping lines that are not JSON (a row cut short by a kill); rewrites the file
/// atomically when anything is cut. A missing file is fine.
pub fn truncate_metrics(path: &Path, key: &str, step: u64) -> Result<usize> {
    let Ok(f) = std::fs::File::open(path) else {
        return Ok(0);
    };
    let mut kept = Vec::new();
    let mut cut = 0;
    for line in std::io::BufReader::new(f).lines() {
        let line = line.with_context(|| format!("cannot read '{}'", path.display()))?;
        // A line cut short by a kill or a full disk is not JSON: dropped too.
        let keep = serde_json::from_str::<serde_json::Value>(&line)
            .ok()
            .is_some_and(|v| {
                v.get(key)
                    .and_then(|x| x.as_f64())
                    .is_none_or(|s| s <= step as f64)
            });
        if keep {
            kept.push(line);
        } else {
            cut += 1;
        }
    }
    if cut > 0 {
        let mut text = kept.join("\n");
        if !text.is_empty() {
            text.push('\n');
        }
        crate::checkpoint::write_bytes_atomic(path, text.as_bytes())
            .with_context(|| format!("cannot rewrite '{}'", path.display()))?;
    }
    Ok(cut)
}

/// Refuses to write `path` (given by `flag`) where it is a directory, a device, a FIFO or
/// a socket. A symlink passes: the writers replace it through a rename rather than write
/// through it.
pub fn refuse_special(path: &Path, flag: &str) -> Result<()> {
    let Ok(link) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    if link.is_dir() {
        bail!("{flag} '{}' is a directory; name a file", path.display());
    }
    if !link.is_file() && !link.file_type().is_symlink() {
        bail!(
            "{flag} '{}' is not a regular file (a device, FIFO or socket); name a file",
            path.display()
        );
    }
    Ok(())
}

/// What an output file of a command is, so that the command may replace an earlier
/// output of its own without `--force` (re-drawing a plot is the normal workflow) but
/// nothing else (a checkpoint, metrics, a recording).
#[derive(Debug, Clone, Copy)]
pub enum OutputKind {
    /// A PNG image (`plot --out`).
    Png,
    /// A GIF animation (`envs render --out`).
    Gif,
    /// A text file whose first line starts with this (`plot --table`).
    Text(&'static str),
}

impl OutputKind {
    fn holds(self, head: &[u8]) -> bool {
        match self {
            OutputKind::Png => head.starts_with(b"\x89PNG\r\n\x1a\n"),
            OutputKind::Gif => head.starts_with(b"GIF87a") || head.starts_with(b"GIF89a"),
            OutputKind::Text(start) => head.starts_with(start.as_bytes()),
        }
    }

    fn describe(self) -> &'static str {
        match self {
            OutputKind::Png => "a PNG image",
            OutputKind::Gif => "a GIF",
            OutputKind::Text(_) => "a table written by this command",
        }
    }
}

/// Checks that the command may write its output `path` (given by `flag`, e.g.
/// `--table`): nothing is there, or an earlier output of the same `kind`, or `force`.
/// Never a directory, a device, FIFO or socket, nor one of a run directory's own files
/// (its checkpoint, metrics, config, encoder or recording), even with `force`. The
/// caller then writes through a temporary file and a rename, which replaces a symlink
/// instead of writing through it.
pub fn check_output(path: &Path, flag: &str, kind: OutputKind, force: bool) -> Result<()> {
    let shown = path.display();
    let run_file = path.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
        [
            CONFIG,
            METRICS,
            LOCK,
            CHECKPOINT,
            ENCODER,
            crate::data::trajectories::FILE,
        ]
        .contains(&n)
    });
    if run_file {
        bail!("{flag} '{shown}' is the name of a run directory's own file; choose another name");
    }
    refuse_special(path, flag)?;
    let Ok(link) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    let meta = std::fs::metadata(path).unwrap_or(link.clone());
    if force {
        return Ok(());
    }
    let mut head = [0u8; 64];
    let n = if meta.is_file() && !link.file_type().is_symlink() {
        use std::io::Read;
        std::fs::File::open(path)
            .and_then(|mut f| f.read(&mut head))
            .unwrap_or(0)
    } else {
        0
    };
    if n > 0 && kind.holds(&head[..n]) {
        return Ok(());
    }
    bail!(
        "{flag} '{shown}' exists and is not {} this command wrote before{}; choose another name or pass --force to replace it",
        kind.describe(),
        if link.file_type().is_symlink() {
            " (it is a symlink)"
        } else {
            ""
        }
    )
}

/// A run directory stands for its checkpoint.
pub fn checkpoint_path(path: &Path) -> std::path::PathBuf {
    if path.is_dir() {
        path.join(CHECKPOINT)
    } else {
        path.to_path_buf()
    }
}
