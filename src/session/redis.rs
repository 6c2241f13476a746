//! The Redis session store. Keys (prefix = `cookie_name`, so apps sharing a Redis do not mix):
//! `P:s:<sha256(id)>` sealed session (TTL); `P:sid:<provider>:<sid>` and `P:sub:<provider>:<sub>`
//! sets of session keys (back-channel logout at that provider ends them all — a provider's
//! logout never reaches another provider's sessions, even with an equal `sid` or `sub`);
//! `P:jti:<hash>` seen logout-token ids; `P:lock:<hash(id)>` the refresh lock shared by every
//! replica, holding its owner's random token (only the owner deletes it). Provider names are
//! written with `%` and `:` percent-encoded, so no name can pose as another's key.
//! Sessions written before the sid index was per provider are in `P:sid:<sid>`; back-channel
//! logout still reads that set, and ends only the members it opens as that provider's and sid's.
//!
//! It implements the session [`Store`] (as does the stateless cookie store), so nothing above
//! `session/` knows it is Redis.
//!
//! The server is one URL (the crate's reconnecting connection manager) or the master named by
//! Sentinel ([`super::sentinel`], re-resolved after a failover).
//!
//! Every write that ends or rewrites a session also publishes its key on `P:invalidate` (in the
//! same pipeline), for the local caches of opened sessions ([`super::local`]) of every replica;
//! this process's subscription to it is made and kept by [`RedisStore::start_background`].
//!
//! Fail closed: every command has a short timeout; an error marks the store not ready
//! (`session:redis` in `/readyz`) and the request gets 503, with one clear log line.

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{Client, cmd};
use http::HeaderValue;
use http::header::HeaderMap;

use super::local::LocalCache;
use super::pubsub::Link;
use super::sentinel::SentinelMaster;
use super::store::{RefreshLock, Store};
use super::{
    CookieAttrs, Ended, Loaded, SessionData, Sessions, SetupError, StoreError, crypto,
    write_chunked,
};
use crate::config::RedisServer;
use crate::health::Health;
use crate::tls_client::CaFile;

const OP_TIMEOUT: Duration = Duration::from_millis(1500);
pub const HEALTH_KEY: &str = "session:redis";
/// How long one replica may hold a session's refresh lock (a refresh at the provider that
/// takes longer leaves the lock to expire; see [`RedisStore::unlock`]).
const REFRESH_LOCK_TTL: Duration = Duration::from_secs(15);

pub struct RedisStore {
    conn: Conn,
    prefix: String,
    /// `P:invalidate`: the keys of sessions ended or rewritten, for every replica's cache.
    channel: String,
    /// The local cache of opened sessions (`session.local_cache`; `None` when 0).
    cache: Option<Arc<LocalCache>>,
    /// TLS of the cache's subscription (`rediss://`, Sentinel with TLS).
    sub_tls: Option<Arc<rustls::ClientConfig>>,
    /// The server of a `redis://` / `rediss://` URL (`None` behind Sentinel).
    direct: Option<::redis::ConnectionInfo>,
    ok: AtomicBool,
    health: std::sync::OnceLock<Arc<Health>>,
}

/// The connection to the server.
enum Conn {
    Direct(ConnectionManager),
    Sentinel(Box<SentinelMaster>),
}

/// A command or a pipeline, to run on either kind of connection.
#[derive(Clone, Copy)]
enum Query<'a> {
    Cmd(&'a ::redis::Cmd),
    Pipe(&'a ::redis::Pipeline),
}

impl Query<'_> {
    async fn on<T: ::redis::FromRedisValue>(
        self,
        c: &mut impl ::redis::aio::ConnectionLike,
    ) -> ::redis::RedisResult<T> {
        match self {
            Query::Cmd(x) => x.query_async(c).await,
            Query::Pipe(x) => x.query_async(c).await,
        }
    }
}

