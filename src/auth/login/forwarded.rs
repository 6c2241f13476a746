//! Where the browser is, as the login flow needs it: the scheme and host it reached the proxy
//! at (for `redirect_uri`, cookie `Secure`/`Domain`, and where `rd` paths point). Without
//! `server.public_url` they come from the connection and `Host` — or, from a peer in
//! `server.trusted_proxies` (a TLS-terminating front proxy), from its `X-Forwarded-Proto` and
//! `X-Forwarded-Host`. From any other peer those headers are ignored: a client must not choose
//! the host its `redirect_uri` names, nor make the proxy believe a plain-http connection was
//! https. With `public_url` set, it alone names the proxy's origin (forwarding headers unused).
//!
//! A forwarding header counts only as one header with one value (`https`, not `https, http`):
//! a front proxy that appends to a client's copy instead of replacing it passes the client's
//! value on first, and choosing one would let the client choose. Anything else is ignored.

use http::header::{HeaderMap, HeaderName};
use url::Url;

use super::LoginState;
use crate::auth::redirect;
use crate::request::ConnInfo;
use crate::session::CookieAttrs;

static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// The scheme and host the browser used, as far as this request tells.
#[derive(Clone, Copy)]
pub(crate) struct Seen<'a> {
    pub https: bool,
    pub host: Option<&'a str>,
}

impl LoginState {
    /// The scheme and host the browser used for this request (`public_url` aside): the
    /// connection's TLS and `host`, unless a trusted front proxy says otherwise — its
    /// `X-Forwarded-Proto: https` makes a plain connection https (never the reverse: a TLS
    /// connection stays https), its `X-Forwarded-Host` replaces `host`. Only when
    /// `public_url` is unset.
    pub(crate) fn seen<'a>(
        &self,
        conn: ConnInfo,
        headers: &'a HeaderMap,
        host: Option<&'a str>,
    ) -> Seen<'a> {
        let server = &self.config.server;
        let from_front_proxy = server.public_url.is_none()
            && !server.trusted_proxies.is_empty()
            && crate::headers::is_trusted(conn.peer.ip(), &server.trusted_proxies);
        if !from_front_proxy {
            return Seen {
                https: conn.tls,
                host,
            };
        }
        let https = conn.tls
            || one_value(headers, &X_FORWARDED_PROTO)
                .is_some_and(|p| p.eq_ignore_ascii_case("https"));
        let host = one_value(headers, &X_FORWARDED_HOST)
            .filter(|h| crate::request::valid_host(h))
            .or(host);
        Seen { https, host }
    }

    /// The cookie attributes for a request: `Secure` when the browser is on https (TLS, an
    /// `https` `public_url`, or a trusted front proxy's `X-Forwarded-Proto: https`); then also
    /// `Domain` when `session.cookie_domain` is set and the browser is on a host inside it. A
    /// plain-http request keeps host-only cookies (the `__Secure-` name a `Domain` cookie
    /// carries needs `Secure`), and so does a host outside the cookie domain (an IP address,
    /// `localhost`, another name of the server): a browser drops a cookie whose `Domain` the
    /// host is not in, and the login there could never complete.
    pub(crate) fn attrs(
        &self,
        conn: ConnInfo,
        headers: &HeaderMap,
        host: Option<&str>,
    ) -> CookieAttrs<'_> {
        let https_public = self
            .config
            .server
            .public_url
            .as_ref()
            .is_some_and(|u| u.scheme() == "https");
        let seen = self.seen(conn, headers, host);
        let secure = https_public || seen.https;
        let domain = self
            .sessions
            .cfg
            .cookie_domain
            .as_deref()
            .filter(|d| secure && seen.host.is_some_and(|h| in_domain(h, d)));
        CookieAttrs { secure, domain }
    }

    /// This proxy's origin as the browser sees it, where the callback is: `public_url`, else
    /// the scheme and host of [`Self::seen`].
    pub(crate) fn origin(
        &self,
        conn: ConnInfo,
        headers: &HeaderMap,
        host: Option<&str>,
    ) -> Option<Url> {
        if let Some(u) = &self.config.server.public_url {
            return Some(u.clone());
        }
        let seen = self.seen(conn, headers, host);
        redirect::origin(None, seen.https, seen.host)
    }

    /// The origin of the page the browser is on, where an `rd` path points: the
    /// [`Self::origin`], except with `public_url` set — then `public_url`'s scheme with the
    /// request's own host (a login may start on `app1.example.com` while the callback is on
    /// `auth.example.com`).
    pub(crate) fn here(
        &self,
        conn: ConnInfo,
        headers: &HeaderMap,
        host: Option<&str>,
    ) -> Option<Url> {
        match &self.config.server.public_url {
            Some(u) => redirect::origin(None, u.scheme() == "https", host),
            None => self.origin(conn, headers, host),
        }
    }

    /// Checks `rd` against `origin` with the configured allowed hosts and cookie domain.
    pub(crate) fn validate_rd(&self, rd: &str, origin: &Url) -> Option<String> {
        redirect::validate(
            rd,
            origin,
            &self.config.server.allowed_redirect_hosts,
            self.sessions.cfg.cookie_domain.as_deref(),
        )
    }

    /// Where the callback (at `callback`) sends the browser back to for `rd` given on the page
    /// at `here`: a path on `here` becomes an absolute URL when `here` is another origin the
    /// callback may send to (the cookie domain's, an allowed host); otherwise `rd` is checked
    /// against the callback's origin, and `/` replaces what fails.
    pub(crate) fn return_to(&self, rd: &str, here: Option<&Url>, callback: &Url) -> String {
        if let Some(here) = here.filter(|h| h.origin() != callback.origin())
            && let Some(t) = self.validate_rd(rd, here)
            && let Some(t) = self.validate_rd(&redirect::absolute(&t, here), callback)
        {
            return t;
        }
        self.validate_rd(rd, callback).unwrap_or_else(|| "/".into())
    }
}

/// The value of header `name` when the request carries it once, with one value.
fn one_value<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a str> {
    let mut all = headers.get_all(name).iter();
    let v = all.next()?;
    if all.next().is_some() {
        return None;
    }
    let v = v.to_str().ok()?.trim();
    (!v.is_empty() && !v.contains(',')).then_some(v)
}

/// Whether `host` (as sent: any case, maybe a port or a trailing dot) is `domain` or inside it.
fn in_domain(host: &str, domain: &str) -> bool {
    let name = match host.rsplit_once(':') {
        // `[v6]:port` or `[v6]`: an address, never inside a domain.
        _ if host.starts_with('[') => return false,
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    crate::config::in_cookie_domain(&name, domain)
}

#[cfg(test)]
mod tests {
    use super::in_domain;

    #[test]
    fn hosts_in_the_cookie_domain() {
        for h in [
            "example.test",
            "app.example.test",
            "A.Example.Test:8443",
            "x.example.test.",
        ] {
            assert!(in_domain(h, "example.test"), "{h}");
        }
        for h in [
            "other.test",
            "example.test.evil",
            "evilexample.test",
            "127.0.0.1",
            "[::1]:443",
            "localhost",
            "example.test:x",
        ] {
            assert!(!in_domain(h, "example.test"), "{h}");
        }
    }
}
