//! `/healthz`, `/readyz`, `/metrics`.

use crate::helpers::*;

#[tokio::test]
async fn healthz_and_readyz_answer_when_all_is_well() {
    let app = spawn_app().await;
    let h = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(h.status(), 200);
    let r = app.http.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["database"], "ok");
    assert_eq!(body["cache"], "ok");
    assert_eq!(body["cache_kind"], "redis");
}

#[tokio::test]
async fn readyz_fails_when_the_database_is_unreachable() {
    let app = spawn_app().await;
    assert_eq!(
        app.http
            .get(app.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    app.drop_database().await;
    let r = app.http.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["database"], "unreachable");
    assert_eq!(body["cache"], "ok");
}

#[tokio::test]
async fn metrics_count_requests_and_wechat_calls() {
    let app = spawn_app().await;
    app.login(MP1, "mia").await;
    let refused = app.login_with_code(MP1, "0a1b2c3d4e5f").await;
    assert_eq!(refused["errors"][0]["extensions"]["wechatErrcode"], 40029);
    let text = app.metrics().await;
    assert!(
        text.contains("wxunion_http_requests_total{route=\"/graphql\""),
        "{text}"
    );
    assert!(
        text.contains("wxunion_wechat_calls_total{api=\"sns/jscode2session\",errcode=\"0\"}"),
        "{text}"
    );
    // An error is counted under WeChat's errcode; every attempt's duration is recorded. (The
    // recorder is the process's: other tests' calls count in the same series.)
    assert!(
        text.contains("wxunion_wechat_calls_total{api=\"sns/jscode2session\",errcode=\"40029\"}"),
        "{text}"
    );
    assert!(
        text.contains("wxunion_wechat_call_seconds_count{api=\"sns/jscode2session\"}"),
        "{text}"
    );
    assert!(text.contains("wxunion_graphql_requests_total"), "{text}");
}

/// The `method` label takes the standard methods and `other`: a client inventing methods
/// (HTTP allows any token) must not grow `/metrics` and the process's memory without bound.
#[tokio::test]
async fn invented_http_methods_are_counted_as_other_and_add_no_series() {
    let app = spawn_app().await;
    for i in 0..20 {
        let method = reqwest::Method::from_bytes(format!("INVENTED{i}").as_bytes()).unwrap();
        for path in ["/graphql", "/nowhere"] {
            let r = app
                .http
                .request(method.clone(), app.url(path))
                .send()
                .await
                .unwrap();
            assert!(
                r.status().is_client_error(),
                "{method} {path}: {}",
                r.status()
            );
        }
    }
    let text = app.metrics().await;
    assert!(!text.contains("INVENTED"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("wxunion_http_requests_total")
                && l.contains("method=\"other\"")
                && l.contains("route=\"/graphql\"")),
        "{text}"
    );
}
