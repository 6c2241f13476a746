//! The request-head deadline (slowloris): a client gets `header_read_timeout` to send each
//! request head, counted from when the connection opened (first request) or from when the
//! previous response was sent (later requests on an HTTP/1 keep-alive connection). A head that
//! started arriving but did not finish gets `408` and the connection closes; a keep-alive
//! connection that stays silent is closed without an answer (as nginx does: a `408` there could
//! cross a request the client is just sending). A request body that takes longer than the
//! timeout, or an upstream that does, is not a slow head: the deadline is off while a request
//! is in flight.
//!
//! HTTP/2 is covered too: the server's preface (written at once) rules out the HTTP/1 `408`
//! text, so a connection that negotiates h2 and never completes a request is closed at the
//! deadline; after that, one with no stream in flight for the timeout is closed, as an idle
//! HTTP/1 keep-alive connection is. Without that, a client could hold a place in the listener's
//! connection cap for ever with one request per connection. A stream counts as in flight from
//! its head until its response was sent or the stream was abandoned ([`InFlight`]).
//!
//! The timer is lazy: one `Sleep` per connection, moved only when it fires early (a request was
//! in flight, or a later head started waiting). Requests that come and go within the timeout
//! cost two relaxed atomic stores and one clock read, not a timer registration each.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

use crate::error::BoxError;
use crate::timer::LazyTimer;

const RESPONSE_408: &[u8] =
    b"HTTP/1.1 408 Request Timeout\r\nconnection: close\r\ncontent-type: text/plain\r\ncontent-length: 25\r\n\r\nrequest header timed out\n";

/// What the service tells the connection's deadline: a request started, its response ended.
/// Shared by the connection's IO wrapper and its requests; HTTP/1 uses it from one task, so
/// relaxed atomics suffice.
pub struct HeadClock {
    opened: Instant,
    /// Requests started on this connection.
    started: AtomicU64,
    /// The last request whose response ended; `== started` when no request is in flight.
    ended: AtomicU64,
    /// When the last response ended, in ms since `opened`.
    idle_since_ms: AtomicU64,
    /// An upgraded connection: no deadline any more.
    off: AtomicBool,
    /// HTTP/2 (from its first request on): `in_flight` counts its open streams, and
    /// `idle_since_ms` is when the last one ended.
    h2: AtomicBool,
    in_flight: AtomicU64,
}

impl HeadClock {
    /// A request head was parsed: returns the handle whose drop (with the response body, or
    /// with the request's future when it is abandoned) starts the wait for the next head.
    pub fn request_started(self: &Arc<Self>, http2: bool) -> InFlight {
        if http2 {
            self.h2.store(true, Ordering::Relaxed);
            self.in_flight.fetch_add(1, Ordering::Relaxed);
        }
        let seq = self.started.fetch_add(1, Ordering::Relaxed) + 1;
        InFlight {
            clock: self.clone(),
            seq,
        }
    }

    /// The connection leaves HTTP (a `101 Switching Protocols` answer).
    pub fn turn_off(&self) {
        self.off.store(true, Ordering::Relaxed);
    }

    fn request_ended(&self, seq: u64) {
        let now_ms = || u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        if self.h2.load(Ordering::Relaxed) {
            // Streams end on their own tasks: the time is stored before the count drops, so
            // whoever sees the count at 0 (Acquire) sees this time or a later one.
            self.idle_since_ms.store(now_ms(), Ordering::Relaxed);
            self.in_flight.fetch_sub(1, Ordering::Release);
        } else if self.started.load(Ordering::Relaxed) == seq {
            self.idle_since_ms.store(now_ms(), Ordering::Relaxed);
            self.ended.store(seq, Ordering::Relaxed);
        }
    }
}

/// A request in flight on a connection; dropped when its response was sent or abandoned
/// (the client reset the stream, the connection failed), which starts the wait for the next
/// head (HTTP/1) or the idle time (HTTP/2).
pub struct InFlight {
    clock: Arc<HeadClock>,
    seq: u64,
}

impl InFlight {
    /// The connection leaves HTTP (a `101 Switching Protocols` answer).
    pub fn upgraded(&self) {
        self.clock.turn_off();
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.clock.request_ended(self.seq);
    }
}

/// The body of every response on a listener: the proxy's body, and the request it answers
/// (in flight until this body is dropped).
pub struct ResponseBody {
    inner: super::panic::Answer,
    _in_flight: InFlight,
}

