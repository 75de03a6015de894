//! "At most one line per interval": the rule behind warnings about a failing dependency that
//! would otherwise be logged on every request.

use std::time::{Duration, Instant};

/// Remembers when it last let a report through and how many it held back since.
#[derive(Debug, Clone)]
pub struct Throttle {
    every: Duration,
    last: Option<Instant>,
    held: u64,
}

impl Throttle {
    pub const fn new(every: Duration) -> Throttle {
        Throttle {
            every,
            last: None,
            held: 0,
        }
    }

    /// Whether to report at `now`: `Some(n)` with the number of reports held back since the
    /// previous one, or `None` while the interval since that one has not passed.
    pub fn note(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(last) if now.saturating_duration_since(last) < self.every => {
                self.held += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.held))
            }
        }
    }

    /// Whether anything was reported since the last [`Throttle::reset`].
    pub fn reported(&self) -> bool {
        self.last.is_some()
    }

    /// Forgets the past: the next report goes through at once.
    pub fn reset(&mut self) {
        self.last = None;
        self.held = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_report_per_interval_counting_the_ones_held_back() {
        let t0 = Instant::now();
        let s = |n: u64| Duration::from_secs(n);
        let mut t = Throttle::new(s(60));
        assert!(!t.reported());
        // (seconds after t0, expected answer)
        let cases: &[(u64, Option<u64>)] = &[
            (0, Some(0)),
            (1, None),
            (59, None),
            (60, Some(2)),
            (61, None),
            (200, Some(1)),
        ];
        for (at, want) in cases {
            assert_eq!(t.note(t0 + s(*at)), *want, "at {at} s");
        }
        assert!(t.reported());
        t.reset();
        assert!(!t.reported());
        assert_eq!(t.note(t0 + s(201)), Some(0));
    }
}
