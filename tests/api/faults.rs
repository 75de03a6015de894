//! Faults of the servers wxunion depends on, each on this test's own database or Redis
//! connections (the shared servers are never stopped): every request path answers within a
//! bound while PostgreSQL is down or hung, logins go on while Redis is cut, a slow WeChat
//! costs each waiter for an access token one timeout, and everything works again once the
//! fault is gone, on the same running instance.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::*;
use crate::proxy::{Mode, Proxy};

/// Every answer during a fault must come within this.
const BOUND: Duration = Duration::from_secs(2);

fn database_name(url: &str) -> String {
    url.rsplit('/').next().unwrap().to_owned()
}

async fn admin(sql: &str) {
    use sea_orm::ConnectionTrait;
    let admin = sea_orm::Database::connect("postgres://postgres@127.0.0.1:5432/postgres")
        .await
        .unwrap();
    admin.execute_unprepared(sql).await.unwrap();
    admin.close().await.unwrap();
}

/// The database refuses every connection (as a stopped server does) and loses the open ones.
async fn take_database_down(name: &str) {
    admin(&format!(
        "ALTER DATABASE \"{name}\" ALLOW_CONNECTIONS false"
    ))
    .await;
    admin(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
    ))
    .await;
}

async fn bring_database_back(name: &str) {
    admin(&format!("ALTER DATABASE \"{name}\" ALLOW_CONNECTIONS true")).await;
}

/// A count on the database itself (not through a proxy the test may be stalling).
async fn count_direct(url: &str, sql: &str) -> i64 {
    use sea_orm::{ConnectionTrait, Statement};
    let db = sea_orm::Database::connect(url).await.unwrap();
    let row = db
        .query_one_raw(Statement::from_string(
            sea_orm::DbBackend::Postgres,
            sql.to_owned(),
        ))
        .await
        .unwrap()
        .unwrap();
    let n: i64 = row.try_get_by_index(0).unwrap();
    db.close().await.unwrap();
    n
}

async fn timed<T>(what: &str, work: impl std::future::Future<Output = T>) -> T {
    let started = Instant::now();
    let out = work.await;
    let took = started.elapsed();
    eprintln!("{what}: {took:?}");
    assert!(took < BOUND, "{what} took {took:?}");
    out
}

fn sim_count(counts: &Value, api: &str) -> u64 {
    counts.get(api).and_then(Value::as_u64).unwrap_or(0)
}

/// One attempt of a `subscribe` from `person` at `create_time` (the same message each time).
async fn follow_once(app: &TestApp, person: &str, create_time: i64) -> Value {
    app.sim_post(
        "/sim/follow",
        json!({ "app_id": OA, "person": person, "attempts": 1, "timeout_ms": 5000, "create_time": create_time }),
    )
    .await
}

fn status_of(report: &Value) -> u64 {
    report["attempts"][0]["status"].as_u64().unwrap_or(0)
}

async fn readyz(app: &TestApp) -> (u16, Value) {
    let resp = app.http.get(app.url("/readyz")).send().await.unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

/// What every request path answers while the database does not: within [`BOUND`], 503 for
/// the callback and readiness, INTERNAL on GraphQL, and no WeChat call for a login (its code
/// stays usable). Returns the code of the refused login.
async fn every_path_fails_fast(app: &TestApp, token: &str, union_id: &str) -> String {
    let report = timed("callback", follow_once(app, "bob", 1_795_000_000)).await;
    assert_eq!(status_of(&report), 503, "{report}");
    let v = timed(
        "GraphQL with a session token",
        app.graphql(ME, json!({}), Some(token)),
    )
    .await;
    assert_eq!(error_code(&v), Some("INTERNAL"), "{v}");
    let v = timed("GraphQL with an API key", app.user(union_id, Some(API_KEY))).await;
    assert_eq!(error_code(&v), Some("INTERNAL"), "{v}");
    let (status, body) = timed("readyz", readyz(app)).await;
    assert_eq!(
        (status, body["database"].as_str()),
        (503, Some("unreachable"))
    );
    assert_eq!(body["cache"], "ok");
    let before = sim_count(&app.sim_counts().await, "sns/jscode2session");
    let code = app.mint_code(MP1, "cai").await;
    let v = timed("login", app.login_with_code(MP1, &code)).await;
    assert_eq!(error_code(&v), Some("INTERNAL"), "{v}");
    assert_eq!(
        sim_count(&app.sim_counts().await, "sns/jscode2session"),
        before,
        "a login with the database down spent its code at WeChat"
    );
    code
}

/// The same instance works again: the callback records, the code refused during the fault
/// logs in, the old session still works, readiness is back.
async fn everything_works_again(app: &TestApp, token: &str, code: &str) {
    let report = eventually(15, || async {
        let r = follow_once(app, "bob", 1_795_000_000).await;
        (status_of(&r) == 200).then_some(r)
    })
    .await;
    assert_eq!(report["delivered"], true, "{report}");
    let v = app.login_with_code(MP1, code).await;
    assert!(
        v["errors"].is_null(),
        "the code refused during the outage: {v}"
    );
    let v = app.graphql(ME, json!({}), Some(token)).await;
    assert!(v["errors"].is_null(), "{v}");
    assert_eq!(readyz(app).await.0, 200);
}

#[tokio::test]
async fn with_the_database_down_every_path_answers_within_two_seconds_and_recovers_without_a_restart()
 {
    let app = spawn_app().await;
    let name = database_name(&app.database_url);
    let alice = app.login(MP1, "alice").await;
    let token = alice["sessionToken"].as_str().unwrap();
    let union_id = alice["user"]["unionId"].as_str().unwrap();

    take_database_down(&name).await;
    // The login check before WeChat pings when the last database success is older than
    // 500 ms (or anything failed since); let that time pass so the login below is that case.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let refused = async {
        let before = sim_count(&app.sim_counts().await, "sns/jscode2session");
        let code = app.mint_code(MP1, "dee").await;
        let v = timed("first login of the outage", app.login_with_code(MP1, &code)).await;
        assert_eq!(error_code(&v), Some("INTERNAL"), "{v}");
        assert_eq!(
            sim_count(&app.sim_counts().await, "sns/jscode2session"),
            before
        );
        code
    }
    .await;
    let code = every_path_fails_fast(&app, token, union_id).await;

    bring_database_back(&name).await;
    everything_works_again(&app, token, &code).await;
    assert!(
        app.login_with_code(MP1, &refused).await["errors"].is_null(),
        "the first refused code was spent"
    );
    // Nothing of the refused requests was half-written: one job (bob's, delivered after the
    // outage), three sessions (alice, cai, dee), no second user for a refused login.
    assert_eq!(app.count("SELECT COUNT(*) FROM jobs").await, 1);
    assert_eq!(app.count("SELECT COUNT(*) FROM sessions").await, 3);
}

