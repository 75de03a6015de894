//! Group commit: concurrent callers hand their rows to one collector task, which writes
//! everything queued at that moment as one statement, so that many requests share one
//! commit while each is still answered only after its own row is on disk.
//!
//! The collector takes what is queued (up to `max_batch`), waits for one of `max_flushes`
//! flush slots, takes what queued meanwhile, and runs the flush in a task of its own. Nothing
//! waits for a batch to fill: alone, a request is written at once, by itself. A flush that
//! takes longer than `deadline` (a hung database) is given up, its callers answered with an
//! error, and its slot freed; the statement may still commit later, which each user of this
//! module must tolerate.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use sea_orm::DbErr;
use tokio::sync::{Semaphore, mpsc, oneshot};

/// How a flush failed, as each of its callers is told (`DbErr` cannot be cloned).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{what}: {message}")]
pub struct FlushFailed {
    pub what: &'static str,
    pub message: Arc<str>,
}

/// Sizes and bounds of one collector.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The histogram each batch's size is recorded in.
    pub batch_size_metric: &'static str,
    pub max_batch: usize,
    pub max_flushes: usize,
    pub queue: usize,
    pub deadline: Duration,
}

type Answer<R> = oneshot::Sender<Result<R, FlushFailed>>;

/// The handle callers hold; cheap to clone.
pub struct GroupCommit<T, R> {
    tx: mpsc::Sender<(T, Answer<R>)>,
    what: &'static str,
}

impl<T, R> Clone for GroupCommit<T, R> {
    fn clone(&self) -> Self {
        GroupCommit {
            tx: self.tx.clone(),
            what: self.what,
        }
    }
}

impl<T, R> GroupCommit<T, R>
where
    T: Send + 'static,
    R: Send + 'static,
{
    /// Starts the collector (on the current tokio runtime). `what` names the writes in errors
    /// and logs. `flush` gets a batch and returns one answer per item, in order.
    pub fn start<F, Fut>(what: &'static str, limits: Limits, flush: F) -> Self
    where
        F: Fn(Vec<T>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<R>, DbErr>> + Send + 'static,
    {
        let (tx, rx) = mpsc::channel(limits.queue);
        tokio::spawn(collect(what, limits, rx, Arc::new(flush)));
        GroupCommit { tx, what }
    }

    /// Returns once the item's batch has been written, with the item's answer.
    pub async fn submit(&self, item: T) -> Result<R, FlushFailed> {
        let failed = |message: &str| FlushFailed {
            what: self.what,
            message: message.into(),
        };
        let (done, wait) = oneshot::channel();
        self.tx
            .send((item, done))
            .await
            .map_err(|_| failed("the collector stopped"))?;
        wait.await.map_err(|_| failed("the collector dropped it"))?
    }
}

async fn collect<T, R, F, Fut>(
    what: &'static str,
    limits: Limits,
    mut rx: mpsc::Receiver<(T, Answer<R>)>,
    flush: Arc<F>,
) where
    T: Send + 'static,
    R: Send + 'static,
    F: Fn(Vec<T>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Vec<R>, DbErr>> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(limits.max_flushes));
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        take_queued(&mut rx, &mut batch, limits.max_batch);
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        // More may have queued while every slot was busy: take them too.
        take_queued(&mut rx, &mut batch, limits.max_batch);
        let flush = flush.clone();
        tokio::spawn(async move {
            let size = batch.len();
            let (items, answers): (Vec<T>, Vec<Answer<R>>) = batch.into_iter().unzip();
            let result = tokio::time::timeout(limits.deadline, flush(items))
                .await
                .unwrap_or_else(|_| {
                    Err(DbErr::Custom(format!(
                        "no answer within {} ms",
                        limits.deadline.as_millis()
                    )))
                });
            drop(slot);
            metrics::histogram!(limits.batch_size_metric).record(size as f64);
            match result {
                Ok(results) if results.len() == size => {
                    for (done, r) in answers.into_iter().zip(results) {
                        let _ = done.send(Ok(r));
                    }
                }
                outcome => {
                    let message: Arc<str> = match outcome {
                        Err(e) => e.to_string().into(),
                        Ok(r) => format!("{} answers for {size} items", r.len()).into(),
                    };
                    tracing::error!(error = %message, size, what, "group commit failed");
                    for done in answers {
                        let _ = done.send(Err(FlushFailed {
                            what,
                            message: message.clone(),
                        }));
                    }
                }
            }
        });
    }
}

fn take_queued<P>(rx: &mut mpsc::Receiver<P>, batch: &mut Vec<P>, max: usize) {
    while batch.len() < max {
        match rx.try_recv() {
            Ok(p) => batch.push(p),
            Err(_) => break,
        }
    }
}
