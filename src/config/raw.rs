//! The serde mirror of the config file, key for key as DESIGN.md names them. Unknown keys are
//! errors everywhere (`deny_unknown_fields`): a typo in a security proxy's config must stop it.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::Deserialize;
use toml::Spanned;

use super::headers::AuthorizationMode;
use super::provider::{RolesClaim, TokenEndpointAuth};
use super::route::{AuthMode, UpstreamProtocol};
use super::session::StoreKind;
use super::values::{Dur, Parsed, Secret, Str};

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub providers: BTreeMap<String, Spanned<RawProvider>>,
    pub session: Option<Spanned<RawSession>>,
    #[serde(default)]
    pub headers: RawHeaders,
    #[serde(default)]
    pub forward_auth: RawForwardAuth,
    #[serde(default, rename = "route")]
    pub routes: Vec<Spanned<RawRoute>>,
    /// `[[test]]`: policy tests (`portcullis test`, `check`).
    #[serde(default, rename = "test")]
    pub tests: Vec<Spanned<RawTest>>,
    #[serde(default)]
    pub telemetry: RawTelemetry,
}

/// A file of policy tests given with `--tests`: only `[[test]]` tables.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawTestFile {
    #[serde(default, rename = "test")]
    pub tests: Vec<Spanned<RawTest>>,
}

/// An identities file (`portcullis matrix|diff --identities`): `[[identity]]` tables.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawIdentityFile {
    #[serde(default, rename = "identity")]
    pub identities: Vec<Spanned<RawNamedIdentity>>,
}

/// `[[identity]]`: `name`, and `claims` (a table) or `token` (a token file); neither: anonymous.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNamedIdentity {
    pub name: Option<Spanned<Str>>,
    pub claims: Option<Spanned<serde_json::Value>>,
    pub token: Option<Spanned<Str>>,
}

