//! End-user sessions, stored by the SHA-256 of their token.
//!
//! Every request looks its session up here (there is no session cache), so a session ended
//! or revoked on one instance is gone for every instance at the next request.

use chrono::{DateTime, Utc};
use entity::{identities, sessions, users};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DatabaseConnectionType,
    DbBackend, DbErr, EntityTrait, QueryFilter, TransactionTrait, sqlx,
};

use super::events;
use super::users::{identity_from_row, user_from_row};
use crate::domain::{AppId, EventKind, Identity, NewEvent, User, UserId};

/// A session to open.
#[derive(Debug, Clone)]
pub struct NewSession<'a> {
    pub token_hash: &'a str,
    pub user_id: &'a UserId,
    pub identity_id: &'a str,
    pub app_id: &'a AppId,
    pub open_id: &'a str,
    pub now: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// Opens a session and records its `LOGIN` event, in one transaction. The session goes to
/// the user `user_id` names now (the survivor, if a merge just took it). Returns that user.
pub async fn open(db: &DatabaseConnection, s: &NewSession<'_>) -> Result<UserId, DbErr> {
    let txn = db.begin().await?;
    let login = NewEvent::new(EventKind::Login).through(s.app_id.as_str(), s.open_id);
    let Some(owner) = events::record(&txn, s.user_id, s.now, &[login]).await? else {
        return Err(DbErr::RecordNotFound(format!("user {}", s.user_id)));
    };
    sessions::Entity::insert(sessions::ActiveModel {
        token_hash: Set(s.token_hash.to_owned()),
        user_id: Set(owner.as_str().to_owned()),
        identity_id: Set(s.identity_id.to_owned()),
        app_id: Set(s.app_id.as_str().to_owned()),
        created_at: Set(s.now),
        expires_at: Set(s.expires_at),
    })
    .exec_without_returning(&txn)
    .await?;
    txn.commit().await?;
    Ok(owner)
}

/// The user id behind a token hash, if the session exists and has not expired at `now`.
pub async fn user_of(
    db: &impl ConnectionTrait,
    token_hash: &str,
    now: DateTime<Utc>,
) -> Result<Option<UserId>, DbErr> {
    Ok(sessions::Entity::find_by_id(token_hash.to_owned())
        .filter(sessions::Column::ExpiresAt.gt(now))
        .one(db)
        .await?
        .map(|s| UserId::new(s.user_id)))
}

/// Ends one session; whether it was there.
pub async fn end(db: &impl ConnectionTrait, token_hash: &str) -> Result<bool, DbErr> {
    let deleted = sessions::Entity::delete_many()
        .filter(sessions::Column::TokenHash.eq(token_hash))
        .exec(db)
        .await?;
    Ok(deleted.rows_affected > 0)
}

/// Ends every live session of the user `user_id` names now (the survivor of a merge: a
/// merge moves the merged user's sessions to it, so they are included) and records
/// `SESSIONS_REVOKED` with the number ended, in one transaction. `None` for an unknown user.
pub async fn revoke_all(
    db: &DatabaseConnection,
    user_id: &UserId,
    now: DateTime<Utc>,
) -> Result<Option<u64>, DbErr> {
    let txn = db.begin().await?;
    // Lock the user first (and learn who it is now), then end its sessions.
    let Some(owner) = events::record(&txn, user_id, now, &[]).await? else {
        txn.rollback().await?;
        return Ok(None);
    };
    let ended = sessions::Entity::delete_many()
        .filter(sessions::Column::UserId.eq(owner.as_str()))
        .filter(sessions::Column::ExpiresAt.gt(now))
        .exec(&txn)
        .await?
        .rows_affected;
    let event = NewEvent::new(EventKind::SessionsRevoked).with_detail(ended.to_string());
    events::record(&txn, &owner, now, &[event]).await?;
    txn.commit().await?;
    Ok(Some(ended))
}

/// Deletes sessions expired at `now` (they already count as unknown); returns how many.
pub async fn prune(db: &impl ConnectionTrait, now: DateTime<Utc>) -> Result<u64, DbErr> {
    Ok(sessions::Entity::delete_many()
        .filter(sessions::Column::ExpiresAt.lte(now))
        .exec(db)
        .await?
        .rows_affected)
}

