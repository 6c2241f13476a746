//! One decision: the proxy, forward-auth (`/.auth/check`) and `explain` judge the same request
//! the same way. Every case of the routing and authentication rules runs through all three —
//! the proxy and the check over real sockets (the check from a trusted peer, the original
//! request in `X-Forwarded-Method`/`-Uri`/`-Host`), explain through the library function the
//! CLI prints — against a real OpenID provider (tokens it issued, keys it serves).

mod support;
use support::oidc;

use std::net::SocketAddr;
use std::sync::Arc;

use oidc::OidcProvider;
use support::{echo_upstream, raw_http, raw_status, start_proxy};

fn config(op: &OidcProvider, upstream: &str) -> String {
    let issuer = &op.issuer;
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
trusted_proxies = ["127.0.0.1/32"]

[providers.op]
issuer = "{issuer}"
client_id = "web"
client_secret = "web-secret"
audiences = ["portcullis-api"]

[session]
secret = "a-test-secret-of-at-least-32-bytes-4f0c9e2b7a"

[[route]]
name = "public"
path = "/public"
upstream = "{upstream}"
auth = "none"

[[route]]
name = "post-only"
path = "/post-only"
methods = ["POST"]
upstream = "{upstream}"
auth = "none"

[[route]]
name = "hosted"
host = "other.example"
path = "/hosted"
upstream = "{upstream}"
auth = "none"

[[route]]
name = "admin"
path = "/admin"
upstream = "{upstream}"
auth = "bearer"
provider = "op"
require_roles = ["admin"]

[[route]]
name = "org"
path = "/org"
upstream = "{upstream}"
auth = "bearer"
provider = "op"
require_claims = {{ "urn:zitadel:iam:user:resourceowner:id" = ["123456", "654321"] }}

[[route]]
name = "other-org"
path = "/other-org"
upstream = "{upstream}"
auth = "bearer"
provider = "op"
require_claims = {{ "urn:zitadel:iam:user:resourceowner:id" = "999" }}

[[route]]
name = "app"
path = "/app"
upstream = "{upstream}"
auth = "login"
provider = "op"
"#
    )
}

