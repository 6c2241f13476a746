//! RFC 7662 token introspection for opaque access tokens, authenticated with client_secret_basic
//! or a ZITADEL key file (`private_key_jwt`, RFC 7523).
//!
//! Caching: an active answer is kept for min(`cache`, exp − now) under a key derived from the
//! issuer, the introspection endpoint, the client and the SHA-256 of the token — so a token
//! valid at one provider can never be served from another's entry, and the cache never holds
//! the token itself. Concurrent misses for the same token share one provider call
//! (`TtlCache::try_get_with`). A refusal the provider's answer decided (inactive, wrong
//! audience, not an access token, …) is remembered for [`REFUSED_FOR`] under the same key, so
//! the same bad token does not reach the provider again; errors reaching the provider (→ 503)
//! are not remembered.
//!
//! Load: at most `max_concurrent` (default 16) calls to the provider at once, per provider; a
//! request waits for a free slot as long as one call may take (the provider `timeout`), then
//! gets 503. A flood of random tokens thus costs the provider a bounded number of parallel
//! calls instead of one per request.
//!
//! Checks on the answer: `active` must be `true`; no `cnf` (sender-constrained tokens need a
//! proof that is not verified here); `token_type`, when present, an access token (`Bearer`,
//! `access_token`, `urn:ietf:params:oauth:token-type:access_token`, any case) — a refresh or ID
//! token type is refused, so is a Keycloak `typ` claim of `Refresh`/`Offline`/`ID`/`Logout`;
//! `iss`, when present, must be the configured issuer; `exp`, when present, must not be past;
//! `aud`: when present it must contain one of the provider's `audiences`. When absent
//! (oidc-provider and ZITADEL omit it for tokens requested without a resource/audience) the
//! token is accepted only if `token_type` says it is an access token — a refresh token
//! introspects as active with the client's `client_id`, no `aud` and no `token_type` — and
//! its `client_id` is one of the `audiences`, i.e. the token was issued to the API itself.
//! Otherwise: 401, never fail open.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::assertion::{ASSERTION_TYPE, ClientKey};
use super::http::{ProviderClient, basic_auth};
use super::jwks::{LEEWAY, now};
use super::{ProviderError, TokenError};
use crate::cache::TtlCache;
use crate::config::{Introspection, IntrospectionAuth};

/// Introspection answers kept per provider.
const CACHE_ENTRIES: u64 = 20_000;
/// How long a refusal decided by the provider's answer is remembered.
pub const REFUSED_FOR: Duration = Duration::from_secs(10);
/// Refusals remembered per provider (a flood of random tokens evicts old ones, never an
/// active answer: the two caches are apart).
const REFUSED_ENTRIES: u64 = 20_000;

#[derive(Clone)]
struct Entry {
    claims: Arc<Map<String, Value>>,
    /// Unix seconds when this answer stops being reused (creation + `ttl`).
    until: i64,
}

/// An acceptable introspection answer.
pub struct Introspected {
    pub claims: Arc<Map<String, Value>>,
    /// Unix seconds until which the answer may be reused: min(`cache`, exp) after it was
    /// obtained, whether it just came from the provider or from the cache.
    pub until: i64,
}

enum Auth {
    Basic(String),
    Key(ClientKey),
}

pub struct Introspector {
    provider: String,
    auth: Auth,
    client_id: String,
    cache_for: Duration,
    /// Each answer for its own TTL; errors reaching the provider are not cached.
    cache: TtlCache<[u8; 32], Entry, TokenError>,
    /// Refusals decided by the provider's answer, for [`REFUSED_FOR`].
    refused: TtlCache<[u8; 32], TokenError>,
    /// Calls to the provider in flight (`max_concurrent` permits).
    slots: tokio::sync::Semaphore,
    max_concurrent: usize,
}

