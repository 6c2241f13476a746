//! Request ids and W3C trace context: which `X-Request-Id` and `traceparent` a request carries
//! upstream, back to the client, into error bodies and into the access log.
//!
//! Trust follows `[server] trusted_proxies`: a proxy in front of portcullis is believed about
//! the request id and the trace it continues; any other peer gets a fresh id and a fresh trace.
//! A client-chosen trace id cannot change a decision, but it lets anyone on the internet write
//! into (or collide with) traces of the backend and force the `sampled` flag; restarting the
//! trace at the edge is what a gateway does (the W3C spec's "restart the trace" option).
//!
//! Ids are made without a syscall or an allocation: per-process random seeds (read once) mixed
//! with one counter value per request through a bijective mixer, so ids are unique within the
//! process and unpredictable enough for correlation (they are no secrets); the header values
//! are slices of a per-thread buffer.
//!
//! The current request's ids are a task-local ([`scope`]) only around the code that renders
//! error bodies or makes provider calls (refusals, endpoints, forward-auth, and the decision
//! when spans are exported), so neither needs them threaded through its signature and a
//! request that goes straight upstream does not pay for one.

pub mod export;

use std::fmt;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::BytesMut;
use http::{HeaderMap, HeaderName, HeaderValue};

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
pub static TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// Longest `X-Request-Id` kept from a trusted proxy (longer ones are replaced).
pub const MAX_REQUEST_ID: usize = 128;

/// The W3C trace context of one server span: the trace it belongs to, its own span id (sent
/// upstream as the parent), and the caller's span when a trace was continued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub parent: Option<[u8; 8]>,
    pub flags: u8,
}

/// What one request is known by. Deciding it reads the request's headers only; the headers the
/// upstream gets are written by [`Ids::forward`], once the request is on its way there (after
/// the inbound headers were filtered, so the filters never see these, and a refused request
/// never builds a `traceparent`).
#[derive(Debug, Clone)]
pub struct Ids {
    pub request_id: HeaderValue,
    pub trace: TraceContext,
    /// The request id is the trusted proxy's (already in the request, as it is forwarded).
    kept_request_id: bool,
    /// The trusted proxy's trace is continued (its `tracestate` is forwarded with it).
    continued: bool,
}

struct Generator {
    seeds: [u64; 4],
    /// The request id's per-process half, as hex.
    prefix: [u8; 16],
    counter: AtomicU64,
}

static GENERATOR: LazyLock<Generator> = LazyLock::new(|| {
    let (seeds, half): ([u64; 4], u64) = rand::random();
    let mut prefix = [0u8; 16];
    hex_into(&half.to_be_bytes(), &mut prefix);
    Generator {
        seeds,
        prefix,
        counter: AtomicU64::new(1),
    }
});

/// splitmix64's finalizer: a bijection on u64, so distinct counters give distinct ids.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Generator {
    /// One counter value per request: every id of the request (request id, trace id, span
    /// id) is a different seeded bijection of it, so each kind of id is unique in the process.
    fn next(&self) -> u64 {
        self.counter.fetch_add(1, Ordering::Relaxed)
    }

    /// Never zero, which W3C reserves for "invalid".
    fn span_id(&self, n: u64) -> [u8; 8] {
        let v = mix(self.seeds[0] ^ n);
        (if v == 0 { 1 } else { v }).to_be_bytes()
    }

    fn trace_id(&self, n: u64) -> [u8; 16] {
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&mix(self.seeds[1] ^ n).to_be_bytes());
        // The low half alone is a bijection of the counter; the one n it maps to zero is
        // moved to 1, so the whole id is never zero (invalid).
        let low = mix(self.seeds[2] ^ n);
        id[8..].copy_from_slice(&(if low == 0 { 1 } else { low }).to_be_bytes());
        id
    }

    /// 32 lowercase hex digits: the per-process random half and the mixed counter.
    fn request_id(&self, n: u64) -> HeaderValue {
        let mut buf = [0u8; 32];
        buf[..16].copy_from_slice(&self.prefix);
        hex_into(&mix(self.seeds[3] ^ n).to_be_bytes(), &mut buf[16..]);
        header_value(&buf)
    }
}

