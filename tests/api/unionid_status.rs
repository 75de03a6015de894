//! `Identity.unionIdStatus`: KNOWN, PENDING (queued, retrying, or parked and retryable) and
//! NOT_ELIGIBLE (no open platform, or WeChat gave none); and the warning for an app whose
//! logins stop returning unionids.

use serde_json::{Value, json};
use wxunion::sim::Simulator;

use crate::helpers::*;

/// An app configured with `open_platform = "acme"` that WeChat (the simulator) treats as
/// bound to none: its logins come back without a unionid.
const MP_UNBOUND: &str = "wx6000000000000001";

async fn status(app: &TestApp, app_id: &str, open_id: &str) -> Value {
    app.identity_as_service(app_id, open_id).await["unionIdStatus"].clone()
}

async fn job_status(app: &TestApp) -> Option<String> {
    use sea_orm::{ConnectionTrait, Statement};
    let db = app.db().await;
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT status FROM jobs ORDER BY id DESC LIMIT 1".to_owned(),
        ))
        .await
        .unwrap()?;
    let s: String = row.try_get_by_index(0).unwrap();
    db.close().await.unwrap();
    Some(s)
}

#[tokio::test]
async fn a_login_with_unionid_is_known() {
    let app = spawn_app().await;
    let v = app
        .graphql(
            "mutation($code: String!) { loginWithCode(appId: \"wx1000000000000001\", code: $code) { identity { unionIdStatus } user { identities { unionIdStatus } } } }",
            json!({ "code": app.mint_code(MP1, "alice").await }),
            None,
        )
        .await;
    assert!(v["errors"].is_null(), "{v}");
    assert_eq!(
        v["data"]["loginWithCode"]["identity"]["unionIdStatus"],
        "KNOWN"
    );
    assert_eq!(
        v["data"]["loginWithCode"]["user"]["identities"][0]["unionIdStatus"],
        "KNOWN"
    );
}

async fn an_account_without_open_platform_is_not_eligible(db: Db) {
    let app = spawn_with(Options {
        db,
        ..Options::default()
    })
    .await;
    let report = app
        .sim_post(
            "/sim/follow",
            json!({ "app_id": OA_UNBOUND, "person": "bob" }),
        )
        .await;
    let open_id = report["openid"].as_str().unwrap().to_owned();
    let identity = eventually(10, || async {
        let i = app.identity_as_service(OA_UNBOUND, &open_id).await;
        (i["subscribed"] == true).then_some(i)
    })
    .await;
    assert_eq!(identity["unionIdStatus"], "NOT_ELIGIBLE");
    assert!(identity["unionId"].is_null());
    // resolveOpenId asks and gets none: still not eligible.
    let v = app.resolve(OA_UNBOUND, &open_id, Some(API_KEY)).await;
    assert!(v["errors"].is_null(), "{v}");
    assert_eq!(status(&app, OA_UNBOUND, &open_id).await, "NOT_ELIGIBLE");
}

#[tokio::test]
async fn an_account_without_open_platform_is_not_eligible_on_postgres() {
    an_account_without_open_platform_is_not_eligible(Db::Postgres).await;
}

#[tokio::test]
async fn an_account_without_open_platform_is_not_eligible_on_sqlite() {
    an_account_without_open_platform_is_not_eligible(Db::Sqlite).await;
}

#[tokio::test]
async fn a_lookup_that_keeps_failing_is_pending_until_a_retry_succeeds() {
    let app = spawn_app().await;
    app.sim_post(
        "/sim/faults",
        json!({ "api": "cgi-bin/user/info", "errcode": -1, "times": 1000 }),
    )
    .await;
    let report = app
        .sim_post("/sim/follow", json!({ "app_id": OA, "person": "rita" }))
        .await;
    let open_id = report["openid"].as_str().unwrap().to_owned();
    // The follower is recorded, its unionid lookup fails and is retried: PENDING.
    eventually(15, || async {
        (app.count("SELECT COUNT(*) FROM jobs WHERE status = 'pending' AND attempts >= 2")
            .await
            == 1)
            .then_some(())
    })
    .await;
    let identity = app.identity_as_service(OA, &open_id).await;
    assert_eq!(identity["unionIdStatus"], "PENDING", "{identity}");
    assert!(identity["unionId"].is_null());
    // WeChat recovers; a resolveOpenId does the lookup now.
    app.sim_post("/sim/reset", json!({})).await;
    let v = app.resolve(OA, &open_id, Some(API_KEY)).await;
    assert!(v["errors"].is_null(), "{v}");
    assert_eq!(status(&app, OA, &open_id).await, "KNOWN");
}

async fn a_parked_lookup_stays_pending(db: Db) {
    let app = spawn_with(Options {
        db,
        ..Options::default()
    })
    .await;
    // A permanent error parks the job at once.
    app.sim_post(
        "/sim/faults",
        json!({ "api": "cgi-bin/user/info", "errcode": 40003, "times": 1 }),
    )
    .await;
    let report = app
        .sim_post("/sim/follow", json!({ "app_id": OA, "person": "paul" }))
        .await;
    let open_id = report["openid"].as_str().unwrap().to_owned();
    eventually(15, || async {
        (job_status(&app).await.as_deref() == Some("dead")).then_some(())
    })
    .await;
    assert_eq!(status(&app, OA, &open_id).await, "PENDING");
    // resolveOpenId can retry it.
    let v = app.resolve(OA, &open_id, Some(API_KEY)).await;
    assert!(v["errors"].is_null(), "{v}");
    assert_eq!(status(&app, OA, &open_id).await, "KNOWN");
}

