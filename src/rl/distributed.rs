//! Actors on many processes and hosts, over MPI (feature `mpi`): `mpirun -np N rlcpc
//! train --distributed [--learners L] ...`. World ranks 0..L−1 are learners
//! ([`crate::rl::train::train_on`]); the other ranks are actor ranks, split into L groups
//! in rank order, each serving one learner ([`serve`]) with a contiguous block of that
//! learner's workers on actor threads of its own (the threaded [`Runner`]), with their
//! own environments. A learner without actor ranks (`N = L`) runs its block's workers
//! on its own threads.
//!
//! The actor contract is the threaded one: every update, a learner broadcasts the
//! versioned parameter snapshot to its group; each actor rank answers with one unroll of
//! its block (its workers' unrolls joined in worker order), and the learner joins the
//! ranks' unrolls in rank order — the workers' order — so a sync run with one learner
//! equals the threaded run with the same workers and seeds, bit for bit. Messages are
//! postcard-encoded (compact binary: f32s as 4 bytes, lengths as varints); their sizes
//! are counted and reported.
//!
//! Async mode: each actor rank collects its block's unroll with the newest parameters it
//! has, sends it, and gets the newest snapshot back at once (point to point); the
//! learner takes whichever unrolls arrive first until it has its share of
//! `run.batch_rollouts` workers' worth, V-trace corrects the lag, and the lag of each
//! rank's last unroll is logged (`mpi/policy_lag_rank_R`).
//!
//! Data-parallel learners ([`Peers`]): each learns on its group's share of the batch;
//! the gradients, weighted by each share's env steps, are summed over the learners
//! (MPI all-reduce), so every learner takes the same step on the joint batch's mean
//! gradient and their parameters stay identical (checked by hash at every checkpoint).
//! Learner 0 logs, decides when to stop and checkpoints for all.
//!
//! Faults: actor ranks send a heartbeat every second (at most a quarter of
//! `--rank-timeout`) while they work or wait. A rank silent for `--rank-timeout` seconds
//! is lost: a sync run stops with an error naming it (the last checkpoint stays); an
//! async run logs it (`mpi/lost_ranks`) and goes on with the others — under `mpirun
//! --enable-recovery`, without which OpenMPI ends the job when a rank dies. Actor ranks
//! give up on a learner silent for twice the timeout; collectives among learners that do
//! not finish within the timeout end the job. A rank whose environments fail reports
//! the worker and its message, and the run stops with it.

use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use mpi::request::{scope, Request, Scope, StaticScope};
use mpi::topology::{Color, SimpleCommunicator};
use mpi::traits::*;
use mpi::Tag;
use rlcpc_agents::{ActorPool, AgentError, Mode, ParamSnapshot, Rollout, Runner};
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::nn::NetSpec;

pub use mpi::environment::Universe;
pub use mpi::topology::SimpleCommunicator as World;
pub use mpi::traits::{Communicator, CommunicatorCollectives};

/// Tag of commands, unrolls and replies.
const DATA: Tag = 0;
/// Tag of an actor rank's heartbeat (one byte).
const HEARTBEAT: Tag = 1;

/// Starts MPI (once per process) for threads that call MPI from the main thread only
/// (a learner, an actor rank's loop; the actor threads never do); an error a second
/// time.
pub fn init() -> Result<Universe> {
    mpi::initialize_with_threading(mpi::Threading::Funneled)
        .map(|(u, _)| u)
        .ok_or_else(|| anyhow::anyhow!("MPI is already initialised in this process"))
}

/// Ends every rank of the job (MPI_Abort): for a rank that cannot go on.
pub fn abort(world: &SimpleCommunicator, code: i32) -> ! {
    world.abort(code)
}

/// Part `i` of `n` contiguous parts of `range`, in order, differing by one at most.
pub fn span(range: Range<usize>, i: usize, n: usize) -> Range<usize> {
    let len = range.end - range.start;
    (range.start + i * len / n)..(range.start + (i + 1) * len / n)
}

/// The workers that actor rank `rank` (1-based) of `ranks` runs in a job with one
/// learner: contiguous blocks in rank order.
pub fn block(rank: usize, ranks: usize, workers: usize) -> Range<usize> {
    span(0..workers, rank - 1, ranks - 1)
}

/// Whether any rank was lost (silent past the timeout) in this process's run: the job
/// then ends with MPI_Abort, so that a hung rank cannot keep `mpirun` waiting.
static LOST: AtomicBool = AtomicBool::new(false);

/// See [`LOST`].
pub fn lost_ranks() -> bool {
    LOST.load(SeqCst)
}

/// Yields the core for the first 2 ms of a wait (an answer usually comes within that,
/// and a yielding poll lets the actors run on an oversubscribed host), then sleeps ever
/// longer, up to a millisecond, so that a long wait costs no core.
struct Backoff(Option<Instant>, u32);

impl Backoff {
    fn new() -> Self {
        Backoff(None, 0)
    }

    fn pause(&mut self) {
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
fn complete<'a, D: ?Sized, S: Scope<'a>>(
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
            eprintln!("error: {why}");
            LOST.store(true, SeqCst);
            world.abort(1);
        }
        b.pause();
    }
}

