//! Accepting connections: a cap on the connections each listener keeps open, and a back-off
//! when accepting fails.
//!
//! **Caps.** Every open client connection holds a file descriptor, and so does every upstream,
//! provider and Redis connection the proxy opens to serve it. Without a cap, a flood of idle
//! connections on one listener (the admin listener, say) uses up the process's descriptors and
//! the public listener stops serving. Defaults, from the soft open-file limit `n`
//! (`RLIMIT_NOFILE`, what `ulimit -n` shows) read at start:
//! - the public listeners (http and https together): `server.max_connections`, default
//!   `n × 7 / 10`;
//! - the admin listener: `min(64, n / 8)` (a scraper and a probe or two need a handful);
//! - the rest — about a quarter of `n` — stays for upstream, provider and Redis connections,
//!   the listening sockets, and files (certificates, config).
//!
//! With `ulimit -n 1024`: 716 public, 64 admin, 244 left. A proxied request in flight holds a
//! client and an upstream descriptor, so a proxy expected to have thousands of requests in
//! flight at once needs a larger limit, not a larger share.
//!
//! A connection holds its place until its socket closes — an upgraded (WebSocket) connection
//! too, for as long as it is spliced.
//!
//! At its cap a listener stops calling `accept(2)`: new connections wait, established, in the
//! kernel's backlog — which costs the process no descriptor — and are served in arrival order as
//! open ones close. Every open connection closes at the latest at its head deadline when it
//! sends nothing (`io::HeadDeadline`), so the wait is bounded. Accepting and closing at once
//! would instead spend a descriptor and three syscalls per refused connection and turn a client
//! that could have waited a moment into a reset one.
//!
//! **Back-off.** `accept(2)` fails with `EMFILE`/`ENFILE` (no descriptor), `ENOBUFS`/`ENOMEM`
//! while the connection stays queued, so retrying at once spins a core and logs without end.
//! After such an error a listener sleeps 10 ms, doubling up to 1 s, until an accept succeeds.
//! The log gets the first failure of a burst (then at most one line a minute, with the number
//! of failures since) and, when accepting works again, one line with the count. Errors that
//! concern one connection only (`ECONNABORTED`: the client left while queued) are skipped
//! without a pause.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;

use crate::metrics::{ListenerLabels, Metrics};

/// First pause after a failed accept; doubled per further failure.
const FIRST_PAUSE: Duration = Duration::from_millis(10);
/// Longest pause between tries.
const MAX_PAUSE: Duration = Duration::from_secs(1);
/// At most one warning per this long per listener and kind.
const LOG_EVERY: Duration = Duration::from_secs(60);
/// The admin listener's cap when the open-file limit allows it.
const ADMIN_CAP: usize = 64;

/// How many connections each kind of listener keeps open at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    /// The public listeners together.
    pub public: usize,
    pub admin: usize,
    /// The soft open-file limit they were sized from (`None`: unknown).
    pub nofile: Option<u64>,
}

impl Caps {
    /// The caps for this process: `configured` (`server.max_connections`) or the default
    /// share of the open-file limit for the public listeners, and the admin listener's share.
    pub fn for_process(configured: Option<usize>) -> Self {
        Self::from_limit(configured, nofile_soft_limit())
    }

    fn from_limit(configured: Option<usize>, nofile: Option<u64>) -> Self {
        // Unknown: the usual default limit. Unlimited (RLIM_INFINITY) or huge: a bound that
        // keeps the arithmetic and the semaphore in range.
        let n = usize::try_from(nofile.unwrap_or(1024).min(1 << 24)).unwrap_or(1 << 24);
        let admin = (n / 8).clamp(1, ADMIN_CAP);
        let public = configured
            .unwrap_or(n * 7 / 10)
            .clamp(1, Semaphore::MAX_PERMITS);
        Caps {
            public,
            admin,
            nofile,
        }
    }

