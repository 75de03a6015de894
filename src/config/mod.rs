//! Configuration: one TOML file, `WXUNION_<KEY>` overrides for top-level scalars, validated up
//! front so that a bad deployment stops at start-up with one line naming the file, the key and
//! the problem, instead of failing on the first request.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::domain::client_addr::IpNet;
use crate::domain::{AppConfig, AppId, AppKind};

pub mod demo;

/// Where the SQLite file lives when nobody says otherwise.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://wxunion.db?mode=rwc";
/// WeChat's real API host.
pub const DEFAULT_WECHAT_API_BASE: &str = "https://api.weixin.qq.com";

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApiKey {
    name: String,
    #[serde(default)]
    key: Option<SecretString>,
    #[serde(default)]
    key_sha256: Option<String>,
}

/// A service caller; only the SHA-256 of its key is kept in memory.
#[derive(Clone, Debug)]
pub struct ApiKey {
    pub name: String,
    pub sha256_hex: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    listen: Option<String>,
    #[serde(default)]
    database_url: Option<String>,
    #[serde(default)]
    database_max_connections: Option<u64>,
    #[serde(default)]
    database_timeout_ms: Option<u64>,
    #[serde(default)]
    redis_url: Option<String>,
    #[serde(default)]
    redis_prefix: Option<String>,
    #[serde(default)]
    redis_timeout_ms: Option<u64>,
    #[serde(default)]
    wechat_api_base: Option<String>,
    #[serde(default)]
    wechat_timeout_ms: Option<u64>,
    #[serde(default)]
    sandbox: Option<bool>,
    #[serde(default)]
    sim_listen: Option<String>,
    #[serde(default)]
    session_ttl_seconds: Option<u64>,
    #[serde(default)]
    event_retention_days: Option<u64>,
    #[serde(default)]
    job_workers: Option<u64>,
    #[serde(default)]
    runtime_threads: Option<u64>,
    #[serde(default)]
    job_lease_seconds: Option<u64>,
    #[serde(default)]
    max_forced_token_refreshes_per_hour: Option<u64>,
    #[serde(default)]
    cors_allowed_origins: Vec<String>,
    #[serde(default)]
    graphiql: Option<bool>,
    #[serde(default)]
    http_header_read_timeout_seconds: Option<u64>,
    #[serde(default)]
    http_idle_timeout_seconds: Option<u64>,
    #[serde(default)]
    http_request_timeout_seconds: Option<u64>,
    #[serde(default)]
    http_max_connections: Option<u64>,
    #[serde(default)]
    shutdown_grace_seconds: Option<u64>,
    #[serde(default)]
    login_rate_per_client: Option<u64>,
    #[serde(default)]
    login_rate_per_app: Option<u64>,
    #[serde(default)]
    trusted_proxies: Vec<String>,
    #[serde(default)]
    api_keys: Vec<RawApiKey>,
    #[serde(default)]
    apps: Vec<AppConfig>,
}

