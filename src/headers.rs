//! Header hygiene on the way in and out:
//! 1. [`strip_inbound`]: every header that could carry identity, or that only a proxy may set,
//!    is removed from the incoming request in every spelling an upstream might fold into the
//!    same name (any case, `_` for `-`: PHP/CGI/WSGI turn `x_forwarded_user` into
//!    `HTTP_X_FORWARDED_USER`; CVE-2025-64484): the identity names, every `X-Auth-Request-*`
//!    and `X-Portcullis-*`, [`ALWAYS_STRIPPED`] (`Remote-User`, `X-Original-URL`,
//!    `X-HTTP-Method-Override`, `Proxy` …), and from a peer outside `trusted_proxies` every
//!    `X-Forwarded-*`, `Forwarded`, `X-Real-IP` and [`CLIENT_IP_NAMES`]. The client's request
//!    trailers lose the same names ([`strip_request_trailers`]).
//! 2. [`remove_hop_by_hop`]: connection-level headers never cross the proxy; a WebSocket
//!    handshake keeps only `Upgrade: websocket` ([`WEBSOCKET`]).
//! 3. [`set_forwarded`]: `X-Forwarded-For/Proto/Host` and `X-Real-IP` are set from what the
//!    proxy saw; a trusted proxy's chain is extended and `X-Real-IP` derived from it.
//! 4. [`inject`]: identity headers are written only from a [`Permit`]; the client's
//!    `Authorization` goes on only where it is what authenticated the request (`auto`).
//! 5. [`drop_own_set_cookies`]: an upstream cannot set the proxy's own cookies, in any spelling
//!    a browser might store as one of them ([`is_own_cookie_loosely`]).

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use ipnet::IpNet;

use crate::authz::Permit;
pub use crate::config::IdentityNames;
use crate::config::{AuthorizationMode, HeaderConfig};
use crate::identity::{HeaderValues, Identity, Via};

/// Hop-by-hop headers (RFC 9110 §7.6.1, plus the non-standard `Keep-Alive` and
/// `Proxy-Connection`, `Proxy-Authorization`/`Proxy-Authenticate`, and `HTTP2-Settings`, which
/// only means something on the connection that upgrades to h2c); `Connection` first.
static ALL_HOP: [HeaderName; 10] = [
    header::CONNECTION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHORIZATION,
    header::PROXY_AUTHENTICATE,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    HeaderName::from_static("http2-settings"),
];

/// The index of `n` in [`ALL_HOP`].
fn hop_index(n: &HeaderName) -> Option<usize> {
    classify(n).filter(|i| *i < ALL_HOP.len())
}

/// [`classify`]'s answer for `Set-Cookie`.
const SET_COOKIE_INDEX: usize = 10;

/// The index of `n` in [`ALL_HOP`], or [`SET_COOKIE_INDEX`]. Compares with constants: a
/// standard name is one byte (a jump table on it), any other a length switch and one compare
/// of its bytes — cheaper than matching the name's text or comparing with the table.
fn classify(n: &HeaderName) -> Option<usize> {
    const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
    const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
    const HTTP2_SETTINGS: HeaderName = HeaderName::from_static("http2-settings");
    Some(if *n == header::CONNECTION {
        0
    } else if *n == header::TE {
        1
    } else if *n == header::TRAILER {
        2
    } else if *n == header::TRANSFER_ENCODING {
        3
    } else if *n == header::UPGRADE {
        4
    } else if *n == header::PROXY_AUTHORIZATION {
        5
    } else if *n == header::PROXY_AUTHENTICATE {
        6
    } else if *n == KEEP_ALIVE {
        7
    } else if *n == PROXY_CONNECTION {
        8
    } else if *n == HTTP2_SETTINGS {
        9
    } else if *n == header::SET_COOKIE {
        SET_COOKIE_INDEX
    } else {
        return None;
    })
}

/// Longest header value the proxy writes; identity values beyond it are cut.
pub const MAX_IDENTITY_VALUE: usize = 4096;

/// Client-address headers that CDNs and load balancers set and IP libraries read (folded):
/// like the forwarding names, removed from a peer outside `trusted_proxies` (a CDN in front,
/// listed as trusted, keeps its `CF-Connecting-IP`), and in an `_` spelling from anyone.
pub const CLIENT_IP_NAMES: &[&str] = &[
    "x-client-ip",
    "client-ip",
    "x-cluster-client-ip",
    "cf-connecting-ip",
    "fastly-client-ip",
    "x-proxyuser-ip",
    "x-remote-addr",
    "x-remote-ip",
    "x-originating-ip",
    // the scheme, as Rack, Django and Flask deployments read it besides X-Forwarded-Proto
    "x-scheme",
    "x-url-scheme",
    "front-end-https",
    "x-original-proto",
    "x-https",
    "https",
    "cf-visitor",
    // a client certificate, as TLS-terminating proxies pass it (also `X-SSL-Client-*`, `X-ARR-*`)
    "x-client-cert",
    "ssl-client-cert",
];

/// Whether folded `name` starts with `prefix` (already folded).
fn folded_prefix(name: &[u8], prefix: &[u8]) -> bool {
    name.len() >= prefix.len() && name.iter().zip(prefix).all(|(b, p)| fold(*b) == *p)
}

/// Whether folded `name` is `other` (already folded).
fn folded_eq(name: &[u8], other: &[u8]) -> bool {
    name.len() == other.len() && folded_prefix(name, other)
}

/// Header names are already lower case (hyper, and HTTP/2 requires it); PHP/CGI/WSGI read `_`
/// as `-`.
fn fold(b: u8) -> u8 {
    if b == b'_' { b'-' } else { b }
}

/// Whether folded `name` belongs to what a proxy sets about the connection: every
/// `X-Forwarded-*`, `Forwarded`, `X-Real-IP`.
fn forwarding_name(name: &[u8]) -> bool {
    folded_prefix(name, b"x-forwarded-") || folded_eq(name, b"x-real-ip") || name == b"forwarded"
}

/// Prefixes of the identity headers other auth proxies and platforms set (folded), removed from
/// every request like [`ALWAYS_STRIPPED`]: Authentik, Pomerium, Vouch, Grafana's auth proxy,
/// Azure App Service (`X-MS-CLIENT-PRINCIPAL*`, `X-MS-TOKEN-*`), Kong (`X-Consumer-*`,
/// `X-Credential-*`) and Tailscale (`Tailscale-User-*`).
const OTHER_PROXIES_PREFIXES: &[&str] = &[
    "x-authentik-",
    "x-pomerium-",
    "x-vouch-",
    "x-webauth-",
    "x-ms-client-principal",
    "x-ms-token-",
    "x-consumer-",
    "x-credential-",
];

