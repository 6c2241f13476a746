//! Encoded-separator traversal (issue 9 item 1), over real sockets: a `.`/`..` segment that only
//! exists once an upstream decodes `%2F`/`%5C`, cuts at `;`/`%3B` or decodes twice must never
//! get the permissive route's decision.
//!
//! - Proxy mode, the README quickstart's route shape (`/healthz` none, `/admin` login + role,
//!   `/` login) in front of a real `python3 -m http.server` — which decodes `%2F` and resolves
//!   `..` (`posixpath.normpath`) — serving `admin/secret.txt`: every variant answers 400 with a
//!   JSON message naming the problem, and the secret never comes back.
//! - Forward-auth behind a real nginx whose config is the `auth_request` snippet of
//!   `docs/forward-auth.md`, read from the file: nginx decodes `/public/..%2Fapi2/x` to
//!   `/api2/x` and passes the raw URI to the upstream, so the check must not answer 200 for
//!   route `public`.
//!
//! - Forward-auth's original method and host (review of issue 9): `X-Original-Method` is read
//!   (ingress-nginx, and the doc's snippet), a check without a method header judges the method
//!   as unknown, and a client's extra `X-Forwarded-Method`/`X-Forwarded-Host` that disagrees or
//!   repeats is a 400 — directly, behind nginx in the ingress-nginx `auth-url` shape, and behind
//!   the doc's snippet, whose default server refuses a client's `Host: pub.example`.
//!
//! Requests go out with [`raw_http`] so that no client normalizes them first.

mod support;
use support::oidc;
use support::*;

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oidc::TestIssuer;
use serde_json::{Value, json};

/// Waits (≤ 10 s) until `addr` accepts connections; panics with `what` otherwise.
fn wait_listening(addr: SocketAddr, child: &mut ChildGuard, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.0.try_wait() {
            panic!("{what} exited early: {status}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what} did not listen on {addr} within 10 s");
}

const SECRET: &str = "TOP-SECRET-d41d8cd98f00b204";

/// `python3 -m http.server` on loopback serving `dir`.
fn python_http_server(dir: &Path) -> (ChildGuard, SocketAddr) {
    let port = free_port();
    let child = Command::new("python3")
        .args([
            "-m",
            "http.server",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
        ])
        .arg("--directory")
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn python3 -m http.server");
    let mut guard = ChildGuard(child);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    wait_listening(addr, &mut guard, "python3 -m http.server");
    (guard, addr)
}

/// The directory the python upstream serves: `healthz`, `admin/secret.txt`, `files/a/b`.
fn upstream_files() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let p = dir.path();
    std::fs::create_dir_all(p.join("admin")).expect("mkdir admin");
    std::fs::create_dir_all(p.join("files/a")).expect("mkdir files/a");
    std::fs::write(p.join("admin/secret.txt"), SECRET).expect("write secret");
    std::fs::write(p.join("healthz"), "ok").expect("write healthz");
    std::fs::write(p.join("files/a/b"), "file a/b").expect("write files/a/b");
    dir
}

/// The README quickstart's routes (plus an open `/files`), a login provider and sessions.
fn quickstart_config(issuer: &str, upstream: SocketAddr) -> String {
    let up = format!("http://{upstream}");
    format!(
        r#"[server]
listen = "127.0.0.1:0"

[providers.op]
issuer = "{issuer}"
client_id = "web"
client_secret = "web-secret"

[session]
secret = "Qm9vdHN0cmFwLXBhdGhzLXRlc3Qtc2VjcmV0LXZhbHVlLTQy"

[[route]]
name = "health"
path = "/healthz"
upstream = "{up}"
auth = "none"

[[route]]
name = "files"
path = "/files"
upstream = "{up}"
auth = "none"

[[route]]
name = "admin"
path = "/admin"
upstream = "{up}"
auth = "login"
require_roles = ["admin"]

[[route]]
name = "app"
path = "/"
upstream = "{up}"
auth = "login"
"#
    )
}

