//! The simulated `api.weixin.qq.com` endpoints, answering with WeChat's shapes and errcodes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::state::{CLASSIC_OVERLAP, CODE_LIFETIME, SimState};

type Q = Query<HashMap<String, String>>;
type S = State<Arc<SimState>>;

pub fn routes() -> Router<Arc<SimState>> {
    Router::new()
        .route("/sns/jscode2session", get(jscode2session))
        .route("/sns/oauth2/access_token", get(oauth2_access_token))
        .route("/cgi-bin/token", get(classic_token))
        .route("/cgi-bin/stable_token", post(stable_token))
        .route("/cgi-bin/user/info", get(user_info))
        .route("/cgi-bin/user/info/batchget", post(user_info_batchget))
        .route("/cgi-bin/user/get", get(user_get))
        .route(
            "/wxa/business/getuserphonenumber",
            post(get_user_phone_number),
        )
}

fn err(errcode: i64, errmsg: &str) -> Json<Value> {
    Json(json!({ "errcode": errcode, "errmsg": format!("{errmsg} rid: sim") }))
}

/// Counts the call and plays any queued fault: sleeps its delay, waits for a release if it
/// holds, then answers its errcode.
async fn fault(state: &SimState, api: &str) -> Option<Json<Value>> {
    let f = state.enter(api)?;
    if f.delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(f.delay_ms)).await;
    }
    if f.hold {
        state.hold().await;
    }
    f.errcode
        .map(|c| err(c, f.errmsg.as_deref().unwrap_or("injected fault")))
}

fn param<'a>(q: &'a HashMap<String, String>, k: &str) -> &'a str {
    q.get(k).map(String::as_str).unwrap_or_default()
}

/// Checks appid and secret as WeChat does (40013 unknown appid, 40125 wrong secret).
fn check_app(state: &SimState, app_id: &str, secret: &str) -> Result<(), Json<Value>> {
    match state.apps.get(app_id) {
        None => Err(err(40013, "invalid appid")),
        Some(a) if a.secret != secret => Err(err(40125, "invalid appsecret")),
        Some(_) => Ok(()),
    }
}

/// Consumes a login code: 40029 unknown or expired or for another app, 40163 already used.
fn take_code(state: &SimState, app_id: &str, code: &str) -> Result<String, Json<Value>> {
    let mut w = state.world();
    match w.codes.get_mut(code) {
        Some(c) if c.app_id == app_id && c.issued.elapsed() < CODE_LIFETIME => {
            if c.used {
                return Err(err(40163, "code been used"));
            }
            c.used = true;
            Ok(c.person.clone())
        }
        _ => Err(err(40029, "invalid code")),
    }
}

async fn jscode2session(State(state): S, Query(q): Q) -> Json<Value> {
    if let Some(r) = fault(&state, "sns/jscode2session").await {
        return r;
    }
    let app_id = param(&q, "appid");
    if let Err(r) = check_app(&state, app_id, param(&q, "secret")) {
        return r;
    }
    if param(&q, "grant_type") != "authorization_code" {
        return err(40002, "invalid grant_type");
    }
    let person = match take_code(&state, app_id, param(&q, "js_code")) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let key = session_key(app_id, &person);
    state.world().session_keys.push(key.clone());
    let mut body = json!({
        "openid": state.open_id(app_id, &person),
        "session_key": key,
    });
    if let Some(u) = state.union_id(app_id, &person) {
        body["unionid"] = Value::String(u);
    }
    Json(body)
}

fn session_key(app_id: &str, person: &str) -> String {
    use base64::Engine;
    use sha2::Digest;
    let d = sha2::Sha256::digest(format!(
        "session_key|{app_id}|{person}|{}",
        rand::random::<u64>()
    ));
    base64::engine::general_purpose::STANDARD.encode(&d[..16])
}

async fn oauth2_access_token(State(state): S, Query(q): Q) -> Json<Value> {
    if let Some(r) = fault(&state, "sns/oauth2/access_token").await {
        return r;
    }
    let app_id = param(&q, "appid");
    if let Err(r) = check_app(&state, app_id, param(&q, "secret")) {
        return r;
    }
    let person = match take_code(&state, app_id, param(&q, "code")) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let token = {
        let mut w = state.world();
        SimState::issue_token(&mut w, app_id, false)
    };
    let mut body = json!({
        "access_token": token,
        "expires_in": 7200,
        "refresh_token": format!("refresh-{token}"),
        "openid": state.open_id(app_id, &person),
        "scope": "snsapi_base",
        "is_snapshotuser": 0,
    });
    if let Some(u) = state.union_id(app_id, &person) {
        body["unionid"] = Value::String(u);
    }
    Json(body)
}

