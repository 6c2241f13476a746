//! Prometheus metrics served on the admin listener: requests by route and status, latency,
//! upstream errors, each upstream target's attempts, failures, ejections and state, open
//! connections, each listener's failed accepts and pauses at its
//! connection cap, and config reloads.

use std::sync::Arc;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// A route name label that is cheap to clone on the hot path.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct RouteLabel(pub Arc<str>);

impl EncodeLabelValue for RouteLabel {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        use std::fmt::Write;
        encoder.write_str(&self.0)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: RouteLabel,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteOnly {
    pub route: RouteLabel,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub route: RouteLabel,
    pub kind: &'static str,
}

/// One upstream target of a route (`scheme://host:port`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TargetLabels {
    pub route: RouteLabel,
    pub target: String,
}

/// Which listener: `http`, `https` or `admin`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerLabels {
    pub listener: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    pub route: RouteLabel,
    pub decision: &'static str,
}

/// Outcome of a config reload: `ok` or `error`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabels {
    pub result: &'static str,
}

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub latency: Family<RouteOnly, Histogram>,
    pub upstream_errors: Family<ErrorLabels, Counter>,
    pub auth_decisions: Family<DecisionLabels, Counter>,
    pub open_connections: Gauge,
    pub accept_errors: Family<ListenerLabels, Counter>,
    pub listener_at_capacity: Family<ListenerLabels, Counter>,
    pub config_reloads: Family<ReloadLabels, Counter>,
    pub target_requests: Family<TargetLabels, Counter>,
    pub target_failures: Family<TargetLabels, Counter>,
    pub target_ejections: Family<TargetLabels, Counter>,
    pub target_up: Family<TargetLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("portcullis");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<RouteOnly, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0,
            ])
        });
        let upstream_errors = Family::<ErrorLabels, Counter>::default();
        let auth_decisions = Family::<DecisionLabels, Counter>::default();
        let open_connections = Gauge::default();
        let accept_errors = Family::<ListenerLabels, Counter>::default();
        let listener_at_capacity = Family::<ListenerLabels, Counter>::default();
        registry.register(
            "requests",
            "Requests handled, by route and status",
            requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time from request head to response head",
            latency.clone(),
        );
        registry.register(
            "upstream_errors",
            "Upstream failures by route and kind (unreachable, timeout)",
            upstream_errors.clone(),
        );
        registry.register(
            "auth_decisions",
            "Authentication/authorization decisions by route",
            auth_decisions.clone(),
        );
        registry.register(
            "open_connections",
            "Client connections currently open",
            open_connections.clone(),
        );
        registry.register(
            "accept_errors",
            "Failed accepts by listener (out of file descriptors, out of memory), each followed by a back-off",
            accept_errors.clone(),
        );
        let config_reloads = Family::<ReloadLabels, Counter>::default();
        // Both series from the start: an alert on `error` works before the first reload.
        for result in ["ok", "error"] {
            let _ = config_reloads.get_or_create(&ReloadLabels { result });
        }
        registry.register(
            "config_reloads",
            "Config reloads (SIGHUP or a change of the file) by result: ok (applied) or error (the old config keeps serving)",
            config_reloads.clone(),
        );
        registry.register(
            "listener_at_capacity",
            "Times a listener stopped accepting because its connection cap was reached (new connections wait in the kernel's backlog)",
            listener_at_capacity.clone(),
        );
        let target_requests = Family::<TargetLabels, Counter>::default();
        let target_failures = Family::<TargetLabels, Counter>::default();
        let target_ejections = Family::<TargetLabels, Counter>::default();
        let target_up = Family::<TargetLabels, Gauge>::default();
        registry.register(
            "upstream_target_requests",
            "Attempts sent to each upstream target (a retry counts on its own target)",
            target_requests.clone(),
        );
        registry.register(
            "upstream_target_failures",
            "Attempts that failed on each upstream target (connect failure, broken connection, timeout)",
            target_failures.clone(),
        );
        registry.register(
            "upstream_target_ejections",
            "Times each upstream target was taken out of rotation after failing to connect",
            target_ejections.clone(),
        );
        registry.register(
            "upstream_target_up",
            "1 while an upstream target is in rotation, 0 while it is ejected",
            target_up.clone(),
        );
        // Process-wide counters kept by the log writer and the span exporter.
        registry.register(
            "log_lines_dropped",
            "Access-log lines dropped because the log writer fell behind",
            crate::telemetry::LOG_LINES_DROPPED.clone(),
        );
        registry.register(
            "spans_dropped",
            "Spans dropped because the OTLP export fell behind",
            crate::trace::export::SPANS_DROPPED.clone(),
        );
        Metrics {
            registry,
            target_requests,
            target_failures,
            target_ejections,
            target_up,
            requests,
            latency,
            upstream_errors,
            auth_decisions,
            open_connections,
            accept_errors,
            listener_at_capacity,
            config_reloads,
        }
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
