//! `[session]`: the secret (length, placeholders and near misses refused), rotation, the store
//! (cookie, or Redis: one server by URL, or Sentinel by URL or `[session.redis]`; CA file),
//! cookie name, `cookie_domain` (a domain, which
//! `public_url` must be inside and which needs https) and lifetimes.

use std::time::Duration;

use toml::Spanned;

use super::load::{Validator, span};
use super::raw::{RawRedis, RawSession};
use super::server::Server;
use super::values::{Secret, Str};
use crate::tls_client::CaFile;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionStore {
    Cookie,
    /// `ca`: the CA that signed the TLS servers' certificates (then the only one trusted).
    Redis {
        server: RedisServer,
        ca: Option<CaFile>,
    },
}

/// Where the Redis session store is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisServer {
    /// One server: `redis://` or `rediss://` (TLS).
    Url(Secret),
    /// The master the sentinels name (`redis+sentinel://`, `rediss+sentinel://` or
    /// `[session.redis]`).
    Sentinel(RedisSentinel),
}

/// Redis behind Sentinel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisSentinel {
    /// `host:port` of each sentinel (at least one).
    pub sentinels: Vec<(String, u16)>,
    pub master_name: String,
    pub db: i64,
    /// `AUTH` to the master (and a replica promoted in its place).
    pub password: Option<Secret>,
    /// `AUTH` to the sentinels.
    pub sentinel_password: Option<Secret>,
    /// TLS to the sentinels and the master.
    pub tls: bool,
}

/// `session.local_cache` when not set.
pub const DEFAULT_LOCAL_CACHE: Duration = Duration::from_secs(1);
/// The longest `session.local_cache` accepted.
pub const MAX_LOCAL_CACHE: Duration = Duration::from_secs(10);

/// The sentinel's default port.
pub const SENTINEL_PORT: u16 = 26379;

/// `host:port`, `host` (port 26379), `[v6]:port` or `[v6]`: one sentinel's address.
pub fn parse_sentinel_addr(s: &str) -> Result<(String, u16), String> {
    let bad = |why: &str| Err(format!("{s:?} is not host:port ({why})"));
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let Some((h, after)) = rest.split_once(']') else {
            return bad("an IPv6 address needs its closing ']'");
        };
        if h.parse::<std::net::Ipv6Addr>().is_err() {
            return bad("not an IPv6 address between '[' and ']'");
        }
        match after {
            "" => (h, None),
            p if p.starts_with(':') => (h, Some(&p[1..])),
            _ => return bad("write the port after ']:'"),
        }
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    if host.is_empty() {
        return bad("the host is missing");
    }
    if !s.starts_with('[')
        && !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
    {
        return bad("a host name or IPv4 address has letters, digits, '-', '_' and '.' only");
    }
    let port = match port {
        None => SENTINEL_PORT,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => n,
            _ => return bad("the port must be a number from 1 to 65535"),
        },
    };
    Ok((host.to_string(), port))
}

/// `redis+sentinel://[[user]:password@]host[:port][,host[:port]…]/master_name[/db]`, or
/// `rediss+sentinel://…` (TLS to the sentinels and the master). The password (percent-encoded)
/// is the master's; the sentinels get none. A sentinel without a port is on 26379.
pub fn parse_sentinel_url(url: &str) -> Result<RedisSentinel, String> {
    const GRAMMAR: &str =
        "write redis+sentinel://[:password@]host:port[,host:port…]/master_name[/db]";
    let (tls, rest) = if let Some(r) = url.strip_prefix("redis+sentinel://") {
        (false, r)
    } else if let Some(r) = url.strip_prefix("rediss+sentinel://") {
        (true, r)
    } else {
        return Err(format!("not a Sentinel URL: {GRAMMAR}"));
    };
    let (auth, rest) = match rest.rsplit_once('@') {
        Some((a, r)) => (Some(a), r),
        None => (None, rest),
    };
    let password = match auth {
        None => None,
        Some(a) => {
            let (user, pass) = a.split_once(':').unwrap_or(("", a));
            if !user.is_empty() {
                return Err(format!(
                    "a user name in the URL is not supported (Redis ACL users): {GRAMMAR}"
                ));
            }
            let pass = percent_encoding::percent_decode_str(pass)
                .decode_utf8()
                .map_err(|_| "the password is not UTF-8 once percent-decoded".to_string())?;
            (!pass.is_empty()).then(|| Secret::new(pass.into_owned()))
        }
    };
    let (hosts, path) = rest.split_once('/').unwrap_or((rest, ""));
    if rest.contains(['?', '#']) {
        return Err(format!("no query or fragment: {GRAMMAR}"));
    }
    let mut sentinels = Vec::new();
    for h in hosts.split(',') {
        if h.is_empty() {
            return Err(format!("a sentinel address is empty: {GRAMMAR}"));
        }
        sentinels.push(parse_sentinel_addr(h)?);
    }
    let mut parts = path.split('/');
    let master_name = parts.next().unwrap_or("");
    if master_name.is_empty() {
        return Err(format!("the master name is missing: {GRAMMAR}"));
    }
    let db = match parts.next() {
        None | Some("") => 0,
        Some(d) => d
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .ok_or_else(|| format!("the database {d:?} is not a number ≥ 0: {GRAMMAR}"))?,
    };
    if parts.next().is_some_and(|p| !p.is_empty()) {
        return Err(format!("too many path segments: {GRAMMAR}"));
    }
    Ok(RedisSentinel {
        sentinels,
        master_name: master_name.to_string(),
        db,
        password,
        sentinel_password: None,
        tls,
    })
}

