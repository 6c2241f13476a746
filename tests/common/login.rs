//! Harness for the browser-login tests: a real `redis-server`, the real test provider
//! (`tests/provider`, oidc-provider), an echo upstream, in-process portcullis instances and a
//! scripted browser (cookie jar, manual redirects) that submits the provider's login form.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;

/// A loopback port that is free now and stays out of everyone else's way until the test binds
/// it. Ports are handed out from below the kernel's ephemeral range (32768–60999 by default),
/// so the `:0` binds of other tests, the provider and the upstreams cannot take one between
/// here and the bind (a port from `:0` itself could be, and was: a flaky "proxy start").
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    const LOW: u16 = 20_000;
    const SPAN: u16 = 12_000;
    static NEXT: AtomicU16 = AtomicU16::new(0);
    // A different start per test process, so that two runs at once rarely meet either.
    let _ = NEXT.compare_exchange(
        0,
        (std::process::id() % u32::from(SPAN)) as u16 + 1,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    for _ in 0..SPAN {
        let port = LOW + NEXT.fetch_add(1, Ordering::Relaxed) % SPAN;
        if StdListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in {LOW}..{}", LOW + SPAN);
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

// ------------------------------------------------------------------ redis

pub struct Redis {
    pub port: u16,
    child: Child,
}

impl Redis {
    pub fn start() -> Redis {
        Redis::start_on(free_port())
    }

    /// A redis-server on `port` (also to restart one on the port a proxy was given).
    pub fn start_on(port: u16) -> Redis {
        let bin = ["/usr/bin/redis-server", "/usr/local/bin/redis-server"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists());
        let Some(bin) = bin else {
            panic!(
                "redis-server is not installed: `apt-get install -y redis-server` (the Redis-store tests need a real Redis)"
            );
        };
        let mut child = Command::new(bin)
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Redis { port, child };
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("redis-server did not listen on {port}");
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

// ------------------------------------------------------------------ provider

pub struct Provider {
    pub issuer: String,
    pub state_dir: tempfile::TempDir,
    pub log: PathBuf,
    child: Child,
}

impl Provider {
    /// Starts the provider with `proxy_ports` registered (callback, post-logout, back-channel).
    pub fn start(proxy_ports: &[u16], env: &[(&str, &str)]) -> Provider {
        let state_dir = tempfile::tempdir().unwrap();
        let log = state_dir.path().join("provider.log");
        let cb: Vec<String> = proxy_ports
            .iter()
            .map(|p| format!("http://127.0.0.1:{p}/.auth/callback"))
            .collect();
        let post: Vec<String> = proxy_ports
            .iter()
            .flat_map(|p| {
                [
                    format!("http://127.0.0.1:{p}/"),
                    format!("http://127.0.0.1:{p}/bye"),
                    format!("http://127.0.0.1:{p}/public/bye"),
                ]
            })
            .collect();
        let (cb, post) = (cb.join(","), post.join(","));
        let backchannel = format!(
            "http://127.0.0.1:{}/.auth/backchannel-logout",
            proxy_ports[0]
        );
        let mut vars = vec![
            ("CLIENT_REDIRECT_URIS", cb.as_str()),
            ("POST_LOGOUT_REDIRECT_URIS", post.as_str()),
            ("BACKCHANNEL_LOGOUT_URI", backchannel.as_str()),
        ];
        vars.extend_from_slice(env);
        let (child, issuer) =
            crate::provider::start(state_dir.path(), &vars, crate::provider::Stderr::File(&log));
        Provider {
            issuer,
            state_dir,
            log,
            child,
        }
    }

    /// How many requests matching `needle` (e.g. "POST /token") the provider logged. The provider
    /// logs when a response has finished, which can be just after the client saw it: let it settle.
    pub fn count(&self, needle: &str) -> usize {
        std::thread::sleep(std::time::Duration::from_millis(300));
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(needle))
            .count()
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ------------------------------------------------------------------ upstream

/// Answers every request with JSON `{"path", "headers": {name: value}}`.
pub async fn echo_upstream() -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|req: Request<Incoming>| async move {
                    let mut h = serde_json::Map::new();
                    for (k, v) in req.headers() {
                        h.insert(
                            k.as_str().to_string(),
                            Value::String(v.to_str().unwrap_or("").to_string()),
                        );
                    }
                    let body = serde_json::json!({"path": req.uri().to_string(), "headers": h})
                        .to_string();
                    Ok::<_, std::convert::Infallible>(
                        Response::builder()
                            .header("content-type", "application/json")
                            .body(Full::new(Bytes::from(body)))
                            .unwrap(),
                    )
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    addr
}

// ------------------------------------------------------------------ proxy

pub struct ProxyOpts {
    pub port: u16,
    pub issuer: String,
    pub upstream: SocketAddr,
    pub client_id: &'static str,
    pub client_auth: String,
    pub session: String,
    pub admin: bool,
}

pub fn proxy_config(o: &ProxyOpts) -> String {
    format!(
        r#"[server]
listen = "127.0.0.1:{port}"
{admin}
[providers.op]
issuer = "{issuer}"
client_id = "{client_id}"
{client_auth}
scopes = ["openid", "profile", "email"]

[session]
{session}

[[route]]
name = "public"
path = "/public"
upstream = "http://{up}"
auth = "none"

[[route]]
name = "admin"
path = "/admin"
upstream = "http://{up}"
auth = "login"
require_roles = ["admin"]

[[route]]
name = "api"
path = "/api"
upstream = "http://{up}"
auth = "login_or_bearer"

[[route]]
name = "app"
path = "/"
upstream = "http://{up}"
auth = "login"
"#,
        port = o.port,
        admin = if o.admin {
            "admin_listen = \"127.0.0.1:0\""
        } else {
            ""
        },
        issuer = o.issuer,
        client_id = o.client_id,
        client_auth = o.client_auth,
        session = o.session,
        up = o.upstream,
    )
}

pub async fn start_proxy(toml: &str) -> portcullis::server::Running {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("portcullis.toml");
    std::fs::write(&path, toml).unwrap();
    let cfg = portcullis::config::load(&path, &Default::default())
        .unwrap_or_else(|e| panic!("config: {e}\n{toml}"));
    let running = portcullis::server::start(cfg).await.expect("proxy start");
    // Wait until the provider's discovery is loaded (login needs it).
    for _ in 0..100 {
        let ready = running
            .proxy
            .config
            .providers
            .keys()
            .all(|n| running.proxy.health.is_ready(&format!("provider:{n}")));
        if ready {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    running
}

pub fn session_cfg(extra: &str) -> String {
    format!(
        "secret = \"{}\"\n{extra}",
        "a-test-secret-of-at-least-32-bytes-4f0c9e2b7a"
    )
}

// ------------------------------------------------------------------ browser

/// Cookies per `host:port`, in the order they were set.
pub type Jar = HashMap<String, Vec<(String, String)>>;

/// A scripted browser: cookie jar per host:port, redirects followed by hand.
#[derive(Clone)]
pub struct Browser {
    client: Client<HttpConnector, Full<Bytes>>,
    pub jar: Arc<Mutex<Jar>>,
    /// Sent as Accept (browser navigations carry text/html).
    pub accept: &'static str,
}

pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Resp {
    pub fn location(&self) -> String {
        self.headers
            .get(header::LOCATION)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    }
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|_| panic!("not JSON ({}): {}", self.status, self.body))
    }
    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect()
    }
}

impl Default for Browser {
    fn default() -> Self {
        Self::new()
    }
}

impl Browser {
    pub fn new() -> Browser {
        Browser {
            client: Client::builder(TokioExecutor::new()).build_http(),
            jar: Default::default(),
            accept: "text/html,application/xhtml+xml,*/*;q=0.8",
        }
    }

    pub fn cookies(&self, authority: &str) -> Vec<(String, String)> {
        self.jar
            .lock()
            .unwrap()
            .get(authority)
            .cloned()
            .unwrap_or_default()
    }

    pub fn set_cookie_raw(&self, authority: &str, name: &str, value: &str) {
        let mut jar = self.jar.lock().unwrap();
        let e = jar.entry(authority.to_string()).or_default();
        e.retain(|(n, _)| n != name);
        e.push((name.to_string(), value.to_string()));
    }

    pub fn clear_cookies(&self, authority: &str) {
        self.jar.lock().unwrap().remove(authority);
    }

    fn store(&self, authority: &str, headers: &HeaderMap) {
        let mut jar = self.jar.lock().unwrap();
        let e = jar.entry(authority.to_string()).or_default();
        for v in headers.get_all(header::SET_COOKIE) {
            let s = v.to_str().unwrap();
            let first = s.split(';').next().unwrap();
            let (name, value) = first.split_once('=').unwrap();
            let expired = s.to_ascii_lowercase().contains("max-age=0")
                || s.contains("Expires=Thu, 01 Jan 1970");
            e.retain(|(n, _)| n != name);
            if !expired && !value.is_empty() {
                e.push((name.to_string(), value.to_string()));
            }
        }
    }

    pub async fn request(
        &self,
        method: Method,
        url: &str,
        body: Option<(&str, String)>,
        extra: &[(&str, &str)],
    ) -> Resp {
        let uri: http::Uri = url.parse().unwrap();
        let authority = uri.authority().unwrap().to_string();
        let mut b = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::ACCEPT, self.accept);
        let cookies = self.cookies(&authority);
        if !cookies.is_empty() {
            let v = cookies
                .iter()
                .map(|(n, v)| format!("{n}={v}"))
                .collect::<Vec<_>>()
                .join("; ");
            b = b.header(header::COOKIE, v);
        }
        for (k, v) in extra {
            b = b.header(*k, *v);
        }
        let req = match body {
            Some((ct, s)) => b
                .header(header::CONTENT_TYPE, ct)
                .body(Full::new(Bytes::from(s)))
                .unwrap(),
            None => b.body(Full::new(Bytes::new())).unwrap(),
        };
        let resp = tokio::time::timeout(Duration::from_secs(20), self.client.request(req))
            .await
            .expect("request timed out")
            .expect("request");
        let (parts, body) = resp.into_parts();
        self.store(&authority, &parts.headers);
        let body = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        Resp {
            status: parts.status,
            headers: parts.headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }

    pub async fn get(&self, url: &str) -> Resp {
        self.request(Method::GET, url, None, &[]).await
    }

    /// Follows redirects from `url` through the provider (submitting its login form as `user`)
    /// until a response that is not a redirect, or a redirect leaving both the provider and the
    /// proxy. Returns the final response and every URL visited.
    pub async fn navigate(&self, url: &str, user: &str) -> (Resp, Vec<String>) {
        let mut visited = vec![url.to_string()];
        let mut current = url.to_string();
        let mut resp = self.get(&current).await;
        for _ in 0..20 {
            if !resp.status.is_redirection() {
                break;
            }
            let loc = resp.location();
            let base = url::Url::parse(&current).unwrap();
            let next = base.join(&loc).unwrap();
            current = next.to_string();
            visited.push(current.clone());
            if next.host_str().is_none_or(|h| h != "127.0.0.1") {
                break;
            }
            if next.path().starts_with("/interaction/") && !next.path().ends_with("/login") {
                // The provider's login form: post the credentials.
                let _ = self.get(&current).await;
                let form = format!("prompt=login&login={user}&password=x");
                resp = self
                    .request(
                        Method::POST,
                        &current,
                        Some(("application/x-www-form-urlencoded", form)),
                        &[],
                    )
                    .await;
            } else {
                resp = self.get(&current).await;
            }
        }
        (resp, visited)
    }

    /// Full login through the proxy at `base` starting at `path`; returns the final response.
    pub async fn login(&self, base: &str, path: &str, user: &str) -> Resp {
        let (r, visited) = self.navigate(&format!("{base}{path}"), user).await;
        assert_eq!(
            r.status,
            StatusCode::OK,
            "login ended at {visited:?}: {} {}",
            r.status,
            r.body
        );
        r
    }
}

/// alice's session as a login at `provider` would have stored it, created now.
pub fn alice_session(provider: &str, sid: Option<&str>) -> portcullis::session::SessionData {
    let now = portcullis::session::now();
    portcullis::session::SessionData {
        id: "x".into(),
        provider: provider.into(),
        iss: None,
        sub: "alice".into(),
        email: None,
        name: None,
        preferred_username: None,
        roles: vec![],
        claims: Default::default(),
        access_token: "at".into(),
        refresh_token: None,
        id_token: None,
        sid: sid.map(str::to_string),
        created_at: now,
        created_ms: portcullis::session::now_ms(),
        last_seen: now,
        access_expires_at: None,
        access_issued_at: now,
        identity: Default::default(),
    }
}
