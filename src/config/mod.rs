//! Configuration: the TOML file (`raw`), its leaf values and interpolation (`values`), and the
//! validated, typed [`Config`] the proxy runs on. Every problem is found here, at load, and
//! reported with file:line:col and the key; nothing is left to fail on the first request.
//! One load path serves `run`, `check`, `explain` and the TLS/config reloads.

mod error;
mod raw;
pub mod values;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::HeaderName;
use ipnet::IpNet;
use serde::Deserialize;
use toml::Spanned;
use url::Url;

use error::Errors;
pub use error::{ConfigError, ConfigErrors};
use raw::*;
pub use values::{Dur, Secret};

use crate::routes::{HostPattern, Matcher};

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was loaded from.
    pub source: PathBuf,
    pub server: Server,
    pub providers: BTreeMap<String, Arc<Provider>>,
    pub session: Option<Session>,
    /// The global `[headers]`, defaults filled in.
    pub headers: Arc<HeaderConfig>,
    pub routes: Vec<Arc<Route>>,
    /// Every header name that carries identity, lower-cased with `_` folded to `-`:
    /// stripped from every incoming request whatever its spelling.
    pub identity_header_names: crate::headers::IdentityNames,
}

#[derive(Debug, Clone)]
pub struct Server {
    pub listen: Option<SocketAddr>,
    pub public_url: Option<Url>,
    pub trusted_proxies: Vec<IpNet>,
    pub admin_listen: Option<SocketAddr>,
    pub allowed_redirect_hosts: Vec<HostPattern>,
    pub tls: Option<Tls>,
    pub auth_prefix: String,
    pub header_read_timeout: Duration,
    pub max_header_bytes: usize,
    pub drain_timeout: Duration,
    /// Cap on client connections across the public listeners; `None`: sized from the
    /// open-file limit at start (`server::accept::Caps`).
    pub max_connections: Option<usize>,
    pub upstream_timeout: Duration,
    pub upstream_ca_file: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct Tls {
    pub listen: SocketAddr,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub redirect_http: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenEndpointAuth {
    ClientSecretBasic,
    ClientSecretPost,
    PrivateKeyJwt,
    /// Public client: PKCE only, no client authentication.
    None,
}

/// A key file as ZITADEL issues it for an application or service account:
/// `{"type","keyId","key" (PEM RSA private key),"appId","clientId"}` (or `userId`).
#[derive(Clone, Deserialize)]
pub struct ZitadelKey {
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(rename = "keyId")]
    pub key_id: String,
    pub key: String,
    #[serde(rename = "appId", default)]
    pub app_id: Option<String>,
    #[serde(rename = "clientId", default)]
    pub client_id: Option<String>,
    #[serde(rename = "userId", default)]
    pub user_id: Option<String>,
}

impl ZitadelKey {
    /// The identity the key asserts: `clientId` for applications, `userId` for service accounts.
    pub fn subject(&self) -> Option<&str> {
        self.client_id.as_deref().or(self.user_id.as_deref())
    }
}

impl std::fmt::Debug for ZitadelKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZitadelKey")
            .field("type", &self.kind)
            .field("key_id", &self.key_id)
            .field("client_id", &self.subject())
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RolesClaim {
    /// Union of the well-known places (DESIGN.md, Roles).
    Auto,
    /// A claim name, or a dotted path into nested objects.
    Path(String),
}

#[derive(Debug, Clone)]
pub struct Provider {
    pub name: String,
    /// The issuer exactly as configured (compared byte for byte with `iss`).
    pub issuer: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<Secret>,
    pub private_key: Option<ZitadelKey>,
    pub scopes: Vec<String>,
    pub audiences: Vec<String>,
    pub roles_claim: RolesClaim,
    /// ZITADEL project whose project-scoped roles claim counts under `roles_claim = "auto"`.
    pub project_id: Option<String>,
    pub token_endpoint_auth: TokenEndpointAuth,
    pub authorization_endpoint: Option<Url>,
    pub token_endpoint: Option<Url>,
    pub userinfo_endpoint: Option<Url>,
    pub jwks_uri: Option<Url>,
    pub end_session_endpoint: Option<Url>,
    pub ca_file: Option<PathBuf>,
    pub introspection: Option<Introspection>,
    pub timeout: Duration,
    /// Extension: cache validated JWT access tokens (keyed by SHA-256, never beyond `exp`).
    pub token_cache: bool,
    /// Whether any route uses this provider for browser login.
    pub used_for_login: bool,
}

impl Provider {
    /// True when the endpoints are given explicitly and discovery is skipped.
    pub fn explicit_endpoints(&self) -> bool {
        self.issuer.is_none()
            || (self.authorization_endpoint.is_some()
                && self.token_endpoint.is_some()
                && self.userinfo_endpoint.is_some()
                && self.jwks_uri.is_some())
    }
}

#[derive(Debug, Clone)]
pub enum IntrospectionAuth {
    /// RFC 7523 `private_key_jwt` signed with a ZITADEL key file.
    KeyFile(ZitadelKey),
    /// client_secret_basic.
    Basic {
        client_id: String,
        client_secret: Secret,
    },
}

#[derive(Debug, Clone)]
pub struct Introspection {
    pub endpoint: Option<Url>,
    pub auth: IntrospectionAuth,
    pub cache: Duration,
    /// Calls to the introspection endpoint in flight at once (≥ 1).
    pub max_concurrent: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionStore {
    Cookie,
    Redis { url: Secret },
}

#[derive(Debug, Clone)]
pub struct Session {
    pub secret: Secret,
    pub previous_secrets: Vec<Secret>,
    pub store: SessionStore,
    pub cookie_name: String,
    pub lifetime: Duration,
    pub idle_timeout: Duration,
    pub refresh: bool,
    pub post_logout_redirect: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthorizationMode {
    /// The default: `Strip` when a session authenticated the request (the client's header is
    /// not what proved it), `Pass` when a bearer token did.
    Auto,
    Pass,
    Strip,
    AccessToken,
}

/// Resolved identity header names for one route (`None` = disabled).
#[derive(Debug, Clone)]
pub struct HeaderConfig {
    pub user: Option<HeaderName>,
    pub email: Option<HeaderName>,
    pub preferred_username: Option<HeaderName>,
    pub name: Option<HeaderName>,
    pub roles: Option<HeaderName>,
    pub access_token: Option<HeaderName>,
    pub authorization: AuthorizationMode,
    pub assertion: Option<HeaderName>,
    pub assertion_key_file: Option<PathBuf>,
    /// (header, claim path)
    pub claims: Vec<(HeaderName, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    None,
    Login,
    Bearer,
    LoginOrBearer,
}

impl AuthMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMode::None => "none",
            AuthMode::Login => "login",
            AuthMode::Bearer => "bearer",
            AuthMode::LoginOrBearer => "login_or_bearer",
        }
    }
    pub fn uses_login(self) -> bool {
        matches!(self, AuthMode::Login | AuthMode::LoginOrBearer)
    }
    pub fn uses_bearer(self) -> bool {
        matches!(self, AuthMode::Bearer | AuthMode::LoginOrBearer)
    }
}

#[derive(Debug, Clone)]
pub struct Upstream {
    pub url: Url,
    pub scheme: http::uri::Scheme,
    pub authority: http::uri::Authority,
    /// Path prefix of the upstream URL without trailing slash ("" when none).
    pub base_path: String,
}

#[derive(Debug, Clone)]
pub struct Route {
    pub name: String,
    pub matcher: Matcher,
    pub upstream: Upstream,
    pub auth: AuthMode,
    pub provider: Option<String>,
    pub require_roles: Vec<String>,
    pub require_any_role: Vec<String>,
    /// (claim path, accepted values)
    pub require_claims: Vec<(String, Vec<serde_json::Value>)>,
    pub headers: Arc<HeaderConfig>,
    pub timeout: Duration,
    pub websocket: bool,
    pub strip_prefix: bool,
    pub preserve_host: bool,
    pub upstream_ca_file: Option<PathBuf>,
}

/// Default identity header names; always stripped from incoming requests.
pub const DEFAULT_IDENTITY_HEADERS: &[&str] = &[
    "x-forwarded-user",
    "x-forwarded-email",
    "x-forwarded-preferred-username",
    "x-forwarded-name",
    "x-forwarded-roles",
    "x-forwarded-groups",
    "x-forwarded-access-token",
    "x-auth-request-user",
    "x-auth-request-email",
    "x-auth-request-preferred-username",
    "x-auth-request-groups",
    "x-auth-request-access-token",
    "x-portcullis-assertion",
];

/// Session secrets published in this project's examples, docs and deployment checks (config/,
/// docs/, README.md, Dockerfile, tests/deploy, tests/bench; also former defaults): anyone can seal
/// a session with them, so `check` and `run` refuse them — and every near miss ([`weak_secret`]).
pub const PLACEHOLDER_SECRETS: &[&str] = &[
    // config/portcullis.example.toml (former `${SESSION_SECRET:-…}` default)
    "change-me-to-32-random-bytes-at-least!!",
    // config/demo.toml (former default)
    "demo-only-session-secret-0123456789abcdef",
    // config/kubernetes/sidecar.yaml (the Secret's placeholder)
    "replace-me-with-at-least-32-random-bytes-0123456789",
    // tests/deploy/validate.sh (former dummy values)
    "dummy-session-secret-0123456789abcdef0123456789",
    "dummy-session-secret-0123456789abcdef0123456789abcdef",
    "dummy-secret-for-portcullis-check-0123456789abcdef0123456789abcd",
    // tests/bench/bench.sh (former value)
    "bench-session-secret-0123456789abcdef-0123",
];

/// Parts that mark a placeholder whatever surrounds them, compared with the secret
/// [`normalized`]: words people write into example secrets, and keyboard or alphabet runs. Each
/// is at least 7 characters, so a random secret (`openssl rand -hex 32` / `-base64 48`) contains
/// one with a probability below 10⁻⁸.
const PLACEHOLDER_MARKERS: &[&str] = &[
    "changeme",
    "changeit",
    "replaceme",
    "placeholder",
    "yoursecret",
    "goeshere",
    "secrethere",
    "example",
    "password",
    "insecure",
    "0123456789",
    "1234567890",
    "9876543210",
    "abcdefghij",
    "qwertyuiop",
];

/// A secret sharing this many consecutive characters (after [`normalized`]) with a published
/// placeholder is a near miss of it.
const PLACEHOLDER_RUN: usize = 16;

/// How to make a good session secret, for the errors below.
const SECRET_FIX: &str = "generate one with `openssl rand -hex 32` and pass it through the environment (`secret = \"${SESSION_SECRET}\"`) or `secret_file`";

/// `s` in lower case with everything but ASCII letters and digits dropped: `Change_Me` and
/// `change-me!` compare as the same placeholder.
fn normalized(s: &str) -> String {
    s.bytes()
        .filter(u8::is_ascii_alphanumeric)
        .map(|b| char::from(b.to_ascii_lowercase()))
        .collect()
}

/// Why `secret` must not seal sessions, if it must not: a published placeholder or a near miss
/// of one (after [`normalized`]: [`PLACEHOLDER_RUN`] consecutive characters of one, or any
/// [`PLACEHOLDER_MARKERS`]), or fewer than 8 distinct characters (`openssl rand -hex 32` has 16
/// possible ones). Never repeats the secret.
fn weak_secret(secret: &str) -> Option<String> {
    let norm = normalized(secret);
    let near_published = PLACEHOLDER_SECRETS.iter().any(|p| {
        let p = normalized(p);
        p.as_bytes()
            .windows(PLACEHOLDER_RUN)
            .any(|w| norm.as_bytes().windows(PLACEHOLDER_RUN).any(|s| s == w))
    });
    if near_published {
        return Some(
            "is (or nearly is) a placeholder published in portcullis' examples or docs: anyone can forge sessions with it"
                .into(),
        );
    }
    if let Some(m) = PLACEHOLDER_MARKERS.iter().find(|m| norm.contains(*m)) {
        return Some(format!(
            "looks like a placeholder (it contains {m:?}, ignoring case and punctuation), not a random value: it is guessable"
        ));
    }
    let mut seen = [false; 256];
    let mut distinct = 0;
    for b in secret.bytes() {
        if !std::mem::replace(&mut seen[usize::from(b)], true) {
            distinct += 1;
        }
    }
    (distinct < 8).then(|| {
        format!("has only {distinct} distinct characters (at least 8 are needed): it is guessable")
    })
}

/// Folds a header name the way upstream frameworks do: lower case, `_` read as `-`.
pub fn fold_header_name(name: &str) -> String {
    name.bytes()
        .map(|b| {
            if b == b'_' {
                '-'
            } else {
                b.to_ascii_lowercase() as char
            }
        })
        .collect()
}

/// Where the config comes from and which extra variables apply.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    pub env_file: Option<PathBuf>,
}

