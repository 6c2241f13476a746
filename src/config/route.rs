//! `[[route]]`: matcher (host, path, methods), upstream, auth mode and provider, requirements,
//! headers, timeouts and flags. Order and shadowing between routes are checked in `load`.

use std::sync::Arc;
use std::time::Duration;

use toml::Spanned;
use url::Url;

use super::headers::HeaderConfig;
use super::load::{Validator, span};
use super::raw::{RawConfig, RawRoute, RawUpstream};
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

/// Which organization `require_org_roles` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrgRef {
    /// A fixed organization id.
    Id(String),
    /// `"@user"`: the user's own organization (`urn:zitadel:iam:user:resourceowner:id`).
    User,
}

impl std::fmt::Display for OrgRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OrgRef::Id(id) => f.write_str(id),
            OrgRef::User => f.write_str("@user"),
        }
    }
}

/// `require_org_roles`: every role of `roles` granted in `org` (ZITADEL's role map
/// `{"admin": {"<orgId>": "<orgDomain>"}}`).
#[derive(Debug, Clone)]
pub struct OrgRolesRule {
    pub org: OrgRef,
    pub roles: Vec<String>,
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
    /// Lower-cased domains; with `require_emails`: the identity's verified email must match one.
    pub require_email_domains: Vec<String>,
    /// Lower-cased addresses.
    pub require_emails: Vec<String>,
    /// ZITADEL: every role granted in one organization.
    pub require_org_roles: Option<OrgRolesRule>,
    pub headers: Arc<HeaderConfig>,
    pub timeout: Duration,
    pub websocket: bool,
    pub strip_prefix: bool,
    pub preserve_host: bool,
    pub upstream_ca_file: Option<CaFile>,
    /// Every target of `upstream` (one for a single URL; `upstream` is the first). They share
    /// scheme and path, so the request built for one fits any.
    pub targets: Vec<Upstream>,
    /// Longest gap between two chunks of the upstream's response body; `None`: no limit.
    pub read_timeout: Option<Duration>,
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
        let targets =
            self.upstream_targets(upstream, &k("upstream"), r.upstream_protocol.as_ref())?;
        if targets[0].protocol.may_be_h2() && r.websocket == Some(true) {
            self.errs.at(
                span(sr),
                k("websocket"),
                "websocket = true needs an HTTP/1.1 upstream: use an http:// or https:// upstream without upstream_protocol (or upstream_protocol = \"http1\")",
            );
            ok = false;
        }
        let upstream = targets[0].clone();
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
        let mut require_email_domains = Vec::new();
        for (j, d) in r.require_email_domains.iter().enumerate() {
            match email_domain(d.get_ref()) {
                Ok(d) => require_email_domains.push(d),
                Err(why) => {
                    self.errs
                        .at(span(d), k(&format!("require_email_domains[{j}]")), why);
                    ok = false;
                }
            }
        }
        let mut require_emails = Vec::new();
        for (j, e) in r.require_emails.iter().enumerate() {
            match email_address(e.get_ref()) {
                Ok(e) => require_emails.push(e),
                Err(why) => {
                    self.errs
                        .at(span(e), k(&format!("require_emails[{j}]")), why);
                    ok = false;
                }
            }
        }
        let require_org_roles = match &r.require_org_roles {
            Some(o) => {
                let rule = self.org_roles_rule(o, &k("require_org_roles"));
                ok &= rule.is_some();
                rule
            }
            None => None,
        };
        let has_requirements = r.require_org_roles.is_some()
            || !r.require_roles.is_empty()
            || !r.require_any_role.is_empty()
            || !r.require_claims.is_empty()
            || !r.require_email_domains.is_empty()
            || !r.require_emails.is_empty();
        if auth == AuthMode::None && has_requirements {
            self.errs.at(
                span(auth_s),
                k("auth"),
                "require_roles/require_any_role/require_claims/require_email_domains/require_emails/require_org_roles need an authenticated route: set auth to \"login\", \"bearer\" or \"login_or_bearer\"",
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
            require_email_domains,
            require_emails,
            require_org_roles,
            headers,
            timeout: r.timeout.map_or(server.upstream_timeout, |d| d.0),
            websocket: r.websocket.unwrap_or(false),
            strip_prefix: r.strip_prefix.unwrap_or(false),
            preserve_host: r.preserve_host.unwrap_or(true),
            upstream_ca_file,
            targets,
            read_timeout: r.read_timeout.map(|d| d.0),
        })
    }
}