/// `session.store` as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    Cookie,
    Redis,
}

impl std::str::FromStr for StoreKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "cookie" => Ok(StoreKind::Cookie),
            "redis" => Ok(StoreKind::Redis),
            other => Err(format!(
                "unknown store {other:?}: use \"cookie\" or \"redis\""
            )),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Session {
    pub secret: Secret,
    pub previous_secrets: Vec<Secret>,
    pub store: SessionStore,
    pub cookie_name: String,
    pub lifetime: Duration,
    pub idle_timeout: Duration,
    /// `local_cache` (Redis store): how long each replica keeps a session it read from Redis
    /// before reading it again; zero turns the cache off. Ended or rewritten sessions leave
    /// every replica's cache at once through Redis pub/sub (`session::local`).
    pub local_cache: Duration,
    pub refresh: bool,
    pub post_logout_redirect: String,
    /// `cookie_domain`: lower case, without a leading dot. On HTTPS the session (and
    /// pending-login) cookies are `__Secure-<name>` with `Domain=<this>`, so every subdomain
    /// shares one sign-in; on plain HTTP they stay host-only.
    pub cookie_domain: Option<String>,
}

/// Session secrets published in this project's examples, docs and deployment checks (config/,
/// docs/, README.md, Dockerfile, tests/deploy, tests/bench; also former defaults): anyone can seal
/// a session with them, so `check` and `run` refuse them — and every near miss ([`weak_secret`]).
pub const PLACEHOLDER_SECRETS: &[&str] = &[
    // config/portcullis.example.toml (former `${SESSION_SECRET:-…}` default)
    "change-me-to-32-random-bytes-at-least!!",
    // config/demo.toml (former default)
    "demo-only-session-secret-0123456789abcdef",
    // config/kubernetes/sidecar.yaml (the Secret's placeholder)
    "replace-me-with-at-least-32-random-bytes-0123456789",
    // tests/deploy/validate.sh (former dummy values)
    "dummy-session-secret-0123456789abcdef0123456789",
    "dummy-session-secret-0123456789abcdef0123456789abcdef",
    "dummy-secret-for-portcullis-check-0123456789abcdef0123456789abcd",
    // tests/bench/bench.sh (former value)
    "bench-session-secret-0123456789abcdef-0123",
];

/// Parts that mark a placeholder whatever surrounds them, compared with the secret
/// [`normalized`]: words people write into example secrets, and keyboard or alphabet runs. Each
/// is at least 7 characters, so a random secret (`openssl rand -hex 32` / `-base64 48`) contains
/// one with a probability below 10⁻⁸.
const PLACEHOLDER_MARKERS: &[&str] = &[
    "changeme",
    "changeit",
    "replaceme",
    "placeholder",
    "yoursecret",
    "goeshere",
    "secrethere",
    "example",
    "password",
    "insecure",
    "0123456789",
    "1234567890",
    "9876543210",
    "abcdefghij",
    "qwertyuiop",
];

/// A secret sharing this many consecutive characters (after [`normalized`]) with a published
/// placeholder is a near miss of it.
const PLACEHOLDER_RUN: usize = 16;

