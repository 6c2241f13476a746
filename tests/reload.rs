//! Config hot reload: `SIGHUP` to the binary and a change of the file (also a Kubernetes
//! ConfigMap `..data` symlink swap) apply a valid config within 2 s; an invalid one (five kinds)
//! is logged with file:line:col and counted while the old one keeps serving; under continuous
//! load, reloads fail no request and each answer is one config's; sessions and cached bearer
//! tokens survive a reload without the provider being asked again.

mod support;
use support::oidc::{OidcProvider, TestIssuer};
use support::*;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

/// Two valid configs. Both: `/r` (bearer, by the test issuer) and `/x` (none); `A` forwards to
/// the upstream under `/A` and requires role `admin` on `/r`, and has `/only-a`; `B` forwards
/// under `/B`, requires `reader` and has `/only-b` instead. An admin token therefore gets 200
/// `/A/r` from A and 403 from B: an answer mixing both configs (200 `/B/r`) is detectable.
fn config(variant: char, issuer: Option<&str>, up: &str, extra_server: &str) -> String {
    let (role, only) = match variant {
        'A' => ("admin", "only-a"),
        _ => ("reader", "only-b"),
    };
    let provider = issuer.map_or(String::new(), |iss| {
        format!(
            "[providers.ti]\nissuer = \"{iss}\"\naudiences = [\"portcullis-api\"]\nroles_claim = \"roles\"\n\n[[route]]\nname = \"r\"\npath = \"/r\"\nupstream = \"{up}/{variant}\"\nauth = \"bearer\"\nrequire_roles = [\"{role}\"]\n"
        )
    });
    format!(
        r#"[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
{extra_server}
{provider}
[[route]]
name = "x"
path = "/x"
upstream = "{up}/{variant}"
auth = "none"

[[route]]
name = "{only}"
path = "/{only}"
upstream = "{up}/{variant}"
auth = "none"
"#
    )
}

/// Replaces `path` in one step (write aside, rename), as editors and ConfigMaps do.
fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("toml.tmp");
    std::fs::write(&tmp, text).expect("write config");
    std::fs::rename(&tmp, path).expect("rename config");
}

