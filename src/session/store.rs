//! Where sessions live, behind one interface: [`Store`], implemented by the stateless cookie
//! store ([`CookieStore`]) and the Redis store ([`super::redis::RedisStore`]). [`super::Sessions`]
//! does what both share (sealing, cookie chunks, the cache of opened sessions) and hands the
//! rest to the configured store, so the login code above never asks which one runs: it loads,
//! saves, ends, locks a refresh and remembers logout-token ids through `Sessions` alone.
//!
//! What differs, and why it is safe either way:
//! - ending a session: Redis deletes it for every replica; a cookie cannot be taken back, so the
//!   cookie store puts it on this process's revocation list ([`super::Revocations`]);
//! - the refresh lock: Redis holds one lock per session for every replica (a rotated refresh
//!   token used twice makes ZITADEL and oidc-provider revoke the grant); the cookie store has
//!   no shared state, so the per-process single flight (in the login code) is all there is;
//! - logout-token ids (back-channel logout replays): remembered in Redis for every replica; the
//!   cookie store remembers nothing beyond the per-process cache the login code keeps.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;
use http::header::HeaderMap;

use super::redis::LockToken;
use super::{
    CookieAttrs, Ended, Loaded, SessionData, Sessions, StoreError, chunked_value, now, now_ms,
    request_cookies, write_chunked,
};
use crate::health::Health;

/// Whether this caller may refresh a session's tokens now ([`Sessions::lock_refresh`]).
pub enum RefreshLock {
    /// No store-wide lock exists (cookie store, or a session without a store handle): the
    /// per-process single flight decides.
    Local,
    /// This caller holds the store-wide lock: it refreshes, writes the result back, and
    /// releases the lock with [`Sessions::unlock_refresh`].
    Held(LockToken),
    /// Another replica holds it: wait for its result ([`Sessions::reload`]).
    Busy,
}

/// What a session store does. `s` gives access to what the stores share (sealer, cache of
/// opened sessions, configuration, revocation list).
pub(crate) trait Store {
    /// The session a request's cookie value names (`name`: the cookie's name, also the
    /// sealing context of the cookie store). Expiry is not checked here.
    async fn fetch(
        &self,
        s: &Sessions,
        name: &str,
        value: Cow<'_, str>,
    ) -> Result<Option<Loaded>, StoreError>;

    /// Writes a session (`json`: its serialized form; `remaining`: seconds of lifetime left)
    /// and returns the Set-Cookie values. `handle`: the store's handle of an existing session.
    #[allow(clippy::too_many_arguments)]
    async fn write(
        &self,
        s: &Sessions,
        name: &str,
        data: &SessionData,
        json: &[u8],
        handle: Option<&str>,
        remaining: i64,
        present: &[String],
        attrs: CookieAttrs<'_>,
    ) -> Result<Vec<HeaderValue>, StoreError>;

    /// Ends a session for good (logout): no copy of its cookie opens it again.
    async fn end(&self, s: &Sessions, loaded: &Loaded) -> Result<(), StoreError>;

    /// Deletes the session a handle names (a stateless cookie has nothing to delete).
    async fn remove(&self, handle: Option<&str>) -> Result<(), StoreError>;

    /// Back-channel logout at `provider`: ends its sessions named by `what`; how many were
    /// deleted (0 when they can only be refused later).
    async fn end_indexed(
        &self,
        s: &Sessions,
        provider: &str,
        what: Ended<'_>,
    ) -> Result<usize, StoreError>;

    /// Requests still carrying the previous cookie of a changed session get the changed one.
    fn supersede(
        &self,
        s: &Sessions,
        headers: &HeaderMap,
        attrs: CookieAttrs<'_>,
        changed: &Arc<SessionData>,
    );

    /// Takes the store-wide refresh lock of the session `handle` names.
    async fn lock_refresh(&self, handle: Option<&str>) -> Result<RefreshLock, StoreError>;

    /// Releases a lock this caller holds; whether it was still ours.
    async fn unlock_refresh(&self, lock: &LockToken) -> bool;

    /// The session `handle` names as the store holds it now (`None`: gone or unreadable).
    async fn reload(
        &self,
        s: &Sessions,
        handle: &str,
    ) -> Result<Option<Arc<SessionData>>, StoreError>;

    /// Whether the logout-token id `key` was remembered already.
    async fn jti_seen(&self, key: &str) -> Result<bool, StoreError>;

    /// Remembers the logout-token id `key` for `ttl`; false when it was remembered already.
    async fn remember_jti(&self, key: &str, ttl: Duration) -> Result<bool, StoreError>;

    /// Starts background work (Redis: the readiness check).
    fn start(&self, health: Arc<Health>);
}

/// The stateless store: the whole session, sealed, in the cookie.
pub(crate) struct CookieStore;

impl Store for CookieStore {
    async fn fetch(
        &self,
        s: &Sessions,
        name: &str,
        value: Cow<'_, str>,
    ) -> Result<Option<Loaded>, StoreError> {
        let data = s.open(name, &value);
        Ok(data
            .filter(|d| !s.revocations.is_revoked(d))
            .map(|data| Loaded { data, handle: None }))
    }

    async fn write(
        &self,
        s: &Sessions,
        name: &str,
        _data: &SessionData,
        json: &[u8],
        _handle: Option<&str>,
        remaining: i64,
        present: &[String],
        attrs: CookieAttrs<'_>,
    ) -> Result<Vec<HeaderValue>, StoreError> {
        let sealed = s.sealer.seal(name, json);
        Ok(write_chunked(name, &sealed, remaining, present, attrs))
    }

    async fn end(&self, s: &Sessions, loaded: &Loaded) -> Result<(), StoreError> {
        let d = &loaded.data;
        let until = d.created_at + s.cfg.lifetime.as_secs() as i64 + 60;
        s.revocations.revoke_session(&d.id, until);
        Ok(())
    }

    async fn remove(&self, _handle: Option<&str>) -> Result<(), StoreError> {
        Ok(())
    }

    async fn end_indexed(
        &self,
        s: &Sessions,
        provider: &str,
        what: Ended<'_>,
    ) -> Result<usize, StoreError> {
        let until = now() + s.cfg.lifetime.as_secs() as i64 + 60;
        s.revocations.revoke(provider, what, now_ms(), until);
        Ok(0)
    }

    fn supersede(
        &self,
        s: &Sessions,
        headers: &HeaderMap,
        attrs: CookieAttrs<'_>,
        changed: &Arc<SessionData>,
    ) {
        let name = s.cookie_name(attrs);
        if let Some(previous) = chunked_value(&request_cookies(headers), name) {
            s.opened.put(name, &previous, changed.clone());
        }
    }

    async fn lock_refresh(&self, _handle: Option<&str>) -> Result<RefreshLock, StoreError> {
        Ok(RefreshLock::Local)
    }

    async fn unlock_refresh(&self, _lock: &LockToken) -> bool {
        true
    }

    async fn reload(
        &self,
        _s: &Sessions,
        _handle: &str,
    ) -> Result<Option<Arc<SessionData>>, StoreError> {
        // Never asked (the cookie store takes no store-wide lock, so nobody waits for one).
        Err(StoreError::Unavailable(
            "the cookie store keeps no sessions to reload".into(),
        ))
    }

    async fn jti_seen(&self, _key: &str) -> Result<bool, StoreError> {
        Ok(false)
    }

    async fn remember_jti(&self, _key: &str, _ttl: Duration) -> Result<bool, StoreError> {
        Ok(true)
    }

    fn start(&self, _health: Arc<Health>) {}
}
