//! `/.auth/check`: forward-auth for nginx `auth_request`, Traefik ForwardAuth and Envoy
//! ext_authz (HTTP). This module only reads the original request from the forwarding headers
//! and renders the answer: the decision is [`crate::decision::decide`]'s, the proxy's own
//! (same host check, normalization, route choice, authentication and authorization as a
//! proxied request).
//!
//! The original request is read — **only when the caller is one of `[server] trusted_proxies`**
//! — from `X-Forwarded-Method` (Traefik, Caddy) or `X-Original-Method` (ingress-nginx);
//! `X-Forwarded-Uri` (Traefik, Caddy), `X-Original-URI` (nginx) or `X-Original-URL`
//! (ingress-nginx); and `X-Forwarded-Host` or the authority of an absolute `X-Original-URL`.
//! A check whose original request is unknown — forwarding headers from any other peer, or no
//! original URI at all — is refused with 403: judging the check request itself would answer
//! for whichever route covers `/.auth/check`, not for the original request. Without a method
//! header the method is unknown (never the check request's own: nginx's subrequests are all
//! `GET`), so a route restricted by `methods` does not match.
//!
//! # Deployment caveat: front proxies pass client headers on
//! nginx's `auth_request` (and Traefik, and Caddy) send the client's own headers with the check
//! and set only the ones they know. A client can therefore add an `X-Forwarded-Uri` to a
//! request that nginx describes in `X-Original-URI`, an `X-Forwarded-Method: GET` to one that
//! ingress-nginx describes with `X-Original-Method: POST`, or an `X-Forwarded-Host`. Every
//! header present for a part must name the same value, each at most once (the URI headers may
//! repeat one value), or the check answers 400: the check never picks one.
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
//! as the proxy would; 404 when no route matches; 400 for an invalid or ambiguous path, an
//! invalid method or host, or forwarding headers that disagree or repeat; 403 for an original
//! request under the auth prefix (the proxy's own endpoints are never forwarded).

use http::header::{self, HeaderName, HeaderValue};
use http::request::Parts;
use http::{HeaderMap, Method, Response, StatusCode, Uri};

use crate::auth::AuthState;
use crate::decision::{Input, Record, Verdict, decide};
use crate::error::{Body, ProxyError, no_store};
use crate::request::ConnInfo;
use crate::{headers, routes};

