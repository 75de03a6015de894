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

#[cfg(test)]
mod tests {
    use super::*;
    use entity::users;

    async fn db_with_users(ids: &[&str]) -> DatabaseConnection {
        let db = crate::store::connect("sqlite::memory:", 1).await.unwrap();
        crate::store::migrate(&db).await.unwrap();
        let now = Utc::now();
        for id in ids {
            users::Entity::insert(users::ActiveModel {
                id: Set((*id).to_owned()),
                scope: Set("op:acme".into()),
                union_id: Set(None),
                merged_into: Set(None),
                created_at: Set(now),
                updated_at: Set(now),
            })
            .exec_without_returning(&db)
            .await
            .unwrap();
        }
        db
    }

    fn phone(number: &str) -> NewPhone<'_> {
        NewPhone {
            app_id: "wx1000000000000001",
            open_id: "o1",
            phone_number: number,
            pure_phone_number: number,
            country_code: "86",
            now: Utc::now(),
        }
    }

    #[tokio::test]
    async fn binding_replaces_and_an_unknown_user_binds_nothing() {
        let db = db_with_users(&["u1"]).await;
        let u1 = UserId::new("u1");
        bind(&db, &u1, &phone("13800000001")).await.unwrap();
        bind(&db, &u1, &phone("13800000002")).await.unwrap();
        let got = of(&db, &u1).await.unwrap().unwrap();
        assert_eq!(got.phone_number, "13800000002");
        // The whole number, not a prefix: `bound_at` is printed, and a
        // timestamp's fraction can hold "138" (CI failed on exactly that).
        let printed = format!("{got:?}");
        assert!(printed.contains("bound_at"), "{printed}");
        assert!(!printed.contains("13800000002"), "{printed}");
        let nobody = bind(&db, &UserId::new("u404"), &phone("13800000003"))
            .await
            .unwrap();
        assert!(nobody.is_none());
        assert_eq!(
            phone_numbers::Entity::find().all(&db).await.unwrap().len(),
            1
        );
    }

    #[tokio::test]
    async fn a_merge_moves_the_number_unless_the_survivor_has_one() {
        let db = db_with_users(&["from", "to", "from2"]).await;
        bind(&db, &UserId::new("from"), &phone("13800000001"))
            .await
            .unwrap();
        move_on_merge(&db, "from", "to").await.unwrap();
        let to = of(&db, &UserId::new("to")).await.unwrap().unwrap();
        assert_eq!(to.phone_number, "13800000001");
        assert!(of(&db, &UserId::new("from")).await.unwrap().is_none());

        bind(&db, &UserId::new("from2"), &phone("13800000009"))
            .await
            .unwrap();
        move_on_merge(&db, "from2", "to").await.unwrap();
        let to = of(&db, &UserId::new("to")).await.unwrap().unwrap();
        assert_eq!(to.phone_number, "13800000001", "the survivor's number wins");
        assert!(of(&db, &UserId::new("from2")).await.unwrap().is_none());
    }
}
