//! The request pipeline: the decision, then forwarding. The order is the security property:
//!
//! 1–6. [`decide`]: host, method and path checks, `/.auth/*` endpoints, the route, stripping
//!    of forged and hop-by-hop headers, authentication, authorization → a `Permit` or a
//!    refusal (the same decision forward-auth and `explain` make);
//! 7. inject identity headers from the `Permit`;
//! 8. forward (`X-Forwarded-*` set, normalized path — the upstream receives the host and path
//!    that were judged; a gRPC caller's `grpc-timeout` bounds the wait for an HTTP/2 upstream)
//!    and stream the answer back with its trailers (a 101 only to WebSocket; no `Set-Cookie`
//!    of the proxy's own cookies from the upstream).
//!
//! Every request is counted (route, status, latency, access decision) and logged here, and gets
//! its request id and trace context ([`crate::trace`]) before anything else reads it. The
//! proxy's own answers to a gRPC call are gRPC status (rendered in `error`).

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode, Uri, Version};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;

use crate::auth::AuthState;
use crate::config::{AuthMode, Config, Route};
use crate::decision::{Input, Record, Verdict, decide};
use crate::error::{Body, DecisionKind, ProxyError, UpstreamError};
use crate::grpc;
use crate::headers;
use crate::health::Health;
use crate::metrics::{DecisionLabels, ErrorLabels, Metrics, RequestLabels, RouteLabel, RouteOnly};
use crate::request::{ConnInfo, HostText};
use crate::routes;
use crate::telemetry;
use crate::trace::{self, Ids, export};
use crate::upstream::{self, Upstreams};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;

pub struct Proxy {
    pub config: Arc<Config>,
    pub upstreams: Upstreams,
    pub metrics: Arc<Metrics>,
    pub auth: AuthState,
    pub health: Arc<Health>,
    route_labels: Vec<RouteLabel>,
    /// Per route, the `Host` its upstream gets (unless `preserve_host`): made once, shared by
    /// every request's header (a clone of a header value shares its bytes).
    route_hosts: Vec<Option<HeaderValue>>,
    no_route: RouteLabel,
    /// Per-route handles to the metric series, resolved on first use: the hot path then
    /// increments an atomic instead of hashing a label set and taking the family's lock.
    /// Index `routes.len()` is the no-route label.
    route_metrics: Vec<RouteMetrics>,
}

/// Series of one route label, each created in its family the first time it is used (so the
/// exported metrics are exactly those the families would hold).
#[derive(Default)]
struct RouteMetrics {
    /// Counters by status code `100..=599`, allocated on the route's first request.
    requests: OnceLock<Box<[OnceLock<Counter>]>>,
    latency: OnceLock<Histogram>,
    /// By [`DecisionKind`] (its position in [`DecisionKind::ALL`]).
    decisions: [OnceLock<Counter>; DecisionKind::ALL.len()],
    /// Responses cut by the route's `read_timeout`.
    read_timeouts: OnceLock<Counter>,
}

/// What the pipeline hands the metrics and the access log.
struct Served {
    /// The judged route, decision and reason (forward-auth: of the original request).
    decision: Record,
    /// Microseconds the upstream took to answer (when it was asked and someone reads it).
    upstream_ms: Option<u64>,
    /// The access log is on: keep what only it reads.
    log: bool,
    /// A gRPC call: the proxy's own answers are gRPC status.
    grpc: bool,
}

impl Proxy {
    pub fn new(
        config: Arc<Config>,
        upstreams: Upstreams,
        metrics: Arc<Metrics>,
        auth: AuthState,
        health: Arc<Health>,
    ) -> Self {
        export::start(
            config.telemetry.otlp_endpoint.as_ref(),
            &config.telemetry.service_name,
        );
        let route_labels: Vec<RouteLabel> = config
            .routes
            .iter()
            .map(|r| RouteLabel(Arc::from(r.name.as_str())))
            .collect();
        let route_hosts = config
            .routes
            .iter()
            .map(|r| HeaderValue::from_str(r.upstream.authority.as_str()).ok())
            .collect();
        Proxy {
            config,
            upstreams,
            metrics,
            auth,
            health,
            route_metrics: (0..=route_labels.len())
                .map(|_| RouteMetrics::default())
                .collect(),
            route_labels,
            route_hosts,
            no_route: RouteLabel(Arc::from("-")),
        }
    }

