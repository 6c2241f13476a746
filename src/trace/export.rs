//! Optional OpenTelemetry export (`[telemetry] otlp_endpoint`): spans as OTLP/HTTP JSON, sent
//! in batches by one background task. Off by default; then [`enabled`] is one atomic load and
//! nothing else is done per request.
//!
//! Hand-written rather than the `opentelemetry-otlp` crate: its HTTP exporter brings reqwest
//! (a second HTTP client and, with TLS, a second rustls configuration or native-tls) and the
//! SDK's batch processor with its own runtime glue, for what is here one JSON document per
//! batch sent through the provider client portcullis already has (same TLS stack, same CA
//! handling, no redirects).
//!
//! Spans: one server span per request (route, decision, reason, status, upstream time), and a
//! client span per provider call made while a request is handled (discovery, JWKS, token,
//! introspection, userinfo), child of that request's span. When the export falls behind,
//! spans are dropped and counted (`portcullis_spans_dropped_total`), never waited for.

use std::sync::{LazyLock, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Method, Request, header};
use http_body_util::Full;
use prometheus_client::metrics::counter::Counter;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::Hex;

type HttpClient = Client<crate::tls_client::Connector, Full<Bytes>>;

/// Spans waiting for export at most; beyond, new ones are dropped.
const QUEUE: usize = 4096;
/// Spans per POST at most.
const BATCH: usize = 512;
/// How long a batch collects before it is sent.
const DELAY: Duration = Duration::from_millis(500);

pub static SPANS_DROPPED: LazyLock<Counter> = LazyLock::new(Counter::default);

static EXPORTER: OnceLock<Exporter> = OnceLock::new();

struct Exporter {
    tx: mpsc::Sender<Span>,
    endpoint: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Server = 2,
    Client = 3,
}

pub enum Attr {
    Str(String),
    Int(i64),
    Double(f64),
}

/// One finished span.
pub struct Span {
    pub name: String,
    pub kind: Kind,
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub parent: Option<[u8; 8]>,
    pub start_ns: u64,
    pub end_ns: u64,
    pub attrs: Vec<(&'static str, Attr)>,
    pub error: bool,
}

/// Whether spans are exported (a span's data is gathered only then).
#[inline]
pub fn enabled() -> bool {
    EXPORTER.get().is_some()
}

/// Now, in nanoseconds since the epoch (span times).
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Queues a finished span (dropped and counted when the queue is full).
pub fn record(span: Span) {
    if let Some(e) = EXPORTER.get()
        && e.tx.try_send(span).is_err()
    {
        SPANS_DROPPED.inc();
    }
}

/// Starts the export task for `endpoint` (once per process: a changed endpoint needs a
/// restart, which is logged). Needs a Tokio runtime.
pub fn start(endpoint: Option<&url::Url>, service_name: &str) {
    let Some(endpoint) = endpoint else {
        if EXPORTER.get().is_some() {
            tracing::warn!(
                "[telemetry] otlp_endpoint was removed: spans are exported until a restart"
            );
        }
        return;
    };
    if let Some(e) = EXPORTER.get() {
        if e.endpoint != endpoint.as_str() {
            tracing::warn!(
                running = %e.endpoint,
                configured = %endpoint,
                "[telemetry] otlp_endpoint changed: needs a restart"
            );
        }
        return;
    }
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        return;
    };
    // Its own client: the export's POSTs are no provider calls (no child spans of their own).
    let client = match crate::tls_client::https_connector(None, Duration::from_secs(5)) {
        Ok(c) => Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .build(c),
        Err(e) => {
            tracing::error!(error = %e, "[telemetry] otlp_endpoint: no HTTP client, spans are not exported");
            return;
        }
    };
    let (tx, rx) = mpsc::channel(QUEUE);
    if EXPORTER
        .set(Exporter {
            tx,
            endpoint: endpoint.to_string(),
        })
        .is_ok()
    {
        tracing::info!(endpoint = %endpoint, "exporting spans (OTLP/HTTP JSON)");
        rt.spawn(run(
            rx,
            client,
            endpoint.to_string(),
            service_name.to_owned(),
        ));
    }
}

