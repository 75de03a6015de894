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

/// The wall clock shifted by an adjustable offset: tests move time forward with it.
#[derive(Clone, Debug, Default)]
pub struct OffsetClock(Arc<AtomicI64>);

impl OffsetClock {
    /// Moves this clock (and every clone of it) forward.
    pub fn advance(&self, by: Duration) {
        self.0.fetch_add(by.num_milliseconds(), Ordering::SeqCst);
    }
}

impl Clock for OffsetClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now() + Duration::milliseconds(self.0.load(Ordering::SeqCst))
    }
}

/// The shared handle the application keeps.
pub type SharedClock = Arc<dyn Clock>;
