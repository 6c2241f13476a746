//! Header hygiene over real sockets (issue 9, items 6 and 7): what a client may not tell the
//! upstream, what an upstream may not tell the browser, and which session secrets the proxy
//! refuses. Requests the client sends are raw bytes (`raw_http`), so no client library
//! normalizes the spellings under test; the echo upstream reports what reached it.

mod support;
use support::*;

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// Each header the contract removes on every route (besides the identity headers), in a
/// spelling of its own: case variants and `_` for `-` reach a WSGI/PHP/CGI app as the same
/// `HTTP_…` variable.
const ALWAYS: &[&str] = &[
    "X-Auth-Request-Roles",
    "x-auth-request-redirect",
    "X_Auth_Request_Groups",
    "X-AUTH-REQUEST-ANYTHING",
    "x_auth_request_user",
    "Remote-User",
    "REMOTE_USER",
    "remote_user",
    "X-Remote-User",
    "x_remote_user",
    "X-Original-URL",
    "x_original_url",
    "X-Rewrite-URL",
    "X_REWRITE_URL",
    "True-Client-IP",
    "true_client_ip",
    "X-HTTP-Method-Override",
    "x_http_method_override",
    "X-HTTP-Method",
    "X_Http_Method",
    "X-Method-Override",
    "x_method_override",
    "X-Forwarded-User",
    "x_forwarded_user",
    "X-Portcullis-Assertion",
    // httpoxy (CVE-2016-5385): CGI turns `Proxy` into HTTP_PROXY, an outbound proxy setting.
    "Proxy",
    "proxy",
    "PROXY",
    // Hop-by-hop anyway; its `_` spelling is not.
    "Proxy-Authorization",
    "proxy_authorization",
    "Proxy_Authorization",
    "X-Original-URI",
    "x_original_uri",
    "X-Original-Method",
    "X_ORIGINAL_METHOD",
    "X-Original-Host",
    "x_original_host",
    "X-Host",
    "x_host",
    "X-Forwarded",
    "x_forwarded",
    "Forwarded-For",
    "forwarded_for",
    "X-WEBAUTH-USER",
    "x-webauth-user",
    "x_webauth_user",
    "X-Authenticated-User",
    "x_authenticated_user",
    "X-User",
    "X_USER",
    "X-Email",
    "x_email",
    "Auth-User",
    "auth_user",
    // other auth proxies' and platforms' identity headers
    "Remote-Email",
    "remote_groups",
    "REMOTE-NAME",
    "X-Auth-User",
    "x_auth_email",
    "X-Username",
    "x-user-id",
    "X-Authenticated-Userid",
    "X-Consumer-Username",
    "x_consumer_id",
    "X-Webauth-Email",
    "X-WEBAUTH-NAME",
    "X-MS-CLIENT-PRINCIPAL",
    "X-Ms-Client-Principal-Name",
    "x_ms_client_principal_id",
    "X-Ms-Client-Principal-Idp",
    "X-Goog-Authenticated-User-Email",
    "x-goog-authenticated-user-id",
    "X-Goog-IAP-JWT-Assertion",
    "X-Amzn-Oidc-Identity",
    "x_amzn_oidc_data",
    "X-Amzn-Oidc-Accesstoken",
    "Cf-Access-Jwt-Assertion",
    "cf_access_authenticated_user_email",
    "X-Pomerium-Jwt-Assertion",
    "X-Pomerium-Claim-Email",
    "x_pomerium_claim_groups",
    "X-authentik-username",
    "x_authentik_groups",
    "X-Vouch-User",
    "X-Vouch-Idp-Claims-Groups",
    "Tailscale-User-Login",
    "tailscale_user_name",
    "X-Consumer-Custom-Id",
    "X-Credential-Identifier",
    "X-Anonymous-Consumer",
    "X-Authenticated-Scope",
    "x_authenticated_groups",
    "X-Pomerium-Claim-Sub",
    "X-WEBAUTH-GROUPS",
    "x-webauth-role",
    "X-MS-TOKEN-AAD-ID-TOKEN",
    "X-MS-CLIENT-PRINCIPAL-ROLES",
];

