//! WebSocket over real sockets: upgrades proxied only on routes that enable them, browser
//! handshake headers and `wss://`, only the WebSocket handshake forwarded, and an upstream
//! switching to anything but `websocket` refused.

mod support;
use support::*;

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrade_proxied_only_when_enabled() {
    let ws = ws_echo_upstream().await;
    let up = echo_upstream().await;
    let mut c = server_toml("");
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

const WS_101: &str = "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";

const H2C_101: &str =
    "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n";

/// A WebSocket handshake from the client with `extra` header lines.
fn ws_request(connection: &str, upgrade: &str, extra: &str) -> String {
    format!(
        "GET /ws HTTP/1.1\r\nHost: app.local\r\nConnection: {connection}\r\nUpgrade: {upgrade}\r\n{extra}Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
}

/// Reads a response head (to the blank line), then whatever follows within `wait`.
async fn read_head_then(s: &mut TcpStream, wait: Duration) -> (String, Vec<u8>) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    let read_head = async {
        while !head.ends_with(b"\r\n\r\n") {
            match s.read(&mut byte).await {
                Ok(1) => head.push(byte[0]),
                _ => break,
            }
        }
    };
    tokio::time::timeout(STEP, read_head)
        .await
        .expect("response head");
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(wait, s.read_to_end(&mut rest)).await;
    (String::from_utf8_lossy(&head).into_owned(), rest)
}

fn ws_proxy_toml(upstream: SocketAddr, websocket: bool) -> String {
    server_toml(&route_toml(
        "ws",
        "none",
        &format!("path = \"/\"\nwebsocket = {websocket}"),
        &format!("http://{upstream}"),
    ))
}

/// Attack (issue 9 item 7): a WebSocket route forwarded `Upgrade: h2c, websocket` and
/// `HTTP2-Settings` as sent, inviting the upstream to switch to h2c — a raw HTTP/2 connection
/// from the client to the upstream, past every later check. Only `Upgrade: websocket` goes on,
/// with no `HTTP2-Settings`; the splice then works both ways. An `Upgrade` without websocket is
/// no upgrade at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_handshake_forwards_only_websocket() {
    let (up, mut heads) = raw_upstream(WS_101).await;
    let p = start_proxy(&ws_proxy_toml(up.addr, true)).await;
    for (connection, upgrade, extra) in [
        (
            "Upgrade",
            "h2c, websocket",
            "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n",
        ),
        (
            "Upgrade, HTTP2-Settings",
            "websocket, h2c",
            "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n",
        ),
        ("keep-alive, Upgrade", "WebSocket", ""),
    ] {
        let mut s = TcpStream::connect(p.http()).await.expect("connect");
        s.write_all(ws_request(connection, upgrade, extra).as_bytes())
            .await
            .expect("write");
        let got = tokio::time::timeout(STEP, heads.recv())
            .await
            .expect("upstream saw the request")
            .expect("head")
            .to_ascii_lowercase();
        let upgrades: Vec<&str> = got
            .lines()
            .filter_map(|l| l.strip_prefix("upgrade:"))
            .map(str::trim)
            .collect();
        assert_eq!(
            upgrades,
            ["websocket"],
            "Upgrade {upgrade:?} went on as:\n{got}"
        );
        assert!(!got.contains("http2-settings"), "{got}");
        assert!(!got.contains("h2c"), "{got}");
        assert!(got.contains("\r\nconnection: upgrade\r\n"), "{got}");
        assert!(got.contains("sec-websocket-key:"), "{got}");
        // Spliced: the client's bytes reach the upstream and come back.
        let (head, _) = read_head_then(&mut s, Duration::ZERO).await;
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        s.write_all(b"ping-through-splice").await.expect("write");
        let mut buf = [0u8; 19];
        tokio::time::timeout(STEP, s.read_exact(&mut buf))
            .await
            .expect("echo")
            .expect("read");
        assert_eq!(&buf, b"ping-through-splice");
    }
    // `Upgrade: h2c` alone (no websocket) is not an upgrade: no Upgrade reaches the upstream.
    let (up2, mut heads2) =
        raw_upstream("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok").await;
    let p2 = start_proxy(&ws_proxy_toml(up2.addr, true)).await;
    let r = raw_http(
        p2.http(),
        ws_request(
            "Upgrade, HTTP2-Settings",
            "h2c",
            "HTTP2-Settings: AAMAAABk\r\n",
        ),
    )
    .await;
    assert_eq!(raw_status(&r), 200, "{r}");
    let got = heads2.recv().await.expect("head").to_ascii_lowercase();
    assert!(!got.contains("upgrade"), "{got}");
    assert!(!got.contains("http2-settings"), "{got}");
    p.shutdown().await;
    p2.shutdown().await;
}

/// Attack: the upstream answers a WebSocket handshake with `101` to `h2c` (or answers 101 to a
/// request on a route without `websocket = true`); the proxy spliced (or passed the 101 on),
/// handing the client a raw connection of another protocol. Such a 101 is a bad answer: `502`,
/// nothing spliced, none of the upstream's bytes after it reach the client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_switching_to_anything_but_websocket_is_refused() {
    for (answer, websocket) in [
        (H2C_101, true),
        (
            "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket, h2c\r\n\r\n",
            true,
        ),
        (
            "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n\r\n",
            true,
        ),
        (WS_101, false),
    ] {
        let (up, _heads) = raw_upstream(answer).await;
        let p = start_proxy(&ws_proxy_toml(up.addr, websocket)).await;
        let mut s = TcpStream::connect(p.http()).await.expect("connect");
        s.write_all(ws_request("Upgrade", "websocket", "").as_bytes())
            .await
            .expect("write");
        let (head, _) = read_head_then(&mut s, Duration::ZERO).await;
        assert!(
            head.starts_with("HTTP/1.1 502"),
            "upstream answer {answer:?} (websocket = {websocket}) gave:\n{head}"
        );
        // The connection was not spliced: bytes written now get no echo from the upstream.
        let _ = s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await;
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(Duration::from_millis(500), s.read_to_end(&mut rest)).await;
        let rest = String::from_utf8_lossy(&rest);
        assert!(!rest.contains("PRI * HTTP/2.0"), "spliced: {rest}");
        p.shutdown().await;
    }
}
