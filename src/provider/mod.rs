//! Everything that talks to an OpenID provider: discovery, the JWKS cache, the token,
//! userinfo, introspection and revocation endpoints, and client authentication (secrets or
//! `private_key_jwt` from a ZITADEL key file). One shared HTTP client with timeouts, a body
//! size cap and no redirect following (SSRF).
//!
//! Loading: discovery (`{issuer}/.well-known/openid-configuration`, whose `issuer` must equal the
//! configured one byte for byte) or the explicit endpoints, then the JWKS. A background task per
//! provider retries with backoff while the provider is down and refreshes the keys before they
//! go stale; `/readyz` reports `provider:<name>` not ready until discovery and keys are loaded.
//! Keys stay in use through an outage. An unknown `kid` triggers at most one refetch per
//! [`REFETCH_INTERVAL`] (a flood of random kids cannot make the proxy hammer the provider).
//! A config reload keeps the runtime of each provider whose settings did not change
//! ([`Providers::carry_over`]): its metadata, keys and caches, with no request to the provider.

pub mod assertion;
pub mod http;
pub mod id_token;
pub mod introspection;
pub mod jwks;

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use ::http::StatusCode;
use arc_swap::ArcSwapOption;
use serde_json::{Map, Value};
use url::Url;

use crate::config::{self, Config};
use crate::health::Health;

/// What discovery (or the explicit endpoints) says about a provider.
#[derive(Debug, Clone)]
pub struct Metadata {
    pub issuer: String,
    pub authorization_endpoint: Option<Url>,
    pub token_endpoint: Option<Url>,
    pub userinfo_endpoint: Option<Url>,
    pub jwks_uri: Option<Url>,
    pub end_session_endpoint: Option<Url>,
    pub introspection_endpoint: Option<Url>,
    pub revocation_endpoint: Option<Url>,
    /// RFC 9207: the provider sends `iss` in the authorization response.
    pub authorization_response_iss_parameter_supported: bool,
}

/// A provider could not be used.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProviderError {
    /// Unreachable, discovery/keys not loaded yet, timeout, 5xx → the caller answers 503.
    #[error("provider {provider:?} unavailable: {reason}")]
    Unavailable { provider: String, reason: String },
    /// The provider answered with an OAuth error (e.g. invalid_grant).
    #[error("provider {provider:?} refused: {error}{}", description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Rejected {
        provider: String,
        error: String,
        description: Option<String>,
    },
    /// The provider's answer could not be understood.
    #[error("provider {provider:?} sent an invalid response: {reason}")]
    Invalid { provider: String, reason: String },
}

/// Why a token was not accepted. `Display` is the RFC 6750 `error_description`: it names the
/// failed check and never echoes the token.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TokenError {
    #[error("the token is malformed")]
    Malformed,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token signature is invalid")]
    BadSignature,
    #[error("the token's signing key is unknown")]
    UnknownKey,
    #[error("the token algorithm is not accepted: {0}")]
    Algorithm(String),
    #[error("the token issuer is not accepted")]
    Issuer,
    #[error("the token audience is not accepted")]
    Audience,
    #[error("the token lacks the required claim `{0}`")]
    MissingClaim(&'static str),
    #[error("the token is not active")]
    Inactive,
    /// An ID, refresh or logout token presented where only access tokens count: which kind
    /// it is (`"an ID token"`) and what showed it (`"it carries `at_hash`"`).
    #[error("the token is not an access token: {0} ({1})")]
    NotAccessToken(&'static str, &'static str),
    #[error("{0}")]
    Other(String),
    /// The provider is needed and unreachable → 503, never 200.
    #[error(transparent)]
    Unavailable(#[from] ProviderError),
}

/// A token endpoint response.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct TokenResponse {
    pub access_token: String,
    #[serde(default)]
    pub token_type: String,
    pub expires_in: Option<u64>,
    pub refresh_token: Option<String>,
    pub id_token: Option<String>,
    pub scope: Option<String>,
}

/// Shortest time between two on-demand JWKS fetches (unknown `kid`, keys missing).
pub const REFETCH_INTERVAL: Duration = Duration::from_secs(10);
/// JWKS refresh period when the provider does not say (Cache-Control max-age), and its bounds.
const DEFAULT_REFRESH: Duration = Duration::from_secs(300);
const MIN_REFRESH: Duration = Duration::from_secs(60);
const MAX_REFRESH: Duration = Duration::from_secs(3600);

