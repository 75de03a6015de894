//! Parsing (and, for the simulator, building) the XML WeChat posts to our
//! callback URL.
//!
//! The callback body is attacker-reachable: in plaintext mode it is not
//! authenticated at all, and even in safe mode the outer envelope is parsed
//! before the signature can be checked. So this module owns a deliberately
//! small, hardened reader instead of a general XML deserialiser:
//!
//! * only the text/CDATA of the root `<xml>` element's direct children is
//!   collected; anything deeper is skipped (with a depth limit);
//! * `<!DOCTYPE>`, non-predefined entity references and processing
//!   instructions are rejected outright, before anything could be expanded
//!   (XXE and billion-laughs defences);
//! * the input size is capped, independently of the HTTP layer's limit.
//!
//! The builders at the bottom produce byte-for-byte what WeChat posts, so the
//! simulator and tests exercise the same parser as production.

use std::collections::BTreeMap;

use quick_xml::Reader;
use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::{BytesRef, BytesStart, Event};

/// Largest body we are willing to parse; real callbacks are a few KiB.
const MAX_XML_BYTES: usize = 64 * 1024;
/// Deepest element nesting accepted (the root `<xml>` is depth 1).
const MAX_DEPTH: usize = 8;
/// Name of the root element of every WeChat callback.
const ROOT: &[u8] = b"xml";
/// Fields whose value we act on: a second occurrence would make the message
/// ambiguous (which one did the signature "mean"?), so it is rejected.
const UNIQUE_FIELDS: &[&str] = &[
    "ToUserName",
    "FromUserName",
    "CreateTime",
    "MsgType",
    "Event",
    "EventKey",
    "MsgId",
    "Encrypt",
];
/// Longest openid accepted; real ones are 28 characters.
const MAX_OPENID_LEN: usize = 64;
/// A MsgId is a 64-bit integer, so at most 20 decimal digits.
const MAX_MSG_ID_LEN: usize = 20;

/// Why a callback body was refused.
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    /// Not well-formed XML, or not shaped like a WeChat callback.
    #[error("malformed callback XML: {0}")]
    Malformed(String),
    /// A construct we refuse on principle (DOCTYPE, custom entities,
    /// processing instructions, excessive nesting); likely an attack.
    #[error("forbidden XML construct: {0}")]
    Forbidden(&'static str),
    /// A field every callback must carry is absent or empty.
    #[error("missing required element <{0}>")]
    Missing(&'static str),
    /// A field is present but its value is unusable.
    #[error("invalid value in <{0}>")]
    Invalid(&'static str),
    /// The body exceeds the 64 KiB cap.
    #[error("callback XML larger than 64 KiB")]
    TooLarge,
}

/// The outer body of a safe-mode (or compatible-mode) callback: just enough
/// to find the ciphertext and the account it was sent to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The official account's original id (`gh_...`), used to pick the app
    /// before anything is decrypted.
    pub to_user_name: Option<String>,
    /// Base64 ciphertext; `None` means the body is a plaintext-mode message.
    pub encrypt: Option<String>,
}

/// A decoded callback message or event, reduced to the fields the service
/// acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The official account's original id (`gh_...`).
    pub to_user_name: String,
    /// The user's openid for this app; validated so it is safe to use in keys.
    pub from_user_name: String,
    /// WeChat's Unix timestamp for the message; part of event dedupe keys.
    pub create_time: i64,
    /// `event`, `text`, `image`, ... as sent by WeChat.
    pub msg_type: String,
    /// Event name for `event` messages (`subscribe`, `SCAN`, ...).
    pub event: Option<String>,
    /// Event argument, e.g. the QR scene; `None` when absent or empty.
    pub event_key: Option<String>,
    /// Message id for ordinary messages; events have none.
    pub msg_id: Option<String>,
}

/// What a message means to the service, with WeChat's scene encodings
/// already unpacked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// User followed the account; `scene` is set when they came via a
    /// parametric QR code.
    Subscribe {
        /// The QR scene value without WeChat's `qrscene_` prefix.
        scene: Option<String>,
    },
    /// User unfollowed the account.
    Unsubscribe,
    /// An existing follower scanned a parametric QR code.
    Scan {
        /// The QR scene value.
        scene: Option<String>,
    },
    /// Anything the service does not act on.
    Other,
}

impl Message {
    /// Key for at-most-once processing of WeChat's retries. MsgId alone has
    /// been seen to collide across users, so the openid is always included;
    /// events have no MsgId and are identified by sender, time and event.
    pub fn dedupe_key(&self, app_id: &str) -> String {
        match &self.msg_id {
            Some(msg_id) => format!("msg:{app_id}:{}:{msg_id}", self.from_user_name),
            None => format!(
                "evt:{app_id}:{}:{}:{}:{}",
                self.from_user_name,
                self.create_time,
                self.event.as_deref().unwrap_or(""),
                self.event_key.as_deref().unwrap_or(""),
            ),
        }
    }

