//! Request ids, W3C trace context, span export and the access log, end to end over real
//! sockets: what the client gets back, what the upstream receives, what the error bodies and
//! the real binary's JSON access log say, and what a small OTLP/HTTP receiver is sent.

mod support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::BodyExt;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use support::*;

const TRUSTED: &str = "trusted_proxies = [\"127.0.0.1/32\"]\n";
const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const TP_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const TP_PARENT: &str = "00f067aa0ba902b7";

fn req(path: &str, headers: &[(&str, &str)]) -> Request<TestBody> {
    let mut b = Request::get(path);
    for (n, v) in headers {
        b = b.header(*n, *v);
    }
    b.body(empty_body()).expect("request")
}

fn header<'a>(r: &'a Resp, name: &str) -> &'a str {
    r.headers
        .get(name)
        .unwrap_or_else(|| panic!("no {name} in the answer: {:?}", r.headers))
        .to_str()
        .expect("ascii")
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
}

/// `00-<trace>-<parent>-<flags>` → (trace, parent).
fn traceparent_parts(tp: &str) -> (&str, &str) {
    let parts: Vec<&str> = tp.split('-').collect();
    assert_eq!(parts.len(), 4, "traceparent {tp}");
    assert_eq!(parts[0], "00", "{tp}");
    assert!(
        is_hex(parts[1], 32) && is_hex(parts[2], 16) && is_hex(parts[3], 2),
        "{tp}"
    );
    (parts[1], parts[2])
}

async fn proxy(server_extra: &str, upstream: &str) -> TestProxy {
    let mut c = server_toml(server_extra);
    c += &route("app", "path = \"/app\"", upstream);
    start_proxy(&c).await
}

/// No request id from the client: one is generated, returned, and the upstream gets the same.
#[tokio::test]
async fn a_request_id_is_generated_returned_and_forwarded() {
    let up = echo_upstream().await;
    let p = proxy("", &up.url("")).await;
    let r = send(p.http(), req("/app/x", &[])).await;
    assert_eq!(r.status, 200);
    let id = header(&r, "x-request-id").to_owned();
    assert!(is_hex(&id, 32), "generated id {id}");
    assert_eq!(r.echoed().header("x-request-id"), Some(id.as_str()));
    let again = send(p.http(), req("/app/x", &[])).await;
    assert_ne!(header(&again, "x-request-id"), id, "ids repeat");
}

/// A trusted proxy's id is kept; an untrusted peer's is replaced; an invalid one (too long,
/// not printable) is replaced even from a trusted proxy.
#[tokio::test]
async fn a_request_id_is_kept_only_from_a_trusted_proxy() {
    let up = echo_upstream().await;
    let trusted = proxy(TRUSTED, &up.url("")).await;
    let untrusted = proxy("", &up.url("")).await;

    let r = send(
        trusted.http(),
        req("/app", &[("x-request-id", "lb-7f3a 42")]),
    )
    .await;
    assert_eq!(header(&r, "x-request-id"), "lb-7f3a 42");
    assert_eq!(r.echoed().header("x-request-id"), Some("lb-7f3a 42"));

    let r = send(
        untrusted.http(),
        req("/app", &[("x-request-id", "chosen-by-client")]),
    )
    .await;
    let id = header(&r, "x-request-id");
    assert!(is_hex(id, 32), "untrusted id kept: {id}");
    assert_eq!(r.echoed().header("x-request-id"), Some(id));
    assert_eq!(r.echoed().header_all("x-request-id").len(), 1);

    let long = "a".repeat(129);
    let r = send(trusted.http(), req("/app", &[("x-request-id", &long)])).await;
    assert!(is_hex(header(&r, "x-request-id"), 32), "129-byte id kept");
    let r = send(
        trusted.http(),
        req("/app", &[("x-request-id", "tab\there")]),
    )
    .await;
    assert!(is_hex(header(&r, "x-request-id"), 32), "id with a tab kept");
    let max = "b".repeat(128);
    let r = send(trusted.http(), req("/app", &[("x-request-id", &max)])).await;
    assert_eq!(header(&r, "x-request-id"), max);
}

