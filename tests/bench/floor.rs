//! `hyper-floor`: the least a hyper-based reverse proxy does per request, for the benchmark.
//!
//! A hyper 1 HTTP/1.1 server whose every request is forwarded by hyper-util's pooled client to
//! one upstream: no routing, no header work, no auth, no metrics, no logs. The same runtime
//! (single-threaded tokio on one CPU), allocator (mimalloc) and socket options (TCP_NODELAY) as
//! portcullis. Its row in `tests/bench/bench.sh` (target `hyper-floor`) is the ceiling that any
//! proxy built on hyper's server and client reaches on this machine; the gap between it and
//! `portcullis-none` is portcullis's own work, the gap between it and `nginx-proxy` is hyper's.
//!
//!   cargo build --release --example hyper-floor
//!   target/release/examples/hyper-floor 127.0.0.1:8080 127.0.0.1:8081

use std::net::SocketAddr;

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(upstream)) = (args.next(), args.next()) else {
        eprintln!("usage: hyper-floor LISTEN_ADDR UPSTREAM_ADDR");
        std::process::exit(2);
    };
    let listen: SocketAddr = listen.parse().expect("LISTEN_ADDR is host:port");
    let upstream: &'static str = Box::leak(upstream.into_boxed_str());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async move {
        let client: Client<_, Incoming> = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(1024)
            .build_http();
        let listener = TcpListener::bind(listen).await.expect("bind LISTEN_ADDR");
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let client = client.clone();
            tokio::spawn(async move {
                let service = service_fn(move |mut req: Request<Incoming>| {
                    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
                    let uri = format!("http://{upstream}{path}");
                    *req.uri_mut() = uri.parse::<Uri>().expect("upstream URI");
                    client.request(req)
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
}
