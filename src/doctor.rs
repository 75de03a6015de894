//! `wxunion check`: a doctor for operators.
//!
//! For every configured app: whether WeChat accepts its secret, whether its logins and
//! `user/info` calls have been returning unionids (from wxunion's own records), and for official
//! accounts what to enter in the WeChat console. Then whether the database and the cache answer.
//! One line per verdict (`ok`, `warn`, `FAIL`); the command exits 1 when any line is `FAIL`.
//!
//! Nothing it prints is a secret: app secrets, callback tokens and AES keys are named by their
//! configuration key, never shown. It changes nothing either: no migration, no token cached,
//! and the secret is proven with `cgi-bin/stable_token` in normal mode, which hands back the
//! current token without replacing any token another system holds.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use sea_orm::DatabaseConnection;
use secrecy::ExposeSecret as _;

use crate::cache::Cache;
use crate::config::Config;
use crate::domain::{AppConfig, AppKind, Error, LoginCode, TokenEndpoint};
use crate::sim::{SimApp, Simulator};
use crate::store;
use crate::telemetry::redact_url;
use crate::wechat::{CallError, WechatClient};

/// An app with an open-platform label but no unionid after this many identities is probably
/// not bound to that open platform.
pub const MIN_SAMPLE: i64 = 10;
/// How long the database and Redis get to answer.
const STORAGE_TIMEOUT: Duration = Duration::from_secs(5);

/// How one line judges what it checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verdict {
    Ok,
    Warn,
    Fail,
    /// Not a verdict: what to do with a result (the console settings).
    Info,
}

impl Verdict {
    fn word(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Warn => "warn",
            Verdict::Fail => "FAIL",
            Verdict::Info => "",
        }
    }
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub verdict: Verdict,
    /// What it is about: `database`, `cache`, an appId.
    pub subject: String,
    pub text: String,
}

/// Everything `wxunion check` found.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub header: String,
    pub lines: Vec<Line>,
}

impl Report {
    fn push(&mut self, verdict: Verdict, subject: &str, text: impl Into<String>) {
        self.lines.push(Line {
            verdict,
            subject: subject.to_owned(),
            text: text.into(),
        });
    }

    /// Whether anything FAILed (the exit code is 1 then).
    pub fn failed(&self) -> bool {
        self.count(Verdict::Fail) > 0
    }

    fn count(&self, verdict: Verdict) -> usize {
        self.lines.iter().filter(|l| l.verdict == verdict).count()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.header)?;
        let width = self
            .lines
            .iter()
            .map(|l| l.subject.chars().count())
            .max()
            .unwrap_or(0);
        for l in &self.lines {
            let line = format!("{:<4}  {:<width$}  {}", l.verdict.word(), l.subject, l.text);
            writeln!(f, "{}", line.trim_end())?;
        }
        let (fail, warn, ok) = (
            self.count(Verdict::Fail),
            self.count(Verdict::Warn),
            self.count(Verdict::Ok),
        );
        let outcome = if fail > 0 {
            "something is wrong"
        } else if warn > 0 {
            "working, with warnings"
        } else {
            "all good"
        };
        write!(f, "{fail} FAIL, {warn} warn, {ok} ok: {outcome}")
    }
}

