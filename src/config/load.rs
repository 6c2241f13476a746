//! The loader: reads the file (and `--env-file`), parses the TOML, deserializes the raw mirror
//! collecting every error (a value that fails is reported and left out, and the rest is read
//! again), then validates section by section. Shared helpers of the section validators live here.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use http::HeaderName;
use toml::Spanned;
use url::Url;

use super::error::Errors;
use super::raw::RawConfig;
use super::values::{self, Secret};
use super::*;
use crate::routes::Matcher;
use crate::tls_client::CaFile;

/// Where the config comes from and which extra variables apply.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    pub env_file: Option<PathBuf>,
}

/// Loads and validates a config file. All problems found are returned together.
pub fn load(path: &Path, opts: &LoadOptions) -> Result<Config, ConfigErrors> {
    // A file that cannot be read has no line or column: the error is the path and the reason.
    let unreadable = |file: &Path, message: String| {
        ConfigErrors(vec![ConfigError {
            file: file.to_path_buf(),
            line: 0,
            col: 0,
            key: String::new(),
            message,
        }])
    };
    let src = std::fs::read_to_string(path).map_err(|e| {
        unreadable(
            path,
            format!("cannot read the config file: {e}; pass an existing file with --config or PORTCULLIS_CONFIG"),
        )
    })?;
    load_str(path, &src, read_env(opts)?)
}

/// Loads a file of `[[test]]` tables (`--tests`) for `cfg`: the same validation as tests
/// written in the config (expected routes must exist in `cfg`).
pub fn load_tests(
    path: &Path,
    cfg: &Config,
    opts: &LoadOptions,
) -> Result<Vec<PolicyTest>, ConfigErrors> {
    let src = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            file: path.to_path_buf(),
            line: 0,
            col: 0,
            key: String::new(),
            message: format!("cannot read the tests file: {e}; pass an existing file with --tests"),
        }])
    })?;
    let _scope = values::EnvScope::enter(read_env(opts)?);
    let mut errs = Errors::new(path, &src);
    let Some(raw) = read_raw::<super::raw::RawTestFile>(&mut errs, &src) else {
        return Err(errs.into_errors());
    };
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let tests = Validator {
        errs: &mut errs,
        dir: &dir,
    }
    .policy_tests(&raw.tests, &cfg.routes, path);
    errs.finish()?;
    Ok(tests)
}

/// Loads an identities file (`portcullis matrix|diff --identities`): `[[identity]]` tables.
pub fn load_identities(path: &Path) -> Result<Vec<(String, TestIdentity)>, ConfigErrors> {
    let src = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            file: path.to_path_buf(),
            line: 0,
            col: 0,
            key: String::new(),
            message: format!("cannot read the identities file: {e}"),
        }])
    })?;
    let mut errs = Errors::new(path, &src);
    let Some(raw) = read_raw::<super::raw::RawIdentityFile>(&mut errs, &src) else {
        return Err(errs.into_errors());
    };
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let ids = Validator {
        errs: &mut errs,
        dir: &dir,
    }
    .named_identities(&raw.identities);
    errs.finish()?;
    Ok(ids)
}

/// The variables of `--env-file` (none without one).
fn read_env(opts: &LoadOptions) -> Result<HashMap<String, String>, ConfigErrors> {
    let unreadable = |file: &Path, message: String| {
        ConfigErrors(vec![ConfigError {
            file: file.to_path_buf(),
            line: 0,
            col: 0,
            key: String::new(),
            message,
        }])
    };
    let mut env = HashMap::new();
    if let Some(env_file) = &opts.env_file {
        let iter = dotenvy::from_path_iter(env_file)
            .map_err(|e| unreadable(env_file, format!("cannot read the --env-file: {e}")))?;
        for item in iter {
            let (k, v) = item.map_err(|e| {
                unreadable(
                    env_file,
                    format!("malformed --env-file: {e}; write one NAME=value per line"),
                )
            })?;
            env.insert(k, v);
        }
    }
    Ok(env)
}

