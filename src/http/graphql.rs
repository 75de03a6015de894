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
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
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

/// A request refused before execution, as it is answered: status, the one error's code and
/// message, and the media type of the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub media: MediaType,
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

    fn answered_as(self, media: MediaType) -> Refused {
        Refused {
            status: self.status,
            code: self.code,
            message: self.message,
            media,
        }
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
    let too_large = || too_large(limit);
    let declared = declared_length(headers);
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

fn too_large(limit: usize) -> Refusal {
    Refusal::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the request body is larger than {limit} bytes"),
    )
}

/// The body length `Content-Length` announces, if it is a number.
fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
}

/// The parameters of one GraphQL request, checked for type.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Params {
    pub query: String,
    pub operation_name: Option<String>,
    pub variables: Map<String, Value>,
    pub extensions: Map<String, Value>,
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

/// The operation a request runs: the named one, or the only one
/// ([`crate::graphql::variables::operation`]). An anonymous operation requested by a name
/// counts too: async-graphql refuses the name when it executes, but the operation's type
/// decides first how the request is answered over HTTP (a mutation over GET is refused).
fn chosen_operation<'d>(
    doc: &'d ExecutableDocument,
    name: Option<&str>,
) -> Option<(Option<&'d str>, OperationType)> {
    match (&doc.operations, name) {
        (DocumentOperations::Single(op), Some(_)) => Some((None, op.node.ty)),
        _ => crate::graphql::variables::operation(doc, name).map(|(n, op)| (n, op.node.ty)),
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

fn refuse(refusal: Refused) -> Response {
    let body = json!({
        "errors": [{ "message": refusal.message, "extensions": { "code": refusal.code } }]
    });
    let bytes = serde_json::to_vec(&body).unwrap_or_else(|_| b"{}".to_vec());
    let mut resp = reply(refusal.status, refusal.media, bytes);
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

/// What `/graphql` makes of a request before executing it.
#[derive(Debug)]
pub enum Decoded {
    /// A browser's `GET` (it accepts `text/html`): the GraphiQL page, not a query.
    Page,
    /// A request that passed every check, parsed once, ready to execute.
    Request(Box<Prepared>),
}

/// A request ready to execute: the answer's media type, its parameters and its document.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub media: MediaType,
    pub params: Params,
    pub doc: ExecutableDocument,
    /// The operation that runs: its name (`None` when unnamed) and type; `None` when the
    /// document does not single one out (execution answers that error).
    pub operation: Option<(Option<String>, OperationType)>,
    /// What the server keeps of the document (`None` where nothing is kept).
    pub kept: Option<Arc<Kept>>,
}

impl Prepared {
    /// The async-graphql request for `caller`, carrying the document parsed once.
    pub fn into_request(self, caller: Caller) -> async_graphql::Request {
        let mut request = async_graphql::Request::new(self.params.query)
            .variables(async_graphql::Variables::from_json(Value::Object(
                self.params.variables,
            )))
            .data(caller);
        if let Some(name) = self.params.operation_name {
            request = request.operation_name(name);
        }
        for (k, v) in self.params.extensions {
            if let Ok(v) = async_graphql::Value::from_json(v) {
                request.extensions.insert(k, v);
            }
        }
        request.set_parsed_query(self.doc);
        request
    }
}

/// Everything `/graphql` does with an untrusted request before execution, as a pure function
/// of its method, headers, URL query and (already read) body: the steps 1 to 5 of the module
/// documentation, in the route's order and with its answers. The route runs the same steps,
/// reading the body in between and refusing it with 413 as soon as it passes the limit.
pub fn decode(
    method: &Method,
    headers: &HeaderMap,
    raw_query: Option<&str>,
    body: &[u8],
) -> Result<Decoded, Refused> {
    let (params, media, is_get) = if method == Method::GET || method == Method::HEAD {
        match before_get(headers, raw_query)? {
            Some((media, params)) => (params, media, true),
            None => return Ok(Decoded::Page),
        }
    } else if method == Method::POST {
        let media = before_post(headers)?;
        let limit = GRAPHQL_BODY_LIMIT;
        if declared_length(headers).is_some_and(|n| n > limit as u64) || body.len() > limit {
            return Err(too_large(limit).answered_as(media));
        }
        let params = params_from_json(body).map_err(|r| r.answered_as(media))?;
        (params, media, false)
    } else {
        return Err(not_allowed(headers));
    };
    prepare(params, media, is_get, None).map(|p| Decoded::Request(Box::new(p)))
}

/// The media type of the answer, from `Accept`, or 406.
fn accept(headers: &HeaderMap) -> Result<MediaType, Refused> {
    negotiate(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()))
        .ok_or_else(|| not_acceptable().answered_as(MediaType::Json))
}

/// A `GET`: `None` for a browser (GraphiQL), else the answer's media type and the parameters
/// from the URL.
fn before_get(
    headers: &HeaderMap,
    raw_query: Option<&str>,
) -> Result<Option<(MediaType, Params)>, Refused> {
    if wants_html(headers) {
        return Ok(None);
    }
    let media = accept(headers)?;
    let params = params_from_url(raw_query).map_err(|r| r.answered_as(media))?;
    Ok(Some((media, params)))
}

/// A `POST` before its body is read: the answer's media type, and a JSON content type.
fn before_post(headers: &HeaderMap) -> Result<MediaType, Refused> {
    let media = accept(headers)?;
    check_content_type(headers).map_err(|r| r.answered_as(media))?;
    Ok(media)
}

/// `GET /graphql`: GraphiQL for a browser, a query (never a mutation) for a JSON client.
pub async fn get(
    State(state): State<Arc<AppState>>,
    peer: Peer,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let (media, params) = match before_get(&headers, raw.as_deref()) {
        Ok(Some(request)) => request,
        Ok(None) => return super::graphiql::page(state.service.config().graphiql),
        Err(r) => return refuse(r),
    };
    let started = Instant::now();
    match prepare(params, media, true, Some(&state.documents)) {
        Ok(prepared) => {
            let client = client_of(&state, &headers, peer);
            run(&state, &headers, client, prepared, started).await
        }
        Err(r) => refuse(r),
    }
}

/// `POST /graphql`: any operation, as a JSON body.
pub async fn post(
    State(state): State<Arc<AppState>>,
    peer: Peer,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let media = match before_post(&headers) {
        Ok(media) => media,
        Err(r) => return refuse(r),
    };
    let params = async {
        let body = read_body(&headers, body, GRAPHQL_BODY_LIMIT).await?;
        params_from_json(&body)
    };
    let params = match params.await {
        Ok(params) => params,
        Err(r) => return refuse(r.answered_as(media)),
    };
    let started = Instant::now();
    match prepare(params, media, false, Some(&state.documents)) {
        Ok(prepared) => {
            let client = client_of(&state, &headers, peer);
            run(&state, &headers, client, prepared, started).await
        }
        Err(r) => refuse(r),
    }
}

/// Any other method on `/graphql`.
pub async fn method_not_allowed(headers: HeaderMap) -> Response {
    refuse(not_allowed(&headers))
}

fn not_allowed(headers: &HeaderMap) -> Refused {
    let media = negotiate(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()))
        .unwrap_or(MediaType::Json);
    Refusal::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "use POST (or GET for queries)",
    )
    .answered_as(media)
}

