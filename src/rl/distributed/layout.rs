//! Where each process is in the MPI job: learners and actor ranks, the groups and
//! their communicators, and which workers each actor rank runs.

use super::*;

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

/// Where this process is in the job, and the communicators of its role.
pub struct Layout {
    pub(super) world: SimpleCommunicator,
    /// Learner ranks: world ranks 0..learners.
    pub learners: usize,
    /// This learner's index, or the index of the learner this actor rank serves.
    pub learner: usize,
    pub is_learner: bool,
    /// The learner's group (the learner as its rank 0, then its actor ranks in world
    /// order); `None` for a learner without actor ranks.
    pub(super) group: Option<SimpleCommunicator>,
    /// World ranks of the group's members, by group rank.
    pub(super) group_world: Vec<usize>,
    /// The learner ranks (on learners, when there are several).
    pub(super) peers: Option<SimpleCommunicator>,
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
