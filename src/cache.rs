//! Expiring caches: [`TtlCache`], a capacity-bounded map whose entries carry their expiry
//! instant, over `quick_cache` (the crate the bearer token cache uses for its speed, so the
//! proxy has one cache crate). Everything that must forget after a while lives here:
//! introspection answers and refusals, callback `state`s and logout-token ids already used,
//! in-flight refreshes.
//!
//! - An expired entry is a miss, and the read that finds it removes it. Expired entries nobody
//!   reads again are swept (one pass over the cache) on an insert once the cache is more than
//!   half full, at most every `ttl / 60` (at least 1 s), so they do not take the room of live
//!   ones; below half full they only cost memory the capacity already allows.
//! - [`TtlCache::try_get_with`] coalesces: concurrent callers of one key share one computation
//!   and its outcome, an error included; an error is handed to the callers that waited for it
//!   and is never cached (the next caller computes again). The entry's TTL comes with the
//!   computed value. A caller that gives up (its future is dropped) passes the computation on
//!   to the next waiter.
//! - Capacity: when a full cache takes a new entry, it evicts one. [`TtlCache::new`] uses
//!   quick_cache's policy (entries read again are kept longest); [`TtlCache::oldest_first`]
//!   evicts the oldest entry first, which for a set of ids with one TTL is the entry closest
//!   to its expiry — the right choice for replay protection (see its docs).
//! - Time is `tokio::time::Instant`, so tests can run on tokio's paused clock.

use std::convert::Infallible;
use std::future::Future;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use quick_cache::sync::{Cache, DefaultLifecycle};
use quick_cache::{DefaultHashBuilder, OptionsBuilder, UnitWeighter};
use tokio::time::Instant;

#[derive(Clone)]
struct Stored<V, E> {
    /// When it was inserted.
    at: Instant,
    /// The entry is a miss from this instant on.
    until: Instant,
    value: Result<V, E>,
}

/// A capacity-bounded cache whose entries expire (see the module docs). `E` is the error a
/// [`Self::try_get_with`] computation may end with (handed to its waiters, never cached).
pub struct TtlCache<K, V, E = Infallible> {
    inner: Cache<K, Stored<V, E>>,
    /// TTL of [`Self::insert`] and [`Self::get_with`].
    ttl: Duration,
    capacity: u64,
    /// Reads that do not make an entry "hot" (see [`Self::oldest_first`]).
    peek: bool,
    born: Instant,
    /// Milliseconds after `born` of the last sweep of expired entries.
    last_sweep: AtomicU64,
    sweep_every: u64,
}

