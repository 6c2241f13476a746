//! The authentication stage: turns a request into an [`Identity`] (or an [`AuthError`], such
//! as a login to start at the provider), per the route's `auth` mode, and the endpoints under
//! the auth prefix. An `Identity` comes only out of this module; authorization
//! ([`crate::authz`]) turns it into a `Permit`; [`crate::decision`] calls both.

pub mod bearer;
pub(crate) mod endpoints;
pub mod login;
pub mod redirect;

use std::sync::Arc;

use http::{Request, Response, request::Parts};
use hyper::body::Incoming;

use crate::assertion::AssertionSigner;
use crate::authz::Denied;
use crate::config::{AuthMode, Config, Route};
use crate::error::{AuthError, Body, Scheme};
use crate::identity::{Authenticated, Identity, Via};
use crate::provider::Providers;
use crate::request::ConnInfo;

/// Why authentication cannot start (a provider, the assertion key or the session store is
/// misconfigured): the message names the part and the cause.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("{0}")]
    Providers(String),
    #[error("{0}")]
    Assertion(String),
    #[error("{0}")]
    Sessions(String),
}

/// The authentication stage as [`crate::decision::decide`] calls it: the proxy's
/// [`AuthState`], or policy tests' synthetic identities ([`crate::policy`]), injected exactly
/// where a token or session would be judged. Generic, so the proxy's path is the same code.
pub trait Authenticate {
    /// Authenticates a request for a route whose `auth` is not `none`.
    fn authenticate(
        &self,
        route: &Route,
        parts: &Parts,
        conn: ConnInfo,
        host: Option<&str>,
    ) -> impl Future<Output = Result<Authenticated, AuthError>> + Send;
}

impl Authenticate for AuthState {
    fn authenticate(
        &self,
        route: &Route,
        parts: &Parts,
        conn: ConnInfo,
        host: Option<&str>,
    ) -> impl Future<Output = Result<Authenticated, AuthError>> + Send {
        AuthState::authenticate(self, route, parts, conn, host)
    }
}

/// Runtime state of authentication (providers, key caches, sessions).
pub struct AuthState {
    pub config: Arc<Config>,
    pub providers: Providers,
    bearer: Arc<bearer::Bearer>,
    assertion: AssertionSigner,
    /// Browser login and sessions (when `[session]` is configured).
    pub login: Option<login::LoginState>,
}

impl AuthState {
    pub fn new(config: Arc<Config>) -> Result<Self, SetupError> {
        let providers = Providers::new(&config).map_err(SetupError::Providers)?;
        let bearer = Arc::new(bearer::Bearer::new(&config));
        let assertion = AssertionSigner::new(&config).map_err(SetupError::Assertion)?;
        let login = login::LoginState::new(config.clone()).map_err(SetupError::Sessions)?;
        Ok(AuthState {
            config,
            providers,
            bearer,
            assertion,
            login,
        })
    }

    /// The state for a reloaded `config`. Kept from this one: each provider whose settings are
    /// unchanged (its discovery, keys, introspection cache — no refetch) with its validated
    /// tokens, the session store when `[session]` is unchanged (no one is logged out), the
    /// replay and refresh caches, a generated assertion key. Rebuilt: everything else.
    pub fn carry_over(&self, config: Arc<Config>) -> Result<Self, SetupError> {
        let providers = (self.providers.carry_over(&config)).map_err(SetupError::Providers)?;
        let kept = |n: &str| matches!((self.providers.get(n), providers.get(n)), (Some(a), Some(b)) if Arc::ptr_eq(a, b));
        let bearer = Arc::new(self.bearer.carry_over(&config, kept));
        let assertion = (self.assertion.carry_over(&config)).map_err(SetupError::Assertion)?;
        let login = match &self.login {
            Some(l) => l.carry_over(config.clone()),
            None => login::LoginState::new(config.clone()),
        }
        .map_err(SetupError::Sessions)?;
        Ok(AuthState {
            config,
            providers,
            bearer,
            assertion,
            login,
        })
    }

    /// [`Self::start_background`] for a state [`Self::carry_over`] made from `old`: only
    /// what is new starts (kept providers and stores run already); what `old` had and this
    /// state lacks leaves `/readyz`.
    pub fn start_background_after(&self, old: &AuthState, health: Arc<crate::health::Health>) {
        self.providers
            .start_background_after(&old.providers, health.clone());
        self.bearer.start_sweeper();
        let redis = |l: &Option<login::LoginState>| {
            l.as_ref()
                .and_then(|l| l.config.session.as_ref())
                .is_some_and(|s| matches!(s.store, crate::config::SessionStore::Redis { .. }))
        };
        if redis(&old.login) && !redis(&self.login) {
            health.remove(crate::session::redis::HEALTH_KEY);
        }
        match (&self.login, &old.login) {
            (Some(new), Some(o)) if new.shares_store(o) => {}
            (Some(new), _) => new.start_background(health),
            (None, _) => {}
        }
    }

    /// Removes the proxy's own session and pending-login cookies from a request going upstream.
    pub fn strip_own_cookies(&self, headers: &mut http::HeaderMap) {
        if let Some(l) = &self.login {
            l.strip_cookies(headers);
        }
    }

    /// The proxy's signer for the identity assertion header (keys at `/.auth/jwks`).
    pub fn assertion(&self) -> &AssertionSigner {
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

    /// The answer to a refused request: gRPC status for a gRPC call, a page when a person reads
    /// it (`Accept` names text/html), JSON otherwise.
    pub fn refusal(&self, e: AuthError, parts: &Parts) -> Response<Body> {
        if crate::grpc::is_grpc(&parts.headers) {
            return e.into_grpc_response();
        }
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
            set_cookie: Vec::new(),
        }
    }

    /// Endpoints under the auth prefix (`rest` is the path after it, "" or "/..."), except
    /// `/check`, which the pipeline calls itself ([`crate::forward_auth::check`]: it reports the route it
    /// judged).
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
