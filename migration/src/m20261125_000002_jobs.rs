//! The durable job queue (the callback inbox).
//!
//! A callback is acknowledged to WeChat only after its row is committed here; the unique
//! `dedupe_key` makes WeChat's retries (and the same message reaching two instances) take
//! effect once. Workers lease rows with `locked_until`, so a process killed mid-job leaves a
//! row that another worker picks up when the lease runs out.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Jobs::Table)
                    .if_not_exists()
                    .col(big_pk_auto(Jobs::Id))
                    .col(string_len(Jobs::Kind, 32))
                    .col(string_len(Jobs::AppId, 32))
                    .col(string_len_null(Jobs::DedupeKey, 255))
                    .col(text(Jobs::Payload))
                    .col(string_len(Jobs::Status, 16))
                    .col(integer(Jobs::Attempts))
                    .col(timestamp_with_time_zone(Jobs::RunAt))
                    .col(timestamp_with_time_zone_null(Jobs::LockedUntil))
                    .col(text_null(Jobs::LastError))
                    .col(timestamp_with_time_zone(Jobs::CreatedAt))
                    .col(timestamp_with_time_zone_null(Jobs::FinishedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(crate::index(
                "ux_jobs_dedupe_key",
                Jobs::Table,
                &[Jobs::DedupeKey],
                true,
            ))
            .await?;
        manager
            .create_index(crate::index(
                "ix_jobs_status_run_at",
                Jobs::Table,
                &[Jobs::Status, Jobs::RunAt],
                false,
            ))
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Jobs::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden, Clone, Copy)]
enum Jobs {
    Table,
    Id,
    Kind,
    AppId,
    DedupeKey,
    Payload,
    Status,
    Attempts,
    RunAt,
    LockedUntil,
    LastError,
    CreatedAt,
    FinishedAt,
}
