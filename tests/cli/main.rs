//! The `rlcpc` binary: every subcommand on a tiny budget, and bad input. One test binary
//! with a module per subcommand; `support` holds the command builder.

#[path = "../common/mod.rs"]
mod common;
mod support;

mod bench;
mod config;
mod envs;
mod eval;
mod gymnasium;
mod help;
mod pretrain;
mod record;
mod study;
mod train;
mod views;
