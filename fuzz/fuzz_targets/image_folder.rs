//! PNG and JPEG files in class folders (the image trainers' folder reader).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let Some((&kind, bytes)) = data.split_first() else {
        return;
    };
    let dir = common::fresh();
    let name = if kind % 2 == 0 { "a/x.png" } else { "a/x.jpg" };
    common::file(name, bytes);
    let _ = rlcpc::data::images::load_image_folder(&dir);
});