/// The path the upstream saw (`/A/x`), or the status when the proxy answered itself.
async fn judged(addr: SocketAddr, path: &str, token: Option<&str>) -> String {
    let mut req = get(path);
    if let Some(t) = token {
        req.headers_mut()
            .insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    let r = send(addr, req).await;
    if r.status == StatusCode::OK {
        r.echoed().path
    } else {
        r.status.as_u16().to_string()
    }
}

/// Polls until `path` is judged `want`; the time it took. Panics after `limit`.
async fn until_judged(
    addr: SocketAddr,
    path: &str,
    token: Option<&str>,
    want: &str,
    limit: Duration,
) -> Duration {
    let t0 = Instant::now();
    loop {
        let got = judged(addr, path, token).await;
        if got == want {
            return t0.elapsed();
        }
        assert!(
            t0.elapsed() < limit,
            "{path}: still {got} after {limit:?} (want {want})"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn metric(admin: SocketAddr, line_start: &str) -> u64 {
    let text = get_path(admin, "/metrics").await.text();
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {line_start} in metrics:\n{text}"))
}

const RELOAD_OK: &str = "portcullis_config_reloads_total{result=\"ok\"}";
const RELOAD_ERROR: &str = "portcullis_config_reloads_total{result=\"error\"}";

/// A change of the file alone (no signal): a route added is served, a route removed is gone
/// and a role requirement changed applies, each within 2 s of the write; `/readyz` stays 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_change_applies_within_two_seconds() {
    let ti = TestIssuer::start().await;
    let up = echo_upstream().await;
    let a = config('A', Some(&ti.issuer), &up.url(""), "");
    let p = start_proxy(&a).await;
    wait_ready(&p).await;
    let token = ti.sign_rs256(Some("test-rsa"), &ti.claims());
    assert_eq!(judged(p.http(), "/r", Some(&token)).await, "/A/r");
    assert_eq!(judged(p.http(), "/only-a", None).await, "/A/only-a");
    assert_eq!(judged(p.http(), "/only-b", None).await, "404");

    let path = p.dir.path().join("portcullis.toml");
    write_atomically(&path, &config('B', Some(&ti.issuer), &up.url(""), ""));
    let limit = Duration::from_secs(2);
    // role requirement changed: admin no longer passes
    let took = until_judged(p.http(), "/r", Some(&token), "403", limit).await;
    // the rest of the same config, at once
    assert_eq!(
        judged(p.http(), "/only-b", None).await,
        "/B/only-b",
        "added"
    );
    assert_eq!(judged(p.http(), "/only-a", None).await, "404", "removed");
    assert_eq!(judged(p.http(), "/x", None).await, "/B/x");
    eprintln!("B visible after {took:?}");

    // and back
    write_atomically(&path, &a);
    until_judged(p.http(), "/r", Some(&token), "/A/r", limit).await;
    assert_eq!(judged(p.http(), "/only-b", None).await, "404");
    assert_eq!(get_path(p.admin(), "/readyz").await.status, 200);
    assert!(metric(p.admin(), RELOAD_OK).await >= 2);
    assert_eq!(metric(p.admin(), RELOAD_ERROR).await, 0);
    // the provider was not asked for its keys again (its settings did not change)
    assert_eq!(ti.jwks_hits.load(Ordering::SeqCst), 1, "JWKS refetched");
    p.shutdown().await;
}

/// A Kubernetes ConfigMap volume: the config file is a symlink through `..data`, itself a
/// symlink to a timestamped directory that is swapped by renaming a new `..data` over it. The
/// file's own path never changes; the swap counts as a change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configmap_symlink_swap_counts() {
    use std::os::unix::fs::symlink;
    let up = echo_upstream().await;
    let dir = temp_dir();
    let d = dir.path();
    let publish = |name: &str, text: &str| {
        std::fs::create_dir(d.join(name)).unwrap();
        std::fs::write(d.join(name).join("portcullis.toml"), text).unwrap();
        symlink(name, d.join("..data_tmp")).unwrap();
        std::fs::rename(d.join("..data_tmp"), d.join("..data")).unwrap();
    };
    publish("..2024_01_01_v1", &config('A', None, &up.url(""), ""));
    symlink("..data/portcullis.toml", d.join("portcullis.toml")).unwrap();
    let path = d.join("portcullis.toml");
    let cfg = portcullis::config::load(&path, &Default::default()).expect("config loads");
    let running = portcullis::server::start(cfg).await.expect("starts");
    let addr = running.http_addr.unwrap();
    assert_eq!(judged(addr, "/x", None).await, "/A/x");

    publish("..2024_01_01_v2", &config('B', None, &up.url(""), ""));
    until_judged(addr, "/x", None, "/B/x", Duration::from_secs(2)).await;
    assert_eq!(judged(addr, "/only-a", None).await, "404");
    running.shutdown().await;
}

/// The five kinds of invalid config, each as the loader reports it. `(what, config, a text its
/// error names)`.
fn invalid_configs(dir: &Path, valid: &str) -> Vec<(&'static str, String, &'static str)> {
    let ca = TestCa::new();
    let (one, two) = (ca.issue("localhost"), ca.issue("localhost"));
    std::fs::write(dir.join("one.crt"), &one.cert_pem).unwrap();
    std::fs::write(dir.join("two.key"), &two.key_pem).unwrap();
    let with_route_key =
        |k: &str| valid.replacen("auth = \"none\"\n", &format!("auth = \"none\"\n{k}\n"), 1);
    vec![
        (
            "syntax error",
            format!("{valid}\n[[route]\nname = \"broken\"\n"),
            "",
        ),
        ("unknown key", with_route_key("bogus_key = 1"), "bogus_key"),
        (
            "missing env var",
            with_route_key("provider = \"${PORTCULLIS_RELOAD_TEST_UNSET}\""),
            "PORTCULLIS_RELOAD_TEST_UNSET",
        ),
        (
            "bad route",
            valid.replacen("path = \"/x\"", "path = \"x-without-slash\"", 1),
            "path",
        ),
        (
            "mismatched TLS pair",
            valid.replacen(
                "admin_listen = \"127.0.0.1:0\"\n",
                "admin_listen = \"127.0.0.1:0\"\n[server.tls]\nlisten = \"127.0.0.1:0\"\ncert = \"one.crt\"\nkey = \"two.key\"\n",
                1,
            ),
            "two.key",
        ),
    ]
}

/// The real binary: `SIGHUP` applies a changed file (route added and removed, upstream
/// changed) within 2 s; then each of five invalid files is refused: every error logged with
/// `file:line:col`, the error counter goes up, the previous config keeps serving and `/readyz`
/// stays 200. A `SIGHUP` never ends the process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_applies_valid_and_refuses_invalid() {
    let up = echo_upstream().await;
    let dir = temp_dir();
    let path = dir.path().join("portcullis.toml");
    let a = config('A', None, &up.url(""), "");
    let b = config('B', None, &up.url(""), "");
    std::fs::write(&path, &a).unwrap();
    let bin = BinaryProxy::start(&path);
    let (addr, admin) = (bin.http_addr, bin.admin_addr());
    let hup = || {
        let st = std::process::Command::new("kill")
            .args(["-HUP", &bin.pid.to_string()])
            .status()
            .expect("kill");
        assert!(st.success());
    };
    assert_eq!(judged(addr, "/x", None).await, "/A/x");
    // a SIGHUP with nothing changed: reloaded, still serving
    hup();
    bin.wait_log(&["config reloaded"]);
    assert_eq!(judged(addr, "/x", None).await, "/A/x");

    write_atomically(&path, &b);
    hup();
    let took = until_judged(addr, "/x", None, "/B/x", Duration::from_secs(2)).await;
    eprintln!("B visible {took:?} after SIGHUP");
    assert_eq!(judged(addr, "/only-b", None).await, "/B/only-b");
    assert_eq!(judged(addr, "/only-a", None).await, "404");
    bin.wait_log(&["reloading the config", "SIGHUP"]);

    let shown = path.display().to_string();
    for (what, text, names) in invalid_configs(dir.path(), &b) {
        let before = metric(admin, RELOAD_ERROR).await;
        let logged_before = bin.logs.lock().unwrap().len();
        write_atomically(&path, &text);
        hup();
        let t0 = Instant::now();
        while metric(admin, RELOAD_ERROR).await <= before {
            assert!(t0.elapsed() < Duration::from_secs(5), "{what}: not counted");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bin.wait_log_after(logged_before, &["still serving the previous config"]);
        let logs = bin.logs.lock().unwrap()[logged_before..].join("\n");
        let located = logs.lines().any(|l| {
            l.contains("config reload: invalid")
                && l.contains(names)
                && l.split(&format!("{shown}:")).nth(1).is_some_and(|rest| {
                    let mut it = rest.split(':');
                    let line = it.next().and_then(|n| n.parse::<usize>().ok());
                    let col = it.next().and_then(|n| n.parse::<usize>().ok());
                    line.is_some_and(|n| n > 0) && col.is_some_and(|n| n > 0)
                })
        });
        assert!(
            located,
            "{what}: no error with {shown}:line:col naming {names:?}:\n{logs}"
        );
        // the previous (valid) config still serves, readiness unchanged
        assert_eq!(judged(addr, "/x", None).await, "/B/x", "{what}");
        assert_eq!(judged(addr, "/only-b", None).await, "/B/only-b", "{what}");
        assert_eq!(get_path(admin, "/readyz").await.status, 200, "{what}");
    }
    assert!(metric(admin, RELOAD_ERROR).await >= 5);
    assert!(metric(admin, RELOAD_OK).await >= 2);

    // a listener change is not applied: logged as needing a restart
    write_atomically(
        &path,
        &b.replacen(
            "admin_listen = \"127.0.0.1:0\"",
            "admin_listen = \"127.0.0.1:1\"",
            1,
        ),
    );
    hup();
    bin.wait_log(&["[server] admin_listen", "needs a restart"]);
    assert_eq!(get_path(admin, "/readyz").await.status, 200);
}

/// One HTTP/1.1 keep-alive connection: requests on it cross reloads.
struct Conn {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    addr: SocketAddr,
}

impl Conn {
    async fn open(addr: SocketAddr) -> Conn {
        let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("handshake");
        tokio::spawn(conn);
        Conn { sender, addr }
    }

    /// Status and, for a 200, the path the upstream saw. Any transport error fails the test.
    async fn judged(&mut self, path: &str, token: &str) -> String {
        let req = Request::get(path)
            .header("host", self.addr.to_string())
            .header("authorization", format!("Bearer {token}"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let fut = async {
            self.sender.ready().await.expect("connection closed");
            let resp = self.sender.send_request(req).await.expect("request failed");
            let status = resp.status();
            let body = resp.into_body().collect().await.expect("body").to_bytes();
            if status == StatusCode::OK {
                let e: Echoed = serde_json::from_slice(&body).expect("echo");
                e.path
            } else {
                status.as_u16().to_string()
            }
        };
        tokio::time::timeout(STEP, fut).await.expect("timed out")
    }
}

/// Under continuous load (4 clients on keep-alive connections, ~15 s), 20 reloads alternating
/// A and B and 5 invalid ones in between: no request fails or is reset, every answer is
/// exactly one config's (a request to `/r` gets A's upstream and A's role rule, or B's 403 —
/// never A's rule with B's upstream), `/only-a` and `/only-b` agree with it, and right after
/// each reload a new request is judged by the new config.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_under_load_fail_nothing() {
    let ti = TestIssuer::start().await;
    let up = echo_upstream().await;
    let a = config('A', Some(&ti.issuer), &up.url(""), "");
    let b = config('B', Some(&ti.issuer), &up.url(""), "");
    let p = start_proxy(&a).await;
    wait_ready(&p).await;
    let path = p.dir.path().join("portcullis.toml");
    let invalid = invalid_configs(p.dir.path(), &a);
    let token = Arc::new(ti.sign_rs256(Some("test-rsa"), &ti.claims()));

    let stop = Arc::new(AtomicBool::new(false));
    let seen_a = Arc::new(AtomicUsize::new(0));
    let seen_b = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for i in 0..4 {
        let (stop, seen_a, seen_b, token) =
            (stop.clone(), seen_a.clone(), seen_b.clone(), token.clone());
        let addr = p.http();
        clients.push(tokio::spawn(async move {
            let mut conn = Conn::open(addr).await;
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                // a new connection now and then: connections opened under either config
                if n % 50 == 49 {
                    conn = Conn::open(addr).await;
                }
                let (path, a_says, b_says) = match (n + i) % 3 {
                    0 => ("/r", "/A/r", "403"),
                    1 => ("/only-a", "/A/only-a", "404"),
                    _ => ("/only-b", "404", "/B/only-b"),
                };
                let got = conn.judged(path, &token).await;
                if got == a_says {
                    seen_a.fetch_add(1, Ordering::Relaxed);
                } else if got == b_says {
                    seen_b.fetch_add(1, Ordering::Relaxed);
                } else {
                    panic!("{path}: {got} is neither config's answer ({a_says} / {b_says})");
                }
                n += 1;
            }
            n
        }));
    }

    let mut invalid = invalid.into_iter();
    for i in 0..25 {
        tokio::time::sleep(Duration::from_millis(600)).await;
        if i % 5 == 4 {
            let (what, text, _) = invalid.next().unwrap();
            write_atomically(&path, &text);
            assert!(p.reload().await.is_err(), "{what} was accepted");
            continue;
        }
        let (text, want) = if (i - i / 5) % 2 == 0 {
            (&b, "403")
        } else {
            (&a, "/A/r")
        };
        write_atomically(&path, text);
        p.reload().await.expect("valid config reloads");
        // the new rule applies to the next request
        assert_eq!(
            judged(p.http(), "/r", Some(&token)).await,
            want,
            "reload {i}"
        );
    }
    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    for c in clients {
        total += c.await.expect("client task failed");
    }
    let (na, nb) = (
        seen_a.load(Ordering::Relaxed),
        seen_b.load(Ordering::Relaxed),
    );
    eprintln!("{total} requests: {na} judged by A, {nb} by B");
    assert!(na > 0 && nb > 0, "both configs served ({na} A, {nb} B)");
    assert!(metric(p.admin(), RELOAD_OK).await >= 20);
    assert!(metric(p.admin(), RELOAD_ERROR).await >= 5);
    p.shutdown().await;
}

/// A browser session made before a reload still works after it (cookie store), and a bearer
/// token validated before is still accepted — without the provider being asked for discovery
/// or keys again, since its settings did not change. Changing the provider's settings does
/// rebuild it (discovery again): the counter sees provider calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_and_token_caches_survive_a_reload() {
    let op = OidcProvider::start(&[]);
    let up = echo_upstream().await;
    let cfg = |extra_route: &str, scopes: &str| {
        format!(
            r#"[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"

[providers.op]
issuer = "{iss}"
client_id = "web"
client_secret = "web-secret"
audiences = ["portcullis-api"]
scopes = [{scopes}]

[session]
{session}

[[route]]
name = "api"
path = "/api"
upstream = "{up}"
auth = "bearer"
provider = "op"

[[route]]
name = "app"
path = "/app"
upstream = "{up}"
auth = "login"
provider = "op"
{extra_route}
"#,
            iss = op.issuer,
            session = session_cfg(""),
            up = up.url(""),
        )
    };
    let before = cfg("", "\"openid\", \"profile\"");
    let p = start_proxy(&before).await;
    wait_ready(&p).await;

    // alice's session, as a login stores it in the cookie store
    let parsed =
        portcullis::config::load_str(Path::new("t.toml"), &before, Default::default()).unwrap();
    let sessions = portcullis::session::Sessions::new(parsed.session.as_ref().unwrap()).unwrap();
    let set = sessions
        .save(
            &alice_session("op", None),
            None,
            &[],
            portcullis::session::CookieAttrs::PLAIN,
        )
        .await
        .unwrap();
    let cookie = set[0]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let token = op.jwt("api-admin").await;
    let with = |name: &'static str, value: String| {
        let mut r = get("/x");
        r.headers_mut().insert(name, value.parse().unwrap());
        r
    };
    let app = |cookie: &str| {
        let mut r = with("cookie", cookie.to_string());
        *r.uri_mut() = "/app".parse().unwrap();
        r
    };
    let api = |token: &str| {
        let mut r = with("authorization", format!("Bearer {token}"));
        *r.uri_mut() = "/api".parse().unwrap();
        r
    };
    let r = send(p.http(), app(&cookie)).await;
    assert_eq!(r.status, 200, "session before: {}", r.text());
    let r = send(p.http(), api(&token)).await;
    assert_eq!(r.status, 200, "token before: {}", r.text());
    let keys = op.count_settled("GET /jwks", 1).await;
    let discovery = op.count(".well-known/openid-configuration");
    assert!(keys >= 1 && discovery >= 1, "the provider was asked");

    // a route added; the provider and [session] unchanged
    let added = cfg(
        "\n[[route]]\nname = \"new\"\npath = \"/new\"\nupstream = \"UP\"\nauth = \"none\"\n",
        "\"openid\", \"profile\"",
    )
    .replace("\"UP\"", &format!("\"{}\"", up.url("")));
    write_atomically(&p.dir.path().join("portcullis.toml"), &added);
    p.reload().await.expect("reload");
    assert_eq!(send(p.http(), get("/new")).await.status, 200, "new route");
    let r = send(p.http(), app(&cookie)).await;
    assert_eq!(r.status, 200, "session after the reload: {}", r.text());
    assert_eq!(r.echoed().header("x-forwarded-user"), Some("alice"));
    let r = send(p.http(), api(&token)).await;
    assert_eq!(r.status, 200, "token after the reload: {}", r.text());
    assert_eq!(get_path(p.admin(), "/readyz").await.status, 200);
    assert_eq!(
        op.count_settled("GET /jwks", keys).await,
        keys,
        "keys refetched after a reload that did not change the provider"
    );
    assert_eq!(
        op.count(".well-known/openid-configuration"),
        discovery,
        "discovery again after a reload that did not change the provider"
    );

    // the provider's settings changed: it is rebuilt (discovery again); the session stays
    let changed = added.replace("\"openid\", \"profile\"", "\"openid\", \"email\"");
    write_atomically(&p.dir.path().join("portcullis.toml"), &changed);
    p.reload().await.expect("reload");
    assert!(
        op.count_settled(".well-known/openid-configuration", discovery + 1)
            .await
            > discovery,
        "a changed provider is loaded again"
    );
    wait_ready(&p).await;
    let r = send(p.http(), app(&cookie)).await;
    assert_eq!(
        r.status,
        200,
        "session after a provider change: {}",
        r.text()
    );
    let r = send(p.http(), api(&token)).await;
    assert_eq!(r.status, 200, "token after a provider change: {}", r.text());
    p.shutdown().await;
}