/// A poll that fails `what` past `limit` from now.
fn deadline(what: String, limit: Duration) -> impl FnMut() -> Option<String> {
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

/// Where this process is in the job, and the communicators of its role.
pub struct Layout {
    world: SimpleCommunicator,
    /// Learner ranks: world ranks 0..learners.
    pub learners: usize,
    /// This learner's index, or the index of the learner this actor rank serves.
    pub learner: usize,
    pub is_learner: bool,
    /// The learner's group (the learner as its rank 0, then its actor ranks in world
    /// order); `None` for a learner without actor ranks.
    group: Option<SimpleCommunicator>,
    /// World ranks of the group's members, by group rank.
    group_world: Vec<usize>,
    /// The learner ranks (on learners, when there are several).
    peers: Option<SimpleCommunicator>,
    /// How long a rank may stay silent before it counts as lost.
    pub timeout: Duration,
}

impl Layout {
    /// Splits the world (collective: every rank calls it): `learners` learner ranks,
    /// the others actor ranks in contiguous groups, one per learner.
    pub fn new(world: SimpleCommunicator, learners: usize, timeout: Duration) -> Result<Layout> {
        let n = world.size() as usize;
        let rank = world.rank() as usize;
        if learners == 0 || learners > n {
            bail!("--learners {learners}: needs 1 to {n} (the job's MPI ranks)");
        }
        let actors = n - learners;
        if learners == 1 && actors == 0 {
            bail!("--distributed needs at least 2 MPI ranks (rank 0 learns, the others act), or --learners with several learner ranks; got {n}: start it with `mpirun -np N`");
        }
        if actors > 0 && actors < learners {
            bail!("--learners {learners}: the job's actor ranks ({actors}) are fewer than the learners ({learners}); give each learner at least one, or none (`-np {learners}`)");
        }
        if timeout.is_zero() {
            bail!("--rank-timeout must be more than 0 seconds");
        }
        let owner = |i: usize| (0..learners).find(|&g| span(0..actors, g, learners).contains(&i));
        let (is_learner, learner) = if rank < learners {
            (true, rank)
        } else {
            (
                false,
                owner(rank - learners).expect("every actor rank has a learner"),
            )
        };
        let key = if is_learner { 0 } else { rank as i32 };
        let group = world.split_by_color_with_key(Color::with_value(learner as i32), key);
        let group_world: Vec<usize> = std::iter::once(learner)
            .chain(span(0..actors, learner, learners).map(|i| learners + i))
            .collect();
        let group = group.filter(|g| g.size() > 1);
        let peers = world.split_by_color(if is_learner {
            Color::with_value(0)
        } else {
            Color::undefined()
        });
        let peers = peers.filter(|p| p.size() > 1);
        Ok(Layout {
            world,
            learners,
            learner,
            is_learner,
            group,
            group_world,
            peers,
            timeout,
        })
    }

    /// The world communicator.
    pub fn world(&self) -> &SimpleCommunicator {
        &self.world
    }

    /// Whether this is learner 0, which logs and checkpoints.
    pub fn is_root(&self) -> bool {
        self.world.rank() == 0
    }

    /// Whether this learner's actors are threads of its own (no actor ranks).
    pub fn threads(&self) -> bool {
        self.group.is_none()
    }

    /// This learner's workers: its contiguous share of `run.workers`.
    pub fn workers(&self, cfg: &Config) -> Range<usize> {
        span(0..cfg.run.workers, self.learner, self.learners)
    }

    /// This learner's share of an async batch of `run.batch_rollouts` workers' unrolls.
    pub fn batch_share(&self, cfg: &Config) -> usize {
        match cfg.run.batch_rollouts {
            0 => self.workers(cfg).len(),
            n => span(0..n, self.learner, self.learners).len(),
        }
    }

    /// The data-parallel learners, seen from this one (`None`: a lone learner).
    pub fn peers(&self) -> Option<Peers<'_>> {
        self.peers.as_ref().map(|comm| Peers {
            comm,
            world: &self.world,
            timeout: self.timeout,
        })
    }

    /// Refuses a run the ranks cannot carry, saying what to change (on learner 0,
    /// before anything is sent).
    pub fn check(&self, cfg: &Config) -> Result<()> {
        let n = self.world.size() as usize;
        if cfg.run.workers < self.learners {
            bail!(
                "--learners {}: run.workers = {} is fewer than the learners; each needs a worker",
                self.learners,
                cfg.run.workers
            );
        }
        if cfg.run.mode == Mode::Async
            && cfg.run.batch_rollouts != 0
            && cfg.run.batch_rollouts < self.learners
        {
            bail!(
                "--learners {}: run.batch_rollouts = {} is fewer than the learners; each needs a share",
                self.learners,
                cfg.run.batch_rollouts
            );
        }
        let actors = n - self.learners;
        for g in 0..self.learners {
            let ranks = span(0..actors, g, self.learners).len();
            let workers = span(0..cfg.run.workers, g, self.learners).len();
            if ranks > workers {
                if self.learners == 1 {
                    bail!(
                        "--distributed: run.workers = {} is fewer than the {ranks} actor ranks; each rank needs a worker",
                        cfg.run.workers
                    );
                }
                bail!(
                    "--distributed: learner {g} has {workers} of run.workers = {} for its {ranks} actor ranks; each rank needs a worker",
                    cfg.run.workers
                );
            }
        }
        Ok(())
    }
}

/// A learner to its actor ranks (broadcast in sync mode, point to point in async).
#[derive(Serialize, Deserialize)]
enum Cmd {
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
enum CmdRef<'a> {
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
enum Reply {
    Ready,
    Rollout(Box<Rollout>),
    /// JSON of the block's worker states, in worker order.
    States(String),
    Failed {
        worker: usize,
        message: String,
    },
}

fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    postcard::to_stdvec(v).expect("messages of owned data always encode")
}

/// Rank 0's `bytes` on every rank of `comm` (the length, then the bytes), polled with
/// `poll` between tests (see [`complete`]).
fn broadcast_polled(
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
fn send_polled(
    comm: &SimpleCommunicator,
    to: i32,
    bytes: &[u8],
    poll: impl FnMut() -> Option<String>,
) {
    let p = comm.process_at_rank(to);
    scope(|sc| complete(comm, p.immediate_send_with_tag(sc, bytes, DATA), poll));
}

/// The next message from rank `from` of `comm` (tag [`DATA`]), polled with `poll`.
fn receive_polled(
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
            eprintln!("error: {why}");
            LOST.store(true, SeqCst);
            comm.abort(1);
        }
        b.pause();
    }
}

