//! Logging: structured `tracing` events, human-readable or JSON (`--log-format json`), filtered
//! by `RUST_LOG` (default `info`). The access log is target `portcullis::access`.
//!
//! Access-log lines (one per request) do not write to stderr on the request's thread: each
//! formatted line is queued for a dedicated writer thread that writes them in batches (one
//! `write` per batch instead of one per line, and no wake-up of the thread per line). When the thread falls behind and the queue is
//! full, a line is dropped and counted (`portcullis_log_lines_dropped_total`): a slow log
//! consumer (a full pipe, a stalled journald) must not stall requests. Every other event
//! (startup, warnings, errors) is written directly, as before.
//!
//! The access line itself is formatted here ([`access`]), not by `tracing-subscriber`: the
//! subscriber's generic formatting (field visitors, `dyn Debug` per field) cost ~3 µs of the
//! ~3.6 µs a line cost; written directly — same layout and fields as the subscriber's text or
//! JSON — a line costs about what nginx's does. `RUST_LOG` still decides whether it is written
//! (the caller asks `tracing::enabled!` for the access target).

use std::io::{self, BufWriter, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError, sync_channel};
use std::sync::{LazyLock, OnceLock};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::writer::EitherWriter;

/// The access log's target.
pub const ACCESS: &str = "portcullis::access";

/// Access-log lines waiting for the writer thread at most.
const QUEUE_LINES: usize = 16 * 1024;
/// The log thread's pause between batches while lines arrive, and at most when idle: a line is
/// written at most ~50 ms after its request (a queue of 16384 lines covers 5 ms at 3 million
/// requests per second).
const BUSY_SLEEP: Duration = Duration::from_millis(5);
const IDLE_SLEEP: Duration = Duration::from_millis(50);

/// Lines dropped because the writer thread fell behind.
pub static LOG_LINES_DROPPED: LazyLock<Counter> = LazyLock::new(Counter::default);

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// The format [`init`] installed (unset: no logger of ours; access lines go through `tracing`).
static FORMAT: OnceLock<LogFormat> = OnceLock::new();

pub fn init(format: LogFormat) {
    let _ = FORMAT.set(format);
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(Writers)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// Waits (at most `limit`) until every queued access-log line is written: before the process
/// exits, so the last requests' lines are not lost.
pub fn flush(limit: Duration) {
    let Some(q) = QUEUE.get() else {
        return;
    };
    let target = q.queued.load(Ordering::Acquire);
    let end = Instant::now() + limit;
    while q.written.load(Ordering::Acquire) < target && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(1));
    }
}

struct Queue {
    tx: SyncSender<Vec<u8>>,
    /// Lines accepted into the queue / written (and flushed) by the thread.
    queued: AtomicU64,
    written: AtomicU64,
}

static QUEUE: OnceLock<Queue> = OnceLock::new();

/// The queue, its writer thread started on first use; `None` if the thread cannot start (then
/// lines are written directly).
fn queue() -> Option<&'static Queue> {
    if let Some(q) = QUEUE.get() {
        return Some(q);
    }
    let (tx, rx) = sync_channel(QUEUE_LINES);
    let q = QUEUE.get_or_init(|| Queue {
        tx,
        queued: AtomicU64::new(0),
        written: AtomicU64::new(0),
    });
    // Only the call whose channel was installed starts the thread (its receiver is the
    // installed sender's); a racing call's receiver is dropped unused.
    if std::ptr::eq(q, QUEUE.get()?)
        && std::thread::Builder::new()
            .name("portcullis-log".into())
            .spawn(move || write_lines(rx))
            .is_err()
    {
        return None;
    }
    Some(q)
}

