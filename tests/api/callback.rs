//! The official-account callback: verification, the three message modes, dedupe and
//! merges (faults and attacks are in `callback_faults`).

use serde_json::{Value, json};
use wxunion::wechat::{crypto, message};

use crate::helpers::*;

pub(crate) const TS: &str = "1795636223";
pub(crate) const NONCE: &str = "123456789";

pub(crate) fn plain_query() -> Vec<(&'static str, String)> {
    vec![
        ("signature", crypto::signature(OA_TOKEN, TS, NONCE)),
        ("timestamp", TS.to_owned()),
        ("nonce", NONCE.to_owned()),
    ]
}

/// A correctly signed safe-mode request carrying `plain`, encrypted for `envelope_app`.
pub(crate) fn safe_request(
    plain: &str,
    envelope_app: &str,
) -> (Vec<(&'static str, String)>, String) {
    let mc = crypto::MsgCrypt::new(OA_TOKEN, OA_AES_KEY, envelope_app).unwrap();
    let encrypt = mc.encrypt(plain, *b"0123456789abcdef");
    let mut q = plain_query();
    q.push(("encrypt_type", "aes".to_owned()));
    q.push((
        "msg_signature",
        crypto::msg_signature(OA_TOKEN, TS, NONCE, &encrypt),
    ));
    (q, message::encrypted_envelope_xml("gh_test", &encrypt))
}

pub(crate) async fn post(
    app: &TestApp,
    app_id: &str,
    query: &[(&str, String)],
    body: String,
) -> (u16, String) {
    let resp = app
        .http
        .post(app.url(&format!("/wechat/callback/{app_id}")))
        .query(query)
        .body(body)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

/// Waits until the user of `union_id` has an identity in `app_id` matching `pred`.
pub(crate) async fn identity_in(
    app: &TestApp,
    union_id: &str,
    app_id: &str,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    eventually(15, || async {
        let v = app.user(union_id, Some(API_KEY)).await;
        let ids = v["data"]["user"]["identities"].as_array()?.clone();
        ids.into_iter().find(|i| i["appId"] == app_id && pred(i))
    })
    .await
}

#[tokio::test]
async fn url_verification_echoes_echostr_only_with_a_valid_signature() {
    let app = spawn_app().await;
    let echostr = "5837397520665436492";
    let mut q = plain_query();
    q.push(("echostr", echostr.to_owned()));
    let url = app.url(&format!("/wechat/callback/{OA}"));
    let ok = app.http.get(&url).query(&q).send().await.unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.text().await.unwrap(), echostr);

    q[0].1 = crypto::signature("wrong-token", TS, NONCE);
    assert_eq!(
        app.http.get(&url).query(&q).send().await.unwrap().status(),
        401
    );
    let unsigned = app
        .http
        .get(&url)
        .query(&[("echostr", echostr)])
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), 401);
    let unknown = app
        .http
        .get(app.url("/wechat/callback/wx9999999999999999"))
        .query(&q)
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 401);
    // A mini program has no callback here either.
    let mp = app
        .http
        .get(app.url(&format!("/wechat/callback/{MP1}")))
        .query(&q)
        .send()
        .await
        .unwrap();
    assert_eq!(mp.status(), 401);
}

async fn subscribe_joins_the_mini_program_user(oa_id: &str, mode: &str) {
    let app = spawn_app().await;
    let login = app.login(MP1, "alice").await;
    let union_id = login["user"]["unionId"].as_str().unwrap();
    let follow = json!({ "app_id": oa_id, "person": "alice", "mode": mode, "scene": "42" });
    let report = app.sim_post("/sim/follow", follow).await;
    assert_eq!(report["delivered"], true, "{report}");
    assert_eq!(report["mode"], mode);
    if mode == "plaintext" {
        assert_eq!(report["body"], "success");
    } else {
        // The welcome reply comes back encrypted and signed; the simulator verified it.
        assert_eq!(report["reply"]["verified"], true, "{report}");
        let xml = report["reply"]["xml"].as_str().unwrap();
        let reply = message::parse_message(xml).unwrap();
        assert_eq!(reply.to_user_name, report["openid"].as_str().unwrap());
        assert!(xml.contains(WELCOME), "{xml}");
        assert!(!report["body"].as_str().unwrap().contains("Welcome"));
    }
    let oa = identity_in(&app, union_id, oa_id, |i| i["subscribed"] == true).await;
    assert_eq!(oa["appKind"], "OFFICIAL_ACCOUNT");
    assert_eq!(oa["unionId"], union_id);
    assert_eq!(oa["openId"], report["openid"]);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM users WHERE merged_into IS NULL")
            .await,
        1
    );
}

#[tokio::test]
async fn subscribe_in_plaintext_mode_joins_the_mini_program_user() {
    subscribe_joins_the_mini_program_user(OA_CLASSIC, "plaintext").await;
}

