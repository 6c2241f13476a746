//! Header hygiene on the way in and out:
//! 1. [`strip_identity`]: every header that could carry identity is removed from the incoming
//!    request in every spelling an upstream might fold into the same name (any case, `_` for `-`:
//!    PHP/CGI/WSGI turn `x_forwarded_user` into `HTTP_X_FORWARDED_USER`; CVE-2025-64484).
//! 2. [`remove_hop_by_hop`]: connection-level headers never cross the proxy.
//! 3. [`set_forwarded`]: `X-Forwarded-*` are trusted only from `trusted_proxies`.
//! 4. [`inject`]: identity headers are written only from a [`Permit`].

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use ipnet::IpNet;

use crate::auth::{HeaderValues, Identity};
use crate::authz::Permit;
use crate::config::{AuthorizationMode, HeaderConfig};

/// Hop-by-hop headers (RFC 9110 §7.6.1, plus the non-standard `Keep-Alive` and
/// `Proxy-Connection`, and `Proxy-Authorization`/`Proxy-Authenticate`); `Connection` first.
static ALL_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHORIZATION,
    header::PROXY_AUTHENTICATE,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
];

/// The index of `n` in [`ALL_HOP`] (a match on the name: a length switch, then one compare).
fn hop_index(n: &HeaderName) -> Option<usize> {
    Some(match n.as_str() {
        "connection" => 0,
        "te" => 1,
        "trailer" => 2,
        "transfer-encoding" => 3,
        "upgrade" => 4,
        "proxy-authorization" => 5,
        "proxy-authenticate" => 6,
        "keep-alive" => 7,
        "proxy-connection" => 8,
        _ => return None,
    })
}

/// Longest header value the proxy writes; identity values beyond it are cut.
pub const MAX_IDENTITY_VALUE: usize = 4096;

/// The identity header names, folded (lower case, `_` → `-`), for [`strip_identity`]: a name
/// is checked against the names of its length only (a bit mask says which lengths exist), so
/// the usual request, none of whose headers is one, costs a mask test per header and no hashing.
#[derive(Debug, Clone, Default)]
pub struct IdentityNames {
    /// Bit `n` set: some name has length `n` (names of 128 bytes and more set bit 127).
    lengths: u128,
    names: Vec<Box<[u8]>>,
}

impl IdentityNames {
    /// Adds a folded name (no-op when present).
    pub fn insert(&mut self, folded: &str) {
        if !self.contains(folded) {
            self.lengths |= 1u128 << folded.len().min(127);
            self.names.push(folded.as_bytes().into());
        }
    }

    /// Whether `folded` (already folded) is one of the names.
    pub fn contains(&self, folded: &str) -> bool {
        self.matches(folded.as_bytes(), |b| b)
    }

    /// Whether `name` folded with `fold` is one of the names.
    fn matches(&self, name: &[u8], fold: impl Fn(u8) -> u8) -> bool {
        if self.lengths & (1u128 << name.len().min(127)) == 0 {
            return false;
        }
        self.names
            .iter()
            .any(|n| n.len() == name.len() && n.iter().zip(name).all(|(a, b)| *a == fold(*b)))
    }
}

impl<S: AsRef<str>> FromIterator<S> for IdentityNames {
    fn from_iter<I: IntoIterator<Item = S>>(iter: I) -> Self {
        let mut names = IdentityNames::default();
        for n in iter {
            names.insert(n.as_ref());
        }
        names
    }
}

/// Removes every header whose folded name is an identity header or starts with `x-portcullis-`.
pub fn strip_identity(headers: &mut HeaderMap, identity: &IdentityNames) {
    const OWN_PREFIX: &[u8] = b"x-portcullis-";
    // Header names are already lower case; PHP/CGI/WSGI read `_` as `-`.
    let fold = |b: u8| if b == b'_' { b'-' } else { b };
    let doomed = |name: &HeaderName| {
        let n = name.as_str().as_bytes();
        identity.matches(n, fold)
            || n.len() >= OWN_PREFIX.len() && n.iter().zip(OWN_PREFIX).all(|(b, p)| fold(*b) == *p)
    };
    // HeaderMap cannot remove while iterating; most requests carry none, and then nothing is
    // allocated.
    if !headers.keys().any(doomed) {
        return;
    }
    let names: Vec<HeaderName> = headers.keys().filter(|n| doomed(n)).cloned().collect();
    for n in names {
        headers.remove(&n);
    }
}

/// Removes hop-by-hop headers, including those the `Connection` header names.
/// `keep_upgrade` keeps `Connection: upgrade` + `Upgrade` for a WebSocket handshake.
pub fn remove_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    // One pass over the names (usually a handful) finds the hop-by-hop ones present; only
    // those are removed, instead of a hashed lookup per hop-by-hop name. Most requests carry
    // none, most responses only `Connection: keep-alive`, and then nothing is allocated.
    let mut present = 0u16;
    for n in headers.keys() {
        if let Some(i) = hop_index(n) {
            present |= 1 << i;
        }
    }
    if present == 0 && !keep_upgrade {
        return;
    }
    // The usual response: only `Connection: keep-alive` (or `close`), naming no header.
    if present == 1 && !keep_upgrade {
        let mut values = headers.get_all(header::CONNECTION).iter();
        if let (Some(v), None) = (values.next(), values.next())
            && (v.as_bytes().eq_ignore_ascii_case(b"keep-alive")
                || v.as_bytes().eq_ignore_ascii_case(b"close"))
        {
            headers.remove(header::CONNECTION);
            return;
        }
    }
    // Names the Connection header lists, matched against the names present (no parsing or
    // hashing of each token).
    let mut named: Vec<HeaderName> = Vec::new();
    if present & 1 != 0 {
        let tokens = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim);
        for token in tokens {
            if keep_upgrade && token.eq_ignore_ascii_case("upgrade") {
                continue;
            }
            if let Some(n) = headers
                .keys()
                .find(|n| n.as_str().eq_ignore_ascii_case(token))
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
    pub trusted: bool,
}

