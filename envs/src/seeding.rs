//! The seed of each environment stream.
//!
//! A run with seed `s` resets environment `i` (its index among all of the run's
//! environments, worker blocks in order) with [`stream_seed`]`(s, i)`: SplitMix64 of
//! SplitMix64(`s`) + `i`, the construction of SplitMix64's own stream (Steele, Lea &
//! Flood 2014) started at a point that itself depends on `s` through the mixer. Runs
//! with seeds 1, 2, 3, ... therefore draw their decks, mazes and mine fields from
//! unrelated streams. (Before, environment `i` was reset with `s + i`, so seeds 1–5
//! shared 12 of the `popgym` preset's 16 streams.) Two (seed, index) pairs share a
//! stream only if SplitMix64(s₁) + i₁ = SplitMix64(s₂) + i₂: for indices below 2^20, a
//! chance of about 2^-43 per pair of seeds.

/// SplitMix64's output function (a bijection of `u64`).
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The first-reset seed of environment `index` in a run with seed `run_seed`.
pub fn stream_seed(run_seed: u64, index: u64) -> u64 {
    splitmix64(splitmix64(run_seed).wrapping_add(index))
}