/// The log thread: wakes on its own clock and writes whatever queued meanwhile. It never
/// blocks in `recv`: a receiver waiting there would be woken (a futex call, and a context
/// switch when it shares the CPU) by every line sent — measured at ~10 µs per request on one
/// pinned CPU, where polling costs one wake-up per [`BUSY_SLEEP`].
fn write_lines(rx: Receiver<Vec<u8>>) {
    let mut out = BufWriter::with_capacity(64 * 1024, io::stderr());
    let mut sleep = BUSY_SLEEP;
    loop {
        let mut n = 0;
        loop {
            match rx.try_recv() {
                Ok(line) => {
                    let _ = out.write_all(&line);
                    n += 1;
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    let _ = out.flush();
                    return;
                }
            }
        }
        if n > 0 {
            let _ = out.flush();
            if let Some(q) = QUEUE.get() {
                q.written.fetch_add(n, Ordering::Release);
            }
            sleep = BUSY_SLEEP;
        } else {
            // Idle: wake less and less often, up to IDLE_SLEEP.
            sleep = (sleep * 2).min(IDLE_SLEEP);
        }
        std::thread::sleep(sleep);
    }
}

/// Chooses the writer by target: the access log goes through the queue.
struct Writers;

/// Writes one formatted access-log line into the queue (the formatter writes each event with
/// one `write_all`).
struct Queued;

/// Queues one line for the log thread (dropped and counted when the queue is full).
fn enqueue(line: Vec<u8>) {
    match queue() {
        Some(q) => match q.tx.try_send(line) {
            Ok(()) => {
                q.queued.fetch_add(1, Ordering::Release);
            }
            Err(TrySendError::Full(_)) => {
                LOG_LINES_DROPPED.inc();
            }
            Err(TrySendError::Disconnected(line)) => {
                let _ = io::stderr().write_all(&line);
            }
        },
        None => {
            let _ = io::stderr().write_all(&line);
        }
    }
}

impl Write for Queued {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        enqueue(buf.to_vec());
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Writers {
    type Writer = EitherWriter<Queued, io::Stderr>;

    fn make_writer(&'a self) -> Self::Writer {
        EitherWriter::B(io::stderr())
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Self::Writer {
        if meta.target() == ACCESS {
            EitherWriter::A(Queued)
        } else {
            EitherWriter::B(io::stderr())
        }
    }
}

/// The fields of one access-log line.
pub struct Access<'a> {
    pub method: &'a str,
    pub host: &'a str,
    pub path: &'a str,
    pub route: &'a str,
    pub status: u16,
    pub decision: &'a str,
    pub reason: &'a str,
    pub sub: &'a str,
    pub request_id: &'a str,
    pub trace_id: &'a [u8; 16],
    pub latency_us: u64,
    /// When the upstream was asked.
    pub upstream_us: Option<u64>,
    pub peer: std::net::IpAddr,
}

/// Writes an access line in the installed format; `false` when [`init`] did not run (the
/// caller then emits a `tracing` event instead).
pub fn access(a: &Access<'_>) -> bool {
    let Some(format) = FORMAT.get() else {
        return false;
    };
    let mut buf = Vec::with_capacity(320);
    match format {
        LogFormat::Json => access_json(&mut buf, a),
        LogFormat::Text => access_text(&mut buf, a),
    }
    buf.push(b'\n');
    enqueue(buf);
    true
}

/// Milliseconds with 3 decimals from microseconds (`1.070`).
fn ms(buf: &mut Vec<u8>, us: u64) {
    int(buf, us / 1000);
    let f = us % 1000;
    buf.extend_from_slice(&[
        b'.',
        b'0' + (f / 100) as u8,
        b'0' + (f / 10 % 10) as u8,
        b'0' + (f % 10) as u8,
    ]);
}

/// Decimal digits of `n` (the formatting machinery costs more than the digits).
fn int(buf: &mut Vec<u8>, mut n: u64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    buf.extend_from_slice(&tmp[i..]);
}

/// An address as `Display` writes it; IPv4 (the usual peer) digit by digit.
fn ip(buf: &mut Vec<u8>, addr: std::net::IpAddr) {
    match addr {
        std::net::IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    buf.push(b'.');
                }
                int(buf, u64::from(octet));
            }
        }
        v6 => {
            let _ = write!(buf, "{v6}");
        }
    }
}

