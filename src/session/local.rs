//! The Redis store's local cache of opened sessions (`session.local_cache`, 1 s by default):
//! a request whose session this process read from Redis less than that long ago skips the
//! `GET` and the unsealing. Everything else still runs on every request (idle timeout,
//! absolute lifetime, refresh timing, the roles-rule fingerprint, the provider checks).
//!
//! Revocation stays cross-replica, through Redis pub/sub:
//! - a replica that ends or rewrites a session (logout, back-channel logout, refresh, idle
//!   slide, an expired session's removal) publishes the session's Redis key on
//!   `<prefix>:invalidate` in the same pipeline as the write, drops its own entry once the
//!   reply is in, and only then answers;
//! - every replica keeps one subscription to that channel ([`super::pubsub::Link`]) and drops
//!   the entry of each key it reads; a cache hit first reads, without waiting, whatever the
//!   link has received ([`LocalCache::get`]);
//! - while the subscription is down (not yet made, broken, silent for a PING, being made
//!   again, or — behind Sentinel — on a server that is no longer the master) the cache is off:
//!   every request reads Redis; the cache starts empty when the subscription is back;
//! - an entry is filled only when no invalidation was applied between the moment its `GET`
//!   was sent and the fill ([`LocalCache::ticket`]): a `GET` answered before a logout and a
//!   message read before its fill cannot leave the ended session behind;
//! - no entry is served after `local_cache` (at most 10 s), whatever happens to the link.
//!
//! Bounded: at most [`MAX_ENTRIES`] sessions and [`MAX_BYTES`] of sealed size; when either is
//! reached the cache is emptied.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use super::pubsub::Link;
use super::{SessionData, TailHash};

/// Most sessions kept.
pub const MAX_ENTRIES: usize = 10_000;
/// Most bytes of sealed sessions kept (their sealed size, a measure of what they hold).
pub const MAX_BYTES: usize = 32 << 20;
/// A `PING` on the subscription this often…
const PING_EVERY: Duration = Duration::from_secs(1);
/// …must be answered within this, or the link counts as broken.
const PONG_WITHIN: Duration = Duration::from_secs(2);

pub struct LocalCache {
    ttl: Duration,
    state: Mutex<State>,
    link: Mutex<Slot>,
}

struct State {
    map: HashMap<Box<str>, Entry, TailHash>,
    bytes: usize,
    /// Counts invalidations applied and link changes: a fill is refused when it moved since
    /// the fill's `GET` was sent.
    epoch: u64,
    /// The subscription is up: the cache may be used.
    up: bool,
}

struct Entry {
    data: Arc<SessionData>,
    at: Instant,
    size: usize,
}

/// The subscription and the waker of the task that keeps it.
struct Slot {
    link: Option<Link>,
    waker: Waker,
}

impl LocalCache {
    pub fn new(ttl: Duration) -> Self {
        LocalCache {
            ttl,
            state: Mutex::new(State {
                map: HashMap::default(),
                bytes: 0,
                epoch: 0,
                up: false,
            }),
            link: Mutex::new(Slot {
                link: None,
                waker: Waker::noop().clone(),
            }),
        }
    }

    /// The session under Redis key `key`, if this process read it less than `ttl` ago and the
    /// subscription is up. Applies the invalidations received so far first.
    pub fn get(&self, key: &str) -> Option<Arc<SessionData>> {
        if !self.drain() {
            return None;
        }
        let mut st = self.state.lock().ok()?;
        if !st.up {
            return None;
        }
        let fresh = st.map.get(key)?.at.elapsed() < self.ttl;
        if fresh {
            return st.map.get(key).map(|e| e.data.clone());
        }
        if let Some(e) = st.map.remove(key) {
            st.bytes -= e.size;
        }
        None
    }

    /// Taken before a `GET` whose answer may fill the cache ([`Self::fill`]); `None` while the
    /// subscription is down.
    pub fn ticket(&self) -> Option<u64> {
        let st = self.state.lock().ok()?;
        st.up.then_some(st.epoch)
    }

    /// Keeps `data` (read from Redis with `ticket`) under `key`, unless an invalidation was
    /// applied or the link changed since the ticket was taken. `size`: its sealed size.
    pub fn fill(&self, ticket: u64, key: String, data: &Arc<SessionData>, size: usize) {
        let Ok(mut st) = self.state.lock() else {
            return;
        };
        if !st.up || st.epoch != ticket {
            return;
        }
        if st.map.len() >= MAX_ENTRIES || st.bytes + size > MAX_BYTES {
            st.map.clear();
            st.bytes = 0;
        }
        let e = Entry {
            data: data.clone(),
            at: Instant::now(),
            size,
        };
        st.bytes += size;
        if let Some(old) = st.map.insert(key.into_boxed_str(), e) {
            st.bytes -= old.size;
        }
    }

    /// Drops the entry of `key` (a session ended or rewritten, here or on another replica).
    pub fn invalidate(&self, key: &[u8]) {
        if let Ok(mut st) = self.state.lock() {
            st.epoch += 1;
            let removed = std::str::from_utf8(key).ok().and_then(|k| st.map.remove(k));
            if let Some(e) = removed {
                st.bytes -= e.size;
            }
        }
    }

    /// The subscription came up (`true`) or went down: either way the cache starts empty.
    fn set_up(&self, up: bool) {
        if let Ok(mut st) = self.state.lock() {
            st.epoch += 1;
            st.map.clear();
            st.bytes = 0;
            st.up = up;
        }
    }

