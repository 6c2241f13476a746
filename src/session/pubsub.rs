//! The subscriber side of the Redis store's invalidation channel (`<prefix>:invalidate`, see
//! [`super::local`]): one connection per process (named [`CLIENT_NAME`]), subscribed to that channel, reading the
//! Redis keys of sessions another replica (or this one) ended or rewrote.
//!
//! A small RESP2 client of its own (connect over TCP, TLS or a Unix socket, `AUTH`,
//! `SUBSCRIBE`, `PING`), not the redis crate's `PubSub`: that one reads the socket in a task of
//! its own and passes messages on through a channel, so a request could not make sure that
//! invalidations already received have been applied. Here the socket is read by whoever holds
//! the [`Link`]: the cache's background task when the runtime wakes it, and every cache hit
//! first, without waiting ([`Link::poll_messages`]).
//!
//! Hostile input is bounded: a reply of more than [`MAX_FRAME`] bytes, an array of more than
//! [`MAX_ITEMS`] items or nested more than [`MAX_DEPTH`] deep, or a malformed one, breaks the
//! link (the cache then turns off until it is back).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use ::redis::{ConnectionAddr, ConnectionInfo};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

/// Connecting, `AUTH` and `SUBSCRIBE` together, at most.
const SETUP_TIMEOUT: Duration = Duration::from_secs(2);
/// The subscription's name on the server (`CLIENT LIST`).
pub const CLIENT_NAME: &str = "portcullis-invalidations";
/// Longest reply accepted (a session key is ~60 bytes).
pub const MAX_FRAME: usize = 64 * 1024;
/// Most items in one array reply (a message has 3).
pub const MAX_ITEMS: i64 = 16;
/// Deepest nesting of arrays in a reply (none is nested).
pub const MAX_DEPTH: usize = 2;

