//! `portcullis doctor`: checks one provider end to end, the way a login and a bearer request
//! would use it, and names each problem in the words of the provider's console with a fix:
//! discovery reachable, issuer byte for byte, clock skew against the provider's `Date`, the
//! redirect URI registered (an authorization request, the provider's answer read), the client's
//! credentials or key file (a token request that can only fail for another reason: an
//! authorization code that does not exist → `invalid_grant` means the credentials were
//! accepted, `invalid_client` that they were not), the introspection credentials (a token that
//! does not exist → `active: false`), and with `--token`: signature and expiry, `aud` against
//! `audiences`, roles present (if not: the scope or project setting that is likely missing).
//!
//! With `--login` it also signs a user in: it prints an authorization URL, the user opens it and
//! pastes back the address the browser ends on (`…/.auth/callback?code=…`); doctor redeems the
//! code itself (PKCE, its own state and nonce) and reports the ID token, what userinfo says
//! (roles, email) and the access token's kind and audience.
//!
//! It only reads: the token request uses a made-up code, the introspection a made-up token.
//! One line per check, `PASS`/`WARN`/`FAIL`; exit 0 when nothing failed.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use serde_json::{Map, Value};

use crate::config::{Config, Provider, TokenEndpointAuth};
use crate::provider::http::ProviderClient;
use crate::provider::{ProviderError, ProviderRuntime};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    Warn,
    Fail,
}

/// One check's result: what was checked, and what it found in a user's words.
pub struct Finding {
    pub outcome: Outcome,
    pub check: &'static str,
    pub message: String,
}

/// Runs the checks of provider `name` (the only one when `None`); the report and whether
/// everything passed (warnings do not fail).
pub async fn doctor(
    cfg: &Config,
    name: Option<&str>,
    token: Option<&str>,
    login: bool,
) -> (String, bool) {
    let findings = match pick(cfg, name) {
        Ok(p) => run(cfg, p, token, login).await,
        Err(e) => vec![Finding {
            outcome: Outcome::Fail,
            check: "provider",
            message: e,
        }],
    };
    let mut out = String::new();
    for f in &findings {
        let tag = match f.outcome {
            Outcome::Pass => "PASS",
            Outcome::Warn => "WARN",
            Outcome::Fail => "FAIL",
        };
        let _ = writeln!(out, "{tag} {}: {}", f.check, f.message);
    }
    let ok = findings.iter().all(|f| f.outcome != Outcome::Fail);
    let failed = findings
        .iter()
        .filter(|f| f.outcome == Outcome::Fail)
        .count();
    let _ = writeln!(
        out,
        "{}",
        if ok {
            "all checks passed".to_string()
        } else {
            format!("{failed} check(s) failed")
        }
    );
    (out, ok)
}

fn pick<'c>(cfg: &'c Config, name: Option<&str>) -> Result<&'c Arc<Provider>, String> {
    let known = || cfg.providers.keys().cloned().collect::<Vec<_>>().join(", ");
    match name {
        Some(n) => cfg.providers.get(n).ok_or_else(|| {
            format!(
                "no provider named {n:?} in the config; defined: [{}]",
                known()
            )
        }),
        None if cfg.providers.len() == 1 => Ok(cfg.providers.values().next().expect("one")),
        None if cfg.providers.is_empty() => {
            Err("the config has no [providers.NAME] section".into())
        }
        None => Err(format!(
            "several providers are configured: choose one with --provider NAME ([{}])",
            known()
        )),
    }
}

fn pass(check: &'static str, message: impl Into<String>) -> Finding {
    Finding {
        outcome: Outcome::Pass,
        check,
        message: message.into(),
    }
}
fn warn(check: &'static str, message: impl Into<String>) -> Finding {
    Finding {
        outcome: Outcome::Warn,
        check,
        message: message.into(),
    }
}
fn fail(check: &'static str, message: impl Into<String>) -> Finding {
    Finding {
        outcome: Outcome::Fail,
        check,
        message: message.into(),
    }
}