#[derive(Default)]
struct Refetch {
    last: Option<Instant>,
    last_error: Option<ProviderError>,
}

/// One configured provider at run time.
pub struct ProviderRuntime {
    pub config: Arc<config::Provider>,
    http: http::ProviderClient,
    meta: ArcSwapOption<Metadata>,
    keys: jwks::SharedKeys,
    refetch: tokio::sync::Mutex<Refetch>,
    discovery: tokio::sync::Mutex<()>,
    client_key: Option<assertion::ClientKey>,
    introspector: Option<introspection::Introspector>,
    /// A reload replaced or removed it: its background task stops reporting readiness (the
    /// name's entry belongs to the new runtime, or is gone) while requests finish on it.
    retired: std::sync::atomic::AtomicBool,
}

impl ProviderRuntime {
    pub fn new(config: Arc<config::Provider>, http: http::ProviderClient) -> Result<Self, String> {
        let client_key = match (&config.private_key, config.token_endpoint_auth) {
            (Some(k), _) => Some(
                assertion::ClientKey::new(k)
                    .map_err(|e| format!("provider {}: {e}", config.name))?,
            ),
            (None, config::TokenEndpointAuth::PrivateKeyJwt) => {
                return Err(format!(
                    "provider {}: private_key_jwt needs private_key_file",
                    config.name
                ));
            }
            _ => None,
        };
        let introspector = config
            .introspection
            .as_ref()
            .map(|i| introspection::Introspector::new(&config.name, i))
            .transpose()
            .map_err(|e| format!("provider {} introspection: {e}", config.name))?;
        Ok(ProviderRuntime {
            config,
            http,
            meta: ArcSwapOption::empty(),
            keys: jwks::empty(),
            refetch: tokio::sync::Mutex::new(Refetch::default()),
            discovery: tokio::sync::Mutex::new(()),
            client_key,
            introspector,
            retired: Default::default(),
        })
    }

