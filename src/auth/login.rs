//! Browser login (OIDC authorization code + PKCE S256) and the session half of authentication:
//! `/.auth/login`, `/.auth/callback`, `/.auth/logout`, `/.auth/me`, `/.auth/backchannel-logout`,
//! the session lookup for `login` / `login_or_bearer` routes (with idle timeout, absolute
//! lifetime and single-flight refresh) and the browser 403 page.
//!
//! Security notes:
//! - Each pending login lives in its own short-lived (10 min) sealed cookie named after a hash of
//!   its `state` (`<cookie>_login_<h>`), so several tabs can log in at once and a callback this
//!   browser did not start (login CSRF) finds no cookie and is refused. A `state` is accepted
//!   once per process (replays of the callback URL are refused even with the cookie still held).
//! - Starting a login discards the browser's session cookie (and Redis entry): a session is only
//!   ever created by a callback, never adopted from a cookie set before login (fixation).
//! - A refresh token is used by one request at a time per session: concurrent requests share one
//!   in-flight refresh (per process), and with the Redis store a Redis lock keeps other replicas
//!   from reusing a rotated refresh token (which makes ZITADEL/oidc-provider revoke the grant).
//! - A refresh re-derives the identity (roles, claims, profile) from the new tokens through the
//!   same function as the login, so a role removed at the provider is gone after the next
//!   refresh; the subject must not change, and an identity that cannot be derived again ends
//!   the session (fail closed).
//! - Unauthenticated browser navigations go straight to the provider (one redirect, the original
//!   path kept in the pending login as `rd`); everything else gets 401 JSON, so SPAs' XHRs never
//!   follow a redirect into an HTML login page.
//! - A session belongs to the provider that created it ([`LoginState::belongs`]): on a route of
//!   another provider it is no session (the lookup both the proxy and `/.auth/check` use decides
//!   this), so one provider's users and roles never pass another's routes; `/.auth/login` signs
//!   in at the provider of the route `rd` leads to, whatever `?provider=` says.
//! - Logout ends the session for every copy of its cookie (Redis: deleted; cookie store: its id
//!   revoked in this process) and is refused from other sites (a GET from anywhere but this
//!   origin, a sibling subdomain included → a page with a POST button; POST only from this
//!   origin). Back-channel logout ends only the sessions of the
//!   provider that signed the logout token.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::request::Parts;
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use subtle::ConstantTimeEq;
use url::Url;

use super::redirect;
use crate::config::{Config, Route};
use crate::error::{AuthError, Scheme};
use crate::error::{Body, empty, full, html_escape, html_page, json_error};
use crate::health::Health;
use crate::identity::{Authenticated, Identity, Via};
use crate::provider::{ProviderError, ProviderRuntime, Providers, TokenError};
use crate::request::ConnInfo;
use crate::session::crypto::{self, Sealer};
use crate::session::{self, Backend, CookieAttrs, Ended, SessionData, Sessions, StoreError, now};

const PENDING_TTL: i64 = 600;
const BACKCHANNEL_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// A login this browser started.
#[derive(Serialize, Deserialize)]
struct Pending {
    state: String,
    nonce: String,
    verifier: String,
    rd: String,
    provider: String,
    redirect_uri: String,
    created: i64,
}

/// What a refresh attempt produced (shared by the concurrent requests of one session).
#[derive(Clone)]
enum Refreshed {
    /// The session with the new tokens and the identity derived from them again.
    New(Box<SessionData>),
    /// Provider unreachable: keep using the current access token, try again later.
    Keep,
    /// The provider refused, or the identity could not be derived from the new tokens: the
    /// session is over.
    Ended,
}

/// Who a user is according to the provider's tokens: what a login sets in a session and every
/// refresh sets again ([`LoginState::derive_identity`]).
struct Derived {
    sub: String,
    email: Option<String>,
    name: Option<String>,
    preferred_username: Option<String>,
    sid: Option<String>,
    /// The ID token's `iss` (verified against the provider's `issuer` when one is configured).
    iss: Option<String>,
    roles: Vec<String>,
    /// Only the claims routes need.
    claims: Map<String, Value>,
}

