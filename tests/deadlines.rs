//! Deadlines over real sockets: the request-head deadline (slowloris, also over TLS and on
//! keep-alive connections, HTTP/2 connections that never send a request) answered `408`, the
//! upstream timeout answered `504`, and route timeouts that end stalled uploads but never cut a
//! request whose head arrived in time and whose body or answer keeps flowing.

mod support;
use support::*;

use http::Request;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Upstream slower than the route timeout → 504 at about the timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_timeout_is_504() {
    let up = echo_upstream().await;
    let mut c = server_toml("");
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
    let proxy = start_proxy(&server_toml(&format!(
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
    let proxy = start_proxy(&server_toml(&format!(
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

/// `header_read_timeout` bounds the request *head* only: a slow upstream answer and a slow
/// request body (longer than the timeout) still pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_deadline_does_not_cut_slow_bodies_or_slow_upstreams() {
    let up = echo_upstream().await;
    let proxy = start_proxy(&server_toml(&format!(
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

/// The route `timeout` is the time the upstream may take to answer: an upload that keeps
/// flowing for longer than the timeout is not cut with a 504.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_timeout_does_not_cut_a_flowing_upload() {
    let up = echo_upstream().await;
    let proxy = start_proxy(&server_toml(&route(
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
    let proxy = start_proxy(&server_toml(&route(
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

/// A slow head on the second request of a keep-alive connection is not left hanging.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_second_request_on_keep_alive_is_closed() {
    let up = echo_upstream().await;
    let proxy = start_proxy(&server_toml(&format!(
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
