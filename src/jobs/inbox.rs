//! Durable, deduplicated recording of callback events with group commit.
//!
//! Each request hands its job to a collector task and waits. The collector takes everything
//! queued at that moment (up to [`MAX_BATCH`]) and writes it as one multi-row
//! `INSERT ... ON CONFLICT (dedupe_key) DO NOTHING`; up to [`MAX_FLUSHES`] such writes run at
//! once. Under load many callbacks share one commit (about 15 per INSERT in the benchmark),
//! while each is still answered only after its row is on disk.

use std::sync::Arc;
use std::time::Duration;

use sea_orm::DatabaseConnection;
use tokio::sync::Notify;

use crate::domain::Result;
use crate::store;
use crate::store::group_commit::{GroupCommit, Limits};
pub use crate::store::jobs::NewJob;

const MAX_BATCH: usize = 512;
/// Two flushes in flight: on the 2-core benchmark machine 27.2k callbacks/s, against 24.1k
/// with three and 24.0k with four (smaller batches, more commits; four does have the best
/// p99, 4.8 ms against 59 ms).
const MAX_FLUSHES: usize = 2;
const QUEUE: usize = 16_384;

/// What recording a job did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// Its row was inserted now: it will take effect.
    New,
    /// Its dedupe key was already there (a WeChat retry, a repeat, the same message through
    /// another instance): it takes no second effect.
    Duplicate,
}

/// The handle the HTTP layer holds.
#[derive(Clone)]
pub struct Inbox {
    jobs: GroupCommit<NewJob, Recorded>,
}

impl Inbox {
    /// Starts the collector; `wake` is notified after every commit so local workers start at
    /// once instead of at their next poll. A write that takes longer than `deadline` (a hung
    /// database) is given up and its jobs answered with an error, freeing its flush slot.
    /// Given up, the statement may still commit later: the jobs were answered with an error,
    /// so WeChat retries them and the retries are deduplicated.
    pub fn start(db: DatabaseConnection, wake: Arc<Notify>, deadline: Duration) -> Inbox {
        let limits = Limits {
            batch_size_metric: "wxunion_inbox_batch_size",
            flush_seconds_metric: "wxunion_inbox_flush_seconds",
            max_batch: MAX_BATCH,
            max_flushes: MAX_FLUSHES,
            queue: QUEUE,
            deadline,
            // A callback's handler can be dropped half-way (the client hangs up): its row is
            // always written by a flush task of the collector's.
            inline_when_idle: false,
        };
        let jobs = GroupCommit::start("callback jobs", limits, move |batch: Vec<NewJob>| {
            let (db, wake) = (db.clone(), wake.clone());
            async move {
                let inserted = store::jobs::insert_batch(&db, batch.iter()).await?;
                wake.notify_waiters();
                Ok(inserted
                    .into_iter()
                    .map(|new| {
                        if new {
                            Recorded::New
                        } else {
                            Recorded::Duplicate
                        }
                    })
                    .collect())
            }
        });
        Inbox { jobs }
    }

    /// Returns once the job is committed (or was already there: a retry or a duplicate), and
    /// which of the two it was.
    pub async fn record(&self, job: NewJob) -> Result<Recorded> {
        Ok(self.jobs.submit(job).await?)
    }
}
