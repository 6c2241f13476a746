//! Why authentication or authorization refused a request, and the one place such a refusal
//! becomes an answer. The auth stages (bearer tokens, sessions, forward-auth, login endpoints)
//! only build an [`AuthError`]; which body (JSON, the HTML page, a redirect) and which
//! `WWW-Authenticate` challenge the caller gets is decided here, from the error and from
//! whether a person reads the answer. The access log's `decision`/`reason` fields and the
//! decision metric come from [`AuthError::decision`] and [`AuthError::reason`].

use http::header::{self, HeaderValue};
use http::{Response, StatusCode};

use super::{Body, empty, html_escape, html_page, json_error};
use crate::authz::Denied;

/// Which credential the refused request was judged on: it picks the challenge and the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// An `Authorization: Bearer` token (API clients): RFC 6750 challenges, JSON bodies.
    Bearer,
    /// A browser session (login routes): HTML pages for browsers, JSON otherwise.
    Session,
}

/// The access decision's label (access log `decision`, the decision metric's label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecisionKind {
    Allowed,
    Unauthenticated,
    Forbidden,
    /// The proxy could not decide (a provider or the session store is down).
    Error,
}

impl DecisionKind {
    pub const ALL: [DecisionKind; 4] = [
        DecisionKind::Allowed,
        DecisionKind::Unauthenticated,
        DecisionKind::Forbidden,
        DecisionKind::Error,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DecisionKind::Allowed => "allowed",
            DecisionKind::Unauthenticated => "unauthenticated",
            DecisionKind::Forbidden => "forbidden",
            DecisionKind::Error => "error",
        }
    }
}

/// A refusal by the authentication or authorization stage.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No credentials at all: no token on a bearer route, no (valid) session on a login route
    /// for a request that cannot start a login. `clear_cookies`: Set-Cookie values ending a
    /// session that has expired, so the browser stops sending it.
    #[error("{}", match .scheme {
        Scheme::Bearer => "a bearer token is required (Authorization: Bearer …)",
        Scheme::Session => "sign in first (no valid session)",
    })]
    NoCredentials {
        scheme: Scheme,
        clear_cookies: Vec<HeaderValue>,
    },
    /// A token that was presented and refused; the reason is safe to show the caller.
    #[error("{reason}")]
    InvalidToken { reason: String },
    /// A browser navigation without a session: the login has been prepared (state, PKCE and
    /// its pending-login cookie) and the browser is sent to the provider.
    #[error("sign in at the provider")]
    LoginRequired {
        /// The provider's authorization URL.
        location: String,
        /// The pending-login cookie, and the cookies of any session it replaces.
        set_cookie: Vec<HeaderValue>,
    },
    /// The identity provider is needed and cannot be reached (or is not configured for the
    /// route). `detail` (addresses, OS errors) goes to the log, never to the caller.
    #[error("the identity provider is unavailable; try again later")]
    ProviderUnavailable { scheme: Scheme, detail: String },
    /// The session store (Redis) is needed and cannot be reached. `detail` goes to the log.
    #[error("the session store is unavailable; try again shortly")]
    SessionStoreUnavailable { detail: String },
    /// Authenticated, but a route requirement is not met. `who`: the name shown on the
    /// browser's page (preferred username, email or sub); `set_cookie`: the session's renewed
    /// cookie when it slid or was refreshed while being checked (the browser keeps it even
    /// though this request is refused).
    #[error("{unmet}")]
    Forbidden {
        scheme: Scheme,
        unmet: Denied,
        who: String,
        set_cookie: Vec<HeaderValue>,
    },
    /// The credentials were malformed (two Authorization headers, a token with bytes no token
    /// has, …): 400.
    #[error("{reason}")]
    BadRequest { scheme: Scheme, reason: String },
    /// The login endpoints (`/.auth/…`) refused or could not finish a step of a browser login
    /// or logout: see [`LoginError`].
    #[error(transparent)]
    Login(#[from] LoginError),
}