/// Runs every check of `config`. `public_url` is wxunion's address as WeChat reaches it
/// (`https://id.example.com`), used for the callback URLs; `None` prints a placeholder.
pub async fn check(config: &Config, public_url: Option<&str>) -> Report {
    let mut report = Report {
        header: match &config.source {
            Some(path) => format!("wxunion check: {}", path.display()),
            None => "wxunion check: no configuration file".to_owned(),
        },
        ..Report::default()
    };
    // Sandbox mode talks to an in-process simulator, as `serve` does (on a free port).
    let (base, _sim) = if config.sandbox {
        let apps = config.apps.iter().map(SimApp::from).collect();
        match Simulator::spawn(apps, ([127, 0, 0, 1], 0).into()).await {
            Ok(sim) => {
                report.header.push_str(&format!(
                    " (sandbox mode: WeChat is the simulator at {})",
                    sim.base_url()
                ));
                (sim.base_url(), Some(sim))
            }
            Err(e) => {
                report.push(
                    Verdict::Fail,
                    "simulator",
                    format!("cannot start the sandbox's simulator: {e}"),
                );
                return report;
            }
        }
    } else {
        (config.wechat_api_base.clone(), None)
    };

    let db = check_database(config, &mut report).await;
    check_cache(config, &mut report).await;
    let coverage = match &db {
        Some(db) => match store::users::union_id_coverage(db).await {
            Ok(c) => Some(c),
            Err(e) => {
                report.push(
                    Verdict::Fail,
                    "database",
                    format!("cannot count identities: {e}"),
                );
                None
            }
        },
        None => None,
    };
    if let Some(db) = db {
        db.close().await.ok();
    }
    let public = check_public_url(public_url, &mut report);

    if config.apps.is_empty() {
        report.push(
            Verdict::Warn,
            "apps",
            "no [[apps]] configured: nothing to serve",
        );
    }
    let secrets = check_secrets(config, &base).await;
    for (app, secret) in config.apps.iter().zip(secrets) {
        let (verdict, text) = secret;
        report.push(
            verdict,
            &app.app_id,
            format!("{:<17} {text}", app.kind.as_str()),
        );
        if let Some(coverage) = &coverage {
            let (identities, with_union_id) = coverage.get(&app.app_id).copied().unwrap_or((0, 0));
            let (verdict, text) = union_id_verdict(app, identities, with_union_id);
            report.push(
                verdict,
                &app.app_id,
                format!("{:<17} {text}", app.kind.as_str()),
            );
        }
        if app.kind == AppKind::OfficialAccount {
            for text in console_settings(app, public.as_deref()) {
                report.push(
                    Verdict::Info,
                    &app.app_id,
                    format!("{:<17} {text}", "console"),
                );
            }
        }
    }
    report
}

/// Connects (without migrating) and reports reachability and pending migrations; the
/// connection is returned only when the tables are there to be read.
async fn check_database(config: &Config, report: &mut Report) -> Option<DatabaseConnection> {
    let url = redact_url(&config.database_url);
    let connected =
        tokio::time::timeout(STORAGE_TIMEOUT, store::connect(&config.database_url, 1)).await;
    let db = match connected {
        Ok(Ok(db)) => db,
        Ok(Err(e)) => {
            let hint = if config.database_url.starts_with("postgres") {
                " (does the database exist? `createdb <name>` first)"
            } else {
                ""
            };
            report.push(
                Verdict::Fail,
                "database",
                format!("{url}: cannot connect: {e}{hint}"),
            );
            return None;
        }
        Err(_) => {
            report.push(
                Verdict::Fail,
                "database",
                format!("{url}: no answer within {}s", STORAGE_TIMEOUT.as_secs()),
            );
            return None;
        }
    };
    match store::pending_migrations(&db).await {
        Ok(0) => {
            report.push(
                Verdict::Ok,
                "database",
                format!("{url}: reachable, migrations up to date"),
            );
            Some(db)
        }
        Ok(n) => {
            report.push(
                Verdict::Warn,
                "database",
                format!(
                    "{url}: reachable, {n} migration(s) pending: `wxunion migrate` applies them (`serve` does at start)"
                ),
            );
            None
        }
        Err(e) => {
            report.push(
                Verdict::Fail,
                "database",
                format!("{url}: cannot read the migrations table: {e}"),
            );
            None
        }
    }
}

async fn check_cache(config: &Config, report: &mut Report) {
    let Some(redis_url) = config.redis_url.as_deref() else {
        report.push(
            Verdict::Ok,
            "cache",
            "in-process (no redis_url): right for a single instance only",
        );
        return;
    };
    let url = redact_url(redis_url);
    let answered = tokio::time::timeout(STORAGE_TIMEOUT, async {
        let cache = Cache::connect(Some(redis_url), &config.redis_prefix).await?;
        cache.ping().await?;
        anyhow::Ok(())
    })
    .await;
    match answered {
        Ok(Ok(())) => report.push(Verdict::Ok, "cache", format!("{url}: reachable")),
        Ok(Err(e)) => report.push(Verdict::Fail, "cache", format!("{url}: unreachable: {e:#}")),
        Err(_) => report.push(
            Verdict::Fail,
            "cache",
            format!("{url}: no answer within {}s", STORAGE_TIMEOUT.as_secs()),
        ),
    }
}