impl RedisStore {
    /// TLS is rustls on aws-lc-rs; `ca`, when given, is the only CA trusted, else the system
    /// roots are.
    pub fn new(
        server: &RedisServer,
        ca: Option<&CaFile>,
        prefix: &str,
    ) -> Result<Self, SetupError> {
        let conn = match server {
            RedisServer::Url(url) => Conn::Direct(Self::direct(url.expose(), ca)?),
            RedisServer::Sentinel(cfg) => {
                Conn::Sentinel(Box::new(SentinelMaster::new(cfg, ca, OP_TIMEOUT)?))
            }
        };
        let tls = match server {
            RedisServer::Url(url) => url.expose().starts_with("rediss://"),
            RedisServer::Sentinel(cfg) => cfg.tls,
        };
        let sub_tls = if tls {
            Some(Arc::new(sub_tls(ca).map_err(|e| {
                ::redis::RedisError::from((::redis::ErrorKind::InvalidClientConfig, "TLS", e))
            })?))
        } else {
            None
        };
        let direct = match server {
            RedisServer::Url(url) => Some(::redis::IntoConnectionInfo::into_connection_info(
                url.expose(),
            )?),
            RedisServer::Sentinel(_) => None,
        };
        Ok(RedisStore {
            conn,
            direct,
            channel: format!("{prefix}:invalidate"),
            cache: None,
            sub_tls,
            prefix: prefix.to_string(),
            ok: AtomicBool::new(false),
            health: Default::default(),
        })
    }

    /// With a local cache of opened sessions kept at most `ttl` (zero: none).
    pub fn with_local_cache(mut self, ttl: Duration) -> Self {
        self.cache = (!ttl.is_zero()).then(|| Arc::new(LocalCache::new(ttl)));
        self
    }

    /// `url`: `redis://` or `rediss://`.
    fn direct(url: &str, ca: Option<&CaFile>) -> Result<ConnectionManager, SetupError> {
        let client = if url.starts_with("rediss://") {
            // The redis crate builds its rustls config on the process-default provider.
            crate::tls_client::install_default_provider();
            match ca {
                Some(ca) => Client::build_with_tls(
                    url,
                    ::redis::TlsCertificates {
                        client_tls: None,
                        root_cert: Some(ca.pem.to_vec()),
                    },
                ),
                None => Client::open(url),
            }
        } else {
            Client::open(url)
        }?;
        let cfg = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(OP_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(2));
        Ok(ConnectionManager::new_lazy_with_config(client, cfg)?)
    }

    /// Runs `q` on the server (Sentinel: on the current master), within [`OP_TIMEOUT`].
    async fn exec<T: ::redis::FromRedisValue>(&self, q: Query<'_>) -> Result<T, String> {
        let r = match &self.conn {
            Conn::Direct(m) => {
                let mut conn = m.clone();
                tokio::time::timeout(OP_TIMEOUT, async {
                    q.on(&mut conn).await.map_err(|e| e.to_string())
                })
                .await
            }
            Conn::Sentinel(m) => {
                // Boxed: the nested future types otherwise overflow the compiler's `Send`
                // check where a connection's task is spawned.
                let run: std::pin::Pin<Box<dyn Future<Output = Result<T, String>> + Send + '_>> =
                    Box::pin(m.run(move |mut c| async move { q.on(&mut c).await }));
                tokio::time::timeout(OP_TIMEOUT, run).await
            }
        };
        r.unwrap_or_else(|_| Err(format!("no answer within {OP_TIMEOUT:?}")))
    }

    /// Readiness: `PING`; behind Sentinel, `ROLE` must say master.
    async fn check(&self) -> Result<(), StoreError> {
        match &self.conn {
            Conn::Direct(_) => self.run::<String>(cmd("PING")).await.map(|_| ()),
            Conn::Sentinel(m) => {
                let r = tokio::time::timeout(OP_TIMEOUT, m.check())
                    .await
                    .unwrap_or_else(|_| Err(format!("no answer within {OP_TIMEOUT:?}")));
                r.map_err(|e| {
                    self.mark(Err(e.clone()));
                    StoreError::Unavailable(e)
                })
            }
        }
    }

