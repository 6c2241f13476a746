//! Test harness for portcullis integration tests: real servers on loopback, no mocks.
//!
//! What is here, all bound on `127.0.0.1:0` (no fixed ports):
//! - [`EchoUpstream`]: an HTTP/1.1 server that answers every request with JSON describing what it
//!   received ([`Echoed`]: method, path, query, version, headers in order, body length, and the
//!   peer address of the connection it came on, to observe pooling). The
//!   request body is consumed frame by frame and only counted, so a 1 GiB upload costs no memory.
//!   Paths whose last segment is `slow` (`GET …/slow?ms=N`) sleep N ms before answering; paths
//!   whose last segment is `big` (`GET …/big?bytes=N`) stream N bytes of `x` instead of JSON.
//!   A query containing `hop=1` makes the answer carry hop-by-hop headers (to test they are
//!   removed on the way back).
//! - [`WsEchoUpstream`]: a WebSocket server echoing every text/binary message.
//! - [`start_proxy`] / [`start_proxy_in`]: the proxy in-process (`portcullis::server::start`), with
//!   its config written into a temp dir so relative file names in the TOML resolve there.
//!   [`server_toml`], [`route_toml`], [`tls_server_toml`] and [`write_tls_files`] build configs.
//! - [`TestCa`]: an rcgen CA issuing server certificates for `localhost` / `127.0.0.1`.
//! - A small client on hyper (one connection per request): [`send`] for http, [`send_tls`]
//!   for https with a chosen ALPN list (reports the negotiated protocol and the served cert).
//! - [`raw_http`]: bytes over a raw `TcpStream`, for requests real clients would normalize.
//! - [`BinaryProxy`]: the real `portcullis` binary as a child process, killed on drop.
//! - [`cli`]: runs the binary with arguments and returns status, stdout and stderr.
//!
//! Every wait is bounded: helpers time out (and panic) rather than hang a test run.

#![allow(dead_code)] // each test binary uses a different subset

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{HeaderMap, Request, Response, StatusCode, Version};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use portcullis::server::Running;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Upper bound for any single helper wait.
pub const STEP: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------------
// Echo upstream
// ---------------------------------------------------------------------------------------------

/// What the echo upstream received, as it reports it in its JSON answer.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Echoed {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub version: String,
    pub headers: Vec<(String, String)>,
    pub body_len: u64,
    /// The proxy-side address of the upstream connection (same value: same pooled connection).
    #[serde(default)]
    pub peer: String,
}

impl Echoed {
    /// The first value of header `name` (case-insensitive), if any.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of header `name` (case-insensitive).
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// Header names as received (lower case: hyper normalizes them).
    pub fn header_names(&self) -> Vec<&str> {
        self.headers.iter().map(|(n, _)| n.as_str()).collect()
    }
}

type TestBody = BoxBody<Bytes, Infallible>;

/// A server on loopback; the accept loop stops when this is dropped.
pub struct Server {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    /// Wraps an accept loop the caller spawned (for one-off upstreams in a test).
    pub fn from_task(addr: SocketAddr, task: tokio::task::JoinHandle<()>) -> Self {
        Server { addr, task }
    }

