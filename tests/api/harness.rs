//! The test harness itself: every test leaves no database and no Redis keys behind.

use crate::helpers::*;

async fn database_exists(url: &str) -> bool {
    use sea_orm::{ConnectionTrait, Statement};
    let name = url.rsplit('/').next().unwrap().to_owned();
    let admin = sea_orm::Database::connect("postgres://postgres@127.0.0.1:5432/postgres")
        .await
        .unwrap();
    let row = admin
        .query_one_raw(Statement::from_sql_and_values(
            sea_orm::DbBackend::Postgres,
            "SELECT COUNT(*) FROM pg_database WHERE datname = $1",
            [name.into()],
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get_by_index::<i64>(0).unwrap() == 1
}

async fn redis_keys(prefix: &str) -> usize {
    let client = redis::Client::open("redis://127.0.0.1:6379").unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    keys.len()
}

#[tokio::test]
async fn a_failing_test_still_removes_its_database_and_redis_keys() {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let failing = tokio::spawn(async move {
        let app = spawn_app().await;
        app.login(MP1, "fay").await; // leaves a cached session key in Redis
        tx.send((app.database_url.clone(), app.redis_prefix.clone()))
            .unwrap();
        panic!("this test fails on purpose");
    });
    assert!(failing.await.unwrap_err().is_panic());
    let (url, prefix) = rx.await.unwrap();
    assert!(!database_exists(&url).await, "{url} was left behind");
    assert_eq!(
        redis_keys(&prefix).await,
        0,
        "keys under {prefix} were left"
    );
}

#[tokio::test]
async fn a_passing_test_removes_its_database_and_redis_keys() {
    let app = spawn_app().await;
    app.login(MP1, "pat").await;
    let (url, prefix) = (app.database_url.clone(), app.redis_prefix.clone());
    assert!(database_exists(&url).await);
    assert!(redis_keys(&prefix).await > 0);
    drop(app);
    assert!(!database_exists(&url).await, "{url} was left behind");
    assert_eq!(redis_keys(&prefix).await, 0);
}