/// The validated configuration the whole service runs on.
#[derive(Clone, Debug)]
pub struct Config {
    pub listen: SocketAddr,
    pub database_url: String,
    /// Pool size per instance on PostgreSQL (SQLite always uses one connection).
    pub database_max_connections: u32,
    /// The longest a stretch of database work on a request path may take, the wait for a
    /// connection included; past it a callback answers 503 and GraphQL `INTERNAL`. Work after
    /// a WeChat call, and the pool's wait for a connection, get five times as long.
    pub database_timeout_ms: u64,
    pub redis_url: Option<String>,
    pub redis_prefix: String,
    /// The longest one Redis command may take; past it (or when Redis is unreachable) the
    /// command fails, and the login path skips Redis for a second.
    pub redis_timeout_ms: u64,
    pub wechat_api_base: String,
    pub wechat_timeout_ms: u64,
    pub sandbox: bool,
    pub sim_listen: SocketAddr,
    pub session_ttl_seconds: u64,
    /// Audit-trail events older than this many days are pruned.
    pub event_retention_days: u64,
    pub job_workers: usize,
    /// Threads of the async runtime that serves requests; 0 (the default) means one per CPU.
    /// Fewer than the CPUs leaves room for a PostgreSQL on the same machine.
    pub runtime_threads: usize,
    pub job_lease_seconds: u64,
    pub max_forced_token_refreshes_per_hour: u64,
    pub cors_allowed_origins: Vec<String>,
    /// Serve GraphiQL on `GET /graphql` for browsers (and its files under `/graphiql/`).
    pub graphiql: bool,
    /// A client must send a request's whole head within this (counted from the connection's
    /// accept, or from the first byte of a later request on a kept-alive connection).
    pub http_header_read_timeout_seconds: u64,
    /// A kept-alive connection with no request in flight and no bytes moving is closed after this.
    pub http_idle_timeout_seconds: u64,
    /// The whole handling of one request (body included); past it the answer is 503.
    pub http_request_timeout_seconds: u64,
    /// Open client connections per instance; beyond it the longest-idle one makes room, or the
    /// new one is closed.
    pub http_max_connections: usize,
    /// After the stop signal, in-flight requests get this long; then every connection is dropped.
    pub shutdown_grace_seconds: u64,
    /// `loginWithCode` calls per minute per client address (0: no limit).
    pub login_rate_per_client: u64,
    /// `loginWithCode` calls per second per app, across instances (0: no limit).
    pub login_rate_per_app: u64,
    /// Peers whose `X-Forwarded-For` names the client (default none: the peer is the client).
    pub trusted_proxies: Vec<IpNet>,
    pub api_keys: Vec<ApiKey>,
    pub apps: Vec<AppConfig>,
    /// The file this came from; `None` means no file was given (sandbox by default).
    pub source: Option<PathBuf>,
}

/// A configuration problem, printed as one line: where, which key, what is wrong.
#[derive(Debug, thiserror::Error)]
#[error("config error: {origin}: {key}: {problem}")]
pub struct ConfigError {
    pub origin: String,
    pub key: String,
    pub problem: String,
}

/// Top-level scalar keys that `WXUNION_<KEY>` may override, with how to read the value.
const SCALAR_KEYS: &[(&str, ScalarKind)] = &[
    ("listen", ScalarKind::Str),
    ("database_url", ScalarKind::Str),
    ("database_max_connections", ScalarKind::Int),
    ("database_timeout_ms", ScalarKind::Int),
    ("redis_url", ScalarKind::Str),
    ("redis_prefix", ScalarKind::Str),
    ("redis_timeout_ms", ScalarKind::Int),
    ("wechat_api_base", ScalarKind::Str),
    ("wechat_timeout_ms", ScalarKind::Int),
    ("sandbox", ScalarKind::Bool),
    ("sim_listen", ScalarKind::Str),
    ("session_ttl_seconds", ScalarKind::Int),
    ("event_retention_days", ScalarKind::Int),
    ("job_workers", ScalarKind::Int),
    ("runtime_threads", ScalarKind::Int),
    ("job_lease_seconds", ScalarKind::Int),
    ("max_forced_token_refreshes_per_hour", ScalarKind::Int),
    ("graphiql", ScalarKind::Bool),
    ("http_header_read_timeout_seconds", ScalarKind::Int),
    ("http_idle_timeout_seconds", ScalarKind::Int),
    ("http_request_timeout_seconds", ScalarKind::Int),
    ("http_max_connections", ScalarKind::Int),
    ("shutdown_grace_seconds", ScalarKind::Int),
    ("login_rate_per_client", ScalarKind::Int),
    ("login_rate_per_app", ScalarKind::Int),
    ("trusted_proxies", ScalarKind::List),
];

#[derive(Clone, Copy)]
enum ScalarKind {
    Str,
    Int,
    Bool,
    /// Comma-separated in the environment (`10.0.0.0/8,127.0.0.1`), an array in the file.
    List,
}

