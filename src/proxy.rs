//! The request pipeline. One screen, top to bottom — the order is the security property:
//!
//! 1. check the host (malformed, duplicated or missing on HTTP/1.1 → 400; over TLS, another
//!    host than the connection's SNI → 421) and normalize the path (invalid → 400) — the
//!    upstream receives this same host and path;
//! 2. `/.auth/*` → endpoints the proxy owns, never forwarded;
//! 3. match the route (first match wins; none → 404);
//! 4. strip every incoming identity header, the headers only a proxy may set (from an untrusted
//!    peer also its forwarding headers) and the hop-by-hop headers, on every route;
//! 5. authenticate (route's `auth`) → `Identity`, or an answer (redirect, 401, 503);
//! 6. authorize → `Permit`, or 403;
//! 7. inject identity headers from the `Permit`;
//! 8. forward (`X-Forwarded-*` set) and stream the answer back (a 101 only to WebSocket; no
//!    `Set-Cookie` of the proxy's own cookies from the upstream).

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;

use crate::auth::AuthState;
use crate::authz;
use crate::config::{AuthMode, Config, Route};
use crate::error::{Body, ProxyError, UpstreamError};
use crate::headers;
use crate::health::Health;
use crate::metrics::{DecisionLabels, ErrorLabels, Metrics, RequestLabels, RouteLabel, RouteOnly};
use crate::routes;
use crate::upstream::{self, Upstreams};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;

/// What the listener knows about the connection a request came on.
#[derive(Debug, Clone, Copy)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    pub tls: bool,
}

pub struct Proxy {
    pub config: Arc<Config>,
    pub upstreams: Upstreams,
    pub metrics: Arc<Metrics>,
    pub auth: AuthState,
    pub health: Arc<Health>,
    route_labels: Vec<RouteLabel>,
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
    decisions: [OnceLock<Counter>; 3],
}

const DECISIONS: [&str; 3] = ["unauthenticated", "allowed", "forbidden"];

/// What the pipeline hands the access log.
struct Served {
    route: Option<usize>,
    upstream_ms: Option<f64>,
}

impl Proxy {
    pub fn new(
        config: Arc<Config>,
        upstreams: Upstreams,
        metrics: Arc<Metrics>,
        auth: AuthState,
        health: Arc<Health>,
    ) -> Self {
        let route_labels: Vec<RouteLabel> = config
            .routes
            .iter()
            .map(|r| RouteLabel(Arc::from(r.name.as_str())))
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
        let method = req.method().clone();
        // A clone of the header value (or authority) shares its bytes: no copy per request.
        let host_text = HostText::of(&req);
        let host = host_text.as_ref().map(HostText::as_str);
        // The access log is the only reader of the raw path: copy it only when it is on.
        let path = tracing::enabled!(target: "portcullis::access", tracing::Level::INFO)
            .then(|| req.uri().path().to_string());
        let mut served = Served {
            route: None,
            upstream_ms: None,
        };
        // Boxed: the pipeline's future is a few KiB, and hyper moves the service's future into
        // place on every request; a box makes that move pointer-sized.
        let resp = match Box::pin(self.pipeline(req, conn, sni, host, &mut served)).await {
            Ok(r) => r,
            Err(e) => {
                if let ProxyError::Upstream(ue) = &e {
                    let route = served
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
                    if let (Some(i), Some(kind)) = (served.route, kind) {
                        self.metrics
                            .upstream_errors
                            .get_or_create(&ErrorLabels {
                                route: self.route_labels[i].clone(),
                                kind,
                            })
                            .inc();
                    }
                }
                e.into_response()
            }
        };
        let elapsed = start.elapsed();
        let label = served
            .route
            .map_or(&self.no_route, |i| &self.route_labels[i]);
        let status = resp.status().as_u16();
        let rm = &self.route_metrics[served.route.unwrap_or(self.route_labels.len())];
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
        tracing::info!(
            target: "portcullis::access",
            method = %method,
            host = host.unwrap_or(""),
            path = path.as_deref().unwrap_or(""),
            route = %label.0,
            status,
            latency_ms = elapsed.as_secs_f64() * 1000.0,
            upstream_ms = served.upstream_ms,
            peer = %conn.peer.ip(),
        );
        resp
    }

