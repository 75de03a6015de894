//! The official-account callback under attack and failure: forged and hostile bodies,
//! a slow WeChat, a database outage, a killed process, and job retention.

use std::time::{Duration, Instant};

use serde_json::json;
use wxunion::wechat::message;

use crate::callback::{identity_in, plain_query, post, safe_request};
use crate::helpers::*;

/// A bound that only catches a hang: what the tests prove, they prove by the order of events.
const HANG: Duration = Duration::from_secs(30);

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
    // Fifteen levels: expanded, &lol15; would be 3 PB, a hang or an out-of-memory abort on any
    // machine. The parser refuses the DOCTYPE before reading a single entity (proven in
    // `wechat::message`'s unit tests); the bound here only catches a hang.
    let mut lol = String::from("<?xml version=\"1.0\"?><!DOCTYPE lolz [<!ENTITY lol \"lol\">");
    for i in 1..16 {
        lol.push_str(&format!(
            "<!ENTITY lol{i} \"{}\">",
            format!("&lol{};", i - 1)
                .repeat(10)
                .replace("&lol0;", "&lol;")
        ));
    }
    lol.push_str("]><xml><FromUserName>&lol15;</FromUserName></xml>");
    let started = Instant::now();
    assert_eq!(post(&app, OA_CLASSIC, &plain_query(), lol).await.0, 400);
    assert!(started.elapsed() < HANG, "took {:?}", started.elapsed());
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
async fn the_callback_is_answered_while_its_user_info_call_is_still_held() {
    // user/info answers only when the test releases it (and wxunion's call to it cannot time
    // out during the test): the order of events, not the machine's speed, shows what waited.
    let app = spawn_with(Options {
        extra: "wechat_timeout_ms = 120000".into(),
        ..Options::default()
    })
    .await;
    app.sim_post(
        "/sim/faults",
        json!({ "api": "cgi-bin/user/info", "hold": true }),
    )
    .await;
    // One attempt with a generous timeout: a callback that waited for user/info would time out.
    let report = app
        .sim_post(
            "/sim/follow",
            json!({ "app_id": OA, "person": "eve", "attempts": 1, "timeout_ms": HANG.as_millis() as u64 }),
        )
        .await;
    assert_eq!(report["delivered"], true, "{report}");
    // The job's user/info call is in flight, held...
    eventually(15, || async { (app.sim.state.held() == 1).then_some(()) }).await;
    let union_id = report["unionid"].as_str().unwrap();
    // ...so the follower is not linked to its unionid yet.
    assert!(app.user(union_id, Some(API_KEY)).await["data"]["user"].is_null());
    assert_eq!(app.sim.state.release(), 1);
    // Once user/info answers, it is.
    let oa = identity_in(&app, union_id, OA, |_| true).await;
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

#[tokio::test]
async fn jobs_left_by_a_killed_process_are_completed_after_a_restart() {
    let prefix = format!("wxunion-test-{}:", uuid::Uuid::new_v4().simple());
    let test_db = fresh_postgres().await.with_redis_prefix(&prefix);
    let database_url = test_db.url.clone();
    let tmp = tempfile::tempdir().unwrap();
    let config = load_config(tmp.path(), APPS_TOML);
    let sim = wxunion::sim::Simulator::spawn(sim_apps(&config), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    // The first process's user/info call is held until the process is gone.
    sim.state
        .world()
        .faults
        .entry("cgi-bin/user/info".into())
        .or_default()
        .push_back(serde_json::from_value(json!({ "hold": true })).unwrap());
    let port = free_port();
    let path = tmp.path().join("proc.toml");
    std::fs::write(
        &path,
        format!(
            "listen = \"127.0.0.1:{port}\"\ndatabase_url = \"{database_url}\"\nredis_url = \"redis://127.0.0.1:6379\"\n\
             redis_prefix = \"{prefix}\"\nwechat_api_base = \"{}\"\njob_lease_seconds = 3600\nwechat_timeout_ms = 120000\n{APPS_TOML}",
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
    // Wait until the job is claimed and its user/info call is in flight, then kill -9. (Its
    // lease is an hour: the process cannot claim the job again before it dies.)
    eventually(10, || async { (sim.state.held() == 1).then_some(()) }).await;
    child.0.kill().unwrap();
    child.0.wait().unwrap();

    let app = spawn_with(Options {
        share: Some((database_url, prefix)),
        sim: Some(sim.clone()),
        ..Options::default()
    })
    .await;
    // The dead process's lease runs out for the new one when its clock passes it.
    app.clock.advance(chrono::Duration::seconds(3601));
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

#[tokio::test(start_paused = true)]
async fn the_simulator_retries_like_wechat_when_the_server_is_too_slow() {
    // Only the simulator and a server that accepts connections and never answers, on a paused
    // clock: the simulator's timeouts are virtual, so every attempt lasts exactly its timeout
    // however loaded the machine is.
    let tmp = tempfile::tempdir().unwrap();
    let config = load_config(tmp.path(), APPS_TOML);
    let sim = wxunion::sim::Simulator::spawn(sim_apps(&config), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let slow = listener.local_addr().unwrap();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = accepted.clone();
    let server = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((conn, _)) = listener.accept().await {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            open.push(conn);
        }
    });
    let follow = json!({ "app_id": OA, "person": "lou", "target": format!("http://{slow}"), "timeout_ms": 100 });
    let report = post_json(
        &reqwest::Client::new(),
        &format!("{}/sim/follow", sim.base_url()),
        &follow,
    )
    .await;
    assert_eq!(report["delivered"], false, "{report}");
    let attempts = report["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 3, "{report}");
    assert!(attempts.iter().all(|a| a["error"] == "timeout"), "{report}");
    // Each attempt waited the 100 ms asked for, not the default 5 s.
    assert!(
        attempts
            .iter()
            .all(|a| (100..1000).contains(&a["elapsed_ms"].as_u64().unwrap())),
        "{report}"
    );
    // And each one reached the server (no connection is refused or reused).
    eventually(10, || async {
        (accepted.load(std::sync::atomic::Ordering::SeqCst) == 3).then_some(())
    })
    .await;
    server.abort();
}

/// With WeChat failing, each worker pauses longer after every failed job instead of claiming
/// the next one only to fail it too; when WeChat is back, the backlog drains by itself.
#[tokio::test]
async fn workers_facing_a_failing_wechat_pause_instead_of_spinning_and_resume_after() {
    const FOLLOWERS: usize = 40;
    let app = spawn_with(Options {
        extra: "job_workers = 4".into(),
        ..Options::default()
    })
    .await;
    // 45009 (quota reached): a WeChat failure that the client does not retry by itself.
    app.sim_post(
        "/sim/faults",
        json!({ "api": "cgi-bin/user/info", "errcode": 45009, "times": 100000 }),
    )
    .await;
    for i in 0..FOLLOWERS {
        app.sim_post(
            "/sim/follow",
            json!({ "app_id": OA, "person": format!("paused-{i}") }),
        )
        .await;
    }
    // Every event is acknowledged and queued at once.
    assert_eq!(
        app.count("SELECT COUNT(*) FROM jobs").await,
        FOLLOWERS as i64
    );
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let elapsed = started.elapsed().as_secs_f64();
    let calls = app.sim_counts().await["cgi-bin/user/info"]
        .as_u64()
        .unwrap_or(0);
    // Four workers pausing 0.5, 1, 2, 4 s after successive failures make at most four
    // attempts each in four seconds; spinning would have failed all 40 jobs at once.
    assert!(
        calls <= 20 && (calls as usize) < FOLLOWERS,
        "{calls} user/info calls in {elapsed:.1} s with WeChat failing"
    );
    assert!(app.metrics().await.contains("wxunion_worker_pauses_total"));

    // WeChat recovers: the queued jobs record every follower and resolve every unionid,
    // without a restart.
    app.sim_post("/sim/reset", json!({})).await;
    eventually(90, || async {
        (app.count("SELECT COUNT(*) FROM identities WHERE union_id IS NOT NULL")
            .await
            == FOLLOWERS as i64)
            .then_some(())
    })
    .await;
}
