//! What sandbox mode adds to a configuration that lacks it, before validation: demo apps and a
//! demo API key.

use secrecy::SecretString;

use crate::domain::{AppConfig, AppKind, TokenEndpoint};

/// The demo mini program most examples use.
pub const DEMO_MINI_PROGRAM: &str = "wxacme000000000mp1";
/// The demo official account (safe mode).
pub const DEMO_OFFICIAL_ACCOUNT: &str = "wxacme000000000oa1";
/// The sandbox's service API key; only ever configured in sandbox mode.
pub const DEMO_API_KEY: &str = "sandbox-service-key-not-a-secret";

fn app(app_id: &str, kind: AppKind, platform: &str, oa: bool) -> AppConfig {
    AppConfig {
        app_id: app_id.to_owned(),
        secret: SecretString::from(format!("sandbox-secret-{app_id}")),
        kind,
        open_platform: Some(platform.to_owned()),
        token: oa.then(|| SecretString::from("sandbox-callback-token")),
        encoding_aes_key: oa
            .then(|| SecretString::from("abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG")),
        token_endpoint: TokenEndpoint::Stable,
        subscribe_reply: oa.then(|| {
            "Welcome! This account shares one identity with the acme mini programs.".to_owned()
        }),
    }
}

/// Two mini programs and an official account under open platform `acme`, and one mini
/// program under `globex`.
pub fn demo_apps() -> Vec<AppConfig> {
    vec![
        app(DEMO_MINI_PROGRAM, AppKind::MiniProgram, "acme", false),
        app("wxacme000000000mp2", AppKind::MiniProgram, "acme", false),
        app(
            DEMO_OFFICIAL_ACCOUNT,
            AppKind::OfficialAccount,
            "acme",
            true,
        ),
        app("wxglobex0000000mp1", AppKind::MiniProgram, "globex", false),
    ]
}
