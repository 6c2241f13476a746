//! Who a user is according to the provider's tokens — the one derivation of a session's
//! identity, used by the callback and by every refresh: the ID token's verified claims
//! ([`crate::provider::id_token`]), userinfo merged over them, roles per `roles_claim`, and
//! only the claims routes need.

use std::collections::HashSet;

use serde_json::{Map, Value};

pub(crate) use crate::provider::id_token::Expect;
use crate::provider::id_token::{IdTokenError, verify_id_token};
use crate::provider::{Metadata, ProviderError, ProviderRuntime};

/// What a login sets in a session and every refresh sets again.
pub(crate) struct Derived {
    pub sub: String,
    pub email: Option<String>,
    pub name: Option<String>,
    pub preferred_username: Option<String>,
    pub sid: Option<String>,
    /// The ID token's `iss` (verified against the provider's `issuer` when one is configured).
    pub iss: Option<String>,
    pub roles: Vec<String>,
    /// The rule `roles` came from ([`crate::provider::roles_rule`]).
    pub roles_rule: String,
    /// Only the claims routes need.
    pub claims: Map<String, Value>,
}

/// Why the identity could not be derived. `Display` is safe to show on the login page.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DeriveError {
    /// The provider could not be reached (login answers 503).
    #[error(transparent)]
    Unavailable(ProviderError),
    /// The ID token failed a check (login answers 400 naming it; a refresh ends the session).
    #[error(transparent)]
    IdToken(IdTokenError),
    #[error("the sign-in service sent no ID token")]
    NoIdToken,
    #[error("the refresh response has no ID token and the provider no userinfo endpoint")]
    NothingFresh,
    #[error("the ID token has no sub")]
    NoSubject,
    #[error("userinfo is about another subject")]
    UserinfoSubject,
    #[error("userinfo failed")]
    UserinfoFailed,
}

/// The identity in `id_token` (verified) and userinfo, for a login or a refresh.
///
/// At a refresh ([`Expect::Refresh`]) the subject must stay the session's, in the ID token
/// and in userinfo alike, and userinfo that cannot be fetched is fatal; at login an answer
/// other than "unavailable" falls back to the fresh ID token's claims. A refresh response
/// without an ID token (OIDC Core 12.2 allows it) leaves userinfo as the only fresh source: the
/// identity is read from userinfo alone. The stored ID token's claims are not carried over —
/// they are as old as the login, and merging fresh userinfo over them would keep a role claim
/// the provider has since dropped (ZITADEL omits the claim of a user without roles). Without a
/// userinfo endpoint there is nothing fresh to read, and the refresh fails.
pub(crate) async fn derive_identity(
    p: &ProviderRuntime,
    md: &Metadata,
    id_token: Option<&str>,
    access_token: &str,
    expect: Expect<'_>,
    needed_claims: &HashSet<String>,
) -> Result<Derived, DeriveError> {
    let mut claims = match (id_token, &expect) {
        (Some(idt), _) => match verify_id_token(p, idt, access_token, expect).await {
            Ok(c) => c,
            Err(IdTokenError::Unavailable(e)) => return Err(DeriveError::Unavailable(e)),
            Err(e) => return Err(DeriveError::IdToken(e)),
        },
        (None, Expect::Login { .. }) => return Err(DeriveError::NoIdToken),
        (None, Expect::Refresh { sub }) => {
            if md.userinfo_endpoint.is_none() {
                return Err(DeriveError::NothingFresh);
            }
            Map::from_iter([("sub".into(), Value::from(*sub))])
        }
    };
    let sub = claims
        .get("sub")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if sub.is_empty() {
        return Err(DeriveError::NoSubject);
    }
    if md.userinfo_endpoint.is_some() {
        match p.userinfo(access_token).await {
            Ok(ui) => {
                if ui.get("sub").and_then(Value::as_str) != Some(sub.as_str()) {
                    return Err(DeriveError::UserinfoSubject);
                }
                merge_userinfo(&mut claims, ui);
            }
            Err(e @ ProviderError::Unavailable { .. }) => {
                return Err(DeriveError::Unavailable(e));
            }
            Err(e) if matches!(expect, Expect::Refresh { .. }) => {
                tracing::warn!(error = %e, "userinfo failed after a refresh");
                return Err(DeriveError::UserinfoFailed);
            }
            Err(e) => {
                tracing::warn!(error = %e, "userinfo failed; using the ID token's claims")
            }
        }
    }
    let roles = p.roles(&claims);
    let s = |k: &str| claims.get(k).and_then(Value::as_str).map(str::to_string);
    Ok(Derived {
        email: s("email"),
        name: s("name"),
        preferred_username: s("preferred_username"),
        sid: s("sid"),
        iss: s("iss"),
        roles,
        roles_rule: crate::provider::roles_rule(&p.config),
        claims: claims
            .iter()
            .filter(|(k, _)| needed_claims.contains(*k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        sub,
    })
}

/// Merges a userinfo answer over ID token claims; the ID token's protocol claims stay. An
/// `email` and its `email_verified` come from one source: a userinfo email other than the ID
/// token's, without its own `email_verified`, drops the ID token's (which was about the other
/// address), so email rules do not count it as verified.
fn merge_userinfo(claims: &mut Map<String, Value>, userinfo: Map<String, Value>) {
    if let Some(email) = userinfo.get("email")
        && !userinfo.contains_key("email_verified")
        && claims.get("email") != Some(email)
    {
        claims.remove("email_verified");
    }
    for (k, v) in userinfo {
        if !matches!(
            k.as_str(),
            "iss" | "aud" | "exp" | "iat" | "nbf" | "nonce" | "sub" | "azp" | "at_hash" | "c_hash"
        ) {
            claims.insert(k, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Userinfo wins for profile and role claims; the ID token's protocol claims stay.
    #[test]
    fn userinfo_merges_over_id_token_claims() {
        let mut claims = json!({"sub": "alice", "iss": "http://op", "aud": "c", "email": "old@x",
            "roles": ["admin"], "sid": "s1"})
        .as_object()
        .cloned()
        .unwrap();
        let ui = json!({"sub": "alice", "iss": "http://evil", "aud": "other", "email": "new@x",
            "roles": ["reader"]})
        .as_object()
        .cloned()
        .unwrap();
        let mut verified = claims.clone();
        verified.insert("email_verified".into(), Value::Bool(true));
        merge_userinfo(&mut verified, ui.clone());
        assert_eq!(
            verified.get("email_verified"),
            None,
            "about old@x, not new@x"
        );
        merge_userinfo(&mut claims, ui);
        assert_eq!(claims["email"], "new@x");
        assert_eq!(claims["roles"], json!(["reader"]));
        assert_eq!(claims["iss"], "http://op");
        assert_eq!(claims["aud"], "c");
        assert_eq!(claims["sid"], "s1");
    }
}
