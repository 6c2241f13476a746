//! The one place errors become HTTP responses. Every variant maps to exactly one status;
//! bodies are short JSON (or a small HTML page for browsers where a person reads it) and never
//! carry tokens, identity data of another user or a stack trace. A gRPC caller gets the same
//! error as gRPC status in an HTTP 200 trailers-only answer ([`grpc`]).
//! Each carries the request id
//! (`"request_id"` in JSON, small print on a page) of the request it answers, read from the
//! request's task ([`crate::trace::current_request_id`]) so no renderer needs it passed in.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, combinators::UnsyncBoxBody};

use crate::routes::PathError;

mod auth;
mod grpc;
#[cfg(test)]
pub(crate) use auth::quotable;
pub use auth::{AuthError, DecisionKind, LoginError, Scheme, sign_in, wants_html};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// Body type of every response the proxy sends (upstream bodies are streamed through it).
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

pub fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

pub fn empty() -> Body {
    full(Bytes::new())
}

/// Why the upstream could not answer.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("upstream unreachable: {0}")]
    Unreachable(String),
    #[error("upstream did not answer within {0:?}")]
    Timeout(std::time::Duration),
    #[error("invalid upstream request: {0}")]
    BadRequest(String),
    /// The upstream answered something the proxy must not pass on (a 101 to a protocol other
    /// than the WebSocket the client asked for).
    #[error("invalid upstream answer: {0}")]
    BadResponse(String),
    /// The client's request body broke off or was malformed while it was being forwarded:
    /// the client's fault, not the upstream's (`400`, no upstream error counted).
    #[error("the client's request body could not be read: {0}")]
    ClientBody(String),
}

/// Errors of the request pipeline before the upstream answers.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("{0}")]
    BadPath(#[from] PathError),
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    #[error(
        "the Host does not match the TLS server name (SNI) this connection was opened for: \
         send requests for this host on a new connection"
    )]
    Misdirected,
    #[error("no route matches {method} {path}")]
    NoRoute { method: String, path: String },
    /// Under the auth prefix, a path that names no endpoint (or one that is not configured).
    #[error("{0}")]
    NoEndpoint(std::borrow::Cow<'static, str>),
    /// A forward-auth check whose original request is unknown or not believed: judging the
    /// check request itself would answer for another route.
    #[error("{0}")]
    CheckRefused(&'static str),
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// Authentication or authorization refused the request (rendered by [`AuthError`], which
    /// needs to know whether a person reads the answer: see [`ProxyError::into_response_for`]).
    #[error(transparent)]
    Auth(#[from] AuthError),
}

impl ProxyError {
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::BadPath(_) | ProxyError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ProxyError::Misdirected => StatusCode::MISDIRECTED_REQUEST,
            ProxyError::NoRoute { .. } | ProxyError::NoEndpoint(_) => StatusCode::NOT_FOUND,
            ProxyError::CheckRefused(_) => StatusCode::FORBIDDEN,
            ProxyError::Upstream(UpstreamError::Unreachable(_)) => StatusCode::BAD_GATEWAY,
            ProxyError::Upstream(UpstreamError::Timeout(_)) => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::Upstream(UpstreamError::BadRequest(_)) => StatusCode::BAD_GATEWAY,
            ProxyError::Upstream(UpstreamError::BadResponse(_)) => StatusCode::BAD_GATEWAY,
            ProxyError::Upstream(UpstreamError::ClientBody(_)) => StatusCode::BAD_REQUEST,
            ProxyError::Auth(e) => e.status(),
        }
    }

    /// The short code of the refusal: the JSON body's `error` (for the pipeline's own
    /// errors) and the access log's `reason`.
    pub fn code(&self) -> &'static str {
        match self {
            ProxyError::BadPath(_) => "invalid_path",
            ProxyError::BadRequest(_) => "bad_request",
            ProxyError::Misdirected => "misdirected_request",
            ProxyError::NoRoute { .. } | ProxyError::NoEndpoint(_) => "not_found",
            ProxyError::CheckRefused(_) => "forbidden",
            ProxyError::Upstream(UpstreamError::Unreachable(_)) => "bad_gateway",
            ProxyError::Upstream(UpstreamError::Timeout(_)) => "gateway_timeout",
            ProxyError::Upstream(UpstreamError::BadRequest(_)) => "bad_gateway",
            ProxyError::Upstream(UpstreamError::BadResponse(_)) => "bad_gateway",
            ProxyError::Upstream(UpstreamError::ClientBody(_)) => "bad_request",
            ProxyError::Auth(e) => e.reason(),
        }
    }

    /// The message a client sees. Upstream details (addresses, OS errors) stay in the log.
    fn public_message(&self) -> String {
        match self {
            ProxyError::Upstream(UpstreamError::Unreachable(_)) => {
                "the upstream service is unreachable".into()
            }
            ProxyError::Upstream(UpstreamError::Timeout(_)) => {
                "the upstream service did not answer in time".into()
            }
            ProxyError::Upstream(UpstreamError::BadRequest(_)) => {
                "the request could not be forwarded".into()
            }
            ProxyError::Upstream(UpstreamError::BadResponse(_)) => {
                "the upstream service answered with an invalid response".into()
            }
            ProxyError::Upstream(UpstreamError::ClientBody(_)) => {
                "the request body was malformed or ended early".into()
            }
            other => other.to_string(),
        }
    }

    /// The answer for a caller that is a program (JSON bodies).
    pub fn into_response(self) -> Response<Body> {
        self.into_response_for(false, "")
    }

    /// The answer. `html`: a person reads it (`Accept` names `text/html`); `auth_prefix`:
    /// where the proxy's endpoints live (links on the pages of authentication errors).
    pub fn into_response_for(self, html: bool, auth_prefix: &str) -> Response<Body> {
        match self {
            ProxyError::Auth(e) => e.into_response(html, auth_prefix),
            other => json_error(other.status(), other.code(), &other.public_message()),
        }
    }
}

