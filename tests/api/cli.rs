//! The `wxunion` binary itself: configuration errors, `schema`, `migrate`.

use std::process::Command;

use crate::helpers::*;

fn wxunion() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_wxunion"));
    for (k, _) in std::env::vars() {
        if k.starts_with("WXUNION_") {
            c.env_remove(k);
        }
    }
    c
}

/// Runs `wxunion --config <file with text> serve` and returns (exit code, stderr).
fn serve_with(text: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, text).unwrap();
    let out = wxunion()
        .arg("--config")
        .arg(&path)
        .arg("serve")
        .output()
        .unwrap();
    let stderr = String::from_utf8(out.stderr)
        .unwrap()
        .replace(&path.display().to_string(), "FILE");
    (out.status.code(), stderr)
}

#[test]
fn bad_configurations_stop_the_start_with_one_clear_line() {
    let app =
        |extra: &str| format!("[[apps]]\napp_id = \"wx2222222222222222\"\nsecret = \"s\"\n{extra}");
    let cases = [
        (
            app("kind = \"game\"\n"),
            "config error: FILE: apps[0].kind: unknown variant `game`, expected one of `mini_program`, `official_account`, `website`, `mobile`",
        ),
        (
            format!(
                "{0}kind = \"mini_program\"\n{0}kind = \"mini_program\"\n",
                "[[apps]]\napp_id = \"wx2222222222222222\"\nsecret = \"s\"\n"
            ),
            "config error: FILE: apps[1].app_id: duplicate app_id `wx2222222222222222`",
        ),
        (
            app("kind = \"official_account\"\ntoken = \"t\"\nencoding_aes_key = \"tooshort\"\n"),
            "config error: FILE: apps[0].encoding_aes_key: must be 43 base64 characters",
        ),
        (
            app("kind = \"official_account\"\n"),
            "config error: FILE: apps[0].token: an official account needs its callback token",
        ),
        (
            "listen = \"nowhere\"\n".to_owned(),
            "config error: FILE: listen: `nowhere` is not an address like 127.0.0.1:8080",
        ),
    ];
    for (text, expected) in cases {
        let (code, stderr) = serve_with(&text);
        assert_eq!(code, Some(2), "{stderr}");
        assert_eq!(stderr.trim_end(), expected);
        assert_eq!(stderr.lines().count(), 1);
    }
}

#[test]
fn an_unreadable_config_file_is_one_line() {
    let out = wxunion()
        .args(["--config", "/nonexistent/wxunion.toml", "serve"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.starts_with("config error: /nonexistent/wxunion.toml: (file): cannot read the file"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1);
}

#[test]
fn a_secret_in_a_bad_config_is_not_echoed() {
    let (_, stderr) = serve_with(
        "[[apps]]\napp_id = \"wx2222222222222222\"\nsecret = \"hunter2-secret\"\nkind = \"nope\"\n",
    );
    assert!(!stderr.contains("hunter2-secret"));
}

#[test]
fn schema_graphql_equals_what_wxunion_schema_prints() {
    let out = wxunion().arg("schema").output().unwrap();
    assert!(out.status.success());
    let printed = String::from_utf8(out.stdout).unwrap();
    let checked_in =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/schema.graphql")).unwrap();
    assert_eq!(printed, wxunion::graphql::sdl());
    assert!(
        checked_in == printed,
        "schema.graphql is stale: run `cargo run -- schema > schema.graphql`"
    );
    for op in [
        "loginWithCode(appId: String!, code: String!): LoginPayload!",
        "resolveOpenId(appId: String!, openId: String!): ResolvePayload!",
        "user(unionId: String!): User",
        "me: User",
        "userById(id: ID!): User",
        "identity(appId: String!, openId: String!): Identity",
        "logout: Boolean!",
        "revokeSessions(userId: ID!): Int!",
        "user: User!",
        "unionIdStatus: UnionIdStatus!",
        "events(first: Int = 20, after: String): EventConnection!",
    ] {
        assert!(printed.contains(op), "missing {op}");
    }
}

#[tokio::test]
async fn migrate_applies_migrations_and_exits() {
    let test_db = fresh_postgres().await;
    let url = test_db.url.clone();
    let out = wxunion()
        .arg("migrate")
        .env("WXUNION_CONFIG", "/dev/null")
        .env("WXUNION_DATABASE_URL", &url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let db = wxunion::store::connect(&url, 2).await.unwrap();
    use sea_orm::{ConnectionTrait, Statement};
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT COUNT(*) FROM seaql_migrations",
        ))
        .await
        .unwrap()
        .unwrap();
    let n: i64 = row.try_get_by_index(0).unwrap();
    use migration::MigratorTrait;
    assert_eq!(n, migration::Migrator::migrations().len() as i64);
}

/// Runs `wxunion check` with `args` (asynchronously: the simulator it talks to runs on this
/// test's runtime) and returns (exit code, stdout).
async fn check(
    args: &[&str],
    envs: &[(&str, &str)],
    dir: &std::path::Path,
) -> (Option<i32>, String) {
    let mut c = tokio::process::Command::from(wxunion());
    c.arg("check").args(args).current_dir(dir);
    for (k, v) in envs {
        c.env(k, v);
    }
    let out = c.output().await.unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.is_empty(), "stderr: {stderr}");
    (out.status.code(), stdout)
}