/// The base of the callback URLs, checked against what WeChat can call.
fn check_public_url(public_url: Option<&str>, report: &mut Report) -> Option<String> {
    let raw = public_url?;
    let base = raw.trim_end_matches('/').to_owned();
    match url::Url::parse(&base) {
        Ok(u) if !matches!(u.scheme(), "http" | "https") => {
            report.push(
                Verdict::Fail,
                "public URL",
                format!("{base}: WeChat calls http:// or https:// URLs only"),
            );
        }
        Ok(u) if u.port().is_some() => {
            report.push(
                Verdict::Warn,
                "public URL",
                format!("{base}: WeChat calls port 80 (http) or 443 (https) only"),
            );
        }
        Ok(u) if u.scheme() == "http" => {
            report.push(
                Verdict::Warn,
                "public URL",
                format!("{base}: plain http; https is recommended"),
            );
        }
        Ok(_) => report.push(Verdict::Ok, "public URL", base.clone()),
        Err(e) => {
            report.push(
                Verdict::Fail,
                "public URL",
                format!("`{raw}` is not a URL: {e}"),
            );
        }
    }
    Some(base)
}

/// Proves every app's secret, all apps at once; one (verdict, text) per app, in order.
async fn check_secrets(config: &Config, base: &str) -> Vec<(Verdict, String)> {
    let client = match WechatClient::new(base, Duration::from_millis(config.wechat_timeout_ms)) {
        Ok(c) => c,
        Err(e) => {
            let text = format!("secret: not checked, no HTTP client: {e}");
            return config
                .apps
                .iter()
                .map(|_| (Verdict::Fail, text.clone()))
                .collect();
        }
    };
    let mut tasks = tokio::task::JoinSet::new();
    for (i, app) in config.apps.iter().enumerate() {
        let (client, app) = (client.clone(), app.clone());
        tasks.spawn(async move { (i, check_secret(&client, &app).await) });
    }
    let mut results: HashMap<usize, (Verdict, String)> = HashMap::new();
    while let Some(done) = tasks.join_next().await {
        if let Ok((i, r)) = done {
            results.insert(i, r);
        }
    }
    (0..config.apps.len())
        .map(|i| {
            results
                .remove(&i)
                .unwrap_or((Verdict::Fail, "secret: the check itself crashed".to_owned()))
        })
        .collect()
}

/// Official accounts and mini programs get an access token (`stable_token`, normal mode: it
/// replaces nothing). Websites and mobile apps have no access token: a code exchange with a
/// made-up code proves the secret when WeChat refuses only the code.
async fn check_secret(client: &WechatClient, app: &AppConfig) -> (Verdict, String) {
    match app.kind {
        AppKind::OfficialAccount | AppKind::MiniProgram => {
            let mut stable = app.clone();
            stable.token_endpoint = TokenEndpoint::Stable;
            match client.fetch_token(&stable, false).await {
                Ok(_) => (
                    Verdict::Ok,
                    "secret: accepted (an access token was issued by cgi-bin/stable_token)"
                        .to_owned(),
                ),
                Err(CallError::Wechat {
                    errcode, errmsg, ..
                }) => errcode_verdict(errcode, &errmsg),
                Err(CallError::Transport(e)) => unreachable_wechat(&e),
            }
        }
        AppKind::Website | AppKind::Mobile => {
            let probe = match LoginCode::parse("wxunion-check-probe-code") {
                Ok(c) => c,
                Err(e) => return (Verdict::Fail, format!("secret: not checked: {e}")),
            };
            match client.oauth_access_token(app, &probe).await {
                Err(Error::InvalidCode { errcode, .. }) => (
                    Verdict::Ok,
                    format!(
                        "secret: accepted (sns/oauth2/access_token refused only the probe code, {errcode})"
                    ),
                ),
                Ok(_) => (
                    Verdict::Warn,
                    "secret: WeChat accepted a made-up code; is wechat_api_base really WeChat?"
                        .to_owned(),
                ),
                Err(Error::Upstream {
                    errcode: Some(errcode),
                    errmsg,
                    ..
                })
                | Err(Error::RateLimited {
                    errcode: Some(errcode),
                    errmsg,
                }) => errcode_verdict(errcode, errmsg.as_deref().unwrap_or("")),
                Err(Error::Upstream { detail, .. }) => unreachable_wechat(&detail),
                Err(e) => (Verdict::Fail, format!("secret: not checked: {e}")),
            }
        }
    }
}