async fn run(cfg: &Config, p: &Arc<Provider>, token: Option<&str>, login: bool) -> Vec<Finding> {
    let mut out = Vec::new();
    let http = match ProviderClient::new(p.ca_file.as_ref()) {
        Ok(h) => h,
        Err(e) => {
            out.push(fail(
                "provider",
                format!("cannot build an HTTPS client: {e}"),
            ));
            return out;
        }
    };
    // discovery, issuer, clock
    let Some(issuer) = p.issuer.as_deref() else {
        out.push(warn(
            "discovery",
            "no `issuer` configured (explicit endpoints): discovery and issuer not checked",
        ));
        return out;
    };
    let url = format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    );
    let reply = match http.get(&url, None, p.timeout).await {
        Ok(r) if r.status.is_success() => r,
        Ok(r) => {
            out.push(fail(
                "discovery",
                format!(
                    "{url} answered {}: `issuer` must be the provider's base URL (ZITADEL: https://<instance>.zitadel.cloud or your custom domain, no path)",
                    r.status
                ),
            ));
            return out;
        }
        Err(e) => {
            out.push(fail(
                "discovery",
                format!(
                    "cannot reach {url}: {e}. Check `issuer` in [providers.{}] and that this machine can reach the provider (DNS, firewall, proxy)",
                    p.name
                ),
            ));
            return out;
        }
    };
    let doc: Map<String, Value> = match serde_json::from_slice(&reply.body) {
        Ok(d) => d,
        Err(e) => {
            out.push(fail(
                "discovery",
                format!(
                    "{url} is not a discovery document ({e}): is `issuer` the provider's base URL?"
                ),
            ));
            return out;
        }
    };
    out.push(pass("discovery", format!("{url} answered")));
    let theirs = doc.get("issuer").and_then(Value::as_str).unwrap_or("");
    if theirs == issuer {
        out.push(pass("issuer", format!("{theirs:?} matches byte for byte")));
    } else {
        out.push(fail(
            "issuer",
            format!(
                "the provider calls itself {theirs:?} but the config says {issuer:?}: tokens carry the provider's `iss` and are compared byte for byte (scheme, host, port, trailing slash). Set issuer = {theirs:?}"
            ),
        ));
    }
    out.push(clock(&reply.headers));

    let rt = match ProviderRuntime::new(p.clone(), http) {
        Ok(rt) => Arc::new(rt),
        Err(e) => {
            out.push(fail("provider", e));
            return out;
        }
    };
    if let Err(e) = rt.load_now().await {
        out.push(fail(
            "keys",
            format!("cannot load the provider's metadata or signing keys: {e}"),
        ));
        return out;
    }
    let redirect_uri = redirect_uri(cfg);
    if p.used_for_login {
        out.push(redirect_check(p, &doc, &redirect_uri, &rt).await);
        out.push(credentials_check(p, &rt, &redirect_uri).await);
    }
    if rt.has_introspection() {
        out.push(introspection_check(p, &rt).await);
    }
    if let Some(t) = token {
        token_checks(p, &rt, t, &mut out).await;
    }
    if login {
        login_checks(p, &doc, &redirect_uri, &rt, &mut out).await;
    }
    out
}

/// The authorization request for `client_id` with `redirect_uri`, PKCE S256 of `verifier`.
fn authorize_url(
    p: &Provider,
    ep: &str,
    redirect_uri: &str,
    state: &str,
    verifier: &str,
) -> Result<url::Url, String> {
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(<sha2::Sha256 as sha2::Digest>::digest(verifier.as_bytes()));
    let mut url = url::Url::parse(ep).map_err(|e| format!("authorization_endpoint {ep:?}: {e}"))?;
    let mut scopes = p.scopes.clone();
    if !scopes.iter().any(|s| s == "openid") {
        scopes.insert(0, "openid".into());
    }
    url.query_pairs_mut()
        .append_pair("client_id", p.client_id.as_deref().unwrap_or(""))
        .append_pair("redirect_uri", redirect_uri)
        .append_pair("response_type", "code")
        .append_pair("scope", &scopes.join(" "))
        .append_pair("state", state)
        .append_pair("nonce", state)
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256");
    Ok(url)
}

