//! The `follower_syncs` table: starting (or finding) the one running sync of an app, leasing
//! it to one runner, checkpointing after every batch, finishing.
//!
//! One running sync per app is the unique partial index `follower_syncs_one_running (app_id)
//! WHERE status = 'running'`: two instances starting one at once both try the insert, one
//! wins, the other reads the winner's row. Who *runs* it is a lease (`lock_owner`,
//! `locked_until`) renewed by every checkpoint: a runner that died loses it when it ends.

use chrono::{DateTime, Duration, Utc};
use entity::follower_syncs;
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveValue, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, SqlErr,
};

use crate::domain::follower_sync::{BatchCounts, FollowerSync, SyncStatus};

fn to_domain(m: follower_syncs::Model) -> FollowerSync {
    FollowerSync {
        id: m.id,
        status: SyncStatus::parse(&m.status).unwrap_or(SyncStatus::Failed),
        app_id: m.app_id,
        next_openid: m.next_openid,
        page_position: m.page_position,
        followers_seen: m.followers_seen,
        linked: m.linked,
        without_union_id: m.without_union_id,
        failed: m.failed,
        started_at: m.started_at,
        finished_at: m.finished_at,
        last_error: m.last_error,
        locked_until: m.locked_until,
        lock_owner: m.lock_owner,
    }
}

/// A sync by id.
pub async fn get(db: &impl ConnectionTrait, id: i64) -> Result<Option<FollowerSync>, DbErr> {
    Ok(follower_syncs::Entity::find_by_id(id)
        .one(db)
        .await?
        .map(to_domain))
}

/// The running sync of an app, if any.
pub async fn running(
    db: &impl ConnectionTrait,
    app_id: &str,
) -> Result<Option<FollowerSync>, DbErr> {
    Ok(follower_syncs::Entity::find()
        .filter(follower_syncs::Column::AppId.eq(app_id))
        .filter(follower_syncs::Column::Status.eq(SyncStatus::Running.as_str()))
        .one(db)
        .await?
        .map(to_domain))
}

/// The running sync of an app; else the latest sync, when it failed, set running again from
/// its checkpoint (a resume); else a new one from the first page.
pub async fn start_or_resume(
    db: &impl ConnectionTrait,
    app_id: &str,
    now: DateTime<Utc>,
) -> Result<FollowerSync, DbErr> {
    for _ in 0..5 {
        if let Some(s) = running(db, app_id).await? {
            return Ok(s);
        }
        let latest = follower_syncs::Entity::find()
            .filter(follower_syncs::Column::AppId.eq(app_id))
            .order_by_desc(follower_syncs::Column::Id)
            .one(db)
            .await?;
        let attempt = match latest {
            Some(l) if l.status == SyncStatus::Failed.as_str() => {
                follower_syncs::Entity::update_many()
                    .col_expr(
                        follower_syncs::Column::Status,
                        Expr::value(SyncStatus::Running.as_str()),
                    )
                    .col_expr(
                        follower_syncs::Column::FinishedAt,
                        Expr::value(Option::<DateTime<Utc>>::None),
                    )
                    .filter(follower_syncs::Column::Id.eq(l.id))
                    .filter(follower_syncs::Column::Status.eq(SyncStatus::Failed.as_str()))
                    .exec(db)
                    .await
                    .map(|_| ())
            }
            _ => follower_syncs::Entity::insert(follower_syncs::ActiveModel {
                id: ActiveValue::NotSet,
                app_id: ActiveValue::Set(app_id.to_owned()),
                status: ActiveValue::Set(SyncStatus::Running.as_str().to_owned()),
                next_openid: ActiveValue::Set(String::new()),
                page_position: ActiveValue::Set(0),
                followers_seen: ActiveValue::Set(0),
                linked: ActiveValue::Set(0),
                without_union_id: ActiveValue::Set(0),
                failed: ActiveValue::Set(0),
                started_at: ActiveValue::Set(now),
                finished_at: ActiveValue::Set(None),
                last_error: ActiveValue::Set(None),
                locked_until: ActiveValue::Set(None),
                lock_owner: ActiveValue::Set(None),
            })
            .exec_without_returning(db)
            .await
            .map(|_| ()),
        };
        match attempt {
            Ok(()) => {}
            // Another caller started (or resumed) one first: read theirs.
            Err(e) if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {}
            Err(e) => return Err(e),
        }
    }
    running(db, app_id)
        .await?
        .ok_or_else(|| DbErr::Custom(format!("no running follower sync for {app_id}")))
}

