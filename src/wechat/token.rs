//! Access tokens shared by every instance.
//!
//! One token per app lives in the cache until five minutes before WeChat's expiry. A miss is
//! filled by exactly one caller across all instances: it takes a cache lock, fetches, stores;
//! the others wait for the new value instead of fetching their own (each fetch from
//! `cgi-bin/token` would invalidate the previous token after five minutes, and both endpoints
//! have daily quotas). When WeChat says a token is invalid (40001/42001/40014) it is dropped
//! only if the cache still holds that very token, so a slow instance can never throw away a
//! token another instance just refreshed; forced refreshes are capped per app and hour.

use std::future::Future;
use std::time::{Duration, Instant};

use super::client::{CallError, WechatClient};
use crate::cache::Cache;
use crate::domain::{AppConfig, TokenEndpoint};
use crate::domain::{Error, Result};

/// Refresh this long before WeChat's stated expiry.
const EARLY: i64 = 300;
/// How long a refresh may hold the lock, and how long others wait for it.
const LOCK_TTL: Duration = Duration::from_secs(15);
const POLL: Duration = Duration::from_millis(20);

/// The shared token manager.
#[derive(Clone)]
pub struct AccessTokens {
    cache: Cache,
    client: WechatClient,
    max_forced_per_hour: i64,
}

impl AccessTokens {
    pub fn new(cache: Cache, client: WechatClient, max_forced_per_hour: u64) -> Self {
        Self {
            cache,
            client,
            max_forced_per_hour: i64::try_from(max_forced_per_hour).unwrap_or(i64::MAX),
        }
    }

    fn key(app: &AppConfig) -> String {
        format!("token:{}", app.app_id)
    }

    /// A valid token for the app, from the cache or from one shared refresh.
    pub async fn get(&self, app: &AppConfig) -> Result<String> {
        self.obtain(app, None).await
    }

    /// Runs `call` with a token; on a token errcode, drops that token (only that one),
    /// refreshes once and runs `call` once more.
    pub async fn with_token<T, F, Fut>(&self, app: &AppConfig, call: F) -> Result<T>
    where
        F: Fn(String) -> Fut,
        Fut: Future<Output = std::result::Result<T, CallError>>,
    {
        let token = self.get(app).await?;
        match call(token.clone()).await {
            Err(e) if e.is_token_error() => {
                // Past the cap, keep the (failing) token cached: dropping it would make every
                // later call fetch a new one, which is the quota burn the cap exists to stop.
                if self.forced_refreshes(app).await? >= self.max_forced_per_hour {
                    return Err(capped(app));
                }
                tracing::info!(app_id = %app.app_id, error = ?e, "access token rejected; refreshing");
                self.cache.delete_if_equals(&Self::key(app), &token).await?;
                let fresh = self.obtain(app, Some(&token)).await?;
                Ok(call(fresh).await?)
            }
            other => Ok(other?),
        }
    }

    async fn forced_refreshes(&self, app: &AppConfig) -> Result<i64> {
        Ok(self
            .cache
            .get(&Self::forced_key(app))
            .await?
            .and_then(|n| n.parse().ok())
            .unwrap_or(0))
    }

    fn forced_key(app: &AppConfig) -> String {
        format!("token-forced:{}", app.app_id)
    }

    async fn obtain(&self, app: &AppConfig, failed: Option<&str>) -> Result<String> {
        let key = Self::key(app);
        let lock_key = format!("token-lock:{}", app.app_id);
        let deadline = Instant::now() + LOCK_TTL;
        loop {
            if let Some(t) = self.cache.get(&key).await?
                && Some(t.as_str()) != failed
            {
                return Ok(t);
            }
            let owner = uuid::Uuid::new_v4().to_string();
            if self.cache.set_nx(&lock_key, &owner, LOCK_TTL).await? {
                let result = match self.cache.get(&key).await? {
                    Some(t) if Some(t.as_str()) != failed => Ok(t),
                    _ => self.refresh(app, failed).await,
                };
                self.cache.delete_if_equals(&lock_key, &owner).await?;
                return result;
            }
            if Instant::now() > deadline {
                return Err(Error::Upstream {
                    errcode: None,
                    errmsg: None,
                    detail: "timed out waiting for another instance to refresh the access token"
                        .into(),
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Fetches and caches a token; called with the lock held.
    async fn refresh(&self, app: &AppConfig, failed: Option<&str>) -> Result<String> {
        if failed.is_some() {
            let n = self
                .cache
                .incr_window(
                    &format!("token-forced:{}", app.app_id),
                    Duration::from_secs(3600),
                )
                .await?;
            if n > self.max_forced_per_hour {
                tracing::error!(app_id = %app.app_id, "forced token refresh cap reached; check the app secret");
                return Err(Error::RateLimited {
                    errcode: None,
                    errmsg: Some("forced access-token refreshes capped for this hour".into()),
                });
            }
        }
        let mut issued = self.client.fetch_token(app, false).await?;
        if app.token_endpoint == TokenEndpoint::Stable
            && failed == Some(issued.access_token.as_str())
        {
            // stable_token's normal mode hands back the token WeChat just rejected: only a
            // forced refresh replaces it.
            issued = self.client.fetch_token(app, true).await?;
        }
        let ttl = (issued.expires_in - EARLY).max(30);
        self.cache
            .set(
                &Self::key(app),
                &issued.access_token,
                Duration::from_secs(ttl as u64),
            )
            .await?;
        metrics::counter!("wxunion_access_token_refreshes_total", "forced" => failed.is_some().to_string())
            .increment(1);
        Ok(issued.access_token)
    }
}

fn capped(app: &AppConfig) -> Error {
    tracing::error!(app_id = %app.app_id, "forced access-token refresh cap reached; check the app secret");
    Error::RateLimited {
        errcode: None,
        errmsg: Some("forced access-token refreshes capped for this hour".into()),
    }
}
