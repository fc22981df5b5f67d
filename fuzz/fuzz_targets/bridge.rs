//! The Gymnasium bridge's first line: the spaces of a Python environment as JSON.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(line) = std::str::from_utf8(data) else {
        return;
    };
    let _ = rlcpc_envs::gymnasium::parse_hello("gymnasium:Fuzz-v0", "python", line);
});
