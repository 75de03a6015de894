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
use tokio::sync::{Notify, Semaphore, mpsc, oneshot};

use crate::domain::{Error, Result};
use crate::store;
pub use crate::store::jobs::NewJob;

const MAX_BATCH: usize = 512;
/// Two flushes in flight: on the 2-core benchmark machine 27.2k callbacks/s, against 24.1k
/// with three and 24.0k with four (smaller batches, more commits; four does have the best
/// p99, 4.8 ms against 59 ms).
const MAX_FLUSHES: usize = 2;
const QUEUE: usize = 16_384;

type Pending = (NewJob, oneshot::Sender<Result<Recorded>>);

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
    tx: mpsc::Sender<Pending>,
}

impl Inbox {
    /// Starts the collector; `wake` is notified after every commit so local workers start at
    /// once instead of at their next poll. A write that takes longer than `deadline` (a hung
    /// database) is given up and its jobs answered with an error, freeing its flush slot.
    pub fn start(db: DatabaseConnection, wake: Arc<Notify>, deadline: Duration) -> Inbox {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(collect(db, rx, wake, deadline));
        Inbox { tx }
    }

    /// Returns once the job is committed (or was already there: a retry or a duplicate), and
    /// which of the two it was.
    pub async fn record(&self, job: NewJob) -> Result<Recorded> {
        let (done, wait) = oneshot::channel();
        self.tx
            .send((job, done))
            .await
            .map_err(|_| Error::internal(anyhow::anyhow!("inbox collector stopped")))?;
        wait.await
            .map_err(|_| Error::internal(anyhow::anyhow!("inbox collector dropped a job")))?
    }
}

async fn collect(
    db: DatabaseConnection,
    mut rx: mpsc::Receiver<Pending>,
    wake: Arc<Notify>,
    deadline: Duration,
) {
    let flushes = Arc::new(Semaphore::new(MAX_FLUSHES));
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        take_queued(&mut rx, &mut batch);
        let Ok(permit) = flushes.clone().acquire_owned().await else {
            return;
        };
        // More may have queued while we waited for a free flush slot: take them too.
        take_queued(&mut rx, &mut batch);
        let db = db.clone();
        let wake = wake.clone();
        tokio::spawn(async move {
            let size = batch.len();
            // Given up, the statement may still commit later: the jobs were answered with an
            // error, so WeChat retries them and the retries are deduplicated.
            let result = tokio::time::timeout(deadline, flush(&db, &batch))
                .await
                .unwrap_or_else(|_| {
                    Err(sea_orm::DbErr::Custom(format!(
                        "no answer within {} ms",
                        deadline.as_millis()
                    )))
                });
            drop(permit);
            metrics::histogram!("wxunion_inbox_batch_size").record(size as f64);
            match result {
                Ok(inserted) => {
                    for ((_, done), new) in batch.into_iter().zip(inserted) {
                        let recorded = if new {
                            Recorded::New
                        } else {
                            Recorded::Duplicate
                        };
                        let _ = done.send(Ok(recorded));
                    }
                    wake.notify_waiters();
                }
                Err(e) => {
                    tracing::error!(error = %e, size, "could not record callback batch");
                    for (_, done) in batch {
                        let _ =
                            done.send(Err(Error::internal(anyhow::anyhow!("inbox write failed"))));
                    }
                }
            }
        });
    }
}

fn take_queued(rx: &mut mpsc::Receiver<Pending>, batch: &mut Vec<Pending>) {
    while batch.len() < MAX_BATCH {
        match rx.try_recv() {
            Ok(p) => batch.push(p),
            Err(_) => break,
        }
    }
}

/// Writes the batch; for each job, whether it was new.
async fn flush(
    db: &DatabaseConnection,
    batch: &[Pending],
) -> std::result::Result<Vec<bool>, sea_orm::DbErr> {
    store::jobs::insert_batch(db, batch.iter().map(|(job, _)| job)).await
}
