//! A real `redis-server` on a loopback port, killed on drop (the Redis session store tests);
//! [`SentinelSet`]: a master, a replica and three `redis-sentinel`s watching them (quorum 2),
//! each in its own temp dir, all killed on drop (a failing test too).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::free_port;

pub struct Redis {
    pub port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

/// The first of `names` installed in /usr/bin or /usr/local/bin, else a panic saying what to
/// install.
fn installed(name: &str, package: &str) -> String {
    ["/usr/bin", "/usr/local/bin"]
        .iter()
        .map(|d| format!("{d}/{name}"))
        .find(|p| std::path::Path::new(p).exists())
        .unwrap_or_else(|| {
            panic!("{name} is not installed: `apt-get install -y {package}` (the Redis-store tests need real Redis processes)")
        })
}

/// Waits (at most 5 s) until `port` accepts; kills `child` and panics otherwise.
fn wait_listening(child: &mut Child, port: u16, what: &str) {
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("{what} did not listen on {port}");
}

/// One command to the Redis server or sentinel on `port` (2 s timeouts).
pub fn redis_cmd<T: ::redis::FromRedisValue>(port: u16, args: &[&str]) -> ::redis::RedisResult<T> {
    let client = ::redis::Client::open(format!("redis://127.0.0.1:{port}/"))?;
    let mut conn = client.get_connection_with_timeout(Duration::from_secs(2))?;
    conn.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut c = ::redis::cmd(args[0]);
    for a in &args[1..] {
        c.arg(*a);
    }
    c.query(&mut conn)
}

/// The master name the sentinels of [`SentinelSet`] monitor.
pub const MASTER_NAME: &str = "mymaster";

/// A Redis master, one replica and three sentinels (quorum 2, `down-after-milliseconds` 1000,
/// `failover-timeout` 5000), ready when [`SentinelSet::start`] returns: every sentinel knows
/// the replica and the two other sentinels.
pub struct SentinelSet {
    /// `servers[0]` starts as master, `servers[1]` as its replica.
    pub servers: Vec<Redis>,
    pub sentinels: Vec<Sentinel>,
}

/// One `redis-sentinel` process (its config file in its own temp dir, which it rewrites).
pub struct Sentinel {
    pub port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl SentinelSet {
    pub fn start() -> SentinelSet {
        let master = Redis::start_with(free_port(), &[]);
        let mport = master.port.to_string();
        let replica = Redis::start_with(free_port(), &["--replicaof", "127.0.0.1", &mport]);
        let bin = installed("redis-sentinel", "redis-sentinel");
        let mut sentinels = Vec::new();
        for _ in 0..3 {
            let port = free_port();
            let dir = tempfile::tempdir().expect("temp dir");
            let conf = dir.path().join("sentinel.conf");
            std::fs::write(
                &conf,
                format!(
                    "port {port}\nbind 127.0.0.1\nprotected-mode no\ndaemonize no\ndir {dir}\n\
                     sentinel monitor {MASTER_NAME} 127.0.0.1 {mport} 2\n\
                     sentinel down-after-milliseconds {MASTER_NAME} 1000\n\
                     sentinel failover-timeout {MASTER_NAME} 5000\n\
                     sentinel parallel-syncs {MASTER_NAME} 1\n",
                    dir = dir.path().display()
                ),
            )
            .expect("write sentinel.conf");
            let mut child = Command::new(&bin)
                .arg(&conf)
                .current_dir(dir.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start redis-sentinel");
            wait_listening(&mut child, port, "redis-sentinel");
            sentinels.push(Sentinel {
                port,
                child,
                _dir: dir,
            });
        }
        let set = SentinelSet {
            servers: vec![master, replica],
            sentinels,
        };
        // Sentinels find the replica (INFO on the master) and each other (hello messages)
        // within a few seconds.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = set.sentinels.iter().all(|s| {
                let m = sentinel_master(s.port);
                m.get("num-slaves").map(String::as_str) == Some("1")
                    && m.get("num-other-sentinels").map(String::as_str) == Some("2")
                    && m.get("flags").map(String::as_str) == Some("master")
            });
            let linked = redis_cmd::<String>(set.servers[1].port, &["INFO", "replication"])
                .is_ok_and(|i| i.contains("master_link_status:up"));
            if ready && linked {
                return set;
            }
            assert!(
                Instant::now() < deadline,
                "the sentinels did not see the replica and each other within 30 s: {:?}",
                set.sentinels
                    .iter()
                    .map(|s| sentinel_master(s.port))
                    .collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// `host:port,host:port,host:port` of the sentinels.
    pub fn addrs(&self) -> String {
        self.sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The master's port as the sentinels' majority names it (None: no majority).
    pub fn master_port(&self) -> Option<u16> {
        let ports: Vec<Option<u16>> = self
            .sentinels
            .iter()
            .map(|s| {
                redis_cmd::<Vec<String>>(
                    s.port,
                    &["SENTINEL", "get-master-addr-by-name", MASTER_NAME],
                )
                .ok()
                .and_then(|v| v.get(1).and_then(|p| p.parse().ok()))
            })
            .collect();
        ports
            .iter()
            .flatten()
            .find(|p| ports.iter().filter(|q| **q == Some(**p)).count() >= 2)
            .copied()
    }
}

/// `SENTINEL MASTER mymaster` on the sentinel at `port`, as a map (empty when it does not answer).
pub fn sentinel_master(port: u16) -> std::collections::HashMap<String, String> {
    redis_cmd::<std::collections::HashMap<String, String>>(
        port,
        &["SENTINEL", "MASTER", MASTER_NAME],
    )
    .unwrap_or_default()
}

impl Redis {
    pub fn start() -> Redis {
        Redis::start_on(free_port())
    }

    /// A redis-server on `port` (also to restart one on the port a proxy was given).
    pub fn start_on(port: u16) -> Redis {
        Redis::start_with(port, &[])
    }

    /// A redis-server on `port` with `extra` arguments (e.g. `--replicaof host port`), its
    /// working directory (a replica's RDB transfer) a temp dir.
    pub fn start_with(port: u16, extra: &[&str]) -> Redis {
        let bin = installed("redis-server", "redis-server");
        let dir = tempfile::tempdir().expect("temp dir");
        let mut child = Command::new(bin)
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "no",
                "--dir",
            ])
            .arg(dir.path())
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        wait_listening(&mut child, port, "redis-server");
        Redis {
            port,
            child,
            _dir: dir,
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// SIGKILL (no shutdown: as a crash).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A TLS-only Redis master and one TLS-only `redis-sentinel` watching it over TLS (quorum 1),
/// their certificate (for `localhost` and 127.0.0.1) from `ca`; files in a temp dir; both
/// killed on drop.
pub struct TlsSentinel {
    pub master_port: u16,
    pub sentinel_port: u16,
    /// The CA certificate (PEM) file.
    pub ca_file: std::path::PathBuf,
    _procs: Vec<super::ChildGuard>,
    _dir: tempfile::TempDir,
}

impl TlsSentinel {
    pub fn start(ca: &super::TestCa) -> TlsSentinel {
        let dir = tempfile::tempdir().expect("temp dir");
        let leaf = ca.issue("redis");
        let file = |n: &str, text: &str| {
            let p = dir.path().join(n);
            std::fs::write(&p, text).expect("write");
            p.to_str().expect("utf-8").to_string()
        };
        let (crt, key, ca_file) = (
            file("redis.crt", &leaf.cert_pem),
            file("redis.key", &leaf.key_pem),
            file("ca.pem", &ca.cert_pem),
        );
        let tls = format!(
            "tls-cert-file {crt}\ntls-key-file {key}\ntls-ca-cert-file {ca_file}\ntls-auth-clients no\ntls-replication yes\n"
        );
        let master_port = free_port();
        let master_conf = file(
            "master.conf",
            &format!(
                "port 0\ntls-port {master_port}\nbind 127.0.0.1\nsave \"\"\nappendonly no\ndir {}\n{tls}",
                dir.path().display()
            ),
        );
        let mut master = Command::new(installed("redis-server", "redis-server"))
            .arg(&master_conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        wait_listening(&mut master, master_port, "redis-server (TLS)");
        let master = super::ChildGuard(master);
        let sentinel_port = free_port();
        let sentinel_conf = file(
            "sentinel.conf",
            &format!(
                "port 0\ntls-port {sentinel_port}\nbind 127.0.0.1\nprotected-mode no\ndir {}\n{tls}\
                 sentinel monitor {MASTER_NAME} 127.0.0.1 {master_port} 1\n",
                dir.path().display()
            ),
        );
        let mut sentinel = Command::new(installed("redis-sentinel", "redis-sentinel"))
            .arg(&sentinel_conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-sentinel");
        wait_listening(&mut sentinel, sentinel_port, "redis-sentinel (TLS)");
        TlsSentinel {
            master_port,
            sentinel_port,
            ca_file: dir.path().join("ca.pem"),
            _procs: vec![master, super::ChildGuard(sentinel)],
            _dir: dir,
        }
    }
}

/// How many times the Redis server on `port` ran `command` (lower case, e.g. "get"), from
/// `INFO commandstats`: a read the local session cache saved does not count here.
pub fn redis_calls(port: u16, command: &str) -> u64 {
    let info: String = redis_cmd(port, &["INFO", "commandstats"]).expect("INFO commandstats");
    let prefix = format!("cmdstat_{command}:calls=");
    info.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}
