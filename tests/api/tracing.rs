//! `x-request-id` on every response: kept when the caller sent a fit one, made up otherwise.
//! (That log lines inside a request carry it, and never the query string, is checked with a
//! captured log in `src/http/request_id.rs`.)

use serde_json::json;

use crate::helpers::*;

const X_REQUEST_ID: &str = "x-request-id";

fn request_id(resp: &reqwest::Response) -> String {
    let ids: Vec<_> = resp.headers().get_all(X_REQUEST_ID).iter().collect();
    assert_eq!(ids.len(), 1, "one x-request-id: {ids:?}");
    ids[0].to_str().unwrap().to_owned()
}

fn is_made_up(id: &str) -> bool {
    id.len() == 36 && uuid::Uuid::try_parse(id).is_ok_and(|u| u.get_version_num() == 4)
}

#[tokio::test]
async fn every_response_carries_a_request_id_and_a_fit_incoming_one_is_echoed() {
    let app = spawn_app().await;

    // Made up when absent, fresh for every request, on every kind of route.
    let a = app.http.get(app.url("/healthz")).send().await.unwrap();
    let b = app.http.get(app.url("/healthz")).send().await.unwrap();
    let (a, b) = (request_id(&a), request_id(&b));
    assert!(is_made_up(&a) && is_made_up(&b) && a != b, "{a} {b}");
    let refused = app
        .http
        .get(app.url(&format!(
            "/wechat/callback/{OA}?signature=bad&timestamp=1&nonce=2&echostr=x"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    assert!(is_made_up(&request_id(&refused)));
    let missing = app.http.get(app.url("/nowhere")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    assert!(is_made_up(&request_id(&missing)));

    // A fit incoming id (from a proxy, or a caller tracing its own request) is kept.
    for sent in [
        "abc-123",
        "Root=1-5759e988-bd862e3fe1be46a994272793",
        &"z".repeat(64),
    ] {
        let resp = app
            .http
            .post(app.url("/graphql"))
            .header(X_REQUEST_ID, sent)
            .json(&json!({"query": "{ __typename }"}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(request_id(&resp), sent);
    }
}

#[tokio::test]
async fn a_malformed_or_oversized_incoming_request_id_is_replaced() {
    let app = spawn_app().await;
    let oversized = "x".repeat(65);
    for sent in [oversized.as_str(), "has space", "", "caf\u{e9}"] {
        let value = reqwest::header::HeaderValue::from_bytes(sent.as_bytes()).unwrap();
        let resp = app
            .http
            .get(app.url("/healthz"))
            .header(X_REQUEST_ID, value)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let id = request_id(&resp);
        assert!(is_made_up(&id), "{sent:?} -> {id}");
    }
    // Two ids: neither is trusted.
    let resp = app
        .http
        .get(app.url("/healthz"))
        .header(X_REQUEST_ID, "one")
        .header(X_REQUEST_ID, "two")
        .send()
        .await
        .unwrap();
    assert!(is_made_up(&request_id(&resp)));
}
