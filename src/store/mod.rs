//! Persistence: every SQL statement wxunion runs lives under this module, and it returns
//! domain types, never entity models, to the layers above.

pub mod events;
pub mod follower_syncs;
pub mod group_commit;
pub mod jobs;
pub mod links;
pub mod phones;
pub mod sessions;
pub mod users;

use std::time::Duration;

use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectOptions, Database, DatabaseConnection, DbErr, SqlErr};

impl From<DbErr> for crate::domain::Error {
    fn from(e: DbErr) -> Self {
        crate::domain::Error::internal(e)
    }
}

/// Opens the pool for a command or a test: a connection may take up to 10 s to come.
pub async fn connect(url: &str, max_connections: u32) -> Result<DatabaseConnection, DbErr> {
    connect_bounded(url, max_connections, Duration::from_secs(10)).await
}

/// Opens the pool. SQLite gets a single connection: it has one writer at a time anyway, and
/// one connection turns "database is locked" races into an orderly queue.
///
/// `acquire_timeout` bounds every wait for a connection (opening one included): with the
/// database down or every connection busy, a statement fails after it instead of queueing.
/// It bounds no statement once it runs (no `statement_timeout`: migrations and the follower
/// backfill may take long); request paths bound their database work themselves.
pub async fn connect_bounded(
    url: &str,
    max_connections: u32,
    acquire_timeout: Duration,
) -> Result<DatabaseConnection, DbErr> {
    connect_with(url, max_connections, acquire_timeout, &[]).await
}

/// PostgreSQL settings of a pool that runs only statements that find every row through an
/// index ([`sessions::login_returning_batch`]).
///
/// A cached generic plan lives as long as its connection, and one made while a table was
/// small may scan the table whole ever after: planned while `users` held a few hundred rows,
/// every returning login read all of `users` once it had grown to thousands
/// (`bench/login.sh`). With sequential scans priced out such a statement keeps its index
/// plan whatever the tables' sizes. Not for the main pool: there the job gauges count whole
/// tables, and priced out a scan still runs but costs them parallelism and triggers JIT
/// (342 ms against 79 ms for 400,000 jobs). `jit` is off too: no statement there needs it.
pub const INDEX_ONLY: &[(&str, &str)] = &[("enable_seqscan", "off"), ("jit", "off")];

/// [`connect_bounded`] with PostgreSQL settings for every connection of the pool (ignored
/// on SQLite).
pub async fn connect_with(
    url: &str,
    max_connections: u32,
    acquire_timeout: Duration,
    pg_settings: &'static [(&'static str, &'static str)],
) -> Result<DatabaseConnection, DbErr> {
    let mut opts = ConnectOptions::new(url.to_owned());
    opts.sqlx_logging(false)
        .connect_timeout(acquire_timeout)
        .acquire_timeout(acquire_timeout);
    if url.starts_with("sqlite:") {
        opts.max_connections(1).min_connections(1);
    } else {
        // PostgreSQL's default plan caching: every statement is prepared once per connection
        // and, after five executions, runs a cached generic plan when that is no worse. Each
        // request path's statement finds its rows through a unique or partial index (the job
        // claim walks `ix_jobs_pending` in id order, empty table or not), and planning the
        // login statement anew each time cost more than running it; see [`INDEX_ONLY`] for
        // the one that needs more.
        // A pooled connection is pinged before use only after a second idle (a dropped one
        // is found then); one in steady use is not, which saves a round trip per statement.
        opts.max_connections(max_connections)
            .min_connections(1)
            .test_before_acquire_if_idle_for(Duration::from_secs(1));
        if !pg_settings.is_empty() {
            opts.map_sqlx_postgres_opts(move |o| o.options(pg_settings.iter().copied()));
        }
    }
    Database::connect(opts).await
}

/// Applies every pending migration; safe to run from many instances at start-up on Postgres
/// because sea-orm runs each migration in a transaction.
pub async fn migrate(db: &DatabaseConnection) -> Result<(), DbErr> {
    Migrator::up(db, None).await
}

/// How many migrations this binary has that the database lacks (without creating anything).
pub async fn pending_migrations(db: &DatabaseConnection) -> Result<usize, DbErr> {
    Ok(Migrator::get_pending_migrations_read_only(db).await?.len())
}

/// One round trip, for `/readyz`.
pub async fn ping(db: &DatabaseConnection) -> Result<(), DbErr> {
    db.ping().await
}

/// Whether a failed transaction is worth running again: a unique-key race lost to a
/// concurrent writer, or SQLite's busy answer.
pub fn is_retryable(e: &DbErr) -> bool {
    if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) {
        return true;
    }
    let s = e.to_string();
    s.contains("database is locked")
        || s.contains("could not serialize")
        || s.contains("deadlock detected")
}

impl From<group_commit::FlushFailed> for crate::domain::Error {
    fn from(e: group_commit::FlushFailed) -> Self {
        crate::domain::Error::internal(e)
    }
}
