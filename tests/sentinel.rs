//! The Redis session store behind Sentinel, against real processes: a `redis-server` master, one
//! replica and three `redis-sentinel`s (quorum 2), the test OpenID provider and portcullis
//! in-process. Sessions logged in through the provider survive the master's SIGKILL: while no
//! master is reachable every request needing a session check is answered 503 (never forwarded,
//! never sent to log in again) and `/readyz` reports the store down; after the sentinels promote
//! the replica the same cookies work again and new logins work. A manual failover (the old master
//! demoted, still up) does not lose a login either; a write a demoted master refuses
//! (`READONLY`) is not taken as done; TLS to the sentinels and the master works with a private CA
//! (and without it, nothing is served); `check` names every config mistake.

mod support;
use support::*;

use std::time::{Duration, Instant};

use http::StatusCode;

/// A proxy whose Redis store is the master of the sentinels in `set`, with an admin listener.
async fn sentinel_proxy(provider: &Provider, port: u16, set: &SentinelSet) -> TestProxy {
    let up = echo_upstream_map().await;
    let url = format!("redis+sentinel://{}/{MASTER_NAME}/0", set.addrs());
    start_proxy_ready(&proxy_config(&ProxyOpts {
        port,
        issuer: provider.issuer.clone(),
        upstream: up,
        client_id: "web",
        client_auth: "client_secret = \"web-secret\"".into(),
        session: session_cfg(&format!("store = \"redis\"\nredis_url = \"{url}\"")),
        admin: true,
    }))
    .await
}

async fn readyz(p: &TestProxy) -> (u16, String) {
    let (status, _, body) =
        http_req("GET", &format!("http://{}/readyz", p.admin()), &[], None).await;
    (status.as_u16(), body)
}

