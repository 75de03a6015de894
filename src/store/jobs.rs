//! The jobs table: leasing, completing and retrying background work.
//!
//! A worker claims a job by setting `locked_until` (a lease) in one statement; on Postgres the
//! candidate row is picked with `FOR UPDATE SKIP LOCKED`, so many instances share the queue
//! without blocking each other. A job whose worker died is claimed again once its lease ends.

use chrono::{DateTime, Duration, Utc};
use entity::jobs;
use std::collections::HashSet;

use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::sqlx;
use sea_orm::{
    ActiveValue, ColumnTrait, ConnectionTrait, DatabaseConnection, DatabaseConnectionType,
    DbBackend, DbErr, EntityTrait, FromQueryResult, QueryFilter, QueryTrait, Statement,
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
/// skipped (a retry or a duplicate). Returns, for each job in order, whether it was recorded
/// now (`false`: it took no effect, its key was already there or earlier in the batch).
///
/// On PostgreSQL, the callback inbox's hottest statement: one constant statement takes the
/// whole batch as arrays (`UNNEST`), prepared once per connection, sent through sqlx's pool
/// directly with the batch's strings borrowed (sea-orm's values would copy each one;
/// measured with `bench/callgrind.sh`). SQLite gets a multi-row `INSERT`. Both say which rows
/// they inserted with `RETURNING dedupe_key`, in that same statement.
pub async fn insert_batch<'a>(
    db: &DatabaseConnection,
    batch: impl ExactSizeIterator<Item = &'a NewJob> + Clone,
) -> Result<Vec<bool>, DbErr> {
    if batch.len() == 0 {
        return Ok(Vec::new());
    }
    let mut inserted = match &db.inner {
        DatabaseConnectionType::SqlxPostgresPoolConnection(_) => {
            insert_batch_postgres(db, batch.clone()).await?
        }
        _ => insert_batch_multi_row(db, batch.clone()).await?,
    };
    // A key inserted once counts for the first job carrying it; a second job with the same key
    // in this batch (a retry that raced its original) took no effect.
    Ok(batch.map(|j| inserted.remove(&j.dedupe_key)).collect())
}

/// The dedupe keys inserted, on PostgreSQL (`db` holds a PostgreSQL pool).
async fn insert_batch_postgres<'a>(
    db: &DatabaseConnection,
    batch: impl Iterator<Item = &'a NewJob> + Clone,
) -> Result<HashSet<String>, DbErr> {
    let column = |f: fn(&'a NewJob) -> &'a str| -> Vec<&'a str> { batch.clone().map(f).collect() };
    let times: Vec<DateTime<Utc>> = batch.clone().map(|j| j.now).collect();
    // `get_postgres_connection_pool` panics on any other connection; the caller matched it.
    let rows: Vec<(String,)> = sqlx::query_as(
        "INSERT INTO jobs (kind, app_id, dedupe_key, payload, status, attempts, run_at, created_at) \
         SELECT k, a, d, p, 'pending', 0, t, t \
         FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[]) AS u(k, a, d, p, t) \
         ON CONFLICT (dedupe_key) DO NOTHING \
         RETURNING dedupe_key",
    )
    .bind(column(|j| j.kind.as_str()))
    .bind(column(|j| j.app_id.as_str()))
    .bind(column(|j| j.dedupe_key.as_str()))
    .bind(column(|j| j.payload.as_str()))
    .bind(times)
    .fetch_all(db.get_postgres_connection_pool())
    .await
    .map_err(|e| DbErr::Custom(format!("inserting callback jobs: {e}")))?;
    Ok(rows.into_iter().map(|(k,)| k).collect())
}

/// The dedupe keys inserted, with a multi-row `INSERT` (SQLite).
async fn insert_batch_multi_row<'a>(
    db: &DatabaseConnection,
    batch: impl Iterator<Item = &'a NewJob>,
) -> Result<HashSet<String>, DbErr> {
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
    let mut query = jobs::Entity::insert_many(rows).into_query();
    query
        .on_conflict(
            OnConflict::column(jobs::Column::DedupeKey)
                .do_nothing()
                .to_owned(),
        )
        .returning_col(jobs::Column::DedupeKey);
    let stmt = db.get_database_backend().build(&query);
    let mut inserted = HashSet::new();
    for row in db.query_all_raw(stmt).await? {
        inserted.insert(row.try_get_by_index::<String>(0)?);
    }
    Ok(inserted)
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
///
/// Through the partial index `ix_jobs_done_finished_at`: the status is written into the
/// statement, not bound, because a plan can use a partial index only when the statement's
/// own text implies the index's `WHERE` (a cached plan for `status = $1` could not).
pub async fn prune(db: &impl ConnectionTrait, before: DateTime<Utc>) -> Result<u64, DbErr> {
    Ok(jobs::Entity::delete_many()
        .filter(Expr::cust("status = 'done'"))
        .filter(jobs::Column::FinishedAt.lt(before))
        .exec(db)
        .await?
        .rows_affected)
}

/// The queue at a glance, for the `wxunion_jobs` gauges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Waiting to run: new, or retrying after a backoff, or left by a worker that died.
    pub pending: i64,
    /// Leased by a worker right now.
    pub running: i64,
    /// Done, kept as dedupe records until pruned.
    pub done: i64,
    /// Parked after a permanent error or too many attempts.
    pub dead: i64,
    /// When the oldest job still to run (pending or running) was recorded.
    pub oldest_pending: Option<DateTime<Utc>>,
}

