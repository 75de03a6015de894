//! Unit tests for `message`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // panicking is how tests fail

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
fn billion_laughs_is_refused_at_the_doctype_before_any_entity_is_expanded() {
    // Fifteen levels: expanded, &lol15; would be 3 PB, so a parser that expanded it would
    // never finish. The DOCTYPE is refused as it is read, before the body that uses it.
    let mut xml = String::from("<?xml version=\"1.0\"?><!DOCTYPE lolz [<!ENTITY lol \"lol\">");
    for i in 1..16 {
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
    xml.push_str("]><xml><ToUserName>&lol15;</ToUserName></xml>");
    let started = Instant::now();
    let result = parse_envelope(&xml);
    let elapsed = started.elapsed();
    assert!(
        matches!(result, Err(MessageError::Forbidden("DOCTYPE"))),
        "{result:?}"
    );
    // Only a hang (an expansion) could take this long.
    assert!(elapsed < Duration::from_secs(30), "took {elapsed:?}");
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
    let xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<xml><ToUserName>gh</ToUserName></xml>";
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