fn unreachable_wechat(detail: &str) -> (Verdict, String) {
    (
        Verdict::Fail,
        format!("secret: not checked, WeChat unreachable (wechat_api_base): {detail}"),
    )
}

/// What an errcode from the token or code endpoint means for the app's configuration.
pub fn errcode_verdict(errcode: i64, errmsg: &str) -> (Verdict, String) {
    // WeChat appends " rid: ..." (a request id) to its messages.
    let errmsg = errmsg.split(" rid:").next().unwrap_or(errmsg).trim();
    let (verdict, what) = match errcode {
        40125 | 40001 => (
            Verdict::Fail,
            "refused: wrong `secret` (reset it in the console under 开发管理 → 开发设置 → AppSecret and update the configuration)",
        ),
        40013 => (
            Verdict::Fail,
            "refused: WeChat does not know this appid (check `app_id`)",
        ),
        40164 | 61004 => (
            Verdict::Fail,
            "refused: this machine's IP address is not on the app's IP whitelist (IP白名单)",
        ),
        89503 | 89501 | 89506 | 89507 => (
            Verdict::Fail,
            "refused: this IP address needs the account administrator's confirmation",
        ),
        -1 => (Verdict::Warn, "not checked: WeChat is busy (-1); try again"),
        45009 | 45011 => (
            Verdict::Warn,
            "not checked: the app's API quota or rate limit is reached; try again later",
        ),
        _ => (Verdict::Fail, "refused"),
    };
    (verdict, format!("secret: {what} [{errcode} {errmsg}]"))
}

/// Whether the app's identities have been getting unionids, judged against its
/// `open_platform` label.
pub fn union_id_verdict(app: &AppConfig, identities: i64, with_union_id: i64) -> (Verdict, String) {
    let share = if identities > 0 {
        with_union_id * 100 / identities
    } else {
        0
    };
    let counted = format!("{with_union_id} of {identities} identities ({share}%) have a unionid");
    match (&app.open_platform, identities, with_union_id) {
        (_, 0, _) => (
            Verdict::Ok,
            "unionids: no logins or followers recorded yet".to_owned(),
        ),
        (Some(label), n, 0) if n >= MIN_SAMPLE => (
            Verdict::Warn,
            format!(
                "unionids: {counted} although open_platform = \"{label}\": probably not bound to that open platform (open.weixin.qq.com → 管理中心 → bind it)"
            ),
        ),
        (Some(label), _, 0) => (
            Verdict::Ok,
            format!(
                "unionids: {counted}, open platform \"{label}\" (too few to judge; {MIN_SAMPLE} needed)"
            ),
        ),
        (Some(label), _, _) => {
            let pending = if app.kind == AppKind::OfficialAccount && with_union_id < identities {
                "; followers without one may still be waiting for their user/info lookup"
            } else {
                ""
            };
            (
                Verdict::Ok,
                format!("unionids: {counted}, open platform \"{label}\"{pending}"),
            )
        }
        (None, _, 0) => (
            Verdict::Ok,
            format!("unionids: {counted}; none expected without open_platform"),
        ),
        (None, _, _) => (
            Verdict::Warn,
            format!(
                "unionids: {counted} but no open_platform is set, so these users are not joined with other apps: set open_platform to the label of its open platform"
            ),
        ),
    }
}

/// What to enter in the WeChat console (公众平台 → 设置与开发 → 基本配置 → 服务器配置).
fn console_settings(app: &AppConfig, public_url: Option<&str>) -> Vec<String> {
    let base = public_url.unwrap_or("https://<your host>");
    let mut lines = vec![
        format!("URL (服务器地址): {base}/wechat/callback/{}", app.app_id),
        "Token (令牌): the `token` from your config".to_owned(),
    ];
    match &app.encoding_aes_key {
        Some(key) if !key.expose_secret().is_empty() => {
            lines.push(
                "EncodingAESKey (消息加解密密钥): the `encoding_aes_key` from your config".to_owned(),
            );
            lines.push(
                "mode (消息加解密方式): 安全模式 (safe, recommended) or 兼容模式 (compatible); 明文模式 (plaintext) would be refused".to_owned(),
            );
        }
        _ => lines.push(
            "mode (消息加解密方式): 明文模式 (plaintext); for safe mode add `encoding_aes_key` (the console's EncodingAESKey)".to_owned(),
        ),
    }
    lines
}

