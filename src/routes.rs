//! Route matching and path normalization: pure functions, compiled once at config load, run on
//! every request.
//!
//! This module owns the answer to "which `[[route]]` does this request belong to?". It does three
//! things, all without I/O; on the request path only a path that is not already in normal form
//! costs an allocation (one output `String`), matching never allocates:
//!
//! 1. [`normalize_path`] turns the path of a request target into one canonical form. The proxy
//!    matches on that form **and forwards that same form upstream**, so the route that authorized
//!    a request is the route that serves it. In order: percent-encoded unreserved characters
//!    (`A-Z a-z 0-9 - . _ ~`) are decoded, every other `%XX` stays encoded with uppercase hex
//!    (`%2F` stays `%2F`), bytes that may not appear raw in a path (space, `"`, `{`, non-ASCII, …)
//!    are percent-encoded, `.`/`..` segments are resolved (never above the root) and duplicate
//!    slashes are merged. A trailing slash is kept. Anything ambiguous is refused with a
//!    [`PathError`] (→ 400), see [Ambiguous paths](#ambiguous-paths).
//! 2. [`Matcher`] decides whether one route matches a (host, method, normalized path). Paths are
//!    compared case-sensitively, segment by segment, as a prefix. Each segment is compared up to
//!    its first `;` or `%3B` (matrix parameters), and the encoded separators `%2F` and `%5C` also
//!    split segments *for matching only*, so `/admin;x`, `/admin%3Bx`, `/;jsessionid=1/admin` and
//!    `/admin%2Fusers` all get the `/admin` route's checks: when upstreams disagree on what such a
//!    path means, the request gets the stricter, more specific route. [`Matcher::shadows`] lets
//!    the config loader reject a route that can never be reached.
//! 3. [`strip_prefix`] removes a matched route prefix for `strip_prefix = true` routes.
//!
//! # Ambiguous paths
//!
//! Upstreams read a path in more ways than RFC 3986 does: WSGI servers and anything behind
//! nginx decode `%2F` into `/`, Windows servers treat `\` (and `%5C`) as `/` and drop trailing
//! dots and spaces from names, Tomcat and Spring cut each segment at `;` (Spring after decoding
//! `%3B`), and some stacks decode twice. A request whose route could change under one of those
//! readings is refused, so **the normalized path the proxy forwards has no `.` or `..` segment
//! under any of them, and every reading of the raw path (which a forward-auth front proxy passes
//! on as is) that resolves dot segments reaches the same route** — the properties the unit tests
//! check exhaustively over a small alphabet and the fuzz target checks at random:
//!
//! - [`PathError::HiddenDotSegment`]: a segment that reads as `.`/`..` once `%2F`/`%5C` split it,
//!   `;`/`%3B` cut it, or trailing dots and spaces are trimmed: `/public/..%2Fadmin`,
//!   `/public%2F..%2Fadmin`, `/x/%2e%2e%5Cadmin`, `/public/..;/admin`, `/public/..%3B/admin`,
//!   `/a/..%2F`, `/...`, `/..%20/`. Encoded look-alikes that Unicode compatibility
//!   normalization or Windows "best fit" conversion turn into `.`, `/`, `\` or `;` count as
//!   those (`%EF%BC%8E%EF%BC%8E%EF%BC%8F` is `../`). A `.`/`..` that is a whole segment between
//!   raw slashes (also `%2e%2e`) is a standard dot segment and is resolved, as every reading does.
//! - [`PathError::AmbiguousParent`]: a standard `..` that would remove a segment that readings
//!   count differently — one holding `%2F`, `%5C` or `%25`, an empty one (`//`), or one whose
//!   name before `;`/`%3B` is empty: `/a%2Fb/../x` is `/x` by RFC 3986 but `/a/x` once `%2F` is
//!   decoded.
//! - [`PathError::SeparatorInParameters`]: `;`/`%3B` parameters followed by `%2F`/`%5C` in the
//!   same segment (`/a;x%2Fb`): Tomcat cuts the separator away with the parameters (`/a`), a
//!   decoding upstream splits at it (`/a/b`), so the two would be judged by different routes.
//! - [`PathError::DoubleEncoding`]: decoding `%25` once more (up to three times; a `%` nested
//!   deeper is refused) would give any of the above, a NUL, a control character or invalid UTF-8
//!   (`%252e%252e%252f`, `%25c0%25ae`, `%2500`).
//!   `%252F` alone (an encoded `%2F` in a name) passes.
//! - Invalid percent-encoding, NUL, control characters (raw or encoded), raw backslashes,
//!   percent-encoded bytes that are not UTF-8 (overlong `%C0%AE`).
//!
//! An encoded separator inside a name (`/files/a%2Fb`) passes: it splits segments for matching
//! only, and is forwarded as `%2F`.
//!
//! # Security caveats
//!
//! Normalization closes the path tricks that the proxy and an upstream could disagree on that
//! change which route applies. Some upstreams interpret paths in other non-standard ways; the
//! proxy cannot see inside them, so deployments must check these:
//!
//! - **Case-insensitive upstreams** (IIS, apps serving files from Windows or default macOS
//!   filesystems) serve `/ADMIN` as `/admin`. Matching here is case-sensitive, so `/ADMIN` does
//!   not get the `/admin` route's checks. Protect such apps with a catch-all route that is at
//!   least as strict, or normalize case in front of them.
//! - **Windows filename quirks** inside names (`admin.` served as `admin`, `admin::$DATA`, 8.3
//!   short names) are not folded.
//! - **Upstreams that do not resolve dot segments at all** (route on the raw path) behind a
//!   forward-auth front proxy that passes the client's raw URI: the check judges `/a/../b` as
//!   `/b`, as nginx does.
//! - **Host matching trusts the `Host` header / `:authority`** as given; the server must refuse a
//!   request whose host is malformed or disagrees with the TLS SNI before routing it.
//! - **Methods are compared exactly**, except that a route allowing `GET` also allows `HEAD`
//!   (which frameworks serve with the GET handler); a method with lower-case letters is refused
//!   before matching ([`method_is_ambiguous`]).

use std::borrow::Cow;

/// Why a request path was refused (→ 400). Each message names the problem; the client's fix is
/// always to send the path it means, without the ambiguous spelling.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// The path is empty or does not start with `/` (`*` and absolute-form are the caller's).
    #[error("request path must start with '/'")]
    NotAbsolute,
    /// A raw `\`: some upstreams treat it as `/`, which would bypass segment matching.
    #[error("request path contains a backslash")]
    Backslash,
    /// A raw NUL or `%00`: C-based upstreams truncate the path there.
    #[error("request path contains a NUL byte")]
    NulByte,
    /// A control character (U+0001–U+001F, U+007F), raw or percent-encoded: upstreams strip,
    /// truncate at or log them differently.
    #[error("request path contains a control character (raw or percent-encoded)")]
    ControlCharacter,
    /// A raw `?` or `#`: the query and fragment must be split off before normalizing.
    #[error("request path contains a raw '?' or '#'")]
    UnexpectedDelimiter,
    /// A `%` not followed by two hex digits (`%`, `%4`, `%zz`).
    #[error("invalid percent-encoding: '%' must be followed by two hex digits")]
    InvalidPercentEncoding,
    /// Percent-encoded bytes that do not form UTF-8: overlong encodings (`%C0%AE`), stray
    /// continuation bytes, truncated sequences, surrogates, values above U+10FFFF.
    #[error("percent-encoded bytes are not valid UTF-8 (overlong, truncated or stray bytes)")]
    InvalidUtf8,
    /// A segment that reads as `.` or `..` once an upstream decodes `%2F`/`%5C` into a
    /// separator, cuts it at `;`/`%3B`, or trims trailing dots and spaces (`/public/..%2Fadmin`,
    /// `/..;/admin`, `/...`).
    #[error(
        "request path has a '.' or '..' segment hidden behind an encoded separator, ';' \
         parameters or trailing dots/spaces (as in /public/..%2Fadmin or /public/..;/admin); \
         upstreams resolve it differently, so it is refused"
    )]
    HiddenDotSegment,
    /// A `..` that would remove a segment upstreams count differently (`/a%2Fb/../x`: RFC 3986
    /// gives `/x`, a decoding upstream `/a/x`).
    #[error(
        "a '..' segment in the request path would remove a segment that upstreams split or drop \
         differently (one holding %2F, %5C or %25, an empty one, or one made of ';' parameters)"
    )]
    AmbiguousParent,
    /// `;`/`%3B` parameters followed by `%2F`/`%5C` in the same segment (`/a;x%2Fb`): Tomcat
    /// cuts the separator away with the parameters (`/a`), a decoding upstream splits at it.
    #[error(
        "request path has ';' parameters followed by an encoded separator in the same segment \
         (as in /a;x%2Fb): upstreams disagree on whether the separator belongs to the parameter"
    )]
    SeparatorInParameters,
    /// Decoding `%25` once more (stacks that decode twice) gives a dot segment, a NUL, a
    /// control character or invalid UTF-8 (`%252e%252e%252f`, `%25c0%25ae`).
    #[error(
        "request path is double-encoded: decoding its '%25' again gives a '.' or '..' segment, a \
         NUL, a control character or invalid UTF-8 (as in %252e%252e%252f)"
    )]
    DoubleEncoding,
}

