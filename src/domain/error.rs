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

    /// The same error again, for each of several callers that waited for one piece of work
    /// (an internal cause is carried as its text: `anyhow` errors cannot be copied).
    pub fn replicate(&self) -> Error {
        match self {
            Error::BadRequest(m) => Error::BadRequest(m.clone()),
            Error::WechatBadRequest { errcode, errmsg } => Error::WechatBadRequest {
                errcode: *errcode,
                errmsg: errmsg.clone(),
            },
            Error::UnknownApp(a) => Error::UnknownApp(a.clone()),
            Error::InvalidCode { errcode, errmsg } => Error::InvalidCode {
                errcode: *errcode,
                errmsg: errmsg.clone(),
            },
            Error::Unauthenticated => Error::Unauthenticated,
            Error::Forbidden => Error::Forbidden,
            Error::RateLimited { errcode, errmsg } => Error::RateLimited {
                errcode: *errcode,
                errmsg: errmsg.clone(),
            },
            Error::Upstream {
                errcode,
                errmsg,
                detail,
            } => Error::Upstream {
                errcode: *errcode,
                errmsg: errmsg.clone(),
                detail: detail.clone(),
            },
            Error::Internal(cause) => Error::Internal(anyhow::anyhow!("{cause:#}")),
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replicated_error_says_the_same_thing() {
        let cases = [
            Error::BadRequest("b".into()),
            Error::WechatBadRequest {
                errcode: 40003,
                errmsg: "m".into(),
            },
            Error::UnknownApp("wx".into()),
            Error::InvalidCode {
                errcode: 40029,
                errmsg: "m".into(),
            },
            Error::Unauthenticated,
            Error::Forbidden,
            Error::RateLimited {
                errcode: Some(45011),
                errmsg: Some("m".into()),
            },
            Error::Upstream {
                errcode: None,
                errmsg: None,
                detail: "timed out".into(),
            },
            Error::internal(anyhow::anyhow!("inner").context("outer")),
        ];
        for e in cases {
            let r = e.replicate();
            assert_eq!(
                format!("{r:?}").split('(').next(),
                format!("{e:?}").split('(').next()
            );
            assert_eq!(r.to_string(), e.to_string());
            assert_eq!(r.wechat(), e.wechat());
            assert_eq!(r.is_permanent(), e.is_permanent());
        }
        let Error::Internal(cause) =
            Error::internal(anyhow::anyhow!("inner").context("outer")).replicate()
        else {
            panic!("not internal");
        };
        assert_eq!(format!("{cause:#}"), "outer: inner");
    }
}
