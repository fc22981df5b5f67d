#![allow(dead_code)] // each target uses what it needs
//! What the targets share: a scratch directory of this process for the readers that
//! take paths.

use std::path::PathBuf;

/// `name` in this process's scratch directory (created on first use), holding `bytes`.
pub fn file(name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir().join(name);
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).expect("scratch directory");
    }
    std::fs::write(&p, bytes).expect("scratch file");
    p
}

/// This process's scratch directory, emptied.
pub fn fresh() -> PathBuf {
    let d = dir();
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("scratch directory");
    d
}

fn dir() -> PathBuf {
    std::env::temp_dir().join(format!("rlcpc-fuzz-{}", std::process::id()))
}