/// A fresh span id (a provider call's child span).
pub fn new_span_id() -> [u8; 8] {
    let g = &*GENERATOR;
    g.span_id(g.next())
}

std::thread_local! {
    /// Where this thread's generated header values live: slices of one shared buffer, so a
    /// value (and each clone of it) costs no allocation of its own; a new buffer is taken when
    /// this one is used up, and the old one is freed with the last value still in use.
    static ARENA: std::cell::RefCell<BytesMut> = std::cell::RefCell::new(BytesMut::new());
}

/// Bytes of a generated header value (hex digits and dashes) as a [`HeaderValue`].
fn header_value(bytes: &[u8]) -> HeaderValue {
    const ARENA_BYTES: usize = 4096;
    let shared = ARENA.with_borrow_mut(|arena| {
        if arena.capacity() < bytes.len() {
            *arena = BytesMut::with_capacity(ARENA_BYTES);
        }
        arena.extend_from_slice(bytes);
        arena.split().freeze()
    });
    // SAFETY: the function's one precondition is that the bytes are valid in a header value
    // (no control characters); every caller passes the hex digits and dashes it has just
    // written (`hex_into` and literals), and `http` checks them again in debug builds (tests).
    // Checked, this would be a loop over every byte on every request.
    unsafe { HeaderValue::from_maybe_shared_unchecked(shared) }
}

/// Each byte's two lowercase hex digits.
const HEX_PAIRS: [[u8; 2]; 256] = {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut table = [[0u8; 2]; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = [HEX[i >> 4], HEX[i & 0xf]];
        i += 1;
    }
    table
};

/// Lowercase hex of `bytes` into `out` (twice as long).
pub fn hex_into(bytes: &[u8], out: &mut [u8]) {
    for (pair, b) in out.chunks_exact_mut(2).zip(bytes) {
        pair.copy_from_slice(&HEX_PAIRS[usize::from(*b)]);
    }
}

fn unhex<const N: usize>(s: &[u8]) -> Option<[u8; N]> {
    if s.len() != 2 * N {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = (digit(s[2 * i])? << 4) | digit(s[2 * i + 1])?;
    }
    Some(out)
}

/// A request id a trusted proxy sent, if it is one: printable ASCII (space included), 1 to
/// [`MAX_REQUEST_ID`] bytes.
fn valid_request_id(v: &HeaderValue) -> bool {
    let b = v.as_bytes();
    !b.is_empty() && b.len() <= MAX_REQUEST_ID && b.iter().all(|c| (0x20..0x7f).contains(c))
}

/// Parses a `traceparent` (W3C Trace Context level 1): `00-<32 hex>-<16 hex>-<2 hex>`; a
/// later version may append `-…`. Upper-case hex, zero ids and version `ff` are invalid.
pub fn parse_traceparent(v: &[u8]) -> Option<(/* trace */ [u8; 16], /* parent */ [u8; 8], u8)> {
    if v.len() < 55 || (v.len() > 55 && (v[..2] == *b"00" || v[55] != b'-')) {
        return None;
    }
    let version: [u8; 1] = unhex(&v[..2])?;
    if version[0] == 0xff || v[2] != b'-' || v[35] != b'-' || v[52] != b'-' {
        return None;
    }
    let trace: [u8; 16] = unhex(&v[3..35])?;
    let parent: [u8; 8] = unhex(&v[36..52])?;
    let flags: [u8; 1] = unhex(&v[53..55])?;
    if trace == [0; 16] || parent == [0; 8] {
        return None;
    }
    Some((trace, parent, flags[0]))
}

impl TraceContext {
    /// The `traceparent` to send upstream: this span as the parent.
    pub fn header(&self) -> HeaderValue {
        let mut buf = [0u8; 55];
        buf[..3].copy_from_slice(b"00-");
        hex_into(&self.trace_id, &mut buf[3..35]);
        buf[35] = b'-';
        hex_into(&self.span_id, &mut buf[36..52]);
        buf[52] = b'-';
        // Only the `sampled` bit is defined at version 00.
        hex_into(&[self.flags & 1], &mut buf[53..55]);
        header_value(&buf)
    }

    pub fn trace_hex(&self) -> Hex<'_> {
        Hex(&self.trace_id)
    }
}

