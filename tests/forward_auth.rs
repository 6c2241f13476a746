//! Forward-auth (`/.auth/check`) over real sockets: the check itself, and behind the front
//! proxies people run it with.
//!
//! - The check asked directly as a trusted front proxy would: the original request from
//!   `X-Forwarded-*` / `X-Original-*` only when the caller is trusted, refused when unknown;
//!   ambiguous or hostile original URIs, methods and hosts are a 400, never a 200.
//! - Real nginx (Debian's, started from the test) with the `auth_request` snippet of
//!   `docs/forward-auth.md` and with the location ingress-nginx generates from the doc's
//!   annotations; real Caddy 2.6 with the doc's `reverse_proxy` form and its `forward_auth` +
//!   `copy_headers` form. Behind each: a public route, a bearer route with and without token, a
//!   role refusal, a login route with and without a session (the browser ends at the provider,
//!   then back on the app), `POST` on a GET-only route, the encoded-separator traversal, forged
//!   identity headers, a portcullis that does not trust the front, and the `Set-Cookie` of a
//!   session that slid while the check answered.
//! - Traefik and Envoy are not packaged: their requests are sent as they send them, from the
//!   doc's snippets (Traefik's `X-Forwarded-Method/Proto/Host/Uri` and `?redirect=1`, Envoy's
//!   `path_prefix`).
//!
//! Requests to the fronts go out with [`raw_http`] (no client normalizes them) or the scripted
//! [`Browser`] (cookies, redirects by hand, the provider's login form).

mod support;
use support::oidc;
use support::*;

use std::net::SocketAddr;

use oidc::{OidcProvider, TestIssuer};
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------
// the check asked directly (moved from tests/bearer.rs)

/// Bearer routes of the test provider `op`: `admin` (role admin), `public` (open), everything
/// else for any valid token; the signed assertion on.
fn config(op: &OidcProvider, upstream: &str, extra: &str) -> String {
    let issuer = &op.issuer;
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
{extra}

[providers.op]
issuer = "{issuer}"
audiences = ["portcullis-api"]

[headers]
assertion = "X-Portcullis-Assertion"

[[route]]
name = "admin"
path = "/admin"
upstream = "{upstream}"
auth = "bearer"
provider = "op"
require_roles = ["admin"]

[[route]]
name = "public"
path = "/public"
upstream = "{upstream}"
auth = "none"

[[route]]
name = "api"
path = "/"
upstream = "{upstream}"
auth = "bearer"
provider = "op"
"#
    )
}