impl Introspector {
    pub fn new(provider: &str, cfg: &Introspection) -> Result<Self, String> {
        let (auth, client_id) = match &cfg.auth {
            IntrospectionAuth::Basic {
                client_id,
                client_secret,
            } => (
                Auth::Basic(basic_auth(client_id, client_secret.expose())),
                client_id.clone(),
            ),
            IntrospectionAuth::KeyFile(k) => {
                let ck = ClientKey::new(k)?;
                let id = ck.client_id.clone();
                (Auth::Key(ck), id)
            }
        };
        let cache = TtlCache::new(CACHE_ENTRIES, cfg.cache);
        let refused = TtlCache::new(REFUSED_ENTRIES, REFUSED_FOR);
        let max_concurrent = cfg.max_concurrent.max(1);
        Ok(Introspector {
            provider: provider.to_string(),
            auth,
            client_id,
            cache_for: cfg.cache,
            cache,
            refused,
            slots: tokio::sync::Semaphore::new(max_concurrent),
            max_concurrent,
        })
    }

    fn unavailable(&self, reason: String) -> TokenError {
        TokenError::Unavailable(ProviderError::Unavailable {
            provider: self.provider.clone(),
            reason,
        })
    }

    /// Introspects `token` (cached); returns the answer's claims when the token is acceptable.
    #[allow(clippy::too_many_arguments)]
    pub async fn introspect(
        &self,
        http: &ProviderClient,
        endpoint: &str,
        issuer: Option<&str>,
        audiences: &[String],
        token: &str,
        timeout: Duration,
    ) -> Result<Introspected, TokenError> {
        let mut h = Sha256::new();
        for part in [issuer.unwrap_or(""), endpoint, &self.client_id] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part.as_bytes());
        }
        h.update(Sha256::digest(token.as_bytes()));
        let key: [u8; 32] = h.finalize().into();
        if let Some(e) = self.refused.get(&key) {
            return Err(e);
        }
        let entry = self
            .cache
            .try_get_with(key, async {
                let claims = match self
                    .limited_call(http, endpoint, issuer, audiences, token, timeout)
                    .await
                {
                    Ok(c) => c,
                    Err(e @ TokenError::Unavailable(_)) => return Err(e),
                    Err(e) => {
                        // Decided by the provider's answer: the same token gets the same
                        // answer for a while, without asking again.
                        self.refused.insert(key, e.clone());
                        return Err(e);
                    }
                };
                let exp = claims.get("exp").and_then(Value::as_i64);
                let ttl = match exp {
                    Some(e) => Duration::from_secs((e - now()).max(0) as u64).min(self.cache_for),
                    None => self.cache_for,
                };
                let entry = Entry {
                    claims: Arc::new(claims),
                    until: now() + ttl.as_secs() as i64,
                };
                Ok((entry, ttl))
            })
            .await?;
        // Belt and braces: an entry never outlives the token's exp.
        if entry
            .claims
            .get("exp")
            .and_then(Value::as_i64)
            .is_some_and(|e| e + (LEEWAY as i64) < now())
        {
            self.cache.remove(&key);
            return Err(TokenError::Expired);
        }
        Ok(Introspected {
            claims: entry.claims,
            until: entry.until,
        })
    }

    /// [`Self::call`] in one of the `max_concurrent` slots; waits for a slot at most `timeout`.
    async fn limited_call(
        &self,
        http: &ProviderClient,
        endpoint: &str,
        issuer: Option<&str>,
        audiences: &[String],
        token: &str,
        timeout: Duration,
    ) -> Result<Map<String, Value>, TokenError> {
        let _slot = match tokio::time::timeout(timeout, self.slots.acquire()).await {
            Ok(Ok(permit)) => permit,
            // Closed: never (the semaphore is not closed); treated like a full one.
            Ok(Err(_)) | Err(_) => {
                tracing::debug!(provider = %self.provider, max_concurrent = self.max_concurrent, "introspection: no free slot in time");
                return Err(self.unavailable(format!(
                    "{} introspection calls are in flight (introspection.max_concurrent); none finished within {}",
                    self.max_concurrent,
                    humantime::format_duration(timeout)
                )));
            }
        };
        self.call(http, endpoint, issuer, audiences, token, timeout)
            .await
    }

    async fn call(
        &self,
        http: &ProviderClient,
        endpoint: &str,
        issuer: Option<&str>,
        audiences: &[String],
        token: &str,
        timeout: Duration,
    ) -> Result<Map<String, Value>, TokenError> {
        let assertion;
        let mut form: Vec<(&str, &str)> =
            vec![("token", token), ("token_type_hint", "access_token")];
        let authz = match &self.auth {
            Auth::Basic(b) => Some(b.as_str()),
            Auth::Key(k) => {
                assertion = k
                    .assertion(issuer.unwrap_or(endpoint))
                    .map_err(|e| self.unavailable(format!("signing the client assertion: {e}")))?;
                form.push(("client_assertion_type", ASSERTION_TYPE));
                form.push(("client_assertion", &assertion));
                form.push(("client_id", &self.client_id));
                None
            }
        };
        let reply = http
            .post_form(endpoint, &form, authz, timeout)
            .await
            .map_err(|e| self.unavailable(e))?;
        if !reply.status.is_success() {
            // 4xx here means our credentials are wrong (config problem) or the provider refuses:
            // either way this request cannot be decided → 503, and the log says why.
            let body =
                String::from_utf8_lossy(&reply.body[..reply.body.len().min(300)]).into_owned();
            tracing::warn!(provider = %self.provider, status = reply.status.as_u16(), body = %body, "introspection failed");
            return Err(self.unavailable(format!("introspection answered {}", reply.status)));
        }
        let claims: Map<String, Value> = serde_json::from_slice(&reply.body).map_err(|e| {
            TokenError::Unavailable(ProviderError::Invalid {
                provider: self.provider.clone(),
                reason: format!("introspection answer: {e}"),
            })
        })?;
        check(&claims, issuer, audiences)?;
        Ok(claims)
    }
}

