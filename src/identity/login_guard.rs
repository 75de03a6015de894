//! What a login must pass before its code is sent to WeChat: a configured app, the rate
//! limits, a database that answers. A code is single use: every check that can fail is made
//! before WeChat sees the code, so that a refused login leaves the code usable.
//!
//! **Rate limits.** `login_rate_per_client` calls per minute per client address (IPv6 by
//! /64) and `login_rate_per_app` calls per second per app, counted in fixed windows
//! ([`crate::domain::rate`]) shared by every instance through the cache: both counters in one
//! round trip, the app's only counted for calls the client's limit let through (one noisy
//! client cannot use up everyone's budget). When the cache fails, this instance counts on its
//! own for the moment (each instance then allows the limit). 0 turns a limit off; with both
//! off nothing is counted at all.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use crate::domain::rate::{self, Counter};
use crate::domain::throttle::Throttle;
use secrecy::{ExposeSecret, SecretString};

use crate::domain::{AppConfig, AppId, AppKind, Error, LoginCode, OpenId, Result};

use super::{Login, Service};

/// The client window: a minute.
const CLIENT_WINDOW: Duration = Duration::from_secs(60);
/// The app window: a second.
const APP_WINDOW: Duration = Duration::from_secs(1);
/// Counters the in-process fallback keeps at most; past it, new client addresses are let
/// through uncounted until old windows end (the app counters, few, are always kept).
const MAX_LOCAL_COUNTERS: usize = 65_536;

/// The in-process counters used while the cache fails, and the throttles of the warnings
/// about the cache on the login path.
pub struct LoginGuard {
    local: Mutex<HashMap<String, Counter>>,
    warned: Mutex<Throttle>,
    session_key_warned: Mutex<Throttle>,
}

impl Default for LoginGuard {
    fn default() -> Self {
        LoginGuard {
            local: Mutex::new(HashMap::new()),
            warned: Mutex::new(Throttle::new(Duration::from_secs(60))),
            session_key_warned: Mutex::new(Throttle::new(Duration::from_secs(60))),
        }
    }
}

/// An error as the log should show it: an internal one with its cause.
fn cause(e: &Error) -> String {
    match e {
        Error::Internal(c) => format!("{c:#}"),
        other => other.to_string(),
    }
}

/// Whether to log now, by a throttle behind a mutex.
fn due(throttle: &Mutex<Throttle>) -> Option<u64> {
    throttle
        .lock()
        .map(|mut t| t.note(std::time::Instant::now()))
        .unwrap_or(None)
}

/// Which limit a call passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    Client,
    App,
}

impl Scope {
    fn label(self) -> &'static str {
        match self {
            Scope::Client => "client",
            Scope::App => "app",
        }
    }
}

/// One counter a call is counted in.
struct Limit {
    scope: Scope,
    key: String,
    window: Duration,
    limit: u64,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The counters a login is counted in, in order: the client's, then the app's.
fn limits(
    per_client: u64,
    per_app: u64,
    app_id: &str,
    client: Option<IpAddr>,
    now_ms: u64,
) -> Vec<Limit> {
    let mut out = Vec::with_capacity(2);
    if per_client > 0
        && let Some(ip) = client
    {
        let key = crate::domain::client_addr::rate_key(ip);
        let window = rate::window_start(now_ms, ms(CLIENT_WINDOW));
        out.push(Limit {
            scope: Scope::Client,
            key: format!("login-rate:client:{key}:{window}"),
            window: CLIENT_WINDOW,
            limit: per_client,
        });
    }
    if per_app > 0 {
        let window = rate::window_start(now_ms, ms(APP_WINDOW));
        out.push(Limit {
            scope: Scope::App,
            key: format!("login-rate:app:{app_id}:{window}"),
            window: APP_WINDOW,
            limit: per_app,
        });
    }
    out
}

/// The first limit the counts pass, if any.
fn exceeded<'a>(limits: &'a [Limit], counts: &[i64]) -> Option<&'a Limit> {
    limits
        .iter()
        .zip(counts)
        .find(|(l, n)| !rate::allowed(u64::try_from(**n).unwrap_or(0), l.limit))
        .map(|(l, _)| l)
}

