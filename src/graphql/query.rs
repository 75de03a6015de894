//! Read operations.

use async_graphql::{Context, Object};

use super::auth::{Caller, caller};
use super::errors::service;
use super::types::{FollowerSyncGql, IdentityGql, UserGql};
use crate::domain::Error;
use crate::domain::{AppId, OpenId, UnionId, UserId};

/// The root query type.
pub struct Query;

#[Object]
impl Query {
    /// Service callers only: the user of a unionid, with every identity; null when unknown.
    async fn user(
        &self,
        ctx: &Context<'_>,
        union_id: String,
    ) -> async_graphql::Result<Option<UserGql>> {
        caller(ctx).require_service()?;
        let union_id = UnionId::parse(&union_id)?;
        Ok(service(ctx)?
            .user_by_union_id(&union_id)
            .await?
            .map(UserGql::from))
    }

    /// Service callers only: the user of an id. An id merged away answers the user it was
    /// merged into, so ids held by other systems keep working; null when never seen.
    async fn user_by_id(
        &self,
        ctx: &Context<'_>,
        id: async_graphql::ID,
    ) -> async_graphql::Result<Option<UserGql>> {
        caller(ctx).require_service()?;
        let id = UserId::parse(id.as_str())?;
        Ok(service(ctx)?.user_by_id(&id).await?.map(UserGql::from))
    }

    /// Service callers only: who this openid is, from wxunion's own records (no WeChat
    /// call); null when never seen.
    async fn identity(
        &self,
        ctx: &Context<'_>,
        app_id: String,
        open_id: String,
    ) -> async_graphql::Result<Option<IdentityGql>> {
        caller(ctx).require_service()?;
        let app_id = AppId::parse(&app_id)?;
        let open_id = OpenId::parse(&open_id)?;
        Ok(service(ctx)?
            .identity(&app_id, &open_id)
            .await?
            .map(IdentityGql::from))
    }

    /// Service callers only: a follower backfill by id; null when there is none.
    async fn follower_sync(
        &self,
        ctx: &Context<'_>,
        id: async_graphql::ID,
    ) -> async_graphql::Result<Option<FollowerSyncGql>> {
        caller(ctx).require_service()?;
        let Ok(id) = id.parse::<i64>() else {
            return Err(Error::BadRequest("not a follower sync id".into()).into());
        };
        Ok(crate::identity::sync::get(service(ctx)?, id)
            .await?
            .map(FollowerSyncGql::from))
    }

    /// End users: the user behind the session token (null for an API key, which is no one).
    async fn me(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<UserGql>> {
        match caller(ctx) {
            Caller::EndUser(session) => Ok(Some(UserGql::from(session.user.clone()))),
            Caller::Service { .. } => Ok(None),
            Caller::Anonymous | Caller::Unknown => Err(Error::Unauthenticated.into()),
        }
    }
}