impl Validator<'_, '_> {
    /// `require_org_roles = { org = "<orgId>" | "@user", roles = ["admin", …] }`: both keys
    /// given and non-empty.
    fn org_roles_rule(
        &mut self,
        o: &Spanned<super::raw::RawOrgRoles>,
        key: &str,
    ) -> Option<OrgRolesRule> {
        let raw = o.get_ref();
        let mut ok = true;
        let org = match &raw.org {
            None => {
                self.errs.at(
                    span(o),
                    format!("{key}.org"),
                    "missing `org`: give the ZITADEL organization id (org = \"<orgId>\") or \"@user\" for the user's own organization",
                );
                ok = false;
                None
            }
            Some(v) if v.get_ref().trim().is_empty() => {
                self.errs.at(
                    span(v),
                    format!("{key}.org"),
                    "an empty organization id: give the ZITADEL organization id (Organization → Overview shows it) or \"@user\"",
                );
                ok = false;
                None
            }
            Some(v) if v.get_ref().trim() == "@user" => Some(OrgRef::User),
            Some(v) if v.get_ref().starts_with('@') => {
                self.errs.at(
                    span(v),
                    format!("{key}.org"),
                    format!("{:?}: the only special value is \"@user\" (the user's own organization); otherwise give an organization id", v.get_ref().0),
                );
                ok = false;
                None
            }
            Some(v) => Some(OrgRef::Id(v.get_ref().trim().to_string())),
        };
        let mut roles = Vec::new();
        match &raw.roles {
            None => {
                self.errs.at(
                    span(o),
                    format!("{key}.roles"),
                    "missing `roles`: list the roles required in that organization, e.g. roles = [\"admin\"]",
                );
                ok = false;
            }
            Some(list) if list.get_ref().is_empty() => {
                self.errs.at(
                    span(list),
                    format!("{key}.roles"),
                    "an empty list: name at least one role, e.g. roles = [\"admin\"]",
                );
                ok = false;
            }
            Some(list) => {
                for (j, r) in list.get_ref().iter().enumerate() {
                    if r.get_ref().trim().is_empty() {
                        self.errs.at(
                            span(r),
                            format!("{key}.roles[{j}]"),
                            "an empty role name: give the role key as defined in the ZITADEL project",
                        );
                        ok = false;
                    } else {
                        roles.push(r.get_ref().0.clone());
                    }
                }
            }
        }
        match (ok, org) {
            (true, Some(org)) => Some(OrgRolesRule { org, roles }),
            _ => None,
        }
    }