/// `/.auth/check` decides like the proxy, from X-Forwarded-* only when the caller is trusted.
#[tokio::test]
async fn forward_auth_check() {
    let op = OidcProvider::start(&[("LOG_REQUESTS", "0")]);
    let up = echo_upstream().await;
    let p = start_proxy(&config(
        &op,
        &up.url(""),
        "trusted_proxies = [\"127.0.0.1/32\"]",
    ))
    .await;
    wait_ready(&p).await;
    let admin = op.jwt("api-admin").await;
    let reader = op.jwt("api-reader").await;
    let auth_admin = format!("Bearer {admin}");
    let auth_reader = format!("Bearer {reader}");

    let r = call(
        &p,
        "/.auth/check",
        &[
            ("x-forwarded-method", "GET"),
            ("x-forwarded-uri", "/admin/x?y=1"),
            ("authorization", &auth_admin),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.headers["x-forwarded-user"], "api-admin");
    assert_eq!(r.headers["x-forwarded-roles"], "admin,reader");
    assert!(r.headers.contains_key("x-portcullis-assertion"));

    // nginx style header
    let r = call(
        &p,
        "/.auth/check",
        &[
            ("x-original-uri", "/admin"),
            ("authorization", &auth_reader),
        ],
    )
    .await;
    assert_forbidden(&r, "missing required role(s): admin", "check reader");
    let r = call(&p, "/.auth/check", &[("x-original-uri", "/admin")]).await;
    assert_challenge(&r, "check without token");
    // normalized like the proxy: /public/../admin is /admin
    let r = call(
        &p,
        "/.auth/check",
        &[("x-forwarded-uri", "/public/../admin")],
    )
    .await;
    assert_challenge(&r, "dot segments");
    // auth = none → 200 without identity
    let r = call(
        &p,
        "/.auth/check",
        &[
            ("x-forwarded-uri", "/public/x"),
            ("x-forwarded-user", "mallory"),
        ],
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(!r.headers.contains_key("x-forwarded-user"));

    // untrusted caller: X-Forwarded-Uri is not believed — and the request is refused, not judged
    // as some other request
    let p2 = start_proxy(&config(&op, &up.url(""), "")).await;
    wait_ready(&p2).await;
    let r = call(&p2, "/.auth/check", &[("x-forwarded-uri", "/public")]).await;
    assert_check_refused(&r, "trusted_proxies", "untrusted X-Forwarded-Uri");
}

#[track_caller]
fn assert_check_refused(r: &Resp, text: &str, case: &str) {
    assert_eq!(r.status, 403, "{case}: {}", r.text());
    assert!(
        !r.headers.contains_key("x-forwarded-user"),
        "{case}: identity headers on a refusal"
    );
    assert!(message(r).contains(text), "{case}: {}", r.text());
}

/// Attack: forward-auth whose original request cannot be believed must not be judged as the
/// check request itself (`/.auth/check` matches the catch-all route "/", which has no role
/// requirement — a reader would pass a check meant for `/admin`).
#[tokio::test]
async fn forward_auth_check_refuses_when_the_original_request_is_unknown() {
    let op = OidcProvider::start(&[("LOG_REQUESTS", "0")]);
    let up = echo_upstream().await;
    let reader = op.jwt("api-reader").await;
    let auth_reader = format!("Bearer {reader}");
    // front proxy not in trusted_proxies (the default: nobody)
    let p = start_proxy(&config(&op, &up.url(""), "")).await;
    wait_ready(&p).await;
    for hdr in ["x-original-uri", "x-forwarded-uri"] {
        let r = call(
            &p,
            "/.auth/check",
            &[(hdr, "/admin"), ("authorization", &auth_reader)],
        )
        .await;
        assert_check_refused(&r, "trusted_proxies", hdr);
    }
    // trusted front proxy that forgot to send the original URI
    let p2 = start_proxy(&config(
        &op,
        &up.url(""),
        "trusted_proxies = [\"127.0.0.1/32\"]",
    ))
    .await;
    wait_ready(&p2).await;
    let r = call(
        &p2,
        "/.auth/check",
        &[
            ("x-forwarded-method", "GET"),
            ("authorization", &auth_reader),
        ],
    )
    .await;
    assert_check_refused(&r, "X-Original-URI", "no original URI");
}

// ---------------------------------------------------------------------------------------------
// hostile original requests, and nginx (moved from tests/paths.rs)

/// The nginx snippet of `docs/forward-auth.md`, with its example ports replaced.
fn doc_nginx_snippet(check: SocketAddr, upstream: SocketAddr) -> String {
    let snippet = doc_snippet("nginx");
    assert!(snippet.contains("127.0.0.1:4181") && snippet.contains("127.0.0.1:8000"));
    snippet
        .replace("127.0.0.1:4181", &check.to_string())
        .replace("127.0.0.1:8000", &upstream.to_string())
}

/// Portcullis as the decision point: `public` open, `api2` for bearer tokens of `ti`.
fn forward_auth_config(ti: &TestIssuer, upstream: SocketAddr) -> String {
    let up = format!("http://{upstream}");
    format!(
        r#"[server]
listen = "127.0.0.1:0"
trusted_proxies = ["127.0.0.1/32"]

[providers.ti]
issuer = "{issuer}"
audiences = ["portcullis-api"]

[[route]]
name = "public"
path = "/public"
upstream = "{up}"
auth = "none"

[[route]]
name = "api2"
path = "/api2"
upstream = "{up}"
auth = "bearer"
"#,
        issuer = ti.issuer
    )
}

/// Originals that nginx resolves to `/api2/…` (or the upstream will) while naming `/public`.
const FORWARD_TRAVERSALS: &[&str] = &[
    "/public/..%2Fapi2/x",
    "/public/..%2fapi2/x",
    "/public/%2e%2e%2fapi2/x",
    "/public/%2E%2E%2Fapi2/x",
    "/public/.%2e%2Fapi2/x",
    "/public%2F..%2Fapi2/x",
    "/public%2f%2e%2e%2fapi2/x",
    "/public/..%5Capi2/x",
    "/public/%2e%2e%5capi2/x",
    "/public/..;/api2/x",
    "/public/..;x/api2/x",
    "/public/..%3B/api2/x",
    "/public/..%3bx/api2/x",
    "/public/x/..%2F..%2Fapi2/x",
    "/public/%252e%252e%252fapi2/x",
    "/public/..%252Fapi2/x",
    "/public/x%2Fy/../../api2/x",
    "/public;x%2F..%2Fapi2/x",
];

/// Attack: behind nginx with the documented `auth_request` snippet, `/public/..%2Fapi2/x` was
/// judged as route `public` (200, no identity) while nginx served `/api2/x`. Also a client's own
/// `X-Forwarded-Uri`, which nginx passes on to the check next to its `X-Original-URI`.
#[tokio::test]
async fn forward_auth_behind_nginx_refuses_encoded_traversal() {
    let ti = TestIssuer::start().await;
    let up = echo_upstream().await;
    let proxy = start_proxy(&forward_auth_config(&ti, up.addr)).await;
    let nginx = start_nginx(&doc_nginx_snippet(proxy.http(), up.addr));
    let host = "app.example.com";
    let served = |resp: &str| resp.contains("x-echo: 1") || resp.contains("\"path\"");

    // Baseline through nginx: public passes, api2 needs a token, a valid token passes with
    // the identity nginx copies from the check.
    let resp = raw_get(nginx.addr, "/public/x", host, "").await;
    assert_eq!(raw_status(&resp), 200, "{resp}");
    assert!(served(&resp), "{resp}");
    let resp = raw_get(nginx.addr, "/api2/x", host, "").await;
    assert_eq!(raw_status(&resp), 401, "{resp}");
    assert!(!served(&resp), "{resp}");
    let token = ti.sign_rs256(
        Some("test-rsa"),
        &json!({"iss": ti.issuer, "aud": "portcullis-api", "sub": "alice",
                "iat": now(), "exp": now() + 300}),
    );
    let resp = raw_get(
        nginx.addr,
        "/api2/x",
        host,
        &format!("Authorization: Bearer {token}\r\n"),
    )
    .await;
    assert_eq!(raw_status(&resp), 200, "{resp}");
    assert_eq!(
        support::raw_echoed(&resp).header("x-forwarded-user"),
        Some("alice")
    );

    for target in FORWARD_TRAVERSALS {
        let resp = raw_get(nginx.addr, target, host, "").await;
        let status = raw_status(&resp);
        assert!(
            status >= 400 && !served(&resp),
            "{target}: nginx served it ({status}):\n{resp}"
        );
    }

    // A client's own X-Forwarded-Uri naming the open route, on a request for api2.
    for forged in [
        "X-Forwarded-Uri: /public/x\r\n",
        "X-Original-URL: http://h/public/x\r\n",
    ] {
        let resp = raw_get(nginx.addr, "/api2/x", host, forged).await;
        let status = raw_status(&resp);
        assert!(
            status >= 400 && !served(&resp),
            "{forged:?}: nginx served it ({status}):\n{resp}"
        );
    }

    // The encoded slash inside a name still passes (nginx forwards the raw URI).
    let resp = raw_get(nginx.addr, "/public/a%2Fb", host, "").await;
    assert_eq!(raw_status(&resp), 200, "{resp}");
    assert_eq!(support::raw_echoed(&resp).path, "/public/a%2Fb");
    proxy.shutdown().await;
}

/// The check itself, asked by a trusted proxy with a forged or hostile original URI: 400 with
/// the reason, never 200; several original-URI headers that disagree: 400.
#[tokio::test]
async fn check_refuses_ambiguous_original_uris() {
    let ti = TestIssuer::start().await;
    let up = echo_upstream().await;
    let proxy = start_proxy(&forward_auth_config(&ti, up.addr)).await;
    let addr = proxy.http();
    let host = addr.to_string();
    let check = |headers: String| {
        let host = host.clone();
        async move { raw_get(addr, "/.auth/check", &host, &headers).await }
    };

    for target in FORWARD_TRAVERSALS {
        for header in ["X-Forwarded-Uri", "X-Original-URI"] {
            let resp = check(format!("{header}: {target}\r\n")).await;
            assert_eq!(raw_status(&resp), 400, "{header}: {target}:\n{resp}");
            let body: Value = serde_json::from_str(raw_body(&resp).trim())
                .unwrap_or_else(|e| panic!("{target}: no JSON ({e}):\n{resp}"));
            assert_eq!(body["error"], "invalid_path", "{target}: {body}");
        }
        let resp = check(format!("X-Original-URL: http://h{target}\r\n")).await;
        assert_eq!(raw_status(&resp), 400, "X-Original-URL: {target}:\n{resp}");
    }
    // a raw backslash, a NUL or a control character in the header: refused, never judged as public
    for target in [
        "/public/..\\api2/x",
        "/public/..%00/api2/x",
        "/public/..%0a/api2/x",
    ] {
        let resp = check(format!("X-Forwarded-Uri: {target}\r\n")).await;
        assert_eq!(raw_status(&resp), 400, "{target}:\n{resp}");
    }
    // the same path, legitimately spelled, is judged
    let resp = check("X-Forwarded-Uri: /public/x\r\n".into()).await;
    assert_eq!(raw_status(&resp), 200, "{resp}");
    let resp = check("X-Original-URI: /api2/x\r\n".into()).await;
    assert_eq!(raw_status(&resp), 401, "{resp}");
    let resp = check("X-Original-URI: /public/a%2Fb?next=/..%2Fapi2/x\r\n".into()).await;
    assert_eq!(raw_status(&resp), 200, "{resp}");

    // headers that disagree: the client's X-Forwarded-Uri next to nginx's X-Original-URI
    for headers in [
        "X-Original-URI: /api2/x\r\nX-Forwarded-Uri: /public/x\r\n",
        "X-Forwarded-Uri: /public/x\r\nX-Original-URI: /api2/x\r\n",
        "X-Original-URI: /api2/x\r\nX-Original-URL: http://h/public/x\r\n",
        "X-Forwarded-Uri: /public/x\r\nX-Forwarded-Uri: /api2/x\r\n",
    ] {
        let resp = check(headers.into()).await;
        assert_eq!(raw_status(&resp), 400, "{headers:?}:\n{resp}");
        let body: Value = serde_json::from_str(raw_body(&resp).trim())
            .unwrap_or_else(|e| panic!("{headers:?}: no JSON ({e}):\n{resp}"));
        let message = body["message"].as_str().unwrap_or_default();
        assert!(message.contains("name different requests"), "{body}");
    }
    // the same URI twice is one request
    let resp = check("X-Original-URI: /public/x\r\nX-Forwarded-Uri: /public/x\r\n".into()).await;
    assert_eq!(raw_status(&resp), 200, "{resp}");

    // a raw `#` (nginx passes `/public/x#/../../api2/x` as sent): the URI parser would judge
    // `/public/x`, an app may resolve the rest
    for header in ["X-Forwarded-Uri", "X-Original-URI"] {
        let resp = check(format!("{header}: /public/x#/../../api2/x\r\n")).await;
        assert_eq!(raw_status(&resp), 400, "{header} with #:\n{resp}");
    }
    let resp = check("X-Original-URL: http://h/public/x#/../../api2/x\r\n".into()).await;
    assert_eq!(raw_status(&resp), 400, "X-Original-URL with #:\n{resp}");

    // method and path overrides the client sent (front proxies pass them on to the app, which
    // may run another request than the one judged): refused with a message naming them
    for header in [
        "X-HTTP-Method-Override: DELETE",
        "X-HTTP-Method: PUT",
        "X-Method-Override: POST",
        "X-Rewrite-URL: /api2/x",
        "x-http-method-override: get",
    ] {
        let resp = check(format!("X-Forwarded-Uri: /public/x\r\n{header}\r\n")).await;
        assert_eq!(raw_status(&resp), 400, "{header}:\n{resp}");
        assert!(
            raw_body(&resp).contains("override header"),
            "{header}: {}",
            raw_body(&resp)
        );
    }
    proxy.shutdown().await;
}

/// Attack: `/.auth/check` ignored `X-Original-Method` and judged a check without a method
/// header by its own method (nginx subrequests are GET), so `DELETE /m/x` got the GET-only open
/// route. Now the method comes from `X-Forwarded-Method` / `X-Original-Method` or is unknown,
/// and a client's extra copy that disagrees is a 400.
#[tokio::test]
async fn check_reads_the_original_method_and_refuses_ambiguous_ones() {
    let ti = TestIssuer::start().await;
    let up = echo_upstream().await;
    let proxy = start_proxy(&method_config(&ti.issuer, up.addr)).await;
    let addr = proxy.http();
    let host = addr.to_string();
    let check = |headers: &str| {
        let host = host.clone();
        let headers = format!("X-Original-URI: /m/x\r\n{headers}");
        async move { raw_get(addr, "/.auth/check", &host, &headers).await }
    };

    // no method header: unknown, so `ro` (methods = GET, HEAD) does not match; `app` judges
    let resp = check("").await;
    assert_eq!(raw_status(&resp), 401, "no method header:\n{resp}");
    for (headers, status) in [
        ("X-Original-Method: DELETE\r\n", 401),
        ("X-Original-Method: POST\r\n", 401),
        ("X-Forwarded-Method: POST\r\n", 401),
        ("X-Original-Method: GET\r\n", 200),
        ("X-Forwarded-Method: HEAD\r\n", 200),
        ("X-Forwarded-Method: GET\r\nX-Original-Method: GET\r\n", 200),
    ] {
        let resp = check(headers).await;
        assert_eq!(raw_status(&resp), status, "{headers:?}:\n{resp}");
    }
    // the ingress-nginx shape plus the client's own X-Forwarded-Method, either order
    for headers in [
        "X-Original-Method: POST\r\nX-Forwarded-Method: GET\r\n",
        "X-Forwarded-Method: GET\r\nX-Original-Method: POST\r\n",
    ] {
        let resp = check(headers).await;
        assert_bad_request(&resp, headers, "different methods");
    }
    for headers in [
        "X-Original-Method: GET\r\nX-Original-Method: GET\r\n",
        "X-Forwarded-Method: GET\r\nX-Forwarded-Method: POST\r\n",
    ] {
        let resp = check(headers).await;
        assert_bad_request(&resp, headers, "more than one");
    }
    // methods are case-sensitive tokens: `get`/`Post` are not GET/POST, yet many upstreams
    // upper-case them (Caddy, written in Go, passes a client's `delete` on as is)
    for headers in [
        "X-Original-Method: get\r\n",
        "X-Forwarded-Method: delete\r\n",
        "X-Forwarded-Method: Post\r\n",
    ] {
        let resp = check(headers).await;
        assert_bad_request(&resp, headers, "lower-case");
    }
    for headers in [
        "X-Original-Method: GET, POST\r\n",
        "X-Forwarded-Method: G(T\r\n",
        "X-Original-Method: \r\n",
    ] {
        let resp = check(headers).await;
        assert_bad_request(&resp, headers, "not an HTTP method");
    }
    proxy.shutdown().await;
}

/// Attack: with two `X-Forwarded-Host` headers the first won, so a client's copy ahead of the
/// front proxy's picked the open `pub.example` host route; ingress-nginx names the host only in
/// `X-Original-URL`, next to which a client's `X-Forwarded-Host` was believed.
#[tokio::test]
async fn check_refuses_duplicate_or_disagreeing_forwarded_host() {
    let ti = TestIssuer::start().await;
    let up = echo_upstream().await;
    let proxy = start_proxy(&method_config(&ti.issuer, up.addr)).await;
    let addr = proxy.http();
    let host = addr.to_string();
    // one value names the host; two copies, a list, or a host that differs from X-Original-URL's
    // is refused (first-wins would let the client's copy pick `pub`)
    let host_check = |headers: &'static str| {
        let host = host.clone();
        async move { raw_get(addr, "/.auth/check", &host, headers).await }
    };
    let resp = host_check("X-Original-URI: /admin\r\nX-Forwarded-Host: pub.example\r\n").await;
    assert_eq!(raw_status(&resp), 200, "{resp}");
    let resp = host_check("X-Original-URI: /admin\r\nX-Forwarded-Host: app.example\r\n").await;
    assert_eq!(raw_status(&resp), 401, "{resp}");
    let resp = host_check("X-Original-URL: http://pub.example/admin\r\n").await;
    assert_eq!(raw_status(&resp), 200, "{resp}");
    let resp = host_check("X-Original-URL: HTTPS://Pub.Example/admin\r\n").await;
    assert_eq!(raw_status(&resp), 200, "{resp}");
    let resp = host_check("X-Original-URL: https://app.example:8443/admin\r\n").await;
    assert_eq!(raw_status(&resp), 401, "{resp}");
    for (headers, word) in [
        (
            "X-Original-URI: /admin\r\nX-Forwarded-Host: pub.example\r\nX-Forwarded-Host: app.example\r\n",
            "more than one X-Forwarded-Host",
        ),
        (
            "X-Original-URI: /admin\r\nX-Forwarded-Host: app.example\r\nX-Forwarded-Host: pub.example\r\n",
            "more than one X-Forwarded-Host",
        ),
        (
            "X-Original-URI: /admin\r\nX-Forwarded-Host: pub.example, app.example\r\n",
            "lists several hosts",
        ),
        (
            "X-Original-URL: http://app.example/admin\r\nX-Forwarded-Host: pub.example\r\n",
            "different hosts",
        ),
        (
            "X-Original-URI: /admin\r\nX-Forwarded-Host: pub.example/x\r\n",
            "invalid X-Forwarded-Host",
        ),
        (
            "X-Original-URL: http://user@pub.example/admin\r\n",
            "invalid host in X-Original-URL",
        ),
    ] {
        let resp = host_check(headers).await;
        assert_bad_request(&resp, headers, word);
    }
    proxy.shutdown().await;
}

/// The ingress-nginx `auth-url` shape: the auth subrequest carries `X-Original-URL`
/// (`$scheme://$http_host$request_uri`) and `X-Original-Method` and passes the client's headers
/// on. A `POST /m/x` reached the upstream with no identity through the GET-only open route.
#[tokio::test]
async fn forward_auth_behind_ingress_nginx_shape_judges_the_original_method() {
    let ti = TestIssuer::start().await;
    let up = echo_upstream().await;
    let proxy = start_proxy(&method_config(&ti.issuer, up.addr)).await;
    let nginx = start_nginx(&format!(
        r#"server {{
    listen 80;
    location = /_external-auth {{
        internal;
        proxy_pass              http://{check}/.auth/check;
        proxy_pass_request_body off;
        proxy_set_header        Content-Length "";
        proxy_set_header        X-Original-URL $scheme://$http_host$request_uri;
        proxy_set_header        X-Original-Method $request_method;
        proxy_set_header        X-Sent-From "nginx-ingress-controller";
    }}
    location / {{
        auth_request /_external-auth;
        proxy_pass   http://{up};
    }}
}}"#,
        check = proxy.http(),
        up = up.addr
    ));
    let host = "app.example";
    let served = |resp: &str| resp.contains("x-echo: 1");
    let send = |method: &'static str, extra: &'static str| async move {
        raw_http(
            nginx.addr,
            format!(
                "{method} /m/x HTTP/1.1\r\nHost: {host}\r\n{extra}Content-Length: 0\r\nConnection: close\r\n\r\n"
            ),
        )
        .await
    };

    let resp = send("GET", "").await;
    assert_eq!(raw_status(&resp), 200, "{resp}");
    assert!(served(&resp), "{resp}");
    for method in ["POST", "DELETE", "PUT"] {
        let resp = send(method, "").await;
        assert_eq!(raw_status(&resp), 401, "{method}:\n{resp}");
        assert!(!served(&resp), "{method}: served:\n{resp}");
    }
    // the client's own X-Forwarded-Method next to the controller's X-Original-Method: the
    // check answers 400, which nginx turns into 500 — denied either way
    let resp = send("POST", "X-Forwarded-Method: GET\r\n").await;
    assert!(
        raw_status(&resp) >= 400 && !served(&resp),
        "forged X-Forwarded-Method served:\n{resp}"
    );
    // the client's own X-Forwarded-Host naming the open host route
    let resp = send("POST", "X-Forwarded-Host: pub.example\r\n").await;
    assert!(
        raw_status(&resp) >= 400 && !served(&resp),
        "forged X-Forwarded-Host served:\n{resp}"
    );
    proxy.shutdown().await;
}

