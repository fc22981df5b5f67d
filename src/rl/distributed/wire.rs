//! The messages between learners and actor ranks (postcard-encoded commands, unrolls
//! and replies) and the polled sends, receives and broadcasts that carry them, with the
//! back-off and deadlines every wait uses.

use super::*;

/// Tag of commands, unrolls and replies.
pub(super) const DATA: Tag = 0;

/// Tag of an actor rank's heartbeat (one byte).
pub(super) const HEARTBEAT: Tag = 1;

/// Yields the core for the first 2 ms of a wait (an answer usually comes within that,
/// and a yielding poll lets the actors run on an oversubscribed host), then sleeps ever
/// longer, up to a millisecond, so that a long wait costs no core.
pub(super) struct Backoff(Option<Instant>, u32);

impl Backoff {
    pub(super) fn new() -> Self {
        Backoff(None, 0)
    }

    pub(super) fn pause(&mut self) {
        let since = *self.0.get_or_insert_with(Instant::now);
        if since.elapsed() < Duration::from_millis(2) {
            std::thread::yield_now();
        } else {
            self.1 = (self.1 + 1).min(100);
            std::thread::sleep(Duration::from_micros(10 * self.1 as u64));
        }
    }
}

/// Polls `req` to completion, running `poll` between tests (heartbeats, silence and
/// deadline checks); when `poll` says why the wait cannot go on, the job ends
/// (MPI_Abort), since MPI cannot take back a request in flight.
pub(super) fn complete<'a, D: ?Sized, S: Scope<'a>>(
    world: &SimpleCommunicator,
    mut req: Request<'a, D, S>,
    mut poll: impl FnMut() -> Option<String>,
) {
    let mut b = Backoff::new();
    loop {
        match req.test() {
            Ok(_) => return,
            Err(r) => req = r,
        }
        if let Some(why) = poll() {
            crate::errln!("error: {why}");
            LOST.store(true, SeqCst);
            world.abort(1);
        }
        b.pause();
    }
}

/// A poll that fails `what` past `limit` from now.
pub(super) fn deadline(what: String, limit: Duration) -> impl FnMut() -> Option<String> {
    let t0 = Instant::now();
    move || {
        (t0.elapsed() > limit).then(|| {
            format!(
                "{what} did not finish within {:.0} s: an MPI rank died or hangs",
                limit.as_secs_f64()
            )
        })
    }
}

/// A learner to its actor ranks (broadcast in sync mode, point to point in async).
#[derive(Serialize, Deserialize)]
pub(super) enum Cmd {
    /// Build your part of `workers` with this environment seed (and these states: every
    /// one of `workers`', on resume), acting with `initial` first.
    Start {
        /// The run's resolved config (TOML) and network spec (JSON): actor ranks need no
        /// file of the learner's.
        config: String,
        spec: String,
        env_seed: u64,
        /// The learner's workers, which its actor ranks split in contiguous blocks.
        workers: (usize, usize),
        /// `--rank-timeout`, in milliseconds.
        timeout_ms: u64,
        /// JSON of every worker's state, in worker order (postcard cannot carry JSON
        /// values).
        states: Option<String>,
        initial: ParamSnapshot,
    },
    /// Collect one unroll per worker with these parameters.
    Collect(ParamSnapshot),
    /// Send your workers' states (a checkpoint).
    SaveState,
    /// The run is over.
    Stop,
}

/// [`Cmd`] borrowing its snapshot (the same encoding), so a learner sends without a copy.
#[derive(Serialize)]
pub(super) enum CmdRef<'a> {
    Start {
        config: String,
        spec: String,
        env_seed: u64,
        workers: (usize, usize),
        timeout_ms: u64,
        states: Option<String>,
        initial: &'a ParamSnapshot,
    },
    Collect(&'a ParamSnapshot),
    SaveState,
    Stop,
}

/// An actor rank to its learner.
#[derive(Serialize, Deserialize)]
pub(super) enum Reply {
    Ready,
    Rollout(Box<Rollout>),
    /// JSON of the block's worker states, in worker order.
    States(String),
    Failed {
        worker: usize,
        message: String,
    },
}

pub(super) fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    postcard::to_stdvec(v).expect("messages of owned data always encode")
}

/// Rank 0's `bytes` on every rank of `comm` (the length, then the bytes), polled with
/// `poll` between tests (see [`complete`]).
pub(super) fn broadcast_polled(
    comm: &SimpleCommunicator,
    bytes: &mut Vec<u8>,
    mut poll: impl FnMut() -> Option<String>,
) {
    let root = comm.process_at_rank(0);
    let mut len = bytes.len() as u64;
    scope(|sc| complete(comm, root.immediate_broadcast_into(sc, &mut len), &mut poll));
    bytes.resize(len as usize, 0);
    scope(|sc| {
        complete(
            comm,
            root.immediate_broadcast_into(sc, &mut bytes[..]),
            &mut poll,
        )
    });
}

/// Sends `bytes` to rank `to` of `comm` (tag [`DATA`]), polled with `poll`.
pub(super) fn send_polled(
    comm: &SimpleCommunicator,
    to: i32,
    bytes: &[u8],
    poll: impl FnMut() -> Option<String>,
) {
    let p = comm.process_at_rank(to);
    scope(|sc| complete(comm, p.immediate_send_with_tag(sc, bytes, DATA), poll));
}

/// The next message from rank `from` of `comm` (tag [`DATA`]), polled with `poll`.
pub(super) fn receive_polled(
    comm: &SimpleCommunicator,
    from: i32,
    mut poll: impl FnMut() -> Option<String>,
) -> Vec<u8> {
    let mut b = Backoff::new();
    loop {
        if let Some(m) = comm
            .process_at_rank(from)
            .immediate_matched_probe_with_tag(DATA)
        {
            return m.matched_receive_vec::<u8>().0;
        }
        if let Some(why) = poll() {
            crate::errln!("error: {why}");
            LOST.store(true, SeqCst);
            comm.abort(1);
        }
        b.pause();
    }
}

/// A send in flight (async replies), its buffer owned until MPI is done with it.
pub(super) struct Pending {
    pub(super) req: Request<'static, [u8], StaticScope>,
    pub(super) buf: *mut [u8],
}

impl Pending {
    pub(super) fn start(comm: &SimpleCommunicator, to: usize, bytes: Vec<u8>) -> Pending {
        let buf = Box::into_raw(bytes.into_boxed_slice());
        // SAFETY: the buffer lives until `finish` frees it, after the send completed,
        // or forever (`abandon`).
        let data: &'static [u8] = unsafe { &*buf };
        let req = comm
            .process_at_rank(to as i32)
            .immediate_send_with_tag(StaticScope, data, DATA);
        Pending { req, buf }
    }

    /// `None` when the send completed (its buffer freed), else it, still in flight.
    pub(super) fn test(self) -> Option<Pending> {
        match self.req.test() {
            Ok(_) => {
                // SAFETY: MPI no longer reads the buffer; nothing else refers to it.
                drop(unsafe { Box::from_raw(self.buf) });
                None
            }
            Err(req) => Some(Pending { req, buf: self.buf }),
        }
    }

    /// Leaves a send to a lost rank in flight (MPI cannot take it back), buffer and all.
    pub(super) fn abandon(self) {
        std::mem::forget(self.req);
    }
}
