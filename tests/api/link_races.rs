//! Concurrent links of one identity on PostgreSQL: the interleavings a busy server produces,
//! forced in order with row locks held by the test, so each proves its outcome every run.

use std::sync::Arc;
use std::time::Duration;

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement, TransactionTrait};
use wxunion::config::Config;
use wxunion::store::links::{Linked, Sighting, link};

use crate::helpers::*;

const FOLLOWER: &str = "oFollowerRace0000000000000001";
const MP_OPENID: &str = "oMiniProgramRace000000000001";
const UNION: &str = "oUnionRace000000000000000001";

/// Links what `app_id` reports about a person, now, as a job or a login would.
async fn link_now(
    db: &DatabaseConnection,
    config: &Config,
    app_id: &str,
    open_id: &str,
    union_id: Option<&str>,
) -> Linked {
    let sighting = Sighting {
        app: config.app(app_id).unwrap(),
        open_id,
        union_id,
        seen_at: chrono::Utc::now(),
        subscription: None,
        union_lookup: None,
    };
    link(db, &sighting).await.unwrap()
}

/// How many statements in this database are waiting for a lock held by another transaction.
async fn waiting_on_locks(observer: &DatabaseConnection) -> i64 {
    let row = observer
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT COUNT(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get_by_index(0).unwrap()
}

async fn until_waiting(observer: &DatabaseConnection, n: i64) {
    eventually(15, || async {
        (waiting_on_locks(observer).await == n).then_some(())
    })
    .await;
}

async fn one_string(db: &DatabaseConnection, sql: &str, arg: &str) -> Option<String> {
    let row = db
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            sql,
            [arg.into()],
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get_by_index(0).unwrap()
}

#[tokio::test]
async fn an_identity_touched_while_its_user_is_merged_stays_with_the_surviving_user() {
    let test_db = fresh_postgres().await;
    let db = wxunion::store::connect(&test_db.url, 4).await.unwrap();
    wxunion::store::migrate(&db).await.unwrap();
    let observer = wxunion::store::connect(&test_db.url, 1).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let config = Arc::new(load_config(tmp.path(), APPS_TOML));

    // The person logged in from a mini program: the user of the unionid...
    let survivor = link_now(&db, &config, MP1, MP_OPENID, Some(UNION))
        .await
        .user
        .id;
    // ...and followed the account before `user/info` answered: a user of its own.
    let follower = link_now(&db, &config, OA, FOLLOWER, None).await;
    let merged_away = follower.user.id.as_str().to_owned();
    assert_ne!(survivor, follower.user.id);

    // A test transaction holds the follower's user row, so the merge below stops at its last
    // step (marking that user merged), after it has moved the identity.
    let blocker = db.begin().await.unwrap();
    blocker
        .execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT id FROM users WHERE id = $1 FOR UPDATE",
            [merged_away.clone().into()],
        ))
        .await
        .unwrap();

    // `user/info` answered with the unionid: the follower's user is merged into the survivor.
    let merge = tokio::spawn({
        let (db, config) = (db.clone(), config.clone());
        async move { link_now(&db, &config, OA, FOLLOWER, Some(UNION)).await }
    });
    until_waiting(&observer, 1).await;
    // Meanwhile another event of the same follower (its unionid still unknown to that job)
    // touches the identity: it reads the identity while the merge is uncommitted.
    let touch = tokio::spawn({
        let (db, config) = (db.clone(), config.clone());
        async move { link_now(&db, &config, OA, FOLLOWER, None).await }
    });
    until_waiting(&observer, 2).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    blocker.commit().await.unwrap();

    let merged = tokio::time::timeout(Duration::from_secs(30), merge)
        .await
        .unwrap()
        .unwrap();
    let touched = tokio::time::timeout(Duration::from_secs(30), touch)
        .await
        .unwrap()
        .unwrap();
    let stored_user = one_string(
        &observer,
        "SELECT user_id FROM identities WHERE open_id = $1",
        FOLLOWER,
    )
    .await;
    assert_eq!(
        stored_user.as_deref(),
        Some(survivor.as_str()),
        "the identity went back to the merged-away user {merged_away}"
    );
    let stored_union = one_string(
        &observer,
        "SELECT union_id FROM identities WHERE open_id = $1",
        FOLLOWER,
    )
    .await;
    assert_eq!(stored_union.as_deref(), Some(UNION));
    let merged_into = one_string(
        &observer,
        "SELECT merged_into FROM users WHERE id = $1",
        &merged_away,
    )
    .await;
    assert_eq!(merged_into.as_deref(), Some(survivor.as_str()));
    assert_eq!(merged.user.id, survivor);
    assert_eq!(
        touched.user.id, survivor,
        "the touch answered the merged-away user"
    );
    db.close().await.unwrap();
    observer.close().await.unwrap();
}
