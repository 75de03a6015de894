//! `resolveOpenId`: official-account openid → unionid via `cgi-bin/user/info`.

use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn resolve_links_a_follower_to_the_user_of_its_unionid() {
    let app = spawn_app().await;
    let login = app.login(MP1, "alice").await;
    let open_id = app.sim.state.open_id(OA, "alice");
    let v = app.resolve(OA, &open_id, Some(API_KEY)).await;
    assert!(v["errors"].is_null(), "{v}");
    let r = &v["data"]["resolveOpenId"];
    assert_eq!(r["user"]["id"], login["user"]["id"]);
    assert_eq!(r["identity"]["unionId"], login["user"]["unionId"]);
    assert_eq!(r["identity"]["appKind"], "OFFICIAL_ACCOUNT");
    assert_eq!(r["identity"]["subscribed"], false);
    assert_eq!(r["user"]["identities"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn an_account_without_open_platform_keeps_the_identity_without_unionid() {
    let app = spawn_app().await;
    let open_id = app.sim.state.open_id(OA_UNBOUND, "bob");
    let v = app.resolve(OA_UNBOUND, &open_id, Some(API_KEY)).await;
    assert!(v["errors"].is_null(), "{v}");
    assert!(v["data"]["resolveOpenId"]["identity"]["unionId"].is_null());
    assert!(v["data"]["resolveOpenId"]["user"]["unionId"].is_null());
    assert_eq!(
        v["data"]["resolveOpenId"]["identity"]["openId"],
        open_id.as_str()
    );
}

#[tokio::test]
async fn an_unknown_openid_is_bad_request_with_errcode_40003() {
    let app = spawn_app().await;
    let v = app
        .resolve(OA, "oNobodyHasThisOpenId00000000", Some(API_KEY))
        .await;
    assert_eq!(error_code(&v), Some("BAD_REQUEST"));
    assert_eq!(v["errors"][0]["extensions"]["wechatErrcode"], 40003);
    assert_eq!(app.count("SELECT COUNT(*) FROM identities").await, 0);
}

#[tokio::test]
async fn resolve_is_for_service_callers_only() {
    let app = spawn_app().await;
    let login = app.login(MP1, "carl").await;
    let open_id = app.sim.state.open_id(OA, "carl");
    assert_eq!(
        error_code(&app.resolve(OA, &open_id, None).await),
        Some("UNAUTHENTICATED")
    );
    assert_eq!(
        error_code(
            &app.resolve(OA, &open_id, login["sessionToken"].as_str())
                .await
        ),
        Some("FORBIDDEN")
    );
    assert_eq!(
        error_code(&app.resolve(MP1, &open_id, Some(API_KEY)).await),
        Some("UNKNOWN_APP")
    );
    assert_eq!(
        error_code(&app.resolve(OA, "bad openid!", Some(API_KEY)).await),
        Some("BAD_REQUEST")
    );
    assert_eq!(app.sim_counts().await.get("cgi-bin/user/info"), None);
}

#[tokio::test]
async fn sync_followers_backfills_every_follower() {
    let app = spawn_app().await;
    for person in ["p1", "p2", "p3"] {
        app.sim.state.open_id(OA, person);
        app.sim.state.world().follows.insert(
            (OA.to_owned(), person.to_owned()),
            wxunion::sim::Follow {
                subscribed: true,
                since: 1,
                scene: None,
            },
        );
    }
    app.login(MP1, "p2").await;
    let service = app.service().await;
    let app_id = wxunion::domain::AppId::parse(OA).unwrap();
    let sync = wxunion::identity::sync::start(&service, &app_id)
        .await
        .unwrap();
    let done = wxunion::identity::sync::run(
        &service,
        sync.id,
        "test",
        wxunion::identity::sync::Backoff::default(),
        |_| {},
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(done.followers_seen, 3);
    assert_eq!(done.linked, 3);
    assert_eq!(app.count("SELECT COUNT(*) FROM identities").await, 4);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM users WHERE merged_into IS NULL")
            .await,
        3
    );
    let _ = json!({});
}
