//! Refreshing a session's tokens: one refresh per refresh token in this process (concurrent
//! requests share the in-flight attempt), one per session across replicas (the store's refresh
//! lock: the others wait for the rotated session), and the identity derived again from the new
//! tokens ([`super::derive`]) — or the session ends (fail closed).

use std::sync::Arc;
use std::time::Duration;

use super::LoginState;
use super::derive::{DeriveError, Expect, derive_identity};
use crate::provider::{ProviderError, Providers};
use crate::session::store::RefreshLock;
use crate::session::{CookieAttrs, SessionData, StoreError, crypto, now};

/// What a refresh attempt produced (shared by the concurrent requests of one session).
#[derive(Clone)]
pub(crate) enum Refreshed {
    /// The session with the new tokens and the identity derived from them again.
    New(Box<SessionData>),
    /// Provider unreachable: keep using the current access token, try again later.
    Keep,
    /// The provider refused, or the identity could not be derived from the new tokens: the
    /// session is over.
    Ended,
}

impl LoginState {
    /// One refresh per refresh token: concurrent callers share the in-flight attempt.
    pub(super) async fn refresh(
        &self,
        providers: &Providers,
        d: &SessionData,
        handle: Option<&str>,
    ) -> Result<Refreshed, StoreError> {
        let Some(rt) = d.refresh_token.as_deref() else {
            return Ok(Refreshed::Keep);
        };
        let key = crypto::sha256_b64(rt);
        let cell = self
            .refreshing
            .get_with(key.clone(), async {
                Arc::new(tokio::sync::OnceCell::new())
            })
            .await;
        let r = cell
            .get_or_init(|| self.refresh_now(providers, d, handle))
            .await
            .clone();
        if matches!(r, Refreshed::Keep) {
            // Provider unreachable: the next request may try again.
            self.refreshing.remove(&key);
        }
        Ok(r)
    }

    async fn refresh_now(
        &self,
        providers: &Providers,
        d: &SessionData,
        handle: Option<&str>,
    ) -> Refreshed {
        // Across replicas (a shared store): one holds the lock and refreshes; the others wait
        // for the rotated session to appear.
        let lock = match self.sessions.lock_refresh(handle).await {
            Ok(RefreshLock::Held(l)) => Some(l),
            Ok(RefreshLock::Local) => None,
            Ok(RefreshLock::Busy) => {
                return match handle {
                    Some(h) => self.wait_for_other_replica(d, h).await,
                    None => Refreshed::Keep,
                };
            }
            Err(_) => return Refreshed::Keep,
        };
        let out = self.refresh_at_provider(providers, d).await;
        if let Some(lock) = &lock {
            match &out {
                // Write back before releasing the lock so waiting replicas see the new token.
                Refreshed::New(n) => {
                    let _ = self.sessions.save(n, handle, &[], CookieAttrs::PLAIN).await;
                }
                Refreshed::Ended => {
                    let _ = self.sessions.delete(handle, &[], CookieAttrs::PLAIN).await;
                }
                Refreshed::Keep => {}
            }
            // Only our own lock: if it outlived its TTL, another replica's lock is left alone.
            if !self.sessions.unlock_refresh(lock).await {
                tracing::warn!(
                    "session refresh took longer than its Redis lock (15 s); the lock was not ours any more and was left in place"
                );
            }
        }
        out
    }

    async fn wait_for_other_replica(&self, d: &SessionData, handle: &str) -> Refreshed {
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            match self.sessions.reload(handle).await {
                Ok(None) => return Refreshed::Ended,
                Ok(Some(n)) if n.refresh_token != d.refresh_token => {
                    return Refreshed::New(Box::new((*n).clone()));
                }
                Ok(Some(_)) => {}
                Err(_) => return Refreshed::Keep,
            }
        }
        Refreshed::Keep
    }

    /// Uses the refresh token and re-derives the identity from the fresh tokens exactly as the
    /// login did ([`derive_identity`]): roles and claims removed (or added) at the provider
    /// take effect at the next refresh, not only at the next login. Only the tokens, the identity
    /// and the access token's times change: `id`, `sid` and `created_at` stay, so a refresh
    /// never extends the absolute `lifetime` and back-channel logout still finds the session.
    async fn refresh_at_provider(&self, providers: &Providers, d: &SessionData) -> Refreshed {
        let Some(p) = providers.get(&d.provider) else {
            return Refreshed::Ended;
        };
        let Some(rt) = d.refresh_token.as_deref() else {
            return Refreshed::Keep;
        };
        let tr = match p
            .token_request(&[("grant_type", "refresh_token"), ("refresh_token", rt)])
            .await
        {
            Ok(tr) => tr,
            Err(ProviderError::Unavailable { .. }) => return Refreshed::Keep,
            Err(e) => {
                tracing::info!(provider = %d.provider, error = %e, "refresh refused; the session ends");
                return Refreshed::Ended;
            }
        };
        // Fail closed from here on. The provider has issued new tokens (and, when it rotates
        // refresh tokens, retired the old one), so "keep the current session and retry later"
        // is no longer possible, and keeping the old identity with the new tokens would keep
        // roles the provider may have just taken away. So when the identity cannot be derived
        // again — ID token invalid or about another subject, userinfo about another subject,
        // failing or unreachable, or neither an ID token nor a userinfo endpoint to read it
        // from — the session ends and the user signs in again (a browser navigation goes
        // straight to the provider, whose own session usually makes that a round trip without
        // a prompt); the refresh token in force is revoked (best effort), so the grant ends too.
        let derived = match p.metadata() {
            Ok(md) => {
                let expect = Expect::Refresh { sub: &d.sub };
                derive_identity(
                    p,
                    &md,
                    tr.id_token.as_deref(),
                    &tr.access_token,
                    expect,
                    &self.needed_claims,
                )
                .await
            }
            Err(e) => Err(DeriveError::Unavailable(e)),
        };
        let who = match derived {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(provider = %d.provider, sub = %d.sub, reason = %e,
                    "refreshed tokens, but the identity could not be derived again; the session ends");
                // The refresh token now in force: the new one, or the old one when the provider
                // does not rotate (then a copy of the cookie could otherwise refresh again).
                if let Some(rt) = tr.refresh_token.or_else(|| d.refresh_token.clone()) {
                    let p = p.clone();
                    tokio::spawn(async move {
                        let _ = tokio::time::timeout(
                            Duration::from_secs(3),
                            p.revoke(&rt, "refresh_token"),
                        )
                        .await;
                    });
                }
                return Refreshed::Ended;
            }
        };
        let now = now();
        let mut n = d.clone();
        // `sid` is kept: it names the provider session the back-channel logout index uses.
        n.email = who.email;
        n.name = who.name;
        n.preferred_username = who.preferred_username;
        n.roles = who.roles;
        n.roles_rule = Some(who.roles_rule);
        n.claims = who.claims;
        if tr.id_token.is_some() {
            n.id_token = tr.id_token;
        }
        n.access_token = tr.access_token;
        if tr.refresh_token.is_some() {
            n.refresh_token = tr.refresh_token;
        }
        n.access_issued_at = now;
        n.access_expires_at = tr.expires_in.map(|s| now + s as i64);
        if n.roles != d.roles {
            tracing::info!(provider = %d.provider, sub = %d.sub, roles = ?n.roles, "session refreshed; roles changed");
        } else {
            tracing::debug!(provider = %d.provider, "session refreshed");
        }
        Refreshed::New(Box::new(n))
    }
}
