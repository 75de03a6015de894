//! Opening one official-account callback request the way WeChat sealed it, and sealing the
//! reply: the signature over (token, timestamp, nonce), in compatible and safe mode the
//! `msg_signature` and AES envelope, then the hardened XML reader. No HTTP here: the route
//! maps a [`Refusal`] to a status code.

use std::borrow::Cow;
use std::collections::HashMap;

use secrecy::ExposeSecret;

use super::crypto::{self, CryptoError, MsgCrypt};
use super::message::{self, Message};
use crate::domain::AppConfig;

/// Why a request is refused; nothing is recorded for any of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A signature is missing or wrong.
    Unauthorized(&'static str),
    /// The body is not a well-formed WeChat message for this account.
    Malformed(&'static str),
}

/// A callback's query parameters by name; a repeated name keeps its last value.
///
/// A list rather than a hash map: a callback carries six, and finding them by comparing
/// names costs less than hashing each (hashing them was about 3 % of a callback's
/// instructions, `bench/callgrind.sh`). A query with many parameters only makes each
/// lookup linear in their number. Names and values borrow from the query string where it
/// needs no decoding (all of WeChat's), so reading a callback's query allocates no string.
#[derive(Debug, Clone, Default)]
pub struct QueryParams<'a>(Vec<(Cow<'a, str>, Cow<'a, str>)>);

impl<'a> QueryParams<'a> {
    /// Room for a callback's six parameters and two more.
    pub fn new() -> Self {
        QueryParams(Vec::with_capacity(8))
    }

    /// The last value given for `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_ref())
    }

    pub fn insert(&mut self, name: impl Into<Cow<'a, str>>, value: impl Into<Cow<'a, str>>) {
        self.0.push((name.into(), value.into()));
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Each name with the value [`QueryParams::get`] gives for it.
    pub fn to_map(&self) -> HashMap<String, String> {
        self.0
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    /// The same parameters, owning their strings.
    pub fn into_owned(self) -> QueryParams<'static> {
        QueryParams(
            self.0
                .into_iter()
                .map(|(n, v)| (Cow::Owned(n.into_owned()), Cow::Owned(v.into_owned())))
                .collect(),
        )
    }
}

impl<'a> Extend<(Cow<'a, str>, Cow<'a, str>)> for QueryParams<'a> {
    fn extend<I: IntoIterator<Item = (Cow<'a, str>, Cow<'a, str>)>>(&mut self, iter: I) {
        self.0.extend(iter);
    }
}

impl FromIterator<(String, String)> for QueryParams<'static> {
    fn from_iter<I: IntoIterator<Item = (String, String)>>(iter: I) -> Self {
        QueryParams(
            iter.into_iter()
                .map(|(n, v)| (Cow::Owned(n), Cow::Owned(v)))
                .collect(),
        )
    }
}

/// A verified, decrypted, parsed message.
#[derive(Debug, Clone)]
pub struct Opened {
    pub message: Message,
    /// It came AES-encrypted (compatible or safe mode): a reply must be too.
    pub encrypted: bool,
}

/// Checks `signature = sha1(sort(token, timestamp, nonce))` in constant time.
pub fn signature_ok(app: &AppConfig, q: &QueryParams<'_>) -> bool {
    let (Some(token), Some(sig), Some(ts), Some(nonce)) = (
        &app.token,
        q.get("signature"),
        q.get("timestamp"),
        q.get("nonce"),
    ) else {
        return false;
    };
    crypto::signatures_match(&crypto::signature(token.expose_secret(), ts, nonce), sig)
}

