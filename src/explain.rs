//! `portcullis explain`: which route a request matches, what it requires, and the decision and
//! why. The decision is the running proxy's own ([`crate::decision::decide`]); this module only
//! builds the request from the command line (method, URL, `--header`s) and prints the answer.
//! Given a token it verifies it against the provider (keys or introspection fetched now);
//! given `Accept: text/html` on a login route it prepares the login the browser would start.
//! Offline: `--claims JSON` stands a synthetic identity where authentication would judge a
//! token or session ([`crate::policy::Synthetic`]: no provider contacted, nothing verified);
//! `--cookie VALUE` sends a session cookie, opened with the configured secret (cookie store;
//! the Redis store is asked for it). The output names each check in order with pass/fail.

use std::fmt::Write;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use http::header::{self, HeaderName, HeaderValue};
use http::{Method, StatusCode, Uri, Version};

use crate::auth::AuthState;
use crate::config::{AuthMode, Config, Route, SessionStore, TestIdentity};
use crate::decision::{Decision, Input, Verdict, decide};
use crate::error::{AuthError, ProxyError, Scheme};
use crate::identity::Via;
use crate::provider::jwks::now;
use crate::request::ConnInfo;

/// Longest wait for a provider (discovery, keys, introspection) while explaining.
const PROVIDER_WAIT: Duration = Duration::from_secs(10);

/// An explanation: the text printed, and what the proxy would answer.
#[derive(Debug)]
pub struct Explained {
    pub text: String,
    /// The status the proxy itself would answer (200: forwarded); `None` for bad input, or
    /// for a path under the auth prefix (the endpoint answers).
    pub status: Option<StatusCode>,
    /// The matched route's name.
    pub route: Option<String>,
    /// 0: allowed or forwarded, 1: refused, 2: bad input.
    pub exit: u8,
}

/// Offline inputs of `explain`.
#[derive(Debug, Default, Clone)]
pub struct Offline {
    /// `--claims`: a JSON object of claims (a synthetic identity).
    pub claims: Option<String>,
    /// `--cookie`: the session cookie's value (or `name=value; name.1=…` as the browser sends).
    pub cookie: Option<String>,
}

/// Prints the explanation to stdout (bad input to stderr); exit 0 when the request would be
/// allowed/forwarded, 1 when it would be refused, 2 for bad input.
pub async fn explain(
    cfg: Config,
    method: &str,
    url: &str,
    headers: &[String],
    offline: Offline,
) -> ExitCode {
    let e = match (&offline.claims, &offline.cookie) {
        (Some(_), Some(_)) => bad_input("error: give --claims or --cookie, not both\n".into()),
        (Some(json), None) => match serde_json::from_str::<serde_json::Value>(json) {
            Ok(v @ serde_json::Value::Object(_)) => match TestIdentity::parse(&v, Path::new(".")) {
                Ok(who) => explain_request_as(Arc::new(cfg), method, url, headers, Some(&who)).await,
                Err(e) => bad_input(format!("error: --claims: {e}\n")),
            },
            _ => bad_input(
                "error: --claims must be a JSON object, e.g. '{\"sub\":\"u1\",\"roles\":[\"admin\"]}'\n"
                    .into(),
            ),
        },
        (None, Some(cookie)) => explain_cookie(cfg, method, url, headers, cookie).await,
        (None, None) => explain_request(Arc::new(cfg), method, url, headers).await,
    };
    if e.exit == 2 {
        eprint!("{}", e.text);
    } else {
        print!("{}", e.text);
    }
    ExitCode::from(e.exit)
}

