//! Writes pre-signed safe-mode (`encrypt_type=aes`) official-account callbacks for
//! `bench/callback.lua`, one request per line: `<path?query>\t<body>`.
//!
//! Every request is distinct (and has a fresh nonce and random AES prefix), so wxunion's
//! dedupe never short-circuits: each one is verified, decrypted, parsed and inserted as a new
//! `jobs` row. `--kind text` (the default) writes text messages with distinct MsgIds from
//! `--users` followers; `--kind subscribe` writes `subscribe` events, each from a follower of
//! its own (a first sighting for the workers: an identity to create and a unionid to look up). The signatures use the same functions
//! wxunion verifies with, exactly as the simulator's `sim/push.rs` builds them.
//!
//! Usage:
//! `bench_requests --out FILE --count N --app-id wx... --token T --aes-key <43 chars>
//! [--users U] [--seq-start S] [--kind text|subscribe]`

use std::io::{BufWriter, Write};
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Parser;
use rand::Rng;
use wxunion::wechat::crypto::{MsgCrypt, msg_signature, signature};
use wxunion::wechat::message::{encrypted_envelope_xml, event_xml, text_xml};

#[derive(Parser)]
struct Args {
    /// Where to write the requests.
    #[arg(long)]
    out: PathBuf,
    /// How many requests.
    #[arg(long, default_value_t = 200_000)]
    count: u64,
    #[arg(long, default_value = "wxbe0c4a11b1e0c4a1")]
    app_id: String,
    #[arg(long, default_value = "benchtoken")]
    token: String,
    #[arg(long, default_value = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG")]
    aes_key: String,
    /// Distinct followers the messages come from (openid = message index modulo this).
    #[arg(long, default_value_t = 10_000)]
    users: u64,
    /// Index of the first message; give a second file a start past the first file's count
    /// (e.g. a warm-up file) so the two never share a MsgId.
    #[arg(long, default_value_t = 0)]
    seq_start: u64,
    /// `text` messages, or `subscribe` events of distinct followers.
    #[arg(long, default_value = "text")]
    kind: String,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.users == 0 {
        bail!("--users must be at least 1");
    }
    let subscribe = match args.kind.as_str() {
        "text" => false,
        "subscribe" => true,
        other => bail!("--kind is text or subscribe, not {other}"),
    };
    let mc = MsgCrypt::new(&args.token, &args.aes_key, &args.app_id)
        .context("bad token / EncodingAESKey / app id")?;
    let to = format!("gh_{}", &args.app_id[2..14.min(args.app_id.len())]);
    let now = chrono::Utc::now().timestamp();
    // Distinct across runs as well as within one: seconds since the epoch, times a million.
    let msg_id_base = (now as u64) * 1_000_000;
    let mut rng = rand::rng();
    let file = std::fs::File::create(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    for i in args.seq_start..args.seq_start + args.count {
        let msg_id = msg_id_base + i;
        let (open_id, plain) = if subscribe {
            // Distinct across runs too: the follower's openid carries the MsgId-like number.
            let open_id = format!("oBenchSub{msg_id:019}");
            let plain = event_xml(&to, &open_id, now, "subscribe", None);
            (open_id, plain)
        } else {
            let open_id = format!("oBench{:010}", i % args.users);
            let plain = text_xml(&to, &open_id, now, &format!("bench message {i}"), msg_id);
            (open_id, plain)
        };
        let encrypt = mc.encrypt(&plain, rng.random());
        let timestamp = now.to_string();
        let nonce = rng.random_range(100_000_000u64..999_999_999).to_string();
        let sig = signature(&args.token, &timestamp, &nonce);
        let msg_sig = msg_signature(&args.token, &timestamp, &nonce, &encrypt);
        // All values are hex, digits, base64-free ids: nothing needs percent-encoding.
        let path = format!(
            "/wechat/callback/{}?signature={sig}&timestamp={timestamp}&nonce={nonce}\
             &openid={open_id}&encrypt_type=aes&msg_signature={msg_sig}",
            args.app_id
        );
        let body = encrypted_envelope_xml(&to, &encrypt);
        for (what, s) in [("path", &path), ("body", &body)] {
            if s.contains(['\t', '\n', '\r']) {
                bail!("request {i}: the {what} contains a tab or newline: {s:?}");
            }
        }
        writeln!(out, "{path}\t{body}")?;
    }
    out.flush()?;
    eprintln!(
        "wrote {} safe-mode callbacks for {} ({} users) to {}",
        args.count,
        args.app_id,
        args.users,
        args.out.display()
    );
    Ok(())
}
