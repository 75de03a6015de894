//! Access tokens shared by every instance.
//!
//! One token per app lives in the cache until five minutes before WeChat's expiry. A miss is
//! filled by exactly one caller across all instances: it takes a cache lock, fetches, stores;
//! the others wait for the new value instead of fetching their own (each fetch from
//! `cgi-bin/token` would invalidate the previous token after five minutes, and both endpoints
//! have daily quotas). When WeChat says a token is invalid (40001/42001/40014) it is dropped
//! only if the cache still holds that very token, so a slow instance can never throw away a
//! token another instance just refreshed; forced refreshes are capped per app and hour.
//!
//! Within one instance, concurrent callers that miss the cache share one in-flight refresh per
//! app (a single flight): one of them runs it (in a task of its own, so that it finishes even
//! if that caller goes away), the others wait for its outcome, failure included. A slow or
//! failing WeChat thus costs each of them one token call's time, once, instead of each running
//! the failing refresh after the previous one.
//!
//! Waiting for another instance reads tokio's clock ([`tokio::time::Instant`] and
//! [`tokio::time::sleep`]), not the injected wall clock: it is a local, monotonic wait, which
//! a paused tokio clock makes virtual and exact in the unit tests below.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};

use tokio::time::Instant;

use super::client::{CallError, WechatClient};
use crate::cache::Cache;
use crate::domain::{AppConfig, TokenEndpoint};
use crate::domain::{Error, Result};

/// Refresh this long before WeChat's stated expiry.
const EARLY: i64 = 300;
/// How long a refresh may hold the lock, and how long others wait for it.
const LOCK_TTL: Duration = Duration::from_secs(15);
const POLL: Duration = Duration::from_millis(20);

