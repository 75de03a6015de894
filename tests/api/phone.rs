//! `bindPhoneNumber` and `User.phoneNumber`: a phone code from a mini program, exchanged with
//! the app's shared access token, bound to the session's user with PHONE_BOUND.

use serde_json::{Value, json};

use crate::helpers::*;

const BIND: &str = "mutation($code: String!) {
  bindPhoneNumber(code: $code) { id phoneNumber { phoneNumber purePhoneNumber countryCode boundAt } }
}";

const MY_PHONE: &str =
    "{ me { id phoneNumber { phoneNumber purePhoneNumber countryCode boundAt } } }";

const PHONE_BY_ID: &str = "query($id: ID!) {
  userById(id: $id) { id phoneNumber { phoneNumber purePhoneNumber countryCode } events(first: 100) { edges { node { kind appId openId } } } }
}";

impl TestApp {
    /// Mints a phone code in the simulator; returns (code, the number it reveals).
    async fn mint_phone(
        &self,
        app_id: &str,
        person: &str,
        phone: Option<&str>,
    ) -> (String, String) {
        let mut body = json!({ "app_id": app_id, "person": person });
        if let Some(p) = phone {
            body["phone"] = json!(p);
        }
        let v = self.sim_post("/sim/phone", body).await;
        (
            v["code"].as_str().unwrap().to_owned(),
            v["phone_number"].as_str().unwrap().to_owned(),
        )
    }

    async fn bind(&self, code: &str, bearer: Option<&str>) -> Value {
        self.graphql(BIND, json!({ "code": code }), bearer).await
    }
}

fn token(login: &Value) -> String {
    login["sessionToken"].as_str().unwrap().to_owned()
}

async fn binding_shows_on_me_on_user_by_id_and_in_events(db: Db) {
    let app = spawn_with(Options {
        db,
        ..Options::default()
    })
    .await;
    let login = app.login(MP1, "alice").await;
    let session = token(&login);
    let user_id = login["user"]["id"].as_str().unwrap().to_owned();

    let me = app.graphql(MY_PHONE, json!({}), Some(&session)).await;
    assert!(me["errors"].is_null(), "{me}");
    assert!(me["data"]["me"]["phoneNumber"].is_null(), "unbound: {me}");

    let (code, number) = app.mint_phone(MP1, "alice", None).await;
    let (_, again) = app.mint_phone(MP1, "alice", None).await;
    assert_eq!(number, again, "a person's default number is stable");
    let bound = app.bind(&code, Some(&session)).await;
    assert!(bound["errors"].is_null(), "{bound}");
    let user = &bound["data"]["bindPhoneNumber"];
    assert_eq!(user["id"], user_id.as_str());
    assert_eq!(user["phoneNumber"]["phoneNumber"], number.as_str());
    assert_eq!(user["phoneNumber"]["purePhoneNumber"], number.as_str());
    assert_eq!(user["phoneNumber"]["countryCode"], "86");

    let me = app.graphql(MY_PHONE, json!({}), Some(&session)).await;
    assert_eq!(me["data"]["me"]["phoneNumber"], user["phoneNumber"], "{me}");

    let by_id = app
        .graphql(PHONE_BY_ID, json!({ "id": user_id }), Some(API_KEY))
        .await;
    assert!(by_id["errors"].is_null(), "{by_id}");
    let found = &by_id["data"]["userById"];
    assert_eq!(found["phoneNumber"]["phoneNumber"], number.as_str());
    let newest = &found["events"]["edges"][0]["node"];
    assert_eq!(newest["kind"], "PHONE_BOUND", "{found}");
    assert_eq!(newest["appId"], MP1);
    assert_eq!(newest["openId"], login["identity"]["openId"]);

    // A new number replaces the old one; one with a country code keeps it apart.
    let (code, _) = app.mint_phone(MP1, "alice", Some("+852 61234567")).await;
    let bound = app.bind(&code, Some(&session)).await;
    assert!(bound["errors"].is_null(), "{bound}");
    let phone = &bound["data"]["bindPhoneNumber"]["phoneNumber"];
    assert_eq!(phone["phoneNumber"], "+852 61234567");
    assert_eq!(phone["purePhoneNumber"], "61234567");
    assert_eq!(phone["countryCode"], "852");
    assert_eq!(app.count("SELECT COUNT(*) FROM phone_numbers").await, 1);
}

