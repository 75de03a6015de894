//! The simulator's control API: what a test, a benchmark or a person in sandbox mode uses to
//! play the part of WeChat users and of WeChat's bad days. Documented in the README.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::push;
use super::state::{Fault, SimState};

type S = State<Arc<SimState>>;
type Reply = Result<Json<Value>, (StatusCode, Json<Value>)>;

pub fn routes() -> Router<Arc<SimState>> {
    Router::new()
        .route("/sim", get(help))
        .route("/sim/code", post(code))
        .route("/sim/codes", post(codes))
        .route("/sim/phone", post(phone))
        .route("/sim/people/{person}", get(person))
        .route("/sim/faults", post(add_fault))
        .route("/sim/release", post(release))
        .route("/sim/tokens/invalidate", post(invalidate))
        .route("/sim/counts", get(counts))
        .route("/sim/reset", post(reset))
        .route("/sim/followers", post(followers))
        .route("/sim/follow", post(push::follow))
        .route("/sim/unfollow", post(push::unfollow))
        .route("/sim/scan", post(push::scan))
        .route("/sim/message", post(push::message))
}

/// A 4xx with a JSON reason, for control calls that make no sense.
pub fn bad(status: StatusCode, reason: impl Into<String>) -> (StatusCode, Json<Value>) {
    (status, Json(json!({ "error": reason.into() })))
}

async fn help(State(state): S) -> Json<Value> {
    let mut apps: Vec<_> = state.apps.values().collect();
    apps.sort_by(|a, b| a.app_id.cmp(&b.app_id));
    let apps: Vec<Value> = apps
        .into_iter()
        .map(|a| json!({ "app_id": a.app_id, "kind": a.kind.as_str(), "open_platform": a.open_platform }))
        .collect();
    Json(json!({
        "apps": apps,
        "control": [
            "POST /sim/code {app_id, person} -> {code, openid, unionid}",
            "POST /sim/codes {app_id, people: [person, ...]} -> {codes: [code, ...]} (at most 100000)",
            "POST /sim/phone {app_id, person, phone?} -> {code, phone_number}",
            "GET  /sim/people/{person}",
            "POST /sim/followers {app_id, count} -> {followers}: people follower-1..count follow the account (no events)",
            "POST /sim/faults {api, errcode?, errmsg?, delay_ms?, hold?, times?}",
            "POST /sim/release -> {released}",
            "POST /sim/tokens/invalidate {app_id}",
            "GET  /sim/counts",
            "POST /sim/reset",
            "POST /sim/follow|unfollow|scan|message {app_id, person, scene?, content?, mode?, target?}",
        ]
    }))
}

#[derive(Deserialize)]
struct CodeRequest {
    app_id: String,
    person: String,
}

/// A control call names an app the simulator has and a person of 1 to 64 characters.
fn known_app_and_person(
    state: &SimState,
    app_id: &str,
    person: &str,
) -> Result<(), (StatusCode, Json<Value>)> {
    if !state.apps.contains_key(app_id) {
        return Err(bad(StatusCode::NOT_FOUND, format!("no app {app_id}")));
    }
    if person.is_empty() || person.len() > 64 {
        return Err(bad(
            StatusCode::BAD_REQUEST,
            "person must be 1 to 64 characters",
        ));
    }
    Ok(())
}

/// Mints a login code, as `wx.login` (or an OAuth redirect) would hand one to the front end.
async fn code(State(state): S, Json(req): Json<CodeRequest>) -> Reply {
    known_app_and_person(&state, &req.app_id, &req.person)?;
    let code = state.mint_code(&req.app_id, &req.person);
    Ok(Json(json!({
        "code": code,
        "openid": state.open_id(&req.app_id, &req.person),
        "unionid": state.union_id(&req.app_id, &req.person),
    })))
}

#[derive(Deserialize)]
struct CodesRequest {
    app_id: String,
    people: Vec<String>,
}

/// The most codes one `/sim/codes` call mints.
const MAX_CODES: usize = 100_000;

/// Mints one login code per person named, in order: what a benchmark needs by the ten
/// thousand, in one call.
async fn codes(State(state): S, Json(req): Json<CodesRequest>) -> Reply {
    if req.people.len() > MAX_CODES {
        return Err(bad(
            StatusCode::BAD_REQUEST,
            format!("at most {MAX_CODES} people per call"),
        ));
    }
    for person in &req.people {
        known_app_and_person(&state, &req.app_id, person)?;
    }
    let codes: Vec<String> = req
        .people
        .iter()
        .map(|person| state.mint_code(&req.app_id, person))
        .collect();
    Ok(Json(json!({ "codes": codes })))
}

