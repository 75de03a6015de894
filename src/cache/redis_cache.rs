//! The Redis cache, shared by every instance. Compare-and-delete and windowed counters are Lua
//! scripts so that each is one atomic step on the server.
//!
//! Every command is bounded: it fails after `redis_timeout_ms` however Redis misbehaves
//! (down, refusing, accepting and never answering; the connection manager reconnects in the
//! background). After a failure the cache reports itself [`RedisCache::degraded`] for
//! [`COOL_OFF`] (or until a command succeeds): callers for whom Redis is optional (the login
//! path) then skip it instead of each waiting out the timeout; the others (access tokens)
//! still ask, each command bounded.

use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use redis::AsyncCommands;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::time::Instant;

use crate::domain::throttle::Throttle;
use crate::domain::{Error, Result};

const DELETE_IF_EQUALS: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0";

const INCR_WINDOW: &str = r"
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n";

/// Increments each key in turn (expiring it `ARGV[2i-1]` ms after its first increment) and
/// stops after the first whose count passes its limit `ARGV[2i]` (0: none): the counts so far.
const COUNT_IN_WINDOWS: &str = r"
local out = {}
for i, key in ipairs(KEYS) do
  local n = redis.call('INCR', key)
  if n == 1 then redis.call('PEXPIRE', key, ARGV[2 * i - 1]) end
  out[i] = n
  local limit = tonumber(ARGV[2 * i])
  if limit > 0 and n > limit then return out end
end
return out";

/// How long the cache reports itself degraded after a command failed.
pub const COOL_OFF: Duration = Duration::from_secs(1);
/// At most one warning about Redis this often.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// A reconnecting, multiplexed connection plus the key prefix.
#[derive(Clone)]
pub struct RedisCache {
    prefix: String,
    conn: ConnectionManager,
    timeout: Duration,
    health: std::sync::Arc<Health>,
    delete_if_equals: std::sync::Arc<redis::Script>,
    incr_window: std::sync::Arc<redis::Script>,
    count_in_windows: std::sync::Arc<redis::Script>,
}

/// Whether Redis failed lately, and the throttle of the warnings about it.
struct Health {
    origin: Instant,
    /// Milliseconds after `origin` until which the cache is degraded; 0 when nothing failed
    /// since the last success.
    skip_until_ms: AtomicU64,
    warned: Mutex<Throttle>,
}

