//! Posting official-account events to wxunion's callback exactly as WeChat does: signed query
//! string, plaintext / compatible / safe-mode body, five-second timeout and up to three
//! attempts in all, then a report of what happened.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use rand::Rng;
use serde::Deserialize;
use serde_json::{Value, json};
// Attempts are timed on tokio's clock, which their timeouts run on: virtual in paused tests.
use tokio::time::Instant;

use super::control::bad;
use super::state::{Follow, SimApp, SimState};
use crate::domain::AppKind;
use crate::wechat::{crypto, message};

type S = State<Arc<SimState>>;
type Reply = Result<Json<Value>, (StatusCode, Json<Value>)>;

/// WeChat's message encryption modes.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Plaintext,
    Compatible,
    Safe,
}

/// One control call that makes a simulated person do something to an official account.
#[derive(Debug, Deserialize)]
pub struct EventRequest {
    pub app_id: String,
    pub person: String,
    #[serde(default)]
    pub scene: Option<String>,
    #[serde(default)]
    pub content: Option<String>,
    /// Defaults to safe mode when the account has an EncodingAESKey, else plaintext.
    #[serde(default)]
    pub mode: Option<Mode>,
    /// wxunion's base URL; defaults to the one the simulator was told at start.
    #[serde(default)]
    pub target: Option<String>,
    /// WeChat waits 5 s per attempt; tests may shorten it.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Total attempts (WeChat: 3).
    #[serde(default)]
    pub attempts: Option<u32>,
    /// Send the same CreateTime/MsgId again, as WeChat's retries do (defaults to now).
    #[serde(default)]
    pub create_time: Option<i64>,
    #[serde(default)]
    pub msg_id: Option<u64>,
}

pub async fn follow(State(state): S, Json(req): Json<EventRequest>) -> Reply {
    let scene = req.scene.clone();
    let key = scene.as_ref().map(|s| format!("qrscene_{s}"));
    deliver(
        &state,
        req,
        Action::Event("subscribe", key),
        Some(true),
        scene,
    )
    .await
}

pub async fn unfollow(State(state): S, Json(req): Json<EventRequest>) -> Reply {
    deliver(
        &state,
        req,
        Action::Event("unsubscribe", None),
        Some(false),
        None,
    )
    .await
}

pub async fn scan(State(state): S, Json(req): Json<EventRequest>) -> Reply {
    let key = req.scene.clone();
    deliver(&state, req, Action::Event("SCAN", key), None, None).await
}

pub async fn message(State(state): S, Json(req): Json<EventRequest>) -> Reply {
    let content = req.content.clone().unwrap_or_else(|| "hello".to_owned());
    deliver(&state, req, Action::Text(content), None, None).await
}

enum Action {
    Event(&'static str, Option<String>),
    Text(String),
}

async fn deliver(
    state: &SimState,
    req: EventRequest,
    action: Action,
    subscribe: Option<bool>,
    scene: Option<String>,
) -> Reply {
    let Some(app) = state.apps.get(&req.app_id).cloned() else {
        return Err(bad(StatusCode::NOT_FOUND, format!("no app {}", req.app_id)));
    };
    if app.kind != AppKind::OfficialAccount {
        return Err(bad(
            StatusCode::BAD_REQUEST,
            "events come from official accounts only",
        ));
    }
    let Some(target) = req.target.clone().or_else(|| state.callback_base()) else {
        return Err(bad(
            StatusCode::BAD_REQUEST,
            "no target: pass target or start the simulator with one",
        ));
    };
    let open_id = state.open_id(&app.app_id, &req.person);
    let create_time = req
        .create_time
        .unwrap_or_else(|| chrono::Utc::now().timestamp());
    if let Some(on) = subscribe {
        state.world().follows.insert(
            (app.app_id.clone(), req.person.clone()),
            Follow {
                subscribed: on,
                since: create_time,
                scene,
            },
        );
    }
    let to = format!("gh_{}", &app.app_id[2..14.min(app.app_id.len())]);
    let (plain, msg_id) = match &action {
        Action::Event(event, key) => (
            message::event_xml(&to, &open_id, create_time, event, key.as_deref()),
            None,
        ),
        Action::Text(content) => {
            let id = req.msg_id.unwrap_or_else(|| {
                let mut w = state.world();
                w.next_msg_id += 1;
                w.next_msg_id
            });
            (
                message::text_xml(&to, &open_id, create_time, content, id),
                Some(id),
            )
        }
    };
    let mode = req.mode.unwrap_or(if app.encoding_aes_key.is_some() {
        Mode::Safe
    } else {
        Mode::Plaintext
    });
    let url = format!(
        "{}/wechat/callback/{}",
        target.trim_end_matches('/'),
        app.app_id
    );
    let timeout = Duration::from_millis(req.timeout_ms.unwrap_or(5_000));
    let attempts = req.attempts.unwrap_or(3).clamp(1, 10);
    let mut report = Vec::new();
    let mut last_body = String::new();
    let mut delivered = false;
    for _ in 0..attempts {
        let signed = match sign(&app, &open_id, &plain, mode) {
            Ok(s) => s,
            Err(e) => return Err(bad(StatusCode::BAD_REQUEST, e)),
        };
        let started = Instant::now();
        let sent = state
            .http
            .post(&url)
            .query(&signed.query)
            .header("content-type", "text/xml")
            .body(signed.body)
            .timeout(timeout)
            .send()
            .await;
        let elapsed_ms = started.elapsed().as_millis() as u64;
        match sent {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let body = resp.text().await.unwrap_or_default();
                report.push(json!({ "status": status, "elapsed_ms": elapsed_ms }));
                last_body = body;
                if status == 200 {
                    delivered = true;
                    break;
                }
            }
            Err(e) => {
                report.push(json!({ "error": if e.is_timeout() { "timeout".to_owned() } else { e.without_url().to_string() }, "elapsed_ms": elapsed_ms }));
            }
        }
    }
    let reply = decode_reply(&app, mode, &last_body);
    Ok(Json(json!({
        "delivered": delivered,
        "attempts": report,
        "openid": open_id,
        "unionid": state.union_id(&app.app_id, &req.person),
        "create_time": create_time,
        "msg_id": msg_id,
        "mode": format!("{mode:?}").to_lowercase(),
        "body": last_body,
        "reply": reply,
    })))
}

