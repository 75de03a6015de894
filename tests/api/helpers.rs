//! `spawn_app()`: a real wxunion on a random port, its own fresh Postgres database (or SQLite
//! file), its own Redis key prefix, and its own in-process WeChat simulator.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;

use serde_json::{Value, json};
use wxunion::app::Application;
use wxunion::clock::OffsetClock;
use wxunion::config::Config;
use wxunion::sim::{SimApp, Simulator};

pub const MP1: &str = "wx1000000000000001";
pub const MP2: &str = "wx1000000000000002";
pub const MP3: &str = "wx1000000000000003";
pub const MP_OTHER: &str = "wx3000000000000001";
pub const OA: &str = "wx2000000000000001";
pub const OA_CLASSIC: &str = "wx2000000000000002";
pub const OA_UNBOUND: &str = "wx4000000000000001";
pub const WEB: &str = "wx5000000000000001";
pub const OA_TOKEN: &str = "test-callback-token";
pub const OA_AES_KEY: &str = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C";
pub const WELCOME: &str = "Welcome to ACME <3";
pub const API_KEY: &str = "test-service-key-0123456789";

pub const APPS_TOML: &str = r#"
[[api_keys]]
name = "tests"
key = "test-service-key-0123456789"

[[apps]]
app_id = "wx1000000000000001"
secret = "secret-mp1"
kind = "mini_program"
open_platform = "acme"

[[apps]]
app_id = "wx1000000000000002"
secret = "secret-mp2"
kind = "mini_program"
open_platform = "acme"

[[apps]]
app_id = "wx1000000000000003"
secret = "secret-mp3"
kind = "mini_program"
open_platform = "acme"

[[apps]]
app_id = "wx3000000000000001"
secret = "secret-other"
kind = "mini_program"
open_platform = "globex"

[[apps]]
app_id = "wx2000000000000001"
secret = "secret-oa"
kind = "official_account"
open_platform = "acme"
token = "test-callback-token"
encoding_aes_key = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"
subscribe_reply = "Welcome to ACME <3"

[[apps]]
app_id = "wx2000000000000002"
secret = "secret-oa-classic"
kind = "official_account"
open_platform = "acme"
token = "test-callback-token"
token_endpoint = "classic"

[[apps]]
app_id = "wx5000000000000001"
secret = "secret-web"
kind = "website"
open_platform = "acme"

[[apps]]
app_id = "wx4000000000000001"
secret = "secret-oa-unbound"
kind = "official_account"
token = "test-callback-token"
"#;

/// For tests that put tens or hundreds of requests at once on their one runtime thread (a
/// debug build): database and Redis bounds far above the production defaults (1 s, 0.5 s),
/// which such a queue of requests can pass without anything being wrong.
pub const HEAVY_LOAD: &str = "database_timeout_ms = 10000\nredis_timeout_ms = 5000";

/// Which database a test app runs on.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Db {
    Postgres,
    Sqlite,
}

/// Options for `spawn_with`.
pub struct Options {
    pub db: Db,
    /// Extra TOML put before the apps (top-level keys).
    pub extra: String,
    /// Share the database and Redis prefix of an existing app (multi-instance tests).
    pub share: Option<(String, String)>,
    /// Use this simulator instead of a new one.
    pub sim: Option<Simulator>,
    /// Reach Redis at this URL (a fault test's proxy) instead of 127.0.0.1:6379.
    pub redis_url: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            db: Db::Postgres,
            extra: String::new(),
            share: None,
            sim: None,
            redis_url: None,
        }
    }
}

pub struct TestApp {
    pub addr: SocketAddr,
    pub sim: Simulator,
    pub database_url: String,
    pub redis_prefix: String,
    pub clock: OffsetClock,
    pub http: reqwest::Client,
    pub config: Config,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
    /// The database and Redis keys this app created (none when it shares another's).
    owned: Option<TestDb>,
    _tmp: tempfile::TempDir,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.server.abort();
        if let Some(mut owned) = self.owned.take() {
            owned.redis_prefix = Some(self.redis_prefix.clone());
            drop(owned);
        }
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_with(Options::default()).await
}

/// A uniquely named, empty Postgres database, dropped (with any Redis keys under `prefix`)
/// when this guard goes out of scope, also when the test fails.
pub struct TestDb {
    pub url: String,
    /// The database to drop; none for a guard of Redis keys only.
    name: Option<String>,
    redis_prefix: Option<String>,
}