impl Config {
    /// Reads the file (if any), applies environment overrides from `env`, fills in sandbox
    /// defaults (demo apps and key, when sandbox mode lacks them) and validates. The result is
    /// final: nothing changes a `Config` after this.
    ///
    /// `env` is passed in rather than read here so that tests can prove overrides without
    /// touching the process environment.
    pub fn load(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let text = match path {
            Some(p) => Some(std::fs::read_to_string(p).map_err(|e| ConfigError {
                origin: p.display().to_string(),
                key: "(file)".into(),
                problem: format!("cannot read the file: {e}"),
            })?),
            None => None,
        };
        Self::from_text(path.zip(text.as_deref()), env)
    }

    /// [`Config::load`] without the file system: `file` is the path and the text already read
    /// from it (the path only names it in errors and in [`Config::source`]), `None` for no
    /// file. The same parsing, overrides, defaults and validation, and the same errors.
    pub fn from_text(
        file: Option<(&Path, &str)>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let path = file.map(|(p, _)| p);
        let origin = path
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "(no config file)".to_owned());
        let mut table = match file {
            Some((_, text)) => text.parse::<toml::Table>().map_err(|e| ConfigError {
                origin: origin.clone(),
                key: "(syntax)".into(),
                problem: e.message().to_owned()
                    + &e.span()
                        .map(|s| format!(" (at line {})", line_of(text, s.start)))
                        .unwrap_or_default(),
            })?,
            None => toml::Table::new(),
        };
        apply_env(&mut table, env)?;
        let mut raw: RawConfig = serde_path_to_error::deserialize(toml::Value::Table(table))
            .map_err(|e| ConfigError {
                origin: origin.clone(),
                key: display_path(&e.path().to_string()),
                problem: e.inner().message().to_owned(),
            })?;
        let sandbox = raw.sandbox.unwrap_or(path.is_none());
        if sandbox {
            sandbox_defaults(&mut raw);
        }
        validate(raw, sandbox, path.map(Path::to_path_buf), &origin)
    }

    /// The app configured under this id, if any.
    pub fn app(&self, app_id: &str) -> Option<&AppConfig> {
        self.apps.iter().find(|a| a.app_id == app_id)
    }
}

/// Sandbox mode with nothing configured gets the demo apps and the demo API key.
fn sandbox_defaults(raw: &mut RawConfig) {
    if raw.apps.is_empty() {
        raw.apps = demo::demo_apps();
    }
    if raw.api_keys.is_empty() {
        raw.api_keys.push(RawApiKey {
            name: "sandbox".into(),
            key: Some(SecretString::from(demo::DEMO_API_KEY)),
            key_sha256: None,
        });
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset).map_or(0, |t| t.matches('\n').count()) + 1
}

fn display_path(path: &str) -> String {
    if path.is_empty() || path == "." {
        "(top level)".to_owned()
    } else {
        path.to_owned()
    }
}

/// Environment variables that belong to the command line, not to the configuration file.
const NOT_CONFIG_KEYS: &[&str] = &["WXUNION_CONFIG"];

fn apply_env(
    table: &mut toml::Table,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<(), ConfigError> {
    for (name, value) in env {
        let Some(key) = name.strip_prefix("WXUNION_") else {
            continue;
        };
        if NOT_CONFIG_KEYS.contains(&name.as_str()) {
            continue;
        }
        let key = key.to_ascii_lowercase();
        let origin = format!("environment {name}");
        let Some((key, kind)) = SCALAR_KEYS.iter().find(|(k, _)| *k == key) else {
            // A typo must not be silently ignored, in the environment as in the file.
            let expected: Vec<String> = SCALAR_KEYS.iter().map(|(k, _)| format!("`{k}`")).collect();
            return Err(ConfigError {
                origin,
                key,
                problem: format!("unknown field, expected one of {}", expected.join(", ")),
            });
        };
        let err = |problem: &str| ConfigError {
            origin: origin.clone(),
            key: (*key).to_owned(),
            problem: problem.to_owned(),
        };
        let value = match kind {
            ScalarKind::Str => toml::Value::String(value),
            ScalarKind::Int => toml::Value::Integer(
                value
                    .trim()
                    .parse()
                    .map_err(|_| err("expected a whole number"))?,
            ),
            ScalarKind::Bool => toml::Value::Boolean(match value.trim() {
                "true" | "1" => true,
                "false" | "0" => false,
                _ => return Err(err("expected true or false")),
            }),
            ScalarKind::List => toml::Value::Array(
                value
                    .split(',')
                    .map(str::trim)
                    .filter(|v| !v.is_empty())
                    .map(|v| toml::Value::String(v.to_owned()))
                    .collect(),
            ),
        };
        table.insert((*key).to_owned(), value);
    }
    Ok(())
}

/// Builds the errors of one configuration source.
struct Check<'a> {
    origin: &'a str,
}

