//! Data-parallel learners: learner 0 starts the others, and every learner all-reduces
//! its gradients with the rest ([`Peers`], the training loop's team).

use super::*;

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
pub(super) enum LearnerCmd {
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
    pub(super) comm: &'a SimpleCommunicator,
    pub(super) world: &'a SimpleCommunicator,
    pub(super) timeout: Duration,
}

impl Peers<'_> {
    /// Fails `what` past the timeout.
    pub(super) fn limit(&self, what: &'static str) -> impl FnMut() -> Option<String> {
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