/// A learner's view of its actor ranks' liveness: when each was last heard from (an
/// unroll, a reply or a heartbeat), and which are lost.
struct Watch {
    heard: Vec<Instant>,
    lost: Vec<bool>,
    timeout: Duration,
    /// World ranks, by group rank (for messages).
    world: Vec<usize>,
}

impl Watch {
    /// Takes the heartbeats waiting.
    fn drain(&mut self, comm: &SimpleCommunicator) {
        while let Some(m) = comm
            .any_process()
            .immediate_matched_probe_with_tag(HEARTBEAT)
        {
            let (_, st) = m.matched_receive_vec::<u8>();
            self.heard[st.source_rank() as usize] = Instant::now();
        }
    }

    /// The first rank among `among` (and not lost) silent past the timeout; a rank with
    /// a message waiting is not silent.
    fn silent(
        &mut self,
        comm: &SimpleCommunicator,
        among: impl Fn(usize) -> bool,
    ) -> Option<usize> {
        self.drain(comm);
        let now = Instant::now();
        for r in 1..self.heard.len() {
            if self.lost[r] || !among(r) {
                continue;
            }
            if comm
                .process_at_rank(r as i32)
                .immediate_probe_with_tag(DATA)
                .is_some()
            {
                self.heard[r] = now;
            } else if now - self.heard[r] > self.timeout {
                return Some(r);
            }
        }
        None
    }

    /// Marks `r` lost and says so.
    fn lose(&mut self, r: usize) -> String {
        self.lost[r] = true;
        LOST.store(true, SeqCst);
        format!(
            "MPI rank {} sent nothing for {:.0} s (no unroll, no heartbeat): it died or hangs",
            self.world[r],
            self.heard[r].elapsed().as_secs_f64()
        )
    }
}

/// A send in flight (async replies), its buffer owned until MPI is done with it.
struct Pending {
    req: Request<'static, [u8], StaticScope>,
    buf: *mut [u8],
}

impl Pending {
    fn start(comm: &SimpleCommunicator, to: usize, bytes: Vec<u8>) -> Pending {
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
    fn test(self) -> Option<Pending> {
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
    fn abandon(self) {
        std::mem::forget(self.req);
    }
}

/// A learner's actor ranks.
pub struct MpiPool<'a> {
    comm: &'a SimpleCommunicator,
    latest: ParamSnapshot,
    /// Workers this learner's ranks run.
    workers: Range<usize>,
    mode: Mode,
    /// Async: workers' unrolls per batch (this learner's share).
    batch_rollouts: usize,
    watch: Watch,
    /// Async: ranks that will send no more (told to stop, failed, or lost).
    done: Vec<bool>,
    /// Async: lost ranks that came back and were told to stop.
    told: Vec<bool>,
    /// Async: the reply in flight to each rank.
    pending: Vec<Option<Pending>>,
    /// Async: policy lag (updates) of each rank's last unroll.
    lags: Vec<f64>,
    /// Async: where the fair receive starts looking (0-based actor rank index).
    next: usize,
    stopped: bool,
    /// Bytes and count of parameter broadcasts, and of unrolls received (one per rank).
    broadcast_bytes: (u64, u64),
    unroll_bytes: (u64, u64),
}

impl<'a> MpiPool<'a> {
    /// Sends every actor rank of this learner its start and waits until each has built
    /// its workers (or says why it could not). `states` are every worker's, on resume.
    pub fn start(
        layout: &'a Layout,
        cfg: &Config,
        spec: &NetSpec,
        env_seed: u64,
        states: Option<Vec<serde_json::Value>>,
        initial: ParamSnapshot,
    ) -> Result<Self> {
        let comm = layout
            .group
            .as_ref()
            .expect("a learner with actor ranks has a group");
        let ranks = comm.size() as usize;
        let workers = layout.workers(cfg);
        let states = states.map(|s| serde_json::to_string(&s)).transpose()?;
        let mut bytes = encode(&CmdRef::Start {
            config: cfg.to_toml(),
            spec: serde_json::to_string(spec)?,
            env_seed,
            workers: (workers.start, workers.end),
            timeout_ms: layout.timeout.as_millis() as u64,
            states,
            initial: &initial,
        });
        // From the start on, the pool's drop sends the stop (and only it).
        GROUP_STARTED.store(true, SeqCst);
        let what = format!("learner {}'s start of its actor ranks", layout.learner);
        broadcast_polled(comm, &mut bytes, deadline(what, 2 * layout.timeout));
        let mut pool = MpiPool {
            comm,
            latest: initial,
            workers,
            mode: cfg.run.mode,
            batch_rollouts: layout.batch_share(cfg),
            watch: Watch {
                heard: vec![Instant::now(); ranks],
                lost: vec![false; ranks],
                timeout: layout.timeout,
                world: layout.group_world.clone(),
            },
            done: vec![false; ranks],
            told: vec![false; ranks],
            pending: (0..ranks).map(|_| None).collect(),
            lags: vec![0.0; ranks],
            next: 0,
            stopped: false,
            broadcast_bytes: (0, 0),
            unroll_bytes: (0, 0),
        };
        pool.gather("start")?;
        Ok(pool)
    }

    fn size(&self) -> usize {
        self.comm.size() as usize
    }

