//! `[[test]]`: policy tests — a request, who sends it, and the decision expected — in the
//! config or in a file given with `--tests`. Validated here like every other section (errors
//! with file:line:col and the key); `portcullis test` and `check` run them ([`crate::policy`]).
//!
//! A token file identity is decoded here WITHOUT checking its signature: a policy test judges
//! the rules, not the token; the runner labels such identities "signature not checked".

use std::path::PathBuf;

use base64::Engine;
use http::{HeaderName, HeaderValue, Method, Uri};
use serde_json::{Map, Value};
use toml::Spanned;

use super::load::{Validator, span};
use super::raw::RawTest;
use super::route::Route;
use super::values::Str;

/// The reason codes a test may expect (`expect.reason`), with what each means. The same codes
/// as the access log's `reason` (`AuthError::reason`, `ProxyError::code`); a unit test in
/// `crate::policy` keeps the two lists equal.
pub const REASONS: &[(&str, &str)] = &[
    (
        "no_token",
        "bearer route, no Authorization: Bearer token (401)",
    ),
    (
        "no_session",
        "login route, no session, not a browser navigation (401)",
    ),
    (
        "login_required",
        "login route, no session, a browser navigation: sent to sign in (302)",
    ),
    ("invalid_token", "a token that was refused (401)"),
    ("invalid_request", "malformed credentials (400)"),
    ("missing_roles", "a role of require_roles is missing (403)"),
    (
        "missing_any_role",
        "none of the roles of require_any_role (403)",
    ),
    (
        "missing_org_roles",
        "a role of require_org_roles is not granted in that organization (403)",
    ),
    (
        "claim_mismatch",
        "a require_claims claim is absent or differs (403)",
    ),
    (
        "email_not_verified",
        "email rules: no email, or email_verified is not true (403)",
    ),
    (
        "email_not_allowed",
        "email rules: a verified email outside require_email_domains / require_emails (403)",
    ),
    ("not_found", "no route matches (404)"),
    ("invalid_path", "the path cannot be normalized safely (400)"),
    (
        "bad_request",
        "a malformed request head: host, method (400)",
    ),
    (
        "misdirected_request",
        "Host differs from the TLS server name (421)",
    ),
    (
        "provider_unavailable",
        "the provider is needed and down (503)",
    ),
    (
        "session_store_unavailable",
        "the session store is down (503)",
    ),
];

/// Other spellings accepted for a reason code.
pub const REASON_ALIASES: &[(&str, &str)] = &[("missing_role", "missing_roles")];

/// The canonical reason code for `r` (an alias resolved), or `None` when unknown.
pub fn reason_code(r: &str) -> Option<&'static str> {
    REASONS
        .iter()
        .map(|(c, _)| *c)
        .find(|c| *c == r)
        .or_else(|| {
            REASON_ALIASES
                .iter()
                .find(|(a, _)| *a == r)
                .map(|(_, c)| *c)
        })
}

/// A validated `[[test]]`.
#[derive(Debug, Clone)]
pub struct PolicyTest {
    pub name: String,
    pub request: TestRequest,
    pub identity: TestIdentity,
    pub expect: Expect,
    /// Where it is written: `file:line`.
    pub at: String,
}

