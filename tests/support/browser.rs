//! A scripted browser for the login tests: a cookie jar per `host:port` (and per `Domain` for
//! cookies that name one), redirects followed by hand, the test provider's login form
//! submitted as a given user. Requests go out through the one test client
//! ([`send_to`](super::send_to)), one connection each; hosts behind a simulated TLS-terminating
//! front proxy ([`Browser::front`]) go to a local address as plain HTTP with
//! `X-Forwarded-Proto: https`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use serde_json::Value;

use super::client::{send, send_to};

/// Cookies per `host:port` (and per `domain=<d>` for `Domain` cookies), in the order they
/// were set.
pub type Jar = HashMap<String, Vec<(String, String)>>;

/// A scripted browser: cookie jar per host:port, redirects followed by hand.
#[derive(Clone)]
pub struct Browser {
    pub jar: Arc<Mutex<Jar>>,
    /// Sent as Accept (browser navigations carry text/html).
    pub accept: &'static str,
    /// host → the address a TLS-terminating front proxy for `https://host/…` forwards to.
    pub fronted: Arc<Mutex<HashMap<String, std::net::SocketAddr>>>,
}

/// A response as the browser saw it (body as text).
pub struct Page {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Page {
    pub fn location(&self) -> String {
        self.headers
            .get(header::LOCATION)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    }
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|_| panic!("not JSON ({}): {}", self.status, self.body))
    }
    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect()
    }
}

impl Default for Browser {
    fn default() -> Self {
        Self::new()
    }
}

impl Browser {
    pub fn new() -> Browser {
        Browser {
            jar: Default::default(),
            accept: "text/html,application/xhtml+xml,*/*;q=0.8",
            fronted: Default::default(),
        }
    }

    /// Puts `https://host/…` behind a simulated TLS-terminating front proxy: requests go to
    /// `addr` over plain HTTP with `Host: host` and `X-Forwarded-Proto: https` (what nginx,
    /// Traefik and Caddy send); the proxy at `addr` must trust 127.0.0.1.
    pub fn front(&self, host: &str, addr: std::net::SocketAddr) {
        self.fronted.lock().unwrap().insert(host.to_string(), addr);
    }

    /// The cookies a request to `authority` carries: its own, then the `Domain` cookies whose
    /// domain is its host or a parent of it.
    pub fn cookies_for(&self, authority: &str) -> Vec<(String, String)> {
        let host = authority.split(':').next().unwrap_or(authority);
        let jar = self.jar.lock().unwrap();
        let mut out = jar.get(authority).cloned().unwrap_or_default();
        for (k, v) in jar.iter() {
            if let Some(d) = k.strip_prefix("domain=")
                && (host == d || host.ends_with(&format!(".{d}")))
            {
                out.extend(v.iter().cloned());
            }
        }
        out
    }

    pub fn cookies(&self, authority: &str) -> Vec<(String, String)> {
        self.jar
            .lock()
            .unwrap()
            .get(authority)
            .cloned()
            .unwrap_or_default()
    }

    pub fn set_cookie_raw(&self, authority: &str, name: &str, value: &str) {
        let mut jar = self.jar.lock().unwrap();
        let e = jar.entry(authority.to_string()).or_default();
        e.retain(|(n, _)| n != name);
        e.push((name.to_string(), value.to_string()));
    }

    pub fn clear_cookies(&self, authority: &str) {
        self.jar.lock().unwrap().remove(authority);
    }

    fn store(&self, authority: &str, headers: &HeaderMap) {
        let mut jar = self.jar.lock().unwrap();
        for v in headers.get_all(header::SET_COOKIE) {
            let s = v.to_str().unwrap();
            let domain = s.split(';').skip(1).find_map(|a| {
                let (k, v) = a.trim().split_once('=')?;
                k.eq_ignore_ascii_case("domain")
                    .then(|| v.trim_start_matches('.').to_ascii_lowercase())
            });
            let key = domain.map_or_else(|| authority.to_string(), |d| format!("domain={d}"));
            let e = jar.entry(key).or_default();
            let first = s.split(';').next().unwrap();
            let (name, value) = first.split_once('=').unwrap();
            let expired = s.to_ascii_lowercase().contains("max-age=0")
                || s.contains("Expires=Thu, 01 Jan 1970");
            e.retain(|(n, _)| n != name);
            if !expired && !value.is_empty() {
                e.push((name.to_string(), value.to_string()));
            }
        }
    }

