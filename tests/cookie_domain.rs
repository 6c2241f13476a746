//! One sign-in across subdomains (`session.cookie_domain`) and the scheme/host a trusted front
//! proxy reports (`X-Forwarded-Proto` / `X-Forwarded-Host`), against the real test provider
//! and in-process portcullis instances over real sockets. The hosts `*.example.test` sit behind
//! a simulated TLS-terminating front proxy ([`Browser::front`]: plain HTTP to the proxy with
//! `X-Forwarded-Proto: https` from 127.0.0.1, which the proxies trust unless a test says not).

mod support;
use support::*;

use std::net::SocketAddr;

use http::{Request, StatusCode};

const APP1: &str = "https://app1.example.test";
const APP2: &str = "https://app2.example.test";
const AUTH: &str = "https://auth.example.test";

/// The provider with the `*.example.test` callbacks (and the proxies at `ports`) registered.
fn provider(ports: &[u16]) -> Provider {
    let mut cb = vec![
        format!("{APP1}/.auth/callback"),
        format!("{APP2}/.auth/callback"),
        format!("{AUTH}/.auth/callback"),
        "https://app.example.test/.auth/callback".to_string(),
    ];
    let mut post = vec![format!("{APP1}/"), format!("{APP2}/"), format!("{AUTH}/")];
    for p in ports {
        cb.push(format!("http://127.0.0.1:{p}/.auth/callback"));
        post.push(format!("http://127.0.0.1:{p}/"));
    }
    let (cb, post) = (cb.join(","), post.join(","));
    Provider::start(
        ports,
        &[
            ("CLIENT_REDIRECT_URIS", cb.as_str()),
            ("POST_LOGOUT_REDIRECT_URIS", post.as_str()),
        ],
    )
}

/// A proxy on `port` with host-restricted login routes for app1 and app2 (and a catch-all login
/// route); `server` and `session` add keys to those sections.
async fn proxy(port: u16, p: &Provider, server: &str, session: &str) -> TestProxy {
    let up = echo_upstream_map().await;
    let route = |name: &str, host: &str| {
        format!(
            "[[route]]\nname = \"{name}\"\n{host}path = \"/\"\nupstream = \"http://{up}\"\nauth = \"login\"\n"
        )
    };
    let toml = format!(
        r#"[server]
listen = "127.0.0.1:{port}"
{server}

[providers.op]
issuer = "{issuer}"
client_id = "web"
client_secret = "web-secret"
scopes = ["openid", "profile", "email"]

[session]
{session}

{app1}
{app2}
{other}"#,
        issuer = p.issuer,
        session = session_cfg(session),
        app1 = route("app1", "host = \"app1.example.test\"\n"),
        app2 = route("app2", "host = \"app2.example.test\"\n"),
        other = route("other", ""),
    );
    start_proxy_ready(&toml).await
}

/// A browser whose `*.example.test` hosts are fronted by a TLS-terminating proxy in front of
/// `addr`.
fn browser(addr: SocketAddr) -> Browser {
    let b = Browser::new();
    for h in [
        "app1.example.test",
        "app2.example.test",
        "auth.example.test",
        "app.example.test",
    ] {
        b.front(h, addr);
    }
    b
}

/// A browser navigation (`Accept: text/html`) to `addr` with `Host: host` and `extra` headers.
async fn navigation(addr: SocketAddr, host: &str, path: &str, extra: &[(&str, &str)]) -> Resp {
    let mut b = Request::get(path)
        .header("host", host)
        .header("accept", "text/html");
    for (k, v) in extra {
        b = b.header(*k, *v);
    }
    send(addr, b.body(empty_body()).unwrap()).await
}

fn set_cookies(r: &Resp) -> Vec<String> {
    r.headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect()
}

/// The `redirect_uri` of a login redirect to the provider.
fn redirect_uri(location: &str) -> String {
    let u = url::Url::parse(location).unwrap_or_else(|e| panic!("{location:?}: {e}"));
    u.query_pairs()
        .find(|(k, _)| k == "redirect_uri")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| panic!("no redirect_uri in {location}"))
}

fn upstream_user(r: &Page) -> Option<String> {
    r.json()["headers"]["x-forwarded-user"]
        .as_str()
        .map(str::to_string)
}

// ---- session.cookie_domain -------------------------------------------------------------------

