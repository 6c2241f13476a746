//! The checks of the tokens a provider sends about a browser user: the ID token (OpenID
//! Connect Core 1.0 §3.1.3.7, at login and at every refresh, §12.2) and the back-channel logout
//! token (Back-Channel Logout 1.0 §2.6). One function per token walks the specification's
//! validation steps in order, each numbered as the specification numbers it, each failure its
//! own error variant — so the verifier can be read against the specification line by line.
//!
//! The steps shared with every JWT (signature, `alg` pinned by the key, `iss`, `aud`, `exp`,
//! `nbf`, `iat`, refused header members) are [`ProviderRuntime::verify_jwt`] ([`super::jwks`]);
//! what is specific to these two tokens is here. Failures name the check, never the token.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde_json::{Map, Value};
use subtle::ConstantTimeEq;

use super::{ProviderError, ProviderRuntime, TokenError};

/// What an ID token must be bound to, besides this client and its provider.
#[derive(Clone, Copy)]
pub enum Expect<'a> {
    /// The login's token: the nonce this browser's authentication request sent.
    Login { nonce: &'a str },
    /// A refreshed token: the subject of the session being refreshed (§12.2).
    Refresh { sub: &'a str },
}

/// Why an ID token was refused. `Display` is what the login page shows (and the log says).
#[derive(Debug, thiserror::Error)]
pub enum IdTokenError {
    /// The provider's keys could not be fetched: the login answers 503, a refresh keeps the
    /// session for a later attempt.
    #[error(transparent)]
    Unavailable(ProviderError),
    /// Steps 1–3 and 6–10: the JWT checks ([`ProviderRuntime::verify_jwt`]).
    #[error("the ID token is not valid")]
    Invalid(TokenError),
    /// Steps 4–5: several audiences, and `azp` does not name this client.
    #[error("the ID token azp does not name this client")]
    AuthorizedParty,
    /// Step 11: the nonce is missing or not the one this browser's login sent.
    #[error("the ID token nonce does not match")]
    Nonce,
    /// §3.1.3.8 (and §3.2.2.9): `at_hash` does not match the access token sent with it.
    #[error("the ID token at_hash does not match the access token")]
    AccessTokenHash,
    /// §2: `sub` is required.
    #[error("the ID token has no sub")]
    NoSubject,
    /// §12.2: a refreshed ID token must be about the session's subject.
    #[error("the refreshed ID token is about another subject")]
    OtherSubject,
}

/// Verifies an ID token from `p`'s token endpoint (sent with `access_token`) and returns its
/// claims, `sub` a non-empty string among them.
pub async fn verify_id_token(
    p: &ProviderRuntime,
    id_token: &str,
    access_token: &str,
    expect: Expect<'_>,
) -> Result<Map<String, Value>, IdTokenError> {
    let client_id = p.config.client_id.clone().unwrap_or_default();
    // 1. Encrypted ID tokens are not supported (no encryption keys are registered): the
    //    token must be a JWS, which step 6 checks.
    // 2. `iss` must be the provider's issuer, byte for byte;
    // 3. `aud` must contain this client's client_id;
    // 6. the signature must verify with the provider's keys (received straight from the
    //    token endpoint over TLS, and verified anyway);
    // 7. `alg` must be the algorithm of the provider's key (never `none`, never chosen by
    //    the token);
    // 8. MAC algorithms (HS*) are refused: the client secret signs nothing here;
    // 9. `exp` must be in the future (with the JWT verifier's leeway);
    // 10. `iat` (and `nbf`) must not be in the future.
    let claims = match p
        .verify_jwt(id_token, std::slice::from_ref(&client_id))
        .await
    {
        Ok(c) => c,
        Err(TokenError::Unavailable(e)) => return Err(IdTokenError::Unavailable(e)),
        Err(e) => {
            tracing::warn!(error = %e, "ID token refused");
            return Err(IdTokenError::Invalid(e));
        }
    };
    // 4. With several audiences, `azp` must be present, and
    // 5. name this client. (With a single audience `azp` is not compared.)
    if let Some(Value::Array(aud)) = claims.get("aud")
        && aud.len() > 1
        && claims.get("azp").and_then(Value::as_str) != Some(client_id.as_str())
    {
        return Err(IdTokenError::AuthorizedParty);
    }
    // 11. The nonce binds the login's ID token to this browser's request (compared in
    //     constant time). A refreshed ID token SHOULD NOT carry one (§12.2) and is bound by
    //     the refresh token and the subject check below instead.
    if let Expect::Login { nonce } = expect {
        let nonce_ok = claims
            .get("nonce")
            .and_then(Value::as_str)
            .is_some_and(|n| bool::from(n.as_bytes().ct_eq(nonce.as_bytes())));
        if !nonce_ok {
            return Err(IdTokenError::Nonce);
        }
    }
    // 12. `acr` and 13. `auth_time` are not requested (no `acr_values`, no `max_age`): not
    //     checked.
    // §3.1.3.8: when present, `at_hash` must match the access token it came with.
    if let Some(at_hash) = claims.get("at_hash").and_then(Value::as_str)
        && !at_hash_matches(id_token, access_token, at_hash)
    {
        return Err(IdTokenError::AccessTokenHash);
    }
    // §2: `sub` is required (the JWT verifier checked that it is a string when present).
    let sub = claims.get("sub").and_then(Value::as_str).unwrap_or("");
    if sub.is_empty() {
        return Err(IdTokenError::NoSubject);
    }
    // §12.2: a refresh may not change whom the session is about.
    if let Expect::Refresh { sub: expected } = expect
        && sub != expected
    {
        return Err(IdTokenError::OtherSubject);
    }
    Ok(claims)
}

/// OIDC Core 3.1.3.6: left half of the hash of the access token, hash per the ID token's alg.
pub fn at_hash_matches(id_token: &str, access_token: &str, at_hash: &str) -> bool {
    use sha2::Digest;
    let alg = id_token
        .split('.')
        .next()
        .and_then(|h| B64.decode(h).ok())
        .and_then(|h| serde_json::from_slice::<Value>(&h).ok())
        .and_then(|h| h.get("alg").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_default();
    let digest: Vec<u8> = match alg.get(alg.len().saturating_sub(3)..) {
        Some("256") => sha2::Sha256::digest(access_token.as_bytes()).to_vec(),
        Some("384") => sha2::Sha384::digest(access_token.as_bytes()).to_vec(),
        Some("512") => sha2::Sha512::digest(access_token.as_bytes()).to_vec(),
        _ if alg == "EdDSA" => sha2::Sha512::digest(access_token.as_bytes()).to_vec(),
        _ => return false,
    };
    let want = B64.encode(&digest[..digest.len() / 2]);
    bool::from(want.as_bytes().ct_eq(at_hash.as_bytes()))
}

/// The event a back-channel logout token must carry.
pub const BACKCHANNEL_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// A verified logout token: whom it logs out (at least one of `sid` and `sub`) and its id.
#[derive(Debug)]
pub struct LogoutToken {
    pub sid: Option<String>,
    pub sub: Option<String>,
    pub jti: String,
}

/// Why a logout token was refused. `Display` is the `400` answer's description.
#[derive(Debug, thiserror::Error)]
pub enum LogoutTokenError {
    /// The provider's keys could not be fetched (503: the provider retries).
    #[error(transparent)]
    Unavailable(ProviderError),
    /// Steps 2–4 (signature, `alg`, `iss`, `aud`, `exp`), as for an ID token.
    #[error("{0}")]
    Invalid(TokenError),
    /// Step 4: `iat` is required.
    #[error("logout_token lacks iat")]
    NoIssuedAt,
    /// Step 5: `sid`, `sub` or both.
    #[error("logout_token has neither sid nor sub")]
    NoSubject,
    /// Step 6: the back-channel logout event.
    #[error("logout_token lacks the back-channel logout event")]
    NoEvent,
    /// Step 7: a logout token is not an ID token.
    #[error("logout_token must not carry a nonce")]
    Nonce,
    /// Step 8 needs the `jti` (the replay check itself is the session store's).
    #[error("logout_token lacks jti")]
    NoId,
}

/// Verifies a back-channel logout token signed by `p` for this client (Back-Channel Logout
/// 1.0 §2.6). Steps 8 (replay: the caller remembers `jti` once the logout is done) and 9–11
/// (matching a current session: the logout only reaches sessions of `p` with that `sid` or
/// `sub`) are the caller's.
pub async fn verify_logout_token(
    p: &ProviderRuntime,
    token: &str,
) -> Result<LogoutToken, LogoutTokenError> {
    let client_id = p.config.client_id.clone().unwrap_or_default();
    // 1. Encrypted logout tokens are not supported (no encryption keys are registered).
    // 2. The signature, as for an ID token (3.1.3.7 step 6);
    // 3. `alg` as for an ID token, never `none` (3.1.3.7 steps 7–8);
    // 4. `iss`, `aud` and `exp` as for an ID token (3.1.3.7 steps 2, 3, 9), …
    let claims = match p.verify_jwt(token, &[client_id]).await {
        Ok(c) => c,
        Err(TokenError::Unavailable(e)) => return Err(LogoutTokenError::Unavailable(e)),
        Err(e) => return Err(LogoutTokenError::Invalid(e)),
    };
    // … and `iat`, which a logout token must carry.
    if !claims.get("iat").is_some_and(Value::is_number) {
        return Err(LogoutTokenError::NoIssuedAt);
    }
    // 5. `sid`, `sub` or both (a non-string counts as absent).
    let string = |k: &str| claims.get(k).and_then(Value::as_str).map(str::to_string);
    let (sid, sub) = (string("sid"), string("sub"));
    if sid.is_none() && sub.is_none() {
        return Err(LogoutTokenError::NoSubject);
    }
    // 6. An `events` object with the back-channel logout member.
    let has_event = claims
        .get("events")
        .and_then(Value::as_object)
        .is_some_and(|e| e.contains_key(BACKCHANNEL_EVENT));
    if !has_event {
        return Err(LogoutTokenError::NoEvent);
    }
    // 7. No `nonce` (so an ID token can never pass for a logout token).
    if claims.contains_key("nonce") {
        return Err(LogoutTokenError::Nonce);
    }
    // 8. Replays are refused by `jti`: it must be there.
    let jti = string("jti").ok_or(LogoutTokenError::NoId)?;
    Ok(LogoutToken { sid, sub, jti })
}

/// A string claim of a JWT read without verification — only to pick the provider whose keys
/// must then verify it.
pub fn unverified_claim(jwt: &str, name: &str) -> Option<String> {
    unverified_payload(jwt)?
        .get(name)?
        .as_str()
        .map(str::to_string)
}

/// The `aud` of a JWT, unverified (only to pick the provider that then verifies): a string or
/// an array of strings.
pub fn unverified_audiences(jwt: &str) -> Vec<String> {
    match unverified_payload(jwt).as_ref().and_then(|v| v.get("aud")) {
        Some(Value::String(a)) => vec![a.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    }
}

fn unverified_payload(jwt: &str) -> Option<Value> {
    let payload = jwt.split('.').nth(1)?;
    serde_json::from_slice(&B64.decode(payload).ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_hash_per_alg() {
        use sha2::Digest;
        let header = B64.encode(br#"{"alg":"RS256"}"#);
        let idt = format!("{header}.e30.sig");
        let d = sha2::Sha256::digest(b"token-1");
        let good = B64.encode(&d[..16]);
        assert!(at_hash_matches(&idt, "token-1", &good));
        assert!(!at_hash_matches(&idt, "token-2", &good));
        let none = format!("{}.e30.", B64.encode(br#"{"alg":"none"}"#));
        assert!(!at_hash_matches(&none, "token-1", &good));
    }

    #[test]
    fn unverified_iss() {
        let t = format!("x.{}.y", B64.encode(br#"{"iss":"http://op"}"#));
        assert_eq!(unverified_claim(&t, "iss").as_deref(), Some("http://op"));
        assert_eq!(unverified_claim("garbage", "iss"), None);
    }
}
