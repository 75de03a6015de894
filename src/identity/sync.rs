//! The follower backfill: `syncFollowers` (in the background) and `wxunion sync-followers`
//! (in the foreground) run this one implementation.
//!
//! Followers who never send an event are invisible to the callback; a sync walks
//! `cgi-bin/user/get` page by page (up to 10 000 openids) and resolves them 100 at a time
//! with `cgi-bin/user/info/batchget`, linking each to the user of its unionid. After every
//! batch the checkpoint (the page's cursor and the next batch's index) and the batch's counts
//! are written in one statement; linking is idempotent by (app_id, open_id), so a batch run
//! again after a kill (linked, not yet checkpointed) changes nothing and is counted once.
//! WeChat's rate limits (45009, 45011) and failures (`-1`, transport) are retried with
//! bounded exponential backoff; after [`MAX_CALL_ATTEMPTS`] the sync is marked failed, and
//! starting it again resumes it from its checkpoint.

use std::time::Duration;

use futures::StreamExt;

use crate::domain::follower_sync::{
    BatchCounts, FollowerSync, MAX_CALL_ATTEMPTS, SyncStatus, backoff,
};
use crate::domain::{AppConfig, AppId, AppKind, Error, OpenId};
use crate::store;

use super::Service;

/// How far a follower sync has come, reported as it goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Progress {
    /// The account has `total` followers; `seen` were already handled (a resume).
    Started { total: u64, seen: u64 },
    /// A batch was checkpointed; `seen` followers handled so far.
    Batch { seen: u64 },
    /// A call failed and is retried after `wait`.
    Retrying { error: String, wait: Duration },
}

/// Waits between retries of a failed WeChat call.
#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base: Duration::from_millis(500),
            cap: Duration::from_secs(30),
        }
    }
}

/// Links followers of one batch at once (distinct openids never contend).
const LINKS_IN_FLIGHT: usize = 8;

/// A name for this runner in the lease: process id and a random number.
pub fn owner() -> String {
    format!("{}-{:016x}", std::process::id(), rand::random::<u64>())
}

/// The running sync of an official account, or a failed one resumed, or a new one.
pub async fn start(service: &Service, app_id: &AppId) -> Result<FollowerSync, Error> {
    service.app(app_id, &[AppKind::OfficialAccount])?;
    service
        .bounded(store::follower_syncs::start_or_resume(
            &service.db,
            app_id.as_str(),
            service.clock.now(),
        ))
        .await
}

/// A sync by id.
pub async fn get(service: &Service, id: i64) -> Result<Option<FollowerSync>, Error> {
    service
        .bounded(store::follower_syncs::get(&service.db, id))
        .await
}

/// `syncFollowers`: starts (or resumes) the app's sync and, unless a live runner holds it,
/// runs it on a task of this instance. Returns the sync as it stands.
pub async fn start_in_background(service: &Service, app_id: &AppId) -> Result<FollowerSync, Error> {
    let sync = start(service, app_id).await?;
    let now = service.clock.now();
    if sync.locked_until.is_none_or(|t| t < now) {
        let service = service.clone();
        let id = sync.id;
        tokio::spawn(async move {
            match run(&service, id, &owner(), Backoff::default(), |_| {}).await {
                Ok(Some(s)) => {
                    tracing::info!(sync = s.id, app_id = %s.app_id, status = s.status.as_str(),
                    seen = s.followers_seen, linked = s.linked, "follower sync ended")
                }
                Ok(None) => {}
                Err(e) => tracing::error!(sync = id, error = %e, "follower sync stopped"),
            }
        });
    }
    Ok(sync)
}

/// Runs sync `id` as `owner` until it is done or failed (then returns it), or `None` when
/// another runner holds its lease (or it lost the lease on the way).
pub async fn run(
    service: &Service,
    id: i64,
    owner: &str,
    waits: Backoff,
    mut progress: impl FnMut(Progress),
) -> Result<Option<FollowerSync>, Error> {
    let lease = chrono::Duration::seconds(service.config.job_lease_seconds as i64);
    let Some(sync) =
        store::follower_syncs::claim(&service.db, id, owner, service.clock.now(), lease).await?
    else {
        return Ok(None);
    };
    let outcome = walk(service, &sync, owner, waits, lease, &mut progress).await;
    let now = service.clock.now();
    match outcome {
        Ok(true) => {
            store::follower_syncs::finish(&service.db, id, owner, SyncStatus::Done, None, now)
                .await?
        }
        Ok(false) => return Ok(None),
        Err(e) => {
            let detail = match &e {
                Error::Internal(inner) => format!("internal error: {inner:#}"),
                other => other.to_string(),
            };
            let detail = match e.wechat() {
                Some((code, msg)) => format!("{detail} ({code}: {msg})"),
                None => detail,
            };
            store::follower_syncs::finish(
                &service.db,
                id,
                owner,
                SyncStatus::Failed,
                Some(&detail),
                now,
            )
            .await?
        }
    }
    get(service, id).await
}

