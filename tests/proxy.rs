//! Integration tests of the proxy core (issue 2) over real sockets on loopback: routing,
//! normalization, header hygiene, TLS, streaming, error statuses, shutdown, WebSocket, admin
//! and the CLI. The harness is in `tests/common/mod.rs`.

mod support;
use support::*;

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use http::{Method, Request, StatusCode, Version};
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// `[server]` listening on an ephemeral port, followed by `rest`.
fn cfg(rest: &str) -> String {
    server_toml(rest)
}

/// An `auth = "none"` route.
fn route(name: &str, extra: &str, upstream: &str) -> String {
    route_toml(name, "none", extra, upstream)
}

async fn get_host(addr: std::net::SocketAddr, method: Method, host: &str, path: &str) -> Resp {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", host)
        .body(empty_body())
        .unwrap();
    send(addr, req).await
}

// ---------------------------------------------------------------------------------------------
// Routing
// ---------------------------------------------------------------------------------------------

/// Each route forwards to a different base path on the echo upstream, so the path the upstream
/// received names the route that answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_table() {
    let up = echo_upstream().await;
    let u = |b: &str| up.url(b);
    let mut c = cfg("");
    c += &route(
        "exact-host",
        "host = \"api.example.com\"\npath = \"/\"",
        &u("/r-exact"),
    );
    c += &route(
        "wild-host",
        "host = \"*.example.com\"\npath = \"/\"",
        &u("/r-wild"),
    );
    c += &route(
        "post-only",
        "path = \"/submit\"\nmethods = [\"POST\"]",
        &u("/r-post"),
    );
    c += &route(
        "get-submit",
        "path = \"/submit\"\nmethods = [\"GET\"]",
        &u("/r-get"),
    );
    c += &route("api", "path = \"/api\"", &u("/r-api"));
    c += &route(
        "docs",
        "host = \"docs.local\"\npath = \"/docs\"",
        &u("/r-docs"),
    );
    let proxy = start_proxy(&c).await;
    let a = proxy.http();

    let cases: &[(Method, &str, &str, Option<&str>)] = &[
        // host exact (first match wins over the wildcard below it)
        (Method::GET, "api.example.com", "/x", Some("/r-exact/x")),
        (Method::GET, "API.example.com", "/x", Some("/r-exact/x")),
        (
            Method::GET,
            "api.example.com:8080",
            "/x",
            Some("/r-exact/x"),
        ),
        // host wildcard
        (Method::GET, "www.example.com", "/x", Some("/r-wild/x")),
        (Method::GET, "a.b.example.com", "/", Some("/r-wild")),
        // the bare domain is not covered by "*.example.com"
        (Method::GET, "example.com", "/x", None),
        // methods
        (
            Method::POST,
            "other.local",
            "/submit",
            Some("/r-post/submit"),
        ),
        (Method::GET, "other.local", "/submit", Some("/r-get/submit")),
        (Method::PUT, "other.local", "/submit", None),
        // a GET route judges HEAD too (frameworks answer HEAD with the GET handler)
        (
            Method::HEAD,
            "other.local",
            "/submit",
            Some("/r-get/submit"),
        ),
        // segment prefix
        (Method::GET, "other.local", "/api", Some("/r-api/api")),
        (Method::GET, "other.local", "/api/", Some("/r-api/api/")),
        (
            Method::GET,
            "other.local",
            "/api/v2/users",
            Some("/r-api/api/v2/users"),
        ),
        (Method::GET, "other.local", "/apix", None),
        (Method::GET, "other.local", "/ap", None),
        // host + path
        (Method::GET, "docs.local", "/docs/a", Some("/r-docs/docs/a")),
        (Method::GET, "other.local", "/docs/a", None),
        (Method::GET, "other.local", "/", None),
    ];
    let mut failures = Vec::new();
    for (m, host, path, want) in cases {
        let r = get_host(a, m.clone(), host, path).await;
        let got = match want {
            // HEAD has no body to show the path: a 200 is the GET route's answer
            Some(w) if r.status == StatusCode::OK && *m == Method::HEAD => Some(w.to_string()),
            Some(_) if r.status == StatusCode::OK => Some(r.echoed().path),
            _ => None,
        };
        let ok = match want {
            Some(w) => got.as_deref() == Some(*w),
            None => r.status == StatusCode::NOT_FOUND,
        };
        if !ok {
            failures.push(format!(
                "{m} {host}{path}: want {want:?}, got {} {:?}",
                r.status, got
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "routing failures:\n{}",
        failures.join("\n")
    );

    // 404 body is short JSON naming the problem
    let r = get_host(a, Method::GET, "other.local", "/nothing").await;
    assert_eq!(r.status, 404);
    assert!(r.text().contains("not_found"), "{}", r.text());
    proxy.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Normalization, end to end over raw TCP
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn normalization_table() {
    let up = echo_upstream().await;
    let mut c = cfg("");
    c += &route("admin", "path = \"/admin\"", &up.url("/ra"));
    c += &route("public", "path = \"/public\"", &up.url("/rp"));
    c += &route("catch-all", "path = \"/\"", &up.url("/rc"));
    let proxy = start_proxy(&c).await;
    let a = proxy.http();

    // (request target as sent, Ok(path the upstream receives) or Err(status))
    let cases: &[(&str, Result<&str, u16>)] = &[
        ("/admin/../x", Ok("/rc/x")),
        ("/public/../admin", Ok("/ra/admin")),
        ("//admin", Ok("/ra/admin")),
        ("///admin//users", Ok("/ra/admin/users")),
        ("/%2e%2e/admin", Ok("/ra/admin")),
        ("/%2E%2E/%2e%2e/admin/", Ok("/ra/admin/")),
        ("/.%2e/admin", Ok("/ra/admin")),
        ("/public/%2e%2e/admin", Ok("/ra/admin")),
        ("/admin%2f", Ok("/ra/admin%2F")),
        ("/admin%2Fusers", Ok("/ra/admin%2Fusers")),
        ("/public/..%2Fadmin", Err(400)),
        ("/ADMIN", Ok("/rc/ADMIN")),
        ("/Admin", Ok("/rc/Admin")),
        ("/admin;x", Ok("/ra/admin;x")),
        ("/admin;jsessionid=1/x", Ok("/ra/admin;jsessionid=1/x")),
        ("/admin/./", Ok("/ra/admin/")),
        ("/./admin", Ok("/ra/admin")),
        ("/adm%69n", Ok("/ra/admin")),
        ("/%61dmin", Ok("/ra/admin")),
        ("/%41dmin", Ok("/rc/Admin")),
        ("/a/b/../../admin", Ok("/ra/admin")),
        ("/../../admin", Ok("/ra/admin")),
        ("/administrator", Ok("/rc/administrator")),
        ("/%7euser", Ok("/rc/~user")),
        ("/a%20b", Ok("/rc/a%20b")),
        ("/caf%c3%a9", Ok("/rc/caf%C3%A9")),
        ("/", Ok("/rc")),
        ("/%zz", Err(400)),
        ("/%", Err(400)),
        ("/admin%", Err(400)),
        ("/%c0%ae", Err(400)),
        ("/%c0%ae%c0%ae/admin", Err(400)),
        ("/%ff", Err(400)),
        ("/%00", Err(400)),
        ("/..;/admin", Err(400)),
        ("/public/..;x/admin", Err(400)),
    ];
    let mut failures = Vec::new();
    for (target, want) in cases {
        let raw = raw_get(a, target, "app.local", "").await;
        let status = raw_status(&raw);
        let ok = match want {
            Ok(p) => status == 200 && raw_echoed(&raw).path == *p,
            Err(s) => status == *s,
        };
        if !ok {
            let got = if status == 200 {
                raw_echoed(&raw).path
            } else {
                raw.lines().next().unwrap_or("").to_string()
            };
            failures.push(format!("{target}: want {want:?}, got {status} {got}"));
        }
    }
    // The query string never takes part in matching, and reaches the upstream unchanged.
    for (target, path, query) in [
        ("/public?/admin", "/rp/public", "/admin"),
        ("/public?x=/../admin", "/rp/public", "x=/../admin"),
        ("/admin?next=/public", "/ra/admin", "next=/public"),
        ("/x?%2e%2e", "/rc/x", "%2e%2e"),
    ] {
        let raw = raw_get(a, target, "app.local", "").await;
        let e = raw_echoed(&raw);
        if e.path != path || e.query.as_deref() != Some(query) {
            failures.push(format!(
                "{target}: want {path}?{query}, got {}?{:?}",
                e.path, e.query
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "normalization failures:\n{}",
        failures.join("\n")
    );
    proxy.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Header hygiene
// ---------------------------------------------------------------------------------------------

/// Identity headers a client forges are removed on a `none` route in every spelling an upstream
/// might fold into the same name (CVE-2025-64484), including names configured under `[headers]`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_identity_headers_are_stripped() {
    let up = echo_upstream().await;
    let c = cfg(&format!(
        "\n[headers]\nuser = \"X-Remote-User\"\nemail = \"X-Custom_Email\"\n[headers.claims]\n\"X-User-Org\" = \"org\"\n{}",
        route("app", "path = \"/\"", &up.url(""))
    ));
    let proxy = start_proxy(&c).await;
    let forged = [
        "X-Forwarded-User",
        "x-forwarded-user",
        "x_forwarded_user",
        "X_FORWARDED_USER",
        "X-FORWARDED-EMAIL",
        "X-Forwarded_Email",
        "X-Forwarded-Roles",
        "X-Forwarded-Preferred-Username",
        "X-Forwarded-Name",
        "X-Forwarded-Groups",
        "X-Forwarded-Access-Token",
        "X-Auth-Request-User",
        "X-Portcullis-Anything",
        "x_portcullis_assertion",
        "X-PORTCULLIS-ROLES",
        "X-Remote-User",
        "x_remote_user",
        "X-REMOTE-USER",
        "X-Custom-Email",
        "x_custom_email",
        "X-User-Org",
        "x_user_org",
    ];
    let mut extra = String::new();
    for h in forged {
        extra += &format!("{h}: forged\r\n");
    }
    // A near miss of an identity name passes (`X-Forwarded-Userx` no longer would: from an
    // untrusted peer every `X-Forwarded-*` is removed, see tests/headers.rs).
    extra += "X-Innocent: kept\r\nX-Remote-Userx: kept\r\n";
    let raw = raw_get(proxy.http(), "/", "app.local", &extra).await;
    assert_eq!(raw_status(&raw), 200, "{raw}");
    let e = raw_echoed(&raw);
    let leaked: Vec<_> = e.headers.iter().filter(|(_, v)| v == "forged").collect();
    assert!(
        leaked.is_empty(),
        "forged identity headers reached the upstream: {leaked:?}"
    );
    assert_eq!(e.header("x-innocent"), Some("kept"));
    assert_eq!(e.header("x-remote-userx"), Some("kept"));
    proxy.shutdown().await;
}

/// X-Forwarded-For/Proto/Host from an untrusted client are replaced; from a trusted proxy they
/// are kept and the peer is appended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_headers_trusted_only_from_trusted_proxies() {
    let up = echo_upstream().await;
    let forged = "X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: evil.example\r\nX-Real-IP: 6.6.6.6\r\nForwarded: for=6.6.6.6\r\nX-Forwarded-Port: 1\r\n";

    let untrusted = start_proxy(&cfg(&route("app", "path = \"/\"", &up.url("")))).await;
    let e = raw_echoed(&raw_get(untrusted.http(), "/", "app.local", forged).await);
    assert_eq!(e.header_all("x-forwarded-for"), vec!["127.0.0.1"], "{e:?}");
    assert_eq!(e.header("x-forwarded-proto"), Some("http"));
    assert_eq!(e.header("x-forwarded-host"), Some("app.local"));
    assert_eq!(e.header("x-real-ip"), Some("127.0.0.1"));
    assert_eq!(e.header("forwarded"), None);
    assert_eq!(e.header("x-forwarded-port"), None);
    // without any forwarded headers: set from the connection
    let e = raw_echoed(&raw_get(untrusted.http(), "/", "app.local:8080", "").await);
    assert_eq!(e.header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(e.header("x-forwarded-proto"), Some("http"));
    assert_eq!(e.header("x-forwarded-host"), Some("app.local:8080"));
    untrusted.shutdown().await;

    let trusted = start_proxy(&cfg(&format!(
        "trusted_proxies = [\"127.0.0.0/8\"]\n{}",
        route("app", "path = \"/\"", &up.url(""))
    )))
    .await;
    let e = raw_echoed(&raw_get(trusted.http(), "/", "app.local", forged).await);
    assert_eq!(
        e.header_all("x-forwarded-for").join(", "),
        "6.6.6.6, 127.0.0.1",
        "{e:?}"
    );
    assert_eq!(e.header("x-forwarded-proto"), Some("https"));
    assert_eq!(e.header("x-forwarded-host"), Some("evil.example"));
    let e = raw_echoed(&raw_get(trusted.http(), "/", "app.local", "").await);
    assert_eq!(e.header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(e.header("x-forwarded-proto"), Some("http"));
    assert_eq!(e.header("x-forwarded-host"), Some("app.local"));
    trusted.shutdown().await;
}

/// `preserve_host` true (the default) sends the client's Host; false sends the upstream's.
/// X-Forwarded-Host always carries the client's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preserve_host() {
    let up = echo_upstream().await;
    let mut c = cfg("");
    c += &route(
        "keep",
        "path = \"/keep\"\npreserve_host = true",
        &up.url(""),
    );
    c += &route(
        "upstream-host",
        "path = \"/up\"\npreserve_host = false",
        &up.url(""),
    );
    c += &route("default", "path = \"/\"", &up.url(""));
    let proxy = start_proxy(&c).await;
    let a = proxy.http();
    for (path, want_host) in [
        ("/keep", "app.local:99".to_string()),
        ("/up", up.addr.to_string()),
        ("/", "app.local:99".to_string()),
    ] {
        let e = get_host(a, Method::GET, "app.local:99", path)
            .await
            .echoed();
        assert_eq!(e.header_all("host"), vec![want_host.as_str()], "{path}");
        assert_eq!(e.header("x-forwarded-host"), Some("app.local:99"), "{path}");
    }
    proxy.shutdown().await;
}

/// `strip_prefix = true` forwards /app/x as /x (and /app as /); query kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strip_prefix() {
    let up = echo_upstream().await;
    let mut c = cfg("");
    c += &route(
        "stripped",
        "path = \"/app\"\nstrip_prefix = true",
        &up.url(""),
    );
    c += &route(
        "stripped-base",
        "path = \"/svc/v1\"\nstrip_prefix = true",
        &up.url("/base"),
    );
    c += &route("kept", "path = \"/keep\"", &up.url(""));
    let proxy = start_proxy(&c).await;
    let a = proxy.http();
    for (req, want, q) in [
        ("/app/x/y", "/x/y", None),
        ("/app", "/", None),
        ("/app/", "/", None),
        ("/app/x?q=1", "/x", Some("q=1")),
        ("/app;v=1/x", "/x", None),
        ("/svc/v1/items", "/base/items", None),
        ("/svc/v1", "/base", None),
        ("/keep/x", "/keep/x", None),
    ] {
        let e = get_path(a, req).await.echoed();
        assert_eq!(e.path, want, "{req}");
        assert_eq!(e.query.as_deref(), q, "{req}");
    }
    proxy.shutdown().await;
}

/// Hop-by-hop headers (and those `Connection` names) do not cross the proxy, either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_headers_removed() {
    let up = echo_upstream().await;
    let proxy = start_proxy(&cfg(&route("app", "path = \"/\"", &up.url("")))).await;
    let raw = raw_http(
        proxy.http(),
        "GET /?hop=1 HTTP/1.1\r\nHost: app.local\r\nConnection: close, X-Client-Hop\r\nX-Client-Hop: 1\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nProxy-Authorization: Basic Zm9vOmJhcg==\r\nProxy-Connection: keep-alive\r\nUpgrade: h2c\r\nX-End-To-End: 1\r\n\r\n",
    )
    .await;
    assert_eq!(raw_status(&raw), 200, "{raw}");
    let e = raw_echoed(&raw);
    for h in [
        "x-client-hop",
        "keep-alive",
        "te",
        "proxy-authorization",
        "proxy-connection",
        "upgrade",
    ] {
        assert_eq!(e.header(h), None, "{h} reached the upstream: {e:?}");
    }
    assert!(
        e.header("connection")
            .is_none_or(|v| !v.to_ascii_lowercase().contains("x-client-hop")),
        "{e:?}"
    );
    assert_eq!(e.header("x-end-to-end"), Some("1"));
    // response side
    let head = raw
        .split("\r\n\r\n")
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    for h in ["x-upstream-hop:", "keep-alive:", "proxy-authenticate:"] {
        assert!(!head.contains(h), "{h} reached the client:\n{head}");
    }
    assert!(head.contains("x-echo: 1"), "{head}");
    proxy.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// TLS
// ---------------------------------------------------------------------------------------------

/// A TLS config (`tls_extra` goes into `[server.tls]`) with one catch-all route.
fn tls_cfg(upstream: &str, tls_extra: &str) -> String {
    tls_server_toml("", tls_extra, &route("app", "path = \"/\"", upstream))
}

async fn tls_proxy(ca: &TestCa, upstream: &str, tls_extra: &str) -> (TestProxy, Issued) {
    let dir = temp_dir();
    let leaf = write_tls_files(dir.path(), ca, "first");
    (
        start_proxy_in(dir, &tls_cfg(upstream, tls_extra)).await,
        leaf,
    )
}

/// HTTP/1.1 and HTTP/2 (chosen by ALPN) on the TLS listener; the upstream sees proto https.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_http1_and_http2() {
    let up = echo_upstream().await;
    let ca = TestCa::new();
    let (proxy, leaf) = tls_proxy(&ca, &up.url(""), "").await;

    let h2 = send_tls(
        proxy.https(),
        &ca.cert_pem,
        &[b"h2", b"http/1.1"],
        "/h2?x=1",
    )
    .await;
    assert_eq!(h2.alpn.as_deref(), Some(&b"h2"[..]));
    assert_eq!(h2.resp.version, Version::HTTP_2);
    assert_eq!(h2.resp.status, 200);
    assert_eq!(h2.server_cert, leaf.cert_der);
    let e = h2.resp.echoed();
    assert_eq!(e.path, "/h2");
    assert_eq!(e.header("x-forwarded-proto"), Some("https"));
    assert_eq!(
        e.header("x-forwarded-host"),
        Some(format!("localhost:{}", proxy.https().port()).as_str())
    );
    assert_eq!(
        e.header_all("host"),
        vec![format!("localhost:{}", proxy.https().port())]
    );

    let h1 = send_tls(proxy.https(), &ca.cert_pem, &[b"http/1.1"], "/h1").await;
    assert_eq!(h1.alpn.as_deref(), Some(&b"http/1.1"[..]));
    assert_eq!(h1.resp.version, Version::HTTP_11);
    let e = h1.resp.echoed();
    assert_eq!(e.path, "/h1");
    assert_eq!(e.header("x-forwarded-proto"), Some("https"));

    // no ALPN at all: HTTP/1.1
    let none = send_tls(proxy.https(), &ca.cert_pem, &[], "/plain").await;
    assert_eq!(none.alpn, None);
    assert_eq!(none.resp.echoed().path, "/plain");
    proxy.shutdown().await;
}

/// Rewriting the cert and key files makes the listener serve the new pair within ~3 s, no restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_cert_reload() {
    let up = echo_upstream().await;
    let ca = TestCa::new();
    let (proxy, first) = tls_proxy(&ca, &up.url(""), "").await;
    let r = send_tls(proxy.https(), &ca.cert_pem, &[b"h2"], "/").await;
    assert_eq!(r.server_cert, first.cert_der);

    let second = ca.issue("second");
    // Key first, then cert: a watcher may see the pair mismatched in between and must keep serving.
    std::fs::write(proxy.dir.path().join("tls.key"), &second.key_pem).unwrap();
    std::fs::write(proxy.dir.path().join("tls.crt"), &second.cert_pem).unwrap();
    let t0 = Instant::now();
    loop {
        let r = send_tls(proxy.https(), &ca.cert_pem, &[b"h2"], "/").await;
        assert_eq!(r.resp.status, 200);
        if r.server_cert == second.cert_der {
            break;
        }
        assert_eq!(
            r.server_cert, first.cert_der,
            "served neither the old nor the new cert"
        );
        assert!(
            t0.elapsed() < Duration::from_secs(4),
            "new certificate not served after {:?}",
            t0.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A broken file keeps the current pair serving.
    std::fs::write(proxy.dir.path().join("tls.crt"), "not a certificate").unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let r = send_tls(proxy.https(), &ca.cert_pem, &[b"http/1.1"], "/").await;
    assert_eq!(r.server_cert, second.cert_der);
    proxy.shutdown().await;
}

/// `redirect_http = true`: the plain listener answers 308 to the https listener, same host,
/// path and query; nothing is forwarded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_http_to_https() {
    let up = echo_upstream().await;
    let ca = TestCa::new();
    let (proxy, _) = tls_proxy(&ca, &up.url(""), "redirect_http = true").await;
    let port = proxy.https().port();
    for (host, target, want) in [
        (
            "app.example.com",
            "/a/b?x=1&y=2",
            format!("https://app.example.com:{port}/a/b?x=1&y=2"),
        ),
        (
            "app.example.com:8080",
            "/",
            format!("https://app.example.com:{port}/"),
        ),
        ("[::1]:8080", "/p", format!("https://[::1]:{port}/p")),
        ("[::1]", "/p", format!("https://[::1]:{port}/p")),
    ] {
        let raw = raw_get(proxy.http(), target, host, "").await;
        assert_eq!(raw_status(&raw), 308, "{raw}");
        let loc = raw
            .lines()
            .find_map(|l| {
                l.strip_prefix("location: ")
                    .or_else(|| l.strip_prefix("Location: "))
            })
            .unwrap_or("");
        assert_eq!(loc, want, "{host}{target}");
    }
    // a Host that is not host[:port] is refused rather than echoed into Location
    for host in ["evil.example/x?", "user@evil.example", "a b"] {
        let raw = raw_get(proxy.http(), "/", host, "").await;
        assert_eq!(raw_status(&raw), 400, "{host}: {raw}");
    }
    proxy.shutdown().await;
}

/// Behind port mapping (a container's 8443 published as 443) the bound TLS port is not what
/// clients reach: an https `public_url` gives the port the redirect uses.
#[tokio::test]
async fn redirect_http_uses_the_public_url_port() {
    let up = echo_upstream().await;
    let ca = TestCa::new();
    for (public_url, want) in [
        ("https://app.example.com", "https://app.example.com/a?b=1"),
        (
            "https://app.example.com:9443",
            "https://app.example.com:9443/a?b=1",
        ),
    ] {
        let dir = temp_dir();
        write_tls_files(dir.path(), &ca, "first");
        let cfg = tls_server_toml(
            &format!("public_url = \"{public_url}\""),
            "redirect_http = true",
            &route("app", "path = \"/\"", &up.url("")),
        );
        let proxy = start_proxy_in(dir, &cfg).await;
        let raw = raw_get(proxy.http(), "/a?b=1", "app.example.com:8080", "").await;
        assert_eq!(raw_status(&raw), 308, "{raw}");
        assert!(
            raw.lines()
                .any(|l| l.eq_ignore_ascii_case(&format!("location: {want}"))),
            "{public_url}: {raw}"
        );
        proxy.shutdown().await;
    }
}

// ---------------------------------------------------------------------------------------------
// Streaming through the real binary
// ---------------------------------------------------------------------------------------------

const GIB: u64 = 1 << 30;

/// 1 GiB up and 1 GiB down through the real binary with flat memory: the proxy's peak RSS
/// (VmHWM) stays under 64 MiB, so bodies are streamed, not buffered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_one_gib_each_way_with_flat_memory() {
    let up = echo_upstream().await;
    let dir = temp_dir();
    let path = dir.path().join("portcullis.toml");
    std::fs::write(&path, cfg(&route("app", "path = \"/\"", &up.url("")))).unwrap();
    let bin = BinaryProxy::start(&path);
    let addr = bin.http_addr;

    let run = async {
        // upload
        let req = Request::post("/upload")
            .header("host", "app.local")
            .body(generated_body(GIB))
            .unwrap();
        let r = send(addr, req).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.echoed().body_len, GIB);

        // download, counted as it streams
        let stream = TcpStream::connect(addr).await.unwrap();
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(conn);
        let req = Request::get(format!("/big?bytes={GIB}"))
            .header("host", "app.local")
            .body(empty_body())
            .unwrap();
        let resp = sender.send_request(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        let mut body = resp.into_body();
        let mut n = 0u64;
        while let Some(f) = body.frame().await {
            if let Some(d) = f.unwrap().data_ref() {
                n += d.len() as u64;
            }
        }
        assert_eq!(n, GIB);
    };
    let t0 = Instant::now();
    tokio::time::timeout(Duration::from_secs(300), run)
        .await
        .expect("2 GiB did not pass within 300 s");
    let hwm = bin.status_kib("VmHWM");
    eprintln!(
        "streamed 2 GiB in {:?}; proxy VmHWM {} KiB ({:.1} MiB)",
        t0.elapsed(),
        hwm,
        hwm as f64 / 1024.0
    );
    assert!(
        hwm < 64 * 1024,
        "proxy peak RSS {hwm} KiB ≥ 64 MiB: bodies are being buffered"
    );
}

// ---------------------------------------------------------------------------------------------
// Error statuses
// ---------------------------------------------------------------------------------------------

/// Upstream refused → 502 with a short JSON body that does not leak the address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_refused_is_502() {
    let closed = closed_port().await;
    let proxy = start_proxy(&cfg(&route(
        "dead",
        "path = \"/\"",
        &format!("http://{closed}"),
    )))
    .await;
    let r = get_path(proxy.http(), "/x").await;
    assert_eq!(r.status, 502);
    assert!(r.body.len() < 200, "{}", r.text());
    assert!(r.text().contains("bad_gateway"), "{}", r.text());
    assert!(
        !r.text().contains(&closed.port().to_string()),
        "{}",
        r.text()
    );
    proxy.shutdown().await;
}

/// Upstream slower than the route timeout → 504 at about the timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_timeout_is_504() {
    let up = echo_upstream().await;
    let mut c = cfg("");
    c += &route("slow", "path = \"/\"\ntimeout = \"300ms\"", &up.url(""));
    let proxy = start_proxy(&c).await;
    let t0 = Instant::now();
    let r = get_path(proxy.http(), "/slow?ms=2000").await;
    let took = t0.elapsed();
    assert_eq!(r.status, 504, "{}", r.text());
    assert!(r.text().contains("gateway_timeout"), "{}", r.text());
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_millis(1500),
        "took {took:?}"
    );
    // a fast request on the same route passes
    assert_eq!(get_path(proxy.http(), "/slow?ms=10").await.status, 200);
    proxy.shutdown().await;
}