    /// Entry point for every request on the public listeners. Never fails: errors become
    /// responses here and nowhere else. `sni`: the TLS server name the connection was opened
    /// for (it travels beside the `Copy` [`ConnInfo`]: only step 1 reads it).
    pub async fn handle(
        &self,
        req: Request<Incoming>,
        conn: ConnInfo,
        sni: Option<&str>,
    ) -> Response<Body> {
        let start = Instant::now();
        let span_start = export::enabled().then(export::now_ns);
        // Before the decision: its refusals carry the request id (the upstream request gets
        // the ids when it is built).
        let trusted = headers::is_trusted(conn.peer.ip(), &self.config.server.trusted_proxies);
        let ids = Ids::for_request(req.headers(), trusted);
        let method = req.method().clone();
        // A clone of the header value (or authority) shares its bytes: no copy per request.
        let host_text = HostText::of(&req);
        let host = host_text.as_ref().map(HostText::as_str);
        // The access log is the only reader of the raw path: copy it only when it is on.
        let log = tracing::enabled!(target: "portcullis::access", tracing::Level::INFO);
        let path = log.then(|| req.uri().path().to_string());
        let mut served = Served {
            decision: Record::default(),
            upstream_ms: None,
            log,
            grpc: false,
        };
        // Boxed: the pipeline's future is a few KiB, and hyper moves the service's future into
        // place on every request; a box makes that move pointer-sized.
        let mut resp = match Box::pin(self.pipeline(req, conn, sni, host, &ids, &mut served)).await
        {
            Ok(r) => r,
            Err(e) => {
                if let ProxyError::Upstream(ue) = &e {
                    let route = served
                        .decision
                        .route
                        .map(|i| self.config.routes[i].name.as_str())
                        .unwrap_or("-");
                    let kind = ue.metric_kind();
                    match kind {
                        Some(_) => tracing::warn!(route, error = %ue, "upstream error"),
                        None => {
                            tracing::info!(route, peer = %conn.peer.ip(), error = %ue, "client error while forwarding")
                        }
                    }
                    if let (Some(i), Some(kind)) = (served.decision.route, kind) {
                        self.metrics
                            .upstream_errors
                            .get_or_create(&ErrorLabels {
                                route: self.route_labels[i].clone(),
                                kind,
                            })
                            .inc();
                    }
                }
                if served.grpc {
                    trace::sync_scope(ids.clone(), || e.into_grpc_response())
                } else {
                    trace::sync_scope(ids.clone(), || e.into_response())
                }
            }
        };
        let elapsed = start.elapsed();
        let label = served
            .decision
            .route
            .map_or(&self.no_route, |i| &self.route_labels[i]);
        let status = resp.status().as_u16();
        let rm = &self.route_metrics[served.decision.route.unwrap_or(self.route_labels.len())];
        let request_family = || {
            self.metrics
                .requests
                .get_or_create(&RequestLabels {
                    route: label.clone(),
                    status,
                })
                .clone()
        };
        match usize::from(status).checked_sub(100).filter(|i| *i < 500) {
            Some(i) => rm
                .requests
                .get_or_init(|| (0..500).map(|_| OnceLock::new()).collect())[i]
                .get_or_init(request_family)
                .inc(),
            None => request_family().inc(),
        };
        rm.latency
            .get_or_init(|| {
                self.metrics
                    .latency
                    .get_or_create(&RouteOnly {
                        route: label.clone(),
                    })
                    .clone()
            })
            .observe(elapsed.as_secs_f64());
        if served.log {
            let sub = served
                .decision
                .identity
                .as_ref()
                .map_or("-", |i| i.sub.as_str());
            let line = telemetry::Access {
                method: method.as_str(),
                host: host.unwrap_or(""),
                path: path.as_deref().unwrap_or(""),
                route: &label.0,
                status,
                decision: served.decision.kind.map_or("-", DecisionKind::as_str),
                reason: served.decision.reason.unwrap_or("-"),
                sub,
                request_id: ids.request_id_str(),
                trace_id: &ids.trace.trace_id,
                latency_us: u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
                upstream_us: served.upstream_ms,
                peer: conn.peer.ip(),
            };
            // Written by telemetry's own formatter; as a `tracing` event only when another
            // subscriber than telemetry's is installed (a library user's).
            if !telemetry::access(&line) {
                tracing::info!(
                    target: "portcullis::access",
                    method = line.method,
                    host = line.host,
                    path = line.path,
                    route = line.route,
                    status,
                    decision = line.decision,
                    reason = line.reason,
                    sub,
                    request_id = line.request_id,
                    trace_id = %ids.trace.trace_hex(),
                    latency_ms = millis(elapsed.as_micros()),
                    upstream_ms = served.upstream_ms.map(|us| millis(u128::from(us))),
                    peer = %line.peer,
                );
            }
        }
        if let Some(start_ns) = span_start {
            self.server_span(&ids, &method, &label.0, status, &served, start_ns);
        }
        // A constant name: made in place, not cloned from the static through `Bytes`' vtable.
        const X_REQUEST_ID: header::HeaderName = header::HeaderName::from_static("x-request-id");
        resp.headers_mut().insert(X_REQUEST_ID, ids.request_id);
        resp
    }