impl Health {
    fn new() -> Health {
        Health {
            origin: Instant::now(),
            skip_until_ms: AtomicU64::new(0),
            warned: Mutex::new(Throttle::new(WARN_EVERY)),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn skipping(&self) -> bool {
        self.now_ms() < self.skip_until_ms.load(Relaxed)
    }

    fn failed(&self, op: &'static str, why: &str) {
        let until = self.now_ms() + u64::try_from(COOL_OFF.as_millis()).unwrap_or(1_000);
        self.skip_until_ms.store(until, Relaxed);
        metrics::counter!("wxunion_cache_errors_total", "op" => op).increment(1);
        metrics::gauge!("wxunion_cache_up").set(0.0);
        let report = self
            .warned
            .lock()
            .map(|mut t| t.note(std::time::Instant::now()))
            .unwrap_or(None);
        if let Some(held) = report {
            tracing::warn!(
                op,
                error = why,
                failures_not_logged = held,
                cool_off_ms = COOL_OFF.as_millis() as u64,
                "Redis failed (logged at most once a minute)"
            );
        }
    }

    fn answered(&self) {
        if self.skip_until_ms.swap(0, Relaxed) != 0 {
            metrics::gauge!("wxunion_cache_up").set(1.0);
            if let Ok(mut t) = self.warned.lock()
                && t.reported()
            {
                t.reset();
                tracing::info!("Redis answers again");
            }
        }
    }
}

/// Whether a Redis error says the server is unreachable or misbehaving (as opposed to a
/// command error): only these make the cache skip Redis for a while.
fn unavailable(e: &redis::RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_refusal()
        || e.is_connection_dropped()
        || e.is_timeout()
        || e.is_unrecoverable_error()
}

impl RedisCache {
    /// Connects (the first connection must succeed within a few `timeout`s).
    pub async fn connect(url: &str, prefix: &str, timeout: Duration) -> anyhow::Result<Self> {
        let client = redis::Client::open(url)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(2)
            .set_min_delay(Duration::from_millis(10))
            .set_max_delay(timeout);
        let conn = ConnectionManager::new_with_config(client, config).await?;
        metrics::gauge!("wxunion_cache_up").set(1.0);
        Ok(Self {
            prefix: prefix.to_owned(),
            conn,
            timeout,
            health: std::sync::Arc::new(Health::new()),
            delete_if_equals: std::sync::Arc::new(redis::Script::new(DELETE_IF_EQUALS)),
            incr_window: std::sync::Arc::new(redis::Script::new(INCR_WINDOW)),
            count_in_windows: std::sync::Arc::new(redis::Script::new(COUNT_IN_WINDOWS)),
        })
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    fn ms(d: Duration) -> u64 {
        u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
    }

    /// Whether a command failed less than [`COOL_OFF`] ago (and none succeeded since).
    pub fn degraded(&self) -> bool {
        self.health.skipping()
    }

    /// Runs one command within the timeout, noting how it went.
    async fn run<T>(
        &self,
        op: &'static str,
        command: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T> {
        match tokio::time::timeout(self.timeout, command).await {
            Ok(Ok(v)) => {
                self.health.answered();
                Ok(v)
            }
            Ok(Err(e)) => {
                if unavailable(&e) {
                    self.health.failed(op, &e.to_string());
                }
                Err(e.into())
            }
            Err(_) => {
                let why = format!("no answer within {} ms", self.timeout.as_millis());
                self.health.failed(op, &why);
                Err(Error::internal(anyhow::anyhow!("Redis: {why}")))
            }
        }
    }

    pub async fn get(&self, key: &str) -> Result<Option<String>> {
        let mut conn = self.conn.clone();
        let key = self.key(key);
        self.run("get", async move { conn.get(key).await }).await
    }

    pub async fn set(&self, key: &str, value: &str, ttl: Duration) -> Result<()> {
        let mut conn = self.conn.clone();
        let key = self.key(key);
        self.run("set", async move {
            conn.pset_ex(key, value, Self::ms(ttl)).await
        })
        .await
    }

    pub async fn set_nx(&self, key: &str, value: &str, ttl: Duration) -> Result<bool> {
        let mut conn = self.conn.clone();
        let cmd = redis::cmd("SET")
            .arg(self.key(key))
            .arg(value)
            .arg("NX")
            .arg("PX")
            .arg(Self::ms(ttl))
            .to_owned();
        let reply: Option<String> = self
            .run("set_nx", async move { cmd.query_async(&mut conn).await })
            .await?;
        Ok(reply.is_some())
    }

    pub async fn delete(&self, key: &str) -> Result<()> {
        let mut conn = self.conn.clone();
        let key = self.key(key);
        self.run("delete", async move { conn.del(key).await })
            .await
            .map(|_: usize| ())
    }

    pub async fn delete_if_equals(&self, key: &str, expected: &str) -> Result<bool> {
        let mut conn = self.conn.clone();
        let mut invocation = self.delete_if_equals.key(self.key(key));
        invocation.arg(expected);
        let n: i64 = self
            .run("delete_if_equals", async move {
                invocation.invoke_async(&mut conn).await
            })
            .await?;
        Ok(n == 1)
    }

    pub async fn incr_window(&self, key: &str, window: Duration) -> Result<i64> {
        let mut conn = self.conn.clone();
        let mut invocation = self.incr_window.key(self.key(key));
        invocation.arg(Self::ms(window));
        self.run("incr_window", async move {
            invocation.invoke_async(&mut conn).await
        })
        .await
    }

    /// See [`super::Cache::count_in_windows`]: one round trip for every counter.
    pub async fn count_in_windows(&self, counters: &[(String, Duration, u64)]) -> Result<Vec<i64>> {
        let Some(((first, _, _), rest)) = counters.split_first() else {
            return Ok(Vec::new());
        };
        let mut conn = self.conn.clone();
        let mut invocation = self.count_in_windows.key(self.key(first));
        for (key, _, _) in rest {
            invocation.key(self.key(key));
        }
        for (_, window, limit) in counters {
            invocation.arg(Self::ms(*window)).arg(*limit);
        }
        self.run("count_in_windows", async move {
            invocation.invoke_async(&mut conn).await
        })
        .await
    }

    pub async fn ping(&self) -> Result<()> {
        let mut conn = self.conn.clone();
        self.run("ping", async move {
            redis::cmd("PING").query_async::<String>(&mut conn).await
        })
        .await
        .map(|_| ())
    }
}
