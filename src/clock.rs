//! Time as a dependency, so that expiry (sessions, tokens) is testable without sleeping.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, Duration, Utc};

/// The source of "now" for everything that expires.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
}

/// The real wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// The wall clock shifted by an adjustable offset: tests move time forward with it, or stop
/// it (then only `advance` moves it).
#[derive(Clone, Debug, Default)]
pub struct OffsetClock {
    offset_ms: Arc<AtomicI64>,
    /// Milliseconds since the epoch it stands still at; 0 while it runs.
    frozen_at_ms: Arc<AtomicI64>,
}

impl OffsetClock {
    /// Moves this clock (and every clone of it) forward.
    pub fn advance(&self, by: Duration) {
        self.offset_ms
            .fetch_add(by.num_milliseconds(), Ordering::SeqCst);
        let _ = self
            .frozen_at_ms
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |at| {
                (at != 0).then(|| at + by.num_milliseconds())
            });
    }

    /// Stops this clock (and every clone of it) at its current time: a test whose steps must
    /// fall in one window of time (a rate limit's minute) however slowly they run.
    pub fn freeze(&self) {
        let now = self.now().timestamp_millis();
        self.frozen_at_ms.store(now.max(1), Ordering::SeqCst);
    }
}

impl Clock for OffsetClock {
    fn now(&self) -> DateTime<Utc> {
        match self.frozen_at_ms.load(Ordering::SeqCst) {
            0 => Utc::now() + Duration::milliseconds(self.offset_ms.load(Ordering::SeqCst)),
            at => DateTime::from_timestamp_millis(at).unwrap_or_else(Utc::now),
        }
    }
}

/// The shared handle the application keeps.
pub type SharedClock = Arc<dyn Clock>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frozen_clock_moves_only_when_advanced() {
        let clock = OffsetClock::default();
        clock.advance(Duration::hours(1));
        assert!(clock.now() > Utc::now() + Duration::minutes(59));
        clock.freeze();
        let at = clock.now();
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(clock.clone().now(), at);
        clock.advance(Duration::seconds(61));
        assert_eq!(clock.now(), at + Duration::seconds(61));
    }
}