    async fn pipeline(
        &self,
        req: Request<Incoming>,
        conn: ConnInfo,
        sni: Option<&str>,
        host: Option<&str>,
        ids: &Ids,
        served: &mut Served,
    ) -> Result<Response<Body>, ProxyError> {
        let cfg = &*self.config;
        let (mut parts, body) = req.into_parts();
        served.grpc = grpc::is_grpc(&parts.headers);
        // 1–6. the decision
        let input = Input {
            host,
            method_known: true,
            conn,
            sni,
        };
        // The request's trace is read by provider calls only to export their spans.
        let decision = if export::enabled() {
            Box::pin(trace::scope(
                ids.clone(),
                decide(cfg, &self.auth, &mut parts, input),
            ))
            .await
        } else {
            decide(cfg, &self.auth, &mut parts, input).await
        };
        served.decision = decision.record(served.log);
        self.count_decision(&served.decision);
        let route = decision.route.map(|i| &*cfg.routes[i]);
        let (permit, set_cookie, wants_ws) = match decision.verdict {
            Ok(Verdict::Forward {
                permit,
                set_cookie,
                websocket,
            }) => (permit, set_cookie, websocket),
            Ok(Verdict::Endpoint) => {
                let rest = decision.endpoint(cfg).unwrap_or_default();
                if rest == "/check" || rest.starts_with("/check/") {
                    // Forward-auth: counted and logged as the route it judged.
                    let (resp, judged) = Box::pin(trace::scope(
                        ids.clone(),
                        crate::forward_auth::check(&self.auth, parts, conn, host, served.log),
                    ))
                    .await;
                    served.decision = judged;
                    self.count_decision(&served.decision);
                    return Ok(resp);
                }
                // Boxed: an inline endpoint future would make every request's
                // future (moved into place at each `.await`) kilobytes larger.
                let req = Request::from_parts(parts, body);
                return Ok(Box::pin(trace::scope(
                    ids.clone(),
                    self.auth.endpoint(rest, req, conn, host),
                ))
                .await);
            }
            Err(ProxyError::Auth(e)) => {
                return Ok(trace::sync_scope(ids.clone(), || {
                    self.auth.refusal(e, &parts)
                }));
            }
            Err(e) => return Err(e),
        };
        let (Some(idx), Some(route)) = (decision.route, route) else {
            return Err(ProxyError::NoRoute {
                method: parts.method.to_string(),
                path: decision.path,
            });
        };

        // 7. inject
        if let Some(permit) = &permit {
            headers::inject(
                &mut parts.headers,
                permit,
                &route.headers,
                Some((self.auth.assertion(), &route.name)),
            );
        }
        // The proxy's own cookies stay here (a session id is a credential the app must not see).
        self.auth.strip_own_cookies(&mut parts.headers);

        // 8. forward (awaited here rather than in a helper: each nested future is moved into
        // its caller's, so one level less is a few KiB less copied per request). The head
        // stays taken apart (each `Request` made and taken apart again is a copy of it).
        let (client_upgrade, mut parts, body) = if wants_ws {
            let mut req = Request::from_parts(parts, body);
            let upgrade = hyper::upgrade::on(&mut req);
            let (parts, body) = req.into_parts();
            (Some(upgrade), parts, body)
        } else {
            (None, parts, body)
        };
        self.upstream_head(
            idx,
            &mut parts,
            conn,
            host,
            &decision.path,
            decision.trusted,
        )?;
        ids.forward(&mut parts.headers);
        let up_req = Request::from_parts(parts, self.upstream_body(body));
        // Upstream time is for the access log only: no clock reads when it is off.
        let t0 = (served.log || export::enabled()).then(Instant::now);
        // A gRPC caller's deadline bounds the wait (HTTP/2 upstreams: gRPC needs them).
        let timeout = if served.grpc && route.upstream.protocol.may_be_h2() {
            grpc::timeout(up_req.headers()).map_or(route.timeout, |t| t.min(route.timeout))
        } else {
            route.timeout
        };
        let result = self.upstreams.send(idx, up_req, timeout).await;
        served.upstream_ms =
            t0.map(|t0| u64::try_from(t0.elapsed().as_micros()).unwrap_or(u64::MAX));
        // The app cannot set the proxy's cookies (a header injection in it must not plant a
        // session); the proxy's own come after.
        let own_cookie = cfg.session.as_ref().map(|s| s.cookie_name.as_str());
        let mut resp = client_response(route, result?, client_upgrade, own_cookie)?;
        if let Some(t) = route.read_timeout {
            resp = self.with_read_timeout(idx, resp, t);
        }
        for c in set_cookie {
            resp.headers_mut().append(header::SET_COOKIE, c);
        }
        Ok(resp)
    }

