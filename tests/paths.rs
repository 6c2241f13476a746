//! Encoded-separator traversal (issue 9 item 1), over real sockets: a `.`/`..` segment that only
//! exists once an upstream decodes `%2F`/`%5C`, cuts at `;`/`%3B` or decodes twice must never
//! get the permissive route's decision.
//!
//! - Proxy mode, the README quickstart's route shape (`/healthz` none, `/admin` login + role,
//!   `/` login) in front of a real `python3 -m http.server` — which decodes `%2F` and resolves
//!   `..` (`posixpath.normpath`) — serving `admin/secret.txt`: every variant answers 400 with a
//!   JSON message naming the problem, and the secret never comes back.
//! - A lower-case method (`delete`) is refused, not routed around a route restricted to
//!   `DELETE`.
//!
//! Forward-auth's side of the same rules (`/.auth/check` behind nginx) is in
//! `tests/forward_auth.rs`.
//!
//! Requests go out with [`raw_http`] so that no client normalizes them first.

mod support;
use support::oidc;
use support::*;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};

use oidc::TestIssuer;
use serde_json::Value;

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
