//! One bridge process (`bridge.py`) and its pipes: started with a spec, its first line
//! read as the spaces, then requests written and replies read, every read bounded in
//! time ([`Replies`]) and every failure put in words (how the process ended, what it
//! raised). Shared by [`super::GymnasiumEnv`] and [`super::GymnasiumVec`].

use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

use super::process::{self, Late, Replies};
use super::{interpreter, Hello, GRACE, HELLO_MAX};
use crate::config::EnvConfig;
use crate::env::EnvError;
use crate::hurry::Hurry;

const BRIDGE: &str = include_str!("bridge.py");

/// What a reply's status said went wrong.
pub struct Failure {
    /// The environment of a vector it happened in, where the bridge knows it.
    pub env: Option<usize>,
    /// What Python said, or how the process failed.
    pub message: String,
}

impl From<String> for Failure {
    fn from(message: String) -> Self {
        Failure { env: None, message }
    }
}

/// A running bridge process.
pub struct Bridge {
    child: Child,
    stdin: BufWriter<ChildStdin>,
    stdout: BufReader<Replies>,
    /// Its stop request ([`Hurry`]).
    pub hurry: Hurry,
    /// The environments it serves: a request waits `env.step_timeout` for each.
    envs: usize,
    /// `env.step_timeout`.
    step_timeout: Duration,
}

