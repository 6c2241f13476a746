//! The session half of authentication, for `login` / `login_or_bearer` routes (as
//! [`super::bearer`] is the token half): [`LoginState`] finds the request's session, checks its
//! idle timeout and absolute lifetime, slides and refreshes it ([`refresh`]), and answers a
//! browser navigation without a session with a login at the route's provider ([`pending`]).
//! Where the browser is — scheme and host for `redirect_uri`, cookie `Secure`/`Domain`, `rd`
//! — is [`forwarded`] (`public_url`, or a trusted front proxy's `X-Forwarded-Proto`/`-Host`).
//! It also strips the proxy's own cookies from requests going upstream. The `/.auth/*`
//! endpoints (`auth/endpoints/`) call into it; the ID-token checks are
//! [`crate::provider::id_token`]; where sessions live is [`crate::session`].
//!
//! Security notes:
//! - Each pending login lives in its own short-lived (10 min) sealed cookie named after a hash of
//!   its `state` (`<cookie>_login_<h>`), so several tabs can log in at once and a callback this
//!   browser did not start (login CSRF) finds no cookie and is refused.
//! - Starting a login discards the browser's session cookie (and Redis entry): a session is only
//!   ever created by a callback, never adopted from a cookie set before login (fixation).
//! - A refresh token is used by one request at a time per session: concurrent requests share one
//!   in-flight refresh (per process), and the store's refresh lock keeps other replicas from
//!   reusing a rotated refresh token (which makes ZITADEL/oidc-provider revoke the grant).
//! - A refresh re-derives the identity (roles, claims, profile) from the new tokens through the
//!   same function as the login ([`derive`]), so a role removed at the provider is gone after the
//!   next refresh; the subject must not change, and an identity that cannot be derived again
//!   ends the session (fail closed).
//! - Unauthenticated browser navigations go straight to the provider (one redirect, the original
//!   path kept in the pending login as `rd`); everything else gets 401 JSON, so SPAs' XHRs never
//!   follow a redirect into an HTML login page.
//! - A session belongs to the provider that created it ([`LoginState::belongs`]): on a route of
//!   another provider it is no session (the lookup both the proxy and `/.auth/check` use decides
//!   this), so one provider's users and roles never pass another's routes.

mod derive;
mod forwarded;
mod pending;
mod refresh;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use http::header::{self, HeaderMap, HeaderValue};
use http::request::Parts;
use http::{Method, Request};
use serde_json::Value;

pub(crate) use derive::{DeriveError, derive_identity};
pub(crate) use pending::{PENDING_TTL, Pending};

use crate::cache::TtlCache;
use crate::config::{Config, Route};
use crate::error::{AuthError, LoginError, Scheme};
use crate::health::Health;
use crate::identity::{Authenticated, Identity, Via};
use crate::provider::{ProviderRuntime, Providers};
use crate::request::ConnInfo;
use crate::session::crypto::Sealer;
use crate::session::{self, SessionData, Sessions, StoreError, now};

/// Runtime state of browser login: the session store and what the login flow remembers.
pub struct LoginState {
    pub(crate) config: Arc<Config>,
    pub sessions: Arc<Sessions>,
    /// Seals the pending-login cookies.
    pub(crate) pending: Sealer,
    /// `state`s of callbacks already completed (a replayed callback URL is refused).
    /// The three caches are shared across config reloads ([`LoginState::carry_over`]): a replay
    /// must not pass because the config changed in between, nor a refresh run twice.
    pub(crate) used_states: Arc<TtlCache<String, ()>>,
    /// Logout-token ids seen by this process (the store remembers them for every replica).
    pub(crate) seen_jti: Arc<TtlCache<String, ()>>,
    refreshing: Arc<TtlCache<String, Arc<tokio::sync::OnceCell<refresh::Refreshed>>>>,
    /// Top-level claim names routes need (require_claims, headers.claims): kept in sessions.
    pub(crate) needed_claims: HashSet<String>,
    /// Exactly one provider is used for login (see [`Self::belongs`]).
    single_login_provider: bool,
    /// Provider name → how it derives roles now ([`crate::provider::roles_rule`]).
    roles_rules: HashMap<String, String>,
    /// Seconds after which a request re-writes `last_seen`: min(60 s, idle_timeout / 4), at
    /// least 1 s.
    slide_after: i64,
}