#[tokio::test]
async fn with_the_database_hung_every_path_answers_within_two_seconds_and_recovers_without_a_restart()
 {
    let prefix = format!("wxunion-test-{}:", uuid::Uuid::new_v4().simple());
    let test_db = fresh_postgres().await.with_redis_prefix(&prefix);
    let proxy = Proxy::start("127.0.0.1:5432").await;
    let through_proxy = test_db
        .url
        .replace("127.0.0.1:5432", &proxy.addr.to_string());
    let app = spawn_with(Options {
        share: Some((through_proxy, prefix)),
        ..Options::default()
    })
    .await;
    let alice = app.login(MP1, "alice").await;
    let token = alice["sessionToken"].as_str().unwrap();
    let union_id = alice["user"]["unionId"].as_str().unwrap();

    // The server accepts connections and never answers, on every connection open or new.
    proxy.set(Mode::Stall);
    let code = every_path_fails_fast(&app, token, union_id).await;

    proxy.set(Mode::Forward);
    everything_works_again(&app, token, &code).await;
    // bob's subscribe was refused (503) while the database hung; its INSERT, held by the
    // stalled network, may have been committed once the bytes flowed again. Either way the
    // message is there exactly once, and it is linked once.
    let jobs = "SELECT COUNT(*) FROM jobs WHERE dedupe_key LIKE 'evt:%:1795000000:subscribe:'";
    assert_eq!(count_direct(&test_db.url, jobs).await, 1);
    let bob = app.sim.state.open_id(OA, "bob");
    let linked = format!("SELECT COUNT(*) FROM identities WHERE open_id = '{bob}'");
    eventually(15, || async {
        (count_direct(&test_db.url, &linked).await == 1).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_callback_facing_a_locked_jobs_table_answers_503_within_two_seconds_and_its_retry_counts_once()
 {
    use sea_orm::{ConnectionTrait, TransactionTrait};
    let app = spawn_app().await;
    let db = app.db().await;
    let lock = db.begin().await.unwrap();
    lock.execute_unprepared("LOCK TABLE jobs IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let report = timed(
        "callback, jobs locked",
        follow_once(&app, "eve", 1_795_000_100),
    )
    .await;
    assert_eq!(status_of(&report), 503, "{report}");
    // Logins do not touch the jobs table: they go on.
    app.login(MP1, "fay").await;
    lock.rollback().await.unwrap();
    // WeChat's retry of the same message: recorded (or found already recorded) once.
    let report = eventually(15, || async {
        let r = follow_once(&app, "eve", 1_795_000_100).await;
        (status_of(&r) == 200).then_some(r)
    })
    .await;
    assert_eq!(report["delivered"], true);
    assert_eq!(app.count("SELECT COUNT(*) FROM jobs").await, 1);
}

#[tokio::test]
async fn logins_go_on_while_redis_is_cut_or_hung_and_use_it_again_when_it_returns() {
    let proxy = Proxy::start("127.0.0.1:6379").await;
    let app = spawn_with(Options {
        redis_url: Some(format!("redis://{}", proxy.addr)),
        extra: "login_rate_per_client = 4".into(),
        ..Options::default()
    })
    .await;
    app.clock.freeze();
    let client = redis::Client::open("redis://127.0.0.1:6379").unwrap();
    let mut redis = client.get_multiplexed_async_connection().await.unwrap();
    let session_key = |person: &str| {
        format!(
            "{}session_key:{MP1}:{}",
            app.redis_prefix,
            app.sim.state.open_id(MP1, person)
        )
    };

    for (mode, person) in [(Mode::Stall, "gus"), (Mode::Refuse, "hal")] {
        // After a failure Redis is skipped for a second: let that pass, so that each mode's
        // login meets Redis itself (the stall costs it the 500 ms Redis timeout).
        tokio::time::sleep(Duration::from_millis(1_100)).await;
        proxy.set(mode);
        let code = app.mint_code(MP1, person).await;
        let v = timed(
            &format!("login with Redis {mode:?}"),
            app.login_with_code(MP1, &code),
        )
        .await;
        assert!(v["errors"].is_null(), "Redis {mode:?}: {v}");
        let token = v["data"]["loginWithCode"]["sessionToken"].as_str().unwrap();
        let me = app.graphql(ME, json!({}), Some(token)).await;
        assert!(me["errors"].is_null(), "{me}");
        let (status, ready) = timed("readyz", readyz(&app)).await;
        assert_eq!(
            (status, ready["cache"].as_str()),
            (503, Some("unreachable"))
        );
        // The session key of this login could not be kept.
        let kept: Option<String> = redis::cmd("GET")
            .arg(session_key(person))
            .query_async(&mut redis)
            .await
            .unwrap();
        assert_eq!(kept, None);
    }
    // The rate limit holds without Redis, counted by this instance: two logins so far from
    // this address, two more, then RATE_LIMITED, before any WeChat call.
    for person in ["ian", "jay"] {
        app.login(MP1, person).await;
    }
    let before = sim_count(&app.sim_counts().await, "sns/jscode2session");
    let v = app.login_with_code(MP1, "made-up-code").await;
    assert_eq!(error_code(&v), Some("RATE_LIMITED"), "{v}");
    assert_eq!(
        sim_count(&app.sim_counts().await, "sns/jscode2session"),
        before
    );
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("wxunion_login_keys_not_cached_total"),
        "{metrics}"
    );

    // Redis is back: the same instance uses it again (after its one-second pause).
    proxy.set(Mode::Forward);
    eventually(10, || async { (readyz(&app).await.0 == 200).then_some(()) }).await;
    app.clock.advance(chrono::Duration::seconds(61));
    app.login(MP1, "kim").await;
    let kept: Option<String> = redis::cmd("GET")
        .arg(session_key("kim"))
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(
        kept.is_some(),
        "the session key of a login after Redis returned"
    );
    // And the limit is counted in Redis again, shared by every instance.
    use wxunion::clock::Clock;
    let now_ms = app.clock.now().timestamp_millis();
    let window = now_ms - now_ms % 60_000;
    let counted: Option<String> = redis::cmd("GET")
        .arg(format!(
            "{}login-rate:client:127.0.0.1:{window}",
            app.redis_prefix
        ))
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(counted.as_deref(), Some("1"));
}

#[tokio::test]
async fn five_concurrent_resolves_share_one_slow_token_refresh_and_its_failure() {
    let app = spawn_with(Options {
        extra: "wechat_timeout_ms = 2000".into(),
        ..Options::default()
    })
    .await;
    // stable_token answers after 3 s, past the 2 s timeout; no token is cached yet.
    app.sim_post(
        "/sim/faults",
        json!({ "api": "cgi-bin/stable_token", "delay_ms": 3000 }),
    )
    .await;
    let resolves = (0..5).map(|i| {
        let open_id = app.sim.state.open_id(OA, &format!("p{i}"));
        let app = &app;
        async move {
            let started = Instant::now();
            let v = app.resolve(OA, &open_id, Some(API_KEY)).await;
            (started.elapsed(), v)
        }
    });
    let results = futures::future::join_all(resolves).await;
    let times: Vec<Duration> = results.iter().map(|(t, _)| *t).collect();
    eprintln!("resolve times with a 3 s stable_token and a 2 s timeout: {times:?}");
    for (took, v) in &results {
        assert_eq!(error_code(v), Some("UPSTREAM_ERROR"), "{v}");
        assert!(*took < Duration::from_secs(3), "a resolve took {took:?}");
    }
    let counts = app.sim_counts().await;
    assert_eq!(sim_count(&counts, "cgi-bin/stable_token"), 1, "{counts}");
    assert_eq!(sim_count(&counts, "cgi-bin/user/info"), 0, "{counts}");

    // WeChat is fast again: the next call refreshes and succeeds.
    app.sim_post("/sim/reset", json!({})).await;
    let v = app
        .resolve(OA, &app.sim.state.open_id(OA, "p0"), Some(API_KEY))
        .await;
    assert!(v["errors"].is_null(), "{v}");
    assert_eq!(
        sim_count(&app.sim_counts().await, "cgi-bin/stable_token"),
        1
    );
}
