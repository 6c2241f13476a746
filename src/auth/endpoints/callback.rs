//! `/.auth/callback`: completes a login. The response must match a pending login this
//! browser started (its sealed cookie, `state` compared in constant time, within
//! [`PENDING_TTL`], accepted once per process), come from the issuer the browser was sent to
//! (RFC 9207), and its code must be exchanged (with the PKCE verifier) for tokens whose
//! identity can be derived ([`derive_identity`]); only then is a session created — always a
//! new one (no fixation). The pending-login cookie is cleared whatever the outcome.

use http::Request;
use http::header::HeaderValue;
use subtle::ConstantTimeEq;
use url::Url;

use super::{Answer, param};
use crate::auth::login::{
    DeriveError, LoginState, PENDING_TTL, Pending, derive_identity, query_pairs,
};
use crate::error::{AuthError, LoginError, Scheme};
use crate::provider::id_token::Expect;
use crate::provider::{Metadata, ProviderError, ProviderRuntime, Providers, TokenResponse};
use crate::request::ConnInfo;
use crate::session::{self, CookieAttrs, SessionData, crypto, now};

/// The callback's result, and the Set-Cookie clearing its pending-login cookie (which a
/// refusal carries too; a success lists it first among its cookies).
pub(super) async fn callback<B>(
    l: &LoginState,
    providers: &Providers,
    req: &Request<B>,
    conn: ConnInfo,
    host: Option<&str>,
) -> (Option<HeaderValue>, Result<Answer, AuthError>) {
    let q = query_pairs(req);
    let attrs = l.attrs(conn, req.headers(), host);
    let Some(state) = param(&q, "state").filter(|s| !s.is_empty() && s.len() < 512) else {
        return (None, Err(failed("the sign-in response has no state")));
    };
    let clear = session::clear_cookie(&l.pending_cookie_name(state, attrs), attrs);
    let result = complete(l, providers, &q, req, attrs, state, clear.clone()).await;
    (clear, result)
}

async fn complete<B>(
    l: &LoginState,
    providers: &Providers,
    q: &[(String, String)],
    req: &Request<B>,
    attrs: CookieAttrs<'_>,
    state: &str,
    clear: Option<HeaderValue>,
) -> Result<Answer, AuthError> {
    let headers = req.headers();
    let Some(pending) = l.open_pending(headers, state, attrs) else {
        return Err(failed(
            "this browser has no matching sign-in in progress (it may have expired, or the link was not started here)",
        ));
    };
    if !bool::from(pending.state.as_bytes().ct_eq(state.as_bytes()))
        || now() - pending.created > PENDING_TTL
    {
        return Err(failed("the sign-in state does not match or has expired"));
    }
    let state_key = crypto::sha256_b64(state);
    if l.used_states.contains_key(&state_key) {
        return Err(failed("this sign-in response was already used"));
    }
    l.used_states.insert(state_key, ());

    if let Some(err) = param(q, "error") {
        return Err(LoginError::Denied {
            error: err.to_string(),
            description: param(q, "error_description").unwrap_or("").to_string(),
            retry: login_link(l, &pending.rd),
        }
        .into());
    }
    let Some(p) = providers.get(&pending.provider) else {
        return Err(failed("unknown provider"));
    };
    let md = p.metadata().map_err(|e| unavailable(&e))?;
    // RFC 9207: the response must come from the issuer we sent the browser to.
    match param(q, "iss") {
        Some(iss) if iss != md.issuer => {
            return Err(failed("the sign-in response came from another issuer"));
        }
        None if md.authorization_response_iss_parameter_supported => {
            return Err(failed("the sign-in response lacks the issuer (RFC 9207)"));
        }
        _ => {}
    }
    let Some(code) = param(q, "code").filter(|c| !c.is_empty()) else {
        return Err(failed("the sign-in response has no code"));
    };
    let tr = match p
        .token_request(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", &pending.redirect_uri),
            ("code_verifier", &pending.verifier),
        ])
        .await
    {
        Ok(t) => t,
        Err(e @ ProviderError::Unavailable { .. }) => return Err(unavailable(&e)),
        Err(e) => {
            tracing::info!(error = %e, "code exchange refused");
            return Err(failed("the sign-in service refused the code"));
        }
    };
    let data = session_from_tokens(l, p, &md, tr, &pending).await?;
    let present = l.sessions.present_chunks(headers, attrs);
    let set = l
        .sessions
        .save(&data, None, &present, attrs)
        .await
        .map_err(|e| AuthError::SessionStoreUnavailable {
            detail: e.to_string(),
        })?;
    tracing::info!(provider = %data.provider, sub = %data.sub, "signed in");
    Ok(Answer::Redirect {
        location: pending.rd,
        set_cookie: clear.into_iter().chain(set).collect(),
    })
}

/// `/.auth/login?rd=…`, to try again.
fn login_link(l: &LoginState, rd: &str) -> String {
    let mut u = Url::parse("http://x/").unwrap_or_else(|_| unreachable!());
    u.set_path(&format!("{}/login", l.config.server.auth_prefix));
    u.query_pairs_mut().append_pair("rd", rd);
    format!("{}?{}", u.path(), u.query().unwrap_or(""))
}

/// The session a completed login creates: its identity from [`derive_identity`] (the
/// same derivation every refresh repeats), its tokens, and fresh timestamps.
async fn session_from_tokens(
    l: &LoginState,
    p: &ProviderRuntime,
    md: &Metadata,
    tr: TokenResponse,
    pending: &Pending,
) -> Result<SessionData, AuthError> {
    let expect = Expect::Login {
        nonce: &pending.nonce,
    };
    let who = match derive_identity(
        p,
        md,
        tr.id_token.as_deref(),
        &tr.access_token,
        expect,
        &l.needed_claims,
    )
    .await
    {
        Ok(w) => w,
        Err(DeriveError::Unavailable(e)) => return Err(unavailable(&e)),
        Err(e) => return Err(failed(&e.to_string())),
    };
    let now = now();
    Ok(SessionData {
        id: crypto::random_token(),
        provider: pending.provider.clone(),
        iss: who.iss,
        sub: who.sub,
        email: who.email,
        name: who.name,
        preferred_username: who.preferred_username,
        sid: who.sid,
        roles: who.roles,
        roles_rule: Some(who.roles_rule),
        claims: who.claims,
        access_token: tr.access_token,
        refresh_token: tr.refresh_token,
        id_token: tr.id_token,
        created_at: now,
        created_ms: session::now_ms(),
        last_seen: now,
        access_expires_at: tr.expires_in.map(|e| now + e as i64),
        access_issued_at: now,
        identity: Default::default(),
    })
}

fn failed(reason: &str) -> AuthError {
    LoginError::Failed {
        reason: reason.to_string(),
    }
    .into()
}

fn unavailable(e: &ProviderError) -> AuthError {
    AuthError::ProviderUnavailable {
        scheme: Scheme::Session,
        detail: e.to_string(),
    }
}
