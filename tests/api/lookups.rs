//! `userById` (merged-away ids included), `identity(appId, openId)` and `Identity.user`:
//! service callers only, from wxunion's own records.

use serde_json::{Value, json};

use crate::helpers::*;

pub(crate) const USER_BY_ID: &str = "query($id: ID!) {
  userById(id: $id) { id unionId identities { appId openId } }
}";

pub(crate) const IDENTITY: &str = "query($appId: String!, $openId: String!) {
  identity(appId: $appId, openId: $openId) {
    appId appKind openId unionId unionIdStatus subscribed
    user { id unionId identities { appId openId } }
  }
}";

impl TestApp {
    pub async fn user_by_id(&self, id: &str, bearer: Option<&str>) -> Value {
        self.graphql(USER_BY_ID, json!({ "id": id }), bearer).await
    }

    pub async fn identity(&self, app_id: &str, open_id: &str, bearer: Option<&str>) -> Value {
        self.graphql(
            IDENTITY,
            json!({ "appId": app_id, "openId": open_id }),
            bearer,
        )
        .await
    }

    /// The identity as a service caller sees it (null when never seen).
    pub async fn identity_as_service(&self, app_id: &str, open_id: &str) -> Value {
        let v = self.identity(app_id, open_id, Some(API_KEY)).await;
        assert!(v["errors"].is_null(), "{v}");
        v["data"]["identity"].clone()
    }
}

/// A follower recorded before its unionid (user/info is slow) while the same person logs in
/// from a mini program: the follower's user is merged into the login user. Returns the
/// login, the id of the follower's user (merged away) and the follower's openid.
pub(crate) async fn merge_a_follower_into_a_login(
    app: &TestApp,
    person: &str,
) -> (Value, String, String) {
    app.sim_post(
        "/sim/faults",
        json!({ "api": "cgi-bin/user/info", "delay_ms": 2500 }),
    )
    .await;
    let report = app
        .sim_post("/sim/follow", json!({ "app_id": OA, "person": person }))
        .await;
    let open_id = report["openid"].as_str().unwrap().to_owned();
    let follower = eventually(10, || async {
        let i = app.identity_as_service(OA, &open_id).await;
        (!i.is_null()).then_some(i)
    })
    .await;
    assert!(follower["unionId"].is_null(), "{follower}");
    assert_eq!(follower["unionIdStatus"], "PENDING", "{follower}");
    let follower_user = follower["user"]["id"].as_str().unwrap().to_owned();
    let login = app.login(MP1, person).await;
    assert_ne!(login["user"]["id"], follower_user.as_str());
    let login_user = login["user"]["id"].as_str().unwrap().to_owned();
    eventually(15, || async {
        let i = app.identity_as_service(OA, &open_id).await;
        (i["user"]["id"] == login_user.as_str()).then_some(())
    })
    .await;
    (login, follower_user, open_id)
}