/// Normalizes the path part of a request target (no query, no fragment).
///
/// Returns `Cow::Borrowed` without allocating when `raw` is already in normal form, which is
/// the common case. See the module documentation for the rules.
///
/// Properties (checked exhaustively over a small alphabet in this module's tests, and by the
/// fuzz target):
/// - idempotent: a returned path normalizes to itself, borrowed;
/// - a returned path has no `.`/`..` segment under any reading of
///   [Ambiguous paths](crate::routes#ambiguous-paths) (split at `/`, `%2F`, `%5C`; cut at `;`,
///   `%3B`; `%25` decoded again);
/// - when `Ok`, every such reading of `raw` that resolves dot segments (RFC 3986, with or without
///   merging slashes) yields the same route names ([`Matcher`] segments) as the returned path.
pub fn normalize_path(raw: &str) -> Result<Cow<'_, str>, PathError> {
    if !raw.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    if is_normalized(raw) {
        return Ok(Cow::Borrowed(raw));
    }
    normalize_owned(raw).map(Cow::Owned)
}

/// Bytes kept raw in a normalized path: RFC 3986 `pchar` minus `%`: unreserved, sub-delims,
/// `:` and `@`.
fn is_pchar_raw(b: u8) -> bool {
    is_unreserved(b)
        || matches!(
            b,
            b'!' | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
                | b'@'
        )
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The byte `%XX` at `i` encodes (either hex case), if `s[i..]` starts with one.
fn pct_value(s: &[u8], i: usize) -> Option<u8> {
    if s.get(i) != Some(&b'%') {
        return None;
    }
    let hi = hex_value(*s.get(i + 1)?)?;
    let lo = hex_value(*s.get(i + 2)?)?;
    Some((hi << 4) | lo)
}

/// Whether `b` is a control character (NUL excluded: it has its own error).
fn is_control(b: u8) -> bool {
    matches!(b, 0x01..=0x1F | 0x7F)
}

/// The part of a segment before its first `;` or `%3B` (matrix parameters, also as Spring
/// reads them after decoding).
fn segment_name(segment: &str) -> &str {
    let bytes = segment.as_bytes();
    let mut from = 0;
    while let Some(off) = bytes
        .get(from..)
        .and_then(|rest| memchr::memchr2(b';', b'%', rest))
    {
        let at = from + off;
        if bytes[at] == b';' || pct_value(bytes, at) == Some(b';') {
            return segment.get(..at).unwrap_or(segment);
        }
        from = at + 1;
    }
    segment
}

/// How one reading of an upstream classifies the next character of a segment.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Token {
    /// `.` or `%2E`.
    Dot,
    /// ` ` or `%20`: Windows trims trailing spaces (and dots) from names.
    Space,
    /// `/`, `\`, `%2F` or `%5C`: a separator once decoded.
    Separator,
    /// `;` or `%3B`: matrix parameters start (Tomcat, Spring).
    Cut,
    Other,
}

/// The token at `s[i..]` and its length in bytes (`i < s.len()`).
fn token_at(s: &[u8], i: usize) -> (Token, usize) {
    let (b, len) = match pct_value(s, i) {
        Some(v @ (0xE2 | 0xEF)) => match lookalike_at(s, i, v) {
            Some(token) => return (token, 9),
            None => (v, 3),
        },
        Some(v) => (v, 3),
        None => (s[i], 1),
    };
    let token = match b {
        b'.' => Token::Dot,
        b' ' => Token::Space,
        b'/' | b'\\' => Token::Separator,
        b';' => Token::Cut,
        _ => Token::Other,
    };
    (token, len)
}

/// A percent-encoded three-byte character at `s[i..]` (lead byte `lead`) that Unicode
/// compatibility normalization (NFKC) or Windows "best fit" code-page conversion turns into
/// `.`, `/`, `\` or `;`: fullwidth and small forms, dot leaders, division and set-minus slashes.
fn lookalike_at(s: &[u8], i: usize, lead: u8) -> Option<Token> {
    let c = [lead, pct_value(s, i + 3)?, pct_value(s, i + 6)?];
    Some(match c {
        // U+FF0E FULLWIDTH FULL STOP, U+FE52 SMALL FULL STOP, U+2024/2025/2026 dot leaders
        [0xEF, 0xBC, 0x8E] | [0xEF, 0xB9, 0x92] | [0xE2, 0x80, 0xA4..=0xA6] => Token::Dot,
        // U+FF0F FULLWIDTH SOLIDUS, U+FF3C FULLWIDTH REVERSE SOLIDUS, U+FE68 SMALL REVERSE
        // SOLIDUS, U+2215 DIVISION SLASH, U+2216 SET MINUS, U+2044 FRACTION SLASH
        [0xEF, 0xBC, 0x8F | 0xBC]
        | [0xEF, 0xB9, 0xA8]
        | [0xE2, 0x88, 0x95 | 0x96]
        | [0xE2, 0x81, 0x84] => Token::Separator,
        // U+FF1B FULLWIDTH SEMICOLON, U+FE54 SMALL SEMICOLON
        [0xEF, 0xBC, 0x9B] | [0xEF, 0xB9, 0x94] => Token::Cut,
        _ => return None,
    })
}

/// Checks the pieces of one canonical segment that is not itself `.`/`..`, as each reading
/// sees them: pieces lie between decoded separators and are read up to their first `;`/`%3B`.
/// A piece made only of dots and spaces (at least one dot) is a dot segment for some reading
/// (`..`, `..;x`, and `...`/`.. ` once Windows trims them). A separator after `;`/`%3B` in the
/// same segment is one some readings cut away with the parameters and others split at
/// (`/a;x%2Fb`: Tomcat serves `/a`, a decoding upstream `/a/b`).
fn check_pieces(segment: &[u8]) -> Result<(), PathError> {
    let (mut dots, mut other, mut cut) = (false, false, false);
    let mut i = 0;
    while i < segment.len() {
        let (token, len) = token_at(segment, i);
        i += len;
        match token {
            Token::Separator => {
                if dots && !other {
                    return Err(PathError::HiddenDotSegment);
                }
                if cut {
                    return Err(PathError::SeparatorInParameters);
                }
                (dots, other) = (false, false);
            }
            _ if cut => {}
            Token::Cut => cut = true,
            Token::Dot => dots = true,
            Token::Space => {}
            Token::Other => other = true,
        }
    }
    if dots && !other {
        return Err(PathError::HiddenDotSegment);
    }
    Ok(())
}

/// `segment` with each `%25` decoded to `%` (one more decoding pass, as some stacks do).
fn decode_pct25(segment: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(segment.len());
    let mut i = 0;
    while i < segment.len() {
        if segment[i..].starts_with(b"%25") {
            out.push(b'%');
            i += 3;
        } else {
            out.push(segment[i]);
            i += 1;
        }
    }
    out
}

fn contains_pct25(segment: &[u8]) -> bool {
    memchr::memmem::find(segment, b"%25").is_some()
}

/// Decoding passes [`check_double_decoding`] tries; a `%25` still left after them is refused.
/// Bounds the work (each pass is linear, and `%252525…` would otherwise take one pass per
/// level), and no real path encodes a `%` four times over.
const MAX_EXTRA_DECODINGS: usize = 3;

/// Further decoding passes over a canonical segment, as stacks that decode twice (or more)
/// apply them: refused when a pass yields a dot segment, a piece [`check_pieces`] refuses, NUL,
/// a control character or invalid UTF-8. (A canonical segment has its unreserved characters
/// decoded already, so `%25` is the only sequence a further pass can turn into a new escape.)
/// Allocates, but only for segments holding `%25`.
fn check_double_decoding(segment: &[u8]) -> Result<(), PathError> {
    if !contains_pct25(segment) {
        return Ok(());
    }
    let mut view = decode_pct25(segment);
    for _ in 0..MAX_EXTRA_DECODINGS {
        if is_dot_segment(&view) || check_pieces(&view).is_err() {
            return Err(PathError::DoubleEncoding);
        }
        let mut utf8 = Utf8Check::default();
        let mut i = 0;
        while i < view.len() {
            match pct_value(&view, i) {
                Some(v) => {
                    i += 3;
                    if v >= 0x80 {
                        utf8.push(v).map_err(|_| PathError::DoubleEncoding)?;
                        continue;
                    }
                    if v == 0 || is_control(v) || utf8.pending() {
                        return Err(PathError::DoubleEncoding);
                    }
                }
                None => {
                    if utf8.pending() {
                        return Err(PathError::DoubleEncoding);
                    }
                    i += 1;
                }
            }
        }
        if utf8.pending() {
            return Err(PathError::DoubleEncoding);
        }
        if !contains_pct25(&view) {
            return Ok(());
        }
        view = decode_pct25(&view);
    }
    Err(PathError::DoubleEncoding)
}

/// The reading checks for one canonical segment that is not itself `.`/`..`.
fn check_segment_readings(segment: &[u8]) -> Result<(), PathError> {
    check_pieces(segment)?;
    check_double_decoding(segment)
}

fn is_dot_segment(segment: &[u8]) -> bool {
    segment == b"." || segment == b".."
}

/// Whether every reading counts a canonical segment as exactly one non-empty segment, so that a
/// following `..` removes the same thing for all of them.
fn is_plain(segment: &str) -> bool {
    let s = segment.as_bytes();
    !segment_name(segment).is_empty()
        && [&b"%2F"[..], b"%5C", b"%25"]
            .iter()
            .all(|needle| memchr::memmem::find(s, needle).is_none())
}