    /// Sync: one reply from every actor rank, in rank order; the first failure (after
    /// all have answered, so no rank is left mid-message) as the error; a rank silent
    /// past the timeout as the error at once.
    fn gather(&mut self, what: &str) -> Result<Vec<Reply>, AgentError> {
        let n = self.size();
        let mut got: Vec<Option<Vec<u8>>> = vec![None; n];
        let mut left = n - 1;
        let mut b = Backoff::new();
        while left > 0 {
            let mut any = false;
            for (r, slot) in got.iter_mut().enumerate().skip(1) {
                if slot.is_some() {
                    continue;
                }
                if let Some(m) = self
                    .comm
                    .process_at_rank(r as i32)
                    .immediate_matched_probe_with_tag(DATA)
                {
                    *slot = Some(m.matched_receive_vec::<u8>().0);
                    self.watch.heard[r] = Instant::now();
                    left -= 1;
                    any = true;
                }
            }
            if left > 0 && !any {
                if let Some(r) = self.watch.silent(self.comm, |r| got[r].is_none()) {
                    return Err(AgentError::Actors(format!(
                        "{} (waiting for its answer to {what}); the last checkpoint stays",
                        self.watch.lose(r)
                    )));
                }
                b.pause();
            }
        }
        let mut replies = Vec::new();
        let mut failure = None;
        for (r, bytes) in got.into_iter().enumerate().skip(1) {
            let bytes = bytes.expect("every rank answered");
            let w = self.watch.world[r];
            match postcard::from_bytes::<Reply>(&bytes) {
                Ok(Reply::Failed { worker, message }) => {
                    // (An async rank whose start failed has ended: nothing more to take.)
                    self.done[r] = true;
                    failure.get_or_insert(AgentError::Worker {
                        worker,
                        message: format!("(MPI rank {w}) {message}"),
                    });
                }
                Ok(reply) => {
                    if let Reply::Rollout(_) = reply {
                        self.unroll_bytes.0 += bytes.len() as u64;
                        self.unroll_bytes.1 += 1;
                    }
                    replies.push(reply)
                }
                Err(e) => {
                    failure.get_or_insert(AgentError::Actors(format!(
                        "MPI rank {w} sent an unreadable reply to {what}: {e}"
                    )));
                }
            }
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(replies),
        }
    }

    /// Sync: `cmd` to every actor rank; a rank silent past the timeout ends the job.
    fn send(&mut self, cmd: CmdRef<'_>) -> usize {
        let mut bytes = encode(&cmd);
        let n = bytes.len();
        let (comm, watch) = (self.comm, &mut self.watch);
        broadcast_polled(comm, &mut bytes, || {
            watch
                .silent(comm, |_| true)
                .map(|r| format!("{}; the last checkpoint stays", watch.lose(r)))
        });
        n
    }

    /// Async: tests the replies in flight.
    fn test_sends(&mut self) {
        for p in &mut self.pending {
            *p = p.take().and_then(Pending::test);
        }
    }

    /// Async: `bytes` to rank `r`, once its previous reply has left.
    fn send_to(&mut self, r: usize, bytes: Vec<u8>) {
        let mut b = Backoff::new();
        while let Some(p) = self.pending[r].take() {
            self.pending[r] = p.test();
            if self.pending[r].is_some() {
                b.pause();
            }
        }
        self.pending[r] = Some(Pending::start(self.comm, r, bytes));
    }

    /// Async: marks rank `r` lost, says so, and goes on without it.
    fn lose(&mut self, r: usize) -> Result<(), AgentError> {
        let why = self.watch.lose(r);
        self.done[r] = true;
        if let Some(p) = self.pending[r].take() {
            p.abandon();
        }
        let left = (1..self.size()).filter(|&q| !self.done[q]).count();
        if left == 0 {
            return Err(AgentError::Actors(format!(
                "{why}, and no actor rank is left; the last checkpoint stays"
            )));
        }
        eprintln!(
            "warning: {why}; going on with the other actor ranks ({left} left; mpi/lost_ranks counts the lost)"
        );
        Ok(())
    }

    /// Async: a lost rank that sends again (it was only slow) is told to stop, so that
    /// it does not wait for an answer and end the job.
    fn stop_returning(&mut self) {
        for r in 1..self.size() {
            if !self.watch.lost[r] || self.told[r] {
                continue;
            }
            if let Some(m) = self
                .comm
                .process_at_rank(r as i32)
                .immediate_matched_probe_with_tag(DATA)
            {
                let _ = m.matched_receive_vec::<u8>();
                self.told[r] = true;
                eprintln!(
                    "note: lost MPI rank {} sent again; told it to stop",
                    self.watch.world[r]
                );
                self.send_to(r, encode(&CmdRef::Stop));
            }
        }
    }

    /// Async: the next unroll from any actor rank, answered at once with the newest
    /// snapshot (its next unroll's parameters); a failure stops that rank; a rank silent
    /// past the timeout is lost.
    fn receive_any(&mut self) -> Result<(usize, Rollout), AgentError> {
        // Fair: the first rank with a message waiting, in turn from the one after the last
        // served (MPI's any-source receive lets one fast rank starve the others).
        let actor_ranks = self.size() - 1;
        let mut b = Backoff::new();
        let (r, bytes) = loop {
            self.test_sends();
            let found = (0..actor_ranks)
                .map(|i| 1 + (self.next + i) % actor_ranks)
                .filter(|&r| !self.done[r])
                .find_map(|r| {
                    self.comm
                        .process_at_rank(r as i32)
                        .immediate_matched_probe_with_tag(DATA)
                        .map(|m| (r, m.matched_receive_vec::<u8>().0))
                });
            if let Some(found) = found {
                break found;
            }
            self.stop_returning();
            let done = &self.done;
            if let Some(r) = self.watch.silent(self.comm, |r| !done[r]) {
                self.lose(r)?;
                continue;
            }
            b.pause();
        };
        self.watch.heard[r] = Instant::now();
        self.next = r % actor_ranks;
        let w = self.watch.world[r];
        let reply = postcard::from_bytes::<Reply>(&bytes);
        let answer = if matches!(reply, Ok(Reply::Rollout(_))) {
            CmdRef::Collect(&self.latest)
        } else {
            self.done[r] = true;
            CmdRef::Stop
        };
        let out = encode(&answer);
        if let CmdRef::Collect(_) = answer {
            self.broadcast_bytes.0 += out.len() as u64;
            self.broadcast_bytes.1 += 1;
        }
        self.send_to(r, out);
        match reply {
            Ok(Reply::Rollout(b)) => {
                self.unroll_bytes.0 += bytes.len() as u64;
                self.unroll_bytes.1 += 1;
                Ok((r, *b))
            }
            Ok(Reply::Failed { worker, message }) => Err(AgentError::Worker {
                worker,
                message: format!("(MPI rank {w}) {message}"),
            }),
            Ok(_) => Err(AgentError::Actors(format!(
                "MPI rank {w} sent something else than an unroll"
            ))),
            Err(e) => Err(AgentError::Actors(format!(
                "MPI rank {w} sent an unreadable unroll: {e}"
            ))),
        }
    }
}

impl ActorPool for MpiPool<'_> {
    fn publish(&mut self, snap: ParamSnapshot) {
        self.latest = snap;
    }