    /// `upstream`: one URL or a non-empty list of them, all with the same scheme and path.
    /// Errors name the list index (`route[0].upstream[1]`) and point at the element.
    /// `h2c://` targets are read as the `http://` URL they dial, with the protocol beside it;
    /// `upstream_protocol` (ALPN) applies to `https://` targets only.
    fn upstream_targets(
        &mut self,
        v: &Spanned<RawUpstream>,
        key: &str,
        proto: Option<&Spanned<super::values::Parsed<UpstreamProtocol>>>,
    ) -> Option<Vec<Upstream>> {
        let items: Vec<(Spanned<super::values::Str>, String)> = match v.get_ref() {
            RawUpstream::One(s) => vec![(Spanned::new(span(v), s.clone()), key.to_string())],
            RawUpstream::Many(list) => {
                let mut items = Vec::with_capacity(list.len());
                for (j, s) in list.iter().enumerate() {
                    let key = format!("{key}[{j}]");
                    match super::values::interpolate(s.get_ref()) {
                        Ok(v) => items.push((Spanned::new(span(s), super::values::Str(v)), key)),
                        Err(e) => self.errs.at(span(s), key, e),
                    }
                }
                if items.len() < list.len() {
                    return None;
                }
                items
            }
        };
        if items.is_empty() {
            self.errs.at(
                span(v),
                key,
                "an empty list: give at least one target (upstream = [\"http://10.0.0.1:3000\", \"http://10.0.0.2:3000\"])",
            );
            return None;
        }
        let mut out: Vec<Upstream> = Vec::with_capacity(items.len());
        let mut ok = true;
        let mut proto_reported = false;
        let proto_key = format!("{key}_protocol");
        for (item, key) in &items {
            let h2c = item
                .get_ref()
                .0
                .get(..6)
                .is_some_and(|p| p.eq_ignore_ascii_case("h2c://"));
            let dialed;
            let item = if h2c {
                dialed = Spanned::new(
                    span(item),
                    Str(format!("http://{}", &item.get_ref().0[6..])),
                );
                &dialed
            } else {
                item
            };
            let protocol = match (proto, h2c) {
                (None, true) => UpstreamProtocol::H2c,
                (None, false) => UpstreamProtocol::Http1,
                (Some(p), true) => {
                    if !proto_reported {
                        self.errs.at(
                            span(p),
                            proto_key.as_str(),
                            "an h2c:// upstream is HTTP/2 (prior knowledge) already: remove upstream_protocol",
                        );
                        proto_reported = true;
                    }
                    ok = false;
                    UpstreamProtocol::H2c
                }
                (Some(p), false) => {
                    let want = p.get_ref().0;
                    let https = item
                        .get_ref()
                        .0
                        .get(..8)
                        .is_some_and(|s| s.eq_ignore_ascii_case("https://"));
                    if want != UpstreamProtocol::Http1 && !https {
                        if !proto_reported {
                            self.errs.at(
                                span(p),
                                proto_key.as_str(),
                                format!(
                                    "upstream_protocol = {:?} negotiates HTTP/2 by ALPN, which needs an https:// upstream; for HTTP/2 without TLS write upstream = \"h2c://host:port\"",
                                    if want == UpstreamProtocol::H2 { "h2" } else { "auto" }
                                ),
                            );
                            proto_reported = true;
                        }
                        ok = false;
                    }
                    want
                }
            };
            let Some(u) = self.url(item, key) else {
                ok = false;
                continue;
            };
            let authority = u[url::Position::BeforeHost..url::Position::AfterPort]
                .parse::<http::uri::Authority>();
            let scheme = if u.scheme() == "https" {
                http::uri::Scheme::HTTPS
            } else {
                http::uri::Scheme::HTTP
            };
            let target = match authority {
                Ok(authority)
                    if u.query().is_none() && u.fragment().is_none() && u.username().is_empty() =>
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
                    self.errs.at(
                        span(item),
                        key.as_str(),
                        "give scheme://host[:port][/path] without query, fragment or credentials",
                    );
                    ok = false;
                    continue;
                }
            };
            if let Some(first) = out.first() {
                let shown = |t: &Upstream| -> String {
                    if t.protocol == UpstreamProtocol::H2c {
                        "h2c".to_string()
                    } else {
                        t.url.scheme().to_string()
                    }
                };
                let problem = if shown(&target) != shown(first) {
                    Some(format!(
                        "{:?} uses {}:// while the first target uses {}://: a route's targets share one scheme (mixing would send some requests over another protocol or in clear)",
                        item.get_ref().0,
                        shown(&target),
                        shown(first)
                    ))
                } else if target.base_path != first.base_path {
                    Some(format!(
                        "{:?} has path {:?} while the first target has {:?}: a route's targets share one path",
                        item.get_ref().0,
                        target.url.path(),
                        first.url.path()
                    ))
                } else if out.iter().any(|t| t.authority == target.authority) {
                    Some(format!(
                        "{:?} is listed twice: name each target once",
                        item.get_ref().0
                    ))
                } else {
                    None
                };
                if let Some(problem) = problem {
                    self.errs.at(span(item), key.as_str(), problem);
                    ok = false;
                    continue;
                }
            }
            out.push(target);
        }
        ok.then_some(out)
    }
}

/// A `require_email_domains` entry, lower-cased: a bare domain (`example.com`). Subdomains are
/// not implied: each one that may sign in is listed.
fn email_domain(d: &str) -> Result<String, String> {
    let d = d.trim();
    if d.is_empty() {
        return Err("an empty domain: give a domain such as \"example.com\"".into());
    }
    if d.contains('@') {
        return Err(format!(
            "{d:?} is an address, not a domain: put addresses in require_emails, or give the part after '@'"
        ));
    }
    if d.starts_with('*') || d.starts_with('.') {
        return Err(format!(
            "{d:?}: wildcards are not supported; list each domain (subdomains are not implied)"
        ));
    }
    if !d
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        || d.ends_with('.')
        || d.contains("..")
    {
        return Err(format!(
            "{d:?} is not a domain name (letters, digits, '-' and '.'; IDNs in their xn-- form)"
        ));
    }
    Ok(d.to_ascii_lowercase())
}

/// A `require_emails` entry, lower-cased: `local@domain`.
fn email_address(e: &str) -> Result<String, String> {
    let e = e.trim();
    match e.rsplit_once('@') {
        Some((local, domain))
            if !local.is_empty()
                && !e.chars().any(|c| c.is_whitespace() || c.is_control())
                && email_domain(domain).is_ok() =>
        {
            // ASCII only, as addresses are compared: a Unicode lower-casing would turn an
            // entry with the Kelvin sign into another (ASCII) address.
            Ok(e.to_ascii_lowercase())
        }
        _ => Err(format!(
            "{e:?} is not an email address: give one such as \"a@example.com\""
        )),
    }
}
