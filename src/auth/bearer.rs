//! `auth = "bearer"`: the access token in the `Authorization` header, verified against the
//! provider's JWKS (JWT) or by introspection (opaque), becomes an [`Identity`].
//!
//! Where a token is read: only from `Authorization: Bearer <token>` (scheme case-insensitive).
//! A query-string `access_token` or a form body is never read (RFC 6750 §2.3 tokens end up in
//! logs and Referer headers). Two `Authorization` headers are a malformed request: 400
//! `invalid_request` (RFC 6750 §3.1), whichever of them carries a token — a proxy and an upstream
//! disagreeing about which one counts is how header-smuggling bypasses start.
//!
//! Answers (RFC 6750 §3): no token → 401 `WWW-Authenticate: Bearer realm="portcullis"`; an
//! invalid token → 401 `Bearer error="invalid_token", error_description="…"` with the same text in
//! the JSON body; the provider needed but down → 503 `Bearer error="temporarily_unavailable"`,
//! never a 200; roles/claims not met → 403 `Bearer error="insufficient_scope"`.
//!
//! Access tokens only: an ID token, a refresh token or a logout token is refused with
//! `invalid_token` naming its kind — JWTs by [`access_token_only`], introspection answers by
//! [`crate::provider::introspection::check`] — before anything is cached.
//!
//! Cache: validated JWTs are kept (per provider) until their `exp` and at most [`MAX_CACHE`],
//! and so are the identities of opaque tokens, no longer than their introspection answer is
//! (min(`introspection.cache`, exp)); `[providers.X] token_cache = false` turns it off. Role
//! and claim checks run on every request, cached or not. An entry is found by a 64-bit hash
//! under a key drawn at random when the process starts — of a JWT's length and last 32 bytes
//! (its signature), of any other token's bytes — and counts as a hit only when the cached
//! identity's token equals the presented one, byte for byte (compared in constant time): two
//! tokens that share a hash just miss, they never stand for each other. The expiry is compared
//! with the clock on every hit. A hit is the whole check: the header's text check and the
//! token's shape check ran when the token was let in, and nothing is allocated.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::header;
use http::request::Parts;
use serde_json::{Map, Value};
use std::hash::BuildHasher;
use subtle::ConstantTimeEq;

use crate::config::{Config, Route};
use crate::error::{AuthError, Scheme};
use crate::identity::{Authenticated, Identity, Via};
use crate::provider::jwks::now;
use crate::provider::{ProviderRuntime, Providers, TokenError};

/// Longest time a validated JWT stays cached (its `exp` cuts it shorter).
pub const MAX_CACHE: Duration = Duration::from_secs(300);
/// Validated tokens kept per provider (each entry holds the identity and the token, ~2 KB).
pub const CACHE_ENTRIES: usize = 20_000;
/// Longest token accepted; longer ones are refused before any parsing.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

#[derive(Clone)]
struct Cached {
    identity: Arc<Identity>,
    /// `exp`, or [`MAX_CACHE`] after caching if that comes first: whole Unix seconds, as a
    /// `SystemTime` so that each hit compares it with the clock as read (`until > now` in
    /// whole seconds is `until > now` exactly), without converting the clock to seconds.
    until: SystemTime,
}

impl Cached {
    fn new(identity: Arc<Identity>, until: i64) -> Self {
        Cached {
            identity,
            until: UNIX_EPOCH + Duration::from_secs(u64::try_from(until).unwrap_or(0)),
        }
    }
}

/// Validated tokens of one provider: token hash → identity.
type TokenCache = quick_cache::sync::Cache<u64, Cached>;

/// Provider name → its cache. Looked up on every bearer request: hashed with the token
/// hasher's (foldhash), not std's SipHash (~150 instructions a lookup more).
type Caches = HashMap<String, Arc<TokenCache>, quick_cache::DefaultHashBuilder>;

/// Per-provider caches of validated JWTs.
pub struct Bearer {
    /// Shared with the next config's `Bearer` for providers a reload kept ([`Bearer::carry_over`]).
    caches: Caches,
    /// Keys the token hashes (random per process).
    hasher: quick_cache::DefaultHashBuilder,
}

impl Bearer {
    pub fn new(cfg: &Config) -> Self {
        let caches = cfg
            .providers
            .iter()
            .filter(|(_, p)| p.token_cache)
            .map(|(n, _)| (n.clone(), Arc::new(TokenCache::new(CACHE_ENTRIES))))
            .collect();
        Bearer {
            caches,
            hasher: Default::default(),
        }
    }