    /// The HTTP client it talks to the provider with (`portcullis doctor` sends its own probes).
    pub fn http(&self) -> &http::ProviderClient {
        &self.http
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// The loaded metadata, or `Unavailable` until discovery succeeded.
    pub fn metadata(&self) -> Result<Arc<Metadata>, ProviderError> {
        self.meta
            .load_full()
            .ok_or_else(|| self.unavailable("discovery has not succeeded yet"))
    }

    /// Whether discovery and (when there is a `jwks_uri`) the keys are loaded.
    pub fn is_loaded(&self) -> bool {
        match self.meta.load().as_ref() {
            None => false,
            Some(m) => m.jwks_uri.is_none() || self.keys.load().is_some(),
        }
    }

    /// Whether opaque tokens can be introspected.
    pub fn has_introspection(&self) -> bool {
        self.introspector.is_some()
    }

    /// Verifies a JWT signed by this provider (signature by the JWKS key its `kid` names,
    /// `alg` from the key, `iss`, `exp`, `nbf`, and `aud` ∋ one of `audiences`); returns its claims.
    pub async fn verify_jwt(
        &self,
        token: &str,
        audiences: &[String],
    ) -> Result<Map<String, Value>, TokenError> {
        self.verify_jwt_with_header(token, audiences)
            .await
            .map(|(_, claims)| claims)
    }

    /// [`Self::verify_jwt`], also returning the screened header (its `typ` tells an access
    /// token from other kinds on bearer routes).
    pub async fn verify_jwt_with_header(
        &self,
        token: &str,
        audiences: &[String],
    ) -> Result<(jwks::JwtHeader, Map<String, Value>), TokenError> {
        let header = jwks::screen_header(token)?;
        let issuer = self.config.issuer.as_deref();
        if let Some(set) = self.keys.load().as_ref()
            && let jwks::Lookup::Found(k) = jwks::lookup(set, &header)?
        {
            let claims = jwks::verify_with(token, k, issuer, audiences)?;
            return Ok((header, claims));
        }
        // Unknown kid (or no keys yet): one refetch per REFETCH_INTERVAL, shared by everyone.
        self.refetch_keys().await?;
        let set = self.keys.load_full().ok_or_else(|| {
            TokenError::Unavailable(self.unavailable("signing keys are not loaded"))
        })?;
        match jwks::lookup(&set, &header)? {
            jwks::Lookup::Found(k) => {
                let claims = jwks::verify_with(token, k, issuer, audiences)?;
                Ok((header, claims))
            }
            jwks::Lookup::Missing => Err(TokenError::UnknownKey),
        }
    }

    /// Introspects an opaque access token (RFC 7662) and applies the checks of
    /// [`introspection::check`]. Cached; `Unavailable` when the provider cannot answer.
    pub async fn introspect(&self, token: &str) -> Result<introspection::Introspected, TokenError> {
        let Some(intro) = &self.introspector else {
            return Err(TokenError::Other(
                "opaque tokens are not accepted on this route (no introspection configured)".into(),
            ));
        };
        let endpoint = match self
            .config
            .introspection
            .as_ref()
            .and_then(|i| i.endpoint.clone())
        {
            Some(e) => e,
            None => self
                .metadata()?
                .introspection_endpoint
                .clone()
                .ok_or_else(|| {
                    TokenError::Unavailable(
                        self.unavailable("the provider has no introspection endpoint"),
                    )
                })?,
        };
        intro
            .introspect(
                &self.http,
                endpoint.as_str(),
                self.config.issuer.as_deref(),
                &self.config.audiences,
                token,
                self.config.timeout,
            )
            .await
    }

    /// On-demand JWKS fetch, rate limited to one per [`REFETCH_INTERVAL`]. `Err` (→ 503) when
    /// the keys could not be refreshed and the provider is therefore needed but unavailable.
    async fn refetch_keys(&self) -> Result<(), ProviderError> {
        let mut st = self.refetch.lock().await;
        if let Some(last) = st.last
            && last.elapsed() < REFETCH_INTERVAL
        {
            return match &st.last_error {
                Some(e) => Err(e.clone()),
                None => Ok(()),
            };
        }
        st.last = Some(Instant::now());
        let r = async {
            if self.meta.load().is_none() {
                self.discover().await?;
            }
            self.fetch_keys().await.map(|_| ())
        }
        .await;
        st.last_error = r.as_ref().err().cloned();
        r
    }

    /// Loads discovery (if needed) and the keys now; used at startup by the background task
    /// and by `portcullis explain`.
    pub async fn load_now(&self) -> Result<Duration, ProviderError> {
        if self.meta.load().is_none() {
            self.discover().await?;
        }
        let has_jwks = self
            .meta
            .load()
            .as_ref()
            .is_some_and(|m| m.jwks_uri.is_some());
        if has_jwks {
            self.fetch_keys().await
        } else {
            Ok(DEFAULT_REFRESH)
        }
    }

    async fn discover(&self) -> Result<Arc<Metadata>, ProviderError> {
        let _g = self.discovery.lock().await;
        if let Some(m) = self.meta.load_full() {
            return Ok(m);
        }
        let c = &self.config;
        // A bearer-only provider that names its jwks_uri (and, with introspection, its endpoint)
        // needs nothing from discovery: skip it, so a provider whose discovery document is not
        // reachable from the proxy still works. `iss` is still checked against `issuer`.
        let bearer_only_explicit = !c.used_for_login
            && c.jwks_uri.is_some()
            && c.introspection
                .as_ref()
                .is_none_or(|i| i.endpoint.is_some());
        let meta = if c.explicit_endpoints() || bearer_only_explicit {
            Metadata {
                issuer: c.issuer.clone().unwrap_or_default(),
                authorization_endpoint: c.authorization_endpoint.clone(),
                token_endpoint: c.token_endpoint.clone(),
                userinfo_endpoint: c.userinfo_endpoint.clone(),
                jwks_uri: c.jwks_uri.clone(),
                end_session_endpoint: c.end_session_endpoint.clone(),
                introspection_endpoint: c.introspection.as_ref().and_then(|i| i.endpoint.clone()),
                revocation_endpoint: None,
                authorization_response_iss_parameter_supported: false,
            }
        } else {
            let issuer = c.issuer.clone().unwrap_or_default();
            let url = format!(
                "{}/.well-known/openid-configuration",
                issuer.trim_end_matches('/')
            );
            let reply = self
                .http
                .get(&url, None, c.timeout)
                .await
                .map_err(|e| self.unavailable(&format!("discovery: {e}")))?;
            if !reply.status.is_success() {
                return Err(
                    self.unavailable(&format!("discovery: {url} answered {}", reply.status))
                );
            }
            let doc: Map<String, Value> = serde_json::from_slice(&reply.body)
                .map_err(|e| self.invalid(&format!("discovery document: {e}")))?;
            parse_metadata(&doc, c).map_err(|e| self.invalid(&e))?
        };
        let meta = Arc::new(meta);
        self.meta.store(Some(meta.clone()));
        Ok(meta)
    }

    /// Fetches the JWKS and swaps it in; returns how long it may be used before a refresh.
    async fn fetch_keys(&self) -> Result<Duration, ProviderError> {
        let meta = self.metadata()?;
        let Some(uri) = &meta.jwks_uri else {
            return Err(self.invalid("the provider has no jwks_uri"));
        };
        let reply = self
            .http
            .get(uri.as_str(), None, self.config.timeout)
            .await
            .map_err(|e| self.unavailable(&format!("JWKS: {e}")))?;
        if !reply.status.is_success() {
            return Err(self.unavailable(&format!("JWKS: {uri} answered {}", reply.status)));
        }
        let set = jwks::KeySet::parse(&reply.body).map_err(|e| self.invalid(&e))?;
        if set.keys.is_empty() {
            return Err(self.invalid("the JWKS has no usable signature key"));
        }
        tracing::debug!(provider = %self.config.name, keys = set.keys.len(), "JWKS loaded");
        self.keys.store(Some(Arc::new(set)));
        Ok(http::max_age(&reply.headers)
            .unwrap_or(DEFAULT_REFRESH)
            .clamp(MIN_REFRESH, MAX_REFRESH))
    }

    /// POSTs to the token endpoint with client authentication per `token_endpoint_auth`.
    pub async fn token_request(
        &self,
        params: &[(&str, &str)],
    ) -> Result<TokenResponse, ProviderError> {
        let meta = self.metadata()?;
        let endpoint = meta
            .token_endpoint
            .as_ref()
            .ok_or_else(|| self.invalid("the provider has no token_endpoint"))?;
        let reply = self
            .client_authenticated_post(endpoint.as_str(), params)
            .await?;
        if reply.status.is_success() {
            return serde_json::from_slice(&reply.body)
                .map_err(|e| self.invalid(&format!("token response: {e}")));
        }
        Err(self.error_reply(&reply, "token endpoint"))
    }

    /// GETs userinfo with the access token.
    pub async fn userinfo(&self, access_token: &str) -> Result<Map<String, Value>, ProviderError> {
        let meta = self.metadata()?;
        let endpoint = meta
            .userinfo_endpoint
            .as_ref()
            .ok_or_else(|| self.invalid("the provider has no userinfo_endpoint"))?;
        let reply = self
            .http
            .get(endpoint.as_str(), Some(access_token), self.config.timeout)
            .await
            .map_err(|e| self.unavailable(&format!("userinfo: {e}")))?;
        if reply.status.is_success() {
            return serde_json::from_slice(&reply.body)
                .map_err(|e| self.invalid(&format!("userinfo (only JSON is supported): {e}")));
        }
        if reply.status == StatusCode::UNAUTHORIZED || reply.status == StatusCode::FORBIDDEN {
            return Err(ProviderError::Rejected {
                provider: self.config.name.clone(),
                error: "invalid_token".into(),
                description: Some(format!("userinfo answered {}", reply.status)),
            });
        }
        Err(self.error_reply(&reply, "userinfo"))
    }

    /// Revokes a token (RFC 7009) when the provider has a revocation endpoint (no-op otherwise).
    pub async fn revoke(&self, token: &str, hint: &str) -> Result<(), ProviderError> {
        let meta = self.metadata()?;
        let Some(endpoint) = &meta.revocation_endpoint else {
            return Ok(());
        };
        let reply = self
            .client_authenticated_post(
                endpoint.as_str(),
                &[("token", token), ("token_type_hint", hint)],
            )
            .await?;
        if reply.status.is_success() {
            return Ok(());
        }
        Err(self.error_reply(&reply, "revocation endpoint"))
    }

    /// Role names from claims, per `roles_claim` (DESIGN.md, Roles).
    pub fn roles(&self, claims: &Map<String, Value>) -> Vec<String> {
        crate::claims::roles(
            claims,
            &self.config.roles_claim,
            self.config.client_id.as_deref(),
            self.config.project_id.as_deref(),
        )
    }

    /// Which organizations granted which roles (ZITADEL role map), per `roles_claim`.
    pub fn org_roles(&self, claims: &Map<String, Value>) -> crate::claims::OrgRoles {
        crate::claims::org_roles(
            claims,
            &self.config.roles_claim,
            self.config.project_id.as_deref(),
        )
    }

    async fn client_authenticated_post(
        &self,
        endpoint: &str,
        params: &[(&str, &str)],
    ) -> Result<http::Reply, ProviderError> {
        let c = &self.config;
        let mut form: Vec<(&str, &str)> = params.to_vec();
        let client_id = c.client_id.as_deref().unwrap_or("");
        let secret = c.client_secret.as_ref().map(|s| s.expose()).unwrap_or("");
        let mut authz = None;
        let assertion;
        match c.token_endpoint_auth {
            config::TokenEndpointAuth::ClientSecretBasic => {
                authz = Some(http::basic_auth(client_id, secret))
            }
            config::TokenEndpointAuth::ClientSecretPost => {
                form.push(("client_id", client_id));
                form.push(("client_secret", secret));
            }
            config::TokenEndpointAuth::PrivateKeyJwt => {
                let key = self
                    .client_key
                    .as_ref()
                    .ok_or_else(|| self.invalid("private_key_jwt without a key"))?;
                let aud = c.issuer.as_deref().unwrap_or(endpoint);
                assertion = key
                    .assertion(aud)
                    .map_err(|e| self.invalid(&format!("client assertion: {e}")))?;
                form.push((
                    "client_id",
                    if client_id.is_empty() {
                        key.client_id.as_str()
                    } else {
                        client_id
                    },
                ));
                form.push(("client_assertion_type", assertion::ASSERTION_TYPE));
                form.push(("client_assertion", &assertion));
            }
            config::TokenEndpointAuth::None => form.push(("client_id", client_id)),
        }
        self.http
            .post_form(endpoint, &form, authz.as_deref(), c.timeout)
            .await
            .map_err(|e| self.unavailable(&e))
    }

    /// A non-2xx answer: an OAuth error body → `Rejected`; 5xx → `Unavailable`; else `Invalid`.
    fn error_reply(&self, reply: &http::Reply, what: &str) -> ProviderError {
        if reply.status.is_server_error() {
            return self.unavailable(&format!("{what} answered {}", reply.status));
        }
        match serde_json::from_slice::<Map<String, Value>>(&reply.body) {
            Ok(m) if m.get("error").and_then(Value::as_str).is_some() => ProviderError::Rejected {
                provider: self.config.name.clone(),
                error: m
                    .get("error")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .chars()
                    .take(64)
                    .collect(),
                description: m
                    .get("error_description")
                    .and_then(Value::as_str)
                    .map(|d| d.chars().take(300).collect()),
            },
            _ => self.invalid(&format!("{what} answered {}", reply.status)),
        }
    }

    fn unavailable(&self, reason: &str) -> ProviderError {
        ProviderError::Unavailable {
            provider: self.config.name.clone(),
            reason: reason.into(),
        }
    }

    fn invalid(&self, reason: &str) -> ProviderError {
        ProviderError::Invalid {
            provider: self.config.name.clone(),
            reason: reason.into(),
        }
    }
}

/// Reads a discovery document; explicit endpoints in the config win over discovered ones.
fn parse_metadata(doc: &Map<String, Value>, c: &config::Provider) -> Result<Metadata, String> {
    let issuer = doc
        .get("issuer")
        .and_then(Value::as_str)
        .ok_or("discovery document has no issuer")?;
    let want = c.issuer.as_deref().unwrap_or_default();
    if issuer != want {
        return Err(format!(
            "discovery document names issuer {issuer:?}, configured {want:?} (must be identical)"
        ));
    }
    let url = |k: &str| -> Result<Option<Url>, String> {
        match doc.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Url::parse(s)
                .map(Some)
                .map_err(|e| format!("discovery {k}: {e}")),
            Some(_) => Err(format!("discovery {k} is not a string")),
        }
    };
    Ok(Metadata {
        issuer: issuer.to_string(),
        authorization_endpoint: c
            .authorization_endpoint
            .clone()
            .or(url("authorization_endpoint")?),
        token_endpoint: c.token_endpoint.clone().or(url("token_endpoint")?),
        userinfo_endpoint: c.userinfo_endpoint.clone().or(url("userinfo_endpoint")?),
        jwks_uri: c.jwks_uri.clone().or(url("jwks_uri")?),
        end_session_endpoint: c
            .end_session_endpoint
            .clone()
            .or(url("end_session_endpoint")?),
        introspection_endpoint: c
            .introspection
            .as_ref()
            .and_then(|i| i.endpoint.clone())
            .or(url("introspection_endpoint")?),
        revocation_endpoint: url("revocation_endpoint")?,
        authorization_response_iss_parameter_supported: doc
            .get("authorization_response_iss_parameter_supported")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    })
}