/// Slowloris: a request head not finished within `header_read_timeout` gets a 408 and the
/// connection closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_gets_408_and_close() {
    let up = echo_upstream().await;
    let proxy = start_proxy(&cfg(&format!(
        "header_read_timeout = \"1s\"\n{}",
        route("app", "path = \"/\"", &up.url(""))
    )))
    .await;
    let mut s = TcpStream::connect(proxy.http()).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: app.local\r\nX-Slow: ")
        .await
        .unwrap();
    let t0 = Instant::now();
    // keep trickling one byte every 300 ms, as a slowloris client does
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    let closed = loop {
        assert!(
            t0.elapsed() < Duration::from_secs(3),
            "no 408 and close within 3 s; got {:?}",
            String::from_utf8_lossy(&out)
        );
        let _ = s.write_all(b"a").await;
        match tokio::time::timeout(Duration::from_millis(300), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
    };
    let text = String::from_utf8_lossy(&out);
    assert!(closed);
    assert!(text.starts_with("HTTP/1.1 408"), "{text:?}");
    assert!(
        t0.elapsed() >= Duration::from_millis(800),
        "408 too early: {:?}",
        t0.elapsed()
    );

    // A connection that sends nothing at all also gets the 408.
    let raw = tokio::time::timeout(Duration::from_secs(3), raw_http(proxy.http(), b""))
        .await
        .expect("no close within 3 s");
    assert!(raw.starts_with("HTTP/1.1 408"), "{raw:?}");
    proxy.shutdown().await;
}

