//! Unit tests for `config`.

use super::*;
use std::io::Write;

fn load_str(toml: &str) -> Result<Config, ConfigError> {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(toml.as_bytes()).unwrap();
    Config::load(Some(f.path()), Vec::new())
}

const OA: &str = r#"
[[apps]]
app_id = "wx2222222222222222"
secret = "s"
kind = "official_account"
token = "t"
"#;

#[test]
fn no_file_means_sandbox_with_sqlite_defaults() {
    let c = Config::load(None, Vec::new()).unwrap();
    assert!(c.sandbox);
    assert_eq!(c.database_url, DEFAULT_DATABASE_URL);
    assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
}

#[test]
fn a_file_is_not_sandbox_unless_it_says_so() {
    assert!(!load_str(OA).unwrap().sandbox);
    assert!(load_str(&format!("sandbox = true\n{OA}")).unwrap().sandbox);
}

#[test]
fn environment_overrides_top_level_scalars() {
    let env = vec![
        ("WXUNION_LISTEN".to_owned(), "0.0.0.0:9000".to_owned()),
        ("WXUNION_SANDBOX".to_owned(), "false".to_owned()),
        ("WXUNION_SESSION_TTL_SECONDS".to_owned(), "60".to_owned()),
        ("UNRELATED".to_owned(), "x".to_owned()),
    ];
    let c = Config::load(None, env).unwrap();
    assert_eq!(c.listen.to_string(), "0.0.0.0:9000");
    assert!(!c.sandbox);
    assert_eq!(c.session_ttl_seconds, 60);
}

#[test]
fn a_bad_environment_value_names_the_variable() {
    let env = vec![("WXUNION_SANDBOX".to_owned(), "maybe".to_owned())];
    let e = Config::load(None, env).unwrap_err().to_string();
    assert_eq!(
        e,
        "config error: environment WXUNION_SANDBOX: sandbox: expected true or false"
    );
}

#[test]
fn unknown_kind_names_the_key() {
    let e =
        load_str("[[apps]]\napp_id = \"wx1111111111111111\"\nsecret = \"s\"\nkind = \"game\"\n")
            .unwrap_err();
    assert_eq!(e.key, "apps[0].kind");
    assert!(e.problem.contains("unknown variant `game`"), "{e}");
}

#[test]
fn duplicate_app_id_is_rejected() {
    let e = load_str(&format!("{OA}{OA}")).unwrap_err();
    assert_eq!(e.key, "apps[1].app_id");
    assert!(e.problem.contains("duplicate"));
}

#[test]
fn official_account_without_token_is_rejected() {
    let e = load_str(
        "[[apps]]\napp_id = \"wx2222222222222222\"\nsecret = \"s\"\nkind = \"official_account\"\n",
    )
    .unwrap_err();
    assert_eq!(e.key, "apps[0].token");
}

#[test]
fn short_encoding_aes_key_is_rejected() {
    let e = load_str(&format!("{OA}encoding_aes_key = \"abc\"\n")).unwrap_err();
    assert_eq!(e.key, "apps[0].encoding_aes_key");
    assert_eq!(e.problem, "must be 43 base64 characters");
}

#[test]
fn unreadable_file_is_one_line() {
    let e = Config::load(Some(Path::new("/nonexistent/wx.toml")), Vec::new()).unwrap_err();
    let line = e.to_string();
    assert!(line.starts_with("config error: /nonexistent/wx.toml: (file): cannot read"));
    assert!(!line.contains('\n'));
}

#[test]
fn unknown_key_is_a_typo_not_silence() {
    let e = load_str("lisen = \"127.0.0.1:1\"\n").unwrap_err();
    assert!(e.problem.contains("unknown field `lisen`"), "{e}");
}

#[test]
fn debug_output_never_contains_secrets() {
    let c = load_str(&format!(
        "{OA}\n[[api_keys]]\nname = \"crm\"\nkey = \"super-secret-api-key-123\"\n"
    ))
    .unwrap();
    let dbg = format!("{c:?}");
    assert!(!dbg.contains("super-secret-api-key-123"));
    assert!(!dbg.contains("secret = \"s\""));
    assert_eq!(
        c.api_keys[0].sha256_hex,
        sha256_hex("super-secret-api-key-123")
    );
}

