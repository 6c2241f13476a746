//! gRPC through a bearer route, with a real gRPC server and client (PyPI grpcio, stubs compiled
//! at test time) and the real OpenID provider: every call shape with identity metadata and
//! trailers, over h2c and TLS (h2 by ALPN) from the client and to `h2c://` and `https://` +
//! `upstream_protocol` upstreams; the proxy's refusals as gRPC status; `grpc-timeout`; gRPC-Web
//! passing through as HTTP; a 100 MB server stream with flat proxy memory.

mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use serde_json::Value;
use support::oidc::OidcProvider;
use support::*;

const SERVICE: &str = "/portcullis.test.Echo";

/// A bearer route for the Echo service (`reader` role required) to `upstream` (with `extra`
/// keys), and a bearer route `/web` to `web` (an HTTP/1.1 echo upstream).
fn config(op: &OidcProvider, upstream: &str, extra: &str, web: &str, tls: bool) -> String {
    let issuer = &op.issuer;
    let tls = if tls {
        "[server.tls]\nlisten = \"127.0.0.1:0\"\ncert = \"tls.crt\"\nkey = \"tls.key\"\n"
    } else {
        ""
    };
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
{tls}
[providers.op]
issuer = "{issuer}"
audiences = ["portcullis-api"]
[providers.op.introspection]
client_id = "introspector-basic"
client_secret = "introspector-secret"

[[route]]
name = "grpc"
path = "{SERVICE}"
upstream = "{upstream}"
{extra}
auth = "bearer"
require_roles = ["reader"]

[[route]]
name = "web"
path = "/web"
upstream = "{web}"
auth = "bearer"
"#
    )
}

/// One unary call with `token` to `addr`: the client's JSON line.
async fn unary(stubs: &Stubs, addr: &str, token: Option<&str>) -> Value {
    let target = Target {
        addr: addr.to_string(),
        ca: None,
        token,
    };
    grpc_client(stubs, &target, "unary", &[], 1).await.remove(0)
}

fn by_call<'a>(lines: &'a [Value], call: &str) -> &'a Value {
    lines
        .iter()
        .find(|l| l["call"] == call)
        .unwrap_or_else(|| panic!("no {call} in {lines:?}"))
}

/// The four call shapes succeeded; the server saw the real identity as lower-case metadata (the
/// forged one replaced) and the client got the server's trailing metadata.
fn assert_calls_passed(lines: &[Value], how: &str) {
    let unary = by_call(lines, "unary");
    assert_eq!(unary["code"], "OK", "{how}: {unary}");
    let md = &unary["metadata"];
    assert_eq!(md["x-forwarded-user"], "api-reader", "{how}: {md}");
    assert_eq!(md["x-forwarded-roles"], "reader", "{how}: {md}");
    assert_eq!(unary["trailing"]["x-trailer"], "kept", "{how}: {unary}");
    assert_eq!(unary["trailing"]["x-trailer-bin"], "0001", "{how}: {unary}");
    // Attack (review of issue 15): a cookie set in the answer's trailers does not get through
    // (the server sends `set-cookie: portcullis=planted` there).
    assert!(
        unary["trailing"].get("set-cookie").is_none(),
        "{how}: {unary}"
    );
    let ss = by_call(lines, "server_stream");
    assert_eq!(
        (ss["code"].as_str(), ss["total"].as_u64()),
        (Some("OK"), Some(50)),
        "{how}: {ss}"
    );
    assert_eq!(ss["trailing"]["x-trailer"], "stream-end", "{how}: {ss}");
    let cs = by_call(lines, "client_stream");
    assert_eq!(
        (cs["code"].as_str(), cs["total"].as_u64()),
        (Some("OK"), Some(700)),
        "{how}: {cs}"
    );
    assert_eq!(
        cs["metadata"]["x-forwarded-user"], "api-reader",
        "{how}: {cs}"
    );
    assert_eq!(cs["trailing"]["x-trailer"], "sum-end", "{how}: {cs}");
    let bidi = by_call(lines, "bidi");
    assert_eq!(bidi["code"], "OK", "{how}: {bidi}");
    assert_eq!(
        bidi["words"],
        serde_json::json!(["ONE", "TWO", "THREE"]),
        "{how}"
    );
}

