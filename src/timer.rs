//! [`LazyTimer`]: one timer per connection for deadlines that move with every request.
//!
//! Registering a tokio timer costs about as much as a small request's own work, so per-request
//! deadlines (the head of the next request, the upstream's answer) keep one timer per
//! connection instead. Moving a deadline later does not touch the timer: when it fires, its
//! owner computes the deadline in force and either acts or sets the timer again.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::time::{Instant, Sleep};

#[derive(Default)]
pub struct LazyTimer {
    sleep: Option<Pin<Box<Sleep>>>,
    /// When `sleep` fires.
    at: Option<Instant>,
    /// `sleep` holds this task's waker since it was last set: checking `is_elapsed` suffices
    /// (polling a timer again costs about as much as registering it).
    polled: bool,
}

impl LazyTimer {
    /// A timer that fires at `at`.
    pub fn at(at: Instant) -> Self {
        let mut t = LazyTimer::default();
        t.set(at);
        t
    }

    /// Fires at `at` instead (creates the timer the first time).
    pub fn set(&mut self, at: Instant) {
        match &mut self.sleep {
            Some(s) => s.as_mut().reset(at),
            None => self.sleep = Some(Box::pin(tokio::time::sleep_until(at))),
        }
        self.at = Some(at);
        self.polled = false;
    }

    /// When it fires; `None` when not set.
    pub fn deadline(&self) -> Option<Instant> {
        self.at
    }

    /// Stops it for good (until set again).
    pub fn clear(&mut self) {
        self.sleep = None;
        self.at = None;
    }

    /// `Ready` once the time it was set to has come; never when not set.
    pub fn poll_fired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(sleep) = self.sleep.as_mut() else {
            return Poll::Pending;
        };
        if self.polled {
            return if sleep.is_elapsed() {
                Poll::Ready(())
            } else {
                Poll::Pending
            };
        }
        self.polled = true;
        sleep.as_mut().poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn fires_at_the_time_set_last() {
        async fn fired(t: &mut LazyTimer) -> bool {
            std::future::poll_fn(|cx| Poll::Ready(t.poll_fired(cx).is_ready())).await
        }
        let mut t = LazyTimer::at(Instant::now() + Duration::from_secs(1));
        assert!(!fired(&mut t).await);
        t.set(Instant::now() + Duration::from_secs(3));
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(!fired(&mut t).await, "moved later");
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(fired(&mut t).await);
        t.clear();
        assert!(!fired(&mut t).await, "cleared");
        assert_eq!(t.deadline(), None);
    }
}