    /// Registers readiness and keeps checking Redis every 2 s; with a local cache, keeps its
    /// subscription to the invalidation channel.
    pub fn start_background(self: &Arc<Self>, health: Arc<Health>) {
        if self.cache.is_some() {
            self.keep_subscription();
        }
        health.set(HEALTH_KEY, Err("not connected yet".into()));
        let _ = self.health.set(health);
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let Some(s) = me.upgrade() else { break };
                let r = s.check().await;
                if r.is_ok() {
                    s.mark(Ok(()));
                }
                drop(s);
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        });
    }

    /// Keeps the local cache's subscription: made (through Sentinel: on the master it names
    /// now), served until it breaks or — behind Sentinel — the store's master moved, and made
    /// again after a pause (0.25 s, doubling up to 2 s while it fails). Ends with the store.
    fn keep_subscription(self: &Arc<Self>) {
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut pause = Duration::from_millis(250);
            let mut last_error = String::new();
            loop {
                let Some(s) = me.upgrade() else { break };
                let Some(cache) = s.cache.clone() else { break };
                let info = match &s.conn {
                    Conn::Direct(_) => s.direct_info(),
                    Conn::Sentinel(m) => m.master_info().await,
                };
                let channel = s.channel.clone();
                let tls = s.sub_tls.clone();
                drop(s);
                let link = match info {
                    Ok(info) => Link::connect(&info, tls.as_ref(), &channel).await,
                    Err(e) => Err(e),
                };
                match link {
                    Ok(link) => {
                        pause = Duration::from_millis(250);
                        last_error.clear();
                        let me = me.clone();
                        let why = cache
                            .serve(link, |addr| match me.upgrade() {
                                None => Err("the store was replaced".into()),
                                Some(s) => s.still_master(addr),
                            })
                            .await;
                        if me.strong_count() == 0 {
                            break;
                        }
                        tracing::warn!(error = %why, "session store: the local cache is off until the invalidation channel is back");
                    }
                    Err(e) => {
                        if e != last_error {
                            tracing::warn!(error = %e, "session store: no subscription to the invalidation channel; the local cache stays off");
                            last_error = e;
                        }
                        pause = (pause * 2).min(Duration::from_secs(2));
                    }
                }
                tokio::time::sleep(pause).await;
            }
        });
    }

    /// The server of a `redis://` / `rediss://` URL, for the subscription.
    fn direct_info(&self) -> Result<::redis::ConnectionInfo, String> {
        self.direct
            .clone()
            .ok_or_else(|| "no server URL".to_string())
    }

    /// Behind Sentinel: an error when the store's commands now go to another server than
    /// `addr` (the subscription's), so the subscription follows a failover.
    fn still_master(&self, addr: &str) -> Result<(), String> {
        match &self.conn {
            Conn::Sentinel(m) => match m.master_addr() {
                Some(now) if now != addr => Err(format!(
                    "the Redis master moved from {addr} to {now}; subscribing there"
                )),
                _ => Ok(()),
            },
            Conn::Direct(_) => Ok(()),
        }
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
        match self.exec(Query::Cmd(&c)).await {
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
        if existing {
            // Rewritten: every replica's cached copy goes.
            p.cmd("PUBLISH").arg(&self.channel).arg(&key).ignore();
        }
        let mut idx = vec![self.index_key(&data.provider, Ended::Sub(&data.sub))];
        if let Some(sid) = &data.sid {
            idx.push(self.index_key(&data.provider, Ended::Sid(sid)));
        }
        for i in idx {
            p.cmd("SADD").arg(&i).arg(&key).ignore();
            p.cmd("EXPIRE").arg(&i).arg(index_ttl).arg("GT").ignore();
            p.cmd("EXPIRE").arg(&i).arg(index_ttl).arg("NX").ignore();
        }
        self.run_pipe(p).await?;
        if existing {
            self.dropped(&key);
        }
        Ok(())
    }

    /// This replica's cached copy of the session under `key` goes (after the write and its
    /// `PUBLISH` were answered: a `GET` sent before that cannot fill the cache any more).
    fn dropped(&self, key: &str) {
        if let Some(c) = &self.cache {
            c.invalidate(key.as_bytes());
        }
    }

    /// The store's local cache of opened sessions, if on.
    pub fn local_cache(&self) -> Option<&LocalCache> {
        self.cache.as_deref()
    }

    async fn run_pipe(&self, p: ::redis::Pipeline) -> Result<(), StoreError> {
        self.exec::<()>(Query::Pipe(&p)).await.map_err(|e| {
            self.mark(Err(e.clone()));
            StoreError::Unavailable(e)
        })
    }

    pub async fn delete(&self, id: &str) -> Result<(), StoreError> {
        self.delete_key(&self.key_of(id)).await.map(|_| ())
    }

    /// The index set of `provider`'s sessions named by `what`.
    pub fn index_key(&self, provider: &str, what: Ended<'_>) -> String {
        let provider = provider.replace('%', "%25").replace(':', "%3A");
        match what {
            Ended::Sid(sid) => format!("{}:sid:{provider}:{sid}", self.prefix),
            Ended::Sub(sub) => format!("{}:sub:{provider}:{sub}", self.prefix),
        }
    }

    /// The sid index of sessions written before it was per provider (members of any provider).
    pub fn legacy_sid_key(&self, sid: &str) -> String {
        format!("{}:sid:{sid}", self.prefix)
    }

    /// Ends every session in `provider`'s index for `what`; returns how many.
    pub async fn delete_indexed(
        &self,
        provider: &str,
        what: Ended<'_>,
    ) -> Result<usize, StoreError> {
        let i = self.index_key(provider, what);
        let mut n = 0;
        for k in self.members(&i).await? {
            n += self.delete_key(&k).await?;
        }
        self.run::<i64>(cmd("DEL").arg(&i).clone()).await?;
        Ok(n)
    }

    /// The members of an index set.
    pub async fn members(&self, index: &str) -> Result<Vec<String>, StoreError> {
        self.run(cmd("SMEMBERS").arg(index).clone()).await
    }

    /// Deletes a session by its key (from an index) and publishes the key for every replica's
    /// cache (one round trip); returns 1 when it existed.
    pub async fn delete_key(&self, key: &str) -> Result<usize, StoreError> {
        let mut p = ::redis::pipe();
        p.cmd("DEL").arg(key);
        p.cmd("PUBLISH").arg(&self.channel).arg(key).ignore();
        let (n,): (usize,) = self.exec(Query::Pipe(&p)).await.map_err(|e| {
            self.mark(Err(e.clone()));
            StoreError::Unavailable(e)
        })?;
        self.dropped(key);
        Ok(n)
    }

    /// Removes `key` from the index set `index`.
    pub async fn unindex(&self, index: &str, key: &str) -> Result<(), StoreError> {
        self.run::<i64>(cmd("SREM").arg(index).arg(key).clone())
            .await
            .map(|_| ())
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

    /// Takes the lock `what` on `value` for `ttl` (SET NX PX). `Some(token)`: this caller owns
    /// it; the token is needed to release it. `None`: someone else holds it.
    pub async fn lock(
        &self,
        what: &str,
        value: &str,
        ttl: Duration,
    ) -> Result<Option<LockToken>, StoreError> {
        let key = format!("{}:{what}:{}", self.prefix, crypto::sha256_b64(value));
        let token = crypto::random_token();
        let r: Option<String> = self
            .run(
                cmd("SET")
                    .arg(&key)
                    .arg(&token)
                    .arg("NX")
                    .arg("PX")
                    .arg(ttl.as_millis().max(1) as u64)
                    .clone(),
            )
            .await?;
        Ok(r.map(|_| LockToken { key, token }))
    }

    /// Releases a lock taken with [`Self::lock`] — only while it is still ours: after its TTL
    /// ran out another replica may hold it, and deleting that one would let a third replica
    /// refresh with the same refresh token. Compare-and-delete in one script (atomic).
    /// Returns whether the lock was ours and is now released.
    pub async fn unlock(&self, lock: &LockToken) -> bool {
        const COMPARE_AND_DELETE: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end";
        self.run::<i64>(
            cmd("EVAL")
                .arg(COMPARE_AND_DELETE)
                .arg(1)
                .arg(&lock.key)
                .arg(&lock.token)
                .clone(),
        )
        .await
        .is_ok_and(|n| n == 1)
    }
}

/// TLS of the cache's subscription: `ca` alone when given (as for the store's connection),
/// else the system roots.
fn sub_tls(ca: Option<&CaFile>) -> Result<rustls::ClientConfig, String> {
    match ca {
        None => crate::tls_client::client_config(None),
        Some(ca) => Ok(rustls::ClientConfig::builder_with_provider(
            crate::tls_client::crypto_provider(),
        )
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS client setup: {e}"))?
        .with_root_certificates(ca.roots.clone())
        .with_no_client_auth()),
    }
}

/// A lock held by this process ([`RedisStore::lock`]).
pub struct LockToken {
    key: String,
    token: String,
}

impl Store for Arc<RedisStore> {
    async fn fetch(
        &self,
        s: &Sessions,
        _name: &str,
        value: Cow<'_, str>,
    ) -> Result<Option<Loaded>, StoreError> {
        if value.len() != 43 {
            return Ok(None);
        }
        let key = self.key_of(&value);
        let cache = self.cache.as_deref();
        if let Some(data) = cache.and_then(|c| c.get(&key)) {
            return Ok(Some(Loaded {
                data,
                handle: Some(value.into_owned()),
            }));
        }
        let ticket = cache.and_then(LocalCache::ticket);
        let Some(sealed) = self.get_by_key(&key).await? else {
            return Ok(None);
        };
        let data = s.open(&key, &sealed);
        if let (Some(c), Some(t), Some(d)) = (cache, ticket, &data) {
            c.fill(t, key, d, sealed.len());
        }
        Ok(data.map(|data| Loaded {
            data,
            handle: Some(value.into_owned()),
        }))
    }

    async fn write(
        &self,
        s: &Sessions,
        name: &str,
        data: &SessionData,
        json: &[u8],
        handle: Option<&str>,
        remaining: i64,
        present: &[String],
        attrs: CookieAttrs<'_>,
    ) -> Result<Vec<HeaderValue>, StoreError> {
        let id = handle.map_or_else(crypto::random_token, str::to_string);
        let ttl = remaining
            .min(s.cfg.idle_timeout.as_secs() as i64 + 60)
            .max(1);
        let sealed = s.sealer.seal(&self.key_of(&id), json);
        self.put(&id, &sealed, ttl, data, remaining, handle.is_some())
            .await?;
        if handle.is_some() {
            return Ok(Vec::new()); // the cookie already names this session
        }
        Ok(write_chunked(name, &id, remaining, present, attrs))
    }

    async fn end(&self, _s: &Sessions, loaded: &Loaded) -> Result<(), StoreError> {
        Store::remove(self, loaded.handle.as_deref()).await
    }

    async fn remove(&self, handle: Option<&str>) -> Result<(), StoreError> {
        match handle {
            Some(id) => self.delete(id).await,
            None => Ok(()),
        }
    }

    async fn end_indexed(
        &self,
        s: &Sessions,
        provider: &str,
        what: Ended<'_>,
    ) -> Result<usize, StoreError> {
        let mut n = self.delete_indexed(provider, what).await?;
        if let Ended::Sid(sid) = what {
            // Sessions indexed before the sid index was per provider: that set may hold
            // sessions of several providers, so each is opened and only this provider's
            // session with this sid ends.
            let legacy = self.legacy_sid_key(sid);
            for key in self.members(&legacy).await? {
                let Some(sealed) = self.get_by_key(&key).await? else {
                    self.unindex(&legacy, &key).await?;
                    continue;
                };
                let ours = s
                    .open(&key, &sealed)
                    .is_some_and(|d| d.provider == provider && d.sid.as_deref() == Some(sid));
                if ours {
                    n += self.delete_key(&key).await?;
                    self.unindex(&legacy, &key).await?;
                }
            }
        }
        Ok(n)
    }

    /// With Redis the cookie (the id) stays the same: the next load reads the changed session.
    fn supersede(&self, _: &Sessions, _: &HeaderMap, _: CookieAttrs<'_>, _: &Arc<SessionData>) {}

    async fn lock_refresh(&self, handle: Option<&str>) -> Result<RefreshLock, StoreError> {
        let Some(h) = handle else {
            return Ok(RefreshLock::Local);
        };
        Ok(match self.lock("lock", h, REFRESH_LOCK_TTL).await? {
            Some(l) => RefreshLock::Held(l),
            None => RefreshLock::Busy,
        })
    }

    async fn unlock_refresh(&self, lock: &LockToken) -> bool {
        self.unlock(lock).await
    }

    async fn reload(
        &self,
        s: &Sessions,
        handle: &str,
    ) -> Result<Option<Arc<SessionData>>, StoreError> {
        let key = self.key_of(handle);
        Ok(self
            .get_by_key(&key)
            .await?
            .and_then(|sealed| s.open(&key, &sealed)))
    }

    async fn jti_seen(&self, key: &str) -> Result<bool, StoreError> {
        self.is_set("jti", key).await
    }

    async fn remember_jti(&self, key: &str, ttl: Duration) -> Result<bool, StoreError> {
        self.set_once("jti", key, ttl).await
    }

    fn start(&self, health: Arc<Health>) {
        self.start_background(health);
    }
}
