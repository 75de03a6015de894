//! The shared cache: access tokens, session keys, locks and counters.
//!
//! Redis when `redis_url` is set, so that many instances share one token per app and one lock;
//! an in-process map otherwise, which is only correct for a single instance. Both speak the
//! same small vocabulary, chosen so that locks and compare-and-delete are atomic on each.
//! Redis commands are bounded (see `redis_cache`): a Redis that is down or stalled costs a
//! caller at most `redis_timeout_ms`; callers that can do without it check
//! [`Cache::degraded`] and skip it for a second after a failure.

mod memory;
mod redis_cache;

use std::time::Duration;

pub use memory::MemoryCache;
pub use redis_cache::RedisCache;

use crate::domain::Result;

/// The default bound of one Redis command (`redis_timeout_ms`).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(500);

impl From<redis::RedisError> for crate::domain::Error {
    fn from(e: redis::RedisError) -> Self {
        crate::domain::Error::internal(e)
    }
}

/// One of the two cache implementations; every key is namespaced by the configured prefix.
#[derive(Clone)]
pub enum Cache {
    Memory(MemoryCache),
    Redis(RedisCache),
}

impl Cache {
    /// Connects to Redis when a URL is given, else builds the in-process cache; Redis
    /// commands are bounded by [`DEFAULT_TIMEOUT`].
    pub async fn connect(redis_url: Option<&str>, prefix: &str) -> anyhow::Result<Cache> {
        Self::connect_bounded(redis_url, prefix, DEFAULT_TIMEOUT).await
    }

    /// Like [`Cache::connect`], each Redis command failing after `timeout`.
    pub async fn connect_bounded(
        redis_url: Option<&str>,
        prefix: &str,
        timeout: Duration,
    ) -> anyhow::Result<Cache> {
        Ok(match redis_url {
            Some(url) => Cache::Redis(RedisCache::connect(url, prefix, timeout).await?),
            None => Cache::Memory(MemoryCache::new(prefix)),
        })
    }

    /// Whether a Redis command failed in the last second (and none succeeded since): callers
    /// that can do without the cache skip it meanwhile. The in-process cache never is.
    pub fn degraded(&self) -> bool {
        match self {
            Cache::Memory(_) => false,
            Cache::Redis(c) => c.degraded(),
        }
    }

    /// A short name for logs and `/readyz`.
    pub fn kind(&self) -> &'static str {
        match self {
            Cache::Memory(_) => "memory",
            Cache::Redis(_) => "redis",
        }
    }

    pub async fn get(&self, key: &str) -> Result<Option<String>> {
        let v = match self {
            Cache::Memory(c) => Ok(c.get(key)),
            Cache::Redis(c) => c.get(key).await,
        };
        let hit = if matches!(v, Ok(Some(_))) {
            "hit"
        } else {
            "miss"
        };
        metrics::counter!("wxunion_cache_lookups_total", "result" => hit).increment(1);
        v
    }

    pub async fn set(&self, key: &str, value: &str, ttl: Duration) -> Result<()> {
        match self {
            Cache::Memory(c) => {
                c.set(key, value, ttl);
                Ok(())
            }
            Cache::Redis(c) => c.set(key, value, ttl).await,
        }
    }

    /// Sets the key only if it is absent: the building block of locks and first-writer-wins.
    pub async fn set_nx(&self, key: &str, value: &str, ttl: Duration) -> Result<bool> {
        match self {
            Cache::Memory(c) => Ok(c.set_nx(key, value, ttl)),
            Cache::Redis(c) => c.set_nx(key, value, ttl).await,
        }
    }

    pub async fn delete(&self, key: &str) -> Result<()> {
        match self {
            Cache::Memory(c) => {
                c.delete(key);
                Ok(())
            }
            Cache::Redis(c) => c.delete(key).await,
        }
    }

    /// Deletes the key only while it still holds `expected`: releasing one's own lock, or
    /// dropping a token only if it is the one that failed (never a newer one).
    pub async fn delete_if_equals(&self, key: &str, expected: &str) -> Result<bool> {
        match self {
            Cache::Memory(c) => Ok(c.delete_if_equals(key, expected)),
            Cache::Redis(c) => c.delete_if_equals(key, expected).await,
        }
    }

    /// Increments a counter that expires `window` after its first increment.
    pub async fn incr_window(&self, key: &str, window: Duration) -> Result<i64> {
        match self {
            Cache::Memory(c) => Ok(c.incr_window(key, window)),
            Cache::Redis(c) => c.incr_window(key, window).await,
        }
    }

    /// Counts one call in each of several windowed counters, in order, and stops after the
    /// first whose count passes its limit (`(key, window, limit)`, limit 0: none): the counts
    /// of the counters reached, in one step (one round trip on Redis). A counter expires
    /// `window` after its first count.
    pub async fn count_in_windows(&self, counters: &[(String, Duration, u64)]) -> Result<Vec<i64>> {
        match self {
            Cache::Memory(c) => {
                let mut out = Vec::with_capacity(counters.len());
                for (key, window, limit) in counters {
                    let n = c.incr_window(key, *window);
                    out.push(n);
                    if *limit > 0 && u64::try_from(n).unwrap_or(0) > *limit {
                        break;
                    }
                }
                Ok(out)
            }
            Cache::Redis(c) => c.count_in_windows(counters).await,
        }
    }

    /// Proves the cache answers, for `/readyz`.
    pub async fn ping(&self) -> Result<()> {
        match self {
            Cache::Memory(_) => Ok(()),
            Cache::Redis(c) => c.ping().await,
        }
    }
}