/// A request to judge: `METHOD URL` and extra headers.
#[derive(Debug, Clone)]
pub struct TestRequest {
    pub method: Method,
    /// From the URL (`None` for a bare path: the request has no host, as HTTP/2 may send it).
    pub host: Option<String>,
    /// Path and query.
    pub target: String,
    /// `https://` (the request arrived over TLS).
    pub tls: bool,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl TestRequest {
    /// Parses `METHOD URL` (URL: `http(s)://host[:port]/path?query`, or `/path?query`).
    pub fn parse(line: &str) -> Result<TestRequest, String> {
        let mut it = line.split_whitespace();
        let (Some(m), Some(url), None) = (it.next(), it.next(), it.next()) else {
            return Err(format!(
                "{line:?} is not \"METHOD URL\" (e.g. \"GET https://app.example.com/admin\")"
            ));
        };
        let method =
            Method::from_bytes(m.as_bytes()).map_err(|_| format!("{m:?} is not an HTTP method"))?;
        let (host, target, tls) = if url.starts_with('/') {
            (None, url, false)
        } else if let Some((scheme, rest)) = url.split_once("://") {
            let tls = match scheme.to_ascii_lowercase().as_str() {
                "https" => true,
                "http" => false,
                _ => {
                    return Err(format!(
                        "{url:?}: use an http:// or https:// URL, or a /path"
                    ));
                }
            };
            let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            let host = &rest[..end];
            if host.is_empty() || host.contains('@') || HeaderValue::from_str(host).is_err() {
                return Err(format!("{url:?} has no valid host"));
            }
            (Some(host.to_string()), &rest[end..], tls)
        } else {
            return Err(format!(
                "{url:?} is neither a URL (https://host/path) nor a path (/path)"
            ));
        };
        let target = target.split('#').next().unwrap_or("");
        let target = match target {
            "" => "/".to_string(),
            t if t.starts_with('?') => format!("/{t}"),
            t => t.to_string(),
        };
        if Uri::try_from(target.as_str()).is_err() {
            return Err(format!("{target:?} is not a valid request target"));
        }
        Ok(TestRequest {
            method,
            host,
            target,
            tls,
            headers: Vec::new(),
        })
    }

    /// `METHOD URL`, as written back for people.
    pub fn line(&self) -> String {
        match &self.host {
            Some(h) => format!(
                "{} {}://{h}{}",
                self.method,
                if self.tls { "https" } else { "http" },
                self.target
            ),
            None => format!("{} {}", self.method, self.target),
        }
    }
}

/// Who sends a test's request.
#[derive(Debug, Clone, PartialEq)]
pub enum TestIdentity {
    /// No credentials at all.
    Anonymous,
    /// A synthetic identity with these claims (`roles` already mapped by the runner).
    Claims(Map<String, Value>),
    /// The claims of a JWT read from a file, signature NOT checked.
    Token {
        path: PathBuf,
        claims: Map<String, Value>,
    },
}

impl TestIdentity {
    /// `"anonymous"`, a path to a token file (relative to `dir`), or a table of claims whose
    /// `roles` is a list of role names.
    pub fn parse(v: &Value, dir: &std::path::Path) -> Result<TestIdentity, String> {
        match v {
            Value::String(s) if s == "anonymous" => Ok(TestIdentity::Anonymous),
            Value::String(s) => {
                let path = dir.join(s);
                let text = std::fs::read_to_string(&path).map_err(|e| {
                    format!(
                        "cannot read the token file {}: {e}; give \"anonymous\", a table of claims, or the path of a file holding a JWT (relative to this file's folder)",
                        path.display()
                    )
                })?;
                let claims = jwt_claims(text.trim())
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                Ok(TestIdentity::Token { path, claims })
            }
            Value::Object(m) => {
                // a list of names, or ZITADEL's role map { admin = { "<orgId>" = "<domain>" } }
                let role_map = |r: &Value| {
                    r.as_object()
                        .is_some_and(|m| m.values().all(Value::is_object))
                };
                if let Some(r) = m.get("roles")
                    && !r
                        .as_array()
                        .is_some_and(|a| a.iter().all(Value::is_string))
                    && !role_map(r)
                {
                    return Err(
                        "`roles` must be a list of role names (roles = [\"reader\"]) or a ZITADEL role map (roles = { admin = { \"<orgId>\" = \"<orgDomain>\" } })".into(),
                    );
                }
                if let Some(s) = m.get("sub")
                    && s.as_str().is_none_or(|s| s.is_empty())
                {
                    return Err("`sub` must be a non-empty string".into());
                }
                Ok(TestIdentity::Claims(m.clone()))
            }
            _ => Err(
                "give \"anonymous\", a table of claims ({ sub = \"u1\", roles = [\"reader\"] }) or the path of a token file"
                    .into(),
            ),
        }
    }
}

/// The claims of a compact JWT, decoded without any check of its signature.
pub fn jwt_claims(token: &str) -> Result<Map<String, Value>, String> {
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() != 3 {
        return Err("not a JWT (header.payload.signature)".into());
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(parts[1].trim_end_matches('='))
        .map_err(|e| format!("the JWT payload is not base64url: {e}"))?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err("the JWT payload is not a JSON object".into()),
    }
}

/// The decision a test expects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expect {
    /// 200: forwarded; otherwise the status the proxy itself answers.
    pub status: u16,
    pub route: Option<String>,
    /// Canonical reason code (aliases resolved).
    pub reason: Option<String>,
}

