//! Header hygiene over real sockets: what a client may not tell the upstream (forged identity,
//! forwarding and proxy-only headers, a login route's `Authorization`, a cookie under a
//! look-alike name), what an upstream may not tell the browser (hop-by-hop headers, the proxy's
//! own cookies), configured header names stripped everywhere, and the header size limit
//! (`431`). Requests the client sends are raw bytes (`raw_http`), so no client library
//! normalizes the spellings under test; the echo upstream reports what reached it.

mod support;
use support::*;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

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

/// Attack (review of issue 15): a `Connection` value holding a byte that is not text (`é`) was
/// skipped whole, so the headers it named crossed the proxy — an upstream's internal header
/// reached the client, a client's reached the upstream. They are removed now, either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_with_non_text_bytes_still_removes_what_it_names() {
    const ANSWER: &str = "HTTP/1.1 200 OK\r\n\
        Connection: X-Internal, caf\u{e9}\r\n\
        X-Internal: secret\r\n\
        X-App: 1\r\n\
        Content-Length: 2\r\n\r\nok";
    let (up, mut heads) = raw_upstream(ANSWER).await;
    let p = start_proxy(&server_toml(&route_toml(
        "app",
        "none",
        "path = \"/\"",
        &format!("http://{}", up.addr),
    )))
    .await;
    let r = raw_get(
        p.http(),
        "/",
        "app.local",
        "Connection: X-Drop, caf\u{e9}\r\nX-Drop: from-client\r\n",
    )
    .await;
    assert_eq!(raw_status(&r), 200, "{r}");
    let head = r
        .split("\r\n\r\n")
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    assert!(!head.contains("x-internal"), "reached the client:\n{head}");
    assert!(head.contains("x-app: 1"), "{head}");
    let seen = heads
        .recv()
        .await
        .expect("the upstream got a head")
        .to_ascii_lowercase();
    assert!(seen.contains("get / http/1.1"), "{seen}");
    assert!(!seen.contains("x-drop"), "reached the upstream:\n{seen}");
    p.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Identity, forwarding and hop-by-hop headers on the proxy core, and the header size limit
// ---------------------------------------------------------------------------------------------

/// Identity headers a client forges are removed on a `none` route in every spelling an upstream
/// might fold into the same name (CVE-2025-64484), including names configured under `[headers]`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_identity_headers_are_stripped() {
    let up = echo_upstream().await;
    let c = server_toml(&format!(
        "\n[headers]\nuser = \"X-Remote-User\"\nemail = \"X-Custom_Email\"\n[headers.claims]\n\"X-User-Org\" = \"org\"\n{}",
        route("app", "path = \"/\"", &up.url(""))
    ));
    let proxy = start_proxy(&c).await;
    let forged = [
        "X-Forwarded-User",
        "x-forwarded-user",
        "x_forwarded_user",
        "X_FORWARDED_USER",
        "X-FORWARDED-EMAIL",
        "X-Forwarded_Email",
        "X-Forwarded-Roles",
        "X-Forwarded-Preferred-Username",
        "X-Forwarded-Name",
        "X-Forwarded-Groups",
        "X-Forwarded-Access-Token",
        "X-Auth-Request-User",
        "X-Portcullis-Anything",
        "x_portcullis_assertion",
        "X-PORTCULLIS-ROLES",
        "X-Remote-User",
        "x_remote_user",
        "X-REMOTE-USER",
        "X-Custom-Email",
        "x_custom_email",
        "X-User-Org",
        "x_user_org",
    ];
    let mut extra = String::new();
    for h in forged {
        extra += &format!("{h}: forged\r\n");
    }
    // A near miss of an identity name passes (`X-Forwarded-Userx` no longer would: from an
    // untrusted peer every `X-Forwarded-*` is removed, see tests/headers.rs).
    extra += "X-Innocent: kept\r\nX-Remote-Userx: kept\r\n";
    let raw = raw_get(proxy.http(), "/", "app.local", &extra).await;
    assert_eq!(raw_status(&raw), 200, "{raw}");
    let e = raw_echoed(&raw);
    let leaked: Vec<_> = e.headers.iter().filter(|(_, v)| v == "forged").collect();
    assert!(
        leaked.is_empty(),
        "forged identity headers reached the upstream: {leaked:?}"
    );
    assert_eq!(e.header("x-innocent"), Some("kept"));
    assert_eq!(e.header("x-remote-userx"), Some("kept"));
    proxy.shutdown().await;
}

