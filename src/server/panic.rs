//! A panic while handling a request becomes a `500` JSON answer (`{"error": "internal", …}`,
//! no panic text to the client; the panic is logged) instead of a dropped connection: the
//! handler's call and its future run under `catch_unwind`, on every listener.
//!
//! Not tower-http's `CatchPanicLayer`: measured under callgrind it cost ~600 instructions per
//! request on the `auth = "none"` path (a one-shot service per request and a second box around
//! every response body), ~2 % of that path, for what `catch_unwind` does without either.

use std::any::Any;
use std::convert::Infallible;
use std::future::Future;
use std::panic::AssertUnwindSafe;

use futures_util::FutureExt;
use http::{Request, Response, StatusCode};

use crate::error::{Body, json_error};

/// The body of every answer (a caught panic's included).
pub(super) type Answer = Body;

/// Runs `handle(req)` with panics caught, while it is called and while its future is polled.
/// Unwind safety: a panicking request's state is dropped with it; what it shares with other
/// requests (caches, pools) is behind locks that poison or lock-free structures that stay
/// consistent, as with any tokio task that panics.
pub(super) async fn catch_panic<B, F, Fut>(
    req: Request<B>,
    handle: F,
) -> Result<Response<Answer>, Infallible>
where
    F: FnOnce(Request<B>) -> Fut,
    Fut: Future<Output = Response<Body>>,
{
    let fut = match std::panic::catch_unwind(AssertUnwindSafe(|| handle(req))) {
        Ok(fut) => fut,
        Err(panic) => return Ok(panic_response(panic)),
    };
    Ok(match AssertUnwindSafe(fut).catch_unwind().await {
        Ok(resp) => resp,
        Err(panic) => panic_response(panic),
    })
}

fn internal() -> Response<Body> {
    json_error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "the proxy failed to handle this request; its log says why",
    )
}

fn panic_response(err: Box<dyn Any + Send + 'static>) -> Response<Body> {
    let what = err
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| err.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)");
    tracing::error!(panic = what, "a request handler panicked; answered 500");
    internal()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn answer(resp: Response<Answer>) -> (StatusCode, String) {
        let status = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn a_panicking_handler_answers_500_json_without_the_panic_text() {
        let resp = catch_panic(Request::new(()), |_req| async {
            if std::hint::black_box(true) {
                panic!("secret detail");
            }
            internal()
        })
        .await
        .unwrap();
        let (status, body) = answer(resp).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["error"], "internal");
        assert!(!body.contains("secret detail"), "{body}");
    }

    #[tokio::test]
    async fn a_panic_before_the_first_await_is_caught_too() {
        let resp = catch_panic(
            Request::new(()),
            |_req: Request<()>| -> std::future::Ready<Response<Body>> { panic!("while called") },
        )
        .await
        .unwrap();
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[tokio::test]
    async fn a_normal_answer_passes_unchanged() {
        let resp = catch_panic(Request::new(()), |_req| async {
            json_error(StatusCode::IM_A_TEAPOT, "tea", "short and stout")
        })
        .await
        .unwrap();
        let (status, body) = answer(resp).await;
        assert_eq!(status, StatusCode::IM_A_TEAPOT);
        assert!(body.contains("short and stout"));
    }
}
