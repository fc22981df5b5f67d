//! WAV and FLAC decoding (the audio trainers' and probes' reader).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let Some((&kind, bytes)) = data.split_first() else {
        return;
    };
    let name = if kind % 2 == 0 { "a.wav" } else { "a.flac" };
    let _ = rlcpc::data::audio::decode(&common::file(name, bytes));
});
