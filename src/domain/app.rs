//! The apps an organisation runs on WeChat: their kind, their open-platform scope and the
//! credentials WeChat gave them.

use std::fmt;

use secrecy::SecretString;
use serde::Deserialize;

/// The kind of WeChat app; it decides which login API and which callbacks apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AppKind {
    MiniProgram,
    OfficialAccount,
    Website,
    Mobile,
}

impl AppKind {
    /// Every kind, for operations any app may use (`loginWithCode`).
    pub const ALL: [AppKind; 4] = [
        AppKind::MiniProgram,
        AppKind::OfficialAccount,
        AppKind::Website,
        AppKind::Mobile,
    ];

    /// The stable name stored in the database and written in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            AppKind::MiniProgram => "mini_program",
            AppKind::OfficialAccount => "official_account",
            AppKind::Website => "website",
            AppKind::Mobile => "mobile",
        }
    }

    /// The inverse of [`AppKind::as_str`], for rows read back from the database.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "mini_program" => Some(AppKind::MiniProgram),
            "official_account" => Some(AppKind::OfficialAccount),
            "website" => Some(AppKind::Website),
            "mobile" => Some(AppKind::Mobile),
            _ => None,
        }
    }
}

/// Which WeChat endpoint issues an official account's access token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TokenEndpoint {
    /// `cgi-bin/stable_token`: refreshing does not invalidate tokens other systems hold.
    #[default]
    Stable,
    /// `cgi-bin/token`: every fetch replaces the previous token (after a 5-minute overlap).
    Classic,
}

/// One configured WeChat app.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    pub app_id: String,
    pub secret: SecretString,
    pub kind: AppKind,
    #[serde(default)]
    pub open_platform: Option<String>,
    #[serde(default)]
    pub token: Option<SecretString>,
    #[serde(default)]
    pub encoding_aes_key: Option<SecretString>,
    #[serde(default)]
    pub token_endpoint: TokenEndpoint,
    /// Official accounts: a text sent back to every new follower (encrypted in safe mode).
    #[serde(default)]
    pub subscribe_reply: Option<String>,
}

impl AppConfig {
    /// The scope inside which a unionid names one person: the open-platform label, or the app
    /// itself when it is bound to none (its unionids, if any, are then not shared).
    pub fn scope(&self) -> String {
        match &self.open_platform {
            Some(label) => format!("op:{label}"),
            None => format!("app:{}", self.app_id),
        }
    }
}

impl fmt::Debug for AppConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppConfig")
            .field("app_id", &self.app_id)
            .field("kind", &self.kind)
            .field("open_platform", &self.open_platform)
            .field("token_endpoint", &self.token_endpoint)
            .finish_non_exhaustive()
    }
}
