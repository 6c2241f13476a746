//! `/.auth/logout`. A GET from anywhere but this origin (`Sec-Fetch-Site` `cross-site` or
//! `same-site`, or an `Origin` that is not this origin) — a link or script elsewhere, a
//! sibling subdomain included, signing the user out — ends nothing and answers a page with a
//! POST button; a POST ends the session only when it comes from this origin (else 403 with
//! the same button). Ending: the session is ended in the store (Redis: deleted; cookie store:
//! its id revoked in this process, so every copy and version of its cookie is refused), every
//! chunk cleared, the refresh token revoked at the provider, and the browser sent on to the
//! provider's end-session endpoint. A session that cannot be ended is said so (503), never
//! pretended away.

use std::time::Duration;

use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request};
use url::Url;

use super::{Answer, param};
use crate::auth::login::{LoginState, client_id, query_pairs};
use crate::auth::redirect;
use crate::error::{AuthError, LoginError};
use crate::provider::Providers;
use crate::request::ConnInfo;
use crate::session::StoreError;

pub(super) async fn logout<B>(
    l: &LoginState,
    providers: &Providers,
    req: &Request<B>,
    conn: ConnInfo,
    host: Option<&str>,
) -> Result<Answer, AuthError> {
    let q = query_pairs(req);
    let rd = param(&q, "rd");
    let method = req.method();
    let headers = req.headers();
    let post = !matches!(*method, Method::GET | Method::HEAD);
    if is_from_elsewhere(l, headers, conn, host) {
        tracing::info!(
            method = %method,
            "logout requested from another site: answered with a confirmation page, nothing ended"
        );
        return Ok(confirmation(l, rd, post));
    }
    let attrs = l.attrs(conn, headers, host);
    // A session that cannot be deleted stays valid for every copy of its cookie: say so
    // (503, the cookie kept for the retry) rather than clear this browser's cookie and
    // pretend the logout happened.
    let unavailable = |e: StoreError| -> AuthError {
        LoginError::LogoutUnavailable {
            detail: e.to_string(),
        }
        .into()
    };
    let loaded = l.sessions.load(headers, attrs).await.map_err(unavailable)?;
    let present = l.sessions.present_chunks(headers, attrs);
    let clears = match &loaded {
        Some(s) => l.sessions.end(s, &present, attrs).await,
        None => l.sessions.delete(None, &present, attrs).await,
    }
    .map_err(unavailable)?;
    let origin = l.origin(conn, headers, host);
    let target = origin
        .as_ref()
        .and_then(|o| rd.and_then(|rd| l.validate_rd(rd, o)))
        .or_else(|| {
            origin
                .as_ref()
                .and_then(|o| l.validate_rd(&l.sessions.cfg.post_logout_redirect, o))
        })
        .unwrap_or_else(|| "/".into());
    let mut location = target.clone();
    if let Some(s) = &loaded {
        let d = &s.data;
        tracing::info!(provider = %d.provider, sub = %d.sub, "signed out");
        if let Some(p) = providers.get(&d.provider)
            && let Ok(md) = p.metadata()
        {
            if let (Some(rt), Some(_)) = (&d.refresh_token, &md.revocation_endpoint) {
                match tokio::time::timeout(Duration::from_secs(3), p.revoke(rt, "refresh_token"))
                    .await
                {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "logout: refresh token revocation failed")
                    }
                    Err(_) => tracing::warn!("logout: refresh token revocation timed out"),
                }
            }
            if let (Some(mut es), Some(o)) = (md.end_session_endpoint.clone(), &origin) {
                {
                    let mut qp = es.query_pairs_mut();
                    if let Some(idt) = &d.id_token {
                        qp.append_pair("id_token_hint", idt);
                    }
                    qp.append_pair("client_id", &client_id(p));
                    qp.append_pair("post_logout_redirect_uri", &redirect::absolute(&target, o));
                }
                location = es.to_string();
            }
        }
    }
    Ok(Answer::Redirect {
        location,
        set_cookie: clears,
    })
}

/// The confirmation page's answer: its form posts the logout (with the same `rd`) from this
/// origin.
fn confirmation(l: &LoginState, rd: Option<&str>, post: bool) -> Answer {
    let mut action = url::form_urlencoded::Serializer::new(String::new());
    if let Some(rd) = rd {
        action.append_pair("rd", rd);
    }
    let query = action.finish();
    let action = if query.is_empty() {
        format!("{}/logout", l.config.server.auth_prefix)
    } else {
        format!("{}/logout?{query}", l.config.server.auth_prefix)
    };
    Answer::ConfirmLogout {
        action,
        refused: post,
    }
}

/// Whether a logout request (GET or POST) comes from anywhere but this origin: a
/// `Sec-Fetch-Site` other than `same-origin` or `none` (typed by the user, a bookmark) —
/// `same-site` too, a sibling subdomain's link — or a foreign `Origin`. Clients that send
/// neither header (not browsers, or browsers too old to send them) are taken at their word:
/// they hold the cookie themselves.
fn is_from_elsewhere(
    l: &LoginState,
    headers: &HeaderMap,
    conn: ConnInfo,
    host: Option<&str>,
) -> bool {
    if let Some(site) = headers.get("sec-fetch-site") {
        let site = site.as_bytes().trim_ascii();
        if !(site.eq_ignore_ascii_case(b"same-origin") || site.eq_ignore_ascii_case(b"none")) {
            return true;
        }
    }
    headers
        .get(header::ORIGIN)
        .is_some_and(|o| !is_this_origin(l, o, conn, host))
}