/// Client-address headers CDNs and load balancers set: removed from an untrusted peer.
const CLIENT_IP: &[&str] = &[
    "X-Client-IP",
    "x_client_ip",
    "Client-IP",
    "CLIENT_IP",
    "X-Cluster-Client-IP",
    "x_cluster_client_ip",
    "CF-Connecting-IP",
    "cf_connecting_ip",
    "Fastly-Client-IP",
    "fastly_client_ip",
    "X-ProxyUser-Ip",
    "x_proxyuser_ip",
    "X-Remote-Addr",
    "X_Remote_Addr",
    "X-Remote-IP",
    "x_remote_ip",
    "X-Scheme",
    "x_url_scheme",
    "X-URL-Scheme",
    "Front-End-Https",
    "X-Original-Proto",
    "X-Https",
    "HTTPS",
    "Cf-Visitor",
    "X-Client-Cert",
    "ssl_client_cert",
    "X-SSL-Client-Verify",
    "X-SSL-Client-S-DN",
    "X-ARR-ClientCert",
    "X-Arr-Ssl",
    "X-Originating-IP",
    "X_ORIGINATING_IP",
];

/// Set only by the proxy, from what it saw: removed (or replaced) from an untrusted peer.
const FORWARDING: &[&str] = &[
    "X-Forwarded-Prefix",
    "x_forwarded_prefix",
    "X-Forwarded-Ssl",
    "X_FORWARDED_SSL",
    "X-Forwarded-Scheme",
    "x-forwarded-scheme",
    "X-Forwarded-Server",
    "x_forwarded_server",
    "X-Forwarded-Port",
    "X-Forwarded-Proto",
    "x_forwarded_proto",
    "X-Forwarded-Host",
    "X_Forwarded_Host",
    "X-Forwarded-For",
    "x_forwarded_for",
    "Forwarded",
    "X-Real-IP",
    "x_real_ip",
];

/// The header lines `name: forged-<i>` for every name.
fn forged_lines(names: &[&str]) -> String {
    names
        .iter()
        .enumerate()
        .map(|(i, n)| format!("{n}: forged-{i}\r\n"))
        .collect()
}

/// What reached the upstream with a value from the client (`forged-…`), as `name: value`.
fn forged_upstream(e: &Echoed) -> Vec<String> {
    e.headers
        .iter()
        .filter(|(_, v)| v.contains("forged"))
        .map(|(n, v)| format!("{n}: {v}"))
        .collect()
}