fn authorization_endpoint(p: &Provider, doc: &Map<String, Value>) -> Option<String> {
    doc.get("authorization_endpoint")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| p.authorization_endpoint.as_ref().map(|u| u.to_string()))
}

/// `--login`: a real sign-in, the browser's last address pasted back on stdin.
async fn login_checks(
    p: &Provider,
    doc: &Map<String, Value>,
    redirect_uri: &str,
    rt: &ProviderRuntime,
    out: &mut Vec<Finding>,
) {
    const CHECK: &str = "login";
    if !p.used_for_login {
        out.push(warn(
            CHECK,
            "no login route uses this provider: --login skipped",
        ));
        return;
    }
    let Some(ep) = authorization_endpoint(p, doc) else {
        out.push(fail(CHECK, "the provider has no authorization_endpoint"));
        return;
    };
    let state = crate::session::crypto::random_token();
    let verifier = crate::session::crypto::random_token();
    let url = match authorize_url(p, &ep, redirect_uri, &state, &verifier) {
        Ok(u) => u,
        Err(e) => {
            out.push(fail(CHECK, e));
            return;
        }
    };
    {
        use std::io::Write as _;
        let mut so = std::io::stdout().lock();
        let _ = writeln!(so, "Open this URL in a browser and sign in:\n  {url}");
        let _ = writeln!(
            so,
            "Then paste the address the browser ends on ({redirect_uri}?code=…; the page itself may show an error):"
        );
        let _ = so.flush();
    }
    let line = tokio::task::spawn_blocking(|| {
        let mut s = String::new();
        std::io::stdin().read_line(&mut s).map(|_| s)
    })
    .await;
    let pasted = match line {
        Ok(Ok(s)) if !s.trim().is_empty() => s.trim().to_string(),
        _ => {
            out.push(fail(CHECK, "no address was pasted"));
            return;
        }
    };
    let Ok(back) = url::Url::parse(&pasted) else {
        out.push(fail(
            CHECK,
            format!("{pasted:?} is not a URL: paste the whole address"),
        ));
        return;
    };
    let q = |k: &str| {
        back.query_pairs()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.into_owned())
    };
    if let Some(err) = q("error") {
        let hint = if err == "access_denied" {
            " (ZITADEL: with \"Check authorization on Authentication\" / \"Check Role Assignment on Authentication\" on, a user without a role in the project may not sign in)"
        } else {
            ""
        };
        out.push(fail(
            CHECK,
            format!(
                "the provider answered error={err}{}{hint}",
                q("error_description")
                    .map(|d| format!(": {d}"))
                    .unwrap_or_default()
            ),
        ));
        return;
    }
    if q("state").as_deref() != Some(state.as_str()) {
        out.push(fail(
            CHECK,
            "the pasted address is not the answer to this sign-in (its state differs): paste the address of this run's sign-in",
        ));
        return;
    }
    let Some(code) = q("code") else {
        out.push(fail(CHECK, "the pasted address has no code"));
        return;
    };
    let tr = match rt
        .token_request(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", &verifier),
        ])
        .await
    {
        Ok(t) => t,
        Err(e) => {
            out.push(fail(CHECK, format!("redeeming the code failed: {e}")));
            return;
        }
    };
    let client = p.client_id.clone().unwrap_or_default();
    let Some(id_token) = tr.id_token.as_deref() else {
        out.push(fail(
            CHECK,
            "the token response has no ID token: add the scope openid",
        ));
        return;
    };
    let mut claims = match rt.verify_jwt(id_token, std::slice::from_ref(&client)).await {
        Ok(c) if c.get("nonce").and_then(Value::as_str) == Some(state.as_str()) => c,
        Ok(_) => {
            out.push(fail(CHECK, "the ID token's nonce is not this sign-in's"));
            return;
        }
        Err(e) => {
            out.push(fail(CHECK, format!("the ID token is not valid: {e}")));
            return;
        }
    };
    out.push(pass(
        CHECK,
        format!(
            "signed in as sub {:?}; the ID token is valid",
            claims.get("sub").and_then(Value::as_str).unwrap_or("")
        ),
    ));
    match rt.userinfo(&tr.access_token).await {
        Ok(ui) => {
            for (k, v) in ui {
                claims.entry(k).or_insert(v);
            }
            out.push(pass("userinfo", "userinfo answered"));
        }
        Err(e) => out.push(warn("userinfo", format!("userinfo failed: {e}"))),
    }
    match (
        claims.get("email").and_then(Value::as_str),
        claims.get("email_verified"),
    ) {
        (None, _) => out.push(warn(
            "email",
            "no email: request the scope email if the app needs X-Forwarded-Email",
        )),
        (Some(e), Some(Value::Bool(false))) => out.push(warn(
            "email",
            format!("{e} is not verified: X-Forwarded-Email is not sent for it"),
        )),
        (Some(e), _) => out.push(pass("email", e.to_string())),
    }
    let roles = rt.roles(&claims);
    out.push(roles_finding(rt, &claims, &roles));
    let kind = if unverified_claims(&tr.access_token).is_some() {
        "a JWT"
    } else {
        "opaque (bearer routes need introspection for such tokens)"
    };
    out.push(pass(
        "access token",
        format!("the login's access token is {kind}"),
    ));
}