async fn run(mut rx: mpsc::Receiver<Span>, client: HttpClient, endpoint: String, service: String) {
    let mut batch = Vec::with_capacity(BATCH);
    let mut failing = false;
    loop {
        match rx.recv().await {
            Some(s) => batch.push(s),
            None => return,
        }
        let deadline = tokio::time::sleep(DELAY);
        tokio::pin!(deadline);
        while batch.len() < BATCH {
            tokio::select! {
                s = rx.recv() => match s {
                    Some(s) => batch.push(s),
                    None => break,
                },
                _ = &mut deadline => break,
            }
        }
        let body = encode(&service, &batch);
        let n = batch.len();
        batch.clear();
        let req = Request::builder()
            .method(Method::POST)
            .uri(&endpoint)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)));
        let Ok(req) = req else {
            return;
        };
        // Failures are logged once per outage, not per batch.
        let sent = tokio::time::timeout(Duration::from_secs(10), client.request(req)).await;
        match sent {
            Ok(Ok(r)) if r.status().is_success() => {
                if failing {
                    tracing::info!(endpoint, "span export works again");
                }
                failing = false;
            }
            other => {
                let error = match other {
                    Ok(Ok(r)) => format!("answered {}", r.status()),
                    Ok(Err(e)) => e.to_string(),
                    Err(_) => "no answer within 10s".to_string(),
                };
                if !failing {
                    tracing::warn!(
                        endpoint,
                        error,
                        spans = n,
                        "span export failed; the spans are dropped"
                    );
                }
                failing = true;
            }
        }
    }
}

/// One `ExportTraceServiceRequest` in OTLP's JSON mapping (ids as hex, 64-bit ints as strings).
pub fn encode(service: &str, spans: &[Span]) -> String {
    let spans: Vec<Value> = spans
        .iter()
        .map(|s| {
            let attrs: Vec<Value> = s
                .attrs
                .iter()
                .map(|(k, v)| {
                    let value = match v {
                        Attr::Str(s) => json!({ "stringValue": s }),
                        Attr::Int(i) => json!({ "intValue": i.to_string() }),
                        Attr::Double(d) => json!({ "doubleValue": d }),
                    };
                    json!({ "key": k, "value": value })
                })
                .collect();
            let mut span = json!({
                "traceId": Hex(&s.trace_id).to_string(),
                "spanId": Hex(&s.span_id).to_string(),
                "name": s.name,
                "kind": s.kind as u8,
                "startTimeUnixNano": s.start_ns.to_string(),
                "endTimeUnixNano": s.end_ns.to_string(),
                "attributes": attrs,
                // 1 = OK is for the application to set; 2 = ERROR.
                "status": { "code": if s.error { 2 } else { 0 } },
            });
            if let (Some(p), Some(obj)) = (s.parent, span.as_object_mut()) {
                obj.insert("parentSpanId".into(), Value::String(Hex(&p).to_string()));
            }
            span
        })
        .collect();
    json!({
        "resourceSpans": [{
            "resource": { "attributes": [
                { "key": "service.name", "value": { "stringValue": service } },
                { "key": "service.version", "value": { "stringValue": env!("CARGO_PKG_VERSION") } },
            ] },
            "scopeSpans": [{
                "scope": { "name": "portcullis", "version": env!("CARGO_PKG_VERSION") },
                "spans": spans,
            }],
        }],
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_otlp_json() {
        let s = Span {
            name: "GET api".into(),
            kind: Kind::Server,
            trace_id: [1; 16],
            span_id: [2; 8],
            parent: Some([3; 8]),
            start_ns: 1,
            end_ns: 2,
            attrs: vec![
                ("http.route", Attr::Str("api".into())),
                ("http.response.status_code", Attr::Int(200)),
            ],
            error: false,
        };
        let v: Value = serde_json::from_str(&encode("svc", &[s])).unwrap();
        let span = &v["resourceSpans"][0]["scopeSpans"][0]["spans"][0];
        assert_eq!(span["traceId"], "01".repeat(16));
        assert_eq!(span["parentSpanId"], "03".repeat(8));
        assert_eq!(span["kind"], 2);
        assert_eq!(span["attributes"][1]["value"]["intValue"], "200");
    }
}