    /// The caches for a reloaded `cfg`: a provider the reload kept (`kept`: its runtime is the
    /// same, so are its checks) keeps its validated tokens; the others start empty.
    pub fn carry_over(&self, cfg: &Config, kept: impl Fn(&str) -> bool) -> Self {
        let caches = cfg
            .providers
            .iter()
            .filter(|(_, p)| p.token_cache)
            .map(|(n, _)| {
                let cache = match self.caches.get(n) {
                    Some(c) if kept(n) => c.clone(),
                    _ => Arc::new(TokenCache::new(CACHE_ENTRIES)),
                };
                (n.clone(), cache)
            })
            .collect();
        Bearer {
            caches,
            hasher: self.hasher.clone(),
        }
    }

    /// Drops expired entries once a minute (lookups ignore them anyway; this frees the memory).
    pub fn start_sweeper(self: &Arc<Self>) {
        if self.caches.is_empty() {
            return;
        }
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SWEEP_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(bearer) = weak.upgrade() else { return };
                let t = SystemTime::now();
                for c in bearer.caches.values() {
                    c.retain(|_, v| v.until > t);
                }
            }
        });
    }
}

/// How often expired cache entries are dropped.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// What reading the `Authorization` header found.
pub enum Presented<'a> {
    None,
    /// As sent (not checked yet: a cache hit needs no character check, a miss gets
    /// `token_shape`'s).
    Token(&'a [u8]),
    /// Several `Authorization` headers, or `Bearer` without a token.
    BadRequest(&'static str),
}

/// Why a header with a byte ≥ 0x80 is refused.
const NOT_TEXT: &str = "the Authorization header is not valid text";

/// Reads the bearer token from the `Authorization` header (and nowhere else).
pub fn presented(parts: &Parts) -> Presented<'_> {
    match read(parts) {
        Read::Token { header, .. } if !is_text(header) => Presented::BadRequest(NOT_TEXT),
        Read::Token { token, .. } => Presented::Token(token),
        Read::None => Presented::None,
        Read::BadRequest(why) => Presented::BadRequest(why),
    }
}

/// [`presented`], but a token's header not checked for bytes ≥ 0x80 yet: a token the cache
/// holds is text (`token_shape` let it in), and then so is the whole header — what surrounds
/// the token is the ASCII scheme `Bearer` and ASCII whitespace. Every other answer is
/// [`presented`]'s.
enum Read<'a> {
    None,
    /// `header`: the whole value, for [`is_text`] before anything but a cache hit.
    Token {
        token: &'a [u8],
        header: &'a [u8],
    },
    BadRequest(&'static str),
}

fn read(parts: &Parts) -> Read<'_> {
    let mut all = parts.headers.get_all(header::AUTHORIZATION).iter();
    let Some(first) = all.next() else {
        return Read::None;
    };
    if all.next().is_some() {
        return Read::BadRequest("the request carries more than one Authorization header");
    }
    // Which characters a token may use is `token_shape`'s business (on a cache miss); text the
    // header must be, which is checked first for every answer but a token.
    let header = first.as_bytes();
    let v = header.trim_ascii();
    let (scheme, rest) = match v.iter().position(|b| *b == b' ') {
        Some(i) => (&v[..i], &v[i + 1..]),
        None => (v, &b""[..]),
    };
    let t = rest.trim_ascii();
    if scheme.eq_ignore_ascii_case(b"bearer") && !t.is_empty() {
        return Read::Token { token: t, header };
    }
    if !is_text(header) {
        return Read::BadRequest(NOT_TEXT);
    }
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return Read::None; // another scheme (Basic …) is not a bearer token
    }
    Read::BadRequest("the Authorization header has no token")
}

/// No byte ≥ 0x80. An OR over the bytes vectorizes (16 bytes a step); `is_ascii` goes a word
/// at a time, ~500 instructions on an 800-byte JWT.
fn is_text(v: &[u8]) -> bool {
    v.iter().fold(0u8, |acc, b| acc | b) < 0x80
}

/// Whether any `Authorization` header is present (decides bearer vs login on `login_or_bearer`).
pub fn has_authorization(parts: &Parts) -> bool {
    parts.headers.contains_key(header::AUTHORIZATION)
}

