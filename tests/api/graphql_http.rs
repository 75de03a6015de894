//! `/graphql` over HTTP as clients meet it: media types, status codes, body limits, GET,
//! error bodies, metrics labels.

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::*;

const GQL: &str = "application/graphql-response+json";

async fn post_raw(
    app: &TestApp,
    content_type: Option<&str>,
    accept: Option<&str>,
    body: impl Into<reqwest::Body>,
) -> (u16, String, Value) {
    let mut req = app.http.post(app.url("/graphql")).body(body);
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    if let Some(a) = accept {
        req = req.header("accept", a);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let text = resp.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or_else(|_| json!({ "raw": text }));
    (status, ct, body)
}

fn assert_refusal(body: &Value, code: &str) {
    assert!(body.get("data").is_none(), "no data key expected: {body}");
    assert_eq!(error_code(body), Some(code), "{body}");
}

#[tokio::test]
async fn the_response_media_type_follows_accept() {
    let app = spawn_app().await;
    let q = json!({ "query": "{ __typename }" }).to_string();
    for (accept, want) in [
        (Some(GQL), GQL),
        (Some("application/json"), "application/json"),
        (Some("*/*"), "application/json"),
        (None, "application/json"),
    ] {
        let (status, ct, body) = post_raw(&app, Some("application/json"), accept, q.clone()).await;
        assert_eq!(status, 200, "{accept:?}");
        assert!(ct.starts_with(want), "{accept:?} gave {ct}");
        assert_eq!(body["data"]["__typename"], "Query");
    }
}

#[tokio::test]
async fn an_unacceptable_accept_header_gets_406() {
    let app = spawn_app().await;
    let q = json!({ "query": "{ __typename }" }).to_string();
    let (status, ct, body) = post_raw(&app, Some("application/json"), Some("text/xml"), q).await;
    assert_eq!(status, 406);
    assert!(ct.starts_with("application/json"));
    assert_refusal(&body, "BAD_REQUEST");
}

#[tokio::test]
async fn other_content_types_get_415_and_nothing_executes() {
    let app = spawn_app().await;
    let code = app.mint_code(MP1, "tess").await;
    let mutation = format!(
        "mutation {{ loginWithCode(appId: \"{MP1}\", code: \"{code}\") {{ sessionToken }} }}"
    );
    let json_body = json!({ "query": mutation }).to_string();
    let form_body = format!("query={}", urlencode(&mutation));
    for (ct, body) in [
        (Some("text/plain"), json_body.clone()),
        (Some("application/x-www-form-urlencoded"), form_body),
        (Some("application/graphql"), mutation.clone()),
        (None, json_body.clone()),
        (Some("application/json; charset=latin1"), json_body.clone()),
    ] {
        let (status, _, body) = post_raw(&app, ct, None, body).await;
        assert_eq!(status, 415, "{ct:?}: {body}");
        assert_refusal(&body, "BAD_REQUEST");
    }
    assert_eq!(app.sim_counts().await["sns/jscode2session"], Value::Null);
    // The same mutation as JSON works, so the code was never spent.
    let (status, _, body) = post_raw(&app, Some("application/json"), None, json_body).await;
    assert_eq!(status, 200);
    assert!(
        body["data"]["loginWithCode"]["sessionToken"]
            .as_str()
            .unwrap()
            .starts_with("wxs_"),
        "{body}"
    );
}

#[tokio::test]
async fn multipart_uploads_are_refused() {
    let app = spawn_app().await;
    let form = reqwest::multipart::Form::new()
        .text(
            "operations",
            json!({ "query": "{ __typename }" }).to_string(),
        )
        .text("map", "{}")
        .part(
            "0",
            reqwest::multipart::Part::bytes(vec![b'x'; 1024 * 1024]).file_name("big.bin"),
        );
    let resp = app
        .http
        .post(app.url("/graphql"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 415);
    let body: Value = resp.json().await.unwrap();
    assert_refusal(&body, "BAD_REQUEST");
}

/// A JSON GraphQL request for `{ __typename }` with `spaces` bytes of whitespace before its
/// closing brace: valid JSON of any size.
fn typename_query_padded_with(spaces: usize) -> String {
    let padding = " ".repeat(spaces);
    format!("{{\"query\": \"{{ __typename }}\"{padding}}}")
}

#[tokio::test]
async fn a_one_megabyte_body_gets_413() {
    let app = spawn_app().await;
    let body = typename_query_padded_with(1024 * 1024);
    let (status, ct, body) = post_raw(&app, Some("application/json"), Some(GQL), body).await;
    assert_eq!(status, 413);
    assert!(ct.starts_with(GQL));
    assert_refusal(&body, "BAD_REQUEST");
}

/// The callback route's 64 KiB body limit (axum's `DefaultBodyLimit`, set for the whole router)
/// does not reach `/graphql`, which reads its body up to its own 256 KiB.
#[tokio::test]
async fn a_graphql_body_between_the_callback_limit_and_its_own_is_answered() {
    let app = spawn_app().await;
    let body = typename_query_padded_with(200 * 1024);
    let (status, ct, body) = post_raw(&app, Some("application/json"), Some(GQL), body).await;
    assert_eq!(status, 200, "{body}");
    assert!(ct.starts_with(GQL));
    assert_eq!(body["data"]["__typename"], "Query", "{body}");
}

/// Sends `head` then up to `body_len` bytes over a raw socket, and reads what comes back.
async fn raw_exchange(app: &TestApp, head: &str, body_len: usize) -> (String, usize) {
    let mut sock = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    sock.write_all(head.as_bytes()).await.unwrap();
    let chunk = vec![b' '; 64 * 1024];
    let mut sent = 0;
    while sent < body_len {
        match sock.write_all(&chunk).await {
            Ok(()) => sent += chunk.len(),
            Err(_) => break, // the server closed: it refused to read on
        }
        // Give the server the chance to answer early.
        tokio::task::yield_now().await;
    }
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        sock.read_to_end(&mut answer),
    )
    .await;
    (String::from_utf8_lossy(&answer).into_owned(), sent)
}

#[tokio::test]
async fn a_huge_content_length_gets_413_before_the_body_is_sent() {
    let app = spawn_app().await;
    let head = "POST /graphql HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
                content-length: 107374182400\r\nconnection: close\r\n\r\n";
    let (answer, _) = raw_exchange(&app, head, 0).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("\"code\":\"BAD_REQUEST\""), "{answer}");
}