/// Whether an `Origin` header names this proxy's origin: `server.public_url`'s origin
/// or the origin the request was sent to (`public_url`'s scheme, the request's `Host`) when
/// set; else the request's `Host` (scheme checked only on a TLS connection: behind a
/// TLS-terminating front proxy the browser's `https` origin reaches a plain listener).
/// `null`, malformed and non-http(s) origins are never this origin.
fn is_this_origin(
    l: &LoginState,
    origin: &HeaderValue,
    conn: ConnInfo,
    host: Option<&str>,
) -> bool {
    let Some(u) = origin.to_str().ok().and_then(|o| Url::parse(o.trim()).ok()) else {
        return false;
    };
    if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none() {
        return false;
    }
    if let Some(public) = &l.config.server.public_url {
        // Or the origin the request was sent to (public_url's scheme, this request's Host):
        // with `cookie_domain` the logout button may be on app1 while public_url is auth.
        return u.origin() == public.origin()
            || redirect::origin(None, public.scheme() == "https", host)
                .is_some_and(|here| u.origin() == here.origin());
    }
    if conn.tls && u.scheme() != "https" {
        return false;
    }
    let Some(host) = host else { return false };
    let (name, port) = split_host_port(host);
    let name = name.strip_suffix('.').unwrap_or(name);
    let same_name = u.host_str().is_some_and(|h| h.eq_ignore_ascii_case(name));
    let same_port = match port {
        None => u.port().is_none(),
        Some(p) => u.port_or_known_default() == Some(p),
    };
    same_name && same_port
}

/// `host[:port]` of a `Host` header (`[v6]:port` too).
fn split_host_port(host: &str) -> (&str, Option<u16>) {
    if let Some(rest) = host.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((v6, after)) => (
                &host[..v6.len() + 2],
                after.strip_prefix(':').and_then(|p| p.parse().ok()),
            ),
            None => (host, None),
        };
    }
    match host.rsplit_once(':') {
        Some((h, p)) => match p.parse() {
            Ok(p) => (h, Some(p)),
            Err(_) => (host, None),
        },
        None => (host, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::login::test_state;

    /// Which logout requests come from elsewhere (no `public_url`: the request's Host decides;
    /// scheme only checked on TLS connections).
    #[test]
    fn logout_origin_table() {
        let l = test_state();
        let plain = ConnInfo {
            peer: "127.0.0.1:1".parse().unwrap(),
            tls: false,
        };
        let tls = ConnInfo { tls: true, ..plain };
        let host = Some("app.example:8080");
        let h = |pairs: &[(&'static str, &'static str)]| {
            let mut m = HeaderMap::new();
            for (k, v) in pairs {
                m.insert(*k, HeaderValue::from_static(v));
            }
            m
        };
        type Headers = &'static [(&'static str, &'static str)];
        let cases: &[(Headers, bool)] = &[
            // headers, from elsewhere (GET and POST alike)
            (&[], false),
            (&[("sec-fetch-site", "same-origin")], false),
            (&[("sec-fetch-site", "none")], false),
            (&[("sec-fetch-site", "same-site")], true),
            (&[("sec-fetch-site", "Cross-Site")], true),
            (&[("sec-fetch-site", "something-new")], true),
            (&[("origin", "http://app.example:8080")], false),
            (&[("origin", "https://APP.example:8080")], false),
            (&[("origin", "http://app.example")], true),
            (&[("origin", "http://app.example:8081")], true),
            (&[("origin", "http://evil.example:8080")], true),
            (&[("origin", "null")], true),
            (&[("origin", "app.example:8080")], true),
            (
                &[
                    ("origin", "http://app.example:8080"),
                    ("sec-fetch-site", "cross-site"),
                ],
                true,
            ),
        ];
        for (headers, want) in cases {
            assert_eq!(
                is_from_elsewhere(&l, &h(headers), plain, host),
                *want,
                "{headers:?}"
            );
        }
        // on TLS the scheme counts; default ports match a Host without port
        let o = |v: &'static str| HeaderValue::from_static(v);
        assert!(!is_this_origin(
            &l,
            &o("http://app.example"),
            tls,
            Some("app.example")
        ));
        assert!(is_this_origin(
            &l,
            &o("https://app.example"),
            tls,
            Some("app.example")
        ));
        assert!(is_this_origin(
            &l,
            &o("https://app.example"),
            tls,
            Some("app.example:443")
        ));
        assert!(is_this_origin(
            &l,
            &o("http://[::1]:8080"),
            plain,
            Some("[::1]:8080")
        ));
        assert!(!is_this_origin(&l, &o("http://app.example"), plain, None));
    }
}