/// RFC 6750 b64token characters, and a JWT shape check (two dots): the token as text, and
/// whether it has a JWT's shape.
pub fn token_shape(t: &[u8]) -> Result<(&str, bool), TokenError> {
    if t.len() > MAX_TOKEN_BYTES {
        return Err(TokenError::Other("the token is too large".into()));
    }
    // One pass over a token that may be several KB: charset check and dot count together.
    const fn table() -> [u8; 256] {
        // 0 = refused, 1 = b64token character, 2 = '.'
        let mut t = [0u8; 256];
        let mut i = 0;
        while i < 256 {
            let b = i as u8;
            t[i] = if b == b'.' {
                2
            } else if b.is_ascii_alphanumeric()
                || matches!(b, b'-' | b'_' | b'~' | b'+' | b'/' | b'=')
            {
                1
            } else {
                0
            };
            i += 1;
        }
        t
    }
    static CLASS: [u8; 256] = table();
    let mut dots = 0usize;
    let mut bad = false;
    for &b in t {
        let c = CLASS[b as usize];
        bad |= c == 0;
        dots += (c == 2) as usize;
    }
    if bad {
        return Err(TokenError::Malformed);
    }
    // All ASCII by now.
    let text = std::str::from_utf8(t).map_err(|_| TokenError::Malformed)?;
    Ok((text, dots == 2))
}

/// Builds the identity from verified claims.
pub fn identity_from_claims(
    p: &ProviderRuntime,
    claims: Map<String, Value>,
    token: &str,
) -> Result<Identity, TokenError> {
    let s = |k: &str| claims.get(k).and_then(Value::as_str).map(str::to_string);
    let sub = s("sub")
        .filter(|x| !x.is_empty())
        .ok_or(TokenError::MissingClaim("sub"))?;
    Ok(Identity {
        sub,
        email: s("email"),
        name: s("name"),
        preferred_username: s("preferred_username"),
        roles: p.roles(&claims),
        org_roles: p.org_roles(&claims),
        expires_at: claims.get("exp").and_then(Value::as_i64),
        access_token: Some(token.to_string()),
        provider: Arc::from(p.name()),
        via: Via::Bearer,
        claims,
        header_values: Default::default(),
    })
}

/// How many of a token's last bytes key a JWT's cache entry (with its length).
const TAIL: usize = 32;

impl Bearer {
    /// The identity of `token` when `cache` holds it (the same bytes: see
    /// [`same_token`]) and it has not expired. It holds only tokens that passed every check
    /// of [`verify_uncached`], so a hit needs no shape or character check.
    ///
    /// Where an entry is: a JWT (the shape [`tail_keyed`] tells, verified) under a hash of
    /// its length and last [`TAIL`] bytes — its signature, which differs between any two
    /// tokens the provider signed — rather than of all its ~1 KB; any other token under a
    /// hash of all its bytes. Keys are only where to look: two tokens that share one just
    /// miss (the bytes are compared), they never stand for each other.
    fn hit(&self, cache: &TokenCache, token: &[u8]) -> Option<Arc<Identity>> {
        if token.len() > MAX_TOKEN_BYTES {
            return None;
        }
        if tail_keyed(token)
            && let Some(id) = hit_at(cache, self.tail_key(token), token)
        {
            return Some(id);
        }
        hit_at(cache, self.full_key(token), token)
    }

    /// The key of a token [`tail_keyed`] says may be a JWT.
    fn tail_key(&self, token: &[u8]) -> u64 {
        let tail = &token[token.len().saturating_sub(TAIL)..];
        self.hasher.hash_one((token.len(), tail))
    }

    /// The key of any other token: all its bytes.
    fn full_key(&self, token: &[u8]) -> u64 {
        self.hasher.hash_one(token)
    }

    /// Where a verified token goes in the cache (`jwt`: it was verified as a JWT).
    fn key(&self, token: &[u8], jwt: bool) -> u64 {
        if jwt && tail_keyed(token) {
            self.tail_key(token)
        } else {
            self.full_key(token)
        }
    }
}

/// Whether a JWT with these bytes is cached under its tail: longer than [`TAIL`] and
/// starting as every JWT's JSON header does (`{"` in base64url), so that opaque tokens — whose
/// last bytes may be all alike — are looked up under their full hash only.
fn tail_keyed(token: &[u8]) -> bool {
    token.len() > TAIL && token.starts_with(b"eyJ")
}

/// The identity cached under `key` when it is `token`'s and still valid; an expired entry of
/// `token` is dropped.
fn hit_at(cache: &TokenCache, key: u64, token: &[u8]) -> Option<Arc<Identity>> {
    let hit = cache.get(&key)?;
    let same = (hit.identity.access_token.as_deref()).is_some_and(|t| same_token(t, token));
    if same && hit.until > SystemTime::now() {
        return Some(hit.identity);
    }
    if same {
        cache.remove(&key);
    }
    None
}