/// Loads and validates a config file. All problems found are returned together.
pub fn load(path: &Path, opts: &LoadOptions) -> Result<Config, ConfigErrors> {
    let single = |key: &str, message: String| {
        ConfigErrors(vec![ConfigError {
            file: path.to_path_buf(),
            line: 0,
            col: 0,
            key: key.to_string(),
            message,
        }])
    };
    let src = std::fs::read_to_string(path).map_err(|e| {
        single(
            "",
            format!("cannot read the config file: {e}; pass an existing file with --config or PORTCULLIS_CONFIG"),
        )
    })?;
    let mut env = HashMap::new();
    if let Some(env_file) = &opts.env_file {
        let iter = dotenvy::from_path_iter(env_file).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                file: env_file.clone(),
                line: 0,
                col: 0,
                key: String::new(),
                message: format!("cannot read the --env-file: {e}"),
            }])
        })?;
        for item in iter {
            let (k, v) = item.map_err(|e| {
                ConfigErrors(vec![ConfigError {
                    file: env_file.clone(),
                    line: 0,
                    col: 0,
                    key: String::new(),
                    message: format!("malformed --env-file: {e}; write one NAME=value per line"),
                }])
            })?;
            env.insert(k, v);
        }
    }
    load_str(path, &src, env)
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
    let raw: RawConfig = match toml::Deserializer::parse(src) {
        Err(e) => {
            errs.at(e.span().unwrap_or(0..0), "", syntax_message(&e));
            return errs.finish().map(|_| unreachable_config());
        }
        Ok(de) => match serde_path_to_error::deserialize::<_, RawConfig>(de) {
            Ok(raw) => raw,
            Err(e) => {
                let key = e
                    .path()
                    .to_string()
                    .replace(".$__serde_spanned_private_value", "")
                    .replace("$__serde_spanned_private_value", "");
                let inner = e.into_inner();
                let key = if key == "." { String::new() } else { key };
                errs.at(inner.span().unwrap_or(0..0), key, friendly(inner.message()));
                return errs.finish().map(|_| unreachable_config());
            }
        },
    };
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let cfg = Validator {
        errs: &mut errs,
        dir: &dir,
    }
    .config(raw, path);
    errs.finish()?;
    Ok(cfg)
}