    async fn pipeline(
        &self,
        mut req: Request<Incoming>,
        conn: ConnInfo,
        sni: Option<&str>,
        host: Option<&str>,
        served: &mut Served,
    ) -> Result<Response<Body>, ProxyError> {
        let cfg = &*self.config;
        // 1. check the host, normalize the path
        check_host(&req)?;
        if routes::method_is_ambiguous(req.method()) {
            return Err(ProxyError::BadRequest(
                "the method has lower-case letters; methods are case-sensitive (send e.g. DELETE, not delete)",
            ));
        }
        if let (Some(sni), Some(host)) = (sni, host)
            && !same_host(sni, host)
        {
            return Err(ProxyError::Misdirected);
        }
        let normalized = routes::normalize_path(req.uri().path())?.into_owned();

        // 2. endpoints the proxy owns
        if let Some(rest) = normalized.strip_prefix(cfg.server.auth_prefix.as_str())
            && (rest.is_empty() || rest.starts_with('/'))
        {
            // Boxed here and below: an inline auth future would make every request's future
            // (moved into place at each `.await`) kilobytes larger, auth route or not.
            return Ok(Box::pin(self.auth.endpoint(rest, req, conn, host)).await);
        }

        // 3. route
        let (idx, route) = cfg
            .routes
            .iter()
            .enumerate()
            .find(|(_, r)| r.matcher.matches(host, req.method(), &normalized))
            .ok_or_else(|| ProxyError::NoRoute {
                method: req.method().to_string(),
                path: normalized.clone(),
            })?;
        served.route = Some(idx);

        // 4. strip forged identity (and, from an untrusted peer, forwarding headers), and the
        // client's hop-by-hop headers now: a `Connection` header naming X-Forwarded-User (or
        // the assertion) must not remove, after step 7, the identity headers the proxy itself
        // writes. A WebSocket handshake goes on as `Upgrade: websocket` alone (no `h2c`, no
        // `HTTP2-Settings`): the upstream must not switch to anything the proxy did not judge.
        let trusted = headers::is_trusted(conn.peer.ip(), &cfg.server.trusted_proxies);
        headers::strip_inbound(req.headers_mut(), &cfg.identity_header_names, trusted);
        let wants_ws = route.websocket && is_websocket_upgrade(&req);
        headers::remove_hop_by_hop(req.headers_mut(), wants_ws);
        if wants_ws {
            req.headers_mut()
                .insert(header::UPGRADE, headers::WEBSOCKET.clone());
        }

        // 5 + 6 + 7. authenticate, authorize, inject
        let mut set_cookie = Vec::new();
        if route.auth != AuthMode::None {
            let (parts, body) = req.into_parts();
            let identity = match Box::pin(self.auth.authenticate(route, &parts, conn, host)).await {
                // A refreshed or slid session travels back on whatever the upstream answers.
                Ok(a) => {
                    set_cookie = a.set_cookie;
                    a.identity
                }
                Err(e) => {
                    self.decision(idx, 0);
                    return Ok(self.auth.refusal(e, &parts));
                }
            };
            let mut parts = parts;
            match authz::authorize(route, &identity) {
                Ok(permit) => {
                    self.decision(idx, 1);
                    headers::inject(
                        &mut parts.headers,
                        &permit,
                        &route.headers,
                        Some((self.auth.assertion(), &route.name)),
                    );
                }
                Err(denied) => {
                    self.decision(idx, 2);
                    let e = AuthState::forbidden(&identity, denied);
                    return Ok(self.auth.refusal(e, &parts));
                }
            }
            req = Request::from_parts(parts, body);
        }

        // The proxy's own cookies stay here (a session id is a credential the app must not see).
        self.auth.strip_own_cookies(req.headers_mut());

        // 8. forward (awaited here rather than in a helper: each nested future is moved into
        // its caller's, so one level less is a few KiB less copied per request)
        let client_upgrade = wants_ws.then(|| hyper::upgrade::on(&mut req));
        let up_req = self.upstream_request(route, req, conn, host, &normalized, trusted)?;
        // Upstream time is for the access log only: no clock reads when it is off.
        let t0 = tracing::enabled!(target: "portcullis::access", tracing::Level::INFO)
            .then(Instant::now);
        let result = self.upstreams.send(idx, up_req, route.timeout).await;
        served.upstream_ms = t0.map(|t0| t0.elapsed().as_secs_f64() * 1000.0);
        let mut resp = client_response(route, result?, client_upgrade)?;
        // The app cannot set the proxy's cookies (a header injection in it must not plant a
        // session); the proxy's own come after.
        if let Some(s) = &cfg.session {
            headers::drop_own_set_cookies(resp.headers_mut(), &s.cookie_name);
        }
        for c in set_cookie {
            resp.headers_mut().append(header::SET_COOKIE, c);
        }
        Ok(resp)
    }

