//! Write operations.

use async_graphql::{Context, Object};

use super::auth::caller;
use super::errors::service;
use super::types::{LoginPayload, ResolvePayload};
use crate::domain::{AppId, LoginCode, OpenId};

/// The root mutation type.
pub struct Mutation;

#[Object]
impl Mutation {
    /// Public: the code from `wx.login` (mini program) or from an OAuth redirect
    /// (official-account web page, website, mobile app) is the credential. Returns a session
    /// token for `Authorization: Bearer`; WeChat's session_key stays on the server.
    async fn login_with_code(
        &self,
        ctx: &Context<'_>,
        app_id: String,
        code: String,
    ) -> async_graphql::Result<LoginPayload> {
        let app_id = AppId::parse(&app_id)?;
        let code = LoginCode::parse(&code)?;
        let login = service(ctx)?.login_with_code(&app_id, &code).await?;
        Ok(LoginPayload {
            session_token: login.session_token,
            expires_at: login.expires_at,
            is_new_user: login.is_new_user,
            user: login.user.into(),
            identity: login.identity.into(),
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
}
