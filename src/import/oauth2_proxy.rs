//! `portcullis import oauth2-proxy`: an oauth2-proxy configuration (its config file, read as
//! TOML the way oauth2-proxy's viper loader reads it, and/or its `OAUTH2_PROXY_*` environment,
//! which wins over the file) → a portcullis config and a [`Report`].
//!
//! Option names and meanings follow oauth2-proxy v7's legacy (flag-style) options. Each option
//! the converter reads is marked as consumed; whatever is left at the end is reported, so no
//! setting disappears without a line in the report.
//!
//! # Security caveats
//!
//! - `skip_auth_routes` / `skip_auth_regex` are path regexes; portcullis routes are segment
//!   prefixes. A regex becomes an `auth = "none"` route only when the route matches the same
//!   paths or fewer ([`path_regex_route`]); anything else is reported and stays behind login.
//! - `email_domains` and the authenticated-emails file admitted an email in either; portcullis
//!   requirements on a route all apply, so carrying both makes the route stricter (reported).

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;

mod options;
mod path_regex;

pub use path_regex::path_regex_route;

use options::{ADVICE, KNOWN, SAME_AS_PORTCULLIS, SECRET};

use super::{ImportError, Imported, Report, line_col, literal, literal_list, template};
use crate::config::{in_cookie_domain, weak_secret};
use crate::routes::Matcher;

/// Provider types that speak OpenID Connect with discovery, and the portcullis provider name.
fn provider_name(kind: &str) -> Option<&'static str> {
    Some(match kind {
        "oidc" => "oidc",
        "keycloak-oidc" => "keycloak",
        "azure" | "entra-id" => "entra",
        "google" => "google",
        "gitlab" => "gitlab",
        "adfs" => "adfs",
        "cidaas" => "cidaas",
        _ => return None,
    })
}

#[derive(Debug, Clone)]
enum Val {
    Str(String),
    Bool(bool),
    Int(i64),
    List(Vec<String>),
    Other(String),
}

#[derive(Debug, Clone)]
enum Origin {
    File,
    Env(String),
}

#[derive(Debug, Clone)]
struct Opt {
    val: Val,
    origin: Origin,
}

/// A secret's value as the output writes it.
enum SecretVal {
    Literal(String),
    Env(String),
}

impl SecretVal {
    /// The TOML value; a variable it reads is listed in the report.
    fn toml(&self, c: &Ctx, k: &str) -> String {
        match self {
            SecretVal::Literal(s) => literal(s),
            SecretVal::Env(var) => {
                c.report
                    .borrow_mut()
                    .env(var, format!("oauth2-proxy's {k}"), false);
                template(&format!("${{{var}}}"))
            }
        }
    }
}

struct Ctx {
    opts: BTreeMap<String, Opt>,
    used: RefCell<BTreeSet<String>>,
    report: RefCell<Report>,
}

impl Ctx {
    fn get(&self, k: &str) -> Option<&Opt> {
        self.used.borrow_mut().insert(k.to_owned());
        self.opts.get(k)
    }

    fn has(&self, k: &str) -> bool {
        self.opts.contains_key(k)
    }

    fn shown(&self, k: &str) -> String {
        let Some(o) = self.opts.get(k) else {
            return "(unset)".into();
        };
        let secret_like = ["sec", "pass", "pwd", "tok", "key", "cred"]
            .iter()
            .any(|w| k.contains(w));
        if SECRET.contains(&k) || (secret_like && !KNOWN.contains(&k)) {
            return "<redacted>".into();
        }
        match &o.val {
            Val::Str(s) if k.contains("url") => format!("{:?}", redact_url(s)),
            Val::Str(s) => format!("{s:?}"),
            Val::Bool(b) => b.to_string(),
            Val::Int(i) => i.to_string(),
            Val::List(l) => format!("{l:?}"),
            Val::Other(s) => s.clone(),
        }
    }

    fn not_carried(&self, k: &str, reason: impl Into<String>, instead: impl Into<String>) {
        self.used.borrow_mut().insert(k.to_owned());
        let shown = self.shown(k);
        self.report
            .borrow_mut()
            .not_carried(k, shown, reason, instead);
    }

    fn changed(&self, k: &str, reason: impl Into<String>, instead: impl Into<String>) {
        self.used.borrow_mut().insert(k.to_owned());
        let shown = self.shown(k);
        self.report.borrow_mut().changed(k, shown, reason, instead);
    }

    fn placeholder(&self, var: &str, what: &str) -> String {
        self.report.borrow_mut().env(var, what, true);
        template(&format!("${{{var}}}"))
    }

    /// A string option (a list is joined with `,`, as oauth2-proxy's loader does).
    fn str(&self, k: &str) -> Option<String> {
        let v = match &self.get(k)?.val {
            Val::Str(s) => s.trim().to_owned(),
            Val::Bool(b) => b.to_string(),
            Val::Int(i) => i.to_string(),
            Val::List(l) => l.join(","),
            Val::Other(_) => {
                self.not_carried(k, "not a string", "write it as a string");
                return None;
            }
        };
        (!v.is_empty()).then_some(v)
    }

    fn bool(&self, k: &str) -> Option<bool> {
        match &self.get(k)?.val {
            Val::Bool(b) => Some(*b),
            Val::Str(s) => match s.trim() {
                "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
                "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
                _ => {
                    self.not_carried(k, "not a boolean", "write true or false");
                    None
                }
            },
            _ => {
                self.not_carried(k, "not a boolean", "write true or false");
                None
            }
        }
    }

    fn flag(&self, k: &str, default: bool) -> bool {
        self.bool(k).unwrap_or(default)
    }

    /// A list option: a TOML array, or a comma-separated string (the environment's form).
    fn list(&self, k: &str) -> Vec<String> {
        let items = match self.get(k).map(|o| &o.val) {
            None => return Vec::new(),
            Some(Val::List(l)) => l.clone(),
            Some(Val::Str(s)) => s.split(',').map(str::to_owned).collect(),
            Some(_) => {
                self.not_carried(k, "not a list", "write a list of strings");
                return Vec::new();
            }
        };
        items
            .into_iter()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect()
    }

    /// A secret: the value, or its environment variable when it came from the environment.
    fn secret(&self, k: &str) -> Option<(SecretVal, String)> {
        let o = self.get(k)?;
        let v = self.str(k)?;
        Some(match &o.origin {
            Origin::Env(var) => (SecretVal::Env(var.clone()), v),
            Origin::File => (SecretVal::Literal(v.clone()), v),
        })
    }

    /// A Go duration (`"168h"`, `"1h30m"`, `"90s"`) in whole seconds; an integer is nanoseconds.
    fn duration(&self, k: &str) -> Option<u64> {
        let o = self.get(k)?;
        let parsed = match &o.val {
            Val::Int(ns) => u64::try_from(*ns).ok().map(|ns| ns / 1_000_000_000),
            Val::Str(s) => go_duration(s.trim()),
            _ => None,
        };
        if parsed.is_none() {
            self.not_carried(
                k,
                "not a duration",
                "write a Go duration such as \"168h\" or \"30m\"",
            );
        }
        parsed
    }
}

