//! The in-process cache: a mutex-guarded map with per-entry deadlines, for a single instance.
//!
//! Deadlines are [`tokio::time::Instant`]s: `std::time::Instant`s in production, virtual under
//! a paused tokio clock (`start_paused` tests), so expiry is tested exactly without sleeping.
//! Not the injected [`crate::clock::SharedClock`]: that is the wall clock of timestamps stored
//! in rows; a TTL is a monotonic duration, as it is for Redis (`PX`), whose expiry no
//! wall-clock offset moves either, and both caches keep one contract.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

/// Expired entries are swept after this many writes, so the map cannot grow without bound.
const SWEEP_EVERY: u64 = 4096;

#[derive(Default)]
struct Inner {
    map: HashMap<String, (String, Instant)>,
    writes: u64,
}

/// A cheap-to-clone handle on one shared map.
#[derive(Clone, Default)]
pub struct MemoryCache {
    prefix: String,
    inner: Arc<Mutex<Inner>>,
}

impl MemoryCache {
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
            inner: Arc::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the map half-written (every operation is
        // a single insert/remove), so a poisoned lock is safe to keep using.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn live<'a>(inner: &'a Inner, key: &str) -> Option<&'a String> {
        inner
            .map
            .get(key)
            .filter(|(_, deadline)| *deadline > Instant::now())
            .map(|(v, _)| v)
    }

    fn write(&self, inner: &mut Inner, key: String, value: String, ttl: Duration) {
        inner.writes += 1;
        if inner.writes.is_multiple_of(SWEEP_EVERY) {
            let now = Instant::now();
            inner.map.retain(|_, (_, deadline)| *deadline > now);
        }
        inner.map.insert(key, (value, Instant::now() + ttl));
    }

    pub fn get(&self, key: &str) -> Option<String> {
        let k = format!("{}{key}", self.prefix);
        Self::live(&self.lock(), &k).cloned()
    }

    pub fn set(&self, key: &str, value: &str, ttl: Duration) {
        let mut inner = self.lock();
        self.write(
            &mut inner,
            format!("{}{key}", self.prefix),
            value.to_owned(),
            ttl,
        );
    }

    pub fn set_nx(&self, key: &str, value: &str, ttl: Duration) -> bool {
        let k = format!("{}{key}", self.prefix);
        let mut inner = self.lock();
        if Self::live(&inner, &k).is_some() {
            return false;
        }
        self.write(&mut inner, k, value.to_owned(), ttl);
        true
    }

    pub fn delete(&self, key: &str) {
        self.lock().map.remove(&format!("{}{key}", self.prefix));
    }

    pub fn delete_if_equals(&self, key: &str, expected: &str) -> bool {
        let k = format!("{}{key}", self.prefix);
        let mut inner = self.lock();
        if Self::live(&inner, &k).is_some_and(|v| v == expected) {
            inner.map.remove(&k);
            true
        } else {
            false
        }
    }

    pub fn incr_window(&self, key: &str, window: Duration) -> i64 {
        let k = format!("{}{key}", self.prefix);
        let mut inner = self.lock();
        let now = Instant::now();
        let entry = inner
            .map
            .entry(k)
            .and_modify(|e| {
                if e.1 <= now {
                    *e = ("0".to_owned(), now + window);
                }
            })
            .or_insert_with(|| ("0".to_owned(), now + window));
        let n = entry.0.parse::<i64>().unwrap_or(0) + 1;
        entry.0 = n.to_string();
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[tokio::test(start_paused = true)]
    async fn an_entry_lives_until_its_ttl_and_not_a_millisecond_longer() {
        let cache = MemoryCache::new("t:");
        cache.set("k", "v", 50 * MS);
        tokio::time::advance(49 * MS).await;
        assert_eq!(cache.get("k").as_deref(), Some("v"));
        tokio::time::advance(MS).await;
        assert_eq!(cache.get("k"), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_lock_can_be_taken_again_exactly_when_it_expires() {
        let cache = MemoryCache::new("t:");
        assert!(cache.set_nx("lock", "a", 15_000 * MS));
        tokio::time::advance(14_999 * MS).await;
        assert!(!cache.set_nx("lock", "b", 15_000 * MS));
        assert!(!cache.delete_if_equals("lock", "b"));
        tokio::time::advance(MS).await;
        // Expired: the old owner can no longer release it, a new one takes it.
        assert!(!cache.delete_if_equals("lock", "a"));
        assert!(cache.set_nx("lock", "b", 15_000 * MS));
        assert_eq!(cache.get("lock").as_deref(), Some("b"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_window_counter_restarts_when_its_window_ends() {
        let cache = MemoryCache::new("t:");
        let hour = Duration::from_secs(3600);
        assert_eq!(cache.incr_window("n", hour), 1);
        tokio::time::advance(hour - MS).await;
        // Later increments do not extend the window.
        assert_eq!(cache.incr_window("n", hour), 2);
        tokio::time::advance(MS).await;
        assert_eq!(cache.incr_window("n", hour), 1);
    }
}
