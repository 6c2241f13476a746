//! Routing and forwarding over real sockets on loopback: the route table (host, path, methods),
//! path normalization end to end, `Host` and absolute-form targets, prefix stripping, what is
//! never forwarded (`/.auth/*`, conflicting framing, a truncated upstream body), upstream errors,
//! `Expect: 100-continue`, 1 GiB each way with flat memory, and pooled upstream connections.

mod support;
use support::*;

use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Each route forwards to a different base path on the echo upstream, so the path the upstream
/// received names the route that answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_table() {
    let up = echo_upstream().await;
    let u = |b: &str| up.url(b);
    let mut c = server_toml("");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn normalization_table() {
    let up = echo_upstream().await;
    let mut c = server_toml("");
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

/// `preserve_host` true (the default) sends the client's Host; false sends the upstream's.
/// X-Forwarded-Host always carries the client's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preserve_host() {
    let up = echo_upstream().await;
    let mut c = server_toml("");
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
    let mut c = server_toml("");
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

const GIB: u64 = 1 << 30;

/// 1 GiB up and 1 GiB down through the real binary with flat memory: the proxy's peak RSS
/// (VmHWM) stays under 64 MiB, so bodies are streamed, not buffered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_one_gib_each_way_with_flat_memory() {
    let up = echo_upstream().await;
    let dir = temp_dir();
    let path = dir.path().join("portcullis.toml");
    std::fs::write(
        &path,
        server_toml(&route("app", "path = \"/\"", &up.url(""))),
    )
    .unwrap();
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

/// Upstream refused → 502 with a short JSON body that does not leak the address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_refused_is_502() {
    let closed = closed_port().await;
    let proxy = start_proxy(&server_toml(&route(
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

/// A request with both Content-Length and Transfer-Encoding is refused or re-framed; the
/// upstream never sees both (request smuggling).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicting_framing_is_not_forwarded() {
    let up = echo_upstream().await;
    let proxy = start_proxy(&server_toml(&route("app", "path = \"/\"", &up.url("")))).await;
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
    let mut c = server_toml("");
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

/// An absolute-form request target routes by its authority, and that authority is the Host the
/// upstream sees (the Host header is ignored, RFC 9112 §3.2.2).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absolute_form_target_routes_by_its_authority() {
    let up = echo_upstream().await;
    let mut c = server_toml("");
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

/// `Expect: 100-continue` uploads (curl does this above 1 MiB): the client gets `100 Continue`,
/// sends the body, and the upstream receives all of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_100_continue_upload() {
    let up = echo_upstream().await;
    let proxy = start_proxy(&server_toml(&route("app", "path = \"/\"", &up.url("")))).await;
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

/// Paths under the auth prefix belong to the proxy and are never forwarded, however they are
/// spelled; look-alikes outside it are forwarded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_prefix_is_never_forwarded() {
    let up = echo_upstream().await;
    let proxy = start_proxy(&server_toml(&route("app", "path = \"/\"", &up.url("")))).await;
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

/// A Host the proxy and an upstream could read differently is refused before routing (400):
/// userinfo, a path, a bad port, spaces, several Host headers, none on HTTP/1.1. Well-formed
/// spellings route as the host they name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_host_is_refused_before_routing() {
    let up = echo_upstream().await;
    let mut c = server_toml("");
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

/// A raw upstream that answers every connection with `response` and then closes.
async fn raw_upstream_once(response: &'static [u8]) -> Server {
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
    let fixed = raw_upstream_once(
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789012345678901234567890123456789",
    )
    .await;
    let chunked = raw_upstream_once(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n a\r\n0123456789\r\n5\r\nabcde",
    )
    .await;
    let mut c = server_toml("");
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

/// Upstream connections are pooled: sequential requests from different clients reuse one
/// keep-alive connection, also after a streamed body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_connections_are_pooled() {
    let up = echo_upstream().await;
    let proxy = start_proxy(&server_toml(&route("app", "path = \"/\"", &up.url("")))).await;
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