impl Check<'_> {
    fn err(&self, key: impl Into<String>, problem: impl Into<String>) -> ConfigError {
        ConfigError {
            origin: self.origin.to_owned(),
            key: key.into(),
            problem: problem.into(),
        }
    }

    /// A number within `[min, max]`, or `default` when absent.
    fn within(
        &self,
        key: &str,
        v: Option<u64>,
        default: u64,
        (min, max): (u64, u64),
    ) -> Result<u64, ConfigError> {
        match v {
            Some(v) if v < min || v > max => {
                Err(self.err(key, format!("must be between {min} and {max}, not {v}")))
            }
            Some(v) => Ok(v),
            None => Ok(default),
        }
    }

    fn addr(&self, key: &str, v: Option<String>, default: &str) -> Result<SocketAddr, ConfigError> {
        let v = v.unwrap_or_else(|| default.to_owned());
        v.parse::<SocketAddr>()
            .map_err(|_| self.err(key, format!("`{v}` is not an address like 127.0.0.1:8080")))
    }
}

/// The bounds of every number in the configuration: `(min, max)`.
mod bounds {
    pub const DATABASE_MAX_CONNECTIONS: (u64, u64) = (1, 1_000);
    pub const DATABASE_TIMEOUT_MS: (u64, u64) = (100, 60_000);
    pub const REDIS_TIMEOUT_MS: (u64, u64) = (10, 10_000);
    pub const LOGIN_RATE_PER_CLIENT: (u64, u64) = (0, 1_000_000);
    pub const LOGIN_RATE_PER_APP: (u64, u64) = (0, 1_000_000);
    pub const TRUSTED_PROXIES: usize = 256;
    pub const WECHAT_TIMEOUT_MS: (u64, u64) = (100, 120_000);
    pub const SESSION_TTL_SECONDS: (u64, u64) = (60, 366 * 86_400);
    pub const JOB_WORKERS: (u64, u64) = (0, 256);
    pub const RUNTIME_THREADS: (u64, u64) = (0, 1_024);
    pub const JOB_LEASE_SECONDS: (u64, u64) = (1, 86_400);
    pub const MAX_FORCED_TOKEN_REFRESHES_PER_HOUR: (u64, u64) = (1, 1_000);
    pub const HTTP_HEADER_READ_TIMEOUT_SECONDS: (u64, u64) = (1, 300);
    pub const HTTP_IDLE_TIMEOUT_SECONDS: (u64, u64) = (1, 3_600);
    pub const HTTP_REQUEST_TIMEOUT_SECONDS: (u64, u64) = (1, 3_600);
    pub const HTTP_MAX_CONNECTIONS: (u64, u64) = (1, 1_000_000);
    pub const SHUTDOWN_GRACE_SECONDS: (u64, u64) = (0, 3_600);
    pub const EVENT_RETENTION_DAYS: (u64, u64) = (1, 3_650);
}

