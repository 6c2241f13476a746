//! `/.auth/check`: forward-auth for nginx `auth_request`, Traefik ForwardAuth and Envoy
//! ext_authz (HTTP). The decision is the proxy's own: same normalization, route choice,
//! authentication and authorization as a proxied request.
//!
//! The original request is read from `X-Forwarded-Method`, `X-Forwarded-Uri` (Traefik, Caddy),
//! `X-Original-URI` (nginx) or `X-Original-URL` (ingress-nginx), and `X-Forwarded-Host` — **only
//! when the caller is one of `[server] trusted_proxies`**. A check whose original request is
//! unknown — forwarding headers from any other peer, or no original URI at all — is refused
//! with 403: judging the check request itself would answer for whichever route covers
//! `/.auth/check`, not for the original request.
//!
//! # Deployment caveat: front proxies pass client headers on
//! nginx's `auth_request` (and Traefik, and Caddy) send the client's own headers with the check
//! and set only the ones they know. A client can therefore add an `X-Forwarded-Uri` to a
//! request that nginx describes in `X-Original-URI`. Every original-URI header present must
//! name the same path and query, or the check answers 400: the check never picks one.
//!
//! The path is normalized exactly as the proxy normalizes a request's
//! ([`crate::routes::normalize_path`]): front proxies pass the client's raw URI to the
//! upstream (nginx `proxy_pass` without a URI part), so a path whose route depends on how an
//! upstream decodes `%2F`/`%5C`, cuts `;` or decodes twice (`/public/..%2Fapi/x`) is a 400 here
//! too, never a 200 for the permissive route.
//!
//! Answers: 200 with the identity headers of the route's `[headers]` config (including the
//! signed assertion) — the front proxy copies them upstream (`auth_request_set` /
//! `authResponseHeaders`); 200 without identity for `auth = "none"` routes; 401/403/503 exactly
//! as the proxy would; 404 when no route matches; 400 for an invalid or ambiguous path or
//! original-URI headers that disagree.

use http::HeaderMap;
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
static X_ORIGINAL_URL: HeaderName = HeaderName::from_static("x-original-url");
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
        &X_ORIGINAL_URL,
        &X_FORWARDED_HOST,
    ];
    if !trusted && forwarding.iter().any(|n| parts.headers.contains_key(*n)) {
        tracing::warn!(peer = %conn.peer.ip(), "/.auth/check: forwarding headers from a peer outside server.trusted_proxies; refused");
        return refused(
            "forward-auth headers from a peer outside server.trusted_proxies are not trusted (add the front proxy to trusted_proxies)",
        );
    }
    let uri = match original_uri(&parts.headers, trusted) {
        Ok(Some(uri)) => uri,
        Ok(None) => {
            tracing::warn!(peer = %conn.peer.ip(), "/.auth/check: no X-Forwarded-Uri / X-Original-URI / X-Original-URL; refused");
            return refused(
                "the original request is unknown: the front proxy must send X-Forwarded-Uri or X-Original-URI and be listed in server.trusted_proxies",
            );
        }
        Err(why) => {
            tracing::warn!(peer = %conn.peer.ip(), "/.auth/check: {why}");
            return ProxyError::BadRequest(why).into_response();
        }
    };
    let method = match fwd(&X_FORWARDED_METHOD) {
        Some(m) => match Method::from_bytes(m.trim().as_bytes()) {
            Ok(m) => m,
            Err(_) => return ProxyError::BadRequest("invalid X-Forwarded-Method").into_response(),
        },
        None => parts.method.clone(),
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

/// The original request's URI from every header that names it (`None`: none does, or the
/// caller is not trusted). All of them, and every copy of each, must agree on the path and
/// query: a front proxy sets one and passes the client's others on, so choosing one by
/// precedence would let a client choose what is judged.
fn original_uri(headers: &HeaderMap, trusted: bool) -> Result<Option<Uri>, &'static str> {
    if !trusted {
        return Ok(None);
    }
    let mut found: Option<Uri> = None;
    for name in [&X_FORWARDED_URI, &X_ORIGINAL_URI, &X_ORIGINAL_URL] {
        for value in headers.get_all(name) {
            let uri = value
                .to_str()
                .ok()
                .and_then(|v| v.trim().parse::<Uri>().ok())
                .filter(|u| u.path().starts_with('/'))
                .ok_or("invalid X-Forwarded-Uri / X-Original-URI / X-Original-URL")?;
            match &found {
                Some(prev) if prev.path_and_query() != uri.path_and_query() => {
                    return Err(
                        "X-Forwarded-Uri, X-Original-URI and X-Original-URL name different requests; the front proxy must set one and drop the client's copies",
                    );
                }
                Some(_) => {}
                None => found = Some(uri),
            }
        }
    }
    Ok(found)
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
