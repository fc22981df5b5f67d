//! The run configuration: one documented serde struct per TOML table, validated at load.
//!
//! Presets in `configs/` are compiled into the binary, so `rlcpc train` works from any
//! directory. Load order: the file (or the built-in default), then `--set key.path=value`
//! overrides, then command-line flags; unknown keys, wrong types and out-of-range values
//! are rejected with the key, the value and the file named.

mod auxiliary;
mod load;
pub mod show;

pub use auxiliary::{
    AuxConfig, AuxKind, CpcHeadConfig, CpcaHeadConfig, CpcaLoss, CurlHeadConfig, Targets,
};
pub use load::{apply_override, from_table, load, Tagged};

use std::path::Path;

use rlcpc_agents::{AlgoConfig, Mode, OptimConfig, RunnerConfig};
use rlcpc_envs::EnvConfig;
use serde::{Deserialize, Serialize};

/// Errors in a configuration; each names the key or file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config '{path}'")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid config '{path}': {message}")]
    Parse { path: String, message: String },
    #[error("invalid --set '{arg}': {reason}")]
    Override { arg: String, reason: String },
    #[error("invalid config '{path}': {message}")]
    Invalid { path: String, message: String },
}

/// A config value that cannot be used, named by its key: the one shape of every
/// validation message (`invalid value for 'KEY': WHY`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid value for '{key}': {why}")]
pub struct Invalid {
    /// The dotted key, e.g. `model.lstm_hidden` (or several, `a'/'b`).
    pub key: String,
    /// What is wrong and what is allowed.
    pub why: String,
}

impl From<rlcpc_agents::AgentError> for Invalid {
    fn from(e: rlcpc_agents::AgentError) -> Self {
        match e {
            rlcpc_agents::AgentError::Config { key, value, reason } => {
                Invalid::new(key, format!("{value} ({reason})"))
            }
            other => Invalid::new("config", other.to_string()),
        }
    }
}

impl Invalid {
    pub fn new(key: &str, why: impl Into<String>) -> Self {
        Invalid {
            key: key.to_string(),
            why: why.into(),
        }
    }
}

/// Presets compiled into the binary, by name (`configs/<name>.toml`).
pub const PRESETS: &[(&str, &str)] = &[
    ("cartpole", include_str!("../../configs/cartpole.toml")),
    (
        "cartpole-lstm-cpc",
        include_str!("../../configs/cartpole-lstm-cpc.toml"),
    ),
    (
        "cartpole-masked",
        include_str!("../../configs/cartpole-masked.toml"),
    ),
    ("tmaze", include_str!("../../configs/tmaze.toml")),
    ("popgym", include_str!("../../configs/popgym.toml")),
    ("atari", include_str!("../../configs/atari.toml")),
    (
        "minigrid-memory",
        include_str!("../../configs/minigrid-memory.toml"),
    ),
    (
        "lab-explore_goal_locations",
        include_str!("../../configs/lab-explore_goal_locations.toml"),
    ),
    (
        "lab-watermaze",
        include_str!("../../configs/lab-watermaze.toml"),
    ),
    (
        "lab-seekavoid_arena",
        include_str!("../../configs/lab-seekavoid_arena.toml"),
    ),
    (
        "lab-keys_doors_puzzle",
        include_str!("../../configs/lab-keys_doors_puzzle.toml"),
    ),
    (
        "lab-lasertag",
        include_str!("../../configs/lab-lasertag.toml"),
    ),
];

