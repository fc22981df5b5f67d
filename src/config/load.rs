//! The one loading pipeline of every config, the agent's and each trainer's: the file,
//! or the built-in preset of that name (the first preset when none is given), parsed as
//! TOML, then the `--set key.path=value` overrides, then the typed struct. What comes
//! after (resolving dependent settings, validating) is each config's own.

use std::path::Path;

use serde::de::DeserializeOwned;

use super::ConfigError;

/// The config at `path` (or among `presets`) with `overrides` applied, as `T`, and the
/// origin that errors name (`configs/NAME.toml (built in)` or the file's path).
pub fn load<T: DeserializeOwned>(
    path: Option<&Path>,
    overrides: &[String],
    presets: &[(&str, &str)],
) -> Result<(T, String), ConfigError> {
    let (text, origin) = match path {
        None => (
            presets[0].1.to_string(),
            format!("configs/{}.toml (built in)", presets[0].0),
        ),
        Some(p) => match preset(p, presets) {
            Some((name, text)) if !p.exists() => {
                (text.to_string(), format!("configs/{name}.toml (built in)"))
            }
            _ => {
                let text =
                    crate::checkpoint::read_config_text(p).map_err(|source| ConfigError::Read {
                        path: p.display().to_string(),
                        source,
                    })?;
                (text, p.display().to_string())
            }
        },
    };
    let mut table: toml::Table = toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: origin.clone(),
        message: e.to_string(),
    })?;
    for o in overrides {
        apply_override(&mut table, o)?;
    }
    let cfg = from_table(table, &origin)?;
    Ok((cfg, origin))
}

/// `table` as `T`; errors name `origin`.
pub fn from_table<T: DeserializeOwned>(table: toml::Table, origin: &str) -> Result<T, ConfigError> {
    T::deserialize(toml::Value::Table(table)).map_err(|e| ConfigError::Parse {
        path: origin.into(),
        message: e.to_string().trim().to_string(),
    })
}

/// The built-in preset among `presets` that a path names (`cartpole`,
/// `configs/cartpole.toml`, ...), if any.
fn preset<'p>(p: &Path, presets: &'p [(&'p str, &'p str)]) -> Option<(&'p str, &'p str)> {
    let name = p
        .to_str()?
        .trim_start_matches("configs/")
        .trim_end_matches(".toml");
    presets.iter().find(|(n, _)| *n == name).copied()
}

/// Applies one `a.b.c=value` override to the TOML table.
pub fn apply_override(table: &mut toml::Table, arg: &str) -> Result<(), ConfigError> {
    let err = |reason: &str| ConfigError::Override {
        arg: arg.into(),
        reason: reason.into(),
    };
    let (path, raw) = arg
        .split_once('=')
        .ok_or_else(|| err("expected key.path=value"))?;
    let keys = key_path(path)
        .ok_or_else(|| err("expected key.path=value (TOML keys, e.g. env.options.\"name\")"))?;
    // Parse the value as TOML (numbers, booleans, arrays, quoted strings); else a bare string.
    let value = match toml::from_str::<toml::Table>(&format!("v = {raw}")) {
        Ok(mut t) if t.len() == 1 => t.remove("v"),
        // `5\nrun.seed=3`: a second line would be dropped without a word.
        Ok(_) => return Err(err("one value per --set (the value holds more lines)")),
        Err(_) if raw.contains('\n') => {
            return Err(err("one value per --set (the value holds more lines)"))
        }
        Err(_) => None,
    }
    .unwrap_or_else(|| toml::Value::String(raw.trim().to_string()));
    let mut cur = table;
    for k in &keys[..keys.len() - 1] {
        cur = cur
            .entry(k.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .ok_or_else(|| err(&format!("'{k}' is not a table")))?;
    }
    cur.insert(keys[keys.len() - 1].clone(), value);
    Ok(())
}

/// The keys of a dotted TOML key path (`run.total_steps`, `env.options."日本"`), read as
/// TOML reads them (quoted keys unquoted); `None` for an empty or malformed path.
fn key_path(path: &str) -> Option<Vec<String>> {
    let table = toml::from_str::<toml::Table>(&format!("{} = 0", path.trim())).ok()?;
    let mut keys = Vec::new();
    let mut cur = &table;
    loop {
        let (k, v) = cur.iter().next().filter(|_| cur.len() == 1)?;
        keys.push(k.clone());
        match v {
            toml::Value::Table(t) => cur = t,
            _ => return Some(keys),
        }
    }
}