#[tokio::test]
async fn a_chunked_body_without_length_gets_413_once_past_the_limit() {
    let app = spawn_app().await;
    // One chunk of 1 MiB, announced in hex; the server must answer without reading it all.
    let size = 1024 * 1024;
    let head = format!(
        "POST /graphql HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
         transfer-encoding: chunked\r\nconnection: close\r\n\r\n{size:x}\r\n{{\"query\":\"{{a}}\""
    );
    let (answer, _) = raw_exchange(&app, &head, size).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
}

#[tokio::test]
async fn json_that_is_broken_or_batched_gets_400_with_a_code() {
    let app = spawn_app().await;
    for accept in [Some(GQL), Some("application/json")] {
        for body in [
            "{ \"not a JSON",
            r#"[{"query":"{ __typename }"}]"#,
            r#"{"qeury":"{ __typename }"}"#,
            r#"{"query":{"obj":"ect"}}"#,
            r#"{"query":"{ __typename }","variables":"nope"}"#,
            "",
        ] {
            let (status, _, v) = post_raw(&app, Some("application/json"), accept, body).await;
            assert_eq!(status, 400, "{accept:?} {body}: {v}");
            assert_refusal(&v, "BAD_REQUEST");
            let msg = v["errors"][0]["message"].as_str().unwrap();
            assert!(!msg.contains("InvalidRequest("), "Debug text leaked: {msg}");
        }
    }
}

#[tokio::test]
async fn errors_before_execution_are_400_for_graphql_clients_and_200_for_json_clients() {
    let app = spawn_app().await;
    let cases = [
        json!({ "query": "{" }),
        json!({ "query": "{ noSuchField }" }),
        json!({ "query": "query Q($id: ID!) { __typename }", "variables": { "id": null } }),
        json!({ "query": "query A { __typename } query B { __typename }" }),
        json!({ "query": "{ __typename }", "operationName": "Missing" }),
    ];
    for case in cases {
        for (accept, want) in [(GQL, 400), ("application/json", 200)] {
            let (status, _, v) = post_raw(
                &app,
                Some("application/json"),
                Some(accept),
                case.to_string(),
            )
            .await;
            assert_eq!(status, want, "{accept} {case}: {v}");
            assert_refusal(&v, "BAD_REQUEST");
        }
    }
}

#[tokio::test]
async fn a_resolver_error_keeps_the_data_key_and_200() {
    let app = spawn_app().await;
    let body = json!({
        "query": "mutation { loginWithCode(appId: \"wx1000000000000001\", code: \"nope\") { sessionToken } }"
    });
    let (status, _, v) =
        post_raw(&app, Some("application/json"), Some(GQL), body.to_string()).await;
    assert_eq!(status, 200, "{v}");
    assert!(v.get("data").is_some(), "{v}");
    assert_eq!(error_code(&v), Some("INVALID_CODE"), "{v}");
}

#[tokio::test]
async fn get_runs_queries_for_json_clients() {
    let app = spawn_app().await;
    let resp = app
        .http
        .get(app.url("/graphql"))
        .query(&[
            (
                "query",
                "query Q($n: String!) { __type(name: $n) { name } }",
            ),
            ("variables", r#"{"n":"User"}"#),
        ])
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["data"]["__type"]["name"], "User", "{v}");
}

#[tokio::test]
async fn get_refuses_mutations_with_405_and_runs_nothing() {
    let app = spawn_app().await;
    let code = app.mint_code(MP1, "gina").await;
    let mutation = format!(
        "mutation {{ loginWithCode(appId: \"{MP1}\", code: \"{code}\") {{ sessionToken }} }}"
    );
    let resp = app
        .http
        .get(app.url("/graphql"))
        .query(&[("query", mutation.as_str())])
        .header("accept", GQL)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);
    assert!(resp.headers()["allow"].to_str().unwrap().contains("POST"));
    let v: Value = resp.json().await.unwrap();
    assert_refusal(&v, "BAD_REQUEST");
    assert_eq!(app.sim_counts().await["sns/jscode2session"], Value::Null);
}

#[tokio::test]
async fn other_methods_get_405_as_a_graphql_error() {
    let app = spawn_app().await;
    let resp = app
        .http
        .put(app.url("/graphql"))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);
    let v: Value = resp.json().await.unwrap();
    assert_refusal(&v, "BAD_REQUEST");
}

