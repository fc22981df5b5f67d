//! Actors on many processes and hosts, over MPI (feature `mpi`): `mpirun -np N rlcpc
//! train --distributed ...`. Rank 0 runs the learner ([`crate::train::train_on`] with
//! [`MpiPool`]); ranks 1..N−1 each run a contiguous block of the run's workers
//! ([`serve`]) on actor threads of their own (the threaded [`Runner`]), with their own
//! environments.
//!
//! The contract is the threaded one: every update, rank 0 broadcasts the versioned
//! parameter snapshot; each actor rank answers with one unroll of its block (its
//! workers' unrolls joined in worker order), and rank 0 joins the ranks' unrolls in rank
//! order — the workers' order — so a sync run equals the threaded run with the same
//! workers and seeds, bit for bit. Messages are postcard-encoded (compact binary: f32s
//! as 4 bytes, lengths as varints); their sizes are counted and reported.
//!
//! Async mode: each actor rank collects its block's unroll with the newest parameters it
//! has, sends it, and gets the newest snapshot back at once (point to point); rank 0
//! takes whichever unrolls arrive first until it has `run.batch_rollouts` workers' worth,
//! V-trace corrects the lag, and the lag of each rank's last unroll is logged
//! (`mpi/policy_lag_rank_R`). Data-parallel learners and heartbeats are not built. A rank
//! whose environments fail reports the worker and its message, and the run stops with
//! it; a rank that dies makes `mpirun` end the job, naming the rank.

use std::ops::Range;

use anyhow::{bail, Result};
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;
use rlcpc_agents::{ActorPool, AgentError, Mode, ParamSnapshot, Rollout, Runner};
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::nn::NetSpec;

pub use mpi::environment::Universe;
pub use mpi::topology::SimpleCommunicator as World;
pub use mpi::traits::Communicator;

/// Starts MPI (once per process) for threads that call MPI from the main thread only
/// (rank 0's learner, an actor rank's loop; the actor threads never do); an error a
/// second time.
pub fn init() -> Result<Universe> {
    mpi::initialize_with_threading(mpi::Threading::Funneled)
        .map(|(u, _)| u)
        .ok_or_else(|| anyhow::anyhow!("MPI is already initialised in this process"))
}

/// Ends every rank of the job (MPI_Abort): for a rank that cannot go on.
pub fn abort(world: &SimpleCommunicator, code: i32) -> ! {
    world.abort(code)
}

/// The workers that actor rank `rank` (1-based) of `ranks` runs: contiguous blocks in
/// rank order, differing by one worker at most when they do not divide evenly.
pub fn block(rank: usize, ranks: usize, workers: usize) -> Range<usize> {
    let actor_ranks = ranks - 1;
    let i = rank - 1;
    (i * workers / actor_ranks)..((i + 1) * workers / actor_ranks)
}

