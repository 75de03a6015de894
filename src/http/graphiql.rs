//! GraphiQL for browsers on `GET /graphql`, served entirely by wxunion so that it works with
//! no internet access: the page, its start-up script and style, and a vendored GraphiQL with
//! React (`assets/graphiql/`, written by `scripts/vendor-graphiql.sh`) are embedded in the
//! binary and served under `/graphiql/`. The page's Content-Security-Policy allows nothing
//! but this server. `graphiql = false` in the configuration turns page and files off (404).

mod vendored;

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};

use super::AppState;

pub use vendored::{GRAPHIQL_VERSION, REACT_VERSION};

/// The policy of the GraphiQL page: scripts, styles, fonts, images and requests from this
/// server only; no inline script or style, no plugins, no frames, no form posts elsewhere.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; font-src 'self'; img-src 'self'; connect-src 'self'; \
     base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// What a browser gets on `GET /graphql` and `/graphiql/*` when GraphiQL is turned off.
pub const DISABLED: &str =
    "GraphiQL is turned off on this server (configuration key `graphiql`).\n";

/// One file served under `/graphiql/`.
pub struct Asset {
    /// Its path under `/graphiql/`.
    pub path: &'static str,
    pub content_type: &'static str,
    pub bytes: &'static [u8],
}

/// wxunion's own files for the page (the vendored ones are in `vendored::FILES`).
const OWN_FILES: &[Asset] = &[
    Asset {
        path: "init.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("graphiql/init.js"),
    },
    Asset {
        path: "page.css",
        content_type: "text/css; charset=utf-8",
        bytes: include_bytes!("graphiql/page.css"),
    },
    Asset {
        path: "favicon.svg",
        content_type: "image/svg+xml",
        bytes: include_bytes!("graphiql/favicon.svg"),
    },
];

/// The page's scripts, in order, and style sheets.
const SCRIPTS: &[&str] = &[
    "react.production.min.js",
    "react-dom.production.min.js",
    "graphiql.min.js",
    "init.js",
];
const STYLES: &[&str] = &["graphiql.min.css", "page.css"];

/// Where the page's GraphiQL sends its requests (`init.js` reads it from a `<meta>`).
pub const ENDPOINT: &str = "/graphql";

/// A year: files are only cached this long under a URL that names their content.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

struct Served {
    asset: &'static Asset,
    /// The first 16 hex digits of the file's SHA-256: `?v=` in the page's links.
    version: String,
    etag: HeaderValue,
}

/// Every file by path, with its hash (computed once, on first use).
fn files() -> &'static HashMap<&'static str, Served> {
    static FILES: OnceLock<HashMap<&'static str, Served>> = OnceLock::new();
    FILES.get_or_init(|| {
        vendored::FILES
            .iter()
            .chain(OWN_FILES)
            .map(|asset| {
                let hash = hex::encode(Sha256::digest(asset.bytes));
                let version = hash[..16].to_owned();
                let etag = HeaderValue::from_str(&format!("\"{}\"", &hash[..32]))
                    .unwrap_or_else(|_| HeaderValue::from_static("\"0\""));
                (
                    asset.path,
                    Served {
                        asset,
                        version,
                        etag,
                    },
                )
            })
            .collect()
    })
}

/// The page: no inline script or style, every file with `?v=<its hash>` so that it can be
/// cached for good and a new binary is still picked up at once.
fn html() -> &'static str {
    static HTML: OnceLock<String> = OnceLock::new();
    HTML.get_or_init(|| {
        let url = |path: &str| {
            let v = files().get(path).map(|s| s.version.as_str()).unwrap_or("");
            format!("/graphiql/{path}?v={v}")
        };
        let mut head = format!(
            "    <link rel=\"icon\" type=\"image/svg+xml\" href=\"{}\">\n",
            url("favicon.svg")
        );
        for css in STYLES {
            head.push_str(&format!(
                "    <link rel=\"stylesheet\" href=\"{}\">\n",
                url(css)
            ));
        }
        for js in SCRIPTS {
            head.push_str(&format!("    <script defer src=\"{}\"></script>\n", url(js)));
        }
        format!(
            "<!DOCTYPE html>\n<html lang=\"en\">\n  <head>\n    <meta charset=\"utf-8\">\n    \
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n    \
             <meta name=\"generator\" content=\"GraphiQL {GRAPHIQL_VERSION}, React {REACT_VERSION}\">\n    \
             <meta name=\"graphql-endpoint\" content=\"{ENDPOINT}\">\n    \
             <title>wxunion GraphiQL</title>\n{head}  </head>\n  <body>\n    \
             <div id=\"graphiql\"><div class=\"loading\">Loading GraphiQL…</div></div>\n    \
             <noscript>GraphiQL needs JavaScript.</noscript>\n  </body>\n</html>\n"
        )
    })
}

/// The routes of GraphiQL's files. The page itself is `page`, on `GET /graphql`.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new().route("/graphiql/{*path}", get(file))
}

/// The GraphiQL page when `enabled`, else 404 with a short text.
pub fn page(enabled: bool) -> Response {
    if !enabled {
        return disabled();
    }
    let headers = [
        (header::CONTENT_TYPE, "text/html; charset=utf-8"),
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::CACHE_CONTROL, "no-cache"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
    ];
    (headers, html()).into_response()
}

fn disabled() -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        DISABLED,
    )
        .into_response()
}

/// `GET /graphiql/{path}`: a file, cached for a year when the URL names its content (`?v=`
/// with its hash, or a file under `files/`, whose name is its hash), else revalidated by
/// ETag.
async fn file(
    State(state): State<Arc<AppState>>,
    Path(path): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    if !state.service.config().graphiql {
        return disabled();
    }
    let Some(served) = files().get(path.as_str()) else {
        return (StatusCode::NOT_FOUND, "no such GraphiQL file\n").into_response();
    };
    let versioned = path.starts_with("files/")
        || query
            .as_deref()
            .is_some_and(|q| q.split('&').any(|kv| kv == format!("v={}", served.version)));
    let cache = if versioned { IMMUTABLE } else { "no-cache" };
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim().trim_start_matches("W/") == served.etag)
        });
    let common = [
        (header::CACHE_CONTROL, HeaderValue::from_static(cache)),
        (header::ETAG, served.etag.clone()),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
    ];
    if fresh {
        return (StatusCode::NOT_MODIFIED, common).into_response();
    }
    (
        common,
        [(header::CONTENT_TYPE, served.asset.content_type)],
        served.asset.bytes,
    )
        .into_response()
}
