//! The fuzz targets' bodies, in the library so that `cargo test` replays every committed seed
//! (`fuzz/seeds/<target>/`) through them without a fuzzer; `fuzz/` (cargo fuzz, libFuzzer)
//! only calls them. Each takes arbitrary bytes and returns how far they got. A panic is a
//! finding: the code under test panicked, or broke one of the invariants asserted here.
//!
//! * [`callback_raw`]: the attacker's view of `POST /wechat/callback/{appId}`: a URL query and a
//!   body, through the route's query extraction and body limit, `wechat::envelope::open`
//!   (signatures, envelope, AES, XML), then what the route does with an opened message
//!   (`EventJob`, its JSON payload, the dedupe key, the passive reply).
//! * [`callback_signed`]: the part behind the signatures, which a fuzzer cannot forge: the
//!   bytes are the plaintext message (or the whole decrypted frame), sealed and signed here
//!   with the account's token and key exactly as WeChat does, then opened the same way, and the
//!   outcome compared with what an independent reading of the same bytes says it must be.
//! * [`graphql_request`]: a raw HTTP request to `/graphql` through `http::decode` (method,
//!   `Accept`, `Content-Type`, body limit, JSON, cost limits, parse, operation), then
//!   validated and executed by the real schema, built without a service.
//! * [`config`]: a TOML text and `WXUNION_*` overrides through `Config::from_text`, the parse
//!   and validation `Config::load` runs.

use std::path::Path;
use std::sync::OnceLock;

use aes::Aes256;
use aes::cipher::block_padding::NoPadding;
use aes::cipher::{BlockEncryptMut, KeyIvInit};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use secrecy::ExposeSecret;

use crate::config::Config;
use crate::domain::AppConfig;
use crate::graphql::{ApiSchema, Caller};
use crate::http::{CALLBACK_BODY_LIMIT, Decoded};
use crate::jobs::EventJob;
use crate::wechat::crypto::{self, MsgCrypt};
use crate::wechat::envelope::{self, Opened, QueryParams, Refusal};
use crate::wechat::message::{self, Message};

/// The accounts the callback targets post to, configured as an operator would. Tokens, keys
/// and app ids are those of `tests/vectors/wechat_crypto.json`, so that the vectors are seeds.
const ACCOUNTS_TOML: &str = r#"
[[apps]]   # plaintext mode: no EncodingAESKey
app_id = "wx00000000000000aa"
secret = "fuzz"
kind = "official_account"
token = "tok"
subscribe_reply = "欢迎 <b>&amp; ]]> </xml>"

[[apps]]   # WeChat's published sample (compatible or safe mode)
app_id = "wxb11529c136998cb6"
secret = "fuzz"
kind = "official_account"
token = "pamtest"
encoding_aes_key = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
subscribe_reply = "欢迎 <b>&amp; ]]> </xml>"

[[apps]]   # the independent vectors' derived key (compatible or safe mode)
app_id = "wx0123456789abcdef"
secret = "fuzz"
kind = "official_account"
token = "wxunionToken1"
encoding_aes_key = "aCxCxSbj9eh+7OolaUxDXBagC/MWvRqNxgebzR2PnkY"
subscribe_reply = "欢迎 <b>&amp; ]]> </xml>"
"#;

/// The reply time the targets pass to `text_reply`.
const NOW: i64 = 1_700_000_001;

fn accounts() -> &'static [AppConfig] {
    static ACCOUNTS: OnceLock<Vec<AppConfig>> = OnceLock::new();
    ACCOUNTS.get_or_init(|| {
        match Config::from_text(Some((Path::new("fuzz-accounts.toml"), ACCOUNTS_TOML)), []) {
            Ok(c) => c.apps,
            Err(e) => panic!("the fuzz accounts do not load: {e}"),
        }
    })
}

/// What a callback input came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallbackOutcome {
    /// Not a request the route is reached with (no URL query extracted, body over the limit).
    NotARequest,
    /// Refused by `envelope::open`.
    Refused(Refusal),
    /// Opened and recorded; `replied` when the account answered with its welcome text.
    Opened { encrypted: bool, replied: bool },
}

/// `callback_raw`: the first byte picks the account (`'0'` plaintext mode, `'1'` the published
/// sample's key, `'2'` the derived key; any byte, modulo 3), the rest up to the first newline
/// is the URL query, everything after it the body. Compatible and safe mode are the same
/// account configuration and differ in the body WeChat sends; the seeds hold both.
pub fn callback_raw(data: &[u8]) -> CallbackOutcome {
    let Some((&pick, rest)) = data.split_first() else {
        return CallbackOutcome::NotARequest;
    };
    let app = &accounts()[usize::from(pick) % 3];
    let (query, body) = match rest.iter().position(|&b| b == b'\n') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };
    let Some(q) = query_params(&app.app_id, query) else {
        return CallbackOutcome::NotARequest;
    };
    receive(app, &q, body)
}

