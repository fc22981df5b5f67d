//! Typed environment options: reading a config's `[env.options]` map into an
//! environment's own struct (refusing unknown keys, naming the bad key and what it
//! expects), and the `key = default` help text that `rlcpc envs` prints from the
//! struct's `Default`, so that the help cannot drift from the defaults.

use serde::de::{DeserializeOwned, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::config::Options;
use crate::env::EnvError;

/// An environment's options as one struct, each deriving `Serialize`, `Deserialize`
/// (`#[serde(deny_unknown_fields, default)]`) and a documented `Default`.
pub(crate) trait EnvOptions: Serialize + DeserializeOwned + Default {
    /// Notes printed after some keys' defaults by `rlcpc envs`, e.g. `("view", "(grid
    /// window)")`; each names a field.
    const NOTES: &'static [(&'static str, &'static str)] = &[];

    /// Checks what the types do not (ranges, odd sizes): on failure the bad key and what
    /// it must be.
    fn check(&self) -> Result<(), (&'static str, &'static str)> {
        Ok(())
    }
}

/// The options of an environment that takes none.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NoOptions {}

impl EnvOptions for NoOptions {}

/// `T`'s keys and their defaults, in the struct's order.
pub(crate) fn defaults<T: EnvOptions>() -> Vec<(String, Value)> {
    let text = serde_json::to_string(&T::default()).expect("options are plain data");
    serde_json::from_str::<Entries>(&text)
        .expect("options serialise as a JSON object")
        .0
}

/// `T`'s keys with their defaults and notes, as `rlcpc envs` prints them:
/// `corridor_length = 20 (episodes last corridor_length + 1 steps)`.
pub(crate) fn help<T: EnvOptions>() -> String {
    let defaults = defaults::<T>();
    for (key, _) in T::NOTES {
        assert!(
            defaults.iter().any(|(k, _)| k == key),
            "a note on '{key}', which is no option"
        );
    }
    defaults
        .iter()
        .map(|(k, v)| match T::NOTES.iter().find(|(key, _)| key == k) {
            Some((_, note)) => format!("{k} = {} {note}", show(v)),
            None => format!("{k} = {}", show(v)),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A default as people write it: whole floats without `.0` (`fov = 90`), strings quoted.
fn show(v: &Value) -> String {
    match v.as_f64() {
        Some(x) if v.is_f64() && x.fract() == 0.0 && x.abs() < 1e15 => format!("{}", x as i64),
        _ => v.to_string(),
    }
}

/// Refuses the first key of `o` that is not in `known`, listing the known ones.
pub(crate) fn refuse_unknown(id: &str, o: &Options, known: &[String]) -> Result<(), EnvError> {
    match o.keys().find(|k| !known.contains(k)) {
        Some(k) => Err(invalid(
            id,
            k,
            &format!(
                "unknown option (known: {})",
                if known.is_empty() {
                    "none".into()
                } else {
                    known.join(", ")
                }
            ),
        )),
        None => Ok(()),
    }
}

/// Reads the whole of `o` into a `T` and checks it.
pub(crate) fn read<T: EnvOptions>(id: &str, o: &Options) -> Result<T, EnvError> {
    let known: Vec<String> = defaults::<T>().into_iter().map(|(k, _)| k).collect();
    refuse_unknown(id, o, &known)?;
    read_part(id, o)
}

/// Reads the keys of `o` that `T` has into a `T` and checks it; the caller refuses the
/// keys that no part has.
pub(crate) fn read_part<T: EnvOptions>(id: &str, o: &Options) -> Result<T, EnvError> {
    let defaults = defaults::<T>();
    let mine: Options = o
        .iter()
        .filter(|(k, _)| defaults.iter().any(|(d, _)| d == *k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let t: T = serde_json::from_value(Value::Object(mine.clone()))
        .map_err(|e| type_error::<T>(id, &mine, &defaults, &e))?;
    t.check()
        .map_err(|(key, reason)| invalid(id, key, reason))?;
    Ok(t)
}

/// The error for options that do not deserialise: serde's message names no key, so each
/// key is tried alone; integers and numbers are described in words.
fn type_error<T: EnvOptions>(
    id: &str,
    given: &Options,
    defaults: &[(String, Value)],
    all: &serde_json::Error,
) -> EnvError {
    for (k, v) in given {
        let alone = Options::from_iter([(k.clone(), v.clone())]);
        if let Err(e) = serde_json::from_value::<T>(Value::Object(alone)) {
            let reason = match defaults.iter().find(|(d, _)| d == k).map(|(_, d)| d) {
                Some(Value::Number(n)) if n.is_u64() => {
                    format!("expected a non-negative integer, got {v}")
                }
                Some(Value::Number(_)) => format!("expected a number, got {v}"),
                _ => e.to_string(),
            };
            return invalid(id, k, &reason);
        }
    }
    // Unreachable while every field reads on its own; still name all the keys.
    let keys: Vec<&str> = given.keys().map(String::as_str).collect();
    invalid(id, &keys.join(", "), &all.to_string())
}

/// An invalid option of environment `id`.
pub(crate) fn invalid(id: &str, key: &str, reason: &str) -> EnvError {
    EnvError::InvalidOption {
        id: id.into(),
        key: key.into(),
        reason: reason.into(),
    }
}

/// A JSON object's entries in the order written (`serde_json::Map` may sort them).
struct Entries(Vec<(String, Value)>);

impl<'de> Deserialize<'de> for Entries {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Ordered;
        impl<'de> Visitor<'de> for Ordered {
            type Value = Entries;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Entries, A::Error> {
                let mut v = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    v.push(entry);
                }
                Ok(Entries(v))
            }
        }
        d.deserialize_map(Ordered)
    }
}
