//! Route matching and path normalization: pure functions, compiled once at config load.
//! (temporary stub; the full implementation lands from the routes branch)
use std::borrow::Cow;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("invalid percent-encoding in path")]
    InvalidPercentEncoding,
    #[error("path must start with '/'")]
    NotAbsolute,
}

pub fn normalize_path(raw: &str) -> Result<Cow<'_, str>, PathError> {
    if !raw.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    Ok(Cow::Borrowed(raw))
}

#[derive(Debug, Clone)]
pub struct HostPattern {
    pattern: String,
}
impl HostPattern {
    pub fn parse(s: &str) -> Result<Self, String> {
        Ok(Self { pattern: s.to_ascii_lowercase() })
    }
    pub fn matches(&self, request_host: &str) -> bool {
        let h = request_host.split(':').next().unwrap_or_default();
        if let Some(suffix) = self.pattern.strip_prefix('*') {
            h.to_ascii_lowercase().ends_with(suffix)
        } else {
            h.eq_ignore_ascii_case(&self.pattern)
        }
    }
}

#[derive(Debug, Clone)]
pub struct Matcher {
    pub host: Option<HostPattern>,
    pub path: String,
    pub methods: Option<Vec<http::Method>>,
}
impl Matcher {
    pub fn new(host: Option<&str>, path: &str, methods: Option<&[String]>) -> Result<Self, String> {
        let host = host.map(HostPattern::parse).transpose()?;
        let methods = methods
            .map(|m| {
                m.iter()
                    .map(|s| http::Method::from_bytes(s.to_ascii_uppercase().as_bytes()).map_err(|e| e.to_string()))
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?;
        Ok(Self { host, path: path.trim_end_matches('/').to_string(), methods })
    }
    pub fn matches(&self, host: Option<&str>, method: &http::Method, path: &str) -> bool {
        if let Some(h) = &self.host {
            if !host.is_some_and(|x| h.matches(x)) {
                return false;
            }
        }
        if let Some(m) = &self.methods {
            if !m.contains(method) {
                return false;
            }
        }
        self.path.is_empty() || path == self.path || path.starts_with(&format!("{}/", self.path))
    }
    pub fn shadows(&self, later: &Matcher) -> bool {
        self.host.is_none() && self.methods.is_none() && (self.path.is_empty() || later.path == self.path)
    }
}

pub fn strip_prefix<'a>(normalized_path: &'a str, prefix: &str) -> Cow<'a, str> {
    let p = prefix.trim_end_matches('/');
    match normalized_path.strip_prefix(p) {
        Some("") => Cow::Borrowed("/"),
        Some(rest) if rest.starts_with('/') => Cow::Borrowed(rest),
        _ => Cow::Borrowed(normalized_path),
    }
}
