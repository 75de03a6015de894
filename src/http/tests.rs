//! Handlers and resolvers in-process, through the real router with `oneshot`: SQLite in memory
//! and the in-process cache, so these run without PostgreSQL, Redis or a socket.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use super::{AppState, router};
use crate::cache::Cache;
use crate::clock::SystemClock;
use crate::config::{Config, demo};
use crate::identity::Service;
use crate::jobs::inbox::Inbox;

/// A sandbox-style configuration (demo apps and key) on an in-memory database.
async fn app() -> Router {
    let env = vec![(
        "WXUNION_DATABASE_URL".to_owned(),
        "sqlite::memory:".to_owned(),
    )];
    let config = Config::load(None, env).unwrap();
    let db = crate::store::connect(&config.database_url, 1)
        .await
        .unwrap();
    crate::store::migrate(&db).await.unwrap();
    let cache = Cache::connect(None, "t:").await.unwrap();
    let service = Service::new(
        config,
        db.clone(),
        cache,
        Arc::new(SystemClock),
        "http://127.0.0.1:1",
    )
    .unwrap();
    let metrics = crate::telemetry::metrics_handle();
    router(AppState {
        schema: crate::graphql::build(Some(service.clone())),
        prevalidated_schema: crate::graphql::build_prevalidated(Some(service.clone())),
        inbox: Inbox::start(
            db,
            Arc::new(tokio::sync::Notify::new()),
            service.database_timeout(),
        ),
        metrics,
        refusals: Arc::new(super::refusals::RefusalLog::new()),
        documents: Default::default(),
        service,
    })
}