/// Creates a uniquely named, empty Postgres database.
pub async fn fresh_postgres() -> TestDb {
    use sea_orm::ConnectionTrait;
    let name = format!("wxunion_test_{}", uuid::Uuid::new_v4().simple());
    let admin = sea_orm::Database::connect("postgres://postgres@127.0.0.1:5432/postgres")
        .await
        .expect("PostgreSQL must run on 127.0.0.1:5432 for the tests");
    admin
        .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
        .await
        .unwrap();
    admin.close().await.unwrap();
    TestDb {
        url: format!("postgres://postgres@127.0.0.1:5432/{name}"),
        name: Some(name),
        redis_prefix: None,
    }
}

/// Deletes the Redis keys of a test (all start with its unique prefix).
async fn delete_redis_keys(prefix: &str) -> redis::RedisResult<()> {
    let client = redis::Client::open("redis://127.0.0.1:6379")?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await?;
        if !keys.is_empty() {
            redis::cmd("DEL")
                .arg(&keys)
                .query_async::<()>(&mut conn)
                .await?;
        }
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}

/// Removes a test's database (if it owns one) and Redis keys. Runs on its own thread and
/// runtime, since `Drop` cannot await and the test's runtime may be shutting down.
fn clean_up(database: Option<String>, redis_prefix: Option<String>) {
    let work = move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(async move {
            use sea_orm::ConnectionTrait;
            if let Some(name) = database
                && let Ok(admin) =
                    sea_orm::Database::connect("postgres://postgres@127.0.0.1:5432/postgres").await
            {
                let _ = admin
                    .execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                    .await;
                let _ = admin.close().await;
            }
            if let Some(prefix) = redis_prefix {
                let _ = delete_redis_keys(&prefix).await;
            }
        });
    };
    let _ = std::thread::spawn(work).join();
}

impl TestDb {
    /// A guard for Redis keys only (SQLite tests keep their file in a temporary folder).
    pub fn redis_only(prefix: &str) -> TestDb {
        TestDb {
            url: String::new(),
            name: None,
            redis_prefix: Some(prefix.to_owned()),
        }
    }

    /// Also delete the Redis keys under `prefix` when this database goes.
    pub fn with_redis_prefix(mut self, prefix: &str) -> TestDb {
        self.redis_prefix = Some(prefix.to_owned());
        self
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        clean_up(self.name.take(), self.redis_prefix.take());
    }
}

/// A child process that cannot outlive a failing test: killed (SIGKILL) and reaped on drop.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Loads `text` through the real configuration loader.
pub fn load_config(dir: &std::path::Path, text: &str) -> Config {
    let path = dir.join("wxunion.toml");
    let mut f = std::fs::File::create(&path).unwrap();
    f.write_all(text.as_bytes()).unwrap();
    Config::load(Some(&path), Vec::new()).unwrap()
}

pub fn sim_apps(config: &Config) -> Vec<SimApp> {
    config.apps.iter().map(SimApp::from).collect()
}

/// Logs at warn and above, captured per test and shown when it fails.
fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(tracing_subscriber::EnvFilter::new("warn"))
        .try_init();
}