impl<K, V, E> TtlCache<K, V, E>
where
    K: Eq + Hash + Clone,
    V: Clone,
    E: Clone,
{
    /// At most `capacity` entries, inserted for `ttl` unless an insert says otherwise. When
    /// full, quick_cache's policy picks the entry to evict: new entries enter a small "cold"
    /// queue, entries read again move to the "hot" part and stay longest.
    pub fn new(capacity: u64, ttl: Duration) -> Self {
        Self::build(
            capacity.max(1),
            ttl,
            Cache::new(capacity.max(1) as usize),
            false,
        )
    }

    /// At most `capacity` entries; when full, the oldest entry goes first (per shard: the
    /// cache is split into shards by key hash, each holding its share of `capacity`), and
    /// reads do not change that order. For a set of ids remembered for one `ttl` (replay
    /// protection), that is the entry that would expire soonest: an entry is forgotten before
    /// its TTL only when more than `capacity` live entries arrive within one TTL, and then the
    /// oldest are forgotten first. (quick_cache's default policy would evict the newest,
    /// never-read entries first and keep the old ones.)
    pub fn oldest_first(capacity: u64, ttl: Duration) -> Self {
        let capacity = capacity.max(1);
        // No "hot" part: every entry but the first of each shard (quick_cache keeps at least
        // one hot entry per shard; it stays until it expires) enters the cold queue, which
        // evicts in insertion order entries that were never read with `get` (this cache only
        // peeks).
        let inner = OptionsBuilder::new()
            .estimated_items_capacity(capacity as usize)
            .weight_capacity(capacity)
            .hot_allocation(0.0)
            .build()
            .map(|o| {
                Cache::with_options(
                    o,
                    UnitWeighter,
                    DefaultHashBuilder::default(),
                    DefaultLifecycle::default(),
                )
            })
            // Unreachable (every option is set); quick_cache's default policy still bounds it.
            .unwrap_or_else(|_| Cache::new(capacity as usize));
        Self::build(capacity, ttl, inner, true)
    }

    fn build(capacity: u64, ttl: Duration, inner: Cache<K, Stored<V, E>>, peek: bool) -> Self {
        TtlCache {
            inner,
            ttl,
            capacity,
            peek,
            born: Instant::now(),
            last_sweep: AtomicU64::new(0),
            sweep_every: (ttl / 60).max(Duration::from_secs(1)).as_millis() as u64,
        }
    }

    /// The live value under `key`; an expired entry is removed and is a miss.
    pub fn get(&self, key: &K) -> Option<V> {
        let stored = if self.peek {
            self.inner.peek(key)
        } else {
            self.inner.get(key)
        }?;
        let now = Instant::now();
        if stored.until > now {
            // An error is only ever stored for the instant it takes to hand it to waiters.
            return stored.value.ok();
        }
        self.inner.remove_if(key, |s| s.until <= now);
        None
    }

    /// Whether a live entry is under `key`.
    pub fn contains_key(&self, key: &K) -> bool {
        self.get(key).is_some()
    }

    /// Inserts (or replaces) `key` for the cache's TTL.
    pub fn insert(&self, key: K, value: V) {
        self.insert_for(key, value, self.ttl);
    }

    /// Inserts (or replaces) `key` for `ttl`.
    pub fn insert_for(&self, key: K, value: V, ttl: Duration) {
        let now = Instant::now();
        self.sweep_if_due(now);
        self.inner.insert(
            key,
            Stored {
                at: now,
                until: expiry(now, ttl),
                value: Ok(value),
            },
        );
    }

    pub fn remove(&self, key: &K) {
        self.inner.remove(key);
    }

    /// The live value under `key`, or the one `init` computes, kept for the TTL `init` returns
    /// with it. Concurrent callers of one key wait for one computation and all get its
    /// outcome; an `Err` is not cached.
    pub async fn try_get_with<F>(&self, key: K, init: F) -> Result<V, E>
    where
        F: Future<Output = Result<(V, Duration), E>>,
    {
        let started = Instant::now();
        let guard = loop {
            match self.inner.get_value_or_guard_async(&key).await {
                // Live, or computed while this caller waited (even with a zero TTL, or an
                // error: both were produced for the callers waiting).
                Ok(s) if s.until > Instant::now() || s.at >= started => return s.value,
                // Expired, from before this caller asked: remove it and compute.
                Ok(_) => {
                    self.inner
                        .remove_if(&key, |s| s.at < started && s.until <= Instant::now());
                }
                Err(guard) => break guard,
            }
        };
        let outcome = init.await;
        let now = Instant::now();
        self.sweep_if_due(now);
        let (until, value, keep) = match outcome {
            Ok((v, ttl)) => (expiry(now, ttl), Ok(v), !ttl.is_zero()),
            Err(e) => (now, Err(e), false),
        };
        // Hands the outcome to the waiters (they get it from the placeholder).
        let _ = guard.insert(Stored {
            at: now,
            until,
            value: value.clone(),
        });
        if !keep {
            // Already expired: nobody arriving later may get it.
            self.inner.remove_if(&key, |s| s.until <= until);
        }
        value
    }

    /// Removes expired entries when the cache is more than half full, at most every
    /// `sweep_every` (one sweeper at a time).
    fn sweep_if_due(&self, now: Instant) {
        if (self.inner.len() as u64).saturating_mul(2) <= self.capacity {
            return;
        }
        let at = now.saturating_duration_since(self.born).as_millis() as u64;
        let last = self.last_sweep.load(Ordering::Relaxed);
        if at < last.saturating_add(self.sweep_every)
            || self
                .last_sweep
                .compare_exchange(last, at, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        self.inner.retain(|_, s| s.until > now);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.inner.len()
    }
}

/// `now + ttl`; a TTL beyond a century (a typo in a config) is a century, not an overflow.
fn expiry(now: Instant, ttl: Duration) -> Instant {
    const CENTURY: Duration = Duration::from_secs(100 * 365 * 86_400);
    now.checked_add(ttl.min(CENTURY)).unwrap_or(now)
}

impl<K, V> TtlCache<K, V, Infallible>
where
    K: Eq + Hash + Clone,
    V: Clone,
{
    /// [`Self::try_get_with`] for a computation that cannot fail, kept for the cache's TTL.
    pub async fn get_with(&self, key: K, init: impl Future<Output = V>) -> V {
        match self
            .try_get_with(key, async { Ok((init.await, self.ttl)) })
            .await
        {
            Ok(v) => v,
            Err(never) => match never {},
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;

    const SEC: Duration = Duration::from_secs(1);

    /// Expiry: live until its TTL, a miss (and removed) from then on.
    #[tokio::test(start_paused = true)]
    async fn entries_expire_after_their_ttl() {
        let c: TtlCache<&str, u32> = TtlCache::new(100, 10 * SEC);
        c.insert("a", 1);
        c.insert_for("b", 2, 30 * SEC);
        tokio::time::advance(9 * SEC).await;
        assert_eq!(c.get(&"a"), Some(1));
        assert!(c.contains_key(&"b"));
        tokio::time::advance(SEC).await;
        assert_eq!(c.get(&"a"), None, "expired at exactly its TTL");
        assert_eq!(c.len(), 1, "the expired entry was removed by the read");
        assert_eq!(c.get(&"b"), Some(2), "per-entry TTL");
        tokio::time::advance(20 * SEC).await;
        assert!(!c.contains_key(&"b"));
        assert_eq!(c.len(), 0);
        c.insert_for("c", 3, Duration::MAX);
        assert_eq!(c.get(&"c"), Some(3), "a huge TTL does not overflow");
    }

    /// Per-entry TTL from the computation; a hit does not compute; an expired entry is
    /// computed again; a zero TTL is not kept.
    #[tokio::test(start_paused = true)]
    async fn computed_entries_carry_their_ttl() {
        let c: TtlCache<u8, u32, ()> = TtlCache::new(100, 60 * SEC);
        let calls = AtomicUsize::new(0);
        let compute = |v: u32, ttl: Duration| {
            let calls = &calls;
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                Ok((v, ttl))
            }
        };
        assert_eq!(c.try_get_with(1, compute(1, 5 * SEC)).await, Ok(1));
        assert_eq!(c.try_get_with(1, compute(9, 5 * SEC)).await, Ok(1));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        tokio::time::advance(5 * SEC).await;
        assert_eq!(c.try_get_with(1, compute(2, 5 * SEC)).await, Ok(2));
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert_eq!(c.try_get_with(3, compute(3, Duration::ZERO)).await, Ok(3));
        assert_eq!(c.get(&3), None);
        assert_eq!(c.len(), 1);
    }

    /// Coalescing: N concurrent callers of one key → one computation, all get its value.
    #[tokio::test(start_paused = true)]
    async fn concurrent_callers_share_one_computation() {
        let c: Arc<TtlCache<u8, u32, ()>> = Arc::new(TtlCache::new(100, 60 * SEC));
        let calls = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let (c, calls) = (c.clone(), calls.clone());
                tokio::spawn(async move {
                    c.try_get_with(7, async {
                        calls.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(SEC).await;
                        Ok((42, 60 * SEC))
                    })
                    .await
                })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap(), Ok(42));
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    /// Errors: shared with the callers that waited for them, never cached.
    #[tokio::test(start_paused = true)]
    async fn errors_are_shared_but_not_cached() {
        let c: Arc<TtlCache<u8, u32, &'static str>> = Arc::new(TtlCache::new(100, 60 * SEC));
        let calls = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..10)
            .map(|_| {
                let (c, calls) = (c.clone(), calls.clone());
                tokio::spawn(async move {
                    c.try_get_with(7, async {
                        calls.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(SEC).await;
                        Err("down")
                    })
                    .await
                })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap(), Err("down"));
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1, "waiters shared the error");
        assert_eq!(c.len(), 0, "the error is not kept");
        assert_eq!(c.get(&7), None);
        let again = c.try_get_with(7, async { Ok((5, 60 * SEC)) }).await;
        assert_eq!(again, Ok(5), "the next caller computes again");
        assert_eq!(c.get(&7), Some(5));
    }

    /// A caller that gives up mid-computation passes the computation on to a waiter.
    #[tokio::test(start_paused = true)]
    async fn a_cancelled_computation_is_taken_over() {
        let c: Arc<TtlCache<u8, u32, ()>> = Arc::new(TtlCache::new(100, 60 * SEC));
        let first = {
            let c = c.clone();
            tokio::spawn(async move {
                c.try_get_with(1, async {
                    tokio::time::sleep(60 * SEC).await;
                    Ok((1, 60 * SEC))
                })
                .await
            })
        };
        tokio::task::yield_now().await;
        let second = {
            let c = c.clone();
            tokio::spawn(async move { c.try_get_with(1, async { Ok((2, 60 * SEC)) }).await })
        };
        tokio::task::yield_now().await;
        first.abort();
        assert_eq!(second.await.unwrap(), Ok(2));
    }

    /// `get_with` (infallible): one value per key for the cache's TTL; `remove` forgets it.
    #[tokio::test(start_paused = true)]
    async fn get_with_and_remove() {
        let c: TtlCache<u8, u32> = TtlCache::new(100, 10 * SEC);
        assert_eq!(c.get_with(1, async { 1 }).await, 1);
        assert_eq!(c.get_with(1, async { 2 }).await, 1);
        c.remove(&1);
        assert_eq!(c.get_with(1, async { 3 }).await, 3);
        tokio::time::advance(10 * SEC).await;
        assert_eq!(c.get_with(1, async { 4 }).await, 4);
    }

    /// Replay sets: every entry is remembered for its whole TTL below capacity; over it, the
    /// oldest go first and the newest stay.
    #[tokio::test(start_paused = true)]
    async fn oldest_first_keeps_the_newest() {
        let c: TtlCache<u32, ()> = TtlCache::oldest_first(1000, 60 * SEC);
        // Half full (shards hold their share each: half leaves room for an uneven spread).
        for k in 0..500 {
            c.insert(k, ());
        }
        tokio::time::advance(59 * SEC).await;
        assert!((0..500).all(|k| c.contains_key(&k)), "all kept for the TTL");
        for k in 500..10_000 {
            c.insert(k, ());
            // reads do not change the order
            let _ = c.contains_key(&k);
        }
        assert!(c.len() <= 1000);
        assert!(
            (9_900..10_000).all(|k| c.contains_key(&k)),
            "the newest stay"
        );
        // ... except the one "hot" entry per shard, kept (longer, never shorter) until it expires
        let old: Vec<u32> = (0..5_000).filter(|k| c.contains_key(k)).collect();
        assert!(
            old.len() <= c.inner.num_shards(),
            "the oldest went: {old:?}"
        );
    }

    /// Expired entries are swept once the cache is half full, so they do not take the room
    /// of live ones.
    #[tokio::test(start_paused = true)]
    async fn expired_entries_are_swept() {
        let c: TtlCache<u32, ()> = TtlCache::oldest_first(1000, 10 * SEC);
        for k in 0..600 {
            c.insert(k, ());
        }
        tokio::time::advance(10 * SEC).await;
        c.insert(10_000, ());
        assert_eq!(c.len(), 1, "the 600 expired entries were swept");
    }
}
