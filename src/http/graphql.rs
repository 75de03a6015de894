//! `/graphql` over HTTP, following the GraphQL-over-HTTP specification (CONTRACT 3.1).
//!
//! The request is taken apart here rather than by async-graphql-axum's extractor, because the
//! extractor reads bodies of any size, takes any content type and answers every failure with
//! a bare status. In order, a request must:
//!
//! 1. accept a media type we can answer with (`application/graphql-response+json`, else
//!    `application/json`; none or `*/*` means JSON), or get 406;
//! 2. (POST) say `Content-Type: application/json`, or get 415 with nothing executed: a
//!    browser cannot send that cross-site without a CORS preflight;
//! 3. (POST) fit in [`GRAPHQL_BODY_LIMIT`], or get 413 before more is read;
//! 4. be one JSON object with well-typed `query`, `operationName`, `variables`, `extensions`
//!    (batches are not supported), or get 400;
//! 5. pass the cost limits of [`crate::graphql::limits`] (size, tokens, nesting, fields after
//!    fragment expansion) before anything that grows faster than the text runs, and (GET) not
//!    be a mutation (405).
//!
//! Every answer is a GraphQL JSON response whose errors carry `extensions.code`; an answer
//! to a request that never reached execution has no `data` key.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use async_graphql::parser::types::{DocumentOperations, ExecutableDocument, OperationType};
use axum::Extension;
use axum::body::Body;
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use serde_json::{Map, Value, json};

use super::AppState;
use crate::domain::client_addr::client_address;
use crate::graphql::limits::{self, Limits};
use crate::graphql::{Caller, ClientAddress, errors};

use super::GRAPHQL_BODY_LIMIT;

/// The official GraphQL response media type.
const GRAPHQL_RESPONSE_JSON: &str = "application/graphql-response+json";
/// At most this many distinct operation names become metrics labels; the rest are `other`.
pub const MAX_OPERATION_LABELS: usize = 64;

/// The media type of the answer, chosen from `Accept`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MediaType {
    GraphqlResponseJson,
    Json,
}

impl MediaType {
    fn content_type(self) -> &'static str {
        match self {
            MediaType::GraphqlResponseJson => "application/graphql-response+json; charset=utf-8",
            MediaType::Json => "application/json; charset=utf-8",
        }
    }
}

/// A request refused before execution: its status and the one error it gets.
#[derive(Debug)]
struct Refusal {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl Refusal {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Refusal {
            status,
            code: "BAD_REQUEST",
            message: message.into(),
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Refusal::new(StatusCode::BAD_REQUEST, message)
    }
}

/// Chooses the answer's media type from `Accept`: the GraphQL media type when the client
/// accepts it, JSON when it accepts that, `*/*` or says nothing; `None` means 406.
pub fn negotiate(accept: Option<&str>) -> Option<MediaType> {
    let Some(accept) = accept.filter(|a| !a.trim().is_empty()) else {
        return Some(MediaType::Json);
    };
    let mut json = false;
    for range in accept.split(',') {
        let mut parts = range.split(';');
        let essence = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let refused = parts.any(|p| {
            let p = p.trim().replace(' ', "");
            p == "q=0" || p == "q=0.0" || p == "q=0.00" || p == "q=0.000"
        });
        if refused {
            continue;
        }
        match essence.as_str() {
            GRAPHQL_RESPONSE_JSON => return Some(MediaType::GraphqlResponseJson),
            "application/json" | "application/*" | "*/*" => json = true,
            _ => {}
        }
    }
    json.then_some(MediaType::Json)
}

/// Whether the client is a browser asking for a page (GraphiQL) rather than for data.
fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| {
            a.split(',')
                .any(|r| r.split(';').next().unwrap_or("").trim() == "text/html")
        })
}