/// Verifies a token the cache does not hold with provider `p` (JWT or introspection): every
/// check, then the cache.
async fn verify_uncached(
    bearer: &Bearer,
    p: &ProviderRuntime,
    token: &[u8],
    cache: Option<&TokenCache>,
) -> Result<Arc<Identity>, TokenError> {
    let (token, jwt) = token_shape(token)?;
    // How long the identity may be reused: a JWT until its `exp` (at most MAX_CACHE); an
    // introspection answer as long as the introspection cache keeps it (min(`cache`, exp)).
    let (id, until) = if jwt {
        let (header, claims) = p.verify_jwt_with_header(token, &p.config.audiences).await?;
        // Before the cache below: a token of another kind is never remembered as valid.
        access_token_only(
            header.typ.as_deref(),
            &claims,
            p.config.client_id.as_deref(),
        )?;
        let id = identity_from_claims(p, claims, token)?;
        let until = id.expires_at;
        (id, until)
    } else {
        let answer = p.introspect(token).await?;
        let id = identity_from_claims(p, (*answer.claims).clone(), token)?;
        let until = id.expires_at.map_or(answer.until, |e| e.min(answer.until));
        (id, Some(until))
    };
    let id = Arc::new(id);
    if let (Some(c), Some(until)) = (cache, until) {
        let t = now();
        if until > t {
            c.insert(
                bearer.key(token.as_bytes(), jwt),
                Cached::new(id.clone(), until.min(t + MAX_CACHE.as_secs() as i64)),
            );
        }
    }
    Ok(id)
}

