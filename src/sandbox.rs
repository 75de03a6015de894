//! Sandbox mode: `cargo run` with no configuration gives a working wxunion with a simulated
//! WeChat, demo apps and a demo API key, and says so loudly.

use std::net::SocketAddr;

use secrecy::SecretString;

use crate::domain::{AppConfig, AppKind, TokenEndpoint};

use crate::config::{ApiKey, Config, sha256_hex};

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

/// Adds the demo apps and key where the configuration has none.
pub fn fill_in(config: &mut Config) {
    if config.apps.is_empty() {
        config.apps = demo_apps();
    }
    if config.api_keys.is_empty() {
        config.api_keys.push(ApiKey {
            name: "sandbox".into(),
            sha256_hex: sha256_hex(DEMO_API_KEY),
        });
    }
}

/// The start-up banner: what this is, where GraphiQL is, and how to get a login code.
pub fn banner(config: &Config, listen: SocketAddr, sim: SocketAddr) -> String {
    let mut apps = String::new();
    for a in &config.apps {
        apps.push_str(&format!(
            "     {}  {:<17} open platform {}\n",
            a.app_id,
            a.kind.as_str(),
            a.open_platform.as_deref().unwrap_or("-")
        ));
    }
    let line = "=".repeat(78);
    let (mp, oa, key) = (DEMO_MINI_PROGRAM, DEMO_OFFICIAL_ACCOUNT, DEMO_API_KEY);
    let json = "-H 'content-type: application/json'";
    [
        String::new(),
        line.clone(),
        "  wxunion SANDBOX MODE: simulated WeChat, demo apps, NOT FOR PRODUCTION".to_owned(),
        line.clone(),
        format!("  database   {}", config.database_url),
        "  cache      in-process".to_owned(),
        format!("  GraphiQL   http://{listen}/graphql"),
        format!("  simulator  http://{sim}/sim"),
        "  demo apps".to_owned(),
        apps.trim_end().to_owned(),
        format!("  service API key (user, resolveOpenId):  Authorization: Bearer {key}"),
        String::new(),
        "  1. mint a login code for person \"alice\" in a demo mini program:".to_owned(),
        format!("     curl -s -X POST http://{sim}/sim/code {json} -d '{{\"app_id\":\"{mp}\",\"person\":\"alice\"}}'"),
        "  2. open GraphiQL and run:".to_owned(),
        format!("     mutation {{ loginWithCode(appId: \"{mp}\", code: \"<code>\") {{ sessionToken isNewUser user {{ id unionId identities {{ appId openId }} }} }} }}"),
        "  3. make alice follow the official account (posted to the callback in safe mode):".to_owned(),
        format!("     curl -s -X POST http://{sim}/sim/follow {json} -d '{{\"app_id\":\"{oa}\",\"person\":\"alice\"}}'"),
        line,
    ]
    .join("\n")
}
