//! `/.auth/backchannel-logout` (OpenID Connect Back-Channel Logout 1.0): the provider POSTs a
//! logout token; once it passes [`verify_logout_token`], the sessions it names end — only
//! those of the provider whose keys signed it (with a `sid`, that provider session; else every
//! session of the `sub` at that provider). A token is accepted once: its `jti` is remembered
//! (by this process, and by the store for every replica) only after the sessions ended, so a
//! logout that failed (503) stays retryable.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::Answer;
use crate::auth::login::{LoginState, client_id};
use crate::error::{AuthError, LoginError, Scheme};
use crate::provider::id_token::{
    LogoutTokenError, unverified_audiences, unverified_claim, verify_logout_token,
};
use crate::provider::{ProviderRuntime, Providers};
use crate::session::Ended;

pub(super) async fn backchannel(
    l: &LoginState,
    providers: &Providers,
    req: Request<Incoming>,
) -> Result<Answer, AuthError> {
    if req.method() != Method::POST {
        return Err(bad("POST a logout_token"));
    }
    let body: Bytes = match http_body_util::Limited::new(req.into_body(), 64 * 1024)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(_) => return Err(bad("unreadable body")),
    };
    let token = url::form_urlencoded::parse(&body)
        .find(|(k, _)| k == "logout_token")
        .map(|(_, v)| v.into_owned());
    let Some(token) = token else {
        return Err(bad("missing logout_token"));
    };
    let Some(iss) = unverified_claim(&token, "iss") else {
        return Err(bad("malformed logout_token"));
    };
    // The provider whose keys must have signed it: its issuer, and — when two providers
    // are two clients of one issuer — the client the token is addressed to. Its
    // verification below checks both; the logout then reaches that provider's sessions only.
    let aud = unverified_audiences(&token);
    let candidates: Vec<&Arc<ProviderRuntime>> = l
        .config
        .providers
        .values()
        .filter(|p| p.used_for_login)
        .filter_map(|pc| {
            let p = providers.get(&pc.name)?;
            let matches = pc.issuer.as_deref() == Some(iss.as_str())
                || p.metadata().is_ok_and(|m| m.issuer == iss);
            matches.then_some(p)
        })
        .collect();
    let provider = candidates
        .iter()
        .find(|p| aud.iter().any(|a| *a == client_id(p)))
        .or(candidates.first());
    let Some(p) = provider.map(|p| (*p).clone()) else {
        return Err(bad("unknown issuer"));
    };
    let logout = match verify_logout_token(&p, &token).await {
        Ok(t) => t,
        Err(LogoutTokenError::Unavailable(e)) => {
            return Err(AuthError::ProviderUnavailable {
                scheme: Scheme::Session,
                detail: e.to_string(),
            });
        }
        Err(e) => return Err(bad(&e.to_string())),
    };
    // Back-Channel Logout 1.0 §2.6 step 8: a token already acted on is a replay.
    let jti_key = format!("{}:{}", p.name(), logout.jti);
    if l.seen_jti.contains_key(&jti_key) {
        return Err(bad("logout_token replayed"));
    }
    let provider = p.name().to_string();
    let (sid, sub) = (logout.sid.as_deref(), logout.sub.as_deref());
    // With a sid, only that provider session ends; without, all of the user's — at this
    // provider only.
    let what = match (sid, sub) {
        (Some(sid), _) => Ended::Sid(sid),
        (None, Some(sub)) => Ended::Sub(sub),
        (None, None) => return Err(bad("logout_token has neither sid nor sub")),
    };
    let store_unavailable = |e: crate::session::StoreError| AuthError::SessionStoreUnavailable {
        detail: e.to_string(),
    };
    // The jti is remembered only once the sessions have ended: a logout that failed (503)
    // must stay retryable, or the provider's retry is refused as a replay and the sessions
    // live on.
    if l.sessions
        .jti_seen(&jti_key)
        .await
        .map_err(store_unavailable)?
    {
        return Err(bad("logout_token replayed"));
    }
    let n = l
        .sessions
        .end_indexed(&provider, what)
        .await
        .map_err(store_unavailable)?;
    tracing::info!(provider, sid, sub, sessions = n, "back-channel logout");
    // Done: from now on the same token is a replay (on every replica).
    match l
        .sessions
        .remember_jti(&jti_key, Duration::from_secs(3600))
        .await
    {
        Ok(true) => {}
        Ok(false) => return Err(bad("logout_token replayed")),
        Err(e) => {
            tracing::warn!(error = %e, "back-channel logout done, but its jti could not be recorded")
        }
    }
    l.seen_jti.insert(jti_key, ());
    Ok(Answer::Done)
}

fn bad(reason: &str) -> AuthError {
    LoginError::InvalidLogoutToken {
        reason: reason.to_string(),
    }
    .into()
}
