//! Browser sessions: what a session holds ([`SessionData`]) and where it lives.
//!
//! - **cookie** store (default, stateless): the whole session, sealed with AES-256-GCM under a key
//!   derived from `session.secret` ([`crypto`]), split over `name`, `name.1`, `name.2`, … when the
//!   sealed value exceeds [`CHUNK`] bytes. The chunks are concatenated before opening, so a missing,
//!   truncated, reordered or altered chunk fails authentication and yields no session. So does
//!   a cookie or chunk name sent twice ([`session_value`]: a copy may be planted).
//!   A stateless cookie cannot be taken back, so logout and back-channel logout put the sessions
//!   they end on an in-memory revocation list ([`Revocations`]) until the sessions' `lifetime`
//!   has passed: logout by the session's `id` (every version of its cookie — slid or refreshed
//!   copies included — carries it), back-channel logout by provider + `sid`/`sub`. The list is
//!   per process: with several replicas, use the Redis store.
//! - **redis** store ([`redis`]): the cookie holds only a random 256-bit id; Redis holds the sealed
//!   session under `<cookie_name>:s:<sha256(id)>` with a TTL, so a leaked Redis dump carries neither
//!   usable cookies nor readable tokens. Redis unreachable → [`StoreError::Unavailable`] → 503.
//!   Each replica may keep sessions it read for `local_cache` (1 s) ([`local`]); ending or
//!   rewriting a session drops it from every replica's cache through Redis pub/sub ([`pubsub`]).
//!
//! Both stores implement [`store::Store`]; [`Sessions`] is what the rest of the proxy uses
//! (load, save, end, back-channel logout, the refresh lock, logout-token ids), whichever store
//! is configured.
//!
//! A session belongs to the provider that created it: [`SessionData::provider`] and
//! [`SessionData::iss`] (the issuer of its ID token) say which, and the login stage counts a
//! session only on routes of that provider. Back-channel logout indexes are per provider too.
//!
//! Cookies: `__Host-` prefix and `Secure` on HTTPS, `HttpOnly`, `SameSite=Lax`, `Path=/`. With
//! `session.cookie_domain`, on HTTPS: `__Secure-` prefix, `Secure` and `Domain=<cookie_domain>`
//! — every subdomain then receives (and can set) the cookie, so they must all be trusted
//! alike; a planted second copy still opens nothing ([`session_value`]). Request cookie names
//! are trimmed of SP/HTAB only and compared byte for byte ([`trim_ows`]).

pub mod crypto;
pub mod local;
pub mod pubsub;
pub mod redis;
pub mod sentinel;
pub mod store;

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use http::HeaderValue;
use http::header::{COOKIE, HeaderMap};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::config;
use crate::health::Health;
use crypto::Sealer;
use store::{CookieStore, RefreshLock, Store};

/// Longest value of one cookie (browsers allow ~4096 bytes for name + value + attributes).
pub const CHUNK: usize = 3500;
/// Highest chunk index read; a session never needs more (the request header would be too big).
pub const MAX_CHUNKS: usize = 12;

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// One logged-in browser.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SessionData {
    /// Random id (single-flight refresh key; the Redis key is derived from it).
    pub id: String,
    /// Name of the provider (`[providers.NAME]`) that created the session.
    pub provider: String,
    /// That provider's issuer, from the login's verified ID token. Sessions written before
    /// this field existed get it from their stored ID token when opened ([`Sessions::load`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    pub sub: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_username: Option<String>,
    #[serde(default)]
    pub roles: Vec<String>,
    /// The rule `roles` were derived by (`provider::roles_rule` of the provider's settings at
    /// login or the last refresh): a session whose provider now derives roles otherwise no
    /// longer counts. Absent in sessions written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles_rule: Option<String>,
    /// The claims routes need (`require_claims`, `[headers.claims]`), not all of them.
    #[serde(default)]
    pub claims: Map<String, Value>,
    pub access_token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// For `id_token_hint` at logout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    /// The provider's session id (back-channel logout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    pub created_at: i64,
    /// Creation time in milliseconds (back-channel logout compares at this precision, so a
    /// login right after a logout is not caught by it).
    #[serde(default)]
    pub created_ms: i64,
    pub last_seen: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_expires_at: Option<i64>,
    /// When the current access token was obtained.
    pub access_issued_at: i64,
    /// The identity this session proves (derived on first use; not stored).
    #[serde(skip)]
    pub identity: crate::identity::Memo<std::sync::Arc<crate::identity::Identity>>,
}

