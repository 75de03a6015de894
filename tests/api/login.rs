//! `loginWithCode` for mini programs, end to end through the simulator.

use serde_json::json;

use crate::helpers::*;

async fn first_login_creates_a_user_with_the_unionid(db: Db) {
    let app = spawn_with(Options {
        db,
        ..Options::default()
    })
    .await;
    let login = app.login(MP1, "alice").await;
    let person = get_json(&app.http, &app.sim_url("/sim/people/alice")).await;
    assert_eq!(login["isNewUser"], true);
    assert_eq!(login["user"]["unionId"], person["apps"][MP1]["unionid"]);
    assert_eq!(login["identity"]["openId"], person["apps"][MP1]["openid"]);
    assert_eq!(login["identity"]["appKind"], "MINI_PROGRAM");
    assert_eq!(login["user"]["identities"].as_array().unwrap().len(), 1);
    assert!(login["sessionToken"].as_str().unwrap().len() > 40);
    assert_eq!(app.count("SELECT COUNT(*) FROM users").await, 1);
    assert_eq!(app.count("SELECT COUNT(*) FROM sessions").await, 1);
}

#[tokio::test]
async fn first_login_creates_a_user_with_the_unionid_on_postgres() {
    first_login_creates_a_user_with_the_unionid(Db::Postgres).await;
}

#[tokio::test]
async fn first_login_creates_a_user_with_the_unionid_on_sqlite() {
    first_login_creates_a_user_with_the_unionid(Db::Sqlite).await;
}

