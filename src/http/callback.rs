//! `GET/POST /wechat/callback/{appId}`: WeChat's official-account callback.
//!
//! GET answers URL verification. POST has `wechat::callback` verify, decrypt and parse the
//! message, records the event durably and deduplicated in the inbox, and only then answers
//! `success`. Everything slow happens later in `callback::worker`. Rejections record nothing.

use std::collections::HashMap;
use std::sync::Arc;

use crate::app::AppState;
use crate::callback::{EventJob, KIND, inbox::NewJob};
use crate::config::{AppConfig, AppKind};
use crate::wechat::callback::{self, Refusal};
use crate::wechat::message::Kind;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

type Params = Query<HashMap<String, String>>;

fn reject(status: StatusCode, why: &'static str) -> Response {
    metrics::counter!("wxunion_callback_rejected_total", "reason" => why).increment(1);
    tracing::debug!(why, "callback rejected");
    (status, why).into_response()
}

fn official_account<'a>(state: &'a AppState, app_id: &str) -> Option<&'a AppConfig> {
    state
        .service
        .config
        .app(app_id)
        .filter(|a| a.kind == AppKind::OfficialAccount)
}

/// URL verification: a valid signature gets `echostr` back verbatim, anything else 401.
pub async fn verify(
    State(state): State<Arc<AppState>>,
    Path(app_id): Path<String>,
    Query(q): Params,
) -> Response {
    // The contract: anything but a valid verification is 401 here, unknown apps included.
    let Some(app) = official_account(&state, &app_id) else {
        return reject(StatusCode::UNAUTHORIZED, "unknown app");
    };
    match q.get("echostr") {
        Some(echostr) if callback::signature_ok(app, &q) => echostr.clone().into_response(),
        _ => reject(StatusCode::UNAUTHORIZED, "bad signature"),
    }
}

/// A message or event.
pub async fn receive(
    State(state): State<Arc<AppState>>,
    Path(app_id): Path<String>,
    Query(q): Params,
    body: Bytes,
) -> Response {
    let Some(app) = official_account(&state, &app_id) else {
        return reject(StatusCode::NOT_FOUND, "unknown app");
    };
    let opened = match callback::open(app, &q, &body) {
        Ok(o) => o,
        Err(Refusal::Unauthorized(why)) => return reject(StatusCode::UNAUTHORIZED, why),
        Err(Refusal::Malformed(why)) => return reject(StatusCode::BAD_REQUEST, why),
    };
    let msg = &opened.message;
    let subscribed = match msg.kind() {
        Kind::Subscribe { .. } => Some(true),
        Kind::Unsubscribe => Some(false),
        Kind::Scan { .. } | Kind::Other => None,
    };
    let job = EventJob {
        open_id: msg.from_user_name.clone(),
        create_time: msg.create_time,
        subscribed,
        msg_type: msg.msg_type.clone(),
        event: msg.event.clone(),
    };
    let Ok(payload) = serde_json::to_string(&job) else {
        return reject(StatusCode::INTERNAL_SERVER_ERROR, "could not encode job");
    };
    let now = state.service.clock.now();
    let recorded = state
        .inbox
        .record(NewJob {
            kind: KIND,
            app_id: app.app_id.clone(),
            dedupe_key: msg.dedupe_key(&app.app_id),
            payload,
            now,
        })
        .await;
    match recorded {
        Ok(()) => match (&app.subscribe_reply, subscribed) {
            (Some(text), Some(true)) => (
                [(header::CONTENT_TYPE, "application/xml; charset=utf-8")],
                callback::text_reply(app, &q, &opened, text, now.timestamp()),
            )
                .into_response(),
            // Nothing to say back: WeChat takes `success` in every mode, and it stops retries.
            _ => "success".into_response(),
        },
        // Not recorded, so not acknowledged: WeChat will retry.
        Err(_) => reject(
            StatusCode::SERVICE_UNAVAILABLE,
            "could not record the event",
        ),
    }
}