impl SessionData {
    /// Unix seconds when the session ends at the latest (absolute lifetime or idle timeout).
    pub fn expires_at(&self, cfg: &config::Session) -> i64 {
        let abs = self.created_at + cfg.lifetime.as_secs() as i64;
        let idle = self.last_seen + cfg.idle_timeout.as_secs() as i64;
        abs.min(idle)
    }

    /// Valid at `now` (not past lifetime nor idle timeout).
    pub fn is_live(&self, cfg: &config::Session, now: i64) -> bool {
        now < self.expires_at(cfg)
    }

    /// Whether the access token should be refreshed now: within 60 s of expiry, or within half
    /// its lifetime for short-lived tokens.
    pub fn needs_refresh(&self, now: i64) -> bool {
        match (self.access_expires_at, &self.refresh_token) {
            (Some(exp), Some(_)) => {
                let ttl = (exp - self.access_issued_at).max(0);
                now >= exp - (ttl / 2).min(60)
            }
            _ => false,
        }
    }
}

/// The session store could not be set up from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// `session.redis_url` is not a usable Redis URL.
    #[error("session.redis_url: {0}")]
    RedisUrl(#[from] ::redis::RedisError),
}

/// The session store could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("session store unavailable: {0}")]
    Unavailable(String),
}

/// `b` without the SP and HTAB at either end (RFC 6265's OWS), nothing else: cookie names are
/// compared byte for byte after this. `str::trim` also drops Unicode whitespace — a browser
/// keeps `\u{a0}portcullis` as a name of its own, which must not read as `portcullis`.
pub fn trim_ows(b: &[u8]) -> &[u8] {
    let start = b.iter().position(|c| !matches!(c, b' ' | b'\t'));
    let Some(start) = start else { return &[] };
    let end = b
        .iter()
        .rposition(|c| !matches!(c, b' ' | b'\t'))
        .map_or(start, |e| e + 1);
    &b[start..end]
}

/// The `;`-separated pairs of a `Cookie` header value, trimmed of SP/HTAB ([`trim_ows`]), in
/// order (empty ones too). A SIMD search: with a sealed session in it the header is kilobytes
/// long.
pub fn cookie_pairs(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut start = 0;
    let mut semis = memchr::memchr_iter(b';', value);
    std::iter::from_fn(move || {
        if start > value.len() {
            return None;
        }
        let end = semis.next().unwrap_or(value.len());
        let pair = &value[start..end];
        start = end + 1;
        Some(trim_ows(pair))
    })
}

/// Cookies of a request, in order (`name=value` pairs of every `Cookie` header). Names and
/// values are trimmed of SP/HTAB only ([`trim_ows`]): names compare byte for byte, as browsers
/// keep them.
pub fn request_cookies(headers: &HeaderMap) -> Vec<(&str, &str)> {
    headers
        .get_all(COOKIE)
        .iter()
        .flat_map(|v| cookie_pairs(v.as_bytes()))
        .filter_map(|kv| {
            // Pair by pair: one cookie with non-UTF-8 bytes (legal obs-text) does not hide the
            // others of its header. Values are only ever compared or opened (authenticated).
            let i = memchr::memchr(b'=', kv)?;
            let k = std::str::from_utf8(trim_ows(&kv[..i])).ok()?;
            let v = std::str::from_utf8(trim_ows(&kv[i + 1..])).ok()?;
            Some((k, v.trim_matches('"')))
        })
        .collect()
}

