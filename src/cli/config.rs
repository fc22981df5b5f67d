//! `rlcpc config show|list`: the documented configs ([`crate::config::show`]).

use std::path::PathBuf;

use anyhow::Result;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Print the resolved config, each key with its documentation, as TOML that
    /// `--config` reads back.
    Show {
        /// A built-in preset (`rlcpc config list`) or a config file [default: the
        /// `train` default, cartpole].
        #[arg(value_name = "PRESET|FILE")]
        name: Option<PathBuf>,
        /// Override a value first, as for `train` (repeatable).
        #[arg(long = "set", value_name = "KEY.PATH=VALUE")]
        overrides: Vec<String>,
    },
    /// List the built-in presets and the command that reads each.
    List,
}

pub fn run(action: Command) -> Result<()> {
    match action {
        Command::Show { name, overrides } => {
            let (text, cmd) = crate::config::show::show(name.as_deref(), &overrides)?;
            crate::outln!(
                "# Resolved config for `rlcpc {cmd}`{}; every key with its documentation.\n",
                name.as_ref()
                    .map_or(String::new(), |n| format!(" ({})", n.display()))
            );
            crate::out!("{text}");
        }
        Command::List => {
            crate::outln!("{:<28} read by", "preset");
            for (name, cmd) in crate::config::show::presets() {
                crate::outln!("{name:<28} rlcpc {cmd} --config {name}");
            }
        }
    }
    Ok(())
}
