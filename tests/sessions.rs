//! Sessions against two real providers (two oidc-provider processes, `corp` and `social`, whose
//! users are both called `alice`), a real Redis and in-process portcullis instances: a session
//! counts only on its own provider's routes (proxy and `/.auth/check`), `/.auth/login?provider=`
//! cannot pick another route's provider, the assertion names the provider, back-channel logout
//! stays with its provider, logout ends every copy of a cookie and refuses other sites, an
//! unverified email is not vouched for, the Redis refresh lock is released only by its owner,
//! a short idle timeout slides for an active session, and a session cookie sent twice (one copy
//! planted) is no session. Each attack test asserts the denial.

mod support;
use support::oidc;
use support::*;

use std::time::Duration;

use http::{Method, StatusCode};
use serde_json::{Value, json};

/// Two providers, one proxy.
struct Two {
    corp: Provider,
    social: Provider,
    _proxy: TestProxy,
    base: String,
    port: u16,
}

impl Two {
    fn authority(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

/// `session`: extra `[session]` lines (the secret is added).
async fn two(session: &str) -> Two {
    let port = free_port();
    let corp = Provider::start(&[port], &[]);
    let social = Provider::start(&[port], &[]);
    let up = echo_upstream_map().await;
    let toml = format!(
        r#"[server]
listen = "127.0.0.1:{port}"
trusted_proxies = ["127.0.0.1/32"]

[providers.corp]
issuer = "{corp}"
client_id = "web"
client_secret = "web-secret"
scopes = ["openid", "profile", "email"]

[providers.social]
issuer = "{social}"
client_id = "web"
client_secret = "web-secret"
scopes = ["openid", "profile", "email"]

[session]
{session}

[headers]
assertion = "X-Portcullis-Assertion"

[headers.claims]
"X-Sid" = "sid"

[[route]]
name = "corp-admin"
path = "/corp/admin"
upstream = "http://{up}"
auth = "login"
provider = "corp"
require_roles = ["admin"]

[[route]]
name = "corp"
path = "/corp"
upstream = "http://{up}"
auth = "login"
provider = "corp"

[[route]]
name = "corp-api"
path = "/corp-api"
upstream = "http://{up}"
auth = "login_or_bearer"
provider = "corp"

[[route]]
name = "social"
path = "/social"
upstream = "http://{up}"
auth = "login"
provider = "social"

[[route]]
name = "public"
path = "/public"
upstream = "http://{up}"
auth = "none"
"#,
        corp = corp.issuer,
        social = social.issuer,
        session = session_cfg(session),
    );
    let proxy = start_proxy_ready(&toml).await;
    Two {
        corp,
        social,
        _proxy: proxy,
        base: format!("http://127.0.0.1:{port}"),
        port,
    }
}

/// The same browser (cookie jar) sending API requests (`Accept: application/json`).
fn api(b: &Browser) -> Browser {
    let mut a = b.clone();
    a.accept = JSON;
    a
}

fn upstream_header(r: &Page, name: &str) -> Option<String> {
    r.json()["headers"][name].as_str().map(str::to_string)
}

/// The Cookie header value a browser holds for `authority`.
fn cookie_header(b: &Browser, authority: &str) -> String {
    b.cookies(authority)
        .iter()
        .map(|(n, v)| format!("{n}={v}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// A browser holding exactly these cookies.
fn with_cookies(authority: &str, cookies: &[(String, String)]) -> Browser {
    let b = Browser::new();
    for (n, v) in cookies {
        b.set_cookie_raw(authority, n, v);
    }
    b
}

/// `/.auth/check` as a trusted front proxy would ask it for `GET uri` (`accept` of the original
/// request).
async fn check(t: &Two, cookie: &str, uri: &str, accept: &'static str) -> Page {
    let mut b = Browser::new();
    b.accept = accept;
    let mut h = vec![
        ("x-forwarded-method", "GET"),
        ("x-forwarded-uri", uri),
        ("x-forwarded-host", "127.0.0.1"),
    ];
    if !cookie.is_empty() {
        h.push(("cookie", cookie));
    }
    b.request(Method::GET, &format!("{}/.auth/check", t.base), None, &h)
        .await
}

const JSON: &str = "application/json";
const HTML: &str = "text/html,application/xhtml+xml,*/*;q=0.8";

/// Attack: alice signs in at `social` (any self-registered user can be called alice there) and
/// uses that session on `corp`'s routes. It passed, and social's roles satisfied corp's
/// `require_roles`. Now a session counts only on its own provider's routes — API requests get
/// 401, `/.auth/check` too, a navigation starts a login at corp — and the social session itself
/// stays usable on social's routes.
#[tokio::test]
async fn a_session_counts_only_on_its_providers_routes() {
    let t = two("").await;
    let b = Browser::new();
    let r = b.login(&t.base, "/social/x", "alice").await;
    assert_eq!(
        upstream_header(&r, "x-forwarded-user").as_deref(),
        Some("alice")
    );
    let a = api(&b);
    for path in ["/corp/admin/x", "/corp/x", "/corp-api/x"] {
        let r = a.get(&format!("{}{path}", t.base)).await;
        assert_eq!(
            r.status, 401,
            "{path}: social's session on a corp route: {}",
            r.body
        );
        assert_eq!(r.json()["error"], "unauthenticated", "{}", r.body);
        assert!(
            r.set_cookies().is_empty(),
            "the social session is not cleared"
        );
    }
    // forward-auth judges the same way
    let cookie = cookie_header(&b, &t.authority());
    let r = check(&t, &cookie, "/corp/admin/x", JSON).await;
    assert_eq!(r.status, 401, "check, corp route: {}", r.body);
    assert!(r.headers.get("x-forwarded-user").is_none());
    let r = check(&t, &cookie, "/corp/x", HTML).await;
    assert_ne!(r.status, 200, "check, corp route, navigation: {}", r.body);
    assert!(r.headers.get("x-forwarded-user").is_none());
    if r.status == StatusCode::FOUND {
        assert!(
            r.location().starts_with(&format!("{}/auth", t.corp.issuer)),
            "{}",
            r.location()
        );
    }
    let r = check(&t, &cookie, "/social/x", JSON).await;
    assert_eq!(r.status, 200, "check, social route: {}", r.body);
    assert_eq!(r.headers["x-forwarded-user"], "alice");
    // the session still serves its own provider's routes; /.auth/me says whose it is
    let r = a.get(&format!("{}/social/y", t.base)).await;
    assert_eq!(r.status, 200);
    let me = a.get(&format!("{}/.auth/me", t.base)).await;
    assert_eq!(me.status, 200);
    assert_eq!(me.json()["idp"], "social");
    // a navigation to a corp route signs in at corp, not social
    let r = b.get(&format!("{}/corp/admin/x", t.base)).await;
    assert_eq!(r.status, StatusCode::FOUND, "{}", r.body);
    assert!(
        r.location().starts_with(&format!("{}/auth", t.corp.issuer)),
        "navigation goes to corp's login: {}",
        r.location()
    );

    // and the other way round: a corp session does not open social's routes
    let c = Browser::new();
    c.login(&t.base, "/corp/admin/x", "alice").await;
    let r = api(&c).get(&format!("{}/social/x", t.base)).await;
    assert_eq!(r.status, 401, "{}", r.body);
    let r = api(&c).get(&format!("{}/corp/admin/y", t.base)).await;
    assert_eq!(r.status, 200, "{}", r.body);
}

/// Attack: `/.auth/login?provider=social&rd=/corp/…` signed in at social and landed on the corp
/// route with access. Now the login goes to the provider of the route `rd` leads to; `provider=`
/// only chooses where `rd` leads to no login route (or names that route's provider).
#[tokio::test]
async fn login_with_another_provider_does_not_grant_a_route() {
    let t = two("").await;
    let b = Browser::new();
    let first_hop = |r: &Page| r.location();
    let r = b
        .get(&format!(
            "{}/.auth/login?provider=social&rd=%2Fcorp%2Fadmin%2Fx",
            t.base
        ))
        .await;
    assert_eq!(r.status, StatusCode::FOUND);
    assert!(
        first_hop(&r).starts_with(&format!("{}/auth", t.corp.issuer)),
        "rd leads to a corp route: the login must go to corp, went to {}",
        first_hop(&r)
    );
    // the whole flow: the browser signs in at corp only, never at social
    let (r, visited) = b
        .navigate(
            &format!(
                "{}/.auth/login?provider=social&rd=%2Fcorp%2Fadmin%2Fx",
                t.base
            ),
            "alice",
        )
        .await;
    assert!(
        visited.iter().all(|u| !u.starts_with(&t.social.issuer)),
        "{visited:?}"
    );
    assert_eq!(r.status, 200, "{visited:?} {}", r.body);
    assert_eq!(
        api(&b).get(&format!("{}/.auth/me", t.base)).await.json()["idp"],
        "corp"
    );
    // provider= chooses where rd leads to no login route, or to that provider's own route
    for (q, issuer) in [
        ("provider=social&rd=%2Fpublic", &t.social.issuer),
        ("provider=social&rd=%2Fsocial%2Fx", &t.social.issuer),
        ("provider=corp&rd=%2Fsocial%2Fx", &t.social.issuer),
        ("rd=%2Fsocial%2Fx", &t.social.issuer),
        ("rd=%2Fcorp%2Fx", &t.corp.issuer),
        // dot segments are resolved as the browser will: this lands on /corp/x
        (
            "provider=social&rd=%2Fsocial%2F..%2Fcorp%2Fx",
            &t.corp.issuer,
        ),
    ] {
        let r = Browser::new()
            .get(&format!("{}/.auth/login?{q}", t.base))
            .await;
        assert_eq!(r.status, StatusCode::FOUND, "{q}");
        assert!(
            r.location().starts_with(&format!("{issuer}/auth")),
            "{q}: {}",
            r.location()
        );
    }
    // a provider that does not exist is refused, not replaced
    let r = Browser::new()
        .get(&format!(
            "{}/.auth/login?provider=nope&rd=%2Fpublic",
            t.base
        ))
        .await;
    assert_eq!(r.status, 404);
}

/// Two users called alice, one per provider: the assertion tells them apart with `idp` (the
/// provider's name) and `idp_iss` (its issuer), and `/.auth/jwks` verifies it.
#[tokio::test]
async fn assertion_names_the_provider() {
    let t = two("").await;
    for (path, idp, issuer) in [
        ("/social/x", "social", &t.social.issuer),
        ("/corp/x", "corp", &t.corp.issuer),
    ] {
        let b = Browser::new();
        let r = b.login(&t.base, path, "alice").await;
        let assertion = upstream_header(&r, "x-portcullis-assertion").expect("assertion");
        let claims = verify_assertion(&t, &assertion, path).await;
        assert_eq!(claims["sub"], "alice");
        assert_eq!(claims["idp"], idp, "{claims}");
        assert_eq!(claims["idp_iss"], issuer.as_str(), "{claims}");
    }
}

/// Verifies an assertion against `/.auth/jwks` (ES256) and returns its claims.
async fn verify_assertion(t: &Two, token: &str, path: &str) -> Value {
    let jwks = Browser::new()
        .get(&format!("{}/.auth/jwks", t.base))
        .await
        .json();
    let set: jsonwebtoken::jwk::JwkSet = serde_json::from_value(jwks).unwrap();
    let key = jsonwebtoken::DecodingKey::from_jwk(&set.keys[0]).unwrap();
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    let route = path.trim_start_matches('/').split('/').next().unwrap();
    v.set_audience(&[route]);
    jsonwebtoken::decode::<Value>(token, &key, &v)
        .unwrap_or_else(|e| panic!("assertion does not verify: {e}"))
        .claims
}

/// alice's session at each provider, and the `sid` each provider gave it.
async fn alice_at_both(t: &Two) -> (Browser, String, Browser, String) {
    let s = Browser::new();
    let r = s.login(&t.base, "/social/x", "alice").await;
    let social_sid = upstream_header(&r, "x-sid").expect("social sid");
    let c = Browser::new();
    let r = c.login(&t.base, "/corp/x", "alice").await;
    let corp_sid = upstream_header(&r, "x-sid").expect("corp sid");
    assert_ne!(social_sid, corp_sid);
    (s, social_sid, c, corp_sid)
}

async fn send_backchannel(provider: &Provider, body: Value) {
    let r = Browser::new()
        .request(
            Method::POST,
            &format!("{}/__test/backchannel-logout", provider.issuer),
            Some(("application/json", body.to_string())),
            &[],
        )
        .await;
    assert_eq!(
        r.status, 200,
        "back-channel logout not delivered: {}",
        r.body
    );
}

async fn status(b: &Browser, url: &str) -> u16 {
    api(b).get(url).await.status.as_u16()
}

/// Attack: a logout token signed by corp naming the `sid` of alice's *social* session (sids are
/// just strings; a provider — or anyone holding its key — can name any) ended the social session:
/// the revocation key was `sid:<sid>` (cookie store) and the Redis index `…:sid:<sid>`, for every
/// provider. Now a back-channel logout acts only on sessions of the provider whose key signed it
/// (by `sid`, and by `sub` alone).
async fn backchannel_logout_stays_with_its_provider(session: &str) {
    let t = two(session).await;
    let (s, social_sid, c, corp_sid) = alice_at_both(&t).await;
    assert_eq!(status(&s, &format!("{}/social/x", t.base)).await, 200);
    let social_url = format!("{}/social/x", t.base);
    let corp_url = format!("{}/corp/x", t.base);
    // corp names social's sid, then alice at corp without a sid (every corp session of alice)
    send_backchannel(
        &t.corp,
        json!({"client_id": "web", "sub": "alice", "sid": social_sid}),
    )
    .await;
    assert_eq!(
        status(&s, &social_url).await,
        200,
        "corp's logout token ended social's session"
    );
    assert_eq!(status(&c, &corp_url).await, 200, "not corp's sid");
    // social's own logout for that sid ends it
    send_backchannel(
        &t.social,
        json!({"client_id": "web", "sub": "alice", "sid": social_sid}),
    )
    .await;
    assert_eq!(status(&s, &social_url).await, 401);
    assert_eq!(status(&c, &corp_url).await, 200);
    // and corp's for its own sid ends corp's
    send_backchannel(
        &t.corp,
        json!({"client_id": "web", "sub": "alice", "sid": corp_sid}),
    )
    .await;
    assert_eq!(status(&c, &corp_url).await, 401);
    // a sid-less token (all of alice's sessions) from corp leaves social's alice alone too
    let s2 = Browser::new();
    s2.login(&t.base, "/social/x", "alice").await;
    let c2 = Browser::new();
    c2.login(&t.base, "/corp/x", "alice").await;
    send_backchannel(&t.corp, json!({"client_id": "web", "sub": "alice"})).await;
    assert_eq!(status(&c2, &corp_url).await, 401, "corp's alice, by sub");
    assert_eq!(
        status(&s2, &social_url).await,
        200,
        "social's alice, by sub"
    );
}

#[tokio::test]
async fn backchannel_logout_stays_with_its_provider_cookie_store() {
    backchannel_logout_stays_with_its_provider("").await;
}

#[tokio::test]
async fn backchannel_logout_stays_with_its_provider_redis_store() {
    let redis = Redis::start();
    backchannel_logout_stays_with_its_provider(&format!(
        "store = \"redis\"\nredis_url = \"{}\"",
        redis.url()
    ))
    .await;
}

/// The headers a same-origin form submission carries.
fn same_origin(t: &Two) -> [(&'static str, String); 2] {
    [
        ("origin", t.base.clone()),
        ("sec-fetch-site", "same-origin".into()),
    ]
}

async fn post_logout(b: &Browser, t: &Two, headers: &[(&str, String)]) -> Page {
    let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    b.request(
        Method::POST,
        &format!("{}/.auth/logout?rd=%2Fpublic", t.base),
        Some(("application/x-www-form-urlencoded", String::new())),
        &h,
    )
    .await
}

/// Attack (cookie store): a copy of the session cookie kept from before `/.auth/logout` still
/// opened the session until its lifetime or idle timeout ran out. Now logout revokes the session
/// itself (by id, in this process): the cookie logged out with, an earlier version of it (before
/// the idle timeout slid) and any copy are all refused.
#[tokio::test]
async fn logout_ends_every_copy_of_the_cookie_cookie_store() {
    let t = two("idle_timeout = \"8s\"").await;
    let b = Browser::new();
    b.login(&t.base, "/social/x", "alice").await;
    let before = b.cookies(&t.authority());
    // the idle timeout slides (after 2 s with idle_timeout = 8 s): a new cookie, same session
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let r = api(&b).get(&format!("{}/social/x", t.base)).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.set_cookies().len(), 1, "the slide re-issues the cookie");
    let after = b.cookies(&t.authority());
    assert_ne!(before, after);
    let old_copy = with_cookies(&t.authority(), &before);
    let copy = with_cookies(&t.authority(), &after);
    let me = format!("{}/.auth/me", t.base);
    assert_eq!(status(&old_copy, &me).await, 200);
    assert_eq!(status(&copy, &me).await, 200);

    let r = post_logout(&b, &t, &same_origin(&t)).await;
    assert_eq!(r.status, StatusCode::FOUND, "{}", r.body);
    assert!(
        r.set_cookies()
            .iter()
            .any(|c| c.starts_with("portcullis=;") && c.contains("Max-Age=0"))
    );
    assert_eq!(status(&copy, &me).await, 401, "a copy of the cookie");
    assert_eq!(
        status(&old_copy, &me).await,
        401,
        "an earlier version of the cookie"
    );
    assert_eq!(
        status(&copy, &format!("{}/social/x", t.base)).await,
        401,
        "on a route too"
    );
    // alice signs in again: a new session works
    let n = Browser::new();
    n.login(&t.base, "/social/x", "alice").await;
    assert_eq!(status(&n, &me).await, 200);
}

/// Redis store: a logout from another site ends nothing; a logout from this origin deletes the
/// session for every replica, so a copy of the cookie opens nothing.
#[tokio::test]
async fn logout_ends_every_copy_of_the_cookie_redis_store() {
    let redis = Redis::start();
    let t = two(&format!(
        "store = \"redis\"\nredis_url = \"{}\"",
        redis.url()
    ))
    .await;
    let b = Browser::new();
    b.login(&t.base, "/social/x", "alice").await;
    let copy = with_cookies(&t.authority(), &b.cookies(&t.authority()));
    let me = format!("{}/.auth/me", t.base);
    assert_eq!(status(&copy, &me).await, 200);
    let r = b
        .request(
            Method::GET,
            &format!("{}/.auth/logout", t.base),
            None,
            &[("sec-fetch-site", "cross-site")],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        status(&copy, &me).await,
        200,
        "a cross-site GET ends nothing"
    );
    let r = post_logout(&b, &t, &same_origin(&t)).await;
    assert_eq!(r.status, StatusCode::FOUND, "{}", r.body);
    assert_eq!(status(&copy, &me).await, 401);
    assert_eq!(status(&b, &me).await, 401);
}

/// Attack: `GET /.auth/logout` from another site (a link, an image, a top-level navigation that
/// carries the `SameSite=Lax` cookie) signed the user out. Now a GET from another site
/// (`Sec-Fetch-Site: cross-site` or `same-site` — a sibling subdomain's link —, or a foreign
/// `Origin`) gets a page with a POST button and ends nothing; a POST ends the session only from
/// this origin.
#[tokio::test]
async fn logout_from_another_site_asks_first() {
    let t = two("").await;
    let b = Browser::new();
    b.login(&t.base, "/social/x", "alice").await;
    let me = format!("{}/.auth/me", t.base);
    let logout = format!("{}/.auth/logout?rd=%2Fpublic", t.base);
    for h in [
        vec![("sec-fetch-site", "cross-site")],
        // a link on a sibling subdomain (review of issue 9: a GET with same-site ended it)
        vec![("sec-fetch-site", "same-site")],
        vec![("sec-fetch-site", "same-site"), ("origin", t.base.as_str())],
        vec![("origin", "http://evil.example")],
        vec![("origin", "null")],
        vec![
            ("sec-fetch-site", "cross-site"),
            ("origin", t.base.as_str()),
        ],
    ] {
        let r = b.request(Method::GET, &logout, None, &h).await;
        assert_eq!(r.status, 200, "{h:?}: {}", r.body);
        assert!(
            r.headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
        assert!(
            r.body
                .contains("<form method=\"post\" action=\"/.auth/logout?rd=%2Fpublic\""),
            "{}",
            r.body
        );
        assert!(r.set_cookies().is_empty(), "{h:?}: nothing is cleared");
        assert!(
            r.headers["content-security-policy"]
                .to_str()
                .unwrap()
                .contains("frame-ancestors 'none'")
        );
        assert_eq!(status(&b, &me).await, 200, "{h:?}: still signed in");
    }
    // a POST from another origin (or a sibling site) does not end it either
    for h in [
        vec![
            ("origin", "http://evil.example".to_string()),
            ("sec-fetch-site", "cross-site".to_string()),
        ],
        vec![("origin", "http://evil.example".to_string())],
        vec![("sec-fetch-site", "same-site".to_string())],
        vec![("origin", format!("https://127.0.0.1:{}", t.port + 1))],
    ] {
        let r = post_logout(&b, &t, &h).await;
        assert_eq!(r.status, 403, "{h:?}: {}", r.body);
        assert!(r.body.contains("<form method=\"post\""));
        assert!(r.set_cookies().is_empty());
        assert_eq!(status(&b, &me).await, 200, "{h:?}: still signed in");
    }
    // the button: a POST from this origin ends the session
    let copy = with_cookies(&t.authority(), &b.cookies(&t.authority()));
    let r = post_logout(&b, &t, &same_origin(&t)).await;
    assert_eq!(r.status, StatusCode::FOUND, "{}", r.body);
    assert!(
        r.location()
            .starts_with(&format!("{}/session/end", t.social.issuer)),
        "{}",
        r.location()
    );
    assert_eq!(status(&b, &me).await, 401);
    assert_eq!(status(&copy, &me).await, 401);
    // a GET from this site still works (the 403 page's logout link, a bookmark)
    let b = Browser::new();
    b.login(&t.base, "/social/x", "alice").await;
    let r = b
        .request(
            Method::GET,
            &logout,
            None,
            &[("sec-fetch-site", "same-origin")],
        )
        .await;
    assert_eq!(r.status, StatusCode::FOUND, "{}", r.body);
    assert_eq!(status(&b, &me).await, 401);
}

/// Attack: a self-service provider lets anyone claim any email address (`email_verified:
/// false`); the proxy vouched for it in `X-Forwarded-Email`, so an app keying accounts by email
/// handed carol the account of whoever owned that address. Now the email is sent (header,
/// assertion, `/.auth/me`) only when `email_verified` is not `false`.
#[tokio::test]
async fn an_unverified_email_is_not_vouched_for_login() {
    let t = two("").await;
    // the test provider: any user but alice and bob has email_verified = false
    let b = Browser::new();
    let r = b.login(&t.base, "/social/x", "carol").await;
    assert_eq!(
        upstream_header(&r, "x-forwarded-user").as_deref(),
        Some("carol")
    );
    assert_eq!(upstream_header(&r, "x-forwarded-email"), None, "{}", r.body);
    let claims = verify_assertion(
        &t,
        &upstream_header(&r, "x-portcullis-assertion").unwrap(),
        "/social",
    )
    .await;
    assert!(claims["email"].is_null(), "{claims}");
    assert!(api(&b).get(&format!("{}/.auth/me", t.base)).await.json()["email"].is_null());
    // alice's address is verified
    let b = Browser::new();
    let r = b.login(&t.base, "/social/x", "alice").await;
    assert_eq!(
        upstream_header(&r, "x-forwarded-email").as_deref(),
        Some("alice@example.com")
    );
}

/// The same for bearer tokens: `email_verified: false` (or `"false"`) → no `X-Forwarded-Email`.
#[tokio::test]
async fn an_unverified_email_is_not_vouched_for_bearer() {
    let ti = oidc::TestIssuer::start().await;
    let port = free_port();
    let up = echo_upstream_map().await;
    let _p = start_proxy_ready(&format!(
        r#"[server]
listen = "127.0.0.1:{port}"

[providers.tokens]
issuer = "{iss}"
audiences = ["portcullis-api"]

[[route]]
name = "api"
path = "/api"
upstream = "http://{up}"
auth = "bearer"
"#,
        iss = ti.issuer
    ))
    .await;
    for (verified, sent) in [
        (json!(false), false),
        (json!("false"), false),
        (json!(true), true),
        (Value::Null, true),
    ] {
        let mut c = ti.claims();
        c["sub"] = json!("carol");
        c["email"] = json!("ceo@example.com");
        if !verified.is_null() {
            c["email_verified"] = verified.clone();
        }
        let token = ti.sign_rs256(Some("test-rsa"), &c);
        let auth = format!("Bearer {token}");
        let r = Browser::new()
            .request(
                Method::GET,
                &format!("http://127.0.0.1:{port}/api/x"),
                None,
                &[("authorization", auth.as_str())],
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(
            upstream_header(&r, "x-forwarded-email").is_some(),
            sent,
            "email_verified = {verified}"
        );
    }
}

/// Attack: the Redis refresh lock was released with a plain `DEL`. A refresh slower than the
/// lock's TTL then deleted the lock another replica had taken meanwhile, and a third replica
/// could refresh with the same (rotated, single-use) refresh token — which makes ZITADEL and
/// oidc-provider revoke the whole grant. Now only the owner's token releases it.
#[tokio::test]
async fn redis_refresh_lock_is_released_only_by_its_owner() {
    use portcullis::config::{RedisServer, values::Secret};
    use portcullis::session::redis::RedisStore;
    let redis = Redis::start();
    let server = RedisServer::Url(Secret::new(redis.url()));
    let store = RedisStore::new(&server, None, "locktest").unwrap();
    let ttl = Duration::from_millis(300);
    let first = store.lock("lock", "h", ttl).await.unwrap().expect("free");
    assert!(
        store.lock("lock", "h", ttl).await.unwrap().is_none(),
        "held"
    );
    // the first owner is slow: its lock expires and another replica takes it
    tokio::time::sleep(Duration::from_millis(400)).await;
    let second = store
        .lock("lock", "h", Duration::from_secs(10))
        .await
        .unwrap()
        .expect("expired, free again");
    assert!(
        !store.unlock(&first).await,
        "the first owner's release must not touch the second owner's lock"
    );
    assert!(
        store.lock("lock", "h", ttl).await.unwrap().is_none(),
        "the second owner still holds the lock"
    );
    assert!(store.unlock(&second).await);
    assert!(store.lock("lock", "h", ttl).await.unwrap().is_some());
}

/// Attack (availability): the idle timeout slid at most once a minute, so with `idle_timeout`
/// under about two minutes an active session expired anyway (idle 5 s, a request every 2 s:
/// ended after about 8 s). Now it slides once more than min(60 s, idle_timeout / 4) has passed.
#[tokio::test]
async fn a_short_idle_timeout_slides_for_an_active_session() {
    let t = two("idle_timeout = \"5s\"").await;
    let b = Browser::new();
    b.login(&t.base, "/social/x", "alice").await;
    let a = api(&b);
    for i in 1..=6 {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let r = a.get(&format!("{}/social/x", t.base)).await;
        assert_eq!(r.status, 200, "request {i}, {} s in: {}", 2 * i, r.body);
    }
    // idle for longer than the timeout: over
    tokio::time::sleep(Duration::from_millis(5500)).await;
    assert_eq!(a.get(&format!("{}/social/x", t.base)).await.status, 401);
}

/// Upgrade path: sessions stored before the sid index was per provider sit in the shared
/// `…:sid:<sid>` set. A back-channel logout still finds them there, and ends only the member
/// that is that provider's session with that sid — not another provider's with an equal sid.
#[tokio::test]
async fn legacy_redis_sid_index_ends_only_that_providers_session() {
    use portcullis::session::{Backend, CookieAttrs, Ended, SessionData, Sessions};
    let redis = Redis::start();
    let toml = format!(
        r#"[server]
listen = "127.0.0.1:1"
[providers.corp]
issuer = "https://corp.example"
client_id = "c"
client_secret = "s"
[providers.social]
issuer = "https://social.example"
client_id = "c"
client_secret = "s"
[session]
secret = "9d2f6a0c4e8b1735a9c0e4f2b6d81c3e"
store = "redis"
redis_url = "{}"
[[route]]
path = "/corp"
upstream = "http://127.0.0.1:2"
auth = "login"
provider = "corp"
[[route]]
path = "/"
upstream = "http://127.0.0.1:2"
auth = "login"
provider = "social"
"#,
        redis.url()
    );
    let cfg =
        portcullis::config::load_str(std::path::Path::new("t.toml"), &toml, Default::default())
            .unwrap();
    let sessions = Sessions::new(cfg.session.as_ref().unwrap()).unwrap();
    let Backend::Redis(store) = &sessions.backend else {
        panic!("redis store")
    };
    let client = ::redis::Client::open(redis.url()).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let attrs = CookieAttrs::PLAIN;
    let session = |provider: &str, iss: &str| SessionData {
        id: provider.into(),
        iss: Some(iss.into()),
        ..support::alice_session(provider, Some("same-sid"))
    };
    let mut cookies = Vec::new();
    for (p, iss) in [
        ("corp", "https://corp.example"),
        ("social", "https://social.example"),
    ] {
        let d = session(p, iss);
        let set = sessions.save(&d, None, &[], attrs).await.unwrap();
        let cookie = set[0]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_string();
        let id = cookie.split_once('=').unwrap().1.to_string();
        // as an older version stored it: only in the shared sid index
        let new_index = store.index_key(p, Ended::Sid("same-sid"));
        let _: () = ::redis::cmd("DEL")
            .arg(&new_index)
            .query_async(&mut con)
            .await
            .unwrap();
        let _: () = ::redis::cmd("SADD")
            .arg(store.legacy_sid_key("same-sid"))
            .arg(store.key_of(&id))
            .query_async(&mut con)
            .await
            .unwrap();
        let mut h = http::HeaderMap::new();
        h.insert(http::header::COOKIE, cookie.parse().unwrap());
        cookies.push(h);
    }
    let n = sessions
        .end_indexed("corp", Ended::Sid("same-sid"))
        .await
        .unwrap();
    assert_eq!(n, 1);
    assert!(
        sessions.load(&cookies[0], attrs).await.unwrap().is_none(),
        "corp's session ended"
    );
    assert!(
        sessions.load(&cookies[1], attrs).await.unwrap().is_some(),
        "social's session with the same sid lives on"
    );
}

/// The session cookie (and its chunks) from a browser's jar, as a `Cookie` header value.
fn session_cookie(b: &Browser, authority: &str) -> String {
    let c: Vec<String> = b
        .cookies(authority)
        .iter()
        .filter(|(n, _)| n == "portcullis" || n.starts_with("portcullis."))
        .map(|(n, v)| format!("{n}={v}"))
        .collect();
    assert!(!c.is_empty(), "no session cookie after login");
    c.join("; ")
}

/// A request with exactly this `Cookie` header (`accept`: API or navigation).
async fn with_cookie(t: &Two, path: &str, cookie: &str, accept: &'static str) -> Page {
    let mut b = Browser::new();
    b.accept = accept;
    b.request(
        Method::GET,
        &format!("{}{path}", t.base),
        None,
        &[("cookie", cookie)],
    )
    .await
}

/// Attack: a sibling host (a plain-HTTP origin has no `__Host-` cookie; a `cookie_domain`
/// shares the cookie with the parent domain's other hosts) plants its own copy of the session
/// cookie with a longer `Path`, which the browser sends first: the first copy won, so the
/// planted session — the attacker's own, signed in at the same provider — was the victim's
/// (login CSRF), and a planted garbage copy signed the victim out. Now two copies of the
/// session cookie are no session at all, in either order: API requests get 401, navigations a
/// login; one cookie still works.
async fn a_session_cookie_sent_twice_is_no_session(session: &str) {
    let t = two(session).await;
    let victim = Browser::new();
    victim.login(&t.base, "/social/x", "alice").await;
    let mallory = Browser::new();
    mallory.login(&t.base, "/social/x", "bob").await;
    let (v, m) = (
        session_cookie(&victim, &t.authority()),
        session_cookie(&mallory, &t.authority()),
    );
    assert_ne!(v, m);

    let r = with_cookie(&t, "/social/x", &v, JSON).await;
    assert_eq!(r.status, 200, "the victim's cookie alone: {}", r.body);
    assert_eq!(
        upstream_header(&r, "x-forwarded-user").as_deref(),
        Some("alice")
    );
    let r = with_cookie(&t, "/social/x", &m, JSON).await;
    assert_eq!(
        upstream_header(&r, "x-forwarded-user").as_deref(),
        Some("bob")
    );

    let cases = [
        ("planted session first", format!("{m}; {v}")),
        ("planted session last", format!("{v}; {m}")),
        ("garbage first", format!("portcullis=garbage; {v}")),
        ("garbage last", format!("{v}; portcullis=garbage")),
        ("the same cookie twice", format!("{v}; other=1; {v}")),
    ];
    for (case, cookie) in &cases {
        let r = with_cookie(&t, "/social/x", cookie, JSON).await;
        assert_eq!(r.status, 401, "{case}, API: {}", r.body);
        assert_eq!(r.json()["error"], "unauthenticated", "{case}: {}", r.body);
        let r = with_cookie(&t, "/.auth/me", cookie, JSON).await;
        assert_eq!(r.status, 401, "{case}, /.auth/me: {}", r.body);
        let r = with_cookie(&t, "/social/x", cookie, HTML).await;
        assert_eq!(
            r.status,
            StatusCode::FOUND,
            "{case}, navigation: {}",
            r.body
        );
        assert!(
            r.location()
                .starts_with(&format!("{}/auth", t.social.issuer)),
            "{case}: a navigation signs in: {}",
            r.location()
        );
        // forward-auth judges the same way
        let r = check(&t, cookie, "/social/x", JSON).await;
        assert_eq!(r.status, 401, "{case}, check: {}", r.body);
        assert!(r.headers.get("x-forwarded-user").is_none(), "{case}");
    }
}

#[tokio::test]
async fn a_session_cookie_sent_twice_is_no_session_cookie_store() {
    a_session_cookie_sent_twice_is_no_session("").await;
}

#[tokio::test]
async fn a_session_cookie_sent_twice_is_no_session_redis_store() {
    let redis = Redis::start();
    a_session_cookie_sent_twice_is_no_session(&format!(
        "store = \"redis\"\nredis_url = \"{}\"",
        redis.url()
    ))
    .await;
}