/// The whole configuration of a training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The environment: id, count, episode limit and its own options.
    pub env: EnvConfig,
    /// Budget, seeding, scheduling, logging and checkpoints.
    #[serde(default)]
    pub run: RunConfig,
    /// Encoder → optional LSTM core → policy and value heads.
    #[serde(default)]
    pub model: ModelConfig,
    /// The A2C loss and returns (GAE or V-trace).
    #[serde(default)]
    pub algo: AlgoConfig,
    /// The optimiser (RMSProp or Adam) and its learning rate.
    #[serde(default)]
    pub optim: OptimConfig,
    /// The auxiliary loss: `kind = "cpc"` adds the CPC head (§3.4), `"cpca"` CPC|A,
    /// `"curl"` CURL, `"none"` builds none; each kind takes its own keys only.
    #[serde(default)]
    pub aux: AuxConfig,
}

/// `[run]`: budget, seeding, scheduling and logging.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunConfig {
    /// Environment steps to train for (all environments together).
    pub total_steps: u64,
    /// Seed of the parameters, the environments, the actors' sampling and CPC's negatives.
    pub seed: u64,
    /// `sync` (reproducible, on-policy) or `async` (actors never wait; V-trace).
    pub mode: Mode,
    /// Actor threads; `env.num_envs` is split evenly between them.
    pub workers: usize,
    /// Async mode: rollouts per learner batch (0: one per worker).
    pub batch_rollouts: usize,
    /// Write a metrics line (and TensorBoard scalars) every this many updates.
    pub log_every: u64,
    /// Write a checkpoint every this many updates (0: not by updates).
    pub checkpoint_every: u64,
    /// Also write one whenever this many minutes have passed since the last (0: not by
    /// time). A killed run loses at most this much; Ctrl-C, SIGTERM and SIGHUP always
    /// write a final one.
    pub checkpoint_minutes: f64,
    /// Stop early once the mean return of the last 100 episodes reaches this (0: never).
    pub target_return: f64,
    /// Threads of candle's CPU kernels in the learner (0: candle's default). The lean
    /// path (`run.learner`) runs on one thread whatever this says.
    pub learner_threads: usize,
    /// The learner's implementation: `auto` runs MLP and conv encoders (+ LSTM) on the CPU
    /// on the lean path (forward and backward in plain Rust over host buffers, several
    /// times faster; the CPC, CPC|A and CURL heads included) and everything else (GPU
    /// devices) through candle's autograd;
    /// `candle` always uses candle; `lean` insists on the lean path and refuses a
    /// network without one.
    pub learner: LearnerPath,
}

/// Which implementation of the learner's forward and backward runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LearnerPath {
    /// Lean where the network and device allow it, candle elsewhere.
    Auto,
    /// The lean path (MLP or conv encoder, LSTM; on the CPU only).
    Lean,
    /// candle's autograd.
    Candle,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            total_steps: 500_000,
            seed: 1,
            mode: Mode::Sync,
            workers: 1,
            batch_rollouts: 0,
            log_every: 20,
            checkpoint_every: 2000,
            checkpoint_minutes: 10.0,
            target_return: 0.0,
            learner_threads: 1,
            learner: LearnerPath::Auto,
        }
    }
}

impl RunConfig {
    pub fn runner(&self) -> RunnerConfig {
        RunnerConfig {
            mode: self.mode,
            workers: self.workers,
            batch_rollouts: self.batch_rollouts,
        }
    }
}

/// Which encoder turns observations into features.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EncoderKind {
    /// MLP for vector observations, conv net for images (`[H, W, C]`).
    Auto,
    Mlp,
    /// IMPALA's shallow net (Espeholt et al. 2018, fig. 3 left): 16×8×8/4, 32×4×4/2, FC.
    Conv,
}

/// Activation of the MLP encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    Tanh,
    Relu,
}

/// The recurrent core between encoder and heads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CoreKind {
    None,
    Lstm,
}