#[cfg(test)]
mod tests {
    use secrecy::SecretString;

    use super::*;

    fn app(kind: AppKind, open_platform: Option<&str>) -> AppConfig {
        AppConfig {
            app_id: "wx1000000000000001".to_owned(),
            secret: SecretString::from("the-secret"),
            kind,
            open_platform: open_platform.map(str::to_owned),
            token: None,
            encoding_aes_key: None,
            token_endpoint: TokenEndpoint::Stable,
            subscribe_reply: None,
        }
    }

    #[test]
    fn a_label_with_no_unionid_after_enough_identities_is_a_warning() {
        let mp = app(AppKind::MiniProgram, Some("acme"));
        let (v, text) = union_id_verdict(&mp, MIN_SAMPLE, 0);
        assert_eq!(v, Verdict::Warn);
        assert!(
            text.contains("probably not bound to that open platform"),
            "{text}"
        );
        assert!(text.contains("\"acme\""), "{text}");
        // Too few to judge.
        assert_eq!(union_id_verdict(&mp, MIN_SAMPLE - 1, 0).0, Verdict::Ok);
        // Nothing yet.
        let (v, text) = union_id_verdict(&mp, 0, 0);
        assert_eq!(v, Verdict::Ok);
        assert!(text.contains("no logins"), "{text}");
        // Working.
        let (v, text) = union_id_verdict(&mp, 40, 30);
        assert_eq!(v, Verdict::Ok);
        assert!(text.contains("30 of 40 identities (75%)"), "{text}");
    }

    #[test]
    fn unionids_without_a_label_are_a_warning() {
        let mp = app(AppKind::MiniProgram, None);
        assert_eq!(union_id_verdict(&mp, 5, 0).0, Verdict::Ok);
        let (v, text) = union_id_verdict(&mp, 5, 5);
        assert_eq!(v, Verdict::Warn);
        assert!(text.contains("set open_platform"), "{text}");
    }

    #[test]
    fn errcodes_name_what_to_fix() {
        let (v, text) = errcode_verdict(40125, "invalid appsecret rid: 1234");
        assert_eq!(v, Verdict::Fail);
        assert!(text.contains("wrong `secret`"), "{text}");
        assert!(text.ends_with("[40125 invalid appsecret]"), "{text}");
        assert!(errcode_verdict(40164, "invalid ip").1.contains("whitelist"));
        assert_eq!(errcode_verdict(-1, "system error").0, Verdict::Warn);
        assert_eq!(errcode_verdict(12345, "what").0, Verdict::Fail);
    }

    #[test]
    fn console_settings_name_the_token_and_key_but_never_show_them() {
        let mut oa = app(AppKind::OfficialAccount, Some("acme"));
        oa.token = Some(SecretString::from("callback-token-value"));
        oa.encoding_aes_key = Some(SecretString::from(
            "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
        ));
        let text = console_settings(&oa, Some("https://id.example.com")).join("\n");
        assert!(
            text.contains("https://id.example.com/wechat/callback/wx1000000000000001"),
            "{text}"
        );
        assert!(text.contains("the `token` from your config"), "{text}");
        assert!(text.contains("安全模式"), "{text}");
        assert!(!text.contains("callback-token-value") && !text.contains("abcdefghij"));
        oa.encoding_aes_key = None;
        let text = console_settings(&oa, None).join("\n");
        assert!(
            text.contains("https://<your host>/wechat/callback/"),
            "{text}"
        );
        assert!(text.contains("明文模式 (plaintext)"), "{text}");
    }

    #[test]
    fn the_report_has_one_line_per_verdict_and_fails_on_fail() {
        let mut r = Report {
            header: "wxunion check: test".to_owned(),
            ..Report::default()
        };
        r.push(Verdict::Ok, "database", "fine");
        r.push(Verdict::Warn, "wx1000000000000001", "hmm");
        assert!(!r.failed());
        r.push(Verdict::Fail, "cache", "down");
        assert!(r.failed());
        let text = r.to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[1], "ok    database            fine");
        assert_eq!(lines[2], "warn  wx1000000000000001  hmm");
        assert_eq!(lines[3], "FAIL  cache               down");
        assert_eq!(lines[4], "1 FAIL, 1 warn, 1 ok: something is wrong");
    }
}
