//! Telling open connections that the proxy is shutting down, at no cost per request.
//!
//! hyper-util's `GracefulShutdown::watch` polls a `watch::Receiver::changed()` future every
//! time the connection's task is polled — a coop-budget check and the `Notify` waiter list's
//! lock, ~330 instructions a request under callgrind on an HTTP/1.1 keep-alive connection. Here
//! a connection registers its task's waker once, and each later poll only reads one flag (and
//! compares the waker, registering again in the rare case it changed). [`Drain::start`] sets the
//! flag and wakes every registered connection, whose next poll starts hyper's graceful
//! shutdown of it (in-flight requests finish, no new ones are read).
//!
//! Waiting for the connections to end stays hyper-util's `GracefulShutdown` (each connection
//! holds its `Watcher` until it ends; nothing polls it).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use hyper_util::rt::TokioExecutor;

/// The shutdown signal shared by a server's connections.
#[derive(Default)]
pub struct Drain {
    started: AtomicBool,
    wakers: Mutex<Wakers>,
}

/// Registered connections' wakers; freed places are reused.
#[derive(Default)]
struct Wakers {
    slots: Vec<Option<Waker>>,
    free: Vec<usize>,
}

impl Drain {
    /// Asks every connection, open now or opened later, to shut down gracefully.
    pub fn start(&self) {
        // Set before the wakers are read: a connection registering meanwhile either is woken
        // here or reads the flag after its registration (both go through the lock).
        self.started.store(true, Ordering::Release);
        let wakers = self.wakers.lock().unwrap_or_else(|e| e.into_inner());
        for w in wakers.slots.iter().flatten() {
            w.wake_by_ref();
        }
    }

    fn register(&self, slot: Option<usize>, waker: &Waker) -> usize {
        let mut wakers = self.wakers.lock().unwrap_or_else(|e| e.into_inner());
        let i = match slot {
            Some(i) => i,
            None => match wakers.free.pop() {
                Some(i) => i,
                None => {
                    wakers.slots.push(None);
                    wakers.slots.len() - 1
                }
            },
        };
        wakers.slots[i] = Some(waker.clone());
        i
    }

    fn unregister(&self, i: usize) {
        let mut wakers = self.wakers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = wakers.slots.get_mut(i) {
            *s = None;
            wakers.free.push(i);
        }
    }

    /// `conn`, shut down gracefully once [`start`](Self::start) was called.
    pub fn watch<C: Future + Graceful>(self: &Arc<Self>, conn: C) -> Watched<C> {
        Watched {
            conn: Box::pin(conn),
            drain: self.clone(),
            slot: None,
            waker: None,
            signalled: false,
        }
    }
}

/// A connection that can be asked to finish its in-flight requests and close.
pub trait Graceful {
    fn graceful_shutdown(self: Pin<&mut Self>);
}

impl<I, S, B> Graceful for hyper::server::conn::http1::UpgradeableConnection<I, S>
where
    S: hyper::service::HttpService<hyper::body::Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    B: http_body::Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn graceful_shutdown(self: Pin<&mut Self>) {
        hyper::server::conn::http1::UpgradeableConnection::graceful_shutdown(self);
    }
}

impl<I, S, B> Graceful for hyper::server::conn::http2::Connection<I, S, TokioExecutor>
where
    S: hyper::service::HttpService<hyper::body::Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    B: http_body::Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    TokioExecutor: hyper::rt::bounds::Http2ServerConnExec<S::Future, B>,
{
    fn graceful_shutdown(self: Pin<&mut Self>) {
        hyper::server::conn::http2::Connection::graceful_shutdown(self);
    }
}

impl<I, S, B> Graceful
    for hyper_util::server::conn::auto::UpgradeableConnection<'static, I, S, TokioExecutor>
where
    S: hyper::service::HttpService<hyper::body::Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    B: http_body::Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    TokioExecutor: hyper_util::server::conn::auto::HttpServerConnExec<S::Future, B>,
{
    fn graceful_shutdown(self: Pin<&mut Self>) {
        hyper_util::server::conn::auto::UpgradeableConnection::graceful_shutdown(self);
    }
}

/// A connection watched by a [`Drain`] (boxed once per connection: it is pinned in place).
pub struct Watched<C> {
    conn: Pin<Box<C>>,
    drain: Arc<Drain>,
    slot: Option<usize>,
    /// The waker registered in `slot`.
    waker: Option<Waker>,
    /// Told to shut down (once).
    signalled: bool,
}

impl<C> Drop for Watched<C> {
    fn drop(&mut self) {
        if let Some(i) = self.slot {
            self.drain.unregister(i);
        }
    }
}

impl<C: Future + Graceful> Future for Watched<C> {
    type Output = C::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<C::Output> {
        let this = &mut *self;
        if !this.signalled {
            if !this.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                this.slot = Some(this.drain.register(this.slot, cx.waker()));
                this.waker = Some(cx.waker().clone());
            }
            if this.drain.started.load(Ordering::Acquire) {
                this.signalled = true;
                this.conn.as_mut().graceful_shutdown();
            }
        }
        this.conn.as_mut().poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// A connection that ends one poll after it was asked to shut down; counts its polls.
    struct Fake {
        asked: bool,
        polls: Arc<AtomicUsize>,
    }

    impl Future for Fake {
        type Output = ();
        fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<()> {
            self.polls.fetch_add(1, Ordering::SeqCst);
            if self.asked {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        }
    }

    impl Graceful for Fake {
        fn graceful_shutdown(mut self: Pin<&mut Self>) {
            self.asked = true;
        }
    }

    #[tokio::test]
    async fn start_wakes_and_ends_every_open_connection_and_later_ones() {
        let drain = Arc::new(Drain::default());
        let polls = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..3)
            .map(|_| {
                let fake = Fake {
                    asked: false,
                    polls: polls.clone(),
                };
                tokio::spawn(drain.watch(fake))
            })
            .collect();
        // Each task polled its connection once (registering), then waits.
        for _ in 0..100 {
            if polls.load(Ordering::SeqCst) >= 3 {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(polls.load(Ordering::SeqCst), 3);
        drain.start();
        for t in tasks {
            tokio::time::timeout(std::time::Duration::from_secs(5), t)
                .await
                .expect("woken and ended")
                .expect("no panic");
        }
        // The places were given back.
        assert_eq!(drain.wakers.lock().unwrap().free.len(), 3);
        // A connection opened after the start ends at its first poll.
        let late = drain.watch(Fake {
            asked: false,
            polls: polls.clone(),
        });
        tokio::time::timeout(std::time::Duration::from_secs(5), late)
            .await
            .expect("ended at once");
    }
}
