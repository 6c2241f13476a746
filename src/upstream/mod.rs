//! Forwarding to upstreams over pooled keep-alive connections (http and https; an extra trust
//! anchor per route). Bodies stream both ways; nothing is buffered. WebSocket upgrades are
//! spliced after the upstream answers 101 switching to `websocket` (any other 101 is refused).
//!
//! Each route target has a [`Pool`] by its protocol: HTTP/1.1 (here) or HTTP/2 (`h2c://`,
//! or ALPN on `https://`: [`h2`]); a route's targets are balanced by [`targets`].
//!
//! The HTTP/1.1 pool is the proxy's own: one [`HostPool`] per distinct (trust anchor, scheme,
//! authority), resolved per route target at startup, holding hyper HTTP/1 `SendRequest` handles
//! newest first. A request takes the newest connection that is ready (its previous response
//! fully read), or connects; the handle goes back as soon as the response head arrived and is
//! taken again only once hyper reports the connection ready. Compared with hyper-util's
//! legacy client this saves, per request, the pool key hashing, a checkout future, a spawned
//! task waiting for the connection to become idle again and an absolute-to-origin-form URI
//! rewrite.
//!
//! Which of a route's targets a request goes to, their ejection and the one retry:
//! [`targets`]. A route's `read_timeout` on response bodies: [`read_timeout`].

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response, StatusCode, Uri};
use http_body::Body as _;
use http_body_util::BodyExt;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

use crate::config::{Config, UpstreamProtocol};
use crate::error::{Body, UpstreamError};
use crate::metrics::Metrics;
use crate::timer::LazyTimer;
use crate::tls_client::Alpn;
use crate::tls_client::CaFile;
pub use crate::tls_client::Connector;

pub mod read_timeout;
pub mod targets;

/// Idle connections are closed after this long unused.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// At most this many pooled connections per upstream.
const MAX_IDLE_PER_HOST: usize = 1024;

/// The upstream connection pools, one per target (routes to the same upstream with the same
/// trust share one), and each route's targets ([`targets`]).
#[derive(Clone)]
pub struct Upstreams {
    routes: Arc<[targets::Targets]>,
}

mod h2;

/// The way to one upstream, by its protocol: HTTP/1.1 keep-alive connections, or HTTP/2
/// streams ([`h2`]).
#[derive(Clone)]
pub enum Pool {
    Http1(Arc<HostPool>),
    Http2(Arc<h2::H2Pool>),
}

impl Pool {
    /// A pool for `upstream` trusting `ca`; `connector` returns the connector offering the
    /// given ALPN protocols (built once per trust anchor and ALPN list).
    fn new(
        upstream: &crate::config::Upstream,
        mut connector: impl FnMut(Alpn) -> Result<Connector, ClientBuildError>,
    ) -> Result<Pool, ClientBuildError> {
        let target: Uri = format!("{}://{}/", upstream.scheme, upstream.authority)
            .parse()
            .map_err(|e| ClientBuildError {
                path: upstream.url.to_string(),
                message: format!("not a URI to connect to: {e}"),
            })?;
        let (mode, alpn, fallback) = match upstream.protocol {
            UpstreamProtocol::Http1 => {
                let pool = HostPool::new(target, connector(Alpn::Http1)?);
                return Ok(Pool::Http1(Arc::new(pool)));
            }
            UpstreamProtocol::H2c => (h2::Mode::PriorKnowledge, Alpn::Http1, None),
            UpstreamProtocol::H2 => (h2::Mode::Alpn, Alpn::H2, None),
            UpstreamProtocol::Auto => {
                let h1 = HostPool::new(target.clone(), connector(Alpn::Http1)?);
                (h2::Mode::Auto, Alpn::Both, Some(Arc::new(h1)))
            }
        };
        h2::H2Pool::new(target, connector(alpn)?, mode, fallback)
            .map(|p| Pool::Http2(Arc::new(p)))
            .ok_or_else(|| ClientBuildError {
                path: upstream.url.to_string(),
                message: "no scheme and host to connect to".into(),
            })
    }
    /// Sends `req`, telling on failure whether the target could be reached and
    /// giving the request back when none of it was sent. HTTP/2 keeps its request (its pool
    /// resends once itself on a closing connection), so only its ejection is decided here.
    pub(crate) async fn attempt(
        &self,
        req: Request<Body>,
        timeout: Duration,
    ) -> Result<Response<hyper::body::Incoming>, Failed> {
        match self {
            Pool::Http1(p) => p.attempt(req, timeout).await,
            Pool::Http2(p) => Box::pin(p.request(req, timeout))
                .await
                .map_err(|error| Failed {
                    connect: matches!(error, UpstreamError::Unreachable(_)),
                    error,
                    unsent: None,
                }),
        }
    }
}

