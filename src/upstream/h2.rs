//! HTTP/2 to upstreams: `h2c://` (prior knowledge, no TLS) and `https://` with
//! `upstream_protocol = "h2"` (ALPN must choose `h2`, else 502) or `"auto"` (ALPN decides; an
//! upstream that chooses `http/1.1` is served by an HTTP/1.1 [`HostPool`] from then on, until
//! the next reload).
//!
//! Requests are streams multiplexed on few connections per upstream: one, opened on first use
//! (one connect at a time: a burst of first requests shares it), and up to [`MAX_CONNS`] while
//! many requests wait for their answers at once (one connection is one task on each side, which
//! would serialize a busy route); streams go round robin over them. A connection the upstream
//! closed is dropped, and a request it did not take (GOAWAY) is sent again on another. Bodies stream both ways with their trailers (gRPC status), under HTTP/2 flow control:
//! the proxy reads an upstream's response body only as fast as its client takes it, so a
//! stream holds at most [`STREAM_WINDOW`] in the proxy, a connection at most [`CONN_WINDOW`]
//! (a connection whose window is filled by stalled clients makes its other streams wait: that
//! is the price of multiplexing).
//!
//! The answer's deadline is the HTTP/1 pool's: `timeout` after the request was sent or its
//! body last moved, here kept per request (an HTTP/2 connection carries many at once).
//! Keep-alive pings find a connection that died silently.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, Uri, Version, header};
use http_body::Body as _;
use http_body_util::BodyExt;
use hyper::client::conn::http2::SendRequest;
use hyper_util::client::legacy::connect::Connection as _;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::{AnswerClock, Connector, HostPool, Tracked, describe, send_failed};
use crate::error::{Body, UpstreamError};

/// Flow-control window of one stream: what a stalled client can leave buffered in the proxy.
pub const STREAM_WINDOW: u32 = 1024 * 1024;
/// Flow-control window of one connection (all its streams together).
pub const CONN_WINDOW: u32 = 16 * 1024 * 1024;
/// A ping after this long without frames checks the connection; no answer within
/// [`PING_TIMEOUT`] closes it.
const PING_INTERVAL: Duration = Duration::from_secs(30);
const PING_TIMEOUT: Duration = Duration::from_secs(20);
/// Connections per upstream at most.
pub const MAX_CONNS: usize = 4;
/// Requests awaiting their answers per connection beyond which another connection is opened.
const BUSY: usize = 8;
/// Largest header list the proxy accepts from an upstream (its answers' heads and trailers).
const MAX_HEADER_LIST: u32 = 64 * 1024;

/// How the connection to the upstream becomes HTTP/2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `h2c://`: the connection speaks HTTP/2 from its first byte.
    PriorKnowledge,
    /// `https://` + `"h2"`: ALPN must choose `h2`.
    Alpn,
    /// `https://` + `"auto"`: ALPN chooses; `http/1.1` goes to the fallback pool.
    Auto,
}

/// HTTP/2 streams to one upstream.
pub struct H2Pool {
    /// `scheme://authority/`: what the connector dials.
    target: Uri,
    /// `:scheme` and the default `:authority` of the requests.
    scheme: Scheme,
    authority: Authority,
    connector: Connector,
    mode: Mode,
    /// The connections in use (closed ones are dropped at the next request).
    conns: Mutex<Vec<SendRequest<Body>>>,
    /// Round robin over `conns`.
    next: AtomicUsize,
    /// Requests sent and not yet answered (their heads).
    waiting: AtomicUsize,
    /// Held while opening the first connection: a burst of first requests shares it.
    connecting: tokio::sync::Mutex<()>,
    /// Another connection is being opened in the background.
    growing: AtomicBool,
    /// [`Mode::Auto`]: the HTTP/1.1 pool, used once ALPN chose `http/1.1`.
    fallback: Option<Arc<HostPool>>,
    chose_http1: AtomicBool,
}

impl H2Pool {
    /// A pool dialing `target` (`scheme://authority/`) with `connector` (which offers `h2` by
    /// ALPN for [`Mode::Alpn`], `h2` and `http/1.1` for [`Mode::Auto`]); `fallback` is the
    /// HTTP/1.1 pool of [`Mode::Auto`].
    pub fn new(
        target: Uri,
        connector: Connector,
        mode: Mode,
        fallback: Option<Arc<HostPool>>,
    ) -> Option<Self> {
        let scheme = target.scheme()?.clone();
        let authority = target.authority()?.clone();
        Some(H2Pool {
            target,
            scheme,
            authority,
            connector,
            mode,
            conns: Mutex::new(Vec::new()),
            next: AtomicUsize::new(0),
            waiting: AtomicUsize::new(0),
            connecting: tokio::sync::Mutex::new(()),
            growing: AtomicBool::new(false),
            fallback,
            chose_http1: AtomicBool::new(false),
        })
    }

