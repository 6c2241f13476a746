//! Starting the test OpenID provider (`node tests/provider/provider.mjs`), the one way the tests
//! start it: for the bearer tests (`support/oidc.rs`, `OidcProvider`) and the login tests
//! (`support/login.rs`, `Provider`): `npm ci` when node_modules is missing, node spawned with
//! `PORT=0`, `STATE_DIR` and the caller's variables, a bounded wait for `READY <issuer>` on
//! stdout (killed and started again on a hang), stdout drained afterwards. Where the
//! provider's stderr (its request log) goes is the caller's choice: [`Stderr`].
//!
//! One module per test binary, so the `npm ci` lock below is shared by every harness in it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long one attempt may take to print `READY`.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Attempts before giving up.
const ATTEMPTS: u32 = 3;

/// Where the provider's stderr (request log) goes.
pub enum Stderr<'a> {
    /// Written to this file (created anew for every attempt).
    File(&'a Path),
    /// Kept in memory, one entry per line.
    Lines(Arc<Mutex<Vec<String>>>),
}

impl Stderr<'_> {
    fn contents(&self) -> String {
        match self {
            Stderr::File(p) => std::fs::read_to_string(p).unwrap_or_default(),
            Stderr::Lines(l) => l.lock().unwrap_or_else(|e| e.into_inner()).join("\n"),
        }
    }
}

fn provider_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/provider")
}

/// Runs `npm ci` in tests/provider unless node_modules is there; panics clearly when node or
/// npm is missing. One `npm ci` per test binary, even when tests start providers in parallel.
fn ensure_node_modules(dir: &Path) {
    if Command::new("node").arg("--version").output().is_err() {
        panic!(
            "node is not installed: these tests need Node 20+ and npm to run the test OpenID provider (apt-get install nodejs npm)"
        );
    }
    static NPM: Mutex<()> = Mutex::new(());
    let _guard = NPM.lock().unwrap_or_else(|e| e.into_inner());
    if !dir.join("node_modules").join("oidc-provider").exists() {
        let st = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(dir)
            .status()
            .unwrap_or_else(|e| {
                panic!("npm ci in tests/provider: cannot run npm ({e}); install it (apt-get install npm)")
            });
        assert!(st.success(), "npm ci in tests/provider failed ({st})");
    }
}

/// Starts the provider with its state in `state_dir` and `env` set (after `PORT` and
/// `STATE_DIR`, so it may override them). A provider that has not printed `READY` within 30 s
/// is killed and started again (3 attempts in all): Node 20 has a rare key-generation deadlock
/// at startup, and a hang must never stall the suite. The final panic carries the provider's
/// log. Returns the running child and the issuer URL.
pub fn start(state_dir: &Path, env: &[(&str, &str)], stderr: Stderr<'_>) -> (Child, String) {
    let dir = provider_dir();
    ensure_node_modules(&dir);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut cmd = Command::new("node");
        cmd.arg(dir.join("provider.mjs"))
            .env("PORT", "0")
            .env("STATE_DIR", state_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped());
        match &stderr {
            Stderr::File(p) => {
                cmd.stderr(std::fs::File::create(p).expect("create provider log"));
            }
            Stderr::Lines(_) => {
                cmd.stderr(Stdio::piped());
            }
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start node tests/provider/provider.mjs");
        if let Stderr::Lines(lines) = &stderr {
            let err = child.stderr.take().expect("provider stderr");
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(err).lines() {
                    let Ok(line) = line else { break };
                    lines.lock().unwrap_or_else(|e| e.into_inner()).push(line);
                }
            });
        }
        let stdout = child.stdout.take().expect("provider stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            let mut line = String::new();
            let _ = r.read_line(&mut line);
            let _ = tx.send(line);
            // Keep draining (nothing more is expected) so the provider never blocks on a pipe.
            let mut sink = String::new();
            while r.read_line(&mut sink).map(|n| n > 0).unwrap_or(false) {
                sink.clear();
            }
        });
        match rx.recv_timeout(READY_TIMEOUT) {
            Ok(line) if line.starts_with("READY ") => {
                return (child, line["READY ".len()..].trim().to_string());
            }
            other => {
                let _ = child.kill();
                let _ = child.wait();
                assert!(
                    attempt < ATTEMPTS,
                    "the test OpenID provider did not start after {ATTEMPTS} attempts (last: {other:?}); its log:\n{}",
                    stderr.contents()
                );
            }
        }
    }
}