/// Conservative fast path: `true` only when `raw` is valid and [`normalize_owned`] would return
/// it unchanged. Anything unusual answers `false` and takes the full path, which also reports
/// errors.
fn is_normalized(raw: &str) -> bool {
    let bytes = raw.as_bytes();
    if bytes.first() != Some(&b'/') {
        return false;
    }
    let mut segments = raw[1..].split('/').peekable();
    while let Some(segment) = segments.next() {
        let last = segments.peek().is_none();
        let s = segment.as_bytes();
        if (s.is_empty() && !last) || is_dot_segment(s) {
            return false;
        }
        let mut utf8 = Utf8Check::default();
        // Only a segment with a dot, a `;` or an encoded `%` or `;` can read differently.
        let mut suspect = false;
        let mut i = 0;
        while i < s.len() {
            if s[i] == b'%' {
                let (Some(&hi), Some(&lo)) = (s.get(i + 1), s.get(i + 2)) else {
                    return false;
                };
                let canonical_hex = |d: u8| d.is_ascii_digit() || (b'A'..=b'F').contains(&d);
                if !canonical_hex(hi) || !canonical_hex(lo) {
                    return false;
                }
                let value = match (hex_value(hi), hex_value(lo)) {
                    (Some(h), Some(l)) => (h << 4) | l,
                    _ => return false,
                };
                if value >= 0x80 {
                    if utf8.push(value).is_err() {
                        return false;
                    }
                } else if value == 0 || is_control(value) || is_unreserved(value) || utf8.pending()
                {
                    return false;
                }
                // `%`, `;`, and the lead bytes of the look-alikes [`lookalike_at`] knows.
                suspect |= matches!(value, b'%' | b';' | 0xE2 | 0xEF);
                i += 3;
            } else if is_pchar_raw(s[i]) && !utf8.pending() {
                suspect |= s[i] == b'.' || s[i] == b';';
                i += 1;
            } else {
                return false;
            }
        }
        if utf8.pending() || (suspect && check_segment_readings(s).is_err()) {
            return false;
        }
    }
    true
}

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

fn push_encoded(out: &mut String, b: u8) {
    out.push('%');
    out.push(char::from(HEX_UPPER[usize::from(b >> 4)]));
    out.push(char::from(HEX_UPPER[usize::from(b & 0x0F)]));
}

/// Tracks a multi-byte UTF-8 sequence spelled with percent-encoded bytes.
#[derive(Default)]
struct Utf8Check {
    buf: [u8; 4],
    len: usize,
    need: usize,
}

impl Utf8Check {
    fn pending(&self) -> bool {
        self.need != 0
    }

    /// Feeds one percent-decoded byte ≥ 0x80.
    fn push(&mut self, b: u8) -> Result<(), PathError> {
        if self.need == 0 {
            // Lead byte. C0/C1 can only start overlong encodings; F5.. exceed U+10FFFF;
            // 80..BF are continuation bytes with nothing to continue.
            self.need = match b {
                0xC2..=0xDF => 2,
                0xE0..=0xEF => 3,
                0xF0..=0xF4 => 4,
                _ => return Err(PathError::InvalidUtf8),
            };
            self.buf[0] = b;
            self.len = 1;
            return Ok(());
        }
        if !(0x80..=0xBF).contains(&b) {
            return Err(PathError::InvalidUtf8);
        }
        self.buf[self.len] = b;
        self.len += 1;
        if self.len == self.need {
            // std rejects the remaining overlong forms (E0 80.., F0 80..), surrogates (ED A0..)
            // and values above U+10FFFF (F4 90..).
            if std::str::from_utf8(&self.buf[..self.len]).is_err() {
                return Err(PathError::InvalidUtf8);
            }
            self.need = 0;
            self.len = 0;
        }
        Ok(())
    }
}

/// Appends the canonical form of one raw segment (no `/` inside) to `out`.
fn push_segment(segment: &[u8], out: &mut String) -> Result<(), PathError> {
    let mut utf8 = Utf8Check::default();
    let mut i = 0;
    while i < segment.len() {
        let b = segment[i];
        if b == b'%' {
            let (Some(hi), Some(lo)) = (
                segment.get(i + 1).copied().and_then(hex_value),
                segment.get(i + 2).copied().and_then(hex_value),
            ) else {
                return Err(PathError::InvalidPercentEncoding);
            };
            let value = (hi << 4) | lo;
            i += 3;
            if value >= 0x80 {
                utf8.push(value)?;
                push_encoded(out, value);
                continue;
            }
            if utf8.pending() {
                return Err(PathError::InvalidUtf8);
            }
            if value == 0 {
                return Err(PathError::NulByte);
            }
            if is_control(value) {
                return Err(PathError::ControlCharacter);
            }
            if is_unreserved(value) {
                out.push(char::from(value));
            } else {
                push_encoded(out, value);
            }
            continue;
        }
        // A raw byte cannot continue a percent-encoded sequence: a raw non-ASCII byte here is
        // the lead of a complete character (the input is a `str`), an ASCII byte is a character.
        if utf8.pending() {
            return Err(PathError::InvalidUtf8);
        }
        match b {
            0 => return Err(PathError::NulByte),
            b'\\' => return Err(PathError::Backslash),
            b'?' | b'#' => return Err(PathError::UnexpectedDelimiter),
            _ if is_control(b) => return Err(PathError::ControlCharacter),
            _ if is_pchar_raw(b) => out.push(char::from(b)),
            // Space, `"<>[]^`{|}` and every byte of a raw non-ASCII character: encode, so that
            // `/café` and `/caf%C3%A9` are the same path.
            _ => push_encoded(out, b),
        }
        i += 1;
    }
    if utf8.pending() {
        return Err(PathError::InvalidUtf8);
    }
    Ok(())
}

/// The full normalization; `raw` starts with `/`.
///
/// Dot segments are resolved as RFC 3986 does *without* merging slashes first, so that a `..`
/// that would remove an empty segment (`/a//../b`: `/a/b` by RFC 3986, `/b` after merging) is
/// seen and refused; duplicate slashes are merged at the end.
fn normalize_owned(raw: &str) -> Result<String, PathError> {
    let bytes = raw.as_bytes();
    let mut out = String::with_capacity(raw.len() + 2);
    let mut has_empty = false;
    let mut start = 1;
    loop {
        let end = bytes[start..]
            .iter()
            .position(|&b| b == b'/')
            .map_or(bytes.len(), |p| start + p);
        let seg_start = out.len();
        out.push('/');
        push_segment(&bytes[start..end], &mut out)?;
        let segment = &out[seg_start + 1..];
        // Whether the path so far ends in a directory: after a dot segment.
        let trailing_slash = match segment {
            "." => {
                out.truncate(seg_start);
                true
            }
            ".." => {
                out.truncate(seg_start);
                // Never above the root: at the root there is nothing to remove.
                if !out.is_empty() {
                    let parent = out.rfind('/').unwrap_or(0);
                    if !is_plain(&out[parent + 1..]) {
                        return Err(PathError::AmbiguousParent);
                    }
                    out.truncate(parent);
                }
                true
            }
            "" => {
                has_empty = true;
                false
            }
            // Checked before a later `..` may remove it: the raw path reaches upstreams too
            // (forward-auth), not only this normalized form.
            _ => {
                check_segment_readings(segment.as_bytes())?;
                false
            }
        };
        if end == bytes.len() {
            if out.is_empty() || trailing_slash {
                out.push('/');
            }
            if has_empty {
                merge_slashes(&mut out);
            }
            return Ok(out);
        }
        start = end + 1;
    }
}

/// Merges runs of `/` into one, in place.
fn merge_slashes(out: &mut String) {
    let mut prev_slash = false;
    out.retain(|c| {
        let keep = !(c == '/' && prev_slash);
        prev_slash = c == '/';
        keep
    });
}

/// Splits a path into the names routes compare: pieces between `/`, `%2F` or `%5C` (either hex
/// case), each cut at its first `;` or `%3B`, empty names skipped. Yields each name with the byte offset
/// where its piece ends (the start of the following separator, or the length).
struct MatchSegments<'a> {
    path: &'a str,
    pos: usize,
}

impl<'a> MatchSegments<'a> {
    fn new(path: &'a str) -> Self {
        Self { path, pos: 0 }
    }
}

/// Length of the separator starting at `i`, if any.
fn separator_len(bytes: &[u8], i: usize) -> Option<usize> {
    match bytes.get(i)? {
        b'/' => Some(1),
        b'%' => match (bytes.get(i + 1)?, bytes.get(i + 2)?.to_ascii_uppercase()) {
            (b'2', b'F') | (b'5', b'C') => Some(3),
            _ => None,
        },
        _ => None,
    }
}

impl<'a> Iterator for MatchSegments<'a> {
    type Item = (&'a str, usize);

    fn next(&mut self) -> Option<Self::Item> {
        let bytes = self.path.as_bytes();
        while self.pos < bytes.len() {
            let start = self.pos;
            let (i, sep) = next_separator(bytes, start);
            self.pos = i + sep;
            // Separators are ASCII, so `start..i` lies on char boundaries.
            let name = segment_name(self.path.get(start..i).unwrap_or(""));
            if !name.is_empty() {
                return Some((name, i));
            }
        }
        None
    }
}

/// Offset and length of the first separator at or after `from` (`(len, 0)`: none).
fn next_separator(bytes: &[u8], from: usize) -> (usize, usize) {
    let mut i = from;
    while let Some(off) = bytes
        .get(i..)
        .and_then(|rest| memchr::memchr2(b'/', b'%', rest))
    {
        let at = i + off;
        if let Some(len) = separator_len(bytes, at) {
            return (at, len);
        }
        i = at + 1; // a `%` that does not encode a separator
    }
    (bytes.len(), 0)
}

/// A normalized request path, read once for matching against every route (see
/// [`Matcher::matches_path`]): `simple` when it has no `%`, no `;` and no empty segment, so
/// that its route names are exactly its pieces between `/`.
#[derive(Debug, Clone, Copy)]
pub struct MatchPath<'a> {
    path: &'a str,
    simple: bool,
}

