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

use http::Request;
use oidc::{OidcProvider, TestIssuer};
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------
// the check asked directly (moved from tests/bearer.rs)

/// Sends `GET path` with the given headers.
async fn call(p: &TestProxy, path: &str, headers: &[(&str, &str)]) -> Resp {
    let mut b = Request::get(path);
    for (n, v) in headers {
        b = b.header(*n, *v);
    }
    send(p.http(), b.body(empty_body()).unwrap()).await
}

fn www(r: &Resp) -> String {
    r.headers
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

fn message(r: &Resp) -> String {
    serde_json::from_slice::<Value>(&r.body)
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_string))
        .unwrap_or_else(|| r.text())
}

#[track_caller]
fn assert_challenge(r: &Resp, case: &str) {
    assert_eq!(r.status, 401, "{case}: {}", r.text());
    assert_eq!(www(r), "Bearer realm=\"portcullis\"", "{case}");
    assert!(
        message(r).contains("bearer token is required"),
        "{case}: {}",
        r.text()
    );
}

#[track_caller]
fn assert_forbidden(r: &Resp, text: &str, case: &str) {
    assert_eq!(r.status, 403, "{case}: {}", r.text());
    let w = www(r);
    assert!(
        w.starts_with("Bearer error=\"insufficient_scope\""),
        "{case}: {w}"
    );
    assert!(
        w.contains(text) && message(r).contains(text),
        "{case}: {w} / {}",
        r.text()
    );
}

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
    proxy.shutdown().await;
}

/// Forward-auth with a method-restricted open route: `pub` (host `pub.example`, open), `ro`
/// (`/m`, GET/HEAD only, open) and `app` (everything else, login).
fn method_config(issuer: &str, upstream: SocketAddr) -> String {
    let up = format!("http://{upstream}");
    format!(
        r#"[server]
listen = "127.0.0.1:0"
trusted_proxies = ["127.0.0.1/32"]

[providers.op]
issuer = "{issuer}"
client_id = "web"
client_secret = "web-secret"

[session]
secret = "Qm9vdHN0cmFwLXBhdGhzLXRlc3Qtc2VjcmV0LXZhbHVlLTQy"

[[route]]
name = "pub"
host = "pub.example"
path = "/"
upstream = "{up}"
auth = "none"

[[route]]
name = "ro"
path = "/m"
methods = ["GET", "HEAD"]
upstream = "{up}"
auth = "none"

[[route]]
name = "app"
path = "/"
upstream = "{up}"
auth = "login"
"#
    )
}

/// Asserts a 400 from the check with a JSON message containing `word`.
#[track_caller]
fn assert_bad_request(resp: &str, what: &str, word: &str) {
    assert_eq!(raw_status(resp), 400, "{what}:\n{resp}");
    let body: Value = serde_json::from_str(raw_body(resp).trim())
        .unwrap_or_else(|e| panic!("{what}: no JSON body ({e}):\n{resp}"));
    let message = body["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(word),
        "{what}: message {message:?} lacks {word:?}"
    );
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