/// Bit `n` set: some name of [`CLIENT_IP_NAMES`] has length `n` (all are shorter than 64).
const CLIENT_IP_LENGTHS: u64 = {
    let mut mask = 0u64;
    let mut i = 0;
    while i < CLIENT_IP_NAMES.len() {
        assert!(CLIENT_IP_NAMES[i].len() < 64);
        mask |= 1 << CLIENT_IP_NAMES[i].len();
        i += 1;
    }
    mask
};

/// Whether folded `name` is one of [`CLIENT_IP_NAMES`] (a length mask rules out most names
/// with one test: `cookie`, `content-type`, `connection` …).
fn client_ip_name(name: &[u8]) -> bool {
    name.len() < 64
        && CLIENT_IP_LENGTHS & (1 << name.len()) != 0
        && CLIENT_IP_NAMES
            .iter()
            .any(|n| folded_eq(name, n.as_bytes()))
}

/// Whether a request header named `name` must go: an identity name, a name only a proxy sets,
/// and — from a peer outside `trusted_proxies` — every forwarding and client-address name. A
/// trusted proxy's stay, but not in a spelling with `_`: a proxy writes `-`, so an `_` spelling
/// came from its client and an upstream that folds it would read it as the real one.
fn doomed(name: &[u8], identity: &IdentityNames, trusted: bool) -> bool {
    if identity.matches(name, fold) {
        return true;
    }
    // Everything else starts with `x`, `f` or `c`: one compare for most headers.
    let proxied = |name: &[u8]| !trusted || name.contains(&b'_');
    match name.first() {
        Some(b'x') => {
            folded_prefix(name, b"x-portcullis-")
                || folded_prefix(name, b"x-auth-request-")
                || OTHER_PROXIES_PREFIXES
                    .iter()
                    .any(|p| folded_prefix(name, p.as_bytes()))
                || proxied(name)
                    && (forwarding_name(name)
                        || client_ip_name(name)
                        || folded_prefix(name, b"x-ssl-client-")
                        || folded_prefix(name, b"x-arr-"))
        }
        Some(b't') => folded_prefix(name, b"tailscale-user-"),
        Some(b'f') => proxied(name) && (name == b"forwarded" || client_ip_name(name)),
        Some(b'c' | b's' | b'h') => proxied(name) && client_ip_name(name),
        _ => false,
    }
}

/// Removes, from an incoming request, every header an upstream could take for something the
/// proxy vouches for (see the module doc, step 1). `trusted`: the peer is one of
/// `trusted_proxies`, whose forwarding headers are kept ([`set_forwarded`] extends them).
pub fn strip_inbound(headers: &mut HeaderMap, identity: &IdentityNames, trusted: bool) {
    // HeaderMap cannot remove while iterating; most requests carry none, and then nothing is
    // allocated.
    let hit = |n: &HeaderName| doomed(n.as_str().as_bytes(), identity, trusted);
    if !headers.keys().any(hit) {
        return;
    }
    let names: Vec<HeaderName> = headers.keys().filter(|n| hit(n)).cloned().collect();
    for n in names {
        headers.remove(&n);
    }
}

/// The fast paths of [`strip_inbound`] against plain scans (the identity-name buckets have
/// their own test in `config::identity_names`).
#[cfg(test)]
mod strip_fast_paths {
    use super::*;

    /// [`client_ip_name`]'s length mask answers as a scan of every name does.
    #[test]
    fn client_ip_lookup_agrees_with_a_scan() {
        use rand::{Rng, SeedableRng};
        let scan = |name: &[u8]| {
            CLIENT_IP_NAMES
                .iter()
                .any(|n| folded_eq(name, n.as_bytes()))
        };
        let mut probes: Vec<Vec<u8>> = Vec::new();
        for n in CLIENT_IP_NAMES {
            let n = n.as_bytes();
            probes.push(n.to_vec());
            probes.push(
                n.iter()
                    .map(|b| if *b == b'-' { b'_' } else { *b })
                    .collect(),
            );
            probes.push(n[..n.len() - 1].to_vec());
            probes.push([n, b"s"].concat());
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(15);
        for _ in 0..20_000 {
            let len = rng.random_range(0..=80);
            probes.push(
                (0..len)
                    .map(|_| b"-_cilpx"[rng.random_range(0..7)])
                    .collect(),
            );
        }
        let mut hits = 0;
        for p in &probes {
            assert_eq!(
                client_ip_name(p),
                scan(p),
                "{:?}",
                String::from_utf8_lossy(p)
            );
            hits += usize::from(scan(p));
        }
        assert!(hits >= 2 * CLIENT_IP_NAMES.len());
    }
}

/// Removes, from the client's request trailers, everything [`strip_inbound`] removes from an
/// untrusted peer's headers (a trailer is never a proxy's), hop-by-hop names, and the fields
/// that only mean something in the head (`Authorization`, `Cookie`, `Host`, framing): an
/// HTTP/2 upstream (gRPC) reads trailers as metadata, next to the identity the proxy vouches for.
pub fn strip_request_trailers(trailers: &mut HeaderMap, identity: &IdentityNames) {
    strip_inbound(trailers, identity, false);
    remove_hop_by_hop(trailers, false);
    for n in [
        header::AUTHORIZATION,
        header::COOKIE,
        header::HOST,
        header::CONTENT_LENGTH,
    ] {
        trailers.remove(n);
    }
}

/// Removes hop-by-hop headers, including those the `Connection` header names.
/// `keep_upgrade` keeps `Connection: upgrade` + `Upgrade` for a WebSocket handshake.
pub fn remove_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    let seen = Seen::of_names(headers);
    remove_seen_hop_by_hop(headers, keep_upgrade, &seen);
}

/// The upstream's answer as the client may see it: [`remove_hop_by_hop`], then, when the
/// proxy has a session cookie `own_cookie`, [`drop_own_set_cookies`]: one pass over the
/// headers finds what either has to do (usually only `Connection: keep-alive` to remove).
pub fn clean_response(headers: &mut HeaderMap, keep_upgrade: bool, own_cookie: Option<&str>) {
    let seen = Seen::of(headers, own_cookie);
    remove_seen_hop_by_hop(headers, keep_upgrade, &seen);
    // A `Set-Cookie` the `Connection` header named is gone already; the filter reads what is
    // left.
    if let (true, Some(base)) = (seen.own_set_cookie, own_cookie) {
        drop_own_set_cookies(headers, base);
    }
}

/// The trailers of an upstream's answer as the client gets them: no hop-by-hop field and no
/// `Set-Cookie` at all (a cookie set in trailers is one no browser applies, and one of the
/// proxy's own must not get through there either).
pub fn clean_response_trailers(trailers: &mut HeaderMap) {
    remove_hop_by_hop(trailers, false);
    trailers.remove(header::SET_COOKIE);
}

