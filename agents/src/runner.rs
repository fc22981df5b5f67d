//! Actor threads and the channels between them and the learner.
//!
//! Sync mode: the learner sends every worker the current parameters, each worker
//! collects one unroll and waits; batches are joined in worker order, so a run is
//! reproducible from its seed for a given worker count. Async mode: workers loop on
//! their own, taking the newest published parameters before each unroll; the learner
//! takes whichever unrolls arrive first, and V-trace corrects for the lag.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam::channel::{bounded, unbounded, Receiver, RecvTimeoutError, Sender};

use crate::config::{Mode, RunnerConfig};
use crate::rollout::SharedSnapshot;
use crate::{Actor, AgentError, ParamSnapshot, Rollout};

enum Cmd {
    Collect(SharedSnapshot),
    SaveState,
}

enum Msg {
    Rollout(Box<Rollout>),
    State(usize, serde_json::Value),
    Failed { worker: usize, message: String },
}

/// Where the learner's unrolls come from: actor threads of this process ([`Runner`]),
/// or actor processes elsewhere (rlcpc's MPI pool). The learner sees only this contract:
/// parameter snapshots out, unrolls with their policy version in.
pub trait ActorPool {
    /// Makes `snap` the parameters actors use from their next unroll on.
    fn publish(&mut self, snap: ParamSnapshot);
    /// The next batch: one unroll per worker (sync, in worker order) or the first
    /// `batch_rollouts` unrolls to arrive (async).
    fn next_batch(&mut self) -> Result<Rollout, AgentError>;
    /// Sync mode: every worker's full state, in worker order (`None` in async mode).
    fn worker_states(&mut self) -> Result<Option<Vec<serde_json::Value>>, AgentError>;
    /// What the pool sent and received so far, in words (a distributed pool's bytes per
    /// message); `None` for threads, which share memory.
    fn traffic(&self) -> Option<String> {
        None
    }
    /// Metrics of the pool itself for the last batch (e.g. a distributed pool's policy
    /// lag per rank), logged with the learner's.
    fn metrics(&self) -> Vec<(String, f64)> {
        Vec::new()
    }
}

impl ActorPool for Runner {
    fn publish(&mut self, snap: ParamSnapshot) {
        Runner::publish(self, snap)
    }
    fn next_batch(&mut self) -> Result<Rollout, AgentError> {
        Runner::next_batch(self)
    }
    fn worker_states(&mut self) -> Result<Option<Vec<serde_json::Value>>, AgentError> {
        Runner::worker_states(self)
    }
}

/// Running actor threads.
pub struct Runner {
    mode: Mode,
    batch_rollouts: usize,
    cmd_tx: Vec<Sender<Cmd>>,
    msg_rx: Receiver<Msg>,
    latest: Arc<Mutex<SharedSnapshot>>,
    stop: Arc<AtomicBool>,
    handles: Vec<JoinHandle<()>>,
    /// The workers' ids, in the order of `actors` (a block of a distributed run's
    /// workers need not start at 0).
    ids: Vec<usize>,
    /// The out-of-process environments' stop requests: on drop, a worker blocked on a
    /// hung environment is released within [`rlcpc_envs::gymnasium::GRACE`].
    hurry: Vec<rlcpc_envs::gymnasium::Hurry>,
}

/// Test hook (feature `test-hooks`, on only in this workspace's test builds):
/// `RLCPC_INJECT_WORKER_PANIC=W:N` makes worker W panic at its N-th unroll, so that tests
/// can check that a failing worker stops the run with its message.
#[cfg(feature = "test-hooks")]
fn injected_panic(worker: usize) -> Option<usize> {
    let v = std::env::var("RLCPC_INJECT_WORKER_PANIC").ok()?;
    let (w, n) = v.split_once(':')?;
    (w.parse::<usize>().ok()? == worker).then(|| n.parse().ok())?
}

/// Release builds have no hook.
#[cfg(not(feature = "test-hooks"))]
fn injected_panic(_worker: usize) -> Option<usize> {
    None
}

impl Runner {
    /// Starts one thread per actor, all acting with `initial` parameters first.
    pub fn start(
        cfg: &RunnerConfig,
        actors: Vec<Actor>,
        initial: ParamSnapshot,
    ) -> Result<Runner, AgentError> {
        let latest = Arc::new(Mutex::new(Arc::new(initial)));
        let stop = Arc::new(AtomicBool::new(false));
        let n = actors.len();
        let (msg_tx, msg_rx) = match cfg.mode {
            Mode::Sync => unbounded(),
            // Async: at most one unroll in flight per worker beyond the one being learnt.
            Mode::Async => bounded(n),
        };
        let mut cmd_tx = Vec::new();
        let mut handles = Vec::new();
        let ids: Vec<usize> = actors.iter().map(|a| a.id).collect();
        let hurry = actors.iter().flat_map(|a| a.hurry_handles()).collect();
        for mut actor in actors {
            let id = actor.id;
            let msg_tx = msg_tx.clone();
            let (tx, rx) = unbounded::<Cmd>();
            cmd_tx.push(tx);
            let (mode, latest, stop) = (cfg.mode, latest.clone(), stop.clone());
            let panic_at = injected_panic(id);
            let handle = std::thread::Builder::new()
                .name(format!("actor-{id}"))
                .spawn(move || {
                    let failure =
                        worker_loop(&mut actor, mode, &rx, &msg_tx, &latest, &stop, panic_at);
                    if let Some(message) = failure {
                        let _ = msg_tx.send(Msg::Failed {
                            worker: id,
                            message,
                        });
                    }
                })
                .map_err(|e| AgentError::Worker {
                    worker: id,
                    message: format!("cannot spawn thread: {e}"),
                })?;
            handles.push(handle);
        }
        Ok(Runner {
            mode: cfg.mode,
            batch_rollouts: if cfg.batch_rollouts == 0 {
                n
            } else {
                cfg.batch_rollouts
            },
            cmd_tx,
            msg_rx,
            latest,
            stop,
            handles,
            ids,
            hurry,
        })
    }

