//! Sandbox mode: `cargo run` with no configuration gives a working wxunion with a simulated
//! WeChat, demo apps and a demo API key, and says so loudly.

use std::net::SocketAddr;

use crate::config::{Config, sha256_hex};
use crate::domain::{AppConfig, AppKind};
use crate::telemetry::redact_url;

pub use crate::config::demo::{DEMO_API_KEY, DEMO_MINI_PROGRAM, DEMO_OFFICIAL_ACCOUNT, demo_apps};

/// The start-up banner: what this is, where GraphiQL is, and how to get a login code, with the
/// apps, cache and API key this instance really has (the demo ones, or a `sandbox = true`
/// file's own).
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
    let demo = is_demo(&config.apps);
    let line = "=".repeat(78);
    let json = "-H 'content-type: application/json'";
    let cache = config
        .redis_url
        .as_deref()
        .map_or_else(|| "in-process".to_owned(), redact_url);
    let demo_key = sha256_hex(DEMO_API_KEY);
    let key = if config.api_keys.iter().any(|k| k.sha256_hex == demo_key) {
        format!("  service API key (user, resolveOpenId):  Authorization: Bearer {DEMO_API_KEY}")
    } else {
        "  service API key (user, resolveOpenId):  Authorization: Bearer <one of your api_keys>"
            .to_owned()
    };
    let mut out = vec![
        String::new(),
        line.clone(),
        format!(
            "  wxunion SANDBOX MODE: simulated WeChat, {}, NOT FOR PRODUCTION",
            if demo { "demo apps" } else { "your apps" }
        ),
        line.clone(),
        format!("  database   {}", redact_url(&config.database_url)),
        format!("  cache      {cache}"),
        format!("  GraphiQL   http://{listen}/graphql"),
        format!("  simulator  http://{sim}/sim"),
        if demo { "  demo apps" } else { "  apps" }.to_owned(),
        apps.trim_end().to_owned(),
        key,
    ];
    let mut step = 0;
    let mut next = || {
        step += 1;
        step
    };
    // Every kind logs in with a code; a mini program is the usual case.
    let login = config
        .apps
        .iter()
        .find(|a| a.kind == AppKind::MiniProgram)
        .or_else(|| config.apps.first());
    if let Some(app) = login {
        let id = &app.app_id;
        out.push(String::new());
        out.push(format!(
            "  {}. mint a login code for person \"alice\" in {}:",
            next(),
            match app.kind {
                AppKind::MiniProgram => "a mini program (what wx.login gives)",
                _ => "this app (what an OAuth redirect gives)",
            }
        ));
        out.push(format!("     curl -s -X POST http://{sim}/sim/code {json} -d '{{\"app_id\":\"{id}\",\"person\":\"alice\"}}'"));
        out.push(format!("  {}. open GraphiQL and run:", next()));
        out.push(format!("     mutation {{ loginWithCode(appId: \"{id}\", code: \"<code>\") {{ sessionToken isNewUser user {{ id unionId identities {{ appId openId }} }} }} }}"));
    }
    if let Some(oa) = config
        .apps
        .iter()
        .find(|a| a.kind == AppKind::OfficialAccount)
    {
        let id = &oa.app_id;
        let mode = if oa.encoding_aes_key.is_some() {
            "safe mode"
        } else {
            "plaintext"
        };
        out.push(format!(
            "  {}. make alice follow the official account (posted to the callback in {mode}):",
            next()
        ));
        out.push(format!("     curl -s -X POST http://{sim}/sim/follow {json} -d '{{\"app_id\":\"{id}\",\"person\":\"alice\"}}'"));
    }
    out.push(line);
    out.join("\n")
}

