//! `GET/POST /wechat/callback/{appId}`: WeChat's official-account callback.
//!
//! GET answers URL verification. POST verifies the signature (and in safe or compatible mode
//! `msg_signature` and the AES envelope), parses the XML with the hardened reader, records the
//! event durably and deduplicated in the inbox, and only then answers `success`. Everything
//! slow happens later in `callback::worker`. Rejections record nothing.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use secrecy::ExposeSecret;

use crate::app::AppState;
use crate::callback::{EventJob, KIND, inbox::NewJob};
use crate::config::{AppConfig, AppKind};
use crate::wechat::crypto::{self, MsgCrypt};
use crate::wechat::message::{self, Kind};

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

/// Checks `signature = sha1(sort(token, timestamp, nonce))` in constant time.
fn signature_ok(app: &AppConfig, q: &HashMap<String, String>) -> bool {
    let (Some(token), Some(sig), Some(ts), Some(nonce)) = (
        &app.token,
        q.get("signature"),
        q.get("timestamp"),
        q.get("nonce"),
    ) else {
        return false;
    };
    crypto::signatures_match(&crypto::signature(token.expose_secret(), ts, nonce), sig)
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
        Some(echostr) if signature_ok(app, &q) => echostr.clone().into_response(),
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
    if !signature_ok(app, &q) {
        return reject(StatusCode::UNAUTHORIZED, "bad signature");
    }
    let Ok(body) = std::str::from_utf8(&body) else {
        return reject(StatusCode::BAD_REQUEST, "body is not UTF-8");
    };
    let encrypted = q.get("encrypt_type").is_some_and(|t| t == "aes");
    // An account with an EncodingAESKey is in compatible or safe mode, where WeChat always
    // encrypts. A plaintext body would be authenticated by nothing but a replayable
    // signature, so it is refused.
    if !encrypted && app.encoding_aes_key.is_some() {
        return reject(
            StatusCode::BAD_REQUEST,
            "this account expects encrypted messages",
        );
    }
    let plain: std::borrow::Cow<'_, str> = if encrypted {
        match decrypt(app, &q, body) {
            Ok(p) => p.into(),
            Err((status, why)) => return reject(status, why),
        }
    } else {
        body.into()
    };
    let msg = match message::parse_message(&plain) {
        Ok(m) => m,
        Err(_) => return reject(StatusCode::BAD_REQUEST, "not a WeChat message"),
    };
    if q.get("openid").is_some_and(|o| *o != msg.from_user_name) {
        return reject(
            StatusCode::BAD_REQUEST,
            "openid does not match FromUserName",
        );
    }
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
    let recorded = state
        .inbox
        .record(NewJob {
            kind: KIND,
            app_id: app.app_id.clone(),
            dedupe_key: msg.dedupe_key(&app.app_id),
            payload,
            now: state.service.clock.now(),
        })
        .await;
    match recorded {
        Ok(()) => match (&app.subscribe_reply, subscribed) {
            (Some(text), Some(true)) => reply(app, &q, &msg, text, encrypted),
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

/// A passive text reply, encrypted and signed with the request's timestamp and nonce when
/// the message came encrypted.
fn reply(
    app: &AppConfig,
    q: &HashMap<String, String>,
    msg: &message::Message,
    text: &str,
    encrypted: bool,
) -> Response {
    let now = chrono::Utc::now().timestamp();
    let xml = message::reply_text_xml(&msg.from_user_name, &msg.to_user_name, now, text);
    let body = match (&app.token, &app.encoding_aes_key, encrypted) {
        (Some(token), Some(key), true) => {
            let Ok(mc) = MsgCrypt::new(token.expose_secret(), key.expose_secret(), &app.app_id)
            else {
                return "success".into_response();
            };
            let ts = q
                .get("timestamp")
                .cloned()
                .unwrap_or_else(|| now.to_string());
            let nonce = q.get("nonce").cloned().unwrap_or_default();
            mc.encrypt_reply(&xml, &ts, &nonce, rand::random())
        }
        _ => xml,
    };
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/xml; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

type Rejection = (StatusCode, &'static str);

/// Safe and compatible mode: check `msg_signature` over the envelope and decrypt it.
fn decrypt(app: &AppConfig, q: &HashMap<String, String>, body: &str) -> Result<String, Rejection> {
    let (Some(token), Some(key)) = (&app.token, &app.encoding_aes_key) else {
        return Err((
            StatusCode::BAD_REQUEST,
            "encrypted message for an account without an EncodingAESKey",
        ));
    };
    let (Some(msg_sig), Some(ts), Some(nonce)) =
        (q.get("msg_signature"), q.get("timestamp"), q.get("nonce"))
    else {
        return Err((StatusCode::UNAUTHORIZED, "missing msg_signature"));
    };
    let envelope = message::parse_envelope(body)
        .map_err(|_| (StatusCode::BAD_REQUEST, "not a WeChat message"))?;
    let Some(encrypt) = envelope.encrypt else {
        return Err((StatusCode::BAD_REQUEST, "no Encrypt element"));
    };
    let mc = MsgCrypt::new(token.expose_secret(), key.expose_secret(), &app.app_id)
        .map_err(|_| (StatusCode::INTERNAL_SERVER_ERROR, "bad EncodingAESKey"))?;
    mc.verify_and_decrypt(msg_sig, ts, nonce, &encrypt)
        .map_err(|e| match e {
            crypto::CryptoError::BadSignature => (StatusCode::UNAUTHORIZED, "bad msg_signature"),
            crypto::CryptoError::AppIdMismatch => {
                (StatusCode::BAD_REQUEST, "envelope is for another app")
            }
            _ => (StatusCode::BAD_REQUEST, "cannot decrypt the envelope"),
        })
}
