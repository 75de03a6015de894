//! WeChat official-account message crypto (the `WXBizMsgCrypt` scheme).
//!
//! This module owns everything that touches the per-app secrets configured on
//! the WeChat admin console — the Token and the EncodingAESKey — so the rest
//! of the service only ever sees verified plaintext. It covers:
//!
//! * the SHA-1 signatures WeChat attaches to callbacks (`signature` for URL
//!   verification and plaintext mode, `msg_signature` for safe mode), compared
//!   in constant time;
//! * AES-256-CBC decryption of safe-mode bodies and encryption of replies,
//!   including WeChat's non-standard framing (16 random bytes, a 4-byte
//!   big-endian length, the message, then the app id) and its PKCS#7 variant
//!   that pads to 32 bytes rather than the AES block size.
//!
//! Every length read from attacker-controlled input is checked before use, so
//! hostile bodies produce a [`CryptoError`] rather than a panic. Key material
//! never appears in `Debug` output or error messages.

use std::fmt;

use aes::Aes256;
use aes::cipher::block_padding::NoPadding;
use aes::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use base64::Engine as _;
use base64::alphabet;
use base64::engine::general_purpose::STANDARD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use sha1::{Digest, Sha1};
use subtle::ConstantTimeEq;

/// WeChat pads to 32 bytes (not AES's 16), so pad values run 1..=32.
const PAD_BLOCK: usize = 32;
/// AES block size; CBC ciphertext must be a multiple of it.
const AES_BLOCK: usize = 16;
/// Length of the random prefix in the plaintext frame.
const RANDOM_LEN: usize = 16;
/// Random prefix plus the 4-byte big-endian message length.
const HEADER_LEN: usize = RANDOM_LEN + 4;
/// An EncodingAESKey is 32 bytes in base64 with the single `=` removed.
const ENCODING_AES_KEY_LEN: usize = 43;

/// Base64 engine for the EncodingAESKey: no padding, and tolerant of the
/// non-zero trailing bits that WeChat-generated keys carry in their last
/// character (the official SDKs decode them with lenient decoders).
const AES_KEY_ENGINE: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone)
        .with_decode_allow_trailing_bits(true),
);

type Aes256CbcEnc = cbc::Encryptor<Aes256>;
type Aes256CbcDec = cbc::Decryptor<Aes256>;

/// Why a WeChat crypto operation failed.
///
/// Variants are deliberately coarse and their messages carry no key material
/// or plaintext, so they are safe to log and to map to HTTP errors.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// The configured EncodingAESKey is not 43 base64 characters; this is a
    /// configuration error, not a hostile request.
    #[error("invalid EncodingAESKey (expected 43 base64 characters)")]
    InvalidAesKey,
    /// The request was not signed with our token; treat it as forged.
    #[error("signature mismatch")]
    BadSignature,
    /// The `Encrypt` payload is not valid standard base64.
    #[error("encrypted payload is not valid base64")]
    BadBase64,
    /// The ciphertext cannot be AES-CBC output (empty or not block aligned).
    #[error("ciphertext length is not a positive multiple of the AES block size")]
    BadCiphertext,
    /// Decryption produced invalid padding: wrong key or tampered data.
    #[error("invalid padding after decryption")]
    BadPadding,
    /// The decrypted frame is too short or its length field overruns it.
    #[error("decrypted message length is inconsistent")]
    BadLength,
    /// The decrypted message is not UTF-8 text.
    #[error("decrypted message is not valid UTF-8")]
    NotUtf8,
    /// The message was encrypted for a different app with the same key.
    #[error("decrypted message belongs to a different app id")]
    AppIdMismatch,
}

/// Signature WeChat sends for URL verification and plaintext-mode callbacks;
/// recompute it to authenticate the request.
pub fn signature(token: &str, timestamp: &str, nonce: &str) -> String {
    sorted_sha1_hex(&mut [token, timestamp, nonce])
}

/// Safe-mode signature, which also covers the ciphertext so that tampering
/// with the `Encrypt` payload is detected before decrypting it.
pub fn msg_signature(token: &str, timestamp: &str, nonce: &str, encrypt: &str) -> String {
    sorted_sha1_hex(&mut [token, timestamp, nonce, encrypt])
}