fn not_acceptable() -> Refusal {
    Refusal::new(
        StatusCode::NOT_ACCEPTABLE,
        "the Accept header allows neither application/graphql-response+json nor application/json",
    )
}

/// The document of a query text that passes the cost limits, or why it does not: the text's
/// limits before anything that grows faster than the text runs, then one parse, then the
/// document's limits (fields after fragment expansion).
fn checked_document(query: &str) -> Result<ExecutableDocument, String> {
    limits::check_text(query, &Limits::DEFAULT).map_err(|e| e.to_string())?;
    let doc = async_graphql::parser::parse_query(query).map_err(|e| e.to_string())?;
    limits::check_document(&doc, &Limits::DEFAULT).map_err(|e| e.to_string())?;
    Ok(doc)
}

/// The most query text [`Documents`] keeps, in bytes: all of the operations an application
/// sends, or 16 texts at the cost limits' largest (32 KiB).
pub const DOCUMENT_CACHE_BYTES: u64 = 512 * 1024;

/// Parsed documents by query text, shared by every request of a server.
///
/// Clients send the same few operations over and over (every login from a mini program is one
/// mutation), and parsing is the costliest step before execution: async-graphql's parser
/// takes about 17 µs for the benchmark's login mutation, a clone of its document 0.5 µs. So a
/// document that passed the cost limits is kept, and the next request with the same text gets
/// a clone of it instead of a parse and the limits again (the limits depend on the text
/// alone). A text that fails the limits or does not parse is never kept: it is checked anew
/// each time, as every text was before. Bounded by the total length of the texts kept
/// ([`DOCUMENT_CACHE_BYTES`]); the least useful are evicted first (S3-FIFO), and the texts are
/// hashed with the standard library's randomly keyed hasher, since clients choose them.
pub struct Documents(quick_cache::sync::Cache<String, Arc<Kept>, TextLength>);

