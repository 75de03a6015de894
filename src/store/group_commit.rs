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
//!
//! With [`Limits::inline_when_idle`], a caller that finds nothing queued, nothing being
//! collected and a flush slot free writes its item itself, in its own task: at low rates that
//! saves the two hand-offs (to the collector, to the flush task) that only pay off under load.
//! Only for callers that already run in a task of their own, which nobody cancels half-way.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use metrics::Histogram;
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
    /// The histogram each flush's duration is recorded in, in seconds: the statement and its
    /// commit, from the moment a flush slot was free (what a caller waits beyond the queue).
    pub flush_seconds_metric: &'static str,
    pub max_batch: usize,
    pub max_flushes: usize,
    pub queue: usize,
    pub deadline: Duration,
    /// A caller alone writes its item itself (see the module's documentation).
    pub inline_when_idle: bool,
}

type Answer<R> = oneshot::Sender<Result<R, FlushFailed>>;
type Flush<T, R> =
    dyn Fn(Vec<T>) -> Pin<Box<dyn Future<Output = Result<Vec<R>, DbErr>> + Send>> + Send + Sync;

/// What the collector and the callers writing inline share.
struct Shared<T, R> {
    what: &'static str,
    limits: Limits,
    flush: Box<Flush<T, R>>,
    slots: Arc<Semaphore>,
    /// The collector holds items it has not handed to a flush yet.
    collecting: AtomicBool,
    // Registered once: looking a histogram up by name costs more than recording into it.
    batch_sizes: Histogram,
    flush_seconds: Histogram,
}

impl<T, R> Shared<T, R> {
    /// Runs one flush within the deadline, records its size and duration, and checks that it
    /// answered every item. The caller holds a flush slot.
    async fn flush(&self, items: Vec<T>) -> Result<Vec<R>, FlushFailed> {
        let size = items.len();
        let started = Instant::now();
        let result = tokio::time::timeout(self.limits.deadline, (self.flush)(items))
            .await
            .unwrap_or_else(|_| {
                Err(DbErr::Custom(format!(
                    "no answer within {} ms",
                    self.limits.deadline.as_millis()
                )))
            });
        self.flush_seconds.record(started.elapsed());
        self.batch_sizes.record(size as f64);
        let message: Arc<str> = match result {
            Ok(results) if results.len() == size => return Ok(results),
            Err(e) => e.to_string().into(),
            Ok(r) => format!("{} answers for {size} items", r.len()).into(),
        };
        tracing::error!(error = %message, size, what = self.what, "group commit failed");
        Err(FlushFailed {
            what: self.what,
            message,
        })
    }
}

/// The handle callers hold; cheap to clone.
pub struct GroupCommit<T, R> {
    tx: mpsc::Sender<(T, Answer<R>)>,
    shared: Arc<Shared<T, R>>,
}

