//! Ending sessions: `logout`, `revokeSessions`, visible on every instance at once (sessions
//! are read from the shared database on every request), and the prune of expired ones.

use serde_json::{Value, json};

use crate::helpers::*;

pub(crate) const LOGOUT: &str = "mutation { logout }";
pub(crate) const REVOKE: &str = "mutation($userId: ID!) { revokeSessions(userId: $userId) }";

impl TestApp {
    pub async fn logout(&self, bearer: Option<&str>) -> Value {
        self.graphql(LOGOUT, json!({}), bearer).await
    }

    pub async fn revoke_sessions(&self, user_id: &str, bearer: Option<&str>) -> Value {
        self.graphql(REVOKE, json!({ "userId": user_id }), bearer)
            .await
    }

    /// Whether `me` accepts this session token.
    pub async fn session_works(&self, token: &str) -> bool {
        let v = self.graphql(ME, json!({}), Some(token)).await;
        match error_code(&v) {
            None => true,
            Some("UNAUTHENTICATED") => false,
            Some(other) => panic!("unexpected {other}: {v}"),
        }
    }
}

/// A second instance on the first one's database, Redis prefix and simulator.
pub(crate) async fn second_instance(first: &TestApp) -> TestApp {
    spawn_with(Options {
        share: Some((first.database_url.clone(), first.redis_prefix.clone())),
        sim: Some(first.sim.clone()),
        ..Options::default()
    })
    .await
}

async fn logout_ends_the_calling_session_only(db: Db) {
    let app = spawn_with(Options {
        db,
        ..Options::default()
    })
    .await;
    let first = app.login(MP1, "alice").await;
    let second = app.login(MP2, "alice").await;
    let token = first["sessionToken"].as_str().unwrap();
    let other = second["sessionToken"].as_str().unwrap();
    assert!(app.session_works(token).await);

    let v = app.logout(Some(token)).await;
    assert!(v["errors"].is_null(), "{v}");
    assert_eq!(v["data"]["logout"], true);
    assert!(!app.session_works(token).await);
    assert!(app.session_works(other).await, "the other session lives on");
    // Ended is like unknown: UNAUTHENTICATED.
    assert_eq!(
        error_code(&app.logout(Some(token)).await),
        Some("UNAUTHENTICATED")
    );
    assert_eq!(app.count("SELECT COUNT(*) FROM sessions").await, 1);
}

#[tokio::test]
async fn logout_ends_the_calling_session_only_on_postgres() {
    logout_ends_the_calling_session_only(Db::Postgres).await;
}

#[tokio::test]
async fn logout_ends_the_calling_session_only_on_sqlite() {
    logout_ends_the_calling_session_only(Db::Sqlite).await;
}

#[tokio::test]
async fn logout_needs_a_session_token() {
    let app = spawn_app().await;
    assert_eq!(error_code(&app.logout(None).await), Some("UNAUTHENTICATED"));
    assert_eq!(
        error_code(&app.logout(Some("wxs_unknown")).await),
        Some("UNAUTHENTICATED")
    );
    // An API key is no session.
    assert_eq!(
        error_code(&app.logout(Some(API_KEY)).await),
        Some("UNAUTHENTICATED")
    );
}

#[tokio::test]
async fn logout_on_one_instance_is_refused_by_another_at_once() {
    let first = spawn_app().await;
    let second = second_instance(&first).await;
    let login = first.login(MP1, "alice").await;
    let token = login["sessionToken"].as_str().unwrap();
    // Warm both instances with the session first.
    assert!(first.session_works(token).await);
    assert!(second.session_works(token).await);
    let v = second.logout(Some(token)).await;
    assert_eq!(v["data"]["logout"], true, "{v}");
    // No wait, no retry: the very next request on the other instance is refused.
    assert!(!first.session_works(token).await);
    assert!(!second.session_works(token).await);
}