fn top_claim(path: &str) -> [String; 2] {
    [
        path.to_string(),
        path.split('.').next().unwrap_or(path).to_string(),
    ]
}

impl LoginState {
    pub fn new(config: Arc<Config>) -> Result<Option<Self>, String> {
        Self::build(config, None)
    }

    /// The login state of a reloaded `config`: the session store is this one's when the
    /// `[session]` settings are unchanged ([`same_session`]: sessions and Redis connections
    /// carry over), else a new one that keeps the old one's revocation list
    /// ([`Sessions::after`]); the replay and refresh caches always carry over.
    pub fn carry_over(&self, config: Arc<Config>) -> Result<Option<Self>, String> {
        Self::build(config, Some(self))
    }

    /// Whether this state's session store is `old`'s (then its background work runs already).
    pub fn shares_store(&self, old: &LoginState) -> bool {
        Arc::ptr_eq(&self.sessions, &old.sessions)
    }

    fn build(config: Arc<Config>, old: Option<&LoginState>) -> Result<Option<Self>, String> {
        let Some(scfg) = &config.session else {
            return Ok(None);
        };
        let kept = old.filter(|o| {
            o.config
                .session
                .as_ref()
                .is_some_and(|s| same_session(s, scfg))
        });
        let sessions = match (kept, old) {
            (Some(o), _) => o.sessions.clone(),
            (None, Some(o)) => {
                Arc::new(Sessions::after(scfg, &o.sessions).map_err(|e| e.to_string())?)
            }
            (None, None) => Arc::new(Sessions::new(scfg).map_err(|e| e.to_string())?),
        };
        let secrets = std::iter::once(scfg.secret.expose())
            .chain(scfg.previous_secrets.iter().map(|s| s.expose()));
        let mut needed_claims: HashSet<String> = HashSet::new();
        for r in &config.routes {
            for (c, _) in &r.require_claims {
                needed_claims.extend(top_claim(c));
            }
            for (_, c) in &r.headers.claims {
                needed_claims.extend(top_claim(c));
            }
        }
        for (_, c) in &config.headers.claims {
            needed_claims.extend(top_claim(c));
        }
        needed_claims.insert("email_verified".into());
        // ZITADEL's role map and the user's organization: `require_org_roles`, the orgs header
        needed_claims.insert(crate::claims::USER_ORG_CLAIM.into());
        for p in config.providers.values() {
            match &p.roles_claim {
                crate::config::RolesClaim::Path(c) if c.starts_with("urn:zitadel:") => {
                    needed_claims.extend(top_claim(c))
                }
                crate::config::RolesClaim::Path(_) => {}
                crate::config::RolesClaim::Auto => {
                    needed_claims.insert("urn:zitadel:iam:org:project:roles".into());
                    if let Some(id) = &p.project_id {
                        needed_claims.insert(format!("urn:zitadel:iam:org:project:{id}:roles"));
                    }
                }
            }
        }
        let single_login_provider = config
            .providers
            .values()
            .filter(|p| p.used_for_login)
            .count()
            == 1;
        let slide_after = (scfg.idle_timeout.as_secs() as i64 / 4).clamp(1, 60);
        let roles_rules = (config.providers.iter())
            .map(|(n, p)| (n.clone(), crate::provider::roles_rule(p)))
            .collect();
        Ok(Some(LoginState {
            single_login_provider,
            roles_rules,
            slide_after,
            pending: Sealer::new(secrets, "pending-login"),
            sessions,
            // Replay sets: each entry is remembered for its whole TTL. Only more than a million
            // distinct entries within one TTL (a flood) fill them; then the oldest are forgotten
            // first, and a replay of one of those is no longer recognized by this process (for
            // logout tokens the session store's record, `remember_jti`, still is).
            used_states: old.map_or_else(
                || {
                    Arc::new(TtlCache::oldest_first(
                        1_000_000,
                        Duration::from_secs(PENDING_TTL as u64 + 60),
                    ))
                },
                |o| o.used_states.clone(),
            ),
            seen_jti: old.map_or_else(
                || Arc::new(TtlCache::oldest_first(1_000_000, Duration::from_secs(3600))),
                |o| o.seen_jti.clone(),
            ),
            refreshing: old.map_or_else(
                || Arc::new(TtlCache::new(1_000_000, Duration::from_secs(60))),
                |o| o.refreshing.clone(),
            ),
            needed_claims,
            config,
        }))
    }