/// What one pass over a header map found for [`remove_hop_by_hop`] and [`clean_response`].
struct Seen {
    /// Bit `i`: [`ALL_HOP`]`[i]` is present.
    present: u16,
    /// `Connection` has exactly one value, `keep-alive` or `close` (naming no header).
    plain_connection: bool,
    /// A `Set-Cookie` names the proxy's own cookie ([`set_cookie_is_own`]).
    own_set_cookie: bool,
}

impl Seen {
    /// One pass over the names (usually a handful) instead of a hashed lookup per hop-by-hop
    /// name; `Connection`'s values are looked up only when it is there (most requests).
    fn of_names(headers: &HeaderMap) -> Seen {
        let mut present = 0u16;
        for n in headers.keys() {
            if let Some(i) = hop_index(n) {
                present |= 1 << i;
            }
        }
        let mut plain_connection = false;
        if present & 1 != 0 {
            let mut values = headers.get_all(header::CONNECTION).iter();
            plain_connection =
                matches!((values.next(), values.next()), (Some(v), None) if plain(v));
        }
        Seen {
            present,
            plain_connection,
            own_set_cookie: false,
        }
    }

    /// One pass over the headers and their values: also reads `Connection` (an answer from
    /// a keep-alive upstream has it) and each `Set-Cookie` when the proxy has a cookie.
    fn of(headers: &HeaderMap, own_cookie: Option<&str>) -> Seen {
        let mut seen = Seen {
            present: 0,
            plain_connection: false,
            own_set_cookie: false,
        };
        let mut connections = 0u32;
        for (n, v) in headers {
            match classify(n) {
                None => {}
                Some(SET_COOKIE_INDEX) => {
                    if let Some(base) = own_cookie
                        && set_cookie_is_own(v.as_bytes(), base.as_bytes())
                    {
                        seen.own_set_cookie = true;
                    }
                }
                Some(i) => {
                    if i == 0 {
                        connections += 1;
                        seen.plain_connection = connections == 1 && plain(v);
                    }
                    seen.present |= 1 << i;
                }
            }
        }
        seen
    }
}

/// A `Connection` value that names no header: `keep-alive` or `close`.
fn plain(v: &HeaderValue) -> bool {
    let v = v.as_bytes();
    // The usual spelling first: compares with constants, inlined.
    v == b"keep-alive"
        || v == b"close"
        || v.eq_ignore_ascii_case(b"keep-alive")
        || v.eq_ignore_ascii_case(b"close")
}

/// [`remove_hop_by_hop`] with what [`Seen::of`] found in `headers`.
fn remove_seen_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool, seen: &Seen) {
    let present = seen.present;
    // Most requests carry none, most responses only `Connection: keep-alive`, and then
    // nothing is allocated.
    if present == 0 && !keep_upgrade {
        return;
    }
    // The usual response: only `Connection: keep-alive` (or `close`), naming no header.
    if present == 1 && !keep_upgrade && seen.plain_connection {
        headers.remove(header::CONNECTION);
        return;
    }
    // Names the Connection header lists, matched against the names present (no parsing or
    // hashing of each token).
    let mut named: Vec<HeaderName> = Vec::new();
    if present & 1 != 0 {
        // Read as bytes: a value with a non-text byte (`X-Secret, caf\xe9`) still names
        // `X-Secret`, whatever else it holds.
        let tokens = headers
            .get_all(header::CONNECTION)
            .iter()
            .flat_map(|v| v.as_bytes().split(|&b| b == b','))
            .map(<[u8]>::trim_ascii);
        for token in tokens {
            if keep_upgrade && token.eq_ignore_ascii_case(b"upgrade") {
                continue;
            }
            if let Some(n) = headers
                .keys()
                .find(|n| n.as_str().as_bytes().eq_ignore_ascii_case(token))
                && !named.contains(n)
            {
                named.push(n.clone());
            }
        }
    }
    for n in &named {
        headers.remove(n);
    }
    for (i, h) in ALL_HOP.iter().enumerate() {
        if present & (1 << i) == 0
            || keep_upgrade && (*h == header::CONNECTION || *h == header::UPGRADE)
        {
            continue;
        }
        headers.remove(h);
    }
    if keep_upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// Whether the request's `TE` names `trailers` (what a gRPC client sends; an HTTP/2 upstream
/// gets `TE: trailers` then).
pub fn te_trailers(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::TE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| {
            t.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("trailers"))
        })
}

/// Whether `peer` is one of the trusted proxies.
pub fn is_trusted(peer: IpAddr, trusted: &[IpNet]) -> bool {
    let peer = match peer {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(peer, IpAddr::V4),
        v4 => v4,
    };
    trusted.iter().any(|n| n.contains(&peer))
}

/// The client's view of the request as the proxy establishes it.
pub struct ForwardedInfo<'a> {
    pub peer: IpAddr,
    pub proto: &'a str,
    pub host: Option<&'a str>,
    /// `peer` is one of `trusted_proxies`.
    pub trusted: bool,
    /// `server.trusted_proxies`, to find the client in a trusted proxy's `X-Forwarded-For`.
    pub trusted_proxies: &'a [IpNet],
    /// The client's `Host` header, if the caller has it: when it is `host` byte for byte,
    /// `X-Forwarded-Host` shares its bytes instead of a copy (an allocation) of `host`.
    pub host_header: Option<&'a HeaderValue>,
}

impl ForwardedInfo<'_> {
    /// `host` as a header value: the client's `Host` header when it is that (a clone shares
    /// its bytes), else a copy; `None` when there is no host or it is no header value.
    fn host_value(&self) -> Option<HeaderValue> {
        let host = self.host?;
        match self.host_header {
            Some(v) if v.as_bytes() == host.as_bytes() => Some(v.clone()),
            _ => HeaderValue::from_str(host).ok(),
        }
    }
}