/// `"s"`, escaped like Rust's `{:?}` for the few bytes that need it (quotes, backslash,
/// control characters); printable ASCII and UTF-8 are copied as they are.
fn quoted(buf: &mut Vec<u8>, s: &str) {
    buf.push(b'"');
    if s.bytes()
        .all(|b| b >= 0x20 && b != b'"' && b != b'\\' && b != 0x7f)
    {
        buf.extend_from_slice(s.as_bytes());
    } else {
        let _ = write!(buf, "{}", s.escape_debug());
    }
    buf.push(b'"');
}

fn hex(buf: &mut Vec<u8>, bytes: &[u8; 16]) {
    let mut out = [0u8; 32];
    crate::trace::hex_into(bytes, &mut out);
    buf.extend_from_slice(&out);
}

std::thread_local! {
    /// The last second formatted on this thread and its `YYYY-MM-DDTHH:MM:SS`.
    static SECOND: std::cell::Cell<(u64, [u8; 19])> = const { std::cell::Cell::new((u64::MAX, [0; 19])) };
}

/// Now as RFC 3339 UTC with microseconds, as `tracing-subscriber` writes it; the date and time
/// of day are formatted once per second per thread.
fn timestamp(buf: &mut Vec<u8>) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs();
    let (last, mut text) = SECOND.get();
    if last != secs {
        let mut v = Vec::with_capacity(19);
        civil(&mut v, secs);
        text.copy_from_slice(&v[..19]);
        SECOND.set((secs, text));
    }
    buf.extend_from_slice(&text);
    let us = now.subsec_micros();
    buf.push(b'.');
    for div in [100_000, 10_000, 1000, 100, 10, 1] {
        buf.push(b'0' + (us / div % 10) as u8);
    }
    buf.push(b'Z');
}

