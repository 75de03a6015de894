//! Unit tests for `crypto`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // panicking is how tests fail

use super::*;

const VECTORS: &str = include_str!("../../tests/vectors/wechat_crypto.json");
const DOC_KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
const DOC_APP_ID: &str = "wxb11529c136998cb6";

struct Case {
    name: String,
    token: String,
    timestamp: String,
    nonce: String,
    encoding_aes_key: String,
    app_id: String,
    random: [u8; 16],
    plaintext: String,
    encrypt: String,
    signature: String,
    msg_signature: String,
}

impl Case {
    fn crypt(&self) -> MsgCrypt {
        MsgCrypt::new(&self.token, &self.encoding_aes_key, &self.app_id).unwrap()
    }
}

fn cases() -> Vec<Case> {
    let doc: serde_json::Value = serde_json::from_str(VECTORS).unwrap();
    let s = |c: &serde_json::Value, k: &str| c[k].as_str().unwrap().to_owned();
    let cases: Vec<Case> = doc["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| Case {
            name: s(c, "name"),
            token: s(c, "token"),
            timestamp: s(c, "timestamp"),
            nonce: s(c, "nonce"),
            encoding_aes_key: s(c, "encoding_aes_key"),
            app_id: s(c, "app_id"),
            random: hex::decode(s(c, "random")).unwrap().try_into().unwrap(),
            plaintext: s(c, "plaintext"),
            encrypt: s(c, "encrypt"),
            signature: s(c, "signature"),
            msg_signature: s(c, "msg_signature"),
        })
        .collect();
    assert!(cases.len() >= 5, "vector file lost its cases");
    cases
}

fn doc_crypt() -> MsgCrypt {
    MsgCrypt::new("pamtest", DOC_KEY, DOC_APP_ID).unwrap()
}

fn ciphertext_bytes(b64: &str) -> Vec<u8> {
    STANDARD.decode(b64).unwrap()
}

/// Encrypt an arbitrary (possibly hostile) frame with the doc key.
fn forge(frame: &[u8]) -> String {
    STANDARD.encode(doc_crypt().encrypt_frame(frame))
}

/// A correctly padded frame with the given length field and tail.
fn frame_with(len_field: u32, tail: &[u8]) -> Vec<u8> {
    let mut frame = vec![0xAB; RANDOM_LEN];
    frame.extend_from_slice(&len_field.to_be_bytes());
    frame.extend_from_slice(tail);
    let pad = PAD_BLOCK - frame.len() % PAD_BLOCK;
    frame.resize(frame.len() + pad, pad as u8);
    frame
}

#[test]
fn encrypting_with_the_vector_random_reproduces_the_independent_ciphertext() {
    for case in cases() {
        let got = case.crypt().encrypt(&case.plaintext, case.random);
        assert_eq!(got, case.encrypt, "case {}", case.name);
    }
}

#[test]
fn decrypting_the_vector_ciphertext_yields_the_plaintext() {
    for case in cases() {
        let got = case.crypt().decrypt(&case.encrypt).unwrap();
        assert_eq!(got, case.plaintext, "case {}", case.name);
    }
}

#[test]
fn signatures_equal_the_independently_computed_ones() {
    for case in cases() {
        assert_eq!(
            signature(&case.token, &case.timestamp, &case.nonce),
            case.signature,
            "case {}",
            case.name
        );
        assert_eq!(
            msg_signature(&case.token, &case.timestamp, &case.nonce, &case.encrypt),
            case.msg_signature,
            "case {}",
            case.name
        );
    }
}

#[test]
fn verify_and_decrypt_accepts_every_vector() {
    for case in cases() {
        let got = case
            .crypt()
            .verify_and_decrypt(
                &case.msg_signature,
                &case.timestamp,
                &case.nonce,
                &case.encrypt,
            )
            .unwrap();
        assert_eq!(got, case.plaintext, "case {}", case.name);
    }
}

#[test]
fn the_vectors_include_a_full_pad_block_and_the_wechat_sample_key() {
    let cases = cases();
    assert!(
        cases
            .iter()
            .any(|c| (HEADER_LEN + c.plaintext.len() + c.app_id.len()).is_multiple_of(PAD_BLOCK))
    );
    assert!(cases.iter().any(|c| c.encoding_aes_key == DOC_KEY
        && c.token == "pamtest"
        && c.app_id == DOC_APP_ID
        && c.timestamp == "1409304348"
        && c.nonce == "xxxxxx"));
    assert!(cases.iter().any(|c| !c.plaintext.is_ascii()));
}

