//! Standard output and standard error that a closed reader cannot crash.
//!
//! `println!` and `eprintln!` panic when the write fails, and a write to a pipe whose
//! reader has gone fails with `EPIPE` (Rust ignores `SIGPIPE`). So `rlcpc train | head`,
//! or a `tail` killed by the same Ctrl-C as the training, turned the run's last report
//! into a panic. Every line rlcpc prints goes through [`outln!`](crate::outln) /
//! [`errln!`](crate::errln) (and `out!` / `err!`) instead: the first failed write marks
//! that stream gone, later writes to it are dropped, and the process-wide
//! [`stop_flag`] is raised, so a training run stops as after Ctrl-C — it finishes its
//! step and writes its checkpoint, and nothing saved is lost. `main` then exits with
//! status 141 (128 + `SIGPIPE`, what a shell shows for a process a closed pipe ended)
//! and without an error message, as ripgrep does. Progress bars (`indicatif`) draw only
//! on a terminal and handle their own errors.

use std::fmt;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

/// The exit status after a closed standard output or error (128 + `SIGPIPE`).
pub const CLOSED_EXIT_STATUS: i32 = 141;

static STDOUT_GONE: AtomicBool = AtomicBool::new(false);
static STDERR_GONE: AtomicBool = AtomicBool::new(false);

/// The process-wide stop request: raised by Ctrl-C / SIGTERM / SIGHUP (the command line
/// installs that handler) and by a closed standard output or error. Training loops,
/// studies and episode loops poll it between steps.
pub fn stop_flag() -> Arc<AtomicBool> {
    static STOP: OnceLock<Arc<AtomicBool>> = OnceLock::new();
    STOP.get_or_init(|| Arc::new(AtomicBool::new(false)))
        .clone()
}

/// Whether a write to standard output or standard error has failed in this process.
pub fn closed() -> bool {
    STDOUT_GONE.load(Ordering::SeqCst) || STDERR_GONE.load(Ordering::SeqCst)
}

/// Writes to standard output; what `out!` / `outln!` call.
pub fn write_out(args: fmt::Arguments) {
    write_to(std::io::stdout().lock(), &STDOUT_GONE, &stop_flag(), args);
}

/// Writes to standard error; what `err!` / `errln!` call.
pub fn write_err(args: fmt::Arguments) {
    write_to(std::io::stderr().lock(), &STDERR_GONE, &stop_flag(), args);
}

fn write_to(mut w: impl Write, gone: &AtomicBool, stop: &AtomicBool, args: fmt::Arguments) {
    if gone.load(Ordering::SeqCst) {
        return;
    }
    if w.write_fmt(args).and_then(|()| w.flush()).is_err() {
        gone.store(true, Ordering::SeqCst);
        stop.store(true, Ordering::SeqCst);
    }
}

/// `print!` that survives a closed standard output (see [`crate::console`]).
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => { $crate::console::write_out(format_args!($($arg)*)) };
}

/// `println!` that survives a closed standard output (see [`crate::console`]).
#[macro_export]
macro_rules! outln {
    () => { $crate::console::write_out(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::console::write_out(format_args!("{}\n", format_args!($($arg)*))) };
}

/// `eprint!` that survives a closed standard error (see [`crate::console`]).
#[macro_export]
macro_rules! err {
    ($($arg:tt)*) => { $crate::console::write_err(format_args!($($arg)*)) };
}

/// `eprintln!` that survives a closed standard error (see [`crate::console`]).
#[macro_export]
macro_rules! errln {
    () => { $crate::console::write_err(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::console::write_err(format_args!("{}\n", format_args!($($arg)*))) };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer whose every write fails as a pipe without a reader does.
    struct ClosedPipe;
    impl Write for ClosedPipe {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_failed_write_marks_the_stream_gone_and_raises_the_stop_flag() {
        let (gone, stop) = (AtomicBool::new(false), AtomicBool::new(false));
        let mut buf = Vec::new();
        write_to(&mut buf, &gone, &stop, format_args!("a {}\n", 1));
        assert_eq!(buf, b"a 1\n");
        assert!(!gone.load(Ordering::SeqCst));
        write_to(ClosedPipe, &gone, &stop, format_args!("b\n"));
        assert!(gone.load(Ordering::SeqCst));
        assert!(stop.load(Ordering::SeqCst));
        // Later writes are dropped, even to a writer that would take them.
        write_to(&mut buf, &gone, &stop, format_args!("c\n"));
        assert_eq!(buf, b"a 1\n");
    }
}
