//! One person within one open-platform scope.

use sea_orm::entity::prelude::*;

/// A user row; `union_id` is null until WeChat reveals it, `merged_into` points at the user
/// that absorbed this one when two turned out to be the same person.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "users")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub scope: String,
    pub union_id: Option<String>,
    pub merged_into: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