    fn next_batch(&mut self) -> Result<Rollout, AgentError> {
        if self.mode == Mode::Async {
            let ranks = self.size();
            let (mut parts, mut workers) = (Vec::new(), 0);
            while workers < self.batch_rollouts {
                let (r, unroll) = self.receive_any()?;
                workers += span(self.workers.clone(), r - 1, ranks - 1).len();
                let behaviour = unroll.policy_version.first().copied().unwrap_or(0);
                self.lags[r] = self.latest.version.saturating_sub(behaviour) as f64;
                parts.push(unroll);
            }
            return Ok(Rollout::concat(&parts));
        }
        let snap = std::mem::take(&mut self.latest);
        let n = self.send(CmdRef::Collect(&snap));
        self.latest = snap;
        self.broadcast_bytes.0 += n as u64;
        self.broadcast_bytes.1 += 1;
        let parts: Vec<Rollout> = self
            .gather("collect")?
            .into_iter()
            .filter_map(|r| match r {
                Reply::Rollout(r) => Some(*r),
                _ => None,
            })
            .collect();
        if parts.len() + 1 != self.size() {
            return Err(AgentError::Actors(
                "an MPI rank answered a collect with something else".into(),
            ));
        }
        Ok(Rollout::concat(&parts))
    }

    fn worker_states(&mut self) -> Result<Option<Vec<serde_json::Value>>, AgentError> {
        if self.mode == Mode::Async {
            return Ok(None); // as the threaded async runner: no consistent point
        }
        self.send(CmdRef::SaveState);
        let mut all = Vec::with_capacity(self.workers.len());
        for r in self.gather("save state")? {
            if let Reply::States(s) = r {
                let block: Vec<serde_json::Value> = serde_json::from_str(&s).map_err(|e| {
                    AgentError::Actors(format!("unreadable worker states from an MPI rank: {e}"))
                })?;
                all.extend(block);
            }
        }
        if all.len() != self.workers.len() {
            return Err(AgentError::Actors(format!(
                "the MPI ranks sent {} worker states for {} workers",
                all.len(),
                self.workers.len()
            )));
        }
        Ok(Some(all))
    }

    fn metrics(&self) -> Vec<(String, f64)> {
        if self.mode != Mode::Async {
            return Vec::new();
        }
        let lost = self.watch.lost.iter().filter(|&&l| l).count() as f64;
        (1..self.lags.len())
            .map(|r| {
                (
                    format!("mpi/policy_lag_rank_{}", self.watch.world[r]),
                    self.lags[r],
                )
            })
            .chain(std::iter::once(("mpi/lost_ranks".to_string(), lost)))
            .collect()
    }

    fn traffic(&self) -> Option<String> {
        let mean = |(b, n): (u64, u64)| b as f64 / n.max(1) as f64;
        // Sync broadcasts the parameters to every rank; async sends them to one rank per
        // unroll received.
        let sent = match self.mode {
            Mode::Async => "parameter send",
            Mode::Sync => "parameter broadcast",
        };
        Some(format!(
            "mpi: {} actor ranks; {:.0} bytes per {sent} ({} {sent}s), {:.0} bytes per rank's unroll ({} received)",
            self.size() - 1,
            mean(self.broadcast_bytes),
            self.broadcast_bytes.1,
            mean(self.unroll_bytes),
            self.unroll_bytes.1
        ))
    }
}

impl Drop for MpiPool<'_> {
    fn drop(&mut self) {
        // A panic mid-protocol may leave a rank in a send, and a sync run with a lost
        // rank cannot finish a broadcast: the caller ends the job (MPI_Abort).
        if self.stopped || std::thread::panicking() {
            return;
        }
        self.stopped = true;
        if self.mode == Mode::Sync {
            if !self.watch.lost.iter().any(|&l| l) {
                self.send(CmdRef::Stop);
            }
            return;
        }
        // Every rank is collecting or sending its next unroll: take it, answer stop.
        let mut b = Backoff::new();
        for r in 1..self.size() {
            while !self.done[r] && !self.watch.lost[r] {
                self.test_sends();
                if let Some(m) = self
                    .comm
                    .process_at_rank(r as i32)
                    .immediate_matched_probe_with_tag(DATA)
                {
                    let _ = m.matched_receive_vec::<u8>();
                    self.done[r] = true;
                    self.send_to(r, encode(&CmdRef::Stop));
                } else if self.watch.silent(self.comm, |q| q == r).is_some() {
                    let _ = self.lose(r);
                } else {
                    b.pause();
                }
            }
        }
        self.stop_returning();
        // Let the stops leave (a rank lost meanwhile keeps its send in flight).
        for r in 1..self.size() {
            while self.pending[r].is_some() {
                self.test_sends();
                if self.pending[r].is_none() {
                    break;
                }
                if self.watch.lost[r] || self.watch.silent(self.comm, |q| q == r).is_some() {
                    if !self.watch.lost[r] {
                        let _ = self.watch.lose(r);
                    }
                    if let Some(p) = self.pending[r].take() {
                        p.abandon();
                    }
                } else {
                    b.pause();
                }
            }
        }
    }
}

/// Whether this process has sent its group's start (from then on its pool sends the
/// stop), and, on learner 0, the other learners' start.
static GROUP_STARTED: AtomicBool = AtomicBool::new(false);
static PEERS_STARTED: AtomicBool = AtomicBool::new(false);