#[test]
fn encrypt_then_decrypt_round_trips_every_length_across_pad_boundaries() {
    let crypt = doc_crypt();
    for len in 0..=100 {
        let plaintext: String = "中a".chars().cycle().take(len).collect();
        let b64 = crypt.encrypt(&plaintext, [7; 16]);
        assert_eq!(ciphertext_bytes(&b64).len() % PAD_BLOCK, 0);
        assert_eq!(crypt.decrypt(&b64).unwrap(), plaintext);
    }
}

#[test]
fn signatures_match_is_exact_and_case_sensitive() {
    let sig = signature("pamtest", "1409304348", "xxxxxx");
    assert!(signatures_match(&sig, &sig.clone()));
    assert!(!signatures_match(&sig, &sig.to_uppercase()));
    assert!(!signatures_match(&sig, &sig[..39]));
    assert!(!signatures_match(&sig, ""));
    assert!(!signatures_match(&sig, &format!("{sig}0")));
}

#[test]
fn signature_does_not_depend_on_argument_order() {
    assert_eq!(signature("a", "b", "c"), signature("c", "a", "b"));
    assert_eq!(
        msg_signature("a", "b", "c", "d"),
        msg_signature("d", "c", "b", "a")
    );
}

#[test]
fn wrong_msg_signature_is_rejected_before_decrypting() {
    let case = &cases()[0];
    let crypt = case.crypt();
    let mut wrong = case.msg_signature.clone();
    wrong.replace_range(0..1, if wrong.starts_with('0') { "1" } else { "0" });
    for bad in [
        wrong.as_str(),
        "",
        "12345",
        &case.msg_signature.to_uppercase(),
    ] {
        let err = crypt
            .verify_and_decrypt(bad, &case.timestamp, &case.nonce, &case.encrypt)
            .unwrap_err();
        assert!(matches!(err, CryptoError::BadSignature), "{bad}: {err:?}");
    }
    // A signature made for other timestamp/nonce values does not transfer.
    let err = crypt
        .verify_and_decrypt(&case.msg_signature, "1", &case.nonce, &case.encrypt)
        .unwrap_err();
    assert!(matches!(err, CryptoError::BadSignature));
    // Even garbage ciphertext is reported as a signature failure first.
    let err = crypt
        .verify_and_decrypt(&case.msg_signature, &case.timestamp, &case.nonce, "!!")
        .unwrap_err();
    assert!(matches!(err, CryptoError::BadSignature));
}

#[test]
fn flipping_any_ciphertext_byte_never_panics_or_yields_the_original() {
    for case in cases() {
        let crypt = case.crypt();
        let original = ciphertext_bytes(&case.encrypt);
        for i in 0..original.len() {
            let mut tampered = original.clone();
            tampered[i] ^= 0x01;
            let b64 = STANDARD.encode(&tampered);
            // CBC is malleable: decrypt alone may "succeed" with altered
            // text, but never with the original message...
            if let Ok(text) = crypt.decrypt(&b64) {
                assert_ne!(text, case.plaintext, "case {} byte {i}", case.name);
            }
            // ...which is why the signature check must come first.
            let err = crypt
                .verify_and_decrypt(&case.msg_signature, &case.timestamp, &case.nonce, &b64)
                .unwrap_err();
            assert!(matches!(err, CryptoError::BadSignature));
        }
    }
}

#[test]
fn flipping_a_byte_in_the_last_block_breaks_padding_or_app_id() {
    let case = &cases()[0];
    let mut tampered = ciphertext_bytes(&case.encrypt);
    let last = tampered.len() - 1;
    tampered[last] ^= 0x80;
    let err = case
        .crypt()
        .decrypt(&STANDARD.encode(&tampered))
        .unwrap_err();
    assert!(
        matches!(
            err,
            CryptoError::BadPadding | CryptoError::AppIdMismatch | CryptoError::BadLength
        ),
        "{err:?}"
    );
}