pub async fn spawn_with(opts: Options) -> TestApp {
    init_logs();
    let tmp = tempfile::tempdir().unwrap();
    let mut owned = None;
    let (database_url, redis_prefix) = match opts.share {
        Some(shared) => shared,
        None => {
            let prefix = format!("wxunion-test-{}:", uuid::Uuid::new_v4().simple());
            let url = match opts.db {
                Db::Postgres => {
                    let db = fresh_postgres().await;
                    let url = db.url.clone();
                    owned = Some(db);
                    url
                }
                Db::Sqlite => {
                    owned = Some(TestDb::redis_only(&prefix));
                    format!(
                        "sqlite://{}?mode=rwc",
                        tmp.path().join("wxunion.db").display()
                    )
                }
            };
            (url, prefix)
        }
    };
    let sim = match opts.sim {
        Some(sim) => sim,
        None => Simulator::spawn(
            sim_apps(&load_config(tmp.path(), APPS_TOML)),
            "127.0.0.1:0".parse().unwrap(),
        )
        .await
        .unwrap(),
    };
    let redis_url = opts
        .redis_url
        .unwrap_or_else(|| "redis://127.0.0.1:6379".to_owned());
    let text = format!(
        "listen = \"127.0.0.1:0\"\ndatabase_url = \"{database_url}\"\nredis_url = \"{redis_url}\"\n\
         redis_prefix = \"{redis_prefix}\"\nwechat_api_base = \"{}\"\n{}\n{APPS_TOML}",
        sim.base_url(),
        opts.extra
    );
    let config = load_config(tmp.path(), &text);
    let clock = OffsetClock::default();
    let app = Application::build_with_clock(config.clone(), Arc::new(clock.clone()))
        .await
        .unwrap();
    let addr = app.local_addr();
    sim.state.set_callback_base(&format!("http://{addr}"));
    let server = tokio::spawn(app.run_until_stopped(std::future::pending()));
    TestApp {
        addr,
        sim,
        database_url,
        redis_prefix,
        clock,
        http: reqwest::Client::new(),
        config,
        server,
        owned,
        _tmp: tmp,
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn sim_url(&self, path: &str) -> String {
        format!("{}{path}", self.sim.base_url())
    }

    /// Runs a GraphQL operation; returns the whole JSON response.
    pub async fn graphql(&self, query: &str, variables: Value, bearer: Option<&str>) -> Value {
        let mut req = self
            .http
            .post(self.url("/graphql"))
            .json(&json!({ "query": query, "variables": variables }));
        if let Some(token) = bearer {
            req = req.bearer_auth(token);
        }
        let resp = req.send().await.unwrap();
        assert!(
            resp.status().is_success(),
            "graphql status {}",
            resp.status()
        );
        resp.json().await.unwrap()
    }

    /// Asks the simulator for a login code, as `wx.login` would give one.
    pub async fn mint_code(&self, app_id: &str, person: &str) -> String {
        let body = json!({ "app_id": app_id, "person": person });
        let v = post_json(&self.http, &self.sim_url("/sim/code"), &body).await;
        v["code"].as_str().unwrap().to_owned()
    }

    pub async fn login_with_code(&self, app_id: &str, code: &str) -> Value {
        self.graphql(LOGIN, json!({ "appId": app_id, "code": code }), None)
            .await
    }

    /// Mints a code and logs in; panics unless the login succeeded.
    pub async fn login(&self, app_id: &str, person: &str) -> Value {
        let code = self.mint_code(app_id, person).await;
        let v = self.login_with_code(app_id, &code).await;
        assert!(v["errors"].is_null(), "login failed: {v}");
        v["data"]["loginWithCode"].clone()
    }

    pub async fn user(&self, union_id: &str, bearer: Option<&str>) -> Value {
        self.graphql(USER, json!({ "unionId": union_id }), bearer)
            .await
    }

    pub async fn resolve(&self, app_id: &str, open_id: &str, bearer: Option<&str>) -> Value {
        self.graphql(
            RESOLVE,
            json!({ "appId": app_id, "openId": open_id }),
            bearer,
        )
        .await
    }

    /// Posts a simulator control call (follow, unfollow, message, faults, ...).
    pub async fn sim_post(&self, path: &str, body: Value) -> Value {
        let resp = self
            .http
            .post(self.sim_url(path))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "sim {path}: {}", resp.status());
        resp.json().await.unwrap()
    }

    pub async fn sim_counts(&self) -> Value {
        get_json(&self.http, &self.sim_url("/sim/counts")).await
    }

    /// Drops this app's database under it (connections are terminated): an outage.
    pub async fn drop_database(&self) {
        use sea_orm::ConnectionTrait;
        let name = self.database_url.rsplit('/').next().unwrap().to_owned();
        let admin = sea_orm::Database::connect("postgres://postgres@127.0.0.1:5432/postgres")
            .await
            .unwrap();
        admin
            .execute_unprepared(&format!("DROP DATABASE \"{name}\" WITH (FORCE)"))
            .await
            .unwrap();
    }

    /// The use cases over this app's database and Redis prefix, as a second instance (or the
    /// CLI) would have them.
    pub async fn service(&self) -> wxunion::identity::Service {
        wxunion::identity::Service::connect(
            self.config.clone(),
            Arc::new(wxunion::clock::SystemClock),
        )
        .await
        .unwrap()
    }

    /// A second connection to this app's database, for assertions on what was stored.
    pub async fn db(&self) -> sea_orm::DatabaseConnection {
        wxunion::store::connect(&self.database_url, 2)
            .await
            .unwrap()
    }

    pub async fn count(&self, sql: &str) -> i64 {
        use sea_orm::{ConnectionTrait, Statement};
        let db = self.db().await;
        let row = db
            .query_one_raw(Statement::from_string(
                db.get_database_backend(),
                sql.to_owned(),
            ))
            .await
            .unwrap()
            .unwrap();
        let n: i64 = row.try_get_by_index(0).unwrap();
        db.close().await.unwrap();
        n
    }
}