impl ResponseBody {
    pub fn new(inner: super::panic::Answer, in_flight: InFlight) -> Self {
        ResponseBody {
            inner,
            _in_flight: in_flight,
        }
    }
}

impl http_body::Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

pub struct HeadDeadline<T> {
    inner: T,
    timeout: Duration,
    clock: Arc<HeadClock>,
    /// Cleared once the deadline is off for good.
    timer: LazyTimer,
    /// The server wrote before the first request (the HTTP/2 preface, or an HTTP/1 error
    /// answer): the `408` text would not be a valid answer, so the deadline only closes.
    wrote_before_first: bool,
    /// Bytes arrived while waiting for the head after this many requests (a started head).
    head_bytes_after: Option<u64>,
    /// The connection's place in its listener's cap (`accept`), given back with the socket:
    /// this IO lives on in an upgraded (WebSocket) connection, and so does the place.
    _slot: OwnedSemaphorePermit,
}

impl<T> HeadDeadline<T> {
    pub fn new(inner: T, timeout: Duration, slot: OwnedSemaphorePermit) -> (Self, Arc<HeadClock>) {
        let opened = Instant::now();
        let clock = Arc::new(HeadClock {
            opened,
            started: AtomicU64::new(0),
            ended: AtomicU64::new(0),
            idle_since_ms: AtomicU64::new(0),
            off: AtomicBool::new(false),
            h2: AtomicBool::new(false),
            in_flight: AtomicU64::new(0),
        });
        let io = HeadDeadline {
            inner,
            timeout,
            clock: clock.clone(),
            timer: LazyTimer::at(opened + timeout),
            wrote_before_first: false,
            head_bytes_after: None,
            _slot: slot,
        };
        (io, clock)
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> HeadDeadline<T> {
    /// Polls the lazy timer; `Ready` when the head deadline has passed.
    fn poll_deadline(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            if self.timer.poll_fired(cx).is_pending() {
                return Poll::Pending;
            }
            let clock = &*self.clock;
            if clock.off.load(Ordering::Relaxed) {
                self.timer.clear();
                return Poll::Pending;
            }
            let started = clock.started.load(Ordering::Relaxed);
            let due = if clock.h2.load(Ordering::Relaxed) {
                if clock.in_flight.load(Ordering::Acquire) != 0 {
                    Instant::now() + self.timeout
                } else {
                    let since = Duration::from_millis(clock.idle_since_ms.load(Ordering::Relaxed));
                    clock.opened + since + self.timeout
                }
            } else if clock.ended.load(Ordering::Relaxed) != started {
                // A request in flight: look again in a timeout (it may end any moment).
                Instant::now() + self.timeout
            } else {
                let since = Duration::from_millis(clock.idle_since_ms.load(Ordering::Relaxed));
                clock.opened + since + self.timeout
            };
            if due <= Instant::now() {
                return Poll::Ready(());
            }
            self.timer.set(due);
        }
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncRead for HeadDeadline<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before && this.timer.deadline().is_some() {
                    let started = this.clock.started.load(Ordering::Relaxed);
                    if this.clock.ended.load(Ordering::Relaxed) == started {
                        this.head_bytes_after = Some(started);
                    }
                }
                return Poll::Ready(Ok(()));
            }
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => {}
        }
        if this.poll_deadline(cx).is_pending() {
            return Poll::Pending;
        }
        this.timer.clear();
        let started = this.clock.started.load(Ordering::Relaxed);
        let answer = if this.clock.h2.load(Ordering::Relaxed) {
            // An idle HTTP/2 connection: just closed (HTTP/1 text has no place in it).
            false
        } else if started == 0 {
            !this.wrote_before_first
        } else {
            this.head_bytes_after == Some(started)
        };
        if answer {
            // Best effort: nothing is being written at this point, so this does not block.
            let _ = Pin::new(&mut this.inner).poll_write(cx, RESPONSE_408);
            let _ = Pin::new(&mut this.inner).poll_flush(cx);
        }
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "request header read timeout",
        )))
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncWrite for HeadDeadline<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.note_write();
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.note_write();
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl<T> HeadDeadline<T> {
    fn note_write(&mut self) {
        if !self.wrote_before_first && self.clock.started.load(Ordering::Relaxed) == 0 {
            self.wrote_before_first = true;
        }
    }
}
