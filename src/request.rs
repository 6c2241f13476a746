//! What the proxy knows about a request before routing it: the connection it came on
//! ([`ConnInfo`]) and the host it addressed — read once ([`request_host`], [`HostText`]),
//! refused when ambiguous or malformed ([`check_host`], [`valid_host`]), compared with the
//! TLS server name ([`same_host`]).

use std::net::SocketAddr;

use http::header::{self, HeaderValue};
use http::request::Parts;
use http::{Request, Version};

use crate::error::ProxyError;

/// The head of a request, whole ([`Request`]) or taken apart ([`Parts`]): the host checks
/// read the same three things from either.
pub trait Head {
    fn uri(&self) -> &http::Uri;
    fn headers(&self) -> &http::HeaderMap;
    fn version(&self) -> Version;
}

impl<B> Head for Request<B> {
    fn uri(&self) -> &http::Uri {
        Request::uri(self)
    }
    fn headers(&self) -> &http::HeaderMap {
        Request::headers(self)
    }
    fn version(&self) -> Version {
        Request::version(self)
    }
}

impl Head for Parts {
    fn uri(&self) -> &http::Uri {
        &self.uri
    }
    fn headers(&self) -> &http::HeaderMap {
        &self.headers
    }
    fn version(&self) -> Version {
        self.version
    }
}

/// What the listener knows about the connection a request came on.
#[derive(Debug, Clone, Copy)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    pub tls: bool,
}

/// [`request_host`], owned without copying: the authority or header value is reference-counted.
pub enum HostText {
    Authority(http::uri::Authority),
    Header(HeaderValue),
}

impl HostText {
    pub fn of(req: &impl Head) -> Option<Self> {
        match req.uri().authority() {
            Some(a) => Some(HostText::Authority(a.clone())),
            None => req
                .headers()
                .get(header::HOST)
                .filter(|h| h.to_str().is_ok())
                .map(|h| HostText::Header(h.clone())),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            HostText::Authority(a) => a.as_str(),
            // Checked to be visible ASCII in `of`.
            HostText::Header(h) => h.to_str().unwrap_or(""),
        }
    }
}

/// The host the client addressed: the URI authority (HTTP/2, absolute-form) or `Host`.
pub fn request_host(req: &impl Head) -> Option<&str> {
    req.uri().authority().map(|a| a.as_str()).or_else(|| {
        req.headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
    })
}

/// Refuses a request whose host the proxy and an upstream could read differently (RFC 9112
/// §3.2: a missing Host on HTTP/1.1, several Host headers, or an invalid one → 400). Routing
/// trusts the host as given, so anything but a plain `name[:port]`, `IPv4[:port]` or
/// `[IPv6][:port]` is refused before routing: userinfo (`user@admin.example.com`), paths,
/// spaces, non-numeric ports.
pub fn check_host(req: &impl Head) -> Result<(), ProxyError> {
    let mut hosts = req.headers().get_all(header::HOST).iter();
    let first = hosts.next();
    if hosts.next().is_some() {
        return Err(ProxyError::BadRequest("more than one Host header"));
    }
    let host = match req.uri().authority() {
        // absolute-form (HTTP/1.1) or :authority (HTTP/2): the Host header is not used.
        Some(a) => a.as_str().as_bytes(),
        // Bytes that are not visible ASCII fail `valid_host_bytes` as they fail `to_str`.
        None => match first {
            Some(h) => h.as_bytes(),
            None if req.version() == Version::HTTP_11 => {
                return Err(ProxyError::BadRequest("missing Host header"));
            }
            // HTTP/1.0 may omit it; HTTP/2 without :authority and Host routes host-less.
            None => return Ok(()),
        },
    };
    if valid_host_bytes(host) {
        Ok(())
    } else {
        Err(ProxyError::BadRequest("invalid Host header"))
    }
}

/// Whether `host` (a checked `Host` or `:authority`) names the TLS server name `sni`: letter
/// case, the port and one trailing dot do not matter. An IP literal never matches (SNI carries
/// only DNS names).
pub fn same_host(sni: &str, host: &str) -> bool {
    let name = if host.starts_with('[') {
        host
    } else {
        host.split_once(':').map_or(host, |(name, _)| name)
    };
    let trim = |s: &'_ str| -> usize { s.len() - usize::from(s.ends_with('.')) };
    let (name, sni) = (&name[..trim(name)], &sni[..trim(sni)]);
    name.eq_ignore_ascii_case(sni)
}

