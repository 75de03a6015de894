//! GraphQL object types, kept apart from tables and domain structs so that neither leaks a
//! column (or a secret) into the API by accident.

use async_graphql::{ComplexObject, Context, Enum, ID, SimpleObject};
use chrono::{DateTime, Utc};

use super::auth::caller;
use super::errors::service;
use super::events::{EventConnection, decode_cursor};
use crate::domain::{AppKind, UnionId, UnionIdStatus, UserId};

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
    /// The caller is this user without a session header (the `loginWithCode` that just
    /// proved it with the code).
    #[graphql(skip)]
    pub seen_by_owner: bool,
}

impl UserGql {
    /// This user, as the caller who just logged in as them sees it.
    pub fn seen_by_owner(mut self) -> UserGql {
        self.seen_by_owner = true;
        self
    }
}

#[ComplexObject]
impl UserGql {
    /// Service callers and the user themself (another user: FORBIDDEN): what happened to
    /// this user, newest first. `first` is 0 to 100; `after` is the `endCursor` of the
    /// previous page.
    async fn events(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20)] first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<EventConnection> {
        let id = UserId::new(self.id.as_str());
        if !self.seen_by_owner {
            caller(ctx).require_self_or_service(&id)?;
        }
        let before = after.as_deref().map(decode_cursor).transpose()?;
        Ok(service(ctx)?.events(&id, first, before).await?.into())
    }

    /// Service callers and the user themself (another user: FORBIDDEN): the number shared
    /// from a mini program with `bindPhoneNumber`; null when none is bound.
    async fn phone_number(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Option<PhoneNumberGql>> {
        let id = UserId::new(self.id.as_str());
        if !self.seen_by_owner {
            caller(ctx).require_self_or_service(&id)?;
        }
        Ok(service(ctx)?
            .phone_number(&id)
            .await?
            .map(PhoneNumberGql::from))
    }

    /// One per (app, openid), oldest first.
    async fn identities(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<IdentityGql>> {
        Ok(service(ctx)?
            .identities(&UserId::new(self.id.as_str()))
            .await?
            .into_iter()
            .map(|i| IdentityGql::from(i).owned_if(self.seen_by_owner))
            .collect())
    }
}

impl From<crate::domain::User> for UserGql {
    fn from(u: crate::domain::User) -> Self {
        UserGql {
            id: ID(u.id.into_string()),
            union_id: u.union_id.map(UnionId::into_string),
            created_at: u.created_at,
            seen_by_owner: false,
        }
    }
}

/// A phone number shared from a mini program.
#[derive(SimpleObject, Clone)]
#[graphql(name = "PhoneNumber")]
pub struct PhoneNumberGql {
    /// With the country code, as WeChat gives it.
    pub phone_number: String,
    pub pure_phone_number: String,
    pub country_code: String,
    pub bound_at: DateTime<Utc>,
}

impl From<crate::domain::PhoneNumber> for PhoneNumberGql {
    fn from(p: crate::domain::PhoneNumber) -> Self {
        PhoneNumberGql {
            phone_number: p.phone_number,
            pure_phone_number: p.pure_phone_number,
            country_code: p.country_code,
            bound_at: p.bound_at,
        }
    }
}

/// Whether an identity's unionid is known.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(name = "UnionIdStatus")]
pub enum UnionIdStatusGql {
    /// unionId is set.
    Known,
    /// A lookup is queued or retrying (a failed, parked lookup stays PENDING: resolveOpenId
    /// or a follower sync can retry it).
    Pending,
    /// The app has no open platform, or WeChat gave none.
    NotEligible,
}

impl From<UnionIdStatus> for UnionIdStatusGql {
    fn from(s: UnionIdStatus) -> Self {
        match s {
            UnionIdStatus::Known => UnionIdStatusGql::Known,
            UnionIdStatus::Pending => UnionIdStatusGql::Pending,
            UnionIdStatus::NotEligible => UnionIdStatusGql::NotEligible,
        }
    }
}

/// How one app sees one person.
#[derive(SimpleObject, Clone, Debug)]
#[graphql(name = "Identity", complex)]
pub struct IdentityGql {
    pub app_id: String,
    pub app_kind: AppKindGql,
    pub open_id: String,
    pub union_id: Option<String>,
    /// Official accounts: whether the person follows the account now.
    pub subscribed: Option<bool>,
    pub first_seen_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    #[graphql(skip)]
    pub domain: crate::domain::Identity,
    /// Seen by the user it belongs to without a session header (see `UserGql`).
    #[graphql(skip)]
    pub seen_by_owner: bool,
}

impl IdentityGql {
    /// This identity, as the caller who just logged in as its user sees it.
    pub fn owned_if(mut self, seen_by_owner: bool) -> IdentityGql {
        self.seen_by_owner = seen_by_owner;
        self
    }
}

#[ComplexObject]
impl IdentityGql {
    /// The user this identity belongs to.
    async fn user(&self, ctx: &Context<'_>) -> async_graphql::Result<UserGql> {
        let user = UserGql::from(service(ctx)?.user_of(&self.domain).await?);
        Ok(if self.seen_by_owner {
            user.seen_by_owner()
        } else {
            user
        })
    }

    /// Whether the unionId is known, being looked up, or not to be had.
    async fn union_id_status(&self, ctx: &Context<'_>) -> async_graphql::Result<UnionIdStatusGql> {
        Ok(service(ctx)?.union_id_status(&self.domain).into())
    }
}

impl From<crate::domain::Identity> for IdentityGql {
    fn from(i: crate::domain::Identity) -> Self {
        let domain = i.clone();
        IdentityGql {
            app_id: i.app_id.into_string(),
            app_kind: i.app_kind.into(),
            open_id: i.open_id.into_string(),
            union_id: i.union_id.map(UnionId::into_string),
            subscribed: i.subscribed,
            first_seen_at: i.first_seen_at,
            last_seen_at: i.last_seen_at,
            domain,
            seen_by_owner: false,
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

/// Where a follower backfill stands.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(name = "FollowerSyncStatus")]
pub enum FollowerSyncStatusGql {
    /// Walking the follower list (or waiting to be resumed by a runner).
    Running,
    Done,
    /// Stopped after repeated WeChat or database failures; syncFollowers resumes it.
    Failed,
}

/// A follower backfill of an official account (`syncFollowers`).
#[derive(SimpleObject, Clone, Debug)]
#[graphql(name = "FollowerSync")]
pub struct FollowerSyncGql {
    pub id: ID,
    pub app_id: String,
    pub status: FollowerSyncStatusGql,
    /// Followers handled so far (linked, without a unionid, or failed).
    pub followers_seen: i64,
    /// Linked to the user of their unionid.
    pub linked: i64,
    /// Linked, WeChat gave no unionid.
    pub without_union_id: i64,
    /// Not linked (WeChat answered something unusable for them).
    pub failed: i64,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl From<crate::domain::follower_sync::FollowerSync> for FollowerSyncGql {
    fn from(s: crate::domain::follower_sync::FollowerSync) -> Self {
        use crate::domain::follower_sync::SyncStatus;
        FollowerSyncGql {
            id: ID(s.id.to_string()),
            app_id: s.app_id,
            status: match s.status {
                SyncStatus::Running => FollowerSyncStatusGql::Running,
                SyncStatus::Done => FollowerSyncStatusGql::Done,
                SyncStatus::Failed => FollowerSyncStatusGql::Failed,
            },
            followers_seen: s.followers_seen,
            linked: s.linked,
            without_union_id: s.without_union_id,
            failed: s.failed,
            started_at: s.started_at,
            finished_at: s.finished_at,
        }
    }
}
