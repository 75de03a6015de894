//! Phone numbers shared from mini programs (`bindPhoneNumber`): one row per user, stored in
//! the clear (see the README's "Phone numbers"). Nothing here logs a number.

use chrono::{DateTime, Utc};
use entity::{identities, phone_numbers, sessions};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait,
    QueryFilter, TransactionTrait,
};

use super::events;
use crate::domain::{EventKind, NewEvent, PhoneNumber, UserId};

/// A number to bind, as WeChat gave it.
#[derive(Clone)]
pub struct NewPhone<'a> {
    pub app_id: &'a str,
    pub open_id: &'a str,
    pub phone_number: &'a str,
    pub pure_phone_number: &'a str,
    pub country_code: &'a str,
    pub now: DateTime<Utc>,
}

/// Where a session was opened: its app id and the openid of its identity. `None` for a
/// session that no longer exists.
pub async fn session_origin(
    db: &impl ConnectionTrait,
    token_hash: &str,
) -> Result<Option<(String, String)>, DbErr> {
    let Some(session) = sessions::Entity::find_by_id(token_hash.to_owned())
        .one(db)
        .await?
    else {
        return Ok(None);
    };
    let open_id = identities::Entity::find_by_id(session.identity_id.clone())
        .one(db)
        .await?
        .map(|i| i.open_id);
    Ok(open_id.map(|o| (session.app_id, o)))
}

/// Binds a number to the user `user_id` names now (replacing any earlier one) and records
/// `PHONE_BOUND`, in one transaction. Returns the user it went to and the number; `None` for
/// an unknown user.
pub async fn bind(
    db: &DatabaseConnection,
    user_id: &UserId,
    p: &NewPhone<'_>,
) -> Result<Option<(UserId, PhoneNumber)>, DbErr> {
    let txn = db.begin().await?;
    let event = NewEvent::new(EventKind::PhoneBound).through(p.app_id, p.open_id);
    let Some(owner) = events::record(&txn, user_id, p.now, &[event]).await? else {
        txn.rollback().await?;
        return Ok(None);
    };
    let row = phone_numbers::ActiveModel {
        user_id: Set(owner.as_str().to_owned()),
        app_id: Set(p.app_id.to_owned()),
        phone_number: Set(p.phone_number.to_owned()),
        pure_phone_number: Set(p.pure_phone_number.to_owned()),
        country_code: Set(p.country_code.to_owned()),
        bound_at: Set(p.now),
    };
    phone_numbers::Entity::insert(row)
        .on_conflict(
            OnConflict::column(phone_numbers::Column::UserId)
                .update_columns([
                    phone_numbers::Column::AppId,
                    phone_numbers::Column::PhoneNumber,
                    phone_numbers::Column::PurePhoneNumber,
                    phone_numbers::Column::CountryCode,
                    phone_numbers::Column::BoundAt,
                ])
                .to_owned(),
        )
        .exec_without_returning(&txn)
        .await?;
    txn.commit().await?;
    let phone = PhoneNumber {
        phone_number: p.phone_number.to_owned(),
        pure_phone_number: p.pure_phone_number.to_owned(),
        country_code: p.country_code.to_owned(),
        bound_at: p.now,
    };
    Ok(Some((owner, phone)))
}

/// The number bound to a user, if any.
pub async fn of(db: &impl ConnectionTrait, user_id: &UserId) -> Result<Option<PhoneNumber>, DbErr> {
    Ok(
        phone_numbers::Entity::find_by_id(user_id.as_str().to_owned())
            .one(db)
            .await?
            .map(|m| PhoneNumber {
                phone_number: m.phone_number,
                pure_phone_number: m.pure_phone_number,
                country_code: m.country_code,
                bound_at: m.bound_at,
            }),
    )
}

/// A merge of `from` into `to`: `from`'s number moves across unless `to` has one of its own
/// (the survivor's number wins; `from`'s is then deleted, not kept on a merged-away user).
pub async fn move_on_merge(db: &impl ConnectionTrait, from: &str, to: &str) -> Result<(), DbErr> {
    let survivor_has_one = phone_numbers::Entity::find_by_id(to.to_owned())
        .one(db)
        .await?
        .is_some();
    if survivor_has_one {
        phone_numbers::Entity::delete_many()
            .filter(phone_numbers::Column::UserId.eq(from))
            .exec(db)
            .await?;
    } else {
        phone_numbers::Entity::update_many()
            .col_expr(phone_numbers::Column::UserId, Expr::value(to))
            .filter(phone_numbers::Column::UserId.eq(from))
            .exec(db)
            .await?;
    }
    Ok(())
}