/// Attack (issue 9 item 6): from an untrusted peer on an `auth = "none"` route, headers that
/// frameworks trust (`X-Forwarded-Prefix`/`-Ssl`/`-Scheme`/`-Server` in Rack and Spring,
/// `X-Original-URL`, `X-HTTP-Method-Override`, `True-Client-IP`, `Remote-User`, every
/// `X-Auth-Request-*`) reached the upstream unchanged. None may, in any spelling; the proxy
/// sets `X-Forwarded-For/Proto/Host` and `X-Real-IP` from what it saw.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_only_headers_never_reach_the_upstream_from_an_untrusted_peer() {
    let up = echo_upstream().await;
    let p = start_proxy(&server_toml(&route_toml(
        "public",
        "none",
        "path = \"/\"",
        &up.url(""),
    )))
    .await;
    let names: Vec<&str> = ALWAYS
        .iter()
        .chain(FORWARDING)
        .chain(CLIENT_IP)
        .copied()
        .collect();
    // in requests of at most 60 forged headers (the proxy's head limit is 100 headers)
    let mut last = None;
    for chunk in names.chunks(60) {
        let e = raw_echoed(&raw_get(p.http(), "/x", "app.local", &forged_lines(chunk)).await);
        assert_eq!(
            forged_upstream(&e),
            Vec::<String>::new(),
            "client headers that only a proxy may set reached the upstream"
        );
        last = Some(e);
    }
    let e = last.expect("some names");
    assert_eq!(e.header_all("x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(e.header_all("x-real-ip"), ["127.0.0.1"]);
    assert_eq!(e.header_all("x-forwarded-proto"), ["http"]);
    assert_eq!(e.header_all("x-forwarded-host"), ["app.local"]);
    // Beyond the values: no `_` spelling and no other forwarding name survives at all.
    for n in e.header_names() {
        assert!(!n.contains('_'), "{n} reached the upstream");
        assert!(
            !n.starts_with("x-auth-request-") && n != "forwarded",
            "{n} reached the upstream"
        );
    }
    // Ordinary headers pass, also those that only start like a stripped name.
    let e = raw_echoed(
        &raw_get(
            p.http(),
            "/x",
            "app.local",
            "X-Forwardedfor: a\r\nX-Request-Thing: b\r\nUser-Agent: c\r\nProxy-Thing: d\r\n\
             X-Users: e\r\nClient-IPs: f\r\nX-Hosts: g\r\n",
        )
        .await,
    );
    assert_eq!(e.header("x-forwardedfor"), Some("a"));
    assert_eq!(e.header("x-request-thing"), Some("b"));
    assert_eq!(e.header("user-agent"), Some("c"));
    assert_eq!(e.header("proxy-thing"), Some("d"));
    assert_eq!(e.header("x-users"), Some("e"));
    assert_eq!(e.header("client-ips"), Some("f"));
    assert_eq!(e.header("x-hosts"), Some("g"));
    p.shutdown().await;
}

/// Attack: behind a trusted proxy, the client's own `X-Real-IP` was copied to the upstream
/// (the front proxy passes it through). X-Real-IP is now derived from the X-Forwarded-For chain
/// (the rightmost address that is not a trusted proxy); the chain is extended with the peer; the
/// trusted proxy's other forwarding headers stay, but not their `_` spellings (a proxy writes
/// `-`; an `_` one came from its client). Headers only a proxy sets are removed even when a
/// trusted proxy passes them on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trusted_proxy_chain_is_extended_and_x_real_ip_derived() {
    let up = echo_upstream().await;
    let p = start_proxy(&server_toml(&format!(
        "trusted_proxies = [\"127.0.0.0/8\", \"10.0.0.0/8\"]\n{}",
        route_toml("public", "none", "path = \"/\"", &up.url(""))
    )))
    .await;
    let front = "X-Forwarded-For: 6.6.6.6, 203.0.113.7, 10.1.2.3\r\n\
                 X-Real-IP: 9.9.9.9\r\n\
                 X-Forwarded-Proto: https\r\n\
                 X-Forwarded-Host: app.example.com\r\n\
                 X-Forwarded-Prefix: /app\r\n\
                 Forwarded: for=203.0.113.7\r\n\
                 x_forwarded_for: 1.1.1.1\r\n\
                 x_real_ip: 1.1.1.1\r\n\
                 X-Original-URL: /admin\r\n\
                 X-Auth-Request-Roles: admin\r\n\
                 Remote-User: admin\r\n\
                 CF-Connecting-IP: 203.0.113.7\r\n\
                 X-Client-IP: 203.0.113.7\r\n\
                 x_cluster_client_ip: 1.1.1.1\r\n\
                 X-WEBAUTH-USER: admin\r\n\
                 Proxy: http://evil.example:3128\r\n\
                 X-Original-URI: /admin\r\n";
    let e = raw_echoed(&raw_get(p.http(), "/x", "app.local", front).await);
    assert_eq!(
        e.header_all("x-forwarded-for"),
        ["6.6.6.6, 203.0.113.7, 10.1.2.3, 127.0.0.1"]
    );
    assert_eq!(
        e.header_all("x-real-ip"),
        ["203.0.113.7"],
        "X-Real-IP is the rightmost untrusted address of the chain, not the client's copy"
    );
    assert_eq!(e.header("x-forwarded-proto"), Some("https"));
    assert_eq!(e.header("x-forwarded-host"), Some("app.example.com"));
    assert_eq!(e.header("x-forwarded-prefix"), Some("/app"));
    assert_eq!(e.header("forwarded"), Some("for=203.0.113.7"));
    // A CDN in front (trusted) keeps its client-address headers, not their `_` spellings.
    assert_eq!(e.header("cf-connecting-ip"), Some("203.0.113.7"));
    assert_eq!(e.header("x-client-ip"), Some("203.0.113.7"));
    for n in [
        "x_forwarded_for",
        "x_real_ip",
        "x-original-url",
        "x-auth-request-roles",
        "remote-user",
        "x_cluster_client_ip",
        "x-webauth-user",
        "proxy",
        "x-original-uri",
    ] {
        assert_eq!(e.header(n), None, "{n} reached the upstream: {e:?}");
    }
    // Only trusted hops: the leftmost is the client. No chain: the peer.
    let e = raw_echoed(
        &raw_get(
            p.http(),
            "/x",
            "app.local",
            "X-Forwarded-For: 10.9.9.9\r\nX-Real-IP: 9.9.9.9\r\n",
        )
        .await,
    );
    assert_eq!(e.header_all("x-real-ip"), ["10.9.9.9"]);
    let e = raw_echoed(&raw_get(p.http(), "/x", "app.local", "X-Real-IP: 9.9.9.9\r\n").await);
    assert_eq!(e.header_all("x-real-ip"), ["127.0.0.1"]);
    assert_eq!(e.header_all("x-forwarded-for"), ["127.0.0.1"]);
    p.shutdown().await;
}

// ------------------------------------------------------------------ Authorization

/// An unsigned JWT (`alg: none`) claiming to be alice with role admin.
const FORGED_JWT: &str = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJhbGljZSIsInByZWZlcnJlZF91c2VybmFtZSI6ImFsaWNlIiwicm9sZXMiOlsiYWRtaW4iXSwiZXhwIjo0MTAyNDQ0ODAwfQ.";