fn validate(
    raw: RawConfig,
    sandbox: bool,
    source: Option<PathBuf>,
    origin: &str,
) -> Result<Config, ConfigError> {
    let c = Check { origin };
    let network = network(&c, &raw)?;
    let storage = storage(&c, &raw)?;
    let wechat_api_base = wechat_api_base(&c, raw.wechat_api_base.clone())?;
    let limits = limits(&c, &raw)?;
    let trusted_proxies = trusted_proxies(&c, &raw.trusted_proxies)?;
    let api_keys = api_keys(&c, raw.api_keys)?;
    apps(&c, &raw.apps)?;
    Ok(Config {
        listen: network.listen,
        database_url: storage.database_url,
        database_max_connections: limits.database_max_connections,
        database_timeout_ms: limits.database_timeout_ms,
        redis_url: storage.redis_url,
        redis_prefix: storage.redis_prefix,
        redis_timeout_ms: limits.redis_timeout_ms,
        wechat_api_base,
        wechat_timeout_ms: limits.wechat_timeout_ms,
        sandbox,
        sim_listen: network.sim_listen,
        session_ttl_seconds: limits.session_ttl_seconds,
        job_workers: limits.job_workers,
        runtime_threads: limits.runtime_threads,
        job_lease_seconds: limits.job_lease_seconds,
        max_forced_token_refreshes_per_hour: limits.max_forced_token_refreshes_per_hour,
        cors_allowed_origins: network.cors_allowed_origins,
        graphiql: raw.graphiql.unwrap_or(true),
        http_header_read_timeout_seconds: limits.http_header_read_timeout_seconds,
        http_idle_timeout_seconds: limits.http_idle_timeout_seconds,
        http_request_timeout_seconds: limits.http_request_timeout_seconds,
        http_max_connections: limits.http_max_connections,
        shutdown_grace_seconds: limits.shutdown_grace_seconds,
        event_retention_days: limits.event_retention_days,
        login_rate_per_client: limits.login_rate_per_client,
        login_rate_per_app: limits.login_rate_per_app,
        trusted_proxies,
        api_keys,
        apps: raw.apps,
        source,
    })
}

struct Network {
    listen: SocketAddr,
    sim_listen: SocketAddr,
    cors_allowed_origins: Vec<String>,
}

/// Addresses and browser origins.
fn network(c: &Check<'_>, raw: &RawConfig) -> Result<Network, ConfigError> {
    let listen = c.addr("listen", raw.listen.clone(), "127.0.0.1:8080")?;
    let sim_listen = c.addr("sim_listen", raw.sim_listen.clone(), "127.0.0.1:8081")?;
    for (i, origin) in raw.cors_allowed_origins.iter().enumerate() {
        if url::Url::parse(origin).is_err() {
            return Err(c.err(
                format!("cors_allowed_origins[{i}]"),
                format!("`{origin}` is not an origin like https://m.example.com"),
            ));
        }
    }
    Ok(Network {
        listen,
        sim_listen,
        cors_allowed_origins: raw.cors_allowed_origins.clone(),
    })
}

struct Storage {
    database_url: String,
    redis_url: Option<String>,
    redis_prefix: String,
}

/// The database and the cache.
fn storage(c: &Check<'_>, raw: &RawConfig) -> Result<Storage, ConfigError> {
    let database_url = raw
        .database_url
        .clone()
        .unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned());
    if !(database_url.starts_with("sqlite:") || database_url.starts_with("postgres")) {
        return Err(c.err("database_url", "must start with sqlite: or postgres://"));
    }
    if let Some(url) = &raw.redis_url
        && !(url.starts_with("redis://") || url.starts_with("rediss://"))
    {
        return Err(c.err("redis_url", "must start with redis:// or rediss://"));
    }
    let redis_prefix = raw
        .redis_prefix
        .clone()
        .unwrap_or_else(|| "wxunion:".to_owned());
    if redis_prefix.len() > 64 {
        return Err(c.err("redis_prefix", "must be at most 64 characters"));
    }
    Ok(Storage {
        database_url,
        redis_url: raw.redis_url.clone(),
        redis_prefix,
    })
}

/// Where WeChat's API is.
fn wechat_api_base(c: &Check<'_>, v: Option<String>) -> Result<String, ConfigError> {
    let base = v.unwrap_or_else(|| DEFAULT_WECHAT_API_BASE.to_owned());
    if url::Url::parse(&base).is_err() {
        return Err(c.err("wechat_api_base", "is not an absolute URL"));
    }
    Ok(base.trim_end_matches('/').to_owned())
}