/// Reads the oauth2-proxy configuration and converts it. `file`: the config file (read as TOML,
/// like oauth2-proxy does); `env`: the `OAUTH2_PROXY_*` variables (they win over the file).
pub fn import(
    file: Option<&Path>,
    env: Option<&[(String, String)]>,
) -> Result<Imported, ImportError> {
    if file.is_none() && env.is_none() {
        return Err(ImportError::Usage(
            "give the oauth2-proxy config with --from FILE, and/or --env to read its OAUTH2_PROXY_* environment".into(),
        ));
    }
    let mut opts: BTreeMap<String, Opt> = BTreeMap::new();
    let report = Report::default();
    let mut sources = Vec::new();
    if let Some(path) = file {
        let shown = path.display().to_string();
        let src = std::fs::read_to_string(path).map_err(|e| ImportError::Read {
            path: shown.clone(),
            reason: e.to_string(),
        })?;
        let table: toml::Table = toml::from_str(&src).map_err(|e| {
            let (line, col) = e.span().map_or((1, 1), |s| line_col(&src, s.start));
            let mut message = e.message().trim().to_owned();
            if src.contains("upstreamConfig:") || src.contains("injectRequestHeaders:") {
                message.push_str(" (this looks like oauth2-proxy's alpha YAML config, which is not supported: import the legacy config file or the environment)");
            }
            ImportError::Parse {
                path: shown.clone(),
                line,
                col,
                message,
            }
        })?;
        for (k, v) in table {
            let val = match v {
                toml::Value::String(s) => Val::Str(s),
                toml::Value::Boolean(b) => Val::Bool(b),
                toml::Value::Integer(i) => Val::Int(i),
                toml::Value::Array(a) => {
                    let strings: Option<Vec<String>> =
                        a.iter().map(|x| x.as_str().map(str::to_owned)).collect();
                    match strings {
                        Some(l) => Val::List(l),
                        None => Val::Other(toml::Value::Array(a).to_string()),
                    }
                }
                other => Val::Other(other.to_string()),
            };
            opts.insert(
                k,
                Opt {
                    val,
                    origin: Origin::File,
                },
            );
        }
        sources.push(shown);
    }
    if let Some(vars) = env {
        for (name, value) in vars {
            // viper ignores a variable set to the empty string (AllowEmptyEnv is off).
            let Some(rest) = name.strip_prefix("OAUTH2_PROXY_") else {
                continue;
            };
            if value.is_empty() {
                continue;
            }
            let key = rest.to_ascii_lowercase();
            opts.insert(
                key,
                Opt {
                    val: Val::Str(value.clone()),
                    origin: Origin::Env(name.clone()),
                },
            );
        }
        sources.push("the OAUTH2_PROXY_* environment".into());
    }
    let ctx = Ctx {
        opts,
        used: RefCell::new(BTreeSet::new()),
        report: RefCell::new(report),
    };
    for (k, o) in &ctx.opts {
        if !KNOWN.contains(&k.as_str()) {
            let setting = match &o.origin {
                Origin::Env(var) => var.clone(),
                Origin::File => k.clone(),
            };
            let shown = ctx.shown(k);
            ctx.report.borrow_mut().not_carried(
                &setting,
                shown,
                "not an oauth2-proxy option (oauth2-proxy refuses unknown options too)",
                "check the spelling; remove it",
            );
        }
    }
    let toml = convert(&ctx, &sources.join(" and "));
    // Whatever the converter did not read has no counterpart: say so, with advice.
    for k in ctx.opts.keys() {
        if ctx.used.borrow().contains(k) || !KNOWN.contains(&k.as_str()) {
            continue;
        }
        let shown = ctx.shown(k);
        if SAME_AS_PORTCULLIS.contains(&(k.as_str(), shown.as_str())) {
            continue;
        }
        let advice = ADVICE
            .iter()
            .find(|(p, _)| k.starts_with(p))
            .map_or("remove it", |(_, a)| a);
        ctx.not_carried(k, "not supported: portcullis has no such setting", advice);
    }
    Ok(Imported {
        toml,
        report: ctx.report.into_inner(),
    })
}

/// One `[[route]]` of the output.
struct OutRoute {
    path: String,
    methods: Option<Vec<String>>,
    upstream: String,
    public: bool,
    comment: Option<String>,
}

impl OutRoute {
    fn matcher(&self) -> Option<Matcher> {
        Matcher::new(None, &self.path, self.methods.as_deref()).ok()
    }
    fn depth(&self) -> usize {
        self.path.split('/').filter(|s| !s.is_empty()).count()
    }
}

/// An upstream of the source: the route path it served and the portcullis `upstream` value.
struct Up {
    path: String,
    upstream: String,
    comment: Option<String>,
}

/// What the `[server]` section decides that later sections need.
struct ServerFacts {
    public_url: Option<url::Url>,
    /// Some request can arrive as https (TLS here, or a trusted front proxy).
    https_somewhere: bool,
}

fn convert(c: &Ctx, sources: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Imported from oauth2-proxy ({sources}) by `portcullis import oauth2-proxy`.\n# Read the report it printed, then validate with `portcullis check --config FILE`.\n"
    );

    let facts = server_section(c, &mut out);
    let require_any = provider_section(c, &mut out);
    session_section(c, &mut out, &facts);
    headers_section(c, &mut out);
    routes_section(c, &mut out, &require_any);
    let end = out.trim_end().len();
    out.truncate(end);
    out.push('\n');
    out
}

/// `[server]` and `[server.tls]`: listeners, public URL, trusted proxies, redirect hosts.
fn server_section(c: &Ctx, out: &mut String) -> ServerFacts {
    let mut server = String::new();
    // What decides whether a shared cookie domain can work (it needs https).
    let mut public_url: Option<url::Url> = None;
    let mut https_somewhere = false;
    let tls_cert = c.str("tls_cert_file");
    let tls_key = c.str("tls_key_file");
    let http = c.str("http_address");
    let https = c.str("https_address");
    let listen = match http.as_deref() {
        None => Some("127.0.0.1:4180".to_owned()),
        Some(a) => listen_addr(c, "http_address", a),
    };
    if let Some(l) = &listen {
        let _ = writeln!(server, "listen = {}", literal(l));
    }
    if let Some(r) = c.str("redirect_url") {
        match url::Url::parse(&r) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
                let origin = u.origin().ascii_serialization();
                let _ = writeln!(server, "public_url = {}", literal(&origin));
                public_url = Some(u.clone());
                c.changed(
                    "redirect_url",
                    format!("portcullis' callback is {origin}/.auth/callback"),
                    format!("register {origin}/.auth/callback as a redirect URI at the provider"),
                );
            }
            _ => c.not_carried(
                "redirect_url",
                "not an absolute http(s) URL",
                "leave `public_url` unset: the redirect URI then follows the request's host",
            ),
        }
    }
    if c.flag("reverse_proxy", false) {
        let proxies = c.list("trusted_proxy_ips");
        if proxies.is_empty() {
            let p = c.placeholder(
                "PORTCULLIS_TRUSTED_PROXY",
                "the address or CIDR range of the reverse proxy in front (e.g. 10.0.0.0/8)",
            );
            let _ = writeln!(server, "trusted_proxies = [{p}]");
            https_somewhere = true;
            c.changed(
                "reverse_proxy",
                "oauth2-proxy trusted X-Forwarded-* from every peer; portcullis only from `trusted_proxies`",
                "set PORTCULLIS_TRUSTED_PROXY to your front proxy's address or range",
            );
        } else {
            let _ = writeln!(server, "trusted_proxies = {}", literal_list(&proxies));
            https_somewhere = true;
        }
    } else if c.has("trusted_proxy_ips") {
        c.not_carried(
            "trusted_proxy_ips",
            "without reverse_proxy = true oauth2-proxy ignored it",
            "set `[server] trusted_proxies` if a proxy in front sets X-Forwarded-*",
        );
    }
    if let Some(h) = c.str("real_client_ip_header")
        && !matches!(
            h.to_ascii_lowercase().as_str(),
            "x-real-ip" | "x-forwarded-for"
        )
    {
        c.not_carried(
            "real_client_ip_header",
            "portcullis derives the client address from X-Forwarded-For sent by `trusted_proxies`",
            "have the front proxy send X-Forwarded-For",
        );
    }
    let mut hosts = Vec::new();
    for d in c.list("whitelist_domains") {
        let (host, port) = match d.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => (h.to_owned(), Some(p.to_owned())),
            _ => (d.clone(), None),
        };
        if port.is_some() {
            c.changed(
                "whitelist_domains",
                format!("{d:?}: portcullis compares hosts, the port is not part of the rule"),
                format!("allowed host {host:?} (any port)"),
            );
        }
        if let Some(base) = host.strip_prefix('.') {
            hosts.push(base.to_owned());
            hosts.push(format!("*.{base}"));
        } else {
            hosts.push(host);
        }
    }
    hosts.dedup();
    if !hosts.is_empty() {
        let _ = writeln!(server, "allowed_redirect_hosts = {}", literal_list(&hosts));
    }
    if let Some(m) = c.str("metrics_address")
        && let Some(a) = listen_addr(c, "metrics_address", &m)
    {
        let _ = writeln!(server, "admin_listen = {}", literal(&a));
        c.changed(
            "metrics_address",
            "the admin listener serves /metrics (Prometheus, portcullis' own metric names) and /healthz, /readyz",
            "update dashboards to portcullis_* metrics",
        );
    }
    if let Some(t) = c.duration("upstream_timeout") {
        let _ = writeln!(server, "timeout = {}", literal(&fmt_secs(t)));
    }
    let _ = writeln!(out, "[server]\n{server}");
    match (&tls_cert, &tls_key) {
        (Some(cert), Some(key)) => {
            let addr = match https.as_deref() {
                None => Some("0.0.0.0:443".to_owned()),
                Some(a) => listen_addr(c, "https_address", a),
            };
            if let Some(addr) = addr {
                https_somewhere = true;
                let _ = writeln!(
                    out,
                    "[server.tls]\nlisten = {}\ncert = {}\nkey = {}",
                    literal(&addr),
                    literal(cert),
                    literal(key)
                );
                if c.flag("force_https", false) {
                    let _ = writeln!(out, "redirect_http = true");
                }
                let _ = writeln!(out);
            }
        }
        (None, None) => {
            if c.flag("force_https", false) {
                c.not_carried(
                    "force_https",
                    "no TLS listener here (no tls_cert_file)",
                    "redirect to https in the proxy in front, or configure `[server.tls]` with `redirect_http = true`",
                );
            }
        }
        _ => c.not_carried(
            "tls_cert_file",
            "tls_cert_file and tls_key_file go together",
            "give both, as `[server.tls] cert` and `key`",
        ),
    }

    ServerFacts {
        public_url,
        https_somewhere,
    }
}

