//! The one HTTP client of the tests, on hyper, one connection per request: [`send`] to an
//! address, [`send_to`] to an absolute URL (what [`http_req`] and the scripted browser use),
//! [`send_tls`] / [`send_tls_request`] / [`send_tls_named`] over TLS with a chosen ALPN list
//! (reporting the negotiated protocol and the served certificate). And the raw one:
//! [`raw_http`] writes bytes on a `TcpStream`, for requests real clients would normalize.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::STEP;
use super::servers::{Echoed, TestBody};
use super::tls::tls_client;

/// A response read to the end.
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub version: Version,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Resp {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    /// The echo upstream's report; panics (showing the body) when it is not one.
    pub fn echoed(&self) -> Echoed {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not an echo answer ({e}): {} {}", self.status, self.text()))
    }
}

/// `GET path` with `Host: host` (when given; else the address).
pub fn get(path: &str) -> Request<TestBody> {
    Request::get(path).body(empty_body()).expect("request")
}

pub fn empty_body() -> TestBody {
    Full::new(Bytes::new()).boxed()
}

async fn read_resp(resp: Response<Incoming>) -> Resp {
    let (parts, body) = resp.into_parts();
    let body = tokio::time::timeout(STEP, body.collect())
        .await
        .expect("body timed out")
        .expect("body")
        .to_bytes();
    Resp {
        status: parts.status,
        version: parts.version,
        headers: parts.headers,
        body,
    }
}

/// Sends one HTTP/1.1 request on a new connection to `addr`. A missing `Host` is set to `addr`.
pub async fn send(addr: SocketAddr, mut req: Request<TestBody>) -> Resp {
    if !req.headers().contains_key(http::header::HOST) {
        req.headers_mut()
            .insert(http::header::HOST, addr.to_string().parse().expect("host"));
    }
    let fut = async move {
        let stream = TcpStream::connect(addr).await.expect("connect");
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("handshake");
        tokio::spawn(conn);
        let resp = sender.send_request(req).await.expect("request");
        read_resp(resp).await
    };
    tokio::time::timeout(STEP, fut)
        .await
        .expect("request timed out")
}

/// Sends `req`, whose URI is absolute (`http://host:port/path?query`), on a new connection to
/// that host and port: the request line carries the path and query, a missing `Host` is set to
/// the URI's authority.
pub async fn send_to(req: Request<TestBody>) -> Resp {
    let (mut parts, body) = req.into_parts();
    let authority = parts.uri.authority().expect("absolute URL").clone();
    let port = authority.port_u16().unwrap_or(80);
    let addr = tokio::net::lookup_host((authority.host(), port))
        .await
        .expect("resolve")
        .next()
        .expect("an address");
    if !parts.headers.contains_key(http::header::HOST) {
        parts.headers.insert(
            http::header::HOST,
            authority.as_str().parse().expect("host"),
        );
    }
    parts.uri = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .parse()
        .expect("path");
    send(addr, Request::from_parts(parts, body)).await
}

/// One request to `url`; returns status, headers and body.
pub async fn http_req(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<String>,
) -> (StatusCode, HeaderMap, String) {
    let uri: http::Uri = url.parse().expect("url");
    let host = format!(
        "{}:{}",
        uri.host().expect("host"),
        uri.port_u16().unwrap_or(80)
    );
    let mut b = Request::builder()
        .method(method)
        .uri(uri)
        .header("host", &host);
    for (n, v) in headers {
        b = b.header(*n, *v);
    }
    let req = b
        .body(Full::new(Bytes::from(body.unwrap_or_default())).boxed())
        .expect("request");
    let r = send_to(req).await;
    let text = r.text();
    (r.status, r.headers, text)
}

/// `method path` with `Host: host` over [`send`].
pub async fn get_host(addr: SocketAddr, method: http::Method, host: &str, path: &str) -> Resp {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", host)
        .body(empty_body())
        .unwrap();
    send(addr, req).await
}

/// `GET path` over [`send`].
pub async fn get_path(addr: SocketAddr, path: &str) -> Resp {
    send(addr, get(path)).await
}

/// What a TLS request saw.
pub struct TlsResp {
    pub resp: Resp,
    /// The ALPN protocol negotiated (`b"h2"`, `b"http/1.1"`, or none).
    pub alpn: Option<Vec<u8>>,
    /// The leaf certificate the server presented (DER).
    pub server_cert: Vec<u8>,
}

