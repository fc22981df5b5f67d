//! Errors of the actor–learner.

/// Errors of this crate; each names what went wrong and where.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    #[error(transparent)]
    Env(#[from] rlcpc_envs::EnvError),
    #[error("invalid value for '{key}': {value} ({reason})")]
    Config {
        key: &'static str,
        value: String,
        reason: &'static str,
    },
    #[error("non-finite {term} ({value}) at update {update}; training stopped, the last checkpoint is untouched")]
    NonFinite {
        update: u64,
        term: String,
        value: f64,
    },
    #[error("actor worker {worker} failed: {message}")]
    Worker { worker: usize, message: String },
    #[error("parameter snapshot lacks '{0}' or has the wrong size")]
    Snapshot(String),
    #[error("cannot restore state: {0}")]
    State(String),
}