/// Attack (issue 9 item 7): bob's session plus a forged `Authorization: Bearer` claiming
/// alice/admin on a `login` route — the upstream got both, and an app that reads the token
/// (without verifying it, or verifying it badly) saw alice. With `authorization = "auto"` (the
/// default) the client's header is removed where a session authenticated the request; an
/// explicit `"pass"` still passes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_route_drops_the_clients_authorization_header() {
    use support::{Browser, Provider, ProxyOpts, free_port, proxy_config, session_cfg};
    let (port, port_pass) = (free_port(), free_port());
    let provider = Provider::start(&[port, port_pass], &[]);
    let upstream = support::echo_upstream_map().await;
    let opts = |port| ProxyOpts {
        port,
        issuer: provider.issuer.clone(),
        upstream,
        client_id: "web",
        client_auth: "client_secret = \"web-secret\"".into(),
        session: session_cfg(""),
        admin: false,
    };
    let _auto = support::start_proxy_ready(&proxy_config(&opts(port))).await;
    let base = format!("http://127.0.0.1:{port}");
    let b = Browser::new();
    let r = b.login(&base, "/home", "bob").await;
    assert_eq!(r.json()["headers"]["x-forwarded-user"], "bob");

    let forged = format!("Bearer {FORGED_JWT}");
    let r = b
        .request(
            http::Method::GET,
            &format!("{base}/home"),
            None,
            &[("authorization", &forged)],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let headers = &r.json()["headers"];
    assert_eq!(headers["x-forwarded-user"], "bob");
    assert_eq!(
        headers.get("authorization"),
        None,
        "the client's Authorization reached the upstream of a login route: {headers}"
    );
    // login_or_bearer: with an Authorization header the token alone decides (here: refused).
    let r = b
        .request(
            http::Method::GET,
            &format!("{base}/api/x"),
            None,
            &[("authorization", &forged)],
        )
        .await;
    assert_eq!(r.status, 401, "{}", r.body);

    // `authorization = "pass"` keeps passing it (same session, another proxy with that setting).
    let _pass = support::start_proxy_ready(&format!(
        "{}\n[headers]\nauthorization = \"pass\"\n",
        proxy_config(&opts(port_pass))
    ))
    .await;
    for (name, value) in b.cookies(&format!("127.0.0.1:{port}")) {
        b.set_cookie_raw(&format!("127.0.0.1:{port_pass}"), &name, &value);
    }
    let r = b
        .request(
            http::Method::GET,
            &format!("http://127.0.0.1:{port_pass}/home"),
            None,
            &[("authorization", &forged)],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["headers"]["x-forwarded-user"], "bob");
    assert_eq!(r.json()["headers"]["authorization"], forged.as_str());
}

// ------------------------------------------------------------------ cookie names

