//! Unit tests for `fuzzing`: every committed seed replays through its target, the seeds reach
//! what they are for, and the harness's own WeChat sealing matches WeChat's vectors.

use super::*;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

const VECTORS: &str = include_str!("../tests/vectors/wechat_crypto.json");
const TARGETS: &[&str] = &[
    "callback_raw",
    "callback_signed",
    "graphql_request",
    "config",
];

struct Vector {
    name: String,
    token: String,
    timestamp: String,
    nonce: String,
    app_id: String,
    key: String,
    random: [u8; 16],
    plaintext: String,
    encrypt: String,
    signature: String,
    msg_signature: String,
}

fn vectors() -> Vec<Vector> {
    let doc: serde_json::Value = serde_json::from_str(VECTORS).unwrap();
    let s = |c: &serde_json::Value, k: &str| c[k].as_str().unwrap().to_owned();
    doc["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| Vector {
            name: s(c, "name"),
            token: s(c, "token"),
            timestamp: s(c, "timestamp"),
            nonce: s(c, "nonce"),
            app_id: s(c, "app_id"),
            key: s(c, "encoding_aes_key"),
            random: hex::decode(s(c, "random")).unwrap().try_into().unwrap(),
            plaintext: s(c, "plaintext"),
            encrypt: s(c, "encrypt"),
            signature: s(c, "signature"),
            msg_signature: s(c, "msg_signature"),
        })
        .collect()
}

fn vector(name: &str) -> Vector {
    vectors().into_iter().find(|v| v.name == name).unwrap()
}

fn seeds_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/seeds")
        .join(target)
}

/// Every committed seed of a target, by file name.
fn committed(target: &str) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(seeds_dir(target))
        .unwrap()
        .map(|e| {
            let path = e.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).unwrap())
        })
        .collect()
}

fn query(pairs: &[(&str, &str)]) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        q.append_pair(k, v);
    }
    q.finish()
}

fn raw_seed(account: char, query: &str, body: &str) -> Vec<u8> {
    format!("{account}{query}\n{body}").into_bytes()
}

fn signed_seed(mode: char, ts: &str, nonce: &str, openid: &str, payload: &[u8]) -> Vec<u8> {
    let mut seed = format!("{mode}\n{ts}\n{nonce}\n{openid}\n").into_bytes();
    seed.extend_from_slice(payload);
    seed
}

const XXE: &str = r#"<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY x SYSTEM "file:///etc/passwd">]><xml><ToUserName>&x;</ToUserName><FromUserName>oUser</FromUserName><CreateTime>1</CreateTime><MsgType>event</MsgType></xml>"#;

/// Hostile or odd message bodies, each a seed for both callback targets.
fn hostile_xml() -> Vec<(&'static str, String)> {
    let mut laughs = String::from("<?xml version=\"1.0\"?><!DOCTYPE lolz [<!ENTITY lol \"lol\">");
    for i in 1..10 {
        let prev = if i == 1 {
            "lol".to_owned()
        } else {
            format!("lol{}", i - 1)
        };
        laughs.push_str(&format!(
            "<!ENTITY lol{i} \"{}\">",
            format!("&{prev};").repeat(10)
        ));
    }
    laughs.push_str("]><xml><ToUserName>&lol9;</ToUserName></xml>");
    let fields = "<ToUserName>gh_1</ToUserName><FromUserName>oUser</FromUserName>\
                  <CreateTime>1</CreateTime><MsgType>event</MsgType>";
    vec![
        ("xxe", XXE.to_owned()),
        ("billion_laughs", laughs),
        (
            "nested_9_deep",
            format!(
                "<xml>{fields}{}x{}</xml>",
                "<a>".repeat(8),
                "</a>".repeat(8)
            ),
        ),
        (
            "duplicate_from",
            format!("<xml>{fields}<FromUserName>oOther</FromUserName></xml>"),
        ),
        (
            "entities_and_bom",
            format!(
                "\u{feff}<?xml version=\"1.0\"?><xml a=\"&amp;&#38;\">{fields}\
                 <Event>&#115;ubscribe</Event><EventKey>&lt;qrscene_&#x31;&gt;</EventKey></xml>"
            ),
        ),
        (
            "msgid_and_cdata_split",
            "<xml><ToUserName><![CDATA[gh_]]]]><![CDATA[>1]]></ToUserName>\
             <FromUserName>oUser</FromUserName><CreateTime> 12 </CreateTime>\
             <MsgType>text</MsgType><Content>hi</Content><MsgId>12345678901234567890</MsgId></xml>"
                .to_owned(),
        ),
        (
            "unsubscribe_with_comment",
            format!("<xml><!-- c -->{fields}<Event>UNSUBSCRIBE</Event><EventKey/></xml>"),
        ),
        (
            "scan_event",
            format!("<xml>{fields}<Event>SCAN</Event><EventKey>42</EventKey></xml>")
                .replace("<MsgType>event", "<MsgType>EVENT"),
        ),
        (
            "processing_instruction",
            format!("<xml><?pi x?>{fields}</xml>"),
        ),
        ("two_roots", format!("<xml>{fields}</xml><xml/>")),
    ]
}

