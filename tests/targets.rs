//! Several upstream targets per route and the per-route `read_timeout`, over real sockets:
//! round robin across live targets; a refusing target is ejected (metrics show it) and comes
//! back once it listens again; a target killed under concurrent load fails no idempotent
//! request; a POST whose body started streaming is never sent twice, while one whose
//! connection was refused is; `/readyz` names a route whose targets are all ejected (without
//! failing) and such a route still tries a target; `read_timeout` cuts a stalled body and
//! only on routes that set it (also after a reload); `check` points at the bad list element.
//! Helpers: `tests/support/`.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use support::*;

fn config(upstreams: &[String], extra: &str) -> String {
    let list = upstreams
        .iter()
        .map(|u| format!("\"{u}\""))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\ntimeout = \"5s\"\n\
         \n[[route]]\nname = \"app\"\npath = \"/\"\nupstream = [{list}]\nauth = \"none\"\n{extra}"
    )
}

fn full_body(text: &'static str) -> TestBody {
    Full::new(Bytes::from_static(text.as_bytes())).boxed()
}

fn http(addr: SocketAddr) -> String {
    format!("http://{addr}")
}

async fn metrics(p: &TestProxy) -> String {
    http_req("GET", &format!("http://{}/metrics", p.admin()), &[], None)
        .await
        .2
}

/// The value of the series `name{route="app",target="http://addr"}`.
async fn target_metric(p: &TestProxy, name: &str, addr: SocketAddr) -> Option<f64> {
    let text = metrics(p).await;
    let series = format!("{name}{{route=\"app\",target=\"http://{addr}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&series))
        .and_then(|v| v.trim().parse().ok())
}

async fn served_by(p: &TestProxy, path: &str) -> (u16, String) {
    let r = get_path(p.http(), path).await;
    let by = r
        .headers
        .get("x-served-by")
        .map(|v| v.to_str().unwrap_or("").to_string())
        .unwrap_or_default();
    (r.status.as_u16(), by)
}

/// Round robin: requests alternate between two live targets.
#[tokio::test]
async fn requests_are_balanced_across_targets() {
    let a = echo_upstream_at("127.0.0.1:0".parse().unwrap()).await;
    let b = echo_upstream_at("127.0.0.1:0".parse().unwrap()).await;
    let p = start_proxy(&config(&[http(a.addr), http(b.addr)], "")).await;
    let (mut to_a, mut to_b) = (0, 0);
    for _ in 0..20 {
        let (status, by) = served_by(&p, "/x").await;
        assert_eq!(status, 200);
        if by == a.addr.to_string() {
            to_a += 1;
        } else if by == b.addr.to_string() {
            to_b += 1;
        } else {
            panic!("served by {by:?}");
        }
    }
    assert_eq!((to_a, to_b), (10, 10), "round robin");
    assert_eq!(
        target_metric(&p, "portcullis_upstream_target_requests_total", a.addr).await,
        Some(10.0)
    );
    assert_eq!(
        target_metric(&p, "portcullis_upstream_target_up", b.addr).await,
        Some(1.0)
    );
}

/// `preserve_host = false`: each target gets its own authority as `Host`.
#[tokio::test]
async fn without_preserve_host_each_target_gets_its_own_host() {
    let a = echo_upstream_at("127.0.0.1:0".parse().unwrap()).await;
    let b = echo_upstream_at("127.0.0.1:0".parse().unwrap()).await;
    let p = start_proxy(&config(
        &[http(a.addr), http(b.addr)],
        "preserve_host = false",
    ))
    .await;
    for _ in 0..4 {
        let r = get_host(p.http(), http::Method::GET, "app.example", "/x").await;
        assert_eq!(r.status, 200);
        let by = r.headers["x-served-by"].to_str().unwrap().to_string();
        let e = r.echoed();
        assert_eq!(e.header("host"), Some(by.as_str()));
        assert_eq!(e.header("x-forwarded-host"), Some("app.example"));
    }
}

/// A target that refuses connections: every request (GET and POST) still succeeds through the
/// other, the refusing one is ejected (metrics), and once it listens again it gets requests
/// again and its gauge says so (bounded wait).
#[tokio::test]
async fn a_refusing_target_is_ejected_and_returns() {
    let down = closed_port().await;
    let b = echo_upstream_at("127.0.0.1:0".parse().unwrap()).await;
    let p = start_proxy(&config(&[http(down), http(b.addr)], "")).await;
    for i in 0..20 {
        let r = if i % 2 == 0 {
            get_path(p.http(), "/x").await
        } else {
            let req = http::Request::post("/x")
                .body(full_body("payload"))
                .unwrap();
            send(p.http(), req).await
        };
        assert_eq!(r.status, 200, "request {i}: {}", r.text());
        assert_eq!(r.echoed().body_len, if i % 2 == 0 { 0 } else { 7 });
    }
    let ejections = target_metric(&p, "portcullis_upstream_target_ejections_total", down)
        .await
        .unwrap_or(0.0);
    assert!(ejections >= 1.0, "{}", metrics(&p).await);
    assert_eq!(
        target_metric(&p, "portcullis_upstream_target_up", down).await,
        Some(0.0)
    );
    assert!(
        target_metric(&p, "portcullis_upstream_target_failures_total", down)
            .await
            .unwrap_or(0.0)
            >= 1.0
    );
    // One target is still up: the route is not reported.
    let (_, _, ready) = http_req("GET", &format!("http://{}/readyz", p.admin()), &[], None).await;
    assert!(!ready.contains("every target ejected"), "{ready}");

    // It comes back.
    let back = echo_upstream_at(down).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, by) = served_by(&p, "/x").await;
        assert_eq!(status, 200);
        if by == back.addr.to_string() {
            break;
        }
        assert!(Instant::now() < deadline, "the target never came back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        target_metric(&p, "portcullis_upstream_target_up", down).await,
        Some(1.0)
    );
}

