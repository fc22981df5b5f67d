//! Stop requests that cut an environment's waits short: a [`Hurry`] (one per
//! environment in a process of its own, set when its actor pool shuts down) and
//! [`hurry_all`] (set by rlcpc's Ctrl-C / SIGTERM handler) bound every pending and later
//! wait to [`GRACE`], so a stop request is honoured even while an environment hangs.
//! [`crate::Env::hurry`] hands them out; the Gymnasium bridge reads them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a request may still take once a stop was asked for.
pub const GRACE: Duration = Duration::from_secs(5);

/// Milliseconds since [`epoch`] at which every wait was cut short (0: never).
static HURRY_ALL: AtomicU64 = AtomicU64::new(0);

fn epoch() -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now_ms() -> u64 {
    // At least 1: 0 means "not hurried".
    (epoch().elapsed().as_millis() as u64).max(1)
}

/// Cuts every Gymnasium environment's waits, now and later, to [`GRACE`]: what a stop
/// request (Ctrl-C, SIGTERM) calls, so that a hung environment cannot hold the run.
pub fn hurry_all() {
    let _ = HURRY_ALL.compare_exchange(0, now_ms(), Ordering::SeqCst, Ordering::SeqCst);
}

/// Undoes [`hurry_all`]: for a process that goes on after a stopped run (the Python
/// package's `train` returns to the interpreter).
pub fn unhurry_all() {
    HURRY_ALL.store(0, Ordering::SeqCst);
}

/// One environment's stop request; see the module's notes.
#[derive(Clone, Debug, Default)]
pub struct Hurry(Arc<AtomicU64>);

impl Hurry {
    /// Cuts this environment's waits, now and later, to [`GRACE`].
    pub fn now(&self) {
        let _ = self
            .0
            .compare_exchange(0, now_ms(), Ordering::SeqCst, Ordering::SeqCst);
    }

    /// When the waits end at the latest for a request sent at `sent`: `timeout` after
    /// it, or [`GRACE`] after a stop request, whichever comes first.
    pub(crate) fn deadline(&self, sent: Instant, timeout: Duration) -> (Instant, bool) {
        let hurried = [
            self.0.load(Ordering::SeqCst),
            HURRY_ALL.load(Ordering::SeqCst),
        ]
        .into_iter()
        .filter(|&t| t > 0)
        .min();
        let limit = sent + timeout;
        match hurried {
            Some(ms) => {
                let cut = (epoch() + Duration::from_millis(ms)).max(sent) + GRACE;
                if cut < limit {
                    (cut, true)
                } else {
                    (limit, false)
                }
            }
            None => (limit, false),
        }
    }
}