/// Startup problems building the clients.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ClientBuildError {
    pub path: String,
    pub message: String,
}

#[cfg(test)]
fn build_connector(extra_ca: Option<&CaFile>) -> Result<Connector, ClientBuildError> {
    build_connector_alpn(extra_ca, Alpn::Http1)
}

fn build_connector_alpn(
    extra_ca: Option<&CaFile>,
    alpn: Alpn,
) -> Result<Connector, ClientBuildError> {
    crate::tls_client::https_connector_alpn(extra_ca, Duration::from_secs(10), alpn).map_err(
        |message| ClientBuildError {
            path: extra_ca.map_or_else(|| "tls".into(), |c| c.path.display().to_string()),
            message,
        },
    )
}

/// Keep-alive HTTP/1 connections to one upstream.
pub struct HostPool {
    /// `scheme://authority/`: what the connector dials.
    target: Uri,
    connector: Connector,
    /// Newest last. Entries may be busy (response body still streaming) or closed; both are
    /// skipped (closed ones dropped) at checkout.
    idle: Mutex<Vec<Pooled>>,
    reaper: Once,
    /// The reaper's rounds so far (every [`IDLE_TIMEOUT`] / 4): when a connection was last
    /// put back, without a clock read per request.
    round: AtomicU64,
}

struct Pooled {
    tx: SendRequest<Body>,
    clock: Arc<AnswerClock>,
    /// The reaper's round when it was last put back.
    round: u64,
}

/// A pooled connection: the handle to send on and the clock its reads check the answer's
/// deadline against.
type Conn = (SendRequest<Body>, Arc<AnswerClock>);

impl HostPool {
    fn new(target: Uri, connector: Connector) -> Self {
        HostPool {
            target,
            connector,
            idle: Mutex::new(Vec::new()),
            reaper: Once::new(),
            round: AtomicU64::new(0),
        }
    }

