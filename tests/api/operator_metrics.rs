//! What operators watch: the callback's latency histogram, duplicates, the job queue gauges
//! (CONTRACT section 5), and the inbox and queue statements behind them.

use chrono::{Duration, Utc};
use serde_json::json;
use wxunion::domain::job::JobKind;
use wxunion::store::jobs::{self, NewJob, QueueStats};

use crate::helpers::*;

/// The value of the sample `series` (name and labels, exactly as rendered), if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

#[tokio::test]
async fn callbacks_are_timed_and_wechat_style_retries_counted_as_duplicates() {
    let app = spawn_app().await;
    let dupes = format!("wxunion_callback_duplicates_total{{app_id=\"{OA}\"}}");
    let before = sample(&app.metrics().await, &dupes).unwrap_or(0.0);

    // A follow, then the same event again (WeChat's retry: same CreateTime), and a text
    // message sent twice with one MsgId.
    let follow = json!({ "app_id": OA, "person": "mo", "create_time": 1795636100, "attempts": 3 });
    for _ in 0..2 {
        let report = app.sim_post("/sim/follow", follow.clone()).await;
        assert_eq!(report["delivered"], true, "{report}");
    }
    let message = json!({ "app_id": OA, "person": "mo", "content": "hi", "msg_id": 4242 });
    for _ in 0..2 {
        let report = app.sim_post("/sim/message", message.clone()).await;
        assert_eq!(report["delivered"], true, "{report}");
    }
    // Four answers, two recorded jobs, two duplicates that took no effect.
    assert_eq!(app.count("SELECT COUNT(*) FROM jobs").await, 2);
    let text = app.metrics().await;
    let after = sample(&text, &dupes).unwrap();
    // Other tests share the process-wide registry and this app id: at least our two.
    assert!(after >= before + 2.0, "{before} -> {after}");

    // The histogram has buckets up to WeChat's 5 s, and counted our answers.
    for le in ["0.001", "0.005", "0.1", "1", "5", "+Inf"] {
        let bucket = format!("wxunion_callback_seconds_bucket{{le=\"{le}\"}}");
        assert!(sample(&text, &bucket).is_some(), "no {bucket} in\n{text}");
    }
    assert!(sample(&text, "wxunion_callback_seconds_count").unwrap() >= 4.0);
    // The inbox's statements: how many callbacks each wrote, and how long each took.
    for series in [
        "wxunion_inbox_batch_size_count",
        "wxunion_inbox_flush_seconds_count",
    ] {
        assert!(
            sample(&text, series).unwrap_or(0.0) >= 1.0,
            "no {series} in\n{text}"
        );
    }

    // The queue gauges are published at start and every 15 s, by every instance.
    for series in [
        "wxunion_jobs{status=\"pending\"}",
        "wxunion_jobs{status=\"running\"}",
        "wxunion_jobs{status=\"done\"}",
        "wxunion_jobs{status=\"dead\"}",
        "wxunion_job_oldest_pending_seconds",
    ] {
        assert!(sample(&text, series).is_some(), "no {series} in\n{text}");
    }
}

#[tokio::test]
async fn a_refused_callback_is_counted_by_reason_and_records_nothing() {
    let app = spawn_app().await;
    let (status, _) = crate::callback::post(
        &app,
        OA,
        &crate::callback::plain_query(),
        message_xml("oSomeone"),
    )
    .await;
    // Plaintext to an account with an EncodingAESKey.
    assert_eq!(status, 400);
    let text = app.metrics().await;
    let series =
        "wxunion_callback_rejected_total{reason=\"this account expects encrypted messages\"}";
    assert!(sample(&text, series).unwrap() >= 1.0, "{text}");
    assert_eq!(app.count("SELECT COUNT(*) FROM jobs").await, 0);
}

fn message_xml(open_id: &str) -> String {
    wxunion::wechat::message::event_xml("gh_test", open_id, 1795636000, "subscribe", None)
}