/// The route's query parameters, from the query as it would arrive in a URL (one hyper
/// accepts).
fn query_params(app_id: &str, query: &[u8]) -> Option<QueryParams<'static>> {
    let query = std::str::from_utf8(query).ok()?;
    let uri: Uri = format!("/wechat/callback/{app_id}?{query}").parse().ok()?;
    Some(crate::http::callback_params(uri.query()).into_owned())
}

/// What `http::wechat_callback::receive` does, short of the database: the body limit, `open`,
/// then the job, its payload, its dedupe key and the reply, each checked.
fn receive(app: &AppConfig, q: &QueryParams<'_>, body: &[u8]) -> CallbackOutcome {
    if body.len() > CALLBACK_BODY_LIMIT {
        return CallbackOutcome::NotARequest;
    }
    match envelope::open(app, q, body) {
        Ok(opened) => {
            let replied = after_open(app, q, &opened);
            CallbackOutcome::Opened {
                encrypted: opened.encrypted,
                replied,
            }
        }
        Err(refusal) => CallbackOutcome::Refused(refusal),
    }
}

/// The route's work on an opened message, with what must hold of it: the job's payload reads
/// back as the same job (the worker reads it), and a reply reads back, verified and decrypted
/// when the message came encrypted, as the welcome text addressed to the sender.
fn after_open(app: &AppConfig, q: &QueryParams<'_>, opened: &Opened) -> bool {
    let msg = &opened.message;
    let job = EventJob::from_message(msg);
    let payload = match serde_json::to_string(&job) {
        Ok(p) => p,
        Err(e) => panic!("the job of an opened message does not serialize: {e}"),
    };
    let back: Option<EventJob> = serde_json::from_str(&payload).ok();
    assert_eq!(
        back.as_ref(),
        Some(&job),
        "the job payload does not read back"
    );
    let key = msg.dedupe_key(&app.app_id);
    assert!(!key.is_empty(), "empty dedupe key");
    let Some(text) = job.reply(app) else {
        return false;
    };
    let reply = envelope::text_reply(app, q, opened, text, NOW);
    if reply.len() > READABLE_REPLY {
        return true;
    }
    let xml = if opened.encrypted {
        let sealed = match message::parse_reply_envelope(&reply) {
            Ok(s) => s,
            Err(e) => panic!("the encrypted reply does not parse: {e}: {reply}"),
        };
        // The request's timestamp and nonce, or the reply's own where they are empty.
        let given = |name: &str| q.get(name).filter(|v| !v.is_empty());
        let ts = given("timestamp").unwrap_or(&sealed.timestamp);
        let nonce = given("nonce").unwrap_or(&sealed.nonce);
        // XML reads a carriage return as a line feed; WeChat's timestamps and nonces (the
        // only ones that pass the signature check) have none.
        if !ts.contains('\r') && !nonce.contains('\r') {
            assert_eq!(&sealed.timestamp, ts, "reply timestamp");
            assert_eq!(&sealed.nonce, nonce, "reply nonce");
        }
        let mc = msg_crypt(app);
        match mc.verify_and_decrypt(&sealed.msg_signature, ts, nonce, &sealed.encrypt) {
            Ok(xml) => xml,
            Err(e) => panic!("the encrypted reply does not open: {e}"),
        }
    } else {
        reply
    };
    if xml.len() <= READABLE_REPLY {
        check_reply(msg, &xml, text);
    }
    true
}

/// Replies up to this size are read back; the reader refuses more than 64 KiB, and only an
/// account id tens of kilobytes long (never WeChat's) makes a reply that large.
const READABLE_REPLY: usize = 48 * 1024;

/// A reply is addressed to the sender, from the account, and carries the text unchanged.
fn check_reply(msg: &Message, xml: &str, text: &str) {
    let outer = match message::parse_envelope(xml) {
        Ok(e) => e,
        Err(e) => panic!("the reply does not parse: {e}: {xml}"),
    };
    assert_eq!(
        outer.to_user_name.as_deref(),
        Some(msg.from_user_name.as_str())
    );
    // The account's id is whatever the message said; when it has an openid's shape the reply
    // reads back as a whole message.
    if let Ok(back) = message::parse_message(xml) {
        assert_eq!(back.from_user_name, msg.to_user_name);
        assert_eq!(back.msg_type, "text");
    }
    assert!(xml.contains(&text.replace("]]>", "]]]]><![CDATA[>")));
}