async fn send(app: &Router, req: Request<Body>) -> (StatusCode, String) {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn graphql(query: &str, bearer: Option<&str>) -> Request<Body> {
    let mut req = Request::post("/graphql").header(header::CONTENT_TYPE, "application/json");
    if let Some(token) = bearer {
        req = req.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    req.body(Body::from(json!({ "query": query }).to_string()))
        .unwrap()
}

fn code(body: &str) -> Value {
    let v: Value = serde_json::from_str(body).unwrap();
    v["errors"][0]["extensions"]["code"].clone()
}

#[tokio::test]
async fn me_without_a_token_is_unauthenticated() {
    let app = app().await;
    let (status, body) = send(&app, graphql("{ me { id } }", None)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(code(&body), "UNAUTHENTICATED", "{body}");
}

#[tokio::test]
async fn user_needs_the_service_key_and_is_null_when_unknown() {
    let app = app().await;
    let q = r#"{ user(unionId: "oNobody") { id } }"#;
    let (_, body) = send(&app, graphql(q, None)).await;
    assert_eq!(code(&body), "UNAUTHENTICATED", "{body}");
    let (_, body) = send(&app, graphql(q, Some("not-a-key-or-a-session"))).await;
    assert_eq!(code(&body), "UNAUTHENTICATED", "{body}");
    let (status, body) = send(&app, graphql(q, Some(demo::DEMO_API_KEY))).await;
    assert_eq!(status, StatusCode::OK);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert!(v.get("errors").is_none(), "{body}");
    assert_eq!(v["data"]["user"], Value::Null);
}

/// A request with an `operationName` and variables, as a client repeating an operation sends it.
fn operation(query: &str, name: &str, variables: Value) -> Request<Body> {
    let body = json!({ "query": query, "operationName": name, "variables": variables });
    Request::post("/graphql")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

#[tokio::test]
async fn a_repeated_query_text_runs_the_operation_and_variables_each_request_names() {
    // The second and later requests take the document kept from the first (`Documents`);
    // what runs still follows each request's own operation name and variables.
    let app = app().await;
    let text = "query A($n: String!) { t: __type(name: $n) { name } } query B { b: __typename }";
    let cases = [
        (
            "A",
            json!({ "n": "Query" }),
            json!({ "t": { "name": "Query" } }),
        ),
        ("B", json!({}), json!({ "b": "Query" })),
        ("A", json!({ "n": "Nope" }), json!({ "t": null })),
        (
            "A",
            json!({ "n": "Mutation" }),
            json!({ "t": { "name": "Mutation" } }),
        ),
    ];
    for (name, variables, want) in cases {
        let (status, body) = send(&app, operation(text, name, variables.clone())).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["data"], want, "{name} {variables}: {body}");
    }
    // A text refused by the cost limits is refused again, not kept.
    let deep = format!("{}{}", "{ a ".repeat(40), "}".repeat(40));
    for _ in 0..2 {
        let (status, body) = send(&app, graphql(&deep, None)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(code(&body), "BAD_REQUEST", "{body}");
        assert!(body.contains("nest"), "{body}");
    }
}

#[tokio::test]
async fn a_document_that_passed_validation_still_refuses_variables_it_cannot_take() {
    // Once a text passed async-graphql's full validation, later requests with it skip the
    // rules only when their variables need no check (`graphql::variables`): a value of the
    // wrong type, or a missing one, is refused as the first time, with the same answer.
    let app = app().await;
    let text = "query A($n: String!) { t: __type(name: $n) { name } }";
    let refused = [json!({ "n": 1 }), json!({}), json!({ "n": null })];
    let mut first = Vec::new();
    for variables in &refused {
        let (status, body) = send(&app, operation(text, "A", variables.clone())).await;
        let v: Value = serde_json::from_str(&body).unwrap();
        assert!(
            v["data"].is_null() && v["errors"][0]["path"].is_null(),
            "{body}"
        );
        first.push((status, body));
    }
    for _ in 0..3 {
        let (status, body) = send(&app, operation(text, "A", json!({ "n": "Query" }))).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v, json!({ "data": { "t": { "name": "Query" } } }), "{body}");
    }
    for (variables, first) in refused.iter().zip(first) {
        let again = send(&app, operation(text, "A", variables.clone())).await;
        assert_eq!(again, first, "{variables}");
    }
}

#[tokio::test]
async fn malformed_arguments_are_bad_request_before_any_wechat_call() {
    let app = app().await;
    let q = r#"mutation { loginWithCode(appId: "nope", code: "x") { sessionToken } }"#;
    let (_, body) = send(&app, graphql(q, None)).await;
    assert_eq!(code(&body), "BAD_REQUEST", "{body}");
    let q = format!(
        r#"mutation {{ loginWithCode(appId: "{}", code: " ") {{ sessionToken }} }}"#,
        demo::DEMO_MINI_PROGRAM
    );
    let (_, body) = send(&app, graphql(&q, None)).await;
    assert_eq!(code(&body), "BAD_REQUEST", "{body}");
    let q =
        r#"mutation { loginWithCode(appId: "wx0000000000000000", code: "x") { sessionToken } }"#;
    let (_, body) = send(&app, graphql(q, None)).await;
    assert_eq!(code(&body), "UNKNOWN_APP", "{body}");
}

#[tokio::test]
async fn the_callback_route_refuses_unknown_apps_and_bad_signatures() {
    let app = app().await;
    let xml = "<xml><ToUserName>x</ToUserName></xml>";
    let post = |path: &str| {
        Request::post(path)
            .header(header::CONTENT_TYPE, "text/xml")
            .body(Body::from(xml))
            .unwrap()
    };
    let (status, _) = send(&app, post("/wechat/callback/wx0000000000000000")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let path = format!(
        "/wechat/callback/{}?signature=bad&timestamp=1&nonce=2&encrypt_type=aes&msg_signature=bad",
        demo::DEMO_OFFICIAL_ACCOUNT
    );
    let (status, _) = send(&app, post(&path)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn verification_echoes_echostr_only_with_a_valid_signature() {
    let app = app().await;
    let sig = crate::wechat::crypto::signature("sandbox-callback-token", "1700000000", "n0nce");
    let oa = demo::DEMO_OFFICIAL_ACCOUNT;
    let get = |sig: &str| {
        Request::get(format!(
            "/wechat/callback/{oa}?signature={sig}&timestamp=1700000000&nonce=n0nce&echostr=hello123"
        ))
        .body(Body::empty())
        .unwrap()
    };
    let (status, body) = send(&app, get(&sig)).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "hello123"));
    let (status, _) = send(&app, get("0000")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn readyz_answers_for_sqlite_and_the_in_process_cache() {
    let app = app().await;
    let (status, body) = send(&app, Request::get("/readyz").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["cache_kind"], "memory");
}
