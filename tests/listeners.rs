//! Listeners and connections over real sockets:
//! the admin listener's head deadline, the back-off on accept errors (EMFILE must not spin),
//! `server.max_connections`, the TLS `Host`/SNI rule (`421`), and a malformed client body
//! answered `400` rather than counted as an upstream failure; graceful shutdown (in process and
//! on SIGTERM, with its drain timeout, not waiting for idle connections), the admin listener's
//! health, readiness and metrics, and the JSON access log. The tests that need a file
//! descriptor limit run the real binary under `ulimit -n`.

mod support;
use support::*;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// CPU time (user + system) the process has used so far, in seconds (`/proc/PID/stat`; the
/// kernel reports it in USER_HZ, 100 per second on Linux).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("proc stat");
    // Fields after the command name (which may contain spaces) start at field 3 (`state`):
    // utime is field 14, stime field 15.
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>().expect("utime") + f[12].parse::<u64>().expect("stime");
    ticks as f64 / 100.0
}

/// The share of one core the process used over the next `window`.
async fn cpu_share(pid: u32, window: Duration) -> f64 {
    let before = cpu_seconds(pid);
    let t0 = Instant::now();
    tokio::time::sleep(window).await;
    (cpu_seconds(pid) - before) / t0.elapsed().as_secs_f64()
}

/// Held by the tests that open hundreds of connections, so that two of them never add up
/// against the test process's own open-file limit.
static FLOOD: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Opens up to `n` TCP connections to `addr` (each connect bounded); returns those that opened.
async fn open_idle(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        match tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(addr)).await {
            Ok(Ok(s)) => out.push(s),
            _ => break,
        }
    }
    out
}