#[test]
fn a_message_for_another_app_id_is_rejected() {
    let case = &cases()[0];
    let other = MsgCrypt::new(&case.token, &case.encoding_aes_key, "wx_other_app_id").unwrap();
    let err = other.decrypt(&case.encrypt).unwrap_err();
    assert!(matches!(err, CryptoError::AppIdMismatch), "{err:?}");
    // A prefix of the right app id is not enough either.
    let prefix = MsgCrypt::new(&case.token, &case.encoding_aes_key, &case.app_id[..5]).unwrap();
    assert!(matches!(
        prefix.decrypt(&case.encrypt),
        Err(CryptoError::AppIdMismatch)
    ));
}

#[test]
fn decrypting_with_the_wrong_key_fails_cleanly() {
    let case = &cases()[0];
    let other_key = "BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB";
    let crypt = MsgCrypt::new(&case.token, other_key, &case.app_id).unwrap();
    assert!(crypt.decrypt(&case.encrypt).is_err());
}

#[test]
fn empty_truncated_and_garbage_payloads_are_errors() {
    let crypt = doc_crypt();
    let good = ciphertext_bytes(&cases()[0].encrypt);

    assert!(matches!(crypt.decrypt(""), Err(CryptoError::BadCiphertext)));
    assert!(matches!(crypt.decrypt("!!!!"), Err(CryptoError::BadBase64)));
    assert!(matches!(crypt.decrypt("abc"), Err(CryptoError::BadBase64)));
    assert!(matches!(
        crypt.decrypt("not base64 at all"),
        Err(CryptoError::BadBase64)
    ));
    // Not a multiple of the AES block size.
    for len in [1, 15, 17, 31, good.len() - 1] {
        let b64 = STANDARD.encode(&good[..len]);
        assert!(
            matches!(crypt.decrypt(&b64), Err(CryptoError::BadCiphertext)),
            "{len}"
        );
    }
    // Block aligned but cut short: the frame no longer ends correctly.
    for len in (AES_BLOCK..good.len()).step_by(AES_BLOCK) {
        assert!(
            crypt.decrypt(&STANDARD.encode(&good[..len])).is_err(),
            "{len}"
        );
    }
    // Random-looking aligned blocks.
    for n in 1..=8 {
        let junk: Vec<u8> = (0..n * AES_BLOCK).map(|i| (i * 37 + n) as u8).collect();
        assert!(crypt.decrypt(&STANDARD.encode(&junk)).is_err());
    }
}

#[test]
fn hostile_frames_are_rejected_without_panicking() {
    let crypt = doc_crypt();
    let app = DOC_APP_ID.as_bytes();

    // Length field points far beyond the buffer.
    for len in [u32::MAX, 1 << 31, 1000, 33] {
        let b64 = forge(&frame_with(len, app));
        assert!(
            matches!(crypt.decrypt(&b64), Err(CryptoError::BadLength)),
            "{len}"
        );
    }
    // Too short to even hold the header once padding is removed.
    let mut short = vec![0u8; 10];
    short.resize(32, 22);
    assert!(matches!(
        crypt.decrypt(&forge(&short)),
        Err(CryptoError::BadLength)
    ));
    // Pad byte 0, 33 and 255 are outside 1..=32.
    for pad in [0u8, 33, 255] {
        let mut frame = frame_with(0, app);
        let last = frame.len() - 1;
        frame[last] = pad;
        assert!(
            matches!(crypt.decrypt(&forge(&frame)), Err(CryptoError::BadPadding)),
            "{pad}"
        );
    }
    // Pad value 32 on a 16-byte plaintext would run off the front.
    let mut tiny = vec![0u8; 16];
    tiny[15] = 32;
    assert!(matches!(
        crypt.decrypt(&forge(&tiny)),
        Err(CryptoError::BadPadding)
    ));
    // Inconsistent pad bytes.
    let mut frame = frame_with(0, app);
    let n = frame.len();
    let pad = frame[n - 1] as usize;
    assert!(pad >= 2);
    frame[n - pad] ^= 1;
    assert!(matches!(
        crypt.decrypt(&forge(&frame)),
        Err(CryptoError::BadPadding)
    ));
    // Message bytes that are not UTF-8.
    let mut tail = vec![0xFF, 0xFE];
    tail.extend_from_slice(app);
    assert!(matches!(
        crypt.decrypt(&forge(&frame_with(2, &tail))),
        Err(CryptoError::NotUtf8)
    ));
    // No app id at all.
    assert!(matches!(
        crypt.decrypt(&forge(&frame_with(0, b""))),
        Err(CryptoError::AppIdMismatch)
    ));
}