impl LoginGuard {
    /// Counts in process memory, like the cache's `count_in_windows`.
    fn count_locally(&self, limits: &[Limit], now_ms: u64) -> Vec<i64> {
        let Ok(mut map) = self.local.lock() else {
            return Vec::new();
        };
        if map.len() >= MAX_LOCAL_COUNTERS {
            map.retain(|k, c| {
                let len = if k.starts_with("login-rate:app:") {
                    APP_WINDOW
                } else {
                    CLIENT_WINDOW
                };
                !c.expired(now_ms, ms(len))
            });
        }
        let mut out = Vec::with_capacity(limits.len());
        for l in limits {
            let full = map.len() >= MAX_LOCAL_COUNTERS && !map.contains_key(&l.key);
            if full && l.scope == Scope::Client {
                out.push(1);
                continue;
            }
            let c = Counter::hit(map.get(&l.key).copied(), now_ms, ms(l.window));
            map.insert(l.key.clone(), c);
            out.push(i64::try_from(c.count).unwrap_or(i64::MAX));
            if !rate::allowed(c.count, l.limit) {
                break;
            }
        }
        out
    }

    fn warn_fallback(&self, e: &Error) {
        metrics::counter!("wxunion_login_rate_fallback_total").increment(1);
        if let Some(held) = due(&self.warned) {
            tracing::warn!(
                error = cause(e),
                fallbacks_not_logged = held,
                "cache unavailable: login rate limits counted by this instance alone (logged at most once a minute)"
            );
        }
    }
}

impl Service {
    /// `loginWithCode` as the API serves it: the app, the rate limits for `client` (the
    /// caller's address; `None` in process, where only the app's limit applies) and the
    /// database are checked before the code goes to WeChat.
    pub async fn login_with_code_from(
        &self,
        app_id: &AppId,
        code: &LoginCode,
        client: Option<IpAddr>,
    ) -> Result<Login> {
        let app = self.app(app_id, &AppKind::ALL)?;
        self.check_login_rate(app, client).await?;
        self.database_ready().await?;
        self.login_with_code(app_id, code).await
    }

    /// Whether the login path should use the cache now: not while a Redis command failed
    /// less than a second ago (the login goes on without it instead of waiting).
    pub(super) fn cache_usable(&self, what: &'static str) -> bool {
        let usable = !self.cache.degraded();
        if !usable {
            metrics::counter!("wxunion_cache_skipped_total", "use" => what).increment(1);
        }
        usable
    }

    /// Keeps a mini program's session key in the cache for the session's lifetime. When the
    /// cache fails (or failed less than a second ago) the login goes on (WeChat has used the
    /// code) and this key is lost: counted, and logged at most once a minute.
    pub(super) async fn keep_session_key(
        &self,
        app: &AppConfig,
        open_id: &OpenId,
        session_key: &SecretString,
    ) {
        let stored = if self.cache_usable("login_key") {
            let ttl = Duration::from_secs(self.config.session_ttl_seconds);
            self.cache
                .set(
                    &format!("session_key:{}:{}", app.app_id, open_id),
                    session_key.expose_secret(),
                    ttl,
                )
                .await
        } else {
            Err(Error::internal(anyhow::anyhow!(
                "Redis failed less than a second ago"
            )))
        };
        if let Err(e) = stored {
            metrics::counter!("wxunion_login_keys_not_cached_total").increment(1);
            if let Some(held) = due(&self.login_guard.session_key_warned) {
                tracing::warn!(
                    error = cause(&e),
                    not_logged = held,
                    "cache unavailable: logins go on without keeping the session key (logged at most once a minute)"
                );
            }
        }
    }