/// `[model]`: encoder → optional LSTM core → policy and value heads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// `auto` (MLP for vectors, IMPALA's conv net for `[H, W, C]` images), `mlp` or `conv`.
    pub encoder: EncoderKind,
    /// Hidden layer widths of the MLP encoder (SB3's default: [64, 64]).
    pub mlp_hidden: Vec<usize>,
    /// Activation of the MLP encoder: `tanh` (SB3's default) or `relu`.
    pub activation: Activation,
    /// Width of the conv encoder's fully connected layer (IMPALA: 256).
    pub conv_fc: usize,
    /// The recurrent core between encoder and heads: `none` or `lstm`.
    pub core: CoreKind,
    /// LSTM width (IMPALA: 256).
    pub lstm_hidden: usize,
    /// Where inputs that an environment adds to its observation go (POPGym's previous
    /// action and first-step flag): `core` (they join the encoder's output at the LSTM's
    /// input, so the encoder, and the CPC targets it makes, see the observation alone;
    /// as Sample Factory's and habitat-lab's CPC|A) or `encoder` (everything through the
    /// encoder, as rlcpc did before: CPC's targets then hold the previous action).
    pub extra_inputs: ExtraInputs,
    /// Start from the encoder weights in this file (`rlcpc export-encoder`, or the
    /// `encoder.safetensors` of `rlcpc pretrain frames`); its architecture and input shape
    /// must match this model's, else the config is refused naming the difference.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub init_encoder: Option<std::path::PathBuf>,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            encoder: EncoderKind::Auto,
            mlp_hidden: vec![64, 64],
            activation: Activation::Tanh,
            conv_fc: 256,
            core: CoreKind::None,
            lstm_hidden: 128,
            extra_inputs: ExtraInputs::Core,
            init_encoder: None,
        }
    }
}

/// `model.extra_inputs`: where an environment's extra inputs go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExtraInputs {
    /// To the core, beside the encoder's output.
    Core,
    /// Through the encoder with the observation.
    Encoder,
}

/// Where CPC's negatives come from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Negatives {
    /// Other time steps of the same sequence.
    Sequence,
    /// Other sequences of the batch, at the positive's time step.
    Batch,
    /// Any other step of any sequence.
    #[default]
    Both,
    /// Any step of a sequence with the positive's speaker (its own included): the
    /// standalone audio trainer's "same speaker" negatives. The agent has no speakers.
    Speaker,
}

