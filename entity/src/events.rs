//! The audit trail: what happened to a user.

use sea_orm::entity::prelude::*;

/// An event row; `kind` is a stored `EventKind` name, `detail` e.g. the user id merged in.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "events")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub user_id: String,
    pub kind: String,
    pub app_id: Option<String>,
    pub open_id: Option<String>,
    pub at: DateTimeUtc,
    #[sea_orm(column_type = "Text", nullable)]
    pub detail: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