/// Every call shape through a bearer route to an `h2c://` upstream, from a client speaking
/// h2c to the plain listener and h2 (ALPN) to the TLS listener.
#[tokio::test]
async fn every_call_shape_over_h2c_and_tls() {
    let stubs = Stubs::compile();
    let server = GrpcServer::start(&stubs, None);
    let op = OidcProvider::start(&[("LOG_REQUESTS", "0")]);
    let web = echo_upstream().await;
    let dir = temp_dir();
    let ca = TestCa::new();
    write_tls_files(dir.path(), &ca, "proxy");
    let ca_file = dir.path().join("client-ca.pem");
    std::fs::write(&ca_file, &ca.cert_pem).unwrap();
    let upstream = format!("h2c://127.0.0.1:{}", server.port);
    let p = start_proxy_in(dir, &config(&op, &upstream, "", &web.url(""), true)).await;
    let token = op.jwt("api-reader").await;

    let plain = Target {
        addr: p.http().to_string(),
        ca: None,
        token: Some(&token),
    };
    let lines = grpc_client(&stubs, &plain, "calls", &[], 4).await;
    assert_calls_passed(&lines, "h2c client");

    let tls = Target {
        addr: format!("localhost:{}", p.https().port()),
        ca: Some(&ca_file),
        token: Some(&token),
    };
    let lines = grpc_client(&stubs, &tls, "calls", &[], 4).await;
    assert_calls_passed(&lines, "TLS client");
}

/// An `https://` upstream with `upstream_protocol = "h2"` (ALPN must choose h2) and `"auto"`.
#[tokio::test]
async fn https_upstream_negotiates_h2_by_alpn() {
    let stubs = Stubs::compile();
    let dir = temp_dir();
    let ca = TestCa::new();
    let leaf = ca.issue("grpc-upstream");
    let cert = write_file(&dir, "up.crt", &leaf.cert_pem);
    let key = write_file(&dir, "up.key", &leaf.key_pem);
    write_file(&dir, "up-ca.pem", &ca.cert_pem);
    let server = GrpcServer::start(&stubs, Some((cert.as_ref(), key.as_ref())));
    let op = OidcProvider::start(&[("LOG_REQUESTS", "0")]);
    let web = echo_upstream().await;
    let token = op.jwt("api-reader").await;
    let upstream = format!("https://localhost:{}", server.port);
    for proto in ["h2", "auto"] {
        let d = temp_dir();
        std::fs::copy(dir.path().join("up-ca.pem"), d.path().join("up-ca.pem")).unwrap();
        let extra = format!("upstream_protocol = \"{proto}\"\nupstream_ca_file = \"up-ca.pem\"");
        let p = start_proxy_in(d, &config(&op, &upstream, &extra, &web.url(""), false)).await;
        let target = Target {
            addr: p.http().to_string(),
            ca: None,
            token: Some(&token),
        };
        let lines = grpc_client(&stubs, &target, "calls", &[], 4).await;
        assert_calls_passed(&lines, proto);
    }
}