struct Limits {
    database_max_connections: u32,
    database_timeout_ms: u64,
    redis_timeout_ms: u64,
    login_rate_per_client: u64,
    login_rate_per_app: u64,
    wechat_timeout_ms: u64,
    session_ttl_seconds: u64,
    job_workers: usize,
    runtime_threads: usize,
    job_lease_seconds: u64,
    max_forced_token_refreshes_per_hour: u64,
    http_header_read_timeout_seconds: u64,
    http_idle_timeout_seconds: u64,
    http_request_timeout_seconds: u64,
    http_max_connections: usize,
    shutdown_grace_seconds: u64,
    event_retention_days: u64,
}

/// Every duration, size and count, each within its bounds.
fn limits(c: &Check<'_>, raw: &RawConfig) -> Result<Limits, ConfigError> {
    use bounds::*;
    Ok(Limits {
        database_max_connections: c.within(
            "database_max_connections",
            raw.database_max_connections,
            16,
            DATABASE_MAX_CONNECTIONS,
        )? as u32,
        database_timeout_ms: c.within(
            "database_timeout_ms",
            raw.database_timeout_ms,
            1_000,
            DATABASE_TIMEOUT_MS,
        )?,
        redis_timeout_ms: c.within(
            "redis_timeout_ms",
            raw.redis_timeout_ms,
            500,
            REDIS_TIMEOUT_MS,
        )?,
        login_rate_per_client: c.within(
            "login_rate_per_client",
            raw.login_rate_per_client,
            60,
            LOGIN_RATE_PER_CLIENT,
        )?,
        login_rate_per_app: c.within(
            "login_rate_per_app",
            raw.login_rate_per_app,
            1_000,
            LOGIN_RATE_PER_APP,
        )?,
        wechat_timeout_ms: c.within(
            "wechat_timeout_ms",
            raw.wechat_timeout_ms,
            5_000,
            WECHAT_TIMEOUT_MS,
        )?,
        session_ttl_seconds: c.within(
            "session_ttl_seconds",
            raw.session_ttl_seconds,
            7 * 86_400,
            SESSION_TTL_SECONDS,
        )?,
        // 0 is allowed: an ingest-only instance records callbacks and leaves the jobs to others.
        job_workers: c.within("job_workers", raw.job_workers, 4, JOB_WORKERS)? as usize,
        // 0: one per CPU (the runtime's own default, which also honours a container's quota).
        runtime_threads: c.within("runtime_threads", raw.runtime_threads, 0, RUNTIME_THREADS)?
            as usize,
        job_lease_seconds: c.within(
            "job_lease_seconds",
            raw.job_lease_seconds,
            60,
            JOB_LEASE_SECONDS,
        )?,
        max_forced_token_refreshes_per_hour: c.within(
            "max_forced_token_refreshes_per_hour",
            raw.max_forced_token_refreshes_per_hour,
            10,
            MAX_FORCED_TOKEN_REFRESHES_PER_HOUR,
        )?,
        http_header_read_timeout_seconds: c.within(
            "http_header_read_timeout_seconds",
            raw.http_header_read_timeout_seconds,
            10,
            HTTP_HEADER_READ_TIMEOUT_SECONDS,
        )?,
        http_idle_timeout_seconds: c.within(
            "http_idle_timeout_seconds",
            raw.http_idle_timeout_seconds,
            60,
            HTTP_IDLE_TIMEOUT_SECONDS,
        )?,
        http_request_timeout_seconds: c.within(
            "http_request_timeout_seconds",
            raw.http_request_timeout_seconds,
            30,
            HTTP_REQUEST_TIMEOUT_SECONDS,
        )?,
        http_max_connections: c.within(
            "http_max_connections",
            raw.http_max_connections,
            1_024,
            HTTP_MAX_CONNECTIONS,
        )? as usize,
        shutdown_grace_seconds: c.within(
            "shutdown_grace_seconds",
            raw.shutdown_grace_seconds,
            10,
            SHUTDOWN_GRACE_SECONDS,
        )?,
        event_retention_days: c.within(
            "event_retention_days",
            raw.event_retention_days,
            365,
            EVENT_RETENTION_DAYS,
        )?,
    })
}

