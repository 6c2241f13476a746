//! `hyper-floor`: the least a hyper-based reverse proxy does per request, for the benchmark.
//!
//! A hyper 1 server whose every request is forwarded by hyper-util's pooled client (HTTP/1.1)
//! to one upstream: no routing, no header work, no auth, no metrics, no logs. The same runtime
//! (single-threaded tokio on one CPU), allocator (mimalloc) and socket options (TCP_NODELAY) as
//! portcullis. Its rows in `tests/bench/bench.sh` (targets `hyper-floor*`) are the ceiling that
//! any proxy built on hyper's server and client reaches on this machine; the gap between it and
//! `portcullis-none` is portcullis's own work, the gap between it and `nginx-proxy` is hyper's.
//!
//! With `--tls CERT KEY` it terminates TLS the way portcullis does — rustls on aws-lc-rs, the
//! safe default protocol versions, ALPN `h2` + `http/1.1`, stateless session tickets — and
//! serves HTTP/2 or HTTP/1.1 by the negotiated protocol with hyper's default settings (the
//! `hyper-floor-tls-*` rows).
//!
//! With `--contract` it also does, in the most direct way hyper allows, the header work the
//! proxy's contract requires on every proxied request whatever the route's auth (the
//! `hyper-floor-contract*` rows): it removes the headers a client may not send (hop-by-hop ones,
//! `X-Forwarded-*`, `Forwarded`, `X-Real-IP`, `X-Auth-Request-*`, `Remote-User` and the other
//! spoofable identity and URL-override names), sets `X-Forwarded-For`/`-Proto`/`-Host` and
//! `X-Real-IP`, makes a request id and a W3C `traceparent` (sent upstream; the id also back to
//! the client), and drops an upstream `Set-Cookie` of the proxy's own cookie. No routing, no
//! path normalization, no auth, no identity headers, no metrics, no logs: what is left between
//! this row and a `portcullis-*` row is the rest of portcullis's work.
//!
//!   cargo build --release --example hyper-floor
//!   target/release/examples/hyper-floor 127.0.0.1:8080 127.0.0.1:8081
//!   target/release/examples/hyper-floor 127.0.0.1:8443 127.0.0.1:8081 --tls tls.crt tls.key
//!   target/release/examples/hyper-floor 127.0.0.1:8082 127.0.0.1:8081 --contract

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper::{Request, Uri, Version};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn tls_config(cert: &str, key: &str) -> Arc<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let certs = CertificateDer::pem_file_iter(cert)
        .expect("CERT")
        .collect::<Result<Vec<_>, _>>()
        .expect("CERT is PEM");
    let key = PrivateKeyDer::from_pem_file(key).expect("KEY is PEM");
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("certificate and key");
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    cfg.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new().expect("ticketer");
    Arc::new(cfg)
}

/// Names a client may not send upstream (exact, lowercase), besides the prefixes in
/// [`STRIP_PREFIXES`].
const STRIP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "forwarded",
    "x-real-ip",
    "remote-user",
    "x-remote-user",
    "x-original-url",
    "x-rewrite-url",
    "true-client-ip",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "x-request-id",
    "traceparent",
    "tracestate",
];
const STRIP_PREFIXES: &[&str] = &["x-forwarded-", "x-auth-request-"];

/// A per-process random seed mixed with a counter: ids without a syscall.
struct Ids {
    seed: u64,
    n: std::cell::Cell<u64>,
}

