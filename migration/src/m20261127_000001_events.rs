//! The audit trail: one row per thing that happened to a user (a login, an identity joining,
//! its unionid learned, a merge, a follow, sessions revoked, ...).
//!
//! Rows are written in the transaction of the change they describe. `id` increases in the
//! order events are recorded, so a user's events page newest first by `(user_id, id)` with
//! the id as cursor. `at` is indexed for the retention prune. A merge moves the merged user's
//! rows to the survivor (`user_id` changes), so there is no foreign key to hold them back.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Events::Table)
                    .if_not_exists()
                    .col(big_pk_auto(Events::Id))
                    .col(string_len(Events::UserId, 36))
                    .col(string_len(Events::Kind, 32))
                    .col(string_len_null(Events::AppId, 32))
                    .col(string_len_null(Events::OpenId, 128))
                    .col(timestamp_with_time_zone(Events::At))
                    .col(text_null(Events::Detail))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(crate::index(
                "ix_events_user_id_id",
                Events::Table,
                &[Events::UserId, Events::Id],
                false,
            ))
            .await?;
        manager
            .create_index(crate::index(
                "ix_events_at",
                Events::Table,
                &[Events::At],
                false,
            ))
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Events::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden, Clone, Copy)]
enum Events {
    Table,
    Id,
    UserId,
    Kind,
    AppId,
    OpenId,
    At,
    Detail,
}
