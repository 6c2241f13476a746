//! A real gRPC server and client (PyPI `grpcio`, in the venv `tests/run.sh` installs) for
//! `tests/grpc.rs`: [`Stubs`] compiles `support/grpc/echo.proto` with `grpcio-tools` into a
//! temp dir, [`GrpcServer`] runs `support/grpc/server.py` (plaintext for `h2c://`, or TLS),
//! [`grpc_client`] runs a scenario of `support/grpc/client.py` and returns its JSON lines.
//! [`h2_call`] sends one raw HTTP/2 request (prior knowledge) for what grpcio will not send;
//! [`h2c_trailer_echo`] is an HTTP/2 upstream that answers with the request's trailers.
//!
//! The interpreter is `$PORTCULLIS_PYTHON`, else the venv of `tests/run.sh`
//! (`~/.cache/portcullis/venv-tests`); without grpcio there the tests fail and say how to
//! install it.

use std::io::BufRead;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::BodyExt;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;

use super::{ChildGuard, STEP, repo};

/// The Python with grpcio and grpcio-tools.
pub fn python() -> PathBuf {
    let py = std::env::var_os("PORTCULLIS_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME").unwrap_or_default();
            PathBuf::from(home).join(".cache/portcullis/venv-tests/bin/python")
        });
    let ok = Command::new(&py)
        .args(["-c", "import grpc, grpc_tools"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "{} has no grpcio/grpcio-tools: run `bash tests/run.sh` (it creates the venv), or \
         `python3 -m venv ~/.cache/portcullis/venv-tests && ~/.cache/portcullis/venv-tests/bin/pip \
         install grpcio grpcio-tools`, or point PORTCULLIS_PYTHON at a python that has them",
        py.display()
    );
    py
}

fn scripts() -> PathBuf {
    repo().join("tests/support/grpc")
}

/// Python stubs of `echo.proto`, compiled at test time.
pub struct Stubs {
    pub python: PathBuf,
    pub dir: tempfile::TempDir,
}

impl Stubs {
    pub fn compile() -> Stubs {
        let python = python();
        let dir = tempfile::tempdir().expect("stubs dir");
        let out = Command::new(&python)
            .args(["-m", "grpc_tools.protoc", "-I"])
            .arg(scripts())
            .arg(format!("--python_out={}", dir.path().display()))
            .arg(format!("--grpc_python_out={}", dir.path().display()))
            .arg("echo.proto")
            .output()
            .expect("run grpc_tools.protoc");
        assert!(
            out.status.success(),
            "protoc failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Stubs { python, dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// `server.py` on a loopback port; killed on drop.
pub struct GrpcServer {
    _child: ChildGuard,
    pub port: u16,
}

impl GrpcServer {
    /// Plaintext (the proxy reaches it as `h2c://`), or TLS with `(cert, key)` PEM files.
    pub fn start(stubs: &Stubs, tls: Option<(&Path, &Path)>) -> GrpcServer {
        let mut cmd = Command::new(&stubs.python);
        cmd.arg(scripts().join("server.py"))
            .arg("--stubs")
            .arg(stubs.path());
        if let Some((cert, key)) = tls {
            cmd.arg("--tls").arg(cert).arg(key);
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn server.py");
        let stdout = child.stdout.take().expect("stdout");
        let guard = ChildGuard(child);
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(p) = line.strip_prefix("READY ") {
                    let _ = tx.send(p.trim().parse::<u16>().ok());
                }
            }
        });
        let port = rx
            .recv_timeout(STEP)
            .ok()
            .flatten()
            .expect("server.py did not report READY <port>");
        GrpcServer {
            _child: guard,
            port,
        }
    }
}

/// How `client.py` reaches the proxy.
pub struct Target<'a> {
    pub addr: String,
    /// TLS: the CA (PEM file) the proxy's certificate is checked against.
    pub ca: Option<&'a Path>,
    pub token: Option<&'a str>,
}