async fn same_person_in_a_second_app_is_the_same_user(db: Db) {
    let app = spawn_with(Options {
        db,
        ..Options::default()
    })
    .await;
    let first = app.login(MP1, "bob").await;
    let second = app.login(MP2, "bob").await;
    assert_eq!(second["isNewUser"], false);
    assert_eq!(first["user"]["id"], second["user"]["id"]);
    let apps: Vec<&str> = second["user"]["identities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["appId"].as_str().unwrap())
        .collect();
    assert_eq!(apps, vec![MP1, MP2]);
    assert_ne!(first["identity"]["openId"], second["identity"]["openId"]);
    // Logging in again from the first app is still the same identity.
    let again = app.login(MP1, "bob").await;
    assert_eq!(again["isNewUser"], false);
    assert_eq!(again["identity"]["openId"], first["identity"]["openId"]);
    assert_eq!(app.count("SELECT COUNT(*) FROM identities").await, 2);
}

#[tokio::test]
async fn same_person_in_a_second_app_is_the_same_user_on_postgres() {
    same_person_in_a_second_app_is_the_same_user(Db::Postgres).await;
}

#[tokio::test]
async fn same_person_in_a_second_app_is_the_same_user_on_sqlite() {
    same_person_in_a_second_app_is_the_same_user(Db::Sqlite).await;
}

#[tokio::test]
async fn same_person_under_another_open_platform_is_another_user() {
    let app = spawn_app().await;
    let acme = app.login(MP1, "carol").await;
    let globex = app.login(MP_OTHER, "carol").await;
    assert_eq!(globex["isNewUser"], true);
    assert_ne!(acme["user"]["id"], globex["user"]["id"]);
    assert_ne!(acme["user"]["unionId"], globex["user"]["unionId"]);
}

#[tokio::test]
async fn a_reused_code_is_invalid_code_with_errcode_40163() {
    let app = spawn_app().await;
    let code = app.mint_code(MP1, "dave").await;
    assert!(app.login_with_code(MP1, &code).await["errors"].is_null());
    let v = app.login_with_code(MP1, &code).await;
    assert_eq!(error_code(&v), Some("INVALID_CODE"));
    assert_eq!(v["errors"][0]["extensions"]["wechatErrcode"], 40163);
    assert!(
        v["errors"][0]["extensions"]["wechatErrmsg"]
            .as_str()
            .unwrap()
            .contains("code been used")
    );
}

#[tokio::test]
async fn a_made_up_code_is_invalid_code_with_errcode_40029() {
    let app = spawn_app().await;
    let v = app.login_with_code(MP1, "0a1b2c3d4e5f").await;
    assert_eq!(error_code(&v), Some("INVALID_CODE"));
    assert_eq!(v["errors"][0]["extensions"]["wechatErrcode"], 40029);
}

#[tokio::test]
async fn an_unconfigured_app_is_unknown_app() {
    let app = spawn_app().await;
    let v = app.login_with_code("wx9999999999999999", "somecode").await;
    assert_eq!(error_code(&v), Some("UNKNOWN_APP"));
    assert_eq!(app.sim_counts().await.get("sns/jscode2session"), None);
}

#[tokio::test]
async fn an_oauth_code_from_a_website_or_official_account_logs_in_the_same_user() {
    let app = spawn_app().await;
    let mini = app.login(MP1, "olga").await;
    let web = app.login(WEB, "olga").await;
    assert_eq!(web["isNewUser"], false);
    assert_eq!(web["user"]["id"], mini["user"]["id"]);
    assert_eq!(web["identity"]["appKind"], "WEBSITE");
    let oa = app.login(OA, "olga").await;
    assert_eq!(oa["user"]["id"], mini["user"]["id"]);
    assert_eq!(oa["identity"]["appKind"], "OFFICIAL_ACCOUNT");
    assert_eq!(oa["user"]["identities"].as_array().unwrap().len(), 3);
    let counts = app.sim_counts().await;
    assert_eq!(counts["sns/oauth2/access_token"], 2);
    assert_eq!(counts["sns/jscode2session"], 1);
    // OAuth codes are single use too.
    let code = app.mint_code(WEB, "olga").await;
    assert!(app.login_with_code(WEB, &code).await["errors"].is_null());
    let v = app.login_with_code(WEB, &code).await;
    assert_eq!(error_code(&v), Some("INVALID_CODE"));
    assert_eq!(v["errors"][0]["extensions"]["wechatErrcode"], 40163);
}

#[tokio::test]
async fn malformed_arguments_are_bad_request_and_reach_no_one() {
    let app = spawn_app().await;
    for (app_id, code) in [
        (MP1, ""),
        (MP1, "   "),
        ("not-an-appid", "abc"),
        (MP1, "a\u{0}b"),
    ] {
        let v = app.login_with_code(app_id, code).await;
        assert_eq!(
            error_code(&v),
            Some("BAD_REQUEST"),
            "{app_id:?} {code:?}: {v}"
        );
    }
    // A missing argument is rejected by GraphQL validation, also as BAD_REQUEST.
    let v = app
        .graphql(
            "mutation { loginWithCode(appId: \"wx1000000000000001\") { sessionToken } }",
            json!({}),
            None,
        )
        .await;
    assert_eq!(error_code(&v), Some("BAD_REQUEST"));
    assert_eq!(app.sim_counts().await.get("sns/jscode2session"), None);
    assert_eq!(app.count("SELECT COUNT(*) FROM users").await, 0);
}

#[tokio::test]
async fn wechat_rate_limit_is_rate_limited() {
    let app = spawn_app().await;
    app.sim_post("/sim/faults", json!({ "api": "sns/jscode2session", "errcode": 45011, "errmsg": "api minute-quota reach limit" }))
        .await;
    let code = app.mint_code(MP1, "erin").await;
    let v = app.login_with_code(MP1, &code).await;
    assert_eq!(error_code(&v), Some("RATE_LIMITED"));
    assert_eq!(v["errors"][0]["extensions"]["wechatErrcode"], 45011);
}

#[tokio::test]
async fn a_busy_wechat_is_retried_once_then_upstream_error() {
    let app = spawn_app().await;
    // One -1 is absorbed by the retry.
    app.sim_post(
        "/sim/faults",
        json!({ "api": "sns/jscode2session", "errcode": -1, "errmsg": "system error" }),
    )
    .await;
    let code = app.mint_code(MP1, "frank").await;
    assert!(app.login_with_code(MP1, &code).await["errors"].is_null());
    // Two in a row exhaust it.
    app.sim_post(
        "/sim/faults",
        json!({ "api": "sns/jscode2session", "errcode": -1, "times": 2 }),
    )
    .await;
    let code = app.mint_code(MP1, "frank").await;
    let v = app.login_with_code(MP1, &code).await;
    assert_eq!(error_code(&v), Some("UPSTREAM_ERROR"));
    assert_eq!(v["errors"][0]["extensions"]["wechatErrcode"], -1);
    assert_eq!(app.sim_counts().await["sns/jscode2session"], 4);
}

#[tokio::test]
async fn a_wrong_app_secret_is_an_upstream_error_without_the_secret() {
    let tmp = tempfile::tempdir().unwrap();
    // A simulator that knows MP1 under another secret.
    let config = load_config(
        tmp.path(),
        &APPS_TOML.replace("secret = \"secret-", "secret = \"the-real-secret-"),
    );
    let sim = wxunion::sim::Simulator::spawn(sim_apps(&config), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let other = spawn_with(Options {
        sim: Some(sim),
        ..Options::default()
    })
    .await;
    let code = other.mint_code(MP1, "gina").await;
    let v = other.login_with_code(MP1, &code).await;
    assert_eq!(error_code(&v), Some("UPSTREAM_ERROR"));
    assert_eq!(v["errors"][0]["extensions"]["wechatErrcode"], 40125);
    assert!(!v.to_string().contains("secret-mp1"));
}

#[tokio::test]
async fn the_session_key_never_leaves_the_server_but_is_kept_in_the_cache() {
    let app = spawn_app().await;
    let code = app.mint_code(MP1, "hank").await;
    let login = app.login_with_code(MP1, &code).await;
    let token = login["data"]["loginWithCode"]["sessionToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let open_id = login["data"]["loginWithCode"]["identity"]["openId"]
        .as_str()
        .unwrap()
        .to_owned();
    let union_id = login["data"]["loginWithCode"]["user"]["unionId"]
        .as_str()
        .unwrap()
        .to_owned();
    let me = app.graphql(ME, json!({}), Some(&token)).await;
    let user = app.user(&union_id, Some(API_KEY)).await;
    let metrics = app.metrics().await;
    let keys = app.sim.state.world().session_keys.clone();
    assert_eq!(keys.len(), 1);
    for body in [login.to_string(), me.to_string(), user.to_string(), metrics] {
        assert!(!body.contains(&keys[0]), "session_key leaked: {body}");
        assert!(!body.contains("session_key") && !body.contains("sessionKey"));
    }
    let mut redis = redis::Client::open("redis://127.0.0.1:6379")
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let cached: Option<String> = redis::cmd("GET")
        .arg(format!("{}session_key:{MP1}:{open_id}", app.redis_prefix))
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(cached.as_deref(), Some(keys[0].as_str()));
}

#[tokio::test]
async fn fifty_concurrent_first_logins_over_three_apps_make_one_user() {
    // 50 logins at once on this test's one runtime thread (debug build) take longer than the
    // 1 s production bound of request-path database work: the bound is not what this proves.
    let app = spawn_with(Options {
        extra: HEAVY_LOAD.into(),
        ..Options::default()
    })
    .await;
    let apps = [MP1, MP2, MP3];
    let mut codes = Vec::new();
    for i in 0..50 {
        let app_id = apps[i % 3];
        codes.push((app_id, app.mint_code(app_id, "ivy").await));
    }
    let logins = futures::future::join_all(
        codes
            .iter()
            .map(|(app_id, code)| app.login_with_code(app_id, code)),
    )
    .await;
    let mut user_ids = std::collections::HashSet::new();
    let mut new_users = 0;
    for v in &logins {
        assert!(v["errors"].is_null(), "{v}");
        user_ids.insert(
            v["data"]["loginWithCode"]["user"]["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
        if v["data"]["loginWithCode"]["isNewUser"] == true {
            new_users += 1;
        }
    }
    assert_eq!(user_ids.len(), 1, "one person must be one user");
    assert_eq!(new_users, 1, "exactly one login created the user");
    assert_eq!(app.count("SELECT COUNT(*) FROM users").await, 1);
    assert_eq!(app.count("SELECT COUNT(*) FROM identities").await, 3);
    assert_eq!(app.count("SELECT COUNT(*) FROM sessions").await, 50);
}

#[tokio::test]
async fn codes_minted_in_one_batch_each_log_their_own_person_in_once() {
    let app = spawn_app().await;
    let minted = app
        .sim_post(
            "/sim/codes",
            json!({ "app_id": MP1, "people": ["erin", "frank", "erin"] }),
        )
        .await;
    let codes: Vec<&str> = minted["codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(codes.len(), 3);
    let first = app.login_with_code(MP1, codes[0]).await;
    let second = app.login_with_code(MP1, codes[1]).await;
    let third = app.login_with_code(MP1, codes[2]).await;
    let user = |v: &serde_json::Value| v["data"]["loginWithCode"]["user"]["id"].clone();
    assert_ne!(user(&first), user(&second));
    assert_eq!(user(&first), user(&third));
    assert_eq!(third["data"]["loginWithCode"]["isNewUser"], false);
    // Each code is single use, like one from `/sim/code`.
    let again = app.login_with_code(MP1, codes[1]).await;
    assert_eq!(error_code(&again), Some("INVALID_CODE"));
    // An unknown app mints nothing.
    let refused = app
        .http
        .post(app.sim_url("/sim/codes"))
        .json(&json!({ "app_id": "wx0000000000000000", "people": ["x"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 404);
}

/// The one-statement path of a returning login (PostgreSQL) applies exactly when the login
/// links nothing new, and then leaves what the general link would; otherwise it writes nothing.
#[tokio::test]
async fn a_returning_login_is_one_statement_only_when_it_links_nothing_new() {
    use wxunion::domain::AppId;
    use wxunion::store::links::{Sighting, link};
    use wxunion::store::sessions::{ReturningLogin, login_returning};

    let app = spawn_app().await;
    let db = app.db().await;
    let config = app.config.app(MP1).unwrap().clone();
    let app_id = AppId::parse(MP1).unwrap();
    let scope = config.scope();
    let now = chrono::Utc::now();
    let attempt = |open_id: &'static str, union_id: Option<&'static str>, token: &'static str| {
        let (db, app_id, scope) = (db.clone(), app_id.clone(), scope.clone());
        async move {
            login_returning(
                &db,
                &ReturningLogin {
                    app_id,
                    scope,
                    open_id: open_id.to_owned(),
                    union_id: union_id.map(str::to_owned),
                    token_hash: token.to_owned(),
                    now,
                    expires_at: now + chrono::Duration::hours(1),
                },
            )
            .await
            .unwrap()
        }
    };
    let sighting = |open_id: &'static str, union_id: Option<&'static str>| Sighting {
        app: &config,
        open_id,
        union_id,
        seen_at: now - chrono::Duration::minutes(5),
        subscription: None,
        union_lookup: None,
    };
    let written = || async {
        (
            app.count("SELECT COUNT(*) FROM sessions").await,
            app.count("SELECT COUNT(*) FROM events WHERE kind = 'login'")
                .await,
        )
    };

    // Never seen: the general path's job.
    assert!(
        attempt("oReturning000000000000000001", None, "t1")
            .await
            .is_none()
    );
    // Known with its unionid; a second person known without one yet.
    link(
        &db,
        &sighting(
            "oReturning000000000000000001",
            Some("uReturning00000000000000001"),
        ),
    )
    .await
    .unwrap();
    link(&db, &sighting("oReturning000000000000000002", None))
        .await
        .unwrap();
    assert_eq!(written().await, (0, 0));

    // A unionid the user does not hold yet (adopt) or another one (conflict): nothing written.
    assert!(
        attempt(
            "oReturning000000000000000002",
            Some("uReturning00000000000000002"),
            "t2"
        )
        .await
        .is_none()
    );
    assert!(
        attempt(
            "oReturning000000000000000001",
            Some("uReturning00000000000000009"),
            "t3"
        )
        .await
        .is_none()
    );
    assert_eq!(written().await, (0, 0));

    // Its own unionid, or none at all: one session, one LOGIN, the identity touched.
    let (user, identity) = attempt(
        "oReturning000000000000000001",
        Some("uReturning00000000000000001"),
        "t4",
    )
    .await
    .unwrap();
    assert_eq!(
        user.union_id.as_ref().map(|u| u.as_str()),
        Some("uReturning00000000000000001")
    );
    assert_eq!(identity.user_id, user.id);
    assert_eq!(
        identity.last_seen_at.timestamp_micros(),
        now.timestamp_micros()
    );
    assert!(identity.union_lookup.is_none());
    let (_, without) = attempt("oReturning000000000000000002", None, "t5")
        .await
        .unwrap();
    assert!(without.union_id.is_none());
    assert_eq!(
        without.union_lookup,
        Some(wxunion::domain::UnionLookup::Answered)
    );
    assert_eq!(written().await, (2, 2));
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) FROM sessions WHERE token_hash = 't4' AND user_id = '{}'",
            user.id.as_str()
        ))
        .await,
        1
    );
}

#[tokio::test]
async fn concurrent_returning_logins_of_one_person_each_open_a_session() {
    const LOGINS: usize = 16;
    let app = spawn_app().await;
    let first = app.login(MP1, "hana").await;
    let mut codes = Vec::new();
    for _ in 0..LOGINS {
        codes.push(app.mint_code(MP1, "hana").await);
    }
    let logins = codes.iter().map(|code| app.login_with_code(MP1, code));
    for v in futures::future::join_all(logins).await {
        assert!(v["errors"].is_null(), "{v}");
        assert_eq!(
            v["data"]["loginWithCode"]["user"]["id"],
            first["user"]["id"]
        );
    }
    assert_eq!(
        app.count("SELECT COUNT(*) FROM sessions").await,
        LOGINS as i64 + 1
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM events WHERE kind = 'login'")
            .await,
        LOGINS as i64 + 1
    );
}

/// Returning logins of many people at once share statements (`wxunion_login_batch_size`):
/// each still gets its own session, on its own user, and one `LOGIN`.
#[tokio::test]
async fn concurrent_returning_logins_of_many_people_each_open_their_own_session() {
    const PEOPLE: usize = 8;
    const EACH: usize = 4;
    let app = spawn_app().await;
    let mut users = std::collections::HashMap::new();
    let mut codes = Vec::new();
    for p in 0..PEOPLE {
        let person = format!("crowd-{p}");
        let first = app.login(MP1, &person).await;
        users.insert(person.clone(), first["user"]["id"].clone());
        for _ in 0..EACH {
            codes.push((person.clone(), app.mint_code(MP1, &person).await));
        }
    }
    let app = &app;
    let logins = codes
        .iter()
        .map(|(person, code)| async move { (person, app.login_with_code(MP1, code).await) });
    for (person, v) in futures::future::join_all(logins).await {
        assert!(v["errors"].is_null(), "{v}");
        assert_eq!(v["data"]["loginWithCode"]["user"]["id"], users[person]);
        assert_eq!(v["data"]["loginWithCode"]["isNewUser"], false);
    }
    let total = (PEOPLE * (EACH + 1)) as i64;
    assert_eq!(app.count("SELECT COUNT(*) FROM sessions").await, total);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM events WHERE kind = 'login'")
            .await,
        total
    );
    assert_eq!(
        app.count(
            "SELECT COUNT(*) FROM sessions s JOIN identities i ON i.id = s.identity_id \
             WHERE i.user_id <> s.user_id"
        )
        .await,
        0
    );
    let metrics = app.metrics().await;
    assert!(metrics.contains("wxunion_login_batch_size"), "{metrics}");
    assert!(metrics.contains("wxunion_login_flush_seconds"), "{metrics}");
}

/// Clients that give up mid-login (a mini program losing its network) must not leave a
/// transaction open on a pooled connection: later logins on that connection would run inside
/// it, answer as if committed, and vanish. Hundreds of logins are abandoned at random moments,
/// some inside `BEGIN`, then every later login must be committed.
#[tokio::test]
async fn clients_giving_up_mid_login_leave_no_transaction_open_behind() {
    let app = spawn_with(Options {
        extra: "database_max_connections = 1\nlogin_rate_per_client = 0".into(),
        ..Options::default()
    })
    .await;
    let mut abandoned = Vec::new();
    for round in 0..400 {
        let code = app.mint_code(MP1, &format!("gone-{}", round % 200)).await;
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_micros(
                5_000 + (round * 7919) % 60_000,
            ))
            .build()
            .unwrap();
        let url = app.url("/graphql");
        abandoned.push(tokio::spawn(async move {
            let _ = client
                .post(url)
                .json(&json!({ "query": LOGIN, "variables": { "appId": MP1, "code": code } }))
                .send()
                .await;
        }));
    }
    for a in abandoned {
        a.await.unwrap();
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;

    // Every later login's session is committed (looked up by the hash it is stored under).
    logins_commit_their_sessions(&app, "later", 20).await;
    let open = app
        .count(
            "SELECT COUNT(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND state LIKE 'idle in transaction%'",
        )
        .await;
    assert_eq!(open, 0, "a pooled connection was left inside a transaction");
}

/// A login whose client gives up while its database work waits still runs to its end (the
/// use case is not cut off half-way through a transaction): once the database lets it go
/// on, its session is committed.
#[tokio::test]
async fn a_login_abandoned_by_its_client_still_runs_to_its_end() {
    let app = spawn_app().await;
    // Another writer is creating ivan's user and has not committed: the login's own insert
    // of that user waits inside its transaction.
    let (_blocker_db, blocker) = creating_the_user_of(&app, "ivan").await;
    let code = app.mint_code(MP1, "ivan").await;
    let impatient = reqwest::Client::builder()
        .timeout(std::time::Duration::from_millis(500))
        .build()
        .unwrap();
    let gave_up = impatient
        .post(app.url("/graphql"))
        .json(&json!({ "query": LOGIN, "variables": { "appId": MP1, "code": code } }))
        .send()
        .await;
    assert!(gave_up.is_err(), "the login should still be waiting");
    assert_eq!(app.count("SELECT COUNT(*) FROM sessions").await, 0);
    blocker.rollback().await.unwrap();
    eventually(10, || async {
        (app.count("SELECT COUNT(*) FROM sessions").await == 1).then_some(())
    })
    .await;
    assert_eq!(
        app.count("SELECT COUNT(*) FROM events WHERE kind = 'login'")
            .await,
        1
    );
}

/// Past its bound a login is answered `INTERNAL`, but the transaction it had begun is not cut
/// off: it ends on its own once the database lets it, and leaves no connection inside it.
#[tokio::test]
async fn a_login_past_its_database_bound_answers_but_its_transaction_still_ends_cleanly() {
    let app = spawn_with(Options {
        extra: "database_timeout_ms = 100\ndatabase_max_connections = 2".into(),
        ..Options::default()
    })
    .await;
    let (_blocker_db, blocker) = creating_the_user_of(&app, "jun").await;
    let started = std::time::Instant::now();
    let v = app
        .login_with_code(MP1, &app.mint_code(MP1, "jun").await)
        .await;
    assert_eq!(error_code(&v), Some("INTERNAL"), "{v}");
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
    blocker.rollback().await.unwrap();
    // The login's transaction goes on and commits; nothing is left open.
    eventually(10, || async {
        (app.count("SELECT COUNT(*) FROM sessions").await == 1).then_some(())
    })
    .await;
    logins_commit_their_sessions(&app, "after", 4).await;
    let open = app
        .count(
            "SELECT COUNT(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND state LIKE 'idle in transaction%'",
        )
        .await;
    assert_eq!(open, 0);
}

/// An open transaction that has inserted `person`'s user (in MP1's scope) and not committed:
/// a login of that person waits on it inside its own transaction until it ends. Keep the
/// connection alive as long as the transaction.
async fn creating_the_user_of(
    app: &TestApp,
    person: &str,
) -> (sea_orm::DatabaseConnection, sea_orm::DatabaseTransaction) {
    use sea_orm::{ConnectionTrait, TransactionTrait};
    let known = get_json(&app.http, &app.sim_url(&format!("/sim/people/{person}"))).await;
    let union_id = known["apps"][MP1]["unionid"].as_str().unwrap().to_owned();
    let scope = app.config.app(MP1).unwrap().scope();
    let db = app.db().await;
    let txn = db.begin().await.unwrap();
    txn.execute_unprepared(&format!(
        "INSERT INTO users (id, scope, union_id, created_at, updated_at) \
         VALUES ('0000000000000000-blocker', '{scope}', '{union_id}', now(), now())"
    ))
    .await
    .unwrap();
    (db, txn)
}

/// Logs `n` new people in (`<prefix>-0`, …) and checks each answered session is committed,
/// looked up by the hash it is stored under.
async fn logins_commit_their_sessions(app: &TestApp, prefix: &str, n: usize) {
    for i in 0..n {
        let v = app.login(MP1, &format!("{prefix}-{i}")).await;
        let token = v["sessionToken"].as_str().unwrap_or_else(|| panic!("{v}"));
        let stored = app
            .count(&format!(
                "SELECT COUNT(*) FROM sessions WHERE token_hash = '{}'",
                wxunion::config::sha256_hex(token)
            ))
            .await;
        assert_eq!(
            stored, 1,
            "login {i} answered but its session was not committed"
        );
    }
}

/// A pooled connection keeps a statement's cached (generic) plan for its whole life. On the
/// returning-login writer's pool (`store::INDEX_ONLY`), one planned while `users` held a few
/// hundred rows must still find the user by its key once the table has grown: with the plan
/// PostgreSQL picks for a small table, every returning login scanned all of `users` (seen in
/// `bench/login.sh`, where 5,000 users made it cost hundreds of µs; without the settings this
/// test reads 200,020 rows).
#[tokio::test]
async fn a_returning_login_planned_on_a_tiny_table_does_not_scan_users_once_it_has_grown() {
    use sea_orm::ConnectionTrait;
    use wxunion::domain::AppId;
    use wxunion::store::sessions::{ReturningLogin, login_returning};

    const GROWN_TO: i64 = 20_000;
    let app = spawn_app().await;
    let person = app.login(MP1, "tiny-table").await;
    let open_id = person["identity"]["openId"].as_str().unwrap().to_owned();
    // A pool like the returning-login writer's, of one connection, so that every login below
    // runs on the backend that cached the plan.
    let db = wxunion::store::connect_with(
        &app.database_url,
        1,
        std::time::Duration::from_secs(10),
        wxunion::store::INDEX_ONLY,
    )
    .await
    .unwrap();
    let config = app.config.app(MP1).unwrap().clone();
    let app_id = AppId::parse(MP1).unwrap();
    let scope = config.scope();
    let login = |n: usize| {
        let (db, app_id, scope, open_id) = (&db, &app_id, &scope, &open_id);
        async move {
            let now = chrono::Utc::now();
            let token = format!("tiny-table-{n}");
            login_returning(
                db,
                &ReturningLogin {
                    app_id: app_id.clone(),
                    scope: scope.clone(),
                    open_id: open_id.clone(),
                    union_id: None,
                    token_hash: token,
                    now,
                    expires_at: now + chrono::Duration::hours(1),
                },
            )
            .await
            .unwrap()
            .expect("the person is known: the one-statement path applies")
        }
    };
    let admin = app.db().await;
    // A young deployment: a few hundred users, statistics to match (as autovacuum leaves them).
    admin
        .execute_unprepared(
            "INSERT INTO users (id, scope, union_id, created_at, updated_at) \
             SELECT 'grown-' || g, 'grown', 'grown-' || g, now(), now() \
             FROM generate_series(1, 300) g; ANALYZE users",
        )
        .await
        .unwrap();
    // The sixth execution on a connection may switch to the generic plan; give it room.
    for n in 0..10 {
        login(n).await;
    }
    // Grown since, and not analyzed again yet.
    admin
        .execute_unprepared(&format!(
            "INSERT INTO users (id, scope, union_id, created_at, updated_at) \
             SELECT 'grown-' || g, 'grown', 'grown-' || g, now(), now() \
             FROM generate_series(301, {GROWN_TO}) g"
        ))
        .await
        .unwrap();
    let before = rows_read_by_sequential_scans(&db, "users").await;
    for n in 10..20 {
        login(n).await;
    }
    let read = rows_read_by_sequential_scans(&db, "users").await - before;
    assert!(
        read < GROWN_TO,
        "ten returning logins read {read} rows of users by sequential scan (the table has {} rows)",
        GROWN_TO + 1
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM sessions WHERE token_hash LIKE 'tiny-table-%'")
            .await,
        20
    );
    db.close().await.unwrap();
}

/// Many returning logins in one statement: each answered in its own position, each written
/// once; those the one-statement path does not take (unknown, a unionid to adopt, the same
/// identity a second time) write nothing and are answered `None` for the general path.
#[tokio::test]
async fn a_batch_of_returning_logins_answers_each_in_place_and_writes_only_those_it_took() {
    use wxunion::domain::AppId;
    use wxunion::store::sessions::{ReturningLogin, login_returning_batch};

    let app = spawn_app().await;
    let mut known = Vec::new();
    for person in ["batched-0", "batched-1", "batched-2", "batched-3"] {
        let v = app.login(MP1, person).await;
        known.push(v["identity"]["openId"].as_str().unwrap().to_owned());
    }
    let before = (
        app.count("SELECT COUNT(*) FROM sessions").await,
        app.count("SELECT COUNT(*) FROM events WHERE kind = 'login'")
            .await,
    );
    let db = app.db().await;
    let scope = app.config.app(MP1).unwrap().scope();
    let now = chrono::Utc::now();
    let login = |open_id: &str, union_id: Option<&str>, token: &str| ReturningLogin {
        app_id: AppId::parse(MP1).unwrap(),
        scope: scope.clone(),
        open_id: open_id.to_owned(),
        union_id: union_id.map(str::to_owned),
        token_hash: token.to_owned(),
        now,
        expires_at: now + chrono::Duration::hours(1),
    };
    let batch = [
        login(&known[2], None, "b0"),
        login("oNeverSeen0000000000000000001", None, "b1"),
        login(&known[0], None, "b2"),
        login(&known[2], None, "b3"), // the same identity again: not in this statement
        login(&known[3], Some("uNotItsUnionId0000000000001"), "b4"),
        login(&known[1], None, "b5"),
        login(&known[3], None, "b6"), // after its first, which was not taken: not either
    ];
    let answers = login_returning_batch(&db, &batch).await.unwrap();
    let taken: Vec<Option<&str>> = answers
        .iter()
        .map(|a| a.as_ref().map(|(_, identity)| identity.open_id.as_str()))
        .collect();
    assert_eq!(
        taken,
        [
            Some(known[2].as_str()),
            None,
            Some(known[0].as_str()),
            None,
            None,
            Some(known[1].as_str()),
            None,
        ]
    );
    for (user, identity) in answers.iter().flatten() {
        assert_eq!(identity.user_id, user.id);
    }
    assert_eq!(
        (
            app.count("SELECT COUNT(*) FROM sessions").await - before.0,
            app.count("SELECT COUNT(*) FROM events WHERE kind = 'login'")
                .await
                - before.1,
        ),
        (3, 3)
    );
    // Each session went to the login that carried its token, on that person's identity.
    for (token, open_id) in [("b0", &known[2]), ("b2", &known[0]), ("b5", &known[1])] {
        assert_eq!(
            app.count(&format!(
                "SELECT COUNT(*) FROM sessions s JOIN identities i ON i.id = s.identity_id \
                 WHERE s.token_hash = '{token}' AND i.open_id = '{open_id}'"
            ))
            .await,
            1,
            "session {token}"
        );
    }
    db.close().await.unwrap();
}

/// Only the returning-login writer's pool prices sequential scans out: on the main pool the
/// job gauges count whole tables, and with scans priced out PostgreSQL gave up parallelism and
/// compiled them with JIT (342 ms against 79 ms for 400,000 jobs).
#[tokio::test]
async fn only_the_returning_login_pool_prices_out_sequential_scans() {
    use sea_orm::{ConnectionTrait, Statement};
    let app = spawn_app().await;
    let show = |db: sea_orm::DatabaseConnection| async move {
        let mut settings = Vec::new();
        for name in ["enable_seqscan", "jit"] {
            let row = db
                .query_one_raw(Statement::from_string(
                    db.get_database_backend(),
                    format!("SHOW {name}"),
                ))
                .await
                .unwrap()
                .unwrap();
            settings.push(row.try_get_by_index::<String>(0).unwrap());
        }
        db.close().await.unwrap();
        settings
    };
    // The server's own `jit` setting stands on the main pool.
    assert_eq!(show(app.db().await).await[0], "on");
    let writer_pool = wxunion::store::connect_with(
        &app.database_url,
        1,
        std::time::Duration::from_secs(10),
        wxunion::store::INDEX_ONLY,
    )
    .await
    .unwrap();
    assert_eq!(show(writer_pool).await, ["off", "off"]);
}