/// Reads one HTTP/1.1 response with a `Content-Length` body from a raw connection.
async fn read_one_response(s: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = out.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&out[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap());
            if out.len() >= end + 4 + len {
                return String::from_utf8_lossy(&out).into_owned();
            }
        }
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("response within 5 s")
            .unwrap();
        assert!(
            n > 0,
            "closed mid-response: {:?}",
            String::from_utf8_lossy(&out)
        );
        out.extend_from_slice(&buf[..n]);
    }
}

/// Later requests on a keep-alive connection have the head deadline too, counted from the end
/// of the previous response: a head that started and stalls gets 408 and a close, a silent
/// idle connection is closed without an answer, and a request in flight longer than the
/// deadline (a slow upstream) is not cut.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_heads_have_the_deadline_too() {
    let up = echo_upstream().await;
    let proxy = start_proxy(&cfg(&format!(
        "header_read_timeout = \"1s\"\n{}",
        route("app", "path = \"/\"", &up.url(""))
    )))
    .await;

    // 1. a request in flight for 1.5 s (longer than the deadline) is answered
    let mut s = TcpStream::connect(proxy.http()).await.unwrap();
    s.write_all(b"GET /slow?ms=1500 HTTP/1.1\r\nHost: app.local\r\n\r\n")
        .await
        .unwrap();
    let first = read_one_response(&mut s).await;
    assert!(first.starts_with("HTTP/1.1 200"), "{first:?}");

    // 2. the next head on the same connection starts and stalls: 408, then close
    s.write_all(b"GET / HTTP/1.1\r\nHost: app.local\r\nX-Slow: ")
        .await
        .unwrap();
    let t0 = Instant::now();
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        assert!(
            t0.elapsed() < Duration::from_secs(3),
            "no 408 and close within 3 s; got {:?}",
            String::from_utf8_lossy(&out)
        );
        let _ = s.write_all(b"a").await;
        match tokio::time::timeout(Duration::from_millis(300), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
    }
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 408"), "{text:?}");
    assert!(
        t0.elapsed() >= Duration::from_millis(800),
        "408 too early: {:?}",
        t0.elapsed()
    );

    // 3. an idle keep-alive connection is closed after the deadline, without an answer
    let mut s = TcpStream::connect(proxy.http()).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: app.local\r\n\r\n")
        .await
        .unwrap();
    assert!(read_one_response(&mut s).await.starts_with("HTTP/1.1 200"));
    let t0 = Instant::now();
    let mut rest = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut rest))
        .await
        .expect("idle keep-alive connection not closed within 3 s");
    assert!(
        n.is_err() || rest.is_empty(),
        "{:?}",
        String::from_utf8_lossy(&rest)
    );
    assert!(
        t0.elapsed() >= Duration::from_millis(800),
        "{:?}",
        t0.elapsed()
    );

    // 4. quick keep-alive requests are not disturbed by the (lazily moved) deadline
    let mut s = TcpStream::connect(proxy.http()).await.unwrap();
    for _ in 0..5 {
        s.write_all(b"GET / HTTP/1.1\r\nHost: app.local\r\n\r\n")
            .await
            .unwrap();
        assert!(read_one_response(&mut s).await.starts_with("HTTP/1.1 200"));
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    proxy.shutdown().await;
}