/// The proxies whose `X-Forwarded-For` is believed: addresses or networks.
fn trusted_proxies(c: &Check<'_>, raw: &[String]) -> Result<Vec<IpNet>, ConfigError> {
    if raw.len() > bounds::TRUSTED_PROXIES {
        return Err(c.err(
            "trusted_proxies",
            format!("at most {} entries", bounds::TRUSTED_PROXIES),
        ));
    }
    raw.iter()
        .enumerate()
        .map(|(i, p)| IpNet::parse(p).map_err(|e| c.err(format!("trusted_proxies[{i}]"), e)))
        .collect()
}

/// Service callers' keys, kept only as SHA-256.
fn api_keys(c: &Check<'_>, raw: Vec<RawApiKey>) -> Result<Vec<ApiKey>, ConfigError> {
    let mut api_keys = Vec::new();
    for (i, k) in raw.into_iter().enumerate() {
        let key = format!("api_keys[{i}]");
        let sha = match (&k.key, &k.key_sha256) {
            (Some(plain), None) => {
                if plain.expose_secret().len() < 16 {
                    return Err(c.err(format!("{key}.key"), "must be at least 16 characters"));
                }
                sha256_hex(plain.expose_secret())
            }
            (None, Some(hex)) => {
                let hex = hex.to_ascii_lowercase();
                if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(c.err(
                        format!("{key}.key_sha256"),
                        "must be 64 hexadecimal characters",
                    ));
                }
                hex
            }
            _ => return Err(c.err(key, "give exactly one of `key` or `key_sha256`")),
        };
        if k.name.trim().is_empty() {
            return Err(c.err(format!("{key}.name"), "must not be empty"));
        }
        api_keys.push(ApiKey {
            name: k.name,
            sha256_hex: sha,
        });
    }
    Ok(api_keys)
}

/// The WeChat apps: ids, secrets, callback credentials.
fn apps(c: &Check<'_>, apps: &[AppConfig]) -> Result<(), ConfigError> {
    let mut seen = HashSet::new();
    for (i, app) in apps.iter().enumerate() {
        let key = |field: &str| format!("apps[{i}].{field}");
        if AppId::parse(&app.app_id).is_err() {
            return Err(c.err(
                key("app_id"),
                format!(
                    "`{}` is not a WeChat appid (wx + 16 letters or digits)",
                    app.app_id
                ),
            ));
        }
        if !seen.insert(app.app_id.clone()) {
            return Err(c.err(key("app_id"), format!("duplicate app_id `{}`", app.app_id)));
        }
        if app.secret.expose_secret().is_empty() {
            return Err(c.err(key("secret"), "must not be empty"));
        }
        if let Some(label) = &app.open_platform
            && (label.is_empty() || label.len() > 64)
        {
            return Err(c.err(key("open_platform"), "must be 1 to 64 characters"));
        }
        if app.kind == AppKind::OfficialAccount {
            match &app.token {
                Some(t) if !t.expose_secret().is_empty() => {}
                _ => {
                    return Err(c.err(key("token"), "an official account needs its callback token"));
                }
            }
        }
        if let Some(aes) = &app.encoding_aes_key
            && crate::wechat::crypto::decode_aes_key(aes.expose_secret()).is_err()
        {
            return Err(c.err(key("encoding_aes_key"), "must be 43 base64 characters"));
        }
        if let Some(reply) = &app.subscribe_reply
            && reply.len() > 2_048
        {
            return Err(c.err(key("subscribe_reply"), "must be at most 2048 bytes"));
        }
    }
    Ok(())
}

/// Lowercase hex SHA-256; API keys and session tokens are only ever compared in this form.
pub fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

#[cfg(test)]
mod tests;
