//! Configuration: the TOML file (`raw`), its leaf values and interpolation (`values`), the loader
//! (`load`) and the validated, typed [`Config`] the proxy runs on, one module per section
//! (`server`, `provider`, `session`, `headers`, `forward_auth`, `route`, `policy_test`, `telemetry`). Every problem is found here, at load,
//! and reported with file:line:col and the key; nothing is left to fail on the first request:
//! files the runtime needs (TLS pair, CA files, key files) are read and parsed here, once, and
//! the runtime takes the parsed material from [`Config`]. One load path serves `run`, `check`,
//! `explain` and the TLS/config reloads.

mod error;
mod forward_auth;
mod headers;
pub mod identity_names;
mod load;
pub mod policy_test;
mod provider;
mod raw;
mod route;
mod scopes;
mod server;
mod session;
mod telemetry;
pub mod values;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

pub use error::{ConfigError, ConfigErrors};
pub use forward_auth::ForwardAuth;
pub use headers::{AuthorizationMode, DEFAULT_IDENTITY_HEADERS, HeaderConfig, fold_header_name};
pub use identity_names::{ALWAYS_STRIPPED, IdentityNames};
pub use load::{LoadOptions, load, load_identities, load_str, load_tests};
pub use policy_test::{
    Expect, PolicyTest, REASON_ALIASES, REASONS, TestIdentity, TestRequest, jwt_claims, reason_code,
};
pub use provider::{
    Introspection, IntrospectionAuth, Provider, RolesClaim, TokenEndpointAuth, ZitadelKey,
};
pub use route::{AuthMode, OrgRef, OrgRolesRule, Route, Upstream, UpstreamProtocol};
pub use server::{PairPart, Server, Tls, certified_key};
pub use session::{
    PLACEHOLDER_SECRETS, RedisSentinel, RedisServer, Session, SessionStore, in_cookie_domain,
    parse_sentinel_url, weak_secret,
};
pub use telemetry::Telemetry;
pub use values::{Dur, Secret};

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
    pub forward_auth: ForwardAuth,
    pub routes: Vec<Arc<Route>>,
    /// Every header name that carries identity, lower-cased with `_` folded to `-`:
    /// stripped from every incoming request whatever its spelling.
    pub identity_header_names: IdentityNames,
    /// `[[test]]` tables (policy tests), validated.
    pub tests: Vec<PolicyTest>,
    pub telemetry: Telemetry,
    /// Problems that do not stop the config from loading (`check` prints them, exit 0).
    pub warnings: Vec<ConfigError>,
}

#[cfg(test)]
mod tests;
