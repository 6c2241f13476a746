//! A connection wrapper that answers a slow first request head (slowloris) with `408` and
//! closes, instead of a silent hang or drop. Armed when the connection opens; disarmed as soon
//! as the first request head has been parsed ([`HeadSeen::mark`], called by the service). It
//! must not outlive the head: a request body that takes longer than the timeout to arrive, or an
//! upstream that takes longer to answer, is not a slow head.
//!
//! HTTP/2 is covered too: the server's preface (written at once) does not disarm it, so a
//! connection that negotiates h2 and never completes a request is closed at the deadline —
//! without the HTTP/1 `408` text, which an h2 client could not parse. Later requests on an
//! HTTP/1 keep-alive connection are covered by hyper's own header-read timeout (closed without
//! a `408`).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

const RESPONSE_408: &[u8] =
    b"HTTP/1.1 408 Request Timeout\r\nconnection: close\r\ncontent-type: text/plain\r\ncontent-length: 25\r\n\r\nrequest header timed out\n";

pub struct HeadDeadline<T> {
    inner: T,
    deadline: Option<Pin<Box<Sleep>>>,
    head_seen: Arc<AtomicBool>,
    /// The server wrote something (HTTP/2 preface, or an HTTP/1 error answer): the 408 text
    /// would no longer be a valid answer, so the deadline only closes.
    wrote: bool,
}

/// Tells a [`HeadDeadline`] that a complete request head arrived (the service was called).
#[derive(Clone)]
pub struct HeadSeen(Arc<AtomicBool>);

impl HeadSeen {
    pub fn mark(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

impl<T> HeadDeadline<T> {
    pub fn new(inner: T, timeout: Duration) -> (Self, HeadSeen) {
        let head_seen = Arc::new(AtomicBool::new(false));
        let io = HeadDeadline {
            inner,
            deadline: Some(Box::pin(tokio::time::sleep(timeout))),
            head_seen: head_seen.clone(),
            wrote: false,
        };
        (io, HeadSeen(head_seen))
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncRead for HeadDeadline<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.deadline.is_some() && this.head_seen.load(Ordering::Relaxed) {
            this.deadline = None;
        }
        if let Some(d) = this.deadline.as_mut()
            && d.as_mut().poll(cx).is_ready()
        {
            this.deadline = None;
            if !this.wrote {
                // Best effort: the socket buffer is empty at this point, so this does not block.
                let _ = Pin::new(&mut this.inner).poll_write(cx, RESPONSE_408);
                let _ = Pin::new(&mut this.inner).poll_flush(cx);
            }
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "request header read timeout",
            )));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncWrite for HeadDeadline<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.wrote = true;
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.wrote = true;
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