#[tokio::test]
async fn binding_shows_on_me_on_user_by_id_and_in_events_on_postgres() {
    binding_shows_on_me_on_user_by_id_and_in_events(Db::Postgres).await;
}

#[tokio::test]
async fn binding_shows_on_me_on_user_by_id_and_in_events_on_sqlite() {
    binding_shows_on_me_on_user_by_id_and_in_events(Db::Sqlite).await;
}

#[tokio::test]
async fn a_used_or_foreign_phone_code_is_invalid_code() {
    let app = spawn_app().await;
    let session = token(&app.login(MP1, "bob").await);
    let (code, _) = app.mint_phone(MP1, "bob", None).await;
    let first = app.bind(&code, Some(&session)).await;
    assert!(first["errors"].is_null(), "{first}");

    let reused = app.bind(&code, Some(&session)).await;
    assert_eq!(error_code(&reused), Some("INVALID_CODE"), "{reused}");
    assert_eq!(reused["errors"][0]["extensions"]["wechatErrcode"], 40029);

    let (other_apps, _) = app.mint_phone(MP2, "bob", None).await;
    let foreign = app.bind(&other_apps, Some(&session)).await;
    assert_eq!(error_code(&foreign), Some("INVALID_CODE"), "{foreign}");

    let unknown = app.bind("never-minted", Some(&session)).await;
    assert_eq!(error_code(&unknown), Some("INVALID_CODE"), "{unknown}");
    // Only the one binding was recorded.
    assert_eq!(
        app.count("SELECT COUNT(*) FROM events WHERE kind = 'phone_bound'")
            .await,
        1
    );
}

#[tokio::test]
async fn binding_needs_a_mini_program_session() {
    let app = spawn_app().await;
    let (code, _) = app.mint_phone(MP1, "carol", None).await;

    let anonymous = app.bind(&code, None).await;
    assert_eq!(
        error_code(&anonymous),
        Some("UNAUTHENTICATED"),
        "{anonymous}"
    );
    let service = app.bind(&code, Some(API_KEY)).await;
    // An API key is no session token (CONTRACT 3.2), as for `logout`.
    assert_eq!(error_code(&service), Some("UNAUTHENTICATED"), "{service}");

    let web = token(&app.login(WEB, "carol").await);
    let (web_code, _) = app.mint_phone(WEB, "carol", None).await;
    let not_mini = app.bind(&web_code, Some(&web)).await;
    assert_eq!(error_code(&not_mini), Some("UNKNOWN_APP"), "{not_mini}");
    // Refused before any WeChat call.
    assert!(app.sim_counts().await["wxa/business/getuserphonenumber"].is_null());
    assert_eq!(app.count("SELECT COUNT(*) FROM phone_numbers").await, 0);
}

#[tokio::test]
async fn an_invalidated_access_token_is_refreshed_once() {
    let app = spawn_app().await;
    let session = token(&app.login(MP1, "dave").await);
    let (first, _) = app.mint_phone(MP1, "dave", None).await;
    assert!(app.bind(&first, Some(&session)).await["errors"].is_null());

    app.sim_post("/sim/tokens/invalidate", json!({ "app_id": MP1 }))
        .await;
    let (code, number) = app.mint_phone(MP1, "dave", Some("13900139000")).await;
    let bound = app.bind(&code, Some(&session)).await;
    assert!(bound["errors"].is_null(), "{bound}");
    assert_eq!(
        bound["data"]["bindPhoneNumber"]["phoneNumber"]["phoneNumber"],
        number.as_str()
    );
    // The 40001 call did not use the code: the retry with the fresh token could.
    assert_eq!(app.sim_counts().await["wxa/business/getuserphonenumber"], 3);
}

#[tokio::test]
async fn the_simulator_answers_wechats_shape_and_token_errors() {
    let app = spawn_app().await;
    let (code, number) = app.mint_phone(MP1, "erin", None).await;
    let url = app.sim_url("/wxa/business/getuserphonenumber?access_token=nope");
    let v = post_json(&app.http, &url, &json!({ "code": code })).await;
    assert_eq!(v["errcode"], 40001, "{v}");

    let bad = app
        .http
        .post(app.sim_url("/sim/phone"))
        .json(&json!({ "app_id": MP1, "person": "erin", "phone": "12-34" }))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    assert!(number.starts_with("138") && number.len() == 11, "{number}");
}
