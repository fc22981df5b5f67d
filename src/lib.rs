//! rlcpc: reinforcement learning with contrastive representation learning.
//!
//! This crate is the top of the workspace. It depends on `rlcpc-agents` (the
//! actor–learner, which knows nothing of encoders or CPC) and `rlcpc-envs`
//! (environments, which know nothing of learning); neither depends back on it. Its
//! folders are its two sides, the core they share, and what both stand on:
//!
//! - [`rl`]: reinforcement learning. The A2C training loop ([`rl::train`]), the
//!   auxiliary heads on z and c ([`rl::auxiliary`]: CPC, CPC|A, CURL), evaluation and
//!   export, the MPI actors (feature `mpi`), and pre-registered studies ([`rl::study`]).
//! - [`pretrain`] and [`probe`]: representation learning. The standalone trainers, one
//!   module per modality with the objective chosen by the config, and the probes of
//!   frozen encoders (linear, kNN, fine-tuning; [`probe::encode`]: an encoder file as a
//!   function on plain arrays, what the Python package runs).
//! - [`contrastive`]: the losses both sides share. CPC's InfoNCE and its sampling,
//!   NT-Xent and MoCo, the weighted kNN.
//! - [`nn`]: the networks and encoders the agent and the trainers share, with their lean
//!   (host-slice) paths; [`data`]: audio, images, text and recorded trajectories;
//!   [`config`]: the agent's config, parsed and checked on its own values only (one
//!   [`config::Invalid`] error shape), and [`config::show`], any config documented.
//! - Files on disk: [`run_dir`] (the one run directory of `train` and the trainers),
//!   [`checkpoint`] (safetensors files and their [`checkpoint::keys`]),
//!   [`encoder_file`] (the one reader of every file that holds an encoder), [`metrics`].
//! - [`console`]: standard output and error that a closed pipe cannot crash (every
//!   line rlcpc prints goes through its `outln!` / `errln!`).
//! - Tools: [`bench`] (throughput and the roofline; [`bench::suite`], the command's
//!   cases), [`plot`] (curves), [`par`] (a parallel map).
//!
//! - [`cli`]: the command line, one module per subcommand; the `rlcpc` binary
//!   (`src/main.rs`) and the Python package's `python -m rlcpc` both run it.
//!
//! Design decision: **the library owns the logic, the command line only parses and
//! prints.** [`cli`] is a leaf: a command parses its flags, calls the library and
//! prints, and no other module imports it (`tests/imports.rs` checks), so what a user
//! can do from the shell a Rust caller can do with this crate. It is compiled once, here,
//! for both front ends.

// Every line printed goes through `console` (a closed pipe must not panic a run).
#![warn(clippy::print_stdout, clippy::print_stderr)]

pub mod bench;
pub mod checkpoint;
pub mod cli;
pub mod config;
pub mod console;
pub mod contrastive;
pub mod data;
pub mod encoder_file;
pub mod metrics;
pub mod nn;
pub mod par;
pub mod plot;
pub mod pretrain;
pub mod probe;
pub mod rl;
pub mod run_dir;

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