/// A 64 KiB header (above the default 32 KiB head limit) gets 431 and a close, not a hang.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_header_is_431() {
    let up = echo_upstream().await;
    let proxy = start_proxy(&cfg(&route("app", "path = \"/\"", &up.url("")))).await;
    let big = "a".repeat(64 * 1024);
    let t0 = Instant::now();
    let raw = raw_get(proxy.http(), "/", "app.local", &format!("X-Big: {big}\r\n")).await;
    assert_eq!(raw_status(&raw), 431, "{:?}", &raw[..raw.len().min(200)]);
    assert!(t0.elapsed() < Duration::from_secs(5));
    // 20 KiB (under the limit) passes
    let ok = raw_get(
        proxy.http(),
        "/",
        "app.local",
        &format!("X-Big: {}\r\n", &big[..20 * 1024]),
    )
    .await;
    assert_eq!(raw_status(&ok), 200);
    proxy.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Graceful shutdown
// ---------------------------------------------------------------------------------------------

/// `shutdown()` with a request in flight: the request completes 200, new connections are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_finishes_in_flight_requests() {
    let up = echo_upstream().await;
    let proxy = start_proxy(&cfg(&route("app", "path = \"/\"", &up.url("")))).await;
    let addr = proxy.http();
    let in_flight = tokio::spawn(async move { get_path(addr, "/slow?ms=1500").await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t0 = Instant::now();
    let stopping = tokio::spawn(proxy.shutdown());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "new connection accepted during shutdown"
    );
    let r = in_flight.await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.echoed().path, "/slow");
    stopping.await.unwrap();
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "shutdown took {:?}",
        t0.elapsed()
    );
}

