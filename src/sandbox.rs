//! Sandbox mode: `cargo run` with no configuration gives a working wxunion with a simulated
//! WeChat, demo apps and a demo API key, and says so loudly.

use std::net::SocketAddr;

use crate::config::Config;

pub use crate::config::demo::{DEMO_API_KEY, DEMO_MINI_PROGRAM, DEMO_OFFICIAL_ACCOUNT, demo_apps};

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
