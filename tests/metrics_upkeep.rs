//! The Prometheus recorder keeps every histogram sample until it is drained, by a scrape of
//! `/metrics` or by its upkeep. A wxunion nobody scrapes must still not grow without bound, so
//! the recorder's upkeep runs on its own. This is its own test binary (one test, one process),
//! so that the process's resident memory is this test's alone.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

/// Resident set size in bytes, from `/proc/self/statm` (Linux).
fn rss() -> i64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: i64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

#[test]
fn histogram_samples_do_not_pile_up_when_metrics_are_never_scraped() {
    let _handle = wxunion::telemetry::metrics_handle();
    // 250,000 samples a second, as the request path records them, and no scrape: resident
    // memory must level off once the upkeep runs, not climb with every sample kept.
    let every = wxunion::telemetry::METRICS_UPKEEP_EVERY;
    let record_for = |d: Duration| -> i64 {
        let started = Instant::now();
        let mut samples = 0;
        while started.elapsed() < d {
            let tick = Instant::now();
            for _ in 0..1000 {
                metrics::histogram!("wxunion_http_request_seconds", "route" => "/healthz")
                    .record(0.001);
            }
            samples += 1000;
            std::thread::sleep(Duration::from_millis(4).saturating_sub(tick.elapsed()));
        }
        samples
    };
    // Warm-up: allocator arenas, the summary, a few upkeeps.
    record_for(every * 3);
    let before = rss();
    let samples = record_for(every * 6);
    let grown = rss() - before;
    // Each sample kept costs at least 8 bytes.
    let kept_all = samples * 8;
    assert!(
        kept_all > 8 << 20,
        "too few samples ({samples}) for the check to mean anything"
    );
    assert!(
        grown < kept_all / 4,
        "{samples} samples never scraped: resident memory grew by {grown} bytes, keeping them all \
         would be {kept_all}"
    );
}
