//! Datasets read from disk for the standalone trainers and probes: audio corpora
//! ([`audio`]), images ([`images`]), text ([`text`]) and trajectories recorded from environments ([`trajectories`]).
//! Nothing here downloads; every loader reads standard formats and reports each file
//! it cannot use by path.

pub mod audio;
pub mod augment;
pub mod images;
pub mod mfcc;
pub mod text;
pub mod trajectories;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rlcpc_envs::SeededRng;
use serde::{Deserialize, Serialize};

/// How a held-out test set is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum SplitBy {
    /// Random utterances (sequences) held out; every speaker is seen in training.
    Utterance,
    /// Whole speakers held out: the test speakers are never seen in training.
    Speaker,
}

/// Indices `(train, test)` of `n` items with `labels[i]` the group of item i (speaker),
/// holding out about `test_fraction` of the items (`Utterance`) or of the groups
/// (`Speaker`, at least one group each side). Deterministic in `seed`.
pub fn split(
    groups: &[&str],
    by: SplitBy,
    test_fraction: f64,
    seed: u64,
) -> Result<(Vec<usize>, Vec<usize>), String> {
    if !(test_fraction > 0.0 && test_fraction < 1.0) {
        return Err(format!(
            "test fraction must be in (0, 1), got {test_fraction}"
        ));
    }
    let n = groups.len();
    let mut rng = SeededRng::seed_from_u64(seed ^ 0x5B11_7000);
    match by {
        SplitBy::Utterance => {
            let mut idx: Vec<usize> = (0..n).collect();
            idx.shuffle(&mut rng);
            let n_test = ((n as f64 * test_fraction).round() as usize).clamp(1, n.max(2) - 1);
            if n < 2 {
                return Err(format!("cannot split {n} item(s) into train and test"));
            }
            let mut test = idx[..n_test].to_vec();
            let mut train = idx[n_test..].to_vec();
            test.sort_unstable();
            train.sort_unstable();
            Ok((train, test))
        }
        SplitBy::Speaker => {
            let mut names: Vec<&str> = groups.to_vec();
            names.sort_unstable();
            names.dedup();
            if names.len() < 2 {
                return Err(format!(
                    "a split by speaker needs at least 2 speakers, the data has {}",
                    names.len()
                ));
            }
            names.shuffle(&mut rng);
            let n_test =
                ((names.len() as f64 * test_fraction).round() as usize).clamp(1, names.len() - 1);
            let held: Vec<&str> = names[..n_test].to_vec();
            let (mut train, mut test) = (Vec::new(), Vec::new());
            for (i, g) in groups.iter().enumerate() {
                if held.contains(g) {
                    test.push(i);
                } else {
                    train.push(i);
                }
            }
            Ok((train, test))
        }
    }
}

/// Class names of a label column and each item's class index (classes sorted by name).
pub fn encode_labels(values: &[&str]) -> (Vec<String>, Vec<usize>) {
    let mut map = BTreeMap::new();
    for v in values {
        map.entry(v.to_string()).or_insert(0usize);
    }
    for (i, v) in map.values_mut().enumerate() {
        *v = i;
    }
    let idx = values.iter().map(|v| map[*v]).collect();
    (map.into_keys().collect(), idx)
}

/// Every file under `root` that `keep` accepts, as paths relative to `root`, sorted.
/// Directory symlinks are followed, but each directory is listed once (by its canonical
/// path), so symlink cycles end and a linked folder is not read twice; files reached by
/// two paths are kept once.
pub fn walk_files(root: &Path, keep: impl Fn(&Path) -> bool) -> std::io::Result<Vec<PathBuf>> {
    let mut seen_dirs = HashSet::new();
    let mut seen_files = HashSet::new();
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        if !seen_dirs.insert(std::fs::canonicalize(&dir)?) {
            continue;
        }
        let mut entries: Vec<PathBuf> = std::fs::read_dir(&dir)?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()?;
        entries.sort();
        for path in entries {
            if path.is_dir() {
                stack.push(path);
            } else if keep(&path) {
                // A dangling link or an unreadable entry is kept for the loader to report.
                let id = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
                if seen_files.insert(id) {
                    out.push(path.strip_prefix(root).unwrap_or(&path).to_path_buf());
                }
            }
        }
    }
    out.sort();
    Ok(out)
}
