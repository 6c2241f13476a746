//! `/.auth/check`: forward-auth for nginx `auth_request`, Traefik ForwardAuth and Envoy
//! ext_authz (HTTP). The decision is the proxy's own: same normalization, route choice,
//! authentication and authorization as a proxied request.
//!
//! The original request is read from `X-Forwarded-Method`, `X-Forwarded-Uri` (Traefik) or
//! `X-Original-URI` (nginx), and `X-Forwarded-Host` — **only when the caller is one of
//! `[server] trusted_proxies`**; from anyone else those headers are ignored and the check request's
//! own method, path and `Host` are judged (so a client cannot pick a laxer route by naming it).
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
        Outcome::Authenticated(id) => id,
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

fn ok(body: Body) -> Response<Body> {
    let mut r = Response::new(body);
    *r.status_mut() = StatusCode::OK;
    r.headers_mut().insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    r
}
