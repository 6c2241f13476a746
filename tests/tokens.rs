//! Token kinds, introspection load and ZITADEL project roles on bearer routes, over real
//! sockets: the real OpenID provider (npm `oidc-provider`, tests/provider) for real ID,
//! refresh, logout and access tokens; an issuer whose keys the test holds for the variants a
//! provider would not issue; a counting introspection endpoint written here. Every refusal
//! asserts the status, `WWW-Authenticate` and the error text naming the token's kind.

mod support;
use support::oidc;
use support::*;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http::{Method, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use jsonwebtoken::{Algorithm, Header};
use oidc::{OidcProvider, TestIssuer};
use serde_json::{Value, json};
use tokio::net::TcpListener;

async fn bearer(p: &TestProxy, path: &str, token: &str) -> Resp {
    let req = Request::get(path)
        .header("authorization", format!("Bearer {token}"))
        .body(empty_body())
        .unwrap();
    send(p.http(), req).await
}

fn www(r: &Resp) -> String {
    r.headers
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

/// Asserts 401 invalid_token whose description (header and JSON body) contains `text`.
#[track_caller]
fn assert_invalid(r: &Resp, text: &str, case: &str) {
    assert_eq!(r.status, 401, "{case}: {}", r.text());
    let w = www(r);
    assert!(
        w.starts_with("Bearer error=\"invalid_token\", error_description=\""),
        "{case}: {w}"
    );
    assert!(w.contains(text), "{case}: header {w:?} lacks {text:?}");
    let body: Value = serde_json::from_slice(&r.body).unwrap_or_default();
    assert!(
        body["message"].as_str().unwrap_or("").contains(text),
        "{case}: body {} lacks {text:?}",
        r.text()
    );
}

// ---------------------------------------------------------------------------------------------
// Real tokens from the real provider
// ---------------------------------------------------------------------------------------------

/// Where the provider sends the browser with the code; nothing listens there, the flow below
/// stops at the redirect.
const REDIRECT_URI: &str = "http://127.0.0.1:9/cb";

/// Authorization code flow (PKCE, nonce, offline_access) for client `web` as `user`, the
/// browser part through the provider's login form ([`support::Browser`]); returns the token
/// response: `access_token` (opaque), `id_token`, `refresh_token`.
async fn code_flow(op: &OidcProvider, user: &str) -> Value {
    use aws_lc_rs::digest::{SHA256, digest};
    let verifier = b64(&rand_bytes());
    let challenge = b64(digest(&SHA256, verifier.as_bytes()).as_ref());
    let auth = format!(
        "{}/auth?{}",
        op.issuer,
        form(&[
            ("client_id", "web"),
            ("response_type", "code"),
            ("redirect_uri", REDIRECT_URI),
            ("scope", "openid profile email offline_access"),
            ("state", "st"),
            ("nonce", "a-nonce"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ])
    );
    let browser = support::Browser::new();
    let mut url = auth;
    let mut resp = browser.get(&url).await;
    let mut code = None;
    for _ in 0..10 {
        assert!(
            resp.status.is_redirection(),
            "code flow stopped at {url}: {} {}",
            resp.status,
            resp.body
        );
        let next = url::Url::parse(&url)
            .unwrap()
            .join(&resp.location())
            .unwrap();
        if next.as_str().starts_with(REDIRECT_URI) {
            code = next
                .query_pairs()
                .find(|(k, _)| k == "code")
                .map(|(_, v)| v.into_owned());
            break;
        }
        url = next.to_string();
        resp = if next.path().starts_with("/interaction/") {
            let _ = browser.get(&url).await; // the login form
            let f = format!("prompt=login&login={user}&password=x");
            browser
                .request(
                    Method::POST,
                    &url,
                    Some(("application/x-www-form-urlencoded", f)),
                    &[],
                )
                .await
        } else {
            browser.get(&url).await
        };
    }
    let code = code.expect("the provider redirected with a code");
    let (st, _, body) = http_req(
        "POST",
        &format!("{}/token", op.issuer),
        &[
            ("content-type", "application/x-www-form-urlencoded"),
            ("authorization", &basic("web", "web-secret")),
        ],
        Some(form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT_URI),
            ("code_verifier", &verifier),
        ])),
    )
    .await;
    assert_eq!(st, 200, "token request: {body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    for k in ["access_token", "id_token", "refresh_token"] {
        assert!(v[k].is_string(), "token response lacks {k}: {body}");
    }
    v
}