impl<T, R> Clone for GroupCommit<T, R> {
    fn clone(&self) -> Self {
        GroupCommit {
            tx: self.tx.clone(),
            shared: self.shared.clone(),
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
        let shared = Arc::new(Shared {
            what,
            limits,
            flush: Box::new(move |items| Box::pin(flush(items))),
            slots: Arc::new(Semaphore::new(limits.max_flushes)),
            collecting: AtomicBool::new(false),
            batch_sizes: metrics::histogram!(limits.batch_size_metric),
            flush_seconds: metrics::histogram!(limits.flush_seconds_metric),
        });
        tokio::spawn(collect(shared.clone(), rx));
        GroupCommit { tx, shared }
    }

    /// Returns once the item's batch has been written, with the item's answer.
    pub async fn submit(&self, item: T) -> Result<R, FlushFailed> {
        let failed = |message: &str| FlushFailed {
            what: self.shared.what,
            message: message.into(),
        };
        if let Some(slot) = self.idle_slot() {
            let answer = self.shared.flush(vec![item]).await;
            drop(slot);
            return answer?.pop().ok_or_else(|| failed("no answer"));
        }
        let (done, wait) = oneshot::channel();
        self.tx
            .send((item, done))
            .await
            .map_err(|_| failed("the collector stopped"))?;
        wait.await.map_err(|_| failed("the collector dropped it"))?
    }

    /// A flush slot, when this collector writes alone callers inline and nobody is waiting:
    /// nothing queued, nothing being collected.
    fn idle_slot(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let shared = &self.shared;
        let idle = shared.limits.inline_when_idle
            && self.tx.capacity() == self.tx.max_capacity()
            && !shared.collecting.load(Ordering::Acquire);
        if !idle {
            return None;
        }
        shared.slots.clone().try_acquire_owned().ok()
    }
}

async fn collect<T, R>(shared: Arc<Shared<T, R>>, mut rx: mpsc::Receiver<(T, Answer<R>)>)
where
    T: Send + 'static,
    R: Send + 'static,
{
    let max = shared.limits.max_batch;
    while let Some(first) = rx.recv().await {
        shared.collecting.store(true, Ordering::Release);
        let mut batch = vec![first];
        take_queued(&mut rx, &mut batch, max);
        let Ok(slot) = shared.slots.clone().acquire_owned().await else {
            return;
        };
        // More may have queued while every slot was busy: take them too.
        take_queued(&mut rx, &mut batch, max);
        let flushing = shared.clone();
        tokio::spawn(async move {
            let (items, answers): (Vec<T>, Vec<Answer<R>>) = batch.into_iter().unzip();
            let result = flushing.flush(items).await;
            drop(slot);
            match result {
                Ok(results) => {
                    for (done, r) in answers.into_iter().zip(results) {
                        let _ = done.send(Ok(r));
                    }
                }
                Err(failed) => {
                    for done in answers {
                        let _ = done.send(Err(failed.clone()));
                    }
                }
            }
        });
        shared.collecting.store(false, Ordering::Release);
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

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    fn limits(inline_when_idle: bool, deadline: Duration) -> Limits {
        Limits {
            batch_size_metric: "test_group_commit_batch_size",
            flush_seconds_metric: "test_group_commit_flush_seconds",
            max_batch: 64,
            max_flushes: 2,
            queue: 64,
            deadline,
            inline_when_idle,
        }
    }

    /// Each flush's task (when it ran in one) and batch size.
    type Seen = Arc<Mutex<Vec<(Option<tokio::task::Id>, usize)>>>;

    /// A group commit whose flush doubles each item, after `delay`, and notes the task it ran
    /// in and the batch's size.
    fn doubling(inline_when_idle: bool, delay: Duration) -> (GroupCommit<u32, u32>, Seen) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let noted = seen.clone();
        let gc = GroupCommit::start(
            "test",
            limits(inline_when_idle, Duration::from_secs(5)),
            move |items: Vec<u32>| {
                let noted = noted.clone();
                async move {
                    noted
                        .lock()
                        .unwrap()
                        .push((tokio::task::try_id(), items.len()));
                    tokio::time::sleep(delay).await;
                    Ok(items.into_iter().map(|i| i * 2).collect())
                }
            },
        );
        (gc, seen)
    }

    async fn submit_in_a_task(gc: &GroupCommit<u32, u32>, item: u32) -> (tokio::task::Id, u32) {
        let gc = gc.clone();
        tokio::spawn(async move { (tokio::task::id(), gc.submit(item).await.unwrap()) })
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_caller_alone_writes_its_item_in_its_own_task_only_when_allowed() {
        for (inline, in_callers_task) in [(true, true), (false, false)] {
            let (gc, seen) = doubling(inline, Duration::ZERO);
            let (caller, answer) = submit_in_a_task(&gc, 21).await;
            assert_eq!(answer, 42);
            let seen = seen.lock().unwrap().clone();
            assert_eq!(seen.len(), 1);
            assert_eq!(seen[0].1, 1);
            assert_eq!(
                seen[0].0 == Some(caller),
                in_callers_task,
                "inline {inline}"
            );
        }
    }

    #[tokio::test]
    async fn callers_arriving_while_the_slots_are_busy_still_share_a_batch() {
        let (gc, seen) = doubling(true, Duration::from_millis(100));
        let mut callers = tokio::task::JoinSet::new();
        for i in 0..20u32 {
            let gc = gc.clone();
            callers.spawn(async move { (i, gc.submit(i).await.unwrap()) });
            if i < 2 {
                // The first two take the two slots themselves.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        let mut answered = 0;
        while let Some(joined) = callers.join_next().await {
            let (i, answer) = joined.unwrap();
            assert_eq!(answer, i * 2);
            answered += 1;
        }
        assert_eq!(answered, 20);
        let sizes: Vec<usize> = seen.lock().unwrap().iter().map(|(_, n)| *n).collect();
        assert_eq!(sizes.iter().sum::<usize>(), 20, "{sizes:?}");
        assert_eq!(&sizes[..2], &[1, 1], "{sizes:?}");
        assert_eq!(sizes[2..], [18], "{sizes:?}");
    }

    #[tokio::test]
    async fn an_inline_write_past_the_deadline_fails_and_frees_its_slot() {
        let hung = Arc::new(AtomicBool::new(true));
        let hangs = hung.clone();
        let gc = GroupCommit::start(
            "test",
            limits(true, Duration::from_millis(50)),
            move |items: Vec<u32>| {
                let hangs = hangs.load(Ordering::SeqCst);
                async move {
                    if hangs {
                        std::future::pending::<()>().await;
                    }
                    Ok(items)
                }
            },
        );
        for _ in 0..2 {
            let e = gc.submit(1).await.unwrap_err();
            assert!(e.message.contains("no answer within 50 ms"), "{e}");
        }
        // Both slots were given back: a healthy write goes through.
        hung.store(false, Ordering::SeqCst);
        assert_eq!(gc.submit(7).await.unwrap(), 7);
    }
}