#[test]
fn graphiql_is_on_unless_turned_off() {
    assert!(Config::load(None, Vec::new()).unwrap().graphiql);
    assert!(load_str(OA).unwrap().graphiql);
    assert!(
        !load_str(&format!("graphiql = false\n{OA}"))
            .unwrap()
            .graphiql
    );
    let env = |v: &str| vec![("WXUNION_GRAPHIQL".to_owned(), v.to_owned())];
    assert!(!Config::load(None, env("false")).unwrap().graphiql);
    assert!(!Config::load(None, env("0")).unwrap().graphiql);
    assert!(Config::load(None, env("true")).unwrap().graphiql);
    let e = Config::load(None, env("off")).unwrap_err().to_string();
    assert_eq!(
        e,
        "config error: environment WXUNION_GRAPHIQL: graphiql: expected true or false"
    );
    let e = load_str(&format!("graphiql = \"yes\"\n{OA}")).unwrap_err();
    assert_eq!(e.key, "graphiql");
}

#[test]
fn http_limits_have_defaults() {
    let c = load_str(OA).unwrap();
    assert_eq!(c.http_header_read_timeout_seconds, 10);
    assert_eq!(c.http_idle_timeout_seconds, 60);
    assert_eq!(c.http_request_timeout_seconds, 30);
    assert_eq!(c.http_max_connections, 1024);
    assert_eq!(c.shutdown_grace_seconds, 10);
}

#[test]
fn http_limits_come_from_the_file_and_the_environment() {
    let env = vec![
        ("WXUNION_HTTP_MAX_CONNECTIONS".to_owned(), "64".to_owned()),
        ("WXUNION_SHUTDOWN_GRACE_SECONDS".to_owned(), "0".to_owned()),
        (
            "WXUNION_HTTP_REQUEST_TIMEOUT_SECONDS".to_owned(),
            "45".to_owned(),
        ),
    ];
    let c = Config::load(None, env).unwrap();
    assert_eq!(c.http_max_connections, 64);
    assert_eq!(c.shutdown_grace_seconds, 0);
    assert_eq!(c.http_request_timeout_seconds, 45);
    let c = load_str(&format!(
        "http_header_read_timeout_seconds = 3\nhttp_idle_timeout_seconds = 120\n{OA}"
    ))
    .unwrap();
    assert_eq!(c.http_header_read_timeout_seconds, 3);
    assert_eq!(c.http_idle_timeout_seconds, 120);
}

#[test]
fn http_limits_out_of_bounds_are_one_line_errors() {
    let e = load_str(&format!("http_header_read_timeout_seconds = 0\n{OA}")).unwrap_err();
    assert_eq!(e.key, "http_header_read_timeout_seconds");
    assert_eq!(e.problem, "must be between 1 and 300, not 0");
    let e = load_str(&format!("http_max_connections = 2000000\n{OA}")).unwrap_err();
    assert_eq!(e.key, "http_max_connections");
    assert_eq!(e.problem, "must be between 1 and 1000000, not 2000000");
    let env = vec![(
        "WXUNION_HTTP_IDLE_TIMEOUT_SECONDS".to_owned(),
        "soon".to_owned(),
    )];
    let e = Config::load(None, env).unwrap_err().to_string();
    assert_eq!(
        e,
        "config error: environment WXUNION_HTTP_IDLE_TIMEOUT_SECONDS: http_idle_timeout_seconds: expected a whole number"
    );
    let e = Config::load(
        None,
        vec![(
            "WXUNION_SHUTDOWN_GRACE_SECONDS".to_owned(),
            "7200".to_owned(),
        )],
    )
    .unwrap_err()
    .to_string();
    assert_eq!(
        e,
        "config error: (no config file): shutdown_grace_seconds: must be between 0 and 3600, not 7200"
    );
}