/// Why an endpoint of the browser login (`/.auth/login`, `/callback`, `/logout`, `/me`,
/// `/backchannel-logout`) refused. Pages for the person in the browser, JSON for `/me` and the
/// provider's back-channel calls.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// The callback cannot complete the login (no or stale state, a refused code, an ID token
    /// that fails a check…): 400 page naming the reason, which is safe to show.
    #[error("{reason}")]
    Failed { reason: String },
    /// The provider sent the browser back with an OAuth error (`access_denied`, …): 400 page
    /// showing it, with a link (`retry`) that starts the login again.
    #[error("the sign-in service answered {error}")]
    Denied {
        error: String,
        description: String,
        retry: String,
    },
    /// `/.auth/login` for a provider that does not do browser sign-in: 404 page.
    #[error("this sign-in provider is not configured for browser sign-in")]
    UnknownProvider,
    /// The session could not be ended (store unreachable): 503 page, the cookie kept for the
    /// retry. `detail` goes to the log.
    #[error("the session could not be ended right now")]
    LogoutUnavailable { detail: String },
    /// A back-channel logout the proxy refuses (bad request, bad token, replay): 400 JSON.
    #[error("{reason}")]
    InvalidLogoutToken { reason: String },
    /// `/.auth/me` without a session: 401 JSON. `clear_cookies` end an expired session.
    #[error("no session")]
    NoSession { clear_cookies: Vec<HeaderValue> },
}

impl LoginError {
    fn status(&self) -> StatusCode {
        match self {
            LoginError::Failed { .. }
            | LoginError::Denied { .. }
            | LoginError::InvalidLogoutToken { .. } => StatusCode::BAD_REQUEST,
            LoginError::UnknownProvider => StatusCode::NOT_FOUND,
            LoginError::LogoutUnavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            LoginError::NoSession { .. } => StatusCode::UNAUTHORIZED,
        }
    }

    fn reason(&self) -> &'static str {
        match self {
            LoginError::Failed { .. } => "login_failed",
            LoginError::Denied { .. } => "login_denied",
            LoginError::UnknownProvider => "unknown_provider",
            LoginError::LogoutUnavailable { .. } => "session_store_unavailable",
            LoginError::InvalidLogoutToken { .. } => "invalid_logout_token",
            LoginError::NoSession { .. } => "no_session",
        }
    }

    fn into_response(self) -> Response<Body> {
        let status = self.status();
        match self {
            LoginError::Failed { reason } => {
                tracing::info!(reason = %reason, "login could not be completed");
                html_page(
                    status,
                    "Login could not be completed",
                    &format!(
                        "<p>Login could not be completed: {}.</p><p>Go back to the page you wanted and sign in again.</p>",
                        html_escape(&reason)
                    ),
                )
            }
            LoginError::Denied {
                error,
                description,
                retry,
            } => html_page(
                status,
                "Sign-in was not completed",
                &format!(
                    "<p>The sign-in service answered <code>{}</code>{}.</p><p><a href=\"{}\">Try again</a></p>",
                    html_escape(&error),
                    if description.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", html_escape(&description))
                    },
                    html_escape(&retry)
                ),
            ),
            LoginError::UnknownProvider => html_page(
                status,
                "Unknown sign-in provider",
                "<p>This sign-in provider is not configured for browser sign-in.</p>",
            ),
            LoginError::LogoutUnavailable { detail } => {
                tracing::error!(error = %detail, "logout: the session store is unavailable; the session was not ended");
                html_page(
                    status,
                    "Sign-out is unavailable",
                    "<p>The session could not be ended right now, so you are still signed in. Please try again in a moment.</p>",
                )
            }
            LoginError::InvalidLogoutToken { reason } => {
                tracing::info!(reason = %reason, "back-channel logout refused");
                json_error(status, "invalid_request", &reason)
            }
            LoginError::NoSession { clear_cookies } => {
                let mut r = json_error(status, "unauthenticated", "no session");
                for c in clear_cookies {
                    r.headers_mut().append(header::SET_COOKIE, c);
                }
                r
            }
        }
    }
}