/// A configuration for `check` with the test app's database, Redis and simulator.
fn check_config(app: &TestApp, dir: &std::path::Path, apps: &str) -> std::path::PathBuf {
    let path = dir.join("wxunion.toml");
    let text = format!(
        "database_url = \"{}\"\nredis_url = \"redis://127.0.0.1:6379\"\nredis_prefix = \"{}\"\n\
         wechat_api_base = \"{}\"\n{apps}",
        app.database_url,
        app.redis_prefix,
        app.sim.base_url()
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// The lines of a report about one subject.
fn lines_about<'a>(out: &'a str, subject: &str) -> Vec<&'a str> {
    out.lines().filter(|l| l.contains(subject)).collect()
}

#[tokio::test]
async fn check_passes_a_good_configuration_and_never_prints_a_secret() {
    let app = spawn_app().await;
    app.login(MP1, "ann").await;
    app.login(MP1, "ben").await;
    let dir = tempfile::tempdir().unwrap();
    let path = check_config(&app, dir.path(), APPS_TOML);
    let config = path.to_str().unwrap();
    let (code, out) = check(
        &[
            "--config",
            config,
            "--public-url",
            "https://id.example.com/",
        ],
        &[],
        dir.path(),
    )
    .await;
    assert_eq!(code, Some(0), "{out}");
    assert!(!out.lines().any(|l| l.starts_with("FAIL")), "{out}");
    assert!(
        out.lines().any(|l| l.starts_with("ok    database")),
        "{out}"
    );
    assert!(out.lines().any(|l| l.starts_with("ok    cache")), "{out}");
    for id in [MP1, MP2, MP3, MP_OTHER, OA, OA_CLASSIC, OA_UNBOUND, WEB] {
        let lines = lines_about(&out, id);
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("ok") && l.contains("secret: accepted")),
            "{id}: {out}"
        );
    }
    assert!(
        lines_about(&out, MP1)
            .iter()
            .any(|l| l.contains("unionids: 2 of 2 identities (100%)")),
        "{out}"
    );
    // What to paste into the console, for each official account.
    for oa in [OA, OA_CLASSIC, OA_UNBOUND] {
        assert!(
            out.contains(&format!("https://id.example.com/wechat/callback/{oa}")),
            "{out}"
        );
    }
    assert!(out.contains("the `token` from your config"), "{out}");
    assert!(
        out.contains("the `encoding_aes_key` from your config"),
        "{out}"
    );
    for secret in [
        "secret-mp1",
        "secret-oa",
        "secret-web",
        OA_TOKEN,
        OA_AES_KEY,
        API_KEY,
    ] {
        assert!(!out.contains(secret), "{secret} printed:\n{out}");
    }
    assert!(out.trim_end().ends_with(": all good"), "{out}");
}

#[tokio::test]
async fn check_fails_and_names_the_app_whose_secret_is_wrong() {
    let app = spawn_app().await;
    let dir = tempfile::tempdir().unwrap();
    let path = check_config(
        &app,
        dir.path(),
        &APPS_TOML.replace("\"secret-mp2\"", "\"not-the-secret\""),
    );
    let (code, out) = check(&["--config", path.to_str().unwrap()], &[], dir.path()).await;
    assert_eq!(code, Some(1), "{out}");
    let failed: Vec<&str> = out.lines().filter(|l| l.starts_with("FAIL")).collect();
    assert_eq!(failed.len(), 1, "{out}");
    assert!(failed[0].contains(MP2), "{out}");
    assert!(failed[0].contains("wrong `secret`"), "{out}");
    assert!(failed[0].contains("40125"), "{out}");
    assert!(!out.contains("not-the-secret"), "{out}");
    assert!(
        out.contains("https://<your host>/wechat/callback/"),
        "{out}"
    );
    assert!(out.trim_end().ends_with("something is wrong"), "{out}");
}