    /// The newest connection ready for a request, if any.
    fn checkout(&self) -> Option<Conn> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let mut i = idle.len();
        while i > 0 {
            i -= 1;
            if idle[i].tx.is_closed() {
                idle.swap_remove(i);
            } else if idle[i].tx.is_ready() {
                let p = idle.swap_remove(i);
                return Some((p.tx, p.clock));
            }
        }
        None
    }

    fn put(&self, (tx, clock): Conn) {
        if tx.is_closed() {
            return;
        }
        let round = self.round.load(Ordering::Relaxed);
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < MAX_IDLE_PER_HOST {
            idle.push(Pooled { tx, clock, round });
        }
    }

    async fn connect(self: &Arc<Self>) -> Result<Conn, UpstreamError> {
        self.reaper.call_once(|| {
            tokio::spawn(reap(Arc::downgrade(self)));
        });
        let io = tower::ServiceExt::oneshot(self.connector.clone(), self.target.clone())
            .await
            .map_err(|e| UpstreamError::Unreachable(describe(&*e)))?;
        let clock = Arc::new(AnswerClock::new());
        let io = AnswerDeadline {
            inner: io,
            clock: clock.clone(),
            timer: LazyTimer::default(),
            timer_us: None,
        };
        let (tx, conn) = hyper::client::conn::http1::Builder::new()
            .handshake(io)
            .await
            .map_err(|e| UpstreamError::Unreachable(describe(&e)))?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(error = %e, "upstream connection ended with an error");
            }
        });
        Ok((tx, clock))
    }

    /// Sends `req` (origin-form URI) on a pooled or new connection and waits for the answer's
    /// head, for at most `timeout` after the last request byte (see [`Upstreams::send`]). A
    /// request that a pooled connection closed before taking (the upstream ended the
    /// keep-alive at that moment) is sent again on another connection.
    pub(crate) async fn request(
        self: &Arc<Self>,
        req: Request<Body>,
        timeout: Duration,
    ) -> Result<Response<hyper::body::Incoming>, UpstreamError> {
        self.attempt(req, timeout).await.map_err(|f| f.error)
    }

    /// [`request`](Self::request), telling on failure whether the target could be reached and
    /// giving the request back when none of it was sent (so it may go to another target).
    pub(crate) async fn attempt(
        self: &Arc<Self>,
        mut req: Request<Body>,
        timeout: Duration,
    ) -> Result<Response<hyper::body::Incoming>, Failed> {
        // Read when first connecting (a pooled connection needs no clock here): only
        // connections that closed before taking the request come before it.
        let mut started = None;
        let bodiless = req.body().is_end_stream();
        loop {
            let ((mut tx, clock), reused) = match self.checkout() {
                Some(c) => (c, true),
                // Boxed: connecting is rare, and an inline connect future would be moved
                // along with every request's future. Connecting counts against the timeout.
                None => match tokio::time::timeout_at(
                    *started.get_or_insert_with(tokio::time::Instant::now) + timeout,
                    Box::pin(self.connect()),
                )
                .await
                {
                    Ok(Ok(c)) => (c, false),
                    Ok(Err(error)) => return Err(Failed::connecting(error, req)),
                    Err(_) => return Err(Failed::connecting(UpstreamError::Timeout(timeout), req)),
                },
            };
            // Bodiless requests (the common case) skip the progress tracking entirely.
            if !bodiless {
                let clock = clock.clone();
                req = req.map(|inner| Tracked { inner, clock }.boxed_unsync());
            }
            let awaiting = clock.expect_answer(timeout);
            match tx.try_send_request(req).await {
                Ok(resp) => {
                    drop(awaiting);
                    self.put((tx, clock));
                    return Ok(resp);
                }
                Err(_) if clock.timed_out() => {
                    return Err(Failed::sent(UpstreamError::Timeout(timeout)));
                }
                Err(mut e) => match e.take_message() {
                    Some(r) if reused => req = r,
                    unsent => {
                        return Err(Failed {
                            error: send_failed(e.error()),
                            unsent,
                            connect: false,
                        });
                    }
                },
            }
        }
    }
}

/// A failed [`HostPool::attempt`].
pub(crate) struct Failed {
    pub error: UpstreamError,
    /// The request, when no byte of it reached the target.
    pub unsent: Option<Request<Body>>,
    /// The target could not be connected to (refused, unreachable, timed out, TLS handshake).
    pub connect: bool,
}

impl Failed {
    fn connecting(error: UpstreamError, req: Request<Body>) -> Self {
        Failed {
            error,
            unsent: Some(req),
            connect: true,
        }
    }
    fn sent(error: UpstreamError) -> Self {
        Failed {
            error,
            unsent: None,
            connect: false,
        }
    }
}

/// When the answer to the request in flight on an upstream connection is due: `timeout` after
/// the request was sent or its body last moved. Shared by the request and the connection's
/// reads ([`AnswerDeadline`]), so a request costs two atomic stores instead of a timer.
struct AnswerClock {
    opened: tokio::time::Instant,
    /// When the request was sent or its body last moved, in µs since `opened` plus one; 0 when
    /// no answer is awaited (idle, or the answer's head arrived: bodies stream without one).
    since: AtomicU64,
    timeout_us: AtomicU64,
    timed_out: AtomicBool,
}

impl AnswerClock {
    fn new() -> Self {
        AnswerClock {
            opened: tokio::time::Instant::now(),
            since: AtomicU64::new(0),
            timeout_us: AtomicU64::new(0),
            timed_out: AtomicBool::new(false),
        }
    }

    fn now_us(&self) -> u64 {
        u64::try_from(self.opened.elapsed().as_micros()).unwrap_or(u64::MAX - 1) + 1
    }

