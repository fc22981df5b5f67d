//! CIFAR-10 binary batches and their class names.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rlcpc::data::images::{load_cifar10_dir, Part};

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let dir = common::fresh();
    // Up to the first 0xff: the class names file; the rest: the test batch.
    let (meta, batch) = match data.iter().position(|&b| b == 0xff) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&[][..], data),
    };
    if !meta.is_empty() {
        common::file("batches.meta.txt", meta);
    }
    common::file("test_batch.bin", batch);
    let _ = load_cifar10_dir(&dir, Part::Test);
});