/// Attack (review of issue 9): an upstream planted `\u{a0}portcullis=<sealed session>` (see
/// [`upstream_set_cookie_for_the_proxys_cookies_is_dropped`]); Chromium sends it back as
/// `Cookie: \xc2\xa0portcullis=…`, and the proxy read that name as its own (`str::trim` drops
/// Unicode whitespace) — bob's sealed cookie under such a name was a 200 as bob. Names are now
/// compared byte for byte after trimming SP/HTAB only: each Unicode-whitespace spelling is no
/// session (401). The same request with the real name is bob (the cookie is valid), and the
/// proxy's own cookie never reaches the upstream.
///
/// Also: `X-WEBAUTH-USER` (stripped from every client) configured as the identity header is set
/// by the proxy, the client's copies in any spelling removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_cookie_under_a_unicode_whitespace_name_is_no_session() {
    use support::{Browser, Provider, ProxyOpts, free_port, proxy_config, session_cfg};
    let port = free_port();
    let provider = Provider::start(&[port], &[]);
    let up = echo_upstream().await;
    let opts = ProxyOpts {
        port,
        issuer: provider.issuer.clone(),
        upstream: up.addr,
        client_id: "web",
        client_auth: "client_secret = \"web-secret\"".into(),
        session: session_cfg(""),
        admin: false,
    };
    let _proxy = support::start_proxy_ready(&format!(
        "{}\n[headers]\nuser = \"X-WEBAUTH-USER\"\n",
        proxy_config(&opts)
    ))
    .await;
    let base = format!("http://127.0.0.1:{port}");
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let b = Browser::new();
    b.login(&base, "/home", "bob").await;
    let session: Vec<(String, String)> = b
        .cookies(&format!("127.0.0.1:{port}"))
        .into_iter()
        .filter(|(n, _)| n.starts_with("portcullis") && !n.contains("_login_"))
        .collect();
    assert!(!session.is_empty(), "no session cookie after login");
    let get = |cookie: Vec<u8>| async move {
        let mut req = format!(
            "GET /home HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: application/json\r\n\
             X-WEBAUTH-USER: admin\r\nx_webauth_user: admin\r\nCookie: "
        )
        .into_bytes();
        req.extend_from_slice(&cookie);
        req.extend_from_slice(b"; app=1\r\nConnection: close\r\n\r\n");
        raw_http(addr, req).await
    };
    let cookie_with = |pre: &[u8], post: &[u8]| {
        let mut c = Vec::new();
        for (i, (n, v)) in session.iter().enumerate() {
            if i > 0 {
                c.extend_from_slice(b"; ");
            }
            c.extend_from_slice(pre);
            c.extend_from_slice(n.as_bytes());
            c.extend_from_slice(post);
            c.push(b'=');
            c.extend_from_slice(v.as_bytes());
        }
        c
    };
    // The real name: bob, the proxy's header alone, and no proxy cookie upstream.
    let r = get(cookie_with(b"", b"")).await;
    assert_eq!(raw_status(&r), 200, "{r}");
    let e = raw_echoed(&r);
    assert_eq!(e.header_all("x-webauth-user"), ["bob"], "{e:?}");
    assert!(!e.header_names().iter().any(|n| n.contains('_')), "{e:?}");
    assert_eq!(e.header_all("cookie"), ["app=1"], "{e:?}");
    // SP/HTAB around the name are OWS (browsers trim them as well).
    let r = get(cookie_with(b" \t", b"\t ")).await;
    assert_eq!(raw_status(&r), 200, "{r}");
    for (pre, post) in [
        (&b"\xc2\xa0"[..], &b""[..]),
        (b"\xe3\x80\x80", b""),
        (b"\xe2\x80\x83", b""),
        (b"\xc2\x85", b""),
        (b"", b"\xc2\xa0"),
        (b"\xef\xbb\xbf", b""),
    ] {
        let r = get(cookie_with(pre, post)).await;
        assert_eq!(
            raw_status(&r),
            401,
            "{pre:x?}portcullis{post:x?} was taken for the session cookie:\n{r}"
        );
        assert!(!r.contains("\"bob\""), "{r}");
    }
}

// ------------------------------------------------------------------ WebSocket

/// An upstream on raw sockets: each connection's request head (up to the blank line) is sent on
/// the channel, `answer` is written back, and then every byte received is echoed (a spliced
/// connection shows through).
async fn raw_upstream(answer: &'static str) -> (Server, mpsc::UnboundedReceiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                continue;
            };
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && head.len() < 65536 {
                    match s.read(&mut byte).await {
                        Ok(1) => head.push(byte[0]),
                        _ => return,
                    }
                }
                let _ = tx.send(String::from_utf8_lossy(&head).into_owned());
                if s.write_all(answer.as_bytes()).await.is_err() {
                    return;
                }
                let mut buf = [0u8; 1024];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    (Server::from_task(addr, task), rx)
}

const WS_101: &str = "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
const H2C_101: &str =
    "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n";

/// A WebSocket handshake from the client with `extra` header lines.
fn ws_request(connection: &str, upgrade: &str, extra: &str) -> String {
    format!(
        "GET /ws HTTP/1.1\r\nHost: app.local\r\nConnection: {connection}\r\nUpgrade: {upgrade}\r\n{extra}Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
}

/// Reads a response head (to the blank line), then whatever follows within `wait`.
async fn read_head_then(s: &mut TcpStream, wait: Duration) -> (String, Vec<u8>) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    let read_head = async {
        while !head.ends_with(b"\r\n\r\n") {
            match s.read(&mut byte).await {
                Ok(1) => head.push(byte[0]),
                _ => break,
            }
        }
    };
    tokio::time::timeout(STEP, read_head)
        .await
        .expect("response head");
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(wait, s.read_to_end(&mut rest)).await;
    (String::from_utf8_lossy(&head).into_owned(), rest)
}

fn ws_proxy_toml(upstream: SocketAddr, websocket: bool) -> String {
    server_toml(&route_toml(
        "ws",
        "none",
        &format!("path = \"/\"\nwebsocket = {websocket}"),
        &format!("http://{upstream}"),
    ))
}