/// A kept document, and the operation names with which it passed async-graphql's full
/// validation (see [`crate::graphql::variables`]): only names the document defines (or none)
/// get there, since with any other the request does not execute.
#[derive(Debug)]
pub struct Kept {
    pub doc: ExecutableDocument,
    validated: Mutex<Vec<Option<String>>>,
}

impl Kept {
    /// Whether the document passed full validation with this operation name.
    pub fn validated(&self, operation_name: Option<&str>) -> bool {
        self.validated
            .lock()
            .is_ok_and(|names| names.iter().any(|n| n.as_deref() == operation_name))
    }

    /// Records that the document passed full validation with this operation name.
    pub fn passed(&self, operation_name: Option<&str>) {
        if let Ok(mut names) = self.validated.lock()
            && !names.iter().any(|n| n.as_deref() == operation_name)
        {
            names.push(operation_name.map(str::to_owned));
        }
    }
}

/// A kept document weighs the length of its text.
#[derive(Clone)]
struct TextLength;

impl quick_cache::Weighter<String, Arc<Kept>> for TextLength {
    fn weight(&self, text: &String, _: &Arc<Kept>) -> u64 {
        text.len().max(1) as u64
    }
}

impl Default for Documents {
    fn default() -> Self {
        Documents::with_capacity(DOCUMENT_CACHE_BYTES)
    }
}

impl Documents {
    /// A cache that keeps at most `bytes` of query text.
    pub fn with_capacity(bytes: u64) -> Self {
        // About 1 KiB per text: quick_cache sizes its tables from this estimate.
        let estimated = usize::try_from(bytes / 1024).unwrap_or(usize::MAX).max(16);
        Documents(quick_cache::sync::Cache::with_weighter(
            estimated, bytes, TextLength,
        ))
    }

    /// The document of `query` if it passes the cost limits (see [`checked_document`]): kept
    /// from an earlier request with the same text, or checked now and kept.
    pub fn checked(&self, query: &str) -> Result<ExecutableDocument, String> {
        self.checked_kept(query).map(|kept| kept.doc.clone())
    }

    /// [`Documents::checked`], with what is kept of the document.
    pub fn checked_kept(&self, query: &str) -> Result<Arc<Kept>, String> {
        if let Some(kept) = self.0.get(query) {
            return Ok(kept);
        }
        let kept = Arc::new(Kept {
            doc: checked_document(query)?,
            validated: Mutex::new(Vec::new()),
        });
        self.0.insert(query.to_owned(), kept.clone());
        Ok(kept)
    }

    /// How many documents are kept, and the length of their texts in bytes.
    pub fn kept(&self) -> (usize, u64) {
        (self.0.len(), self.0.weight())
    }
}

/// A document as comparable text (for the tests and the fuzzer, which compare kept documents
/// with parses): each operation and fragment by name, in name order (the
/// parser keeps them in hash maps, whose order differs from one parse to the next).
pub fn document_form(doc: &ExecutableDocument) -> Vec<String> {
    let mut parts: Vec<String> = doc
        .operations
        .iter()
        .map(|(name, op)| format!("operation {name:?} {op:?}"))
        .collect();
    parts.extend(
        doc.fragments
            .iter()
            .map(|(name, f)| format!("fragment {name:?} {f:?}")),
    );
    parts.sort();
    parts
}