/// `client.py` running `scenario args…`: its JSON lines as they come, and the process.
pub fn grpc_client_spawn(
    stubs: &Stubs,
    target: &Target<'_>,
    scenario: &str,
    args: &[&str],
) -> (ChildGuard, mpsc::Receiver<Value>) {
    let mut cmd = Command::new(&stubs.python);
    cmd.arg(scripts().join("client.py"))
        .arg("--stubs")
        .arg(stubs.path())
        .args(["--target", &target.addr]);
    if let Some(ca) = target.ca {
        cmd.arg("--ca").arg(ca);
    }
    if let Some(t) = target.token {
        cmd.arg(format!("--token={t}"));
    }
    let mut child = cmd
        .arg(scenario)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn client.py");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            match serde_json::from_str(&line) {
                Ok(v) => {
                    let _ = tx.send(v);
                }
                Err(_) => eprintln!("client.py: {line}"),
            }
        }
    });
    (ChildGuard(child), rx)
}

/// `client.py` running `scenario args…` to the end (bounded by `limit`): its JSON lines.
pub async fn grpc_client(
    stubs: &Stubs,
    target: &Target<'_>,
    scenario: &str,
    args: &[&str],
    expect_lines: usize,
) -> Vec<Value> {
    let (guard, rx) = grpc_client_spawn(stubs, target, scenario, args);
    tokio::task::spawn_blocking(move || {
        let _guard = guard;
        let mut lines = Vec::new();
        while lines.len() < expect_lines {
            match rx.recv_timeout(Duration::from_secs(60)) {
                Ok(v) => lines.push(v),
                Err(_) => panic!(
                    "client.py gave {} of {expect_lines} lines: {lines:?}",
                    lines.len()
                ),
            }
        }
        lines
    })
    .await
    .expect("client")
}

/// One HTTP/2 request (prior knowledge, plaintext) to `addr`; the answer's head, and its
/// trailers if any (the body is read to the end).
pub async fn h2_call<B>(
    addr: SocketAddr,
    req: Request<B>,
) -> (Response<()>, Bytes, Option<http::HeaderMap>)
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut tx, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .expect("h2 handshake");
    tokio::spawn(conn);
    let resp = tokio::time::timeout(STEP, tx.send_request(req))
        .await
        .expect("answer in time")
        .expect("answer");
    let (parts, body) = resp.into_parts();
    let collected = tokio::time::timeout(STEP, body.collect())
        .await
        .expect("body in time")
        .expect("body");
    let trailers = collected.trailers().cloned();
    (
        Response::from_parts(parts, ()),
        collected.to_bytes(),
        trailers,
    )
}

/// An HTTP/2 (prior knowledge) upstream that reads the request body to its end and answers
/// `200` with body `got N bytes` and trailers: `x-got-<name>` for each request trailer, and
/// `grpc-status: 0`.
pub async fn h2c_trailer_echo() -> super::Server {
    use hyper::service::service_fn;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let svc = service_fn(|req: Request<hyper::body::Incoming>| async move {
                    let collected = req.into_body().collect().await?;
                    let mut t = http::HeaderMap::new();
                    for (n, v) in collected.trailers().into_iter().flatten() {
                        let name = http::HeaderName::from_bytes(format!("x-got-{n}").as_bytes())
                            .expect("name");
                        t.insert(name, v.clone());
                    }
                    t.insert("grpc-status", http::HeaderValue::from_static("0"));
                    let text = format!("got {} bytes", collected.to_bytes().len());
                    let frames = futures_util::stream::iter([
                        Ok::<_, std::convert::Infallible>(http_body::Frame::data(Bytes::from(
                            text,
                        ))),
                        Ok(http_body::Frame::trailers(t)),
                    ]);
                    Ok::<_, hyper::Error>(Response::new(http_body_util::StreamBody::new(frames)))
                });
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    super::Server::from_task(addr, task)
}