/// `upstream_protocol = "h2"` to an upstream that only speaks HTTP/1.1 (ALPN does not choose
/// h2): a 502, as gRPC UNAVAILABLE to a gRPC caller; `"auto"` falls back to HTTP/1.1.
#[tokio::test]
async fn h2_required_but_refused_by_alpn_is_unavailable() {
    let ca = TestCa::new();
    let leaf = ca.issue("h1-only");
    let up = tls_echo_upstream(&leaf).await;
    let op = OidcProvider::start(&[("LOG_REQUESTS", "0")]);
    let token = op.jwt("api-reader").await;
    let web = echo_upstream().await;
    for (proto, want) in [("h2", "14"), ("auto", "200")] {
        let dir = temp_dir();
        write_file(&dir, "up-ca.pem", &ca.cert_pem);
        let extra = format!("upstream_protocol = \"{proto}\"\nupstream_ca_file = \"up-ca.pem\"");
        let upstream = up.url("").replace("http://127.0.0.1", "https://localhost");
        let p = start_proxy_in(dir, &config(&op, &upstream, &extra, &web.url(""), false)).await;
        let req = Request::post(format!("http://{}{SERVICE}/Who", p.http()))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .header("authorization", format!("Bearer {token}"))
            .body(Full::new(Bytes::from_static(b"\0\0\0\0\0")))
            .unwrap();
        let (resp, body, _) = h2_call(p.http(), req).await;
        assert_eq!(resp.status(), 200, "{proto}");
        match want {
            "14" => {
                assert_eq!(resp.headers()["grpc-status"], "14", "{proto}: {resp:?}");
                assert_eq!(resp.headers()["content-type"], "application/grpc");
            }
            // the HTTP/1.1 echo answered, and got no TE header (kept for HTTP/2 only)
            _ => {
                assert!(resp.headers().get("grpc-status").is_none(), "{resp:?}");
                let e: Echoed = serde_json::from_slice(&body).unwrap();
                assert_eq!(e.version, "HTTP/1.1", "{e:?}");
                assert!(e.header("te").is_none(), "{e:?}");
                assert_eq!(e.header("x-forwarded-user"), Some("api-reader"));
            }
        }
    }
}

/// The proxy's own answers to a gRPC call are HTTP 200 trailers-only gRPC status with a
/// message: no token → UNAUTHENTICATED, a bad one → UNAUTHENTICATED, a missing role →
/// PERMISSION_DENIED, the provider down → UNAVAILABLE, the upstream down → UNAVAILABLE.
#[tokio::test]
async fn refusals_are_grpc_status() {
    let stubs = Stubs::compile();
    let server = GrpcServer::start(&stubs, None);
    let mut op = OidcProvider::start(&[("LOG_REQUESTS", "0")]);
    let web = echo_upstream().await;
    let upstream = format!("h2c://127.0.0.1:{}", server.port);
    let p = start_proxy(&config(&op, &upstream, "", &web.url(""), false)).await;
    let noroles = op.jwt("api-noroles").await;
    let opaque = op
        .token("api-reader", Some("urn:portcullis:api:opaque"))
        .await;
    let addr = p.http().to_string();
    let call = |token| unary(&stubs, &addr, token);

    let r = call(None).await;
    assert_eq!(r["code"], "UNAUTHENTICATED", "{r}");
    assert!(
        r["details"]
            .as_str()
            .unwrap()
            .contains("bearer token is required"),
        "{r}"
    );
    let r = call(Some("not-a-token")).await;
    assert_eq!(r["code"], "UNAUTHENTICATED", "{r}");
    assert!(!r["details"].as_str().unwrap().is_empty(), "{r}");
    let r = call(Some(&noroles)).await;
    assert_eq!(r["code"], "PERMISSION_DENIED", "{r}");
    assert!(r["details"].as_str().unwrap().contains("reader"), "{r}");

    // The raw answer: HTTP 200, one HEADERS frame ending the stream, no body, no trailers.
    let req = Request::post(format!("http://{}{SERVICE}/Who", p.http()))
        .header("content-type", "application/grpc+proto")
        .header("te", "trailers")
        .body(Full::new(Bytes::from_static(b"\0\0\0\0\0")))
        .unwrap();
    let (resp, body, trailers) = h2_call(p.http(), req).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["grpc-status"], "16");
    assert_eq!(resp.headers()["content-type"], "application/grpc");
    assert_eq!(
        resp.headers()["grpc-message"],
        "a bearer token is required (Authorization: Bearer %E2%80%A6)"
    );
    assert!(
        body.is_empty() && trailers.is_none(),
        "{body:?} {trailers:?}"
    );

    // provider down: an opaque token needs introspection
    op.kill();
    let r = call(Some(&opaque)).await;
    assert_eq!(r["code"], "UNAVAILABLE", "{r}");
    assert!(
        r["details"]
            .as_str()
            .unwrap()
            .contains("identity provider is unavailable"),
        "{r}"
    );
}

