//! rlcpc: reinforcement learning with contrastive representation learning.
//!
//! This crate is the top of the workspace. It depends on `rlcpc-agents` (the
//! actor–learner, which knows nothing of encoders or CPC) and `rlcpc-envs`
//! (environments, which know nothing of learning); neither depends back on it. Its rooms:
//!
//! - [`config`]: the agent's config, parsed and checked on its own values only (one
//!   [`config::Invalid`] error shape); [`config_show`] prints any config documented.
//! - [`nn`]: the networks and the encoders the agent and the trainers share; [`cpc`]:
//!   the one InfoNCE, for the agent's auxiliary head and every trainer; [`curl`]: the
//!   agent's CURL auxiliary on augmented observations.
//! - [`train`]: the A2C training loop, its [`train::preflight`] (the checks that need the
//!   environment or an encoder file) and checkpoints; [`eval`]: evaluation, recording;
//!   `distributed` (feature `mpi`): the actors on other MPI ranks.
//! - [`run_dir`]: the one run directory of `train` and the trainers (create, refuse,
//!   lock, resume; file names); [`checkpoint`]: safetensors files and their metadata
//!   [`checkpoint::keys`]; [`encoder_file`]: the one reader of every file that holds an
//!   encoder; [`encode`]: an encoder file as a function on plain arrays (what the
//!   Python package runs).
//! - [`data`]: audio, images, text and recorded trajectories; [`pretrain`]: the
//!   standalone trainers, one module per modality (network and minibatches), the
//!   objective chosen by the config; [`probe`]: linear probes of frozen encoders, one
//!   module per modality, above `pretrain`.
//! - [`study`]: pre-registered, resumable comparisons of arms over tasks and seeds,
//!   with fair tuning, paired statistics and a report (`rlcpc study`).
//! - [`metrics`], [`plot`], [`render`], [`bench`], [`par`], [`knn`]: logs, curves,
//!   GIFs, throughput, a parallel map, the weighted kNN classifier of the monitors.
//!
//! Design decision: **the library owns the logic, the binary only the command line.**
//! `src/cli/` (one module per subcommand) is declared from `main.rs`, so nothing here
//! can import it: a command parses its flags, calls the library and prints, so what a
//! user can do from the shell a Rust caller can do with this crate.

pub mod bench;
pub mod checkpoint;
pub mod config;
pub mod config_show;
pub mod cpc;
pub mod cpca;
pub mod curl;
pub mod data;
#[cfg(feature = "mpi")]
pub mod distributed;
pub mod encode;
pub mod encoder_file;
pub mod eval;
pub mod knn;
pub mod metrics;
pub mod nn;
pub mod par;
pub mod plot;
pub mod pretrain;
pub mod probe;
pub mod render;
pub mod run_dir;
pub mod study;
pub mod train;

/// Tells mimalloc never to purge freed memory: candle allocates every op's output anew,
/// and the conv encoder's im2col buffers are hundreds of megabytes, so returned pages
/// came straight back as page faults that the kernel must zero (a third of an RGB
/// training profile). `mi_option_purge_delay` is 15 in mimalloc 2's `mi_option_t`;
/// `MIMALLOC_PURGE_DELAY` in the environment still takes precedence.
pub fn keep_freed_pages() {
    const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets a plain integer option; mimalloc reads it on later frees.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    }
}