static X_FORWARDED_METHOD: HeaderName = HeaderName::from_static("x-forwarded-method");
static X_ORIGINAL_METHOD: HeaderName = HeaderName::from_static("x-original-method");
static X_FORWARDED_URI: HeaderName = HeaderName::from_static("x-forwarded-uri");
static X_ORIGINAL_URI: HeaderName = HeaderName::from_static("x-original-uri");
static X_ORIGINAL_URL: HeaderName = HeaderName::from_static("x-original-url");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// The answer to a check, and what the metrics and the access log keep of it: the route
/// judged for the original request. `log`: keep the identity for the access log.
pub async fn check(
    state: &AuthState,
    mut parts: Parts,
    conn: ConnInfo,
    host: Option<&str>,
    log: bool,
) -> (Response<Body>, Record) {
    let cfg = &*state.config;
    let trusted = headers::is_trusted(conn.peer.ip(), &cfg.server.trusted_proxies);
    let refused = |e: ProxyError| (e.into_response(), Record::default());
    // The decision is about the original request. When it cannot be believed (forwarding
    // headers from a peer outside trusted_proxies) or is not named at all, refuse: judging the
    // check request itself instead (`/.auth/check`, i.e. whatever catch-all route covers it)
    // would answer for another route — e.g. 200 for a reader on a check meant for `/admin`.
    let forwarding = [
        &X_FORWARDED_METHOD,
        &X_ORIGINAL_METHOD,
        &X_FORWARDED_URI,
        &X_ORIGINAL_URI,
        &X_ORIGINAL_URL,
        &X_FORWARDED_HOST,
    ];
    if !trusted && forwarding.iter().any(|n| parts.headers.contains_key(*n)) {
        tracing::warn!(peer = %conn.peer.ip(), "/.auth/check: forwarding headers from a peer outside server.trusted_proxies; refused");
        return refused(ProxyError::CheckRefused(
            "forward-auth headers from a peer outside server.trusted_proxies are not trusted (add the front proxy to trusted_proxies)",
        ));
    }
    let uri = match original_uri(&parts.headers, trusted) {
        Ok(Some(uri)) => uri,
        Ok(None) => {
            tracing::warn!(peer = %conn.peer.ip(), "/.auth/check: no X-Forwarded-Uri / X-Original-URI / X-Original-URL; refused");
            return refused(ProxyError::CheckRefused(
                "the original request is unknown: the front proxy must send X-Forwarded-Uri or X-Original-URI and be listed in server.trusted_proxies",
            ));
        }
        Err(why) => {
            tracing::warn!(peer = %conn.peer.ip(), "/.auth/check: {why}");
            return refused(ProxyError::BadRequest(why));
        }
    };
    let method = match original_method(&parts.headers, trusted) {
        Ok(m) => m,
        Err(why) => {
            tracing::warn!(peer = %conn.peer.ip(), "/.auth/check: {why}");
            return refused(ProxyError::BadRequest(why));
        }
    };
    let orig_host = match original_host(&parts.headers, trusted) {
        Ok(Some(h)) => Some(h),
        Ok(None) => host.map(str::to_string),
        Err(why) => {
            tracing::warn!(peer = %conn.peer.ip(), "/.auth/check: {why}");
            return refused(ProxyError::BadRequest(why));
        }
    };
    // The head of the original request, as far as it is known. Unknown method: the check
    // request's own stays (it only decides whether a browser is sent to the login page or
    // answered 401); routes are chosen without it.
    let method_known = method.is_some();
    if let Some(m) = method {
        parts.method = m;
    }
    parts.uri = uri;
    if let Some(h) = &orig_host {
        match HeaderValue::from_str(h) {
            Ok(v) => {
                parts.headers.insert(header::HOST, v);
            }
            Err(_) => return refused(ProxyError::BadRequest("invalid X-Forwarded-Host")),
        }
    }
    let input = Input {
        host: orig_host.as_deref(),
        method_known,
        conn,
        // The check connection's own SNI was checked for the check request; the original
        // request's is not known.
        sni: None,
    };
    let decision = decide(cfg, state, &mut parts, input).await;
    let record = decision.record(log);
    let resp = match decision.verdict {
        Ok(Verdict::Forward { permit, .. }) => {
            let mut resp = no_store(StatusCode::OK);
            if let (Some(permit), Some(i)) = (permit, decision.route) {
                let route = &cfg.routes[i];
                headers::inject(
                    resp.headers_mut(),
                    &permit,
                    &route.headers,
                    Some((state.assertion(), &route.name)),
                );
            }
            resp
        }
        // The proxy answers its own endpoints itself and never forwards them: no front proxy
        // may pass such a request on.
        Ok(Verdict::Endpoint) => ProxyError::CheckRefused(
            "the original request is for an endpoint of this proxy (the auth prefix), which is never forwarded",
        )
        .into_response(),
        Err(ProxyError::Auth(e)) => state.refusal(e, &parts),
        Err(e) => e.into_response(),
    };
    (resp, record)
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
            agree(
                &mut found,
                uri,
                |a, b| a.path_and_query() == b.path_and_query(),
                "X-Forwarded-Uri, X-Original-URI and X-Original-URL name different requests; the front proxy must set one and drop the client's copies",
            )?;
        }
    }
    Ok(found)
}