/// Attack (issue 9 item 7): a WebSocket route forwarded `Upgrade: h2c, websocket` and
/// `HTTP2-Settings` as sent, inviting the upstream to switch to h2c — a raw HTTP/2 connection
/// from the client to the upstream, past every later check. Only `Upgrade: websocket` goes on,
/// with no `HTTP2-Settings`; the splice then works both ways. An `Upgrade` without websocket is
/// no upgrade at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_handshake_forwards_only_websocket() {
    let (up, mut heads) = raw_upstream(WS_101).await;
    let p = start_proxy(&ws_proxy_toml(up.addr, true)).await;
    for (connection, upgrade, extra) in [
        (
            "Upgrade",
            "h2c, websocket",
            "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n",
        ),
        (
            "Upgrade, HTTP2-Settings",
            "websocket, h2c",
            "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n",
        ),
        ("keep-alive, Upgrade", "WebSocket", ""),
    ] {
        let mut s = TcpStream::connect(p.http()).await.expect("connect");
        s.write_all(ws_request(connection, upgrade, extra).as_bytes())
            .await
            .expect("write");
        let got = tokio::time::timeout(STEP, heads.recv())
            .await
            .expect("upstream saw the request")
            .expect("head")
            .to_ascii_lowercase();
        let upgrades: Vec<&str> = got
            .lines()
            .filter_map(|l| l.strip_prefix("upgrade:"))
            .map(str::trim)
            .collect();
        assert_eq!(
            upgrades,
            ["websocket"],
            "Upgrade {upgrade:?} went on as:\n{got}"
        );
        assert!(!got.contains("http2-settings"), "{got}");
        assert!(!got.contains("h2c"), "{got}");
        assert!(got.contains("\r\nconnection: upgrade\r\n"), "{got}");
        assert!(got.contains("sec-websocket-key:"), "{got}");
        // Spliced: the client's bytes reach the upstream and come back.
        let (head, _) = read_head_then(&mut s, Duration::ZERO).await;
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        s.write_all(b"ping-through-splice").await.expect("write");
        let mut buf = [0u8; 19];
        tokio::time::timeout(STEP, s.read_exact(&mut buf))
            .await
            .expect("echo")
            .expect("read");
        assert_eq!(&buf, b"ping-through-splice");
    }
    // `Upgrade: h2c` alone (no websocket) is not an upgrade: no Upgrade reaches the upstream.
    let (up2, mut heads2) =
        raw_upstream("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok").await;
    let p2 = start_proxy(&ws_proxy_toml(up2.addr, true)).await;
    let r = raw_http(
        p2.http(),
        ws_request(
            "Upgrade, HTTP2-Settings",
            "h2c",
            "HTTP2-Settings: AAMAAABk\r\n",
        ),
    )
    .await;
    assert_eq!(raw_status(&r), 200, "{r}");
    let got = heads2.recv().await.expect("head").to_ascii_lowercase();
    assert!(!got.contains("upgrade"), "{got}");
    assert!(!got.contains("http2-settings"), "{got}");
    p.shutdown().await;
    p2.shutdown().await;
}

/// Attack: the upstream answers a WebSocket handshake with `101` to `h2c` (or answers 101 to a
/// request on a route without `websocket = true`); the proxy spliced (or passed the 101 on),
/// handing the client a raw connection of another protocol. Such a 101 is a bad answer: `502`,
/// nothing spliced, none of the upstream's bytes after it reach the client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_switching_to_anything_but_websocket_is_refused() {
    for (answer, websocket) in [
        (H2C_101, true),
        (
            "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket, h2c\r\n\r\n",
            true,
        ),
        (
            "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n\r\n",
            true,
        ),
        (WS_101, false),
    ] {
        let (up, _heads) = raw_upstream(answer).await;
        let p = start_proxy(&ws_proxy_toml(up.addr, websocket)).await;
        let mut s = TcpStream::connect(p.http()).await.expect("connect");
        s.write_all(ws_request("Upgrade", "websocket", "").as_bytes())
            .await
            .expect("write");
        let (head, _) = read_head_then(&mut s, Duration::ZERO).await;
        assert!(
            head.starts_with("HTTP/1.1 502"),
            "upstream answer {answer:?} (websocket = {websocket}) gave:\n{head}"
        );
        // The connection was not spliced: bytes written now get no echo from the upstream.
        let _ = s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await;
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(Duration::from_millis(500), s.read_to_end(&mut rest)).await;
        let rest = String::from_utf8_lossy(&rest);
        assert!(!rest.contains("PRI * HTTP/2.0"), "spliced: {rest}");
        p.shutdown().await;
    }
}

// ------------------------------------------------------------------ Set-Cookie