/// Sets `X-Forwarded-For/Proto/Host` and `X-Real-IP`. From an untrusted peer they are what the
/// proxy saw ([`strip_inbound`] removed the client's forwarding headers before). From a trusted
/// proxy its `X-Forwarded-Proto/Host` are kept, the peer is appended to `X-Forwarded-For`, and
/// `X-Real-IP` is derived from that chain ([`client_address`]), never copied.
pub fn set_forwarded(headers: &mut HeaderMap, info: &ForwardedInfo<'_>) {
    // Constants, not statics: a name is made in place (no clone through `Bytes`' vtable) and
    // compares with it inline.
    const XFF: HeaderName = HeaderName::from_static("x-forwarded-for");
    const XFP: HeaderName = HeaderName::from_static("x-forwarded-proto");
    const XFH: HeaderName = HeaderName::from_static("x-forwarded-host");
    const XRI: HeaderName = HeaderName::from_static("x-real-ip");
    static HTTPS: HeaderValue = HeaderValue::from_static("https");
    static HTTP: HeaderValue = HeaderValue::from_static("http");
    let proto = if info.proto == "https" { &HTTPS } else { &HTTP }.clone();
    if info.trusted {
        let mut chain = String::new();
        for v in headers.get_all(&XFF) {
            if let Ok(v) = v.to_str() {
                if !chain.is_empty() {
                    chain.push_str(", ");
                }
                chain.push_str(v);
            }
        }
        let real = client_address(&chain, info.peer, info.trusted_proxies);
        if !chain.is_empty() {
            chain.push_str(", ");
        }
        chain.push_str(&info.peer.to_string());
        if let Ok(v) = HeaderValue::from_str(&chain) {
            headers.insert(XFF, v);
        }
        headers.insert(XRI, peer_header_value(real));
        if !headers.contains_key(&XFP) {
            headers.insert(XFP, proto);
        }
        if !headers.contains_key(&XFH)
            && let Some(v) = info.host_value()
        {
            headers.insert(XFH, v);
        }
    } else {
        let peer = peer_header_value(info.peer);
        headers.insert(XFF, peer.clone());
        headers.insert(XRI, peer);
        headers.insert(XFP, proto);
        match info.host_value() {
            Some(v) => {
                headers.insert(XFH, v);
            }
            None => {
                headers.remove(&XFH);
            }
        }
    }
}

/// The client's address behind trusted proxies: walking `chain` (the `X-Forwarded-For` a trusted
/// `peer` sent) from the right, the first address that is not a trusted proxy. Every address
/// trusted → the leftmost. An entry that is not an address (`unknown`, garbage) stops the walk:
/// the trusted proxy right of it is the last hop known, so it is the answer.
pub fn client_address(chain: &str, peer: IpAddr, trusted: &[IpNet]) -> IpAddr {
    let mut last = peer;
    for entry in chain.rsplit(',') {
        let Some(ip) = parse_forwarded_for(entry) else {
            return last;
        };
        if !is_trusted(ip, trusted) {
            return ip;
        }
        last = ip;
    }
    last
}

/// An `X-Forwarded-For` entry: an address, `IPv4:port`, `[IPv6]` or `[IPv6]:port`.
fn parse_forwarded_for(entry: &str) -> Option<IpAddr> {
    let e = entry.trim();
    e.parse::<IpAddr>()
        .ok()
        .or_else(|| e.parse::<std::net::SocketAddr>().ok().map(|a| a.ip()))
        .or_else(|| e.strip_prefix('[')?.strip_suffix(']')?.parse().ok())
}

/// The peer address as a header value. Formatting an address costs more than the rest of
/// `set_forwarded`; the last one formatted on this thread is kept (clones share the bytes), so
/// a connection's requests, or those of a load balancer in front, format it once.
fn peer_header_value(peer: IpAddr) -> HeaderValue {
    thread_local! {
        static LAST: std::cell::RefCell<Option<(IpAddr, HeaderValue)>> =
            const { std::cell::RefCell::new(None) };
    }
    LAST.with(|last| {
        let mut last = last.borrow_mut();
        if let Some((ip, v)) = &*last
            && *ip == peer
        {
            return v.clone();
        }
        let v = HeaderValue::from_str(&peer.to_string())
            .expect("an IP address is a valid header value");
        *last = Some((peer, v.clone()));
        v
    })
}

/// A header value from identity data: control characters (CR, LF, NUL …) removed, cut to
/// [`MAX_IDENTITY_VALUE`] bytes on a character boundary. Non-ASCII stays as UTF-8 bytes.
pub fn sanitize_value(s: &str) -> Option<HeaderValue> {
    // Printable ASCII within the limit (the usual case) is the value as is: one copy.
    if s.len() <= MAX_IDENTITY_VALUE && s.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return HeaderValue::from_bytes(s.as_bytes()).ok();
    }
    let mut clean: String = s.chars().filter(|c| !c.is_control()).collect();
    if clean.len() > MAX_IDENTITY_VALUE {
        let mut cut = MAX_IDENTITY_VALUE;
        while !clean.is_char_boundary(cut) {
            cut -= 1;
        }
        clean.truncate(cut);
    }
    HeaderValue::from_bytes(clean.as_bytes()).ok()
}

/// The identity's header values, sanitized (computed once per cached identity).
fn header_values(id: &Identity) -> HeaderValues {
    let opt = |s: &Option<String>| s.as_deref().and_then(sanitize_value);
    HeaderValues {
        sub: sanitize_value(&id.sub),
        email: id.verified_email().and_then(sanitize_value),
        name: opt(&id.name),
        preferred_username: opt(&id.preferred_username),
        roles: (!id.roles.is_empty())
            .then(|| id.roles.join(","))
            .and_then(|r| sanitize_value(&r)),
        orgs: (!id.org_roles.orgs().is_empty())
            .then(|| id.org_roles.orgs().join(","))
            .and_then(|o| sanitize_value(&o)),
        access_token: Default::default(),
    }
}

