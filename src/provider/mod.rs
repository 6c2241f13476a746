//! Everything that talks to an OpenID provider: discovery, the JWKS cache, the token,
//! userinfo, introspection and revocation endpoints, and client authentication (secrets or
//! `private_key_jwt` from a ZITADEL key file). One shared HTTP client with timeouts, a body
//! size cap and no redirect following (SSRF).
//!
//! STUB: the API below is the contract between the bearer and login stages and this module.

use std::collections::HashMap;
use std::sync::Arc;

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

/// One configured provider at run time.
pub struct ProviderRuntime {
    pub config: Arc<config::Provider>,
}

impl ProviderRuntime {
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// The loaded metadata, or `Unavailable` until discovery succeeded.
    pub fn metadata(&self) -> Result<Arc<Metadata>, ProviderError> {
        Err(self.unavailable("not implemented"))
    }

    /// Verifies a JWT signed by this provider (signature by the JWKS key its `kid` names,
    /// `alg` from the key, `iss`, `exp`, `nbf`, and `aud` ∋ one of `audiences`); returns its claims.
    pub async fn verify_jwt(
        &self,
        _token: &str,
        _audiences: &[String],
    ) -> Result<Map<String, Value>, TokenError> {
        Err(TokenError::Unavailable(self.unavailable("not implemented")))
    }

    /// POSTs to the token endpoint with client authentication per `token_endpoint_auth`.
    pub async fn token_request(
        &self,
        _params: &[(&str, &str)],
    ) -> Result<TokenResponse, ProviderError> {
        Err(self.unavailable("not implemented"))
    }

    /// GETs userinfo with the access token.
    pub async fn userinfo(&self, _access_token: &str) -> Result<Map<String, Value>, ProviderError> {
        Err(self.unavailable("not implemented"))
    }

    /// Revokes a token (RFC 7009) when the provider has a revocation endpoint.
    pub async fn revoke(&self, _token: &str, _hint: &str) -> Result<(), ProviderError> {
        Err(self.unavailable("not implemented"))
    }

    /// Role names from claims, per `roles_claim` (DESIGN.md, Roles).
    pub fn roles(&self, _claims: &Map<String, Value>) -> Vec<String> {
        Vec::new()
    }

    fn unavailable(&self, reason: &str) -> ProviderError {
        ProviderError::Unavailable {
            provider: self.config.name.clone(),
            reason: reason.into(),
        }
    }
}

/// All providers.
pub struct Providers {
    map: HashMap<String, Arc<ProviderRuntime>>,
}

impl Providers {
    pub fn new(cfg: &Config) -> Result<Self, String> {
        let map = cfg
            .providers
            .iter()
            .map(|(n, p)| (n.clone(), Arc::new(ProviderRuntime { config: p.clone() })))
            .collect();
        Ok(Providers { map })
    }

    pub fn get(&self, name: &str) -> Option<&Arc<ProviderRuntime>> {
        self.map.get(name)
    }

    /// Starts discovery and key refresh in the background; readiness goes to `health`
    /// under `provider:<name>`.
    pub fn start_background(&self, _health: Arc<Health>) {}
}
