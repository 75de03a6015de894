//! The bare baseline for `bench/callback.sh`: an axum 0.8 server whose
//! `POST /wechat/callback/{app_id}` extracts exactly what the real handler extracts (path,
//! query map, whole body) and answers `success` without verifying or recording anything.
//!
//! Usage: `cargo run --release --example bench_baseline -- 127.0.0.1:18090`

use std::collections::HashMap;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query};
use axum::routing::{get, post};

/// Same limit as `wxunion::http::CALLBACK_BODY_LIMIT`.
const BODY_LIMIT: usize = 64 * 1024;

async fn receive(
    Path(app_id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    body: Bytes,
) -> &'static str {
    // Touch what was extracted so nothing is optimised away.
    std::hint::black_box((app_id.len(), q.len(), body.len()));
    "success"
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18090".to_owned());
    let app = Router::new()
        .route("/wechat/callback/{app_id}", post(receive))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .route("/healthz", get(|| async { "ok" }));
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!(
        "bench_baseline listening on http://{}",
        listener.local_addr()?
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
