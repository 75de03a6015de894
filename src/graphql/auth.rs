//! Who is calling: resolved once per request from `Authorization: Bearer`, before execution.

use async_graphql::Context;

use crate::config::sha256_hex;
use crate::domain::{Error, Result};
use crate::domain::{Session, User, UserId};
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
    /// A person with a live session token from `loginWithCode`.
    EndUser(Session),
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
            Some(session) => Caller::EndUser(session),
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

    /// End users only: the calling session; UNAUTHENTICATED for anyone without one (an API
    /// key included: it is no session).
    pub fn require_session(&self) -> Result<&Session> {
        match self {
            Caller::EndUser(session) => Ok(session),
            Caller::Service { .. } | Caller::Anonymous | Caller::Unknown => {
                Err(Error::Unauthenticated)
            }
        }
    }

    /// The end user behind the call, if it is one.
    pub fn end_user(&self) -> Option<&User> {
        match self {
            Caller::EndUser(session) => Some(&session.user),
            _ => None,
        }
    }

    /// Reading a user's own data (`events`): service callers and that user themself;
    /// another end user gets FORBIDDEN, a caller without a valid token UNAUTHENTICATED.
    pub fn require_self_or_service(&self, user_id: &UserId) -> Result<()> {
        match self {
            Caller::Service { .. } => Ok(()),
            Caller::EndUser(session) if session.user.id == *user_id => Ok(()),
            Caller::EndUser(_) => Err(Error::Forbidden),
            Caller::Anonymous | Caller::Unknown => Err(Error::Unauthenticated),
        }
    }
}

/// The network address of the client of a request (see `domain::client_addr`), put in the
/// request data by the HTTP layer; absent for a request made in process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddress(pub std::net::IpAddr);

/// The caller stored in the request data by the HTTP layer (anonymous if it is missing).
pub fn caller<'a>(ctx: &'a Context<'_>) -> &'a Caller {
    static ANONYMOUS: Caller = Caller::Anonymous;
    ctx.data_opt::<Caller>().unwrap_or(&ANONYMOUS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(id: &str) -> Caller {
        Caller::EndUser(Session {
            user: User {
                id: UserId::new(id),
                scope: "op:acme".into(),
                union_id: None,
                created_at: chrono::Utc::now(),
            },
            token_hash: "h".into(),
        })
    }

    #[test]
    fn a_users_own_data_is_for_the_user_and_service_callers() {
        let me = UserId::new("u-me");
        let service = Caller::Service { name: "crm".into() };
        assert!(service.require_self_or_service(&me).is_ok());
        assert!(session("u-me").require_self_or_service(&me).is_ok());
        assert!(matches!(
            session("u-other").require_self_or_service(&me),
            Err(Error::Forbidden)
        ));
        for nobody in [Caller::Anonymous, Caller::Unknown] {
            assert!(matches!(
                nobody.require_self_or_service(&me),
                Err(Error::Unauthenticated)
            ));
        }
    }

    #[test]
    fn session_operations_need_a_session_token_and_an_api_key_is_none() {
        // CONTRACT 3.2: `logout` and `bindPhoneNumber` need a session token, UNAUTHENTICATED
        // without one; an API key is not one.
        assert!(session("u-me").require_session().is_ok());
        for other in [
            Caller::Service { name: "crm".into() },
            Caller::Anonymous,
            Caller::Unknown,
        ] {
            assert!(matches!(
                other.require_session(),
                Err(Error::Unauthenticated)
            ));
        }
    }

    /// No GraphQL path leads a session to another user's `User` (`me` and `loginWithCode`
    /// answer the caller; the lookups are for service callers), so the field rule is run on a
    /// schema whose root hands out another user's `User`.
    #[tokio::test]
    async fn a_session_reading_another_users_phone_is_forbidden() {
        use crate::graphql::types::UserGql;
        use async_graphql::{EmptyMutation, EmptySubscription, Object, Schema};

        struct Root;
        #[Object]
        impl Root {
            async fn other(&self) -> UserGql {
                UserGql::from(User {
                    id: UserId::new("u-other"),
                    scope: "op:acme".into(),
                    union_id: None,
                    created_at: chrono::Utc::now(),
                })
            }
        }
        let schema = Schema::new(Root, EmptyMutation, EmptySubscription);
        let request = async_graphql::Request::new("{ other { id phoneNumber { phoneNumber } } }")
            .data(session("u-me"));
        let response = schema.execute(request).await;
        assert_eq!(response.errors.len(), 1, "{:?}", response.errors);
        assert_eq!(response.errors[0].path.len(), 2);
        let code = response.errors[0]
            .extensions
            .as_ref()
            .and_then(|e| e.get("code"))
            .cloned();
        assert_eq!(code, Some(async_graphql::Value::from("FORBIDDEN")));
    }

    #[test]
    fn only_a_session_can_end_itself() {
        assert!(session("u-me").require_session().is_ok());
        for caller in [
            Caller::Service { name: "crm".into() },
            Caller::Anonymous,
            Caller::Unknown,
        ] {
            assert!(matches!(
                caller.require_session(),
                Err(Error::Unauthenticated)
            ));
        }
    }
}
