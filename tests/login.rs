//! Browser login against the real test provider (oidc-provider), a real Redis and in-process
//! portcullis instances. Each attack test asserts the refusal.

mod support;
use support::oidc;
use support::*;

use std::time::Duration;

use http::{Method, StatusCode};
use serde_json::Value;

struct Env {
    provider: Provider,
    _proxy: TestProxy,
    base: String,
    port: u16,
}

async fn env_with(
    session: &str,
    provider_env: &[(&str, &str)],
    client: &'static str,
    client_auth: &str,
) -> Env {
    let port = free_port();
    let provider = Provider::start(&[port], provider_env);
    let upstream = echo_upstream_map().await;
    let client_auth = client_auth.replace("STATE_DIR", provider.state_dir.path().to_str().unwrap());
    let toml = proxy_config(&ProxyOpts {
        port,
        issuer: provider.issuer.clone(),
        upstream,
        client_id: client,
        client_auth,
        session: session.to_string(),
        admin: true,
    });
    let proxy = start_proxy_ready(&toml).await;
    Env {
        provider,
        _proxy: proxy,
        base: format!("http://127.0.0.1:{port}"),
        port,
    }
}

async fn env(session_extra: &str) -> Env {
    env_with(
        &session_cfg(session_extra),
        &[],
        "web",
        "client_secret = \"web-secret\"",
    )
    .await
}

fn authority(e: &Env) -> String {
    format!("127.0.0.1:{}", e.port)
}

fn upstream_header(r: &Page, name: &str) -> Option<String> {
    r.json()["headers"][name].as_str().map(str::to_string)
}

/// Login as alice: the upstream sees her identity; /.auth/me; /admin allowed; logout goes to the
/// provider's end_session_endpoint with id_token_hint and post_logout_redirect_uri.
#[tokio::test]
async fn login_identity_me_admin_and_logout() {
    let e = env("").await;
    let b = Browser::new();
    let r = b.login(&e.base, "/hello?x=1", "alice").await;
    assert_eq!(r.json()["path"], "/hello?x=1", "lands on rd");
    assert_eq!(
        upstream_header(&r, "x-forwarded-user").as_deref(),
        Some("alice")
    );
    assert_eq!(
        upstream_header(&r, "x-forwarded-email").as_deref(),
        Some("alice@example.com")
    );
    assert_eq!(
        upstream_header(&r, "x-forwarded-roles").as_deref(),
        Some("admin")
    );

    // forged identity headers never pass
    let r = b
        .request(
            Method::GET,
            &format!("{}/x", e.base),
            None,
            &[("x-forwarded-user", "mallory")],
        )
        .await;
    assert_eq!(
        upstream_header(&r, "x-forwarded-user").as_deref(),
        Some("alice")
    );
    // the proxy's own cookies stay with the proxy; the app's cookies pass
    b.set_cookie_raw(&authority(&e), "app", "1");
    let r = b.get(&format!("{}/x", e.base)).await;
    assert_eq!(upstream_header(&r, "cookie").as_deref(), Some("app=1"));
    let r = b.get(&format!("{}/public", e.base)).await;
    assert_eq!(upstream_header(&r, "cookie").as_deref(), Some("app=1"));
    assert_eq!(
        upstream_header(&r, "x-forwarded-user"),
        None,
        "no identity on auth = none"
    );

    let me = b.get(&format!("{}/.auth/me", e.base)).await;
    assert_eq!(me.status, 200);
    assert_eq!(me.headers["cache-control"], "no-store");
    let j = me.json();
    assert_eq!(j["sub"], "alice");
    assert_eq!(j["email"], "alice@example.com");
    assert_eq!(j["name"], "Alice Admin");
    assert_eq!(j["preferred_username"], "alice");
    assert_eq!(j["roles"], serde_json::json!(["admin"]));
    assert!(j["expires_at"].as_i64().unwrap() > 0);

    let r = b.get(&format!("{}/admin", e.base)).await;
    assert_eq!(r.status, 200);

    // login_or_bearer: the session serves; an Authorization header is judged by its token alone
    let r = b.get(&format!("{}/api/items", e.base)).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        upstream_header(&r, "x-forwarded-user").as_deref(),
        Some("alice")
    );
    let r = b
        .request(
            Method::GET,
            &format!("{}/api/items", e.base),
            None,
            &[("authorization", "Bearer not-a-token")],
        )
        .await;
    assert_eq!(r.status, 401);

    // session cookie attributes (plain HTTP: no __Host-, no Secure)
    let names: Vec<String> = b
        .cookies(&authority(&e))
        .into_iter()
        .map(|(n, _)| n)
        .filter(|n| n != "app")
        .collect();
    assert_eq!(
        names,
        vec!["portcullis".to_string()],
        "only the session cookie remains: {names:?}"
    );

    let r = b.get(&format!("{}/.auth/logout?rd=/bye", e.base)).await;
    assert_eq!(r.status, StatusCode::FOUND);
    let loc = url::Url::parse(&r.location()).unwrap();
    assert!(
        loc.as_str()
            .starts_with(&format!("{}/session/end", e.provider.issuer)),
        "{loc}"
    );
    let q: std::collections::HashMap<_, _> = loc.query_pairs().into_owned().collect();
    assert!(q.contains_key("id_token_hint"));
    assert_eq!(q["client_id"], "web");
    assert_eq!(q["post_logout_redirect_uri"], format!("{}/bye", e.base));
    assert!(
        r.set_cookies()
            .iter()
            .any(|c| c.starts_with("portcullis=;") && c.contains("Max-Age=0"))
    );
    assert!(b.cookies(&authority(&e)).iter().all(|(n, _)| n == "app"));
    // the provider accepts the logout request (renders its confirm form)
    let r = b.get(loc.as_str()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("logoutForm"), "{}", r.body);

    let me = b.get(&format!("{}/.auth/me", e.base)).await;
    assert_eq!(me.status, 401);
}

/// bob has no roles: /admin → 403 HTML page naming him, the requirement and a logout link;
/// JSON for non-browsers.
#[tokio::test]
async fn forbidden_page_for_browsers_json_otherwise() {
    let e = env("").await;
    let b = Browser::new();
    b.login(&e.base, "/", "bob").await;
    let r = b.get(&format!("{}/admin", e.base)).await;
    assert_eq!(r.status, 403);
    assert!(
        r.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(
        r.body.contains("bob") && r.body.contains("admin") && r.body.contains("/.auth/logout"),
        "{}",
        r.body
    );
    let mut api = b.clone();
    api.accept = "application/json";
    let r = api.get(&format!("{}/admin", e.base)).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["error"], "forbidden");
}