    /// `RATE_LIMITED` when this login passes one of the limits.
    async fn check_login_rate(&self, app: &AppConfig, client: Option<IpAddr>) -> Result<()> {
        let (per_client, per_app) = (
            self.config.login_rate_per_client,
            self.config.login_rate_per_app,
        );
        if per_client == 0 && per_app == 0 {
            return Ok(());
        }
        let now_ms = u64::try_from(self.clock.now().timestamp_millis()).unwrap_or(0);
        let limits = limits(per_client, per_app, &app.app_id, client, now_ms);
        if limits.is_empty() {
            return Ok(());
        }
        let counters: Vec<(String, Duration, u64)> = limits
            .iter()
            .map(|l| (l.key.clone(), l.window, l.limit))
            .collect();
        let shared = if self.cache_usable("login_rate") {
            self.cache.count_in_windows(&counters).await
        } else {
            Err(Error::internal(anyhow::anyhow!(
                "Redis failed less than a second ago"
            )))
        };
        let counts = match shared {
            Ok(counts) => counts,
            Err(e) => {
                self.login_guard.warn_fallback(&e);
                self.login_guard.count_locally(&limits, now_ms)
            }
        };
        match exceeded(&limits, &counts) {
            None => Ok(()),
            Some(l) => {
                metrics::counter!("wxunion_login_rate_limited_total", "scope" => l.scope.label())
                    .increment(1);
                let retry_ms = rate::until_next_window(now_ms, ms(l.window));
                Err(Error::RateLimited {
                    errcode: None,
                    errmsg: Some(format!(
                        "too many logins {}; retry in {} s",
                        match l.scope {
                            Scope::Client => "from this address",
                            Scope::App => "for this app",
                        },
                        retry_ms.div_ceil(1_000)
                    )),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn a_login_is_counted_per_client_and_per_app_in_aligned_windows_and_zero_is_off() {
        let now = 1_700_000_012_345;
        let keys = |l: Vec<Limit>| l.into_iter().map(|l| l.key).collect::<Vec<_>>();
        let app = "wx1000000000000001";
        assert_eq!(
            keys(limits(60, 1000, app, ip("1.2.3.4"), now)),
            [
                "login-rate:client:1.2.3.4:1699999980000",
                "login-rate:app:wx1000000000000001:1700000012000"
            ]
        );
        assert_eq!(
            keys(limits(60, 0, app, ip("2001:db8::1"), now)),
            ["login-rate:client:2001:db8::/64:1699999980000"]
        );
        // No address (in process): only the app's limit.
        assert_eq!(
            keys(limits(60, 1000, app, None, now)),
            ["login-rate:app:wx1000000000000001:1700000012000"]
        );
        assert!(limits(0, 0, app, ip("1.2.3.4"), now).is_empty());
    }

    #[test]
    fn the_first_limit_passed_is_the_one_reported() {
        let now = 0;
        let l = limits(2, 3, "wx1000000000000001", ip("1.2.3.4"), now);
        let cases: &[(&[i64], Option<Scope>)] = &[
            (&[1, 1], None),
            (&[2, 3], None),
            (&[3], Some(Scope::Client)),
            (&[2, 4], Some(Scope::App)),
            (&[], None),
        ];
        for (counts, want) in cases {
            assert_eq!(exceeded(&l, counts).map(|l| l.scope), *want, "{counts:?}");
        }
    }

    #[test]
    fn counting_locally_stops_at_the_client_limit_without_using_the_apps_budget() {
        let limiter = LoginGuard::default();
        let now = 120_000;
        let l = limits(2, 100, "wx1000000000000001", ip("1.2.3.4"), now);
        assert_eq!(limiter.count_locally(&l, now), [1, 1]);
        assert_eq!(limiter.count_locally(&l, now), [2, 2]);
        // Over the client's limit: the app's counter is left alone.
        assert_eq!(limiter.count_locally(&l, now), [3]);
        assert_eq!(limiter.count_locally(&l, now), [4]);
        let other = limits(2, 100, "wx1000000000000001", ip("5.6.7.8"), now);
        assert_eq!(limiter.count_locally(&other, now), [1, 3]);
        // The next minute starts over.
        let later = now + 60_000;
        let l = limits(2, 100, "wx1000000000000001", ip("1.2.3.4"), later);
        assert_eq!(limiter.count_locally(&l, later), [1, 1]);
    }
}
