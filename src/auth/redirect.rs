//! Where a browser may be sent after login or logout (`rd`): a path on this origin, or an
//! absolute http(s) URL whose host is this origin's, in `server.allowed_redirect_hosts`, or
//! `session.cookie_domain` or one of its subdomains (the hosts one sign-in serves).
//! Everything else falls back to `/` — the open-redirect variants browsers and servers disagree
//! on (`//evil`, `/\evil`, `https:evil`, `/%2F%2Fevil`, control characters, `javascript:`,
//! userinfo) are refused before any parsing can read them as another host; a cookie-domain
//! host is compared label-wise on the parsed host (`evil-example.com`,
//! `example.com.evil.com` are not in `example.com`).

use url::Url;

use crate::config::in_cookie_domain;
use crate::routes::HostPattern;

/// The external origin of this request: `server.public_url`, else scheme + `Host`.
pub fn origin(public_url: Option<&Url>, tls: bool, host: Option<&str>) -> Option<Url> {
    if let Some(u) = public_url {
        return Some(u.clone());
    }
    let host = host?;
    Url::parse(&format!("{}://{host}/", if tls { "https" } else { "http" }))
        .ok()
        .filter(|u| u.host_str().is_some())
}

fn suspicious(s: &str) -> bool {
    s.is_empty()
        || s.len() > 2048
        || s.chars()
            .any(|c| c.is_control() || c == '\\' || c.is_whitespace())
}

/// Checks `rd` (already percent-decoded once as a query parameter). Returns the target to
/// redirect to: a same-origin path (as given) or an absolute URL. `cookie_domain`: the
/// `session.cookie_domain`, whose hosts count as allowed ones.
pub fn validate(
    rd: &str,
    origin: &Url,
    allowed: &[HostPattern],
    cookie_domain: Option<&str>,
) -> Option<String> {
    if suspicious(rd) {
        return None;
    }
    // Decode once more: `/%2F%2Fevil.com` or `/%5Cevil.com` must not become `//evil.com` at a
    // later hop that decodes again.
    let decoded = percent_encoding::percent_decode_str(rd)
        .decode_utf8()
        .ok()?;
    if suspicious(&decoded) {
        return None;
    }
    if rd.starts_with('/') {
        if rd.starts_with("//") || decoded.starts_with("//") {
            return None;
        }
        // A path: resolve it against the origin and make sure it stays there.
        let u = origin.join(rd).ok()?;
        return (u.origin() == origin.origin()).then(|| rd.to_string());
    }
    // Absolute URL only, with an explicit "//" authority (rejects `https:evil.com`).
    let lower = rd.to_ascii_lowercase();
    if !(lower.starts_with("https://") || lower.starts_with("http://")) {
        return None;
    }
    let u = Url::parse(rd).ok()?;
    if !u.username().is_empty() || u.password().is_some() {
        return None;
    }
    let host = u.host_str()?;
    if u.origin() == origin.origin() {
        return Some(u.to_string());
    }
    // Allowed hosts and the cookie domain's: any port; https unless this origin is plain http.
    let scheme_ok = u.scheme() == "https" || origin.scheme() == "http";
    if !scheme_ok {
        return None;
    }
    // (a domain name only: `Url` gives IP hosts in their own syntax, never under a domain)
    if let (Some(d), Some(url::Host::Domain(h))) = (cookie_domain, u.host())
        && in_cookie_domain(h, d)
    {
        return Some(u.to_string());
    }
    let host_port = match u.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    };
    allowed
        .iter()
        .any(|p| p.matches(&host_port))
        .then(|| u.to_string())
}