fn msg_crypt(app: &AppConfig) -> MsgCrypt {
    let (Some(token), Some(key)) = (&app.token, &app.encoding_aes_key) else {
        panic!("{} has no EncodingAESKey", app.app_id);
    };
    match MsgCrypt::new(token.expose_secret(), key.expose_secret(), &app.app_id) {
        Ok(mc) => mc,
        Err(e) => panic!("{}: {e}", app.app_id),
    }
}

/// How `callback_signed` sends its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignedMode {
    /// The plaintext account; the bytes are the body.
    Plaintext,
    /// The bytes are the message, encrypted, and also in clear around the `<Encrypt>` element.
    Compatible,
    /// The bytes are the message, encrypted, alone in the envelope.
    Safe,
    /// The bytes are the whole decrypted frame (random, length, message, app id, padding),
    /// zero-filled to a whole AES block, encrypted, alone in the envelope.
    SafeFrame,
}

/// `callback_signed`: five parts separated by the first four newlines: the mode (`'0'` to
/// `'3'`, any byte modulo 4, see [`SignedMode`]), `timestamp`, `nonce`, `openid` (left out of
/// the query when empty) and the payload. The query is signed (`signature`, and
/// `msg_signature` over the ciphertext when encrypted) with the account's token, the payload
/// sealed with its key, and the result of `open` compared with what it must be:
/// `parse_message` of the same bytes (of the frame's message, read independently, in
/// [`SignedMode::SafeFrame`]) and the `openid` check.
pub fn callback_signed(data: &[u8]) -> CallbackOutcome {
    let mut parts = data.splitn(5, |&b| b == b'\n');
    let (Some(mode), Some(ts), Some(nonce), Some(openid), Some(payload)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return CallbackOutcome::NotARequest;
    };
    let mode = match mode.first().map(|b| b % 4) {
        Some(0) => SignedMode::Plaintext,
        Some(1) => SignedMode::Compatible,
        Some(2) => SignedMode::Safe,
        _ => SignedMode::SafeFrame,
    };
    let (Ok(ts), Ok(nonce), Ok(openid)) = (
        std::str::from_utf8(ts),
        std::str::from_utf8(nonce),
        std::str::from_utf8(openid),
    ) else {
        return CallbackOutcome::NotARequest;
    };
    let app = &accounts()[if mode == SignedMode::Plaintext { 0 } else { 2 }];
    let token = app
        .token
        .as_ref()
        .map(|t| t.expose_secret().to_owned())
        .unwrap_or_default();

    let mut query = url::form_urlencoded::Serializer::new(String::new());
    query
        .append_pair("signature", &crypto::signature(&token, ts, nonce))
        .append_pair("timestamp", ts)
        .append_pair("nonce", nonce);
    if !openid.is_empty() {
        query.append_pair("openid", openid);
    }
    let (body, expected) = match mode {
        SignedMode::Plaintext => (payload.to_vec(), Some(expected_message(payload))),
        SignedMode::Compatible | SignedMode::Safe | SignedMode::SafeFrame => {
            let (encrypt, expected) = if mode == SignedMode::SafeFrame {
                (
                    seal_frame(app, payload),
                    Some(message_of_frame(app, payload)),
                )
            } else {
                let frame = frame(b"0123456789abcdef", payload, &app.app_id);
                (seal_frame(app, &frame), Some(expected_message(payload)))
            };
            query.append_pair("encrypt_type", "aes").append_pair(
                "msg_signature",
                &crypto::msg_signature(&token, ts, nonce, &encrypt),
            );
            let body = if mode == SignedMode::Compatible {
                message::compatible_xml(&String::from_utf8_lossy(payload), &encrypt)
            } else {
                message::encrypted_envelope_xml("gh_fuzz", &encrypt)
            };
            // Compatible mode's clear copy may not parse where the message does: no oracle.
            let expected = (mode != SignedMode::Compatible)
                .then_some(expected)
                .flatten();
            (body.into_bytes(), expected)
        }
    };
    let query = query.finish();
    let Some(q) = query_params(&app.app_id, query.as_bytes()) else {
        panic!("a query built with form_urlencoded does not extract: {query}");
    };
    let outcome = receive(app, &q, &body);
    if body.len() <= CALLBACK_BODY_LIMIT {
        if let Some(expected) = expected {
            let expected = expected.filter(|m| openid.is_empty() || m.from_user_name == openid);
            let got = envelope::open(app, &q, &body).ok().map(|o| o.message);
            assert_eq!(got, expected, "{mode:?}: open disagrees with the payload");
        } else if let Ok(opened) = envelope::open(app, &q, &body) {
            // Compatible mode: what opens is what was encrypted.
            assert_eq!(Some(opened.message), expected_message(payload));
        }
    }
    outcome
}

