//! Leaf value types of the config file. Every string value goes through `${VAR}` interpolation
//! while it is deserialized, so an error (a missing variable, a malformed URL) carries the
//! value's span and is reported at file:line:col.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

thread_local! {
    /// Variables from `--env-file`, consulted after the process environment. Set only for the
    /// duration of one [`super::load`] call on this thread.
    static ENV_FILE: RefCell<Option<HashMap<String, String>>> = const { RefCell::new(None) };
}

pub(crate) struct EnvScope;

impl EnvScope {
    pub(crate) fn enter(vars: HashMap<String, String>) -> Self {
        ENV_FILE.with(|e| *e.borrow_mut() = Some(vars));
        EnvScope
    }
}

impl Drop for EnvScope {
    fn drop(&mut self) {
        ENV_FILE.with(|e| *e.borrow_mut() = None);
    }
}

fn lookup(name: &str) -> Option<String> {
    if let Ok(v) = std::env::var(name) {
        return Some(v);
    }
    ENV_FILE.with(|e| e.borrow().as_ref().and_then(|m| m.get(name).cloned()))
}

/// Replaces `${VAR}` and `${VAR:-default}`; `$${` is a literal `${`.
pub fn interpolate(input: &str) -> Result<String, String> {
    if !input.contains("${") {
        return Ok(input.to_string());
    }
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find("${") {
        if rest[..pos].ends_with('$') {
            out.push_str(&rest[..pos - 1]);
            out.push_str("${");
            rest = &rest[pos + 2..];
            continue;
        }
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("unterminated `${{` in {input:?}: close it with `}}`"))?;
        let expr = &after[..end];
        let (name, default) = match expr.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (expr, None),
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!(
                "`${{{expr}}}` is not a valid variable reference: use ${{NAME}} or ${{NAME:-default}}"
            ));
        }
        match (lookup(name), default) {
            (Some(v), _) if !v.is_empty() || default.is_none() => out.push_str(&v),
            (_, Some(d)) => out.push_str(d),
            (_, None) => {
                return Err(format!(
                    "environment variable `{name}` is not set: set it (or put it in the --env-file), or give a default with ${{{name}:-value}}"
                ));
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// A string value after `${VAR}` interpolation.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Str(pub String);

impl fmt::Debug for Str {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::ops::Deref for Str {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Str {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        interpolate(&raw).map(Str).map_err(serde::de::Error::custom)
    }
}

/// A string value parsed with `FromStr` after interpolation; the parse error becomes the
/// message at the value's position.
#[derive(Clone, Debug)]
pub struct Parsed<T>(pub T);

impl<'de, T> Deserialize<'de> for Parsed<T>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Str::deserialize(d)?;
        s.0.trim()
            .parse::<T>()
            .map(Parsed)
            .map_err(serde::de::Error::custom)
    }
}

/// A duration written as "30s", "5m", "12h", "1h30m".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl FromStr for Dur {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        humantime::parse_duration(s).map(Dur).map_err(|e| {
            format!("invalid duration {s:?} ({e}): write e.g. \"30s\", \"5m\" or \"12h\"")
        })
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Parsed::<Dur>::deserialize(d).map(|p| p.0)
    }
}

/// A secret string: never printed by `Debug`.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Str::deserialize(d).map(|s| Secret(s.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpolation() {
        let _g = EnvScope::enter(HashMap::from([("PC_T_A".to_string(), "x".to_string())]));
        assert_eq!(interpolate("a${PC_T_A}b").unwrap(), "axb");
        assert_eq!(interpolate("${PC_T_MISSING:-dflt}").unwrap(), "dflt");
        assert_eq!(interpolate("$${PC_T_A}").unwrap(), "${PC_T_A}");
        assert!(
            interpolate("${PC_T_MISSING}")
                .unwrap_err()
                .contains("PC_T_MISSING")
        );
        assert!(interpolate("${PC_T_A").is_err());
        assert!(interpolate("${bad name}").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!("30s".parse::<Dur>().unwrap().0, Duration::from_secs(30));
        assert_eq!("12h".parse::<Dur>().unwrap().0, Duration::from_secs(43200));
        assert!("12 parsecs".parse::<Dur>().is_err());
    }

    #[test]
    fn secret_debug_is_redacted() {
        assert!(!format!("{:?}", Secret::new("hunter2")).contains("hunter2"));
    }
}
