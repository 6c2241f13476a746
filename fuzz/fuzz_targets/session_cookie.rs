//! Session cookie opening (`portcullis::session`, cookie store): the `Cookie` header split, the
//! reassembly of chunked cookies (`name`, `name.1`, …) and the AES-GCM opening.
//!
//! Input: first byte = mode (bit 0: round trip; bit 1: HTTPS, i.e. the `__Host-` cookie name),
//! then
//! - header mode: the rest, one `Cookie` header per line. Never a panic, and only sealed input
//!   opens: a session opens only when the reassembled cookie value is, byte for byte, one this
//!   code sealed (the checked-in seeds, sealed by `make_seeds` under the fixed secret), and it
//!   opens to the session that was sealed. Every cookie value alone is also tried as a sealed
//!   value (same rule).
//! - round-trip mode: the rest is the text of a session (subject and a claim) plus a length for
//!   its access token; `save` then `load` of the `Cookie` header a browser would send back must
//!   give the same session, whatever the number of chunks.

#![no_main]

#[path = "../common/session.rs"]
mod common;

use std::borrow::Cow;
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use portcullis::session::{
    MAX_CHUNKS, SessionData, Sessions, chunk_names, chunked_value, request_cookies,
};

/// The checked-in seeds that carry genuinely sealed sessions.
const SEALED_SEEDS: &[&[u8]] = &[
    include_bytes!("../corpus/session_cookie/sealed-single"),
    include_bytes!("../corpus/session_cookie/sealed-chunked"),
    include_bytes!("../corpus/session_cookie/sealed-chunked-headers"),
    include_bytes!("../corpus/session_cookie/sealed-host"),
];

struct State {
    sessions: Sessions,
    /// Under another secret, for round trips.
    round_trip: Sessions,
    /// (cookie name, reassembled sealed value, the session it holds)
    known: Vec<(String, String, SessionData)>,
}

static STATE: LazyLock<State> = LazyLock::new(|| {
    let sessions = common::sessions(common::SECRET);
    let mut known = Vec::new();
    for seed in SEALED_SEEDS {
        let secure = seed[0] & 2 != 0;
        let headers = common::cookie_headers(&seed[1..]);
        let name = sessions.cookie_name(common::attrs(secure)).to_string();
        let cookies = request_cookies(&headers);
        let Some(value) = chunked_value(&cookies, &name) else {
            continue;
        };
        match common::ready(sessions.load(&headers, common::attrs(secure))) {
            Ok(Some(loaded)) => known.push((name, value.into_owned(), (*loaded.data).clone())),
            _ => eprintln!(
                "WARNING: a sealed seed no longer opens (session format or key derivation \
                 changed): regenerate with `cargo run --manifest-path fuzz/Cargo.toml --bin \
                 make_seeds`"
            ),
        }
    }
    State {
        sessions,
        round_trip: common::sessions(common::ROUND_TRIP_SECRET),
        known,
    }
});

fn check_opened(name: &str, value: &str, data: &SessionData, what: &str) {
    let genuine = STATE.known.iter().find(|(n, v, _)| n == name && v == value);
    match genuine {
        Some((_, _, d)) => assert_eq!(d, data, "a sealed value opened to another session"),
        None => panic!(
            "{what}: a value that this code never sealed opened as a session\n  cookie {name}: {value:?}"
        ),
    }
}

fn header_mode(secure: bool, lines: &[u8]) {
    let st = &*STATE;
    let attrs = common::attrs(secure);
    let headers = common::cookie_headers(lines);
    let name = st.sessions.cookie_name(attrs);
    let cookies = request_cookies(&headers);
    let names = chunk_names(&cookies, name);
    assert!(
        names
            .iter()
            .all(|n| n == name || n.starts_with(&format!("{name}.")))
    );
    let _ = st.sessions.present_chunks(&headers, attrs);
    let value = chunked_value(&cookies, name);
    match common::ready(st.sessions.load(&headers, attrs)) {
        Ok(Some(loaded)) => {
            let value = value.expect("a session opened without a session cookie");
            check_opened(name, &value, &loaded.data, "load");
        }
        Ok(None) => {}
        Err(e) => panic!("the cookie store failed: {e}"),
    }
    // Each cookie value alone, opened directly (the sealer under the session cookie's name).
    for (_, v) in &cookies {
        if let Some(pt) = st.sessions.sealer.open(name, v) {
            let data: SessionData = serde_json::from_slice(&pt).expect("sealed JSON");
            check_opened(name, v, &data, "Sealer::open");
        }
    }
}

fn round_trip(secure: bool, rest: &[u8]) {
    let st = &STATE.round_trip;
    let attrs = common::attrs(secure);
    let len = rest.first().map_or(0, |b| *b as usize) << 8 | rest.get(1).map_or(0, |b| *b as usize);
    // Sessions up to about MAX_CHUNKS chunks (a longer one cannot be sent back whole): the
    // text appears twice and JSON escaping can make a byte six.
    let text = rest.get(2..).unwrap_or_default();
    let text = String::from_utf8_lossy(&text[..text.len().min(1000)]);
    let len = len % (MAX_CHUNKS * 1000);
    let mut data = common::sample(false);
    data.sub = text.to_string();
    data.claims
        .insert("text".into(), serde_json::Value::from(&*text));
    data.access_token = "t".repeat(len);
    data.created_at = portcullis::session::now();
    data.last_seen = data.created_at;
    let set = common::ready(st.save(&data, None, &[], attrs)).expect("cookie store save");
    let cookie = common::cookie_header_for(&set);
    let headers = common::cookie_headers(&cookie);
    let loaded = common::ready(st.load(&headers, attrs))
        .expect("cookie store load")
        .unwrap_or_else(|| {
            panic!(
                "a saved session ({} Set-Cookie values, {} bytes) did not open again",
                set.len(),
                cookie.len()
            )
        });
    assert_eq!(
        *loaded.data, data,
        "the session changed on its way through the cookie"
    );
    let name = st.cookie_name(attrs);
    let value = chunked_value(&request_cookies(&headers), name).unwrap_or(Cow::Borrowed(""));
    assert!(!value.is_empty());
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let secure = mode & 2 != 0;
    if mode & 1 == 0 {
        header_mode(secure, rest);
    } else {
        round_trip(secure, rest);
    }
});