    /// Starts waiting for an answer; the guard stops waiting when dropped (answer, error, or
    /// the client gave up).
    fn expect_answer(&self, timeout: Duration) -> Awaiting<'_> {
        let t = u64::try_from(timeout.as_micros()).unwrap_or(u64::MAX / 2);
        self.timeout_us.store(t, Ordering::Release);
        self.since.store(self.now_us(), Ordering::Release);
        Awaiting(self)
    }

    /// The request body moved: the deadline starts again.
    fn progressed(&self) {
        if self.since.load(Ordering::Acquire) != 0 {
            self.since.store(self.now_us(), Ordering::Release);
        }
    }

    /// The awaited answer's deadline, if one is awaited.
    fn due(&self) -> Option<tokio::time::Instant> {
        self.due_us().map(|us| self.at(us))
    }

    /// [`due`](Self::due) in µs since `opened`: no clock arithmetic for the reads that only
    /// compare it with the timer's.
    fn due_us(&self) -> Option<u64> {
        let since = self.since.load(Ordering::Acquire);
        (since != 0).then(|| {
            let t = self.timeout_us.load(Ordering::Acquire);
            (since - 1).saturating_add(t)
        })
    }

    fn at(&self, us: u64) -> tokio::time::Instant {
        self.opened + Duration::from_micros(us)
    }

    fn timed_out(&self) -> bool {
        self.timed_out.load(Ordering::Acquire)
    }
}

struct Awaiting<'a>(&'a AnswerClock);

impl Drop for Awaiting<'_> {
    fn drop(&mut self) {
        self.0.since.store(0, Ordering::Release);
    }
}

/// An upstream connection's IO that fails its reads once an awaited answer is overdue (hyper
/// then fails the request, answered 504). The timer is lazy: one per connection, moved only
/// when it fires before the deadline in force, so back-to-back requests do not each register
/// one.
struct AnswerDeadline<T> {
    inner: T,
    clock: Arc<AnswerClock>,
    timer: LazyTimer,
    /// The timer's deadline as [`AnswerClock::due_us`] counts.
    timer_us: Option<u64>,
}

impl<T: hyper::rt::Read + Unpin> hyper::rt::Read for AnswerDeadline<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if let Poll::Ready(r) = Pin::new(&mut this.inner).poll_read(cx, buf) {
            return Poll::Ready(r);
        }
        loop {
            let Some(due) = this.clock.due_us() else {
                return Poll::Pending;
            };
            // Set it (earlier) only when the deadline in force is sooner than the timer.
            if this.timer_us.is_none_or(|at| at > due) {
                this.timer.set(this.clock.at(due));
                this.timer_us = Some(due);
            }
            if this.timer.poll_fired(cx).is_pending() {
                return Poll::Pending;
            }
            // Fired: overdue, or a deadline that has moved on since the timer was set.
            if this.clock.now_us() > due {
                this.clock.timed_out.store(true, Ordering::Release);
                return Poll::Ready(Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "upstream answer timed out",
                )));
            }
            this.timer.set(this.clock.at(due));
            this.timer_us = Some(due);
        }
    }
}

impl<T: hyper::rt::Write + Unpin> hyper::rt::Write for AnswerDeadline<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Rounds of the reaper a connection may stay unused: between [`IDLE_TIMEOUT`] and 5/4 of it.
const IDLE_ROUNDS: u64 = 4;

/// Closes connections idle longer than [`IDLE_TIMEOUT`] (up to a quarter more: it looks every
/// quarter); ends with the pool.
async fn reap(pool: Weak<HostPool>) {
    let mut tick = tokio::time::interval(IDLE_TIMEOUT / 4);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(pool) = pool.upgrade() else { return };
        let round = pool.round.fetch_add(1, Ordering::Relaxed) + 1;
        let mut idle = pool.idle.lock().unwrap_or_else(|e| e.into_inner());
        // Closed, or ready (not streaming a response) and unused for too long: dropped.
        idle.retain(|p| {
            let expired = p.tx.is_ready() && round - p.round > IDLE_ROUNDS;
            !(p.tx.is_closed() || expired)
        });
    }
}