/// Tells the ranks waiting on this learner to stop when it ends before their start
/// (a config or run-directory error): otherwise they would wait for it forever.
pub fn stop_waiting_ranks(layout: &Layout) {
    let limit = 2 * layout.timeout;
    if layout.is_root() && !PEERS_STARTED.swap(true, SeqCst) {
        if let Some(p) = &layout.peers {
            let what = "learner 0's stop of the other learners".to_string();
            broadcast_polled(p, &mut encode(&LearnerCmd::Stop), deadline(what, limit));
        }
    }
    if !GROUP_STARTED.swap(true, SeqCst) {
        if let Some(g) = &layout.group {
            let what = format!("learner {}'s stop of its actor ranks", layout.learner);
            broadcast_polled(g, &mut encode(&CmdRef::Stop), deadline(what, limit));
        }
    }
}

/// This learner's place in the MPI job as the training loop's actor source: its actor
/// ranks (or its own threads, where the layout gives it none) and the other learners.
pub struct MpiActors<'a>(pub &'a Layout);

impl<'a> crate::rl::train::ActorSource<'a> for MpiActors<'a> {
    fn prepare(&self, cfg: &Config, spec: &NetSpec, resume: bool) -> Result<()> {
        start_learners(self.0, cfg, spec, resume)
    }

    fn team(&self) -> Option<Box<dyn crate::rl::train::Team + 'a>> {
        self.0
            .peers()
            .map(|p| Box::new(p) as Box<dyn crate::rl::train::Team + 'a>)
    }

    fn share(&self, cfg: &Config) -> (Range<usize>, usize) {
        (self.0.workers(cfg), self.0.batch_share(cfg))
    }

    fn start(
        &self,
        cfg: &Config,
        spec: &NetSpec,
        env_seed: u64,
        states: Option<Vec<serde_json::Value>>,
        snapshot: &dyn Fn() -> Result<ParamSnapshot>,
    ) -> Result<Option<Box<dyn ActorPool + 'a>>> {
        if self.0.threads() {
            return Ok(None);
        }
        let pool = MpiPool::start(self.0, cfg, spec, env_seed, states, snapshot()?)?;
        Ok(Some(Box::new(pool)))
    }
}

/// On learner 0: refuses a layout the run cannot use, then sends the run to the other
/// learners (elsewhere nothing).
pub fn start_learners(layout: &Layout, cfg: &Config, spec: &NetSpec, resume: bool) -> Result<()> {
    if !layout.is_root() {
        return Ok(());
    }
    layout.check(cfg)?;
    match layout.peers() {
        Some(p) => p.start(cfg, spec, resume),
        None => Ok(()),
    }
}

/// Learner 0 to the other learners, before the run.
#[derive(Serialize, Deserialize)]
enum LearnerCmd {
    Start {
        config: String,
        spec: String,
        resume: bool,
    },
    Stop,
}

/// The data-parallel learners, seen from one of them (learner 0 logs, decides and
/// checkpoints). Their collectives that do not finish within the rank timeout end the
/// job.
pub struct Peers<'a> {
    comm: &'a SimpleCommunicator,
    world: &'a SimpleCommunicator,
    timeout: Duration,
}

impl Peers<'_> {
    /// Fails `what` past the timeout.
    fn limit(&self, what: &'static str) -> impl FnMut() -> Option<String> {
        let (t0, timeout, rank) = (Instant::now(), self.timeout, self.world.rank());
        move || {
            (t0.elapsed() > timeout).then(|| {
                format!(
                    "MPI rank {rank}: the learners' {what} did not finish within {:.0} s: a learner rank died or hangs",
                    timeout.as_secs_f64()
                )
            })
        }
    }

    /// Learner 0 sends the run to the others.
    pub fn start(&self, cfg: &Config, spec: &NetSpec, resume: bool) -> Result<()> {
        let mut bytes = encode(&LearnerCmd::Start {
            config: cfg.to_toml(),
            spec: serde_json::to_string(spec)?,
            resume,
        });
        PEERS_STARTED.store(true, SeqCst);
        broadcast_polled(self.comm, &mut bytes, self.limit("start"));
        Ok(())
    }
}

impl crate::rl::train::Team for Peers<'_> {
    fn rank(&self) -> usize {
        self.comm.rank() as usize
    }

    fn lost_ranks(&self) -> bool {
        lost_ranks()
    }

    fn mark_lost(&self) {
        LOST.store(true, SeqCst);
    }

    fn size(&self) -> usize {
        self.comm.size() as usize
    }

    fn all_reduce(&mut self, flat: &mut [f32]) {
        let mine = flat.to_vec();
        let poll = self.limit("gradient all-reduce");
        scope(|sc| {
            complete(
                self.comm,
                self.comm.immediate_all_reduce_into(
                    sc,
                    &mine[..],
                    flat,
                    mpi::collective::SystemOperation::sum(),
                ),
                poll,
            )
        });
    }

    fn broadcast(&mut self, bytes: &mut Vec<u8>) {
        let poll = self.limit("broadcast");
        broadcast_polled(self.comm, bytes, poll);
    }

    fn gather(&mut self, mine: Vec<u8>) -> Vec<Vec<u8>> {
        if self.comm.rank() != 0 {
            send_polled(self.comm, 0, &mine, self.limit("gather"));
            return Vec::new();
        }
        let mut all = vec![mine];
        for r in 1..self.comm.size() {
            let what = format!("MPI rank 0: learner {r} (MPI rank {r})'s part of a gather");
            all.push(receive_polled(self.comm, r, deadline(what, self.timeout)));
        }
        all
    }
}

