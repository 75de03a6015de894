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
    let fields = parse_fields(xml)?;
    Ok(Envelope {
        to_user_name: fields.optional("ToUserName"),
        encrypt: fields.optional("Encrypt"),
    })
}

/// Parse a plaintext (or decrypted) callback into a [`Message`], enforcing
/// the fields every callback carries and validating the openid.
pub fn parse_message(xml: &str) -> Result<Message, MessageError> {
    let fields = parse_fields(xml)?;
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
    /// for "no value").
    fn optional(&self, name: &str) -> Option<String> {
        self.0.get(name).filter(|v| !v.is_empty()).cloned()
    }

    fn required(&self, name: &'static str) -> Result<String, MessageError> {
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
#[allow(clippy::unwrap_used, clippy::expect_used)] // panicking is how tests fail
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    const SUBSCRIBE: &str = "<xml><ToUserName><![CDATA[gh_123]]></ToUserName><FromUserName><![CDATA[oOPENID]]></FromUserName><CreateTime>1348831860</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[subscribe]]></Event><EventKey><![CDATA[qrscene_123]]></EventKey><Ticket><![CDATA[TICKET]]></Ticket></xml>";

    fn fields(xml: &str) -> Fields {
        parse_fields(xml).unwrap()
    }

    fn message(event: Option<&str>, key: Option<&str>, msg_id: Option<&str>) -> Message {
        Message {
            to_user_name: "gh_1".into(),
            from_user_name: "oABC".into(),
            create_time: 1700000000,
            msg_type: if event.is_some() { "event" } else { "text" }.into(),
            event: event.map(Into::into),
            event_key: key.map(Into::into),
            msg_id: msg_id.map(Into::into),
        }
    }

    #[test]
    fn the_documented_subscribe_event_parses() {
        let m = parse_message(SUBSCRIBE).unwrap();
        assert_eq!(
            m,
            Message {
                to_user_name: "gh_123".into(),
                from_user_name: "oOPENID".into(),
                create_time: 1348831860,
                msg_type: "event".into(),
                event: Some("subscribe".into()),
                event_key: Some("qrscene_123".into()),
                msg_id: None,
            }
        );
        assert_eq!(
            m.kind(),
            Kind::Subscribe {
                scene: Some("123".into())
            }
        );
    }

    #[test]
    fn event_builder_round_trips_through_the_parser() {
        let xml = event_xml("gh_9", "o-_Az09", 42, "SCAN", Some("a]]>b&<c>"));
        let m = parse_message(&xml).unwrap();
        assert_eq!(m.to_user_name, "gh_9");
        assert_eq!(m.from_user_name, "o-_Az09");
        assert_eq!(m.create_time, 42);
        assert_eq!(m.msg_type, "event");
        assert_eq!(m.event.as_deref(), Some("SCAN"));
        assert_eq!(m.event_key.as_deref(), Some("a]]>b&<c>"));
        assert_eq!(m.msg_id, None);

        let m = parse_message(&event_xml("gh_9", "o1", 1, "unsubscribe", None)).unwrap();
        assert_eq!(m.event_key, None);
        assert_eq!(m.kind(), Kind::Unsubscribe);
    }

    #[test]
    fn text_builder_round_trips_through_the_parser() {
        let content = "你好 ]]> <b>&amp; ]]]]> end";
        let xml = text_xml("gh_1", "oUser", 1712345678, content, u64::MAX);
        let m = parse_message(&xml).unwrap();
        assert_eq!(m.msg_type, "text");
        assert_eq!(m.create_time, 1712345678);
        assert_eq!(m.msg_id.as_deref(), Some("18446744073709551615"));
        assert_eq!(m.event, None);
        assert_eq!(fields(&xml).optional("Content").as_deref(), Some(content));
    }

    #[test]
    fn encrypted_envelope_builder_round_trips_through_the_parser() {
        let xml = encrypted_envelope_xml("gh_1", "AbC+/==");
        let env = parse_envelope(&xml).unwrap();
        assert_eq!(
            env,
            Envelope {
                to_user_name: Some("gh_1".into()),
                encrypt: Some("AbC+/==".into()),
            }
        );
        // The envelope alone is not a message.
        assert!(matches!(
            parse_message(&xml),
            Err(MessageError::Missing("FromUserName"))
        ));
    }

    #[test]
    fn compatible_builder_carries_both_plaintext_and_ciphertext() {
        let plain = text_xml("gh_1", "oUser", 5, "hi", 7);
        let xml = compatible_xml(&plain, "Q0lQSEVS");
        assert!(xml.ends_with("<Encrypt><![CDATA[Q0lQSEVS]]></Encrypt></xml>"));
        let env = parse_envelope(&xml).unwrap();
        assert_eq!(env.encrypt.as_deref(), Some("Q0lQSEVS"));
        assert_eq!(env.to_user_name.as_deref(), Some("gh_1"));
        assert_eq!(parse_message(&xml).unwrap(), parse_message(&plain).unwrap());
    }

    #[test]
    fn plaintext_body_has_an_envelope_without_ciphertext() {
        let env = parse_envelope(SUBSCRIBE).unwrap();
        assert_eq!(env.encrypt, None);
        assert_eq!(env.to_user_name.as_deref(), Some("gh_123"));
    }

    #[test]
    fn xxe_payload_is_forbidden() {
        let xml = r#"<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY x SYSTEM "file:///etc/passwd">]><xml><ToUserName>&x;</ToUserName></xml>"#;
        assert!(matches!(
            parse_envelope(xml),
            Err(MessageError::Forbidden(_))
        ));
        assert!(matches!(
            parse_message(xml),
            Err(MessageError::Forbidden(_))
        ));
    }

    #[test]
    fn billion_laughs_is_rejected_quickly() {
        let mut xml = String::from("<?xml version=\"1.0\"?><!DOCTYPE lolz [<!ENTITY lol \"lol\">");
        for i in 1..10 {
            let prev = if i == 1 {
                "lol".to_string()
            } else {
                format!("lol{}", i - 1)
            };
            xml.push_str(&format!(
                "<!ENTITY lol{i} \"{}\">",
                format!("&{prev};").repeat(10)
            ));
        }
        xml.push_str("]><xml><ToUserName>&lol9;</ToUserName></xml>");
        let started = Instant::now();
        let result = parse_envelope(&xml);
        let elapsed = started.elapsed();
        assert!(
            matches!(result, Err(MessageError::Forbidden("DOCTYPE"))),
            "{result:?}"
        );
        assert!(elapsed < Duration::from_millis(10), "took {elapsed:?}");
    }

    #[test]
    fn undefined_entities_are_forbidden_even_without_a_doctype() {
        for xml in [
            "<xml><ToUserName>&x;</ToUserName></xml>",
            "<xml><Unknown><Deep>&nbsp;</Deep></Unknown></xml>",
            "<xml a=\"&x;\"><ToUserName>gh</ToUserName></xml>",
            "<xml><ToUserName b='&lol9;'>gh</ToUserName></xml>",
        ] {
            assert!(
                matches!(
                    parse_envelope(xml),
                    Err(MessageError::Forbidden("entity reference"))
                ),
                "{xml}"
            );
        }
    }

    #[test]
    fn predefined_and_numeric_references_are_unescaped() {
        let xml = "<xml a=\"&amp;&#38;\"><Content>&lt;a&gt; &amp; &quot;&apos; &#20320;&#x597D;</Content></xml>";
        assert_eq!(
            fields(xml).optional("Content").as_deref(),
            Some("<a> & \"' 你好")
        );
    }

    #[test]
    fn invalid_character_references_are_malformed() {
        for xml in [
            "<xml><C>&#0;</C></xml>",
            "<xml><C>&#xZZ;</C></xml>",
            "<xml><C>&#xD800;</C></xml>",
        ] {
            assert!(
                matches!(parse_envelope(xml), Err(MessageError::Malformed(_))),
                "{xml}"
            );
        }
    }

    #[test]
    fn processing_instructions_are_forbidden_but_the_declaration_is_not() {
        let xml =
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<xml><ToUserName>gh</ToUserName></xml>";
        assert_eq!(
            parse_envelope(xml).unwrap().to_user_name.as_deref(),
            Some("gh")
        );
        for xml in [
            "<?xml-stylesheet href=\"x\"?><xml></xml>",
            "<xml><?php evil(); ?></xml>",
            "<xml></xml><?pi?>",
        ] {
            assert!(
                matches!(
                    parse_envelope(xml),
                    Err(MessageError::Forbidden("processing instruction"))
                ),
                "{xml}"
            );
        }
        assert!(matches!(
            parse_envelope("<xml><?xml version=\"1.0\"?></xml>"),
            Err(MessageError::Malformed(_))
        ));
    }

    #[test]
    fn deep_nesting_is_rejected_but_moderate_nesting_is_ignored() {
        let nested = |levels: usize| {
            let mut xml = String::from("<xml><ToUserName>gh</ToUserName>");
            for _ in 0..levels {
                xml.push_str("<a>");
            }
            for _ in 0..levels {
                xml.push_str("</a>");
            }
            xml.push_str("</xml>");
            xml
        };
        // Root plus 7 levels is depth 8: allowed, and nested content ignored.
        let env = parse_envelope(&nested(7)).unwrap();
        assert_eq!(env.to_user_name.as_deref(), Some("gh"));
        assert!(matches!(
            parse_envelope(&nested(8)),
            Err(MessageError::Forbidden(_))
        ));
        assert!(matches!(
            parse_envelope(&nested(5_000)),
            Err(MessageError::Forbidden(_))
        ));
        let empty_too_deep = "<xml><a><b><c><d><e><f><g><h/></g></f></e></d></c></b></a></xml>";
        assert!(matches!(
            parse_envelope(empty_too_deep),
            Err(MessageError::Forbidden(_))
        ));
    }

    #[test]
    fn unknown_elements_and_their_children_are_ignored() {
        let xml = "<xml><Video><MediaId><![CDATA[m]]></MediaId><ToUserName>inner</ToUserName></Video>\
                   <ToUserName>gh_outer</ToUserName><Extra/><Extra>2</Extra><!-- note --></xml>";
        let env = parse_envelope(xml).unwrap();
        assert_eq!(env.to_user_name.as_deref(), Some("gh_outer"));
    }

    #[test]
    fn missing_required_fields_are_named() {
        let full = [
            ("ToUserName", "<ToUserName>gh</ToUserName>"),
            ("FromUserName", "<FromUserName>oX</FromUserName>"),
            ("CreateTime", "<CreateTime>1</CreateTime>"),
            ("MsgType", "<MsgType>text</MsgType>"),
        ];
        for (skip, _) in full {
            let body: String = full
                .iter()
                .filter(|(name, _)| *name != skip)
                .map(|(_, el)| *el)
                .collect();
            let err = parse_message(&format!("<xml>{body}</xml>")).unwrap_err();
            assert!(
                matches!(err, MessageError::Missing(name) if name == skip),
                "{skip}: {err:?}"
            );
        }
        let empty = "<xml><ToUserName><![CDATA[]]></ToUserName></xml>";
        assert!(matches!(
            parse_message(empty),
            Err(MessageError::Missing("ToUserName"))
        ));
    }

    #[test]
    fn non_numeric_create_time_is_invalid() {
        for t in ["abc", "1.5", "99999999999999999999", ""] {
            let xml = format!(
                "<xml><ToUserName>gh</ToUserName><FromUserName>oX</FromUserName>\
                 <CreateTime>{t}</CreateTime><MsgType>text</MsgType></xml>"
            );
            let err = parse_message(&xml).unwrap_err();
            if t.is_empty() {
                assert!(matches!(err, MessageError::Missing("CreateTime")));
            } else {
                assert!(
                    matches!(err, MessageError::Invalid("CreateTime")),
                    "{t}: {err:?}"
                );
            }
        }
    }

    #[test]
    fn openids_with_bad_characters_or_length_are_invalid() {
        let long = "o".repeat(65);
        for from in [
            "o:1",
            "o 1",
            "o/1",
            "o.1",
            "оpenid",
            "o\u{0}",
            long.as_str(),
            "a*",
        ] {
            let xml = event_xml("gh", from, 1, "subscribe", None);
            assert!(
                matches!(
                    parse_message(&xml),
                    Err(MessageError::Invalid("FromUserName"))
                ),
                "{from:?}"
            );
        }
        let ok = "o".repeat(64);
        assert!(parse_message(&event_xml("gh", &ok, 1, "subscribe", None)).is_ok());
    }

    #[test]
    fn non_numeric_msg_id_is_invalid() {
        let xml = "<xml><ToUserName>gh</ToUserName><FromUserName>oX</FromUserName>\
                   <CreateTime>1</CreateTime><MsgType>text</MsgType><MsgId>1:2</MsgId></xml>";
        assert!(matches!(
            parse_message(xml),
            Err(MessageError::Invalid("MsgId"))
        ));
    }

    #[test]
    fn duplicate_fields_that_we_act_on_are_rejected() {
        let xml = "<xml><ToUserName>gh</ToUserName><FromUserName>oA</FromUserName>\
                   <FromUserName>oB</FromUserName><CreateTime>1</CreateTime><MsgType>text</MsgType></xml>";
        assert!(matches!(
            parse_message(xml),
            Err(MessageError::Malformed(_))
        ));
    }

    #[test]
    fn a_root_other_than_xml_is_rejected() {
        for xml in [
            "<root><ToUserName>gh</ToUserName></root>",
            "<XML></XML>",
            "<x:xml xmlns:x=\"u\"></x:xml>",
            "<xml></xml><xml></xml>",
            "<xml></xml>trailing",
            "leading<xml></xml>",
            "",
            "   ",
            "<xml><ToUserName>gh</ToUserName>",
            "<xml><a></b></xml>",
            "</xml>",
            "<xml>a & b</xml>",
        ] {
            assert!(
                matches!(parse_envelope(xml), Err(MessageError::Malformed(_))),
                "{xml:?}"
            );
        }
    }

    #[test]
    fn an_empty_root_is_an_empty_envelope() {
        let env = parse_envelope("<xml/>").unwrap();
        assert_eq!(
            env,
            Envelope {
                to_user_name: None,
                encrypt: None
            }
        );
        assert!(parse_envelope("\u{feff}<xml></xml>\n").is_ok());
    }

    #[test]
    fn input_over_64_kib_is_too_large() {
        let padding = " ".repeat(65 * 1024);
        let xml = format!("<xml>{padding}</xml>");
        assert!(matches!(parse_envelope(&xml), Err(MessageError::TooLarge)));
        assert!(matches!(parse_message(&xml), Err(MessageError::TooLarge)));
        let at_limit = format!("<xml>{}</xml>", " ".repeat(MAX_XML_BYTES - 11));
        assert_eq!(at_limit.len(), MAX_XML_BYTES);
        assert!(parse_envelope(&at_limit).is_ok());
    }

    #[test]
    fn dedupe_key_for_a_message_uses_openid_and_msg_id() {
        let m = message(None, None, Some("1234567890123456"));
        assert_eq!(m.dedupe_key("wxapp"), "msg:wxapp:oABC:1234567890123456");
    }

    #[test]
    fn dedupe_key_for_an_event_uses_time_event_and_key() {
        let m = message(Some("subscribe"), Some("qrscene_7"), None);
        assert_eq!(
            m.dedupe_key("wxapp"),
            "evt:wxapp:oABC:1700000000:subscribe:qrscene_7"
        );
        let m = message(Some("unsubscribe"), None, None);
        assert_eq!(
            m.dedupe_key("wxapp"),
            "evt:wxapp:oABC:1700000000:unsubscribe:"
        );
    }

    #[test]
    fn dedupe_keys_differ_per_user_for_the_same_msg_id() {
        let a = message(None, None, Some("1"));
        let mut b = a.clone();
        b.from_user_name = "oDEF".into();
        assert_ne!(a.dedupe_key("wx"), b.dedupe_key("wx"));
    }

    #[test]
    fn kind_maps_wechat_events() {
        let kind = |event: &str, key: Option<&str>| message(Some(event), key, None).kind();
        assert_eq!(
            kind("subscribe", Some("qrscene_abc")),
            Kind::Subscribe {
                scene: Some("abc".into())
            }
        );
        assert_eq!(
            kind("SUBSCRIBE", Some("qrscene_1")),
            Kind::Subscribe {
                scene: Some("1".into())
            }
        );
        assert_eq!(kind("subscribe", None), Kind::Subscribe { scene: None });
        assert_eq!(kind("subscribe", Some("")), Kind::Subscribe { scene: None });
        assert_eq!(
            kind("subscribe", Some("qrscene_")),
            Kind::Subscribe { scene: None }
        );
        assert_eq!(
            kind("subscribe", Some("other")),
            Kind::Subscribe { scene: None }
        );
        assert_eq!(kind("unsubscribe", None), Kind::Unsubscribe);
        assert_eq!(
            kind("SCAN", Some("123")),
            Kind::Scan {
                scene: Some("123".into())
            }
        );
        assert_eq!(kind("scan", None), Kind::Scan { scene: None });
        assert_eq!(kind("CLICK", Some("menu")), Kind::Other);
        assert_eq!(kind("LOCATION", None), Kind::Other);
        assert_eq!(message(None, None, Some("1")).kind(), Kind::Other);
        // An Event element on a non-event message does not count.
        let mut text = message(Some("subscribe"), None, None);
        text.msg_type = "text".into();
        assert_eq!(text.kind(), Kind::Other);
    }

    #[test]
    fn cdata_splitting_survives_repeated_terminators() {
        for s in ["]]>", "]]>]]>", "]]]>>", "a]]", "]", ""] {
            let xml = format!("<xml><V>{}</V></xml>", cdata(s));
            assert_eq!(
                fields(&xml).0.get("V").map(String::as_str),
                Some(s),
                "{s:?}"
            );
        }
    }

    #[test]
    fn compatible_builder_without_closing_tag_appends() {
        assert_eq!(
            compatible_xml("<a/>", "E"),
            "<a/><Encrypt><![CDATA[E]]></Encrypt>"
        );
    }
}
