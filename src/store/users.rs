//! Reading users and their identities.

use entity::{identities, users};
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder};

use crate::identity::{Identity, User};

/// The live (not merged-away) user that owns this unionid. When several open platforms reuse
/// a unionid string (WeChat never does), the oldest user wins.
pub async fn by_union_id(db: &impl ConnectionTrait, union_id: &str) -> Result<Option<User>, DbErr> {
    Ok(users::Entity::find()
        .filter(users::Column::UnionId.eq(union_id))
        .filter(users::Column::MergedInto.is_null())
        .order_by_asc(users::Column::CreatedAt)
        .one(db)
        .await?
        .map(User::from))
}

/// A user by id.
pub async fn by_id(db: &impl ConnectionTrait, id: &str) -> Result<Option<User>, DbErr> {
    Ok(users::Entity::find_by_id(id.to_owned())
        .one(db)
        .await?
        .map(User::from))
}

/// Every identity of a user, oldest first.
pub async fn identities_of(
    db: &impl ConnectionTrait,
    user_id: &str,
) -> Result<Vec<Identity>, DbErr> {
    Ok(identities::Entity::find()
        .filter(identities::Column::UserId.eq(user_id))
        .order_by_asc(identities::Column::FirstSeenAt)
        .order_by_asc(identities::Column::AppId)
        .all(db)
        .await?
        .into_iter()
        .map(Identity::from)
        .collect())
}

/// One identity by app and openid.
pub async fn identity(
    db: &impl ConnectionTrait,
    app_id: &str,
    open_id: &str,
) -> Result<Option<Identity>, DbErr> {
    Ok(identities::Entity::find()
        .filter(identities::Column::AppId.eq(app_id))
        .filter(identities::Column::OpenId.eq(open_id))
        .one(db)
        .await?
        .map(Identity::from))
}
