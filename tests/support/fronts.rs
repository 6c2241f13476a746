//! Real front proxies for the forward-auth tests: Debian's `nginx` and `caddy`, started as
//! unprivileged child processes on loopback ports, everything (config, pid, logs, temp files)
//! in a temp dir, killed and reaped on drop, every wait bounded. [`doc_snippet`] reads a
//! marked snippet out of `docs/forward-auth.md`, so the tests run what the docs show.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{ChildGuard, free_port};

/// Waits (≤ 10 s) until `addr` accepts connections; panics with `what` otherwise (and when the
/// child exits first).
pub fn wait_listening(addr: SocketAddr, child: &mut ChildGuard, what: &str) {
    wait_listening_logged(addr, child, what, None);
}

/// [`wait_listening`], quoting the child's log file when it fails.
fn wait_listening_logged(addr: SocketAddr, child: &mut ChildGuard, what: &str, log: Option<&Path>) {
    let log = || {
        log.map(|l| std::fs::read_to_string(l).unwrap_or_default())
            .unwrap_or_default()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.0.try_wait() {
            panic!("{what} exited early: {status}\n{}", log());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what} did not listen on {addr} within 10 s\n{}", log());
}

/// The fenced block of `docs/forward-auth.md` announced by `<!-- snippet: NAME -->` on the
/// line before its opening fence.
pub fn doc_snippet(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/forward-auth.md");
    let doc = std::fs::read_to_string(&path).expect("read docs/forward-auth.md");
    let marker = format!("<!-- snippet: {name} -->\n");
    let at = doc
        .find(&marker)
        .unwrap_or_else(|| panic!("docs/forward-auth.md has no {marker:?}"));
    let rest = &doc[at + marker.len()..];
    assert!(rest.starts_with("```"), "{marker:?} must precede a fence");
    let body = &rest[rest.find('\n').expect("fence line") + 1..];
    let end = body.find("\n```").expect("closing fence");
    body[..=end].to_string()
}

/// nginx on a loopback port with `servers` (whole `server {}` blocks) in its `http {}`; every
/// `listen 80` becomes the loopback port; foreground, one process, everything under a temp
/// prefix; killed on drop.
pub struct Nginx {
    _child: ChildGuard,
    dir: tempfile::TempDir,
    pub addr: SocketAddr,
}

impl Nginx {
    /// nginx's error log so far (for assertion messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }
}

pub fn start_nginx(servers: &str) -> Nginx {
    start_nginx_on(free_port(), servers)
}

/// [`start_nginx`] on a given port (known before start, e.g. registered at a provider).
pub fn start_nginx_on(port: u16, servers: &str) -> Nginx {
    let dir = tempfile::tempdir().expect("temp dir");
    let p = dir.path().display().to_string();
    std::fs::create_dir_all(dir.path().join("tmp")).expect("mkdir tmp");
    let servers: String = servers
        .lines()
        .map(|line| {
            if line.trim_start().starts_with("listen") {
                line.replacen(" 80", &format!(" 127.0.0.1:{port}"), 1)
            } else {
                line.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert!(servers.contains(&format!("127.0.0.1:{port}")), "{servers}");
    let conf = format!(
        r#"daemon off;
master_process off;
worker_processes 1;
pid {p}/nginx.pid;
error_log {p}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {p}/tmp/body;
    proxy_temp_path {p}/tmp/proxy;
    fastcgi_temp_path {p}/tmp/fastcgi;
    uwsgi_temp_path {p}/tmp/uwsgi;
    scgi_temp_path {p}/tmp/scgi;
{servers}
}}
"#
    );
    let conf_path = dir.path().join("nginx.conf");
    std::fs::write(&conf_path, conf).expect("write nginx.conf");
    let child = Command::new("nginx")
        .arg("-p")
        .arg(dir.path())
        .arg("-e")
        .arg(dir.path().join("error.log"))
        .arg("-c")
        .arg(&conf_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn nginx");
    let mut guard = ChildGuard(child);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    wait_listening_logged(
        addr,
        &mut guard,
        "nginx",
        Some(&dir.path().join("error.log")),
    );
    Nginx {
        _child: guard,
        dir,
        addr,
    }
}

/// Caddy (`caddy run`, Caddyfile adapter) on loopback with `sites` (Caddyfile site blocks,
/// addressed `http://127.0.0.1:PORT`, which the caller writes with the port it passes here).
/// The admin API is off, automatic HTTPS is off, and `HOME`/`XDG_*` point into the temp dir,
/// so nothing is written outside it. Killed on drop.
pub struct Caddy {
    _child: ChildGuard,
    log: PathBuf,
    _dir: tempfile::TempDir,
    pub addr: SocketAddr,
}

impl Caddy {
    /// Caddy's output so far (for assertion messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

pub fn start_caddy_on(port: u16, sites: &str) -> Caddy {
    let dir = tempfile::tempdir().expect("temp dir");
    let conf = format!("{{\n    admin off\n    auto_https off\n}}\n\n{sites}\n");
    let conf_path = dir.path().join("Caddyfile");
    std::fs::write(&conf_path, conf).expect("write Caddyfile");
    let log = dir.path().join("caddy.log");
    let out = std::fs::File::create(&log).expect("create caddy.log");
    let err = out.try_clone().expect("dup caddy.log");
    let child = Command::new("caddy")
        .args(["run", "--adapter", "caddyfile", "--config"])
        .arg(&conf_path)
        .env("HOME", dir.path())
        .env("XDG_DATA_HOME", dir.path())
        .env("XDG_CONFIG_HOME", dir.path())
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("spawn caddy");
    let mut guard = ChildGuard(child);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    wait_listening_logged(addr, &mut guard, "caddy", Some(&log));
    Caddy {
        _child: guard,
        log,
        _dir: dir,
        addr,
    }
}