/// X-Forwarded-For/Proto/Host from an untrusted client are replaced; from a trusted proxy they
/// are kept and the peer is appended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_headers_trusted_only_from_trusted_proxies() {
    let up = echo_upstream().await;
    let forged = "X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: evil.example\r\nX-Real-IP: 6.6.6.6\r\nForwarded: for=6.6.6.6\r\nX-Forwarded-Port: 1\r\n";

    let untrusted = start_proxy(&server_toml(&route("app", "path = \"/\"", &up.url("")))).await;
    let e = raw_echoed(&raw_get(untrusted.http(), "/", "app.local", forged).await);
    assert_eq!(e.header_all("x-forwarded-for"), vec!["127.0.0.1"], "{e:?}");
    assert_eq!(e.header("x-forwarded-proto"), Some("http"));
    assert_eq!(e.header("x-forwarded-host"), Some("app.local"));
    assert_eq!(e.header("x-real-ip"), Some("127.0.0.1"));
    assert_eq!(e.header("forwarded"), None);
    assert_eq!(e.header("x-forwarded-port"), None);
    // without any forwarded headers: set from the connection
    let e = raw_echoed(&raw_get(untrusted.http(), "/", "app.local:8080", "").await);
    assert_eq!(e.header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(e.header("x-forwarded-proto"), Some("http"));
    assert_eq!(e.header("x-forwarded-host"), Some("app.local:8080"));
    untrusted.shutdown().await;

    let trusted = start_proxy(&server_toml(&format!(
        "trusted_proxies = [\"127.0.0.0/8\"]\n{}",
        route("app", "path = \"/\"", &up.url(""))
    )))
    .await;
    let e = raw_echoed(&raw_get(trusted.http(), "/", "app.local", forged).await);
    assert_eq!(
        e.header_all("x-forwarded-for").join(", "),
        "6.6.6.6, 127.0.0.1",
        "{e:?}"
    );
    assert_eq!(e.header("x-forwarded-proto"), Some("https"));
    assert_eq!(e.header("x-forwarded-host"), Some("evil.example"));
    let e = raw_echoed(&raw_get(trusted.http(), "/", "app.local", "").await);
    assert_eq!(e.header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(e.header("x-forwarded-proto"), Some("http"));
    assert_eq!(e.header("x-forwarded-host"), Some("app.local"));
    trusted.shutdown().await;
}

/// Hop-by-hop headers (and those `Connection` names) do not cross the proxy, either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_headers_removed() {
    let up = echo_upstream().await;
    let proxy = start_proxy(&server_toml(&route("app", "path = \"/\"", &up.url("")))).await;
    let raw = raw_http(
        proxy.http(),
        "GET /?hop=1 HTTP/1.1\r\nHost: app.local\r\nConnection: close, X-Client-Hop\r\nX-Client-Hop: 1\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nProxy-Authorization: Basic Zm9vOmJhcg==\r\nProxy-Connection: keep-alive\r\nUpgrade: h2c\r\nX-End-To-End: 1\r\n\r\n",
    )
    .await;
    assert_eq!(raw_status(&raw), 200, "{raw}");
    let e = raw_echoed(&raw);
    for h in [
        "x-client-hop",
        "keep-alive",
        "te",
        "proxy-authorization",
        "proxy-connection",
        "upgrade",
    ] {
        assert_eq!(e.header(h), None, "{h} reached the upstream: {e:?}");
    }
    assert!(
        e.header("connection")
            .is_none_or(|v| !v.to_ascii_lowercase().contains("x-client-hop")),
        "{e:?}"
    );
    assert_eq!(e.header("x-end-to-end"), Some("1"));
    // response side
    let head = raw
        .split("\r\n\r\n")
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    for h in ["x-upstream-hop:", "keep-alive:", "proxy-authenticate:"] {
        assert!(!head.contains(h), "{h} reached the client:\n{head}");
    }
    assert!(head.contains("x-echo: 1"), "{head}");
    proxy.shutdown().await;
}