#[tokio::test]
async fn a_browser_gets_graphiql_and_a_json_client_without_query_gets_400() {
    let app = spawn_app().await;
    let page = app
        .http
        .get(app.url("/graphql"))
        .header("accept", "text/html,application/xhtml+xml,*/*;q=0.8")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let json_client = app
        .http
        .get(app.url("/graphql"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(json_client.status(), 400);
    let v: Value = json_client.json().await.unwrap();
    assert_refusal(&v, "BAD_REQUEST");
}

#[tokio::test]
async fn metrics_label_only_operation_names_the_document_defines_and_cap_them() {
    let app = spawn_app().await;
    // Names the document does not define never become labels.
    for i in 0..50 {
        let body =
            json!({ "query": "query Real { __typename }", "operationName": format!("madeUp{i}") });
        post_raw(&app, Some("application/json"), None, body.to_string()).await;
    }
    // Names it does define are labels, up to the cap.
    for i in 0..150 {
        let body = json!({ "query": format!("query Op{i} {{ __typename }}") });
        post_raw(&app, Some("application/json"), None, body.to_string()).await;
    }
    let text = app.metrics().await;
    assert!(!text.contains("madeUp"), "made-up names became labels");
    let mut labels = std::collections::HashSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("wxunion_graphql_requests_total{")
            && let Some(start) = rest.find("operation=\"")
        {
            let rest = &rest[start + 11..];
            labels.insert(rest[..rest.find('"').unwrap()].to_owned());
        }
    }
    assert!(labels.contains("other"), "{labels:?}");
    // The cap, plus `anonymous`, `invalid` and `other`.
    assert!(
        labels.len() <= wxunion::http::MAX_OPERATION_LABELS + 3,
        "{} labels: {labels:?}",
        labels.len()
    );
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test]
async fn every_must_and_should_audit_of_graphql_http_passes() {
    let app = spawn_app().await;
    let dir = node_project("http-audit").await;
    let out = tokio::process::Command::new("node")
        .arg("audit.mjs")
        .arg(app.url("/graphql"))
        .current_dir(&dir)
        .output()
        .await
        .expect("node must be installed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "graphql-http audits failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The audits really ran: the summary line counts them all as passed.
    let summary = stdout
        .lines()
        .find(|l| l.starts_with("audits: "))
        .unwrap_or_default();
    assert!(summary.starts_with("audits: 61 ok"), "{stdout}");
}

fn fragment_bomb(levels: usize, leaf: &str) -> String {
    let mut q = format!("query {{ ...F{levels} }} fragment F0 on Query {{ {leaf} }}");
    for i in 1..=levels {
        q.push_str(&format!(
            " fragment F{i} on Query {{ ...F{p} ...F{p} }}",
            p = i - 1
        ));
    }
    q
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test]
async fn a_fragment_bomb_is_refused_at_once_with_memory_flat() {
    let app = spawn_app().await;
    let before = rss_kib();
    for (levels, leaf) in [(28, "__typename"), (28, "me { id }"), (64, "__typename")] {
        let body = json!({ "query": fragment_bomb(levels, leaf) }).to_string();
        let started = std::time::Instant::now();
        let (status, _, v) = post_raw(&app, Some("application/json"), Some(GQL), body).await;
        let took = started.elapsed();
        assert_eq!(status, 400, "{v}");
        assert_refusal(&v, "BAD_REQUEST");
        let msg = v["errors"][0]["message"].as_str().unwrap();
        assert!(msg.contains("after expanding fragments"), "{msg}");
        // Refused before anything exponential runs: milliseconds, not the seconds (24
        // levels: 11 s of CPU; 28: killed at 24 GB) it cost before the limits.
        assert!(
            took < std::time::Duration::from_secs(1),
            "{levels} levels took {took:?}"
        );
    }
    let grown = rss_kib().saturating_sub(before);
    assert!(grown < 50 * 1024, "RSS grew by {grown} KiB");
}

#[tokio::test]
async fn documents_too_large_too_many_tokens_or_too_nested_are_refused_before_parsing() {
    let app = spawn_app().await;
    let cases = [
        (format!("{{ {} }}", "a ".repeat(4_500)), "tokens"),
        (
            format!("{{ a(x: {}1{}) }}", "[".repeat(5_000), "]".repeat(5_000)),
            "nests",
        ),
        (
            format!("# {}\n{{ __typename }}", "x".repeat(40_000)),
            "bytes",
        ),
    ];
    for (query, what) in cases {
        let body = json!({ "query": query }).to_string();
        let (status, _, v) = post_raw(&app, Some("application/json"), Some(GQL), body).await;
        assert_eq!(status, 400, "{what}: {v}");
        assert_refusal(&v, "BAD_REQUEST");
        let msg = v["errors"][0]["message"].as_str().unwrap();
        assert!(msg.contains(what), "{what}: {msg}");
    }
    // The server is still up and answering.
    let (status, _, v) = post_raw(
        &app,
        Some("application/json"),
        None,
        json!({ "query": "{ __typename }" }).to_string(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(v["data"]["__typename"], "Query");
}

#[tokio::test]
async fn the_standard_introspection_queries_succeed() {
    let app = spawn_app().await;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.starts_with("introspection_") {
            continue;
        }
        seen += 1;
        let query = std::fs::read_to_string(&path).unwrap();
        let body = json!({ "query": query, "operationName": "IntrospectionQuery" }).to_string();
        let (status, _, v) = post_raw(&app, Some("application/json"), Some(GQL), body).await;
        assert_eq!(status, 200, "{name}: {v}");
        assert!(v.get("errors").is_none(), "{name}: {}", v["errors"]);
        let types = v["data"]["__schema"]["types"].as_array().unwrap();
        assert!(types.iter().any(|t| t["name"] == "LoginPayload"), "{name}");
    }
    assert!(seen >= 5, "only {seen} introspection fixtures");
}
