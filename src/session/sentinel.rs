//! The Redis master behind Sentinel, for the Redis session store: the redis crate's
//! [`SentinelClient`] asks the sentinels for the master of `master_name` (and checks with `ROLE`
//! that it is one); this keeps one multiplexed connection to it and asks again when it is lost.
//!
//! Why a wrapper: the crate's async sentinel client hands out a connection per call and nothing
//! more — a connection it gave keeps talking to the old address after a failover (the crate's
//! reconnecting `ConnectionManager` takes one fixed address). So: the connection is dropped, and
//! the master re-resolved on the next command, when a command fails on the connection (I/O
//! error, dropped, timeout) or answers `READONLY` (the master was demoted to a replica: the
//! write did not happen, so it is retried once on the new master, never taken as done). The
//! readiness check ([`SentinelMaster::check`]) asks `ROLE` and drops a connection to a replica.
//! While no master is reachable, commands fail fast (one resolution at a time, a failed one
//! remembered for [`RETRY_AFTER`]): the store answers unavailable, never stale success.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ::redis::aio::MultiplexedConnection;
use ::redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use ::redis::{
    AsyncConnectionConfig, ConnectionAddr, ErrorKind, RedisError, RedisResult, Role,
    ServerErrorKind, TlsCertificates, TlsMode,
};
use arc_swap::ArcSwapOption;

use crate::config::RedisSentinel;
use crate::tls_client::CaFile;

/// How long a failed resolution is the answer for every command (no sentinel storm while
/// the master is down).
const RETRY_AFTER: Duration = Duration::from_millis(250);
/// Asking the sentinels and connecting to the master they name, at most.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(1);

pub struct SentinelMaster {
    resolver: tokio::sync::Mutex<Resolver>,
    /// The connection to the current master, with its generation (so a failure seen on an old
    /// connection does not drop a newer one).
    current: ArcSwapOption<(u64, MultiplexedConnection)>,
    generation: AtomicU64,
    conn_cfg: AsyncConnectionConfig,
    master_name: String,
    /// The master's address the current connection goes to (`host:port`).
    master_addr: ArcSwapOption<String>,
}

struct Resolver {
    client: SentinelClient,
    failed: Option<(Instant, String)>,
    /// The master's address last connected to (logged when it changes).
    last: Option<String>,
}

impl SentinelMaster {
    pub fn new(
        cfg: &RedisSentinel,
        ca: Option<&CaFile>,
        response_timeout: Duration,
    ) -> RedisResult<Self> {
        let addrs = cfg.sentinels.iter().map(|(h, p)| {
            if cfg.tls {
                ConnectionAddr::TcpTls {
                    host: h.clone(),
                    port: *p,
                    insecure: false,
                    tls_params: None,
                }
            } else {
                ConnectionAddr::Tcp(h.clone(), *p)
            }
        });
        let mut b =
            SentinelClientBuilder::new(addrs, &cfg.master_name, SentinelServerType::Master)?
                .set_client_to_redis_db(cfg.db);
        if let Some(p) = &cfg.password {
            b = b.set_client_to_redis_password(p.expose());
        }
        if let Some(p) = &cfg.sentinel_password {
            b = b.set_client_to_sentinel_password(p.expose());
        }
        if cfg.tls {
            // The redis crate builds its rustls config on the process-default provider.
            crate::tls_client::install_default_provider();
            b = b
                .set_client_to_redis_tls_mode(TlsMode::Secure)
                .set_client_to_sentinel_tls_mode(TlsMode::Secure);
            if let Some(ca) = ca {
                let certs = || TlsCertificates {
                    client_tls: None,
                    root_cert: Some(ca.pem.to_vec()),
                };
                b = b
                    .set_client_to_redis_certificates(certs())
                    .set_client_to_sentinel_certificates(certs());
            }
        }
        Ok(SentinelMaster {
            resolver: tokio::sync::Mutex::new(Resolver {
                client: b.build()?,
                failed: None,
                last: None,
            }),
            current: ArcSwapOption::empty(),
            generation: AtomicU64::new(0),
            conn_cfg: AsyncConnectionConfig::new()
                .set_connection_timeout(Some(RESOLVE_TIMEOUT))
                .set_response_timeout(Some(response_timeout)),
            master_name: cfg.master_name.clone(),
            master_addr: ArcSwapOption::empty(),
        })
    }

