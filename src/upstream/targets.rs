//! A route's targets (`upstream = ["http://a:3000", "http://b:3000"]`; one URL is a list of
//! one): which target a request goes to, passive health, and the one retry.
//!
//! - **Balancing**: round robin over the targets in rotation (one atomic increment per
//!   request). Each target keeps its own connection pool ([`Pool`]: HTTP/1.1 or HTTP/2).
//! - **Passive health**: a target that cannot be connected to (refused, unreachable, connect
//!   timed out, TLS handshake failed) is *ejected*: skipped for a back-off of 1 s, doubling with
//!   each ejection that follows without an answer in between, at most 30 s. When the back-off
//!   ends the target is back in rotation; its first answer resets the back-off. Failures of
//!   attempts that were already under way when it was ejected do not eject it again (a burst of
//!   refusals is one ejection, not a 30 s one). An answer of any status is an answer: the proxy
//!   does not judge status codes.
//! - **Every target ejected**: a request still goes to the least recently failed one rather than
//!   failing untried — the back-off exists to spare the live targets a dead one's latency, and
//!   with none known alive the careful choice is to try (a target back early then answers at
//!   once; a dead one answers 502 as before). `/readyz` lists such routes without failing
//!   readiness (see [`Upstreams::report_to`]).
//! - **One retry, on another target**, when the attempt failed before an answer and either no
//!   byte of the request reached the target (connect failed; the connection closed before
//!   taking it) — any method, the body is untouched — or the method is idempotent and the
//!   request has no body (the connection broke after the head was sent: RFC 9110 §9.2.2 allows
//!   repeating it). Never once a request body started streaming, never a non-idempotent method
//!   once any byte was sent, never after a timeout waiting for an answer (the target is slow,
//!   not gone: a second wait doubles the client's), never on a route with one target.
//!
//! Health carries over a config reload for each (route name, target) that stays.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use http::header::{HOST, HeaderValue};
use http::{Request, Response};
use http_body::Body as _;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;

use super::{Failed, Pool, Upstreams};
use crate::config::Route;
use crate::error::{Body, UpstreamError};
use crate::health::Health;
use crate::metrics::{Metrics, RouteLabel, TargetLabels};

/// First back-off of an ejected target.
const BACKOFF_BASE: Duration = Duration::from_secs(1);
/// Longest back-off.
const BACKOFF_CAP: Duration = Duration::from_secs(30);

/// One route's targets.
pub struct Targets {
    name: Arc<str>,
    targets: Box<[Target]>,
    next: AtomicUsize,
    /// `preserve_host = false` with several targets: `Host` names the chosen target.
    rewrite_host: bool,
}

struct Target {
    pool: Pool,
    /// `scheme://authority`: the metric label and what logs name.
    label: String,
    host: Option<HeaderValue>,
    state: Arc<State>,
    requests: Counter,
    failures: Counter,
    ejections: Counter,
    up: Gauge,
}

/// A target's passive health. Times are milliseconds since [`epoch`] plus one (0: never).
#[derive(Default)]
struct State {
    /// Ejections since its last answer: the back-off's exponent.
    strikes: AtomicU32,
    /// Skipped until then.
    ejected_until: AtomicU64,
    last_failure: AtomicU64,
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now_ms() -> u64 {
    u64::try_from(epoch().elapsed().as_millis()).unwrap_or(u64::MAX / 2) + 1
}

impl State {
    fn ejected(&self, now: u64) -> bool {
        self.ejected_until.load(Ordering::Acquire) > now
    }
}

impl Targets {
    /// `pools`: one per target of `route`, in its order. `before`: the same route in the
    /// config being replaced, whose targets' health carries over.
    pub(super) fn new(
        route: &Route,
        pools: Vec<Pool>,
        metrics: &Metrics,
        before: Option<&Targets>,
    ) -> Self {
        let name: Arc<str> = Arc::from(route.name.as_str());
        let now = now_ms();
        let targets = (route.targets.iter().zip(pools))
            .map(|(t, pool)| {
                let label = format!("{}://{}", t.scheme, t.authority);
                let state = before
                    .and_then(|b| b.targets.iter().find(|o| o.label == label))
                    .map_or_else(Arc::default, |o| o.state.clone());
                let labels = TargetLabels {
                    route: RouteLabel(name.clone()),
                    target: label.clone(),
                };
                let up = metrics.target_up.get_or_create(&labels).clone();
                up.set(i64::from(!state.ejected(now)));
                Target {
                    pool,
                    host: HeaderValue::from_str(t.authority.as_str()).ok(),
                    state,
                    requests: metrics.target_requests.get_or_create(&labels).clone(),
                    failures: metrics.target_failures.get_or_create(&labels).clone(),
                    ejections: metrics.target_ejections.get_or_create(&labels).clone(),
                    up,
                    label,
                }
            })
            .collect::<Box<[_]>>();
        Targets {
            rewrite_host: !route.preserve_host && targets.len() > 1,
            name,
            targets,
            next: AtomicUsize::new(0),
        }
    }