    /// The response with its body cut when the upstream stalls `timeout` between chunks (a
    /// route with `read_timeout`; its body is the upstream's, still unread).
    fn with_read_timeout(
        &self,
        idx: usize,
        resp: Response<Body>,
        timeout: std::time::Duration,
    ) -> Response<Body> {
        let cuts = self.route_metrics[idx]
            .read_timeouts
            .get_or_init(|| {
                self.metrics
                    .upstream_errors
                    .get_or_create(&ErrorLabels {
                        route: self.route_labels[idx].clone(),
                        kind: "read_timeout",
                    })
                    .clone()
            })
            .clone();
        let route = self.route_labels[idx].0.clone();
        resp.map(|b| upstream::read_timeout::limit(b, timeout, route, cuts))
    }

    /// Queues the request's server span for export.
    fn server_span(
        &self,
        ids: &Ids,
        method: &http::Method,
        route: &str,
        status: u16,
        served: &Served,
        start_ns: u64,
    ) {
        use export::Attr;
        let mut attrs = vec![
            ("http.request.method", Attr::Str(method.to_string())),
            ("http.route", Attr::Str(route.to_owned())),
            ("http.response.status_code", Attr::Int(i64::from(status))),
            (
                "portcullis.decision",
                Attr::Str(
                    served
                        .decision
                        .kind
                        .map_or("-", DecisionKind::as_str)
                        .into(),
                ),
            ),
            (
                "portcullis.reason",
                Attr::Str(served.decision.reason.unwrap_or("-").into()),
            ),
            (
                "portcullis.request_id",
                Attr::Str(ids.request_id_str().into()),
            ),
        ];
        if let Some(us) = served.upstream_ms {
            attrs.push((
                "portcullis.upstream_ms",
                Attr::Double(millis(u128::from(us))),
            ));
        }
        export::record(export::Span {
            name: format!("{method} {route}"),
            kind: export::Kind::Server,
            trace_id: ids.trace.trace_id,
            span_id: ids.trace.span_id,
            parent: ids.trace.parent,
            start_ns,
            end_ns: export::now_ns(),
            attrs,
            error: status >= 500,
        });
    }

    /// Counts the access decision of a route whose `auth` is not `none`.
    fn count_decision(&self, record: &Record) {
        let (Some(idx), Some(kind)) = (record.route, record.kind) else {
            return;
        };
        if self.config.routes[idx].auth == AuthMode::None {
            return;
        }
        let slot = DecisionKind::ALL
            .iter()
            .position(|k| *k == kind)
            .unwrap_or(0);
        self.route_metrics[idx].decisions[slot]
            .get_or_init(|| {
                self.metrics
                    .auth_decisions
                    .get_or_create(&DecisionLabels {
                        route: self.route_labels[idx].clone(),
                        decision: kind.as_str(),
                    })
                    .clone()
            })
            .inc();
    }

