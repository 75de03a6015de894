//! Shared access tokens: one fetch across instances, careful invalidation, capped refreshes.

use serde_json::json;

use crate::helpers::*;

fn count(v: &serde_json::Value, api: &str) -> u64 {
    v.get(api).and_then(serde_json::Value::as_u64).unwrap_or(0)
}

#[tokio::test]
async fn three_hundred_concurrent_resolves_on_three_instances_fetch_one_token() {
    // 300 requests at once on this test's one runtime thread (debug build): see HEAVY_LOAD.
    let first = spawn_with(Options {
        extra: HEAVY_LOAD.into(),
        ..Options::default()
    })
    .await;
    let shared = Some((first.database_url.clone(), first.redis_prefix.clone()));
    let second = spawn_with(Options {
        share: shared.clone(),
        sim: Some(first.sim.clone()),
        extra: HEAVY_LOAD.into(),
        ..Options::default()
    })
    .await;
    let third = spawn_with(Options {
        share: shared,
        sim: Some(first.sim.clone()),
        extra: HEAVY_LOAD.into(),
        ..Options::default()
    })
    .await;
    let instances = [&first, &second, &third];
    let open_ids: Vec<String> = (0..100)
        .map(|i| first.sim.state.open_id(OA, &format!("person{i}")))
        .collect();
    let calls = (0..300).map(|i| instances[i % 3].resolve(OA, &open_ids[i % 100], Some(API_KEY)));
    let results = futures::future::join_all(calls).await;
    for v in &results {
        assert!(v["errors"].is_null(), "{v}");
    }
    let counts = first.sim_counts().await;
    assert_eq!(count(&counts, "cgi-bin/stable_token"), 1, "{counts}");
    assert_eq!(count(&counts, "cgi-bin/token"), 0, "{counts}");
    assert_eq!(count(&counts, "cgi-bin/user/info"), 300);
    assert_eq!(first.count("SELECT COUNT(*) FROM identities").await, 100);
}

#[tokio::test]
async fn an_invalidated_token_is_refreshed_once_and_the_call_succeeds() {
    let app = spawn_app().await;
    let open_id = app.sim.state.open_id(OA, "alice");
    assert!(app.resolve(OA, &open_id, Some(API_KEY)).await["errors"].is_null());
    app.sim_post("/sim/tokens/invalidate", json!({ "app_id": OA }))
        .await;
    let v = app.resolve(OA, &open_id, Some(API_KEY)).await;
    assert!(v["errors"].is_null(), "{v}");
    let counts = app.sim_counts().await;
    assert_eq!(count(&counts, "cgi-bin/stable_token"), 2, "{counts}");
    assert_eq!(count(&counts, "cgi-bin/user/info"), 3, "{counts}");
    // The refreshed token is cached: the next call fetches nothing.
    assert!(app.resolve(OA, &open_id, Some(API_KEY)).await["errors"].is_null());
    assert_eq!(count(&app.sim_counts().await, "cgi-bin/stable_token"), 2);
}

#[tokio::test]
async fn a_40001_with_the_classic_endpoint_refreshes_once() {
    let app = spawn_app().await;
    let open_id = app.sim.state.open_id(OA_CLASSIC, "bob");
    assert!(app.resolve(OA_CLASSIC, &open_id, Some(API_KEY)).await["errors"].is_null());
    app.sim_post(
        "/sim/faults",
        json!({ "api": "cgi-bin/user/info", "errcode": 40001 }),
    )
    .await;
    let v = app.resolve(OA_CLASSIC, &open_id, Some(API_KEY)).await;
    assert!(v["errors"].is_null(), "{v}");
    let counts = app.sim_counts().await;
    assert_eq!(count(&counts, "cgi-bin/token"), 2, "{counts}");
    assert_eq!(count(&counts, "cgi-bin/stable_token"), 0, "{counts}");
}

