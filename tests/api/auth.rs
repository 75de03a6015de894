//! Who may call what: API keys, session tokens, expiry.

use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn user_needs_a_service_api_key() {
    let app = spawn_app().await;
    let login = app.login(MP1, "alice").await;
    let union_id = login["user"]["unionId"].as_str().unwrap();
    let session = login["sessionToken"].as_str().unwrap();

    let v = app.user(union_id, None).await;
    assert_eq!(error_code(&v), Some("UNAUTHENTICATED"));
    let v = app.user(union_id, Some("not-a-real-token")).await;
    assert_eq!(error_code(&v), Some("UNAUTHENTICATED"));
    let v = app.user(union_id, Some(session)).await;
    assert_eq!(error_code(&v), Some("FORBIDDEN"));

    let v = app.user(union_id, Some(API_KEY)).await;
    assert!(v["errors"].is_null(), "{v}");
    assert_eq!(v["data"]["user"]["id"], login["user"]["id"]);
    assert_eq!(v["data"]["user"]["identities"][0]["appId"], MP1);
    assert_eq!(
        v["data"]["user"]["identities"][0]["appKind"],
        "MINI_PROGRAM"
    );
}

#[tokio::test]
async fn user_is_null_for_an_unknown_unionid() {
    let app = spawn_app().await;
    let v = app
        .user("oUnknownUnionId0000000000000", Some(API_KEY))
        .await;
    assert!(v["errors"].is_null(), "{v}");
    assert!(v["data"]["user"].is_null());
    let v = app.user("bad union id", Some(API_KEY)).await;
    assert_eq!(error_code(&v), Some("BAD_REQUEST"));
}

#[tokio::test]
async fn me_returns_the_user_behind_the_session() {
    let app = spawn_app().await;
    let login = app.login(MP1, "bob").await;
    app.login(MP2, "bob").await;
    let v = app
        .graphql(ME, json!({}), login["sessionToken"].as_str())
        .await;
    assert!(v["errors"].is_null(), "{v}");
    assert_eq!(v["data"]["me"]["id"], login["user"]["id"]);
    assert_eq!(v["data"]["me"]["identities"].as_array().unwrap().len(), 2);
    let v = app.graphql(ME, json!({}), None).await;
    assert_eq!(error_code(&v), Some("UNAUTHENTICATED"));
}

#[tokio::test]
async fn an_expired_session_is_unauthenticated() {
    let app = spawn_with(Options {
        extra: "session_ttl_seconds = 3600".into(),
        ..Options::default()
    })
    .await;
    let login = app.login(MP1, "carol").await;
    let token = login["sessionToken"].as_str().unwrap();
    assert!(app.graphql(ME, json!({}), Some(token)).await["errors"].is_null());
    app.clock.advance(chrono::Duration::seconds(3599));
    assert!(app.graphql(ME, json!({}), Some(token)).await["errors"].is_null());
    app.clock.advance(chrono::Duration::seconds(2));
    let v = app.graphql(ME, json!({}), Some(token)).await;
    assert_eq!(error_code(&v), Some("UNAUTHENTICATED"));
}

#[tokio::test]
async fn session_tokens_are_stored_hashed() {
    let app = spawn_app().await;
    let login = app.login(MP1, "dora").await;
    let token = login["sessionToken"].as_str().unwrap();
    let hash = wxunion::config::sha256_hex(token);
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) FROM sessions WHERE token_hash = '{hash}'"
        ))
        .await,
        1
    );
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) FROM sessions WHERE token_hash = '{token}'"
        ))
        .await,
        0
    );
}

#[tokio::test]
async fn cors_allows_only_configured_origins() {
    let app = spawn_with(Options {
        extra: "cors_allowed_origins = [\"https://m.example.com\"]".into(),
        ..Options::default()
    })
    .await;
    let preflight = |origin: &'static str| {
        app.http
            .request(reqwest::Method::OPTIONS, app.url("/graphql"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .send()
    };
    let ok = preflight("https://m.example.com").await.unwrap();
    assert_eq!(
        ok.headers()["access-control-allow-origin"],
        "https://m.example.com"
    );
    let denied = preflight("https://evil.example.com").await.unwrap();
    assert!(
        denied
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
}
