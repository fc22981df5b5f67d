//! The actor ranks' side: [`serve`] builds this rank's workers and answers its learner
//! every update (sync) or as fast as it can (async), with a heartbeat while it works.

use super::*;

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
pub(super) fn beat_every(timeout: Duration) -> Duration {
    (timeout / 4).min(Duration::from_secs(1))
}

/// A heartbeat to the learner (rank 0 of `comm`).
pub(super) fn heartbeat(comm: &SimpleCommunicator) -> impl FnMut() + '_ {
    move || comm.process_at_rank(0).send_with_tag(&[0u8][..], HEARTBEAT)
}

/// An actor rank's poll while it waits for its learner: heartbeats, and giving up on a
/// learner silent for twice the timeout.
pub(super) fn waiting(
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
pub(super) fn serve_async(
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
