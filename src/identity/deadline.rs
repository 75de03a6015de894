//! Bounded database waits on request paths, and what the service last saw of the database.
//!
//! [`Service::bounded`] bounds a stretch of database work of a request as a whole
//! (`database_timeout_ms`), so a database that is down, or accepts connections and then never
//! answers (hung, a lock held, a stalled network), costs a request at most that long, then
//! `INTERNAL`. Work that follows a WeChat call (a login, `resolveOpenId`, `bindPhoneNumber`)
//! gets [`AFTER_WECHAT`] times as long ([`Service::bounded_after_wechat`]): failing it early
//! would only throw away what WeChat already gave (a single-use code used up, a call of the
//! quota). The pool's wait for a connection has that longer bound too ([`pool_timeout`]), for
//! every user of the pool; a database that refuses connections fails at once anyway.
//! Work that holds a transaction is never cut off: it runs in a task of its own and only the
//! wait for it is bounded ([`Service::bounded_transaction`]), so a request answered `INTERNAL`
//! at the bound may still see its transaction commit afterwards (every such write is
//! idempotent or harmless: a link, a session whose token nobody received). Dropping a
//! transaction half-way can return its connection to the pool still inside it.
//!
//! The outcome of every bounded stretch is remembered, so that a login can check the database
//! before it spends a single-use code at WeChat ([`Service::database_ready`]): while the
//! database answered successfully less than [`FRESH`] ago that costs nothing; otherwise (idle
//! instance, or the last stretch failed) one bounded ping, shared by the logins that need it
//! at the same time.

use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};

use tokio::time::Instant;

use crate::domain::{Error, Result};
use crate::store;

use super::Service;

/// A database success younger than this lets a login skip its ping.
pub const FRESH: Duration = Duration::from_millis(500);
/// Database work after WeChat used up a single-use code is bounded by this many
/// `database_timeout_ms`, and so is the pool's wait for a connection.
pub const AFTER_WECHAT: u32 = 5;

/// Whether a login must ping the database before calling WeChat: unless its last stretch of
/// work succeeded less than `fresh` ago (`since_ok`: time since that success, `None` if none
/// yet) and nothing failed after it.
pub fn must_probe(since_ok: Option<Duration>, failing: bool, fresh: Duration) -> bool {
    failing || since_ok.is_none_or(|d| d >= fresh)
}

/// What the service last saw of the database.
pub struct DbHealth {
    origin: Instant,
    /// Milliseconds after `origin` of the last success, plus one (0: none yet).
    last_ok_ms: AtomicU64,
    failing: AtomicBool,
    /// The ping in flight for logins that must check the database, if any: whether it
    /// answered in time.
    probe: Mutex<Option<Shared<BoxFuture<'static, bool>>>>,
}

impl Default for DbHealth {
    fn default() -> Self {
        DbHealth {
            origin: Instant::now(),
            last_ok_ms: AtomicU64::new(0),
            failing: AtomicBool::new(false),
            probe: Mutex::new(None),
        }
    }
}

impl DbHealth {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn ok(&self) {
        self.last_ok_ms.store(self.now_ms() + 1, Relaxed);
        if self.failing.swap(false, Relaxed) {
            metrics::gauge!("wxunion_database_up").set(1.0);
        }
    }

    fn failed(&self) {
        if !self.failing.swap(true, Relaxed) {
            metrics::gauge!("wxunion_database_up").set(0.0);
        }
    }

    fn must_probe(&self) -> bool {
        let since_ok = match self.last_ok_ms.load(Relaxed) {
            0 => None,
            at => Some(Duration::from_millis(self.now_ms().saturating_sub(at - 1))),
        };
        must_probe(since_ok, self.failing.load(Relaxed), FRESH)
    }
}

/// The pool's bound on the wait for a connection under a configuration's
/// `database_timeout_ms`.
pub fn pool_timeout(database_timeout_ms: u64) -> Duration {
    Duration::from_millis(database_timeout_ms) * AFTER_WECHAT
}

impl Service {
    /// The bound of one stretch of database work on a request path.
    pub fn database_timeout(&self) -> Duration {
        Duration::from_millis(self.config.database_timeout_ms)
    }

    /// Runs database work of a request within `database_timeout_ms`; past it, or when it
    /// fails, `INTERNAL`. Remembers the outcome for [`Service::database_ready`].
    ///
    /// The work is boxed as it is handed over: sea-orm's futures take kilobytes, and unboxed
    /// they would make every future that awaits this one as large, each copied whole when it
    /// is moved or boxed (async-graphql boxes a resolver's future once per selected field of
    /// its type; `BENCH_CG_WHAT=login bench/callgrind.sh` counts the copies).
    pub(super) fn bounded<T, E>(
        &self,
        work: impl Future<Output = std::result::Result<T, E>>,
    ) -> impl Future<Output = Result<T>>
    where
        E: Into<Error>,
    {
        self.within(self.database_timeout(), Box::pin(work))
    }

