//! GraphQL object types, kept apart from tables and domain structs so that neither leaks a
//! column (or a secret) into the API by accident.

use async_graphql::{ComplexObject, Context, Enum, ID, SimpleObject};
use chrono::{DateTime, Utc};

use super::errors::service;
use crate::domain::{AppKind, UnionId, UserId};

/// The kind of WeChat app an identity belongs to.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(name = "AppKind")]
pub enum AppKindGql {
    MiniProgram,
    OfficialAccount,
    Website,
    Mobile,
}

impl From<AppKind> for AppKindGql {
    fn from(k: AppKind) -> Self {
        match k {
            AppKind::MiniProgram => AppKindGql::MiniProgram,
            AppKind::OfficialAccount => AppKindGql::OfficialAccount,
            AppKind::Website => AppKindGql::Website,
            AppKind::Mobile => AppKindGql::Mobile,
        }
    }
}

/// One person, across every app where wxunion has seen them.
#[derive(SimpleObject, Clone, Debug)]
#[graphql(name = "User", complex)]
pub struct UserGql {
    pub id: ID,
    /// Null until WeChat has revealed it.
    pub union_id: Option<String>,
    pub created_at: DateTime<Utc>,
}

#[ComplexObject]
impl UserGql {
    /// One per (app, openid), oldest first.
    async fn identities(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<IdentityGql>> {
        Ok(service(ctx)?
            .identities(&UserId::new(self.id.as_str()))
            .await?
            .into_iter()
            .map(IdentityGql::from)
            .collect())
    }
}

impl From<crate::domain::User> for UserGql {
    fn from(u: crate::domain::User) -> Self {
        UserGql {
            id: ID(u.id.into_string()),
            union_id: u.union_id.map(UnionId::into_string),
            created_at: u.created_at,
        }
    }
}

/// How one app sees one person.
#[derive(SimpleObject, Clone, Debug)]
#[graphql(name = "Identity")]
pub struct IdentityGql {
    pub app_id: String,
    pub app_kind: AppKindGql,
    pub open_id: String,
    pub union_id: Option<String>,
    /// Official accounts: whether the person follows the account now.
    pub subscribed: Option<bool>,
    pub first_seen_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
}

impl From<crate::domain::Identity> for IdentityGql {
    fn from(i: crate::domain::Identity) -> Self {
        IdentityGql {
            app_id: i.app_id.into_string(),
            app_kind: i.app_kind.into(),
            open_id: i.open_id.into_string(),
            union_id: i.union_id.map(UnionId::into_string),
            subscribed: i.subscribed,
            first_seen_at: i.first_seen_at,
            last_seen_at: i.last_seen_at,
        }
    }
}

/// What `loginWithCode` returns: the session token is shown here once and stored hashed.
#[derive(SimpleObject, Debug)]
pub struct LoginPayload {
    pub session_token: String,
    pub expires_at: DateTime<Utc>,
    pub is_new_user: bool,
    pub user: UserGql,
    pub identity: IdentityGql,
}

/// What `resolveOpenId` returns.
#[derive(SimpleObject, Debug)]
pub struct ResolvePayload {
    pub user: UserGql,
    pub identity: IdentityGql,
}
