//! `[providers.NAME]`: issuer or explicit endpoints, client credentials (secrets, ZITADEL key
//! files parsed here), scopes, audiences, roles claim, introspection, the provider's trust anchor.

use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;
use url::Url;

use super::load::{Validator, span};
use super::raw::RawProvider;
use super::values::{self, Secret};
use crate::tls_client::CaFile;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenEndpointAuth {
    ClientSecretBasic,
    ClientSecretPost,
    PrivateKeyJwt,
    /// Public client: PKCE only, no client authentication.
    None,
}

impl std::str::FromStr for TokenEndpointAuth {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "client_secret_basic" => TokenEndpointAuth::ClientSecretBasic,
            "client_secret_post" => TokenEndpointAuth::ClientSecretPost,
            "private_key_jwt" => TokenEndpointAuth::PrivateKeyJwt,
            "none" => TokenEndpointAuth::None,
            other => {
                return Err(format!(
                    "unknown value {other:?}: use \"client_secret_basic\", \"client_secret_post\", \"private_key_jwt\" or \"none\""
                ));
            }
        })
    }
}

/// A key file as ZITADEL issues it for an application or service account:
/// `{"type","keyId","key" (PEM RSA private key),"appId","clientId"}` (or `userId`).
#[derive(Clone, Deserialize)]
pub struct ZitadelKey {
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(rename = "keyId")]
    pub key_id: String,
    pub key: String,
    #[serde(rename = "appId", default)]
    pub app_id: Option<String>,
    #[serde(rename = "clientId", default)]
    pub client_id: Option<String>,
    #[serde(rename = "userId", default)]
    pub user_id: Option<String>,
    /// `key` parsed, set at config load (`None` only for a key built elsewhere, e.g. in tests).
    #[serde(skip)]
    pub signing_key: Option<jsonwebtoken::EncodingKey>,
}

impl ZitadelKey {
    /// The identity the key asserts: `clientId` for applications, `userId` for service accounts.
    pub fn subject(&self) -> Option<&str> {
        self.client_id.as_deref().or(self.user_id.as_deref())
    }
}

impl std::fmt::Debug for ZitadelKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZitadelKey")
            .field("type", &self.kind)
            .field("key_id", &self.key_id)
            .field("client_id", &self.subject())
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RolesClaim {
    /// Union of the well-known places (DESIGN.md, Roles).
    Auto,
    /// A claim name, or a dotted path into nested objects.
    Path(String),
}

/// `"auto"` (or empty): [`RolesClaim::Auto`]; anything else is a claim path.
impl std::str::FromStr for RolesClaim {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "" | "auto" => RolesClaim::Auto,
            path => RolesClaim::Path(path.to_string()),
        })
    }
}

#[derive(Debug, Clone)]
pub struct Provider {
    pub name: String,
    /// The issuer exactly as configured (compared byte for byte with `iss`).
    pub issuer: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<Secret>,
    pub private_key: Option<ZitadelKey>,
    pub scopes: Vec<String>,
    pub audiences: Vec<String>,
    pub roles_claim: RolesClaim,
    /// ZITADEL project whose project-scoped roles claim counts under `roles_claim = "auto"`.
    pub project_id: Option<String>,
    pub token_endpoint_auth: TokenEndpointAuth,
    pub authorization_endpoint: Option<Url>,
    pub token_endpoint: Option<Url>,
    pub userinfo_endpoint: Option<Url>,
    pub jwks_uri: Option<Url>,
    pub end_session_endpoint: Option<Url>,
    pub ca_file: Option<CaFile>,
    pub introspection: Option<Introspection>,
    pub timeout: Duration,
    /// Extension: cache validated JWT access tokens (keyed by SHA-256, never beyond `exp`).
    pub token_cache: bool,
    /// Whether any route uses this provider for browser login.
    pub used_for_login: bool,
}

impl Provider {
    /// True when the endpoints are given explicitly and discovery is skipped.
    pub fn explicit_endpoints(&self) -> bool {
        self.issuer.is_none()
            || (self.authorization_endpoint.is_some()
                && self.token_endpoint.is_some()
                && self.userinfo_endpoint.is_some()
                && self.jwks_uri.is_some())
    }
}

#[derive(Debug, Clone)]
pub enum IntrospectionAuth {
    /// RFC 7523 `private_key_jwt` signed with a ZITADEL key file.
    KeyFile(ZitadelKey),
    /// client_secret_basic.
    Basic {
        client_id: String,
        client_secret: Secret,
    },
}