/// The outcome of one refresh, as every caller waiting for it gets it.
type Outcome = std::result::Result<String, Arc<Error>>;
/// A refresh in flight: `(app, the failed token it replaces)` → its shared outcome, and the
/// number that tells it apart from a later refresh of the same key.
type Flights = Mutex<HashMap<(String, Option<String>), (u64, Shared<BoxFuture<'static, Outcome>>)>>;

/// The shared token manager.
#[derive(Clone)]
pub struct AccessTokens {
    cache: Cache,
    client: WechatClient,
    max_forced_per_hour: i64,
    flights: Arc<Flights>,
}

impl AccessTokens {
    pub fn new(cache: Cache, client: WechatClient, max_forced_per_hour: u64) -> Self {
        Self {
            cache,
            client,
            max_forced_per_hour: i64::try_from(max_forced_per_hour).unwrap_or(i64::MAX),
            flights: Arc::default(),
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

    /// A token from the cache, or from the refresh in flight for this app on this instance
    /// (started here if there is none).
    async fn obtain(&self, app: &AppConfig, failed: Option<&str>) -> Result<String> {
        if let Some(t) = self.cache.get(&Self::key(app)).await?
            && Some(t.as_str()) != failed
        {
            return Ok(t);
        }
        self.single_flight(app, failed).await
    }

    /// Joins the refresh in flight for `(app, failed)`, or starts one.
    async fn single_flight(&self, app: &AppConfig, failed: Option<&str>) -> Result<String> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let key = (app.app_id.clone(), failed.map(str::to_owned));
        let flight = {
            let mut flights = self.flights.lock().unwrap_or_else(|e| e.into_inner());
            match flights.get(&key) {
                Some((_, flight)) => {
                    metrics::counter!("wxunion_access_token_waits_total").increment(1);
                    flight.clone()
                }
                None => {
                    let id = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let this = self.clone();
                    let app = app.clone();
                    let task_key = key.clone();
                    // A task of its own: it finishes (and releases the cross-instance lock)
                    // even if every caller waiting for it goes away.
                    let task = tokio::spawn(async move {
                        let outcome = this
                            .fetch_shared(&app, task_key.1.as_deref())
                            .await
                            .map_err(Arc::new);
                        let mut flights = this.flights.lock().unwrap_or_else(|e| e.into_inner());
                        if flights.get(&task_key).is_some_and(|(i, _)| *i == id) {
                            flights.remove(&task_key);
                        }
                        outcome
                    });
                    let flight = async move {
                        task.await.unwrap_or_else(|e| {
                            Err(Arc::new(Error::internal(anyhow::anyhow!(
                                "access-token refresh task failed: {e}"
                            ))))
                        })
                    }
                    .boxed()
                    .shared();
                    flights.insert(key, (id, flight.clone()));
                    flight
                }
            }
        };
        flight.await.map_err(|e| e.replicate())
    }

    /// The token from the cache, or from one refresh across instances (the cache lock).
    async fn fetch_shared(&self, app: &AppConfig, failed: Option<&str>) -> Result<String> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::MemoryCache;
    // Virtual under `start_paused`: every duration measured here is exact.
    use tokio::time::Instant;

    const MS: Duration = Duration::from_millis(1);

    /// Token manager on an in-process cache, with a WeChat nobody listens to: a test in which
    /// it tries to fetch a token fails with a transport error, not a wrong token.
    fn tokens() -> (AccessTokens, Cache, AppConfig) {
        let cache = Cache::Memory(MemoryCache::new("t:"));
        let client = WechatClient::new("http://127.0.0.1:1", Duration::from_secs(1))
            .expect("a client for a local address");
        let app: AppConfig = toml::from_str(
            "app_id = \"wx2000000000000001\"\nsecret = \"s\"\nkind = \"official_account\"",
        )
        .expect("an app");
        (AccessTokens::new(cache.clone(), client, 10), cache, app)
    }

    fn is_wait_timeout(e: &Error) -> bool {
        matches!(e, Error::Upstream { detail, .. } if detail.contains("timed out waiting"))
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_takes_the_token_the_lock_holder_stores_within_one_poll() {
        let (tokens, cache, app) = tokens();
        let lock = format!("token-lock:{}", app.app_id);
        assert!(
            cache
                .set_nx(&lock, "other-instance", LOCK_TTL)
                .await
                .unwrap()
        );
        let started = Instant::now();
        let waiter = tokio::spawn({
            let app = app.clone();
            async move { tokens.get(&app).await }
        });
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(!waiter.is_finished());
        cache
            .set(&format!("token:{}", app.app_id), "from-other", LOCK_TTL)
            .await
            .unwrap();
        cache
            .delete_if_equals(&lock, "other-instance")
            .await
            .unwrap();
        assert_eq!(waiter.await.unwrap().unwrap(), "from-other");
        assert!(started.elapsed() <= Duration::from_secs(3) + POLL);
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_gives_up_once_it_has_waited_the_lock_ttl() {
        let (tokens, cache, app) = tokens();
        // Held past our TTL (renewed by another instance): the waiter must not wait forever.
        let lock = format!("token-lock:{}", app.app_id);
        assert!(
            cache
                .set_nx(&lock, "other-instance", 4 * LOCK_TTL)
                .await
                .unwrap()
        );
        let started = Instant::now();
        let err = tokens.get(&app).await.unwrap_err();
        let waited = started.elapsed();
        assert!(is_wait_timeout(&err), "{err:?}");
        assert!(waited > LOCK_TTL, "gave up after {waited:?}");
        assert!(waited <= LOCK_TTL + POLL, "gave up after {waited:?}");
        // It never touched the lock it did not own.
        assert_eq!(
            cache.get(&lock).await.unwrap().as_deref(),
            Some("other-instance")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_refreshes_itself_when_a_crashed_holders_lock_expires() {
        let (tokens, cache, app) = tokens();
        let lock = format!("token-lock:{}", app.app_id);
        assert!(
            cache
                .set_nx(&lock, "crashed-instance", LOCK_TTL)
                .await
                .unwrap()
        );
        let waiter = tokio::spawn({
            let app = app.clone();
            async move { tokens.get(&app).await }
        });
        tokio::time::sleep(LOCK_TTL - MS).await;
        assert!(!waiter.is_finished());
        // Once the lock expires, the waiter takes it and fetches: WeChat is unreachable here,
        // so it fails with its own fetch's error instead of giving up on the wait.
        let err = waiter.await.unwrap().unwrap_err();
        assert!(
            matches!(err, Error::Upstream { errcode: None, .. }),
            "{err:?}"
        );
        assert!(!is_wait_timeout(&err), "{err:?}");
        assert_eq!(cache.get(&lock).await.unwrap(), None);
    }
}