    /// The head of the request as the upstream gets it: normalized path (prefix stripped,
    /// base path added), origin-form URI, `X-Forwarded-*` and `Host` set. The client's
    /// hop-by-hop headers were removed before authentication (step 4).
    fn upstream_head(
        &self,
        idx: usize,
        parts: &mut http::request::Parts,
        conn: ConnInfo,
        host: Option<&str>,
        normalized: &str,
        trusted: bool,
    ) -> Result<(), ProxyError> {
        let route = &*self.config.routes[idx];
        let path = if route.strip_prefix {
            routes::strip_prefix(normalized, &route.matcher.path)
        } else {
            normalized.into()
        };
        if let Some(uri) = upstream_uri(&route.upstream.base_path, &path, &parts.uri)
            .map_err(|e| UpstreamError::BadRequest(e.to_string()))?
        {
            parts.uri = uri;
        }
        parts.version = Version::HTTP_11;
        // Room for X-Forwarded-For/Proto/Host, X-Real-IP, Host, and the caller's X-Request-Id
        // and traceparent ([`Ids::forward`]) at once, rather than a regrowth (reallocate +
        // rehash) of a small parsed map per insert.
        parts.headers.reserve(7);
        // `Host` first: the client's (HTTP/1.1), taken out here, becomes `X-Forwarded-Host`
        // without a copy.
        let client_host = if route.preserve_host {
            let client = parts.headers.get(header::HOST);
            match host {
                // Already the host, as the client sent it.
                Some(h) if client.is_some_and(|v| v.as_bytes() == h.as_bytes()) => client.cloned(),
                Some(h) => match HeaderValue::from_str(h) {
                    Ok(v) => parts.headers.insert(header::HOST, v),
                    Err(_) => client.cloned(),
                },
                None => client.cloned(),
            }
        } else {
            match &self.route_hosts[idx] {
                Some(v) => parts.headers.insert(header::HOST, v.clone()),
                None => parts.headers.get(header::HOST).cloned(),
            }
        };
        headers::set_forwarded(
            &mut parts.headers,
            &headers::ForwardedInfo {
                peer: conn.peer.ip(),
                proto: if conn.tls { "https" } else { "http" },
                host,
                trusted,
                trusted_proxies: &self.config.server.trusted_proxies,
                host_header: client_host.as_ref(),
            },
        );
        Ok(())
    }

    /// The client's body as the upstream gets it.
    fn upstream_body(&self, body: Incoming) -> Body {
        // The client's trailers pass the same hygiene as its headers (an HTTP/2 upstream
        // reads them as metadata); a body without trailers only pays a match per frame.
        let cfg = Arc::clone(&self.config);
        let body = body.map_frame(move |f| match f.into_trailers() {
            Ok(mut t) => {
                headers::strip_request_trailers(&mut t, &cfg.identity_header_names);
                http_body::Frame::trailers(t)
            }
            Err(f) => f,
        });
        upstream::client_body(body)
    }
}

/// The origin-form URI the upstream gets: `base_path`, then `path` (the normalized path, its
/// prefix stripped where the route says so; left out when it is `/` under a base path), then
/// the client's query. `None` when that is the client's URI as sent (origin-form, no base
/// path, the path unchanged): it goes on as it is, without a copy.
fn upstream_uri(
    base_path: &str,
    path: &str,
    client: &Uri,
) -> Result<Option<Uri>, http::uri::InvalidUri> {
    if base_path.is_empty()
        && client.scheme().is_none()
        && client.authority().is_none()
        && client.path() == path
    {
        return Ok(None);
    }
    let query = client.query();
    let with_path = base_path.is_empty() || path != "/";
    // Exactly the length: the `Bytes` the URI keeps then takes the string's buffer as it is.
    let len =
        base_path.len() + if with_path { path.len() } else { 0 } + query.map_or(0, |q| q.len() + 1);
    let mut pq = String::with_capacity(len);
    pq.push_str(base_path);
    if with_path {
        pq.push_str(path);
    }
    if let Some(q) = query {
        pq.push('?');
        pq.push_str(q);
    }
    // Origin-form: the pool's connection is to the upstream already, and `Host` is set by the
    // caller.
    Uri::try_from(pq).map(Some)
}