/// How to make a good session secret, for the errors below.
const SECRET_FIX: &str = "generate one with `openssl rand -hex 32` and pass it through the environment (`secret = \"${SESSION_SECRET}\"`) or `secret_file`";

/// `s` in lower case with everything but ASCII letters and digits dropped: `Change_Me` and
/// `change-me!` compare as the same placeholder.
fn normalized(s: &str) -> String {
    s.bytes()
        .filter(u8::is_ascii_alphanumeric)
        .map(|b| char::from(b.to_ascii_lowercase()))
        .collect()
}

/// Why `secret` must not seal sessions, if it must not: a published placeholder or a near miss
/// of one (after [`normalized`]: [`PLACEHOLDER_RUN`] consecutive characters of one, or any
/// [`PLACEHOLDER_MARKERS`]), or fewer than 8 distinct characters (`openssl rand -hex 32` has 16
/// possible ones). Never repeats the secret.
pub fn weak_secret(secret: &str) -> Option<String> {
    let norm = normalized(secret);
    let near_published = PLACEHOLDER_SECRETS.iter().any(|p| {
        let p = normalized(p);
        p.as_bytes()
            .windows(PLACEHOLDER_RUN)
            .any(|w| norm.as_bytes().windows(PLACEHOLDER_RUN).any(|s| s == w))
    });
    if near_published {
        return Some(
            "is (or nearly is) a placeholder published in portcullis' examples or docs: anyone can forge sessions with it"
                .into(),
        );
    }
    if let Some(m) = PLACEHOLDER_MARKERS.iter().find(|m| norm.contains(*m)) {
        return Some(format!(
            "looks like a placeholder (it contains {m:?}, ignoring case and punctuation), not a random value: it is guessable"
        ));
    }
    let mut seen = [false; 256];
    let mut distinct = 0;
    for b in secret.bytes() {
        if !std::mem::replace(&mut seen[usize::from(b)], true) {
            distinct += 1;
        }
    }
    (distinct < 8).then(|| {
        format!("has only {distinct} distinct characters (at least 8 are needed): it is guessable")
    })
}

