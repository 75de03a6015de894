//! Spotting an app that has stopped returning unionids: an app configured with an
//! `open_platform` whose logins keep coming back without one has most likely been unbound
//! from that platform in WeChat's console (or bound to another), and every new user it makes
//! is a stranger to the other apps.
//!
//! Each instance counts, per app, the logins in a row that came back without a unionid. At
//! [`UNBOUND_AFTER`] it logs a warning once and sets `wxunion_app_unbound_suspected{app_id}`
//! to 1; any login with a unionid resets the run (and the gauge to 0).

use std::collections::HashMap;
use std::sync::Mutex;

use crate::domain::AppConfig;

/// Logins in a row without a unionid before an app is reported.
pub const UNBOUND_AFTER: u32 = 20;

/// The per-app runs of one instance.
#[derive(Debug, Default)]
pub struct UnboundWatch {
    runs: Mutex<HashMap<String, u32>>,
}

impl UnboundWatch {
    /// Counts one login's answer; returns whether the app is suspected now. Apps without an
    /// open platform are never expected to return unionids and are not counted.
    pub fn login(&self, app: &AppConfig, with_union_id: bool) -> bool {
        if app.open_platform.is_none() {
            return false;
        }
        let (before, after) = {
            let mut runs = self.runs.lock().unwrap_or_else(|e| e.into_inner());
            let run = runs.entry(app.app_id.clone()).or_insert(0);
            let before = *run;
            *run = if with_union_id {
                0
            } else {
                run.saturating_add(1)
            };
            (before, *run)
        };
        let suspected = after >= UNBOUND_AFTER;
        if suspected && before < UNBOUND_AFTER {
            tracing::warn!(
                app_id = %app.app_id,
                open_platform = app.open_platform.as_deref().unwrap_or_default(),
                logins = after,
                "app returned no unionid for its last {UNBOUND_AFTER} logins although it has an \
                 open_platform: is it still bound to that open platform account?"
            );
        } else if !suspected && before >= UNBOUND_AFTER {
            tracing::info!(app_id = %app.app_id, "app returns unionids again");
        }
        metrics::gauge!("wxunion_app_unbound_suspected", "app_id" => app.app_id.clone())
            .set(if suspected { 1.0 } else { 0.0 });
        suspected
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(open_platform: Option<&str>) -> AppConfig {
        AppConfig {
            app_id: "wx1000000000000001".into(),
            secret: "s".to_owned().into(),
            kind: crate::domain::AppKind::MiniProgram,
            open_platform: open_platform.map(str::to_owned),
            token: None,
            encoding_aes_key: None,
            token_endpoint: Default::default(),
            subscribe_reply: None,
        }
    }

    #[test]
    fn twenty_logins_in_a_row_without_unionid_are_reported_until_one_has_it() {
        let watch = UnboundWatch::default();
        let bound = app(Some("acme"));
        for i in 1..UNBOUND_AFTER {
            assert!(!watch.login(&bound, false), "login {i}");
        }
        assert!(watch.login(&bound, false));
        assert!(watch.login(&bound, false));
        assert!(!watch.login(&bound, true));
        assert!(!watch.login(&bound, false));
    }

    #[test]
    fn a_login_with_unionid_restarts_the_count() {
        let watch = UnboundWatch::default();
        let bound = app(Some("acme"));
        for _ in 1..UNBOUND_AFTER {
            watch.login(&bound, false);
        }
        watch.login(&bound, true);
        for _ in 1..UNBOUND_AFTER {
            assert!(!watch.login(&bound, false));
        }
    }

    #[test]
    fn apps_without_open_platform_are_not_counted() {
        let watch = UnboundWatch::default();
        let unbound = app(None);
        for _ in 0..(2 * UNBOUND_AFTER) {
            assert!(!watch.login(&unbound, false));
        }
    }
}