/// Request targets that reach `admin/secret.txt` through the open `/healthz` route once an
/// upstream decodes, cuts or decodes twice — each with a word its 400 message must contain.
const TRAVERSALS: &[(&str, &str)] = &[
    ("/healthz/..%2Fadmin/secret.txt", "hidden"),
    ("/healthz/..%2fadmin/secret.txt", "hidden"),
    ("/healthz/%2e%2e%2fadmin/secret.txt", "hidden"),
    ("/healthz/%2E%2E%2Fadmin/secret.txt", "hidden"),
    ("/healthz/.%2e%2Fadmin/secret.txt", "hidden"),
    ("/healthz/%2E.%2fadmin/secret.txt", "hidden"),
    ("/healthz%2f..%2fadmin/secret.txt", "hidden"),
    ("/healthz%2F..%2Fadmin/secret.txt", "hidden"),
    ("/healthz%2F%2e%2e%2Fadmin/secret.txt", "hidden"),
    ("/healthz/..%5Cadmin/secret.txt", "hidden"),
    ("/healthz/..%5cadmin/secret.txt", "hidden"),
    ("/healthz/%2e%2e%5cadmin/secret.txt", "hidden"),
    ("/healthz/..%3B/admin/secret.txt", "hidden"),
    ("/healthz/..%3b/admin/secret.txt", "hidden"),
    ("/healthz/..%3Bx/admin/secret.txt", "hidden"),
    ("/healthz/..;/admin/secret.txt", "hidden"),
    ("/healthz/..;x/admin/secret.txt", "hidden"),
    ("/healthz/..;jsessionid=x/admin/secret.txt", "hidden"),
    ("/healthz/%2e%2e;/admin/secret.txt", "hidden"),
    ("/healthz/.%2F..%2Fadmin/secret.txt", "hidden"),
    ("/healthz/x/..%2F..%2Fadmin/secret.txt", "hidden"),
    ("/healthz/x%2F..%2F..%2Fadmin/secret.txt", "hidden"),
    ("/healthz/..%2F", "hidden"),
    ("/healthz%2F..", "hidden"),
    ("/healthz/..%20/admin/secret.txt", "hidden"),
    ("/healthz/..%2Fadmin/secret.txt?x=1", "hidden"),
    // look-alikes that NFKC / Windows "best fit" turn into `../`
    (
        "/healthz/%EF%BC%8E%EF%BC%8E%EF%BC%8Fadmin/secret.txt",
        "hidden",
    ),
    ("/healthz/..%E2%88%95admin/secret.txt", "hidden"),
    // `..` removing a segment that a decoding upstream counts as two
    (
        "/healthz/x%2Fy/../../admin/secret.txt",
        "would remove a segment",
    ),
    (
        "/healthz/x//../../admin/secret.txt",
        "would remove a segment",
    ),
    // parameters then an encoded separator: Tomcat cuts it away, others split at it
    ("/healthz;x%2F..%2Fadmin/secret.txt", "parameters"),
    // decoded twice
    ("/healthz/%252e%252e%252fadmin/secret.txt", "double-encoded"),
    ("/healthz/..%252Fadmin/secret.txt", "double-encoded"),
    ("/healthz%252F..%252Fadmin/secret.txt", "double-encoded"),
    (
        "/healthz/%25c0%25ae%25c0%25ae%252fadmin/secret.txt",
        "double-encoded",
    ),
    // overlong UTF-8, NUL and control characters
    ("/healthz/%c0%ae%c0%ae%2fadmin/secret.txt", "UTF-8"),
    ("/healthz/%c0%ae%c0%ae/admin/secret.txt", "UTF-8"),
    ("/healthz/..%00/admin/secret.txt", "NUL"),
    ("/healthz/..%09%2Fadmin/secret.txt", "control character"),
    ("/healthz/..%0d%0a/admin/secret.txt", "control character"),
];

/// Asserts a 400 from the proxy with `{"error": "invalid_path", "message": …word…}`.
#[track_caller]
fn assert_refused(resp: &str, target: &str, word: &str) {
    assert_eq!(raw_status(resp), 400, "{target}:\n{resp}");
    assert!(!resp.contains(SECRET), "{target}: the secret came back");
    let body: Value = serde_json::from_str(raw_body(resp).trim())
        .unwrap_or_else(|e| panic!("{target}: no JSON body ({e}):\n{resp}"));
    assert_eq!(body["error"], "invalid_path", "{target}: {body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(word),
        "{target}: message {message:?} lacks {word:?}"
    );
}

