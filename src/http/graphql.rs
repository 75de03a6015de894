//! `POST /graphql` and the GraphiQL page on `GET /graphql`.

use std::sync::Arc;
use std::time::Instant;

use async_graphql_axum::{GraphQLRequest, GraphQLResponse};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;

use crate::app::AppState;
use crate::graphql::{Caller, errors};

/// The GraphiQL playground, pointed at this server (see `super::graphiql`).
pub async fn graphiql(State(state): State<Arc<AppState>>) -> Response {
    super::graphiql::page(state.service.config.graphiql)
}

/// Resolves the caller from the bearer token, executes, and gives every error a code.
pub async fn execute(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    req: GraphQLRequest,
) -> GraphQLResponse {
    let started = Instant::now();
    let req = req.into_inner();
    // Operation names come from clients: bound them so metrics labels cannot explode.
    let operation = match req.operation_name.as_deref() {
        Some(n) if n.len() <= 64 && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') => {
            n.to_owned()
        }
        Some(_) => "other".to_owned(),
        None => "anonymous".to_owned(),
    };
    let auth = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let caller = match Caller::from_authorization(&state.service, auth).await {
        Ok(c) => c,
        Err(e) => {
            let err = errors::to_graphql(e).into_server_error(async_graphql::Pos::default());
            return async_graphql::Response::from_errors(vec![err]).into();
        }
    };
    let mut resp = state.schema.execute(req.data(caller)).await;
    for err in &mut resp.errors {
        // Errors without a code come from async-graphql itself: the request did not parse or
        // did not validate against the schema (missing or mistyped arguments).
        let has_code = err
            .extensions
            .as_ref()
            .is_some_and(|e| e.get("code").is_some());
        if !has_code {
            err.extensions
                .get_or_insert_with(Default::default)
                .set("code", "BAD_REQUEST");
        }
    }
    let outcome = if resp.errors.is_empty() {
        "ok"
    } else {
        "error"
    };
    metrics::counter!("wxunion_graphql_requests_total", "operation" => operation.clone(), "outcome" => outcome)
        .increment(1);
    metrics::histogram!("wxunion_graphql_request_seconds", "operation" => operation)
        .record(started.elapsed().as_secs_f64());
    resp.into()
}