    /// `http://127.0.0.1:PORT` followed by `path` (use "" for none).
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub type EchoUpstream = Server;
pub type WsEchoUpstream = Server;

fn query_param(query: Option<&str>, key: &str) -> Option<u64> {
    query?
        .split('&')
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
}

/// A body of `n` bytes of `x`, produced in 64 KiB chunks as they are polled.
pub fn generated_body(n: u64) -> TestBody {
    const CHUNK: usize = 64 * 1024;
    let chunk = Bytes::from(vec![b'x'; CHUNK]);
    let stream = futures_util::stream::unfold(n, move |left| {
        let chunk = chunk.clone();
        async move {
            if left == 0 {
                return None;
            }
            let take = left.min(CHUNK as u64);
            Some((
                Ok::<_, Infallible>(Frame::data(chunk.slice(..take as usize))),
                left - take,
            ))
        }
    });
    BodyExt::boxed(StreamBody::new(stream))
}

async fn echo(req: Request<Incoming>, peer: SocketAddr) -> Result<Response<TestBody>, Infallible> {
    let (parts, mut body) = req.into_parts();
    let path = parts.uri.path().to_string();
    let query = parts.uri.query().map(str::to_string);
    let last = path.rsplit('/').next().unwrap_or("");
    if last == "slow" {
        let ms = query_param(query.as_deref(), "ms").unwrap_or(1000);
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let mut body_len = 0u64;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => {
                if let Some(d) = f.data_ref() {
                    body_len += d.len() as u64;
                }
            }
            Err(_) => break,
        }
    }
    if last == "big" {
        let n = query_param(query.as_deref(), "bytes").unwrap_or(0);
        let mut resp = Response::new(generated_body(n));
        resp.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/octet-stream"),
        );
        return Ok(resp);
    }
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let json = serde_json::json!({
        "method": parts.method.as_str(),
        "path": path,
        "query": query,
        "version": format!("{:?}", parts.version),
        "headers": headers,
        "body_len": body_len,
        "peer": peer.to_string(),
    });
    let mut resp = Response::new(Full::new(Bytes::from(json.to_string())).boxed());
    let h = resp.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    h.insert("x-echo", http::HeaderValue::from_static("1"));
    if query.as_deref().is_some_and(|q| q.contains("hop=1")) {
        h.insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("x-upstream-hop"),
        );
        h.insert("x-upstream-hop", http::HeaderValue::from_static("1"));
        h.insert("keep-alive", http::HeaderValue::from_static("timeout=5"));
        h.insert(
            "proxy-authenticate",
            http::HeaderValue::from_static("Basic"),
        );
    }
    Ok(resp)
}

/// Starts the JSON echo upstream (HTTP/1.1, keep-alive).
pub async fn echo_upstream() -> EchoUpstream {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind echo upstream");
    let addr = listener.local_addr().expect("echo addr");
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, peer)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service_fn(move |r| echo(r, peer)))
                    .with_upgrades()
                    .await;
            });
        }
    });
    Server { addr, task }
}

/// Starts the JSON echo upstream behind TLS (HTTP/1.1) with the given certificate.
pub async fn tls_echo_upstream(cert: &Issued) -> EchoUpstream {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(cert.cert_pem.as_bytes())
            .collect::<Result<_, _>>()
            .expect("cert PEM");
    let key = PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes()).expect("key PEM");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("server cert");
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind tls echo upstream");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, peer)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service_fn(move |r| echo(r, peer)))
                    .await;
            });
        }
    });
    Server { addr, task }
}

/// Starts the WebSocket echo upstream; every path accepts the handshake.
pub async fn ws_echo_upstream() -> WsEchoUpstream {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind ws upstream");
    let addr = listener.local_addr().expect("ws addr");
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                while let Some(Ok(msg)) = ws.next().await {
                    if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    Server { addr, task }
}

/// An address on which nothing listens (bound, then closed).
pub async fn closed_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    drop(l);
    addr
}

// ---------------------------------------------------------------------------------------------
// The proxy, in process
// ---------------------------------------------------------------------------------------------

/// A proxy started in-process; derefs to [`Running`] (`http_addr`, `https_addr`, `admin_addr`,
/// `proxy`). `dir` holds `portcullis.toml` and any files the test wrote next to it.
pub struct TestProxy {
    pub running: Running,
    pub dir: tempfile::TempDir,
}

impl std::ops::Deref for TestProxy {
    type Target = Running;
    fn deref(&self) -> &Running {
        &self.running
    }
}

impl TestProxy {
    pub fn http(&self) -> SocketAddr {
        self.running.http_addr.expect("no http listener")
    }
    pub fn https(&self) -> SocketAddr {
        self.running.https_addr.expect("no https listener")
    }
    pub fn admin(&self) -> SocketAddr {
        self.running.admin_addr.expect("no admin listener")
    }
    /// Graceful shutdown; the temp dir is removed afterwards.
    pub async fn shutdown(self) {
        tokio::time::timeout(STEP, self.running.shutdown())
            .await
            .expect("shutdown took too long");
    }
}

/// A fresh temp dir for config files, certificates and keys.
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

