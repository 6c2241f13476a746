//! The one test harness of the integration tests: real servers on loopback, no mocks. Every
//! file in `tests/*.rs` opens with `mod support;` and takes what it needs from here.
//!
//! - [`servers`]: [`Server`] (an accept loop on `127.0.0.1:0`, stopped on drop) and the
//!   upstreams built on it: the JSON echo upstream ([`echo_upstream`], answering [`Echoed`];
//!   [`echo_upstream_map`] for the flat `{"path", "headers": {…}}` shape the login tests read),
//!   its TLS twin, the WebSocket echo, [`closed_port`].
//! - [`proxy`]: the proxy in-process ([`start_proxy`], [`start_proxy_ready`] once its providers
//!   are ready, [`wait_ready`] on `/readyz`), config builders ([`server_toml`], [`route_toml`],
//!   [`tls_server_toml`]), the real binary ([`BinaryProxy`], [`cli`], [`cli_env`]).
//! - [`client`]: the one HTTP client ([`send`] to an address, [`send_to`] to a URL,
//!   [`http_req`], [`send_tls`] and friends) and the raw-socket one ([`raw_http`],
//!   [`raw_get`]) for requests a client library would normalize.
//! - [`fronts`]: real front proxies for forward-auth — Debian's nginx ([`start_nginx`]) and
//!   Caddy ([`start_caddy_on`]) as child processes — and [`doc_snippet`], the marked config
//!   snippets of `docs/forward-auth.md` the tests run.
//! - [`answers`]: assertions on bearer challenges ([`assert_challenge`], [`assert_forbidden`],
//!   [`www`], [`message`]) and the method-restricted forward-auth fixture ([`method_config`],
//!   [`assert_bad_request`]).
//! - [`grpc`]: a real gRPC server and client (PyPI grpcio): [`Stubs`], [`GrpcServer`],
//!   [`grpc_client`]; [`h2_call`] for one raw HTTP/2 request.
//! - [`tls`]: [`TestCa`] issuing certificates, [`tls_client`] configs.
//! - [`provider`]: starting the test OpenID provider (`tests/provider`, npm `oidc-provider`),
//!   used by [`oidc::OidcProvider`] (bearer tests) and [`login::Provider`] (login tests).
//! - [`oidc`]: [`oidc::OidcProvider`], [`oidc::TestIssuer`] (an issuer whose keys the test
//!   holds) and JWT helpers.
//! - [`redis`]: a real `redis-server` ([`Redis`]); Sentinel setups ([`SentinelSet`]: master,
//!   replica, three sentinels; [`TlsSentinel`]) and [`redis_cmd`].
//! - [`browser`]: a scripted browser (cookie jar, redirects by hand, the provider's login form).
//! - [`login`]: the login tests' proxy config ([`ProxyOpts`], [`proxy_config`],
//!   [`session_cfg`]), the login [`login::Provider`] and a stored session ([`alice_session`]).
//! - Here: [`STEP`], [`now`], [`b64`], [`basic`], [`form`], [`repo`], [`snippet`], [`free_port`],
//!   [`temp_dir`], [`ChildGuard`].
//!
//! Every wait is bounded: helpers time out (and panic) rather than hang a test run.

#![allow(dead_code)] // each test binary uses a different subset

pub mod answers;
pub mod browser;
pub mod client;
pub mod fronts;
pub mod grpc;
pub mod login;
pub mod oidc;
pub mod provider;
pub mod proxy;
pub mod redis;
pub mod servers;
pub mod tls;

// Each test binary uses a different subset.
#[allow(unused_imports)]
pub use answers::*;
#[allow(unused_imports)]
pub use browser::*;
#[allow(unused_imports)]
pub use client::*;
#[allow(unused_imports)]
pub use fronts::*;
#[allow(unused_imports)]
pub use grpc::*;
#[allow(unused_imports)]
pub use login::*;
#[allow(unused_imports)]
pub use proxy::*;
#[allow(unused_imports)]
pub use redis::*;
#[allow(unused_imports)]
pub use servers::*;
#[allow(unused_imports)]
pub use tls::*;

use std::net::TcpListener as StdListener;
use std::path::PathBuf;
use std::process::Child;
use std::time::Duration;

use base64::Engine;

/// Upper bound for any single helper wait.
pub const STEP: Duration = Duration::from_secs(30);

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// base64url without padding (JWT segments).
pub fn b64(x: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(x)
}

/// An HTTP Basic `Authorization` value.
pub fn basic(id: &str, secret: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
    )
}

/// An `application/x-www-form-urlencoded` body.
pub fn form(pairs: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The body of the fenced block that follows `<!-- snippet: NAME -->` in `file` (relative to the
/// repository root): the README's and the docs' examples that the tests run as written.
pub fn snippet(file: &str, name: &str) -> String {
    let doc = std::fs::read_to_string(repo().join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
    let marker = format!("<!-- snippet: {name} -->\n");
    let at = doc
        .find(&marker)
        .unwrap_or_else(|| panic!("{file} has no {marker:?}"));
    let rest = &doc[at + marker.len()..];
    assert!(rest.starts_with("```"), "{marker:?} must precede a fence");
    let body = &rest[rest.find('\n').expect("fence line") + 1..];
    let end = body.find("\n```").expect("closing fence");
    body[..=end].to_string()
}

/// A fresh temp dir for config files, certificates and keys.
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

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

/// A child process (python3, nginx, caddy, chromedriver) killed and reaped on drop.
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