/// The upstream refusing connections: a gRPC caller gets UNAVAILABLE, not a bare 502.
#[tokio::test]
async fn upstream_down_is_unavailable() {
    let stubs = Stubs::compile();
    let op = OidcProvider::start(&[("LOG_REQUESTS", "0")]);
    let web = echo_upstream().await;
    let closed = closed_port().await;
    let p = start_proxy(&config(
        &op,
        &format!("h2c://{closed}"),
        "",
        &web.url(""),
        false,
    ))
    .await;
    let token = op.jwt("api-reader").await;
    let target = Target {
        addr: p.http().to_string(),
        ca: None,
        token: Some(&token),
    };
    let r = grpc_client(&stubs, &target, "unary", &[], 1)
        .await
        .remove(0);
    assert_eq!(r["code"], "UNAVAILABLE", "{r}");
    assert_eq!(r["details"], "the upstream service is unreachable", "{r}");
}

/// `grpc-timeout` reaches the server (its deadline is the caller's), and bounds the proxy's
/// wait for an upstream that does not answer: DEADLINE_EXCEEDED after the caller's 300 ms,
/// not the route's 30 s.
#[tokio::test]
async fn grpc_timeout_propagates_and_bounds_the_wait() {
    let stubs = Stubs::compile();
    let server = GrpcServer::start(&stubs, None);
    let op = OidcProvider::start(&[("LOG_REQUESTS", "0")]);
    let web = echo_upstream().await;
    let p = start_proxy(&config(
        &op,
        &format!("h2c://127.0.0.1:{}", server.port),
        "timeout = \"30s\"",
        &web.url(""),
        false,
    ))
    .await;
    let token = op.jwt("api-reader").await;
    let target = Target {
        addr: p.http().to_string(),
        ca: None,
        token: Some(&token),
    };
    let r = grpc_client(&stubs, &target, "unary", &["0", "5"], 1)
        .await
        .remove(0);
    assert_eq!(r["code"], "OK", "{r}");
    let left = r["time_remaining"].as_f64().unwrap();
    assert!(left > 0.0 && left <= 5.0, "the server's deadline: {left} s");

    // A silent HTTP/2 upstream (accepts, never answers).
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let p = start_proxy(&config(
        &op,
        &format!("h2c://{silent_addr}"),
        "timeout = \"30s\"",
        &web.url(""),
        false,
    ))
    .await;
    let req = Request::post(format!("http://{}{SERVICE}/Who", p.http()))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("grpc-timeout", "300m")
        .header("authorization", format!("Bearer {token}"))
        .body(Full::new(Bytes::from_static(b"\0\0\0\0\0")))
        .unwrap();
    let started = Instant::now();
    let (resp, _, _) = h2_call(p.http(), req).await;
    let took = started.elapsed();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["grpc-status"], "4", "{resp:?}");
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(10),
        "answered after {took:?}"
    );
}