/// Loads `toml` (as if from `dir/portcullis.toml`) and starts the proxy. Panics with the
/// config errors when it does not load.
pub async fn start_proxy_in(dir: tempfile::TempDir, toml: &str) -> TestProxy {
    let path = dir.path().join("portcullis.toml");
    std::fs::write(&path, toml).expect("write config");
    let cfg = match portcullis::config::load_str(&path, toml, Default::default()) {
        Ok(c) => c,
        Err(e) => panic!("config does not load:\n{e}\n--- config ---\n{toml}"),
    };
    let running = portcullis::server::start(cfg).await.expect("proxy starts");
    TestProxy { running, dir }
}

/// [`start_proxy_in`] with a fresh temp dir.
pub async fn start_proxy(toml: &str) -> TestProxy {
    start_proxy_in(temp_dir(), toml).await
}

/// `[server]` listening on `127.0.0.1:0`, followed by `rest` (more `[server]` keys, then any
/// sections).
pub fn server_toml(rest: &str) -> String {
    format!("[server]\nlisten = \"127.0.0.1:0\"\n{rest}")
}

/// One `[[route]]` with `name`, `auth` and `upstream`; `extra` holds more keys (`path = "/x"`,
/// `host = …`, `methods = […]`, …), one per line. Sub-tables (`[route.headers]`) cannot go in
/// `extra`: append them after this string.
pub fn route_toml(name: &str, auth: &str, extra: &str, upstream: &str) -> String {
    format!(
        "\n[[route]]\nname = \"{name}\"\n{extra}\nupstream = \"{upstream}\"\nauth = \"{auth}\"\n"
    )
}

/// Writes a fresh certificate for `localhost` from `ca` as `tls.crt`/`tls.key` into `dir`
/// (where `[server.tls] cert = "tls.crt"`, `key = "tls.key"` find them) and returns it.
pub fn write_tls_files(dir: &Path, ca: &TestCa, common_name: &str) -> Issued {
    let leaf = ca.issue(common_name);
    std::fs::write(dir.join("tls.crt"), &leaf.cert_pem).expect("write tls.crt");
    std::fs::write(dir.join("tls.key"), &leaf.key_pem).expect("write tls.key");
    leaf
}

/// `[server]` with `server_extra`, a `[server.tls]` on `127.0.0.1:0` using `tls.crt`/`tls.key`
/// with `tls_extra`, then `rest` (routes). Pair with [`write_tls_files`].
pub fn tls_server_toml(server_extra: &str, tls_extra: &str, rest: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n{server_extra}\n[server.tls]\nlisten = \"127.0.0.1:0\"\ncert = \"tls.crt\"\nkey = \"tls.key\"\n{tls_extra}\n{rest}"
    )
}

// ---------------------------------------------------------------------------------------------
// TLS material
// ---------------------------------------------------------------------------------------------

/// A throwaway certificate authority.
pub struct TestCa {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    pub cert_pem: String,
}

/// A server certificate and key, PEM.
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
    pub cert_der: Vec<u8>,
}