/// What the server did with a connection within `limit`: the bytes it sent before closing, or
/// `None` when it is still open.
async fn closed_with(s: &mut TcpStream, limit: Duration) -> Option<String> {
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(String::from_utf8_lossy(&out).into_owned()),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// Log lines about failed accepts.
fn accept_failed_lines(proxy: &BinaryProxy) -> Vec<String> {
    proxy
        .logs
        .lock()
        .map(|l| {
            l.iter()
                .filter(|l| l.contains("accept failed"))
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

/// The value of the metric line starting with `series` (`name{labels}`), if present.
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

fn write_config(dir: &tempfile::TempDir, toml: &str) -> std::path::PathBuf {
    let path = dir.path().join("portcullis.toml");
    std::fs::write(&path, toml).expect("write config");
    path
}

// ---------------------------------------------------------------------------------------------
// Admin listener under an fd limit (item 5)
// ---------------------------------------------------------------------------------------------

/// The review's reproduction: `ulimit -n 512`, 600 idle connections to `admin_listen` (the
/// first 20 with a half-sent head). The public listener still answers, the process does not
/// spin, the admin connections are closed at the head deadline (a started head gets `408`),
/// and the log does not fill with accept errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_flood_under_fd_limit_leaves_public_listener_serving() {
    let _flood = FLOOD.lock().await;
    let up = echo_upstream().await;
    let dir = temp_dir();
    let toml = server_toml("admin_listen = \"127.0.0.1:0\"\nheader_read_timeout = \"2s\"\n")
        + &route_toml("app", "none", "path = \"/\"", &up.url(""));
    let proxy = BinaryProxy::start_with_fd_limit(&write_config(&dir, &toml), 512, &[]);
    let admin = proxy.admin_addr();

    let flood_started = Instant::now();
    let mut conns = open_idle(admin, 600).await;
    assert!(
        conns.len() >= 500,
        "only {} admin connections opened",
        conns.len()
    );
    for s in conns.iter_mut().take(20) {
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
            .await
            .expect("half-sent head");
    }

    let share = cpu_share(proxy.pid, Duration::from_secs(2)).await;
    assert!(
        share < 0.3,
        "the proxy used {:.0} % of a core while 600 admin connections were open",
        share * 100.0
    );

    let t = Instant::now();
    let resp = tokio::time::timeout(
        Duration::from_secs(5),
        get_path(proxy.http_addr, "/during-admin-flood"),
    )
    .await
    .expect("the public listener did not answer within 5 s during the admin flood");
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    assert_eq!(resp.echoed().path, "/during-admin-flood");
    assert!(t.elapsed() < Duration::from_secs(5));

    // The first connections were accepted at once: their head deadline (2 s) has passed by
    // the time 2 s more have gone by. A started head is answered 408, a silent one just closed.
    let limit =
        Duration::from_secs(4).saturating_sub(flood_started.elapsed()) + Duration::from_secs(2);
    for (i, s) in conns.iter_mut().take(20).enumerate() {
        let got = closed_with(s, limit).await;
        let got = got.unwrap_or_else(|| panic!("half-sent admin connection {i} still open"));
        assert!(got.starts_with("HTTP/1.1 408"), "connection {i}: {got:?}");
    }
    for (i, s) in conns.iter_mut().enumerate().skip(20).take(30) {
        assert!(
            closed_with(s, Duration::from_secs(1)).await.is_some(),
            "idle admin connection {i} still open after the head deadline"
        );
    }

    let failed = accept_failed_lines(&proxy);
    assert!(
        failed.len() <= 2,
        "{} accept-failed log lines:\n{}",
        failed.len(),
        failed.join("\n")
    );

    // Once the flood goes away the admin listener answers again promptly.
    drop(conns);
    let metrics = tokio::time::timeout(Duration::from_secs(10), get_path(admin, "/metrics"))
        .await
        .expect("admin listener did not recover within 10 s");
    assert_eq!(metrics.status, StatusCode::OK);
    let at_cap = metric(
        &metrics.text(),
        "portcullis_listener_at_capacity_total{listener=\"admin\"}",
    )
    .unwrap_or(0.0);
    assert!(
        at_cap >= 1.0,
        "admin never reached its cap:\n{}",
        metrics.text()
    );
}

/// With `max_connections` above what the fd limit allows, the public listener runs into EMFILE:
/// it backs off (no spinning, one log line per burst rather than one per failed accept) and
/// serves again once descriptors are free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emfile_on_the_public_listener_backs_off() {
    let _flood = FLOOD.lock().await;
    let up = echo_upstream().await;
    let dir = temp_dir();
    let toml = server_toml(
        "admin_listen = \"127.0.0.1:0\"\nheader_read_timeout = \"3s\"\nmax_connections = 5000\n",
    ) + &route_toml("app", "none", "path = \"/\"", &up.url(""));
    let proxy = BinaryProxy::start_with_fd_limit(&write_config(&dir, &toml), 256, &[]);
    proxy.wait_log(&["max_connections", "open-file limit"]);
    let admin = proxy.admin_addr();

    let conns = open_idle(proxy.http_addr, 400).await;
    assert!(
        conns.len() >= 300,
        "only {} connections opened",
        conns.len()
    );
    // The proxy is out of descriptors now: the first failed accept is logged, then it backs off.
    proxy.wait_log(&["accept failed"]);
    let share = cpu_share(proxy.pid, Duration::from_secs(2)).await;
    assert!(
        share < 0.3,
        "the proxy used {:.0} % of a core while out of file descriptors",
        share * 100.0
    );
    let failed = accept_failed_lines(&proxy);
    assert!(
        failed.len() <= 2,
        "{} accept-failed log lines:\n{}",
        failed.len(),
        failed.join("\n")
    );

    drop(conns);
    let t = Instant::now();
    let resp = tokio::time::timeout(Duration::from_secs(10), get_path(proxy.http_addr, "/after"))
        .await
        .expect("the public listener did not recover within 10 s");
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    assert!(t.elapsed() < Duration::from_secs(10));
    let metrics = tokio::time::timeout(Duration::from_secs(10), get_path(admin, "/metrics"))
        .await
        .expect("admin /metrics");
    let errors = metric(
        &metrics.text(),
        "portcullis_accept_errors_total{listener=\"http\"}",
    )
    .unwrap_or(0.0);
    assert!(
        errors >= 1.0,
        "no accept errors counted:\n{}",
        metrics.text()
    );
}

// ---------------------------------------------------------------------------------------------
// max_connections (item 5)
// ---------------------------------------------------------------------------------------------

/// A keep-alive HTTP/1.1 client connection that stays open.
struct KeepAlive {
    sender: hyper::client::conn::http1::SendRequest<http_body_util::Full<bytes::Bytes>>,
    task: tokio::task::JoinHandle<()>,
}

impl KeepAlive {
    async fn open(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).await.expect("connect");
        let (sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .expect("handshake");
        let task = tokio::spawn(async move {
            let _ = conn.await;
        });
        KeepAlive { sender, task }
    }

    async fn get(&mut self, path: &str) -> StatusCode {
        let req = Request::get(path)
            .header("host", "app.test")
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .expect("request");
        let fut = async {
            self.sender.ready().await.expect("connection ready");
            let resp = self.sender.send_request(req).await.expect("response");
            let status = resp.status();
            let _ = http_body_util::BodyExt::collect(resp.into_body()).await;
            status
        };
        tokio::time::timeout(Duration::from_secs(5), fut)
            .await
            .expect("keep-alive request timed out")
    }
}

impl Drop for KeepAlive {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `max_connections = 4`: a fifth connection waits in the kernel's backlog (it is not accepted,
/// not answered) while the four open ones keep being served; it is served as soon as one of
/// them closes. The metric counts the listener reaching its cap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_above_max_connections_wait_while_open_ones_are_served() {
    let up = echo_upstream().await;
    let p = start_proxy(
        &(server_toml("admin_listen = \"127.0.0.1:0\"\nmax_connections = 4\n")
            + &route_toml("app", "none", "path = \"/\"", &up.url(""))),
    )
    .await;
    let mut open = Vec::new();
    for _ in 0..4 {
        let mut c = KeepAlive::open(p.http()).await;
        assert_eq!(c.get("/first").await, StatusCode::OK);
        open.push(c);
    }

    let mut fifth = TcpStream::connect(p.http()).await.expect("backlog connect");
    fifth
        .write_all(b"GET /fifth HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut buf = [0u8; 64];
    let early = tokio::time::timeout(Duration::from_millis(800), fifth.read(&mut buf)).await;
    assert!(
        early.is_err(),
        "a fifth connection was served (or closed) while 4 = max_connections were open: {early:?}"
    );

    for c in &mut open {
        assert_eq!(c.get("/again").await, StatusCode::OK);
    }

    drop(open.pop());
    let answer = closed_with(&mut fifth, Duration::from_secs(5))
        .await
        .expect("the waiting connection was not served after a slot freed");
    assert_eq!(raw_status(&answer), 200, "{answer}");
    assert_eq!(raw_echoed(&answer).path, "/fifth");

    let metrics = get_path(p.admin(), "/metrics").await.text();
    let at_cap = metric(
        &metrics,
        "portcullis_listener_at_capacity_total{listener=\"http\"}",
    )
    .unwrap_or(0.0);
    assert!(at_cap >= 1.0, "{metrics}");
    p.shutdown().await;
}

/// A spliced WebSocket connection keeps its place in `max_connections` until it closes (it
/// keeps its descriptor, too).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_holds_its_place_until_it_closes() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let ws = ws_echo_upstream().await;
    let up = echo_upstream().await;
    let p = start_proxy(
        &(server_toml("max_connections = 1\n")
            + &route_toml(
                "ws",
                "none",
                "path = \"/ws\"\nwebsocket = true",
                &ws.url(""),
            )
            + &route_toml("app", "none", "path = \"/\"", &up.url(""))),
    )
    .await;
    let addr = p.http();
    let (mut sock, resp) = tokio::time::timeout(
        Duration::from_secs(5),
        tokio_tungstenite::connect_async(format!("ws://{addr}/ws/chat")),
    )
    .await
    .expect("websocket handshake timed out")
    .expect("websocket handshake");
    assert_eq!(resp.status(), 101);
    sock.send(Message::text("hello")).await.expect("send");
    let back = tokio::time::timeout(Duration::from_secs(5), sock.next())
        .await
        .expect("echo timed out")
        .expect("echo")
        .expect("echo message");
    assert_eq!(back.into_text().expect("text").as_str(), "hello");

    let mut other = TcpStream::connect(addr).await.expect("backlog connect");
    other
        .write_all(b"GET /other HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    assert!(
        closed_with(&mut other, Duration::from_millis(800))
            .await
            .is_none(),
        "served while the WebSocket held the only place"
    );
    let _ = sock.close(None).await;
    drop(sock);
    let answer = closed_with(&mut other, Duration::from_secs(5))
        .await
        .expect("not served after the WebSocket closed");
    assert_eq!(raw_status(&answer), 200, "{answer}");
    p.shutdown().await;
}

/// HTTP/2 (h2c, prior knowledge) connection for `addr`; the task ends when the connection does.
async fn h2_connection(
    addr: SocketAddr,
) -> (
    hyper::client::conn::http2::SendRequest<http_body_util::Full<bytes::Bytes>>,
    tokio::task::JoinHandle<()>,
) {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .expect("h2 handshake");
    let task = tokio::spawn(async move {
        let _ = conn.await;
    });
    (sender, task)
}

async fn h2_get(
    sender: &mut hyper::client::conn::http2::SendRequest<http_body_util::Full<bytes::Bytes>>,
    addr: SocketAddr,
    path: &str,
) -> StatusCode {
    let req = Request::get(format!("http://{addr}{path}"))
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .expect("request");
    let fut = async {
        let resp = sender.send_request(req).await.expect("h2 response");
        let status = resp.status();
        let _ = http_body_util::BodyExt::collect(resp.into_body()).await;
        status
    };
    tokio::time::timeout(Duration::from_secs(5), fut)
        .await
        .expect("h2 request timed out")
}

/// An HTTP/2 connection with no stream in flight for `header_read_timeout` is closed, as an
/// idle HTTP/1 keep-alive connection is: otherwise one request per connection would hold a
/// place in `max_connections` for ever. A stream in flight for longer is not cut.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_http2_connections_are_closed_and_free_their_place() {
    let up = echo_upstream().await;
    let p = start_proxy(
        &(server_toml("header_read_timeout = \"1s\"\nmax_connections = 2\n")
            + &route_toml("app", "none", "path = \"/\"", &up.url(""))),
    )
    .await;
    let addr = p.http();
    let (mut slow, slow_conn) = h2_connection(addr).await;
    let (mut other, other_conn) = h2_connection(addr).await;
    let (slow_status, other_status) = tokio::join!(
        h2_get(&mut slow, addr, "/slow?ms=1500"),
        h2_get(&mut other, addr, "/a/slow?ms=1400"),
    );
    assert_eq!(
        slow_status,
        StatusCode::OK,
        "a stream longer than the timeout was cut"
    );
    assert_eq!(other_status, StatusCode::OK);

    // Both connections are idle now and hold the two places; a third connection is served once
    // they are closed.
    let t0 = Instant::now();
    let third = tokio::time::timeout(
        Duration::from_secs(5),
        raw_get(addr, "/third", "app.test", ""),
    )
    .await
    .expect("the idle HTTP/2 connections were not closed within 5 s");
    assert_eq!(raw_status(&third), 200, "{third}");
    assert!(
        t0.elapsed() >= Duration::from_millis(300),
        "served at once: the cap did not hold ({:?})",
        t0.elapsed()
    );
    for conn in [slow_conn, other_conn] {
        tokio::time::timeout(Duration::from_secs(3), conn)
            .await
            .expect("idle HTTP/2 connection still open")
            .expect("connection task");
    }
    p.shutdown().await;
}

/// A stream the client resets before its answer no longer counts as in flight: the HTTP/2
/// connection is closed a timeout after the reset, not kept open by the abandoned request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_http2_stream_does_not_keep_its_connection_open() {
    let up = echo_upstream().await;
    let p = start_proxy(
        &(server_toml("header_read_timeout = \"1s\"\n")
            + &route_toml("app", "none", "path = \"/\"", &up.url(""))),
    )
    .await;
    let addr = p.http();
    let (mut sender, conn) = h2_connection(addr).await;
    let req = Request::get(format!("http://{addr}/slow?ms=10000"))
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .expect("request");
    // Dropping the response future resets the stream (RST_STREAM CANCEL).
    let abandoned =
        tokio::time::timeout(Duration::from_millis(300), sender.send_request(req)).await;
    assert!(abandoned.is_err(), "answered early: {abandoned:?}");
    tokio::time::timeout(Duration::from_secs(4), conn)
        .await
        .expect("the connection stayed open after its only stream was reset")
        .expect("connection task");
    p.shutdown().await;
}

