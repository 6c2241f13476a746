//! `/.auth/check`: forward-auth for nginx `auth_request` (and ingress-nginx), Traefik
//! ForwardAuth, Caddy `forward_auth` and Envoy ext_authz (HTTP). This module only reads the
//! original request (an input adapter, like the proxy's own) and renders the answer: the
//! decision is [`crate::decision::decide`]'s, the proxy's own (same host check, normalization,
//! route choice, authentication and authorization as a proxied request).
//!
//! The original request is read — **only when the caller is one of `[server] trusted_proxies`**
//! — from `X-Forwarded-Method` (Traefik, Caddy) or `X-Original-Method` (ingress-nginx);
//! `X-Forwarded-Uri` (Traefik, Caddy), `X-Original-URI` (nginx), `X-Original-URL`
//! (ingress-nginx) or the path after the check's own, `/.auth/check/<path>?<query>` (Envoy's
//! `path_prefix`); `X-Forwarded-Host` or the authority of an absolute `X-Original-URL`; and
//! `X-Forwarded-Proto` (the scheme: the session cookie's name and the login URL depend on it).
//! A check whose original request is unknown — forwarding headers or a path after the check's
//! from any other peer, or no original URI at all — is refused with 403: judging the check
//! request itself would answer for whichever route covers `/.auth/check`, not for the original
//! request. Without a method header the method is unknown (never the check request's own:
//! nginx's subrequests are all `GET`, and Envoy's method is only read from the header its
//! config adds), so a route restricted by `methods` does not match.
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
//! signed assertion; with `[forward_auth] xauthrequest` also oauth2-proxy's
//! `X-Auth-Request-*`) — the front proxy copies them upstream (`auth_request_set` /
//! `authResponseHeaders`); 200 without identity for `auth = "none"` routes; where the proxy
//! would send a browser to sign in, 401 naming the login URL (with `rd`) in `X-Auth-Login`, or
//! 302 to it when the check URL asks `?redirect=1` — the check never starts a login itself
//! (no pending-login cookie: the front proxy would not pass it on, or fail on the 302);
//! 401/403/503 otherwise exactly as the proxy would; 404 when no route matches; 400 for an
//! invalid or ambiguous path, an invalid method, host or scheme, or forwarding headers that
//! disagree or repeat; 403 for an original request under the auth prefix (the proxy's own
//! endpoints are never forwarded). A session slid or refreshed while judging comes back as
//! `Set-Cookie` on the answer. Metrics and the access log count the check under the route it
//! judged ([`Record`]).

use http::header::{self, HeaderName, HeaderValue};
use http::request::Parts;
use http::{HeaderMap, Method, Response, StatusCode, Uri};

use crate::auth::AuthState;
use crate::auth::login::is_browser_navigation;
use crate::config::Config;
use crate::decision::{Input, Record, Verdict, decide};
use crate::error::{AuthError, Body, ProxyError, Scheme, no_store, sign_in, wants_html};
use crate::request::ConnInfo;
use crate::{headers, routes};

