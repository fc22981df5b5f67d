//! A config file and a `--set` override: TOML, serde, `Config::validate` (which builds
//! one environment with the config's options).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // A `gymnasium:` id starts Python: the bridge has a target of its own.
    if text.contains("gymnasium") || text.contains("python") {
        return;
    }
    // The first line is a `--set` override, the rest a config file.
    let (set, file) = text.split_once('\n').unwrap_or(("", text));
    if let Ok(mut table) = toml::from_str::<toml::Table>(file) {
        let _ = rlcpc::config::apply_override(&mut table, set);
    }
    let _ = rlcpc::config::Config::from_toml(file, "fuzz.toml");
});