fn claim_as_header_text(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Array(a) => Some(
            a.iter()
                .map(|x| match x {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect::<Vec<_>>()
                .join(","),
        ),
        // ZITADEL-style maps: the keys are the values (e.g. roles).
        serde_json::Value::Object(o) => Some(o.keys().cloned().collect::<Vec<_>>().join(",")),
        other => Some(other.to_string()),
    }
}

/// Writes the identity headers the route's config names, from a permit. `assertion` (the
/// proxy's signer and the route name as audience) adds the signed assertion header when the
/// config names one.
pub fn inject(
    headers: &mut HeaderMap,
    permit: &Permit,
    cfg: &HeaderConfig,
    assertion: Option<(&crate::assertion::AssertionSigner, &str)>,
) {
    let id = permit.identity();
    let v = id.header_values.get_or_init(|| header_values(id));
    // One insert site in a loop (not a closure called six times): a header the identity has
    // no value for, or the config turned off, costs a test.
    for (name, value) in [
        (&cfg.user, &v.sub),
        (&cfg.email, &v.email),
        (&cfg.preferred_username, &v.preferred_username),
        (&cfg.name, &v.name),
        (&cfg.roles, &v.roles),
        (&cfg.orgs, &v.orgs),
    ] {
        if let (Some(n), Some(v)) = (name, value) {
            headers.insert(n.clone(), v.clone());
        }
    }
    if let Some(n) = &cfg.access_token
        && let Some(token) = v
            .access_token
            .get_or_init(|| (id.access_token.as_deref()).and_then(sanitize_value))
    {
        headers.insert(n.clone(), token.clone());
    }
    for (h, path) in &cfg.claims {
        if let Some(text) = crate::claims::claim(&id.claims, path).and_then(claim_as_header_text)
            && let Some(v) = sanitize_value(&text)
        {
            headers.insert(h.clone(), v);
        }
    }
    if let (Some(name), Some((signer, audience))) = (&cfg.assertion, assertion)
        && let Some(v) = signer
            .sign(id, audience)
            .and_then(|t| HeaderValue::from_str(&t).ok())
    {
        headers.insert(name.clone(), v);
    }
    // `auto`: the client's header goes on only when it is what authenticated the request (a
    // bearer token); beside a session it is unverified text the upstream might believe.
    let mode = match cfg.authorization {
        AuthorizationMode::Auto if id.via == Via::Session => AuthorizationMode::Strip,
        AuthorizationMode::Auto => AuthorizationMode::Pass,
        m => m,
    };
    match mode {
        AuthorizationMode::Pass | AuthorizationMode::Auto => {}
        AuthorizationMode::Strip => {
            headers.remove(header::AUTHORIZATION);
        }
        AuthorizationMode::AccessToken => match id
            .access_token
            .as_deref()
            .and_then(|t| HeaderValue::from_str(&format!("Bearer {t}")).ok())
        {
            Some(v) => {
                headers.insert(header::AUTHORIZATION, v);
            }
            None => {
                headers.remove(header::AUTHORIZATION);
            }
        },
    }
}

/// The one protocol a WebSocket route lets through `Upgrade`.
pub static WEBSOCKET: HeaderValue = HeaderValue::from_static("websocket");

/// Whether a 101 answer switches to WebSocket: exactly one `Upgrade` value, `websocket` (any
/// case). Anything else (`h2c`, a list, none) must not be spliced to a client that asked for
/// a WebSocket.
pub fn upgrades_to_websocket(headers: &HeaderMap) -> bool {
    let mut values = headers.get_all(header::UPGRADE).iter();
    matches!(
        (values.next(), values.next()),
        (Some(v), None) if v.as_bytes().trim_ascii().eq_ignore_ascii_case(b"websocket")
    )
}

/// Whether a cookie named `name` is one of the proxy's own for session cookie `base`: `base`,
/// its chunks `base.N`, the pending-login cookies `base_login_…`, each also under a `__Host-` or
/// `__Secure-` prefix in any case (browsers match the prefixes case-insensitively). The rest
/// compares byte for byte, as browsers compare cookie names; `name` is trimmed of SP/HTAB only
/// ([`crate::session::trim_ows`]) — the rule the proxy reads its own cookies by.
pub fn is_own_cookie(name: &[u8], base: &[u8]) -> bool {
    let n = strip_prefix_ci(name, b"__host-")
        .or_else(|| strip_prefix_ci(name, b"__secure-"))
        .unwrap_or(name);
    let Some(rest) = n.strip_prefix(base) else {
        return false;
    };
    rest.is_empty()
        || rest.starts_with(b"_login_")
        || rest
            .strip_prefix(b".")
            .is_some_and(|d| !d.is_empty() && d.iter().all(u8::is_ascii_digit))
}

/// `n` without `prefix` (lower case) when it starts with it in any ASCII case.
fn strip_prefix_ci<'n>(n: &'n [u8], prefix: &[u8]) -> Option<&'n [u8]> {
    (n.len() >= prefix.len() && n[..prefix.len()].eq_ignore_ascii_case(prefix))
        .then(|| &n[prefix.len()..])
}

/// [`is_own_cookie`] as loosely as any browser might read a name (defence in depth: browsers
/// differ, and one that trims Unicode whitespace would store `\u{a0}portcullis` as
/// `portcullis`): whatever is not a visible ASCII character (whitespace of any kind, controls,
/// every non-ASCII byte) is trimmed from both ends, also after a `__Host-`/`__Secure-` prefix,
/// and the rest compares ASCII-case-insensitively. Every name [`is_own_cookie`] accepts passes
/// this too.
pub fn is_own_cookie_loosely(name: &[u8], base: &[u8]) -> bool {
    let n = trim_invisible(name);
    let n = trim_invisible(
        strip_prefix_ci(n, b"__host-")
            .or_else(|| strip_prefix_ci(n, b"__secure-"))
            .unwrap_or(n),
    );
    let Some(rest) = strip_prefix_ci(n, base) else {
        return false;
    };
    rest.is_empty()
        || strip_prefix_ci(rest, b"_login_").is_some()
        || rest
            .strip_prefix(b".")
            .is_some_and(|d| !d.is_empty() && d.iter().all(u8::is_ascii_digit))
}

/// `b` without the bytes at either end that are not visible ASCII (`!`..`~`).
fn trim_invisible(b: &[u8]) -> &[u8] {
    let Some(start) = b.iter().position(u8::is_ascii_graphic) else {
        return &[];
    };
    let end = b
        .iter()
        .rposition(u8::is_ascii_graphic)
        .map_or(start, |e| e + 1);
    &b[start..end]
}

/// Whether a `Set-Cookie` value names one of the proxy's own cookies, read as loosely as any
/// browser might ([`is_own_cookie_loosely`]): the name before the first `=` of the first
/// `;`-part; a nameless cookie (`=name=v`, or no `=` at all, or a name of only whitespace) is
/// sent back by browsers as its value alone, so its value's name part counts.
fn set_cookie_is_own(v: &[u8], base: &[u8]) -> bool {
    let pair = v.split(|c| *c == b';').next().unwrap_or(v);
    let (name, value) = match memchr::memchr(b'=', pair) {
        Some(i) => (trim_invisible(&pair[..i]), &pair[i + 1..]),
        None => (&b""[..], pair),
    };
    let name = if name.is_empty() {
        let v = trim_invisible(value);
        trim_invisible(v.split(|c| *c == b'=').next().unwrap_or(v))
    } else {
        name
    };
    is_own_cookie_loosely(name, base)
}