/// gRPC-Web is HTTP to the proxy: refusals are HTTP 401 with JSON, and an allowed call reaches
/// an HTTP/1.1 upstream with its body and content type unchanged.
#[tokio::test]
async fn grpc_web_passes_through_unchanged() {
    let op = OidcProvider::start(&[("LOG_REQUESTS", "0")]);
    let web = echo_upstream().await;
    let p = start_proxy(&config(&op, "h2c://127.0.0.1:9", "", &web.url(""), false)).await;
    let token = op.jwt("api-reader").await;
    let body = "\0\0\0\0\u{5}hello";
    let (st, headers, text) = http_req(
        "POST",
        &format!("http://{}/web/portcullis.test.Echo/Who", p.http()),
        &[("content-type", "application/grpc-web+proto")],
        Some(body.to_string()),
    )
    .await;
    assert_eq!(st, 401, "{text}");
    assert!(headers.get("grpc-status").is_none(), "{headers:?}");
    assert!(text.contains("\"error\""), "{text}");
    let (st, _, text) = http_req(
        "POST",
        &format!("http://{}/web/portcullis.test.Echo/Who", p.http()),
        &[
            ("content-type", "application/grpc-web+proto"),
            ("x-grpc-web", "1"),
            ("authorization", &format!("Bearer {token}")),
        ],
        Some(body.to_string()),
    )
    .await;
    assert_eq!(st, 200, "{text}");
    let e: Echoed = serde_json::from_str(&text).unwrap();
    assert_eq!(e.header("content-type"), Some("application/grpc-web+proto"));
    assert_eq!(e.header("x-grpc-web"), Some("1"));
    assert_eq!(e.body_len, body.len() as u64);
}

/// A 100 MB server stream through the proxy (the real binary) to a client that stalls for a
/// while: the proxy's memory stays flat (bounded by flow control), and every byte arrives
/// with the trailers.
#[tokio::test]
async fn a_100_mb_stream_keeps_proxy_memory_flat() {
    let stubs = Stubs::compile();
    let server = GrpcServer::start(&stubs, None);
    let op = OidcProvider::start(&[("LOG_REQUESTS", "0")]);
    let dir = temp_dir();
    let cfg = config(
        &op,
        &format!("h2c://127.0.0.1:{}", server.port),
        "",
        "http://127.0.0.1:9",
        false,
    );
    let path = dir.path().join("portcullis.toml");
    std::fs::write(&path, cfg).unwrap();
    let proxy = BinaryProxy::start(&path);
    let token = op.jwt("api-reader").await;
    let target = Target {
        addr: proxy.http_addr.to_string(),
        ca: None,
        token: Some(&token),
    };
    // warm-up: keys fetched, connection open
    let r = grpc_client(&stubs, &target, "unary", &[], 1)
        .await
        .remove(0);
    assert_eq!(r["code"], "OK", "{r}");
    let before = proxy.status_kib("VmRSS");

    const COUNT: u64 = 1600;
    const SIZE: u64 = 64 * 1024;
    let (guard, rx) = grpc_client_spawn(
        &stubs,
        &target,
        "big",
        &[&COUNT.to_string(), &SIZE.to_string(), "3"],
    );
    let (stalled_rss, done) = tokio::task::spawn_blocking(move || {
        let _guard = guard;
        let first = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("stalled line");
        assert_eq!(first["stalled"], true, "{first}");
        std::thread::sleep(Duration::from_secs(2));
        let stalled = std::fs::read_to_string(format!("/proc/{}/status", proxy.pid))
            .unwrap()
            .lines()
            .find_map(|l| {
                l.strip_prefix("VmRSS:").map(|v| {
                    v.trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<u64>()
                        .unwrap()
                })
            })
            .unwrap();
        let done = rx
            .recv_timeout(Duration::from_secs(240))
            .expect("done line");
        (stalled, (done, proxy))
    })
    .await
    .unwrap();
    let (done, proxy) = done;
    assert_eq!(done["code"], "OK", "{done}");
    assert_eq!(done["total"].as_u64(), Some(COUNT * SIZE), "{done}");
    assert_eq!(done["trailing"]["x-trailer"], "stream-end", "{done}");
    let after = proxy.status_kib("VmRSS");
    eprintln!(
        "proxy RSS: before {before} KiB, client stalled {stalled_rss} KiB, after {after} KiB"
    );
    // 100 MB went through; the proxy holds at most a stream window (1 MiB) and its buffers.
    assert!(
        stalled_rss.saturating_sub(before) < 24 * 1024,
        "RSS grew from {before} to {stalled_rss} KiB while the client stalled"
    );
    assert!(
        after.saturating_sub(before) < 32 * 1024,
        "RSS grew from {before} to {after} KiB over a 100 MB stream"
    );
}

