//! Workers that run callback jobs: record the identity and follow state, then resolve the
//! unionid through `user/info` (with the shared access token). Failures are retried with
//! backoff; a job that cannot succeed (unknown app, WeChat says the openid is invalid) is
//! parked as dead with its error.

use std::sync::Arc;
use std::time::Duration;

use sea_orm::DatabaseConnection;
use tokio::sync::Notify;

use crate::clock::SharedClock;

use super::EventJob;
use crate::domain::Error;
use crate::domain::OpenId;
use crate::domain::job::{JobKind, pause_after};
use crate::identity::Service;
use crate::store;

/// How often an idle worker looks for jobs written by other instances.
const IDLE_POLL: Duration = Duration::from_millis(250);

/// The jobs table as the workers see it: a database and a clock, nothing else.
#[derive(Clone)]
pub struct Queue {
    db: DatabaseConnection,
    clock: SharedClock,
}

impl Queue {
    pub fn new(db: DatabaseConnection, clock: SharedClock) -> Queue {
        Queue { db, clock }
    }
}

/// Runs one worker until the task is dropped: claims jobs from `queue` and runs them with the
/// use cases of `service`.
pub async fn run(queue: Queue, service: Service, wake: Arc<Notify>, lease: chrono::Duration) {
    let Queue { db, clock } = queue;
    // Jobs failed in a row because WeChat failed: the worker pauses before the next claim.
    let mut wechat_failures: u32 = 0;
    loop {
        let pause = pause_after(wechat_failures);
        if !pause.is_zero() {
            metrics::counter!("wxunion_worker_pauses_total").increment(1);
            tokio::time::sleep(pause).await;
        }
        let notified = wake.notified();
        match store::jobs::claim(&db, clock.now(), lease).await {
            Ok(Some(job)) => {
                let outcome = process(&service, &job).await;
                let now = clock.now();
                let recorded = match outcome {
                    Ok(()) => {
                        wechat_failures = 0;
                        store::jobs::complete(&db, job.id, now).await
                    }
                    Err((e, permanent)) => {
                        if e.is_wechat_failure() {
                            wechat_failures = wechat_failures.saturating_add(1);
                        } else {
                            wechat_failures = 0;
                        }
                        tracing::warn!(job = job.id, attempts = job.attempts, error = %e, "callback job failed");
                        store::jobs::fail(&db, &job, &e.to_string(), permanent, now).await
                    }
                };
                if let Err(e) = recorded {
                    tracing::error!(job = job.id, error = %e, "could not record job outcome");
                    tokio::time::sleep(IDLE_POLL).await;
                }
            }
            Ok(None) => {
                let _ = tokio::time::timeout(IDLE_POLL, notified).await;
            }
            Err(e) => {
                tracing::error!(error = %e, "could not claim a job");
                tokio::time::sleep(IDLE_POLL * 4).await;
            }
        }
    }
}

/// Done jobs are kept this long as dedupe records, then pruned.
const DONE_RETENTION: chrono::Duration = chrono::Duration::days(1);
const PRUNE_EVERY: Duration = Duration::from_secs(600);

/// Prunes old done jobs every ten minutes until the task is dropped.
pub async fn prune_forever(queue: Queue) {
    loop {
        match store::jobs::prune(&queue.db, queue.clock.now() - DONE_RETENTION).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(pruned = n, "pruned done jobs"),
            Err(e) => tracing::warn!(error = %e, "could not prune done jobs"),
        }
        tokio::time::sleep(PRUNE_EVERY).await;
    }
}

/// How often each instance counts the queue for the `wxunion_jobs` gauges.
const QUEUE_STATS_EVERY: Duration = Duration::from_secs(15);

/// Publishes `wxunion_jobs{status}` and `wxunion_job_oldest_pending_seconds` every 15 seconds
/// until the task is dropped: one statement over the jobs table, off the request path. Every
/// instance reports the same table-wide numbers.
pub async fn report_queue_forever(queue: Queue) {
    loop {
        let now = queue.clock.now();
        match store::jobs::stats(&queue.db, now).await {
            Ok(stats) => publish_queue(&stats, now),
            Err(e) => tracing::warn!(error = %e, "could not count the jobs"),
        }
        tokio::time::sleep(QUEUE_STATS_EVERY).await;
    }
}

fn publish_queue(stats: &store::jobs::QueueStats, now: chrono::DateTime<chrono::Utc>) {
    for (status, n) in [
        ("pending", stats.pending),
        ("running", stats.running),
        ("done", stats.done),
        ("dead", stats.dead),
    ] {
        metrics::gauge!("wxunion_jobs", "status" => status).set(n as f64);
    }
    let oldest = stats
        .oldest_pending
        .map_or(0.0, |t| (now - t).num_milliseconds().max(0) as f64 / 1000.0);
    metrics::gauge!("wxunion_job_oldest_pending_seconds").set(oldest);
}

/// Runs one job by its kind; the flag says whether a failure is permanent.
async fn process(service: &Service, job: &entity::jobs::Model) -> Result<(), (Error, bool)> {
    match JobKind::parse(&job.kind) {
        Some(JobKind::CallbackEvent) => callback_event(service, job).await,
        None => Err((
            Error::internal(anyhow::anyhow!("unknown job kind `{}`", job.kind)),
            true,
        )),
    }
}

/// Records the identity and follow state of a callback event, and resolves its unionid.
async fn callback_event(service: &Service, job: &entity::jobs::Model) -> Result<(), (Error, bool)> {
    let permanent = |e: Error| (e, true);
    let payload: EventJob = serde_json::from_str(&job.payload)
        .map_err(|e| permanent(Error::internal(anyhow::anyhow!("bad job payload: {e}"))))?;
    let app = service
        .config()
        .app(&job.app_id)
        .ok_or_else(|| permanent(Error::UnknownApp(job.app_id.clone())))?;
    let open_id = OpenId::parse(&payload.open_id).map_err(permanent)?;
    service
        .record_event(app, &open_id, payload.create_time, payload.subscribed)
        .await
        .map_err(|e| {
            let permanent = e.is_permanent();
            (e, permanent)
        })
}
