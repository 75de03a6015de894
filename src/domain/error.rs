//! The one domain error type. Every layer returns it; `graphql::errors` maps it to
//! `extensions.code` and `http` maps it to a status, each in one place.

/// What went wrong, in terms a client can act on. `Internal` carries the cause for the logs;
/// clients only ever see a generic message for it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    BadRequest(String),
    /// WeChat refused an argument (for example 40003, an openid it does not know).
    #[error("WeChat rejected the argument ({errcode}: {errmsg})")]
    WechatBadRequest { errcode: i64, errmsg: String },
    #[error("unknown app {0}")]
    UnknownApp(String),
    #[error("WeChat rejected the code ({errcode}: {errmsg})")]
    InvalidCode { errcode: i64, errmsg: String },
    #[error("missing or unknown bearer token")]
    Unauthenticated,
    #[error("this operation is for service callers only")]
    Forbidden,
    #[error("rate limited")]
    RateLimited {
        errcode: Option<i64>,
        errmsg: Option<String>,
    },
    #[error("WeChat failed: {detail}")]
    Upstream {
        errcode: Option<i64>,
        errmsg: Option<String>,
        detail: String,
    },
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl Error {
    /// Wraps any unexpected failure (database, cache, bug) without exposing it to clients.
    pub fn internal(e: impl Into<anyhow::Error>) -> Self {
        Error::Internal(e.into())
    }

    /// Whether running the same work again can never succeed (a background job is then
    /// parked at once instead of retried).
    pub fn is_permanent(&self) -> bool {
        match self {
            Error::BadRequest(_) | Error::WechatBadRequest { .. } | Error::UnknownApp(_) => true,
            Error::InvalidCode { .. }
            | Error::Unauthenticated
            | Error::Forbidden
            | Error::RateLimited { .. }
            | Error::Upstream { .. }
            | Error::Internal(_) => false,
        }
    }

    /// Whether WeChat itself failed us (down, timing out, busy, rate limiting): the next call
    /// is likely to fail the same way for a while, whatever its arguments.
    pub fn is_wechat_failure(&self) -> bool {
        matches!(self, Error::Upstream { .. } | Error::RateLimited { .. })
    }

    /// WeChat's own errcode/errmsg, when the error came from WeChat.
    pub fn wechat(&self) -> Option<(i64, &str)> {
        match self {
            Error::InvalidCode { errcode, errmsg }
            | Error::WechatBadRequest { errcode, errmsg } => Some((*errcode, errmsg)),
            Error::RateLimited {
                errcode: Some(c),
                errmsg,
            }
            | Error::Upstream {
                errcode: Some(c),
                errmsg,
                ..
            } => Some((*c, errmsg.as_deref().unwrap_or(""))),
            _ => None,
        }
    }
}

/// The crate-wide result.
pub type Result<T, E = Error> = std::result::Result<T, E>;