/// All providers.
pub struct Providers {
    /// Looked up on every authenticated request: foldhash (as the bearer token cache), not
    /// std's SipHash (~150 instructions a lookup more).
    map: HashMap<String, Arc<ProviderRuntime>, quick_cache::DefaultHashBuilder>,
}

impl Providers {
    pub fn new(cfg: &Config) -> Result<Self, String> {
        Self::new_except(cfg, |_, _| None)
    }

    /// [`Self::new`], except for the providers `reuse` gives a runtime for.
    fn new_except(
        cfg: &Config,
        reuse: impl Fn(&str, &config::Provider) -> Option<Arc<ProviderRuntime>>,
    ) -> Result<Self, String> {
        // One client per distinct trust configuration, shared by the providers using it.
        let mut clients: HashMap<Option<crate::tls_client::CaFile>, http::ProviderClient> =
            HashMap::new();
        let mut map = HashMap::default();
        for (n, p) in &cfg.providers {
            if let Some(kept) = reuse(n, p) {
                map.insert(n.clone(), kept);
                continue;
            }
            let client = match clients.get(&p.ca_file) {
                Some(c) => c.clone(),
                None => {
                    let c = http::ProviderClient::new(p.ca_file.as_ref())
                        .map_err(|e| format!("provider {n}: {e}"))?;
                    clients.insert(p.ca_file.clone(), c.clone());
                    c
                }
            };
            map.insert(
                n.clone(),
                Arc::new(ProviderRuntime::new(p.clone(), client)?),
            );
        }
        Ok(Providers { map })
    }