/// The checks on an introspection answer (see the module docs).
pub fn check(
    claims: &Map<String, Value>,
    issuer: Option<&str>,
    audiences: &[String],
) -> Result<(), TokenError> {
    if claims.get("active") != Some(&Value::Bool(true)) {
        return Err(TokenError::Inactive);
    }
    // Only bearer access tokens: a DPoP/mTLS-bound token without its proof, or another kind
    // of token (RFC 7662 `token_type`, RFC 6749 §7.1), is not a bearer credential.
    if claims.contains_key("cnf") {
        return Err(TokenError::Other(super::jwks::SENDER_CONSTRAINED.into()));
    }
    // What kind of token the answer describes. A refresh token introspects as `active: true`
    // with the client's `client_id` and (oidc-provider) no `aud` and no `token_type`.
    let access = match claims.get("token_type") {
        None => false,
        Some(Value::String(t)) => match token_type(t) {
            Kind::Access => true,
            Kind::Refresh => {
                return Err(TokenError::NotAccessToken(
                    "a refresh token",
                    "its introspection `token_type` says so",
                ));
            }
            Kind::Id => {
                return Err(TokenError::NotAccessToken(
                    "an ID token",
                    "its introspection `token_type` says so",
                ));
            }
            Kind::Other => {
                return Err(TokenError::Other(
                    "the token is not a bearer access token (token_type)".into(),
                ));
            }
        },
        Some(_) => {
            return Err(TokenError::Other(
                "the token is not a bearer access token (token_type)".into(),
            ));
        }
    };
    // Keycloak answers with the token's own claims, `typ` among them.
    if let Some(Value::String(t)) = claims.get("typ") {
        let is = |k: &str| t.eq_ignore_ascii_case(k);
        if is("Refresh") || is("Offline") {
            return Err(TokenError::NotAccessToken(
                "a refresh token",
                "its introspected `typ` claim says so",
            ));
        }
        if is("ID") {
            return Err(TokenError::NotAccessToken(
                "an ID token",
                "its introspected `typ` claim says so",
            ));
        }
        if is("Logout") {
            return Err(TokenError::NotAccessToken(
                "a back-channel logout token",
                "its introspected `typ` claim says so",
            ));
        }
    }
    if let (Some(want), Some(iss)) = (issuer, claims.get("iss"))
        && iss.as_str() != Some(want)
    {
        return Err(TokenError::Issuer);
    }
    if let Some(exp) = claims.get("exp") {
        let exp = exp.as_i64().ok_or(TokenError::Malformed)?;
        if exp + (LEEWAY as i64) < now() {
            return Err(TokenError::Expired);
        }
    }
    if let Some(nbf) = claims.get("nbf").and_then(Value::as_i64)
        && nbf - (LEEWAY as i64) > now()
    {
        return Err(TokenError::NotYetValid);
    }
    let in_audiences = |v: &Value| v.as_str().is_some_and(|s| audiences.iter().any(|a| a == s));
    match claims.get("aud") {
        Some(Value::Array(a)) if a.iter().any(in_audiences) => {}
        Some(v @ Value::String(_)) if in_audiences(v) => {}
        Some(_) => return Err(TokenError::Audience),
        None => {
            // Without `aud`, only an answer that says "access token" counts, and only when it
            // was issued to the API itself (its `client_id` is one of the audiences).
            if !access {
                return Err(TokenError::NotAccessToken(
                    "probably a refresh token",
                    "its introspection answer has neither `aud` nor an access-token `token_type`",
                ));
            }
            if !claims.get("client_id").is_some_and(in_audiences) {
                return Err(TokenError::Audience);
            }
        }
    }
    Ok(())
}