// ---------------------------------------------------------------------------------------------
// WebSocket
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrade_proxied_only_when_enabled() {
    let ws = ws_echo_upstream().await;
    let up = echo_upstream().await;
    let mut c = cfg("");
    c += &route("ws", "path = \"/ws\"\nwebsocket = true", &ws.url(""));
    c += &route("ws-off", "path = \"/ws-off\"", &ws.url(""));
    c += &route("plain", "path = \"/\"", &up.url(""));
    let proxy = start_proxy(&c).await;
    let a = proxy.http();

    let (mut sock, resp) = tokio::time::timeout(
        STEP,
        tokio_tungstenite::connect_async(format!("ws://{a}/ws/chat")),
    )
    .await
    .unwrap()
    .expect("websocket handshake through the proxy");
    assert_eq!(resp.status(), 101);
    for msg in ["hello", "second message"] {
        sock.send(tokio_tungstenite::tungstenite::Message::text(msg))
            .await
            .unwrap();
        let back = tokio::time::timeout(STEP, sock.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(back.into_text().unwrap().as_str(), msg);
    }
    sock.send(tokio_tungstenite::tungstenite::Message::binary(vec![
        0u8, 1, 2, 255,
    ]))
    .await
    .unwrap();
    let back = tokio::time::timeout(STEP, sock.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(back.into_data().as_ref(), &[0u8, 1, 2, 255]);
    let _ = sock.close(None).await;

    // not enabled: no upgrade
    let r = tokio::time::timeout(
        STEP,
        tokio_tungstenite::connect_async(format!("ws://{a}/ws-off")),
    )
    .await
    .unwrap();
    assert!(
        r.is_err(),
        "upgrade succeeded on a route without websocket = true"
    );
    // and the upstream never sees the Upgrade request
    let raw = raw_http(
        a,
        "GET /x HTTP/1.1\r\nHost: app.local\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await;
    assert_eq!(raw_status(&raw), 200, "{raw}");
    let e = raw_echoed(&raw);
    assert_eq!(e.header("upgrade"), None, "{e:?}");
    proxy.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Admin listener
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_health_ready_and_metrics() {
    let up = echo_upstream().await;
    let closed = closed_port().await;
    let mut c = cfg("admin_listen = \"127.0.0.1:0\"\n");
    c += &route("dead", "path = \"/dead\"", &format!("http://{closed}"));
    c += &route("app", "path = \"/\"", &up.url(""));
    let proxy = start_proxy(&c).await;
    assert_eq!(get_path(proxy.admin(), "/healthz").await.status, 200);
    assert_eq!(get_path(proxy.admin(), "/readyz").await.status, 200);
    assert_eq!(get_path(proxy.admin(), "/nope").await.status, 404);
    // admin endpoints are not on the public listener
    assert_ne!(get_path(proxy.http(), "/metrics").await.echoed().path, "");

    assert_eq!(get_path(proxy.http(), "/hello").await.status, 200);
    assert_eq!(get_path(proxy.http(), "/dead").await.status, 502);
    let m = get_path(proxy.admin(), "/metrics").await;
    assert_eq!(m.status, 200);
    let text = m.text();
    for want in [
        "portcullis_requests_total{route=\"app\",status=\"200\"} ",
        "portcullis_requests_total{route=\"dead\",status=\"502\"} ",
        "portcullis_request_duration_seconds_bucket{",
        "portcullis_upstream_errors_total{route=\"dead\",kind=\"unreachable\"} 1",
        "portcullis_open_connections",
    ] {
        assert!(text.contains(want), "metrics lack {want:?}:\n{text}");
    }
    proxy.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// CLI
// ---------------------------------------------------------------------------------------------

const GOOD: &str = r#"[server]
listen = "127.0.0.1:8080"

[[route]]
name = "admin"
host = "app.local"
path = "/admin"
upstream = "http://127.0.0.1:3000"
auth = "none"

[[route]]
name = "app"
path = "/"
upstream = "http://127.0.0.1:3001"
auth = "none"
"#;

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let p = dir.path().join(name);
    std::fs::write(&p, text).unwrap();
    p.to_string_lossy().into_owned()
}

#[test]
fn cli_check_accepts_a_good_config() {
    let dir = temp_dir();
    let f = write(&dir, "good.toml", GOOD);
    let out = cli(&["check", "--config", &f]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("ok"), "{}", out.stdout);
}

/// Each config error: exit 1, and the message names file:line:col and the key.
#[test]
fn cli_check_reports_each_error_with_location_and_key() {
    let dir = temp_dir();
    const PROVIDER: &str =
        "\n[providers.idp]\nissuer = \"https://idp.example.com\"\nclient_id = \"c\"\n";
    let cases: Vec<(&str, String, &str, &str)> = vec![
        // (label, config, "line:" expected, key mentioned)
        (
            "unknown key",
            GOOD.replace("listen = ", "listne = \"x\"\nlisten = "),
            "2:1",
            "listne",
        ),
        (
            "wrong type",
            GOOD.replace("\"127.0.0.1:8080\"", "8080"),
            "2:10",
            "server.listen",
        ),
        (
            "bad URL",
            GOOD.replace("http://127.0.0.1:3001", "127.0.0.1:3001"),
            "14:12",
            "route[1].upstream",
        ),
        (
            "missing provider",
            format!(
                "{PROVIDER}{}",
                GOOD.replace(
                    "auth = \"none\"\n\n",
                    "auth = \"bearer\"\nprovider = \"nope\"\n\n"
                )
            ),
            "14:12",
            "route[0].provider",
        ),
        (
            "duplicate route names",
            GOOD.replace("name = \"app\"", "name = \"admin\""),
            "12:8",
            "route[1].name",
        ),
        (
            "shadowed route",
            format!(
                "{GOOD}\n[[route]]\nname = \"late\"\npath = \"/late\"\nupstream = \"http://127.0.0.1:3002\"\nauth = \"none\"\n"
            ),
            "17:1",
            "route[2]",
        ),
        (
            "short session secret",
            format!("{GOOD}\n[session]\nsecret = \"too-short\"\n"),
            "18:10",
            "session.secret",
        ),
        (
            "missing env var",
            GOOD.replace("http://127.0.0.1:3000", "${PORTCULLIS_IT_SURELY_UNSET_VAR}"),
            "8:12",
            "PORTCULLIS_IT_SURELY_UNSET_VAR",
        ),
    ];
    let cases = {
        let mut cases = cases;
        std::fs::write(dir.path().join("garbage.pem"), "not PEM at all").unwrap();
        let tls = |cert: &str| {
            GOOD.replace(
                "listen = \"127.0.0.1:8080\"\n",
                &format!("listen = \"127.0.0.1:8080\"\n[server.tls]\nlisten = \"127.0.0.1:8443\"\ncert = \"{cert}\"\nkey = \"garbage.pem\"\n"),
            )
        };
        cases.push((
            "unreadable cert file",
            tls("missing.crt"),
            "5:8",
            "server.tls.cert",
        ));
        cases.push((
            "malformed key file",
            tls("garbage.pem"),
            "6:7",
            "server.tls.key",
        ));
        cases
    };
    let mut failures = Vec::new();
    for (i, (label, text, line_col, key)) in cases.iter().enumerate() {
        let f = write(&dir, &format!("bad{i}.toml"), text);
        let out = cli(&["check", "--config", &f]);
        let loc = format!("{f}:{line_col}:");
        if out.code != 1 || !out.stderr.contains(&loc) || !out.stderr.contains(key) {
            failures.push(format!(
                "{label}: want exit 1, {loc} and {key:?}; got exit {}:\n{}",
                out.code, out.stderr
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// `--env-file` supplies `${VAR}` values; without it the variable is missing.
#[test]
fn cli_env_file_supplies_variables() {
    let dir = temp_dir();
    let f = write(
        &dir,
        "env.toml",
        &GOOD.replace("http://127.0.0.1:3000", "${PORTCULLIS_IT_ENVFILE_UPSTREAM}"),
    );
    let env = write(
        &dir,
        "test.env",
        "# comment\nPORTCULLIS_IT_ENVFILE_UPSTREAM=http://127.0.0.1:4000\n",
    );
    let out = cli(&["check", "--config", &f, "--env-file", &env]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = cli(&["check", "--config", &f]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("PORTCULLIS_IT_ENVFILE_UPSTREAM"),
        "{}",
        out.stderr
    );
    let out = cli(&[
        "explain",
        "--config",
        &f,
        "--env-file",
        &env,
        "GET",
        "http://app.local/admin/x",
    ]);
    assert!(
        out.stdout.contains("http://127.0.0.1:4000"),
        "{}{}",
        out.stdout,
        out.stderr
    );
}

#[test]
fn cli_explain_prints_the_route() {
    let dir = temp_dir();
    let f = write(&dir, "good.toml", GOOD);
    let out = cli(&["explain", "--config", &f, "GET", "http://app.local/admin"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("route: \"admin\""), "{}", out.stdout);
    assert!(out.stdout.contains("auth: none"), "{}", out.stdout);
    let out = cli(&["explain", "--config", &f, "GET", "/admin/../x"]);
    assert!(out.stdout.contains("route: \"app\""), "{}", out.stdout);
    assert!(out.stdout.contains("normalized path: /x"), "{}", out.stdout);
    let out = cli(&["explain", "--config", &f, "GET", "http://app.local/%zz"]);
    assert_eq!(out.code, 1);
    assert!(out.stdout.contains("400"), "{}", out.stdout);
}

#[test]
fn cli_version() {
    let out = cli(&["version"]);
    assert_eq!(out.code, 0);
    assert_eq!(
        out.stdout.trim(),
        format!("portcullis {}", env!("CARGO_PKG_VERSION"))
    );
}

// ---------------------------------------------------------------------------------------------
// Deadlines must not cut requests whose head arrived in time
// ---------------------------------------------------------------------------------------------

/// `header_read_timeout` bounds the request *head* only: a slow upstream answer and a slow
/// request body (longer than the timeout) still pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_deadline_does_not_cut_slow_bodies_or_slow_upstreams() {
    let up = echo_upstream().await;
    let proxy = start_proxy(&cfg(&format!(
        "header_read_timeout = \"1s\"\n{}",
        route("app", "path = \"/\"", &up.url(""))
    )))
    .await;
    let a = proxy.http();

    // upstream answers after 2.5 s; nothing is written to the client meanwhile
    let r = get_path(a, "/slow?ms=2500").await;
    assert_eq!(r.status, 200, "{}", r.text());

    // body trickles in over ~2.5 s
    let stream = futures_util::stream::unfold(0u32, |i| async move {
        if i == 10 {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        Some((
            Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(bytes::Bytes::from_static(
                b"0123456789",
            ))),
            i + 1,
        ))
    });
    let body = http_body_util::BodyExt::boxed(http_body_util::StreamBody::new(stream));
    let req = Request::post("/upload")
        .header("host", "app.local")
        .body(body)
        .unwrap();
    let r = send(a, req).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.echoed().body_len, 100);
    proxy.shutdown().await;
}

/// A request with both Content-Length and Transfer-Encoding is refused or re-framed; the
/// upstream never sees both (request smuggling).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicting_framing_is_not_forwarded() {
    let up = echo_upstream().await;
    let proxy = start_proxy(&cfg(&route("app", "path = \"/\"", &up.url("")))).await;
    let raw = raw_http(
        proxy.http(),
        "POST / HTTP/1.1\r\nHost: app.local\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    )
    .await;
    match raw_status(&raw) {
        400 => {}
        200 => {
            let e = raw_echoed(&raw);
            assert!(
                e.header("content-length").is_none() || e.header("transfer-encoding").is_none(),
                "{e:?}"
            );
            assert_eq!(e.body_len, 5, "{e:?}");
        }
        s => panic!("unexpected {s}: {raw}"),
    }
    proxy.shutdown().await;
}

/// `strip_prefix` with an encoded separator right after the prefix still forwards a valid path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strip_prefix_with_encoded_separator() {
    let up = echo_upstream().await;
    let mut c = cfg("");
    c += &route(
        "stripped",
        "path = \"/app\"\nstrip_prefix = true",
        &up.url(""),
    );
    c += &route(
        "stripped-base",
        "path = \"/svc\"\nstrip_prefix = true",
        &up.url("/base"),
    );
    let proxy = start_proxy(&c).await;
    for (target, want) in [
        ("/app%2Fx", "/x"),
        ("/app%5Cx", "/x"),
        ("/svc%2Fx", "/base/x"),
    ] {
        let raw = raw_get(proxy.http(), target, "app.local", "").await;
        assert_eq!(raw_status(&raw), 200, "{target}: {raw}");
        assert_eq!(raw_echoed(&raw).path, want, "{target}");
    }
    proxy.shutdown().await;
}

/// The real binary on SIGTERM: stops accepting, finishes the in-flight request, exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_sigterm_drains_in_flight_requests() {
    let up = echo_upstream().await;
    let dir = temp_dir();
    let path = dir.path().join("portcullis.toml");
    std::fs::write(&path, cfg(&route("app", "path = \"/\"", &up.url("")))).unwrap();
    let mut bin = BinaryProxy::start(&path);
    let addr = bin.http_addr;
    let in_flight = tokio::spawn(async move { get_path(addr, "/slow?ms=1500").await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rc = std::process::Command::new("kill")
        .args(["-TERM", &bin.pid.to_string()])
        .status()
        .unwrap();
    assert!(rc.success());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "new connection accepted after SIGTERM"
    );
    let r = in_flight.await.unwrap();
    assert_eq!(r.status, 200);
    let code = bin
        .wait_exit(Duration::from_secs(10))
        .expect("did not exit after draining");
    assert_eq!(code, Some(0));
}

// ---------------------------------------------------------------------------------------------
// More edges
// ---------------------------------------------------------------------------------------------

/// A configured identity header name of any length is stripped (no length cut-off).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_configured_identity_header_is_stripped() {
    let up = echo_upstream().await;
    let long = format!("X-Org-{}", "a".repeat(150));
    let c = cfg(&format!(
        "\n[headers.claims]\n\"{long}\" = \"org\"\n{}",
        route("app", "path = \"/\"", &up.url(""))
    ));
    let proxy = start_proxy(&c).await;
    let folded = long.to_ascii_lowercase().replace('-', "_");
    let long_portcullis = format!("X-Portcullis-{}", "b".repeat(200));
    let raw = raw_get(
        proxy.http(),
        "/",
        "app.local",
        &format!("{long}: forged\r\n{folded}: forged\r\n{long_portcullis}: forged\r\n"),
    )
    .await;
    let e = raw_echoed(&raw);
    let leaked: Vec<_> = e
        .headers
        .iter()
        .filter(|(_, v)| v == "forged")
        .map(|(n, _)| n.len())
        .collect();
    assert!(
        leaked.is_empty(),
        "forged headers of these name lengths reached the upstream: {leaked:?}"
    );
    proxy.shutdown().await;
}

/// HTTP/2 clients: forged identity headers stripped, oversized header list refused (431 or a
/// stream error, never forwarded), absolute authority used for Host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_identity_strip_and_header_limit() {
    let up = echo_upstream().await;
    let ca = TestCa::new();
    let (proxy, _) = tls_proxy(&ca, &up.url(""), "").await;
    let req = Request::get("/x")
        .header("x_forwarded_user", "forged")
        .header("x-forwarded-email", "forged")
        .header("x-portcullis-assertion", "forged")
        .header("x-ok", "kept")
        .body(empty_body())
        .unwrap();
    let r = send_tls_request(proxy.https(), &ca.cert_pem, &[b"h2"], req).await;
    assert_eq!(r.resp.version, Version::HTTP_2);
    let e = r.resp.echoed();
    assert!(e.headers.iter().all(|(_, v)| v != "forged"), "{e:?}");
    assert_eq!(e.header("x-ok"), Some("kept"));

    let big = "a".repeat(64 * 1024);
    let req = Request::get("/big-header")
        .header("x-big", big.as_str())
        .body(empty_body())
        .unwrap();
    let cfg = tls_client(&ca.cert_pem, &[b"h2"]);
    let stream = TcpStream::connect(proxy.https()).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = tokio_rustls::TlsConnector::from(cfg)
        .connect(name, stream)
        .await
        .unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tls),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let (mut parts, body) = req.into_parts();
    parts.uri = format!("https://localhost:{}/big-header", proxy.https().port())
        .parse()
        .unwrap();
    let res = tokio::time::timeout(STEP, sender.send_request(Request::from_parts(parts, body)))
        .await
        .expect("h2 big header hung");
    match res {
        Ok(resp) => assert_eq!(resp.status(), 431),
        Err(e) => eprintln!("h2 oversized header refused at the protocol level: {e}"),
    }
    proxy.shutdown().await;
}

/// HTTPS upstreams: trusted through `upstream_ca_file`; an untrusted certificate is a 502.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_upstream_with_custom_ca() {
    let ca = TestCa::new();
    let leaf = ca.issue("upstream");
    let up = tls_echo_upstream(&leaf).await;
    let dir = temp_dir();
    std::fs::write(dir.path().join("upstream-ca.pem"), &ca.cert_pem).unwrap();
    let port = up.addr.port();
    let mut c = cfg("");
    c += &route(
        "trusted",
        "path = \"/trusted\"\nupstream_ca_file = \"upstream-ca.pem\"",
        &format!("https://localhost:{port}/t"),
    );
    c += &route(
        "untrusted",
        "path = \"/untrusted\"",
        &format!("https://localhost:{port}/u"),
    );
    let proxy = start_proxy_in(dir, &c).await;
    let r = get_path(proxy.http(), "/trusted/x").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let e = r.echoed();
    assert_eq!(e.path, "/t/trusted/x");
    assert_eq!(e.header("x-forwarded-proto"), Some("http"));
    let r = get_path(proxy.http(), "/untrusted/x").await;
    assert_eq!(r.status, 502, "{}", r.text());
    proxy.shutdown().await;
}

/// An absolute-form request target routes by its authority, and that authority is the Host the
/// upstream sees (the Host header is ignored, RFC 9112 §3.2.2).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absolute_form_target_routes_by_its_authority() {
    let up = echo_upstream().await;
    let mut c = cfg("");
    c += &route(
        "admin-host",
        "host = \"admin.example.com\"\npath = \"/\"",
        &up.url("/r-admin"),
    );
    c += &route("other", "path = \"/\"", &up.url("/r-other"));
    let proxy = start_proxy(&c).await;
    let raw = raw_http(
        proxy.http(),
        "GET http://admin.example.com/x HTTP/1.1\r\nHost: public.example.com\r\nConnection: close\r\n\r\n",
    )
    .await;
    let e = raw_echoed(&raw);
    assert_eq!(e.path, "/r-admin/x");
    assert_eq!(e.header_all("host"), vec!["admin.example.com"]);
    assert_eq!(e.header("x-forwarded-host"), Some("admin.example.com"));
    // asterisk-form and authority-form are refused, not forwarded
    assert_eq!(
        raw_status(
            &raw_http(
                proxy.http(),
                "OPTIONS * HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
            )
            .await
        ),
        400
    );
    let s = raw_status(
        &raw_http(
            proxy.http(),
            "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
        )
        .await,
    );
    assert!(s == 400 || s == 405, "CONNECT answered {s}");
    proxy.shutdown().await;
}

/// Shutdown does not wait for idle keep-alive connections or connections that sent nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_does_not_wait_for_idle_connections() {
    let up = echo_upstream().await;
    let proxy = start_proxy(&cfg(&route("app", "path = \"/\"", &up.url("")))).await;
    let addr = proxy.http();
    // idle keep-alive connection after one request
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    let conn = tokio::spawn(conn);
    let r = sender
        .send_request(
            Request::get("/")
                .header("host", "a")
                .body(empty_body())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let _ = r.into_body().collect().await;
    // a connection that never sends anything
    let _silent = TcpStream::connect(addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let t0 = Instant::now();
    proxy.shutdown().await;
    assert!(
        t0.elapsed() < Duration::from_secs(3),
        "shutdown waited {:?} for idle connections",
        t0.elapsed()
    );
    let _ = tokio::time::timeout(Duration::from_secs(2), conn).await;
}

/// The binary on SIGTERM with a request longer than `drain_timeout`: exits after the drain
/// timeout instead of waiting for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_sigterm_respects_drain_timeout() {
    let up = echo_upstream().await;
    let dir = temp_dir();
    let path = dir.path().join("portcullis.toml");
    std::fs::write(
        &path,
        cfg(&format!(
            "drain_timeout = \"1s\"\n{}",
            route("app", "path = \"/\"", &up.url(""))
        )),
    )
    .unwrap();
    let mut bin = BinaryProxy::start(&path);
    let addr = bin.http_addr;
    let in_flight = tokio::spawn(async move {
        let stream = TcpStream::connect(addr).await.unwrap();
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(conn);
        sender
            .send_request(
                Request::get("/slow?ms=10000")
                    .header("host", "a")
                    .body(empty_body())
                    .unwrap(),
            )
            .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t0 = Instant::now();
    std::process::Command::new("kill")
        .args(["-TERM", &bin.pid.to_string()])
        .status()
        .unwrap();
    let code = bin
        .wait_exit(Duration::from_secs(8))
        .expect("did not exit after the drain timeout");
    assert!(
        t0.elapsed() < Duration::from_secs(4),
        "exit took {:?}",
        t0.elapsed()
    );
    assert_eq!(code, Some(0));
    assert!(
        tokio::time::timeout(Duration::from_secs(5), in_flight)
            .await
            .unwrap()
            .unwrap()
            .is_err()
    );
}

/// `Expect: 100-continue` uploads (curl does this above 1 MiB): the client gets `100 Continue`,
/// sends the body, and the upstream receives all of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_100_continue_upload() {
    let up = echo_upstream().await;
    let proxy = start_proxy(&cfg(&route("app", "path = \"/\"", &up.url("")))).await;
    let mut s = TcpStream::connect(proxy.http()).await.unwrap();
    s.write_all(b"POST /up HTTP/1.1\r\nHost: app.local\r\nContent-Length: 11\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 256];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("no 100 Continue within 5 s")
        .unwrap();
    let first = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(first.starts_with("HTTP/1.1 100"), "{first:?}");
    s.write_all(b"hello world").await.unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&rest).into_owned();
    let text = text
        .split_once("HTTP/1.1 200")
        .map(|(_, t)| format!("HTTP/1.1 200{t}"))
        .unwrap_or(text);
    assert_eq!(raw_status(&text), 200, "{text}");
    assert_eq!(raw_echoed(&text).body_len, 11);
    proxy.shutdown().await;
}

/// WebSocket with the headers browsers really send (`Connection: keep-alive, Upgrade`), and
/// over the TLS listener (wss, HTTP/1.1 by ALPN).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_browser_headers_and_wss() {
    let ws = ws_echo_upstream().await;
    let ca = TestCa::new();
    let dir = temp_dir();
    write_tls_files(dir.path(), &ca, "wss");
    let c = tls_server_toml(
        "",
        "",
        &route("ws", "path = \"/\"\nwebsocket = true", &ws.url("")),
    );
    let proxy = start_proxy_in(dir, &c).await;

    let raw = tokio::time::timeout(STEP, async {
        let mut s = TcpStream::connect(proxy.http()).await.unwrap();
        s.write_all(b"GET /chat HTTP/1.1\r\nHost: app.local\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
            .await
            .unwrap();
        let mut buf = vec![0u8; 1024];
        let n = s.read(&mut buf).await.unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    })
    .await
    .unwrap();
    assert_eq!(raw_status(&raw), 101, "{raw}");
    assert!(
        raw.to_ascii_lowercase()
            .contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
        "{raw}"
    );

    // wss through the TLS listener
    let cfg = tls_client(&ca.cert_pem, &[b"http/1.1"]);
    let stream = TcpStream::connect(proxy.https()).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = tokio_rustls::TlsConnector::from(cfg)
        .connect(name, stream)
        .await
        .unwrap();
    let url = format!("wss://localhost:{}/secure", proxy.https().port());
    let (mut sock, resp) = tokio::time::timeout(STEP, tokio_tungstenite::client_async(url, tls))
        .await
        .unwrap()
        .expect("wss handshake");
    assert_eq!(resp.status(), 101);
    sock.send(tokio_tungstenite::tungstenite::Message::text("over tls"))
        .await
        .unwrap();
    let back = tokio::time::timeout(STEP, sock.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(back.into_text().unwrap().as_str(), "over tls");
    proxy.shutdown().await;
}

/// Paths under the auth prefix belong to the proxy and are never forwarded, however they are
/// spelled; look-alikes outside it are forwarded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_prefix_is_never_forwarded() {
    let up = echo_upstream().await;
    let proxy = start_proxy(&cfg(&route("app", "path = \"/\"", &up.url("")))).await;
    for target in [
        "/.auth",
        "/.auth/",
        "/.auth/me",
        "//.auth/me",
        "/x/../.auth/me",
        "/%2eauth/me",
        "/.%61uth/me",
        "/.auth/x?y=1",
    ] {
        let raw = raw_get(proxy.http(), target, "app.local", "").await;
        assert!(!raw.contains("x-echo"), "{target} was forwarded:\n{raw}");
    }
    for (target, path) in [
        ("/.authx", "/.authx"),
        ("/a/.auth/me", "/a/.auth/me"),
        ("/.AUTH/me", "/.AUTH/me"),
    ] {
        let raw = raw_get(proxy.http(), target, "app.local", "").await;
        assert_eq!(raw_echoed(&raw).path, path, "{target}");
    }
    proxy.shutdown().await;
}

/// One structured access-log line per request with `--log-format json`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_access_log_line_per_request() {
    let up = echo_upstream().await;
    let dir = temp_dir();
    let path = dir.path().join("portcullis.toml");
    let closed = closed_port().await;
    let mut c = cfg("");
    c += &route("dead", "path = \"/dead\"", &format!("http://{closed}"));
    c += &route("app", "path = \"/\"", &up.url(""));
    std::fs::write(&path, c).unwrap();
    let bin = BinaryProxy::start_with(&path, &["--log-format", "json"]);
    let r = get_host(
        bin.http_addr,
        Method::GET,
        "logged.local",
        "/logged/path?secret=1",
    )
    .await;
    assert_eq!(r.status, 200);
    let line = bin.wait_log(&["portcullis::access", "/logged/path"]);
    let v: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    assert_eq!(v["method"], "GET", "{line}");
    assert_eq!(v["host"], "logged.local", "{line}");
    assert_eq!(v["path"], "/logged/path", "{line}");
    assert_eq!(v["route"], "app", "{line}");
    assert_eq!(v["status"], 200, "{line}");
    assert!(
        v["latency_ms"].is_number() && v["upstream_ms"].is_number(),
        "{line}"
    );
    assert!(
        !line.contains("secret=1"),
        "query string (may carry secrets) logged: {line}"
    );
    // an upstream failure: its access line with 502, and a warning naming the route and cause
    assert_eq!(get_path(bin.http_addr, "/dead").await.status, 502);
    let access = bin.wait_log(&["portcullis::access", "\"/dead\""]);
    assert!(access.contains("\"status\":502"), "{access}");
    let warn = bin.wait_log(&["upstream error", "dead"]);
    assert!(warn.contains("WARN"), "{warn}");
}

/// A Host the proxy and an upstream could read differently is refused before routing (400):
/// userinfo, a path, a bad port, spaces, several Host headers, none on HTTP/1.1. Well-formed
/// spellings route as the host they name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_host_is_refused_before_routing() {
    let up = echo_upstream().await;
    let mut c = cfg("");
    c += &route(
        "admin-host",
        "host = \"admin.example.com\"\npath = \"/\"",
        &up.url("/r-admin"),
    );
    c += &route("other", "path = \"/\"", &up.url("/r-other"));
    let proxy = start_proxy(&c).await;
    let a = proxy.http();
    let mut failures = Vec::new();
    for host_lines in [
        "Host: user@admin.example.com\r\n",
        "Host: admin.example.com@evil.example\r\n",
        "Host: admin.example.com/x\r\n",
        "Host: admin.example.com:80x\r\n",
        "Host: admin.example.com:99999999\r\n",
        "Host: admin example.com\r\n",
        "Host: admin.example.com\\\r\n",
        "Host: admin.example.com%2e\r\n",
        "Host: [::1\r\n",
        "Host: public.example.com\r\nHost: admin.example.com\r\n",
        "",
    ] {
        let raw = raw_http(
            a,
            format!("GET /x HTTP/1.1\r\n{host_lines}Connection: close\r\n\r\n"),
        )
        .await;
        if raw_status(&raw) != 400 {
            failures.push(format!(
                "{host_lines:?}: {}",
                raw.lines().next().unwrap_or("")
            ));
        }
    }
    for (host, path) in [
        ("admin.example.com", "/r-admin/x"),
        ("ADMIN.Example.COM.", "/r-admin/x"),
        ("admin.example.com:8080", "/r-admin/x"),
        ("127.0.0.1:8080", "/r-other/x"),
        ("[::1]:8080", "/r-other/x"),
        ("a_b.example.com", "/r-other/x"),
    ] {
        let raw = raw_get(a, "/x", host, "").await;
        if raw_status(&raw) != 200 || raw_echoed(&raw).path != path {
            failures.push(format!(
                "{host:?}: want {path}, got {}",
                raw.lines().next().unwrap_or("")
            ));
        }
    }
    // HTTP/1.0 may omit Host
    let raw = raw_http(a, "GET /x HTTP/1.0\r\n\r\n").await;
    if raw_status(&raw) != 200 {
        failures.push(format!(
            "HTTP/1.0 without Host: {}",
            raw.lines().next().unwrap_or("")
        ));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    proxy.shutdown().await;
}

/// The route `timeout` is the time the upstream may take to answer: an upload that keeps
/// flowing for longer than the timeout is not cut with a 504.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_timeout_does_not_cut_a_flowing_upload() {
    let up = echo_upstream().await;
    let proxy = start_proxy(&cfg(&route(
        "app",
        "path = \"/\"\ntimeout = \"1s\"",
        &up.url(""),
    )))
    .await;
    let stream = futures_util::stream::unfold(0u32, |i| async move {
        if i == 10 {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        Some((
            Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(bytes::Bytes::from_static(
                b"0123456789",
            ))),
            i + 1,
        ))
    });
    let body = http_body_util::BodyExt::boxed(http_body_util::StreamBody::new(stream));
    let req = Request::post("/upload")
        .header("host", "app.local")
        .body(body)
        .unwrap();
    let r = send(proxy.http(), req).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.echoed().body_len, 100);
    // once the body is complete, the upstream still gets only `timeout` to answer
    let t0 = Instant::now();
    let req = Request::post("/slow?ms=3000")
        .header("host", "app.local")
        .body(generated_body(1000))
        .unwrap();
    let r = send(proxy.http(), req).await;
    assert_eq!(r.status, 504);
    assert!(
        t0.elapsed() < Duration::from_millis(2000),
        "{:?}",
        t0.elapsed()
    );
    proxy.shutdown().await;
}

/// An upload that stalls (the client stops sending mid-body) gets 504 about a route
/// `timeout` after its last byte, not a connection held open forever; the next request on a
/// fresh connection is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_timeout_ends_a_stalled_upload() {
    let up = echo_upstream().await;
    let proxy = start_proxy(&cfg(&route(
        "app",
        "path = \"/\"\ntimeout = \"500ms\"",
        &up.url(""),
    )))
    .await;
    let mut s = TcpStream::connect(proxy.http()).await.unwrap();
    s.write_all(
        b"POST /upload HTTP/1.1\r\nHost: app.local\r\nContent-Length: 100\r\n\r\n0123456789",
    )
    .await
    .unwrap();
    let t0 = Instant::now();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(4), s.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out);
    assert!(
        text.starts_with("HTTP/1.1 504"),
        "{text:?} after {:?}",
        t0.elapsed()
    );
    assert!(text.contains("gateway_timeout"), "{text:?}");
    assert!(
        t0.elapsed() >= Duration::from_millis(400) && t0.elapsed() < Duration::from_millis(2500),
        "{:?}",
        t0.elapsed()
    );
    assert_eq!(get_path(proxy.http(), "/").await.status, 200);
    proxy.shutdown().await;
}