fn rand_bytes() -> [u8; 32] {
    let mut b = [0u8; 32];
    aws_lc_rs::rand::fill(&mut b).unwrap();
    b
}

/// Receives OIDC back-channel logout POSTs and keeps their `logout_token`.
async fn logout_receiver() -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let got = Arc::new(Mutex::new(Vec::new()));
    let g = got.clone();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else {
                continue;
            };
            let g = g.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| {
                    let g = g.clone();
                    async move {
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        for (k, v) in url::form_urlencoded::parse(&body) {
                            if k == "logout_token" {
                                g.lock().unwrap().push(v.into_owned());
                            }
                        }
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    (addr, got)
}

/// Attack (issue 9, item 3): the real provider's ID token (default `audiences = [client_id]`
/// accepts its `aud`; logout puts it in a front-channel URL) and its refresh token
/// (introspection: active, the client's `client_id`, no `aud`, no `token_type`) presented as
/// bearer tokens → 401 naming the kind, every time (never cached as valid), and the refused
/// refresh token costs one introspection, not one per request. The real access tokens — the
/// login's opaque one, and a JWT and an opaque one of an API client — still pass. A real
/// back-channel logout token is refused too.
#[tokio::test]
async fn real_id_refresh_and_logout_tokens_are_not_access_tokens() {
    let (rx, logout_tokens) = logout_receiver().await;
    let backchannel = format!("http://{rx}/backchannel");
    let op = OidcProvider::start(&[
        ("CLIENT_REDIRECT_URIS", REDIRECT_URI),
        ("BACKCHANNEL_LOGOUT_URI", &backchannel),
    ]);
    let up = echo_upstream().await;
    let issuer = &op.issuer;
    let upstream = up.url("");
    let p = start_proxy(&format!(
        r#"
[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"

# the login client's provider, audiences left at their default: [client_id]
[providers.web]
issuer = "{issuer}"
client_id = "web"
client_secret = "web-secret"
[providers.web.introspection]
client_id = "introspector-basic"
client_secret = "introspector-secret"

[providers.api]
issuer = "{issuer}"
audiences = ["portcullis-api"]
[providers.api.introspection]
client_id = "introspector-basic"
client_secret = "introspector-secret"

[[route]]
name = "web"
path = "/web"
upstream = "{upstream}"
auth = "bearer"
provider = "web"

[[route]]
name = "api"
path = "/api"
upstream = "{upstream}"
auth = "bearer"
provider = "api"
"#
    ))
    .await;
    wait_ready(&p).await;

    let t = code_flow(&op, "alice").await;
    let (access, id, refresh) = (
        t["access_token"].as_str().unwrap(),
        t["id_token"].as_str().unwrap(),
        t["refresh_token"].as_str().unwrap(),
    );
    assert_eq!(oidc::payload(id)["aud"], "web", "{id}");

    // the login's own access token (opaque, introspected: token_type Bearer) passes
    let r = bearer(&p, "/web/x", access).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.echoed().header("x-forwarded-user"), Some("alice"));

    for round in 0..2 {
        assert_invalid(
            &bearer(&p, "/web/x", id).await,
            "the token is not an access token: an ID token",
            &format!("real ID token, round {round}"),
        );
    }
    // the provider logs a call once its answer is finished, maybe after the proxy saw it
    tokio::time::sleep(Duration::from_millis(300)).await;
    let calls = op.count("POST /token/introspection");
    for round in 0..5 {
        assert_invalid(
            &bearer(&p, "/web/x", refresh).await,
            "refresh token",
            &format!("real refresh token, round {round}"),
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        op.count_settled("POST /token/introspection", calls + 1)
            .await
            - calls,
        1,
        "a refused token is remembered: one introspection for five requests"
    );

    // an API client's access tokens, JWT (at+jwt) and opaque, pass where their aud counts
    let jwt = op.jwt("api-admin").await;
    assert_eq!(bearer(&p, "/api/x", &jwt).await.status, 200);
    let opaque = op
        .token("api-admin", Some("urn:portcullis:api:opaque"))
        .await;
    let r = bearer(&p, "/api/x", &opaque).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.echoed().header("x-forwarded-user"), Some("api-admin"));

    // a logout token the provider really sent to the client's back-channel URI
    let (st, _, body) = http_req(
        "POST",
        &format!("{}/__test/backchannel-logout", op.issuer),
        &[("content-type", "application/json")],
        Some(json!({"client_id": "web", "sub": "alice", "sid": "s-1"}).to_string()),
    )
    .await;
    assert_eq!(st, 200, "{body}");
    let logout = logout_tokens.lock().unwrap().pop().expect("a logout token");
    assert_invalid(
        &bearer(&p, "/web/x", &logout).await,
        "the token is not an access token: a back-channel logout token",
        "real logout token",
    );
}

// ---------------------------------------------------------------------------------------------
// Variants signed with keys the test holds
// ---------------------------------------------------------------------------------------------

fn sign(ti: &TestIssuer, typ: Option<&str>, claims: &Value) -> String {
    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some(ti.rsa_kid.clone());
    h.typ = typ.map(str::to_string);
    jsonwebtoken::encode(&h, claims, &ti.rsa).unwrap()
}

/// Attack: every way the contract tells an ID, refresh or logout token from an access token,
/// on a provider whose `audiences` hold both the API and the proxy's own client_id (the
/// default is the client_id alone). What must still pass: RFC 9068 `at+jwt` whatever the
/// claims, and a Keycloak (< 25) access token with `nonce` whose `aud` is the API.
#[tokio::test]
async fn forged_token_kinds() {
    let ti = TestIssuer::start().await;
    let up = echo_upstream().await;
    let p = start_proxy(&format!(
        r#"
[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
[providers.forge]
issuer = "{}"
client_id = "portcullis-web"
audiences = ["portcullis-api", "portcullis-web"]
[[route]]
name = "api"
path = "/"
upstream = "{}"
auth = "bearer"
"#,
        ti.issuer,
        up.url("")
    ))
    .await;
    wait_ready(&p).await;
    let with = |extra: Value| {
        let mut c = ti.claims();
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    };
    let logout_event = json!({"http://schemas.openid.net/event/backchannel-logout": {}});
    let refused: Vec<(&str, Option<&str>, Value, &str)> = vec![
        (
            "at_hash",
            Some("JWT"),
            with(json!({"at_hash": "x"})),
            "an ID token (it carries `at_hash`)",
        ),
        (
            "c_hash",
            None,
            with(json!({"c_hash": "x"})),
            "an ID token (it carries `c_hash`)",
        ),
        (
            "nonce, aud = client_id",
            Some("JWT"),
            with(json!({"nonce": "n", "aud": "portcullis-web"})),
            "an ID token (it carries `nonce` and its `aud` is this proxy's client_id)",
        ),
        (
            "nonce, aud ∋ client_id",
            Some("JWT"),
            with(json!({"nonce": "n", "aud": ["portcullis-api", "portcullis-web"]})),
            "an ID token",
        ),
        (
            "typ claim ID",
            Some("JWT"),
            with(json!({"typ": "ID"})),
            "an ID token (its `typ` claim is `ID`)",
        ),
        (
            "typ claim Refresh",
            Some("JWT"),
            with(json!({"typ": "Refresh"})),
            "a refresh token",
        ),
        (
            "typ claim Offline",
            Some("JWT"),
            with(json!({"typ": "Offline"})),
            "a refresh token",
        ),
        (
            "typ claim Logout",
            Some("JWT"),
            with(json!({"typ": "Logout"})),
            "a back-channel logout token",
        ),
        (
            "logout token",
            Some("logout+jwt"),
            with(json!({"aud": "portcullis-web", "events": logout_event, "sid": "s"})),
            "a back-channel logout token",
        ),
        (
            "logout event, typ JWT",
            Some("JWT"),
            with(json!({"events": logout_event})),
            "a back-channel logout token",
        ),
        (
            "header typ logout+jwt",
            Some("logout+jwt"),
            ti.claims(),
            "a back-channel logout token (its header `typ` is `logout+jwt`)",
        ),
    ];
    for (case, typ, claims, text) in &refused {
        let t = sign(&ti, *typ, claims);
        for round in 0..2 {
            let r = bearer(&p, "/x", &t).await;
            assert_invalid(
                &r,
                &format!("the token is not an access token: {text}"),
                &format!("{case}, round {round}"),
            );
        }
    }
    let pass: Vec<(&str, Option<&str>, Value)> = vec![
        (
            "at+jwt with nonce, aud = client_id",
            Some("at+jwt"),
            with(json!({"nonce": "n", "aud": "portcullis-web"})),
        ),
        (
            "application/at+jwt with at_hash",
            Some("application/at+jwt"),
            with(json!({"at_hash": "x", "typ": "ID"})),
        ),
        (
            "Keycloak < 25: nonce, typ Bearer, aud = the API",
            Some("JWT"),
            with(json!({"nonce": "n", "typ": "Bearer", "azp": "portcullis-web"})),
        ),
        ("plain access token", Some("JWT"), ti.claims()),
    ];
    for (case, typ, claims) in &pass {
        let t = sign(&ti, *typ, claims);
        for round in 0..2 {
            let r = bearer(&p, "/x", &t).await;
            assert_eq!(r.status, 200, "{case}, round {round}: {}", r.text());
            assert_eq!(r.echoed().header("x-forwarded-user"), Some("forged-user"));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Introspection load
// ---------------------------------------------------------------------------------------------

/// A loopback RFC 7662 endpoint that counts: calls in all, calls per token, calls in flight
/// and the most ever in flight. Each answer takes `delay`; `good-*` tokens are active access
/// tokens for `portcullis-api`, every other token is inactive.
struct Counting {
    addr: SocketAddr,
    calls: Arc<AtomicUsize>,
    max_in_flight: Arc<AtomicUsize>,
    per_token: Arc<Mutex<HashMap<String, usize>>>,
    _task: tokio::task::JoinHandle<()>,
}

impl Counting {
    async fn start(delay: Duration) -> Counting {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let calls = Arc::new(AtomicUsize::new(0));
        let in_flight = Arc::new(AtomicUsize::new(0));
        let max_in_flight = Arc::new(AtomicUsize::new(0));
        let per_token = Arc::new(Mutex::new(HashMap::new()));
        let (c, f, m, pt) = (
            calls.clone(),
            in_flight.clone(),
            max_in_flight.clone(),
            per_token.clone(),
        );
        let task = tokio::spawn(async move {
            loop {
                let Ok((s, _)) = l.accept().await else {
                    continue;
                };
                let (c, f, m, pt) = (c.clone(), f.clone(), m.clone(), pt.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let (c, f, m, pt) = (c.clone(), f.clone(), m.clone(), pt.clone());
                        async move {
                            let now_in = f.fetch_add(1, Ordering::SeqCst) + 1;
                            m.fetch_max(now_in, Ordering::SeqCst);
                            c.fetch_add(1, Ordering::SeqCst);
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let token = url::form_urlencoded::parse(&body)
                                .find(|(k, _)| k == "token")
                                .map(|(_, v)| v.into_owned())
                                .unwrap_or_default();
                            *pt.lock().unwrap().entry(token.clone()).or_insert(0) += 1;
                            tokio::time::sleep(delay).await;
                            let answer = if token.starts_with("good-") {
                                json!({"active": true, "sub": "svc", "client_id": "svc",
                                       "aud": "portcullis-api", "token_type": "Bearer",
                                       "exp": now() + 300})
                            } else {
                                json!({"active": false})
                            };
                            f.fetch_sub(1, Ordering::SeqCst);
                            let mut r = Response::new(Full::new(Bytes::from(answer.to_string())));
                            r.headers_mut()
                                .insert("content-type", "application/json".parse().unwrap());
                            Ok::<_, Infallible>(r)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(s), svc)
                        .await;
                });
            }
        });
        Counting {
            addr,
            calls,
            max_in_flight,
            per_token,
            _task: task,
        }
    }

    fn calls_for(&self, token: &str) -> usize {
        self.per_token
            .lock()
            .unwrap()
            .get(token)
            .copied()
            .unwrap_or(0)
    }
}

/// Attack (issue 9, item 7): a flood of random opaque tokens, each one provider call. At most
/// `introspection.max_concurrent` (default 16) calls are in flight per provider; the rest
/// wait, and past the provider `timeout` get 503; the same bad token within 10 s costs one call.
#[tokio::test]
async fn introspection_load_is_bounded() {
    let ti = TestIssuer::start().await;
    let up = echo_upstream().await;
    let flood = Counting::start(Duration::from_millis(40)).await;
    let slow = Counting::start(Duration::from_millis(1200)).await;
    let p = start_proxy(&format!(
        r#"
[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
[providers.op]
issuer = "{iss}"
audiences = ["portcullis-api"]
[providers.op.introspection]
endpoint = "http://{flood}/introspect"
client_id = "portcullis"
client_secret = "introspection-secret"
[providers.narrow]
issuer = "{iss}"
audiences = ["portcullis-api"]
timeout = "2s"
[providers.narrow.introspection]
endpoint = "http://{slow}/introspect"
client_id = "portcullis"
client_secret = "introspection-secret"
max_concurrent = 1
[[route]]
name = "narrow"
path = "/narrow"
upstream = "{up}"
auth = "bearer"
provider = "narrow"
[[route]]
name = "api"
path = "/"
upstream = "{up}"
auth = "bearer"
provider = "op"
"#,
        iss = ti.issuer,
        flood = flood.addr,
        slow = slow.addr,
        up = up.url(""),
    ))
    .await;
    wait_ready(&p).await;

    // 300 random tokens, 64 at a time: every one refused, never more than 16 calls at once
    let p = &p;
    let statuses: Vec<u16> = futures_util::stream::iter(0..300)
        .map(|_| async move {
            let token = b64(&rand_bytes());
            let r = bearer(p, "/api", &token).await;
            if r.status == 401 {
                assert_invalid(&r, "the token is not active", "random token");
            }
            r.status.as_u16()
        })
        .buffer_unordered(64)
        .collect()
        .await;
    assert!(
        statuses.iter().all(|s| *s == 401),
        "every random token is refused: {statuses:?}"
    );
    let most = flood.max_in_flight.load(Ordering::SeqCst);
    assert!(
        (2..=16).contains(&most),
        "at most 16 introspections in flight, saw {most}"
    );
    assert_eq!(flood.calls.load(Ordering::SeqCst), 300);

    // the same bad token five times in 10 s → one call
    for _ in 0..5 {
        assert_invalid(
            &bearer(p, "/api", "the-same-bad-token").await,
            "the token is not active",
            "repeated bad token",
        );
    }
    assert_eq!(flood.calls_for("the-same-bad-token"), 1);
    // an active one still passes (and is cached as before)
    for _ in 0..3 {
        let r = bearer(p, "/api", "good-token-1").await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.echoed().header("x-forwarded-user"), Some("svc"));
    }
    assert_eq!(flood.calls_for("good-token-1"), 1);

    // max_concurrent = 1, 1.2 s per call, timeout 2 s: of three at once the first is decided,
    // the third cannot get a slot within 2 s → 503 with Retry-After, never a call past the cap
    let rs = futures_util::future::join_all(
        ["slow-a", "slow-b", "slow-c"].map(|t| bearer(p, "/narrow", t)),
    )
    .await;
    let codes: Vec<u16> = rs.iter().map(|r| r.status.as_u16()).collect();
    assert!(codes.contains(&401), "{codes:?}");
    let busy = rs
        .iter()
        .find(|r| r.status == 503)
        .unwrap_or_else(|| panic!("a request that found no slot in time gets 503: {codes:?}"));
    assert!(
        www(busy).starts_with("Bearer error=\"temporarily_unavailable\""),
        "{}",
        www(busy)
    );
    assert!(busy.headers.contains_key("retry-after"));
    assert_eq!(slow.max_in_flight.load(Ordering::SeqCst), 1);
}

// ---------------------------------------------------------------------------------------------
// ZITADEL project roles
// ---------------------------------------------------------------------------------------------

/// Attack (issue 9, item 7): an `admin` granted in another ZITADEL project rides along in the
/// token as `urn:zitadel:iam:org:project:<other>:roles`. Under `roles_claim = "auto"` only the
/// configured `project_id`'s claim counts; without `project_id` no project-scoped claim does;
/// the unscoped claim always does.
#[tokio::test]
async fn roles_only_from_the_configured_project() {
    let ti = TestIssuer::start().await;
    let up = echo_upstream().await;
    let upstream = up.url("");
    let iss = &ti.issuer;
    let p = start_proxy(&format!(
        r#"
[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
[providers.ours]
issuer = "{iss}"
audiences = ["portcullis-api"]
project_id = "2710"
[providers.noproject]
issuer = "{iss}"
audiences = ["portcullis-api"]
[[route]]
name = "ours"
path = "/ours"
upstream = "{upstream}"
auth = "bearer"
provider = "ours"
require_roles = ["admin"]
[[route]]
name = "noproject"
path = "/noproject"
upstream = "{upstream}"
auth = "bearer"
provider = "noproject"
require_roles = ["admin"]
"#
    ))
    .await;
    wait_ready(&p).await;
    let token = |claim: &str| {
        let mut c = ti.claims();
        c.as_object_mut().unwrap().remove("roles");
        c[claim] = json!({"admin": {"123456": "acme.localhost"}});
        sign(&ti, Some("JWT"), &c)
    };
    let other = token("urn:zitadel:iam:org:project:9999:roles");
    let ours = token("urn:zitadel:iam:org:project:2710:roles");
    let unscoped = token("urn:zitadel:iam:org:project:roles");
    let cases = [
        ("/ours/x", &other, 403),
        ("/noproject/x", &other, 403),
        ("/ours/x", &ours, 200),
        ("/noproject/x", &ours, 403),
        ("/ours/x", &unscoped, 200),
        ("/noproject/x", &unscoped, 200),
    ];
    for (path, t, want) in cases {
        let r = bearer(&p, path, t).await;
        assert_eq!(
            r.status,
            want,
            "{path} {:?}: {}",
            oidc::payload(t),
            r.text()
        );
        if want == 403 {
            assert!(
                www(&r).starts_with("Bearer error=\"insufficient_scope\"")
                    && r.text().contains("missing required role(s): admin"),
                "{path}: {} {}",
                www(&r),
                r.text()
            );
        } else {
            assert_eq!(r.echoed().header("x-forwarded-roles"), Some("admin"));
        }
    }
}