/// Why the identity could not be derived.
enum DeriveError {
    /// The provider could not be reached (login answers 503).
    Unavailable(ProviderError),
    /// A check failed (login answers 400 naming it; a refresh ends the session).
    Refused(&'static str),
}

/// What the tokens are checked against.
#[derive(Clone, Copy)]
enum Expect<'a> {
    /// The callback: the nonce this browser's login sent.
    Login { nonce: &'a str },
    /// A refresh: the session's subject.
    Refresh { sub: &'a str },
}

/// Runtime state of browser login.
pub struct LoginState {
    config: Arc<Config>,
    pub sessions: Arc<Sessions>,
    pending: Sealer,
    used_states: moka::future::Cache<String, ()>,
    seen_jti: moka::future::Cache<String, ()>,
    refreshing: moka::future::Cache<String, Arc<tokio::sync::OnceCell<Refreshed>>>,
    /// Top-level claim names routes need (require_claims, headers.claims): kept in sessions.
    needed_claims: HashSet<String>,
    /// Exactly one provider is used for login (see [`Self::belongs`]).
    single_login_provider: bool,
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
        let Some(scfg) = &config.session else {
            return Ok(None);
        };
        let sessions = Arc::new(Sessions::new(scfg)?);
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
        let single_login_provider = config
            .providers
            .values()
            .filter(|p| p.used_for_login)
            .count()
            == 1;
        let slide_after = (scfg.idle_timeout.as_secs() as i64 / 4).clamp(1, 60);
        Ok(Some(LoginState {
            single_login_provider,
            slide_after,
            pending: Sealer::new(secrets, "pending-login"),
            sessions,
            used_states: moka::future::Cache::builder()
                .time_to_live(Duration::from_secs(PENDING_TTL as u64 + 60))
                .max_capacity(1_000_000)
                .build(),
            seen_jti: moka::future::Cache::builder()
                .time_to_live(Duration::from_secs(3600))
                .max_capacity(1_000_000)
                .build(),
            refreshing: moka::future::Cache::builder()
                .time_to_live(Duration::from_secs(60))
                .max_capacity(1_000_000)
                .build(),
            needed_claims,
            config,
        }))
    }

    pub fn start_background(&self, health: Arc<Health>) {
        if let Backend::Redis(r) = &self.sessions.backend {
            r.start_background(health);
        }
    }

    fn attrs(&self, conn: ConnInfo) -> CookieAttrs {
        let https_public = self
            .config
            .server
            .public_url
            .as_ref()
            .is_some_and(|u| u.scheme() == "https");
        CookieAttrs {
            secure: conn.tls || https_public,
        }
    }

    fn origin(&self, conn: ConnInfo, host: Option<&str>) -> Option<Url> {
        redirect::origin(self.config.server.public_url.as_ref(), conn.tls, host)
    }

    fn default_provider(&self) -> Option<String> {
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

    // ---------------------------------------------------------------- authentication stage

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
            .session_identity(providers, &parts.headers, conn, want, &mut ended)
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
                let login = self
                    .prepare_login(providers, &provider, rd, &parts.headers, conn, host)
                    .await?;
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
    async fn session_identity(
        &self,
        providers: &Providers,
        headers: &HeaderMap,
        conn: ConnInfo,
        want: Option<&str>,
        ended: &mut Vec<HeaderValue>,
    ) -> Result<Option<Authenticated>, StoreError> {
        let attrs = self.attrs(conn);
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
            match self
                .refresh(providers, &d, loaded.handle.as_deref())
                .await?
            {
                Refreshed::New(n) => {
                    d = Arc::from(n);
                    dirty = true;
                    false
                }
                Refreshed::Keep => false,
                Refreshed::Ended => true,
            }
        } else {
            false
        };
        if over {
            let present = self.sessions.present_chunks(headers, attrs);
            *ended = self
                .sessions
                .delete(loaded.handle.as_deref(), &present, attrs)
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
            set_cookie = self
                .sessions
                .save(&d, loaded.handle.as_deref(), &present, attrs)
                .await?;
            self.sessions.supersede(headers, attrs, &d);
        }
        // Derived once per opened session: the cache hands the same `SessionData` to every
        // request until it changes (a change clones it, and the clone derives anew).
        let identity = d
            .identity
            .get_or_init(|| Arc::new(identity_of(&d, cfg)))
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
    /// providers or pointing a name at another issuer does not carry sessions over). A session
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
        match (&d.iss, &pc.issuer) {
            (Some(iss), Some(configured)) => iss == configured,
            // Explicit endpoints without `issuer`: the name is all there is to compare.
            (Some(_), None) => true,
            (None, _) => self.single_login_provider,
        }
    }

    /// One refresh per refresh token: concurrent callers share the in-flight attempt.
    async fn refresh(
        &self,
        providers: &Providers,
        d: &SessionData,
        handle: Option<&str>,
    ) -> Result<Refreshed, StoreError> {
        let Some(rt) = d.refresh_token.as_deref() else {
            return Ok(Refreshed::Keep);
        };
        let key = crypto::sha256_b64(rt);
        let cell = self
            .refreshing
            .get_with(key.clone(), async {
                Arc::new(tokio::sync::OnceCell::new())
            })
            .await;
        let r = cell
            .get_or_init(|| self.refresh_now(providers, d, handle))
            .await
            .clone();
        if matches!(r, Refreshed::Keep) {
            // Provider unreachable: the next request may try again.
            self.refreshing.invalidate(&key).await;
        }
        Ok(r)
    }

    async fn refresh_now(
        &self,
        providers: &Providers,
        d: &SessionData,
        handle: Option<&str>,
    ) -> Refreshed {
        // Across replicas (Redis store): one holds the lock and refreshes; the others wait for
        // the rotated session to appear.
        let redis = match (&self.sessions.backend, handle) {
            (Backend::Redis(r), Some(h)) => Some((r.clone(), h.to_string())),
            _ => None,
        };
        let mut lock = None;
        if let Some((r, h)) = &redis {
            match r.lock("lock", h, Duration::from_secs(15)).await {
                Ok(Some(l)) => lock = Some(l),
                Ok(None) => return self.wait_for_other_replica(d, h).await,
                Err(_) => return Refreshed::Keep,
            }
        }
        let out = self.refresh_at_provider(providers, d).await;
        if let (Some((r, h)), Some(lock)) = (&redis, &lock) {
            match &out {
                // Write back before releasing the lock so waiting replicas see the new token.
                Refreshed::New(n) => {
                    let _ = self
                        .sessions
                        .save(n, Some(h), &[], CookieAttrs { secure: false })
                        .await;
                }
                Refreshed::Ended => {
                    let _ = r.delete(h).await;
                }
                Refreshed::Keep => {}
            }
            // Only our own lock: if it outlived its TTL, another replica's lock is left alone.
            if !r.unlock(lock).await {
                tracing::warn!(
                    "session refresh took longer than its Redis lock (15 s); the lock was not ours any more and was left in place"
                );
            }
        }
        out
    }

    async fn wait_for_other_replica(&self, d: &SessionData, handle: &str) -> Refreshed {
        let Backend::Redis(r) = &self.sessions.backend else {
            return Refreshed::Keep;
        };
        let key = r.key_of(handle);
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            match r.get_by_key(&key).await {
                Ok(None) => return Refreshed::Ended,
                Ok(Some(sealed)) => {
                    let n = self.sessions.open(&key, &sealed);
                    match n {
                        Some(n) if n.refresh_token != d.refresh_token => {
                            return Refreshed::New(Box::new((*n).clone()));
                        }
                        Some(_) => {}
                        None => return Refreshed::Ended,
                    }
                }
                Err(_) => return Refreshed::Keep,
            }
        }
        Refreshed::Keep
    }

    /// Uses the refresh token and re-derives the identity from the fresh tokens exactly as the
    /// login did ([`Self::derive_identity`]): roles and claims removed (or added) at the provider
    /// take effect at the next refresh, not only at the next login. Only the tokens, the identity
    /// and the access token's times change: `id`, `sid` and `created_at` stay, so a refresh
    /// never extends the absolute `lifetime` and back-channel logout still finds the session.
    async fn refresh_at_provider(&self, providers: &Providers, d: &SessionData) -> Refreshed {
        let Some(p) = providers.get(&d.provider) else {
            return Refreshed::Ended;
        };
        let Some(rt) = d.refresh_token.as_deref() else {
            return Refreshed::Keep;
        };
        let tr = match p
            .token_request(&[("grant_type", "refresh_token"), ("refresh_token", rt)])
            .await
        {
            Ok(tr) => tr,
            Err(ProviderError::Unavailable { .. }) => return Refreshed::Keep,
            Err(e) => {
                tracing::info!(provider = %d.provider, error = %e, "refresh refused; the session ends");
                return Refreshed::Ended;
            }
        };
        // Fail closed from here on. The provider has issued new tokens (and, when it rotates
        // refresh tokens, retired the old one), so "keep the current session and retry later"
        // is no longer possible, and keeping the old identity with the new tokens would keep
        // roles the provider may have just taken away. So when the identity cannot be derived
        // again — ID token invalid or about another subject, userinfo about another subject,
        // failing or unreachable, or neither an ID token nor a userinfo endpoint to read it
        // from — the session ends and the user signs in again (a browser navigation goes
        // straight to the provider, whose own session usually makes that a round trip without
        // a prompt); the refresh token in force is revoked (best effort), so the grant ends too.
        let derived = match p.metadata() {
            Ok(md) => {
                let expect = Expect::Refresh { sub: &d.sub };
                self.derive_identity(p, &md, tr.id_token.as_deref(), &tr.access_token, expect)
                    .await
            }
            Err(e) => Err(DeriveError::Unavailable(e)),
        };
        let who = match derived {
            Ok(w) => w,
            Err(e) => {
                let why = match &e {
                    DeriveError::Refused(why) => (*why).to_string(),
                    DeriveError::Unavailable(e) => e.to_string(),
                };
                tracing::warn!(provider = %d.provider, sub = %d.sub, reason = %why,
                    "refreshed tokens, but the identity could not be derived again; the session ends");
                // The refresh token now in force: the new one, or the old one when the provider
                // does not rotate (then a copy of the cookie could otherwise refresh again).
                if let Some(rt) = tr.refresh_token.or_else(|| d.refresh_token.clone()) {
                    let p = p.clone();
                    tokio::spawn(async move {
                        let _ = tokio::time::timeout(
                            Duration::from_secs(3),
                            p.revoke(&rt, "refresh_token"),
                        )
                        .await;
                    });
                }
                return Refreshed::Ended;
            }
        };
        let now = now();
        let mut n = d.clone();
        // `sid` is kept: it names the provider session the back-channel logout index uses.
        n.email = who.email;
        n.name = who.name;
        n.preferred_username = who.preferred_username;
        n.roles = who.roles;
        n.claims = who.claims;
        if tr.id_token.is_some() {
            n.id_token = tr.id_token;
        }
        n.access_token = tr.access_token;
        if tr.refresh_token.is_some() {
            n.refresh_token = tr.refresh_token;
        }
        n.access_issued_at = now;
        n.access_expires_at = tr.expires_in.map(|s| now + s as i64);
        if n.roles != d.roles {
            tracing::info!(provider = %d.provider, sub = %d.sub, roles = ?n.roles, "session refreshed; roles changed");
        } else {
            tracing::debug!(provider = %d.provider, "session refreshed");
        }
        Refreshed::New(Box::new(n))
    }

