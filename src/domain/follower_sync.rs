//! Follower backfills: the state of one, and the backoff rule of its WeChat calls.

use chrono::{DateTime, Utc};

/// Where a follower sync stands; stored as its `status` column.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SyncStatus {
    Running,
    Done,
    Failed,
}

impl SyncStatus {
    pub const ALL: [SyncStatus; 3] = [SyncStatus::Running, SyncStatus::Done, SyncStatus::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            SyncStatus::Running => "running",
            SyncStatus::Done => "done",
            SyncStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<SyncStatus> {
        SyncStatus::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// One follower sync with its checkpoint and counts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FollowerSync {
    pub id: i64,
    pub app_id: String,
    pub status: SyncStatus,
    /// The `user/get` cursor of the page being processed (empty: the first page).
    pub next_openid: String,
    /// Index of the next batch of 100 within that page.
    pub page_position: i32,
    pub followers_seen: i64,
    pub linked: i64,
    pub without_union_id: i64,
    pub failed: i64,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub locked_until: Option<DateTime<Utc>>,
    pub lock_owner: Option<String>,
}

/// What one batch of up to 100 followers added to a sync's counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BatchCounts {
    pub seen: i64,
    pub linked: i64,
    pub without_union_id: i64,
    pub failed: i64,
}

/// Failed attempts at one WeChat call (rate limited, `-1`, transport) before a sync is
/// marked failed.
pub const MAX_CALL_ATTEMPTS: u32 = 8;

/// The wait before retry number `attempt` (1-based) of a call that was rate limited or
/// failed upstream: `base` doubled each time, capped at `cap`; `None` once
/// [`MAX_CALL_ATTEMPTS`] attempts have failed.
pub fn backoff(
    attempt: u32,
    base: std::time::Duration,
    cap: std::time::Duration,
) -> Option<std::time::Duration> {
    if attempt >= MAX_CALL_ATTEMPTS {
        return None;
    }
    let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(20));
    Some(base.saturating_mul(factor).min(cap))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn statuses_round_trip() {
        for s in SyncStatus::ALL {
            assert_eq!(SyncStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(SyncStatus::parse("RUNNING"), None);
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_then_gives_up() {
        let (b, c) = (Duration::from_millis(500), Duration::from_secs(30));
        assert_eq!(backoff(1, b, c), Some(Duration::from_millis(500)));
        assert_eq!(backoff(2, b, c), Some(Duration::from_secs(1)));
        assert_eq!(backoff(4, b, c), Some(Duration::from_secs(4)));
        assert_eq!(backoff(7, b, c), Some(Duration::from_secs(30)));
        assert_eq!(backoff(MAX_CALL_ATTEMPTS, b, c), None);
    }
}