    /// Sends `req` (origin-form URI; its `Host` becomes `:authority`) and gives the upstream
    /// `timeout` to answer, counted from the last request-body byte sent (as
    /// [`super::Upstreams::send`]). Connecting counts against it.
    pub async fn request(
        self: &Arc<Self>,
        req: Request<Body>,
        timeout: Duration,
    ) -> Result<Response<hyper::body::Incoming>, UpstreamError> {
        let clock = Arc::new(AnswerClock::new());
        let req = if req.body().is_end_stream() {
            req
        } else {
            let c = clock.clone();
            req.map(|inner| Tracked { inner, clock: c }.boxed_unsync())
        };
        let _awaiting = clock.expect_answer(timeout);
        let _waiting = Waiting::new(&self.waiting);
        let send = self.send(req, timeout);
        tokio::pin!(send);
        loop {
            let Some(due) = clock.due() else {
                return send.await;
            };
            match tokio::time::timeout_at(due, &mut send).await {
                Ok(answer) => return answer,
                // The body moved meanwhile: the deadline moved with it.
                Err(_) if clock.due().is_some_and(|d| d > due) => continue,
                Err(_) => return Err(UpstreamError::Timeout(timeout)),
            }
        }
    }

    async fn send(
        self: &Arc<Self>,
        req: Request<Body>,
        timeout: Duration,
    ) -> Result<Response<hyper::body::Incoming>, UpstreamError> {
        let Some(mut tx) = self.sender().await? else {
            return self.fallback(req, timeout).await;
        };
        let req = self.address(req)?;
        match tx.try_send_request(req).await {
            Ok(resp) => Ok(resp),
            Err(mut e) => match e.take_message() {
                // Not taken: the connection was closing (GOAWAY). Once more on a new one.
                Some(req) => {
                    let Some(mut tx) = self.sender().await? else {
                        return Err(UpstreamError::Unreachable(
                            "the upstream stopped speaking HTTP/2".into(),
                        ));
                    };
                    tx.send_request(req).await.map_err(|e| send_failed(&e))
                }
                None => Err(send_failed(e.error())),
            },
        }
    }

    /// [`Mode::Auto`] after ALPN chose `http/1.1`: the HTTP/1.1 pool, without the `TE:
    /// trailers` kept for HTTP/2.
    async fn fallback(
        &self,
        mut req: Request<Body>,
        timeout: Duration,
    ) -> Result<Response<hyper::body::Incoming>, UpstreamError> {
        let Some(pool) = &self.fallback else {
            return Err(UpstreamError::Unreachable(
                "the upstream did not agree to HTTP/2".into(),
            ));
        };
        req.headers_mut().remove(header::TE);
        pool.request(req, timeout).await
    }

    /// The connection to send on: the current one, or a new one (`None`: ALPN chose
    /// `http/1.1` in [`Mode::Auto`]).
    async fn sender(self: &Arc<Self>) -> Result<Option<SendRequest<Body>>, UpstreamError> {
        if let Some(tx) = self.current() {
            return Ok(Some(tx));
        }
        let _one_at_a_time = self.connecting.lock().await;
        if let Some(tx) = self.current() {
            return Ok(Some(tx));
        }
        if self.chose_http1.load(Ordering::Acquire) {
            return Ok(None);
        }
        let Some(tx) = self.connect().await? else {
            self.chose_http1.store(true, Ordering::Release);
            return Ok(None);
        };
        self.add(tx.clone());
        Ok(Some(tx))
    }

    /// A live connection, round robin; starts opening another when requests pile up.
    fn current(self: &Arc<Self>) -> Option<SendRequest<Body>> {
        if self.chose_http1.load(Ordering::Acquire) {
            return None;
        }
        let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        conns.retain(|tx| !tx.is_closed());
        if conns.is_empty() {
            return None;
        }
        let n = conns.len();
        let tx = conns[self.next.fetch_add(1, Ordering::Relaxed) % n].clone();
        drop(conns);
        if n < MAX_CONNS && self.waiting.load(Ordering::Relaxed) > n * BUSY {
            self.grow();
        }
        Some(tx)
    }

    fn add(&self, tx: SendRequest<Body>) {
        let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        if conns.len() < MAX_CONNS {
            conns.push(tx);
        }
    }

    /// Opens one more connection in the background (one at a time; a failure is logged, and
    /// the next busy moment tries again).
    fn grow(self: &Arc<Self>) {
        if self.growing.swap(true, Ordering::AcqRel) {
            return;
        }
        let pool = self.clone();
        tokio::spawn(async move {
            match pool.connect().await {
                Ok(Some(tx)) => pool.add(tx),
                Ok(None) => {}
                Err(e) => tracing::debug!(error = %e, "opening another upstream HTTP/2 connection"),
            }
            pool.growing.store(false, Ordering::Release);
        });
    }

