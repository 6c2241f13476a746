//! The Redis session store. Keys (prefix = `cookie_name`, so apps sharing a Redis do not mix):
//! `P:s:<sha256(id)>` sealed session (TTL), `P:sid:<sid>` and `P:sub:<provider>:<sub>` sets of
//! session keys (back-channel logout ends them all), `P:jti:<hash>` seen logout-token ids,
//! `P:lock:<id>` the refresh lock shared by every replica.
//!
//! Fail closed: every command has a short timeout; an error marks the store not ready
//! (`session:redis` in `/readyz`) and the request gets 503, with one clear log line.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{Client, cmd};

use super::{SessionData, StoreError, crypto};
use crate::health::Health;

const OP_TIMEOUT: Duration = Duration::from_millis(1500);
pub const HEALTH_KEY: &str = "session:redis";

pub struct RedisStore {
    conn: ConnectionManager,
    prefix: String,
    ok: AtomicBool,
    health: std::sync::OnceLock<Arc<Health>>,
}

impl RedisStore {
    pub fn new(url: &str, prefix: &str) -> Result<Self, String> {
        let client = Client::open(url).map_err(|e| format!("session.redis_url: {e}"))?;
        let cfg = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(OP_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(2));
        let conn = ConnectionManager::new_lazy_with_config(client, cfg)
            .map_err(|e| format!("session.redis_url: {e}"))?;
        Ok(RedisStore {
            conn,
            prefix: prefix.to_string(),
            ok: AtomicBool::new(false),
            health: Default::default(),
        })
    }

