//! Listeners: plain HTTP, TLS (h2 + http/1.1), the admin listener; graceful shutdown.
//!
//! Each connection, on every listener, gets a head deadline (slowloris → 408) and a head size
//! cap (→ 431). Each listener keeps at most its share of the open-file limit open and backs off
//! when accepting fails (`accept`). A TLS connection's SNI goes with its requests, which must
//! name the same host (else `421`, in the pipeline). On shutdown the listeners stop accepting
//! and in-flight requests get `drain_timeout` to finish. The config reloads without a restart
//! (`reload`): each request takes the current [`Proxy`] once.

pub mod accept;
mod admin;
mod drain;
mod io;
mod panic;
pub mod reload;
pub mod tls;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use crate::auth::AuthState;
use crate::config::{Config, LoadOptions};
use crate::error::{Body, BoxError, json_error};
use crate::health::Health;
use crate::metrics::Metrics;
use crate::proxy::Proxy;
use crate::request::ConnInfo;
use crate::upstream::Upstreams;
use reload::{Live, ReloadError};

/// Why the proxy could not start; names the address or file and the reason.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        addr: SocketAddr,
        what: &'static str,
        source: std::io::Error,
    },
    #[error("TLS: {0}")]
    Tls(String),
    #[error("upstream client: {0}")]
    Client(#[from] crate::upstream::ClientBuildError),
    #[error(transparent)]
    Auth(#[from] crate::auth::SetupError),
}

/// A running proxy (used by `run` and by in-process tests).
pub struct Running {
    pub http_addr: Option<SocketAddr>,
    pub https_addr: Option<SocketAddr>,
    pub admin_addr: Option<SocketAddr>,
    /// The proxy serving now and its reloads.
    pub live: Arc<Live>,
    shutdown: watch::Sender<bool>,
    done: tokio::task::JoinHandle<()>,
}

impl Running {
    /// The proxy serving now (the config of the last successful reload).
    pub fn proxy(&self) -> Arc<Proxy> {
        self.live.current()
    }

    /// Loads the config file again, as `SIGHUP` does; the old config keeps serving when it is
    /// invalid.
    pub async fn reload(&self) -> Result<(), ReloadError> {
        self.live.reload("requested").await
    }

    /// Stops accepting, lets in-flight requests finish (up to `drain_timeout`), then returns.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.done.await;
    }
}

/// How many established connections the kernel holds for a listener that is not accepting
/// (one at its connection cap: `accept`); the kernel caps it at `net.core.somaxconn`. Tokio's
/// default (128, std's) would drop the SYNs of a modest burst instead, leaving those clients
/// to retransmit after a second or more.
const BACKLOG: u32 = 1024;

fn bind(addr: SocketAddr, what: &'static str) -> Result<TcpListener, StartupError> {
    let err = |source| StartupError::Bind { addr, what, source };
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    }
    .map_err(err)?;
    // As std and tokio do on Unix: a restarted proxy can bind while old connections linger.
    #[cfg(unix)]
    socket.set_reuseaddr(true).map_err(err)?;
    socket.bind(addr).map_err(err)?;
    socket.listen(BACKLOG).map_err(err)
}

/// The connection builders, all with the same settings: by ALPN on TLS connections (HTTP/2 or
/// HTTP/1.1, as the floor does), and hyper-util's `auto` where the protocol is read from the
/// first bytes (plain listeners: HTTP/1.1 or h2c prior knowledge; a TLS client without ALPN).
/// On a negotiated protocol the direct builders skip `auto`'s version sniffing, its
/// rewind buffer around every read and a state match on every poll.
pub(crate) struct Builders {
    auto: auto::Builder<TokioExecutor>,
    h1: http1::Builder,
    h2: http2::Builder<TokioExecutor>,
}

fn conn_builder(cfg: &Config) -> Builders {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        // The head deadline is `io::HeadDeadline`'s (a lazy timer per connection, and a 408):
        // hyper's own would register a timer per request.
        .timer(TokioTimer::new())
        .header_read_timeout(None)
        .max_buf_size(cfg.server.max_header_bytes);
    b.http2()
        .timer(TokioTimer::new())
        .max_header_list_size(cfg.server.max_header_bytes as u32)
        .max_concurrent_streams(250);
    let mut h1 = http1::Builder::new();
    h1.timer(TokioTimer::new())
        .header_read_timeout(None)
        .max_buf_size(cfg.server.max_header_bytes);
    let mut h2 = http2::Builder::new(TokioExecutor::new());
    h2.timer(TokioTimer::new())
        .max_header_list_size(cfg.server.max_header_bytes as u32)
        .max_concurrent_streams(250);
    Builders { auto: b, h1, h2 }
}

