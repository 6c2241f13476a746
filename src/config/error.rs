//! Config errors, rendered as `file:line:col: key: what is wrong` plus how to fix it.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// One problem in the config file (`line` 0: the file itself, e.g. it cannot be read).
#[derive(Debug, Clone)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: usize,
    pub col: usize,
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Line 0: about the file as a whole (it cannot be read): no position to give.
        if self.line == 0 {
            write!(f, "{}: ", self.file.display())?;
        } else {
            write!(f, "{}:{}:{}: ", self.file.display(), self.line, self.col)?;
        }
        if !self.key.is_empty() {
            write!(f, "`{}`: ", self.key)?;
        }
        f.write_str(&self.message)
    }
}

/// Every problem found in one load, in file order.
#[derive(Debug, Clone)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Collects errors against one source text, turning byte spans into line:col.
pub(crate) struct Errors<'a> {
    pub file: &'a Path,
    pub src: &'a str,
    pub list: Vec<(usize, ConfigError)>,
    /// Problems that do not stop the load (start offset, warning).
    warnings: Vec<(usize, ConfigError)>,
    /// Values that could not be read (start offset, key): left out of the config, so later
    /// complaints about them or their section would only repeat the first error.
    unreadable: Vec<(usize, String)>,
}

impl<'a> Errors<'a> {
    pub fn new(file: &'a Path, src: &'a str) -> Self {
        Errors {
            file,
            src,
            list: Vec::new(),
            warnings: Vec::new(),
            unreadable: Vec::new(),
        }
    }

    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.src.len());
        let before = &self.src[..offset];
        let line = before.matches('\n').count() + 1;
        let col = before.rfind('\n').map_or(before.chars().count(), |nl| {
            before[nl + 1..].chars().count()
        }) + 1;
        (line, col)
    }

    /// Records a value that could not be read (and is left out of the config).
    pub fn unreadable(&mut self, span: Range<usize>, key: String, message: String) {
        self.push(span.start, key.clone(), message);
        self.unreadable.push((span.start, key));
    }

    /// Whether an error at `start` about `key` is a consequence of an unreadable value: at its
    /// position, about its key, or about the table holding it.
    fn follows_unreadable(&self, start: usize, key: &str) -> bool {
        self.unreadable.iter().any(|(at, k)| {
            *at == start
                || k == key
                || (!key.is_empty()
                    && k.strip_prefix(key)
                        .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('[')))
        })
    }

    pub fn at(&mut self, span: Range<usize>, key: impl Into<String>, message: impl Into<String>) {
        let key = key.into();
        if self.follows_unreadable(span.start, &key) {
            return;
        }
        self.push(span.start, key, message.into());
    }

    /// Records a warning: reported by `check`, the config still loads.
    pub fn warn(&mut self, span: Range<usize>, key: impl Into<String>, message: impl Into<String>) {
        let (line, col) = self.line_col(span.start);
        self.warnings.push((
            span.start,
            ConfigError {
                file: self.file.to_path_buf(),
                line,
                col,
                key: key.into(),
                message: message.into(),
            },
        ));
    }

    /// The warnings recorded, in file order.
    pub fn take_warnings(&mut self) -> Vec<ConfigError> {
        let mut w = std::mem::take(&mut self.warnings);
        w.sort_by_key(|(o, _)| *o);
        w.into_iter().map(|(_, e)| e).collect()
    }

    fn push(&mut self, start: usize, key: String, message: String) {
        let (line, col) = self.line_col(start);
        self.list.push((
            start,
            ConfigError {
                file: self.file.to_path_buf(),
                line,
                col,
                key,
                message,
            },
        ));
    }

    /// `Err` with every error recorded, in file order; `Ok` when there is none.
    pub fn finish(self) -> Result<(), ConfigErrors> {
        if self.list.is_empty() {
            return Ok(());
        }
        Err(self.into_errors())
    }

    /// Every error recorded, in file order (the caller knows there is at least one).
    pub fn into_errors(mut self) -> ConfigErrors {
        self.list.sort_by_key(|(o, _)| *o);
        ConfigErrors(self.list.into_iter().map(|(_, e)| e).collect())
    }
}