/// Every JSON error the proxy makes names the request id the answer carries; so does the
/// forward-auth check's answer, allowed or refused.
#[tokio::test]
async fn error_bodies_and_check_answers_carry_the_request_id() {
    let closed = closed_port().await;
    let mut c = server_toml(TRUSTED);
    c += &route("dead", "path = \"/dead\"", &format!("http://{closed}"));
    let p = start_proxy(&c).await;
    for (path, status, code) in [
        ("/nowhere", 404, "not_found"),
        ("/dead", 502, "bad_gateway"),
        ("/.auth/nothing-here", 404, "not_found"),
    ] {
        let r = send(p.http(), req(path, &[("x-request-id", "err-1")])).await;
        assert_eq!(r.status, status, "{path}: {}", r.text());
        assert_eq!(header(&r, "x-request-id"), "err-1", "{path}");
        let v: serde_json::Value = serde_json::from_slice(&r.body).expect("JSON body");
        assert_eq!(v["error"], code, "{path}: {v}");
        assert_eq!(v["request_id"], "err-1", "{path}: {v}");
    }
    // forward-auth: allowed (public route), and refused (no original URI)
    let ok = send(
        p.http(),
        req(
            "/.auth/check",
            &[
                ("x-request-id", "check-1"),
                ("x-forwarded-method", "GET"),
                ("x-forwarded-uri", "/dead"),
            ],
        ),
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(header(&ok, "x-request-id"), "check-1");
    let refused = send(
        p.http(),
        req(
            "/.auth/check",
            &[("x-request-id", "check-2"), ("x-forwarded-method", "GET")],
        ),
    )
    .await;
    assert_eq!(refused.status, 403, "{}", refused.text());
    assert_eq!(header(&refused, "x-request-id"), "check-2");
    let v: serde_json::Value = serde_json::from_slice(&refused.body).expect("JSON body");
    assert_eq!(v["request_id"], "check-2", "{v}");
}

/// A refusal by the decision (a bearer route, no token), span export off: its body names the
/// request id the response carries.
#[tokio::test]
async fn a_refusal_carries_the_request_id() {
    let op = fake_provider().await;
    let mut c = server_toml("");
    c += &format!("\n[providers.op]\njwks_uri = \"http://{op}/jwks\"\naudiences = [\"api\"]\n");
    c += &route_toml(
        "api",
        "bearer",
        "path = \"/api\"\nprovider = \"op\"",
        "http://127.0.0.1:9",
    );
    let p = start_proxy(&c).await;
    let mut denied = None;
    // The keys load at start; until then a bearer route answers 503.
    for _ in 0..100 {
        let r = send(p.http(), req("/api", &[])).await;
        if r.status != 503 {
            denied = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let denied = denied.expect("the provider never became ready");
    assert_eq!(denied.status, 401, "{}", denied.text());
    let id = header(&denied, "x-request-id");
    assert!(is_hex(id, 32), "{id}");
    let body: serde_json::Value = serde_json::from_slice(&denied.body).expect("JSON body");
    assert_eq!(body["request_id"], id, "{body}");
}

/// traceparent: continued from a trusted proxy (same trace, this proxy's span as the parent),
/// started when absent, invalid or from an untrusted peer (whose tracestate is dropped).
#[tokio::test]
async fn traceparent_is_continued_started_and_forwarded() {
    let up = echo_upstream().await;
    let trusted = proxy(TRUSTED, &up.url("")).await;
    let untrusted = proxy("", &up.url("")).await;
    let with_tp = [("traceparent", TP), ("tracestate", "vendor=abc")];

    let e = send(trusted.http(), req("/app", &with_tp)).await.echoed();
    let (trace, parent) = traceparent_parts(e.header("traceparent").expect("traceparent"));
    assert_eq!(trace, TP_TRACE, "trace not continued");
    assert_ne!(parent, TP_PARENT, "no span of the proxy's own");
    assert_eq!(e.header("tracestate"), Some("vendor=abc"));

    let e = send(untrusted.http(), req("/app", &with_tp)).await.echoed();
    let (trace, _) = traceparent_parts(e.header("traceparent").expect("traceparent"));
    assert_ne!(trace, TP_TRACE, "an untrusted client chose the trace id");
    assert_eq!(e.header("tracestate"), None);

    let e = send(trusted.http(), req("/app", &[])).await.echoed();
    let (started, _) = traceparent_parts(e.header("traceparent").expect("started"));
    let e = send(trusted.http(), req("/app", &[])).await.echoed();
    let (second, _) = traceparent_parts(e.header("traceparent").expect("started"));
    assert_ne!(started, second, "two requests, one trace");

    let bad = "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01";
    let e = send(trusted.http(), req("/app", &[("traceparent", bad)]))
        .await
        .echoed();
    let (trace, _) = traceparent_parts(e.header("traceparent").expect("replaced"));
    assert_ne!(
        trace.to_uppercase(),
        &bad[3..35],
        "invalid traceparent forwarded"
    );
    assert_eq!(e.header_all("traceparent").len(), 1);
}

/// The real binary's JSON access line: every field of the contract, the request id and the
/// trace id the upstream got, latency with at most 3 decimals, no `Some(…)`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_line_has_every_field() {
    let up = echo_upstream().await;
    let dir = temp_dir();
    let path = dir.path().join("portcullis.toml");
    let closed = closed_port().await;
    let mut c = server_toml(TRUSTED);
    c += &route("dead", "path = \"/dead\"", &format!("http://{closed}"));
    c += &route("app", "path = \"/\"", &up.url(""));
    std::fs::write(&path, c).unwrap();
    let bin = BinaryProxy::start_with(&path, &["--log-format", "json"]);
    let r = send(
        bin.http_addr,
        req(
            "/logged?q=1",
            &[("x-request-id", "log-1"), ("traceparent", TP)],
        ),
    )
    .await;
    assert_eq!(r.status, 200);
    let line = bin.wait_log(&["portcullis::access", "log-1"]);
    let v: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    assert_eq!(v["method"], "GET", "{line}");
    assert_eq!(v["path"], "/logged", "{line}");
    assert_eq!(v["route"], "app", "{line}");
    assert_eq!(v["status"], 200, "{line}");
    assert_eq!(v["decision"], "allowed", "{line}");
    assert_eq!(v["reason"], "-", "{line}");
    assert_eq!(v["sub"], "-", "{line}");
    assert_eq!(v["request_id"], "log-1", "{line}");
    assert_eq!(v["trace_id"], TP_TRACE, "{line}");
    assert_eq!(v["peer"], "127.0.0.1", "{line}");
    assert!(v["host"].as_str().is_some_and(|h| !h.is_empty()), "{line}");
    for f in ["latency_ms", "upstream_ms"] {
        let n = v[f]
            .as_f64()
            .unwrap_or_else(|| panic!("{f} not a number: {line}"));
        let text = v[f].to_string();
        let decimals = text.split('.').nth(1).map_or(0, str::len);
        assert!(n >= 0.0 && decimals <= 3, "{f} = {text}: {line}");
    }
    assert!(!line.contains("Some("), "{line}");

    // A refusal: its decision and reason, no upstream time, the generated id.
    let r = send(bin.http_addr, req("/dead", &[])).await;
    assert_eq!(r.status, 502);
    let id = header(&r, "x-request-id").to_owned();
    let line = bin.wait_log(&["portcullis::access", &id]);
    let v: serde_json::Value = serde_json::from_str(&line).expect("JSON");
    assert_eq!(v["route"], "dead", "{line}");
    assert_eq!(v["status"], 502, "{line}");
    assert!(is_hex(v["trace_id"].as_str().unwrap_or(""), 32), "{line}");
}

/// A small OTLP/HTTP receiver: every POST body, parsed as JSON.
async fn otlp_receiver() -> (SocketAddr, Arc<Mutex<Vec<serde_json::Value>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let got = Arc::new(Mutex::new(Vec::new()));
    let sink = got.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let sink = sink.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |r: Request<hyper::body::Incoming>| {
                    let sink = sink.clone();
                    async move {
                        let ok = r.method() == Method::POST && r.uri().path() == "/v1/traces";
                        let body = r.into_body().collect().await?.to_bytes();
                        if ok && let Ok(v) = serde_json::from_slice(&body) {
                            sink.lock().unwrap().push(v);
                        }
                        let status = if ok { 200 } else { 404 };
                        Ok::<_, hyper::Error>(
                            hyper::Response::builder()
                                .status(status)
                                .header("content-type", "application/json")
                                .body(http_body_util::Full::new(Bytes::from_static(b"{}")))
                                .unwrap(),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, got)
}

fn spans(bodies: &[serde_json::Value]) -> Vec<serde_json::Value> {
    bodies
        .iter()
        .flat_map(|b| b["resourceSpans"].as_array().cloned().unwrap_or_default())
        .flat_map(|rs| rs["scopeSpans"].as_array().cloned().unwrap_or_default())
        .flat_map(|ss| ss["spans"].as_array().cloned().unwrap_or_default())
        .collect()
}

fn attr<'a>(span: &'a serde_json::Value, key: &str) -> &'a serde_json::Value {
    span["attributes"]
        .as_array()
        .and_then(|a| a.iter().find(|kv| kv["key"] == key))
        .map_or(&serde_json::Value::Null, |kv| &kv["value"])
}

/// With `[telemetry] otlp_endpoint`, the receiver gets one server span per request, in the
/// trace the trusted proxy sent, with route, decision, status and upstream time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_receiver_gets_a_server_span() {
    let (otlp, got) = otlp_receiver().await;
    let up = echo_upstream().await;
    let dir = temp_dir();
    let path = dir.path().join("portcullis.toml");
    let mut c = server_toml(TRUSTED);
    c += &route("app", "path = \"/\"", &up.url(""));
    c += &format!(
        "\n[telemetry]\notlp_endpoint = \"http://{otlp}/v1/traces\"\nservice_name = \"edge\"\n"
    );
    std::fs::write(&path, c).unwrap();
    let bin = BinaryProxy::start(&path);
    let r = send(
        bin.http_addr,
        req(
            "/traced",
            &[("traceparent", TP), ("x-request-id", "span-1")],
        ),
    )
    .await;
    assert_eq!(r.status, 200);
    let forwarded = r.echoed().header("traceparent").unwrap_or("").to_owned();
    let (_, own_span) = traceparent_parts(&forwarded);

    let mut found = None;
    for _ in 0..100 {
        let bodies = got.lock().unwrap().clone();
        if let Some(s) = spans(&bodies)
            .into_iter()
            .find(|s| attr(s, "portcullis.request_id")["stringValue"] == "span-1")
        {
            found = Some((s, bodies));
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (span, bodies) = found.unwrap_or_else(|| {
        panic!(
            "no span within 5 s; received {:?}\nlogs: {:?}",
            got.lock().unwrap(),
            bin.logs.lock().unwrap()
        )
    });
    assert_eq!(span["traceId"], TP_TRACE, "{span}");
    assert_eq!(span["parentSpanId"], TP_PARENT, "{span}");
    assert_eq!(
        span["spanId"], own_span,
        "the upstream's parent is not the server span"
    );
    assert_eq!(span["kind"], 2, "{span}");
    assert_eq!(attr(&span, "http.route")["stringValue"], "app", "{span}");
    assert_eq!(
        attr(&span, "portcullis.decision")["stringValue"],
        "allowed",
        "{span}"
    );
    assert_eq!(
        attr(&span, "http.response.status_code")["intValue"],
        "200",
        "{span}"
    );
    assert!(
        attr(&span, "portcullis.upstream_ms")["doubleValue"].is_number(),
        "{span}"
    );
    let service = &bodies[0]["resourceSpans"][0]["resource"]["attributes"][0];
    assert_eq!(service["value"]["stringValue"], "edge", "{service}");
}

/// A bearer-only provider written here: an empty key set, and an introspection endpoint that
/// calls every token active for `u1`.
async fn fake_provider() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let svc = service_fn(move |r: Request<hyper::body::Incoming>| async move {
                    let body = if r.uri().path() == "/introspect" {
                        serde_json::json!({
                            "active": true, "sub": "u1", "aud": "api",
                            "token_type": "Bearer", "exp": now() + 300,
                        })
                    } else {
                        serde_json::json!({ "keys": [] })
                    };
                    Ok::<_, hyper::Error>(
                        hyper::Response::builder()
                            .header("content-type", "application/json")
                            .body(http_body_util::Full::new(Bytes::from(body.to_string())))
                            .unwrap(),
                    )
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

/// A provider call made for a request (here: introspection of an opaque token) is a client
/// span, child of that request's server span; the access line names the authenticated `sub`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_calls_are_child_spans() {
    let (otlp, got) = otlp_receiver().await;
    let op = fake_provider().await;
    let up = echo_upstream().await;
    let dir = temp_dir();
    let path = dir.path().join("portcullis.toml");
    let mut c = server_toml("");
    c += &format!(
        r#"
[providers.op]
jwks_uri = "http://{op}/jwks"
audiences = ["api"]
[providers.op.introspection]
endpoint = "http://{op}/introspect"
client_id = "portcullis"
client_secret = "introspection-secret"

[telemetry]
otlp_endpoint = "http://{otlp}/v1/traces"
"#
    );
    c += &route_toml(
        "api",
        "bearer",
        "path = \"/api\"\nprovider = \"op\"",
        &up.url(""),
    );
    std::fs::write(&path, c).unwrap();
    let bin = BinaryProxy::start_with(&path, &["--log-format", "json"]);
    let mut r = None;
    // The keys load at start; until then a bearer route answers 503.
    for _ in 0..100 {
        let a = send(
            bin.http_addr,
            req("/api", &[("authorization", "Bearer opaque-token-1")]),
        )
        .await;
        if a.status != 503 {
            r = Some(a);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = r.expect("the provider never became ready");
    assert_eq!(r.status, 200, "{}", r.text());
    let id = header(&r, "x-request-id").to_owned();
    let line = bin.wait_log(&["portcullis::access", &id]);
    let v: serde_json::Value = serde_json::from_str(&line).expect("JSON");
    assert_eq!(v["sub"], "u1", "{line}");
    assert_eq!(v["decision"], "allowed", "{line}");

    // A refusal by the decision (no token) names the request id in its body too.
    let denied = send(bin.http_addr, req("/api", &[])).await;
    assert_eq!(denied.status, 401, "{}", denied.text());
    let body: serde_json::Value = serde_json::from_slice(&denied.body).expect("JSON body");
    assert_eq!(
        body["request_id"],
        header(&denied, "x-request-id"),
        "{body}"
    );

    let mut pair = None;
    for _ in 0..100 {
        let all = spans(&got.lock().unwrap());
        let server = all
            .iter()
            .find(|s| attr(s, "portcullis.request_id")["stringValue"] == id.as_str());
        if let Some(server) = server
            && let Some(child) = all.iter().find(|s| {
                s["parentSpanId"] == server["spanId"]
                    && s["name"]
                        .as_str()
                        .is_some_and(|n| n.contains("/introspect"))
            })
        {
            pair = Some((server.clone(), child.clone()));
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (server, child) =
        pair.unwrap_or_else(|| panic!("no server + introspection span: {:?}", got.lock().unwrap()));
    assert_eq!(child["traceId"], server["traceId"]);
    assert_eq!(child["kind"], 3, "{child}");
    assert_eq!(
        attr(&child, "http.response.status_code")["intValue"],
        "200",
        "{child}"
    );
    assert!(
        attr(&child, "url.full")["stringValue"]
            .as_str()
            .is_some_and(|u| u.ends_with("/introspect")),
        "{child}"
    );
}