/// A learner other than 0: takes learner 0's run and trains its share of every batch,
/// until learner 0 stops (it ignores Ctrl-C and SIGTERM: learner 0 decides for all).
pub fn serve_learner(
    layout: &Layout,
    out: &std::path::Path,
    device: candle_core::Device,
) -> Result<()> {
    let peers = layout
        .peers
        .as_ref()
        .expect("a learner other than 0 has peers");
    let mut bytes = Vec::new();
    broadcast_polled(peers, &mut bytes, || None);
    let cmd: LearnerCmd = postcard::from_bytes(&bytes)
        .map_err(|e| anyhow::anyhow!("unreadable run from learner 0: {e}"))?;
    let (config, spec, resume) = match cmd {
        LearnerCmd::Start {
            config,
            spec,
            resume,
        } => (config, spec, resume),
        LearnerCmd::Stop => {
            stop_waiting_ranks(layout);
            return Ok(());
        }
    };
    let cfg = Config::from_toml(&config, "learner 0's config")?;
    let spec: NetSpec = serde_json::from_str(&spec)?;
    crate::rl::train::set_learner_threads(cfg.run.learner_threads);
    let opts = crate::rl::train::TrainOptions {
        out: out.to_path_buf(),
        resume,
        device,
        progress: false,
        write: false,
    };
    let never = std::sync::Arc::new(AtomicBool::new(false));
    let r = crate::rl::train::train_on(&cfg, &spec, &opts, never, &MpiActors(layout));
    stop_waiting_ranks(layout);
    match r {
        Err(e) if e.is::<crate::rl::train::Learner0Failed>() => Ok(()),
        r => r.map(|_| ()),
    }
}

/// An actor rank: serves its learner's commands until it says stop. Errors building or
/// running the workers go to the learner (which stops the run naming the worker and
/// rank); the returned error is for a broken protocol only.
pub fn serve(layout: &Layout) -> Result<()> {
    let comm = layout.group.as_ref().expect("an actor rank has a group");
    let me = layout.world.rank();
    let (g, gw) = (layout.learner, layout.group_world[0]);
    let (rank, ranks) = (comm.rank() as usize, comm.size() as usize);
    // Heartbeats until the start says the run's timeout.
    let mut timeout = layout.timeout;
    let mut first = 0;
    let mut runner: Option<Runner> = None;
    loop {
        let mut bytes = Vec::new();
        broadcast_polled(comm, &mut bytes, waiting(comm, me, g, gw, timeout));
        let cmd: Cmd = postcard::from_bytes(&bytes).map_err(|e| {
            anyhow::anyhow!("MPI rank {me}: unreadable command from learner {g}: {e}")
        })?;
        let answer = match cmd {
            Cmd::Start {
                config,
                spec,
                env_seed,
                workers,
                timeout_ms,
                states,
                initial,
            } => {
                timeout = Duration::from_millis(timeout_ms.max(1));
                let mut async_mode = false;
                let built = (|| -> Result<Runner> {
                    let mut cfg = Config::from_toml(&config, "learner's config")?;
                    async_mode = cfg.run.mode == Mode::Async;
                    // The block's own runner collects one unroll per worker per message.
                    cfg.run.mode = Mode::Sync;
                    let spec: NetSpec = serde_json::from_str(&spec)?;
                    crate::rl::train::set_learner_threads(cfg.run.learner_threads);
                    let mine = span(workers.0..workers.1, rank - 1, ranks - 1);
                    first = mine.start;
                    let states: Option<Vec<serde_json::Value>> =
                        states.map(|s| serde_json::from_str(&s)).transpose()?;
                    // Built on a thread of its own, so that this one beats meanwhile
                    // (environments may take long to start, e.g. Python ones).
                    let actors = std::thread::scope(|sc| {
                        let build = sc.spawn(|| {
                            crate::rl::train::build_actors(
                                &cfg,
                                &spec,
                                env_seed,
                                mine.clone(),
                                states.as_deref(),
                                "the checkpoint",
                            )
                        });
                        let (mut beat, mut last) = (heartbeat(comm), Instant::now());
                        while !build.is_finished() {
                            std::thread::sleep(Duration::from_millis(5));
                            if last.elapsed() >= beat_every(timeout) {
                                beat();
                                last = Instant::now();
                            }
                        }
                        build.join().unwrap_or_else(|_| {
                            Err(anyhow::anyhow!("building the workers panicked"))
                        })
                    })?;
                    Ok(Runner::start(&cfg.run.runner(), actors, initial)?)
                })();
                match built {
                    Ok(r) if async_mode => {
                        send_polled(
                            comm,
                            0,
                            &encode(&Reply::Ready),
                            waiting(comm, me, g, gw, timeout),
                        );
                        return serve_async(comm, r, first, (me, g, gw), timeout);
                    }
                    Ok(r) => {
                        runner = Some(r);
                        Reply::Ready
                    }
                    Err(e) => {
                        let failed = Reply::Failed {
                            worker: first,
                            message: format!("{e:#}"),
                        };
                        if async_mode {
                            // The learner stops the run; an async rank has no more to do.
                            let poll = waiting(comm, me, g, gw, timeout);
                            send_polled(comm, 0, &encode(&failed), poll);
                            return Ok(());
                        }
                        failed
                    }
                }
            }
            Cmd::Collect(snap) => match runner.as_mut() {
                Some(r) => {
                    r.publish(snap);
                    let mut beat = heartbeat(comm);
                    match r.next_batch_ticking(beat_every(timeout), &mut || beat()) {
                        Ok(b) => Reply::Rollout(Box::new(b)),
                        Err(AgentError::Worker { worker, message }) => {
                            Reply::Failed { worker, message }
                        }
                        Err(e) => Reply::Failed {
                            worker: first,
                            message: e.to_string(),
                        },
                    }
                }
                None => Reply::Failed {
                    worker: first,
                    message: "collect before start".into(),
                },
            },
            Cmd::SaveState => match runner.as_mut().map(|r| r.worker_states()) {
                Some(Ok(Some(s))) => Reply::States(serde_json::to_string(&s)?),
                Some(Err(e)) => Reply::Failed {
                    worker: first,
                    message: e.to_string(),
                },
                _ => Reply::Failed {
                    worker: first,
                    message: "no worker states to save".into(),
                },
            },
            Cmd::Stop => return Ok(()),
        };
        send_polled(comm, 0, &encode(&answer), waiting(comm, me, g, gw, timeout));
    }
}