/// Attack: `curl --path-as-is 'http://…/healthz/..%2Fadmin/secret.txt'` and every other
/// spelling of it reached the admin file through the open health route.
#[tokio::test]
async fn proxy_refuses_encoded_traversal_in_front_of_python_http_server() {
    let files = upstream_files();
    let (_python, up) = python_http_server(files.path());
    let ti = TestIssuer::start().await;
    let proxy = start_proxy(&quickstart_config(&ti.issuer, up)).await;
    let addr = proxy.http();
    let host = addr.to_string();

    // The upstream alone serves the secret for the first variant: the attack is real.
    let direct = raw_get(up, "/healthz/..%2Fadmin/secret.txt", &host, "").await;
    assert!(
        direct.contains(SECRET),
        "python did not resolve it:\n{direct}"
    );

    for (target, word) in TRAVERSALS {
        let resp = raw_get(addr, target, &host, "").await;
        assert_refused(&resp, target, word);
    }

    // A raw backslash: refused (by hyper's request-line parser or by the proxy), never served.
    let resp = raw_get(addr, "/healthz/..\\admin/secret.txt", &host, "").await;
    assert_eq!(raw_status(&resp), 400, "{resp}");
    assert!(!resp.contains(SECRET));

    // Legitimate paths still pass: the open route, an encoded slash inside a name (python
    // decodes it to files/a/b), and a query that merely looks like a traversal.
    let resp = raw_get(addr, "/healthz", &host, "").await;
    assert_eq!(raw_status(&resp), 200, "{resp}");
    assert_eq!(raw_body(&resp), "ok");
    let resp = raw_get(addr, "/files/a%2Fb", &host, "").await;
    assert_eq!(raw_status(&resp), 200, "{resp}");
    assert_eq!(raw_body(&resp), "file a/b");
    let resp = raw_get(addr, "/healthz?next=/..%2Fadmin/secret.txt", &host, "").await;
    assert_eq!(raw_status(&resp), 200, "{resp}");
    // The admin file itself needs a login, also when reached by standard dot segments (raw or
    // percent-encoded dots between raw slashes): those are resolved before matching, as every
    // reading resolves them, so the admin route judges them.
    for target in [
        "/admin/secret.txt",
        "/healthz/../admin/secret.txt",
        "/healthz/%2e%2e/admin/secret.txt",
        "/healthz/.%2E/admin/secret.txt",
        "/healthz/x/../../admin/secret.txt",
    ] {
        let resp = raw_get(addr, target, &host, "").await;
        assert_eq!(raw_status(&resp), 401, "{target}: {resp}");
        assert!(!resp.contains(SECRET));
    }
    // `;` parameters written as `%3B` get the admin route's checks too.
    let resp = raw_get(addr, "/admin%3Bx/secret.txt", &host, "").await;
    assert_eq!(raw_status(&resp), 401, "{resp}");
    proxy.shutdown().await;
}

/// The nginx snippet of `docs/forward-auth.md` (the first ```nginx block), with its example
/// ports replaced.
fn doc_nginx_snippet(check: SocketAddr, upstream: SocketAddr) -> String {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/forward-auth.md"))
            .expect("read docs/forward-auth.md");
    let start = doc.find("```nginx\n").expect("an nginx block in the doc") + "```nginx\n".len();
    let len = doc[start..].find("```").expect("end of the nginx block");
    let snippet = &doc[start..start + len];
    assert!(snippet.contains("127.0.0.1:4181") && snippet.contains("127.0.0.1:8000"));
    snippet
        .replace("127.0.0.1:4181", &check.to_string())
        .replace("127.0.0.1:8000", &upstream.to_string())
}

/// nginx on a loopback port with `servers` (whole `server {}` blocks) in its `http {}`; every
/// `listen 80` becomes the loopback port; foreground, one process, everything under a temp
/// prefix; killed on drop.
struct Nginx {
    _child: ChildGuard,
    _dir: tempfile::TempDir,
    addr: SocketAddr,
}