/// Whether two tokens are equal, in time that depends on their length only. Eight bytes per
/// step, no early exit (`subtle`'s byte-wise compare costs ~3 instructions a byte on 1 KB).
fn same_token(a: &str, b: &[u8]) -> bool {
    let a = a.as_bytes();
    if a.len() != b.len() {
        return false;
    }
    let word = |c: &[u8]| u64::from_ne_bytes(c.try_into().unwrap_or([0; 8]));
    let (wa, wb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail =
        (wa.remainder().iter().zip(wb.remainder())).fold(0u64, |d, (x, y)| d | u64::from(x ^ y));
    let diff = wa.zip(wb).fold(tail, |d, (x, y)| d | (word(x) ^ word(y)));
    bool::from(diff.ct_eq(&0))
}

/// The OIDC Back-Channel Logout event (a logout token's `events` member).
const LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// Refuses a verified JWT that is not an access token. An ID token (signed by the provider,
/// `aud` = our client_id, which the default `audiences` accepts) ends up in browser history
/// and provider logs through logout's `id_token_hint`; a refresh or logout token proves a
/// grant or a logout, not a caller. In this order:
/// 1. the back-channel logout event, or a header `typ` of `logout+jwt` → logout token;
/// 2. a header `typ` of `at+jwt` (RFC 9068) → access token, whatever its claims say;
/// 3. a `typ` claim (Keycloak) of `ID`, `Refresh`/`Offline`, `Logout` → that kind;
/// 4. `at_hash` or `c_hash` → ID token (only ID tokens carry them);
/// 5. `nonce` while `aud` includes our own client_id → ID token. Keycloak before 25 put
///    `nonce` in access tokens too; their `aud` is the API, so they still pass.
pub fn access_token_only(
    header_typ: Option<&str>,
    claims: &Map<String, Value>,
    client_id: Option<&str>,
) -> Result<(), TokenError> {
    const LOGOUT: &str = "a back-channel logout token";
    const ID: &str = "an ID token";
    const REFRESH: &str = "a refresh token";
    let not = |kind, why| Err(TokenError::NotAccessToken(kind, why));
    if claims
        .get("events")
        .and_then(Value::as_object)
        .is_some_and(|e| e.contains_key(LOGOUT_EVENT))
    {
        return not(LOGOUT, "it carries the back-channel logout event");
    }
    // RFC 8725 §3.11 / RFC 7515 §4.1.9: a media type, `application/` optional, any case.
    let typ = header_typ.map(|t| {
        t.get(..12)
            .filter(|p| p.eq_ignore_ascii_case("application/"))
            .map_or(t, |_| &t[12..])
    });
    if typ.is_some_and(|t| t.eq_ignore_ascii_case("logout+jwt")) {
        return not(LOGOUT, "its header `typ` is `logout+jwt`");
    }
    if typ.is_some_and(|t| t.eq_ignore_ascii_case("at+jwt")) {
        return Ok(());
    }
    if let Some(Value::String(t)) = claims.get("typ") {
        let is = |k: &str| t.eq_ignore_ascii_case(k);
        if is("ID") {
            return not(ID, "its `typ` claim is `ID`");
        }
        if is("Refresh") {
            return not(REFRESH, "its `typ` claim is `Refresh`");
        }
        if is("Offline") {
            return not(REFRESH, "its `typ` claim is `Offline`");
        }
        if is("Logout") {
            return not(LOGOUT, "its `typ` claim is `Logout`");
        }
    }
    if claims.contains_key("at_hash") {
        return not(ID, "it carries `at_hash`");
    }
    if claims.contains_key("c_hash") {
        return not(ID, "it carries `c_hash`");
    }
    if claims.contains_key("nonce")
        && let Some(cid) = client_id.filter(|c| !c.is_empty())
    {
        let ours = |v: &Value| v.as_str() == Some(cid);
        let for_us = match claims.get("aud") {
            Some(Value::Array(a)) => a.iter().any(ours),
            Some(v) => ours(v),
            None => false,
        };
        if for_us {
            return not(
                ID,
                "it carries `nonce` and its `aud` is this proxy's client_id",
            );
        }
    }
    Ok(())
}

/// The authentication stage for a bearer route (or the bearer half of `login_or_bearer`).
pub async fn authenticate(
    bearer: &Bearer,
    providers: &Providers,
    route: &Route,
    parts: &Parts,
) -> Result<Authenticated, AuthError> {
    let (token, header) = match read(parts) {
        Read::Token { token, header } => (token, header),
        Read::None => {
            return Err(AuthError::NoCredentials {
                scheme: Scheme::Bearer,
                clear_cookies: Vec::new(),
            });
        }
        Read::BadRequest(why) => return Err(bad_request(why)),
    };
    // A cached token first: the cache of provider `n` exists only when the config that
    // built the providers has `n` (`Bearer::new`, `carry_over`), and it holds only tokens
    // that provider verified; the header is text (see `Read`).
    let name = route.provider.as_deref();
    let cache = name.and_then(|n| bearer.caches.get(n)).map(|c| &**c);
    if let Some(identity) = cache.and_then(|c| bearer.hit(c, token)) {
        return Ok(Authenticated {
            identity,
            set_cookie: Vec::new(),
        });
    }
    // Anything else gets every check, in the order `presented` and `verify_uncached` make
    // them.
    if !is_text(header) {
        return Err(bad_request(NOT_TEXT));
    }
    let Some(p) = name.and_then(|n| providers.get(n)) else {
        return Err(AuthError::ProviderUnavailable {
            scheme: Scheme::Bearer,
            detail: format!("route {:?} names no provider", route.name),
        });
    };
    // Boxed: the checks of a token not seen before (JWKS, introspection) would otherwise
    // make the future of every request, cache hit or not, kilobytes larger.
    let verified = Box::pin(verify_uncached(bearer, p, token, cache)).await;
    match verified {
        Ok(identity) => Ok(Authenticated {
            identity,
            set_cookie: Vec::new(),
        }),
        Err(e) => Err(token_error(e)),
    }
}

fn bad_request(why: &str) -> AuthError {
    AuthError::BadRequest {
        scheme: Scheme::Bearer,
        reason: why.to_string(),
    }
}

/// The refusal of a token that was not accepted.
pub fn token_error(e: TokenError) -> AuthError {
    match e {
        TokenError::Unavailable(pe) => AuthError::ProviderUnavailable {
            scheme: Scheme::Bearer,
            detail: pe.to_string(),
        },
        e => AuthError::InvalidToken {
            reason: e.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(auth: &[&str]) -> Parts {
        let mut b = http::Request::builder().uri("/x?access_token=abc");
        for a in auth {
            b = b.header("authorization", *a);
        }
        b.body(()).unwrap().into_parts().0
    }

    /// A byte ≥ 0x80 anywhere in the header (obs-text, which hyper lets through) is a 400, at
    /// the start, in the middle or in the last, unaligned bytes of a long token.
    #[test]
    fn a_header_that_is_not_ascii_is_a_bad_request() {
        let long = "a".repeat(819);
        for bad in [
            format!("Bearer \u{e9}{long}"),
            format!("Bearer {long}\u{e9}{long}"),
            format!("Bearer {long}\u{e9}"),
            format!("B\u{e9}arer {long}"),
        ] {
            let mut p = parts(&[]);
            let v = http::HeaderValue::from_bytes(bad.as_bytes()).unwrap();
            p.headers.insert(header::AUTHORIZATION, v);
            assert!(
                matches!(presented(&p), Presented::BadRequest(m) if m.contains("not valid text")),
                "{bad:?}"
            );
        }
        assert!(matches!(
            presented(&parts(&[&format!("Bearer {long}")])),
            Presented::Token(t) if t.len() == 819
        ));
    }

    #[test]
    fn token_only_from_the_authorization_header() {
        assert!(matches!(presented(&parts(&[])), Presented::None));
        assert!(matches!(
            presented(&parts(&["bEaReR abc.def"])),
            Presented::Token(b"abc.def")
        ));
        assert!(matches!(
            presented(&parts(&["Basic YTpi"])),
            Presented::None
        ));
        assert!(matches!(
            presented(&parts(&["Bearer t\u{e9}st"])),
            Presented::BadRequest(_)
        ));
        assert!(matches!(
            presented(&parts(&["  Bearer   abc.def  "])),
            Presented::Token(b"abc.def")
        ));
        assert!(matches!(
            presented(&parts(&["Bearer "])),
            Presented::BadRequest(_)
        ));
        assert!(matches!(
            presented(&parts(&["Bearer a", "Bearer b"])),
            Presented::BadRequest(_)
        ));
    }

    #[test]
    fn shapes() {
        assert!(token_shape(b"a.b.c").unwrap().1);
        assert!(!token_shape(b"opaque-Token_123").unwrap().1);
        assert!(matches!(token_shape(b"a b"), Err(TokenError::Malformed)));
        assert!(matches!(
            token_shape("t\u{e9}".as_bytes()),
            Err(TokenError::Malformed)
        ));
        assert!(token_shape("a".repeat(MAX_TOKEN_BYTES + 1).as_bytes()).is_err());
    }

    /// The cache counts a hit only for the very token it validated: every length, a difference
    /// in any byte (also in the tail that does not fill 8 bytes), a prefix.
    #[test]
    fn cache_hits_need_the_same_token() {
        let t = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl-_x";
        assert!(same_token(t, t.as_bytes()));
        for i in 0..t.len() {
            let mut other = t.as_bytes().to_vec();
            other[i] ^= 1;
            assert!(!same_token(t, &other), "byte {i} differs");
        }
        assert!(!same_token(t, &t.as_bytes()[..t.len() - 1]));
        assert!(!same_token(&t[..8], t.as_bytes()));
        assert!(same_token("", b""));
    }

    #[test]
    fn descriptions_are_quotable() {
        assert_eq!(crate::error::quotable("a \"b\" \\c\n"), "a b c");
    }

    /// Attack: a back-channel logout token (signed by the provider for our client_id) replayed
    /// as a bearer token.
    #[test]
    fn logout_tokens_are_not_access_tokens() {
        let c = |v: serde_json::Value| v.as_object().cloned().unwrap_or_default();
        let check = |typ: Option<&str>, v| access_token_only(typ, &c(v), Some("web"));
        let event = serde_json::json!({"events": {LOGOUT_EVENT: {}}, "aud": "web"});
        assert!(check(None, event.clone()).is_err());
        assert!(check(Some("at+jwt"), event).is_err());
        assert!(check(None, serde_json::json!({"events": {}})).is_ok());
        assert!(check(None, serde_json::json!({"sub": "x"})).is_ok());
        for typ in ["logout+jwt", "application/logout+jwt", "Logout+JWT"] {
            let e = check(Some(typ), serde_json::json!({"sub": "x"})).unwrap_err();
            assert!(
                e.to_string().contains("back-channel logout token"),
                "{typ}: {e}"
            );
        }
    }

    /// Each rule of [`access_token_only`], and what passes: RFC 9068 `at+jwt` over any claim,
    /// Keycloak's `typ: Bearer`, a `nonce` whose `aud` is not our client_id.
    #[test]
    fn id_and_refresh_tokens_are_not_access_tokens() {
        use serde_json::json;
        let c = |v: serde_json::Value| v.as_object().cloned().unwrap_or_default();
        let refused = |typ: Option<&str>, v: serde_json::Value, kind: &str| {
            let e = access_token_only(typ, &c(v.clone()), Some("web")).unwrap_err();
            assert!(
                matches!(e, TokenError::NotAccessToken(k, _) if k.contains(kind)),
                "{v}: {e}"
            );
        };
        refused(None, json!({"at_hash": "x", "aud": "api"}), "ID token");
        refused(
            Some("JWT"),
            json!({"c_hash": "x", "aud": "api"}),
            "ID token",
        );
        refused(None, json!({"nonce": "n", "aud": "web"}), "ID token");
        refused(
            None,
            json!({"nonce": "n", "aud": ["api", "web"]}),
            "ID token",
        );
        refused(None, json!({"typ": "ID", "aud": "api"}), "ID token");
        refused(
            None,
            json!({"typ": "Refresh", "aud": "api"}),
            "refresh token",
        );
        refused(
            None,
            json!({"typ": "Offline", "aud": "api"}),
            "refresh token",
        );
        refused(None, json!({"typ": "Logout", "aud": "api"}), "logout token");
        let ok = |typ: Option<&str>, v: serde_json::Value, cid: Option<&str>| {
            assert!(
                access_token_only(typ, &c(v.clone()), cid).is_ok(),
                "{typ:?} {v}"
            );
        };
        for t in ["at+jwt", "AT+JWT", "application/at+jwt"] {
            ok(
                Some(t),
                json!({"nonce": "n", "aud": "web", "at_hash": "x", "typ": "ID"}),
                Some("web"),
            );
        }
        ok(
            None,
            json!({"nonce": "n", "aud": "api", "typ": "Bearer"}),
            Some("web"),
        );
        ok(None, json!({"nonce": "n", "aud": "web"}), None);
        ok(Some("JWT"), json!({"aud": "web"}), Some("web"));
    }

    /// `presented` as it was before the text check moved behind the cache: the reference
    /// for [`reading_agrees_with_the_reference`].
    fn presented_reference(parts: &Parts) -> Presented<'_> {
        let mut all = parts.headers.get_all(header::AUTHORIZATION).iter();
        let Some(first) = all.next() else {
            return Presented::None;
        };
        if all.next().is_some() {
            return Presented::BadRequest("the request carries more than one Authorization header");
        }
        if !first.as_bytes().is_ascii() {
            return Presented::BadRequest("the Authorization header is not valid text");
        }
        let v = first.as_bytes().trim_ascii();
        let (scheme, rest) = match v.iter().position(|b| *b == b' ') {
            Some(i) => (&v[..i], &v[i + 1..]),
            None => (v, &b""[..]),
        };
        if !scheme.eq_ignore_ascii_case(b"bearer") {
            return Presented::None;
        }
        let t = rest.trim_ascii();
        if t.is_empty() {
            return Presented::BadRequest("the Authorization header has no token");
        }
        Presented::Token(t)
    }

    fn same_answer(a: &Presented<'_>, b: &Presented<'_>) -> bool {
        match (a, b) {
            (Presented::None, Presented::None) => true,
            (Presented::Token(x), Presented::Token(y)) => x == y,
            (Presented::BadRequest(x), Presented::BadRequest(y)) => x == y,
            _ => false,
        }
    }

    /// Headers from pieces (schemes, whitespace, tokens, bytes ≥ 0x80 anywhere, one or two
    /// headers): `presented` answers as the reference does, and whenever `read` hands out a
    /// token unchecked, the whole header is text exactly when the token is — what lets a
    /// cache hit (an ASCII token) skip the check.
    #[test]
    fn reading_agrees_with_the_reference() {
        use rand::{Rng, SeedableRng};
        let pieces: &[&[u8]] = &[
            b"Bearer",
            b"bearer",
            b"BEARER",
            b"Basic",
            b"Bearerx",
            b"",
            b" ",
            b"  ",
            b"\t",
            b"\xe9",
            b"\xff",
            b"abc.def.ghi",
            b"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln",
            b"opaque-Token_1",
            b".",
            b"a b",
            b"\xe9t\xe9",
        ];
        let mut rng = rand::rngs::StdRng::seed_from_u64(15);
        let ws: &[&[u8]] = &[b"", b" ", b"  ", b"\t", b" \t "];
        let schemes: &[&[u8]] = &[
            b"Bearer",
            b"bearer",
            b"BEARER",
            b"Basic",
            b"Bearerx",
            b"",
            b"B\xe9arer",
        ];
        let tokens: &[&[u8]] = &[
            b"",
            b"abc.def.ghi",
            b"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln",
            b"opaque-Token_1",
            b"a b",
            b"t\xe9st",
            b"\xff",
            b"x\t\xe9",
        ];
        let mut seen = [0usize; 3];
        for i in 0..60_000 {
            let mut header = || {
                let mut v = Vec::new();
                if rng.random_range(0..8) == 0 {
                    // free-form
                    for _ in 0..rng.random_range(0..6) {
                        v.extend_from_slice(pieces[rng.random_range(0..pieces.len())]);
                    }
                    return v;
                }
                let mut pick = |from: &[&[u8]]| from[rng.random_range(0..from.len())].to_vec();
                for part in [
                    pick(ws),
                    pick(schemes),
                    b" ".to_vec(),
                    pick(ws),
                    pick(tokens),
                    pick(ws),
                ] {
                    v.extend_from_slice(&part);
                }
                if rng.random_range(0..4) == 0 {
                    let at = rng.random_range(0..=v.len());
                    v.insert(
                        at,
                        if rng.random_range(0..2) == 0 {
                            b' '
                        } else {
                            0xe9
                        },
                    );
                }
                v
            };
            let values: Vec<Vec<u8>> = if i % 50 == 0 {
                vec![header(), header()]
            } else if i % 97 == 0 {
                vec![]
            } else {
                vec![header()]
            };
            let mut p = parts(&[]);
            let mut ok = true;
            for v in &values {
                match http::HeaderValue::from_bytes(v) {
                    Ok(v) => {
                        p.headers.append(header::AUTHORIZATION, v);
                    }
                    Err(_) => ok = false,
                }
            }
            if !ok {
                continue;
            }
            let (new, old) = (presented(&p), presented_reference(&p));
            assert!(same_answer(&new, &old), "{values:?}");
            seen[match old {
                Presented::None => 0,
                Presented::Token(_) => 1,
                Presented::BadRequest(_) => 2,
            }] += 1;
            if let Read::Token { token, header } = read(&p) {
                assert_eq!(is_text(header), token.is_ascii(), "{values:?}");
            }
        }
        assert!(seen.iter().all(|n| *n > 1000), "{seen:?}");
    }

    fn cached(token: &str, until: i64) -> Cached {
        let identity = Arc::new(Identity {
            sub: "u".into(),
            access_token: Some(token.into()),
            ..Default::default()
        });
        Cached::new(identity, until)
    }

    /// The cache's keys against a list of (token, validity) searched by comparing bytes:
    /// JWT-shaped tokens (under their tail) and others (under all their bytes), tokens that
    /// share their length and last 32 bytes or all but one byte, prefixes, expired entries.
    /// A lookup hits exactly when the list holds the very token, unexpired.
    #[test]
    fn cache_lookups_agree_with_a_byte_search() {
        let bearer = Bearer {
            caches: Default::default(),
            hasher: Default::default(),
        };
        let cache = TokenCache::new(10_000);
        let t = now();
        let sig = "c2lnbmF0dXJlLW9mLXRoZS10b2tlbi1hdC1sZWFzdC0zMi1ieXRlcw";
        let mut tokens = Vec::new();
        for i in 0..40 {
            // same tail (signature), different payloads: JWT shape
            tokens.push((
                format!("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1{i}In0.{sig}"),
                true,
            ));
            // opaque tokens with one tail for all
            tokens.push((format!("opaque-{i:03}-{sig}"), false));
            // JWT-shaped but not starting with eyJ; short ones
            tokens.push((format!("abc.{i}.{sig}"), true));
            tokens.push((format!("eyJ{i}"), false));
            tokens.push((format!("eyJ.x{i}.y"), true));
        }
        // what is cached: every other token, a third of them expired
        let mut list = Vec::new();
        for (n, (tok, jwt)) in tokens.iter().enumerate() {
            if n % 2 == 0 {
                let until = [t - 1, t, t + 100][n % 3];
                cache.insert(bearer.key(tok.as_bytes(), *jwt), cached(tok, until));
                list.push((tok.clone(), until));
            }
        }
        let mut probes: Vec<String> = tokens.iter().map(|(t, _)| t.clone()).collect();
        for (tok, _) in &tokens {
            probes.push(tok[..tok.len() - 1].to_string());
            probes.push(format!("{tok}x"));
            let mut flipped = tok.clone().into_bytes();
            flipped[tok.len() / 2] ^= 1;
            probes.push(String::from_utf8(flipped).unwrap());
        }
        // Tokens sharing a key take each other's place (the later insert wins): a hit is then
        // not owed, but a wrong one is never allowed.
        let key_of = |tok: &str| bearer.key(tok.as_bytes(), tok.matches('.').count() == 2);
        let shared = |tok: &str| {
            list.iter()
                .filter(|(o, _)| key_of(o) == key_of(tok))
                .count()
                > 1
        };
        let (mut hits, mut owed) = (0, 0);
        for probe in &probes {
            let expected = list.iter().any(|(tok, until)| tok == probe && *until > t);
            let got = bearer.hit(&cache, probe.as_bytes());
            if let Some(id) = &got {
                assert!(expected, "{probe}: a hit for a token not cached");
                assert_eq!(id.access_token.as_deref(), Some(probe.as_str()));
                hits += 1;
            }
            if expected && !shared(probe) {
                assert!(got.is_some(), "{probe}: a cached token missed");
                owed += 1;
            }
        }
        assert!(hits >= owed && owed > 20, "{hits} {owed}");
        // an expired entry is gone after the lookup that found it
        let gone = list.iter().filter(|(tok, u)| *u <= t && !shared(tok));
        let mut n = 0;
        for (expired, _) in gone {
            assert!(cache.get(&key_of(expired)).is_none(), "{expired}");
            n += 1;
        }
        assert!(n > 5, "{n}");
    }
}
