//! The audit trail. Events are written with [`record`] inside the transaction of the change
//! they describe (the caller passes its transaction), read newest first by id, moved with a
//! merge, and pruned after the retention period.

use chrono::{DateTime, Utc};
use entity::events;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::NotSet, ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect, Statement,
};

use super::users::live_id_for_update;
use crate::domain::{Event, EventKind, NewEvent, UserId};

/// Records `events` (in order) on the user `user_id` names now: itself, or the user it was
/// merged into. Call it with the transaction of the change the events describe.
///
/// On PostgreSQL it first locks the user's row until the transaction ends, so that the
/// user's events commit in id order (see [`super::users::live_id_for_update`]). Returns the
/// user the events went to, or `None` (and records nothing) for an unknown user.
pub async fn record(
    db: &impl ConnectionTrait,
    user_id: &UserId,
    at: DateTime<Utc>,
    events: &[NewEvent],
) -> Result<Option<UserId>, DbErr> {
    let Some(owner) = live_id_for_update(db, user_id.as_str()).await? else {
        return Ok(None);
    };
    if !events.is_empty() {
        let rows = events.iter().map(|e| events::ActiveModel {
            id: NotSet,
            user_id: Set(owner.clone()),
            kind: Set(e.kind.as_str().to_owned()),
            app_id: Set(e.app_id.clone()),
            open_id: Set(e.open_id.clone()),
            at: Set(at),
            detail: Set(e.detail.clone()),
        });
        events::Entity::insert_many(rows)
            .exec_without_returning(db)
            .await?;
    }
    Ok(Some(UserId::new(owner)))
}

/// Up to `limit` events of a user, newest first, older than the event `before` when given.
pub async fn page(
    db: &impl ConnectionTrait,
    user_id: &UserId,
    before: Option<i64>,
    limit: u64,
) -> Result<Vec<Event>, DbErr> {
    let mut query = events::Entity::find().filter(events::Column::UserId.eq(user_id.as_str()));
    if let Some(before) = before {
        query = query.filter(events::Column::Id.lt(before));
    }
    query
        .order_by_desc(events::Column::Id)
        .limit(limit)
        .all(db)
        .await?
        .into_iter()
        .map(event_from_row)
        .collect()
}

/// Moves every event of `from` to `to` (a merge: the merged user's history goes with it).
pub(crate) async fn move_all(db: &impl ConnectionTrait, from: &str, to: &str) -> Result<(), DbErr> {
    events::Entity::update_many()
        .col_expr(events::Column::UserId, Expr::value(to))
        .filter(events::Column::UserId.eq(from))
        .exec(db)
        .await?;
    Ok(())
}

/// Deletes up to `batch` events recorded before `before`, oldest first; returns how many.
/// Callers loop until it returns less than `batch`, so no statement holds locks for long.
pub async fn prune(
    db: &impl ConnectionTrait,
    before: DateTime<Utc>,
    batch: u64,
) -> Result<u64, DbErr> {
    let backend = db.get_database_backend();
    let sql = "DELETE FROM events WHERE id IN \
               (SELECT id FROM events WHERE at < $1 ORDER BY id LIMIT $2)";
    let limit = i64::try_from(batch).unwrap_or(i64::MAX);
    let stmt = Statement::from_sql_and_values(backend, sql, [before.into(), limit.into()]);
    Ok(db.execute_raw(stmt).await?.rows_affected())
}

fn event_from_row(m: events::Model) -> Result<Event, DbErr> {
    let kind = EventKind::parse(&m.kind)
        .ok_or_else(|| DbErr::Custom(format!("corrupt row: events.kind `{}`", m.kind)))?;
    Ok(Event {
        id: m.id,
        user_id: UserId::new(m.user_id),
        kind,
        app_id: m.app_id,
        open_id: m.open_id,
        at: m.at,
        detail: m.detail,
    })
}