/// The seeds the fuzz targets start from, generated from the test vectors, the GraphQL
/// fixtures and the README's configuration; crash inputs found later are committed beside them.
fn generated_seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    let mut out: Vec<(&'static str, String, Vec<u8>)> = Vec::new();
    let mut add = |target: &'static str, name: &str, bytes: Vec<u8>| {
        out.push((target, name.to_owned(), bytes));
    };

    // callback_raw: the vectors as WeChat posts them, each account, all three modes.
    let sub = vector("subscribe event, derived key");
    let (ts, nonce) = (sub.timestamp.as_str(), sub.nonce.as_str());
    let plain_sig = crypto::signature("tok", ts, nonce);
    let plain_q = |extra: &[(&str, &str)]| {
        let mut pairs = vec![
            ("signature", plain_sig.as_str()),
            ("timestamp", ts),
            ("nonce", nonce),
        ];
        pairs.extend_from_slice(extra);
        query(&pairs)
    };
    add(
        "callback_raw",
        "plaintext_subscribe",
        raw_seed('0', &plain_q(&[("openid", "oOPENID_a-1")]), &sub.plaintext),
    );
    let text = vector("text message with Chinese and emoji");
    add(
        "callback_raw",
        "plaintext_text_message",
        raw_seed('0', &plain_q(&[]), &text.plaintext),
    );
    add(
        "callback_raw",
        "plaintext_openid_mismatch",
        raw_seed('0', &plain_q(&[("openid", "oSomeoneElse")]), &sub.plaintext),
    );
    add(
        "callback_raw",
        "plaintext_bad_signature",
        raw_seed(
            '0',
            &query(&[
                ("signature", &"0".repeat(40)),
                ("timestamp", ts),
                ("nonce", nonce),
            ]),
            &sub.plaintext,
        ),
    );
    for (name, xml) in hostile_xml() {
        add(
            "callback_raw",
            &format!("plaintext_{name}"),
            raw_seed('0', &plain_q(&[]), &xml),
        );
    }
    let encrypted_q = |v: &Vector| {
        query(&[
            ("signature", v.signature.as_str()),
            ("timestamp", v.timestamp.as_str()),
            ("nonce", v.nonce.as_str()),
            ("encrypt_type", "aes"),
            ("msg_signature", v.msg_signature.as_str()),
        ])
    };
    for (account, v) in [
        ('1', vector("official sample, video reply xml")),
        ('1', vector("official sample, short Chinese text")),
        ('2', vector("subscribe event, derived key")),
    ] {
        let slug: String = v
            .name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        add(
            "callback_raw",
            &format!("safe_{slug}"),
            raw_seed(
                account,
                &encrypted_q(&v),
                &message::encrypted_envelope_xml("gh_7f083739789a", &v.encrypt),
            ),
        );
        add(
            "callback_raw",
            &format!("compatible_{slug}"),
            raw_seed(
                account,
                &encrypted_q(&v),
                &message::compatible_xml(&v.plaintext, &v.encrypt),
            ),
        );
    }
    add(
        "callback_raw",
        "aes_account_plaintext_body",
        raw_seed(
            '2',
            &query(&[
                ("signature", &crypto::signature("wxunionToken1", ts, nonce)),
                ("timestamp", ts),
                ("nonce", nonce),
            ]),
            &sub.plaintext,
        ),
    );
    add(
        "callback_raw",
        "safe_wrong_account",
        raw_seed(
            '1',
            &query(&[
                ("signature", &crypto::signature("pamtest", ts, nonce)),
                ("timestamp", ts),
                ("nonce", nonce),
                ("encrypt_type", "aes"),
                ("msg_signature", &sub.msg_signature),
            ]),
            &message::encrypted_envelope_xml("gh_1", &sub.encrypt),
        ),
    );

    // callback_signed: every vector's plaintext in each mode, hostile bodies behind the
    // signature, and whole frames.
    for v in vectors() {
        let openid = message::parse_message(&v.plaintext)
            .map(|m| m.from_user_name)
            .unwrap_or_default();
        let slug: String = v
            .name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        for (mode, label) in [('0', "plaintext"), ('1', "compatible"), ('2', "safe")] {
            add(
                "callback_signed",
                &format!("{label}_{slug}"),
                signed_seed(
                    mode,
                    &v.timestamp,
                    &v.nonce,
                    &openid,
                    v.plaintext.as_bytes(),
                ),
            );
        }
        add(
            "callback_signed",
            &format!("frame_{slug}"),
            signed_seed(
                '3',
                &v.timestamp,
                &v.nonce,
                "",
                &frame(&v.random, v.plaintext.as_bytes(), "wx0123456789abcdef"),
            ),
        );
    }
    for (name, xml) in hostile_xml() {
        add(
            "callback_signed",
            &format!("safe_{name}"),
            signed_seed('2', ts, nonce, "", xml.as_bytes()),
        );
    }
    let good = frame(&sub.random, sub.plaintext.as_bytes(), "wx0123456789abcdef");
    let mut long_length = good.clone();
    long_length[16..20].copy_from_slice(&u32::MAX.to_be_bytes());
    let mut bad_pad = good.clone();
    let last = bad_pad.len() - 2;
    bad_pad[last] ^= 1;
    for (name, f) in [
        (
            "frame_other_app",
            frame(&sub.random, sub.plaintext.as_bytes(), "wxb11529c136998cb6"),
        ),
        ("frame_length_past_the_end", long_length),
        ("frame_bad_padding", bad_pad),
        (
            "frame_not_utf8",
            frame(&sub.random, b"<xml>\xff</xml>", "wx0123456789abcdef"),
        ),
        ("frame_empty", Vec::new()),
    ] {
        add("callback_signed", name, signed_seed('3', ts, nonce, "", &f));
    }
    add(
        "callback_signed",
        "safe_query_needs_escaping",
        signed_seed(
            '2',
            "1<&>\"",
            "n&n=x y",
            "oOPENID_a-1",
            sub.plaintext.as_bytes(),
        ),
    );

    // graphql_request: the introspection fixtures, ordinary operations and every refusal.
    let post = |accept: &str, body: &str| {
        format!(
            "POST /graphql HTTP/1.1\r\nAccept: {accept}\r\nContent-Type: application/json\r\n\r\n{body}"
        )
        .into_bytes()
    };
    let get =
        |q: &str| format!("GET /graphql?{q} HTTP/1.1\nAccept: application/json\n\n").into_bytes();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut names: Vec<PathBuf> = std::fs::read_dir(&fixtures)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "graphql"))
        .collect();
    names.sort();
    for path in names {
        let q = std::fs::read_to_string(&path).unwrap();
        let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
        let body = serde_json::json!({ "query": q, "operationName": "IntrospectionQuery" });
        add(
            "graphql_request",
            &format!("post_{stem}"),
            post("application/json", &body.to_string()),
        );
    }
    let ordinary = [
        ("post_me", "application/graphql-response+json", r#"{"query":"{ me { id unionId identities { appId appKind openId subscribed } } }"}"#.to_owned()),
        ("post_login_mutation", "application/json", serde_json::json!({
            "query": "mutation L($a: String!, $c: String!) { loginWithCode(appId: $a, code: $c) { sessionToken user { ...U } } } fragment U on User { id unionId }",
            "operationName": "L",
            "variables": { "a": "wx1111111111111111", "c": "code" },
            "extensions": { "e": [1, 2.5, null, {"k": "v"}] }
        }).to_string()),
        ("post_two_operations_none_named", "*/*", r#"{"query":"query A { __typename } query B { __typename }"}"#.to_owned()),
        ("post_fragment_bomb", "application/json", {
            let mut q = String::from("fragment F0 on Query { __typename }");
            for i in 1..=24 {
                q.push_str(&format!(" fragment F{i} on Query {{ ...F{p} ...F{p} }}", p = i - 1));
            }
            q.push_str(" { ...F24 }");
            serde_json::json!({ "query": q }).to_string()
        }),
        ("post_fragment_cycle", "application/json", r#"{"query":"fragment A on Query{...B} fragment B on Query{...A} {...A}"}"#.to_owned()),
        ("post_unknown_fragment", "application/json", r#"{"query":"{...Nope}"}"#.to_owned()),
        ("post_nested_lists", "application/json", serde_json::json!({
            "query": format!("{{a(x: {}1{})}}", "[".repeat(40), "]".repeat(40))
        }).to_string()),
        ("post_syntax_error", "application/json", r#"{"query":"{ me { id "}"#.to_owned()),
        ("post_batch", "application/json", r#"[{"query":"{__typename}"}]"#.to_owned()),
        ("post_not_json", "application/json", "{ \"query".to_owned()),
        ("post_wrong_types", "application/json", r#"{"query":"{a}","operationName":3,"variables":[]}"#.to_owned()),
        ("post_unaccepted", "application/xml", r#"{"query":"{__typename}"}"#.to_owned()),
    ];
    for (name, accept, body) in ordinary {
        add("graphql_request", name, post(accept, &body));
    }
    add(
        "graphql_request",
        "get_query",
        get(&query(&[
            ("query", "query Q($u: String!) { user(unionId: $u) { id } }"),
            ("operationName", "Q"),
            ("variables", r#"{"u":"o1"}"#),
        ])),
    );
    add(
        "graphql_request",
        "get_mutation",
        get(&query(&[(
            "query",
            "mutation { loginWithCode(appId: \"wx1\", code: \"c\") { sessionToken } }",
        )])),
    );
    add(
        "graphql_request",
        "get_bad_variables",
        get("query=%7Ba%7D&variables=nope"),
    );
    add(
        "graphql_request",
        "get_graphiql",
        b"GET /graphql HTTP/1.1\nAccept: text/html,application/xhtml+xml\n\n".to_vec(),
    );
    add(
        "graphql_request",
        "put",
        b"PUT /graphql HTTP/1.1\nAccept: application/graphql-response+json\n\n{}".to_vec(),
    );
    add(
        "graphql_request",
        "post_text_plain",
        b"POST /graphql HTTP/1.1\nContent-Type: text/plain\n\n{\"query\":\"{__typename}\"}"
            .to_vec(),
    );
    add("graphql_request", "post_latin1", b"POST /graphql HTTP/1.1\nContent-Type: application/json; charset=latin1\n\n{\"query\":\"{__typename}\"}".to_vec());
    add("graphql_request", "post_declared_too_large", b"POST /graphql HTTP/1.1\nContent-Type: application/json\nContent-Length: 999999\n\n{\"query\":\"{__typename}\"}".to_vec());

    // config: the README's example, the tests' accounts, overrides and mistakes.
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let start = readme.find("```toml\nlisten = ").unwrap() + "```toml\n".len();
    let example = &readme[start..start + readme[start..].find("```").unwrap()];
    let example = example.replace(
        "<43 characters>",
        "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
    );
    add("config", "readme_example", example.clone().into_bytes());
    add("config", "fuzz_accounts", ACCOUNTS_TOML.as_bytes().to_vec());
    add("config", "empty", Vec::new());
    add("config", "sandbox_with_overrides", b"sandbox = true\n\0WXUNION_JOB_WORKERS=0\nWXUNION_LISTEN=0.0.0.0:9000\nWXUNION_GRAPHIQL=false\nWXUNION_SESSION_TTL_SECONDS=60\nWXUNION_CONFIG=/ignored\nOTHER=x\n".to_vec());
    add(
        "config",
        "bad_override",
        b"\0WXUNION_SANDBOX=maybe\n".to_vec(),
    );
    add("config", "unknown_override", b"\0WXUNION_NOPE=1\n".to_vec());
    add(
        "config",
        "duplicate_app",
        format!(
            "{ACCOUNTS_TOML}{}",
            &ACCOUNTS_TOML[ACCOUNTS_TOML.rfind("[[apps]]").unwrap()..]
        )
        .into_bytes(),
    );
    add(
        "config",
        "bad_aes_key",
        ACCOUNTS_TOML
            .replace("aCxCxSbj9eh+7OolaUxDXBagC/MWvRqNxgebzR2PnkY", "short")
            .into_bytes(),
    );
    add(
        "config",
        "syntax_error",
        b"listen = \"127.0.0.1:8080\nsandbox = tru\n".to_vec(),
    );
    add(
        "config",
        "out_of_bounds",
        b"job_workers = 100000\nhttp_max_connections = 0\n".to_vec(),
    );
    add(
        "config",
        "unknown_key_and_kind",
        b"colour = 1\n[[apps]]\napp_id = \"wx1111111111111111\"\nsecret = \"s\"\nkind = \"game\"\n"
            .to_vec(),
    );
    add("config", "api_keys", b"[[api_keys]]\nname = \"crm\"\nkey_sha256 = \"AB0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcd\"\n[[api_keys]]\nname = \" \"\nkey = \"0123456789abcdef\"\n".to_vec());
    add("config", "inline_tables", b"apps = [{ app_id = \"wx1111111111111111\", secret = \"s\", kind = \"mini_program\", open_platform = \"\" }]\ncors_allowed_origins = [\"not a url\"]\n".to_vec());
    out
}

#[test]
fn every_committed_seed_replays_without_a_finding() {
    for target in TARGETS {
        let seeds = committed(target);
        assert!(seeds.len() >= 10, "{target}: {} seeds", seeds.len());
        for (name, bytes) in seeds {
            // A finding panics; name it.
            let replay = std::panic::catch_unwind(|| match *target {
                "callback_raw" => format!("{:?}", callback_raw(&bytes)),
                "callback_signed" => format!("{:?}", callback_signed(&bytes)),
                "graphql_request" => format!("{:?}", graphql_request(&bytes)),
                _ => format!("{:?}", config(&bytes)),
            });
            assert!(replay.is_ok(), "{target}/{name} panics");
        }
    }
}

#[test]
fn the_generated_seeds_are_committed_unchanged() {
    for (target, name, bytes) in generated_seeds() {
        let path = seeds_dir(target).join(&name);
        let on_disk = std::fs::read(&path).unwrap_or_default();
        assert!(
            on_disk == bytes,
            "{} differs from its generator: run `cargo test --lib write_the_seed_corpora -- --ignored`",
            path.display()
        );
    }
}

#[test]
#[ignore = "writes fuzz/seeds/; run it after changing the generator"]
fn write_the_seed_corpora() {
    for (target, name, bytes) in generated_seeds() {
        std::fs::create_dir_all(seeds_dir(target)).unwrap();
        std::fs::write(seeds_dir(target).join(name), bytes).unwrap();
    }
}

#[test]
fn the_callback_seeds_open_in_every_mode_and_reply() {
    let raw: BTreeMap<String, CallbackOutcome> = committed("callback_raw")
        .into_iter()
        .map(|(name, bytes)| (name, callback_raw(&bytes)))
        .collect();
    let opened = |name: &str| match raw.get(name) {
        Some(CallbackOutcome::Opened { encrypted, replied }) => Some((*encrypted, *replied)),
        _ => None,
    };
    assert_eq!(opened("plaintext_subscribe"), Some((false, true)));
    assert_eq!(opened("plaintext_text_message"), Some((false, false)));
    assert_eq!(
        opened("safe_official_sample__video_reply_xml"),
        Some((true, false))
    );
    assert_eq!(
        opened("safe_subscribe_event__derived_key"),
        Some((true, true))
    );
    assert_eq!(
        opened("compatible_subscribe_event__derived_key"),
        Some((true, true))
    );
    assert_eq!(
        raw["plaintext_bad_signature"],
        CallbackOutcome::Refused(Refusal::Unauthorized("bad signature"))
    );
    assert_eq!(
        raw["safe_wrong_account"],
        CallbackOutcome::Refused(Refusal::Unauthorized("bad msg_signature"))
    );
    assert_eq!(
        raw["plaintext_xxe"],
        CallbackOutcome::Refused(Refusal::Malformed("not a WeChat message"))
    );

    let signed: BTreeMap<String, CallbackOutcome> = committed("callback_signed")
        .into_iter()
        .map(|(name, bytes)| (name, callback_signed(&bytes)))
        .collect();
    for mode in ["plaintext", "compatible", "safe", "frame"] {
        let name = format!("{mode}_subscribe_event__derived_key");
        assert!(
            matches!(signed[&name], CallbackOutcome::Opened { replied: true, .. }),
            "{name}: {:?}",
            signed[&name]
        );
    }
    assert_eq!(
        signed["frame_other_app"],
        CallbackOutcome::Refused(Refusal::Malformed("envelope is for another app"))
    );
    for name in [
        "frame_length_past_the_end",
        "frame_bad_padding",
        "frame_not_utf8",
    ] {
        assert_eq!(
            signed[name],
            CallbackOutcome::Refused(Refusal::Malformed("cannot decrypt the envelope")),
            "{name}"
        );
    }
    assert!(matches!(
        signed["safe_query_needs_escaping"],
        CallbackOutcome::Opened { replied: true, .. }
    ));
}

#[test]
fn the_graphql_seeds_reach_execution_and_every_refusal() {
    let outcomes: BTreeMap<String, GraphqlOutcome> = committed("graphql_request")
        .into_iter()
        .map(|(name, bytes)| (name, graphql_request(&bytes)))
        .collect();
    for (name, outcome) in &outcomes {
        if name.starts_with("post_introspection") {
            assert_eq!(outcome, &GraphqlOutcome::Executed { errors: 0 }, "{name}");
        }
    }
    assert_eq!(outcomes["get_graphiql"], GraphqlOutcome::Page);
    let statuses: BTreeSet<u16> = outcomes
        .values()
        .filter_map(|o| match o {
            GraphqlOutcome::Refused(s) => Some(*s),
            _ => None,
        })
        .collect();
    assert_eq!(statuses, BTreeSet::from([200, 400, 405, 406, 413, 415]));
    // Executed without a service: the resolver fails, the request was decoded.
    assert!(matches!(
        outcomes["post_login_mutation"],
        GraphqlOutcome::Executed { errors: 1.. }
    ));
}

#[test]
fn the_config_seeds_load_or_name_the_key_at_fault() {
    let outcomes: BTreeMap<String, Result<(), String>> = committed("config")
        .into_iter()
        .map(|(name, bytes)| (name, config(&bytes)))
        .collect();
    for ok in [
        "readme_example",
        "fuzz_accounts",
        "empty",
        "sandbox_with_overrides",
    ] {
        assert_eq!(outcomes[ok], Ok(()), "{ok}");
    }
    let key = |name: &str| outcomes[name].clone().unwrap_err();
    assert_eq!(key("bad_override"), "sandbox");
    assert_eq!(key("duplicate_app"), "apps[3].app_id");
    assert_eq!(key("bad_aes_key"), "apps[2].encoding_aes_key");
    assert_eq!(key("syntax_error"), "(syntax)");
    assert_eq!(key("out_of_bounds"), "job_workers");
}

#[test]
fn the_harness_seals_frames_exactly_like_wechats_vectors() {
    for v in vectors() {
        let app = AppConfig {
            app_id: v.app_id.clone(),
            token: Some(secrecy::SecretString::from(v.token.clone())),
            encoding_aes_key: Some(secrecy::SecretString::from(v.key.clone())),
            ..accounts()[2].clone()
        };
        let f = frame(&v.random, v.plaintext.as_bytes(), &v.app_id);
        assert_eq!(seal_frame(&app, &f), v.encrypt, "{}", v.name);
        assert_eq!(
            crypto::msg_signature(&v.token, &v.timestamp, &v.nonce, &v.encrypt),
            v.msg_signature
        );
        assert_eq!(
            crypto::signature(&v.token, &v.timestamp, &v.nonce),
            v.signature
        );
        // The independent reading of the frame agrees with MsgCrypt on the vectors.
        let read = message_of_frame(&app, &f);
        assert_eq!(
            read,
            message::parse_message(&v.plaintext).ok(),
            "{}",
            v.name
        );
    }
}

#[test]
fn the_independent_frame_reading_refuses_what_msg_crypt_refuses() {
    let app = &accounts()[2];
    let mc = msg_crypt(app);
    let sub = vector("subscribe event, derived key");
    let good = frame(&sub.random, sub.plaintext.as_bytes(), &app.app_id);
    let mut cases: Vec<(&str, Vec<u8>)> = vec![("good", good.clone())];
    for (i, name) in [
        (16, "length"),
        (good.len() - 1, "last pad byte"),
        (good.len() - 40, "app id"),
    ] {
        let mut f = good.clone();
        f[i] ^= 0x01;
        cases.push((name, f));
    }
    cases.push(("short", good[..16].to_vec()));
    for (name, f) in cases {
        let by_msg_crypt = mc
            .decrypt(&seal_frame(app, &f))
            .ok()
            .and_then(|xml| message::parse_message(&xml).ok());
        assert_eq!(message_of_frame(app, &f), by_msg_crypt, "{name}");
    }
    assert!(message_of_frame(app, &good).is_some());
}

#[test]
fn malformed_inputs_are_not_requests() {
    assert_eq!(callback_raw(b""), CallbackOutcome::NotARequest);
    assert_eq!(callback_raw(b"0a b\n"), CallbackOutcome::NotARequest);
    assert_eq!(callback_signed(b"2\n1\nn\n"), CallbackOutcome::NotARequest);
    assert_eq!(
        graphql_request(b"GET /graphql"),
        GraphqlOutcome::NotARequest
    );
    assert_eq!(
        graphql_request(b"GET /graphql\nBad Header\n\n"),
        GraphqlOutcome::NotARequest
    );
    assert_eq!(config(b"\xff"), Err("(file)".to_owned()));
}