#[test]
fn an_unknown_wxunion_variable_is_a_one_line_error_like_an_unknown_key() {
    let env = vec![("WXUNION_DATABSE_URL".to_owned(), "postgres://x".to_owned())];
    let e = Config::load(None, env).unwrap_err();
    assert_eq!(e.origin, "environment WXUNION_DATABSE_URL");
    assert_eq!(e.key, "databse_url");
    assert!(e.problem.starts_with("unknown field"), "{}", e.problem);
    assert!(e.problem.contains("`database_url`"), "{}", e.problem);
    let file = load_str(&format!("databse_url = \"x\"\n{OA}")).unwrap_err();
    assert!(
        file.problem.starts_with("unknown field"),
        "{}",
        file.problem
    );
    // WXUNION_CONFIG names the file; it is the command line's, not a key.
    let env = vec![("WXUNION_CONFIG".to_owned(), "/nowhere".to_owned())];
    assert!(Config::load(None, env).is_ok());
}

#[test]
fn every_duration_and_size_has_an_upper_bound() {
    let cases = [
        ("session_ttl_seconds", "9223372036854775807"),
        ("job_lease_seconds", "9999999999"),
        ("wechat_timeout_ms", "86400000"),
        ("database_max_connections", "5000"),
        ("job_workers", "100000"),
        ("runtime_threads", "1025"),
        ("max_forced_token_refreshes_per_hour", "1000000"),
        ("http_request_timeout_seconds", "999999"),
        ("shutdown_grace_seconds", "7200"),
        ("database_timeout_ms", "60001"),
        ("redis_timeout_ms", "10001"),
        ("login_rate_per_client", "1000001"),
        ("login_rate_per_app", "1000001"),
    ];
    for (key, value) in cases {
        let e = load_str(&format!("{key} = {value}\n{OA}"));
        let e = e.expect_err(key);
        assert_eq!(e.key, key, "{e}");
        let env = vec![(format!("WXUNION_{}", key.to_uppercase()), value.to_owned())];
        let e = Config::load(None, env).expect_err(key);
        assert_eq!(e.key, key, "{e}");
    }
    let e = load_str(&format!("session_ttl_seconds = 99999999\n{OA}")).unwrap_err();
    assert_eq!(e.problem, "must be between 60 and 31622400, not 99999999");
}

#[test]
fn sandbox_defaults_are_part_of_the_loaded_configuration() {
    let c = Config::load(None, Vec::new()).unwrap();
    assert!(c.sandbox);
    assert_eq!(c.apps.len(), 4);
    assert_eq!(c.api_keys.len(), 1);
    assert_eq!(
        c.api_keys[0].sha256_hex,
        sha256_hex(crate::config::demo::DEMO_API_KEY)
    );
    // A file's own apps and keys are kept as they are, sandbox or not.
    let own = load_str(&format!("sandbox = true\n{OA}")).unwrap();
    assert_eq!(own.apps.len(), 1);
    // Without sandbox mode nothing is added.
    let plain = load_str(OA).unwrap();
    assert!(plain.api_keys.is_empty());
}

#[test]
fn event_retention_defaults_to_a_year_is_bounded_and_overridable() {
    assert_eq!(load_str(OA).unwrap().event_retention_days, 365);
    assert_eq!(
        load_str(&format!("event_retention_days = 30\n{OA}"))
            .unwrap()
            .event_retention_days,
        30
    );
    let e = load_str(&format!("event_retention_days = 0\n{OA}")).unwrap_err();
    assert_eq!(e.key, "event_retention_days");
    assert_eq!(e.problem, "must be between 1 and 3650, not 0");
    let e = load_str(&format!("event_retention_days = 4000\n{OA}")).unwrap_err();
    assert_eq!(e.problem, "must be between 1 and 3650, not 4000");
    let env = vec![("WXUNION_EVENT_RETENTION_DAYS".to_owned(), "90".to_owned())];
    assert_eq!(Config::load(None, env).unwrap().event_retention_days, 90);
}