fn roles_finding(rt: &ProviderRuntime, claims: &Map<String, Value>, roles: &[String]) -> Finding {
    if roles.is_empty() {
        return fail(
            "roles",
            "no roles arrived, so every require_roles answers 403: request the scope urn:zitadel:iam:org:projects:roles (for logins: in `scopes`), or switch on the project's \"Assert Roles on Authentication\" (and \"Check for Project on Authentication\" if needed); also check the user has a role granted in the project (Authorizations)",
        );
    }
    let orgs = rt.org_roles(claims);
    pass(
        "roles",
        format!(
            "roles [{}]{}",
            roles.join(", "),
            if orgs.orgs().is_empty() {
                String::new()
            } else {
                format!(", granted in orgs [{}]", orgs.orgs().join(", "))
            }
        ),
    )
}

/// Where the provider sends the browser back: `public_url` + `/.auth/callback`.
fn redirect_uri(cfg: &Config) -> String {
    let origin = match (&cfg.server.public_url, cfg.server.listen) {
        (Some(u), _) => u.origin().ascii_serialization(),
        (None, Some(a)) => format!("http://{a}"),
        (None, None) => "http://localhost".into(),
    };
    format!("{origin}{}/callback", cfg.server.auth_prefix)
}

/// The provider's `Date` against this machine's clock: tokens are checked with 60 s leeway.
fn clock(headers: &http::HeaderMap) -> Finding {
    let Some(date) = headers
        .get(http::header::DATE)
        .and_then(|d| d.to_str().ok())
        .and_then(|d| httpdate::parse_http_date(d).ok())
    else {
        return warn(
            "clock",
            "the provider sent no Date header: clock skew not checked",
        );
    };
    let now = std::time::SystemTime::now();
    let skew = match now.duration_since(date) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    };
    let fix = "synchronise this machine's clock (NTP: timedatectl set-ntp true / chrony)";
    match skew.unsigned_abs() {
        0..=5 => pass(
            "clock",
            format!("skew {skew:+} s against the provider's Date"),
        ),
        6..=59 => warn(
            "clock",
            format!("this machine is {skew:+} s off the provider (tokens get 60 s leeway): {fix}"),
        ),
        _ => fail(
            "clock",
            format!(
                "this machine is {skew:+} s off the provider, beyond the 60 s leeway: fresh tokens look expired or not yet valid; {fix}"
            ),
        ),
    }
}

