//! `[headers]` (global and per route): the identity header names, the `Authorization` mode, the
//! assertion header and key, claim headers; and the set of names stripped from every request.

use std::path::PathBuf;

use http::HeaderName;

use super::load::{Validator, span};
use super::raw::RawHeaders;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthorizationMode {
    /// The default: `Strip` when a session authenticated the request (the client's header is
    /// not what proved it), `Pass` when a bearer token did.
    Auto,
    Pass,
    Strip,
    AccessToken,
}

impl std::str::FromStr for AuthorizationMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "auto" => AuthorizationMode::Auto,
            "pass" => AuthorizationMode::Pass,
            "strip" => AuthorizationMode::Strip,
            "access_token" => AuthorizationMode::AccessToken,
            other => {
                return Err(format!(
                    "unknown value {other:?}: use \"auto\", \"pass\", \"strip\" or \"access_token\""
                ));
            }
        })
    }
}

/// Resolved identity header names for one route (`None` = disabled).
#[derive(Debug, Clone)]
pub struct HeaderConfig {
    pub user: Option<HeaderName>,
    pub email: Option<HeaderName>,
    pub preferred_username: Option<HeaderName>,
    pub name: Option<HeaderName>,
    pub roles: Option<HeaderName>,
    /// Comma-separated ids of the organizations that granted the user any role (ZITADEL).
    pub orgs: Option<HeaderName>,
    pub access_token: Option<HeaderName>,
    pub authorization: AuthorizationMode,
    pub assertion: Option<HeaderName>,
    pub assertion_key_file: Option<PathBuf>,
    /// (header, claim path)
    pub claims: Vec<(HeaderName, String)>,
}

impl HeaderConfig {
    pub fn defaults() -> Self {
        HeaderConfig {
            user: Some(HeaderName::from_static("x-forwarded-user")),
            email: Some(HeaderName::from_static("x-forwarded-email")),
            preferred_username: Some(HeaderName::from_static("x-forwarded-preferred-username")),
            name: Some(HeaderName::from_static("x-forwarded-name")),
            roles: Some(HeaderName::from_static("x-forwarded-roles")),
            orgs: Some(HeaderName::from_static("x-forwarded-orgs")),
            access_token: None,
            authorization: AuthorizationMode::Auto,
            assertion: None,
            assertion_key_file: None,
            claims: Vec::new(),
        }
    }

    /// Every header name this config writes.
    pub fn names(&self) -> impl Iterator<Item = &HeaderName> {
        [
            &self.user,
            &self.email,
            &self.preferred_username,
            &self.name,
            &self.roles,
            &self.orgs,
            &self.access_token,
            &self.assertion,
        ]
        .into_iter()
        .flatten()
        .chain(self.claims.iter().map(|(h, _)| h))
    }
}

/// Default identity header names; always stripped from incoming requests.
pub const DEFAULT_IDENTITY_HEADERS: &[&str] = &[
    "x-forwarded-user",
    "x-forwarded-email",
    "x-forwarded-preferred-username",
    "x-forwarded-name",
    "x-forwarded-roles",
    "x-forwarded-orgs",
    "x-forwarded-groups",
    "x-forwarded-access-token",
    "x-auth-request-user",
    "x-auth-request-email",
    "x-auth-request-preferred-username",
    "x-auth-request-groups",
    "x-auth-request-access-token",
    "x-portcullis-assertion",
];

/// Folds a header name the way upstream frameworks do: lower case, `_` read as `-`.
pub fn fold_header_name(name: &str) -> String {
    name.bytes()
        .map(|b| {
            if b == b'_' {
                '-'
            } else {
                b.to_ascii_lowercase() as char
            }
        })
        .collect()
}

impl Validator<'_, '_> {
    pub(super) fn headers(&mut self, h: &RawHeaders, base: Option<&HeaderConfig>) -> HeaderConfig {
        let mut out = base.cloned().unwrap_or_else(HeaderConfig::defaults);
        let prefix = if base.is_some() {
            "route.headers"
        } else {
            "headers"
        };
        macro_rules! name {
            ($field:ident) => {
                if let Some(v) = &h.$field {
                    if let Some(n) =
                        self.header_name(v, &format!("{prefix}.{}", stringify!($field)))
                    {
                        out.$field = n;
                    }
                }
            };
        }
        name!(user);
        name!(email);
        name!(preferred_username);
        name!(name);
        name!(roles);
        name!(orgs);
        name!(access_token);
        name!(assertion);
        if let Some(a) = &h.authorization {
            out.authorization = a.0;
        }
        if let Some(f) = &h.assertion_key_file
            && let Some((p, bytes)) = self.readable(f, &format!("{prefix}.assertion_key_file"))
        {
            if jsonwebtoken::EncodingKey::from_ec_pem(&bytes).is_err() {
                self.errs.at(
                    span(f),
                    format!("{prefix}.assertion_key_file"),
                    "not a PEM (PKCS#8) EC P-256 private key",
                );
            }
            out.assertion_key_file = Some(p);
        }
        for (header, claim) in &h.claims {
            match HeaderName::from_bytes(header.as_bytes()) {
                Ok(n) => {
                    out.claims.retain(|(x, _)| x != n);
                    if !claim.get_ref().is_empty() {
                        out.claims.push((n, claim.get_ref().0.clone()));
                    }
                }
                Err(_) => self.errs.at(
                    span(claim),
                    format!("{prefix}.claims"),
                    format!("{header:?} is not a valid header name"),
                ),
            }
        }
        out
    }
}