/// Sets `X-Forwarded-For/Proto/Host` (and `X-Real-IP`); values from an untrusted peer are
/// replaced, from a trusted proxy they are kept (the peer is appended to `X-Forwarded-For`).
pub fn set_forwarded(headers: &mut HeaderMap, info: &ForwardedInfo<'_>) {
    static XFF: HeaderName = HeaderName::from_static("x-forwarded-for");
    static XFP: HeaderName = HeaderName::from_static("x-forwarded-proto");
    static XFH: HeaderName = HeaderName::from_static("x-forwarded-host");
    static XFPORT: HeaderName = HeaderName::from_static("x-forwarded-port");
    static XRI: HeaderName = HeaderName::from_static("x-real-ip");
    let peer_value = peer_header_value(info.peer);
    if info.trusted {
        let peer = info.peer.to_string();
        let prior: Vec<String> = headers
            .get_all(&XFF)
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_string))
            .collect();
        let value = if prior.is_empty() {
            peer.clone()
        } else {
            format!("{}, {peer}", prior.join(", "))
        };
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(&XFF, v);
        }
        if !headers.contains_key(&XFP) {
            headers.insert(
                &XFP,
                HeaderValue::from_static(if info.proto == "https" {
                    "https"
                } else {
                    "http"
                }),
            );
        }
        if !headers.contains_key(&XFH)
            && let Some(v) = info.host.and_then(|h| HeaderValue::from_str(h).ok())
        {
            headers.insert(&XFH, v);
        }
        if !headers.contains_key(&XRI) {
            headers.insert(&XRI, peer_value);
        }
    } else {
        // Usually neither is there: a scan of the names is cheaper than two hashed removals.
        let (mut forwarded, mut port) = (false, false);
        for n in headers.keys() {
            forwarded |= *n == header::FORWARDED;
            port |= *n == XFPORT;
        }
        if forwarded {
            headers.remove(header::FORWARDED);
        }
        if port {
            headers.remove(&XFPORT);
        }
        headers.insert(&XFF, peer_value.clone());
        headers.insert(&XRI, peer_value);
        headers.insert(
            &XFP,
            HeaderValue::from_static(if info.proto == "https" {
                "https"
            } else {
                "http"
            }),
        );
        match info.host.and_then(|h| HeaderValue::from_str(h).ok()) {
            Some(v) => {
                headers.insert(&XFH, v);
            }
            None => {
                headers.remove(&XFH);
            }
        }
    }
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
    permit: &Permit<'_>,
    cfg: &HeaderConfig,
    assertion: Option<(&crate::auth::assertion::AssertionSigner, &str)>,
) {
    let id = permit.identity();
    let v = id.header_values.get_or_init(|| header_values(id));
    let mut set = |name: &Option<HeaderName>, value: &Option<HeaderValue>| {
        if let (Some(n), Some(v)) = (name, value) {
            headers.insert(n.clone(), v.clone());
        }
    };
    set(&cfg.user, &v.sub);
    set(&cfg.email, &v.email);
    set(&cfg.preferred_username, &v.preferred_username);
    set(&cfg.name, &v.name);
    set(&cfg.roles, &v.roles);
    if cfg.access_token.is_some() {
        let token = v
            .access_token
            .get_or_init(|| (id.access_token.as_deref()).and_then(sanitize_value));
        set(&cfg.access_token, token);
    }
    for (h, path) in &cfg.claims {
        if let Some(text) = crate::authz::claim(&id.claims, path).and_then(claim_as_header_text)
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
    match cfg.authorization {
        AuthorizationMode::Pass => {}
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

#[cfg(test)]
mod tests {
    use super::*;

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
        strip_identity(&mut h, &identity_set());
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key("accept"));
    }

    #[test]
    fn hop_index_matches_the_table() {
        for (i, h) in ALL_HOP.iter().enumerate() {
            assert_eq!(hop_index(h), Some(i), "{h}");
        }
        assert_eq!(hop_index(&header::HOST), None);
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

    #[test]
    fn forwarded_from_untrusted_is_replaced() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("1.2.3.4"));
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        h.insert("x-forwarded-host", HeaderValue::from_static("evil.example"));
        let info = ForwardedInfo {
            peer: "127.0.0.1".parse().unwrap(),
            proto: "http",
            host: Some("app.local"),
            trusted: false,
        };
        set_forwarded(&mut h, &info);
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
        set_forwarded(
            &mut h,
            &ForwardedInfo {
                peer,
                proto: "http",
                host: Some("a"),
                trusted: true,
            },
        );
        assert_eq!(h["x-forwarded-for"], "1.2.3.4, 10.1.1.1");
        assert_eq!(h["x-forwarded-proto"], "https");
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
}