/// A byte stream to Redis.
trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// One RESP2 value, borrowing from the read buffer.
#[derive(Debug, PartialEq)]
pub enum Resp<'a> {
    Simple(&'a [u8]),
    Error(&'a [u8]),
    Int(i64),
    Bulk(Option<&'a [u8]>),
    Array(Option<Vec<Resp<'a>>>),
}

/// The first complete value in `buf` and its length; `Ok(None)`: not complete yet.
pub fn parse(buf: &[u8]) -> Result<Option<(Resp<'_>, usize)>, String> {
    parse_at(buf, 0, 0)
}

fn parse_at(buf: &[u8], at: usize, depth: usize) -> Result<Option<(Resp<'_>, usize)>, String> {
    let rest = &buf[at.min(buf.len())..];
    let Some(&kind) = rest.first() else {
        return Ok(None);
    };
    let Some(eol) = memchr::memmem::find(rest, b"\r\n") else {
        return if rest.len() > MAX_FRAME {
            Err(format!("a reply line longer than {MAX_FRAME} bytes"))
        } else {
            Ok(None)
        };
    };
    if eol == 0 {
        return Err("a reply line without its type".into());
    }
    let line = &rest[1..eol];
    let next = at + eol + 2;
    let int = || -> Result<i64, String> {
        std::str::from_utf8(line)
            .ok()
            .and_then(|s| s.parse::<i64>().ok())
            .ok_or_else(|| format!("not a number: {:?}", String::from_utf8_lossy(line)))
    };
    Ok(Some(match kind {
        b'+' => (Resp::Simple(line), next),
        b'-' => (Resp::Error(line), next),
        b':' => (Resp::Int(int()?), next),
        b'$' => match int()? {
            -1 => (Resp::Bulk(None), next),
            n if n < 0 || n as usize > MAX_FRAME => {
                return Err(format!("a bulk string of {n} bytes"));
            }
            n => {
                let end = next + n as usize;
                if buf.len() < end + 2 {
                    return Ok(None);
                }
                if &buf[end..end + 2] != b"\r\n" {
                    return Err("a bulk string without its CRLF".into());
                }
                (Resp::Bulk(Some(&buf[next..end])), end + 2)
            }
        },
        b'*' => match int()? {
            -1 => (Resp::Array(None), next),
            n if !(0..=MAX_ITEMS).contains(&n) => {
                return Err(format!("an array of {n} items"));
            }
            _ if depth >= MAX_DEPTH => return Err("arrays nested too deep".into()),
            n => {
                let mut items = Vec::with_capacity(n as usize);
                let mut pos = next;
                for _ in 0..n {
                    let Some((v, p)) = parse_at(buf, pos, depth + 1)? else {
                        return Ok(None);
                    };
                    items.push(v);
                    pos = p;
                }
                (Resp::Array(Some(items)), pos)
            }
        },
        other => return Err(format!("an unknown reply type {:?}", other as char)),
    }))
}

/// A command as RESP2 (an array of bulk strings).
fn command(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// A subscribed connection.
pub struct Link {
    io: Box<dyn Io>,
    /// Read but not yet parsed.
    buf: Vec<u8>,
    /// When the unanswered `PING` was sent.
    ping_at: Option<Instant>,
    /// The server's address (`host:port`), to follow a Sentinel failover.
    pub addr: String,
}

impl Link {
    /// Connects to the server `info` names (TLS with `tls` for `rediss://`), authenticates
    /// and subscribes to `channel`.
    pub async fn connect(
        info: &ConnectionInfo,
        tls: Option<&Arc<rustls::ClientConfig>>,
        channel: &str,
    ) -> Result<Link, String> {
        let addr = info.addr().to_string();
        tokio::time::timeout(SETUP_TIMEOUT, Self::setup(info, tls, channel, addr))
            .await
            .unwrap_or_else(|_| Err(format!("no subscription within {SETUP_TIMEOUT:?}")))
    }

    async fn setup(
        info: &ConnectionInfo,
        tls: Option<&Arc<rustls::ClientConfig>>,
        channel: &str,
        addr: String,
    ) -> Result<Link, String> {
        let io: Box<dyn Io> = match info.addr() {
            ConnectionAddr::Tcp(host, port) => {
                let s = tokio::net::TcpStream::connect((host.as_str(), *port))
                    .await
                    .map_err(|e| format!("connect {addr}: {e}"))?;
                let _ = s.set_nodelay(true);
                Box::new(s)
            }
            ConnectionAddr::TcpTls {
                host,
                port,
                insecure,
                ..
            } => {
                if *insecure {
                    return Err("the server's certificate is not verified (#insecure): the invalidation channel needs a verified one".into());
                }
                let Some(cfg) = tls else {
                    return Err("TLS is not set up for the invalidation channel".into());
                };
                let name = rustls::pki_types::ServerName::try_from(host.clone())
                    .map_err(|e| format!("{host:?} is not a TLS server name: {e}"))?;
                let s = tokio::net::TcpStream::connect((host.as_str(), *port))
                    .await
                    .map_err(|e| format!("connect {addr}: {e}"))?;
                let _ = s.set_nodelay(true);
                let s = tokio_rustls::TlsConnector::from(cfg.clone())
                    .connect(name, s)
                    .await
                    .map_err(|e| format!("TLS with {addr}: {e}"))?;
                Box::new(s)
            }
            ConnectionAddr::Unix(path) => Box::new(
                tokio::net::UnixStream::connect(path)
                    .await
                    .map_err(|e| format!("connect {addr}: {e}"))?,
            ),
            _ => return Err(format!("{addr}: an address kind the channel cannot use")),
        };
        let mut link = Link {
            io,
            buf: Vec::with_capacity(512),
            ping_at: None,
            addr,
        };
        let settings = info.redis_settings();
        if let Some(pass) = settings.password() {
            let auth = match settings.username() {
                Some(user) => command(&[b"AUTH", user.as_bytes(), pass.as_bytes()]),
                None => command(&[b"AUTH", pass.as_bytes()]),
            };
            link.send(&auth).await?;
            match link.reply(|r| matches!(r, Resp::Simple(_))).await? {
                true => {}
                false => return Err("AUTH was refused".into()),
            }
        }
        // Named, so an operator tells it apart in `CLIENT LIST`.
        link.send(&command(&[b"CLIENT", b"SETNAME", CLIENT_NAME.as_bytes()]))
            .await?;
        if !link.reply(|r| matches!(r, Resp::Simple(_))).await? {
            return Err("CLIENT SETNAME was refused".into());
        }
        link.send(&command(&[b"SUBSCRIBE", channel.as_bytes()]))
            .await?;
        let subscribed = link
            .reply(|r| match r {
                Resp::Array(Some(items)) => {
                    items.first() == Some(&Resp::Bulk(Some(b"subscribe")))
                        && items.get(1) == Some(&Resp::Bulk(Some(channel.as_bytes())))
                }
                _ => false,
            })
            .await?;
        if !subscribed {
            return Err(format!("SUBSCRIBE {channel} was not confirmed"));
        }
        Ok(link)
    }

    async fn send(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.io.write_all(bytes).await.map_err(|e| e.to_string())?;
        self.io.flush().await.map_err(|e| e.to_string())
    }

    /// Reads one reply and judges it with `ok` (an error reply is an error).
    async fn reply(&mut self, ok: impl Fn(&Resp<'_>) -> bool) -> Result<bool, String> {
        loop {
            if let Some((v, n)) = parse(&self.buf)? {
                if let Resp::Error(e) = v {
                    return Err(String::from_utf8_lossy(e).into_owned());
                }
                let good = ok(&v);
                self.buf.drain(..n);
                return Ok(good);
            }
            let mut chunk = [0u8; 1024];
            let n = self.io.read(&mut chunk).await.map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("the server closed the connection".into());
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Reads whatever has arrived, without waiting, and hands the payload of every message to
    /// `on_message`. `Pending`: all read (the waker in `cx` is woken when more arrives);
    /// `Ready(why)`: the link is broken.
    pub fn poll_messages(
        &mut self,
        cx: &mut Context<'_>,
        mut on_message: impl FnMut(&[u8]),
    ) -> Poll<String> {
        loop {
            let mut used = 0;
            loop {
                match parse(&self.buf[used..]) {
                    Err(e) => return Poll::Ready(format!("malformed reply: {e}")),
                    Ok(None) => break,
                    Ok(Some((v, n))) => {
                        used += n;
                        match v {
                            Resp::Array(Some(items)) => match items.as_slice() {
                                [Resp::Bulk(Some(b"message")), _, Resp::Bulk(Some(payload))] => {
                                    on_message(payload)
                                }
                                [Resp::Bulk(Some(b"pong")), ..] => self.ping_at = None,
                                _ => {}
                            },
                            Resp::Error(e) => {
                                return Poll::Ready(format!(
                                    "the server answered {:?}",
                                    String::from_utf8_lossy(e)
                                ));
                            }
                            _ => {}
                        }
                    }
                }
            }
            if used > 0 {
                self.buf.drain(..used);
            }
            // Not zeroed: a cache hit reads here first, and usually nothing has arrived.
            let mut chunk = [std::mem::MaybeUninit::<u8>::uninit(); 2048];
            let mut rb = ReadBuf::uninit(&mut chunk);
            match Pin::new(&mut self.io).poll_read(cx, &mut rb) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(e.to_string()),
                Poll::Ready(Ok(())) if rb.filled().is_empty() => {
                    return Poll::Ready("the server closed the connection".into());
                }
                Poll::Ready(Ok(())) => self.buf.extend_from_slice(rb.filled()),
            }
        }
    }

    /// Keeps the link checked: sends a `PING` when none is outstanding; an error when the last
    /// one is unanswered after `within` (a link that died silently).
    pub fn ping(&mut self, within: Duration) -> Result<(), String> {
        if let Some(at) = self.ping_at {
            if at.elapsed() > within {
                return Err(format!("no answer to PING within {within:?}"));
            }
            return Ok(());
        }
        const PING: &[u8] = b"*1\r\n$4\r\nPING\r\n";
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let io = Pin::new(&mut self.io);
        match io.poll_write(&mut cx, PING) {
            Poll::Ready(Ok(n)) if n == PING.len() => {}
            Poll::Ready(Err(e)) => return Err(e.to_string()),
            _ => return Err("the connection does not take a PING".into()),
        }
        match Pin::new(&mut self.io).poll_flush(&mut cx) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(e)) => return Err(e.to_string()),
            Poll::Pending => return Err("the connection does not take a PING".into()),
        }
        self.ping_at = Some(Instant::now());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_messages_and_replies() {
        let msg = b"*3\r\n$7\r\nmessage\r\n$4\r\nch:x\r\n$5\r\nkey:1\r\n";
        let (v, n) = parse(msg).unwrap().unwrap();
        assert_eq!(n, msg.len());
        assert_eq!(
            v,
            Resp::Array(Some(vec![
                Resp::Bulk(Some(b"message")),
                Resp::Bulk(Some(b"ch:x")),
                Resp::Bulk(Some(b"key:1")),
            ]))
        );
        // Every prefix is incomplete, never an error or a value.
        for i in 0..msg.len() {
            assert_eq!(parse(&msg[..i]).unwrap(), None, "prefix of {i} bytes");
        }
        assert_eq!(parse(b"+OK\r\n").unwrap().unwrap().0, Resp::Simple(b"OK"));
        assert_eq!(parse(b":12\r\n").unwrap().unwrap().0, Resp::Int(12));
        assert_eq!(parse(b"$-1\r\n").unwrap().unwrap().0, Resp::Bulk(None));
    }

    #[test]
    fn refuses_hostile_replies() {
        assert!(parse(b"$999999999\r\n").is_err());
        assert!(parse(b"*100\r\n").is_err());
        assert!(parse(b"*1\r\n*1\r\n*1\r\n:1\r\n").is_err());
        assert!(parse(b"$3\r\nabcXY").is_err());
        assert!(parse(b"?x\r\n").is_err());
        assert!(parse(b":x\r\n").is_err());
        assert!(parse(b"\r\n").is_err());
        assert!(parse(&vec![b'+'; MAX_FRAME + 2]).is_err());
    }

    /// Many generated replies, well-formed, cut and mangled: never a panic, a value's length
    /// never beyond the input, and well-formed frames in a row are read back in order.
    #[test]
    fn generated_replies_never_panic_and_frames_read_back() {
        const PARTS: &[&[u8]] = &[
            b"*",
            b"$",
            b":",
            b"+",
            b"-",
            b"?",
            b"\r\n",
            b"\r",
            b"\n",
            b"0",
            b"1",
            b"3",
            b"-1",
            b"-2",
            b"16",
            b"17",
            b"99999999999999999999",
            b"message",
            b"pong",
            b"abc",
            b"",
        ];
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..50_000 {
            let mut input = Vec::new();
            for _ in 0..(next() % 24) {
                input.extend_from_slice(PARTS[(next() % PARTS.len() as u64) as usize]);
            }
            if let Ok(Some((_, n))) = parse(&input) {
                assert!(n <= input.len(), "{input:?}");
            }
        }
        let frames: Vec<Vec<u8>> = (0..200)
            .map(|i| {
                let key = format!("p:s:{i}");
                command(&[b"message", b"p:invalidate", key.as_bytes()])
            })
            .collect();
        let all = frames.concat();
        let mut at = 0;
        for f in &frames {
            let (v, n) = parse(&all[at..]).unwrap().unwrap();
            assert_eq!(n, f.len());
            assert_eq!(parse(f).unwrap().unwrap().0, v);
            at += n;
        }
        assert_eq!(at, all.len());
    }
}
