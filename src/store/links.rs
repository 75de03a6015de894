//! Linking an (app, openid) sighting to a user: the heart of wxunion.
//!
//! Every path that learns of a person (a login, a callback event, `user/info`) ends here.
//! The rules, in one transaction:
//! - a new (app, openid) becomes an identity of the user that owns its unionid, creating that
//!   user if needed; without a unionid it gets a user of its own;
//! - a known identity whose unionid turns up joins the unionid's user: its own user adopts the
//!   unionid when nobody has it yet, or is merged into the user who has (`merged_into`), with
//!   its identities and sessions moved across;
//! - inserts use `ON CONFLICT DO NOTHING` and the unique keys on `(scope, union_id)` and
//!   `(app_id, open_id)`, so concurrent first logins of one person create one user; a lost
//!   race is retried from the top.

use chrono::{DateTime, Utc};
use entity::{identities, sessions, users};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr,
    EntityTrait, QueryFilter, TransactionTrait, TryInsertResult,
};

use crate::config::AppConfig;
use crate::identity::{Identity, User};

/// What we learned about a person from one app.
#[derive(Debug, Clone)]
pub struct Sighting<'a> {
    pub app: &'a AppConfig,
    pub open_id: &'a str,
    pub union_id: Option<&'a str>,
    pub seen_at: DateTime<Utc>,
    /// A follow state and the WeChat `CreateTime` (seconds) of the event that set it; applied
    /// only when not older than the state already stored.
    pub subscription: Option<(bool, i64)>,
}

/// The outcome of a link.
#[derive(Debug, Clone)]
pub struct Linked {
    pub user: User,
    pub identity: Identity,
    pub is_new_user: bool,
}

enum Attempt {
    Done(Box<Linked>),
    Retry,
}

const MAX_ATTEMPTS: u32 = 8;

/// Links a sighting, retrying lost races. Returns the user and identity as they now stand.
pub async fn link(db: &DatabaseConnection, s: &Sighting<'_>) -> Result<Linked, DbErr> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let txn = db.begin().await?;
        let outcome = link_once(&txn, s).await;
        match outcome {
            Ok(Attempt::Done(linked)) => match txn.commit().await {
                Ok(()) => return Ok(*linked),
                Err(e) if attempt < MAX_ATTEMPTS && super::is_retryable(&e) => {}
                Err(e) => return Err(e),
            },
            Ok(Attempt::Retry) if attempt < MAX_ATTEMPTS => {
                txn.rollback().await?;
            }
            Err(e) if attempt < MAX_ATTEMPTS && super::is_retryable(&e) => {
                txn.rollback().await?;
            }
            Ok(Attempt::Retry) => {
                txn.rollback().await?;
                return Err(DbErr::Custom("identity link kept losing races".into()));
            }
            Err(e) => {
                let _ = txn.rollback().await;
                return Err(e);
            }
        }
        let jitter = u64::from(rand::random::<u8>() % 20);
        tokio::time::sleep(std::time::Duration::from_millis(
            5 * u64::from(attempt) + jitter,
        ))
        .await;
    }
}

async fn link_once(db: &impl ConnectionTrait, s: &Sighting<'_>) -> Result<Attempt, DbErr> {
    let scope = s.app.scope();
    let existing = identities::Entity::find()
        .filter(identities::Column::AppId.eq(&s.app.app_id))
        .filter(identities::Column::OpenId.eq(s.open_id))
        .one(db)
        .await?;

    let Some(identity) = existing else {
        // A first sighting of this (app, openid).
        let (user, is_new_user) = match s.union_id {
            Some(u) => match union_user(db, &scope, u, s.seen_at).await? {
                Some(found) => found,
                None => return Ok(Attempt::Retry),
            },
            None => (insert_user(db, &scope, None, s.seen_at).await?, true),
        };
        let row = identities::Model {
            id: new_id(),
            user_id: user.id.clone(),
            app_id: s.app.app_id.clone(),
            app_kind: s.app.kind.as_str().to_owned(),
            open_id: s.open_id.to_owned(),
            union_id: s.union_id.map(str::to_owned),
            subscribed: s.subscription.map(|(on, _)| on),
            subscription_event_time: s.subscription.map(|(_, t)| t),
            first_seen_at: s.seen_at,
            last_seen_at: s.seen_at,
        };
        let inserted =
            identities::Entity::insert(identities::ActiveModel::from(row.clone()).reset_all())
                .on_conflict_do_nothing_on([identities::Column::AppId, identities::Column::OpenId])
                .exec_without_returning(db)
                .await?;
        if !matches!(inserted, TryInsertResult::Inserted(n) if n > 0) {
            return Ok(Attempt::Retry);
        }
        return Ok(Attempt::Done(Box::new(Linked {
            user: User::from(user),
            identity: Identity::from(row),
            is_new_user,
        })));
    };

    // A known identity: bring its user in line with the unionid, then touch it.
    let mut current = users::Entity::find_by_id(identity.user_id.clone())
        .one(db)
        .await?
        .ok_or_else(|| DbErr::RecordNotFound(format!("user {}", identity.user_id)))?;
    let mut union_id = identity.union_id.clone();
    if let Some(u) = s.union_id
        && current.union_id.as_deref() != Some(u)
    {
        let owner = users::Entity::find()
            .filter(users::Column::Scope.eq(&scope))
            .filter(users::Column::UnionId.eq(u))
            .one(db)
            .await?;
        let target = match owner {
            Some(target) => Some(target),
            // The identity's own user can simply adopt the unionid.
            None if current.union_id.is_none() => None,
            // WeChat never changes an openid's unionid; if it seems to, follow WeChat and
            // move only this identity to a (new) user of the unionid it reports now.
            None => {
                tracing::warn!(app_id = %s.app.app_id, "openid reported with a different unionid");
                match union_user(db, &scope, u, s.seen_at).await? {
                    Some((target, _)) => Some(target),
                    None => return Ok(Attempt::Retry),
                }
            }
        };
        current = match target {
            Some(target) => {
                move_identities(db, &current.id, &identity.id, &target.id, u, s.seen_at).await?;
                target
            }
            None => {
                // A unique violation here means a concurrent writer created the unionid's
                // user first: the attempt is retried and then takes the merge path.
                let mut am: users::ActiveModel = current.into();
                am.union_id = Set(Some(u.to_owned()));
                am.updated_at = Set(s.seen_at);
                let adopted = am.update(db).await?;
                identities::Entity::update_many()
                    .col_expr(identities::Column::UnionId, Expr::value(u))
                    .filter(identities::Column::UserId.eq(&adopted.id))
                    .exec(db)
                    .await?;
                adopted
            }
        };
        union_id = Some(u.to_owned());
    }

    let mut am: identities::ActiveModel = identity.clone().into();
    am.user_id = Set(current.id.clone());
    am.union_id = Set(union_id);
    am.last_seen_at = Set(s.seen_at.max(identity.last_seen_at));
    if let Some((on, at)) = s.subscription
        && identity
            .subscription_event_time
            .is_none_or(|stored| at >= stored)
    {
        am.subscribed = Set(Some(on));
        am.subscription_event_time = Set(Some(at));
    }
    let identity = am.update(db).await?;
    Ok(Attempt::Done(Box::new(Linked {
        user: User::from(current),
        identity: Identity::from(identity),
        is_new_user: false,
    })))
}