/// The cost limits, one parse (or a kept document, with `documents`), and the operation:
/// everything before the caller and execution.
fn prepare(
    params: Params,
    media: MediaType,
    is_get: bool,
    documents: Option<&Documents>,
) -> Result<Prepared, Refused> {
    // A GraphQL error before execution: 400 for the GraphQL media type, 200 for plain JSON.
    let pre_execution = |message: String| {
        let status = match media {
            MediaType::GraphqlResponseJson => StatusCode::BAD_REQUEST,
            MediaType::Json => StatusCode::OK,
        };
        Refusal::new(status, message).answered_as(media)
    };
    let (doc, kept) = match documents {
        Some(documents) => documents
            .checked_kept(&params.query)
            .map(|kept| (kept.doc.clone(), Some(kept))),
        None => checked_document(&params.query).map(|doc| (doc, None)),
    }
    .map_err(pre_execution)?;
    let operation = chosen_operation(&doc, params.operation_name.as_deref())
        .map(|(name, ty)| (name.map(str::to_owned), ty));
    if is_get
        && operation
            .as_ref()
            .is_some_and(|(_, ty)| *ty == OperationType::Mutation)
    {
        return Err(Refusal::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "mutations need POST; GET runs queries only",
        )
        .answered_as(media));
    }
    Ok(Prepared {
        media,
        params,
        doc,
        operation,
        kept,
    })
}