/// A session logged out before a reload stays logged out after it. The cookie store cannot take
/// a cookie back: logout puts the session on the process's revocation list. A reload that
/// changes `[session]` while old cookies still open — the documented secret rotation (new
/// `secret`, the old one in `previous_secrets`), or any other `[session]` key — must carry that
/// list over, or a cookie captured before the logout works again after the reload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logged_out_cookie_stays_out_after_session_rotation() {
    let op = OidcProvider::start(&[]);
    let up = echo_upstream().await;
    let old_secret = "a-test-secret-of-at-least-32-bytes-4f0c9e2b7a";
    let cfg = |session: &str| {
        format!(
            r#"[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"

[providers.op]
issuer = "{iss}"
client_id = "web"
client_secret = "web-secret"

[session]
{session}

[[route]]
name = "app"
path = "/app"
upstream = "{up}"
auth = "login"
provider = "op"
"#,
            iss = op.issuer,
            up = up.url(""),
        )
    };
    let before = cfg(&format!("secret = \"{old_secret}\"\n"));
    let p = start_proxy(&before).await;
    wait_ready(&p).await;
    let parsed =
        portcullis::config::load_str(Path::new("t.toml"), &before, Default::default()).unwrap();
    let sessions = portcullis::session::Sessions::new(parsed.session.as_ref().unwrap()).unwrap();
    let set = sessions
        .save(
            &alice_session("op", None),
            None,
            &[],
            portcullis::session::CookieAttrs::PLAIN,
        )
        .await
        .unwrap();
    let cookie = set[0]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let with_cookie = |path: &str| {
        let mut r = get(path);
        r.headers_mut().insert("cookie", cookie.parse().unwrap());
        r.headers_mut()
            .insert("accept", "application/json".parse().unwrap());
        r
    };
    let r = send(p.http(), with_cookie("/app")).await;
    assert_eq!(r.status, 200, "session before the logout: {}", r.text());
    // the user logs out; an attacker kept a copy of the cookie
    let r = send(p.http(), with_cookie("/.auth/logout?rd=/app")).await;
    assert!(
        r.status.is_redirection(),
        "logout: {} {}",
        r.status,
        r.text()
    );
    let r = send(p.http(), with_cookie("/app")).await;
    assert_eq!(
        r.status,
        401,
        "logged-out cookie before the reload: {}",
        r.text()
    );

    let path = p.dir.path().join("portcullis.toml");
    for (what, session) in [
        (
            "secret rotated (old one in previous_secrets)",
            format!(
                "secret = \"another-test-secret-of-32-bytes-9d3e71c0a5b4\"\nprevious_secrets = [\"{old_secret}\"]\n"
            ),
        ),
        (
            "idle_timeout changed",
            format!(
                "secret = \"another-test-secret-of-32-bytes-9d3e71c0a5b4\"\nprevious_secrets = [\"{old_secret}\"]\nidle_timeout = \"2h\"\n"
            ),
        ),
    ] {
        write_atomically(&path, &cfg(&session));
        p.reload().await.expect("reload");
        let r = send(p.http(), with_cookie("/app")).await;
        assert_eq!(
            r.status,
            401,
            "{what}: the logged-out cookie opens a session again: {}",
            r.text()
        );
        assert!(
            r.text().contains("sign") || r.text().contains("session") || r.text().contains("login"),
            "{what}: 401 without a reason: {}",
            r.text()
        );
    }
    // a session that was never logged out still opens under the rotated secret
    let fresh = sessions
        .save(
            &portcullis::session::SessionData {
                id: "y".into(),
                ..alice_session("op", None)
            },
            None,
            &[],
            portcullis::session::CookieAttrs::PLAIN,
        )
        .await
        .unwrap();
    let other = fresh[0]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let mut r = get("/app");
    r.headers_mut().insert("cookie", other.parse().unwrap());
    let r = send(p.http(), r).await;
    assert_eq!(
        r.status,
        200,
        "a live session under previous_secrets: {}",
        r.text()
    );
    // the rotation completed (the old secret dropped): sessions sealed with it end at once
    write_atomically(
        &path,
        &cfg("secret = \"another-test-secret-of-32-bytes-9d3e71c0a5b4\"\n"),
    );
    p.reload().await.expect("reload");
    let mut r = get("/app");
    r.headers_mut().insert("cookie", other.parse().unwrap());
    r.headers_mut()
        .insert("accept", "application/json".parse().unwrap());
    let r = send(p.http(), r).await;
    assert_eq!(r.status, 401, "old secret dropped: {}", r.text());
    p.shutdown().await;
}

