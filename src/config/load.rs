//! The one loading pipeline of every config, the agent's and each trainer's: the file,
//! or the built-in preset of that name (the first preset when none is given), parsed as
//! TOML, then the `--set key.path=value` overrides, then the typed struct. What comes
//! after (resolving dependent settings, validating) is each config's own. A section
//! chosen by its `kind` key ([`Tagged`], e.g. `[aux]`) takes that kind's keys only.

use std::path::Path;

use serde::de::DeserializeOwned;

use super::ConfigError;

/// A section whose `kind` key chooses which other keys it takes (`[aux]`).
pub struct Tagged {
    /// The section's name.
    pub section: &'static str,
    /// The kind of a section that names none.
    pub default_kind: &'static str,
    /// Every kind, for messages.
    pub kinds: &'static [&'static str],
    /// The keys a kind takes besides `kind`; `None` for a kind that does not exist
    /// (serde then names the kinds that do).
    pub keys: fn(&str) -> Option<Vec<String>>,
    /// The keys that the format before the tagged one wrote whatever the kind (`kind`
    /// aside), in the order versions added them; each version wrote the prefix of
    /// `legacy_versions`' length. A section with exactly one of those key sets (and
    /// perhaps keys of `legacy_optional`) was written by an older rlcpc (a run
    /// directory's `config.toml`, a checkpoint), and keeps its kind's keys without a word.
    pub legacy: &'static [&'static str],
    /// The length of each version's prefix of `legacy`.
    pub legacy_versions: &'static [usize],
    /// Keys that the older format wrote only away from their defaults.
    pub legacy_optional: &'static [&'static str],
}

impl Tagged {
    /// The kind `table` names (the section's own `kind`, else the default).
    fn kind<'t>(&self, table: &'t toml::Table) -> Option<&'t str> {
        match table.get(self.section)?.as_table()?.get("kind") {
            Some(v) => v.as_str(),
            None => Some(self.default_kind),
        }
    }

    /// Drops the section's keys that its kind does not take, except those in `keep`.
    fn retain(&self, table: &mut toml::Table, keep: &[&str]) {
        let Some(keys) = self.kind(table).and_then(|k| (self.keys)(k)) else {
            return;
        };
        if let Some(s) = table.get_mut(self.section).and_then(|v| v.as_table_mut()) {
            s.retain(|k, _| k == "kind" || keys.iter().any(|x| x == k) || keep.contains(&k));
        }
    }

    /// A section written by an older rlcpc keeps its kind's keys.
    fn upgrade(&self, table: &mut toml::Table) {
        let old = table
            .get(self.section)
            .and_then(|v| v.as_table())
            .is_some_and(|s| {
                let keys = || {
                    s.keys()
                        .filter(|k| *k != "kind" && !self.legacy_optional.contains(&k.as_str()))
                };
                self.legacy_versions.iter().any(|&n| {
                    let v = &self.legacy[..n];
                    keys().count() == n && keys().all(|k| v.contains(&k.as_str()))
                })
            });
        if old {
            self.retain(table, &[]);
        }
    }

    /// Refuses a key the section's kind does not take, naming the kinds that do.
    fn check(&self, table: &toml::Table) -> Result<(), String> {
        let (Some(kind), Some(section)) = (
            self.kind(table),
            table.get(self.section).and_then(|v| v.as_table()),
        ) else {
            return Ok(());
        };
        let Some(keys) = (self.keys)(kind) else {
            return Ok(());
        };
        if let Some(k) = section.keys().find(|k| *k != "kind" && !keys.contains(k)) {
            let takers: Vec<String> = self
                .kinds
                .iter()
                .filter(|x| (self.keys)(x).is_some_and(|ks| ks.contains(k)))
                .map(|x| format!("\"{x}\""))
                .collect();
            let s = self.section;
            let whose = if takers.is_empty() {
                "no kind takes it".to_string()
            } else {
                format!("a key of {}", takers.join(" and "))
            };
            let mut own = keys.clone();
            own.sort();
            return Err(format!(
                "{s}.{k} is not a key of {s}.kind = \"{kind}\" ({whose}); \"{kind}\" takes {}",
                if own.is_empty() {
                    "no other key".to_string()
                } else {
                    own.join(", ")
                }
            ));
        }
        Ok(())
    }
}

/// The config at `path` (or among `presets`) with `overrides` applied, as `T`, and the
/// origin that errors name (`configs/NAME.toml (built in)` or the file's path).
/// `tagged` are its sections chosen by `kind`: an override of `SECTION.kind` replaces
/// that section ([`Tagged`]).
pub fn load<T: DeserializeOwned>(
    path: Option<&Path>,
    overrides: &[String],
    presets: &[(&str, &str)],
    tagged: &[Tagged],
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
    for t in tagged {
        t.upgrade(&mut table);
    }
    // The keys each override set, so that a later change of kind keeps them (and the
    // check then refuses one the new kind does not take, rather than dropping it).
    let mut set: Vec<Vec<String>> = Vec::new();
    for o in overrides {
        let keys = apply_override(&mut table, o)?;
        for t in tagged {
            if keys.len() == 2 && keys[0] == t.section && keys[1] == "kind" {
                let keep: Vec<&str> = set
                    .iter()
                    .filter(|k| k.len() == 2 && k[0] == t.section)
                    .map(|k| k[1].as_str())
                    .collect();
                t.retain(&mut table, &keep);
            }
        }
        set.push(keys);
    }
    let cfg = from_tagged_table(table, &origin, tagged)?;
    Ok((cfg, origin))
}

/// [`from_table`] for a config with `tagged` sections: a section written by an older
/// rlcpc keeps its kind's keys, and a key of another kind is refused.
pub fn from_tagged_table<T: DeserializeOwned>(
    mut table: toml::Table,
    origin: &str,
    tagged: &[Tagged],
) -> Result<T, ConfigError> {
    for t in tagged {
        t.upgrade(&mut table);
        t.check(&table).map_err(|message| ConfigError::Parse {
            path: origin.into(),
            message,
        })?;
    }
    from_table(table, origin)
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

/// Applies one `a.b.c=value` override to the TOML table; returns the key path it set.
pub fn apply_override(table: &mut toml::Table, arg: &str) -> Result<Vec<String>, ConfigError> {
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
    Ok(keys)
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