/// Binds every listener and starts serving. Listening sockets are bound before this returns,
/// so port 0 can be used and the bound addresses read back.
pub async fn start(config: Config) -> Result<Running, StartupError> {
    start_with(config, LoadOptions::default()).await
}

/// [`start`]; a reload loads the file with `options` (its `--env-file`).
pub async fn start_with(config: Config, options: LoadOptions) -> Result<Running, StartupError> {
    let config = Arc::new(config);
    let metrics = Arc::new(Metrics::new());
    let health = Arc::new(Health::new());
    let upstreams = Upstreams::new(&config, &metrics, None)?;
    upstreams.report_to(&health);
    let auth = AuthState::new(config.clone()).map_err(StartupError::Auth)?;
    let proxy = Arc::new(Proxy::new(
        config.clone(),
        upstreams,
        metrics.clone(),
        auth,
        health.clone(),
    ));
    let live = Arc::new(Live::new(proxy.clone(), options));

    let (tx, rx) = watch::channel(false);
    let graceful = Arc::new(GracefulShutdown::new());
    let signal = Arc::new(drain::Drain::default());
    let builder = Arc::new(conn_builder(&config));
    let mut tasks = Vec::new();

    let caps = accept::Caps::for_process(config.server.max_connections);
    if let Some(w) = caps.warning() {
        tracing::warn!("{w}");
    }
    tracing::info!(
        max_connections = caps.public,
        admin_max_connections = caps.admin,
        open_file_limit = caps.nofile,
        "connection caps"
    );
    // The public listeners share one cap: it is one budget of descriptors.
    let public_slots = Arc::new(Semaphore::new(caps.public));
    let listener = |l: TcpListener, name: &'static str, slots: &Arc<Semaphore>, cap: usize| {
        accept::Listener::new(l, name, slots.clone(), cap, &metrics)
    };

    let mut https_addr = None;
    if let Some(t) = &config.server.tls {
        let tls_cfg = tls::server_config(t).map_err(StartupError::Tls)?;
        let l = bind(t.listen, "[server.tls] listen")?;
        https_addr = l.local_addr().ok();
        tracing::info!(addr = ?https_addr, "listening (https)");
        let acceptor = tokio_rustls::TlsAcceptor::from(tls_cfg);
        tasks.push(tokio::spawn(accept_loop(
            listener(l, "https", &public_slots, caps.public),
            Some(acceptor),
            live.clone(),
            builder.clone(),
            (graceful.clone(), signal.clone()),
            rx.clone(),
            None,
        )));
    }
    let mut http_addr = None;
    if let Some(addr) = config.server.listen {
        let l = bind(addr, "[server] listen")?;
        http_addr = l.local_addr().ok();
        tracing::info!(addr = ?http_addr, "listening (http)");
        // Redirect to the port clients reach the TLS listener on: an https `public_url`'s port
        // (behind port mapping the bound port is not what clients see), else the port the TLS
        // listener actually bound (it may be configured as 0).
        let public_https_port = config
            .server
            .public_url
            .as_ref()
            .filter(|u| u.scheme() == "https")
            .and_then(|u| u.port_or_known_default());
        let redirect = config
            .server
            .tls
            .as_ref()
            .filter(|t| t.redirect_http)
            .map(|t| {
                public_https_port
                    .unwrap_or_else(|| https_addr.map_or(t.listen.port(), |a| a.port()))
            });
        tasks.push(tokio::spawn(accept_loop(
            listener(l, "http", &public_slots, caps.public),
            None,
            live.clone(),
            builder.clone(),
            (graceful.clone(), signal.clone()),
            rx.clone(),
            redirect,
        )));
    }
    let mut admin_addr = None;
    if let Some(addr) = config.server.admin_listen {
        let l = bind(addr, "[server] admin_listen")?;
        admin_addr = l.local_addr().ok();
        tracing::info!(addr = ?admin_addr, "listening (admin)");
        let admin_slots = Arc::new(Semaphore::new(caps.admin));
        tasks.push(tokio::spawn(admin::serve(
            listener(l, "admin", &admin_slots, caps.admin),
            builder.clone(),
            live.clone(),
            metrics.clone(),
            health.clone(),
            rx.clone(),
        )));
    }

    proxy.auth.start_background(health.clone());
    tasks.push(tokio::spawn(reload::watch(live.clone(), rx.clone())));

    let drain = config.server.drain_timeout;
    let mut rx_done = rx.clone();
    let done = tokio::spawn(async move {
        stopped(&mut rx_done).await;
        for t in tasks {
            let _ = t.await;
        }
        signal.start();
        let graceful = Arc::try_unwrap(graceful).unwrap_or_default();
        if tokio::time::timeout(drain, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!(?drain, "drain timeout: closing remaining connections");
        }
    });
    Ok(Running {
        http_addr,
        https_addr,
        admin_addr,
        live,
        shutdown: tx,
        done,
    })
}

