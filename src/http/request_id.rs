//! A request id on every request, and a span carrying it around the handling of each one.
//!
//! An incoming `x-request-id` (from a proxy or a caller) is kept when it is 1 to 64 visible
//! ASCII characters; otherwise (absent, too long, spaces, control or non-ASCII bytes, more
//! than one) it is replaced by a fresh UUID. The id is echoed in the response's
//! `x-request-id`. Every request is handled inside a span `request{request_id=.. method=..
//! route=..}`, so every log line emitted while handling it (resolvers, WeChat calls, the
//! callback route, the request timeout) carries the id. The span has level `error`, the level
//! that is on whenever any logging is: a span below the configured level is off, and then the
//! `warn` and `error` lines of a `RUST_LOG=warn` deployment would lose the id. `route`
//! is the matched route template (`/wechat/callback/{app_id}`), never the URI: query strings
//! carry signatures and GraphQL queries, and no header other than `x-request-id` is read.
//!
//! One line per request, `request finished` with `status` and `latency_us`, is logged at
//! `debug` (off by default), so the callback's hot path pays for the span only.

use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue};
use axum::response::Response;
use axum::routing::Route;
use tower::{Layer, Service, ServiceBuilder};
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::TraceLayer;
use tracing::Span;

/// The header carrying the request id, in and out.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// The longest incoming request id kept.
pub const MAX_REQUEST_ID_LEN: usize = 64;

/// Wraps every route of `router` (call it after adding the routes) with the request id, the
/// request span and then `inner`, as one stack. Outermost first: drop an unfit incoming id,
/// set one when there is none, echo it in the response, the span, then `inner`, so `inner`'s
/// log lines carry the id too.
///
/// One `Router::layer` call for all of it: each call boxes every route's service once more,
/// and a request then clones each box and boxes each future on its way in.
pub fn layer<S, L>(router: Router<S>, inner: L) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    L: Layer<Route> + Clone + Send + Sync + 'static,
    L::Service:
        Service<Request, Response = Response, Error = Infallible> + Clone + Send + Sync + 'static,
    <L::Service as Service<Request>>::Future: Send + 'static,
{
    router.layer(
        ServiceBuilder::new()
            .map_request(drop_unfit_request_id)
            .layer(SetRequestIdLayer::new(X_REQUEST_ID, NewRequestId))
            .layer(PropagateRequestIdLayer::new(X_REQUEST_ID))
            .layer(
                TraceLayer::new_for_http()
                    .make_span_with(request_span)
                    .on_request(())
                    .on_response(request_finished)
                    .on_body_chunk(())
                    .on_eos(())
                    // 5xx are in the `debug` line with their status; their causes are logged
                    // where they happen. An `error` line per 503 would flood the log while the
                    // database is down (every callback, every `/readyz` probe).
                    .on_failure(()),
            )
            .layer(inner),
    )
}

/// Whether an incoming request id is kept: 1 to 64 visible ASCII characters.
pub fn is_fit(value: &HeaderValue) -> bool {
    let bytes = value.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_REQUEST_ID_LEN
        && bytes.iter().all(|b| b.is_ascii_graphic())
}

/// Removes the request's `x-request-id` unless it is exactly one fit value, so that
/// [`SetRequestIdLayer`] replaces it.
fn drop_unfit_request_id(mut req: Request) -> Request {
    let mut values = req.headers().get_all(&X_REQUEST_ID).iter();
    let keep = match (values.next(), values.next()) {
        (None, _) => return req,
        (Some(one), None) => is_fit(one),
        (Some(_), Some(_)) => false,
    };
    if !keep {
        req.headers_mut().remove(&X_REQUEST_ID);
    }
    req
}

/// A random (version 4) UUID from the thread-local generator (no system call per request).
#[derive(Clone, Copy, Debug, Default)]
struct NewRequestId;

impl MakeRequestId for NewRequestId {
    fn make_request_id<B>(&mut self, _request: &axum::http::Request<B>) -> Option<RequestId> {
        let id = uuid::Builder::from_random_bytes(rand::random()).into_uuid();
        let mut buf = uuid::Uuid::encode_buffer();
        HeaderValue::from_str(id.hyphenated().encode_lower(&mut buf))
            .ok()
            .map(RequestId::new)
    }
}

/// The span every request is handled in. Only borrowed, already validated values: no URI, no
/// query string, no header but the request id.
fn request_span(req: &Request) -> Span {
    let request_id = req
        .headers()
        .get(&X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str);
    tracing::error_span!(
        "request",
        request_id = %request_id,
        method = %req.method(),
        route = %route,
    )
}

/// The one line per request, at `debug`.
fn request_finished(res: &Response, latency: Duration, _span: &Span) {
    tracing::debug!(
        status = res.status().as_u16(),
        latency_us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX),
        "request finished"
    );
}

#[cfg(test)]
mod tests {

    use crate::http::captured_log::Captured;
    use axum::body::Body;
    use axum::routing::get;
    use tower::ServiceExt as _;

    use super::*;

