//! Forwarding to upstreams over pooled keep-alive connections (http and https; an extra trust
//! anchor per route). Bodies stream both ways; nothing is buffered. WebSocket upgrades are
//! spliced after the upstream answers 101 switching to `websocket` (any other 101 is refused).
//!
//! The pool is the proxy's own: one [`HostPool`] per distinct (trust anchor, scheme,
//! authority), resolved per route at startup, holding hyper HTTP/1 `SendRequest` handles
//! newest first. A request takes the newest connection that is ready (its previous response
//! fully read), or connects; the handle goes back as soon as the response head arrived and is
//! taken again only once hyper reports the connection ready. Compared with hyper-util's
//! legacy client this saves, per request, the pool key hashing, a checkout future, a spawned
//! task waiting for the connection to become idle again and an absolute-to-origin-form URI
//! rewrite.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::{Request, Response, StatusCode, Uri};
use http_body::Body as _;
use http_body_util::BodyExt;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

use crate::config::Config;
use crate::error::{Body, UpstreamError};
use crate::timer::LazyTimer;
use crate::tls_client::CaFile;
pub use crate::tls_client::Connector;

/// Idle connections are closed after this long unused.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// At most this many pooled connections per upstream.
const MAX_IDLE_PER_HOST: usize = 1024;

/// The upstream connection pools, one per route (routes to the same upstream with the same
/// trust share one).
#[derive(Clone)]
pub struct Upstreams {
    routes: Arc<[Arc<HostPool>]>,
}

/// Startup problems building the clients.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ClientBuildError {
    pub path: String,
    pub message: String,
}

fn build_connector(extra_ca: Option<&CaFile>) -> Result<Connector, ClientBuildError> {
    crate::tls_client::https_connector(extra_ca, Duration::from_secs(10)).map_err(|message| {
        ClientBuildError {
            path: extra_ca.map_or_else(|| "tls".into(), |c| c.path.display().to_string()),
            message,
        }
    })
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
}

struct Pooled {
    tx: SendRequest<Body>,
    clock: Arc<AnswerClock>,
    since: Instant,
}

/// A pooled connection: the handle to send on and the clock its reads check the answer's
/// deadline against.
type Conn = (SendRequest<Body>, Arc<AnswerClock>);

impl HostPool {
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
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < MAX_IDLE_PER_HOST {
            idle.push(Pooled {
                tx,
                clock,
                since: Instant::now(),
            });
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
    async fn request(
        self: &Arc<Self>,
        mut req: Request<Body>,
        timeout: Duration,
    ) -> Result<Response<hyper::body::Incoming>, UpstreamError> {
        let started = tokio::time::Instant::now();
        let bodiless = req.body().is_end_stream();
        loop {
            let ((mut tx, clock), reused) = match self.checkout() {
                Some(c) => (c, true),
                // Boxed: connecting is rare, and an inline connect future would be moved
                // along with every request's future. Connecting counts against the timeout.
                None => match tokio::time::timeout_at(started + timeout, Box::pin(self.connect()))
                    .await
                {
                    Ok(c) => (c?, false),
                    Err(_) => return Err(UpstreamError::Timeout(timeout)),
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
                Err(_) if clock.timed_out() => return Err(UpstreamError::Timeout(timeout)),
                Err(mut e) => match e.take_message() {
                    Some(r) if reused => req = r,
                    _ => return Err(send_failed(e.error())),
                },
            }
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
        let since = self.since.load(Ordering::Acquire);
        (since != 0).then(|| {
            let t = self.timeout_us.load(Ordering::Acquire);
            self.opened + Duration::from_micros((since - 1).saturating_add(t))
        })
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
            let Some(due) = this.clock.due() else {
                return Poll::Pending;
            };
            // Set it (earlier) only when the deadline in force is sooner than the timer.
            if this.timer.deadline().is_none_or(|at| at > due) {
                this.timer.set(due);
            }
            if this.timer.poll_fired(cx).is_pending() {
                return Poll::Pending;
            }
            // Fired: overdue, or a deadline that has moved on since the timer was set.
            if tokio::time::Instant::now() >= due {
                this.clock.timed_out.store(true, Ordering::Release);
                return Poll::Ready(Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "upstream answer timed out",
                )));
            }
            this.timer.set(due);
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

/// Closes connections idle longer than [`IDLE_TIMEOUT`]; ends with the pool.
async fn reap(pool: Weak<HostPool>) {
    let mut tick = tokio::time::interval(IDLE_TIMEOUT / 4);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(pool) = pool.upgrade() else { return };
        let now = Instant::now();
        let mut idle = pool.idle.lock().unwrap_or_else(|e| e.into_inner());
        // Closed, or ready (not streaming a response) and unused for too long: dropped.
        idle.retain(|p| {
            let expired = p.tx.is_ready() && now.duration_since(p.since) > IDLE_TIMEOUT;
            !(p.tx.is_closed() || expired)
        });
    }
}

impl Upstreams {
    pub fn new(cfg: &Config) -> Result<Self, ClientBuildError> {
        let mut connectors: HashMap<Option<CaFile>, Connector> = HashMap::new();
        let mut pools: HashMap<(Option<CaFile>, String), Arc<HostPool>> = HashMap::new();
        let mut routes = Vec::with_capacity(cfg.routes.len());
        for r in &cfg.routes {
            let ca = r.upstream_ca_file.clone();
            if !connectors.contains_key(&ca) {
                connectors.insert(ca.clone(), build_connector(ca.as_ref())?);
            }
            let target = format!("{}://{}/", r.upstream.scheme, r.upstream.authority);
            let pool = pools
                .entry((ca.clone(), target.clone()))
                .or_insert_with(|| {
                    Arc::new(HostPool {
                        target: target.parse().expect("scheme and authority form a URI"),
                        connector: connectors[&ca].clone(),
                        idle: Mutex::new(Vec::new()),
                        reaper: Once::new(),
                    })
                })
                .clone();
            routes.push(pool);
        }
        Ok(Upstreams {
            routes: routes.into(),
        })
    }

    /// Sends `req` (already addressed to the upstream) and gives the upstream `timeout` to
    /// answer, counted from the last request-body byte sent: an upload that keeps flowing is
    /// never cut, and a bodiless request gets `timeout` from the start. The response body then
    /// streams without a deadline.
    pub async fn send(
        &self,
        route: usize,
        req: Request<Body>,
        timeout: Duration,
    ) -> Result<Response<hyper::body::Incoming>, UpstreamError> {
        self.routes[route].request(req, timeout).await
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
pub fn client_body(body: hyper::body::Incoming) -> Body {
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

/// Converts an upstream response body into the proxy's body type (streaming).
pub fn box_response(resp: Response<hyper::body::Incoming>) -> Response<Body> {
    resp.map(|b| {
        b.map_err(|e| Box::new(e) as crate::error::BoxError)
            .boxed_unsync()
    })
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