/// `/metrics` as text.
impl TestApp {
    pub async fn metrics(&self) -> String {
        let resp = self.http.get(self.url("/metrics")).send().await.unwrap();
        resp.text().await.unwrap()
    }
}

/// POSTs JSON and parses the JSON answer.
pub async fn post_json(http: &reqwest::Client, url: &str, body: &Value) -> Value {
    http.post(url)
        .json(body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// GETs a URL and parses its JSON body.
pub async fn get_json(http: &reqwest::Client, url: &str) -> Value {
    http.get(url).send().await.unwrap().json().await.unwrap()
}

/// The code of the first GraphQL error, if any.
pub fn error_code(v: &Value) -> Option<&str> {
    v["errors"][0]["extensions"]["code"].as_str()
}

/// Polls `check` until it returns Some or the deadline passes.
pub async fn eventually<T, F, Fut>(seconds: u64, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "condition not met within {seconds}s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

pub const LOGIN: &str = "mutation($appId: String!, $code: String!) {
  loginWithCode(appId: $appId, code: $code) {
    sessionToken expiresAt isNewUser
    user { id unionId createdAt identities { appId appKind openId unionId subscribed firstSeenAt lastSeenAt } }
    identity { appId appKind openId unionId }
  }
}";

pub const USER: &str = "query($unionId: String!) {
  user(unionId: $unionId) { id unionId identities { appId appKind openId unionId subscribed } }
}";

pub const ME: &str = "{ me { id unionId identities { appId openId } } }";

pub const RESOLVE: &str = "mutation($appId: String!, $openId: String!) {
  resolveOpenId(appId: $appId, openId: $openId) {
    user { id unionId identities { appId openId } }
    identity { appId appKind openId unionId subscribed }
  }
}";

/// A Node project under `tests/` (a pinned `package-lock.json`), installed with `npm ci` the
/// first time it is needed. Node and npm must be on the PATH.
pub async fn node_project(name: &str) -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join(name);
    if !dir.join("node_modules").exists() {
        let out = tokio::process::Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
            .current_dir(&dir)
            .output()
            .await
            .expect("npm must be installed to run the Node-driven tests");
        assert!(
            out.status.success(),
            "npm ci in {}: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    dir
}

/// The configuration `cargo run` gets with no file (sandbox mode), on random ports and a
/// SQLite file in `dir`.
pub fn sandbox_config(dir: &std::path::Path) -> Config {
    let env = vec![
        ("WXUNION_LISTEN".to_owned(), "127.0.0.1:0".to_owned()),
        ("WXUNION_SIM_LISTEN".to_owned(), "127.0.0.1:0".to_owned()),
        (
            "WXUNION_DATABASE_URL".to_owned(),
            format!("sqlite://{}?mode=rwc", dir.join("wxunion.db").display()),
        ),
    ];
    let config = Config::load(None, env).unwrap();
    assert!(config.sandbox);
    config
}

/// Rows of `table` read by sequential scans, as PostgreSQL's statistics count them, after
/// making the backend behind `db` publish its own (use a pool of one connection, so that the
/// statements measured ran on that backend).
pub async fn rows_read_by_sequential_scans(db: &sea_orm::DatabaseConnection, table: &str) -> i64 {
    use sea_orm::{ConnectionTrait, Statement};
    db.execute_unprepared("SELECT pg_stat_force_next_flush()")
        .await
        .unwrap();
    let sql = Statement::from_sql_and_values(
        db.get_database_backend(),
        "SELECT COALESCE(seq_tup_read, 0) FROM pg_stat_user_tables WHERE relname = $1",
        [table.into()],
    );
    let row = db.query_one_raw(sql).await.unwrap().unwrap();
    row.try_get_by_index::<i64>(0).unwrap()
}

/// A loopback port free at the moment of asking, for a `wxunion` process started by a test.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
