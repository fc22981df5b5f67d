//! `rlcpc config show`: a resolved config (a preset or a file, with `--set` applied)
//! printed as TOML with every key's documentation, taken from the doc comments of the
//! serde structs at build time (`build.rs`).

use std::path::Path;

use anyhow::{bail, Result};

use crate::pretrain::TrainerConfig;

include!(concat!(env!("OUT_DIR"), "/config_docs.rs"));

type Fields = &'static [FieldDoc];

/// The fields of struct `name`, preferring the one defined in `file`.
fn fields(file: &str, name: &str) -> Option<Fields> {
    STRUCTS
        .iter()
        .find(|(f, n, _)| *f == file && *n == name)
        .or_else(|| STRUCTS.iter().find(|(_, n, _)| *n == name))
        .map(|s| s.2)
}

/// The file that defines struct `name` (as `fields` resolves it from `file`).
fn file_of(file: &str, name: &str) -> &'static str {
    STRUCTS
        .iter()
        .find(|(f, n, _)| *f == file && *n == name)
        .or_else(|| STRUCTS.iter().find(|(_, n, _)| *n == name))
        .map_or("", |s| s.0)
}

/// A doc comment as plain text: an intra-doc link (`` [`super::x::Name`] ``) becomes
/// the name in backticks.
fn plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("[`") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        match after.find("`]") {
            Some(j) => {
                let path = &after[..j];
                out.push('`');
                out.push_str(path.rsplit("::").next().unwrap_or(path));
                out.push('`');
                rest = &after[j + 2..];
            }
            None => {
                out.push_str("[`");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// `text` as `# ` comment lines of at most ~88 characters.
fn comment(text: &str, out: &mut String) {
    let text = plain(text);
    let mut line = String::from("#");
    for w in text.split_whitespace() {
        if line.len() + w.len() > 88 {
            out.push_str(&line);
            out.push('\n');
            line = String::from("#");
        }
        line.push(' ');
        line.push_str(w);
    }
    if line.len() > 1 {
        out.push_str(&line);
        out.push('\n');
    }
}

/// Sections read into a tagged enum (`kind` chooses the variant): the structs of its
/// variants, whose fields are the section's keys, and the doc of `kind` itself.
const TAGGED: &[(&str, &[&str], FieldDoc)] = &[(
    "AuxConfig",
    &["CpcHeadConfig", "CpcaHeadConfig", "CurlHeadConfig"],
    (
        "kind",
        "",
        "The head: `cpc`, `cpca`, `curl` or `none` (`--aux`). Each takes only its own keys; setting `kind` with `--set` or `--aux` keeps the keys the new head also takes and gives it its defaults for the rest.",
    ),
)];

fn write_table(table: &toml::Table, path: &str, file: &str, ty: &str, out: &mut String) {
    let docs: Vec<&FieldDoc> = match TAGGED.iter().find(|t| t.0 == ty) {
        Some((_, variants, kind)) => std::iter::once(kind)
            .chain(variants.iter().flat_map(|v| fields(file, v).unwrap_or(&[])))
            .collect(),
        None => fields(file, ty).unwrap_or(&[]).iter().collect(),
    };
    let doc = |k: &str| docs.iter().copied().find(|f| f.0 == k);
    for (k, v) in table {
        if v.is_table() {
            continue;
        }
        if let Some((_, _, d)) = doc(k) {
            comment(d, out);
        }
        out.push_str(&format!("{k} = {v}\n"));
    }
    for (k, v) in table {
        let Some(sub) = v.as_table() else { continue };
        let name = if path.is_empty() {
            k.clone()
        } else {
            format!("{path}.{k}")
        };
        out.push('\n');
        let (sub_ty, sub_file) = match doc(k) {
            Some((_, t, d)) => {
                comment(d, out);
                (*t, file_of(file, t))
            }
            None => ("", ""),
        };
        out.push_str(&format!("[{name}]\n"));
        write_table(sub, &name, sub_file, sub_ty, out);
    }
}

/// `toml_text` (a resolved config of struct `ty` defined in `file`) with each key's doc.
pub fn annotate(toml_text: &str, file: &str, ty: &str) -> Result<String> {
    let table: toml::Table = toml::from_str(toml_text)?;
    let mut out = String::new();
    write_table(&table, "", file, ty, &mut out);
    Ok(out)
}

/// The kinds of config, by the command that reads them.
const KINDS: &[(&str, &str, &str)] = &[
    ("train", "src/config/mod.rs", "Config"),
    ("pretrain audio", "src/pretrain/audio.rs", "AudioCpcConfig"),
    ("pretrain image", "src/pretrain/image.rs", "ImageCpcConfig"),
    ("pretrain text", "src/pretrain/text.rs", "TextCpcConfig"),
    (
        "pretrain frames",
        "src/pretrain/frames.rs",
        "FramesCpcConfig",
    ),
    ("pretrain image", "src/pretrain/views.rs", "ViewsConfig"),
];

fn resolved(kind: usize, path: Option<&Path>, overrides: &[String]) -> Result<String> {
    use crate::pretrain::{audio, frames, image, text, views};
    Ok(match kind {
        0 => crate::config::Config::load(path, overrides)?.to_toml(),
        1 => audio::AudioCpcConfig::load(path, overrides)?.to_toml(),
        2 => image::ImageCpcConfig::load(path, overrides)?.to_toml(),
        3 => text::TextCpcConfig::load(path, overrides)?.to_toml(),
        4 => frames::FramesCpcConfig::load(path, overrides)?.to_toml(),
        _ => views::ViewsConfig::load(path, overrides)?.to_toml(),
    })
}

/// Every built-in preset: `(name, the command that reads it)`.
pub fn presets() -> Vec<(&'static str, &'static str)> {
    preset_kinds()
        .into_iter()
        .map(|(n, k)| (n, KINDS[k].0))
        .collect()
}

/// Every built-in preset with the index of its kind in `KINDS`.
fn preset_kinds() -> Vec<(&'static str, usize)> {
    use crate::pretrain::{audio, frames, image, text, views};
    let mut v: Vec<(&str, usize)> = Vec::new();
    let lists: [&[(&str, &str)]; 6] = [
        crate::config::PRESETS,
        audio::AudioCpcConfig::PRESETS,
        image::ImageCpcConfig::PRESETS,
        text::TextCpcConfig::PRESETS,
        frames::FramesCpcConfig::PRESETS,
        views::ViewsConfig::PRESETS,
    ];
    for (k, list) in lists.iter().enumerate() {
        v.extend(list.iter().map(|p| (p.0, k)));
    }
    v
}

/// The resolved config of a preset name or a file (none: the `train` default) with
/// `overrides`, each key preceded by its documentation; and the command that reads it.
pub fn show(name: Option<&Path>, overrides: &[String]) -> Result<(String, &'static str)> {
    let kind = match name {
        None => 0,
        Some(p) if !p.exists() => {
            let n = p.to_string_lossy();
            let n = n.trim_start_matches("configs/").trim_end_matches(".toml");
            match preset_kinds().iter().find(|(pn, _)| *pn == n) {
                Some((_, k)) => *k,
                None => bail!(
                    "'{}' is neither a file nor a built-in preset; the presets are: {}",
                    p.display(),
                    presets()
                        .iter()
                        .map(|(n, c)| format!("{n} ({c})"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }
        }
        // A file: the first kind of config it loads as.
        Some(p) => {
            let mut errors = Vec::new();
            let mut found = None;
            for (k, kind) in KINDS.iter().enumerate() {
                match resolved(k, Some(p), overrides) {
                    Ok(_) => {
                        found = Some(k);
                        break;
                    }
                    Err(e) => errors.push(format!("as a `{}` config: {e:#}", kind.0)),
                }
            }
            match found {
                Some(k) => k,
                None => bail!(
                    "'{}' is not a valid config:\n  {}",
                    p.display(),
                    errors.join("\n  ")
                ),
            }
        }
    };
    let text = resolved(kind, name, overrides)?;
    let (cmd, file, ty) = KINDS[kind];
    Ok((annotate(&text, file, ty)?, cmd))
}