#[tokio::test]
async fn subscribe_in_compatible_mode_joins_the_mini_program_user() {
    subscribe_joins_the_mini_program_user(OA, "compatible").await;
}

#[tokio::test]
async fn subscribe_in_safe_mode_joins_the_mini_program_user() {
    subscribe_joins_the_mini_program_user(OA, "safe").await;
}

#[tokio::test]
async fn a_follower_seen_before_logging_in_is_merged_into_one_user() {
    let app = spawn_app().await;
    // The follow comes first: a user with the unionid exists before any mini-program login.
    let report = app
        .sim_post("/sim/follow", json!({ "app_id": OA, "person": "bea" }))
        .await;
    let union_id = report["unionid"].as_str().unwrap().to_owned();
    identity_in(&app, &union_id, OA, |i| i["subscribed"] == true).await;
    let login = app.login(MP2, "bea").await;
    assert_eq!(login["isNewUser"], false);
    assert_eq!(login["user"]["unionId"], union_id.as_str());
    assert_eq!(login["user"]["identities"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn unsubscribe_sets_subscribed_false() {
    let app = spawn_app().await;
    let report = app
        .sim_post("/sim/follow", json!({ "app_id": OA, "person": "carl" }))
        .await;
    let union_id = report["unionid"].as_str().unwrap().to_owned();
    identity_in(&app, &union_id, OA, |i| i["subscribed"] == true).await;
    app.sim_post("/sim/unfollow", json!({ "app_id": OA, "person": "carl" }))
        .await;
    identity_in(&app, &union_id, OA, |i| i["subscribed"] == false).await;
}

#[tokio::test]
async fn the_same_message_sent_three_times_takes_effect_once() {
    let app = spawn_app().await;
    let msg = json!({ "app_id": OA, "person": "dan", "content": "hi", "create_time": 1795636000, "msg_id": 1234567890123456u64 });
    for _ in 0..3 {
        let r = app.sim_post("/sim/message", msg.clone()).await;
        assert_eq!(r["body"], "success");
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM jobs").await, 1);
    let done = |n: i64| {
        let app = &app;
        async move {
            eventually(15, || async {
                (app.count("SELECT COUNT(*) FROM jobs WHERE status = 'done'")
                    .await
                    == n)
                    .then_some(())
            })
            .await
        }
    };
    done(1).await;
    let event = json!({ "app_id": OA, "person": "dan", "create_time": 1795636001 });
    for _ in 0..3 {
        app.sim_post("/sim/follow", event.clone()).await;
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM jobs").await, 2);
    done(2).await;
    assert_eq!(app.count("SELECT COUNT(*) FROM identities").await, 1);
    // The first job resolved the unionid; the second found it known and asked WeChat nothing.
    assert_eq!(app.sim_counts().await["cgi-bin/user/info"], 1);
}

#[tokio::test]
async fn a_follower_recorded_before_its_unionid_is_merged_into_the_login_user() {
    // Long enough that the held call cannot time out and be retried while the test runs.
    let app = spawn_with(Options {
        extra: "wechat_timeout_ms = 120000".into(),
        ..Options::default()
    })
    .await;
    // user/info is held until the test releases it, so the follower is recorded without a
    // unionid first...
    app.sim_post(
        "/sim/faults",
        json!({ "api": "cgi-bin/user/info", "hold": true }),
    )
    .await;
    let report = app
        .sim_post("/sim/follow", json!({ "app_id": OA, "person": "kim" }))
        .await;
    eventually(10, || async {
        (app.count("SELECT COUNT(*) FROM identities WHERE union_id IS NULL")
            .await
            == 1)
            .then_some(())
    })
    .await;
    // ...meanwhile the same person logs in from a mini program: a second user, with the unionid.
    let login = app.login(MP1, "kim").await;
    assert_eq!(login["isNewUser"], true);
    assert_eq!(app.count("SELECT COUNT(*) FROM users").await, 2);
    // When user/info answers, the follower's user is merged into the login user.
    eventually(10, || async { (app.sim.state.held() == 1).then_some(()) }).await;
    assert_eq!(app.sim.state.release(), 1);
    let union_id = login["user"]["unionId"].as_str().unwrap();
    assert_eq!(report["unionid"], union_id);
    let oa = identity_in(&app, union_id, OA, |i| i["subscribed"] == true).await;
    assert_eq!(oa["unionId"], union_id);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM users WHERE merged_into IS NULL")
            .await,
        1
    );
    let merged = format!(
        "SELECT COUNT(*) FROM users WHERE merged_into = '{}'",
        login["user"]["id"].as_str().unwrap()
    );
    assert_eq!(app.count(&merged).await, 1);
    let me = app
        .graphql(ME, json!({}), login["sessionToken"].as_str())
        .await;
    assert_eq!(me["data"]["me"]["identities"].as_array().unwrap().len(), 2);
}