/// `[[test]]`: a request, who sends it, and the decision expected.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTest {
    pub name: Option<Spanned<Str>>,
    /// `"METHOD URL"` (or `"METHOD /path"`).
    pub request: Option<Spanned<Str>>,
    #[serde(default)]
    pub headers: BTreeMap<String, Spanned<Str>>,
    /// `"anonymous"`, a path to a token file, or a table of claims.
    pub identity: Option<Spanned<serde_json::Value>>,
    pub expect: Option<Spanned<RawExpect>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawExpect {
    pub status: Option<Spanned<u16>>,
    pub route: Option<Spanned<Str>>,
    pub reason: Option<Spanned<Str>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawTelemetry {
    pub otlp_endpoint: Option<Spanned<Str>>,
    pub service_name: Option<Spanned<Str>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub listen: Option<Spanned<Parsed<SocketAddr>>>,
    pub public_url: Option<Spanned<Str>>,
    #[serde(default)]
    pub trusted_proxies: Vec<Spanned<Str>>,
    pub admin_listen: Option<Spanned<Parsed<SocketAddr>>>,
    #[serde(default)]
    pub allowed_redirect_hosts: Vec<Spanned<Str>>,
    pub tls: Option<RawTls>,
    // Extensions beyond DESIGN.md (documented in the README).
    /// Prefix of the endpoints the proxy owns (default "/.auth").
    pub auth_prefix: Option<Spanned<Str>>,
    /// Time a client has to send the request head (default 10s).
    pub header_read_timeout: Option<Dur>,
    /// Largest request head accepted (default 32768 bytes); larger → 431.
    pub max_header_bytes: Option<Spanned<usize>>,
    /// How long in-flight requests may finish after SIGTERM (default 30s).
    pub drain_timeout: Option<Dur>,
    /// Client connections open at once on the public listeners (default: from the open-file
    /// limit, see `server::accept`).
    pub max_connections: Option<Spanned<usize>>,
    /// Default upstream timeout for routes without their own (default 60s).
    pub timeout: Option<Dur>,
    /// Extra trust anchor (PEM) for https upstreams.
    pub upstream_ca_file: Option<Spanned<Str>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub listen: Spanned<Parsed<SocketAddr>>,
    pub cert: Spanned<Str>,
    pub key: Spanned<Str>,
    #[serde(default)]
    pub redirect_http: bool,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawProvider {
    pub issuer: Option<Spanned<Str>>,
    pub client_id: Option<Spanned<Str>>,
    pub client_secret: Option<Secret>,
    pub client_secret_file: Option<Spanned<Str>>,
    pub private_key_file: Option<Spanned<Str>>,
    pub scopes: Option<Vec<Str>>,
    pub audiences: Option<Vec<Str>>,
    pub roles_claim: Option<Parsed<RolesClaim>>,
    /// The ZITADEL project whose `urn:zitadel:iam:org:project:<id>:roles` claim counts.
    pub project_id: Option<Spanned<Str>>,
    pub token_endpoint_auth: Option<Parsed<TokenEndpointAuth>>,
    pub authorization_endpoint: Option<Spanned<Str>>,
    pub token_endpoint: Option<Spanned<Str>>,
    pub userinfo_endpoint: Option<Spanned<Str>>,
    pub jwks_uri: Option<Spanned<Str>>,
    /// Extension: RP-initiated logout endpoint when not discovered.
    pub end_session_endpoint: Option<Spanned<Str>>,
    pub ca_file: Option<Spanned<Str>>,
    pub introspection: Option<Spanned<RawIntrospection>>,
    /// Extension: timeout of each call to the provider (default 10s).
    pub timeout: Option<Dur>,
    /// Extension: cache validated JWT access tokens until their exp (default true).
    pub token_cache: Option<bool>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawIntrospection {
    /// Extension: the endpoint when discovery does not name it.
    pub endpoint: Option<Spanned<Str>>,
    pub key_file: Option<Spanned<Str>>,
    pub client_id: Option<Str>,
    pub client_secret: Option<Secret>,
    pub client_secret_file: Option<Spanned<Str>>,
    pub cache: Option<Dur>,
    /// Calls to the introspection endpoint in flight at once (default 16).
    pub max_concurrent: Option<Spanned<usize>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawSession {
    pub secret: Option<Spanned<Secret>>,
    pub secret_file: Option<Spanned<Str>>,
    /// Extension: former secrets still accepted for decryption (rotation).
    #[serde(default)]
    pub previous_secrets: Vec<Spanned<Secret>>,
    pub store: Option<Spanned<Parsed<StoreKind>>>,
    pub redis_url: Option<Spanned<Secret>>,
    pub redis_url_file: Option<Spanned<Str>>,
    /// Extension: the CA (PEM) that signed a `rediss://` server's certificate.
    pub redis_ca_file: Option<Spanned<Str>>,
    /// Extension: `[session.redis]`, Redis behind Sentinel (instead of `redis_url`).
    pub redis: Option<Spanned<RawRedis>>,
    pub cookie_name: Option<Spanned<Str>>,
    pub lifetime: Option<Dur>,
    pub idle_timeout: Option<Dur>,
    /// Extension: how long a replica keeps a session it read from Redis (`"0s"`: off).
    pub local_cache: Option<Spanned<Dur>>,
    pub refresh: Option<bool>,
    pub post_logout_redirect: Option<Spanned<Str>>,
    /// One session across the subdomains of this domain (`Domain` cookie, `__Secure-` name).
    pub cookie_domain: Option<Spanned<Str>>,
}

/// `[session.redis]`: the sentinels to ask for the master of `master_name`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRedis {
    pub sentinels: Option<Spanned<Vec<Spanned<Str>>>>,
    pub master_name: Option<Spanned<Str>>,
    pub db: Option<Spanned<i64>>,
    pub password: Option<Spanned<Secret>>,
    pub password_file: Option<Spanned<Str>>,
    pub sentinel_password: Option<Spanned<Secret>>,
    pub sentinel_password_file: Option<Spanned<Str>>,
    pub tls: Option<bool>,
    pub ca_file: Option<Spanned<Str>>,
}

/// `[forward_auth]` (an extension beyond DESIGN.md, documented in the README).
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawForwardAuth {
    /// Also answer a check's 200 with oauth2-proxy's `X-Auth-Request-*` headers.
    #[serde(default)]
    pub xauthrequest: bool,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawHeaders {
    pub user: Option<Spanned<Str>>,
    pub email: Option<Spanned<Str>>,
    pub preferred_username: Option<Spanned<Str>>,
    pub name: Option<Spanned<Str>>,
    pub roles: Option<Spanned<Str>>,
    /// ZITADEL: the organizations in which the user holds any role.
    pub orgs: Option<Spanned<Str>>,
    pub access_token: Option<Spanned<Str>>,
    pub authorization: Option<Parsed<AuthorizationMode>>,
    pub assertion: Option<Spanned<Str>>,
    /// Extension: PEM (PKCS#8) EC P-256 key signing the assertion; generated at start when absent.
    pub assertion_key_file: Option<Spanned<Str>>,
    #[serde(default)]
    pub claims: BTreeMap<String, Spanned<Str>>,
}

/// `require_org_roles = { org = "<orgId>" | "@user", roles = ["admin"] }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOrgRoles {
    pub org: Option<Spanned<Str>>,
    pub roles: Option<Spanned<Vec<Spanned<Str>>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub name: Option<Spanned<Str>>,
    pub host: Option<Spanned<Str>>,
    pub path: Option<Spanned<Str>>,
    pub methods: Option<Spanned<Vec<Str>>>,
    pub upstream: Option<Spanned<RawUpstream>>,
    pub auth: Option<Spanned<Parsed<AuthMode>>>,
    pub provider: Option<Spanned<Str>>,
    #[serde(default)]
    pub require_roles: Vec<Str>,
    #[serde(default)]
    pub require_any_role: Vec<Str>,
    #[serde(default)]
    pub require_claims: BTreeMap<String, Spanned<serde_json::Value>>,
    /// The identity's verified email must be at one of these domains (or in `require_emails`).
    #[serde(default)]
    pub require_email_domains: Vec<Spanned<Str>>,
    /// The identity's verified email must be one of these (or at a `require_email_domains` domain).
    #[serde(default)]
    pub require_emails: Vec<Spanned<Str>>,
    /// ZITADEL: these roles granted in this organization (`org = "<orgId>"` or `"@user"`).
    pub require_org_roles: Option<Spanned<RawOrgRoles>>,
    pub headers: Option<RawHeaders>,
    pub timeout: Option<Dur>,
    pub websocket: Option<bool>,
    pub strip_prefix: Option<bool>,
    pub preserve_host: Option<bool>,
    /// Extension: extra trust anchor (PEM) for this route's https upstream.
    pub upstream_ca_file: Option<Spanned<Str>>,
    /// Longest gap between two chunks of an upstream's response body (default: none).
    pub read_timeout: Option<Dur>,
    /// `"http1"` (default), `"h2"` or `"auto"` (ALPN) for an `https://` upstream.
    pub upstream_protocol: Option<Spanned<Parsed<UpstreamProtocol>>>,
}

/// `upstream`: one URL, or a list of targets balanced between. The list's elements are
/// interpolated (`${VAR}`) when validated, so that an error points at the element.
#[derive(Debug)]
pub enum RawUpstream {
    One(Str),
    Many(Vec<Spanned<String>>),
}

impl<'de> Deserialize<'de> for RawUpstream {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = RawUpstream;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a URL or a list of URLs")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RawUpstream, E> {
                super::values::interpolate(v)
                    .map(|s| RawUpstream::One(Str(s)))
                    .map_err(E::custom)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<RawUpstream, A::Error> {
                let mut all = Vec::new();
                while let Some(u) = seq.next_element::<Spanned<String>>()? {
                    all.push(u);
                }
                Ok(RawUpstream::Many(all))
            }
        }
        d.deserialize_any(V)
    }
}
