//! The jobs table: leasing, completing and retrying background work.
//!
//! A worker claims a job by setting `locked_until` (a lease) in one statement; on Postgres the
//! candidate row is picked with `FOR UPDATE SKIP LOCKED`, so many instances share the queue
//! without blocking each other. A job whose worker died is claimed again once its lease ends.

use chrono::{DateTime, Duration, Utc};
use entity::jobs;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, FromQueryResult, QueryFilter,
    Statement,
};

pub const PENDING: &str = "pending";
pub const DONE: &str = "done";
pub const DEAD: &str = "dead";

/// Attempts before a job is parked as dead.
pub const MAX_ATTEMPTS: i32 = 12;

/// Leases the oldest runnable job, if any.
pub async fn claim(
    db: &impl ConnectionTrait,
    now: DateTime<Utc>,
    lease: Duration,
) -> Result<Option<jobs::Model>, DbErr> {
    let backend = db.get_database_backend();
    let lock = if backend == DbBackend::Postgres {
        "FOR UPDATE SKIP LOCKED"
    } else {
        ""
    };
    let sql = format!(
        "UPDATE jobs SET locked_until = $1, attempts = attempts + 1 \
         WHERE id = (SELECT id FROM jobs WHERE status = 'pending' AND run_at <= $2 \
                     AND (locked_until IS NULL OR locked_until < $2) \
                     ORDER BY id LIMIT 1 {lock}) \
         RETURNING *"
    );
    let stmt = Statement::from_sql_and_values(backend, sql, [(now + lease).into(), now.into()]);
    let row = db.query_one_raw(stmt).await?;
    row.map(|r| jobs::Model::from_query_result(&r, ""))
        .transpose()
}

/// Marks a job done; its row stays as the dedupe record for WeChat's retries.
pub async fn complete(db: &impl ConnectionTrait, id: i64, now: DateTime<Utc>) -> Result<(), DbErr> {
    jobs::Entity::update_many()
        .col_expr(jobs::Column::Status, Expr::value(DONE))
        .col_expr(jobs::Column::FinishedAt, Expr::value(now))
        .col_expr(
            jobs::Column::LockedUntil,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .filter(jobs::Column::Id.eq(id))
        .exec(db)
        .await?;
    Ok(())
}

/// Schedules a retry with exponential backoff, or parks the job as dead after too many tries
/// (or at once when `permanent`).
pub async fn fail(
    db: &impl ConnectionTrait,
    job: &jobs::Model,
    error: &str,
    permanent: bool,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    let dead = permanent || job.attempts >= MAX_ATTEMPTS;
    let backoff = Duration::seconds(2_i64.pow(job.attempts.clamp(0, 10) as u32).min(600));
    jobs::Entity::update_many()
        .col_expr(
            jobs::Column::Status,
            Expr::value(if dead { DEAD } else { PENDING }),
        )
        .col_expr(jobs::Column::RunAt, Expr::value(now + backoff))
        .col_expr(
            jobs::Column::LockedUntil,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .col_expr(
            jobs::Column::LastError,
            Expr::value(error.chars().take(500).collect::<String>()),
        )
        .filter(jobs::Column::Id.eq(job.id))
        .exec(db)
        .await?;
    Ok(())
}

/// Deletes done jobs finished before `before`. Their rows only matter as dedupe records while
/// WeChat may still retry (seconds); dead jobs are kept for an operator to read.
pub async fn prune(db: &impl ConnectionTrait, before: DateTime<Utc>) -> Result<u64, DbErr> {
    Ok(jobs::Entity::delete_many()
        .filter(jobs::Column::Status.eq(DONE))
        .filter(jobs::Column::FinishedAt.lt(before))
        .exec(db)
        .await?
        .rows_affected)
}