/// Serves until SIGTERM or SIGINT, then shuts down gracefully; `SIGHUP` reloads the config
/// (loaded with `options`, as at start).
pub async fn run(config: Config, options: LoadOptions) -> Result<(), StartupError> {
    // Before the listeners start: SIGHUP's default action would end the process.
    #[cfg(unix)]
    let hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup());
    let running = start_with(config, options).await?;
    #[cfg(unix)]
    match hangup {
        Ok(mut s) => {
            let live = running.live.clone();
            tokio::spawn(async move {
                while s.recv().await.is_some() {
                    let _ = live.reload("SIGHUP").await;
                }
            });
        }
        Err(e) => tracing::warn!(error = %e, "cannot handle SIGHUP: reload by changing the file"),
    }
    shutdown_signal().await;
    tracing::info!("shutting down: no new connections; draining in-flight requests");
    running.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

#[allow(clippy::too_many_arguments)]
async fn accept_loop(
    mut listener: accept::Listener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    live: Arc<Live>,
    builder: Arc<Builders>,
    (graceful, drain): (Arc<GracefulShutdown>, Arc<drain::Drain>),
    mut shutdown: watch::Receiver<bool>,
    redirect_to_https: Option<u16>,
) {
    while let Some(accept::Accepted { stream, peer, slot }) = listener.next(&mut shutdown).await {
        let _ = stream.set_nodelay(true);
        // Counts the connection until it ends (`GracefulShutdown::shutdown` waits for it);
        // the signal to shut down comes from `drain`.
        let watcher = (graceful.watcher(), drain.clone());
        let live = live.clone();
        let builder = builder.clone();
        let tls = tls.clone();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            live.metrics.open_connections.inc();
            serve_connection(
                stream,
                peer,
                slot,
                tls,
                live.clone(),
                builder,
                watcher,
                stop,
                redirect_to_https,
            )
            .await;
            live.metrics.open_connections.dec();
        });
    }
}

#[allow(clippy::too_many_arguments)]
async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    // The connection's place in the listener's cap: held through the TLS handshake, then by
    // the connection's IO.
    slot: OwnedSemaphorePermit,
    tls: Option<tokio_rustls::TlsAcceptor>,
    live: Arc<Live>,
    builder: Arc<Builders>,
    watcher: (hyper_util::server::graceful::Watcher, Arc<drain::Drain>),
    mut stop: watch::Receiver<bool>,
    redirect_to_https: Option<u16>,
) {
    let head_timeout = live.current().config.server.header_read_timeout;
    match tls {
        Some(acceptor) => {
            // The handshake holds a drain watcher but is outside hyper's graceful shutdown:
            // abandon it on shutdown, or one stalled client delays exit by a whole timeout.
            let handshake = tokio::select! {
                r = tokio::time::timeout(head_timeout, acceptor.accept(stream)) => r,
                _ = stopped(&mut stop) => {
                    tracing::debug!(%peer, "shutting down: TLS handshake abandoned");
                    return;
                }
            };
            let tls_stream = match handshake {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let info = ConnInfo { peer, tls: true };
            // Once per connection; requests borrow it for the Host check.
            let sni = tls_stream.get_ref().1.server_name().map(Arc::<str>::from);
            let alpn = match tls_stream.get_ref().1.alpn_protocol() {
                Some(b"h2") => Alpn::H2,
                Some(b"http/1.1") => Alpn::Http1,
                _ => Alpn::None,
            };
            let (io, clock) = io::HeadDeadline::new(tls_stream, head_timeout, slot);
            serve_io(
                TokioIo::new(io),
                clock,
                info,
                sni,
                alpn,
                live,
                builder,
                watcher,
                None,
            )
            .await;
        }
        None => {
            let info = ConnInfo { peer, tls: false };
            let (io, clock) = io::HeadDeadline::new(stream, head_timeout, slot);
            serve_io(
                TokioIo::new(io),
                clock,
                info,
                None,
                Alpn::None,
                live,
                builder,
                watcher,
                redirect_to_https,
            )
            .await;
        }
    }
}

/// What every request on one connection is answered with.
struct ConnCtx {
    clock: Arc<io::HeadClock>,
    info: ConnInfo,
    // The TLS server name the client sent (none: plain HTTP, or a TLS client that sent none).
    sni: Option<Arc<str>>,
    live: Arc<Live>,
    redirect_to_https: Option<u16>,
}

impl ConnCtx {
    /// The answer to one request, as a future hyper polls until the response head is ready.
    fn answer(
        &self,
        req: Request<Incoming>,
    ) -> impl Future<Output = Result<Response<io::ResponseBody>, Infallible>> + Send + use<> {
        // A full head arrived: until its response has been sent the head deadline is off (slow
        // bodies and slow upstreams are not slowloris).
        let in_flight = self
            .clock
            .request_started(req.version() == http::Version::HTTP_2);
        // The config this request is judged by, to its end, whatever reloads meanwhile.
        let proxy = self.live.current();
        let (sni, info, redirect_to_https) = (self.sni.clone(), self.info, self.redirect_to_https);
        let answer = panic::catch_panic(req, move |req| async move {
            match redirect_to_https {
                Some(https_port) => https_redirect(https_port, &req),
                None => proxy.handle(req, info, sni.as_deref()).await,
            }
        });
        async move {
            let Ok(resp) = answer.await;
            if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
                in_flight.upgraded();
            }
            Ok::<_, Infallible>(resp.map(|b| io::ResponseBody::new(b, in_flight)))
        }
    }
}