/// A login started under one config and completed under another fails closed with a message
/// naming the cause — never a session made with a mix of settings: the pending-login cookie
/// sealed under a `[session] secret` that was replaced (not kept in `previous_secrets`); the
/// provider it started at renamed away; the provider's client changed (the code was issued to
/// the old client). After each, the browser has no session. An unchanged config completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_across_a_reload_fails_closed() {
    let port = free_port();
    let provider = Provider::start(&[port], &[]);
    let upstream = echo_upstream_map().await;
    let opts = |client_id, client_auth: &str, session: &str| {
        proxy_config(&ProxyOpts {
            port,
            issuer: provider.issuer.clone(),
            upstream,
            client_id,
            client_auth: client_auth.to_string(),
            session: session.to_string(),
            admin: true,
        })
    };
    let web = "client_secret = \"web-secret\"";
    let a = opts("web", web, &session_cfg(""));
    let p = start_proxy_ready(&a).await;
    let path = p.dir.path().join("portcullis.toml");
    let base = format!("http://127.0.0.1:{port}");
    let at_callback = |u: &url::Url| u.path() == "/.auth/callback";

    let variants = [
        (
            "session secret replaced",
            opts(
                "web",
                web,
                "secret = \"another-test-secret-of-32-bytes-9d3e71c0a5b4\"\n",
            ),
            "no matching sign-in",
        ),
        (
            "provider renamed",
            a.replace("[providers.op]", "[providers.op2]"),
            "unknown provider",
        ),
        (
            "client changed",
            opts(
                "web-post",
                "client_secret = \"web-post-secret\"\ntoken_endpoint_auth = \"client_secret_post\"",
                &session_cfg(""),
            ),
            "Login could not be completed",
        ),
    ];
    for (what, changed, says) in variants {
        write_atomically(&path, &a);
        p.reload().await.expect("back to A");
        wait_ready(&p).await;
        let b = Browser::new();
        let (r, visited) = b
            .navigate_until(&format!("{base}/hello"), "alice", at_callback)
            .await;
        assert!(
            r.status.is_redirection(),
            "{what}: {visited:?} {}",
            r.status
        );
        let callback = visited.last().unwrap().clone();
        assert!(callback.contains("/.auth/callback?"), "{what}: {visited:?}");

        write_atomically(&path, &changed);
        p.reload().await.expect("valid config");
        wait_ready(&p).await;
        let r = b.get(&callback).await;
        assert!(
            r.status.is_client_error() || r.status.is_server_error(),
            "{what}: the callback under the new config answered {} {}",
            r.status,
            r.body
        );
        assert!(
            r.body.contains(says) && r.body.len() > 20,
            "{what}: {} without a clear reason ({says:?}): {}",
            r.status,
            r.body
        );
        assert!(
            !r.set_cookies()
                .iter()
                .any(|c| c.starts_with("portcullis_session=") && !c.contains("Max-Age=0")),
            "{what}: a session cookie was set: {:?}",
            r.set_cookies()
        );
        let said = r.body.clone();
        // no session: the app asks for a login again
        let r = b.get(&format!("{base}/hello")).await;
        assert_eq!(r.status, 302, "{what}: /hello after the failed callback");
        eprintln!(
            "{what}: refused: {}",
            said.chars().take(300).collect::<String>()
        );
    }
    // unchanged config across a reload: the login completes
    write_atomically(&path, &a);
    p.reload().await.expect("back to A");
    wait_ready(&p).await;
    let b = Browser::new();
    let (_, visited) = b
        .navigate_until(&format!("{base}/hello"), "alice", at_callback)
        .await;
    p.reload().await.expect("same config");
    let r = b.get(visited.last().unwrap()).await;
    assert_eq!(r.status, 302, "callback: {}", r.body);
    let r = b.get(&format!("{base}/hello")).await;
    assert_eq!(r.status, 200, "after login: {}", r.body);
    p.shutdown().await;
}