    /// Counts an auth decision (an index into [`DECISIONS`]) for route `idx`.
    fn decision(&self, idx: usize, decision: usize) {
        self.route_metrics[idx].decisions[decision]
            .get_or_init(|| {
                self.metrics
                    .auth_decisions
                    .get_or_create(&DecisionLabels {
                        route: self.route_labels[idx].clone(),
                        decision: DECISIONS[decision],
                    })
                    .clone()
            })
            .inc();
    }

    /// The request as the upstream gets it: normalized path (prefix stripped, base path
    /// added), origin-form URI, `X-Forwarded-*` and `Host` set. The client's hop-by-hop
    /// headers were removed before authentication (step 4).
    fn upstream_request(
        &self,
        route: &Route,
        req: Request<Incoming>,
        conn: ConnInfo,
        host: Option<&str>,
        normalized: &str,
        trusted: bool,
    ) -> Result<Request<Body>, ProxyError> {
        let path = if route.strip_prefix {
            routes::strip_prefix(normalized, &route.matcher.path)
        } else {
            normalized.into()
        };
        let mut pq = String::with_capacity(route.upstream.base_path.len() + path.len() + 32);
        pq.push_str(&route.upstream.base_path);
        if route.upstream.base_path.is_empty() || path != "/" {
            pq.push_str(&path);
        }
        if let Some(q) = req.uri().query() {
            pq.push('?');
            pq.push_str(q);
        }
        // Origin-form: the pool's connection is to the upstream already, and `Host` is set below.
        let uri = Uri::try_from(pq).map_err(|e| UpstreamError::BadRequest(e.to_string()))?;

        let (mut parts, body) = req.into_parts();
        parts.uri = uri;
        parts.version = Version::HTTP_11;
        // Room for X-Forwarded-For/Proto/Host, X-Real-IP and Host at once, rather than a
        // regrowth (reallocate + rehash) of a small parsed map per insert.
        parts.headers.reserve(5);
        headers::set_forwarded(
            &mut parts.headers,
            &headers::ForwardedInfo {
                peer: conn.peer.ip(),
                proto: if conn.tls { "https" } else { "http" },
                host,
                trusted,
                trusted_proxies: &self.config.server.trusted_proxies,
            },
        );
        if route.preserve_host {
            if let Some(v) = host.and_then(|h| HeaderValue::from_str(h).ok()) {
                parts.headers.insert(header::HOST, v);
            }
        } else if let Ok(v) = HeaderValue::from_str(route.upstream.authority.as_str()) {
            parts.headers.insert(header::HOST, v);
        }
        Ok(Request::from_parts(parts, upstream::client_body(body)))
    }
}

/// The upstream's answer as the client gets it: hop-by-hop headers removed (kept for a
/// WebSocket 101, whose connections are then spliced), body streamed. A 101 is spliced only
/// when the client asked for a WebSocket on a WebSocket route and the upstream switched to
/// `websocket`; any other 101 (`h2c`, or an upgrade nobody asked for) is a bad answer → 502,
/// nothing spliced.
fn client_response(
    route: &Route,
    mut resp: Response<Incoming>,
    client_upgrade: Option<hyper::upgrade::OnUpgrade>,
) -> Result<Response<Body>, ProxyError> {
    let switching = resp.status() == StatusCode::SWITCHING_PROTOCOLS;
    if switching {
        upstream::splice_upgrade(client_upgrade, &mut resp, Arc::from(route.name.as_str()))?;
    }
    headers::remove_hop_by_hop(resp.headers_mut(), switching);
    Ok(upstream::box_response(resp))
}

/// [`request_host`], owned without copying: the authority or header value is reference-counted.
enum HostText {
    Authority(http::uri::Authority),
    Header(HeaderValue),
}

impl HostText {
    fn of<B>(req: &Request<B>) -> Option<Self> {
        match req.uri().authority() {
            Some(a) => Some(HostText::Authority(a.clone())),
            None => req
                .headers()
                .get(header::HOST)
                .filter(|h| h.to_str().is_ok())
                .map(|h| HostText::Header(h.clone())),
        }
    }

    fn as_str(&self) -> &str {
        match self {
            HostText::Authority(a) => a.as_str(),
            // Checked to be visible ASCII in `of`.
            HostText::Header(h) => h.to_str().unwrap_or(""),
        }
    }
}