/// `Content-Type` must be JSON, in UTF-8 if a charset is named.
fn check_content_type(headers: &HeaderMap) -> Result<(), Refusal> {
    let unsupported = |what: &str| {
        Refusal::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("{what}; send the request as Content-Type: application/json"),
        )
    };
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Err(unsupported("no Content-Type"));
    };
    let value = value
        .to_str()
        .map_err(|_| unsupported("unreadable Content-Type"))?;
    let mut parts = value.split(';');
    let essence = parts.next().unwrap_or("").trim();
    if !essence.eq_ignore_ascii_case("application/json") {
        return Err(unsupported(&format!(
            "Content-Type `{essence}` is not supported"
        )));
    }
    for param in parts {
        if let Some((name, v)) = param.split_once('=')
            && name.trim().eq_ignore_ascii_case("charset")
        {
            let v = v.trim().trim_matches('"');
            if !v.eq_ignore_ascii_case("utf-8") && !v.eq_ignore_ascii_case("utf8") {
                return Err(unsupported(&format!("charset `{v}` is not supported")));
            }
        }
    }
    Ok(())
}

/// Reads the body, refusing with 413 as soon as it is known to exceed the limit: from a
/// `Content-Length` before reading anything, otherwise once the bytes read pass it.
async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Vec<u8>, Refusal> {
    let too_large = || {
        Refusal::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body is larger than {limit} bytes"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let mut body = body;
    let mut buf = Vec::with_capacity(declared.map_or(1024, |n| n as usize));
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|e| Refusal::bad_request(format!("cannot read the body: {e}")))?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > limit {
                return Err(too_large());
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf)
}

/// The parameters of one GraphQL request, checked for type.
#[derive(Debug, Default)]
struct Params {
    query: String,
    operation_name: Option<String>,
    variables: Map<String, Value>,
    extensions: Map<String, Value>,
}

/// Reads the JSON body of a POST: one object, with parameters of the right types.
fn params_from_json(body: &[u8]) -> Result<Params, Refusal> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(Refusal::bad_request(
            "the request body is empty; send {\"query\": \"...\"}",
        ));
    }
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| Refusal::bad_request(format!("the request body is not JSON: {e}")))?;
    match value {
        Value::Object(map) => params_from_map(map),
        Value::Array(_) => Err(Refusal::bad_request(
            "batched requests are not supported; send one request object",
        )),
        _ => Err(Refusal::bad_request(
            "the request body must be a JSON object",
        )),
    }
}

fn params_from_map(mut map: Map<String, Value>) -> Result<Params, Refusal> {
    let query = match map.remove("query") {
        Some(Value::String(q)) => q,
        None | Some(Value::Null) => {
            return Err(Refusal::bad_request("the `query` parameter is missing"));
        }
        Some(_) => return Err(Refusal::bad_request("`query` must be a string")),
    };
    let operation_name = match map.remove("operationName") {
        None | Some(Value::Null) => None,
        Some(Value::String(n)) => Some(n),
        Some(_) => return Err(Refusal::bad_request("`operationName` must be a string")),
    };
    let object = |name: &str, v: Option<Value>| match v {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(m)) => Ok(m),
        Some(_) => Err(Refusal::bad_request(format!("`{name}` must be an object"))),
    };
    let variables = object("variables", map.remove("variables"))?;
    let extensions = object("extensions", map.remove("extensions"))?;
    Ok(Params {
        query,
        operation_name,
        variables,
        extensions,
    })
}

/// Reads the URL query of a GET: `query`, `operationName`, and `variables` / `extensions` as
/// JSON text.
fn params_from_url(raw: Option<&str>) -> Result<Params, Refusal> {
    let mut map = Map::new();
    for (key, value) in url::form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        let value = match key.as_ref() {
            "query" | "operationName" => Value::String(value.into_owned()),
            "variables" | "extensions" => serde_json::from_str(&value)
                .map_err(|e| Refusal::bad_request(format!("`{key}` is not JSON: {e}")))?,
            _ => continue,
        };
        map.insert(key.into_owned(), value);
    }
    params_from_map(map)
}

