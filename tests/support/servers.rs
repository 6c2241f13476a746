//! Upstreams for the tests, each a [`Server`]: an accept loop on `127.0.0.1:0` that stops
//! when the `Server` is dropped.
//!
//! - [`echo_upstream`]: HTTP/1.1 (keep-alive, upgrades) answering every request with JSON
//!   describing what it received ([`Echoed`]: method, path, query, version, headers in order,
//!   body length, and the peer address of the connection it came on, to observe pooling). The
//!   request body is consumed frame by frame and only counted, so a 1 GiB upload costs no
//!   memory. Paths whose last segment is `slow` (`GET …/slow?ms=N`) sleep N ms before
//!   answering; paths whose last segment is `big` (`GET …/big?bytes=N`) stream N bytes of `x`
//!   instead of JSON. A query containing `hop=1` makes the answer carry hop-by-hop headers (to
//!   test they are removed on the way back).
//! - [`echo_upstream_map`]: the same server answering `{"path": target, "headers": {name:
//!   value}}` (the shape the login tests read), detached: it lives as long as the test process.
//! - [`echo_upstream_at`]: [`echo_upstream`] on a given address, saying which it is
//!   (`x-served-by`), whose drop ends its connections too (a killed target).
//! - [`tls_echo_upstream`]: [`echo_upstream`] behind TLS.
//! - [`ws_echo_upstream`]: a WebSocket server echoing every text/binary message.
//! - [`raw_upstream`]: raw sockets, reporting each request head and answering a fixed text.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Request, Response};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use super::tls::Issued;

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

/// The body type of the test client and servers.
pub type TestBody = BoxBody<Bytes, Infallible>;

/// A server on loopback; the accept loop stops when this is dropped.
pub struct Server {
    pub addr: SocketAddr,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Server {
    /// Wraps an accept loop the caller spawned (for one-off upstreams in a test).
    pub fn from_task(addr: SocketAddr, task: tokio::task::JoinHandle<()>) -> Self {
        Server {
            addr,
            task: Some(task),
        }
    }

    /// Keeps the server running for the rest of the test process; its address.
    pub fn detach(mut self) -> SocketAddr {
        self.task = None;
        self.addr
    }

    /// `http://127.0.0.1:PORT` followed by `path` (use "" for none).
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
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

/// What the echo upstream answers with.
#[derive(Clone, Copy)]
enum Format {
    /// [`Echoed`].
    Report,
    /// `{"path": request target, "headers": {name: value}}` (the last value of a repeated
    /// header; a value that is not UTF-8 reads as "").
    Map,
}

async fn echo(
    req: Request<Incoming>,
    peer: SocketAddr,
    format: Format,
) -> Result<Response<TestBody>, Infallible> {
    if let Format::Map = format {
        return Ok(echo_map(req));
    }
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

fn echo_map(req: Request<Incoming>) -> Response<TestBody> {
    let mut h = serde_json::Map::new();
    for (k, v) in req.headers() {
        h.insert(
            k.as_str().to_string(),
            serde_json::Value::String(v.to_str().unwrap_or("").to_string()),
        );
    }
    let body = serde_json::json!({"path": req.uri().to_string(), "headers": h}).to_string();
    let mut resp = Response::new(Full::new(Bytes::from(body)).boxed());
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp
}

/// Starts the JSON echo upstream (HTTP/1.1, keep-alive).
pub async fn echo_upstream() -> EchoUpstream {
    serve_echo(Format::Report).await
}

/// Starts the echo upstream answering `{"path", "headers": {…}}`, for the rest of the test
/// process.
pub async fn echo_upstream_map() -> SocketAddr {
    serve_echo(Format::Map).await.detach()
}

async fn serve_echo(format: Format) -> Server {
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
                    .serve_connection(
                        TokioIo::new(stream),
                        service_fn(move |r| echo(r, peer, format)),
                    )
                    .with_upgrades()
                    .await;
            });
        }
    });
    Server::from_task(addr, task)
}

/// [`echo_upstream`] bound to `addr` (port 0: any), answering with `x-served-by: <its
/// address>`. Dropping it ends its open connections too, as a killed process would (the plain
/// echo upstream only stops accepting); bind the same address again to bring it back.
pub async fn echo_upstream_at(addr: SocketAddr) -> Server {
    let listener = TcpListener::bind(addr).await.expect("bind echo upstream");
    let addr = listener.local_addr().expect("echo addr");
    let task = tokio::spawn(async move {
        // Dropped with the accept loop: every connection task is aborted.
        let mut conns = tokio::task::JoinSet::new();
        loop {
            while conns.try_join_next().is_some() {}
            let Ok((stream, peer)) = listener.accept().await else {
                continue;
            };
            conns.spawn(async move {
                let svc = service_fn(move |r| async move {
                    let mut resp = echo(r, peer, Format::Report).await?;
                    resp.headers_mut()
                        .insert("x-served-by", addr.to_string().parse().expect("header"));
                    Ok::<_, Infallible>(resp)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Server::from_task(addr, task)
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
                    .serve_connection(
                        TokioIo::new(tls),
                        service_fn(move |r| echo(r, peer, Format::Report)),
                    )
                    .await;
            });
        }
    });
    Server::from_task(addr, task)
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
    Server::from_task(addr, task)
}

/// An address on which nothing listens (bound, then closed).
pub async fn closed_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    drop(l);
    addr
}

/// An upstream on raw sockets: each connection's request head (up to the blank line) is sent on
/// the channel, `answer` is written back, and then every byte received is echoed (a spliced
/// connection shows through).
pub async fn raw_upstream(answer: &'static str) -> (Server, mpsc::UnboundedReceiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                continue;
            };
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && head.len() < 65536 {
                    match s.read(&mut byte).await {
                        Ok(1) => head.push(byte[0]),
                        _ => return,
                    }
                }
                let _ = tx.send(String::from_utf8_lossy(&head).into_owned());
                if s.write_all(answer.as_bytes()).await.is_err() {
                    return;
                }
                let mut buf = [0u8; 1024];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    (Server::from_task(addr, task), rx)
}
