//! A panic while handling a request becomes a `500` JSON answer (`{"error": "internal", …}`,
//! no panic text to the client; the panic is logged) instead of a dropped connection:
//! tower-http's `CatchPanic` around each request's handler, on every listener.

use std::any::Any;
use std::convert::Infallible;
use std::future::Future;

use http::{Request, Response, StatusCode};
use tower::{Layer, ServiceExt};
use tower_http::catch_panic::CatchPanicLayer;

use crate::error::{Body, BoxError, json_error};

/// The body of an answer that went through `CatchPanic` (which boxes it in its own type).
pub(super) type Answer = tower_http::body::UnsyncBoxBody<bytes::Bytes, BoxError>;

/// Runs `handle(req)` with panics caught (while it is called and while it is polled). The
/// handler goes into a one-shot service, so nothing is cloned or allocated for it; `CatchPanic`
/// itself boxes the response body once.
pub(super) fn catch_panic<B, F, Fut>(
    req: Request<B>,
    handle: F,
) -> impl Future<Output = Result<Response<Answer>, Infallible>>
where
    B: Send + 'static,
    F: FnOnce(Request<B>) -> Fut + Send + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    let mut handle = Some(handle);
    let svc = tower::service_fn(move |req: Request<B>| {
        let handle = handle.take();
        async move {
            Ok::<_, Infallible>(match handle {
                Some(h) => h(req).await,
                // `oneshot` calls the service once: never reached.
                None => internal(),
            })
        }
    });
    CatchPanicLayer::custom(panic_response)
        .layer(svc)
        .oneshot(req)
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
