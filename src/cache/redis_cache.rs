//! The Redis cache, shared by every instance. Compare-and-delete and windowed counters are Lua
//! scripts so that each is one atomic step on the server.

use std::time::Duration;

use redis::AsyncCommands;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::domain::Result;

const DELETE_IF_EQUALS: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0";

const INCR_WINDOW: &str = r"
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n";

/// A reconnecting, multiplexed connection plus the key prefix.
#[derive(Clone)]
pub struct RedisCache {
    prefix: String,
    conn: ConnectionManager,
    delete_if_equals: std::sync::Arc<redis::Script>,
    incr_window: std::sync::Arc<redis::Script>,
}

impl RedisCache {
    pub async fn connect(url: &str, prefix: &str) -> anyhow::Result<Self> {
        let client = redis::Client::open(url)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(2);
        let conn = ConnectionManager::new_with_config(client, config).await?;
        Ok(Self {
            prefix: prefix.to_owned(),
            conn,
            delete_if_equals: std::sync::Arc::new(redis::Script::new(DELETE_IF_EQUALS)),
            incr_window: std::sync::Arc::new(redis::Script::new(INCR_WINDOW)),
        })
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    fn ms(d: Duration) -> u64 {
        u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
    }

    pub async fn get(&self, key: &str) -> Result<Option<String>> {
        Ok(self.conn.clone().get(self.key(key)).await?)
    }

    pub async fn set(&self, key: &str, value: &str, ttl: Duration) -> Result<()> {
        let _: () = self
            .conn
            .clone()
            .pset_ex(self.key(key), value, Self::ms(ttl))
            .await?;
        Ok(())
    }

    pub async fn set_nx(&self, key: &str, value: &str, ttl: Duration) -> Result<bool> {
        let reply: Option<String> = redis::cmd("SET")
            .arg(self.key(key))
            .arg(value)
            .arg("NX")
            .arg("PX")
            .arg(Self::ms(ttl))
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(reply.is_some())
    }

    pub async fn delete(&self, key: &str) -> Result<()> {
        let _: () = self.conn.clone().del(self.key(key)).await?;
        Ok(())
    }

    pub async fn delete_if_equals(&self, key: &str, expected: &str) -> Result<bool> {
        let n: i64 = self
            .delete_if_equals
            .key(self.key(key))
            .arg(expected)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(n == 1)
    }

    pub async fn incr_window(&self, key: &str, window: Duration) -> Result<i64> {
        Ok(self
            .incr_window
            .key(self.key(key))
            .arg(Self::ms(window))
            .invoke_async(&mut self.conn.clone())
            .await?)
    }

    pub async fn ping(&self) -> Result<()> {
        let _: String = redis::cmd("PING")
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }
}