/// `[providers.X]`: issuer, client, scopes, roles claim; returns the roles every protected
/// route requires (`require_any_role`).
fn provider_section(c: &Ctx, out: &mut String) -> Vec<String> {
    let kind = c.str("provider").unwrap_or_else(|| "google".into());
    let (pname, oidc) = match provider_name(&kind) {
        Some(n) => (n, true),
        None => ("oidc", false),
    };
    let mut prov = String::new();
    let issuer = c.str("oidc_issuer_url");
    let issuer_toml = if !oidc {
        let why = match kind.as_str() {
            "keycloak" => "not supported: the legacy `keycloak` provider is plain OAuth2; portcullis speaks OpenID Connect".to_owned(),
            "login.gov" => "not supported: login.gov needs private_key_jwt with a PEM key, which portcullis supports only as a ZITADEL key file".to_owned(),
            other => format!("not supported: {other:?} is not an OpenID Connect provider; portcullis needs one"),
        };
        let instead = match kind.as_str() {
            "keycloak" => {
                "use Keycloak's OIDC endpoint: set PORTCULLIS_OIDC_ISSUER to https://KEYCLOAK/realms/REALM (what oauth2-proxy's keycloak-oidc provider does)"
            }
            _ => {
                "put an OpenID Connect broker in front (ZITADEL, Keycloak or Dex with this provider as an upstream IdP) and set PORTCULLIS_OIDC_ISSUER, PORTCULLIS_CLIENT_ID and PORTCULLIS_CLIENT_SECRET to its client"
            }
        };
        c.not_carried("provider", why, instead);
        c.placeholder("PORTCULLIS_OIDC_ISSUER", "the OpenID provider's issuer URL")
    } else if let Some(i) = &issuer {
        literal(i)
    } else {
        match kind.as_str() {
            "google" => literal("https://accounts.google.com"),
            "gitlab" => literal("https://gitlab.com"),
            "azure" => {
                let tenant = c.str("azure_tenant").unwrap_or_else(|| "common".into());
                if matches!(tenant.as_str(), "common" | "organizations" | "consumers") {
                    c.report.borrow_mut().not_carried(
                        "azure_tenant",
                        format!("{tenant:?}"),
                        "a multi-tenant endpoint has no single issuer; portcullis checks the issuer of every token",
                        "use your tenant id: set PORTCULLIS_ENTRA_TENANT_ID (and restrict tenants with `require_claims = { tid = [...] }` if several may sign in)",
                    );
                    c.report.borrow_mut().env(
                        "PORTCULLIS_ENTRA_TENANT_ID",
                        "your Entra ID tenant id",
                        true,
                    );
                    template("https://login.microsoftonline.com/${PORTCULLIS_ENTRA_TENANT_ID}/v2.0")
                } else {
                    literal(&format!("https://login.microsoftonline.com/{tenant}/v2.0"))
                }
            }
            _ => {
                c.report.borrow_mut().not_carried(
                    "oidc_issuer_url",
                    "(unset)",
                    format!("the {kind} provider needs an issuer"),
                    "set PORTCULLIS_OIDC_ISSUER",
                );
                c.placeholder("PORTCULLIS_OIDC_ISSUER", "the OpenID provider's issuer URL")
            }
        }
    };
    if kind == "azure" && issuer.is_none() {
        c.changed(
            "provider",
            "oauth2-proxy's azure provider; portcullis uses Entra ID's OpenID Connect v2.0 endpoint (discovery)",
            "register the redirect URI in the app registration; group claims come from the token (`groups`)",
        );
    }
    if kind == "azure" && issuer.is_some() {
        c.get("azure_tenant");
    }
    let _ = writeln!(prov, "issuer = {issuer_toml}");
    let client_id_toml = if !oidc {
        c.get("client_id");
        c.get("client_secret");
        c.get("client_secret_file");
        c.placeholder(
            "PORTCULLIS_CLIENT_ID",
            "the client id at the OpenID provider",
        )
    } else {
        match c.get("client_id").map(|o| o.origin.clone()) {
            Some(Origin::Env(var)) if c.str("client_id").is_some() => {
                c.report
                    .borrow_mut()
                    .env(&var, "oauth2-proxy's client_id", false);
                template(&format!("${{{var}}}"))
            }
            _ => match c.str("client_id") {
                Some(id) => literal(&id),
                None => {
                    c.report.borrow_mut().not_carried(
                        "client_id",
                        "(unset)",
                        "oauth2-proxy needs it too",
                        "set PORTCULLIS_CLIENT_ID",
                    );
                    c.placeholder(
                        "PORTCULLIS_CLIENT_ID",
                        "the client id at the OpenID provider",
                    )
                }
            },
        }
    };
    let _ = writeln!(prov, "client_id = {client_id_toml}");
    if !oidc {
        let s = c.placeholder(
            "PORTCULLIS_CLIENT_SECRET",
            "the client secret at the OpenID provider",
        );
        let _ = writeln!(prov, "client_secret = {s}");
    } else if let Some((s, _)) = c.secret("client_secret") {
        let _ = writeln!(prov, "client_secret = {}", s.toml(c, "client_secret"));
        if c.has("client_secret_file") {
            c.not_carried(
                "client_secret_file",
                "client_secret is set too",
                "keep one of them",
            );
        }
    } else if let Some(f) = c.str("client_secret_file") {
        let _ = writeln!(prov, "client_secret_file = {}", literal(&f));
    }
    if !oidc && c.has("scope") {
        c.not_carried(
            "scope",
            format!("scopes of the {kind} provider do not apply to an OpenID provider"),
            "set `scopes` for the OpenID provider that replaces it (default: openid, profile, email)",
        );
    } else if let Some(scope) = c.str("scope") {
        let mut scopes: Vec<&str> = scope.split_whitespace().collect();
        if !scopes.contains(&"openid") {
            scopes.insert(0, "openid");
            c.changed(
                "scope",
                "an OpenID Connect login needs the `openid` scope; portcullis asks for it too",
                "nothing to do",
            );
        }
        let _ = writeln!(prov, "scopes = {}", literal_list(&scopes));
    }
    let extra_aud = c.list("oidc_extra_audiences");
    if !extra_aud.is_empty() {
        let mut auds = vec![client_id_toml.clone()];
        auds.extend(extra_aud.iter().map(|a| literal(a)));
        let _ = writeln!(prov, "audiences = [{}]", auds.join(", "));
    }
    // Groups and roles: which claim holds them, and what the routes require.
    let mut groups = c.list("allowed_groups");
    let kc_groups = c.list("keycloak_groups");
    groups.extend(kc_groups);
    let roles = c.list("allowed_roles");
    let groups_claim = c.str("oidc_groups_claim");
    let mut require_any: Vec<String> = Vec::new();
    // A restriction that cannot be carried over: the routes then require a role the user names
    // (PORTCULLIS_REQUIRED_ROLE) rather than admit every signed-in user.
    let mut fail_closed = false;
    let mut roles_claim: Option<String> = None;
    if !groups.is_empty() {
        require_any = groups.clone();
        roles_claim = Some(groups_claim.clone().unwrap_or_else(|| "groups".into()));
        if !roles.is_empty() {
            c.not_carried(
                "allowed_roles",
                "portcullis reads roles from one claim, here the groups claim; oauth2-proxy admitted a matching group OR role",
                "grant these users one of the allowed groups, or put the roles in the groups claim at the provider (the route is stricter until then)",
            );
        }
    } else if !roles.is_empty() {
        if kind != "keycloak-oidc" {
            c.not_carried(
                "allowed_roles",
                "oauth2-proxy applies allowed_roles to keycloak-oidc only",
                "use `require_any_role` with `roles_claim` naming the claim that holds them",
            );
        } else {
            let clients: BTreeSet<&str> = roles
                .iter()
                .map(|r| r.split_once(':').map_or("", |(cl, _)| cl))
                .collect();
            if clients.len() == 1 {
                let client = clients.iter().next().copied().unwrap_or_default();
                roles_claim = Some(if client.is_empty() {
                    "realm_access.roles".to_owned()
                } else {
                    format!("resource_access.{client}.roles")
                });
                require_any = roles
                    .iter()
                    .map(|r| r.split_once(':').map_or(r.as_str(), |(_, n)| n).to_owned())
                    .collect();
            } else {
                c.not_carried(
                    "allowed_roles",
                    "mixes realm roles and client roles (or several clients); portcullis reads roles from one claim",
                    "map the roles into one claim at Keycloak and name it in `roles_claim`; until then the routes require the role in PORTCULLIS_REQUIRED_ROLE",
                );
                fail_closed = true;
            }
        }
    } else if let Some(g) = &groups_claim {
        roles_claim = Some(g.clone());
    }
    if let Some(rc) = &roles_claim {
        let _ = writeln!(prov, "roles_claim = {}", literal(rc));
    }
    let ca_files = c.list("provider_ca_files");
    if let Some(first) = ca_files.first() {
        let _ = writeln!(prov, "ca_file = {}", literal(first));
        if ca_files.len() > 1 {
            c.not_carried(
                "provider_ca_files",
                "portcullis takes one CA file per provider (the first is used)",
                "concatenate the PEM files into one",
            );
        }
    }
    if c.flag("skip_oidc_discovery", false) {
        let mut missing = Vec::new();
        for (from, to) in [
            ("login_url", "authorization_endpoint"),
            ("redeem_url", "token_endpoint"),
            ("profile_url", "userinfo_endpoint"),
            ("oidc_jwks_url", "jwks_uri"),
        ] {
            match c.str(from) {
                Some(v) => {
                    let _ = writeln!(prov, "{to} = {}", literal(&v));
                }
                None => missing.push(to),
            }
        }
        for to in missing {
            let var = format!("PORTCULLIS_{}", to.to_ascii_uppercase());
            let p = c.placeholder(&var, &format!("the provider's {to} (discovery is off)"));
            let _ = writeln!(prov, "{to} = {p}");
        }
    } else {
        for k in ["login_url", "redeem_url", "profile_url", "oidc_jwks_url"] {
            if c.has(k) && oidc {
                c.get(k);
                c.changed(
                    k,
                    "portcullis takes the endpoints from discovery while skip_oidc_discovery is off",
                    "nothing to do (set the endpoint explicitly in the provider if discovery is wrong)",
                );
            }
        }
    }
    if let Some(m) = c
        .str("code_challenge_method")
        .or_else(|| c.str("force_code_challenge_method"))
        && !m.eq_ignore_ascii_case("S256")
    {
        c.changed(
            "code_challenge_method",
            "portcullis always uses PKCE with S256",
            "nothing to do, if the provider supports S256",
        );
    }
    for k in [
        "google_groups",
        "google_group",
        "gitlab_groups",
        "gitlab_projects",
        "github_org",
        "github_team",
        "github_repo",
        "github_users",
        "bitbucket_team",
        "bitbucket_repository",
    ] {
        if c.has(k) {
            let advice = ADVICE
                .iter()
                .find(|(p, _)| k.starts_with(p))
                .map_or("", |(_, a)| a);
            c.not_carried(
                k,
                "needs the provider's own API; portcullis reads groups from the token only",
                format!(
                    "{advice}; until then the routes require the role in PORTCULLIS_REQUIRED_ROLE"
                ),
            );
            fail_closed = true;
        }
    }
    if fail_closed && require_any.is_empty() {
        require_any.push("${PORTCULLIS_REQUIRED_ROLE}".into());
        c.report.borrow_mut().env(
            "PORTCULLIS_REQUIRED_ROLE",
            "a role (from the roles claim) that every user of the protected routes must hold; an access rule of the source could not be carried over",
            true,
        );
    }
    let _ = writeln!(out, "[providers.{pname}]\n{prov}");

    require_any
}