/// The documented nginx snippet, as given: the original method reaches the check (`POST /m/x`
/// is not the GET-only open route), the client's `X-Forwarded-Method` is dropped, and a
/// client's `Host: pub.example` neither reaches the site nor picks portcullis's open
/// `pub.example` route (the default server refuses it; the site forwards its own name).
#[tokio::test]
async fn doc_nginx_snippet_pins_method_and_host() {
    let ti = TestIssuer::start().await;
    let up = echo_upstream().await;
    let proxy = start_proxy(&method_config(&ti.issuer, up.addr)).await;
    let nginx = start_nginx(&doc_nginx_snippet(proxy.http(), up.addr));
    let served = |resp: &str| resp.contains("x-echo: 1");
    let send = |method: &'static str,
                target: &'static str,
                host: &'static str,
                extra: &'static str| async move {
        raw_http(
            nginx.addr,
            format!(
                "{method} {target} HTTP/1.1\r\nHost: {host}\r\n{extra}Content-Length: 0\r\nConnection: close\r\n\r\n"
            ),
        )
        .await
    };

    let resp = send("GET", "/m/x", "app.example.com", "").await;
    assert_eq!(raw_status(&resp), 200, "{resp}");
    assert!(served(&resp), "{resp}");
    for (method, extra) in [
        ("POST", ""),
        ("DELETE", ""),
        ("POST", "X-Forwarded-Method: GET\r\n"),
    ] {
        let resp = send(method, "/m/x", "app.example.com", extra).await;
        assert_eq!(raw_status(&resp), 401, "{method} {extra:?}:\n{resp}");
        assert!(!served(&resp), "{method} {extra:?}: served:\n{resp}");
    }

    // another host: the default server refuses it before any check
    let resp = send("GET", "/admin/secret.txt", "pub.example", "").await;
    assert_eq!(raw_status(&resp), 421, "{resp}");
    assert!(!served(&resp), "{resp}");
    // the site's own host with a forged X-Forwarded-Host: nginx sends its server_name instead
    let resp = send(
        "GET",
        "/admin/secret.txt",
        "app.example.com",
        "X-Forwarded-Host: pub.example\r\n",
    )
    .await;
    assert_eq!(raw_status(&resp), 401, "{resp}");
    assert!(!served(&resp), "{resp}");
    proxy.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// behind real front proxies: nginx, the ingress-nginx location, Caddy

