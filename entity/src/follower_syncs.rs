//! A follower backfill of one official account: status, checkpoint, counts and lease.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "follower_syncs")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub app_id: String,
    /// `running`, `done` or `failed`.
    pub status: String,
    /// The `user/get` cursor of the page being processed (empty: the first page).
    pub next_openid: String,
    /// Index of the next batch of 100 within that page.
    pub page_position: i32,
    pub followers_seen: i64,
    pub linked: i64,
    pub without_union_id: i64,
    pub failed: i64,
    pub started_at: DateTimeUtc,
    pub finished_at: Option<DateTimeUtc>,
    pub last_error: Option<String>,
    pub locked_until: Option<DateTimeUtc>,
    pub lock_owner: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