    pub fn get(&self, name: &str) -> Option<&Arc<ProviderRuntime>> {
        self.map.get(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<ProviderRuntime>> {
        self.map.values()
    }

    /// Starts discovery and key refresh in the background; readiness goes to `health`
    /// under `provider:<name>`. The tasks end when the providers are dropped.
    pub fn start_background(&self, health: Arc<Health>) {
        for p in self.map.values() {
            start_one(p, health.clone());
        }
    }

    /// The providers of a reloaded `cfg`: a provider whose settings are unchanged
    /// ([`same_settings`]) is this one's runtime itself — its discovery, keys and introspection
    /// cache carry over, nothing is fetched again — and the others are new (not loaded yet;
    /// [`Self::start_background_after`] starts them).
    pub fn carry_over(&self, cfg: &Config) -> Result<Self, String> {
        Providers::new_except(cfg, |n, p| {
            self.map
                .get(n)
                .filter(|old| same_settings(&old.config, p))
                .cloned()
        })
    }

    /// [`Self::start_background`] for the providers that `old` does not share with this set;
    /// a provider `old` had and this set lacks leaves `/readyz`. The old ones' tasks end when
    /// the last request using them is done (they hold the runtime weakly).
    pub fn start_background_after(&self, old: &Providers, health: Arc<Health>) {
        // Retired first, so an old task cannot report over its successor's state.
        for (n, o) in &old.map {
            if !self.map.get(n).is_some_and(|p| Arc::ptr_eq(o, p)) {
                o.retired.store(true, std::sync::atomic::Ordering::Relaxed);
            }
            if !self.map.contains_key(n) {
                health.remove(&format!("provider:{n}"));
            }
        }
        for (n, p) in &self.map {
            if !old.map.get(n).is_some_and(|o| Arc::ptr_eq(o, p)) {
                start_one(p, health.clone());
            }
        }
    }
}

/// A fingerprint of how provider `p` turns claims into roles (`roles_claim`, and the
/// `client_id` and `project_id` the well-known places use). A session records the one its roles
/// were derived by; when the provider's changes (a reload, or a restart with another config),
/// those roles were judged by a rule no longer configured, and the session no longer counts.
pub fn roles_rule(p: &config::Provider) -> String {
    use base64::Engine;
    use sha2::{Digest, Sha256};
    let text = format!("{:?}\0{:?}\0{:?}", p.roles_claim, p.client_id, p.project_id);
    let hash = Sha256::digest(text.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&hash[..12])
}

/// Whether two provider settings are the same, secrets and file contents included: then the
/// runtime (discovery, keys, caches) is kept across a config reload. `Debug` covers every field
/// (new fields too, without a list here to forget them in); what it redacts or abbreviates —
/// secrets, key material, CA file contents — is compared explicitly.
pub fn same_settings(a: &config::Provider, b: &config::Provider) -> bool {
    let secret = |s: &Option<config::Secret>| s.as_ref().map(|s| s.expose().to_owned());
    let key = |k: &Option<config::ZitadelKey>| k.as_ref().map(|k| k.key.clone());
    let intro = |i: &Option<config::Introspection>| match i.as_ref().map(|i| &i.auth) {
        Some(config::IntrospectionAuth::KeyFile(k)) => Some(k.key.clone()),
        Some(config::IntrospectionAuth::Basic { client_secret, .. }) => {
            Some(client_secret.expose().to_owned())
        }
        None => None,
    };
    let ca = |c: &Option<crate::tls_client::CaFile>| c.as_ref().map(|c| c.pem.clone());
    format!("{a:?}") == format!("{b:?}")
        && secret(&a.client_secret) == secret(&b.client_secret)
        && key(&a.private_key) == key(&b.private_key)
        && intro(&a.introspection) == intro(&b.introspection)
        && ca(&a.ca_file) == ca(&b.ca_file)
}

/// Discovery and key refresh of one provider, in the background, while it is alive.
fn start_one(p: &Arc<ProviderRuntime>, health: Arc<Health>) {
    let component = format!("provider:{}", p.name());
    health.set(&component, Err("loading discovery and keys".into()));
    let weak: Weak<ProviderRuntime> = Arc::downgrade(p);
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(500);
        loop {
            let Some(p) = weak.upgrade() else { return };
            let loaded = p.load_now().await;
            if p.retired.load(std::sync::atomic::Ordering::Relaxed) {
                return;
            }
            let wait = match loaded {
                Ok(next) => {
                    health.set(&component, Ok(()));
                    backoff = Duration::from_millis(500);
                    next
                }
                Err(e) => {
                    if p.is_loaded() {
                        tracing::warn!(provider = %p.name(), error = %e, "key refresh failed; keeping the cached keys");
                    } else {
                        tracing::warn!(provider = %p.name(), error = %e, "provider not available yet; retrying");
                        health.set(&component, Err(e.to_string()));
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                    backoff
                }
            };
            drop(p);
            tokio::time::sleep(wait).await;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider(issuer: &str) -> config::Provider {
        let src = format!(
            "[server]\nlisten = \"127.0.0.1:1\"\n[providers.p]\nissuer = \"{issuer}\"\naudiences = [\"api\"]\n[[route]]\npath = \"/\"\nupstream = \"http://127.0.0.1:2\"\nauth = \"bearer\"\n"
        );
        let cfg = crate::config::load_str(std::path::Path::new("t.toml"), &src, Default::default())
            .unwrap();
        (*cfg.providers["p"]).clone()
    }

    #[test]
    fn discovery_issuer_must_match_byte_for_byte() {
        let c = provider("https://op.example");
        let doc = |iss: &str| serde_json::json!({"issuer": iss, "jwks_uri": "https://op.example/keys", "introspection_endpoint": "https://op.example/i"});
        let m = parse_metadata(doc("https://op.example").as_object().unwrap(), &c).unwrap();
        assert_eq!(m.jwks_uri.unwrap().as_str(), "https://op.example/keys");
        assert_eq!(
            m.introspection_endpoint.unwrap().as_str(),
            "https://op.example/i"
        );
        assert!(parse_metadata(doc("https://op.example/").as_object().unwrap(), &c).is_err());
        assert!(parse_metadata(doc("https://OP.example").as_object().unwrap(), &c).is_err());
    }
}
