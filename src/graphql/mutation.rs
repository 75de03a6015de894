//! Write operations.

use async_graphql::{Context, Object};

use super::auth::{ClientAddress, caller};
use super::errors::service;
use super::types::{FollowerSyncGql, IdentityGql, LoginPayload, ResolvePayload, UserGql};
use crate::domain::{AppId, LoginCode, OpenId, UserId};

/// The root mutation type.
pub struct Mutation;

#[Object]
impl Mutation {
    /// Public: the code from `wx.login` (mini program) or from an OAuth redirect
    /// (official-account web page, website, mobile app) is the credential. Returns a session
    /// token for `Authorization: Bearer`; WeChat's session_key stays on the server. Rate
    /// limited per client address and per app (RATE_LIMITED before any WeChat call).
    async fn login_with_code(
        &self,
        ctx: &Context<'_>,
        app_id: String,
        code: String,
    ) -> async_graphql::Result<LoginPayload> {
        let app_id = AppId::parse(&app_id)?;
        let code = LoginCode::parse(&code)?;
        let client = ctx.data_opt::<ClientAddress>().map(|c| c.0);
        let login = service(ctx)?
            .login_with_code_from(&app_id, &code, client)
            .await?;
        Ok(LoginPayload {
            session_token: login.session_token,
            expires_at: login.expires_at,
            is_new_user: login.is_new_user,
            // The caller just proved to be this user with the code: it may read the user's
            // own fields (events) in the same response.
            user: UserGql::from(login.user).seen_by_owner(),
            identity: IdentityGql::from(login.identity).owned_if(true),
        })
    }

    /// Service callers only: resolve an official-account openid to its unionid
    /// (`cgi-bin/user/info`) and link it.
    async fn resolve_open_id(
        &self,
        ctx: &Context<'_>,
        app_id: String,
        open_id: String,
    ) -> async_graphql::Result<ResolvePayload> {
        caller(ctx).require_service()?;
        let app_id = AppId::parse(&app_id)?;
        let open_id = OpenId::parse(&open_id)?;
        let (user, identity) = service(ctx)?.resolve_open_id(&app_id, &open_id).await?;
        Ok(ResolvePayload {
            user: user.into(),
            identity: identity.into(),
        })
    }

    /// End users: ends the calling session; true if it existed. A token already ended is
    /// UNAUTHENTICATED, like any unknown token.
    async fn logout(&self, ctx: &Context<'_>) -> async_graphql::Result<bool> {
        let session = caller(ctx).require_session()?;
        Ok(service(ctx)?.logout(session).await?)
    }

    /// End users logged in from a mini program: the code from
    /// `<button open-type="getPhoneNumber">` (`wxa/business/getuserphonenumber`). Binds the
    /// number to the calling user (replacing an earlier one) and records PHONE_BOUND.
    /// UNAUTHENTICATED without a session, FORBIDDEN for an API key, UNKNOWN_APP when the
    /// session was not opened with a mini program, INVALID_CODE for an invalid, expired or
    /// used code.
    async fn bind_phone_number(
        &self,
        ctx: &Context<'_>,
        code: String,
    ) -> async_graphql::Result<UserGql> {
        let session = caller(ctx).require_session()?;
        let code = LoginCode::parse(&code)?;
        let user = service(ctx)?.bind_phone_number(session, &code).await?;
        Ok(UserGql::from(user))
    }

    /// Service callers only: ends every session of a user (an id merged away names the user
    /// it was merged into, whose sessions include the merged user's); the number ended.
    async fn revoke_sessions(
        &self,
        ctx: &Context<'_>,
        user_id: async_graphql::ID,
    ) -> async_graphql::Result<i32> {
        caller(ctx).require_service()?;
        let user_id = UserId::parse(user_id.as_str())?;
        let ended = service(ctx)?.revoke_sessions(&user_id).await?;
        Ok(i32::try_from(ended).unwrap_or(i32::MAX))
    }

    /// Service callers only: starts a follower backfill of an official account in the
    /// background (`user/get` + `user/info/batchget`, every follower linked). An app whose
    /// sync is running gets that sync; a failed one is resumed from its checkpoint.
    async fn sync_followers(
        &self,
        ctx: &Context<'_>,
        app_id: String,
    ) -> async_graphql::Result<FollowerSyncGql> {
        caller(ctx).require_service()?;
        let app_id = AppId::parse(&app_id)?;
        let sync = crate::identity::sync::start_in_background(service(ctx)?, &app_id).await?;
        Ok(sync.into())
    }
}