#[tokio::test]
async fn check_fails_when_the_database_and_redis_are_unreachable() {
    let sim_app = spawn_app().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wxunion.toml");
    std::fs::write(
        &path,
        format!(
            "database_url = \"postgres://postgres@127.0.0.1:1/nothing\"\nredis_url = \"redis://127.0.0.1:1\"\n\
             wechat_api_base = \"{}\"\n{APPS_TOML}",
            sim_app.sim.base_url()
        ),
    )
    .unwrap();
    let (code, out) = check(&["--config", path.to_str().unwrap()], &[], dir.path()).await;
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.lines().any(|l| l.starts_with("FAIL  database")),
        "{out}"
    );
    assert!(out.lines().any(|l| l.starts_with("FAIL  cache")), "{out}");
}

#[tokio::test]
async fn check_in_sandbox_mode_uses_the_in_process_simulator() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out) = check(&[], &[], dir.path()).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("sandbox mode: WeChat is the simulator"),
        "{out}"
    );
    assert!(
        lines_about(&out, wxunion::sandbox::DEMO_MINI_PROGRAM)
            .iter()
            .any(|l| l.contains("secret: accepted")),
        "{out}"
    );
    assert!(!out.contains("sandbox-secret"), "{out}");
    assert!(!out.contains("sandbox-callback-token"), "{out}");
}

/// Starts `wxunion serve` on SQLite with `extra` added to the configuration and stdout piped;
/// returns the process and the "wxunion serving" log line.
fn serve_piped(extra: &str) -> (KillOnDrop, String, u16, tempfile::TempDir) {
    use std::io::BufRead;
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let path = tmp.path().join("wxunion.toml");
    let db = tmp.path().join("wxunion.db");
    std::fs::write(
        &path,
        format!(
            "listen = \"127.0.0.1:{port}\"\ndatabase_url = \"sqlite://{}?mode=rwc\"\n\
             sandbox = false\n{extra}\n{APPS_TOML}",
            db.display()
        ),
    )
    .unwrap();
    let mut child = KillOnDrop(
        wxunion()
            .arg("--config")
            .arg(&path)
            .arg("serve")
            .env("RUST_LOG", "info")
            .env_remove("TOKIO_WORKER_THREADS")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    let serving = std::io::BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find(|line| line.contains("wxunion serving"))
        .expect("serve logs that it is serving");
    (child, serving, port, tmp)
}

/// Logs going to a file or a pipe (a service manager, `docker logs`, a collector) are plain
/// text: no terminal colour codes around levels and field names. Before, every line carried
/// them, and formatting them was about 4 % of a callback's instructions.
#[test]
fn logs_written_to_a_pipe_carry_no_terminal_colour_codes() {
    let (_child, serving, port, _tmp) = serve_piped("");
    assert!(!serving.contains('\u{1b}'), "{serving:?}");
    assert!(serving.contains("INFO"), "{serving:?}");
    assert!(
        serving.contains(&format!("listen=127.0.0.1:{port}")),
        "{serving:?}"
    );
}

/// `runtime_threads` sets how many threads serve requests (the number is the running
/// runtime's own count, logged at start); without it there is one per CPU.
#[test]
fn serve_runs_as_many_runtime_threads_as_configured_and_one_per_cpu_by_default() {
    let (_one, serving, _, _tmp) = serve_piped("runtime_threads = 1");
    assert!(serving.contains("runtime_threads=1"), "{serving:?}");
    let (_three, serving, _, _tmp) = serve_piped("runtime_threads = 3");
    assert!(serving.contains("runtime_threads=3"), "{serving:?}");
    let cpus = std::thread::available_parallelism().unwrap().get();
    let (_default, serving, _, _tmp) = serve_piped("");
    assert!(
        serving.contains(&format!("runtime_threads={cpus}")),
        "{serving:?}"
    );
}