    /// Registers readiness and keeps checking Redis every 2 s.
    pub fn start_background(self: &Arc<Self>, health: Arc<Health>) {
        health.set(HEALTH_KEY, Err("not connected yet".into()));
        let _ = self.health.set(health);
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let Some(s) = me.upgrade() else { break };
                let r = s.run::<String>(cmd("PING")).await;
                if r.is_ok() {
                    s.mark(Ok(()));
                }
                drop(s);
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        });
    }

    fn mark(&self, r: Result<(), String>) {
        let was = self.ok.swap(r.is_ok(), Ordering::Relaxed);
        match &r {
            Err(e) if was => {
                tracing::error!(error = %e, "session store: Redis unreachable; login routes answer 503 until it is back")
            }
            Ok(()) if !was => tracing::info!("session store: Redis connected"),
            _ => {}
        }
        if let Some(h) = self.health.get() {
            h.set(HEALTH_KEY, r);
        }
    }

    async fn run<T: ::redis::FromRedisValue>(&self, c: ::redis::Cmd) -> Result<T, StoreError> {
        let mut conn = self.conn.clone();
        let r = match tokio::time::timeout(OP_TIMEOUT, c.query_async::<T>(&mut conn)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {OP_TIMEOUT:?}")),
        };
        match r {
            Ok(v) => Ok(v),
            Err(e) => {
                if self.ok.load(Ordering::Relaxed)
                    || self.health.get().is_some_and(|h| h.is_ready(HEALTH_KEY))
                {
                    self.mark(Err(e.clone()));
                } else {
                    tracing::warn!(error = %e, "session store: Redis command failed");
                    if let Some(h) = self.health.get() {
                        h.set(HEALTH_KEY, Err(e.clone()));
                    }
                }
                Err(StoreError::Unavailable(e))
            }
        }
    }

    /// The Redis key of a session id (also the sealing context of its value).
    pub fn key_of(&self, id: &str) -> String {
        format!("{}:s:{}", self.prefix, crypto::sha256_b64(id))
    }

    /// The sealed session under `key` (from [`Self::key_of`], not the session id).
    pub async fn get_by_key(&self, key: &str) -> Result<Option<String>, StoreError> {
        let mut c = cmd("GET");
        c.arg(key);
        self.run(c).await
    }

    /// Writes a session. `existing`: an update of a session a request loaded — written only
    /// if it still exists (`XX`), so a logout or back-channel logout that deleted it meanwhile
    /// is never undone by a concurrent request's idle-timeout slide or refresh.
    pub async fn put(
        &self,
        id: &str,
        sealed: &str,
        ttl: i64,
        data: &SessionData,
        index_ttl: i64,
        existing: bool,
    ) -> Result<(), StoreError> {
        let key = self.key_of(id);
        let mut p = ::redis::pipe();
        let set = p.cmd("SET").arg(&key).arg(sealed).arg("EX").arg(ttl);
        if existing {
            set.arg("XX");
        }
        set.ignore();
        let mut idx = vec![format!(
            "{}:sub:{}:{}",
            self.prefix, data.provider, data.sub
        )];
        if let Some(sid) = &data.sid {
            idx.push(format!("{}:sid:{}", self.prefix, sid));
        }
        for i in idx {
            p.cmd("SADD").arg(&i).arg(&key).ignore();
            p.cmd("EXPIRE").arg(&i).arg(index_ttl).arg("GT").ignore();
            p.cmd("EXPIRE").arg(&i).arg(index_ttl).arg("NX").ignore();
        }
        self.run_pipe(p).await
    }

    async fn run_pipe(&self, p: ::redis::Pipeline) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let r = match tokio::time::timeout(OP_TIMEOUT, p.query_async::<()>(&mut conn)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {OP_TIMEOUT:?}")),
        };
        r.map_err(|e| {
            self.mark(Err(e.clone()));
            StoreError::Unavailable(e)
        })
    }

    pub async fn delete(&self, id: &str) -> Result<(), StoreError> {
        self.run::<i64>(cmd("DEL").arg(self.key_of(id)).clone())
            .await
            .map(|_| ())
    }

    /// Ends every session indexed under `sid:<sid>` or `sub:<provider>:<sub>`; returns how many.
    pub async fn delete_indexed(
        &self,
        provider: &str,
        sid: Option<&str>,
        sub: Option<&str>,
    ) -> Result<usize, StoreError> {
        let mut n = 0;
        let mut idx = Vec::new();
        if let Some(sid) = sid {
            idx.push(format!("{}:sid:{}", self.prefix, sid));
        }
        if let Some(sub) = sub {
            idx.push(format!("{}:sub:{}:{}", self.prefix, provider, sub));
        }
        for i in idx {
            let keys: Vec<String> = self.run(cmd("SMEMBERS").arg(&i).clone()).await?;
            for k in &keys {
                n += self.run::<usize>(cmd("DEL").arg(k).clone()).await?;
            }
            self.run::<i64>(cmd("DEL").arg(&i).clone()).await?;
        }
        Ok(n)
    }

    /// SET NX with a TTL: true when the key was not there (first sighting).
    pub async fn set_once(
        &self,
        what: &str,
        value: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let key = format!("{}:{what}:{}", self.prefix, crypto::sha256_b64(value));
        let r: Option<String> = self
            .run(
                cmd("SET")
                    .arg(key)
                    .arg("1")
                    .arg("NX")
                    .arg("PX")
                    .arg(ttl.as_millis().max(1) as u64)
                    .clone(),
            )
            .await?;
        Ok(r.is_some())
    }

    /// Whether a key made by [`set_once`] exists.
    pub async fn is_set(&self, what: &str, value: &str) -> Result<bool, StoreError> {
        let key = format!("{}:{what}:{}", self.prefix, crypto::sha256_b64(value));
        self.run::<bool>(cmd("EXISTS").arg(key).clone()).await
    }

    /// Releases a lock taken with [`set_once`].
    pub async fn release(&self, what: &str, value: &str) {
        let key = format!("{}:{what}:{}", self.prefix, crypto::sha256_b64(value));
        let _ = self.run::<i64>(cmd("DEL").arg(key).clone()).await;
    }
}
