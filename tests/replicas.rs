//! The two-replica deployment of `config/docker-compose.replicas.yml`, run without Docker: two
//! `portcullis` binaries with `config/compose/replicas.toml`, sharing a real `redis-server`,
//! behind a real nginx with `config/compose/nginx.conf` (round robin, no stickiness), logging
//! in at the real test provider. The files are the ones the compose file mounts, with only the
//! container addresses replaced by loopback ones (listen ports, the upstream servers, the
//! `/run/secrets` folder); the `${VAR}`s the compose file sets come from an --env-file.
//!
//! A session made through nginx works on each replica, and a logout through nginx ends it on
//! both.
//!
//! The local cache of opened sessions (`session.local_cache`): two `portcullis` processes (A and
//! B) sharing one Redis, each caching the sessions it read; a session ended or rewritten on A
//! (logout, back-channel logout, refresh) no longer opens on B at once, also while the cache's
//! pub/sub link is down (the cache is then off).

mod support;
use support::*;

use std::net::SocketAddr;
use std::path::Path;

use http::{Method, StatusCode};

/// `text` with `from` replaced by `to`; panics when `from` is not there (the shipped file
/// changed, and the test would silently run something else).
fn replace(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "{from:?} is no longer in the file");
    text.replace(from, to)
}

/// One replica: config/compose/replicas.toml on a loopback port, secrets from `secrets`.
fn start_replica(dir: &Path, name: &str, secrets: &Path, env_file: &Path) -> BinaryProxy {
    let shipped = std::fs::read_to_string(repo().join("config/compose/replicas.toml"))
        .expect("read config/compose/replicas.toml");
    let toml = replace(
        &shipped,
        "listen = \"0.0.0.0:8080\"",
        "listen = \"127.0.0.1:0\"",
    );
    let toml = replace(
        &toml,
        "admin_listen = \"0.0.0.0:9090\"",
        "admin_listen = \"127.0.0.1:0\"",
    );
    let toml = replace(
        &toml,
        "\"/run/secrets/",
        &format!("\"{}/", secrets.display()),
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, toml).expect("write replica config");
    BinaryProxy::start_with(&path, &["--env-file", env_file.to_str().unwrap()])
}