    /// A warning when the configured cap leaves nothing of the open-file limit for upstream
    /// connections (then accepts fail with EMFILE instead of waiting at the cap).
    pub fn warning(&self) -> Option<String> {
        let n = self.nofile?;
        let wanted = u64::try_from(self.public + self.admin).unwrap_or(u64::MAX);
        (wanted.saturating_add(16) > n).then(|| {
            format!(
                "server.max_connections = {} (plus {} for the admin listener) does not fit the \
                 open-file limit of {n}: upstream connections need descriptors too. Raise the \
                 limit (ulimit -n, systemd LimitNOFILE=) or lower server.max_connections \
                 (leave it out for {})",
                self.public,
                self.admin,
                Self::from_limit(None, Some(n)).public
            )
        })
    }
}

#[cfg(unix)]
fn nofile_soft_limit() -> Option<u64> {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct it is given, which outlives the call.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) };
    #[allow(clippy::unnecessary_cast)] // rlim_t is u64 on Linux, not on every Unix
    (rc == 0).then_some(rl.rlim_cur as u64)
}

#[cfg(not(unix))]
fn nofile_soft_limit() -> Option<u64> {
    None
}

/// An accepted connection and the slot it holds in its listener's cap (freed on drop).
pub struct Accepted {
    pub stream: TcpStream,
    pub peer: SocketAddr,
    pub slot: OwnedSemaphorePermit,
}

/// A listening socket with its cap and back-off.
pub struct Listener {
    inner: TcpListener,
    name: &'static str,
    slots: Arc<Semaphore>,
    cap: usize,
    errors: Counter,
    at_capacity: Counter,
    backoff: Backoff,
    cap_log: Quiet,
}

impl Listener {
    /// `name` labels its metrics and log lines; `slots` (with `cap` permits) may be shared by
    /// several listeners.
    pub fn new(
        inner: TcpListener,
        name: &'static str,
        slots: Arc<Semaphore>,
        cap: usize,
        metrics: &Metrics,
    ) -> Self {
        let label = ListenerLabels { listener: name };
        Listener {
            inner,
            name,
            slots,
            cap,
            errors: metrics.accept_errors.get_or_create(&label).clone(),
            at_capacity: metrics.listener_at_capacity.get_or_create(&label).clone(),
            backoff: Backoff::default(),
            cap_log: Quiet::default(),
        }
    }

    /// The next connection, once there is room for it; `None` once shutdown was requested.
    pub async fn next(&mut self, shutdown: &mut watch::Receiver<bool>) -> Option<Accepted> {
        let slot = match self.slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                self.at_capacity.inc();
                if let Some(since) = self.cap_log.ready() {
                    tracing::warn!(
                        listener = self.name,
                        max_connections = self.cap,
                        times_since_last_report = since,
                        "connection cap reached: new connections wait in the kernel's backlog until open ones close"
                    );
                }
                tokio::select! {
                    _ = super::stopped(shutdown) => return None,
                    slot = self.slots.clone().acquire_owned() => slot.ok()?,
                }
            }
        };
        loop {
            let accepted = tokio::select! {
                _ = super::stopped(shutdown) => return None,
                r = self.inner.accept() => r,
            };
            match accepted {
                Ok((stream, peer)) => {
                    self.backoff.succeeded(self.name);
                    return Some(Accepted { stream, peer, slot });
                }
                Err(e) if concerns_one_connection(&e) => {
                    tracing::debug!(listener = self.name, error = %e, "accept: connection gone");
                }
                Err(e) => {
                    self.errors.inc();
                    let pause = self.backoff.failed(self.name, &e);
                    tokio::select! {
                        _ = super::stopped(shutdown) => return None,
                        _ = tokio::time::sleep(pause) => {}
                    }
                }
            }
        }
    }
}

/// Errors about the one connection being accepted, not the listener (`accept(2)`: "treat them
/// like EAGAIN by retrying").
fn concerns_one_connection(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionAborted
            | ConnectionReset
            | ConnectionRefused
            | Interrupted
            | HostUnreachable
            | NetworkUnreachable
            | NetworkDown
    )
}

