//! `phone_numbers`: the number a user shared from a mini program (`bindPhoneNumber`), one
//! row per user. Stored in the clear: see the README's "Phone numbers".

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(PhoneNumbers::Table)
                    .if_not_exists()
                    .col(string_len(PhoneNumbers::UserId, 36).primary_key())
                    .col(string_len(PhoneNumbers::AppId, 32))
                    .col(string_len(PhoneNumbers::PhoneNumber, 32))
                    .col(string_len(PhoneNumbers::PurePhoneNumber, 32))
                    .col(string_len(PhoneNumbers::CountryCode, 8))
                    .col(timestamp_with_time_zone(PhoneNumbers::BoundAt))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(PhoneNumbers::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden, Clone, Copy)]
enum PhoneNumbers {
    Table,
    UserId,
    AppId,
    PhoneNumber,
    PurePhoneNumber,
    CountryCode,
    BoundAt,
}
