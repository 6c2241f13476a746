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
//!   cargo build --release --example hyper-floor
//!   target/release/examples/hyper-floor 127.0.0.1:8080 127.0.0.1:8081
//!   target/release/examples/hyper-floor 127.0.0.1:8443 127.0.0.1:8081 --tls tls.crt tls.key

use std::net::SocketAddr;
use std::sync::Arc;

use hyper::body::Incoming;
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

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(upstream)) = (args.next(), args.next()) else {
        eprintln!("usage: hyper-floor LISTEN_ADDR UPSTREAM_ADDR [--tls CERT KEY]");
        std::process::exit(2);
    };
    let tls = match (args.next().as_deref(), args.next(), args.next()) {
        (None, ..) => None,
        (Some("--tls"), Some(cert), Some(key)) => {
            Some(tokio_rustls::TlsAcceptor::from(tls_config(&cert, &key)))
        }
        _ => {
            eprintln!("usage: hyper-floor LISTEN_ADDR UPSTREAM_ADDR [--tls CERT KEY]");
            std::process::exit(2);
        }
    };
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
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let client = client.clone();
            let tls = tls.clone();
            tokio::spawn(async move {
                let service = service_fn(move |mut req: Request<Incoming>| {
                    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
                    let uri = format!("http://{upstream}{path}");
                    *req.uri_mut() = uri.parse::<Uri>().expect("upstream URI");
                    // h2 in, HTTP/1.1 to the upstream (the client sets Host from the URI)
                    *req.version_mut() = Version::HTTP_11;
                    client.request(req)
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