    /// Classify the message so handlers can match on meaning rather than on
    /// WeChat's string conventions (event names are compared
    /// case-insensitively because WeChat itself mixes `subscribe` and `SCAN`).
    pub fn kind(&self) -> Kind {
        if !self.msg_type.eq_ignore_ascii_case("event") {
            return Kind::Other;
        }
        let Some(event) = self.event.as_deref() else {
            return Kind::Other;
        };
        let key = self.event_key.as_deref().filter(|k| !k.is_empty());
        if event.eq_ignore_ascii_case("subscribe") {
            let scene = key
                .and_then(|k| k.strip_prefix("qrscene_"))
                .filter(|s| !s.is_empty())
                .map(str::to_owned);
            Kind::Subscribe { scene }
        } else if event.eq_ignore_ascii_case("unsubscribe") {
            Kind::Unsubscribe
        } else if event.eq_ignore_ascii_case("SCAN") {
            Kind::Scan {
                scene: key.map(str::to_owned),
            }
        } else {
            Kind::Other
        }
    }
}

/// Parse the outer callback body to decide between plaintext and encrypted
/// handling; no field is required here.
pub fn parse_envelope(xml: &str) -> Result<Envelope, MessageError> {
    let mut fields = parse_fields(xml)?;
    Ok(Envelope {
        to_user_name: fields.optional("ToUserName"),
        encrypt: fields.optional("Encrypt"),
    })
}

/// The safe-mode reply body a server sends back to WeChat: ciphertext plus the signature,
/// timestamp and nonce it was signed with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyEnvelope {
    pub encrypt: String,
    pub msg_signature: String,
    pub timestamp: String,
    pub nonce: String,
}

/// Parse a safe-mode reply with the same hardened reader, as WeChat (or the simulator playing
/// it) does before verifying and decrypting it.
pub fn parse_reply_envelope(xml: &str) -> Result<ReplyEnvelope, MessageError> {
    let mut fields = parse_fields(xml)?;
    Ok(ReplyEnvelope {
        encrypt: fields.required("Encrypt")?,
        msg_signature: fields.required("MsgSignature")?,
        timestamp: fields.required("TimeStamp")?,
        nonce: fields.required("Nonce")?,
    })
}

/// Parse a plaintext (or decrypted) callback into a [`Message`], enforcing
/// the fields every callback carries and validating the openid.
pub fn parse_message(xml: &str) -> Result<Message, MessageError> {
    let mut fields = parse_fields(xml)?;
    let to_user_name = fields.required("ToUserName")?;
    let from_user_name = fields.required("FromUserName")?;
    if !is_valid_openid(&from_user_name) {
        return Err(MessageError::Invalid("FromUserName"));
    }
    let create_time = fields
        .required("CreateTime")?
        .trim()
        .parse::<i64>()
        .map_err(|_| MessageError::Invalid("CreateTime"))?;
    let msg_type = fields.required("MsgType")?;
    let msg_id = fields.optional("MsgId");
    if let Some(id) = &msg_id
        && (id.len() > MAX_MSG_ID_LEN || !id.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(MessageError::Invalid("MsgId"));
    }
    Ok(Message {
        to_user_name,
        from_user_name,
        create_time,
        msg_type,
        event: fields.optional("Event"),
        event_key: fields.optional("EventKey"),
        msg_id,
    })
}