/// Walks the pages from the checkpoint; `Ok(true)` at the end, `Ok(false)` when the lease was
/// lost.
async fn walk(
    service: &Service,
    sync: &FollowerSync,
    owner: &str,
    waits: Backoff,
    lease: chrono::Duration,
    progress: &mut impl FnMut(Progress),
) -> Result<bool, Error> {
    let app = service.app(&AppId::parse(&sync.app_id)?, &[AppKind::OfficialAccount])?;
    let mut cursor = sync.next_openid.clone();
    let mut position = usize::try_from(sync.page_position).unwrap_or(0);
    let mut seen = sync.followers_seen.max(0) as u64;
    let mut started = false;
    loop {
        let page = with_backoff(waits, progress, || {
            service.tokens.with_token(app, |token| {
                let wechat = service.wechat.clone();
                let cursor = cursor.clone();
                async move { wechat.user_get(&token, &cursor).await }
            })
        })
        .await?;
        if !started {
            started = true;
            progress(Progress::Started {
                total: page.total.max(0) as u64,
                seen,
            });
        }
        let openids = page.data.map(|d| d.openid).unwrap_or_default();
        let last_page = page.next_openid.is_empty() || page.count < 10_000;
        let chunks: Vec<&[String]> = openids.chunks(100).collect();
        if chunks.len() <= position {
            // Nothing (left) in this page.
            if last_page {
                return Ok(true);
            }
            cursor = page.next_openid;
            position = 0;
            continue;
        }
        for (i, chunk) in chunks.iter().enumerate().skip(position) {
            let counts = batch(service, app, chunk, waits, progress).await?;
            let end_of_page = i + 1 == chunks.len();
            let (next_cursor, next_position) = if end_of_page && !last_page {
                (page.next_openid.as_str(), 0)
            } else {
                (cursor.as_str(), i + 1)
            };
            let kept = store::follower_syncs::checkpoint(
                &service.db,
                sync.id,
                owner,
                next_cursor,
                i32::try_from(next_position).unwrap_or(i32::MAX),
                counts,
                service.clock.now(),
                lease,
            )
            .await?;
            if !kept {
                return Ok(false);
            }
            seen += counts.seen as u64;
            progress(Progress::Batch { seen });
        }
        if last_page {
            return Ok(true);
        }
        cursor = page.next_openid;
        position = 0;
    }
}

/// Resolves and links one batch of up to 100 followers; returns what it adds to the counts.
async fn batch(
    service: &Service,
    app: &AppConfig,
    chunk: &[String],
    waits: Backoff,
    progress: &mut impl FnMut(Progress),
) -> Result<BatchCounts, Error> {
    let infos = with_backoff(waits, progress, || {
        service.tokens.with_token(app, |token| {
            let wechat = service.wechat.clone();
            let chunk = chunk.to_vec();
            async move { wechat.user_info_batch(&token, &chunk).await }
        })
    })
    .await?;
    let now = service.clock.now().timestamp();
    let results: Vec<Result<bool, Error>> = futures::stream::iter(infos)
        .map(|info| async move {
            let open_id = OpenId::parse(&info.openid)?;
            let union_id =
                super::service::parse_union_id(info.unionid.as_deref(), "user/info/batchget")?;
            service
                .link(
                    app,
                    &open_id,
                    union_id.as_ref(),
                    Some((info.subscribe == 1, now)),
                )
                .await?;
            Ok(union_id.is_some())
        })
        .buffer_unordered(LINKS_IN_FLIGHT)
        .collect()
        .await;
    let mut counts = BatchCounts::default();
    for r in results {
        counts.seen += 1;
        match r {
            Ok(true) => counts.linked += 1,
            Ok(false) => counts.without_union_id += 1,
            // The database failing is no follower's fault: stop, to resume from this batch.
            Err(e @ Error::Internal(_)) => return Err(e),
            Err(e) => {
                tracing::warn!(app_id = %app.app_id, error = %e, "follower not linked");
                counts.failed += 1;
            }
        }
    }
    Ok(counts)
}

/// Runs a WeChat call, retrying rate limits and upstream failures with backoff.
async fn with_backoff<T, F, Fut>(
    waits: Backoff,
    progress: &mut impl FnMut(Progress),
    mut call: F,
) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Error>>,
{
    let mut attempt = 0;
    loop {
        match call().await {
            Ok(v) => return Ok(v),
            Err(e @ (Error::RateLimited { .. } | Error::Upstream { .. })) => {
                attempt += 1;
                let Some(wait) = backoff(attempt, waits.base, waits.cap) else {
                    return Err(e);
                };
                tracing::warn!(error = %e, attempt, max = MAX_CALL_ATTEMPTS, ?wait, "follower sync call failed, retrying");
                progress(Progress::Retrying {
                    error: e.to_string(),
                    wait,
                });
                tokio::time::sleep(wait).await;
            }
            Err(e) => return Err(e),
        }
    }
}