/// The value of cookie `name` when the request carries it exactly once: with two copies, one
/// may have been planted (a sibling host, another path), and which one a browser sends first is
/// the planter's choice — so neither counts.
pub fn cookie<'a>(cookies: &[(&'a str, &'a str)], name: &str) -> Option<&'a str> {
    let mut found = cookies.iter().filter(|(k, _)| *k == name).map(|(_, v)| *v);
    match (found.next(), found.next()) {
        (Some(v), None) => Some(v),
        _ => None,
    }
}

/// The names of every session chunk cookie (`base`, `base.N`) the request carries, also
/// beyond a gap in the numbering: all of them are cleared when the session ends.
pub fn chunk_names(cookies: &[(&str, &str)], base: &str) -> Vec<String> {
    let mut present: Vec<String> = Vec::new();
    for (k, _) in cookies {
        if (*k == base || chunk_index(k, base).is_some()) && !present.iter().any(|p| p == k) {
            present.push(k.to_string());
        }
    }
    present
}

/// `N` of a chunk cookie `base.N` (1..=MAX_CHUNKS).
fn chunk_index(name: &str, base: &str) -> Option<usize> {
    chunk_suffix(name.strip_prefix(base)?)
}

/// `N` of a chunk cookie from what follows the base name (`.N`).
fn chunk_suffix(rest: &str) -> Option<usize> {
    let n = rest.strip_prefix('.')?;
    // The names this proxy writes only: digits, no sign, no leading zero (`.01`, `.+1` are
    // not chunk 1).
    if n.starts_with('0') || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    n.parse::<usize>()
        .ok()
        .filter(|n| (1..=MAX_CHUNKS).contains(n))
}

/// Reassembles `base`, `base.1`, … (stopping at the first missing index); `None` also when a
/// name is sent twice (see [`session_value`]).
pub fn chunked_value<'a>(cookies: &[(&'a str, &'a str)], base: &str) -> Option<Cow<'a, str>> {
    session_value(cookies, base).ok().flatten()
}

/// The session cookie's value: `base`, `base.1`, … reassembled (stopping at the first missing
/// index). A session in one cookie (the usual case) is borrowed from the request, not copied.
///
/// `Err(name)`: the request carries `base` or one chunk name twice. Which copy is the session
/// cannot be told: a sibling host (a plain-HTTP origin without `__Host-`, a parent
/// `cookie_domain`) can plant a copy with a longer `Path`, which browsers send first — taking
/// either copy would let it force its session on the user (login CSRF). So no copy counts.
/// One scan over the cookies, as finding the first copy took.
pub fn session_value<'a>(
    cookies: &[(&'a str, &'a str)],
    base: &str,
) -> Result<Option<Cow<'a, str>>, &'a str> {
    let mut first = None;
    let mut chunks: [Option<&'a str>; MAX_CHUNKS] = [None; MAX_CHUNKS];
    let mut chunked = false;
    for &(k, v) in cookies {
        let Some(rest) = k.strip_prefix(base) else {
            continue;
        };
        let slot = if rest.is_empty() {
            &mut first
        } else if let Some(i) = chunk_suffix(rest) {
            chunked = true;
            &mut chunks[i - 1]
        } else {
            continue;
        };
        if slot.replace(v).is_some() {
            return Err(k);
        }
    }
    let Some(first) = first else {
        return Ok(None);
    };
    let mut value = Cow::Borrowed(first);
    if chunked {
        for chunk in chunks.iter().map_while(|c| *c) {
            value.to_mut().push_str(chunk);
        }
    }
    Ok(Some(value))
}

/// Cookie attributes for one request (the login stage decides them from the connection, the
/// configuration and a trusted front proxy's `X-Forwarded-Proto`).
#[derive(Debug, Clone, Copy)]
pub struct CookieAttrs<'a> {
    /// `Secure`, and a `__Host-` / `__Secure-` name: the browser reached the proxy over https.
    pub secure: bool,
    /// `Domain` (`session.cookie_domain`): only with `secure` — the `__Secure-` name it comes
    /// with needs `Secure`, and a plain-http request keeps host-only cookies.
    pub domain: Option<&'a str>,
}