#[derive(Debug, Clone)]
pub struct Introspection {
    pub endpoint: Option<Url>,
    pub auth: IntrospectionAuth,
    pub cache: Duration,
    /// Calls to the introspection endpoint in flight at once (≥ 1).
    pub max_concurrent: usize,
}

impl Validator<'_, '_> {
    fn zitadel_key(&mut self, v: &Spanned<values::Str>, key: &str) -> Option<ZitadelKey> {
        let (p, bytes) = self.readable(v, key)?;
        let mut k: ZitadelKey = match serde_json::from_slice(&bytes) {
            Ok(k) => k,
            Err(e) => {
                self.errs.at(
                    span(v),
                    key,
                    format!(
                        "{} is not a ZITADEL key file ({e}); expected JSON with \"type\", \"keyId\", \"key\" and \"clientId\" (or \"userId\")",
                        p.display()
                    ),
                );
                return None;
            }
        };
        match jsonwebtoken::EncodingKey::from_rsa_pem(k.key.as_bytes()) {
            Ok(signing) => k.signing_key = Some(signing),
            Err(e) => {
                self.errs.at(
                    span(v),
                    key,
                    format!(
                        "the \"key\" in {} is not a PEM RSA private key ({e})",
                        p.display()
                    ),
                );
                return None;
            }
        }
        if k.subject().is_none() {
            self.errs.at(
                span(v),
                key,
                format!("{} has neither \"clientId\" nor \"userId\"", p.display()),
            );
            return None;
        }
        Some(k)
    }