/// Waits (≤ 15 s) until the replica's `/readyz` answers 200 (provider discovery and Redis).
async fn wait_replica_ready(admin: SocketAddr, name: &str) {
    let url = format!("http://{admin}/readyz");
    for _ in 0..150 {
        if http_req("GET", &url, &[], None).await.0 == 200 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("replica {name} never became ready");
}

/// `GET /.auth/me` straight at one replica (bypassing nginx) with the browser's cookies, as
/// nginx would forward it.
async fn me_at(replica: SocketAddr, public: &str, cookie: &str) -> String {
    raw_get(
        replica,
        "/.auth/me",
        public,
        &format!("Cookie: {cookie}\r\nX-Forwarded-For: 127.0.0.1\r\n"),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_made_on_one_replica_works_on_the_other_and_logout_ends_it_on_both() {
    let redis = Redis::start();
    let app = echo_upstream().await;
    let nginx_port = free_port();
    let public = format!("127.0.0.1:{nginx_port}");
    let base = format!("http://{public}");
    let provider = Provider::start(&[nginx_port], &[]);

    // What the compose file provides: secrets as files, the rest as environment.
    let dir = temp_dir();
    let secrets = dir.path().join("secrets");
    std::fs::create_dir(&secrets).unwrap();
    std::fs::write(
        secrets.join("session_secret"),
        "4f0c9e2b7a1d3c5e8f6a9b0c2d4e6f8a1b3c5d7e9f0a2b4c6d8e0f1a3b5c7d9e\n",
    )
    .unwrap();
    std::fs::write(secrets.join("zitadel_client_secret"), "web-secret").unwrap();
    let env_file = dir.path().join(".env");
    std::fs::write(
        &env_file,
        format!(
            "ZITADEL_ISSUER={}\nZITADEL_CLIENT_ID=web\nPUBLIC_URL={base}\nREDIS_URL={}\n\
             TRUSTED_PROXY=127.0.0.1/32\nAPP_URL={}\n",
            provider.issuer,
            redis.url(),
            app.url("")
        ),
    )
    .unwrap();

    let a = start_replica(dir.path(), "portcullis-a", &secrets, &env_file);
    let b = start_replica(dir.path(), "portcullis-b", &secrets, &env_file);
    wait_replica_ready(a.admin_addr(), "portcullis-a").await;
    wait_replica_ready(b.admin_addr(), "portcullis-b").await;

    // nginx with the shipped config, its upstream servers pointed at the two processes.
    let conf = std::fs::read_to_string(repo().join("config/compose/nginx.conf"))
        .expect("read config/compose/nginx.conf");
    let conf = replace(
        &conf,
        "server portcullis-a:8080",
        &format!("server {}", a.http_addr),
    );
    let conf = replace(
        &conf,
        "server portcullis-b:8080",
        &format!("server {}", b.http_addr),
    );
    let nginx = start_nginx_on(nginx_port, &conf);

    // Log in through nginx: round robin sends the login start, the provider's callback and the
    // final page to alternating replicas.
    let browser = Browser::new();
    let page = browser.login(&base, "/", "alice").await;
    assert_eq!(
        page.status,
        StatusCode::OK,
        "{}\n{}",
        page.body,
        nginx.log()
    );
    let cookie = browser
        .cookies(&public)
        .iter()
        .map(|(n, v)| format!("{n}={v}"))
        .collect::<Vec<_>>()
        .join("; ");
    assert!(!cookie.is_empty(), "no session cookie after the login");

    // The session works on each replica (straight at it), and through nginx on both in turn.
    for (name, replica) in [("portcullis-a", &a), ("portcullis-b", &b)] {
        let r = me_at(replica.http_addr, &public, &cookie).await;
        assert_eq!(raw_status(&r), 200, "{name}: {r}");
        assert!(raw_body(&r).contains("alice"), "{name}: {r}");
    }
    for _ in 0..4 {
        let r = browser.get(&format!("{base}/.auth/me")).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert!(r.body.contains("alice"), "{}", r.body);
    }

    // Logout through nginx (one replica serves it) ends the session on both.
    post_logout(&browser, &base, "logout through nginx").await;
    for (name, replica) in [("portcullis-a", &a), ("portcullis-b", &b)] {
        let r = me_at(replica.http_addr, &public, &cookie).await;
        assert_eq!(
            raw_status(&r),
            401,
            "{name} still accepts the logged-out session: {r}"
        );
    }
    let r = browser.get(&format!("{base}/.auth/me")).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
}

/// Two `portcullis` processes, A and B, with the same config (their own port), sharing one
/// Redis, each with `local_cache`; the test provider knows both (back-channel logout goes to A).
struct Pair {
    /// The Redis server the sessions are on (the master, behind Sentinel).
    redis_port: u16,
    _redis: Option<Redis>,
    provider: Provider,
    a: BinaryProxy,
    b: BinaryProxy,
    pa: u16,
    pb: u16,
    _dir: tempfile::TempDir,
}

async fn pair(local_cache: &str, provider_env: &[(&str, &str)]) -> Pair {
    let redis = Redis::start();
    let (url, port) = (redis.url(), redis.port);
    pair_on(&url, "", port, Some(redis), local_cache, provider_env).await
}

/// [`pair`] on the Redis store at `url` (`extra`: more `[session]` lines; `port`: the server
/// the sessions are on, 0 when it cannot be asked for its counters over plain TCP).
async fn pair_on(
    url: &str,
    extra: &str,
    port: u16,
    redis: Option<Redis>,
    local_cache: &str,
    provider_env: &[(&str, &str)],
) -> Pair {
    let (pa, pb) = (free_port(), free_port());
    let provider = Provider::start(&[pa, pb], provider_env);
    let upstream = echo_upstream_map().await;
    let dir = temp_dir();
    let start = |port: u16, name: &str| {
        let toml = proxy_config(&ProxyOpts {
            port,
            issuer: provider.issuer.clone(),
            upstream,
            client_id: "web",
            client_auth: "client_secret = \"web-secret\"".into(),
            session: session_cfg(&format!(
                "store = \"redis\"\nredis_url = \"{}\"\nlocal_cache = \"{local_cache}\"\n\
                 lifetime = \"1h\"\nidle_timeout = \"2h\"\n{extra}",
                url
            )),
            admin: true,
        });
        let path = dir.path().join(format!("{name}.toml"));
        std::fs::write(&path, toml).expect("write config");
        BinaryProxy::start(&path)
    };
    let a = start(pa, "a");
    let b = start(pb, "b");
    wait_replica_ready(a.admin_addr(), "A").await;
    wait_replica_ready(b.admin_addr(), "B").await;
    wait_cache_on(&a, 1);
    wait_cache_on(&b, 1);
    Pair {
        redis_port: port,
        _redis: redis,
        provider,
        a,
        b,
        pa,
        pb,
        _dir: dir,
    }
}

/// Waits (≤ 15 s) until the replica has logged its cache's subscription up `times` times.
fn wait_cache_on(p: &BinaryProxy, times: usize) {
    for _ in 0..300 {
        let n = p
            .logs
            .lock()
            .map(|l| l.iter().filter(|l| l.contains("local cache on")).count())
            .unwrap_or(0);
        if n >= times {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let all = p.logs.lock().map(|l| l.join("\n")).unwrap_or_default();
    panic!("the local cache's subscription did not come up {times} time(s); logs:\n{all}");
}

impl Pair {
    fn base_a(&self) -> String {
        format!("http://127.0.0.1:{}", self.pa)
    }

    /// alice logged in on A: the browser and its `Cookie` header value.
    async fn login_on_a(&self) -> (Browser, String) {
        let browser = Browser::new();
        let page = browser.login(&self.base_a(), "/", "alice").await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        let cookie = browser
            .cookies(&format!("127.0.0.1:{}", self.pa))
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        assert!(!cookie.is_empty(), "no session cookie after the login");
        (browser, cookie)
    }

    /// `GET /.auth/me` with `cookie` on A (`on_b` false) or B: the raw response.
    async fn me(&self, on_b: bool, cookie: &str) -> String {
        let (proxy, port) = if on_b {
            (&self.b, self.pb)
        } else {
            (&self.a, self.pa)
        };
        raw_get(
            proxy.http_addr,
            "/.auth/me",
            &format!("127.0.0.1:{port}"),
            &format!("Cookie: {cookie}\r\n"),
        )
        .await
    }

    /// The session works on B, and a second request there is served from B's cache (no
    /// Redis `GET`; not counted over TLS).
    async fn cached_on_b(&self, cookie: &str, what: &str) {
        let r = self.me(true, cookie).await;
        assert_eq!(raw_status(&r), 200, "{what}: B refuses the session: {r}");
        if self.redis_port == 0 {
            let r = self.me(true, cookie).await;
            assert_eq!(raw_status(&r), 200, "{what}: {r}");
            return;
        }
        let gets = redis_calls(self.redis_port, "get");
        let r = self.me(true, cookie).await;
        assert_eq!(raw_status(&r), 200, "{what}: {r}");
        assert_eq!(
            redis_calls(self.redis_port, "get"),
            gets,
            "{what}: B read Redis again instead of its local cache"
        );
    }

    /// `POST /.auth/logout` on A (same origin), answered with a redirect.
    async fn logout_on_a(&self, browser: &Browser) {
        post_logout(browser, &self.base_a(), "logout on A").await;
    }

    /// Asserts the session no longer opens on B, nor on A: 401 "no session".
    async fn refused_on_both(&self, cookie: &str, what: &str) {
        for (name, on_b) in [("B", true), ("A", false)] {
            let r = self.me(on_b, cookie).await;
            assert_eq!(
                raw_status(&r),
                401,
                "{what}: {name} still accepts the ended session: {r}"
            );
            assert!(raw_body(&r).contains("no session"), "{what}: {name}: {r}");
        }
    }
}

/// 50 sessions, each used on A and B (cached on both), logged out on A and replayed on B at
/// once: B refuses every one (the invalidation is read before a cache hit).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_on_one_replica_is_refused_at_once_on_the_other_despite_its_cache() {
    let p = pair("10s", &[]).await;
    for i in 0..50 {
        let (browser, cookie) = p.login_on_a().await;
        let r = p.me(false, &cookie).await;
        assert_eq!(raw_status(&r), 200, "session {i} on A: {r}");
        assert!(raw_body(&r).contains("alice"), "{r}");
        p.cached_on_b(&cookie, &format!("session {i}")).await;
        p.logout_on_a(&browser).await;
        p.refused_on_both(&cookie, &format!("session {i} after logout on A"))
            .await;
    }
}

/// A back-channel logout delivered to A (by `sub`: every session of alice) ends the session
/// B has in its cache, at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backchannel_logout_through_one_replica_ends_the_cached_session_on_the_other() {
    let p = pair("10s", &[]).await;
    for i in 0..5 {
        let (_browser, cookie) = p.login_on_a().await;
        p.cached_on_b(&cookie, &format!("session {i}")).await;
        let r = Browser::new()
            .request(
                Method::POST,
                &format!("{}/__test/backchannel-logout", p.provider.issuer),
                Some((
                    "application/json",
                    r#"{"client_id":"web","sub":"alice"}"#.to_string(),
                )),
                &[],
            )
            .await;
        assert_eq!(
            r.status, 200,
            "back-channel logout not delivered: {}",
            r.body
        );
        p.refused_on_both(&cookie, &format!("session {i} after back-channel logout"))
            .await;
    }
}

/// A refresh on A rewrites the session (new tokens, new roles): B, which had the session in
/// its cache, serves the rewritten one at once — and does not refresh again with the rotated
/// refresh token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_on_one_replica_replaces_the_cached_session_on_the_other() {
    let p = pair("10s", &[("ACCESS_TOKEN_TTL", "4")]).await;
    let (_browser, cookie) = p.login_on_a().await;
    p.cached_on_b(&cookie, "before the refresh").await;
    let me: serde_json::Value =
        serde_json::from_str(raw_body(&p.me(true, &cookie).await)).expect("me as JSON");
    assert_eq!(me["roles"], serde_json::json!(["admin"]), "{me}");

    let r = Browser::new()
        .request(
            Method::POST,
            &format!("{}/__test/set-roles", p.provider.issuer),
            Some((
                "application/json",
                r#"{"sub":"alice","roles":["reader"]}"#.to_string(),
            )),
            &[],
        )
        .await;
    assert_eq!(r.status, 200, "set-roles: {}", r.body);
    let before = p.provider.count("POST /token");
    // Past half the access token's 4 s: the next request refreshes.
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let r = p.me(false, &cookie).await;
    assert_eq!(raw_status(&r), 200, "A after its refresh: {r}");
    assert!(raw_body(&r).contains("reader"), "A after its refresh: {r}");
    let r = p.me(true, &cookie).await;
    assert_eq!(raw_status(&r), 200, "B right after A's refresh: {r}");
    let me: serde_json::Value = serde_json::from_str(raw_body(&r)).expect("me as JSON");
    assert_eq!(
        me["roles"],
        serde_json::json!(["reader"]),
        "B still serves the session as it was before A's refresh: {me}"
    );
    assert_eq!(
        p.provider.count("POST /token") - before,
        1,
        "one refresh: B took A's rewritten session instead of refreshing again"
    );
}

/// While the cache's subscription is down (killed with `CLIENT KILL TYPE pubsub`, then
/// refused by an ACL) every request reads Redis and a logout on A is refused on B at once;
/// when the subscription is back, the cache is used again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_pubsub_link_down_the_cache_is_bypassed_and_logout_stays_immediate() {
    let p = pair("10s", &[]).await;
    let port = p.redis_port;

    // Killed while B holds the session in its cache: the logout on A is refused on B at once.
    let (browser, cookie) = p.login_on_a().await;
    p.cached_on_b(&cookie, "before the kill").await;
    let _: () = redis_cmd(port, &["ACL", "SETUSER", "default", "-subscribe"]).expect("ACL");
    let killed: i64 = redis_cmd(port, &["CLIENT", "KILL", "TYPE", "pubsub"]).expect("CLIENT KILL");
    assert_eq!(killed, 2, "one subscription per replica");
    p.logout_on_a(&browser).await;
    p.refused_on_both(&cookie, "logout on A with the links killed")
        .await;

    // Still down (SUBSCRIBE refused): B reads Redis on every request, and refuses at once.
    let (browser, cookie) = p.login_on_a().await;
    let gets = redis_calls(port, "get");
    for _ in 0..3 {
        let r = p.me(true, &cookie).await;
        assert_eq!(raw_status(&r), 200, "B with its link down: {r}");
    }
    assert_eq!(
        redis_calls(port, "get") - gets,
        3,
        "B used its cache while its invalidation link was down"
    );
    p.logout_on_a(&browser).await;
    p.refused_on_both(&cookie, "logout on A with the links down")
        .await;
    p.b.wait_log(&["local cache stays off", "NOPERM"]);

    // Back: the cache is used again.
    let _: () = redis_cmd(port, &["ACL", "SETUSER", "default", "+subscribe"]).expect("ACL");
    wait_cache_on(&p.a, 2);
    wait_cache_on(&p.b, 2);
    let (browser, cookie) = p.login_on_a().await;
    p.cached_on_b(&cookie, "after the link came back").await;
    p.logout_on_a(&browser).await;
    p.refused_on_both(&cookie, "logout on A after the link came back")
        .await;
}

/// Waits (≤ 30 s) for a log line of `p` with every one of `needles`.
fn wait_log_long(p: &BinaryProxy, needles: &[&str]) {
    for _ in 0..600 {
        if p.logs
            .lock()
            .is_ok_and(|l| l.iter().any(|l| needles.iter().all(|n| l.contains(n))))
        {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let all = p.logs.lock().map(|l| l.join("\n")).unwrap_or_default();
    panic!("no log line with {needles:?} within 30 s; logs:\n{all}");
}

/// Behind Sentinel: the caches' subscriptions are on the master, and after a failover
/// (`SENTINEL FAILOVER`) they follow the new one; logout on A is refused on B at once before
/// and after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_sentinel_the_subscriptions_follow_a_failover() {
    let set = SentinelSet::start();
    let (old, new) = (set.servers[0].port, set.servers[1].port);
    let url = format!("redis+sentinel://{}/{MASTER_NAME}/0", set.addrs());
    let mut p = pair_on(&url, "", old, None, "10s", &[]).await;
    for proxy in [&p.a, &p.b] {
        wait_log_long(proxy, &["local cache on", &format!("127.0.0.1:{old}")]);
    }
    let (browser, cookie) = p.login_on_a().await;
    p.cached_on_b(&cookie, "before the failover").await;
    p.logout_on_a(&browser).await;
    p.refused_on_both(&cookie, "before the failover").await;

    let r: String = redis_cmd(
        set.sentinels[0].port,
        &["SENTINEL", "FAILOVER", MASTER_NAME],
    )
    .expect("SENTINEL FAILOVER");
    assert_eq!(r, "OK");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    // Done when the sentinels name the new master and the old one replicates from it (they
    // close the clients of both, subscriptions included, as they reconfigure them).
    loop {
        let demoted = redis_cmd::<String>(old, &["INFO", "replication"])
            .is_ok_and(|i| i.contains("role:slave") && i.contains("master_link_status:up"));
        if demoted && set.master_port() == Some(new) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the failover did not complete within 30 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    p.redis_port = new;
    // The stores find the new master (on their next command or readiness check), and the
    // subscriptions move there.
    for proxy in [&p.a, &p.b] {
        wait_log_long(proxy, &["local cache on", &format!("127.0.0.1:{new}")]);
    }
    let subscribers: String = redis_cmd(new, &["CLIENT", "LIST", "TYPE", "pubsub"]).unwrap();
    assert_eq!(
        subscribers
            .lines()
            .filter(|l| l.contains("name=portcullis-invalidations "))
            .count(),
        2,
        "one subscription per replica on the new master: {subscribers}"
    );
    let (browser, cookie) = p.login_on_a().await;
    p.cached_on_b(&cookie, "after the failover").await;
    p.logout_on_a(&browser).await;
    p.refused_on_both(&cookie, "after the failover").await;
}

/// Over TLS (`rediss://` with a private CA, and `rediss+sentinel://`), the subscriptions are
/// made (TLS, the CA checked) and a logout on A is refused on B at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_direct_and_through_sentinel() {
    let ca = TestCa::new();
    let tls = TlsSentinel::start(&ca);
    let ca_line = format!("redis_ca_file = \"{}\"", tls.ca_file.display());
    for url in [
        format!("rediss://localhost:{}/0", tls.master_port),
        format!(
            "rediss+sentinel://127.0.0.1:{}/{MASTER_NAME}/0",
            tls.sentinel_port
        ),
    ] {
        let p = pair_on(&url, &ca_line, 0, None, "10s", &[]).await;
        for proxy in [&p.a, &p.b] {
            wait_log_long(proxy, &["local cache on", &format!(":{}", tls.master_port)]);
        }
        for i in 0..3 {
            let (browser, cookie) = p.login_on_a().await;
            p.cached_on_b(&cookie, &format!("{url}: session {i}")).await;
            p.logout_on_a(&browser).await;
            p.refused_on_both(&cookie, &format!("{url}: session {i}"))
                .await;
        }
    }
}

/// `session.local_cache`: at most 10 s (`check` names the place and the limit); `"0s"` (off)
/// and the default are accepted.
#[test]
fn local_cache_is_checked() {
    let dir = temp_dir();
    let toml = |cache: &str| {
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n\n[session]\nsecret = \"7c1e9a4f0b3d8e2a6f5c1d9b0e4a7f3c\"\n\
             store = \"redis\"\nredis_url = \"redis://127.0.0.1:6399/0\"\n{cache}\n\n[[route]]\n\
             name = \"app\"\npath = \"/\"\nupstream = \"http://127.0.0.1:3000\"\nauth = \"none\"\n"
        )
    };
    let bad = toml("local_cache = \"11s\"");
    let out = check_config(dir.path(), &bad);
    assert_check_error(
        &out,
        &bad,
        "\"11s\"",
        "session.local_cache",
        "at most \"10s\"",
    );
    for ok in ["local_cache = \"0s\"", "local_cache = \"10s\"", ""] {
        let out = check_config(dir.path(), &toml(ok));
        assert_eq!(out.code, 0, "{ok}: {}", out.stderr);
    }
}

/// `POST /.auth/logout` at `base` from the same origin, answered with a redirect.
async fn post_logout(browser: &Browser, base: &str, what: &str) {
    let r = browser
        .request(
            Method::POST,
            &format!("{base}/.auth/logout"),
            Some(("application/x-www-form-urlencoded", String::new())),
            &[("origin", base), ("sec-fetch-site", "same-origin")],
        )
        .await;
    assert!(
        r.status == StatusCode::FOUND || r.status == StatusCode::SEE_OTHER,
        "{what}: {} {}",
        r.status,
        r.body
    );
}
