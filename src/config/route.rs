//! `[[route]]`: matcher (host, path, methods), upstream, auth mode and provider, requirements,
//! headers, timeouts and flags. Order and shadowing between routes are checked in `load`.

use std::sync::Arc;
use std::time::Duration;

use toml::Spanned;
use url::Url;

use super::headers::HeaderConfig;
use super::load::{Validator, span};
use super::raw::{RawConfig, RawRoute};
use super::server::Server;
use super::values::Str;
use crate::routes::Matcher;
use crate::tls_client::CaFile;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    None,
    Login,
    Bearer,
    LoginOrBearer,
}

impl std::str::FromStr for AuthMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "none" => AuthMode::None,
            "login" => AuthMode::Login,
            "bearer" => AuthMode::Bearer,
            "login_or_bearer" => AuthMode::LoginOrBearer,
            other => {
                return Err(format!(
                    "unknown auth {other:?}: use \"none\", \"login\", \"bearer\" or \"login_or_bearer\""
                ));
            }
        })
    }
}

impl AuthMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMode::None => "none",
            AuthMode::Login => "login",
            AuthMode::Bearer => "bearer",
            AuthMode::LoginOrBearer => "login_or_bearer",
        }
    }
    pub fn uses_login(self) -> bool {
        matches!(self, AuthMode::Login | AuthMode::LoginOrBearer)
    }
    pub fn uses_bearer(self) -> bool {
        matches!(self, AuthMode::Bearer | AuthMode::LoginOrBearer)
    }
}

/// How the proxy speaks to an upstream: the URL's scheme (`h2c://`) and the route's
/// `upstream_protocol` (for `https://`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UpstreamProtocol {
    /// HTTP/1.1 (the default).
    Http1,
    /// HTTP/2 negotiated by ALPN on an `https://` upstream; one that does not agree is a 502.
    H2,
    /// ALPN decides (`h2`, else `http/1.1`) on an `https://` upstream.
    Auto,
    /// HTTP/2 with prior knowledge, without TLS (`h2c://`).
    H2c,
}

impl std::str::FromStr for UpstreamProtocol {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "http1" => UpstreamProtocol::Http1,
            "h2" => UpstreamProtocol::H2,
            "auto" => UpstreamProtocol::Auto,
            other => {
                return Err(format!(
                    "unknown upstream_protocol {other:?}: use \"http1\" (the default), \"h2\" or \"auto\" (ALPN decides); for HTTP/2 without TLS write upstream = \"h2c://host:port\""
                ));
            }
        })
    }
}

impl UpstreamProtocol {
    /// Whether requests may go out as HTTP/2 (then `TE: trailers` is kept for them).
    pub fn may_be_h2(self) -> bool {
        self != UpstreamProtocol::Http1
    }
}

#[derive(Debug, Clone)]
pub struct Upstream {
    pub url: Url,
    pub scheme: http::uri::Scheme,
    pub authority: http::uri::Authority,
    /// Path prefix of the upstream URL without trailing slash ("" when none).
    pub base_path: String,
    pub protocol: UpstreamProtocol,
}