/// Whether these are exactly the demo apps.
fn is_demo(apps: &[AppConfig]) -> bool {
    let demo = demo_apps();
    apps.len() == demo.len() && apps.iter().zip(&demo).all(|(a, d)| a.app_id == d.app_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs() -> (SocketAddr, SocketAddr) {
        (
            "127.0.0.1:8080".parse().unwrap(),
            "127.0.0.1:8081".parse().unwrap(),
        )
    }

    #[test]
    fn the_demo_banner_names_the_demo_apps_key_and_in_process_cache() {
        let config = Config::load(None, Vec::new()).unwrap();
        let (listen, sim) = addrs();
        let banner = banner(&config, listen, sim);
        assert!(
            banner.contains("SANDBOX MODE: simulated WeChat, demo apps"),
            "{banner}"
        );
        assert!(banner.contains("  cache      in-process"), "{banner}");
        assert!(banner.contains("  demo apps\n"), "{banner}");
        assert!(
            banner.contains(&format!("Bearer {DEMO_API_KEY}")),
            "{banner}"
        );
        assert!(
            banner.contains(&format!("\"app_id\":\"{DEMO_MINI_PROGRAM}\"")),
            "{banner}"
        );
        assert!(banner.contains(&format!("loginWithCode(appId: \"{DEMO_MINI_PROGRAM}\"")));
        assert!(banner.contains(&format!("\"app_id\":\"{DEMO_OFFICIAL_ACCOUNT}\"")));
        assert!(banner.contains("in safe mode"), "{banner}");
        assert!(banner.contains("http://127.0.0.1:8080/graphql"), "{banner}");
        assert!(
            banner.contains("http://127.0.0.1:8081/sim/code"),
            "{banner}"
        );
    }

    #[test]
    fn with_your_own_apps_the_banner_names_them_your_cache_and_no_demo_id() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wxunion.toml");
        std::fs::write(
            &path,
            r#"
sandbox = true
redis_url = "redis://:hunter2@127.0.0.1:6379/0"
database_url = "postgres://me:pgpass@127.0.0.1:5432/wxunion"

[[api_keys]]
name = "crm"
key = "my-own-service-key-0123456789"

[[apps]]
app_id = "wx5000000000000001"
secret = "secret-web"
kind = "website"
open_platform = "acme"

[[apps]]
app_id = "wx1000000000000001"
secret = "secret-mp1"
kind = "mini_program"
open_platform = "acme"

[[apps]]
app_id = "wx4000000000000001"
secret = "secret-oa"
kind = "official_account"
token = "callback-token"
"#,
        )
        .unwrap();
        let config = Config::load(Some(&path), Vec::new()).unwrap();
        let (listen, sim) = addrs();
        let banner = banner(&config, listen, sim);
        assert!(
            banner.contains("SANDBOX MODE: simulated WeChat, your apps"),
            "{banner}"
        );
        assert!(
            banner.contains("  cache      redis://:***@127.0.0.1:6379/0"),
            "{banner}"
        );
        assert!(
            banner.contains("postgres://me:***@127.0.0.1:5432/wxunion"),
            "{banner}"
        );
        for secret in [
            "hunter2",
            "pgpass",
            "my-own-service-key",
            "callback-token",
            "secret-",
        ] {
            assert!(!banner.contains(secret), "{secret} in {banner}");
        }
        assert!(banner.contains("Bearer <one of your api_keys>"), "{banner}");
        assert!(
            !banner.contains("wxacme") && !banner.contains("wxglobex"),
            "{banner}"
        );
        assert!(!banner.contains(DEMO_API_KEY), "{banner}");
        // The mini program is the login example even though the website comes first.
        assert!(
            banner.contains("\"app_id\":\"wx1000000000000001\""),
            "{banner}"
        );
        assert!(
            banner.contains("loginWithCode(appId: \"wx1000000000000001\""),
            "{banner}"
        );
        assert!(
            banner.contains("\"app_id\":\"wx4000000000000001\""),
            "{banner}"
        );
        assert!(banner.contains("in plaintext"), "{banner}");
        assert!(
            banner.contains("     wx5000000000000001  website"),
            "{banner}"
        );
    }

    #[test]
    fn without_an_official_account_the_follow_step_is_left_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wxunion.toml");
        std::fs::write(
            &path,
            "sandbox = true\n[[apps]]\napp_id = \"wx1000000000000001\"\nsecret = \"s\"\nkind = \"mini_program\"\n",
        )
        .unwrap();
        let config = Config::load(Some(&path), Vec::new()).unwrap();
        let (listen, sim) = addrs();
        let banner = banner(&config, listen, sim);
        assert!(banner.contains("  1. mint a login code"), "{banner}");
        assert!(banner.contains("  2. open GraphiQL"), "{banner}");
        assert!(!banner.contains("/sim/follow"), "{banner}");
        assert!(!banner.contains("  3."), "{banner}");
    }
}