/// 8 clients send GETs in a loop (bounded: 600 requests); one target is killed (listener and
/// open connections) a third of the way: no request fails beyond the 8 that may be in flight
/// — in fact none, since a GET whose connection broke before an answer goes to the other.
#[tokio::test]
async fn a_target_killed_mid_load_fails_no_idempotent_request() {
    let a = echo_upstream_at("127.0.0.1:0".parse().unwrap()).await;
    let b = echo_upstream_at("127.0.0.1:0".parse().unwrap()).await;
    let a_addr = a.addr;
    let p = start_proxy(&config(&[http(a.addr), http(b.addr)], "")).await;
    let addr = p.http();
    const TOTAL: usize = 600;
    const CLIENTS: usize = 8;
    let sent = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let (sent, failed) = (sent.clone(), failed.clone());
        tasks.push(tokio::spawn(async move {
            while sent.fetch_add(1, Ordering::SeqCst) < TOTAL {
                let r = get_path(addr, "/slow?ms=5").await;
                if r.status != 200 {
                    failed
                        .lock()
                        .unwrap()
                        .push(format!("{} {}", r.status, r.text()));
                }
            }
        }));
    }
    while sent.load(Ordering::SeqCst) < TOTAL / 3 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    drop(a);
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(120), t)
            .await
            .expect("load finished")
            .expect("client");
    }
    let failed = failed.lock().unwrap().clone();
    assert!(
        failed.len() <= CLIENTS,
        "{} failed: {failed:?}",
        failed.len()
    );
    assert!(failed.is_empty(), "idempotent requests failed: {failed:?}");
    assert!(
        target_metric(&p, "portcullis_upstream_target_ejections_total", a_addr)
            .await
            .unwrap_or(0.0)
            >= 1.0,
        "{}",
        metrics(&p).await
    );
}

/// A target that takes the connection and the request head, reads some of the body, then
/// drops the connection; the number of connections it took.
async fn body_breaker() -> (Server, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let taken = Arc::new(AtomicUsize::new(0));
    let count = taken.clone();
    let task = tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut got = Vec::new();
                let mut buf = [0u8; 1024];
                // The head and the first body chunk, then the connection is dropped.
                while !String::from_utf8_lossy(&got).contains("first") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
            });
        }
    });
    (Server::from_task(addr, task), taken)
}