impl CookieAttrs<'_> {
    /// Plain http, host-only (also for stores that ignore cookies, such as a Redis write).
    pub const PLAIN: CookieAttrs<'static> = CookieAttrs {
        secure: false,
        domain: None,
    };
}

/// A `Set-Cookie` value for one of the proxy's cookies: `Path=/`, `HttpOnly`, `SameSite=Lax`,
/// `Secure` on HTTPS (which the `__Host-` and `__Secure-` names need), `Max-Age` when given
/// (else a browser session cookie). `Domain` only with `session.cookie_domain` on HTTPS; else
/// none: the cookie stays with the host that set it. `None` when the name or value has bytes a
/// header cannot carry.
pub fn set_cookie(
    name: &str,
    value: &str,
    max_age: Option<i64>,
    attrs: CookieAttrs<'_>,
) -> Option<HeaderValue> {
    let mut c = cookie::Cookie::new(name, value);
    c.set_path("/");
    c.set_http_only(true);
    c.set_same_site(cookie::SameSite::Lax);
    if attrs.secure {
        c.set_secure(true);
        if let Some(d) = attrs.domain {
            c.set_domain(d);
        }
    }
    if let Some(age) = max_age {
        c.set_max_age(cookie::time::Duration::seconds(age.max(0)));
    }
    HeaderValue::from_str(&c.to_string()).ok()
}

/// The `Set-Cookie` value that removes cookie `name` (empty, `Max-Age=0`, same attributes).
pub fn clear_cookie(name: &str, attrs: CookieAttrs<'_>) -> Option<HeaderValue> {
    set_cookie(name, "", Some(0), attrs)
}

/// Set-Cookie values writing `value` over `base`, `base.1`, … and clearing any other chunk the
/// request carried.
pub fn write_chunked(
    base: &str,
    value: &str,
    max_age: i64,
    present: &[String],
    attrs: CookieAttrs<'_>,
) -> Vec<HeaderValue> {
    let mut out = Vec::new();
    let mut written = Vec::new();
    // Chunk boundaries at CHUNK bytes; the value is base64url (ASCII), so any byte index is a char boundary.
    let pieces: Vec<&str> = if value.is_empty() {
        vec![""]
    } else {
        value
            .as_bytes()
            .chunks(CHUNK)
            .map(|c| std::str::from_utf8(c).unwrap_or(""))
            .collect()
    };
    for (i, piece) in pieces.iter().enumerate() {
        let name = if i == 0 {
            base.to_string()
        } else {
            format!("{base}.{i}")
        };
        out.extend(set_cookie(&name, piece, Some(max_age), attrs));
        written.push(name);
    }
    for p in present {
        if !written.contains(p) {
            out.extend(clear_cookie(p, attrs));
        }
    }
    out
}

/// Sessions ended while their cookies may live on, for the stateless cookie store (per process):
/// - by logout: the session's `id` — every cookie of that session (the one logged out with, and
///   any earlier or later version: slid, refreshed) is refused;
/// - by back-channel logout: provider + `sid`, or provider + `sub` — a session of that provider
///   created at or before the logout's time (ms) is refused (a login right after it is not).
///
/// Entries are kept until the sessions they can match have passed their `lifetime`.
#[derive(Default)]
pub struct Revocations {
    inner: RwLock<RevokedSets>,
}

#[derive(Default)]
struct RevokedSets {
    /// session id → forget after (unix s)
    sessions: HashMap<String, i64>,
    /// provider → sid → (ended at in ms, forget after in s)
    sids: HashMap<String, HashMap<String, (i64, i64)>>,
    /// provider → sub → (ended at in ms, forget after in s)
    subs: HashMap<String, HashMap<String, (i64, i64)>>,
}

impl RevokedSets {
    fn is_empty(&self) -> bool {
        self.sessions.is_empty() && self.sids.is_empty() && self.subs.is_empty()
    }