/// Kubernetes mounts secrets as `tls.crt -> ..data/tls.crt` with `..data` a symlink swapped
/// atomically to a new directory; the reload must see the swap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_cert_reload_through_kubernetes_symlink_swap() {
    use std::os::unix::fs::symlink;
    let up = echo_upstream().await;
    let ca = TestCa::new();
    let first = ca.issue("first");
    let second = ca.issue("second");
    let dir = temp_dir();
    let d = dir.path();
    for (v, leaf) in [("v1", &first), ("v2", &second)] {
        std::fs::create_dir(d.join(v)).unwrap();
        std::fs::write(d.join(v).join("tls.crt"), &leaf.cert_pem).unwrap();
        std::fs::write(d.join(v).join("tls.key"), &leaf.key_pem).unwrap();
    }
    symlink("v1", d.join("..data")).unwrap();
    symlink("..data/tls.crt", d.join("tls.crt")).unwrap();
    symlink("..data/tls.key", d.join("tls.key")).unwrap();
    let proxy = start_proxy_in(dir, &tls_cfg(&up.url(""), "")).await;
    let r = send_tls(proxy.https(), &ca.cert_pem, &[b"h2"], "/").await;
    assert_eq!(r.server_cert, first.cert_der);
    // atomic swap, as kubelet does it: new symlink, renamed over ..data
    let d = proxy.dir.path();
    symlink("v2", d.join("..data_tmp")).unwrap();
    std::fs::rename(d.join("..data_tmp"), d.join("..data")).unwrap();
    let t0 = Instant::now();
    loop {
        let r = send_tls(proxy.https(), &ca.cert_pem, &[b"h2"], "/").await;
        if r.server_cert == second.cert_der {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(4),
            "swap not seen after {:?}",
            t0.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    proxy.shutdown().await;
}

/// A raw upstream that answers every connection with `response` and then closes.
async fn raw_upstream(response: &'static [u8]) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(response).await;
                let _ = s.shutdown().await;
            });
        }
    });
    support::Server::from_task(addr, task)
}