impl Validator<'_, '_> {
    pub(super) fn session(&mut self, ss: &Spanned<RawSession>, server: &Server) -> Option<Session> {
        let s = ss.get_ref();
        let secret = self.secret(
            s.secret.as_ref().map(|x| x.get_ref().clone()),
            s.secret.as_ref().map(span),
            s.secret_file.as_ref(),
            "session.secret",
        );
        // where a problem with the secret is reported: its key, else the section
        let at = s
            .secret
            .as_ref()
            .map(span)
            .or(s.secret_file.as_ref().map(span))
            .unwrap_or_else(|| span(ss));
        let secret = match secret {
            Some(sec) if sec.expose().len() >= 32 => sec,
            Some(sec) => {
                self.errs.at(
                    at,
                    "session.secret",
                    format!(
                        "the session secret is {} bytes; it must be at least 32 (generate one with `openssl rand -base64 48`)",
                        sec.expose().len()
                    ),
                );
                return None;
            }
            None => {
                if s.secret.is_none() && s.secret_file.is_none() {
                    self.errs.at(
                        span(ss),
                        "session.secret",
                        "missing: set `secret` (≥ 32 bytes) or `secret_file`",
                    );
                }
                return None;
            }
        };
        if let Some(problem) = weak_secret(secret.expose()) {
            let from = if s.secret.is_none() {
                "the session secret in `secret_file`"
            } else {
                "the session secret"
            };
            self.errs.at(
                at,
                "session.secret",
                format!("{from} {problem}; {SECRET_FIX}"),
            );
            return None;
        }
        let mut previous = Vec::new();
        for (i, p) in s.previous_secrets.iter().enumerate() {
            if p.get_ref().expose().len() < 32 {
                self.errs.at(
                    span(p),
                    format!("session.previous_secrets[{i}]"),
                    "each secret must be at least 32 bytes",
                );
            } else if let Some(problem) = weak_secret(p.get_ref().expose()) {
                self.errs.at(
                    span(p),
                    format!("session.previous_secrets[{i}]"),
                    format!("this secret {problem}; remove it (cookies sealed with it could be forged): {SECRET_FIX}"),
                );
            } else {
                previous.push(p.get_ref().clone());
            }
        }
        let redis_url = self.secret(
            s.redis_url.as_ref().map(|x| x.get_ref().clone()),
            s.redis_url.as_ref().map(span),
            s.redis_url_file.as_ref(),
            "session.redis_url",
        );
        let redis_ca = s
            .redis_ca_file
            .as_ref()
            .and_then(|f| self.ca_file(f, "session.redis_ca_file"));
        let store = match s.store.as_ref().map(|x| (x, x.get_ref().0)) {
            None | Some((_, StoreKind::Cookie)) => {
                if let Some(f) = &s.redis_ca_file {
                    self.errs.at(
                        span(f),
                        "session.redis_ca_file",
                        "only a Redis store over TLS uses a CA file: set store = \"redis\" with a rediss:// URL, or remove it",
                    );
                }
                if let Some(t) = &s.redis {
                    self.errs.at(
                        span(t),
                        "session.redis",
                        "[session.redis] configures the Redis store: set store = \"redis\", or remove it",
                    );
                }
                SessionStore::Cookie
            }
            Some((st, StoreKind::Redis)) => match (redis_url, &s.redis) {
                (Some(_), Some(t)) => {
                    self.errs.at(
                        span(t),
                        "session.redis",
                        "both `redis_url` and [session.redis] are set: keep one (a Sentinel setup is either redis_url = \"redis+sentinel://…\" or this table)",
                    );
                    return None;
                }
                (Some(url), None) => {
                    let at = s
                        .redis_url
                        .as_ref()
                        .map(span)
                        .or_else(|| s.redis_url_file.as_ref().map(span))
                        .unwrap_or_else(|| span(st));
                    let u = url.expose();
                    let sentinel =
                        u.starts_with("redis+sentinel://") || u.starts_with("rediss+sentinel://");
                    let server = if sentinel {
                        match parse_sentinel_url(u) {
                            Ok(cfg) => RedisServer::Sentinel(cfg),
                            Err(e) => {
                                self.errs.at(at, "session.redis_url", e);
                                return None;
                            }
                        }
                    } else if u.starts_with("redis://") || u.starts_with("rediss://") {
                        RedisServer::Url(url.clone())
                    } else {
                        self.errs.at(
                            at,
                            "session.redis_url",
                            "must start with redis://, rediss:// (TLS), redis+sentinel:// or rediss+sentinel:// (Sentinel)",
                        );
                        return None;
                    };
                    let tls = match &server {
                        RedisServer::Url(_) => u.starts_with("rediss://"),
                        RedisServer::Sentinel(c) => c.tls,
                    };
                    if let (false, Some(f)) = (tls, &s.redis_ca_file) {
                        self.errs.at(
                            span(f),
                            "session.redis_ca_file",
                            "a CA file needs TLS: write the URL as rediss:// (or rediss+sentinel://)",
                        );
                    }
                    SessionStore::Redis {
                        server,
                        ca: redis_ca,
                    }
                }
                (None, Some(t)) => {
                    if let Some(f) = &s.redis_ca_file {
                        self.errs.at(
                            span(f),
                            "session.redis_ca_file",
                            "with [session.redis], write the CA file there as `ca_file`",
                        );
                    }
                    let (cfg, ca) = self.redis_table(t)?;
                    SessionStore::Redis {
                        server: RedisServer::Sentinel(cfg),
                        ca,
                    }
                }
                (None, None) => {
                    self.errs.at(span(st), "session.redis_url", "store = \"redis\" needs `redis_url` (e.g. \"redis://127.0.0.1:6379/0\") or a [session.redis] table with `sentinels` and `master_name`");
                    return None;
                }
            },
        };
        let cookie_name = match &s.cookie_name {
            Some(c) => {
                let v = c.get_ref().0.clone();
                if v.is_empty()
                    || !v
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                {
                    self.errs.at(
                        span(c),
                        "session.cookie_name",
                        "use letters, digits, '-' and '_' only",
                    );
                }
                v
            }
            None => "portcullis".to_string(),
        };
        let post_logout_redirect = s
            .post_logout_redirect
            .as_ref()
            .map_or_else(|| "/".to_string(), |p| p.get_ref().0.clone());
        let cookie_domain = s
            .cookie_domain
            .as_ref()
            .and_then(|d| self.cookie_domain(d, server));
        let local_cache = match &s.local_cache {
            Some(d) if d.get_ref().0 > MAX_LOCAL_CACHE => {
                self.errs.at(
                    span(d),
                    "session.local_cache",
                    "at most \"10s\": a cached session outlives its logout by this long when the pub/sub link fails silently; \"1s\" is the default, \"0s\" turns the cache off",
                );
                MAX_LOCAL_CACHE
            }
            Some(d) => d.get_ref().0,
            None => DEFAULT_LOCAL_CACHE,
        };
        Some(Session {
            cookie_domain,
            secret,
            previous_secrets: previous,
            store,
            cookie_name,
            lifetime: s.lifetime.map_or(Duration::from_secs(12 * 3600), |d| d.0),
            idle_timeout: s.idle_timeout.map_or(Duration::from_secs(3600), |d| d.0),
            local_cache,
            refresh: s.refresh.unwrap_or(true),
            post_logout_redirect,
        })
    }
}