/// Finds or creates the user owning `union_id` in `scope`. `None` means a concurrent creator
/// has not committed yet and the caller should retry.
async fn union_user(
    db: &impl ConnectionTrait,
    scope: &str,
    union_id: &str,
    now: DateTime<Utc>,
) -> Result<Option<(users::Model, bool)>, DbErr> {
    let find = || {
        users::Entity::find()
            .filter(users::Column::Scope.eq(scope))
            .filter(users::Column::UnionId.eq(union_id))
            .one(db)
    };
    if let Some(u) = find().await? {
        return Ok(Some((u, false)));
    }
    let row = user_row(scope, Some(union_id), now);
    let inserted = users::Entity::insert(users::ActiveModel::from(row.clone()).reset_all())
        .on_conflict_do_nothing_on([users::Column::Scope, users::Column::UnionId])
        .exec_without_returning(db)
        .await?;
    if matches!(inserted, TryInsertResult::Inserted(n) if n > 0) {
        return Ok(Some((row, true)));
    }
    Ok(find().await?.map(|u| (u, false)))
}

async fn insert_user(
    db: &impl ConnectionTrait,
    scope: &str,
    union_id: Option<&str>,
    now: DateTime<Utc>,
) -> Result<users::Model, DbErr> {
    let row = user_row(scope, union_id, now);
    users::Entity::insert(users::ActiveModel::from(row.clone()).reset_all())
        .exec_without_returning(db)
        .await?;
    Ok(row)
}

/// Moves `identity` to `to`. When `from` has no unionid of its own it is the same person
/// as `to` through and through: all its identities and sessions move, and it is marked merged.
async fn move_identities(
    db: &impl ConnectionTrait,
    from: &str,
    identity: &str,
    to: &str,
    union_id: &str,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    let from_user = users::Entity::find_by_id(from.to_owned()).one(db).await?;
    let whole_user = from_user.as_ref().is_some_and(|u| u.union_id.is_none());
    let mut q = identities::Entity::update_many()
        .col_expr(identities::Column::UserId, Expr::value(to))
        .col_expr(identities::Column::UnionId, Expr::value(union_id))
        .filter(identities::Column::UserId.eq(from));
    if !whole_user {
        q = q.filter(identities::Column::Id.eq(identity));
    }
    q.exec(db).await?;
    if whole_user {
        sessions::Entity::update_many()
            .col_expr(sessions::Column::UserId, Expr::value(to))
            .filter(sessions::Column::UserId.eq(from))
            .exec(db)
            .await?;
        users::Entity::update_many()
            .col_expr(users::Column::MergedInto, Expr::value(to))
            .col_expr(users::Column::UpdatedAt, Expr::value(now))
            .filter(users::Column::Id.eq(from))
            .exec(db)
            .await?;
        tracing::info!(from, to, "merged user into the user of its unionid");
    } else {
        sessions::Entity::update_many()
            .col_expr(sessions::Column::UserId, Expr::value(to))
            .filter(sessions::Column::IdentityId.eq(identity))
            .exec(db)
            .await?;
    }
    Ok(())
}

fn user_row(scope: &str, union_id: Option<&str>, now: DateTime<Utc>) -> users::Model {
    users::Model {
        id: new_id(),
        scope: scope.to_owned(),
        union_id: union_id.map(str::to_owned),
        merged_into: None,
        created_at: now,
        updated_at: now,
    }
}

/// Time-ordered ids (UUIDv7) keep inserts append-only in the primary-key index.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}