/// A login by someone already known in this app, as [`login_returning_batch`] takes it.
#[derive(Debug, Clone)]
pub struct ReturningLogin {
    pub app_id: AppId,
    /// The scope of the app (its open platform, or the app itself).
    pub scope: String,
    pub open_id: String,
    /// The unionid WeChat reported with this login, if any.
    pub union_id: Option<String>,
    pub token_hash: String,
    pub now: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// Returning users' logins, any number of them in one statement, one round trip and one
/// commit (PostgreSQL): for each login whose identity `(app, openid)` exists, whose user is
/// live and which tells nothing new about who is who (no unionid, or the one the user holds
/// in this scope: the linking rules' `Touch`), it refreshes the identity as a link would,
/// records `LOGIN` and opens the session. Identity and user rows are locked first, in
/// identity order, so that concurrent batches cannot deadlock on each other and the user's
/// events still commit in id order.
///
/// One answer per login, in order: `None` when that does not apply (a first login, a unionid
/// to adopt or merge, the same identity twice in one batch after its first, SQLite); that
/// login wrote nothing, and the caller links and opens its session the general way, which
/// decides every other case.
///
/// Sent through sqlx's pool directly with the batch's strings borrowed, like the callback
/// inbox's statement: sea-orm's `query_all_raw` copied every value and moved its larger
/// futures several times per batch (measured with `bench/callgrind.sh`).
pub async fn login_returning_batch(
    db: &DatabaseConnection,
    logins: &[ReturningLogin],
) -> Result<Vec<Option<(User, Identity)>>, DbErr> {
    let mut answers: Vec<Option<(User, Identity)>> = logins.iter().map(|_| None).collect();
    let DatabaseConnectionType::SqlxPostgresPoolConnection(_) = &db.inner else {
        return Ok(answers);
    };
    if logins.is_empty() {
        return Ok(answers);
    }
    // The identity columns as `link` would leave them after a `Touch` with a WeChat answer:
    // the unionid it or its user holds, `union_id_lookup` cleared once one is known
    // (`lookup_after`), `last_seen_at` never moved back. A unionid is never empty (it is
    // validated), so '' stands for none in its array. An identity twice in the batch is
    // touched once, by the first such login (`first`).
    const SQL: &str = "\
        WITH input AS ( \
            SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], \
                                 $5::timestamptz[], $6::text[], $7::timestamptz[]) \
                WITH ORDINALITY AS x(app_id, open_id, union_id, scope, at, token_hash, expires_at, n) \
        ), first AS ( \
            SELECT DISTINCT ON (app_id, open_id) * FROM input ORDER BY app_id, open_id, n \
        ), locked AS ( \
            SELECT x.n, i.id AS identity_id, u.union_id AS user_union_id, x.at \
            FROM first x \
            JOIN identities i ON i.app_id = x.app_id AND i.open_id = x.open_id \
            JOIN users u ON u.id = i.user_id \
            WHERE u.merged_into IS NULL \
              AND (x.union_id = '' OR (u.scope = x.scope AND u.union_id = x.union_id)) \
            ORDER BY i.id \
            FOR NO KEY UPDATE OF i, u \
        ), touched AS ( \
            UPDATE identities i SET \
                union_id = COALESCE(i.union_id, l.user_union_id), \
                union_id_lookup = CASE WHEN COALESCE(i.union_id, l.user_union_id) IS NULL \
                                       THEN 'answered' END, \
                last_seen_at = GREATEST(i.last_seen_at, l.at) \
            FROM locked l WHERE i.id = l.identity_id \
            RETURNING l.n, i.* \
        ), login AS ( \
            INSERT INTO events (user_id, kind, app_id, open_id, at) \
            SELECT t.user_id, $8, t.app_id, t.open_id, x.at \
            FROM touched t JOIN input x ON x.n = t.n ORDER BY t.n \
        ), opened AS ( \
            INSERT INTO sessions (token_hash, user_id, identity_id, app_id, created_at, expires_at) \
            SELECT x.token_hash, t.user_id, t.id, t.app_id, x.at, x.expires_at \
            FROM touched t JOIN input x ON x.n = t.n \
        ) \
        SELECT t.n, t.id, t.user_id, t.app_id, t.app_kind, t.open_id, t.union_id, t.subscribed, \
               t.subscription_event_time, t.union_id_lookup, t.first_seen_at, t.last_seen_at, \
               u.scope, u.union_id, u.merged_into, u.created_at, u.updated_at \
        FROM touched t JOIN users u ON u.id = t.user_id";
    let text = |f: fn(&ReturningLogin) -> &str| -> Vec<&str> { logins.iter().map(f).collect() };
    let time = |f: fn(&ReturningLogin) -> DateTime<Utc>| -> Vec<DateTime<Utc>> {
        logins.iter().map(f).collect()
    };
    // `get_postgres_connection_pool` panics on any other connection; matched above.
    let rows = sqlx::query(SQL)
        .bind(text(|l| l.app_id.as_str()))
        .bind(text(|l| l.open_id.as_str()))
        .bind(text(|l| l.union_id.as_deref().unwrap_or_default()))
        .bind(text(|l| l.scope.as_str()))
        .bind(time(|l| l.now))
        .bind(text(|l| l.token_hash.as_str()))
        .bind(time(|l| l.expires_at))
        .bind(EventKind::Login.as_str())
        .fetch_all(db.get_postgres_connection_pool())
        .await
        .map_err(|e| DbErr::Custom(format!("returning logins: {e}")))?;
    for row in rows {
        let (n, user, identity) =
            returning_row(&row).map_err(|e| DbErr::Custom(format!("returning logins: {e}")))?;
        let answer = usize::try_from(n)
            .ok()
            .and_then(|n| n.checked_sub(1))
            .and_then(|i| answers.get_mut(i))
            .ok_or_else(|| DbErr::Custom(format!("login batch answered for login {n}")))?;
        *answer = Some((user_from_row(user)?, identity_from_row(identity)?));
    }
    Ok(answers)
}

/// One row of [`login_returning_batch`]'s answer, by position: the login's number, its user
/// and its identity.
fn returning_row(
    row: &sqlx::postgres::PgRow,
) -> Result<(i64, users::Model, identities::Model), sqlx::Error> {
    use sqlx::Row;
    let identity = identities::Model {
        id: row.try_get(1)?,
        user_id: row.try_get(2)?,
        app_id: row.try_get(3)?,
        app_kind: row.try_get(4)?,
        open_id: row.try_get(5)?,
        union_id: row.try_get(6)?,
        subscribed: row.try_get(7)?,
        subscription_event_time: row.try_get(8)?,
        union_id_lookup: row.try_get(9)?,
        first_seen_at: row.try_get(10)?,
        last_seen_at: row.try_get(11)?,
    };
    let user = users::Model {
        id: identity.user_id.clone(),
        scope: row.try_get(12)?,
        union_id: row.try_get(13)?,
        merged_into: row.try_get(14)?,
        created_at: row.try_get(15)?,
        updated_at: row.try_get(16)?,
    };
    Ok((row.try_get(0)?, user, identity))
}

/// Writes returning logins on a pool of their own, opened at the first write: on PostgreSQL
/// `max_connections` connections with [`super::INDEX_ONLY`] settings (the statement keeps its
/// index plan as `users` grows), on SQLite the main pool (nothing is written there).
pub struct ReturningLoginWriter {
    main: DatabaseConnection,
    url: String,
    max_connections: u32,
    acquire_timeout: std::time::Duration,
    pool: tokio::sync::OnceCell<DatabaseConnection>,
}

impl ReturningLoginWriter {
    pub fn new(
        main: DatabaseConnection,
        url: &str,
        max_connections: u32,
        acquire_timeout: std::time::Duration,
    ) -> Self {
        ReturningLoginWriter {
            main,
            url: url.to_owned(),
            max_connections,
            acquire_timeout,
            pool: tokio::sync::OnceCell::new(),
        }
    }

