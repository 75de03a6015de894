//! Read operations.

use async_graphql::{Context, Object};

use super::auth::{Caller, caller};
use super::errors::service;
use super::types::UserGql;
use crate::domain::Error;
use crate::domain::UnionId;

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

    /// End users: the user behind the session token (null for an API key, which is no one).
    async fn me(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<UserGql>> {
        match caller(ctx) {
            Caller::EndUser(user) => Ok(Some(UserGql::from(user.clone()))),
            Caller::Service { .. } => Ok(None),
            Caller::Anonymous | Caller::Unknown => Err(Error::Unauthenticated.into()),
        }
    }
}
