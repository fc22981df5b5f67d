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
//!
//! By concern: [`layout`] (who is what in the job), [`wire`] (the messages and the
//! polled transfers), [`pool`] (a learner's actor ranks), [`actor`] (an actor rank's
//! loop), [`peers`] (the data-parallel learners); here, the job's entry point
//! ([`run_job`]) and what every role shares (MPI's start, lost ranks, the stop of
//! ranks still waiting). The common imports below are the submodules' too.

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

mod actor;
mod layout;
mod peers;
mod pool;
mod wire;

pub use actor::serve;
pub use layout::{block, span, Layout};
use peers::LearnerCmd;
pub use peers::{serve_learner, start_learners, Peers};
pub use pool::{MpiActors, MpiPool};
use wire::*;

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

/// Whether any rank was lost (silent past the timeout) in this process's run: the job
/// then ends with MPI_Abort, so that a hung rank cannot keep `mpirun` waiting.
static LOST: AtomicBool = AtomicBool::new(false);

/// See [`LOST`].
pub fn lost_ranks() -> bool {
    LOST.load(SeqCst)
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
                crate::errln!("error: {e:#}");
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
            Ok(Err(e)) => crate::errln!("error: MPI rank {rank}: {e:#}"),
            Err(_) => crate::errln!("error: MPI rank {rank} panicked"),
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
                    crate::errln!("error: {e:#}");
                }
                if lost_ranks() {
                    crate::errln!("note: MPI ranks were lost (above); ending the job with MPI_Abort so that none is left waiting");
                }
                abort(world, if r.is_ok() { 0 } else { 1 });
            }
            r
        }
        Err(_) => {
            crate::errln!("error: MPI rank 0 (the learner) panicked");
            abort(world, 1)
        }
    }
}