#[test]
fn the_wechat_sample_key_with_trailing_bits_is_accepted() {
    let key = decode_aes_key(DOC_KEY).unwrap();
    let strict = base64::engine::general_purpose::STANDARD_NO_PAD.decode(DOC_KEY);
    assert!(strict.is_err(), "sample key should carry trailing bits");
    assert_eq!(&key[..3], b"i\xb7\x1d");
}

#[test]
fn malformed_aes_keys_are_rejected() {
    let bad = [
        "",
        &DOC_KEY[..42],
        &format!("{DOC_KEY}="),
        &format!("{DOC_KEY}A"),
        "abcdefghijklmnopqrstuvwxyz0123456789ABCDEF=",
        "abcdefghijklmnopqrstuvwxyz0123456789ABCDE!G",
        "abcdefghijklmnopqrstuvwxyz0123456789ABCD-_G",
        "abcdefghijklmnopqrstuvwxyz0123456789ABCD EF",
        "中bcdefghijklmnopqrstuvwxyz0123456789ABCDE",
    ];
    for key in bad {
        assert!(
            matches!(decode_aes_key(key), Err(CryptoError::InvalidAesKey)),
            "{key:?}"
        );
        assert!(MsgCrypt::new("t", key, "wx").is_err());
    }
}

#[test]
fn debug_output_does_not_reveal_the_key_or_token() {
    let crypt = MsgCrypt::new("sEcReTtOkEn", DOC_KEY, DOC_APP_ID).unwrap();
    let shown = format!("{crypt:?} {crypt:#?}");
    assert!(shown.contains(DOC_APP_ID));
    assert!(!shown.contains("sEcReTtOkEn"));
    assert!(!shown.contains(DOC_KEY));
    assert!(!shown.contains(&DOC_KEY[..8]));
    let key = decode_aes_key(DOC_KEY).unwrap();
    assert!(!shown.contains(&hex::encode(key)[..8]));
    assert!(!shown.contains("105, 183, 29"));
}

#[test]
fn error_messages_do_not_echo_input() {
    let crypt = doc_crypt();
    let err = crypt.decrypt("SECRETSECRET!").unwrap_err();
    assert!(!err.to_string().contains("SECRET"));
    let err = decode_aes_key("SECRETSECRET").unwrap_err();
    assert!(!err.to_string().contains("SECRET"));
}

#[test]
fn accessors_return_the_configured_token_and_app_id() {
    let crypt = doc_crypt();
    assert_eq!(crypt.token(), "pamtest");
    assert_eq!(crypt.app_id(), DOC_APP_ID);
}

fn between<'a>(xml: &'a str, open: &str, close: &str) -> &'a str {
    let start = xml.find(open).unwrap() + open.len();
    let end = start + xml[start..].find(close).unwrap();
    &xml[start..end]
}

#[test]
fn encrypted_reply_envelope_carries_a_verifiable_signature() {
    let case = &cases()[0];
    let crypt = case.crypt();
    let reply = "<xml><Content><![CDATA[回复]]></Content></xml>";
    let xml = crypt.encrypt_reply(reply, &case.timestamp, &case.nonce, case.random);

    assert!(xml.starts_with("<xml><Encrypt><![CDATA["));
    assert!(xml.ends_with("]]></Nonce></xml>"));
    let encrypt = between(&xml, "<Encrypt><![CDATA[", "]]></Encrypt>");
    let sig = between(&xml, "<MsgSignature><![CDATA[", "]]></MsgSignature>");
    assert_eq!(between(&xml, "<TimeStamp>", "</TimeStamp>"), case.timestamp);
    assert_eq!(between(&xml, "<Nonce><![CDATA[", "]]></Nonce>"), case.nonce);
    assert_eq!(encrypt, crypt.encrypt(reply, case.random));
    assert_eq!(
        crypt
            .verify_and_decrypt(sig, &case.timestamp, &case.nonce, encrypt)
            .unwrap(),
        reply
    );
}

#[test]
fn reply_envelope_cannot_be_broken_out_of_by_nonce_or_timestamp() {
    let xml = doc_crypt().encrypt_reply("x", "1<2&", "a]]>b", [0; 16]);
    assert!(xml.contains("<TimeStamp>1&lt;2&amp;</TimeStamp>"));
    assert!(xml.contains("<Nonce><![CDATA[a]]]]><![CDATA[>b]]></Nonce>"));
}