/// `max_connections` must be a positive number: a config error naming the key.
#[test]
fn max_connections_zero_is_a_config_error() {
    let dir = temp_dir();
    let path = write_config(
        &dir,
        &(server_toml("max_connections = 0\n")
            + &route_toml("app", "none", "path = \"/\"", "http://127.0.0.1:9")),
    );
    let out = cli(&["check", "--config", path.to_str().expect("utf-8 path")]);
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("server.max_connections")
            || out.stdout.contains("server.max_connections"),
        "{}{}",
        out.stdout,
        out.stderr
    );
}

// ---------------------------------------------------------------------------------------------
// TLS: Host must match SNI (item 7)
// ---------------------------------------------------------------------------------------------

async fn tls_proxy(ca: &TestCa, up: &EchoUpstream) -> TestProxy {
    let dir = temp_dir();
    let leaf = ca.issue_for(
        "sni-test",
        &["a.localhost", "b.localhost", "localhost", "127.0.0.1"],
    );
    std::fs::write(dir.path().join("tls.crt"), &leaf.cert_pem).expect("write cert");
    std::fs::write(dir.path().join("tls.key"), &leaf.key_pem).expect("write key");
    let toml = tls_server_toml(
        "",
        "",
        &route_toml("app", "none", "path = \"/\"", &up.url("")),
    );
    start_proxy_in(dir, &toml).await
}