#[tokio::test]
async fn a_stale_failure_never_drops_a_token_another_instance_just_refreshed() {
    let app = spawn_app().await;
    // A second instance's token manager, on the same Redis prefix.
    let cache = wxunion::cache::Cache::connect(app.config.redis_url.as_deref(), &app.redis_prefix)
        .await
        .unwrap();
    let wechat = wxunion::wechat::WechatClient::new(
        &app.config.wechat_api_base,
        std::time::Duration::from_secs(5),
    )
    .unwrap();
    let tokens = wxunion::wechat::AccessTokens::new(cache.clone(), wechat, 10);
    let oa = app.config.app(OA).unwrap().clone();
    let old = tokens.get(&oa).await.unwrap();
    // Another instance refreshes while our call with `old` is in flight.
    let seen = std::sync::Mutex::new(Vec::new());
    let result = tokens
        .with_token(&oa, |token| {
            seen.lock().unwrap().push(token.clone());
            let cache = cache.clone();
            async move {
                if seen_first(&token) {
                    cache
                        .set(
                            &format!("token:{OA}"),
                            "refreshed-elsewhere",
                            std::time::Duration::from_secs(600),
                        )
                        .await
                        .unwrap();
                    Err(wxunion::wechat::CallError::Wechat {
                        errcode: 40001,
                        errmsg: "invalid credential".into(),
                        after_timeout: false,
                    })
                } else {
                    Ok(token)
                }
            }
        })
        .await
        .unwrap();
    fn seen_first(token: &str) -> bool {
        token != "refreshed-elsewhere"
    }
    assert_eq!(result, "refreshed-elsewhere");
    assert_eq!(
        *seen.lock().unwrap(),
        vec![old, "refreshed-elsewhere".to_owned()]
    );
    assert_eq!(
        cache.get(&format!("token:{OA}")).await.unwrap().as_deref(),
        Some("refreshed-elsewhere")
    );
    assert_eq!(count(&app.sim_counts().await, "cgi-bin/stable_token"), 1);
}

#[tokio::test]
async fn forced_refreshes_are_capped_per_app() {
    let app = spawn_with(Options {
        extra: "max_forced_token_refreshes_per_hour = 2".into(),
        ..Options::default()
    })
    .await;
    let open_id = app.sim.state.open_id(OA, "carol");
    app.sim_post(
        "/sim/faults",
        json!({ "api": "cgi-bin/user/info", "errcode": 40001, "times": 100 }),
    )
    .await;
    let mut codes = Vec::new();
    let mut fetches = Vec::new();
    for _ in 0..5 {
        let v = app.resolve(OA, &open_id, Some(API_KEY)).await;
        codes.push(error_code(&v).unwrap().to_owned());
        fetches.push(count(&app.sim_counts().await, "cgi-bin/stable_token"));
    }
    assert_eq!(
        codes,
        [
            "UPSTREAM_ERROR",
            "UPSTREAM_ERROR",
            "RATE_LIMITED",
            "RATE_LIMITED",
            "RATE_LIMITED"
        ]
    );
    // At most two fetches per forced refresh (normal mode, then force_refresh), and none
    // at all once the cap is reached.
    assert!(
        fetches[1] <= 1 + 2 * 2,
        "token fetches not capped: {fetches:?}"
    );
    assert_eq!(
        fetches[1], fetches[4],
        "fetches continued past the cap: {fetches:?}"
    );
}

#[tokio::test]
async fn the_simulated_stable_token_follows_wechats_rules() {
    let app = spawn_app().await;
    let url = app.sim_url("/cgi-bin/stable_token");
    let body = |force: bool| json!({ "grant_type": "client_credential", "appid": OA, "secret": "secret-oa", "force_refresh": force });
    let first = post_json(&app.http, &url, &body(false)).await;
    assert_eq!(first["expires_in"], 7200);
    let token = first["access_token"].as_str().unwrap().to_owned();
    // Normal mode returns the same token while it is valid.
    assert_eq!(
        post_json(&app.http, &url, &body(false)).await["access_token"],
        token.as_str()
    );
    // force_refresh replaces it, and the old one stops working at once.
    let forced = post_json(&app.http, &url, &body(true)).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(forced, token);
    let info = |t: &str| app.sim_url(&format!("/cgi-bin/user/info?access_token={t}&openid=x"));
    assert_eq!(get_json(&app.http, &info(&token)).await["errcode"], 40001);
    assert_eq!(get_json(&app.http, &info(&forced)).await["errcode"], 40003);
    // A second force within 30 s does not refresh again.
    assert_eq!(
        post_json(&app.http, &url, &body(true)).await["access_token"],
        forced.as_str()
    );
    // A wrong secret is 40125.
    let wrong = json!({ "grant_type": "client_credential", "appid": OA, "secret": "nope" });
    assert_eq!(post_json(&app.http, &url, &wrong).await["errcode"], 40125);
}