    fn app() -> Router {
        layer(
            Router::new().route(
                "/inside/{name}",
                get(|| async {
                    tracing::info!("inside");
                    tracing::warn!("also inside");
                    "ok"
                }),
            ),
            tower::layer::util::Identity::new(),
        )
    }

    /// Sends one request to `app()` with logs (down to `level`) captured; returns the
    /// response's `x-request-id` and the log.
    async fn send(uri: &str, ids: &[&[u8]], level: tracing::Level) -> (String, String) {
        let logs = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(logs.clone())
            .with_max_level(level)
            .with_ansi(false)
            .with_target(false)
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        let mut req = axum::http::Request::get(uri)
            .header("authorization", "Bearer SECRETTOKEN")
            .body(Body::empty())
            .unwrap();
        for id in ids {
            req.headers_mut()
                .append(X_REQUEST_ID, HeaderValue::from_bytes(id).unwrap());
        }
        let res = app().oneshot(req).await.unwrap();
        assert_eq!(res.status(), 200);
        let echoed = res
            .headers()
            .get_all(&X_REQUEST_ID)
            .iter()
            .collect::<Vec<_>>();
        assert_eq!(echoed.len(), 1, "{echoed:?}");
        (echoed[0].to_str().unwrap().to_owned(), logs.text())
    }

    fn is_uuid_v4(s: &str) -> bool {
        uuid::Uuid::try_parse(s).is_ok_and(|u| u.get_version_num() == 4) && s.len() == 36
    }

    #[tokio::test]
    async fn a_log_line_inside_a_request_carries_its_id_and_no_query_string() {
        let (id, logs) = send(
            "/inside/x?signature=SECRETSIG&timestamp=1",
            &[b"req-42.abc"],
            tracing::Level::INFO,
        )
        .await;
        assert_eq!(id, "req-42.abc");
        let inside: Vec<&str> = logs.lines().filter(|l| l.ends_with(": inside")).collect();
        assert_eq!(inside.len(), 1, "{logs}");
        assert!(
            inside[0].contains("request{request_id=req-42.abc method=GET route=/inside/{name}}"),
            "{logs}"
        );
        // `info` is the default level: no line of its own per request.
        assert!(!logs.contains("request finished"), "{logs}");
        assert!(
            !logs.contains("SECRETSIG") && !logs.contains("SECRETTOKEN"),
            "{logs}"
        );
    }

    #[tokio::test]
    async fn with_only_warnings_logged_a_warning_inside_a_request_still_carries_its_id() {
        let (id, logs) = send("/inside/x", &[], tracing::Level::WARN).await;
        let lines: Vec<&str> = logs.lines().collect();
        assert_eq!(lines.len(), 1, "{logs}");
        assert!(lines[0].contains("also inside"), "{logs}");
        assert!(
            lines[0].contains(&format!(
                "request{{request_id={id} method=GET route=/inside/{{name}}}}"
            )),
            "{logs}"
        );
    }

    #[tokio::test]
    async fn the_debug_line_per_request_has_status_and_latency_and_no_query_string() {
        let (id, logs) = send("/inside/x?signature=SECRETSIG", &[], tracing::Level::DEBUG).await;
        assert!(is_uuid_v4(&id), "{id}");
        let finished: Vec<&str> = logs
            .lines()
            .filter(|l| l.contains("request finished"))
            .collect();
        assert_eq!(finished.len(), 1, "{logs}");
        assert!(finished[0].contains(&format!("request_id={id} ")), "{logs}");
        assert!(finished[0].contains(" status=200 latency_us="), "{logs}");
        assert!(
            !logs.contains("SECRETSIG") && !logs.contains("SECRETTOKEN"),
            "{logs}"
        );
    }

    #[tokio::test]
    async fn an_unfit_incoming_id_is_replaced() {
        let long = [b'a'; MAX_REQUEST_ID_LEN + 1];
        let unfit: [&[&[u8]]; 5] = [
            &[&long],
            &[b"has space"],
            &[b"tab\there"],
            &[b"caf\xc3\xa9"],
            &[b"one", b"two"],
        ];
        for ids in unfit {
            let (id, logs) = send("/inside/x", ids, tracing::Level::INFO).await;
            assert!(is_uuid_v4(&id), "{ids:?} -> {id}");
            assert!(logs.contains(&format!("request_id={id} ")), "{logs}");
        }
        let longest = [b'a'; MAX_REQUEST_ID_LEN];
        let (id, _) = send("/inside/x", &[&longest], tracing::Level::INFO).await;
        assert_eq!(id.as_bytes(), longest);
    }

    #[test]
    fn fit_ids() {
        let fit = |s: &str| is_fit(&HeaderValue::from_str(s).unwrap());
        assert!(fit("a"));
        assert!(fit("0b6f0c4e-3c9e-4c1b-9a59-6f1b7f1d2e3a"));
        assert!(fit("~!@#$%^&*()_+{}|:\"<>?"));
        assert!(!fit(""));
        assert!(!fit(" a"));
        assert!(!fit(&"x".repeat(MAX_REQUEST_ID_LEN + 1)));
    }
}