/// Lower-case hex of some bytes, written without an allocation (log fields).
pub struct Hex<'a>(pub &'a [u8]);

impl fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; 32];
        for chunk in self.0.chunks(16) {
            let out = &mut buf[..2 * chunk.len()];
            hex_into(chunk, out);
            f.write_str(std::str::from_utf8(out).map_err(|_| fmt::Error)?)?;
        }
        Ok(())
    }
}

/// The only value of `headers` named `name`, if it has exactly one.
fn single<'h>(headers: &'h HeaderMap, name: &HeaderName) -> Option<&'h HeaderValue> {
    let mut all = headers.get_all(name).iter();
    match (all.next(), all.next()) {
        (Some(v), None) => Some(v),
        _ => None,
    }
}

impl Ids {
    /// Decides the request's ids from its headers: a trusted peer's valid `X-Request-Id` and
    /// `traceparent` are kept / continued; anything else is replaced (see [`Ids::forward`]).
    pub fn for_request(headers: &HeaderMap, trusted: bool) -> Ids {
        let g = &*GENERATOR;
        let n = g.next();
        let kept = trusted
            .then(|| single(headers, &X_REQUEST_ID).filter(|v| valid_request_id(v)))
            .flatten();
        let incoming = trusted
            .then(|| single(headers, &TRACEPARENT).and_then(|v| parse_traceparent(v.as_bytes())))
            .flatten();
        let trace = match incoming {
            Some((trace_id, parent, flags)) => TraceContext {
                trace_id,
                span_id: g.span_id(n),
                parent: Some(parent),
                flags,
            },
            None => TraceContext {
                trace_id: g.trace_id(n),
                span_id: g.span_id(n),
                parent: None,
                flags: 1,
            },
        };
        Ids {
            kept_request_id: kept.is_some(),
            request_id: {
                let mut v = match kept {
                    Some(v) => v.clone(),
                    None => g.request_id(n),
                };
                // A new value on every request: HTTP/2's HPACK would add each to the
                // connection's header table and evict the ones before (~2.4k instructions a
                // request); as "never indexed" it is sent as a plain literal.
                v.set_sensitive(true);
                v
            },
            trace,
            continued: incoming.is_some(),
        }
    }

    /// Writes the ids into the headers the upstream gets: the request id (a trusted proxy's is
    /// there already), this span as the `traceparent`'s parent, and no `tracestate` unless the
    /// trace is continued (a new trace: whatever vendor state came with the old one is not ours).
    pub fn forward(&self, headers: &mut HeaderMap) {
        // A scan of the few names (before two more are added) is cheaper than the hashed
        // lookup `remove` does first; a compare with a constant is a length check for most.
        const TRACESTATE_NAME: HeaderName = HeaderName::from_static("tracestate");
        if !self.continued && headers.keys().any(|k| *k == TRACESTATE_NAME) {
            headers.remove(&TRACESTATE);
        }
        // Constants, not the statics: a name made in place, not cloned through `Bytes`' vtable.
        const X_REQUEST_ID_NAME: HeaderName = HeaderName::from_static("x-request-id");
        const TRACEPARENT_NAME: HeaderName = HeaderName::from_static("traceparent");
        if !self.kept_request_id {
            headers.insert(X_REQUEST_ID_NAME, self.request_id.clone());
        }
        headers.insert(TRACEPARENT_NAME, self.trace.header());
    }

    /// The request id as text (it was checked to be printable ASCII, or generated).
    pub fn request_id_str(&self) -> &str {
        self.request_id.to_str().unwrap_or("-")
    }
}

tokio::task_local! {
    static CURRENT: Ids;
}

/// Runs `fut` with `ids` as the current request's (read by [`current_request_id`] and the
/// provider client's child spans).
pub fn scope<F: Future>(ids: Ids, fut: F) -> tokio::task::futures::TaskLocalFuture<Ids, F> {
    CURRENT.scope(ids, fut)
}

/// Runs `f` with `ids` as the current request's (a synchronous render).
pub fn sync_scope<R>(ids: Ids, f: impl FnOnce() -> R) -> R {
    CURRENT.sync_scope(ids, f)
}

/// The request id of the request being handled on this task, for error bodies.
pub fn current_request_id() -> Option<String> {
    CURRENT.try_with(|c| c.request_id_str().to_owned()).ok()
}

