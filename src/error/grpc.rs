//! What a gRPC caller (see [`crate::grpc::is_grpc`]) gets when the proxy itself answers: HTTP
//! 200 "trailers-only" — one HEADERS frame ending the stream, with `content-type:
//! application/grpc`, `grpc-status` and a percent-encoded `grpc-message` — because gRPC clients
//! read the status from there and turn any other HTTP status into a vague UNKNOWN or
//! UNAVAILABLE.
//!
//! Codes: 401 → 16 UNAUTHENTICATED, 403 → 7 PERMISSION_DENIED, the provider or the session
//! store down (503) → 14 UNAVAILABLE; an upstream that did not answer in time → 4
//! DEADLINE_EXCEEDED; the rest as gRPC's HTTP-to-gRPC status mapping says (400 → 13 INTERNAL,
//! 404 → 12 UNIMPLEMENTED, 429/502/503/504 → 14 UNAVAILABLE, anything else → 2 UNKNOWN). The
//! message is the one the JSON answer carries; upstream details stay in the log.

use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};

use super::{AuthError, Body, ProxyError, UpstreamError, empty};

/// gRPC status codes the proxy answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Code {
    Unknown = 2,
    DeadlineExceeded = 4,
    PermissionDenied = 7,
    Unimplemented = 12,
    Internal = 13,
    Unavailable = 14,
    Unauthenticated = 16,
}

impl Code {
    /// gRPC's mapping of an HTTP status (`doc/http-grpc-status-mapping.md`).
    pub fn of_http(status: StatusCode) -> Code {
        match status.as_u16() {
            400 => Code::Internal,
            401 => Code::Unauthenticated,
            403 => Code::PermissionDenied,
            404 => Code::Unimplemented,
            429 | 502 | 503 | 504 => Code::Unavailable,
            _ => Code::Unknown,
        }
    }

    fn value(self) -> HeaderValue {
        HeaderValue::from(u16::from(self as u8))
    }
}

/// `grpc-message` (gRPC over HTTP/2: percent-encode everything outside %x20-%x7E, and `%`).
const MESSAGE: &AsciiSet = &CONTROLS.add(b'%');

/// The trailers-only answer: HTTP 200, `grpc-status: code`, `grpc-message: message`.
pub fn trailers_only(code: Code, message: &str) -> Response<Body> {
    let mut r = Response::new(empty());
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    h.insert("grpc-status", code.value());
    let encoded = utf8_percent_encode(message, MESSAGE).to_string();
    if let Ok(v) = HeaderValue::from_str(&encoded) {
        h.insert("grpc-message", v);
    }
    r
}

impl AuthError {
    /// The code a gRPC caller gets for this refusal.
    pub fn grpc_code(&self) -> Code {
        match self {
            AuthError::NoCredentials { .. }
            | AuthError::InvalidToken { .. }
            | AuthError::LoginRequired { .. } => Code::Unauthenticated,
            AuthError::Forbidden { .. } => Code::PermissionDenied,
            AuthError::ProviderUnavailable { .. } | AuthError::SessionStoreUnavailable { .. } => {
                Code::Unavailable
            }
            AuthError::BadRequest { .. } | AuthError::Login(_) => Code::of_http(self.status()),
        }
    }

    /// The refusal as a gRPC caller gets it (see the module doc).
    pub fn into_grpc_response(self) -> Response<Body> {
        match &self {
            AuthError::ProviderUnavailable { detail, .. } => {
                tracing::warn!(error = %detail, "identity provider unavailable: answering gRPC UNAVAILABLE");
            }
            AuthError::SessionStoreUnavailable { detail } => {
                tracing::error!(error = %detail, "session store unavailable: answering gRPC UNAVAILABLE");
            }
            _ => {}
        }
        trailers_only(self.grpc_code(), &self.to_string())
    }
}

impl ProxyError {
    /// The code a gRPC caller gets for this error.
    pub fn grpc_code(&self) -> Code {
        match self {
            ProxyError::Auth(e) => e.grpc_code(),
            ProxyError::Upstream(UpstreamError::Timeout(_)) => Code::DeadlineExceeded,
            other => Code::of_http(other.status()),
        }
    }

    /// The error as a gRPC caller gets it (see the module doc).
    pub fn into_grpc_response(self) -> Response<Body> {
        match self {
            ProxyError::Auth(e) => e.into_grpc_response(),
            other => trailers_only(other.grpc_code(), &other.public_message()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authz::Denied;

    fn status_of(r: &Response<Body>) -> (u16, &str, String) {
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()[header::CONTENT_TYPE], "application/grpc");
        let msg = r.headers()["grpc-message"].to_str().unwrap().to_string();
        (
            r.status().as_u16(),
            r.headers()["grpc-status"].to_str().unwrap(),
            msg,
        )
    }

    /// Each refusal and error: HTTP 200, its gRPC code, a message.
    #[test]
    fn every_error_has_its_code() {
        let cases: Vec<(ProxyError, &str)> = vec![
            (
                AuthError::NoCredentials {
                    scheme: super::super::Scheme::Bearer,
                    clear_cookies: vec![],
                }
                .into(),
                "16",
            ),
            (
                AuthError::InvalidToken {
                    reason: "expired".into(),
                }
                .into(),
                "16",
            ),
            (
                AuthError::Forbidden {
                    scheme: super::super::Scheme::Bearer,
                    unmet: Denied::MissingRoles(vec!["admin".into()]),
                    who: "alice".into(),
                    set_cookie: vec![],
                }
                .into(),
                "7",
            ),
            (
                AuthError::ProviderUnavailable {
                    scheme: super::super::Scheme::Bearer,
                    detail: "10.0.0.1 refused".into(),
                }
                .into(),
                "14",
            ),
            (
                AuthError::SessionStoreUnavailable {
                    detail: "redis down".into(),
                }
                .into(),
                "14",
            ),
            (
                ProxyError::NoRoute {
                    method: "POST".into(),
                    path: "/x.Y/Z".into(),
                },
                "12",
            ),
            (ProxyError::BadRequest("x"), "13"),
            (
                ProxyError::Upstream(UpstreamError::Unreachable("10.1.2.3 refused".into())),
                "14",
            ),
            (
                ProxyError::Upstream(UpstreamError::Timeout(std::time::Duration::from_secs(1))),
                "4",
            ),
            (ProxyError::Misdirected, "2"),
        ];
        for (e, code) in cases {
            let what = format!("{e:?}");
            let r = e.into_grpc_response();
            let (_, got, msg) = status_of(&r);
            assert_eq!(got, code, "{what}");
            assert!(!msg.is_empty(), "{what}");
            assert!(
                !msg.contains("10.1.2.3") && !msg.contains("10.0.0.1"),
                "{msg}"
            );
        }
    }

    /// `grpc-message` is percent-encoded: `%`, controls and non-ASCII; spaces stay.
    #[test]
    fn the_message_is_percent_encoded() {
        let r = trailers_only(Code::Unauthenticated, "100% «nö»\nx");
        let (_, _, msg) = status_of(&r);
        assert_eq!(msg, "100%25 %C2%ABn%C3%B6%C2%BB%0Ax");
    }
}