impl Validator<'_, '_> {
    /// Validates an identities file's `[[identity]]` tables.
    pub(super) fn named_identities(
        &mut self,
        raw: &[Spanned<super::raw::RawNamedIdentity>],
    ) -> Vec<(String, TestIdentity)> {
        let mut out: Vec<(String, TestIdentity)> = Vec::new();
        for (i, si) in raw.iter().enumerate() {
            let r = si.get_ref();
            let k = |f: &str| format!("identity[{i}].{f}");
            let Some(name) = &r.name else {
                self.errs.at(
                    span(si),
                    k("name"),
                    "missing `name` (e.g. name = \"reader\")",
                );
                continue;
            };
            if out.iter().any(|(n, _)| *n == name.get_ref().0) {
                self.errs.at(
                    span(name),
                    k("name"),
                    "duplicate identity name: give each identity a unique name",
                );
                continue;
            }
            let parsed = match (&r.claims, &r.token) {
                (Some(_), Some(t)) => {
                    self.errs
                        .at(span(t), k("token"), "give `claims` or `token`, not both");
                    continue;
                }
                (Some(c), None) if !c.get_ref().is_object() => {
                    self.errs.at(
                        span(c),
                        k("claims"),
                        "a table of claims, e.g. claims = { sub = \"u1\", roles = [\"reader\"] }",
                    );
                    continue;
                }
                (Some(c), None) => TestIdentity::parse(c.get_ref(), self.dir)
                    .map_err(|e| (span(c), k("claims"), e)),
                (None, Some(t)) => {
                    TestIdentity::parse(&Value::String(t.get_ref().0.clone()), self.dir)
                        .map_err(|e| (span(t), k("token"), e))
                }
                (None, None) => Ok(TestIdentity::Anonymous),
            };
            match parsed {
                Ok(id) => out.push((name.get_ref().0.clone(), id)),
                Err((at, key, e)) => self.errs.at(at, key, e),
            }
        }
        if out.is_empty() && raw.is_empty() {
            let end = self.errs.src.len();
            self.errs.at(
                end..end,
                "identity",
                "no [[identity]] table: add one per identity (name, and claims or token)",
            );
        }
        out
    }

