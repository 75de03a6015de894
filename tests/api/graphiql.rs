//! GraphiQL on `GET /graphql`: served from the binary with a strict CSP, switchable, and
//! working in a real browser with no internet (Debian's chromium driven by
//! `tests/browser/graphiql.mjs`).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use reqwest::header;
use wxunion::app::Application;
use wxunion::http::graphiql::{CONTENT_SECURITY_POLICY, DISABLED, GRAPHIQL_VERSION};

use crate::helpers::*;

/// What a browser sends when it navigates to a page.
const BROWSER_ACCEPT: &str =
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8";

async fn get(app: &TestApp, path: &str) -> reqwest::Response {
    app.http
        .get(app.url(path))
        .header(header::ACCEPT, BROWSER_ACCEPT)
        .send()
        .await
        .unwrap()
}

fn header_of(resp: &reqwest::Response, name: header::HeaderName) -> &str {
    resp.headers()
        .get(&name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("no {name} header"))
}

/// The `src`/`href` of every `/graphiql/...` link in the page.
fn links(html: &str) -> Vec<String> {
    html.split('"')
        .filter(|s| s.starts_with("/graphiql/"))
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn graphiql_is_served_from_the_binary_with_a_strict_csp() {
    let app = spawn_with(Options {
        db: Db::Sqlite,
        ..Options::default()
    })
    .await;
    let page = get(&app, "/graphql").await;
    assert_eq!(page.status(), 200);
    assert_eq!(
        header_of(&page, header::CONTENT_TYPE),
        "text/html; charset=utf-8"
    );
    let csp = header_of(&page, header::CONTENT_SECURITY_POLICY).to_owned();
    assert_eq!(csp, CONTENT_SECURITY_POLICY);
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "font-src 'self'",
        "connect-src 'self'",
    ] {
        assert!(csp.contains(directive), "{directive} missing from {csp}");
    }
    assert!(!csp.contains("unsafe"), "{csp}");
    let html = page.text().await.unwrap();
    assert!(html.contains(GRAPHIQL_VERSION), "{html}");
    // init.js points GraphiQL's fetcher at the endpoint the page names.
    assert!(
        html.contains(r#"<meta name="graphql-endpoint" content="/graphql">"#),
        "{html}"
    );
    // No inline script or style, nothing from another host.
    assert!(
        !html.contains("<script>") && !html.contains("<style"),
        "{html}"
    );
    assert!(
        !html.contains("//cdn") && !html.contains("https://"),
        "{html}"
    );

    let links = links(&html);
    for file in [
        "react.production.min.js",
        "react-dom.production.min.js",
        "graphiql.min.js",
        "graphiql.min.css",
        "init.js",
        "page.css",
    ] {
        assert!(
            links
                .iter()
                .any(|l| l.starts_with(&format!("/graphiql/{file}?v="))),
            "the page does not load {file}: {links:?}"
        );
    }
    for link in &links {
        let resp = get(&app, link).await;
        assert_eq!(resp.status(), 200, "{link}");
        let want = if link.contains(".js?") {
            "text/javascript; charset=utf-8"
        } else if link.contains(".css?") {
            "text/css; charset=utf-8"
        } else {
            "image/svg+xml"
        };
        assert_eq!(header_of(&resp, header::CONTENT_TYPE), want, "{link}");
        assert_eq!(
            header_of(&resp, header::CACHE_CONTROL),
            "public, max-age=31536000, immutable",
            "{link}"
        );
        assert_eq!(header_of(&resp, header::X_CONTENT_TYPE_OPTIONS), "nosniff");
        let etag = header_of(&resp, header::ETAG).to_owned();

        // Without the version the file is revalidated, and an unchanged one is a 304.
        let bare = link.split('?').next().unwrap();
        let resp = get(&app, bare).await;
        assert_eq!(
            header_of(&resp, header::CACHE_CONTROL),
            "no-cache",
            "{bare}"
        );
        let resp = app
            .http
            .get(app.url(bare))
            .header(header::IF_NONE_MATCH, &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 304, "{bare}");
        assert!(resp.bytes().await.unwrap().is_empty());
    }

    // The style sheet's fonts are files of this server, not data: URLs or Google Fonts.
    let css = get(&app, "/graphiql/graphiql.min.css")
        .await
        .text()
        .await
        .unwrap();
    assert!(!css.contains("data:") && !css.contains("@import") && !css.contains("http"));
    let font = css
        .split("url(")
        .skip(1)
        .map(|s| s.split(')').next().unwrap())
        .find(|u| u.ends_with(".woff2"))
        .expect("a woff2 font in graphiql.min.css");
    let resp = get(&app, &format!("/graphiql/{font}")).await;
    assert_eq!(resp.status(), 200, "{font}");
    assert_eq!(header_of(&resp, header::CONTENT_TYPE), "font/woff2");
    assert_eq!(
        header_of(&resp, header::CACHE_CONTROL),
        "public, max-age=31536000, immutable"
    );

    assert_eq!(get(&app, "/graphiql/nope.js").await.status(), 404);
}

#[tokio::test]
async fn graphiql_false_turns_page_and_files_off() {
    let app = spawn_with(Options {
        db: Db::Sqlite,
        extra: "graphiql = false".into(),
        ..Options::default()
    })
    .await;
    assert!(!app.config.graphiql);
    for path in [
        "/graphql",
        "/graphiql/graphiql.min.js",
        "/graphiql/init.js",
        "/graphiql/page.css",
    ] {
        let resp = get(&app, path).await;
        assert_eq!(resp.status(), 404, "{path}");
        assert!(
            header_of(&resp, header::CONTENT_TYPE).starts_with("text/plain"),
            "{path}"
        );
        assert_eq!(resp.text().await.unwrap(), DISABLED, "{path}");
    }
    // The API itself is unaffected.
    let v = app
        .graphql("{ __typename }", serde_json::json!({}), None)
        .await;
    assert_eq!(v["data"]["__typename"], "Query", "{v}");
}

/// Runs `cmd` to completion within `limit`, killing it otherwise; returns (success, output).
async fn run(mut cmd: tokio::process::Command, limit: Duration) -> (bool, String) {
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    match tokio::time::timeout(limit, child.wait_with_output()).await {
        Ok(out) => {
            let out = out.unwrap();
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            (out.status.success(), text)
        }
        Err(_) => (false, format!("{cmd:?} did not finish within {limit:?}")),
    }
}

/// Sandbox mode (demo apps, in-process simulator, SQLite) on random ports, as `cargo run`
/// gives it, then `tests/browser/graphiql.mjs` against it in Debian's chromium: GraphiQL
/// loads with every request to another host blocked, logs in with a simulator code typed
/// into the editor, uses the session token from the headers editor, and shows the schema.
#[tokio::test]
async fn graphiql_works_in_a_real_browser_with_no_internet() {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned());
    assert!(
        Path::new(&chromium).exists(),
        "{chromium} is missing: the GraphiQL browser test needs Debian's chromium \
         (apt-get install chromium)"
    );
    let dir = node_project("browser").await;

    let tmp = tempfile::tempdir().unwrap();
    let config = sandbox_config(tmp.path());
    assert!(config.graphiql);
    let app = Application::build(config).await.unwrap();
    let sim = app
        .simulator()
        .expect("sandbox mode starts the simulator")
        .clone();
    let base = format!("http://{}", app.local_addr());
    let server = tokio::spawn(app.run_until_stopped(std::future::pending()));

    let screenshot = std::env::var("GRAPHIQL_SCREENSHOT").map_or_else(
        |_| Path::new(env!("CARGO_TARGET_TMPDIR")).join("graphiql.png"),
        PathBuf::from,
    );
    let mut node = tokio::process::Command::new("node");
    node.arg("graphiql.mjs")
        .arg(&base)
        .arg(sim.base_url())
        .arg(&screenshot)
        .env("CHROMIUM", &chromium)
        .current_dir(&dir);
    let started = Instant::now();
    let (ok, out) = run(node, Duration::from_secs(180)).await;
    server.abort();
    println!(
        "graphiql.mjs took {:.1}s; screenshot: {}\n{out}",
        started.elapsed().as_secs_f64(),
        screenshot.display()
    );
    assert!(ok, "the GraphiQL browser test failed:\n{out}");
    assert!(out.contains("PASS"), "{out}");
}
