//! End-user sessions, stored by the SHA-256 of their token.

use chrono::{DateTime, Utc};
use entity::sessions;
use sea_orm::{ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter};

use crate::domain::{AppId, UserId};

/// Records a new session.
pub async fn create(
    db: &impl ConnectionTrait,
    token_hash: &str,
    user_id: &UserId,
    identity_id: &str,
    app_id: &AppId,
    now: DateTime<Utc>,
    expires_at: DateTime<Utc>,
) -> Result<(), DbErr> {
    sessions::Entity::insert(sessions::ActiveModel {
        token_hash: Set(token_hash.to_owned()),
        user_id: Set(user_id.as_str().to_owned()),
        identity_id: Set(identity_id.to_owned()),
        app_id: Set(app_id.as_str().to_owned()),
        created_at: Set(now),
        expires_at: Set(expires_at),
    })
    .exec_without_returning(db)
    .await?;
    Ok(())
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