impl Upstreams {
    /// The pools and targets of `cfg`'s routes. `previous` (on a reload): the running ones,
    /// whose targets' health carries over where route and target are unchanged.
    pub fn new(
        cfg: &Config,
        metrics: &Metrics,
        previous: Option<&Upstreams>,
    ) -> Result<Self, ClientBuildError> {
        let mut connectors: HashMap<(Option<CaFile>, Alpn), Connector> = HashMap::new();
        type Key = (Option<CaFile>, String, UpstreamProtocol);
        let mut pools: HashMap<Key, Pool> = HashMap::new();
        let mut routes = Vec::with_capacity(cfg.routes.len());
        for r in &cfg.routes {
            let ca = r.upstream_ca_file.clone();
            let mut route_pools = Vec::with_capacity(r.targets.len());
            for t in &r.targets {
                let target = format!("{}://{}/", t.scheme, t.authority);
                let key = (ca.clone(), target, t.protocol);
                let pool = match pools.get(&key) {
                    Some(p) => p.clone(),
                    None => {
                        let p = Pool::new(t, |alpn| {
                            if let Some(c) = connectors.get(&(ca.clone(), alpn)) {
                                return Ok(c.clone());
                            }
                            let c = build_connector_alpn(ca.as_ref(), alpn)?;
                            connectors.insert((ca.clone(), alpn), c.clone());
                            Ok(c)
                        })?;
                        pools.insert(key, p.clone());
                        p
                    }
                };
                route_pools.push(pool);
            }
            let before = previous.and_then(|p| p.routes.iter().find(|t| t.name() == r.name));
            routes.push(targets::Targets::new(r, route_pools, metrics, before));
        }
        if let Some(p) = previous {
            targets::forget_removed(&p.routes, &routes, metrics);
        }
        Ok(Upstreams {
            routes: routes.into(),
        })
    }

    /// Sends `req` (already addressed to the upstream) to one of the route's targets and gives
    /// it `timeout` to answer, counted from the last request-body byte sent: an upload that
    /// keeps flowing is never cut, and a bodiless request gets `timeout` from the start. The
    /// response body then streams without a deadline (unless the route has a `read_timeout`).
    pub async fn send(
        &self,
        route: usize,
        req: Request<Body>,
        timeout: Duration,
    ) -> Result<Response<hyper::body::Incoming>, UpstreamError> {
        self.routes[route].send(req, timeout).await
    }
}

/// A request body that restarts its connection's answer deadline each time a frame passes
/// (or it ends).
struct Tracked {
    inner: Body,
    clock: Arc<AnswerClock>,
}

impl http_body::Body for Tracked {
    type Data = bytes::Bytes;
    type Error = crate::error::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if polled.is_ready() {
            self.clock.progressed();
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

/// The client's request body, as the upstream request's body. Its read errors (a malformed
/// chunk, a body cut short) are marked as the client's, so that a send that fails on them is
/// not blamed on the upstream ([`UpstreamError::ClientBody`]).
pub fn client_body<B>(body: B) -> Body
where
    B: http_body::Body<Data = bytes::Bytes, Error = hyper::Error> + Send + 'static,
{
    body.map_err(|e| Box::new(ClientBodyError(e)) as crate::error::BoxError)
        .boxed_unsync()
}

/// A read error of the client's request body.
#[derive(Debug)]
struct ClientBodyError(hyper::Error);

impl std::fmt::Display for ClientBodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "reading the client's request body: {}", self.0)
    }
}

impl std::error::Error for ClientBodyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

/// Whether a failed send failed on the client's request body (hyper reports the body's error
/// as the cause of its own).
fn is_client_body_error(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if err.is::<ClientBodyError>() {
            return true;
        }
        cur = err.source();
    }
    false
}

/// What a failed send becomes: the client's fault when its body broke, else the upstream's.
fn send_failed(e: &hyper::Error) -> UpstreamError {
    if is_client_body_error(e) {
        UpstreamError::ClientBody(describe(e))
    } else {
        UpstreamError::Unreachable(describe(e))
    }
}

