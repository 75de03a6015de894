#!/usr/bin/env python3
"""Generate wechat_crypto.json: test vectors for src/wechat/crypto.rs.

This is an implementation of WeChat's WXBizMsgCrypt scheme that is
independent of the Rust code (Python `cryptography` + `hashlib`), so the
Rust unit tests compare two implementations rather than one with itself.
Two cases are additionally pinned to the ciphertexts published in WeChat's
official Java sample (WXBizMsgCryptTest.testAesEncrypt / testAesEncrypt2),
which checks this script against WeChat itself.

Deterministic: every key and random prefix is fixed or derived from a fixed
label, so re-running produces a byte-identical file.

    python3 tests/vectors/gen_wechat_crypto.py
"""

import base64
import hashlib
import json
import os
import struct

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "wechat_crypto.json")

BLOCK = 32  # WeChat pads to 32 bytes, not the AES block size of 16.

DOC_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
DOC_TOKEN = "pamtest"
DOC_APP_ID = "wxb11529c136998cb6"
DOC_TIMESTAMP = "1409304348"
DOC_NONCE = "xxxxxx"
DOC_RANDOM = b"aaaabbbbccccdddd"

# Published in WeChat's official Java sample (WXBizMsgCryptTest).
OFFICIAL_MSG_1 = "我是中文abcd123"
OFFICIAL_ENC_1 = (
    "jn1L23DB+6ELqJ+6bruv21Y6MD7KeIfP82D6gU39rmkgczbWwt5+3bnyg5K55bgVtVzd832WzZGMhkP72vVOfg=="
)
OFFICIAL_MSG_2 = (
    "<xml><ToUserName><![CDATA[oia2Tj我是中文jewbmiOUlr6X-1crbLOvLw]]></ToUserName>"
    "<FromUserName><![CDATA[gh_7f083739789a]]></FromUserName>"
    "<CreateTime>1407743423</CreateTime><MsgType><![CDATA[video]]></MsgType>"
    "<Video><MediaId><![CDATA[eYJ1MbwPRJtOvIEabaxHs7TX2D-HV71s79GUxqdUkjm6Gs2Ed1KF3ulAOA9H1xG0]]></MediaId>"
    "<Title><![CDATA[testCallBackReplyVideo]]></Title>"
    "<Description><![CDATA[testCallBackReplyVideo]]></Description></Video></xml>"
)
OFFICIAL_ENC_2 = (
    "jn1L23DB+6ELqJ+6bruv23M2GmYfkv0xBh2h+XTBOKVKcgDFHle6gqcZ1cZrk3e1qjPQ1F4RsLWzQRG9udbKWesxlkupqcEcW7ZQ"
    "weImX9+wLMa0GaUzpkycA8+IamDBxn5loLgZpnS7fVAbExOkK5DYHBmv5tptA9tklE/fTIILHR8HLXa5nQvFb3tYPKAlHF3rtTea"
    "yNf0QuM+UW/wM9enGIDIJHF7CLHiDNAYxr+r+OrJCmPQyTy8cVWlu9iSvOHPT/77bZqJucQHQ04sq7KZI27OcqpQNSto2OdHCoTc"
    "cjggX5Z9Mma0nMJBU+jLKJ38YB1fBIz+vBzsYjrTmFQ44YfeEuZ+xRTQwr92vhA9OxchWVINGC50qE/6lmkwWTwGX9wtQpsJKhP+"
    "oS7rvTY8+VdzETdfakjkwQ5/Xka042OlUb1/slTwo4RscuQ+RdxSGvDahxAJ6+EAjLt9d8igHngxIbf6YyqqROxuxqIeIch3CssH"
    "/LqRs+iAcILvApYZckqmA7FNERspKA5f8GoJ9sv8xmGvZ9Yrf57cExWtnX8aCMMaBropU/1k+hKP5LVdzbWCG0hGwx/dQudYR/eX"
    "p3P0XxjlFiy+9DMlaFExWUZQDajPkdPrEeOwofJb"
)


def derived(label: str, n: int) -> bytes:
    """Deterministic pseudo-random bytes for a label."""
    return hashlib.sha256(label.encode()).digest()[:n]


def key_from_label(label: str) -> str:
    """A 43-character EncodingAESKey for 32 derived bytes."""
    enc = base64.b64encode(derived("key:" + label, 32)).decode()
    assert enc.endswith("=") and len(enc) == 44
    return enc[:-1]


def aes_key(encoding_aes_key: str) -> bytes:
    # binascii ignores non-zero trailing bits, as WeChat's keys need.
    key = base64.b64decode(encoding_aes_key + "=")
    assert len(key) == 32
    return key


def sha1_sorted(*parts: str) -> str:
    return hashlib.sha1("".join(sorted(parts)).encode()).hexdigest()