/// An upstream that dies mid-body must not look like a complete response to the client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_upstream_body_is_not_passed_off_as_complete() {
    let fixed = raw_upstream(
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789012345678901234567890123456789",
    )
    .await;
    let chunked = raw_upstream(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n a\r\n0123456789\r\n5\r\nabcde",
    )
    .await;
    let mut c = cfg("");
    c += &route("fixed", "path = \"/fixed\"", &fixed.url(""));
    c += &route("chunked", "path = \"/chunked\"", &chunked.url(""));
    let proxy = start_proxy(&c).await;
    for path in ["/fixed", "/chunked"] {
        let stream = TcpStream::connect(proxy.http()).await.unwrap();
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(conn);
        let resp = sender
            .send_request(
                Request::get(path)
                    .header("host", "a")
                    .body(empty_body())
                    .unwrap(),
            )
            .await;
        let complete = match resp {
            Err(_) => false,
            Ok(r) => tokio::time::timeout(STEP, r.into_body().collect())
                .await
                .expect("body hung")
                .is_ok(),
        };
        assert!(
            !complete,
            "{path}: truncated upstream body reached the client as a complete response"
        );
    }
    proxy.shutdown().await;
}

/// A slow head on the second request of a keep-alive connection is not left hanging.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_second_request_on_keep_alive_is_closed() {
    let up = echo_upstream().await;
    let proxy = start_proxy(&cfg(&format!(
        "header_read_timeout = \"1s\"\n{}",
        route("app", "path = \"/\"", &up.url(""))
    )))
    .await;
    let mut s = TcpStream::connect(proxy.http()).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 65536];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\nX-Slow: ")
        .await
        .unwrap();
    let t0 = Instant::now();
    let mut rest = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(4), s.read_to_end(&mut rest)).await;
    assert!(r.is_ok(), "second slow head still open after 4 s");
    assert!(
        t0.elapsed() < Duration::from_secs(3),
        "closed only after {:?}",
        t0.elapsed()
    );
    eprintln!(
        "second slow head closed after {:?}: {:?}",
        t0.elapsed(),
        String::from_utf8_lossy(&rest)
    );
}