struct Signed {
    query: Vec<(String, String)>,
    body: String,
}

/// Builds the query string and body of one attempt; every attempt gets a fresh nonce and
/// timestamp, as WeChat's do.
fn sign(app: &SimApp, open_id: &str, plain: &str, mode: Mode) -> Result<Signed, String> {
    let token = app
        .token
        .clone()
        .ok_or("the account has no callback token")?;
    let timestamp = chrono::Utc::now().timestamp().to_string();
    let nonce = rand::rng()
        .random_range(100_000_000u64..999_999_999)
        .to_string();
    let mut query = vec![
        (
            "signature".to_owned(),
            crypto::signature(&token, &timestamp, &nonce),
        ),
        ("timestamp".to_owned(), timestamp.clone()),
        ("nonce".to_owned(), nonce.clone()),
        ("openid".to_owned(), open_id.to_owned()),
    ];
    if mode == Mode::Plaintext {
        return Ok(Signed {
            query,
            body: plain.to_owned(),
        });
    }
    let key = app
        .encoding_aes_key
        .as_deref()
        .ok_or("compatible and safe mode need an EncodingAESKey")?;
    let mc = crypto::MsgCrypt::new(&token, key, &app.app_id).map_err(|e| e.to_string())?;
    let encrypt = mc.encrypt(plain, rand::random());
    query.push(("encrypt_type".to_owned(), "aes".to_owned()));
    query.push((
        "msg_signature".to_owned(),
        crypto::msg_signature(&token, &timestamp, &nonce, &encrypt),
    ));
    let to = message::parse_message(plain)
        .map(|m| m.to_user_name)
        .unwrap_or_default();
    let body = match mode {
        Mode::Safe => message::encrypted_envelope_xml(&to, &encrypt),
        _ => message::compatible_xml(plain, &encrypt),
    };
    Ok(Signed { query, body })
}

/// Verifies and decrypts a safe-mode reply, as WeChat does before showing it to the user.
fn decode_reply(app: &SimApp, mode: Mode, body: &str) -> Value {
    if mode == Mode::Plaintext || body.is_empty() || body == "success" {
        return Value::Null;
    }
    let (Some(token), Some(key)) = (&app.token, &app.encoding_aes_key) else {
        return Value::Null;
    };
    let Ok(mc) = crypto::MsgCrypt::new(token, key, &app.app_id) else {
        return Value::Null;
    };
    let Ok(reply) = message::parse_reply_envelope(body) else {
        return json!({ "error": "reply is not an encrypted envelope" });
    };
    match mc.verify_and_decrypt(
        &reply.msg_signature,
        &reply.timestamp,
        &reply.nonce,
        &reply.encrypt,
    ) {
        Ok(xml) => json!({ "verified": true, "xml": xml }),
        Err(e) => json!({ "verified": false, "error": e.to_string() }),
    }
}
