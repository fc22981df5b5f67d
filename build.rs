//! Collects the doc comment of every field of the config structs, so that
//! `rlcpc config show` prints each key with its documentation (the serde structs are the
//! one source of both; nothing is written twice). Also sets `cfg(rlcpc_gymnasium)` where
//! a Python with Gymnasium is found, so that the tests of `gymnasium:` environments are
//! reported as ignored (with the reason) rather than passed where there is none.

use std::fmt::Write;

/// The files that define config structs, relative to the crate root.
const FILES: &[&str] = &[
    "src/config/mod.rs",
    "src/config/auxiliary.rs",
    "agents/src/config.rs",
    "envs/src/config.rs",
    "src/pretrain/mod.rs",
    "src/pretrain/audio.rs",
    "src/pretrain/image.rs",
    "src/pretrain/text.rs",
    "src/pretrain/frames.rs",
    "src/data/images.rs",
    "src/nn/patches.rs",
    "src/pretrain/views.rs",
    "src/data/augment.rs",
];

/// `(field, type, doc)` of one struct field.
type Field = (String, String, String);

fn main() {
    let mut out = String::from(
        "/// `(field, type, doc)`.\n\
         pub type FieldDoc = (&'static str, &'static str, &'static str);\n\
         /// `(file, struct, fields)` of every struct with named public fields.\n\
         pub const STRUCTS: &[(&str, &str, &[FieldDoc])] = &[\n",
    );
    for file in FILES {
        println!("cargo:rerun-if-changed={file}");
        // A listed file that moved would drop its keys' docs silently: refuse instead.
        let text = std::fs::read_to_string(file)
            .unwrap_or_else(|e| panic!("build.rs: config structs file {file}: {e}"));
        let mut current: Option<(String, Vec<Field>)> = None;
        let mut doc: Vec<String> = Vec::new();
        for line in text.lines() {
            let t = line.trim();
            if let Some(rest) = line.strip_prefix("pub struct ") {
                if let Some(name) = rest.strip_suffix(" {") {
                    current = Some((name.trim().to_string(), Vec::new()));
                }
                doc.clear();
                continue;
            }
            let Some((_, fields)) = current.as_mut() else {
                continue;
            };
            if line.starts_with('}') {
                let (name, fields) = current.take().expect("in a struct");
                if !fields.is_empty() {
                    write!(out, "    ({file:?}, {name:?}, &[").unwrap();
                    for (f, ty, d) in fields {
                        write!(out, "({f:?}, {ty:?}, {d:?}), ").unwrap();
                    }
                    out.push_str("]),\n");
                }
                doc.clear();
                continue;
            }
            if let Some(d) = t.strip_prefix("///") {
                doc.push(d.trim().to_string());
            } else if let Some(rest) = t.strip_prefix("pub ") {
                if let Some((field, ty)) = rest.split_once(':') {
                    let ty = ty.trim().trim_end_matches(',');
                    // `Option<a::b::T>` → `T`: the struct a nested table is read into.
                    let inner = ty
                        .trim_start_matches("Option<")
                        .trim_end_matches('>')
                        .rsplit("::")
                        .next()
                        .unwrap_or(ty);
                    fields.push((field.trim().to_string(), inner.to_string(), doc.join(" ")));
                }
                doc.clear();
            } else if !t.starts_with("#[") {
                doc.clear();
            }
        }
    }
    out.push_str("];\n");
    let dest = std::path::Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"))
        .join("config_docs.rs");
    std::fs::write(dest, out).expect("write config_docs.rs");
    gymnasium_cfg();
}

/// `cfg(rlcpc_gymnasium)` and `RLCPC_GYMNASIUM_PYTHON` (the tests' Python, read by
/// `tests/common`'s `gymnasium_python`) when `RLCPC_TEST_PYTHON`, else the active virtual
/// environment's Python, else `python3`, imports Gymnasium.
fn gymnasium_cfg() {
    println!("cargo:rustc-check-cfg=cfg(rlcpc_gymnasium)");
    for var in ["RLCPC_TEST_PYTHON", "VIRTUAL_ENV"] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    let python = std::env::var("RLCPC_TEST_PYTHON")
        .ok()
        .or_else(|| {
            std::env::var("VIRTUAL_ENV")
                .ok()
                .map(|v| format!("{v}/bin/python"))
        })
        .unwrap_or_else(|| "python3".into());
    let found = std::process::Command::new(&python)
        .args(["-c", "import gymnasium"])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if found {
        println!("cargo:rustc-cfg=rlcpc_gymnasium");
        println!("cargo:rustc-env=RLCPC_GYMNASIUM_PYTHON={python}");
    }
}
