//! The access decision, in one place: whether a request may reach its route's upstream, and
//! why not. The proxy pipeline ([`crate::proxy`]), forward-auth ([`crate::forward_auth`]) and
//! `portcullis explain` ([`crate::explain`]) all call [`decide`]; they only adapt its input
//! (forward-auth: the original request named by the forwarding headers; explain: the command
//! line's method, URL and headers) and render its [`Decision`], so they cannot disagree.
//!
//! In this order — the order is the security property:
//! 1. the host (malformed, duplicated, or missing on HTTP/1.1 → 400; over TLS another host than
//!    the connection's SNI → 421), the method (lower-case letters → 400) and the path
//!    (normalized; invalid → 400);
//! 2. `/.auth/*` → an endpoint the proxy owns, never forwarded;
//! 3. the route (first match wins; none → 404);
//! 4. strip every incoming identity header, the headers only a proxy may set (from an untrusted
//!    peer also its forwarding headers) and the hop-by-hop headers (but `TE: trailers` for an
//!    HTTP/2 upstream) — before authentication, so a `Connection` header cannot remove a
//!    credential after it was judged, nor an identity header the proxy writes afterwards;
//! 5. authenticate (route's `auth`) → an identity, or an [`AuthError`];
//! 6. authorize → a [`Permit`], or 403.
//!
//! Injecting the identity headers from the permit is the caller's (the pipeline writes them on
//! the upstream request, forward-auth on its answer). The decision borrows the request's head
//! ([`Parts`], any body type) and copies nothing of it beyond the normalized path.

use std::sync::Arc;

use http::HeaderValue;
use http::header;
use http::request::Parts;

use crate::auth::{AuthState, Authenticate};
use crate::authz::{self, Permit};
use crate::config::{AuthMode, Config, Route};
use crate::error::{AuthError, DecisionKind, ProxyError};
use crate::headers;
use crate::identity::Identity;
use crate::request::{self, ConnInfo};
use crate::routes;

/// What is known about the request besides its head.
#[derive(Clone, Copy)]
pub struct Input<'a> {
    /// The host it addressed ([`request::request_host`] of the head; the caller keeps a copy
    /// for its own log, so the decision does not borrow it from the head it changes).
    pub host: Option<&'a str>,
    /// `false`: the method is unknown (forward-auth without a method header): only routes
    /// without `methods` can match, and the head's own method is not judged.
    pub method_known: bool,
    pub conn: ConnInfo,
    /// The TLS server name the connection was opened for (`None`: no TLS, or not checked).
    pub sni: Option<&'a str>,
}

/// What [`decide`] found.
#[derive(Debug)]
pub struct Decision {
    /// Index of the judged route in `config.routes` (`None`: refused before a route matched,
    /// or an endpoint of the proxy).
    pub route: Option<usize>,
    /// The normalized path (empty when the path itself was refused).
    pub path: String,
    /// Whether the peer is one of `[server] trusted_proxies`.
    pub trusted: bool,
    /// The identity that authenticated and was then refused by authorization (its `sub` goes
    /// to the access log; explain prints it).
    pub forbidden: Option<Arc<Identity>>,
    pub verdict: Result<Verdict, ProxyError>,
}

#[derive(Debug)]
pub enum Verdict {
    /// Under `[server] auth_prefix`: one of the proxy's own endpoints answers
    /// ([`Decision::endpoint`]); never forwarded.
    Endpoint,
    /// May be forwarded to the route's upstream.
    Forward {
        /// Who may use the route (`None`: an `auth = "none"` route, no identity at all).
        permit: Option<Permit>,
        /// Set-Cookie values the answer must carry (a session that was slid or refreshed).
        set_cookie: Vec<HeaderValue>,
        /// A WebSocket handshake on a WebSocket route (`Upgrade: websocket` kept).
        websocket: bool,
    },
}

impl Decision {
    fn refused(route: Option<usize>, path: String, trusted: bool, e: ProxyError) -> Self {
        Decision {
            route,
            path,
            trusted,
            forbidden: None,
            verdict: Err(e),
        }
    }