/// An absolute URL for a validated target (for `post_logout_redirect_uri`).
pub fn absolute(target: &str, origin: &Url) -> String {
    if target.starts_with('/') {
        origin
            .join(target)
            .map_or_else(|_| origin.to_string(), |u| u.to_string())
    } else {
        target.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(rd: &str) -> Option<String> {
        let origin = Url::parse("https://app.example.com/").unwrap();
        let allowed = vec![
            HostPattern::parse("*.trusted.com").unwrap(),
            HostPattern::parse("docs.example.org").unwrap(),
        ];
        validate(rd, &origin, &allowed, None)
    }

    fn check_domain(rd: &str) -> Option<String> {
        let origin = Url::parse("https://app1.example.com/").unwrap();
        validate(rd, &origin, &[], Some("example.com"))
    }

    /// With `cookie_domain = "example.com"`: the domain and its subdomains (https, any port)
    /// are accepted; look-alikes, userinfo and backslash tricks, downgrades and IPs are not.
    #[test]
    fn cookie_domain_redirect_table() {
        let accepted = [
            "/x",
            "https://app1.example.com/x",
            "https://app2.example.com/back?a=1",
            "https://example.com/",
            "https://EXAMPLE.com/",
            "https://a.b.example.com:8443/p",
        ];
        for rd in accepted {
            assert!(check_domain(rd).is_some(), "{rd:?} must be accepted");
        }
        let refused = [
            "https://evil-example.com/",
            "https://notexample.com/",
            "https://example.com.evil.com/",
            "https://app.example.com.evil.com/",
            "https://app.example.com@evil.com/",
            "https://evil.com@app.example.com/",
            "https://user:pw@app2.example.com/",
            "https://evil.com\\@app.example.com/",
            "https://evil.com\\.example.com/",
            "https://evil.com%2F.example.com/",
            "https://evil.com%5C.example.com/",
            "https://evil.com#.example.com",
            "https://evil.com?.example.com",
            "https://evil.com/.example.com",
            "//app2.example.com/",
            "/\\app2.example.com",
            "https:app2.example.com",
            "https:/app2.example.com",
            "http://app2.example.com/",
            "https://app2.example.com./",
            "https://com/",
            "https://127.0.0.1/",
            "https://xn--exmple-cua.com/",
            "https://ex\u{0430}mple.com/",
            "javascript://app2.example.com/%0aalert(1)",
        ];
        for rd in refused {
            assert_eq!(check_domain(rd), None, "{rd:?} must be refused");
        }
        // without cookie_domain a sibling is refused
        assert_eq!(check("https://app2.example.com/"), None);
    }

    /// Each refused variant falls back to `/`; each accepted one is returned unchanged.
    #[test]
    fn redirect_table() {
        let refused = [
            "",
            "//evil.com",
            "///evil.com",
            "/\\evil.com",
            "\\\\evil.com",
            "https:evil.com",
            "http:evil.com",
            "/%2F%2Fevil.com",
            "/%2f%2fevil.com",
            "/%5Cevil.com",
            "%2F%2Fevil.com",
            "javascript:alert(1)",
            "JavaScript:alert(1)",
            "data:text/html,<script>alert(1)</script>",
            "vbscript:msgbox",
            "http://evil.com",
            "https://evil.com/",
            "https://app.example.com.evil.com/",
            "https://app.example.com@evil.com/",
            "https://user:pw@app.example.com/",
            "/path\r\nSet-Cookie: x=y",
            "/path%0d%0aSet-Cookie:x",
            "/a\tb",
            "evil.com",
            "ftp://app.example.com/",
            "http://trusted.com/",   // apex not covered by *.trusted.com
            "http://a.trusted.com/", // allowed host but downgraded to http
            "/ /evil.com",
        ];
        for rd in refused {
            assert_eq!(check(rd), None, "{rd:?} must be refused");
        }
        let accepted = [
            "/",
            "/dashboard",
            "/a/b?x=1&y=%2F#frag",
            "/search?q=//evil.com",
            "https://app.example.com/x",
            "https://a.trusted.com/back",
            "https://docs.example.org:8443/p",
        ];
        for rd in accepted {
            assert!(check(rd).is_some(), "{rd:?} must be accepted");
        }
        assert_eq!(check("/dashboard?x=1").as_deref(), Some("/dashboard?x=1"));
    }

    #[test]
    fn origin_from_host_or_public_url() {
        assert_eq!(
            origin(None, false, Some("127.0.0.1:8080"))
                .unwrap()
                .as_str(),
            "http://127.0.0.1:8080/"
        );
        assert_eq!(
            origin(None, true, Some("a.example")).unwrap().as_str(),
            "https://a.example/"
        );
        let p = Url::parse("https://pub.example/").unwrap();
        assert_eq!(
            origin(Some(&p), false, Some("x")).unwrap().as_str(),
            "https://pub.example/"
        );
        assert_eq!(absolute("/bye", &p), "https://pub.example/bye");
    }
}