/// One request: method, path, `Host` values (none: the proxy's own address), other headers.
struct Case {
    name: &'static str,
    method: &'static str,
    path: &'static str,
    hosts: Vec<&'static str>,
    headers: Vec<(&'static str, String)>,
    status: u16,
    route: Option<&'static str>,
}

fn case(name: &'static str, method: &'static str, path: &'static str, status: u16) -> Case {
    Case {
        name,
        method,
        path,
        hosts: Vec::new(),
        headers: Vec::new(),
        status,
        route: None,
    }
}

impl Case {
    fn route(mut self, r: &'static str) -> Self {
        self.route = Some(r);
        self
    }
    fn host(mut self, h: &'static str) -> Self {
        self.hosts.push(h);
        self
    }
    fn header(mut self, n: &'static str, v: impl Into<String>) -> Self {
        self.headers.push((n, v.into()));
        self
    }
    fn token(self, t: &str) -> Self {
        self.header("authorization", format!("Bearer {t}"))
    }
}

/// The proxy's answer to the request itself.
async fn via_proxy(addr: SocketAddr, c: &Case) -> u16 {
    let mut req = format!("{} {} HTTP/1.1\r\n", c.method, c.path);
    if c.hosts.is_empty() {
        req.push_str(&format!("Host: {addr}\r\n"));
    }
    for h in &c.hosts {
        req.push_str(&format!("Host: {h}\r\n"));
    }
    for (n, v) in &c.headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str("Connection: close\r\n\r\n");
    raw_status(&raw_http(addr, req).await)
}

/// `/.auth/check`'s answer, the original request named by the forwarding headers. Asked as
/// Traefik and Caddy ask (`?redirect=1`): a browser that must sign in gets a 302 too (to the
/// login URL; without it, 401 naming that URL in `X-Auth-Login`: tests/forward_auth.rs).
async fn via_check(addr: SocketAddr, c: &Case) -> u16 {
    let mut req = format!(
        "GET /.auth/check?redirect=1 HTTP/1.1\r\nHost: {addr}\r\nX-Forwarded-Method: {}\r\nX-Forwarded-Uri: {}\r\n",
        c.method, c.path
    );
    for h in &c.hosts {
        req.push_str(&format!("X-Forwarded-Host: {h}\r\n"));
    }
    for (n, v) in &c.headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str("Connection: close\r\n\r\n");
    raw_status(&raw_http(addr, req).await)
}

/// `explain`'s decision: the status the proxy would answer and the route.
async fn via_explain(
    cfg: &Arc<portcullis::Config>,
    addr: SocketAddr,
    c: &Case,
) -> (u16, Option<String>, String) {
    let mut headers: Vec<String> = c.headers.iter().map(|(n, v)| format!("{n}: {v}")).collect();
    // One host goes into the URL; none: the proxy's address; several: as headers.
    let url = match c.hosts.as_slice() {
        [] => format!("http://{addr}{}", c.path),
        [h] if !h.contains('/') => format!("http://{h}{}", c.path),
        many => {
            headers.extend(many.iter().map(|h| format!("Host: {h}")));
            c.path.to_string()
        }
    };
    let e = portcullis::explain::explain_request(cfg.clone(), c.method, &url, &headers).await;
    (e.status.map_or(0, |s| s.as_u16()), e.route, e.text)
}

#[tokio::test]
async fn proxy_forward_auth_and_explain_decide_alike() {
    let op = OidcProvider::start(&[("LOG_REQUESTS", "0")]);
    let up = echo_upstream().await;
    let toml = config(&op, &up.url(""));
    let p = start_proxy(&toml).await;
    let addr = p.http();
    let cfg = Arc::new(
        portcullis::config::load_str(
            std::path::Path::new("decide.toml"),
            &toml,
            Default::default(),
        )
        .expect("config"),
    );
    let admin = op.jwt("api-admin").await;
    let reader = op.jwt("api-reader").await;

    let cases = vec![
        case("no route", "GET", "/nothing", 404),
        case("bad path", "GET", "/public/..%2Fadmin", 400),
        case("lower-case method", "get", "/public", 400),
        case("invalid host", "GET", "/public", 400).host("bad/host"),
        case("two hosts", "GET", "/public", 400)
            .host("a.example")
            .host("b.example"),
        case("auth none", "GET", "/public/x", 200).route("public"),
        case("dot segments", "GET", "/public/../admin", 401).route("admin"),
        case("bearer without token", "GET", "/admin", 401).route("admin"),
        case("bearer invalid token", "GET", "/admin", 401)
            .route("admin")
            .token("abc.def.ghi"),
        case("bearer, role met", "GET", "/admin/x", 200)
            .route("admin")
            .token(&admin),
        case("bearer, role missing", "GET", "/admin/x", 403)
            .route("admin")
            .token(&reader),
        case("two Authorization headers", "GET", "/admin", 400)
            .route("admin")
            .token(&admin)
            .token(&admin),
        case("claim met", "GET", "/org", 200)
            .route("org")
            .token(&reader),
        case("claim not met", "GET", "/other-org", 403)
            .route("other-org")
            .token(&reader),
        case("method allowed", "POST", "/post-only", 200).route("post-only"),
        case("method not allowed", "GET", "/post-only", 404),
        case("host-restricted, its host", "GET", "/hosted", 200)
            .route("hosted")
            .host("other.example"),
        case("host-restricted, another host", "GET", "/hosted", 404),
        case("login, navigation", "GET", "/app", 302)
            .route("app")
            .header("accept", "text/html"),
        case("login, XHR", "GET", "/app", 401)
            .route("app")
            .header("accept", "application/json"),
    ];

    let mut failures = Vec::new();
    for c in &cases {
        let proxy = via_proxy(addr, c).await;
        let check = via_check(addr, c).await;
        let (explained, route, text) = via_explain(&cfg, addr, c).await;
        if proxy != c.status || check != c.status || explained != c.status {
            failures.push(format!(
                "{}: expected {}, proxy {proxy}, check {check}, explain {explained}\n{text}",
                c.name, c.status
            ));
        }
        if route.as_deref() != c.route {
            failures.push(format!(
                "{}: explain's route {route:?}, expected {:?}\n{text}",
                c.name, c.route
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
