//! MNIST-style IDX files, raw or gzipped, and a whole IDX set (images and labels).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rlcpc::data::images::{load_idx_dir, read_idx, Part};

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let Some((&kind, bytes)) = data.split_first() else {
        return;
    };
    let _ = read_idx(&common::file("x-idx3-ubyte", bytes));
    if kind % 2 == 1 {
        // The bytes as a whole set: the images file, and labels from its tail.
        let dir = common::fresh();
        let (a, b) = bytes.split_at(bytes.len() / 2);
        common::file("train-images-idx3-ubyte", a);
        common::file("train-labels-idx1-ubyte", b);
        let _ = load_idx_dir(&dir, Part::Train);
    }
});