/// `[session]`: secret, store, cookie.
fn session_section(c: &Ctx, out: &mut String, facts: &ServerFacts) {
    let (public_url, https_somewhere) = (&facts.public_url, facts.https_somewhere);
    let mut sess = String::new();
    let secret_placeholder = |c: &Ctx, why: String| {
        c.not_carried(
            if c.has("cookie_secret_file") && !c.has("cookie_secret") {
                "cookie_secret_file"
            } else {
                "cookie_secret"
            },
            why,
            "set PORTCULLIS_SESSION_SECRET to the output of `openssl rand -hex 32` (users sign in again once)",
        );
        c.placeholder(
            "PORTCULLIS_SESSION_SECRET",
            "session secret, at least 32 random bytes: `openssl rand -hex 32`",
        )
    };
    if let Some((s, value)) = c.secret("cookie_secret") {
        let weak = if value.len() < 32 {
            Some(format!(
                "{} bytes; oauth2-proxy accepts 16, 24 or 32-byte secrets, portcullis needs at least 32 random bytes",
                value.len()
            ))
        } else {
            weak_secret(&value)
        };
        match weak {
            None => {
                let _ = writeln!(sess, "secret = {}", s.toml(c, "cookie_secret"));
                c.changed(
                    "cookie_secret",
                    "portcullis seals sessions in its own format",
                    "nothing to do: users sign in again once after the switch",
                );
            }
            Some(why) => {
                let p = secret_placeholder(c, why);
                let _ = writeln!(sess, "secret = {p}");
            }
        }
    } else if let Some(f) = c.str("cookie_secret_file") {
        match std::fs::read_to_string(&f) {
            Ok(v) if v.trim_end_matches(['\r', '\n']).len() < 32 => {
                let p = secret_placeholder(
                    c,
                    format!(
                        "the file holds {} bytes; portcullis needs at least 32 random bytes",
                        v.trim_end_matches(['\r', '\n']).len()
                    ),
                );
                let _ = writeln!(sess, "secret = {p}");
            }
            _ => {
                let _ = writeln!(sess, "secret_file = {}", literal(&f));
            }
        }
    } else {
        let p = secret_placeholder(c, "missing (oauth2-proxy needs it too)".into());
        let _ = writeln!(sess, "secret = {p}");
    }
    match c.str("session_store_type").as_deref() {
        None | Some("cookie") => {}
        Some("redis") => redis(c, &mut sess),
        Some(_) => c.not_carried(
            "session_store_type",
            "portcullis stores sessions in the cookie or in Redis",
            "use \"redis\" or \"cookie\"",
        ),
    }
    if let Some(n) = c.str("cookie_name") {
        let _ = writeln!(sess, "cookie_name = {}", literal(&n));
        c.changed(
            "cookie_name",
            format!("on https portcullis names the cookie __Host-{n} (or __Secure-{n} with a cookie domain)"),
            "nothing to do, unless something outside reads the cookie",
        );
    }
    let domains: Vec<String> = c
        .list("cookie_domains")
        .iter()
        .map(|d| {
            let d = d.trim_start_matches('.');
            d.rsplit_once(':')
                .filter(|(_, p)| p.chars().all(|ch| ch.is_ascii_digit()))
                .map_or(d, |(h, _)| h)
                .to_ascii_lowercase()
        })
        .collect();
    if !domains.is_empty() {
        // oauth2-proxy used the longest domain that holds the request's host; portcullis has
        // one, which must hold the public URL's host.
        let chosen = match &public_url {
            Some(u) => domains
                .iter()
                .filter(|d| in_cookie_domain(u.host_str().unwrap_or(""), d))
                .max_by_key(|d| d.len())
                .cloned(),
            None => domains.first().cloned(),
        };
        let https = match &public_url {
            Some(u) => u.scheme() == "https",
            None => https_somewhere,
        };
        match chosen {
            Some(d) if https => {
                let _ = writeln!(sess, "cookie_domain = {}", literal(&d));
                if domains.len() > 1 {
                    c.not_carried(
                        "cookie_domains",
                        format!("portcullis takes one cookie domain; {d:?} is used"),
                        "run one portcullis per parent domain",
                    );
                }
            }
            Some(_) => c.not_carried(
                "cookie_domains",
                "a session shared across subdomains needs https (a `__Secure-` cookie), and this setup serves plain http",
                "serve over https (public_url, [server.tls] or a trusted TLS front proxy), then add `[session] cookie_domain`; each host keeps its own session until then",
            ),
            None => c.not_carried(
                "cookie_domains",
                "none of them holds the host of redirect_url, where the login callback sets the cookie",
                "add `[session] cookie_domain` with a parent domain of the public URL's host",
            ),
        }
    }
    if let Some(e) = c.duration("cookie_expire") {
        if e == 0 {
            c.not_carried(
                "cookie_expire",
                "a browser-session cookie without a lifetime",
                "set `[session] lifetime` (default 12h)",
            );
        } else {
            let _ = writeln!(sess, "lifetime = {}", literal(&fmt_secs(e)));
        }
    }
    if let Some(r) = c.duration("cookie_refresh")
        && r > 0
    {
        let _ = writeln!(sess, "refresh = true");
        c.changed(
            "cookie_refresh",
            "portcullis refreshes a session when its access token is about to expire, not on a fixed interval",
            "nothing to do",
        );
    }
    if c.bool("cookie_secure") == Some(false) {
        c.not_carried(
            "cookie_secure",
            "portcullis decides Secure from the scheme",
            "portcullis sets Secure whenever the public URL (or the request) is https; serve over https",
        );
    }
    if c.bool("cookie_httponly") == Some(false) {
        c.not_carried(
            "cookie_httponly",
            "portcullis always sets HttpOnly",
            "remove it",
        );
    }
    if let Some(p) = c.str("cookie_path")
        && p != "/"
    {
        c.not_carried(
            "cookie_path",
            "portcullis' session cookie covers the whole host",
            "remove it",
        );
    }
    if c.str("cookie_samesite").is_some() {
        c.not_carried(
            "cookie_samesite",
            "portcullis sets SameSite=Lax (the login callback needs it)",
            "remove it",
        );
    }
    let _ = writeln!(out, "[session]\n{sess}");
}