impl UpstreamError {
    /// The `kind` label of `upstream_errors_total` this error counts under; `None` for a
    /// client's fault, which is no upstream error.
    pub fn metric_kind(&self) -> Option<&'static str> {
        match self {
            UpstreamError::Timeout(_) => Some("timeout"),
            UpstreamError::Unreachable(_) | UpstreamError::BadRequest(_) => Some("unreachable"),
            UpstreamError::BadResponse(_) => Some("bad_response"),
            UpstreamError::ClientBody(_) => None,
        }
    }
}

/// An error and its chain of causes, joined by ": " (for log lines).
pub(crate) fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    msg
}

/// Splices a client connection and an upstream connection after both sides agreed to upgrade
/// to WebSocket. `client` is `None` when the client did not ask for a WebSocket on a WebSocket
/// route. Called for a `101` only; refuses (nothing spliced, the upstream connection dropped)
/// a 101 the client did not ask for, or one switching to anything but `websocket`
/// (`Upgrade: h2c` would hand the client a raw HTTP/2 connection to the upstream, past every
/// check).
pub fn splice_upgrade(
    client: Option<hyper::upgrade::OnUpgrade>,
    upstream_resp: &mut Response<hyper::body::Incoming>,
    route: Arc<str>,
) -> Result<(), UpstreamError> {
    if upstream_resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        return Ok(());
    }
    let Some(client) = client else {
        return Err(UpstreamError::BadResponse(
            "101 Switching Protocols to a request that asked for no WebSocket".into(),
        ));
    };
    if !crate::headers::upgrades_to_websocket(upstream_resp.headers()) {
        let to = upstream_resp
            .headers()
            .get_all(http::header::UPGRADE)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect::<Vec<_>>()
            .join(", ");
        return Err(UpstreamError::BadResponse(format!(
            "101 Switching Protocols to {to:?} instead of \"websocket\""
        )));
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
    Ok(())
}

#[cfg(test)]
mod tests {
    //! The pool's contract, against raw loopback upstreams that count their connections: a
    //! finished connection is reused, a busy or closed one is not, pools do not share
    //! connections, and the answer deadline and connect failures surface as their errors.

    use std::net::SocketAddr;
    use std::sync::atomic::AtomicUsize;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;
    use std::time::Instant;

    /// What the test upstream does on each connection.
    #[derive(Clone, Copy)]
    enum Mode {
        /// Answers every request on the connection (keep-alive).
        KeepAlive,
        /// Answers one request, then closes the connection.
        CloseAfterOne,
        /// Reads the request and never answers.
        Silent,
        /// Answers every request, its body 300 ms after its head (keep-alive).
        SlowBody,
    }

    const ANSWER: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";

