//! The one mapping from domain errors to GraphQL `extensions.code`.
//!
//! async-graphql's `custom-error-conversion` feature removes its blanket conversion from any
//! `Display` type, so the only way a domain error becomes a GraphQL error is the `From` impl
//! below: a resolver's bare `?` gets the right code, and an error of another type does not
//! compile. The exhaustive `match` makes a new error variant a compile error here.

use async_graphql::ErrorExtensions;

use crate::domain::Error;
use crate::identity::Service;

/// The `extensions.code` of a domain error.
pub fn code(e: &Error) -> &'static str {
    match e {
        Error::BadRequest(_) | Error::WechatBadRequest { .. } => "BAD_REQUEST",
        Error::UnknownApp(_) => "UNKNOWN_APP",
        Error::InvalidCode { .. } => "INVALID_CODE",
        Error::Unauthenticated => "UNAUTHENTICATED",
        Error::Forbidden => "FORBIDDEN",
        Error::RateLimited { .. } => "RATE_LIMITED",
        Error::Upstream { .. } => "UPSTREAM_ERROR",
        Error::Internal(_) => "INTERNAL",
    }
}

/// Turns a domain error into a GraphQL error with its code and WeChat's errcode/errmsg.
/// Internal causes are logged here and replaced by a generic message.
pub fn to_graphql(e: Error) -> async_graphql::Error {
    if let Error::Internal(cause) = &e {
        tracing::error!(error = format!("{cause:#}"), "internal error");
    } else if let Error::Upstream { detail, .. } = &e {
        tracing::warn!(detail, "WeChat upstream error");
    }
    let code = code(&e);
    let wechat = e.wechat().map(|(c, m)| (c, m.to_owned()));
    async_graphql::Error::new(e.to_string()).extend_with(|_, ext| {
        ext.set("code", code);
        if let Some((errcode, errmsg)) = &wechat {
            ext.set("wechatErrcode", *errcode);
            ext.set("wechatErrmsg", errmsg.as_str());
        }
    })
}

impl From<Error> for async_graphql::Error {
    fn from(e: Error) -> Self {
        to_graphql(e)
    }
}

/// The service from the schema data; its absence is a wiring bug, reported as `INTERNAL`.
pub fn service<'a>(ctx: &async_graphql::Context<'a>) -> crate::domain::Result<&'a Service> {
    ctx.data::<Service>().map_err(|e| {
        Error::internal(anyhow::anyhow!(
            "schema built without a service: {}",
            e.message
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ext(e: Error) -> async_graphql::Value {
        let err = to_graphql(e).into_server_error(async_graphql::Pos::default());
        async_graphql::to_value(err.extensions).unwrap()
    }

    fn code_of(e: Error) -> String {
        match ext(e) {
            async_graphql::Value::Object(o) => o["code"].to_string(),
            other => panic!("no extensions: {other:?}"),
        }
    }

    #[test]
    fn each_error_has_its_contract_code() {
        assert_eq!(code_of(Error::BadRequest("x".into())), "\"BAD_REQUEST\"");
        assert_eq!(
            code_of(Error::WechatBadRequest {
                errcode: 40003,
                errmsg: "m".into()
            }),
            "\"BAD_REQUEST\""
        );
        assert_eq!(code_of(Error::UnknownApp("wx".into())), "\"UNKNOWN_APP\"");
        assert_eq!(
            code_of(Error::InvalidCode {
                errcode: 40029,
                errmsg: "m".into()
            }),
            "\"INVALID_CODE\""
        );
        assert_eq!(code_of(Error::Unauthenticated), "\"UNAUTHENTICATED\"");
        assert_eq!(code_of(Error::Forbidden), "\"FORBIDDEN\"");
        assert_eq!(
            code_of(Error::RateLimited {
                errcode: Some(45011),
                errmsg: None
            }),
            "\"RATE_LIMITED\""
        );
        assert_eq!(
            code_of(Error::Upstream {
                errcode: None,
                errmsg: None,
                detail: "d".into()
            }),
            "\"UPSTREAM_ERROR\""
        );
        assert_eq!(
            code_of(Error::internal(anyhow::anyhow!("db password=hunter2"))),
            "\"INTERNAL\""
        );
    }

    #[test]
    fn wechat_errcode_and_errmsg_travel_in_extensions() {
        let v = ext(Error::InvalidCode {
            errcode: 40163,
            errmsg: "code been used".into(),
        })
        .to_string();
        assert!(v.contains("wechatErrcode: 40163"), "{v}");
        assert!(v.contains("code been used"), "{v}");
    }

    #[test]
    fn internal_errors_hide_their_cause() {
        let e = to_graphql(Error::internal(anyhow::anyhow!("db password=hunter2")));
        assert!(!e.message.contains("hunter2"));
    }
}