/// Attack (issue 9 item 7): an upstream (or a header injection in it) answers `Set-Cookie`
/// naming the proxy's own cookies — plants a session (fixation), replaces or clears one. Those
/// are dropped on the way to the browser in every form the browser would store under one of the
/// proxy's names (`__Host-`/`__Secure-` in any case, chunks, pending-login cookies, padded or
/// nameless); the app's own cookies pass.
///
/// Attack (review of issue 9): `Set-Cookie: \u{a0}sid=<sealed session>` passed (the filter
/// trimmed ASCII only); Chromium stores that name and sends `\xc2\xa0sid=…` back. Any name that
/// is one of the proxy's after trimming every kind of whitespace and ignoring ASCII case is
/// dropped now (U+00A0, U+3000, U+2003, U+0085, U+FEFF, leading or trailing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_set_cookie_for_the_proxys_cookies_is_dropped() {
    const ANSWER: &str = "HTTP/1.1 200 OK\r\n\
        Set-Cookie: app=1; Path=/\r\n\
        Set-Cookie: sid=planted; Path=/; HttpOnly\r\n\
        Set-Cookie: __Host-sid=planted; Path=/; Secure\r\n\
        Set-Cookie: __HOST-sid=planted; Path=/; Secure\r\n\
        Set-Cookie: __Secure-sid=planted; Path=/; Secure; Domain=example.com\r\n\
        Set-Cookie: __secure-sid=planted; Path=/; Secure\r\n\
        Set-Cookie: sid.1=planted; Path=/\r\n\
        Set-Cookie: __Host-sid.2=planted; Path=/; Secure\r\n\
        Set-Cookie: sid_login_0123456789abcdef=planted; Path=/\r\n\
        Set-Cookie: __Host-sid_login_0123456789abcdef=planted; Path=/; Secure\r\n\
        Set-Cookie:  sid =planted; Path=/\r\n\
        Set-Cookie: =sid=planted; Path=/\r\n\
        Set-Cookie: sid=; Max-Age=0; Path=/\r\n\
        Set-Cookie: Sid=case-variant; Path=/\r\n\
        Set-Cookie: SID.1=case-variant; Path=/\r\n\
        Set-Cookie: \u{a0}sid=planted; Path=/\r\n\
        Set-Cookie: \u{3000}sid=planted; Path=/\r\n\
        Set-Cookie: \u{2003}sid=planted; Path=/\r\n\
        Set-Cookie: \u{85}sid=planted; Path=/\r\n\
        Set-Cookie: sid\u{a0}=planted; Path=/\r\n\
        Set-Cookie: \u{feff}sid.1=planted; Path=/\r\n\
        Set-Cookie: __Host-\u{a0}sid=planted; Path=/; Secure\r\n\
        Set-Cookie: \u{a0}__Host-sid_login_abc=planted; Path=/; Secure\r\n\
        Set-Cookie: =\u{a0}sid=planted; Path=/\r\n\
        Set-Cookie: \u{a0}sidebar=open; Path=/\r\n\
        Set-Cookie: sidebar=open; Path=/\r\n\
        Content-Length: 2\r\nConnection: close\r\n\r\nok";
    let (up, _heads) = raw_upstream(ANSWER).await;
    let hex = "5d0c3b2a19f8e7d6c5b4a39281706f5e4d3c2b1a09f8e7d6c5b4a3928170ffee";
    let p = start_proxy(&server_toml(&format!(
        "[session]\nsecret = \"{hex}\"\ncookie_name = \"sid\"\n{}",
        route_toml(
            "app",
            "none",
            "path = \"/\"",
            &format!("http://{}", up.addr)
        )
    )))
    .await;
    let r = raw_get(p.http(), "/", "app.local", "").await;
    assert_eq!(raw_status(&r), 200, "{r}");
    let cookies: Vec<&str> = r
        .lines()
        .filter_map(|l| {
            l.strip_prefix("set-cookie: ")
                .or(l.strip_prefix("Set-Cookie: "))
        })
        .collect();
    assert_eq!(
        cookies,
        [
            "app=1; Path=/",
            "\u{a0}sidebar=open; Path=/",
            "sidebar=open; Path=/"
        ],
        "{r}"
    );
    p.shutdown().await;
}

// ------------------------------------------------------------------ session secrets

