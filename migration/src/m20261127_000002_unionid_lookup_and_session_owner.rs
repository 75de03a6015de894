//! `identities.union_id_lookup`: while an identity's unionid is unknown, where its lookup
//! stands (`pending`: queued, retrying or parked; `answered`: WeChat gave none), for
//! `Identity.unionIdStatus`. And an index on `sessions.user_id`, for `revokeSessions` and the
//! sessions a merge moves.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // IF NOT EXISTS on PostgreSQL, where instances starting together may race here.
        manager
            .alter_table(
                Table::alter()
                    .table(Identities::Table)
                    .add_column_if_not_exists(string_len_null(Identities::UnionIdLookup, 16))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(crate::index(
                "ix_sessions_user_id",
                Sessions::Table,
                &[Sessions::UserId],
                false,
            ))
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("ix_sessions_user_id")
                    .table(Sessions::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Identities::Table)
                    .drop_column(Identities::UnionIdLookup)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden, Clone, Copy)]
enum Identities {
    Table,
    UnionIdLookup,
}

#[derive(DeriveIden, Clone, Copy)]
enum Sessions {
    Table,
    UserId,
}