async fn revoke_sessions_ends_every_session_of_the_user(db: Db) {
    let app = spawn_with(Options {
        db,
        ..Options::default()
    })
    .await;
    let a = app.login(MP1, "alice").await;
    let b = app.login(MP2, "alice").await;
    let bob = app.login(MP1, "bob").await;
    let user_id = a["user"]["id"].as_str().unwrap();
    let v = app.revoke_sessions(user_id, Some(API_KEY)).await;
    assert!(v["errors"].is_null(), "{v}");
    assert_eq!(v["data"]["revokeSessions"], 2);
    for login in [&a, &b] {
        assert!(
            !app.session_works(login["sessionToken"].as_str().unwrap())
                .await
        );
    }
    assert!(
        app.session_works(bob["sessionToken"].as_str().unwrap())
            .await
    );
    // Again: nothing left to end. An id never seen: 0 as well.
    let v = app.revoke_sessions(user_id, Some(API_KEY)).await;
    assert_eq!(v["data"]["revokeSessions"], 0, "{v}");
    let v = app
        .revoke_sessions("01900000-0000-7000-8000-000000000000", Some(API_KEY))
        .await;
    assert_eq!(v["data"]["revokeSessions"], 0, "{v}");
    // A new login works again.
    let again = app.login(MP1, "alice").await;
    assert!(
        app.session_works(again["sessionToken"].as_str().unwrap())
            .await
    );
}

#[tokio::test]
async fn revoke_sessions_ends_every_session_of_the_user_on_postgres() {
    revoke_sessions_ends_every_session_of_the_user(Db::Postgres).await;
}

#[tokio::test]
async fn revoke_sessions_ends_every_session_of_the_user_on_sqlite() {
    revoke_sessions_ends_every_session_of_the_user(Db::Sqlite).await;
}

#[tokio::test]
async fn revocation_on_one_instance_is_refused_by_another_at_once() {
    let first = spawn_app().await;
    let second = second_instance(&first).await;
    let a = first.login(MP1, "alice").await;
    let b = second.login(MP2, "alice").await;
    let tokens = [
        a["sessionToken"].as_str().unwrap(),
        b["sessionToken"].as_str().unwrap(),
    ];
    for token in tokens {
        assert!(first.session_works(token).await);
        assert!(second.session_works(token).await);
    }
    let v = second
        .revoke_sessions(a["user"]["id"].as_str().unwrap(), Some(API_KEY))
        .await;
    assert_eq!(v["data"]["revokeSessions"], 2, "{v}");
    for token in tokens {
        assert!(!first.session_works(token).await);
        assert!(!second.session_works(token).await);
    }
}

#[tokio::test]
async fn revoke_sessions_of_a_merged_away_id_ends_the_survivors_sessions() {
    let app = spawn_app().await;
    let (login, merged_away, _) = crate::lookups::merge_a_follower_into_a_login(&app, "kim").await;
    let v = app.revoke_sessions(&merged_away, Some(API_KEY)).await;
    assert_eq!(v["data"]["revokeSessions"], 1, "{v}");
    assert!(
        !app.session_works(login["sessionToken"].as_str().unwrap())
            .await
    );
}

#[tokio::test]
async fn revoke_sessions_needs_a_service_api_key() {
    let app = spawn_app().await;
    let login = app.login(MP1, "alice").await;
    let token = login["sessionToken"].as_str().unwrap();
    let user_id = login["user"]["id"].as_str().unwrap();
    assert_eq!(
        error_code(&app.revoke_sessions(user_id, Some(token)).await),
        Some("FORBIDDEN")
    );
    assert_eq!(
        error_code(&app.revoke_sessions(user_id, None).await),
        Some("UNAUTHENTICATED")
    );
    assert_eq!(
        error_code(&app.revoke_sessions("nope!", Some(API_KEY)).await),
        Some("BAD_REQUEST")
    );
    assert!(app.session_works(token).await);
}

/// The use cases of `app` with a clock `ahead` of the real one, for prune tests.
pub(crate) async fn service_ahead(
    app: &TestApp,
    ahead: chrono::Duration,
) -> wxunion::identity::Service {
    let clock = wxunion::clock::OffsetClock::default();
    clock.advance(ahead);
    wxunion::identity::Service::connect(app.config.clone(), std::sync::Arc::new(clock))
        .await
        .unwrap()
}

#[tokio::test]
async fn expired_sessions_are_pruned() {
    let app = spawn_app().await;
    app.login(MP1, "alice").await;
    app.login(MP1, "bob").await;
    assert_eq!(app.count("SELECT COUNT(*) FROM sessions").await, 2);
    // A day later nothing has expired (sessions last 7 days).
    let pruned = service_ahead(&app, chrono::Duration::days(1))
        .await
        .prune()
        .await
        .unwrap();
    assert_eq!(pruned.sessions, 0);
    let pruned = service_ahead(&app, chrono::Duration::days(8))
        .await
        .prune()
        .await
        .unwrap();
    assert_eq!(pruned.sessions, 2);
    assert_eq!(app.count("SELECT COUNT(*) FROM sessions").await, 0);
}
