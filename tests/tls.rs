//! TLS over real sockets: HTTP/1.1 and HTTP/2 by ALPN, certificate reload (also through a
//! Kubernetes-style symlink swap), the http→https redirect, https upstreams with a custom CA,
//! HTTP/2 identity stripping and header limits (and HTTP/1.1's by ALPN), and shutdown: a stalled
//! handshake, in-flight requests of each protocol, idle connections.

mod support;
use support::*;

use http::{Request, Version};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

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
    let mut c = server_toml("");
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

/// HTTP/1.1 chosen by ALPN is served with the listener's head limit: a 64 KiB header (above
/// the default 32 KiB) gets `431` inside the TLS session and the connection closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_by_alpn_oversized_header_is_431() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let up = echo_upstream().await;
    let ca = TestCa::new();
    let (proxy, _) = tls_proxy(&ca, &up.url(""), "").await;
    let cfg = tls_client(&ca.cert_pem, &[b"http/1.1"]);
    let stream = TcpStream::connect(proxy.https()).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(cfg)
        .connect(name, stream)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let head = format!(
        "GET / HTTP/1.1\r\nHost: localhost\r\nX-Big: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    // The server may answer and close before it has read everything.
    let _ = tls.write_all(head.as_bytes()).await;
    let _ = tls.flush().await;
    let mut out = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut out)).await;
    assert!(r.is_ok(), "connection still open after 5 s");
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 431"), "{text:?}");
    proxy.shutdown().await;
}

/// Shutdown does not wait for idle TLS connections: an HTTP/2 one and an HTTP/1.1 keep-alive
/// one (each chosen by ALPN), both open with no request in flight, are closed at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_does_not_wait_for_idle_tls_connections() {
    let up = echo_upstream().await;
    let ca = TestCa::new();
    let (proxy, _) = tls_proxy(&ca, &up.url(""), "").await;
    let addr = proxy.https();
    let connect = |alpn: &'static [u8]| {
        let cfg = tls_client(&ca.cert_pem, &[alpn]);
        async move {
            let stream = TcpStream::connect(addr).await.unwrap();
            let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
            tokio_rustls::TlsConnector::from(cfg)
                .connect(name, stream)
                .await
                .unwrap()
        }
    };
    let uri = format!("https://localhost:{}/idle", addr.port());
    let (mut h2, h2_conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(connect(b"h2").await),
    )
    .await
    .unwrap();
    let h2_conn = tokio::spawn(h2_conn);
    let req = Request::get(uri.as_str()).body(empty_body()).unwrap();
    assert_eq!(h2.send_request(req).await.unwrap().status(), 200);
    let (mut h1, h1_conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(
        connect(b"http/1.1").await,
    ))
    .await
    .unwrap();
    let h1_conn = tokio::spawn(h1_conn);
    let req = Request::get("/idle")
        .header("host", "localhost")
        .body(empty_body())
        .unwrap();
    let resp = h1.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    drop(resp);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let t0 = Instant::now();
    proxy.shutdown().await;
    assert!(
        t0.elapsed() < Duration::from_secs(3),
        "shutdown waited {:?} for idle connections",
        t0.elapsed()
    );
    // Both connections were closed by the proxy.
    for conn in [h2_conn, h1_conn] {
        let ended = tokio::time::timeout(Duration::from_secs(3), conn).await;
        assert!(ended.is_ok(), "a client connection is still open");
    }
}

/// Graceful shutdown on the TLS listener: a request in flight on an HTTP/2 connection, on an
/// HTTP/1.1 one (both by ALPN) and on one that offered no ALPN each completes with its answer,
/// and shutdown then ends promptly (each connection is told once its task is woken).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_finishes_in_flight_requests_of_every_protocol() {
    let up = echo_upstream().await;
    let ca = TestCa::new();
    let (proxy, _) = tls_proxy(&ca, &up.url(""), "").await;
    let addr = proxy.https();
    let mut in_flight = Vec::new();
    const H2: &[&[u8]] = &[b"h2"];
    const H1: &[&[u8]] = &[b"http/1.1"];
    for (alpn, path) in [
        (H2, "/h2/slow?ms=1500"),
        (H1, "/h1/slow?ms=1500"),
        (&[][..], "/none/slow?ms=1500"),
    ] {
        let pem = ca.cert_pem.clone();
        in_flight.push(tokio::spawn(async move {
            (path, send_tls(addr, &pem, alpn, path).await)
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let t0 = Instant::now();
    let stopping = tokio::spawn(proxy.shutdown());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "new connection accepted during shutdown"
    );
    let early: Vec<bool> = in_flight.iter().map(|t| t.is_finished()).collect();
    assert_eq!(
        early, [false; 3],
        "a request ended before its answer was due"
    );
    for t in in_flight {
        let (path, r) = t.await.unwrap();
        assert_eq!(r.resp.status, 200, "{path}: {}", r.resp.text());
        let want = path.split('?').next().unwrap();
        assert_eq!(r.resp.echoed().path, want);
    }
    tokio::time::timeout(Duration::from_secs(10), stopping)
        .await
        .expect("shutdown ended")
        .unwrap();
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "shutdown took {:?}",
        t0.elapsed()
    );
}

/// One TLS connection with `cfg` (its session store carries tickets between calls), one
/// HTTP/1.1 request read to the end: how the handshake went, and the response's status line.
async fn handshake_kind(
    addr: std::net::SocketAddr,
    cfg: &std::sync::Arc<rustls::ClientConfig>,
) -> (Option<rustls::HandshakeKind>, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let stream = TcpStream::connect(addr).await.expect("connect");
    let mut tls = tokio_rustls::TlsConnector::from(cfg.clone())
        .connect(name, stream)
        .await
        .expect("TLS handshake");
    let kind = tls.get_ref().1.handshake_kind();
    tls.write_all(b"GET / HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut answer = Vec::new();
    let _ = tls.read_to_end(&mut answer).await;
    let text = String::from_utf8_lossy(&answer);
    (kind, text.lines().next().unwrap_or("").to_string())
}

/// Session resumption by stateless tickets: a client that comes back resumes (no certificate
/// signature), also after more clients than rustls's server-side session cache holds (256) got
/// tickets in between — the server keeps no state per client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_sessions_resume_by_stateless_ticket() {
    let up = echo_upstream().await;
    let ca = TestCa::new();
    let (proxy, _leaf) = tls_proxy(&ca, &up.url(""), "").await;
    let first = tls_client(&ca.cert_pem, &[b"http/1.1"]);
    let (kind, status) = handshake_kind(proxy.https(), &first).await;
    assert_eq!(kind, Some(rustls::HandshakeKind::Full));
    assert_eq!(status, "HTTP/1.1 200 OK");
    let (kind, status) = handshake_kind(proxy.https(), &first).await;
    assert_eq!(
        kind,
        Some(rustls::HandshakeKind::Resumed),
        "a returning client resumes its session"
    );
    assert_eq!(status, "HTTP/1.1 200 OK");
    // 300 other clients, each with its own session store, get tickets too
    for _ in 0..300 {
        let other = tls_client(&ca.cert_pem, &[b"http/1.1"]);
        let (kind, _) = handshake_kind(proxy.https(), &other).await;
        assert_eq!(kind, Some(rustls::HandshakeKind::Full));
    }
    let (kind, status) = handshake_kind(proxy.https(), &first).await;
    assert_eq!(
        kind,
        Some(rustls::HandshakeKind::Resumed),
        "the first client still resumes: its ticket, not a server-side cache entry, holds the session"
    );
    assert_eq!(status, "HTTP/1.1 200 OK");
    proxy.shutdown().await;
}