/// `--cookie`: the request sent with the session cookie, judged by the proxy's own
/// authentication (the cookie is opened with the configured secret; a Redis store is asked).
async fn explain_cookie(
    cfg: Config,
    method: &str,
    url: &str,
    headers: &[String],
    cookie: &str,
) -> Explained {
    let Some(session) = &cfg.session else {
        return bad_input(
            "error: --cookie needs a [session] section (its secret opens the cookie)\n".into(),
        );
    };
    let https = url.starts_with("https://");
    let name = match (https, &session.cookie_domain) {
        (true, Some(_)) => format!("__Secure-{}", session.cookie_name),
        (true, None) => format!("__Host-{}", session.cookie_name),
        (false, _) => session.cookie_name.clone(),
    };
    // A value as the browser shows it (`name=value`, chunks `; name.1=…`) goes as is.
    let header = if cookie.contains(';') || cookie.starts_with(&format!("{name}=")) {
        cookie.to_string()
    } else {
        format!("{name}={cookie}")
    };
    let mut note = format!(
        "  session cookie {name}: judged with the configured session secret{}\n",
        match &session.store {
            SessionStore::Redis { .. } =>
                " (store = \"redis\": the session is looked up in Redis now)",
            _ => "",
        }
    );
    let mut all: Vec<String> = headers.to_vec();
    all.push(format!("Cookie: {header}"));
    let mut e = explain_request(Arc::new(cfg), method, url, &all).await;
    if e.text.contains("no_session") || e.text.contains("needs a browser session") {
        note.push_str("  the cookie does not open a live session here: wrong secret or cookie name (http vs https: __Host- prefix), expired, revoked, or of another provider\n");
    }
    if let Some(at) = e.text.find('\n') {
        e.text.insert_str(at + 1, &note);
    }
    e
}

/// The explanation of `method url` with `headers` (`Name: value`), as text.
pub async fn explain_request(
    cfg: Arc<Config>,
    method: &str,
    url: &str,
    headers: &[String],
) -> Explained {
    explain_request_as(cfg, method, url, headers, None).await
}

/// [`explain_request`]; `who`: a synthetic identity judged offline instead of the request's
/// credentials.
pub async fn explain_request_as(
    cfg: Arc<Config>,
    method: &str,
    url: &str,
    headers: &[String],
    who: Option<&TestIdentity>,
) -> Explained {
    let Ok(method) = Method::from_bytes(method.as_bytes()) else {
        return bad_input(format!("error: {method:?} is not an HTTP method\n"));
    };
    // Split the URL by hand: URL parsers normalize the path (and `\` → `/`), which would
    // explain a different request than the one the proxy would see.
    let (host, target) = if url.starts_with('/') {
        (None, url.split('#').next().unwrap_or("/"))
    } else if let Some((_, rest)) = url.split_once("://") {
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let authority = &rest[..end];
        let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        (Some(host), rest[end..].split('#').next().unwrap_or(""))
    } else {
        return bad_input(format!(
            "error: {url:?} is neither a URL (http://host/path) nor a path (/path)\n"
        ));
    };
    let target = match target {
        "" => "/".to_string(),
        t if t.starts_with('?') => format!("/{t}"),
        t => t.to_string(),
    };
    let path = target.split('?').next().unwrap_or("/").to_string();
    let mut out = String::new();

    let build = || head(&method, host, &target, &path, headers);
    let mut parts = match build() {
        Ok(p) => p,
        Err(e) => return e,
    };
    let auth = match AuthState::new(cfg.clone()) {
        Ok(a) => a,
        Err(e) => return bad_input(format!("error: {e}\n")),
    };
    let input = Input {
        host,
        method_known: true,
        conn: ConnInfo {
            peer: ([127, 0, 0, 1], 0).into(),
            tls: url.starts_with("https://"),
        },
        sni: None,
    };
    let mut notes = String::new();
    if let Some(who) = who {
        let synthetic = crate::policy::Synthetic { cfg: &cfg, who };
        let d = decide(&cfg, &synthetic, &mut parts, input).await;
        let _ = writeln!(
            notes,
            "  identity: synthetic claims ({})",
            crate::policy::OFFLINE_NOTE
        );
        return render(&cfg, &method, host, &path, d, &notes, true);
    }
    let mut decided =
        tokio::time::timeout(PROVIDER_WAIT, decide(&cfg, &auth, &mut parts, input)).await;
    // A provider that has not been contacted yet (the running proxy discovers it at start):
    // contact it now, say how that went, and judge again.
    if let Ok(d) = &decided
        && let (Some(i), Err(ProxyError::Auth(AuthError::ProviderUnavailable { .. }))) =
            (d.route, &d.verdict)
        && let Some(p) = (cfg.routes[i].provider.as_deref()).and_then(|n| auth.providers.get(n))
    {
        match tokio::time::timeout(PROVIDER_WAIT, p.load_now()).await {
            Ok(Ok(_)) => {
                let _ = writeln!(
                    notes,
                    "  provider {:?}: discovery and keys loaded",
                    p.name()
                );
            }
            Ok(Err(e)) => {
                let _ = writeln!(notes, "  provider {:?}: {e}", p.name());
            }
            Err(_) => {
                let _ = writeln!(
                    notes,
                    "  provider {:?}: no answer within {PROVIDER_WAIT:?}",
                    p.name()
                );
            }
        }
        parts = match build() {
            Ok(p) => p,
            Err(e) => return e,
        };
        decided = tokio::time::timeout(PROVIDER_WAIT, decide(&cfg, &auth, &mut parts, input)).await;
    }
    let Ok(decision) = decided else {
        let _ = writeln!(out, "{method} {}{path}", host.unwrap_or(""));
        let _ = writeln!(out, "  decision: 503 — the provider did not answer in time");
        return Explained {
            text: out,
            status: Some(StatusCode::SERVICE_UNAVAILABLE),
            route: None,
            exit: 1,
        };
    };
    render(&cfg, &method, host, &path, decision, &notes, false)
}