    pub fn start_background(&self, health: Arc<Health>) {
        self.sessions.start_background(health);
    }

    /// The provider a login uses when nothing names one: the first login route's, else the
    /// first provider used for login.
    pub(crate) fn default_provider(&self) -> Option<String> {
        self.config
            .routes
            .iter()
            .find(|r| r.auth.uses_login())
            .and_then(|r| r.provider.clone())
            .or_else(|| {
                self.config
                    .providers
                    .values()
                    .find(|p| p.used_for_login)
                    .map(|p| p.name.clone())
            })
    }

    /// The session half of `login` / `login_or_bearer`. Only a session of the route's provider
    /// counts (the proxy and `/.auth/check` both come here): with another provider's session a
    /// browser navigation starts a login at the route's provider, anything else gets 401.
    pub async fn authenticate(
        &self,
        providers: &Providers,
        route: &Route,
        parts: &Parts,
        conn: ConnInfo,
        host: Option<&str>,
    ) -> Result<Authenticated, AuthError> {
        let mut ended = Vec::new();
        // A login route always names its provider (config resolves the only one); a route
        // without one accepts no session rather than any.
        let want = Some(route.provider.as_deref().unwrap_or(""));
        match self
            .session_identity(providers, &parts.headers, conn, host, want, &mut ended)
            .await
        {
            Ok(Some(a)) => Ok(a),
            // (a navigation starts a login, which clears every session cookie itself)
            Ok(None) if is_browser_navigation(parts) => {
                let rd = parts.uri.path_and_query().map_or("/", |p| p.as_str());
                let provider = route
                    .provider
                    .clone()
                    .or_else(|| self.default_provider())
                    .unwrap_or_default();
                let login = Box::pin(self.prepare_login(
                    providers,
                    &provider,
                    rd,
                    &parts.headers,
                    conn,
                    host,
                ))
                .await
                .map_err(|e| match e {
                    // (a route never names such a provider; a misconfiguration is 503 here)
                    AuthError::Login(LoginError::UnknownProvider) => {
                        AuthError::ProviderUnavailable {
                            scheme: Scheme::Session,
                            detail: LoginError::UnknownProvider.to_string(),
                        }
                    }
                    e => e,
                })?;
                Err(AuthError::LoginRequired {
                    location: login.location,
                    set_cookie: login.set_cookie,
                })
            }
            Ok(None) => Err(AuthError::NoCredentials {
                scheme: Scheme::Session,
                clear_cookies: ended,
            }),
            Err(e) => Err(AuthError::SessionStoreUnavailable {
                detail: e.to_string(),
            }),
        }
    }

    /// The identity of the request's session (after expiry checks and refresh), with the
    /// Set-Cookie values to send when the session changed. `want`: the provider the session
    /// must belong to (`None`: any provider used for login, for `/.auth/me`); a session of
    /// another provider is no session here, and is left alone (it still serves its own
    /// provider's routes). A session that has ended (expired, or its refresh refused) puts the
    /// Set-Cookie values clearing its cookies in `ended`: the browser then stops sending a dead
    /// session with every request.
    pub(crate) async fn session_identity(
        &self,
        providers: &Providers,
        headers: &HeaderMap,
        conn: ConnInfo,
        host: Option<&str>,
        want: Option<&str>,
        ended: &mut Vec<HeaderValue>,
    ) -> Result<Option<Authenticated>, StoreError> {
        let attrs = self.attrs(conn, headers, host);
        let Some(loaded) = self.sessions.load(headers, attrs).await? else {
            return Ok(None);
        };
        if !self.belongs(&loaded.data, want) {
            tracing::debug!(session_provider = %loaded.data.provider, route_provider = want.unwrap_or("(any)"),
                "a session of another provider does not count here");
            return Ok(None);
        }
        let cfg = &self.sessions.cfg;
        let mut d = loaded.data;
        let now = now();
        let mut dirty = false;
        let over = if !d.is_live(cfg, now) {
            true
        } else if cfg.refresh && d.needs_refresh(now) {
            // Boxed here and below: the branches that are rare per request (refresh, end, slide)
            // would otherwise make every request's authentication future kilobytes larger.
            match Box::pin(self.refresh(providers, &d, loaded.handle.as_deref())).await? {
                refresh::Refreshed::New(n) => {
                    d = Arc::from(n);
                    dirty = true;
                    false
                }
                refresh::Refreshed::Keep => false,
                refresh::Refreshed::Ended => true,
            }
        } else {
            false
        };
        if over {
            let present = self.sessions.present_chunks(headers, attrs);
            *ended = Box::pin(
                self.sessions
                    .delete(loaded.handle.as_deref(), &present, attrs),
            )
            .await
            .unwrap_or_default();
            return Ok(None);
        }
        // Sliding idle timeout, re-written at most every `slide_after` seconds (min(60 s,
        // idle_timeout / 4)) to keep requests cheap: an active session never gets closer than
        // three quarters of idle_timeout to its end.
        if now - d.last_seen >= self.slide_after {
            let slid = Arc::make_mut(&mut d);
            slid.last_seen = now;
            slid.identity.clear();
            dirty = true;
        }
        let mut set_cookie = Vec::new();
        if dirty {
            let present = self.sessions.present_chunks(headers, attrs);
            set_cookie =
                Box::pin(
                    self.sessions
                        .save(&d, loaded.handle.as_deref(), &present, attrs),
                )
                .await?;
            self.sessions.supersede(headers, attrs, &d);
        }
        // Derived once per opened session: the cache hands the same `SessionData` to every
        // request until it changes (a change clones it, and the clone derives anew).
        let identity = d
            .identity
            .get_or_init(|| Arc::new(identity_of(&d, cfg, providers.get(&d.provider))))
            .clone();
        Ok(Some(Authenticated {
            identity,
            set_cookie,
        }))
    }

