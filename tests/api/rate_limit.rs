//! `loginWithCode` rate limits: per client address and per app, answered `RATE_LIMITED`
//! before any WeChat call, with the client address taken from `X-Forwarded-For` only behind
//! configured trusted proxies. Each test stops its app's clock, so that all its logins fall in
//! one window whatever the machine's speed.

use serde_json::{Value, json};

use crate::helpers::*;

/// A `loginWithCode` over HTTP from this machine (127.0.0.1), with `X-Forwarded-For` if given.
async fn login_via(app: &TestApp, code: &str, forwarded_for: Option<&str>) -> Value {
    let mut req = app
        .http
        .post(app.url("/graphql"))
        .json(&json!({ "query": LOGIN, "variables": { "appId": MP1, "code": code } }));
    if let Some(xff) = forwarded_for {
        req = req.header("x-forwarded-for", xff);
    }
    req.send().await.unwrap().json().await.unwrap()
}

async fn jscode2session_calls(app: &TestApp) -> u64 {
    app.sim_counts().await["sns/jscode2session"]
        .as_u64()
        .unwrap_or(0)
}

fn codes(answers: &[Value]) -> Vec<&str> {
    answers
        .iter()
        .map(|v| error_code(v).unwrap_or("none"))
        .collect()
}

#[tokio::test]
async fn two_hundred_made_up_codes_from_one_address_cost_wechat_at_most_the_limit() {
    // The defaults: 60 a minute per client address, 1 000 a second per app.
    let app = spawn_app().await;
    app.clock.freeze();
    let mut answers = Vec::new();
    for i in 0..200 {
        answers.push(login_via(&app, &format!("made-up-{i}"), None).await);
    }
    let codes = codes(&answers);
    // The first 60 reach WeChat (which says the code is invalid); every later one is refused.
    assert!(
        codes[..60].iter().all(|c| *c == "INVALID_CODE"),
        "{codes:?}"
    );
    assert!(
        codes[60..].iter().all(|c| *c == "RATE_LIMITED"),
        "{codes:?}"
    );
    assert_eq!(jscode2session_calls(&app).await, 60);
    // A real code is refused too while the minute lasts, and is not spent: it works after.
    let code = app.mint_code(MP1, "amy").await;
    assert_eq!(
        error_code(&login_via(&app, &code, None).await),
        Some("RATE_LIMITED")
    );
    app.clock.advance(chrono::Duration::seconds(60));
    let v = login_via(&app, &code, None).await;
    assert!(v["errors"].is_null(), "{v}");
    assert_eq!(jscode2session_calls(&app).await, 61);
}

#[tokio::test]
async fn the_per_app_limit_holds_across_client_addresses_behind_a_trusted_proxy() {
    let app = spawn_with(Options {
        extra:
            "login_rate_per_client = 60\nlogin_rate_per_app = 10\ntrusted_proxies = [\"127.0.0.1\"]"
                .into(),
        ..Options::default()
    })
    .await;
    app.clock.freeze();
    let calls = (0..30).map(|i| {
        let client = if i % 2 == 0 {
            "198.51.100.1"
        } else {
            "198.51.100.2"
        };
        let app = &app;
        async move { login_via(app, &format!("made-up-{i}"), Some(client)).await }
    });
    let answers = futures::future::join_all(calls).await;
    let codes = codes(&answers);
    let limited = codes.iter().filter(|c| **c == "RATE_LIMITED").count();
    assert_eq!(limited, 20, "{codes:?}");
    assert_eq!(jscode2session_calls(&app).await, 10);
    // The next second, the app may log people in again.
    app.clock.advance(chrono::Duration::seconds(1));
    let code = app.mint_code(MP1, "bea").await;
    let v = login_via(&app, &code, Some("198.51.100.3")).await;
    assert!(v["errors"].is_null(), "{v}");
}

#[tokio::test]
async fn a_forwarded_for_header_from_an_untrusted_peer_cannot_dodge_the_limit() {
    // No trusted proxies (the default): the peer, 127.0.0.1, is the client.
    let app = spawn_with(Options {
        extra: "login_rate_per_client = 5".into(),
        ..Options::default()
    })
    .await;
    app.clock.freeze();
    let mut answers = Vec::new();
    for i in 0..10 {
        let spoofed = format!("203.0.113.{i}");
        answers.push(login_via(&app, &format!("made-up-{i}"), Some(&spoofed)).await);
    }
    let codes = codes(&answers);
    assert_eq!(codes[..5], ["INVALID_CODE"; 5], "{codes:?}");
    assert_eq!(codes[5..], ["RATE_LIMITED"; 5], "{codes:?}");
    assert_eq!(jscode2session_calls(&app).await, 5);
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_forwarded_address_is_the_client() {
    let app = spawn_with(Options {
        extra: "login_rate_per_client = 3\ntrusted_proxies = [\"127.0.0.1\", \"10.0.0.0/8\"]"
            .into(),
        ..Options::default()
    })
    .await;
    app.clock.freeze();
    let a = "198.51.100.7";
    for i in 0..3 {
        let v = login_via(&app, &format!("made-up-a{i}"), Some(a)).await;
        assert_eq!(error_code(&v), Some("INVALID_CODE"), "{v}");
    }
    // The same client through a second trusted hop, or writing another address in front of
    // its own (the proxy appends the real one): still the same client, refused.
    for xff in [
        format!("{a}, 10.1.2.3"),
        format!("203.0.113.99, {a}"),
        a.to_owned(),
    ] {
        let v = login_via(&app, "made-up-again", Some(&xff)).await;
        assert_eq!(error_code(&v), Some("RATE_LIMITED"), "{xff}: {v}");
    }
    // Another client behind the same proxy is counted on its own.
    let code = app.mint_code(MP1, "cyd").await;
    let v = login_via(&app, &code, Some("198.51.100.8")).await;
    assert!(v["errors"].is_null(), "{v}");
    assert_eq!(jscode2session_calls(&app).await, 4);
}

#[tokio::test]
async fn limits_set_to_zero_count_nothing() {
    let app = spawn_with(Options {
        extra: "login_rate_per_client = 0\nlogin_rate_per_app = 0".into(),
        ..Options::default()
    })
    .await;
    app.clock.freeze();
    for i in 0..70 {
        let v = login_via(&app, &format!("made-up-{i}"), None).await;
        assert_eq!(error_code(&v), Some("INVALID_CODE"), "{v}");
    }
    assert_eq!(jscode2session_calls(&app).await, 70);
    let client = redis::Client::open("redis://127.0.0.1:6379").unwrap();
    let mut redis = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}login-rate:*", app.redis_prefix))
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(keys.is_empty(), "{keys:?}");
}