impl Validator<'_, '_> {
    /// `[session.redis]`: Sentinel by table. Every mistake is reported (file:line:col, key).
    fn redis_table(&mut self, t: &Spanned<RawRedis>) -> Option<(RedisSentinel, Option<CaFile>)> {
        let r = t.get_ref();
        let mut ok = true;
        let mut sentinels = Vec::new();
        match &r.sentinels {
            None => {
                self.errs.at(
                    span(t),
                    "session.redis.sentinels",
                    "missing: list the sentinels, e.g. sentinels = [\"10.0.0.1:26379\", \"10.0.0.2:26379\", \"10.0.0.3:26379\"]",
                );
                ok = false;
            }
            Some(list) if list.get_ref().is_empty() => {
                self.errs.at(
                    span(list),
                    "session.redis.sentinels",
                    "empty: list at least one sentinel as \"host:port\" (three for a quorum of 2)",
                );
                ok = false;
            }
            Some(list) => {
                for (i, a) in list.get_ref().iter().enumerate() {
                    match parse_sentinel_addr(a.get_ref()) {
                        Ok(x) => sentinels.push(x),
                        Err(e) => {
                            self.errs
                                .at(span(a), format!("session.redis.sentinels[{i}]"), e);
                            ok = false;
                        }
                    }
                }
            }
        }
        let master_name = match &r.master_name {
            Some(m) if m.get_ref().trim().is_empty() => {
                self.errs.at(
                    span(m),
                    "session.redis.master_name",
                    "empty: the name the sentinels monitor the master under (`sentinel monitor <name> …`)",
                );
                ok = false;
                String::new()
            }
            Some(m) => m.get_ref().0.clone(),
            None => {
                self.errs.at(
                    span(t),
                    "session.redis.master_name",
                    "missing: the name the sentinels monitor the master under, e.g. master_name = \"mymaster\"",
                );
                ok = false;
                String::new()
            }
        };
        let db = match &r.db {
            Some(d) if *d.get_ref() < 0 => {
                self.errs
                    .at(span(d), "session.redis.db", "must be a number ≥ 0");
                ok = false;
                0
            }
            Some(d) => *d.get_ref(),
            None => 0,
        };
        let password = self.secret(
            r.password.as_ref().map(|x| x.get_ref().clone()),
            r.password.as_ref().map(span),
            r.password_file.as_ref(),
            "session.redis.password",
        );
        let sentinel_password = self.secret(
            r.sentinel_password.as_ref().map(|x| x.get_ref().clone()),
            r.sentinel_password.as_ref().map(span),
            r.sentinel_password_file.as_ref(),
            "session.redis.sentinel_password",
        );
        let tls = r.tls.unwrap_or(false);
        let ca = match &r.ca_file {
            Some(f) if !tls => {
                self.errs.at(
                    span(f),
                    "session.redis.ca_file",
                    "a CA file needs TLS: add tls = true, or remove it",
                );
                ok = false;
                None
            }
            Some(f) => self.ca_file(f, "session.redis.ca_file"),
            None => None,
        };
        ok.then_some((
            RedisSentinel {
                sentinels,
                master_name,
                db,
                password,
                sentinel_password,
                tls,
            },
            ca,
        ))
    }
}