/// A 64 KiB header (above the default 32 KiB head limit) gets 431 and a close, not a hang.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_header_is_431() {
    let up = echo_upstream().await;
    let proxy = start_proxy(&server_toml(&route("app", "path = \"/\"", &up.url("")))).await;
    let big = "a".repeat(64 * 1024);
    let t0 = Instant::now();
    let raw = raw_get(proxy.http(), "/", "app.local", &format!("X-Big: {big}\r\n")).await;
    assert_eq!(raw_status(&raw), 431, "{:?}", &raw[..raw.len().min(200)]);
    assert!(t0.elapsed() < Duration::from_secs(5));
    // 20 KiB (under the limit) passes
    let ok = raw_get(
        proxy.http(),
        "/",
        "app.local",
        &format!("X-Big: {}\r\n", &big[..20 * 1024]),
    )
    .await;
    assert_eq!(raw_status(&ok), 200);
    proxy.shutdown().await;
}

/// A configured identity header name of any length is stripped (no length cut-off).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_configured_identity_header_is_stripped() {
    let up = echo_upstream().await;
    let long = format!("X-Org-{}", "a".repeat(150));
    let c = server_toml(&format!(
        "\n[headers.claims]\n\"{long}\" = \"org\"\n{}",
        route("app", "path = \"/\"", &up.url(""))
    ));
    let proxy = start_proxy(&c).await;
    let folded = long.to_ascii_lowercase().replace('-', "_");
    let long_portcullis = format!("X-Portcullis-{}", "b".repeat(200));
    let raw = raw_get(
        proxy.http(),
        "/",
        "app.local",
        &format!("{long}: forged\r\n{folded}: forged\r\n{long_portcullis}: forged\r\n"),
    )
    .await;
    let e = raw_echoed(&raw);
    let leaked: Vec<_> = e
        .headers
        .iter()
        .filter(|(_, v)| v == "forged")
        .map(|(n, _)| n.len())
        .collect();
    assert!(
        leaked.is_empty(),
        "forged headers of these name lengths reached the upstream: {leaked:?}"
    );
    proxy.shutdown().await;
}

/// Names configured only on one route (`[route.headers]`) or as the assertion header are
/// stripped on every route, including `none` routes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_route_and_assertion_header_names_are_stripped_everywhere() {
    let up = echo_upstream().await;
    let c = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[headers]\nassertion = \"X-Signed-Identity\"\naccess_token = \"X-Token\"\n\
[[route]]\nname = \"special\"\npath = \"/special\"\nupstream = \"{u}\"\nauth = \"none\"\n[route.headers]\nuser = \"X-Special-User\"\nroles = \"X-Special-Roles\"\n\
[[route]]\nname = \"app\"\npath = \"/\"\nupstream = \"{u}\"\nauth = \"none\"\n",
        u = up.url("")
    );
    let proxy = start_proxy(&c).await;
    for path in ["/", "/special"] {
        let raw = raw_get(
            proxy.http(),
            path,
            "app.local",
            "X-Special-User: forged\r\nx_special_roles: forged\r\nX-Signed-Identity: forged\r\nx_signed_identity: forged\r\nX-Token: forged\r\n",
        )
        .await;
        let e = raw_echoed(&raw);
        assert!(
            e.headers.iter().all(|(_, v)| v != "forged"),
            "{path}: {e:?}"
        );
    }
    proxy.shutdown().await;
}