/// Microseconds as milliseconds with (at most) 3 decimals: the division yields the double
/// nearest to the exact decimal, which prints as that decimal (`1.07`, not `1.0698299999999998`).
fn millis(micros: u128) -> f64 {
    // Precision is lost only beyond 2^53 µs (285 years).
    #[allow(clippy::cast_precision_loss)]
    let us = micros as f64;
    us / 1000.0
}

/// The upstream's answer as the client gets it: hop-by-hop headers removed (kept for a
/// WebSocket 101, whose connections are then spliced), no `Set-Cookie` of the proxy's own
/// cookie `own_cookie` ([`headers::clean_response`]), body streamed. A 101 is spliced only
/// when the client asked for a WebSocket on a WebSocket route and the upstream switched to
/// `websocket`; any other 101 (`h2c`, or an upgrade nobody asked for) is a bad answer → 502,
/// nothing spliced.
fn client_response(
    route: &Route,
    mut resp: Response<Incoming>,
    client_upgrade: Option<hyper::upgrade::OnUpgrade>,
    own_cookie: Option<&str>,
) -> Result<Response<Body>, ProxyError> {
    let switching = resp.status() == StatusCode::SWITCHING_PROTOCOLS;
    if switching {
        upstream::splice_upgrade(client_upgrade, &mut resp, Arc::from(route.name.as_str()))?;
    }
    headers::clean_response(resp.headers_mut(), switching, own_cookie);
    // Streamed; trailers (HTTP/2, chunked HTTP/1.1) pass [`headers::clean_response_trailers`]:
    // the upstream cannot set a cookie or a hop-by-hop field through them either.
    Ok(resp.map(|b| {
        b.map_frame(|f| match f.into_trailers() {
            Ok(mut t) => {
                headers::clean_response_trailers(&mut t);
                http_body::Frame::trailers(t)
            }
            Err(f) => f,
        })
        .map_err(|e| Box::new(e) as crate::error::BoxError)
        .boxed_unsync()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `upstream_uri` before the fast path, kept as the reference.
    fn upstream_uri_reference(base_path: &str, path: &str, client: &Uri) -> Option<Uri> {
        let mut pq = String::new();
        pq.push_str(base_path);
        if base_path.is_empty() || path != "/" {
            pq.push_str(path);
        }
        if let Some(q) = client.query() {
            pq.push('?');
            pq.push_str(q);
        }
        Uri::try_from(pq).ok()
    }

    /// The client's URI kept as it is (or the exact-length copy) is the URI the reference
    /// builds, for every combination of base path, (normalized) path and client URI form.
    #[test]
    fn upstream_uri_matches_the_reference() {
        let clients = [
            "/",
            "/a/b",
            "/a/b?x=1&y",
            "/a/b?",
            "/a//b/../c",
            "/a%2Fb?q",
            "/api/v1/items?page=2",
            "*",
            "http://app.local/a/b?x=1",
            "https://app.local:8443/",
            "//double/slash",
            "/a/b#frag",
            "/a/b?x#frag",
        ];
        let paths = [
            "/",
            "/a/b",
            "/a/c",
            "/v1/items",
            "/api/v1/items",
            "*",
            "//double/slash",
        ];
        for base in ["", "/base", "/b/c"] {
            for client in clients {
                let client: Uri = client.parse().unwrap();
                for path in paths {
                    let want = upstream_uri_reference(base, path, &client);
                    let got = upstream_uri(base, path, &client)
                        .ok()
                        .map(|u| u.unwrap_or_else(|| client.clone()));
                    assert_eq!(got, want, "{base:?} {path:?} {client:?}");
                    assert_eq!(
                        got.as_ref().map(ToString::to_string),
                        want.as_ref().map(ToString::to_string),
                        "{base:?} {path:?} {client:?}"
                    );
                    if let Some(u) = &got {
                        assert!(u.scheme().is_none() && u.authority().is_none(), "{u}");
                    }
                }
            }
        }
    }
}