    /// Whether session `d` counts where provider `want` is required (`None`: any provider used
    /// for login). A session belongs to the provider that created it: its recorded provider
    /// name must be `want`, that provider must still be used for login, and the issuer the
    /// session's ID token came from must be the provider's configured `issuer` (so renaming
    /// providers or pointing a name at another issuer does not carry sessions over), and its
    /// roles must come from the rule the provider has now (`roles_rule`). A session
    /// whose issuer is unknown (written before sessions recorded it, and without a stored ID
    /// token) counts only when a single provider is used for login — there is then no other
    /// provider it could be confused with.
    fn belongs(&self, d: &SessionData, want: Option<&str>) -> bool {
        if want.is_some_and(|w| w != d.provider) {
            return false;
        }
        let Some(pc) = self.config.providers.get(&d.provider) else {
            return false;
        };
        if !pc.used_for_login {
            return false;
        }
        // Roles derived by a rule no longer configured (roles_claim, client_id, project_id
        // changed) are not this config's judgement.
        if d.roles_rule
            .as_ref()
            .is_some_and(|r| self.roles_rules.get(&d.provider) != Some(r))
        {
            return false;
        }
        match (&d.iss, &pc.issuer) {
            (Some(iss), Some(configured)) => iss == configured,
            // Explicit endpoints without `issuer`: the name is all there is to compare.
            (Some(_), None) => true,
            (None, _) => self.single_login_provider,
        }
    }

    /// Removes the proxy's own cookies (session chunks, pending logins) from a request going
    /// upstream: with the Redis store the session id is a credential the app has no business
    /// seeing, and the app's own cookies are all it needs.
    pub fn strip_cookies(&self, headers: &mut HeaderMap) {
        if !headers.contains_key(header::COOKIE) {
            return;
        }
        let base = self.sessions.cfg.cookie_name.as_bytes();
        // Byte-wise: a value with non-ASCII bytes (legal obs-text) must not make this step give
        // up and let the session cookie through with it. Names are read as the session code
        // reads them (SP/HTAB trimmed, then byte for byte), so every cookie the proxy would take
        // for its own goes, whatever prefix (`__Host-`, `__Secure-`) it carries.
        let mut removed = false;
        let mut kept: Vec<&[u8]> = Vec::new();
        for v in headers.get_all(header::COOKIE) {
            for pair in session::cookie_pairs(v.as_bytes()) {
                let name =
                    session::trim_ows(memchr::memchr(b'=', pair).map_or(pair, |i| &pair[..i]));
                if crate::headers::is_own_cookie(name, base) {
                    removed = true;
                } else if !pair.is_empty() {
                    kept.push(pair);
                }
            }
        }
        if !removed {
            return;
        }
        let joined = kept.join(&b"; "[..]);
        headers.remove(header::COOKIE);
        if let Ok(v) = HeaderValue::from_bytes(&joined)
            && !joined.is_empty()
        {
            headers.insert(header::COOKIE, v);
        }
    }
}

