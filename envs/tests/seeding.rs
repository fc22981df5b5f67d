//! Environment streams of runs with different seeds are independent: environment i of a
//! run with seed s starts from `stream_seed(s, i)`, never from a stream that another
//! seed's run also uses (before, it was `s + i`, and seeds 1 and 2 shared 15 of 16).

use rlcpc_envs::{make, stream_seed, EnvConfig, VecEnv};

/// Observation traces of `n` POPGym RepeatPrevious environments reset as a run with
/// `seed` resets them (indices `first..first + n`), under a fixed action sequence.
fn traces(seed: u64, first: usize, n: usize) -> Vec<Vec<f32>> {
    let cfg = EnvConfig::new("popgym/RepeatPreviousEasy");
    let envs = (0..n).map(|_| make(&cfg).unwrap()).collect();
    let mut v = VecEnv::new(envs).unwrap();
    v.reset(seed, first);
    let d = v.obs_dim();
    let mut out: Vec<Vec<f32>> = (0..n)
        .map(|i| v.obs()[i * d..(i + 1) * d].to_vec())
        .collect();
    for t in 0..120 {
        let actions = vec![t % 4; n];
        v.step(&actions).unwrap();
        for (i, tr) in out.iter_mut().enumerate() {
            tr.extend_from_slice(&v.obs()[i * d..(i + 1) * d]);
        }
    }
    out
}

#[test]
fn runs_with_consecutive_seeds_share_no_environment_stream() {
    // The `popgym` preset: 16 environments. Under `seed + i`, environment i + 1 of seed 1
    // replayed environment i of seed 2 card for card.
    let a = traces(1, 0, 16);
    let b = traces(2, 0, 16);
    for (i, ta) in a.iter().enumerate() {
        for (j, tb) in b.iter().enumerate() {
            assert_ne!(
                ta, tb,
                "seed 1's environment {i} replays seed 2's environment {j}"
            );
        }
    }
    // Within a run, too, every environment has its own stream.
    for i in 0..16 {
        for j in i + 1..16 {
            assert_ne!(
                a[i], a[j],
                "environments {i} and {j} of seed 1 share a stream"
            );
        }
    }
}

#[test]
fn a_workers_block_continues_the_runs_indices() {
    // Worker 1 of two holds environments 8..16: the same streams as a single worker's.
    let all = traces(7, 0, 16);
    let second = traces(7, 8, 8);
    assert_eq!(&all[8..], &second[..]);
}

#[test]
fn stream_seeds_are_distinct_over_many_seeds_and_indices() {
    let mut seen = std::collections::HashSet::new();
    for s in 0..2000u64 {
        for i in 0..64u64 {
            assert!(
                seen.insert(stream_seed(s, i)),
                "seed {s} index {i} repeats a stream"
            );
        }
    }
    // Deterministic: a value pinned here catches an accidental change of the mixer
    // (which would silently change every seeded run).
    assert_eq!(stream_seed(1, 0), stream_seed(1, 0));
    assert_eq!(rlcpc_envs::seeding::splitmix64(0), 0xE220_A839_7B1D_CDAF);
}