/// The original request's method from `X-Forwarded-Method` (Traefik, Caddy) and
/// `X-Original-Method` (ingress-nginx); `None` when neither is present (or the caller is not
/// trusted): the method is unknown. A copy of either header more than once, or both naming
/// different methods, is refused: the front proxy sets one and passes the client's other on.
fn original_method(headers: &HeaderMap, trusted: bool) -> Result<Option<Method>, &'static str> {
    if !trusted {
        return Ok(None);
    }
    let mut found: Option<Method> = None;
    for name in [&X_FORWARDED_METHOD, &X_ORIGINAL_METHOD] {
        let mut values = headers.get_all(name).iter();
        let Some(value) = values.next() else { continue };
        if values.next().is_some() {
            return Err(
                "more than one X-Forwarded-Method or X-Original-Method; the front proxy must set one and drop the client's copies",
            );
        }
        // a token (RFC 9110 §9.1): a list such as `GET, POST` or an empty value is no method
        let method = value
            .to_str()
            .ok()
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .and_then(|m| Method::from_bytes(m.as_bytes()).ok())
            .ok_or("invalid X-Forwarded-Method / X-Original-Method: not an HTTP method")?;
        if routes::method_is_ambiguous(&method) {
            return Err(
                "X-Forwarded-Method / X-Original-Method has lower-case letters; methods are case-sensitive (e.g. DELETE, not delete)",
            );
        }
        agree(
            &mut found,
            method,
            |a, b| a == b,
            "X-Forwarded-Method and X-Original-Method name different methods; the front proxy must set one and drop the client's copies",
        )?;
    }
    Ok(found)
}

/// The original request's host from `X-Forwarded-Host` and the authority of an absolute
/// `X-Original-URL` (ingress-nginx builds it from the client's `Host`); `None` when neither
/// names one (or the caller is not trusted). More than one `X-Forwarded-Host`, a list
/// (`a, b`), an invalid host or two hosts that differ are refused: which one a route is
/// judged for must not depend on which copy is read.
fn original_host(headers: &HeaderMap, trusted: bool) -> Result<Option<String>, &'static str> {
    if !trusted {
        return Ok(None);
    }
    let mut found: Option<&str> = None;
    let mut forwarded = headers.get_all(&X_FORWARDED_HOST).iter();
    if let Some(value) = forwarded.next() {
        if forwarded.next().is_some() {
            return Err(
                "more than one X-Forwarded-Host; the front proxy must set one and drop the client's copies",
            );
        }
        let host = value.to_str().map(str::trim).unwrap_or_default();
        if host.contains(',') {
            return Err(
                "X-Forwarded-Host lists several hosts; the front proxy must set one and drop the client's copies",
            );
        }
        if !crate::request::valid_host(host) {
            return Err("invalid X-Forwarded-Host");
        }
        found = Some(host);
    }
    let mut authorities: Vec<String> = Vec::new();
    for value in headers.get_all(&X_ORIGINAL_URL) {
        // the value was validated by original_uri; a relative one names no host
        let Some(uri) = value
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse::<Uri>().ok())
        else {
            continue;
        };
        let Some(authority) = uri.authority() else {
            continue;
        };
        if !crate::request::valid_host(authority.as_str()) {
            return Err("invalid host in X-Original-URL");
        }
        authorities.push(authority.as_str().to_string());
    }
    for authority in &authorities {
        agree(
            &mut found,
            authority.as_str(),
            |a, b| a.eq_ignore_ascii_case(b),
            "X-Forwarded-Host and X-Original-URL name different hosts; the front proxy must set one and drop the client's copies",
        )?;
    }
    Ok(found.map(str::to_string))
}

/// Records `value` as what the forwarding headers say, or refuses it (`why`) when an earlier
/// header said something else: which copy is judged must not depend on header order.
fn agree<T>(
    found: &mut Option<T>,
    value: T,
    same: impl Fn(&T, &T) -> bool,
    why: &'static str,
) -> Result<(), &'static str> {
    match found {
        Some(prev) if !same(prev, &value) => Err(why),
        Some(_) => Ok(()),
        None => {
            *found = Some(value);
            Ok(())
        }
    }
}