/// The upstream as the config wrote it (`h2c://…` for prior knowledge), and the ALPN choice.
impl std::fmt::Display for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.protocol {
            UpstreamProtocol::H2c => {
                let url = self.url.as_str();
                write!(f, "h2c://{}", url.strip_prefix("http://").unwrap_or(url))
            }
            UpstreamProtocol::Http1 => write!(f, "{}", self.url),
            UpstreamProtocol::H2 => write!(f, "{} (HTTP/2 by ALPN)", self.url),
            UpstreamProtocol::Auto => write!(f, "{} (HTTP/2 or HTTP/1.1 by ALPN)", self.url),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Route {
    pub name: String,
    pub matcher: Matcher,
    pub upstream: Upstream,
    pub auth: AuthMode,
    pub provider: Option<String>,
    pub require_roles: Vec<String>,
    pub require_any_role: Vec<String>,
    /// (claim path, accepted values)
    pub require_claims: Vec<(String, Vec<serde_json::Value>)>,
    pub headers: Arc<HeaderConfig>,
    pub timeout: Duration,
    pub websocket: bool,
    pub strip_prefix: bool,
    pub preserve_host: bool,
    pub upstream_ca_file: Option<CaFile>,
}

impl Validator<'_, '_> {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn route(
        &mut self,
        i: usize,
        sr: &Spanned<RawRoute>,
        raw: &RawConfig,
        global_headers: &Arc<HeaderConfig>,
        only_provider: &Option<String>,
        server: &Server,
    ) -> Option<Route> {
        let r = sr.get_ref();
        let k = |f: &str| format!("route[{i}].{f}");
        let name = r
            .name
            .as_ref()
            .map_or_else(|| format!("route-{i}"), |n| n.get_ref().0.clone());
        let mut ok = true;
        let Some(path) = &r.path else {
            self.errs
                .at(span(sr), k("path"), "missing `path` (e.g. path = \"/\")");
            return None;
        };
        let Some(upstream) = &r.upstream else {
            self.errs.at(
                span(sr),
                k("upstream"),
                "missing `upstream` (e.g. upstream = \"http://127.0.0.1:3000\")",
            );
            return None;
        };
        let Some(auth_s) = &r.auth else {
            self.errs.at(
                span(sr),
                k("auth"),
                "missing `auth`: choose \"none\", \"login\", \"bearer\" or \"login_or_bearer\"",
            );
            return None;
        };
        let auth = auth_s.get_ref().0;
        let p = path.get_ref().0.as_str();
        if !p.starts_with('/') {
            self.errs
                .at(span(path), k("path"), format!("{p:?} must start with '/'"));
            ok = false;
        } else if crate::routes::normalize_path(p)
            .map(|n| n != p.trim_end_matches('/') && n != p)
            .unwrap_or(true)
        {
            self.errs.at(
                span(path),
                k("path"),
                format!("{p:?} is not a normalized path (no '//', '.', '..' or encoded unreserved characters)"),
            );
            ok = false;
        }
        if p.starts_with(&format!("{}/", server.auth_prefix)) || p == server.auth_prefix {
            self.errs.at(
                span(path),
                k("path"),
                format!("paths under {} belong to the proxy", server.auth_prefix),
            );
            ok = false;
        }
        let methods: Option<Vec<String>> = r
            .methods
            .as_ref()
            .map(|m| m.get_ref().iter().map(|x| x.0.clone()).collect());
        let matcher = match Matcher::new(
            r.host.as_ref().map(|h| h.get_ref().0.as_str()),
            p,
            methods.as_deref(),
        ) {
            Ok(m) => m,
            Err(e) => {
                let at = r.host.as_ref().map(span).unwrap_or_else(|| span(sr));
                self.errs.at(at, k("host"), e);
                return None;
            }
        };
        // `h2c://` is read as the `http://` URL it dials; the protocol goes beside it.
        let h2c = upstream
            .get_ref()
            .get(..6)
            .is_some_and(|p| p.eq_ignore_ascii_case("h2c://"));
        let upstream = &if h2c {
            let http = Str(format!("http://{}", &upstream.get_ref()[6..]));
            Spanned::new(span(upstream), http)
        } else {
            upstream.clone()
        };
        let protocol = match (&r.upstream_protocol, h2c) {
            (None, true) => UpstreamProtocol::H2c,
            (None, false) => UpstreamProtocol::Http1,
            (Some(p), true) => {
                self.errs.at(
                    span(p),
                    k("upstream_protocol"),
                    "an h2c:// upstream is HTTP/2 (prior knowledge) already: remove upstream_protocol",
                );
                ok = false;
                UpstreamProtocol::H2c
            }
            (Some(p), false) => {
                let proto = p.get_ref().0;
                let https = upstream
                    .get_ref()
                    .get(..8)
                    .is_some_and(|s| s.eq_ignore_ascii_case("https://"));
                if proto != UpstreamProtocol::Http1 && !https {
                    self.errs.at(
                        span(p),
                        k("upstream_protocol"),
                        format!(
                            "upstream_protocol = {:?} negotiates HTTP/2 by ALPN, which needs an https:// upstream; for HTTP/2 without TLS write upstream = \"h2c://host:port\"",
                            if proto == UpstreamProtocol::H2 { "h2" } else { "auto" }
                        ),
                    );
                    ok = false;
                }
                proto
            }
        };
        if protocol.may_be_h2() && r.websocket == Some(true) {
            self.errs.at(
                span(sr),
                k("websocket"),
                "websocket = true needs an HTTP/1.1 upstream: use an http:// or https:// upstream without upstream_protocol (or upstream_protocol = \"http1\")",
            );
            ok = false;
        }
        let upstream = match self.url(upstream, &k("upstream")) {
            Some(u) => {
                let authority = u[url::Position::BeforeHost..url::Position::AfterPort]
                    .parse::<http::uri::Authority>();
                let scheme = if u.scheme() == "https" {
                    http::uri::Scheme::HTTPS
                } else {
                    http::uri::Scheme::HTTP
                };
                match authority {
                    Ok(authority)
                        if u.query().is_none()
                            && u.fragment().is_none()
                            && u.username().is_empty() =>
                    {
                        Upstream {
                            base_path: u.path().trim_end_matches('/').to_string(),
                            url: u,
                            scheme,
                            authority,
                            protocol,
                        }
                    }
                    _ => {
                        self.errs.at(span(upstream), k("upstream"), "give scheme://host[:port][/path] without query, fragment or credentials");
                        return None;
                    }
                }
            }
            None => return None,
        };
        let provider = match &r.provider {
            Some(pn) => {
                if !raw.providers.contains_key(&pn.get_ref().0) {
                    let known: Vec<_> = raw.providers.keys().map(String::as_str).collect();
                    self.errs.at(
                        span(pn),
                        k("provider"),
                        format!(
                            "no provider named {:?}; defined: [{}]",
                            pn.get_ref().0,
                            known.join(", ")
                        ),
                    );
                    ok = false;
                }
                Some(pn.get_ref().0.clone())
            }
            None if auth == AuthMode::None => None,
            None => match only_provider {
                Some(p) => Some(p.clone()),
                None if raw.providers.is_empty() => {
                    self.errs.at(
                        span(auth_s),
                        k("auth"),
                        format!(
                            "auth = {:?} needs a provider: add a [providers.NAME] section",
                            auth.as_str()
                        ),
                    );
                    ok = false;
                    None
                }
                None => {
                    self.errs.at(
                        span(auth_s),
                        k("provider"),
                        "several providers are configured: name one with provider = \"NAME\"",
                    );
                    ok = false;
                    None
                }
            },
        };
        let mut require_claims = Vec::new();
        for (claim, v) in &r.require_claims {
            let vals = match v.get_ref() {
                serde_json::Value::Array(a) => a.clone(),
                other => vec![other.clone()],
            };
            if vals.is_empty()
                || vals
                    .iter()
                    .any(|x| x.is_array() || x.is_object() || x.is_null())
            {
                self.errs.at(
                    span(v),
                    k(&format!("require_claims.{claim}")),
                    "give a value (string, number, boolean) or a list of accepted values",
                );
                ok = false;
            }
            require_claims.push((claim.clone(), vals));
        }
        let has_requirements = !r.require_roles.is_empty()
            || !r.require_any_role.is_empty()
            || !r.require_claims.is_empty();
        if auth == AuthMode::None && has_requirements {
            self.errs.at(
                span(auth_s),
                k("auth"),
                "require_roles/require_any_role/require_claims need an authenticated route: set auth to \"login\", \"bearer\" or \"login_or_bearer\"",
            );
            ok = false;
        }
        let headers = match &r.headers {
            Some(h) => Arc::new(self.headers(h, Some(global_headers))),
            None => global_headers.clone(),
        };
        let upstream_ca_file = match &r.upstream_ca_file {
            Some(f) => self.ca_file(f, &k("upstream_ca_file")),
            None => server.upstream_ca_file.clone(),
        };
        ok.then(|| Route {
            name,
            matcher,
            upstream,
            auth,
            provider,
            require_roles: r.require_roles.iter().map(|x| x.0.clone()).collect(),
            require_any_role: r.require_any_role.iter().map(|x| x.0.clone()).collect(),
            require_claims,
            headers,
            timeout: r.timeout.map_or(server.upstream_timeout, |d| d.0),
            websocket: r.websocket.unwrap_or(false),
            strip_prefix: r.strip_prefix.unwrap_or(false),
            preserve_host: r.preserve_host.unwrap_or(true),
            upstream_ca_file,
        })
    }
}
