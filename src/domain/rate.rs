//! Fixed-window counting: the arithmetic behind the `loginWithCode` limits.
//!
//! Time is cut into windows of `len` milliseconds aligned on the Unix epoch, so every instance
//! names the same window the same way (the window's start is part of its Redis key) and no
//! counter needs resetting: the next window is another key. A caller is let through while the
//! count of its window, itself included, is at most the limit; 0 means no limit.

/// The start of the window `now_ms` falls in.
pub fn window_start(now_ms: u64, len_ms: u64) -> u64 {
    let len = len_ms.max(1);
    now_ms - now_ms % len
}

/// Milliseconds until the window `now_ms` falls in ends.
pub fn until_next_window(now_ms: u64, len_ms: u64) -> u64 {
    window_start(now_ms, len_ms) + len_ms.max(1) - now_ms
}

/// Whether the `count`th call of a window may go on under `limit` (0: no limit).
pub fn allowed(count: u64, limit: u64) -> bool {
    limit == 0 || count <= limit
}

/// One key's counter in process memory: the window it counts and the calls counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counter {
    pub window: u64,
    pub count: u64,
}

impl Counter {
    /// Counts one call at `now_ms`: one more in the same window, or the first of a new one.
    pub fn hit(prev: Option<Counter>, now_ms: u64, len_ms: u64) -> Counter {
        let window = window_start(now_ms, len_ms);
        match prev {
            Some(c) if c.window == window => Counter {
                window,
                count: c.count.saturating_add(1),
            },
            _ => Counter { window, count: 1 },
        }
    }

    /// Whether its window is over at `now_ms` (it can be forgotten).
    pub fn expired(&self, now_ms: u64, len_ms: u64) -> bool {
        window_start(now_ms, len_ms) != self.window
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_aligned_on_the_epoch() {
        // (now, len, start, until the next)
        let cases: &[(u64, u64, u64, u64)] = &[
            (0, 60_000, 0, 60_000),
            (59_999, 60_000, 0, 1),
            (60_000, 60_000, 60_000, 60_000),
            (1_700_000_012_345, 1_000, 1_700_000_012_000, 655),
            (1_700_000_012_345, 60_000, 1_699_999_980_000, 27_655),
            // A zero length is treated as 1 ms instead of dividing by zero.
            (5, 0, 5, 1),
        ];
        for (now, len, start, until) in cases {
            assert_eq!(window_start(*now, *len), *start, "start of {now}/{len}");
            assert_eq!(until_next_window(*now, *len), *until, "rest of {now}/{len}");
        }
    }

    #[test]
    fn a_call_goes_on_while_its_count_is_within_the_limit_and_zero_is_no_limit() {
        let cases: &[(u64, u64, bool)] = &[
            (1, 1, true),
            (2, 1, false),
            (60, 60, true),
            (61, 60, false),
            (1, 0, true),
            (u64::MAX, 0, true),
        ];
        for (count, limit, want) in cases {
            assert_eq!(allowed(*count, *limit), *want, "{count} of {limit}");
        }
    }

    #[test]
    fn a_counter_counts_within_its_window_and_starts_over_in_the_next() {
        let len = 1_000;
        let mut c = Counter::hit(None, 10_100, len);
        assert_eq!(
            c,
            Counter {
                window: 10_000,
                count: 1
            }
        );
        c = Counter::hit(Some(c), 10_999, len);
        assert_eq!(c.count, 2);
        assert!(!c.expired(10_999, len));
        assert!(c.expired(11_000, len));
        c = Counter::hit(Some(c), 11_000, len);
        assert_eq!(
            c,
            Counter {
                window: 11_000,
                count: 1
            }
        );
        // A clock stepping back lands in another window: a fresh count, never a negative one.
        c = Counter::hit(Some(c), 9_500, len);
        assert_eq!(
            c,
            Counter {
                window: 9_000,
                count: 1
            }
        );
        let full = Counter {
            window: 0,
            count: u64::MAX,
        };
        assert_eq!(Counter::hit(Some(full), 1, len).count, u64::MAX);
    }
}