/// A request whose `Host` (HTTP/1.1) or `:authority` (HTTP/2) names another host than the SNI
/// its connection sent gets `421`, also on the proxy's own `/.auth/*` endpoints; same name with
/// other letter case or another port passes; a connection without SNI (IP literal) is not
/// checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_must_match_the_connections_sni() {
    let ca = TestCa::new();
    let up = echo_upstream().await;
    let p = tls_proxy(&ca, &up).await;
    let addr = p.https();
    let port = addr.port();
    let h1: &[&[u8]] = &[b"http/1.1"];
    let h2: &[&[u8]] = &[b"h2"];

    struct Case<'a> {
        alpn: &'a [&'a [u8]],
        sni: &'a str,
        host: String,
        path: &'a str,
        status: u16,
    }
    let cases = [
        // another host on a connection made for a.localhost
        Case {
            alpn: h1,
            sni: "a.localhost",
            host: "b.localhost".into(),
            path: "/x",
            status: 421,
        },
        Case {
            alpn: h1,
            sni: "a.localhost",
            host: format!("b.localhost:{port}"),
            path: "/x",
            status: 421,
        },
        Case {
            alpn: h2,
            sni: "a.localhost",
            host: format!("b.localhost:{port}"),
            path: "/x",
            status: 421,
        },
        Case {
            alpn: h1,
            sni: "a.localhost",
            host: "127.0.0.1".into(),
            path: "/x",
            status: 421,
        },
        // before the proxy's own endpoints too
        Case {
            alpn: h1,
            sni: "a.localhost",
            host: "b.localhost".into(),
            path: "/.auth/userinfo",
            status: 421,
        },
        Case {
            alpn: h2,
            sni: "a.localhost",
            host: "b.localhost".into(),
            path: "/.auth/login",
            status: 421,
        },
        // the same name: case and port do not matter
        Case {
            alpn: h1,
            sni: "a.localhost",
            host: format!("A.LocalHost:{port}"),
            path: "/x",
            status: 200,
        },
        Case {
            alpn: h1,
            sni: "a.localhost",
            host: "a.localhost".into(),
            path: "/x",
            status: 200,
        },
        Case {
            alpn: h2,
            sni: "a.localhost",
            host: "A.LOCALHOST:8443".into(),
            path: "/x",
            status: 200,
        },
        // no SNI (connection to an IP literal): no check
        Case {
            alpn: h1,
            sni: "127.0.0.1",
            host: "b.localhost".into(),
            path: "/x",
            status: 200,
        },
        Case {
            alpn: h2,
            sni: "127.0.0.1",
            host: format!("b.localhost:{port}"),
            path: "/x",
            status: 200,
        },
    ];
    for c in cases {
        let r = send_tls_named(addr, &ca.cert_pem, c.alpn, c.sni, &c.host, get(c.path)).await;
        let proto = String::from_utf8_lossy(r.alpn.as_deref().unwrap_or(b"-")).into_owned();
        assert_eq!(
            r.resp.status.as_u16(),
            c.status,
            "{proto} SNI {} Host {} {}: {}",
            c.sni,
            c.host,
            c.path,
            r.resp.text()
        );
        if c.status == 421 {
            assert!(
                r.resp.text().contains("misdirected_request"),
                "{}",
                r.resp.text()
            );
            assert!(r.resp.text().contains("SNI"), "{}", r.resp.text());
        } else {
            assert_eq!(r.resp.echoed().path, "/x");
        }
    }
    p.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// A malformed client body is the client's error (item 7)