/// Resolves the caller and executes.
async fn run(
    state: &AppState,
    headers: &HeaderMap,
    client: Option<ClientAddress>,
    prepared: Prepared,
    started: Instant,
) -> Response {
    let media = prepared.media;
    let operation = match &prepared.operation {
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

    // A document that passed full validation with this operation name before, with variables
    // that need no check, skips async-graphql's validation rules (`graphql::variables`).
    let operation_name = prepared.params.operation_name.clone();
    let kept = prepared.kept.clone();
    let prevalidated = kept
        .as_ref()
        .is_some_and(|k| k.validated(operation_name.as_deref()))
        && crate::graphql::variables::taken_as_given(
            &prepared.doc,
            operation_name.as_deref(),
            &prepared.params.variables,
        );
    let schema = if prevalidated {
        state.prevalidated_schema.clone()
    } else {
        state.schema.clone()
    };
    let mut request = prepared.into_request(caller);
    if let Some(client) = client {
        request = request.data(client);
    }
    // Executed in a task of its own: a client that goes away (or the request timeout) drops
    // this handler, never a use case half-way through a database transaction. A transaction
    // abandoned mid-statement could otherwise go back to the pool still open, and the next
    // statements on that connection would run inside it and never commit.
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
    if executed
        && !prevalidated
        && let Some(kept) = &kept
    {
        kept.passed(operation_name.as_deref());
    }
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
pub fn began_execution(resp: &async_graphql::Response) -> bool {
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
    fn a_kept_document_is_the_one_a_parse_gives() {
        let documents = Documents::default();
        let texts = [
            "{ __typename }",
            "query A { a } mutation B($x: Int = 1) @d { b(x: $x) { ...F } } fragment F on T { c }",
            "mutation L($a: String!, $c: String!) { loginWithCode(appId: $a, code: $c) { sessionToken } }",
            // A text that differs only in white space is another key with its own positions.
            "{  __typename }",
        ];
        let form =
            |doc: Result<ExecutableDocument, String>| document_form(&doc.expect("a valid query"));
        for text in texts {
            let parsed = form(checked_document(text));
            assert_eq!(form(documents.checked(text)), parsed, "{text}");
            assert_eq!(form(documents.checked(text)), parsed, "{text}");
        }
        let bytes: usize = texts.iter().map(|t| t.len()).sum();
        assert_eq!(documents.kept(), (texts.len(), bytes as u64));
    }

    #[test]
    fn a_text_that_fails_the_limits_or_the_parse_is_refused_each_time_and_never_kept() {
        let documents = Documents::default();
        let deep = format!("{}{}", "{a".repeat(40), "}".repeat(40));
        let fields = format!(
            "{{ ...A }} fragment A on Query {{ {} }}",
            "__typename ".repeat(Limits::DEFAULT.max_expanded_fields + 1)
        );
        for text in [
            "{",
            "query { a } query { b",
            &deep,
            &fields,
            &"x".repeat(Limits::DEFAULT.max_bytes + 1),
        ] {
            let want = checked_document(text).expect_err(text);
            assert_eq!(documents.checked(text).expect_err(text), want);
            assert_eq!(documents.checked(text).expect_err(text), want);
        }
        assert_eq!(documents.kept(), (0, 0));
    }

    #[test]
    fn the_documents_kept_stay_within_their_byte_budget() {
        let budget = 8 * 1024;
        let documents = Documents::with_capacity(budget);
        for i in 0..2_000 {
            let text = format!("query Q{i} {{ a{i}: __typename }}");
            let doc = documents.checked(&text).expect("a valid query");
            assert_eq!(
                chosen_operation(&doc, None),
                Some((Some(format!("Q{i}").as_str()), OperationType::Query))
            );
        }
        let (count, bytes) = documents.kept();
        assert!(bytes <= budget, "{bytes} bytes kept, budget {budget}");
        assert!(count > 0 && count < 2_000, "{count} kept");
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
    fn decoding_answers_each_step_in_the_routes_order() {
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.append(*k, HeaderValue::from_static(v));
            }
            h
        };
        let json = [("content-type", "application/json")];
        let big = vec![b' '; GRAPHQL_BODY_LIMIT + 1];
        // (method, headers, URL query, body, expected status or None for a prepared request)
        type Case<'a> = (Method, HeaderMap, Option<&'a str>, &'a [u8], Option<u16>);
        let cases: Vec<Case> = vec![
            (
                Method::POST,
                headers(&json),
                None,
                br#"{"query":"{__typename}"}"#,
                None,
            ),
            (
                Method::GET,
                headers(&[]),
                Some("query=%7B__typename%7D"),
                b"",
                None,
            ),
            (
                Method::HEAD,
                headers(&[]),
                Some("query=%7B__typename%7D"),
                b"",
                None,
            ),
            (Method::PUT, headers(&json), None, b"{}", Some(405)),
            (
                Method::POST,
                headers(&[("accept", "text/plain"), ("content-type", "text/plain")]),
                None,
                b"{}",
                Some(406),
            ),
            (
                Method::POST,
                headers(&[]),
                None,
                br#"{"query":"{a}"}"#,
                Some(415),
            ),
            (
                Method::POST,
                headers(&[
                    ("content-type", "application/json"),
                    ("content-length", "262145"),
                ]),
                None,
                b"{}",
                Some(413),
            ),
            (Method::POST, headers(&json), None, &big, Some(413)),
            (Method::POST, headers(&json), None, b"[]", Some(400)),
            // A GraphQL error before execution: 200 for JSON, 400 for the GraphQL media type.
            (
                Method::POST,
                headers(&json),
                None,
                br#"{"query":"{"}"#,
                Some(200),
            ),
            (
                Method::POST,
                headers(&[
                    ("content-type", "application/json"),
                    ("accept", "application/graphql-response+json"),
                ]),
                None,
                br#"{"query":"{...A} fragment A on Query{...A}"}"#,
                Some(400),
            ),
            (
                Method::GET,
                headers(&[]),
                Some("query=mutation%7Ba%7D"),
                b"",
                Some(405),
            ),
            (Method::GET, headers(&[]), None, b"", Some(400)),
        ];
        for (method, h, raw, body, want) in cases {
            let got = decode(&method, &h, raw, body);
            let status = got.as_ref().err().map(|r| r.status.as_u16());
            assert_eq!(status, want, "{method} {h:?} {raw:?}: {got:?}");
        }
        let browser = headers(&[("accept", "text/html")]);
        assert!(matches!(
            decode(&Method::GET, &browser, None, b""),
            Ok(Decoded::Page)
        ));
        let Ok(Decoded::Request(prepared)) = decode(
            &Method::POST,
            &headers(&json),
            None,
            br#"{"query":"query A { a } mutation B { b }","operationName":"B"}"#,
        ) else {
            panic!("not decoded");
        };
        assert_eq!(
            prepared.operation,
            Some((Some("B".to_owned()), OperationType::Mutation))
        );
        assert_eq!(prepared.media, MediaType::Json);
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
