//! Who the caller is: the [`Identity`] a session or a token proves, and what a successful
//! authentication hands the pipeline ([`Authenticated`]). Plain data: the authentication stage
//! ([`crate::auth`]) makes these, authorization ([`crate::authz`]) and the identity headers
//! ([`crate::headers`]) read them.

use std::sync::Arc;

use serde_json::{Map, Value};

/// Who the caller is, as proven by a session or a token.
#[derive(Debug, Clone, Default)]
pub struct Identity {
    pub sub: String,
    pub email: Option<String>,
    pub name: Option<String>,
    pub preferred_username: Option<String>,
    pub roles: Vec<String>,
    /// Which organizations granted which roles (ZITADEL), and the user's own organization.
    pub org_roles: crate::claims::OrgRoles,
    /// All claims (ID token + userinfo, or the access token / introspection response).
    pub claims: Map<String, Value>,
    /// The access token that proved it (bearer) or the session's access token (login).
    pub access_token: Option<String>,
    /// Unix seconds when the proof expires.
    pub expires_at: Option<i64>,
    /// Name of the provider that vouched for it.
    pub provider: Arc<str>,
    pub via: Via,
    /// The identity headers' values, sanitized on first use: cached identities (validated
    /// tokens, opened sessions) are injected on every request without copying them again.
    pub header_values: Memo<HeaderValues>,
}

impl Identity {
    /// The email to vouch for (identity header, assertion, `/.auth/me`): none when the
    /// provider says it is not verified (`email_verified: false`, or the string `"false"` some
    /// providers send) — an address anyone could have typed in at a self-service provider.
    /// Absent `email_verified` (many providers only send verified addresses) keeps the email.
    pub fn verified_email(&self) -> Option<&str> {
        let unverified = match self.claims.get("email_verified") {
            Some(Value::Bool(v)) => !v,
            Some(Value::String(s)) => s.trim().eq_ignore_ascii_case("false"),
            _ => false,
        };
        if unverified {
            None
        } else {
            self.email.as_deref()
        }
    }
}

/// Sanitized header values of an [`Identity`] (see `headers::inject`).
#[derive(Debug, Default)]
pub struct HeaderValues {
    pub sub: Option<http::HeaderValue>,
    pub email: Option<http::HeaderValue>,
    pub name: Option<http::HeaderValue>,
    pub preferred_username: Option<http::HeaderValue>,
    /// Comma-separated; `None` without roles.
    pub roles: Option<http::HeaderValue>,
    /// Comma-separated organization ids; `None` without org grants.
    pub orgs: Option<http::HeaderValue>,
    /// Only when a route forwards it (a ~1 KB copy otherwise made for nothing).
    pub access_token: std::sync::OnceLock<Option<http::HeaderValue>>,
}

/// A value derived on first use from the struct that holds it. A clone starts empty (a clone
/// is made to be changed), and code that changes the holder in place must [`Memo::clear`] it:
/// `Arc::make_mut` does not clone a value nobody else holds.
pub struct Memo<T>(std::sync::OnceLock<T>);

impl<T> Memo<T> {
    pub fn get_or_init(&self, f: impl FnOnce() -> T) -> &T {
        self.0.get_or_init(f)
    }

    /// Forgets the derived value (its holder changed).
    pub fn clear(&mut self) {
        self.0 = std::sync::OnceLock::new();
    }
}

impl<T> Default for Memo<T> {
    fn default() -> Self {
        Memo(std::sync::OnceLock::new())
    }
}

impl<T> Clone for Memo<T> {
    fn clone(&self) -> Self {
        Memo::default()
    }
}

/// Derived data: never part of a comparison.
impl<T> PartialEq for Memo<T> {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl<T> std::fmt::Debug for Memo<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.get().is_some() {
            "Memo(set)"
        } else {
            "Memo(empty)"
        })
    }
}

/// A successful authentication.
pub struct Authenticated {
    /// Shared: a cached identity is handed out without a deep copy of its claims.
    pub identity: Arc<Identity>,
    /// Set-Cookie values the response must carry (a session that was refreshed or slid).
    pub set_cookie: Vec<http::HeaderValue>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Via {
    #[default]
    Session,
    Bearer,
}