impl<'a> MatchPath<'a> {
    /// Reads `path` (from [`normalize_path`]) once.
    pub fn new(path: &'a str) -> Self {
        let bytes = path.as_bytes();
        let simple = bytes.first() == Some(&b'/')
            && memchr::memchr2(b'%', b';', bytes).is_none()
            && memchr::memmem::find(bytes, b"//").is_none();
        Self { path, simple }
    }
}

/// Whether a route prefix's names are its pieces between `/`: no `%` (so no `%2F`/`%5C` that
/// would split a name for matching), no `;`, no empty piece. [`route_path`] never gives `;`
/// or an empty piece; a prefix like `/files/a%2Fb` is not plain and takes the general path.
fn is_plain_prefix(prefix: &str) -> bool {
    let bytes = prefix.as_bytes();
    bytes.first() == Some(&b'/')
        && memchr::memchr2(b'%', b';', bytes).is_none()
        && memchr::memmem::find(bytes, b"//").is_none()
        && (prefix == "/" || !prefix.ends_with('/'))
}

/// [`path_has_prefix`] for a simple path and a plain prefix, without splitting either: every
/// piece between `/` is a name on both sides, so the prefix's names lead the path's exactly
/// when the path starts with the prefix text at a piece boundary.
fn simple_has_prefix(path: &str, prefix: &str) -> bool {
    prefix == "/"
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// Whether `path` lies under the route prefix `prefix`, segment by segment.
fn path_has_prefix(path: &str, prefix: &str) -> bool {
    let mut segments = MatchSegments::new(path);
    MatchSegments::new(prefix).all(|(want, _)| segments.next().is_some_and(|(got, _)| got == want))
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostKind {
    /// Lowercase, no trailing dot.
    Exact(String),
    /// The part after `*.`: lowercase, no trailing dot.
    Wildcard(String),
}

/// `host = "app.example.com"` or `"*.example.com"`.
///
/// A wildcard matches any subdomain, at any depth ≥ 1 (`a.example.com`, `a.b.example.com`), never
/// the apex (`example.com`). Matching is ASCII case-insensitive, ignores a `:port` on the request
/// host and tolerates one trailing dot on either side. Internationalized names must be written in
/// their punycode (`xn--`) form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern {
    kind: HostKind,
}

fn validate_hostname(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("host name is empty".to_owned());
    }
    if name.len() > 253 {
        return Err("host name is longer than 253 characters".to_owned());
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err(format!("host name '{name}' has an empty label"));
        }
        if label.len() > 63 {
            return Err(format!(
                "host name '{name}' has a label longer than 63 characters"
            ));
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
        {
            return Err(format!(
                "host name '{name}' contains '{c}' (only letters, digits, '-', '_' and '.'; \
                 use punycode for international names)"
            ));
        }
    }
    Ok(())
}

/// Removes a `:port` from a request host (`host:8443`, `[::1]:8443`); a bare IPv6 address or a
/// host with a non-numeric "port" is returned unchanged (and then simply fails to match).
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return match host.find(']') {
            Some(close) => &host[..=close],
            None => host,
        };
    }
    match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            name
        }
        _ => host,
    }
}

impl HostPattern {
    /// Parses a route's `host` value. Errors name what is wrong, for `portcullis check`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let lower = s.to_ascii_lowercase();
        let trimmed = lower.strip_suffix('.').unwrap_or(&lower);
        if trimmed.contains(':') && !trimmed.starts_with('[') {
            return Err(format!(
                "host pattern '{s}' must not include a port (the request's port is ignored)"
            ));
        }
        if let Some(suffix) = trimmed.strip_prefix("*.") {
            validate_hostname(suffix).map_err(|e| format!("host pattern '{s}': {e}"))?;
            return Ok(Self {
                kind: HostKind::Wildcard(suffix.to_owned()),
            });
        }
        if trimmed.contains('*') {
            return Err(format!(
                "host pattern '{s}': '*' is only allowed as the whole first label, as in \
                 '*.example.com'"
            ));
        }
        if let Some(inner) = trimmed.strip_prefix('[') {
            let ok = inner
                .strip_suffix(']')
                .is_some_and(|addr| addr.parse::<std::net::Ipv6Addr>().is_ok());
            if !ok {
                return Err(format!(
                    "host pattern '{s}' is not a bracketed IPv6 address like '[::1]'"
                ));
            }
        } else {
            validate_hostname(trimmed).map_err(|e| format!("host pattern '{s}': {e}"))?;
        }
        Ok(Self {
            kind: HostKind::Exact(trimmed.to_owned()),
        })
    }

    /// Whether a request's `Host` (or `:authority`) matches.
    pub fn matches(&self, request_host: &str) -> bool {
        let host = strip_port(request_host);
        let host = host.strip_suffix('.').unwrap_or(host).as_bytes();
        match &self.kind {
            HostKind::Exact(name) => host.eq_ignore_ascii_case(name.as_bytes()),
            HostKind::Wildcard(suffix) => {
                let suffix = suffix.as_bytes();
                // At least one character and a dot before the suffix: never the apex.
                host.len() > suffix.len() + 1
                    && host[host.len() - suffix.len() - 1] == b'.'
                    && host[host.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
            }
        }
    }

    /// A host this pattern matches (`portcullis matrix`'s sample requests): the name itself,
    /// or `sample.` + the domain of a wildcard.
    pub fn sample(&self) -> String {
        match &self.kind {
            HostKind::Exact(h) => h.clone(),
            HostKind::Wildcard(d) => format!("sample.{d}"),
        }
    }

    /// Whether every host `other` matches is also matched by `self`.
    pub fn covers(&self, other: &HostPattern) -> bool {
        match (&self.kind, &other.kind) {
            (HostKind::Exact(a), HostKind::Exact(b)) => a == b,
            (HostKind::Wildcard(_), HostKind::Exact(b)) => self.matches(b),
            // `*.a.example.com` ⊆ `*.example.com`.
            (HostKind::Wildcard(a), HostKind::Wildcard(b)) => {
                a == b
                    || b.strip_suffix(a.as_str())
                        .is_some_and(|rest| rest.ends_with('.'))
            }
            (HostKind::Exact(_), HostKind::Wildcard(_)) => false,
        }
    }
}

impl std::fmt::Display for HostPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            HostKind::Exact(name) => f.write_str(name),
            HostKind::Wildcard(suffix) => write!(f, "*.{suffix}"),
        }
    }
}

/// One route's matcher, built at config load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matcher {
    /// `None`: any host, including a request without one.
    pub host: Option<HostPattern>,
    /// Normalized segment prefix, no trailing slash except `"/"`.
    pub path: String,
    /// `None`: any method. Never empty, uppercase, no duplicates.
    pub methods: Option<Vec<http::Method>>,
    /// Whether `path`'s route names are its pieces between `/` ([`is_plain_prefix`]): matching
    /// a [`MatchPath`] that is simple then compares text instead of names.
    plain: bool,
}

impl Matcher {
    /// Validates and compiles one route's `host`, `path` and `methods`. Errors name the problem
    /// in words a config author can act on.
    pub fn new(host: Option<&str>, path: &str, methods: Option<&[String]>) -> Result<Self, String> {
        let host = host.map(HostPattern::parse).transpose()?;
        let path = route_path(path)?;
        let methods = methods.map(parse_methods).transpose()?;
        let plain = is_plain_prefix(&path);
        Ok(Self {
            host,
            path,
            methods,
            plain,
        })
    }

    /// Whether a request matches. `normalized_path` must come from [`normalize_path`]; a route
    /// with a `host` does not match a request without one.
    pub fn matches(
        &self,
        host: Option<&str>,
        method: &http::Method,
        normalized_path: &str,
    ) -> bool {
        self.matches_path(host, method, &MatchPath::new(normalized_path))
    }

    /// [`Matcher::matches`] for a path read once with [`MatchPath::new`], as the proxy does for
    /// all routes of a request.
    pub fn matches_path(
        &self,
        host: Option<&str>,
        method: &http::Method,
        path: &MatchPath<'_>,
    ) -> bool {
        let method_ok = (self.methods.as_ref()).is_none_or(|methods| methods.contains(method));
        let host_ok =
            (self.host.as_ref()).is_none_or(|pattern| host.is_some_and(|h| pattern.matches(h)));
        method_ok
            && host_ok
            && if self.plain && path.simple {
                simple_has_prefix(path.path, &self.path)
            } else {
                path_has_prefix(path.path, &self.path)
            }
    }

    /// `true` when every request `later` could match is already matched by `self` (used to
    /// report a route shadowed by an earlier one as a config error). Sound, not complete: it
    /// answers `true` only when it can prove it.
    pub fn shadows(&self, later: &Matcher) -> bool {
        let host_covered = match (&self.host, &later.host) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(a), Some(b)) => a.covers(b),
        };
        let methods_covered = match (&self.methods, &later.methods) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(a), Some(b)) => b.iter().all(|m| a.contains(m)),
        };
        host_covered && methods_covered && path_has_prefix(&later.path, &self.path)
    }
}