/// The operation a request runs: the named one, or the only one.
fn chosen_operation<'d>(
    doc: &'d ExecutableDocument,
    name: Option<&str>,
) -> Option<(Option<&'d str>, OperationType)> {
    match (&doc.operations, name) {
        (DocumentOperations::Single(op), _) => Some((None, op.node.ty)),
        (DocumentOperations::Multiple(ops), Some(name)) => ops
            .iter()
            .find(|(n, _)| n.as_str() == name)
            .map(|(n, op)| (Some(n.as_str()), op.node.ty)),
        (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => ops
            .iter()
            .next()
            .map(|(n, op)| (Some(n.as_str()), op.node.ty)),
        (DocumentOperations::Multiple(_), None) => None,
    }
}

/// The metrics label of an operation: its name when the document defines it, within a cap on
/// distinct names; `other` beyond the cap; `anonymous` for an unnamed operation.
fn operation_label(name: Option<&str>) -> String {
    static SEEN: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    let Some(name) = name else {
        return "anonymous".to_owned();
    };
    let seen = SEEN.get_or_init(|| Mutex::new(HashSet::new()));
    let Ok(mut seen) = seen.lock() else {
        return "other".to_owned();
    };
    if seen.contains(name) {
        return name.to_owned();
    }
    if seen.len() < MAX_OPERATION_LABELS {
        seen.insert(name.to_owned());
        return name.to_owned();
    }
    "other".to_owned()
}

/// An answer with no `data` key: the request never reached execution.
#[derive(serde::Serialize)]
struct WithoutData {
    errors: Vec<async_graphql::ServerError>,
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    extensions: std::collections::BTreeMap<String, async_graphql::Value>,
}

/// The body of a response, serialized once: errors always carry a code; `data` only if
/// execution began.
fn body_of(mut resp: async_graphql::Response, executed: bool) -> Vec<u8> {
    for err in &mut resp.errors {
        let ext = err.extensions.get_or_insert_with(Default::default);
        if ext.get("code").is_none() {
            // Before execution, errors without a code come from async-graphql itself: the
            // document did not validate or a variable did not fit its type. During execution
            // every error is a domain error with its code (`graphql::errors`); one without is
            // a bug.
            if executed {
                tracing::error!(message = %err.message, "GraphQL error without a code");
                ext.set("code", "INTERNAL");
            } else {
                ext.set("code", "BAD_REQUEST");
            }
        }
    }
    let bytes = if executed {
        serde_json::to_vec(&resp)
    } else {
        serde_json::to_vec(&WithoutData {
            errors: resp.errors,
            extensions: resp.extensions,
        })
    };
    bytes.unwrap_or_else(|_| b"{}".to_vec())
}

fn reply(status: StatusCode, media: MediaType, bytes: Vec<u8>) -> Response {
    let mut resp = (status, bytes).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(media.content_type()),
    );
    resp
}

fn refuse(refusal: Refusal, media: MediaType) -> Response {
    let body = json!({
        "errors": [{ "message": refusal.message, "extensions": { "code": refusal.code } }]
    });
    let bytes = serde_json::to_vec(&body).unwrap_or_else(|_| b"{}".to_vec());
    let mut resp = reply(refusal.status, media, bytes);
    if refusal.status == StatusCode::METHOD_NOT_ALLOWED {
        resp.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, POST"));
    }
    record("invalid", "refused", None);
    resp
}

fn record(operation: &str, outcome: &'static str, started: Option<Instant>) {
    metrics::counter!("wxunion_graphql_requests_total", "operation" => operation.to_owned(), "outcome" => outcome)
        .increment(1);
    if let Some(started) = started {
        metrics::histogram!("wxunion_graphql_request_seconds", "operation" => operation.to_owned())
            .record(started.elapsed().as_secs_f64());
    }
}

/// The TCP peer of a request, when it came over the network (not for in-process requests).
type Peer = Option<Extension<ConnectInfo<SocketAddr>>>;