async fn user_by_id_answers_the_user_and_follows_merges(db: Db) {
    let app = spawn_with(Options {
        db,
        ..Options::default()
    })
    .await;
    let (login, merged_away, _) = merge_a_follower_into_a_login(&app, "kim").await;
    let login_user = login["user"]["id"].as_str().unwrap();

    let v = app.user_by_id(login_user, Some(API_KEY)).await;
    assert!(v["errors"].is_null(), "{v}");
    assert_eq!(v["data"]["userById"]["id"], login_user);
    assert_eq!(v["data"]["userById"]["unionId"], login["user"]["unionId"]);
    assert_eq!(
        v["data"]["userById"]["identities"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // The id merged away keeps working: it answers the user it was merged into.
    let v = app.user_by_id(&merged_away, Some(API_KEY)).await;
    assert!(v["errors"].is_null(), "{v}");
    assert_eq!(v["data"]["userById"]["id"], login_user);

    // Never seen: null. Not an id at all: BAD_REQUEST.
    let v = app
        .user_by_id("01900000-0000-7000-8000-000000000000", Some(API_KEY))
        .await;
    assert!(v["errors"].is_null(), "{v}");
    assert!(v["data"]["userById"].is_null());
    let v = app.user_by_id("not an id", Some(API_KEY)).await;
    assert_eq!(error_code(&v), Some("BAD_REQUEST"));
}

#[tokio::test]
async fn user_by_id_answers_the_user_and_follows_merges_on_postgres() {
    user_by_id_answers_the_user_and_follows_merges(Db::Postgres).await;
}

#[tokio::test]
async fn user_by_id_answers_the_user_and_follows_merges_on_sqlite() {
    user_by_id_answers_the_user_and_follows_merges(Db::Sqlite).await;
}

#[tokio::test]
async fn a_merge_chain_is_followed_and_a_cycle_is_an_internal_error() {
    use sea_orm::ConnectionTrait;
    let app = spawn_app().await;
    let a = app.login(MP1, "ann").await["user"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let b = app.login(MP1, "ben").await["user"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let c = app.login(MP1, "cat").await["user"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let db = app.db().await;
    // Hand-made chain a -> b -> c: a resolves to c.
    db.execute_unprepared(&format!(
        "UPDATE users SET merged_into = '{b}' WHERE id = '{a}'; \
         UPDATE users SET merged_into = '{c}' WHERE id = '{b}'"
    ))
    .await
    .unwrap();
    let v = app.user_by_id(&a, Some(API_KEY)).await;
    assert_eq!(v["data"]["userById"]["id"], c.as_str(), "{v}");
    // A corrupt cycle a -> b -> c -> a ends with INTERNAL, not a hang.
    db.execute_unprepared(&format!(
        "UPDATE users SET merged_into = '{a}' WHERE id = '{c}'"
    ))
    .await
    .unwrap();
    let v = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        app.user_by_id(&a, Some(API_KEY)),
    )
    .await
    .unwrap();
    assert_eq!(error_code(&v), Some("INTERNAL"), "{v}");
}

async fn identity_answers_from_the_records(db: Db) {
    let app = spawn_with(Options {
        db,
        ..Options::default()
    })
    .await;
    let login = app.login(MP1, "alice").await;
    let open_id = login["identity"]["openId"].as_str().unwrap();
    let before = app.sim_counts().await;

    let i = app.identity_as_service(MP1, open_id).await;
    assert_eq!(i["appId"], MP1);
    assert_eq!(i["appKind"], "MINI_PROGRAM");
    assert_eq!(i["openId"], open_id);
    assert_eq!(i["unionId"], login["user"]["unionId"]);
    assert_eq!(i["unionIdStatus"], "KNOWN");
    assert_eq!(i["user"]["id"], login["user"]["id"]);
    assert_eq!(i["user"]["identities"][0]["openId"], open_id);

    // Never seen (in this app, or at all): null, and WeChat is not asked.
    assert!(app.identity_as_service(MP2, open_id).await.is_null());
    assert!(
        app.identity_as_service(OA, "oNeverSeen000000000000000000")
            .await
            .is_null()
    );
    assert_eq!(app.sim_counts().await, before);

    let v = app
        .identity("wx9999999999999999", open_id, Some(API_KEY))
        .await;
    assert_eq!(error_code(&v), Some("UNKNOWN_APP"));
    let v = app.identity(MP1, "bad openid!", Some(API_KEY)).await;
    assert_eq!(error_code(&v), Some("BAD_REQUEST"));
}

#[tokio::test]
async fn identity_answers_from_the_records_on_postgres() {
    identity_answers_from_the_records(Db::Postgres).await;
}

#[tokio::test]
async fn identity_answers_from_the_records_on_sqlite() {
    identity_answers_from_the_records(Db::Sqlite).await;
}

#[tokio::test]
async fn lookups_need_a_service_api_key() {
    let app = spawn_app().await;
    let login = app.login(MP1, "alice").await;
    let session = login["sessionToken"].as_str().unwrap();
    let user_id = login["user"]["id"].as_str().unwrap();
    let open_id = login["identity"]["openId"].as_str().unwrap();
    for (bearer, code) in [
        (Some(session), "FORBIDDEN"),
        (None, "UNAUTHENTICATED"),
        (Some("wxs_not-a-session"), "UNAUTHENTICATED"),
    ] {
        // Even the user's own id: these are service operations.
        let v = app.user_by_id(user_id, bearer).await;
        assert_eq!(error_code(&v), Some(code), "{v}");
        let v = app.identity(MP1, open_id, bearer).await;
        assert_eq!(error_code(&v), Some(code), "{v}");
    }
}

#[tokio::test]
async fn an_end_user_reaches_their_own_user_through_their_identities() {
    let app = spawn_app().await;
    let login = app.login(MP1, "alice").await;
    let v = app
        .graphql(
            "{ me { id identities { appId user { id } } } }",
            json!({}),
            login["sessionToken"].as_str(),
        )
        .await;
    assert!(v["errors"].is_null(), "{v}");
    assert_eq!(
        v["data"]["me"]["identities"][0]["user"]["id"],
        login["user"]["id"]
    );
}
