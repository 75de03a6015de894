//! The official-account callback: verification, the three message modes, dedupe,
//! rejections, slowness and crashes.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use wxunion::wechat::{crypto, message};

use crate::helpers::*;

const TS: &str = "1795636223";
const NONCE: &str = "123456789";

fn plain_query() -> Vec<(&'static str, String)> {
    vec![
        ("signature", crypto::signature(OA_TOKEN, TS, NONCE)),
        ("timestamp", TS.to_owned()),
        ("nonce", NONCE.to_owned()),
    ]
}

/// A correctly signed safe-mode request carrying `plain`, encrypted for `envelope_app`.
fn safe_request(plain: &str, envelope_app: &str) -> (Vec<(&'static str, String)>, String) {
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

async fn post(
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
async fn identity_in(
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
async fn forged_or_malformed_callbacks_are_rejected_and_record_nothing() {
    let app = spawn_app().await;
    let plain = message::event_xml(
        "gh_test",
        "oForgedOpenId00000000000000",
        1795636223,
        "subscribe",
        None,
    );

    // Tampered ciphertext: the msg_signature no longer matches.
    let (q, body) = safe_request(&plain, OA);
    let tampered = body.replacen("<Encrypt><![CDATA[", "<Encrypt><![CDATA[A", 1);
    assert_eq!(post(&app, OA, &q, tampered).await.0, 401);
    // Ciphertext re-signed by someone with the token but encrypted for another app id.
    let (q, body) = safe_request(&plain, "wx9999999999999999");
    assert_eq!(post(&app, OA, &q, body).await.0, 400);
    // Wrong msg_signature.
    let (mut q, body) = safe_request(&plain, OA);
    q.last_mut().unwrap().1 = "0".repeat(40);
    assert_eq!(post(&app, OA, &q, body).await.0, 401);
    // Wrong signature on a plaintext body.
    let mut q = plain_query();
    q[0].1 = "f".repeat(40);
    assert_eq!(post(&app, OA_CLASSIC, &q, plain.clone()).await.0, 401);
    // A plaintext body, correctly signed, for an account that has an EncodingAESKey.
    assert_eq!(post(&app, OA, &plain_query(), plain.clone()).await.0, 400);
    // XXE and billion laughs, correctly signed (and, for the safe-mode account, encrypted).
    let xxe = "<?xml version=\"1.0\"?><!DOCTYPE xml [<!ENTITY x SYSTEM \"file:///etc/passwd\">]><xml><ToUserName>a</ToUserName><FromUserName>&x;</FromUserName><CreateTime>1</CreateTime><MsgType>event</MsgType></xml>";
    assert_eq!(
        post(&app, OA_CLASSIC, &plain_query(), xxe.to_owned())
            .await
            .0,
        400
    );
    let (q, body) = safe_request(xxe, OA);
    assert_eq!(post(&app, OA, &q, body).await.0, 400);
    let mut lol = String::from("<?xml version=\"1.0\"?><!DOCTYPE lolz [<!ENTITY lol \"lol\">");
    for i in 1..10 {
        lol.push_str(&format!(
            "<!ENTITY lol{i} \"{}\">",
            format!("&lol{};", i - 1)
                .repeat(10)
                .replace("&lol0;", "&lol;")
        ));
    }
    lol.push_str("]><xml><FromUserName>&lol9;</FromUserName></xml>");
    let started = Instant::now();
    assert_eq!(post(&app, OA_CLASSIC, &plain_query(), lol).await.0, 400);
    assert!(started.elapsed() < Duration::from_secs(1));
    // Not XML at all, and XML that is not a WeChat message.
    assert_eq!(
        post(&app, OA_CLASSIC, &plain_query(), "hello".to_owned())
            .await
            .0,
        400
    );
    assert_eq!(
        post(
            &app,
            OA_CLASSIC,
            &plain_query(),
            "<xml><Foo>1</Foo></xml>".to_owned()
        )
        .await
        .0,
        400
    );
    // 65 KiB body.
    let big = format!("<xml><Content>{}</Content></xml>", "a".repeat(65 * 1024));
    assert_eq!(
        post(&app, OA_CLASSIC, &plain_query(), big.clone()).await.0,
        413
    );
    assert_eq!(post(&app, OA, &plain_query(), big).await.0, 413);
    // Unknown app.
    assert_eq!(
        post(&app, "wx9999999999999999", &plain_query(), plain.clone())
            .await
            .0,
        404
    );

    assert_eq!(app.count("SELECT COUNT(*) FROM jobs").await, 0);
    assert_eq!(app.count("SELECT COUNT(*) FROM identities").await, 0);
    // And the genuine articles are accepted.
    let (q, body) = safe_request(&plain, OA);
    let (status, reply) = post(&app, OA, &q, body).await;
    assert_eq!(status, 200);
    assert!(reply.contains("<MsgSignature>"), "{reply}");
    assert_eq!(
        post(&app, OA_CLASSIC, &plain_query(), plain.clone()).await,
        (200, "success".to_owned())
    );
    assert_eq!(app.count("SELECT COUNT(*) FROM jobs").await, 2);
}

#[tokio::test]
async fn a_ten_second_user_info_still_gets_success_in_under_a_second() {
    let app = spawn_with(Options {
        extra: "wechat_timeout_ms = 15000".into(),
        ..Options::default()
    })
    .await;
    app.sim_post(
        "/sim/faults",
        json!({ "api": "cgi-bin/user/info", "delay_ms": 10_000 }),
    )
    .await;
    let started = Instant::now();
    let report = app
        .sim_post("/sim/follow", json!({ "app_id": OA, "person": "eve" }))
        .await;
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(report["delivered"], true, "{report}");
    assert_eq!(report["attempts"].as_array().unwrap().len(), 1);
    let union_id = report["unionid"].as_str().unwrap();
    // Not yet: user/info is still sleeping.
    assert!(app.user(union_id, Some(API_KEY)).await["data"]["user"].is_null());
    let oa = identity_in(&app, union_id, OA, |_| true).await;
    assert!(started.elapsed() >= Duration::from_secs(10));
    assert_eq!(oa["subscribed"], true);
}

#[tokio::test]
async fn a_database_outage_is_answered_with_an_error_so_wechat_retries() {
    let app = spawn_app().await;
    app.drop_database().await;
    let report = app
        .sim_post(
            "/sim/follow",
            json!({ "app_id": OA, "person": "fay", "attempts": 3, "timeout_ms": 3000 }),
        )
        .await;
    assert_eq!(report["delivered"], false, "{report}");
    let attempts = report["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 3);
    assert!(attempts.iter().all(|a| a["status"] == 503), "{report}");
}

/// A child process that cannot outlive a failing test.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn jobs_left_by_a_killed_process_are_completed_after_a_restart() {
    let database_url = fresh_postgres().await;
    let prefix = format!("wxunion-test-{}:", uuid::Uuid::new_v4().simple());
    let tmp = tempfile::tempdir().unwrap();
    let config = load_config(tmp.path(), APPS_TOML);
    let sim = wxunion::sim::Simulator::spawn(sim_apps(&config), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    // The first process's user/info call hangs for a minute.
    sim.state
        .world()
        .faults
        .entry("cgi-bin/user/info".into())
        .or_default()
        .push_back(serde_json::from_value(json!({ "delay_ms": 60_000 })).unwrap());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let path = tmp.path().join("proc.toml");
    std::fs::write(
        &path,
        format!(
            "listen = \"127.0.0.1:{port}\"\ndatabase_url = \"{database_url}\"\nredis_url = \"redis://127.0.0.1:6379\"\n\
             redis_prefix = \"{prefix}\"\nwechat_api_base = \"{}\"\njob_lease_seconds = 2\nwechat_timeout_ms = 120000\n{APPS_TOML}",
            sim.base_url()
        ),
    )
    .unwrap();
    let mut child = KillOnDrop(
        std::process::Command::new(env!("CARGO_BIN_EXE_wxunion"))
            .arg("--config")
            .arg(&path)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let http = reqwest::Client::new();
    eventually(30, || async {
        http.get(format!("http://127.0.0.1:{port}/healthz"))
            .send()
            .await
            .ok()
            .filter(|r| r.status() == 200)
            .map(|_| ())
    })
    .await;
    sim.state
        .set_callback_base(&format!("http://127.0.0.1:{port}"));
    let follow = json!({ "app_id": OA, "person": "gus" });
    let report = post_json(&http, &format!("{}/sim/follow", sim.base_url()), &follow).await;
    assert_eq!(report["delivered"], true, "{report}");
    // Wait until the job is claimed and its user/info call is in flight, then kill -9.
    eventually(10, || async {
        (sim.state.world().counts.get("cgi-bin/user/info").copied() == Some(1)).then_some(())
    })
    .await;
    child.0.kill().unwrap();
    child.0.wait().unwrap();

    let app = spawn_with(Options {
        share: Some((database_url, prefix)),
        sim: Some(sim.clone()),
        extra: "job_lease_seconds = 2".into(),
        ..Options::default()
    })
    .await;
    let union_id = report["unionid"].as_str().unwrap();
    let oa = identity_in(&app, union_id, OA, |i| i["unionId"] == union_id).await;
    assert_eq!(oa["subscribed"], true);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM jobs WHERE status = 'done'")
            .await,
        1
    );
}

#[tokio::test]
async fn done_jobs_are_pruned_after_their_retention_but_dead_ones_stay() {
    let app = spawn_app().await;
    for person in ["hal", "ida"] {
        app.sim_post("/sim/follow", json!({ "app_id": OA, "person": person }))
            .await;
    }
    let count_is = |status: &'static str, n: i64| {
        let app = &app;
        async move {
            let sql = format!("SELECT COUNT(*) FROM jobs WHERE status = '{status}'");
            eventually(15, || async { (app.count(&sql).await == n).then_some(()) }).await
        }
    };
    count_is("done", 2).await;
    // WeChat says the next follower's openid is unknown: a permanent failure.
    app.sim_post(
        "/sim/faults",
        json!({ "api": "cgi-bin/user/info", "errcode": 40003 }),
    )
    .await;
    app.sim_post("/sim/follow", json!({ "app_id": OA, "person": "jon" }))
        .await;
    count_is("dead", 1).await;

    let db = app.db().await;
    let now = chrono::Utc::now();
    let prune = |before| wxunion::store::jobs::prune(&db, before);
    assert_eq!(prune(now - chrono::Duration::days(1)).await.unwrap(), 0);
    assert_eq!(prune(now + chrono::Duration::seconds(1)).await.unwrap(), 2);
    let dead = "SELECT COUNT(*) FROM jobs WHERE status = 'dead' AND last_error LIKE '%40003%'";
    assert_eq!(app.count(dead).await, 1);
    assert_eq!(app.count("SELECT COUNT(*) FROM jobs").await, 1);
}

#[tokio::test]
async fn a_follower_recorded_before_its_unionid_is_merged_into_the_login_user() {
    let app = spawn_app().await;
    // user/info is slow, so the follower is recorded without a unionid first...
    app.sim_post(
        "/sim/faults",
        json!({ "api": "cgi-bin/user/info", "delay_ms": 1500 }),
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
