//! The authentication stage: turns a request into an [`Identity`] (or a response such as a
//! redirect to the provider's login), per the route's `auth` mode. An `Identity` comes only out
//! of this module; authorization ([`crate::authz`]) turns it into a `Permit`.

pub mod assertion;
pub mod bearer;
pub mod check;
pub(crate) mod endpoints;
pub mod login;
pub mod redirect;
pub mod roles;

use std::sync::Arc;

use http::{Request, Response, request::Parts};
use hyper::body::Incoming;

use crate::authz::Denied;
use crate::proxy::ConnInfo;
use serde_json::{Map, Value};

use crate::config::{AuthMode, Config, Route};
use crate::error::{AuthError, Body, Scheme};
use crate::provider::Providers;

/// Who the caller is, as proven by a session or a token.
#[derive(Debug, Clone, Default)]
pub struct Identity {
    pub sub: String,
    pub email: Option<String>,
    pub name: Option<String>,
    pub preferred_username: Option<String>,
    pub roles: Vec<String>,
    /// All claims (ID token + userinfo, or the access token / introspection response).
    pub claims: Map<String, Value>,
    /// The access token that proved it (bearer) or the session's access token (login).
    pub access_token: Option<String>,
    /// Unix seconds when the proof expires.
    pub expires_at: Option<i64>,
    /// Name of the provider that vouched for it.
    pub provider: Arc<str>,
    pub via: Via,
    /// The identity headers' values, sanitized on first use: cached identities (validated
    /// tokens, opened sessions) are injected on every request without copying them again.
    pub header_values: Memo<HeaderValues>,
}

impl Identity {
    /// The email to vouch for (identity header, assertion, `/.auth/me`): none when the
    /// provider says it is not verified (`email_verified: false`, or the string `"false"` some
    /// providers send) — an address anyone could have typed in at a self-service provider.
    /// Absent `email_verified` (many providers only send verified addresses) keeps the email.
    pub fn verified_email(&self) -> Option<&str> {
        let unverified = match self.claims.get("email_verified") {
            Some(Value::Bool(v)) => !v,
            Some(Value::String(s)) => s.trim().eq_ignore_ascii_case("false"),
            _ => false,
        };
        if unverified {
            None
        } else {
            self.email.as_deref()
        }
    }
}

/// Sanitized header values of an [`Identity`] (see `headers::inject`).
#[derive(Debug, Default)]
pub struct HeaderValues {
    pub sub: Option<http::HeaderValue>,
    pub email: Option<http::HeaderValue>,
    pub name: Option<http::HeaderValue>,
    pub preferred_username: Option<http::HeaderValue>,
    /// Comma-separated; `None` without roles.
    pub roles: Option<http::HeaderValue>,
    /// Only when a route forwards it (a ~1 KB copy otherwise made for nothing).
    pub access_token: std::sync::OnceLock<Option<http::HeaderValue>>,
}

/// A value derived on first use from the struct that holds it. A clone starts empty (a clone
/// is made to be changed), and code that changes the holder in place must [`Memo::clear`] it:
/// `Arc::make_mut` does not clone a value nobody else holds.
pub struct Memo<T>(std::sync::OnceLock<T>);

impl<T> Memo<T> {
    pub fn get_or_init(&self, f: impl FnOnce() -> T) -> &T {
        self.0.get_or_init(f)
    }

    /// Forgets the derived value (its holder changed).
    pub fn clear(&mut self) {
        self.0 = std::sync::OnceLock::new();
    }
}

impl<T> Default for Memo<T> {
    fn default() -> Self {
        Memo(std::sync::OnceLock::new())
    }
}

impl<T> Clone for Memo<T> {
    fn clone(&self) -> Self {
        Memo::default()
    }
}

/// Derived data: never part of a comparison.
impl<T> PartialEq for Memo<T> {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl<T> std::fmt::Debug for Memo<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.get().is_some() {
            "Memo(set)"
        } else {
            "Memo(empty)"
        })
    }
}

