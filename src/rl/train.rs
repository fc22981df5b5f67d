//! `rlcpc train`: the training loop, top to bottom in the order of the algorithm —
//! collect unrolls, compute returns and losses, update, publish parameters, log,
//! checkpoint.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::Device;
use rlcpc_agents::{Actor, ActorPool, Learner, ParamSnapshot, Rollout, Runner};

use crate::checkpoint::{self, keys, Counters, Loaded};
use crate::config::Config;
use crate::metrics::{EpisodeWindow, MetricsWriter};
use crate::nn::init::Init;
use crate::nn::{actor_policy, AgentNet, NetSpec};

use crate::run_dir::CHECKPOINT;

/// How to run, beyond the config.
pub struct TrainOptions {
    pub out: PathBuf,
    pub resume: bool,
    pub device: Device,
    /// Show a progress bar (on a terminal).
    pub progress: bool,
    /// Write metrics and checkpoints (benchmarks turn this off).
    pub write: bool,
}

/// What a finished run reports.
#[derive(Debug, Clone)]
pub struct TrainSummary {
    pub counters: Counters,
    pub mean_return: Option<f64>,
    /// Environment steps and seconds when the target return was first reached.
    pub solved: Option<(u64, f64)>,
    /// Environment steps per second over the whole run (this process only).
    pub sps: f64,
    pub interrupted: bool,
    /// Mean milliseconds per update of each phase over the run: `collect` (waiting for
    /// the actors' batch), `env` (the actors' environment stepping, summed over actor
    /// threads: with one thread in sync mode a part of collect; with more, or in async
    /// mode, it can exceed it), then the learner's `forward`, `loss`, `aux`,
    /// `backward`, `optimiser` and `publish` (the parameter snapshot for the actors).
    pub phases_ms: PhaseTimes,
    /// What crossed the network, for a distributed run (bytes per parameter broadcast
    /// and per unroll), else `None`.
    pub traffic: Option<String>,
}

/// Time per update of each phase, in milliseconds (a run's mean, or sums while it runs):
/// see [`TrainSummary::phases_ms`].
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PhaseTimes {
    pub collect: f64,
    pub env: f64,
    pub forward: f64,
    pub loss: f64,
    pub aux: f64,
    pub backward: f64,
    pub optimiser: f64,
    pub publish: f64,
}

impl PhaseTimes {
    /// One update's phases, in seconds: the wait for the batch (`collect`), the actors'
    /// stepping (`env`), the learner's own phases, and what else the update took
    /// (`update` less the learner's phases: the parameter snapshot for the actors).
    fn of_update(collect: f64, env: f64, p: &rlcpc_agents::Phases, update: f64) -> Self {
        let learner = p.forward + p.loss + p.aux + p.backward + p.optimiser;
        PhaseTimes {
            collect,
            env,
            forward: p.forward,
            loss: p.loss,
            aux: p.aux,
            backward: p.backward,
            optimiser: p.optimiser,
            publish: (update - learner).max(0.0),
        }
    }

    fn add(&mut self, o: &PhaseTimes) {
        self.collect += o.collect;
        self.env += o.env;
        self.forward += o.forward;
        self.loss += o.loss;
        self.aux += o.aux;
        self.backward += o.backward;
        self.optimiser += o.optimiser;
        self.publish += o.publish;
    }

    /// Sums of seconds over `n` updates as milliseconds per update.
    fn mean_ms(&self, n: u64) -> PhaseTimes {
        let ms = |secs: f64| 1e3 * secs / n.max(1) as f64;
        PhaseTimes {
            collect: ms(self.collect),
            env: ms(self.env),
            forward: ms(self.forward),
            loss: ms(self.loss),
            aux: ms(self.aux),
            backward: ms(self.backward),
            optimiser: ms(self.optimiser),
            publish: ms(self.publish),
        }
    }
}

