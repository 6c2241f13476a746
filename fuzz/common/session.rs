//! What the `session_cookie` target and `make_seeds` share: a cookie session store under a fixed
//! secret (so a cookie sealed by `make_seeds` and checked in as a seed opens in every run), the
//! sessions sealed into the seeds, and the reading of an input as `Cookie` headers.

#![allow(dead_code)]

use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use http::header::{COOKIE, HeaderMap, HeaderValue};
use portcullis::session::{CookieAttrs, SessionData, Sessions};
use serde_json::json;

/// Fuzzing only; the seeds in fuzz/corpus/session_cookie are sealed under it.
pub const SECRET: &str = "fuzz-only-7c1e9a4b2f6d8035e1c7a9b4d2f60835";
/// The round-trip store's secret: what it seals can never open in the store under [`SECRET`],
/// whose only openable values are the seeds.
pub const ROUND_TRIP_SECRET: &str = "fuzz-only-round-trip-3e8b1f6a9c2d7405";

/// Cookie name (`__Host-` + it over HTTPS).
pub const COOKIE_NAME: &str = "portcullis";

/// Through the config loader, so fields added to `[session]` later keep their defaults here.
pub fn sessions(secret: &str) -> Sessions {
    let src = format!(
        "[server]\nlisten = \"127.0.0.1:8080\"\n\n[session]\nsecret = \"{secret}\"\n\
         cookie_name = \"{COOKIE_NAME}\"\n\n[[route]]\nname = \"app\"\npath = \"/\"\n\
         upstream = \"http://127.0.0.1:3000\"\nauth = \"none\"\n"
    );
    let cfg = portcullis::config::load_str(Path::new("fuzz.toml"), &src, HashMap::new())
        .unwrap_or_else(|e| panic!("fuzz session config: {e}"));
    let session = cfg.session.expect("the fuzz config has a [session]");
    Sessions::new(&session).expect("cookie session store")
}

/// The session sealed into the seeds; `big` makes it span several cookie chunks.
pub fn sample(big: bool) -> SessionData {
    serde_json::from_value(json!({
        "id": "fuzz-session-0001",
        "provider": "corp",
        "sub": "alice",
        "email": "alice@example.com",
        "roles": ["admin"],
        "claims": {"groups": ["staff"]},
        "access_token": if big { "t".repeat(9000) } else { "access-token".to_string() },
        "refresh_token": "refresh-token",
        "sid": "sid-1",
        "created_at": 1_767_225_600,
        "created_ms": 1_767_225_600_000i64,
        "last_seen": 1_767_225_600,
        "access_issued_at": 1_767_225_600,
    }))
    .expect("sample session")
}

pub fn attrs(secure: bool) -> CookieAttrs<'static> {
    CookieAttrs {
        secure,
        domain: None,
    }
}

/// An input in header mode: one `Cookie` header per line (lines that are not a valid header
/// value are dropped, as hyper would refuse them).
pub fn cookie_headers(lines: &[u8]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for line in lines.split(|b| *b == b'\n') {
        if let Ok(v) = HeaderValue::from_bytes(line) {
            h.append(COOKIE, v);
        }
    }
    h
}

/// Polls a future that never waits (the cookie store's `load`/`save` do no I/O).
pub fn ready<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("the cookie session store waited on I/O"),
    }
}

/// The `Cookie` header a browser sends back for these `Set-Cookie` values.
pub fn cookie_header_for(set_cookies: &[HeaderValue]) -> Vec<u8> {
    let pairs: Vec<&[u8]> = set_cookies
        .iter()
        .filter_map(|v| v.as_bytes().split(|b| *b == b';').next())
        // A cleared chunk (`name=`) is not sent back.
        .filter(|p| !p.ends_with(b"="))
        .collect();
    pairs.join(&b"; "[..])
}