    /// Applies what the subscription has received, without waiting. False when there is no
    /// subscription (or it just broke): the cache must not be used.
    fn drain(&self) -> bool {
        let Ok(mut slot) = self.link.lock() else {
            return false;
        };
        let slot = &mut *slot;
        let Some(link) = slot.link.as_mut() else {
            return false;
        };
        // The keeper's waker: whatever this read leaves pending wakes the keeper, as if it
        // had read itself.
        let mut cx = Context::from_waker(&slot.waker);
        match link.poll_messages(&mut cx, |k| self.invalidate(k)) {
            Poll::Pending => true,
            Poll::Ready(why) => {
                slot.link = None;
                self.set_up(false);
                tracing::warn!(error = %why, "session store: the local cache is off until the invalidation channel is back");
                slot.waker.wake_by_ref();
                false
            }
        }
    }

    /// Reads the subscription while the runtime wakes this task for it.
    fn poll_link(&self, cx: &mut Context<'_>) -> Poll<String> {
        let Ok(mut slot) = self.link.lock() else {
            return Poll::Ready("the cache's lock is poisoned".into());
        };
        let slot = &mut *slot;
        if !slot.waker.will_wake(cx.waker()) {
            slot.waker = cx.waker().clone();
        }
        let Some(link) = slot.link.as_mut() else {
            return Poll::Ready("the link broke while a request read it".into());
        };
        link.poll_messages(cx, |k| self.invalidate(k))
    }

    /// Keeps `link` as the subscription until it breaks, or `keep` (asked every
    /// [`PING_EVERY`]) says to let it go; returns why it ended. The cache is on meanwhile.
    pub async fn serve(
        &self,
        link: Link,
        mut keep: impl FnMut(&str) -> Result<(), String>,
    ) -> String {
        let addr = link.addr.clone();
        match self.link.lock() {
            Ok(mut slot) => slot.link = Some(link),
            Err(_) => return "the cache's lock is poisoned".into(),
        }
        self.set_up(true);
        tracing::info!(server = %addr, "session store: local cache on (invalidations subscribed)");
        let mut tick = tokio::time::interval(PING_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        let why = loop {
            tokio::select! {
                why = std::future::poll_fn(|cx| self.poll_link(cx)) => break why,
                _ = tick.tick() => {
                    if let Err(why) = keep(&addr) {
                        break why;
                    }
                    let pinged = match self.link.lock() {
                        Ok(mut slot) => match slot.link.as_mut() {
                            Some(l) => l.ping(PONG_WITHIN),
                            None => Err("the link broke while a request read it".into()),
                        },
                        Err(_) => Err("the cache's lock is poisoned".into()),
                    };
                    if let Err(why) = pinged {
                        break why;
                    }
                }
            }
        };
        if let Ok(mut slot) = self.link.lock() {
            slot.link = None;
        }
        self.set_up(false);
        why
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> Arc<SessionData> {
        Arc::new(
            serde_json::from_value(serde_json::json!({
                "id": "x", "provider": "p", "sub": "alice", "access_token": "t",
                "created_at": 1, "last_seen": 1, "access_issued_at": 1
            }))
            .unwrap(),
        )
    }

    /// A cache whose subscription counts as up (no socket: `drain` is not asked).
    fn up(ttl: Duration) -> LocalCache {
        let c = LocalCache::new(ttl);
        c.set_up(true);
        c
    }

    fn cached(c: &LocalCache, key: &str) -> bool {
        let st = c.state.lock().unwrap();
        st.up && st.map.contains_key(key)
    }

    #[test]
    fn fills_only_while_up_and_without_an_invalidation_since_the_ticket() {
        let c = LocalCache::new(Duration::from_secs(1));
        assert_eq!(c.ticket(), None, "down: no ticket, no fill");
        c.set_up(true);
        let t = c.ticket().unwrap();
        c.fill(t, "k".into(), &session(), 10);
        assert!(cached(&c, "k"));

        // A GET sent before an invalidation (of any key) must not fill.
        let t = c.ticket().unwrap();
        c.invalidate(b"k");
        assert!(!cached(&c, "k"));
        c.fill(t, "k".into(), &session(), 10);
        assert!(!cached(&c, "k"), "a stale GET answer filled the cache");

        // A link change between the ticket and the fill refuses it too.
        let t = c.ticket().unwrap();
        c.set_up(false);
        c.set_up(true);
        c.fill(t, "k".into(), &session(), 10);
        assert!(!cached(&c, "k"));
    }

    #[test]
    fn bounded_in_count_and_bytes() {
        let c = up(Duration::from_secs(1));
        for i in 0..MAX_ENTRIES + 5 {
            let t = c.ticket().unwrap();
            c.fill(t, format!("k{i}"), &session(), 1);
        }
        assert!(c.state.lock().unwrap().map.len() <= MAX_ENTRIES);
        let t = c.ticket().unwrap();
        c.fill(t, "big".into(), &session(), MAX_BYTES);
        let t = c.ticket().unwrap();
        c.fill(t, "more".into(), &session(), 1);
        let st = c.state.lock().unwrap();
        assert!(st.bytes <= MAX_BYTES && !st.map.contains_key("big"));
    }

    #[test]
    fn down_clears_and_up_starts_empty() {
        let c = up(Duration::from_secs(1));
        let t = c.ticket().unwrap();
        c.fill(t, "k".into(), &session(), 10);
        c.set_up(false);
        assert!(c.get("k").is_none());
        c.set_up(true);
        assert!(!cached(&c, "k"));
    }
}