/// A POST whose body started streaming to a target that then broke the connection is not
/// sent again (502, the other target never sees it); a POST whose connection was refused is
/// (nothing of it had reached a target).
#[tokio::test]
async fn a_post_whose_body_started_streaming_is_not_retried() {
    let (breaker, taken) = body_breaker().await;
    let (other, mut heads) = raw_upstream("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
    let p = start_proxy(&config(&[http(breaker.addr), http(other.addr)], "")).await;
    // The first request of the route goes to the first target.
    let chunks = futures_util::stream::unfold(0, |i| async move {
        match i {
            0 => Some((Ok(Frame::data(Bytes::from_static(b"first"))), 1)),
            1 => {
                tokio::time::sleep(Duration::from_millis(500)).await;
                Some((Ok(Frame::data(Bytes::from_static(b"second"))), 2))
            }
            _ => None,
        }
    });
    let req = http::Request::post("/upload")
        .body(BodyExt::boxed(StreamBody::new(chunks)))
        .unwrap();
    let r = send(p.http(), req).await;
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(r.text().contains("unreachable"), "{}", r.text());
    assert_eq!(taken.load(Ordering::SeqCst), 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        heads.try_recv().is_err(),
        "the POST was sent to the other target"
    );

    // Refused before anything was sent: the POST goes to the other target.
    let down = closed_port().await;
    let (ok, mut heads) = raw_upstream("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
    let p2 = start_proxy(&config(&[http(down), http(ok.addr)], "")).await;
    let req = http::Request::post("/upload")
        .body(full_body("payload"))
        .unwrap();
    let r = send(p2.http(), req).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let head = heads.recv().await.expect("head");
    assert!(head.starts_with("POST /upload"), "{head}");
}

/// Every target refusing: the request is still tried (502 "unreachable", not a refusal
/// untried), `/readyz` names the route (and stays 200: see the README), and a target that
/// comes back during its back-off answers the next request.
#[tokio::test]
async fn readyz_reports_a_route_whose_targets_are_all_ejected() {
    let (a, b) = (closed_port().await, closed_port().await);
    let p = start_proxy(&config(&[http(a), http(b)], "")).await;
    let r = get_path(p.http(), "/x").await;
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(r.text().contains("unreachable"), "{}", r.text());
    let (status, _, body) =
        http_req("GET", &format!("http://{}/readyz", p.admin()), &[], None).await;
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    let note = v["upstreams"]["app"].as_str().unwrap_or_default();
    assert!(note.contains("every target ejected"), "{body}");
    assert!(note.contains(&format!("http://{a}")), "{body}");
    for t in [a, b] {
        assert_eq!(
            target_metric(&p, "portcullis_upstream_target_up", t).await,
            Some(0.0)
        );
    }
    // A reload keeps what the targets' health is.
    std::fs::write(
        p.dir.path().join("portcullis.toml"),
        config(&[http(a), http(b)], "timeout = \"4s\""),
    )
    .unwrap();
    p.reload().await.expect("reload");
    let (_, _, body) = http_req("GET", &format!("http://{}/readyz", p.admin()), &[], None).await;
    assert!(
        body.contains("every target ejected"),
        "after a reload: {body}"
    );
    assert_eq!(
        target_metric(&p, "portcullis_upstream_target_up", a).await,
        Some(0.0)
    );
    // Back while still ejected: tried anyway.
    let _back = echo_upstream_at(b).await;
    let r = get_path(p.http(), "/x").await;
    assert_eq!(r.status, 200, "{}", r.text());
}

/// A target that answers 200 with a chunked body: `chunks` chunks `gap` apart, then either
/// ends the body or stalls (keeps the connection open, sends nothing).
async fn dribbler(chunks: usize, gap: Duration, stall: bool) -> Server {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let head = "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n";
                if s.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                for i in 0..chunks {
                    let c = format!("chunk{i};");
                    let _ = s
                        .write_all(format!("{:x}\r\n{c}\r\n", c.len()).as_bytes())
                        .await;
                    tokio::time::sleep(gap).await;
                }
                if stall {
                    tokio::time::sleep(Duration::from_secs(300)).await;
                } else {
                    let _ = s.write_all(b"0\r\n\r\n").await;
                    let _ = s.read(&mut buf).await;
                }
            });
        }
    });
    Server::from_task(addr, task)
}