/// `reg-name[:port]`, `IPv4[:port]` or `[IPv6][:port]`, with a reg-name of letters, digits,
/// `-`, `_` and `.` only (no percent-encoding, no userinfo) and a port of at most 5 digits.
pub fn valid_host(host: &str) -> bool {
    valid_host_bytes(host.as_bytes())
}

/// The bytes of a reg-name or IPv4 address: letters, digits, `-`, `_`, `.`.
const NAME_BYTE: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric() || c == b'-' || c == b'_' || c == b'.';
        b += 1;
    }
    t
};

/// [`valid_host`] on bytes, in one pass over a reg-name or IPv4 host.
fn valid_host_bytes(host: &[u8]) -> bool {
    if host.first() == Some(&b'[') {
        return std::str::from_utf8(host).is_ok_and(valid_bracketed_host);
    }
    let name_len = host
        .iter()
        .position(|&b| !NAME_BYTE[usize::from(b)])
        .unwrap_or(host.len());
    if name_len == 0 || name_len > 254 {
        return false;
    }
    match host.get(name_len..) {
        Some([]) => true,
        Some([b':', port @ ..]) => port.len() <= 5 && port.iter().all(u8::is_ascii_digit),
        _ => false,
    }
}

/// `[IPv6]` or `[IPv6]:port` (at most 5 digits, possibly none).
fn valid_bracketed_host(host: &str) -> bool {
    let Some((v6, after)) = host.strip_prefix('[').and_then(|rest| rest.split_once(']')) else {
        return false;
    };
    let port_ok = match after.strip_prefix(':') {
        Some(p) => p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()),
        None => after.is_empty(),
    };
    port_ok && v6.parse::<std::net::Ipv6Addr>().is_ok()
}

#[cfg(test)]
mod host_tests {
    use super::valid_host;

    /// The check as it was written first (one split, then each part): the one-pass version
    /// answers the same for every string over an alphabet of the bytes that matter.
    fn reference(host: &str) -> bool {
        let (name_ok, port) = if let Some(rest) = host.strip_prefix('[') {
            match rest.split_once(']') {
                Some((v6, after)) => (v6.parse::<std::net::Ipv6Addr>().is_ok(), after),
                None => return false,
            }
        } else {
            let (name, port) = match host.bytes().position(|b| b == b':') {
                Some(i) => host.split_at(i),
                None => (host, ""),
            };
            let ok = !name.is_empty()
                && name.len() <= 254
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
            (ok, port)
        };
        let port_ok = match port.strip_prefix(':') {
            Some(p) => p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()),
            None => port.is_empty(),
        };
        name_ok && port_ok
    }

    #[test]
    fn one_pass_agrees_with_reference() {
        const PIECES: &[&str] = &[
            "a", "1", ".", "-", "_", ":", "@", "[", "]", "::1", " ", "é", "%",
        ];
        let mut level = vec![String::new()];
        let mut checked = 0;
        for _ in 0..5 {
            level = level
                .iter()
                .flat_map(|p| PIECES.iter().map(move |t| format!("{p}{t}")))
                .collect();
            for h in &level {
                assert_eq!(valid_host(h), reference(h), "{h:?}");
                checked += 1;
            }
        }
        for h in [
            "",
            "a".repeat(254).as_str(),
            "a".repeat(255).as_str(),
            "[::1]:8443",
            "[::1]",
            "[::1]x",
            "a:123456",
            "a:",
            "a:65535",
            "1.2.3.4:80",
        ] {
            assert_eq!(valid_host(h), reference(h), "{h:?}");
        }
        assert!(checked > 100_000);
    }
}

#[cfg(test)]
mod sni_tests {
    use super::same_host;

    /// Letter case, a port and a trailing dot do not matter; another name, a subdomain or an
    /// IP literal does.
    #[test]
    fn host_against_sni() {
        for (sni, host) in [
            ("a.example", "a.example"),
            ("a.example", "A.Example:8443"),
            ("a.example", "a.example.:443"),
            ("a.example.", "a.example"),
        ] {
            assert!(same_host(sni, host), "{sni} vs {host}");
        }
        for (sni, host) in [
            ("a.example", "b.example"),
            ("a.example", "x.a.example"),
            ("a.example", "a.example.evil"),
            ("a.example", "127.0.0.1"),
            ("a.example", "[::1]:443"),
            ("a.example", "a.example.."),
        ] {
            assert!(!same_host(sni, host), "{sni} vs {host}");
        }
    }
}