/// `cgi-bin/token`: every call issues a new token; the previous ones keep working for five
/// minutes, then stop.
async fn classic_token(State(state): S, Query(q): Q) -> Json<Value> {
    if let Some(r) = fault(&state, "cgi-bin/token").await {
        return r;
    }
    let app_id = param(&q, "appid");
    if param(&q, "grant_type") != "client_credential" {
        return err(40002, "invalid grant_type");
    }
    if let Err(r) = check_app(&state, app_id, param(&q, "secret")) {
        return r;
    }
    let mut w = state.world();
    let cutoff = Instant::now() + CLASSIC_OVERLAP;
    for t in w.tokens.values_mut() {
        if t.app_id == app_id && !t.stable && t.expires > cutoff {
            t.expires = cutoff;
        }
    }
    let token = SimState::issue_token(&mut w, app_id, false);
    Json(json!({ "access_token": token, "expires_in": 7200 }))
}

#[derive(Deserialize)]
struct StableTokenRequest {
    #[serde(default)]
    grant_type: String,
    #[serde(default)]
    appid: String,
    #[serde(default)]
    secret: String,
    #[serde(default)]
    force_refresh: bool,
}

/// `cgi-bin/stable_token`: the normal mode returns the current token while it has more than
/// five minutes left; force_refresh replaces it (the old one stops at once), at most 20 times
/// a day and not twice within 30 seconds (the second call then returns the current token).
async fn stable_token(State(state): S, body: axum::body::Bytes) -> Json<Value> {
    if let Some(r) = fault(&state, "cgi-bin/stable_token").await {
        return r;
    }
    let Ok(req) = serde_json::from_slice::<StableTokenRequest>(&body) else {
        return err(47001, "data format error");
    };
    if req.grant_type != "client_credential" {
        return err(40002, "invalid grant_type");
    }
    if let Err(r) = check_app(&state, &req.appid, &req.secret) {
        return r;
    }
    let mut w = state.world();
    let now = Instant::now();
    let current = w.stable.get(&req.appid).cloned().and_then(|(t, forced)| {
        let expires = w.tokens.get(&t)?.expires;
        Some((t, forced, expires))
    });
    if let Some((token, forced, expires)) = &current {
        let recently_forced =
            forced.is_some_and(|f| now.duration_since(f) < Duration::from_secs(30));
        let keep = if req.force_refresh {
            recently_forced
        } else {
            expires.saturating_duration_since(now) > CLASSIC_OVERLAP
        };
        if keep {
            return Json(json!({
                "access_token": token,
                "expires_in": expires.saturating_duration_since(now).as_secs(),
            }));
        }
    }
    if req.force_refresh {
        let n = w.forced_today.entry(req.appid.clone()).or_default();
        if *n >= 20 {
            return err(45009, "reach max api daily quota limit");
        }
        *n += 1;
        if let Some((old, _, _)) = &current {
            w.tokens.remove(old);
        }
    }
    let token = SimState::issue_token(&mut w, &req.appid, true);
    let forced = req.force_refresh.then_some(now);
    w.stable.insert(req.appid.clone(), (token.clone(), forced));
    Json(json!({ "access_token": token, "expires_in": 7200 }))
}

fn user_json(state: &SimState, app_id: &str, open_id: &str) -> Result<Value, Json<Value>> {
    let w = state.world();
    let Some(person) = w
        .people_by_openid
        .get(&(app_id.to_owned(), open_id.to_owned()))
        .cloned()
    else {
        return Err(err(40003, "invalid openid"));
    };
    let follow = w.follows.get(&(app_id.to_owned(), person.clone())).cloned();
    drop(w);
    let mut v = match follow.filter(|f| f.subscribed) {
        Some(f) => json!({
            "subscribe": 1,
            "openid": open_id,
            "language": "zh_CN",
            "subscribe_time": f.since,
            "remark": "",
            "groupid": 0,
            "tagid_list": [],
            "subscribe_scene": if f.scene.is_some() { "ADD_SCENE_QR_CODE" } else { "ADD_SCENE_SEARCH" },
            "qr_scene": 0,
            "qr_scene_str": f.scene.unwrap_or_default(),
        }),
        None => json!({ "subscribe": 0, "openid": open_id }),
    };
    if let Some(u) = state.union_id(app_id, &person) {
        v["unionid"] = Value::String(u);
    }
    Ok(v)
}

async fn user_info(State(state): S, Query(q): Q) -> Json<Value> {
    if let Some(r) = fault(&state, "cgi-bin/user/info").await {
        return r;
    }
    let app_id = match state.check_token(param(&q, "access_token")) {
        Ok(a) => a,
        Err((c, m)) => return err(c, m),
    };
    match user_json(&state, &app_id, param(&q, "openid")) {
        Ok(v) => Json(v),
        Err(r) => r,
    }
}