    // ---------------------------------------------------------------- endpoints

    pub async fn endpoint(
        &self,
        providers: &Providers,
        rest: &str,
        req: Request<Incoming>,
        conn: ConnInfo,
        host: Option<&str>,
    ) -> Option<Response<Body>> {
        let q: Vec<(String, String)> = req
            .uri()
            .query()
            .map(|q| {
                url::form_urlencoded::parse(q.as_bytes())
                    .into_owned()
                    .collect()
            })
            .unwrap_or_default();
        let param = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        Some(match rest {
            "/login" => {
                let rd = param("rd").unwrap_or("/").to_string();
                let provider = self.login_provider(param("provider"), &rd, conn, host);
                match self
                    .prepare_login(providers, &provider, &rd, req.headers(), conn, host)
                    .await
                {
                    Ok(login) => login.into_response(),
                    Err(AuthError::ProviderUnavailable { detail, .. })
                        if detail == NOT_FOR_LOGIN =>
                    {
                        page(
                            StatusCode::NOT_FOUND,
                            "Unknown sign-in provider",
                            "<p>This sign-in provider is not configured for browser sign-in.</p>",
                        )
                    }
                    Err(e) => e.into_response(true, &self.config.server.auth_prefix),
                }
            }
            "/callback" => self.callback(providers, &q, req.headers(), conn).await,
            "/logout" => {
                self.logout(
                    providers,
                    req.method(),
                    param("rd"),
                    req.headers(),
                    conn,
                    host,
                )
                .await
            }
            "/me" => self.me(providers, req.headers(), conn).await,
            "/backchannel-logout" => self.backchannel(providers, req).await,
            _ => return None,
        })
    }

    /// The provider `/.auth/login` signs in with: the one of the route `rd` leads to, when
    /// that route takes sessions — `?provider=` only chooses when it names that provider or
    /// `rd` leads to no login route (a session is only good on its own provider's routes, so
    /// a login elsewhere would only send the browser back to sign in again). Else the default.
    fn login_provider(
        &self,
        requested: Option<&str>,
        rd: &str,
        conn: ConnInfo,
        host: Option<&str>,
    ) -> String {
        let of_route = self.route_provider_of(rd, conn, host);
        match (of_route, requested) {
            (Some(route), Some(req)) if route != req => {
                tracing::info!(
                    requested = req,
                    provider = route,
                    "login: rd leads to a route of another provider; signing in with that route's provider"
                );
                route.to_string()
            }
            (Some(route), _) => route.to_string(),
            (None, Some(req)) => req.to_string(),
            (None, None) => self.default_provider().unwrap_or_default(),
        }
    }

    /// The provider of the route a browser sent to `rd` lands on (a GET), when that route
    /// takes sessions.
    fn route_provider_of(&self, rd: &str, conn: ConnInfo, host: Option<&str>) -> Option<&str> {
        let origin = self.origin(conn, host)?;
        let target = redirect::validate(rd, &origin, &self.config.server.allowed_redirect_hosts)?;
        let url = origin.join(&target).ok()?;
        let target_host = if target.starts_with('/') {
            host.map(str::to_string)
        } else {
            url.host_str().map(|h| match url.port() {
                Some(p) => format!("{h}:{p}"),
                None => h.to_string(),
            })
        };
        let path = crate::routes::normalize_path(url.path()).ok()?;
        let route = self.config.routes.iter().find(|r| {
            r.matcher
                .matches(target_host.as_deref(), &Method::GET, &path)
        })?;
        route
            .auth
            .uses_login()
            .then_some(route.provider.as_deref())
            .flatten()
    }

    /// Prepares a login at `provider` (state, nonce, PKCE verifier in a sealed pending-login
    /// cookie) and says where to send the browser; any session cookie the browser holds is
    /// ended (no fixation).
    async fn prepare_login(
        &self,
        providers: &Providers,
        provider: &str,
        rd: &str,
        headers: &HeaderMap,
        conn: ConnInfo,
        host: Option<&str>,
    ) -> Result<LoginRedirect, AuthError> {
        let attrs = self.attrs(conn);
        let Some(origin) = self.origin(conn, host) else {
            return Err(AuthError::BadRequest {
                scheme: Scheme::Session,
                reason: "missing Host header".into(),
            });
        };
        let for_login = self
            .config
            .providers
            .get(provider)
            .is_some_and(|p| p.used_for_login);
        let (Some(p), true) = (providers.get(provider), for_login) else {
            return Err(AuthError::ProviderUnavailable {
                scheme: Scheme::Session,
                detail: NOT_FOR_LOGIN.into(),
            });
        };
        let md = match p.metadata() {
            Ok(m) => m,
            Err(e) => return Err(login_unavailable(&e)),
        };
        let Some(auth_ep) = md.authorization_endpoint.clone() else {
            return Err(login_unavailable(&ProviderError::Invalid {
                provider: provider.into(),
                reason: "no authorization_endpoint".into(),
            }));
        };
        let rd = redirect::validate(rd, &origin, &self.config.server.allowed_redirect_hosts)
            .unwrap_or_else(|| "/".into());
        let redirect_uri = redirect::absolute(
            &format!("{}/callback", self.config.server.auth_prefix),
            &origin,
        );
        let pending = Pending {
            state: crypto::random_token(),
            nonce: crypto::random_token(),
            verifier: crypto::random_token(),
            rd,
            provider: provider.to_string(),
            redirect_uri: redirect_uri.clone(),
            created: now(),
        };
        let challenge = {
            use sha2::Digest;
            B64.encode(sha2::Sha256::digest(pending.verifier.as_bytes()))
        };
        let mut scopes = p.config.scopes.clone();
        if !scopes.iter().any(|s| s == "openid") {
            scopes.insert(0, "openid".into());
        }
        if self.sessions.cfg.refresh && !scopes.iter().any(|s| s == "offline_access") {
            scopes.push("offline_access".into());
        }
        let mut url = auth_ep;
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &client_id(p))
            .append_pair("redirect_uri", &redirect_uri)
            .append_pair("scope", &scopes.join(" "))
            .append_pair("state", &pending.state)
            .append_pair("nonce", &pending.nonce)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256");
        let name = self.pending_cookie_name(&pending.state, attrs);
        let sealed = self
            .pending
            .seal(&name, &serde_json::to_vec(&pending).unwrap_or_default());