/// `YYYY-MM-DDTHH:MM:SS` of `secs` since the epoch (UTC).
fn civil(buf: &mut Vec<u8>, secs: u64) {
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Days since the epoch → civil date (H. Hinnant's algorithm).
    let z = i64::try_from(days).unwrap_or(0) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let _ = write!(
        buf,
        "{:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        y.clamp(0, 9999),
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
    );
}

fn json_str(buf: &mut Vec<u8>, s: &str) {
    let _ = serde_json::to_writer(&mut *buf, s);
}

fn access_json(buf: &mut Vec<u8>, a: &Access<'_>) {
    buf.extend_from_slice(b"{\"timestamp\":\"");
    timestamp(buf);
    buf.extend_from_slice(b"\",\"level\":\"INFO\",\"method\":");
    json_str(buf, a.method);
    buf.extend_from_slice(b",\"host\":");
    json_str(buf, a.host);
    buf.extend_from_slice(b",\"path\":");
    json_str(buf, a.path);
    buf.extend_from_slice(b",\"route\":");
    json_str(buf, a.route);
    buf.extend_from_slice(b",\"status\":");
    int(buf, u64::from(a.status));
    buf.extend_from_slice(b",\"decision\":");
    json_str(buf, a.decision);
    buf.extend_from_slice(b",\"reason\":");
    json_str(buf, a.reason);
    buf.extend_from_slice(b",\"sub\":");
    json_str(buf, a.sub);
    buf.extend_from_slice(b",\"request_id\":");
    json_str(buf, a.request_id);
    buf.extend_from_slice(b",\"trace_id\":\"");
    hex(buf, a.trace_id);
    buf.extend_from_slice(b"\",\"latency_ms\":");
    ms(buf, a.latency_us);
    if let Some(us) = a.upstream_us {
        buf.extend_from_slice(b",\"upstream_ms\":");
        ms(buf, us);
    }
    buf.extend_from_slice(b",\"peer\":\"");
    ip(buf, a.peer);
    buf.extend_from_slice(b"\",\"target\":\"");
    buf.extend_from_slice(ACCESS.as_bytes());
    buf.extend_from_slice(b"\"}");
}

/// Text: `key=value`; values from the request (host, path, sub, request id) quoted and escaped
/// (no line or field can be forged), the proxy's own (method, route, codes, numbers) bare.
fn access_text(buf: &mut Vec<u8>, a: &Access<'_>) {
    timestamp(buf);
    buf.extend_from_slice(b"  INFO portcullis::access: method=");
    buf.extend_from_slice(a.method.as_bytes());
    buf.extend_from_slice(b" host=");
    quoted(buf, a.host);
    buf.extend_from_slice(b" path=");
    quoted(buf, a.path);
    buf.extend_from_slice(b" route=");
    buf.extend_from_slice(a.route.as_bytes());
    buf.extend_from_slice(b" status=");
    int(buf, u64::from(a.status));
    buf.extend_from_slice(b" decision=");
    buf.extend_from_slice(a.decision.as_bytes());
    buf.extend_from_slice(b" reason=");
    buf.extend_from_slice(a.reason.as_bytes());
    buf.extend_from_slice(b" sub=");
    quoted(buf, a.sub);
    buf.extend_from_slice(b" request_id=");
    quoted(buf, a.request_id);
    buf.extend_from_slice(b" trace_id=");
    hex(buf, a.trace_id);
    buf.extend_from_slice(b" latency_ms=");
    ms(buf, a.latency_us);
    if let Some(us) = a.upstream_us {
        buf.extend_from_slice(b" upstream_ms=");
        ms(buf, us);
    }
    buf.extend_from_slice(b" peer=");
    ip(buf, a.peer);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(upstream_us: Option<u64>) -> Access<'static> {
        Access {
            method: "GET",
            host: "a\"b",
            path: "/x\ny",
            route: "app",
            status: 200,
            decision: "allowed",
            reason: "-",
            sub: "-",
            request_id: "r1",
            trace_id: &[0xab; 16],
            latency_us: 1070,
            upstream_us,
            peer: std::net::IpAddr::from([127, 0, 0, 1]),
        }
    }

    #[test]
    fn json_line_is_json_with_every_field() {
        let mut buf = Vec::new();
        access_json(&mut buf, &line(Some(5)));
        let v: serde_json::Value = serde_json::from_slice(&buf).unwrap();
        assert_eq!(v["host"], "a\"b");
        assert_eq!(v["path"], "/x\ny");
        assert_eq!(v["latency_ms"].to_string(), "1.07");
        assert_eq!(v["upstream_ms"].to_string(), "0.005");
        assert_eq!(v["trace_id"], "ab".repeat(16));
        assert_eq!(v["target"], ACCESS);
        let ts = v["timestamp"].as_str().unwrap();
        assert_eq!(ts.len(), 27, "{ts}");
        let mut buf = Vec::new();
        access_json(&mut buf, &line(None));
        let v: serde_json::Value = serde_json::from_slice(&buf).unwrap();
        assert!(v.get("upstream_ms").is_none());
    }

    #[test]
    fn text_line_escapes_what_the_client_sent() {
        let mut buf = Vec::new();
        access_text(&mut buf, &line(None));
        let t = String::from_utf8(buf).unwrap();
        assert!(!t.contains('\n'), "{t}");
        assert!(t.contains(r#"path="/x\ny""#), "{t}");
        assert!(t.contains("latency_ms=1.070 peer=127.0.0.1"), "{t}");
        for addr in ["10.200.3.0", "255.255.255.255", "::1", "2001:db8::7"] {
            let mut v = Vec::new();
            ip(&mut v, addr.parse().unwrap());
            assert_eq!(String::from_utf8(v).unwrap(), addr);
        }
    }

    #[test]
    fn timestamps_are_civil_dates() {
        let mut buf = Vec::new();
        timestamp(&mut buf);
        let t = String::from_utf8(buf).unwrap();
        assert_eq!(t.len(), 27, "{t}");
        let mut v = Vec::new();
        civil(&mut v, 951_782_400 + 86_399); // the leap day of 2000, its last second
        assert_eq!(v, b"2000-02-29T23:59:59");
        let mut v = Vec::new();
        quoted(&mut v, "a\"b\\c\u{1b}é");
        assert_eq!(String::from_utf8(v).unwrap(), r#""a\"b\\c\u{1b}é""#);
        assert!(
            t.starts_with("20") && t.ends_with('Z') && &t[10..11] == "T",
            "{t}"
        );
    }
}