/// The queue's gauges, without reading the whole table: run every few seconds by one task
/// per instance, never per request.
///
/// On PostgreSQL, pending and running jobs (and the oldest of them) are counted through the
/// partial index `ix_jobs_pending`, dead ones through `ix_jobs_dead`; done jobs, most of the
/// table (kept a day as dedupe records), are estimated: the table's live rows as PostgreSQL's
/// statistics count them (`n_live_tup`, kept up to date by every insert and delete, seconds
/// behind), less the others. On SQLite, a single-instance database, everything is counted.
pub async fn stats(db: &impl ConnectionTrait, now: DateTime<Utc>) -> Result<QueueStats, DbErr> {
    let backend = db.get_database_backend();
    let postgres = backend == DbBackend::Postgres;
    // The status is written out, not bound: only a literal lets the planner use the partial
    // indexes, whose predicates name it.
    let by_lease = Statement::from_sql_and_values(
        backend,
        if postgres {
            "SELECT status, CAST(CASE WHEN locked_until > $1 THEN 1 ELSE 0 END AS BIGINT), \
                    COUNT(*), MIN(created_at) \
             FROM jobs WHERE status = 'pending' GROUP BY 1, 2 \
             UNION ALL SELECT 'dead', 0, COUNT(*), NULL FROM jobs WHERE status = 'dead'"
        } else {
            "SELECT status, CAST(CASE WHEN locked_until > $1 THEN 1 ELSE 0 END AS BIGINT), \
                    COUNT(*), MIN(created_at) \
             FROM jobs GROUP BY 1, 2"
        },
        [now.into()],
    );
    let mut stats = QueueStats::default();
    for row in db.query_all_raw(by_lease).await? {
        let status: String = row.try_get_by_index(0)?;
        let leased: i64 = row.try_get_by_index(1)?;
        let count: i64 = row.try_get_by_index(2)?;
        let oldest: Option<DateTime<Utc>> = row.try_get_by_index(3)?;
        let counter = match JobStatus::parse(&status) {
            Some(JobStatus::Pending) => {
                stats.oldest_pending = match (stats.oldest_pending, oldest) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                if leased == 1 {
                    &mut stats.running
                } else {
                    &mut stats.pending
                }
            }
            Some(JobStatus::Done) => &mut stats.done,
            Some(JobStatus::Dead) => &mut stats.dead,
            None => continue,
        };
        *counter += count;
    }
    if postgres {
        let live = Statement::from_string(
            backend,
            "SELECT COALESCE(n_live_tup, 0) FROM pg_stat_user_tables \
             WHERE relid = CAST('jobs' AS regclass)",
        );
        let live: i64 = match db.query_one_raw(live).await? {
            Some(row) => row.try_get_by_index(0)?,
            None => 0,
        };
        stats.done = (live - stats.pending - stats.running - stats.dead).max(0);
    }
    Ok(stats)
}