/// The head of the request as the proxy would receive it (or why there is none).
fn head(
    method: &Method,
    host: Option<&str>,
    target: &str,
    path: &str,
    headers: &[String],
) -> Result<http::request::Parts, Explained> {
    // The request as the proxy would receive it: HTTP/1.1 with `Host` for a URL; for a bare
    // path, one without a host (as HTTP/2 may send it), which routes host-less.
    let mut b = http::Request::builder()
        .method(method.clone())
        .version(if host.is_some() {
            Version::HTTP_11
        } else {
            Version::HTTP_2
        });
    for h in headers {
        let Some((n, v)) = h.split_once(':') else {
            return Err(bad_input(format!(
                "error: --header {h:?} is not `Name: value`\n"
            )));
        };
        match (
            HeaderName::from_bytes(n.trim().as_bytes()),
            HeaderValue::from_str(v.trim()),
        ) {
            (Ok(n), Ok(v)) => b = b.header(n, v),
            _ => return Err(bad_input(format!("error: invalid header {h:?}\n"))),
        }
    }
    if let Some(h) = host {
        match HeaderValue::from_str(h) {
            Ok(v) => b = b.header(header::HOST, v),
            Err(_) => return Err(refused_early(method, path, "invalid Host header")),
        }
    }
    let Ok(uri) = Uri::try_from(target) else {
        return Err(refused_early(method, path, "invalid request target"));
    };
    let mut parts = match b.uri(uri).body(()) {
        Ok(r) => r.into_parts().0,
        Err(e) => return Err(bad_input(format!("error: invalid request: {e}\n"))),
    };
    // A `Host` given with --header and a URL's host: the URL's counts (as in the request line).
    if let Some(h) = host
        && let Ok(v) = HeaderValue::from_str(h)
    {
        parts.headers.insert(header::HOST, v);
    }

    Ok(parts)
}

fn bad_input(text: String) -> Explained {
    Explained {
        text,
        status: None,
        route: None,
        exit: 2,
    }
}

/// A request refused before it could be judged (its head is no valid HTTP request).
fn refused_early(method: &Method, path: &str, why: &str) -> Explained {
    Explained {
        text: format!("{method} {path}\n  decision: 400 Bad Request: {why}\n"),
        status: Some(StatusCode::BAD_REQUEST),
        route: None,
        exit: 1,
    }
}

