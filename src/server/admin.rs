//! The admin listener: `/healthz` (process alive), `/readyz` (providers and session store
//! ready; routes whose upstream targets are all ejected listed without failing it), `/metrics` (Prometheus text). Kept off the public listeners.
//!
//! Its connections get the public listeners' head deadline (the current config's, so a reload
//! changes it for new connections here too) and head size cap, and the listener
//! its own small connection cap (`accept`): a flood of idle connections here (the examples
//! bind it to `0.0.0.0`) neither stays open nor takes descriptors the public listeners need.

use std::convert::Infallible;
use std::sync::Arc;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::sync::watch;

use super::accept;
use super::io::{HeadDeadline, ResponseBody};
use crate::error::{Body, json_error, text};
use crate::health::Health;
use crate::metrics::Metrics;

pub async fn serve(
    mut listener: accept::Listener,
    builder: Arc<super::Builders>,
    live: Arc<super::reload::Live>,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    mut shutdown: watch::Receiver<bool>,
) {
    while let Some(conn) = listener.next(&mut shutdown).await {
        let metrics = metrics.clone();
        let health = health.clone();
        let builder = builder.clone();
        let head_timeout = live.current().config.server.header_read_timeout;
        tokio::spawn(async move {
            let (io, clock) = HeadDeadline::new(conn.stream, head_timeout, conn.slot);
            let svc = service_fn(move |req: Request<Incoming>| {
                // As on the public listeners: no head deadline while a request is in flight.
                let in_flight = clock.request_started(req.version() == http::Version::HTTP_2);
                let (metrics, health) = (metrics.clone(), health.clone());
                let answer = super::panic::catch_panic(req, move |req| async move {
                    route(&req, &metrics, &health)
                });
                async move {
                    let Ok(r) = answer.await;
                    Ok::<_, Infallible>(r.map(|b| ResponseBody::new(b, in_flight)))
                }
            });
            let _ = builder.auto.serve_connection(TokioIo::new(io), svc).await;
        });
    }
}

fn route(req: &Request<Incoming>, metrics: &Metrics, health: &Health) -> Response<Body> {
    match req.uri().path() {
        "/healthz" => text(StatusCode::OK, "ok\n".into(), "text/plain"),
        "/readyz" => {
            let (ready, items) = health.report();
            let detail: serde_json::Map<String, serde_json::Value> = items
                .into_iter()
                .map(|(k, v)| {
                    (
                        k,
                        serde_json::Value::String(v.err().unwrap_or_else(|| "ready".into())),
                    )
                })
                .collect();
            let upstreams = health.upstream_report();
            let body =
                serde_json::json!({ "ready": ready, "components": detail, "upstreams": upstreams })
                    .to_string();
            text(
                if ready {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                },
                body,
                "application/json",
            )
        }
        "/metrics" => text(
            StatusCode::OK,
            metrics.encode(),
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        ),
        _ => json_error(
            StatusCode::NOT_FOUND,
            "not_found",
            "admin endpoints: /healthz, /readyz, /metrics",
        ),
    }
}