/// The trace context of the request being handled on this task.
pub fn current_trace() -> Option<TraceContext> {
    CURRENT.try_with(|c| c.trace).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_round_trip_and_rejects() {
        let good = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let (t, p, f) = parse_traceparent(good).unwrap();
        let ctx = TraceContext {
            trace_id: t,
            span_id: p,
            parent: None,
            flags: f,
        };
        assert_eq!(ctx.header().as_bytes(), good);
        for bad in [
            &b"00-00000000000000000000000000000000-00f067aa0ba902b7-01"[..],
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            b"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            b"garbage",
        ] {
            assert!(parse_traceparent(bad).is_none(), "{bad:?}");
        }
        // A later version may append fields.
        assert!(
            parse_traceparent(b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-later")
                .is_some()
        );
    }

    #[test]
    fn ids_are_kept_only_from_trusted_peers() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let mk = || {
            let mut h = HeaderMap::new();
            h.insert(&X_REQUEST_ID, HeaderValue::from_static("abc-123"));
            h.insert(&TRACEPARENT, HeaderValue::from_static(tp));
            h.insert(&TRACESTATE, HeaderValue::from_static("k=v"));
            h
        };
        let mut h = mk();
        let ids = Ids::for_request(&h, true);
        assert_eq!(ids.request_id_str(), "abc-123");
        assert_eq!(
            ids.trace.parent,
            Some([0, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7])
        );
        assert_eq!(Hex(&ids.trace.trace_id).to_string(), &tp[3..35]);
        ids.forward(&mut h);
        assert_eq!(h[&X_REQUEST_ID], "abc-123");
        assert_ne!(h[&TRACEPARENT], tp);
        assert_eq!(&h[&TRACEPARENT].as_bytes()[..36], &tp.as_bytes()[..36]);
        assert_eq!(h[&TRACESTATE], "k=v");

        let mut h = mk();
        let ids = Ids::for_request(&h, false);
        assert_ne!(ids.request_id_str(), "abc-123");
        assert_eq!(ids.request_id_str().len(), 32);
        assert!(ids.trace.parent.is_none());
        ids.forward(&mut h);
        assert_eq!(h[&X_REQUEST_ID], ids.request_id);
        assert_eq!(h.get_all(&X_REQUEST_ID).iter().count(), 1);
        assert_eq!(h[&TRACEPARENT], ids.trace.header());
        assert!(!h.contains_key(&TRACESTATE));

        let mut h = HeaderMap::new();
        h.insert(
            &X_REQUEST_ID,
            HeaderValue::from_str(&"x".repeat(129)).unwrap(),
        );
        let ids = Ids::for_request(&h, true);
        assert_eq!(ids.request_id_str().len(), 32);
        ids.forward(&mut h);
        assert_eq!(h[&X_REQUEST_ID], ids.request_id);
    }

    #[test]
    fn generated_ids_differ() {
        let a = Ids::for_request(&HeaderMap::new(), false);
        let b = Ids::for_request(&HeaderMap::new(), false);
        assert_ne!(a.request_id, b.request_id);
        assert_ne!(a.trace.trace_id, b.trace.trace_id);
        assert_ne!(a.trace.span_id, b.trace.span_id);
        assert_ne!(a.trace.span_id, new_span_id());
        // Values from one thread's buffer, from a used-up buffer's successor, and their
        // clones stay what they were made as.
        let many: Vec<Ids> = (0..200)
            .map(|_| Ids::for_request(&HeaderMap::new(), false))
            .collect();
        let headers: Vec<HeaderValue> = many.iter().map(|i| i.trace.header()).collect();
        for (ids, tp) in many.iter().zip(&headers) {
            let parsed = parse_traceparent(tp.as_bytes()).unwrap();
            assert_eq!(parsed.0, ids.trace.trace_id);
            assert_eq!(parsed.1, ids.trace.span_id);
            assert!(ids.request_id_str().bytes().all(|b| b.is_ascii_hexdigit()));
        }
        let distinct: std::collections::HashSet<_> =
            many.iter().map(|i| i.request_id.clone()).collect();
        assert_eq!(distinct.len(), many.len());
    }
}
