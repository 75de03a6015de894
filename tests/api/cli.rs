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
