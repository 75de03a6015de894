//! `GET/POST /wechat/callback/{appId}`: WeChat's official-account callback route.
//!
//! GET answers URL verification. POST has `wechat::envelope` verify, decrypt and parse the
//! message, records the job it asks for durably and deduplicated in `jobs::inbox`, and only
//! then answers `success`. Everything slow happens later in `jobs::worker`. Refusals record
//! nothing and all go through [`Refused`].

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::AppState;
use crate::domain::job::JobKind;
use crate::domain::{AppConfig, AppKind};
use crate::jobs::{EventJob, inbox::NewJob};
use crate::wechat::envelope::{self, Refusal};

type Params = Query<HashMap<String, String>>;

/// A refused callback: its status, and the reason counted in
/// `wxunion_callback_rejected_total` and given as the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Not a configured official account (POST).
    UnknownApp,
    /// Verification with an unknown app: the contract answers 401, like a bad signature.
    UnknownAppVerification,
    /// A missing or wrong signature.
    Unauthorized(&'static str),
    /// Not a well-formed WeChat message for this account.
    Malformed(&'static str),
    /// The database could not record it: not acknowledged, so WeChat retries.
    NotRecorded,
}

impl From<Refusal> for Refused {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::Unauthorized(why) => Refused::Unauthorized(why),
            Refusal::Malformed(why) => Refused::Malformed(why),
        }
    }
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        let (status, why) = match self {
            Refused::UnknownApp => (StatusCode::NOT_FOUND, "unknown app"),
            Refused::UnknownAppVerification => (StatusCode::UNAUTHORIZED, "unknown app"),
            Refused::Unauthorized(why) => (StatusCode::UNAUTHORIZED, why),
            Refused::Malformed(why) => (StatusCode::BAD_REQUEST, why),
            Refused::NotRecorded => (
                StatusCode::SERVICE_UNAVAILABLE,
                "could not record the event",
            ),
        };
        metrics::counter!("wxunion_callback_rejected_total", "reason" => why).increment(1);
        tracing::debug!(why, "callback refused");
        (status, why).into_response()
    }
}

fn official_account<'a>(state: &'a AppState, app_id: &str) -> Option<&'a AppConfig> {
    state
        .service
        .config()
        .app(app_id)
        .filter(|a| a.kind == AppKind::OfficialAccount)
}

/// URL verification: a valid signature gets `echostr` back verbatim, anything else 401.
pub async fn verify(
    State(state): State<Arc<AppState>>,
    Path(app_id): Path<String>,
    Query(q): Params,
) -> Result<String, Refused> {
    let app = official_account(&state, &app_id).ok_or(Refused::UnknownAppVerification)?;
    match q.get("echostr") {
        Some(echostr) if envelope::signature_ok(app, &q) => Ok(echostr.clone()),
        _ => Err(Refused::Unauthorized("bad signature")),
    }
}

/// A message or event.
pub async fn receive(
    State(state): State<Arc<AppState>>,
    Path(app_id): Path<String>,
    Query(q): Params,
    body: Bytes,
) -> Result<Response, Refused> {
    let app = official_account(&state, &app_id).ok_or(Refused::UnknownApp)?;
    let opened = envelope::open(app, &q, &body)?;
    let msg = &opened.message;
    let job = EventJob::from_message(msg);
    let payload = serde_json::to_string(&job).map_err(|_| Refused::NotRecorded)?;
    let now = state.service.now();
    state
        .inbox
        .record(NewJob {
            kind: JobKind::CallbackEvent,
            app_id: app.app_id.clone(),
            dedupe_key: msg.dedupe_key(&app.app_id),
            payload,
            now,
        })
        .await
        .map_err(|_| Refused::NotRecorded)?;
    Ok(match job.reply(app) {
        Some(text) => (
            [(header::CONTENT_TYPE, "application/xml; charset=utf-8")],
            envelope::text_reply(app, &q, &opened, text, now.timestamp()),
        )
            .into_response(),
        // Nothing to say back: WeChat takes `success` in every mode, and it stops retries.
        None => "success".into_response(),
    })
}