/// How often an actor rank sends its heartbeat.
fn beat_every(timeout: Duration) -> Duration {
    (timeout / 4).min(Duration::from_secs(1))
}

/// A heartbeat to the learner (rank 0 of `comm`).
fn heartbeat(comm: &SimpleCommunicator) -> impl FnMut() + '_ {
    move || comm.process_at_rank(0).send_with_tag(&[0u8][..], HEARTBEAT)
}

/// An actor rank's poll while it waits for its learner: heartbeats, and giving up on a
/// learner silent for twice the timeout.
fn waiting(
    comm: &SimpleCommunicator,
    me: i32,
    g: usize,
    learner_rank: usize,
    timeout: Duration,
) -> impl FnMut() -> Option<String> + '_ {
    let (since, mut last) = (Instant::now(), Instant::now());
    let mut beat = heartbeat(comm);
    move || {
        if last.elapsed() >= beat_every(timeout) {
            beat();
            last = Instant::now();
        }
        (since.elapsed() > 2 * timeout).then(|| {
            format!(
                "MPI rank {me}: learner {g} (MPI rank {learner_rank}) sent nothing for {:.0} s: it died or hangs",
                since.elapsed().as_secs_f64()
            )
        })
    }
}

/// An actor rank in async mode: collect, send, take the snapshot that comes back, until
/// the learner answers stop.
fn serve_async(
    comm: &SimpleCommunicator,
    mut runner: Runner,
    first: usize,
    (me, g, gw): (i32, usize, usize),
    timeout: Duration,
) -> Result<()> {
    loop {
        let mut beat = heartbeat(comm);
        let reply = match runner.next_batch_ticking(beat_every(timeout), &mut || beat()) {
            Ok(b) => Reply::Rollout(Box::new(b)),
            Err(AgentError::Worker { worker, message }) => Reply::Failed { worker, message },
            Err(e) => Reply::Failed {
                worker: first,
                message: e.to_string(),
            },
        };
        send_polled(comm, 0, &encode(&reply), waiting(comm, me, g, gw, timeout));
        let bytes = receive_polled(comm, 0, waiting(comm, me, g, gw, timeout));
        match postcard::from_bytes::<Cmd>(&bytes).map_err(|e| {
            anyhow::anyhow!("MPI rank {me}: unreadable command from learner {g}: {e}")
        })? {
            Cmd::Collect(snap) => runner.publish(snap),
            Cmd::Stop => return Ok(()),
            _ => {
                bail!(
                    "MPI rank {me}: learner {g} sent an async actor something else than parameters"
                )
            }
        }
    }
}

/// One rank's part in an MPI job (`mpirun -np N rlcpc train --distributed`): the job's
/// layout from `learners` and `rank_timeout` (seconds), then on rank 0 `learner0` (the
/// whole run, with its actor ranks or threads and the other learners as `actors`);
/// every other rank serves it, as a learner (writing under `out`, on the device that
/// `device` makes, which no other rank calls) or as an
/// actor rank, ignoring Ctrl-C and SIGTERM (learner 0 checkpoints, then stops them). A
/// rank that fails outside the protocol, a panic, or lost ranks end the whole job
/// (MPI_Abort), so that no rank is left waiting.
pub fn run_job(
    learners: usize,
    rank_timeout: f64,
    out: &std::path::Path,
    device: impl FnOnce() -> Result<candle_core::Device>,
    learner0: impl FnOnce(&MpiActors<'_>) -> Result<()>,
) -> Result<()> {
    use std::panic::{catch_unwind, AssertUnwindSafe};
    if !(rank_timeout.is_finite() && rank_timeout > 0.0 && rank_timeout < 1e6) {
        bail!("--rank-timeout {rank_timeout}: must be a number of seconds, more than 0");
    }
    let universe = init()?;
    let timeout = Duration::from_secs_f64(rank_timeout);
    let layout = match Layout::new(universe.world(), learners, timeout) {
        Ok(l) => l,
        Err(e) => {
            // Every rank finds the same fault: rank 0 says it, then all end together.
            let world = universe.world();
            if world.rank() == 0 {
                eprintln!("error: {e:#}");
            }
            world.barrier();
            drop(universe);
            std::process::exit(1)
        }
    };
    let world = layout.world();
    let rank = world.rank();
    if rank != 0 {
        ctrlc::set_handler(|| {}).ok();
        let served = catch_unwind(AssertUnwindSafe(|| {
            if layout.is_learner {
                serve_learner(&layout, out, device()?)
            } else {
                serve(&layout)
            }
        }));
        match served {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) => eprintln!("error: MPI rank {rank}: {e:#}"),
            Err(_) => eprintln!("error: MPI rank {rank} panicked"),
        }
        abort(world, 1);
    }
    let r = catch_unwind(AssertUnwindSafe(|| learner0(&MpiActors(&layout))));
    match r {
        Ok(r) => {
            stop_waiting_ranks(&layout);
            // A lost rank may only hang, and the other learners would wait for learner 0
            // until their timeout: either would keep mpirun waiting.
            if lost_ranks() || (layout.learners > 1 && r.is_err()) {
                if let Err(e) = &r {
                    eprintln!("error: {e:#}");
                }
                if lost_ranks() {
                    eprintln!("note: MPI ranks were lost (above); ending the job with MPI_Abort so that none is left waiting");
                }
                abort(world, if r.is_ok() { 0 } else { 1 });
            }
            r
        }
        Err(_) => {
            eprintln!("error: MPI rank 0 (the learner) panicked");
            abort(world, 1)
        }
    }
}