def encrypt(encoding_aes_key: str, app_id: str, random: bytes, plaintext: str) -> tuple[str, int]:
    key = aes_key(encoding_aes_key)
    msg = plaintext.encode("utf-8")
    body = random + struct.pack(">I", len(msg)) + msg + app_id.encode()
    pad = BLOCK - len(body) % BLOCK
    body += bytes([pad]) * pad
    enc = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
    ct = enc.update(body) + enc.finalize()
    return base64.b64encode(ct).decode(), pad


def decrypt(encoding_aes_key: str, app_id: str, b64: str) -> str:
    key = aes_key(encoding_aes_key)
    dec = Cipher(algorithms.AES(key), modes.CBC(key[:16])).decryptor()
    pt = dec.update(base64.b64decode(b64)) + dec.finalize()
    pad = pt[-1]
    assert 1 <= pad <= BLOCK and pt[-pad:] == bytes([pad]) * pad
    pt = pt[:-pad]
    (n,) = struct.unpack(">I", pt[16:20])
    assert pt[20 + n :].decode() == app_id
    return pt[20 : 20 + n].decode("utf-8")


def aligned_message(app_id: str) -> str:
    """A message whose framed length is a multiple of 32 (forces a full pad block)."""
    base = "<xml><Content><![CDATA[aligned]]></Content></xml>"
    framed = 16 + 4 + len(base.encode()) + len(app_id.encode())
    return base + "x" * ((-framed) % BLOCK)


def case(name, token, timestamp, nonce, encoding_aes_key, app_id, random, plaintext, expect_encrypt=None, expect_pad=None):
    encrypted, pad = encrypt(encoding_aes_key, app_id, random, plaintext)
    if expect_encrypt is not None:
        assert encrypted == expect_encrypt, f"{name}: does not match WeChat's published ciphertext"
    if expect_pad is not None:
        assert pad == expect_pad, f"{name}: pad {pad}, wanted {expect_pad}"
    assert decrypt(encoding_aes_key, app_id, encrypted) == plaintext
    return {
        "name": name,
        "token": token,
        "timestamp": timestamp,
        "nonce": nonce,
        "encoding_aes_key": encoding_aes_key,
        "app_id": app_id,
        "random": random.hex(),
        "plaintext": plaintext,
        "pad": pad,
        "encrypt": encrypted,
        "signature": sha1_sorted(token, timestamp, nonce),
        "msg_signature": sha1_sorted(token, timestamp, nonce, encrypted),
    }


def main():
    # The doc key's last character 'G' carries non-zero trailing bits.
    assert (base64.b64decode("AAAG") != base64.b64decode("AAAA"))
    cases = [
        case("official sample, short Chinese text", DOC_TOKEN, DOC_TIMESTAMP, DOC_NONCE, DOC_KEY, DOC_APP_ID,
             DOC_RANDOM, OFFICIAL_MSG_1, expect_encrypt=OFFICIAL_ENC_1),
        case("official sample, video reply xml", DOC_TOKEN, DOC_TIMESTAMP, DOC_NONCE, DOC_KEY, DOC_APP_ID,
             DOC_RANDOM, OFFICIAL_MSG_2, expect_encrypt=OFFICIAL_ENC_2),
        case("subscribe event, derived key", "wxunionToken1", "1700000000", "n0nce123",
             key_from_label("a"), "wx0123456789abcdef", derived("random:a", 16),
             "<xml><ToUserName><![CDATA[gh_123]]></ToUserName><FromUserName><![CDATA[oOPENID_a-1]]></FromUserName>"
             "<CreateTime>1700000000</CreateTime><MsgType><![CDATA[event]]></MsgType>"
             "<Event><![CDATA[subscribe]]></Event><EventKey><![CDATA[qrscene_42]]></EventKey></xml>"),
        case("text message with Chinese and emoji", "另一个token", "1712345678", "abc",
             key_from_label("b"), "wxfedcba9876543210", derived("random:b", 16),
             "<xml><ToUserName><![CDATA[gh_456]]></ToUserName><FromUserName><![CDATA[oXYZ]]></FromUserName>"
             "<CreateTime>1712345678</CreateTime><MsgType><![CDATA[text]]></MsgType>"
             "<Content><![CDATA[你好，世界 🌏 ]]]]><![CDATA[>]]></Content><MsgId>1234567890123456</MsgId></xml>"),
        case("32-byte aligned body gets a full pad block", "tok", "1", "2",
             key_from_label("c"), "wx00000000000000aa", derived("random:c", 16),
             aligned_message("wx00000000000000aa"), expect_pad=32),
        case("empty message", "t", "0", "0",
             key_from_label("d"), "wxempty", derived("random:d", 16), ""),
    ]
    with open(OUT, "w", encoding="utf-8") as f:
        json.dump({"generator": "tests/vectors/gen_wechat_crypto.py", "cases": cases}, f,
                  ensure_ascii=False, indent=2)
        f.write("\n")
    print(f"wrote {len(cases)} cases to {OUT}")


if __name__ == "__main__":
    main()