impl AuthError {
    pub fn status(&self) -> StatusCode {
        match self {
            AuthError::NoCredentials { .. } | AuthError::InvalidToken { .. } => {
                StatusCode::UNAUTHORIZED
            }
            AuthError::LoginRequired { .. } => StatusCode::FOUND,
            AuthError::ProviderUnavailable { .. } | AuthError::SessionStoreUnavailable { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            AuthError::Forbidden { .. } => StatusCode::FORBIDDEN,
            AuthError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            AuthError::Login(e) => e.status(),
        }
    }

    /// The access log's and the decision metric's `decision`: `unauthenticated`, `forbidden`
    /// or `error` (the proxy could not decide: a provider or the session store is down).
    pub fn decision(&self) -> &'static str {
        self.kind().as_str()
    }

    /// [`AuthError::decision`], as a value.
    pub fn kind(&self) -> DecisionKind {
        match self {
            AuthError::NoCredentials { .. }
            | AuthError::InvalidToken { .. }
            | AuthError::LoginRequired { .. }
            | AuthError::BadRequest { .. } => DecisionKind::Unauthenticated,
            AuthError::Forbidden { .. } => DecisionKind::Forbidden,
            AuthError::ProviderUnavailable { .. } | AuthError::SessionStoreUnavailable { .. } => {
                DecisionKind::Error
            }
            AuthError::Login(LoginError::LogoutUnavailable { .. }) => DecisionKind::Error,
            AuthError::Login(
                LoginError::Failed { .. }
                | LoginError::Denied { .. }
                | LoginError::UnknownProvider
                | LoginError::InvalidLogoutToken { .. }
                | LoginError::NoSession { .. },
            ) => DecisionKind::Unauthenticated,
        }
    }

