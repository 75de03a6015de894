//! The HTTP surface: one `router()` joining GraphQL, the WeChat callback and the operations
//! endpoints. Handlers are thin: parse, call the domain, map the result.

pub mod graphiql;
mod graphql;
mod ops;
pub mod refusals;
pub mod request_id;
pub mod server;
mod wechat_callback;

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod captured_log;
#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;

use std::cell::RefCell;
use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::{HeaderValue, Method, header};
use axum::response::Response;
use axum::routing::get;
use tower::{Layer, ServiceBuilder};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::graphql::ApiSchema;
use crate::identity::Service;
use crate::jobs::inbox::Inbox;

/// What the handlers reach: the use cases, the schema, the callback inbox and the metrics
/// registry; never the storage under them.
#[derive(Clone)]
pub struct AppState {
    pub service: Service,
    pub schema: ApiSchema,
    /// The same schema without async-graphql's validation rules, for documents that passed
    /// them before (`graphql::variables`).
    pub prevalidated_schema: ApiSchema,
    pub inbox: Inbox,
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
    /// Rate-limits the `warn` lines of refused callbacks.
    pub refusals: Arc<refusals::RefusalLog>,
    /// Parsed GraphQL documents by query text.
    pub documents: Arc<graphql::Documents>,
}

pub use graphql::{
    Decoded, Documents, MAX_OPERATION_LABELS, MediaType, Params, Prepared, Refused,
    began_execution, decode, document_form,
};
pub use wechat_callback::params as callback_params;

/// The largest callback body accepted (WeChat's are a few KiB).
pub const CALLBACK_BODY_LIMIT: usize = 64 * 1024;
/// The largest GraphQL request accepted (enforced while reading, see `graphql::post`).
pub const GRAPHQL_BODY_LIMIT: usize = 256 * 1024;

/// Every route wxunion serves.
pub fn router(state: AppState) -> Router {
    let cors = cors(&state.service.config().cors_allowed_origins);
    let request_timeout = Duration::from_secs(state.service.config().http_request_timeout_seconds);
    let graphql = Router::new()
        .route(
            "/graphql",
            get(graphql::get)
                .post(graphql::post)
                .fallback(graphql::method_not_allowed),
        )
        .layer(cors);
    let callback = Router::new().route(
        CALLBACK_ROUTE,
        get(wechat_callback::verify).post(wechat_callback::receive),
    );
    let routes = Router::new()
        .merge(graphql)
        .merge(callback)
        .merge(graphiql::routes())
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics));
    // Inside the request id and span, so their log lines carry the id: the body limit (only the
    // callback route reads its body through axum's extractors; `/graphql` reads its own with
    // `GRAPHQL_BODY_LIMIT`), then one middleware for the request timeout and the metrics, so
    // requests cut off by the timeout are counted with their 503.
    let inner = ServiceBuilder::new()
        .layer(DefaultBodyLimit::max(CALLBACK_BODY_LIMIT))
        .layer(TrackLayer {
            limit: request_timeout,
        });
    request_id::layer(routes, inner).with_state(Arc::new(state))
}

/// Only the configured front-end origins may call `/graphql` from a browser.
fn cors(origins: &[String]) -> CorsLayer {
    let origins: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o.trim_end_matches('/')).ok())
        .collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
}

/// The callback route's template, as `MatchedPath` gives it.
const CALLBACK_ROUTE: &str = "/wechat/callback/{app_id}";

/// The `method` label: a standard method's name, or `other` for the methods a client may
/// invent (any token is a method in HTTP), so they cannot add series without bound.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}

/// The layer of [`Track`], with the request timeout.
#[derive(Clone, Copy)]
struct TrackLayer {
    limit: Duration,
}

impl<S> Layer<S> for TrackLayer {
    type Service = Track<S>;

    fn layer(&self, inner: S) -> Track<S> {
        Track {
            inner,
            limit: self.limit,
        }
    }
}

/// Answers 503 when handling a request takes longer than `limit` ([`server::timed`]), counts
/// requests and their latency by route and status, and times the callback route against
/// WeChat's five-second budget (`wxunion_callback_seconds`, answers cut off by
/// `http_request_timeout_seconds` included).
///
/// A tower service rather than `middleware::from_fn`, which boxes the inner service and its
/// future once more on every request.
#[derive(Clone)]
struct Track<S> {
    inner: S,
    limit: Duration,
}

impl<S> tower::Service<Request> for Track<S>
where
    S: tower::Service<Request, Response = Response, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        // `MatchedPath` is an `Arc<str>`: cloning it copies nothing. A `Uri` shares the
        // request's bytes: the path is copied only if the timeout logs it.
        let matched = req.extensions().get::<MatchedPath>().cloned();
        let method = method_label(req.method());
        let uri = req.uri().clone();
        let limit = self.limit;
        let started = Instant::now();
        let handling = self.inner.call(req);
        Box::pin(async move {
            let handling = async move {
                match handling.await {
                    Ok(response) => response,
                    Err(never) => match never {},
                }
            };
            let resp = server::timed(limit, &uri, handling).await;
            record_request(matched.as_ref(), method, resp.status().as_u16(), started);
            Ok(resp)
        })
    }
}

/// Counts one request of `route` (`None`: no route matched) in this thread's metric handles.
fn record_request(
    route: Option<&MatchedPath>,
    method: &'static str,
    status: u16,
    started: Instant,
) {
    let elapsed = started.elapsed().as_secs_f64();
    let route = route.map_or("unmatched", MatchedPath::as_str);
    ROUTE_METRICS.with_borrow_mut(|routes| {
        // Looked up by `&str`: the route is copied into the map only the first time.
        let by_status = match routes.get_mut(route) {
            Some(by_status) => by_status,
            None => routes.entry(route.to_owned()).or_default(),
        };
        by_status
            .entry((method, status))
            .or_insert_with(|| RouteHandles::new(route, method, status))
            .record(elapsed);
    });
}

/// The metric handles of one (route, method, status).
struct RouteHandles {
    requests: metrics::Counter,
    seconds: metrics::Histogram,
    callback_seconds: Option<metrics::Histogram>,
}

impl RouteHandles {
    fn new(route: &str, method: &'static str, status: u16) -> Self {
        let route = route.to_owned();
        RouteHandles {
            requests: metrics::counter!("wxunion_http_requests_total", "route" => route.clone(), "method" => method, "status" => status.to_string()),
            seconds: metrics::histogram!("wxunion_http_request_seconds", "route" => route.clone()),
            callback_seconds: (route == CALLBACK_ROUTE)
                .then(|| metrics::histogram!("wxunion_callback_seconds")),
        }
    }

    fn record(&self, elapsed: f64) {
        if let Some(callback_seconds) = &self.callback_seconds {
            callback_seconds.record(elapsed);
        }
        self.requests.increment(1);
        self.seconds.record(elapsed);
    }
}

/// One route's handles by method and status.
type ByMethodAndStatus = HashMap<(&'static str, u16), RouteHandles>;

thread_local! {
    /// Each thread's handles by route, then method and status: a request updates its series
    /// without building and hashing their keys in the recorder (about 4 % of a callback's
    /// instructions). Bounded: routes are the router's templates or `unmatched`, methods
    /// [`method_label`]'s, statuses three digits. The recorder is installed before any
    /// request can reach here (`AppState` holds its handle).
    static ROUTE_METRICS: RefCell<HashMap<String, ByMethodAndStatus>> = RefCell::default();
}