/// A provider whose security settings change keeps no token validated under the old ones: a
/// token accepted (and cached) before the reload is judged afresh after it — `issuer` moved to
/// another issuer (the old issuer's token: 401), `audiences` changed (401), `roles_claim`
/// changed (the roles it read are gone: 403) — each at the first request after the reload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_provider_keeps_no_cached_token() {
    let (t1, t2) = (TestIssuer::start().await, TestIssuer::start().await);
    let up = echo_upstream().await;
    let cfg = |iss: &str, aud: &str, roles_claim: &str| {
        format!(
            r#"[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"

[providers.ti]
issuer = "{iss}"
audiences = ["{aud}"]
roles_claim = "{roles_claim}"

[[route]]
name = "r"
path = "/r"
upstream = "{up}"
auth = "bearer"
require_roles = ["admin"]
"#,
            up = up.url(""),
        )
    };
    let p = start_proxy(&cfg(&t1.issuer, "portcullis-api", "roles")).await;
    wait_ready(&p).await;
    let path = p.dir.path().join("portcullis.toml");
    let tok1 = t1.sign_rs256(Some("test-rsa"), &t1.claims());
    let tok2 = t2.sign_rs256(Some("test-rsa"), &t2.claims());
    let status = |tok: String| {
        let addr = p.http();
        async move {
            let mut req = get("/r");
            req.headers_mut()
                .insert("authorization", format!("Bearer {tok}").parse().unwrap());
            let r = send(addr, req).await;
            (r.status.as_u16(), r.text())
        }
    };
    assert_eq!(status(tok1.clone()).await.0, 200, "t1's token, cached");
    assert_eq!(status(tok2.clone()).await.0, 401, "t2's token before");

    // issuer moved: t1's cached token is refused at once, t2's accepted once t2 is loaded
    write_atomically(&path, &cfg(&t2.issuer, "portcullis-api", "roles"));
    p.reload().await.expect("reload");
    let (s, body) = status(tok1.clone()).await;
    assert!(
        s == 401 || s == 503,
        "issuer changed: the old issuer's token got {s}: {body}"
    );
    wait_ready(&p).await;
    let (s, body) = status(tok1.clone()).await;
    assert_eq!(s, 401, "issuer changed, provider loaded: {body}");
    assert!(body.contains("iss") || body.contains("token"), "{body}");
    assert_eq!(status(tok2.clone()).await.0, 200, "the new issuer's token");

    // audiences changed
    write_atomically(&path, &cfg(&t2.issuer, "another-api", "roles"));
    p.reload().await.expect("reload");
    wait_ready(&p).await;
    let (s, body) = status(tok2.clone()).await;
    assert_eq!(s, 401, "audiences changed: {body}");
    assert!(body.contains("aud"), "audiences changed: {body}");

    // roles_claim changed: the token's `roles` no longer count
    write_atomically(&path, &cfg(&t2.issuer, "portcullis-api", "roles"));
    p.reload().await.expect("reload");
    wait_ready(&p).await;
    assert_eq!(status(tok2.clone()).await.0, 200);
    write_atomically(&path, &cfg(&t2.issuer, "portcullis-api", "groups"));
    p.reload().await.expect("reload");
    wait_ready(&p).await;
    let (s, body) = status(tok2.clone()).await;
    assert_eq!(s, 403, "roles_claim changed: {body}");
    assert!(body.contains("admin"), "roles_claim changed: {body}");
    p.shutdown().await;
}