/// Where the actors run, and who the other data-parallel learners are: this
/// process's threads ([`Threads`], [`Runner`]) unless a source says otherwise. The
/// distributed run (`rlcpc train --distributed`, feature `mpi`) supplies its own, with
/// actor ranks and peers; the loop names no transport.
pub trait ActorSource<'a> {
    /// Before anything is built (the distributed run starts its other learners here).
    fn prepare(&self, _cfg: &Config, _spec: &NetSpec, _resume: bool) -> Result<()> {
        Ok(())
    }

    /// The other data-parallel learners, if any.
    fn team(&self) -> Option<Box<dyn Team + 'a>> {
        None
    }

    /// This learner's workers and, in async mode, its share of a batch's unrolls.
    fn share(&self, cfg: &Config) -> (std::ops::Range<usize>, usize) {
        (0..cfg.run.workers, cfg.run.batch_rollouts)
    }

    /// Actors somewhere other than this process's threads, started from the first
    /// parameters (`snapshot` makes them) with the workers' saved `states`; `None`: run
    /// them as threads here.
    fn start(
        &self,
        _cfg: &Config,
        _spec: &NetSpec,
        _env_seed: u64,
        _states: Option<Vec<serde_json::Value>>,
        _snapshot: &dyn Fn() -> Result<ParamSnapshot>,
    ) -> Result<Option<Box<dyn ActorPool + 'a>>> {
        Ok(None)
    }
}

/// The actors as threads of this process, with no other learner.
pub struct Threads;

impl ActorSource<'_> for Threads {}

/// What the training loop asks of the other data-parallel learners (the distributed
/// run's peers); a lone learner has none. Learner 0 logs, decides
/// and checkpoints for all.
pub trait Team {
    /// Whether this is learner 0.
    fn is_root(&self) -> bool {
        self.rank() == 0
    }
    /// This learner's index.
    fn rank(&self) -> usize;
    /// Whether this learner lost an actor rank; [`Team::mark_lost`] makes learner 0
    /// count one too (it then ends the job, since a lost rank may hang).
    fn lost_ranks(&self) -> bool;
    fn mark_lost(&self);
    /// Learners in the team.
    fn size(&self) -> usize;
    /// Sums `flat` over the learners, in place, the same on every learner.
    fn all_reduce(&mut self, flat: &mut [f32]);
    /// Learner 0's `bytes`, on every learner.
    fn broadcast(&mut self, bytes: &mut Vec<u8>);
    /// On learner 0, every learner's bytes in learner order (its own first); elsewhere
    /// nothing.
    fn gather(&mut self, mine: Vec<u8>) -> Vec<Vec<u8>>;
}

/// A learner other than 0 ends quietly with this when learner 0 failed (learner 0
/// reports why).
#[derive(Debug)]
pub struct Learner0Failed;

impl std::fmt::Display for Learner0Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("learner 0 failed")
    }
}

impl std::error::Error for Learner0Failed {}

/// The checkpoint at `path`, read by learner 0 and sent to the other learners (which
/// may be on hosts without it).
fn read_shared(path: &Path, team: &mut Option<Box<dyn Team + '_>>) -> Result<Loaded> {
    let Some(t) = team.as_mut() else {
        return Ok(Loaded::read(path)?);
    };
    let mut bytes = Vec::new();
    let mut failed = None;
    if t.is_root() {
        match checkpoint::read_bounded(path, checkpoint::MAX_FILE_BYTES) {
            Ok(b) => {
                bytes.push(1);
                bytes.extend(b);
            }
            Err(e) => {
                failed = Some(e);
                bytes.push(0);
            }
        }
    }
    t.broadcast(&mut bytes);
    if let Some(e) = failed {
        return Err(checkpoint::CheckpointError::Read {
            what: "checkpoint",
            path: path.to_path_buf(),
            message: e.to_string(),
        }
        .into());
    }
    match bytes.split_first() {
        Some((1, b)) => Ok(Loaded::from_bytes(b, path, "checkpoint")?),
        _ => Err(Learner0Failed.into()),
    }
}

/// FNV-1a of every parameter's bits: data-parallel learners compare theirs.
fn param_hash(learner: &Learner<AgentNet>) -> Result<u64> {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (_, v) in all_params(learner) {
        for x in v.as_tensor().flatten_all()?.to_vec1::<f32>()? {
            for b in x.to_bits().to_le_bytes() {
                h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
            }
        }
    }
    Ok(h)
}