    /// The endpoint's path after the auth prefix (`""` or `/…`), for [`Verdict::Endpoint`].
    pub fn endpoint<'p>(&'p self, cfg: &Config) -> Option<&'p str> {
        match self.verdict {
            Ok(Verdict::Endpoint) => self.path.get(cfg.server.auth_prefix.len()..),
            _ => None,
        }
    }

    /// The access decision's label (metric and access log): `None` when no access decision
    /// was made (refused before a route matched, or an endpoint of the proxy).
    pub fn kind(&self) -> Option<DecisionKind> {
        self.route?;
        match &self.verdict {
            Ok(Verdict::Forward { .. }) => Some(DecisionKind::Allowed),
            Ok(Verdict::Endpoint) => None,
            Err(ProxyError::Auth(e)) => Some(e.kind()),
            Err(_) => None,
        }
    }

    /// The short code of the failed check (access log `reason`); `None` when allowed.
    pub fn reason(&self) -> Option<&'static str> {
        self.verdict.as_ref().err().map(ProxyError::code)
    }

    /// The authenticated identity, allowed or forbidden.
    pub fn identity(&self) -> Option<&Identity> {
        match &self.verdict {
            Ok(Verdict::Forward {
                permit: Some(p), ..
            }) => Some(p.identity()),
            _ => self.forbidden.as_deref(),
        }
    }
}

/// What the metrics and the access log keep of a decision.
#[derive(Debug, Default)]
pub struct Record {
    pub route: Option<usize>,
    pub kind: Option<DecisionKind>,
    pub reason: Option<&'static str>,
    /// The authenticated identity (kept only when the access log is on).
    pub identity: Option<Arc<Identity>>,
}

impl Decision {
    /// The record of this decision; `identity`: keep the identity too (for the access log).
    pub fn record(&self, identity: bool) -> Record {
        Record {
            route: self.route,
            kind: self.kind(),
            reason: self.reason(),
            identity: if identity {
                match &self.verdict {
                    Ok(Verdict::Forward {
                        permit: Some(p), ..
                    }) => Some(p.shared().clone()),
                    _ => self.forbidden.clone(),
                }
            } else {
                None
            },
        }
    }
}