/// Removes every `Set-Cookie` of an upstream's answer that names one of the proxy's own cookies
/// ([`set_cookie_is_own`]): an app (or a header injection in it) must not plant, replace or
/// clear a session.
pub fn drop_own_set_cookies(headers: &mut HeaderMap, base: &str) {
    let own = |v: &HeaderValue| set_cookie_is_own(v.as_bytes(), base.as_bytes());
    // The usual answer sets no cookie, or none of ours: nothing is copied.
    if !headers.get_all(header::SET_COOKIE).iter().any(own) {
        return;
    }
    let kept: Vec<HeaderValue> = headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter(|v| !own(v))
        .cloned()
        .collect();
    let dropped = headers.get_all(header::SET_COOKIE).iter().count() - kept.len();
    tracing::warn!(
        dropped,
        cookie = base,
        "upstream Set-Cookie naming the proxy's own cookie dropped"
    );
    headers.remove(header::SET_COOKIE);
    for v in kept {
        headers.append(header::SET_COOKIE, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ALWAYS_STRIPPED;

    fn identity_set() -> IdentityNames {
        crate::config::DEFAULT_IDENTITY_HEADERS.iter().collect()
    }

    #[test]
    fn forged_identity_headers_are_stripped_in_every_spelling() {
        let mut h = HeaderMap::new();
        for n in [
            "X-Forwarded-User",
            "x-forwarded-user",
            "X_Forwarded_User",
            "x_forwarded_email",
            "X-Forwarded_Roles",
            "X-Portcullis-Assertion",
            "x-portcullis-anything",
            "x_portcullis_other",
        ] {
            h.append(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_static("forged"),
            );
        }
        h.insert("accept", HeaderValue::from_static("*/*"));
        strip_inbound(&mut h, &identity_set(), true);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key("accept"));
    }

    /// A small deterministic generator for the differential tests (xorshift64*).
    struct Gen(u64);

    impl Gen {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            usize::try_from(self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33).unwrap() % n
        }

        fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
            from[self.below(from.len())]
        }
    }

    /// Header maps like those hop-by-hop removal and the Set-Cookie filter see: hop-by-hop
    /// names (some repeated), `Connection` naming headers, present or not, in any case, and
    /// `Set-Cookie`s of the app's and of the proxy's own cookies.
    fn random_headers(g: &mut Gen) -> HeaderMap {
        const NAMES: &[&str] = &[
            "connection",
            "te",
            "trailer",
            "transfer-encoding",
            "upgrade",
            "proxy-authorization",
            "proxy-authenticate",
            "keep-alive",
            "proxy-connection",
            "http2-settings",
            "set-cookie",
            "set-cookie",
            "x-hop",
            "x-other",
            "content-type",
            "date",
            "server",
        ];
        const CONNECTION: &[&str] = &[
            "keep-alive",
            "close",
            "Keep-Alive",
            "CLOSE",
            "upgrade",
            "Upgrade",
            "keep-alive, x-hop",
            "x-hop,x-other",
            "close, set-cookie",
            " TE , trailer",
            "keep-alive, upgrade",
            "x-absent",
            "",
        ];
        const COOKIES: &[&str] = &[
            "app=1; Path=/",
            "portcullis=forged",
            " __Host-portcullis =x; Secure",
            "Portcullis.2=x",
            "=portcullis=nameless",
            "other=2",
            "portcullisx=3",
        ];
        let mut h = HeaderMap::new();
        for _ in 0..g.below(9) {
            let name = g.pick(NAMES);
            let value = match name {
                "connection" => g.pick(CONNECTION),
                "set-cookie" => g.pick(COOKIES),
                "upgrade" => g.pick(&["websocket", "h2c"]),
                _ => g.pick(&["1", "v"]),
            };
            h.append(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        h
    }

    /// `remove_hop_by_hop` before the one-pass scan, kept as the reference.
    fn remove_hop_by_hop_reference(headers: &mut HeaderMap, keep_upgrade: bool) {
        let mut named: Vec<HeaderName> = Vec::new();
        let tokens = headers
            .get_all(header::CONNECTION)
            .iter()
            .flat_map(|v| v.as_bytes().split(|&b| b == b','))
            .map(<[u8]>::trim_ascii);
        for token in tokens {
            if keep_upgrade && token.eq_ignore_ascii_case(b"upgrade") {
                continue;
            }
            if let Some(n) = headers
                .keys()
                .find(|n| n.as_str().as_bytes().eq_ignore_ascii_case(token))
                && !named.contains(n)
            {
                named.push(n.clone());
            }
        }
        for n in &named {
            headers.remove(n);
        }
        for h in &ALL_HOP {
            if keep_upgrade && (*h == header::CONNECTION || *h == header::UPGRADE) {
                continue;
            }
            headers.remove(h);
        }
        if keep_upgrade {
            headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        }
    }

    /// Every header and value, in order, for comparing maps exactly.
    fn listing(h: &HeaderMap) -> Vec<(String, Vec<u8>)> {
        h.iter()
            .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
            .collect()
    }

    /// The one-pass `remove_hop_by_hop` and `clean_response` leave exactly what the
    /// reference removal (and the Set-Cookie filter after it) leaves, on many header maps.
    #[test]
    fn one_pass_cleaning_matches_the_reference() {
        let mut g = Gen(0x9e37_79b9_7f4a_7c15);
        for _ in 0..20_000 {
            let h = random_headers(&mut g);
            let keep_upgrade = g.below(4) == 0;
            let mut want = h.clone();
            remove_hop_by_hop_reference(&mut want, keep_upgrade);
            let mut got = h.clone();
            remove_hop_by_hop(&mut got, keep_upgrade);
            assert_eq!(listing(&got), listing(&want), "{h:?} {keep_upgrade}");
            drop_own_set_cookies(&mut want, "portcullis");
            let mut got = h.clone();
            clean_response(&mut got, keep_upgrade, Some("portcullis"));
            assert_eq!(listing(&got), listing(&want), "{h:?} {keep_upgrade}");
            let mut got = h.clone();
            clean_response(&mut got, keep_upgrade, None);
            let mut want = h.clone();
            remove_hop_by_hop_reference(&mut want, keep_upgrade);
            assert_eq!(listing(&got), listing(&want), "{h:?} {keep_upgrade}");
        }
    }

    /// `X-Forwarded-Host` from the client's `Host` header (shared bytes) is what a copy of
    /// the host would be; a header that is not the host is not used.
    #[test]
    fn forwarded_host_from_the_host_header_is_the_host() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        for peer in ["10.1.1.1", "192.0.2.7"] {
            for host in [Some("app.local"), Some("app.local:8443"), None] {
                for header in [None, Some("app.local"), Some("other.local"), Some("")] {
                    let header = header.map(HeaderValue::from_static);
                    let run = |host_header: Option<&HeaderValue>| {
                        let mut h = HeaderMap::new();
                        h.insert("x-forwarded-for", HeaderValue::from_static("1.2.3.4"));
                        let peer: IpAddr = peer.parse().unwrap();
                        set_forwarded(
                            &mut h,
                            &ForwardedInfo {
                                peer,
                                proto: "https",
                                host,
                                trusted: is_trusted(peer, &trusted),
                                trusted_proxies: &trusted,
                                host_header,
                            },
                        );
                        listing(&h)
                    };
                    assert_eq!(
                        run(header.as_ref()),
                        run(None),
                        "{peer} {host:?} {header:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn hop_index_matches_the_table() {
        for (i, h) in ALL_HOP.iter().enumerate() {
            assert_eq!(hop_index(h), Some(i), "{h}");
        }
        assert_eq!(hop_index(&header::HOST), None);
        assert_eq!(ALL_HOP.len(), SET_COOKIE_INDEX);
        assert_eq!(hop_index(&header::SET_COOKIE), None);
        assert_eq!(classify(&header::SET_COOKIE), Some(SET_COOKIE_INDEX));
        assert_eq!(hop_index(&HeaderName::from_static("x-keep-alive")), None);
        assert_eq!(hop_index(&HeaderName::from_static("x-te")), None);
    }

    #[test]
    fn hop_by_hop_removed_including_connection_named() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret-hop"),
        );
        h.insert("x-secret-hop", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert("x-keep", HeaderValue::from_static("1"));
        remove_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-keep"));
    }

    /// A `Connection` value with a byte that is not text (obs-text) still names the headers it
    /// lists, on requests and on answers.
    #[test]
    fn connection_with_non_text_bytes_still_names_headers() {
        let value = HeaderValue::from_bytes(b"X-Secret, caf\xe9").unwrap();
        for answer in [false, true] {
            let mut h = HeaderMap::new();
            h.insert(header::CONNECTION, value.clone());
            h.insert("x-secret", HeaderValue::from_static("leak"));
            h.insert("x-keep", HeaderValue::from_static("1"));
            if answer {
                clean_response(&mut h, false, Some("portcullis"));
            } else {
                remove_hop_by_hop(&mut h, false);
            }
            assert!(!h.contains_key("x-secret"), "answer={answer}: {h:?}");
            assert!(
                !h.contains_key(header::CONNECTION),
                "answer={answer}: {h:?}"
            );
            assert!(h.contains_key("x-keep"));
        }
    }

    #[test]
    fn forwarded_from_untrusted_is_replaced() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("1.2.3.4"));
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        h.insert("x-forwarded-host", HeaderValue::from_static("evil.example"));
        h.insert("x-real-ip", HeaderValue::from_static("1.2.3.4"));
        h.insert("forwarded", HeaderValue::from_static("for=1.2.3.4"));
        h.insert("x-forwarded-prefix", HeaderValue::from_static("/evil"));
        strip_inbound(&mut h, &identity_set(), false);
        assert!(h.is_empty(), "{h:?}");
        let info = ForwardedInfo {
            peer: "127.0.0.1".parse().unwrap(),
            proto: "http",
            host: Some("app.local"),
            trusted: false,
            trusted_proxies: &[],
            host_header: None,
        };
        set_forwarded(&mut h, &info);
        assert_eq!(h["x-real-ip"], "127.0.0.1");
        assert_eq!(h["x-forwarded-for"], "127.0.0.1");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "app.local");
    }

    #[test]
    fn forwarded_from_trusted_is_kept_and_appended() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("1.2.3.4"));
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let peer: IpAddr = "10.1.1.1".parse().unwrap();
        assert!(is_trusted(peer, &trusted));
        assert!(!is_trusted("11.0.0.1".parse().unwrap(), &trusted));
        assert!(is_trusted("::ffff:10.0.0.1".parse().unwrap(), &trusted));
        h.insert("x-real-ip", HeaderValue::from_static("6.6.6.6"));
        set_forwarded(
            &mut h,
            &ForwardedInfo {
                peer,
                proto: "http",
                host: Some("a"),
                trusted: true,
                trusted_proxies: &trusted,
                host_header: None,
            },
        );
        assert_eq!(h["x-forwarded-for"], "1.2.3.4, 10.1.1.1");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-real-ip"], "1.2.3.4", "derived, not copied");
    }

    /// X-Real-IP behind trusted proxies: the rightmost address of the chain that is not a
    /// trusted proxy; all trusted → the leftmost; garbage stops the walk at the proxy that sent it.
    #[test]
    fn client_address_is_the_rightmost_untrusted() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let peer: IpAddr = "10.0.0.1".parse().unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let cases = [
            ("", "10.0.0.1"),
            ("1.1.1.1", "1.1.1.1"),
            ("6.6.6.6, 1.1.1.1", "1.1.1.1"),
            ("6.6.6.6, 1.1.1.1, 10.2.2.2", "1.1.1.1"),
            ("10.9.9.9, 10.2.2.2", "10.9.9.9"),
            ("6.6.6.6, unknown, 10.2.2.2", "10.2.2.2"),
            ("6.6.6.6,garbage", "10.0.0.1"),
            ("1.1.1.1:4711", "1.1.1.1"),
            ("[2001:db8::1]:443", "2001:db8::1"),
            ("[2001:db8::2]", "2001:db8::2"),
            (" 2001:db8::3 ", "2001:db8::3"),
        ];
        for (chain, want) in cases {
            assert_eq!(client_address(chain, peer, &trusted), ip(want), "{chain:?}");
        }
    }

    /// Every header only a proxy may set, in the spellings an upstream folds together, from an
    /// untrusted peer; from a trusted one the forwarding headers stay unless spelt with `_`.
    #[test]
    fn proxy_only_headers_are_stripped_in_every_spelling() {
        let always = [
            "x-auth-request-roles",
            "X-Auth-Request-Redirect",
            "x_auth_request_anything",
            "remote-user",
            "Remote_User",
            "x-remote-user",
            "x-original-url",
            "X_Original_URL",
            "x-rewrite-url",
            "true-client-ip",
            "True_Client_IP",
            "x-http-method-override",
            "x_http_method_override",
            "x-http-method",
            "x-method-override",
        ];
        let forwarding = [
            "x-forwarded-prefix",
            "X-Forwarded-Ssl",
            "x-forwarded-scheme",
            "x-forwarded-server",
            "x-forwarded-port",
            "x-forwarded-for",
            "forwarded",
            "x-real-ip",
        ];
        let underscored = ["x_forwarded_for", "X_Real_IP", "x-forwarded_proto"];
        let build = || {
            let mut h = HeaderMap::new();
            for n in always.iter().chain(&forwarding).chain(&underscored) {
                h.append(
                    HeaderName::from_bytes(n.as_bytes()).unwrap(),
                    HeaderValue::from_static("forged"),
                );
            }
            for n in [
                "accept",
                "x-forwardedfor",
                "forwarded-x",
                "x-real-ipv6",
                "user-agent",
            ] {
                h.insert(n, HeaderValue::from_static("kept"));
            }
            h
        };
        let mut h = build();
        strip_inbound(&mut h, &identity_set(), false);
        let mut left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(
            left,
            [
                "accept",
                "forwarded-x",
                "user-agent",
                "x-forwardedfor",
                "x-real-ipv6"
            ]
        );
        let mut h = build();
        strip_inbound(&mut h, &identity_set(), true);
        for n in forwarding {
            assert!(h.contains_key(n), "{n} from a trusted proxy");
        }
        for n in always.iter().chain(&underscored) {
            assert!(
                !h.contains_key(HeaderName::from_bytes(n.as_bytes()).unwrap()),
                "{n}"
            );
        }
    }

    #[test]
    fn own_cookie_names() {
        for n in [
            "portcullis",
            "__Host-portcullis",
            "__HOST-portcullis",
            "__host-portcullis",
            "__Secure-portcullis",
            "__SECURE-portcullis",
            "portcullis.1",
            "portcullis.12",
            "__Host-portcullis.3",
            "portcullis_login_0123456789abcdef",
            "__Host-portcullis_login_x",
        ] {
            assert!(is_own_cookie(n.as_bytes(), b"portcullis"), "{n}");
        }
        for n in [
            "Portcullis",
            "PORTCULLIS",
            "portcullis.",
            "portcullis.x",
            "portcullisx",
            "app",
            "__Host-app",
            "x-portcullis",
            "__Host-Portcullis",
        ] {
            assert!(!is_own_cookie(n.as_bytes(), b"portcullis"), "{n}");
        }
    }

    /// The Set-Cookie filter's reading: every exact name, and the same under any whitespace,
    /// control or non-ASCII padding and in any ASCII case.
    #[test]
    fn own_cookie_names_loosely() {
        for n in [
            "portcullis",
            "__Host-portcullis.3",
            "__secure-portcullis_login_x",
            "Portcullis",
            "PORTCULLIS.1",
            "portcullis_LOGIN_x",
            "\u{a0}portcullis",
            "portcullis\u{a0}",
            "\u{3000}portcullis",
            "\u{2003}portcullis",
            "\u{85}portcullis",
            "\u{feff}portcullis.2",
            "__Host-\u{a0}portcullis",
            "\u{a0}__Host-portcullis",
            "\x0bportcullis\x0c",
        ] {
            assert!(is_own_cookie_loosely(n.as_bytes(), b"portcullis"), "{n:?}");
        }
        for n in [
            "portcullis.",
            "portcullis.x",
            "portcullisx",
            "x-portcullis",
            "\u{a0}portcullisx",
            "port\u{a0}cullis",
            "app",
        ] {
            assert!(!is_own_cookie_loosely(n.as_bytes(), b"portcullis"), "{n:?}");
        }
        // The request side stays exact: those names are not the session there.
        for n in ["\u{a0}portcullis", "Portcullis", "portcullis\u{a0}"] {
            assert!(!is_own_cookie(n.as_bytes(), b"portcullis"), "{n:?}");
        }
    }

    /// Only what the proxy reads as `trusted` decides for the client-address names; an `_`
    /// spelling goes from anyone.
    #[test]
    fn client_address_names_go_from_untrusted_peers() {
        let ids = identity_set();
        for n in CLIENT_IP_NAMES {
            let b = n.as_bytes();
            assert!(doomed(b, &ids, false), "{n}");
            assert!(!doomed(b, &ids, true), "{n} from a trusted proxy");
            let underscored: Vec<u8> = b
                .iter()
                .map(|c| if *c == b'-' { b'_' } else { *c })
                .collect();
            if b.contains(&b'-') {
                assert!(doomed(&underscored, &ids, true), "{n} with _");
            }
        }
        for n in ALWAYS_STRIPPED {
            assert!(doomed(n.as_bytes(), &ids, true), "{n}");
        }
        for n in [
            "client-ips",
            "x-client",
            "cf-ray",
            "fastly-ssl",
            "proxy-thing",
        ] {
            assert!(!doomed(n.as_bytes(), &ids, false), "{n}");
        }
    }

    /// An upstream's Set-Cookie naming the proxy's cookies is dropped, read as a browser reads
    /// the name (trimmed, nameless cookies by their value); the app's own pass in order.
    #[test]
    fn upstream_set_cookie_for_own_cookies_is_dropped() {
        let mut h = HeaderMap::new();
        for v in [
            "app=1; Path=/",
            "portcullis=forged; Path=/",
            " __Host-portcullis =forged; Secure; Path=/",
            "__HOST-portcullis=x; Secure; Path=/",
            "portcullis.1=x",
            "portcullis_login_abc=x",
            "=portcullis=nameless",
            "portcullis",
            "\u{a0}portcullis=planted; Path=/",
            "\u{3000}portcullis=planted",
            "portcullis\u{a0}=planted",
            "=\u{2003}portcullis=planted",
            "\u{a0}=portcullis=planted",
            "Portcullis=case",
            "other=2",
        ] {
            h.append(
                header::SET_COOKIE,
                HeaderValue::from_bytes(v.as_bytes()).unwrap(),
            );
        }
        h.insert("x-keep", HeaderValue::from_static("1"));
        drop_own_set_cookies(&mut h, "portcullis");
        let left: Vec<&str> = h
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert_eq!(left, ["app=1; Path=/", "other=2"]);
        assert!(h.contains_key("x-keep"));
    }

    #[test]
    fn only_an_upgrade_to_websocket_counts() {
        let up = |vals: &[&'static str]| {
            let mut h = HeaderMap::new();
            for v in vals {
                h.append(header::UPGRADE, HeaderValue::from_static(v));
            }
            upgrades_to_websocket(&h)
        };
        assert!(up(&["websocket"]));
        assert!(up(&["WebSocket"]));
        assert!(!up(&[]));
        assert!(!up(&["h2c"]));
        assert!(!up(&["h2c, websocket"]));
        assert!(!up(&["websocket", "h2c"]));
    }

    #[test]
    fn values_are_sanitized() {
        assert_eq!(sanitize_value("a\r\nX-Evil: 1").unwrap(), "aX-Evil: 1");
        assert_eq!(sanitize_value("plain value").unwrap(), "plain value");
        assert_eq!(sanitize_value("tab\there").unwrap(), "tabhere");
        assert_eq!(sanitize_value("Jürgen\u{85}").unwrap(), "Jürgen");
        assert_eq!(
            sanitize_value(&"x".repeat(10_000)).unwrap().len(),
            MAX_IDENTITY_VALUE
        );
    }

    /// `TE: trailers` (what gRPC clients send) is recognized in a list and any case; other
    /// transfer codings are not it.
    #[test]
    fn te_names_trailers() {
        let te = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(header::TE, HeaderValue::from_static(v));
            te_trailers(&h)
        };
        assert!(te("trailers"));
        assert!(te("gzip, Trailers"));
        assert!(te("deflate;q=0.5, trailers"));
        assert!(!te("gzip"));
        assert!(!te("trailersx"));
        assert!(!te_trailers(&HeaderMap::new()));
    }
}
