//! Forwarding to upstreams over pooled keep-alive connections (http and https; an extra trust
//! anchor per route). Bodies stream both ways; nothing is buffered. WebSocket upgrades are
//! spliced after the upstream answers 101.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::{Request, Response, StatusCode};
use http_body::Body as _;
use http_body_util::BodyExt;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

use crate::config::Config;
use crate::error::{Body, UpstreamError};

type HttpClient = Client<HttpsConnector<HttpConnector>, Body>;

/// The upstream clients, one per distinct trust configuration.
#[derive(Clone)]
pub struct Upstreams {
    default: HttpClient,
    with_ca: Arc<HashMap<PathBuf, HttpClient>>,
}

/// Startup problems building the clients.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ClientBuildError {
    pub path: String,
    pub message: String,
}

/// A rustls client config on the one crypto provider (aws-lc-rs), trusting the system roots
/// and, when given, the PEM certificates in `extra_ca`.
pub fn tls_client_config(
    extra_ca: Option<&Path>,
) -> Result<rustls::ClientConfig, ClientBuildError> {
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs_load();
    for c in native {
        let _ = roots.add(c);
    }
    if let Some(p) = extra_ca {
        let err = |m: String| ClientBuildError {
            path: p.display().to_string(),
            message: m,
        };
        let certs: Vec<_> = CertificateDer::pem_file_iter(p)
            .map_err(|e| err(format!("cannot read CA file: {e}")))?
            .collect::<Result<_, _>>()
            .map_err(|e| err(format!("malformed PEM: {e}")))?;
        if certs.is_empty() {
            return Err(err("no certificate in CA file".into()));
        }
        for c in certs {
            roots
                .add(c)
                .map_err(|e| err(format!("unusable CA certificate: {e}")))?;
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientBuildError {
            path: "tls".into(),
            message: e.to_string(),
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(cfg)
}

fn rustls_native_certs_load() -> Vec<rustls::pki_types::CertificateDer<'static>> {
    // The system store may be absent in slim images; then only configured CAs are trusted.
    rustls_native_certs::load_native_certs().certs
}

fn build_client(extra_ca: Option<&Path>) -> Result<HttpClient, ClientBuildError> {
    let tls = tls_client_config(extra_ca)?;
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(Duration::from_secs(10)));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(1024)
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .build(https))
}

impl Upstreams {
    pub fn new(cfg: &Config) -> Result<Self, ClientBuildError> {
        let mut with_ca = HashMap::new();
        for r in &cfg.routes {
            if let Some(ca) = &r.upstream_ca_file
                && !with_ca.contains_key(ca)
            {
                with_ca.insert(ca.clone(), build_client(Some(ca))?);
            }
        }
        Ok(Upstreams {
            default: build_client(None)?,
            with_ca: Arc::new(with_ca),
        })
    }

    fn client(&self, ca: Option<&PathBuf>) -> &HttpClient {
        ca.and_then(|c| self.with_ca.get(c))
            .unwrap_or(&self.default)
    }

    /// Sends `req` (already addressed to the upstream) and gives the upstream `timeout` to
    /// answer, counted from the last request-body byte sent: an upload that keeps flowing is
    /// never cut, and a bodiless request gets `timeout` from the start. The response body then
    /// streams without a deadline.
    pub async fn send(
        &self,
        ca: Option<&PathBuf>,
        req: Request<Body>,
        timeout: Duration,
    ) -> Result<Response<hyper::body::Incoming>, UpstreamError> {
        let started = tokio::time::Instant::now();
        // Bodiless requests (the common case) skip the progress tracking entirely.
        let (req, progress) = if req.body().is_end_stream() {
            (req, None)
        } else {
            let progress = Arc::new(Progress::default());
            let req = req.map(|inner| {
                Tracked {
                    inner,
                    progress: progress.clone(),
                    started,
                }
                .boxed_unsync()
            });
            (req, Some(progress))
        };
        let fut = self.client(ca).request(req);
        tokio::pin!(fut);
        let mut deadline = started + timeout;
        loop {
            tokio::select! {
                r = &mut fut => {
                    return r.map_err(|e| UpstreamError::Unreachable(describe(&e)));
                }
                _ = tokio::time::sleep_until(deadline) => {
                    // Extend while the request body is still flowing.
                    let last = progress.as_ref().map_or(started, |p| p.last(started));
                    if last + timeout > tokio::time::Instant::now() {
                        deadline = last + timeout;
                        continue;
                    }
                    return Err(UpstreamError::Timeout(timeout));
                }
            }
        }
    }
}

/// When the request body last moved, in µs since the request started.
#[derive(Default)]
struct Progress(AtomicU64);

impl Progress {
    fn last(&self, started: tokio::time::Instant) -> tokio::time::Instant {
        started + Duration::from_micros(self.0.load(Ordering::Relaxed))
    }
}

/// A request body that records in [`Progress`] each time a frame passes (or it ends).
struct Tracked {
    inner: Body,
    progress: Arc<Progress>,
    started: tokio::time::Instant,
}

impl http_body::Body for Tracked {
    type Data = bytes::Bytes;
    type Error = crate::error::BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_frame(cx);
        if polled.is_ready() {
            let micros = u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX);
            self.progress.0.store(micros, Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

fn describe(e: &hyper_util::client::legacy::Error) -> String {
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    msg
}

/// Converts an upstream response body into the proxy's body type (streaming).
pub fn box_response(resp: Response<hyper::body::Incoming>) -> Response<Body> {
    resp.map(|b| {
        b.map_err(|e| Box::new(e) as crate::error::BoxError)
            .boxed_unsync()
    })
}

/// Splices a client connection and an upstream connection after both sides agreed to upgrade.
pub fn splice_upgrade(
    client: hyper::upgrade::OnUpgrade,
    upstream_resp: &mut Response<hyper::body::Incoming>,
    route: Arc<str>,
) {
    if upstream_resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        return;
    }
    let upstream = hyper::upgrade::on(upstream_resp);
    tokio::spawn(async move {
        match tokio::try_join!(client, upstream) {
            Ok((c, u)) => {
                let mut c = TokioIo::new(c);
                let mut u = TokioIo::new(u);
                if let Err(e) = tokio::io::copy_bidirectional(&mut c, &mut u).await {
                    tracing::debug!(route = %route, error = %e, "upgraded connection ended");
                }
            }
            Err(e) => tracing::warn!(route = %route, error = %e, "upgrade failed"),
        }
    });
}