/// Judges the request whose head is `parts`. Changes the head as the upstream must receive it
/// (step 4: stripped headers), never its method, URI or host. `auth`: the proxy's
/// [`AuthState`]; policy tests pass synthetic identities (no provider contacted).
pub async fn decide<A: Authenticate>(
    cfg: &Config,
    auth: &A,
    parts: &mut Parts,
    input: Input<'_>,
) -> Decision {
    let trusted = headers::is_trusted(input.conn.peer.ip(), &cfg.server.trusted_proxies);
    // 1. host, method, path
    let path = match judge_head(parts, input) {
        Ok(p) => p,
        Err(e) => return Decision::refused(None, String::new(), trusted, e),
    };

    // 2. endpoints the proxy owns
    if let Some(rest) = path.strip_prefix(cfg.server.auth_prefix.as_str())
        && (rest.is_empty() || rest.starts_with('/'))
    {
        return Decision {
            route: None,
            path,
            trusted,
            forbidden: None,
            verdict: Ok(Verdict::Endpoint),
        };
    }

    // 3. route
    let Some((idx, route)) = find_route(cfg, parts, input, &path) else {
        let e = ProxyError::NoRoute {
            method: if input.method_known {
                parts.method.to_string()
            } else {
                "(method unknown: no X-Forwarded-Method / X-Original-Method)".to_string()
            },
            path: path.clone(),
        };
        return Decision::refused(None, path, trusted, e);
    };

    // 4. strip forged identity (and, from an untrusted peer, forwarding headers), and the
    // client's hop-by-hop headers. A WebSocket handshake goes on as `Upgrade: websocket` alone
    // (no `h2c`, no `HTTP2-Settings`): the upstream must not switch to anything not judged.
    // `TE: trailers` is the one hop-by-hop header an HTTP/2 upstream gets: gRPC servers
    // require it.
    headers::strip_inbound(&mut parts.headers, &cfg.identity_header_names, trusted);
    let websocket = route.websocket && is_websocket_upgrade(parts);
    let te_trailers = route.upstream.protocol.may_be_h2() && headers::te_trailers(&parts.headers);
    headers::remove_hop_by_hop(&mut parts.headers, websocket);
    if te_trailers {
        parts
            .headers
            .insert(header::TE, HeaderValue::from_static("trailers"));
    }
    if websocket {
        parts
            .headers
            .insert(header::UPGRADE, headers::WEBSOCKET.clone());
    }
    if route.auth == AuthMode::None {
        return Decision {
            route: Some(idx),
            path,
            trusted,
            forbidden: None,
            verdict: Ok(Verdict::Forward {
                permit: None,
                set_cookie: Vec::new(),
                websocket,
            }),
        };
    }

    // 5 + 6. authenticate, authorize. Boxed: an inline auth future would make every request's
    // future (moved into place at each `.await`) kilobytes larger, auth route or not.
    let authenticated =
        match Box::pin(auth.authenticate(route, parts, input.conn, input.host)).await {
            Ok(a) => a,
            Err(e) => return Decision::refused(Some(idx), path, trusted, e.into()),
        };
    match authz::authorize(route, authenticated.identity) {
        Ok(permit) => Decision {
            route: Some(idx),
            path,
            trusted,
            forbidden: None,
            verdict: Ok(Verdict::Forward {
                permit: Some(permit),
                set_cookie: authenticated.set_cookie,
                websocket,
            }),
        },
        Err(refused) => {
            let mut e = AuthState::forbidden(&refused.identity, refused.unmet);
            // A session renewed while being checked stays renewed: the browser gets its new
            // cookie with the refusal.
            if let AuthError::Forbidden { set_cookie, .. } = &mut e {
                *set_cookie = authenticated.set_cookie;
            }
            Decision {
                route: Some(idx),
                path,
                trusted,
                forbidden: Some(refused.identity),
                verdict: Err(e.into()),
            }
        }
    }
}

/// Step 1: the host, the method and the path; the normalized path.
fn judge_head(parts: &Parts, input: Input<'_>) -> Result<String, ProxyError> {
    request::check_host(parts)?;
    if input.method_known && routes::method_is_ambiguous(&parts.method) {
        return Err(ProxyError::BadRequest(
            "the method has lower-case letters; methods are case-sensitive (send e.g. DELETE, not delete)",
        ));
    }
    if let (Some(sni), Some(host)) = (input.sni, input.host)
        && !request::same_host(sni, host)
    {
        return Err(ProxyError::Misdirected);
    }
    Ok(routes::normalize_path(parts.uri.path())?.into_owned())
}

/// Step 3: the first route that matches. An unknown method matches only routes without
/// `methods`: any method could be the original one, so a route restricted to some methods
/// cannot be assumed.
fn find_route<'c>(
    cfg: &'c Config,
    parts: &Parts,
    input: Input<'_>,
    path: &str,
) -> Option<(usize, &'c Route)> {
    let path = routes::MatchPath::new(path);
    cfg.routes
        .iter()
        .enumerate()
        .find(|(_, r)| {
            if input.method_known {
                r.matcher.matches_path(input.host, &parts.method, &path)
            } else {
                r.matcher.methods.is_none()
                    && r.matcher
                        .matches_path(input.host, &http::Method::GET, &path)
            }
        })
        .map(|(i, r)| (i, &**r))
}

