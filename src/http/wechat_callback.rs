//! `GET/POST /wechat/callback/{appId}`: WeChat's official-account callback route.
//!
//! GET answers URL verification. POST has `wechat::envelope` verify, decrypt and parse the
//! message, records the job it asks for durably and deduplicated in `jobs::inbox`, and only
//! then answers `success`. Everything slow happens later in `jobs::worker`. Refusals record
//! nothing and all go through [`Refused`]; they are logged at `warn`, at most once a minute per
//! app and reason (`super::refusals`). A message that was already recorded (a WeChat retry, a
//! repeat) is answered the same way and counted in `wxunion_callback_duplicates_total`.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::AppState;
use crate::domain::job::JobKind;
use crate::domain::{AppConfig, AppId, AppKind};
use crate::jobs::EventJob;
use crate::jobs::inbox::{NewJob, Recorded};
use crate::wechat::envelope::{self, QueryParams, Refusal};

/// The query parameters of a callback, by name (a repeated name keeps its last value).
///
/// What `Query<HashMap<String, String>>` gives (form decoding, `+` as a space, invalid UTF-8
/// replaced), without axum's extractor: that goes through serde and `serde_path_to_error`,
/// about 15,000 instructions per callback (`bench/callgrind.sh`).
pub fn params(raw: Option<&str>) -> QueryParams<'_> {
    // A name or value without `%` or `+` (all of WeChat's) is taken as it is; the others go
    // through `form_urlencoded`.
    let plain = |s: &str| !s.bytes().any(|b| b == b'%' || b == b'+');
    let mut q = QueryParams::new();
    for pair in raw.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some((name, value)) if plain(pair) => q.insert(name, value),
            None if plain(pair) => q.insert(pair, ""),
            _ => q.extend(url::form_urlencoded::parse(pair.as_bytes())),
        }
    }
    q
}

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

impl Refused {
    /// The status it is answered with and its reason.
    fn parts(self) -> (StatusCode, &'static str) {
        match self {
            Refused::UnknownApp => (StatusCode::NOT_FOUND, "unknown app"),
            Refused::UnknownAppVerification => (StatusCode::UNAUTHORIZED, "unknown app"),
            Refused::Unauthorized(why) => (StatusCode::UNAUTHORIZED, why),
            Refused::Malformed(why) => (StatusCode::BAD_REQUEST, why),
            Refused::NotRecorded => (
                StatusCode::SERVICE_UNAVAILABLE,
                "could not record the event",
            ),
        }
    }
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        let (status, why) = self.parts();
        metrics::counter!("wxunion_callback_rejected_total", "reason" => why).increment(1);
        (status, why).into_response()
    }
}

/// Answers a refusal, and logs it at `warn` unless the same app and reason were logged less
/// than a minute ago. A database failure is not logged here: the inbox logs it as an error.
fn refuse(state: &AppState, app_id: &str, refused: Refused) -> Response {
    if refused != Refused::NotRecorded {
        let (status, why) = refused.parts();
        // The appId comes from the URL: logged as given only when it has an appId's shape.
        let app = if AppId::parse(app_id).is_ok() {
            app_id
        } else {
            "(malformed)"
        };
        state
            .refusals
            .note(app, why, status.as_u16(), Instant::now());
    }
    refused.into_response()
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
    RawQuery(raw): RawQuery,
) -> Response {
    let q = params(raw.as_deref());
    match verification(&state, &app_id, &q) {
        Ok(echostr) => echostr.into_response(),
        Err(refused) => refuse(&state, &app_id, refused),
    }
}

fn verification(state: &AppState, app_id: &str, q: &QueryParams<'_>) -> Result<String, Refused> {
    let app = official_account(state, app_id).ok_or(Refused::UnknownAppVerification)?;
    match q.get("echostr") {
        Some(echostr) if envelope::signature_ok(app, q) => Ok(echostr.to_owned()),
        _ => Err(Refused::Unauthorized("bad signature")),
    }
}

/// A message or event.
pub async fn receive(
    State(state): State<Arc<AppState>>,
    Path(app_id): Path<String>,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> Response {
    let q = params(raw.as_deref());
    match record(&state, &app_id, &q, &body).await {
        Ok(answer) => answer,
        Err(refused) => refuse(&state, &app_id, refused),
    }
}

async fn record(
    state: &AppState,
    app_id: &str,
    q: &QueryParams<'_>,
    body: &[u8],
) -> Result<Response, Refused> {
    let app = official_account(state, app_id).ok_or(Refused::UnknownApp)?;
    let opened = envelope::open(app, q, body)?;
    let msg = &opened.message;
    let job = EventJob::from_message(msg);
    let payload = serde_json::to_string(&job).map_err(|_| Refused::NotRecorded)?;
    let now = state.service.now();
    // Bounded: with the database down or hung WeChat hears 503 within `database_timeout_ms`
    // and retries (a job given up here may still be committed: its retry is a duplicate).
    let recording = state.inbox.record(NewJob {
        kind: JobKind::CallbackEvent,
        app_id: app.app_id.clone(),
        dedupe_key: msg.dedupe_key(&app.app_id),
        payload,
        now,
    });
    let recorded = tokio::time::timeout(state.service.database_timeout(), recording)
        .await
        .map_err(|_| Refused::NotRecorded)?
        .map_err(|_| Refused::NotRecorded)?;
    if recorded == Recorded::Duplicate {
        // Answered like the first time (a retry means WeChat missed that answer), no effect.
        metrics::counter!("wxunion_callback_duplicates_total", "app_id" => app.app_id.clone())
            .increment(1);
    }
    Ok(match job.reply(app) {
        Some(text) => (
            [(header::CONTENT_TYPE, "application/xml; charset=utf-8")],
            envelope::text_reply(app, q, &opened, text, now.timestamp()),
        )
            .into_response(),
        // Nothing to say back: WeChat takes `success` in every mode, and it stops retries.
        None => "success".into_response(),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use axum::extract::Query;
    use axum::http::Uri;

    /// `params` decodes every query exactly as the `Query<HashMap<String, String>>` extractor
    /// it replaced.
    #[test]
    fn params_decode_queries_as_axums_query_extractor_did() {
        let queries = [
            "",
            "signature=abc&timestamp=1700000000&nonce=42",
            "encrypt_type=aes&msg_signature=0123abcd&openid=oABC-_x",
            "a=1&a=2",
            "a=x+y&b=%2B%20%26%3D",
            "novalue&=empty&k=",
            "bad=%ff%fe&half=%e4%b8",
            "%E4%B8%AD=%E6%96%87",
            "a=%zz&b=%",
            "&&a=1&&",
            "a=b=c&d=e+f=g&k%3D=v%3D&x+y=1",
        ];
        for query in queries {
            let uri: Uri = format!("/wechat/callback/wx1?{query}").parse().unwrap();
            let Query(expected) = Query::<HashMap<String, String>>::try_from_uri(&uri).unwrap();
            assert_eq!(params(uri.query()).to_map(), expected, "query {query:?}");
        }
        assert!(params(None).is_empty());
    }
}