    /// The connection to the master, resolved through the sentinels when there is none.
    async fn connection(&self) -> Result<Arc<(u64, MultiplexedConnection)>, String> {
        if let Some(c) = self.current.load_full() {
            return Ok(c);
        }
        let mut r = self.resolver.lock().await;
        if let Some(c) = self.current.load_full() {
            return Ok(c); // resolved while this one waited
        }
        if let Some((at, e)) = &r.failed
            && at.elapsed() < RETRY_AFTER
        {
            return Err(e.clone());
        }
        let name = &self.master_name;
        let found = tokio::time::timeout(RESOLVE_TIMEOUT, async {
            let client = r.client.async_get_client().await?;
            let addr = client.get_connection_info().addr().to_string();
            let conn = client
                .get_multiplexed_async_connection_with_config(&self.conn_cfg)
                .await?;
            Ok::<_, RedisError>((addr, conn))
        })
        .await;
        match found {
            Ok(Ok((addr, conn))) => {
                if r.last.as_deref() != Some(addr.as_str()) {
                    tracing::info!(master = %addr, name = %name, "session store: Redis master (named by Sentinel)");
                    r.last = Some(addr.clone());
                }
                self.master_addr.store(Some(Arc::new(addr)));
                r.failed = None;
                let g = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
                let c = Arc::new((g, conn));
                self.current.store(Some(c.clone()));
                Ok(c)
            }
            Ok(Err(e)) => {
                let e = format!("no Redis master {name:?} through Sentinel: {e}");
                r.failed = Some((Instant::now(), e.clone()));
                Err(e)
            }
            Err(_) => {
                let e =
                    format!("no Redis master {name:?} through Sentinel within {RESOLVE_TIMEOUT:?}");
                r.failed = Some((Instant::now(), e.clone()));
                Err(e)
            }
        }
    }

    /// The address of the master the store's commands go to now (`None` before the first
    /// connection).
    pub fn master_addr(&self) -> Option<String> {
        self.master_addr.load().as_deref().cloned()
    }

    /// The master the sentinels name now (its address and credentials), for a connection of
    /// another kind than the store's (the local cache's subscription).
    pub async fn master_info(&self) -> Result<::redis::ConnectionInfo, String> {
        let mut r = self.resolver.lock().await;
        let name = &self.master_name;
        let found = tokio::time::timeout(RESOLVE_TIMEOUT, r.client.async_get_client()).await;
        match found {
            Ok(Ok(client)) => Ok(client.get_connection_info().clone()),
            Ok(Err(e)) => Err(format!("no Redis master {name:?} through Sentinel: {e}")),
            Err(_) => Err(format!(
                "no Redis master {name:?} through Sentinel within {RESOLVE_TIMEOUT:?}"
            )),
        }
    }

    /// Drops the connection of generation `g` (if it is still the current one).
    fn invalidate(&self, g: u64) {
        let cur = self.current.load();
        if cur.as_ref().is_some_and(|c| c.0 == g) {
            self.current.compare_and_swap(&*cur, None);
        }
    }

    /// Runs `f` on the master's connection. A lost connection is dropped (the next command
    /// resolves the master again); `READONLY` (a demoted master) re-resolves and retries once.
    pub async fn run<T, F, Fut>(&self, f: F) -> Result<T, String>
    where
        F: Fn(MultiplexedConnection) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let mut retried = false;
        loop {
            let c = self.connection().await?;
            let e = match f(c.1.clone()).await {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            let readonly = e.kind() == ErrorKind::Server(ServerErrorKind::ReadOnly);
            if readonly
                || e.is_io_error()
                || e.is_connection_dropped()
                || e.is_connection_refusal()
                || e.is_timeout()
                || e.is_unrecoverable_error()
            {
                self.invalidate(c.0);
            }
            if readonly && !retried {
                tracing::warn!(name = %self.master_name, "session store: the Redis master became a replica (READONLY); asking Sentinel for the new one");
                retried = true;
                continue;
            }
            return Err(e.to_string());
        }
    }

    /// Readiness: the connection answers `ROLE` as a master (else it is dropped).
    pub async fn check(&self) -> Result<(), String> {
        let c = self.connection().await?;
        let mut conn = c.1.clone();
        match ::redis::cmd("ROLE").query_async::<Role>(&mut conn).await {
            Ok(Role::Primary { .. }) => Ok(()),
            Ok(_) => {
                self.invalidate(c.0);
                Err(format!(
                    "the Redis server Sentinel named as master {:?} is no longer one",
                    self.master_name
                ))
            }
            Err(e) => {
                self.invalidate(c.0);
                Err(e.to_string())
            }
        }
    }
}