/// `[headers]` and `[forward_auth]`.
fn headers_section(c: &Ctx, out: &mut String) {
    let mut hdr = String::new();
    if c.flag("pass_user_headers", true) {
        let _ = writeln!(hdr, "roles = \"X-Forwarded-Groups\"");
    } else {
        for k in ["user", "email", "preferred_username", "name", "roles"] {
            let _ = writeln!(hdr, "{k} = \"\"");
        }
    }
    if c.flag("pass_access_token", false) {
        let _ = writeln!(hdr, "access_token = \"X-Forwarded-Access-Token\"");
    }
    let pass_authz = c.flag("pass_authorization_header", false);
    let set_authz = c.flag("set_authorization_header", false);
    if pass_authz || set_authz {
        let _ = writeln!(hdr, "authorization = \"access_token\"");
        let k = if pass_authz {
            "pass_authorization_header"
        } else {
            "set_authorization_header"
        };
        c.changed(
            k,
            "oauth2-proxy sent `Authorization: Bearer <ID token>`; portcullis sends the access token",
            "verify the access token in the upstream (audience: your API), or read the signed `[headers] assertion`",
        );
    }
    if c.bool("pass_basic_auth") == Some(true) || c.has("basic_auth_password") {
        c.get("basic_auth_password");
        let k = if c.has("basic_auth_password") {
            "basic_auth_password"
        } else {
            "pass_basic_auth"
        };
        c.not_carried(
            k,
            "portcullis never sends credentials in `Authorization: Basic`",
            "upstreams read `X-Forwarded-User`",
        );
    }
    let _ = writeln!(out, "[headers]\n{hdr}");
    if c.flag("set_xauthrequest", false) {
        let _ = writeln!(out, "[forward_auth]\nxauthrequest = true\n");
        if c.flag("pass_access_token", false) {
            c.report.borrow_mut().not_carried(
                "set_xauthrequest + pass_access_token",
                "true",
                "portcullis' check answer carries no X-Auth-Request-Access-Token",
                "take the token from the `Authorization` header of the answer with `[headers] authorization = \"access_token\"`",
            );
        }
    }
}

