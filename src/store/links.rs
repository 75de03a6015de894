//! Applying the linking rules of [`crate::domain::link`]: read the facts in a transaction,
//! let `decide` choose, apply its decision in the same transaction, and record the events
//! [`link_events`] derives from what changed, still in that transaction.
//!
//! Inserts use `ON CONFLICT DO NOTHING` and the unique keys on `(scope, union_id)` and
//! `(app_id, open_id)`, so concurrent first logins of one person create one user; a lost race
//! is retried from the top.

use chrono::{DateTime, Utc};
use entity::{identities, sessions, users};
use sea_orm::sea_query::{Expr, LockType};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr,
    EntityTrait, QueryFilter, QuerySelect, TransactionTrait, TryInsertResult,
};

use super::events;
use super::users::{identity_from_row, user_from_row};
use crate::domain::AppConfig;
use crate::domain::event::{LinkChange, link_events};
use crate::domain::link::{CurrentUser, Decision, Known, Owner, Target, decide};
use crate::domain::unionid::{UnionLookup, lookup_after};
use crate::domain::{Identity, User, UserId};

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
    /// What this sighting says about the lookup of the unionid, kept while it is unknown:
    /// `Answered` when WeChat just answered without one, `Pending` when a lookup is queued.
    pub union_lookup: Option<UnionLookup>,
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
    // Locked until the transaction ends (PostgreSQL; SQLite has one writer at a time): the
    // decision below rests on the identity's user, and a merge or move committing between this
    // read and our write would otherwise be undone, the identity written back to a user that
    // was merged away. A concurrent writer's lock makes this wait, then read its result.
    // `FOR NO KEY UPDATE`, what our UPDATE of the row takes anyway: unlike `FOR UPDATE` it
    // lets inserts of sessions and events that reference the row check their foreign key.
    let existing = identities::Entity::find()
        .filter(identities::Column::AppId.eq(&s.app.app_id))
        .filter(identities::Column::OpenId.eq(s.open_id))
        .lock(LockType::NoKeyUpdate)
        .one(db)
        .await?;
    let current = match &existing {
        Some(identity) => Some(
            users::Entity::find_by_id(identity.user_id.clone())
                .one(db)
                .await?
                .ok_or_else(|| DbErr::RecordNotFound(format!("user {}", identity.user_id)))?,
        ),
        None => None,
    };
    let current_id = current.as_ref().map(|u| UserId::new(u.id.clone()));
    let mut known = Known {
        scope: &scope,
        union_id: s.union_id,
        current: current
            .as_ref()
            .zip(current_id.as_ref())
            .map(|(u, id)| CurrentUser {
                id,
                scope: &u.scope,
                union_id: u.union_id.as_deref(),
            }),
        owner: Owner::Unknown,
    };
    let mut decision = decide(&known);
    let owner_id;
    if decision == Decision::LookUpOwner {
        let union_id = s.union_id.unwrap_or_default();
        owner_id = users::Entity::find()
            .filter(users::Column::Scope.eq(&scope))
            .filter(users::Column::UnionId.eq(union_id))
            .one(db)
            .await?
            .map(|u| UserId::new(u.id));
        known.owner = owner_id.as_ref().map_or(Owner::Nobody, Owner::User);
        decision = decide(&known);
    }

    let (Some(identity), Some(current)) = (existing, current) else {
        // A first sighting of this (app, openid).
        let (user, is_new_user) = match &decision {
            Decision::NewIdentity(Target::NewWithoutUnion) => {
                (insert_user(db, &scope, None, s.seen_at).await?, true)
            }
            Decision::NewIdentity(target) => match target_user(db, &scope, s, target).await? {
                Some(found) => found,
                None => return Ok(Attempt::Retry),
            },
            other => return Err(unexpected(other)),
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
            union_id_lookup: lookup_after(s.union_id.is_some(), s.union_lookup, None)
                .map(|l| l.as_str().to_owned()),
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
        let change = LinkChange {
            decision: &decision,
            app_id: &s.app.app_id,
            open_id: s.open_id,
            union_id: s.union_id,
            previous_user: None,
            created_with_union: is_new_user && user.union_id.is_some(),
            subscribed_before: None,
            subscribed_after: row.subscribed,
        };
        record_events(db, &user.id, s.seen_at, &change).await?;
        return Ok(Attempt::Done(Box::new(Linked {
            user: user_from_row(user)?,
            identity: identity_from_row(row)?,
            is_new_user,
        })));
    };

    // A known identity: apply the decision, then touch it.
    let union_id = s.union_id.unwrap_or_default();
    let mut created_with_union = false;
    let (user, identity_union) = match &decision {
        Decision::Touch => {
            let union = identity.union_id.clone().or(current.union_id.clone());
            (current, union)
        }
        Decision::Adopt => {
            // A unique violation here means a concurrent writer created the unionid's user
            // first: the attempt is retried and then decides to merge.
            let mut am: users::ActiveModel = current.into();
            am.union_id = Set(Some(union_id.to_owned()));
            am.updated_at = Set(s.seen_at);
            let adopted = am.update(db).await?;
            identities::Entity::update_many()
                .col_expr(identities::Column::UnionId, Expr::value(union_id))
                .filter(identities::Column::UserId.eq(&adopted.id))
                .exec(db)
                .await?;
            (adopted, Some(union_id.to_owned()))
        }
        Decision::Merge { into } => {
            let Some(target) = users::Entity::find_by_id(into.as_str().to_owned())
                .one(db)
                .await?
            else {
                return Ok(Attempt::Retry);
            };
            merge_user(db, &current.id, &target.id, union_id, s.seen_at).await?;
            (target, Some(union_id.to_owned()))
        }
        Decision::Conflict(target) => {
            tracing::warn!(app_id = %s.app.app_id, "openid reported with a different unionid or scope; moving this identity only");
            let Some((target, created)) = target_user(db, &scope, s, target).await? else {
                return Ok(Attempt::Retry);
            };
            created_with_union = created && target.union_id.is_some();
            move_identity(db, &identity.id, &target.id, union_id).await?;
            (target, Some(union_id.to_owned()))
        }
        other => return Err(unexpected(other)),
    };

    let mut am: identities::ActiveModel = identity.clone().into();
    let stored_lookup = identity
        .union_id_lookup
        .as_deref()
        .and_then(UnionLookup::parse);
    am.union_id_lookup = Set(
        lookup_after(identity_union.is_some(), s.union_lookup, stored_lookup)
            .map(|l| l.as_str().to_owned()),
    );
    am.user_id = Set(user.id.clone());
    am.union_id = Set(identity_union);
    am.last_seen_at = Set(s.seen_at.max(identity.last_seen_at));
    if let Some((on, at)) = s.subscription
        && identity
            .subscription_event_time
            .is_none_or(|stored| at >= stored)
    {
        am.subscribed = Set(Some(on));
        am.subscription_event_time = Set(Some(at));
    }
    let updated = am.update(db).await?;
    let change = LinkChange {
        decision: &decision,
        app_id: &s.app.app_id,
        open_id: s.open_id,
        union_id: s.union_id,
        previous_user: current_id.as_ref(),
        created_with_union,
        subscribed_before: identity.subscribed,
        subscribed_after: updated.subscribed,
    };
    record_events(db, &user.id, s.seen_at, &change).await?;
    let identity = updated;
    Ok(Attempt::Done(Box::new(Linked {
        user: user_from_row(user)?,
        identity: identity_from_row(identity)?,
        is_new_user: false,
    })))
}