    /// The short code of the failed check (access log `reason`, policy tests' `expect.reason`).
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::NoCredentials {
                scheme: Scheme::Bearer,
                ..
            } => "no_token",
            AuthError::NoCredentials {
                scheme: Scheme::Session,
                ..
            } => "no_session",
            AuthError::InvalidToken { .. } => "invalid_token",
            AuthError::LoginRequired { .. } => "login_required",
            AuthError::ProviderUnavailable { .. } => "provider_unavailable",
            AuthError::SessionStoreUnavailable { .. } => "session_store_unavailable",
            AuthError::Forbidden {
                unmet: Denied::MissingRoles(_),
                ..
            } => "missing_roles",
            AuthError::Forbidden {
                unmet: Denied::NoneOfRoles(_),
                ..
            } => "missing_any_role",
            AuthError::Forbidden {
                unmet: Denied::MissingOrgRoles { .. },
                ..
            } => "missing_org_roles",
            AuthError::Forbidden {
                unmet: Denied::Claim { .. },
                ..
            } => "claim_mismatch",
            AuthError::Forbidden {
                unmet: Denied::EmailNotVerified(_),
                ..
            } => "email_not_verified",
            AuthError::Forbidden {
                unmet: Denied::EmailNotAllowed { .. },
                ..
            } => "email_not_allowed",
            AuthError::BadRequest { .. } => "invalid_request",
            AuthError::Login(e) => e.reason(),
        }
    }

    /// The answer. `html`: a person reads it (the request's `Accept` names `text/html`);
    /// `auth_prefix`: where the proxy's endpoints live (the forbidden page's logout link).
    pub fn into_response(mut self, html: bool, auth_prefix: &str) -> Response<Body> {
        let message = self.to_string();
        let renewed = match &mut self {
            AuthError::Forbidden { set_cookie, .. } => std::mem::take(set_cookie),
            _ => Vec::new(),
        };
        let mut resp = match self {
            AuthError::NoCredentials {
                scheme,
                clear_cookies,
            } => {
                let code = match scheme {
                    Scheme::Bearer => "unauthorized",
                    Scheme::Session => "unauthenticated",
                };
                let mut r = json_error(StatusCode::UNAUTHORIZED, code, &message);
                let h = r.headers_mut();
                h.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"portcullis\""),
                );
                for c in clear_cookies {
                    h.append(header::SET_COOKIE, c);
                }
                r
            }
            AuthError::InvalidToken { .. } => challenged(
                json_error(StatusCode::UNAUTHORIZED, "invalid_token", &message),
                "invalid_token",
                &message,
            ),
            AuthError::LoginRequired {
                location,
                set_cookie,
            } => {
                let mut r = Response::new(empty());
                *r.status_mut() = StatusCode::FOUND;
                let h = r.headers_mut();
                if let Ok(v) = HeaderValue::from_str(&location) {
                    h.insert(header::LOCATION, v);
                }
                h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                for c in set_cookie {
                    h.append(header::SET_COOKIE, c);
                }
                r
            }
            AuthError::ProviderUnavailable { scheme, detail } => {
                tracing::warn!(error = %detail, "identity provider unavailable: answering 503");
                match scheme {
                    Scheme::Session => html_page(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "Sign-in is unavailable",
                        "<p>The sign-in service cannot be reached right now. Please try again in a moment.</p>",
                    ),
                    Scheme::Bearer => {
                        let mut r = challenged(
                            json_error(
                                StatusCode::SERVICE_UNAVAILABLE,
                                "temporarily_unavailable",
                                &message,
                            ),
                            "temporarily_unavailable",
                            &message,
                        );
                        r.headers_mut()
                            .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
                        r
                    }
                }
            }
            AuthError::SessionStoreUnavailable { detail } => {
                tracing::error!(error = %detail, "session store unavailable: answering 503");
                json_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "session_store_unavailable",
                    &message,
                )
            }
            AuthError::Forbidden {
                scheme: Scheme::Bearer,
                ..
            } => challenged(
                json_error(StatusCode::FORBIDDEN, "insufficient_scope", &message),
                "insufficient_scope",
                &message,
            ),
            AuthError::Forbidden {
                scheme: Scheme::Session,
                who,
                ..
            } if html => html_page(
                StatusCode::FORBIDDEN,
                "Access denied",
                &format!(
                    "<p>You are signed in as <strong>{}</strong>, but this page requires: {}.</p>\
                     <p><a href=\"{}/logout\">Sign out</a> to use another account.</p>",
                    html_escape(&who),
                    html_escape(&message),
                    html_escape(auth_prefix)
                ),
            ),
            AuthError::Forbidden { .. } => json_error(StatusCode::FORBIDDEN, "forbidden", &message),
            AuthError::BadRequest {
                scheme: Scheme::Bearer,
                ..
            } => challenged(
                json_error(StatusCode::BAD_REQUEST, "invalid_request", &message),
                "invalid_request",
                &message,
            ),
            AuthError::BadRequest { .. } => {
                json_error(StatusCode::BAD_REQUEST, "bad_request", &message)
            }
            AuthError::Login(e) => e.into_response(),
        };
        for c in renewed {
            resp.headers_mut().append(header::SET_COOKIE, c);
        }
        resp
    }
}

/// Forward-auth's answer when a browser must sign in: the check never starts a login itself (a
/// front proxy that turns the answer into a redirect drops the pending-login cookie, and nginx
/// `auth_request` turns a 302 into a 500), it names where to start one. `401` with
/// `X-Auth-Login: <login_url>` for the front proxy to send the browser there, or, when the
/// front proxy passes redirects on (`redirect`: the check URL has `?redirect=1`), `302` to it.
/// `clear_cookies`: Set-Cookie values ending a session that has expired. A person reading a
/// 401 (Envoy passes it on) gets a page with the link.
pub fn sign_in(
    login_url: &str,
    redirect: bool,
    html: bool,
    clear_cookies: Vec<HeaderValue>,
) -> Response<Body> {
    let Ok(target) = HeaderValue::from_str(login_url) else {
        // (built from validated parts; refuse rather than answer without a way to sign in)
        return json_error(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "sign in first (no valid session)",
        );
    };
    let mut r = if redirect {
        let mut r = Response::new(empty());
        *r.status_mut() = StatusCode::FOUND;
        r.headers_mut().insert(header::LOCATION, target.clone());
        r
    } else if html {
        html_page(
            StatusCode::UNAUTHORIZED,
            "Sign in",
            &format!(
                "<p>This page needs you to sign in.</p><p><a href=\"{}\">Sign in</a></p>",
                html_escape(login_url)
            ),
        )
    } else {
        json_error(
            StatusCode::UNAUTHORIZED,
            "login_required",
            &format!("sign in first: {login_url}"),
        )
    };
    let h = r.headers_mut();
    h.insert(X_AUTH_LOGIN.clone(), target);
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    for c in clear_cookies {
        h.append(header::SET_COOKIE, c);
    }
    r
}