/// Headers with which a client asks an app to run another method or path than the request's.
static OVERRIDES: [HeaderName; 4] = [
    HeaderName::from_static("x-http-method-override"),
    HeaderName::from_static("x-http-method"),
    HeaderName::from_static("x-method-override"),
    HeaderName::from_static("x-rewrite-url"),
];
static X_FORWARDED_METHOD: HeaderName = HeaderName::from_static("x-forwarded-method");
static X_ORIGINAL_METHOD: HeaderName = HeaderName::from_static("x-original-method");
static X_FORWARDED_URI: HeaderName = HeaderName::from_static("x-forwarded-uri");
static X_ORIGINAL_URI: HeaderName = HeaderName::from_static("x-original-uri");
static X_ORIGINAL_URL: HeaderName = HeaderName::from_static("x-original-url");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_AUTH_REQUEST_USER: HeaderName = HeaderName::from_static("x-auth-request-user");
static X_AUTH_REQUEST_EMAIL: HeaderName = HeaderName::from_static("x-auth-request-email");
static X_AUTH_REQUEST_GROUPS: HeaderName = HeaderName::from_static("x-auth-request-groups");
static X_AUTH_REQUEST_PREFERRED_USERNAME: HeaderName =
    HeaderName::from_static("x-auth-request-preferred-username");

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
    // Envoy's `path_prefix`: the original path after the check's own, the query the original's.
    let prefixed = match prefix_form(&parts.uri, &cfg.server.auth_prefix) {
        Ok(p) => p,
        Err(why) => return refused(ProxyError::BadRequest(why)),
    };
    // The decision is about the original request. When it cannot be believed (forwarding
    // headers, or a path after the check's, from a peer outside trusted_proxies) or is not
    // named at all, refuse: judging the check request itself instead (`/.auth/check`, i.e.
    // whatever catch-all route covers it) would answer for another route — e.g. 200 for a
    // reader on a check meant for `/admin`.
    let forwarding = [
        &X_FORWARDED_METHOD,
        &X_ORIGINAL_METHOD,
        &X_FORWARDED_URI,
        &X_ORIGINAL_URI,
        &X_ORIGINAL_URL,
        &X_FORWARDED_HOST,
    ];
    if !trusted && (prefixed.is_some() || forwarding.iter().any(|n| parts.headers.contains_key(*n)))
    {
        tracing::warn!(peer = %conn.peer.ip(), "/.auth/check: forwarding headers from a peer outside server.trusted_proxies; refused");
        return refused(ProxyError::CheckRefused(
            "forward-auth headers from a peer outside server.trusted_proxies are not trusted (add the front proxy to trusted_proxies)",
        ));
    }
    // `?redirect=1` on the check URL (Traefik, Caddy pass a 302 to the browser); in the prefix
    // form the query is the original request's.
    let redirect = prefixed.is_none() && asks_redirect(&parts.uri);
    let uri = match original_uri(&parts.headers, trusted, prefixed) {
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
    // A method or path override the client sent travels with the original request to the app
    // (front proxies pass client headers on; the proxy itself strips these), and an app that
    // honours it runs another method or path than the one judged here: refuse rather than
    // answer for a request the app will not see.
    if let Some(name) = OVERRIDES.iter().find(|n| parts.headers.contains_key(*n)) {
        tracing::warn!(peer = %conn.peer.ip(), header = %name, "/.auth/check: the original request carries an override header; refused");
        return refused(ProxyError::BadRequest(
            "the original request carries a method or path override header (X-HTTP-Method-Override, X-HTTP-Method, X-Method-Override, X-Rewrite-URL): the app could run another request than the one judged; clear these headers at the front proxy",
        ));
    }
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
    let https = match original_https(&parts.headers, trusted) {
        Ok(p) => p.unwrap_or(conn.tls),
        Err(why) => {
            tracing::warn!(peer = %conn.peer.ip(), "/.auth/check: {why}");
            return refused(ProxyError::BadRequest(why));
        }
    };
    // The head of the original request, as far as it is known. Unknown method: the check
    // request's own stays (it only decides whether a browser is sent to sign in or answered
    // 401); routes are chosen without it.
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
    // The check never starts a login: the answer goes to a front proxy, which drops the
    // pending-login cookie of a redirect it turns into its own (or, nginx, fails on the 302).
    // Judged without `Accept`, a login route without a session is "no credentials"; whether
    // the original request was a browser navigation decides below whether to name the login
    // URL.
    let navigation = is_browser_navigation(&parts);
    let html = wants_html(&parts.headers);
    parts.headers.remove(header::ACCEPT);
    let input = Input {
        host: orig_host.as_deref(),
        method_known,
        // the original request's scheme: the session cookie's name depends on it
        conn: ConnInfo { tls: https, ..conn },
        // The check connection's own SNI was checked for the check request; the original
        // request's is not known.
        sni: None,
    };
    let decision = decide(cfg, state, &mut parts, input).await;
    let record = decision.record(log);
    let resp = match decision.verdict {
        Ok(Verdict::Forward {
            permit, set_cookie, ..
        }) => {
            let mut resp = no_store(StatusCode::OK);
            if let (Some(permit), Some(i)) = (permit, decision.route) {
                let route = &cfg.routes[i];
                headers::inject(
                    resp.headers_mut(),
                    &permit,
                    &route.headers,
                    Some((state.assertion(), &route.name)),
                );
                if cfg.forward_auth.xauthrequest {
                    xauthrequest(resp.headers_mut(), permit.identity());
                }
            }
            // a session slid or refreshed while judging: the front proxy passes it on
            for c in set_cookie {
                resp.headers_mut().append(header::SET_COOKIE, c);
            }
            resp
        }
        // The proxy answers its own endpoints itself and never forwards them: no front proxy
        // may pass such a request on.
        Ok(Verdict::Endpoint) => ProxyError::CheckRefused(
            "the original request is for an endpoint of this proxy (the auth prefix), which is never forwarded",
        )
        .into_response(),
        // Where the proxy would send this browser to sign in: name the login URL.
        Err(ProxyError::Auth(AuthError::NoCredentials {
            scheme: Scheme::Session,
            clear_cookies,
        })) if navigation => match login_url(cfg, https, orig_host.as_deref(), &parts.uri) {
            Some(url) => sign_in(&url, redirect, html, clear_cookies),
            None => AuthError::NoCredentials {
                scheme: Scheme::Session,
                clear_cookies,
            }
            .into_response(html, &cfg.server.auth_prefix),
        },
        Err(ProxyError::Auth(e)) => e.into_response(html, &cfg.server.auth_prefix),
        Err(e) => e.into_response(),
    };
    (resp, record)
}