/// Compare a computed signature with the one in the request without leaking,
/// through timing, how many leading characters matched. Case-sensitive, as
/// WeChat always sends lowercase hex.
pub fn signatures_match(expected: &str, given: &str) -> bool {
    expected.as_bytes().ct_eq(given.as_bytes()).into()
}

/// Turn the EncodingAESKey from the WeChat console into the raw AES-256 key,
/// rejecting anything that is not exactly 43 base64 characters so a
/// mis-pasted key fails at startup rather than on the first callback.
pub fn decode_aes_key(encoding_aes_key: &str) -> Result<[u8; 32], CryptoError> {
    if encoding_aes_key.len() != ENCODING_AES_KEY_LEN {
        return Err(CryptoError::InvalidAesKey);
    }
    let bytes = AES_KEY_ENGINE
        .decode(encoding_aes_key)
        .map_err(|_| CryptoError::InvalidAesKey)?;
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| CryptoError::InvalidAesKey)
}

fn sorted_sha1_hex(parts: &mut [&str]) -> String {
    parts.sort_unstable();
    let mut hasher = Sha1::new();
    for part in parts.iter() {
        hasher.update(part.as_bytes());
    }
    // Into a buffer: `hex::encode` builds its String a char at a time.
    let mut hex = [0u8; 40];
    let encoded = hex::encode_to_slice(hasher.finalize(), &mut hex);
    debug_assert!(encoded.is_ok(), "a SHA-1 digest is 20 bytes, 40 hex digits");
    String::from_utf8_lossy(&hex).into_owned()
}

/// Wrap `text` in CDATA, splitting any `]]>` so the section cannot be closed
/// early by the content.
fn cdata(text: &str) -> String {
    format!("<![CDATA[{}]]>", text.replace("]]>", "]]]]><![CDATA[>"))
}

/// Minimal escaping for text placed outside CDATA.
fn escape_text(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// One WeChat app's message crypto context: its Token, AES key and app id.
///
/// Built once per configured app; cheap to share behind an `Arc`.
#[derive(Clone)]
pub struct MsgCrypt {
    token: String,
    key: [u8; 32],
    app_id: String,
}

impl fmt::Debug for MsgCrypt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MsgCrypt")
            .field("app_id", &self.app_id)
            .field("token", &"<redacted>")
            .field("key", &"<redacted>")
            .finish()
    }
}

impl MsgCrypt {
    /// Validate and hold an app's secrets; fails only on a malformed
    /// EncodingAESKey, so configuration errors surface at startup.
    pub fn new(token: &str, encoding_aes_key: &str, app_id: &str) -> Result<Self, CryptoError> {
        Ok(Self {
            token: token.to_owned(),
            key: decode_aes_key(encoding_aes_key)?,
            app_id: app_id.to_owned(),
        })
    }

    /// The Token, needed by callers that verify plaintext-mode signatures.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The app id every decrypted message must be addressed to.
    pub fn app_id(&self) -> &str {
        &self.app_id
    }

    /// WeChat uses the first half of the key as the CBC IV.
    fn iv(&self) -> [u8; AES_BLOCK] {
        let mut iv = [0u8; AES_BLOCK];
        iv.copy_from_slice(&self.key[..AES_BLOCK]);
        iv
    }

    fn encrypt_frame(&self, frame: &[u8]) -> Vec<u8> {
        Aes256CbcEnc::new(&self.key.into(), &self.iv().into())
            .encrypt_padded_vec_mut::<NoPadding>(frame)
    }

    fn decrypt_frame(&self, ciphertext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if ciphertext.is_empty() || !ciphertext.len().is_multiple_of(AES_BLOCK) {
            return Err(CryptoError::BadCiphertext);
        }
        Aes256CbcDec::new(&self.key.into(), &self.iv().into())
            .decrypt_padded_vec_mut::<NoPadding>(ciphertext)
            .map_err(|_| CryptoError::BadCiphertext)
    }

