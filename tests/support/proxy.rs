//! The proxy under test: in-process ([`start_proxy`], [`start_proxy_in`], [`start_proxy_ready`],
//! its config written into a temp dir so relative file names in the TOML resolve there), config
//! builders ([`server_toml`], [`route_toml`], [`tls_server_toml`], [`write_tls_files`]), and the
//! real `portcullis` binary: [`BinaryProxy`] (a child process, killed on drop) and [`cli`] /
//! [`cli_env`] (runs it to completion: status, stdout, stderr).

use std::io::Read as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use portcullis::server::Running;

use super::client::http_req;
use super::tls::{Issued, TestCa};
use super::{STEP, temp_dir};

/// A proxy started in-process; derefs to [`Running`] (`http_addr`, `https_addr`, `admin_addr`,
/// `proxy`). `dir` holds `portcullis.toml` and any files the test wrote next to it.
pub struct TestProxy {
    pub running: Running,
    pub dir: tempfile::TempDir,
}

impl std::ops::Deref for TestProxy {
    type Target = Running;
    fn deref(&self) -> &Running {
        &self.running
    }
}

impl TestProxy {
    pub fn http(&self) -> SocketAddr {
        self.running.http_addr.expect("no http listener")
    }
    pub fn https(&self) -> SocketAddr {
        self.running.https_addr.expect("no https listener")
    }
    pub fn admin(&self) -> SocketAddr {
        self.running.admin_addr.expect("no admin listener")
    }
    /// Graceful shutdown; the temp dir is removed afterwards.
    pub async fn shutdown(self) {
        tokio::time::timeout(STEP, self.running.shutdown())
            .await
            .expect("shutdown took too long");
    }
}

/// Loads `toml` (as if from `dir/portcullis.toml`) and starts the proxy. Panics with the
/// config errors when it does not load.
pub async fn start_proxy_in(dir: tempfile::TempDir, toml: &str) -> TestProxy {
    let path = dir.path().join("portcullis.toml");
    std::fs::write(&path, toml).expect("write config");
    let cfg = match portcullis::config::load_str(&path, toml, Default::default()) {
        Ok(c) => c,
        Err(e) => panic!("config does not load:\n{e}\n--- config ---\n{toml}"),
    };
    let running = portcullis::server::start(cfg).await.expect("proxy starts");
    TestProxy { running, dir }
}

/// [`start_proxy_in`] with a fresh temp dir.
pub async fn start_proxy(toml: &str) -> TestProxy {
    start_proxy_in(temp_dir(), toml).await
}