fn routes_toml(cut: SocketAddr, open: SocketAddr, steady: SocketAddr, open_extra: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n\
         \n[[route]]\nname = \"cut\"\npath = \"/cut\"\nupstream = \"http://{cut}\"\nauth = \"none\"\nread_timeout = \"500ms\"\n\
         \n[[route]]\nname = \"steady\"\npath = \"/steady\"\nupstream = \"http://{steady}\"\nauth = \"none\"\nread_timeout = \"1500ms\"\n\
         \n[[route]]\nname = \"open\"\npath = \"/open\"\nupstream = \"http://{open}\"\nauth = \"none\"\n{open_extra}\n"
    )
}

/// `read_timeout = "500ms"`: a body that stalls after two chunks is cut (the client got the
/// 200 and the chunks, then the connection closes without the last chunk), logged and
/// counted; a body whose chunks come 200 ms apart under a 1.5 s `read_timeout` is not cut (the
/// margin keeps a loaded machine from cutting it); a route without `read_timeout` keeps waiting
/// on the same stall — until a reload gives it one.
#[tokio::test]
async fn read_timeout_cuts_a_stalled_body_only_where_set() {
    let stalls = dribbler(2, Duration::from_millis(50), true).await;
    let steady = dribbler(8, Duration::from_millis(200), false).await;
    let p = start_proxy(&routes_toml(stalls.addr, stalls.addr, steady.addr, "")).await;

    let t0 = Instant::now();
    let resp = raw_get(p.http(), "/cut", "x", "").await;
    let took = t0.elapsed();
    assert_eq!(raw_status(&resp), 200, "{resp}");
    assert!(
        resp.contains("chunk0;") && resp.contains("chunk1;"),
        "{resp}"
    );
    assert!(!resp.ends_with("0\r\n\r\n"), "the body was not cut: {resp}");
    assert!(took < Duration::from_secs(8), "cut after {took:?}");
    assert!(
        metrics(&p)
            .await
            .contains("portcullis_upstream_errors_total{route=\"cut\",kind=\"read_timeout\"} 1"),
        "{}",
        metrics(&p).await
    );

    let resp = raw_get(p.http(), "/steady", "x", "").await;
    assert_eq!(raw_status(&resp), 200);
    assert!(
        resp.contains("chunk7;") && resp.ends_with("0\r\n\r\n"),
        "{resp}"
    );

    // No read_timeout: still waiting after 2 s.
    let mut s = tokio::net::TcpStream::connect(p.http()).await.unwrap();
    s.write_all(b"GET /open HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    let waited = tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut out)).await;
    assert!(
        waited.is_err(),
        "the body ended: {}",
        String::from_utf8_lossy(&out)
    );
    assert!(String::from_utf8_lossy(&out).contains("chunk1;"));
    drop(s);

    // A reload gives it one.
    std::fs::write(
        p.dir.path().join("portcullis.toml"),
        routes_toml(
            stalls.addr,
            stalls.addr,
            steady.addr,
            "read_timeout = \"500ms\"",
        ),
    )
    .unwrap();
    p.reload().await.expect("reload");
    let t0 = Instant::now();
    let resp = raw_get(p.http(), "/open", "x", "").await;
    assert_eq!(raw_status(&resp), 200, "{resp}");
    assert!(!resp.ends_with("0\r\n\r\n"), "{resp}");
    assert!(t0.elapsed() < Duration::from_secs(8), "{:?}", t0.elapsed());
}

/// `check` on bad lists: the element's file:line:col and `route[0].upstream[i]` (a bad URL, a
/// missing variable), an empty list, mixed schemes, different paths, a target listed twice.
#[test]
fn check_points_at_the_bad_target() {
    let dir = temp_dir();
    let cases = [
        (
            "upstream = [\"http://127.0.0.1:3000\", \"ftp://x\"]",
            "\"ftp://x\"",
            "route[0].upstream[1]",
            "is not an http(s) URL",
        ),
        ("upstream = []", "[]", "route[0].upstream", "empty list"),
        (
            "upstream = [\"http://127.0.0.1:3000\", \"https://127.0.0.1:3001\"]",
            "\"https://127.0.0.1:3001\"",
            "route[0].upstream[1]",
            "share one scheme",
        ),
        (
            "upstream = [\"http://127.0.0.1:3000/a\", \"http://127.0.0.1:3001/b\"]",
            "\"http://127.0.0.1:3001/b\"",
            "route[0].upstream[1]",
            "share one path",
        ),
        (
            "upstream = [\"http://127.0.0.1:3000\", \"http://127.0.0.1:3000/\"]",
            "\"http://127.0.0.1:3000/\"",
            "route[0].upstream[1]",
            "listed twice",
        ),
        (
            "upstream = [\"http://127.0.0.1:3000\", \"http://u:p@127.0.0.1:3001\"]",
            "\"http://u:p@",
            "route[0].upstream[1]",
            "without query, fragment or credentials",
        ),
    ];
    for (line, needle, key, why) in cases {
        let toml = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n\n[[route]]\nname = \"app\"\npath = \"/\"\n{line}\nauth = \"none\"\n"
        );
        let path = dir.path().join("portcullis.toml");
        std::fs::write(&path, &toml).unwrap();
        let out = cli(&["check", "-c", path.to_str().unwrap()]);
        assert_eq!(out.code, 1, "{line}: {}{}", out.stdout, out.stderr);
        let at = toml.find(needle).unwrap();
        let before = &toml[..at];
        let lc = format!(
            "{}:{}",
            before.matches('\n').count() + 1,
            at - before.rfind('\n').map_or(0, |n| n + 1) + 1
        );
        let all = format!("{}{}", out.stdout, out.stderr);
        let want = format!("portcullis.toml:{lc}: `{key}`: ");
        assert!(all.contains(&want), "{line}: want {want:?} in\n{all}");
        assert!(all.contains(why), "{line}: want {why:?} in\n{all}");
    }
    // A list of one and a plain string both pass; a list of two with read_timeout too.
    for line in [
        "upstream = [\"http://127.0.0.1:3000\"]",
        "upstream = \"http://127.0.0.1:3000\"",
        "upstream = [\"http://127.0.0.1:3000\", \"http://127.0.0.1:3001\"]\nread_timeout = \"30s\"",
    ] {
        let toml = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n\n[[route]]\nname = \"app\"\npath = \"/\"\n{line}\nauth = \"none\"\n"
        );
        let path = dir.path().join("portcullis.toml");
        std::fs::write(&path, &toml).unwrap();
        let out = cli(&["check", "-c", path.to_str().unwrap()]);
        assert_eq!(out.code, 0, "{line}: {}{}", out.stdout, out.stderr);
    }
}