/// Validates and normalizes a route's `path`.
fn route_path(path: &str) -> Result<String, String> {
    if !path.starts_with('/') {
        return Err(format!("route path '{path}' must start with '/'"));
    }
    let body = path.strip_suffix('/').unwrap_or(path);
    for segment in body.split('/').skip(1) {
        let dot = matches!(
            segment.to_ascii_lowercase().as_str(),
            "." | ".." | "%2e" | "%2e%2e" | ".%2e" | "%2e."
        );
        if segment.is_empty() || dot {
            return Err(format!(
                "route path '{path}' has an empty, '.' or '..' segment; write the path it means"
            ));
        }
    }
    let normalized = normalize_path(path).map_err(|e| format!("route path '{path}': {e}"))?;
    if normalized.contains(';') || normalized.contains("%3B") {
        return Err(format!(
            "route path '{path}' must not contain ';' or '%3B' (matrix parameters are ignored \
             when matching, so it could never match)"
        ));
    }
    let normalized = normalized.into_owned();
    Ok(match normalized.strip_suffix('/') {
        Some(without) if !without.is_empty() => without.to_owned(),
        _ => normalized,
    })
}

/// Whether a request's method has lower-case letters (`delete`, `Post`). Methods are
/// case-sensitive (RFC 9110 §9.1), so `delete` is not `DELETE` and would skip a route
/// restricted to `DELETE` — while many upstreams (werkzeug, Django, Rack) upper-case the
/// method and run it as `DELETE`. Such a request is refused (400) before routing, in the proxy
/// and in `/.auth/check`: the route that judges it must be the one the upstream serves.
pub fn method_is_ambiguous(method: &http::Method) -> bool {
    method.as_str().bytes().any(|b| b.is_ascii_lowercase())
}

fn parse_methods(methods: &[String]) -> Result<Vec<http::Method>, String> {
    if methods.is_empty() {
        return Err("methods is empty; omit it to allow every method".to_owned());
    }
    let mut parsed: Vec<http::Method> = Vec::with_capacity(methods.len());
    for name in methods {
        let upper = name.to_ascii_uppercase();
        let method = http::Method::from_bytes(upper.as_bytes())
            .map_err(|_| format!("'{name}' is not a valid HTTP method"))?;
        if !parsed.contains(&method) {
            parsed.push(method);
        }
    }
    // HEAD is GET without the body: frameworks (Flask, Django, Rails, Express) answer it with
    // the GET handler, so a GET route must judge HEAD too — else HEAD falls through to a later,
    // looser route while the upstream runs the GET view.
    if parsed.contains(&http::Method::GET) && !parsed.contains(&http::Method::HEAD) {
        parsed.push(http::Method::HEAD);
    }
    Ok(parsed)
}