fn job(key: &str, at: chrono::DateTime<Utc>) -> NewJob {
    NewJob {
        kind: JobKind::CallbackEvent,
        app_id: OA.to_owned(),
        dedupe_key: key.to_owned(),
        payload: "{}".to_owned(),
        now: at,
    }
}

/// On PostgreSQL, makes this backend publish its table statistics now, so that the estimate
/// of done jobs (`n_live_tup`) sees its writes; the pools here have one connection.
async fn publish_statistics(db: &sea_orm::DatabaseConnection) {
    use sea_orm::ConnectionTrait;
    if db.get_database_backend() == sea_orm::DbBackend::Postgres {
        db.execute_unprepared("SELECT pg_stat_force_next_flush()")
            .await
            .unwrap();
    }
}

/// `insert_batch` says exactly which jobs were new, and `stats` counts the queue, on both
/// databases.
async fn inbox_and_queue_statements(db: &sea_orm::DatabaseConnection) {
    let t0 = Utc::now() - Duration::seconds(90);
    let first = [job("a", t0), job("b", t0)];
    assert_eq!(
        jobs::insert_batch(db, first.iter()).await.unwrap(),
        [true, true]
    );
    // A repeat of b, a new c twice in one batch (a retry racing its original), a repeat of a.
    let t1 = t0 + Duration::seconds(30);
    let second = [job("b", t1), job("c", t1), job("c", t1), job("a", t1)];
    assert_eq!(
        jobs::insert_batch(db, second.iter()).await.unwrap(),
        [false, true, false, false]
    );
    let now = Utc::now();
    let stats = jobs::stats(db, now).await.unwrap();
    assert_eq!(
        (stats.pending, stats.running, stats.done, stats.dead),
        (3, 0, 0, 0)
    );
    let oldest = stats.oldest_pending.unwrap();
    assert!(
        (oldest - t0).num_milliseconds().abs() < 1000,
        "{oldest} vs {t0}"
    );

    // One leased, then done; one leased and parked for good.
    let claimed = jobs::claim(db, now, Duration::seconds(60))
        .await
        .unwrap()
        .unwrap();
    let stats = jobs::stats(db, now).await.unwrap();
    assert_eq!((stats.pending, stats.running), (2, 1));
    jobs::complete(db, claimed.id, now).await.unwrap();
    let parked = jobs::claim(db, now, Duration::seconds(60))
        .await
        .unwrap()
        .unwrap();
    jobs::fail(db, &parked, "gone", true, now).await.unwrap();
    publish_statistics(db).await;
    let stats = jobs::stats(db, now).await.unwrap();
    assert_eq!(
        stats,
        QueueStats {
            pending: 1,
            running: 0,
            done: 1,
            dead: 1,
            oldest_pending: stats.oldest_pending,
        }
    );
    let left = stats.oldest_pending.unwrap();
    assert!(
        (left - t1).num_milliseconds().abs() < 1000,
        "{left} vs {t1}"
    );
    assert!(jobs::insert_batch(db, [].iter()).await.unwrap().is_empty());
}

#[tokio::test]
async fn inbox_and_queue_statements_on_postgres() {
    let test_db = fresh_postgres().await;
    let db = wxunion::store::connect(&test_db.url, 1).await.unwrap();
    wxunion::store::migrate(&db).await.unwrap();
    inbox_and_queue_statements(&db).await;
    db.close().await.unwrap();
}

/// A fresh PostgreSQL database (dropped with the returned guard) holding `rows` jobs numbered
/// `g` from 1, each with the status and `finished_at` the two SQL expressions of `g` give,
/// and a pool of one connection to it.
async fn postgres_with_jobs(
    rows: i64,
    status: &str,
    finished_at: &str,
) -> (TestDb, sea_orm::DatabaseConnection) {
    use sea_orm::ConnectionTrait;
    let test_db = fresh_postgres().await;
    let db = wxunion::store::connect(&test_db.url, 1).await.unwrap();
    wxunion::store::migrate(&db).await.unwrap();
    db.execute_unprepared(&format!(
        "INSERT INTO jobs (kind, app_id, dedupe_key, payload, status, attempts, run_at, \
                           created_at, finished_at) \
         SELECT 'callback_event', '{OA}', 'k' || g, '{{}}', {status}, 0, now(), \
                now() - interval '2 days', {finished_at} \
         FROM generate_series(1, {rows}) g"
    ))
    .await
    .unwrap();
    (test_db, db)
}

