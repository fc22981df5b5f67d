//! `rlcpc eval` and `rlcpc export-encoder`: using a trained checkpoint.

use std::path::Path;

use anyhow::{Context, Result};
use candle_core::Device;
use rand::SeedableRng;
use rlcpc_agents::{ActorPolicy, ParamSnapshot};
use rlcpc_envs::{Env, SeededRng};

use crate::checkpoint::{Counters, Loaded};
use crate::config::Config;
use crate::nn::{actor_policy, NetSpec};

/// The config, network spec and actor parameters stored in a checkpoint.
pub struct TrainedPolicy {
    pub config: Config,
    pub spec: NetSpec,
    pub snapshot: ParamSnapshot,
}

impl TrainedPolicy {
    /// Reads an agent checkpoint (a run directory names its `checkpoint.safetensors`),
    /// checked against its own network spec (every tensor present, F32, of the shape the
    /// spec builds, finite) and the spec against its environment's spaces.
    pub fn load(path: &Path) -> Result<TrainedPolicy> {
        let path = &crate::run_dir::checkpoint_path(path);
        let ck = Loaded::read(path)?;
        if let Ok(name) = ck.meta::<String>(crate::checkpoint::keys::TRAINER) {
            anyhow::bail!(
                "'{}' is a {name} trainer checkpoint, not an agent checkpoint (written by `rlcpc train`)",
                path.display()
            );
        }
        if !ck.metadata.contains_key(crate::checkpoint::keys::CONFIG)
            && ck
                .metadata
                .contains_key(crate::checkpoint::keys::ENCODER_SPEC)
        {
            anyhow::bail!(
                "'{}' is an encoder file, not an agent checkpoint (written by `rlcpc train`)",
                path.display()
            );
        }
        let toml: String = ck.meta(crate::checkpoint::keys::CONFIG)?;
        let config = Config::from_toml(&toml, &format!("{} (embedded config)", path.display()))?;
        let spec: NetSpec = ck.spec(crate::checkpoint::keys::NET_SPEC)?;
        let counters: Counters = ck.meta(crate::checkpoint::keys::COUNTERS)?;
        let env = rlcpc_envs::make(&config.env)?;
        // Checkpoints from before `model.extra_inputs` sent everything through the
        // encoder (their config has no such key: it reads as "core").
        let mut model = config.model.clone();
        if spec.extra_inputs == 0 {
            model.extra_inputs = crate::config::ExtraInputs::Encoder;
        }
        let env_spec = NetSpec::for_env(&model, env.as_ref()).map_err(anyhow::Error::msg)?;
        if env_spec != spec {
            return Err(ck
                .mismatch(format!(
                    "its network ({}, {} actions, observations {:?}) does not fit its environment {} ({}, {} actions, observations {:?})",
                    spec.encoder.describe(),
                    spec.num_actions,
                    spec.obs_shape,
                    config.env.id,
                    env_spec.encoder.describe(),
                    env_spec.num_actions,
                    env_spec.obs_shape
                ))
                .into());
        }
        // The parameters the spec builds, each read from the file and checked.
        let mut init = crate::nn::init::Init::new(0, &Device::Cpu);
        spec.init(&mut init)?;
        let mut params = Vec::new();
        for (name, var) in crate::nn::init::named_vars(&init.varmap, |_| true) {
            let t = ck.tensor(&name, var.dims())?;
            let data = t.flatten_all()?.to_vec1::<f32>()?;
            params.push((name, t.dims().to_vec(), data));
        }
        params.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(TrainedPolicy {
            config,
            spec,
            snapshot: ParamSnapshot {
                version: counters.updates,
                params,
            },
        })
    }
}

/// Who picks the actions: a reference policy or a trained one.
pub enum Driver {
    /// Uniformly random actions over `n`.
    Random { rng: SeededRng, n: usize },
    /// The environment's scripted agent.
    Oracle,
    /// A checkpoint's policy, on the actors' inference path, with its recurrent state.
    Trained {
        policy: Box<dyn ActorPolicy>,
        state: Vec<f32>,
        logits: Vec<f32>,
        value: Vec<f32>,
        rng: SeededRng,
        /// Sample from the policy (true) or take the most likely action.
        stochastic: bool,
    },
}

