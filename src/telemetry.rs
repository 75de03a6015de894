//! Logs (tracing) and metrics (Prometheus). Secrets are kept out of logs by construction:
//! they are `SecretString`s, and reqwest errors are stripped of their URLs.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// `wxunion_callback_seconds`: from a millisecond to WeChat's five-second limit.
pub const CALLBACK_SECONDS_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0,
];

/// Installs the log subscriber once; `RUST_LOG` overrides the default level. Lines are
/// coloured only on a terminal: written to a file or a pipe they are plain text (and every
/// request's span is formatted without colour codes, which cost about 4 % of a callback).
pub fn init_tracing() {
    use std::io::IsTerminal as _;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn,sea_orm=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::stdout().is_terminal())
        .try_init();
}

/// How often the recorder's upkeep drains histogram samples into their summaries.
pub const METRICS_UPKEEP_EVERY: Duration = Duration::from_secs(1);

/// The process-wide Prometheus recorder (installed once, even when tests build many apps).
/// Histograms are summaries except `wxunion_callback_seconds`, which has buckets so that the
/// share of callbacks answered within WeChat's budget can be read and summed across instances.
///
/// The recorder keeps each histogram sample until something drains it: a scrape of `/metrics`
/// or its upkeep. A thread of its own runs the upkeep every [`METRICS_UPKEEP_EVERY`], so an
/// instance that nobody scrapes does not grow by 8 bytes per sample (at 10,000 callbacks a
/// second, about 1 GB an hour).
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let handle = builder()
                .install_recorder()
                .unwrap_or_else(|_| builder().build_recorder().handle());
            let upkeep = handle.clone();
            let spawned = std::thread::Builder::new()
                .name("metrics-upkeep".to_owned())
                .spawn(move || {
                    loop {
                        std::thread::sleep(METRICS_UPKEEP_EVERY);
                        upkeep.run_upkeep();
                    }
                });
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "could not start the metrics upkeep; only scrapes drain histograms");
            }
            handle
        })
        .clone()
}

fn builder() -> PrometheusBuilder {
    PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full("wxunion_callback_seconds".to_owned()),
            &CALLBACK_SECONDS_BUCKETS,
        )
        // Only an empty bucket list is refused, and this one is not empty.
        .unwrap_or_else(|_| PrometheusBuilder::new())
}

/// A URL for logs and banners: its password (database, Redis) replaced by `***`.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}
