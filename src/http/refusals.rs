//! Refused callbacks, logged at `warn` so that a console misconfiguration (a wrong Token or
//! EncodingAESKey, plaintext mode for an account with a key, a wrong appId in the URL) shows at
//! the default log level, but at most once a minute per (app, reason): WeChat retries, and a
//! misconfigured account sends every message, so one line a minute says it all.
//!
//! The memory is bounded: appIds that are not configured come from the URL, so anyone can make
//! up new ones. Past [`MAX_KEYS`] remembered (app, reason) pairs, stale ones are forgotten and,
//! if that is not enough, every new app shares one `(other apps)` entry per reason.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// At most one line per (app, reason) this often.
pub const EVERY: Duration = Duration::from_secs(60);
/// (app, reason) pairs remembered at most (plus one overflow entry per reason).
pub const MAX_KEYS: usize = 1024;
/// The app named in the log when the memory is full of other apps.
pub const OTHER_APPS: &str = "(other apps)";

/// When a pair was last logged, and how many refusals were not logged since.
#[derive(Debug, Clone, Copy)]
struct Seen {
    logged_at: Instant,
    suppressed: u64,
}

/// The rate limiter behind the warn lines; one per running service.
#[derive(Debug, Default)]
pub struct RefusalLog {
    seen: Mutex<HashMap<(String, &'static str), Seen>>,
}

impl RefusalLog {
    pub fn new() -> RefusalLog {
        RefusalLog::default()
    }

    /// Logs a refusal of `app` (as it should appear in the log) for `reason` at `now`, unless
    /// the same pair was logged less than a minute before.
    pub fn note(&self, app: &str, reason: &'static str, status: u16, now: Instant) {
        let Some((app, suppressed)) = self.admit(app, reason, now) else {
            return;
        };
        let hint = hint(reason);
        tracing::warn!(
            app_id = %app,
            reason,
            status,
            suppressed_since_last = suppressed,
            hint,
            "callback refused (logged at most once a minute per app and reason)"
        );
    }

    /// Whether to log now: `Some((app name to log, refusals not logged since the last line))`.
    fn admit(&self, app: &str, reason: &'static str, now: Instant) -> Option<(String, u64)> {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let mut key = (app.to_owned(), reason);
        if !seen.contains_key(&key) && seen.len() >= MAX_KEYS {
            seen.retain(|_, s| now.saturating_duration_since(s.logged_at) < EVERY);
            if seen.len() >= MAX_KEYS {
                key = (OTHER_APPS.to_owned(), reason);
            }
        }
        match seen.get_mut(&key) {
            Some(s) if now.saturating_duration_since(s.logged_at) < EVERY => {
                s.suppressed += 1;
                None
            }
            Some(s) => {
                let suppressed = s.suppressed;
                *s = Seen {
                    logged_at: now,
                    suppressed: 0,
                };
                Some((key.0, suppressed))
            }
            None => {
                let app = key.0.clone();
                seen.insert(
                    key,
                    Seen {
                        logged_at: now,
                        suppressed: 0,
                    },
                );
                Some((app, 0))
            }
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.seen.lock().map(|s| s.len()).unwrap_or_default()
    }
}

/// What an operator most likely has to fix, by reason.
fn hint(reason: &str) -> &'static str {
    match reason {
        "bad signature" | "missing msg_signature" | "bad msg_signature" => {
            "the Token in the WeChat console must equal this app's `token` in the configuration"
        }
        "this account expects encrypted messages" => {
            "the console is in plaintext mode but `encoding_aes_key` is configured: select compatible or safe mode, or remove the key"
        }
        "cannot decrypt the envelope" | "no Encrypt element" => {
            "the EncodingAESKey in the WeChat console must equal this app's `encoding_aes_key`"
        }
        "envelope is for another app" => {
            "the appId in the callback URL is not the account WeChat encrypted this message for"
        }
        "unknown app" => "the appId in the callback URL is not configured as an official account",
        _ => {
            "not a well-formed WeChat message: if this persists, something other than WeChat calls the URL"
        }
    }
}

#[cfg(test)]
mod tests {

    use crate::http::captured_log::Captured;

    use super::*;

    /// Runs `f` with the log captured at the default level (`info`); returns the log.
    fn logs_of(f: impl FnOnce()) -> String {
        let logs = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(logs.clone())
            .with_max_level(tracing::Level::INFO)
            .with_ansi(false)
            .with_target(false)
            .finish();
        tracing::subscriber::with_default(subscriber, f);
        logs.text()
    }

    const OA: &str = "wx2000000000000001";

    #[test]
    fn two_refusals_within_a_minute_are_one_warn_line() {
        let log = RefusalLog::new();
        let t0 = Instant::now();
        let text = logs_of(|| {
            log.note(OA, "bad signature", 401, t0);
            log.note(OA, "bad signature", 401, t0 + Duration::from_secs(30));
        });
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(text.contains("WARN"), "{text}");
        assert!(text.contains("callback refused"), "{text}");
        assert!(text.contains(&format!("app_id={OA}")), "{text}");
        assert!(text.contains("reason=\"bad signature\""), "{text}");
        assert!(text.contains("status=401"), "{text}");
        assert!(text.contains("`token`"), "{text}");
    }

    #[test]
    fn a_minute_later_it_is_logged_again_with_the_count_in_between() {
        let log = RefusalLog::new();
        let t0 = Instant::now();
        let text = logs_of(|| {
            log.note(OA, "bad signature", 401, t0);
            for s in 1..=3 {
                log.note(OA, "bad signature", 401, t0 + Duration::from_secs(s));
            }
            log.note(OA, "bad signature", 401, t0 + EVERY);
        });
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(lines[0].contains("suppressed_since_last=0"), "{text}");
        assert!(lines[1].contains("suppressed_since_last=3"), "{text}");
    }

    #[test]
    fn each_app_and_reason_has_its_own_minute() {
        let log = RefusalLog::new();
        let t0 = Instant::now();
        let text = logs_of(|| {
            log.note(OA, "bad signature", 401, t0);
            log.note(OA, "this account expects encrypted messages", 400, t0);
            log.note("wx2000000000000002", "bad signature", 401, t0);
            log.note(OA, "bad signature", 401, t0);
        });
        assert_eq!(text.lines().count(), 3, "{text}");
        assert!(text.contains("select compatible or safe mode"), "{text}");
    }

    #[test]
    fn made_up_app_ids_cannot_grow_the_memory_or_flood_the_log() {
        let log = RefusalLog::new();
        let t0 = Instant::now();
        let text = logs_of(|| {
            for i in 0..5 * MAX_KEYS {
                log.note(&format!("wx{i:016}"), "unknown app", 404, t0);
            }
        });
        // The first MAX_KEYS apps each got their line, then one line for all the others.
        assert_eq!(text.lines().count(), MAX_KEYS + 1);
        assert!(
            text.contains(OTHER_APPS),
            "{}",
            text.lines().last().unwrap()
        );
        assert_eq!(log.len(), MAX_KEYS + 1);
        // A minute on, stale entries make room again.
        let later = logs_of(|| log.note("wx9999999999999999", "unknown app", 404, t0 + EVERY));
        assert!(later.contains("app_id=wx9999999999999999"), "{later}");
        assert_eq!(log.len(), 1);
    }
}