/// Forwards `/app/x` as `/x` for `strip_prefix` routes: `/app` → `/`, the rest kept exactly.
///
/// Call only with a path the route matched; the prefix's segments are consumed the way
/// [`Matcher::matches`] compares them, so `/app;v=1/x` → `/x` and `/app%2Fx` → `/x`. A path
/// that does not lie under `prefix` is returned unchanged.
pub fn strip_prefix<'a>(normalized_path: &'a str, prefix: &str) -> Cow<'a, str> {
    let mut segments = MatchSegments::new(normalized_path);
    let mut end = 0;
    for (want, _) in MatchSegments::new(prefix) {
        match segments.next() {
            Some((got, got_end)) if got == want => end = got_end,
            _ => return Cow::Borrowed(normalized_path),
        }
    }
    let bytes = normalized_path.as_bytes();
    match bytes.get(end) {
        // Prefix "/" consumed nothing.
        _ if end == 0 => Cow::Borrowed(normalized_path),
        None => Cow::Borrowed("/"),
        Some(b'/') => Cow::Borrowed(&normalized_path[end..]),
        // An encoded separator (`%2F`, `%5C`) ends the prefix: forward what follows it.
        Some(_) => {
            let rest = normalized_path.get(end + 3..).unwrap_or("");
            let mut out = String::with_capacity(rest.len() + 1);
            out.push('/');
            out.push_str(rest);
            Cow::Owned(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;

    fn norm(raw: &str) -> Result<String, PathError> {
        normalize_path(raw).map(Cow::into_owned)
    }

    /// The table: raw path → normalized path or error.
    #[test]
    fn normalization_table() {
        use PathError::*;
        let ok = |s: &str| Ok::<String, PathError>(s.to_owned());
        let cases: &[(&str, Result<String, PathError>)] = &[
            // dot segments and slashes
            ("/admin/../x", ok("/x")),
            ("//admin", ok("/admin")),
            ("///admin//x", ok("/admin/x")),
            ("/admin/./", ok("/admin/")),
            ("/./admin", ok("/admin")),
            ("/admin/.", ok("/admin/")),
            ("/admin/..", ok("/")),
            ("/a/b/../../admin", ok("/admin")),
            ("/..", ok("/")),
            ("/../../x", ok("/x")),
            ("/a/./b/../c/", ok("/a/c/")),
            ("/admin//", ok("/admin/")),
            ("/", ok("/")),
            ("//", ok("/")),
            ("/.a/..b/c..", ok("/.a/..b/c..")),
            ("/a..b/.well-known/x.y", ok("/a..b/.well-known/x.y")),
            ("/admin;x/../y", ok("/y")),
            ("/a/b;x/c/../../y", ok("/a/y")),
            ("/a//b/../y", ok("/a/y")),
            // encoded dots are dots
            ("/%2e%2e/admin", ok("/admin")),
            ("/%2E%2e/", ok("/")),
            ("/admin/%2E/", ok("/admin/")),
            ("/.%2e/admin", ok("/admin")),
            ("/%2e", ok("/")),
            ("/%2e%2e%2e", Err(HiddenDotSegment)),
            // encoded separators stay encoded inside names
            ("/admin%2f", ok("/admin%2F")),
            ("/admin%2Fx", ok("/admin%2Fx")),
            ("/a%5cb", ok("/a%5Cb")),
            ("/files/a%2Fb", ok("/files/a%2Fb")),
            ("/a%2Fb/c/../x", ok("/a%2Fb/x")),
            ("/a%2F.b/x", ok("/a%2F.b/x")),
            ("/a.%2F.b", ok("/a.%2F.b")),
            ("/a%3B..", ok("/a%3B..")),
            ("/a;..", ok("/a;..")),
            // ... but never hide a dot segment (each reading an upstream may apply)
            ("/admin/..%2f", Err(HiddenDotSegment)),
            ("/foo/%2e%2e%2fadmin", Err(HiddenDotSegment)),
            ("/public/..%2Fadmin", Err(HiddenDotSegment)),
            ("/public%2F..%2Fadmin", Err(HiddenDotSegment)),
            ("/x/%2e%2e%5Cadmin", Err(HiddenDotSegment)),
            ("/x/..%5cadmin", Err(HiddenDotSegment)),
            ("/public/.%2e%2Fadmin", Err(HiddenDotSegment)),
            ("/public/%2E.%2fadmin", Err(HiddenDotSegment)),
            ("/public/.%2Fadmin", Err(HiddenDotSegment)),
            ("/public%2F.", Err(HiddenDotSegment)),
            ("/public%2F..", Err(HiddenDotSegment)),
            ("/%2F..", Err(HiddenDotSegment)),
            ("/public/..%3B/admin", Err(HiddenDotSegment)),
            ("/public/..%3bx/admin", Err(HiddenDotSegment)),
            ("/public/..;jsessionid=x/admin", Err(HiddenDotSegment)),
            // `;` parameters, then an encoded separator: Tomcat cuts it away, others split
            ("/public/a;x%2F..%2Fadmin", Err(SeparatorInParameters)),
            ("/a;x%2Fb", Err(SeparatorInParameters)),
            ("/;%2Fhealthz/secret", Err(SeparatorInParameters)),
            ("/a%3Bx%5Cb", Err(SeparatorInParameters)),
            ("/...", Err(HiddenDotSegment)),
            ("/public/..%20/admin", Err(HiddenDotSegment)),
            ("/public/. /admin", Err(HiddenDotSegment)),
            // ... also when NFKC or Windows "best fit" turns look-alikes into dots and slashes
            (
                "/public/%EF%BC%8E%EF%BC%8E%EF%BC%8Fadmin",
                Err(HiddenDotSegment),
            ),
            ("/public/..%ef%bc%8fadmin", Err(HiddenDotSegment)),
            ("/public/..%E2%88%95admin", Err(HiddenDotSegment)),
            ("/public/%E2%80%A5/admin", Err(HiddenDotSegment)),
            ("/public/%E2%80%A6", Err(HiddenDotSegment)),
            ("/public/.%EF%B9%92%EF%BC%BCadmin", Err(HiddenDotSegment)),
            ("/public/..%EF%BC%9Bx/admin", Err(HiddenDotSegment)),
            ("/a%EF%BC%9Bx%2Fb", Err(SeparatorInParameters)),
            ("/a%EF%BC%8Fb", ok("/a%EF%BC%8Fb")),
            ("/Hello%E2%80%A6", ok("/Hello%E2%80%A6")),
            ("/%EF%BC%A1%E2%82%AC", ok("/%EF%BC%A1%E2%82%AC")),
            // `..` that would remove a segment readings count differently
            ("/a%2Fb/../x", Err(AmbiguousParent)),
            ("/a%5Cb/..", Err(AmbiguousParent)),
            ("/a//../x", Err(AmbiguousParent)),
            ("/a/.//../x", Err(AmbiguousParent)),
            ("/a//b/../../x", Err(AmbiguousParent)),
            ("/;x/../admin", Err(AmbiguousParent)),
            ("/%3Bx/../admin", Err(AmbiguousParent)),
            ("/50%25/../x", Err(AmbiguousParent)),
            // double encoding: refused when a second decoding pass would be dangerous
            ("/%252e%252e/admin", Err(DoubleEncoding)),
            ("/public/%252e%252e%252fadmin", Err(DoubleEncoding)),
            ("/public/..%252Fadmin", Err(DoubleEncoding)),
            ("/public%252F..%252Fadmin", Err(DoubleEncoding)),
            ("/%25252e%25252e/admin", Err(DoubleEncoding)),
            ("/%25c0%25ae", Err(DoubleEncoding)),
            ("/%2525252e", Err(DoubleEncoding)),
            ("/a%25252541", ok("/a%25252541")),
            ("/a%2525252541", Err(DoubleEncoding)),
            ("/a%2500", Err(DoubleEncoding)),
            ("/a%250a", Err(DoubleEncoding)),
            ("/a%252Fb", ok("/a%252Fb")),
            ("/report%252e.pdf", ok("/report%252e.pdf")),
            ("/50%25", ok("/50%25")),
            ("/%25C3%25A9", ok("/%25C3%25A9")),
            // unreserved decoded, everything else uppercase hex
            ("/%41dmin", ok("/Admin")),
            ("/adm%69n", ok("/admin")),
            ("/%7euser", ok("/~user")),
            ("/%2d%2E%5f%7E%30%5a%61", ok("/-._~0Za")),
            ("/a%20b", ok("/a%20b")),
            ("/%3b%3d%3f%23%25", ok("/%3B%3D%3F%23%25")),
            // raw bytes that may not stand in a path are encoded
            ("/a b", ok("/a%20b")),
            ("/a{b}|\"<>^`[]", ok("/a%7Bb%7D%7C%22%3C%3E%5E%60%5B%5D")),
            ("/café", ok("/caf%C3%A9")),
            // case is kept
            ("/ADMIN", ok("/ADMIN")),
            ("/admin;x", ok("/admin;x")),
            ("/a;b=c;d/e", ok("/a;b=c;d/e")),
            // UTF-8 stays encoded, normalized hex
            ("/caf%C3%A9", ok("/caf%C3%A9")),
            ("/caf%c3%a9", ok("/caf%C3%A9")),
            ("/%e2%82%ac", ok("/%E2%82%AC")),
            ("/%F0%9F%A6%80", ok("/%F0%9F%A6%80")),
            // invalid percent-encoding
            ("/%", Err(InvalidPercentEncoding)),
            ("/%4", Err(InvalidPercentEncoding)),
            ("/%zz", Err(InvalidPercentEncoding)),
            ("/%4g", Err(InvalidPercentEncoding)),
            ("/admin%", Err(InvalidPercentEncoding)),
            ("/%%41", Err(InvalidPercentEncoding)),
            ("/%4/", Err(InvalidPercentEncoding)),
            // invalid UTF-8
            ("/%c0%ae%c0%ae/", Err(InvalidUtf8)),
            ("/%c1%81", Err(InvalidUtf8)),
            ("/%e0%80%ae", Err(InvalidUtf8)),
            ("/%f0%80%80%ae", Err(InvalidUtf8)),
            ("/%e2%82", Err(InvalidUtf8)),
            ("/%e2%82/%ac", Err(InvalidUtf8)),
            ("/%e2%82a", Err(InvalidUtf8)),
            ("/%e2%82%41", Err(InvalidUtf8)),
            ("/%c3é", Err(InvalidUtf8)),
            ("/%80", Err(InvalidUtf8)),
            ("/%a9", Err(InvalidUtf8)),
            ("/%ff", Err(InvalidUtf8)),
            ("/%ed%a0%80", Err(InvalidUtf8)),
            ("/%f4%90%80%80", Err(InvalidUtf8)),
            // NUL, control characters, backslash, delimiters
            ("/%00", Err(NulByte)),
            ("/a\0b", Err(NulByte)),
            ("/a\nb", Err(ControlCharacter)),
            ("/a\x7fb", Err(ControlCharacter)),
            ("/%0a", Err(ControlCharacter)),
            ("/a%0D%0Ab", Err(ControlCharacter)),
            ("/..%09/admin", Err(ControlCharacter)),
            ("/a%7f", Err(ControlCharacter)),
            ("/admin\\x", Err(Backslash)),
            ("/\\admin", Err(Backslash)),
            ("/a?b", Err(UnexpectedDelimiter)),
            ("/a#b", Err(UnexpectedDelimiter)),
            // dot segments with parameters
            ("/..;/admin", Err(HiddenDotSegment)),
            ("/public/..;x/admin", Err(HiddenDotSegment)),
            ("/.;x/admin", Err(HiddenDotSegment)),
            ("/%2e%2e;/admin", Err(HiddenDotSegment)),
            // not absolute
            ("", Err(NotAbsolute)),
            ("admin", Err(NotAbsolute)),
            ("*", Err(NotAbsolute)),
            ("http://h/admin", Err(NotAbsolute)),
            ("\\admin", Err(NotAbsolute)),
        ];
        assert!(cases.len() >= 35);
        for (raw, want) in cases {
            assert_eq!(&norm(raw), want, "normalize_path({raw:?})");
            // Every output is a fixed point and takes the allocation-free path.
            if let Ok(out) = want {
                assert!(
                    matches!(normalize_path(out), Ok(Cow::Borrowed(b)) if b == out),
                    "{out:?} is not a borrowed fixed point"
                );
            }
        }
    }

    /// Already-normal paths come back borrowed (no allocation on the hot path).
    #[test]
    fn normal_paths_are_borrowed() {
        for raw in [
            "/",
            "/admin",
            "/admin/",
            "/a/b;c=d/e",
            "/a%20b%2F",
            "/~u-._:@!$&'()*+,=",
            "/caf%C3%A9",
            "/.well-known/openid-configuration",
            "/static/app.min.js",
            "/files/a%2Fb",
            "/a%252Fb",
            "/a;jsessionid=1/b",
        ] {
            assert!(matches!(normalize_path(raw), Ok(Cow::Borrowed(_))), "{raw}");
        }
        for raw in [
            "/%41",
            "/a//b",
            "/a/./b",
            "/%e2%82%ac",
            "/a%2f",
            "/%E2%82%ac",
        ] {
            assert!(matches!(normalize_path(raw), Ok(Cow::Owned(_))), "{raw}");
        }
    }

    /// A long path of 2000 segments, and long runs of dots and slashes.
    #[test]
    fn long_paths() {
        let long = "/segment".repeat(2000);
        assert!(matches!(normalize_path(&long), Ok(Cow::Borrowed(s)) if s == long));
        assert_eq!(norm(&"/a/..".repeat(2000)), Ok("/".to_owned()));
        assert_eq!(norm(&format!("{}x", "/".repeat(2000))), Ok("/x".to_owned()));
        assert_eq!(
            norm(&format!("{}/admin", "/..".repeat(2000))),
            Ok("/admin".to_owned())
        );
        assert_eq!(
            norm(&format!("{}{}", "/a".repeat(2000), "/..".repeat(1999))),
            Ok("/a/".to_owned())
        );
        // Nested `%25` and long hidden pieces stay linear: refused, not ground through.
        let nested = format!("/%25{}2e", "25".repeat(20_000));
        assert_eq!(norm(&nested), Err(PathError::DoubleEncoding));
        let dots = format!("/a{}", "%2F..".repeat(10_000));
        assert_eq!(norm(&dots), Err(PathError::HiddenDotSegment));
        let pops = format!("/x{}{}", "/a%2Fb".repeat(2000), "/..".repeat(2000));
        assert_eq!(norm(&pops), Err(PathError::AmbiguousParent));
    }

    /// An independent model of how upstreams read a path, written without the code under test,
    /// for [`no_reading_finds_a_dot_segment`].
    mod model {
        /// One way an upstream reads a path.
        #[derive(Debug, Clone, Copy)]
        pub struct Reading {
            /// `%2F` and `%5C` (any case) are separators too (WSGI `PATH_INFO`, Windows).
            pub split_encoded: bool,
            /// 0: no cut; 1: each segment cut at its first raw `;` (Tomcat); 2: at `;` or
            /// `%3B` (Spring, after decoding).
            pub cut: u8,
            /// Empty segments dropped before dot segments are resolved (nginx `merge_slashes`).
            pub merge: bool,
        }

        /// Every combination.
        pub const READINGS: [Reading; 12] = {
            let mut all = [Reading {
                split_encoded: false,
                cut: 0,
                merge: false,
            }; 12];
            let mut i = 0;
            while i < 12 {
                all[i] = Reading {
                    split_encoded: i & 1 == 1,
                    cut: (i / 4) as u8,
                    merge: i & 2 == 2,
                };
                i += 1;
            }
            all
        };

        fn hex(b: u8) -> Option<u8> {
            (b as char).to_digit(16).map(|d| d as u8)
        }

        /// The byte `%XX` at `i` stands for.
        fn pct(s: &[u8], i: usize) -> Option<u8> {
            if s.get(i) != Some(&b'%') {
                return None;
            }
            Some(hex(*s.get(i + 1)?)? * 16 + hex(*s.get(i + 2)?)?)
        }

        /// Every valid `%XX` decoded, once.
        pub fn decode(s: &str) -> Vec<u8> {
            let b = s.as_bytes();
            let mut out = Vec::new();
            let mut i = 0;
            while i < b.len() {
                match pct(b, i) {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                    }
                    None => {
                        out.push(b[i]);
                        i += 1;
                    }
                }
            }
            out
        }

        pub fn is_dot(segment: &str) -> bool {
            let d = decode(segment);
            d == b"." || d == b".."
        }

        /// The segments of `path` (after its leading `/`) under `r`, each cut as `r` cuts.
        pub fn segments(path: &str, r: Reading) -> Vec<String> {
            let b = path.as_bytes();
            let mut out = Vec::new();
            let mut cur = String::new();
            let mut i = 1;
            while i < b.len() {
                let v = pct(b, i);
                if b[i] == b'/' || b[i] == b'\\' {
                    out.push(std::mem::take(&mut cur));
                    i += 1;
                } else if r.split_encoded && matches!(v, Some(b'/' | b'\\')) {
                    out.push(std::mem::take(&mut cur));
                    i += 3;
                } else {
                    cur.push(b[i] as char);
                    i += 1;
                }
            }
            out.push(cur);
            for s in &mut out {
                let cut_at = match r.cut {
                    0 => None,
                    1 => s.find(';'),
                    _ => {
                        let encoded = s.to_ascii_uppercase().find("%3B");
                        match (s.find(';'), encoded) {
                            (Some(a), Some(b)) => Some(a.min(b)),
                            (a, b) => a.or(b),
                        }
                    }
                };
                if let Some(at) = cut_at {
                    s.truncate(at);
                }
            }
            out
        }

        /// RFC 3986 5.2.4 over segments (after dropping empty ones when `r.merge`).
        pub fn resolve(path: &str, r: Reading) -> Vec<String> {
            let mut out: Vec<String> = Vec::new();
            for s in segments(path, r) {
                if r.merge && s.is_empty() {
                    continue;
                }
                let d = decode(&s);
                if d == b"." {
                } else if d == b".." {
                    out.pop();
                } else {
                    out.push(s);
                }
            }
            out
        }

        /// What route matching compares: pieces split at every separator reading, cut at `;`
        /// and `%3B`, decoded, empty ones dropped.
        pub fn names(segments: &[String]) -> Vec<Vec<u8>> {
            let all = Reading {
                split_encoded: true,
                cut: 2,
                merge: true,
            };
            segments
                .iter()
                .flat_map(|s| self::segments(&format!("/{s}"), all))
                .map(|s| decode(&s))
                .filter(|s| !s.is_empty())
                .collect()
        }
    }

    /// Every string `/` + up to `max` tokens of `alphabet`.
    fn all_paths(alphabet: &[&str], max: usize) -> Vec<String> {
        let mut level = vec![String::from("/")];
        let mut all = level.clone();
        for _ in 0..max {
            level = level
                .iter()
                .flat_map(|p| alphabet.iter().map(move |t| format!("{p}{t}")))
                .collect();
            all.extend(level.iter().cloned());
        }
        all
    }

    /// The property of [`normalize_path`] (and of its fuzz target) for one raw path.
    fn assert_path_property(raw: &str) -> bool {
        let Ok(out) = normalize_path(raw) else {
            return false;
        };
        // idempotent, and the fixed point takes the allocation-free path
        assert!(
            matches!(normalize_path(&out), Ok(Cow::Borrowed(b)) if b == out),
            "{raw:?} → {out:?} is not a borrowed fixed point"
        );
        // no reading of the accepted path — nor of it decoded again — has a dot segment
        let mut view = out.to_string();
        loop {
            // (merging slashes changes no segment into a dot segment)
            for r in model::READINGS.into_iter().filter(|r| !r.merge) {
                let segs = model::segments(&view, r);
                assert!(
                    !segs.iter().any(|s| model::is_dot(s)),
                    "{raw:?} → {out:?}: {view:?} read as {r:?} has a dot segment: {segs:?}"
                );
            }
            if !view.contains("%25") {
                break;
            }
            view = view.replace("%25", "%");
        }
        // every reading of the raw path that resolves dot segments lands on the same route
        // names as the normalized path (forward-auth front proxies pass the raw path on)
        let want = model::names(&[out.to_string()]);
        let ours: Vec<Vec<u8>> = MatchSegments::new(&out)
            .map(|(name, _)| model::decode(name))
            .collect();
        assert_eq!(ours, want, "{raw:?} → {out:?}: matcher and model disagree");
        for r in model::READINGS {
            let got = model::names(&model::resolve(raw, r));
            assert_eq!(
                got, want,
                "{raw:?} → {out:?}: read as {r:?} the route names differ"
            );
        }
        true
    }

    /// Exhaustive over a small alphabet of separators, dots, parameters and their encodings:
    /// see [`assert_path_property`]. Also the path still passes when it only carries an encoded
    /// separator inside a name.
    #[test]
    fn no_reading_finds_a_dot_segment() {
        const SEPARATORS: &[&str] = &["/", ".", "%2e", "%2f", "%5c", ";", "%3b", "a"];
        let paths = all_paths(SEPARATORS, 6);
        let accepted = paths.iter().filter(|p| assert_path_property(p)).count();
        // Sanity: the alphabet exercises both answers.
        assert!(
            accepted > 10_000 && accepted < paths.len() / 2,
            "{accepted}"
        );
        const DOUBLE: &[&str] = &["/", ".", "%25", "2e", "2F", "%2E", ";", "a"];
        for p in all_paths(DOUBLE, 5) {
            assert_path_property(&p);
        }
    }

    /// Route matching's text comparison (a simple path against a plain prefix) answers exactly
    /// what the name-by-name comparison answers, for every normalized path over an alphabet of
    /// names, separators, parameters and encodings, against prefixes plain and not.
    #[test]
    fn simple_match_agrees_with_names() {
        const PIECES: &[&str] = &["/", "a", "ab", "b", ";", "%2F", "%3B", "%25", "/a"];
        let prefixes = [
            "/", "/a", "/ab", "/a/b", "/a/a", "/b", "/a/", "/a%2Fb", "/ab/a", "/%25",
        ];
        let matchers: Vec<Matcher> = prefixes.iter().map(|p| route(p)).collect();
        assert!(matchers.iter().any(|m| !m.plain) && matchers.iter().any(|m| m.plain));
        let (mut simple, mut hits) = (0, 0);
        for raw in all_paths(PIECES, 5) {
            let Ok(path) = normalize_path(&raw) else {
                continue;
            };
            let read = MatchPath::new(&path);
            simple += usize::from(read.simple);
            for m in &matchers {
                let want = path_has_prefix(&path, &m.path);
                assert_eq!(
                    m.matches_path(None, &Method::GET, &read),
                    want,
                    "{raw:?} → {path:?} against {:?}",
                    m.path
                );
                hits += usize::from(want);
            }
        }
        assert!(simple > 1_000 && hits > 1_000, "{simple} {hits}");
    }

    /// A small deterministic fuzz over tricky pieces: the fast path agrees with the full one,
    /// and normalization is idempotent.
    #[test]
    fn fast_path_agrees_and_idempotent() {
        const PIECES: &[&str] = &[
            "/", "a", ".", "..", "%2e", "%2E", "%2f", "%41", "%c3", "%a9", "%00", ";", ";x", "%",
            "%7e", "B", "é", " ", "{", "%25", "%3B", "\\", "%5c",
        ];
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..20_000 {
            let mut raw = String::from("/");
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let n = (state % 8) as usize;
            for k in 0..n {
                raw.push_str(PIECES[((state >> (8 * k)) % PIECES.len() as u64) as usize]);
            }
            if is_normalized(&raw) {
                assert_eq!(
                    normalize_owned(&raw).as_deref(),
                    Ok(raw.as_str()),
                    "{raw:?}"
                );
            }
            if let Ok(once) = normalize_path(&raw) {
                assert_eq!(normalize_path(&once).as_deref(), Ok(&*once), "{raw:?}");
            }
        }
    }

    fn route(path: &str) -> Matcher {
        Matcher::new(None, path, None).expect("valid route")
    }

    fn hits(m: &Matcher, raw: &str) -> bool {
        let path = normalize_path(raw).expect("valid path");
        m.matches(None, &Method::GET, &path)
    }

    /// Route `/admin` against raw request paths (normalized first, as the proxy does).
    #[test]
    fn admin_route_matching_table() {
        let admin = route("/admin");
        let cases: &[(&str, bool)] = &[
            ("/admin", true),
            ("/admin/", true),
            ("/admin/x", true),
            ("//admin", true),
            ("///admin//x", true),
            ("/%2e%2e/admin", true),
            ("/./admin", true),
            ("/a/b/../../admin", true),
            ("/.%2e/admin", true),
            ("/adm%69n", true),
            ("/admin/./", true),
            ("/admin/.", true),
            // matrix parameters: compared up to ';', and parameter-only segments are skipped
            ("/admin;x", true),
            ("/admin;jsessionid=1/x", true),
            ("/;x/admin", true),
            ("/;x/admin/y", true),
            // encoded separators split segments for matching (stricter route wins)
            ("/admin%2Fx", true),
            ("/admin%2f", true),
            ("/admin%5Cx", true),
            // not the admin route
            ("/ADMIN", false),
            ("/Admin", false),
            ("/%41dmin", false),
            ("/administrator", false),
            ("/adminx", false),
            ("/admin%20", false),
            ("/admin%3Bx", true),
            ("/admin%3bx/y", true),
            ("/admin/..", false),
            ("/admin/../x", false),
            ("/x/admin", false),
            ("/", false),
            ("/%2E%2e/", false),
            ("/a%20b", false),
            ("/caf%C3%A9", false),
        ];
        for (raw, want) in cases {
            assert_eq!(hits(&admin, raw), *want, "route /admin vs {raw:?}");
        }
    }

    /// Segment prefix: `/api/public` matches itself and below, not `/api/publicity`.
    #[test]
    fn segment_prefix() {
        let public = route("/api/public");
        assert!(hits(&public, "/api/public"));
        assert!(hits(&public, "/api/public/"));
        assert!(hits(&public, "/api/public/x"));
        assert!(hits(&public, "/api/public;v=2/x"));
        assert!(!hits(&public, "/api/publicity"));
        assert!(!hits(&public, "/api"));
        assert!(!hits(&public, "/api/"));
        assert!(!hits(&public, "/api/x/public"));
        let root = route("/");
        for raw in ["/", "/x", "/admin/y", "/;x", "/%2e%2e"] {
            assert!(hits(&root, raw), "{raw}");
        }
    }

    /// Route paths are validated and normalized at load.
    #[test]
    fn route_path_validation() {
        assert_eq!(route("/api/").path, "/api");
        assert_eq!(route("/").path, "/");
        assert_eq!(route("/%61pi").path, "/api");
        assert_eq!(route("/caf%c3%a9").path, "/caf%C3%A9");
        for bad in [
            "",
            "api",
            "/a//b",
            "/a/../b",
            "/./a",
            "/a/%2e",
            "/a;b",
            "/a%3Bb",
            "/a/..%2Fb",
            "/%zz",
            "/a\\b",
            "//",
        ] {
            assert!(Matcher::new(None, bad, None).is_err(), "{bad:?} accepted");
        }
    }

    /// `*.example.com`: any subdomain depth ≥ 1, never the apex; case and port ignored.
    #[test]
    fn host_patterns() {
        let wild = HostPattern::parse("*.example.com").expect("valid");
        let cases: &[(&str, bool)] = &[
            ("a.example.com", true),
            ("a.b.example.com", true),
            ("A.EXAMPLE.COM:8443", true),
            ("a.example.com.", true),
            ("a.example.com.:443", true),
            ("example.com", false),
            (".example.com", false),
            ("evil-example.com", false),
            ("a.evil-example.com", false),
            ("example.com.evil.net", false),
            ("a.example.com:x", false),
            ("a.example.coma", false),
            ("", false),
        ];
        for (host, want) in cases {
            assert_eq!(wild.matches(host), *want, "*.example.com vs {host:?}");
        }
        let exact = HostPattern::parse("App.Example.com.").expect("valid");
        assert_eq!(exact.to_string(), "app.example.com");
        assert!(exact.matches("app.example.com"));
        assert!(exact.matches("APP.example.COM:8080"));
        assert!(exact.matches("app.example.com."));
        assert!(!exact.matches("x.app.example.com"));
        assert!(!exact.matches("app.example.com.evil"));
        let v6 = HostPattern::parse("[::1]").expect("valid");
        assert!(v6.matches("[::1]:8080"));
        assert!(v6.matches("[::1]"));
        assert!(
            HostPattern::parse("127.0.0.1")
                .expect("valid")
                .matches("127.0.0.1:80")
        );
        for bad in [
            "",
            "*",
            "*.",
            "a.*.com",
            "*example.com",
            "**.example.com",
            "app.example.com:443",
            "a..b",
            "a b",
            "a/b",
            "[nope]",
            "é.com",
        ] {
            assert!(HostPattern::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn host_and_method_restrictions() {
        let methods = ["get".to_owned(), "POST".to_owned(), "GET".to_owned()];
        let m = Matcher::new(Some("*.example.com"), "/api", Some(&methods)).expect("valid");
        assert_eq!(
            m.methods,
            Some(vec![Method::GET, Method::POST, Method::HEAD]),
            "a GET route also judges HEAD"
        );
        assert!(m.matches(Some("a.example.com"), &Method::GET, "/api/x"));
        assert!(m.matches(Some("a.example.com:8443"), &Method::POST, "/api"));
        assert!(m.matches(Some("a.example.com"), &Method::HEAD, "/api"));
        assert!(!m.matches(Some("a.example.com"), &Method::DELETE, "/api"));
        assert!(!m.matches(Some("example.com"), &Method::GET, "/api"));
        assert!(!m.matches(None, &Method::GET, "/api"));
        assert!(!m.matches(Some("a.example.com"), &Method::GET, "/apix"));
        let custom = ["purge".to_owned()];
        let purge = Matcher::new(None, "/", Some(&custom)).expect("valid");
        let purge_method = Method::from_bytes(b"PURGE").expect("valid method");
        assert!(purge.matches(None, &purge_method, "/x"));
        assert!(Matcher::new(None, "/", Some(&[])).is_err());
        assert!(Matcher::new(None, "/", Some(&["GE T".to_owned()])).is_err());
        assert!(Matcher::new(None, "/", Some(&["".to_owned()])).is_err());
        assert!(Matcher::new(Some("*"), "/", None).is_err());
    }

    fn matcher(host: Option<&str>, path: &str, methods: Option<&[&str]>) -> Matcher {
        let methods: Option<Vec<String>> =
            methods.map(|ms| ms.iter().map(|m| (*m).to_owned()).collect());
        Matcher::new(host, path, methods.as_deref()).expect("valid matcher")
    }

    #[test]
    fn shadowing() {
        let catch_all = matcher(None, "/", None);
        let api = matcher(None, "/api", None);
        let api_x = matcher(None, "/api/x", None);
        let apix = matcher(None, "/apix", None);
        let hosted = matcher(Some("app.example.com"), "/api", None);
        let wild = matcher(Some("*.example.com"), "/", None);
        let deep_wild = matcher(Some("*.a.example.com"), "/", None);
        let get = matcher(None, "/", Some(&["GET"]));
        let get_post = matcher(None, "/api", Some(&["GET", "POST"]));
        let get_api = matcher(None, "/api/x", Some(&["GET"]));

        // The catch-all without host or methods shadows everything after it.
        for later in [
            &api, &api_x, &apix, &hosted, &wild, &get, &get_post, &catch_all,
        ] {
            assert!(catch_all.shadows(later), "/ should shadow {later:?}");
        }
        assert!(api.shadows(&api_x));
        assert!(api.shadows(&hosted));
        assert!(!api.shadows(&apix));
        assert!(!api_x.shadows(&api));
        assert!(!api.shadows(&catch_all));
        // A host- or method-restricted route does not shadow an unrestricted one.
        assert!(!hosted.shadows(&api));
        assert!(!wild.shadows(&catch_all));
        assert!(!get.shadows(&catch_all));
        assert!(!get_post.shadows(&api));
        // ... but does shadow a narrower restricted one.
        assert!(get_post.shadows(&get_api));
        assert!(get.shadows(&get_api));
        assert!(!get_api.shadows(&get_post));
        assert!(wild.shadows(&matcher(Some("b.example.com"), "/x", None)));
        assert!(!wild.shadows(&matcher(Some("example.com"), "/x", None)));
        assert!(wild.shadows(&deep_wild));
        assert!(!deep_wild.shadows(&wild));
        assert!(!matcher(Some("*.example.com"), "/", None).shadows(&matcher(
            Some("*.ample.com"),
            "/",
            None
        )));
        assert!(!matcher(Some("*.ample.com"), "/", None).shadows(&matcher(
            Some("*.example.com"),
            "/",
            None
        )));
        assert!(hosted.shadows(&matcher(
            Some("APP.example.com."),
            "/api/v1",
            Some(&["GET"])
        )));
    }

    #[test]
    fn strip_prefix_table() {
        let cases: &[(&str, &str, &str)] = &[
            ("/app/x", "/app", "/x"),
            ("/app", "/app", "/"),
            ("/app/", "/app", "/"),
            ("/app/x/y/", "/app", "/x/y/"),
            ("/app/a%20b;c", "/app", "/a%20b;c"),
            ("/app;v=1/x", "/app", "/x"),
            ("/app%3Bv=1/x", "/app", "/x"),
            ("/app%2Fx", "/app", "/x"),
            ("/app/x", "/", "/app/x"),
            ("/a/b/c", "/a/b", "/c"),
            ("/other", "/app", "/other"),
            ("/apple", "/app", "/apple"),
        ];
        for (path, prefix, want) in cases {
            assert_eq!(
                strip_prefix(path, prefix),
                *want,
                "strip_prefix({path:?}, {prefix:?})"
            );
        }
        assert!(matches!(strip_prefix("/app/x", "/app"), Cow::Borrowed(_)));
    }

    #[test]
    fn error_messages_are_clear() {
        assert_eq!(
            PathError::NotAbsolute.to_string(),
            "request path must start with '/'"
        );
        assert!(PathError::InvalidUtf8.to_string().contains("UTF-8"));
    }
}