/// Loads from a string (tests, `check`); `path` names the file in messages and anchors
/// relative paths.
pub fn load_str(
    path: &Path,
    src: &str,
    env: HashMap<String, String>,
) -> Result<Config, ConfigErrors> {
    let _scope = values::EnvScope::enter(env);
    let mut errs = Errors::new(path, src);
    let Some(raw) = read_raw::<RawConfig>(&mut errs, src) else {
        return Err(errs.into_errors());
    };
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut cfg = Validator {
        errs: &mut errs,
        dir: &dir,
    }
    .config(raw, path);
    cfg.warnings = errs.take_warnings();
    errs.finish()?;
    Ok(cfg)
}

/// Deserializes the raw mirror, reporting every value serde refuses (a missing variable, a
/// wrong type, an unknown key, a malformed address or duration): each round records the first
/// refusal and leaves that value out of the next round, so one run lists them all. The values
/// left out are marked in `errs`, whose later errors about them are dropped (a value that could
/// not be read is reported once, not again as missing or invalid). `None` when the file is not
/// TOML, or a refusal could not be located.
fn read_raw<T: serde::de::DeserializeOwned>(errs: &mut Errors<'_>, src: &str) -> Option<T> {
    let mut doc = match toml::de::DeTable::parse(src) {
        Ok(doc) => doc,
        Err(e) => {
            errs.at(e.span().unwrap_or(0..0), "", syntax_message(&e));
            return None;
        }
    };
    // Each round removes one value: bounded by the number of values in the file.
    for _ in 0..=src.len() {
        let de = toml::Deserializer::from(doc.clone());
        let e = match serde_path_to_error::deserialize::<_, T>(de) {
            Ok(raw) => return Some(raw),
            Err(e) => e,
        };
        let key = e
            .path()
            .to_string()
            .replace(".$__serde_spanned_private_value", "")
            .replace("$__serde_spanned_private_value", "");
        let key = if key == "." { String::new() } else { key };
        let inner = e.into_inner();
        let at = inner.span().unwrap_or(0..0);
        errs.unreadable(at.clone(), key, friendly(inner.message()));
        if at.is_empty() || !leave_out(doc.get_mut(), &at) {
            return None;
        }
    }
    None
}

fn contains(outer: &Range<usize>, inner: &Range<usize>) -> bool {
    outer.start <= inner.start && inner.end <= outer.end
}

/// Removes from `t` (at any depth) the entry whose key or value is at `at`, else the innermost
/// entry holding `at`. False when no entry holds it.
fn leave_out(t: &mut toml::de::DeTable<'_>, at: &Range<usize>) -> bool {
    use toml::de::DeValue;
    let exact = t
        .iter()
        .find(|(k, v)| k.span() == *at || v.span() == *at)
        .map(|(k, _)| k.clone());
    if let Some(k) = exact {
        return t.remove(&k).is_some();
    }
    // Descend everywhere: the span of an array of tables (`[[route]]`) does not cover its
    // elements.
    for (_, v) in t.iter_mut() {
        let done = match v.get_mut() {
            DeValue::Table(inner) => leave_out(inner, at),
            DeValue::Array(items) => leave_out_of_array(items, at),
            _ => false,
        };
        if done {
            return true;
        }
    }
    let holder = t
        .iter()
        .find(|(_, v)| contains(&v.span(), at))
        .map(|(k, _)| k.clone());
    holder.is_some_and(|k| t.remove(&k).is_some())
}

/// [`leave_out`] for an array: the element at `at`, or the one holding it.
fn leave_out_of_array(a: &mut toml::de::DeArray<'_>, at: &Range<usize>) -> bool {
    use toml::de::DeValue;
    for v in a.iter_mut() {
        if v.span() == *at {
            continue;
        }
        let done = match v.get_mut() {
            DeValue::Table(inner) => leave_out(inner, at),
            DeValue::Array(items) => leave_out_of_array(items, at),
            _ => false,
        };
        if done {
            return true;
        }
    }
    let Some(i) = a.iter().position(|v| contains(&v.span(), at)) else {
        return false;
    };
    let old = std::mem::replace(a, toml::de::DeArray::new());
    for (j, v) in old.into_iter().enumerate() {
        if j != i {
            a.push(v);
        }
    }
    true
}

