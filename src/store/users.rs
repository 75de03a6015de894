//! Reading users and their identities.

use entity::{identities, users};
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder};

use crate::domain::{AppId, AppKind, Identity, OpenId, UnionId, User, UserId};

/// A row that does not hold what wxunion writes (a hand-edited database): an error, never a
/// silent default.
fn corrupt(what: &str, value: &str) -> DbErr {
    DbErr::Custom(format!("corrupt row: {what} `{value}`"))
}

/// A user row as a domain value.
pub(crate) fn user_from_row(m: users::Model) -> Result<User, DbErr> {
    let union_id = m
        .union_id
        .map(|u| UnionId::parse(&u).map_err(|_| corrupt("users.union_id", &u)))
        .transpose()?;
    Ok(User {
        id: UserId::new(m.id),
        scope: m.scope,
        union_id,
        created_at: m.created_at,
    })
}

/// An identity row as a domain value.
pub(crate) fn identity_from_row(m: identities::Model) -> Result<Identity, DbErr> {
    let app_kind =
        AppKind::parse(&m.app_kind).ok_or_else(|| corrupt("identities.app_kind", &m.app_kind))?;
    let app_id = AppId::parse(&m.app_id).map_err(|_| corrupt("identities.app_id", &m.app_id))?;
    let open_id =
        OpenId::parse(&m.open_id).map_err(|_| corrupt("identities.open_id", &m.open_id))?;
    let union_id = m
        .union_id
        .map(|u| UnionId::parse(&u).map_err(|_| corrupt("identities.union_id", &u)))
        .transpose()?;
    Ok(Identity {
        id: m.id,
        user_id: UserId::new(m.user_id),
        app_id,
        app_kind,
        open_id,
        union_id,
        subscribed: m.subscribed,
        first_seen_at: m.first_seen_at,
        last_seen_at: m.last_seen_at,
    })
}

/// The live (not merged-away) user that owns this unionid. When several open platforms reuse
/// a unionid string (WeChat never does), the oldest user wins.
pub async fn by_union_id(
    db: &impl ConnectionTrait,
    union_id: &UnionId,
) -> Result<Option<User>, DbErr> {
    users::Entity::find()
        .filter(users::Column::UnionId.eq(union_id.as_str()))
        .filter(users::Column::MergedInto.is_null())
        .order_by_asc(users::Column::CreatedAt)
        .one(db)
        .await?
        .map(user_from_row)
        .transpose()
}

/// A user by id.
pub async fn by_id(db: &impl ConnectionTrait, id: &UserId) -> Result<Option<User>, DbErr> {
    users::Entity::find_by_id(id.as_str().to_owned())
        .one(db)
        .await?
        .map(user_from_row)
        .transpose()
}

/// Every identity of a user, oldest first.
pub async fn identities_of(
    db: &impl ConnectionTrait,
    user_id: &UserId,
) -> Result<Vec<Identity>, DbErr> {
    identities::Entity::find()
        .filter(identities::Column::UserId.eq(user_id.as_str()))
        .order_by_asc(identities::Column::FirstSeenAt)
        .order_by_asc(identities::Column::AppId)
        .all(db)
        .await?
        .into_iter()
        .map(identity_from_row)
        .collect()
}

/// One identity by app and openid.
pub async fn identity(
    db: &impl ConnectionTrait,
    app_id: &str,
    open_id: &str,
) -> Result<Option<Identity>, DbErr> {
    identities::Entity::find()
        .filter(identities::Column::AppId.eq(app_id))
        .filter(identities::Column::OpenId.eq(open_id))
        .one(db)
        .await?
        .map(identity_from_row)
        .transpose()
}

/// How many identities each app has, and how many of them carry a unionid, in one statement
/// (for `wxunion check`; apps with no identity are absent).
pub async fn union_id_coverage(
    db: &impl ConnectionTrait,
) -> Result<std::collections::HashMap<String, (i64, i64)>, DbErr> {
    let stmt = sea_orm::Statement::from_string(
        db.get_database_backend(),
        "SELECT app_id, COUNT(*), COUNT(union_id) FROM identities GROUP BY app_id",
    );
    let mut out = std::collections::HashMap::new();
    for row in db.query_all_raw(stmt).await? {
        let app_id: String = row.try_get_by_index(0)?;
        let identities: i64 = row.try_get_by_index(1)?;
        let with_union_id: i64 = row.try_get_by_index(2)?;
        out.insert(app_id, (identities, with_union_id));
    }
    Ok(out)
}