    async fn connect(&self) -> Result<Option<SendRequest<Body>>, UpstreamError> {
        let io = tower::ServiceExt::oneshot(self.connector.clone(), self.target.clone())
            .await
            .map_err(|e| UpstreamError::Unreachable(describe(&*e)))?;
        if self.mode != Mode::PriorKnowledge && !io.connected().is_negotiated_h2() {
            return match self.mode {
                Mode::Auto => Ok(None),
                _ => Err(UpstreamError::Unreachable(
                    "the upstream did not choose HTTP/2 by ALPN (upstream_protocol = \"h2\"); \
                     use upstream_protocol = \"auto\" or \"http1\" for it"
                        .into(),
                )),
            };
        }
        let (tx, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .initial_stream_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONN_WINDOW)
            .max_header_list_size(MAX_HEADER_LIST)
            .keep_alive_interval(PING_INTERVAL)
            .keep_alive_timeout(PING_TIMEOUT)
            .keep_alive_while_idle(true)
            .handshake(io)
            .await
            .map_err(|e| UpstreamError::Unreachable(describe(&e)))?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "upstream HTTP/2 connection ended with an error");
            }
        });
        Ok(Some(tx))
    }

    /// The request as an HTTP/2 stream: absolute URI (`:scheme`, `:authority` from `Host` or
    /// the upstream's, `:path`), no `Host` header.
    fn address(&self, mut req: Request<Body>) -> Result<Request<Body>, UpstreamError> {
        let authority = match req.headers_mut().remove(header::HOST) {
            Some(h) => Authority::try_from(h.as_bytes())
                .map_err(|e| UpstreamError::BadRequest(format!("Host as :authority: {e}")))?,
            None => self.authority.clone(),
        };
        let mut parts = std::mem::take(req.uri_mut()).into_parts();
        parts.scheme = Some(self.scheme.clone());
        parts.authority = Some(authority);
        if parts.path_and_query.is_none() {
            parts.path_and_query = Some(PathAndQuery::from_static("/"));
        }
        *req.uri_mut() =
            Uri::from_parts(parts).map_err(|e| UpstreamError::BadRequest(e.to_string()))?;
        *req.version_mut() = Version::HTTP_2;
        Ok(req)
    }
}

/// Counts a request as waiting for its answer while it lives.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn new(n: &'a AtomicUsize) -> Self {
        n.fetch_add(1, Ordering::Relaxed);
        Waiting(n)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    //! The HTTP/2 pool against a real hyper HTTP/2 (h2c) upstream that counts its connections.

    use std::sync::atomic::AtomicUsize;

    use hyper_util::rt::TokioIo;

    use super::*;

    /// An h2c upstream answering `200 ok` after `delay`; the number of connections it accepted.
    async fn upstream(delay: Duration) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |_req| async move {
                        tokio::time::sleep(delay).await;
                        Ok::<_, std::convert::Infallible>(Response::new(crate::error::full("ok")))
                    });
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(s), svc)
                        .await;
                });
            }
        });
        (addr, accepted)
    }

    fn pool(addr: std::net::SocketAddr) -> Arc<H2Pool> {
        let connector =
            crate::tls_client::https_connector(None, Duration::from_secs(5)).expect("connector");
        let target = format!("http://{addr}/").parse().unwrap();
        Arc::new(H2Pool::new(target, connector, Mode::PriorKnowledge, None).unwrap())
    }

    fn get() -> Request<Body> {
        Request::get("/x").body(crate::error::empty()).unwrap()
    }

    /// 200 requests at once travel as streams on at most [`MAX_CONNS`] connections; requests
    /// one after another reuse one.
    #[tokio::test]
    async fn streams_share_few_connections() {
        let (addr, accepted) = upstream(Duration::from_millis(50)).await;
        let pool = pool(addr);
        let calls = (0..200).map(|_| {
            let p = pool.clone();
            tokio::spawn(async move { p.request(get(), Duration::from_secs(10)).await })
        });
        for c in calls.collect::<Vec<_>>() {
            let resp = c.await.unwrap().expect("answer");
            assert_eq!(resp.status(), 200);
        }
        let n = accepted.load(Ordering::SeqCst);
        assert!((1..=MAX_CONNS).contains(&n), "{n} connections");
        for _ in 0..5 {
            let resp = pool.request(get(), Duration::from_secs(10)).await.unwrap();
            assert_eq!(resp.status(), 200);
        }
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            n,
            "sequential requests reuse"
        );

        let (addr, accepted) = upstream(Duration::ZERO).await;
        let pool = super::tests::pool(addr);
        for _ in 0..20 {
            pool.request(get(), Duration::from_secs(10)).await.unwrap();
        }
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            1,
            "one connection when nothing piles up"
        );
    }

    /// An upstream that answers too late: 504 after `timeout`, not later.
    #[tokio::test]
    async fn a_late_answer_times_out() {
        let (addr, _) = upstream(Duration::from_secs(5)).await;
        let started = std::time::Instant::now();
        let err = pool(addr)
            .request(get(), Duration::from_millis(200))
            .await
            .expect_err("too late");
        assert!(matches!(err, UpstreamError::Timeout(_)), "{err:?}");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
    }
}