fn syntax_message(e: &toml::de::Error) -> String {
    format!("TOML syntax error: {}", e.message().trim())
}

fn friendly(msg: &str) -> String {
    let msg = msg.trim();
    if msg.starts_with("unknown field") {
        format!(
            "{msg}; check the spelling against the reference in README.md (unknown keys are errors)"
        )
    } else {
        msg.to_string()
    }
}

/// The section validators' shared state: where errors go, and the folder relative paths
/// start from.
pub(super) struct Validator<'e, 'a> {
    pub(super) errs: &'e mut Errors<'a>,
    pub(super) dir: &'e Path,
}

pub(super) fn span<T>(s: &Spanned<T>) -> Range<usize> {
    s.span()
}

impl Validator<'_, '_> {
    pub(super) fn path(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.dir.join(p)
        }
    }

    /// Resolves a file path and checks it can be read.
    pub(super) fn readable(
        &mut self,
        v: &Spanned<values::Str>,
        key: &str,
    ) -> Option<(PathBuf, Vec<u8>)> {
        let p = self.path(v.get_ref());
        match std::fs::read(&p) {
            Ok(bytes) => Some((p, bytes)),
            Err(e) => {
                self.errs.at(
                    span(v),
                    key,
                    format!("cannot read {}: {e}; fix the path (relative paths are relative to the config file's folder)", p.display()),
                );
                None
            }
        }
    }

    /// Reads and parses a CA file: PEM certificates, at least one, each a usable trust anchor.
    pub(super) fn ca_file(&mut self, v: &Spanned<values::Str>, key: &str) -> Option<CaFile> {
        let (p, bytes) = self.readable(v, key)?;
        match CaFile::parse(p.clone(), &bytes) {
            Ok(ca) => Some(ca),
            Err(e) => {
                self.errs.at(span(v), key, format!("{} {e}", p.display()));
                None
            }
        }
    }

    /// `<key>` or `<key>_file`: exactly one may be given.
    pub(super) fn secret(
        &mut self,
        value: Option<Secret>,
        value_span: Option<Range<usize>>,
        file: Option<&Spanned<values::Str>>,
        key: &str,
    ) -> Option<Secret> {
        match (value, file) {
            (Some(_), Some(f)) => {
                self.errs.at(
                    value_span.unwrap_or_else(|| span(f)),
                    key,
                    format!("both `{key}` and `{key}_file` are set; keep one"),
                );
                None
            }
            (Some(v), None) => Some(v),
            (None, Some(f)) => {
                let (_, bytes) = self.readable(f, &format!("{key}_file"))?;
                match String::from_utf8(bytes) {
                    Ok(s) => Some(Secret::new(s.trim_end_matches(['\n', '\r']).to_string())),
                    Err(_) => {
                        self.errs
                            .at(span(f), format!("{key}_file"), "the file is not UTF-8 text");
                        None
                    }
                }
            }
            (None, None) => None,
        }
    }

    pub(super) fn url(&mut self, v: &Spanned<values::Str>, key: &str) -> Option<Url> {
        match Url::parse(v.get_ref()) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Some(u),
            Ok(_) => {
                self.errs.at(
                    span(v),
                    key,
                    format!("{:?} is not an http(s) URL with a host", v.get_ref().0),
                );
                None
            }
            Err(e) => {
                self.errs.at(
                    span(v),
                    key,
                    format!("{:?} is not a valid URL ({e})", v.get_ref().0),
                );
                None
            }
        }
    }

    pub(super) fn header_name(
        &mut self,
        v: &Spanned<values::Str>,
        key: &str,
    ) -> Option<Option<HeaderName>> {
        if v.get_ref().is_empty() {
            return Some(None);
        }
        match HeaderName::from_bytes(v.get_ref().as_bytes()) {
            Ok(h) => Some(Some(h)),
            Err(_) => {
                self.errs.at(
                    span(v),
                    key,
                    format!("{:?} is not a valid header name", v.get_ref().0),
                );
                None
            }
        }
    }

    fn config(&mut self, raw: RawConfig, path: &Path) -> Config {
        let server = self.server(&raw.server);
        let headers = Arc::new(self.headers(&raw.headers, None));

        // Which providers login routes use (decides which provider keys are required).
        let provider_names: Vec<String> = raw.providers.keys().cloned().collect();
        let only_provider = (provider_names.len() == 1).then(|| provider_names[0].clone());
        let mut login_providers = HashSet::new();
        for r in &raw.routes {
            let r = r.get_ref();
            if r.auth.as_ref().is_some_and(|a| a.get_ref().0.uses_login()) {
                let p = r
                    .provider
                    .as_ref()
                    .map(|p| p.get_ref().0.clone())
                    .or(only_provider.clone());
                if let Some(p) = p {
                    login_providers.insert(p);
                }
            }
        }
        let mut providers = BTreeMap::new();
        for (name, p) in &raw.providers {
            if let Some(p) = self.provider(name, p, login_providers.contains(name)) {
                providers.insert(name.clone(), Arc::new(p));
            }
        }

        let session = raw.session.as_ref().and_then(|s| self.session(s, &server));

        let mut routes: Vec<Arc<Route>> = Vec::new();
        let mut names: HashMap<String, Range<usize>> = HashMap::new();
        let mut matchers: Vec<(String, Matcher)> = Vec::new();
        for (i, r) in raw.routes.iter().enumerate() {
            let Some(route) = self.route(i, r, &raw, &headers, &only_provider, &server) else {
                continue;
            };
            let name_span = r.get_ref().name.as_ref().map_or_else(|| span(r), span);
            if let Some(first) = names.get(&route.name) {
                let (line, _) = self.errs.line_col(first.start);
                self.errs.at(
                    name_span.clone(),
                    format!("route[{i}].name"),
                    format!("duplicate route name {:?} (first used on line {line}); give each route a unique name", route.name),
                );
            } else {
                names.insert(route.name.clone(), name_span);
            }
            if let Some((earlier, _)) = matchers.iter().find(|(_, m)| m.shadows(&route.matcher)) {
                self.errs.at(
                    span(r),
                    format!("route[{i}]"),
                    format!(
                        "route {:?} can never match: route {earlier:?} above it already matches every request it would (first match wins); move it above {earlier:?} or narrow {earlier:?}",
                        route.name
                    ),
                );
            }
            matchers.push((route.name.clone(), route.matcher.clone()));
            routes.push(Arc::new(route));
        }
        if raw.routes.is_empty() {
            // At the end of the file, where a `[[route]]` would go.
            let end = self.errs.src.len();
            self.errs.at(end..end, "route", "no [[route]] is configured: add at least one [[route]] with path, upstream and auth");
        }
        // A `[session]` section that is there but refused has said why already.
        if raw.session.is_none()
            && let Some((i, r)) = raw.routes.iter().enumerate().find(|(_, r)| {
                r.get_ref()
                    .auth
                    .as_ref()
                    .is_some_and(|a| a.get_ref().0.uses_login())
            })
        {
            self.errs.at(
                    span(r),
                    format!("route[{i}].auth"),
                    "this route uses browser login but there is no [session] section: add [session] with a secret of at least 32 bytes",
                );
        }

        let mut identity_header_names: IdentityNames = DEFAULT_IDENTITY_HEADERS.iter().collect();
        for h in headers.names() {
            identity_header_names.insert(&fold_header_name(h.as_str()));
        }
        for r in &routes {
            for h in r.headers.names() {
                identity_header_names.insert(&fold_header_name(h.as_str()));
            }
        }

        let tests = self.policy_tests(&raw.tests, &routes, path);
        self.scope_warnings(&raw, &providers, &only_provider);

        Config {
            source: path.to_path_buf(),
            server,
            providers,
            session,
            headers,
            forward_auth: ForwardAuth::from(&raw.forward_auth),
            routes,
            identity_header_names,
            tests,
            telemetry: self.telemetry(&raw.telemetry),
            warnings: Vec::new(),
        }
    }
}