impl Driver {
    pub fn reference(policy: ReferencePolicy, env: &dyn Env, seed: u64) -> Result<Driver> {
        Ok(match policy {
            ReferencePolicy::Random => Driver::Random {
                rng: SeededRng::seed_from_u64(seed ^ 0x5EED),
                n: match env.action_space() {
                    rlcpc_envs::Space::Discrete(n) => n,
                    other => anyhow::bail!(
                        "{}: only discrete actions are supported, got {other}",
                        env.id()
                    ),
                },
            },
            ReferencePolicy::Oracle => {
                if env.oracle_action().is_none() {
                    anyhow::bail!("{} has no oracle", env.id());
                }
                Driver::Oracle
            }
        })
    }

    pub fn trained(p: &TrainedPolicy, path: &Path, seed: u64, stochastic: bool) -> Result<Driver> {
        let mut policy = actor_policy(&p.spec)?;
        policy.load(&p.snapshot).with_context(|| {
            format!(
                "checkpoint {} does not fit its own network spec",
                path.display()
            )
        })?;
        Ok(Driver::Trained {
            policy,
            state: vec![0.0; p.spec.state_size()],
            logits: vec![0.0; p.spec.num_actions],
            value: vec![0.0; 1],
            rng: SeededRng::seed_from_u64(seed),
            stochastic,
        })
    }

    /// The action for `obs`; `start` marks an episode's first step (resets the core).
    pub fn act(&mut self, env: &dyn Env, obs: &[f32], start: bool) -> Result<usize> {
        use rand::Rng;
        match self {
            Driver::Random { rng, n } => Ok(rng.random_range(0..*n)),
            Driver::Oracle => env
                .oracle_action()
                .with_context(|| format!("{} has no oracle", env.id())),
            Driver::Trained {
                policy,
                state,
                logits,
                value,
                rng,
                stochastic,
            } => {
                if start {
                    state.fill(0.0);
                }
                policy.forward(obs, state, logits, value)?;
                Ok(if *stochastic {
                    rlcpc_agents::sample_action(logits, rng).0
                } else {
                    rlcpc_agents::argmax(logits)
                })
            }
        }
    }
}

/// Returns of `episodes` episodes of the checkpoint's policy on its own environment,
/// the first reset with `seed`.
pub fn evaluate(path: &Path, episodes: usize, seed: u64, stochastic: bool) -> Result<Vec<f64>> {
    let p = TrainedPolicy::load(path)?;
    let mut env = rlcpc_envs::make(&p.config.env)?;
    let mut driver = Driver::trained(&p, path, seed, stochastic)?;
    episode_returns(env.as_mut(), episodes, seed, |env, obs, start| {
        driver.act(env, obs, start)
    })
}

/// Returns of `episodes` episodes of `env`, the first reset with `seed` (later ones
/// continue its generator); `act(env, obs, start)` picks each action, `start` marking
/// the first step of an episode.
fn episode_returns(
    env: &mut dyn rlcpc_envs::Env,
    episodes: usize,
    seed: u64,
    mut act: impl FnMut(&dyn rlcpc_envs::Env, &[f32], bool) -> Result<usize>,
) -> Result<Vec<f64>> {
    let mut obs = vec![0.0; env.observation_space().flat_dim()];
    let mut returns = Vec::with_capacity(episodes.min(1 << 16));
    for ep in 0..episodes {
        env.reset_into(if ep == 0 { Some(seed) } else { None }, &mut obs);
        let (mut ret, mut start) = (0.0, true);
        loop {
            let action = act(env, &obs, start)?;
            start = false;
            let o = env.step_into(action, &mut obs)?;
            ret += o.reward as f64;
            if o.terminated || o.truncated {
                break;
            }
        }
        returns.push(ret);
    }
    Ok(returns)
}

/// A reference policy for `rlcpc envs score`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReferencePolicy {
    /// Uniformly random actions.
    Random,
    /// The environment's scripted agent, which reads the true state.
    Oracle,
}

/// Returns of `episodes` episodes of a reference policy on `cfg`'s environment, the
/// first reset with `seed`.
pub fn score(
    cfg: &rlcpc_envs::EnvConfig,
    policy: ReferencePolicy,
    episodes: usize,
    seed: u64,
) -> Result<Vec<f64>> {
    let mut env = rlcpc_envs::make(cfg)?;
    let mut driver = Driver::reference(policy, env.as_ref(), seed)?;
    episode_returns(env.as_mut(), episodes, seed, |env, obs, start| {
        driver.act(env, obs, start)
    })
}