/// A target that takes each connection, reads the request head, then closes the connection
/// without answering; the number of requests it took.
async fn resetter() -> (Server, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let taken = Arc::new(AtomicUsize::new(0));
    let count = taken.clone();
    let task = tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let count = count.clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                let mut buf = [0u8; 1024];
                while !String::from_utf8_lossy(&got).contains("\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                count.fetch_add(1, Ordering::SeqCst);
                drop(s);
            });
        }
    });
    (Server::from_task(addr, task), taken)
}

/// A target that accepts and then resets (connecting works, so it is never ejected) keeps
/// only its share of the requests: a failed request that may not be retried (a POST) does
/// not also advance the rotation, which would send every later request to the broken target.
/// Each POST reaches exactly one target, once; a retried GET leaves the rotation alone.
#[tokio::test]
async fn a_resetting_target_does_not_capture_the_rotation() {
    let (broken, taken) = resetter().await;
    let good = echo_upstream_at("127.0.0.1:0".parse().unwrap()).await;
    let p = start_proxy(&config(&[http(broken.addr), http(good.addr)], "")).await;
    let (mut ok, mut bad) = (0, 0);
    for i in 0..10 {
        let req = http::Request::post(format!("/order/{i}"))
            .body(full_body("payload"))
            .unwrap();
        let r = send(p.http(), req).await;
        match r.status.as_u16() {
            200 => ok += 1,
            502 => bad += 1,
            s => panic!("status {s}: {}", r.text()),
        }
    }
    assert_eq!((ok, bad), (5, 5), "round robin over a resetting target");
    assert_eq!(
        taken.load(Ordering::SeqCst),
        5,
        "each failed POST reached it once"
    );
    // GETs are retried on the good target, and the retry does not skew the rotation either:
    // the broken target sees every other one, not every one.
    for i in 0..10 {
        let (status, by) = served_by(&p, &format!("/item/{i}")).await;
        assert_eq!(status, 200);
        assert_eq!(by, good.addr.to_string());
    }
    assert_eq!(
        taken.load(Ordering::SeqCst),
        10,
        "the broken target took 5 of 10 GETs"
    );
}
