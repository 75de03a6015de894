//! Users, identities and sessions.
//!
//! A *user* is one person within one open-platform scope. An *identity* is one (app, openid)
//! pair; it always belongs to a user, even before WeChat has revealed its unionid, so that a
//! follower seen only through the official-account callback is a user at once and can be
//! merged into the user of the same unionid later (`users.merged_into`).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Users::Table)
                    .if_not_exists()
                    .col(string_len(Users::Id, 36).primary_key())
                    .col(string_len(Users::Scope, 128))
                    .col(string_len_null(Users::UnionId, 128))
                    .col(string_len_null(Users::MergedInto, 36))
                    .col(timestamp_with_time_zone(Users::CreatedAt))
                    .col(timestamp_with_time_zone(Users::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(crate::index(
                "ux_users_scope_union_id",
                Users::Table,
                &[Users::Scope, Users::UnionId],
                true,
            ))
            .await?;
        manager
            .create_index(crate::index(
                "ix_users_union_id",
                Users::Table,
                &[Users::UnionId],
                false,
            ))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Identities::Table)
                    .if_not_exists()
                    .col(string_len(Identities::Id, 36).primary_key())
                    .col(string_len(Identities::UserId, 36))
                    .col(string_len(Identities::AppId, 32))
                    .col(string_len(Identities::AppKind, 32))
                    .col(string_len(Identities::OpenId, 128))
                    .col(string_len_null(Identities::UnionId, 128))
                    .col(boolean_null(Identities::Subscribed))
                    .col(big_integer_null(Identities::SubscriptionEventTime))
                    .col(timestamp_with_time_zone(Identities::FirstSeenAt))
                    .col(timestamp_with_time_zone(Identities::LastSeenAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_identities_user")
                            .from(Identities::Table, Identities::UserId)
                            .to(Users::Table, Users::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(crate::index(
                "ux_identities_app_open_id",
                Identities::Table,
                &[Identities::AppId, Identities::OpenId],
                true,
            ))
            .await?;
        manager
            .create_index(crate::index(
                "ix_identities_user_id",
                Identities::Table,
                &[Identities::UserId],
                false,
            ))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Sessions::Table)
                    .if_not_exists()
                    .col(string_len(Sessions::TokenHash, 64).primary_key())
                    .col(string_len(Sessions::UserId, 36))
                    .col(string_len(Sessions::IdentityId, 36))
                    .col(string_len(Sessions::AppId, 32))
                    .col(timestamp_with_time_zone(Sessions::CreatedAt))
                    .col(timestamp_with_time_zone(Sessions::ExpiresAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_sessions_identity")
                            .from(Sessions::Table, Sessions::IdentityId)
                            .to(Identities::Table, Identities::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(crate::index(
                "ix_sessions_expires_at",
                Sessions::Table,
                &[Sessions::ExpiresAt],
                false,
            ))
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Sessions::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Identities::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Users::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden, Clone, Copy)]
enum Users {
    Table,
    Id,
    Scope,
    UnionId,
    MergedInto,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum Identities {
    Table,
    Id,
    UserId,
    AppId,
    AppKind,
    OpenId,
    UnionId,
    Subscribed,
    SubscriptionEventTime,
    FirstSeenAt,
    LastSeenAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum Sessions {
    Table,
    TokenHash,
    UserId,
    IdentityId,
    AppId,
    CreatedAt,
    ExpiresAt,
}