#[test]
fn fault_bounds_and_login_limits_have_defaults_and_zero_turns_a_limit_off() {
    let c = load_str(OA).unwrap();
    assert_eq!(c.database_timeout_ms, 1_000);
    assert_eq!(c.redis_timeout_ms, 500);
    assert_eq!(c.login_rate_per_client, 60);
    assert_eq!(c.login_rate_per_app, 1_000);
    assert!(c.trusted_proxies.is_empty());
    // Sandbox mode keeps the limits on.
    let sandbox = Config::load(None, Vec::new()).unwrap();
    assert_eq!(sandbox.login_rate_per_client, 60);
    assert_eq!(sandbox.login_rate_per_app, 1_000);
    let off = load_str(&format!(
        "login_rate_per_client = 0\nlogin_rate_per_app = 0\n{OA}"
    ))
    .unwrap();
    assert_eq!((off.login_rate_per_client, off.login_rate_per_app), (0, 0));
    for (key, value, problem) in [
        (
            "database_timeout_ms",
            "99",
            "must be between 100 and 60000, not 99",
        ),
        (
            "redis_timeout_ms",
            "9",
            "must be between 10 and 10000, not 9",
        ),
    ] {
        let e = load_str(&format!("{key} = {value}\n{OA}")).unwrap_err();
        assert_eq!((e.key.as_str(), e.problem.as_str()), (key, problem));
    }
}

#[test]
fn trusted_proxies_are_networks_from_the_file_or_a_comma_separated_variable() {
    let c = load_str(&format!(
        "trusted_proxies = [\"10.0.0.0/8\", \"127.0.0.1\", \"::1\"]\n{OA}"
    ))
    .unwrap();
    let shown: Vec<String> = c.trusted_proxies.iter().map(|n| n.to_string()).collect();
    assert_eq!(shown, ["10.0.0.0/8", "127.0.0.1/32", "::1/128"]);
    let env = vec![(
        "WXUNION_TRUSTED_PROXIES".to_owned(),
        " 192.168.0.0/16 , 127.0.0.1,".to_owned(),
    )];
    let c = Config::load(None, env).unwrap();
    let shown: Vec<String> = c.trusted_proxies.iter().map(|n| n.to_string()).collect();
    assert_eq!(shown, ["192.168.0.0/16", "127.0.0.1/32"]);
    let e = load_str(&format!(
        "trusted_proxies = [\"10.0.0.0/8\", \"proxy.local\"]\n{OA}"
    ))
    .unwrap_err();
    assert_eq!(e.key, "trusted_proxies[1]");
    assert!(e.problem.contains("not an IP address"), "{e}");
    let e = load_str(&format!("trusted_proxies = [\"10.0.0.0/40\"]\n{OA}")).unwrap_err();
    assert_eq!(e.key, "trusted_proxies[0]");
    let env = vec![(
        "WXUNION_TRUSTED_PROXIES".to_owned(),
        "10.0.0.0/8,nope".to_owned(),
    )];
    let e = Config::load(None, env).unwrap_err();
    assert_eq!(e.key, "trusted_proxies[1]");
}

#[test]
fn a_text_already_read_loads_exactly_like_the_file_it_came_from() {
    let ok = format!("sandbox = false\n{OA}");
    let bad = format!("{OA}{OA}");
    let syntax = "listen = \"127.0.0.1:8080\nsandbox = tru\n".to_owned();
    for text in [ok, bad, syntax] {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        let env = || vec![("WXUNION_JOB_WORKERS".to_owned(), "2".to_owned())];
        let from_file = Config::load(Some(f.path()), env());
        let from_text = Config::from_text(Some((f.path(), &text)), env());
        assert_eq!(format!("{from_file:?}"), format!("{from_text:?}"), "{text}");
    }
    let none = Config::from_text(None, Vec::new()).unwrap();
    assert!(none.sandbox);
    assert_eq!(none.source, None);
}

#[test]
fn runtime_threads_default_to_one_per_cpu_and_come_from_the_file_or_the_environment() {
    assert_eq!(load_str(OA).unwrap().runtime_threads, 0);
    assert_eq!(
        load_str(&format!("runtime_threads = 1\n{OA}"))
            .unwrap()
            .runtime_threads,
        1
    );
    let env = vec![("WXUNION_RUNTIME_THREADS".to_owned(), "3".to_owned())];
    assert_eq!(Config::load(None, env).unwrap().runtime_threads, 3);
    let e = load_str(&format!("runtime_threads = -1\n{OA}")).unwrap_err();
    assert_eq!(e.key, "runtime_threads", "{e}");
}