/// With `cookie_domain` behind an https front proxy: the pending-login and session cookies are
/// `__Secure-portcullis…` with `Domain=example.test`, `Secure`, `HttpOnly`, `SameSite=Lax`,
/// `Path=/`. Without it: `__Host-…`, no `Domain`. A plain-http request (no X-Forwarded-Proto)
/// keeps host-only cookies without `Secure` even with `cookie_domain`.
#[tokio::test]
async fn cookie_attributes_with_and_without_cookie_domain() {
    let (port, plain_port) = (free_port(), free_port());
    let p = provider(&[port, plain_port]);
    let trusted = "trusted_proxies = [\"127.0.0.1/32\"]";
    let shared = proxy(port, &p, trusted, "cookie_domain = \"example.test\"").await;
    let own = proxy(plain_port, &p, trusted, "").await;

    let https = [("x-forwarded-proto", "https")];
    let r = navigation(shared.http(), "app1.example.test", "/x", &https).await;
    assert_eq!(r.status, StatusCode::FOUND, "{}", r.text());
    let c = set_cookies(&r);
    let pending = c
        .iter()
        .find(|c| c.starts_with("__Secure-portcullis_login_"))
        .unwrap_or_else(|| panic!("no __Secure- pending cookie: {c:?}"));
    for attr in [
        "Domain=example.test",
        "Secure",
        "HttpOnly",
        "SameSite=Lax",
        "Path=/",
    ] {
        assert!(pending.contains(attr), "{attr} missing: {pending}");
    }

    // A completed login: the session cookie is the shared one.
    let b = browser(shared.http());
    let (r, visited) = b.navigate(&format!("{APP1}/hello"), "alice").await;
    assert_eq!(r.status, 200, "{visited:?} {}", r.body);
    let cb = visited
        .iter()
        .position(|u| u.contains("/.auth/callback"))
        .expect("went through the callback");
    assert!(
        visited[cb].starts_with(&format!("{APP1}/.auth/callback")),
        "{visited:?}"
    );
    let jar = b.jar.lock().unwrap().clone();
    let shared_cookies = jar.get("domain=example.test").cloned().unwrap_or_default();
    assert!(
        shared_cookies
            .iter()
            .any(|(n, _)| n == "__Secure-portcullis"),
        "session cookie for the domain: {jar:?}"
    );
    assert!(
        jar.get("app1.example.test")
            .is_none_or(|c| c.iter().all(|(n, _)| !n.contains("portcullis"))),
        "no host-only session cookie: {jar:?}"
    );

    // Without cookie_domain: __Host-, no Domain, Secure.
    let r = navigation(own.http(), "app1.example.test", "/x", &https).await;
    let c = set_cookies(&r);
    let pending = c
        .iter()
        .find(|c| c.starts_with("__Host-portcullis_login_"))
        .unwrap_or_else(|| panic!("no __Host- pending cookie: {c:?}"));
    assert!(
        pending.contains("Secure") && !pending.contains("Domain"),
        "{pending}"
    );

    // cookie_domain, https, but a host outside the domain (another name of the server, an
    // address): a Domain cookie would be dropped by the browser and the login could never
    // complete there, so the cookies are host-only `__Host-` ones.
    for host in [
        "other.test",
        "127.0.0.1:8443",
        "localhost",
        "example.test.evil",
    ] {
        let r = navigation(shared.http(), host, "/x", &https).await;
        assert_eq!(r.status, StatusCode::FOUND, "{host}: {}", r.text());
        let c = set_cookies(&r);
        let pending = c
            .iter()
            .find(|c| c.starts_with("__Host-portcullis_login_"))
            .unwrap_or_else(|| panic!("{host}: no __Host- pending cookie: {c:?}"));
        assert!(
            pending.contains("Secure") && !pending.contains("Domain"),
            "{host}: {pending}"
        );
    }
    // Inside the domain, any case and with a port: the shared cookie.
    let r = navigation(shared.http(), "APP2.Example.Test:8443", "/x", &https).await;
    let c = set_cookies(&r);
    assert!(
        c.iter()
            .any(|c| c.starts_with("__Secure-portcullis_login_")
                && c.contains("Domain=example.test")),
        "{c:?}"
    );

    // cookie_domain, but the request is plain http: host-only, no prefix, no Secure.
    let r = navigation(shared.http(), "app1.example.test", "/x", &[]).await;
    let c = set_cookies(&r);
    let pending = c
        .iter()
        .find(|c| c.starts_with("portcullis_login_"))
        .unwrap_or_else(|| panic!("no plain pending cookie: {c:?}"));
    assert!(
        !pending.contains("Domain") && !pending.contains("Secure"),
        "{pending}"
    );
    assert!(
        redirect_uri(r.headers["location"].to_str().unwrap())
            .starts_with("http://app1.example.test/"),
        "{:?}",
        r.headers["location"]
    );
}

