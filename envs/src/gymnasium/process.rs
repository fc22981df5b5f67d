//! The bridge's process and its reply pipe: every wait bounded, nothing left behind.
//!
//! - Each read of a reply has a deadline (`env.step_timeout` from the request), so an
//!   environment that stops answering ends the run with its name instead of hanging it.
//! - A [`Hurry`] (one per environment, set when its actor pool shuts down) and
//!   [`hurry_all`](crate::hurry::hurry_all) (set by rlcpc's Ctrl-C / SIGTERM handler) cut every pending and later
//!   wait to [`GRACE`](crate::hurry::GRACE), so a stop request is honoured even while an environment hangs.
//! - The bridge leads a process group of its own; it is killed as a group (its own
//!   helper processes too) when the environment is dropped, by [`kill_all`] on a forced
//!   exit, and by the kernel's parent-death signal when rlcpc dies without either.

use std::io::{Read, Write};
use std::process::{Child, ChildStdout, Command};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::hurry::Hurry;

/// The signal the kernel sends the bridge when rlcpc dies (`PR_SET_PDEATHSIG`); the
/// bridge answers it by killing its whole process group (bridge.py).
#[cfg(target_os = "linux")]
const PARENT_DEATH_SIGNAL: i32 = libc::SIGUSR2;

/// The process groups of the bridges alive now.
static GROUPS: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// Kills every bridge's process group at once: for an exit that runs no destructor
/// (a second Ctrl-C).
pub fn kill_all() {
    let groups = GROUPS.lock().map(|g| g.clone()).unwrap_or_default();
    for g in groups {
        kill_group(g);
    }
}

fn kill_group(pgid: u32) {
    #[cfg(unix)]
    // SAFETY: kill(2) with a negative pid signals a process group; it touches no memory.
    unsafe {
        libc::kill(-(pgid as i32), libc::SIGKILL);
    }
    #[cfg(not(unix))]
    let _ = pgid;
}

/// Why a reply did not come in time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Late {
    /// `env.step_timeout` passed.
    Timeout,
    /// [`GRACE`](crate::hurry::GRACE) passed after a stop request.
    Stopping,
}

/// The bridge's stdout with a deadline on every read.
pub struct Replies {
    out: ChildStdout,
    hurry: Hurry,
    timeout: Duration,
    sent: Instant,
    /// Why the last read failed, if it ran out of time.
    pub late: Option<Late>,
}

impl Replies {
    /// Reads of `out` end with `ErrorKind::TimedOut` `timeout` after the last
    /// [`Replies::sent`] (or [`GRACE`](crate::hurry::GRACE) after `hurry`).
    pub fn new(out: ChildStdout, hurry: Hurry, timeout: Duration) -> Self {
        Replies {
            out,
            hurry,
            timeout,
            sent: Instant::now(),
            late: None,
        }
    }

    /// A request was just sent: its reply has `timeout` from now.
    pub fn sent(&mut self) {
        self.sent = Instant::now();
        self.late = None;
    }
}

impl Read for Replies {
    #[cfg(unix)]
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use std::os::fd::AsRawFd;
        loop {
            let (deadline, stopping) = self.hurry.deadline(self.sent, self.timeout);
            let now = Instant::now();
            if now >= deadline {
                self.late = Some(if stopping {
                    Late::Stopping
                } else {
                    Late::Timeout
                });
                return Err(std::io::ErrorKind::TimedOut.into());
            }
            // Short slices, so that a stop request made meanwhile is seen.
            let wait = (deadline - now).min(Duration::from_millis(100));
            let mut fd = libc::pollfd {
                fd: self.out.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd, for the duration of the call.
            let r = unsafe { libc::poll(&mut fd, 1, wait.as_millis().max(1) as i32) };
            if r > 0 {
                // Readable, or closed (the read then returns 0 or the error).
                return self.out.read(buf);
            }
            if r < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() != std::io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }

    #[cfg(not(unix))]
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.out.read(buf)
    }
}

/// Starts `command` as the leader of a process group of its own that dies with rlcpc
/// (Linux: the parent-death signal), and records the group for [`kill_all`].
pub fn spawn(mut command: Command) -> std::io::Result<Child> {
    // A process group of its own: Ctrl-C at the terminal reaches rlcpc, which finishes
    // its step and checkpoints, not every environment at once.
    #[cfg(unix)]
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    #[cfg(target_os = "linux")]
    {
        let parent = std::process::id() as i32;
        // SAFETY: the closure runs in the forked child before exec and calls only
        // async-signal-safe functions (prctl, getppid, _exit).
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut command, move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, PARENT_DEATH_SIGNAL as libc::c_ulong) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // rlcpc died between the fork and the prctl: nobody will read us.
                if libc::getppid() != parent {
                    libc::_exit(1);
                }
                Ok(())
            });
        }
    }
    // The kernel sends the parent-death signal when the *thread* that forked the child
    // ends; a thread that lives as long as the process does the forking.
    let child = on_spawner_thread(command)?;
    if let Ok(mut g) = GROUPS.lock() {
        g.push(child.id());
    }
    Ok(child)
}

/// Ends `child`'s whole process group (its helper processes too) and reaps it.
/// Once only: a group id is not signalled after its leader was reaped here (it could
/// name another group by then).
pub fn end(child: &mut Child) {
    let pgid = child.id();
    let live = GROUPS.lock().map_or(true, |mut g| {
        let before = g.len();
        g.retain(|&p| p != pgid);
        g.len() < before
    });
    if live {
        kill_group(pgid);
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Runs `command.spawn()` on one thread that lives as long as the process.
fn on_spawner_thread(command: Command) -> std::io::Result<Child> {
    type Job = (Command, std::sync::mpsc::Sender<std::io::Result<Child>>);
    static SPAWNER: std::sync::OnceLock<Mutex<std::sync::mpsc::Sender<Job>>> =
        std::sync::OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        let started = std::thread::Builder::new()
            .name("gymnasium-spawner".into())
            .spawn(move || {
                for (mut command, reply) in rx {
                    let _ = reply.send(command.spawn());
                }
            });
        if let Err(e) = started {
            // Not eprintln!: a closed standard error must not panic the caller.
            let _ = writeln!(
                std::io::stderr(),
                "warning: no spawner thread for Python environments ({e})"
            );
        }
        Mutex::new(tx)
    });
    let (tx, rx) = std::sync::mpsc::channel();
    let sent = spawner
        .lock()
        .map_err(|_| std::io::Error::other("spawner lock poisoned"))?
        .send((command, tx));
    match sent {
        Ok(()) => rx
            .recv()
            .map_err(|_| std::io::Error::other("the spawner thread ended"))?,
        // No spawner thread: spawn here (the parent-death signal then follows this
        // thread's life, which is still bounded by the group kill on drop).
        Err(std::sync::mpsc::SendError((mut command, _))) => command.spawn(),
    }
}