/// `[[route]]`s: upstreams, public paths, requirements.
fn routes_section(c: &Ctx, out: &mut String, require_any: &[String]) {
    let websocket = c.flag("proxy_websockets", true);
    let preserve_host = c.flag("pass_host_header", true);

    let mut ups: Vec<Up> = Vec::new();
    for u in c.list("upstreams") {
        match upstream(c, &u) {
            Some(up) => {
                if ups.iter().any(|x| x.path == up.path) {
                    c.report.borrow_mut().not_carried(
                        "upstreams",
                        format!("{:?}", redact_url(&u)),
                        format!("a second upstream for {}", up.path),
                        "one upstream per path; balance targets with a list, `upstream = [\"http://a\", \"http://b\"]`",
                    );
                    continue;
                }
                ups.push(up);
            }
            None => continue,
        }
    }
    if ups.is_empty() {
        let p = c.placeholder(
            "PORTCULLIS_UPSTREAM",
            "the app's URL, e.g. http://127.0.0.1:3000",
        );
        if !c.has("upstreams") {
            c.report.borrow_mut().not_carried(
                "upstreams",
                "(unset)",
                "no upstream to send requests to",
                "set PORTCULLIS_UPSTREAM",
            );
        }
        ups.push(Up {
            path: "/".into(),
            upstream: p,
            comment: None,
        });
    }

    // Public paths: skip_auth_regex, skip_auth_routes, skip_auth_preflight.
    let mut skips: Vec<(String, Option<Vec<String>>)> = Vec::new();
    for (key, entries) in [
        ("skip_auth_regex", c.list("skip_auth_regex")),
        ("skip_auth_routes", c.list("skip_auth_routes")),
    ] {
        for e in entries {
            let (method, negate, re) = if key == "skip_auth_routes" {
                split_route(&e)
            } else {
                (None, false, e.clone())
            };
            let shown = format!("{e:?}");
            if negate {
                c.report.borrow_mut().not_carried(
                    key,
                    shown,
                    "a negated rule (`!=`) makes every other path public; portcullis routes name what they match",
                    "list the public paths as routes with auth = \"none\" (the paths stay behind login until then)",
                );
                continue;
            }
            match path_regex_route(&re) {
                Ok((path, narrower)) => {
                    if let Some(why) = narrower {
                        c.report.borrow_mut().changed(
                            key,
                            shown.clone(),
                            format!("public route {path}: {why}"),
                            "nothing to do if those paths need a login; else add routes with auth = \"none\" for them",
                        );
                    }
                    if method.as_deref() == Some("GET") {
                        c.report.borrow_mut().changed(
                            key,
                            shown,
                            format!("HEAD {path} is public too (portcullis judges HEAD like GET)"),
                            "nothing to do: HEAD is GET without the body",
                        );
                    }
                    skips.push((path, method.map(|m| vec![m])));
                }
                Err((why, suggestion)) => {
                    let instead = match suggestion {
                        Some(p) => format!(
                            "the paths stay behind login; if {p} and everything below it may be public, add a route with path = \"{p}\" and auth = \"none\""
                        ),
                        None => "the paths stay behind login; add routes with auth = \"none\" for the public paths by hand".to_owned(),
                    };
                    c.report.borrow_mut().not_carried(key, shown, why, instead);
                }
            }
        }
    }
    if c.flag("skip_auth_preflight", false) {
        skips.push(("/".into(), Some(vec!["OPTIONS".into()])));
    }

    let mut routes: Vec<OutRoute> = Vec::new();
    for (path, methods) in &skips {
        let covers = |up: &Up, p: &str| {
            Matcher::new(None, &up.path, None)
                .ok()
                .zip(Matcher::new(None, p, None).ok())
                .is_some_and(|(a, b)| a.shadows(&b))
        };
        // The upstream that serves the public path (longest covering path), and every
        // upstream below it: a public prefix is public on each of them.
        match ups
            .iter()
            .filter(|u| covers(u, path))
            .max_by_key(|u| u.path.len())
        {
            Some(u) => routes.push(OutRoute {
                path: path.clone(),
                methods: methods.clone(),
                upstream: u.upstream.clone(),
                public: true,
                comment: None,
            }),
            None => c.report.borrow_mut().changed(
                "skip_auth_routes",
                format!("{path:?}"),
                "no upstream serves this path (oauth2-proxy answered 404 there)",
                "nothing to do",
            ),
        }
        for u in ups.iter().filter(|u| u.path != *path) {
            let below = Matcher::new(None, path, None)
                .ok()
                .zip(Matcher::new(None, &u.path, None).ok())
                .is_some_and(|(a, b)| a.shadows(&b));
            if below {
                routes.push(OutRoute {
                    path: u.path.clone(),
                    methods: methods.clone(),
                    upstream: u.upstream.clone(),
                    public: true,
                    comment: None,
                });
            }
        }
    }
    for u in &ups {
        routes.push(OutRoute {
            path: u.path.clone(),
            methods: None,
            upstream: u.upstream.clone(),
            public: false,
            comment: u.comment.clone(),
        });
    }
    // Most specific first; at one path, public before protected and method-restricted first.
    routes.sort_by_key(|r| (std::cmp::Reverse(r.depth()), !r.public, r.methods.is_none()));
    let mut kept: Vec<(OutRoute, Option<Matcher>)> = Vec::new();
    for r in routes {
        let m = r.matcher();
        let shadowed = match &m {
            Some(m) => kept
                .iter()
                .any(|(_, k)| k.as_ref().is_some_and(|k| k.shadows(m))),
            None => false,
        };
        if !shadowed {
            kept.push((r, m));
        }
    }

    // Requirements on the protected routes.
    let mut require_domains: Vec<String> = Vec::new();
    let mut require_emails: Vec<String> = Vec::new();
    let email_domains = c.list("email_domains");
    let emails_file = c.str("authenticated_emails_file");
    let allow_all = email_domains.iter().any(|d| d == "*");
    let mut emails_placeholder = false;
    if !allow_all {
        for d in &email_domains {
            if d.starts_with('.') || d.starts_with("*.") {
                c.report.borrow_mut().not_carried(
                    "email_domains",
                    format!("{d:?}"),
                    "a subdomain pattern; `require_email_domains` names domains exactly",
                    "list each subdomain in `require_email_domains` (users of its subdomains are refused until then)",
                );
            } else {
                require_domains.push(d.to_ascii_lowercase());
            }
        }
        if let Some(f) = &emails_file {
            match read_emails(Path::new(f)) {
                Ok(list) => require_emails = list,
                Err(e) => {
                    c.report.borrow_mut().not_carried(
                        "authenticated_emails_file",
                        format!("{f:?}"),
                        format!("cannot read it here: {e}"),
                        "run the import where the file is readable; until then the routes admit only the address in PORTCULLIS_ALLOWED_EMAIL",
                    );
                    c.report.borrow_mut().env(
                        "PORTCULLIS_ALLOWED_EMAIL",
                        "an email address admitted to the protected routes (the authenticated-emails file could not be read)",
                        true,
                    );
                    emails_placeholder = true;
                }
            }
        }
        if !require_domains.is_empty() && !require_emails.is_empty() {
            c.changed(
                "authenticated_emails_file",
                "oauth2-proxy admitted an address in the file OR in email_domains; a portcullis route requires both",
                "add the file's addresses' domains to `require_email_domains` or drop one rule (the routes are stricter until then)",
            );
        }
        if !email_domains.is_empty()
            && require_domains.is_empty()
            && require_emails.is_empty()
            && !emails_placeholder
        {
            // Every domain was a subdomain pattern: require a domain the user names rather
            // than admit every address.
            require_domains.push("${PORTCULLIS_EMAIL_DOMAIN}".into());
            c.report.borrow_mut().env(
                "PORTCULLIS_EMAIL_DOMAIN",
                "an email domain admitted to the protected routes (email_domains could not be carried over)",
                true,
            );
        }
        if email_domains.is_empty() && emails_file.is_none() {
            c.report.borrow_mut().not_carried(
                "email_domains",
                "(unset)",
                "oauth2-proxy refuses to start without email_domains or authenticated_emails_file",
                "the routes admit every signed-in user: add `require_email_domains` if that is not what you want",
            );
        }
    } else if emails_file.is_some() {
        c.changed(
            "authenticated_emails_file",
            "email_domains = [\"*\"] admits every address, so the file added nobody",
            "nothing to do",
        );
    }
    let bearer = c.flag("skip_jwt_bearer_tokens", false);
    if bearer {
        c.changed(
            "skip_jwt_bearer_tokens",
            "protected routes are `login_or_bearer`: a bearer token must be an access token (not an ID token) whose `aud` is the client id or one of `audiences`",
            "send access tokens; list other accepted audiences in the provider's `audiences`",
        );
    }
    if !c.list("extra_jwt_issuers").is_empty() {
        c.not_carried(
            "extra_jwt_issuers",
            "a portcullis route trusts tokens of one provider",
            "add a `[providers.NAME]` with that issuer and `audiences`, and a route with auth = \"bearer\" and provider = \"NAME\" for the paths those clients call",
        );
    }

    let mut names = BTreeSet::new();
    for (r, _) in &kept {
        let slug = r
            .path
            .split(|ch: char| !ch.is_ascii_alphanumeric())
            .filter(|w| !w.is_empty())
            .collect::<Vec<_>>()
            .join("-")
            .to_ascii_lowercase();
        let base = match (r.public, slug.is_empty()) {
            (false, true) => "app".to_owned(),
            (false, false) => format!("app-{slug}"),
            (true, true) => "public".to_owned(),
            (true, false) => format!("public-{slug}"),
        };
        let base = match &r.methods {
            Some(m) => format!("{base}-{}", m.join("-").to_ascii_lowercase()),
            None => base,
        };
        let mut name = base.clone();
        let mut n = 2;
        while !names.insert(name.clone()) {
            name = format!("{base}-{n}");
            n += 1;
        }
        let _ = writeln!(out, "[[route]]");
        if let Some(cm) = &r.comment {
            let _ = writeln!(out, "# {cm}");
        }
        let _ = writeln!(out, "name = {}", literal(&name));
        let _ = writeln!(out, "path = {}", literal(&r.path));
        if let Some(m) = &r.methods {
            let _ = writeln!(out, "methods = {}", literal_list(m));
        }
        let _ = writeln!(out, "upstream = {}", r.upstream);
        if r.public {
            let _ = writeln!(out, "auth = \"none\"");
        } else {
            let _ = writeln!(
                out,
                "auth = \"{}\"",
                if bearer { "login_or_bearer" } else { "login" }
            );
            if !require_any.is_empty() {
                let list: Vec<String> = require_any
                    .iter()
                    .map(|r| {
                        if r.starts_with("${PORTCULLIS_") {
                            template(r)
                        } else {
                            literal(r)
                        }
                    })
                    .collect();
                let _ = writeln!(out, "require_any_role = [{}]", list.join(", "));
            }
            if !require_domains.is_empty() {
                let list: Vec<String> = require_domains
                    .iter()
                    .map(|d| {
                        if d.starts_with("${PORTCULLIS_") {
                            template(d)
                        } else {
                            literal(d)
                        }
                    })
                    .collect();
                let _ = writeln!(out, "require_email_domains = [{}]", list.join(", "));
            }
            if emails_placeholder {
                let _ = writeln!(out, "require_emails = [\"${{PORTCULLIS_ALLOWED_EMAIL}}\"]");
            } else if !require_emails.is_empty() {
                let _ = writeln!(out, "require_emails = {}", literal_list(&require_emails));
            }
        }
        if websocket && r.comment.is_none() {
            let _ = writeln!(out, "websocket = true");
        }
        if !preserve_host {
            let _ = writeln!(out, "preserve_host = false");
        }
        let _ = writeln!(out);
    }
}