/// The host the client addressed: the URI authority (HTTP/2, absolute-form) or `Host`.
pub fn request_host<B>(req: &Request<B>) -> Option<&str> {
    req.uri().authority().map(|a| a.as_str()).or_else(|| {
        req.headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
    })
}

/// Refuses a request whose host the proxy and an upstream could read differently (RFC 9112
/// §3.2: a missing Host on HTTP/1.1, several Host headers, or an invalid one → 400). Routing
/// trusts the host as given, so anything but a plain `name[:port]`, `IPv4[:port]` or
/// `[IPv6][:port]` is refused before routing: userinfo (`user@admin.example.com`), paths,
/// spaces, non-numeric ports.
pub fn check_host<B>(req: &Request<B>) -> Result<(), ProxyError> {
    let mut hosts = req.headers().get_all(header::HOST).iter();
    let first = hosts.next();
    if hosts.next().is_some() {
        return Err(ProxyError::BadRequest("more than one Host header"));
    }
    let host = match req.uri().authority() {
        // absolute-form (HTTP/1.1) or :authority (HTTP/2): the Host header is not used.
        Some(a) => a.as_str(),
        None => match first {
            Some(h) => h
                .to_str()
                .map_err(|_| ProxyError::BadRequest("invalid Host header"))?,
            None if req.version() == Version::HTTP_11 => {
                return Err(ProxyError::BadRequest("missing Host header"));
            }
            // HTTP/1.0 may omit it; HTTP/2 without :authority and Host routes host-less.
            None => return Ok(()),
        },
    };
    if valid_host(host) {
        Ok(())
    } else {
        Err(ProxyError::BadRequest("invalid Host header"))
    }
}

/// Whether `host` (a checked `Host` or `:authority`) names the TLS server name `sni`: letter
/// case, the port and one trailing dot do not matter. An IP literal never matches (SNI carries
/// only DNS names).
fn same_host(sni: &str, host: &str) -> bool {
    let name = if host.starts_with('[') {
        host
    } else {
        host.split_once(':').map_or(host, |(name, _)| name)
    };
    let trim = |s: &'_ str| -> usize { s.len() - usize::from(s.ends_with('.')) };
    let (name, sni) = (&name[..trim(name)], &sni[..trim(sni)]);
    name.eq_ignore_ascii_case(sni)
}

/// `reg-name[:port]`, `IPv4[:port]` or `[IPv6][:port]`, with a reg-name of letters, digits,
/// `-`, `_` and `.` only (no percent-encoding, no userinfo) and a port of at most 5 digits.
pub(crate) fn valid_host(host: &str) -> bool {
    let (name_ok, port) = if let Some(rest) = host.strip_prefix('[') {
        match rest.split_once(']') {
            Some((v6, after)) => (v6.parse::<std::net::Ipv6Addr>().is_ok(), after),
            None => return false,
        }
    } else {
        let (name, port) = match host.bytes().position(|b| b == b':') {
            Some(i) => host.split_at(i),
            None => (host, ""),
        };
        let ok = !name.is_empty()
            && name.len() <= 254
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        (ok, port)
    };
    let port_ok = match port.strip_prefix(':') {
        Some(p) => p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()),
        None => port.is_empty(),
    };
    name_ok && port_ok
}

fn is_websocket_upgrade<B>(req: &Request<B>) -> bool {
    let has_token = |name: header::HeaderName, token: &str| {
        req.headers()
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    req.method() == Method::GET
        && has_token(header::CONNECTION, "upgrade")
        && has_token(header::UPGRADE, "websocket")
}

#[cfg(test)]
mod sni_tests {
    use super::same_host;

    /// Letter case, a port and a trailing dot do not matter; another name, a subdomain or an
    /// IP literal does.
    #[test]
    fn host_against_sni() {
        for (sni, host) in [
            ("a.example", "a.example"),
            ("a.example", "A.Example:8443"),
            ("a.example", "a.example.:443"),
            ("a.example.", "a.example"),
        ] {
            assert!(same_host(sni, host), "{sni} vs {host}");
        }
        for (sni, host) in [
            ("a.example", "b.example"),
            ("a.example", "x.a.example"),
            ("a.example", "a.example.evil"),
            ("a.example", "127.0.0.1"),
            ("a.example", "[::1]:443"),
            ("a.example", "a.example.."),
        ] {
            assert!(!same_host(sni, host), "{sni} vs {host}");
        }
    }
}
