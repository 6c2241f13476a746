//! The proxy's own endpoints under the auth prefix (`/.auth/…`): which path is which endpoint,
//! and the one place their answers become HTTP. Each endpoint of the browser login has its
//! module (`login`, `callback`, `logout`, `me`, `backchannel`) and returns an [`Answer`] or an
//! [`AuthError`]: it decides, [`render`] (and [`AuthError::into_response`] for refusals) writes
//! the response. `/check` (forward-auth) and `/jwks` are answered by their own stages.

mod backchannel;
mod callback;
mod login;
mod logout;
mod me;

use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use super::AuthState;
use crate::error::ProxyError;
use crate::error::{AuthError, Body, empty, full, html_escape, html_page, wants_html};
use crate::request::ConnInfo;

/// What an endpoint answers when it does not refuse.
pub(crate) enum Answer {
    /// 302 to `location` (not cached), with cookies (a session made or ended, a pending login).
    Redirect {
        location: String,
        set_cookie: Vec<HeaderValue>,
    },
    /// 200 with a JSON body (not cached), with cookies (a session slid or refreshed).
    Json {
        body: String,
        set_cookie: Vec<HeaderValue>,
    },
    /// 200, empty, not cached (a back-channel logout carried out).
    Done,
    /// The page a logout from another site gets: nothing was ended; a button posts the logout
    /// (to `action`) from this origin. 200 for a GET; 403 for a POST that was `refused`.
    ConfirmLogout { action: String, refused: bool },
}

/// Endpoints under the auth prefix (`rest` is the path after it, "" or "/...").
pub async fn route(
    auth: &AuthState,
    rest: &str,
    req: Request<Incoming>,
    conn: ConnInfo,
    host: Option<&str>,
) -> Response<Body> {
    match rest {
        "/jwks" => auth.assertion().jwks_response(),
        "/login" | "/callback" | "/logout" | "/me" | "/backchannel-logout" => {
            let Some(l) = &auth.login else {
                return ProxyError::NoEndpoint(
                    "browser login is not configured (no [session])".into(),
                )
                .into_response();
            };
            let html = wants_html(req.headers());
            let providers = &auth.providers;
            let mut also = None;
            let result = match rest {
                "/login" => login::login(l, providers, &req, conn, host).await,
                "/callback" => {
                    let (clear, result) = callback::callback(l, providers, &req, conn, host).await;
                    also = clear;
                    result
                }
                "/logout" => logout::logout(l, providers, &req, conn, host).await,
                "/me" => me::me(l, providers, req.headers(), conn, host).await,
                _ => backchannel::backchannel(l, providers, req).await,
            };
            render(result, html, &auth.config.server.auth_prefix, also)
        }
        _ => ProxyError::NoEndpoint(format!("no endpoint {rest:?} under the auth prefix").into())
            .into_response(),
    }
}

/// The response for an endpoint's result. `also`: a Set-Cookie a refusal carries too (the
/// callback clears its pending-login cookie whatever the outcome).
fn render(
    result: Result<Answer, AuthError>,
    html: bool,
    auth_prefix: &str,
    also: Option<HeaderValue>,
) -> Response<Body> {
    let answer = match result {
        Ok(a) => a,
        Err(e) => {
            let mut r = e.into_response(html, auth_prefix);
            if let Some(c) = also {
                r.headers_mut().append(header::SET_COOKIE, c);
            }
            return r;
        }
    };
    let (mut r, set_cookie) = match answer {
        Answer::Redirect {
            location,
            set_cookie,
        } => {
            let mut r = Response::new(empty());
            *r.status_mut() = StatusCode::FOUND;
            if let Ok(v) = HeaderValue::from_str(&location) {
                r.headers_mut().insert(header::LOCATION, v);
            }
            (r, set_cookie)
        }
        Answer::Json { body, set_cookie } => {
            let mut r = Response::new(full(body));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            (r, set_cookie)
        }
        Answer::Done => (Response::new(empty()), Vec::new()),
        Answer::ConfirmLogout { action, refused } => {
            return logout_confirmation(&action, refused);
        }
    };
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    for c in set_cookie {
        h.append(header::SET_COOKIE, c);
    }
    r
}

/// The logout confirmation page. Not frameable (the button must not be clicked through an
/// overlay); the form posts only to this origin.
fn logout_confirmation(action: &str, refused: bool) -> Response<Body> {
    let (status, lead) = if refused {
        (
            StatusCode::FORBIDDEN,
            "This sign-out request came from another site, so it was not carried out.",
        )
    } else {
        (
            StatusCode::OK,
            "Another site asked to sign you out. You are still signed in.",
        )
    };
    let mut r = html_page(
        status,
        "Sign out?",
        &format!(
            "<p>{lead}</p><form method=\"post\" action=\"{}\"><button type=\"submit\">Sign out</button></form>",
            html_escape(action)
        ),
    );
    let h = r.headers_mut();
    h.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    r
}

/// The value of query parameter `k`.
fn param<'a>(q: &'a [(String, String)], k: &str) -> Option<&'a str> {
    q.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
}