/// Sessions slide after a quarter of the idle timeout (here 2 s): a request after that gets a
/// fresh cookie.
const IDLE_TIMEOUT_S: u64 = 8;

/// portcullis behind a front proxy: `public` open, `ro` open for GET/HEAD only, `api` and
/// `api-admin` (role admin) for bearer tokens of `ti`, `admin` (role admin) and `app` for
/// sessions of the login provider `op`. `trusted`: the front's address (or not).
fn fronts_config(op: &str, ti: &str, up: SocketAddr, trusted: &str, extra: &str) -> String {
    let up = format!("http://{up}");
    format!(
        r#"[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
trusted_proxies = ["{trusted}"]

[providers.op]
issuer = "{op}"
client_id = "web"
client_secret = "web-secret"
scopes = ["openid", "profile", "email"]

[providers.ti]
issuer = "{ti}"
audiences = ["portcullis-api"]

[session]
secret = "a-test-secret-of-at-least-32-bytes-4f0c9e2b7a"
idle_timeout = "{IDLE_TIMEOUT_S}s"

[headers]
assertion = "X-Portcullis-Assertion"
{extra}
[[route]]
name = "public"
path = "/public"
upstream = "{up}"
auth = "none"

[[route]]
name = "ro"
path = "/ro"
methods = ["GET", "HEAD"]
upstream = "{up}"
auth = "none"

[[route]]
name = "api-admin"
path = "/api/admin"
upstream = "{up}"
auth = "bearer"
provider = "ti"
require_roles = ["admin"]

[[route]]
name = "api"
path = "/api"
upstream = "{up}"
auth = "bearer"
provider = "ti"

[[route]]
name = "admin"
path = "/admin"
upstream = "{up}"
auth = "login"
provider = "op"
require_roles = ["admin"]

[[route]]
name = "app"
path = "/"
upstream = "{up}"
auth = "login"
provider = "op"
"#
    )
}

/// A login provider registered for the front's port, a bearer issuer, the echo upstream, a
/// portcullis that trusts the front (`proxy`) and one that does not (`untrusting`: it trusts
/// only 127.0.0.2).
struct Fronted {
    provider: Provider,
    ti: TestIssuer,
    up: EchoUpstream,
    proxy: TestProxy,
    untrusting: TestProxy,
    /// The front's port: the provider knows `http://127.0.0.1:<port>/.auth/callback`.
    port: u16,
}

async fn fronted(extra: &str) -> Fronted {
    fronted_with(extra, &[]).await
}

/// [`fronted`] with settings for the provider (`ACCESS_TOKEN_TTL`, …).
async fn fronted_with(extra: &str, provider_env: &[(&str, &str)]) -> Fronted {
    let port = free_port();
    let provider = Provider::start(&[port], provider_env);
    let ti = TestIssuer::start().await;
    let up = echo_upstream().await;
    let cfg = |trusted| fronts_config(&provider.issuer, &ti.issuer, up.addr, trusted, extra);
    let proxy = start_proxy_ready(&cfg("127.0.0.1/32")).await;
    let untrusting = start_proxy_ready(&cfg("127.0.0.2/32")).await;
    Fronted {
        provider,
        ti,
        up,
        proxy,
        untrusting,
        port,
    }
}