/// `session.cookie_domain` as the cookies carry it: trimmed, one leading dot dropped (browsers
/// ignore it too), lower case. `Err`: why it is not a domain a cookie can name.
pub(super) fn normalize_cookie_domain(raw: &str) -> Result<String, String> {
    let d = raw.trim();
    let d = d.strip_prefix('.').unwrap_or(d).to_ascii_lowercase();
    if d.contains("://") || d.contains('/') {
        return Err("write the domain alone, without scheme or path (e.g. \"example.com\")".into());
    }
    if d.contains(':') {
        return Err("write the domain alone, without a port: cookies ignore ports".into());
    }
    if !d.is_ascii() {
        return Err("write an internationalized domain in its ASCII (xn--) form".into());
    }
    let labels: Vec<&str> = d.split('.').collect();
    let label_ok = |l: &&str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if d.len() > 253 || !labels.iter().all(label_ok) {
        return Err(format!(
            "{d:?} is not a domain name (letters, digits, '-' and dots)"
        ));
    }
    if labels.len() < 2 {
        return Err(format!(
            "{d:?} is a single label: browsers refuse a cookie for a whole top-level domain; name your domain (e.g. \"example.com\")"
        ));
    }
    if labels
        .last()
        .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(format!(
            "{d:?} is an IP address: a cookie domain must be a domain name"
        ));
    }
    Ok(d)
}

/// Whether `host` is `domain` or one of its subdomains (both lower case; `host` as a URL
/// parser gives it).
pub fn in_cookie_domain(host: &str, domain: &str) -> bool {
    host == domain
        || (host.len() > domain.len()
            && host.ends_with(domain)
            && host.as_bytes()[host.len() - domain.len() - 1] == b'.')
}