impl TestCa {
    pub fn new() -> Self {
        let key = rcgen::KeyPair::generate().expect("CA key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "portcullis test CA");
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let cert = params.self_signed(&key).expect("CA cert");
        TestCa {
            cert_pem: cert.pem(),
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    /// A leaf for `localhost` and `127.0.0.1` with the given common name (to tell certs apart).
    pub fn issue(&self, common_name: &str) -> Issued {
        self.issue_for(common_name, &["localhost", "127.0.0.1"])
    }

    /// A leaf for the given DNS names and IP addresses (subject alternative names).
    pub fn issue_for(&self, common_name: &str, names: &[&str]) -> Issued {
        let key = rcgen::KeyPair::generate().expect("leaf key");
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .expect("leaf params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, common_name);
        let cert = params.signed_by(&key, &self.issuer).expect("leaf cert");
        Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            cert_der: cert.der().to_vec(),
        }
    }
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

// ---------------------------------------------------------------------------------------------
// Client
// ---------------------------------------------------------------------------------------------

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

/// A rustls client config trusting only `ca_pem`, offering `alpn`.
pub fn tls_client(ca_pem: &str, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.expect("CA PEM")).expect("CA cert");
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(cfg)
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

// ---------------------------------------------------------------------------------------------
// The binary
// ---------------------------------------------------------------------------------------------

/// Path of the built `portcullis` binary.
pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_portcullis"))
}

/// Output of a CLI run.
pub struct CliOutput {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `portcullis ARGS` to completion (killed after 30 s).
pub fn cli(args: &[&str]) -> CliOutput {
    let mut child = Command::new(binary())
        .args(args)
        .env_remove("PORTCULLIS_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn portcullis");
    let deadline = std::time::Instant::now() + STEP;
    loop {
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("portcullis {args:?} did not exit within {STEP:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("output");
    CliOutput {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The real binary serving a config; killed (and reaped) on drop.
pub struct BinaryProxy {
    child: Child,
    pub http_addr: SocketAddr,
    pub pid: u32,
    /// Every stderr (log) line so far.
    pub logs: Arc<std::sync::Mutex<Vec<String>>>,
}

impl BinaryProxy {
    /// Starts `portcullis run --config PATH` and waits (≤ 30 s) for its http listener, whose
    /// address is read from the startup log line (so `listen = "127.0.0.1:0"` works).
    pub fn start(config: &Path) -> Self {
        Self::start_with(config, &[])
    }

    /// [`BinaryProxy::start`] with extra arguments after `run --config PATH`
    /// (e.g. `["--log-format", "json"]`).
    pub fn start_with(config: &Path, extra_args: &[&str]) -> Self {
        let mut cmd = Command::new(binary());
        cmd.args(["run", "--config"]).arg(config).args(extra_args);
        Self::spawn(cmd)
    }

    /// [`BinaryProxy::start_with`] with the open-file limit (soft and hard `RLIMIT_NOFILE`) set
    /// to `nofile` (`sh -c 'ulimit -n N; exec portcullis …'`: same pid as the proxy).
    pub fn start_with_fd_limit(config: &Path, nofile: u64, extra_args: &[&str]) -> Self {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(format!("ulimit -n {nofile} && exec \"$0\" \"$@\""))
            .arg(binary())
            .args(["run", "--config"])
            .arg(config)
            .args(extra_args);
        Self::spawn(cmd)
    }

    /// The admin listener's address, from its startup log line.
    pub fn admin_addr(&self) -> SocketAddr {
        let line = self.wait_log(&["listening (admin)"]);
        line.split("Some(")
            .nth(1)
            .and_then(|s| s.split(')').next())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no address in log line: {line}"))
    }

    fn spawn(mut cmd: Command) -> Self {
        use std::io::BufRead;
        let mut child = cmd
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn portcullis");
        let pid = child.id();
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        let logs = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = logs.clone();
        // Keeps draining stderr for the child's lifetime so it never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if line.contains("listening (http)")
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(line.clone());
                }
                if let Ok(mut l) = sink.lock() {
                    l.push(line);
                }
            }
        });
        let mut guard = BinaryProxy {
            child,
            http_addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            pid,
            logs,
        };
        let line = rx
            .recv_timeout(STEP)
            .unwrap_or_else(|_| panic!("portcullis did not report its http listener"));
        let addr = line
            .split("Some(")
            .nth(1)
            .and_then(|s| s.split(')').next())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no address in log line: {line}"));
        guard.http_addr = addr;
        guard
    }

    /// Waits (≤ 5 s) for a log line containing every one of `needles`, and returns it.
    pub fn wait_log(&self, needles: &[&str]) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(l) = self.logs.lock().ok().and_then(|l| {
                l.iter()
                    .find(|l| needles.iter().all(|n| l.contains(n)))
                    .cloned()
            }) {
                return l;
            }
            if std::time::Instant::now() > deadline {
                let all = self.logs.lock().map(|l| l.join("\n")).unwrap_or_default();
                panic!("no log line with {needles:?}; logs:\n{all}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits up to `limit` for the process to exit; its exit code (`None`: killed by a signal).
    pub fn wait_exit(&mut self, limit: Duration) -> Option<Option<i32>> {
        let deadline = std::time::Instant::now() + limit;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status.code());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// A line of `/proc/PID/status` in KiB (`VmHWM`, `VmRSS`).
    pub fn status_kib(&self, field: &str) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid)).expect("proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc status"))
    }
}

impl Drop for BinaryProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