/// The client address of a request: its peer, or the address a trusted proxy forwarded.
fn client_of(state: &AppState, headers: &HeaderMap, peer: Peer) -> Option<ClientAddress> {
    let forwarded: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    client_address(
        peer.map(|Extension(ConnectInfo(addr))| addr.ip()),
        &forwarded,
        &state.service.config().trusted_proxies,
    )
    .map(ClientAddress)
}

/// `GET /graphql`: GraphiQL for a browser, a query (never a mutation) for a JSON client.
pub async fn get(
    State(state): State<Arc<AppState>>,
    peer: Peer,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    if wants_html(&headers) {
        return super::graphiql::page(state.service.config().graphiql);
    }
    let Some(media) = negotiate(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok())) else {
        return refuse(not_acceptable(), MediaType::Json);
    };
    match params_from_url(raw.as_deref()) {
        Ok(params) => {
            let client = client_of(&state, &headers, peer);
            run(&state, &headers, client, params, media, true).await
        }
        Err(r) => refuse(r, media),
    }
}

/// `POST /graphql`: any operation, as a JSON body.
pub async fn post(
    State(state): State<Arc<AppState>>,
    peer: Peer,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some(media) = negotiate(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok())) else {
        return refuse(not_acceptable(), MediaType::Json);
    };
    let params = async {
        check_content_type(&headers)?;
        let body = read_body(&headers, body, GRAPHQL_BODY_LIMIT).await?;
        params_from_json(&body)
    };
    match params.await {
        Ok(params) => {
            let client = client_of(&state, &headers, peer);
            run(&state, &headers, client, params, media, false).await
        }
        Err(r) => refuse(r, media),
    }
}

/// Any other method on `/graphql`.
pub async fn method_not_allowed(headers: HeaderMap) -> Response {
    let media = negotiate(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()))
        .unwrap_or(MediaType::Json);
    refuse(
        Refusal::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "use POST (or GET for queries)",
        ),
        media,
    )
}

fn not_acceptable() -> Refusal {
    Refusal::new(
        StatusCode::NOT_ACCEPTABLE,
        "the Accept header allows neither application/graphql-response+json nor application/json",
    )
}

/// Checks the cost limits, parses once, resolves the caller and executes.
async fn run(
    state: &AppState,
    headers: &HeaderMap,
    client: Option<ClientAddress>,
    params: Params,
    media: MediaType,
    is_get: bool,
) -> Response {
    let started = Instant::now();
    // A GraphQL error before execution: 400 for the GraphQL media type, 200 for plain JSON.
    let pre_execution = |message: String| {
        let status = match media {
            MediaType::GraphqlResponseJson => StatusCode::BAD_REQUEST,
            MediaType::Json => StatusCode::OK,
        };
        Refusal::new(status, message)
    };
    // The cost limits, before anything that grows faster than the text runs.
    if let Err(e) = limits::check_text(&params.query, &Limits::DEFAULT) {
        return refuse(pre_execution(e.to_string()), media);
    }
    let doc = match async_graphql::parser::parse_query(&params.query) {
        Ok(doc) => doc,
        Err(e) => return refuse(pre_execution(e.to_string()), media),
    };
    if let Err(e) = limits::check_document(&doc, &Limits::DEFAULT) {
        return refuse(pre_execution(e.to_string()), media);
    }
    let chosen = chosen_operation(&doc, params.operation_name.as_deref());
    if is_get && chosen.is_some_and(|(_, ty)| ty == OperationType::Mutation) {
        return refuse(
            Refusal::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "mutations need POST; GET runs queries only",
            ),
            media,
        );
    }
    let operation = match chosen {
        Some((Some(name), _)) => operation_label(Some(name)),
        Some((None, _)) => "anonymous".to_owned(),
        None => "invalid".to_owned(),
    };

    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let caller = match Caller::from_authorization(&state.service, auth).await {
        Ok(c) => c,
        Err(e) => {
            let err = errors::to_graphql(e).into_server_error(async_graphql::Pos::default());
            let resp = async_graphql::Response::from_errors(vec![err]);
            let status = match media {
                MediaType::GraphqlResponseJson => StatusCode::INTERNAL_SERVER_ERROR,
                MediaType::Json => StatusCode::OK,
            };
            record(&operation, "error", Some(started));
            return reply(status, media, body_of(resp, false));
        }
    };

    let mut request = async_graphql::Request::new(params.query)
        .variables(async_graphql::Variables::from_json(Value::Object(
            params.variables,
        )))
        .data(caller);
    if let Some(client) = client {
        request = request.data(client);
    }
    if let Some(name) = params.operation_name {
        request = request.operation_name(name);
    }
    for (k, v) in params.extensions {
        if let Ok(v) = async_graphql::Value::from_json(v) {
            request.extensions.insert(k, v);
        }
    }
    request.set_parsed_query(doc);
    // Executed in a task of its own: a client that goes away (or the request timeout) drops
    // this handler, never a use case half-way through a database transaction. A transaction
    // abandoned mid-statement could otherwise go back to the pool still open, and the next
    // statements on that connection would run inside it and never commit.
    let schema = state.schema.clone();
    let resp = match tokio::spawn(async move { schema.execute(request).await }).await {
        Ok(resp) => resp,
        Err(e) => {
            tracing::error!(error = %e, "GraphQL execution failed");
            let err = errors::to_graphql(crate::domain::Error::internal(e))
                .into_server_error(async_graphql::Pos::default());
            async_graphql::Response::from_errors(vec![err])
        }
    };
    let executed = began_execution(&resp);
    let outcome = if resp.errors.is_empty() {
        "ok"
    } else {
        "error"
    };
    record(&operation, outcome, Some(started));
    let status = if executed || media == MediaType::Json {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    reply(status, media, body_of(resp, executed))
}