/// `(mean, standard deviation)`.
pub fn mean_std(x: &[f64]) -> (f64, f64) {
    let mean = x.iter().sum::<f64>() / x.len() as f64;
    let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / x.len() as f64;
    (mean, var.sqrt())
}

/// Plays `steps` agent steps of `cfg`'s environment with `driver` (the first reset with
/// `seed`, a new episode after each end) and keeps every observation with the true state
/// at the time it was seen.
pub fn record(
    cfg: &rlcpc_envs::EnvConfig,
    driver: &mut Driver,
    policy: &str,
    steps: usize,
    seed: u64,
) -> Result<crate::data::trajectories::Trajectories> {
    let mut env = rlcpc_envs::make(cfg)?;
    let state_names = env.state_names();
    if state_names.is_empty() {
        anyhow::bail!("{} reports no true state to record", env.id());
    }
    let space = env.observation_space();
    let dim = space.flat_dim();
    let bytes = (steps as u128) * (dim + state_names.len() + 3) as u128 * 4;
    if bytes > crate::checkpoint::MAX_FILE_BYTES as u128 {
        anyhow::bail!(
            "--steps {steps}: a recording of {} observations of {dim} values needs about {:.1} GiB, more than the {} GiB a recording may hold",
            steps,
            bytes as f64 / (1u64 << 30) as f64,
            crate::checkpoint::MAX_FILE_BYTES >> 30
        );
    }
    let mut t = crate::data::trajectories::Trajectories {
        env: cfg.clone(),
        policy: policy.to_string(),
        obs_shape: space.shape(),
        obs: Vec::with_capacity(steps * dim),
        state: Vec::with_capacity(steps * state_names.len()),
        state_names,
        actions: Vec::with_capacity(steps),
        rewards: Vec::with_capacity(steps),
        first: Vec::with_capacity(steps),
    };
    let mut obs = vec![0f32; dim];
    env.reset_into(Some(seed), &mut obs);
    let mut start = true;
    for _ in 0..steps {
        t.obs.extend_from_slice(&obs);
        t.state.extend(env.true_state());
        t.first.push(start as u8 as f32);
        let a = driver.act(env.as_ref(), &obs, start)?;
        let out = env.step_into(a, &mut obs)?;
        t.actions.push(a as u32);
        t.rewards.push(out.reward as f32);
        start = out.terminated || out.truncated;
        if start {
            env.reset_into(None, &mut obs);
        }
    }
    Ok(t)
}

/// Writes the encoder's weights (names `encoder.*`) and spec to `out`, with the agent's
/// LSTM core as `context.*` (or a trainer's context network) where there is one. The
/// source is checked against its own spec first; an existing `out` is refused unless
/// `force` (and never the source itself).
pub fn export_encoder(
    checkpoint: &Path,
    out: &Path,
    force: bool,
) -> Result<crate::nn::encoders::EncoderSpec> {
    let checkpoint = &crate::run_dir::checkpoint_path(checkpoint);
    if out.exists() {
        let same = std::fs::canonicalize(out).ok() == std::fs::canonicalize(checkpoint).ok();
        if same {
            anyhow::bail!("--out '{}' is the checkpoint itself", out.display());
        }
        crate::run_dir::refuse_special(out, "--out")?;
        if !force {
            anyhow::bail!(
                "--out '{}' exists; pass --force to replace it",
                out.display()
            );
        }
    }
    let f = crate::encoder_file::EncoderFile::read(checkpoint)?;
    match f.origin {
        // An agent checkpoint: every tensor checked against its spec and environment.
        crate::encoder_file::Origin::AgentCheckpoint => {
            TrainedPolicy::load(checkpoint)?;
        }
        crate::encoder_file::Origin::EncoderFile => {
            let mut init = crate::nn::init::Init::new(0, &Device::Cpu);
            f.spec.init(&mut init, "encoder")?;
            f.load_into(&init.varmap, &["encoder."])?;
        }
    }
    let (tensors, meta) = f.export_parts()?;
    crate::checkpoint::write_atomic(out, tensors, crate::checkpoint::metadata(meta))?;
    Ok(f.spec)
}