enum Kind {
    Access,
    Refresh,
    Id,
    Other,
}

/// RFC 7662 `token_type`: RFC 6749 §7.1 types (`Bearer`), the hint names of RFC 7009
/// (`access_token`, `refresh_token`) and RFC 8693 URNs, all case-insensitive.
fn token_type(t: &str) -> Kind {
    const URN: &str = "urn:ietf:params:oauth:token-type:";
    let name = t
        .get(..URN.len())
        .filter(|p| p.eq_ignore_ascii_case(URN))
        .map_or(t, |_| &t[URN.len()..]);
    let is = |k: &str| name.eq_ignore_ascii_case(k);
    if is("bearer") || is("access_token") {
        Kind::Access
    } else if is("refresh_token") {
        Kind::Refresh
    } else if is("id_token") {
        Kind::Id
    } else {
        Kind::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn m(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn answer_checks() {
        let aud = vec!["api".to_string()];
        let iss = Some("https://op");
        let ok = json!({"active": true, "iss": "https://op", "aud": "api", "exp": now() + 100});
        assert!(check(&m(ok), iss, &aud).is_ok());
        assert!(matches!(
            check(&m(json!({"active": false})), iss, &aud),
            Err(TokenError::Inactive)
        ));
        assert!(matches!(
            check(&m(json!({"active": "true", "aud": "api"})), iss, &aud),
            Err(TokenError::Inactive)
        ));
        assert!(matches!(
            check(
                &m(json!({"active": true, "iss": "https://x", "aud": "api"})),
                iss,
                &aud
            ),
            Err(TokenError::Issuer)
        ));
        assert!(matches!(
            check(&m(json!({"active": true, "aud": ["x", "y"]})), iss, &aud),
            Err(TokenError::Audience)
        ));
        assert!(check(&m(json!({"active": true, "aud": ["x", "api"]})), iss, &aud).is_ok());
        assert!(matches!(
            check(
                &m(json!({"active": true, "aud": "api", "exp": now() - 1000})),
                iss,
                &aud
            ),
            Err(TokenError::Expired)
        ));
        // no aud: only an access token issued to the API itself
        assert!(matches!(
            check(
                &m(json!({"active": true, "client_id": "other", "token_type": "Bearer"})),
                iss,
                &aud
            ),
            Err(TokenError::Audience)
        ));
        assert!(
            check(
                &m(json!({"active": true, "client_id": "api", "token_type": "Bearer"})),
                iss,
                &aud
            )
            .is_ok()
        );
    }

    /// Attack: a refresh token (oidc-provider: active, the client's `client_id`, no `aud`, no
    /// `token_type`) presented as a bearer token; `token_type` decides when `aud` is missing.
    #[test]
    fn refresh_tokens_are_not_access_tokens() {
        let aud = vec!["web".to_string()];
        let iss = Some("https://op");
        let answer = |extra: Value| {
            let mut v = m(json!({"active": true, "iss": "https://op", "client_id": "web"}));
            v.extend(m(extra));
            check(&v, iss, &aud)
        };
        let refused = |extra: Value, kind: &str| match answer(extra.clone()) {
            Err(TokenError::NotAccessToken(k, _)) if k.contains(kind) => {}
            other => panic!("{extra}: {other:?}"),
        };
        refused(json!({"scope": "openid offline_access"}), "refresh token");
        refused(json!({"token_type": "refresh_token"}), "refresh token");
        refused(
            json!({"token_type": "Refresh_Token", "aud": "web"}),
            "refresh token",
        );
        refused(
            json!({"token_type": "urn:ietf:params:oauth:token-type:refresh_token", "aud": "web"}),
            "refresh token",
        );
        refused(
            json!({"token_type": "urn:ietf:params:oauth:token-type:id_token"}),
            "ID token",
        );
        refused(json!({"aud": "web", "typ": "Refresh"}), "refresh token");
        refused(json!({"aud": "web", "typ": "Offline"}), "refresh token");
        refused(json!({"aud": "web", "typ": "ID"}), "ID token");
        refused(json!({"aud": "web", "typ": "Logout"}), "logout token");
        for t in [
            "Bearer",
            "BEARER",
            "access_token",
            "Access_Token",
            "urn:ietf:params:oauth:token-type:access_token",
            "URN:IETF:PARAMS:OAUTH:TOKEN-TYPE:ACCESS_TOKEN",
        ] {
            assert!(answer(json!({"token_type": t})).is_ok(), "{t}");
            assert!(
                answer(json!({"token_type": t, "aud": "web"})).is_ok(),
                "{t}"
            );
        }
        // with aud, an answer without token_type still counts (ZITADEL, Keycloak with typ Bearer)
        assert!(answer(json!({"aud": "web", "typ": "Bearer"})).is_ok());
    }

    /// Attack: a DPoP- or mTLS-bound token (stolen, replayed without its proof) or a token
    /// that is not an access token is presented as a plain bearer token.
    #[test]
    fn sender_constrained_and_non_bearer_tokens_are_refused() {
        let aud = vec!["api".to_string()];
        let iss = Some("https://op");
        let ok = |extra: Value| {
            let mut v = m(json!({"active": true, "iss": "https://op", "aud": "api"}));
            v.extend(m(extra));
            check(&v, iss, &aud)
        };
        assert!(ok(json!({"token_type": "Bearer"})).is_ok());
        assert!(ok(json!({"token_type": "bearer"})).is_ok());
        for bad in [
            json!({"token_type": "DPoP", "cnf": {"jkt": "abc"}}),
            json!({"token_type": "Bearer", "cnf": {"x5t#S256": "abc"}}),
            json!({"cnf": {}}),
            json!({"token_type": "refresh_token"}),
            json!({"token_type": "N_A"}),
            json!({"token_type": 1}),
        ] {
            assert!(ok(bad.clone()).is_err(), "{bad}");
        }
    }
}