impl Config {
    /// Parses TOML text; `origin` names the file in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let value: toml::Table = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.into(),
            message: e.to_string(),
        })?;
        load::from_tagged_table(value, origin, &[auxiliary::AUX_SECTION])
    }

    /// Loads `path`, or the built-in preset of that name (`cartpole`, ...), applies
    /// `overrides` (`key.path=value`, the value in TOML syntax or a bare string),
    /// resolves dependent settings ([`Config::resolve`]) and validates the result.
    pub fn load(path: Option<&Path>, overrides: &[String]) -> Result<Config, ConfigError> {
        Self::load_with_notes(path, overrides).map(|(c, _)| c)
    }

    /// [`Config::load`], with the notices of what [`Config::resolve`] changed.
    pub fn load_with_notes(
        path: Option<&Path>,
        overrides: &[String],
    ) -> Result<(Config, Vec<String>), ConfigError> {
        let (mut cfg, origin): (Config, String) =
            load::load(path, overrides, PRESETS, &[auxiliary::AUX_SECTION])?;
        let notes = cfg.resolve();
        cfg.validate().map_err(|message| ConfigError::Invalid {
            path: origin,
            message: message.to_string(),
        })?;
        Ok((cfg, notes))
    }

    /// Settings that depend on each other, resolved the way a user expects; returns a
    /// one-line notice for each change. Today: the CPC horizon K, clipped to
    /// `algo.unroll − 1` (K = 30 with a 5-step unroll would have no pair to score), so
    /// that `--aux cpc` works on every preset; the resolved K is what `config.toml` holds.
    pub fn resolve(&mut self) -> Vec<String> {
        let mut notes = Vec::new();
        let unroll = self.algo.unroll;
        if let Some(a) = self
            .aux
            .predict_mut()
            .filter(|a| unroll >= 2 && a.horizon >= unroll)
        {
            notes.push(format!(
                "note: aux.horizon {} clipped to algo.unroll - 1 = {} (CPC predicts inside one unroll; raise algo.unroll for longer horizons)",
                a.horizon,
                unroll - 1
            ));
            a.horizon = unroll - 1;
        }
        notes
    }

    /// Checks ranges and cross-field constraints; the message names key and value.
    pub fn validate(&self) -> Result<(), crate::config::Invalid> {
        self.algo.validate()?;
        self.optim.validate()?;
        // An unknown id or a bad option fails here, at load, without building the
        // environment or starting Python (that is the preflight's).
        rlcpc_envs::check(&self.env).map_err(|e| env_invalid(&e))?;
        let t = self.env.step_timeout;
        if !(t > 0.0 && t <= rlcpc_envs::gymnasium::MAX_STEP_TIMEOUT) {
            return Err(Invalid::new(
                "env.step_timeout",
                format!(
                    "{t} (seconds: more than 0, at most {})",
                    rlcpc_envs::gymnasium::MAX_STEP_TIMEOUT
                ),
            ));
        }
        let r = &self.run;
        if r.workers == 0 {
            return Err(Invalid::new(
                "run.workers",
                "0 (need at least one actor thread)",
            ));
        }
        if self.env.num_envs == 0 || !self.env.num_envs.is_multiple_of(r.workers) {
            return Err(Invalid::new(
                "env.num_envs",
                format!(
                    "{} (must be a positive multiple of run.workers = {})",
                    self.env.num_envs, r.workers
                ),
            ));
        }
        // Upper bounds: far above any sensible run, below what aborts on allocation.
        for (key, v, max) in [
            ("env.num_envs", self.env.num_envs, 65_536),
            ("run.workers", r.workers, 1_024),
            ("algo.unroll", self.algo.unroll, 65_536),
            ("model.lstm_hidden", self.model.lstm_hidden, 65_536),
            ("model.conv_fc", self.model.conv_fc, 65_536),
        ] {
            if v > max {
                return Err(Invalid::new(key, format!("{v} (at most {max})")));
            }
        }
        if let Some(&w) = self.model.mlp_hidden.iter().find(|&&w| w > 65_536) {
            return Err(Invalid::new(
                "model.mlp_hidden",
                format!("a width of {w} (at most 65536)"),
            ));
        }
        if r.mode == Mode::Async && r.batch_rollouts > 64 * r.workers {
            return Err(Invalid::new("run.batch_rollouts", format!(
                "{} (at most 64 × run.workers = {}; each worker has one unroll in flight at a time)",
                r.batch_rollouts,
                64 * r.workers
            )));
        }
        if r.total_steps == 0 {
            return Err(Invalid::new("run.total_steps", "0 (must be at least 1)"));
        }
        if r.log_every == 0 {
            return Err(Invalid::new("run.log_every", "0 (must be at least 1)"));
        }
        if !(r.checkpoint_minutes >= 0.0 && r.checkpoint_minutes.is_finite()) {
            return Err(Invalid::new(
                "run.checkpoint_minutes",
                format!("{} (must be finite and >= 0)", r.checkpoint_minutes),
            ));
        }
        if self.model.mlp_hidden.is_empty() || self.model.mlp_hidden.contains(&0) {
            return Err(Invalid::new(
                "model.mlp_hidden",
                format!(
                    "{:?} (need at least one non-zero width)",
                    self.model.mlp_hidden
                ),
            ));
        }
        if self.model.lstm_hidden == 0 || self.model.conv_fc == 0 {
            return Err(Invalid::new("model.lstm_hidden' or 'model.conv_fc", "0"));
        }
        // Each width is bounded above, but products of widths (three MLP layers of 65,536
        // are 8.6G weights) are bounded here: the weights between hidden layers and the
        // LSTM's, known before the environment gives the input's width.
        let m = &self.model;
        let hidden = chain_weights(&m.mlp_hidden);
        let z = m.mlp_hidden.last().copied().unwrap_or(0).max(m.conv_fc) as u128;
        let h = m.lstm_hidden as u128;
        let lstm = if m.core == CoreKind::Lstm {
            4 * h * (z + h)
        } else {
            0
        };
        check_weights(
            "model.mlp_hidden' / 'model.lstm_hidden",
            hidden + lstm,
            format!(
                "{:?} and {}: the hidden layers and the LSTM",
                m.mlp_hidden, m.lstm_hidden
            ),
        )?;
        if r.mode == Mode::Async && !self.algo.vtrace {
            return Err(Invalid::new(
                "algo.vtrace",
                "false with run.mode = \"async\" (async mode needs V-trace to correct policy lag)",
            ));
        }
        // Environments per learner batch, for `negatives = "batch"`.
        let per_batch = self.env.num_envs / r.workers
            * if r.mode == Mode::Async && r.batch_rollouts > 0 {
                r.batch_rollouts
            } else {
                r.workers
            };
        self.aux.validate(self.algo.unroll, per_batch)?;
        Ok(())
    }

    /// Whether this config has the key `path` (`aux.weight`): false only for a key of
    /// a tagged section that its kind does not take (no `weight` under
    /// `aux.kind = "none"`); any other key is load's to judge.
    pub fn takes(&self, path: &str) -> bool {
        match path.strip_prefix("aux.") {
            Some(key) if key != "kind" => AuxConfig::keys(self.aux.kind().as_str())
                .is_some_and(|keys| keys.iter().any(|k| k == key)),
            _ => true,
        }
    }

    /// The resolved config as TOML, for the run directory.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("config serialises")
    }
}