fn start_nginx(servers: &str) -> Nginx {
    let dir = tempfile::tempdir().expect("temp dir");
    let p = dir.path().display().to_string();
    let port = free_port();
    std::fs::create_dir_all(dir.path().join("tmp")).expect("mkdir tmp");
    let servers: String = servers
        .lines()
        .map(|line| {
            if line.trim_start().starts_with("listen") {
                line.replacen(" 80", &format!(" 127.0.0.1:{port}"), 1)
            } else {
                line.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert!(servers.contains(&format!("127.0.0.1:{port}")), "{servers}");
    let conf = format!(
        r#"daemon off;
master_process off;
worker_processes 1;
pid {p}/nginx.pid;
error_log {p}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {p}/tmp/body;
    proxy_temp_path {p}/tmp/proxy;
    fastcgi_temp_path {p}/tmp/fastcgi;
    uwsgi_temp_path {p}/tmp/uwsgi;
    scgi_temp_path {p}/tmp/scgi;
{servers}
}}
"#
    );
    let conf_path = dir.path().join("nginx.conf");
    std::fs::write(&conf_path, conf).expect("write nginx.conf");
    let child = Command::new("nginx")
        .arg("-p")
        .arg(dir.path())
        .arg("-e")
        .arg(dir.path().join("error.log"))
        .arg("-c")
        .arg(&conf_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn nginx");
    let mut guard = ChildGuard(child);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    wait_listening(addr, &mut guard, "nginx");
    Nginx {
        _child: guard,
        _dir: dir,
        addr,
    }
}

/// Portcullis as the decision point: `public` open, `api2` for bearer tokens of `ti`.
fn forward_auth_config(ti: &TestIssuer, upstream: SocketAddr) -> String {
    let up = format!("http://{upstream}");
    format!(
        r#"[server]
listen = "127.0.0.1:0"
trusted_proxies = ["127.0.0.1/32"]

[providers.ti]
issuer = "{issuer}"
audiences = ["portcullis-api"]

[[route]]
name = "public"
path = "/public"
upstream = "{up}"
auth = "none"

[[route]]
name = "api2"
path = "/api2"
upstream = "{up}"
auth = "bearer"
"#,
        issuer = ti.issuer
    )
}

/// Originals that nginx resolves to `/api2/…` (or the upstream will) while naming `/public`.
const FORWARD_TRAVERSALS: &[&str] = &[
    "/public/..%2Fapi2/x",
    "/public/..%2fapi2/x",
    "/public/%2e%2e%2fapi2/x",
    "/public/%2E%2E%2Fapi2/x",
    "/public/.%2e%2Fapi2/x",
    "/public%2F..%2Fapi2/x",
    "/public%2f%2e%2e%2fapi2/x",
    "/public/..%5Capi2/x",
    "/public/%2e%2e%5capi2/x",
    "/public/..;/api2/x",
    "/public/..;x/api2/x",
    "/public/..%3B/api2/x",
    "/public/..%3bx/api2/x",
    "/public/x/..%2F..%2Fapi2/x",
    "/public/%252e%252e%252fapi2/x",
    "/public/..%252Fapi2/x",
    "/public/x%2Fy/../../api2/x",
    "/public;x%2F..%2Fapi2/x",
];

/// Attack: behind nginx with the documented `auth_request` snippet, `/public/..%2Fapi2/x` was
/// judged as route `public` (200, no identity) while nginx served `/api2/x`. Also a client's own
/// `X-Forwarded-Uri`, which nginx passes on to the check next to its `X-Original-URI`.
#[tokio::test]
async fn forward_auth_behind_nginx_refuses_encoded_traversal() {
    let ti = TestIssuer::start().await;
    let up = echo_upstream().await;
    let proxy = start_proxy(&forward_auth_config(&ti, up.addr)).await;
    let nginx = start_nginx(&doc_nginx_snippet(proxy.http(), up.addr));
    let host = "app.example.com";
    let served = |resp: &str| resp.contains("x-echo: 1") || resp.contains("\"path\"");

    // Baseline through nginx: public passes, api2 needs a token, a valid token passes with
    // the identity nginx copies from the check.
    let resp = raw_get(nginx.addr, "/public/x", host, "").await;
    assert_eq!(raw_status(&resp), 200, "{resp}");
    assert!(served(&resp), "{resp}");
    let resp = raw_get(nginx.addr, "/api2/x", host, "").await;
    assert_eq!(raw_status(&resp), 401, "{resp}");
    assert!(!served(&resp), "{resp}");
    let token = ti.sign_rs256(
        Some("test-rsa"),
        &json!({"iss": ti.issuer, "aud": "portcullis-api", "sub": "alice",
                "iat": now(), "exp": now() + 300}),
    );
    let resp = raw_get(
        nginx.addr,
        "/api2/x",
        host,
        &format!("Authorization: Bearer {token}\r\n"),
    )
    .await;
    assert_eq!(raw_status(&resp), 200, "{resp}");
    assert_eq!(
        support::raw_echoed(&resp).header("x-forwarded-user"),
        Some("alice")
    );

    for target in FORWARD_TRAVERSALS {
        let resp = raw_get(nginx.addr, target, host, "").await;
        let status = raw_status(&resp);
        assert!(
            status >= 400 && !served(&resp),
            "{target}: nginx served it ({status}):\n{resp}"
        );
    }

    // A client's own X-Forwarded-Uri naming the open route, on a request for api2.
    for forged in [
        "X-Forwarded-Uri: /public/x\r\n",
        "X-Original-URL: http://h/public/x\r\n",
    ] {
        let resp = raw_get(nginx.addr, "/api2/x", host, forged).await;
        let status = raw_status(&resp);
        assert!(
            status >= 400 && !served(&resp),
            "{forged:?}: nginx served it ({status}):\n{resp}"
        );
    }

    // The encoded slash inside a name still passes (nginx forwards the raw URI).
    let resp = raw_get(nginx.addr, "/public/a%2Fb", host, "").await;
    assert_eq!(raw_status(&resp), 200, "{resp}");
    assert_eq!(support::raw_echoed(&resp).path, "/public/a%2Fb");
    proxy.shutdown().await;
}

/// The check itself, asked by a trusted proxy with a forged or hostile original URI: 400 with
/// the reason, never 200; several original-URI headers that disagree: 400.
#[tokio::test]
async fn check_refuses_ambiguous_original_uris() {
    let ti = TestIssuer::start().await;
    let up = echo_upstream().await;
    let proxy = start_proxy(&forward_auth_config(&ti, up.addr)).await;
    let addr = proxy.http();
    let host = addr.to_string();
    let check = |headers: String| {
        let host = host.clone();
        async move { raw_get(addr, "/.auth/check", &host, &headers).await }
    };

    for target in FORWARD_TRAVERSALS {
        for header in ["X-Forwarded-Uri", "X-Original-URI"] {
            let resp = check(format!("{header}: {target}\r\n")).await;
            assert_eq!(raw_status(&resp), 400, "{header}: {target}:\n{resp}");
            let body: Value = serde_json::from_str(raw_body(&resp).trim())
                .unwrap_or_else(|e| panic!("{target}: no JSON ({e}):\n{resp}"));
            assert_eq!(body["error"], "invalid_path", "{target}: {body}");
        }
        let resp = check(format!("X-Original-URL: http://h{target}\r\n")).await;
        assert_eq!(raw_status(&resp), 400, "X-Original-URL: {target}:\n{resp}");
    }
    // a raw backslash, a NUL or a control character in the header: refused, never judged as public
    for target in [
        "/public/..\\api2/x",
        "/public/..%00/api2/x",
        "/public/..%0a/api2/x",
    ] {
        let resp = check(format!("X-Forwarded-Uri: {target}\r\n")).await;
        assert_eq!(raw_status(&resp), 400, "{target}:\n{resp}");
    }
    // the same path, legitimately spelled, is judged
    let resp = check("X-Forwarded-Uri: /public/x\r\n".into()).await;
    assert_eq!(raw_status(&resp), 200, "{resp}");
    let resp = check("X-Original-URI: /api2/x\r\n".into()).await;
    assert_eq!(raw_status(&resp), 401, "{resp}");
    let resp = check("X-Original-URI: /public/a%2Fb?next=/..%2Fapi2/x\r\n".into()).await;
    assert_eq!(raw_status(&resp), 200, "{resp}");

    // headers that disagree: the client's X-Forwarded-Uri next to nginx's X-Original-URI
    for headers in [
        "X-Original-URI: /api2/x\r\nX-Forwarded-Uri: /public/x\r\n",
        "X-Forwarded-Uri: /public/x\r\nX-Original-URI: /api2/x\r\n",
        "X-Original-URI: /api2/x\r\nX-Original-URL: http://h/public/x\r\n",
        "X-Forwarded-Uri: /public/x\r\nX-Forwarded-Uri: /api2/x\r\n",
    ] {
        let resp = check(headers.into()).await;
        assert_eq!(raw_status(&resp), 400, "{headers:?}:\n{resp}");
        let body: Value = serde_json::from_str(raw_body(&resp).trim())
            .unwrap_or_else(|e| panic!("{headers:?}: no JSON ({e}):\n{resp}"));
        let message = body["message"].as_str().unwrap_or_default();
        assert!(message.contains("name different requests"), "{body}");
    }
    // the same URI twice is one request
    let resp = check("X-Original-URI: /public/x\r\nX-Forwarded-Uri: /public/x\r\n".into()).await;
    assert_eq!(raw_status(&resp), 200, "{resp}");
    proxy.shutdown().await;
}

/// Forward-auth with a method-restricted open route: `pub` (host `pub.example`, open), `ro`
/// (`/m`, GET/HEAD only, open) and `app` (everything else, login).
fn method_config(issuer: &str, upstream: SocketAddr) -> String {
    let up = format!("http://{upstream}");
    format!(
        r#"[server]
listen = "127.0.0.1:0"
trusted_proxies = ["127.0.0.1/32"]

[providers.op]
issuer = "{issuer}"
client_id = "web"
client_secret = "web-secret"

[session]
secret = "Qm9vdHN0cmFwLXBhdGhzLXRlc3Qtc2VjcmV0LXZhbHVlLTQy"

[[route]]
name = "pub"
host = "pub.example"
path = "/"
upstream = "{up}"
auth = "none"

[[route]]
name = "ro"
path = "/m"
methods = ["GET", "HEAD"]
upstream = "{up}"
auth = "none"

[[route]]
name = "app"
path = "/"
upstream = "{up}"
auth = "login"
"#
    )
}

/// Asserts a 400 from the check with a JSON message containing `word`.
#[track_caller]
fn assert_bad_request(resp: &str, what: &str, word: &str) {
    assert_eq!(raw_status(resp), 400, "{what}:\n{resp}");
    let body: Value = serde_json::from_str(raw_body(resp).trim())
        .unwrap_or_else(|e| panic!("{what}: no JSON body ({e}):\n{resp}"));
    let message = body["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(word),
        "{what}: message {message:?} lacks {word:?}"
    );
}

/// Attack: `/.auth/check` ignored `X-Original-Method` and judged a check without a method
/// header by its own method (nginx subrequests are GET), so `DELETE /m/x` got the GET-only open
/// route. Now the method comes from `X-Forwarded-Method` / `X-Original-Method` or is unknown,
/// and a client's extra copy that disagrees is a 400.
#[tokio::test]
async fn check_reads_the_original_method_and_refuses_ambiguous_ones() {
    let ti = TestIssuer::start().await;
    let up = echo_upstream().await;
    let proxy = start_proxy(&method_config(&ti.issuer, up.addr)).await;
    let addr = proxy.http();
    let host = addr.to_string();
    let check = |headers: &str| {
        let host = host.clone();
        let headers = format!("X-Original-URI: /m/x\r\n{headers}");
        async move { raw_get(addr, "/.auth/check", &host, &headers).await }
    };

    // no method header: unknown, so `ro` (methods = GET, HEAD) does not match; `app` judges
    let resp = check("").await;
    assert_eq!(raw_status(&resp), 401, "no method header:\n{resp}");
    for (headers, status) in [
        ("X-Original-Method: DELETE\r\n", 401),
        ("X-Original-Method: POST\r\n", 401),
        ("X-Forwarded-Method: POST\r\n", 401),
        ("X-Original-Method: GET\r\n", 200),
        ("X-Forwarded-Method: HEAD\r\n", 200),
        ("X-Forwarded-Method: GET\r\nX-Original-Method: GET\r\n", 200),
    ] {
        let resp = check(headers).await;
        assert_eq!(raw_status(&resp), status, "{headers:?}:\n{resp}");
    }
    // the ingress-nginx shape plus the client's own X-Forwarded-Method, either order
    for headers in [
        "X-Original-Method: POST\r\nX-Forwarded-Method: GET\r\n",
        "X-Forwarded-Method: GET\r\nX-Original-Method: POST\r\n",
    ] {
        let resp = check(headers).await;
        assert_bad_request(&resp, headers, "different methods");
    }
    for headers in [
        "X-Original-Method: GET\r\nX-Original-Method: GET\r\n",
        "X-Forwarded-Method: GET\r\nX-Forwarded-Method: POST\r\n",
    ] {
        let resp = check(headers).await;
        assert_bad_request(&resp, headers, "more than one");
    }
    // methods are case-sensitive tokens: `get`/`Post` are not GET/POST, yet many upstreams
    // upper-case them (Caddy, written in Go, passes a client's `delete` on as is)
    for headers in [
        "X-Original-Method: get\r\n",
        "X-Forwarded-Method: delete\r\n",
        "X-Forwarded-Method: Post\r\n",
    ] {
        let resp = check(headers).await;
        assert_bad_request(&resp, headers, "lower-case");
    }
    for headers in [
        "X-Original-Method: GET, POST\r\n",
        "X-Forwarded-Method: G(T\r\n",
        "X-Original-Method: \r\n",
    ] {
        let resp = check(headers).await;
        assert_bad_request(&resp, headers, "not an HTTP method");
    }
    proxy.shutdown().await;
}

/// Attack: with two `X-Forwarded-Host` headers the first won, so a client's copy ahead of the
/// front proxy's picked the open `pub.example` host route; ingress-nginx names the host only in
/// `X-Original-URL`, next to which a client's `X-Forwarded-Host` was believed.
#[tokio::test]
async fn check_refuses_duplicate_or_disagreeing_forwarded_host() {
    let ti = TestIssuer::start().await;
    let up = echo_upstream().await;
    let proxy = start_proxy(&method_config(&ti.issuer, up.addr)).await;
    let addr = proxy.http();
    let host = addr.to_string();
    // one value names the host; two copies, a list, or a host that differs from X-Original-URL's
    // is refused (first-wins would let the client's copy pick `pub`)
    let host_check = |headers: &'static str| {
        let host = host.clone();
        async move { raw_get(addr, "/.auth/check", &host, headers).await }
    };
    let resp = host_check("X-Original-URI: /admin\r\nX-Forwarded-Host: pub.example\r\n").await;
    assert_eq!(raw_status(&resp), 200, "{resp}");
    let resp = host_check("X-Original-URI: /admin\r\nX-Forwarded-Host: app.example\r\n").await;
    assert_eq!(raw_status(&resp), 401, "{resp}");
    let resp = host_check("X-Original-URL: http://pub.example/admin\r\n").await;
    assert_eq!(raw_status(&resp), 200, "{resp}");
    let resp = host_check("X-Original-URL: HTTPS://Pub.Example/admin\r\n").await;
    assert_eq!(raw_status(&resp), 200, "{resp}");
    let resp = host_check("X-Original-URL: https://app.example:8443/admin\r\n").await;
    assert_eq!(raw_status(&resp), 401, "{resp}");
    for (headers, word) in [
        (
            "X-Original-URI: /admin\r\nX-Forwarded-Host: pub.example\r\nX-Forwarded-Host: app.example\r\n",
            "more than one X-Forwarded-Host",
        ),
        (
            "X-Original-URI: /admin\r\nX-Forwarded-Host: app.example\r\nX-Forwarded-Host: pub.example\r\n",
            "more than one X-Forwarded-Host",
        ),
        (
            "X-Original-URI: /admin\r\nX-Forwarded-Host: pub.example, app.example\r\n",
            "lists several hosts",
        ),
        (
            "X-Original-URL: http://app.example/admin\r\nX-Forwarded-Host: pub.example\r\n",
            "different hosts",
        ),
        (
            "X-Original-URI: /admin\r\nX-Forwarded-Host: pub.example/x\r\n",
            "invalid X-Forwarded-Host",
        ),
        (
            "X-Original-URL: http://user@pub.example/admin\r\n",
            "invalid host in X-Original-URL",
        ),
    ] {
        let resp = host_check(headers).await;
        assert_bad_request(&resp, headers, word);
    }
    proxy.shutdown().await;
}

/// The ingress-nginx `auth-url` shape: the auth subrequest carries `X-Original-URL`
/// (`$scheme://$http_host$request_uri`) and `X-Original-Method` and passes the client's headers
/// on. A `POST /m/x` reached the upstream with no identity through the GET-only open route.
#[tokio::test]
async fn forward_auth_behind_ingress_nginx_shape_judges_the_original_method() {
    let ti = TestIssuer::start().await;
    let up = echo_upstream().await;
    let proxy = start_proxy(&method_config(&ti.issuer, up.addr)).await;
    let nginx = start_nginx(&format!(
        r#"server {{
    listen 80;
    location = /_external-auth {{
        internal;
        proxy_pass              http://{check}/.auth/check;
        proxy_pass_request_body off;
        proxy_set_header        Content-Length "";
        proxy_set_header        X-Original-URL $scheme://$http_host$request_uri;
        proxy_set_header        X-Original-Method $request_method;
        proxy_set_header        X-Sent-From "nginx-ingress-controller";
    }}
    location / {{
        auth_request /_external-auth;
        proxy_pass   http://{up};
    }}
}}"#,
        check = proxy.http(),
        up = up.addr
    ));
    let host = "app.example";
    let served = |resp: &str| resp.contains("x-echo: 1");
    let send = |method: &'static str, extra: &'static str| async move {
        raw_http(
            nginx.addr,
            format!(
                "{method} /m/x HTTP/1.1\r\nHost: {host}\r\n{extra}Content-Length: 0\r\nConnection: close\r\n\r\n"
            ),
        )
        .await
    };

    let resp = send("GET", "").await;
    assert_eq!(raw_status(&resp), 200, "{resp}");
    assert!(served(&resp), "{resp}");
    for method in ["POST", "DELETE", "PUT"] {
        let resp = send(method, "").await;
        assert_eq!(raw_status(&resp), 401, "{method}:\n{resp}");
        assert!(!served(&resp), "{method}: served:\n{resp}");
    }
    // the client's own X-Forwarded-Method next to the controller's X-Original-Method: the
    // check answers 400, which nginx turns into 500 — denied either way
    let resp = send("POST", "X-Forwarded-Method: GET\r\n").await;
    assert!(
        raw_status(&resp) >= 400 && !served(&resp),
        "forged X-Forwarded-Method served:\n{resp}"
    );
    // the client's own X-Forwarded-Host naming the open host route
    let resp = send("POST", "X-Forwarded-Host: pub.example\r\n").await;
    assert!(
        raw_status(&resp) >= 400 && !served(&resp),
        "forged X-Forwarded-Host served:\n{resp}"
    );
    proxy.shutdown().await;
}