    pub(super) fn name(&self) -> &str {
        &self.name
    }

    /// The target for the next attempt, other than `not`: the next in rotation, or, when
    /// every candidate is ejected, the least recently failed. `None`: no other target.
    fn pick(&self, not: Option<usize>) -> Option<usize> {
        let n = self.targets.len();
        if n == 1 {
            return not.is_none().then_some(0);
        }
        let now = now_ms();
        // A retry looks on from the failed target and leaves the rotation alone.
        let start = match not {
            Some(failed) => failed + 1,
            None => self.next.fetch_add(1, Ordering::Relaxed),
        };
        let candidates = (0..n).map(|k| (start + k) % n).filter(|i| Some(*i) != not);
        candidates
            .clone()
            .find(|i| !self.targets[*i].state.ejected(now))
            .or_else(|| {
                candidates
                    .min_by_key(|i| self.targets[*i].state.last_failure.load(Ordering::Acquire))
            })
    }

    /// Sends `req` to a target, and once more to another one when the first attempt failed
    /// in a way that allows it (see the module doc).
    pub(super) async fn send(
        &self,
        req: Request<Body>,
        timeout: Duration,
    ) -> Result<Response<hyper::body::Incoming>, UpstreamError> {
        let first = self.pick(None).unwrap_or(0);
        // An idempotent bodiless request may be sent again even after its head went out: keep
        // its head (several targets only; one target has nowhere else to go).
        let head =
            (self.targets.len() > 1 && req.method().is_idempotent() && req.body().is_end_stream())
                .then(|| copy_head(&req));
        let f = match self.attempt(first, req, timeout).await {
            Ok(resp) => return Ok(resp),
            Err(f) => f,
        };
        let again = match (f.unsent, head) {
            (Some(req), _) => Some(req),
            (None, Some(head)) if matches!(f.error, UpstreamError::Unreachable(_)) => Some(head),
            _ => None,
        };
        // Picked only for a retry (which leaves the rotation alone): a failure advancing the
        // rotation twice would send every later request to the failing target.
        let Some((req, second)) = again.and_then(|r| Some((r, self.pick(Some(first))?))) else {
            return Err(f.error);
        };
        tracing::info!(
            route = %self.name,
            failed = %self.targets[first].label,
            retry = %self.targets[second].label,
            error = %f.error,
            "upstream target failed before answering; retrying on another target"
        );
        self.attempt(second, req, timeout)
            .await
            .map_err(|f| f.error)
    }

    async fn attempt(
        &self,
        i: usize,
        mut req: Request<Body>,
        timeout: Duration,
    ) -> Result<Response<hyper::body::Incoming>, Failed> {
        let t = &self.targets[i];
        t.requests.inc();
        if let (true, Some(h)) = (self.rewrite_host, &t.host) {
            req.headers_mut().insert(HOST, h.clone());
        }
        match t.pool.attempt(req, timeout).await {
            Ok(resp) => {
                if t.state.strikes.load(Ordering::Relaxed) != 0 {
                    self.answered(t);
                }
                Ok(resp)
            }
            Err(f) => {
                if f.error.metric_kind().is_some() {
                    t.failures.inc();
                }
                if f.connect {
                    self.eject(t, &f.error);
                }
                Err(f)
            }
        }
    }

    /// A target that had been ejected answered: its back-off starts over.
    fn answered(&self, t: &Target) {
        // An answer on a connection opened before the ejection proves nothing about new ones.
        if t.state.ejected(now_ms()) {
            return;
        }
        if t.state.strikes.swap(0, Ordering::AcqRel) != 0 {
            t.up.set(1);
            tracing::info!(route = %self.name, target = %t.label, "upstream target answers again");
        }
    }