/// Whether async-graphql got as far as executing: it then answers with data, or with a
/// resolver error (which always has a path) that nulled the data. Validation errors,
/// variable coercion errors and an unknown operation name have no path and no data.
fn began_execution(resp: &async_graphql::Response) -> bool {
    !matches!(resp.data, async_graphql::Value::Null)
        || resp.errors.iter().any(|e| !e.path.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_follows_the_accept_header() {
        let cases: &[(Option<&str>, Option<MediaType>)] = &[
            (None, Some(MediaType::Json)),
            (Some(""), Some(MediaType::Json)),
            (Some("*/*"), Some(MediaType::Json)),
            (Some("application/json"), Some(MediaType::Json)),
            (Some("application/*"), Some(MediaType::Json)),
            (
                Some("application/graphql-response+json"),
                Some(MediaType::GraphqlResponseJson),
            ),
            (
                Some("application/json, application/graphql-response+json;q=0.9"),
                Some(MediaType::GraphqlResponseJson),
            ),
            (
                Some("application/graphql-response+json, application/json, multipart/mixed"),
                Some(MediaType::GraphqlResponseJson),
            ),
            (Some("application/graphql-response+json;q=0"), None),
            (Some("text/html"), None),
            (Some("application/xml, text/plain"), None),
            (Some("text/html, */*;q=0.8"), Some(MediaType::Json)),
        ];
        for (accept, want) in cases {
            assert_eq!(negotiate(*accept), *want, "Accept: {accept:?}");
        }
    }

    #[test]
    fn only_json_content_types_are_taken() {
        let cases: &[(Option<&str>, bool)] = &[
            (Some("application/json"), true),
            (Some("application/json; charset=utf-8"), true),
            (Some("Application/JSON;charset=\"UTF-8\""), true),
            (Some("application/json; charset=latin1"), false),
            (Some("text/plain"), false),
            (Some("application/x-www-form-urlencoded"), false),
            (Some("multipart/form-data; boundary=x"), false),
            (Some("application/graphql"), false),
            (None, false),
        ];
        for (ct, ok) in cases {
            let mut h = HeaderMap::new();
            if let Some(ct) = ct {
                h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
            }
            let got = check_content_type(&h);
            assert_eq!(got.is_ok(), *ok, "Content-Type: {ct:?}");
            if let Err(r) = got {
                assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
            }
        }
    }

    #[test]
    fn request_parameters_must_have_their_types() {
        let cases: &[(&str, Option<&str>)] = &[
            (r#"{"query":"{ me { id } }"}"#, None),
            (
                r#"{"query":"{a}","operationName":null,"variables":null,"extensions":null}"#,
                None,
            ),
            (
                r#"{"query":"{a}","variables":{"x":1},"extensions":{"e":1}}"#,
                None,
            ),
            ("", Some("empty")),
            ("{ \"not a JSON", Some("not JSON")),
            (r#"[{"query":"{a}"}]"#, Some("batched")),
            ("42", Some("JSON object")),
            (r#"{"qeury":"{a}"}"#, Some("missing")),
            (
                r#"{"query":{"obj":"ect"}}"#,
                Some("`query` must be a string"),
            ),
            (r#"{"query":0}"#, Some("`query` must be a string")),
            (
                r#"{"query":"{a}","operationName":3}"#,
                Some("`operationName`"),
            ),
            (
                r#"{"query":"{a}","variables":"x"}"#,
                Some("`variables` must be an object"),
            ),
            (r#"{"query":"{a}","variables":["x"]}"#, Some("`variables`")),
            (
                r#"{"query":"{a}","extensions":false}"#,
                Some("`extensions`"),
            ),
        ];
        for (body, err) in cases {
            match (params_from_json(body.as_bytes()), err) {
                (Ok(_), None) => {}
                (Err(r), Some(want)) => {
                    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}");
                    assert!(r.message.contains(want), "{body}: {}", r.message);
                }
                (got, want) => panic!("{body}: got {got:?}, wanted error {want:?}"),
            }
        }
    }

    #[test]
    fn get_parameters_carry_variables_as_json_text() {
        let p = params_from_url(Some(
            "query=query%20Q(%24a%3AInt)%7B__typename%7D&operationName=Q&variables=%7B%22a%22%3A1%7D",
        ))
        .unwrap();
        assert_eq!(p.query, "query Q($a:Int){__typename}");
        assert_eq!(p.operation_name.as_deref(), Some("Q"));
        assert_eq!(p.variables["a"], 1);
        assert!(params_from_url(Some("query={a}&variables=nope")).is_err());
        assert!(params_from_url(None).is_err());
    }

    #[test]
    fn the_chosen_operation_is_the_named_or_the_only_one() {
        let doc = async_graphql::parser::parse_query("query A { a } mutation B { b }").unwrap();
        assert_eq!(
            chosen_operation(&doc, Some("B")),
            Some((Some("B"), OperationType::Mutation))
        );
        assert_eq!(
            chosen_operation(&doc, Some("A")),
            Some((Some("A"), OperationType::Query))
        );
        assert_eq!(chosen_operation(&doc, None), None);
        assert_eq!(chosen_operation(&doc, Some("C")), None);
        let doc = async_graphql::parser::parse_query("mutation { b }").unwrap();
        assert_eq!(
            chosen_operation(&doc, None),
            Some((None, OperationType::Mutation))
        );
    }

    #[test]
    fn bodies_over_the_limit_are_refused_whatever_the_length_header_says() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let big = vec![b' '; 2048];
        let cases: &[(Option<&str>, usize, bool)] = &[
            (None, 100, true),
            (None, 2048, false),
            (Some("10"), 2048, false),
            (Some("999999999"), 10, false),
            (Some("100"), 100, true),
        ];
        for (declared, len, ok) in cases {
            let mut h = HeaderMap::new();
            if let Some(d) = declared {
                h.insert(header::CONTENT_LENGTH, HeaderValue::from_static(d));
            }
            let body = Body::from(big[..*len].to_vec());
            let got = rt.block_on(read_body(&h, body, 1024));
            assert_eq!(got.is_ok(), *ok, "declared {declared:?}, sent {len}");
            if let Err(r) = got {
                assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
            }
        }
    }
}