/// Session store settings for `session_store_type = "redis"`.
fn redis(c: &Ctx, sess: &mut String) {
    let _ = writeln!(sess, "store = \"redis\"");
    let sentinel = c.flag("redis_use_sentinel", false);
    let cluster = c.flag("redis_use_cluster", false);
    let placeholder = |c: &Ctx| {
        c.placeholder(
            "PORTCULLIS_REDIS_URL",
            "the Redis URL, redis://[user:password@]host:port/db (or rediss://)",
        )
    };
    if sentinel {
        let hosts: Vec<String> = c
            .list("redis_sentinel_connection_urls")
            .iter()
            .map(|u| {
                url::Url::parse(u).ok().map_or_else(
                    || u.clone(),
                    |p| p[url::Position::BeforeHost..url::Position::AfterPort].to_owned(),
                )
            })
            .collect();
        let master = c
            .str("redis_sentinel_master_name")
            .unwrap_or_else(|| "MASTER".into());
        let password = if c.has("redis_password") {
            ":<redis_password>@"
        } else {
            ""
        };
        c.get("redis_password");
        c.get("redis_sentinel_password");
        c.not_carried(
            "redis_use_sentinel",
            "not supported here: this import writes a single Redis URL; Sentinel discovery is not carried over",
            format!(
                "set PORTCULLIS_REDIS_URL to the current master; or, where your portcullis documents Sentinel, `redis_url = \"redis+sentinel://{password}{}/{master}\"` (redis_sentinel_password → `[session.redis] sentinel_password`)",
                hosts.join(",")
            ),
        );
        let _ = writeln!(sess, "redis_url = {}", placeholder(c));
    } else if cluster {
        c.list("redis_cluster_connection_urls");
        c.not_carried(
            "redis_use_cluster",
            "not supported: portcullis talks to one Redis server (or a replicated primary), not a Redis Cluster",
            "set PORTCULLIS_REDIS_URL to a standalone or replicated Redis",
        );
        let _ = writeln!(sess, "redis_url = {}", placeholder(c));
    } else {
        let url_opt = c.get("redis_connection_url").cloned();
        let url_s = c.str("redis_connection_url");
        let user = c.str("redis_username");
        let pass = c.secret("redis_password");
        match (url_opt, url_s) {
            (Some(o), Some(u)) => {
                let scheme_ok = u.starts_with("redis://") || u.starts_with("rediss://");
                if !scheme_ok {
                    c.not_carried(
                        "redis_connection_url",
                        "portcullis connects with redis:// or rediss:// URLs",
                        "set PORTCULLIS_REDIS_URL",
                    );
                    let _ = writeln!(sess, "redis_url = {}", placeholder(c));
                } else if user.is_none() && pass.is_none() {
                    let v = match o.origin {
                        Origin::Env(var) => {
                            c.report.borrow_mut().env(
                                &var,
                                "oauth2-proxy's redis_connection_url",
                                false,
                            );
                            template(&format!("${{{var}}}"))
                        }
                        Origin::File => literal(&u),
                    };
                    let _ = writeln!(sess, "redis_url = {v}");
                } else {
                    // Put the username/password into the URL, as oauth2-proxy's overrides did.
                    let (scheme, rest) = u.split_once("://").unwrap_or(("redis", &u));
                    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
                    let enc = |s: &str| {
                        percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC)
                            .to_string()
                    };
                    let user_part = user.as_deref().map(enc).unwrap_or_default();
                    let pass_part = match &pass {
                        Some((SecretVal::Literal(p), _)) => format!(":{}", enc(p)),
                        Some((SecretVal::Env(var), _)) => {
                            c.report
                                .borrow_mut()
                                .env(var, "oauth2-proxy's redis_password", false);
                            c.changed(
                                "redis_password",
                                "read from the environment into the URL as is",
                                format!("percent-encode {var} if the password has characters such as @ : / %"),
                            );
                            format!(":${{{var}}}")
                        }
                        None => String::new(),
                    };
                    let full = format!("{scheme}://{user_part}{pass_part}@{rest}");
                    let v = match (&pass, o.origin) {
                        (Some((SecretVal::Env(_), _)), _) => template(&full),
                        (_, Origin::Env(var)) => {
                            c.changed(
                                "redis_connection_url",
                                format!("written into the output with the username/password overrides (it came from {var})"),
                                "keep the output file private, or pass the whole URL through one variable",
                            );
                            literal(&full)
                        }
                        _ => literal(&full),
                    };
                    let _ = writeln!(sess, "redis_url = {v}");
                }
            }
            _ => {
                c.report.borrow_mut().not_carried(
                    "redis_connection_url",
                    "(unset)",
                    "the redis session store needs a URL",
                    "set PORTCULLIS_REDIS_URL",
                );
                let _ = writeln!(sess, "redis_url = {}", placeholder(c));
            }
        }
    }
    if let Some(ca) = c.str("redis_ca_path") {
        let tls = c
            .str("redis_connection_url")
            .is_some_and(|u| u.starts_with("rediss://"));
        if tls && !sentinel && !cluster {
            let _ = writeln!(sess, "redis_ca_file = {}", literal(&ca));
        } else {
            c.not_carried(
                "redis_ca_path",
                "a CA file applies to a rediss:// (TLS) URL only",
                "add `[session] redis_ca_file` once the Redis URL is rediss://",
            );
        }
    }
}