/// Trailers pass both ways through an `h2c://` upstream: the request's reach the upstream, the
/// upstream's reach the client (HTTP/2 client, HTTP/2 upstream).
#[tokio::test]
async fn trailers_pass_both_ways() {
    let up = h2c_trailer_echo().await;
    let upstream = up.url("").replace("http://", "h2c://");
    let p = start_proxy(&server_toml(&route("t", "path = \"/\"", &upstream))).await;
    let mut trailers = http::HeaderMap::new();
    trailers.insert("x-checksum", "abc123".parse().unwrap());
    let frames = futures_util::stream::iter([
        Ok::<_, std::convert::Infallible>(http_body::Frame::data(Bytes::from_static(b"hello "))),
        Ok(http_body::Frame::data(Bytes::from_static(b"world"))),
        Ok(http_body::Frame::trailers(trailers)),
    ]);
    let req = Request::post(format!("http://{}/upload", p.http()))
        .header("te", "trailers")
        .body(http_body_util::StreamBody::new(frames))
        .unwrap();
    let (resp, body, trailers) = h2_call(p.http(), req).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(&body[..], b"got 11 bytes");
    let trailers = trailers.expect("the upstream's trailers");
    assert_eq!(trailers["x-got-x-checksum"], "abc123", "{trailers:?}");
    assert_eq!(trailers["grpc-status"], "0");
}

/// The client's request trailers are filtered like its headers: identity headers, every
/// `X-Auth-Request-*`, `Remote-User`, the forwarding headers (untrusted peer), `Authorization`
/// and `Cookie` sent as trailers never reach an HTTP/2 upstream; an ordinary trailer still does.
#[tokio::test]
async fn forged_identity_in_request_trailers_never_reaches_the_upstream() {
    let up = h2c_trailer_echo().await;
    let upstream = up.url("").replace("http://", "h2c://");
    let p = start_proxy(&server_toml(&route("t", "path = \"/\"", &upstream))).await;
    let mut trailers = http::HeaderMap::new();
    trailers.insert("x-checksum", "abc123".parse().unwrap());
    for name in [
        "x-forwarded-user",
        "x-forwarded-email",
        "x-forwarded-groups",
        "x-forwarded_user",
        "x-auth-request-user",
        "remote-user",
        "x-forwarded-for",
        "x-real-ip",
        "forwarded",
        "x-portcullis-assertion",
        "authorization",
        "cookie",
    ] {
        trailers.append(name, "admin".parse().unwrap());
    }
    trailers.append("x-forwarded-user", "root".parse().unwrap());
    let frames = futures_util::stream::iter([
        Ok::<_, std::convert::Infallible>(http_body::Frame::data(Bytes::from_static(b"hello"))),
        Ok(http_body::Frame::trailers(trailers)),
    ]);
    let req = Request::post(format!("http://{}/upload", p.http()))
        .header("te", "trailers")
        .body(http_body_util::StreamBody::new(frames))
        .unwrap();
    let (resp, body, trailers) = h2_call(p.http(), req).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(&body[..], b"got 5 bytes");
    let trailers = trailers.expect("the upstream's trailers");
    assert_eq!(trailers["x-got-x-checksum"], "abc123", "{trailers:?}");
    let leaked: Vec<_> = trailers
        .keys()
        .filter(|k| k.as_str() != "x-got-x-checksum" && k.as_str().starts_with("x-got-"))
        .collect();
    assert!(
        leaked.is_empty(),
        "forged trailers reached the upstream: {trailers:?}"
    );
}