#[tokio::test]
async fn a_parked_lookup_stays_pending_on_postgres() {
    a_parked_lookup_stays_pending(Db::Postgres).await;
}

#[tokio::test]
async fn a_parked_lookup_stays_pending_on_sqlite() {
    a_parked_lookup_stays_pending(Db::Sqlite).await;
}

/// wxunion configured with [`MP_UNBOUND`] (open platform acme) and the official account,
/// while the simulator has both bound to no open platform.
async fn spawn_with_unbound_apps() -> TestApp {
    let extra = format!(
        "[[apps]]\napp_id = \"{MP_UNBOUND}\"\nsecret = \"secret-unbound\"\nkind = \"mini_program\"\nopen_platform = \"acme\"\n"
    );
    let tmp = tempfile::tempdir().unwrap();
    let config = load_config(
        tmp.path(),
        &format!("listen = \"127.0.0.1:0\"\n{extra}{APPS_TOML}"),
    );
    let mut apps = sim_apps(&config);
    for a in &mut apps {
        if a.app_id == MP_UNBOUND || a.app_id == OA {
            a.open_platform = None;
        }
    }
    let sim = Simulator::spawn(apps, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    spawn_with(Options {
        extra,
        sim: Some(sim),
        ..Options::default()
    })
    .await
}

#[tokio::test]
async fn wechat_giving_no_unionid_is_not_eligible() {
    let app = spawn_with_unbound_apps().await;
    let login = app.login(MP_UNBOUND, "uma").await;
    assert!(login["user"]["unionId"].is_null());
    let open_id = login["identity"]["openId"].as_str().unwrap();
    assert_eq!(status(&app, MP_UNBOUND, open_id).await, "NOT_ELIGIBLE");
    // An official account that should have one: PENDING while user/info is asked (slowly
    // here), NOT_ELIGIBLE once it answered without one.
    app.sim_post(
        "/sim/faults",
        json!({ "api": "cgi-bin/user/info", "delay_ms": 2000 }),
    )
    .await;
    let report = app
        .sim_post("/sim/follow", json!({ "app_id": OA, "person": "uma" }))
        .await;
    let oa_open_id = report["openid"].as_str().unwrap().to_owned();
    let first = eventually(10, || async {
        let s = status(&app, OA, &oa_open_id).await;
        (!s.is_null()).then_some(s)
    })
    .await;
    assert_eq!(first, "PENDING");
    eventually(15, || async {
        (status(&app, OA, &oa_open_id).await == "NOT_ELIGIBLE").then_some(())
    })
    .await;
}

#[tokio::test]
async fn an_app_returning_no_unionid_for_twenty_logins_is_reported() {
    let app = spawn_with_unbound_apps().await;
    let gauge = format!("wxunion_app_unbound_suspected{{app_id=\"{MP_UNBOUND}\"}}");
    let value = |metrics: &str| -> Option<String> {
        metrics
            .lines()
            .find(|l| l.starts_with(&gauge))
            .map(|l| l.rsplit(' ').next().unwrap().to_owned())
    };
    for i in 1..20 {
        app.login(MP_UNBOUND, &format!("person{}", i % 3)).await;
    }
    assert_eq!(value(&app.metrics().await).as_deref(), Some("0"));
    app.login(MP_UNBOUND, "person0").await;
    assert_eq!(value(&app.metrics().await).as_deref(), Some("1"));
    // Apps that do return unionids are not suspected.
    app.login(MP1, "person0").await;
    let mp1 = format!("wxunion_app_unbound_suspected{{app_id=\"{MP1}\"}} 1");
    assert!(!app.metrics().await.contains(&mp1));
}

/// `wxunion_identities{app_id, unionid_status}` counts what `Identity.unionIdStatus` says, per
/// app, zero included.
async fn identities_are_counted_by_app_and_status(db: Db) {
    let app = spawn_with(Options {
        db,
        ..Options::default()
    })
    .await;
    app.login(MP1, "alice").await;
    app.login(MP1, "bob").await;
    let report = app
        .sim_post(
            "/sim/follow",
            json!({ "app_id": OA_UNBOUND, "person": "carl" }),
        )
        .await;
    let open_id = report["openid"].as_str().unwrap().to_owned();
    eventually(10, || async {
        let i = app.identity_as_service(OA_UNBOUND, &open_id).await;
        (i["unionIdStatus"] == "NOT_ELIGIBLE").then_some(())
    })
    .await;
    let service = app.service().await;
    let counts = service.identities_by_union_status().await.unwrap();
    let count = |app_id: &str, status: &str| {
        counts
            .iter()
            .find(|(a, s, _)| a == app_id && s.as_str() == status)
            .map(|(_, _, n)| *n)
    };
    assert_eq!(count(MP1, "known"), Some(2));
    assert_eq!(count(MP1, "pending"), Some(0));
    assert_eq!(count(OA_UNBOUND, "not_eligible"), Some(1));
    assert_eq!(count(OA_UNBOUND, "known"), Some(0));
    assert_eq!(
        count(MP2, "known"),
        Some(0),
        "every configured app is reported"
    );
}

#[tokio::test]
async fn identities_are_counted_by_app_and_status_on_postgres() {
    identities_are_counted_by_app_and_status(Db::Postgres).await;
}

#[tokio::test]
async fn identities_are_counted_by_app_and_status_on_sqlite() {
    identities_are_counted_by_app_and_status(Db::Sqlite).await;
}