    /// Takes `t` out of rotation for its next back-off (unless it is out already).
    fn eject(&self, t: &Target, error: &UpstreamError) {
        let now = now_ms();
        t.state.last_failure.store(now, Ordering::Release);
        let current = t.state.ejected_until.load(Ordering::Acquire);
        if current > now {
            return;
        }
        let strikes = t.state.strikes.load(Ordering::Acquire);
        let backoff = BACKOFF_BASE
            .saturating_mul(1u32 << strikes.min(16))
            .min(BACKOFF_CAP);
        let until = now + u64::try_from(backoff.as_millis()).unwrap_or(u64::MAX / 4);
        if (t.state.ejected_until)
            .compare_exchange(current, until, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return;
        }
        t.state.strikes.fetch_add(1, Ordering::AcqRel);
        t.ejections.inc();
        t.up.set(0);
        tracing::warn!(
            route = %self.name,
            target = %t.label,
            backoff_ms = backoff.as_millis() as u64,
            error = %error,
            "upstream target ejected"
        );
        // Back in rotation when the back-off ends (the gauge says so without waiting for a
        // request), unless it was ejected again meanwhile.
        let (state, up, route, label) = (
            t.state.clone(),
            t.up.clone(),
            self.name.clone(),
            t.label.clone(),
        );
        tokio::spawn(async move {
            tokio::time::sleep(backoff).await;
            if state.ejected_until.load(Ordering::Acquire) == until {
                up.set(1);
                tracing::info!(route = %route, target = %label, "upstream target back in rotation");
            }
        });
    }

    /// When every target is ejected: what `/readyz` says about this route.
    fn all_ejected(&self, now: u64) -> Option<String> {
        if !self.targets.iter().all(|t| t.state.ejected(now)) {
            return None;
        }
        let list = (self.targets.iter())
            .map(|t| {
                let left = t
                    .state
                    .ejected_until
                    .load(Ordering::Acquire)
                    .saturating_sub(now);
                format!("{} for {:.1}s more", t.label, left as f64 / 1000.0)
            })
            .collect::<Vec<_>>()
            .join(", ");
        Some(format!(
            "every target ejected after failing to connect ({list}); each request still tries the least recently failed target"
        ))
    }
}

/// The head of a bodiless request, for sending it again.
fn copy_head(req: &Request<Body>) -> Request<Body> {
    let mut copy = Request::new(crate::error::empty());
    *copy.method_mut() = req.method().clone();
    *copy.uri_mut() = req.uri().clone();
    *copy.version_mut() = req.version();
    *copy.headers_mut() = req.headers().clone();
    copy
}

/// Removes the metric series of targets a reload dropped (their route or the target itself).
pub(super) fn forget_removed(old: &[Targets], new: &[Targets], metrics: &Metrics) {
    for route in old {
        for t in route.targets.iter() {
            let kept = new
                .iter()
                .any(|r| r.name == route.name && r.targets.iter().any(|n| n.label == t.label));
            if !kept {
                let labels = TargetLabels {
                    route: RouteLabel(route.name.clone()),
                    target: t.label.clone(),
                };
                metrics.target_requests.remove(&labels);
                metrics.target_failures.remove(&labels);
                metrics.target_ejections.remove(&labels);
                metrics.target_up.remove(&labels);
            }
        }
    }
}

impl Upstreams {
    /// Makes `/readyz` list this config's routes whose targets are all ejected (called once
    /// the config serves). They do not fail readiness: the targets are shared by every replica
    /// of the proxy, so failing all of them at once would turn one app's outage into the whole
    /// service's, including routes that work; requests keep trying the app meanwhile.
    pub fn report_to(&self, health: &Health) {
        let routes = self.routes.clone();
        health.set_upstream_report(Arc::new(move || {
            let now = now_ms();
            routes
                .iter()
                .filter_map(|r| r.all_ejected(now).map(|m| (r.name.to_string(), m)))
                .collect()
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let at = |strikes: u32| {
            BACKOFF_BASE
                .saturating_mul(1u32 << strikes.min(16))
                .min(BACKOFF_CAP)
        };
        assert_eq!(at(0), Duration::from_secs(1));
        assert_eq!(at(1), Duration::from_secs(2));
        assert_eq!(at(4), Duration::from_secs(16));
        assert_eq!(at(5), BACKOFF_CAP);
        assert_eq!(at(40), BACKOFF_CAP);
    }
}
