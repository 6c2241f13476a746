//! RFC 7662 token introspection for opaque access tokens, authenticated with client_secret_basic
//! or a ZITADEL key file (`private_key_jwt`, RFC 7523).
//!
//! Caching: an active answer is kept for min(`cache`, exp − now) under a key derived from the
//! issuer, the introspection endpoint, the client and the SHA-256 of the token — so a token
//! valid at one provider can never be served from another's entry, and the cache never holds
//! the token itself. Concurrent misses for the same token share one provider call
//! (`try_get_with`). Inactive answers and errors are not cached.
//!
//! Checks on the answer: `active` must be `true`; `token_type`, when present, `Bearer`; no `cnf`
//! (sender-constrained tokens need a proof that is not verified here); `iss`, when present, must be the configured
//! issuer; `exp`, when present, must not be past; `aud`: when present it must contain one of the
//! provider's `audiences`. When absent (oidc-provider and ZITADEL omit it for tokens requested
//! without a resource/audience) the token is accepted only if its `client_id` is one of the
//! `audiences` — i.e. the token was issued to the API itself. Otherwise: 401, never fail open.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::assertion::{ASSERTION_TYPE, ClientKey};
use super::http::{ProviderClient, basic_auth};
use super::jwks::{LEEWAY, now};
use super::{ProviderError, TokenError};
use crate::config::{Introspection, IntrospectionAuth};

/// Introspection answers kept per provider.
const CACHE_ENTRIES: u64 = 20_000;

#[derive(Clone)]
struct Entry {
    claims: Arc<Map<String, Value>>,
    ttl: Duration,
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

struct EntryExpiry;

impl moka::Expiry<[u8; 32], Entry> for EntryExpiry {
    fn expire_after_create(
        &self,
        _k: &[u8; 32],
        v: &Entry,
        _at: std::time::Instant,
    ) -> Option<Duration> {
        Some(v.ttl)
    }
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
    cache: moka::future::Cache<[u8; 32], Entry>,
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
        let cache = moka::future::Cache::builder()
            .max_capacity(CACHE_ENTRIES)
            .expire_after(EntryExpiry)
            .build();
        Ok(Introspector {
            provider: provider.to_string(),
            auth,
            client_id,
            cache_for: cfg.cache,
            cache,
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
        let entry = self
            .cache
            .try_get_with(key, async {
                let claims = self
                    .call(http, endpoint, issuer, audiences, token, timeout)
                    .await?;
                let exp = claims.get("exp").and_then(Value::as_i64);
                let ttl = match exp {
                    Some(e) => Duration::from_secs((e - now()).max(0) as u64).min(self.cache_for),
                    None => self.cache_for,
                };
                Ok::<_, TokenError>(Entry {
                    claims: Arc::new(claims),
                    ttl,
                    until: now() + ttl.as_secs() as i64,
                })
            })
            .await
            .map_err(|e: Arc<TokenError>| (*e).clone())?;
        // Belt and braces: an entry never outlives the token's exp.
        if entry
            .claims
            .get("exp")
            .and_then(Value::as_i64)
            .is_some_and(|e| e + (LEEWAY as i64) < now())
        {
            self.cache.invalidate(&key).await;
            return Err(TokenError::Expired);
        }
        Ok(Introspected {
            claims: entry.claims,
            until: entry.until,
        })
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
    match claims.get("token_type") {
        None => {}
        Some(Value::String(t)) if t.eq_ignore_ascii_case("bearer") => {}
        Some(_) => {
            return Err(TokenError::Other(
                "the token is not a bearer access token (token_type)".into(),
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
            if !claims.get("client_id").is_some_and(in_audiences) {
                return Err(TokenError::Audience);
            }
        }
    }
    Ok(())
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
        // no aud: only a token issued to the API itself
        assert!(matches!(
            check(&m(json!({"active": true, "client_id": "other"})), iss, &aud),
            Err(TokenError::Audience)
        ));
        assert!(check(&m(json!({"active": true, "client_id": "api"})), iss, &aud).is_ok());
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