    /// Decrypt a safe-mode `Encrypt` payload and check it was meant for this
    /// app. Does not authenticate: call [`Self::verify_and_decrypt`] on
    /// request data, since CBC alone does not detect tampering.
    pub fn decrypt(&self, encrypt_b64: &str) -> Result<String, CryptoError> {
        let ciphertext = STANDARD
            .decode(encrypt_b64)
            .map_err(|_| CryptoError::BadBase64)?;
        let padded = self.decrypt_frame(&ciphertext)?;
        let frame = strip_padding(&padded)?;

        let len_bytes: [u8; 4] = frame
            .get(RANDOM_LEN..HEADER_LEN)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .ok_or(CryptoError::BadLength)?;
        let msg_len =
            usize::try_from(u32::from_be_bytes(len_bytes)).map_err(|_| CryptoError::BadLength)?;
        let msg_end = HEADER_LEN
            .checked_add(msg_len)
            .ok_or(CryptoError::BadLength)?;
        let message = frame
            .get(HEADER_LEN..msg_end)
            .ok_or(CryptoError::BadLength)?;
        let app_id = frame.get(msg_end..).ok_or(CryptoError::BadLength)?;

        if app_id != self.app_id.as_bytes() {
            return Err(CryptoError::AppIdMismatch);
        }
        String::from_utf8(message.to_vec()).map_err(|_| CryptoError::NotUtf8)
    }

    /// Encrypt a reply for safe mode. `random` is the 16-byte prefix WeChat's
    /// format requires; take it from a CSPRNG in production and fix it only
    /// in tests.
    pub fn encrypt(&self, plaintext: &str, random: [u8; 16]) -> String {
        let message = plaintext.as_bytes();
        let app_id = self.app_id.as_bytes();
        let body_len = HEADER_LEN + message.len() + app_id.len();
        let pad = PAD_BLOCK - body_len % PAD_BLOCK;

        let mut frame = Vec::with_capacity(body_len + pad);
        frame.extend_from_slice(&random);
        // WeChat bodies are bounded far below 4 GiB; saturate rather than
        // wrap if that ever stops being true (decryption then fails loudly).
        let len_field = u32::try_from(message.len()).unwrap_or(u32::MAX);
        frame.extend_from_slice(&len_field.to_be_bytes());
        frame.extend_from_slice(message);
        frame.extend_from_slice(app_id);
        // `pad` is in 1..=32, so the cast cannot truncate.
        frame.resize(body_len + pad, pad as u8);

        STANDARD.encode(self.encrypt_frame(&frame))
    }

    /// Authenticate a safe-mode callback by its `msg_signature` (in constant
    /// time) before touching the ciphertext, then decrypt it.
    pub fn verify_and_decrypt(
        &self,
        msg_signature: &str,
        timestamp: &str,
        nonce: &str,
        encrypt_b64: &str,
    ) -> Result<String, CryptoError> {
        let expected = self::msg_signature(&self.token, timestamp, nonce, encrypt_b64);
        if !signatures_match(&expected, msg_signature) {
            return Err(CryptoError::BadSignature);
        }
        self.decrypt(encrypt_b64)
    }

    /// Build the complete safe-mode reply body WeChat expects: the encrypted
    /// reply plus the signature, timestamp and nonce it was signed with.
    pub fn encrypt_reply(
        &self,
        reply_xml: &str,
        timestamp: &str,
        nonce: &str,
        random: [u8; 16],
    ) -> String {
        let encrypt = self.encrypt(reply_xml, random);
        let signature = msg_signature(&self.token, timestamp, nonce, &encrypt);
        format!(
            "<xml><Encrypt>{}</Encrypt><MsgSignature>{}</MsgSignature>\
             <TimeStamp>{}</TimeStamp><Nonce>{}</Nonce></xml>",
            cdata(&encrypt),
            cdata(&signature),
            escape_text(timestamp),
            cdata(nonce),
        )
    }
}

/// Remove WeChat's 32-byte PKCS#7 padding, checking every pad byte.
fn strip_padding(padded: &[u8]) -> Result<&[u8], CryptoError> {
    let &last = padded.last().ok_or(CryptoError::BadPadding)?;
    let pad = usize::from(last);
    if !(1..=PAD_BLOCK).contains(&pad) || pad > padded.len() {
        return Err(CryptoError::BadPadding);
    }
    let (frame, padding) = padded.split_at(padded.len() - pad);
    if padding.iter().any(|&b| b != last) {
        return Err(CryptoError::BadPadding);
    }
    Ok(frame)
}

#[cfg(test)]
#[path = "crypto_tests.rs"]
mod tests;