        let mut set_cookie = Vec::new();
        if let Some(v) = session::set_cookie(&name, &sealed, Some(PENDING_TTL), attrs) {
            set_cookie.push(v);
        }
        // No fixation: whatever session cookie the browser holds is dropped now.
        if let Ok(Some(l)) = self.sessions.load(headers, attrs).await
            && l.handle.is_some()
        {
            let _ = self.sessions.delete(l.handle.as_deref(), &[], attrs).await;
        }
        for c in self.sessions.present_chunks(headers, attrs) {
            if let Some(v) = session::clear_cookie(&c, attrs) {
                set_cookie.push(v);
            }
        }
        Ok(LoginRedirect {
            location: url.into(),
            set_cookie,
        })
    }

    fn pending_cookie_name(&self, state: &str, attrs: CookieAttrs) -> String {
        let h = crypto::sha256_b64(state);
        format!("{}_login_{}", self.sessions.cookie_name(attrs), &h[..16])
    }

    async fn callback(
        &self,
        providers: &Providers,
        q: &[(String, String)],
        headers: &HeaderMap,
        conn: ConnInfo,
    ) -> Response<Body> {
        let attrs = self.attrs(conn);
        let param = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        let Some(state) = param("state").filter(|s| !s.is_empty() && s.len() < 512) else {
            return login_failed("the sign-in response has no state");
        };
        let name = self.pending_cookie_name(state, attrs);
        let clear = session::clear_cookie(&name, attrs);
        let with_clear = |mut r: Response<Body>| {
            if let Some(c) = &clear {
                r.headers_mut().append(header::SET_COOKIE, c.clone());
            }
            r
        };
        let cookies = session::request_cookies(headers);
        let pending = session::cookie(&cookies, &name)
            .and_then(|v| self.pending.open(&name, v))
            .and_then(|pt| serde_json::from_slice::<Pending>(&pt).ok());
        let Some(pending) = pending else {
            return with_clear(login_failed(
                "this browser has no matching sign-in in progress (it may have expired, or the link was not started here)",
            ));
        };
        if !bool::from(pending.state.as_bytes().ct_eq(state.as_bytes()))
            || now() - pending.created > PENDING_TTL
        {
            return with_clear(login_failed(
                "the sign-in state does not match or has expired",
            ));
        }
        let state_key = crypto::sha256_b64(state);
        if self.used_states.contains_key(&state_key) {
            return with_clear(login_failed("this sign-in response was already used"));
        }
        self.used_states.insert(state_key, ()).await;

        if let Some(err) = param("error") {
            let desc = param("error_description").unwrap_or("");
            return with_clear(page(
                StatusCode::BAD_REQUEST,
                "Sign-in was not completed",
                &format!(
                    "<p>The sign-in service answered <code>{}</code>{}.</p><p><a href=\"{}\">Try again</a></p>",
                    html_escape(err),
                    if desc.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", html_escape(desc))
                    },
                    html_escape(&self.login_link(&pending.rd))
                ),
            ));
        }
        let Some(p) = providers.get(&pending.provider) else {
            return with_clear(login_failed("unknown provider"));
        };
        let md = match p.metadata() {
            Ok(m) => m,
            Err(e) => return with_clear(provider_unavailable(&e)),
        };
        // RFC 9207: the response must come from the issuer we sent the browser to.
        match param("iss") {
            Some(iss) if iss != md.issuer => {
                return with_clear(login_failed(
                    "the sign-in response came from another issuer",
                ));
            }
            None if md.authorization_response_iss_parameter_supported => {
                return with_clear(login_failed(
                    "the sign-in response lacks the issuer (RFC 9207)",
                ));
            }
            _ => {}
        }
        let Some(code) = param("code").filter(|c| !c.is_empty()) else {
            return with_clear(login_failed("the sign-in response has no code"));
        };
        let tr = match p
            .token_request(&[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", &pending.redirect_uri),
                ("code_verifier", &pending.verifier),
            ])
            .await
        {
            Ok(t) => t,
            Err(e @ ProviderError::Unavailable { .. }) => {
                return with_clear(provider_unavailable(&e));
            }
            Err(e) => {
                tracing::info!(error = %e, "code exchange refused");
                return with_clear(login_failed("the sign-in service refused the code"));
            }
        };
        let data = match self.session_from_tokens(p, &md, tr, &pending).await {
            Ok(d) => d,
            Err(r) => return with_clear(r),
        };
        let present = self.sessions.present_chunks(headers, attrs);
        let set = match self.sessions.save(&data, None, &present, attrs).await {
            Ok(s) => s,
            Err(e) => return with_clear(store_unavailable(&e)),
        };
        tracing::info!(provider = %data.provider, sub = %data.sub, "signed in");
        let mut resp = with_clear(redirect_to(&pending.rd));
        for c in set {
            resp.headers_mut().append(header::SET_COOKIE, c);
        }
        resp
    }

    fn login_link(&self, rd: &str) -> String {
        let mut u = Url::parse("http://x/").unwrap_or_else(|_| unreachable!());
        u.set_path(&format!("{}/login", self.config.server.auth_prefix));
        u.query_pairs_mut().append_pair("rd", rd);
        format!("{}?{}", u.path(), u.query().unwrap_or(""))
    }

    /// The session a completed login creates: its identity from [`Self::derive_identity`] (the
    /// same derivation every refresh repeats), its tokens, and fresh timestamps.
    async fn session_from_tokens(
        &self,
        p: &ProviderRuntime,
        md: &crate::provider::Metadata,
        tr: crate::provider::TokenResponse,
        pending: &Pending,
    ) -> Result<SessionData, Response<Body>> {
        let expect = Expect::Login {
            nonce: &pending.nonce,
        };
        let who = match self
            .derive_identity(p, md, tr.id_token.as_deref(), &tr.access_token, expect)
            .await
        {
            Ok(w) => w,
            Err(DeriveError::Unavailable(e)) => return Err(provider_unavailable(&e)),
            Err(DeriveError::Refused(why)) => return Err(login_failed(why)),
        };
        let now = now();
        Ok(SessionData {
            id: crypto::random_token(),
            provider: pending.provider.clone(),
            iss: who.iss,
            sub: who.sub,
            email: who.email,
            name: who.name,
            preferred_username: who.preferred_username,
            sid: who.sid,
            roles: who.roles,
            claims: who.claims,
            access_token: tr.access_token,
            refresh_token: tr.refresh_token,
            id_token: tr.id_token,
            created_at: now,
            created_ms: session::now_ms(),
            last_seen: now,
            access_expires_at: tr.expires_in.map(|e| now + e as i64),
            access_issued_at: now,
            identity: Default::default(),
        })
    }

    /// Who the user is according to the provider's tokens — the one derivation of a session's
    /// identity, used by the callback and by every refresh: the ID token's claims (verified:
    /// signature, iss, aud, exp; `azp` and `at_hash` when present; the nonce at login), userinfo
    /// merged over them when the provider has a userinfo endpoint (ZITADEL puts profile claims
    /// there), roles per `roles_claim`, and the claims routes need.
    ///
    /// At a refresh ([`Expect::Refresh`]) the subject must stay the session's, in the ID token
    /// and in userinfo alike, and userinfo that cannot be fetched is fatal (see
    /// [`Self::refresh_at_provider`]); at login an answer other than "unavailable" falls back to
    /// the fresh ID token's claims. A refresh response without an ID token (OIDC Core 12.2
    /// allows it) leaves userinfo as the only fresh source: the identity is read from userinfo
    /// alone. The stored ID token's claims are not carried over — they are as old as the login,
    /// and merging fresh userinfo over them would keep a role claim the provider has since
    /// dropped (ZITADEL omits the claim of a user without roles). Without a userinfo endpoint
    /// there is nothing fresh to read, and the refresh fails.
    async fn derive_identity(
        &self,
        p: &ProviderRuntime,
        md: &crate::provider::Metadata,
        id_token: Option<&str>,
        access_token: &str,
        expect: Expect<'_>,
    ) -> Result<Derived, DeriveError> {
        let cid = client_id(p);
        let mut claims = match (id_token, &expect) {
            (Some(idt), _) => {
                let claims = match p.verify_jwt(idt, std::slice::from_ref(&cid)).await {
                    Ok(c) => c,
                    Err(TokenError::Unavailable(e)) => return Err(DeriveError::Unavailable(e)),
                    Err(e) => {
                        tracing::warn!(error = %e, "ID token refused");
                        return Err(DeriveError::Refused("the ID token is not valid"));
                    }
                };
                // The nonce binds the login's ID token to this browser's request. A refreshed
                // ID token SHOULD NOT carry one (OIDC Core 12.2) and is bound by the refresh
                // token and the subject check below instead.
                if let Expect::Login { nonce } = expect {
                    let nonce_ok = claims
                        .get("nonce")
                        .and_then(Value::as_str)
                        .is_some_and(|n| bool::from(n.as_bytes().ct_eq(nonce.as_bytes())));
                    if !nonce_ok {
                        return Err(DeriveError::Refused("the ID token nonce does not match"));
                    }
                }
                if let Some(Value::Array(aud)) = claims.get("aud")
                    && aud.len() > 1
                    && claims.get("azp").and_then(Value::as_str) != Some(cid.as_str())
                {
                    return Err(DeriveError::Refused(
                        "the ID token azp does not name this client",
                    ));
                }
                if let Some(at_hash) = claims.get("at_hash").and_then(Value::as_str)
                    && !at_hash_matches(idt, access_token, at_hash)
                {
                    return Err(DeriveError::Refused(
                        "the ID token at_hash does not match the access token",
                    ));
                }
                claims
            }
            (None, Expect::Login { .. }) => {
                return Err(DeriveError::Refused("the sign-in service sent no ID token"));
            }
            (None, Expect::Refresh { sub }) => {
                if md.userinfo_endpoint.is_none() {
                    return Err(DeriveError::Refused(
                        "the refresh response has no ID token and the provider no userinfo endpoint",
                    ));
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
            return Err(DeriveError::Refused("the ID token has no sub"));
        }
        if let Expect::Refresh { sub: expected } = expect
            && sub != expected
        {
            return Err(DeriveError::Refused(
                "the refreshed ID token is about another subject",
            ));
        }
        if md.userinfo_endpoint.is_some() {
            match p.userinfo(access_token).await {
                Ok(ui) => {
                    if ui.get("sub").and_then(Value::as_str) != Some(sub.as_str()) {
                        return Err(DeriveError::Refused("userinfo is about another subject"));
                    }
                    merge_userinfo(&mut claims, ui);
                }
                Err(e @ ProviderError::Unavailable { .. }) => {
                    return Err(DeriveError::Unavailable(e));
                }
                Err(e) if matches!(expect, Expect::Refresh { .. }) => {
                    tracing::warn!(error = %e, "userinfo failed after a refresh");
                    return Err(DeriveError::Refused("userinfo failed"));
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
            claims: claims
                .iter()
                .filter(|(k, _)| self.needed_claims.contains(*k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            sub,
        })
    }

    /// `/.auth/logout`. A GET from anywhere but this origin (`Sec-Fetch-Site` `cross-site` or
    /// `same-site`, or an `Origin` that is not this origin) — a link or script elsewhere, a
    /// sibling subdomain included, signing the user out — ends nothing and answers a page with a
    /// POST button; a POST ends the session only when it comes from this origin (else 403 with
    /// the same button). Ending: the session is deleted
    /// (Redis) or its id revoked in this process (cookie store: every copy and version of its
    /// cookie), every chunk cleared, the refresh token revoked at the provider, and the browser
    /// sent on to the provider's end-session endpoint.
    async fn logout(
        &self,
        providers: &Providers,
        method: &Method,
        rd: Option<&str>,
        headers: &HeaderMap,
        conn: ConnInfo,
        host: Option<&str>,
    ) -> Response<Body> {
        let post = !matches!(*method, Method::GET | Method::HEAD);
        if self.is_from_elsewhere(headers, conn, host) {
            tracing::info!(
                method = %method,
                "logout requested from another site: answered with a confirmation page, nothing ended"
            );
            return self.logout_confirmation(rd, post);
        }
        let attrs = self.attrs(conn);
        // A session that cannot be deleted stays valid for every copy of its cookie: say so
        // (503, the cookie kept for the retry) rather than clear this browser's cookie and
        // pretend the logout happened.
        let logout_unavailable = |e: &StoreError| {
            tracing::error!(error = %e, "logout: the session store is unavailable; the session was not ended");
            page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Sign-out is unavailable",
                "<p>The session could not be ended right now, so you are still signed in. Please try again in a moment.</p>",
            )
        };
        let loaded = match self.sessions.load(headers, attrs).await {
            Ok(l) => l,
            Err(e) => return logout_unavailable(&e),
        };
        let present = self.sessions.present_chunks(headers, attrs);
        let ended = match &loaded {
            Some(l) => self.sessions.end(l, &present, attrs).await,
            None => self.sessions.delete(None, &present, attrs).await,
        };
        let clears = match ended {
            Ok(c) => c,
            Err(e) => return logout_unavailable(&e),
        };
        let origin = self.origin(conn, host);
        let allowed = &self.config.server.allowed_redirect_hosts;
        let target = origin
            .as_ref()
            .and_then(|o| rd.and_then(|rd| redirect::validate(rd, o, allowed)))
            .or_else(|| {
                origin.as_ref().and_then(|o| {
                    redirect::validate(&self.sessions.cfg.post_logout_redirect, o, allowed)
                })
            })
            .unwrap_or_else(|| "/".into());
        let mut location = target.clone();
        if let Some(l) = &loaded {
            let d = &l.data;
            tracing::info!(provider = %d.provider, sub = %d.sub, "signed out");
            if let Some(p) = providers.get(&d.provider)
                && let Ok(md) = p.metadata()
            {
                if let (Some(rt), Some(_)) = (&d.refresh_token, &md.revocation_endpoint) {
                    match tokio::time::timeout(
                        Duration::from_secs(3),
                        p.revoke(rt, "refresh_token"),
                    )
                    .await
                    {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => {
                            tracing::warn!(error = %e, "logout: refresh token revocation failed")
                        }
                        Err(_) => tracing::warn!("logout: refresh token revocation timed out"),
                    }
                }
                if let (Some(mut es), Some(o)) = (md.end_session_endpoint.clone(), &origin) {
                    {
                        let mut qp = es.query_pairs_mut();
                        if let Some(idt) = &d.id_token {
                            qp.append_pair("id_token_hint", idt);
                        }
                        qp.append_pair("client_id", &client_id(p));
                        qp.append_pair("post_logout_redirect_uri", &redirect::absolute(&target, o));
                    }
                    location = es.to_string();
                }
            }
        }
        let mut resp = redirect_to(&location);
        for c in clears {
            resp.headers_mut().append(header::SET_COOKIE, c);
        }
        resp
    }

    /// Whether a logout request (GET or POST) comes from anywhere but this origin (see
    /// [`Self::logout`]): a `Sec-Fetch-Site` other than `same-origin` or `none` (typed by the
    /// user, a bookmark) — `same-site` too, a sibling subdomain's link — or a foreign `Origin`.
    /// Clients that send neither header (not browsers, or browsers too old to send them) are
    /// taken at their word: they hold the cookie themselves.
    fn is_from_elsewhere(&self, headers: &HeaderMap, conn: ConnInfo, host: Option<&str>) -> bool {
        if let Some(site) = headers.get("sec-fetch-site") {
            let site = site.as_bytes().trim_ascii();
            if !(site.eq_ignore_ascii_case(b"same-origin") || site.eq_ignore_ascii_case(b"none")) {
                return true;
            }
        }
        headers
            .get(header::ORIGIN)
            .is_some_and(|o| !self.is_this_origin(o, conn, host))
    }

    /// Whether an `Origin` header names this proxy's origin: `server.public_url`'s origin
    /// when set; else the request's `Host` (scheme checked only on a TLS connection: behind a
    /// TLS-terminating front proxy the browser's `https` origin reaches a plain listener).
    /// `null`, malformed and non-http(s) origins are never this origin.
    fn is_this_origin(&self, origin: &HeaderValue, conn: ConnInfo, host: Option<&str>) -> bool {
        let Some(u) = origin.to_str().ok().and_then(|o| Url::parse(o.trim()).ok()) else {
            return false;
        };
        if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none() {
            return false;
        }
        if let Some(public) = &self.config.server.public_url {
            return u.origin() == public.origin();
        }
        if conn.tls && u.scheme() != "https" {
            return false;
        }
        let Some(host) = host else { return false };
        let (name, port) = split_host_port(host);
        let name = name.strip_suffix('.').unwrap_or(name);
        let same_name = u.host_str().is_some_and(|h| h.eq_ignore_ascii_case(name));
        let same_port = match port {
            None => u.port().is_none(),
            Some(p) => u.port_or_known_default() == Some(p),
        };
        same_name && same_port
    }

    /// The page a logout from another site gets: nothing was ended; a button posts the logout
    /// from this origin. Not frameable (the button must not be clicked through an overlay).
    fn logout_confirmation(&self, rd: Option<&str>, post: bool) -> Response<Body> {
        let mut action = url::form_urlencoded::Serializer::new(String::new());
        if let Some(rd) = rd {
            action.append_pair("rd", rd);
        }
        let query = action.finish();
        let target = if query.is_empty() {
            format!("{}/logout", self.config.server.auth_prefix)
        } else {
            format!("{}/logout?{query}", self.config.server.auth_prefix)
        };
        let (status, lead) = if post {
            (
                StatusCode::FORBIDDEN,
                "This sign-out request came from another site, so it was not carried out.",
            )
        } else {
            (
                StatusCode::OK,
                "Another site asked to sign you out. You are still signed in.",
            )
        };
        let mut r = page(
            status,
            "Sign out?",
            &format!(
                "<p>{lead}</p><form method=\"post\" action=\"{}\"><button type=\"submit\">Sign out</button></form>",
                html_escape(&target)
            ),
        );
        let h = r.headers_mut();
        h.insert(
            "content-security-policy",
            HeaderValue::from_static(
                "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
            ),
        );
        h.insert("x-frame-options", HeaderValue::from_static("DENY"));
        r
    }

    async fn me(
        &self,
        providers: &Providers,
        headers: &HeaderMap,
        conn: ConnInfo,
    ) -> Response<Body> {
        let mut ended = Vec::new();
        // No route here: the session of whichever provider made it, as long as it belongs to
        // that provider (`idp` says which).
        match self
            .session_identity(providers, headers, conn, None, &mut ended)
            .await
        {
            Ok(Some(Authenticated {
                identity: id,
                set_cookie,
            })) => {
                let body = json!({
                    "sub": id.sub,
                    "idp": &*id.provider,
                    "email": id.verified_email(),
                    "name": id.name,
                    "preferred_username": id.preferred_username,
                    "roles": id.roles,
                    "expires_at": id.expires_at,
                });
                let mut r = Response::new(full(body.to_string()));
                let h = r.headers_mut();
                h.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                for c in set_cookie {
                    h.append(header::SET_COOKIE, c);
                }
                r
            }
            Ok(None) => {
                let mut r = json_error(StatusCode::UNAUTHORIZED, "unauthenticated", "no session");
                for c in ended {
                    r.headers_mut().append(header::SET_COOKIE, c);
                }
                r
            }
            Err(e) => store_unavailable(&e),
        }
    }

    async fn backchannel(&self, providers: &Providers, req: Request<Incoming>) -> Response<Body> {
        let bad = |why: &str| {
            tracing::info!(reason = why, "back-channel logout refused");
            json_error(StatusCode::BAD_REQUEST, "invalid_request", why)
        };
        if req.method() != Method::POST {
            return bad("POST a logout_token");
        }
        let body: Bytes = match http_body_util::Limited::new(req.into_body(), 64 * 1024)
            .collect()
            .await
        {
            Ok(b) => b.to_bytes(),
            Err(_) => return bad("unreadable body"),
        };
        let token = url::form_urlencoded::parse(&body)
            .find(|(k, _)| k == "logout_token")
            .map(|(_, v)| v.into_owned());
        let Some(token) = token else {
            return bad("missing logout_token");
        };
        let Some(iss) = unverified_claim(&token, "iss") else {
            return bad("malformed logout_token");
        };
        // The provider whose keys must have signed it: its issuer, and — when two providers
        // are two clients of one issuer — the client the token is addressed to. Its
        // verification below checks both; the logout then reaches that provider's sessions only.
        let aud = unverified_audiences(&token);
        let candidates: Vec<&Arc<ProviderRuntime>> = self
            .config
            .providers
            .values()
            .filter(|p| p.used_for_login)
            .filter_map(|pc| {
                let p = providers.get(&pc.name)?;
                let matches = pc.issuer.as_deref() == Some(iss.as_str())
                    || p.metadata().is_ok_and(|m| m.issuer == iss);
                matches.then_some(p)
            })
            .collect();
        let provider = candidates
            .iter()
            .find(|p| aud.iter().any(|a| *a == client_id(p)))
            .or(candidates.first());
        let Some(p) = provider.map(|p| (*p).clone()) else {
            return bad("unknown issuer");
        };
        let claims = match p.verify_jwt(&token, &[client_id(&p)]).await {
            Ok(c) => c,
            Err(TokenError::Unavailable(e)) => return provider_unavailable(&e),
            Err(e) => return bad(&e.to_string()),
        };
        let has_event = claims
            .get("events")
            .and_then(Value::as_object)
            .is_some_and(|e| e.contains_key(BACKCHANNEL_EVENT));
        if !has_event {
            return bad("logout_token lacks the back-channel logout event");
        }
        if claims.contains_key("nonce") {
            return bad("logout_token must not carry a nonce");
        }
        if !claims.get("iat").is_some_and(Value::is_number) {
            return bad("logout_token lacks iat");
        }
        let sid = claims.get("sid").and_then(Value::as_str);
        let sub = claims.get("sub").and_then(Value::as_str);
        if sid.is_none() && sub.is_none() {
            return bad("logout_token has neither sid nor sub");
        }
        let Some(jti) = claims.get("jti").and_then(Value::as_str) else {
            return bad("logout_token lacks jti");
        };
        let jti_key = format!("{}:{}", p.name(), jti);
        if self.seen_jti.contains_key(&jti_key) {
            return bad("logout_token replayed");
        }
        let provider = p.name().to_string();
        // With a sid, only that provider session ends; without, all of the user's — at this
        // provider only.
        let what = match (sid, sub) {
            (Some(sid), _) => Ended::Sid(sid),
            (None, Some(sub)) => Ended::Sub(sub),
            (None, None) => return bad("logout_token has neither sid nor sub"),
        };
        // The jti is remembered only once the sessions have ended: a logout that failed (503)
        // must stay retryable, or the provider's retry is refused as a replay and the sessions
        // live on.
        match &self.sessions.backend {
            Backend::Redis(r) => {
                match r.is_set("jti", &jti_key).await {
                    Ok(false) => {}
                    Ok(true) => return bad("logout_token replayed"),
                    Err(e) => return store_unavailable(&e),
                }
                match self.sessions.end_indexed(&provider, what).await {
                    Ok(n) => {
                        tracing::info!(provider, sid, sub, sessions = n, "back-channel logout")
                    }
                    Err(e) => return store_unavailable(&e),
                }
                // Done: from now on the same token is a replay (on every replica).
                match r.set_once("jti", &jti_key, Duration::from_secs(3600)).await {
                    Ok(true) => {}
                    Ok(false) => return bad("logout_token replayed"),
                    Err(e) => {
                        tracing::warn!(error = %e, "back-channel logout done, but its jti could not be recorded")
                    }
                }
            }
            Backend::Cookie => {
                if let Err(e) = self.sessions.end_indexed(&provider, what).await {
                    return store_unavailable(&e);
                }
                tracing::info!(provider, sid, sub, "back-channel logout (revocation list)");
            }
        }
        self.seen_jti.insert(jti_key, ()).await;
        let mut r = Response::new(empty());
        r.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        r
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

fn identity_of(d: &SessionData, cfg: &crate::config::Session) -> Identity {
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
        claims,
        access_token: Some(d.access_token.clone()),
        expires_at: Some(d.expires_at(cfg)),
        provider: Arc::from(d.provider.as_str()),
        via: Via::Session,
        header_values: Default::default(),
    }
}

/// `host[:port]` of a `Host` header (`[v6]:port` too).
fn split_host_port(host: &str) -> (&str, Option<u16>) {
    if let Some(rest) = host.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((v6, after)) => (
                &host[..v6.len() + 2],
                after.strip_prefix(':').and_then(|p| p.parse().ok()),
            ),
            None => (host, None),
        };
    }
    match host.rsplit_once(':') {
        Some((h, p)) => match p.parse() {
            Ok(p) => (h, Some(p)),
            Err(_) => (host, None),
        },
        None => (host, None),
    }
}

fn client_id(p: &ProviderRuntime) -> String {
    p.config.client_id.clone().unwrap_or_default()
}

fn accepts_html(parts: &Parts) -> bool {
    crate::error::wants_html(&parts.headers)
}

/// A top-level navigation a person can complete a login from.
pub fn is_browser_navigation(parts: &Parts) -> bool {
    (parts.method == Method::GET || parts.method == Method::HEAD) && accepts_html(parts)
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

/// A claim read without verification (only to pick the provider that then verifies).
fn unverified_claim(jwt: &str, name: &str) -> Option<String> {
    let payload = jwt.split('.').nth(1)?;
    let v: Value = serde_json::from_slice(&B64.decode(payload).ok()?).ok()?;
    v.get(name)?.as_str().map(str::to_string)
}

/// The `aud` of a JWT, unverified (only to pick the provider that then verifies): a string or
/// an array of strings.
fn unverified_audiences(jwt: &str) -> Vec<String> {
    let Some(v) = jwt
        .split('.')
        .nth(1)
        .and_then(|p| B64.decode(p).ok())
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
    else {
        return Vec::new();
    };
    match v.get("aud") {
        Some(Value::String(a)) => vec![a.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    }
}

/// Merges a userinfo answer over ID token claims; the ID token's protocol claims stay.
fn merge_userinfo(claims: &mut Map<String, Value>, userinfo: Map<String, Value>) {
    for (k, v) in userinfo {
        if !matches!(
            k.as_str(),
            "iss" | "aud" | "exp" | "iat" | "nbf" | "nonce" | "sub" | "azp" | "at_hash" | "c_hash"
        ) {
            claims.insert(k, v);
        }
    }
}

fn redirect_to(location: &str) -> Response<Body> {
    let mut r = Response::new(empty());
    *r.status_mut() = StatusCode::FOUND;
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(location) {
        h.insert(header::LOCATION, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn page(status: StatusCode, title: &str, body: &str) -> Response<Body> {
    html_page(status, title, body)
}

fn login_failed(why: &str) -> Response<Body> {
    tracing::info!(reason = why, "login could not be completed");
    page(
        StatusCode::BAD_REQUEST,
        "Login could not be completed",
        &format!(
            "<p>Login could not be completed: {}.</p><p>Go back to the page you wanted and sign in again.</p>",
            html_escape(why)
        ),
    )
}

fn provider_unavailable(e: &ProviderError) -> Response<Body> {
    tracing::warn!(error = %e, "sign-in provider unavailable");
    page(
        StatusCode::SERVICE_UNAVAILABLE,
        "Sign-in is unavailable",
        "<p>The sign-in service cannot be reached right now. Please try again in a moment.</p>",
    )
}

/// `ProviderUnavailable`'s detail for a provider that does not do browser sign-in (the
/// `/.auth/login` endpoint answers it with 404; a route never names such a provider).
const NOT_FOR_LOGIN: &str = "this sign-in provider is not configured for browser sign-in";

fn login_unavailable(e: &ProviderError) -> AuthError {
    AuthError::ProviderUnavailable {
        scheme: Scheme::Session,
        detail: e.to_string(),
    }
}

/// Where a login sends the browser, with the cookies that go along.
struct LoginRedirect {
    location: String,
    set_cookie: Vec<HeaderValue>,
}

impl LoginRedirect {
    fn into_response(self) -> Response<Body> {
        AuthError::LoginRequired {
            location: self.location,
            set_cookie: self.set_cookie,
        }
        .into_response(true, "")
    }
}

fn store_unavailable(e: &StoreError) -> Response<Body> {
    tracing::error!(error = %e, "session store unavailable: answering 503");
    json_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "session_store_unavailable",
        "the session store is unavailable; try again shortly",
    )
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

    fn login_state() -> LoginState {
        let src = "[server]\nlisten = \"127.0.0.1:1\"\n[providers.p]\nissuer = \"https://op.example\"\nclient_id = \"c\"\nclient_secret = \"s\"\n[session]\nsecret = \"4f9c2e7a1b8d3065f1e2d3c4b5a69788\"\n[[route]]\npath = \"/\"\nupstream = \"http://127.0.0.1:2\"\nauth = \"login\"\n";
        let cfg = crate::config::load_str(std::path::Path::new("t.toml"), src, Default::default())
            .unwrap();
        LoginState::new(Arc::new(cfg)).unwrap().unwrap()
    }

    /// Attack: a Cookie header with a non-ASCII byte (an app cookie, or one tossed from a sibling
    /// subdomain) made the whole stripping step give up, so the session cookie — with the Redis
    /// store a bearer credential — reached the upstream.
    #[test]
    fn own_cookies_are_stripped_even_next_to_non_ascii_cookies() {
        let l = login_state();
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
        merge_userinfo(&mut claims, ui);
        assert_eq!(claims["email"], "new@x");
        assert_eq!(claims["roles"], json!(["reader"]));
        assert_eq!(claims["iss"], "http://op");
        assert_eq!(claims["aud"], "c");
        assert_eq!(claims["sid"], "s1");
    }

    /// Which logout requests come from elsewhere (no `public_url`: the request's Host decides;
    /// scheme only checked on TLS connections).
    #[test]
    fn logout_origin_table() {
        let l = login_state();
        let plain = ConnInfo {
            peer: "127.0.0.1:1".parse().unwrap(),
            tls: false,
        };
        let tls = ConnInfo { tls: true, ..plain };
        let host = Some("app.example:8080");
        let h = |pairs: &[(&'static str, &'static str)]| {
            let mut m = HeaderMap::new();
            for (k, v) in pairs {
                m.insert(*k, HeaderValue::from_static(v));
            }
            m
        };
        type Headers = &'static [(&'static str, &'static str)];
        let cases: &[(Headers, bool)] = &[
            // headers, from elsewhere (GET and POST alike)
            (&[], false),
            (&[("sec-fetch-site", "same-origin")], false),
            (&[("sec-fetch-site", "none")], false),
            (&[("sec-fetch-site", "same-site")], true),
            (&[("sec-fetch-site", "Cross-Site")], true),
            (&[("sec-fetch-site", "something-new")], true),
            (&[("origin", "http://app.example:8080")], false),
            (&[("origin", "https://APP.example:8080")], false),
            (&[("origin", "http://app.example")], true),
            (&[("origin", "http://app.example:8081")], true),
            (&[("origin", "http://evil.example:8080")], true),
            (&[("origin", "null")], true),
            (&[("origin", "app.example:8080")], true),
            (
                &[
                    ("origin", "http://app.example:8080"),
                    ("sec-fetch-site", "cross-site"),
                ],
                true,
            ),
        ];
        for (headers, want) in cases {
            assert_eq!(
                l.is_from_elsewhere(&h(headers), plain, host),
                *want,
                "{headers:?}"
            );
        }
        // on TLS the scheme counts; default ports match a Host without port
        let o = |v: &'static str| HeaderValue::from_static(v);
        assert!(!l.is_this_origin(&o("http://app.example"), tls, Some("app.example")));
        assert!(l.is_this_origin(&o("https://app.example"), tls, Some("app.example")));
        assert!(l.is_this_origin(&o("https://app.example"), tls, Some("app.example:443")));
        assert!(l.is_this_origin(&o("http://[::1]:8080"), plain, Some("[::1]:8080")));
        assert!(!l.is_this_origin(&o("http://app.example"), plain, None));
    }

    #[test]
    fn unverified_iss() {
        let t = format!("x.{}.y", B64.encode(br#"{"iss":"http://op"}"#));
        assert_eq!(unverified_claim(&t, "iss").as_deref(), Some("http://op"));
        assert_eq!(unverified_claim("garbage", "iss"), None);
    }
}