    pub(super) fn provider(
        &mut self,
        name: &str,
        sp: &Spanned<RawProvider>,
        used_for_login: bool,
    ) -> Option<Provider> {
        let p = sp.get_ref();
        let k = |f: &str| format!("providers.{name}.{f}");
        let issuer = p
            .issuer
            .as_ref()
            .and_then(|i| self.url(i, &k("issuer")).map(|_| i.get_ref().0.clone()));
        let ep = |this: &mut Self, v: &Option<Spanned<values::Str>>, f: &str| {
            v.as_ref().and_then(|v| this.url(v, &k(f)))
        };
        let authorization_endpoint = ep(self, &p.authorization_endpoint, "authorization_endpoint");
        let token_endpoint = ep(self, &p.token_endpoint, "token_endpoint");
        let userinfo_endpoint = ep(self, &p.userinfo_endpoint, "userinfo_endpoint");
        let jwks_uri = ep(self, &p.jwks_uri, "jwks_uri");
        let end_session_endpoint = ep(self, &p.end_session_endpoint, "end_session_endpoint");
        let explicit = [
            p.authorization_endpoint.is_some(),
            p.token_endpoint.is_some(),
            p.userinfo_endpoint.is_some(),
            p.jwks_uri.is_some(),
        ];
        let n_explicit = explicit.iter().filter(|b| **b).count();
        if p.issuer.is_none() && p.jwks_uri.is_none() {
            self.errs.at(
                span(sp),
                format!("providers.{name}"),
                "set `issuer` (discovery) or at least `jwks_uri` (bearer-only provider)",
            );
        }
        if used_for_login && p.issuer.is_none() && n_explicit != 4 {
            self.errs.at(
                span(sp),
                format!("providers.{name}"),
                "a provider used by login routes needs `issuer`, or all four of authorization_endpoint, token_endpoint, userinfo_endpoint and jwks_uri",
            );
        }
        if p.issuer.is_some() && n_explicit > 0 && n_explicit < 4 && used_for_login {
            self.errs.at(
                span(sp),
                format!("providers.{name}"),
                "explicit endpoints go all four together (authorization_endpoint, token_endpoint, userinfo_endpoint, jwks_uri); give all four or none to use discovery",
            );
        }
        let client_id = p.client_id.as_ref().map(|c| c.get_ref().0.clone());
        if used_for_login && client_id.as_deref().is_none_or(str::is_empty) {
            self.errs.at(
                span(sp),
                k("client_id"),
                "a provider used by login routes needs `client_id`",
            );
        }
        let client_secret = self.secret(
            p.client_secret.clone(),
            None,
            p.client_secret_file.as_ref(),
            &k("client_secret"),
        );
        let private_key = p
            .private_key_file
            .as_ref()
            .and_then(|f| self.zitadel_key(f, &k("private_key_file")));
        let token_endpoint_auth = match &p.token_endpoint_auth {
            Some(t) => t.0,
            None if private_key.is_some() => TokenEndpointAuth::PrivateKeyJwt,
            None if client_secret.is_some() => TokenEndpointAuth::ClientSecretBasic,
            None => TokenEndpointAuth::None,
        };
        match token_endpoint_auth {
            TokenEndpointAuth::PrivateKeyJwt
                if private_key.is_none() && p.private_key_file.is_none() =>
            {
                self.errs.at(
                    span(sp),
                    k("token_endpoint_auth"),
                    "private_key_jwt needs `private_key_file` (a ZITADEL key JSON)",
                );
            }
            TokenEndpointAuth::ClientSecretBasic | TokenEndpointAuth::ClientSecretPost
                if client_secret.is_none() && p.client_secret_file.is_none() =>
            {
                self.errs.at(
                    span(sp),
                    k("client_secret"),
                    "this token_endpoint_auth needs `client_secret` or `client_secret_file`",
                );
            }
            _ => {}
        }
        let ca_file = p
            .ca_file
            .as_ref()
            .and_then(|f| self.ca_file(f, &k("ca_file")));
        let introspection = p.introspection.as_ref().and_then(|i| {
            let ir = i.get_ref();
            let endpoint = ir.endpoint.as_ref().and_then(|e| self.url(e, &k("introspection.endpoint")));
            let secret = self.secret(
                ir.client_secret.clone(),
                None,
                ir.client_secret_file.as_ref(),
                &k("introspection.client_secret"),
            );
            let auth = if let Some(f) = &ir.key_file {
                IntrospectionAuth::KeyFile(self.zitadel_key(f, &k("introspection.key_file"))?)
            } else {
                let id = ir.client_id.as_ref().map(|c| c.0.clone()).or(client_id.clone());
                let secret = secret.or(client_secret.clone());
                match (id, secret) {
                    (Some(client_id), Some(client_secret)) => IntrospectionAuth::Basic { client_id, client_secret },
                    _ => {
                        self.errs.at(
                            span(i),
                            format!("providers.{name}.introspection"),
                            "introspection needs credentials: `key_file` (ZITADEL API app key JSON) or client_id + client_secret",
                        );
                        return None;
                    }
                }
            };
            if issuer.is_none() && endpoint.is_none() {
                self.errs.at(span(i), k("introspection.endpoint"), "without `issuer` (discovery) set `endpoint`");
            }
            let max_concurrent = match &ir.max_concurrent {
                None => 16,
                Some(m) if *m.get_ref() == 0 => {
                    self.errs.at(span(m), k("introspection.max_concurrent"), "must be at least 1");
                    16
                }
                Some(m) => *m.get_ref(),
            };
            Some(Introspection {
                endpoint,
                auth,
                cache: ir.cache.map_or(Duration::from_secs(60), |d| d.0),
                max_concurrent,
            })
        });
        let scopes = p
            .scopes
            .as_ref()
            .map(|s| s.iter().map(|x| x.0.clone()).collect())
            .unwrap_or_else(|| vec!["openid".into(), "profile".into(), "email".into()]);
        let audiences = p
            .audiences
            .as_ref()
            .map(|s| {
                s.iter()
                    .map(|x| x.0.clone())
                    .filter(|x| !x.is_empty())
                    .collect::<Vec<_>>()
            })
            .unwrap_or_else(|| client_id.iter().cloned().collect());
        let roles_claim = p
            .roles_claim
            .as_ref()
            .map_or(RolesClaim::Auto, |r| r.0.clone());
        let project_id = p.project_id.as_ref().and_then(|v| {
            let id = v.get_ref().0.as_str();
            if id.is_empty() || id.contains(':') || id.chars().any(char::is_whitespace) {
                self.errs.at(
                    span(v),
                    k("project_id"),
                    "must be a ZITADEL project id (the number in the console's project URL), without `:` or spaces",
                );
                return None;
            }
            Some(id.to_string())
        });
        Some(Provider {
            name: name.to_string(),
            issuer,
            client_id,
            client_secret,
            private_key,
            scopes,
            audiences,
            roles_claim,
            project_id,
            token_endpoint_auth,
            authorization_endpoint,
            token_endpoint,
            userinfo_endpoint,
            jwks_uri,
            end_session_endpoint,
            ca_file,
            introspection,
            timeout: p.timeout.map_or(Duration::from_secs(10), |d| d.0),
            token_cache: p.token_cache.unwrap_or(true),
            used_for_login,
        })
    }
}