/// `[headers] assertion_key_file` rotated by a reload: assertions are signed with the new key
/// at once, and `/.auth/jwks` keeps publishing the previous key beside it (for the lifetime of
/// the assertions it signed), so an upstream verifying an assertion signed just before the
/// reload — or by a request still finishing on the old config — still finds its key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_assertion_key_keeps_the_previous_one_published() {
    let ti = TestIssuer::start().await;
    let up = echo_upstream().await;
    let dir = temp_dir();
    let key_path = dir.path().join("assertion.pem");
    let cfg = format!(
        r#"[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"

[headers]
assertion = "X-Portcullis-Assertion"
assertion_key_file = "{key}"

[providers.ti]
issuer = "{iss}"
audiences = ["portcullis-api"]

[[route]]
name = "x"
path = "/x"
upstream = "{up}"
auth = "bearer"
"#,
        key = key_path.display(),
        iss = ti.issuer,
        up = up.url(""),
    );
    std::fs::write(
        &key_path,
        rcgen::KeyPair::generate().unwrap().serialize_pem(),
    )
    .unwrap();
    let p = start_proxy_in(dir, &cfg).await;
    let kids = || async {
        let r = send(p.http(), get("/.auth/jwks")).await;
        assert_eq!(r.status, 200);
        let v: serde_json::Value = serde_json::from_str(&r.text()).unwrap();
        v["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    let first = kids().await;
    assert_eq!(first.len(), 1, "{first:?}");

    std::fs::write(
        &key_path,
        rcgen::KeyPair::generate().unwrap().serialize_pem(),
    )
    .unwrap();
    p.reload().await.expect("reload");
    let after = kids().await;
    assert_eq!(
        after.len(),
        2,
        "the previous key is no longer published: {after:?}"
    );
    assert!(after.contains(&first[0]), "{after:?}");
    let new_kid = after.iter().find(|k| **k != first[0]).unwrap().clone();
    // what is signed now uses the new key
    wait_ready(&p).await;
    let mut req = get("/x");
    let token = ti.sign_rs256(Some("test-rsa"), &ti.claims());
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let r = send(p.http(), req).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let assertion = r
        .echoed()
        .header("x-portcullis-assertion")
        .unwrap()
        .to_string();
    let header = assertion.split('.').next().unwrap();
    let header: serde_json::Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, header).unwrap(),
    )
    .unwrap();
    assert_eq!(header["kid"], new_kid.as_str());

    // reloading the same key again publishes nothing more
    p.reload().await.expect("reload");
    assert_eq!(kids().await.len(), 2);
    p.shutdown().await;
}