/// The documented nginx snippet, as given: the original method reaches the check (`POST /m/x`
/// is not the GET-only open route), the client's `X-Forwarded-Method` is dropped, and a
/// client's `Host: pub.example` neither reaches the site nor picks portcullis's open
/// `pub.example` route (the default server refuses it; the site forwards its own name).
#[tokio::test]
async fn doc_nginx_snippet_pins_method_and_host() {
    let ti = TestIssuer::start().await;
    let up = echo_upstream().await;
    let proxy = start_proxy(&method_config(&ti.issuer, up.addr)).await;
    let nginx = start_nginx(&doc_nginx_snippet(proxy.http(), up.addr));
    let served = |resp: &str| resp.contains("x-echo: 1");
    let send = |method: &'static str,
                target: &'static str,
                host: &'static str,
                extra: &'static str| async move {
        raw_http(
            nginx.addr,
            format!(
                "{method} {target} HTTP/1.1\r\nHost: {host}\r\n{extra}Content-Length: 0\r\nConnection: close\r\n\r\n"
            ),
        )
        .await
    };

    let resp = send("GET", "/m/x", "app.example.com", "").await;
    assert_eq!(raw_status(&resp), 200, "{resp}");
    assert!(served(&resp), "{resp}");
    for (method, extra) in [
        ("POST", ""),
        ("DELETE", ""),
        ("POST", "X-Forwarded-Method: GET\r\n"),
    ] {
        let resp = send(method, "/m/x", "app.example.com", extra).await;
        assert_eq!(raw_status(&resp), 401, "{method} {extra:?}:\n{resp}");
        assert!(!served(&resp), "{method} {extra:?}: served:\n{resp}");
    }

    // another host: the default server refuses it before any check
    let resp = send("GET", "/admin/secret.txt", "pub.example", "").await;
    assert_eq!(raw_status(&resp), 421, "{resp}");
    assert!(!served(&resp), "{resp}");
    // the site's own host with a forged X-Forwarded-Host: nginx sends its server_name instead
    let resp = send(
        "GET",
        "/admin/secret.txt",
        "app.example.com",
        "X-Forwarded-Host: pub.example\r\n",
    )
    .await;
    assert_eq!(raw_status(&resp), 401, "{resp}");
    assert!(!served(&resp), "{resp}");
    proxy.shutdown().await;
}

