//! Assertions on the proxy's answers shared by several test files: the RFC 6750 challenges of
//! bearer routes, and the method-restricted forward-auth config with its 400 check.

use std::net::SocketAddr;

use http::Request;
use serde_json::Value;

use super::*;

/// Sends `GET path` with the given headers.
pub async fn call(p: &TestProxy, path: &str, headers: &[(&str, &str)]) -> Resp {
    let mut b = Request::get(path);
    for (n, v) in headers {
        b = b.header(*n, *v);
    }
    send(p.http(), b.body(empty_body()).unwrap()).await
}

pub fn www(r: &Resp) -> String {
    r.headers
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

pub fn message(r: &Resp) -> String {
    serde_json::from_slice::<Value>(&r.body)
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_string))
        .unwrap_or_else(|| r.text())
}

#[track_caller]
pub fn assert_challenge(r: &Resp, case: &str) {
    assert_eq!(r.status, 401, "{case}: {}", r.text());
    assert_eq!(www(r), "Bearer realm=\"portcullis\"", "{case}");
    assert!(
        message(r).contains("bearer token is required"),
        "{case}: {}",
        r.text()
    );
}

#[track_caller]
pub fn assert_forbidden(r: &Resp, text: &str, case: &str) {
    assert_eq!(r.status, 403, "{case}: {}", r.text());
    let w = www(r);
    assert!(
        w.starts_with("Bearer error=\"insufficient_scope\""),
        "{case}: {w}"
    );
    assert!(
        w.contains(text) && message(r).contains(text),
        "{case}: {w} / {}",
        r.text()
    );
}

/// Forward-auth with a method-restricted open route: `pub` (host `pub.example`, open), `ro`
/// (`/m`, GET/HEAD only, open) and `app` (everything else, login).
pub fn method_config(issuer: &str, upstream: SocketAddr) -> String {
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
pub fn assert_bad_request(resp: &str, what: &str, word: &str) {
    assert_eq!(raw_status(resp), 400, "{what}:\n{resp}");
    let body: Value = serde_json::from_str(raw_body(resp).trim())
        .unwrap_or_else(|e| panic!("{what}: no JSON body ({e}):\n{resp}"));
    let message = body["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(word),
        "{what}: message {message:?} lacks {word:?}"
    );
}