/// The protocol a TLS connection negotiated by ALPN.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Alpn {
    H2,
    Http1,
    /// Plain HTTP, or a TLS client that offered no protocol: read from its first bytes.
    None,
}

/// Serves one connection. On HTTP/2 hyper spawns a task per stream, moving the request's
/// future into it several times over (`tokio::spawn` → task cell: ~3k instructions of
/// `memcpy` a request under callgrind for a future of a few kB), so that future is boxed: one
/// allocation and one move instead. HTTP/1 polls the future in place on the connection's task
/// and keeps it unboxed. (A plain connection that turns out to speak h2c gets the unboxed
/// future: `auto` takes one service for both protocols.)
#[allow(clippy::too_many_arguments)]
async fn serve_io<I>(
    io: I,
    clock: Arc<io::HeadClock>,
    info: ConnInfo,
    sni: Option<Arc<str>>,
    alpn: Alpn,
    live: Arc<Live>,
    builder: Arc<Builders>,
    (_counted, drain): (hyper_util::server::graceful::Watcher, Arc<drain::Drain>),
    redirect_to_https: Option<u16>,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let ctx = ConnCtx {
        clock,
        info,
        sni,
        live,
        redirect_to_https,
    };
    let ended = match alpn {
        Alpn::H2 => {
            let service = service_fn(move |req| Box::pin(ctx.answer(req)));
            drain
                .watch(builder.h2.serve_connection(io, service))
                .await
                .map_err(BoxError::from)
        }
        Alpn::Http1 => {
            let service = service_fn(move |req| ctx.answer(req));
            drain
                .watch(builder.h1.serve_connection(io, service).with_upgrades())
                .await
                .map_err(BoxError::from)
        }
        Alpn::None => {
            let service = service_fn(move |req| ctx.answer(req));
            drain
                .watch(
                    builder
                        .auto
                        .serve_connection_with_upgrades(io, service)
                        .into_owned(),
                )
                .await
        }
    };
    if let Err(e) = ended {
        tracing::debug!(peer = %info.peer, error = %e, "connection ended with an error");
    }
}

/// 308 from the plain listener to the TLS listener (`https_port`), same host, path and query.
fn https_redirect(https_port: u16, req: &Request<Incoming>) -> Response<Body> {
    let Some(host) = crate::request::request_host(req) else {
        return json_error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "missing Host header",
        );
    };
    // The Host header is unvalidated text: only a plain host[:port] may reach the Location.
    if let Err(e) = crate::request::check_host(req) {
        return e.into_response();
    }
    let hostname = match host.rsplit_once(':') {
        Some((h, port))
            if port.bytes().all(|b| b.is_ascii_digit()) && !h.ends_with(']')
                || h.starts_with('[') && h.ends_with(']') =>
        {
            h
        }
        _ => host,
    };
    let port = https_port;
    let authority = if port == 443 {
        hostname.to_string()
    } else {
        format!("{hostname}:{port}")
    };
    let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
    crate::error::redirect(
        StatusCode::PERMANENT_REDIRECT,
        &format!("https://{authority}{pq}"),
    )
}

/// Resolves once shutdown was requested (the watch guard is dropped before returning).
pub(crate) async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|v| *v).await;
}