// ---------------------------------------------------------------------------------------------

/// A chunked request body with a broken chunk-size line, to a route whose upstream reads the
/// body: `400` to the client, and no `upstream_errors_total` for the route (the upstream did
/// nothing wrong). A body cut short by the client (`Content-Length` larger than what arrives
/// before the client half-closes) is the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_client_body_is_a_400_not_an_upstream_error() {
    let up = echo_upstream().await;
    let p = start_proxy(
        &(server_toml("admin_listen = \"127.0.0.1:0\"\n")
            + &route_toml("app", "none", "path = \"/\"", &up.url(""))),
    )
    .await;

    let broken = raw_http(
        p.http(),
        "POST /upload HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\nzz-not-hex\r\nmore\r\n0\r\n\r\n",
    )
    .await;
    assert_eq!(raw_status(&broken), 400, "{broken}");
    assert!(raw_body(&broken).contains("request body"), "{broken}");

    let mut s = TcpStream::connect(p.http()).await.expect("connect");
    s.write_all(b"POST /upload HTTP/1.1\r\nHost: app.test\r\nContent-Length: 100\r\n\r\nonly-this")
        .await
        .expect("write");
    s.shutdown().await.expect("half-close");
    let cut = closed_with(&mut s, Duration::from_secs(10))
        .await
        .expect("no answer to a cut-short body");
    assert_eq!(raw_status(&cut), 400, "{cut}");

    // The route still works, and the metrics put the blame on no upstream.
    let ok = get_path(p.http(), "/fine").await;
    assert_eq!(ok.status, StatusCode::OK);
    let metrics = get_path(p.admin(), "/metrics").await.text();
    assert!(
        !metrics
            .lines()
            .any(|l| l.starts_with("portcullis_upstream_errors_total")),
        "{metrics}"
    );
    assert_eq!(
        metric(
            &metrics,
            "portcullis_requests_total{route=\"app\",status=\"400\"}"
        ),
        Some(2.0),
        "{metrics}"
    );
    p.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Graceful shutdown (in process and on SIGTERM), the admin listener, the access log
