//! Reading users and their identities.

use entity::{identities, users};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, FromQueryResult, QueryFilter,
    QueryOrder, Statement,
};

use crate::domain::{AppId, AppKind, Identity, OpenId, UnionId, UnionLookup, User, UserId};

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
    let union_lookup = m
        .union_id_lookup
        .map(|l| UnionLookup::parse(&l).ok_or_else(|| corrupt("identities.union_id_lookup", &l)))
        .transpose()?;
    Ok(Identity {
        id: m.id,
        user_id: UserId::new(m.user_id),
        app_id,
        app_kind,
        open_id,
        union_id,
        subscribed: m.subscribed,
        union_lookup,
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

/// How many `merged_into` links a lookup follows before it gives up. Merges only go into a
/// user holding a unionid, which is never merged itself, so real chains have one link.
pub const MAX_MERGE_HOPS: usize = 8;

/// The user an id names today: the user itself, or the user it was merged into (following
/// `merged_into`, at most [`MAX_MERGE_HOPS`] links; a cycle or a longer chain is a corrupt
/// database and an error). `None` for an id never seen.
pub async fn live(db: &impl ConnectionTrait, id: &UserId) -> Result<Option<User>, DbErr> {
    let mut seen: Vec<String> = Vec::new();
    let mut next = id.as_str().to_owned();
    loop {
        let Some(row) = users::Entity::find_by_id(next.clone()).one(db).await? else {
            return Ok(None);
        };
        seen.push(row.id.clone());
        match row.merged_into.clone() {
            None => return user_from_row(row).map(Some),
            Some(into) if seen.contains(&into) || seen.len() > MAX_MERGE_HOPS => {
                return Err(DbErr::Custom(format!(
                    "corrupt row: users.merged_into of user {id} does not lead to a live user"
                )));
            }
            Some(into) => next = into,
        }
    }
}

/// The id of the live user `id` names (see [`live`]), locking its row on PostgreSQL until the
/// transaction ends. Writers that record events take this lock first, so a user's events
/// commit in the order of their ids and a reader paging by id never skips one that commits
/// late. `None` for an id never seen.
pub(crate) async fn live_id_for_update(
    db: &impl ConnectionTrait,
    id: &str,
) -> Result<Option<String>, DbErr> {
    #[derive(FromQueryResult)]
    struct Row {
        id: String,
        merged_into: Option<String>,
    }
    let backend = db.get_database_backend();
    let lock = if backend == DbBackend::Postgres {
        " FOR UPDATE"
    } else {
        ""
    };
    let sql = format!("SELECT id, merged_into FROM users WHERE id = $1{lock}");
    let mut seen: Vec<String> = Vec::new();
    let mut next = id.to_owned();
    loop {
        let stmt = Statement::from_sql_and_values(backend, sql.clone(), [next.clone().into()]);
        let Some(row) = db.query_one_raw(stmt).await? else {
            return Ok(None);
        };
        let row = Row::from_query_result(&row, "")?;
        seen.push(row.id.clone());
        match row.merged_into {
            None => return Ok(Some(row.id)),
            Some(into) if seen.contains(&into) || seen.len() > MAX_MERGE_HOPS => {
                return Err(DbErr::Custom(format!(
                    "corrupt row: users.merged_into of user {id} does not lead to a live user"
                )));
            }
            Some(into) => next = into,
        }
    }
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

/// Identities counted by app, by whether the unionid is known, and by the stored lookup state
/// (`None` when none was recorded): one grouped scan, for the `wxunion_identities` gauge.
pub async fn count_by_union_state(
    db: &impl ConnectionTrait,
) -> Result<Vec<(String, bool, Option<UnionLookup>, i64)>, DbErr> {
    let backend = db.get_database_backend();
    let rows = db
        .query_all_raw(sea_orm::Statement::from_string(
            backend,
            "SELECT app_id, CASE WHEN union_id IS NULL THEN 0 ELSE 1 END AS known, \
             union_id_lookup, COUNT(*) AS n FROM identities GROUP BY 1, 2, 3",
        ))
        .await?;
    rows.into_iter()
        .map(|r| {
            let app_id: String = r.try_get_by_index(0)?;
            let known: i32 = r.try_get_by_index(1)?;
            let lookup: Option<String> = r.try_get_by_index(2)?;
            let n: i64 = r.try_get_by_index(3)?;
            let lookup = lookup
                .map(|l| {
                    UnionLookup::parse(&l).ok_or_else(|| corrupt("identities.union_id_lookup", &l))
                })
                .transpose()?;
            Ok((app_id, known == 1, lookup, n))
        })
        .collect()
}
