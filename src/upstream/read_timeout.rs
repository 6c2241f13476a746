//! A route's `read_timeout`: the longest the proxy waits for the next chunk of an upstream's
//! response body. Off by default — server-sent events and long polls stall by design.
//!
//! The clock runs only while the proxy waits on the upstream (from the moment it asks for the
//! next chunk), so a slow client reading at its own pace is never cut. On expiry the body ends
//! with an error: the status and headers have already gone to the client, so it sees a
//! truncated body (HTTP/1.1: the connection closes before the last chunk or the announced
//! length; HTTP/2: the stream is reset). The cut is logged with the route and counted in
//! `portcullis_upstream_errors_total{kind="read_timeout"}`.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;
use prometheus_client::metrics::counter::Counter;
use tokio::time::Instant;

use crate::error::{Body, BoxError};
use crate::timer::LazyTimer;

/// An upstream response body, cut when a chunk is `timeout` late.
pub fn limit(inner: Body, timeout: Duration, route: Arc<str>, cuts: Counter) -> Body {
    ReadTimeout {
        inner,
        timeout,
        waiting_since: None,
        timer: LazyTimer::default(),
        route,
        cuts,
    }
    .boxed_unsync()
}

struct ReadTimeout {
    inner: Body,
    timeout: Duration,
    /// When the proxy started waiting for the next chunk; `None` while not waiting.
    waiting_since: Option<Instant>,
    /// Set once per wait; when it fires early (a chunk came meanwhile), set again.
    timer: LazyTimer,
    route: Arc<str>,
    cuts: Counter,
}

/// The error the body ends with.
#[derive(Debug, thiserror::Error)]
#[error("the upstream sent no response body data for {0:?} (route read_timeout); response cut")]
struct Stalled(Duration);

impl http_body::Body for ReadTimeout {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            this.waiting_since = None;
            return Poll::Ready(frame);
        }
        let since = *this.waiting_since.get_or_insert_with(Instant::now);
        let due = since + this.timeout;
        loop {
            if this.timer.deadline().is_none_or(|at| at > due) {
                this.timer.set(due);
            }
            if this.timer.poll_fired(cx).is_pending() {
                return Poll::Pending;
            }
            if Instant::now() >= due {
                this.timer.clear();
                this.cuts.inc();
                tracing::warn!(
                    route = %this.route,
                    read_timeout_ms = this.timeout.as_millis() as u64,
                    "upstream response body stalled; cutting the response (its status was already sent)"
                );
                return Poll::Ready(Some(Err(Box::new(Stalled(this.timeout)))));
            }
            // Fired for an earlier wait: wait the rest of this one.
            this.timer.set(due);
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