    fn forget_expired(&mut self, now: i64) {
        self.sessions.retain(|_, until| *until > now);
        for m in [&mut self.sids, &mut self.subs] {
            m.retain(|_, per| {
                per.retain(|_, (_, until)| *until > now);
                !per.is_empty()
            });
        }
    }
}

/// What a back-channel logout names.
#[derive(Debug, Clone, Copy)]
pub enum Ended<'a> {
    /// One provider session (`sid` claim).
    Sid(&'a str),
    /// Every session of the user (`sub` claim, no `sid`).
    Sub(&'a str),
}

impl Revocations {
    /// Logout: every cookie of session `id` is refused until `keep_until` (unix s).
    pub fn revoke_session(&self, id: &str, keep_until: i64) {
        if let Ok(mut m) = self.inner.write() {
            m.forget_expired(now());
            m.sessions.insert(id.to_string(), keep_until);
        }
    }

    /// Back-channel logout at `provider`: its sessions named by `what` created at or before
    /// `at` (ms) are refused until `keep_until` (unix s).
    pub fn revoke(&self, provider: &str, what: Ended<'_>, at: i64, keep_until: i64) {
        if let Ok(mut m) = self.inner.write() {
            m.forget_expired(now());
            let (map, key) = match what {
                Ended::Sid(sid) => (&mut m.sids, sid),
                Ended::Sub(sub) => (&mut m.subs, sub),
            };
            map.entry(provider.to_string())
                .or_default()
                .insert(key.to_string(), (at, keep_until));
        }
    }

    /// Keeps every entry `secs` longer (a reload lengthened `lifetime`).
    pub fn extend(&self, secs: i64) {
        if secs <= 0 {
            return;
        }
        if let Ok(mut m) = self.inner.write() {
            let m = &mut *m;
            m.sessions.values_mut().for_each(|u| *u += secs);
            for per in m.sids.values_mut().chain(m.subs.values_mut()) {
                per.values_mut().for_each(|(_, u)| *u += secs);
            }
        }
    }

    pub fn is_revoked(&self, s: &SessionData) -> bool {
        let Ok(m) = self.inner.read() else {
            return true;
        };
        if m.is_empty() {
            return false;
        }
        if m.sessions.contains_key(s.id.as_str()) {
            return true;
        }
        let created = if s.created_ms > 0 {
            s.created_ms
        } else {
            s.created_at * 1000 + 999
        };
        // Lookups by &str: no allocation per request, even with a long list.
        let hit = |map: &HashMap<String, HashMap<String, (i64, i64)>>, key: &str| {
            map.get(s.provider.as_str())
                .and_then(|per| per.get(key))
                .is_some_and(|(at, _)| created <= *at)
        };
        s.sid.as_deref().is_some_and(|sid| hit(&m.sids, sid)) || hit(&m.subs, &s.sub)
    }
}

/// The session store (one per proxy process).
pub struct Sessions {
    pub cfg: config::Session,
    /// `__Host-` + the cookie name (HTTPS).
    host_cookie_name: String,
    /// `__Secure-` + the cookie name (HTTPS with `cookie_domain`).
    domain_cookie_name: String,
    /// Seals whole sessions (cookie store) or the Redis values.
    pub sealer: Sealer,
    pub backend: Backend,
    /// Shared with the store a reload replaces this one with ([`Sessions::after`]): a logged-out
    /// cookie that still opens under the new `[session]` must stay refused.
    pub revocations: Arc<Revocations>,
    pub(crate) opened: Opened,
}

/// Sealed values already opened: sealed text → (associated data, session). A sealed value
/// opens to the same bytes every time (AES-GCM under this process's keys), so a hit saves the
/// base64 decoding, the decryption and the JSON parsing of every request of a session; the
/// checks on the data (lifetime, idle timeout, revocation, refresh) still run on every request.
/// Only values that opened are entered, and a hit needs the whole sealed text and the
/// associated data to be equal. A value whose session changed since maps to the changed
/// session ([`Sessions::supersede`]). Bounded: emptied when full.
#[derive(Default)]
pub(crate) struct Opened {
    map: std::sync::Mutex<OpenedMap>,
}

/// sealed text → (associated data, session)
type OpenedMap = HashMap<Box<str>, (Box<str>, Arc<SessionData>), TailHash>;

/// At most this many opened sessions are kept (a few KB each).
const OPENED_MAX: usize = 1024;

impl Opened {
    fn get(&self, aad: &str, sealed: &str) -> Option<Arc<SessionData>> {
        let m = self.map.lock().ok()?;
        m.get(sealed)
            .filter(|(a, _)| &**a == aad)
            .map(|(_, d)| d.clone())
    }

    pub(crate) fn put(&self, aad: &str, sealed: &str, data: Arc<SessionData>) {
        if let Ok(mut m) = self.map.lock() {
            if m.len() >= OPENED_MAX {
                m.clear();
            }
            m.insert(sealed.into(), (aad.into(), data));
        }
    }
}

/// Hashes only the last 16 bytes of a key (and its length): the tail of a sealed value is its
/// AES-GCM tag, so hashing 1–2 KB per lookup buys nothing. Keys are entered only after they
/// opened (authentic), so nobody can fill a bucket with forged colliding values.
#[derive(Default, Clone, Copy)]
pub(crate) struct TailHash;

impl std::hash::BuildHasher for TailHash {
    type Hasher = TailHasher;
    fn build_hasher(&self) -> TailHasher {
        TailHasher(0xcbf2_9ce4_8422_2325)
    }
}

pub(crate) struct TailHasher(u64);

impl std::hash::Hasher for TailHasher {
    fn write(&mut self, bytes: &[u8]) {
        let tail = &bytes[bytes.len().saturating_sub(16)..];
        for b in tail
            .iter()
            .copied()
            .chain((bytes.len() as u64).to_le_bytes())
        {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// The configured store ([`store::Store`] does the work; only this module looks inside).
pub enum Backend {
    Cookie,
    Redis(std::sync::Arc<redis::RedisStore>),
}

/// Runs `$call` on the configured store as `$st` (`&impl Store`).
macro_rules! with_store {
    ($backend:expr, $st:ident => $call:expr) => {
        match $backend {
            Backend::Cookie => {
                let $st = &CookieStore;
                $call
            }
            Backend::Redis(r) => {
                let $st = r;
                $call
            }
        }
    };
}

/// A session found in a request.
pub struct Loaded {
    /// Shared with the cache of opened sessions; `Arc::make_mut` before changing it.
    pub data: Arc<SessionData>,
    /// Redis: the id from the cookie.
    pub handle: Option<String>,
}

impl Sessions {
    pub fn new(cfg: &config::Session) -> Result<Self, SetupError> {
        let secrets = std::iter::once(cfg.secret.expose())
            .chain(cfg.previous_secrets.iter().map(|s| s.expose()));
        let sealer = Sealer::new(secrets, "session");
        let backend = match &cfg.store {
            config::SessionStore::Cookie => Backend::Cookie,
            config::SessionStore::Redis { server, ca } => Backend::Redis(std::sync::Arc::new(
                redis::RedisStore::new(server, ca.as_ref(), &cfg.cookie_name)?
                    .with_local_cache(cfg.local_cache),
            )),
        };
        Ok(Sessions {
            host_cookie_name: format!("__Host-{}", cfg.cookie_name),
            domain_cookie_name: format!("__Secure-{}", cfg.cookie_name),
            cfg: cfg.clone(),
            sealer,
            backend,
            revocations: Arc::default(),
            opened: Opened::default(),
        })
    }

    /// The store for a reloaded `[session]` that differs from `old`'s: new, except the
    /// revocation list, which carries over — old cookies may still open (a rotated secret
    /// stays in `previous_secrets`; most other keys do not touch sealing), and a cookie logged
    /// out before the reload must not work after it. A longer `lifetime` keeps the entries
    /// longer by as much, since the sessions they match now live that much longer.
    pub fn after(cfg: &config::Session, old: &Sessions) -> Result<Self, SetupError> {
        let mut s = Self::new(cfg)?;
        let longer = cfg.lifetime.saturating_sub(old.cfg.lifetime).as_secs() as i64;
        old.revocations.extend(longer);
        s.revocations = old.revocations.clone();
        Ok(s)
    }

    /// The session cookie's name: `__Host-` on HTTPS, `__Secure-` on HTTPS with a `Domain`.
    pub fn cookie_name(&self, attrs: CookieAttrs<'_>) -> &str {
        if attrs.secure && attrs.domain.is_some() {
            &self.domain_cookie_name
        } else if attrs.secure {
            &self.host_cookie_name
        } else {
            &self.cfg.cookie_name
        }
    }

    /// The session cookie(s) the request carries (names), for clearing.
    pub fn present_chunks(&self, headers: &HeaderMap, attrs: CookieAttrs<'_>) -> Vec<String> {
        chunk_names(&request_cookies(headers), self.cookie_name(attrs))
    }

    /// Finds the request's session. `Ok(None)`: no (valid) session. Does not check expiry.
    pub async fn load(
        &self,
        headers: &HeaderMap,
        attrs: CookieAttrs<'_>,
    ) -> Result<Option<Loaded>, StoreError> {
        let name = self.cookie_name(attrs);
        let cookies = request_cookies(headers);
        let value = match session_value(&cookies, name) {
            Ok(Some(value)) => value,
            Ok(None) => return Ok(None),
            Err(twice) => {
                tracing::info!(
                    cookie = twice,
                    "the request carries the session cookie `{twice}` more than once (a copy may \
                     be planted by a sibling host); no session"
                );
                return Ok(None);
            }
        };
        with_store!(&self.backend, st => st.fetch(self, name, value).await)
    }

    /// Opens and parses a sealed session (or takes it from the cache of opened ones).
    pub fn open(&self, aad: &str, sealed: &str) -> Option<Arc<SessionData>> {
        if let Some(d) = self.opened.get(aad, sealed) {
            return Some(d);
        }
        let mut data = self
            .sealer
            .open(aad, sealed)
            .and_then(|pt| serde_json::from_slice::<SessionData>(&pt).ok())?;
        if data.iss.is_none() {
            // Written before sessions recorded their issuer: the stored ID token (verified at
            // login, and sealed with the session since) names it.
            data.iss = data.id_token.as_deref().and_then(id_token_issuer);
        }
        let data = Arc::new(data);
        self.opened.put(aad, sealed, data.clone());
        Some(data)
    }

    /// After a session changed (idle timeout slid, tokens refreshed) and was saved: requests
    /// that still carry the previous cookie get the changed session from the cache, instead of
    /// changing it again (a seal and a Set-Cookie on every request, or a second refresh). Such
    /// requests are common: a browser's requests already in flight, and clients that keep the
    /// cookie they were given. Cookie store only: with Redis the cookie (the id) stays the same
    /// and the next load reads the changed session.
    pub fn supersede(
        &self,
        headers: &HeaderMap,
        attrs: CookieAttrs<'_>,
        changed: &Arc<SessionData>,
    ) {
        with_store!(&self.backend, st => st.supersede(self, headers, attrs, changed))
    }

    /// Stores a session (new or updated) and returns the Set-Cookie values.
    /// `handle`: the Redis id of an existing session (None: a new one is made).
    pub async fn save(
        &self,
        data: &SessionData,
        handle: Option<&str>,
        present: &[String],
        attrs: CookieAttrs<'_>,
    ) -> Result<Vec<HeaderValue>, StoreError> {
        let name = self.cookie_name(attrs);
        let now = now();
        let remaining = (data.created_at + self.cfg.lifetime.as_secs() as i64 - now).max(1);
        let json = serde_json::to_vec(data).unwrap_or_default();
        with_store!(&self.backend, st => {
            st.write(self, name, data, &json, handle, remaining, present, attrs)
                .await
        })
    }

    /// Ends a session for good (logout) and returns Set-Cookie values clearing every chunk:
    /// Redis store → the entry is deleted (for every replica); cookie store → the session's id
    /// goes on this process's revocation list until its lifetime has passed, so no copy of its
    /// cookie — nor an earlier or later version of it (slid, refreshed) — opens it again here.
    pub async fn end(
        &self,
        loaded: &Loaded,
        present: &[String],
        attrs: CookieAttrs<'_>,
    ) -> Result<Vec<HeaderValue>, StoreError> {
        with_store!(&self.backend, st => st.end(self, loaded).await)?;
        Ok(clear_all(present, attrs))
    }

    /// Back-channel logout at `provider`: ends that provider's sessions named by `what` (never
    /// another provider's, whatever their `sid`/`sub`). Redis store → deleted on every replica
    /// (returns how many); cookie store → on this process's revocation list (returns 0).
    pub async fn end_indexed(&self, provider: &str, what: Ended<'_>) -> Result<usize, StoreError> {
        with_store!(&self.backend, st => st.end_indexed(self, provider, what).await)
    }

    /// Deletes the session (Redis entry) and returns Set-Cookie values clearing every chunk.
    pub async fn delete(
        &self,
        handle: Option<&str>,
        present: &[String],
        attrs: CookieAttrs<'_>,
    ) -> Result<Vec<HeaderValue>, StoreError> {
        with_store!(&self.backend, st => st.remove(handle).await)?;
        Ok(clear_all(present, attrs))
    }

    /// Starts the store's background work (Redis: readiness in `health`).
    pub fn start_background(&self, health: Arc<Health>) {
        with_store!(&self.backend, st => st.start(health))
    }

    /// Takes the right to refresh the tokens of the session `handle` names, for every replica
    /// sharing the store ([`RefreshLock`]).
    pub async fn lock_refresh(&self, handle: Option<&str>) -> Result<RefreshLock, StoreError> {
        with_store!(&self.backend, st => st.lock_refresh(handle).await)
    }

    /// Releases a refresh lock; false when it had expired and was not ours any more (it is
    /// then left to its new owner).
    pub async fn unlock_refresh(&self, lock: &redis::LockToken) -> bool {
        with_store!(&self.backend, st => st.unlock_refresh(lock).await)
    }

    /// The session `handle` names as the store holds it now (`Ok(None)`: it has ended, or no
    /// longer opens); for a replica waiting on another's refresh.
    pub async fn reload(&self, handle: &str) -> Result<Option<Arc<SessionData>>, StoreError> {
        with_store!(&self.backend, st => st.reload(self, handle).await)
    }

    /// Whether a back-channel logout token id (`provider:jti`) was seen by any replica.
    pub async fn jti_seen(&self, key: &str) -> Result<bool, StoreError> {
        with_store!(&self.backend, st => st.jti_seen(key).await)
    }

    /// Remembers a logout token id for every replica; false when one remembered it first.
    pub async fn remember_jti(&self, key: &str, ttl: Duration) -> Result<bool, StoreError> {
        with_store!(&self.backend, st => st.remember_jti(key, ttl).await)
    }
}

/// Set-Cookie values clearing every cookie in `present`.
fn clear_all(present: &[String], attrs: CookieAttrs<'_>) -> Vec<HeaderValue> {
    present
        .iter()
        .filter_map(|p| clear_cookie(p, attrs))
        .collect()
}

/// The `iss` claim of a JWT's payload, unverified: only for an ID token that was verified when
/// it was stored in a sealed session.
fn id_token_issuer(jwt: &str) -> Option<String> {
    use base64::Engine;
    let payload = jwt.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let v: Value = serde_json::from_slice(&bytes).ok()?;
    v.get("iss")?.as_str().map(str::to_string)
}

#[cfg(test)]
mod tests;