/// Two hosts behind one portcullis, one sign-in: a session made via app1 opens app2 (its own
/// host-restricted route) without another visit to the provider; logging out on app2 clears
/// the `Domain` cookie, and app1 asks for a login again.
#[tokio::test]
async fn one_sign_in_across_hosts_and_logout_clears_the_domain_cookie() {
    let port = free_port();
    let p = provider(&[port]);
    let px = proxy(
        port,
        &p,
        "trusted_proxies = [\"127.0.0.1/32\"]",
        "cookie_domain = \"example.test\"",
    )
    .await;
    let b = browser(px.http());
    let r = b.login(APP1, "/one", "alice").await;
    assert_eq!(r.json()["path"], "/one");
    assert_eq!(upstream_user(&r).as_deref(), Some("alice"));
    let authorizations = p.count("GET /auth ");
    assert!(
        authorizations >= 1,
        "the provider's log names its authorization requests"
    );

    let r = b.get(&format!("{APP2}/two")).await;
    assert_eq!(r.status, 200, "app2 opens with app1's session: {}", r.body);
    assert_eq!(r.json()["path"], "/two");
    assert_eq!(upstream_user(&r).as_deref(), Some("alice"));
    assert_eq!(
        p.count("GET /auth "),
        authorizations,
        "no second visit to the provider"
    );

    let r = b.get(&format!("{APP2}/.auth/logout")).await;
    assert_eq!(r.status, StatusCode::FOUND, "{}", r.body);
    let cleared = r
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("__Secure-portcullis="))
        .unwrap_or_else(|| panic!("the session cookie is cleared: {:?}", r.set_cookies()));
    assert!(
        cleared.contains("Max-Age=0") && cleared.contains("Domain=example.test"),
        "{cleared}"
    );
    let r = b.get(&format!("{APP1}/one")).await;
    assert_eq!(r.status, StatusCode::FOUND, "signed out everywhere");
    assert!(r.location().starts_with(&p.issuer), "{}", r.location());
}

/// The callback stays on `public_url` (auth.example.test) while the login starts on app1: the
/// pending-login cookie reaches it, the session it sets reaches app1, and the browser returns
/// to the page on app1 it started from.
#[tokio::test]
async fn callback_on_public_url_of_another_subdomain() {
    let port = free_port();
    let p = provider(&[port]);
    let px = proxy(
        port,
        &p,
        "public_url = \"https://auth.example.test\"",
        "cookie_domain = \"example.test\"",
    )
    .await;
    let b = browser(px.http());
    let (r, visited) = b.navigate(&format!("{APP1}/start?x=1"), "alice").await;
    assert_eq!(r.status, 200, "{visited:?} {}", r.body);
    assert!(
        visited
            .iter()
            .any(|u| u.starts_with(&format!("{AUTH}/.auth/callback"))),
        "callback on public_url: {visited:?}"
    );
    assert_eq!(visited.last().unwrap(), &format!("{APP1}/start?x=1"));
    assert_eq!(upstream_user(&r).as_deref(), Some("alice"));
    let r = b.get(&format!("{APP2}/")).await;
    assert_eq!(upstream_user(&r).as_deref(), Some("alice"), "{}", r.body);

    // Logout by POST from app1's own page (its Origin is app1, not public_url): carried out;
    // from a sibling's page: refused.
    let post = |origin: &'static str, site: &'static str| {
        let b = b.clone();
        async move {
            b.request(
                http::Method::POST,
                &format!("{APP1}/.auth/logout"),
                None,
                &[("origin", origin), ("sec-fetch-site", site)],
            )
            .await
        }
    };
    let r = post(APP2, "same-site").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    let r = post(APP1, "same-origin").await;
    assert_eq!(r.status, StatusCode::FOUND, "{}", r.body);
    assert!(
        r.set_cookies()
            .iter()
            .any(|c| c.starts_with("__Secure-portcullis=") && c.contains("Max-Age=0")),
        "{:?}",
        r.set_cookies()
    );
    let r = b.get(&format!("{APP2}/")).await;
    assert_eq!(r.status, StatusCode::FOUND, "signed out on app2 too");
}