/// Rank 0 to the actor ranks (broadcast).
#[derive(Serialize, Deserialize)]
enum Cmd {
    /// Build your block's workers with this environment seed (and these states: every
    /// worker's, on resume), acting with `initial` first.
    Start {
        /// The run's resolved config (TOML) and network spec (JSON): actor ranks need no
        /// file of rank 0's.
        config: String,
        spec: String,
        env_seed: u64,
        /// JSON of every worker's state (postcard cannot carry JSON values).
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

/// [`Cmd`] borrowing its snapshot (the same encoding), so rank 0 sends without a copy.
#[derive(Serialize)]
enum CmdRef<'a> {
    #[allow(dead_code)]
    Start {
        config: String,
        spec: String,
        env_seed: u64,
        states: Option<String>,
        initial: &'a ParamSnapshot,
    },
    Collect(&'a ParamSnapshot),
    SaveState,
    Stop,
}

/// An actor rank to rank 0.
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

/// Rank 0's broadcast of `bytes`: the length, then the bytes.
fn broadcast_from_root(world: &SimpleCommunicator, bytes: &mut Vec<u8>) {
    let root = world.process_at_rank(0);
    let mut len = bytes.len() as u64;
    root.broadcast_into(&mut len);
    bytes.resize(len as usize, 0);
    root.broadcast_into(&mut bytes[..]);
}

/// The actors of an MPI job, seen from rank 0.
pub struct MpiPool<'a> {
    world: &'a SimpleCommunicator,
    latest: ParamSnapshot,
    workers: usize,
    mode: Mode,
    /// Async: workers' unrolls per batch.
    batch_rollouts: usize,
    /// Async: ranks already told to stop (after a failure of theirs).
    done: Vec<bool>,
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
    /// Sends every actor rank its start and waits until each has built its workers (or
    /// says why it could not).
    pub fn start(
        world: &'a SimpleCommunicator,
        cfg: &Config,
        spec: &NetSpec,
        env_seed: u64,
        states: Option<Vec<serde_json::Value>>,
        initial: ParamSnapshot,
    ) -> Result<Self> {
        let ranks = world.size() as usize;
        check_layout(cfg, ranks)?;
        let states = states.map(|s| serde_json::to_string(&s)).transpose()?;
        let mut bytes = encode(&CmdRef::Start {
            config: cfg.to_toml(),
            spec: serde_json::to_string(spec)?,
            env_seed,
            states,
            initial: &initial,
        });
        // From the start on, the pool's drop sends the stop (and only it).
        STARTED.store(true, std::sync::atomic::Ordering::SeqCst);
        broadcast_from_root(world, &mut bytes);
        let mut pool = MpiPool {
            world,
            latest: initial,
            workers: cfg.run.workers,
            mode: cfg.run.mode,
            batch_rollouts: match cfg.run.batch_rollouts {
                0 => cfg.run.workers,
                n => n,
            },
            done: vec![false; ranks],
            lags: vec![0.0; ranks],
            next: 0,
            stopped: false,
            broadcast_bytes: (0, 0),
            unroll_bytes: (0, 0),
        };
        pool.gather("start")?;
        Ok(pool)
    }

    /// One reply from every actor rank, in rank order; the first failure (after all
    /// have answered, so no rank is left mid-message) as the error.
    fn gather(&mut self, what: &str) -> Result<Vec<Reply>, AgentError> {
        let mut replies = Vec::new();
        let mut failure = None;
        for r in 1..self.world.size() {
            let (bytes, _) = self.world.process_at_rank(r).receive_vec::<u8>();
            match postcard::from_bytes::<Reply>(&bytes) {
                Ok(Reply::Failed { worker, message }) => {
                    failure.get_or_insert(AgentError::Worker {
                        worker,
                        message: format!("(MPI rank {r}) {message}"),
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
                    failure.get_or_insert(AgentError::Worker {
                        worker: usize::MAX,
                        message: format!("MPI rank {r} sent an unreadable reply to {what}: {e}"),
                    });
                }
            }
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(replies),
        }
    }

    /// Async: the next message from any actor rank, answered at once with the newest
    /// snapshot (its next unroll's parameters); a failure stops that rank.
    fn receive_any(&mut self) -> Result<(usize, Rollout), AgentError> {
        // Fair: the first rank with a message waiting, in turn from the one after the last
        // served (MPI's any-source receive lets one fast rank starve the others).
        let actor_ranks = self.world.size() as usize - 1;
        let waiting = (0..actor_ranks)
            .map(|i| 1 + (self.next + i) % actor_ranks)
            .find(|&r| {
                !self.done[r]
                    && self
                        .world
                        .process_at_rank(r as i32)
                        .immediate_probe()
                        .is_some()
            });
        let r = match waiting {
            Some(r) => r,
            None => self.world.any_process().probe().source_rank() as usize,
        };
        self.next = r % actor_ranks;
        let (bytes, _) = self.world.process_at_rank(r as i32).receive_vec::<u8>();
        let reply = postcard::from_bytes::<Reply>(&bytes);
        let answer = if matches!(reply, Ok(Reply::Rollout(_))) {
            CmdRef::Collect(&self.latest)
        } else {
            self.done[r] = true;
            CmdRef::Stop
        };
        let bytes_out = encode(&answer);
        if let CmdRef::Collect(_) = answer {
            self.broadcast_bytes.0 += bytes_out.len() as u64;
            self.broadcast_bytes.1 += 1;
        }
        self.world.process_at_rank(r as i32).send(&bytes_out[..]);
        match reply {
            Ok(Reply::Rollout(b)) => {
                self.unroll_bytes.0 += bytes.len() as u64;
                self.unroll_bytes.1 += 1;
                Ok((r, *b))
            }
            Ok(Reply::Failed { worker, message }) => Err(AgentError::Worker {
                worker,
                message: format!("(MPI rank {r}) {message}"),
            }),
            Ok(_) => Err(AgentError::Worker {
                worker: usize::MAX,
                message: format!("MPI rank {r} sent something else than an unroll"),
            }),
            Err(e) => Err(AgentError::Worker {
                worker: usize::MAX,
                message: format!("MPI rank {r} sent an unreadable unroll: {e}"),
            }),
        }
    }

    fn send(&mut self, cmd: CmdRef<'_>) -> usize {
        let mut bytes = encode(&cmd);
        let n = bytes.len();
        broadcast_from_root(self.world, &mut bytes);
        n
    }
}

/// Refuses a run the ranks cannot carry, saying what to change.
fn check_layout(cfg: &Config, ranks: usize) -> Result<()> {
    if ranks < 2 {
        bail!("--distributed needs at least 2 MPI ranks (rank 0 learns, the others act); got {ranks}: start it with `mpirun -np N`");
    }
    if cfg.run.workers < ranks - 1 {
        bail!(
            "--distributed: run.workers = {} is fewer than the {} actor ranks; each rank needs a worker",
            cfg.run.workers,
            ranks - 1
        );
    }
    Ok(())
}

impl ActorPool for MpiPool<'_> {
    fn publish(&mut self, snap: ParamSnapshot) {
        self.latest = snap;
    }

    fn next_batch(&mut self) -> Result<Rollout, AgentError> {
        if self.mode == Mode::Async {
            let ranks = self.world.size() as usize;
            let (mut parts, mut workers) = (Vec::new(), 0);
            while workers < self.batch_rollouts {
                let (r, unroll) = self.receive_any()?;
                workers += block(r, ranks, self.workers).len();
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
        if parts.len() + 1 != self.world.size() as usize {
            return Err(AgentError::Worker {
                worker: usize::MAX,
                message: "an MPI rank answered a collect with something else".into(),
            });
        }
        Ok(Rollout::concat(&parts))
    }

    fn worker_states(&mut self) -> Result<Option<Vec<serde_json::Value>>, AgentError> {
        if self.mode == Mode::Async {
            return Ok(None); // as the threaded async runner: no consistent point
        }
        self.send(CmdRef::SaveState);
        let mut all = Vec::with_capacity(self.workers);
        for r in self.gather("save state")? {
            if let Reply::States(s) = r {
                let block: Vec<serde_json::Value> =
                    serde_json::from_str(&s).map_err(|e| AgentError::Worker {
                        worker: usize::MAX,
                        message: format!("unreadable worker states from an MPI rank: {e}"),
                    })?;
                all.extend(block);
            }
        }
        if all.len() != self.workers {
            return Err(AgentError::Worker {
                worker: usize::MAX,
                message: format!(
                    "the MPI ranks sent {} worker states for {} workers",
                    all.len(),
                    self.workers
                ),
            });
        }
        Ok(Some(all))
    }

    fn metrics(&self) -> Vec<(String, f64)> {
        if self.mode != Mode::Async {
            return Vec::new();
        }
        (1..self.lags.len())
            .map(|r| (format!("mpi/policy_lag_rank_{r}"), self.lags[r]))
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
            self.world.size() - 1,
            mean(self.broadcast_bytes),
            self.broadcast_bytes.1,
            mean(self.unroll_bytes),
            self.unroll_bytes.1
        ))
    }
}

impl Drop for MpiPool<'_> {
    fn drop(&mut self) {
        // A panic mid-protocol may leave a rank in a send: the caller aborts the job.
        if !self.stopped && !std::thread::panicking() {
            self.stopped = true;
            if self.mode == Mode::Async {
                // Every rank is collecting or sending its next unroll: take it, answer stop.
                for r in 1..self.world.size() as usize {
                    if !self.done[r] {
                        let _ = self.world.process_at_rank(r as i32).receive_vec::<u8>();
                        self.world
                            .process_at_rank(r as i32)
                            .send(&encode(&CmdRef::Stop)[..]);
                    }
                }
            } else {
                self.send(CmdRef::Stop);
            }
        }
    }
}

/// Whether rank 0 has sent the start (from then on its pool sends the stop).
static STARTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Tells the actor ranks to stop when rank 0 ends before its pool started (a config or
/// run-directory error): otherwise they would wait for a start forever.
pub fn stop_waiting_ranks(world: &SimpleCommunicator) {
    if !STARTED.swap(true, std::sync::atomic::Ordering::SeqCst) {
        let mut bytes = encode(&CmdRef::Stop);
        broadcast_from_root(world, &mut bytes);
    }
}

/// An actor rank: serves rank 0's commands until it says stop. Errors building or
/// running the workers go to rank 0 (which stops the run naming the worker and rank);
/// the returned error is for a broken protocol only.
pub fn serve(world: &SimpleCommunicator) -> Result<()> {
    let rank = world.rank() as usize;
    let ranks = world.size() as usize;
    let mut first = 0;
    let mut async_mode = false;
    let mut runner: Option<Runner> = None;
    let reply = |r: &Reply| world.process_at_rank(0).send(&encode(r)[..]);
    loop {
        let mut bytes = Vec::new();
        broadcast_from_root(world, &mut bytes);
        let cmd: Cmd = postcard::from_bytes(&bytes)
            .map_err(|e| anyhow::anyhow!("MPI rank {rank}: unreadable command from rank 0: {e}"))?;
        let answer = match cmd {
            Cmd::Start {
                config,
                spec,
                env_seed,
                states,
                initial,
            } => {
                let built = (|| -> Result<Runner> {
                    let mut cfg = Config::from_toml(&config, "rank 0's config")?;
                    async_mode = cfg.run.mode == Mode::Async;
                    // The block's own runner collects one unroll per worker per message.
                    cfg.run.mode = Mode::Sync;
                    let spec: NetSpec = serde_json::from_str(&spec)?;
                    crate::train::set_learner_threads(cfg.run.learner_threads);
                    let mine = block(rank, ranks, cfg.run.workers);
                    first = mine.start;
                    let states: Option<Vec<serde_json::Value>> =
                        states.map(|s| serde_json::from_str(&s)).transpose()?;
                    let actors = crate::train::build_actors(
                        &cfg,
                        &spec,
                        env_seed,
                        mine,
                        states.as_deref(),
                        "the checkpoint",
                    )?;
                    Ok(Runner::start(&cfg.run.runner(), actors, initial)?)
                })();
                match built {
                    Ok(r) if async_mode => {
                        reply(&Reply::Ready);
                        return serve_async(world, r, first);
                    }
                    Ok(r) => {
                        runner = Some(r);
                        Reply::Ready
                    }
                    Err(e) => Reply::Failed {
                        worker: first,
                        message: format!("{e:#}"),
                    },
                }
            }
            Cmd::Collect(snap) => match runner.as_mut() {
                Some(r) => {
                    r.publish(snap);
                    match r.next_batch() {
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
        reply(&answer);
    }
}

/// An actor rank in async mode: collect, send, take the snapshot that comes back, until
/// rank 0 answers stop.
fn serve_async(world: &SimpleCommunicator, mut runner: Runner, first: usize) -> Result<()> {
    let rank = world.rank();
    loop {
        let reply = match runner.next_batch() {
            Ok(b) => Reply::Rollout(Box::new(b)),
            Err(AgentError::Worker { worker, message }) => Reply::Failed { worker, message },
            Err(e) => Reply::Failed {
                worker: first,
                message: e.to_string(),
            },
        };
        world.process_at_rank(0).send(&encode(&reply)[..]);
        let (bytes, _) = world.process_at_rank(0).receive_vec::<u8>();
        match postcard::from_bytes::<Cmd>(&bytes)
            .map_err(|e| anyhow::anyhow!("MPI rank {rank}: unreadable command from rank 0: {e}"))?
        {
            Cmd::Collect(snap) => runner.publish(snap),
            Cmd::Stop => return Ok(()),
            _ => {
                bail!("MPI rank {rank}: rank 0 sent an async actor something else than parameters")
            }
        }
    }
}
