//! Starting a login: the pending login (`state`, `nonce`, PKCE verifier, where to return) sealed
//! in its own short-lived cookie, and the provider's authorization URL to send the browser to.
//! Both a session-less navigation ([`LoginState::authenticate`]) and `/.auth/login` start one
//! here; the `/.auth/callback` endpoint opens the cookie again. With `session.cookie_domain`
//! the pending-login cookie is a `Domain` cookie like the session's: the callback (on
//! `public_url`) may be another subdomain than the one the login started on.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use http::header::{HeaderMap, HeaderValue};
use serde::{Deserialize, Serialize};

use super::{LoginState, client_id};
use crate::auth::redirect;
use crate::error::{AuthError, LoginError, Scheme};
use crate::provider::{ProviderError, Providers};
use crate::request::ConnInfo;
use crate::session::{self, CookieAttrs, crypto, now};

/// Seconds a pending login (and its cookie) lives.
pub(crate) const PENDING_TTL: i64 = 600;

/// A login this browser started.
#[derive(Serialize, Deserialize)]
pub(crate) struct Pending {
    pub state: String,
    pub nonce: String,
    pub verifier: String,
    pub rd: String,
    pub provider: String,
    pub redirect_uri: String,
    pub created: i64,
}

/// Where a login sends the browser, with the cookies that go along.
pub(crate) struct LoginRedirect {
    pub location: String,
    pub set_cookie: Vec<HeaderValue>,
}

impl LoginState {
    /// Prepares a login at `provider` (state, nonce, PKCE verifier in a sealed pending-login
    /// cookie) and says where to send the browser; any session cookie the browser holds is
    /// ended (no fixation).
    pub(crate) async fn prepare_login(
        &self,
        providers: &Providers,
        provider: &str,
        rd: &str,
        headers: &HeaderMap,
        conn: ConnInfo,
        host: Option<&str>,
    ) -> Result<LoginRedirect, AuthError> {
        let attrs = self.attrs(conn, headers, host);
        let Some(origin) = self.origin(conn, headers, host) else {
            return Err(AuthError::BadRequest {
                scheme: Scheme::Session,
                reason: "missing Host header".into(),
            });
        };
        let for_login = self
            .config
            .providers
            .get(provider)
            .is_some_and(|p| p.used_for_login);
        let (Some(p), true) = (providers.get(provider), for_login) else {
            return Err(LoginError::UnknownProvider.into());
        };
        let md = match p.metadata() {
            Ok(m) => m,
            Err(e) => return Err(login_unavailable(&e)),
        };
        let Some(auth_ep) = md.authorization_endpoint.clone() else {
            return Err(login_unavailable(&ProviderError::Invalid {
                provider: provider.into(),
                reason: "no authorization_endpoint".into(),
            }));
        };
        // The callback is at `origin`; a path is on the page the browser is on.
        let rd = self.return_to(rd, self.here(conn, headers, host).as_ref(), &origin);
        let redirect_uri = redirect::absolute(
            &format!("{}/callback", self.config.server.auth_prefix),
            &origin,
        );
        let pending = Pending {
            state: crypto::random_token(),
            nonce: crypto::random_token(),
            verifier: crypto::random_token(),
            rd,
            provider: provider.to_string(),
            redirect_uri: redirect_uri.clone(),
            created: now(),
        };
        let challenge = {
            use sha2::Digest;
            B64.encode(sha2::Sha256::digest(pending.verifier.as_bytes()))
        };
        let mut scopes = p.config.scopes.clone();
        if !scopes.iter().any(|s| s == "openid") {
            scopes.insert(0, "openid".into());
        }
        if self.sessions.cfg.refresh && !scopes.iter().any(|s| s == "offline_access") {
            scopes.push("offline_access".into());
        }
        let mut url = auth_ep;
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &client_id(p))
            .append_pair("redirect_uri", &redirect_uri)
            .append_pair("scope", &scopes.join(" "))
            .append_pair("state", &pending.state)
            .append_pair("nonce", &pending.nonce)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256");
        let name = self.pending_cookie_name(&pending.state, attrs);
        let sealed = self
            .pending
            .seal(&name, &serde_json::to_vec(&pending).unwrap_or_default());

        let mut set_cookie = Vec::new();
        if let Some(v) = session::set_cookie(&name, &sealed, Some(PENDING_TTL), attrs) {
            set_cookie.push(v);
        }
        // No fixation: whatever session cookie the browser holds is dropped now.
        if let Ok(Some(l)) = self.sessions.load(headers, attrs).await
            && l.handle.is_some()
        {
            let _ = self.sessions.delete(l.handle.as_deref(), &[], attrs).await;
        }
        for c in self.sessions.present_chunks(headers, attrs) {
            if let Some(v) = session::clear_cookie(&c, attrs) {
                set_cookie.push(v);
            }
        }
        Ok(LoginRedirect {
            location: url.into(),
            set_cookie,
        })
    }

    /// The cookie of the pending login with `state`: `<session cookie>_login_<hash prefix>`.
    pub(crate) fn pending_cookie_name(&self, state: &str, attrs: CookieAttrs<'_>) -> String {
        let h = crypto::sha256_b64(state);
        format!("{}_login_{}", self.sessions.cookie_name(attrs), &h[..16])
    }

    /// The pending login with `state` this browser's cookies carry (sealed by this proxy).
    pub(crate) fn open_pending(
        &self,
        headers: &HeaderMap,
        state: &str,
        attrs: CookieAttrs<'_>,
    ) -> Option<Pending> {
        let name = self.pending_cookie_name(state, attrs);
        let cookies = session::request_cookies(headers);
        session::cookie(&cookies, &name)
            .and_then(|v| self.pending.open(&name, v))
            .and_then(|pt| serde_json::from_slice::<Pending>(&pt).ok())
    }
}

fn login_unavailable(e: &ProviderError) -> AuthError {
    AuthError::ProviderUnavailable {
        scheme: Scheme::Session,
        detail: e.to_string(),
    }
}
