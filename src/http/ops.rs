//! `/healthz`, `/readyz` and `/metrics` for load balancers and Prometheus.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::json;

use super::AppState;

/// The process is up and serving.
pub async fn healthz() -> &'static str {
    "ok"
}

/// The database and the cache both answer; 503 otherwise, naming which one failed.
pub async fn readyz(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let ready = state
        .service
        .readiness(std::time::Duration::from_secs(2))
        .await;
    let (db_ok, cache_ok) = (ready.database, ready.cache);
    let status = if db_ok && cache_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let word = |ok: bool| if ok { "ok" } else { "unreachable" };
    (
        status,
        Json(json!({
            "database": word(db_ok),
            "cache": word(cache_ok),
            "cache_kind": ready.cache_kind,
        })),
    )
}

/// Prometheus text format.
pub async fn metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        state.metrics.render(),
    )
}