/// At most one log line per [`LOG_EVERY`], counting the events it did not log.
#[derive(Default)]
struct Quiet {
    last: Option<Instant>,
    unlogged: u64,
}

impl Quiet {
    /// `Some(events not logged since the last line)` when a line may be written now.
    fn ready(&mut self) -> Option<u64> {
        let now = Instant::now();
        if self.last.is_some_and(|t| now.duration_since(t) < LOG_EVERY) {
            self.unlogged += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.unlogged))
    }
}

/// The pause after each failed accept of a burst (consecutive failures).
#[derive(Default)]
struct Backoff {
    pause: Duration,
    failures: u64,
    /// A line about this burst was logged: its end gets one too.
    reported: bool,
    log: Quiet,
}

impl Backoff {
    fn failed(&mut self, listener: &'static str, e: &std::io::Error) -> Duration {
        self.failures += 1;
        self.pause = if self.pause.is_zero() {
            FIRST_PAUSE
        } else {
            (self.pause * 2).min(MAX_PAUSE)
        };
        if let Some(since) = self.log.ready() {
            self.reported = true;
            tracing::warn!(
                listener,
                error = %e,
                failures_since_last_report = since,
                "accept failed; pausing up to 1 s between tries until accepting works again. \
                 Out of file descriptors? Raise the open-file limit (ulimit -n, systemd \
                 LimitNOFILE=) or lower server.max_connections"
            );
        }
        self.pause
    }

    fn succeeded(&mut self, listener: &'static str) {
        if self.failures == 0 {
            return;
        }
        if self.reported {
            tracing::info!(
                listener,
                failures = self.failures,
                "accepting connections again"
            );
        }
        self.failures = 0;
        self.pause = Duration::ZERO;
        self.reported = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_caps_follow_the_open_file_limit() {
        let c = Caps::from_limit(None, Some(1024));
        assert_eq!((c.public, c.admin), (716, 64));
        assert!(c.warning().is_none());
        let c = Caps::from_limit(None, Some(512));
        assert_eq!((c.public, c.admin), (358, 64));
        // a small limit shrinks the admin share too
        let c = Caps::from_limit(None, Some(256));
        assert_eq!((c.public, c.admin), (179, 32));
        // unknown → as for 1024; unlimited → bounded
        assert_eq!(Caps::from_limit(None, None).public, 716);
        let c = Caps::from_limit(None, Some(u64::MAX));
        assert_eq!((c.public, c.admin), ((1 << 24) * 7 / 10, 64));
    }

    #[test]
    fn a_configured_cap_wins_and_is_warned_about_when_it_cannot_fit() {
        let c = Caps::from_limit(Some(5000), Some(256));
        assert_eq!(c.public, 5000);
        let w = c.warning().expect("warning");
        assert!(
            w.contains("server.max_connections = 5000") && w.contains("open-file limit of 256")
        );
        assert!(Caps::from_limit(Some(100), Some(1024)).warning().is_none());
        assert_eq!(
            Caps::from_limit(Some(usize::MAX), None).public,
            Semaphore::MAX_PERMITS
        );
    }

    #[test]
    fn pauses_double_up_to_a_second_and_reset_on_success() {
        let mut b = Backoff::default();
        let e = std::io::Error::from_raw_os_error(24); // EMFILE
        let pauses: Vec<u64> = (0..10)
            .map(|_| b.failed("test", &e).as_millis() as u64)
            .collect();
        assert_eq!(pauses, [10, 20, 40, 80, 160, 320, 640, 1000, 1000, 1000]);
        b.succeeded("test");
        assert_eq!(b.failed("test", &e), FIRST_PAUSE);
    }

    #[tokio::test(start_paused = true)]
    async fn one_log_line_per_minute() {
        let mut q = Quiet::default();
        assert_eq!(q.ready(), Some(0));
        assert_eq!(q.ready(), None);
        assert_eq!(q.ready(), None);
        tokio::time::advance(LOG_EVERY).await;
        assert_eq!(q.ready(), Some(2));
    }
}