/// `rd` may name any host of the cookie domain (and the domain itself); other domains —
/// look-alikes, the domain as a prefix, userinfo and backslash tricks, an http downgrade —
/// fall back to `/` on the host the login started on.
#[tokio::test]
async fn rd_to_a_sibling_subdomain_is_allowed_other_domains_are_not() {
    let port = free_port();
    let p = provider(&[port]);
    let px = proxy(
        port,
        &p,
        "trusted_proxies = [\"127.0.0.1/32\"]",
        "cookie_domain = \"example.test\"",
    )
    .await;
    let b = browser(px.http());
    b.login(APP1, "/", "alice").await; // provider SSO makes the loop below fast
    let login = |rd: &str| {
        let enc: String = url::form_urlencoded::byte_serialize(rd.as_bytes()).collect();
        format!("{APP1}/.auth/login?rd={enc}")
    };
    let (r, visited) = b
        .navigate(&login(&format!("{APP2}/back?a=1")), "alice")
        .await;
    assert_eq!(visited.last().unwrap(), &format!("{APP2}/back?a=1"));
    assert_eq!(r.json()["path"], "/back?a=1");
    assert_eq!(upstream_user(&r).as_deref(), Some("alice"));

    for rd in [
        "https://evil-example.test/",
        "https://example.test.evil.com/",
        "https://app2.example.test@evil.com/",
        "https://evil.com\\@app2.example.test/",
        "https://evil.com/.example.test",
        "//app2.example.test/",
        "http://app2.example.test/",
    ] {
        let (r, visited) = b.navigate(&login(rd), "alice").await;
        assert_eq!(
            visited.last().unwrap(),
            &format!("{APP1}/"),
            "{rd:?} ended at {visited:?}"
        );
        assert_eq!(r.status, 200);
    }
}

// ---- X-Forwarded-Proto / X-Forwarded-Host ----------------------------------------------------

/// Without `public_url`, a trusted front proxy's `X-Forwarded-Proto: https` and
/// `X-Forwarded-Host` build the `redirect_uri` and make the cookies `Secure`; the callback
/// agrees (a full login through the front proxy works). From an untrusted peer both headers
/// are ignored: a client cannot point the `redirect_uri` at a host of its choosing, nor get
/// `Secure`/`Domain` cookies on a plain connection.
#[tokio::test]
async fn forwarded_proto_and_host_from_trusted_proxies_only() {
    let (port, untrusted_port) = (free_port(), free_port());
    let p = provider(&[port, untrusted_port]);
    let trusted = proxy(port, &p, "trusted_proxies = [\"127.0.0.1/32\"]", "").await;
    let untrusted = proxy(
        untrusted_port,
        &p,
        "trusted_proxies = [\"10.0.0.0/8\"]",
        "cookie_domain = \"example.test\"",
    )
    .await;
    let fwd = [
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "app.example.test"),
    ];
    let host = format!("127.0.0.1:{port}");

    // trusted: the session-less navigation and /.auth/login alike
    for path in ["/x", "/.auth/login?rd=%2Fx"] {
        let r = navigation(trusted.http(), &host, path, &fwd).await;
        assert_eq!(r.status, StatusCode::FOUND, "{path}: {}", r.text());
        let loc = r.headers["location"].to_str().unwrap();
        assert_eq!(
            redirect_uri(loc),
            "https://app.example.test/.auth/callback",
            "{path}"
        );
        let c = set_cookies(&r);
        assert!(
            c.iter()
                .any(|c| c.starts_with("__Host-portcullis_login_") && c.contains("Secure")),
            "{path}: {c:?}"
        );
    }
    // a list or a repeated header is no answer: the connection's scheme and Host count
    let r = navigation(
        trusted.http(),
        &host,
        "/x",
        &[
            ("x-forwarded-proto", "https, http"),
            ("x-forwarded-host", "a.example.test, app.example.test"),
        ],
    )
    .await;
    assert_eq!(
        redirect_uri(r.headers["location"].to_str().unwrap()),
        format!("http://{host}/.auth/callback")
    );
    // the callback agrees: a whole login through the front proxy
    let b = browser(trusted.http());
    let r = b
        .login("https://app.example.test", "/landed", "alice")
        .await;
    assert_eq!(r.json()["path"], "/landed");
    assert_eq!(upstream_user(&r).as_deref(), Some("alice"));
    let jar = b.jar.lock().unwrap().clone();
    assert!(
        jar.get("app.example.test")
            .is_some_and(|c| c.iter().any(|(n, _)| n == "__Host-portcullis")),
        "{jar:?}"
    );

    // untrusted peer: ignored
    let uhost = format!("127.0.0.1:{untrusted_port}");
    let evil = [
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "evil.example"),
    ];
    for path in ["/x", "/.auth/login?rd=%2Fx"] {
        let r = navigation(untrusted.http(), &uhost, path, &evil).await;
        assert_eq!(r.status, StatusCode::FOUND, "{path}: {}", r.text());
        assert_eq!(
            redirect_uri(r.headers["location"].to_str().unwrap()),
            format!("http://{uhost}/.auth/callback"),
            "{path}"
        );
        let c = set_cookies(&r);
        let pending = c
            .iter()
            .find(|c| c.contains("_login_"))
            .unwrap_or_else(|| panic!("{c:?}"));
        assert!(
            pending.starts_with("portcullis_login_")
                && !pending.contains("Secure")
                && !pending.contains("Domain"),
            "{pending}"
        );
    }
}