#[derive(Deserialize)]
struct BatchGet {
    user_list: Vec<BatchItem>,
}

#[derive(Deserialize)]
struct BatchItem {
    openid: String,
}

async fn user_info_batchget(State(state): S, Query(q): Q, body: axum::body::Bytes) -> Json<Value> {
    if let Some(r) = fault(&state, "cgi-bin/user/info/batchget").await {
        return r;
    }
    let app_id = match state.check_token(param(&q, "access_token")) {
        Ok(a) => a,
        Err((c, m)) => return err(c, m),
    };
    let Ok(req) = serde_json::from_slice::<BatchGet>(&body) else {
        return err(47001, "data format error");
    };
    if req.user_list.len() > 100 {
        return err(45034, "user list size exceeds limit");
    }
    let mut list = Vec::new();
    for item in &req.user_list {
        match user_json(&state, &app_id, &item.openid) {
            Ok(v) => list.push(v),
            Err(r) => return r,
        }
    }
    Json(json!({ "user_info_list": list }))
}

/// `cgi-bin/user/get`: followers in pages of up to 10 000, continued from `next_openid`.
async fn user_get(State(state): S, Query(q): Q) -> Json<Value> {
    if let Some(r) = fault(&state, "cgi-bin/user/get").await {
        return r;
    }
    let app_id = match state.check_token(param(&q, "access_token")) {
        Ok(a) => a,
        Err((c, m)) => return err(c, m),
    };
    let mut followers: Vec<String> = {
        let w = state.world();
        w.follows
            .iter()
            .filter(|((a, _), f)| *a == app_id && f.subscribed)
            .map(|((_, person), _)| person.clone())
            .collect()
    };
    followers.sort();
    let mut openids: Vec<String> = followers
        .iter()
        .map(|p| state.open_id(&app_id, p))
        .collect();
    openids.sort();
    let total = openids.len();
    let next = param(&q, "next_openid");
    let start = if next.is_empty() {
        0
    } else {
        openids
            .iter()
            .position(|o| o.as_str() > next)
            .unwrap_or(total)
    };
    let page: Vec<String> = openids.into_iter().skip(start).take(10_000).collect();
    let next_openid = page.last().cloned().unwrap_or_default();
    let mut body = json!({ "total": total, "count": page.len(), "next_openid": next_openid });
    if !page.is_empty() {
        body["data"] = json!({ "openid": page });
    }
    Json(body)
}

/// A number as minted: mainland digits (`13800138000`, country code 86) or
/// `+<country code> <digits>`. Returns (country code, pure number).
pub fn split_phone(phone: &str) -> Option<(String, String)> {
    let digits = |s: &str| !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit());
    match phone.strip_prefix('+') {
        Some(rest) => {
            let (cc, pure) = rest.split_once(' ')?;
            (digits(cc) && cc.len() <= 4 && digits(pure)).then(|| (cc.to_owned(), pure.to_owned()))
        }
        None => digits(phone).then(|| ("86".to_owned(), phone.to_owned())),
    }
}

#[derive(Deserialize)]
struct PhoneCodeRequest {
    #[serde(default)]
    code: String,
}

/// `wxa/business/getuserphonenumber`: a phone code → the number. As WeChat documents it, a
/// code is single use and lives five minutes; every invalid code (unknown, expired, already
/// used, minted for another app) answers 40029 "invalid code" (WeChat documents no 40163 for
/// this API).
async fn get_user_phone_number(
    State(state): S,
    Query(q): Q,
    body: axum::body::Bytes,
) -> Json<Value> {
    if let Some(r) = fault(&state, "wxa/business/getuserphonenumber").await {
        return r;
    }
    let app_id = match state.check_token(param(&q, "access_token")) {
        Ok(a) => a,
        Err((c, m)) => return err(c, m),
    };
    let Ok(req) = serde_json::from_slice::<PhoneCodeRequest>(&body) else {
        return err(47001, "data format error");
    };
    let phone = {
        let mut w = state.world();
        match w.phone_codes.get_mut(&req.code) {
            Some(c) if c.app_id == app_id && !c.used && c.issued.elapsed() < CODE_LIFETIME => {
                c.used = true;
                c.phone.clone()
            }
            _ => return err(40029, "invalid code"),
        }
    };
    let Some((country_code, pure)) = split_phone(&phone) else {
        return err(-1, "system error");
    };
    let phone_number = if country_code == "86" {
        pure.clone()
    } else {
        format!("+{country_code} {pure}")
    };
    Json(json!({
        "errcode": 0,
        "errmsg": "ok",
        "phone_info": {
            "phoneNumber": phone_number,
            "purePhoneNumber": pure,
            "countryCode": country_code,
            "watermark": {
                "timestamp": chrono::Utc::now().timestamp(),
                "appid": app_id,
            },
        },
    }))
}