async fn redirect_check(
    p: &Provider,
    doc: &Map<String, Value>,
    redirect_uri: &str,
    rt: &ProviderRuntime,
) -> Finding {
    const CHECK: &str = "redirect uri";
    let Some(ep) = authorization_endpoint(p, doc) else {
        return fail(CHECK, "the provider has no authorization_endpoint");
    };
    let client_id = p.client_id.as_deref().unwrap_or("");
    let url = match authorize_url(
        p,
        &ep,
        redirect_uri,
        "portcullis-doctor",
        "portcullis-doctor-verifier-0123456789abcdef",
    ) {
        Ok(u) => u,
        Err(e) => return fail(CHECK, e),
    };
    let req = match http::Request::get(url.as_str())
        .header(http::header::ACCEPT, "text/html")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
    {
        Ok(r) => r,
        Err(e) => return fail(CHECK, e.to_string()),
    };
    let reply = match rt.http().send(req, p.timeout).await {
        Ok(r) => r,
        Err(e) => {
            return fail(
                CHECK,
                format!("the authorization endpoint {ep} did not answer: {e}"),
            );
        }
    };
    let location = reply
        .headers
        .get(http::header::LOCATION)
        .and_then(|l| l.to_str().ok())
        .unwrap_or("");
    let body = String::from_utf8_lossy(&reply.body).to_ascii_lowercase();
    let says =
        |needle: &str| body.contains(needle) || location.to_ascii_lowercase().contains(needle);
    let console = "ZITADEL: Projects → your project → Applications → this app → Redirect Settings";
    if says("redirect_uri") || says("redirect uri") {
        return fail(
            CHECK,
            format!(
                "the provider refused redirect_uri {redirect_uri:?} for client {client_id:?} (it is not registered): add it to the application's redirect URIs ({console}; in development mode http:// needs \"Development Mode\" on), or set [server] public_url to the address users open"
            ),
        );
    }
    if says("invalid_client") || says("client not found") || says("client is invalid") {
        return fail(
            CHECK,
            format!(
                "the provider does not know client_id {client_id:?}: copy the Client ID from the application's page"
            ),
        );
    }
    if reply.status.is_redirection()
        && location.starts_with(redirect_uri)
        && let Some(err) = url::Url::parse(location).ok().and_then(|u| {
            u.query_pairs()
                .find(|(k, _)| k == "error")
                .map(|(_, v)| v.into_owned())
        })
    {
        return warn(
            CHECK,
            format!(
                "{redirect_uri:?} is registered, but the provider answered error={err} (check `scopes` and the application's grant types: Authorization Code, with PKCE)"
            ),
        );
    }
    if reply.status.is_redirection() || reply.status.is_success() {
        return pass(
            CHECK,
            format!("{redirect_uri:?} is accepted for client {client_id:?}"),
        );
    }
    warn(
        CHECK,
        format!(
            "the authorization endpoint answered {}: could not tell whether {redirect_uri:?} is registered",
            reply.status
        ),
    )
}

async fn credentials_check(p: &Provider, rt: &ProviderRuntime, redirect_uri: &str) -> Finding {
    const CHECK: &str = "client credentials";
    let what = match p.token_endpoint_auth {
        TokenEndpointAuth::None => {
            return pass(CHECK, "public client (PKCE only): no secret to check");
        }
        TokenEndpointAuth::PrivateKeyJwt => "the key file (private_key_jwt)",
        _ => "client_id and client_secret",
    };
    let r = rt
        .token_request(&[
            ("grant_type", "authorization_code"),
            ("code", "portcullis-doctor-no-such-code"),
            ("redirect_uri", redirect_uri),
            (
                "code_verifier",
                "portcullis-doctor-verifier-0123456789abcdef",
            ),
        ])
        .await;
    match r {
        Err(ProviderError::Rejected { error, .. })
            if error == "invalid_grant" || error == "invalid_request" =>
        {
            pass(
                CHECK,
                format!(
                    "the token endpoint accepted {what} (a made-up code was refused as {error})"
                ),
            )
        }
        Err(ProviderError::Rejected {
            error, description, ..
        }) if error == "invalid_client" || error == "unauthorized_client" => {
            let fix = match p.token_endpoint_auth {
                TokenEndpointAuth::PrivateKeyJwt => {
                    "download a new key JSON for this application (Application → Keys) and point private_key_file at it; the key's clientId must be this client_id"
                }
                _ => {
                    "copy the Client Secret again (ZITADEL shows it once: regenerate it on the application's page) and check token_endpoint_auth matches the app's authentication method (Basic → client_secret_basic, Post → client_secret_post)"
                }
            };
            fail(
                CHECK,
                format!(
                    "the token endpoint refused {what}: {error}{}. {fix}",
                    description.map(|d| format!(" ({d})")).unwrap_or_default()
                ),
            )
        }
        Err(e) => warn(CHECK, format!("could not tell: {e}")),
        Ok(_) => warn(CHECK, "a made-up authorization code was accepted?!"),
    }
}