/// Attack: a lower-case method (`delete`) is its own method to the proxy, so it skipped a route
/// restricted to `DELETE` and fell through to a looser one, while werkzeug, Django and Rack
/// upper-case it and run `DELETE`. Now any method with lower-case letters is a 400, in the
/// proxy (here) and in `/.auth/check` (above); upper-case spellings are judged as before.
#[tokio::test]
async fn lower_case_methods_are_refused_not_routed_around() {
    let ti = TestIssuer::start().await;
    let up = echo_upstream().await;
    let toml = method_config(&ti.issuer, up.addr).replace(
        "[[route]]\nname = \"ro\"",
        "[[route]]\nname = \"writes\"\npath = \"/m\"\nmethods = [\"POST\", \"DELETE\"]\nupstream = \"http://127.0.0.1:9\"\nauth = \"login\"\n\n[[route]]\nname = \"ro\"",
    );
    let toml = toml.replace("methods = [\"GET\", \"HEAD\"]\n", "");
    let proxy = start_proxy(&toml).await;
    let addr = proxy.http();
    let send = |method: &str| {
        let req = format!(
            "{method} /m/records/42 HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        async move { raw_http(addr, req).await }
    };
    for method in ["delete", "Delete", "post", "dElEtE", "get"] {
        let resp = send(method).await;
        assert_bad_request(&resp, method, "lower-case");
        assert!(
            !resp.contains("\"path\""),
            "{method}: reached the upstream:\n{resp}"
        );
    }
    // upper case: DELETE is the restricted route's (login: 401), GET the open one's
    assert_eq!(raw_status(&send("DELETE").await), 401);
    assert_eq!(raw_status(&send("POST").await), 401);
    assert_eq!(raw_status(&send("GET").await), 200);
    proxy.shutdown().await;
}
