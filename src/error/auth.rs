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
    /// browser's page (preferred username, email or sub).
    #[error("{unmet}")]
    Forbidden {
        scheme: Scheme,
        unmet: Denied,
        who: String,
    },
    /// The credentials were malformed (two Authorization headers, a token with bytes no token
    /// has, …): 400.
    #[error("{reason}")]
    BadRequest { scheme: Scheme, reason: String },
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
                unmet: Denied::Claim { .. },
                ..
            } => "claim_mismatch",
            AuthError::BadRequest { .. } => "invalid_request",
        }
    }

    /// The answer. `html`: a person reads it (the request's `Accept` names `text/html`);
    /// `auth_prefix`: where the proxy's endpoints live (the forbidden page's logout link).
    pub fn into_response(self, html: bool, auth_prefix: &str) -> Response<Body> {
        let message = self.to_string();
        match self {
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
        }
    }
}

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
}
