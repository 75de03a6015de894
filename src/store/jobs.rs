//! The jobs table: leasing, completing and retrying background work.
//!
//! A worker claims a job by setting `locked_until` (a lease) in one statement; on Postgres the
//! candidate row is picked with `FOR UPDATE SKIP LOCKED`, so many instances share the queue
//! without blocking each other. A job whose worker died is claimed again once its lease ends.

use chrono::{DateTime, Duration, Utc};
use entity::jobs;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue, ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, FromQueryResult,
    QueryFilter, Statement,
};

use crate::domain::job::{JobKind, JobStatus, Retry, retry};

/// A job to record.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub kind: JobKind,
    pub app_id: String,
    pub dedupe_key: String,
    pub payload: String,
    pub now: DateTime<Utc>,
}

/// Records a batch of new jobs in one statement; a job whose dedupe key is already there is
/// skipped (a retry or a duplicate).
///
/// On PostgreSQL one constant statement takes the whole batch as arrays (`UNNEST`): it is
/// prepared once per connection and costs no per-row SQL building. SQLite gets a multi-row
/// `INSERT`.
pub async fn insert_batch<'a>(
    db: &impl ConnectionTrait,
    batch: impl ExactSizeIterator<Item = &'a NewJob> + Clone,
) -> Result<(), DbErr> {
    if db.get_database_backend() == DbBackend::Postgres {
        let column = |f: fn(&NewJob) -> String| -> Vec<String> { batch.clone().map(f).collect() };
        let times: Vec<DateTime<Utc>> = batch.clone().map(|j| j.now).collect();
        let stmt = Statement::from_sql_and_values(
            DbBackend::Postgres,
            "INSERT INTO jobs (kind, app_id, dedupe_key, payload, status, attempts, run_at, created_at) \
             SELECT k, a, d, p, 'pending', 0, t, t \
             FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[]) AS u(k, a, d, p, t) \
             ON CONFLICT (dedupe_key) DO NOTHING",
            [
                column(|j| j.kind.as_str().to_owned()).into(),
                column(|j| j.app_id.clone()).into(),
                column(|j| j.dedupe_key.clone()).into(),
                column(|j| j.payload.clone()).into(),
                times.into(),
            ],
        );
        db.execute_raw(stmt).await?;
        return Ok(());
    }
    let rows = batch.map(|j| jobs::ActiveModel {
        id: ActiveValue::NotSet,
        kind: ActiveValue::Set(j.kind.as_str().to_owned()),
        app_id: ActiveValue::Set(j.app_id.clone()),
        dedupe_key: ActiveValue::Set(Some(j.dedupe_key.clone())),
        payload: ActiveValue::Set(j.payload.clone()),
        status: ActiveValue::Set(JobStatus::Pending.as_str().to_owned()),
        attempts: ActiveValue::Set(0),
        run_at: ActiveValue::Set(j.now),
        locked_until: ActiveValue::Set(None),
        last_error: ActiveValue::Set(None),
        created_at: ActiveValue::Set(j.now),
        finished_at: ActiveValue::Set(None),
    });
    jobs::Entity::insert_many(rows)
        .on_conflict_do_nothing_on([jobs::Column::DedupeKey])
        .exec_without_returning(db)
        .await?;
    Ok(())
}

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
        .col_expr(jobs::Column::Status, Expr::value(JobStatus::Done.as_str()))
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

/// Schedules a retry or parks the job as dead, as [`retry`] decides.
pub async fn fail(
    db: &impl ConnectionTrait,
    job: &jobs::Model,
    error: &str,
    permanent: bool,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    let (status, backoff) = match retry(job.attempts, permanent) {
        Retry::After(seconds) => (JobStatus::Pending, seconds),
        Retry::Park => (JobStatus::Dead, 0),
    };
    jobs::Entity::update_many()
        .col_expr(jobs::Column::Status, Expr::value(status.as_str()))
        .col_expr(
            jobs::Column::RunAt,
            Expr::value(now + Duration::seconds(backoff)),
        )
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
        .filter(jobs::Column::Status.eq(JobStatus::Done.as_str()))
        .filter(jobs::Column::FinishedAt.lt(before))
        .exec(db)
        .await?
        .rows_affected)
}