/// The message `payload` is, read directly.
fn expected_message(payload: &[u8]) -> Option<Message> {
    std::str::from_utf8(payload)
        .ok()
        .and_then(|xml| message::parse_message(xml).ok())
}

/// WeChat's frame: 16 random bytes, the message length (4 bytes, big-endian), the message, the
/// app id, then PKCS#7 padding to a multiple of 32 bytes.
fn frame(random: &[u8; 16], payload: &[u8], app_id: &str) -> Vec<u8> {
    let mut frame = random.to_vec();
    frame.extend_from_slice(
        &u32::try_from(payload.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    frame.extend_from_slice(payload);
    frame.extend_from_slice(app_id.as_bytes());
    let pad = 32 - frame.len() % 32;
    frame.resize(frame.len() + pad, pad as u8);
    frame
}

/// AES-256-CBC with the account's key (IV: its first 16 bytes), no padding added, base64: how
/// WeChat seals a frame. Written here rather than taken from `wechat::crypto`, so the two are
/// checked against each other. A frame that is not a whole number of blocks is zero-filled.
fn seal_frame(app: &AppConfig, frame: &[u8]) -> String {
    let key = app
        .encoding_aes_key
        .as_ref()
        .and_then(|k| crypto::decode_aes_key(k.expose_secret()).ok())
        .unwrap_or([0; 32]);
    let mut iv = [0u8; 16];
    iv.copy_from_slice(&key[..16]);
    let mut buf = frame.to_vec();
    buf.resize(frame.len().div_ceil(16) * 16, 0);
    let sealed = cbc::Encryptor::<Aes256>::new(&key.into(), &iv.into())
        .encrypt_padded_vec_mut::<NoPadding>(&buf);
    STANDARD.encode(sealed)
}

/// The message in a decrypted frame, read independently of `wechat::crypto`: padding 1 to 32
/// bytes all equal to their count, the length within the frame, the rest the account's app
/// id, the message UTF-8 and a message.
fn message_of_frame(app: &AppConfig, frame: &[u8]) -> Option<Message> {
    let mut buf = frame.to_vec();
    buf.resize(frame.len().div_ceil(16) * 16, 0);
    let pad = usize::from(*buf.last()?);
    if !(1..=32).contains(&pad) || pad > buf.len() {
        return None;
    }
    let (body, padding) = buf.split_at(buf.len() - pad);
    if padding.iter().any(|&b| usize::from(b) != pad) || body.len() < 20 {
        return None;
    }
    let len = u32::from_be_bytes([body[16], body[17], body[18], body[19]]) as usize;
    let rest = &body[20..];
    if len > rest.len() || &rest[len..] != app.app_id.as_bytes() {
        return None;
    }
    expected_message(&rest[..len])
}

/// What a `/graphql` input came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GraphqlOutcome {
    /// Not an HTTP request hyper would hand to the route.
    NotARequest,
    /// GraphiQL for a browser.
    Page,
    /// Refused before execution, with this status.
    Refused(u16),
    /// Decoded and executed; `errors` is how many errors the answer carries.
    Executed { errors: usize },
}

/// `graphql_request`: a request as on the wire, `METHOD TARGET VERSION`, header lines `Name: value`, an
/// empty line and the body (lines end with `\n` or `\r\n`). It goes through `http::decode` and,
/// when decoded, is executed by the real schema, without a service (every resolver that needs
/// one fails) and as an anonymous caller.
pub fn graphql_request(data: &[u8]) -> GraphqlOutcome {
    let Some((method, target, headers, body)) = http_request(data) else {
        return GraphqlOutcome::NotARequest;
    };
    match crate::http::decode(&method, &headers, target.query(), body) {
        Ok(Decoded::Page) => GraphqlOutcome::Page,
        Ok(Decoded::Request(prepared)) => {
            assert!(
                !(method == Method::GET
                    && prepared.operation.as_ref().is_some_and(
                        |(_, ty)| *ty == async_graphql::parser::types::OperationType::Mutation
                    )),
                "a GET was decoded as a mutation"
            );
            // The route's kept documents (shared by every input, so later inputs with a text
            // seen before take a kept one) give what the parse gave.
            let kept = documents().checked(&prepared.params.query);
            assert_eq!(
                kept.as_ref().map(crate::http::document_form),
                Ok(crate::http::document_form(&prepared.doc)),
                "a kept document differs from its parse"
            );
            // Where the route would skip validation the next time (the document passed it
            // and the variables need no check), the schema without the rules must answer alike.
            let again = crate::graphql::variables::taken_as_given(
                &prepared.doc,
                prepared.params.operation_name.as_deref(),
                &prepared.params.variables,
            )
            .then(|| prepared.clone());
            let request = prepared.into_request(Caller::Anonymous);
            let resp = futures::executor::block_on(schema().execute(request));
            if let Some(again) = again
                && crate::http::began_execution(&resp)
            {
                let request = again.into_request(Caller::Anonymous);
                let fast = futures::executor::block_on(prevalidated_schema().execute(request));
                assert_eq!(
                    serde_json::to_value(&fast).ok(),
                    serde_json::to_value(&resp).ok(),
                    "the schema without validation rules answered otherwise"
                );
            }
            GraphqlOutcome::Executed {
                errors: resp.errors.len(),
            }
        }
        Err(refused) => {
            let status = refused.status.as_u16();
            assert!(
                status == 200 || (400..500).contains(&status),
                "an untrusted request was refused with {status}"
            );
            assert_eq!(refused.code, "BAD_REQUEST");
            GraphqlOutcome::Refused(status)
        }
    }
}

fn documents() -> &'static crate::http::Documents {
    static DOCUMENTS: OnceLock<crate::http::Documents> = OnceLock::new();
    // Small, so that the fuzzer's texts also evict one another.
    DOCUMENTS.get_or_init(|| crate::http::Documents::with_capacity(64 * 1024))
}