/// `[server] header_read_timeout` is applied by a reload to new connections of every listener,
/// the admin listener included (it was read once at start there): a half-sent head on either
/// gets `408` after the new, shorter timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_read_timeout_reload_reaches_the_admin_listener() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let up = echo_upstream().await;
    let p = start_proxy(&config(
        'A',
        None,
        &up.url(""),
        "header_read_timeout = \"30s\"",
    ))
    .await;
    write_atomically(
        &p.dir.path().join("portcullis.toml"),
        &config('A', None, &up.url(""), "header_read_timeout = \"1s\""),
    );
    p.reload().await.expect("reload");
    for (name, addr) in [("public", p.http()), ("admin", p.admin())] {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        let t0 = Instant::now();
        let mut buf = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
        let took = t0.elapsed();
        let text = String::from_utf8_lossy(&buf);
        assert!(
            read.is_ok() && took < Duration::from_secs(5),
            "{name}: the half-sent head still open after {took:?} (the old 30 s timeout)"
        );
        assert!(text.starts_with("HTTP/1.1 408"), "{name}: {text}");
    }
    p.shutdown().await;
}

/// The watcher finds the config file gone for good — a symlink swapped to a missing target, or
/// the file removed — and does not stay silent: after a few looks it reports it once (logged,
/// `portcullis_config_reloads_total{result="error"}`), the old config keeps serving and
/// `/readyz` stays 200; once the file is back it is loaded again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watcher_reports_a_config_file_that_stays_missing() {
    use std::os::unix::fs::symlink;
    let up = echo_upstream().await;
    let dir = temp_dir();
    let d = dir.path();
    std::fs::write(d.join("a.toml"), config('A', None, &up.url(""), "")).unwrap();
    symlink("a.toml", d.join("portcullis.toml")).unwrap();
    let bin = BinaryProxy::start(&d.join("portcullis.toml"));
    let (addr, admin) = (bin.http_addr, bin.admin_addr());
    assert_eq!(judged(addr, "/x", None).await, "/A/x");
    let before = metric(admin, RELOAD_ERROR).await;

    // swapped to a target that does not exist
    symlink("missing.toml", d.join("tmp-link")).unwrap();
    std::fs::rename(d.join("tmp-link"), d.join("portcullis.toml")).unwrap();
    let t0 = Instant::now();
    while metric(admin, RELOAD_ERROR).await <= before {
        assert!(
            t0.elapsed() < Duration::from_secs(8),
            "a missing config file was never reported"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bin.wait_log(&["still serving the previous config"]);
    bin.wait_log(&["config reload: invalid", "portcullis.toml"]);
    assert_eq!(judged(addr, "/x", None).await, "/A/x");
    assert_eq!(get_path(admin, "/readyz").await.status, 200);
    // reported once, not every second
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(metric(admin, RELOAD_ERROR).await, before + 1);

    // back, with B
    std::fs::write(d.join("missing.toml"), config('B', None, &up.url(""), "")).unwrap();
    until_judged(addr, "/x", None, "/B/x", Duration::from_secs(3)).await;
}

/// A session's roles were derived by its provider's rule at login (`roles_claim`, with the
/// `client_id`/`project_id` the well-known places use). A reload that changes that rule ends the
/// session's standing — its roles are not the new config's judgement: the next navigation
/// starts a login. A provider change that leaves the rule alone (`scopes`) keeps it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_roles_from_a_replaced_roles_rule_do_not_count() {
    let port = free_port();
    let provider = Provider::start(&[port], &[]);
    let upstream = echo_upstream_map().await;
    let a = proxy_config(&ProxyOpts {
        port,
        issuer: provider.issuer.clone(),
        upstream,
        client_id: "web",
        client_auth: "client_secret = \"web-secret\"".into(),
        session: session_cfg(""),
        admin: true,
    });
    let p = start_proxy_ready(&a).await;
    let path = p.dir.path().join("portcullis.toml");
    let base = format!("http://127.0.0.1:{port}");
    let b = Browser::new();
    b.login(&base, "/hello", "alice").await;
    assert_eq!(b.get(&format!("{base}/hello")).await.status, 200);

    // scopes changed: the provider is rebuilt, the roles rule is the same: still signed in
    let scopes = a.replace(
        "scopes = [\"openid\", \"profile\", \"email\"]",
        "scopes = [\"openid\", \"profile\"]",
    );
    assert_ne!(scopes, a);
    write_atomically(&path, &scopes);
    p.reload().await.expect("reload");
    wait_ready(&p).await;
    let r = b.get(&format!("{base}/hello")).await;
    assert_eq!(r.status, 200, "scopes changed: {}", r.body);

    // roles_claim changed: the session's roles came from the old rule
    let rule = scopes.replace(
        "scopes = [\"openid\", \"profile\"]",
        "scopes = [\"openid\", \"profile\"]\nroles_claim = \"groups\"",
    );
    write_atomically(&path, &rule);
    p.reload().await.expect("reload");
    wait_ready(&p).await;
    let r = b.get(&format!("{base}/hello")).await;
    assert_eq!(
        r.status, 302,
        "roles_claim changed: the old session still counts: {}",
        r.body
    );
    assert!(r.location().contains("/auth"), "{}", r.location());
    // a new login under the new rule counts again
    b.login(&base, "/hello", "alice").await;
    assert_eq!(b.get(&format!("{base}/hello")).await.status, 200);
    p.shutdown().await;
}
