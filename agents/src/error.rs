//! Errors of the actor–learner.

/// Errors of this crate; each names what went wrong and where.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// A tensor operation failed in candle.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// An environment failed (stepping, or restoring its saved state).
    #[error(transparent)]
    Env(#[from] rlcpc_envs::EnvError),
    /// A configuration value breaks its rule (from the configs' `validate`).
    #[error("invalid value for '{key}': {value} ({reason})")]
    Config {
        /// The dotted config key, e.g. `algo.gamma`.
        key: &'static str,
        /// The rejected value, as displayed.
        value: String,
        /// The rule it breaks, e.g. `must be in (0, 1]`.
        reason: &'static str,
    },
    /// A loss term or the gradient norm was NaN or infinite; the update was not applied.
    #[error("non-finite {term} ({value}) at update {update}; training stopped, the last checkpoint is untouched")]
    NonFinite {
        /// Number of the update that failed (updates made so far + 1).
        update: u64,
        /// Which term: `policy_loss`, `value_loss`, `entropy`, `total_loss`, `aux_loss` or
        /// `gradient norm`.
        term: String,
        /// The non-finite value.
        value: f64,
    },
    /// An actor thread failed, could not be spawned or has exited.
    #[error("actor worker {worker} failed: {message}")]
    Worker {
        /// Index of the worker; `usize::MAX` when it is not known which one exited.
        worker: usize,
        /// Its error or panic message, or what the runner saw.
        message: String,
    },
    /// The actors as a whole failed, e.g. a distributed run's rank was lost; says how.
    #[error("{0}")]
    Actors(String),
    /// A [`crate::ParamSnapshot`] lacks the named parameter or has it with the wrong shape.
    #[error("parameter snapshot lacks '{0}' or has the wrong size")]
    Snapshot(String),
    /// Saved state (actor, optimiser, generator) cannot be restored; says why.
    #[error("cannot restore state: {0}")]
    State(String),
}