/// Verifies and opens a POSTed message.
pub fn open(app: &AppConfig, q: &QueryParams<'_>, body: &[u8]) -> Result<Opened, Refusal> {
    if !signature_ok(app, q) {
        return Err(Refusal::Unauthorized("bad signature"));
    }
    let body = std::str::from_utf8(body).map_err(|_| Refusal::Malformed("body is not UTF-8"))?;
    let encrypted = q.get("encrypt_type").is_some_and(|t| t == "aes");
    // An account with an EncodingAESKey is in compatible or safe mode, where WeChat always
    // encrypts. A plaintext body would be authenticated by nothing but a replayable
    // signature, so it is refused.
    if !encrypted && app.encoding_aes_key.is_some() {
        return Err(Refusal::Malformed(
            "this account expects encrypted messages",
        ));
    }
    let message = if encrypted {
        message::parse_message(&decrypt(app, q, body)?)
    } else {
        message::parse_message(body)
    }
    .map_err(|_| Refusal::Malformed("not a WeChat message"))?;
    if q.get("openid")
        .is_some_and(|o| *o != message.from_user_name)
    {
        return Err(Refusal::Malformed("openid does not match FromUserName"));
    }
    Ok(Opened { message, encrypted })
}

/// Safe and compatible mode: check `msg_signature` over the envelope and decrypt it.
fn decrypt(app: &AppConfig, q: &QueryParams<'_>, body: &str) -> Result<String, Refusal> {
    let (Some(token), Some(key)) = (&app.token, &app.encoding_aes_key) else {
        return Err(Refusal::Malformed(
            "encrypted message for an account without an EncodingAESKey",
        ));
    };
    let (Some(msg_sig), Some(ts), Some(nonce)) =
        (q.get("msg_signature"), q.get("timestamp"), q.get("nonce"))
    else {
        return Err(Refusal::Unauthorized("missing msg_signature"));
    };
    let envelope =
        message::parse_envelope(body).map_err(|_| Refusal::Malformed("not a WeChat message"))?;
    let encrypt = envelope
        .encrypt
        .ok_or(Refusal::Malformed("no Encrypt element"))?;
    // The key was validated with the configuration; a failure here cannot be the caller's.
    let mc = MsgCrypt::new(token.expose_secret(), key.expose_secret(), &app.app_id)
        .map_err(|_| Refusal::Malformed("cannot decrypt the envelope"))?;
    mc.verify_and_decrypt(msg_sig, ts, nonce, &encrypt)
        .map_err(|e| match e {
            CryptoError::BadSignature => Refusal::Unauthorized("bad msg_signature"),
            CryptoError::AppIdMismatch => Refusal::Malformed("envelope is for another app"),
            _ => Refusal::Malformed("cannot decrypt the envelope"),
        })
}

