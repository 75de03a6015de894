//! End-user sessions, stored by the SHA-256 of their token.
//!
//! Every request looks its session up here (there is no session cache), so a session ended
//! or revoked on one instance is gone for every instance at the next request.

use chrono::{DateTime, Utc};
use entity::sessions;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait,
    QueryFilter, TransactionTrait,
};

use super::events;
use crate::domain::{AppId, EventKind, NewEvent, UserId};

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
