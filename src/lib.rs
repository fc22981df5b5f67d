//! rlcpc: reinforcement learning with contrastive representation learning.
//!
//! This crate is the top of the workspace: it holds the configuration ([`config`]), the
//! networks and shared encoders ([`nn`]), the CPC / InfoNCE machinery ([`cpc`]),
//! checkpoints ([`checkpoint`]), metrics ([`metrics`]), the training loop ([`train`]),
//! evaluation and benchmarks, and the `rlcpc` binary. It depends on `rlcpc-agents`
//! (the actor–learner, which knows nothing of encoders or CPC) and `rlcpc-envs`
//! (environments, which know nothing of learning); neither depends back on it.

pub mod bench;
pub mod checkpoint;
pub mod config;
pub mod config_show;
pub mod cpc;
pub mod data;
pub mod encoder_file;
pub mod eval;
pub mod metrics;
pub mod nn;
pub mod par;
pub mod plot;
pub mod pretrain;
pub mod probe;
pub mod render;
pub mod run_dir;
pub mod train;