/// Prints the decision: the route and what it requires, then what the proxy answers and why.
fn render(
    cfg: &Config,
    method: &Method,
    host: Option<&str>,
    path: &str,
    d: Decision,
    notes: &str,
    synthetic: bool,
) -> Explained {
    let mut out = String::new();
    let route = d.route.map(|i| &*cfg.routes[i]);
    let done = |out: String, status: Option<StatusCode>, exit: u8| Explained {
        text: out,
        status,
        route: route.map(|r| r.name.clone()),
        exit,
    };
    if d.path.is_empty() {
        // refused before the path was judged (or the path itself)
        let e = d.verdict.err().map(|e| e.to_string()).unwrap_or_default();
        let _ = writeln!(out, "{method} {path}\n  decision: 400 Bad Request: {e}");
        return done(out, Some(StatusCode::BAD_REQUEST), 1);
    }
    let _ = writeln!(out, "{method} {}{}", host.unwrap_or(""), d.path);
    if d.path != path {
        let _ = writeln!(out, "  normalized path: {} (from {path})", d.path);
    }
    let route = match (&d.verdict, route) {
        (Ok(Verdict::Endpoint), _) => {
            let _ = writeln!(
                out,
                "  endpoint owned by the proxy ({}); never forwarded",
                cfg.server.auth_prefix
            );
            return done(out, None, 0);
        }
        (Err(ProxyError::NoRoute { .. }), _) => {
            let _ = writeln!(out, "  no route matches → 404");
            return done(out, Some(StatusCode::NOT_FOUND), 1);
        }
        (_, Some(r)) => r,
        (Err(e), None) => {
            let _ = writeln!(out, "  decision: {} — {e}", status_text(e.status()));
            return done(out, Some(e.status()), 1);
        }
        (Ok(_), None) => return done(out, None, 1),
    };
    describe_route(&mut out, route);
    out.push_str(notes);
    checks(&mut out, &d, route);
    if let Some(id) = d.identity() {
        let what = match id.via {
            _ if synthetic => "synthetic identity (not verified)",
            Via::Bearer => "token: valid",
            Via::Session => "session: valid",
        };
        let _ = writeln!(
            out,
            "  {what}; sub {:?}; roles [{}]",
            id.sub,
            id.roles.join(", ")
        );
        if !id.org_roles.orgs().is_empty() {
            let _ = writeln!(out, "  orgs [{}]", id.org_roles.orgs().join(", "));
        }
        if let Some(exp) = id.expires_at {
            let _ = writeln!(out, "  token expires in {}s", exp - now());
        }
    }
    match &d.verdict {
        Ok(_) if route.auth == AuthMode::None => {
            let _ = writeln!(
                out,
                "  decision: forwarded without authentication (identity headers stripped)"
            );
            done(out, Some(StatusCode::OK), 0)
        }
        Ok(_) => {
            let _ = writeln!(out, "  decision: allowed → forwarded to {}", route.upstream);
            done(out, Some(StatusCode::OK), 0)
        }
        Err(ProxyError::Auth(e)) => {
            let _ = writeln!(out, "  decision: {}", refusal(e, route));
            done(out, Some(e.status()), 1)
        }
        Err(e) => {
            let _ = writeln!(out, "  decision: {} — {e}", status_text(e.status()));
            done(out, Some(e.status()), 1)
        }
    }
}

/// Each check of the decision in order, with pass/fail: the request head and the route
/// (passed, or this function is not reached), authentication, then each requirement.
fn checks(out: &mut String, d: &Decision, route: &Route) {
    let _ = writeln!(out, "  checks:");
    let _ = writeln!(out, "    pass  request head (host, method, path)");
    let _ = writeln!(out, "    pass  route {:?}", route.name);
    if route.auth == AuthMode::None {
        let _ = writeln!(out, "    pass  authentication: none required (auth = none)");
        return;
    }
    let Some(id) = d.identity() else {
        let why = d
            .verdict
            .as_ref()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "    FAIL  authentication (auth = {}): {why}",
            route.auth.as_str()
        );
        for (what, _) in crate::authz::checks(route, &Default::default()) {
            let _ = writeln!(out, "    -     {}: not reached", what.label(route));
        }
        return;
    };
    let _ = writeln!(
        out,
        "    pass  authentication (auth = {}): sub {:?}",
        route.auth.as_str(),
        id.sub
    );
    let mut failed = false;
    for (what, r) in crate::authz::checks(route, id) {
        let what = what.label(route);
        match r {
            // `authorize` stops at the first unmet requirement; the rest are shown for
            // information.
            Ok(()) => {
                let _ = writeln!(out, "    pass  {what}");
            }
            Err(e) => {
                let _ = writeln!(
                    out,
                    "    FAIL  {what}: {e}{}",
                    if failed {
                        " (after the first failure)"
                    } else {
                        ""
                    }
                );
                failed = true;
            }
        }
    }
}