fn unreachable_config() -> Config {
    // `finish` always returns Err when an error was recorded; this value is never observed.
    Config {
        source: PathBuf::new(),
        server: Validator::default_server(),
        providers: BTreeMap::new(),
        session: None,
        headers: Arc::new(HeaderConfig::defaults()),
        routes: Vec::new(),
        identity_header_names: Default::default(),
    }
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

impl HeaderConfig {
    pub fn defaults() -> Self {
        HeaderConfig {
            user: Some(HeaderName::from_static("x-forwarded-user")),
            email: Some(HeaderName::from_static("x-forwarded-email")),
            preferred_username: Some(HeaderName::from_static("x-forwarded-preferred-username")),
            name: Some(HeaderName::from_static("x-forwarded-name")),
            roles: Some(HeaderName::from_static("x-forwarded-roles")),
            access_token: None,
            authorization: AuthorizationMode::Auto,
            assertion: None,
            assertion_key_file: None,
            claims: Vec::new(),
        }
    }

    /// Every header name this config writes.
    pub fn names(&self) -> impl Iterator<Item = &HeaderName> {
        [
            &self.user,
            &self.email,
            &self.preferred_username,
            &self.name,
            &self.roles,
            &self.access_token,
            &self.assertion,
        ]
        .into_iter()
        .flatten()
        .chain(self.claims.iter().map(|(h, _)| h))
    }
}

struct Validator<'e, 'a> {
    errs: &'e mut Errors<'a>,
    dir: &'e Path,
}

fn span<T>(s: &Spanned<T>) -> Range<usize> {
    s.span()
}

impl Validator<'_, '_> {
    fn default_server() -> Server {
        Server {
            listen: None,
            public_url: None,
            trusted_proxies: Vec::new(),
            admin_listen: None,
            allowed_redirect_hosts: Vec::new(),
            tls: None,
            auth_prefix: "/.auth".to_string(),
            header_read_timeout: Duration::from_secs(10),
            max_header_bytes: 32 * 1024,
            drain_timeout: Duration::from_secs(30),
            max_connections: None,
            upstream_timeout: Duration::from_secs(60),
            upstream_ca_file: None,
        }
    }

    fn path(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.dir.join(p)
        }
    }

    /// Resolves a file path and checks it can be read.
    fn readable(&mut self, v: &Spanned<values::Str>, key: &str) -> Option<(PathBuf, Vec<u8>)> {
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

    /// `<key>` or `<key>_file`: exactly one may be given.
    fn secret(
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

    fn url(&mut self, v: &Spanned<values::Str>, key: &str) -> Option<Url> {
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

    fn header_name(&mut self, v: &Spanned<values::Str>, key: &str) -> Option<Option<HeaderName>> {
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

    fn zitadel_key(&mut self, v: &Spanned<values::Str>, key: &str) -> Option<ZitadelKey> {
        let (p, bytes) = self.readable(v, key)?;
        let k: ZitadelKey = match serde_json::from_slice(&bytes) {
            Ok(k) => k,
            Err(e) => {
                self.errs.at(
                    span(v),
                    key,
                    format!(
                        "{} is not a ZITADEL key file ({e}); expected JSON with \"type\", \"keyId\", \"key\" and \"clientId\" (or \"userId\")",
                        p.display()
                    ),
                );
                return None;
            }
        };
        if let Err(e) = jsonwebtoken::EncodingKey::from_rsa_pem(k.key.as_bytes()) {
            self.errs.at(
                span(v),
                key,
                format!(
                    "the \"key\" in {} is not a PEM RSA private key ({e})",
                    p.display()
                ),
            );
            return None;
        }
        if k.subject().is_none() {
            self.errs.at(
                span(v),
                key,
                format!("{} has neither \"clientId\" nor \"userId\"", p.display()),
            );
            return None;
        }
        Some(k)
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
            let auth = r.auth.as_ref().map(|a| a.get_ref().0.as_str());
            if matches!(auth, Some("login" | "login_or_bearer")) {
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

        let session = raw.session.as_ref().and_then(|s| self.session(s));

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
            self.errs.at(0..0, "route", "no [[route]] is configured: add at least one [[route]] with path, upstream and auth");
        }
        // A `[session]` section that is there but refused has said why already.
        if raw.session.is_none()
            && let Some((i, r)) = raw.routes.iter().enumerate().find(|(_, r)| {
                r.get_ref()
                    .auth
                    .as_ref()
                    .is_some_and(|a| matches!(a.get_ref().0.as_str(), "login" | "login_or_bearer"))
            })
        {
            self.errs.at(
                    span(r),
                    format!("route[{i}].auth"),
                    "this route uses browser login but there is no [session] section: add [session] with a secret of at least 32 bytes",
                );
        }

        let mut identity_header_names: crate::headers::IdentityNames =
            DEFAULT_IDENTITY_HEADERS.iter().collect();
        for h in headers.names() {
            identity_header_names.insert(&fold_header_name(h.as_str()));
        }
        for r in &routes {
            for h in r.headers.names() {
                identity_header_names.insert(&fold_header_name(h.as_str()));
            }
        }

        Config {
            source: path.to_path_buf(),
            server,
            providers,
            session,
            headers,
            routes,
            identity_header_names,
        }
    }

    fn server(&mut self, s: &RawServer) -> Server {
        let mut out = Self::default_server();
        out.listen = s.listen.as_ref().map(|l| l.get_ref().0);
        out.admin_listen = s.admin_listen.as_ref().map(|l| l.get_ref().0);
        if let Some(u) = &s.public_url
            && let Some(url) = self.url(u, "server.public_url")
        {
            if url.path() != "/" || url.query().is_some() {
                self.errs.at(
                    span(u),
                    "server.public_url",
                    "give only the origin (scheme://host[:port]), without a path",
                );
            } else {
                out.public_url = Some(url);
            }
        }
        for (i, t) in s.trusted_proxies.iter().enumerate() {
            let txt = t.get_ref().trim();
            let parsed = txt
                .parse::<IpNet>()
                .or_else(|_| txt.parse::<std::net::IpAddr>().map(IpNet::from));
            match parsed {
                Ok(n) => out.trusted_proxies.push(n),
                Err(_) => self.errs.at(
                    span(t),
                    format!("server.trusted_proxies[{i}]"),
                    format!("{txt:?} is not an IP address or CIDR range (e.g. \"10.0.0.0/8\")"),
                ),
            }
        }
        for (i, h) in s.allowed_redirect_hosts.iter().enumerate() {
            match HostPattern::parse(h.get_ref()) {
                Ok(p) => out.allowed_redirect_hosts.push(p),
                Err(e) => self
                    .errs
                    .at(span(h), format!("server.allowed_redirect_hosts[{i}]"), e),
            }
        }
        if let Some(t) = &s.tls {
            let cert = self.readable(&t.cert, "server.tls.cert");
            let key = self.readable(&t.key, "server.tls.key");
            if let (Some((cp, cb)), Some((kp, kb))) = (cert, key) {
                use rustls::pki_types::pem::PemObject;
                use rustls::pki_types::{CertificateDer, PrivateKeyDer};
                let certs: Vec<_> = CertificateDer::pem_slice_iter(&cb).collect();
                if certs.is_empty() || certs.iter().any(|c| c.is_err()) {
                    self.errs.at(
                        span(&t.cert),
                        "server.tls.cert",
                        format!("{} holds no PEM certificate", cp.display()),
                    );
                }
                if PrivateKeyDer::from_pem_slice(&kb).is_err() {
                    self.errs.at(
                        span(&t.key),
                        "server.tls.key",
                        format!("{} holds no PEM private key", kp.display()),
                    );
                }
                out.tls = Some(Tls {
                    listen: t.listen.get_ref().0,
                    cert: cp,
                    key: kp,
                    redirect_http: t.redirect_http,
                });
            }
        }
        if out.listen.is_none() && s.tls.is_none() {
            self.errs.at(
                0..0,
                "server.listen",
                "no listener: set [server] listen = \"0.0.0.0:8080\" or a [server.tls] section",
            );
        }
        if let Some(p) = &s.auth_prefix {
            let v = p.get_ref().trim_end_matches('/');
            if !v.starts_with('/') || v.len() < 2 {
                self.errs.at(
                    span(p),
                    "server.auth_prefix",
                    "must be a path such as \"/.auth\"",
                );
            } else {
                out.auth_prefix = v.to_string();
            }
        }
        if let Some(d) = s.header_read_timeout {
            out.header_read_timeout = d.0;
        }
        if let Some(m) = &s.max_header_bytes {
            if *m.get_ref() < 8192 {
                self.errs
                    .at(span(m), "server.max_header_bytes", "must be at least 8192");
            } else {
                out.max_header_bytes = *m.get_ref();
            }
        }
        if let Some(d) = s.drain_timeout {
            out.drain_timeout = d.0;
        }
        if let Some(m) = &s.max_connections {
            if *m.get_ref() == 0 {
                self.errs.at(
                    span(m),
                    "server.max_connections",
                    "must be at least 1 (leave it out to size it from the open-file limit)",
                );
            } else {
                out.max_connections = Some(*m.get_ref());
            }
        }
        if let Some(d) = s.timeout {
            out.upstream_timeout = d.0;
        }
        if let Some(f) = &s.upstream_ca_file {
            out.upstream_ca_file = self.readable(f, "server.upstream_ca_file").map(|(p, _)| p);
        }
        out
    }

    fn provider(
        &mut self,
        name: &str,
        sp: &Spanned<RawProvider>,
        used_for_login: bool,
    ) -> Option<Provider> {
        let p = sp.get_ref();
        let k = |f: &str| format!("providers.{name}.{f}");
        let issuer = p
            .issuer
            .as_ref()
            .and_then(|i| self.url(i, &k("issuer")).map(|_| i.get_ref().0.clone()));
        let ep = |this: &mut Self, v: &Option<Spanned<values::Str>>, f: &str| {
            v.as_ref().and_then(|v| this.url(v, &k(f)))
        };
        let authorization_endpoint = ep(self, &p.authorization_endpoint, "authorization_endpoint");
        let token_endpoint = ep(self, &p.token_endpoint, "token_endpoint");
        let userinfo_endpoint = ep(self, &p.userinfo_endpoint, "userinfo_endpoint");
        let jwks_uri = ep(self, &p.jwks_uri, "jwks_uri");
        let end_session_endpoint = ep(self, &p.end_session_endpoint, "end_session_endpoint");
        let explicit = [
            p.authorization_endpoint.is_some(),
            p.token_endpoint.is_some(),
            p.userinfo_endpoint.is_some(),
            p.jwks_uri.is_some(),
        ];
        let n_explicit = explicit.iter().filter(|b| **b).count();
        if p.issuer.is_none() && p.jwks_uri.is_none() {
            self.errs.at(
                span(sp),
                format!("providers.{name}"),
                "set `issuer` (discovery) or at least `jwks_uri` (bearer-only provider)",
            );
        }
        if used_for_login && p.issuer.is_none() && n_explicit != 4 {
            self.errs.at(
                span(sp),
                format!("providers.{name}"),
                "a provider used by login routes needs `issuer`, or all four of authorization_endpoint, token_endpoint, userinfo_endpoint and jwks_uri",
            );
        }
        if p.issuer.is_some() && n_explicit > 0 && n_explicit < 4 && used_for_login {
            self.errs.at(
                span(sp),
                format!("providers.{name}"),
                "explicit endpoints go all four together (authorization_endpoint, token_endpoint, userinfo_endpoint, jwks_uri); give all four or none to use discovery",
            );
        }
        let client_id = p.client_id.as_ref().map(|c| c.get_ref().0.clone());
        if used_for_login && client_id.as_deref().is_none_or(str::is_empty) {
            self.errs.at(
                span(sp),
                k("client_id"),
                "a provider used by login routes needs `client_id`",
            );
        }
        let client_secret = self.secret(
            p.client_secret.clone(),
            None,
            p.client_secret_file.as_ref(),
            &k("client_secret"),
        );
        let private_key = p
            .private_key_file
            .as_ref()
            .and_then(|f| self.zitadel_key(f, &k("private_key_file")));
        let token_endpoint_auth = match p
            .token_endpoint_auth
            .as_ref()
            .map(|t| (t, t.get_ref().0.as_str()))
        {
            None if private_key.is_some() => TokenEndpointAuth::PrivateKeyJwt,
            None if client_secret.is_some() => TokenEndpointAuth::ClientSecretBasic,
            None => TokenEndpointAuth::None,
            Some((_, "client_secret_basic")) => TokenEndpointAuth::ClientSecretBasic,
            Some((_, "client_secret_post")) => TokenEndpointAuth::ClientSecretPost,
            Some((_, "private_key_jwt")) => TokenEndpointAuth::PrivateKeyJwt,
            Some((_, "none")) => TokenEndpointAuth::None,
            Some((t, other)) => {
                self.errs.at(
                    span(t),
                    k("token_endpoint_auth"),
                    format!("unknown value {other:?}: use \"client_secret_basic\", \"client_secret_post\", \"private_key_jwt\" or \"none\""),
                );
                TokenEndpointAuth::None
            }
        };
        match token_endpoint_auth {
            TokenEndpointAuth::PrivateKeyJwt
                if private_key.is_none() && p.private_key_file.is_none() =>
            {
                self.errs.at(
                    span(sp),
                    k("token_endpoint_auth"),
                    "private_key_jwt needs `private_key_file` (a ZITADEL key JSON)",
                );
            }
            TokenEndpointAuth::ClientSecretBasic | TokenEndpointAuth::ClientSecretPost
                if client_secret.is_none() && p.client_secret_file.is_none() =>
            {
                self.errs.at(
                    span(sp),
                    k("client_secret"),
                    "this token_endpoint_auth needs `client_secret` or `client_secret_file`",
                );
            }
            _ => {}
        }
        let ca_file = p
            .ca_file
            .as_ref()
            .and_then(|f| self.readable(f, &k("ca_file")).map(|(p, _)| p));
        let introspection = p.introspection.as_ref().and_then(|i| {
            let ir = i.get_ref();
            let endpoint = ir.endpoint.as_ref().and_then(|e| self.url(e, &k("introspection.endpoint")));
            let secret = self.secret(
                ir.client_secret.clone(),
                None,
                ir.client_secret_file.as_ref(),
                &k("introspection.client_secret"),
            );
            let auth = if let Some(f) = &ir.key_file {
                IntrospectionAuth::KeyFile(self.zitadel_key(f, &k("introspection.key_file"))?)
            } else {
                let id = ir.client_id.as_ref().map(|c| c.0.clone()).or(client_id.clone());
                let secret = secret.or(client_secret.clone());
                match (id, secret) {
                    (Some(client_id), Some(client_secret)) => IntrospectionAuth::Basic { client_id, client_secret },
                    _ => {
                        self.errs.at(
                            span(i),
                            format!("providers.{name}.introspection"),
                            "introspection needs credentials: `key_file` (ZITADEL API app key JSON) or client_id + client_secret",
                        );
                        return None;
                    }
                }
            };
            if issuer.is_none() && endpoint.is_none() {
                self.errs.at(span(i), k("introspection.endpoint"), "without `issuer` (discovery) set `endpoint`");
            }
            let max_concurrent = match &ir.max_concurrent {
                None => 16,
                Some(m) if *m.get_ref() == 0 => {
                    self.errs.at(span(m), k("introspection.max_concurrent"), "must be at least 1");
                    16
                }
                Some(m) => *m.get_ref(),
            };
            Some(Introspection {
                endpoint,
                auth,
                cache: ir.cache.map_or(Duration::from_secs(60), |d| d.0),
                max_concurrent,
            })
        });
        let scopes = p
            .scopes
            .as_ref()
            .map(|s| s.iter().map(|x| x.0.clone()).collect())
            .unwrap_or_else(|| vec!["openid".into(), "profile".into(), "email".into()]);
        let audiences = p
            .audiences
            .as_ref()
            .map(|s| {
                s.iter()
                    .map(|x| x.0.clone())
                    .filter(|x| !x.is_empty())
                    .collect::<Vec<_>>()
            })
            .unwrap_or_else(|| client_id.iter().cloned().collect());
        let roles_claim = match p.roles_claim.as_deref() {
            None | Some("auto") | Some("") => RolesClaim::Auto,
            Some(path) => RolesClaim::Path(path.to_string()),
        };
        let project_id = p.project_id.as_ref().and_then(|v| {
            let id = v.get_ref().0.as_str();
            if id.is_empty() || id.contains(':') || id.chars().any(char::is_whitespace) {
                self.errs.at(
                    span(v),
                    k("project_id"),
                    "must be a ZITADEL project id (the number in the console's project URL), without `:` or spaces",
                );
                return None;
            }
            Some(id.to_string())
        });
        Some(Provider {
            name: name.to_string(),
            issuer,
            client_id,
            client_secret,
            private_key,
            scopes,
            audiences,
            roles_claim,
            project_id,
            token_endpoint_auth,
            authorization_endpoint,
            token_endpoint,
            userinfo_endpoint,
            jwks_uri,
            end_session_endpoint,
            ca_file,
            introspection,
            timeout: p.timeout.map_or(Duration::from_secs(10), |d| d.0),
            token_cache: p.token_cache.unwrap_or(true),
            used_for_login,
        })
    }

    fn session(&mut self, ss: &Spanned<RawSession>) -> Option<Session> {
        let s = ss.get_ref();
        let secret = self.secret(
            s.secret.as_ref().map(|x| x.get_ref().clone()),
            s.secret.as_ref().map(span),
            s.secret_file.as_ref(),
            "session.secret",
        );
        // where a problem with the secret is reported: its key, else the section
        let at = s
            .secret
            .as_ref()
            .map(span)
            .or(s.secret_file.as_ref().map(span))
            .unwrap_or_else(|| span(ss));
        let secret = match secret {
            Some(sec) if sec.expose().len() >= 32 => sec,
            Some(sec) => {
                self.errs.at(
                    at,
                    "session.secret",
                    format!(
                        "the session secret is {} bytes; it must be at least 32 (generate one with `openssl rand -base64 48`)",
                        sec.expose().len()
                    ),
                );
                return None;
            }
            None => {
                if s.secret.is_none() && s.secret_file.is_none() {
                    self.errs.at(
                        span(ss),
                        "session.secret",
                        "missing: set `secret` (≥ 32 bytes) or `secret_file`",
                    );
                }
                return None;
            }
        };
        if let Some(problem) = weak_secret(secret.expose()) {
            let from = if s.secret.is_none() {
                "the session secret in `secret_file`"
            } else {
                "the session secret"
            };
            self.errs.at(
                at,
                "session.secret",
                format!("{from} {problem}; {SECRET_FIX}"),
            );
            return None;
        }
        let mut previous = Vec::new();
        for (i, p) in s.previous_secrets.iter().enumerate() {
            if p.get_ref().expose().len() < 32 {
                self.errs.at(
                    span(p),
                    format!("session.previous_secrets[{i}]"),
                    "each secret must be at least 32 bytes",
                );
            } else if let Some(problem) = weak_secret(p.get_ref().expose()) {
                self.errs.at(
                    span(p),
                    format!("session.previous_secrets[{i}]"),
                    format!("this secret {problem}; remove it (cookies sealed with it could be forged): {SECRET_FIX}"),
                );
            } else {
                previous.push(p.get_ref().clone());
            }
        }
        let redis_url = self.secret(
            s.redis_url.as_ref().map(|x| x.get_ref().clone()),
            s.redis_url.as_ref().map(span),
            s.redis_url_file.as_ref(),
            "session.redis_url",
        );
        let store = match s.store.as_ref().map(|x| (x, x.get_ref().0.as_str())) {
            None | Some((_, "cookie")) => SessionStore::Cookie,
            Some((st, "redis")) => {
                match redis_url {
                    Some(url) => {
                        if !(url.expose().starts_with("redis://")
                            || url.expose().starts_with("rediss://"))
                        {
                            let at = s.redis_url.as_ref().map(span).unwrap_or_else(|| span(st));
                            self.errs.at(
                                at,
                                "session.redis_url",
                                "must start with redis:// or rediss://",
                            );
                        }
                        SessionStore::Redis { url }
                    }
                    None => {
                        self.errs.at(span(st), "session.redis_url", "store = \"redis\" needs `redis_url` (e.g. \"redis://127.0.0.1:6379/0\")");
                        return None;
                    }
                }
            }
            Some((st, other)) => {
                self.errs.at(
                    span(st),
                    "session.store",
                    format!("unknown store {other:?}: use \"cookie\" or \"redis\""),
                );
                return None;
            }
        };
        let cookie_name = match &s.cookie_name {
            Some(c) => {
                let v = c.get_ref().0.clone();
                if v.is_empty()
                    || !v
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                {
                    self.errs.at(
                        span(c),
                        "session.cookie_name",
                        "use letters, digits, '-' and '_' only",
                    );
                }
                v
            }
            None => "portcullis".to_string(),
        };
        let post_logout_redirect = s
            .post_logout_redirect
            .as_ref()
            .map_or_else(|| "/".to_string(), |p| p.get_ref().0.clone());
        Some(Session {
            secret,
            previous_secrets: previous,
            store,
            cookie_name,
            lifetime: s.lifetime.map_or(Duration::from_secs(12 * 3600), |d| d.0),
            idle_timeout: s.idle_timeout.map_or(Duration::from_secs(3600), |d| d.0),
            refresh: s.refresh.unwrap_or(true),
            post_logout_redirect,
        })
    }

    fn headers(&mut self, h: &RawHeaders, base: Option<&HeaderConfig>) -> HeaderConfig {
        let mut out = base.cloned().unwrap_or_else(HeaderConfig::defaults);
        let prefix = if base.is_some() {
            "route.headers"
        } else {
            "headers"
        };
        macro_rules! name {
            ($field:ident) => {
                if let Some(v) = &h.$field {
                    if let Some(n) =
                        self.header_name(v, &format!("{prefix}.{}", stringify!($field)))
                    {
                        out.$field = n;
                    }
                }
            };
        }
        name!(user);
        name!(email);
        name!(preferred_username);
        name!(name);
        name!(roles);
        name!(access_token);
        name!(assertion);
        if let Some(a) = &h.authorization {
            out.authorization = match a.get_ref().0.as_str() {
                "auto" => AuthorizationMode::Auto,
                "pass" => AuthorizationMode::Pass,
                "strip" => AuthorizationMode::Strip,
                "access_token" => AuthorizationMode::AccessToken,
                other => {
                    self.errs.at(
                        span(a),
                        format!("{prefix}.authorization"),
                        format!(
                            "unknown value {other:?}: use \"auto\", \"pass\", \"strip\" or \"access_token\""
                        ),
                    );
                    out.authorization
                }
            };
        }
        if let Some(f) = &h.assertion_key_file
            && let Some((p, bytes)) = self.readable(f, &format!("{prefix}.assertion_key_file"))
        {
            if jsonwebtoken::EncodingKey::from_ec_pem(&bytes).is_err() {
                self.errs.at(
                    span(f),
                    format!("{prefix}.assertion_key_file"),
                    "not a PEM (PKCS#8) EC P-256 private key",
                );
            }
            out.assertion_key_file = Some(p);
        }
        for (header, claim) in &h.claims {
            match HeaderName::from_bytes(header.as_bytes()) {
                Ok(n) => {
                    out.claims.retain(|(x, _)| x != n);
                    if !claim.get_ref().is_empty() {
                        out.claims.push((n, claim.get_ref().0.clone()));
                    }
                }
                Err(_) => self.errs.at(
                    span(claim),
                    format!("{prefix}.claims"),
                    format!("{header:?} is not a valid header name"),
                ),
            }
        }
        out
    }

    #[allow(clippy::too_many_arguments)]
    fn route(
        &mut self,
        i: usize,
        sr: &Spanned<RawRoute>,
        raw: &RawConfig,
        global_headers: &Arc<HeaderConfig>,
        only_provider: &Option<String>,
        server: &Server,
    ) -> Option<Route> {
        let r = sr.get_ref();
        let k = |f: &str| format!("route[{i}].{f}");
        let name = r
            .name
            .as_ref()
            .map_or_else(|| format!("route-{i}"), |n| n.get_ref().0.clone());
        let mut ok = true;
        let Some(path) = &r.path else {
            self.errs
                .at(span(sr), k("path"), "missing `path` (e.g. path = \"/\")");
            return None;
        };
        let Some(upstream) = &r.upstream else {
            self.errs.at(
                span(sr),
                k("upstream"),
                "missing `upstream` (e.g. upstream = \"http://127.0.0.1:3000\")",
            );
            return None;
        };
        let Some(auth_s) = &r.auth else {
            self.errs.at(
                span(sr),
                k("auth"),
                "missing `auth`: choose \"none\", \"login\", \"bearer\" or \"login_or_bearer\"",
            );
            return None;
        };
        let auth = match auth_s.get_ref().0.as_str() {
            "none" => AuthMode::None,
            "login" => AuthMode::Login,
            "bearer" => AuthMode::Bearer,
            "login_or_bearer" => AuthMode::LoginOrBearer,
            other => {
                self.errs.at(
                    span(auth_s),
                    k("auth"),
                    format!("unknown auth {other:?}: use \"none\", \"login\", \"bearer\" or \"login_or_bearer\""),
                );
                return None;
            }
        };
        let p = path.get_ref().0.as_str();
        if !p.starts_with('/') {
            self.errs
                .at(span(path), k("path"), format!("{p:?} must start with '/'"));
            ok = false;
        } else if crate::routes::normalize_path(p)
            .map(|n| n != p.trim_end_matches('/') && n != p)
            .unwrap_or(true)
        {
            self.errs.at(
                span(path),
                k("path"),
                format!("{p:?} is not a normalized path (no '//', '.', '..' or encoded unreserved characters)"),
            );
            ok = false;
        }
        if p.starts_with(&format!("{}/", server.auth_prefix)) || p == server.auth_prefix {
            self.errs.at(
                span(path),
                k("path"),
                format!("paths under {} belong to the proxy", server.auth_prefix),
            );
            ok = false;
        }
        let methods: Option<Vec<String>> = r
            .methods
            .as_ref()
            .map(|m| m.get_ref().iter().map(|x| x.0.clone()).collect());
        let matcher = match Matcher::new(
            r.host.as_ref().map(|h| h.get_ref().0.as_str()),
            p,
            methods.as_deref(),
        ) {
            Ok(m) => m,
            Err(e) => {
                let at = r.host.as_ref().map(span).unwrap_or_else(|| span(sr));
                self.errs.at(at, k("host"), e);
                return None;
            }
        };
        let upstream = match self.url(upstream, &k("upstream")) {
            Some(u) => {
                let authority = u[url::Position::BeforeHost..url::Position::AfterPort]
                    .parse::<http::uri::Authority>();
                let scheme = if u.scheme() == "https" {
                    http::uri::Scheme::HTTPS
                } else {
                    http::uri::Scheme::HTTP
                };
                match authority {
                    Ok(authority)
                        if u.query().is_none()
                            && u.fragment().is_none()
                            && u.username().is_empty() =>
                    {
                        Upstream {
                            base_path: u.path().trim_end_matches('/').to_string(),
                            url: u,
                            scheme,
                            authority,
                        }
                    }
                    _ => {
                        self.errs.at(span(upstream), k("upstream"), "give scheme://host[:port][/path] without query, fragment or credentials");
                        return None;
                    }
                }
            }
            None => return None,
        };
        let provider = match &r.provider {
            Some(pn) => {
                if !raw.providers.contains_key(&pn.get_ref().0) {
                    let known: Vec<_> = raw.providers.keys().map(String::as_str).collect();
                    self.errs.at(
                        span(pn),
                        k("provider"),
                        format!(
                            "no provider named {:?}; defined: [{}]",
                            pn.get_ref().0,
                            known.join(", ")
                        ),
                    );
                    ok = false;
                }
                Some(pn.get_ref().0.clone())
            }
            None if auth == AuthMode::None => None,
            None => match only_provider {
                Some(p) => Some(p.clone()),
                None if raw.providers.is_empty() => {
                    self.errs.at(
                        span(auth_s),
                        k("auth"),
                        format!(
                            "auth = {:?} needs a provider: add a [providers.NAME] section",
                            auth.as_str()
                        ),
                    );
                    ok = false;
                    None
                }
                None => {
                    self.errs.at(
                        span(auth_s),
                        k("provider"),
                        "several providers are configured: name one with provider = \"NAME\"",
                    );
                    ok = false;
                    None
                }
            },
        };
        let mut require_claims = Vec::new();
        for (claim, v) in &r.require_claims {
            let vals = match v.get_ref() {
                serde_json::Value::Array(a) => a.clone(),
                other => vec![other.clone()],
            };
            if vals.is_empty()
                || vals
                    .iter()
                    .any(|x| x.is_array() || x.is_object() || x.is_null())
            {
                self.errs.at(
                    span(v),
                    k(&format!("require_claims.{claim}")),
                    "give a value (string, number, boolean) or a list of accepted values",
                );
                ok = false;
            }
            require_claims.push((claim.clone(), vals));
        }
        let has_requirements = !r.require_roles.is_empty()
            || !r.require_any_role.is_empty()
            || !r.require_claims.is_empty();
        if auth == AuthMode::None && has_requirements {
            self.errs.at(
                span(auth_s),
                k("auth"),
                "require_roles/require_any_role/require_claims need an authenticated route: set auth to \"login\", \"bearer\" or \"login_or_bearer\"",
            );
            ok = false;
        }
        let headers = match &r.headers {
            Some(h) => Arc::new(self.headers(h, Some(global_headers))),
            None => global_headers.clone(),
        };
        let upstream_ca_file = match &r.upstream_ca_file {
            Some(f) => self.readable(f, &k("upstream_ca_file")).map(|(p, _)| p),
            None => server.upstream_ca_file.clone(),
        };
        ok.then(|| Route {
            name,
            matcher,
            upstream,
            auth,
            provider,
            require_roles: r.require_roles.iter().map(|x| x.0.clone()).collect(),
            require_any_role: r.require_any_role.iter().map(|x| x.0.clone()).collect(),
            require_claims,
            headers,
            timeout: r.timeout.map_or(server.upstream_timeout, |d| d.0),
            websocket: r.websocket.unwrap_or(false),
            strip_prefix: r.strip_prefix.unwrap_or(false),
            preserve_host: r.preserve_host.unwrap_or(true),
            upstream_ca_file,
        })
    }
}

#[cfg(test)]
mod tests;