    /// An upstream on loopback; the number of connections it accepted.
    async fn upstream(mode: Mode) -> (SocketAddr, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let mut head = Vec::new();
                    loop {
                        let Ok(n) = s.read(&mut buf).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        head.extend_from_slice(&buf[..n]);
                        // One bodiless request per head.
                        while let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                            head.drain(..end + 4);
                            match mode {
                                Mode::Silent => {}
                                Mode::KeepAlive => {
                                    if s.write_all(ANSWER).await.is_err() {
                                        return;
                                    }
                                }
                                Mode::SlowBody => {
                                    let (head, body) = ANSWER.split_at(ANSWER.len() - 2);
                                    if s.write_all(head).await.is_err() {
                                        return;
                                    }
                                    tokio::time::sleep(Duration::from_millis(300)).await;
                                    if s.write_all(body).await.is_err() {
                                        return;
                                    }
                                }
                                Mode::CloseAfterOne => {
                                    let _ = s.write_all(ANSWER).await;
                                    return;
                                }
                            }
                        }
                    }
                });
            }
        });
        (addr, accepted)
    }

    fn pool(addr: SocketAddr) -> Arc<HostPool> {
        Arc::new(HostPool::new(
            format!("http://{addr}/").parse().expect("uri"),
            build_connector(None).expect("connector"),
        ))
    }

    fn get() -> Request<Body> {
        Request::get("/")
            .body(crate::error::empty())
            .expect("request")
    }

    const TIMEOUT: Duration = Duration::from_secs(5);

    /// One request, its body read to the end (which makes the connection ready again).
    async fn roundtrip(pool: &Arc<HostPool>) {
        let resp = pool.request(get(), TIMEOUT).await.expect("answer");
        assert_eq!(resp.status(), StatusCode::OK);
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        assert_eq!(&body[..], b"ok");
    }

    /// Waits (bounded) until the pool's idle connections are ready again.
    async fn settle(pool: &Arc<HostPool>) {
        for _ in 0..100 {
            let ready = {
                let idle = pool.idle.lock().unwrap_or_else(|e| e.into_inner());
                idle.iter().all(|p| p.tx.is_ready() || p.tx.is_closed())
            };
            if ready {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn a_finished_connection_is_reused() {
        let (addr, accepted) = upstream(Mode::KeepAlive).await;
        let pool = pool(addr);
        for _ in 0..5 {
            roundtrip(&pool).await;
            settle(&pool).await;
        }
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            1,
            "one connection for five requests"
        );
        assert_eq!(pool.idle.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_connection_still_streaming_its_answer_is_not_shared() {
        let (addr, accepted) = upstream(Mode::SlowBody).await;
        let pool = pool(addr);
        // The first answer's body has not arrived yet: its connection is busy.
        let first = pool.request(get(), TIMEOUT).await.expect("first answer");
        let second = pool.request(get(), TIMEOUT).await.expect("second answer");
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            2,
            "the busy connection was not taken"
        );
        for resp in [first, second] {
            let body = resp.into_body().collect().await.expect("body").to_bytes();
            assert_eq!(&body[..], b"ok");
        }
        settle(&pool).await;
        roundtrip(&pool).await;
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            2,
            "both went back to the pool"
        );
    }

    #[tokio::test]
    async fn a_connection_the_upstream_closed_is_not_reused() {
        let (addr, accepted) = upstream(Mode::CloseAfterOne).await;
        let pool = pool(addr);
        roundtrip(&pool).await;
        // Whether or not the close was seen before the next request, it gets an answer on a
        // new connection (a request the closed connection did not take is sent again).
        roundtrip(&pool).await;
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
        // Once the close is seen, checkout drops the connection instead of handing it out.
        for _ in 0..100 {
            if pool.idle.lock().unwrap().iter().all(|p| p.tx.is_closed()) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(
            pool.checkout().is_none(),
            "a closed connection was handed out"
        );
        assert!(
            pool.idle.lock().unwrap().is_empty(),
            "checkout keeps closed connections"
        );
    }

    #[tokio::test]
    async fn pools_do_not_share_connections() {
        let (a, accepted_a) = upstream(Mode::KeepAlive).await;
        let (b, accepted_b) = upstream(Mode::KeepAlive).await;
        let (pool_a, pool_b) = (pool(a), pool(b));
        roundtrip(&pool_a).await;
        settle(&pool_a).await;
        roundtrip(&pool_b).await;
        settle(&pool_b).await;
        roundtrip(&pool_a).await;
        assert_eq!(accepted_a.load(Ordering::SeqCst), 1);
        assert_eq!(accepted_b.load(Ordering::SeqCst), 1);
        assert_eq!(pool_b.idle.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn an_unanswered_request_times_out_and_its_connection_is_not_reused() {
        let (addr, accepted) = upstream(Mode::Silent).await;
        let pool = pool(addr);
        let started = Instant::now();
        let err = pool
            .request(get(), Duration::from_millis(200))
            .await
            .expect_err("no answer");
        assert!(matches!(err, UpstreamError::Timeout(_)), "{err:?}");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        // The timed-out connection is gone: the next request connects anew.
        let _ = pool.request(get(), Duration::from_millis(200)).await;
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn an_upstream_that_refuses_connections_is_unreachable() {
        let addr = {
            let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            l.local_addr().expect("addr")
        };
        let err = pool(addr)
            .request(get(), TIMEOUT)
            .await
            .expect_err("refused");
        assert!(matches!(err, UpstreamError::Unreachable(_)), "{err:?}");
    }
}