/// The original request in Envoy ext_authz's `path_prefix` form,
/// `<auth_prefix>/check/<original path>?<original query>`; `None` for `<auth_prefix>/check`
/// itself. The path is taken as sent (the decision normalizes it like any request's); a check
/// path that only reads `/check/…` once normalized (`/.auth//check/x`) is refused.
fn prefix_form(uri: &Uri, auth_prefix: &str) -> Result<Option<Uri>, &'static str> {
    let rest = uri
        .path()
        .strip_prefix(auth_prefix)
        .and_then(|r| r.strip_prefix("/check"));
    match rest {
        Some("") => Ok(None),
        Some(path) if path.starts_with('/') => {
            let target = match uri.query() {
                Some(q) => format!("{path}?{q}"),
                None => path.to_string(),
            };
            target
                .parse::<Uri>()
                .map(Some)
                .map_err(|_| "invalid original path after /.auth/check/")
        }
        _ => Err("send the original path after /.auth/check/ as the front proxy received it"),
    }
}

/// Whether the check URL's query asks for a redirect (`redirect=1`) instead of a 401 naming
/// the login URL.
fn asks_redirect(uri: &Uri) -> bool {
    uri.query().is_some_and(|q| {
        url::form_urlencoded::parse(q.as_bytes()).any(|(k, v)| k == "redirect" && v == "1")
    })
}

/// Where a browser that must sign in for the original request goes: `<origin><auth_prefix>/login`
/// with `rd` = the original URL. The origin is `public_url`, else the original request's
/// (its scheme and host: the front proxy routes `/.auth/*` on every host to this proxy).
fn login_url(cfg: &Config, https: bool, host: Option<&str>, uri: &Uri) -> Option<String> {
    let scheme = if https { "https" } else { "http" };
    let host = host?;
    let pq = uri.path_and_query().map_or("/", |p| p.as_str());
    let rd = format!("{scheme}://{host}{pq}");
    let origin = match &cfg.server.public_url {
        Some(u) => u.clone(),
        None => url::Url::parse(&format!("{scheme}://{host}/")).ok()?,
    };
    let mut login = origin
        .join(&format!("{}/login", cfg.server.auth_prefix))
        .ok()?;
    login.query_pairs_mut().clear().append_pair("rd", &rd);
    Some(login.into())
}

/// oauth2-proxy's `--set-xauthrequest` names for the identity (`[forward_auth] xauthrequest`).
fn xauthrequest(out: &mut HeaderMap, id: &crate::identity::Identity) {
    let mut set = |name: &HeaderName, value: Option<&str>| {
        if let Some(v) = value.and_then(headers::sanitize_value) {
            out.insert(name.clone(), v);
        }
    };
    set(&X_AUTH_REQUEST_USER, Some(&id.sub));
    set(&X_AUTH_REQUEST_EMAIL, id.verified_email());
    set(
        &X_AUTH_REQUEST_PREFERRED_USERNAME,
        id.preferred_username.as_deref(),
    );
    if !id.roles.is_empty() {
        set(&X_AUTH_REQUEST_GROUPS, Some(&id.roles.join(",")));
    }
}