impl Bridge {
    /// Starts the bridge for `cfg` with `spec` (of `envs` environments) and reads its
    /// first line; fails naming `cfg.id` when Python cannot start, or does not make the
    /// environments in time, or answers with an error. Every request, the making
    /// included, has `env.step_timeout` for each environment (a sync vector makes and
    /// steps them one after another).
    pub fn start(
        cfg: &EnvConfig,
        spec: &serde_json::Value,
        envs: usize,
    ) -> Result<(Bridge, Hello), EnvError> {
        let id = cfg.id.clone();
        let fail = |message: String| EnvError::Python {
            id: id.clone(),
            message,
        };
        let step_timeout = Duration::from_secs_f64(cfg.step_timeout);
        let timeout = step_timeout * envs.max(1) as u32;
        let python = interpreter(cfg);
        let mut command = Command::new(&python);
        command
            .arg("-u")
            .arg("-c")
            .arg(BRIDGE)
            .arg(spec.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = process::spawn(command).map_err(|e| {
            // The interpreter hint only where the interpreter is the problem (not, say,
            // the process limit: EAGAIN).
            let hint = match e.kind() {
                std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied => {
                    " (set env.python, or activate a virtual environment)"
                }
                _ => "",
            };
            fail(format!(
                "cannot start Python '{}': {e}{hint}",
                python.display()
            ))
        })?;
        let stdin = BufWriter::new(child.stdin.take().expect("piped"));
        let hurry = Hurry::default();
        let stdout = BufReader::new(Replies::new(
            child.stdout.take().expect("piped"),
            hurry.clone(),
            timeout,
        ));
        // From here on, a failure ends the process group as the bridge is dropped.
        let mut bridge = Bridge {
            child,
            stdin,
            stdout,
            hurry,
            envs: envs.max(1),
            step_timeout,
        };
        // The hello is one JSON line; a program that writes without end is cut off at
        // HELLO_MAX bytes rather than read until memory runs out.
        let mut line = String::new();
        let read = std::io::Read::take(&mut bridge.stdout, HELLO_MAX).read_line(&mut line);
        let late = bridge.stdout.get_ref().late;
        let hello = match read {
            Ok(n) if n as u64 >= HELLO_MAX && !line.ends_with('\n') => Err(fail(format!(
                "'{}' did not answer as rlcpc's bridge: no line within {} MiB (is env.python a Python? or the environment's spaces are too large to describe: a Box of millions of values with their bounds)",
                python.display(),
                HELLO_MAX >> 20
            ))),
            Err(_) if late.is_some() => Err(fail(format!(
                "Python did not make the environment within {}; its processes were ended",
                bridge.waited(late)
            ))),
            Ok(n) if n > 0 => super::read_hello(&id, &python.display().to_string(), &line),
            _ => Err(fail(format!(
                "Python '{}' exited before the environment was made (its messages are above)",
                python.display()
            ))),
        }?;
        Ok((bridge, hello))
    }

    /// Sends one request.
    pub fn send(&mut self, msg: &[u8]) -> Result<(), String> {
        self.stdout.get_mut().sent();
        if let Err(e) = self.stdin.write_all(msg).and_then(|()| self.stdin.flush()) {
            return Err(self.gone(e));
        }
        Ok(())
    }

    /// Reads exactly `buf` of a reply.
    pub fn read(&mut self, buf: &mut [u8]) -> Result<(), String> {
        match self.stdout.read_exact(buf) {
            Ok(()) => Ok(()),
            Err(e) => Err(self.unanswered(e)),
        }
    }

    /// Reads a reply's status; `Err` holds the environment's message (and, from a
    /// vector, which environment's where the bridge knows).
    pub fn status(&mut self) -> Result<(), Failure> {
        let mut status = [0u8; 1];
        self.read(&mut status)?;
        let env = match status[0] {
            0 => return Ok(()),
            1 => None,
            2 => {
                let mut index = [0u8; 4];
                self.read(&mut index)?;
                Some(u32::from_le_bytes(index) as usize)
            }
            b => return Err(self.out_of_step(b).into()),
        };
        let mut len = [0u8; 4];
        self.read(&mut len)?;
        let len = u32::from_le_bytes(len) as usize;
        if len > 1 << 20 {
            return Err(self.out_of_step(status[0]).into());
        }
        let mut text = vec![0u8; len];
        self.read(&mut text)?;
        Err(Failure {
            env,
            message: String::from_utf8_lossy(&text).into_owned(),
        })
    }

    /// The message for a pipe that broke: how the process ended, if it did (a signal,
    /// SIGKILL often being the out-of-memory killer), else the pipe's error.
    fn gone(&mut self, e: std::io::Error) -> String {
        // The pipe closes as the process dies; its exit status follows within moments.
        let mut status = None;
        for _ in 0..50 {
            status = self.child.try_wait().ok().flatten();
            if status.is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        #[cfg(unix)]
        if let Some(sig) = status.and_then(|s| std::os::unix::process::ExitStatusExt::signal(&s)) {
            let oom = if sig == 9 {
                " (possibly by the out-of-memory killer)"
            } else {
                ""
            };
            return format!("the Python process was killed by signal {sig}{oom}");
        }
        match status {
            Some(s) => format!(
                "the Python process exited ({s}) without answering; its messages, if any, are above"
            ),
            None => format!(
                "the Python process stopped answering ({e}; its messages, if any, are above)"
            ),
        }
    }

    /// The message for a failed read of a reply: the deadline passed (the process group
    /// is then ended, since a late reply would put the stream out of step), or the
    /// process went away.
    fn unanswered(&mut self, e: std::io::Error) -> String {
        let late = self.stdout.get_ref().late;
        if late.is_none() {
            return self.gone(e);
        }
        process::end(&mut self.child);
        format!(
            "it did not answer within {}; its processes were ended",
            self.waited(late)
        )
    }

    /// How long a late reply was waited for, and which limit ended the wait.
    fn waited(&self, late: Option<Late>) -> String {
        let t = self.step_timeout.as_secs_f64();
        match late {
            Some(Late::Stopping) => format!("{} s of the stop request", GRACE.as_secs()),
            _ if self.envs == 1 => format!("{t} s (env.step_timeout)"),
            _ => format!(
                "{} s (env.step_timeout, {t} s, for each of its {} environments)",
                t * self.envs as f64,
                self.envs
            ),
        }
    }

    /// The stream is out of step (not the bridge's reply): the process is ended, since
    /// nothing read after this could be trusted.
    fn out_of_step(&mut self, byte: u8) -> String {
        process::end(&mut self.child);
        format!("the Python process answered out of protocol (byte {byte:#04x}); it was stopped")
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        // Ask politely, then make sure: a worker that stops must leave nothing of the
        // environment behind, its own helper processes included (the whole group ends).
        let _ = self.stdin.write_all(b"Q").and_then(|()| self.stdin.flush());
        for _ in 0..50 {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        process::end(&mut self.child);
    }
}

/// A file of shared memory that the bridge makes (its size known only to it) and that
/// is removed when this is dropped; both sides map it.
pub struct ShmPath(pub std::path::PathBuf);

impl ShmPath {
    /// A new path, unique to this process, in `/dev/shm` where there is one.
    pub fn new() -> Self {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = Path::new("/dev/shm");
        let dir = if dir.is_dir() {
            dir.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        ShmPath(dir.join(format!(
            "rlcpc-{}-{}-{nanos}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        )))
    }
}

impl Drop for ShmPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
