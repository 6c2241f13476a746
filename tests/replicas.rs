//! The two-replica deployment of `config/docker-compose.replicas.yml`, run without Docker: two
//! `portcullis` binaries with `config/compose/replicas.toml`, sharing a real `redis-server`,
//! behind a real nginx with `config/compose/nginx.conf` (round robin, no stickiness), logging
//! in at the real test provider. The files are the ones the compose file mounts, with only the
//! container addresses replaced by loopback ones (listen ports, the upstream servers, the
//! `/run/secrets` folder); the `${VAR}`s the compose file sets come from an --env-file.
//!
//! A session made through nginx works on each replica, and a logout through nginx ends it on
//! both.

mod support;
use support::*;

use std::net::SocketAddr;
use std::path::Path;

use http::{Method, StatusCode};

/// `text` with `from` replaced by `to`; panics when `from` is not there (the shipped file
/// changed, and the test would silently run something else).
fn replace(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "{from:?} is no longer in the file");
    text.replace(from, to)
}

/// One replica: config/compose/replicas.toml on a loopback port, secrets from `secrets`.
fn start_replica(dir: &Path, name: &str, secrets: &Path, env_file: &Path) -> BinaryProxy {
    let shipped = std::fs::read_to_string(repo().join("config/compose/replicas.toml"))
        .expect("read config/compose/replicas.toml");
    let toml = replace(
        &shipped,
        "listen = \"0.0.0.0:8080\"",
        "listen = \"127.0.0.1:0\"",
    );
    let toml = replace(
        &toml,
        "admin_listen = \"0.0.0.0:9090\"",
        "admin_listen = \"127.0.0.1:0\"",
    );
    let toml = replace(
        &toml,
        "\"/run/secrets/",
        &format!("\"{}/", secrets.display()),
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, toml).expect("write replica config");
    BinaryProxy::start_with(&path, &["--env-file", env_file.to_str().unwrap()])
}

/// Waits (≤ 15 s) until the replica's `/readyz` answers 200 (provider discovery and Redis).
async fn wait_replica_ready(admin: SocketAddr, name: &str) {
    let url = format!("http://{admin}/readyz");
    for _ in 0..150 {
        if http_req("GET", &url, &[], None).await.0 == 200 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("replica {name} never became ready");
}

/// `GET /.auth/me` straight at one replica (bypassing nginx) with the browser's cookies, as
/// nginx would forward it.
async fn me_at(replica: SocketAddr, public: &str, cookie: &str) -> String {
    raw_get(
        replica,
        "/.auth/me",
        public,
        &format!("Cookie: {cookie}\r\nX-Forwarded-For: 127.0.0.1\r\n"),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_made_on_one_replica_works_on_the_other_and_logout_ends_it_on_both() {
    let redis = Redis::start();
    let app = echo_upstream().await;
    let nginx_port = free_port();
    let public = format!("127.0.0.1:{nginx_port}");
    let base = format!("http://{public}");
    let provider = Provider::start(&[nginx_port], &[]);

    // What the compose file provides: secrets as files, the rest as environment.
    let dir = temp_dir();
    let secrets = dir.path().join("secrets");
    std::fs::create_dir(&secrets).unwrap();
    std::fs::write(
        secrets.join("session_secret"),
        "4f0c9e2b7a1d3c5e8f6a9b0c2d4e6f8a1b3c5d7e9f0a2b4c6d8e0f1a3b5c7d9e\n",
    )
    .unwrap();
    std::fs::write(secrets.join("zitadel_client_secret"), "web-secret").unwrap();
    let env_file = dir.path().join(".env");
    std::fs::write(
        &env_file,
        format!(
            "ZITADEL_ISSUER={}\nZITADEL_CLIENT_ID=web\nPUBLIC_URL={base}\nREDIS_URL={}\n\
             TRUSTED_PROXY=127.0.0.1/32\nAPP_URL={}\n",
            provider.issuer,
            redis.url(),
            app.url("")
        ),
    )
    .unwrap();

    let a = start_replica(dir.path(), "portcullis-a", &secrets, &env_file);
    let b = start_replica(dir.path(), "portcullis-b", &secrets, &env_file);
    wait_replica_ready(a.admin_addr(), "portcullis-a").await;
    wait_replica_ready(b.admin_addr(), "portcullis-b").await;

    // nginx with the shipped config, its upstream servers pointed at the two processes.
    let conf = std::fs::read_to_string(repo().join("config/compose/nginx.conf"))
        .expect("read config/compose/nginx.conf");
    let conf = replace(
        &conf,
        "server portcullis-a:8080",
        &format!("server {}", a.http_addr),
    );
    let conf = replace(
        &conf,
        "server portcullis-b:8080",
        &format!("server {}", b.http_addr),
    );
    let nginx = start_nginx_on(nginx_port, &conf);

    // Log in through nginx: round robin sends the login start, the provider's callback and the
    // final page to alternating replicas.
    let browser = Browser::new();
    let page = browser.login(&base, "/", "alice").await;
    assert_eq!(
        page.status,
        StatusCode::OK,
        "{}\n{}",
        page.body,
        nginx.log()
    );
    let cookie = browser
        .cookies(&public)
        .iter()
        .map(|(n, v)| format!("{n}={v}"))
        .collect::<Vec<_>>()
        .join("; ");
    assert!(!cookie.is_empty(), "no session cookie after the login");

    // The session works on each replica (straight at it), and through nginx on both in turn.
    for (name, replica) in [("portcullis-a", &a), ("portcullis-b", &b)] {
        let r = me_at(replica.http_addr, &public, &cookie).await;
        assert_eq!(raw_status(&r), 200, "{name}: {r}");
        assert!(raw_body(&r).contains("alice"), "{name}: {r}");
    }
    for _ in 0..4 {
        let r = browser.get(&format!("{base}/.auth/me")).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert!(r.body.contains("alice"), "{}", r.body);
    }

    // Logout through nginx (one replica serves it) ends the session on both.
    let r = browser
        .request(
            Method::POST,
            &format!("{base}/.auth/logout"),
            Some(("application/x-www-form-urlencoded", String::new())),
            &[("origin", base.as_str()), ("sec-fetch-site", "same-origin")],
        )
        .await;
    assert!(
        r.status == StatusCode::FOUND || r.status == StatusCode::SEE_OTHER,
        "logout: {} {}",
        r.status,
        r.body
    );
    for (name, replica) in [("portcullis-a", &a), ("portcullis-b", &b)] {
        let r = me_at(replica.http_addr, &public, &cookie).await;
        assert_eq!(
            raw_status(&r),
            401,
            "{name} still accepts the logged-out session: {r}"
        );
    }
    let r = browser.get(&format!("{base}/.auth/me")).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
}