/// The original request's URI from every header that names it (`None`: none does, or the
/// caller is not trusted). All of them, and every copy of each, must agree on the path and
/// query: a front proxy sets one and passes the client's others on, so choosing one by
/// precedence would let a client choose what is judged.
fn original_uri(
    headers: &HeaderMap,
    trusted: bool,
    prefixed: Option<Uri>,
) -> Result<Option<Uri>, &'static str> {
    if !trusted {
        return Ok(None);
    }
    let mut found: Option<Uri> = prefixed;
    for name in [&X_FORWARDED_URI, &X_ORIGINAL_URI, &X_ORIGINAL_URL] {
        for value in headers.get_all(name) {
            // A raw `#` never reaches a server in a request a browser makes; one in the
            // original URI is ambiguous (`/public/x#/../admin`: the URI parser drops the
            // "fragment", an app may not).
            let uri = value
                .to_str()
                .ok()
                .filter(|v| !v.contains('#'))
                .and_then(|v| v.trim().parse::<Uri>().ok())
                .filter(|u| u.path().starts_with('/'))
                .ok_or("invalid X-Forwarded-Uri / X-Original-URI / X-Original-URL")?;
            agree(
                &mut found,
                uri,
                |a, b| a.path_and_query() == b.path_and_query(),
                "X-Forwarded-Uri, X-Original-URI, X-Original-URL and the path after /.auth/check name different requests; the front proxy must set one and drop the client's copies",
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

/// The original request's scheme from `X-Forwarded-Proto` (`Some(true)`: https; `None`: not
/// sent, or the caller is not trusted). One value, `http` or `https`: a list or another
/// scheme is refused, like the other forwarding headers.
fn original_https(headers: &HeaderMap, trusted: bool) -> Result<Option<bool>, &'static str> {
    if !trusted {
        return Ok(None);
    }
    let mut values = headers.get_all(&X_FORWARDED_PROTO).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(
            "more than one X-Forwarded-Proto; the front proxy must set one and drop the client's copies",
        );
    }
    match value.to_str().map(str::trim) {
        Ok(p) if p.eq_ignore_ascii_case("https") => Ok(Some(true)),
        Ok(p) if p.eq_ignore_ascii_case("http") => Ok(Some(false)),
        _ => Err("invalid X-Forwarded-Proto: one value, http or https"),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn uri(s: &str) -> Uri {
        s.parse().unwrap()
    }

    /// `/.auth/check` alone names nothing; `/.auth/check/<path>?<query>` names the original
    /// path and query as sent; a check path that only reads so once normalized is refused.
    #[test]
    fn prefix_form() {
        assert_eq!(super::prefix_form(&uri("/.auth/check"), "/.auth"), Ok(None));
        assert_eq!(
            super::prefix_form(&uri("/.auth/check?redirect=1"), "/.auth"),
            Ok(None)
        );
        let p = super::prefix_form(&uri("/.auth/check/api/../x%2Fy?a=1&b"), "/.auth")
            .unwrap()
            .unwrap();
        assert_eq!(p.path_and_query().unwrap().as_str(), "/api/../x%2Fy?a=1&b");
        assert_eq!(
            super::prefix_form(&uri("/.auth/check/"), "/.auth")
                .unwrap()
                .unwrap()
                .path(),
            "/"
        );
        assert!(super::prefix_form(&uri("/.auth//check/x"), "/.auth").is_err());
        assert!(super::prefix_form(&uri("/.auth/checkx"), "/.auth").is_err());
    }

    #[test]
    fn redirect_is_asked_only_as_redirect_1() {
        assert!(asks_redirect(&uri("/.auth/check?redirect=1")));
        assert!(asks_redirect(&uri("/.auth/check?a=b&redirect=1")));
        assert!(!asks_redirect(&uri("/.auth/check")));
        assert!(!asks_redirect(&uri("/.auth/check?redirect=0")));
        assert!(!asks_redirect(&uri("/.auth/check?redirect")));
    }

    /// The login URL is on the original origin (or `public_url`), `rd` the whole original URL.
    #[test]
    fn login_url_carries_the_original_url() {
        let src = r#"
[server]
listen = "127.0.0.1:1"
[providers.p]
jwks_uri = "http://127.0.0.1:1/jwks"
[[route]]
name = "public"
path = "/"
upstream = "http://127.0.0.1:2"
auth = "none"
"#;
        let mut cfg =
            crate::config::load_str(std::path::Path::new("t.toml"), src, Default::default())
                .unwrap();
        let u = uri("/app/x?y=1&z=%2F");
        assert_eq!(
            login_url(&cfg, true, Some("app.example:8443"), &u).as_deref(),
            Some(
                "https://app.example:8443/.auth/login?rd=https%3A%2F%2Fapp.example%3A8443%2Fapp%2Fx%3Fy%3D1%26z%3D%252F"
            )
        );
        assert_eq!(login_url(&cfg, false, None, &u), None);
        cfg.server.public_url = Some(url::Url::parse("https://sso.example/").unwrap());
        assert_eq!(
            login_url(&cfg, false, Some("app.example"), &uri("/a")).as_deref(),
            Some("https://sso.example/.auth/login?rd=http%3A%2F%2Fapp.example%2Fa")
        );
    }
}