/// A passive text reply to the sender of `to`, encrypted and signed with the request's
/// timestamp and nonce when the message came encrypted (with `now` and a random nonce where
/// the request's are empty: WeChat's reader refuses an empty `TimeStamp` or `Nonce`).
pub fn text_reply(
    app: &AppConfig,
    q: &QueryParams<'_>,
    opened: &Opened,
    text: &str,
    now: i64,
) -> String {
    let msg = &opened.message;
    let xml = message::reply_text_xml(&msg.from_user_name, &msg.to_user_name, now, text);
    let (Some(token), Some(key), true) = (&app.token, &app.encoding_aes_key, opened.encrypted)
    else {
        return xml;
    };
    let Ok(mc) = MsgCrypt::new(token.expose_secret(), key.expose_secret(), &app.app_id) else {
        return xml;
    };
    let ts = q
        .get("timestamp")
        .filter(|t| !t.is_empty())
        .map_or_else(|| now.to_string(), str::to_owned);
    let nonce = q
        .get("nonce")
        .filter(|n| !n.is_empty())
        .map_or_else(|| format!("{:016x}", rand::random::<u64>()), str::to_owned);
    mc.encrypt_reply(&xml, &ts, &nonce, rand::random())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{AppKind, TokenEndpoint};
    use secrecy::SecretString;

    const KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";

    fn account(aes: bool) -> AppConfig {
        AppConfig {
            app_id: "wx2000000000000001".into(),
            secret: SecretString::from("s"),
            kind: AppKind::OfficialAccount,
            open_platform: None,
            token: Some(SecretString::from("tok")),
            encoding_aes_key: aes.then(|| SecretString::from(KEY)),
            token_endpoint: TokenEndpoint::Stable,
            subscribe_reply: None,
        }
    }

    fn query(extra: &[(&str, &str)]) -> QueryParams<'static> {
        let mut q: QueryParams<'static> = [
            ("signature", crypto::signature("tok", "1", "n")),
            ("timestamp", "1".to_owned()),
            ("nonce", "n".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        for (k, v) in extra {
            q.insert((*k).to_owned(), (*v).to_owned());
        }
        q
    }

    const EVENT: &str = "<xml><ToUserName>gh</ToUserName><FromUserName>oUser</FromUserName><CreateTime>1</CreateTime><MsgType>event</MsgType><Event>subscribe</Event></xml>";

    #[test]
    fn a_signed_plaintext_message_opens() {
        let opened = open(
            &account(false),
            &query(&[("openid", "oUser")]),
            EVENT.as_bytes(),
        )
        .unwrap();
        assert_eq!(opened.message.from_user_name, "oUser");
        assert!(!opened.encrypted);
    }

    #[test]
    fn a_wrong_signature_or_openid_is_refused() {
        let mut q = query(&[]);
        q.insert("signature", "0".repeat(40));
        assert_eq!(
            open(&account(false), &q, EVENT.as_bytes()).unwrap_err(),
            Refusal::Unauthorized("bad signature")
        );
        let q = query(&[("openid", "oSomeoneElse")]);
        assert!(matches!(
            open(&account(false), &q, EVENT.as_bytes()),
            Err(Refusal::Malformed(_))
        ));
    }

    #[test]
    fn a_safe_mode_message_opens_and_its_reply_is_sealed_for_wechat() {
        let mc = MsgCrypt::new("tok", KEY, "wx2000000000000001").unwrap();
        let encrypt = mc.encrypt(EVENT, [7; 16]);
        let sig = crypto::msg_signature("tok", "1", "n", &encrypt);
        let q = query(&[("encrypt_type", "aes"), ("msg_signature", &sig)]);
        let body = message::encrypted_envelope_xml("gh", &encrypt);
        let opened = open(&account(true), &q, body.as_bytes()).unwrap();
        assert!(opened.encrypted);
        let reply = text_reply(&account(true), &q, &opened, "hi", 2);
        let sealed = message::parse_reply_envelope(&reply).unwrap();
        assert_eq!(
            (sealed.timestamp.as_str(), sealed.nonce.as_str()),
            ("1", "n")
        );
        let xml = mc
            .verify_and_decrypt(&sealed.msg_signature, "1", "n", &sealed.encrypt)
            .unwrap();
        let reply_msg = message::parse_message(&xml).unwrap();
        assert_eq!(reply_msg.to_user_name, "oUser");
        assert!(xml.contains("hi"));
    }

    #[test]
    fn a_reply_to_a_request_with_an_empty_timestamp_and_nonce_is_still_readable() {
        // Found by the callback_signed fuzz target: the reply echoed the empty timestamp,
        // and a reply without `TimeStamp` or `Nonce` is refused by the reader.
        let mc = MsgCrypt::new("tok", KEY, "wx2000000000000001").unwrap();
        let encrypt = mc.encrypt(EVENT, [7; 16]);
        let q: QueryParams<'static> = [
            ("signature", crypto::signature("tok", "", "")),
            ("timestamp", String::new()),
            ("nonce", String::new()),
            ("encrypt_type", "aes".to_owned()),
            (
                "msg_signature",
                crypto::msg_signature("tok", "", "", &encrypt),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let body = message::encrypted_envelope_xml("gh", &encrypt);
        let opened = open(&account(true), &q, body.as_bytes()).unwrap();
        let reply = text_reply(&account(true), &q, &opened, "hi", 2);
        let sealed = message::parse_reply_envelope(&reply).unwrap();
        assert_eq!(sealed.timestamp, "2");
        assert_eq!(sealed.nonce.len(), 16);
        let xml = mc
            .verify_and_decrypt(
                &sealed.msg_signature,
                &sealed.timestamp,
                &sealed.nonce,
                &sealed.encrypt,
            )
            .unwrap();
        assert!(xml.contains("hi"));
    }

    #[test]
    fn plaintext_for_an_aes_account_is_refused() {
        assert_eq!(
            open(&account(true), &query(&[]), EVENT.as_bytes()).unwrap_err(),
            Refusal::Malformed("this account expects encrypted messages")
        );
    }
}