/// [`start_proxy`], then waits (at most 5 s) until every provider's discovery is loaded (a
/// login needs it).
pub async fn start_proxy_ready(toml: &str) -> TestProxy {
    let proxy = start_proxy(toml).await;
    for _ in 0..100 {
        let current = proxy.proxy();
        let ready = current
            .config
            .providers
            .keys()
            .all(|n| current.health.is_ready(&format!("provider:{n}")));
        if ready {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    proxy
}

/// Waits (at most 10 s) until the admin listener's `/readyz` answers 200; panics otherwise.
pub async fn wait_ready(p: &TestProxy) {
    let url = format!("http://{}/readyz", p.admin());
    for _ in 0..100 {
        if http_req("GET", &url, &[], None).await.0 == 200 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("proxy never became ready");
}

/// `[server]` listening on `127.0.0.1:0`, followed by `rest` (more `[server]` keys, then any
/// sections).
pub fn server_toml(rest: &str) -> String {
    format!("[server]\nlisten = \"127.0.0.1:0\"\n{rest}")
}

/// One `[[route]]` with `name`, `auth` and `upstream`; `extra` holds more keys (`path = "/x"`,
/// `host = …`, `methods = […]`, …), one per line. Sub-tables (`[route.headers]`) cannot go in
/// `extra`: append them after this string.
pub fn route_toml(name: &str, auth: &str, extra: &str, upstream: &str) -> String {
    format!(
        "\n[[route]]\nname = \"{name}\"\n{extra}\nupstream = \"{upstream}\"\nauth = \"{auth}\"\n"
    )
}

/// An `auth = "none"` route.
pub fn route(name: &str, extra: &str, upstream: &str) -> String {
    route_toml(name, "none", extra, upstream)
}

/// Writes `text` as `dir/name`; the file's path.
pub fn write_file(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let p = dir.path().join(name);
    std::fs::write(&p, text).unwrap();
    p.to_string_lossy().into_owned()
}

/// Writes a fresh certificate for `localhost` from `ca` as `tls.crt`/`tls.key` into `dir`
/// (where `[server.tls] cert = "tls.crt"`, `key = "tls.key"` find them) and returns it.
pub fn write_tls_files(dir: &Path, ca: &TestCa, common_name: &str) -> Issued {
    let leaf = ca.issue(common_name);
    std::fs::write(dir.join("tls.crt"), &leaf.cert_pem).expect("write tls.crt");
    std::fs::write(dir.join("tls.key"), &leaf.key_pem).expect("write tls.key");
    leaf
}

/// `[server]` with `server_extra`, a `[server.tls]` on `127.0.0.1:0` using `tls.crt`/`tls.key`
/// with `tls_extra`, then `rest` (routes). Pair with [`write_tls_files`].
pub fn tls_server_toml(server_extra: &str, tls_extra: &str, rest: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n{server_extra}\n[server.tls]\nlisten = \"127.0.0.1:0\"\ncert = \"tls.crt\"\nkey = \"tls.key\"\n{tls_extra}\n{rest}"
    )
}

// ---------------------------------------------------------------------------------------------
// The binary
// ---------------------------------------------------------------------------------------------

/// Path of the built `portcullis` binary.
pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_portcullis"))
}

/// Output of a CLI run.
pub struct CliOutput {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `portcullis ARGS` to completion (killed after 30 s).
pub fn cli(args: &[&str]) -> CliOutput {
    cli_env(args, &[], &[])
}

/// [`cli`] with `env` set and `unset` removed.
pub fn cli_env(args: &[&str], env: &[(&str, &str)], unset: &[&str]) -> CliOutput {
    let mut cmd = Command::new(binary());
    cmd.args(args).env_remove("PORTCULLIS_CONFIG");
    for k in unset {
        cmd.env_remove(k);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn portcullis");
    // Both pipes are drained while the child runs, so a long output cannot block it.
    let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut out = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut out);
            }
            out
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let deadline = std::time::Instant::now() + STEP;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("portcullis {args:?} did not exit within {STEP:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let (stdout, stderr) = (
        stdout.join().unwrap_or_default(),
        stderr.join().unwrap_or_default(),
    );
    CliOutput {
        code: status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

/// The real binary serving a config; killed (and reaped) on drop.
pub struct BinaryProxy {
    child: Child,
    pub http_addr: SocketAddr,
    pub pid: u32,
    /// Every stderr (log) line so far.
    pub logs: Arc<std::sync::Mutex<Vec<String>>>,
}

impl BinaryProxy {
    /// Starts `portcullis run --config PATH` and waits (≤ 30 s) for its http listener, whose
    /// address is read from the startup log line (so `listen = "127.0.0.1:0"` works).
    pub fn start(config: &Path) -> Self {
        Self::start_with(config, &[])
    }

    /// [`BinaryProxy::start`] with extra arguments after `run --config PATH`
    /// (e.g. `["--log-format", "json"]`).
    pub fn start_with(config: &Path, extra_args: &[&str]) -> Self {
        let mut cmd = Command::new(binary());
        cmd.args(["run", "--config"]).arg(config).args(extra_args);
        Self::spawn(cmd)
    }

    /// [`BinaryProxy::start_with`] with the open-file limit (soft and hard `RLIMIT_NOFILE`) set
    /// to `nofile` (`sh -c 'ulimit -n N; exec portcullis …'`: same pid as the proxy).
    pub fn start_with_fd_limit(config: &Path, nofile: u64, extra_args: &[&str]) -> Self {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(format!("ulimit -n {nofile} && exec \"$0\" \"$@\""))
            .arg(binary())
            .args(["run", "--config"])
            .arg(config)
            .args(extra_args);
        Self::spawn(cmd)
    }

    /// The admin listener's address, from its startup log line.
    pub fn admin_addr(&self) -> SocketAddr {
        let line = self.wait_log(&["listening (admin)"]);
        line.split("Some(")
            .nth(1)
            .and_then(|s| s.split(')').next())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no address in log line: {line}"))
    }

    fn spawn(mut cmd: Command) -> Self {
        use std::io::BufRead;
        let mut child = cmd
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn portcullis");
        let pid = child.id();
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        let logs = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = logs.clone();
        // Keeps draining stderr for the child's lifetime so it never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if line.contains("listening (http)")
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(line.clone());
                }
                if let Ok(mut l) = sink.lock() {
                    l.push(line);
                }
            }
        });
        let mut guard = BinaryProxy {
            child,
            http_addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            pid,
            logs,
        };
        let line = rx
            .recv_timeout(STEP)
            .unwrap_or_else(|_| panic!("portcullis did not report its http listener"));
        let addr = line
            .split("Some(")
            .nth(1)
            .and_then(|s| s.split(')').next())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no address in log line: {line}"));
        guard.http_addr = addr;
        guard
    }

    /// Waits (≤ 5 s) for a log line containing every one of `needles`, and returns it.
    pub fn wait_log(&self, needles: &[&str]) -> String {
        self.wait_log_after(0, needles)
    }

    /// [`wait_log`](Self::wait_log) among the lines logged after the first `skip` (lines are
    /// written by a log thread: a counter can move before its line arrives).
    pub fn wait_log_after(&self, skip: usize, needles: &[&str]) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(l) = self.logs.lock().ok().and_then(|l| {
                l.iter()
                    .skip(skip)
                    .find(|l| needles.iter().all(|n| l.contains(n)))
                    .cloned()
            }) {
                return l;
            }
            if std::time::Instant::now() > deadline {
                let all = self.logs.lock().map(|l| l.join("\n")).unwrap_or_default();
                panic!("no log line with {needles:?}; logs:\n{all}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits up to `limit` for the process to exit; its exit code (`None`: killed by a signal).
    pub fn wait_exit(&mut self, limit: Duration) -> Option<Option<i32>> {
        let deadline = std::time::Instant::now() + limit;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status.code());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// A line of `/proc/PID/status` in KiB (`VmHWM`, `VmRSS`).
    pub fn status_kib(&self, field: &str) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid)).expect("proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc status"))
    }
}

impl Drop for BinaryProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes `toml` as `dir/portcullis.toml` and runs `portcullis check -c` on it.
pub fn check_config(dir: &Path, toml: &str) -> CliOutput {
    let path = dir.join("portcullis.toml");
    std::fs::write(&path, toml).expect("write config");
    cli(&["check", "-c", path.to_str().expect("utf-8 path")])
}

/// Asserts `check` exited 1 naming `portcullis.toml:<line:col of the first needle>: `key`: `
/// on a line that also says `why`.
pub fn assert_check_error(out: &CliOutput, toml: &str, needle: &str, key: &str, why: &str) {
    assert_eq!(
        out.code, 1,
        "stdout: {}\nstderr: {}",
        out.stdout, out.stderr
    );
    let at = toml.find(needle).expect("needle in config");
    let before = &toml[..at];
    let line = before.matches('\n').count() + 1;
    let col = at - before.rfind('\n').map_or(0, |n| n + 1) + 1;
    let want = format!("portcullis.toml:{line}:{col}: `{key}`: ");
    let found = out
        .stderr
        .lines()
        .find(|l| l.contains(&want))
        .unwrap_or_else(|| panic!("no error {want:?} in:\n{}", out.stderr));
    assert!(found.contains(why), "{found}");
}
