//! The cache contract, held by the in-process cache and by Redis alike.

use std::time::Duration;

use wxunion::cache::Cache;

/// Ends with an entry whose TTL has passed: the in-process cache is tested on a paused tokio
/// clock (the sleep is virtual, and exact to the millisecond in `cache::memory`'s unit tests);
/// Redis expires by its own clock, so its sleep is real, and only ever longer than asked.
async fn exercise(cache: Cache) {
    let ttl = Duration::from_secs(30);
    assert_eq!(cache.get("k").await.unwrap(), None);
    cache.set("k", "v1", ttl).await.unwrap();
    assert_eq!(cache.get("k").await.unwrap().as_deref(), Some("v1"));
    assert!(!cache.set_nx("k", "v2", ttl).await.unwrap());
    assert!(!cache.delete_if_equals("k", "other").await.unwrap());
    assert_eq!(cache.get("k").await.unwrap().as_deref(), Some("v1"));
    assert!(cache.delete_if_equals("k", "v1").await.unwrap());
    assert!(cache.set_nx("k", "v2", ttl).await.unwrap());
    cache.delete("k").await.unwrap();
    assert_eq!(cache.get("k").await.unwrap(), None);
    assert_eq!(cache.incr_window("n", ttl).await.unwrap(), 1);
    assert_eq!(cache.incr_window("n", ttl).await.unwrap(), 2);
    // Counters in order, stopping after the first past its limit (0: none).
    let pair = |limit_a: u64, limit_b: u64| {
        vec![
            ("a".to_owned(), ttl, limit_a),
            ("b".to_owned(), ttl, limit_b),
        ]
    };
    assert_eq!(cache.count_in_windows(&pair(2, 0)).await.unwrap(), [1, 1]);
    assert_eq!(cache.count_in_windows(&pair(2, 0)).await.unwrap(), [2, 2]);
    assert_eq!(cache.count_in_windows(&pair(2, 0)).await.unwrap(), [3]);
    assert_eq!(cache.count_in_windows(&pair(0, 2)).await.unwrap(), [4, 3]);
    assert!(cache.count_in_windows(&[]).await.unwrap().is_empty());
    cache
        .set("short", "x", Duration::from_millis(50))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert_eq!(cache.get("short").await.unwrap(), None);
}

#[tokio::test(start_paused = true)]
async fn memory_cache_honours_the_cache_contract() {
    exercise(Cache::connect(None, "t:").await.unwrap()).await;
}

#[tokio::test]
async fn redis_cache_honours_the_cache_contract() {
    let prefix = format!("wxunion-test-{}:", uuid::Uuid::new_v4().simple());
    let _keys = crate::helpers::TestDb::redis_only(&prefix);
    let cache = Cache::connect(Some("redis://127.0.0.1:6379"), &prefix)
        .await
        .expect("Redis must be running on 127.0.0.1:6379 for the tests");
    exercise(cache).await;
}