    /// Validates `[[test]]` tables (`key`: `test` in the config, also in a `--tests` file).
    pub(super) fn policy_tests(
        &mut self,
        raw: &[Spanned<RawTest>],
        routes: &[std::sync::Arc<Route>],
        file: &std::path::Path,
    ) -> Vec<PolicyTest> {
        let mut out = Vec::new();
        let mut names: Vec<String> = Vec::new();
        for (i, st) in raw.iter().enumerate() {
            let t = st.get_ref();
            let k = |f: &str| format!("test[{i}].{f}");
            let mut ok = true;
            let (line, _) = self.errs.line_col(span(st).start);
            let name = match &t.name {
                Some(n) if !n.get_ref().trim().is_empty() => {
                    let n_s = n.get_ref().0.clone();
                    if names.contains(&n_s) {
                        self.errs.at(
                            span(n),
                            k("name"),
                            format!("duplicate test name {n_s:?}: give each test a unique name"),
                        );
                        ok = false;
                    }
                    names.push(n_s.clone());
                    n_s
                }
                Some(n) => {
                    self.errs.at(span(n), k("name"), "an empty name");
                    ok = false;
                    String::new()
                }
                None => {
                    self.errs.at(
                        span(st),
                        k("name"),
                        "missing `name` (e.g. name = \"readers cannot delete\")",
                    );
                    ok = false;
                    String::new()
                }
            };
            let request = match &t.request {
                Some(r) => match TestRequest::parse(r.get_ref()) {
                    Ok(req) => Some(req),
                    Err(e) => {
                        self.errs.at(span(r), k("request"), e);
                        None
                    }
                },
                None => {
                    self.errs.at(
                        span(st),
                        k("request"),
                        "missing `request` (e.g. request = \"GET https://app.example.com/admin\")",
                    );
                    None
                }
            };
            let mut headers = Vec::new();
            for (n, v) in &t.headers {
                match (
                    HeaderName::from_bytes(n.as_bytes()),
                    HeaderValue::from_str(v.get_ref()),
                ) {
                    (Ok(n), Ok(v)) => headers.push((n, v)),
                    _ => {
                        self.errs.at(
                            span(v),
                            k(&format!("headers.{n}")),
                            "not a valid HTTP header name and value",
                        );
                        ok = false;
                    }
                }
            }
            let identity = match &t.identity {
                Some(v) => match TestIdentity::parse(v.get_ref(), self.dir) {
                    Ok(id) => Some(id),
                    Err(e) => {
                        self.errs.at(span(v), k("identity"), e);
                        None
                    }
                },
                None => {
                    self.errs.at(
                        span(st),
                        k("identity"),
                        "missing `identity`: \"anonymous\", a table of claims ({ sub = \"u1\", roles = [\"reader\"] }) or a token file path",
                    );
                    None
                }
            };
            let expect = match &t.expect {
                Some(e) => self.expect(e, routes, &k("expect")),
                None => {
                    self.errs.at(
                        span(st),
                        k("expect"),
                        "missing `expect` (e.g. expect = { status = 403, reason = \"missing_roles\" })",
                    );
                    None
                }
            };
            if let (true, Some(mut request), Some(identity), Some(expect)) =
                (ok, request, identity, expect)
            {
                request.headers = headers;
                out.push(PolicyTest {
                    name,
                    request,
                    identity,
                    expect,
                    at: format!("{}:{line}", file.display()),
                });
            }
        }
        out
    }

    fn expect(
        &mut self,
        e: &Spanned<super::raw::RawExpect>,
        routes: &[std::sync::Arc<Route>],
        key: &str,
    ) -> Option<Expect> {
        let r = e.get_ref();
        let mut ok = true;
        let status = match &r.status {
            Some(s) if (100..=599).contains(s.get_ref()) => *s.get_ref(),
            Some(s) => {
                self.errs.at(
                    span(s),
                    format!("{key}.status"),
                    "an HTTP status (200 = forwarded; 302, 400, 401, 403, 404, …)",
                );
                return None;
            }
            None => {
                self.errs.at(
                    span(e),
                    format!("{key}.status"),
                    "missing `status` (200 = forwarded; else the status the proxy answers)",
                );
                return None;
            }
        };
        let route = r.route.as_ref().map(|n| {
            let name: &Str = n.get_ref();
            if !routes.iter().any(|r| r.name == name.0) {
                let known: Vec<&str> = routes.iter().map(|r| r.name.as_str()).collect();
                self.errs.at(
                    span(n),
                    format!("{key}.route"),
                    format!(
                        "no route named {:?}; routes: [{}]",
                        name.0,
                        known.join(", ")
                    ),
                );
                ok = false;
            }
            name.0.clone()
        });
        let reason = match &r.reason {
            Some(x) => match reason_code(x.get_ref()) {
                Some(c) => Some(c.to_string()),
                None => {
                    let known: Vec<&str> = REASONS.iter().map(|(c, _)| *c).collect();
                    self.errs.at(
                        span(x),
                        format!("{key}.reason"),
                        format!(
                            "unknown reason {:?}; one of: {}",
                            x.get_ref().0,
                            known.join(", ")
                        ),
                    );
                    ok = false;
                    None
                }
            },
            None => None,
        };
        ok.then_some(Expect {
            status,
            route,
            reason,
        })
    }
}