    /// Makes `snap` the parameters actors use from their next unroll on.
    pub fn publish(&self, snap: ParamSnapshot) {
        *self.latest.lock().expect("snapshot lock") = Arc::new(snap);
    }

    /// The next message of the actor threads, calling `tick` every `every` while none
    /// comes.
    fn recv(&self, every: Duration, tick: &mut dyn FnMut()) -> Result<Msg, AgentError> {
        loop {
            return match self.msg_rx.recv_timeout(every) {
                Ok(Msg::Failed { worker, message }) => Err(AgentError::Worker { worker, message }),
                Ok(m) => Ok(m),
                Err(RecvTimeoutError::Timeout) => {
                    tick();
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => Err(AgentError::Worker {
                    worker: usize::MAX,
                    message: "all actor threads exited".into(),
                }),
            };
        }
    }

    /// The next batch: one unroll per worker (sync, in worker order) or the first
    /// `batch_rollouts` unrolls to arrive (async).
    pub fn next_batch(&mut self) -> Result<Rollout, AgentError> {
        self.next_batch_ticking(Duration::from_secs(3600), &mut || {})
    }

    /// [`Runner::next_batch`], calling `tick` every `every` while it waits (an MPI
    /// actor rank's heartbeat).
    pub fn next_batch_ticking(
        &mut self,
        every: Duration,
        tick: &mut dyn FnMut(),
    ) -> Result<Rollout, AgentError> {
        let mut parts = Vec::new();
        match self.mode {
            Mode::Sync => {
                let snap = self.latest.lock().expect("snapshot lock").clone();
                for tx in &self.cmd_tx {
                    tx.send(Cmd::Collect(snap.clone()))
                        .map_err(|_| AgentError::Worker {
                            worker: usize::MAX,
                            message: "an actor thread has exited".into(),
                        })?;
                }
                for _ in 0..self.cmd_tx.len() {
                    if let Msg::Rollout(r) = self.recv(every, tick)? {
                        parts.push(*r);
                    }
                }
                parts.sort_by_key(|r| r.worker);
            }
            Mode::Async => {
                while parts.len() < self.batch_rollouts {
                    if let Msg::Rollout(r) = self.recv(every, tick)? {
                        parts.push(*r);
                    }
                }
            }
        }
        Ok(Rollout::concat(&parts))
    }

    /// Sync mode: every worker's full state, in worker order (`None` in async mode,
    /// where workers are never paused at a consistent point).
    pub fn worker_states(&mut self) -> Result<Option<Vec<serde_json::Value>>, AgentError> {
        if self.mode == Mode::Async {
            return Ok(None);
        }
        for tx in &self.cmd_tx {
            tx.send(Cmd::SaveState).map_err(|_| AgentError::Worker {
                worker: usize::MAX,
                message: "an actor thread has exited".into(),
            })?;
        }
        let mut states = vec![serde_json::Value::Null; self.cmd_tx.len()];
        for _ in 0..self.cmd_tx.len() {
            if let Msg::State(id, v) = self.recv(Duration::from_secs(3600), &mut || {})? {
                let pos = self
                    .ids
                    .iter()
                    .position(|&i| i == id)
                    .expect("a state comes from one of this runner's workers");
                states[pos] = v;
            }
        }
        Ok(Some(states))
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.hurry.iter().for_each(|h| h.now());
        self.cmd_tx.clear();
        // Unblock workers waiting to send, then join them.
        while self.handles.iter().any(|h| !h.is_finished()) {
            while self.msg_rx.try_recv().is_ok() {}
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

/// One actor thread: collects unrolls on command (sync) or continuously with the latest
/// parameters (async) until told to stop; returns why it failed (an error or a panic),
/// `None` on a clean stop.
fn worker_loop(
    actor: &mut Actor,
    mode: Mode,
    rx: &Receiver<Cmd>,
    msg_tx: &Sender<Msg>,
    latest: &Mutex<SharedSnapshot>,
    stop: &AtomicBool,
    panic_at: Option<usize>,
) -> Option<String> {
    let id = actor.id;
    let body = AssertUnwindSafe(|| -> Result<(), AgentError> {
        let mut unrolls = 0usize;
        let mut collect = |actor: &mut Actor| {
            unrolls += 1;
            if panic_at == Some(unrolls) {
                panic!("injected panic at unroll {unrolls} (RLCPC_INJECT_WORKER_PANIC)");
            }
            actor.collect()
        };
        match mode {
            Mode::Sync => {
                while let Ok(cmd) = rx.recv() {
                    let msg = match cmd {
                        Cmd::Collect(snap) => {
                            if snap.version != actor.version() {
                                actor.load(&snap)?;
                            }
                            Msg::Rollout(Box::new(collect(actor)?))
                        }
                        Cmd::SaveState => Msg::State(id, actor.save_state()),
                    };
                    if msg_tx.send(msg).is_err() {
                        break;
                    }
                }
            }
            Mode::Async => {
                while !stop.load(Ordering::Relaxed) {
                    let snap = latest.lock().expect("snapshot lock").clone();
                    if snap.version != actor.version() {
                        actor.load(&snap)?;
                    }
                    let r = collect(actor)?;
                    if msg_tx.send(Msg::Rollout(Box::new(r))).is_err() {
                        break;
                    }
                }
            }
        }
        Ok(())
    });
    match catch_unwind(body) {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(p) => Some(
            p.downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panicked".into()),
        ),
    }
}