/// Learner 0's decisions (target reached, checkpoint due, stop), on every learner.
fn agree(team: &mut dyn Team, flags: [bool; 3]) -> [bool; 3] {
    let mut bytes: Vec<u8> = flags.iter().map(|&f| f as u8).collect();
    team.broadcast(&mut bytes);
    [0, 1, 2].map(|i| bytes.get(i) == Some(&1))
}

/// The episodes every data-parallel learner's batch ended, on learner 0 (elsewhere
/// none).
fn joint_episodes(t: &mut dyn Team, batch: &Rollout) -> Result<Vec<(f64, usize)>> {
    let mut all = Vec::new();
    for b in t.gather(serde_json::to_vec(&batch.episodes)?) {
        all.extend(serde_json::from_slice::<Vec<(f64, usize)>>(&b)?);
    }
    Ok(all)
}

/// Builds workers `workers` of the run (each with its share of `env.num_envs`, seeded
/// as the threaded run seeds them) and restores their states, when given, from
/// `states` (every worker's, in worker order; `what` names where they came from).
pub fn build_actors(
    cfg: &Config,
    spec: &NetSpec,
    env_seed: u64,
    workers: std::ops::Range<usize>,
    states: Option<&[serde_json::Value]>,
    what: &str,
) -> Result<Vec<Actor>> {
    let per_worker = cfg.env.num_envs / cfg.run.workers;
    let mut actors = Vec::new();
    for w in workers {
        let mut actor = Actor::new(
            w,
            rlcpc_envs::make_vec(&cfg.env, per_worker)?,
            actor_policy(spec)?,
            cfg.algo.unroll,
            env_seed,
            w * per_worker,
        );
        if let Some(states) = states {
            let st = states
                .get(w)
                .with_context(|| format!("{what} has fewer actor states than run.workers"))?;
            actor
                .load_state(st)
                .with_context(|| format!("{what}: actor {w}'s state does not fit this config"))?;
        }
        actors.push(actor);
    }
    Ok(actors)
}

/// Builds the network spec from the config and the environment's spaces.
pub fn net_spec(cfg: &Config) -> Result<NetSpec> {
    // The first environment built (a `gymnasium:` one starts Python here); its errors
    // name the config key, as the config's own checks do.
    let env = rlcpc_envs::make(&cfg.env).map_err(|e| crate::config::env_invalid(&e))?;
    NetSpec::for_env(&cfg.model, env.as_ref()).map_err(anyhow::Error::msg)
}

/// Warnings about a config that runs but may not be able to learn its task: today, an
/// `algo.unroll` shorter than the environment's memory span ([`rlcpc_envs::Env::memory_span`]),
/// which truncated backpropagation through time cannot bridge. (A `gymnasium:`
/// environment declares no span and is not started for this.)
pub fn memory_warnings(cfg: &Config) -> Result<Vec<String>> {
    use crate::config::CoreKind;
    if cfg.env.id.starts_with(rlcpc_envs::gymnasium::PREFIX) || cfg.model.core != CoreKind::Lstm {
        return Ok(Vec::new());
    }
    let span = rlcpc_envs::make(&cfg.env)?.memory_span();
    Ok(match span {
        Some(m) if cfg.algo.unroll < m => vec![format!(
            "warning: algo.unroll = {} is shorter than {}'s memory span of {m} steps: truncated backpropagation cannot carry a cue that far; set algo.unroll >= {m}",
            cfg.algo.unroll, cfg.env.id
        )],
        _ => Vec::new(),
    })
}

/// The checks that need more than the config's own values ([`Config::validate`] checks
/// those), run before anything is written: the environment's spaces give a network,
/// and `model.init_encoder` holds an encoder of that network's shape.
pub fn preflight(cfg: &Config) -> Result<NetSpec> {
    let spec = net_spec(cfg)?;
    // The whole network, now that the environment gave the input's size (a Box of
    // millions of values makes a first layer of billions of weights).
    let params = crate::checkpoint::ParamCount::min_params(&spec);
    crate::config::check_weights(
        "model",
        params,
        format!(
            "the network for {}'s observations of shape {:?} ({})",
            cfg.env.id,
            spec.obs_shape,
            spec.encoder.describe()
        ),
    )?;
    if let Some(head) = crate::rl::auxiliary::head(&cfg.aux) {
        head.check(&spec)?;
    }
    if let Some(path) = &cfg.model.init_encoder {
        crate::encoder_file::EncoderFile::read(path)
            .and_then(|f| f.check(&spec.encoder))
            .map_err(|e| {
                crate::config::Invalid::new(
                    "model.init_encoder",
                    format!("'{}': {e:#}", path.display()),
                )
            })?;
    }
    Ok(spec)
}