/// Leases a running sync to `owner` until `now + lease`, unless another owner's lease is
/// still live. Returns the sync as leased, or `None` when someone else holds it (or it is
/// no longer running).
pub async fn claim(
    db: &impl ConnectionTrait,
    id: i64,
    owner: &str,
    now: DateTime<Utc>,
    lease: Duration,
) -> Result<Option<FollowerSync>, DbErr> {
    let res = follower_syncs::Entity::update_many()
        .col_expr(follower_syncs::Column::LockOwner, Expr::value(owner))
        .col_expr(
            follower_syncs::Column::LockedUntil,
            Expr::value(now + lease),
        )
        .filter(follower_syncs::Column::Id.eq(id))
        .filter(follower_syncs::Column::Status.eq(SyncStatus::Running.as_str()))
        .filter(
            follower_syncs::Column::LockedUntil
                .is_null()
                .or(follower_syncs::Column::LockedUntil.lt(now))
                .or(follower_syncs::Column::LockOwner.eq(owner)),
        )
        .exec(db)
        .await?;
    if res.rows_affected == 0 {
        return Ok(None);
    }
    get(db, id).await
}

/// Records a finished batch: the new checkpoint and the batch's counts, in one statement, and
/// renews the lease. `false` when `owner` no longer holds the sync (it must stop).
#[allow(clippy::too_many_arguments)]
pub async fn checkpoint(
    db: &impl ConnectionTrait,
    id: i64,
    owner: &str,
    next_openid: &str,
    page_position: i32,
    counts: BatchCounts,
    now: DateTime<Utc>,
    lease: Duration,
) -> Result<bool, DbErr> {
    use follower_syncs::Column as C;
    let res = follower_syncs::Entity::update_many()
        .col_expr(C::NextOpenid, Expr::value(next_openid))
        .col_expr(C::PagePosition, Expr::value(page_position))
        .col_expr(
            C::FollowersSeen,
            Expr::col(C::FollowersSeen).add(counts.seen),
        )
        .col_expr(C::Linked, Expr::col(C::Linked).add(counts.linked))
        .col_expr(
            C::WithoutUnionId,
            Expr::col(C::WithoutUnionId).add(counts.without_union_id),
        )
        .col_expr(C::Failed, Expr::col(C::Failed).add(counts.failed))
        .col_expr(C::LockedUntil, Expr::value(now + lease))
        .filter(C::Id.eq(id))
        .filter(C::Status.eq(SyncStatus::Running.as_str()))
        .filter(C::LockOwner.eq(owner))
        .exec(db)
        .await?;
    Ok(res.rows_affected == 1)
}

/// Ends a sync held by `owner`: `Done`, or `Failed` with the error; releases the lease.
pub async fn finish(
    db: &impl ConnectionTrait,
    id: i64,
    owner: &str,
    status: SyncStatus,
    error: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    use follower_syncs::Column as C;
    follower_syncs::Entity::update_many()
        .col_expr(C::Status, Expr::value(status.as_str()))
        .col_expr(C::FinishedAt, Expr::value(now))
        .col_expr(
            C::LastError,
            Expr::value(error.map(|e| e.chars().take(500).collect::<String>())),
        )
        .col_expr(C::LockedUntil, Expr::value(Option::<DateTime<Utc>>::None))
        .col_expr(C::LockOwner, Expr::value(Option::<String>::None))
        .filter(C::Id.eq(id))
        .filter(C::LockOwner.eq(owner))
        .exec(db)
        .await?;
    Ok(())
}
