//! Who is calling: resolved once per request from `Authorization: Bearer`, before execution.

use async_graphql::Context;

use crate::config::sha256_hex;
use crate::domain::User;
use crate::domain::{Error, Result};
use crate::identity::Service;

/// The caller of one GraphQL request.
#[derive(Debug, Clone)]
pub enum Caller {
    /// No bearer token.
    Anonymous,
    /// A bearer token that is neither an API key nor a live session.
    Unknown,
    /// A backend with an API key from the configuration.
    Service { name: String },
    /// A person with a session token from `loginWithCode`.
    EndUser(User),
}

impl Caller {
    /// Identifies the caller from the raw header value. API keys are compared by hash, so the
    /// configured keys never sit in memory in the clear.
    pub async fn from_authorization(service: &Service, header: Option<&str>) -> Result<Caller> {
        let Some(value) = header else {
            return Ok(Caller::Anonymous);
        };
        let Some(token) = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
        else {
            return Ok(Caller::Unknown);
        };
        let hash = sha256_hex(token);
        if let Some(key) = service
            .config()
            .api_keys
            .iter()
            .find(|k| crate::wechat::crypto::signatures_match(&k.sha256_hex, &hash))
        {
            return Ok(Caller::Service {
                name: key.name.clone(),
            });
        }
        Ok(match service.session_user(token).await? {
            Some(user) => Caller::EndUser(user),
            None => Caller::Unknown,
        })
    }

    /// Service callers only: end users get FORBIDDEN, everyone else UNAUTHENTICATED.
    pub fn require_service(&self) -> Result<&str> {
        match self {
            Caller::Service { name } => Ok(name),
            Caller::EndUser(_) => Err(Error::Forbidden),
            Caller::Anonymous | Caller::Unknown => Err(Error::Unauthenticated),
        }
    }
}

/// The caller stored in the request data by the HTTP layer (anonymous if it is missing).
pub fn caller<'a>(ctx: &'a Context<'_>) -> &'a Caller {
    static ANONYMOUS: Caller = Caller::Anonymous;
    ctx.data_opt::<Caller>().unwrap_or(&ANONYMOUS)
}