impl Fronted {
    /// A bearer token of `ti` for `sub` with `roles`.
    fn token(&self, sub: &str, roles: &[&str]) -> String {
        self.ti.sign_rs256(
            Some("test-rsa"),
            &json!({"iss": self.ti.issuer, "aud": "portcullis-api", "sub": sub,
                    "email": format!("{sub}@example.com"), "name": format!("{sub} Example"),
                    "preferred_username": sub, "roles": roles,
                    "iat": now(), "exp": now() + 300}),
        )
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Front {
    /// The `auth_request` snippet of the doc.
    Nginx,
    /// The location ingress-nginx generates from the doc's annotations.
    Ingress,
    /// The doc's Caddy `reverse_proxy` form.
    Caddy,
    /// The doc's Caddy `forward_auth` + `copy_headers` form.
    CaddyForwardAuth,
}

/// The doc's nginx snippet for a browser at `127.0.0.1:<port>`.
fn nginx_site(check: SocketAddr, up: SocketAddr) -> String {
    doc_nginx_snippet(check, up).replace("server_name app.example.com;", "server_name 127.0.0.1;")
}

/// The `nginx.ingress.kubernetes.io/<key>` annotation of the doc's ingress-nginx snippet.
fn annotation(key: &str) -> String {
    let snippet = doc_snippet("ingress-nginx");
    let prefix = format!("nginx.ingress.kubernetes.io/{key}: ");
    let line = snippet
        .lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .unwrap_or_else(|| panic!("no {key} annotation in:\n{snippet}"));
    line.trim_matches('"').to_string()
}

/// The server ingress-nginx generates for an Ingress with the doc's annotations (its
/// `nginx.tmpl` external-auth shape: `X-Original-URL`, `X-Original-Method`, the auth cookie,
/// `auth_request_set` per response header, `error_page 401 = @signin`), plus the doc's second
/// Ingress sending `/.auth` to portcullis. Stock nginx has no `set_escape_uri`, so
/// `$escaped_request_uri` is `$request_uri` here (the tests' URIs need no escaping).
fn ingress_site(check: SocketAddr, up: SocketAddr) -> String {
    let auth_url = annotation("auth-url");
    let signin = annotation("auth-signin");
    let headers = annotation("auth-response-headers");
    let auth_url = auth_url.replace("portcullis.auth.svc.cluster.local:4181", &check.to_string());
    assert!(auth_url.contains(&check.to_string()), "{auth_url}");
    let signin = signin
        .replace("https://$host", "http://$http_host")
        .replace("$escaped_request_uri", "$request_uri");
    let mut copy = String::new();
    for (i, h) in headers.split(',').map(str::trim).enumerate() {
        let var = h.to_ascii_lowercase().replace('-', "_");
        copy.push_str(&format!(
            "        auth_request_set $authHeader{i} $upstream_http_{var};\n        proxy_set_header '{h}' $authHeader{i};\n"
        ));
    }
    format!(
        r#"server {{
    listen 80;
    location = /_external-auth {{
        internal;
        proxy_pass_request_body off;
        proxy_set_header        Content-Length "";
        proxy_set_header        Host {check};
        proxy_set_header        X-Original-URL $scheme://$http_host$request_uri;
        proxy_set_header        X-Original-Method $request_method;
        proxy_set_header        X-Sent-From "nginx-ingress-controller";
        proxy_set_header        X-Real-IP $remote_addr;
        proxy_set_header        X-Forwarded-For $remote_addr;
        proxy_set_header        X-Auth-Request-Redirect $request_uri;
        proxy_http_version      1.1;
        proxy_pass              {auth_url};
    }}
    location /.auth/ {{
        proxy_pass       http://{check};
        proxy_set_header Host $http_host;
        proxy_set_header X-Forwarded-Proto $scheme;
    }}
    location / {{
        auth_request /_external-auth;
        auth_request_set $auth_cookie $upstream_http_set_cookie;
        add_header Set-Cookie $auth_cookie;
{copy}        error_page 401 = @signin;
        proxy_pass http://{up};
    }}
    location @signin {{
        internal;
        add_header Set-Cookie $auth_cookie;
        return 302 {signin};
    }}
}}"#
    )
}

/// A Caddy snippet of the doc (`name`) on `127.0.0.1:<port>`, talking to `check` and `up`.
fn caddy_site(name: &str, port: u16, check: SocketAddr, up: SocketAddr) -> String {
    let snippet = doc_snippet(name);
    assert!(snippet.starts_with("app.example.com {\n"), "{snippet}");
    snippet
        .replacen(
            "app.example.com {\n",
            &format!("http://127.0.0.1:{port} {{\n    bind 127.0.0.1\n"),
            1,
        )
        .replace("127.0.0.1:4181", &check.to_string())
        .replace("127.0.0.1:8000", &up.to_string())
}

/// A running front proxy of either kind.
enum Running {
    Nginx(Nginx),
    Caddy(Caddy),
}

impl Running {
    fn addr(&self) -> SocketAddr {
        match self {
            Running::Nginx(n) => n.addr,
            Running::Caddy(c) => c.addr,
        }
    }
    fn log(&self) -> String {
        match self {
            Running::Nginx(n) => n.log(),
            Running::Caddy(c) => c.log(),
        }
    }
}

fn start_front(kind: Front, port: u16, check: SocketAddr, up: SocketAddr) -> Running {
    match kind {
        Front::Nginx => Running::Nginx(start_nginx_on(port, &nginx_site(check, up))),
        Front::Ingress => Running::Nginx(start_nginx_on(port, &ingress_site(check, up))),
        Front::Caddy => Running::Caddy(start_caddy_on(port, &caddy_site("caddy", port, check, up))),
        Front::CaddyForwardAuth => Running::Caddy(start_caddy_on(
            port,
            &caddy_site("caddy-forward-auth", port, check, up),
        )),
    }
}

/// Every value of response header `name` in a raw response.
fn raw_headers(resp: &str, name: &str) -> Vec<String> {
    let head = resp.split("\r\n\r\n").next().unwrap_or_default();
    head.lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .filter(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim().to_string())
        .collect()
}

fn raw_header(resp: &str, name: &str) -> Option<String> {
    raw_headers(resp, name).into_iter().next()
}

/// The upstream's echo in a page the browser got.
fn page_echo(page: &Page) -> Echoed {
    serde_json::from_str(&page.body).unwrap_or_else(|e| {
        panic!(
            "not the upstream's echo ({e}): {} {}",
            page.status, page.body
        )
    })
}