// ---------------------------------------------------------------------------------------------

/// `shutdown()` with a request in flight: the request completes 200, new connections are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_finishes_in_flight_requests() {
    let up = echo_upstream().await;
    let proxy = start_proxy(&server_toml(&route("app", "path = \"/\"", &up.url("")))).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_health_ready_and_metrics() {
    let up = echo_upstream().await;
    let closed = closed_port().await;
    let mut c = server_toml("admin_listen = \"127.0.0.1:0\"\n");
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

/// The real binary on SIGTERM: stops accepting, finishes the in-flight request, exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_sigterm_drains_in_flight_requests() {
    let up = echo_upstream().await;
    let dir = temp_dir();
    let path = dir.path().join("portcullis.toml");
    std::fs::write(
        &path,
        server_toml(&route("app", "path = \"/\"", &up.url(""))),
    )
    .unwrap();
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

/// Shutdown does not wait for idle keep-alive connections or connections that sent nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_does_not_wait_for_idle_connections() {
    let up = echo_upstream().await;
    let proxy = start_proxy(&server_toml(&route("app", "path = \"/\"", &up.url("")))).await;
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
        server_toml(&format!(
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

/// One structured access-log line per request with `--log-format json`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_access_log_line_per_request() {
    let up = echo_upstream().await;
    let dir = temp_dir();
    let path = dir.path().join("portcullis.toml");
    let closed = closed_port().await;
    let mut c = server_toml("");
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
