//! `/.auth/check`: forward-auth for nginx `auth_request`, Traefik ForwardAuth and Envoy
//! ext_authz (HTTP). The decision is the proxy's own: same normalization, route choice,
//! authentication and authorization as a proxied request.
//!
//! The original request is read from `X-Forwarded-Method`, `X-Forwarded-Uri` (Traefik) or
//! `X-Original-URI` (nginx), and `X-Forwarded-Host` — **only when the caller is one of
//! `[server] trusted_proxies`**. A check whose original request is unknown — forwarding headers from any other peer, or no
//! `X-Forwarded-Uri`/`X-Original-URI` at all — is refused with 403: judging the check request
//! itself would answer for whichever route covers `/.auth/check`, not for the original request.
//!
//! Answers: 200 with the identity headers of the route's `[headers]` config (including the
//! signed assertion) — the front proxy copies them upstream (`auth_request_set` /
//! `authResponseHeaders`); 200 without identity for `auth = "none"` routes; 401/403/503 exactly
//! as the proxy would; 404 when no route matches; 400 for an invalid path.

use http::header::HeaderName;
use http::{Method, Request, Response, StatusCode, Uri};
use hyper::body::Incoming;

use super::{AuthState, Outcome};
use crate::config::AuthMode;
use crate::error::{Body, ProxyError, empty};
use crate::proxy::ConnInfo;
use crate::{authz, headers, routes};

static X_FORWARDED_METHOD: HeaderName = HeaderName::from_static("x-forwarded-method");
static X_FORWARDED_URI: HeaderName = HeaderName::from_static("x-forwarded-uri");
static X_ORIGINAL_URI: HeaderName = HeaderName::from_static("x-original-uri");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

pub async fn check(
    state: &AuthState,
    req: Request<Incoming>,
    conn: ConnInfo,
    host: Option<&str>,
) -> Response<Body> {
    let cfg = &*state.config;
    let (mut parts, _body) = req.into_parts();
    let trusted = headers::is_trusted(conn.peer.ip(), &cfg.server.trusted_proxies);
    let fwd = |n: &HeaderName| {
        if trusted {
            parts
                .headers
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        } else {
            None
        }
    };

    // The decision is about the original request. When it cannot be believed (forwarding
    // headers from a peer outside trusted_proxies) or is not named at all, refuse: judging the
    // check request itself instead (`/.auth/check`, i.e. whatever catch-all route covers it)
    // would answer for another route — e.g. 200 for a reader on a check meant for `/admin`.
    let forwarding = [
        &X_FORWARDED_METHOD,
        &X_FORWARDED_URI,
        &X_ORIGINAL_URI,
        &X_FORWARDED_HOST,
    ];
    if !trusted && forwarding.iter().any(|n| parts.headers.contains_key(*n)) {
        tracing::warn!(peer = %conn.peer.ip(), "/.auth/check: forwarding headers from a peer outside server.trusted_proxies; refused");
        return refused(
            "forward-auth headers from a peer outside server.trusted_proxies are not trusted (add the front proxy to trusted_proxies)",
        );
    }
    if fwd(&X_FORWARDED_URI).is_none() && fwd(&X_ORIGINAL_URI).is_none() {
        tracing::warn!(peer = %conn.peer.ip(), "/.auth/check: no X-Forwarded-Uri / X-Original-URI; refused");
        return refused(
            "the original request is unknown: the front proxy must send X-Forwarded-Uri or X-Original-URI and be listed in server.trusted_proxies",
        );
    }
    let method = match fwd(&X_FORWARDED_METHOD) {
        Some(m) => match Method::from_bytes(m.trim().as_bytes()) {
            Ok(m) => m,
            Err(_) => return ProxyError::BadRequest("invalid X-Forwarded-Method").into_response(),
        },
        None => parts.method.clone(),
    };
    let uri = match fwd(&X_FORWARDED_URI).or_else(|| fwd(&X_ORIGINAL_URI)) {
        Some(u) => match u.trim().parse::<Uri>() {
            Ok(u) if u.path().starts_with('/') => u,
            _ => {
                return ProxyError::BadRequest("invalid X-Forwarded-Uri / X-Original-URI")
                    .into_response();
            }
        },
        None => parts.uri.clone(),
    };
    let orig_host = fwd(&X_FORWARDED_HOST).or_else(|| host.map(str::to_string));
    let normalized = match routes::normalize_path(uri.path()) {
        Ok(p) => p.into_owned(),
        Err(e) => return ProxyError::BadPath(e).into_response(),
    };
    let Some(route) = cfg.routes.iter().find(|r| {
        r.matcher
            .matches(orig_host.as_deref(), &method, &normalized)
    }) else {
        return ProxyError::NoRoute {
            method: method.to_string(),
            path: normalized,
        }
        .into_response();
    };
    if route.auth == AuthMode::None {
        return ok(empty());
    }
    headers::strip_identity(&mut parts.headers, &cfg.identity_header_names);
    parts.method = method;
    parts.uri = uri;
    let identity = match state
        .authenticate(route, &parts, conn, orig_host.as_deref())
        .await
    {
        Outcome::Authenticated(a) => a.identity,
        Outcome::Respond(r) => return r,
    };
    match authz::authorize(route, &identity) {
        Ok(permit) => {
            let mut resp = ok(empty());
            headers::inject(
                resp.headers_mut(),
                &permit,
                &route.headers,
                Some((state.assertion(), &route.name)),
            );
            resp
        }
        Err(denied) => state.forbidden(route, &identity, &denied, &parts),
    }
}

/// 403 for a check whose original request is unknown or not from a trusted proxy.
fn refused(why: &str) -> Response<Body> {
    crate::error::json_error(StatusCode::FORBIDDEN, "forbidden", why)
}

fn ok(body: Body) -> Response<Body> {
    let mut r = Response::new(body);
    *r.status_mut() = StatusCode::OK;
    r.headers_mut().insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    r
}