/// The learner with freshly initialised parameters (seeded).
pub fn build_learner(cfg: &Config, spec: &NetSpec, device: &Device) -> Result<Learner<AgentNet>> {
    let mut init = Init::new(cfg.run.seed, device);
    spec.init(&mut init)?;
    if let Some(path) = &cfg.model.init_encoder {
        crate::encoder_file::init_encoder_from(path, &spec.encoder, &init.varmap)?;
    }
    let head = crate::rl::auxiliary::head(&cfg.aux);
    if let Some(h) = &head {
        h.init(spec, &mut init)?;
    }
    let mut net = AgentNet::new(spec.clone(), &init.varmap, device)?;
    use crate::config::LearnerPath;
    // The lean path where the network and the device allow it (run.learner).
    match cfg.run.learner {
        LearnerPath::Candle => {}
        LearnerPath::Auto => {
            if device.is_cpu() {
                net.use_lean();
            }
        }
        LearnerPath::Lean if !device.is_cpu() => bail!(
            "run.learner = \"lean\" runs on the CPU only; use \"auto\" or \"candle\" with a GPU --device"
        ),
        LearnerPath::Lean => {
            if !net.use_lean() {
                bail!(
                    "run.learner = \"lean\": the {} encoder has no lean path (MLP and conv encoders only); use \"auto\" or \"candle\"",
                    spec.encoder.describe()
                );
            }
        }
    }
    let aux = match head {
        Some(h) => Some(h.build(spec, &init.varmap, device, cfg.run.seed)?),
        None => None,
    };
    Ok(Learner::new(
        net,
        aux,
        cfg.algo.clone(),
        cfg.optim.clone(),
        spec.obs_shape.clone(),
        device.clone(),
    )?)
}

/// Every parameter of the learner (network and auxiliary head), by name.
fn all_params(learner: &Learner<AgentNet>) -> Vec<(String, candle_core::Var)> {
    use rlcpc_agents::PolicyNetwork;
    let mut v = learner.net.vars();
    if let Some(a) = &learner.aux {
        v.extend(a.vars());
    }
    v
}

/// Loads parameters (and optimiser state) from a checkpoint into `learner`.
pub fn load_params(learner: &mut Learner<AgentNet>, ck: &Loaded, with_optim: bool) -> Result<()> {
    ck.restore_params(&all_params(learner))?;
    if with_optim {
        ck.restore_optim(&mut learner.optim)?;
    }
    Ok(())
}

struct Checkpointer<'a> {
    path: PathBuf,
    cfg: &'a Config,
    spec: &'a NetSpec,
}