/// The most weights a config may ask of a group of layers: 1 GiB of floats, before the
/// optimiser's copies. Each width is bounded on its own; their products are bounded
/// with this (three MLP layers of 65,536 would be 8.6G weights).
pub const MAX_WEIGHTS: u128 = 1 << 28;

/// The weights of dense layers through `widths` in turn (biases aside).
pub fn chain_weights(widths: &[usize]) -> u128 {
    widths.windows(2).map(|w| w[0] as u128 * w[1] as u128).sum()
}

/// Refuses `weights` above [`MAX_WEIGHTS`], naming `key` and `what` they are.
pub fn check_weights(key: &str, weights: u128, what: String) -> Result<(), Invalid> {
    if weights > MAX_WEIGHTS {
        return Err(Invalid::new(
            key,
            format!(
                "{what}: about {weights} weights, more than {MAX_WEIGHTS} (1 GiB of floats, before the optimiser's copies)"
            ),
        ));
    }
    Ok(())
}

/// An environment's error as the config key it concerns: `env.python` where Python
/// cannot start, `env.id` for an unknown or unusable environment, the option's key.
pub fn env_invalid(e: &rlcpc_envs::EnvError) -> Invalid {
    match e {
        rlcpc_envs::EnvError::Python { message, .. }
            if message.starts_with("cannot start Python") =>
        {
            Invalid::new("env.python", e.to_string())
        }
        rlcpc_envs::EnvError::UnknownEnv { .. }
        | rlcpc_envs::EnvError::Python { .. }
        | rlcpc_envs::EnvError::Unsupported { .. } => Invalid::new("env.id", e.to_string()),
        rlcpc_envs::EnvError::InvalidOption { key, .. } if key.starts_with("env.") => {
            Invalid::new(key, e.to_string())
        }
        e => Invalid::new("env.options", e.to_string()),
    }
}

/// The name a user types for a command-line value (`fsdd`, `oracle`), for messages.
pub fn user_name<T: clap::ValueEnum>(v: &T) -> String {
    v.to_possible_value()
        .map_or_else(String::new, |p| p.get_name().to_string())
}