/// Whether two `[session]` settings are the same, secrets and the Redis CA file's contents
/// included (`Debug` redacts the secrets; `SessionStore`'s equality compares the CA by path).
fn same_session(a: &crate::config::Session, b: &crate::config::Session) -> bool {
    let secrets = |s: &crate::config::Session| {
        std::iter::once(&s.secret)
            .chain(&s.previous_secrets)
            .map(|x| x.expose().to_owned())
            .collect::<Vec<_>>()
    };
    let ca = |s: &crate::config::Session| match &s.store {
        crate::config::SessionStore::Redis { ca: Some(c), .. } => Some(c.pem.clone()),
        _ => None,
    };
    format!("{a:?}") == format!("{b:?}")
        && a.store == b.store
        && secrets(a) == secrets(b)
        && ca(a) == ca(b)
}

fn identity_of(
    d: &SessionData,
    cfg: &crate::config::Session,
    p: Option<&Arc<ProviderRuntime>>,
) -> Identity {
    let mut claims = d.claims.clone();
    claims.insert("sub".into(), Value::String(d.sub.clone()));
    if let Some(iss) = &d.iss {
        claims.insert("iss".into(), Value::String(iss.clone()));
    }
    for (k, v) in [
        ("email", &d.email),
        ("name", &d.name),
        ("preferred_username", &d.preferred_username),
    ] {
        if let Some(v) = v {
            claims
                .entry(k.to_string())
                .or_insert_with(|| Value::String(v.clone()));
        }
    }
    Identity {
        sub: d.sub.clone(),
        email: d.email.clone(),
        name: d.name.clone(),
        preferred_username: d.preferred_username.clone(),
        roles: d.roles.clone(),
        org_roles: p.map(|p| p.org_roles(&d.claims)).unwrap_or_default(),
        claims,
        access_token: Some(d.access_token.clone()),
        expires_at: Some(d.expires_at(cfg)),
        provider: Arc::from(d.provider.as_str()),
        via: Via::Session,
        header_values: Default::default(),
    }
}

/// This proxy's `client_id` at provider `p`.
pub(crate) fn client_id(p: &ProviderRuntime) -> String {
    p.config.client_id.clone().unwrap_or_default()
}

/// A top-level navigation a person can complete a login from.
pub fn is_browser_navigation(parts: &Parts) -> bool {
    (parts.method == Method::GET || parts.method == Method::HEAD)
        && crate::error::wants_html(&parts.headers)
}

/// The query parameters of a request, decoded.
pub(crate) fn query_pairs<B>(req: &Request<B>) -> Vec<(String, String)> {
    req.uri()
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
pub(crate) fn test_state() -> LoginState {
    let src = "[server]\nlisten = \"127.0.0.1:1\"\n[providers.p]\nissuer = \"https://op.example\"\nclient_id = \"c\"\nclient_secret = \"s\"\n[session]\nsecret = \"4f9c2e7a1b8d3065f1e2d3c4b5a69788\"\n[[route]]\npath = \"/\"\nupstream = \"http://127.0.0.1:2\"\nauth = \"login\"\n";
    let cfg =
        crate::config::load_str(std::path::Path::new("t.toml"), src, Default::default()).unwrap();
    LoginState::new(Arc::new(cfg)).unwrap().unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Attack: a Cookie header with a non-ASCII byte (an app cookie, or one tossed from a sibling
    /// subdomain) made the whole stripping step give up, so the session cookie — with the Redis
    /// store a bearer credential — reached the upstream.
    #[test]
    fn own_cookies_are_stripped_even_next_to_non_ascii_cookies() {
        let l = test_state();
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("portcullis=SESSION; app=1"),
        );
        h.append(
            header::COOKIE,
            HeaderValue::from_bytes(b"pref=caf\xe9; portcullis.1=CHUNK; portcullis_login_abc=P")
                .unwrap(),
        );
        l.strip_cookies(&mut h);
        let all: Vec<&[u8]> = h
            .get_all(header::COOKIE)
            .iter()
            .map(|v| v.as_bytes())
            .collect();
        let joined = all.concat();
        let text = String::from_utf8_lossy(&joined);
        assert!(!text.contains("portcullis"), "{text}");
        assert!(text.contains("app=1"), "{text}");
        assert!(joined.windows(9).any(|w| w == b"pref=caf\xe9"), "{text}");
    }
}