#[derive(Deserialize)]
struct PhoneRequest {
    app_id: String,
    person: String,
    #[serde(default)]
    phone: Option<String>,
}

/// Mints a phone code, as `<button open-type="getPhoneNumber">` hands one to a mini program
/// when the person agrees to share their number. Without `phone`, the person's stable default
/// number (`138` + eight digits derived from the name). `phone` is mainland digits
/// (`13800138000`) or `+<country code> <digits>`.
async fn phone(State(state): S, Json(req): Json<PhoneRequest>) -> Reply {
    known_app_and_person(&state, &req.app_id, &req.person)?;
    if let Some(p) = &req.phone
        && super::api::split_phone(p).is_none()
    {
        return Err(bad(
            StatusCode::BAD_REQUEST,
            "phone must be digits, or +<country code> <digits>",
        ));
    }
    let (code, phone_number) =
        state.mint_phone_code(&req.app_id, &req.person, req.phone.as_deref());
    Ok(Json(json!({ "code": code, "phone_number": phone_number })))
}

async fn person(State(state): S, Path(person): Path<String>) -> Json<Value> {
    let mut apps = BTreeMap::new();
    for app_id in state.apps.keys() {
        let subscribed = state
            .world()
            .follows
            .get(&(app_id.clone(), person.clone()))
            .map(|f| f.subscribed);
        apps.insert(
            app_id.clone(),
            json!({
                "openid": state.open_id(app_id, &person),
                "unionid": state.union_id(app_id, &person),
                "subscribed": subscribed,
            }),
        );
    }
    Json(json!({ "person": person, "apps": apps }))
}

#[derive(Deserialize)]
struct FaultRequest {
    api: String,
    #[serde(flatten)]
    fault: Fault,
}

/// Queues a fault for the next `times` calls of one API (for example `cgi-bin/user/info`).
async fn add_fault(State(state): S, Json(req): Json<FaultRequest>) -> Json<Value> {
    let api = req.api.trim_start_matches('/').to_owned();
    state
        .world()
        .faults
        .entry(api.clone())
        .or_default()
        .push_back(req.fault);
    Json(json!({ "queued": api }))
}

/// Lets the calls held by `hold` faults answer.
async fn release(State(state): S) -> Json<Value> {
    Json(json!({ "released": state.release() }))
}

#[derive(Deserialize)]
struct FollowersRequest {
    app_id: String,
    count: u32,
}

/// Makes the people `follower-1` to `follower-{count}` follow an official account at once,
/// without posting events (the followers an account had before wxunion): what a follower
/// sync is tested and measured against. Answers how many follow the account now.
async fn followers(State(state): S, Json(req): Json<FollowersRequest>) -> Reply {
    if state
        .apps
        .get(&req.app_id)
        .is_none_or(|a| a.kind != crate::domain::AppKind::OfficialAccount)
    {
        return Err(bad(StatusCode::NOT_FOUND, "no such official account"));
    }
    let since = chrono::Utc::now().timestamp();
    for i in 1..=req.count {
        let person = format!("follower-{i}");
        state.open_id(&req.app_id, &person);
        state.world().follows.insert(
            (req.app_id.clone(), person),
            super::state::Follow {
                subscribed: true,
                since,
                scene: None,
            },
        );
    }
    let w = state.world();
    let n = w
        .follows
        .iter()
        .filter(|((a, _), f)| *a == req.app_id && f.subscribed)
        .count();
    Ok(Json(json!({ "followers": n })))
}

#[derive(Deserialize)]
struct AppRequest {
    app_id: String,
}

async fn invalidate(State(state): S, Json(req): Json<AppRequest>) -> Json<Value> {
    Json(json!({ "invalidated": state.invalidate_tokens(&req.app_id) }))
}

/// Calls per API since start (or the last reset): how tests prove "exactly one token fetch".
async fn counts(State(state): S) -> Json<Value> {
    let counts: BTreeMap<String, u64> = state.world().counts.clone().into_iter().collect();
    Json(json!(counts))
}

async fn reset(State(state): S) -> Json<Value> {
    let mut w = state.world();
    w.counts.clear();
    w.faults.clear();
    Json(json!({ "reset": true }))
}
