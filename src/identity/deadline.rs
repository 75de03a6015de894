//! Bounded database waits on request paths, and what the service last saw of the database.
//!
//! The pool bounds the wait for a connection (`database_timeout_ms`, see
//! [`crate::store::connect_bounded`]); [`Service::bounded`] bounds a stretch of database work
//! of a request as a whole, so a database that accepts connections and then never answers
//! (hung, a lock held, a stalled network) costs a request at most that long, then `INTERNAL`.
//! A transaction cut off this way is rolled back by the driver: nothing is half-written.
//!
//! The outcome of every bounded stretch is remembered, so that a login can check the database
//! before it spends a single-use code at WeChat ([`Service::database_ready`]): while the
//! database answered successfully less than [`FRESH`] ago that costs nothing; otherwise (idle
//! instance, or the last stretch failed) one bounded ping.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use tokio::time::Instant;

use crate::domain::{Error, Result};
use crate::store;

use super::Service;

/// A database success younger than this lets a login skip its ping.
pub const FRESH: Duration = Duration::from_millis(500);

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
}

impl Default for DbHealth {
    fn default() -> Self {
        DbHealth {
            origin: Instant::now(),
            last_ok_ms: AtomicU64::new(0),
            failing: AtomicBool::new(false),
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

impl Service {
    /// The bound of one stretch of database work on a request path.
    pub fn database_timeout(&self) -> Duration {
        Duration::from_millis(self.config.database_timeout_ms)
    }

    /// Runs database work of a request within `database_timeout_ms`; past it, or when it
    /// fails, `INTERNAL`. Remembers the outcome for [`Service::database_ready`].
    pub(super) async fn bounded<T, E>(
        &self,
        work: impl Future<Output = std::result::Result<T, E>>,
    ) -> Result<T>
    where
        E: Into<Error>,
    {
        match tokio::time::timeout(self.database_timeout(), work).await {
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
                    self.config.database_timeout_ms
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
        self.bounded(store::ping(&self.db)).await.inspect_err(|_| {
            metrics::counter!("wxunion_logins_refused_total", "reason" => "database").increment(1);
        })
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