/// Attack (issue 9 item 7): known placeholder secrets passed — `config/portcullis.example.toml`
/// ran with its public default when `SESSION_SECRET` was unset, and the Kubernetes example's
/// placeholder passed too; whoever knows the value seals sessions of their choosing. Each
/// secret published in the examples/docs, any near miss of one or secret that looks like a
/// placeholder, and any secret with fewer than 8 distinct characters, is a config error in
/// `check` and `run`: exit 1, file:line:col, the key and the fix.
#[test]
fn placeholder_session_secrets_are_refused() {
    let dir = temp_dir();
    let config = |name: &str, session: &str| {
        let path = dir.path().join(name);
        std::fs::write(
            &path,
            format!(
                "[server]\nlisten = \"127.0.0.1:0\"\n\n[session]\n{session}\n\n[[route]]\nname = \"app\"\npath = \"/\"\nupstream = \"http://127.0.0.1:9\"\nauth = \"none\"\n"
            ),
        )
        .expect("write config");
        path.to_str().expect("utf-8 path").to_string()
    };
    let placeholders = portcullis::config::PLACEHOLDER_SECRETS;
    for (i, secret) in placeholders.iter().enumerate() {
        let path = config(&format!("p{i}.toml"), &format!("secret = \"{secret}\""));
        for cmd in ["check", "run"] {
            let out = cli(&[cmd, "--config", &path]);
            assert_eq!(out.code, 1, "{cmd} {secret}: {}{}", out.stdout, out.stderr);
            let at = format!("{path}:5:10: `session.secret`");
            assert!(
                out.stderr.contains(&at),
                "{cmd}: no {at:?} in:\n{}",
                out.stderr
            );
            assert!(out.stderr.contains("placeholder"), "{}", out.stderr);
            assert!(
                out.stderr.contains("openssl rand -hex 32"),
                "{}",
                out.stderr
            );
        }
    }
    // From a file (the Kubernetes example's shape), and through previous_secrets.
    std::fs::write(dir.path().join("session-secret"), placeholders[2]).unwrap();
    let path = config("file.toml", "secret_file = \"session-secret\"");
    let out = cli(&["check", "--config", &path]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains(":5:15: `session.secret`") && out.stderr.contains("secret_file"),
        "{}",
        out.stderr
    );
    let hex = "8e1f0a9b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f6071829304a5b6c7";
    let path = config(
        "prev.toml",
        &format!(
            "secret = \"{hex}\"\nprevious_secrets = [\"{}\"]",
            placeholders[0]
        ),
    );
    let out = cli(&["check", "--config", &path]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("`session.previous_secrets[0]`"),
        "{}",
        out.stderr
    );
    // Few distinct characters: refused; a hex secret (16 possible characters) passes.
    let path = config("weak.toml", &format!("secret = \"{}\"", "abcabc".repeat(8)));
    let out = cli(&["check", "--config", &path]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("only 3 distinct characters") && out.stderr.contains(":5:10:"),
        "{}",
        out.stderr
    );
    let path = config("good.toml", &format!("secret = \"{hex}\""));
    let out = cli(&["check", "--config", &path]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);

    // Near misses (review of issue 9) passed `check`: compared normalized (lower case, letters
    // and digits only), sharing 16 characters with a published placeholder, or containing a
    // placeholder word or an alphabet run, they are refused too.
    for (i, near) in [
        "change_me_to_32_random_bytes_at_least!!",
        "demo-only-session-secret-0123456789abcde",
        "0123456789abcdef0123456789abcdef",
        "your-session-secret-goes-here-32-bytes!!",
    ]
    .iter()
    .enumerate()
    {
        let path = config(&format!("near{i}.toml"), &format!("secret = \"{near}\""));
        let out = cli(&["check", "--config", &path]);
        assert_eq!(out.code, 1, "{near}: {}{}", out.stdout, out.stderr);
        assert!(
            out.stderr.contains(":5:10: `session.secret`") && out.stderr.contains("placeholder"),
            "{near}: {}",
            out.stderr
        );
    }

    // A refused secret is the only error: the [session] section is there, so a login route
    // is not also told there is none.
    let path = dir.path().join("login.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n\n[session]\nsecret = \"{}\"\n\n[providers.op]\nissuer = \"https://op.example\"\nclient_id = \"c\"\nclient_secret = \"s\"\n\n[[route]]\nname = \"app\"\npath = \"/\"\nupstream = \"http://127.0.0.1:9\"\nauth = \"login\"\n",
            placeholders[0]
        ),
    )
    .unwrap();
    let out = cli(&["check", "--config", path.to_str().unwrap()]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("`session.secret`"), "{}", out.stderr);
    assert!(
        !out.stderr.contains("no [session] section"),
        "a misleading second error: {}",
        out.stderr
    );

    // The shipped example takes the secret from the environment: unset → the variable is named;
    // its old public default → refused; a generated one → passes.
    let example = support::repo().join("config/portcullis.example.toml");
    let example = example.to_str().unwrap();
    let out = cli_env(&["check", "--config", example], &[], &["SESSION_SECRET"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("SESSION_SECRET"), "{}", out.stderr);
    let out = cli_env(
        &["check", "--config", example],
        &[("SESSION_SECRET", placeholders[0])],
        &[],
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("`session.secret`"), "{}", out.stderr);
    let out = cli_env(
        &["check", "--config", example],
        &[("SESSION_SECRET", hex)],
        &[],
    );
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
}