fn status_text(s: StatusCode) -> String {
    format!("{} {}", s.as_u16(), s.canonical_reason().unwrap_or(""))
}

/// The route, its upstream and what it requires.
fn describe_route(out: &mut String, route: &Route) {
    let _ = writeln!(
        out,
        "  route: {:?} (path {}{})",
        route.name,
        route.matcher.path,
        match &route.matcher.host {
            Some(_) => ", host-restricted",
            None => "",
        }
    );
    let targets: Vec<String> = route.targets.iter().map(|t| t.to_string()).collect();
    let _ = writeln!(out, "  upstream: {}", targets.join(", "));
    let _ = writeln!(
        out,
        "  auth: {}{}",
        route.auth.as_str(),
        route
            .provider
            .as_deref()
            .map(|p| format!(" (provider {p:?})"))
            .unwrap_or_default()
    );
    if !route.require_roles.is_empty() {
        let _ = writeln!(
            out,
            "  requires all roles: {}",
            route.require_roles.join(", ")
        );
    }
    if !route.require_any_role.is_empty() {
        let _ = writeln!(
            out,
            "  requires any role of: {}",
            route.require_any_role.join(", ")
        );
    }
    if let Some(rule) = &route.require_org_roles {
        let _ = writeln!(
            out,
            "  requires roles {} in organization {}",
            rule.roles.join(", "),
            match &rule.org {
                crate::config::OrgRef::User => "@user (the user's own)".to_string(),
                crate::config::OrgRef::Id(id) => id.clone(),
            }
        );
    }
    for (c, v) in &route.require_claims {
        let vals: Vec<String> = v.iter().map(|x| x.to_string()).collect();
        let _ = writeln!(out, "  requires claim {c} ∈ [{}]", vals.join(", "));
    }
    if !route.require_email_domains.is_empty() {
        let _ = writeln!(
            out,
            "  requires a verified email at: {}{}",
            route.require_email_domains.join(", "),
            if route.require_emails.is_empty() {
                ""
            } else {
                " (or a listed address)"
            }
        );
    }
    if !route.require_emails.is_empty() {
        let _ = writeln!(
            out,
            "  requires a verified email of: {}",
            route.require_emails.join(", ")
        );
    }
}

/// Why a request is refused, for a person at a terminal (the details the log would get, too).
fn refusal(e: &AuthError, route: &Route) -> String {
    let status = e.status().as_u16();
    match e {
        AuthError::NoCredentials {
            scheme: Scheme::Bearer,
            ..
        } => format!("{status} — no bearer token (Authorization: Bearer …)"),
        AuthError::NoCredentials { .. } => format!(
            "{status} — needs a browser session (auth = {}); a browser navigation (--header 'Accept: text/html') is sent to sign in{}",
            route.auth.as_str(),
            if route.auth.uses_bearer() {
                "; pass --header 'Authorization: Bearer …' to evaluate a token"
            } else {
                ""
            }
        ),
        AuthError::InvalidToken { reason } => format!("{status} invalid_token — {reason}"),
        AuthError::LoginRequired { location, .. } => {
            format!("{status} → sign in at the provider: {location}")
        }
        AuthError::ProviderUnavailable { detail, .. } => {
            format!("{status} temporarily_unavailable — {detail}")
        }
        AuthError::SessionStoreUnavailable { detail } => {
            format!("{status} — the session store is unavailable: {detail}")
        }
        AuthError::Forbidden {
            scheme: Scheme::Bearer,
            unmet,
            ..
        } => format!("{status} insufficient_scope — {unmet}"),
        AuthError::Forbidden { unmet, .. } => format!("{status} forbidden — {unmet}"),
        AuthError::BadRequest { reason, .. } => format!("{status} invalid_request — {reason}"),
        // The login endpoints' own refusals; a route's decision never produces one.
        AuthError::Login(e) => format!("{status} — {e}"),
    }
}
