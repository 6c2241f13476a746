//! Path normalization and route matching (`portcullis::routes`).
//!
//! Input: text (lossy UTF-8). With a newline, the first line is also compiled as a route path
//! (`Matcher::new`) and the rest is the request path; without, the whole input is the request
//! path. Properties, for every path `normalize_path` accepts:
//! - never a panic (normalization, matching, `strip_prefix`, `shadows`);
//! - idempotent: normalizing the result again accepts it and changes nothing;
//! - no dot segment under any separator reading an upstream might apply: `%2F`/`%2f`/`%5C`/`%5c`
//!   and `\` as `/`, each segment cut at `;` or `%3B`, `%2e` decoded (DESIGN, contract second
//!   edition, "Paths": such a path is refused with 400, never forwarded);
//! - a compiled route prefix is itself in normal form, and `strip_prefix` yields a path;
//! - a route matches exactly when its names lead the path's, by an independent reading of the
//!   names (route matching compares text for plain paths and names otherwise).
//!
//! `PATH_FUZZ_ALLOW_DOT_SEGMENTS=1` skips the dot-segment property (to fuzz the others on a
//! build that does not refuse such paths yet).

#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use portcullis::routes::{Matcher, normalize_path, strip_prefix};

/// Route prefixes every request path is matched against.
const ROUTES: &[&str] = &[
    "/",
    "/admin",
    "/public",
    "/api/v1",
    "/files/a%2Fb",
    "/healthz",
];

/// The first `.`/`..` segment of `path` under the widest separator reading, if any.
fn dot_segment(path: &str) -> Option<String> {
    let b = path.as_bytes();
    let mut segments: Vec<Vec<u8>> = vec![Vec::new()];
    let mut i = 0;
    while i < b.len() {
        let enc = |hi: u8, lo: &[u8]| {
            b.get(i + 1) == Some(&hi) && b.get(i + 2).is_some_and(|c| lo.contains(c))
        };
        if b[i] == b'/' || b[i] == b'\\' {
            segments.push(Vec::new());
            i += 1;
        } else if b[i] == b'%' && (enc(b'2', b"fF") || enc(b'5', b"cC")) {
            segments.push(Vec::new());
            i += 3;
        } else {
            if let Some(s) = segments.last_mut() {
                s.push(b[i]);
            }
            i += 1;
        }
    }
    for seg in segments {
        // Cut at `;` or `%3B`, then decode `%2e`.
        let mut name = Vec::new();
        let mut j = 0;
        while j < seg.len() {
            let pct = |c: &[u8]| {
                seg.get(j) == Some(&b'%')
                    && seg.get(j + 1).is_some_and(|x| x == &c[0])
                    && seg
                        .get(j + 2)
                        .is_some_and(|x| x.eq_ignore_ascii_case(&c[1]))
            };
            if seg[j] == b';' || pct(b"3B") {
                break;
            }
            if pct(b"2E") {
                name.push(b'.');
                j += 3;
            } else {
                name.push(seg[j]);
                j += 1;
            }
        }
        if name == b"." || name == b".." {
            return Some(String::from_utf8_lossy(&seg).into_owned());
        }
    }
    None
}

/// The names routes compare, by an independent reading: pieces between `/`, `%2F` or `%5C`
/// (either hex case), each cut at its first `;` or `%3B`, empty names skipped.
fn route_names(path: &str) -> Vec<&[u8]> {
    let b = path.as_bytes();
    let is_sep = |i: usize| {
        b[i] == b'/'
            || (b[i] == b'%'
                && matches!(
                    (b.get(i + 1), b.get(i + 2).map(u8::to_ascii_uppercase)),
                    (Some(b'2'), Some(b'F')) | (Some(b'5'), Some(b'C'))
                ))
    };
    let mut names = Vec::new();
    let (mut start, mut i) = (0, 0);
    while i <= b.len() {
        if i == b.len() || is_sep(i) {
            let piece = &b[start..i];
            let cut = (0..piece.len())
                .find(|&j| piece[j] == b';' || piece[j..].to_ascii_uppercase().starts_with(b"%3B"))
                .unwrap_or(piece.len());
            if cut > 0 {
                names.push(&piece[..cut]);
            }
            i += if i < b.len() && b[i] == b'%' { 3 } else { 1 };
            start = i;
        } else {
            i += 1;
        }
    }
    names
}

static ALLOW_DOT_SEGMENTS: LazyLock<bool> =
    LazyLock::new(|| std::env::var_os("PATH_FUZZ_ALLOW_DOT_SEGMENTS").is_some());

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (route, raw) = match text.split_once('\n') {
        Some((r, p)) => (Some(r), p),
        None => (None, &*text),
    };
    let mut matchers: Vec<Matcher> = ROUTES
        .iter()
        .filter_map(|p| Matcher::new(None, p, None).ok())
        .collect();
    if let Some(r) = route
        && let Ok(m) = Matcher::new(None, r, None)
    {
        assert_eq!(
            normalize_path(&m.path).as_deref(),
            Ok(m.path.as_str()),
            "route path {r:?} compiles to {:?}, which is not in normal form",
            m.path
        );
        for other in &matchers {
            let _ = other.shadows(&m);
            let _ = m.shadows(other);
        }
        matchers.push(m);
    }

    let Ok(normalized) = normalize_path(raw) else {
        return;
    };
    if let Some(seg) = dot_segment(&normalized).filter(|_| !*ALLOW_DOT_SEGMENTS) {
        panic!(
            "accepted path has a dot segment under some separator reading\n  request path: {raw:?}\n  normalized:   {normalized:?}\n  segment:      {seg:?}"
        );
    }
    match normalize_path(&normalized) {
        Ok(again) => assert_eq!(
            again, normalized,
            "normalization is not idempotent for {raw:?}"
        ),
        Err(e) => panic!("normalize({raw:?}) = {normalized:?}, which is refused: {e}"),
    }
    let get = http::Method::GET;
    let names = route_names(&normalized);
    for m in &matchers {
        let want = route_names(&m.path);
        let under = names.len() >= want.len() && names[..want.len()] == want[..];
        assert_eq!(
            m.matches(None, &get, &normalized),
            under,
            "route {:?} vs request path {normalized:?} (names {names:?})",
            m.path
        );
        if under {
            let stripped = strip_prefix(&normalized, &m.path);
            assert!(
                stripped.starts_with('/'),
                "strip_prefix({normalized:?}, {:?}) = {stripped:?}",
                m.path
            );
        }
    }
});