/// Records what a link changed, on the user the identity now belongs to.
async fn record_events(
    db: &impl ConnectionTrait,
    user_id: &str,
    at: DateTime<Utc>,
    change: &LinkChange<'_>,
) -> Result<(), DbErr> {
    let events = link_events(change);
    if events.is_empty() {
        return Ok(());
    }
    events::record(db, &UserId::new(user_id), at, &events).await?;
    Ok(())
}

fn unexpected(d: &Decision) -> DbErr {
    DbErr::Custom(format!("linking decided {d:?} where it cannot apply"))
}

/// The user a decision's target names: an existing user by id, or the unionid's user (found
/// or created). `None` means a concurrent writer is in the way and the caller should retry.
async fn target_user(
    db: &impl ConnectionTrait,
    scope: &str,
    s: &Sighting<'_>,
    target: &Target,
) -> Result<Option<(users::Model, bool)>, DbErr> {
    match target {
        Target::Existing(id) => Ok(users::Entity::find_by_id(id.as_str().to_owned())
            .one(db)
            .await?
            .map(|u| (u, false))),
        Target::NewWithUnion => {
            union_user(db, scope, s.union_id.unwrap_or_default(), s.seen_at).await
        }
        Target::NewWithoutUnion => Ok(Some((insert_user(db, scope, None, s.seen_at).await?, true))),
    }
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

/// Merges the whole user `from` (no unionid of its own) into `to`: its identities, sessions,
/// events and phone number (unless `to` has one) move across and it keeps `merged_into`.
async fn merge_user(
    db: &impl ConnectionTrait,
    from: &str,
    to: &str,
    union_id: &str,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    identities::Entity::update_many()
        .col_expr(identities::Column::UserId, Expr::value(to))
        .col_expr(identities::Column::UnionId, Expr::value(union_id))
        .filter(identities::Column::UserId.eq(from))
        .exec(db)
        .await?;
    sessions::Entity::update_many()
        .col_expr(sessions::Column::UserId, Expr::value(to))
        .filter(sessions::Column::UserId.eq(from))
        .exec(db)
        .await?;
    events::move_all(db, from, to).await?;
    super::phones::move_on_merge(db, from, to).await?;
    users::Entity::update_many()
        .col_expr(users::Column::MergedInto, Expr::value(to))
        .col_expr(users::Column::UpdatedAt, Expr::value(now))
        .filter(users::Column::Id.eq(from))
        .exec(db)
        .await?;
    tracing::info!(from, to, "merged user into the user of its unionid");
    Ok(())
}

/// Moves one identity (and the sessions opened through it) to `to`.
async fn move_identity(
    db: &impl ConnectionTrait,
    identity: &str,
    to: &str,
    union_id: &str,
) -> Result<(), DbErr> {
    identities::Entity::update_many()
        .col_expr(identities::Column::UserId, Expr::value(to))
        .col_expr(identities::Column::UnionId, Expr::value(union_id))
        .filter(identities::Column::Id.eq(identity))
        .exec(db)
        .await?;
    sessions::Entity::update_many()
        .col_expr(sessions::Column::UserId, Expr::value(to))
        .filter(sessions::Column::IdentityId.eq(identity))
        .exec(db)
        .await?;
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
