//! `rlcpc export-encoder`: one call of [`crate::rl::eval::export_encoder`].

use std::path::PathBuf;

use anyhow::Result;

#[derive(clap::Args)]
pub struct Args {
    /// An agent checkpoint (or its run directory), or a trainer's checkpoint.
    #[arg(long, value_name = "PATH")]
    checkpoint: PathBuf,
    /// The encoder file to write (its folder is created; an existing file is refused
    /// unless --force).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Replace an existing --out file.
    #[arg(long)]
    force: bool,
}

pub fn run(args: Args) -> Result<()> {
    let Args {
        checkpoint,
        out,
        force,
    } = args;
    let spec = crate::rl::eval::export_encoder(&checkpoint, &out, force)?;
    crate::outln!(
        "wrote {} ({})",
        out.display(),
        serde_json::to_string(&spec)?
    );
    Ok(())
}