    pub async fn request(
        &self,
        method: Method,
        url: &str,
        body: Option<(&str, String)>,
        extra: &[(&str, &str)],
    ) -> Page {
        let uri: http::Uri = url.parse().unwrap();
        let authority = uri.authority().unwrap().to_string();
        let mut b = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::ACCEPT, self.accept);
        let cookies = self.cookies_for(&authority);
        if !cookies.is_empty() {
            let v = cookies
                .iter()
                .map(|(n, v)| format!("{n}={v}"))
                .collect::<Vec<_>>()
                .join("; ");
            b = b.header(header::COOKIE, v);
        }
        for (k, v) in extra {
            b = b.header(*k, *v);
        }
        let req = match body {
            Some((ct, s)) => b
                .header(header::CONTENT_TYPE, ct)
                .body(Full::new(Bytes::from(s)).boxed())
                .unwrap(),
            None => b.body(Full::new(Bytes::new()).boxed()).unwrap(),
        };
        let front = (uri_scheme_https(&req))
            .then(|| self.fronted.lock().unwrap().get(uri_host(&req)).copied())
            .flatten();
        let resp = match front {
            Some(addr) => {
                let (mut parts, body) = req.into_parts();
                parts
                    .headers
                    .insert(header::HOST, authority.parse().unwrap());
                parts
                    .headers
                    .insert("x-forwarded-proto", http::HeaderValue::from_static("https"));
                parts.uri = parts
                    .uri
                    .path_and_query()
                    .unwrap()
                    .as_str()
                    .parse()
                    .unwrap();
                send(addr, Request::from_parts(parts, body)).await
            }
            None => send_to(req).await,
        };
        self.store(&authority, &resp.headers);
        Page {
            status: resp.status,
            headers: resp.headers,
            body: String::from_utf8_lossy(&resp.body).into_owned(),
        }
    }

    pub async fn get(&self, url: &str) -> Page {
        self.request(Method::GET, url, None, &[]).await
    }

    /// Follows redirects from `url` through the provider (submitting its login form as `user`)
    /// until a response that is not a redirect, or a redirect leaving both the provider and the
    /// proxy. Returns the final response and every URL visited.
    pub async fn navigate(&self, url: &str, user: &str) -> (Page, Vec<String>) {
        self.navigate_until(url, user, |_| false).await
    }

    /// [`Self::navigate`], stopping (without requesting it) at the first URL `stop` accepts:
    /// the returned page is the redirect to it, and it is the last URL visited.
    pub async fn navigate_until(
        &self,
        url: &str,
        user: &str,
        stop: impl Fn(&url::Url) -> bool,
    ) -> (Page, Vec<String>) {
        let mut visited = vec![url.to_string()];
        let mut current = url.to_string();
        let mut resp = self.get(&current).await;
        for _ in 0..20 {
            if !resp.status.is_redirection() {
                break;
            }
            let loc = resp.location();
            let base = url::Url::parse(&current).unwrap();
            let next = base.join(&loc).unwrap();
            current = next.to_string();
            visited.push(current.clone());
            if stop(&next) {
                break;
            }
            let fronted = next.scheme() == "https"
                && next
                    .host_str()
                    .is_some_and(|h| self.fronted.lock().unwrap().contains_key(h));
            if !fronted && next.host_str().is_none_or(|h| h != "127.0.0.1") {
                break;
            }
            if next.path().starts_with("/interaction/") && !next.path().ends_with("/login") {
                // The provider's login form: post the credentials.
                let _ = self.get(&current).await;
                let form = format!("prompt=login&login={user}&password=x");
                resp = self
                    .request(
                        Method::POST,
                        &current,
                        Some(("application/x-www-form-urlencoded", form)),
                        &[],
                    )
                    .await;
            } else {
                resp = self.get(&current).await;
            }
        }
        (resp, visited)
    }

    /// Full login through the proxy at `base` starting at `path`; returns the final response.
    pub async fn login(&self, base: &str, path: &str, user: &str) -> Page {
        let (r, visited) = self.navigate(&format!("{base}{path}"), user).await;
        assert_eq!(
            r.status,
            StatusCode::OK,
            "login ended at {visited:?}: {} {}",
            r.status,
            r.body
        );
        r
    }
}

fn uri_scheme_https<B>(req: &Request<B>) -> bool {
    req.uri().scheme_str() == Some("https")
}

fn uri_host<B>(req: &Request<B>) -> &str {
    req.uri().host().unwrap_or("")
}
