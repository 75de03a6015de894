//! `follower_syncs`: one row per follower backfill of an official account, with its
//! checkpoint (the `user/get` cursor and the next batch of 100 in that page), its counts and
//! a lease. At most one sync per app is `running`: a unique partial index on `app_id`.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(FollowerSyncs::Table)
                    .if_not_exists()
                    .col(big_pk_auto(FollowerSyncs::Id))
                    .col(string_len(FollowerSyncs::AppId, 32))
                    .col(string_len(FollowerSyncs::Status, 16))
                    .col(string_len(FollowerSyncs::NextOpenid, 64).default(""))
                    .col(integer(FollowerSyncs::PagePosition).default(0))
                    .col(big_integer(FollowerSyncs::FollowersSeen).default(0))
                    .col(big_integer(FollowerSyncs::Linked).default(0))
                    .col(big_integer(FollowerSyncs::WithoutUnionId).default(0))
                    .col(big_integer(FollowerSyncs::Failed).default(0))
                    .col(timestamp_with_time_zone(FollowerSyncs::StartedAt))
                    .col(timestamp_with_time_zone_null(FollowerSyncs::FinishedAt))
                    .col(text_null(FollowerSyncs::LastError))
                    .col(timestamp_with_time_zone_null(FollowerSyncs::LockedUntil))
                    .col(string_len_null(FollowerSyncs::LockOwner, 64))
                    .to_owned(),
            )
            .await?;
        // Partial unique index: PostgreSQL and SQLite both have them, sea-query builds none.
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE UNIQUE INDEX IF NOT EXISTS follower_syncs_one_running \
                 ON follower_syncs (app_id) WHERE status = 'running'",
            )
            .await?;
        manager
            .create_index(crate::index(
                "follower_syncs_app",
                FollowerSyncs::Table,
                &[FollowerSyncs::AppId],
                false,
            ))
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(FollowerSyncs::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden, Clone, Copy)]
enum FollowerSyncs {
    Table,
    Id,
    AppId,
    Status,
    NextOpenid,
    PagePosition,
    FollowersSeen,
    Linked,
    WithoutUnionId,
    Failed,
    StartedAt,
    FinishedAt,
    LastError,
    LockedUntil,
    LockOwner,
}