/// One entry of `upstreams` → the route path it served and the portcullis upstream.
fn upstream(c: &Ctx, raw: &str) -> Option<Up> {
    let shown = format!("{:?}", redact_url(raw));
    let rep = |reason: String, instead: &str| {
        c.report
            .borrow_mut()
            .not_carried("upstreams", shown.clone(), reason, instead.to_owned());
    };
    let u = match url::Url::parse(raw) {
        Ok(u) => u,
        Err(e) => {
            rep(format!("not a URL: {e}"), "give http(s)://host:port");
            return None;
        }
    };
    match u.scheme() {
        "http" | "https" => {
            if u.host_str().is_none() {
                rep("no host".into(), "give http(s)://host:port");
                return None;
            }
            let path = if u.path().is_empty() { "/" } else { u.path() };
            let route_path = match path.trim_end_matches('/') {
                "" => "/".to_owned(),
                p => p.to_owned(),
            };
            if Matcher::new(None, &route_path, None).is_err() {
                rep(
                    format!("the path {path} cannot be a route path"),
                    "add the route by hand",
                );
                return None;
            }
            if !path.ends_with('/') {
                c.report.borrow_mut().changed(
                    "upstreams",
                    shown.clone(),
                    format!("oauth2-proxy sent only exactly {path} there; portcullis also sends the paths below it (behind the same login)"),
                    "nothing to do, unless another upstream served paths below it",
                );
            }
            let authority = &u[url::Position::BeforeHost..url::Position::AfterPort];
            Some(Up {
                path: route_path,
                upstream: literal(&format!("{}://{authority}", u.scheme())),
                comment: None,
            })
        }
        "static" => {
            let code = u.host_str().unwrap_or("200").to_owned();
            c.report.borrow_mut().not_carried(
                "upstreams",
                shown.clone(),
                format!("not supported: a static response ({code}); portcullis always forwards to an upstream"),
                "if nginx/ingress-nginx only asked this oauth2-proxy for a decision (auth_request, `auth-url`), point it at portcullis' /.auth/check: the emitted route `/` judges it and its upstream is never called",
            );
            Some(Up {
                path: "/".into(),
                upstream: literal("http://127.0.0.1:1"),
                comment: Some(format!(
                    "oauth2-proxy answered {code} here itself; forward-auth (/.auth/check) judges this route and never calls its upstream"
                )),
            })
        }
        "file" => {
            rep(
                "not supported: portcullis serves no files itself".into(),
                "serve the directory with a web server (nginx, caddy file-server) and add a route to it",
            );
            None
        }
        "unix" => {
            rep(
                "not supported: portcullis connects to upstreams over TCP".into(),
                "listen on a loopback port and use http://127.0.0.1:PORT",
            );
            None
        }
        other => {
            rep(
                format!("unsupported scheme {other:?}"),
                "give http(s)://host:port",
            );
            None
        }
    }
}

/// `"METHOD=regex"`, `"METHOD!=regex"`, `"regex"`, `"!=regex"` → (method, negated, regex), as
/// oauth2-proxy splits them (at the first `=` or `!=`).
fn split_route(s: &str) -> (Option<String>, bool, String) {
    let negate = s.contains("!=");
    let at = s.find('=');
    match at {
        None => (None, false, s.to_owned()),
        Some(i) => {
            let (m, rest) = s.split_at(i);
            let m = m.strip_suffix('!').unwrap_or(m);
            let re = rest[1..].to_owned();
            let method = (!m.is_empty()).then(|| m.to_ascii_uppercase());
            (method, negate, re)
        }
    }
}

/// The addresses of an authenticated-emails file: the first CSV column, `#` comments, lower case.
fn read_emails(path: &Path) -> std::io::Result<Vec<String>> {
    let text = std::fs::read_to_string(path)?;
    let mut out: Vec<String> = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let first = line
            .split(',')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if !first.is_empty() && !out.contains(&first) {
            out.push(first);
        }
    }
    Ok(out)
}

/// `:4180`, `0.0.0.0:4180`, `http://127.0.0.1:4180`, `localhost:4180` → a socket address.
fn listen_addr(c: &Ctx, key: &str, a: &str) -> Option<String> {
    let lower = a.to_ascii_lowercase();
    let a = lower
        .strip_prefix("http://")
        .or_else(|| lower.strip_prefix("https://"))
        .unwrap_or(&lower);
    if a.starts_with("unix://") || a.starts_with("fd:") {
        c.not_carried(
            key,
            "portcullis listens on TCP addresses",
            "listen on an address such as 127.0.0.1:4180",
        );
        return None;
    }
    let a = if let Some(port) = a.strip_prefix(':') {
        format!("0.0.0.0:{port}")
    } else if let Some(port) = a.strip_prefix("localhost:") {
        format!("127.0.0.1:{port}")
    } else {
        a.to_owned()
    };
    match a.parse::<SocketAddr>() {
        Ok(s) => Some(s.to_string()),
        Err(_) => {
            c.not_carried(
                key,
                "not an IP address and port",
                "give an address such as 0.0.0.0:4180",
            );
            None
        }
    }
}

/// A Go duration string in whole seconds (fractions of a second are dropped).
fn go_duration(s: &str) -> Option<u64> {
    if s == "0" {
        return Some(0);
    }
    let mut rest = s;
    let mut total = 0f64;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let n_end = rest
            .find(|ch: char| !(ch.is_ascii_digit() || ch == '.'))
            .unwrap_or(rest.len());
        let n: f64 = rest[..n_end].parse().ok()?;
        rest = &rest[n_end..];
        let u_end = rest
            .find(|ch: char| ch.is_ascii_digit() || ch == '.')
            .unwrap_or(rest.len());
        let unit = match &rest[..u_end] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[u_end..];
        total += n * unit;
    }
    // Whole seconds; the value is small and non-negative by construction.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    Some(total.floor() as u64)
}

/// Seconds as a duration string portcullis reads: `168h`, `1h30m`, `90s` → `1m30s`.
fn fmt_secs(s: u64) -> String {
    if s == 0 {
        return "0s".into();
    }
    let (h, m, sec) = (s / 3600, (s % 3600) / 60, s % 60);
    let mut out = String::new();
    if h > 0 {
        let _ = write!(out, "{h}h");
    }
    if m > 0 {
        let _ = write!(out, "{m}m");
    }
    if sec > 0 {
        let _ = write!(out, "{sec}s");
    }
    out
}

/// A URL with its password replaced by `<redacted>`.
fn redact_url(s: &str) -> String {
    match url::Url::parse(s) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("REDACTED"));
            u.to_string().replace("REDACTED", "<redacted>")
        }
        _ => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skip_auth_routes_split_like_oauth2_proxy() {
        assert_eq!(
            split_route("GET=^/a"),
            (Some("GET".into()), false, "^/a".into())
        );
        assert_eq!(
            split_route("post!=^/a"),
            (Some("POST".into()), true, "^/a".into())
        );
        assert_eq!(split_route("^/a"), (None, false, "^/a".into()));
        assert_eq!(split_route("!=^/a"), (None, true, "^/a".into()));
    }

    #[test]
    fn go_durations() {
        assert_eq!(go_duration("168h"), Some(604_800));
        assert_eq!(go_duration("1h30m"), Some(5400));
        assert_eq!(go_duration("168h0m0s"), Some(604_800));
        assert_eq!(go_duration("1.5h"), Some(5400));
        assert_eq!(go_duration("500ms"), Some(0));
        assert_eq!(go_duration("0"), Some(0));
        assert_eq!(go_duration("7d"), None);
        assert_eq!(go_duration(""), None);
        assert_eq!(fmt_secs(604_800), "168h");
        assert_eq!(fmt_secs(5400), "1h30m");
        assert_eq!(fmt_secs(90), "1m30s");
    }

    #[test]
    fn redis_passwords_are_redacted() {
        assert_eq!(
            redact_url("redis://u:secret@h:6379/0"),
            "redis://u:<redacted>@h:6379/0"
        );
        assert_eq!(redact_url("redis://h:6379"), "redis://h:6379");
    }
}