    /// [`login_returning_batch`] on the writer's pool.
    pub async fn write(
        &self,
        logins: &[ReturningLogin],
    ) -> Result<Vec<Option<(User, Identity)>>, DbErr> {
        if self.main.get_database_backend() != DbBackend::Postgres {
            return login_returning_batch(&self.main, logins).await;
        }
        let pool = match self.pool.get() {
            Some(pool) => pool,
            // Boxed: opening a pool is a large future that runs once, and every batch's future
            // would carry it (18 KB copied per batch, measured with `bench/callgrind.sh`).
            None => {
                Box::pin(self.pool.get_or_try_init(|| {
                    super::connect_with(
                        &self.url,
                        self.max_connections,
                        self.acquire_timeout,
                        super::INDEX_ONLY,
                    )
                }))
                .await?
            }
        };
        login_returning_batch(pool, logins).await
    }
}

/// One returning login: [`login_returning_batch`] of one, on `db` (the service goes through
/// [`ReturningLoginWriter`]; tests call this).
pub async fn login_returning(
    db: &DatabaseConnection,
    login: &ReturningLogin,
) -> Result<Option<(User, Identity)>, DbErr> {
    Ok(login_returning_batch(db, std::slice::from_ref(login))
        .await?
        .pop()
        .flatten())
}