impl Validator<'_, '_> {
    /// `session.cookie_domain`: a domain ([`normalize_cookie_domain`]); `server.public_url`
    /// (where the callback is) must be https and inside it; and some request must be able to
    /// arrive as https (TLS, an https `public_url`, or a trusted front proxy's
    /// `X-Forwarded-Proto`), since the `__Secure-` cookie it makes needs `Secure`.
    fn cookie_domain(&mut self, d: &Spanned<Str>, server: &Server) -> Option<String> {
        let key = "session.cookie_domain";
        let domain = match normalize_cookie_domain(&d.get_ref().0) {
            Ok(v) => v,
            Err(why) => {
                self.errs.at(span(d), key, why);
                return None;
            }
        };
        if let Some(u) = &server.public_url {
            let host = u.host_str().unwrap_or("");
            if !in_cookie_domain(host, &domain) {
                self.errs.at(
                    span(d),
                    key,
                    format!(
                        "server.public_url's host {host:?} is not {domain:?} nor inside it: the callback there could not set a cookie for {domain:?}; use a public_url on a subdomain of {domain:?}"
                    ),
                );
                return None;
            }
            if u.scheme() != "https" {
                self.errs.at(
                    span(d),
                    key,
                    format!(
                        "cookie_domain needs https, but server.public_url is {:?}: the shared cookie is `__Secure-`, which browsers only take over https; use an https public_url, or remove cookie_domain for a plain-http setup (each host then keeps its own session)",
                        u.as_str()
                    ),
                );
                return None;
            }
        } else if server.tls.is_none() && server.trusted_proxies.is_empty() {
            self.errs.at(
                span(d),
                key,
                "cookie_domain needs https, and this server only serves plain http: add [server.tls], an https server.public_url, or the TLS-terminating front proxy to server.trusted_proxies (it then says X-Forwarded-Proto: https); or remove cookie_domain",
            );
            return None;
        }
        Some(domain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::path::Path;

    fn load(server: &str, domain: &str) -> Result<super::super::Config, String> {
        let src = format!(
            "[server]\nlisten = \"127.0.0.1:8080\"\n{server}\n[session]\nsecret = \"7c1e9a4f0b3d8e2a6f5c1d9b0e4a7f3c\"\ncookie_domain = \"{domain}\"\n\n[[route]]\npath = \"/\"\nupstream = \"http://127.0.0.1:3000\"\nauth = \"none\"\n"
        );
        super::super::load_str(Path::new("/etc/p.toml"), &src, HashMap::new())
            .map_err(|e| e.to_string())
    }

    /// Leading dot dropped, lower-cased; schemes, ports, paths, single labels, IPs and
    /// non-domain characters refused.
    #[test]
    fn cookie_domain_values() {
        for (raw, want) in [
            ("example.com", "example.com"),
            (".Example.COM", "example.com"),
            ("a.b.example.co.uk", "a.b.example.co.uk"),
            ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ] {
            assert_eq!(normalize_cookie_domain(raw).as_deref(), Ok(want), "{raw}");
        }
        for raw in [
            "",
            ".",
            "https://example.com",
            "example.com/",
            "example.com:443",
            "com",
            "localhost",
            "10.0.0.1",
            "-a.example.com",
            "a-.example.com",
            "exa mple.com",
            "ex_ample.com",
            "example..com",
            "example.com.",
            "bücher.example",
            "*.example.com",
        ] {
            assert!(
                normalize_cookie_domain(raw).is_err(),
                "{raw:?} must be refused"
            );
        }
    }

    /// The Sentinel URL grammar: hosts with or without ports (26379), IPv6 in brackets, a
    /// percent-encoded password for the master, the master name, an optional db, TLS scheme.
    #[test]
    fn sentinel_url_grammar() {
        let c = parse_sentinel_url(
            "redis+sentinel://:p%40ss%2Fw@10.0.0.1:26380,sentinel-b,[::1]:26381/mymaster/3",
        )
        .unwrap();
        assert_eq!(
            c.sentinels,
            vec![
                ("10.0.0.1".to_string(), 26380),
                ("sentinel-b".to_string(), 26379),
                ("::1".to_string(), 26381)
            ]
        );
        assert_eq!(c.master_name, "mymaster");
        assert_eq!(c.db, 3);
        assert_eq!(c.password.as_ref().map(|p| p.expose()), Some("p@ss/w"));
        assert!(!c.tls && c.sentinel_password.is_none());
        let c = parse_sentinel_url("rediss+sentinel://h/m/").unwrap();
        assert!(c.tls && c.db == 0 && c.password.is_none());
        assert_eq!(c.sentinels, vec![("h".to_string(), 26379)]);
        for bad in [
            "redis://h/m",
            "redis+sentinel://h",
            "redis+sentinel://h/",
            "redis+sentinel:///m",
            "redis+sentinel://h:0/m",
            "redis+sentinel://h:65536/m",
            "redis+sentinel://[::1/m",
            "redis+sentinel://[zz]:1/m",
            "redis+sentinel://h/m/-1",
            "redis+sentinel://h/m/0/x",
            "redis+sentinel://h/m?x=1",
            "redis+sentinel://u:p@h/m",
            "redis+sentinel://h,/m",
        ] {
            assert!(parse_sentinel_url(bad).is_err(), "{bad:?} must be refused");
        }
        // An error never repeats the password.
        let e = parse_sentinel_url("redis+sentinel://:hunter2@h:x/m").unwrap_err();
        assert!(!e.contains("hunter2"), "{e}");
    }

    /// Errors name file:line:col and the key; public_url must be https and inside the domain;
    /// a plain-http-only server cannot use a cookie domain.
    #[test]
    fn cookie_domain_config_errors() {
        let e = load("trusted_proxies = [\"10.0.0.0/8\"]", "https://example.com").unwrap_err();
        assert!(
            e.contains("/etc/p.toml:6:17")
                && e.contains("session.cookie_domain")
                && e.contains("without scheme"),
            "{e}"
        );
        let e = load("public_url = \"https://auth.other.com\"", "example.com").unwrap_err();
        assert!(
            e.contains("session.cookie_domain")
                && e.contains("\"auth.other.com\" is not \"example.com\""),
            "{e}"
        );
        let e = load("public_url = \"https://evil-example.com\"", "example.com").unwrap_err();
        assert!(e.contains("nor inside it"), "{e}");
        let e = load("public_url = \"http://auth.example.com\"", "example.com").unwrap_err();
        assert!(e.contains("cookie_domain needs https"), "{e}");
        let e = load("", "example.com").unwrap_err();
        assert!(
            e.contains("cookie_domain needs https") && e.contains("only serves plain http"),
            "{e}"
        );
        for (server, domain) in [
            ("public_url = \"https://auth.example.com\"", ".example.com"),
            ("public_url = \"https://example.com:8443\"", "example.com"),
            ("trusted_proxies = [\"10.0.0.0/8\"]", "Example.com"),
        ] {
            let c = load(server, domain).unwrap_or_else(|e| panic!("{server} {domain}: {e}"));
            assert_eq!(
                c.session.unwrap().cookie_domain.as_deref(),
                Some("example.com")
            );
        }
    }
}