/// `portcullis run` with a bad config or an address in use exits non-zero with a message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_run_fails_cleanly() {
    let dir = temp_dir();
    let bad = write(
        &dir,
        "bad.toml",
        &GOOD.replace("listen = ", "listne = \"x\"\nlisten = "),
    );
    let out = cli(&["run", "--config", &bad]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("listne"), "{}", out.stderr);

    let taken = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = taken.local_addr().unwrap().port();
    let busy = write(
        &dir,
        "busy.toml",
        &GOOD.replace("127.0.0.1:8080", &format!("127.0.0.1:{port}")),
    );
    let out = cli(&["run", "--config", &busy]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains(&port.to_string()), "{}", out.stderr);
    drop(taken);
}

/// Uploads over HTTP/2 stream through to an HTTP/1.1 upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_upload_streams_to_http1_upstream() {
    let up = echo_upstream().await;
    let ca = TestCa::new();
    let (proxy, _) = tls_proxy(&ca, &up.url(""), "").await;
    let n = 32 * 1024 * 1024;
    let req = Request::post("/upload").body(generated_body(n)).unwrap();
    let r = send_tls_request(proxy.https(), &ca.cert_pem, &[b"h2"], req).await;
    assert_eq!(r.alpn.as_deref(), Some(&b"h2"[..]));
    assert_eq!(r.resp.status, 200, "{}", r.resp.text());
    let e = r.resp.echoed();
    assert_eq!(e.body_len, n);
    assert_eq!(e.version, "HTTP/1.1");
    proxy.shutdown().await;
}

/// HTTP/2 slowloris: a TLS connection that negotiates h2 but never completes a request is
/// closed after `header_read_timeout`, as an HTTP/1 one is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_connection_without_a_request_is_closed() {
    let up = echo_upstream().await;
    let ca = TestCa::new();
    let dir = temp_dir();
    write_tls_files(dir.path(), &ca, "h2");
    let c = tls_server_toml(
        "header_read_timeout = \"1s\"",
        "",
        &route("app", "path = \"/\"", &up.url("")),
    );
    let proxy = start_proxy_in(dir, &c).await;
    let cfg = tls_client(&ca.cert_pem, &[b"h2"]);
    let stream = TcpStream::connect(proxy.https()).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = tokio_rustls::TlsConnector::from(cfg)
        .connect(name, stream)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (_sender, conn) =
        hyper::client::conn::http2::handshake::<_, _, http_body_util::Empty<bytes::Bytes>>(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(tls),
        )
        .await
        .unwrap();
    let t0 = Instant::now();
    let closed = tokio::time::timeout(Duration::from_secs(4), conn).await;
    assert!(
        closed.is_ok(),
        "idle h2 connection without any request still open after 4 s"
    );
    assert!(
        t0.elapsed() >= Duration::from_millis(500),
        "closed too early: {:?}",
        t0.elapsed()
    );
    // a real h2 request on a fresh connection still works
    let r = send_tls(proxy.https(), &ca.cert_pem, &[b"h2"], "/ok").await;
    assert_eq!(r.resp.status, 200);
    proxy.shutdown().await;
}

/// Slowloris over TLS (HTTP/1.1): the 408 arrives inside the TLS session and the connection closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_over_tls_gets_408() {
    let up = echo_upstream().await;
    let ca = TestCa::new();
    let dir = temp_dir();
    write_tls_files(dir.path(), &ca, "slow");
    let c = tls_server_toml(
        "header_read_timeout = \"1s\"",
        "",
        &route("app", "path = \"/\"", &up.url("")),
    );
    let proxy = start_proxy_in(dir, &c).await;
    let cfg = tls_client(&ca.cert_pem, &[b"http/1.1"]);
    let stream = TcpStream::connect(proxy.https()).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(cfg)
        .connect(name, stream)
        .await
        .unwrap();
    tls.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
        .await
        .unwrap();
    tls.flush().await.unwrap();
    let mut out = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(3), tls.read_to_end(&mut out)).await;
    assert!(r.is_ok(), "TLS slowloris connection still open after 3 s");
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 408"), "{text:?}");
    proxy.shutdown().await;
}

/// Names configured only on one route (`[route.headers]`) or as the assertion header are
/// stripped on every route, including `none` routes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_route_and_assertion_header_names_are_stripped_everywhere() {
    let up = echo_upstream().await;
    let c = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[headers]\nassertion = \"X-Signed-Identity\"\naccess_token = \"X-Token\"\n\
[[route]]\nname = \"special\"\npath = \"/special\"\nupstream = \"{u}\"\nauth = \"none\"\n[route.headers]\nuser = \"X-Special-User\"\nroles = \"X-Special-Roles\"\n\
[[route]]\nname = \"app\"\npath = \"/\"\nupstream = \"{u}\"\nauth = \"none\"\n",
        u = up.url("")
    );
    let proxy = start_proxy(&c).await;
    for path in ["/", "/special"] {
        let raw = raw_get(
            proxy.http(),
            path,
            "app.local",
            "X-Special-User: forged\r\nx_special_roles: forged\r\nX-Signed-Identity: forged\r\nx_signed_identity: forged\r\nX-Token: forged\r\n",
        )
        .await;
        let e = raw_echoed(&raw);
        assert!(
            e.headers.iter().all(|(_, v)| v != "forged"),
            "{path}: {e:?}"
        );
    }
    proxy.shutdown().await;
}

/// Shutdown does not wait for a TLS connection that never completes its handshake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_does_not_wait_for_a_stalled_tls_handshake() {
    let up = echo_upstream().await;
    let ca = TestCa::new();
    let (proxy, _) = tls_proxy(&ca, &up.url(""), "").await;
    let _stalled = TcpStream::connect(proxy.https()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let t0 = Instant::now();
    proxy.shutdown().await;
    assert!(
        t0.elapsed() < Duration::from_secs(3),
        "shutdown waited {:?} for a stalled TLS handshake",
        t0.elapsed()
    );
}

/// Upstream connections are pooled: sequential requests from different clients reuse one
/// keep-alive connection, also after a streamed body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_connections_are_pooled() {
    let up = echo_upstream().await;
    let proxy = start_proxy(&cfg(&route("app", "path = \"/\"", &up.url("")))).await;
    let first = get_path(proxy.http(), "/a").await.echoed().peer;
    let req = Request::post("/b")
        .header("host", "a")
        .body(generated_body(1 << 20))
        .unwrap();
    let second = send(proxy.http(), req).await.echoed();
    assert_eq!(second.body_len, 1 << 20);
    let third = get_path(proxy.http(), "/c").await.echoed().peer;
    assert!(!first.is_empty());
    assert_eq!(
        first, second.peer,
        "second request opened a new upstream connection"
    );
    assert_eq!(
        first, third,
        "third request opened a new upstream connection"
    );
    proxy.shutdown().await;
}
