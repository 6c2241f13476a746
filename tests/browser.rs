//! End to end in a real browser: Debian `chromium` headless, driven by `chromedriver` (W3C
//! WebDriver over HTTP), through the real test provider's login form: login as alice, the
//! upstream's view of X-Forwarded-User, /admin allowed; bob refused with the 403 page; logout.
//! Every wait is bounded; the test fails with the page's URL and text when a step stalls.

mod support;
use support::*;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use http::Method;
use serde_json::{Value, json};

struct Driver {
    base: String,
    child: Child,
    http: Browser,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Session<'a> {
    d: &'a Driver,
    id: String,
    _profile: tempfile::TempDir,
}

impl Driver {
    async fn start() -> Driver {
        let bin = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists());
        let bin = bin
            .expect("chromedriver is not installed: `apt-get install -y chromium chromium-driver`");
        assert!(
            std::path::Path::new("/usr/bin/chromium").exists(),
            "chromium is not installed: `apt-get install -y chromium`"
        );
        let port = free_port();
        let child = Command::new(bin)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut http = Browser::new();
        http.accept = "application/json";
        let d = Driver {
            base: format!("http://127.0.0.1:{port}"),
            child,
            http,
        };
        let t0 = Instant::now();
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
                && d.http.get(&format!("{}/status", d.base)).await.json()["value"]["ready"] == true
            {
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(15),
                "chromedriver did not start"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        d
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let body = Some(("application/json", body.unwrap_or(json!({})).to_string()));
        let body = if method == Method::GET || method == Method::DELETE {
            None
        } else {
            body
        };
        let r = self
            .http
            .request(method, &format!("{}{path}", self.base), body, &[])
            .await;
        let v = r.json();
        assert!(r.status.is_success(), "webdriver {path}: {} {v}", r.status);
        v["value"].clone()
    }

    async fn session(&self) -> Session<'_> {
        let profile = tempfile::tempdir().unwrap();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "pageLoadStrategy": "normal",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                         format!("--user-data-dir={}", profile.path().display())]
            }
        }}});
        let v = self.call(Method::POST, "/session", Some(caps)).await;
        Session {
            d: self,
            id: v["sessionId"].as_str().unwrap().to_string(),
            _profile: profile,
        }
    }
}

impl Session<'_> {
    async fn go(&self, url: &str) {
        self.d
            .call(
                Method::POST,
                &format!("/session/{}/url", self.id),
                Some(json!({"url": url})),
            )
            .await;
    }
    async fn url(&self) -> String {
        self.d
            .call(Method::GET, &format!("/session/{}/url", self.id), None)
            .await
            .as_str()
            .unwrap_or("")
            .to_string()
    }
    async fn js(&self, script: &str) -> Value {
        self.d
            .call(
                Method::POST,
                &format!("/session/{}/execute/sync", self.id),
                Some(json!({"script": script, "args": []})),
            )
            .await
    }
    async fn text(&self) -> String {
        self.js("return document.body ? document.body.innerText : ''")
            .await
            .as_str()
            .unwrap_or("")
            .to_string()
    }
    /// Waits (≤ 15 s) until the URL and page text satisfy `ok`.
    async fn wait(&self, what: &str, ok: impl Fn(&str, &str) -> bool) -> (String, String) {
        let t0 = Instant::now();
        loop {
            let (u, t) = (self.url().await, self.text().await);
            if ok(&u, &t) {
                return (u, t);
            }
            assert!(
                t0.elapsed() < Duration::from_secs(15),
                "waiting for {what}: at {u}\n{t}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    /// On the provider's login form: fill it in and submit.
    async fn sign_in(&self, user: &str) {
        self.wait("the provider's login form", |u, _| {
            u.contains("/interaction/")
        })
        .await;
        self.js(&format!(
            "const f = document.querySelector('input[name=login]').form; \
             f.querySelector('input[name=login]').value = '{user}'; \
             f.querySelector('input[name=password]').value = 'x'; f.submit(); return true;"
        ))
        .await;
    }
    async fn close(self) {
        self.d
            .call(Method::DELETE, &format!("/session/{}", self.id), None)
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_login_admin_forbidden_logout() {
    let port = free_port();
    let provider = Provider::start(&[port], &[]);
    let upstream = echo_upstream_map().await;
    let _proxy = start_proxy_ready(&proxy_config(&ProxyOpts {
        port,
        issuer: provider.issuer.clone(),
        upstream,
        client_id: "web",
        client_auth: "client_secret = \"web-secret\"".into(),
        session: session_cfg(""),
        admin: false,
    }))
    .await;
    let base = format!("http://127.0.0.1:{port}");
    let driver = Driver::start().await;

    // alice: login, protected page, /admin, logout
    let s = driver.session().await;
    s.go(&format!("{base}/whoami")).await;
    s.sign_in("alice").await;
    let (_, text) = s
        .wait("the protected page", |u, t| {
            u.starts_with(&base) && t.contains("x-forwarded-user")
        })
        .await;
    let page: Value =
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("upstream JSON expected: {text}"));
    assert_eq!(page["path"], "/whoami");
    assert_eq!(page["headers"]["x-forwarded-user"], "alice");
    assert_eq!(page["headers"]["x-forwarded-roles"], "admin");

    s.go(&format!("{base}/admin/panel")).await;
    let (_, text) = s.wait("/admin", |_, t| t.contains("\"path\"")).await;
    assert!(
        text.contains("/admin/panel") && text.contains("alice"),
        "{text}"
    );

    s.go(&format!("{base}/.auth/logout?rd=/public/bye")).await;
    // the provider's end-session page auto-submits its confirm form, then sends us back
    let (u, text) = s
        .wait("the post-logout page", |u, _| {
            u.starts_with(&format!("{base}/public/bye"))
        })
        .await;
    assert!(
        !text.contains("x-forwarded-user"),
        "no identity after logout: {u} {text}"
    );
    s.go(&format!("{base}/.auth/me")).await;
    let (_, text) = s.wait("/.auth/me", |_, t| t.contains("error")).await;
    assert!(text.contains("unauthenticated"), "{text}");
    s.close().await;

    // bob: signed in, but /admin needs the admin role → the 403 page
    let s = driver.session().await;
    s.go(&format!("{base}/admin")).await;
    s.sign_in("bob").await;
    let (_, text) = s
        .wait("the 403 page", |u, t| {
            u.starts_with(&base) && t.contains("Access denied")
        })
        .await;
    assert!(
        text.contains("bob") && text.contains("admin") && text.contains("Sign out"),
        "{text}"
    );
    let href = s
        .js("return document.querySelector('a').getAttribute('href')")
        .await;
    assert_eq!(href, "/.auth/logout");
    s.close().await;
}