impl Checkpointer<'_> {
    /// Writes the checkpoint; with data-parallel learners, every learner calls it
    /// (learner 0 joins their workers' states, checks that their parameters are its
    /// own, and writes).
    /// `runner: None` saves no actor states (after an actor failed: a resume then starts
    /// new episodes, as an async run's does).
    fn save(
        &self,
        learner: &Learner<AgentNet>,
        runner: Option<&mut (dyn ActorPool + '_)>,
        counters: &Counters,
        window: &EpisodeWindow,
        team: &mut Option<Box<dyn Team + '_>>,
    ) -> Result<()> {
        let mut workers = match runner {
            Some(r) => r.worker_states()?,
            None => None,
        };
        let aux_rng = learner.aux.as_ref().map(|a| a.save_rng());
        // Data-parallel: every learner's CPC generator (their draws differ), for resume.
        let mut aux_rngs = None;
        if let Some(t) = team.as_mut() {
            let hash = param_hash(learner)?;
            let mine = (hash, &workers, &aux_rng, t.lost_ranks());
            let all = t.gather(serde_json::to_vec(&mine)?);
            if !t.is_root() {
                return Ok(());
            }
            let mut joined = Some(Vec::new());
            let mut rngs = Vec::new();
            for (i, b) in all.iter().enumerate() {
                type Part = (
                    u64,
                    Option<Vec<serde_json::Value>>,
                    Option<serde_json::Value>,
                    bool,
                );
                let (h, w, rng, lost): Part = serde_json::from_slice(b)?;
                if h != hash {
                    bail!("data-parallel learner {i}'s parameters differ from learner 0's (hash {h:016x}, not {hash:016x}) at update {}", counters.updates);
                }
                match (joined.as_mut(), w) {
                    (Some(j), Some(w)) => j.extend(w),
                    _ => joined = None,
                }
                rngs.push(rng);
                if lost {
                    // Learner 0 ends the job (a lost rank elsewhere may hang).
                    t.mark_lost();
                }
            }
            workers = joined;
            aux_rngs = Some(rngs);
        }
        let tensors = checkpoint::state_tensors(&all_params(learner), &learner.optim)?;
        let mut meta = vec![
            (keys::CONFIG, serde_json::to_string(&self.cfg.to_toml())?),
            (keys::NET_SPEC, serde_json::to_string(self.spec)?),
            (keys::COUNTERS, serde_json::to_string(counters)?),
            (keys::EPISODES, serde_json::to_string(window)?),
            (keys::WORKERS, serde_json::to_string(&workers)?),
            (keys::AUX_RNG, serde_json::to_string(&aux_rng)?),
        ];
        if let Some(r) = aux_rngs {
            meta.push((keys::AUX_RNGS, serde_json::to_string(&r)?));
        }
        checkpoint::write_atomic(&self.path, tensors, checkpoint::metadata(meta))?;
        Ok(())
    }
}

/// Trains `cfg` until its step budget, its target return, or `stop` (Ctrl-C).
pub fn train(cfg: &Config, opts: &TrainOptions, stop: Arc<AtomicBool>) -> Result<TrainSummary> {
    train_checked(cfg, &preflight(cfg)?, opts, stop)
}

/// [`train`] with the network spec its [`preflight`] returned.
pub fn train_checked(
    cfg: &Config,
    spec: &NetSpec,
    opts: &TrainOptions,
    stop: Arc<AtomicBool>,
) -> Result<TrainSummary> {
    train_on(cfg, spec, opts, stop, &Threads)
}