/// Browser navigations go to the provider (rd kept); XHR/API and non-GET get 401 JSON.
#[tokio::test]
async fn unauthenticated_requests() {
    let e = env("").await;
    let b = Browser::new();
    let r = b.get(&format!("{}/deep/page?q=1", e.base)).await;
    assert_eq!(r.status, StatusCode::FOUND);
    let loc = url::Url::parse(&r.location()).unwrap();
    assert!(
        loc.as_str()
            .starts_with(&format!("{}/auth?", e.provider.issuer)),
        "{loc}"
    );
    let q: std::collections::HashMap<_, _> = loc.query_pairs().into_owned().collect();
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["response_type"], "code");
    assert!(q["scope"].contains("offline_access") && q["scope"].contains("openid"));
    assert_eq!(q["redirect_uri"], format!("{}/.auth/callback", e.base));
    assert!(
        r.set_cookies()
            .iter()
            .any(|c| c.starts_with("portcullis_login_")
                && c.contains("HttpOnly")
                && c.contains("Max-Age=600"))
    );

    let mut api = Browser::new();
    api.accept = "application/json";
    let r = api.get(&format!("{}/deep/page", e.base)).await;
    assert_eq!(r.status, 401);
    assert!(
        r.headers["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );
    assert_eq!(r.json()["error"], "unauthenticated");
    let r = b
        .request(
            Method::POST,
            &format!("{}/deep/page", e.base),
            Some(("text/plain", "x".into())),
            &[],
        )
        .await;
    assert_eq!(r.status, 401);
    let r = api.get(&format!("{}/.auth/me", e.base)).await;
    assert_eq!(r.status, 401);
    // public route: no identity even with a session
    let r = b.get(&format!("{}/public", e.base)).await;
    assert_eq!(r.status, 200);
}

/// Two tabs log in at once: both pending logins complete.
#[tokio::test]
async fn two_tabs_log_in_at_once() {
    let e = env("").await;
    let b = Browser::new();
    let r1 = b.get(&format!("{}/one", e.base)).await;
    let r2 = b.get(&format!("{}/two", e.base)).await;
    let pending = b
        .cookies(&authority(&e))
        .into_iter()
        .filter(|(n, _)| n.starts_with("portcullis_login_"))
        .count();
    assert_eq!(pending, 2);
    let (f1, _) = b.navigate(&r1.location(), "alice").await;
    let (f2, _) = b.navigate(&r2.location(), "alice").await;
    assert_eq!(f1.json()["path"], "/one");
    assert_eq!(f2.json()["path"], "/two");
}

/// Runs a login up to the provider's redirect back to the callback; returns the callback URL.
async fn callback_url(b: &Browser, base: &str, path: &str, user: &str) -> String {
    let r = b.get(&format!("{base}{path}")).await;
    let (_, visited) = b.navigate_until_callback(&r.location(), user).await;
    visited
}

trait UntilCallback {
    async fn navigate_until_callback(&self, url: &str, user: &str) -> (Page, String);
}

impl UntilCallback for Browser {
    async fn navigate_until_callback(&self, url: &str, user: &str) -> (Page, String) {
        let mut current = url.to_string();
        let mut resp = self.get(&current).await;
        for _ in 0..10 {
            let next = url::Url::parse(&current)
                .unwrap()
                .join(&resp.location())
                .unwrap();
            current = next.to_string();
            if next.path().ends_with("/.auth/callback") {
                return (resp, current);
            }
            if next.path().starts_with("/interaction/") {
                let _ = self.get(&current).await;
                resp = self
                    .request(
                        Method::POST,
                        &current,
                        Some((
                            "application/x-www-form-urlencoded",
                            format!("prompt=login&login={user}&password=x"),
                        )),
                        &[],
                    )
                    .await;
            } else {
                resp = self.get(&current).await;
            }
        }
        panic!("never reached the callback");
    }
}

fn assert_login_refused(r: &Page) {
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(
        r.body.contains("Login could not be completed")
            || r.body.contains("Sign-in was not completed"),
        "{}",
        r.body
    );
    assert!(
        !r.set_cookies()
            .iter()
            .any(|c| c.starts_with("portcullis=") && !c.contains("Max-Age=0")),
        "no session cookie"
    );
}

/// State mismatch, replayed callback, replayed code, a callback this browser did not start
/// (login CSRF), a provider error, a wrong `iss`: all refused with the page, never a session.
#[tokio::test]
async fn callback_attacks_are_refused() {
    let e = env("").await;
    // login CSRF: the attacker's own callback URL delivered to the victim's browser
    let attacker = Browser::new();
    let cb = callback_url(&attacker, &e.base, "/", "mallory").await;
    let victim = Browser::new();
    assert_login_refused(&victim.get(&cb).await);
    let me = victim.get(&format!("{}/.auth/me", e.base)).await;
    assert_eq!(me.status, 401);

    // state mismatch: the browser has a pending login, the callback names another state
    let b = Browser::new();
    let cb = callback_url(&b, &e.base, "/", "alice").await;
    let mut u = url::Url::parse(&cb).unwrap();
    let pairs: Vec<(String, String)> = u
        .query_pairs()
        .into_owned()
        .map(|(k, v)| {
            if k == "state" {
                (k, "forged".into())
            } else {
                (k, v)
            }
        })
        .collect();
    u.query_pairs_mut().clear().extend_pairs(pairs);
    assert_login_refused(&b.get(u.as_str()).await);

    // the genuine callback works once …
    let ok = b.get(&cb).await;
    assert_eq!(ok.status, StatusCode::FOUND, "{}", ok.body);
    // … and its replay is refused, even with the pending-login cookie put back
    let b2 = Browser::new();
    let cb2 = callback_url(&b2, &e.base, "/", "alice").await;
    let saved = b2.cookies(&authority(&e));
    assert_eq!(b2.get(&cb2).await.status, StatusCode::FOUND);
    for (n, v) in &saved {
        b2.set_cookie_raw(&authority(&e), n, v);
    }
    assert_login_refused(&b2.get(&cb2).await);

    // the pending-login cookie sent twice (a copy planted beside the real one): neither counts
    let b4 = Browser::new();
    let cb4 = callback_url(&b4, &e.base, "/", "alice").await;
    let pending: Vec<(String, String)> = b4
        .cookies(&authority(&e))
        .into_iter()
        .filter(|(n, _)| n.contains("_login_"))
        .collect();
    assert_eq!(pending.len(), 1, "one pending-login cookie: {pending:?}");
    let planted = format!("{}=planted", pending[0].0);
    assert_login_refused(
        &b4.request(Method::GET, &cb4, None, &[("cookie", planted.as_str())])
            .await,
    );

    // code replay in a fresh login of the same browser: the state is new, the code is spent
    let b3 = Browser::new();
    let cb3 = callback_url(&b3, &e.base, "/", "alice").await;
    let code = url::Url::parse(&cb3)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .into_owned();
    assert_eq!(b3.get(&cb3).await.status, StatusCode::FOUND);
    b3.clear_cookies(&authority(&e));
    let cb4 = callback_url(&b3, &e.base, "/", "alice").await;
    let mut u = url::Url::parse(&cb4).unwrap();
    let pairs: Vec<(String, String)> = u
        .query_pairs()
        .into_owned()
        .map(|(k, v)| {
            if k == "code" {
                (k, code.clone())
            } else {
                (k, v)
            }
        })
        .collect();
    u.query_pairs_mut().clear().extend_pairs(pairs);
    assert_login_refused(&b3.get(u.as_str()).await);

    // wrong iss (RFC 9207) and a provider error
    let b5 = Browser::new();
    let cb5 = callback_url(&b5, &e.base, "/", "alice").await;
    let mut u = url::Url::parse(&cb5).unwrap();
    let pairs: Vec<(String, String)> = u
        .query_pairs()
        .into_owned()
        .map(|(k, v)| {
            if k == "iss" {
                (k, "http://evil.example".into())
            } else {
                (k, v)
            }
        })
        .collect();
    u.query_pairs_mut().clear().extend_pairs(pairs);
    assert_login_refused(&b5.get(u.as_str()).await);
    let b6 = Browser::new();
    let cb6 = callback_url(&b6, &e.base, "/", "alice").await;
    let mut u = url::Url::parse(&cb6).unwrap();
    let state = u
        .query_pairs()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1
        .into_owned();
    u.query_pairs_mut()
        .clear()
        .append_pair("error", "access_denied")
        .append_pair("state", &state)
        .append_pair("iss", &e.provider.issuer);
    let r = b6.get(u.as_str()).await;
    assert_login_refused(&r);
    assert!(r.body.contains("access_denied"));
}

/// A session cookie set before login is never adopted; starting a login clears it.
#[tokio::test]
async fn session_fixation() {
    let e = env("").await;
    let attacker = Browser::new();
    attacker.login(&e.base, "/", "mallory").await;
    let planted = attacker.cookies(&authority(&e));
    let victim = Browser::new();
    for (n, v) in &planted {
        victim.set_cookie_raw(&authority(&e), n, v);
    }
    let r = victim.get(&format!("{}/.auth/login?rd=/", e.base)).await;
    assert!(
        r.set_cookies()
            .iter()
            .any(|c| c.starts_with("portcullis=;") && c.contains("Max-Age=0")),
        "login clears the old session"
    );
    let r = victim.login(&e.base, "/", "alice").await;
    assert_eq!(
        upstream_header(&r, "x-forwarded-user").as_deref(),
        Some("alice")
    );
    let now: Vec<_> = victim.cookies(&authority(&e));
    assert_ne!(now, planted);
}

/// Tampered and truncated cookies, a cookie sealed under another secret: no session.
/// previous_secrets keeps old cookies valid after a rotation.
#[tokio::test]
async fn cookie_integrity_and_secret_rotation() {
    let (p1, p2, p3) = (free_port(), free_port(), free_port());
    let provider = Provider::start(&[p1, p2, p3], &[]);
    let up = echo_upstream_map().await;
    let mk = |port, session: String| {
        proxy_config(&ProxyOpts {
            port,
            issuer: provider.issuer.clone(),
            upstream: up,
            client_id: "web",
            client_auth: "client_secret = \"web-secret\"".into(),
            session,
            admin: false,
        })
    };
    let old = "old-secret-old-secret-old-secret-0001";
    let new = "new-secret-new-secret-new-secret-0002";
    let a = start_proxy_ready(&mk(p1, format!("secret = \"{old}\""))).await;
    let rotated = start_proxy_ready(&mk(
        p2,
        format!("secret = \"{new}\"\nprevious_secrets = [\"{old}\"]"),
    ))
    .await;
    let other = start_proxy_ready(&mk(p3, format!("secret = \"{new}\""))).await;
    let b = Browser::new();
    b.login(&format!("http://127.0.0.1:{p1}"), "/", "alice")
        .await;
    let cookies = b.cookies(&format!("127.0.0.1:{p1}"));
    let me = |port: u16, cookies: Vec<(String, String)>| async move {
        let mut c = Browser::new();
        c.accept = "application/json";
        for (n, v) in &cookies {
            c.set_cookie_raw(&format!("127.0.0.1:{port}"), n, v);
        }
        c.get(&format!("http://127.0.0.1:{port}/.auth/me"))
            .await
            .status
    };
    assert_eq!(me(p1, cookies.clone()).await, 200);
    assert_eq!(
        me(p2, cookies.clone()).await,
        200,
        "previous_secrets opens old cookies"
    );
    assert_eq!(
        me(p3, cookies.clone()).await,
        401,
        "another secret does not"
    );
    let (n, v) = cookies[0].clone();
    let mut t = v.clone().into_bytes();
    let i = t.len() / 2;
    t[i] = if t[i] == b'A' { b'B' } else { b'A' };
    assert_eq!(
        me(p1, vec![(n.clone(), String::from_utf8(t).unwrap())]).await,
        401,
        "tampered"
    );
    assert_eq!(
        me(p1, vec![(n.clone(), v[..v.len() - 10].to_string())]).await,
        401,
        "truncated"
    );
    assert_eq!(me(p1, vec![(n.clone(), String::new())]).await, 401, "empty");
    assert_eq!(
        me(p1, vec![(format!("{n}.1"), v.clone())]).await,
        401,
        "chunk moved to another name"
    );
    drop((a, rotated, other));
}

/// `rd` variants that would leave the site land on `/` after login.
#[tokio::test]
async fn open_redirects_fall_back_to_root() {
    let e = env("").await;
    let b = Browser::new();
    b.login(&e.base, "/", "alice").await; // provider SSO makes the loop below fast
    let variants = [
        "//evil.com",
        "/\\evil.com",
        "https:evil.com",
        "/%2F%2Fevil.com",
        "javascript:alert(1)",
        "data:text/html,x",
        "http://evil.com/",
        "https://127.0.0.1.evil.com/",
        "/x%0d%0aSet-Cookie:a=b",
    ];
    for rd in variants {
        let enc: String = url::form_urlencoded::byte_serialize(rd.as_bytes()).collect();
        let (r, visited) = b
            .navigate(&format!("{}/.auth/login?rd={enc}", e.base), "alice")
            .await;
        let last = visited.last().unwrap();
        assert_eq!(last, &format!("{}/", e.base), "{rd:?} ended at {last}");
        assert_eq!(r.status, 200);
    }
    let (r, _) = b
        .navigate(&format!("{}/.auth/login?rd=%2Fok%3Fa%3D1", e.base), "alice")
        .await;
    assert_eq!(r.json()["path"], "/ok?a=1");
}

/// Absolute lifetime and idle timeout end the session.
#[tokio::test]
async fn expired_and_idle_sessions_end() {
    let e = env("lifetime = \"2s\"\nidle_timeout = \"1h\"").await;
    let b = Browser::new();
    b.login(&e.base, "/", "alice").await;
    assert_eq!(b.get(&format!("{}/.auth/me", e.base)).await.status, 200);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        b.get(&format!("{}/.auth/me", e.base)).await.status,
        401,
        "lifetime"
    );

    let e = env("lifetime = \"1h\"\nidle_timeout = \"2s\"").await;
    let b = Browser::new();
    b.login(&e.base, "/", "alice").await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        b.get(&format!("{}/.auth/me", e.base)).await.status,
        401,
        "idle"
    );
}