/// Where forward-auth names the login URL for the front proxy.
static X_AUTH_LOGIN: header::HeaderName = header::HeaderName::from_static("x-auth-login");

/// Whether a person reads the answer: the request's `Accept` names `text/html`.
pub fn wants_html(headers: &http::HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.to_ascii_lowercase().contains("text/html"))
}

/// Adds an RFC 6750 §3 challenge naming `error` and its description.
fn challenged(mut resp: Response<Body>, error: &str, description: &str) -> Response<Body> {
    let v = format!(
        "Bearer error=\"{error}\", error_description=\"{}\"",
        quotable(description)
    );
    if let Ok(v) = HeaderValue::from_str(&v) {
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    resp
}

/// RFC 6750 `error_description`: %x20-21 / %x23-5B / %x5D-7E (no quote, no backslash).
pub fn quotable(s: &str) -> String {
    s.chars()
        .filter(|c| (' '..='~').contains(c) && *c != '"' && *c != '\\')
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forbidden(scheme: Scheme) -> AuthError {
        AuthError::Forbidden {
            scheme,
            unmet: Denied::MissingRoles(vec!["admin".into()]),
            who: "<alice>".into(),
            set_cookie: vec![HeaderValue::from_static("s=renewed")],
        }
    }

    #[test]
    fn a_refused_session_keeps_its_renewed_cookie() {
        for (scheme, html) in [
            (Scheme::Session, true),
            (Scheme::Session, false),
            (Scheme::Bearer, false),
        ] {
            let r = forbidden(scheme).into_response(html, "/.auth");
            assert_eq!(r.status(), 403);
            assert_eq!(r.headers()[header::SET_COOKIE], "s=renewed");
        }
    }

    #[test]
    fn statuses_and_challenges() {
        let r = AuthError::NoCredentials {
            scheme: Scheme::Bearer,
            clear_cookies: vec![],
        }
        .into_response(false, "/.auth");
        assert_eq!(r.status(), 401);
        assert_eq!(
            r.headers()[header::WWW_AUTHENTICATE],
            "Bearer realm=\"portcullis\""
        );
        let r = AuthError::InvalidToken {
            reason: "the \"token\" expired".into(),
        }
        .into_response(false, "/.auth");
        assert_eq!(r.status(), 401);
        assert_eq!(
            r.headers()[header::WWW_AUTHENTICATE],
            "Bearer error=\"invalid_token\", error_description=\"the token expired\""
        );
        let r = forbidden(Scheme::Bearer).into_response(true, "/.auth");
        assert_eq!(r.status(), 403);
        assert!(
            r.headers()[header::WWW_AUTHENTICATE]
                .to_str()
                .unwrap()
                .contains("insufficient_scope")
        );
        let r = AuthError::ProviderUnavailable {
            scheme: Scheme::Bearer,
            detail: "10.0.0.1:443 refused".into(),
        }
        .into_response(false, "/.auth");
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()[header::RETRY_AFTER], "5");
        let r = AuthError::LoginRequired {
            location: "https://idp.example/auth?x=1".into(),
            set_cookie: vec![HeaderValue::from_static("p=1")],
        }
        .into_response(true, "/.auth");
        assert_eq!(r.status(), 302);
        assert_eq!(
            r.headers()[header::LOCATION],
            "https://idp.example/auth?x=1"
        );
        assert_eq!(r.headers()[header::SET_COOKIE], "p=1");
    }

    #[test]
    fn the_forbidden_page_is_for_browsers_of_a_session() {
        let page = forbidden(Scheme::Session).into_response(true, "/.auth");
        assert_eq!(page.status(), 403);
        assert!(
            page.headers()[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
        let json = forbidden(Scheme::Session).into_response(false, "/.auth");
        assert_eq!(json.headers()[header::CONTENT_TYPE], "application/json");
    }

    /// Each login-endpoint refusal: its status, its body kind and its reason code.
    #[test]
    fn login_endpoint_refusals() {
        let cases: Vec<(LoginError, u16, &str, &str)> = vec![
            (
                LoginError::Failed {
                    reason: "the <state> expired".into(),
                },
                400,
                "text/html",
                "login_failed",
            ),
            (
                LoginError::Denied {
                    error: "access_denied".into(),
                    description: String::new(),
                    retry: "/.auth/login?rd=%2F".into(),
                },
                400,
                "text/html",
                "login_denied",
            ),
            (
                LoginError::UnknownProvider,
                404,
                "text/html",
                "unknown_provider",
            ),
            (
                LoginError::LogoutUnavailable {
                    detail: "redis down".into(),
                },
                503,
                "text/html",
                "session_store_unavailable",
            ),
            (
                LoginError::InvalidLogoutToken {
                    reason: "logout_token lacks jti".into(),
                },
                400,
                "application/json",
                "invalid_logout_token",
            ),
            (
                LoginError::NoSession {
                    clear_cookies: vec![HeaderValue::from_static("p=; Max-Age=0")],
                },
                401,
                "application/json",
                "no_session",
            ),
        ];
        for (e, status, kind, reason) in cases {
            let e = AuthError::from(e);
            assert_eq!(e.reason(), reason);
            let clears = matches!(e, AuthError::Login(LoginError::NoSession { .. }));
            let r = e.into_response(false, "/.auth");
            assert_eq!(r.status(), status, "{reason}");
            assert!(
                r.headers()[header::CONTENT_TYPE]
                    .to_str()
                    .unwrap()
                    .starts_with(kind),
                "{reason}"
            );
            assert!(
                !r.headers().contains_key(header::WWW_AUTHENTICATE),
                "{reason}"
            );
            assert_eq!(r.headers().contains_key(header::SET_COOKIE), clears);
        }
    }

    #[test]
    fn decisions_and_reasons() {
        assert_eq!(forbidden(Scheme::Bearer).decision(), "forbidden");
        assert_eq!(forbidden(Scheme::Bearer).reason(), "missing_roles");
        let e = AuthError::SessionStoreUnavailable {
            detail: "redis down".into(),
        };
        assert_eq!(
            (e.decision(), e.reason()),
            ("error", "session_store_unavailable")
        );
    }

    /// Forward-auth's sign-in answer: 401 naming the login URL (a page with the link for a
    /// person, JSON otherwise), or 302 to it; the cookies of an ended session go along.
    #[test]
    fn sign_in_names_the_login_url() {
        let url = "https://app.example/.auth/login?rd=https%3A%2F%2Fapp.example%2Fx&a=<b>";
        let gone = HeaderValue::from_static("portcullis=; Max-Age=0");
        let r = sign_in(url, false, false, vec![gone.clone()]);
        assert_eq!(r.status(), 401);
        assert_eq!(r.headers()["x-auth-login"], url);
        assert_eq!(r.headers()[header::SET_COOKIE], gone);
        assert!(r.headers().get(header::LOCATION).is_none());
        let r = sign_in(url, true, true, vec![]);
        assert_eq!(r.status(), 302);
        assert_eq!(r.headers()[header::LOCATION], url);
        assert_eq!(r.headers()["x-auth-login"], url);
        assert_eq!(r.headers()[header::CACHE_CONTROL], "no-store");
        let r = sign_in(url, false, true, vec![]);
        assert_eq!(r.status(), 401);
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "text/html; charset=utf-8"
        );
    }
}