/// A successful authentication.
pub struct Authenticated {
    /// Shared: a cached identity is handed out without a deep copy of its claims.
    pub identity: Arc<Identity>,
    /// Set-Cookie values the response must carry (a session that was refreshed or slid).
    pub set_cookie: Vec<http::HeaderValue>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Via {
    #[default]
    Session,
    Bearer,
}

/// Runtime state of authentication (providers, key caches, sessions).
pub struct AuthState {
    pub config: Arc<Config>,
    pub providers: Providers,
    bearer: Arc<bearer::Bearer>,
    assertion: assertion::AssertionSigner,
    /// Browser login and sessions (when `[session]` is configured).
    pub login: Option<login::LoginState>,
}

impl AuthState {
    pub fn new(config: Arc<Config>) -> Result<Self, String> {
        let providers = Providers::new(&config)?;
        let bearer = Arc::new(bearer::Bearer::new(&config));
        let assertion = assertion::AssertionSigner::new(&config)?;
        let login = login::LoginState::new(config.clone())?;
        Ok(AuthState {
            config,
            providers,
            bearer,
            assertion,
            login,
        })
    }

    /// Removes the proxy's own session and pending-login cookies from a request going upstream.
    pub fn strip_own_cookies(&self, headers: &mut http::HeaderMap) {
        if let Some(l) = &self.login {
            l.strip_cookies(headers);
        }
    }

    /// The proxy's signer for the identity assertion header (keys at `/.auth/jwks`).
    pub fn assertion(&self) -> &assertion::AssertionSigner {
        &self.assertion
    }

    /// Authenticates a request for a route whose `auth` is not `none`.
    pub async fn authenticate(
        &self,
        route: &Route,
        parts: &Parts,
        conn: ConnInfo,
        host: Option<&str>,
    ) -> Result<Authenticated, AuthError> {
        debug_assert!(route.auth != AuthMode::None);
        match route.auth {
            AuthMode::Bearer => {
                bearer::authenticate(&self.bearer, &self.providers, route, parts).await
            }
            // An Authorization header means an API client: the token decides, never a redirect.
            AuthMode::LoginOrBearer if bearer::has_authorization(parts) => {
                bearer::authenticate(&self.bearer, &self.providers, route, parts).await
            }
            // No Authorization header: the session decides (redirect to login for browsers).
            AuthMode::Login | AuthMode::LoginOrBearer => match &self.login {
                Some(l) => {
                    l.authenticate(&self.providers, route, parts, conn, host)
                        .await
                }
                None => Err(AuthError::SessionStoreUnavailable {
                    detail: "sessions are not configured (no [session])".into(),
                }),
            },
            // Unreachable (the pipeline never authenticates a `none` route); refuse anyway.
            AuthMode::None => Err(AuthError::NoCredentials {
                scheme: Scheme::Bearer,
                clear_cookies: Vec::new(),
            }),
        }
    }

    /// Starts background work (discovery, key refresh); registers readiness in `health`.
    pub fn start_background(&self, health: Arc<crate::health::Health>) {
        self.providers.start_background(health.clone());
        self.bearer.start_sweeper();
        if let Some(l) = &self.login {
            l.start_background(health);
        }
    }

    /// The answer to a refused request (a person reads it when `Accept` names text/html).
    pub fn refusal(&self, e: AuthError, parts: &Parts) -> Response<Body> {
        e.into_response(
            crate::error::wants_html(&parts.headers),
            &self.config.server.auth_prefix,
        )
    }

    /// The refusal when authorization failed.
    pub fn forbidden(identity: &Identity, unmet: Denied) -> AuthError {
        AuthError::Forbidden {
            scheme: match identity.via {
                Via::Bearer => Scheme::Bearer,
                Via::Session => Scheme::Session,
            },
            unmet,
            who: identity
                .preferred_username
                .as_deref()
                .or(identity.email.as_deref())
                .unwrap_or(&identity.sub)
                .to_string(),
        }
    }

    /// Endpoints under the auth prefix (`rest` is the path after it, "" or "/...").
    pub async fn endpoint(
        &self,
        rest: &str,
        req: Request<Incoming>,
        conn: ConnInfo,
        host: Option<&str>,
    ) -> Response<Body> {
        endpoints::route(self, rest, req, conn, host).await
    }
}

/// `portcullis explain` with headers: appends the decision and why to `out`.
pub async fn explain_decision(
    cfg: &Config,
    route: &Route,
    headers: &[String],
    out: &mut String,
) -> std::process::ExitCode {
    bearer::explain(cfg, route, headers, out).await
}
