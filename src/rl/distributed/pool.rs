//! The learner's side: its actor ranks as an [`ActorPool`] (broadcast or point-to-point
//! parameters, unrolls joined in worker order, heartbeats watched), and [`MpiActors`],
//! the training loop's actor source in an MPI job.

use super::*;

/// A learner's view of its actor ranks' liveness: when each was last heard from (an
/// unroll, a reply or a heartbeat), and which are lost.
pub(super) struct Watch {
    pub(super) heard: Vec<Instant>,
    pub(super) lost: Vec<bool>,
    pub(super) timeout: Duration,
    /// World ranks, by group rank (for messages).
    pub(super) world: Vec<usize>,
}

impl Watch {
    /// Takes the heartbeats waiting.
    pub(super) fn drain(&mut self, comm: &SimpleCommunicator) {
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
    pub(super) fn silent(
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
    pub(super) fn lose(&mut self, r: usize) -> String {
        self.lost[r] = true;
        LOST.store(true, SeqCst);
        format!(
            "MPI rank {} sent nothing for {:.0} s (no unroll, no heartbeat): it died or hangs",
            self.world[r],
            self.heard[r].elapsed().as_secs_f64()
        )
    }
}

/// A learner's actor ranks.
pub struct MpiPool<'a> {
    pub(super) comm: &'a SimpleCommunicator,
    pub(super) latest: ParamSnapshot,
    /// Workers this learner's ranks run.
    pub(super) workers: Range<usize>,
    pub(super) mode: Mode,
    /// Async: workers' unrolls per batch (this learner's share).
    pub(super) batch_rollouts: usize,
    pub(super) watch: Watch,
    /// Async: ranks that will send no more (told to stop, failed, or lost).
    pub(super) done: Vec<bool>,
    /// Async: lost ranks that came back and were told to stop.
    pub(super) told: Vec<bool>,
    /// Async: the reply in flight to each rank.
    pub(super) pending: Vec<Option<Pending>>,
    /// Async: policy lag (updates) of each rank's last unroll.
    pub(super) lags: Vec<f64>,
    /// Async: where the fair receive starts looking (0-based actor rank index).
    pub(super) next: usize,
    pub(super) stopped: bool,
    /// Bytes and count of parameter broadcasts, and of unrolls received (one per rank).
    pub(super) broadcast_bytes: (u64, u64),
    pub(super) unroll_bytes: (u64, u64),
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

    pub(super) fn size(&self) -> usize {
        self.comm.size() as usize
    }

    /// Sync: one reply from every actor rank, in rank order; the first failure (after
    /// all have answered, so no rank is left mid-message) as the error; a rank silent
    /// past the timeout as the error at once.
    pub(super) fn gather(&mut self, what: &str) -> Result<Vec<Reply>, AgentError> {
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
    pub(super) fn send(&mut self, cmd: CmdRef<'_>) -> usize {
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
    pub(super) fn test_sends(&mut self) {
        for p in &mut self.pending {
            *p = p.take().and_then(Pending::test);
        }
    }

    /// Async: `bytes` to rank `r`, once its previous reply has left.
    pub(super) fn send_to(&mut self, r: usize, bytes: Vec<u8>) {
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
    pub(super) fn lose(&mut self, r: usize) -> Result<(), AgentError> {
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
        crate::errln!(
            "warning: {why}; going on with the other actor ranks ({left} left; mpi/lost_ranks counts the lost)"
        );
        Ok(())
    }

    /// Async: a lost rank that sends again (it was only slow) is told to stop, so that
    /// it does not wait for an answer and end the job.
    pub(super) fn stop_returning(&mut self) {
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
                crate::errln!(
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
    pub(super) fn receive_any(&mut self) -> Result<(usize, Rollout), AgentError> {
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