/// Every case behind the front `kind`: public, bearer with and without token, role refusal,
/// POST on a GET-only route, the encoded traversal, forged identity headers, an untrusting
/// portcullis; then a browser: the login route without a session ends at the provider, the
/// login lands back on the app with the identity, the admin route refuses bob, and a session
/// that slid while the check answered reaches the browser as `Set-Cookie`.
async fn front_cases(kind: Front) {
    let f = fronted("").await;
    let front = start_front(kind, f.port, f.proxy.http(), f.up.addr);
    let addr = front.addr();
    let host = addr.to_string();
    let base = format!("http://{host}");
    // the echo upstream's mark (Caddy writes it X-Echo)
    let served = |resp: &str| raw_header(resp, "x-echo").is_some();
    let get = |target: &'static str, extra: String| {
        let host = host.clone();
        async move { raw_get(addr, target, &host, &extra).await }
    };
    let ctx = |what: &str, resp: &str| {
        format!(
            "{kind:?}, {what}:\n{resp}\n--- front log ---\n{}",
            front.log()
        )
    };

    // public, with forged identity headers: forwarded, no identity upstream
    let forged = "X-Forwarded-User: mallory\r\nX-Forwarded-Roles: admin\r\nX_Forwarded_User: mallory\r\nX-Portcullis-Assertion: forged\r\n";
    let resp = get("/public/x", forged.into()).await;
    assert_eq!(raw_status(&resp), 200, "{}", ctx("public", &resp));
    assert!(served(&resp), "{}", ctx("public", &resp));
    let e = raw_echoed(&resp);
    for name in [
        "x-forwarded-user",
        "x-forwarded-roles",
        "x-portcullis-assertion",
    ] {
        let seen = e.header(name);
        if kind == Front::CaddyForwardAuth {
            // Caddy 2.6's copy_headers writes its placeholder for a header the check did not send
            assert!(
                seen.is_none_or(|v| v.starts_with("{http.reverse_proxy.header.")),
                "{name}: {seen:?}"
            );
        } else {
            assert_eq!(seen, None, "{}", ctx(name, &resp));
        }
    }
    assert!(
        !e.header_names().iter().any(|n| n.contains('_')),
        "{}",
        ctx("underscore header", &resp)
    );

    // the nginx snippet clears the client's override and other identity headers, for the
    // check and for the app: the request is judged and served as what it is
    if kind == Front::Nginx {
        let extra = "X-HTTP-Method-Override: DELETE\r\nX-Method-Override: PUT\r\nX-HTTP-Method: PUT\r\nX-Rewrite-URL: /admin\r\nX-Original-URL: /admin\r\nRemote-User: mallory\r\nX-Remote-User: mallory\r\n";
        let resp = get("/public/x", extra.into()).await;
        assert_eq!(raw_status(&resp), 200, "{}", ctx("overrides", &resp));
        let e = raw_echoed(&resp);
        for name in [
            "x-http-method-override",
            "x-method-override",
            "x-http-method",
            "x-rewrite-url",
            "x-original-url",
            "remote-user",
            "x-remote-user",
        ] {
            assert_eq!(e.header(name), None, "{}", ctx(name, &resp));
        }
    }

    // bearer route without a token: the challenge (ingress-nginx sends every 401 to auth-signin)
    let resp = get("/api/x", String::new()).await;
    assert!(!served(&resp), "{}", ctx("api without token", &resp));
    if kind == Front::Ingress {
        assert_eq!(
            raw_status(&resp),
            302,
            "{}",
            ctx("api without token", &resp)
        );
    } else {
        assert_eq!(
            raw_status(&resp),
            401,
            "{}",
            ctx("api without token", &resp)
        );
        assert_eq!(
            raw_header(&resp, "www-authenticate").as_deref(),
            Some("Bearer realm=\"portcullis\""),
            "{}",
            ctx("api without token", &resp)
        );
    }

    // bearer route with a token: the token's identity upstream, the client's replaced
    let reader = f.token("rita", &["reader"]);
    let resp = get(
        "/api/x",
        format!("Authorization: Bearer {reader}\r\n{forged}"),
    )
    .await;
    assert_eq!(raw_status(&resp), 200, "{}", ctx("api with token", &resp));
    let e = raw_echoed(&resp);
    assert_eq!(
        e.header_all("x-forwarded-user"),
        ["rita"],
        "{}",
        ctx("api identity", &resp)
    );
    assert_eq!(e.header("x-forwarded-roles"), Some("reader"));
    assert_eq!(e.header("x-forwarded-email"), Some("rita@example.com"));
    assert!(
        e.header("x-portcullis-assertion")
            .is_some_and(|a| a != "forged")
    );

    // role refusal
    let resp = get(
        "/api/admin/x",
        format!("Authorization: Bearer {reader}\r\n"),
    )
    .await;
    assert_eq!(
        raw_status(&resp),
        403,
        "{}",
        ctx("api-admin as reader", &resp)
    );
    assert!(!served(&resp));
    let admin = f.token("ada", &["admin"]);
    let resp = get("/api/admin/x", format!("Authorization: Bearer {admin}\r\n")).await;
    assert_eq!(
        raw_status(&resp),
        200,
        "{}",
        ctx("api-admin as admin", &resp)
    );

    // POST on the GET-only open route is judged by the login route behind it
    let resp = get("/ro/x", String::new()).await;
    assert_eq!(raw_status(&resp), 200, "{}", ctx("GET /ro", &resp));
    for method in ["POST", "DELETE"] {
        let resp = raw_http(
            addr,
            format!("{method} /ro/x HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
        )
        .await;
        assert!(!served(&resp), "{}", ctx(method, &resp));
        let want = if kind == Front::Ingress { 302 } else { 401 };
        assert_eq!(raw_status(&resp), want, "{}", ctx(method, &resp));
    }

    // the encoded-separator traversal from the open route into the bearer route
    for target in [
        "/public/..%2Fapi/x",
        "/public%2F..%2Fapi/x",
        "/public/..;/api/x",
    ] {
        let resp = get(target, String::new()).await;
        let status = raw_status(&resp);
        assert!(status >= 400 && !served(&resp), "{}", ctx(target, &resp));
    }

    // a portcullis that does not trust this front refuses every check
    let untrusted = start_front(kind, free_port(), f.untrusting.http(), f.up.addr);
    let uhost = untrusted.addr().to_string();
    for (target, extra) in [
        ("/public/x", String::new()),
        ("/api/x", format!("Authorization: Bearer {admin}\r\n")),
    ] {
        let resp = raw_get(untrusted.addr(), target, &uhost, &extra).await;
        assert_eq!(raw_status(&resp), 403, "{}", ctx("untrusted front", &resp));
        assert!(!served(&resp));
    }
    drop(untrusted);

    // a browser on a login route without a session: sent to sign in, never served, no
    // pending-login cookie from the check; the redirects end at the provider
    let b = Browser::new();
    let first = b.get(&format!("{base}/app/x")).await;
    assert_eq!(
        first.status, 302,
        "{kind:?}: first hop {} {}",
        first.status, first.body
    );
    assert!(
        first.set_cookies().is_empty(),
        "{kind:?}: the check started a login: {:?}",
        first.set_cookies()
    );
    let login = url::Url::parse(&base)
        .unwrap()
        .join(&first.location())
        .unwrap();
    assert_eq!(login.path(), "/.auth/login", "{kind:?}: {login}");
    assert_eq!(
        login.origin(),
        url::Url::parse(&base).unwrap().origin(),
        "{kind:?}: {login}"
    );
    let (page, visited) = b.navigate(&format!("{base}/app/x"), "alice").await;
    assert!(
        visited
            .iter()
            .any(|u| u.starts_with(&format!("{}/auth", f.provider.issuer))),
        "{kind:?}: never at the provider: {visited:?}"
    );
    // signed in: back on the app, with alice's identity
    assert_eq!(page.status, 200, "{kind:?}: {visited:?} {}", page.body);
    let e = page_echo(&page);
    assert_eq!(e.path, "/app/x", "{kind:?}: {visited:?}");
    assert_eq!(e.header("x-forwarded-user"), Some("alice"), "{kind:?}");
    let page = b.get(&format!("{base}/admin/x")).await;
    assert_eq!(page.status, 200, "{kind:?}: alice on admin: {}", page.body);
    let bob = Browser::new();
    let (page, _) = bob.navigate(&format!("{base}/admin/x"), "bob").await;
    assert_eq!(page.status, 403, "{kind:?}: bob on admin: {}", page.body);
    assert!(!page.body.contains("\"peer\""), "{kind:?}: served to bob");

    // the session slides while the check answers: the new cookie reaches the browser
    let before = b.cookies(&host);
    tokio::time::sleep(std::time::Duration::from_millis(
        IDLE_TIMEOUT_S * 1000 / 4 + 300,
    ))
    .await;
    let page = b.get(&format!("{base}/app/y")).await;
    assert_eq!(page.status, 200, "{kind:?}: {}", page.body);
    let set = page.set_cookies();
    let slid = kind != Front::CaddyForwardAuth;
    if slid {
        assert!(
            set.iter().any(|c| c.starts_with("portcullis=")),
            "{kind:?}: no Set-Cookie after the slide: {set:?}"
        );
        assert_ne!(
            b.cookies(&host),
            before,
            "{kind:?}: the cookie did not change"
        );
    } else {
        // Caddy 2.6's forward_auth drops Set-Cookie on a 2xx (see the doc)
        assert!(set.is_empty(), "{kind:?}: {set:?}");
    }
    let page = b.get(&format!("{base}/app/z")).await;
    assert_eq!(page.status, 200, "{kind:?}: after the slide: {}", page.body);
    assert_eq!(page_echo(&page).header("x-forwarded-user"), Some("alice"));
    f.proxy.shutdown().await;
}

/// nginx with the doc's `auth_request` snippet.
#[tokio::test]
async fn behind_nginx_auth_request() {
    front_cases(Front::Nginx).await;
}

/// nginx in the shape ingress-nginx generates from the doc's annotations.
#[tokio::test]
async fn behind_ingress_nginx() {
    front_cases(Front::Ingress).await;
}

/// Caddy with the doc's `reverse_proxy` form.
#[tokio::test]
async fn behind_caddy() {
    front_cases(Front::Caddy).await;
}

/// Caddy with the doc's `forward_auth` + `copy_headers` form.
#[tokio::test]
async fn behind_caddy_forward_auth() {
    front_cases(Front::CaddyForwardAuth).await;
}