fn is_websocket_upgrade(parts: &Parts) -> bool {
    let has_token = |name: header::HeaderName, token: &str| {
        parts
            .headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    parts.method == http::Method::GET
        && has_token(header::CONNECTION, "upgrade")
        && has_token(header::UPGRADE, "websocket")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Arc<Config> {
        let src = r#"
[server]
listen = "127.0.0.1:1"
[providers.p]
jwks_uri = "http://127.0.0.1:1/jwks"
[[route]]
name = "post"
path = "/post"
methods = ["POST"]
upstream = "http://127.0.0.1:2"
auth = "none"
[[route]]
name = "public"
path = "/public"
upstream = "http://127.0.0.1:2"
auth = "none"
[[route]]
name = "api"
path = "/api"
upstream = "http://127.0.0.1:2"
auth = "bearer"
"#;
        Arc::new(
            crate::config::load_str(std::path::Path::new("t.toml"), src, Default::default())
                .unwrap(),
        )
    }

    /// Judges `method target` with `headers` in memory (no body, no socket).
    async fn judge(
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        known: bool,
        sni: Option<&str>,
    ) -> (Decision, Parts) {
        let cfg = config();
        let auth = AuthState::new(cfg.clone()).unwrap();
        let mut b = http::Request::builder().method(method).uri(target);
        for (n, v) in headers {
            b = b.header(*n, *v);
        }
        let mut parts = b.body(()).unwrap().into_parts().0;
        let host = request::request_host(&parts).map(str::to_string);
        let input = Input {
            host: host.as_deref(),
            method_known: known,
            conn: ConnInfo {
                peer: ([10, 0, 0, 1], 1).into(),
                tls: false,
            },
            sni,
        };
        (decide(&cfg, &auth, &mut parts, input).await, parts)
    }

    fn status(d: &Decision) -> u16 {
        match &d.verdict {
            Ok(_) => 200,
            Err(e) => e.status().as_u16(),
        }
    }

    #[tokio::test]
    async fn refusals_before_the_route() {
        let h = [("host", "a.example")];
        let (d, _) = judge("GET", "/public", &[("host", "a b")], true, None).await;
        assert_eq!((status(&d), d.route), (400, None));
        let (d, _) = judge("get", "/public", &h, true, None).await;
        assert_eq!(status(&d), 400);
        let (d, _) = judge("GET", "/public/..%2Fapi", &h, true, None).await;
        assert_eq!((status(&d), d.path.as_str()), (400, ""));
        let (d, _) = judge("GET", "/public", &h, true, Some("b.example")).await;
        assert_eq!(status(&d), 421);
        let (d, _) = judge("GET", "/nothing", &h, true, None).await;
        assert_eq!((status(&d), d.kind()), (404, None));
    }

    #[tokio::test]
    async fn endpoints_routes_and_unknown_methods() {
        let h = [("host", "a.example")];
        let cfg = config();
        let (d, _) = judge("GET", "/.auth/me", &h, true, None).await;
        assert!(matches!(d.verdict, Ok(Verdict::Endpoint)));
        assert_eq!(d.endpoint(&cfg), Some("/me"));
        let (d, _) = judge("POST", "/post", &h, true, None).await;
        assert_eq!((status(&d), d.route), (200, Some(0)));
        // an unknown method never matches a route restricted by `methods`
        let (d, _) = judge("POST", "/post", &h, false, None).await;
        assert_eq!(status(&d), 404);
        let (d, _) = judge("DELETE", "/public/../public/x", &h, false, None).await;
        assert_eq!((d.route, d.path.as_str()), (Some(1), "/public/x"));
    }

    /// Forged identity and hop-by-hop headers are gone before authentication, on every route;
    /// a refusal carries its label and reason.
    #[tokio::test]
    async fn strips_then_authenticates() {
        let h = [
            ("host", "a.example"),
            ("x-forwarded-user", "mallory"),
            ("connection", "x-keep"),
            ("x-keep", "1"),
        ];
        let (d, parts) = judge("GET", "/public", &h, true, None).await;
        assert_eq!(d.kind(), Some(DecisionKind::Allowed));
        assert!(!parts.headers.contains_key("x-forwarded-user"));
        assert!(!parts.headers.contains_key("x-keep"));
        let (d, _) = judge("GET", "/api", &h, true, None).await;
        assert_eq!(status(&d), 401);
        assert_eq!(d.kind(), Some(DecisionKind::Unauthenticated));
        assert_eq!(d.reason(), Some("no_token"));
        assert!(d.identity().is_none());
    }
}