/// Waits (bounded) until `/readyz` answers `want`.
async fn wait_readyz(p: &TestProxy, want: u16, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let (s, body) = readyz(p).await;
        if s == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz still {s} (want {want}) after {within:?}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every key the master holds is on the replica: `WAIT 1 1000` acknowledged by the replica,
/// then the key counts compared.
/// A Sentinel set, the test provider and a ready proxy on the Sentinel store.
struct Running {
    set: SentinelSet,
    _provider: Provider,
    proxy: TestProxy,
    base: String,
}

impl Running {
    async fn start() -> Running {
        let set = SentinelSet::start();
        let port = free_port();
        let provider = Provider::start(&[port], &[]);
        let proxy = sentinel_proxy(&provider, port, &set).await;
        wait_readyz(&proxy, 200, Duration::from_secs(10)).await;
        Running {
            set,
            _provider: provider,
            proxy,
            base: format!("http://127.0.0.1:{port}"),
        }
    }
}

fn replicated(master: u16, replica: u16) {
    let acked: i64 = redis_cmd(master, &["WAIT", "1", "1000"]).expect("WAIT on the master");
    assert_eq!(acked, 1, "the replica acknowledged the writes");
    let m: i64 = redis_cmd(master, &["DBSIZE"]).unwrap();
    let r: i64 = redis_cmd(replica, &["DBSIZE"]).unwrap();
    assert!(m > 0, "the sessions are in Redis");
    assert_eq!(m, r, "the replica holds every key of the master");
}

/// The master is SIGKILLed under a client loop: each answer is 200 (a master answered the
/// session check) or 503 session_store_unavailable, never a redirect to log in nor anything
/// else; `/readyz` goes down; after the failover the same cookies work and a new login works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn master_killed_sessions_survive_failover_fail_closed_meanwhile() {
    let Running {
        mut set,
        _provider,
        proxy,
        base,
    } = Running::start().await;

    let browsers: Vec<Browser> = (0..3).map(|_| Browser::new()).collect();
    for b in &browsers {
        b.login(&base, "/app", "alice").await;
    }
    let (master, replica) = (set.servers[0].port, set.servers[1].port);
    assert_eq!(set.master_port(), Some(master));
    replicated(master, replica);
    for b in &browsers {
        let r = b.get(&format!("{base}/app")).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }

    set.servers[0].stop(); // SIGKILL
    let killed = Instant::now();
    let (mut ok, mut unavailable, mut ready_down) = (0, 0, false);
    let mut recovered = None;
    while killed.elapsed() < Duration::from_secs(40) {
        for (i, b) in browsers.iter().enumerate() {
            let r = b.get(&format!("{base}/app/x")).await;
            match r.status.as_u16() {
                200 => {
                    assert_eq!(
                        r.json()["headers"]["x-forwarded-user"],
                        "alice",
                        "forwarded as the session's user"
                    );
                    ok += 1;
                    if unavailable > 0 && i == browsers.len() - 1 {
                        recovered.get_or_insert(killed.elapsed());
                    }
                }
                503 => {
                    assert!(
                        r.body.contains("session store is unavailable"),
                        "503 says why: {}",
                        r.body
                    );
                    assert!(r.set_cookies().is_empty(), "the cookie is kept");
                    unavailable += 1;
                }
                s => panic!(
                    "after {:?} without a master: {s} (only 200 with a session check or 503 fail closed): location {:?} body {}",
                    killed.elapsed(),
                    r.location(),
                    r.body
                ),
            }
        }
        if !ready_down && unavailable > 0 {
            let (s, body) = readyz(&proxy).await;
            if s == 503 {
                assert!(body.contains("session:redis"), "{body}");
                ready_down = true;
            }
        }
        if recovered.is_some() && set.master_port() == Some(replica) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let recovered = recovered.unwrap_or_else(|| {
        panic!("no recovery within 40 s of the kill: {ok} ok, {unavailable} unavailable; sentinels say master {:?}", set.master_port())
    });
    assert!(unavailable > 0, "requests during the gap were answered 503");
    assert!(ready_down, "/readyz reported the store down during the gap");
    assert_eq!(set.master_port(), Some(replica), "the replica was promoted");
    eprintln!(
        "failover: {unavailable} answers 503, service back after {recovered:?}, {ok} answers 200"
    );

    // After the failover: the same cookies, /.auth/me, a new login, readiness.
    for b in &browsers {
        let r = b.get(&format!("{base}/app/after")).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(r.json()["headers"]["x-forwarded-user"], "alice");
    }
    let n = Browser::new();
    n.login(&base, "/app", "alice").await;
    let r = n.get(&format!("{base}/app/new")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let keys: i64 = redis_cmd(replica, &["DBSIZE"]).unwrap();
    assert!(keys > 0, "the new session is on the promoted master");
    wait_readyz(&proxy, 200, Duration::from_secs(10)).await;
    proxy.shutdown().await;
}

/// `SENTINEL FAILOVER`: the old master becomes a replica but stays up (the sentinels close its
/// clients' connections as they reconfigure it). A login right after — a session write — is not
/// lost: the store asks the sentinels again and writes to the new master, where the session is
/// found; the session made before the failover still opens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_failover_writes_go_to_the_new_master() {
    let Running {
        set,
        _provider,
        proxy,
        base,
    } = Running::start().await;
    let b = Browser::new();
    b.login(&base, "/app", "alice").await;
    let (old, new) = (set.servers[0].port, set.servers[1].port);
    replicated(old, new);

    let r: String = redis_cmd(
        set.sentinels[0].port,
        &["SENTINEL", "FAILOVER", MASTER_NAME],
    )
    .expect("SENTINEL FAILOVER");
    assert_eq!(r, "OK");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let demoted = redis_cmd::<String>(old, &["INFO", "replication"])
            .is_ok_and(|i| i.contains("role:slave") && i.contains("master_link_status:up"));
        if demoted && set.master_port() == Some(new) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the manual failover did not complete within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The old session still opens (whatever connection the proxy has), and a new login —
    // writes — lands on the new master.
    let r = b.get(&format!("{base}/app/x")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let before: i64 = redis_cmd(new, &["DBSIZE"]).unwrap();
    let n = Browser::new();
    n.login(&base, "/app", "alice").await;
    let after: i64 = redis_cmd(new, &["DBSIZE"]).unwrap();
    assert!(
        after > before,
        "the new session was written to the new master"
    );
    let r = n.get(&format!("{base}/app/y")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    wait_readyz(&proxy, 200, Duration::from_secs(10)).await;
    proxy.shutdown().await;
}

/// The master is demoted behind the sentinels' back (`REPLICAOF`, no client killed) while they
/// still name it: the proxy's connection lives on, reads still answer, and a write — logout
/// deleting the session — gets `READONLY`. It is not taken as done: the store asks the
/// sentinels again, finds no master (the one they name says it is a replica) and answers 503;
/// the session is still there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_refused_by_a_demoted_master_is_not_success() {
    let Running {
        set,
        _provider,
        proxy,
        base,
    } = Running::start().await;
    let b = Browser::new();
    b.login(&base, "/app", "alice").await;
    let (m, r) = (set.servers[0].port, set.servers[1].port);
    replicated(m, r);
    let keys: i64 = redis_cmd(m, &["DBSIZE"]).unwrap();

    let _: String = redis_cmd(r, &["REPLICAOF", "NO", "ONE"]).unwrap();
    let _: String = redis_cmd(m, &["REPLICAOF", "127.0.0.1", &r.to_string()]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !redis_cmd::<String>(m, &["INFO", "replication"])
        .is_ok_and(|i| i.contains("role:slave") && i.contains("master_link_status:up"))
    {
        assert!(Instant::now() < deadline, "the master was not demoted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let out = b.get(&format!("{base}/.auth/logout")).await;
    assert_eq!(
        out.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "a logout the store could not write is not done: {} {}",
        out.location(),
        out.body
    );
    assert!(out.body.contains("you are still signed in"), "{}", out.body);
    let now: i64 = redis_cmd(r, &["DBSIZE"]).unwrap();
    assert_eq!(now, keys, "the session was not deleted");
    wait_readyz(&proxy, 503, Duration::from_secs(10)).await;
    proxy.shutdown().await;
}

const SESSION: &str = "[server]\nlisten = \"127.0.0.1:0\"\n\n[session]\nsecret = \"7c1e9a4f0b3d8e2a6f5c1d9b0e4a7f3c\"\n";
const ROUTE: &str = "\n[[route]]\nname = \"app\"\npath = \"/\"\nupstream = \"http://127.0.0.1:3000\"\nauth = \"none\"\n";

/// `[session]` lines (after the secret), then a route.
fn session_toml(lines: &str) -> String {
    format!("{SESSION}{lines}\n{ROUTE}")
}

/// `check` refuses every Sentinel mistake with file:line:col, the key and the fix; and accepts
/// both forms (URL with a password, `rediss+sentinel://` with a CA file, the table with every key).
#[test]
fn check_names_every_sentinel_mistake() {
    let dir = temp_dir();
    let ca = TestCa::new();
    std::fs::write(dir.path().join("ca.pem"), &ca.cert_pem).unwrap();
    std::fs::write(dir.path().join("pw"), "s3cret\n").unwrap();
    // (the [session] lines, the text the error points at, key, what it says)
    let cases: &[(&str, &str, &str, &str)] = &[
        (
            "store = \"redis\"\nredis_url = \"redis+sentinel://10.0.0.1:26379/mymaster\"\n[session.redis]\nsentinels = [\"10.0.0.1:26379\"]\nmaster_name = \"mymaster\"",
            "[session.redis]",
            "session.redis",
            "both `redis_url` and [session.redis] are set",
        ),
        (
            "store = \"redis\"\n[session.redis]\nmaster_name = \"mymaster\"",
            "[session.redis]",
            "session.redis.sentinels",
            "missing: list the sentinels",
        ),
        (
            "store = \"redis\"\n[session.redis]\nsentinels = []\nmaster_name = \"m\"",
            "[]",
            "session.redis.sentinels",
            "empty",
        ),
        (
            "store = \"redis\"\n[session.redis]\nsentinels = [\"10.0.0.1:26379\", \"10.0.0.2:x\"]\nmaster_name = \"m\"",
            "\"10.0.0.2:x\"",
            "session.redis.sentinels[1]",
            "is not host:port (the port must be a number from 1 to 65535)",
        ),
        (
            "store = \"redis\"\n[session.redis]\nsentinels = [\"http://10.0.0.1\"]\nmaster_name = \"m\"",
            "\"http://",
            "session.redis.sentinels[0]",
            "is not host:port",
        ),
        (
            "store = \"redis\"\n[session.redis]\nsentinels = [\"10.0.0.1\"]",
            "[session.redis]",
            "session.redis.master_name",
            "missing: the name the sentinels monitor",
        ),
        (
            "store = \"redis\"\n[session.redis]\nsentinels = [\"10.0.0.1\"]\nmaster_name = \"\"",
            "\"\"",
            "session.redis.master_name",
            "empty",
        ),
        (
            "store = \"redis\"\n[session.redis]\nsentinels = [\"10.0.0.1\"]\nmaster_name = \"m\"\ndb = -1",
            "-1",
            "session.redis.db",
            "must be a number ≥ 0",
        ),
        (
            "store = \"redis\"\n[session.redis]\nsentinels = [\"10.0.0.1\"]\nmaster_name = \"m\"\npassword = \"a\"\npassword_file = \"pw\"",
            "\"a\"",
            "session.redis.password",
            "keep one",
        ),
        (
            "store = \"redis\"\n[session.redis]\nsentinels = [\"10.0.0.1\"]\nmaster_name = \"m\"\nca_file = \"ca.pem\"",
            "\"ca.pem\"",
            "session.redis.ca_file",
            "a CA file needs TLS: add tls = true",
        ),
        (
            "store = \"redis\"\nredis_ca_file = \"ca.pem\"\n[session.redis]\nsentinels = [\"10.0.0.1\"]\nmaster_name = \"m\"\ntls = true",
            "\"ca.pem\"",
            "session.redis_ca_file",
            "write the CA file there as `ca_file`",
        ),
        (
            "[session.redis]\nsentinels = [\"10.0.0.1\"]\nmaster_name = \"m\"",
            "[session.redis]",
            "session.redis",
            "set store = \"redis\"",
        ),
        (
            "store = \"redis\"\nredis_url = \"redis+sentinel://10.0.0.1:26379,10.0.0.2:26379\"",
            "\"redis+",
            "session.redis_url",
            "the master name is missing",
        ),
        (
            "store = \"redis\"\nredis_url = \"redis+sentinel://10.0.0.1:99999/m\"",
            "\"redis+",
            "session.redis_url",
            "\"10.0.0.1:99999\" is not host:port",
        ),
        (
            "store = \"redis\"\nredis_url = \"redis+sentinel://10.0.0.1,,10.0.0.2/m\"",
            "\"redis+",
            "session.redis_url",
            "a sentinel address is empty",
        ),
        (
            "store = \"redis\"\nredis_url = \"redis+sentinel://10.0.0.1/m/x\"",
            "\"redis+",
            "session.redis_url",
            "the database \"x\" is not a number",
        ),
        (
            "store = \"redis\"\nredis_url = \"redis+sentinel://user:pw@10.0.0.1/m\"",
            "\"redis+",
            "session.redis_url",
            "a user name in the URL is not supported",
        ),
        (
            "store = \"redis\"\nredis_url = \"sentinel://10.0.0.1/m\"",
            "\"sentinel",
            "session.redis_url",
            "must start with redis://, rediss:// (TLS), redis+sentinel:// or rediss+sentinel://",
        ),
        (
            "store = \"redis\"\nredis_url = \"redis+sentinel://10.0.0.1/m\"\nredis_ca_file = \"ca.pem\"",
            "\"ca.pem\"",
            "session.redis_ca_file",
            "a CA file needs TLS",
        ),
        (
            "store = \"redis\"",
            "\"redis\"",
            "session.redis_url",
            "or a [session.redis] table with `sentinels` and `master_name`",
        ),
    ];
    for (lines, needle, key, why) in cases {
        let toml = session_toml(lines);
        let out = check_config(dir.path(), &toml);
        assert_check_error(&out, &toml, needle, key, why);
    }

    for ok in [
        "store = \"redis\"\nredis_url = \"redis+sentinel://:p%40ss@10.0.0.1:26379,sentinel-2,[::1]:26380/mymaster/2\"",
        "store = \"redis\"\nredis_url = \"rediss+sentinel://10.0.0.1/mymaster\"\nredis_ca_file = \"ca.pem\"",
        "store = \"redis\"\n[session.redis]\nsentinels = [\"10.0.0.1:26379\", \"10.0.0.2\"]\nmaster_name = \"mymaster\"\ndb = 1\npassword_file = \"pw\"\nsentinel_password = \"sp\"\ntls = true\nca_file = \"ca.pem\"",
    ] {
        let out = check_config(dir.path(), &session_toml(ok));
        assert_eq!(out.code, 0, "{ok}\n{}", out.stderr);
    }
}

/// `rediss+sentinel://` and `[session.redis] tls = true`: TLS to the sentinel and to the master
/// it names, trusting only the CA file; a login is stored and the session opens. The same setup
/// without the CA (system roots) never finds a master: a session lookup answers 503 and
/// `/readyz` is down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_to_the_sentinels_and_the_master() {
    let ca = TestCa::new();
    let tls = TlsSentinel::start(&ca);
    let ca_file = tls.ca_file.display().to_string();
    let s = tls.sentinel_port;
    for (session, trusted) in [
        (
            format!(
                "store = \"redis\"\nredis_url = \"rediss+sentinel://localhost:{s}/{MASTER_NAME}\"\nredis_ca_file = \"{ca_file}\""
            ),
            true,
        ),
        (
            format!(
                "store = \"redis\"\n[session.redis]\nsentinels = [\"127.0.0.1:{s}\"]\nmaster_name = \"{MASTER_NAME}\"\ntls = true\nca_file = \"{ca_file}\""
            ),
            true,
        ),
        (
            format!(
                "store = \"redis\"\nredis_url = \"rediss+sentinel://localhost:{s}/{MASTER_NAME}\""
            ),
            false,
        ),
    ] {
        let port = free_port();
        let provider = Provider::start(&[port], &[]);
        let up = echo_upstream_map().await;
        let proxy = start_proxy_ready(&proxy_config(&ProxyOpts {
            port,
            issuer: provider.issuer.clone(),
            upstream: up,
            client_id: "web",
            client_auth: "client_secret = \"web-secret\"".into(),
            session: session_cfg(&session),
            admin: true,
        }))
        .await;
        let base = format!("http://127.0.0.1:{port}");
        if trusted {
            wait_readyz(&proxy, 200, Duration::from_secs(10)).await;
            let b = Browser::new();
            b.login(&base, "/app", "alice").await;
            let r = b.get(&format!("{base}/app/x")).await;
            assert_eq!(r.status, StatusCode::OK, "{session}: {}", r.body);
        } else {
            // A session cookie (a 256-bit id) must be looked up: the store cannot answer.
            let b = Browser::new();
            b.set_cookie_raw(&format!("127.0.0.1:{port}"), "portcullis", &"A".repeat(43));
            let r = b.get(&format!("{base}/app/x")).await;
            assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.body);
            let (status, body) = readyz(&proxy).await;
            assert_eq!(status, 503, "{body}");
            assert!(body.contains("session:redis"), "{body}");
        }
        proxy.shutdown().await;
    }
}