/// A session refreshed while the check answers (the access token near its end): the rotated
/// refresh token reaches the browser through nginx's `Set-Cookie`, so the next refresh works
/// (with the stale cookie the provider would refuse the reused refresh token and the session
/// would end).
#[tokio::test]
async fn refreshed_session_behind_nginx_keeps_working() {
    let f = fronted_with("", &[("ACCESS_TOKEN_TTL", "4")]).await;
    let front = start_front(Front::Nginx, f.port, f.proxy.http(), f.up.addr);
    let base = format!("http://{}", front.addr());
    let b = Browser::new();
    let (page, visited) = b.navigate(&format!("{base}/app/x"), "alice").await;
    assert_eq!(page.status, 200, "{visited:?} {}", page.body);
    for round in 0..2 {
        let before = f.provider.count("POST /token");
        tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
        let page = b.get(&format!("{base}/app/r{round}")).await;
        assert_eq!(page.status, 200, "round {round}: {}", page.body);
        assert_eq!(page_echo(&page).header("x-forwarded-user"), Some("alice"));
        assert!(
            page.set_cookies()
                .iter()
                .any(|c| c.starts_with("portcullis=")),
            "round {round}: no Set-Cookie after the refresh: {:?}",
            page.set_cookies()
        );
        assert_eq!(
            f.provider.count("POST /token") - before,
            1,
            "round {round}: one refresh"
        );
    }
    f.proxy.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Traefik and Envoy (not packaged): the requests they send, from the doc's snippets

/// The quoted value after `key` on the first line of `snippet` that has it.
fn snippet_value(snippet: &str, key: &str) -> String {
    snippet
        .lines()
        .find_map(|l| {
            l.split_once(key)
                .map(|(_, v)| v.trim().trim_matches('"').to_string())
        })
        .unwrap_or_else(|| panic!("no {key} in:\n{snippet}"))
}

/// A check request to `p` shaped as a front proxy sends it: `GET target` with `headers`
/// (each ending in `\r\n`).
async fn check_raw(p: &TestProxy, target: &str, headers: &str) -> String {
    raw_http(
        p.http(),
        format!(
            "GET {target} HTTP/1.1\r\nHost: {}\r\n{headers}Connection: close\r\n\r\n",
            p.http()
        ),
    )
    .await
}

/// Traefik's ForwardAuth (the doc's file provider and labels): `X-Forwarded-Method`, `-Proto`,
/// `-Host`, `-Uri` and the client's headers to the doc's address (`?redirect=1`). A browser on
/// a login route gets the 302 to the login URL on the original origin (scheme from
/// `X-Forwarded-Proto`), with no pending-login cookie; an API client the 401; every
/// `authResponseHeaders` name comes back on a 200; POST on the GET-only route, the traversal
/// and a forged identity header are judged as behind the real fronts.
#[tokio::test]
async fn traefik_forward_auth_requests() {
    let f = fronted("").await;
    let file = doc_snippet("traefik-file");
    let labels = doc_snippet("traefik-labels");
    let address = snippet_value(&file, "address:");
    let label_address = snippet_value(&labels, "forwardauth.address=");
    let target = address
        .strip_prefix("http://127.0.0.1:4181")
        .expect("the doc's address");
    assert_eq!(target, "/.auth/check?redirect=1");
    assert_eq!(
        label_address.strip_prefix("http://portcullis:4181"),
        Some(target)
    );
    assert!(file.contains("trustForwardHeader: false"));
    assert!(labels.contains("forwardauth.trustForwardHeader=false"));
    let listed: Vec<String> = file
        .lines()
        .map(str::trim)
        .skip_while(|l| *l != "authResponseHeaders:")
        .skip(1)
        .map_while(|l| l.strip_prefix("- ").map(str::to_string))
        .collect();
    let label_listed = snippet_value(&labels, "forwardauth.authResponseHeaders=");
    assert_eq!(listed.join(","), label_listed);

    let traefik = |method: &str, uri: &str, extra: &str| {
        format!(
            "X-Forwarded-Method: {method}\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: app.example.com\r\nX-Forwarded-Uri: {uri}\r\nX-Forwarded-For: 203.0.113.7\r\n{extra}"
        )
    };
    let html = "Accept: text/html,application/xhtml+xml\r\n";

    // a browser on a login route: 302 to the login URL with rd, no cookie
    let resp = check_raw(&f.proxy, target, &traefik("GET", "/app/x?y=1", html)).await;
    assert_eq!(raw_status(&resp), 302, "{resp}");
    assert_eq!(
        raw_header(&resp, "location").as_deref(),
        Some(
            "https://app.example.com/.auth/login?rd=https%3A%2F%2Fapp.example.com%2Fapp%2Fx%3Fy%3D1"
        ),
        "{resp}"
    );
    assert!(raw_headers(&resp, "set-cookie").is_empty(), "{resp}");
    // an API client on the same route: 401
    let resp = check_raw(&f.proxy, target, &traefik("GET", "/app/x", "")).await;
    assert_eq!(raw_status(&resp), 401, "{resp}");
    // a bearer token: 200 with every header Traefik copies
    let token = f.token("rita", &["reader"]);
    let auth = format!("Authorization: Bearer {token}\r\nX-Forwarded-User: mallory\r\n");
    let resp = check_raw(&f.proxy, target, &traefik("GET", "/api/x", &auth)).await;
    assert_eq!(raw_status(&resp), 200, "{resp}");
    for name in &listed {
        assert!(raw_header(&resp, name).is_some(), "{name} missing:\n{resp}");
    }
    assert_eq!(raw_headers(&resp, "x-forwarded-user"), ["rita"]);
    // public: 200 without identity, the client's forged one not echoed
    let resp = check_raw(
        &f.proxy,
        target,
        &traefik("GET", "/public/x", "X-Forwarded-User: mallory\r\n"),
    )
    .await;
    assert_eq!(raw_status(&resp), 200, "{resp}");
    assert!(raw_headers(&resp, "x-forwarded-user").is_empty(), "{resp}");
    // POST on the GET-only open route: the login route judges it (an API request: 401)
    let resp = check_raw(&f.proxy, target, &traefik("POST", "/ro/x", html)).await;
    assert_eq!(raw_status(&resp), 401, "{resp}");
    // the traversal
    let resp = check_raw(&f.proxy, target, &traefik("GET", "/public/..%2Fapi/x", "")).await;
    assert_bad_request(&resp, "traversal", "");
    // X-Forwarded-Proto is one scheme: a client's extra copy, or another value, is refused
    let resp = check_raw(
        &f.proxy,
        target,
        &traefik("GET", "/public/x", "X-Forwarded-Proto: http\r\n"),
    )
    .await;
    assert_bad_request(
        &resp,
        "two X-Forwarded-Proto",
        "more than one X-Forwarded-Proto",
    );
    let resp = check_raw(
        &f.proxy,
        target,
        &traefik("GET", "/public/x", "").replace("Proto: https", "Proto: javascript"),
    )
    .await;
    assert_bad_request(
        &resp,
        "X-Forwarded-Proto: javascript",
        "invalid X-Forwarded-Proto",
    );
    // a peer portcullis does not trust
    let resp = check_raw(&f.untrusting, target, &traefik("GET", "/public/x", "")).await;
    assert_eq!(raw_status(&resp), 403, "{resp}");
    f.proxy.shutdown().await;
}

/// Envoy's ext_authz HTTP service with the doc's `path_prefix`: the original path after the
/// prefix, its query kept, the original `Host`, the method from the doc's `headers_to_add`.
#[tokio::test]
async fn envoy_ext_authz_requests() {
    let f = fronted("").await;
    let envoy = doc_snippet("envoy");
    let prefix = snippet_value(&envoy, "path_prefix:");
    assert_eq!(prefix, "/.auth/check");
    assert!(envoy.contains("value: \"%REQ(:METHOD)%\""), "{envoy}");
    for header in [
        "set-cookie",
        "x-auth-login",
        "x-forwarded-user",
        "x-portcullis-assertion",
    ] {
        assert!(envoy.contains(&format!("- exact: {header}")), "{header}");
    }
    // Envoy sends the original request line and Host, plus the configured headers
    let ext_authz = |method: &str, path: &str, extra: &str| {
        let req = format!(
            "{method} {prefix}{path} HTTP/1.1\r\nHost: app.example.com\r\nx-forwarded-method: {method}\r\ncontent-length: 0\r\n{extra}Connection: close\r\n\r\n"
        );
        let addr = f.proxy.http();
        async move { raw_http(addr, req).await }
    };
    let token = f.token("ada", &["admin"]);
    let resp = ext_authz(
        "GET",
        "/api/admin/x?y=1",
        &format!("authorization: Bearer {token}\r\n"),
    )
    .await;
    assert_eq!(raw_status(&resp), 200, "{resp}");
    assert_eq!(raw_headers(&resp, "x-forwarded-user"), ["ada"], "{resp}");
    let reader = f.token("rita", &["reader"]);
    let resp = ext_authz(
        "GET",
        "/api/admin/x",
        &format!("authorization: Bearer {reader}\r\n"),
    )
    .await;
    assert_eq!(raw_status(&resp), 403, "{resp}");
    let resp = ext_authz("GET", "/api/x", "").await;
    assert_eq!(raw_status(&resp), 401, "{resp}");
    // a browser on a login route: 401 naming the login URL (Envoy cannot redirect on its own)
    let resp = ext_authz("GET", "/app/x?y=1", "accept: text/html\r\n").await;
    assert_eq!(raw_status(&resp), 401, "{resp}");
    assert_eq!(
        raw_header(&resp, "x-auth-login").as_deref(),
        Some(
            "http://app.example.com/.auth/login?rd=http%3A%2F%2Fapp.example.com%2Fapp%2Fx%3Fy%3D1"
        ),
        "{resp}"
    );
    assert!(raw_headers(&resp, "set-cookie").is_empty(), "{resp}");
    // the open route, POST on the GET-only one, the traversal
    let resp = ext_authz("GET", "/public/x", "").await;
    assert_eq!(raw_status(&resp), 200, "{resp}");
    let resp = ext_authz("GET", "/ro/x", "").await;
    assert_eq!(raw_status(&resp), 200, "{resp}");
    let resp = ext_authz("POST", "/ro/x", "").await;
    assert_eq!(raw_status(&resp), 401, "{resp}");
    let resp = ext_authz("GET", "/public/..%2Fapi/x", "").await;
    assert_bad_request(&resp, "traversal", "");
    // the prefix form and a header naming another request: refused, never one of them
    let resp = ext_authz("GET", "/public/x", "x-forwarded-uri: /api/x\r\n").await;
    assert_bad_request(&resp, "prefix and header", "different requests");
    // the prefix form from a peer portcullis does not trust: refused, not judged
    let resp = raw_http(
        f.untrusting.http(),
        format!(
            "GET {prefix}/public/x HTTP/1.1\r\nHost: app.example.com\r\nConnection: close\r\n\r\n"
        ),
    )
    .await;
    assert_eq!(raw_status(&resp), 403, "{resp}");
    assert!(raw_body(&resp).contains("trusted_proxies"), "{resp}");
    f.proxy.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// oauth2-proxy's header names; the judged route in metrics

/// `[forward_auth] xauthrequest = true`: the 200 also carries oauth2-proxy's
/// `X-Auth-Request-User`, `-Email`, `-Groups`, `-Preferred-Username`, so the
/// `auth_request_set $user $upstream_http_x_auth_request_user;` lines of an oauth2-proxy guide
/// keep working behind real nginx (only the auth location's `proxy_pass` changed);
/// `[headers] authorization = "access_token"` adds `Authorization: Bearer <access token>`.
/// Without the option none of these names is sent.
#[tokio::test]
async fn oauth2_proxy_header_names_behind_nginx() {
    let f =
        fronted("authorization = \"access_token\"\n\n[forward_auth]\nxauthrequest = true\n").await;
    let nginx = start_nginx(&format!(
        r#"server {{
    listen 80;
    location = /oauth2/auth {{
        internal;
        proxy_pass       http://{check}/.auth/check;
        proxy_set_header Host             $host;
        proxy_set_header X-Real-IP        $remote_addr;
        proxy_set_header X-Scheme         $scheme;
        proxy_set_header X-Original-URI   $request_uri;
        proxy_set_header X-Original-Method $request_method;
        proxy_set_header Content-Length   "";
        proxy_pass_request_body           off;
    }}
    location / {{
        auth_request /oauth2/auth;
        auth_request_set $user   $upstream_http_x_auth_request_user;
        auth_request_set $email  $upstream_http_x_auth_request_email;
        auth_request_set $groups $upstream_http_x_auth_request_groups;
        auth_request_set $uname  $upstream_http_x_auth_request_preferred_username;
        auth_request_set $token  $upstream_http_authorization;
        proxy_set_header X-User   $user;
        proxy_set_header X-Email  $email;
        proxy_set_header X-Groups $groups;
        proxy_set_header X-Uname  $uname;
        proxy_set_header Authorization $token;
        proxy_pass http://{up};
    }}
}}"#,
        check = f.proxy.http(),
        up = f.up.addr
    ));
    let token = f.token("rita", &["reader", "writer"]);
    let resp = raw_get(
        nginx.addr,
        "/api/x",
        "app.example.com",
        &format!("Authorization: Bearer {token}\r\n"),
    )
    .await;
    assert_eq!(raw_status(&resp), 200, "{resp}\n{}", nginx.log());
    let e = raw_echoed(&resp);
    assert_eq!(e.header("x-user"), Some("rita"));
    assert_eq!(e.header("x-email"), Some("rita@example.com"));
    assert_eq!(e.header("x-groups"), Some("reader,writer"));
    assert_eq!(e.header("x-uname"), Some("rita"));
    assert_eq!(
        e.header("authorization"),
        Some(format!("Bearer {token}").as_str())
    );

    // the check's own answer, and the default (no option): none of oauth2-proxy's names
    let check = "X-Original-URI: /api/x\r\nX-Original-Method: GET\r\n";
    let resp = check_raw(
        &f.proxy,
        "/.auth/check",
        &format!("{check}Authorization: Bearer {token}\r\n"),
    )
    .await;
    assert_eq!(
        raw_header(&resp, "x-auth-request-user").as_deref(),
        Some("rita"),
        "{resp}"
    );
    let plain = fronted("").await;
    let token = plain.token("rita", &["reader"]);
    let resp = check_raw(
        &plain.proxy,
        "/.auth/check",
        &format!("{check}Authorization: Bearer {token}\r\n"),
    )
    .await;
    assert_eq!(raw_status(&resp), 200, "{resp}");
    assert!(
        !resp.to_ascii_lowercase().contains("x-auth-request-"),
        "{resp}"
    );
    assert_eq!(
        raw_header(&resp, "x-forwarded-user").as_deref(),
        Some("rita")
    );
    f.proxy.shutdown().await;
}

/// Metrics count a check under the route it judged (was `-` for every check).
#[tokio::test]
async fn metrics_name_the_judged_route() {
    let f = fronted("").await;
    let token = f.token("rita", &["reader"]);
    for _ in 0..2 {
        let resp = check_raw(
            &f.proxy,
            "/.auth/check",
            &format!("X-Original-URI: /api/x\r\nX-Original-Method: GET\r\nAuthorization: Bearer {token}\r\n"),
        )
        .await;
        assert_eq!(raw_status(&resp), 200, "{resp}");
    }
    let resp = check_raw(
        &f.proxy,
        "/.auth/check",
        "X-Original-URI: /api/admin/x\r\nX-Original-Method: GET\r\n",
    )
    .await;
    assert_eq!(raw_status(&resp), 401, "{resp}");
    let metrics = get_path(f.proxy.admin(), "/metrics").await.text();
    assert!(
        metrics.contains("portcullis_requests_total{route=\"api\",status=\"200\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("portcullis_requests_total{route=\"api-admin\",status=\"401\"} 1"),
        "{metrics}"
    );
    f.proxy.shutdown().await;
}