/// [`train_checked`] with the actors where `actors` says.
pub fn train_on<'a>(
    cfg: &Config,
    spec: &NetSpec,
    opts: &TrainOptions,
    stop: Arc<AtomicBool>,
    actors: &dyn ActorSource<'a>,
) -> Result<TrainSummary> {
    // Setup: run directory, network, learner, actors.
    // Nothing is written until the checkpoint (when resuming) fits the new config.
    actors.prepare(cfg, spec, opts.resume)?;
    let mut team = actors.team();
    let spec = spec.clone();
    let ck_path = opts.out.join(CHECKPOINT);
    let run_dir = if opts.write {
        Some(crate::run_dir::RunDir::open(&opts.out, opts.resume)?)
    } else {
        None
    };
    let mut learner = build_learner(cfg, &spec, &opts.device)?;
    let mut counters = Counters::default();
    let mut window = EpisodeWindow::default();
    let mut worker_states: Option<Vec<serde_json::Value>> = None;
    if opts.resume {
        let ck = read_shared(&ck_path, &mut team)?;
        if let Ok(name) = ck.meta::<String>(keys::TRAINER) {
            bail!(
                "'{}' is a {name} trainer checkpoint; resume it with `rlcpc pretrain ... --resume`",
                ck_path.display()
            );
        }
        let saved_spec: NetSpec = ck.spec(keys::NET_SPEC)?;
        if saved_spec != spec {
            return Err(ck
                .mismatch(format!(
                    "network {saved_spec:?} differs from the config's {spec:?}"
                ))
                .into());
        }
        load_params(&mut learner, &ck, true)?;
        counters = ck.meta(keys::COUNTERS)?;
        window = ck.meta(keys::EPISODES)?;
        worker_states = ck.meta(keys::WORKERS)?;
        if cfg.env.id.starts_with(rlcpc_envs::gymnasium::PREFIX) {
            // A Python environment's state cannot be saved: the actors start new episodes
            // (from a new seed, below), so such a resume is not bit-for-bit.
            crate::errln!(
                "note: '{}' is a Python environment, whose state cannot be restored: the resumed run starts new episodes",
                cfg.env.id
            );
            worker_states = None;
        }
        let mut rng = ck.meta::<Option<serde_json::Value>>(keys::AUX_RNG)?;
        if let (Some(t), true) = (&team, ck.metadata.contains_key(keys::AUX_RNGS)) {
            // This learner's own, when the checkpoint has as many learners.
            let all: Vec<Option<serde_json::Value>> = ck.meta(keys::AUX_RNGS)?;
            if all.len() == t.size() {
                rng = all[t.rank()].clone();
            }
        }
        if let (Some(aux), Some(rng)) = (learner.aux.as_mut(), rng) {
            aux.load_rng(&rng)?;
        }
        learner.set_updates(counters.updates);
        if let Some(states) = &worker_states {
            if states.len() != cfg.run.workers {
                return Err(ck
                    .mismatch(format!(
                        "it holds {} actor states, the config has run.workers = {}",
                        states.len(),
                        cfg.run.workers
                    ))
                    .into());
            }
        }
    }
    // Async runs resumed without actor states start fresh episodes from a new seed.
    let env_seed = cfg
        .run
        .seed
        .wrapping_add(counters.updates.wrapping_mul(1_000_003));
    let what = format!("checkpoint '{}'", ck_path.display());
    let (mine, batch_share) = actors.share(cfg);
    let threads = || -> Result<Box<dyn ActorPool + '_>> {
        let workers = build_actors(
            cfg,
            &spec,
            env_seed,
            mine.clone(),
            worker_states.as_deref(),
            &what,
        )?;
        let mut rc = cfg.run.runner();
        rc.batch_rollouts = batch_share;
        Ok(Box::new(Runner::start(&rc, workers, learner.snapshot()?)?))
    };
    let snapshot = || -> Result<ParamSnapshot> { Ok(learner.snapshot()?) };
    let started = actors.start(cfg, &spec, env_seed, worker_states.clone(), &snapshot)?;
    let mut runner: Box<dyn ActorPool + '_> = match started {
        Some(pool) => pool,
        None => threads()?,
    };
    if let Some(dir) = &run_dir {
        dir.begin(
            opts.resume,
            &cfg.to_toml(),
            "time/total_timesteps",
            counters.env_steps,
        )?;
    }
    let checkpointer = Checkpointer {
        path: ck_path,
        cfg,
        spec: &spec,
    };
    let mut writer = if opts.write {
        Some(MetricsWriter::open(
            &opts.out,
            opts.resume.then_some(counters.env_steps),
        )?)
    } else {
        None
    };
    let bar = crate::metrics::progress_bar(
        cfg.run.total_steps,
        counters.env_steps,
        "steps",
        opts.progress,
    );

    let start = Instant::now();
    let start_steps = counters.env_steps;
    let elapsed_before = counters.elapsed_secs;
    let mut interval = Interval::new(counters.env_steps);
    let mut solved = None;
    let mut interrupted = false;
    let mut actors_failed = false;
    let mut last_save = Instant::now();
    let (mut phase_sums, mut phase_updates) = (PhaseTimes::default(), 0u64);
    let mut reduce_bytes = 0;
    while counters.env_steps < cfg.run.total_steps {
        if team.is_none() && stop.load(Ordering::Relaxed) {
            interrupted = true;
            break;
        }
        // 1. Collect: one unroll per worker (sync) or the first to arrive (async).
        let t0 = Instant::now();
        let batch = match runner.next_batch() {
            Ok(b) => b,
            // An actor failed (its environment raised, hung or died): the learner still
            // holds the last finished update, which is checkpointed before the run stops.
            // After a stop request (a job-wide SIGTERM ends the Python environments too)
            // the run ends as interrupted.
            Err(e) if team.is_none() && opts.write => {
                if stop.load(Ordering::Relaxed) {
                    crate::errln!("note: after the stop request: {e}");
                    (interrupted, actors_failed) = (true, true);
                    break;
                }
                checkpointer.save(&learner, None, &counters, &window, &mut team)?;
                bail!(
                    "{e}; the run's checkpoint holds its last finished update ({}, {} env steps), from which `rlcpc train --resume` continues",
                    counters.updates,
                    counters.env_steps
                );
            }
            Err(e) => return Err(e.into()),
        };
        let t1 = Instant::now();
        // 2–4. Returns, loss and one optimiser step (data-parallel learners: on the mean
        // gradient of their joint batch, which weighs `joint` env steps).
        let progress = counters.env_steps as f64 / cfg.run.total_steps as f64;
        let mut joint = batch.env_steps() as u64;
        let stats = match team.as_mut() {
            None => learner.update(&batch, progress)?,
            Some(t) => {
                let mut reduce = |flat: &mut [f32]| {
                    reduce_bytes = 4 * flat.len();
                    t.all_reduce(flat);
                    joint = flat.last().map_or(0, |&w| w.round() as u64);
                    Ok(())
                };
                learner.update_reduced(&batch, progress, Some(&mut reduce))?
            }
        };
        // 5. Publish the new parameters to the actors.
        runner.publish(learner.snapshot()?);
        let t2 = Instant::now();

        counters.updates = learner.updates();
        counters.optim_steps = learner.optim.steps();
        counters.env_steps += joint;
        match team.as_mut() {
            None => batch.episodes.iter().for_each(|&(r, l)| window.push(r, l)),
            Some(t) => {
                for (r, l) in joint_episodes(t.as_mut(), &batch)? {
                    window.push(r, l);
                }
            }
        }
        counters.episodes = window.total;
        counters.elapsed_secs = elapsed_before + start.elapsed().as_secs_f64();
        let mut metrics = stats.metrics();
        metrics.push(("time/collect_env_ms".into(), 1e3 * batch.env_secs));
        metrics.extend(runner.metrics());
        interval.add(&metrics, (t1 - t0).as_secs_f64(), (t2 - t1).as_secs_f64());
        phase_sums.add(&PhaseTimes::of_update(
            (t1 - t0).as_secs_f64(),
            batch.env_secs,
            &stats.phases,
            (t2 - t1).as_secs_f64(),
        ));
        phase_updates += 1;

        bar.set_position(counters.env_steps.min(cfg.run.total_steps));
        // 6. Decide (learner 0, for data-parallel learners): target reached, checkpoint
        // due (every `checkpoint_every` updates and `checkpoint_minutes`), stop.
        let mut reached = cfg.run.target_return > 0.0
            && window.is_full()
            && window
                .mean_return()
                .is_some_and(|m| m >= cfg.run.target_return);
        let every = cfg.run.checkpoint_every;
        let mut due = (every > 0 && counters.updates % every == 0)
            || (cfg.run.checkpoint_minutes > 0.0
                && last_save.elapsed().as_secs_f64() >= 60.0 * cfg.run.checkpoint_minutes);
        let mut halt = false;
        if let Some(t) = team.as_mut() {
            [reached, due, halt] = agree(t.as_mut(), [reached, due, stop.load(Ordering::Relaxed)]);
        }
        // 7. Log.
        if reached && solved.is_none() {
            solved = Some((counters.env_steps, counters.elapsed_secs));
        }
        let last = counters.env_steps >= cfg.run.total_steps || reached;
        if counters.updates % cfg.run.log_every == 0 || last {
            let scalars = interval.flush(&counters, &window);
            if let Some(w) = writer.as_mut() {
                w.log(counters.env_steps, &scalars)?;
            }
            let fps = scalars
                .iter()
                .find(|s| s.0 == "time/fps")
                .map_or(0.0, |s| s.1);
            bar.set_message(format!(
                "| {fps:.0} SPS | return {}",
                window
                    .mean_return()
                    .map_or("-".into(), |m| format!("{m:.1}"))
            ));
        }
        if reached {
            break;
        }
        // 8. Checkpoint.
        if (opts.write || team.is_some()) && due {
            checkpointer.save(
                &learner,
                Some(runner.as_mut()),
                &counters,
                &window,
                &mut team,
            )?;
            last_save = Instant::now();
        }
        if halt {
            interrupted = true;
            break;
        }
    }
    if opts.write || team.is_some() {
        let pool = if actors_failed {
            None
        } else {
            Some(runner.as_mut())
        };
        checkpointer.save(&learner, pool, &counters, &window, &mut team)?;
    }
    let mut traffic = runner.traffic();
    if let Some(t) = &team {
        traffic = Some(format!(
            "{}; {} data-parallel learners, {reduce_bytes} bytes per gradient all-reduce, their parameters identical at every checkpoint (hash {:016x})",
            traffic.unwrap_or_else(|| "mpi: actor threads on each learner".into()),
            t.size(),
            param_hash(&learner)?
        ));
    }
    bar.finish_and_clear();
    let secs = start.elapsed().as_secs_f64();
    Ok(TrainSummary {
        mean_return: window.mean_return(),
        solved,
        sps: (counters.env_steps - start_steps) as f64 / secs.max(1e-9),
        counters,
        interrupted,
        phases_ms: phase_sums.mean_ms(phase_updates),
        traffic,
    })
}

