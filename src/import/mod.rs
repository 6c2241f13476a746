//! `portcullis import …`: turns another proxy's configuration into a portcullis config file and
//! a report of every setting that could not be carried over, with the reason and what to do
//! instead.
//!
//! Nothing here runs in the proxy: it is a one-shot conversion for the command line, with no
//! I/O beyond reading the input files it is given. The output is TOML text written key by key
//! (so it keeps comments and a readable order); the command's tests load every output with
//! `portcullis check`.
//!
//! # Security caveats
//!
//! - An import never opens more than the source did: a rule that portcullis can only express
//!   more widely (a public path regex that is not a whole-segment prefix, an exact path) is left
//!   out and reported, so the result is at most as open as the original, sometimes stricter.
//! - Secrets read from the environment are written as `${VAR}` references, never as values; the
//!   report never prints a secret.

pub mod oauth2_proxy;

use std::fmt::Write as _;

/// What an import produced: the config text and the report.
#[derive(Debug)]
pub struct Imported {
    pub toml: String,
    pub report: Report,
}

/// Why an import could not produce anything (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{path}: cannot read: {reason}")]
    Read { path: String, reason: String },
    #[error("{path}:{line}:{col}: not a valid oauth2-proxy config file (TOML): {message}")]
    Parse {
        path: String,
        line: usize,
        col: usize,
        message: String,
    },
    #[error("{0}")]
    Usage(String),
}

/// How a setting fared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Left out of the output.
    NotCarried,
    /// Carried over, but portcullis behaves differently.
    Changed,
}

/// One line of the report.
#[derive(Debug, Clone)]
pub struct Item {
    pub fate: Fate,
    /// The source setting, as its file or environment names it.
    pub setting: String,
    /// Its value as shown to the user (secrets redacted).
    pub value: String,
    pub reason: String,
    pub instead: String,
}

/// An environment variable the output reads (`${VAR}`) and why.
#[derive(Debug, Clone)]
pub struct EnvVar {
    pub name: String,
    pub what: String,
    /// `true`: a placeholder for a value the source did not have in a usable form.
    pub placeholder: bool,
}

/// Everything an import has to tell the user besides the config.
#[derive(Debug, Default)]
pub struct Report {
    pub items: Vec<Item>,
    pub env: Vec<EnvVar>,
}

impl Report {
    pub fn not_carried(
        &mut self,
        setting: &str,
        value: impl Into<String>,
        reason: impl Into<String>,
        instead: impl Into<String>,
    ) {
        self.push(Fate::NotCarried, setting, value, reason, instead);
    }

    pub fn changed(
        &mut self,
        setting: &str,
        value: impl Into<String>,
        reason: impl Into<String>,
        instead: impl Into<String>,
    ) {
        self.push(Fate::Changed, setting, value, reason, instead);
    }

    fn push(
        &mut self,
        fate: Fate,
        setting: &str,
        value: impl Into<String>,
        reason: impl Into<String>,
        instead: impl Into<String>,
    ) {
        self.items.push(Item {
            fate,
            setting: setting.to_owned(),
            value: value.into(),
            reason: reason.into(),
            instead: instead.into(),
        });
    }

    /// Records that the output reads `${name}`.
    pub fn env(&mut self, name: &str, what: impl Into<String>, placeholder: bool) {
        if !self.env.iter().any(|e| e.name == name) {
            self.env.push(EnvVar {
                name: name.to_owned(),
                what: what.into(),
                placeholder,
            });
        }
    }

    /// The report as printed on stderr: one line per item, `- setting = value: reason; instead: …`.
    pub fn render(&self, tool: &str) -> String {
        let count = |f: Fate| self.items.iter().filter(|i| i.fate == f).count();
        let (not, changed) = (count(Fate::NotCarried), count(Fate::Changed));
        let mut out = String::new();
        let _ = writeln!(
            out,
            "portcullis import {tool}: {not} setting{} not carried over, {changed} carried over with a difference",
            if not == 1 { "" } else { "s" },
        );
        for (fate, title) in [
            (Fate::NotCarried, "not carried over:"),
            (Fate::Changed, "carried over with a difference:"),
        ] {
            if count(fate) == 0 {
                continue;
            }
            let _ = writeln!(out, "{title}");
            for i in self.items.iter().filter(|i| i.fate == fate) {
                let _ = writeln!(
                    out,
                    "  - {} = {}: {}; instead: {}",
                    i.setting, i.value, i.reason, i.instead
                );
            }
        }
        let placeholders: Vec<_> = self.env.iter().filter(|e| e.placeholder).collect();
        if !placeholders.is_empty() {
            let _ = writeln!(
                out,
                "set these environment variables (placeholders in the output) before `portcullis check` and `run`:"
            );
            for e in placeholders {
                let _ = writeln!(out, "  - {}: {}", e.name, e.what);
            }
        }
        let kept: Vec<_> = self.env.iter().filter(|e| !e.placeholder).collect();
        if !kept.is_empty() {
            let _ = writeln!(
                out,
                "the output reads these from the environment, as oauth2-proxy did (keep them set):"
            );
            for e in kept {
                let _ = writeln!(out, "  - {}: {}", e.name, e.what);
            }
        }
        out
    }
}

/// A TOML basic string for a value taken from the source: quoted and escaped, and a `${` in it
/// written as `$${` so that portcullis does not read it as an environment reference.
pub fn literal(s: &str) -> String {
    toml::Value::String(s.replace("${", "$${")).to_string()
}

/// A TOML basic string whose `${VAR}` references are meant to be expanded.
pub fn template(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

/// A TOML array of [`literal`] strings.
pub fn literal_list<S: AsRef<str>>(items: &[S]) -> String {
    let inner: Vec<String> = items.iter().map(|s| literal(s.as_ref())).collect();
    format!("[{}]", inner.join(", "))
}

/// 1-based line and column of byte `offset` in `src`.
pub fn line_col(src: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(src.len());
    let before = src.get(..offset).unwrap_or(src);
    let line = before.matches('\n').count() + 1;
    let col = before
        .rfind('\n')
        .map_or(before.chars().count(), |n| before[n + 1..].chars().count())
        + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_escapes_env_references_and_quotes() {
        // Any TOML string form will do, as long as it reads back with `${` escaped.
        for (raw, want) in [
            ("a${B}\"c", "a$${B}\"c"),
            ("x'y\n", "x'y\n"),
            ("plain", "plain"),
        ] {
            let doc: toml::Table = toml::from_str(&format!("k = {}", literal(raw))).unwrap();
            assert_eq!(doc["k"].as_str(), Some(want));
        }
        assert_eq!(template("${B}"), r#""${B}""#);
        assert_eq!(literal_list(&["a", "b"]), r#"["a", "b"]"#);
    }

    #[test]
    fn line_col_is_one_based() {
        assert_eq!(line_col("ab\ncd", 0), (1, 1));
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
    }
}
