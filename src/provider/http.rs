//! The HTTP client every provider call goes through: pooled (hyper-util), rustls on aws-lc-rs
//! with the provider's optional extra CA, a per-call timeout, a response size cap, and **no
//! redirect following** (a provider that redirects is an error, not a hop: SSRF).

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::tls_client::CaFile;
use crate::trace::{self, TraceContext, export};

/// Largest provider response read (discovery, JWKS, token, userinfo, introspection).
pub const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

#[derive(Clone)]
pub struct ProviderClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

/// A provider response, fully read.
pub struct Reply {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl ProviderClient {
    pub fn new(extra_ca: Option<&CaFile>) -> Result<Self, String> {
        let https =
            crate::tls_client::https_connector(extra_ca, Duration::from_secs(5)).map_err(|e| {
                match extra_ca {
                    Some(ca) => format!("{}: {e}", ca.path.display()),
                    None => e,
                }
            })?;
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(64)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(https);
        Ok(ProviderClient { client })
    }

    /// Sends a request and reads the whole answer within `timeout`. With span export on and a
    /// request being handled on this task, the call is a child span of that request's (and
    /// carries its `traceparent`).
    pub async fn send(
        &self,
        mut req: Request<Full<Bytes>>,
        timeout: Duration,
    ) -> Result<Reply, String> {
        let span = export::enabled()
            .then(trace::current_trace)
            .flatten()
            .map(|parent| {
                let child = TraceContext {
                    span_id: trace::new_span_id(),
                    parent: Some(parent.span_id),
                    ..parent
                };
                req.headers_mut()
                    .insert(&trace::TRACEPARENT, child.header());
                let uri = req.uri();
                let name = format!("{} {}", req.method(), uri.path());
                // Scheme, host and path: a query could carry a credential.
                let url = format!(
                    "{}://{}{}",
                    uri.scheme_str().unwrap_or("http"),
                    uri.authority().map_or("", |a| a.as_str()),
                    uri.path()
                );
                (child, name, url, export::now_ns())
            });
        let result = self.send_timed(req, timeout).await;
        if let Some((child, name, url, start_ns)) = span {
            let mut attrs = vec![("url.full", export::Attr::Str(url))];
            match &result {
                Ok(r) => attrs.push((
                    "http.response.status_code",
                    export::Attr::Int(i64::from(r.status.as_u16())),
                )),
                Err(e) => attrs.push(("error.message", export::Attr::Str(e.clone()))),
            }
            export::record(export::Span {
                name: format!("provider {name}"),
                kind: export::Kind::Client,
                trace_id: child.trace_id,
                span_id: child.span_id,
                parent: child.parent,
                start_ns,
                end_ns: export::now_ns(),
                error: result.as_ref().map_or(true, |r| !r.status.is_success()),
                attrs,
            });
        }
        result
    }

    async fn send_timed(
        &self,
        req: Request<Full<Bytes>>,
        timeout: Duration,
    ) -> Result<Reply, String> {
        let fut = async {
            let resp = self.client.request(req).await.map_err(|e| describe(&e))?;
            let (parts, body) = resp.into_parts();
            let body = Limited::new(body, MAX_RESPONSE_BYTES)
                .collect()
                .await
                .map_err(|e| format!("reading the response: {e}"))?
                .to_bytes();
            Ok::<_, String>(Reply {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        };
        match tokio::time::timeout(timeout, fut).await {
            Err(_) => Err(format!("no answer within {timeout:?}")),
            Ok(r) => r,
        }
    }

    pub async fn get(
        &self,
        url: &str,
        bearer: Option<&str>,
        timeout: Duration,
    ) -> Result<Reply, String> {
        let mut b = Request::builder()
            .method(Method::GET)
            .uri(url)
            .header(header::ACCEPT, "application/json")
            .header(
                header::USER_AGENT,
                concat!("portcullis/", env!("CARGO_PKG_VERSION")),
            );
        if let Some(t) = bearer {
            let v = HeaderValue::from_str(&format!("Bearer {t}"))
                .map_err(|_| "the access token is not a valid header value".to_string())?;
            b = b.header(header::AUTHORIZATION, v);
        }
        let req = b.body(Full::new(Bytes::new())).map_err(|e| e.to_string())?;
        self.send(req, timeout).await
    }

    /// POSTs an `application/x-www-form-urlencoded` body, with an optional `Authorization`.
    pub async fn post_form(
        &self,
        url: &str,
        form: &[(&str, &str)],
        authorization: Option<&str>,
        timeout: Duration,
    ) -> Result<Reply, String> {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let mut b = Request::builder()
            .method(Method::POST)
            .uri(url)
            .header(header::ACCEPT, "application/json")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(
                header::USER_AGENT,
                concat!("portcullis/", env!("CARGO_PKG_VERSION")),
            );
        if let Some(a) = authorization {
            let v = HeaderValue::from_str(a)
                .map_err(|_| "credentials are not a valid header value".to_string())?;
            b = b.header(header::AUTHORIZATION, v);
        }
        let req = b
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        self.send(req, timeout).await
    }
}

/// The error and its causes, `: `-joined (hyper's own text is only "client error (Connect)").
fn describe(e: &hyper_util::client::legacy::Error) -> String {
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    msg
}

/// `max-age` of a `Cache-Control` header, if any.
pub fn max_age(headers: &http::HeaderMap) -> Option<Duration> {
    let v = headers.get(header::CACHE_CONTROL)?.to_str().ok()?;
    v.split(',')
        .find_map(|d| {
            let d = d.trim();
            let (k, val) = d.split_once('=')?;
            k.trim()
                .eq_ignore_ascii_case("max-age")
                .then(|| val.trim().trim_matches('"').parse::<u64>().ok())
                .flatten()
        })
        .map(Duration::from_secs)
}

/// `Authorization: Basic` per RFC 6749 §2.3.1 (id and secret form-urlencoded first).
pub fn basic_auth(client_id: &str, secret: &str) -> String {
    use base64::Engine;
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let raw = format!("{}:{}", enc(client_id), enc(secret));
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_control_max_age() {
        let mut h = http::HeaderMap::new();
        h.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=600, must-revalidate"),
        );
        assert_eq!(max_age(&h), Some(Duration::from_secs(600)));
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        assert_eq!(max_age(&h), None);
    }

    #[test]
    fn basic_auth_encodes_reserved_characters() {
        // "a:b" / "p w" → "a%3Ab:p+w"
        assert_eq!(basic_auth("a:b", "p w"), "Basic YSUzQWI6cCt3");
    }
}
