//! `portcullis health`: one GET of the admin listener's `/readyz` (or any http:// URL), for
//! container HEALTHCHECKs and scripts that have no curl. A module of the binary (src/main.rs),
//! not of the library. Ready means a 2xx answer within the timeout; everything else (refused,
//! timed out, 503, not HTTP) is "not ready", with the reason on stderr.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Exit 0 when `url` answers 2xx within `timeout`, 1 otherwise (2 for an unusable URL).
pub fn run(url: &str, timeout: Duration) -> ExitCode {
    let target = match Target::parse(url) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: --url {url}: {e}");
            return ExitCode::from(2);
        }
    };
    match probe(&target, timeout) {
        Ok(status) if (200..300).contains(&status) => {
            println!("{url}: ready ({status})");
            ExitCode::SUCCESS
        }
        Ok(status) => {
            eprintln!("{url}: not ready (HTTP {status})");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("{url}: not ready ({e})");
            ExitCode::FAILURE
        }
    }
}

struct Target {
    /// host:port, for connecting and the Host header
    authority: String,
    path_and_query: String,
}

impl Target {
    fn parse(raw: &str) -> Result<Target, String> {
        let url = url::Url::parse(raw).map_err(|e| e.to_string())?;
        if url.scheme() != "http" {
            return Err(format!(
                "only http:// is supported (the admin listener is plain HTTP), not {}://",
                url.scheme()
            ));
        }
        let host = url.host_str().ok_or("no host")?;
        let port = url.port_or_known_default().unwrap_or(80);
        let mut path_and_query = url.path().to_string();
        if let Some(q) = url.query() {
            path_and_query.push('?');
            path_and_query.push_str(q);
        }
        Ok(Target {
            authority: format!("{host}:{port}"),
            path_and_query,
        })
    }
}

/// The status code of `GET target`, all of it (resolve, connect, write, read) within `timeout`.
fn probe(t: &Target, timeout: Duration) -> Result<u16, String> {
    let deadline = Instant::now() + timeout;
    let left = || {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| format!("timed out after {}", humantime::format_duration(timeout)))
    };
    let addrs: Vec<_> = t
        .authority
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {}: {e}", t.authority))?
        .collect();
    let mut last = format!("{} resolves to no address", t.authority);
    let mut stream = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, left()?) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = format!("cannot connect to {addr}: {e}"),
        }
    }
    let mut s = stream.ok_or(last)?;
    s.set_write_timeout(Some(left()?))
        .map_err(|e| e.to_string())?;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: portcullis-health\r\nConnection: close\r\n\r\n",
        t.path_and_query, t.authority
    );
    s.write_all(request.as_bytes())
        .map_err(|e| format!("cannot send the request: {e}"))?;
    // Only the status line is needed; read until its end (bounded: 1 KiB, the deadline).
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 256];
    while !buf.contains(&b'\n') && buf.len() < 1024 {
        s.set_read_timeout(Some(left()?))
            .map_err(|e| e.to_string())?;
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(format!(
                    "no answer within {}",
                    humantime::format_duration(timeout)
                ));
            }
            Err(e) => return Err(format!("cannot read the answer: {e}")),
        }
    }
    let line = String::from_utf8_lossy(&buf);
    let line = line.lines().next().unwrap_or("");
    let mut parts = line.split(' ');
    match (
        parts.next(),
        parts.next().and_then(|c| c.parse::<u16>().ok()),
    ) {
        (Some(v), Some(code)) if v.starts_with("HTTP/") => Ok(code),
        _ => Err(format!("not an HTTP answer: {line:?}")),
    }
}
