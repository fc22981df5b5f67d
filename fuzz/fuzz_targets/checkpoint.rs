//! rlcpc's safetensors files: a checkpoint read for `eval` (metadata, config, network
//! spec, parameters), an encoder file, and a recording of trajectories.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let Some((&kind, bytes)) = data.split_first() else {
        return;
    };
    let path = common::file("run/checkpoint.safetensors", bytes);
    let _ = rlcpc::checkpoint::Loaded::from_bytes(bytes, &path, "checkpoint");
    match kind % 3 {
        0 => {
            let _ = rlcpc::rl::eval::TrainedPolicy::load(&path);
        }
        1 => {
            let _ = rlcpc::encoder_file::EncoderFile::read(&path);
        }
        _ => {
            let dir = common::fresh();
            common::file(rlcpc::data::trajectories::FILE, bytes);
            let _ = rlcpc::data::trajectories::Trajectories::load(&dir);
        }
    }
});