/// A near-expiry access token is refreshed once for many concurrent requests (the provider
/// rotates refresh tokens and revokes the grant on reuse, so a stampede would end the session).
#[tokio::test]
async fn refresh_is_single_flight() {
    let e = env_with(
        &session_cfg(""),
        &[("ACCESS_TOKEN_TTL", "4")],
        "web",
        "client_secret = \"web-secret\"",
    )
    .await;
    let b = Browser::new();
    b.login(&e.base, "/", "alice").await;
    let before = e.provider.count("POST /token");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let mut tasks = Vec::new();
    for i in 0..12 {
        let b = b.clone();
        let url = format!("{}/c{i}", e.base);
        tasks.push(tokio::spawn(async move { b.get(&url).await.status }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    let after = e.provider.count("POST /token");
    assert_eq!(
        after - before,
        1,
        "exactly one refresh for 12 concurrent requests; provider log:\n{}",
        std::fs::read_to_string(&e.provider.log).unwrap_or_default()
    );
    // the rotated token keeps working: another refresh later
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(b.get(&format!("{}/.auth/me", e.base)).await.status, 200);
    assert_eq!(e.provider.count("POST /token") - after, 1);
    assert_eq!(b.get(&format!("{}/x", e.base)).await.status, 200);
}

/// Back-channel logout (cookie store): a copy of the session cookie stops working.
#[tokio::test]
async fn backchannel_logout_cookie_store() {
    let e = env("").await;
    let b = Browser::new();
    b.login(&e.base, "/", "alice").await;
    let copy = Browser::new();
    for (n, v) in b.cookies(&authority(&e)) {
        copy.set_cookie_raw(&authority(&e), &n, &v);
    }
    assert_eq!(copy.get(&format!("{}/.auth/me", e.base)).await.status, 200);
    let ctl = Browser::new();
    let r = ctl
        .request(
            Method::POST,
            &format!("{}/__test/backchannel-logout", e.provider.issuer),
            Some((
                "application/json",
                r#"{"client_id":"web","sub":"alice"}"#.into(),
            )),
            &[],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(copy.get(&format!("{}/.auth/me", e.base)).await.status, 401);
    // a fresh login afterwards works
    let n = Browser::new();
    n.login(&e.base, "/", "alice").await;
    // garbage logout tokens are refused
    let r = ctl
        .request(
            Method::POST,
            &format!("{}/.auth/backchannel-logout", e.base),
            Some((
                "application/x-www-form-urlencoded",
                "logout_token=a.b.c".into(),
            )),
            &[],
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"], "invalid_request");
}

/// Confidential clients with client_secret_post and private_key_jwt, and a public client.
#[tokio::test]
async fn client_authentication_variants() {
    for (client, auth) in [
        (
            "web-post",
            "client_secret = \"web-post-secret\"\ntoken_endpoint_auth = \"client_secret_post\"",
        ),
        ("web-public", "token_endpoint_auth = \"none\""),
        (
            "web-jwt",
            "private_key_file = \"STATE_DIR/zitadel-web-key.json\"",
        ),
    ] {
        let e = env_with(&session_cfg(""), &[], client, auth).await;
        let b = Browser::new();
        let r = b.login(&e.base, "/", "alice").await;
        assert_eq!(
            upstream_header(&r, "x-forwarded-user").as_deref(),
            Some("alice"),
            "{client}"
        );
    }
}

// ------------------------------------------------------------------ Redis store

async fn redis_proxy(provider: &Provider, port: u16, redis: &str) -> TestProxy {
    let up = echo_upstream_map().await;
    start_proxy_ready(&proxy_config(&ProxyOpts {
        port,
        issuer: provider.issuer.clone(),
        upstream: up,
        client_id: "web",
        client_auth: "client_secret = \"web-secret\"".into(),
        session: session_cfg(&format!("store = \"redis\"\nredis_url = \"{redis}\"")),
        admin: true,
    }))
    .await
}

/// Two proxy processes sharing one Redis serve the same browser; logout ends the session for
/// both and a replayed cookie is refused; back-channel logout ends it too.
#[tokio::test]
async fn redis_store_replicas_logout_and_backchannel() {
    let redis = Redis::start();
    let (p1, p2) = (free_port(), free_port());
    let provider = Provider::start(&[p1, p2], &[]);
    let a = redis_proxy(&provider, p1, &redis.url()).await;
    let b_ = redis_proxy(&provider, p2, &redis.url()).await;
    let browser = Browser::new();
    browser
        .login(&format!("http://127.0.0.1:{p1}"), "/", "alice")
        .await;
    let cookies = browser.cookies(&format!("127.0.0.1:{p1}"));
    assert_eq!(cookies.len(), 1);
    assert_eq!(
        cookies[0].1.len(),
        43,
        "the cookie carries only a 256-bit id"
    );
    let other = Browser::new();
    other.set_cookie_raw(&format!("127.0.0.1:{p2}"), &cookies[0].0, &cookies[0].1);
    let r = other.get(&format!("http://127.0.0.1:{p2}/x")).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json()["headers"]["x-forwarded-user"],
        "alice",
        "replica 2 serves replica 1's session"
    );

    let r = browser
        .get(&format!("http://127.0.0.1:{p1}/.auth/logout"))
        .await;
    assert_eq!(r.status, 302);
    let mut api = other.clone();
    api.accept = "application/json";
    assert_eq!(
        api.get(&format!("http://127.0.0.1:{p2}/.auth/me"))
            .await
            .status,
        401,
        "replayed after logout"
    );

    // back-channel logout
    let c = Browser::new();
    c.login(&format!("http://127.0.0.1:{p1}"), "/", "alice")
        .await;
    let ck = c.cookies(&format!("127.0.0.1:{p1}"));
    let mut copy = Browser::new();
    copy.accept = "application/json";
    copy.set_cookie_raw(&format!("127.0.0.1:{p2}"), &ck[0].0, &ck[0].1);
    assert_eq!(
        copy.get(&format!("http://127.0.0.1:{p2}/.auth/me"))
            .await
            .status,
        200
    );
    let r = Browser::new()
        .request(
            Method::POST,
            &format!("{}/__test/backchannel-logout", provider.issuer),
            Some((
                "application/json",
                r#"{"client_id":"web","sub":"alice"}"#.into(),
            )),
            &[],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        copy.get(&format!("http://127.0.0.1:{p2}/.auth/me"))
            .await
            .status,
        401,
        "replayed after back-channel logout"
    );
    drop((a, b_));
}

/// Redis down: protected requests fail closed with 503, /readyz is not ready; back when Redis is.
#[tokio::test]
async fn redis_down_fails_closed() {
    let mut redis = Redis::start();
    let port = free_port();
    let provider = Provider::start(&[port], &[]);
    let p = redis_proxy(&provider, port, &redis.url()).await;
    let base = format!("http://127.0.0.1:{port}");
    let b = Browser::new();
    b.login(&base, "/", "alice").await;
    let admin = format!("http://{}/readyz", p.admin_addr.unwrap());
    let probe = Browser::new();
    for _ in 0..50 {
        if probe.get(&admin).await.status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(probe.get(&admin).await.status, 200);
    redis.stop();
    let r = b.get(&format!("{base}/x")).await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(!r.body.contains("alice"));
    let mut ready = StatusCode::OK;
    for _ in 0..50 {
        ready = probe.get(&admin).await.status;
        if ready == 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(ready, 503);
    let v: Value = serde_json::from_str(&probe.get(&admin).await.body).unwrap();
    assert!(
        v["components"]["session:redis"]
            .as_str()
            .is_some_and(|s| s != "ready"),
        "{v}"
    );
}

/// Two replicas sharing Redis: concurrent requests of one session on both refresh once (a
/// Redis lock; the other replica picks up the rotated tokens).
#[tokio::test]
async fn redis_refresh_single_flight_across_replicas() {
    let redis = Redis::start();
    let (p1, p2) = (free_port(), free_port());
    let provider = Provider::start(&[p1, p2], &[("ACCESS_TOKEN_TTL", "4")]);
    let _a = redis_proxy(&provider, p1, &redis.url()).await;
    let _b = redis_proxy(&provider, p2, &redis.url()).await;
    let browser = Browser::new();
    browser
        .login(&format!("http://127.0.0.1:{p1}"), "/", "alice")
        .await;
    let (n, v) = browser.cookies(&format!("127.0.0.1:{p1}"))[0].clone();
    browser.set_cookie_raw(&format!("127.0.0.1:{p2}"), &n, &v);
    let before = provider.count("POST /token");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let mut tasks = Vec::new();
    for i in 0..12 {
        let b = browser.clone();
        let port = if i % 2 == 0 { p1 } else { p2 };
        tasks.push(tokio::spawn(async move {
            b.get(&format!("http://127.0.0.1:{port}/r{i}")).await.status
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    assert_eq!(
        provider.count("POST /token") - before,
        1,
        "one refresh across both replicas"
    );
    assert_eq!(
        browser
            .get(&format!("http://127.0.0.1:{p2}/.auth/me"))
            .await
            .status,
        200
    );
}

/// A refused refresh (the provider forgot the grant) ends the session: re-login.
#[tokio::test]
async fn refresh_failure_ends_the_session() {
    let port = free_port();
    let op_port = free_port().to_string();
    let env = [("ACCESS_TOKEN_TTL", "4"), ("PORT", op_port.as_str())];
    let provider = Provider::start(&[port], &env);
    let up = echo_upstream_map().await;
    let _p = start_proxy_ready(&proxy_config(&ProxyOpts {
        port,
        issuer: provider.issuer.clone(),
        upstream: up,
        client_id: "web",
        client_auth: "client_secret = \"web-secret\"".into(),
        session: session_cfg(""),
        admin: false,
    }))
    .await;
    let base = format!("http://127.0.0.1:{port}");
    let mut b = Browser::new();
    b.login(&base, "/", "alice").await;
    drop(provider); // in-memory grants are gone with it
    let _provider = Provider::start(&[port], &env);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    b.accept = "application/json";
    let r = b.get(&format!("{base}/x")).await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(b.get(&format!("{base}/.auth/me")).await.status, 401);
}

/// POSTs JSON to one of the test provider's `/__test/` endpoints.
async fn provider_control(provider: &Provider, what: &str, body: &str) {
    let r = Browser::new()
        .request(
            Method::POST,
            &format!("{}/__test/{what}", provider.issuer),
            Some(("application/json", body.to_string())),
            &[],
        )
        .await;
    assert_eq!(r.status, 200, "{what}: {}", r.body);
}

/// A role removed at the provider is gone after the next refresh, not at the end of the
/// session: the refresh re-derives roles and claims from the new tokens like the login did
/// (with and without an ID token in the refresh response). Concurrent requests share that one
/// refresh and all see the new identity; the refresh does not extend the absolute lifetime.
#[tokio::test]
async fn refresh_rereads_roles_and_claims() {
    let e = env_with(
        &session_cfg("lifetime = \"1h\"\nidle_timeout = \"2h\""),
        &[("ACCESS_TOKEN_TTL", "4")],
        "web",
        "client_secret = \"web-secret\"",
    )
    .await;
    let b = Browser::new();
    b.login(&e.base, "/", "alice").await;
    assert_eq!(b.get(&format!("{}/admin", e.base)).await.status, 200);
    let me = b.get(&format!("{}/.auth/me", e.base)).await.json();
    assert_eq!(me["roles"], serde_json::json!(["admin"]));
    let expires_at = me["expires_at"].as_i64().unwrap();

    provider_control(
        &e.provider,
        "set-roles",
        r#"{"sub":"alice","roles":["reader"]}"#,
    )
    .await;
    let before = e.provider.count("POST /token");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let b = b.clone();
        let url = format!("{}/admin", e.base);
        tasks.push(tokio::spawn(async move {
            let r = b.get(&url).await;
            (r.status, r.body)
        }));
    }
    for t in tasks {
        let (status, body) = t.await.unwrap();
        assert_eq!(status, 403, "{body}");
        assert!(
            body.contains("alice"),
            "the 403 page names the user: {body}"
        );
    }
    assert_eq!(
        e.provider.count("POST /token") - before,
        1,
        "one refresh shared by the concurrent requests"
    );
    let me = b.get(&format!("{}/.auth/me", e.base)).await.json();
    assert_eq!(me["sub"], "alice");
    assert_eq!(me["roles"], serde_json::json!(["reader"]));
    assert_eq!(me["email"], "alice@example.com");
    assert_eq!(
        me["expires_at"].as_i64().unwrap(),
        expires_at,
        "a refresh never extends the absolute lifetime"
    );
    let r = b.get(&format!("{}/x", e.base)).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        upstream_header(&r, "x-forwarded-roles").as_deref(),
        Some("reader")
    );

    // A refresh without an ID token: the identity comes from userinfo alone. All roles removed
    // (the role claim is absent from userinfo): no role of an older ID token survives.
    provider_control(&e.provider, "set-roles", r#"{"sub":"alice","roles":[]}"#).await;
    provider_control(&e.provider, "token-without-id-token", r#"{"on":true}"#).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let mut api = b.clone();
    api.accept = "application/json";
    let r = api.get(&format!("{}/admin", e.base)).await;
    assert_eq!(r.status, 403, "{}", r.body);
    let me = b.get(&format!("{}/.auth/me", e.base)).await.json();
    assert_eq!(me["sub"], "alice");
    assert_eq!(me["roles"], serde_json::json!([]));
    assert_eq!(me["email"], "alice@example.com", "profile from userinfo");
    assert_eq!(me["name"], "Alice Admin");
    // the logout still has an ID token for id_token_hint (the last one the provider sent)
    let r = b.get(&format!("{}/.auth/logout", e.base)).await;
    assert!(r.location().contains("id_token_hint="), "{}", r.location());
}

/// After the provider issued new tokens, an identity that cannot be derived again ends the
/// session (fail closed, re-login): userinfo refusing the new access token, userinfo down, and
/// userinfo about another subject.
#[tokio::test]
async fn refresh_ends_the_session_when_the_identity_cannot_be_rederived() {
    let e = env_with(
        &session_cfg(""),
        &[("ACCESS_TOKEN_TTL", "4")],
        "web",
        "client_secret = \"web-secret\"",
    )
    .await;
    let faults = ["unauthorized", "down", "other-sub"];
    let mut browsers = Vec::new();
    for _ in faults {
        let mut b = Browser::new();
        b.login(&e.base, "/", "alice").await;
        b.accept = "application/json";
        browsers.push(b);
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    for (fault, b) in faults.iter().zip(&browsers) {
        provider_control(
            &e.provider,
            "userinfo-fault",
            &format!(r#"{{"fault":"{fault}"}}"#),
        )
        .await;
        let before = e.provider.count("POST /token ");
        let revoked = e.provider.count("POST /token/revocation");
        let r = b.get(&format!("{}/x", e.base)).await;
        assert_eq!(r.status, 401, "{fault}: {}", r.body);
        assert!(!r.body.contains("alice"), "{fault}: {}", r.body);
        // the dead session's cookie is cleared, so the browser stops sending it
        let cleared = r.set_cookies();
        assert!(
            cleared
                .iter()
                .any(|c| c.starts_with("portcullis=;") && c.contains("Max-Age=0")),
            "{fault}: {cleared:?}"
        );
        assert_eq!(
            e.provider.count("POST /token ") - before,
            1,
            "{fault}: the tokens were refreshed"
        );
        assert_eq!(
            e.provider.count("POST /token/revocation") - revoked,
            1,
            "{fault}: the refresh token in force is revoked"
        );
        assert_eq!(
            b.get(&format!("{}/.auth/me", e.base)).await.status,
            401,
            "{fault}"
        );
    }
    // userinfo back to normal: signing in again works
    provider_control(&e.provider, "userinfo-fault", r#"{"fault":"none"}"#).await;
    let b = Browser::new();
    b.login(&e.base, "/", "alice").await;
    assert_eq!(b.get(&format!("{}/admin", e.base)).await.status, 200);
}

/// Redis store, two replicas: a role removed at the provider is gone on both replicas after
/// the one shared refresh (the replica that waited for the other's refresh reads the new
/// identity from Redis).
#[tokio::test]
async fn redis_refresh_rereads_roles_across_replicas() {
    let redis = Redis::start();
    let (p1, p2) = (free_port(), free_port());
    let provider = Provider::start(&[p1, p2], &[("ACCESS_TOKEN_TTL", "4")]);
    let _a = redis_proxy(&provider, p1, &redis.url()).await;
    let _b = redis_proxy(&provider, p2, &redis.url()).await;
    let browser = Browser::new();
    browser
        .login(&format!("http://127.0.0.1:{p1}"), "/", "alice")
        .await;
    let (n, v) = browser.cookies(&format!("127.0.0.1:{p1}"))[0].clone();
    browser.set_cookie_raw(&format!("127.0.0.1:{p2}"), &n, &v);
    for port in [p1, p2] {
        let r = browser.get(&format!("http://127.0.0.1:{port}/admin")).await;
        assert_eq!(r.status, 200, "{port}");
    }
    provider_control(
        &provider,
        "set-roles",
        r#"{"sub":"alice","roles":["reader"]}"#,
    )
    .await;
    let before = provider.count("POST /token");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let mut tasks = Vec::new();
    for i in 0..6 {
        let b = browser.clone();
        let port = if i % 2 == 0 { p1 } else { p2 };
        tasks.push(tokio::spawn(async move {
            b.get(&format!("http://127.0.0.1:{port}/admin"))
                .await
                .status
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 403);
    }
    assert_eq!(
        provider.count("POST /token") - before,
        1,
        "one refresh across both replicas"
    );
    for port in [p1, p2] {
        let me = browser
            .get(&format!("http://127.0.0.1:{port}/.auth/me"))
            .await
            .json();
        assert_eq!(me["roles"], serde_json::json!(["reader"]), "{port}");
    }
}

/// The provider cannot be reached: starting a login answers 503 (a page), never a session.
#[tokio::test]
async fn provider_down_login_is_503() {
    let port = free_port();
    let dead = free_port();
    let up = echo_upstream_map().await;
    let _p = start_proxy_ready(&proxy_config(&ProxyOpts {
        port,
        issuer: format!("http://127.0.0.1:{dead}"),
        upstream: up,
        client_id: "web",
        client_auth: "client_secret = \"web-secret\"".into(),
        session: session_cfg(""),
        admin: false,
    }))
    .await;
    let b = Browser::new();
    let r = b.get(&format!("http://127.0.0.1:{port}/x")).await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(r.body.contains("Sign-in is unavailable"));
    let r = b
        .get(&format!("http://127.0.0.1:{port}/.auth/login?rd=/"))
        .await;
    assert_eq!(r.status, 503);
    let r = b.get(&format!("http://127.0.0.1:{port}/public")).await;
    assert_eq!(r.status, 200, "auth = none routes keep working");
}

/// Attack: a session cookie replayed after logout / back-channel logout (Redis store). A
/// request that loaded the session just before the logout deleted it writes the session back
/// (idle-timeout slide, refresh) just after — and the deleted session was alive again for
/// every later request with the same cookie. Writes to an existing session must never
/// recreate it.
#[tokio::test]
async fn redis_session_is_not_resurrected_by_a_write_after_logout() {
    use portcullis::session::CookieAttrs;
    let redis = Redis::start();
    let src = format!(
        "[server]\nlisten = \"127.0.0.1:1\"\n[providers.p]\nissuer = \"https://op.example\"\nclient_id = \"c\"\nclient_secret = \"s\"\n[session]\nsecret = \"9d2f6a0c4e8b1735a9c0e4f2b6d81c3e\"\nstore = \"redis\"\nredis_url = \"{}\"\n[[route]]\npath = \"/\"\nupstream = \"http://127.0.0.1:2\"\nauth = \"login\"\n",
        redis.url()
    );
    let sessions = store_of(&src);
    let attrs = CookieAttrs::PLAIN;
    let now = portcullis::session::now();
    let d = support::alice_session("p", Some("sid-1"));
    let set = sessions.save(&d, None, &[], attrs).await.unwrap();
    let cookie = set[0]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let id = cookie.split_once('=').unwrap().1.to_string();
    let mut h = http::HeaderMap::new();
    h.insert(http::header::COOKIE, cookie.parse().unwrap());
    let loaded = sessions.load(&h, attrs).await.unwrap().expect("session");
    // logout ends the session …
    sessions.delete(Some(&id), &[], attrs).await.unwrap();
    // … while a request that loaded it a moment earlier slides its idle timeout
    let mut slid = (*loaded.data).clone();
    slid.last_seen = now + 61;
    sessions
        .save(&slid, loaded.handle.as_deref(), &[], attrs)
        .await
        .unwrap();
    assert!(
        sessions.load(&h, attrs).await.unwrap().is_none(),
        "the logged-out session came back"
    );
}

/// Attack: a back-channel logout that hits a Redis blip. The jti was recorded as seen before
/// the sessions were ended, so the provider's retry of the same logout token was refused as a
/// replay (400) — the user's sessions stayed alive for good. A logout that could not be
/// carried out must stay retryable.
#[tokio::test]
async fn backchannel_logout_retry_after_a_store_error_ends_the_sessions() {
    use portcullis::session::CookieAttrs;
    let rport = free_port();
    let mut r1 = Redis::start_on(rport);
    let ti = oidc::TestIssuer::start().await;
    let port = free_port();
    let toml = proxy_config(&ProxyOpts {
        port,
        issuer: ti.issuer.clone(),
        upstream: echo_upstream_map().await,
        client_id: "web",
        client_auth: "client_secret = \"web-secret\"".into(),
        session: session_cfg(&format!(
            "store = \"redis\"\nredis_url = \"redis://127.0.0.1:{rport}/0\""
        )),
        admin: false,
    });
    let _proxy = start_proxy_ready(&toml).await;
    // alice's session, as a login would have stored it
    let sessions = store_of(&toml);
    let attrs = CookieAttrs::PLAIN;
    let now = portcullis::session::now();
    let d = support::alice_session("op", None);
    let set = sessions.save(&d, None, &[], attrs).await.unwrap();
    let cookie = set[0]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let mut h = http::HeaderMap::new();
    h.insert(http::header::COOKIE, cookie.parse().unwrap());
    assert!(sessions.load(&h, attrs).await.unwrap().is_some());

    let token = ti.sign_rs256(
        Some("test-rsa"),
        &serde_json::json!({
            "iss": ti.issuer, "aud": "web", "iat": now, "exp": now + 120, "jti": "logout-1",
            "sub": "alice",
            "events": {"http://schemas.openid.net/event/backchannel-logout": {}}
        }),
    );
    let post = || async {
        Browser::new()
            .request(
                Method::POST,
                &format!("http://127.0.0.1:{port}/.auth/backchannel-logout"),
                Some((
                    "application/x-www-form-urlencoded",
                    format!("logout_token={token}"),
                )),
                &[],
            )
            .await
    };
    // Redis down: the logout cannot be carried out → 503 (the provider retries)
    r1.stop();
    let r = post().await;
    assert_eq!(r.status, 503, "{}", r.body);
    // Redis back: the retry of the same token ends alice's session
    let mut r2 = Redis::start_on(rport);
    let sessions = store_of(&toml);
    // (a restarted Redis without persistence has lost the session too: store it again)
    sessions.save(&d, None, &[], attrs).await.unwrap();
    let mut status = 0;
    for _ in 0..30 {
        let r = post().await;
        status = r.status.as_u16();
        if status != 503 {
            assert_eq!(status, 200, "the retry was refused: {}", r.body);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, 200);
    assert!(
        sessions.load(&h, attrs).await.unwrap().is_none(),
        "alice's session survived the back-channel logout"
    );
    r2.stop();
}

/// Attack: a session cookie replayed after a logout that hit a Redis error. The logout only
/// cleared the browser's cookie, answered as if it had succeeded (302 to the provider) and
/// left the session in Redis, valid for any copy of the cookie. A logout that cannot delete
/// the session must say so (503) — the user retries — instead of pretending.
#[tokio::test]
async fn logout_with_redis_down_does_not_pretend_to_succeed() {
    let mut redis = Redis::start();
    let port = free_port();
    let provider = Provider::start(&[port], &[]);
    let _p = redis_proxy(&provider, port, &redis.url()).await;
    let base = format!("http://127.0.0.1:{port}");
    let b = Browser::new();
    b.login(&base, "/", "alice").await;
    redis.stop();
    let r = b.get(&format!("{base}/.auth/logout")).await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(
        !r.headers
            .get_all(http::header::SET_COOKIE)
            .iter()
            .any(|v| v.to_str().unwrap_or("").contains("Max-Age=0")),
        "the cookie must stay for the retry"
    );
}

/// A client that keeps sending the cookie it logged in with (a script, or a browser's requests
/// already in flight) after the session's idle timeout slid: the first request re-seals the
/// session and sends the new cookie; later requests with the previous cookie are served from
/// the slid session, not sealed again with a Set-Cookie each (which cost a third of the
/// throughput of a long-running client).
#[tokio::test]
async fn a_previous_cookie_does_not_reslide_the_session_on_every_request() {
    use portcullis::session::CookieAttrs;
    let port = free_port();
    let provider = Provider::start(&[port], &[]);
    let up = echo_upstream_map().await;
    let secret = "slide-secret-slide-secret-slide-0001";
    let toml = proxy_config(&ProxyOpts {
        port,
        issuer: provider.issuer.clone(),
        upstream: up,
        client_id: "web",
        client_auth: "client_secret = \"web-secret\"".into(),
        session: format!("secret = \"{secret}\""),
        admin: false,
    });
    let _proxy = start_proxy_ready(&toml).await;
    let sessions = store_of(&toml);
    let mut d = support::alice_session("op", None);
    d.id = "slide".into();
    d.roles = vec!["admin".into()];
    d.created_at -= 300;
    d.created_ms -= 300_000;
    d.access_issued_at -= 300;
    d.last_seen -= 120;
    let set = sessions
        .save(&d, None, &[], CookieAttrs::PLAIN)
        .await
        .unwrap();
    let previous = set[0]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let (name, value) = previous.split_once('=').unwrap();
    let authority = format!("127.0.0.1:{port}");
    let mut slid = Vec::new();
    for _ in 0..3 {
        let b = Browser::new();
        b.set_cookie_raw(&authority, name, value);
        let r = b.get(&format!("http://{authority}/admin/x")).await;
        assert_eq!(r.status, 200);
        assert!(r.body.contains("alice"), "{}", r.body);
        slid.push(r.headers.get_all(http::header::SET_COOKIE).iter().count());
    }
    assert_eq!(
        slid,
        [1, 0, 0],
        "Set-Cookie per request: the first slides the session, the others use the slid one"
    );
}

/// The session store of a proxy with config `toml` (same secret and backend).
fn store_of(toml: &str) -> portcullis::session::Sessions {
    let cfg =
        portcullis::config::load_str(std::path::Path::new("t.toml"), toml, Default::default())
            .unwrap();
    portcullis::session::Sessions::new(cfg.session.as_ref().unwrap()).unwrap()
}

/// The email rules judge the email and `email_verified` of one source: when userinfo names
/// another address than the ID token and says nothing about its verification, the ID token's
/// `email_verified` (about the other address) does not vouch for it — 403
/// `email_not_verified`, the upstream never sees the request. With userinfo agreeing, the
/// same login passes.
#[tokio::test]
async fn userinfo_email_is_not_verified_by_the_id_tokens_flag() {
    let port = free_port();
    let provider = Provider::start(&[port], &[]);
    let upstream = echo_upstream_map().await;
    let toml = proxy_config(&ProxyOpts {
        port,
        issuer: provider.issuer.clone(),
        upstream,
        client_id: "web",
        client_auth: "client_secret = \"web-secret\"".into(),
        session: session_cfg(""),
        admin: false,
    })
    .replacen(
        "[[route]]\nname = \"public\"",
        &format!(
            "[[route]]\nname = \"boss\"\npath = \"/boss\"\nupstream = \"http://{upstream}\"\n\
             auth = \"login\"\nrequire_emails = [\"boss@partner.org\"]\n\n\
             [[route]]\nname = \"staff\"\npath = \"/staff\"\nupstream = \"http://{upstream}\"\n\
             auth = \"login\"\nrequire_email_domains = [\"example.com\"]\n\n\
             [[route]]\nname = \"public\""
        ),
        1,
    );
    let _proxy = start_proxy_ready(&toml).await;
    let base = format!("http://127.0.0.1:{port}");
    provider_control(&provider, "userinfo-fault", r#"{"fault":"other-email"}"#).await;
    let mut b = Browser::new();
    b.login(&base, "/", "alice").await;
    b.accept = "application/json";
    let r = b.get(&format!("{base}/boss")).await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(
        r.body.contains("boss@partner.org is not verified"),
        "{}",
        r.body
    );
    let r = b.get(&format!("{base}/staff")).await;
    assert_eq!(r.status, 403, "{}", r.body);
    provider_control(&provider, "userinfo-fault", r#"{"fault":"none"}"#).await;
    let mut b = Browser::new();
    b.login(&base, "/", "alice").await;
    b.accept = "application/json";
    assert_eq!(b.get(&format!("{base}/staff")).await.status, 200);
    assert_eq!(b.get(&format!("{base}/boss")).await.status, 403);
}