async fn introspection_check(p: &Provider, rt: &ProviderRuntime) -> Finding {
    const CHECK: &str = "introspection";
    match rt.introspect("portcullis-doctor-no-such-token").await {
        Err(crate::provider::TokenError::Inactive) => pass(
            CHECK,
            "the introspection endpoint accepted the credentials (a made-up token is inactive)",
        ),
        Err(e) => fail(
            CHECK,
            format!(
                "introspection failed: {e}. Check [providers.{}.introspection]: key_file must be the API application's key JSON (ZITADEL: an API app with \"Private Key JWT\", Keys → New), or client_id/client_secret of an API app with Basic",
                p.name
            ),
        ),
        Ok(_) => warn(CHECK, "a made-up token was reported active?!"),
    }
}

fn unverified_claims(token: &str) -> Option<Map<String, Value>> {
    let mut parts = token.split('.');
    let (_, payload, _) = (parts.next()?, parts.next()?, parts.next()?);
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

async fn token_checks(p: &Provider, rt: &ProviderRuntime, token: &str, out: &mut Vec<Finding>) {
    let token = token.trim().trim_start_matches("Bearer ").trim();
    let audiences = if p.audiences.is_empty() {
        p.client_id.iter().cloned().collect::<Vec<_>>()
    } else {
        p.audiences.clone()
    };
    let claims = if let Some(c) = unverified_claims(token) {
        // the signature, issuer and expiry, whatever the audience (checked on its own below)
        let own: Vec<String> = match c.get("aud") {
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect(),
            _ => Vec::new(),
        };
        match rt.verify_jwt(token, &own).await {
            Ok(_) => out.push(pass(
                "token",
                "a JWT: signature, issuer and expiry are valid",
            )),
            Err(e) => out.push(fail("token", format!("the JWT is not valid: {e}"))),
        }
        c
    } else if rt.has_introspection() {
        match rt.introspect(token).await {
            Ok(i) => {
                out.push(pass(
                    "token",
                    "an opaque token: introspection says it is active",
                ));
                (*i.claims).clone()
            }
            Err(e) => {
                out.push(fail(
                    "token",
                    format!("an opaque token; introspection: {e}"),
                ));
                return;
            }
        }
    } else {
        out.push(fail(
            "token",
            format!("an opaque token (not a JWT) and [providers.{}.introspection] is not configured: add an introspection key, or have the app issue JWT access tokens (ZITADEL: Application → Token Settings → Auth Token Type: JWT)", p.name),
        ));
        return;
    };
    let aud: Vec<String> = match claims.get("aud") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    };
    if aud.iter().any(|a| audiences.contains(a)) {
        out.push(pass(
            "audience",
            format!("aud {aud:?} includes one of audiences {audiences:?}"),
        ));
    } else {
        out.push(fail(
            "audience",
            format!(
                "the token's aud {aud:?} has none of audiences {audiences:?}: ZITADEL adds the project id to aud when the client requests the scope urn:zitadel:iam:org:project:id:<projectId>:aud (or list the project id / client id the tokens carry in providers.{}.audiences)",
                p.name
            ),
        ));
    }
    let roles = rt.roles(&claims);
    out.push(roles_finding(rt, &claims, &roles));
}

/// The time limit of the whole run (each request also has the provider's `timeout`); with
/// `--login` a person signs in meanwhile.
pub fn total(login: bool) -> Duration {
    Duration::from_secs(if login { 600 } else { 120 })
}