/// Averages of the update statistics and phase timings over one log interval.
struct Interval {
    means: crate::metrics::Averager,
    collect_secs: f64,
    learn_secs: f64,
    updates: u32,
    since: Instant,
    steps_at_start: u64,
}

impl Interval {
    fn new(steps: u64) -> Self {
        Interval {
            means: Default::default(),
            collect_secs: 0.0,
            learn_secs: 0.0,
            updates: 0,
            since: Instant::now(),
            steps_at_start: steps,
        }
    }

    fn add(&mut self, metrics: &[(String, f64)], collect: f64, learn: f64) {
        self.means.add(metrics);
        self.collect_secs += collect;
        self.learn_secs += learn;
        self.updates += 1;
    }

    fn flush(&mut self, c: &Counters, w: &EpisodeWindow) -> Vec<(String, f64)> {
        let secs = self.since.elapsed().as_secs_f64().max(1e-9);
        let n = self.updates.max(1) as f64;
        let mut out = vec![
            ("time/total_timesteps".to_string(), c.env_steps as f64),
            ("time/iterations".into(), c.updates as f64),
            (
                "time/fps".into(),
                (c.env_steps - self.steps_at_start) as f64 / secs,
            ),
            ("time/time_elapsed".into(), c.elapsed_secs),
            ("time/collect_ms".into(), 1e3 * self.collect_secs / n),
            ("time/learn_ms".into(), 1e3 * self.learn_secs / n),
            ("rollout/episodes".into(), w.total as f64),
            ("rollout/ep_rew_total".into(), w.return_sum),
            (
                "rollout/ep_rew_mean".into(),
                w.mean_return().unwrap_or(f64::NAN),
            ),
            (
                "rollout/ep_len_mean".into(),
                w.mean_length().unwrap_or(f64::NAN),
            ),
        ];
        out.extend(self.means.take(""));
        *self = Interval::new(c.env_steps);
        out
    }
}

/// Reads the config saved in a run directory (for `--resume`).
pub fn saved_config(out: &Path, overrides: &[String]) -> Result<Config> {
    saved_config_with_notes(out, overrides).map(|(c, _)| c)
}

/// [`saved_config`] with the notices of [`Config::resolve`].
pub fn saved_config_with_notes(out: &Path, overrides: &[String]) -> Result<(Config, Vec<String>)> {
    let path = out.join(crate::run_dir::CONFIG);
    if !path.exists() {
        bail!(
            "--resume: {} has no config.toml; is it a run directory?",
            out.display()
        );
    }
    Ok(Config::load_with_notes(Some(&path), overrides)?)
}

/// Candle's CPU kernels size their thread pool from RAYON_NUM_THREADS at first use.
pub fn set_learner_threads(n: usize) {
    if n > 0 && std::env::var_os("RAYON_NUM_THREADS").is_none() {
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    }
}