/// Sends one GET over TLS to `addr` (SNI `localhost`), HTTP/2 when ALPN picks `h2`, else
/// HTTP/1.1. `path` is a path; the URI/Host are set to `https://localhost:PORT/...`.
pub async fn send_tls(addr: SocketAddr, ca_pem: &str, alpn: &[&[u8]], path: &str) -> TlsResp {
    send_tls_request(addr, ca_pem, alpn, get(path)).await
}

/// [`send_tls`] with any request; its URI must be a path (`/x?y`). For HTTP/2 the URI becomes
/// `https://localhost:PORT/x?y` (the `:authority`); for HTTP/1.1 a missing `Host` is set to it.
pub async fn send_tls_request(
    addr: SocketAddr,
    ca_pem: &str,
    alpn: &[&[u8]],
    req: Request<TestBody>,
) -> TlsResp {
    let authority = format!("localhost:{}", addr.port());
    send_tls_named(addr, ca_pem, alpn, "localhost", &authority, req).await
}

/// [`send_tls_request`] with a chosen TLS server name (`server_name`: a DNS name is sent as
/// SNI, an IP address sends none) and host (`authority`: the HTTP/2 `:authority`, or the
/// HTTP/1.1 `Host` when the request has none).
pub async fn send_tls_named(
    addr: SocketAddr,
    ca_pem: &str,
    alpn: &[&[u8]],
    server_name: &str,
    authority: &str,
    req: Request<TestBody>,
) -> TlsResp {
    let cfg = tls_client(ca_pem, alpn);
    let name = rustls::pki_types::ServerName::try_from(server_name.to_string()).expect("name");
    let authority = authority.to_string();
    let (mut parts, body) = req.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    let fut = async move {
        let stream = TcpStream::connect(addr).await.expect("connect");
        let tls = tokio_rustls::TlsConnector::from(cfg)
            .connect(name, stream)
            .await
            .expect("TLS handshake");
        let (_, session) = tls.get_ref();
        let alpn = session.alpn_protocol().map(<[u8]>::to_vec);
        let server_cert = session
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.to_vec())
            .unwrap_or_default();
        let resp = if alpn.as_deref() == Some(b"h2") {
            let (mut sender, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                    .await
                    .expect("h2 handshake");
            tokio::spawn(conn);
            parts.uri = format!("https://{authority}{path}").parse().expect("uri");
            parts.version = Version::HTTP_2;
            let req = Request::from_parts(parts, body);
            sender.send_request(req).await.expect("h2 request")
        } else {
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
                .await
                .expect("h1 handshake");
            tokio::spawn(conn);
            if !parts.headers.contains_key(http::header::HOST) {
                parts
                    .headers
                    .insert(http::header::HOST, authority.parse().expect("host"));
            }
            let req = Request::from_parts(parts, body);
            sender.send_request(req).await.expect("h1 request")
        };
        TlsResp {
            resp: read_resp(resp).await,
            alpn,
            server_cert,
        }
    };
    tokio::time::timeout(STEP, fut)
        .await
        .expect("TLS request timed out")
}

/// Writes `bytes` on a new TCP connection and reads until the server closes (or 10 s pass).
/// Send `Connection: close` to get the answer promptly.
pub async fn raw_http(addr: SocketAddr, bytes: impl AsRef<[u8]>) -> String {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(bytes.as_ref()).await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// `GET target` over [`raw_http`], `target` sent byte for byte; extra header lines may be given
/// (each ending in `\r\n`).
pub async fn raw_get(addr: SocketAddr, target: &str, host: &str, extra_headers: &str) -> String {
    raw_http(
        addr,
        format!(
            "GET {target} HTTP/1.1\r\nHost: {host}\r\n{extra_headers}Connection: close\r\n\r\n"
        ),
    )
    .await
}

/// Status code of a raw HTTP/1.1 response text (0 when there is none).
pub fn raw_status(resp: &str) -> u16 {
    resp.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// The body of a raw HTTP/1.1 response (after the blank line; chunked encoding not decoded).
pub fn raw_body(resp: &str) -> &str {
    resp.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

/// The echo report in a raw response (handles a chunked body with one chunk).
pub fn raw_echoed(resp: &str) -> Echoed {
    let body = raw_body(resp);
    let json = match (body.find('{'), body.rfind('}')) {
        (Some(a), Some(b)) => &body[a..=b],
        _ => panic!("no JSON body in:\n{resp}"),
    };
    serde_json::from_str(json).unwrap_or_else(|e| panic!("bad echo JSON ({e}):\n{resp}"))
}