    /// [`Service::bounded`] for work after WeChat used up a single-use code: within
    /// [`AFTER_WECHAT`] times `database_timeout_ms`.
    pub(super) fn bounded_after_wechat<T, E>(
        &self,
        work: impl Future<Output = std::result::Result<T, E>>,
    ) -> impl Future<Output = Result<T>>
    where
        E: Into<Error>,
    {
        self.within(self.database_timeout() * AFTER_WECHAT, Box::pin(work))
    }

    /// [`Service::bounded_after_wechat`] for work that holds a transaction: the work runs in
    /// a task of its own and only the wait for it is bounded. Past the bound the request is
    /// answered `INTERNAL` while the transaction still ends on its own (commits, or fails and
    /// rolls back), instead of being dropped half-way: a transaction cut off mid-statement can
    /// go back to the pool still open, and every later statement on that connection would run
    /// inside it and never commit.
    ///
    /// The work is boxed as it is handed over, as in [`Service::bounded`]; the task then holds
    /// only the box, which also spares tokio two copies of the whole future when it stores the
    /// task's output.
    pub(super) fn bounded_transaction<T, E>(
        &self,
        work: impl Future<Output = std::result::Result<T, E>> + Send + 'static,
    ) -> impl Future<Output = Result<T>>
    where
        T: Send + 'static,
        E: Into<Error> + Send + 'static,
    {
        let work = Box::pin(work);
        async move {
            let task = tokio::spawn(work);
            let joined = async move {
                match task.await {
                    Ok(outcome) => outcome.map_err(Into::into),
                    Err(e) => Err(Error::internal(anyhow::anyhow!(
                        "database work failed: {e}"
                    ))),
                }
            };
            self.within(self.database_timeout() * AFTER_WECHAT, joined)
                .await
        }
    }

    async fn within<T, E>(
        &self,
        limit: Duration,
        work: impl Future<Output = std::result::Result<T, E>>,
    ) -> Result<T>
    where
        E: Into<Error>,
    {
        match tokio::time::timeout(limit, work).await {
            Ok(Ok(v)) => {
                self.db_health.ok();
                Ok(v)
            }
            Ok(Err(e)) => {
                let e = e.into();
                if matches!(e, Error::Internal(_)) {
                    self.db_health.failed();
                }
                Err(e)
            }
            Err(_) => {
                self.db_health.failed();
                metrics::counter!("wxunion_database_timeouts_total").increment(1);
                Err(Error::internal(anyhow::anyhow!(
                    "the database did not answer within {} ms",
                    limit.as_millis()
                )))
            }
        }
    }

    /// Before a login spends its code at WeChat: the database answers (a bounded ping unless
    /// it answered successfully less than [`FRESH`] ago). `INTERNAL` otherwise, and no code
    /// is spent.
    pub async fn database_ready(&self) -> Result<()> {
        if !self.db_health.must_probe() {
            return Ok(());
        }
        if self.shared_probe().await {
            return Ok(());
        }
        metrics::counter!("wxunion_logins_refused_total", "reason" => "database").increment(1);
        Err(Error::internal(anyhow::anyhow!(
            "the database did not answer a ping within {} ms; no WeChat call made",
            self.config.database_timeout_ms
        )))
    }

    /// Joins the ping in flight, or starts one (in a task of its own, so that it finishes and
    /// clears its slot even if every login waiting for it goes away).
    async fn shared_probe(&self) -> bool {
        let probe = {
            let mut slot = self
                .db_health
                .probe
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            match &*slot {
                Some(probe) => probe.clone(),
                None => {
                    let db = self.db.clone();
                    let health = self.db_health.clone();
                    let limit = self.database_timeout();
                    let task = tokio::spawn(async move {
                        let ok = matches!(
                            tokio::time::timeout(limit, store::ping(&db)).await,
                            Ok(Ok(()))
                        );
                        if ok {
                            health.ok();
                        } else {
                            health.failed();
                        }
                        *health.probe.lock().unwrap_or_else(|e| e.into_inner()) = None;
                        ok
                    });
                    let probe = async move { task.await.unwrap_or(false) }.boxed().shared();
                    *slot = Some(probe.clone());
                    probe
                }
            }
        };
        probe.await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_login_pings_first_unless_the_database_answered_just_now() {
        let ms = Duration::from_millis;
        // (since the last success, failing since, must ping)
        let cases: &[(Option<u64>, bool, bool)] = &[
            (None, false, true),
            (Some(0), false, false),
            (Some(499), false, false),
            (Some(500), false, true),
            (Some(60_000), false, true),
            (Some(0), true, true),
            (None, true, true),
        ];
        for (since, failing, want) in cases {
            assert_eq!(
                must_probe(since.map(ms), *failing, FRESH),
                *want,
                "since {since:?}, failing {failing}"
            );
        }
    }
}