impl Ids {
    fn next(&self) -> u64 {
        let n = self.n.get().wrapping_add(1);
        self.n.set(n);
        // splitmix64
        let mut z = self
            .seed
            .wrapping_add(n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

fn hex(out: &mut Vec<u8>, v: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for i in (0..16).rev() {
        out.push(HEX[((v >> (4 * i)) & 0xF) as usize]);
    }
}

thread_local! {
    static IDS: Ids = Ids { seed: rand::random(), n: std::cell::Cell::new(0) };
}

/// The contract's header work on one request head (see the module documentation).
fn contract_request(headers: &mut HeaderMap, peer: &HeaderValue, tls: bool) -> HeaderValue {
    let host = headers.get(header::HOST).cloned();
    let doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|k| {
            let k = k.as_str();
            STRIP.contains(&k) || STRIP_PREFIXES.iter().any(|p| k.starts_with(p))
        })
        .cloned()
        .collect();
    for name in doomed {
        headers.remove(name);
    }
    let (a, b, c) = IDS.with(|ids| (ids.next(), ids.next(), ids.next()));
    let mut id = Vec::with_capacity(32);
    hex(&mut id, a);
    hex(&mut id, b);
    let mut tp = Vec::with_capacity(55);
    tp.extend_from_slice(b"00-");
    tp.extend_from_slice(&id);
    tp.push(b'-');
    hex(&mut tp, c);
    tp.extend_from_slice(b"-01");
    let id = HeaderValue::from_maybe_shared(Bytes::from(id)).expect("hex");
    headers.insert(&X_FORWARDED_FOR, peer.clone());
    headers.insert(&X_REAL_IP, peer.clone());
    headers.insert(
        &X_FORWARDED_PROTO,
        HeaderValue::from_static(if tls { "https" } else { "http" }),
    );
    if let Some(host) = host {
        headers.insert(&X_FORWARDED_HOST, host);
    }
    headers.insert(&X_REQUEST_ID, id.clone());
    headers.insert(
        &TRACEPARENT,
        HeaderValue::from_maybe_shared(Bytes::from(tp)).expect("hex"),
    );
    id
}

/// The contract's work on an answer head: the request id back, our own cookie never set by
/// the upstream.
fn contract_response(headers: &mut HeaderMap, id: HeaderValue) {
    if headers
        .get_all(header::SET_COOKIE)
        .iter()
        .any(|v| v.as_bytes().starts_with(b"portcullis="))
    {
        let kept: Vec<HeaderValue> = headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter(|v| !v.as_bytes().starts_with(b"portcullis="))
            .cloned()
            .collect();
        headers.remove(header::SET_COOKIE);
        for v in kept {
            headers.append(header::SET_COOKIE, v);
        }
    }
    headers.insert(&X_REQUEST_ID, id);
}

fn usage() -> ! {
    eprintln!("usage: hyper-floor LISTEN_ADDR UPSTREAM_ADDR [--tls CERT KEY] [--contract]");
    std::process::exit(2);
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(upstream)) = (args.next(), args.next()) else {
        usage();
    };
    let (mut tls, mut contract) = (None, false);
    while let Some(arg) = args.next() {
        match (arg.as_str(), tls.is_none()) {
            ("--tls", true) => {
                let (Some(cert), Some(key)) = (args.next(), args.next()) else {
                    usage();
                };
                tls = Some(tokio_rustls::TlsAcceptor::from(tls_config(&cert, &key)));
            }
            ("--contract", _) if !contract => contract = true,
            _ => usage(),
        }
    }
    let listen: SocketAddr = listen.parse().expect("LISTEN_ADDR is host:port");
    let upstream: &'static str = Box::leak(upstream.into_boxed_str());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async move {
        let client: Client<_, Incoming> = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(1024)
            .build_http();
        let listener = TcpListener::bind(listen).await.expect("bind LISTEN_ADDR");
        loop {
            let Ok((stream, peer)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let client = client.clone();
            let tls = tls.clone();
            let peer = HeaderValue::from_str(&peer.ip().to_string()).expect("an IP address");
            let is_tls = tls.is_some();
            tokio::spawn(async move {
                let service = service_fn(move |mut req: Request<Incoming>| {
                    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
                    let uri = format!("http://{upstream}{path}");
                    *req.uri_mut() = uri.parse::<Uri>().expect("upstream URI");
                    // h2 in, HTTP/1.1 to the upstream (the client sets Host from the URI)
                    *req.version_mut() = Version::HTTP_11;
                    let id = contract.then(|| contract_request(req.headers_mut(), &peer, is_tls));
                    let answer = client.request(req);
                    async move {
                        let mut res = answer.await?;
                        if let Some(id) = id {
                            contract_response(res.headers_mut(), id);
                        }
                        Ok::<_, hyper_util::client::legacy::Error>(res)
                    }
                });
                let Some(acceptor) = tls else {
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                    return;
                };
                let Ok(stream) = acceptor.accept(stream).await else {
                    return;
                };
                if stream.get_ref().1.alpn_protocol() == Some(b"h2") {
                    let _ = http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                } else {
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                }
            });
        }
    });
}