fn is_valid_openid(s: &str) -> bool {
    (1..=MAX_OPENID_LEN).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Text content of the root's direct children, by element name.
struct Fields(BTreeMap<String, String>);

impl Fields {
    /// The value, or `None` when absent or empty (WeChat sends empty CDATA
    /// for "no value"). Taken out: each field is read once, and not copied.
    fn optional(&mut self, name: &str) -> Option<String> {
        self.0.remove(name).filter(|v| !v.is_empty())
    }

    fn required(&mut self, name: &'static str) -> Result<String, MessageError> {
        self.optional(name).ok_or(MessageError::Missing(name))
    }

    fn insert(&mut self, name: String, value: String) -> Result<(), MessageError> {
        if self.0.contains_key(&name) {
            if UNIQUE_FIELDS.contains(&name.as_str()) {
                return Err(MessageError::Malformed(format!("duplicate <{name}>")));
            }
            // Repeated unknown elements: keep the first, ignore the rest.
            return Ok(());
        }
        self.0.insert(name, value);
        Ok(())
    }
}

fn malformed(err: impl std::fmt::Display) -> MessageError {
    MessageError::Malformed(err.to_string())
}

/// Resolve an entity reference, allowing only the five predefined XML
/// entities and numeric character references.
fn resolve_ref(r: &BytesRef<'_>) -> Result<String, MessageError> {
    if r.is_char_ref() {
        return match r.resolve_char_ref() {
            Ok(Some(c)) => Ok(c.to_string()),
            _ => Err(MessageError::Malformed(
                "invalid character reference".into(),
            )),
        };
    }
    let name = r.decode().map_err(malformed)?;
    resolve_predefined_entity(&name)
        .map(str::to_owned)
        .ok_or(MessageError::Forbidden("entity reference"))
}

/// Attribute values are never read, but an undefined entity in one is still
/// a sign of an attack, so apply the same entity rule to them.
fn check_attribute_refs(raw: &[u8]) -> Result<(), MessageError> {
    let mut rest = raw;
    while let Some(amp) = rest.iter().position(|&b| b == b'&') {
        rest = rest.get(amp + 1..).unwrap_or_default();
        let semi = rest
            .iter()
            .position(|&b| b == b';')
            .ok_or_else(|| MessageError::Malformed("unterminated reference".into()))?;
        let name = rest.get(..semi).unwrap_or_default();
        let ok = match name.split_first() {
            Some((b'#', num)) => match num.split_first() {
                Some((b'x', hex)) => !hex.is_empty() && hex.iter().all(u8::is_ascii_hexdigit),
                _ => !num.is_empty() && num.iter().all(u8::is_ascii_digit),
            },
            _ => std::str::from_utf8(name)
                .ok()
                .and_then(resolve_predefined_entity)
                .is_some(),
        };
        if !ok {
            return Err(MessageError::Forbidden("entity reference"));
        }
        rest = rest.get(semi + 1..).unwrap_or_default();
    }
    Ok(())
}

fn element_name(e: &BytesStart<'_>) -> Result<String, MessageError> {
    std::str::from_utf8(e.name().as_ref())
        .map(str::to_owned)
        .map_err(malformed)
}

/// The hardened reader: collect the direct children of `<xml>`.
fn parse_fields(xml: &str) -> Result<Fields, MessageError> {
    if xml.len() > MAX_XML_BYTES {
        return Err(MessageError::TooLarge);
    }
    let xml = xml.strip_prefix('\u{feff}').unwrap_or(xml);

    let mut reader = Reader::from_str(xml);
    let config = reader.config_mut();
    config.check_end_names = true;
    config.allow_unmatched_ends = false;
    config.allow_dangling_amp = false;
    config.check_comments = true;
    config.expand_empty_elements = false;
    config.trim_text(false);

    let mut fields = Fields(BTreeMap::new());
    // Number of currently open elements; the root is depth 1.
    let mut depth = 0usize;
    let mut root_closed = false;
    let mut first_event = true;
    // The direct child of the root currently being read, and its text.
    let mut current: Option<(String, String)> = None;

    loop {
        let event = reader.read_event().map_err(malformed)?;
        let is_first = std::mem::replace(&mut first_event, false);
        match event {
            Event::Eof => break,
            Event::DocType(_) => return Err(MessageError::Forbidden("DOCTYPE")),
            Event::PI(_) => return Err(MessageError::Forbidden("processing instruction")),
            Event::Decl(_) => {
                if !is_first {
                    return Err(MessageError::Malformed(
                        "XML declaration not at start of document".into(),
                    ));
                }
            }
            Event::Comment(_) => {}
            Event::Start(e) if depth == 0 => {
                check_root(&e, root_closed)?;
                depth = 1;
            }
            // `<xml/>` is an empty but complete document.
            Event::Empty(e) if depth == 0 => {
                check_root(&e, root_closed)?;
                root_closed = true;
            }
            Event::Start(e) => {
                check_attribute_refs(e.attributes_raw())?;
                if depth >= MAX_DEPTH {
                    return Err(MessageError::Forbidden("nesting deeper than 8 levels"));
                }
                if depth == 1 {
                    current = Some((element_name(&e)?, String::new()));
                }
                depth += 1;
            }
            Event::Empty(e) => {
                check_attribute_refs(e.attributes_raw())?;
                if depth >= MAX_DEPTH {
                    return Err(MessageError::Forbidden("nesting deeper than 8 levels"));
                }
                if depth == 1 {
                    fields.insert(element_name(&e)?, String::new())?;
                }
            }
            Event::End(_) => {
                depth = depth
                    .checked_sub(1)
                    .ok_or_else(|| MessageError::Malformed("unmatched end tag".into()))?;
                match depth {
                    0 => root_closed = true,
                    1 => {
                        if let Some((name, value)) = current.take() {
                            fields.insert(name, value)?;
                        }
                    }
                    _ => {}
                }
            }
            Event::Text(t) => {
                let text = t.xml10_content().map_err(malformed)?;
                push_text(depth, &mut current, &text)?;
            }
            Event::CData(c) => {
                let text = c.xml10_content().map_err(malformed)?;
                push_text(depth, &mut current, &text)?;
            }
            Event::GeneralRef(r) => {
                let text = resolve_ref(&r)?;
                push_text(depth, &mut current, &text)?;
            }
        }
    }

    if depth != 0 || !root_closed {
        return Err(MessageError::Malformed("unexpected end of document".into()));
    }
    Ok(fields)
}

/// Only one root is allowed, and it must be `<xml>` exactly.
fn check_root(e: &BytesStart<'_>, root_closed: bool) -> Result<(), MessageError> {
    check_attribute_refs(e.attributes_raw())?;
    if root_closed {
        return Err(MessageError::Malformed("more than one root element".into()));
    }
    if e.name().as_ref() != ROOT {
        return Err(MessageError::Malformed("root element is not <xml>".into()));
    }
    Ok(())
}

/// Route character data: outside the root only whitespace is allowed; inside
/// a direct child it is collected; elsewhere it is ignored.
fn push_text(
    depth: usize,
    current: &mut Option<(String, String)>,
    text: &str,
) -> Result<(), MessageError> {
    match depth {
        0 if !text.trim().is_empty() => Err(MessageError::Malformed(
            "content outside the root element".into(),
        )),
        2 => {
            if let Some((_, value)) = current.as_mut() {
                value.push_str(text);
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Wrap `text` in CDATA the way WeChat does, splitting any `]]>` across two
/// sections so arbitrary content survives the round trip.
fn cdata(text: &str) -> String {
    format!("<![CDATA[{}]]>", text.replace("]]>", "]]]]><![CDATA[>"))
}

/// The event callback WeChat posts (subscribe, unsubscribe, SCAN, ...), for
/// the simulator; `event_key` is omitted from the XML when `None`.
pub fn event_xml(
    to: &str,
    from: &str,
    create_time: i64,
    event: &str,
    event_key: Option<&str>,
) -> String {
    let key = event_key
        .map(|k| format!("<EventKey>{}</EventKey>", cdata(k)))
        .unwrap_or_default();
    format!(
        "<xml><ToUserName>{}</ToUserName><FromUserName>{}</FromUserName>\
         <CreateTime>{create_time}</CreateTime><MsgType>{}</MsgType>\
         <Event>{}</Event>{key}</xml>",
        cdata(to),
        cdata(from),
        cdata("event"),
        cdata(event),
    )
}

/// The text-message callback WeChat posts, for the simulator.
pub fn text_xml(to: &str, from: &str, create_time: i64, content: &str, msg_id: u64) -> String {
    format!(
        "<xml><ToUserName>{}</ToUserName><FromUserName>{}</FromUserName>\
         <CreateTime>{create_time}</CreateTime><MsgType>{}</MsgType>\
         <Content>{}</Content><MsgId>{msg_id}</MsgId></xml>",
        cdata(to),
        cdata(from),
        cdata("text"),
        cdata(content),
    )
}

/// A passive text reply to the person who sent a message or event (no MsgId: replies have
/// none). `to` is the person's openid, `from` the account's original id.
pub fn reply_text_xml(to: &str, from: &str, create_time: i64, content: &str) -> String {
    format!(
        "<xml><ToUserName>{}</ToUserName><FromUserName>{}</FromUserName>\
         <CreateTime>{create_time}</CreateTime><MsgType>{}</MsgType>\
         <Content>{}</Content></xml>",
        cdata(to),
        cdata(from),
        cdata("text"),
        cdata(content),
    )
}

/// The safe-mode outer body: only the account id and the ciphertext.
pub fn encrypted_envelope_xml(to: &str, encrypt: &str) -> String {
    format!(
        "<xml><ToUserName>{}</ToUserName><Encrypt>{}</Encrypt></xml>",
        cdata(to),
        cdata(encrypt),
    )
}

/// The compatible-mode body: the plaintext message with an `<Encrypt>`
/// element added before the closing `</xml>` (appended if there is none).
pub fn compatible_xml(plain_xml: &str, encrypt: &str) -> String {
    let element = format!("<Encrypt>{}</Encrypt>", cdata(encrypt));
    match plain_xml.rfind("</xml>") {
        Some(at) => {
            let (head, tail) = plain_xml.split_at(at);
            format!("{head}{element}{tail}")
        }
        None => format!("{plain_xml}{element}"),
    }
}

#[cfg(test)]
#[path = "message_tests.rs"]
mod tests;