/// The queue gauges, refreshed every 15 s on every instance, no longer read the whole `jobs`
/// table, most of which is done jobs kept a day as dedupe records: pending, running and dead
/// jobs are counted through partial indexes and done ones estimated from PostgreSQL's
/// statistics. Before, each refresh read every row (21–283 ms at 400,000 jobs).
#[tokio::test]
async fn queue_gauges_on_postgres_count_without_reading_the_done_jobs() {
    const DONE: i64 = 20_000;
    let (_test_db, db) = postgres_with_jobs(
        DONE + 5,
        "CASE WHEN g <= 3 THEN 'pending' WHEN g <= 5 THEN 'dead' ELSE 'done' END",
        "now()",
    )
    .await;
    publish_statistics(&db).await;
    let before = rows_read_by_sequential_scans(&db, "jobs").await;
    let stats = jobs::stats(&db, Utc::now()).await.unwrap();
    let read = rows_read_by_sequential_scans(&db, "jobs").await - before;
    assert_eq!(
        (stats.pending, stats.running, stats.dead, stats.done),
        (3, 0, 2, DONE)
    );
    assert!(stats.oldest_pending.is_some());
    assert!(
        read < DONE,
        "the gauges read {read} rows of jobs by sequential scan ({} rows)",
        DONE + 5
    );
    db.close().await.unwrap();
}

/// Pruning (every ten minutes on every instance) finds the old done jobs through
/// `ix_jobs_done_finished_at` instead of reading the day of done jobs kept beside them.
#[tokio::test]
async fn pruning_on_postgres_reads_only_the_old_done_jobs() {
    use sea_orm::ConnectionTrait;
    const RECENT: i64 = 20_000;
    // Jobs 1-5 finished two days ago (three done, one dead, one pending retried), the rest
    // done a minute ago.
    let (_test_db, db) = postgres_with_jobs(
        RECENT + 5,
        "CASE WHEN g = 4 THEN 'dead' WHEN g = 5 THEN 'pending' ELSE 'done' END",
        "CASE WHEN g <= 5 THEN now() - interval '2 days' ELSE now() - interval '1 minute' END",
    )
    .await;
    // What autovacuum does on a live server (it is off on some test machines).
    db.execute_unprepared("ANALYZE jobs").await.unwrap();
    let before = rows_read_by_sequential_scans(&db, "jobs").await;
    // Six prunes with nothing to do first: after five runs on one connection PostgreSQL may
    // keep a generic plan for the statement, and that one must still use the index.
    for _ in 0..6 {
        let none = jobs::prune(&db, Utc::now() - Duration::days(3))
            .await
            .unwrap();
        assert_eq!(none, 0);
    }
    let pruned = jobs::prune(&db, Utc::now() - Duration::days(1))
        .await
        .unwrap();
    let read = rows_read_by_sequential_scans(&db, "jobs").await - before;
    assert_eq!(pruned, 3, "only the old done jobs go");
    let left = db
        .query_one_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            "SELECT COUNT(*) FILTER (WHERE status = 'done'), COUNT(*) FILTER (WHERE status <> 'done') FROM jobs",
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            left.try_get_by_index::<i64>(0).unwrap(),
            left.try_get_by_index::<i64>(1).unwrap()
        ),
        (RECENT, 2),
        "recent done jobs and old jobs of other statuses stay"
    );
    assert!(
        read < RECENT,
        "seven prunes read {read} rows of jobs by sequential scan ({} rows)",
        RECENT + 5
    );
    db.close().await.unwrap();
}

#[tokio::test]
async fn inbox_and_queue_statements_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("q.db").display());
    let db = wxunion::store::connect(&url, 1).await.unwrap();
    wxunion::store::migrate(&db).await.unwrap();
    inbox_and_queue_statements(&db).await;
}