/// `{"error": code, "message": message, "request_id": …}` with the given status (no
/// `request_id` outside a request, e.g. on the admin listener).
pub fn json_error(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    let body = match crate::trace::current_request_id() {
        Some(id) => {
            serde_json::json!({ "error": code, "message": message, "request_id": id })
        }
        None => serde_json::json!({ "error": code, "message": message }),
    }
    .to_string();
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// An answer without a body that no cache keeps (forward-auth's 200; its identity headers
/// are added by the caller).
pub fn no_store(status: StatusCode) -> Response<Body> {
    let mut r = Response::new(empty());
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// A plain answer of the admin listener (`text/plain`, the metrics exposition format).
pub fn text(status: StatusCode, body: String, content_type: &'static str) -> Response<Body> {
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// A redirect without a body to `location` (left out when it is no valid header value).
pub fn redirect(status: StatusCode, location: &str) -> Response<Body> {
    let mut r = Response::new(empty());
    *r.status_mut() = status;
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

/// Escapes text for inclusion in HTML.
pub fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A small self-contained HTML page (no external resources), with the request id in small
/// print (what a person quotes to support).
pub fn html_page(status: StatusCode, title: &str, body_html: &str) -> Response<Body> {
    let footer = crate::trace::current_request_id()
        .map(|id| {
            format!(
                "<p style=\"font-size:.75rem;color:#777\">Request id: <code>{}</code></p>",
                html_escape(&id)
            )
        })
        .unwrap_or_default();
    let page = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
<title>{t}</title><style>body{{font-family:system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem;color:#222}}\
h1{{font-size:1.4rem}}code{{background:#f3f3f3;padding:.1rem .3rem;border-radius:3px}}a{{color:#0b5cad}}</style></head>\
<body><h1>{t}</h1>{body_html}{footer}</body></html>",
        t = html_escape(title)
    );
    let mut resp = Response::new(full(page));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        "content-security-policy",
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_variant_has_its_status() {
        let cases = [
            (ProxyError::BadPath(PathError::InvalidPercentEncoding), 400),
            (ProxyError::BadRequest("x"), 400),
            (ProxyError::Misdirected, 421),
            (
                ProxyError::NoRoute {
                    method: "GET".into(),
                    path: "/".into(),
                },
                404,
            ),
            (ProxyError::NoEndpoint("no such endpoint".into()), 404),
            (ProxyError::CheckRefused("x"), 403),
            (
                ProxyError::Upstream(UpstreamError::Unreachable("refused".into())),
                502,
            ),
            (
                ProxyError::Upstream(UpstreamError::Timeout(std::time::Duration::from_secs(1))),
                504,
            ),
            (
                ProxyError::Upstream(UpstreamError::BadRequest("x".into())),
                502,
            ),
            (
                ProxyError::Upstream(UpstreamError::BadResponse("101 to h2c".into())),
                502,
            ),
            (
                ProxyError::Upstream(UpstreamError::ClientBody("bad chunk".into())),
                400,
            ),
        ];
        for (e, status) in cases {
            assert_eq!(e.into_response().status().as_u16(), status);
        }
    }

    #[test]
    fn upstream_details_stay_out_of_the_body() {
        let e = ProxyError::Upstream(UpstreamError::Unreachable(
            "10.1.2.3:80 connection refused".into(),
        ));
        assert!(!e.public_message().contains("10.1.2.3"));
    }

    #[test]
    fn html_escape_escapes() {
        assert_eq!(
            html_escape("<a href=\"x\">'&"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;"
        );
    }
}
