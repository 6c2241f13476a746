//! The authentication stage: turns a request into an [`Identity`] (or a response such as a
//! redirect to the provider's login), per the route's `auth` mode. An `Identity` comes only out
//! of this module; authorization ([`crate::authz`]) turns it into a `Permit`.

pub mod login;
pub mod redirect;

use std::sync::Arc;

use http::{Request, Response, StatusCode, request::Parts};
use hyper::body::Incoming;

use crate::authz::Denied;
use crate::proxy::ConnInfo;
use serde_json::{Map, Value};

use crate::config::{AuthMode, Config, Route};
use crate::error::{Body, json_error};

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
    /// Set-Cookie values the response must carry (a session that was refreshed or slid).
    pub set_cookie: Vec<http::HeaderValue>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Via {
    #[default]
    Session,
    Bearer,
}

/// What authentication decided.
pub enum Outcome {
    Authenticated(Box<Identity>),
    /// Answer now (redirect to login, 401 challenge, 503 provider down …).
    Respond(http::Response<Body>),
}

/// Runtime state of authentication (providers, key caches, sessions).
pub struct AuthState {
    pub config: Arc<Config>,
    pub providers: crate::provider::Providers,
    /// Browser login and sessions (when `[session]` is configured).
    pub login: Option<login::LoginState>,
}

impl AuthState {
    pub fn new(config: Arc<Config>) -> Self {
        let providers = crate::provider::Providers::new(&config).unwrap_or_else(|e| {
            tracing::error!(error = %e, "providers");
            crate::provider::Providers::new(&Config { providers: Default::default(), ..(*config).clone() }).unwrap_or_else(|_| unreachable!())
        });
        let login = login::LoginState::new(config.clone()).unwrap_or_else(|e| {
            tracing::error!(error = %e, "session store cannot be set up; login routes answer 503");
            None
        });
        AuthState { config, providers, login }
    }

    /// Authenticates a request for a route whose `auth` is not `none`.
    pub async fn authenticate(&self, route: &Route, parts: &Parts, conn: ConnInfo, host: Option<&str>) -> Outcome {
        debug_assert!(route.auth != AuthMode::None);
        // login_or_bearer: a request with an Authorization header is judged by its token alone.
        let session_half = route.auth == AuthMode::Login
            || (route.auth == AuthMode::LoginOrBearer && !parts.headers.contains_key(http::header::AUTHORIZATION));
        if session_half {
            return match &self.login {
                Some(l) => l.authenticate(&self.providers, route, parts, conn, host).await,
                None => Outcome::Respond(json_error(StatusCode::SERVICE_UNAVAILABLE, "session_store_unavailable", "sessions are not available")),
            };
        }
        Outcome::Respond(json_error(
            StatusCode::NOT_IMPLEMENTED,
            "not_implemented",
            &format!("auth = {:?} is not implemented yet", route.auth.as_str()),
        ))
    }

    /// Starts background work (discovery, key refresh); registers readiness in `health`.
    pub fn start_background(&self, health: Arc<crate::health::Health>) {
        if let Some(l) = &self.login {
            l.start_background(health.clone());
        }
    }

    /// The answer when authorization failed.
    pub fn forbidden(&self, route: &Route, identity: &Identity, denied: &Denied, parts: &Parts) -> Response<Body> {
        let _ = route;
        if let (Via::Session, Some(l)) = (identity.via, &self.login) {
            return l.forbidden(identity, denied, parts);
        }
        json_error(StatusCode::FORBIDDEN, "forbidden", &denied.to_string())
    }

    /// Endpoints under the auth prefix (`rest` is the path after it, "" or "/...").
    pub async fn endpoint(&self, rest: &str, req: Request<Incoming>, conn: ConnInfo, host: Option<&str>) -> Response<Body> {
        let login_endpoint = matches!(rest, "/login" | "/callback" | "/logout" | "/me" | "/backchannel-logout");
        if login_endpoint {
            return match &self.login {
                Some(l) => match l.endpoint(&self.providers, rest, req, conn, host).await {
                    Some(r) => r,
                    None => json_error(StatusCode::NOT_FOUND, "not_found", "no such endpoint"),
                },
                None => json_error(StatusCode::NOT_FOUND, "not_found", "browser login is not configured (no [session])"),
            };
        }
        json_error(StatusCode::NOT_FOUND, "not_found", &format!("no endpoint {rest:?} under the auth prefix"))
    }
}

/// `portcullis explain` with headers: appends the decision and why to `out`.
pub async fn explain_decision(_cfg: &Config, route: &Route, headers: &[String], out: &mut String) -> std::process::ExitCode {
    use std::fmt::Write;
    let has_token = headers.iter().any(|h| h.to_ascii_lowercase().starts_with("authorization:"));
    if !has_token {
        let _ = writeln!(out, "  decision: needs authentication ({}); pass --header 'Authorization: Bearer …' to evaluate a token", route.auth.as_str());
    } else {
        let _ = writeln!(out, "  decision: token evaluation is not available in this build");
    }
    std::process::ExitCode::from(1)
}