fn schema() -> &'static ApiSchema {
    static SCHEMA: OnceLock<ApiSchema> = OnceLock::new();
    SCHEMA.get_or_init(|| crate::graphql::build(None))
}

fn prevalidated_schema() -> &'static ApiSchema {
    static SCHEMA: OnceLock<ApiSchema> = OnceLock::new();
    SCHEMA.get_or_init(|| crate::graphql::build_prevalidated(None))
}

/// Splits a wire-format request; `None` where hyper would refuse it.
fn http_request(data: &[u8]) -> Option<(Method, Uri, HeaderMap, &[u8])> {
    let mut rest = data;
    let mut next_line = || -> Option<&[u8]> {
        let end = rest.iter().position(|&b| b == b'\n')?;
        let line = &rest[..end];
        rest = &rest[end + 1..];
        Some(line.strip_suffix(b"\r").unwrap_or(line))
    };
    let request_line = next_line()?;
    // `METHOD TARGET` and, as on the wire, the version (which is not read).
    let mut words = request_line.splitn(3, |&b| b == b' ');
    let method = Method::from_bytes(words.next()?).ok()?;
    let target = Uri::try_from(words.next()?).ok()?;
    let mut headers = HeaderMap::new();
    loop {
        let line = next_line()?;
        if line.is_empty() {
            break;
        }
        let colon = line.iter().position(|&b| b == b':')?;
        let name = HeaderName::from_bytes(&line[..colon]).ok()?;
        let value = line[colon + 1..].trim_ascii();
        headers.append(name, HeaderValue::from_bytes(value).ok()?);
    }
    Some((method, target, headers, rest))
}

/// `config`: the text up to the first NUL byte is the configuration file, the lines after it
/// `NAME=value` environment variables (only `WXUNION_*` ones mean anything). `Ok` holds what
/// must be true of every configuration that loads; `Err` the key the error names.
pub fn config(data: &[u8]) -> Result<(), String> {
    let (text, env) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let Ok(text) = std::str::from_utf8(text) else {
        // `load` reads the file with `read_to_string`, which refuses it.
        return Err("(file)".into());
    };
    let env: Vec<(String, String)> = String::from_utf8_lossy(env)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let c = Config::from_text(Some((Path::new("fuzz.toml"), text)), env).map_err(|e| e.key)?;
    for app in &c.apps {
        let found = c.app(&app.app_id).map(|a| std::ptr::eq(a, app));
        assert_eq!(
            found,
            Some(true),
            "{} is not the app under its id",
            app.app_id
        );
        if app.kind == crate::domain::AppKind::OfficialAccount {
            assert!(app.token.is_some(), "an official account without a token");
        }
        if let (Some(token), Some(key)) = (&app.token, &app.encoding_aes_key) {
            // `envelope::open` counts on it: a key that loads can decrypt.
            assert!(
                MsgCrypt::new(token.expose_secret(), key.expose_secret(), &app.app_id).is_ok(),
                "a configured EncodingAESKey is refused by MsgCrypt"
            );
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
#[path = "fuzzing_tests.rs"]
mod tests;
