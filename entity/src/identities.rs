//! One (app, openid) pair: how one app sees one person.

use sea_orm::entity::prelude::*;

/// An identity row. `subscription_event_time` is the WeChat `CreateTime` of the event that set
/// `subscribed`, so that events processed out of order never roll the state back.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "identities")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub user_id: String,
    pub app_id: String,
    pub app_kind: String,
    pub open_id: String,
    pub union_id: Option<String>,
    pub subscribed: Option<bool>,
    pub subscription_event_time: Option<i64>,
    /// While `union_id` is null: `pending` (a lookup is queued, retrying or parked) or
    /// `answered` (WeChat gave none).
    pub union_id_lookup: Option<String>,
    pub first_seen_at: DateTimeUtc,
    pub last_seen_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
